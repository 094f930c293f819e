"""A big first scan loads tag rows without the (norm, item_id) index and rebuilds it at
the end (issue 3's scan speed). What a user would notice if that went wrong: tag queries
that answer differently, or stay slow for good because the index never came back after a
cancel, an error or a crash."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from sushitui.dataset import scanner
from sushitui.dataset.registry import DatasetSettings, add_dataset
from sushitui.dataset.synthetic import generate_dataset
from sushitui.store import current_database, open_database
from sushitui.store.deferred_index import SETTING_KEY
from sushitui.tags.query import matching_item_ids

INDEX = scanner.TAG_NORM_INDEX


def index_exists(db) -> bool:
    return db.execute_sql("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (INDEX,)).fetchone() is not None


def deferral_record(db):
    return db.execute_sql("SELECT value FROM app_setting WHERE key=?", (SETTING_KEY,)).fetchone()


def tag_plan(db) -> str:
    rows = db.execute_sql("EXPLAIN QUERY PLAN SELECT item_id FROM item_tag WHERE norm = 'x'").fetchall()
    return " ".join(str(r[-1]) for r in rows)


def scan(root, name="ds"):
    phases = []
    ds, report = add_dataset(DatasetSettings(name, str(root)), progress=lambda e: phases.append(e.phase))
    return ds, report, phases


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    generate_dataset(root, 60, seed=3, tags_per_item=(5, 12), vocabulary_size=40)
    return root


def test_big_first_scan_rebuilds_the_index_and_answers_like_a_plain_scan(db, folder, tmp_path, monkeypatch):
    # the reference: the same folder scanned with the index in place all along
    other = open_database(tmp_path / "plain.db")
    ds_plain, _, phases = scan(folder)
    assert "indexing tags" not in phases
    queries = ["1girl", "solo, -long hair", "smile | blush", "*_hair"]
    expected = {q: len(matching_item_ids(ds_plain.id, q)) for q in queries}
    other.close()

    open_database(tmp_path / "sushitui.db")
    monkeypatch.setattr(scanner, "DEFER_INDEX_MIN_ITEMS", 10)
    ds, report, phases = scan(folder)
    assert "indexing tags" in phases  # the load really ran without the index
    assert report.timings["tag_index_s"] >= 0
    db = current_database()
    assert index_exists(db) and deferral_record(db) is None
    assert INDEX in tag_plan(db)
    assert {q: len(matching_item_ids(ds.id, q)) for q in queries} == expected
    assert sum(expected.values()) > 0
    assert db.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_scan_that_fails_midway_still_rebuilds_the_index(db, folder, monkeypatch):
    monkeypatch.setattr(scanner, "DEFER_INDEX_MIN_ITEMS", 10)
    calls = []

    def failing_write(self, batches):
        calls.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scanner.Writer, "write", failing_write)
    with pytest.raises(OSError):
        scan(folder)
    assert calls  # it got as far as writing
    assert index_exists(db) and deferral_record(db) is None


def test_a_cancelled_scan_rebuilds_the_index(db, folder, monkeypatch, cancel_after_write):
    monkeypatch.setattr(scanner, "DEFER_INDEX_MIN_ITEMS", 10)
    token = cancel_after_write(5)
    _, report = add_dataset(DatasetSettings("ds", str(folder)), cancel=token)
    assert report.cancelled and 0 < report.items_added < 60
    assert index_exists(db) and deferral_record(db) is None


def test_scan_next_to_a_bigger_dataset_keeps_the_index(db, folder, tmp_path, monkeypatch):
    """Rebuilding over another dataset's many tag rows would cost more than it saves."""
    scan(folder, "big")
    small = tmp_path / "small"
    generate_dataset(small, 12, seed=4, tags_per_item=(3, 4), vocabulary_size=20)
    monkeypatch.setattr(scanner, "DEFER_INDEX_MIN_ITEMS", 10)
    _, _, phases = scan(small, "small")
    assert "indexing tags" not in phases and index_exists(db)


HOLDER = """
import os, sys, time
from sushitui.store import open_database
from sushitui.store.deferred_index import index_deferred
db = open_database(sys.argv[1])
with index_deferred(db, sys.argv[2]):
    print("dropped", flush=True)
    if sys.argv[3] == "crash":
        os._exit(0)  # dies without leaving the block: no rebuild
    time.sleep(60)
"""


def start_holder(db_path, mode):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path), INDEX, mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "dropped"
    return proc


def test_index_dropped_by_a_crashed_process_is_rebuilt_at_the_next_open(db_path):
    open_database(db_path).close()
    proc = start_holder(db_path, "crash")
    proc.wait(timeout=30)
    raw = __import__("sqlite3").connect(db_path)
    assert raw.execute("SELECT 1 FROM sqlite_master WHERE name=?", (INDEX,)).fetchone() is None
    record = json.loads(raw.execute("SELECT value FROM app_setting WHERE key=?", (SETTING_KEY,)).fetchone()[0])
    assert record[0]["pid"] == proc.pid
    raw.close()

    db = open_database(db_path)  # any sushitui command after the crash
    assert index_exists(db) and deferral_record(db) is None
    db.close()


def test_index_of_a_live_loader_is_left_to_it_until_it_dies(db_path):
    open_database(db_path).close()
    proc = start_holder(db_path, "wait")
    try:
        db = open_database(db_path)
        assert not index_exists(db)  # the loader is alive: its index is its business
        assert deferral_record(db) is not None
        db.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 5
    db = open_database(db_path)
    while not index_exists(db) and time.monotonic() < deadline:  # pid reaped: dead now
        db.close()
        db = open_database(db_path)
    assert index_exists(db) and deferral_record(db) is None
    db.close()
