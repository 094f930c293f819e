"""Captioning runs: plan, cache, encode, send, post-process, write (see the package
docstring for the API).

Threads and processes of a run:

- the calling thread plans the requests, reads and writes the database (cache rows
  and captions, in small batches), and owns the image pool (``sushitui.workers``: a
  pool is created, used and shut down by one thread);
- image workers decode + downscale + encode (``images.encode_image``);
- one thread runs an asyncio loop with ``ChatClient``: up to ``concurrency`` requests
  in flight, each retried by the client.

The calling thread keeps at most ``concurrency`` + 2 × workers jobs between "being
encoded" and "answered", so the server's batch stays full while memory stays flat.
Every answer is cached (committed) within ``FLUSH_INTERVAL_S``; a run killed at any
point resumes with only the unanswered items.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from sushitui.dataset.caption_files import CaptionFileError
from sushitui.dataset.captions import (
    MAIN,
    UNSET,
    TextEdit,
    caption_state,
    check_new_subtype,
    preferred_tag_subtype,
    set_texts_many,
)
from sushitui.dataset.paths import to_abs
from sushitui.dataset.write_lock import DatasetBusy
from sushitui.progress import CancelToken, ProgressEvent, Throttle
from sushitui.store import Caption, Dataset, Item, ItemTag, tuple_rows
from sushitui.tagger.cache import known_sha256
from sushitui.tagger.vlm import cache as vcache
from sushitui.tagger.vlm.endpoints import EndpointInfo, VlmError, api_key, get_endpoint, privacy_notice
from sushitui.tagger.vlm.images import ENCODING_VERSION, Encoded, encode_many
from sushitui.tagger.vlm.postprocess import Processed, process
from sushitui.tagger.vlm.templates import Template, TemplateError, fill, load_template

MODES = ("skip-existing", "replace", "append")
# caption type of a subtype whatever the template says (the scanner's fixed suffixes)
FIXED_TYPES = {"instruction": "instruction", "description": "description", "tags": "tags"}
# the subtype (file suffix) a new caption of a type gets, as the item editor chooses it
DEFAULT_SUBTYPE = {
    "natural_language": "caption",
    "social_media": "social",
    "instruction": "instruction",
    "description": "description",
    "prompt": "prompt",
}
# Answers are cached (one cheap commit) at least every FLUSH_INTERVAL_S; caption files go
# out in batches (one lock, one sync each: ~30 ms however small) every WRITE_INTERVAL_S.
FLUSH_INTERVAL_S = 0.5
FLUSH_SIZE = 32
WRITE_INTERVAL_S = 2.0
MIN_JOBS_FOR_POOL = 6  # below this a worker pool costs more to start than it saves
POOL_METHOD = "forkserver"
POOL_PRELOAD = ("sushitui.tagger.vlm.images",)
KEEP_RESULTS = 200  # results kept in the report of a writing run (all problems are kept)


@dataclass
class CaptionOptions:
    """Everything a run can be told; the CLI flags and the TUI dialog fill it."""

    endpoint: str | None = None  # registered name; None: the only one
    template: str = "flux"  # built-in name or a file
    prompt: str | None = None  # replaces the template's prompt
    system: str | None = None  # replaces the template's system prompt
    subtype: str | None = None  # None: the type's usual suffix (caption / instruction)
    mode: str = "skip-existing"  # skip-existing | replace | append
    concurrency: int = 32
    max_side: int = 1024
    max_tokens: int = 300
    temperature: float | None = None
    start_with: str | None = None
    ban: tuple[str, ...] = ()
    trigger: str | None = None
    fold: bool = True  # one line
    stream: bool = False
    timeout_s: float = 180.0
    max_retries: int = 4
    retry_base_s: float = 1.0
    read_cache: bool = True  # False: send again even when answered before (the answer still replaces the cached one)
    workers: int | None = None  # image processes (default: CPU cores, at most 16; 0: threads in this process)
    write: bool = True  # False: answers only (sample, review screen)


@dataclass
class CaptionTarget:
    """Which items: a query's result, explicit ids, or (both None) the whole dataset."""

    query: str | None = None
    item_ids: Sequence[int] | None = None


@dataclass
class CaptionResult:
    item_id: int
    name: str
    image_path: str | None
    status: str = "pending"  # written | unchanged | answered (not written) | flagged | failed | skipped
    text: str | None = None  # the caption as it would be / was written
    raw: str | None = None  # the model's answer as received
    old_text: str | None = None  # the caption before
    flags: list[str] = field(default_factory=list)
    problem: str | None = None
    from_cache: bool = False
    finish_reason: str | None = None
    prompt: str = ""
    system: str = ""
    images: list[str] = field(default_factory=list)  # dataset-relative paths sent
    sent_sizes: list[tuple[int, int]] = field(default_factory=list)
    latency_s: float | None = None
    completion_tokens: int | None = None
    key: str = ""
    # the state of the caption file when ``old_text`` was read (None: no file): the review
    # screen passes it to write_caption as ``base``, so a file changed since is a conflict
    base: Any = field(default=None, repr=False)


@dataclass
class CaptionReport:
    dataset: str
    endpoint: str
    base_url: str
    model: str
    template: str
    ctype: str
    subtype: str
    mode: str
    write: bool
    items: int = 0  # selected
    skipped_existing: int = 0
    requests: int = 0  # answered by the server in this run
    cached: int = 0  # answers taken from the cache: nothing sent
    written: int = 0
    unchanged: int = 0
    answered: int = 0  # good answers not written (write=False)
    flagged: int = 0  # refusals, empty, truncated, banned words: not written
    failed: int = 0  # no answer (HTTP errors after retries, unreadable images, write conflicts)
    retries: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    results: list[CaptionResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notice: str | None = None  # images leave this machine
    cancelled: bool = False
    elapsed_s: float = 0.0
    send_s: float = 0.0  # from the first request sent to the last answer

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.send_s if self.send_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.send_s if self.send_s > 0 else 0.0

    @property
    def problems(self) -> list[CaptionResult]:
        return [r for r in self.results if r.status in ("flagged", "failed")]

    def as_dict(self) -> dict:
        d = asdict(self)
        for r in d["results"]:
            r.pop("base", None)  # an internal file state, not part of the report
        d["requests_per_s"] = round(self.requests_per_s, 2)
        d["tokens_per_s"] = round(self.tokens_per_s, 1)
        return d


@dataclass
class PromptPreview:
    """What would be sent for one item (the dialog's preview)."""

    item_id: int
    system: str
    prompt: str
    images: list[str]  # dataset-relative paths
    ctype: str
    subtype: str
    variables: dict[str, str]
    problem: str | None = None


# --- planning --------------------------------------------------------------------------------


@dataclass
class _Job:
    index: int
    item: Item
    result: CaptionResult
    abs_images: list[str]
    shas: list[str]
    body_messages: list[dict] | None = None
    existing: Caption | None = None


def _dataset(dataset) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    ds = (
        Dataset.get_or_none(Dataset.id == dataset)
        if isinstance(dataset, int)
        else Dataset.get_or_none(Dataset.name == str(dataset))
    )
    if ds is None:
        raise VlmError(f"no dataset named {dataset!r}; `sushitui dataset list` shows them")
    return ds


def _target(target) -> CaptionTarget:
    if target is None:
        return CaptionTarget()
    if isinstance(target, CaptionTarget):
        return target
    if isinstance(target, str):
        return CaptionTarget(query=target)
    return CaptionTarget(item_ids=list(target))


def select_items(ds: Dataset, target: CaptionTarget) -> list[Item]:
    q = Item.select().where(Item.dataset == ds.id)
    if target.query:
        from sushitui.tags.query import QueryError, apply_query

        try:
            q = apply_query(q, target.query, ds.id)
        except QueryError as exc:
            raise VlmError(f"bad query {target.query!r}: {exc}") from exc
    if target.item_ids is not None:
        wanted = sorted({int(i) for i in target.item_ids})
        found: list[Item] = []
        for i in range(0, len(wanted), 500):
            found.extend(q.where(Item.id.in_(wanted[i : i + 500])))
        missing = set(wanted) - {it.id for it in found}
        if missing and not target.query:
            raise VlmError(f"no item(s) {', '.join(map(str, sorted(missing)[:10]))} in dataset {ds.name!r}")
        return sorted(found, key=lambda it: it.group_key)
    return list(q.order_by(Item.group_key))


def resolve_caption_slot(ds: Dataset, template: Template, subtype: str | None) -> tuple[str, str]:
    """(caption type, subtype) the answers are written as. ``subtype`` may also be a
    caption type name (``natural_language``): that type's usual subtype."""
    overrides = dict(ds.caption_types or {})
    ctype = template.ctype
    if subtype and subtype in DEFAULT_SUBTYPE and subtype not in (ds.caption_suffixes or ()):
        ctype, subtype = subtype, None
    if not subtype:
        subtype = next((s for s, t in overrides.items() if t == ctype), None) or DEFAULT_SUBTYPE.get(ctype, "caption")
    ctype = overrides.get(subtype) or FIXED_TYPES.get(subtype) or ctype
    if ctype == "tags":
        raise VlmError(
            f"subtype {subtype!r} holds tags; a model's sentences go to a text caption: use --subtype "
            "caption (natural language), instruction, description, or main when main is prose"
        )
    return ctype, subtype


def _captions_of(item_ids: list[int]) -> dict[int, list[Caption]]:
    out: dict[int, list[Caption]] = {}
    for i in range(0, len(item_ids), 500):
        for c in Caption.select().where(Caption.item.in_(item_ids[i : i + 500])):
            out.setdefault(c.item_id, []).append(c)
    return out


def _tags_of(item_ids: list[int]) -> dict[int, dict[str, list[str]]]:
    out: dict[int, dict[str, list[str]]] = {}
    for i in range(0, len(item_ids), 500):
        rows = (
            ItemTag.select(ItemTag.item, ItemTag.subtype, ItemTag.tag)
            .where(ItemTag.item.in_(item_ids[i : i + 500]))
            .order_by(ItemTag.item, ItemTag.position)
            .tuples()
        )
        for item_id, sub, tag in tuple_rows(rows):
            out.setdefault(item_id, {}).setdefault(sub, []).append(tag)
    return out


def _variables(
    ds: Dataset, item: Item, captions: list[Caption], tags: dict[str, list[str]], trigger: str | None, wanted: set[str]
) -> dict[str, str]:
    main_is_prose = any(c.subtype == MAIN and c.type != "tags" and c.file_path for c in captions)
    values = {
        "name": item.base_name,
        "folder": Path(item.rel_dir).name if item.rel_dir else Path(ds.root_path).name,
        "trigger": (trigger or "").strip(),
    }
    if "tags" in wanted:
        values["tags"] = ", ".join(tags.get(preferred_tag_subtype(tags, main_is_prose), []) if tags else [])
    for var in wanted:
        if var.startswith("caption:"):
            sub = var.split(":", 1)[1]
            hit = next((c for c in captions if c.subtype == sub and c.type != "tags"), None) or next(
                (c for c in captions if c.subtype == sub), None
            )
            values[var] = hit.content.strip() if hit is not None else ""
    return values


def _image_set(item: Item, template: Template) -> tuple[list[str], str | None]:
    """Dataset-relative images to send, or a problem."""
    if template.images == "source,target":
        related = dict(item.related_images or {})
        source = related.get("source")
        target = related.get("target") or (item.image_path if item.image_suffix == "target" else None)
        if item.item_type != "group" or not source or not target:
            return [], (
                "the edit-instruction template needs a layout C group with a _source and a _target image "
                f"(this item has: {', '.join(sorted(related)) or 'one image'})"
            )
        return [source, target], None
    if not item.image_path:
        return [], "the item has no image"
    return [item.image_path], None


def _hash(path: str) -> str | None:
    from sushitui.tagger.preprocess import hash_file

    return hash_file(path)


def _messages(system: str, prompt: str, uris: list[str]) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": prompt}]
    content += [{"type": "image_url", "image_url": {"url": u}} for u in uris]
    messages: list[dict] = [{"role": "system", "content": system}] if system.strip() else []
    messages.append({"role": "user", "content": content})
    return messages


def _params(opts: CaptionOptions) -> dict:
    return {
        "max_tokens": opts.max_tokens,
        "temperature": opts.temperature,
        "max_side": opts.max_side,
        "encoding": ENCODING_VERSION,
    }


def _prompt_text(template: Template, values: dict[str, str], opts: CaptionOptions) -> tuple[str, str]:
    prompt = fill(template.prompt, values)
    if opts.start_with and opts.start_with.strip():
        prompt += f"\n\nBegin your answer with: {opts.start_with.strip()}"
    return fill(template.system, values), prompt


def _check_options(opts: CaptionOptions) -> None:
    if opts.mode not in MODES:
        raise VlmError(f"unknown mode {opts.mode!r}: use {', '.join(MODES)}")
    if opts.concurrency < 1:
        raise VlmError("--concurrency must be at least 1")
    if opts.max_side < 64:
        raise VlmError("--max-side must be at least 64 pixels")
    if opts.max_tokens < 1:
        raise VlmError("--max-tokens must be at least 1")
    if opts.temperature is not None and not 0.0 <= opts.temperature <= 2.0:
        raise VlmError("--temperature must be between 0 and 2")


def _template(opts: CaptionOptions) -> Template:
    try:
        tpl = load_template(opts.template, prompt=opts.prompt, system=opts.system)
    except TemplateError as exc:
        raise VlmError(str(exc)) from exc
    if "trigger" in tpl.variables() and not (opts.trigger or "").strip():
        raise VlmError(f"template {tpl.name!r} uses {{trigger}}: pass the trigger word (--trigger WORD)")
    return tpl


def preview_prompt(item: Item | int, options: CaptionOptions | None = None) -> PromptPreview:
    """The system prompt, user prompt and images one item would be sent with, variables
    filled in; sends and writes nothing. Raises VlmError for a bad template or option."""
    opts = options or CaptionOptions()
    item = item if isinstance(item, Item) else Item.get_by_id(item)
    ds = Dataset.get_by_id(item.dataset_id)
    tpl = _template(opts)
    ctype, subtype = resolve_caption_slot(ds, tpl, opts.subtype)
    captions = _captions_of([item.id]).get(item.id, [])
    values = _variables(ds, item, captions, _tags_of([item.id]).get(item.id, {}), opts.trigger, tpl.variables())
    system, prompt = _prompt_text(tpl, values, opts)
    images, problem = _image_set(item, tpl)
    return PromptPreview(item.id, system, prompt, images, ctype, subtype, values, problem)


# --- the run ---------------------------------------------------------------------------------


class _Sender:
    """An asyncio loop in its own thread that sends requests; answers and errors come
    back on ``events`` as ("answer", index, ChatAnswer) / ("error", index, message)."""

    def __init__(self, client_factory: Callable[[], Any], concurrency: int, stream: bool, events: queue.Queue):
        self.events = events
        self.stream = stream
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vlm-sender", daemon=True)
        self.thread.start()
        self.client = self.call(self._make(client_factory, concurrency))
        self.tasks: set[cf.Future] = set()
        self.first_sent: float | None = None

    async def _make(self, factory, concurrency):
        self.sem = asyncio.Semaphore(concurrency)
        return factory()

    def call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, index: int, body: dict) -> None:
        if self.first_sent is None:
            self.first_sent = time.monotonic()
        fut = asyncio.run_coroutine_threadsafe(self._one(index, body), self.loop)
        self.tasks.add(fut)
        fut.add_done_callback(self.tasks.discard)

    async def _one(self, index: int, body: dict) -> None:
        from sushitui.tagger.vlm.client import EndpointError

        async with self.sem:
            try:
                answer = await self.client.chat(body, stream=self.stream)
            except EndpointError as exc:
                self.events.put(("error", index, str(exc)))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug in one answer's handling must not hang the run
                self.events.put(("error", index, f"{type(exc).__name__}: {exc}"))
                return
        self.events.put(("answer", index, answer))

    def close(self) -> None:
        for fut in list(self.tasks):
            fut.cancel()
        try:
            self.call(self.client.aclose(), timeout=10)
        except Exception:  # noqa: BLE001 - closing a pool of sockets that a cancel left half-open
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


def _pool(n_jobs: int, workers: int | None, notes: list[str]) -> cf.Executor:
    workers = _default_workers() if workers is None else workers
    if workers > 0 and n_jobs >= MIN_JOBS_FOR_POOL:
        from sushitui.workers import process_pool

        try:
            return process_pool(min(workers, n_jobs), method=POOL_METHOD, preload=POOL_PRELOAD)
        except (OSError, RuntimeError, ValueError) as exc:
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
            notes.append(f"image worker processes unavailable ({type(exc).__name__}: {first}); encoding in threads")
    # Pillow releases the GIL while it decodes and encodes: threads still overlap
    return cf.ThreadPoolExecutor(max(1, min(workers or 2, 4)), thread_name_prefix="vlm-encode")


def caption_items(
    dataset,
    target: CaptionTarget | str | Sequence[int] | None = None,
    options: CaptionOptions | None = None,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
    on_result: Callable[[CaptionResult], None] | None = None,
    client_factory: Callable[[EndpointInfo, dict], Any] | None = None,
    dispatch: Callable[..., None] | None = None,
    _limit: int | None = None,
) -> CaptionReport:
    """Caption the target items of ``dataset`` (name, id or Dataset) with the endpoint's
    model. Returns a CaptionReport; raises VlmError when the run cannot start.

    ``options.write`` False: nothing is written (answers are still cached);
    ``on_result`` is called in this thread for every finished item as it finishes.
    Cancelling keeps everything finished so far (written and cached) and aborts the
    requests in flight (``report.cancelled``).

    ``dispatch(run, jobs, endpoint, api_key, client_kwargs)`` replaces encoding and
    sending the cache misses here (``sushitui.tagger.ray_caption`` does both on Ray and
    hands the answers back to ``run``, which caches and writes them as usual)."""
    opts = options or CaptionOptions()
    _check_options(opts)
    started = time.monotonic()
    ds = _dataset(dataset)
    tpl = _template(opts)
    ctype, subtype = resolve_caption_slot(ds, tpl, opts.subtype)
    if opts.write:
        try:
            check_new_subtype(ds, subtype)
        except CaptionFileError as exc:
            raise VlmError(str(exc)) from exc
    endpoint = get_endpoint(opts.endpoint)
    key_value = api_key(endpoint)
    items = select_items(ds, _target(target))
    if _limit is not None:
        items = _spread(items, _limit)
    notes: list[str] = []
    events: queue.Queue = queue.Queue()
    client_kwargs = dict(
        timeout_s=opts.timeout_s,
        max_retries=opts.max_retries,
        retry_base_s=opts.retry_base_s,
        concurrency=opts.concurrency,
    )

    def make_client():
        if client_factory is not None:
            return client_factory(endpoint, client_kwargs)
        from sushitui.tagger.vlm.client import ChatClient

        return ChatClient(endpoint.base_url, key_value, **client_kwargs)

    sender: _Sender | None = None
    try:
        model = endpoint.model
        if model is None:
            from sushitui.tagger.vlm.endpoints import resolve_model

            sender = _Sender(make_client, opts.concurrency, opts.stream, events)
            model = sender.call(resolve_model(sender.client, endpoint))
            notes.append(f"endpoint {endpoint.name!r} names no model: using {model!r}, the first the server lists")
        report = CaptionReport(
            ds.name,
            endpoint.name,
            endpoint.base_url,
            model,
            tpl.name,
            ctype,
            subtype,
            opts.mode,
            opts.write,
            items=len(items),
            notes=notes,
            notice=privacy_notice(endpoint.base_url),
        )
        run = _Run(ds, tpl, opts, report, ctype, subtype, progress, cancel, on_result)
        jobs = run.plan(items)
        misses = run.from_cache(jobs)
        if misses and not run.cancelled() and dispatch is not None:
            dispatch(run, misses, endpoint, key_value, client_kwargs)
        elif misses and not run.cancelled():
            if sender is None:
                sender = _Sender(make_client, opts.concurrency, opts.stream, events)
            run.send(misses, sender, events)
        run.flush(force=True)
        run.emit(force=True)
    finally:
        if sender is not None:
            sender.close()
    report.cancelled = run.cancelled()
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report


def sample(
    dataset,
    target: CaptionTarget | str | Sequence[int] | None = None,
    options: CaptionOptions | None = None,
    n: int = 8,
    **kwargs,
) -> CaptionReport:
    """Caption ``n`` items spread over the target and return the results without
    writing anything (``--sample``); answers are cached, so running for real afterwards
    with the same prompt sends those items no more. Items that already have a caption
    are sampled too."""
    opts = replace(options or CaptionOptions(), write=False, mode="replace")
    return caption_items(dataset, target, opts, _limit=max(1, n), **kwargs)


def _spread(items: list[Item], n: int) -> list[Item]:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


class _Run:
    def __init__(self, ds, tpl, opts, report, ctype, subtype, progress, cancel, on_result) -> None:
        self.ds, self.tpl, self.opts, self.report = ds, tpl, opts, report
        self.ctype, self.subtype = ctype, subtype
        self.throttle = Throttle(progress, 0.1)
        self.cancel = cancel
        self.on_result = on_result
        self.source = f"vlm_{report.model}"
        self.params = _params(opts)
        self.done = 0
        self.total = 0
        self.phase_start = time.monotonic()
        self.pending_cache: list[tuple[str, str, vcache.CachedAnswer]] = []
        self.pending_write: list[tuple[_Job, str]] = []
        self.last_flush = self.last_write = time.monotonic()
        self.sender: _Sender | None = None
        self.kept = 0

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled

    # progress

    def emit(self, force: bool = False) -> None:
        r = self.report
        if self.sender is not None and self.sender.first_sent is not None:
            r.send_s = round(time.monotonic() - self.sender.first_sent, 3)
        extra = {
            "sent": r.requests,
            "cached": r.cached,
            "errors": r.failed + r.flagged,
            "req/s": f"{r.requests_per_s:.1f}",
            "tok/s": f"{r.tokens_per_s:.0f}",
        }
        self.throttle(
            ProgressEvent("captioning", self.done, self.total, "items", started_at=self.phase_start, extra=extra), force
        )

    # plan

    def plan(self, items: list[Item]) -> list[_Job]:
        ids = [it.id for it in items]
        captions = _captions_of(ids)
        wanted = self.tpl.variables()
        tags = _tags_of(ids) if "tags" in wanted else {}
        jobs: list[_Job] = []
        self.total = len(items)
        for it in items:
            if self.cancelled():
                break
            mine = captions.get(it.id, [])
            existing = next((c for c in mine if c.type == self.ctype and c.subtype == self.subtype), None)
            # also without writing (the review screen): only items without a caption are asked for;
            # sample() uses mode replace, so a sample takes items that have one too
            if self.opts.mode == "skip-existing" and existing is not None and existing.content.strip():
                self.report.skipped_existing += 1
                self.total -= 1
                continue
            values = _variables(self.ds, it, mine, tags.get(it.id, {}), self.opts.trigger, wanted)
            system, prompt = _prompt_text(self.tpl, values, self.opts)
            result = CaptionResult(
                it.id,
                it.base_name,
                it.image_path,
                prompt=prompt,
                system=system,
                old_text=existing.content if existing is not None else None,
                base=caption_state(existing),
            )
            rels, problem = _image_set(it, self.tpl)
            result.images = rels
            job = _Job(len(jobs), it, result, [], [], existing=existing)
            if problem is None:
                for rel in rels:
                    try:
                        path = str(to_abs(self.ds.root_path, rel))
                    except ValueError as exc:
                        problem = str(exc)
                        break
                    # the indexed hash is the primary image's
                    sha = (known_sha256(it, path) if rel == it.image_path else None) or _hash(path)
                    if sha is None:
                        problem = f"cannot read {rel} (missing or unreadable); reindex the dataset"
                        break
                    job.abs_images.append(path)
                    job.shas.append(sha)
            if problem is not None:
                self.finish(job, failed=problem)
                continue
            result.key = vcache.request_key(job.shas, self.report.model, system, prompt, self.params)
            jobs.append(job)
        self.emit(force=True)
        return jobs

    def from_cache(self, jobs: list[_Job]) -> list[_Job]:
        if not self.opts.read_cache:
            return jobs
        misses = []
        for start in range(0, len(jobs), 500):
            chunk = jobs[start : start + 500]
            hits = vcache.get_many(j.result.key for j in chunk)
            for job in chunk:
                hit = hits.get(job.result.key)
                if hit is None:
                    misses.append(job)
                    continue
                self.report.cached += 1
                job.result.from_cache = True
                self.answered(job, hit.text, hit.finish_reason, hit.refusal, None)
            self.flush()
            self.emit()
        return misses

    # send

    def send(self, jobs: list[_Job], sender: _Sender, events: queue.Queue) -> None:
        self.sender = sender
        pool = _pool(len(jobs), self.opts.workers, self.report.notes)
        workers = getattr(pool, "_max_workers", 1)
        limit = self.opts.concurrency + 2 * workers
        outstanding = 0
        nxt = 0
        by_index = {j.index: j for j in jobs}

        def submit_encode(job: _Job) -> None:
            fut = pool.submit(encode_many, job.abs_images, self.opts.max_side, job.index)
            index = job.index
            fut.add_done_callback(lambda f: events.put(("encoded", index, f)))

        try:
            while nxt < len(jobs) or outstanding:
                while nxt < len(jobs) and outstanding < limit and not self.cancelled():
                    submit_encode(jobs[nxt])
                    nxt += 1
                    outstanding += 1
                if self.cancelled():
                    self._drain(events, by_index)
                    break
                try:
                    kind, index, payload = events.get(timeout=0.1)
                except queue.Empty:
                    self.flush()
                    self.emit()
                    continue
                job = by_index[index]
                if kind == "encoded":
                    try:
                        encoded: list[Encoded] = payload.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died (memory): encode here instead
                        self.report.notes.append(
                            f"an image worker failed ({type(exc).__name__}); encoding in this process from now on"
                        )
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = cf.ThreadPoolExecutor(2, thread_name_prefix="vlm-encode")
                        submit_encode(job)
                        continue
                    bad = next((e for e in encoded if e.error), None)
                    if bad is not None:
                        where = job.result.images[encoded.index(bad)] if len(encoded) == len(job.result.images) else ""
                        outstanding -= 1
                        self.finish(job, failed=f"{where}: {bad.error}" if where else bad.error)
                    else:
                        job.result.sent_sizes = [(e.width, e.height) for e in encoded]
                        uris = [e.data_uri for e in encoded if e.data_uri is not None]  # all: none has an error
                        body = {
                            "model": self.report.model,
                            "messages": _messages(job.result.system, job.result.prompt, uris),
                            "max_tokens": self.opts.max_tokens,
                        }
                        if self.opts.temperature is not None:
                            body["temperature"] = self.opts.temperature
                        sender.submit(job.index, body)
                elif kind == "answer":
                    outstanding -= 1
                    self._take_answer(job, payload)
                else:
                    outstanding -= 1
                    self.finish(job, failed=f"request failed: {payload}")
                self.flush()
                self.emit()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _drain(self, events: queue.Queue, by_index: dict[int, _Job]) -> None:
        """On cancel: answers that already arrived are kept (cached and written)."""
        while True:
            try:
                kind, index, payload = events.get_nowait()
            except queue.Empty:
                return
            if kind == "answer":
                self._take_answer(by_index[index], payload)

    def _take_answer(self, job: _Job, answer) -> None:
        self.report.requests += 1
        self.report.retries += len(answer.retries)
        self.report.prompt_tokens += answer.prompt_tokens or 0
        self.report.output_tokens += answer.completion_tokens or 0
        job.result.latency_s = round(answer.latency_s, 3)
        job.result.completion_tokens = answer.completion_tokens
        self.pending_cache.append(
            (
                job.result.key,
                self.report.model,
                vcache.CachedAnswer(
                    answer.text, answer.finish_reason, answer.refusal, answer.prompt_tokens, answer.completion_tokens
                ),
            )
        )
        self.answered(job, answer.text, answer.finish_reason, answer.refusal, answer)

    # results

    def answered(self, job: _Job, text: str, finish_reason: str | None, refusal: str | None, answer) -> None:
        r = job.result
        r.raw, r.finish_reason = text, finish_reason
        processed: Processed = process(
            text,
            finish_reason,
            refusal=refusal,
            start_with=self.opts.start_with,
            banned=self.opts.ban,
            fold=self.opts.fold,
        )
        r.text = processed.text
        if not processed.ok:
            r.flags = processed.flags
            self.finish(job, flagged=processed.reason)
            return
        if not self.opts.write:
            self.finish(job, status="answered")
            return
        final = processed.text
        if self.opts.mode == "append" and job.existing is not None and job.existing.content.strip():
            final = f"{job.existing.content.rstrip()} {processed.text}"
        r.text = final
        if job.existing is not None and job.existing.content == final:
            self.finish(job, status="unchanged")
            return
        self.pending_write.append((job, final))

    def finish(
        self, job: _Job, *, status: str | None = None, failed: str | None = None, flagged: str | None = None
    ) -> None:
        r = job.result
        if failed is not None:
            r.status, r.problem = "failed", failed
            self.report.failed += 1
        elif flagged is not None:
            r.status, r.problem = "flagged", flagged
            self.report.flagged += 1
        else:
            r.status = status or "written"
            if r.status == "written":
                self.report.written += 1
            elif r.status == "unchanged":
                self.report.unchanged += 1
            elif r.status == "answered":
                self.report.answered += 1
        self.done += 1
        keep = (not self.opts.write) or r.status in ("failed", "flagged") or self.kept < KEEP_RESULTS
        if keep:
            if self.opts.write and r.status not in ("failed", "flagged"):
                self.kept += 1
            self.report.results.append(r)
        if self.on_result is not None:
            self.on_result(r)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.pending_cache and (
            force or len(self.pending_cache) >= FLUSH_SIZE or now - self.last_flush >= FLUSH_INTERVAL_S
        ):
            vcache.put_many(self.pending_cache)  # first: an answer is never lost once received
            self.pending_cache = []
            self.last_flush = now
        if self.pending_write and (
            force or len(self.pending_write) >= FLUSH_SIZE or now - self.last_write >= WRITE_INTERVAL_S
        ):
            if self.pending_cache:  # the files never get ahead of the cache
                vcache.put_many(self.pending_cache)
                self.pending_cache = []
            batch, self.pending_write = self.pending_write, []
            self._write(batch)
            self.last_write = time.monotonic()

    def _write(self, batch: list[tuple[_Job, str]]) -> None:
        edits = []
        for job, text in batch:
            base = caption_state(job.existing) if self.opts.mode == "append" and job.existing is not None else UNSET
            edits.append(TextEdit(job.item, text, base))
        try:
            result = set_texts_many(edits, self.ctype, self.subtype, source=self.source)
        except DatasetBusy as exc:
            for job, _ in batch:
                self.finish(job, failed=f"not written: {exc}")
            return
        problems = {p.item_id: p.reason for p in result.problems}
        for job, _ in batch:
            if job.item.id in problems:
                self.finish(job, failed=f"not written: {problems[job.item.id]}")
            elif job.item.id in result.written:
                self.finish(job, status="written")
            else:
                self.finish(job, failed="not written (removed from the index meanwhile)")


# --- one reviewed caption ---------------------------------------------------------------------


def write_caption(
    item: Item | int,
    text: str,
    *,
    model: str,
    ctype: str = "natural_language",
    subtype: str | None = None,
    mode: str = "replace",
    base: Any = UNSET,
    force: bool = False,
) -> Caption:
    """Write one caption a person accepted in the review screen (``text`` as accepted,
    possibly edited) through the one atomic, conflict-checked write path, with source
    ``vlm_<model>``. ``mode`` append adds it after the current caption. ``base``: the
    file state the review screen showed (a change since is a CaptionConflict);
    ``force``: write over whatever the file holds now (the user chose "keep mine" in
    the conflict dialog). Raises CaptionConflict / CaptionFileError / DatasetBusy / VlmError."""
    item = item if isinstance(item, Item) else Item.get_by_id(item)
    ds = Dataset.get_by_id(item.dataset_id)
    if not subtype:
        subtype = next((s for s, t in (ds.caption_types or {}).items() if t == ctype), None) or DEFAULT_SUBTYPE.get(
            ctype, "caption"
        )
    if mode not in ("replace", "append"):
        raise VlmError(f"unknown mode {mode!r}: use replace or append")
    try:
        check_new_subtype(ds, subtype)
    except CaptionFileError as exc:
        raise VlmError(str(exc)) from exc
    text = text.strip()
    if mode == "append":
        existing = next(
            (c for c in _captions_of([item.id]).get(item.id, []) if c.type == ctype and c.subtype == subtype), None
        )
        if existing is not None and existing.content.strip():
            text = f"{existing.content.rstrip()} {text}"
            if base is UNSET:
                base = caption_state(existing)
    if force:
        base = False  # the file state expected: False is "any" (captions._expected)
    result = set_texts_many([TextEdit(item, text, base)], ctype, subtype, source=f"vlm_{model}")
    if result.problems:
        p = result.problems[0]
        if p.conflict is not None:
            raise p.conflict
        raise p.error if p.error is not None else CaptionFileError(p.reason)
    return (
        Caption.select()
        .where((Caption.item == item.id) & (Caption.type == ctype) & (Caption.subtype == result.written[item.id][0]))
        .first()
    )
