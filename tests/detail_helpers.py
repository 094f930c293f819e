"""Shared set-up for the item detail / quick tagging tests: a real folder scanned by the
real scanner, and a tiny App that pushes one screen on a database in tmp_path."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image
from textual.app import App


def write_image(path: Path, size=(64, 48), color=(200, 80, 40), quality: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, color)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=quality or 85)
    else:
        img.save(path)


def make_dataset(
    root: Path, captions: dict[str, str], *, groups: dict[str, dict[str, str]] | None = None, name: str = "ds"
):
    """Images ``<base>.png`` with ``<base>.txt`` = captions[base]; groups: base -> {suffix: text}
    where image suffixes get a PNG and caption suffixes a .txt. Returns (dataset, [item ids by name])."""
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import Item

    root.mkdir(parents=True, exist_ok=True)
    for i, (base, text) in enumerate(captions.items()):
        write_image(root / f"{base}.png", color=(40 * i % 255, 120, 200))
        if text is not None:
            (root / f"{base}.txt").write_text(text, encoding="utf-8")
    for base, parts in (groups or {}).items():
        for suffix, text in parts.items():
            if suffix in ("source", "target", "cref", "mask"):
                write_image(root / f"{base}_{suffix}.png", color=(10, 200 if suffix == "target" else 20, 30))
            elif suffix == "":
                (root / f"{base}.txt").write_text(text, encoding="utf-8")
            else:
                (root / f"{base}_{suffix}.txt").write_text(text, encoding="utf-8")
    ds, report = add_dataset(DatasetSettings(name=name, root_path=str(root)))
    ids = [i.id for i in Item.select().where(Item.dataset == ds.id).order_by(Item.base_name)]
    return ds, ids


class ScreenApp(App):
    """Pushes one screen; records what it was dismissed with."""

    def __init__(self, screen_factory):
        super().__init__()
        self._factory = screen_factory
        self.dismissed = []

    def on_mount(self) -> None:
        self.push_screen(self._factory(), callback=self.dismissed.append)


def sync(fn):
    """Run an ``async def`` test with asyncio.run (no pytest-asyncio here)."""
    import functools
    import inspect

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    wrapper.__signature__ = inspect.signature(fn)
    return wrapper


def screen_text(app) -> str:
    """The characters the current screen puts on the terminal, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
