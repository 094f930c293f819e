"""Benchmark: exporting a 100k-item dataset as txt with hard links (EX target ≤ 30 s).

    python tests/benchmarks/bench_export.py [--n 100000] [--format txt] [--keep]

Generates (once, cached under /tmp) a synthetic dataset of N small images with tag
captions and registers it through the real scanner, then in the same run times:

- ``export_dataset`` (txt, hard links, trigger word, underscores → spaces): items/s, files/s
- the floor: a plain loop of ``os.makedirs`` + ``os.link`` + ``open().write()`` of the
  same captions into the same folder layout (captions precomputed, no database)

and prints the ratio. Both write to fresh folders on the same filesystem.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sushitui.store import open_database  # noqa: E402


def prepare(n: int) -> tuple[Path, str]:
    from sushitui.dataset.registry import DatasetSettings, add_dataset, get_dataset
    from sushitui.dataset.synthetic import generate_dataset

    base = Path(tempfile.gettempdir()) / f"sushitui-bench-export-{n}"
    db_path = base / "bench.db"
    marker = base / "ready"
    if not marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        t = time.perf_counter()
        generate_dataset(base / "src", n, seed=0, items_per_dir=1000)
        print(f"generated {n:,} items in {time.perf_counter() - t:.1f}s", flush=True)
        open_database(db_path)
        t = time.perf_counter()
        add_dataset(DatasetSettings(name="bench", root_path=str(base / "src")))
        print(f"scanned in {time.perf_counter() - t:.1f}s", flush=True)
        marker.write_text("ok")
    else:
        open_database(db_path)
    get_dataset("bench")
    return base, "bench"


def plain_floor(jobs: list[tuple[Path, Path, Path, str]]) -> float:
    t = time.perf_counter()
    made = set()
    for src, img_dst, txt_dst, text in jobs:
        d = img_dst.parent
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        os.link(src, img_dst)
        with open(txt_dst, "w", encoding="utf-8") as fh:
            fh.write(text)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--format", default="txt", choices=["txt", "kohya-json", "kohya-toml", "ai-toolkit"])
    ap.add_argument("--keep", action="store_true", help="keep the exported folders")
    args = ap.parse_args()

    from sushitui.export import ExportOptions, export_dataset

    base, name = prepare(args.n)
    work = base / "runs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    opts = ExportOptions(format=args.format, trigger="ohwx", underscores_to_spaces=True, link_mode="link")

    # the floor's jobs: the same source images and caption texts (computed here, not
    # timed), written by a plain loop with no database and no safety checks
    from sushitui.dataset.registry import get_dataset
    from sushitui.export.captions import CaptionBuilder
    from sushitui.export.exporter import _iter_built, _load_items

    ds = get_dataset(name)
    items = _load_items(ds, opts)
    builder = CaptionBuilder.from_database(opts)
    src_root = Path(ds.root_path)
    plain_jobs = []
    for item, built in _iter_built(ds, opts, items, builder):
        src = src_root / item.image_path
        dest_dir = work / "plain" / (item.rel_dir or "root")
        plain_jobs.append(
            (src, dest_dir / (item.base_name + src.suffix), dest_dir / (item.base_name + ".txt"), built.text)
        )

    def warm() -> None:
        # the same cache state for both runs: source inodes looked up, dirty data flushed
        for src, *_ in plain_jobs:
            os.stat(src)
        os.sync()

    warm()
    c = time.process_time()
    t_plain = plain_floor(plain_jobs)
    c_plain = time.process_time() - c

    warm()
    t, c = time.perf_counter(), time.process_time()
    report = export_dataset(name, work / "export", opts)
    t_export = time.perf_counter() - t
    c_export = time.process_time() - c
    assert not report.problems, report.problems[:3]

    files = report.files_written
    print()
    print(f"{'what':44} {'items':>8} {'files':>8} {'seconds':>8} {'cpu s':>7} {'files/s':>9}")
    print(
        f"{'export_dataset (' + args.format + ', hard links)':44} {report.items_exported:8,} {files:8,} {t_export:8.2f} {c_export:7.2f} {files / t_export:9,.0f}"
    )
    pf = 2 * len(plain_jobs)
    print(
        f"{'plain os.link + write loop (floor)':44} {len(plain_jobs):8,} {pf:8,} {t_plain:8.2f} {c_plain:7.2f} {pf / t_plain:9,.0f}"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"ratio export / floor: {t_export / t_plain:.2f}x   (target: export of 100k ≤ 30 s)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
