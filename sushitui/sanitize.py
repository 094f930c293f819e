"""Neutralise text from files before it reaches a terminal or a JSON document (NF-4).

File names, captions, EXIF fields and tag names can carry ESC sequences (cursor moves,
OSC 52 clipboard writes, title changes), C0/C1 control characters and bidi overrides
that make text display in a different order than it is stored. ``for_terminal`` turns
each into a visible escape (``\\x1b``, ``\\u202e``) so the user sees that it is there and
the terminal never interprets it. ``json_escape_controls`` does the same inside JSON
with ``\\uXXXX`` escapes, which any JSON reader turns back into the original text.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Lone surrogates \udc80-\udcff are the bytes of a file name that is not UTF-8
# (os.fsdecode's surrogateescape); a terminal cannot be sent them, so they are shown as
# the byte they stand for.
_SURROGATES = "\udc80-\udcff"
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + _SURROGATES + "]")
_UNSAFE_ML = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\t" + _BIDI + "]")
# In a JSON document these characters can only stand inside strings (json.dumps escapes
# C0 itself; DEL, C1, bidi controls, the line/paragraph separators and lone surrogates it
# leaves raw with ensure_ascii=False).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029" + _BIDI + "\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    ch = match.group(0)
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
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


def json_escape_controls(document: str) -> str:
    """A ``json.dumps(..., ensure_ascii=False)`` document with C1 controls, DEL, bidi
    controls, U+2028/U+2029 and lone surrogates written as ``\\uXXXX`` escapes: the
    same JSON value (``json.loads`` gives back the exact strings), no raw control
    character on the wire."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", document)


def is_clean(text: str) -> bool:
    return _UNSAFE_ML.search(text) is None and "\n" not in text
