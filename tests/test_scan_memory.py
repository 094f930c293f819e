"""The memory of a first scan is a constant plus one write batch and one folder, not a
multiple of the dataset's size (issue 24: 1M items must scan in ≤ 1 GB).

What a user would notice: a scan of a big folder that swaps or is killed. A scan that
holds something per item (every planned job, every tag row for the deferred index, the
workers' results queued faster than they are written) shows here as Python heap that
grows with the number of items. The Python heap is measured with tracemalloc, which
counts allocations, not time: the figures do not move with the machine's load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# The planned jobs of a whole scan cost ~1.2 KB per item before they were planned one
# folder at a time, and the walk's file lists ~180 bytes a file before they were packed;
# what is left per item (~150 bytes measured here) is mostly the walk's packed file lists
# (~35 bytes a file), held until each folder is planned. A whole scan's results held
# until the end measured ~4,000 bytes per item here.
MAX_BYTES_PER_ITEM = 250


MEASURE = r"""
import functools, json, sys, tracemalloc
from sushitui.dataset import registry, scanner
from sushitui.dataset.registry import DatasetSettings, add_dataset
from sushitui.dataset.synthetic import generate_dataset
from sushitui.store import open_database

tmp, small_n, big_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
open_database(tmp + "/sushitui.db")
# Small batches so that what is in flight (one write batch, the folder being planned) is
# already at its full size in the smaller scan; in this process (no workers), so
# tracemalloc sees the file work too and nothing depends on timing. The index is
# deferred in both scans.
scanner.BATCH, scanner.WRITE_BATCH, scanner.DEFER_INDEX_MIN_ITEMS = 100, 500, 1000
registry.scan_dataset = functools.partial(scanner.scan_dataset, workers=1)


def peak(name, n):
    root = tmp + "/" + name
    generate_dataset(root, n, seed=3, tags_per_item=(20, 20), items_per_dir=250)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        _ds, report = add_dataset(DatasetSettings(name, root))
        top = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.items_added == n and not report.cancelled, report
    return top - before


peak("warm-up", small_n)  # what is loaded or cached once per process
print(json.dumps({"small": peak("small", small_n), "big": peak("big", big_n)}))
"""


@pytest.mark.slow
def test_first_scan_heap_does_not_grow_with_the_number_of_items(tmp_path):
    # A process of its own: what earlier tests left in this one (log levels that keep
    # records, caches) is not the scan's memory.
    small_n, big_n = 2000, 8000
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path), str(small_n), str(big_n)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    small, big = figures["small"], figures["big"]
    per_item = (big - small) / (big_n - small_n)
    assert per_item < MAX_BYTES_PER_ITEM, (
        f"peak Python heap of a first scan: {small / 2**20:.1f} MB at {small_n:,} items, "
        f"{big / 2**20:.1f} MB at {big_n:,}: {per_item:.0f} bytes per item (at most {MAX_BYTES_PER_ITEM})"
    )
