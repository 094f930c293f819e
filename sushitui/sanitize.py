"""Neutralise text from files before it reaches a terminal (NF-4).

File names, captions, EXIF fields and tag names can carry ESC sequences (cursor moves,
OSC 52 clipboard writes, title changes), C0/C1 control characters and bidi overrides
that make text display in a different order than it is stored. ``for_terminal`` turns
each into a visible escape (``\\x1b``, ``\\u202e``) so the user sees that it is there and
the terminal never interprets it.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "]")
_UNSAFE_ML = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\t" + _BIDI + "]")


def _escape(match: re.Match) -> str:
    ch = match.group(0)
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: object, *, multiline: bool = False) -> str:
    """Text safe to print: controls and bidi overrides shown as escapes.

    Newlines and tabs are escaped too unless ``multiline`` (then ``\\n`` is kept,
    ``\\r`` is escaped since it rewrites the line).
    """
    s = "" if text is None else str(text)
    if multiline:
        return _UNSAFE.sub(_escape, s).replace("\t", "    ")
    return _UNSAFE.sub(_escape, s).replace("\n", "\\n").replace("\t", "\\t")


def is_clean(text: str) -> bool:
    return _UNSAFE_ML.search(text) is None and "\n" not in text
