"""An export killed with SIGKILL at any moment never leaves a partial caption file
among finished ones: OUTDIR holds nothing, only the staging folder, or the whole export."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from export_helpers import make_synthetic, tree_state

from sushitui.export import ExportError, ExportOptions, export_dataset
from sushitui.export.writer import STAGING_NAME

pytestmark = pytest.mark.slow  # long stress test: skipped by the quick run, run by CI


def test_sigkill_during_export_leaves_no_partial_files(db, db_path, tmp_path):
    ds, root = make_synthetic(tmp_path, 400, items_per_dir=100)
    before = tree_state(root)
    rng = random.Random(7)
    env = {**os.environ, "SUSHITUI_DB": str(db_path)}
    outcomes = set()
    for attempt in range(4):
        out = tmp_path / f"out{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "sushitui", "export", "syn", str(out), "--trigger", "ohwx"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # kill while it runs: after start-up, somewhere in the middle of writing
        deadline = time.monotonic() + 30
        while not (out / STAGING_NAME).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        entries = sorted(p.name for p in out.iterdir()) if out.exists() else []
        if STAGING_NAME in entries:
            # killed mid-export: nothing was published next to the staging folder
            assert entries == [STAGING_NAME], entries
            outcomes.add("partial")
            # exporting there again says what happened instead of mixing two exports
            with pytest.raises(ExportError, match="interrupted"):
                export_dataset(ds.id, out, ExportOptions())
        elif entries:
            outcomes.add("complete")
            txts = list(out.rglob("*.txt"))
            assert len(txts) == 400
            for t in txts:
                assert t.read_text(encoding="utf-8").startswith("ohwx")
        else:
            outcomes.add("empty")
    assert "partial" in outcomes or "complete" in outcomes
    assert tree_state(root) == before
