"""Natural ("human") order for file names as a byte-sortable key.

``1, 2, 10`` instead of ``1, 10, 2``; ``File`` next to ``file``; ``é`` next to ``e``. The key
is a plain string whose binary (UTF-8 / code point) order is the natural order, so SQLite
sorts it with its default BINARY collation and an ordinary index (``Item.name_key``):
no Python collation runs inside ORDER BY, and the browser's first page at 1M items reads
one index range.

Key layout, per ``/``-separated path component:
- text runs: NFKD, combining marks dropped, case-folded (``É`` and ``e`` compare equal);
- ASCII digit runs: ``NUM``, one character giving the run's length without leading zeros,
  then the digits, so a shorter number sorts first (``2`` < ``10``) and ``007`` equals ``7``;
- ``SEP`` between components (lower than any text: a folder's own items before ``a b/``);
then ``TIE`` and the original name, which breaks ties (``a01`` vs ``a1``, ``File`` vs
``file``) and makes the key unique wherever the name is.

Migration 4 holds a frozen copy of this function (migrations never import live code);
tests/test_natural_sort.py fails when the two disagree: change both and add a migration
that recomputes the column.
"""

from __future__ import annotations

import re
import unicodedata

TIE = "\x01"
SEP = "\x02"
NUM = "\x03"
_DIGITS = re.compile(r"[0-9]+")


def _number(m: re.Match) -> str:
    digits = m.group().lstrip("0")
    return NUM + chr(0x30 + len(digits)) + digits


def _fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def natural_key(name: str) -> str:
    """The sort key of a file name or dataset-relative path (``a/b/img10``)."""
    folded = _DIGITS.sub(_number, _fold(name).replace("/", SEP))
    return folded + TIE + name


def natural_sorted(names):
    """``names`` (strings) in natural order."""
    return sorted(names, key=natural_key)
