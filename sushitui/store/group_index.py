"""Which items of a dataset have a tag of a group: a stored answer for ``group:`` counts.

A dense group (500 frequent tags) reaches ~100k items through ~600k tag rows. Counting
the distinct items from ``item_tag`` builds a temporary B-tree over all those rows:
200-250 ms per count, every time the browser shows a total. ``group_item`` keeps the
answer, one row per (dataset, group, item), sorted by item: the count is a range scan
(a few ms) and the ids merge into INTERSECT/EXCEPT counts as they are.

An entry (``group_item_state``) is built on the first count of its (dataset, group) and
kept true by the writers, in their own transactions:

- caption edits (``captions.set_tags_many``) pass the (item, tag) pairs they added and
  removed (``apply_tag_changes``): the cost follows the pairs that fall in a stored
  group, so a bulk add of a tag in no stored group adds nothing measurable; deleting a
  caption recomputes its item (``refresh_items``);
- the scanner, which rewrites many items at once, marks the dataset's entries stale
  (``invalidate_dataset``); the next count rebuilds them;
- a change of a group's members marks the group's entries stale, and removing a
  dataset or a group removes its entries and rows: triggers, so every writer of those
  small tables is covered.

The tables and triggers are created by migration 2 (``sushitui.store.migrations``),
written out there as they were released.

Per-row triggers on ``item_tag`` itself were measured and rejected: +50 % on the
scanner's tag-row inserts even when nothing is stored, so its writers call this module.
Only counts over all of an item's tag captions (no ``subtype``) use it.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Iterable

from peewee import IntegrityError, OperationalError

MAX_ENTRIES = 16  # stored (dataset, group) answers; building one more drops the oldest
LOCK_WAIT_MS = 200  # a count never waits longer than this for the write lock to build
IN_USE_S = 60.0  # an answer this recent is never evicted (a count may be about to read it)

ITEM_IDS_SQL = "SELECT item_id FROM group_item WHERE dataset_id = ? AND group_id = ?"


def _db():
    from sushitui.store import current_database

    return current_database()


def still_valid(entries: Iterable[tuple[int, int]]) -> bool:
    """True when every (dataset_id, group_id) answer is still valid; call in the same
    read transaction as the count that uses them, so that both see one snapshot."""
    db = _db()
    return all(_is_valid(db, d, g) for d, g in entries)


def item_ids_arm(dataset_id: int, group_id: int) -> tuple[str, list] | None:
    """SELECT of the dataset's items in the group, sorted by id, building the stored
    answer first when needed; None when it cannot be built now (another writer holds
    the lock, or the caller is inside a transaction): count from ``item_tag`` then."""
    db = _db()
    if not _is_valid(db, dataset_id, group_id) and not _build(db, dataset_id, group_id):
        return None
    return ITEM_IDS_SQL, [dataset_id, group_id]


def _is_valid(db, dataset_id: int, group_id: int) -> bool:
    row = db.execute_sql(
        "SELECT valid FROM group_item_state WHERE dataset_id = ? AND group_id = ?", (dataset_id, group_id)
    ).fetchone()
    return bool(row and row[0])


def _build(db, dataset_id: int, group_id: int) -> bool:
    if db.in_transaction():
        return False  # a read transaction cannot safely take the write lock midway
    conn = db.connection()
    (wait_ms,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_MS}")
    try:
        with db.atomic("IMMEDIATE"):
            if _is_valid(db, dataset_id, group_id):
                return True  # another process built it while this one waited
            db.execute_sql("DELETE FROM group_item WHERE dataset_id = ? AND group_id = ?", (dataset_id, group_id))
            # the IN list is a sorted temporary index: walking it hands the ids over in order
            # (appends to the primary key) and checks each item's dataset on the way;
            # measured 1.3x faster than GROUP BY item_id over the tag rows
            db.execute_sql(
                "INSERT INTO group_item (dataset_id, group_id, item_id) SELECT ?, ?, id FROM item "
                "WHERE id IN (SELECT item_id FROM item_tag WHERE norm IN "
                "(SELECT norm FROM tag_group_member WHERE group_id = ?)) AND dataset_id = ?",
                (dataset_id, group_id, group_id, dataset_id),
            )
            db.execute_sql(
                "INSERT INTO group_item_state (dataset_id, group_id, valid, built_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (dataset_id, group_id) DO UPDATE SET valid = 1, built_at = excluded.built_at",
                (dataset_id, group_id, time.time()),
            )
            _evict(db, keep=(dataset_id, group_id))
        return True
    except (OperationalError, IntegrityError, sqlite3.OperationalError, sqlite3.IntegrityError):
        # locked, read-only, or the dataset / group was removed meanwhile (foreign key):
        # the caller counts without the stored answer
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")


def _evict(db, keep: tuple[int, int]) -> None:
    """Drop the oldest answers beyond MAX_ENTRIES, never one built in the last minute:
    a count with several group: terms (here or in another process) may be about to
    read it."""
    rows = db.execute_sql(
        "SELECT dataset_id, group_id, built_at FROM group_item_state ORDER BY valid DESC, built_at DESC"
    ).fetchall()
    recent = time.time() - IN_USE_S
    for ds, gid, built_at in rows[MAX_ENTRIES:]:
        if (ds, gid) != keep and built_at < recent:
            db.execute_sql("DELETE FROM group_item_state WHERE dataset_id = ? AND group_id = ?", (ds, gid))


def invalidate_dataset(db, dataset_id: int) -> None:
    """Mark the dataset's stored answers stale (the scanner rewrote tags); call inside
    the writer's transaction."""
    db.execute_sql("UPDATE group_item_state SET valid = 0 WHERE dataset_id = ? AND valid <> 0", (dataset_id,))


def _stored_groups(db) -> dict[int, list[int]]:
    """dataset_id -> its groups with a valid stored answer."""
    out: dict[int, list[int]] = {}
    for dataset_id, group_id in db.execute_sql("SELECT dataset_id, group_id FROM group_item_state WHERE valid <> 0"):
        out.setdefault(dataset_id, []).append(group_id)
    return out


def _datasets_of(db, item_ids: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for start in range(0, len(item_ids), 500):
        chunk = item_ids[start : start + 500]
        out.update(db.execute_sql(f"SELECT id, dataset_id FROM item WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    return out


def apply_tag_changes(db, added: Iterable[tuple[int, str]], removed: Iterable[tuple[int, str]]) -> None:
    """Bring the stored rows in step with tag rows just written: ``added`` / ``removed``
    are (item_id, tag key) pairs. An added tag puts its item into the stored groups
    holding it; a removed one takes it out unless another of its tags keeps it in. The
    cost follows the pairs that fall in stored groups: adding a tag that is in none is
    one lookup per item. Call inside the writer's transaction."""
    stored = _stored_groups(db)
    added, removed = list(added), list(removed)
    if not stored or not (added or removed):
        return
    dataset_of = _datasets_of(db, sorted({i for i, _n in added} | {i for i, _n in removed}))
    for dataset_id, gids in stored.items():
        mine_added = [(dataset_id, i, n, *gids) for i, n in added if dataset_of.get(i) == dataset_id]
        mine_removed = [(dataset_id, i, n, *gids) for i, n in removed if dataset_of.get(i) == dataset_id]
        if mine_added:
            db.cursor().executemany(
                "INSERT OR IGNORE INTO group_item (dataset_id, group_id, item_id) SELECT ?1, group_id, ?2 "
                f"FROM tag_group_member WHERE norm = ?3 AND group_id IN ({','.join(f'?{k + 4}' for k in range(len(gids)))})",
                mine_added,
            )
        if mine_removed:
            db.cursor().executemany(
                "DELETE FROM group_item WHERE dataset_id = ?1 AND item_id = ?2 AND group_id IN (SELECT group_id FROM "
                f"tag_group_member WHERE norm = ?3 AND group_id IN ({','.join(f'?{k + 4}' for k in range(len(gids)))})) "
                "AND NOT EXISTS (SELECT 1 FROM item_tag t JOIN tag_group_member m ON m.norm = t.norm "
                "AND m.group_id = group_item.group_id WHERE t.item_id = ?2)",
                mine_removed,
            )


def refresh_items(db, item_ids: Iterable[int]) -> None:
    """Recompute the stored rows of these items from their tag rows (a caption was
    deleted); call inside the writer's transaction, after the tag rows are written."""
    stored = _stored_groups(db)
    ids = sorted(set(item_ids))
    if not stored or not ids:
        return
    for item_id, dataset_id in _datasets_of(db, ids).items():
        gids = stored.get(dataset_id)
        if not gids:
            continue
        gmarks = ",".join("?" * len(gids))
        db.execute_sql(
            f"DELETE FROM group_item WHERE dataset_id = ? AND group_id IN ({gmarks}) AND item_id = ?",
            [dataset_id, *gids, item_id],
        )
        db.execute_sql(
            "INSERT INTO group_item (dataset_id, group_id, item_id) SELECT DISTINCT ?, m.group_id, t.item_id "
            f"FROM item_tag t JOIN tag_group_member m ON m.norm = t.norm AND m.group_id IN ({gmarks}) WHERE t.item_id = ?",
            [dataset_id, *gids, item_id],
        )
