"""Scanning a dataset folder into the index (SCAN-1..11).

One function, ``scan_dataset``, does both the first scan and the incremental reindex
(SCAN-8): it walks the folder (stat only), groups files per directory, compares each
item with the index (size + mtime of the primary image, related image paths, size +
mtime of each caption file) and sends only new or changed items to the file workers
(hash + header + captions, two processes). Results are written in large batches, each
in one write transaction, so a cancelled scan keeps everything indexed so far. Items
whose files vanished are removed at the end of a scan that was not cancelled.

Caption files are the truth (NF-2): the app writes the file before the index, so a
caption whose file differs from the index is re-read, never the other way round.
Every bad file is a ``Problem`` in the ``ScanReport`` and the scan goes on (SCAN-10).
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sushitui.dataset.caption_files import is_temp_file
from sushitui.dataset.grouping import FileEntry, ItemGroup, classify, group_directory, split_ext
from sushitui.dataset.scan_worker import CaptionResult, ImageResult, run_tasks
from sushitui.progress import CancelToken, ProgressCallback, ProgressEvent, Throttle
from sushitui.store import Dataset, current_database, write_transaction

BATCH = 1000  # items per worker task and per write transaction
POOL_MIN_TASKS = 400  # below this, starting worker processes costs more than it saves
MAX_PROBLEMS_STORED = 5000
EMBEDDED_SOURCES = ("exif", "xmp", "iptc", "png_text")


class ScanError(Exception):
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


# --- walking ---------------------------------------------------------------------------


@dataclass
class _Walk:
    groups: list[ItemGroup] = field(default_factory=list)
    files_seen: int = 0
    unreadable_dirs: list[str] = field(default_factory=list)  # rel dirs whose items must not be dropped


def _rel(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _valid_name(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def walk_dataset(dataset: Dataset, report: ScanReport, cancel: CancelToken | None, progress: Throttle) -> _Walk:
    """Stat every file under the root (os.scandir, no reads) and group each directory."""
    root = dataset.root_path
    walk = _Walk()
    try:
        root_st = os.stat(root)
    except OSError as exc:
        raise ScanError(f"{root}: the dataset folder cannot be opened ({exc.strerror}); check the path or remount the disk") from exc
    visited = {(root_st.st_dev, root_st.st_ino)}
    stack: list[tuple[str, str, int]] = [(root, "", 0)]
    max_depth = dataset.max_depth
    started = time.monotonic()
    while stack:
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        path, rel_dir, depth = stack.pop()
        images: list[FileEntry] = []
        captions: list[FileEntry] = []
        try:
            entries = list(os.scandir(path))
        except OSError as exc:
            reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
            report.problems.append(Problem(rel_dir or ".", f"folder cannot be read ({reason}); its items are kept as they were"))
            walk.unreadable_dirs.append(rel_dir)
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or is_temp_file(name):
                continue  # hidden files, our own temp files, macOS ._ forks
            rel = _rel(rel_dir, name)
            if not _valid_name(name):
                report.problems.append(Problem(rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                                               "file name is not valid UTF-8; rename it to index it"))
                continue
            kind = classify(name)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if dataset.recursive and (max_depth is None or depth < max_depth):
                    subdirs.append((entry, rel))
                continue
            if kind is None:
                if entry.is_symlink():
                    _check_symlink(entry, rel, report)
                continue
            walk.files_seen += 1
            try:
                st = entry.stat()
            except FileNotFoundError:
                report.problems.append(Problem(rel, "broken symbolic link (its target does not exist); fix or remove the link"
                                               if entry.is_symlink() else "vanished during the scan; reindex when the folder is settled"))
                continue
            except OSError as exc:
                report.problems.append(Problem(rel, _stat_reason(exc)))
                continue
            if not stat_mod.S_ISREG(st.st_mode):
                report.problems.append(Problem(rel, "not a regular file (device, pipe or socket); skipped"))
                continue
            (images if kind == "image" else captions).append(FileEntry(name, st.st_size, st.st_mtime_ns))
        for entry, rel in sorted(subdirs, key=lambda e: e[1], reverse=True):
            try:
                st = entry.stat()
            except OSError as exc:
                report.problems.append(Problem(rel, _stat_reason(exc)))
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in visited:
                report.problems.append(Problem(rel, "symbolic link loop (this folder was already scanned through another path); not followed"))
                continue
            visited.add(ident)
            stack.append((entry.path, rel, depth + 1))
        if images or captions:
            groups, orphans = group_directory(
                rel_dir, images, captions,
                image_suffixes=dataset.image_suffixes, caption_suffixes=dataset.caption_suffixes,
                dataset_type=dataset.type, primary_suffix=dataset.primary_suffix or "target",
            )
            for name, reason in orphans:
                report.problems.append(Problem(_rel(rel_dir, name), reason))
            walk.groups.extend(groups)
        progress(ProgressEvent("walking", walk.files_seen, None, "files", started_at=started))
    report.files_seen = walk.files_seen
    return walk


def _stat_reason(exc: OSError) -> str:
    if getattr(exc, "errno", None) == 40:  # ELOOP
        return "symbolic link loop (the link points back to itself); fix or remove the link"
    if isinstance(exc, PermissionError):
        return "permission denied; make it readable and reindex"
    return f"cannot be read ({exc.strerror or exc})"


def _check_symlink(entry: os.DirEntry, rel: str, report: ScanReport) -> None:
    try:
        os.stat(entry.path)
    except FileNotFoundError:
        if classify(entry.name) is not None:
            report.problems.append(Problem(rel, "broken symbolic link (its target does not exist); fix or remove the link"))
    except OSError as exc:
        report.problems.append(Problem(rel, _stat_reason(exc)))


# --- comparing with the index ----------------------------------------------------------


@dataclass
class _Existing:
    item_id: int
    image_path: str | None
    related: str  # related_images JSON as stored
    size: int | None
    mtime_ns: int | None
    captions: dict[str, tuple[int, int | None, int | None]] = field(default_factory=dict)  # file_path -> (id, size, mtime)


def _load_existing(db, dataset_id: int) -> dict[str, _Existing]:
    existing: dict[str, _Existing] = {}
    by_id: dict[int, _Existing] = {}
    cur = db.execute_sql(
        "SELECT id, group_key, image_path, related_images, file_size, mtime_ns FROM item WHERE dataset_id = ?", (dataset_id,)
    )
    for item_id, key, image_path, related, size, mtime in cur:
        e = _Existing(item_id, image_path, related or "{}", size, mtime)
        existing[key] = by_id[item_id] = e
    cur = db.execute_sql(
        "SELECT c.id, c.item_id, c.file_path, c.file_size, c.file_mtime_ns FROM caption c JOIN item i ON i.id = c.item_id "
        "WHERE i.dataset_id = ? AND c.file_path IS NOT NULL",
        (dataset_id,),
    )
    for cid, item_id, path, size, mtime in cur:
        by_id[item_id].captions[path] = (cid, size, mtime)
    return existing


def _related_json(group: ItemGroup) -> str:
    return json.dumps(group.related_images(), ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Job:
    group: ItemGroup
    existing: _Existing | None
    image_changed: bool
    read_captions: list[tuple[str, str]]  # (subtype, file name)
    drop_caption_ids: list[int]  # txt caption rows replaced or vanished


def _plan(group: ItemGroup, existing: _Existing | None, full: bool, read_meta: bool) -> _Job | None:
    """What to do for one item; None when nothing changed."""
    if existing is None:
        return _Job(group, None, True, [(s, f.name) for s, f in sorted(group.captions.items())], [])
    primary = group.primary
    image_changed = (
        full
        or existing.image_path != group.rel_path(primary.name)
        or existing.size != primary.size
        or existing.mtime_ns != primary.mtime_ns
    )
    related_changed = existing.related != _related_json(group)
    to_read: list[tuple[str, str]] = []
    drop: list[int] = []
    seen_paths = set()
    for subtype, entry in sorted(group.captions.items()):
        rel = group.rel_path(entry.name)
        seen_paths.add(rel)
        old = existing.captions.get(rel)
        if full or old is None or old[1] != entry.size or old[2] != entry.mtime_ns:
            to_read.append((subtype, entry.name))
            if old is not None:
                drop.append(old[0])
    for rel, (cid, _s, _m) in existing.captions.items():
        if rel not in seen_paths:
            drop.append(cid)
    if not (image_changed or related_changed or to_read or drop):
        return None
    return _Job(group, existing, image_changed, to_read, drop)


# --- writing ---------------------------------------------------------------------------

_ITEM_COLS = (
    "id, dataset_id, item_type, base_name, rel_dir, group_key, image_path, image_suffix, related_images, width, height, "
    "file_size, mtime_ns, sha256, exif_data, tag_count, problems, created_at, indexed_at, updated_at"
)
_CAPTION_COLS = (
    "id, item_id, type, subtype, content, language, source, source_field, file_path, file_size, file_mtime_ns, "
    "file_sha256, encoding, encoding_flagged, created_at, updated_at"
)
_TAG_COLS = "item_id, caption_id, tag, norm, position, subtype, source, confidence"


def _dumps(value) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Writer:
    """Turns worker results into rows and writes one batch per transaction."""

    def __init__(self, db, dataset: Dataset, report: ScanReport, dataset_type: str):
        self.db = db
        self.dataset = dataset
        self.report = report
        self.dataset_type = dataset_type

    def write(self, jobs: list[_Job], results) -> None:
        now = time.time()
        db = self.db
        report = self.report
        new_items, updates, captions, tags = [], [], [], []
        drop_caps: list[int] = []
        drop_items: list[int] = []
        drop_embedded: list[int] = []
        recount: list[int] = []
        with write_transaction(db):
            next_item = db.execute_sql("SELECT COALESCE(MAX(id), 0) + 1 FROM item").fetchone()[0]
            next_cap = db.execute_sql("SELECT COALESCE(MAX(id), 0) + 1 FROM caption").fetchone()[0]
            for index, image, caps in results:
                job = jobs[index]
                group = job.group
                primary_rel = group.rel_path(group.primary.name)
                if image is not None and image.error is not None:
                    report.problems.append(Problem(primary_rel, image.error))
                    if job.existing is not None:
                        drop_items.append(job.existing.item_id)
                    continue
                problems = [f"{name}: {reason}" for name, reason in group.problems]
                if image is not None and image.warning:
                    problems.append(image.warning)
                    report.problems.append(Problem(primary_rel, image.warning))
                meta = image.meta if image is not None else None
                if meta and meta.get("problems"):
                    for reason in meta["problems"]:
                        problems.append(reason)
                        report.problems.append(Problem(primary_rel, reason))
                if job.existing is None:
                    item_id = next_item
                    next_item += 1
                else:
                    item_id = job.existing.item_id
                    drop_caps.extend(job.drop_caption_ids)
                tag_count = None
                for c in caps:
                    rel = group.rel_path(c.name)
                    if c.error is not None:
                        report.problems.append(Problem(rel, c.error))
                        problems.append(f"{c.name}: {c.error}")
                        continue
                    report.captions += 1
                    if c.flagged:
                        report.problems.append(Problem(rel, f"not UTF-8: read as {c.encoding}; it is saved as UTF-8 only when you edit it"))
                    cid = next_cap
                    next_cap += 1
                    captions.append((cid, item_id, c.ctype, c.subtype, c.text, "auto", "txt_file", None, rel, c.size,
                                     c.mtime_ns, c.sha256, c.encoding, int(c.flagged), now, now))
                    if c.tags:
                        tags.extend((item_id, cid, t, k, pos, c.subtype, "txt_file", None) for pos, (t, k) in enumerate(c.tags))
                    if c.ctype == "tags" and (c.subtype == "main" or tag_count is None):
                        tag_count = len(c.tags or ())
                if meta:
                    if job.existing is not None:
                        drop_embedded.append(item_id)
                    for ctype, subtype, source, fieldname, text, mtags in meta.get("captions", ()):
                        cid = next_cap
                        next_cap += 1
                        captions.append((cid, item_id, ctype, subtype, text, "auto", source, fieldname, None, None, None,
                                         None, None, 0, now, now))
                        if mtags:
                            tags.extend((item_id, cid, t, k, pos, subtype, source, None) for pos, (t, k) in enumerate(mtags))
                        if tag_count is None and mtags:
                            tag_count = len(mtags)
                related = group.related_images()
                item_type = group.item_type(self.dataset_type)
                image_suffix = group.primary_suffix or None
                if job.existing is None:
                    p = group.primary
                    new_items.append((
                        item_id, self.dataset.id, item_type, group.base_name, group.rel_dir, group.group_key, primary_rel,
                        image_suffix, _dumps(related), image.width, image.height, image.size, image.mtime_ns, image.sha256,
                        _dumps(meta.get("raw") if meta else None), tag_count or 0, _dumps(problems or None),
                        p.mtime_ns / 1e9, now, now,
                    ))
                    report.items_added += 1
                else:
                    report.items_updated += 1
                    updates.append((item_id, image, item_type, primary_rel, image_suffix, related, meta, problems))
                    recount.append(item_id)
            cur = db.cursor()
            if drop_items:
                self._delete_items(drop_items)
            for chunk in _chunks(drop_caps, 500):
                marks = ",".join("?" * len(chunk))
                cur.execute(f"DELETE FROM item_tag WHERE caption_id IN ({marks})", chunk)
                cur.execute(f"DELETE FROM caption WHERE id IN ({marks})", chunk)
            for chunk in _chunks(drop_embedded, 500):
                marks = ",".join("?" * len(chunk))
                src = ",".join(f"'{s}'" for s in EMBEDDED_SOURCES)
                cur.execute(f"DELETE FROM item_tag WHERE caption_id IN (SELECT id FROM caption WHERE item_id IN ({marks}) AND file_path IS NULL AND source IN ({src}))", chunk)
                cur.execute(f"DELETE FROM caption WHERE item_id IN ({marks}) AND file_path IS NULL AND source IN ({src})", chunk)
            for item_id, image, item_type, primary_rel, image_suffix, related, meta, problems in updates:
                if image is not None:
                    cur.execute(
                        "UPDATE item SET item_type=?, image_path=?, image_suffix=?, related_images=?, width=?, height=?, file_size=?, "
                        "mtime_ns=?, sha256=?, exif_data=?, problems=?, created_at=?, indexed_at=?, updated_at=? WHERE id=?",
                        (item_type, primary_rel, image_suffix, _dumps(related), image.width, image.height, image.size,
                         image.mtime_ns, image.sha256, _dumps(meta.get("raw") if meta else None), _dumps(problems or None),
                         image.mtime_ns / 1e9, now, now, item_id),
                    )
                else:
                    cur.execute(
                        "UPDATE item SET item_type=?, related_images=?, problems=?, indexed_at=?, updated_at=? WHERE id=?",
                        (item_type, _dumps(related), _dumps(problems or None), now, now, item_id),
                    )
            if new_items:
                cur.executemany(f"INSERT INTO item ({_ITEM_COLS}) VALUES ({','.join('?' * 20)})", new_items)
            if captions:
                cur.executemany(f"INSERT INTO caption ({_CAPTION_COLS}) VALUES ({','.join('?' * 16)})", captions)
            if tags:
                cur.executemany(f"INSERT INTO item_tag ({_TAG_COLS}) VALUES (?,?,?,?,?,?,?,?)", tags)
            for chunk in _chunks(recount, 500):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    f"UPDATE item SET tag_count = COALESCE((SELECT COUNT(*) FROM item_tag t WHERE t.item_id = item.id AND t.subtype = 'main'), 0) "
                    f"WHERE id IN ({marks})",
                    chunk,
                )

    def _delete_items(self, ids: list[int]) -> None:
        cur = self.db.cursor()
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            cur.execute(f"DELETE FROM item_tag WHERE item_id IN ({marks})", chunk)
            cur.execute(f"DELETE FROM caption WHERE item_id IN ({marks})", chunk)
            cur.execute(f"DELETE FROM item WHERE id IN ({marks})", chunk)


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


# --- the scan --------------------------------------------------------------------------


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
    walk = walk_dataset(dataset, report, cancel, throttle)
    existing = {} if report.cancelled else _load_existing(db, dataset.id)
    read_meta = bool(dataset.read_exif)
    jobs: list[_Job] = []
    seen_keys = set()
    for group in walk.groups:
        seen_keys.add(group.group_key)
        for name, reason in group.problems:
            report.problems.append(Problem(group.rel_path(name), reason))
        job = _plan(group, existing.get(group.group_key), full, read_meta)
        if job is None:
            report.items_unchanged += 1
        else:
            jobs.append(job)
    if not report.cancelled:
        _process(db, dataset, jobs, report, cancel, throttle, read_meta, workers, len(walk.groups))
    if not report.cancelled:
        vanished = [e.item_id for key, e in existing.items() if key not in seen_keys and not _under(key, walk.unreadable_dirs)]
        if vanished:
            with write_transaction(db):
                _Writer(db, dataset, report, dataset.type)._delete_items(vanished)
            report.items_removed = len(vanished)
    report.elapsed = time.monotonic() - t0
    report.finished_at = time.time()
    _finish(db, dataset, report)
    return report


def _under(group_key: str, dirs: list[str]) -> bool:
    for d in dirs:
        if d == "" or group_key.startswith(d + "/"):
            return True
    return False


def _process(db, dataset, jobs, report, cancel, throttle, read_meta, workers, total) -> None:
    overrides = dict(dataset.caption_types or {})
    writer = _Writer(db, dataset, report, dataset.type)
    started = time.monotonic()
    done = report.items_unchanged

    def tick(force=False):
        throttle(ProgressEvent("indexing", done, total, "items", started_at=started,
                               extra={"files": report.files_seen, "problems": len(report.problems)}), force)

    def tasks_for(batch_jobs: list[_Job]):
        tasks = []
        for i, job in enumerate(batch_jobs):
            g = job.group
            directory = os.path.join(dataset.root_path, *g.rel_dir.split("/")) if g.rel_dir else dataset.root_path
            tasks.append((i, directory, g.primary.name if job.image_changed else None, job.read_captions,
                          read_meta and job.image_changed))
        return tasks

    batches = [jobs[i : i + BATCH] for i in range(0, len(jobs), BATCH)]
    tick(force=True)
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    if len(jobs) < POOL_MIN_TASKS or n_workers <= 1:
        for batch in batches:
            if cancel is not None and cancel.cancelled:
                report.cancelled = True
                return
            writer.write(batch, run_tasks(tasks_for(batch), overrides))
            done += len(batch)
            tick()
        tick(force=True)
        return

    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from sushitui.dataset.scan_worker import init_worker

    # fork is fast and safe while this is the only thread (CLI, scripts); the TUI scans
    # from a worker thread, where forking can dead-lock the child, so it spawns.
    method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    remaining = deque(batches)
    try:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=init_worker) as pool:
            pending: deque = deque()

            def submit_next() -> None:
                if len(pending) < len(remaining):
                    batch = remaining[len(pending)]
                    pending.append(pool.submit(run_tasks, tasks_for(batch), overrides))

            for _ in range(n_workers * 2):
                submit_next()
            while pending:
                if cancel is not None and cancel.cancelled:
                    report.cancelled = True
                    for fut in pending:
                        fut.cancel()
                    return
                results = pending.popleft().result()
                batch = remaining.popleft()
                submit_next()
                writer.write(batch, results)
                done += len(batch)
                tick()
    except BrokenProcessPool:
        # Worker processes could not start (e.g. spawn from an interactive __main__):
        # finish in this process rather than fail the scan.
        for batch in remaining:
            if cancel is not None and cancel.cancelled:
                report.cancelled = True
                return
            writer.write(batch, run_tasks(tasks_for(batch), overrides))
            done += len(batch)
            tick()
    tick(force=True)


def _finish(db, dataset: Dataset, report: ScanReport) -> None:
    row = db.execute_sql(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN related_images IS NULL OR related_images = '{}' THEN 1 "
        "ELSE (SELECT COUNT(*) FROM json_each(item.related_images)) END), 0) FROM item WHERE dataset_id = ?",
        (dataset.id,),
    ).fetchone()
    n_caps = db.execute_sql(
        "SELECT COUNT(*) FROM caption c JOIN item i ON i.id = c.item_id WHERE i.dataset_id = ?", (dataset.id,)
    ).fetchone()[0]
    report.items_total = row[0]
    now = time.time()
    with write_transaction(db):
        Dataset.update(
            total_items=row[0], total_images=row[1], total_captions=n_caps,
            indexed_at=now, last_scan_report=report.to_dict(), updated_at=now,
        ).where(Dataset.id == dataset.id).execute()
    dataset.total_items, dataset.total_images, dataset.total_captions = row[0], row[1], n_caps
    dataset.indexed_at = now
    dataset.last_scan_report = report.to_dict()
