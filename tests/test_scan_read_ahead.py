"""Read-ahead in the scan's workers (issue 24: the first scan of 1M files that are not in
the page cache). Each task list reads its first items plainly; when they waited for the
disk, the files of the next items are asked for ahead (``posix_fadvise(WILLNEED)``) so
the disk serves many at once. What a user gets must not change: the same results,
errors included, and a bounded window (memory)."""

from __future__ import annotations

import os
import time

import pytest
from PIL import Image

from sushitui.dataset import scan_worker

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise (Linux, BSD)")

N_ITEMS = 120


@pytest.fixture
def folder(tmp_path):
    for i in range(N_ITEMS):
        Image.new("RGB", (8 + i % 5, 8), (i, 0, 0)).save(tmp_path / f"img_{i:03d}.png")
        if i != 70:  # one item's caption is missing: the task still names it
            (tmp_path / f"img_{i:03d}.txt").write_text(f"1girl, tag_{i}, solo\n", encoding="utf-8")
    (tmp_path / "img_090.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # a bad image
    return tmp_path


def _tasks(folder) -> list[scan_worker.Task]:
    return [
        (i, str(folder), f"img_{i:03d}.png", [("", f"img_{i:03d}.txt")], False, None, False) for i in range(N_ITEMS)
    ]


class _Spy:
    """Wraps the real read-ahead and image probe: which files were asked for, and how far
    ahead of the item being read."""

    def __init__(self, monkeypatch, disk_wait_s: float = 0.0):
        self.asked: list[str] = []
        self.max_ahead = 0
        self.reading = -1
        real_ahead, real_probe = scan_worker._read_ahead, scan_worker.probe_image

        def read_ahead(path):
            self.asked.append(os.path.basename(path))
            index = int(os.path.basename(path)[4:7])
            # asked for before the next item is read: count from that one
            self.max_ahead = max(self.max_ahead, index - (self.reading + 1))
            real_ahead(path)

        def probe(path, ext, read_meta=False):
            self.reading = int(os.path.basename(path)[4:7])
            if disk_wait_s and self.reading < scan_worker.PROBE_ITEMS:
                time.sleep(disk_wait_s)  # off the CPU, as a read from a slow disk
            return real_probe(path, ext, read_meta)

        monkeypatch.setattr(scan_worker, "_read_ahead", read_ahead)
        monkeypatch.setattr(scan_worker, "probe_image", probe)


def _plain_results(monkeypatch, folder):
    monkeypatch.setattr(scan_worker, "_CAN_READ_AHEAD", False)
    results = scan_worker.run_tasks(_tasks(folder))
    monkeypatch.setattr(scan_worker, "_CAN_READ_AHEAD", True)
    return results


def test_items_that_waited_for_the_disk_turn_read_ahead_on_and_read_the_same(monkeypatch, folder):
    plain = _plain_results(monkeypatch, folder)
    spy = _Spy(monkeypatch, disk_wait_s=0.002)
    results = scan_worker.run_tasks(_tasks(folder))
    assert results == plain  # hashes, sizes, captions and both errors alike
    assert [r[1].error is not None for r in results].count(True) == 1  # the broken image
    assert any(c.error for r in results for c in r[2])  # the missing caption, still reported
    # every file after the probed items was asked for once, the missing caption too
    expected = [f"img_{i:03d}{ext}" for i in range(scan_worker.PROBE_ITEMS + 1, N_ITEMS) for ext in (".png", ".txt")]
    assert sorted(spy.asked) == sorted(expected)
    assert spy.max_ahead <= scan_worker.READ_AHEAD_ITEMS


def test_the_read_ahead_window_stays_bounded(monkeypatch, folder):
    monkeypatch.setattr(scan_worker, "READ_AHEAD_ITEMS", 8)
    spy = _Spy(monkeypatch, disk_wait_s=0.002)
    scan_worker.run_tasks(_tasks(folder))
    assert spy.asked, "read-ahead never turned on"
    assert spy.max_ahead == 8  # asked for up to 8 items ahead of the one being read, never more


def test_files_in_the_page_cache_are_not_asked_for_ahead(monkeypatch, folder):
    scan_worker.run_tasks(_tasks(folder))  # now surely cached
    asked = []
    for _run in range(3):
        spy = _Spy(monkeypatch)
        scan_worker.run_tasks(_tasks(folder))
        asked.append(len(spy.asked))
        monkeypatch.undo()
    # ~20 us an item saved where nothing waits for the disk. The probe is timed, and on a
    # virtual machine whose host takes the CPU away a run can look like it waited: one
    # of three runs may ask; two never should
    assert sorted(asked)[1] == 0, asked
