"""Natural-language captions from vision-language models on the user's own server
(issue 16): any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, Ollama
``/v1``, llama.cpp ``llama-server``, LM Studio, hosted APIs).

The CLI (``sushitui endpoint …``, ``sushitui caption …``) and the TUI call the same
functions; none of them prints, and nothing here imports Textual.

Endpoints (``endpoints``)::

    add_endpoint(name, base_url, model=None, api_key_env=None, *, replace=False) -> EndpointInfo
    list_endpoints() -> list[EndpointInfo]
    get_endpoint(name=None) -> EndpointInfo          # None: the only one registered
    remove_endpoint(name) -> None
    probe_endpoint(name=None, *, timeout_s=60) -> EndpointProbe   # /models + one image, latencies
    privacy_notice(base_url) -> str | None           # one line when images leave this machine / network

  A key is never stored: ``api_key_env`` names the environment variable it is read
  from when requests go out. Errors are ``VlmError`` with a message for the user.

Templates (``templates``): ``BUILTIN`` (flux, short, tags-to-prose, edit-instruction),
``list_templates()``, ``load_template(name_or_file, prompt=None, system=None)``;
variables ``{tags} {trigger} {name} {folder} {caption:SUBTYPE}``.

Runs (``run``)::

    caption_items(dataset, target=None, options=CaptionOptions(...), *,
                  progress=None, cancel=None, on_result=None) -> CaptionReport
    sample(dataset, target=None, options=None, n=8, ...) -> CaptionReport   # writes nothing
    preview_prompt(item, options) -> PromptPreview   # prompts with variables filled, images; sends nothing
    write_caption(item, text, *, model, ctype, subtype, mode="replace", base=UNSET, force=False) -> Caption

- ``target``: ``CaptionTarget(query=..., item_ids=...)``, a query string, a list of
  item ids, or None for the whole dataset.
- ``CaptionOptions.write=False`` (the review screen): every answer comes back in
  ``report.results`` (``CaptionResult``: ``text`` as it would be written, ``old_text``,
  ``flags``/``problem``, ``prompt``, ``images``, ``base``: the file state ``old_text``
  was read from) and nothing is written; ``mode`` skip-existing still leaves out items
  that have a caption. The screen then calls ``write_caption`` for each accepted one
  (with ``base=result.base``: a file changed since is a conflict), and "regenerate" is ``sample(ds, [item_id], replace(options,
  temperature=...), n=1)``.
- ``on_result(result)`` is called in the calling thread as each item finishes
  (status ``written``, ``unchanged``, ``answered``, ``flagged``, ``failed``).
- ``progress`` gets ``ProgressEvent("captioning", done, total, "items", extra={"sent",
  "cached", "errors", "req/s", "tok/s"})``; ``cancel`` (a CancelToken) stops at once,
  keeping every answer received (cached and, when writing, written).

Every answer is cached by (image SHA-256s, model, system + user prompt after
variables, max_tokens, temperature, max_side): a rerun after a crash, a kill or a
dropped SSH session sends only what was not answered; a new prompt sends again.
Captions are written through ``sushitui.dataset.captions.set_text`` (atomic,
conflict-checked, under the dataset's write lock) with source ``vlm_<model>``; a
banned word, a refusal, an empty answer or one cut off at ``max_tokens`` is flagged
and never written.
"""

from sushitui.tagger.vlm.endpoints import (
    EndpointInfo,
    EndpointProbe,
    VlmError,
    add_endpoint,
    get_endpoint,
    list_endpoints,
    privacy_notice,
    probe_endpoint,
    remove_endpoint,
)
from sushitui.tagger.vlm.run import (
    MODES,
    CaptionOptions,
    CaptionReport,
    CaptionResult,
    CaptionTarget,
    PromptPreview,
    caption_items,
    preview_prompt,
    sample,
    write_caption,
)
from sushitui.tagger.vlm.templates import BUILTIN as TEMPLATES
from sushitui.tagger.vlm.templates import Template, TemplateError, list_templates, load_template

__all__ = [
    "EndpointInfo",
    "EndpointProbe",
    "VlmError",
    "add_endpoint",
    "get_endpoint",
    "list_endpoints",
    "privacy_notice",
    "probe_endpoint",
    "remove_endpoint",
    "MODES",
    "CaptionOptions",
    "CaptionReport",
    "CaptionResult",
    "CaptionTarget",
    "PromptPreview",
    "caption_items",
    "preview_prompt",
    "sample",
    "write_caption",
    "TEMPLATES",
    "Template",
    "TemplateError",
    "list_templates",
    "load_template",
]
