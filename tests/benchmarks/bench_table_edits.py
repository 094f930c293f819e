"""Caption-table write-back: what one edit of a caption read from a big ``metadata.jsonl``
(or ``metadata.csv``) costs, against the same edit of a plain ``.txt`` caption in the
same run.

Builds two datasets of N images (identical tiny PNGs): one whose captions are rows of a
ROWS-row table (rows beyond N name images that are not there, as in a table shared by
several folders), one with an ``x.txt`` beside each image. Then, for each:

- a TUI-style single-item save (``item_view.load_item_view`` + ``save_tags``, the
  editor's autosave), median of REPEAT saves;
- ``tag add`` over BULK items (``bulk_edit.bulk_add``, what the CLI runs);
- the table rewrite alone (``tables.write_table_cells`` of one cell), for the split.

    python tests/benchmarks/bench_table_edits.py [--rows 100000] [--images 5000] [--bulk 1000] [--csv]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def build(base: Path, rows: int, images: int, fmt: str) -> tuple[Path, Path]:
    png = _png()
    table_root, txt_root = base / "table_ds", base / "txt_ds"
    for root in (table_root, txt_root):
        root.mkdir(parents=True)
        for k in range(images):
            (root / f"img{k:06d}.png").write_bytes(png)
    tags = "1girl, solo, long hair, looking at viewer, smile, outdoors, sky"
    if fmt == "jsonl":
        lines = [
            f'{{"file_name": "img{k:06d}.png", "text": "{tags}, t{k}", "aesthetic": 6.10, "source": "crawl"}}'
            for k in range(rows)
        ]
        (table_root / "metadata.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    else:
        lines = ["file_name,text,aesthetic,source"] + [f'img{k:06d}.png,"{tags}, t{k}",6.10,crawl' for k in range(rows)]
        (table_root / "metadata.csv").write_text("\n".join(lines) + "\n", "utf-8")
    for k in range(images):
        (txt_root / f"img{k:06d}.txt").write_text(f"{tags}, t{k}", "utf-8")
    return table_root, txt_root


def measure(name: str, root: Path, repeat: int, bulk: int) -> dict[str, float]:
    from sushitui.dataset import bulk_edit
    from sushitui.dataset.captions import item_tags
    from sushitui.dataset.item_view import load_item_view, save_tags
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import Item

    t0 = time.perf_counter()
    ds, _report = add_dataset(DatasetSettings(name, str(root)))
    scan = time.perf_counter() - t0
    ids = [i.id for i in Item.select(Item.id).where(Item.dataset == ds.id).order_by(Item.image_path)]
    one = ids[len(ids) // 2]
    view = load_item_view(one)
    current = item_tags(one)
    saves = []
    for k in range(repeat):
        current = [*current, f"edit{k}"]
        t = time.perf_counter()
        report = save_tags(one, "main", current, view=view)
        saves.append(time.perf_counter() - t)
        assert not report.problems, report.problems
    t = time.perf_counter()
    report = bulk_edit.bulk_add(name, ids[:bulk], "benchtag")
    bulk_s = time.perf_counter() - t
    assert not report.problems and report.items_changed == min(bulk, len(ids)), report.problems[:3]
    return {"scan": scan, "save_med": statistics.median(saves), "save_max": max(saves), "bulk": bulk_s}


def rewrite_only(root: Path, rel: str, repeat: int) -> float:
    from sushitui.dataset.tables import CellEdit, write_table_cells

    times = []
    old = None
    for k in range(repeat):
        from sushitui.dataset.tables import read_table_cell

        old = read_table_cell(str(root), rel, ["img000001.png"], "text") if old is None else old
        new = f"{old}, raw{k}"
        t = time.perf_counter()
        _state, results = write_table_cells(str(root), rel, [CellEdit(["img000001.png"], "text", old, new)])
        times.append(time.perf_counter() - t)
        assert results == [None], results
        old = new
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=5_000)
    ap.add_argument("--bulk", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--csv", action="store_true", help="metadata.csv instead of metadata.jsonl")
    args = ap.parse_args()
    fmt = "csv" if args.csv else "jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ["SUSHITUI_DB"] = str(base / "bench.sqlite")
        from sushitui.store import open_database

        open_database(base / "bench.sqlite")
        table_root, txt_root = build(base, args.rows, args.images, fmt)
        size = (table_root / f"metadata.{fmt}").stat().st_size
        txt = measure("txt", txt_root, args.repeat, args.bulk)
        tab = measure("table", table_root, args.repeat, args.bulk)
        raw = rewrite_only(table_root, f"metadata.{fmt}", args.repeat)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nmetadata.{fmt}: {args.rows:,} rows ({size / 1e6:.1f} MB), {args.images:,} images; "
        f"bulk = tag add over {args.bulk:,} items; load average {load:.1f}\n"
    )
    print("| | .txt captions | table captions | ratio |")
    print("|---|---|---|---|")
    for label, key in (
        ("scan (dataset add)", "scan"),
        ("single save, median", "save_med"),
        ("single save, max", "save_max"),
        (f"tag add, {args.bulk:,} items", "bulk"),
    ):
        ratio = tab[key] / txt[key] if txt[key] else float("nan")
        print(f"| {label} | {txt[key] * 1000:,.0f} ms | {tab[key] * 1000:,.0f} ms | {ratio:.1f}× |")
    print(f"| table rewrite alone (write_table_cells, 1 cell), median | | {raw * 1000:,.0f} ms | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
