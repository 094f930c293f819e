"""Issue 14 item 10: the database failing under a command (disk full, locked) is a
message that says what happened and what to do, not a peewee traceback; an incremental
reindex after rel_dir was edited in the database does not fail on UNIQUE(group_key)."""

from __future__ import annotations

import sqlite3

import pytest
from PIL import Image

from sushitui.cli import main
from sushitui.store import db as store_db

LONG_TAG = "a_tag_long_enough_to_need_new_database_pages_" * 20


@pytest.fixture
def cli(capsys, db_path):
    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--db", str(db_path), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def make_folder(root, n: int):
    root.mkdir()
    img = Image.new("RGB", (8, 8))
    for i in range(n):
        img.save(root / f"img{i:03d}.png")
        (root / f"img{i:03d}.txt").write_text("solo, smile", encoding="utf-8")
    return root


def database_full_from_now(monkeypatch, db_path) -> None:
    """SQLITE_FULL as soon as the database file needs a page more than it has now: a
    full disk, on every connection the command opens."""
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    monkeypatch.setitem(store_db.PRAGMAS, "max_page_count", pages)


def test_dataset_add_on_a_full_disk_says_so_and_how_to_finish(cli, tmp_path, db_path, monkeypatch):
    assert cli("dataset", "list")[0] == 0  # the database exists, with its schema
    folder = make_folder(tmp_path / "pics", 60)
    database_full_from_now(monkeypatch, db_path)
    code, out, err = cli("dataset", "add", "pics", str(folder))
    assert code == 1
    assert "Traceback" not in err and "OperationalError" not in err
    assert err.startswith("sushitui: error: ")
    assert "full" in err and str(db_path) in err and "Free some space" in err
    assert "sushitui dataset reindex pics" in err  # registered: `dataset add` again would find the name taken
    # with space again, the advice works
    monkeypatch.delitem(store_db.PRAGMAS, "max_page_count")
    code, out, err = cli("dataset", "reindex", "pics", "--json")
    assert code == 0, err
    import json

    assert json.loads(out)["dataset"]["total_items"] == 60


def test_tag_add_on_a_full_disk_says_files_are_not_indexed_and_reindex_fixes_it(cli, tmp_path, db_path, monkeypatch):
    folder = make_folder(tmp_path / "pics", 60)
    assert cli("dataset", "add", "pics", str(folder))[0] == 0
    database_full_from_now(monkeypatch, db_path)
    code, out, err = cli("tag", "add", "pics", LONG_TAG)
    assert code == 1
    assert "Traceback" not in err and "OperationalError" not in err
    assert "full" in err
    assert "not yet in the index" in err and "sushitui dataset reindex pics" in err
    # the files were written before the index failed (what the message warns about)
    written = [p for p in folder.glob("*.txt") if LONG_TAG in p.read_text(encoding="utf-8")]
    assert written
    monkeypatch.delitem(store_db.PRAGMAS, "max_page_count")
    assert cli("dataset", "reindex", "pics")[0] == 0
    code, out, _ = cli("items", "pics", "--query", LONG_TAG, "--json")
    assert code == 0 and len(out.splitlines()) == len(written)


def test_a_database_locked_past_the_busy_timeout_is_a_message(cli, tmp_path, db_path, monkeypatch):
    folder = make_folder(tmp_path / "pics", 3)
    assert cli("dataset", "add", "pics", str(folder))[0] == 0
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        code, out, err = cli("tag", "add", "pics", "new_tag")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1
    assert "Traceback" not in err and "locked by another program" in err and str(db_path) in err


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE item SET rel_dir = 'elsewhere' WHERE group_key = 'sub/img000'",  # a folder that is not walked
        "UPDATE item SET rel_dir = 'elsewhere', base_name = 'x' WHERE group_key = 'img000'",  # the root's item
        "UPDATE item SET rel_dir = 'sub' WHERE group_key = 'img001'",  # into another walked folder
    ],
)
def test_incremental_reindex_after_paths_were_edited_in_the_database(cli, tmp_path, db_path, edit):
    root = make_folder(tmp_path / "pics", 3)
    sub = root / "sub"
    sub.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(sub / f"img{i:03d}.png")
        (sub / f"img{i:03d}.txt").write_text("solo", encoding="utf-8")
    assert cli("dataset", "add", "pics", str(root))[0] == 0
    with sqlite3.connect(db_path) as con:
        con.execute(edit)
    code, out, err = cli("dataset", "reindex", "pics", "--json")
    assert code == 0, err
    import json

    report = json.loads(out)
    assert report["dataset"]["total_items"] == 6
    # the items keep their ids (not removed and added again) and their paths agree with their keys again
    assert report["report"]["items_removed"] == 0 and report["report"]["items_added"] == 0
    with sqlite3.connect(db_path) as con:
        rows = con.execute("SELECT group_key, rel_dir, base_name FROM item").fetchall()
    assert all(key == (f"{d}/{b}" if d else b) for key, d, b in rows), rows
