"""Tag translations (issue 22): a tag's name in the user's language — 猫耳 for ``cat_ears``.

Files:

- ``csv``: ``tag,translation[,reading]``, with or without a header row;
- ``tagcomplete``: the a1111 tag-autocomplete translation file, ``tag,translation`` or its
  older three-column form ``tag,category,translation``.

Both: UTF-8 with or without BOM (a Chinese/Japanese/Korean file in GB18030/CP932/CP949 is
read too, and the report says so), CRLF or LF, several translations of one tag separated
by ``|``. Damage real files carry is reported row by row with file, line and reason and
the rest is imported: empty values, spreadsheet errors (``#NAME?``, ``#VALUE!``), stray
quotes (repaired, reported), a tag list or an e621 file passed as a translation file.
A row naming an alias is stored under the alias's target tag; a row for a tag that is
not in the dictionary is kept, marked (``in_dictionary = 0``) and reported.

Storage: ``tag_translation`` (one row per alternative), keyed by the tag's match key so
a dictionary reload keeps them. ``search_key`` is what search and autocomplete compare:
NFKC, case-folded, katakana as hiragana (ネコ finds ねこ). Nothing here touches Textual.
"""

from __future__ import annotations

import csv
import gc
import json
import operator
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressCallback, ProgressEvent, Throttle
from sushitui.store import current_database, write_transaction
from sushitui.store.deferred_index import build_indexes
from sushitui.tags.dictionary_formats import (
    E621_CODES,
    DictionaryFileError,
    RowProblem,
    bulk_keys,
    name_problem,
    names_all_clean,
)
from sushitui.tags.normalize import match_key

FORMATS = ("csv", "tagcomplete")
CONFLICT_MODES = ("skip", "update")
MAX_TEXT = 100  # cells of one translation; longer is a merged line or a description
LANG_SETTING = "tag_lang"  # app_setting: the language shown beside tags
PILLS_SETTING = "pill_translations"  # app_setting: pills show translations (toggle key)
# when a file is not UTF-8: what files for these languages are usually saved as
FALLBACK_ENCODINGS = {"zh": "gb18030", "ja": "cp932", "ko": "cp949"}
HEADER_NAMES = {"tag", "tags", "name", "english", "en", "danbooru", "original", "key"}

_LANG = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*")
_SPREADSHEET_ERROR = re.compile(
    r"#(NAME\?|VALUE!|REF!|DIV/0!|N/A|NUM!|NULL!|SPILL!|CALC!|FIELD!|BLOCKED!|UNKNOWN!|CONNECT!|BUSY!|ERROR!|GETTING_DATA)",
    re.IGNORECASE,
)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# The fast path (a 150k-row file is nearly all plain lines): one pattern over the whole text
# vouches for the lines that need none of _check_row's care, and only the others are read
# line by line. A field it vouches for has no quote, "#" (spreadsheet errors), control
# character, comma, tab or padding, only single inner spaces, no empty or bare-number
# alternative; lengths and what repeats the tag are checked in Python (str.isascii and len
# are O(1): faster there than as lookaheads). A line the pattern does not vouch for matches
# the empty tail (".*"), so findall gives exactly one (tag, text, reading) per line, in
# order: its index is the line number.
_C = r'\s,"#|\x00-\x1f\x7f-\x9f\u2028\u2029'
_WORD = f"[^{_C}]+(?:[ ][^{_C}]+)*"
_NOT_NUMBER = r"(?![+-]?[0-9]+(?:[,|]|$))"
_PLAIN_LINE = re.compile(
    f"^(?:({_WORD}),({_NOT_NUMBER}{_WORD}(?:\\|{_NOT_NUMBER}{_WORD})*)(?:,((?:{_WORD})?(?:\\|(?:{_WORD})?)*))?$)?.*$",
    re.MULTILINE,
)
_KATAKANA_TO_HIRAGANA = {c: c - 0x60 for c in range(0x30A1, 0x30F7)}
_KATAKANA = re.compile("[\u30a1-\u30f6]+")
_SPACES = re.compile(r"[^\S\n]+")


class TranslationError(UserError):
    """A translation operation cannot be done as asked; the message says why."""


# --- keys -------------------------------------------------------------------------------------


def normalize_lang(lang: str) -> str:
    """``ja``, ``zh``, ``zh-tw`` … (lower case, ``_`` read as ``-``); anything else is an error."""
    code = (lang or "").strip().lower().replace("_", "-")
    if not _LANG.fullmatch(code):
        raise TranslationError(
            f"{lang!r} is not a language code; use a code like ja, zh, zh-tw or ko (ISO 639, optionally with a region)"
        )
    return code


def search_key(text: str) -> str:
    """What search and autocomplete compare: NFKC (full-width Ａ and half-width ｶ fold),
    case-folded, katakana as hiragana, whitespace folded."""
    if text.isascii():
        return " ".join(text.lower().split())
    t = unicodedata.normalize("NFKC", text).casefold().translate(_KATAKANA_TO_HIRAGANA)
    return " ".join(t.split())


def search_keys(texts: list[str]) -> list[str]:
    """``[search_key(t) for t in texts]`` for stripped texts without newlines, done on one
    joined string (an import of 150k rows)."""
    if not texts:
        return []
    joined = "\n".join(texts)
    if joined.isascii():
        folded = joined.lower()
    else:
        # katakana runs through a pattern: str.translate with a dict looks up every character
        # (5× slower on 150k translations)
        folded = _KATAKANA.sub(_as_hiragana, unicodedata.normalize("NFKC", joined).casefold())
    folded = _SPACES.sub(" ", folded)
    keys = folded.split("\n")
    if len(keys) != len(texts):  # normalisation made or ate a line break: the slow way
        return [search_key(t) for t in texts]
    if " " not in folded:
        return keys
    return [k.strip() if k[:1] == " " or k[-1:] == " " else k for k in keys]


def _as_hiragana(m: re.Match) -> str:
    return m.group().translate(_KATAKANA_TO_HIRAGANA)


def spreadsheet_error(value: str) -> str | None:
    """``#NAME?`` when ``value`` is a spreadsheet's error value, else None."""
    v = value.strip()
    return v.upper() if v.startswith("#") and _SPREADSHEET_ERROR.fullmatch(v) else None


# --- reading files ----------------------------------------------------------------------------


# One usable row: (tag, [translations], [reading or None per translation], line). A plain
# tuple: a 150k-row file makes 150k of them, and a NamedTuple costs 3× as much to build.
TranslationRow = tuple
_LINE_OF = operator.itemgetter(3)


@dataclass
class ParsedTranslations:
    rows: list[TranslationRow] = field(default_factory=list)
    rejected: list[RowProblem] = field(default_factory=list)
    repaired: list[RowProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fmt: str = "csv"
    encoding: str = "utf-8"
    lines: int = 0


def _decode(path: Path, lang: str | None) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except IsADirectoryError as exc:
        raise DictionaryFileError(f"{path}: is a folder; give a translation file (tag,translation CSV)") from exc
    except OSError as exc:
        raise DictionaryFileError(f"{path}: cannot read the file: {exc.strerror}") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        fallback = FALLBACK_ENCODINGS.get((lang or "").split("-")[0])
        if fallback:
            try:
                return data.decode(fallback), fallback
            except UnicodeDecodeError:
                pass
        where = data[: exc.start].count(b"\n") + 1
        raise DictionaryFileError(
            f"{path}: not UTF-8 text (line {where}: {exc.reason})"
            + (f", nor {fallback.upper()}" if fallback else "")
            + "; save it as UTF-8 and import it again"
        ) from exc


def _split(line: str) -> tuple[list[str], bool]:
    """The fields of one line, and whether a stray quote had to be dropped. A quoted field
    never runs on into the next line: an unbalanced quote there is damage, not a field
    with a line break (which would swallow the rest of the file)."""
    if '"' not in line:
        return line.split(","), False
    if line.count('"') % 2 == 0:
        return next(csv.reader([line])), False
    return [f.strip().replace('"', "") for f in line.split(",")], True


def _looks_like_header(fields: list[str], lang: str | None) -> bool:
    first = fields[0].strip().strip('"').lower()
    second = fields[1].strip().lower() if len(fields) > 1 else ""
    return (
        first in HEADER_NAMES
        or second in {"translation", "translations", "text", "reading"}
        or (bool(lang) and second == lang)
    )


def parse_file(path: str | Path, fmt: str | None = None, lang: str | None = None) -> ParsedTranslations:
    """Rows of a translation file; bad rows become ``rejected`` (file, line, reason)."""
    path = Path(path)
    if not path.exists():
        raise DictionaryFileError(f"{path}: no such file")
    if fmt is not None and fmt not in FORMATS:
        raise DictionaryFileError(f"unknown translation format {fmt!r}; use one of {', '.join(FORMATS)}")
    text, encoding = _decode(path, lang)
    if "\r" in text:  # CRLF (or a lone CR) ends a line like LF
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = ParsedTranslations(encoding=encoding, lines=len(lines))
    if encoding != "utf-8":
        out.notes.append(f"{path.name}: read as {encoding.upper()} (the file is not UTF-8)")
    name = path.name
    head = _split_lines(lines, range(1, len(lines) + 1), limit=51)
    if not head:
        out.notes.append(f"{name}: the file has no rows")
        return out
    # A header row (tag,translation) is skipped wherever the data starts.
    header_line = 0
    if _looks_like_header(head[0][1], lang):
        header_line = head[0][0]
        out.notes.append(f"{name} line {header_line}: header row skipped")
        head = head[1:]
    sample = [f for _n, f, _r in head[:50]]
    if _is_tag_list(sample):
        _refuse_tag_list(path, _split_lines(lines, range(header_line + 1, len(lines) + 1)))
    old_format = (
        fmt != "csv" and sum(1 for f in sample if len(f) >= 3 and _INTEGER.fullmatch(f[1].strip())) > len(sample) // 2
    )
    out.fmt = "tagcomplete" if (fmt == "tagcomplete" or old_format) else "csv"
    e621_line = None
    if old_format:
        split = _split_lines(lines, range(header_line + 1, len(lines) + 1))
        for n, f, _r in split:
            if len(f) >= 3 and _INTEGER.fullmatch(f[1].strip()) and (int(f[1]) in E621_CODES or int(f[1]) < 0):
                e621_line = n
                break
    else:
        # the lines _PLAIN_LINE vouches for become rows here; the rest go through _check_row below
        out.rows, careful = _plain_rows(text, len(lines), header_line, readings=out.fmt == "csv")
        split = _split_lines(lines, careful)
    for n, fields, repaired in split:
        where = f"{name} line {n}"
        tag = fields[0].strip()
        if old_format:
            code = fields[1].strip() if len(fields) > 1 else ""
            text_field = ",".join(fields[2:]) if len(fields) > 2 else ""
            reading_field = ""
            if e621_line is not None:
                reason = (
                    f"category code {code} is not a Danbooru code; this is an e621 translation list"
                    if _INTEGER.fullmatch(code) and (int(code) in E621_CODES or int(code) < 0)
                    else f"the file uses e621 category codes (e.g. line {e621_line}): its tags are e621's, "
                    "not Danbooru's, so none is imported"
                )
                out.rejected.append(RowProblem(where, tag, reason))
                continue
        else:
            text_field = fields[1] if len(fields) > 1 else ""
            reading_field = fields[2] if len(fields) > 2 and out.fmt == "csv" else ""
            if len(fields) > 3 and out.fmt == "csv":
                # a translation with commas that was not quoted: keep it whole
                text_field = ",".join(fields[1:])
                reading_field = ""
        if repaired:
            out.repaired.append(RowProblem(where, tag, 'stray quote removed (an unbalanced " in the line)'))
        row = _check_row(where, tag, text_field, reading_field, out.rejected)
        if row is not None:
            out.rows.append((row[0], row[1], row[2], n))
    if split and not old_format:
        out.rows.sort(key=_LINE_OF)  # file order: the first row of a tag gives its first translation
    return out


def _split_lines(lines: list[str], numbers: Iterable[int], limit: int | None = None) -> list:
    """(line number, fields, stray quote repaired) of the non-blank lines among ``numbers``
    (1-based), at most ``limit`` of them."""
    out = []
    for n in numbers:
        line = lines[n - 1]
        if line and not line.isspace():
            out.append((n, line.split(","), False) if '"' not in line else (n, *_split(line)))
            if limit is not None and len(out) >= limit:
                break
    return out


def _plain_rows(text: str, n_lines: int, header_line: int, readings: bool) -> tuple[list, list[int]]:
    """The rows of the lines ``_PLAIN_LINE`` vouches for, and the numbers of the other
    lines (blank, damaged, or every translation the tag itself), in file order."""
    found = _PLAIN_LINE.findall(text)
    if len(found) < n_lines:  # cannot happen (one match per line); read every line with care then
        return [], list(range(header_line + 1, n_lines + 1))
    del found[n_lines:]  # the empty match after the last line break
    if header_line:
        found[header_line - 1] = ("", "", "")
    if not readings:  # --format tagcomplete: a third column is not a reading
        found = [(t, x, "") for t, x, _r in found]
    # one CJK translation, at most one reading: nothing left to check (nearly every row of
    # a 150k-row file)
    rows = [
        (t, [x], [r or None], n)
        for n, (t, x, r) in enumerate(found, 1)
        if t and not x.isascii() and len(x) <= MAX_TEXT and len(r) <= MAX_TEXT and "|" not in x and "|" not in r
    ]
    careful: list[int] = []
    if len(rows) == n_lines:
        return rows, careful
    in_order = len(rows)
    for n, (tag, x, r) in enumerate(found, 1):
        if not tag or len(x) > MAX_TEXT or len(r) > MAX_TEXT:
            if n != header_line:
                careful.append(n)
        elif x.isascii() or "|" in x or "|" in r:
            row = _alternatives_row(tag, x, r)
            if row is None:
                careful.append(n)
            else:
                rows.append((*row, n))
    if len(rows) > in_order:
        rows.sort(key=_LINE_OF)  # two sorted runs: one merge
    return rows, careful


def _alternatives_row(tag: str, text_field: str, reading_field: str) -> tuple | None:
    """(tag, texts, readings) of a line ``_PLAIN_LINE`` vouches for with "|" alternatives
    or an ASCII translation: none empty, damaged or a number, and readings none damaged. What is left
    to do is what ``_check_row`` does to such a line: drop an alternative that repeats the
    tag or an earlier one. None when nothing is left (``_check_row`` says why)."""
    parts = text_field.split("|") if "|" in text_field else [text_field]
    readings = [p or None for p in reading_field.split("|")] if reading_field else []
    texts: list[str] = []
    kept: list[str | None] = []
    for i, part in enumerate(parts):
        if (part.isascii() and _same_as_tag(part, tag)) or part in texts:
            continue
        texts.append(part)
        kept.append(readings[i] if len(readings) == len(parts) else (readings[0] if readings and i == 0 else None))
    return (tag, texts, kept) if texts else None


def _is_tag_list(sample: list[list[str]]) -> bool:
    """A tag list (``name,category,count,aliases``: the tag-autocomplete danbooru.csv or
    e621.csv) is not a translation file."""
    counted = [
        f for f in sample if len(f) >= 3 and _INTEGER.fullmatch(f[1].strip()) and _INTEGER.fullmatch(f[2].strip())
    ]
    return bool(sample) and len(counted) > len(sample) // 2


def _refuse_tag_list(path: Path, split: list) -> None:
    """Say what the tag list is instead of importing counts as translations."""
    codes = {int(f[1]) for _n, f, _r in split if len(f) >= 3 and _INTEGER.fullmatch(f[1].strip())}
    site = (
        "an e621 tag list (category codes " + ", ".join(map(str, sorted(codes & E621_CODES))) + ")"
        if codes & E621_CODES
        else "a tag list"
    )
    raise DictionaryFileError(
        f"{path}: this is {site} (name,category,count,aliases), not a translation file "
        "(tag,translation). Tag lists go in with `sushitui dict import`; a translation file has the "
        "tag's translation in its second column"
    )


def _fold(value: str) -> str:
    """Trimmed, inner whitespace folded (``clean`` without its cache: translations are
    nearly all distinct, so a cache would only thrash)."""
    return " ".join(value.split())


_BAD_NAME = re.compile("[,\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _same_as_tag(part: str, tag: str) -> bool:
    # only Latin text can repeat a Danbooru name: skip match_key for CJK (150k rows)
    return part.isascii() and match_key(part) == match_key(tag)


def _check_row(
    where: str, tag: str, text_field: str, reading_field: str, rejected: list[RowProblem]
) -> TranslationRow | None:
    """One row's tag and translations checked; problems appended to ``rejected``. Every
    check is a cheap test first (a 150k-row file is nearly all good rows), the precise
    one only when it trips."""
    if tag[:1] == "#" and spreadsheet_error(tag):
        rejected.append(
            RowProblem(
                where, tag, f"the tag is the spreadsheet error {spreadsheet_error(tag)}, not a name; fix the cell"
            )
        )
        return None
    if not tag or _BAD_NAME.search(tag):
        rejected.append(RowProblem(where, tag, name_problem(tag) or "the tag name is not usable"))
        return None
    parts = [_fold(p) for p in text_field.split("|")] if "|" in text_field else [_fold(text_field)]
    readings = [_fold(p) or None for p in reading_field.split("|")] if reading_field and reading_field.strip() else []
    controls = _CONTROL.search(text_field) is not None
    texts: list[str] = []
    kept_readings: list[str | None] = []
    for i, part in enumerate(parts):
        what = "the translation" if len(parts) == 1 else f"translation {i + 1} of {len(parts)}"
        if not part:
            if len(parts) == 1:
                rejected.append(RowProblem(where, tag, "the translation is empty"))
            continue  # an empty alternative ("猫耳||ねこみみ") is just dropped
        if part[0] == "#" and spreadsheet_error(part):
            rejected.append(
                RowProblem(where, tag, f"{what} is the spreadsheet error {spreadsheet_error(part)}; fix the cell")
            )
            continue
        if controls and _CONTROL.search(part):
            rejected.append(RowProblem(where, tag, f"{what} contains a control character"))
            continue
        if len(part) > MAX_TEXT:
            rejected.append(
                RowProblem(
                    where, tag, f"{what} is {len(part)} characters long (at most {MAX_TEXT}); a missing line break?"
                )
            )
            continue
        if part[0] in "+-0123456789" and _INTEGER.fullmatch(part):
            rejected.append(
                RowProblem(
                    where,
                    tag,
                    f"{what} is the number {part}: a category code or a count, "
                    "not a translation (a tag list, or --format csv on a "
                    "three-column tag-autocomplete file?)",
                )
            )
            continue
        if _same_as_tag(part, tag):
            continue  # "untranslated" rows repeat the tag: nothing to show beside it
        if part in texts:
            continue
        texts.append(part)
        reading = readings[i] if len(readings) == len(parts) else (readings[0] if readings and i == 0 else None)
        if reading is not None and (spreadsheet_error(reading) or _CONTROL.search(reading) or len(reading) > MAX_TEXT):
            rejected.append(
                RowProblem(where, tag, f"the reading {reading!r} is not usable; the translation is kept without it")
            )
            reading = None
        kept_readings.append(reading)
    if not texts:
        if parts and all(p and _same_as_tag(p, tag) for p in parts):
            rejected.append(RowProblem(where, tag, "the translation is the tag itself"))
        elif len(parts) > 1 and not any(parts):  # "|" alone: as empty as an empty cell
            rejected.append(RowProblem(where, tag, "the translation is empty"))
        return None
    return (_fold(tag), texts, kept_readings, 0)


# --- import -------------------------------------------------------------------------------------


@dataclass
class TranslationReport:
    file: str = ""
    lang: str = ""
    format: str = ""
    encoding: str = "utf-8"
    rows: int = 0  # rows read with at least one usable translation
    tags: int = 0  # tags that got translations
    translations: int = 0  # translation rows written (alternatives count one each)
    replaced: int = 0  # tags whose earlier translations in this language were replaced (update)
    skipped: list[RowProblem] = field(default_factory=list)  # tags that had translations (skip), duplicates
    via_alias: int = 0  # rows naming an alias, stored under its tag
    not_in_dictionary: list[RowProblem] = field(default_factory=list)
    rejected: list[RowProblem] = field(default_factory=list)
    repaired: list[RowProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    cancelled: bool = False

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "lang": self.lang,
            "format": self.format,
            "encoding": self.encoding,
            "rows": self.rows,
            "tags": self.tags,
            "translations": self.translations,
            "replaced": self.replaced,
            "skipped": len(self.skipped),
            "via_alias": self.via_alias,
            "not_in_dictionary": len(self.not_in_dictionary),
            "rejected": len(self.rejected),
            "repaired": len(self.repaired),
            "notes": self.notes,
            "elapsed_s": round(self.elapsed_s, 3),
            "cancelled": self.cancelled,
            "rejected_rows": [p.to_dict() for p in self.rejected],
            "repaired_rows": [p.to_dict() for p in self.repaired],
            "not_in_dictionary_rows": [p.to_dict() for p in self.not_in_dictionary],
            "skipped_rows": [p.to_dict() for p in self.skipped],
        }


def _not_in_dictionary(db, norms: list[str]) -> set[str]:
    """The match keys that are not in the dictionary. SQLite probes the norm index for each
    key and hands back only the few misses: fetching the 140k hits of a 150k-row file into
    Python cost more than the probes themselves."""
    return {
        r[0]
        for r in db.execute_sql(
            "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT norm FROM dictionary_tag)",
            [json.dumps(norms, ensure_ascii=False)],
        )
    }


def _alias_targets(db, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """alias match key → (target norm, target tag) for the wanted keys: the dictionary's
    own aliases and the user's alias table."""
    out: dict[str, tuple[str, str]] = {}
    for norm, tag, text in db.execute_sql("SELECT norm, tag, aliases FROM dictionary_tag WHERE aliases != ''"):
        for a in text.split(","):
            if a:
                k = match_key(a)
                if k in wanted and k not in out:
                    out[k] = (norm, tag)
    for from_norm, to_tag in db.execute_sql("SELECT from_norm, to_tag FROM alias"):
        if from_norm in wanted and from_norm not in out:
            out[from_norm] = (match_key(to_tag), to_tag)
    return out


def import_file(
    path: str | Path,
    lang: str,
    *,
    fmt: str | None = None,
    on_conflict: str = "update",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TranslationReport:
    """Import a translation file for ``lang``. ``on_conflict``: a tag that already has
    translations in ``lang`` keeps them (``skip``) or gets the file's instead (``update``)."""
    # A 150k-row file makes ~1M short-lived lists and tuples, none in a cycle: with the
    # cyclic collector running, its passes over them cost about a third of the import.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _import_file(path, lang, fmt, on_conflict, progress, cancel)
    finally:
        if paused:
            gc.enable()


def _import_file(
    path: str | Path,
    lang: str,
    fmt: str | None,
    on_conflict: str,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> TranslationReport:
    started = time.monotonic()
    lang = normalize_lang(lang)
    if on_conflict not in CONFLICT_MODES:
        raise TranslationError(f"unknown conflict mode {on_conflict!r}; use one of {', '.join(CONFLICT_MODES)}")
    throttle = Throttle(progress)
    path = Path(path)
    parsed = parse_file(path, fmt, lang)
    name = path.name
    report = TranslationReport(
        file=str(path),
        lang=lang,
        format=parsed.fmt,
        encoding=parsed.encoding,
        rejected=parsed.rejected,
        repaired=parsed.repaired,
        notes=parsed.notes,
    )
    rows = parsed.rows
    report.rows = len(rows)
    throttle(ProgressEvent("reading", len(rows), len(rows), unit="rows", started_at=started), force=True)
    tags = [r[0] for r in rows]
    norms = bulk_keys(tags) if names_all_clean(tags) else [match_key(t) for t in tags]
    db = current_database()
    missing = _not_in_dictionary(db, norms)
    aliases = _alias_targets(db, missing) if missing else {}
    # One entry per tag: rows of the same tag (or of an alias and its tag) join, in file order.
    merged: dict[str, list] = {}  # norm -> [tag, texts, readings, in_dictionary, where]
    for (row_tag, row_texts, row_readings, line), norm in zip(rows, norms):
        tag, known = row_tag, True
        if norm in missing:
            if norm in aliases:
                norm, tag = aliases[norm]
                report.via_alias += 1
            else:
                known = False
                report.not_in_dictionary.append(
                    RowProblem(f"{name} line {line}", row_tag, "not in the dictionary: kept and marked")
                )
        entry = merged.get(norm)
        if entry is None:
            merged[norm] = [tag, row_texts, row_readings, known, line]  # the row's own fresh lists
            continue
        added = [(t, r) for t, r in zip(row_texts, row_readings) if t not in entry[1]]
        if not added:
            report.skipped.append(
                RowProblem(f"{name} line {line}", row_tag, f"the same translations as line {entry[4]}")
            )
        for t, r in added:
            entry[1].append(t)
            entry[2].append(r)
    if cancel is not None and cancel.cancelled:  # nothing written yet
        report.cancelled = True
        return report
    now = time.time()
    source = path.name
    with write_transaction(db):
        existing = {r[0] for r in db.execute_sql("SELECT DISTINCT norm FROM tag_translation WHERE lang = ?", [lang])}
        clash = [k for k in merged if k in existing]
        if clash and on_conflict == "skip":
            for k in clash:
                e = merged.pop(k)
                report.skipped.append(
                    RowProblem(f"{name} line {e[4]}", e[0], f"already has {lang} translations (on conflict: skip)")
                )
        elif clash:
            report.replaced = len(clash)
            for i in range(0, len(clash), 30_000):
                chunk = clash[i : i + 30_000]
                db.execute_sql(
                    f"DELETE FROM tag_translation WHERE lang = ? AND norm IN ({','.join('?' * len(chunk))})",
                    [lang, *chunk],
                )
        flat_texts: list[str] = []
        flat_readings: list[str] = []
        for e in merged.values():
            flat_texts += e[1]
            flat_readings += [r for r in e[2] if r]
        text_keys = iter(search_keys(flat_texts))
        reading_keys = iter(search_keys(flat_readings))
        inserts = []
        for norm, (tag, texts, readings, known, _line) in merged.items():
            in_dictionary = 1 if known else 0
            if len(texts) == 1:
                r = readings[0]
                inserts.append(
                    (
                        norm,
                        tag,
                        lang,
                        texts[0],
                        next(text_keys),
                        r,
                        next(reading_keys) if r else None,
                        0,
                        in_dictionary,
                        source,
                        now,
                    )
                )
                continue
            for pos, (t, r) in enumerate(zip(texts, readings)):
                inserts.append(
                    (
                        norm,
                        tag,
                        lang,
                        t,
                        next(text_keys),
                        r,
                        next(reading_keys) if r else None,
                        pos,
                        in_dictionary,
                        source,
                        now,
                    )
                )
        dropped = _drop_indexes_for(db, len(inserts))
        cur = db.cursor()
        sql = (
            "INSERT INTO tag_translation (norm, tag, lang, text, text_key, reading, reading_key, position, "
            "in_dictionary, source, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
        )
        try:
            for s in range(0, len(inserts), 20_000):
                if cancel is not None and cancel.cancelled:
                    report.cancelled = True
                    break
                batch = inserts[s : s + 20_000]
                cur.executemany(sql, batch)
                report.translations += len(batch)
                throttle(
                    ProgressEvent("writing", s + len(batch), len(inserts), unit="translations", started_at=started)
                )
        finally:
            if dropped:
                # inside the transaction: a failure (or a crash) rolls the DROP back with the rows
                throttle(
                    ProgressEvent("indexing", len(inserts), len(inserts), unit="translations", started_at=started),
                    force=True,
                )
                build_indexes(db, [q for _name, q in dropped])
        report.tags = len(merged) if not report.cancelled else len({r[0] for r in inserts[: report.translations]})
    translations_changed()
    unknown = len(report.not_in_dictionary)
    # EXISTS, not COUNT(*): counting 925k dictionary rows took 0.1–0.3 s of every import
    if (
        report.rows >= 20
        and unknown > report.rows // 2
        and db.execute_sql("SELECT EXISTS (SELECT 1 FROM dictionary_tag)").fetchone()[0]
    ):
        report.notes.append(
            f"{unknown:,} of {report.rows:,} rows ({unknown * 100 // report.rows}%) name tags that are not in the "
            "dictionary: is this a translation list for another site (e621) or another dictionary? They were kept "
            f"and marked; `sushitui dict translations remove --lang {lang}` takes the import back"
        )
    report.elapsed_s = time.monotonic() - started
    return report


def _drop_indexes_for(db, n_rows: int) -> list[tuple[str, str]]:
    """Drop the table's indexes before inserting ``n_rows`` rows when that is most of the
    table (a first import): one sort per index afterwards instead of 150k random B-tree
    inserts. (name, CREATE statement) of what was dropped."""
    if n_rows < 20_000:
        return []
    (in_table,) = db.execute_sql("SELECT COUNT(*) FROM tag_translation").fetchone()
    if n_rows <= in_table:
        return []
    dropped = db.execute_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tag_translation' AND sql IS NOT NULL"
    ).fetchall()
    for name, _sql in dropped:
        db.execute_sql(f'DROP INDEX "{name}"')
    return dropped


def translations_changed() -> None:
    from sushitui.tags.autocomplete import translations_changed as tell_completers

    global _lang_cache
    _lang_cache = None
    tell_completers()


# --- reading back -------------------------------------------------------------------------------

# (database, [langs], when): the languages that have translations, asked for by every
# dictionary page; re-read after a few seconds so another process's import shows up
_lang_cache: tuple | None = None
LANG_CACHE_S = 5.0


def languages() -> list[str]:
    """The languages that have translations, most rows first."""
    global _lang_cache
    db = current_database()
    if _lang_cache is not None and _lang_cache[0] is db and time.monotonic() - _lang_cache[2] < LANG_CACHE_S:
        return list(_lang_cache[1])
    langs = [
        r[0]
        for r in db.execute_sql(
            "SELECT lang FROM tag_translation GROUP BY lang ORDER BY COUNT(*) DESC, lang"
        ).fetchall()
    ]
    _lang_cache = (db, langs, time.monotonic())
    return list(langs)


def summary() -> list[dict]:
    """Per language: translations, tags, tags not in the dictionary (now), source files."""
    db = current_database()
    out = []
    for lang, n, tags, marked in db.execute_sql(
        "SELECT lang, COUNT(*), COUNT(DISTINCT norm), "
        "COUNT(DISTINCT CASE WHEN NOT EXISTS (SELECT 1 FROM dictionary_tag d WHERE d.norm = t.norm) THEN norm END) "
        "FROM tag_translation t GROUP BY lang ORDER BY lang"
    ):
        sources = [
            r[0]
            for r in db.execute_sql(
                "SELECT source FROM tag_translation WHERE lang = ? GROUP BY source ORDER BY MIN(id)", [lang]
            )
        ]
        out.append({"lang": lang, "translations": n, "tags": tags, "not_in_dictionary": marked, "sources": sources})
    return out


def for_norms(norms: Iterable[str], langs: Iterable[str] | None = None) -> dict[str, dict[str, list[str]]]:
    """match key → {lang: [translations in order]} for the given keys."""
    keys = list(dict.fromkeys(norms))
    langs = list(langs) if langs is not None else languages()
    out: dict[str, dict[str, list[str]]] = {}
    if not keys or not langs:
        return out
    db = current_database()
    for lang in langs:
        for i in range(0, len(keys), 900):
            chunk = keys[i : i + 900]
            for norm, text in db.execute_sql(
                f"SELECT norm, text FROM tag_translation WHERE lang = ? AND norm IN ({','.join('?' * len(chunk))}) "
                "ORDER BY norm, position",
                [lang, *chunk],
            ):
                out.setdefault(norm, {}).setdefault(lang, []).append(text)
    return out


def lookup(tags: Iterable[str], lang: str | None = None) -> dict[str, str]:
    """match key → the first translation in ``lang`` (the preferred language when None)
    for the given tags; empty when there is no such language."""
    lang = lang or preferred_lang()
    if lang is None:
        return {}
    return {k: v[lang][0] for k, v in for_norms((match_key(t) for t in tags), [lang]).items() if lang in v}


def matching_norms(text: str, mode: str = "substring", lang: str | None = None, limit: int = 5000) -> list[str] | None:
    """Match keys of tags whose translation (or reading) matches ``text`` in ``mode``
    (substring, prefix, suffix, exact); None when more than ``limit`` match (the caller
    then uses ``matching_sql``)."""
    sql, params = matching_sql(text, mode, lang)
    if sql is None:
        return []
    rows = current_database().execute_sql(f"{sql} LIMIT ?", [*params, limit + 1]).fetchall()
    if len(rows) > limit:
        return None
    return [r[0] for r in rows]


def matching_sql(text: str, mode: str = "substring", lang: str | None = None) -> tuple[str | None, list]:
    """``SELECT DISTINCT norm FROM tag_translation WHERE …`` for ``matching_norms``."""
    key = search_key(text)
    if not key:
        return None, []
    where: list[str] = []
    params: list[Any] = []
    if lang:
        where.append("lang = ?")
        params.append(normalize_lang(lang))
    if mode == "exact":
        cond = "(text_key = ? OR reading_key = ?)"
        params += [key, key]
    elif mode == "prefix":
        cond = "((text_key >= ? AND text_key < ?) OR (reading_key >= ? AND reading_key < ?))"
        params += [key, key + "\U0010ffff"] * 2
    elif mode == "suffix":
        cond = "(substr(text_key, -?) = ? OR substr(reading_key, -?) = ?)"
        params += [len(key), key] * 2
    else:
        cond = "(instr(text_key, ?) > 0 OR instr(reading_key, ?) > 0)"
        params += [key, key]
    where.append(cond)
    return f"SELECT DISTINCT norm FROM tag_translation WHERE {' AND '.join(where)}", params


# --- export / remove ------------------------------------------------------------------------------


def export(path: str | Path, lang: str) -> dict:
    """Write ``lang``'s translations as ``tag,translation,reading`` (UTF-8, a header row,
    alternatives joined by ``|``): the file ``import`` reads back."""
    lang = normalize_lang(lang)
    path = Path(path)
    db = current_database()
    grouped: dict[str, list] = {}
    for norm, tag, text, reading in db.execute_sql(
        "SELECT norm, tag, text, reading FROM tag_translation WHERE lang = ? ORDER BY norm, position", [lang]
    ):
        e = grouped.setdefault(norm, [tag, [], []])
        e[1].append(text)
        e[2].append(reading or "")
    if not grouped:
        raise TranslationError(f"there are no {lang} translations to export (see `sushitui dict translations list`)")
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["tag", "translation", "reading"])
            for tag, texts, readings in grouped.values():
                w.writerow([tag, "|".join(texts), "|".join(readings) if any(readings) else ""])
    except OSError as exc:
        raise TranslationError(f"{path}: cannot write the file: {exc.strerror}") from exc
    return {
        "lang": lang,
        "tags": len(grouped),
        "translations": sum(len(e[1]) for e in grouped.values()),
        "file": str(path),
    }


def remove(lang: str) -> int:
    """Delete every translation in ``lang``; returns how many rows went."""
    lang = normalize_lang(lang)
    db = current_database()
    with write_transaction(db):
        n = db.execute_sql("DELETE FROM tag_translation WHERE lang = ?", [lang]).rowcount
        if preferred_setting() == lang:
            db.execute_sql("DELETE FROM app_setting WHERE key = ?", [LANG_SETTING])
    translations_changed()
    return n


# --- settings -----------------------------------------------------------------------------------------


def _setting(key: str):
    row = current_database().execute_sql("SELECT value FROM app_setting WHERE key = ?", [key]).fetchone()
    return None if row is None or row[0] is None else json.loads(row[0])


def _set_setting(key: str, value) -> None:
    db = current_database()
    with write_transaction(db):
        if value is None:
            db.execute_sql("DELETE FROM app_setting WHERE key = ?", [key])
        else:
            db.execute_sql(
                "INSERT INTO app_setting (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [key, json.dumps(value, ensure_ascii=False), time.time()],
            )


def preferred_setting() -> str | None:
    value = _setting(LANG_SETTING)
    return value if isinstance(value, str) else None


def preferred_lang() -> str | None:
    """The language shown beside tags: the ``tag_lang`` setting, else the language with
    the most translations, else None."""
    chosen = preferred_setting()
    if chosen:
        return chosen
    langs = languages()
    return langs[0] if langs else None


def set_preferred_lang(lang: str | None) -> str | None:
    """Set (or with None clear) the language shown beside tags."""
    code = normalize_lang(lang) if lang else None
    _set_setting(LANG_SETTING, code)
    translations_changed()  # completers show the new language
    return code


def pills_show_translations() -> bool:
    return bool(_setting(PILLS_SETTING))


def set_pills_show_translations(on: bool) -> None:
    _set_setting(PILLS_SETTING, bool(on) or None)
