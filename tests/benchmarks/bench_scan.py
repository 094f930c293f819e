"""Benchmark: first scan, unchanged reindex and tag-row inserts of a synthetic dataset.

    python tests/benchmarks/bench_scan.py [--n 100000] [--tags 30] [--cold] [--keep-db]
    python tests/benchmarks/bench_scan.py --memory 100000,200000 [--tags 20]

Generates (once, cached under /tmp) N small PNGs with T-tag captions, then in the same
run measures against the obvious alternatives:

- floor: ``sha256sum`` over the same files with 2 parallel processes (reading and
  hashing the same bytes, page cache warm for both, or with ``--cold`` emptied of the
  folder before each, so both read from the disk as a first scan of a big folder does);
- first scan: ``add_dataset`` in a fresh process (items/s, ratio to the floor, CPU
  seconds, peak memory of the main process and of a worker, and the peak of the whole
  process tree: the RSS of the scan and its workers summed, sampled every 50 ms);
- reindex of the unchanged dataset (stat only);
- tag rows: the scan's time inside its tag-row inserts vs raw ``sqlite3.executemany``
  of the same rows into the same schema (same pragmas, foreign keys on).

``--memory N1,N2`` runs only the first scan at two sizes and prints the peak memory of
each with the slope in bytes per item, and the extrapolation to 1M items: a scan whose
memory is bounded by a constant (not by N) has a slope near 0 (issue 24).

The machine's load average is printed too: on a shared 2-core box, wall-clock figures
move with what else runs; CPU seconds and same-run ratios are the steadier numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

GEN_VERSION = "v1"  # bump when the generator changes


def dataset_dir(n: int, tags: int) -> Path:
    root = Path(tempfile.gettempdir()) / f"sushitui-bench-scan-{GEN_VERSION}-{n}-{tags}"
    marker = root / ".generated"
    if not marker.exists():
        from sushitui.dataset.synthetic import generate_dataset

        if root.exists():
            shutil.rmtree(root)
        print(f"generating {n:,} items under {root} (cached for later runs)…", flush=True)
        t0 = time.perf_counter()
        g = generate_dataset(root, n, seed=1, tags_per_item=(tags, tags))
        marker.write_text(
            json.dumps({"items": g.n_items, "images": g.n_images, "captions": g.n_captions, "tag_rows": g.n_tag_rows})
        )
        print(f"  done in {time.perf_counter() - t0:.0f}s", flush=True)
    return root


def evict(root: Path) -> None:
    """Drop the folder's files from the page cache (``posix_fadvise(DONTNEED)``: no root
    needed), so that the next reader gets them from the disk."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def floor_sha256sum(root: Path, cold: bool = False) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, files and bytes of sha256sum over images + captions,
    with the page cache warmed first, or (``cold``) emptied of the folder first."""
    files, size = 0, 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith((".png", ".txt")):
                files += 1
                size += os.path.getsize(os.path.join(dirpath, name))
    cmd = (
        f"find {root} -type f \\( -name '*.png' -o -name '*.txt' \\) -print0 "
        "| xargs -0 -P 2 -n 4000 sha256sum > /dev/null"
    )
    if cold:
        evict(root)
    else:
        subprocess.run(cmd, shell=True, check=True)  # warm the page cache
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, files, size


def child(args) -> int:
    """Runs in a fresh process: one scan or reindex, prints JSON figures."""
    from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
    from sushitui.store import open_database

    open_database(args.db)
    c0 = time.process_time()
    t0 = time.perf_counter()
    if args.phase == "scan":
        _ds, report = add_dataset(DatasetSettings("bench", str(args.root)))
    else:
        report = reindex("bench")
    wall = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu_main": time.process_time() - c0,
                "cpu_workers": children.ru_utime + children.ru_stime,
                "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_worker_mb": children.ru_maxrss / 1024,
                "added": report.items_added,
                "unchanged": report.items_unchanged,
                "problems": len(report.problems),
                "timings": report.timings,
            }
        )
    )
    return 0


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc; just ``pid`` elsewhere)."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                for child_pid in fh.read().split():
                    out.extend(_process_tree(int(child_pid)))
    except OSError:
        pass
    return out


def run_child(phase: str, db: Path, root: Path) -> dict:
    """One phase in a fresh process; adds ``rss_tree_mb``: the peak of the summed RSS of
    that process and its workers (pages the forked workers share with it count twice, so
    this errs high)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--phase", phase, "--db", str(db), "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, sum(_rss_mb(pid) for pid in _process_tree(proc.pid)))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{phase} failed:\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    # without /proc: the main process and two workers at their own peaks
    result["rss_tree_mb"] = peak or result["rss_main_mb"] + 2 * result["rss_worker_mb"]
    return result


def memory_slope(sizes: list[int], tags: int) -> int:
    """Peak memory of a first scan at two (or more) sizes and the bytes per item between
    the first and the last: what still grows with N."""
    rows = []
    for n in sizes:
        root = dataset_dir(n, tags)
        work = Path(tempfile.mkdtemp(prefix="sushitui-bench-scan-db-"))
        try:
            scan = run_child("scan", work / "bench.db", root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append((n, scan))
        print(
            f"  {n:>9,} items: {scan['added'] / scan['wall']:7,.0f} items/s, peak RSS main {scan['rss_main_mb']:4.0f} MB, "
            f"worker {scan['rss_worker_mb']:3.0f} MB, whole tree {scan['rss_tree_mb']:4.0f} MB  (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    (n1, a), (n2, b) = rows[0], rows[-1]
    print(f"\nsushitui scan memory: first scan, {tags} tags per caption, {os.cpu_count()} cores")
    for key, label in (("rss_tree_mb", "whole process tree"), ("rss_main_mb", "main process")):
        slope = (b[key] - a[key]) * 2**20 / (n2 - n1)
        at_1m = b[key] + slope * (1_000_000 - n2) / 2**20
        print(
            f"  {label:<19} {a[key]:5.0f} MB at {n1:,} → {b[key]:5.0f} MB at {n2:,}: "
            f"{slope:+6.0f} bytes/item, {at_1m:5.0f} MB at 1M by that slope"
        )
    return 0


def raw_tag_insert(db: Path, work: Path) -> tuple[float, int]:
    """Seconds for sqlite3.executemany of the scan's tag rows into a copy of the schema
    (same pragmas, foreign keys on, items and captions already present)."""
    from sushitui.store.db import PRAGMAS

    target = work / "raw.db"
    shutil.copy(db, target)
    for suffix in ("-wal", "-shm"):
        if Path(str(db) + suffix).exists():
            shutil.copy(str(db) + suffix, str(target) + suffix)
    src = sqlite3.connect(db)
    dst = sqlite3.connect(target, isolation_level=None)
    for k, v in PRAGMAS.items():
        dst.execute(f"PRAGMA {k}={v}")
    dst.execute("DELETE FROM item_tag")
    dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cols = "item_id, caption_id, tag, norm, position, subtype, source, confidence"
    cur = src.execute(f"SELECT {cols} FROM item_tag ORDER BY id")
    total, rows_n = 0.0, 0
    dst.execute("BEGIN IMMEDIATE")
    while True:
        rows = cur.fetchmany(100_000)
        if not rows:
            break
        t0 = time.perf_counter()
        dst.executemany(f"INSERT INTO item_tag ({cols}) VALUES (?,?,?,?,?,?,?,?)", rows)
        total += time.perf_counter() - t0
        rows_n += len(rows)
    t0 = time.perf_counter()
    dst.execute("COMMIT")
    total += time.perf_counter() - t0
    src.close()
    dst.close()
    return total, rows_n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="scanner benchmark")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--tags", type=int, default=30)
    p.add_argument("--keep-db", action="store_true", help="keep the benchmark database (path printed)")
    p.add_argument(
        "--cold",
        action="store_true",
        help="drop the files from the page cache before the floor and before the first scan: both read from disk",
    )
    p.add_argument(
        "--memory",
        metavar="N1,N2",
        help="only the first scan's peak memory at these sizes, with the bytes-per-item slope between them",
    )
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        return child(args)
    if args.memory:
        sizes = [int(x) for x in args.memory.split(",")]
        if len(sizes) < 2 or len(set(sizes)) < len(sizes):
            p.error("--memory takes two or more different sizes, e.g. 100000,200000")
        return memory_slope(sorted(sizes), args.tags)

    root = dataset_dir(args.n, args.tags)
    load0 = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="sushitui-bench-scan-db-"))
    db = work / "bench.db"
    try:
        floor_wall, floor_cpu, files, size = floor_sha256sum(root, args.cold)
        if args.cold:
            evict(root)
        scan = run_child("scan", db, root)
        again = run_child("reindex", db, root)
        raw_s, raw_rows = raw_tag_insert(db, work)
    finally:
        if not args.keep_db:
            shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()[0]

    n = scan["added"]
    rate = n / scan["wall"]
    t = scan["timings"]
    ratio = scan["wall"] / floor_wall
    # a big first scan inserts without the tag-norm index and builds it at the end: both count
    tag_s = t["tag_insert_s"] + t.get("tag_index_s", 0.0)
    tag_ratio = tag_s / raw_s if raw_s else float("nan")
    peak = scan["rss_tree_mb"]
    reindex_target = 15.0 if n >= 1_000_000 else 2.0  # issue 24 at 1M; the first wave's at 100k
    rows = [
        ("files (images + captions)", f"{files:,} ({size / 1e6:.0f} MB)", "", ""),
        ("page cache", "cold: emptied before the floor and the scan" if args.cold else "warm", "", ""),
        ("floor: sha256sum ×2 processes", f"{floor_wall:.2f} s wall, {floor_cpu:.1f} s CPU", "", ""),
        (
            "first scan",
            f"{scan['wall']:.2f} s, {rate:,.0f} items/s",
            "≥ 3,000 items/s",
            "ok" if rate >= 3000 else "MISSED",
        ),
        ("  ratio to the floor", f"{ratio:.1f}×", "≤ 1.5×", "ok" if ratio <= 1.5 else "MISSED"),
        ("  CPU main / workers", f"{scan['cpu_main']:.1f} s / {scan['cpu_workers']:.1f} s", "", ""),
        (
            "  CPU ratio to the floor",
            f"{(scan['cpu_main'] + scan['cpu_workers']) / floor_cpu:.1f}× "
            f"(main alone {scan['cpu_main'] / floor_cpu:.1f}×)",
            "",
            "",
        ),
        ("  walk / plan / write", f"{t['walk_s']:.2f} / {t['plan_s']:.2f} / {t['write_s']:.2f} s", "", ""),
        (
            "  peak RSS main / a worker",
            f"{scan['rss_main_mb']:.0f} MB / {scan['rss_worker_mb']:.0f} MB",
            "",
            "",
        ),
        (
            "  peak RSS whole process tree",
            f"{peak:.0f} MB",
            "≤ 500 MB",
            "ok" if peak <= 500 else "MISSED",
        ),
        (
            "reindex, unchanged",
            f"{again['wall']:.2f} s ({again['unchanged']:,} items)",
            f"≤ {reindex_target:g} s",
            "ok" if again["wall"] <= reindex_target else "MISSED",
        ),
        (
            "tag rows: scan inserts + index",
            f"{t['tag_rows']:,} rows in {t['tag_insert_s']:.2f} + {t.get('tag_index_s', 0.0):.2f} s = {tag_s:.2f} s",
            "",
            "",
        ),
        (
            "tag rows: raw sqlite3 executemany",
            f"{raw_rows:,} rows in {raw_s:.2f} s ({raw_rows / raw_s:,.0f} rows/s)",
            "",
            "",
        ),
        ("  ratio scan / raw", f"{tag_ratio:.2f}×", "≤ 3×", "ok" if tag_ratio <= 3 else "MISSED"),
        ("load average (start → end)", f"{load0:.1f} → {load1:.1f} on {os.cpu_count()} cores", "", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\nsushitui scan benchmark: {args.n:,} items × {args.tags} tags")
    for name, value, target, verdict in rows:
        print(f"  {name:<{w0}}  {value:<{w1}}  {target:<16} {verdict}")
    if scan["problems"]:
        print(f"  ({scan['problems']} problems reported by the scan)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
