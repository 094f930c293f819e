"""Removing an item moves its image, captions and sidecars to the trash (the user's
freedesktop trash, or .trash/ in the dataset when that trash is on another device), takes
it out of the index, and can be undone."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from urllib.parse import unquote

import pytest

from sushitui.dataset.synthetic import png_bytes


def _folder(root: Path) -> Path:
    for i, name in enumerate(("a", "b", "sub/c")):
        path = root / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(64, 48, seed=i))
        path.with_suffix(".txt").write_text(f"tag_{name[-1]}, common", encoding="utf-8")
    (root / "a.json").write_text("{}", encoding="utf-8")  # a sidecar named after a
    (root / "a.png.xmp").write_text("<x/>", encoding="utf-8")  # and one named after its image
    (root / "ab.txt").write_text("not a's", encoding="utf-8")  # only looks like one
    return root


@pytest.fixture
def ds(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    dataset, _ = add_dataset(DatasetSettings(name="pics", root_path=str(_folder(tmp_path / "pics"))))
    return dataset


def _ids(ds) -> dict[str, int]:
    from sushitui.store import Item

    return {i.group_key: i.id for i in Item.select().where(Item.dataset == ds.id)}


def _trash() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "Trash"


def test_remove_moves_every_file_to_the_freedesktop_trash_and_restore_brings_it_back(ds):
    from sushitui.dataset.marks import item_marks, set_flag, set_rating
    from sushitui.dataset.remove import remove_items, restore

    root = Path(ds.root_path)
    ids = _ids(ds)
    set_rating([ids["a"]], 4)
    set_flag([ids["a"]], "reg")
    removal = remove_items(ds, [ids["a"]], home=True)
    assert removal.problems == []
    gone = {"a.png", "a.txt", "a.json", "a.png.xmp"}
    assert not any((root / n).exists() for n in gone)
    assert (root / "ab.txt").exists() and (root / "b.png").exists()
    assert {Path(f.trashed).name for f in removal.files} == gone
    assert {p.name for p in (_trash() / "files").iterdir()} == gone
    info = (_trash() / "info" / "a.png.trashinfo").read_text("utf-8")
    assert "[Trash Info]" in info and unquote(info.split("Path=")[1].splitlines()[0]) == str(root / "a.png")
    assert "a" not in _ids(ds)
    assert "a" not in json.loads((root / ".sushitui" / "marks.json").read_text("utf-8"))["items"]

    assert restore(removal) == []
    assert all((root / n).exists() for n in gone)
    assert list((_trash() / "files").iterdir()) == [] and list((_trash() / "info").iterdir()) == []
    back = _ids(ds)["a"]
    assert removal.restored_ids == [back]
    assert item_marks(back).rating == 4 and item_marks(back).flags == {"reg"}


def test_a_dataset_on_another_device_uses_its_own_trash_folder(ds, monkeypatch):
    from sushitui.dataset import remove as remove_mod
    from sushitui.dataset.remove import remove_items, restore

    root = Path(ds.root_path)
    real_device = remove_mod._device
    monkeypatch.setattr(
        remove_mod, "_device", lambda p: -1 if str(p).startswith(str(remove_mod.home_trash())) else real_device(p)
    )
    assert not remove_mod.uses_home_trash(root)
    removal = remove_items(ds, [_ids(ds)["sub/c"]])
    assert removal.where.startswith(str(root / ".trash"))
    moved = sorted(Path(f.trashed).relative_to(removal.where).as_posix() for f in removal.files)
    assert moved == ["sub/c.png", "sub/c.txt"]
    assert not (_trash() / "files").exists()
    from sushitui.dataset.registry import reindex

    reindex(ds)  # the scanner never indexes what is in .trash/
    assert "sub/c" not in _ids(ds)
    restore(removal)
    assert (root / "sub" / "c.png").exists() and "sub/c" in _ids(ds)


def test_restore_never_overwrites_a_file_that_came_back_meanwhile(ds):
    from sushitui.dataset.remove import remove_items, restore

    root = Path(ds.root_path)
    removal = remove_items(ds, [_ids(ds)["b"]], home=True)
    (root / "b.txt").write_text("new caption", encoding="utf-8")
    problems = restore(removal)
    assert any("b.txt" in p and "exists again" in p for p in problems)
    assert (root / "b.txt").read_text("utf-8") == "new caption"
    assert (root / "b.png").exists()


def test_cli_item_remove_prints_where_the_files_went(tmp_path, monkeypatch, capsys):
    from sushitui.cli import main

    root = _folder(tmp_path / "pics")
    monkeypatch.setenv("SUSHITUI_DB", str(tmp_path / "db.sqlite"))
    assert main(["dataset", "add", "pics", str(root)]) == 0
    capsys.readouterr()
    assert main(["item", "remove", "pics", "b", "sub/c"]) == 0
    out = capsys.readouterr().out
    assert "removed 2 item(s)" in out
    assert f"{root / 'b.png'} -> {_trash() / 'files' / 'b.png'}" in out
    assert f"{root / 'sub' / 'c.txt'} -> {_trash() / 'files' / 'c.txt'}" in out
    assert main(["item", "remove", "pics", "a", "--dataset-trash", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["removed"] == 1 and all(f["to"].startswith(str(root / ".trash")) for f in data["files"])
    assert main(["items", "pics", "--json"]) == 0
    assert capsys.readouterr().out.strip() == ""
    assert main(["item", "remove", "pics", "zzz"]) == 1
    assert "no item 'zzz'" in capsys.readouterr().err


def test_browser_and_detail_remove_with_d_and_undo_with_u(tmp_path, db_path, monkeypatch):
    from tui_support import make_dataset, open_browser, settle

    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.widgets.confirm import ConfirmDialog

    monkeypatch.setenv("SUSHITUI_IMAGES", "off")
    root = tmp_path / "ds"
    make_dataset(db_path, root, 5, nested=False)
    app = SushiApp(db_path, first_start=False)

    def images() -> set[str]:
        return {p.name for p in root.glob("*.png")}

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            before = images()
            first = browser.grid.current.name
            await pilot.press("D")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
            await pilot.press("y")
            await settle(pilot, lambda: f"{first}.png" not in images(), what="the image in the trash")
            await settle(pilot, lambda: browser.state.total == 4, what="the browser shows 4")
            assert (_trash() / "files" / f"{first}.png").exists()
            await pilot.press("U")
            await settle(pilot, lambda: images() == before, what="undo")
            await settle(pilot, lambda: browser.state.total == 5, what="back in the browser")

            await pilot.press("enter")
            await settle(
                pilot,
                lambda: isinstance(app.screen, ItemDetailScreen) and app.screen.view is not None,
                what="item detail",
            )
            detail = app.screen
            shown = detail.view.base_name
            await pilot.press("D")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
            await pilot.press("y")
            await settle(
                pilot, lambda: detail.view is not None and detail.view.base_name != shown, what="the next item shows"
            )
            assert f"{shown}.png" not in images()
            await pilot.press("U")
            await settle(
                pilot, lambda: detail.view is not None and detail.view.base_name == shown, what="undo in detail"
            )
            assert images() == before

    asyncio.run(go())
