"""Prompt templates: what to ask a vision-language model, with per-item variables.

Variables (filled per item by ``fill``):

- ``{tags}``   the item's tags (its preferred tag caption), comma-separated
- ``{trigger}`` the trigger word given for the run (``--trigger``)
- ``{name}``   the item's base name (``cat_01``)
- ``{folder}`` the name of the item's folder (the dataset folder's name at its root)
- ``{caption:SUBTYPE}`` the text of the item's caption of that subtype (empty if none)

``{{`` and ``}}`` are literal braces. A ``{word}`` that is not a variable is an error
when the template is loaded, so a typo never reaches a thousand requests.

A template file is either plain text (the whole file is the user prompt) or TOML with
``prompt`` and optionally ``system``, ``type`` (natural_language | instruction |
description | social_media), ``images`` (``primary`` or ``source,target``) and
``description``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from sushitui.errors import UserError

CAPTION_TYPES = ("natural_language", "instruction", "description", "social_media", "prompt")
IMAGE_SETS = ("primary", "source,target")

_VAR = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
SIMPLE_VARS = ("tags", "trigger", "name", "folder")


class TemplateError(UserError, ValueError):
    """A template that cannot be used; the message names the file or variable."""


@dataclass(frozen=True)
class Template:
    name: str
    prompt: str
    system: str = ""
    ctype: str = "natural_language"  # the caption type the answer is written as
    images: str = "primary"  # primary | source,target (layout C groups: before and after)
    description: str = ""

    def variables(self) -> set[str]:
        """Variables used (``caption:alt`` for a caption variable)."""
        return used_variables(self.system) | used_variables(self.prompt)


BUILTIN: dict[str, Template] = {
    "flux": Template(
        "flux",
        system="You write captions for training text-to-image models. You describe exactly what is visible, "
        "in plain factual prose.",
        prompt="Describe this image in one detailed paragraph for training a text-to-image model such as Flux or "
        "SD3: the main subject and what it looks like (appearance, clothing, pose, expression), what it is doing, "
        "the setting and background, the lighting, the colours, the composition and camera angle, and the medium or "
        'art style. Do not begin with "This image" or "The image shows". No lists, no headings, no markdown.',
        description="one detailed paragraph for Flux / SD3 / Qwen-Image style training (natural_language)",
    ),
    "short": Template(
        "short",
        prompt="Write one short sentence (at most 25 words) that names the main subject of this image, what it is "
        "doing and where. No markdown.",
        description="one short sentence: subject, action, setting (natural_language)",
    ),
    "tags-to-prose": Template(
        "tags-to-prose",
        system="You turn booru tags into natural captions for training text-to-image models.",
        prompt="These booru tags describe the image: {tags}\n\nWrite one paragraph of natural prose that describes "
        "the image, using the facts the tags give and what you see. Keep character, series and artist names as they "
        "are. Do not list the tags, do not mention tags, no markdown.",
        description="turn the item's tags ({tags}) into one paragraph of prose, checked against the image (natural_language)",
    ),
    "edit-instruction": Template(
        "edit-instruction",
        system="You write editing instructions for training image-editing models.",
        prompt="The first image is the original. The second image is the same picture after an edit. Write the "
        'instruction that turns the first image into the second, as one imperative sentence (for example: "Make '
        'the sky orange and add a red scarf to the woman"). Mention only what changed. No markdown.',
        ctype="instruction",
        images="source,target",
        description="layout C groups: sends the source AND target images and writes the instruction that turns one "
        "into the other, as the item's instruction caption (Flux Kontext / Qwen-Image-Edit LoRAs)",
    ),
}
DEFAULT_TEMPLATE = "flux"


def used_variables(text: str) -> set[str]:
    out = set()
    for m in _VAR.finditer(text or ""):
        if m.group(1) is None:
            continue
        out.add(f"{m.group(1)}:{m.group(2)}" if m.group(2) is not None else m.group(1))
    return out


def check(text: str, where: str) -> None:
    """TemplateError for a ``{word}`` that is not a variable, or a bad ``{caption:…}``."""
    for m in _VAR.finditer(text or ""):
        name, arg = m.group(1), m.group(2)
        if name is None:
            continue
        if name == "caption":
            if not arg or not re.fullmatch(r"[A-Za-z0-9_-]+", arg):
                raise TemplateError(f"{where}: {m.group(0)} needs a caption subtype, e.g. {{caption:alt}}")
            continue
        if name not in SIMPLE_VARS or arg is not None:
            known = ", ".join("{" + v + "}" for v in SIMPLE_VARS) + ", {caption:SUBTYPE}"
            raise TemplateError(
                f"{where}: unknown variable {m.group(0)} (known: {known}; write {{{{ and }}}} for literal braces)"
            )


def fill(text: str, values: dict[str, str]) -> str:
    """The text with variables replaced (``values`` keyed like ``used_variables``)."""

    def sub(m: re.Match) -> str:
        whole = m.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        key = f"{m.group(1)}:{m.group(2)}" if m.group(2) is not None else m.group(1)
        return values.get(key, "")

    return _VAR.sub(sub, text or "")


def load_template(name_or_file: str | None, *, prompt: str | None = None, system: str | None = None) -> Template:
    """A built-in template by name, or a template file; ``prompt``/``system`` replace
    the template's own. Raises TemplateError."""
    key = (name_or_file or DEFAULT_TEMPLATE).strip()
    if key in BUILTIN:
        tpl = BUILTIN[key]
    else:
        path = Path(key).expanduser()
        if not path.is_file():
            raise TemplateError(f"no template named {key!r}: use one of {', '.join(BUILTIN)} or a file path")
        tpl = _from_file(path)
    if prompt is not None:
        tpl = replace(tpl, prompt=prompt)
    if system is not None:
        tpl = replace(tpl, system=system)
    if not tpl.prompt.strip():
        raise TemplateError(f"template {tpl.name!r}: the prompt is empty")
    check(tpl.prompt, f"template {tpl.name!r} prompt")
    check(tpl.system, f"template {tpl.name!r} system prompt")
    return tpl


def _from_file(path: Path) -> Template:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the template: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: the template is not UTF-8 text") from None
    if path.suffix.lower() != ".toml":
        return Template(path.stem, prompt=text.strip(), description=f"from {path}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"prompt", "system", "type", "images", "description", "name"}
    if unknown:
        raise TemplateError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: prompt, system, type, images, description)"
        )
    for key in ("prompt", "system", "type", "images", "description", "name"):
        if key in doc and not isinstance(doc[key], str):
            raise TemplateError(f"{path}: {key} must be a string")
    if "prompt" not in doc:
        raise TemplateError(f'{path}: a template needs a prompt = "..."')
    ctype = doc.get("type", "natural_language")
    if ctype not in CAPTION_TYPES:
        raise TemplateError(f"{path}: type {ctype!r} is not a text caption type ({', '.join(CAPTION_TYPES)})")
    images = doc.get("images", "primary").replace(" ", "")
    if images not in IMAGE_SETS:
        raise TemplateError(f"{path}: images {doc['images']!r}: use primary or source,target")
    return Template(
        doc.get("name") or path.stem,
        doc["prompt"].strip(),
        doc.get("system", "").strip(),
        ctype,
        images,
        doc.get("description", f"from {path}"),
    )


def list_templates() -> list[Template]:
    return list(BUILTIN.values())
