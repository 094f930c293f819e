"""Stored tag bitmaps (issue 24, ``sushitui.store.tag_bitmaps``): pages and counts of exact
tags read which items have each tag from one bit per item. A stored answer that a writer
forgot to drop would hide or invent matches, so every writer of tag rows is exercised
here, and after each the pages and counts must equal the answer of the plain SQL IN
lists (``matching_item_ids``) and of the caption files themselves.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from cli_support import run_cli

from sushitui.dataset.synthetic import png_bytes

QUERIES = [
    "long hair, short hair",  # never together at first
    "1girl, long hair, -short hair",
    "smile | grin, -1girl",
    "1girl, solo, long hair, -smile",
    "solo",
    "*hair, -solo",  # a wildcard's bits are built from its rows each time (counts)
    "1girl, *hair | grin",
]


@pytest.fixture
def bitmaps_everywhere(monkeypatch):
    """Tiny datasets take the paths a 1M-item one takes: every tag is frequent, and every
    tag's bitmap is stored."""
    import sushitui.store.tag_bitmaps as tb
    import sushitui.tags.query as q

    monkeypatch.setattr(q, "FREQUENT_ROWS", 1)
    monkeypatch.setattr(q, "TAG_BITMAPS", True)
    monkeypatch.setattr(tb, "STORE_MIN_ITEMS", 1)


def _write_dataset(root, captions: dict[str, str]) -> None:
    root.mkdir(exist_ok=True)
    for i, (base, text) in enumerate(sorted(captions.items())):
        (root / f"{base}.png").write_bytes(png_bytes(8, 8, i + 1))
        (root / f"{base}.txt").write_text(text, encoding="utf-8")


def _from_files(root, text: str) -> list[str]:
    """The item names whose caption file matches, by the Python rules."""
    from sushitui.tags.normalize import match_key
    from sushitui.tags.query import ItemFacts, evaluate, parse

    node = parse(text)
    out = []
    for txt in sorted(root.glob("*.txt")):
        tags = {match_key(t) for t in txt.read_text(encoding="utf-8").split(",") if t.strip()}
        if evaluate(node, ItemFacts(tags, None, None, len(tags))):
            out.append(txt.stem)
    return out


def _check_all(db_file, name: str, root) -> None:
    """Pages, counts and the CLI equal the caption files, and the SQL IN lists."""
    from sushitui.dataset.items import count_items, select_items
    from sushitui.dataset.registry import get_dataset
    from sushitui.store import open_database
    from sushitui.tags.query import matching_item_ids

    db = open_database(db_file)
    try:
        ds = get_dataset(name)
        for text in QUERIES:
            want = _from_files(root, text)
            page = [r.base_name for r in select_items(ds.id, text).limit(50)]
            assert page == want, text
            assert count_items(ds.id, text) == len(want), text
            ids = matching_item_ids(ds.id, text)  # the plain IN lists, no bitmap
            assert sorted(r.id for r in select_items(ds.id, text).limit(50)) == ids, text
    finally:
        db.close()


def _stored(db_file) -> set[str]:
    con = sqlite3.connect(db_file)
    try:
        return {r[0] for r in con.execute("SELECT norm FROM tag_bitmap")}
    finally:
        con.close()


def test_every_writer_of_tags_keeps_bitmap_answers_true(tmp_path, bitmaps_everywhere):
    root = tmp_path / "set"
    _write_dataset(
        root,
        {
            "a": "1girl, long hair, smile",
            "b": "1girl, short hair",
            "c": "1girl, solo, long hair",
            "d": "cat, grin",
            "e": "1girl, solo, long hair, smile",
            "f": "solo, short hair, grin",
        },
    )
    db = str(tmp_path / "cat.db")
    assert run_cli("dataset", "add", "set", str(root), db=db).returncode == 0
    _check_all(db, "set", root)
    assert {"long hair", "short hair", "1girl", "solo"} <= _stored(db)  # the answers were kept

    # a bulk add through the one write path: "long hair, short hair" now matches b
    r = run_cli("tag", "add", "set", "long hair", "--query", "short hair, 1girl", db=db)
    assert r.returncode == 0, r.stderr
    assert "long hair" not in _stored(db)  # forgotten by the edit, rebuilt on the next page
    _check_all(db, "set", root)
    assert _from_files(root, "long hair, short hair") == ["b"]

    # a bulk remove: the negated term's answer changes
    r = run_cli("tag", "remove", "set", "smile", "--query", "solo", db=db)
    assert r.returncode == 0, r.stderr
    _check_all(db, "set", root)

    # another program edits a caption file; the reindex changes tag rows
    (root / "d.txt").write_text("1girl, long hair, short hair", encoding="utf-8")
    time.sleep(0.01)
    assert run_cli("dataset", "reindex", "set", db=db).returncode == 0
    _check_all(db, "set", root)
    assert _from_files(root, "long hair, short hair") == ["b", "d"]

    # a caption deleted from item detail
    from sushitui.dataset.item_view import delete_caption
    from sushitui.store import Caption, Item, open_database

    con = open_database(db)
    try:
        item = Item.get(Item.base_name == "e")
        delete_caption(Caption.get((Caption.item == item.id) & (Caption.type == "tags")).id)
    finally:
        con.close()
    assert not (root / "e.txt").exists()
    _check_all(db, "set", root)

    # the dataset removed and another one added: new items may take the old ids
    assert run_cli("dataset", "remove", "set", "--yes", db=db).returncode == 0
    other = tmp_path / "other"
    _write_dataset(other, {"x": "long hair, short hair", "y": "1girl, grin", "z": "solo, smile"})
    assert run_cli("dataset", "add", "other", str(other), db=db).returncode == 0
    _check_all(db, "other", other)


def test_a_second_dataset_does_not_leak_into_counts_or_pages(tmp_path, bitmaps_everywhere):
    """Bitmaps hold the items of every dataset; pages and counts are still per dataset."""
    one, two = tmp_path / "one", tmp_path / "two"
    _write_dataset(one, {"a": "long hair, short hair", "b": "1girl, solo", "c": "1girl, long hair"})
    _write_dataset(two, {"p": "long hair, short hair", "q": "long hair, short hair, solo", "r": "solo"})
    db = str(tmp_path / "cat.db")
    for name, root in (("one", one), ("two", two)):
        assert run_cli("dataset", "add", name, str(root), db=db).returncode == 0
    _check_all(db, "one", one)
    _check_all(db, "two", two)
    r = run_cli("items", "two", "--query", "long hair, short hair", "--json", db=db)
    assert r.returncode == 0 and r.stdout.count("\n") == 2, r.stdout


def test_a_page_while_another_process_writes_answers_and_stores_nothing(tmp_path, bitmaps_everywhere):
    """A scan holding the write lock must not make a page wait or fail: the page builds
    its answer for itself (one snapshot) and stores it later, when the lock is free."""
    root = tmp_path / "set"
    _write_dataset(root, {"a": "long hair, short hair", "b": "1girl, long hair", "c": "short hair"})
    db = str(tmp_path / "cat.db")
    assert run_cli("dataset", "add", "set", str(root), db=db).returncode == 0
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        _check_all(db, "set", root)
        assert time.monotonic() - started < 10
        assert _stored(db) == set()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    _check_all(db, "set", root)
    assert {"long hair", "short hair"} <= _stored(db)


def test_rare_tags_are_read_each_time_and_not_stored(tmp_path, monkeypatch):
    """Only tags on many items are worth a stored bitmap (one bit per item id); a rare
    tag's rows are a short read, and the count stays exact."""
    import sushitui.store.tag_bitmaps as tb

    monkeypatch.setattr(tb, "STORE_MIN_ITEMS", 4)
    root = tmp_path / "set"
    _write_dataset(root, {f"i{k}": ("1girl, solo" if k % 2 else "1girl") for k in range(6)})
    db = str(tmp_path / "cat.db")
    assert run_cli("dataset", "add", "set", str(root), db=db).returncode == 0
    from sushitui.dataset.items import count_items
    from sushitui.dataset.registry import get_dataset
    from sushitui.store import open_database

    def count(text: str) -> int:
        con = open_database(db)
        try:
            return count_items(get_dataset("set").id, text)  # the browser's total
        finally:
            con.close()

    assert count("1girl, -solo") == 3
    assert _stored(db) == {"1girl"}  # on 6 items; solo, on 3, is read each time
    r = run_cli("tag", "add", "set", "hat", "--query=-solo", db=db)
    assert r.returncode == 0, r.stderr
    assert _stored(db) == {"1girl"}  # the edit wrote hat rows only: 1girl's answer stays
    assert count("hat, 1girl") == 3 and count("solo | hat") == 6 and count("hat, solo") == 0
