"""Helpers for the training tests and benchmark: a dataset of N items written straight
into the index (fast, no scan), with tiny image files and a main tag caption each."""

from __future__ import annotations

import time
from pathlib import Path

from sushitui.store import Dataset
from sushitui.store.db import current_database, write_transaction


def make_dataset(
    root: Path, n: int, name: str = "ds", *, files: bool = True, subtypes: tuple[str, ...] = ("main",)
) -> Dataset:
    """``n`` items ``img_00000.png``... (files written when ``files``), captions per subtype."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    db = current_database()
    now = time.time()
    with write_transaction(db):
        ds = Dataset.create(name=name, root_path=str(root), total_items=n, total_images=n)
        db.cursor().executemany(
            "INSERT INTO item (dataset_id, item_type, base_name, rel_dir, group_key, image_path, image_suffix, "
            "related_images, tag_count, created_at, indexed_at, updated_at) "
            "VALUES (?, 'single', ?, '', ?, ?, NULL, '{}', 2, ?, ?, ?)",
            [(ds.id, f"img_{i:05d}", f"img_{i:05d}", f"img_{i:05d}.png", now, now, now) for i in range(n)],
        )
        ids = [r[0] for r in db.execute_sql("SELECT id FROM item WHERE dataset_id = ? ORDER BY id", (ds.id,))]
        for subtype in subtypes:
            db.cursor().executemany(
                "INSERT INTO caption (item_id, type, subtype, content, language, source, file_path, "
                "encoding_flagged, created_at, updated_at) VALUES (?, 'tags', ?, ?, 'auto', 'txt_file', ?, 0, ?, ?)",
                [
                    (item_id, subtype, f"{subtype} tag{k}, solo", f"img_{k:05d}_{subtype}.txt", now, now)
                    for k, item_id in enumerate(ids)
                ],
            )
    if files:
        png = _tiny_png()
        for i in range(n):
            (root / f"img_{i:05d}.png").write_bytes(png)
    return ds


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def usage_invariants(db) -> tuple[int, int, int]:
    """(sum of per-run usage, sum of per-item totals, sum of runs' samples_seen): equal
    when the incremental totals are consistent."""
    u = db.execute_sql("SELECT COALESCE(SUM(times_seen), 0) FROM run_item_usage").fetchone()[0]
    s = db.execute_sql("SELECT COALESCE(SUM(total_seen), 0) FROM item_stats").fetchone()[0]
    r = db.execute_sql("SELECT COALESCE(SUM(samples_seen), 0) FROM training_run").fetchone()[0]
    return u, s, r
