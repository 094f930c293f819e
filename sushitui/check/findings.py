"""The findings ``sushitui check`` reports: codes, severities, fixes, and the pure checks of
one image's facts and one caption's text (no database, no files).

A finding has a stable ``code`` (``check:CODE`` in queries), a severity (``error``: the
trainer fails on or skips the item; ``warning``: it trains, but worse than the user thinks;
``info``: worth a look), a message about this item and the fix.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from sushitui.tags.normalize import match_key

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Code:
    code: str
    severity: str
    title: str
    fix: str


CODES: dict[str, Code] = {
    c.code: c
    for c in [
        # buckets
        Code(
            "upscaled",
            "warning",
            "upscaled into its bucket",
            "use a larger source image, or train at a lower resolution / with bucket_no_upscale",
        ),
        Code(
            "cropped",
            "warning",
            "much of the image is cropped away",
            "crop the image to its bucket's aspect ratio yourself, so the trainer does not cut the subject",
        ),
        Code(
            "small_bucket",
            "warning",
            "bucket holds fewer images than the batch size",
            "add images of this aspect ratio, crop these to a neighbouring bucket, or lower the batch size",
        ),
        # images
        Code(
            "small_image",
            "warning",
            "smaller than the training resolution",
            "replace it with a larger version, or train at a lower resolution",
        ),
        Code("extreme_aspect", "warning", "extreme aspect ratio", "crop it closer to 1:1 (at most 3:1)"),
        Code(
            "alpha",
            "warning",
            "has transparency",
            "flatten it onto the background you want (trainers flatten onto black or white)",
        ),
        Code("cmyk", "warning", "CMYK colour", "convert it to RGB with a colour-managed tool"),
        Code("high_bit_depth", "info", "16-bit or float samples", "convert it to 8-bit RGB; trainers reduce it anyway"),
        Code("palette", "info", "palette (indexed) colour", "convert it to RGB"),
        Code(
            "exif_rotation",
            "warning",
            "EXIF orientation the trainer ignores",
            "rotate the pixels (e.g. exiftran -ai, or save it rotated) so it trains upright",
        ),
        Code(
            "animated", "warning", "animated: only the first frame trains", "export the frame you want as a still image"
        ),
        Code("unreadable", "error", "cannot be decoded", "re-export or re-download the image, or remove it"),
        Code(
            "not_hashed",
            "info",
            "not inspected",
            "run sushitui check again (the image had no sha256: reindex the dataset)",
        ),
        # captions
        Code("missing_caption", "error", "no caption", "write a caption (sushitui tags add, or the tagger)"),
        Code("empty_caption", "error", "empty caption", "write a caption or delete the empty file"),
        Code(
            "trigger_only",
            "warning",
            "caption is only the trigger word",
            "describe what varies in the image after the trigger word",
        ),
        Code(
            "unbalanced",
            "warning",
            "unbalanced brackets or weights",
            "close the bracket, or escape literal ones as \\( \\) (kaga \\(kancolle\\))",
        ),
        Code(
            "control_chars",
            "warning",
            "control or invisible characters",
            "retype the caption, or remove the characters",
        ),
        Code(
            "mixed_prose",
            "info",
            "tag caption with prose in it",
            "split the sentence into tags, or move it to a natural-language caption",
        ),
        Code("duplicate_tags", "info", "the same tag twice", "remove the repeats (sushitui tags dedupe)"),
        # tokens
        Code(
            "clip_tokens",
            "warning",
            "longer than CLIP reads",
            "shorten the caption to 75 CLIP tokens, or train with --max_token_length 225 (sd-scripts)",
        ),
        Code(
            "clip_tokens_long",
            "error",
            "longer than CLIP reads even with --max_token_length 225",
            "shorten the caption below 225 CLIP tokens",
        ),
        Code("t5_tokens", "warning", "longer than T5 reads (512)", "shorten the caption below 512 T5 tokens"),
        # duplicates
        Code(
            "exact_duplicate",
            "warning",
            "the same file is in the index more than once",
            "keep one copy (sushitui check --json lists where the others are)",
        ),
        Code(
            "near_duplicate", "info", "looks like another image", "keep the best one, unless the differences are wanted"
        ),
    ]
}


@dataclass
class Finding:
    code: str
    message: str
    detail: dict = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return CODES[self.code].severity

    @property
    def fix(self) -> str:
        return CODES[self.code].fix

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"code": self.code, "severity": self.severity, "message": self.message, "fix": self.fix}
        if self.detail:
            out["detail"] = self.detail
        return out


# --- images ---------------------------------------------------------------------------------

EXTREME_ASPECT = 3.0
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def image_findings(
    *,
    width: int | None,
    height: int | None,
    resolution: int,
    mode: str | None,
    bits: int | None,
    orientation: int | None,
    frames: int | None,
    error: str | None,
    trainer: str,
    exif_transpose: bool,
) -> list[Finding]:
    out: list[Finding] = []
    if error:
        out.append(Finding("unreadable", error))
        return out
    if width and height:
        if width * height < resolution * resolution:
            factor = (resolution * resolution / (width * height)) ** 0.5
            out.append(
                Finding(
                    "small_image",
                    f"{width}×{height} is below {resolution}×{resolution} (upscaled {factor:.2f}× to reach it)",
                    {"factor": round(factor, 3)},
                )
            )
        ratio = max(width / height, height / width)
        if ratio > EXTREME_ASPECT:
            out.append(Finding("extreme_aspect", f"{width}×{height} is {ratio:.1f}:1", {"ratio": round(ratio, 3)}))
    if mode:
        if mode in ALPHA_MODES:
            flat = "white" if trainer == "diffusion-pipe" else "black, or whatever colour the transparent pixels hold"
            out.append(
                Finding("alpha", f"mode {mode}: {trainer} drops the alpha channel (transparent areas become {flat})")
            )
        elif mode == "CMYK":
            out.append(Finding("cmyk", "mode CMYK: converted to RGB without colour management, colours shift"))
        elif mode == "P":
            out.append(Finding("palette", "mode P (indexed colours)"))
    if bits and bits > 8:
        out.append(Finding("high_bit_depth", f"{bits}-bit samples (mode {mode})"))
    if orientation and orientation != 1 and not exif_transpose:
        turn = {
            2: "mirrored",
            3: "upside down",
            4: "flipped",
            5: "mirrored and turned",
            6: "turned 90°",
            7: "mirrored and turned",
            8: "turned 90°",
        }.get(orientation, f"orientation {orientation}")
        out.append(
            Finding(
                "exif_rotation",
                f"EXIF orientation {orientation}: viewers rotate it, {trainer} does not, so it trains {turn}",
                {"orientation": orientation},
            )
        )
    if frames and frames > 1:
        out.append(Finding("animated", f"{frames} frames", {"frames": frames}))
    return out


# --- captions ---------------------------------------------------------------------------------

_ALLOWED_CONTROL = set("\n\r\t")
_WEIGHT = re.compile(r"\(([^()]*):([^()]*)\)")
_NUMBER = re.compile(r"\s*-?\d+(\.\d+)?\s*$")
_SENTENCE = re.compile(r"[.!?。！？](\s|$)")
_TAG_SPLIT = re.compile(r"[,\n]")


def _control_class() -> re.Pattern[str]:
    """One character class of every Cc and Cf code point but tab, newline, carriage return
    and the zero-width joiner (it joins emoji), built once: a C-speed scan per caption."""
    import sys

    ranges: list[list[int]] = []
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if ch in _ALLOWED_CONTROL or ch == "\u200d" or unicodedata.category(ch) not in ("Cc", "Cf"):
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{parts}]")


_CONTROL: re.Pattern[str] | None = None


def control_chars(text: str) -> list[str]:
    global _CONTROL
    # every Cc and Cf character is non-printable, so a printable text (one C pass, no
    # regex) has none; tab and newline make a text non-printable and take the regex path
    if text.isprintable():
        return []
    if _CONTROL is None:
        _CONTROL = _control_class()
    return sorted({f"U+{ord(ch):04X}" for ch in _CONTROL.findall(text)})


_BRACKETS = re.compile(r"[()\[\]{}\\]")


def bracket_problems(text: str) -> list[str]:
    """Unbalanced ( ) [ ] { } (escaped \\( \\) do not count) and weights that are not numbers."""
    problems: list[str] = []
    if _BRACKETS.search(text) is None:  # no bracket, so no weight either: most captions
        return problems
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    skip_to = -1
    for m in _BRACKETS.finditer(text):  # only the brackets and backslashes, not every character
        i, ch = m.start(), m.group()
        if i < skip_to:
            continue
        if ch == "\\":
            skip_to = i + 2
            continue
        if ch in "([{":
            stack.append((ch, i))
        elif stack and stack[-1][0] == pairs[ch]:
            stack.pop()
        else:
            problems.append(f"'{ch}' at {i + 1} closes nothing")
    problems += [f"'{ch}' at {pos + 1} is never closed" for ch, pos in stack]
    if ":" not in text:
        return problems
    unescaped = re.sub(r"\\.", "  ", text)
    for m in _WEIGHT.finditer(unescaped):
        if not _NUMBER.match(m.group(2)):
            problems.append(f"weight '{text[m.start() : m.end()]}' is not a number")
    return problems


def caption_findings(text: str, *, is_tags: bool, trigger: str | None) -> list[Finding]:
    """Checks of one caption's text (presence is checked by the caller)."""
    out: list[Finding] = []
    body = text.strip()
    if not body:
        return [Finding("empty_caption", "the caption is empty")]
    bare = body.strip(" ,")
    # the length test first: match_key of every whole caption would fill its cache for nothing
    if trigger and len(bare) <= 2 * len(trigger) + 8 and match_key(bare) == match_key(trigger):
        out.append(Finding("trigger_only", f"only '{trigger}'"))
    bad = control_chars(text)
    if bad:
        out.append(Finding("control_chars", ", ".join(bad[:8]), {"chars": bad}))
    problems = bracket_problems(text)
    if problems:
        out.append(Finding("unbalanced", "; ".join(problems[:3]), {"problems": problems}))
    if is_tags:
        # map/filter keep the per-tag work in C: a check of 100k captions splits ~2.5M tags
        parts = list(filter(None, map(str.strip, _TAG_SPLIT.split(body))))
        sentence = _SENTENCE.search(body) is not None
        # without a sentence mark only a part with five spaces is prose: the most spaces of
        # any part, counted in C, says whether the per-part test below can find one
        if sentence or (parts and max(map(str.count, parts, repeat(" "))) >= 5):
            prose = [p for p in parts if p.count(" ") >= 5 or (sentence and p.count(" ") >= 2 and _SENTENCE.search(p))]
            if prose:
                out.append(Finding("mixed_prose", f"'{prose[0][:60]}'", {"parts": prose[:5]}))
        keys = list(map(match_key, parts))
        if len(set(keys)) != len(keys):
            seen: set[str] = set()
            repeats: list[str] = []
            for p, k in zip(parts, keys):
                if k in seen and p not in repeats:
                    repeats.append(p)
                seen.add(k)
            out.append(Finding("duplicate_tags", ", ".join(repeats[:5]), {"tags": repeats}))
    return out
