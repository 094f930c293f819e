"""Stars and flags from single keys: browser (cursor item or selection), item detail and
quick tagging, the same keys and ids on each screen."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tui_support import make_dataset, open_browser, screen_text, settle


@pytest.fixture(autouse=True)
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


def _marks(root: Path) -> dict:
    path = root / ".sushitui" / "marks.json"
    return json.loads(path.read_text("utf-8"))["items"] if path.exists() else {}


def _app(db_path):
    from sushitui.tui.app import SushiApp

    return SushiApp(db_path, first_start=False)


def test_mark_keys_are_the_same_on_every_screen_and_clash_with_nothing():
    from sushitui.tui.keymap import all_bindings
    from sushitui.tui.screens.browser import BrowserScreen
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.screens.quick_tag import QuickTagScreen

    ids = all_bindings()
    for binding_id in (
        "marks.rate_up",
        "marks.rate_down",
        "marks.flag_exclude",
        "marks.flag_needs_work",
        "marks.flag_reg",
    ):
        owners = {cls.__name__: b.key for cls, b in ids[binding_id]}
        assert set(owners) == {"BrowserScreen", "ItemDetailScreen", "QuickTagScreen"}, binding_id
        assert len(set(owners.values())) == 1, owners
    for n in range(6):
        assert {cls.__name__ for cls, _b in ids[f"marks.rate_{n}"]} == {"BrowserScreen", "ItemDetailScreen"}
    for screen in (BrowserScreen, ItemDetailScreen, QuickTagScreen):
        keys = [k.strip() for b in screen.BINDINGS for k in b.key.split(",")]
        assert len(keys) == len(set(keys)), [k for k in keys if keys.count(k) > 1]


def test_browser_rates_the_cursor_item_and_flags_the_selection(tmp_path, db_path):
    root = tmp_path / "ds"
    make_dataset(db_path, root, 6, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            first = browser.grid.current.name
            await pilot.press("4")
            await settle(pilot, lambda: _marks(root).get(first, {}).get("rating") == 4, what="4 stars")
            await pilot.press("greater_than_sign")
            await settle(pilot, lambda: _marks(root).get(first, {}).get("rating") == 5, what="one star more")
            await settle(pilot, lambda: browser.grid.current.size_text.startswith("★5 "), what="the card shows ★5")
            assert "★5" in screen_text(app)
            await settle(pilot)
            await pilot.press("space", "space")  # select the first two (space moves on)
            selected = sorted(browser.selected)
            assert len(selected) == 2
            await pilot.press("E")
            await settle(
                pilot,
                lambda: sum("exclude" in m.get("flags", []) for m in _marks(root).values()) == 2,
                what="both selected flagged",
            )
            await settle(pilot)
            # the query language sees them at once
            search = app.screen.query_one("#browser-search")
            search.value = "flag:exclude"
            await pilot.press("slash", "enter")
            await settle(pilot, lambda: browser.state.total == 2, what="flag:exclude matches 2")
            await pilot.press("E")  # on the selection again: all have it, so it is cleared
            await settle(
                pilot,
                lambda: not any("exclude" in m.get("flags", []) for m in _marks(root).values()),
                what="flag cleared",
            )
            await settle(pilot, lambda: browser.state.total == 0, what="the result follows")

    asyncio.run(go())


def test_item_detail_and_quick_tag_set_marks_and_show_them(tmp_path, db_path):
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.screens.quick_tag import QuickTagScreen

    root = tmp_path / "ds"
    make_dataset(db_path, root, 4, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            name = browser.grid.current.name
            await pilot.press("enter")
            await settle(
                pilot,
                lambda: isinstance(app.screen, ItemDetailScreen) and app.screen.view is not None,
                what="item detail",
            )
            await pilot.press("3", "N")
            await settle(
                pilot,
                lambda: _marks(root).get(name) == {"rating": 3, "flags": ["needs-work"]},
                what="3 stars and needs-work",
            )
            await settle(pilot, lambda: "★★★☆☆ needs-work" in screen_text(app), what="the title shows them")
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is browser, what="back")
            await pilot.press("q")
            await settle(
                pilot,
                lambda: isinstance(app.screen, QuickTagScreen) and app.screen.item_id in app.screen.views,
                what="quick tag",
            )
            qt = app.screen
            await settle(pilot, lambda: "★★★☆☆" in screen_text(app), what="quick tag shows the stars")
            await pilot.press("less_than_sign", "G", "1")  # 1 is still preset 1, not a rating
            await settle(
                pilot,
                lambda: _marks(root).get(name) == {"rating": 2, "flags": ["needs-work", "reg"]},
                what="one star fewer and reg",
            )
            assert qt.editor is not None

    asyncio.run(go())
