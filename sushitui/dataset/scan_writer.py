"""Writing scan results into the index: one write transaction per batch.

Ids are assigned here, inside the transaction (BEGIN IMMEDIATE holds the write lock, so
no other writer can take them), which lets items, captions and tag rows go in with
``executemany`` and no per-row round trips. Tag rows come from the workers as one JSON
array per caption and are expanded by SQLite (``json_each``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from sushitui.dataset.captions import EMBEDDED_SOURCES
from sushitui.dataset.grouping import ItemGroup
from sushitui.dataset.scan_worker import read_caption_file, tag_pairs, tags_json
from sushitui.dataset.tables import EXTERNAL_SOURCES
from sushitui.dataset.write_lock import dataset_write_lock
from sushitui.store import Dataset, StoreError, group_index, tag_bitmaps, write_transaction
from sushitui.store.natural_key import natural_key

_ITEM_COLS = (
    "id, dataset_id, item_type, base_name, rel_dir, group_key, image_path, image_suffix, related_images, width, height, "
    "file_size, mtime_ns, sha256, exif_data, tag_count, problems, created_at, indexed_at, updated_at, name_key"
)
_CAPTION_COLS = (
    "id, item_id, type, subtype, content, language, source, source_field, file_path, file_size, file_mtime_ns, "
    "file_sha256, encoding, encoding_flagged, created_at, updated_at"
)
# json_extract rather than ->> so that SQLite < 3.38 (Ubuntu 22.04) works too.
_TAG_INSERT = (
    "INSERT INTO item_tag (item_id, caption_id, tag, norm, position, subtype, source, confidence) "
    "SELECT ?1, ?2, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), j.key, ?3, ?4, NULL "
    "FROM json_each(?5) AS j"
)


def dumps(value) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def related_json(group: ItemGroup) -> str:
    return json.dumps(group.related_images(), ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class Existing:
    """What the index holds for an item (for comparison with the folder)."""

    item_id: int
    image_path: str | None
    related: str  # related_images JSON as stored
    size: int | None
    mtime_ns: int | None
    captions: dict[str, tuple[int, int | None, int | None, str]] = field(
        default_factory=dict
    )  # file_path -> (id, size, mtime, subtype)
    problems: list[str] | None = None  # Item.problems: "file name: reason"
    sidecar: tuple[str, int, int] | None = None  # (name, size, mtime_ns) of the XMP sidecar read last
    # captions from shared files: sorted (type, subtype, source, source_field, content)
    external: list[tuple] = field(default_factory=list)


def image_problems(group: ItemGroup, stored: list[str] | None) -> list[str]:
    """The stored problems that belong to the primary image (warnings, metadata): kept
    and reported again while the image is not re-read."""
    prefix = group.primary.name + ": "
    return [p for p in stored or () if p.startswith(prefix)]


@dataclass(slots=True)
class Job:
    group: ItemGroup
    existing: Existing | None
    image_changed: bool
    read_captions: list[tuple[str, str]]  # (subtype, file name)
    drop_caption_ids: list[int]  # caption rows whose file vanished
    reuse_caption_ids: dict[str, int] = field(default_factory=dict)  # file name -> caption id re-read in place
    external_changed: bool = False  # the item's captions from shared files are rewritten


def chunks(seq, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _fileless_caption_row(
    cid: int, item_id: int, ctype: str, subtype: str, text: str, source: str, fieldname: str | None, now: float
) -> tuple:
    """A caption row (column order of the caption insert) with no file of its own: a
    table cell or embedded metadata, so no path, size, mtime, hash or encoding."""
    return (cid, item_id, ctype, subtype, text, "auto", source, fieldname, None, None, None, None, None, 0, now, now)


class Writer:
    """Turns worker results into rows; ``write`` commits one batch."""

    def __init__(self, db, dataset: Dataset, report):
        self.db = db
        self.dataset = dataset
        self.report = report
        self.tag_rows = 0
        self.tag_seconds = 0.0  # time inside the tag-row inserts (benchmark figure)
        self.write_seconds = 0.0

    def write(self, batches: list[tuple[list[Job], list]]) -> None:
        """Commit the results of several worker batches in one transaction: fewer,
        larger transactions rewrite the hot index pages (tag norms) less often."""
        t_start = time.perf_counter()
        now = time.time()
        db = self.db
        # A batch of new items only (a first scan) inserts rows whose parents it inserts
        # itself, under the write lock: per-row foreign-key probes (item and caption of
        # every tag row) would check what is true by construction and cost ~10 % of the
        # tag-row inserts. The pragma only changes outside a transaction; batches that
        # update or delete keep the checks (their cascades need them).
        fk_off = not db.in_transaction() and all(job.existing is None for jobs, _r in batches for job in jobs)
        # The dataset's write lock (taken by every caption writer): under it, a caption
        # file changed by an editor after a worker read it is seen and re-read below,
        # so a scan never puts an older text back into the index.
        with dataset_write_lock(self.dataset.root_path, name=self.dataset.name, what="a scan"):
            if fk_off:
                db.execute_sql("PRAGMA foreign_keys=OFF")
            try:
                self._write(batches, now, fk_off)
            finally:
                if fk_off:
                    db.execute_sql("PRAGMA foreign_keys=ON")
        self.write_seconds += time.perf_counter() - t_start

    def _fresh(self, job: Job, c, rel: str):
        """The caption result ``c`` of an indexed item, re-read when its file changed
        since the worker read it (an editor wrote it meanwhile)."""
        if c.error is not None:
            return c
        path = os.path.join(self.dataset.root_path, *rel.split("/"))
        try:
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) == (c.size, c.mtime_ns):
                return c
        except OSError:
            pass
        return read_caption_file(path, c.subtype, c.name, dict(self.dataset.caption_types or {}))

    def _indexed_caption_files(self, batches) -> dict[tuple[int, str], int]:
        """(item id, file path) -> caption id of the indexed items' caption files: a file
        an editor created after the walk is indexed already and is updated, not added twice."""
        ids = [job.existing.item_id for jobs, _r in batches for job in jobs if job.existing is not None]
        out: dict[tuple[int, str], int] = {}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for cid, item_id, path in self.db.execute_sql(
                f"SELECT id, item_id, file_path FROM caption WHERE item_id IN ({marks}) AND file_path IS NOT NULL",
                chunk,
            ):
                out[(item_id, path)] = cid
        return out

    def _write(self, batches: list[tuple[list[Job], list]], now: float, fk_off: bool) -> None:
        from sushitui.dataset.scanner import Problem

        db = self.db
        report = self.report
        new_items, updates, captions, tag_sets, caption_updates = [], [], [], [], []
        drop_caps: list[int] = []
        drop_items: list[int] = []
        drop_embedded: list[int] = []
        drop_external: list[int] = []
        recount: list[int] = []
        dataset_type = self.dataset.type
        with write_transaction(db):
            if fk_off and db.execute_sql("SELECT 1 FROM dataset WHERE id = ?", (self.dataset.id,)).fetchone() is None:
                raise StoreError(f"dataset {self.dataset.name!r} was removed while it was being scanned")
            # tags of this dataset change below: its stored group answers are rebuilt on demand
            group_index.invalidate_dataset(db, self.dataset.id)
            tag_bitmaps.forget_all(db)
            indexed_files = self._indexed_caption_files(batches)
            next_item = db.execute_sql("SELECT COALESCE(MAX(id), 0) + 1 FROM item").fetchone()[0]
            next_cap = db.execute_sql("SELECT COALESCE(MAX(id), 0) + 1 FROM caption").fetchone()[0]
            for index, image, caps, jobs in ((i, im, c, jobs) for jobs, results in batches for i, im, c in results):
                job = jobs[index]
                group = job.group
                primary_rel = group.rel_path(group.primary.name)
                if image is not None and image.error is not None:
                    report.problems.append(Problem(primary_rel, image.error))
                    if job.existing is not None:
                        drop_items.append(job.existing.item_id)
                    continue
                problems = [f"{name}: {reason}" for name, reason in group.problems]
                meta = image.meta if image is not None else None
                if image is None:
                    for p in image_problems(group, job.existing.problems if job.existing else None):
                        problems.append(p)
                        report.problems.append(Problem(primary_rel, p.split(": ", 1)[1]))
                else:
                    reasons = ([image.warning] if image.warning else []) + list((meta or {}).get("problems") or ())
                    for reason in reasons:
                        problems.append(f"{group.primary.name}: {reason}")
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
                    if job.existing is not None:
                        c = self._fresh(job, c, rel)
                    if c.error is not None:
                        report.problems.append(Problem(rel, c.error))
                        problems.append(f"{c.name}: {c.error}")
                        continue
                    report.captions += 1
                    if c.flagged:
                        report.problems.append(
                            Problem(rel, f"not UTF-8: read as {c.encoding}; it is saved as UTF-8 only when you edit it")
                        )
                    cid = job.reuse_caption_ids.get(c.name)
                    if cid is None and job.existing is not None:
                        cid = indexed_files.get((item_id, rel))
                    if cid is None:
                        cid = next_cap
                        next_cap += 1
                        captions.append(
                            (
                                cid,
                                item_id,
                                c.ctype,
                                c.subtype,
                                c.text,
                                "auto",
                                "txt_file",
                                None,
                                rel,
                                c.size,
                                c.mtime_ns,
                                c.sha256,
                                c.encoding,
                                int(c.flagged),
                                now,
                                now,
                            )
                        )
                    else:
                        # Updated in place (not delete + insert) so an editor holding this
                        # caption row keeps a valid id.
                        caption_updates.append(
                            (
                                c.ctype,
                                c.subtype,
                                c.text,
                                rel,
                                c.size,
                                c.mtime_ns,
                                c.sha256,
                                c.encoding,
                                int(c.flagged),
                                now,
                                cid,
                            )
                        )
                    if c.tags:
                        tag_sets.append((item_id, cid, c.subtype, "txt_file", c.tags))
                        self.tag_rows += c.n_tags
                    if c.ctype == "tags" and (c.subtype == "main" or tag_count is None):
                        tag_count = c.n_tags
                if job.external_changed:
                    if job.existing is not None:
                        drop_external.append(item_id)
                    for ctype, subtype, source, fieldname, text in group.external:
                        cid = next_cap
                        next_cap += 1
                        captions.append(
                            _fileless_caption_row(cid, item_id, ctype, subtype, text, source, fieldname, now)
                        )
                        pairs = tag_pairs(text) if ctype == "tags" else None
                        if pairs:
                            tag_sets.append((item_id, cid, subtype, source, tags_json(pairs)))
                            self.tag_rows += len(pairs)
                            if subtype == "main" or tag_count is None:
                                tag_count = len(pairs)
                if meta:
                    if job.existing is not None:
                        drop_embedded.append(item_id)
                    for ctype, subtype, source, fieldname, text, mtags in meta.get("captions", ()):
                        cid = next_cap
                        next_cap += 1
                        captions.append(
                            _fileless_caption_row(cid, item_id, ctype, subtype, text, source, fieldname, now)
                        )
                        if mtags:
                            tag_sets.append((item_id, cid, subtype, source, tags_json(mtags)))
                            self.tag_rows += len(mtags)
                            if tag_count is None:
                                tag_count = len(mtags)
                # a plain single image (most items) has no related images: no JSON to build
                related = "{}" if len(group.images) == 1 and "" in group.images else dumps(group.related_images())
                item_type = group.item_type(dataset_type)
                image_suffix = group.primary_suffix or None
                if job.existing is None:
                    new_items.append(
                        (
                            item_id,
                            self.dataset.id,
                            item_type,
                            group.base_name,
                            group.rel_dir,
                            group.group_key,
                            primary_rel,
                            image_suffix,
                            related,
                            image.width,
                            image.height,
                            image.size,
                            image.mtime_ns,
                            image.sha256,
                            dumps(meta.get("raw") if meta else None),
                            tag_count or 0,
                            dumps(problems or None),
                            group.primary.mtime_ns / 1e9,
                            now,
                            now,
                            natural_key(group.group_key),
                        )
                    )
                    report.items_added += 1
                else:
                    report.items_updated += 1
                    updates.append((item_id, image, item_type, primary_rel, image_suffix, related, meta, problems))
                    recount.append(item_id)
            cur = db.cursor()
            if drop_items:
                self.delete_items(drop_items)
            for chunk in chunks(drop_caps, 500):
                marks = ",".join("?" * len(chunk))
                cur.execute(f"DELETE FROM item_tag WHERE caption_id IN ({marks})", chunk)
                cur.execute(f"DELETE FROM caption WHERE id IN ({marks})", chunk)
            src = ",".join(f"'{s}'" for s in EMBEDDED_SOURCES)
            for chunk in chunks(drop_embedded, 500):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    f"DELETE FROM item_tag WHERE caption_id IN (SELECT id FROM caption WHERE item_id IN ({marks}) "
                    f"AND file_path IS NULL AND source IN ({src}))",
                    chunk,
                )
                cur.execute(
                    f"DELETE FROM caption WHERE item_id IN ({marks}) AND file_path IS NULL AND source IN ({src})", chunk
                )
            ext = ",".join(f"'{s}'" for s in EXTERNAL_SOURCES)
            for chunk in chunks(drop_external, 500):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    f"DELETE FROM item_tag WHERE caption_id IN (SELECT id FROM caption WHERE item_id IN ({marks}) "
                    f"AND file_path IS NULL AND source IN ({ext}))",
                    chunk,
                )
                cur.execute(
                    f"DELETE FROM caption WHERE item_id IN ({marks}) AND file_path IS NULL AND source IN ({ext})", chunk
                )
            for item_id, image, item_type, primary_rel, image_suffix, related, meta, problems in updates:
                if image is not None:
                    cur.execute(
                        "UPDATE item SET item_type=?, image_path=?, image_suffix=?, related_images=?, width=?, height=?, "
                        "file_size=?, mtime_ns=?, sha256=?, exif_data=?, problems=?, created_at=?, indexed_at=?, updated_at=? "
                        "WHERE id=?",
                        (
                            item_type,
                            primary_rel,
                            image_suffix,
                            related,
                            image.width,
                            image.height,
                            image.size,
                            image.mtime_ns,
                            image.sha256,
                            dumps(meta.get("raw") if meta else None),
                            dumps(problems or None),
                            image.mtime_ns / 1e9,
                            now,
                            now,
                            item_id,
                        ),
                    )
                else:
                    cur.execute(
                        "UPDATE item SET item_type=?, related_images=?, problems=?, indexed_at=?, updated_at=? WHERE id=?",
                        (item_type, related, dumps(problems or None), now, now, item_id),
                    )
            if caption_updates:
                cur.executemany("DELETE FROM item_tag WHERE caption_id = ?", [(u[-1],) for u in caption_updates])
                cur.executemany(
                    "UPDATE caption SET type=?, subtype=?, content=?, source='txt_file', source_field=NULL, file_path=?, "
                    "file_size=?, file_mtime_ns=?, file_sha256=?, encoding=?, encoding_flagged=?, updated_at=? WHERE id=?",
                    caption_updates,
                )
            if new_items:
                cur.executemany(f"INSERT INTO item ({_ITEM_COLS}) VALUES ({','.join('?' * 21)})", new_items)
            if captions:
                cur.executemany(f"INSERT INTO caption ({_CAPTION_COLS}) VALUES ({','.join('?' * 16)})", captions)
            if tag_sets:
                t0 = time.perf_counter()
                cur.executemany(_TAG_INSERT, tag_sets)
                self.tag_seconds += time.perf_counter() - t0
            for chunk in chunks(recount, 500):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    "UPDATE item SET tag_count = COALESCE((SELECT COUNT(*) FROM item_tag t "
                    f"WHERE t.item_id = item.id AND t.subtype = 'main'), 0) WHERE id IN ({marks})",
                    chunk,
                )

    def delete_items(self, ids: list[int]) -> None:
        group_index.invalidate_dataset(self.db, self.dataset.id)
        tag_bitmaps.forget_all(self.db)
        cur = self.db.cursor()
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            cur.execute(f"DELETE FROM item_tag WHERE item_id IN ({marks})", chunk)
            cur.execute(f"DELETE FROM caption WHERE item_id IN ({marks})", chunk)
            cur.execute(f"DELETE FROM item WHERE id IN ({marks})", chunk)
