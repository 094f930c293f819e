"""Reading and writing tag-dictionary files (TAG-6): taglist JSON, the sushitui CSV and
the a1111 tag-autocomplete CSV.

Parsers turn a file into ``TagRow`` tuples plus ``RowProblem``s: a bad row is reported
with where it is and why, and the rest of the file goes on. No database access here.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from pathlib import Path
from typing import Iterable, NamedTuple, cast

from sushitui.errors import UserError
from sushitui.tags.normalize import clean, match_key

CATEGORIES = ("general", "artist", "copyright", "character", "meta", "model")
# taglist/<Name>.json file names, in the order the shipped folder lists them
CATEGORY_FILES = {c: f"{c.capitalize()}.json" for c in CATEGORIES}
SOURCES = ("danbooru", "user_custom", "auto_detected")
FORMATS = ("json", "csv", "tagcomplete")
# Danbooru category codes as used by the tag-autocomplete CSV
DANBOORU_CODES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"}
CODE_OF = {v: k for k, v in DANBOORU_CODES.items()}
# codes that exist only in e621 lists (2 contributor, 6 invalid, 7 meta, 8 lore; 5 is species there)
E621_CODES = {2, 6, 7, 8}
CSV_HEADER = ["tag", "category", "count", "display_name", "aliases", "description"]

_BAD_NAME_CHARS = re.compile("[,\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# two whitespace characters in a row, in names joined by newlines: a padded name or
# doubled whitespace (empty names and the ends of the text are checked apart)
_ODD_SPACE = re.compile(r"\s\s")


class DictionaryFileError(UserError):
    """A whole file cannot be read (missing, not JSON, unknown category); the message says what to do."""


class TagRow(NamedTuple):
    """One valid dictionary row from a file; ``where`` is e.g. ``General.json entry 12``."""

    tag: str
    category: str
    count: int  # type: ignore[assignment]  # shadows tuple.count, which no caller uses
    display_name: str | None
    aliases: tuple[str, ...]
    description: str
    where: str


@dataclass
class RowProblem:
    where: str
    tag: str
    reason: str

    def to_dict(self) -> dict:
        return {"where": self.where, "tag": self.tag, "reason": self.reason}


@dataclass
class Parsed:
    rows: list[TagRow] = field(default_factory=list)
    rejected: list[RowProblem] = field(default_factory=list)

    def add(self, row: TagRow | RowProblem) -> None:
        if isinstance(row, TagRow):
            self.rows.append(row)
        else:
            self.rejected.append(row)


# --- validation (TAG-5) -----------------------------------------------------------------


def name_problem(name: str, what: str = "tag name") -> str | None:
    """Why ``name`` cannot be a tag (None when it can)."""
    if not isinstance(name, str) or not clean(name):
        return f"the {what} is empty; give a name"
    bad = _BAD_NAME_CHARS.search(name)
    if bad:
        ch = bad.group(0)
        if ch == ",":
            return f"the {what} contains a comma, which separates tags in captions; remove it"
        return f"the {what} contains the control character U+{ord(ch):04X}; remove it"
    return None


def category_problem(category: object) -> str | None:
    if not isinstance(category, str) or category.strip().lower() not in CATEGORIES:
        return f"category {category!r} is not one of {', '.join(CATEGORIES)}"
    return None


_INTEGER = re.compile(r"[+-]?[0-9]+")  # one sign at most: "--1" is text, not a count
MAX_COUNT = 2**63 - 1  # SQLite's largest integer: a larger one cannot be stored


def parse_count(value: object) -> tuple[int | None, str | None]:
    """``(count, None)`` or ``(None, reason)``: an integer from 0 to ``MAX_COUNT``,
    given as int or digits."""
    if isinstance(value, bool):
        return None, f"count {value!r} is not an integer"
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        digits = value.strip().lstrip("+-")
        if len(digits.lstrip("0")) > len(str(MAX_COUNT)):  # int() of thousands of digits is refused or slow
            return None, f"count {digits[:20]}… is too large; counts are integers from 0 to {MAX_COUNT}"
        n = int(value.strip())
    elif isinstance(value, str) and value.strip() == "":
        return 0, None
    else:
        return None, f"count {value!r} is not an integer (a text where a count belongs)"
    if n < 0:
        return None, f"count {n} is negative; counts are integers ≥ 0"
    if n > MAX_COUNT:
        return None, f"count {n} is too large; counts are integers from 0 to {MAX_COUNT}"
    return n, None


def names_all_clean(names: list[str]) -> bool:
    """True when no name is empty, padded, or holds a comma/control character — one C-speed
    check over the joined names, so big files skip the per-row checks."""
    if not names or not all(names) or _BAD_NAME_CHARS.search("".join(names)):
        return False
    if names[0][0].isspace() or names[-1][-1].isspace():
        return False
    # Names cannot hold newlines (a control character, rejected above), so in the joined
    # text any whitespace next to another — a newline included — is a padded name or
    # doubled whitespace. ASCII: the only whitespace left is " " (the others are
    # controls), and three substring checks are 5× faster than the regex.
    joined = "\n".join(names)
    if joined.isascii():
        return "  " not in joined and " \n" not in joined and "\n " not in joined
    return not _ODD_SPACE.search(joined)


def split_aliases(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = str(value).split(",")
    return [c for c in (clean(p) for p in parts) if c]


def check_row(
    where: str,
    tag: object,
    category: object,
    count: object,
    display_name: object = None,
    aliases: object = None,
    description: object = "",
) -> TagRow | RowProblem:
    name = tag if isinstance(tag, str) else ("" if tag is None else str(tag))
    reason = name_problem(name) or category_problem(category)
    n, count_reason = parse_count(count)
    reason = reason or count_reason
    alias_list = split_aliases(aliases)
    if reason is None:
        for a in alias_list:
            reason = name_problem(a, f"alias {a!r}")
            if reason:
                break
    if reason is None and display_name is not None and _CONTROL.search(str(display_name)):
        reason = "the display name contains a control character; remove it"
    if reason is not None:
        return RowProblem(where, name, reason)
    assert isinstance(category, str) and n is not None  # both checked above: no reason
    dn = clean(str(display_name)) if display_name not in (None, "") else None
    return TagRow(clean(name), category.strip().lower(), n, dn, tuple(alias_list), str(description or ""), where)


# --- match keys in bulk -----------------------------------------------------------------

# Anything that makes match_key differ from "replace _ by space, lower": whitespace
# (folded), backslashes (``\\(``), doubled/leading/trailing underscores (folded/stripped).
_SLOW_NEEDLES = (" ", "\\", "__", "_\n", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85")
_UNICODE_SPACE = re.compile(r"[^\S\n]")


def _slow_positions(joined: str) -> list[int]:
    """Offsets in ``joined`` inside tags that need the full ``match_key`` rules."""
    pos: list[int] = []
    for needle in _SLOW_NEEDLES + ("\n_",):
        i = joined.find(needle)
        shift = 1 if needle == "\n_" else 0
        while i >= 0:
            pos.append(i + shift)
            i = joined.find(needle, i + 1)
    if joined.startswith("_"):
        pos.append(0)
    if joined.endswith("_"):
        pos.append(len(joined) - 1)
    if not joined.isascii():
        pos += [m.start() for m in _UNICODE_SPACE.finditer(joined)]
    return pos


def bulk_keys(tags: list[str]) -> list[str]:
    """``[match_key(t) for t in tags]``, ~10× faster for Danbooru-style names.

    The common case is done on one joined string in C; the few tags that need the full
    rules (whitespace, ``\\(``, possible kaomoji: short names with ``_``) go through
    ``match_key`` itself.
    """
    if not tags:
        return []
    joined = "\n".join(tags)
    keys = joined.replace("_", " ").lower().split("\n")
    if len(keys) != len(tags):  # a tag held a newline: cannot happen after validation
        return [match_key(t) for t in tags]
    slow = {i for i, n in enumerate(map(len, tags)) if n <= 8 and "_" in tags[i]}
    positions = _slow_positions(joined)
    if positions:
        import bisect

        # start offset of each tag in ``joined``
        starts = list(accumulate(map((1).__add__, map(len, tags)), initial=0))
        for p in positions:
            slow.add(bisect.bisect_right(starts, p) - 1)
    for i in slow:
        keys[i] = match_key(tags[i])
    return keys


# --- parsers ---------------------------------------------------------------------------


def category_from_filename(path: Path) -> str | None:
    stem = path.stem.strip().lower()
    return stem if stem in CATEGORIES else None


def detect_format(path: Path) -> str:
    """json for ``.json``; for CSV, the tag-autocomplete layout when the second column of
    the first row is a number, else the sushitui CSV."""
    if path.suffix.lower() == ".json":
        return "json"
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.reader(fh), None)
    except OSError as exc:
        raise DictionaryFileError(f"{path}: cannot read the file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DictionaryFileError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    if first and len(first) >= 2 and _INTEGER.fullmatch(first[1].strip()):
        return "tagcomplete"
    return "csv"


def _load_json(path: Path):
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except OSError as exc:
        raise DictionaryFileError(f"{path}: cannot read the file: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DictionaryFileError(f'{path}: not valid JSON ({exc}); a taglist file is {{"tag": count, ...}}') from exc
    except RecursionError as exc:  # the parser recurses once per level of [ or {
        raise DictionaryFileError(
            f'{path}: nested too deeply for the JSON parser; a taglist file is one flat object {{"tag": count, ...}}'
        ) from exc


def parse_taglist_json(path: Path, category: str | None = None) -> Parsed:
    """A taglist file ``{"tag": count}``; the category comes from the file name
    (``Character.json``) unless given."""
    path = Path(path)
    cat = (category or category_from_filename(path) or "").lower()
    if category_problem(cat):
        raise DictionaryFileError(
            f"{path.name}: cannot tell the category from the file name; name it like General.json "
            f"or pass --category ({', '.join(CATEGORIES)})"
        )
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DictionaryFileError(f'{path}: expected a JSON object {{"tag": count, ...}}, found {type(data).__name__}')
    out = Parsed()
    names = list(data.keys())
    counts = list(data.values())
    # Fast path (a 925k-tag load): every count an int ≥ 0, no name empty, padded or with
    # a comma/control character — checked on joined strings in C instead of per row.
    if all(type(c) is int and 0 <= c <= MAX_COUNT for c in counts) and names_all_clean(names):
        # plain tuples (a TagRow is a tuple): ~5× cheaper to build than the named kind
        out.rows = cast(
            "list[TagRow]", list(zip(names, repeat(cat), counts, repeat(None), repeat(()), repeat(""), repeat("")))
        )
        return out
    for i, (name, count) in enumerate(data.items(), 1):
        row = check_row(f"{path.name} entry {i}", name, cat, count)
        out.add(row)
    return out


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.reader(fh))
    except OSError as exc:
        raise DictionaryFileError(f"{path}: cannot read the file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DictionaryFileError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    except csv.Error as exc:
        raise DictionaryFileError(f"{path}: not a readable CSV file ({exc})") from exc


def parse_csv(path: Path, category: str | None = None) -> Parsed:
    """``tag,category,count,display_name,aliases,description`` (header optional; an
    empty category takes ``category`` when given)."""
    path = Path(path)
    out = Parsed()
    for lineno, rec in enumerate(_read_csv_rows(path), 1):
        if not rec or all(not c.strip() for c in rec):
            continue
        if lineno == 1 and [c.strip().lower() for c in rec[:3]] == CSV_HEADER[:3]:
            continue
        rec = rec + [""] * (6 - len(rec))
        tag, cat, count, display, aliases, desc = rec[:6]
        cat = cat.strip() or (category or "")
        row = check_row(f"{path.name} line {lineno}", tag, cat, count, display or None, aliases, desc)
        out.add(row)
    return out


def parse_tagcomplete(path: Path) -> Parsed:
    """The a1111 tag-autocomplete CSV: ``name,category_code,count,"alias1,alias2"`` with
    Danbooru codes. A file that uses e621 codes (2, 6, 7, 8) is rejected row by row:
    its 5 means *species*, so importing its other rows would mislabel them."""
    path = Path(path)
    recs = _read_csv_rows(path)
    e621_lines = []
    for lineno, rec in enumerate(recs, 1):
        if len(rec) >= 2 and _INTEGER.fullmatch(rec[1].strip()) and int(rec[1]) in E621_CODES:
            e621_lines.append(lineno)
    out = Parsed()
    for lineno, rec in enumerate(recs, 1):
        if not rec or all(not c.strip() for c in rec):
            continue
        where = f"{path.name} line {lineno}"
        tag = rec[0]
        code_text = rec[1].strip() if len(rec) > 1 else ""
        if not _INTEGER.fullmatch(code_text):
            out.rejected.append(
                RowProblem(where, tag, f"category code {code_text!r} is not a number (expected 0, 1, 3, 4 or 5)")
            )
            continue
        code = int(code_text)
        if code in E621_CODES:
            out.rejected.append(
                RowProblem(
                    where,
                    tag,
                    f"category code {code} is not a Danbooru code (0 general, 1 artist, 3 copyright, 4 character, 5 meta); "
                    "this looks like an e621 tag list, which sushitui does not import",
                )
            )
            continue
        if e621_lines:
            out.rejected.append(
                RowProblem(
                    where,
                    tag,
                    f"the file uses e621 category codes (e.g. line {e621_lines[0]}), whose numbers mean other "
                    "categories than Danbooru's (e621's 5 is species); not imported so nothing is mislabelled",
                )
            )
            continue
        if code not in DANBOORU_CODES:
            out.rejected.append(
                RowProblem(where, tag, f"category code {code} is not a Danbooru code (0, 1, 3, 4 or 5)")
            )
            continue
        count = rec[2] if len(rec) > 2 else ""
        aliases = rec[3] if len(rec) > 3 else ""
        row = check_row(where, tag, DANBOORU_CODES[code], count, None, aliases)
        out.add(row)
    return out


def parse_file(path: Path, fmt: str | None = None, category: str | None = None) -> Parsed:
    path = Path(path)
    if not path.is_file():
        raise DictionaryFileError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt == "json":
        return parse_taglist_json(path, category)
    if fmt == "csv":
        return parse_csv(path, category)
    if fmt == "tagcomplete":
        if category:
            raise DictionaryFileError(
                "--category does not apply to a tag-autocomplete CSV: each row has its category code"
            )
        return parse_tagcomplete(path)
    raise DictionaryFileError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def parse_alias_file(path: Path) -> tuple[dict[str, list[str]], list[RowProblem]]:
    """``aliases.json`` ``{tag: [alias, ...]}`` or ``aliases.csv``
    ``antecedent_name,consequent_name[,status]`` (Danbooru's tag_aliases export)."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    problems: list[RowProblem] = []
    if path.suffix.lower() == ".json":
        data = _load_json(path)
        if not isinstance(data, dict):
            raise DictionaryFileError(f'{path}: expected {{"tag": ["alias", ...]}}')
        for i, (tag, aliases) in enumerate(data.items(), 1):
            if not isinstance(aliases, list):
                problems.append(RowProblem(f"{path.name} entry {i}", str(tag), "aliases must be a list of names"))
                continue
            out[tag] = [str(a) for a in aliases]
        return out, problems
    for lineno, rec in enumerate(_read_csv_rows(path), 1):
        if len(rec) < 2 or (lineno == 1 and rec[0].strip() == "antecedent_name"):
            continue
        if len(rec) > 2 and rec[2].strip() not in ("", "active"):
            continue
        out.setdefault(rec[1].strip(), []).append(rec[0].strip())
    return out, problems


# --- writers ---------------------------------------------------------------------------


def write_taglist_json(path: Path, pairs: Iterable[tuple[str, int]]) -> int:
    data = dict(pairs)
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return len(data)


def write_csv(path: Path, rows: Iterable[tuple]) -> int:
    """Rows of ``tag, category, count, display_name, aliases, description``."""
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])
            n += 1
    return n
