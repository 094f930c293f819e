"""Benchmark: autotag on Ray vs the local pipeline, on the same images and cores.

    python tests/benchmarks/bench_ray.py [--n 120] [--size 1024x1536] [--reps 2] [--cpus 2]

Generates N real-size JPEGs (bench_autotag's generator, cached under /tmp), indexes them
as a dataset in a temporary catalogue, then tags them with a tiny WD-shaped ONNX model
(CPU provider; it costs ~nothing, so the figures are decode + pipeline overhead):

- local: ``autotag()`` with the local decode pool (``--cpus`` workers);
- Ray, 1 and 2 CPU model actors: ``autotag_ray()`` on a local Ray cluster of ``--cpus``
  CPUs, started once (its start-up time is reported on its own line, not in the runs).

Every run has the cache off (every image decoded and inferred) and writes the caption
files. The best of ``--reps`` runs is reported, as images/s and as a ratio to local.
On a shared 2-core machine the numbers are noisy; compare ratios from one run.
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
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))


def make_dataset(paths: list[str], root: Path):
    from sushitui.store import Dataset, Item

    root.mkdir(parents=True, exist_ok=True)
    ds = Dataset.create(name="bench", root_path=str(root))
    for p in paths:
        dst = root / Path(p).name
        shutil.copyfile(p, dst)
        st = os.stat(dst)
        Item.create(
            dataset=ds,
            base_name=dst.stem,
            rel_dir="",
            group_key=f"/{dst.stem}",
            image_path=dst.name,
            image_suffix="",
            file_size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
    return ds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--size", default="1024x1536")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    from bench_autotag import make_images
    from tagger_support import tiny_models

    from sushitui.store import open_database
    from sushitui.tagger.autotag import autotag
    from sushitui.tagger.distributed import autotag_ray

    paths = make_images(args.n, (w, h))
    tmp = Path(tempfile.mkdtemp(prefix="sr-bench-"))
    db = open_database(tmp / "bench.db")
    make_dataset(paths, tmp / "data")
    m = tiny_models()
    opts = {"model_path": str(m["wd"]), "labels_path": str(m["wd_csv"]), "use_cache": False}

    def best(run) -> tuple[float, object]:
        times = []
        report = None
        for _ in range(args.reps):
            t = time.perf_counter()
            report = run()
            times.append(time.perf_counter() - t)
            assert report.inferred == args.n and not report.failed, report.failed[:3]
        return min(times), report

    rows: list[tuple[str, float]] = []
    t_local, _ = best(lambda: autotag("bench", workers=args.cpus, **opts))
    rows.append((f"local pipeline ({args.cpus} decode workers)", t_local))

    import ray

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, num_gpus=0, include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp / "ray"))
    t_start = time.perf_counter() - t
    try:
        for actors in (1, 2):
            t_ray, report = best(lambda: autotag_ray("bench", actors=actors, **opts))
            rows.append((f"Ray, {actors} CPU model actor(s)", t_ray))
    finally:
        ray.shutdown()
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.n} JPEGs {w}x{h}, tiny WD model (CPU), cache off, best of {args.reps}, {args.cpus} CPUs")
    print(f"Ray local cluster start-up (once, not in the runs): {t_start:.1f} s\n")
    print(f"| {'run':<40} | {'time s':>7} | {'img/s':>6} | {'vs local':>8} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 8}|{'-' * 10}|")
    for name, secs in rows:
        print(f"| {name:<40} | {secs:7.2f} | {args.n / secs:6.1f} | {t_local / secs:7.2f}x |")


if __name__ == "__main__":
    main()
