"""Tag normalisation (TAG-9): the one module that decides what a tag is and when two match.

- The spelling written in a caption file is kept as the user wrote it (``clean`` only
  trims and folds whitespace); matching uses ``match_key``.
- ``_`` and space are equivalent for matching, except in kaomoji (``^_^``, ``>_<``,
  ``0_0``) where the underscore is the face.
- ``\\(`` and ``\\)`` (prompt-escaped parentheses) match ``(`` and ``)``.
- Matching is case-insensitive.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

_WS = re.compile(r"\s+")
_ALNUM_RUN = re.compile(r"[0-9A-Za-z]{2,}")
_SEPARATORS = re.compile(r"[,\n\r]")

# Known kaomoji tags (as used by the WD taggers' label handling) ...
KAOMOJI = frozenset(
    {
        "0_0",
        "(o)_(o)",
        "+_+",
        "+_-",
        "._.",
        "<o>_<o>",
        "<|>_<|>",
        "=_=",
        ">_<",
        "3_3",
        "6_9",
        ">_o",
        "@_@",
        "^_^",
        "o_o",
        "u_u",
        "x_x",
        "|_|",
        "||_||",
        "t_t",
        "q_q",
        "n_n",
        ";_;",
    }
)


def is_kaomoji(tag: str) -> bool:
    """A tag whose underscores are part of a face, not word separators.

    Beyond the known list, a short tag with an underscore, no run of two
    alphanumerics and at least one symbol (``;_;``, ``*_*``) is a face; ``c_d`` is not.
    """
    t = tag.strip()
    if t.lower() in KAOMOJI:
        return True
    return "_" in t and len(t) <= 8 and _ALNUM_RUN.search(t) is None and any(not (c.isalnum() or c in "_ ") for c in t)


@lru_cache(maxsize=1 << 16)
def clean(tag: str) -> str:
    """The display spelling: trimmed, inner whitespace folded to one space. Memoised like
    ``match_key``: captions repeat the same few thousand tags (a 10k-item bulk edit
    cleans ~400k of them)."""
    return _WS.sub(" ", tag).strip()


_ESCAPED_PAREN = re.compile(r"\\+([()])")


def unescape_parens(tag: str) -> str:
    """``\\(`` → ``(``; any run of backslashes before a parenthesis goes, so that
    unescaping (and so ``match_key``) is idempotent."""
    return _ESCAPED_PAREN.sub(r"\1", tag)


def escape_parens(tag: str) -> str:
    """``foo (bar)`` → ``foo \\(bar\\)`` (as prompt syntax needs); already escaped stays."""
    return re.sub(r"(?<!\\)([()])", r"\\\1", tag)


@lru_cache(maxsize=1 << 16)
def match_key(tag: str) -> str:
    """The key two tags are compared by: case-folded, ``_`` = space, ``\\(`` = ``(``."""
    t = clean(unescape_parens(tag))
    if not is_kaomoji(t):
        t = clean(t.replace("_", " "))
    return t.lower()


def underscores_to_spaces(tag: str) -> str:
    # Decided on the unescaped spelling, as match_key does, so the key never changes.
    return tag if is_kaomoji(unescape_parens(clean(tag))) else clean(tag.replace("_", " "))


def split_tags(text: str) -> list[str]:
    """Split a tag caption into tags: commas (and line breaks) separate, empties dropped,
    duplicates (by ``match_key``) removed keeping the first, spelling kept."""
    out: list[str] = []
    seen: set[str] = set()
    for part in _SEPARATORS.split(text):
        tag = clean(part)
        if not tag:
            continue
        key = match_key(tag)
        if key in seen:
            continue
        seen.add(key)
        out.append(tag)
    return out


def join_tags(tags: Iterable[str]) -> str:
    return ", ".join(tags)


def dedupe(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for t in tags:
        c = clean(t)
        k = match_key(c)
        if c and k not in seen:
            seen.add(k)
            out.append(c)
    return out


_SENTENCE_END = re.compile(r"[.!?。！？]\s")


def looks_like_tags(text: str) -> bool:
    """Whether a caption reads as comma-separated tags rather than prose (SCAN-6)."""
    body = text.strip()
    if not body:
        return True
    parts = [p.strip() for p in _SEPARATORS.split(body) if p.strip()]
    if not parts:
        return True
    words = [len(p.split()) for p in parts]
    if len(parts) == 1:
        # One short phrase is a tag ("1girl"); a sentence is prose.
        return words[0] <= 3 and not _SENTENCE_END.search(body + " ")
    long_parts = sum(1 for w in words if w > 6)
    mean = sum(words) / len(words)
    return mean <= 4 and long_parts <= max(1, len(parts) // 5)
