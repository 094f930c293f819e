"""Shared set-up for the export tests: a registered generated dataset and a tree hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def register(name: str, root: Path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    ds, report = add_dataset(DatasetSettings(name=name, root_path=str(root)))
    return ds


def make_synthetic(tmp_path: Path, n: int = 60, name: str = "syn", **kw):
    from sushitui.dataset.synthetic import generate_dataset

    root = tmp_path / "src"
    kw.setdefault("items_per_dir", 25)
    generate_dataset(root, n, seed=3, **kw)
    return register(name, root), root


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with its kind, size, mtime and content hash."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            state[str(p.relative_to(root))] = ("dir", os.lstat(p).st_mtime_ns)
        for f in filenames:
            p = Path(dirpath) / f
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            state[str(p.relative_to(root))] = ("file", st.st_size, st.st_mtime_ns, st.st_mode, digest)
    return state


def captions_by_base(dataset_id: int) -> dict[str, tuple[str, str]]:
    """base name -> (type, content) of each item's main caption."""
    from sushitui.store import Caption, Item

    out = {}
    q = (
        Caption.select(Item.base_name, Caption.type, Caption.content)
        .join(Item)
        .where((Item.dataset == dataset_id) & (Caption.subtype.in_(["main", ""])))
        .tuples()
    )
    for base, ctype, content in q:
        out[base] = (ctype, content)
    return out
