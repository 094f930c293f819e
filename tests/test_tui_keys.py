"""Keys people can find and change: every binding has an id and a tooltip, a keymap.toml
in the config directory remaps them (and a bad one is reported, not a crash), and the
command palette lists each action of a screen once."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from collections import Counter

import pytest
from tui_support import make_dataset, open_browser, settle


@pytest.fixture
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    (home / "sushitui").mkdir(parents=True)
    return home / "sushitui"


def _app(db_path):
    from sushitui.tui.app import SushiApp

    return SushiApp(db_path, first_start=False)


def test_every_binding_of_every_screen_and_widget_has_an_id_and_a_tooltip():
    from textual.binding import Binding

    import sushitui.tui as package

    owners, missing = [], []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or "BINDINGS" not in vars(cls):
                continue
            owners.append(cls.__name__)
            for binding in vars(cls)["BINDINGS"]:
                if not isinstance(binding, Binding) or not binding.id or not binding.tooltip.strip():
                    missing.append(f"{cls.__name__}: {binding!r}")
    # the walk really reached the screens, dialogs and the app
    assert {"SushiApp", "BrowserScreen", "ItemDetailScreen", "QuickTagScreen", "ConfirmDialog", "HelpScreen"} <= set(
        owners
    )
    assert missing == []


def test_the_same_action_has_the_same_key_and_id_on_every_screen():
    """Back, next/previous item, undo, tag cursor: one id on every screen (one keymap line
    moves it everywhere) and one common default key. Ids are unique within a class."""
    import re

    from sushitui.tui.keymap import all_bindings

    ids = all_bindings()
    assert "app.quit" in ids and "browser.quick_tag" in ids
    for binding_id, pairs in ids.items():
        assert re.fullmatch(r"[a-z_]+\.[a-z0-9_]+", binding_id), binding_id
        owners = [cls.__name__ for cls, _b in pairs]
        assert len(owners) == len(set(owners)), f"{binding_id} twice in one class: {owners}"
    screens = {cls.__name__ for cls, _b in ids["nav.back"]}
    assert {
        "BrowserScreen",
        "ItemDetailScreen",
        "QuickTagScreen",
        "RunsScreen",
        "DictionaryScreen",
        "GroupsScreen",
    } <= screens
    for binding_id, common in (
        ("nav.back", "escape"),
        ("dialog.cancel", "escape"),
        ("item.next", "right"),
        ("item.prev", "left"),
        ("edit.undo", "ctrl+z"),
        ("tags.cursor_down", "down"),
    ):
        for cls, binding in ids[binding_id]:
            assert common in binding.key.split(","), f"{cls.__name__}: {binding_id} is {binding.key}, not {common}"


@pytest.mark.slow
def test_keymap_file_remaps_quick_tag_and_quit_and_help_shows_the_new_keys(tmp_path, db_path, no_images, config_home):
    from sushitui.tui.screens.browser import BrowserScreen
    from sushitui.tui.screens.quick_tag import QuickTagScreen
    from sushitui.tui.widgets.help import HelpScreen

    (config_home / "keymap.toml").write_text('"browser.quick_tag" = "w"\n"app.quit" = "ctrl+q,f10"\n', encoding="utf-8")
    make_dataset(db_path, tmp_path / "ds", 6, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            assert not list(app._notifications)  # a good file: nothing to report
            await pilot.press("f1")
            await settle(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
            entries = {e.description: e.keys for e in app.screen.entries}
            assert entries["Quick tag"] == ["w"]
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is browser, what="help closed")
            await pilot.press("q")  # the old key does nothing now
            await pilot.pause()
            assert isinstance(app.screen, BrowserScreen)
            await pilot.press("w")
            await settle(pilot, lambda: isinstance(app.screen, QuickTagScreen), what="quick tag on w")
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is browser, what="back to the browser")
            assert app.return_code is None
            await pilot.press("f10")
            await pilot.pause()
            assert app.return_code == 0

    asyncio.run(go())


def _notes(app) -> str:
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)


@pytest.mark.slow
def test_bad_keymap_entries_are_reported_by_line_and_the_good_ones_still_apply(
    tmp_path, db_path, no_images, config_home
):
    from sushitui.tui.screens.quick_tag import QuickTagScreen

    keymap = config_home / "keymap.toml"
    keymap.write_text(
        "# my keys\n"
        '"browser.quikc_tag" = "z"\n'
        '"browser.export" = "ctrl+"\n'
        '"browser.search" = "hyperspace+k"\n'
        '"browser.quick_tag" = "w"\n',
        encoding="utf-8",
    )
    make_dataset(db_path, tmp_path / "ds", 6, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            notes = _notes(app)
            assert str(keymap) in notes
            assert "line 2" in notes and "browser.quikc_tag" in notes and "did you mean browser.quick_tag" in notes
            assert "line 3" in notes and "line 4" in notes
            assert "Fix the file" in notes
            await pilot.press("w")  # the good line applies
            await settle(pilot, lambda: isinstance(app.screen, QuickTagScreen), what="quick tag on w")
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is browser, what="back")
            await pilot.press("slash")  # the bad remap of search left its key alone
            await pilot.pause()
            assert app.focused is not None and app.focused.id == "browser-search"

    asyncio.run(go())


def test_a_keymap_that_is_not_toml_is_reported_and_its_good_lines_apply(tmp_path, db_path, no_images, config_home):
    from sushitui.tui.screens.quick_tag import QuickTagScreen

    keymap = config_home / "keymap.toml"
    keymap.write_text('"app.quit" = "f10"\nquick tag is w please\n"browser.quick_tag" = "w"\n', encoding="utf-8")
    make_dataset(db_path, tmp_path / "ds", 6, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await open_browser(app, pilot)
            notes = _notes(app)
            assert str(keymap) in notes and "not valid TOML" in notes and "line 2" in notes
            await pilot.press("w")
            await settle(pilot, lambda: isinstance(app.screen, QuickTagScreen), what="quick tag on w")
            await pilot.press("f10")
            await pilot.pause()
            assert app.return_code == 0

    asyncio.run(go())


async def _palette_titles(app, pilot) -> list[str]:
    from textual.command import CommandList, CommandPalette

    await pilot.press("ctrl+p")
    await settle(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
    palette = app.screen
    counts: list[int] = []

    def stable() -> bool:  # providers answer asynchronously: wait until the list stops growing
        counts.append(palette.query_one(CommandList).option_count)
        return len(counts) > 5 and counts[-1] > 0 and counts[-1] == counts[-5]

    await settle(pilot, stable, what="the palette's commands")
    titles = [str(getattr(o.prompt, "plain", o.prompt)).split("\n")[0] for o in palette.query_one(CommandList).options]
    await pilot.press("escape")
    return titles


def _actions(titles: list[str]) -> Counter:
    """'item: Save (ctrl+s)' and 'item: Save' are the same command: count by description."""
    out: Counter = Counter()
    for title in titles:
        name = title.split(": ", 1)[-1]
        if name.endswith(")") and " (" in name:
            name = name.rsplit(" (", 1)[0]
        out[name] += 1
    return out


@pytest.mark.slow
def test_palette_lists_each_action_once_on_item_detail_and_quick_tag(tmp_path, db_path, no_images):
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.screens.quick_tag import QuickTagScreen

    make_dataset(db_path, tmp_path / "ds", 6, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            for key, screen_type, wanted in (("enter", ItemDetailScreen, "Save"), ("q", QuickTagScreen, "Save+next")):
                await pilot.press(key)
                await settle(pilot, lambda: isinstance(app.screen, screen_type), what=screen_type.__name__)
                await settle(pilot)
                screen = app.screen
                titles = await _palette_titles(app, pilot)
                await settle(pilot, lambda: app.screen is screen, what="palette closed")
                counts = _actions(titles)
                assert counts[wanted] == 1, titles
                assert counts["Quit"] == 1, titles
                assert [name for name, n in counts.items() if n > 1] == [], titles
                await pilot.press("escape")
                await settle(pilot, lambda: app.screen is browser, what="back to the browser")

    asyncio.run(go())
