"""Pilot tests of the datasets screen: new-dataset form validation, scan with progress
and cancel, remove the index (files untouched), problems view; the first-start worker;
the demo dataset."""

from __future__ import annotations

import asyncio
import threading

import pytest
from tui_support import make_dataset, screen_text, settle


@pytest.fixture(autouse=True)
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


def _app(db_path, **kw):
    from sushitui.tui.app import SushiApp

    kw.setdefault("first_start", False)
    return SushiApp(db_path, **kw)


async def _fill(pilot, app, field: str, text: str) -> None:
    from textual.widgets import Input

    box = app.screen.query_one(f"#f-{field}", Input)
    box.value = text
    await pilot.pause()


def _errors(app) -> dict[str, str]:

    out = {}
    for w in app.screen.query(".field-error"):
        if w.display:
            out[w.id.removeprefix("e-")] = str(w.render())
    return out


@pytest.mark.slow
def test_new_dataset_form_validates_then_scans(tmp_path, db_path):
    from sushitui.dataset.synthetic import generate_dataset
    from sushitui.tui.screens.datasets import DatasetForm, DatasetsScreen

    make_dataset(db_path, tmp_path / "existing", 3, name="taken", nested=False)
    root = tmp_path / "new"
    generate_dataset(root, 25, seed=5, nested=False)
    a_file = root / "img_000001.png"
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen) and app.screen.rows, what="list")
            await pilot.press("n")
            await settle(pilot, lambda: isinstance(app.screen, DatasetForm), what="form")
            await pilot.pause()
            assert app.focused is app.screen.query_one("#f-name")  # typing goes to the name
            await pilot.press("ctrl+s")
            errors = _errors(app)
            assert "name is required" in errors["name"] and "required" in errors["root_path"]
            await _fill(pilot, app, "name", "taken")
            await _fill(pilot, app, "root_path", str(tmp_path / "nope"))
            await _fill(pilot, app, "max_depth", "-2")
            await _fill(pilot, app, "caption_types", "alt=poetry")
            await pilot.press("ctrl+s")
            errors = _errors(app)
            assert "already exists" in errors["name"]
            assert "does not exist" in errors["root_path"]
            assert "≥ 0" in errors["max_depth"]
            assert "not a caption type" in errors["caption_types"]
            await _fill(pilot, app, "name", "x" * 101)
            await _fill(pilot, app, "root_path", str(a_file))
            await pilot.press("ctrl+s")
            errors = _errors(app)
            assert "at most 100" in errors["name"] and "a file, not a folder" in errors["root_path"]
            assert isinstance(app.screen, DatasetForm)  # nothing registered yet
            # typed like a user: the form starts in the name field, Tab goes to the folder
            await _fill(pilot, app, "name", "")
            await _fill(pilot, app, "root_path", "")
            app.screen.query_one("#f-name").focus()
            await pilot.press(*"fresh", "tab", *str(root))
            assert app.screen.query_one("#f-name").value == "fresh"
            assert app.screen.query_one("#f-root_path").value == str(root)
            await _fill(pilot, app, "max_depth", "")
            await _fill(pilot, app, "caption_types", "alt=natural_language")
            await pilot.press("ctrl+s")
            screen = app.screen
            assert isinstance(screen, DatasetsScreen)
            await settle(
                pilot, lambda: any(r["name"] == "fresh" and r["items"] == 25 for r in screen.rows), what="scan done"
            )
            text = screen_text(app)
            assert "fresh" in text and "25" in text
            await settle(pilot, lambda: any("Indexed fresh" in n.message for n in app._notifications), what="notice")

    asyncio.run(go())
    from sushitui.store import Dataset, open_database

    db = open_database(db_path)
    try:
        ds = Dataset.get(Dataset.name == "fresh")
        assert ds.caption_types == {"alt": "natural_language"}
    finally:
        db.close()


@pytest.mark.slow
def test_cancel_a_running_scan_keeps_the_ui_and_what_was_indexed(tmp_path, db_path, monkeypatch):
    """The scan blocks in its progress callback until the user pressed c: the UI stays
    responsive meanwhile (the list reacts to keys) and the cancel is honoured."""
    from sushitui.dataset import registry
    from sushitui.dataset.synthetic import generate_dataset
    from sushitui.tui.screens.datasets import DatasetsScreen

    make_dataset(db_path, tmp_path / "other", 3, name="other", nested=False)
    root = tmp_path / "big"
    generate_dataset(root, 400, seed=2, nested=False)
    pressed = threading.Event()
    real_add = registry.add_dataset

    def slow_add(settings, progress=None, cancel=None):
        def gate(event):
            if progress is not None:
                progress(event)
            pressed.wait(10)

        return real_add(settings, progress=gate, cancel=cancel)

    monkeypatch.setattr(registry, "add_dataset", slow_add)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await settle(pilot, lambda: isinstance(screen, DatasetsScreen) and screen.rows, what="list")
            screen._create(
                __import__("sushitui.tui.screens.datasets", fromlist=["validate_form"]).validate_form(
                    {
                        "name": "big",
                        "root_path": str(root),
                        "type": "auto",
                        "caption_suffixes": "main,alt",
                        "image_suffixes": "source,target",
                        "primary_suffix": "",
                        "recursive": True,
                        "max_depth": "",
                        "read_exif": False,
                        "caption_types": "",
                    },
                    set(),
                    False,
                )[0]
            )
            await settle(pilot, lambda: screen.query_one("#scan-panel").display, what="progress panel")
            # UI responsive while the worker is blocked: the command palette opens and closes
            await pilot.press("ctrl+p")
            await settle(pilot, lambda: app.screen is not screen, what="palette")
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is screen, what="palette closed")
            await pilot.press("c")
            pressed.set()
            await settle(pilot, lambda: screen.last_scan is not None, what="scan end")
            assert screen.last_scan.cancelled, screen.last_scan.error
            # notifications are messages: they land on the next turn of the loop
            await settle(pilot, lambda: any("cancelled" in n.message for n in app._notifications), what="notice")
            await settle(pilot, lambda: any(r["name"] == "big" for r in screen.rows), what="list refresh")
            big = next(r for r in screen.rows if r["name"] == "big")
            assert big["items"] < 400

    asyncio.run(go())


def test_remove_index_asks_and_leaves_files(tmp_path, db_path):
    from sushitui.tui.screens.datasets import DatasetsScreen
    from sushitui.tui.widgets.confirm import ConfirmDialog

    root = tmp_path / "ds"
    make_dataset(db_path, root, 8, name="gone", nested=False)
    files_before = sorted(p.name for p in root.iterdir())
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await settle(pilot, lambda: isinstance(screen, DatasetsScreen) and screen.rows, what="list")
            await pilot.press("d")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
            assert "NOT deleted" in screen_text(app)
            await pilot.press("n")  # no: nothing happens
            await pilot.pause(0.2)
            assert len(screen.rows) == 1
            await pilot.press("d")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirm again")
            await pilot.press("y")
            await settle(pilot, lambda: not screen.rows, what="removed")
            assert "No datasets yet" in screen_text(app)

    asyncio.run(go())
    assert sorted(p.name for p in root.iterdir()) == files_before


def test_problems_of_the_last_scan_are_viewable(tmp_path, db_path, testdata):
    import shutil

    from sushitui.tui.screens.datasets import DatasetsScreen, ProblemsScreen

    root = tmp_path / "bad"
    shutil.copytree(testdata / "hostile-images", root)
    (root / "zero.png").write_bytes(b"")
    from tui_support import register

    register(db_path, root, "bad")
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 30)) as pilot:
            screen = app.screen
            await settle(pilot, lambda: isinstance(screen, DatasetsScreen) and screen.rows, what="list")
            assert screen.rows[0]["problems"]
            await pilot.press("p")
            await settle(pilot, lambda: isinstance(app.screen, ProblemsScreen), what="problems")
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "zero.png" in text and "truncated" in text.lower()
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is screen, what="back")

    asyncio.run(go())


@pytest.mark.slow
def test_first_start_loads_groups_and_dictionary_in_a_worker(tmp_path, db_path, monkeypatch):
    import json
    import shutil

    from sushitui import config
    from sushitui.tui.screens.datasets import DatasetsScreen

    # a small taglist of the shipped shape (the full one is the dictionary's benchmark)
    shipped = config.taglist_dir()
    small = tmp_path / "taglist"
    shutil.copytree(shipped / "groups", small / "groups")
    (small / "General.json").write_text(json.dumps({f"tag_{i}": 5000 - i for i in range(3000)}))
    (small / "Character.json").write_text(json.dumps({"hatsune_miku": 100}))
    monkeypatch.setattr(config, "taglist_dir", lambda: small)
    app = _app(db_path, first_start=True)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            # the UI is there before the dictionary is loaded
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen), what="datasets screen")
            await settle(pilot, lambda: app.first_start_done, timeout=60, what="first-start worker")

    asyncio.run(go())
    from sushitui.store import DictionaryTag, TagGroup, open_database

    db = open_database(db_path)
    try:
        assert DictionaryTag.select().count() == 3001
        names = {g.name for g in TagGroup.select()}
        assert {"Character", "General", "Meta"} <= names
    finally:
        db.close()


def test_demo_dataset_is_generated_registered_and_reused(tmp_path, db_path):
    from sushitui.dataset.demo import prepare_demo
    from sushitui.dataset.registry import get_dataset
    from sushitui.store import open_database

    db = open_database(db_path)
    try:
        name = prepare_demo(tmp_path / "data", n_items=30)
        ds = get_dataset(name)
        assert ds.total_items == 30 and (tmp_path / "data" / "demo").is_dir()
        assert prepare_demo(tmp_path / "data", n_items=30) == name  # second start reuses it
    finally:
        db.close()
    app = _app(db_path, open_dataset="demo")

    async def go():
        from sushitui.tui.screens.browser import BrowserScreen

        async with app.run_test(size=(100, 30)) as pilot:
            await settle(
                pilot,
                lambda: isinstance(app.screen, BrowserScreen) and app.screen.state.total == 30,
                what="demo browser",
            )

    asyncio.run(go())


@pytest.mark.slow
def test_edit_settings_saves_and_offers_a_reindex(tmp_path, db_path):
    from sushitui.tui.screens.datasets import DatasetForm, DatasetsScreen
    from sushitui.tui.widgets.confirm import ConfirmDialog

    root = tmp_path / "ds"
    make_dataset(db_path, root, 6, name="editme", nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await settle(pilot, lambda: isinstance(screen, DatasetsScreen) and screen.rows, what="list")
            await pilot.press("e")
            await settle(pilot, lambda: isinstance(app.screen, DatasetForm), what="settings form")
            form = app.screen
            assert form.query_one("#f-name").disabled and form.query_one("#f-name").value == "editme"
            await _fill(pilot, app, "max_depth", "2")
            await _fill(pilot, app, "caption_suffixes", "main,alt,notes")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="reindex question")
            await pilot.press("y")
            await settle(pilot, lambda: any("Indexed editme" in n.message for n in app._notifications), what="reindex")

    asyncio.run(go())
    from sushitui.store import Dataset, open_database

    db = open_database(db_path)
    try:
        ds = Dataset.get(Dataset.name == "editme")
        assert ds.max_depth == 2 and list(ds.caption_suffixes) == ["main", "alt", "notes"]
    finally:
        db.close()
