"""Scanning a dataset folder into the index (SCAN-1..11).

One function, ``scan_dataset``, does both the first scan and the incremental reindex
(SCAN-8): it walks the folder (stat only, ``scan_walk``); a folder whose digest of
(name, size, mtime) is the one stored at the last scan is skipped whole; the others are
grouped per directory and each item is compared with the index (size + mtime of the
primary image, related image paths, size + mtime of each caption file). Only new or
changed items go to the file workers (hash + header + captions, two processes,
``scan_worker``). Results are written in large batches, each in one write transaction
(``scan_writer``), so a cancelled scan keeps everything indexed so far. Items whose
files vanished are removed at the end of a scan that was not cancelled.

Caption files are the truth (NF-2): the app writes the file before the index, so a
caption whose file differs from the index is re-read, never the other way round.
Every bad file is a ``Problem`` in the ``ScanReport`` and the scan goes on (SCAN-10).
"""

from __future__ import annotations

import gc
import itertools
import os
import time
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field

from sushitui.dataset.grouping import IMAGE_EXTENSIONS, ItemGroup, group_directory
from sushitui.dataset.scan_walk import DirScan, WalkError, walk
from sushitui.dataset.scan_worker import caption_type, run_tasks
from sushitui.dataset.scan_writer import Existing, Job, Writer, chunks, dumps, image_problems, related_json
from sushitui.dataset.tables import (
    AUTO_TABLES,
    EXTERNAL_SOURCES,
    TABLE_SOURCE,
    Table,
    TableSpec,
    folder_captions,
    match_rows,
    read_table,
    walk_names,
)
from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressCallback, ProgressEvent, Throttle
from sushitui.store import Dataset, current_database, write_transaction
from sushitui.store.deferred_index import index_deferred

BATCH = 1000  # items per worker task
# Items per write transaction: larger transactions rewrite the hot pages of the tag
# indexes less often (raw executemany: 600k tag rows per transaction take ~10 % less
# CPU than 150k), at the cost of buffered results (~2 KB per item; the peak memory of a
# 100k scan must stay under 500 MB, which 20,000 did not with the larger cache).
WRITE_BATCH = 10000
# SQLite page cache (KiB) while a scan writes: a 600k-row transaction dirties more than
# the default 64 MiB, and pages spilled mid-transaction are written twice (~14 % of the
# tag-row CPU). Back to the default when the scan ends.
SCAN_CACHE_KIB = 131072
# Page cache (KiB) while the deferred tag-norm index is built. SQLite's sorter keeps up
# to cache_size bytes of keys in memory per sort thread (3 with PRAGMA threads=2) before
# it writes a run to a temporary file, so with the default 64 MiB the build's memory grew
# with the number of tag rows until ~260 MB (+61 MB at 100k items, +137 MB at 200k; this
# was what still grew with N in a first scan, issue 24). With 16 MiB it is +63 MB at
# 18.7M tag rows (1M items), for ~4 s more sort time there (~2 % of that scan).
SORT_CACHE_KIB = 16384
# a first scan of at least this many items loads without the tag-norm index (_bulk_load)
DEFER_INDEX_MIN_ITEMS = 20_000
TAG_NORM_INDEX = "item_tag_norm_item_id"
POOL_MIN_TASKS = 400  # below this, starting worker processes costs more than it saves
MAX_PROBLEMS_STORED = 5000


class ScanError(UserError):
    """The scan cannot start (missing root folder ...); the message says what to do."""


@dataclass
class Problem:
    path: str  # dataset-relative
    reason: str


@dataclass
class ScanReport:
    files_seen: int = 0
    items_added: int = 0
    items_updated: int = 0
    items_removed: int = 0
    items_unchanged: int = 0
    captions: int = 0  # caption files read (new or changed)
    problems: list[Problem] = field(default_factory=list)
    cancelled: bool = False
    elapsed: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    items_total: int = 0
    dirs_unchanged: int = 0
    timings: dict = field(default_factory=dict)
    # the caption tables read: dataset-relative path -> [size, mtime_ns]; the next scan
    # re-plans the folders below a table that changed, appeared or went away
    tables: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems[:MAX_PROBLEMS_STORED]]
        d["problems_total"] = len(self.problems)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "ScanReport":
        d = dict(d or {})
        d.pop("problems_total", None)
        problems = [Problem(p["path"], p["reason"]) for p in d.pop("problems", [])]
        known = {f for f in cls.__dataclass_fields__}
        return cls(problems=problems, **{k: v for k, v in d.items() if k in known})


# --- comparing with the index ----------------------------------------------------------


def _load_existing(db, dataset_id: int, rel_dirs: list[str] | None) -> dict[str, Existing]:
    """The index's items (all, or those in ``rel_dirs``) by group key."""
    existing: dict[str, Existing] = {}
    by_id: dict[int, Existing] = {}
    # An item is matched by its group key, but selected by its rel_dir column. A row whose
    # rel_dir/base_name were edited away from its key (by hand, in the database) would be
    # missed, its key inserted a second time (UNIQUE constraint failed), or deleted as a
    # vanished folder; such rows get rel_dir and base_name back from the key first.
    if rel_dirs is None:
        stray = db.execute_sql(
            "SELECT id, group_key FROM item WHERE dataset_id = ? AND "
            "group_key != (CASE rel_dir WHEN '' THEN '' ELSE rel_dir || '/' END) || base_name",
            (dataset_id,),
        ).fetchall()
    else:
        stray = []
        for d in rel_dirs:  # keys in folder d, through the (dataset_id, group_key) index
            if d:
                rows = db.execute_sql(
                    "SELECT id, group_key FROM item WHERE dataset_id = ? AND group_key > ? "
                    "AND group_key < ? AND rel_dir != ?",
                    (dataset_id, d + "/", d + "0", d),
                )
                stray.extend(r for r in rows if r[1].rpartition("/")[0] == d)
            else:
                stray.extend(
                    db.execute_sql(
                        "SELECT id, group_key FROM item WHERE dataset_id = ? "
                        "AND instr(group_key, '/') = 0 AND rel_dir != ''",
                        (dataset_id,),
                    )
                )
    if stray:
        with write_transaction(db):
            db.cursor().executemany(
                "UPDATE item SET rel_dir = ?, base_name = ? WHERE id = ?",
                [(*key.rpartition("/")[::2], item_id) for item_id, key in stray],
            )
    # the XMP sidecar the item was read with (metadata.add_sidecar records it)
    item_sql = (
        "SELECT id, group_key, image_path, related_images, file_size, mtime_ns, problems, "
        "json_extract(exif_data, '$.xmp_sidecar.file'), json_extract(exif_data, '$.xmp_sidecar.size'), "
        "json_extract(exif_data, '$.xmp_sidecar.mtime_ns') FROM item WHERE dataset_id = ?"
    )
    # caption files, and the captions from shared files (folder captions, caption tables),
    # which are compared by content: one pass over the captions
    cap_sql = (
        "SELECT c.id, c.item_id, c.file_path, c.file_size, c.file_mtime_ns, c.subtype, "
        "CASE WHEN c.file_path IS NULL THEN c.type END, CASE WHEN c.file_path IS NULL THEN c.source END, "
        "CASE WHEN c.file_path IS NULL THEN c.source_field END, CASE WHEN c.file_path IS NULL THEN c.content END "
        "FROM caption c JOIN item i ON i.id = c.item_id WHERE i.dataset_id = ? AND (c.file_path IS NOT NULL "
        f"OR c.source IN ({','.join(repr(x) for x in EXTERNAL_SOURCES)}))"
    )
    if rel_dirs is None:
        selections = [((dataset_id,), "")]
    else:
        selections = [
            ((dataset_id, *chunk), f" AND rel_dir IN ({','.join('?' * len(chunk))})") for chunk in chunks(rel_dirs, 500)
        ]
    for params, extra in selections:
        for item_id, key, image_path, related, size, mtime, problems, sc_name, sc_size, sc_mtime in db.execute_sql(
            item_sql + extra, params
        ):
            e = Existing(
                item_id,
                image_path,
                related or "{}",
                size,
                mtime,
                problems=json_loads(problems) or None,
                # as numbers: PostgreSQL's json_extract gives text, and "123" != 123 would
                # re-read every sidecar at every reindex (None: it could not be read then)
                sidecar=(sc_name, *(None if v is None else int(v) for v in (sc_size, sc_mtime)))
                if sc_name is not None
                else None,
            )
            existing[key] = by_id[item_id] = e
        for cid, item_id, path, size, mtime, subtype, ctype, source, source_field, content in db.execute_sql(
            cap_sql + extra.replace("rel_dir", "i.rel_dir"), params
        ):
            if path is not None:
                by_id[item_id].captions[path] = (cid, size, mtime, subtype)
            else:
                external = by_id[item_id].external
                external.append((ctype, subtype, source, source_field, content))
                external.sort()
    return existing


def _plan(group: ItemGroup, existing: Existing | None, full: bool) -> Job | None:
    """What to do for one item; None when nothing changed."""
    captions = sorted(group.captions.items())
    if existing is None:
        return Job(group, None, True, [(s, f.name) for s, f in captions], [], external_changed=bool(group.external))
    primary = group.primary
    sidecar = group.sidecar
    image_changed = (
        full
        or existing.image_path != group.rel_path(primary.name)
        or existing.size != primary.size
        or existing.mtime_ns != primary.mtime_ns
        # a sidecar added, changed or removed: its captions are re-read with the image's
        # metadata (they are replaced together)
        or existing.sidecar != ((sidecar.name, sidecar.size, sidecar.mtime_ns) if sidecar is not None else None)
    )
    if len(group.images) == 1 and "" in group.images:  # a plain image: no JSON to build
        related_changed = existing.related != "{}"
    else:
        related_changed = existing.related != related_json(group)
    to_read: list[tuple[str, str]] = []
    drop: list[int] = []
    reuse: dict[str, int] = {}
    seen_paths = set()
    for subtype, entry in captions:
        rel = group.rel_path(entry.name)
        seen_paths.add(rel)
        old = existing.captions.get(rel)
        # a changed subtype (x.cap is 'main' alone, 'cap' once x.txt appears) re-reads the
        # file too: its type and tag rows follow the subtype
        if full or old is None or old[1] != entry.size or old[2] != entry.mtime_ns or old[3] != subtype:
            to_read.append((subtype, entry.name))
            if old is not None:
                reuse[entry.name] = old[0]  # re-read in place: the caption keeps its id
    for rel, (cid, *_rest) in existing.captions.items():
        if rel not in seen_paths:
            drop.append(cid)
    external_changed = sorted(group.external) != existing.external
    if not (image_changed or related_changed or to_read or drop or external_changed):
        return None
    return Job(group, existing, image_changed, to_read, drop, reuse, external_changed=external_changed)


# --- the scan --------------------------------------------------------------------------


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


class _SharedCaptions:
    """Captions from files shared by several items (``tables``): the folder captions of
    each folder and the caption tables of the dataset, parsed once per scan. A table
    covers its folder and every folder below, so when the table's own folder changed,
    those are re-planned too (their items' table captions may have changed)."""

    def __init__(self, db, dataset, w, stored: dict, full: bool):
        self.root = dataset.root_path
        self.overrides = dict(dataset.caption_types or {})
        self.folder_caption = (getattr(dataset, "folder_caption", None) or "").lower()
        specs = {str(t["file"]): TableSpec.from_dict(t) for t in getattr(dataset, "caption_tables", None) or ()}
        suffixes = frozenset(s.lower() for s in dataset.caption_suffixes or ())
        self.tables: list[Table] = []
        self.images: set[str] = set()
        self.by_name: dict[str, list[str]] = {}
        changed_dirs = {d.rel_dir for d in w.dirs if full or stored.get(d.rel_dir, (None,))[0] != d.signature}
        previous = dict((dataset.last_scan_report or {}).get("tables") or {})
        self.seen: dict[str, list[int]] = previous  # kept as it was when nothing changed
        self.forced: list[str] = []
        if changed_dirs:  # nothing changed: nothing is planned, no table needed
            self.seen = {}
            for d in w.dirs:
                for name, size, mtime in d.files:
                    rel = f"{d.rel_dir}/{name}" if d.rel_dir else name
                    spec = specs.get(rel)
                    if spec is None and name.lower() not in AUTO_TABLES:
                        continue
                    self.tables.append(read_table(self.root, rel, spec, suffixes))
                    self.seen[rel] = [size, mtime]
                    if previous.get(rel) != [size, mtime]:
                        self.forced.append(d.rel_dir)
            # a table gone since the last scan: the items below it still hold its captions
            self.forced.extend(_parent(rel) for rel in previous if rel not in self.seen)
        self.tables.sort(key=lambda t: -t.folder.count("/") - bool(t.folder))  # the nearest table first
        self.matched: list[dict[str, list]] = []
        if self.tables:
            for d in w.dirs:
                images, _c, _s, _n = d.split_all()
                for e in images:
                    rel = f"{d.rel_dir}/{e.name}" if d.rel_dir else e.name
                    self.images.add(rel)
                    self.by_name.setdefault(e.name.lower(), []).append(rel)
                    self.by_name.setdefault("stem:" + e.name.rpartition(".")[0].lower(), []).append(rel)
            self.matched = [match_rows(t, self.images, self.by_name) if t.fatal is None else {} for t in self.tables]

    def forces(self, rel_dir: str) -> bool:
        return any(f == "" or rel_dir == f or rel_dir.startswith(f + "/") for f in self.forced)

    def _ctype(self, subtype: str, text: str, default: str | None = None) -> str:
        if subtype in self.overrides or default is None:
            return caption_type(subtype, text, self.overrides)
        return default

    def attach(self, rel_dir: str, named, groups: list[ItemGroup]) -> list[tuple[str, str]]:
        """Give each item of folder ``rel_dir`` its shared captions; the problems found."""
        problems: list[tuple[str, str]] = []
        folder: list = []
        if named:
            folder, problems = folder_captions(self.root, rel_dir, named, self.folder_caption or None, self._ctype)
        covering = [
            (t, m)
            for t, m in zip(self.tables, self.matched)
            if t.fatal is None and (t.folder == "" or rel_dir == t.folder or rel_dir.startswith(t.folder + "/"))
        ]
        for g in groups:
            ext: list = []
            taken = set(g.captions)  # the item's own caption file wins
            for t, matched in covering:
                rows = None
                for entry in g.images.values():
                    rows = matched.get(g.rel_path(entry.name))
                    if rows is not None:
                        break
                if rows is None:
                    problems.append((g.rel_path(g.primary.name), f"no row in the captions table {t.file}"))
                    continue
                for subtype, column, text in rows:
                    if subtype not in taken:
                        taken.add(subtype)
                        ext.append((self._ctype(subtype, text), subtype, TABLE_SOURCE, f"{t.file}: {column}", text))
            for c in folder:
                if c[1] not in taken:
                    taken.add(c[1])
                    ext.append(c)
            g.external = ext
        return problems

    def table_problems(self, changed: list[DirScan]) -> list[tuple[str, str]]:
        """The tables' own problems, for the tables whose folder is re-read (the others'
        are replayed from the stored folder problems)."""
        dirs = {d.rel_dir for d in changed}
        out: list[tuple[str, str]] = []
        for t in self.tables:
            if t.folder in dirs:
                if t.fatal:
                    path, _sep, reason = t.fatal.partition(": ")
                    out.append((path, reason))
                out.extend(t.problems)
        return out


def scan_dataset(
    dataset: Dataset,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    full: bool = False,
    workers: int | None = None,
) -> ScanReport:
    """Index (or re-index) ``dataset``'s folder; returns the report. Never raises for a
    bad file; raises ScanError when the root folder cannot be opened."""
    db = current_database()
    report = ScanReport(started_at=time.time())
    t0 = time.monotonic()
    throttle = Throttle(progress)
    pool = None
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    first_scan = db.execute_sql("SELECT 1 FROM item WHERE dataset_id = ? LIMIT 1", (dataset.id,)).fetchone() is None
    if first_scan and n_workers > 1 and _pool_method() == "fork":
        # Fork the workers before the walk fills this process's memory: their copy
        # stays small. (Unused for a small folder, where the work runs in-process.)
        pool = _make_pool(n_workers)
        pool.submit(int).result()  # forks the workers now
    cache_before = db.execute_sql("PRAGMA cache_size").fetchone()[0]
    db.execute_sql(f"PRAGMA cache_size=-{SCAN_CACHE_KIB}")
    try:
        with ExitStack() as after_scan:
            # an index deferred for a big first scan is rebuilt on leaving this block,
            # after _scan's working set is freed: the sort and the walk's lists never
            # hold memory at the same time
            return _scan(db, dataset, report, t0, throttle, cancel, full, workers, pool, after_scan, int(cache_before))
    finally:
        db.execute_sql(f"PRAGMA cache_size={int(cache_before)}")
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _scan(
    db, dataset, report, t0, throttle, cancel, full, workers, pool, after_scan: ExitStack, cache_kib: int
) -> ScanReport:
    def on_dir(w):
        throttle(ProgressEvent("walking", w.files_seen, None, "files", started_at=t0))

    try:
        w = walk(
            dataset.root_path,
            recursive=dataset.recursive,
            max_depth=dataset.max_depth,
            cancel=cancel,
            on_dir=on_dir,
            named=walk_names(dataset),
        )
    except WalkError as exc:
        raise ScanError(str(exc)) from exc
    report.files_seen = w.files_seen
    report.tables = dict((dataset.last_scan_report or {}).get("tables") or {})  # until this scan reads them
    report.timings["walk_s"] = round(time.monotonic() - t0, 3)
    if w.cancelled:
        report.cancelled = True
        return _finish(db, dataset, report, t0, w, None)

    stored = (
        {}
        if full
        else {
            rel_dir: (sig, n, problems)
            for rel_dir, sig, n, problems in db.execute_sql(
                "SELECT rel_dir, signature, n_items, problems FROM scan_dir WHERE dataset_id = ?", (dataset.id,)
            )
        }
    )
    # A folder is skipped only if its digest matches AND the index still holds as many
    # of its items as when the digest was stored (nothing else removed them since).
    counts = (
        dict(
            db.execute_sql(
                "SELECT rel_dir, COUNT(*) FROM item WHERE dataset_id = ? GROUP BY rel_dir", (dataset.id,)
            ).fetchall()
        )
        if stored
        else {}
    )
    changed: list[DirScan] = []
    to_plan: list[DirScan] = []
    shared = _SharedCaptions(db, dataset, w, stored, full)
    report.tables = shared.seen
    for d in w.dirs:
        old = stored.get(d.rel_dir)
        if (
            old is not None
            and old[0] == d.signature
            and counts.get(d.rel_dir, 0) == old[1]
            and d.rel_dir not in w.unreadable_dirs
            and not shared.forces(d.rel_dir)
        ):
            report.items_unchanged += old[1]
            report.dirs_unchanged += 1
            for path, reason in json_loads(old[2]):
                report.problems.append(Problem(path, reason))
            continue
        changed.append(d)
        report.problems.extend(Problem(p, r) for p, r in d.problems)
        if d.rel_dir in w.unreadable_dirs or not d.files:
            continue
        to_plan.append(d)
    report.problems.extend(Problem(p, r) for p, r in shared.table_problems(changed))

    has_items = db.execute_sql("SELECT 1 FROM item WHERE dataset_id = ? LIMIT 1", (dataset.id,)).fetchone() is not None
    if not has_items:
        existing = {}
    elif len(changed) == len(w.dirs):
        existing = _load_existing(db, dataset.id, None)
    else:
        existing = _load_existing(db, dataset.id, [d.rel_dir for d in changed])
    plan = _Plan(dataset, report, shared, existing, full, to_plan, track_keys=has_items)
    report.timings["plan_s"] = round(time.monotonic() - t0 - report.timings["walk_s"], 3)
    writer = Writer(db, dataset, report)
    # a first scan plans a job for every item: its size decides the deferred index
    after_scan.enter_context(_bulk_load(db, has_items, plan.estimated_items, throttle, report, cache_kib))
    _process(dataset, plan, report, cancel, throttle, writer, workers, pool)
    report.timings["plan_s"] = round(report.timings["plan_s"] + plan.seconds, 3)
    report.timings.update(
        write_s=round(writer.write_seconds, 3), tag_rows=writer.tag_rows, tag_insert_s=round(writer.tag_seconds, 3)
    )
    seen_keys = plan.seen_keys
    if not report.cancelled and has_items:
        walked = {d.rel_dir for d in w.dirs}
        unreadable = w.unreadable_dirs
        vanished = [e.item_id for key, e in existing.items() if key not in seen_keys and not _under(key, unreadable)]
        gone_dirs = [
            r
            for (r,) in db.execute_sql("SELECT DISTINCT rel_dir FROM item WHERE dataset_id = ?", (dataset.id,))
            if r not in walked and not _under(r + "/x", unreadable)
        ]
        for chunk in chunks(gone_dirs, 500):
            vanished.extend(
                i
                for (i,) in db.execute_sql(
                    f"SELECT id FROM item WHERE dataset_id = ? AND rel_dir IN ({','.join('?' * len(chunk))})",
                    (dataset.id, *chunk),
                )
            )
        if vanished:
            with write_transaction(db):
                writer.delete_items(vanished)
            report.items_removed = len(vanished)
    return _finish(db, dataset, report, t0, w, changed)


class _Plan:
    """The jobs of a scan, planned one folder at a time as the workers need them.

    Grouping a folder, comparing its items with the index and the jobs it makes are only
    held while that folder's batch is in flight: a first scan of 1M items planned up front
    held every ``ItemGroup`` and ``Job`` at once (~1.2 KB per item, most of its 1.8 GB
    peak). Each folder's file list is dropped once it is planned; its digest is kept for
    ``_store_dir_signatures``."""

    def __init__(
        self,
        dataset,
        report: ScanReport,
        shared: "_SharedCaptions",
        existing: dict,
        full: bool,
        dirs: list[DirScan],
        track_keys: bool,
    ):
        self.dataset = dataset
        self.report = report
        self.shared = shared
        self.existing = existing
        self.full = full
        self.dirs = deque(dirs)
        # an upper bound of each waiting folder's items (its images; a group has several)
        self._waiting = deque(sum(1 for f in d.files if _is_image(f[0])) for d in dirs)
        self.estimated_items = sum(self._waiting)
        self.planned = 0  # groups planned so far
        self.unchanged = 0  # of those, unchanged (no job)
        self.seconds = 0.0
        self.seen_keys: set[str] = set()
        self._track_keys = track_keys  # a reindex removes the items it did not see

    def total(self) -> int:
        """Items of the scan: exact once every folder is planned, until then the waiting
        folders count their images."""
        return self.report.items_unchanged - self.unchanged + self.planned + sum(self._waiting)

    def more(self) -> list[Job] | None:
        """The jobs of the next folder(s) with anything to do; None when all are planned."""
        while self.dirs:
            started = time.monotonic()
            d = self.dirs.popleft()
            self._waiting.popleft()
            jobs = self._plan_dir(d)
            self.seconds += time.monotonic() - started
            if jobs:
                return jobs
        return None

    def _plan_dir(self, d: DirScan) -> list[Job]:
        dataset, report, shared = self.dataset, self.report, self.shared
        images, captions, sidecars, named = d.split_all()
        d.files = []  # planned: the digest is all that is needed of it from now on
        if shared.folder_caption:  # a folder caption named x.txt is no caption of an image x
            named += [c for c in captions if c.name.lower() == shared.folder_caption]
            captions = [c for c in captions if c.name.lower() != shared.folder_caption]
        dir_groups, orphans = group_directory(
            d.rel_dir,
            images,
            captions,
            image_suffixes=dataset.image_suffixes,
            caption_suffixes=dataset.caption_suffixes,
            dataset_type=dataset.type,
            primary_suffix=dataset.primary_suffix or "target",
            suffix_separator=getattr(dataset, "suffix_separator", None) or "_",
            sidecars=sidecars,
        )
        report.problems.extend(Problem(f"{d.rel_dir}/{n}" if d.rel_dir else n, r) for n, r in orphans)
        for g in dir_groups:
            report.problems.extend(Problem(g.rel_path(n), r) for n, r in g.problems)
        report.problems.extend(Problem(p, r) for p, r in shared.attach(d.rel_dir, named, dir_groups))
        jobs: list[Job] = []
        self.planned += len(dir_groups)
        for group in dir_groups:
            if self._track_keys:
                self.seen_keys.add(group.group_key)
            old_item = self.existing.get(group.group_key)
            job = _plan(group, old_item, self.full)
            if job is None:  # _plan skips only items the index holds already
                assert old_item is not None
                report.items_unchanged += 1
                self.unchanged += 1
                for p in image_problems(group, old_item.problems):
                    report.problems.append(Problem(group.rel_path(group.primary.name), p.split(": ", 1)[1]))
            else:
                jobs.append(job)
        return jobs

    def batches(self, size: int, first: list[Job] | None = None):
        """Jobs in batches of ``size`` (the last one may be shorter)."""
        buf: list[Job] = list(first or ())
        while True:
            while len(buf) < size:
                jobs = self.more()
                if jobs is None:
                    break
                buf.extend(jobs)
            if not buf:
                return
            batch, buf = buf[:size], buf[size:]
            yield batch


def _is_image(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


@contextmanager
def _bulk_load(db, has_items: bool, new_items: int, throttle, report: ScanReport, cache_kib: int):
    """A first scan of a big folder runs without the tag-norm index and rebuilds it with
    one sort at the end (see ``store.deferred_index``), unless the other datasets' tag
    rows outnumber what this scan adds: rebuilding over them would cost more than it saves."""
    existing_rows = db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM item_tag").fetchone()[0]
    if has_items or new_items < DEFER_INDEX_MIN_ITEMS or existing_rows > new_items * 20:
        yield
        return
    started = time.monotonic()

    def before_rebuild():
        # the sort for the index gets a small page cache, not the scan's larger one (its
        # memory is a multiple of it, see SORT_CACHE_KIB), and what the scan left behind
        # is collected first: peak memory stays in budget whatever the number of items
        db.execute_sql(f"PRAGMA cache_size=-{min(SORT_CACHE_KIB, _kib(cache_kib))}")
        gc.collect()
        throttle(ProgressEvent("indexing tags", 0, None, "rows", started_at=started), True)

    t = None
    with index_deferred(db, TAG_NORM_INDEX, on_rebuild=before_rebuild) as deferred:
        yield
        t = time.monotonic()
    if deferred and t is not None:
        report.timings["tag_index_s"] = round(time.monotonic() - t, 3)


def _kib(cache_size: int) -> int:
    """PRAGMA cache_size in KiB (negative: KiB; positive: pages of 4 KiB)."""
    return -cache_size if cache_size < 0 else cache_size * 4


def json_loads(text: str | None) -> list:
    import json

    return json.loads(text) if text else []


def _under(group_key: str, dirs: list[str]) -> bool:
    for d in dirs:
        if d == "" or group_key.startswith(d + "/"):
            return True
    return False


def _pool_method() -> str:
    from sushitui.workers import start_method

    # fork is fast and safe while this is the only thread (CLI, scripts); the TUI scans
    # from a worker thread, where forking can dead-lock the child, so it spawns.
    return start_method("auto")


def _make_pool(n_workers: int):
    from sushitui.workers import process_pool

    # workers die with this process and ignore Ctrl-C (sushitui.workers)
    return process_pool(n_workers, method="auto")


def _process(dataset, plan: _Plan, report, cancel, throttle, writer, workers, pool=None) -> None:
    overrides = dict(dataset.caption_types or {})
    read_meta = bool(dataset.read_exif)
    started = time.monotonic()
    processed = 0
    buffered: list = []
    buffered_items = 0

    def tick(force=False):
        throttle(
            ProgressEvent(
                "indexing",
                report.items_unchanged + processed,
                plan.total(),
                "items",
                started_at=started,
                extra={"files": report.files_seen, "problems": len(report.problems)},
            ),
            force,
        )

    def tasks_for(batch_jobs: list[Job]):
        tasks = []
        dirs: dict[str, str] = {}
        for i, job in enumerate(batch_jobs):
            g = job.group
            directory = dirs.get(g.rel_dir)
            if directory is None:
                directory = dirs[g.rel_dir] = (
                    os.path.join(dataset.root_path, *g.rel_dir.split("/")) if g.rel_dir else dataset.root_path
                )
            # the sidecar's captions are replaced with the image's metadata: re-read
            # whenever the image is, while there is or was one
            refresh_sidecar = job.image_changed and (
                g.sidecar is not None or (job.existing is not None and job.existing.sidecar is not None)
            )
            tasks.append(
                (
                    i,
                    directory,
                    g.primary.name if job.image_changed else None,
                    job.read_captions,
                    read_meta and job.image_changed,
                    g.sidecar.name if g.sidecar is not None else None,
                    refresh_sidecar,
                )
            )
        return tasks

    def take(batch, results, last=False):
        nonlocal processed, buffered_items
        buffered.append((batch, results))
        buffered_items += len(batch)
        processed += len(batch)
        if last or buffered_items >= WRITE_BATCH:
            flush()
        tick()

    def flush():
        nonlocal buffered_items
        if buffered:
            writer.write(buffered[:])
            buffered.clear()
            buffered_items = 0

    def cancelled() -> bool:
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            flush()  # what the workers already did is kept
            return True
        return False

    # enough jobs planned to tell whether worker processes pay off (and, for a small
    # folder, the exact total before the first progress event)
    first: list[Job] = []
    while len(first) < POOL_MIN_TASKS:
        jobs = plan.more()
        if jobs is None:
            break
        first.extend(jobs)
    batches = plan.batches(BATCH, first)
    tick(force=True)
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if len(first) < POOL_MIN_TASKS or (pool is None and n_workers <= 1):
        for batch in batches:
            if cancelled():
                return
            take(batch, run_tasks(tasks_for(batch), overrides))
        flush()
        tick(force=True)
        return

    from concurrent.futures.process import BrokenProcessPool

    own_pool = pool is None
    pending: deque = deque()  # (future, batch) in submission order
    unsent: list[list[Job]] = []  # a batch whose submit failed (the pool broke)
    try:
        if own_pool:
            pool = _make_pool(n_workers)

        def submit_next() -> None:
            batch = next(batches, None)
            if batch is not None:
                unsent.append(batch)
                pending.append((pool.submit(run_tasks, tasks_for(batch), overrides), batch))
                unsent.clear()

        # Keep a whole write batch of tasks queued: while this process spends seconds in
        # one write transaction, the workers go on hashing the next batch instead of
        # idling after a couple of tasks (the results wait in memory, ~1.5 KB per item).
        for _ in range(max(n_workers * 2, WRITE_BATCH // BATCH + n_workers)):
            submit_next()
        while pending:
            if cancel is not None and cancel.cancelled:
                # keep the batches the workers have already finished, in order, then stop
                while (
                    pending
                    and pending[0][0].done()
                    and not pending[0][0].cancelled()
                    and pending[0][0].exception() is None
                ):
                    fut, batch = pending.popleft()
                    take(batch, fut.result())
                cancelled()
                for fut, _batch in pending:
                    fut.cancel()
                return
            fut, batch = pending[0]
            results = fut.result()
            pending.popleft()
            submit_next()
            take(batch, results)
    except BrokenProcessPool:
        # Worker processes could not start (e.g. spawn from an interactive __main__):
        # finish in this process rather than fail the scan.
        for batch in itertools.chain([b for _f, b in pending], unsent, batches):
            if cancelled():
                return
            take(batch, run_tasks(tasks_for(batch), overrides))
    finally:
        if own_pool and pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    flush()
    tick(force=True)


def _finish(db, dataset: Dataset, report: ScanReport, t0: float, w, changed: list[DirScan] | None) -> ScanReport:
    """Totals, the stored report and (after a complete scan) the folder digests."""
    report.elapsed = time.monotonic() - t0
    report.finished_at = time.time()
    if not (report.items_added or report.items_updated or report.items_removed) and dataset.indexed_at:
        # nothing changed: the stored totals are still right (saves two full counts)
        row = (dataset.total_items, dataset.total_images)
        n_caps = dataset.total_captions
        report.items_total = row[0]
    else:
        row, n_caps = _totals(db, dataset)
    report.items_total = row[0]
    now = time.time()
    stored = report.to_dict()
    if report.cancelled and (dataset.last_scan_report or {}).get("needs_full"):
        # A settings change asked for every file to be re-read and this scan stopped
        # early: the next reindex must still re-read everything, or the folders it did
        # not reach (digests unchanged) would keep what the old settings read.
        stored["needs_full"] = True
    with write_transaction(db):
        if not report.cancelled and changed is not None:
            _store_dir_signatures(db, dataset, report, w, changed)
        Dataset.update(
            total_items=row[0],
            total_images=row[1],
            total_captions=n_caps,
            indexed_at=now,
            last_scan_report=stored,
            updated_at=now,
        ).where(Dataset.id == dataset.id).execute()
    dataset.total_items, dataset.total_images, dataset.total_captions = row[0], row[1], n_caps
    dataset.indexed_at = now
    dataset.last_scan_report = stored
    return report


def _totals(db, dataset: Dataset) -> tuple[tuple[int, int], int]:
    row = db.execute_sql(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN related_images IS NULL OR related_images = '{}' THEN 1 "
        "ELSE (SELECT COUNT(*) FROM json_each(item.related_images)) END), 0) FROM item WHERE dataset_id = ?",
        (dataset.id,),
    ).fetchone()
    n_caps = db.execute_sql(
        "SELECT COUNT(*) FROM caption c JOIN item i ON i.id = c.item_id WHERE i.dataset_id = ?", (dataset.id,)
    ).fetchone()[0]
    return (row[0], row[1]), n_caps


def _store_dir_signatures(db, dataset: Dataset, report: ScanReport, w, changed: list[DirScan]) -> None:
    """Remember each changed folder's digest, item count and problems; unchanged
    folders keep their rows. Unreadable folders get none (they are listed again)."""
    changed_dirs = {d.rel_dir for d in changed}
    per_dir: dict[str, list] = {}
    for p in report.problems:
        parent = _parent(p.path)
        if parent in changed_dirs and not p.reason.startswith("folder cannot be read"):
            per_dir.setdefault(parent, []).append([p.path, p.reason])
    counts = dict(
        db.execute_sql(
            "SELECT rel_dir, COUNT(*) FROM item WHERE dataset_id = ? GROUP BY rel_dir", (dataset.id,)
        ).fetchall()
    )
    walked = {d.rel_dir for d in w.dirs}
    cur = db.cursor()
    cur.execute(
        "DELETE FROM scan_dir WHERE dataset_id = ? AND rel_dir NOT IN (SELECT value FROM json_each(?))",
        (dataset.id, dumps(sorted(walked))),
    )
    rows = [
        (dataset.id, d.rel_dir, d.signature, counts.get(d.rel_dir, 0), dumps(per_dir.get(d.rel_dir)))
        for d in changed
        if d.rel_dir not in w.unreadable_dirs
    ]
    cur.executemany(
        "INSERT OR REPLACE INTO scan_dir (dataset_id, rel_dir, signature, n_items, problems) VALUES (?,?,?,?,?)", rows
    )
    cur.executemany(
        "DELETE FROM scan_dir WHERE dataset_id = ? AND rel_dir = ?", [(dataset.id, r) for r in w.unreadable_dirs]
    )
