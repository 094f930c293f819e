"""Item detail split into panes (issue 15 §4): the three bugs the split fixes.

1. An edit still unsaved when the user quits (younger than the 500 ms autosave) is
   written on the way out; when that write fails the user hears of it: a notification
   while the app runs, or a message on stderr after it has exited. It was dropped.
2. A failed item load that arrives after a newer item was shown must not clear that
   item's editors (the failure was posted without the load sequence check).
3. An edit made in the All-captions list goes through the same save as the panes: when
   it cannot be written it stays as an unsaved edit (it was thrown away).
"""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import pytest
from detail_helpers import ScreenApp, make_dataset, screen_text, sync
from tui_support import settle


@pytest.fixture
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


def _refuse_writes_under(monkeypatch, root):
    """Writing a caption under ``root`` fails as on a read-only folder (tests run as
    root, so permission bits would not bind)."""
    import tempfile

    from sushitui.dataset import caption_files

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*a, dir=None, **kw):
        if dir is not None and str(dir).startswith(str(root)):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*a, dir=dir, **kw)

    monkeypatch.setattr(caption_files.tempfile, "mkstemp", mkstemp)


def _folder(db_path, root, captions):
    from sushitui.store import open_database

    database = open_database(db_path)
    try:
        ds, ids = make_dataset(root, captions)
        return ds.id, ids
    finally:
        database.close()


def _run_app(monkeypatch, db_path, drive):
    """``sushitui`` with no command (the CLI's ``run_app``), with the terminal replaced by a
    Pilot that runs ``drive(app, pilot)``; returns run's exit code."""
    from sushitui.tui import app as app_module

    def headless_run(self, *args, **kwargs):
        self.first_start = False  # no dictionary load in a test

        async def go():
            async with self.run_test(size=(120, 40)) as pilot:
                await drive(self, pilot)

        asyncio.run(go())

    monkeypatch.setattr(app_module.SushiApp, "run", headless_run)
    from argparse import Namespace

    from sushitui.cli.app_cmd import run_app

    return run_app(Namespace(db=str(db_path), demo=False))


def test_an_edit_that_cannot_be_saved_on_quit_is_printed_after_exit(db_path, tmp_path, monkeypatch, capsys, no_images):
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    root = tmp_path / "ds"
    _ds, ids = _folder(db_path, root, {"a": "1girl, solo", "b": "cat"})

    async def drive(app, pilot):
        await settle(pilot, lambda: app.screen_stack and app.first_start_done, what="started")
        app.push_screen(ItemDetailScreen(ids[0], ids))
        screen = app.screen
        await settle(pilot, lambda: screen.view is not None, what="item loaded")
        _refuse_writes_under(monkeypatch, root)
        await pilot.press("a", *"smile", "enter", "escape")
        await pilot.press("ctrl+q")  # well inside the autosave delay

    _run_app(monkeypatch, db_path, drive)
    err = capsys.readouterr().err
    assert (root / "a.txt").read_text() == "1girl, solo"
    assert "not saved" in err.lower() and "a.txt" in err, err
    assert "read-only" in err, "the reason is given"
    assert "1girl, solo, smile" in err, "the edit itself is printed, so it can be typed again"


def test_quick_tagging_toggles_that_cannot_be_saved_on_quit_are_printed_after_exit(
    db_path, tmp_path, monkeypatch, capsys, no_images
):
    from sushitui.dataset.item_view import set_presets
    from sushitui.store import open_database
    from sushitui.tui.screens.quick_tag import QuickTagScreen

    root = tmp_path / "ds"
    ds_id, ids = _folder(db_path, root, {"a": "1girl", "b": "cat"})
    database = open_database(db_path)
    set_presets(ds_id, ["smile"])
    database.close()

    async def drive(app, pilot):
        await settle(pilot, lambda: app.screen_stack and app.first_start_done, what="started")
        app.push_screen(QuickTagScreen(ds_id, ids))
        screen = app.screen
        # the presets come in their own message, after or before the image: "1" needs both
        await settle(pilot, lambda: screen.editor is not None and screen.presets, what="image and presets loaded")
        _refuse_writes_under(monkeypatch, root)
        await pilot.press("1")  # toggled, not saved yet (Enter saves)
        await pilot.press("ctrl+q")

    _run_app(monkeypatch, db_path, drive)
    err = capsys.readouterr().err
    assert (root / "a.txt").read_text() == "1girl"
    assert "not saved" in err.lower() and "a.txt" in err and "1girl, smile" in err, err


@pytest.mark.slow
def test_an_edit_that_cannot_be_saved_when_the_screen_closes_is_shown(db_path, tmp_path, monkeypatch, no_images):
    """ctrl+o goes back to the datasets, closing the item detail under the user's edit:
    the app still runs, so the failure is a notification."""
    from sushitui.tui import app as app_module
    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.datasets import DatasetsScreen
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    root = tmp_path / "ds"
    _ds, ids = _folder(db_path, root, {"a": "1girl, solo", "b": "cat"})
    notes: list[str] = []

    class App(SushiApp):
        CSS_PATH = str(Path(app_module.__file__).parent / SushiApp.CSS_PATH)  # relative to this subclass otherwise

        def notify(self, message, *, title="", severity="information", **kw):
            notes.append(f"{severity}: {title} {message}")
            return super().notify(message, title=title, severity=severity, **kw)

    async def go():
        app = App(db_path, first_start=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen), what="datasets")
            app.push_screen(ItemDetailScreen(ids[0], ids))
            screen = app.screen
            await settle(pilot, lambda: screen.view is not None, what="item loaded")
            _refuse_writes_under(monkeypatch, root)
            await pilot.press("a", *"smile", "enter", "escape", "ctrl+o")
            await settle(pilot, lambda: any(n.startswith("error") for n in notes), what="an error notification")

    asyncio.run(go())
    errors = [n for n in notes if n.startswith("error")]
    assert any("a.txt" in n and "read-only" in n and "1girl, solo, smile" in n for n in errors), notes


@pytest.mark.slow
@sync
async def test_a_late_failed_load_does_not_clear_the_newer_item(db, tmp_path, monkeypatch):
    from sushitui.store import Item
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    root = tmp_path / "d"
    _ds, ids = make_dataset(root, {"a": "1girl, solo", "b": "cat, dog", "c": "tree"})
    real_get_by_id = Item.get_by_id.__func__
    slow_failure = {"on": False}

    def get_by_id(cls, pk):
        if slow_failure["on"] and cls is Item and pk == ids[1]:
            time.sleep(0.6)  # a slow disk, then the item is gone
            raise Item.DoesNotExist(f"item {pk} was removed")
        return real_get_by_id(cls, pk)

    monkeypatch.setattr(Item, "get_by_id", classmethod(get_by_id))
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        slow_failure["on"] = True
        await pilot.press("right")  # b: its load fails, late
        await pilot.pause(0.15)
        await pilot.press("left")  # back on a before b's failure arrives
        await settle(
            pilot,
            lambda: screen.view is not None and screen.view.base_name == "a" and screen.index == 0,
            what="a shown again",
        )
        await asyncio.sleep(0.8)  # b's failure arrives now
        await settle(pilot)
        assert screen.view is not None and screen.view.base_name == "a"
        assert screen.editor is not None and screen.editor.tags == ["1girl", "solo"]
        assert "could not be loaded" not in screen_text(app)


@sync
async def test_an_all_captions_edit_that_cannot_be_saved_stays_as_an_unsaved_edit(db, tmp_path, monkeypatch):
    from sushitui.store import Item
    from sushitui.tui.screens.item_detail import CaptionEditDialog, ItemDetailScreen

    root = tmp_path / "d"
    _ds, ids = make_dataset(
        root,
        {"a": "1girl, solo", "b": "cat"},
        groups={"g": {"source": None, "target": None, "instruction": "make the sky red", "": "sky"}},
    )
    by_name = {Item.get_by_id(i).base_name: i for i in ids}
    app = ScreenApp(lambda: ItemDetailScreen(by_name["g"], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.query_one("#caption-tabs").active = "tab-all"
        await pilot.pause()
        olist = screen.query_one("#all-captions")
        olist.highlighted = [c.type for c in screen.view.captions].index("instruction")
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, CaptionEditDialog), what="the caption editor")
        _refuse_writes_under(monkeypatch, root)
        await pilot.press(*" slowly", "ctrl+s")
        await settle(pilot)
        assert (root / "g_instruction.txt").read_text() == "make the sky red"
        # The edit is kept where the item's edits live: the instruction tab, unsaved.
        assert screen.query_one("#text-instruction").text == "make the sky red slowly"
        assert "unsaved" in screen_text(app)
        monkeypatch.undo()  # the folder is writable again: the next save writes it
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (root / "g_instruction.txt").read_text() == "make the sky red slowly"


@sync
async def test_an_all_captions_tag_edit_is_undoable_like_any_tag_edit(db, tmp_path):
    from sushitui.tui.screens.item_detail import CaptionEditDialog, ItemDetailScreen

    root = tmp_path / "d"
    _ds, ids = make_dataset(root, {"a": "1girl, solo", "b": "cat"})
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.query_one("#caption-tabs").active = "tab-all"
        await pilot.pause()
        screen.query_one("#all-captions").highlighted = 0
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, CaptionEditDialog), what="the caption editor")
        await pilot.press(*", smile", "ctrl+s")
        await settle(pilot)
        assert (root / "a.txt").read_text() == "1girl, solo, smile"
        await pilot.press("ctrl+z")  # on the Tags tab, like any tag edit
        await settle(pilot)
        assert screen.editor.tags == ["1girl", "solo"]


def test_the_save_flow_runs_without_textual():
    """The save/conflict flow is plain code: importing it loads no Textual or Rich."""
    import subprocess
    import sys

    code = "import sys, sushitui.tui.edit_flow; print(sorted(m for m in ('textual', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
