"""Helpers shared by the tests/test_dict_*.py files."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from sushitui.tags import dictionary as d


def make_dataset(root: Path, name: str, captions: list[str]):
    """A registered dataset whose items have the given tag captions (real files, scanned)."""
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.dataset.synthetic import png_bytes

    root.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(captions):
        (root / f"img_{i:03d}.png").write_bytes(png_bytes(8, 8, i + 1))
        (root / f"img_{i:03d}.txt").write_text(text, encoding="utf-8")
    ds, report = add_dataset(DatasetSettings(name=name, root_path=str(root)))
    assert not report.problems, report.problems
    return ds


def add_many(rows) -> None:
    """Dictionary rows ``(tag, category, count, *aliases)`` through the import path."""
    from sushitui.tags.dictionary_formats import TagRow

    d.import_rows([TagRow(t, c, n, None, tuple(a), "", f"row {i}") for i, (t, c, n, *a) in enumerate(rows)])


def sync(fn):
    """Run an async test with asyncio.run (pytest-asyncio is not installed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
