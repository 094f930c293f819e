"""Training benchmark (issue 9): recording usage, sampling an epoch, run statistics.

    python tests/benchmarks/bench_training.py [--items 10000] [--epochs 100] [--n 100000]

- record: ITEMS x EPOCHS usage events through ``Run.record`` in batches of 32 (the
  trainer's wall time: record calls plus every flush and the final one) versus raw
  ``sqlite3.executemany`` of the same events as (run, item, epoch, step) rows.
- sample: one epoch of N items per sampler with ``Run.sample_epoch`` versus a bare
  ``numpy`` permutation of N.
- stats: ``run_stats`` over N items versus a raw sqlite3 fetch of the same counts.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for training_support

import numpy as np
from training_support import make_dataset, usage_invariants

from sushitui.store import open_database
from sushitui.training import create_run, open_run
from sushitui.training.stats import run_stats

BATCH = 32


class Clock:
    """Wall and CPU seconds of a block: on a shared 2-core machine the CPU time shows the
    cost when other processes steal the cores."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def best_of(fn, repeat=3) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        with Clock() as c:
            fn()
        runs.append((c.wall, c.cpu))
    return min(runs)


def bench_record(tmp: Path, n_items: int, epochs: int) -> list[tuple]:
    db = open_database(tmp / "record.db")
    make_dataset(tmp / "rec", n_items, name="rec", files=False)
    create_run("rec", "rec")
    run = open_run("rec")
    ids = np.array([it.id for it in run.items()], dtype=np.int64)
    rng = np.random.default_rng(0)
    batches = []  # precomputed so that only recording is timed
    for e in range(1, epochs + 1):
        order = ids[rng.permutation(ids.size)].tolist()
        batches.extend((order[s : s + BATCH], e) for s in range(0, len(order), BATCH))
    with Clock() as ours:
        for step, (batch, epoch) in enumerate(batches):
            run.record(batch, epoch, step)
        run.close()
    events = n_items * epochs
    assert usage_invariants(db) == (events,) * 3
    db.close()

    raw_path = tmp / "raw.db"
    con = sqlite3.connect(raw_path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=normal")
    con.execute("CREATE TABLE usage_event (run_id INTEGER, item_id INTEGER, epoch INTEGER, step INTEGER)")
    with Clock() as raw:
        with con:
            con.executemany(
                "INSERT INTO usage_event VALUES (1, ?, ?, ?)",
                ((i, epoch, step) for step, (batch, epoch) in enumerate(batches) for i in batch),
            )
    con.close()
    return [
        (
            f"record {events:,} events (Run.record, batches of {BATCH})",
            (ours.wall, ours.cpu),
            f"{events / ours.wall:,.0f} ev/s; target <= 10 s",
        ),
        ("  raw sqlite3 executemany of the same event rows", (raw.wall, raw.cpu), f"{events / raw.wall:,.0f} ev/s"),
        ("  ratio ours / raw", (ours.wall / raw.wall, ours.cpu / raw.cpu), ""),
    ]


def bench_sample_and_stats(tmp: Path, n: int) -> list[tuple]:
    db = open_database(tmp / "sample.db")
    make_dataset(tmp / "big", n, name="big", files=False)
    create_run("hist", "big")
    with open_run("hist") as run:  # a skewed history so the weighted samplers have work
        order = run.sample_epoch(1, sampler="random", seed=0)
        rng = np.random.default_rng(1)
        heavy = [order[int(p)] for p in rng.integers(0, n // 10, size=n)]
        for s in range(0, n, 1000):
            run.record(order[s : s + 1000] + heavy[s : s + 1000], 1, s // 1000)
    create_run("next", "big", parent="hist")
    rows = []
    run = open_run("next")
    with Clock() as c:
        run.items()
    rows.append((f"load {n:,} items + captions (once per run)", (c.wall, c.cpu), ""))
    for sampler in ("random", "min-usage", "stratified", "variance"):
        # first epoch of a trainer: history query + planning + building the records
        def cold():
            run._planners.clear()
            run._history.clear()
            run.sample_epoch(1, sampler=sampler, seed=3)

        rows.append((f"sample epoch 1 of {n:,} (incl. history): {sampler}", best_of(cold), "target: <= 0.5 s"))
        counter = iter(range(2, 100))
        rows.append(
            (
                f"  each later epoch: {sampler}",
                best_of(lambda: run.sample_epoch(next(counter), sampler=sampler, seed=3)),
                "",
            )
        )
    rng = np.random.default_rng(0)
    rows.append((f"  floor: numpy permutation of {n:,}", best_of(lambda: rng.permutation(n)), ""))
    run.close()

    st = run_stats("hist")
    assert st.items == n
    rows.append((f"run stats over {n:,} items", best_of(lambda: run_stats("hist")), "target: <= 0.3 s"))
    path = str(tmp / "sample.db")

    def raw_fetch():
        con = sqlite3.connect(path)
        rows_ = con.execute(
            "SELECT i.id, COALESCE(u.times_seen, 0) FROM item i LEFT JOIN run_item_usage u "
            "ON u.run_id = 1 AND u.item_id = i.id WHERE i.dataset_id = 1 ORDER BY i.id"
        ).fetchall()
        np.array(rows_).std()
        con.close()

    rows.append(("  raw sqlite3 fetch of the per-item counts + numpy std", best_of(raw_fetch), ""))
    db.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--n", type=int, default=100_000, help="items for sampling and stats")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = bench_record(tmp, args.items, args.epochs) + bench_sample_and_stats(tmp, args.n)
    print(f"{'benchmark':<58} {'wall s':>8} {'cpu s':>8}  note")
    for name, (wall, cpu), note in rows:
        print(f"{name:<58} {wall:>8.3f} {cpu:>8.3f}  {note}")


if __name__ == "__main__":
    main()
