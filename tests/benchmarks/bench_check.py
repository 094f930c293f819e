"""Benchmark: ``sushitui check`` at 100k items, and perceptual hashing against decoding.

    python tests/benchmarks/bench_check.py [--n 100000] [--files 1000] [--repeat 3]

1. Builds (cached under /tmp) a database with N items, one tag caption each (20-40 tags,
   Danbooru-like), and an ``image_hash`` row per item (hashes exist: the state after a
   first check). Times ``run_check`` (kohya 1024, T5 on) against the floor measured in
   the same run: reading the same rows with the same SQL and tokenising the same distinct
   captions with the same CLIP and T5 batch calls. Target: check ≤ 10 s.
2. The bucket histogram of N images: ``place_many`` + counting + the terminal lines, per
   trainer. Target ≤ 200 ms.
3. Hashing: ``--files`` JPEGs (1024×768, camera-like) and a quarter as many PNGs are
   written, then decoding them with ``draft()`` in one process (the floor the issue
   names) is compared with ``hash_files`` (what check runs: decode small + pHash + facts,
   one worker per core). Target: hashing rate ≥ decoding rate.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from sushitui.store import Dataset, open_database  # noqa: E402

SCHEMA_TAG = "v2"


def vocabulary(size: int = 4000) -> list[str]:
    from sushitui.dataset.synthetic import COMMON_TAGS

    head = [t.replace("_", " ") for t in COMMON_TAGS]
    return head + [f"tag{i}" for i in range(size - len(head))]


def build(path: Path, n: int) -> None:
    rng = random.Random(1)
    vocab = vocabulary()
    weights = [1 / (i + 1) for i in range(len(vocab))]
    db = open_database(path)
    ds = Dataset.create(name="bench", root_path=str(path.parent))
    conn = db.connection()
    now = time.time()
    sizes = [(1024, 1024), (832, 1216), (1216, 832), (768, 1344), (512, 512), (640, 480), (3000, 4000), (1920, 1080)]
    items, captions, hashes = [], [], []
    for i in range(1, n + 1):
        w, h = rng.choice(sizes) if rng.random() < 0.7 else (rng.randint(300, 4000), rng.randint(300, 4000))
        sha = f"{i:064x}"
        items.append(
            (
                i,
                ds.id,
                "single",
                f"img{i:06d}",
                "",
                f"img{i:06d}",
                f"img{i:06d}.png",
                "png",
                "{}",
                w,
                h,
                100_000,
                0,
                sha,
                0,
                now,
                now,
                now,
            )
        )
        tags = list(dict.fromkeys(rng.choices(vocab, weights, k=rng.randint(12, 32))))
        captions.append((i, i, "tags", "", ", ".join(tags), "en", "txt_file", f"img{i:06d}.txt", now, now))
        phash = rng.getrandbits(64) - (1 << 63)
        hashes.append((sha, 1, phash, "RGB", 8, None, 1, None, now))
    with db.atomic():
        conn.executemany(
            "INSERT INTO item (id, dataset_id, item_type, base_name, rel_dir, group_key, image_path, image_suffix, "
            "related_images, width, height, file_size, mtime_ns, sha256, tag_count, created_at, indexed_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            items,
        )
        conn.executemany(
            "INSERT INTO caption (id, item_id, type, subtype, content, language, source, file_path, encoding_flagged, "
            "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,0,?,?)",
            captions,
        )
        conn.executemany("INSERT INTO image_hash VALUES (?,?,?,?,?,?,?,?,?)", hashes)
    db.close()


def bench_check(path: Path, repeat: int, warm: bool = False) -> None:
    from sushitui.check import CheckOptions, run_check
    from sushitui.check import tokens as T
    from sushitui.check.report import _read_captions, _read_items

    db = open_database(path)
    ds_id = Dataset.get(Dataset.name == "bench").id
    T.clip_tokenizer()
    T.t5_tokenizer()  # loading the vocab files is counted in neither
    if not warm:
        db.execute_sql("DELETE FROM caption_tokens")  # the first check counts every caption
    floors, reads, checks = [], [], []
    report = None
    for _ in range(repeat):
        t = time.perf_counter()
        _read_items(ds_id)
        rows = _read_captions(ds_id)
        texts = sorted({r[3] for r in rows if r[3] and r[3].strip()})
        reads.append(time.perf_counter() - t)
        T.clip_counts(texts)
        T.t5_counts(texts)
        floors.append(time.perf_counter() - t)
        t = time.perf_counter()
        report = run_check("bench", CheckOptions(trainer="kohya", resolution=1024, batch_size=4))
        checks.append(time.perf_counter() - t)
    floor = statistics.median(floors)
    read = statistics.median(reads)
    n = len(report.items)
    print(
        f"check of {n:,} items ({len(report.items_with_findings()):,} with findings, "
        f"{len(report.near_groups)} near-duplicate groups), {len(texts):,} distinct captions:"
    )
    print(f"  floor (read the same rows + CLIP and T5 batch tokenising): {floor:6.2f} s")
    print(f"  floor of a check run again (read the same rows only):       {read:6.2f} s")
    print(
        f"  sushitui check, first{' (counts stored)' if warm else ' (every caption tokenised)'}:"
        f"{'' if warm else ' ' * 0}  {checks[0]:6.2f} s  ({checks[0] / floor:.2f}× the floor)"
    )
    if len(checks) > 1:
        warm = statistics.median(checks[1:])
        print(
            f"  sushitui check, again (counts stored):                      {warm:6.2f} s  "
            f"({warm / floor:.2f}× the floor, {warm / read:.1f}× reading the rows; target ≤ 10 s)"
        )
    print("  phases of the last run: " + ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items()))
    db.close()


def bench_histogram(n: int) -> None:
    from sushitui.check.buckets import TRAINERS, make_plan
    from sushitui.check.histogram import histogram_lines

    rng = np.random.default_rng(2)
    w = rng.integers(300, 4000, n)
    h = rng.integers(300, 4000, n)
    print(f"histogram of {n:,} images (place + count + lines), median of 5:")
    for trainer in TRAINERS:
        plan = make_plan(trainer, 1024)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            placed = plan.place_many(w, h)
            keys = placed.bucket_w * 100_000 + placed.bucket_h
            uniq, counts = np.unique(keys, return_counts=True)
            lines = histogram_lines([((int(u) // 100_000, int(u) % 100_000), int(c)) for u, c in zip(uniq, counts)])
            times.append(time.perf_counter() - t)
        print(f"  {trainer:<15} {statistics.median(times) * 1000:6.1f} ms  ({len(lines)} buckets; target ≤ 200 ms)")


def bench_hashing(n_files: int, workdir: Path) -> None:
    from PIL import Image

    from sushitui.check.hashing import MIN_FILES_FOR_WORKERS, decode_floor, hash_files

    folder = workdir / "images"
    if not folder.exists() or len(list(folder.iterdir())) < n_files + n_files // 4:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(3)
        for i in range(n_files + n_files // 4):
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((1024, 768), Image.Resampling.BICUBIC)
            if i < n_files:
                img.save(folder / f"{i:05d}.jpg", quality=90)
            else:
                img.save(folder / f"{i:05d}.png", compress_level=1)
    files = sorted(folder.iterdir())
    for label, subset in (
        ("JPEG", [f for f in files if f.suffix == ".jpg"]),
        ("PNG", [f for f in files if f.suffix == ".png"]),
    ):
        t = time.perf_counter()
        for f in subset:
            decode_floor(f)
        floor = time.perf_counter() - t
        tasks = [(str(f), f.name) for f in subset]
        t = time.perf_counter()
        facts = hash_files(tasks)  # as check runs it: workers only for a large batch
        hashing = time.perf_counter() - t
        t = time.perf_counter()
        hash_files(tasks, workers=min(os.cpu_count() or 1, 8))
        pooled = time.perf_counter() - t
        assert len(facts) == len(subset) and all(x.phash is not None for x in facts)
        t = time.perf_counter()
        hash_files(tasks, workers=1)
        single = time.perf_counter() - t
        how = "in one process" if len(subset) < MIN_FILES_FOR_WORKERS else "with workers"
        print(
            f"{label}: {len(subset):,} files 1024×768 — decode with draft() in one process "
            f"{len(subset) / floor:7.0f}/s; check's hashing {len(subset) / hashing:7.0f}/s {how} "
            f"({hashing / floor * 100:.0f}% of the decoding time; {len(subset) / single:.0f}/s in one process, "
            f"{len(subset) / pooled:.0f}/s forced onto {min(os.cpu_count() or 1, 8)} workers); "
            f"100k would take {100_000 / (len(subset) / min(hashing, pooled)):.0f} s"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--skip-hash", action="store_true")
    ap.add_argument("--warm", action="store_true", help="keep the stored token counts of a previous run")
    args = ap.parse_args()
    work = Path(tempfile.gettempdir()) / f"sushitui-bench-check-{SCHEMA_TAG}-{args.n}"
    db_path = work / "bench.db"
    if not args.skip_check:
        if not db_path.exists():
            work.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            build(db_path, args.n)
            print(f"built {args.n:,} items in {time.perf_counter() - t:.1f} s")
        bench_check(db_path, args.repeat, args.warm)
    bench_histogram(args.n)
    if not args.skip_hash:
        bench_hashing(args.files, work)


if __name__ == "__main__":
    main()
