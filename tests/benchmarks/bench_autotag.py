"""Benchmark: the auto-tag pipeline on the CPU with a tiny model vs the plain decode floor.

    python tests/benchmarks/bench_autotag.py [--n 60] [--reps 3] [--workers N] [--size 1024x1536]
    python tests/benchmarks/bench_autotag.py --model vit448.onnx --device cuda --n 3000   # GPU check

Generates N real-size JPEGs (q90, photo-like content, cached under /tmp), then in the
same run, on the same cores:

- floor: plain decode + RGB + white pad + BICUBIC 448 of every image, full-size JPEG
  decode, in a process pool of W workers (what any tagger has to do at minimum);
  both the floor and the pipeline count their pool start-up;
- the same floor with Pillow ``draft()`` (JPEG DCT scaling to the smallest 1/2, 1/4, 1/8
  scale that stays ≥ 448 on both sides);
- ``run_pipeline`` (decode workers → batched inference on a tiny WD-shaped ONNX
  model, CPU provider), draft off and on: images/s and the ratio to the floor;
- ``autotag()`` end to end (hashing, cache, tags, caption files, DB) with draft on;
- a re-run of ``autotag()`` (everything from the cache: no decode, no model);
- what draft changes: mean / max absolute difference of the 448×448 inputs (0..255).

The tiny model costs ~nothing, so the pipeline ratio measures the overhead of the
pipeline itself (IPC, batching, tensor conversion) against pure decoding.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BATCH: int | None = None  # None: the runner's default (4 on the CPU, 32 on a GPU); --batch-size
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def make_images(n: int, size: tuple[int, int]) -> list[str]:
    import numpy as np
    from PIL import Image

    base = Path(tempfile.gettempdir()) / f"sushitui-bench-autotag-{n}-{size[0]}x{size[1]}"
    base.mkdir(parents=True, exist_ok=True)
    paths = [base / f"img{i:05d}.jpg" for i in range(n)]
    rng = np.random.default_rng(0)
    for i, p in enumerate(paths):
        if p.exists():
            continue
        # smooth colour fields + fine noise: JPEG sizes like real illustrations/photos
        small = rng.integers(0, 255, (size[1] // 64, size[0] // 64, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize(size, Image.BICUBIC)
        noise = rng.integers(-12, 12, (size[1], size[0], 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(p, quality=90)
    return [str(p) for p in paths]


def plain_decode(path: str, draft: bool = False) -> int:
    """The floor: what every tagger must do per image (no hashing, no IPC of pixels)."""
    from PIL import Image

    img = Image.open(path)
    if draft:
        img.draft("RGB", (448, 448))
    img = img.convert("RGB")
    w, h = img.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas.resize((448, 448), Image.BICUBIC).size[0]


def floor_rate(paths: list[str], workers: int, draft: bool) -> float:
    from sushitui.tagger.pipeline import _context

    t = time.perf_counter()  # pool start-up counted, as in the pipeline
    with cf.ProcessPoolExecutor(workers, mp_context=_context()) as pool:
        list(pool.map(plain_decode, paths, [draft] * len(paths), chunksize=1))
    return len(paths) / (time.perf_counter() - t)


def pipeline_rate(paths: list[str], workers: int, draft: bool, model: Path, labels: int) -> float:
    from sushitui.tagger.pipeline import BatchResult, run_pipeline
    from sushitui.tagger.runner import Runner

    runner = Runner(model, "wd", labels, device="cpu", batch_size=BATCH)
    runner.warm_up()
    t = time.perf_counter()
    n = sum(
        len(ev.indices)
        for ev in run_pipeline(paths, runner, draft=draft, workers=workers)
        if isinstance(ev, BatchResult)
    )
    assert n == len(paths), n
    return n / (time.perf_counter() - t)


def real_model_figures(paths: list[str], workers: int, model: str, family: str, device: str, batch: int | None) -> None:
    """``--model FILE``: a real-size model (e.g. a ViT-B/448 export with random weights and
    the WD v3 signature) on ``--device``: model-only throughput on ready batches vs the
    pipeline end to end vs the decode floor with draft, as the issue's GPU check asks."""
    import numpy as np

    from sushitui.tagger.pipeline import BatchResult, run_pipeline
    from sushitui.tagger.runner import Runner

    probe = Runner(model, family, 1, device=device, batch_size=batch)
    out_n = probe.output_size or 1
    runner = Runner(model, family, out_n, device=device, batch_size=batch)
    print(f"\nreal model {model}: provider {runner.provider.describe()}, batch {runner.batch_size}, {out_n} outputs")
    runner.warm_up()
    x = np.random.default_rng(0).random(runner.input_shape(runner.batch_size), dtype=np.float32) * (
        255 if family == "wd" else 1
    )
    runs = max(3, 256 // runner.batch_size)
    t = time.perf_counter()
    for _ in range(runs):
        runner.predict(x, valid=runner.batch_size)
    model_only = runs * runner.batch_size / (time.perf_counter() - t)
    floor = floor_rate(paths, workers, draft=True)
    t = time.perf_counter()
    n = sum(
        len(ev.indices)
        for ev in run_pipeline(paths, runner, draft=True, workers=workers)
        if isinstance(ev, BatchResult)
    )
    e2e = n / (time.perf_counter() - t)
    bound = min(model_only, floor)
    print(
        f"model only {model_only:.1f} images/s; decode floor (draft, {workers} workers) {floor:.1f}; "
        f"end to end {e2e:.1f} = {e2e / bound:.2f} of the lower bound (target >= 0.8)"
    )


def autotag_rates(paths: list[str], workers: int, model: Path, labels_csv: Path) -> tuple[float, float]:
    import os as _os

    from sushitui.store import Dataset, Item, open_database
    from sushitui.tagger.autotag import autotag

    tmp = Path(tempfile.mkdtemp(prefix="sushitui-bench-autotag-db-"))
    open_database(tmp / "bench.db")
    root = Path(paths[0]).parent
    ds = Dataset.create(name="bench", root_path=str(root))
    rows = []
    for p in paths:
        st = _os.stat(p)
        stem = Path(p).stem
        rows.append(
            {
                "dataset": ds.id,
                "base_name": stem,
                "rel_dir": "",
                "group_key": f"/{stem}",
                "image_path": Path(p).name,
                "file_size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
        )
    Item.insert_many(rows).execute()
    for txt in root.glob("*.txt"):
        txt.unlink()
    opts = dict(
        model_path=str(model),
        labels_path=str(labels_csv),
        workers=workers,
        batch_size=BATCH,
        device="cpu",
        threshold=0.01,
        categories=("general", "character", "rating"),
    )
    t = time.perf_counter()
    r = autotag("bench", **opts)
    first = len(paths) / (time.perf_counter() - t)
    assert r.inferred == len(paths) and not r.failed, (r.inferred, r.failed[:3])
    t = time.perf_counter()
    r2 = autotag("bench", **opts)
    again = len(paths) / (time.perf_counter() - t)
    assert r2.cached == len(paths) and r2.inferred == 0
    for txt in root.glob("*.txt"):
        txt.unlink()
    return first, again


def refilter_rate(n: int) -> tuple[float, float]:
    """Re-filtering cached scores at cl_tagger size (42,163 labels): ``autotag`` dry runs
    over N items whose scores are all cached (no decode, no model, no caption writes).
    Returns (images/s, seconds to load the 42k-label mapping)."""
    import hashlib
    import json

    import numpy as np
    import onnx
    import tagger_support as ts

    from sushitui.store import Dataset, Item, open_database
    from sushitui.tagger import cache as tcache
    from sushitui.tagger.autotag import PREPROCESS_VERSION, autotag
    from sushitui.tagger.hub import local_files
    from sushitui.tagger.labels import load_labels

    L = 42163
    tmp = Path(tempfile.mkdtemp(prefix="sushitui-bench-refilter-"))
    onnx.save(ts.cl_like(L), str(tmp / "model.onnx"))
    cats = (
        ["Rating"] * 4
        + ["General"] * 22367
        + ["Character"] * 16210
        + ["Copyright"] * 3329
        + ["Meta"] * 224
        + ["Model"] * 25
        + ["Quality"] * 4
    )
    (tmp / "tag_mapping.json").write_text(
        json.dumps({str(i): {"tag": f"tag_{i}", "category": c} for i, c in enumerate(cats[:L])})
    )
    t = time.perf_counter()
    load_labels(tmp / "tag_mapping.json")
    load_s = time.perf_counter() - t
    open_database(tmp / "bench.db")
    root = tmp / "images"
    root.mkdir()
    ds = Dataset.create(name="refilter", root_path=str(root))
    version = local_files(tmp / "model.onnx", tmp / "tag_mapping.json").version + f"/{PREPROCESS_VERSION}+draft"
    rng = np.random.default_rng(1)
    rows, entries = [], []
    for i in range(n):
        data = f"image {i}".encode()
        (root / f"{i:06d}.png").write_bytes(data)
        st = (root / f"{i:06d}.png").stat()
        sha = hashlib.sha256(data).hexdigest()
        rows.append(
            {
                "dataset": ds.id,
                "base_name": f"{i:06d}",
                "rel_dir": "",
                "group_key": f"/{i:06d}",
                "image_path": f"{i:06d}.png",
                "sha256": sha,
                "file_size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
        )
        probs = (rng.random(L) * 0.004).astype(np.float32)
        probs[rng.integers(0, L, 60)] = rng.random(60).astype(np.float32)
        entries.append((sha, probs))
    for i in range(0, n, 500):
        Item.insert_many(rows[i : i + 500]).execute()
    tcache.put_many(entries, version)
    t = time.perf_counter()
    r = autotag(
        "refilter",
        model_path=str(tmp / "model.onnx"),
        labels_path=str(tmp / "tag_mapping.json"),
        dry_run=True,
        threshold=0.5,
        character_threshold=0.7,
    )
    rate = n / (time.perf_counter() - t)
    assert r.cached == n and r.inferred == 0 and r.provider is None, (r.cached, r.inferred)
    return rate, load_s


def draft_difference(paths: list[str]) -> tuple[float, float, float]:
    import numpy as np

    from sushitui.tagger.preprocess import decode_file

    diffs, maxes = [], []
    t_full = t_draft = 0.0
    for i, p in enumerate(paths[:20]):
        t = time.perf_counter()
        a = decode_file(i, p, 448, draft=False).pixels.astype(np.int16)
        t_full += time.perf_counter() - t
        t = time.perf_counter()
        b = decode_file(i, p, 448, draft=True).pixels.astype(np.int16)
        t_draft += time.perf_counter() - t
        d = np.abs(a - b)
        diffs.append(d.mean())
        maxes.append(d.max())
    return float(np.mean(diffs)), float(np.max(maxes)), t_full / max(t_draft, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--size", default="1024x1536")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--refilter-n", type=int, default=5000, help="items for the cached re-filter at cl_tagger size")
    ap.add_argument("--model", help="also measure this real-size ONNX model (model-only vs end to end)")
    ap.add_argument("--family", choices=["wd", "cl"], default="wd")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    args = ap.parse_args()
    global BATCH
    BATCH = args.batch_size
    w, h = (int(x) for x in args.size.split("x"))
    import onnx
    import tagger_support as ts

    model_dir = Path(tempfile.mkdtemp(prefix="sushitui-bench-model-"))
    model = model_dir / "wd.onnx"
    onnx.save(ts.wd_like(ts.WD_LABELS), str(model))
    labels_csv = model_dir / "selected_tags.csv"
    labels_csv.write_text(ts.WD_CSV)

    t = time.perf_counter()
    paths = make_images(args.n, (w, h))
    print(
        f"{args.n} JPEGs {w}x{h} q90 ready in {time.perf_counter() - t:.1f} s; {args.workers} worker(s) on {os.cpu_count()} core(s)"
    )

    if args.model:
        real_model_figures(paths, args.workers, args.model, args.family, args.device, args.batch_size)
        return
    # The machine may be shared: measure floor and pipeline back to back, --reps times,
    # and compare each pipeline run with the floor run next to it (median of the pairs).
    pairs = {False: [], True: []}
    for _ in range(args.reps):
        for draft in (False, True):
            f = floor_rate(paths, args.workers, draft=draft)
            p = pipeline_rate(paths, args.workers, draft, model, ts.WD_LABELS)
            pairs[draft].append((f, p))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    floor, pipe = med([f for f, _ in pairs[False]]), med([p for _, p in pairs[False]])
    floor_draft, pipe_draft = med([f for f, _ in pairs[True]]), med([p for _, p in pairs[True]])
    ratio = med([p / f for f, p in pairs[False]])
    ratio_draft = med([p / f for f, p in pairs[True]])
    first, again = autotag_rates(paths, args.workers, model, labels_csv)
    mean_d, max_d, draft_speed = draft_difference(paths)
    refilter, load_s = refilter_rate(args.refilter_n)

    rows = [
        ("floor: plain decode+pad+resize (full JPEG decode)", floor, 1.0),
        ("floor with draft()", floor_draft, floor_draft / floor),
        ("run_pipeline, draft off (tiny model, CPU)", pipe, pipe / floor),
        ("run_pipeline, draft on (default)", pipe_draft, pipe_draft / floor),
        ("autotag() end to end, draft on (DB + caption files)", first, first / floor),
        ("autotag() re-run: all from cache", again, again / floor),
    ]
    print(f"\n{'what':<54}{'images/s':>10}{'vs floor':>10}")
    for name, rate, vs in rows:
        print(f"{name:<54}{rate:>10.1f}{vs:>10.2f}")
    print(f"\n(median of {args.reps} interleaved runs each)")
    print(f"pipeline / floor, same decode work (draft off, paired): {ratio:.2f} (target >= 0.9)")
    print(f"pipeline / floor, both with draft (paired): {ratio_draft:.2f}")
    print(f"pipeline with draft (default) / plain full-decode floor: {pipe_draft / floor:.2f}")
    print(
        f"re-filter of {args.refilter_n} cached cl_tagger-size rows (42,163 labels, dry run): {refilter:.0f} images/s; "
        f"loading the 42k-label mapping: {load_s:.2f} s"
    )
    print(
        f"draft(): single-image decode {draft_speed:.2f}x faster; 448x448 input differs by mean {mean_d:.2f}, max {max_d:.0f} (of 255)"
    )


if __name__ == "__main__":
    main()
