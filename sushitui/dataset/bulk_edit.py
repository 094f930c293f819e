"""Bulk caption edits: the one path that rewrites the tags of many items.

- ``bulk_add`` / ``bulk_remove`` / ``bulk_replace`` (BR-4): one tag on the items matching a
  query, on given item ids (the browser's selection) or on every item (target None);
- ``apply_aliases`` (TAG-2): every tag of a dataset's captions through the aliases;
- ``remove_tag_everywhere`` (``dict remove --from-datasets``): a tag out of every caption
  of every dataset, then out of the dictionary.

All of them go through ``edit_items``: items are edited in batches; each batch holds the
dataset's write lock while it reads, rewrites and writes, and writes its caption files
atomically and updates the index in one transaction through
``sushitui.dataset.captions.set_tags_many`` (the one caption write path), a few writer
threads at once. A file changed on disk by another program is a reported conflict, never
overwritten. ``dry_run`` computes exactly which items and files would change and writes
nothing. A cancelled edit keeps the batches written so far and says so in its report's
``cancelled`` flag (it raises nothing).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from sushitui.dataset.caption_files import CaptionFileError
from sushitui.dataset.captions import (
    EACH_ITEM,
    MAIN,
    TagEdit,
    check_new_subtype,
    in_table,
    new_caption_rel_path,
    preferred_tag_subtype,
    set_tags_many,
    table_of,
)
from sushitui.dataset.registry import get_dataset
from sushitui.dataset.write_lock import dataset_write_lock
from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressCallback, ProgressEvent, Throttle
from sushitui.store import Caption, Dataset, Item, ItemTag, current_database, tuple_rows
from sushitui.tags import aliases, dictionary
from sushitui.tags.normalize import clean, dedupe, match_key
from sushitui.tags.query import QueryError, TagTerm, apply_query, parse

BATCH = 500


class BulkError(UserError, ValueError):
    """Bad arguments for a bulk edit (unknown dataset, empty tag, ...)."""


@dataclass
class BulkProblem:
    item_id: int
    path: str | None
    reason: str


@dataclass
class BulkReport:
    operation: str  # add | remove | replace | aliases
    tag: str
    new_tag: str | None = None
    dry_run: bool = False
    items_matched: int = 0  # items the query/ids selected
    items_changed: int = 0  # changed (or that would change, in a dry run)
    items_unchanged: int = 0
    files: list[str] = field(default_factory=list)  # dataset-relative caption files written / to write
    problems: list[BulkProblem] = field(default_factory=list)
    cancelled: bool = False
    elapsed: float = 0.0

    @property
    def changed(self) -> int:
        return self.items_changed

    def to_dict(self) -> dict:
        return asdict(self)


def _check_tag(tag: str, what: str = "tag") -> str:
    t = clean(tag or "")
    if not t:
        raise BulkError(f"the {what} is empty")
    if "," in t or any(ord(ch) < 32 or ord(ch) == 127 for ch in t):
        raise BulkError(f"'{t}' is not a single tag: a tag cannot contain commas or control characters")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in t):  # undecodable bytes from a shell argument
        raise BulkError(f"{t.encode('utf-8', 'backslashreplace').decode()!r} is not valid text (undecodable bytes)")
    return t


def tag_matcher(tag: str) -> tuple[Callable[[str], bool], object]:
    """(predicate on a match key, peewee condition on ItemTag) for a tag or a ``*`` pattern."""
    from peewee import Expression

    if "*" not in tag:
        key = match_key(tag)
        return (lambda k: k == key), (ItemTag.norm == key)
    try:
        node = parse(tag)
    except QueryError as exc:
        raise BulkError(f"'{tag}' is not a tag pattern: {exc}") from exc
    if not isinstance(node, TagTerm):
        raise BulkError(f"'{tag}' is not a single tag or '*' pattern")
    return node.matches, Expression(ItemTag.norm, "GLOB", node.glob())


# --- the engine ------------------------------------------------------------------------


@dataclass
class _EditResult:
    items_changed: int = 0
    items_unchanged: int = 0
    files: list[str] = field(default_factory=list)
    problems: list[tuple[int, str | None, str]] = field(default_factory=list)
    cancelled: bool = False


def edit_items(
    item_ids: Sequence[int],
    rewrite: Callable[[list[str]], list[str]],
    *,
    subtype: str = MAIN,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
    cancel: CancelToken | None = None,
    batch_size: int = BATCH,
) -> _EditResult:
    """Apply ``rewrite(old_tags) -> new_tags`` to each item's ``subtype`` tags, batch by
    batch (one transaction per batch). Items whose tags do not change are not written.

    Each batch reads the tags, rewrites them and writes the files under the dataset's
    write lock, so another sushitui process's edit of the same captions is never read
    stale and overwritten: the two edits are applied one after the other."""
    result = _EditResult()
    ids = list(item_ids)
    if not ids:
        return result
    dataset = Dataset.get_or_none(Dataset.id == Item.select(Item.dataset).where(Item.id == ids[0]).scalar())
    if dataset is None:
        return result
    for start in range(0, len(ids), batch_size):
        if cancel is not None and cancel.cancelled:
            result.cancelled = True
            break
        chunk = ids[start : start + batch_size]
        if dry_run:
            _edit_batch(chunk, rewrite, subtype, True, result)
        else:
            with dataset_write_lock(dataset.root_path, name=dataset.name, what="a bulk tag edit"):
                _edit_batch(chunk, rewrite, subtype, False, result)
        if on_batch is not None:
            on_batch(len(chunk))
    return result


def _edit_batch(
    chunk: list[int], rewrite: Callable[[list[str]], list[str]], subtype: str, dry_run: bool, result: _EditResult
) -> None:
    each_item = subtype == EACH_ITEM
    # only what the caption write path reads (new caption names): the JSON columns
    # (EXIF, related images, problems) would be decoded for nothing, per row
    items = {
        i.id: i
        for i in Item.select(Item.id, Item.dataset, Item.rel_dir, Item.base_name, Item.item_type).where(
            Item.id.in_(chunk)
        )
    }
    current: dict[int, dict[str, list[str]]] = {i: {} for i in chunk}
    # plain cursor: ~10x less per-row overhead than model rows for ~30 tags per item
    marks = ",".join("?" * len(chunk))
    rows = current_database().execute_sql(
        f"SELECT item_id, subtype, tag FROM item_tag WHERE item_id IN ({marks}) "
        + ("" if each_item else "AND subtype = ? ")
        + "ORDER BY item_id, position",
        chunk if each_item else [*chunk, subtype],
    )
    for item_id, sub, tag in rows:
        current[item_id].setdefault(sub, []).append(tag)
    prose_main = (
        set()
        if not each_item
        else {
            r[0]
            for r in current_database().execute_sql(
                f"SELECT item_id FROM caption WHERE item_id IN ({marks}) AND subtype = ? AND type != 'tags' "
                "AND file_path IS NOT NULL",
                [*chunk, MAIN],
            )
        }
    )
    edits: dict[str, list[TagEdit]] = {}  # subtype -> the edits of that tag caption
    for item_id in chunk:
        item = items.get(item_id)
        if item is None:
            continue  # deleted meanwhile
        sub = preferred_tag_subtype(current[item_id], item_id in prose_main) if each_item else subtype
        old = current[item_id].get(sub, [])
        new = rewrite(list(old))  # set_tags_many dedupes what it writes
        if new == old:
            result.items_unchanged += 1
            continue
        edits.setdefault(sub, []).append(TagEdit(item, new))
    for sub, sub_edits in edits.items():
        if dry_run:
            result.files.extend(_planned_files([e.item for e in sub_edits], sub))
            result.items_changed += len(sub_edits)
            continue
        for report in _write_parallel(sub_edits, sub):
            result.items_changed += report.changed
            result.items_unchanged += report.unchanged
            result.files.extend(report.files_written)
            result.problems.extend((p.item_id, p.path, p.reason) for p in report.problems)


WRITERS = 4  # concurrent sub-batches: their disk syncs overlap; CPU stays ~1 core
SUB_BATCH = 125


def _write_parallel(edits: list[TagEdit], subtype: str) -> list:
    """``set_tags_many`` over sub-batches in a few threads, each with its own connection
    and transaction. Every caption file is still written atomically with its fsyncs;
    what runs in parallel is the waiting for the disk. The caller holds the dataset's
    write lock for all of them."""
    from concurrent.futures import ThreadPoolExecutor

    # the edits of table captions go in one sub-batch: a table is rewritten once for all
    # of them instead of once per sub-batch (each rewrite reads and writes the whole file)
    in_tables = _table_caption_items([e.item.id for e in edits], subtype)
    table_edits = [e for e in edits if e.item.id in in_tables]
    rest = [e for e in edits if e.item.id not in in_tables] if in_tables else edits
    subs = ([table_edits] if table_edits else []) + [rest[i : i + SUB_BATCH] for i in range(0, len(rest), SUB_BATCH)]
    if len(subs) == 1:
        return [set_tags_many(subs[0], subtype=subtype, source="user", batch_sync=True, lock_held=True)]
    db = current_database()

    def run(sub: list[TagEdit]):
        try:
            return set_tags_many(sub, subtype=subtype, source="user", batch_sync=True, lock_held=True)
        finally:
            if not db.is_closed():
                db.close()  # this pool thread's own connection

    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="bulk-write") as pool:
        return list(pool.map(run, subs))


def _table_caption_items(item_ids: list[int], subtype: str) -> set[int]:
    """The items whose ``subtype`` tag caption is written into a caption table's cell."""
    out: set[int] = set()
    for start in range(0, len(item_ids), 500):
        q = Caption.select(Caption.item, Caption.file_path, Caption.source, Caption.source_field).where(
            Caption.item.in_(item_ids[start : start + 500])
            & (Caption.type == "tags")
            & (Caption.subtype == subtype)
            & (Caption.source == "table")
        )
        out.update(c.item_id for c in q if in_table(c))
    return out


def _planned_files(items: list[Item], subtype: str) -> list[str]:
    """The caption file each item's edit would write (existing file, the caption table
    its caption is read from, or the new name)."""
    if not items:
        return []
    siblings: dict[int, list[Caption]] = {}
    for c in Caption.select().where(Caption.item.in_([i.id for i in items])):
        siblings.setdefault(c.item_id, []).append(c)
    out = []
    for item in items:
        caps = siblings.get(item.id, [])
        mine = next((c for c in caps if c.type == "tags" and c.subtype == subtype), None)
        if mine is not None and in_table(mine):
            out.append(table_of(mine))
            continue
        path = next((c.file_path for c in caps if c.type == "tags" and c.subtype == subtype and c.file_path), None)
        out.append(path if path is not None else new_caption_rel_path(item, subtype, caps))
    return list(dict.fromkeys(out))  # a table once, however many of its cells change


def _targets(ds: Dataset, query: str | None, item_ids: Sequence[int] | None, narrow=None) -> tuple[list[int], int]:
    """(ids to visit, items matched by the query or ids). ``narrow`` is an extra condition
    (e.g. "has the tag") that skips items the edit cannot change."""
    if item_ids is not None:
        base = Item.select(Item.id).where((Item.dataset == ds.id) & Item.id.in_(list(item_ids)))
        if query:
            base = apply_query(base, query)
    else:
        base = apply_query(Item.select(Item.id), query, ds.id)
    matched = base.count()
    visit = base.where(narrow) if narrow is not None else base
    return [r[0] for r in tuple_rows(visit.order_by(Item.id).tuples())], matched


def _run(
    operation: str,
    dataset,
    tag: str,
    new_tag: str | None,
    rewrite: Callable[[list[str]], list[str]],
    narrow,
    *,
    target: str | Sequence[int] | None,
    subtype: str,
    dry_run: bool,
    progress,
    cancel: CancelToken | None,
) -> BulkReport:
    t0 = time.perf_counter()
    started = time.monotonic()
    ds = get_dataset(dataset)
    try:
        check_new_subtype(ds, subtype)
    except CaptionFileError as exc:
        raise BulkError(str(exc)) from exc
    report = BulkReport(operation, tag, new_tag, dry_run)
    if target is None or isinstance(target, str):
        query, item_ids = target, None
    else:
        query, item_ids = None, list(target)
    ids, report.items_matched = _targets(ds, query, item_ids, narrow)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(
                ProgressEvent("checking" if dry_run else "writing", done, len(ids), unit="items", started_at=started)
            )

    res = edit_items(ids, rewrite, subtype=subtype, dry_run=dry_run, on_batch=step, cancel=cancel)
    report.items_changed = res.items_changed
    report.items_unchanged = report.items_matched - res.items_changed - len(res.problems)
    report.files = res.files
    report.problems = [BulkProblem(*p) for p in res.problems]
    report.cancelled = res.cancelled
    report.elapsed = time.perf_counter() - t0
    return report


# --- the three operations --------------------------------------------------------------


def _has(cond, subtype: str):
    """Items with a tag row matching ``cond`` in ``subtype`` (any tag caption for EACH_ITEM:
    a superset of what the per-item choice can change, so nothing is skipped wrongly)."""
    if subtype != EACH_ITEM:
        cond = cond & (ItemTag.subtype == subtype)
    return Item.id.in_(ItemTag.select(ItemTag.item).where(cond))


def bulk_add(
    dataset: Dataset | int | str,
    target: str | Sequence[int] | None,
    tag: str,
    *,
    subtype: str = MAIN,
    position: int | None = None,
    dry_run: bool = False,
    progress=None,
    cancel: CancelToken | None = None,
) -> BulkReport:
    """Add ``tag`` (through the aliases) to each selected item that lacks it: at the end,
    or at index ``position`` (0 = first, e.g. a trigger word)."""
    wanted = aliases.resolve(_check_tag(tag))
    key = match_key(wanted)

    def rewrite(tags: list[str]) -> list[str]:
        if any(match_key(t) == key for t in tags):
            return tags
        if position is None or position >= len(tags):
            return tags + [wanted]
        return tags[: max(0, position)] + [wanted] + tags[max(0, position) :]

    # skip the items that have it already; with EACH_ITEM the caption is chosen per item,
    # so "has it in some caption" would skip too much: every item is visited
    narrow = None if subtype == EACH_ITEM else ~_has(ItemTag.norm == key, subtype)
    return _run(
        "add",
        dataset,
        wanted,
        None,
        rewrite,
        narrow,
        target=target,
        subtype=subtype,
        dry_run=dry_run,
        progress=progress,
        cancel=cancel,
    )


def bulk_remove(
    dataset: Dataset | int | str,
    target: str | Sequence[int] | None,
    tag: str,
    *,
    subtype: str = MAIN,
    dry_run: bool = False,
    progress=None,
    cancel: CancelToken | None = None,
) -> BulkReport:
    """Remove ``tag`` (or every tag matching a ``*`` pattern) from the selected items."""
    tag = _check_tag(tag)
    matches, cond = tag_matcher(tag)

    def rewrite(tags: list[str]) -> list[str]:
        return [t for t in tags if not matches(match_key(t))]

    return _run(
        "remove",
        dataset,
        tag,
        None,
        rewrite,
        _has(cond, subtype),
        target=target,
        subtype=subtype,
        dry_run=dry_run,
        progress=progress,
        cancel=cancel,
    )


def bulk_replace(
    dataset: Dataset | int | str,
    target: str | Sequence[int] | None,
    old: str,
    new: str,
    *,
    subtype: str = MAIN,
    dry_run: bool = False,
    progress=None,
    cancel: CancelToken | None = None,
) -> BulkReport:
    """Replace ``old`` (a tag or ``*`` pattern) by ``new`` (through the aliases) in place;
    when ``new`` is already there the old tag simply goes."""
    old = _check_tag(old, "tag to replace")
    wanted = aliases.resolve(_check_tag(new, "new tag"))
    matches, cond = tag_matcher(old)

    def rewrite(tags: list[str]) -> list[str]:
        return [wanted if matches(match_key(t)) else t for t in tags]

    return _run(
        "replace",
        dataset,
        old,
        wanted,
        rewrite,
        _has(cond, subtype),
        target=target,
        subtype=subtype,
        dry_run=dry_run,
        progress=progress,
        cancel=cancel,
    )


# --- the aliases, applied to a dataset (TAG-2) -----------------------------------------


@dataclass
class AliasApplyReport:
    dry_run: bool
    items_changed: int = 0
    tags_replaced: int = 0
    files: list[str] = field(default_factory=list)  # written (or that would be written)
    by_alias: dict[str, int] = field(default_factory=dict)  # "from → to": items
    problems: list[tuple[int, str | None, str]] = field(default_factory=list)  # (item id, path, reason)
    cancelled: bool = False
    elapsed: float = 0.0


def apply_aliases(
    dataset: Dataset | int | str,
    *,
    dry_run: bool = False,
    subtypes: Sequence[str] | None = None,
    progress=None,
    cancel: CancelToken | None = None,
) -> AliasApplyReport:
    """Rewrite the tags of a dataset's items through the aliases (every tag caption, or
    only ``subtypes``); ``dry_run`` counts the items and files without writing."""
    t0 = time.perf_counter()
    ds = get_dataset(dataset)
    report = AliasApplyReport(dry_run=dry_run)
    mapping = aliases.alias_map()
    if not mapping:
        report.elapsed = time.perf_counter() - t0
        return report
    keys = list(mapping)
    affected: dict[str, set[int]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        q = (
            ItemTag.select(ItemTag.item, ItemTag.subtype)
            .join(Item, on=(ItemTag.item == Item.id))
            .where((Item.dataset == ds.id) & ItemTag.norm.in_(chunk))
        )
        if subtypes:
            q = q.where(ItemTag.subtype.in_(list(subtypes)))
        for item_id, subtype in tuple_rows(q.tuples()):
            affected.setdefault(subtype, set()).add(item_id)

    def rewrite(tags: list[str]) -> list[str]:
        out = []
        for t in tags:
            target = aliases.follow(mapping, t)
            if target != t:
                report.tags_replaced += 1
                label = f"{t} → {target}"
                report.by_alias[label] = report.by_alias.get(label, 0) + 1
            out.append(target)
        return dedupe(out)

    total = sum(len(v) for v in affected.values())
    done = 0
    started = time.monotonic()
    for subtype, ids in sorted(affected.items()):

        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(ProgressEvent("aliases", done, total, unit="items", started_at=started))

        sub = edit_items(sorted(ids), rewrite, subtype=subtype, dry_run=dry_run, on_batch=step, cancel=cancel)
        report.items_changed += sub.items_changed
        report.files.extend(sub.files)
        report.problems.extend(sub.problems)
        if sub.cancelled:
            report.cancelled = True
            break
    report.elapsed = time.perf_counter() - t0
    return report


# --- a tag out of every dataset and the dictionary (dict remove --from-datasets) -------


def remove_tag_everywhere(
    tag: str, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> dictionary.RemoveReport:
    """Strip ``tag`` (by match key) from every caption of every dataset that has it, then
    delete its dictionary entry. Cancelled: the batches written so far stay, the entry
    stays (run it again to finish) and the report says ``cancelled``. A tag that is
    neither in the dictionary nor in any caption is a DictionaryError."""
    key = match_key(tag)
    per_dataset: dict[tuple[int, str], list[int]] = {}
    for subtype, ids in dictionary.items_with_tag(tag).items():
        for s in range(0, len(ids), 500):
            rows = Item.select(Item.dataset, Item.id).where(Item.id.in_(ids[s : s + 500])).tuples()
            for dataset_id, item_id in tuple_rows(rows):
                per_dataset.setdefault((dataset_id, subtype), []).append(item_id)
    total = sum(len(v) for v in per_dataset.values())
    started = time.monotonic()
    throttle = Throttle(progress)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        throttle(ProgressEvent("removing from captions", done, total, unit="items", started_at=started))

    report = dictionary.RemoveReport(removed=False)
    # one edit_items per (dataset, subtype): each dataset's batches hold that dataset's lock
    for (_dataset_id, subtype), ids in sorted(per_dataset.items()):
        res = edit_items(
            sorted(ids),
            lambda tags: [t for t in tags if match_key(t) != key],
            subtype=subtype,
            on_batch=step,
            cancel=cancel,
        )
        report.items_changed += res.items_changed
        report.files_written += len(res.files)
        report.problems += [f"{path}: {reason}" for _item, path, reason in res.problems]
        if res.cancelled:
            report.cancelled = True
            return report
    # a tag only in captions (never in the dictionary) is still a successful removal
    report.removed = dictionary.remove_tag(tag, missing_ok=report.items_changed > 0).removed
    return report
