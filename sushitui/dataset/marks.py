"""A user's marks on an item: stars (0-5), flags (exclude, needs-work, reg) and a crop.

Where they live: ``.sushitui/marks.json`` in the dataset's folder, one file per dataset,
keyed by the item's ``group_key`` (its folder and base name, ``sub/img001``). That file is
the truth; the ``item.rating/flags/crop`` columns (migration 9) are its index, so that
``rating:>=4`` and ``flag:exclude`` are plain SQL. After every scan (``dataset add`` and
``dataset reindex``) ``restore_marks`` makes the columns equal to the file again, which is
why ``dataset remove`` followed by ``dataset add`` of the same folder gets every mark back.

Why a JSON file and not XMP sidecars (``xmp:Rating``): ``.xmp`` sidecars are the photo
tool's files, which the scanner reads (captions) and never writes; a sidecar per image
would double the files of a 100k-image folder; and flags and crops have no standard XMP
field anyway. The scanner skips hidden folders, so ``.sushitui/``
is never indexed; it moves and is backed up with the dataset.

Every change takes the dataset's write lock (``write_lock``), reads the file, writes it
atomically (temporary file, fsync, rename) and then updates the index rows. A file that
is not valid JSON is never overwritten: the change is refused with the path and what to do.

Format (version 1)::

    {"version": 1, "items": {"sub/img001": {"rating": 4, "flags": ["exclude"], "crop": [0, 0, 512, 512]}}}

An entry with no stars, no flags and no crop is dropped. Entries of items that are not
indexed (a file moved away for now) are kept: the item gets them back when it returns.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from sushitui.dataset.caption_files import fsync_dir
from sushitui.errors import UserError
from sushitui.store import Item, current_database, write_transaction
from sushitui.store.models import ITEM_FLAGS, Dataset

MARKS_DIR = ".sushitui"
MARKS_FILE = "marks.json"
FORMAT_VERSION = 1
MAX_RATING = 5
FLAGS = ITEM_FLAGS
FLAG_ALIASES = {
    "excluded": "exclude",
    "needs_work": "needs-work",
    "needswork": "needs-work",
    "work": "needs-work",
    "regularization": "reg",
    "regularisation": "reg",
}
_CHUNK = 500


class MarksError(UserError, ValueError):
    """A mark that cannot be set (bad value, unknown item, marks file unreadable)."""


@dataclass(frozen=True)
class Marks:
    rating: int = 0
    flags: frozenset[str] = frozenset()
    crop: tuple[int, int, int, int] | None = None

    @property
    def empty(self) -> bool:
        return not self.rating and not self.flags and self.crop is None

    def to_json(self) -> dict:
        out: dict = {}
        if self.rating:
            out["rating"] = self.rating
        if self.flags:
            out["flags"] = [f for f in FLAGS if f in self.flags]
        if self.crop is not None:
            out["crop"] = list(self.crop)
        return out

    def stars(self) -> str:
        """``★★★☆☆`` (empty string when unrated)."""
        return "★" * self.rating + "☆" * (MAX_RATING - self.rating) if self.rating else ""

    def badge(self) -> str:
        """A few cells for a browser card: ``★4 ✕⚑R✂`` (exclude ✕, needs-work ⚑, reg R, crop ✂)."""
        flags = "".join(sym for f, sym in zip(FLAGS, ("✕", "⚑", "R")) if f in self.flags) + ("✂" if self.crop else "")
        return " ".join(p for p in (f"★{self.rating}" if self.rating else "", flags) if p)

    def label(self) -> str:
        """Short text for cards and titles: ``★★★☆☆ exclude reg crop``."""
        parts = [self.stars()] if self.rating else []
        parts += [f for f in FLAGS if f in self.flags]
        if self.crop is not None:
            parts.append("crop")
        return " ".join(parts)


@dataclass
class MarkResult:
    """What a change did: ``changed`` items got a new value, ``unchanged`` had it already."""

    changed: int = 0
    unchanged: int = 0
    path: Path | None = None
    item_ids: list[int] = field(default_factory=list)


# --- values ------------------------------------------------------------------------------


def flag_bits(flags: Iterable[str]) -> int:
    bits = 0
    for f in flags:
        bits |= 1 << FLAGS.index(f)
    return bits


def bits_flags(bits: int) -> frozenset[str]:
    return frozenset(f for i, f in enumerate(FLAGS) if bits & (1 << i))


def parse_flag(text: str) -> str:
    """A flag name as a user types it (``exclude``, ``needs_work``, ``REG``)."""
    word = text.strip().lower()
    word = FLAG_ALIASES.get(word, word)
    if word not in FLAGS:
        raise MarksError(f"unknown flag {text!r}: use one of {', '.join(FLAGS)}")
    return word


def parse_rating(text: str | int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise MarksError(f"a rating is a whole number of stars from 0 to {MAX_RATING}, not {str(text)!r}") from None
    if not 0 <= value <= MAX_RATING:
        raise MarksError(f"a rating is 0 to {MAX_RATING} stars (0 clears it), not {value}")
    return value


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``x,y,w,h`` in image pixels."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise MarksError(f"a crop is x,y,w,h in whole pixels (e.g. 0,128,1024,768), not {text!r}")
    x, y, w, h = values
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise MarksError(f"crop {text!r}: x and y must be ≥ 0, width and height > 0")
    return x, y, w, h


def check_crop(crop: tuple[int, int, int, int], width: int | None, height: int | None, what: str) -> None:
    x, y, w, h = crop
    # the index may hold the stored size of a picture its EXIF turns upright: either way round
    if width and height and (x + w > width or y + h > height) and (x + w > height or y + h > width):
        raise MarksError(f"{what}: crop {x},{y},{w},{h} reaches past the image ({width}×{height})")


# --- the file ------------------------------------------------------------------------------


def marks_path(root: str | os.PathLike) -> Path:
    return Path(root) / MARKS_DIR / MARKS_FILE


def _entry(key: str, raw, path: Path) -> Marks:
    if not isinstance(raw, dict):
        raise MarksError(f"{path}: the entry of {key!r} is not an object; fix or delete the file")
    rating = raw.get("rating", 0)
    flags = raw.get("flags", [])
    crop = raw.get("crop")
    if not isinstance(rating, int) or isinstance(rating, bool) or not 0 <= rating <= MAX_RATING:
        raise MarksError(f"{path}: {key!r} has rating {rating!r} (0 to {MAX_RATING}); fix or delete the file")
    if not isinstance(flags, list) or any(f not in FLAGS for f in flags):
        raise MarksError(f"{path}: {key!r} has flags {flags!r} (known: {', '.join(FLAGS)}); fix or delete the file")
    if crop is not None:
        if (
            not isinstance(crop, list)
            or len(crop) != 4
            or any(not isinstance(v, int) or isinstance(v, bool) for v in crop)
            or crop[0] < 0
            or crop[1] < 0
            or crop[2] <= 0
            or crop[3] <= 0
        ):
            raise MarksError(f"{path}: {key!r} has crop {crop!r} (want [x, y, w, h]); fix or delete the file")
        crop = tuple(crop)
    return Marks(rating, frozenset(flags), crop)


def read_marks_file(root: str | os.PathLike) -> dict[str, Marks]:
    """group_key -> Marks from the dataset's file ({} when there is none). Raises
    MarksError, naming the file, when it cannot be read or is not a marks file."""
    path = marks_path(root)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise MarksError(f"{path}: cannot read the marks file ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MarksError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix it or move it away (marks are then empty)"
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("items", {}), dict):
        raise MarksError(f'{path}: not a sushitui marks file (want {{"version": 1, "items": {{...}}}})')
    version = doc.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise MarksError(
            f"{path}: marks file version {version!r} is newer than this sushitui reads "
            f"({FORMAT_VERSION}); update sushitui"
        )
    return {str(k): _entry(str(k), v, path) for k, v in doc.get("items", {}).items()}


def write_marks_file(root: str | os.PathLike, marks: dict[str, Marks]) -> Path:
    """Write the whole file atomically (a reader sees the old or the new file, never half)."""
    path = marks_path(root)
    # one item per line: compact for 100k items, and a diff or a hand edit stays readable
    lines = [
        f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(marks[k].to_json(), ensure_ascii=False)}"
        for k in sorted(marks)
        if not marks[k].empty
    ]
    body = ",\n".join(lines)
    data = (f'{{"version": {FORMAT_VERSION}, "items": {{' + (f"\n{body}\n" if lines else "") + "}}\n").encode("utf-8")
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".marks-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise MarksError(f"{path}: cannot write the marks file ({exc.strerror or exc}); nothing was changed") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise MarksError(f"{path}: cannot write the marks file ({exc.strerror or exc}); nothing was changed") from exc
    fsync_dir(path.parent)
    return path


# --- reading the index -------------------------------------------------------------------------


def _row_marks(rating, flags, crop) -> Marks:
    if isinstance(crop, str):
        crop = json.loads(crop)
    return Marks(rating or 0, bits_flags(flags or 0), tuple(crop) if crop else None)


def item_marks(item_id: int) -> Marks:
    row = current_database().execute_sql("SELECT rating, flags, crop FROM item WHERE id = ?", (item_id,)).fetchone()
    return Marks() if row is None else _row_marks(*row)


def marks_of(item_ids: Sequence[int]) -> dict[int, Marks]:
    """item id -> Marks for the items that have any."""
    db = current_database()
    out: dict[int, Marks] = {}
    for chunk in _chunks(list(item_ids), _CHUNK):
        for item_id, rating, flags, crop in db.execute_sql(
            f"SELECT id, rating, flags, crop FROM item WHERE id IN ({','.join('?' * len(chunk))}) "
            "AND (rating != 0 OR flags != 0 OR crop IS NOT NULL)",
            chunk,
        ):
            out[item_id] = _row_marks(rating, flags, crop)
    return out


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


# --- which items ------------------------------------------------------------------------------


def resolve_items(dataset: Dataset, refs: Sequence[str] = (), query: str | None = None) -> list[int]:
    """Item ids from what a user typed: an item id, its name (``sub/img001``, with or
    without the image's extension), the image's path (relative to the dataset or
    absolute) or a base name that only one item has; and/or every item of ``query``.
    Raises MarksError naming every reference that matches nothing."""
    from sushitui.tags.query import matching_item_ids

    db = current_database()
    ids: list[int] = []
    if query is not None:
        ids.extend(matching_item_ids(dataset.id, query))
    unknown: list[str] = []
    ambiguous: list[str] = []
    root = os.path.realpath(dataset.root_path)
    for ref in refs:
        found = _resolve_one(db, dataset.id, root, ref)
        if found is None:
            unknown.append(ref)
        elif found == -1:
            ambiguous.append(ref)
        else:
            ids.append(found)
    if unknown or ambiguous:
        parts = []
        if unknown:
            parts.append(
                f"no item {', '.join(repr(r) for r in unknown[:5])}{' …' if len(unknown) > 5 else ''} "
                f"in dataset {dataset.name!r}"
            )
        if ambiguous:
            parts.append(
                f"{', '.join(repr(r) for r in ambiguous[:5])} names several items; give the folder too (sub/name)"
            )
        raise MarksError(
            "; ".join(parts) + f" (items are named as `sushitui items {dataset.name}` lists them, "
            "by id or path); nothing was changed"
        )
    return list(dict.fromkeys(ids))


def _resolve_one(db, dataset_id: int, root: str, ref: str) -> int | None:
    text = ref.strip()
    if text.isdigit():
        row = db.execute_sql("SELECT id FROM item WHERE id = ? AND dataset_id = ?", (int(text), dataset_id)).fetchone()
        if row:
            return row[0]
    if os.path.isabs(text):
        real = os.path.realpath(text)
        if real == root or not real.startswith(root + os.sep):
            return None
        text = os.path.relpath(real, root)
    rel = text.replace(os.sep, "/").strip("/")
    if rel.startswith("./"):
        rel = rel[2:]
    for sql, value in (("group_key = ?", rel), ("image_path = ?", rel), ("group_key = ?", os.path.splitext(rel)[0])):
        row = db.execute_sql(f"SELECT id FROM item WHERE dataset_id = ? AND {sql}", (dataset_id, value)).fetchone()
        if row:
            return row[0]
    if "/" not in rel:
        rows = db.execute_sql(
            "SELECT id FROM item WHERE dataset_id = ? AND base_name IN (?, ?) LIMIT 2",
            (dataset_id, rel, os.path.splitext(rel)[0]),
        ).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if len(rows) > 1:
            return -1
    return None


# --- changing marks -----------------------------------------------------------------------------


def dataset_of(item_ids: Sequence[int]) -> Dataset:
    rows = (
        current_database()
        .execute_sql(
            f"SELECT DISTINCT dataset_id FROM item WHERE id IN ({','.join('?' * len(item_ids[:_CHUNK]))})",
            list(item_ids[:_CHUNK]),
        )
        .fetchall()
    )
    if not rows:
        raise MarksError("those items are no longer indexed; reload the list")
    return Dataset.get_by_id(rows[0][0])


def _change(item_ids: Sequence[int], how, *, dataset: Dataset | None = None, what: str = "marks") -> MarkResult:
    """Apply ``how(Marks, row) -> Marks`` to each item: file first, then the index."""
    from sushitui.dataset.write_lock import dataset_write_lock

    ids = list(dict.fromkeys(item_ids))
    result = MarkResult()
    if not ids:
        return result
    ds = dataset or dataset_of(ids)
    db = current_database()
    with dataset_write_lock(ds.root_path, what=what, name=ds.name):
        rows = []
        for chunk in _chunks(ids, _CHUNK):
            rows.extend(
                db.execute_sql(
                    f"SELECT id, group_key, rating, flags, crop, width, height FROM item "
                    f"WHERE dataset_id = ? AND id IN ({','.join('?' * len(chunk))})",
                    (ds.id, *chunk),
                ).fetchall()
            )
        stored = read_marks_file(ds.root_path)
        updates = []
        for item_id, key, rating, flags, crop, width, height in rows:
            old = stored.get(key) or _row_marks(rating, flags, crop)
            new = how(old, (key, width, height))
            if new == old and new == _row_marks(rating, flags, crop):
                result.unchanged += 1
                continue
            stored[key] = new
            updates.append(
                (
                    new.rating,
                    flag_bits(new.flags),
                    json.dumps(list(new.crop)) if new.crop else None,
                    time.time(),
                    item_id,
                )
            )
            result.item_ids.append(item_id)
        if updates:
            result.path = write_marks_file(ds.root_path, stored)
            with write_transaction(db):
                db.connection().executemany(
                    "UPDATE item SET rating = ?, flags = ?, crop = ?, updated_at = ? WHERE id = ?", updates
                )
        result.changed = len(updates)
    return result


def set_rating(item_ids: Sequence[int], rating: int, *, dataset: Dataset | None = None) -> MarkResult:
    rating = parse_rating(rating)
    return _change(item_ids, lambda m, _row: Marks(rating, m.flags, m.crop), dataset=dataset, what="rating")


def step_rating(item_ids: Sequence[int], step: int, *, dataset: Dataset | None = None) -> MarkResult:
    """One star more (``step`` 1) or fewer (-1), within 0..5."""

    def how(m: Marks, _row) -> Marks:
        return Marks(max(0, min(MAX_RATING, m.rating + step)), m.flags, m.crop)

    return _change(item_ids, how, dataset=dataset, what="rating")


def set_flag(
    item_ids: Sequence[int], flag: str, on: bool | None = True, *, dataset: Dataset | None = None
) -> MarkResult:
    """Set (``on``), clear (``not on``) or toggle (``on is None``) a flag. A toggle over
    several items sets it on all of them unless all have it (then clears it): one key
    press gives one state, as file managers do with a selection."""
    flag = parse_flag(flag)
    if on is None:
        have = marks_of(item_ids)
        on = not all(flag in have.get(i, Marks()).flags for i in item_ids)

    def how(m: Marks, _row) -> Marks:
        return Marks(m.rating, (m.flags | {flag}) if on else (m.flags - {flag}), m.crop)

    return _change(item_ids, how, dataset=dataset, what="flag")


def set_crop(item_id: int, crop: tuple[int, int, int, int] | None, *, dataset: Dataset | None = None) -> MarkResult:
    """Set or (None) clear an item's crop rectangle, in the image's pixels."""

    def how(m: Marks, row) -> Marks:
        if crop is not None:
            check_crop(crop, row[1], row[2], row[0])
        return Marks(m.rating, m.flags, crop)

    return _change([item_id], how, dataset=dataset, what="crop")


def forget(dataset: Dataset, group_keys: Iterable[str]) -> dict[str, Marks]:
    """Take items' entries out of the file (their files went to the trash); returns them
    so that a restore can put them back. The caller holds the write lock."""
    stored = read_marks_file(dataset.root_path)
    taken = {k: stored.pop(k) for k in list(group_keys) if k in stored}
    if taken:
        write_marks_file(dataset.root_path, stored)
    return taken


def put_back(dataset: Dataset, entries: dict[str, Marks]) -> None:
    """Put entries taken by ``forget`` back in the file (the caller holds the write lock;
    the rows get them at the next ``restore_marks``)."""
    if not entries:
        return
    stored = read_marks_file(dataset.root_path)
    stored.update(entries)
    write_marks_file(dataset.root_path, stored)


# --- after a scan: the index follows the file ------------------------------------------------------


def restore_marks(dataset: Dataset) -> int:
    """Make the dataset's mark columns equal to its marks file (after ``dataset add`` or
    ``reindex``): items in the file get their marks, items not in it have none. Returns
    how many rows changed. Raises MarksError when the file cannot be read (the index is
    then left as it is)."""
    from sushitui.dataset.write_lock import dataset_write_lock

    db = current_database()
    path = marks_path(dataset.root_path)
    marked = db.execute_sql(
        "SELECT id, group_key, rating, flags, crop FROM item WHERE dataset_id = ? "
        "AND (rating != 0 OR flags != 0 OR crop IS NOT NULL)",
        (dataset.id,),
    ).fetchall()
    if not marked and not path.exists():
        return 0  # the common case: nothing marked anywhere, one stat
    with dataset_write_lock(dataset.root_path, what="restoring marks", name=dataset.name):
        stored = read_marks_file(dataset.root_path)
        current = {key: (item_id, _row_marks(r, f, c)) for item_id, key, r, f, c in marked}
        keys = [k for k in stored if k not in current]
        ids_by_key = {}
        for chunk in _chunks(keys, _CHUNK):
            ids_by_key.update(
                {
                    k: i
                    for i, k in db.execute_sql(
                        f"SELECT id, group_key FROM item WHERE dataset_id = ? AND group_key IN ({','.join('?' * len(chunk))})",
                        (dataset.id, *chunk),
                    )
                }
            )
        updates = []
        for key, marks in stored.items():
            if key in current:
                item_id, have = current[key]
            elif key in ids_by_key:
                item_id, have = ids_by_key[key], Marks()
            else:
                continue  # not indexed now: kept in the file for when it returns
            if have != marks:
                updates.append(
                    (
                        marks.rating,
                        flag_bits(marks.flags),
                        json.dumps(list(marks.crop)) if marks.crop else None,
                        item_id,
                    )
                )
        updates += [(0, 0, None, item_id) for key, (item_id, _m) in current.items() if key not in stored]
        if updates:
            with write_transaction(db):
                db.connection().executemany("UPDATE item SET rating = ?, flags = ?, crop = ? WHERE id = ?", updates)
    return len(updates)


def excluded_filter():
    """A peewee condition on ``Item`` that leaves out items flagged ``exclude`` (exports)."""
    return (Item.flags.bin_and(1 << FLAGS.index("exclude"))) == 0
