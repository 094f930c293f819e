"""The stored answer behind ``group:`` counts (sushitui.store.group_index) stays true
through every way tags change: edits, bulk edits, caption deletion, files changed on
disk and reindexed, vanished files, group membership changes, removed groups and
datasets, another process holding the write lock."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from test_tags_bulk import make_dataset

from sushitui.dataset import bulk_edit
from sushitui.dataset.captions import item_tags, set_tags
from sushitui.dataset.item_view import delete_caption
from sushitui.dataset.registry import reindex, remove_dataset
from sushitui.store import Caption, Item, current_database, group_index
from sushitui.tags import groups
from sushitui.tags.query import count_matches, matching_item_ids

CAPTIONS = {
    "a": "1girl, long hair, smile",
    "b": "1girl, short hair",
    "c": "1boy, grin",
    "d": "solo, long_hair, blue eyes",
    "e": "solo",
}


def setup(tmp_path: Path):
    ds = make_dataset(tmp_path / "ds", CAPTIONS)
    groups.add_group("Hair")
    groups.add_tags("Hair", ["long hair", "short hair"])
    return ds


def stored_entries() -> list[tuple]:
    return current_database().execute_sql("SELECT dataset_id, group_id, valid FROM group_item_state").fetchall()


def stored_rows() -> int:
    return current_database().execute_sql("SELECT COUNT(*) FROM group_item").fetchone()[0]


def check(ds, query: str = "group:Hair") -> int:
    """The count equals the items the general plan finds (which never uses the store)."""
    want = len(matching_item_ids(ds.id, query))
    assert count_matches(ds.id, query) == want, query
    return want


def item(ds, base: str) -> Item:
    return Item.get((Item.dataset == ds.id) & (Item.base_name == base))


def test_count_builds_the_stored_answer_once_and_uses_it(db, tmp_path):
    ds = setup(tmp_path)
    assert stored_entries() == []
    assert check(ds) == 3  # a, b, d
    (entry,) = stored_entries()
    assert entry[0] == ds.id and entry[2] == 1 and stored_rows() == 3
    # counted from the stored rows now: rows removed behind the writers' back show
    current_database().execute_sql("DELETE FROM group_item WHERE item_id = ?", (item(ds, "a").id,))
    assert count_matches(ds.id, "group:Hair") == 2
    # merged with other terms, positive and negative
    current_database().execute_sql("INSERT INTO group_item VALUES (?, ?, ?)", (ds.id, entry[1], item(ds, "a").id))
    for q in ("group:Hair, 1girl", "group:Hair, -1girl", "solo, group:hair", "1girl, -group:Hair"):
        check(ds, q)


def test_edits_keep_the_stored_answer_true(db, tmp_path):
    ds = setup(tmp_path)
    check(ds)
    set_tags(item(ds, "c"), ["1boy", "grin", "short_hair"])  # joins the group
    assert check(ds) == 4
    set_tags(item(ds, "a"), ["1girl", "smile"])  # leaves it
    assert check(ds) == 3
    set_tags(item(ds, "d"), ["solo", "long hair", "short hair"])  # two group tags, still one item
    assert check(ds) == 3
    assert all(valid for _d, _g, valid in stored_entries())  # kept up to date, not thrown away


def test_bulk_edits_keep_the_stored_answer_true(db, tmp_path):
    ds = setup(tmp_path)
    check(ds)
    bulk_edit.bulk_add(ds, "solo", "long hair")
    assert check(ds) == 4  # e joined, d had it
    bulk_edit.bulk_remove(ds, "1girl", "*hair")
    assert check(ds) == 2  # a and b lost theirs
    bulk_edit.bulk_replace(ds, None, "grin", "short hair")
    assert check(ds) == 3
    assert all(valid for _d, _g, valid in stored_entries())


def test_deleting_a_caption_keeps_the_stored_answer_true(db, tmp_path):
    ds = setup(tmp_path)
    check(ds)
    cap = Caption.get((Caption.item == item(ds, "b").id) & (Caption.type == "tags"))
    delete_caption(cap.id)
    assert check(ds) == 2


def test_files_changed_on_disk_and_reindexed(db, tmp_path):
    ds = setup(tmp_path)
    root = tmp_path / "ds"
    check(ds)
    (root / "e.txt").write_text("solo, short hair", encoding="utf-8")
    (root / "a.txt").write_text("1girl, smile", encoding="utf-8")
    (root / "b.png").unlink()
    (root / "b.txt").unlink()
    later = time.time() + 5
    import os

    for name in ("e.txt", "a.txt"):
        os.utime(root / name, (later, later))
    reindex(ds.name)
    assert check(ds) == 2  # d and e
    assert sorted(i.base_name for i in Item.select().where(Item.id.in_(matching_item_ids(ds.id, "group:Hair")))) == [
        "d",
        "e",
    ]


def test_group_membership_changes_are_seen(db, tmp_path):
    ds = setup(tmp_path)
    check(ds)
    groups.add_tags("Hair", ["grin"])
    assert check(ds) == 4
    groups.remove_tags("Hair", ["long hair"])
    assert check(ds) == 2  # b (short hair), c (grin)
    groups.rename_group("Hair", "Hairs")
    assert check(ds, "group:Hairs") == 2


def test_removing_a_group_or_a_dataset_removes_its_rows(db, tmp_path):
    ds = setup(tmp_path)
    other = make_dataset(tmp_path / "other", {"x": "long hair", "y": "short hair, smile"}, name="other")
    groups.add_group("Smiles")
    groups.add_tags("Smiles", ["smile"])
    for d in (ds, other):
        check(d)
        check(d, "group:Smiles")
    assert len(stored_entries()) == 4 and stored_rows() == 3 + 1 + 2 + 1
    groups.remove_group("Smiles")
    assert len(stored_entries()) == 2 and stored_rows() == 3 + 2
    remove_dataset("other")
    assert [e[0] for e in stored_entries()] == [ds.id] and stored_rows() == 3
    assert check(ds) == 3


def test_a_locked_database_falls_back_to_counting_the_tag_rows(db, db_path, tmp_path):
    ds = setup(tmp_path)
    other = sqlite3.connect(db_path, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        t0 = time.monotonic()
        assert check(ds) == 3
        assert time.monotonic() - t0 < 5  # waited a moment, not the 30 s busy timeout
        assert stored_entries() == []
    finally:
        other.rollback()
        other.close()
    assert check(ds) == 3 and len(stored_entries()) == 1
    (wait_ms,) = current_database().execute_sql("PRAGMA busy_timeout").fetchone()
    assert wait_ms == 30000  # the connection's own patience is restored


def test_the_store_keeps_a_bounded_number_of_answers(db, tmp_path, monkeypatch):
    monkeypatch.setattr(group_index, "MAX_ENTRIES", 3)
    monkeypatch.setattr(group_index, "IN_USE_S", 0.0)  # nothing counts as being read right now
    ds = setup(tmp_path)
    for i in range(5):
        groups.add_group(f"G{i}")
        groups.add_tags(f"G{i}", ["solo"])
        assert check(ds, f"group:G{i}") == 2
    assert len(stored_entries()) == 3
    assert check(ds) == 3  # rebuilt after it was dropped
    assert item_tags(item(ds, "a")) == ["1girl", "long hair", "smile"]  # nothing written to files


def test_an_item_stays_in_a_group_while_any_of_its_captions_has_a_member(db, tmp_path):
    ds = setup(tmp_path)
    a = item(ds, "a")
    set_tags(a, ["short hair"], subtype="alt")  # a has long hair in main, short hair in alt
    assert check(ds) == 3
    set_tags(a, ["1girl", "smile"])  # long hair leaves main; alt still holds a member
    assert check(ds) == 3
    set_tags(a, [], subtype="alt")
    assert check(ds) == 2
    set_tags(item(ds, "b"), ["1girl", "long hair"])  # one member replaced by another
    assert check(ds) == 2
    assert sorted(i.base_name for i in Item.select().where(Item.id.in_(matching_item_ids(ds.id, "group:Hair")))) == [
        "b",
        "d",
    ]


def test_a_count_with_more_group_terms_than_the_store_keeps_is_right(db, tmp_path, monkeypatch):
    """Building the later arms must not drop the rows of an earlier arm of the same count."""
    monkeypatch.setattr(group_index, "MAX_ENTRIES", 2)
    ds = setup(tmp_path)
    for i in range(4):
        groups.add_group(f"S{i}")
        groups.add_tags(f"S{i}", ["solo"])
    assert check(ds, ", ".join(f"group:S{i}" for i in range(4))) == 2  # d, e


def test_a_group_count_for_a_dataset_removed_meanwhile_is_zero(db, tmp_path):
    ds = setup(tmp_path)
    remove_dataset(ds.name)  # e.g. by another process while the browser shows it
    assert count_matches(ds.id, "group:Hair") == 0
    assert count_matches(ds.id, "group:Hair, -1girl") == 0
    assert stored_entries() == []
