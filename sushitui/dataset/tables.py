"""Captions kept in files shared by several images: caption tables and folder captions.

Caption tables (read in the scanning process, one parse per scan):

- ``metadata.jsonl`` / ``metadata.csv`` (Hugging Face ``imagefolder``, diffusers'
  training scripts): ``file_name`` + ``text`` (sd-scripts' JSONL: ``image_path`` +
  ``caption`` / ``tags``), paths relative to the table's folder;
- ``caption.csv`` (Replicate cog-sdxl): ``caption,image_file``;
- sd-scripts fine-tuning metadata JSON (``meta_cap.json``, ``meta_cap_dd.json``,
  ``meta_clean.json``, ``meta_lat.json``): ``{image key: {"caption", "tags"}}``, where
  the key is a path (often a Windows one, relative to where the script ran) or a stem;
- any CSV / TSV / JSONL named with ``dataset add --captions-table FILE --image-column C
  --caption-column C[=SUBTYPE]``; each caption column is a caption subtype.

A table covers the images in its folder and below. A row becomes captions of the item
whose image it names (source ``table``, ``source_field`` "<table>: <column>"). A caption
file of the same subtype beside the image (``x.txt``) wins over the table. Rows naming no
image, images with no row, a duplicated image, a path leaving the dataset folder and a
missing column are problems named by file and line; the rest of the table is read.

Folder captions: ``prompt.json`` (InstructPix2Pix: ``edit`` -> instruction, ``input``,
``output``) and the dataset's named folder caption file (``--folder-caption
instruction.txt``) apply to every item of their folder (source ``folder``).

An edit of a CSV/TSV/JSONL table caption is written back into its cell
(``write_table_cells``, called by ``sushitui.dataset.captions``): other rows, columns,
quoting, line endings and a BOM kept byte for byte. Folder captions and sd-scripts JSON
are never rewritten: an edit of such a caption writes the item's own caption file
(``x.txt`` / ``x_<subtype>.txt``), which then wins over the shared file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
import stat
import threading
from dataclasses import dataclass, field

from sushitui.dataset.caption_files import (
    CaptionConflict,
    CaptionFileError,
    decode_caption,
    fsync_dir,
    read_at_most,
    read_caption,
)
from sushitui.dataset.grouping import IMAGE_EXTENSIONS, FileEntry
from sushitui.errors import UserError

FOLDER_SOURCE = "folder"
TABLE_SOURCE = "table"
EXTERNAL_SOURCES = (FOLDER_SOURCE, TABLE_SOURCE)
PROMPT_JSON = "prompt.json"
# prompt.json key -> (subtype, caption type)
PROMPT_JSON_KEYS = {
    "edit": ("instruction", "instruction"),
    "input": ("input", "natural_language"),
    "output": ("output", "natural_language"),
}
SD_SCRIPTS_JSON = ("meta_cap.json", "meta_cap_dd.json", "meta_clean.json", "meta_lat.json")
SD_SCRIPTS_KEY = "image_key"  # the "column" of an sd-scripts metadata JSON's keys
AUTO_TABLES = ("metadata.jsonl", "metadata.csv", "caption.csv", *SD_SCRIPTS_JSON)
# columns an auto-detected table is read by: image path, then caption column -> subtype
AUTO_IMAGE_COLUMNS = ("file_name", "image_file", "image_path", "image", "file")
AUTO_CAPTION_COLUMNS = (
    ("text", "main"),
    ("caption", "main"),
    ("tags", "tags"),
    ("prompt", "prompt"),
    ("edit_prompt", "instruction"),
    ("instruction", "instruction"),
)
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}
MAX_TABLE_BYTES = 512 * 1024 * 1024

External = tuple  # (ctype, subtype, source, source_field, text)


class TableError(UserError):
    """A caption table cannot be used; the message names the file (and line)."""


@dataclass
class TableSpec:
    """A table named by the user: which column names the image, which hold captions."""

    file: str  # dataset-relative, POSIX separators
    image_column: str
    columns: dict[str, str]  # caption column -> subtype

    def to_dict(self) -> dict:
        return {"file": self.file, "image_column": self.image_column, "columns": dict(self.columns)}

    @classmethod
    def from_dict(cls, d: dict) -> "TableSpec":
        return cls(str(d["file"]), str(d["image_column"]), {str(k): str(v) for k, v in dict(d["columns"]).items()})


def parse_caption_columns(values: list[str]) -> dict[str, str]:
    """``--caption-column C[=SUBTYPE]`` values -> {column: subtype}; a column without a
    subtype is ``main`` when it is the first, else its own name."""
    out: dict[str, str] = {}
    for i, v in enumerate(values):
        column, eq, subtype = v.partition("=")
        column = column.strip()
        subtype = subtype.strip().lower() if eq else ("main" if i == 0 else column.lower())
        if not column:
            raise TableError(f"--caption-column {v!r}: give a column name, e.g. text or text=main")
        if not subtype or not all(c.isalnum() or c == "-" for c in subtype):
            raise TableError(
                f"--caption-column {v!r}: the subtype {subtype!r} must be letters, digits and '-' "
                "(a caption edit writes x_<subtype>.txt)"
            )
        out[column] = subtype
    return out


def check_table_spec(root: str, spec: dict) -> dict:
    """The spec with its file made dataset-relative, or TableError naming what is wrong
    (file missing or outside the folder, unknown format, a column not in its header)."""
    s = TableSpec.from_dict(spec)
    path = s.file if os.path.isabs(s.file) else os.path.join(root, s.file)
    if not os.path.exists(path) and os.path.exists(s.file):  # relative to where the command runs
        path = os.path.abspath(s.file)
    real, root_real = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, root_real]) != root_real:
        raise TableError(f"captions table {s.file}: it is outside the dataset folder {root}; move it into the folder")
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")
    if not os.path.isfile(path):
        raise TableError(f"captions table {s.file}: no such file in {root}")
    fmt = TABLE_FORMATS.get(os.path.splitext(rel)[1].lower())
    if fmt is None or (fmt == "json" and s.image_column != SD_SCRIPTS_KEY):
        raise TableError(
            f"captions table {rel}: give a .csv, .tsv or .jsonl file (or sd-scripts metadata JSON with "
            f"--image-column {SD_SCRIPTS_KEY})"
        )
    if not s.columns:
        raise TableError(f"captions table {rel}: name at least one --caption-column")
    table = read_table(root, rel, s)
    if table.fatal:
        raise TableError(table.fatal)
    return TableSpec(rel, s.image_column, s.columns).to_dict()


def metadata_table_spec(root: str, rel: str) -> dict:
    """The captions-table spec (``TableSpec`` as a dict) that reads a trainer's metadata
    file at dataset-relative ``rel`` as ``read_table`` reads a table found by its name:
    sd-scripts JSON (``{image: {caption, tags}}``) or a JSONL/CSV with an image column
    (file_name, image_path, ...) and caption columns (caption, text, tags, ...). Raises
    TableError naming the file when it has no such columns."""
    fmt = TABLE_FORMATS.get(posixpath.splitext(rel)[1].lower())
    if fmt is None:
        raise TableError(f"{rel}: not a .json, .jsonl, .csv or .tsv file; not read as a captions table")
    if fmt == "json":
        return TableSpec(rel, SD_SCRIPTS_KEY, {"caption": "main", "tags": "tags"}).to_dict()
    table = Table(rel, posixpath.dirname(rel))
    text = _decode(os.path.join(root, *rel.split("/")), rel, table)
    columns = _records(text, fmt, rel, table)[0] if text is not None else []
    if table.fatal:
        raise TableError(table.fatal)
    image_column = next((c for c in AUTO_IMAGE_COLUMNS if c in columns), None)
    caption_columns: dict[str, str] = {}
    for column, subtype in AUTO_CAPTION_COLUMNS:
        if column in columns:
            caption_columns[column] = subtype if subtype not in caption_columns.values() else column
    if image_column is None or not caption_columns:
        raise TableError(
            f"{rel}: no {'image' if image_column is None else 'caption'} column "
            f"(columns: {', '.join(columns) or 'none'}); not read as a captions table"
        )
    return TableSpec(rel, image_column, caption_columns).to_dict()


def walk_names(dataset) -> frozenset[str]:
    """File names (lowercase) the walk lists besides images and captions."""
    names = {PROMPT_JSON, *AUTO_TABLES}
    if getattr(dataset, "folder_caption", None):
        names.add(dataset.folder_caption.lower())
    for spec in getattr(dataset, "caption_tables", None) or ():
        names.add(posixpath.basename(str(spec.get("file", ""))).lower())
    return frozenset(names)


# --- folder captions -----------------------------------------------------------------------


def _rel(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def folder_captions(
    root: str, rel_dir: str, named: list[FileEntry], folder_caption: str | None, ctype_of
) -> tuple[list[External], list[tuple[str, str]]]:
    """The captions every item of folder ``rel_dir`` gets from its prompt.json and named
    folder caption file; ``ctype_of(subtype, text, default)`` types them (the dataset's
    overrides). Returns (captions, problems)."""
    out: list[External] = []
    problems: list[tuple[str, str]] = []
    folder_dir = os.path.join(root, *rel_dir.split("/")) if rel_dir else root
    wanted = (folder_caption or "").lower()
    for entry in sorted(named, key=lambda e: e.name):
        lower = entry.name.lower()
        rel = _rel(rel_dir, entry.name)
        if lower == PROMPT_JSON:
            try:
                ct = read_caption(os.path.join(folder_dir, entry.name))
                data = json.loads(ct.text)
            except CaptionFileError as exc:
                problems.append((rel, str(exc).split(": ", 1)[-1]))
                continue
            except ValueError as exc:
                problems.append((rel, f"not valid JSON ({exc}); its captions were not read"))
                continue
            if not isinstance(data, dict) or not PROMPT_JSON_KEYS.keys() & data.keys():
                problems.append((rel, "holds none of the InstructPix2Pix keys edit, input, output; not read"))
                continue
            for key, (subtype, default) in PROMPT_JSON_KEYS.items():
                value = data.get(key)
                if isinstance(value, str) and value.strip():
                    out.append(
                        (
                            ctype_of(subtype, value.strip(), default),
                            subtype,
                            FOLDER_SOURCE,
                            f"{rel}: {key}",
                            value.strip(),
                        )
                    )
        elif wanted and lower == wanted:
            try:
                text = read_caption(os.path.join(folder_dir, entry.name)).text.strip()
            except CaptionFileError as exc:
                problems.append((rel, str(exc).split(": ", 1)[-1]))
                continue
            if text:
                out.append((ctype_of("instruction", text, "instruction"), "instruction", FOLDER_SOURCE, rel, text))
    return out, problems


# --- caption tables ------------------------------------------------------------------------


@dataclass
class Table:
    """One parsed table: captions by the dataset-relative path of the image its row names."""

    file: str  # dataset-relative
    folder: str  # the folder it covers (its own)
    rows: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # image -> [(subtype, column, text)]
    lines: dict[str, str] = field(default_factory=dict)  # image -> "file:line" of its row
    problems: list[tuple[str, str]] = field(default_factory=list)
    fatal: str | None = None  # why nothing of it was read


def _read_table_bytes(path: str | os.PathLike, rel: str) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at ``path``, at most MAX_TABLE_BYTES. A FIFO, device
    or socket put where the table was is refused without waiting for a writer (opened
    with O_NONBLOCK, then fstat), and the read is bounded even when the size lied.
    TableError names ``rel``; FileNotFoundError passes through."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TableError(f"{rel}: cannot be read ({exc.strerror or exc})") from exc
    with open(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TableError(f"{rel}: not a regular file (a pipe, device or socket); its captions are not used")
        if st.st_size > MAX_TABLE_BYTES:
            raise TableError(f"{rel}: {st.st_size} bytes, larger than {MAX_TABLE_BYTES} bytes; not used")
        try:
            data = read_at_most(fh, MAX_TABLE_BYTES + 1, 1 << 24)
        except OSError as exc:
            raise TableError(f"{rel}: cannot be read ({exc.strerror or exc})") from exc
    if len(data) > MAX_TABLE_BYTES:
        raise TableError(f"{rel}: larger than {MAX_TABLE_BYTES} bytes; not used")
    return data, st


def _decode(path: str, rel: str, table: Table) -> str | None:
    try:
        data, _st = _read_table_bytes(path, rel)
    except TableError as exc:
        table.fatal = f"{exc}; its captions were not read"
        return None
    except OSError as exc:
        table.fatal = f"{rel}: cannot be read ({exc.strerror or exc}); its captions were not read"
        return None
    text, encoding, flagged = decode_caption(data)  # a BOM is dropped here
    if flagged:
        table.problems.append((rel, f"not UTF-8: read as {encoding}"))
    return text


def _records(text: str, fmt: str, rel: str, table: Table):
    """(line number, {column: value}) of each row; the header's columns in ``columns``."""
    if fmt in ("csv", "tsv"):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
        try:
            header = next(reader, None)
        except csv.Error as exc:
            table.fatal = f"{rel}:1: the header is not valid CSV ({exc})"
            return [], []
        if header is None:
            return [], []
        header = [h.strip() for h in header]
        rows = []
        start = reader.line_num + 1
        try:
            for values in reader:
                if any(v.strip() for v in values):
                    if len(values) > len(header):
                        table.problems.append(
                            (
                                rel,
                                f"line {start}: {len(values)} values for {len(header)} columns; "
                                "the extra ones are ignored (a comma in an unquoted caption?)",
                            )
                        )
                    rows.append((start, dict(zip(header, values))))
                start = reader.line_num + 1
        except csv.Error as exc:
            table.problems.append((rel, f"line {start}: not valid CSV ({exc}); the rest of the table was not read"))
        return header, rows
    if fmt == "jsonl":
        rows, columns = [], []
        for number, line in enumerate(text.split("\n"), 1):
            line = line.strip()  # CRLF's \r too
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                table.problems.append((rel, f"line {number}: not valid JSON ({exc}); row ignored"))
                continue
            if not isinstance(obj, dict):
                table.problems.append((rel, f"line {number}: not a JSON object; row ignored"))
                continue
            for k in obj:
                if k not in columns:
                    columns.append(k)
            rows.append((number, obj))
        return columns, rows
    # sd-scripts metadata JSON: {image key: {"caption": ..., "tags": ...}}
    try:
        data = json.loads(text)
    except ValueError as exc:
        table.fatal = f"{rel}: not valid JSON ({exc}); its captions were not read"
        return [], []
    if not isinstance(data, dict):
        table.fatal = f"{rel}: not sd-scripts metadata (a JSON object of image -> {{caption, tags}}); not read"
        return [], []
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.append((key, {"image_key": key, **value}))
    return ["image_key", "caption", "tags"], rows


def read_table(root: str, rel: str, spec: TableSpec | None = None, caption_suffixes=()) -> Table:
    """Parse the table at dataset-relative ``rel``: captions by image path (not yet
    checked against the images on disk; ``match_rows`` does that). A table found by its
    name also gives each column named like one of ``caption_suffixes`` (the dataset's:
    alt, description ...) as that subtype, so sushitui's own diffusers export, whose
    extra caption subtypes are extra columns, reads back whole."""
    folder = posixpath.dirname(rel)
    table = Table(rel, folder)
    name = posixpath.basename(rel).lower()
    fmt = TABLE_FORMATS.get(posixpath.splitext(name)[1])
    if fmt is None:
        table.fatal = f"{rel}: not a .csv, .tsv, .jsonl or .json table; not read"
        return table
    text = _decode(os.path.join(root, *rel.split("/")), rel, table)
    if text is None:
        return table
    columns, rows = _records(text, fmt, rel, table)
    if table.fatal:
        return table
    if spec is not None:
        image_column, caption_columns = spec.image_column, dict(spec.columns)
        missing = [c for c in (image_column, *caption_columns) if c not in columns]
        if missing and (rows or fmt in ("csv", "tsv")):
            where = "line 1 (the header)" if fmt in ("csv", "tsv") else "any row"
            table.fatal = (
                f"{rel}: {where} has no column {', '.join(repr(m) for m in missing)} "
                f"(columns: {', '.join(columns) or 'none'}); check --image-column / --caption-column"
            )
            return table
    elif fmt == "json":
        image_column, caption_columns = SD_SCRIPTS_KEY, {"caption": "main", "tags": "tags"}
    else:
        image_column = next((c for c in AUTO_IMAGE_COLUMNS if c in columns), "")
        caption_columns = {}
        for column, subtype in AUTO_CAPTION_COLUMNS:
            if column in columns:
                taken = set(caption_columns.values())
                caption_columns[column] = subtype if subtype not in taken else column
        if caption_columns:
            for column in columns:
                key = column.lower()
                if key in caption_suffixes and column not in caption_columns and key not in caption_columns.values():
                    caption_columns[column] = key
        if not image_column or not caption_columns:
            if not rows:
                return table
            what = "image column" if not image_column else "caption column"
            names = AUTO_IMAGE_COLUMNS if not image_column else tuple(c for c, _s in AUTO_CAPTION_COLUMNS)
            table.fatal = (
                f"{rel}: line 1: no {what} ({' / '.join(names)}; columns: {', '.join(columns)}); not read. "
                "Name its columns with `sushitui dataset edit NAME --captions-table FILE --image-column C "
                "--caption-column C`"
            )
            return table
    seen: dict[str, str] = {}
    for line, record in rows:
        where = f"line {line}" if isinstance(line, int) else f"entry {line!r}"
        value = record.get(image_column)
        if not isinstance(value, str) or not value.strip():
            table.problems.append((rel, f"{where}: no image in column {image_column!r}; row ignored"))
            continue
        path, why = _image_path(root, folder, value.strip())
        if path is None:
            table.problems.append((rel, f"{where}: {why}; row ignored"))
            continue
        if path in seen:
            table.problems.append((rel, f"{where}: {value.strip()!r} is already on {seen[path]}; this row is ignored"))
            continue
        seen[path] = where
        caps = []
        for column, subtype in caption_columns.items():
            text_value = record.get(column)
            if isinstance(text_value, list):  # JSONL: a list of tags
                text_value = ", ".join(str(v) for v in text_value)
            if isinstance(text_value, str) and text_value.strip():
                caps.append((subtype, column, text_value.strip()))
        table.rows[path] = caps
        table.lines[path] = f"{rel}:{line}" if isinstance(line, int) else f"{rel} {line!r}"
    return table


def _image_path(root: str, folder: str, value: str) -> tuple[str | None, str]:
    """The dataset-relative path a row's image value names (not checked to exist), or
    (None, why)."""
    v = value.replace("\\", "/")
    if v.startswith("/") or (len(v) > 2 and v[1] == ":" and v[2] == "/"):
        if v.startswith("/"):
            real, root_real = os.path.realpath(v), os.path.realpath(root)
            if os.path.commonpath([real, root_real]) == root_real:
                return os.path.relpath(real, root_real).replace(os.sep, "/"), ""
        # a Windows or foreign absolute path: matched by its trailing names (match_rows)
        return "//" + v.lstrip("/"), ""
    joined = posixpath.normpath(posixpath.join(folder, v)) if folder else posixpath.normpath(v)
    if joined == ".." or joined.startswith("../"):
        return None, f"{value!r} leads outside the dataset folder"
    return joined, ""


def match_rows(table: Table, images: set[str], by_name: dict[str, list[str]]) -> dict[str, list[tuple[str, str, str]]]:
    """Table rows by the dataset image they name: exact paths first, then paths written
    elsewhere (sd-scripts keys relative to where the script ran, Windows paths, stems)
    by their longest trailing match among the images the table covers. A row naming no
    image is a problem of the table."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    prefix = table.folder + "/" if table.folder else ""
    for path, caps in table.rows.items():
        found = path if path in images else None
        if found is None:
            found, why = _by_tail(path, prefix, by_name)
            if found is None:
                table.problems.append((table.file, f"{_where(table, path)}: {why}; row ignored"))
                continue
        if found in out:
            table.problems.append((table.file, f"{_where(table, path)}: names {found} again; this row is ignored"))
            continue
        out[found] = caps
    return out


def _where(table: Table, path: str) -> str:
    loc = table.lines.get(path, table.file)
    return "line " + loc.rsplit(":", 1)[1] if loc.startswith(table.file + ":") else loc


def _by_tail(path: str, prefix: str, by_name: dict[str, list[str]]) -> tuple[str | None, str]:
    parts = [p for p in path.lstrip("/").split("/") if p]
    if not parts:
        return None, "no image named"
    name = parts[-1]
    candidates = [c for c in by_name.get(name.lower(), []) if c.startswith(prefix)]
    if not candidates and posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
        candidates = [c for c in by_name.get("stem:" + name.lower(), []) if c.startswith(prefix)]  # sd-scripts stems
    shown = path.lstrip("/") if path.startswith("//") else path
    if not candidates:
        return None, f"no image {shown!r} in the dataset"
    if len(candidates) == 1:
        return candidates[0], ""

    def shared(c: str) -> int:
        cp = c.split("/")
        n = 0
        while n < min(len(cp), len(parts)) and cp[-1 - n].lower() == parts[-1 - n].lower():
            n += 1
        return n

    best = max(shared(c) for c in candidates)
    top = [c for c in candidates if shared(c) == best]
    if len(top) > 1:
        return None, f"{shown!r} could be any of {', '.join(sorted(top)[:3])}; write its path relative to the table"
    return top[0], ""


# --- writing captions back into their table --------------------------------------------------
# Called by sushitui.dataset.captions (the one caption write path), under the dataset's
# write lock: an edit of a table caption changes its cell, batched per table file.


def read_only_reason(source: str, source_field: str | None) -> str | None:
    """Why an edit of this caption does not change the file it came from, or None."""
    if source == FOLDER_SOURCE:
        return (
            f"this caption comes from the folder caption {source_field or ''}, shared by every item of the "
            "folder; the edit is saved in this item's own caption file, which wins over it"
        )
    if (
        source == TABLE_SOURCE
        and source_field
        and not source_field.partition(": ")[0].lower().endswith((".csv", ".tsv", ".jsonl"))
    ):
        return (
            f"this caption comes from the captions table {source_field}; sushitui rewrites CSV, TSV and JSONL "
            "tables only, so the edit is saved in the item's own caption file, which wins over the table"
        )
    return None


def rewritable_table(source_field: str | None) -> bool:
    """True when an edit of a table caption with this ``source_field`` ("<table>:
    <column>") is written into the table's cell (CSV, TSV, JSONL; not sd-scripts JSON)."""
    if not source_field or ": " not in source_field:
        return False
    rel = source_field.partition(": ")[0]
    return TABLE_FORMATS.get(posixpath.splitext(rel)[1].lower()) in ("csv", "tsv", "jsonl")


@dataclass
class CellEdit:
    """One caption cell to rewrite: the row naming one of ``image_paths``
    (dataset-relative), column ``column``; it must still hold ``old`` (unless ``force``)."""

    image_paths: list[str]
    column: str
    old: str
    new: str
    force: bool = False


def _csv_spans(text: str, delimiter: str, rel: str) -> list[tuple[int, list[tuple[int, int, bool]]]]:
    """(line, [(start, end, quoted)]) of each record of ``text``: where each field's
    characters are, so one field can be replaced and every other byte kept."""
    rows: list[tuple[int, list[tuple[int, int, bool]]]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        row_line = line
        fields: list[tuple[int, int, bool]] = []
        while True:
            start = i
            if i < n and text[i] == '"':
                i += 1
                while True:
                    j = text.find('"', i)
                    if j < 0:
                        raise TableError(f"{rel}: line {row_line}: a quoted field is never closed; not rewritten")
                    line += text.count("\n", i, j)
                    if j + 1 < n and text[j + 1] == '"':
                        i = j + 2
                        continue
                    i = j + 1
                    break
                if i < n and text[i] not in (delimiter, "\r", "\n"):
                    raise TableError(f"{rel}: line {line}: text after a closing quote; not rewritten")
                fields.append((start, i, True))
            else:
                while i < n and text[i] not in (delimiter, "\r", "\n"):
                    i += 1
                fields.append((start, i, False))
            if i < n and text[i] == delimiter:
                i += 1
                continue
            if i < n and text[i] == "\r":
                i += 1
            if i < n and text[i] == "\n":
                i += 1
            line += 1
            break
        rows.append((row_line, fields))
    return rows


def _field_text(text: str, span: tuple[int, int, bool]) -> str:
    start, end, quoted = span
    return text[start + 1 : end - 1].replace('""', '"') if quoted else text[start:end]


def _csv_field(value: str, delimiter: str, was_quoted: bool) -> str:
    if was_quoted or any(c in value for c in (delimiter, '"', "\r", "\n")) or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


class _TableChanged(Exception):
    def __init__(self, rel: str, line: int, current: str | None, column: str = ""):
        self.rel, self.line, self.current, self.column = rel, line, current, column


class TableCellConflict(CaptionConflict):
    """A table cell no longer holds what sushitui read: another program changed this
    caption in the table. Names the table, its line and column."""

    def __init__(self, path, state, rel: str, line: int, column: str, current: str | None):
        super().__init__(path, state, state, current)
        self.rel, self.line, self.column = rel, line, column
        now = "" if current is None else f" (it now holds {current.strip()[:80]!r})"
        self.args = (
            f"{path}: line {line}, column {column!r}: this caption was changed by another program since sushitui "
            f"read it{now}; not overwritten. Choose which version to keep.",
        )


class _RowMatcher:
    """Which edit a row's image value names: the value as written relative to the table
    (``x.png``, ``./x.png``, ``sub\\x.png``), an absolute path inside the dataset, or a
    foreign absolute path (Windows) ending in the image's path relative to the table."""

    def __init__(self, root: str, folder: str, edits: list[CellEdit]):
        self.root, self.folder = root, folder
        self.by_path: dict[str, list[int]] = {}
        prefix = folder + "/" if folder else ""
        self.tails: list[tuple[str, int]] = []
        for k, e in enumerate(edits):
            for p in e.image_paths:
                self.by_path.setdefault(p, []).append(k)
                if p.startswith(prefix):
                    self.tails.append(("/" + p[len(prefix) :].lower(), k))
        self.cache: dict[str, list[int]] = {}
        self.names = {p.rsplit("/", 1)[-1].lower() for e in edits for p in e.image_paths}

    def could_match(self, value: str) -> bool:
        """False only when ``value`` cannot name any of the edits' images: a cheap test
        that spares parsing the other rows of a big table. A relative value names a
        path ending in its own last name (unless that is empty, ``.`` or ``..``); an
        absolute one may reach the image through a link, so it is always looked at."""
        v = value.strip().replace("\\", "/")
        tail = v.rsplit("/", 1)[-1].lower()
        return tail in self.names or tail in ("", ".", "..") or v.startswith("/")

    def __call__(self, value: object) -> list[int]:
        if not isinstance(value, str) or not value.strip():
            return []
        v = value.strip()
        if v in self.cache:
            return self.cache[v]
        path, _why = _image_path(self.root, self.folder, v)
        found: list[int] = []
        if path is not None:
            if path.startswith("//"):
                low = path.lower()
                found = [k for tail, k in self.tails if low.endswith(tail)]
            else:
                found = list(self.by_path.get(path, ()))
        self.cache[v] = found
        return found


def _never_closed(segment: str, delimiter: str) -> bool:
    try:
        _csv_spans(segment, delimiter, "")
    except TableError as exc:
        return "never closed" in str(exc)
    return False


def _rewrite_csv(
    text: str, rel: str, fmt: str, match: _RowMatcher, image_column: str | None, edits: list[CellEdit]
) -> tuple[str, list[Exception | None]]:
    delimiter = "\t" if fmt == "tsv" else ","
    # the csv module (C) finds the records and their lines; only a record naming an edited
    # image is located field by field, so one save in a 100,000-row table is not a
    # character-by-character walk over all of it
    lines = io.StringIO(text, newline="").readlines()
    offsets = [0]
    for physical in lines:
        offsets.append(offsets[-1] + len(physical))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise TableError(f"{rel}: line 1: not valid CSV ({exc}); not rewritten") from exc
    image_column = image_column or next((c for c in AUTO_IMAGE_COLUMNS if c in header), None)
    if image_column not in header:
        raise TableError(f"{rel}: line 1 has no image column any more; not rewritten")
    image_col = header.index(image_column)
    results: list[Exception | None] = [TableError(f"{rel}: no row names this image any more; not rewritten")] * len(
        edits
    )
    replace: dict[tuple[int, int], tuple[int, str]] = {}  # (start, end) -> (edit, new field text)
    done: set[int] = set()
    end_line = reader.line_num
    while True:
        first = end_line
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise TableError(f"{rel}: line {first + 1}: not valid CSV ({exc}); not rewritten") from exc
        end_line = reader.line_num
        if (
            end_line >= len(lines)
            and text.count('"', offsets[first]) % 2
            and _never_closed(text[offsets[first] :], delimiter)
        ):
            # a quote opened and never closed swallows every row after it into one field
            raise TableError(f"{rel}: line {first + 1}: a quoted field is never closed; not rewritten")
        if image_col >= len(values) or not values[image_col].strip() or not match.could_match(values[image_col]):
            continue
        hits = [k for k in match(values[image_col]) if k not in done]
        if not hits:
            continue
        seg_start = offsets[first]
        segment = text[seg_start : offsets[end_line]]
        try:
            records = _csv_spans(segment, delimiter, rel)
        except TableError:
            records = []
        # the spans must read what the csv module reads, or the rewrite is not trusted
        if len(records) != 1 or [_field_text(segment, f) for f in records[0][1]] != values:
            raise TableError(
                f"{rel}: line {first + 1}: its CSV dialect is not one sushitui can rewrite field by field; "
                "not rewritten"
            )
        fields = [(start + seg_start, end + seg_start, quoted) for start, end, quoted in records[0][1]]
        line = first + 1
        for k in hits:  # a later row naming the image again is ignored, as when reading
            done.add(k)
            e = edits[k]
            if e.column not in header:
                results[k] = TableError(f"{rel}: line 1 has no column {e.column!r} any more; not rewritten")
                continue
            col = header.index(e.column)
            if col >= len(fields):
                results[k] = TableError(f"{rel}: line {line} has no value for {e.column!r}; not rewritten")
                continue
            current = _field_text(text, fields[col])
            if not e.force and current.strip() != e.old.strip():
                results[k] = _TableChanged(rel, line, current, e.column)
                continue
            start, end, quoted = fields[col]
            replace[(start, end)] = (k, _csv_field(e.new, delimiter, quoted))
            results[k] = None
    if not replace:
        return text, results
    parts: list[str] = []
    at = 0
    for (start, end), (_k, value) in sorted(replace.items()):
        parts += [text[at:start], value]
        at = end
    parts.append(text[at:])
    return "".join(parts), results


def _rewrite_jsonl(
    text: str, rel: str, match: _RowMatcher, image_column: str | None, edits: list[CellEdit]
) -> tuple[str, list[Exception | None]]:
    lines = text.split("\n")
    results: list[Exception | None] = [TableError(f"{rel}: no row names this image any more; not rewritten")] * len(
        edits
    )
    done: set[int] = set()
    keys = (image_column,) if image_column else AUTO_IMAGE_COLUMNS
    # every string value of an image key on a line without escapes (JSON on such a line is
    # what it looks like): a row none of whose values could name an edited image is not
    # parsed at all, so one save in a 100,000-row table costs a scan, not 100,000 parses
    image_values = re.compile(
        "(?:" + "|".join(re.escape(json.dumps(k, ensure_ascii=False)) for k in keys) + r')\s*:\s*"([^"]*)"'
    )
    for number, raw in enumerate(lines, 1):
        body = raw.rstrip("\r")
        if not body.strip():
            continue
        if "\\" not in body and not any(match.could_match(v) for v in image_values.findall(body)):
            continue
        try:
            obj = json.loads(body)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        key = image_column or next((c for c in AUTO_IMAGE_COLUMNS if c in obj), None)
        hits = [k for k in match(obj.get(key) if key else None) if k not in done]
        if not hits:
            continue
        cells: dict[str, object] = {}
        for k in hits:
            done.add(k)
            e = edits[k]
            current = obj.get(e.column)
            current_text = ", ".join(str(v) for v in current) if isinstance(current, list) else current
            if not e.force and (not isinstance(current_text, str) or current_text.strip() != e.old.strip()):
                results[k] = _TableChanged(
                    rel, number, current_text if isinstance(current_text, str) else None, e.column
                )
                continue
            obj[e.column] = [t.strip() for t in e.new.split(",") if t.strip()] if isinstance(current, list) else e.new
            cells[e.column] = obj[e.column]
            results[k] = None
        if cells:
            lines[number - 1] = _replace_json_values(body, obj, cells) + raw[len(body) :]
    return "\n".join(lines), results


_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSON_DECODER = json.JSONDecoder()


def _json_value_spans(body: str) -> dict[str, tuple[int, int]] | None:
    """Where the value of each top-level key of the JSON object ``body`` is written
    (start, end); None when it is not one plain object."""
    from json.decoder import scanstring  # type: ignore[attr-defined]  # in the module, not in its stubs

    try:
        i = _JSON_WS.match(body, 0).end()  # type: ignore[union-attr]
        if body[i : i + 1] != "{":
            return None
        i = _JSON_WS.match(body, i + 1).end()  # type: ignore[union-attr]
        spans: dict[str, tuple[int, int]] = {}
        if body[i : i + 1] == "}":
            return spans
        while True:
            if body[i : i + 1] != '"':
                return None
            key, i = scanstring(body, i + 1)
            i = _JSON_WS.match(body, i).end()  # type: ignore[union-attr]
            if body[i : i + 1] != ":":
                return None
            i = _JSON_WS.match(body, i + 1).end()  # type: ignore[union-attr]
            _value, end = _JSON_DECODER.raw_decode(body, i)
            spans[key] = (i, end)  # a repeated key: the last one counts, as for json.loads
            i = _JSON_WS.match(body, end).end()  # type: ignore[union-attr]
            if body[i : i + 1] == ",":
                i = _JSON_WS.match(body, i + 1).end()  # type: ignore[union-attr]
                continue
            return spans if body[i : i + 1] == "}" else None
    except ValueError:
        return None


def _replace_json_values(body: str, obj: dict, cells: dict[str, object]) -> str:
    """``body`` with the values of ``cells`` replaced and every other byte as written
    (numbers such as 6.10 or 1e5, spacing, other keys' escapes). A new value is escaped
    as the one it replaces was (\\u escapes stay escapes, raw UTF-8 stays raw). A row
    whose layout cannot be followed, or that lacks a key, is written out whole."""
    spans = _json_value_spans(body)
    if spans is None or any(key not in spans for key in cells):
        compact = '": ' not in body and '", ' not in body
        escaped = "\\u" in body
        return json.dumps(obj, ensure_ascii=escaped, separators=(",", ":") if compact else (", ", ": "))
    out = body
    for key, (start, end) in sorted(((k, spans[k]) for k in cells), key=lambda kv: kv[1][0], reverse=True):
        old = body[start:end]
        escaped = "\\u" in old or ("\\u" in body and body.isascii())
        separators = (", ", ": ") if ", " in old else (",", ":")
        out = out[:start] + json.dumps(cells[key], ensure_ascii=escaped, separators=separators) + out[end:]
    return out


# one rewrite of a table at a time in this process (bulk edits write from a few threads);
# other processes are kept out by the dataset's write lock, which the callers hold
_REWRITE = threading.Lock()


# a table another program keeps rewriting while sushitui rewrites it: redo the edits on
# its new text this many times before reporting a conflict
_REWRITE_ATTEMPTS = 4


def write_table_cells(
    root: str, rel: str, edits: list[CellEdit], image_column: str | None = None
) -> tuple[object | None, list[Exception | None]]:
    """Rewrite several caption cells of the table at dataset-relative ``rel`` in one
    atomic replacement of the file. The caller holds the dataset's write lock.

    Returns (the table's new FileState, or None when nothing was written; per edit None
    when written, else TableCellConflict — the cell no longer holds ``old``: another
    program changed this caption in the table; it names the line — or TableError — the
    row or column is gone). The other edits are written all the same. Other rows,
    columns, quoting, line endings and a BOM are kept byte for byte; the file is replaced
    (temporary file, fsync, rename) only if it did not change while this ran: when it
    did, the edits are redone on its new text (another program's change of another row
    is kept, not refused). Raises TableError when the table as a whole cannot be
    rewritten (format, encoding, read-only, a hard link, not a regular file, too large,
    unreadable, its folder not writable) and UnsafeCaptionPath when it is reached
    through a link leading outside the dataset."""
    import hashlib
    import tempfile
    from pathlib import Path

    from sushitui.dataset.caption_files import TEMP_SUFFIX, FileState, _read_only, temp_prefix, write_target

    fmt = TABLE_FORMATS.get(posixpath.splitext(rel)[1].lower())
    if fmt not in ("csv", "tsv", "jsonl"):
        raise TableError(f"{rel}: sushitui rewrites CSV, TSV and JSONL tables only; the edit was not saved there")
    with _REWRITE:
        path = write_target(Path(root, *rel.split("/")), root)
        for attempt in range(_REWRITE_ATTEMPTS):
            try:
                data, st = _read_table_bytes(path, rel)
            except FileNotFoundError as exc:
                raise TableError(f"{rel}: no longer exists; not rewritten. Reindex the dataset") from exc
            if st.st_nlink > 1:
                # replacing it would leave its other names with the old text, silently
                # splitting what the user made one file
                raise TableError(
                    f"{rel}: has {st.st_nlink} hard links (the same file under other names); sushitui does not "
                    "replace it, as those would keep the old text. Make it a file of its own (cp it and move the "
                    "copy over it) to edit its captions"
                )
            if _read_only(st):
                raise TableError(
                    f"{rel}: is read-only (mode {stat.S_IMODE(st.st_mode):04o}); not rewritten. "
                    "Make it writable (chmod u+w) to edit its captions"
                )
            text, encoding, flagged = decode_caption(data)
            if flagged or encoding not in ("utf-8", "utf-8-sig"):
                raise TableError(
                    f"{rel}: is {encoding}, not UTF-8; sushitui writes tables in their own encoding only when "
                    "it is UTF-8. Convert it to UTF-8 to edit its captions here"
                )
            match = _RowMatcher(root, posixpath.dirname(rel), edits)
            if fmt == "jsonl":
                new_text, results = _rewrite_jsonl(text, rel, match, image_column, edits)
            else:
                new_text, results = _rewrite_csv(text, rel, fmt, match, image_column, edits)
            before = FileState(len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest())
            out_results: list[Exception | None] = [
                TableCellConflict(path, before, r.rel, r.line, r.column, r.current)
                if isinstance(r, _TableChanged)
                else r
                for r in results
            ]
            if all(r is not None for r in out_results):
                return None, out_results
            out = new_text.encode("utf-8")
            if encoding == "utf-8-sig":
                out = b"\xef\xbb\xbf" + out
            try:
                fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)
            except OSError as exc:
                folder = posixpath.dirname(rel) or "the dataset folder"
                raise TableError(
                    f"{rel}: its folder {folder} is not writable ({exc.strerror or exc}); not rewritten"
                ) from exc
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(out)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, st.st_mode & 0o777)
                try:
                    now: bytes | None = _read_table_bytes(path, rel)[0]
                except (OSError, TableError):
                    now = None
                if now == data:
                    os.replace(tmp, path)
            except OSError as exc:
                _unlink_quietly(tmp)
                reason = "the disk is full" if exc.errno == 28 else (exc.strerror or str(exc))
                raise TableError(f"{rel}: not rewritten ({reason}); the table is as it was") from exc
            except BaseException:
                _unlink_quietly(tmp)
                raise
            if now != data:  # changed while this ran: redo the edits on what it holds now
                _unlink_quietly(tmp)
                if attempt + 1 < _REWRITE_ATTEMPTS:
                    continue
                current = None if now is None else FileState(len(now), 0, hashlib.sha256(now).hexdigest())
                raise CaptionConflict(path, before, current, None)
            break
        fsync_dir(path.parent)
        st2 = os.stat(path)
        return FileState(len(out), st2.st_mtime_ns, hashlib.sha256(out).hexdigest()), out_results


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_table_cell(
    root: str, rel: str, image_paths: list[str], column: str, image_column: str | None = None
) -> str | None:
    """The text the table at dataset-relative ``rel`` holds now in ``column`` for the item
    whose images are ``image_paths`` (a conflict's "take the disk version"), stripped as a
    scan reads it; None when no row names the item any more."""
    fmt = TABLE_FORMATS.get(posixpath.splitext(rel)[1].lower())
    if fmt not in ("csv", "tsv", "jsonl"):
        return None
    table = Table(rel, posixpath.dirname(rel))
    text = _decode(os.path.join(root, *rel.split("/")), rel, table)
    if text is None:
        raise TableError(table.fatal or f"{rel}: cannot be read")
    columns, rows = _records(text, fmt, rel, table)
    match = _RowMatcher(root, posixpath.dirname(rel), [CellEdit(list(image_paths), column, "", "")])
    key = image_column or next((c for c in AUTO_IMAGE_COLUMNS if c in columns), None)
    for _line, record in rows:
        if key is None:
            key = next((c for c in AUTO_IMAGE_COLUMNS if c in record), None)
        if key is not None and match(record.get(key)):
            value = record.get(column)
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            return value.strip() if isinstance(value, str) else None
    return None


def write_table_caption(
    root: str, source_field: str, image_paths: list[str], old: str, new: str, image_column: str | None = None
):
    """Write ``new`` into the table cell that ``source_field`` ("<table>: <column>")
    holds for the item whose images are ``image_paths`` (dataset-relative); one
    ``write_table_cells`` edit. CaptionConflict when the cell no longer holds ``old``;
    TableError when it cannot be written. Returns the table's new FileState."""
    rel, _sep, column = source_field.partition(": ")
    state, results = write_table_cells(root, rel, [CellEdit(list(image_paths), column, old, new)], image_column)
    if results[0] is not None:
        raise results[0]
    return state
