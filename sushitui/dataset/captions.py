"""Editing an item's captions: the one write path used by the item editor, bulk tag
edits, the auto-tagger and quick tagging.

The caption file is written first (atomically, refusing to clobber a file that changed
since it was indexed), then the index rows are updated in one transaction. A crash in
between leaves a new file and an old index row, which the next reindex repairs because
the file is the truth (NF-2).

A caption read from a caption table (CSV/TSV/JSONL: source ``table``, no file of its own)
is edited in its cell (``tables.write_table_cells``): one rewrite of each table per
batch, refused as a conflict when the cell no longer holds what the index read. Captions
read from the image's metadata, sd-scripts JSON or a folder caption file are never
rewritten: their edit becomes the item's own caption file (source ``txt_file``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from sushitui.dataset.caption_files import (
    CaptionConflict,
    CaptionFileError,
    FileState,
    StagedWrite,
    publish_staged,
    read_caption,
    stage_atomic,
    write_atomic,
)
from sushitui.dataset.paths import to_abs
from sushitui.dataset.tables import (
    TABLE_SOURCE,
    CellEdit,
    TableError,
    read_table_cell,
    rewritable_table,
    write_table_cells,
)
from sushitui.dataset.write_lock import DEFAULT_WAIT_S, dataset_write_lock
from sushitui.store import (
    Caption,
    Dataset,
    Item,
    ItemTag,
    current_database,
    group_index,
    tag_bitmaps,
    write_transaction,
)
from sushitui.tags.normalize import dedupe, join_tags, match_key, split_tags

MAIN = "main"
TEXT_TYPES = ("natural_language", "social_media", "instruction", "description", "prompt")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass
class TagEdit:
    """New tags for one item's tag caption of ``subtype``.

    ``rewrite``, when given, computes the new tags from the caption's tags as they are
    under the dataset's write lock (``tags`` is then ignored): an edit that merges (add a
    tag, keep the rest) cannot lose what another process wrote a moment before.
    ``base`` is the file state an editor showed the user (None: no file then); the file
    must still be that, else the edit is a conflict. Without it the index's record of
    the file is the reference (kept true under the lock by every sushitui writer)."""

    item: Item
    tags: Sequence[str] = ()
    # per-tag (source, confidence) by match key, for tags written by a tagger
    sources: dict[str, tuple[str, float | None]] | None = None
    rewrite: Callable[[list[str]], list[str]] | None = None
    base: Any = UNSET


@dataclass
class EditProblem:
    item_id: int
    path: str | None
    reason: str
    conflict: CaptionConflict | None = None
    error: CaptionFileError | None = None  # the exception, so a single edit re-raises its kind


@dataclass
class EditReport:
    changed: int = 0
    unchanged: int = 0
    files_written: list[str] = field(default_factory=list)
    problems: list[EditProblem] = field(default_factory=list)
    # item id -> (subtype written, the file's new state, or for a table caption the cell
    # text written): an editor's next base
    written: dict[int, tuple[str, Any]] = field(default_factory=dict)


# Bulk edits with this subtype edit each item's own tag caption (preferred_tag_subtype).
EACH_ITEM = "auto"


def tag_subtype_order(subtypes: Iterable[str]) -> list[str]:
    """Tag caption subtypes as the screens list them: main, alt, then the rest (tagger
    ``auto_…`` ones last)."""
    order = {MAIN: 0, "alt": 1}
    return sorted(set(subtypes), key=lambda s: (order.get(s, 2), s.startswith("auto_"), s))


def preferred_tag_subtype(tags_by_subtype: dict[str, list], main_is_prose: bool) -> str:
    """The tag caption to edit for an item: main, unless the main caption is prose and
    another tag caption has tags (kohya GUI folders: BLIP sentences in x.txt are main,
    the WD14 tags are in x.cap)."""
    if not main_is_prose:
        return MAIN
    return next((s for s in tag_subtype_order(tags_by_subtype) if tags_by_subtype[s]), MAIN)


def caption_state(caption: Caption | None) -> FileState | None:
    """What the index last saw of the caption's file (None: no file known)."""
    if caption is None or caption.file_path is None or caption.file_sha256 is None:
        return None
    return FileState(caption.file_size or 0, caption.file_mtime_ns or 0, caption.file_sha256)


def new_caption_rel_path(item: Item, subtype: str, siblings: Iterable[Caption] = ()) -> str:
    """Where a caption that has no file yet goes.

    The main caption of a plain item is ``base.txt`` (what kohya-ss and most trainers
    read); when the item already uses suffixed captions (layout B/C) it is
    ``base_main.txt``; other subtypes are ``base_<subtype>.txt``.
    """
    prefix = f"{item.rel_dir}/" if item.rel_dir else ""
    if subtype in ("", MAIN):
        uses_suffixes = item.item_type == "group" or any(
            c.file_path and Path(c.file_path).stem != item.base_name for c in siblings
        )
        return (
            f"{prefix}{item.base_name}_main.txt"
            if uses_suffixes and subtype == MAIN
            else f"{prefix}{item.base_name}.txt"
        )
    return f"{prefix}{item.base_name}_{subtype}.txt"


EMBEDDED_SOURCES = ("exif", "xmp", "iptc", "png_text")  # captions read from inside the image


def file_subtype(subtype: str) -> str:
    """The subtype as a scan reads it back from ``<base>_<subtype>.txt``: lowercase,
    letters, digits and '-' (``xmp_dc_subject`` -> ``xmp-dc-subject``)."""
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in (subtype or MAIN).lower()).strip("-")
    return safe or "tags2"


def _embedded(caption: Caption | None) -> bool:
    return caption is not None and caption.file_path is None and caption.source in EMBEDDED_SOURCES


def in_table(caption: Caption | None) -> bool:
    """True when an edit of ``caption`` is written into the cell of the caption table it
    was read from (CSV, TSV, JSONL)."""
    return (
        caption is not None
        and caption.file_path is None
        and caption.source == TABLE_SOURCE
        and rewritable_table(caption.source_field)
    )


def table_of(caption: Caption) -> str:
    """The dataset-relative table file a table caption was read from."""
    return (caption.source_field or "").partition(": ")[0]


def _item_images(item_ids: Iterable[int]) -> dict[int, list[str]]:
    """item id -> its images (dataset-relative), primary first: a table row may name any."""
    ids = sorted(set(item_ids))
    out: dict[int, list[str]] = {}
    for start in range(0, len(ids), 500):
        q = Item.select(Item.id, Item.image_path, Item.related_images).where(Item.id.in_(ids[start : start + 500]))
        for row in q:
            paths = [row.image_path] if row.image_path else []
            paths += [p for p in (row.related_images or {}).values() if p and p not in paths]
            out[row.id] = paths
    return out


@dataclass(frozen=True)
class CellBase:
    """What an editor showed of a table caption (``TagEdit.base`` / ``set_text``'s base):
    its cell must still hold this text, else the save is a conflict."""

    text: str


def _cell_expected(caption: Caption, base: Any) -> tuple[str, bool]:
    """(the text the cell must still hold, force): the editor's, else the index's; a base
    of False (VLM's "keep mine") writes over whatever the cell holds."""
    if base is False:
        return caption.content or "", True
    return (base.text if isinstance(base, CellBase) else caption.content or ""), False


@dataclass
class _TableWrite:
    dataset: Dataset
    caption: Caption
    text: str  # the new cell text
    expected: str  # what the cell must still hold
    force: bool = False


def _write_tables(writes: Sequence[_TableWrite]) -> list[tuple[str, CaptionFileError | None, FileState | None]]:
    """Write each table caption's new text into its cell, one rewrite per table file for
    the whole batch. Returns per write (table file, None or the problem: CaptionConflict
    when the cell no longer holds ``expected``, the table's new state). The caller holds
    the datasets' write locks."""
    images = _item_images(w.caption.item_id for w in writes)
    groups: dict[tuple[int, str], list[int]] = {}
    for n, w in enumerate(writes):
        groups.setdefault((w.dataset.id, table_of(w.caption)), []).append(n)
    out: list[tuple[str, CaptionFileError | None, FileState | None]] = [("", None, None)] * len(writes)
    for (_ds_id, rel), idx in groups.items():
        ds = writes[idx[0]].dataset
        image_column = next(
            (str(t.get("image_column")) for t in ds.caption_tables or () if str(t.get("file")) == rel), None
        )
        cells = [
            CellEdit(
                images.get(writes[n].caption.item_id, []),
                (writes[n].caption.source_field or "").partition(": ")[2],
                writes[n].expected,
                writes[n].text,
                writes[n].force,
            )
            for n in idx
        ]
        results: list[Exception | None]
        state: Any = None
        try:
            state, results = write_table_cells(ds.root_path, rel, cells, image_column)
        except (CaptionFileError, TableError) as exc:
            results = [exc] * len(idx)
        except OSError as exc:
            results = [CaptionFileError(f"{rel}: cannot be written ({exc.strerror or exc}); not rewritten")] * len(idx)
        for n, r in zip(idx, results):
            problem = r if r is None or isinstance(r, CaptionFileError) else CaptionFileError(str(r))
            out[n] = (rel, problem, state if problem is None else None)
    return out


def check_new_subtype(dataset: Dataset, subtype: str) -> bool:
    """Raise CaptionFileError when new captions of ``subtype`` could not be read back by
    a scan (their file is ``<base>_<subtype>.txt``, read by the part after the last
    ``_``); True when a scan reads them already (main, or a caption suffix). Entry points
    (auto-tagging, bulk edits) call it once before any work."""
    key = (subtype or MAIN).lower()
    if key == MAIN or key in [s.lower() for s in dataset.caption_suffixes or ()]:
        return True
    if file_subtype(key) != key:
        fixed = file_subtype(key)
        raise CaptionFileError(
            f"subtype {subtype!r} cannot name a caption file: a scan reads the subtype back from the part after the "
            f"last '_' of <image>_{subtype}.txt. Use letters, digits and '-' only (e.g. {fixed!r})."
        )
    # an image suffix may name its role (0=source): the part before '=' is the file suffix
    if key in [s.split("=", 1)[0].lower() for s in dataset.image_suffixes or ()]:
        raise CaptionFileError(
            f"subtype {subtype!r} is one of the dataset's image suffixes (<image>_{key}.png is an image of a group); "
            "pick another subtype"
        )
    return False


def _register_subtype(dataset: Dataset, subtype: str) -> None:
    """A new ``<base>_<subtype>.txt`` is read back by later scans only when ``subtype``
    is one of the dataset's caption suffixes: add it to them before the first such file
    is written (or refuse a name that cannot be read back). No full re-read is needed:
    only the folders these new files land in change, and a reindex re-reads those."""
    if check_new_subtype(dataset, subtype):
        return
    key = subtype.lower()
    with write_transaction():
        fresh = Dataset.get_by_id(dataset.id)
        suffixes = list(fresh.caption_suffixes or [])
        if key not in suffixes:
            suffixes.append(key)
            Dataset.update({Dataset.caption_suffixes: suffixes, Dataset.updated_at: time.time()}).where(
                Dataset.id == dataset.id
            ).execute()
    dataset.caption_suffixes = suffixes


class CaptionSlotTaken(CaptionFileError):
    """The file a new caption would go to already holds a caption of another type."""


def _check_slot_free(rel: str, ctype: str, subtype: str, siblings: Iterable[Caption]) -> None:
    for c in siblings:
        if c.file_path == rel and c.type != ctype:
            raise CaptionSlotTaken(
                f"{rel} holds a {c.type.replace('_', ' ')} caption; writing {ctype.replace('_', ' ')} for subtype "
                f"'{subtype or 'main'}' would overwrite it. Use another subtype (e.g. --subtype tags) or set the "
                f"caption type of '{c.subtype or 'main'}' in the dataset settings."
            )


def find_caption(item: Item, ctype: str, subtype: str) -> Caption | None:
    return (
        Caption.select()
        .where((Caption.item == item.id) & (Caption.type == ctype) & (Caption.subtype == subtype))
        .order_by(Caption.id)
        .first()
    )


def item_tags(item: Item | int, subtype: str = MAIN) -> list[str]:
    """The item's tags of ``subtype`` in caption order."""
    item_id = item if isinstance(item, int) else item.id
    rows = (
        ItemTag.select(ItemTag.tag)
        .where((ItemTag.item == item_id) & (ItemTag.subtype == subtype))
        .order_by(ItemTag.position)
    )
    return [r.tag for r in rows]


def _expected(caption: Caption | None, force: bool, base: Any) -> FileState | None | bool:
    if force:
        return False
    return caption_state(caption) if base is UNSET else base


_Written = TypeVar("_Written", FileState, StagedWrite)


def _to_file(
    how: Callable[..., _Written],
    dataset: Dataset,
    caption: Caption | None,
    rel: str,
    text: str,
    force: bool,
    base: Any = UNSET,
    allow_lossy: bool = False,
) -> _Written:
    """``how`` (``write_atomic``, or ``stage_atomic`` for a batch) applied to a caption's
    file, checked against what the editor read and kept in the file's encoding."""
    path = to_abs(dataset.root_path, rel)
    encoding = caption.encoding if caption is not None and caption.encoding == "utf-8-sig" else None
    return how(
        path,
        text,
        expected=_expected(caption, force, base),
        encoding=encoding,
        root=dataset.root_path,
        allow_lossy=allow_lossy or force,
    )


def _problem(item_id: int, path: str, exc: Exception) -> EditProblem:
    """The report line of an edit not written: a conflict and a file error keep the
    exception, so a single edit re-raises its kind."""
    if isinstance(exc, CaptionConflict):
        return EditProblem(item_id, path, str(exc), exc)
    if isinstance(exc, CaptionFileError):
        return EditProblem(item_id, path, str(exc), error=exc)
    return EditProblem(item_id, path, str(exc))


def _write_tables_reported(report: EditReport, item_ids: Sequence[int], writes: Sequence[_TableWrite]) -> list[bool]:
    """``_write_tables`` with its outcome in ``report``: each problem, and each table file
    written, listed once. True per write that landed."""
    landed: list[bool] = []
    tables_written: set[str] = set()
    for item_id, (table, problem, _state) in zip(item_ids, _write_tables(writes)):
        if problem is not None:
            report.problems.append(_problem(item_id, table, problem))
        elif table not in tables_written:
            tables_written.add(table)
            report.files_written.append(table)
        landed.append(problem is None)
    return landed


def _by_dataset(items: Iterable[Item]) -> dict[int, Dataset]:
    ids = {i.dataset_id for i in items}
    return {d.id: d for d in Dataset.select().where(Dataset.id.in_(list(ids)))}


_Edit = TypeVar("_Edit", "TagEdit", "TextEdit")


def _each_dataset_locked(edits: Sequence[_Edit], wait: float, write: Callable[[Dataset, list[_Edit]], None]) -> None:
    """``write(dataset, its edits)`` for each dataset the edits touch, under that
    dataset's write lock, in root-path order; a dataset removed meanwhile is passed over
    (nothing to write)."""
    groups: dict[int, list[_Edit]] = {}
    for e in edits:
        groups.setdefault(e.item.dataset_id, []).append(e)
    datasets = _by_dataset(e.item for e in edits)
    for ds_id in sorted(groups, key=lambda d: str(datasets[d].root_path) if d in datasets else ""):
        ds = datasets.get(ds_id)
        if ds is None:
            continue
        with dataset_write_lock(ds.root_path, name=ds.name, what="a caption edit", wait=wait):
            write(ds, groups[ds_id])


def _captions_of(item_ids: Sequence[int]) -> dict[int, list[Caption]]:
    """item id -> its caption rows (500 ids a query: SQLite's variable limit)."""
    out: dict[int, list[Caption]] = {}
    for start in range(0, len(item_ids), 500):
        for c in Caption.select().where(Caption.item.in_(item_ids[start : start + 500])):
            out.setdefault(c.item_id, []).append(c)
    return out


def set_tags_many(
    edits: Sequence[TagEdit],
    *,
    subtype: str = MAIN,
    source: str = "user",
    write_files: bool = True,
    force: bool = False,
    batch_sync: bool = False,
    lock_held: bool = False,
    lock_wait: float = DEFAULT_WAIT_S,
    allow_lossy: bool = False,
) -> EditReport:
    """Replace the tags of each item's ``subtype`` tag caption.

    Files are written atomically; a file that changed on disk since it was indexed (or,
    with ``TagEdit.base``, since the editor read it) is a conflict and is reported (its
    item is left as it was), unless ``force`` (the user chose to keep the app's version).
    Tags keep the given order; duplicates by match key are dropped. Existing tags keep
    their source and confidence. Read-only files, links leading outside the dataset and
    files whose bytes are not clean text (unless ``allow_lossy``) are reported, never
    replaced.

    The whole read-check-write-index runs under each dataset's write lock
    (``write_lock``), which other sushitui processes take too; ``lock_held``: the caller
    holds it already (bulk edits hold it across their own reads). ``DatasetBusy`` when
    it cannot be had within ``lock_wait`` seconds.

    ``batch_sync`` (bulk edits): the files are staged first and made durable with one
    filesystem sync for the whole batch instead of two fsyncs per file; each file is
    still either wholly old or wholly new after a crash.
    """
    if not lock_held and edits:
        report = EditReport()

        def write(_ds: Dataset, group: list[TagEdit]) -> None:
            part = set_tags_many(
                group,
                subtype=subtype,
                source=source,
                write_files=write_files,
                force=force,
                batch_sync=batch_sync,
                lock_held=True,
                allow_lossy=allow_lossy,
            )
            report.changed += part.changed
            report.unchanged += part.unchanged
            report.files_written += part.files_written
            report.problems += part.problems
            report.written.update(part.written)

        _each_dataset_locked(edits, lock_wait, write)
        return report
    report = EditReport()
    if not edits:
        return report
    if len({e.item.id for e in edits}) != len(edits):  # one caption, one final state: the last edit wins
        edits = list({e.item.id: e for e in edits}.values())
    datasets: dict[int, Dataset] = {}
    captions = _captions_of([e.item.id for e in edits])
    applied: list[tuple[TagEdit, Caption | None, str | None, list[str], str, FileState | None]] = []
    staged: list[tuple[tuple, StagedWrite]] = []
    table_writes: list[tuple[TagEdit, Caption, list[str], str]] = []
    for edit in edits:
        item = edit.item
        dataset = datasets.get(item.dataset_id) or datasets.setdefault(
            item.dataset_id, Dataset.get_by_id(item.dataset_id)
        )
        tags = dedupe(edit.tags)
        siblings = captions.get(item.id, [])
        sub = subtype
        caption = next((c for c in siblings if c.type == "tags" and c.subtype == sub), None)
        if _embedded(caption) and write_files:
            # the image's metadata is never rewritten: the edit becomes a caption file of
            # its own, under a subtype a scan reads back from its name
            sub = file_subtype(subtype)
            caption = next((c for c in siblings if c.type == "tags" and c.subtype == sub and c.file_path), None)
        if edit.rewrite is not None:  # merged with the tags as they are now, under the lock
            current = (
                caption
                if caption is not None
                else next((c for c in siblings if c.type == "tags" and c.subtype == subtype), None)
            )
            tags = dedupe(edit.rewrite(split_tags(current.content) if current is not None else []))
        if caption is not None and split_tags(caption.content) == tags and not force:
            report.unchanged += 1
            continue
        if write_files and caption is not None and in_table(caption):
            table_writes.append((edit, caption, tags, sub))  # written per table file below
            continue
        rel = (
            caption.file_path
            if caption is not None and caption.file_path
            else new_caption_rel_path(item, sub, siblings)
        )
        state = None
        if write_files:
            try:
                if caption is None:
                    _check_slot_free(rel, "tags", sub, siblings)
                if caption is None or not caption.file_path:
                    _register_subtype(dataset, sub)
                text = join_tags(tags)
                if batch_sync:
                    staged_write = _to_file(stage_atomic, dataset, caption, rel, text, force, edit.base, allow_lossy)
                    staged.append(((edit, caption, rel, tags, sub), staged_write))
                    continue
                state = _to_file(write_atomic, dataset, caption, rel, text, force, edit.base, allow_lossy)
            except (CaptionFileError, ValueError) as exc:
                report.problems.append(_problem(item.id, rel, exc))
                continue
            report.files_written.append(rel)
        applied.append((edit, caption, rel, tags, sub, state))
    if table_writes:
        landed = _write_tables_reported(
            report,
            [e.item.id for e, *_ in table_writes],
            [
                _TableWrite(
                    datasets[e.item.dataset_id], c, join_tags(tags), *_cell_expected(c, False if force else e.base)
                )
                for e, c, tags, _s in table_writes
            ],
        )
        for (edit, caption, tags, sub), ok in zip(table_writes, landed):
            if ok:
                report.written[edit.item.id] = (sub, CellBase(join_tags(tags)))
                applied.append((edit, caption, None, tags, sub, None))
    if staged:
        for (entry, _), result in zip(staged, publish_staged([st for _, st in staged])):
            edit, caption, rel, tags, sub = entry
            if isinstance(result, CaptionFileError):
                report.problems.append(_problem(edit.item.id, rel, result))
            else:
                report.files_written.append(rel)
                applied.append((edit, caption, rel, tags, sub, result))

    now = time.time()
    # Index rows for the whole batch in a few executemany statements (per-row ORM saves
    # and inserts cost ~20 ms per item, which made a 10k-item bulk edit take minutes).
    caption_rows: list[tuple] = []
    tag_rows: list[tuple] = []
    main_rows: list[tuple] = []  # (now, tag_count, id): the main caption sets the item's tag count
    other_rows: list[tuple] = []  # (now, id)
    with write_transaction():
        cursor = current_database().cursor()
        # read under the write lock: the rows diffed below must be the ones being replaced
        old_rows = _old_tag_rows(cursor, [a[0].item.id for a in applied])
        for edit, caption, target, tags, sub, state in applied:
            item = edit.item
            content = join_tags(tags)
            if caption is None:
                caption = Caption.create(
                    item=item.id,
                    type="tags",
                    subtype=sub,
                    content=content,
                    source="txt_file" if write_files else source,
                    file_path=target if write_files else None,
                    created_at=now,
                    updated_at=now,
                )
            else:
                caption.content = content
                caption.updated_at = now
                if write_files and target is not None:
                    if caption.file_path is None:
                        # the edit of a caption read from elsewhere (image metadata, a
                        # folder caption) is now this file: a reindex reads it as one
                        caption.source, caption.source_field = "txt_file", None
                    caption.file_path = target
            if state is not None:
                report.written[item.id] = (sub, state)
                caption.file_size, caption.file_mtime_ns, caption.file_sha256 = state.size, state.mtime_ns, state.sha256
                caption.encoding = caption.encoding if caption.encoding == "utf-8-sig" else "utf-8"
                caption.encoding_flagged = False
            caption_rows.append(
                (
                    caption.content,
                    caption.updated_at,
                    caption.source,
                    caption.source_field,
                    caption.file_path,
                    caption.file_size,
                    caption.file_mtime_ns,
                    caption.file_sha256,
                    caption.encoding,
                    int(bool(caption.encoding_flagged)),
                    caption.id,
                )
            )
            prev = {r[2]: (r[7], r[8]) for r in old_rows.get(item.id, ()) if r[6] in (sub, subtype)}
            given = edit.sources or {}
            for pos, tag in enumerate(tags):
                key = match_key(tag)
                src, conf = given.get(key) or prev.get(key) or (source, None)
                tag_rows.append((item.id, caption.id, tag, key, pos, sub, src, conf))
            if sub == MAIN:
                main_rows.append((now, len(tags), item.id))
            else:
                other_rows.append((now, item.id))
            report.changed += 1
        cursor.executemany(
            "UPDATE caption SET content = ?, updated_at = ?, source = ?, source_field = ?, file_path = ?, "
            "file_size = ?, file_mtime_ns = ?, file_sha256 = ?, encoding = ?, encoding_flagged = ? WHERE id = ?",
            caption_rows,
        )
        added, removed = _write_tag_rows(cursor, old_rows, {r[-1] for r in caption_rows}, tag_rows)
        cursor.executemany("UPDATE item SET updated_at = ?, tag_count = ? WHERE id = ?", main_rows)
        cursor.executemany("UPDATE item SET updated_at = ? WHERE id = ?", other_rows)
        group_index.apply_tag_changes(current_database(), added, removed)
        tag_bitmaps.forget(current_database(), {n for _i, n in added} | {n for _i, n in removed})
    return report


def _old_tag_rows(cursor, item_ids: list[int]) -> dict[int, list[tuple]]:
    """item_id -> its tag rows (item_id, caption_id, norm, id, tag, position, subtype,
    source, confidence), with a plain cursor: peewee's per-row conversion costs ~10 us
    for each of ~30 rows per item."""
    out: dict[int, list[tuple]] = {}
    for start in range(0, len(item_ids), 500):
        chunk = item_ids[start : start + 500]
        for row in cursor.execute(
            "SELECT item_id, caption_id, norm, id, tag, position, subtype, source, confidence FROM item_tag "
            f"WHERE item_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            out.setdefault(row[0], []).append(row)
    return out


def _write_tag_rows(
    cursor, old_rows: dict[int, list[tuple]], edited: set[int], tag_rows: list[tuple]
) -> tuple[list, list]:
    """Make the tag rows of the ``edited`` captions what ``tag_rows`` lists (item_id,
    caption_id, tag, norm, position, subtype, source, confidence), touching only the rows
    that differ: adding one tag to an item of 30 is one insert, not 30 deletes and 31
    inserts (each through two indexes), which made the index half of a bulk edit's time.
    ``old_rows`` (``_old_tag_rows``) must have been read in the same transaction.
    Returns the (item_id, key) pairs added and removed."""
    old: dict[int, dict[str, tuple]] = {}  # caption_id -> norm -> (id, tag, position, subtype, source, confidence)
    owner: dict[int, int] = {}  # caption_id -> item_id
    redo: set[int] = set()  # captions whose old rows repeat a key: rewritten whole
    for rows in old_rows.values():
        for row in rows:
            if row[1] not in edited:
                continue
            by_norm = old.setdefault(row[1], {})
            owner[row[1]] = row[0]
            if row[2] in by_norm:
                redo.add(row[1])
            by_norm[row[2]] = row[3:]
    inserts: list[tuple] = []
    updates: list[tuple] = []
    deletes: list[tuple[int]] = []
    kept: dict[int, set[str]] = {}
    for row in tag_rows:
        item_id, caption_id, tag, norm, pos, sub, src, conf = row
        prev = None if caption_id in redo else old.get(caption_id, {}).get(norm)
        if prev is None:
            inserts.append(row)
            continue
        kept.setdefault(caption_id, set()).add(norm)
        if prev[1:] != (tag, pos, sub, src, conf):
            updates.append((tag, pos, sub, src, conf, prev[0]))
    added = [(r[0], r[3]) for r in inserts]
    removed: list[tuple[int, str]] = []
    for caption_id, by_norm in old.items():
        keep = set() if caption_id in redo else kept.get(caption_id, set())
        gone = [(norm, r[0]) for norm, r in by_norm.items() if norm not in keep]
        removed.extend((owner[caption_id], norm) for norm, _id in gone)
        if caption_id not in redo:
            deletes.extend((row_id,) for _norm, row_id in gone)
    if redo:  # a repeated key hides rows from the map above: drop every row of those captions
        marks = ",".join("?" * len(redo))
        cursor.execute(f"DELETE FROM item_tag WHERE caption_id IN ({marks})", sorted(redo))
    cursor.executemany("DELETE FROM item_tag WHERE id = ?", deletes)
    cursor.executemany(
        "UPDATE item_tag SET tag = ?, position = ?, subtype = ?, source = ?, confidence = ? WHERE id = ?", updates
    )
    cursor.executemany(
        "INSERT INTO item_tag (item_id, caption_id, tag, norm, position, subtype, source, confidence) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        inserts,
    )
    return added, removed


def set_tags(
    item: Item,
    tags: Sequence[str],
    *,
    subtype: str = MAIN,
    source: str = "user",
    force: bool = False,
    base: Any = UNSET,
    allow_lossy: bool = False,
    lock_wait: float = DEFAULT_WAIT_S,
) -> EditReport:
    """Replace one item's tags; raises CaptionConflict / CaptionFileError on failure."""
    report = set_tags_many(
        [TagEdit(item, tags, base=base)],
        subtype=subtype,
        source=source,
        force=force,
        allow_lossy=allow_lossy,
        lock_wait=lock_wait,
    )
    if report.problems:
        p = report.problems[0]
        if p.conflict is not None:
            raise p.conflict
        raise p.error if p.error is not None else CaptionFileError(p.reason)
    return report


def set_text(
    item: Item,
    ctype: str,
    subtype: str,
    text: str,
    *,
    force: bool = False,
    language: str | None = None,
    base: Any = UNSET,
    allow_lossy: bool = False,
    lock_wait: float = DEFAULT_WAIT_S,
) -> Caption:
    """Replace (or create) a text caption and its file; raises CaptionConflict on a
    changed file and CaptionFileError when the file cannot be written. ``base``: the file
    state the editor showed (see ``TagEdit.base``)."""
    dataset = Dataset.get_by_id(item.dataset_id)
    with dataset_write_lock(dataset.root_path, name=dataset.name, what="a caption edit", wait=lock_wait):
        return _set_text_locked(dataset, item, ctype, subtype, text, force, language, base, allow_lossy)


def _set_text_locked(
    dataset: Dataset,
    item: Item,
    ctype: str,
    subtype: str,
    text: str,
    force: bool,
    language: str | None,
    base: Any,
    allow_lossy: bool,
) -> Caption:
    siblings = list(Caption.select().where(Caption.item == item.id))
    caption = next((c for c in siblings if c.type == ctype and c.subtype == subtype), None)
    if caption is not None and in_table(caption):
        expected, forced = _cell_expected(caption, False if force else base)
        ((_table, problem, _state),) = _write_tables([_TableWrite(dataset, caption, text.strip(), expected, forced)])
        if problem is not None:
            raise problem
        now = time.time()
        with write_transaction():
            caption.content = text.strip()  # as a scan reads the cell back
            if language:
                caption.language = language
            caption.updated_at = now
            caption.save()
            Item.update({Item.updated_at: now}).where(Item.id == item.id).execute()
        return caption
    if caption is not None and caption.file_path is None and caption.source != "txt_file":
        # Embedded metadata (EXIF/XMP/PNG text) is never rewritten: the edit becomes a
        # file, under a subtype a scan reads back from its name (png_text_x -> png-text-x)
        subtype = file_subtype(subtype) if _embedded(caption) else subtype
        caption = next((c for c in siblings if c.type == ctype and c.subtype == subtype and c.file_path), None)
    rel = (
        caption.file_path
        if caption is not None and caption.file_path
        else new_caption_rel_path(item, subtype or ctype, siblings)
    )
    if caption is None:
        _check_slot_free(rel, ctype, subtype, siblings)
    if caption is None or not caption.file_path:
        _register_subtype(dataset, subtype or ctype)
    state = _to_file(write_atomic, dataset, caption, rel, text, force, base, allow_lossy)
    now = time.time()
    with write_transaction():
        if caption is None:
            caption = Caption(item=item.id, type=ctype, subtype=subtype or ctype, source="txt_file", created_at=now)
        if caption.file_path is None:  # a folder caption's edit is now this file: a reindex reads it as one
            caption.source, caption.source_field = "txt_file", None
        caption.content = text
        caption.file_path = rel
        caption.file_size, caption.file_mtime_ns, caption.file_sha256 = state.size, state.mtime_ns, state.sha256
        caption.encoding = caption.encoding if caption.encoding == "utf-8-sig" else "utf-8"
        caption.encoding_flagged = False
        if language:
            caption.language = language
        caption.updated_at = now
        caption.save()
        Item.update({Item.updated_at: now}).where(Item.id == item.id).execute()
    return caption


@dataclass
class TextEdit:
    """New text for one item's text caption (``set_texts_many``); ``base`` as for
    ``TagEdit.base``."""

    item: Item
    text: str
    base: Any = UNSET


def set_texts_many(
    edits: Sequence[TextEdit],
    ctype: str,
    subtype: str,
    *,
    source: str = "txt_file",
    language: str | None = None,
    lock_wait: float = DEFAULT_WAIT_S,
) -> EditReport:
    """``set_text`` for a batch (VLM captioning writes thousands): under each dataset's
    write lock once, the files staged and made durable with one sync for the batch
    (``publish_staged``; each file is wholly old or wholly new after a crash), the index
    rows in one transaction. Per-item problems (a file changed since it was indexed, a
    read-only file, a slot holding another caption type) are reported, never raised;
    the other items are written. ``source`` is recorded on the caption rows (e.g.
    ``vlm_<model>``: the file is the caption, the row says who wrote it)."""
    report = EditReport()
    if not edits:
        return report
    edits = list({e.item.id: e for e in edits}.values())  # one caption, one final state: the last edit wins
    _each_dataset_locked(
        edits, lock_wait, lambda ds, group: _set_texts_locked(ds, group, ctype, subtype, source, language, report)
    )
    return report


def _set_texts_locked(
    dataset: Dataset,
    edits: list[TextEdit],
    ctype: str,
    subtype: str,
    source: str,
    language: str | None,
    report: EditReport,
) -> None:
    siblings_of = _captions_of([e.item.id for e in edits])
    planned: list[tuple[TextEdit, Caption | None, str, str]] = []
    staged: list[StagedWrite] = []
    in_tables: list[tuple[TextEdit, Caption]] = []
    for edit in edits:
        item = edit.item
        siblings = siblings_of.get(item.id, [])
        sub = subtype
        caption = next((c for c in siblings if c.type == ctype and c.subtype == sub), None)
        if caption is not None and in_table(caption):
            in_tables.append((edit, caption))  # written per table file below
            continue
        if caption is not None and caption.file_path is None and caption.source != "txt_file":
            sub = file_subtype(sub) if _embedded(caption) else sub  # as _set_text_locked: metadata is never rewritten
            caption = next((c for c in siblings if c.type == ctype and c.subtype == sub and c.file_path), None)
        rel = (
            caption.file_path
            if caption is not None and caption.file_path
            else new_caption_rel_path(item, sub or ctype, siblings)
        )
        try:
            if caption is None:
                _check_slot_free(rel, ctype, sub, siblings)
            if caption is None or not caption.file_path:
                _register_subtype(dataset, sub or ctype)
            staged.append(_to_file(stage_atomic, dataset, caption, rel, edit.text, False, edit.base))
        except (CaptionFileError, ValueError) as exc:
            report.problems.append(_problem(item.id, rel, exc))
            continue
        planned.append((edit, caption, rel, sub))
    table_done: list[tuple[TextEdit, Caption]] = []
    if in_tables:
        landed = _write_tables_reported(
            report,
            [e.item.id for e, _c in in_tables],
            [_TableWrite(dataset, c, e.text.strip(), *_cell_expected(c, e.base)) for e, c in in_tables],
        )
        table_done.extend(pair for pair, ok in zip(in_tables, landed) if ok)
    done: list[tuple[TextEdit, Caption | None, str, str, FileState]] = []
    for (edit, caption, rel, sub), result in zip(planned, publish_staged(staged) if staged else []):
        if isinstance(result, CaptionFileError):
            report.problems.append(_problem(edit.item.id, rel, result))
        else:
            report.files_written.append(rel)
            done.append((edit, caption, rel, sub, result))
    if not done and not table_done:
        return
    now = time.time()
    with write_transaction():
        for edit, caption in table_done:  # the row stays the table's (a scan compares it with the cell)
            caption.content = edit.text.strip()
            if language:
                caption.language = language
            caption.updated_at = now
            caption.save()
            report.written[edit.item.id] = (caption.subtype, CellBase(caption.content))
            report.changed += 1
        for edit, caption, rel, sub, state in done:
            if caption is None:
                caption = Caption(item=edit.item.id, type=ctype, subtype=sub or ctype, created_at=now)
            caption.content = edit.text
            caption.file_path = rel
            caption.source = source
            if caption.source_field and caption.file_path:
                caption.source_field = None  # it was a folder caption's field: the file is the caption now
            caption.file_size, caption.file_mtime_ns, caption.file_sha256 = state.size, state.mtime_ns, state.sha256
            caption.encoding = caption.encoding if caption.encoding == "utf-8-sig" else "utf-8"
            caption.encoding_flagged = False
            if language:
                caption.language = language
            caption.updated_at = now
            caption.save()
            report.written[edit.item.id] = (caption.subtype, state)
            report.changed += 1
        touched = [e.item.id for e, *_ in done] + [e.item.id for e, _c in table_done]
        for start in range(0, len(touched), 500):
            Item.update({Item.updated_at: now}).where(Item.id.in_(touched[start : start + 500])).execute()


def table_text_now(caption: Caption) -> str | None:
    """What a table caption's cell holds on disk now (None: no row names the item any
    more); for a conflict's "take the disk version"."""
    dataset = Dataset.get_by_id(Item.get_by_id(caption.item_id).dataset_id)
    rel = table_of(caption)
    image_column = next(
        (str(t.get("image_column")) for t in dataset.caption_tables or () if str(t.get("file")) == rel), None
    )
    images = _item_images([caption.item_id]).get(caption.item_id, [])
    try:
        return read_table_cell(
            dataset.root_path, rel, images, (caption.source_field or "").partition(": ")[2], image_column
        )
    except TableError as exc:
        raise CaptionFileError(str(exc)) from exc


def reload_from_disk(caption: Caption) -> str:
    """The text of the caption's file as it is on disk now (for a conflict dialog)."""
    if in_table(caption):
        return table_text_now(caption) or ""
    dataset = Dataset.get_by_id(Item.get_by_id(caption.item_id).dataset_id)
    if caption.file_path is None:
        raise CaptionFileError("this caption has no file of its own (it is read from the image or a shared file)")
    return read_caption(to_abs(dataset.root_path, caption.file_path)).text
