"""Pilot tests of the item browser: open a dataset, navigate pages, search, select,
bulk-edit a selection (the caption files change on disk), terminal safety, 80×24."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tui_support import make_dataset, open_browser, register, screen_text, settle


@pytest.fixture
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


def _app(db_path):
    from sushitui.tui.app import SushiApp

    return SushiApp(db_path, first_start=False)


def _caption_tags(root: Path, rel_image: str) -> list[str]:
    from sushitui.tags.normalize import split_tags

    image = root / rel_image
    return split_tags(image.with_suffix(".txt").read_text(encoding="utf-8"))


def test_open_dataset_page_through_and_move_cursor(tmp_path, db_path, no_images):
    make_dataset(db_path, tmp_path / "ds", 50, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            cap = browser.capacity
            assert cap == 5 * 4  # 120 // 24 columns, 36 rows // 9
            assert browser.state.total == 50
            assert browser.position_text() == f"1–{cap} of 50"
            assert f"1–{cap} of 50" in screen_text(app)
            first_names = [c.name for c in browser.grid.page]
            assert first_names == sorted(first_names)  # sorted by file name
            await pilot.press("pagedown")
            await settle(
                pilot, lambda: browser.grid.page and browser.grid.page[0].name != first_names[0], what="page 2"
            )
            assert browser.position_text() == f"{cap + 1}–{2 * cap} of 50"
            await pilot.press("end")
            await settle(pilot, lambda: browser.state.offset == 40, what="last page")
            assert browser.position_text() == "41–50 of 50"
            assert browser.grid.cursor == 9  # the last item is under the cursor
            await pilot.press("home")
            await settle(pilot, lambda: browser.state.offset == 0, what="first page")
            await pilot.press("right", "down")
            assert browser.grid.cursor == 1 + browser.columns
            await pilot.press("s")  # sort by created
            await settle(pilot, lambda: browser.state.sort == "created" and browser.grid.page, what="re-sort")
            assert "sort: created" in screen_text(app)

    asyncio.run(go())


@pytest.mark.slow
def test_search_uses_query_language_and_shows_error_position(tmp_path, db_path, no_images):
    root = tmp_path / "ds"
    make_dataset(db_path, root, 60, nested=False)
    with_tag = sum(1 for p in root.glob("*.txt") if "1girl" in [t.strip() for t in p.read_text().split(",")])
    assert 0 < with_tag < 60
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            await pilot.press("slash")
            await pilot.press(*"1girl", "enter")
            await settle(pilot, lambda: browser.state.total == with_tag, what="filtered count")
            assert browser.position_text().endswith(f"of {with_tag}")
            assert all("1girl" in c.tags or c.tag_count > 3 for c in browser.grid.page)
            await pilot.press("slash", "ctrl+u")
            await pilot.press(*"1girl,, smile", "enter")
            error = browser.query_one("#browser-error")
            await settle(pilot, lambda: error.display, what="query error")
            text = screen_text(app)
            assert "query error at column 7" in text
            # the previous result stays on screen
            assert browser.state.total == with_tag
            # Esc leaves the search bar, not the browser
            await pilot.press("slash", "escape")
            assert app.screen is browser and app.focused is browser.grid

    asyncio.run(go())


@pytest.mark.slow
def test_bulk_add_tag_to_a_selection_writes_exactly_those_files(tmp_path, db_path, no_images):
    root = tmp_path / "ds"
    make_dataset(db_path, root, 12, nested=False, group_fraction=0.0, uncaptioned_fraction=0.0, prose_fraction=0.0)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            page = list(browser.grid.page)
            await pilot.press("space")  # selects item 0 and moves on
            await pilot.press("shift+right")  # range: item 1 and 2
            assert len(browser.selected) == 3
            await pilot.press("t")
            await pilot.pause()
            await pilot.press(*"zz_new_tag", "enter")
            await settle(pilot, lambda: browser.bulk_done_count == 1, what="bulk edit")
            await settle(
                pilot,
                lambda: any("added 'zz_new_tag' to 3 of 3 items" in n.message for n in app._notifications),
                what="bulk summary",
            )
            return page, set(browser.selected)

    page, selected = asyncio.run(go())
    from sushitui.store import Item, open_database

    db = open_database(db_path)
    try:
        paths = {i.id: i.image_path for i in Item.select()}
    finally:
        db.close()
    for card in page:
        tags = _caption_tags(root, paths[card.item_id])
        assert ("zz_new_tag" in tags) == (card.item_id in selected), card.name
    assert len(selected) == 3


@pytest.mark.slow
def test_bulk_remove_on_whole_result(tmp_path, db_path, no_images):
    root = tmp_path / "ds"
    make_dataset(db_path, root, 30, nested=False, group_fraction=0.0, uncaptioned_fraction=0.0, prose_fraction=0.0)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            await pilot.press("slash", *"solo", "enter")
            await settle(
                pilot,
                lambda: browser.state.query == "solo" and browser.state.total is not None and browser.state.total < 30,
                what="search",
            )
            await pilot.press("u")
            from sushitui.tui.screens.bulk_tag import BulkTagDialog

            await settle(pilot, lambda: isinstance(app.screen, BulkTagDialog), what="bulk dialog")
            await pilot.press(*"solo", "ctrl+s")  # ctrl+s applies, as in the other forms
            await settle(pilot, lambda: browser.bulk_done_count == 1, what="bulk remove")
            await settle(pilot, lambda: browser.state.total == 0, what="empty result after removal")
            assert "no matches" in screen_text(app)

    asyncio.run(go())
    for txt in root.glob("*.txt"):
        assert "solo" not in [t.strip() for t in txt.read_text().split(",")]


def test_hostile_and_odd_names_render_without_breaking_the_screen(tmp_path, db_path, monkeypatch, testdata):
    monkeypatch.setenv("SUSHITUI_IMAGES", "unicode")
    import shutil

    root = tmp_path / "hostile"
    shutil.copytree(testdata / "hostile-images", root)
    shutil.copytree(testdata / "kohya-ss-gui-test" / "img with spaces", root / "img with spaces")
    # names a terminal must never interpret: ESC sequences, bidi override, markup brackets
    evil = root / "evil\x1b]52;c;SGVsbG8=\x07\u202ename[bold].png"
    shutil.copy(next(root.rglob("*.jpg")), evil)
    evil.with_suffix(".txt").write_text("[red]tag[/red], \x1b[2Jclear, normal tag", encoding="utf-8")
    register(db_path, root, "hostile")
    # Broken after indexing: one image truncated, one deleted (the scanner already
    # reports the hostile files it could not index; these reach the browser).
    spaces = sorted((root / "img with spaces").rglob("*.jpg"))
    data = spaces[0].read_bytes()
    spaces[0].write_bytes(data[: len(data) // 3])
    spaces[1].unlink()
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(200, 60)) as pilot:
            browser = await open_browser(app, pilot)
            await settle(pilot, lambda: browser.grid._thumbs, what="thumbnails")
            await pilot.pause(0.3)
            text = screen_text(app)
            assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
            assert "\\x1b" in text  # shown escaped, visible to the user
            assert "[red]tag[/red]" in text  # brackets are text, not markup
            reasons = [v for v in browser.grid._thumbs.values() if isinstance(v, str)]
            assert any("truncated" in r for r in reasons), reasons
            assert any("not found" in r for r in reasons), reasons
            assert "⚠ cannot decode" in text and "⚠ file not found" in text
            return text

    text = asyncio.run(go())
    assert "Browse hostile" in text


def test_80x24_layout_fits(tmp_path, db_path, no_images):
    make_dataset(db_path, tmp_path / "ds", 20, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            browser = await open_browser(app, pilot)
            assert browser.columns == 3 and browser.capacity == 6
            lines = screen_text(app).splitlines()
            assert len(lines) == 24
            assert lines[0].startswith(" Browse cats") and lines[0].rstrip().endswith("1–6 of 20")
            assert "Open" in lines[-1] and "palette" in lines[-1]  # footer on the last row
            grid = browser.grid
            assert grid.region.bottom <= 23 and grid.region.right <= 80
            # every card's frame is complete (╭ … ╮ on a row, ╰ … ╯ below)
            top = lines[grid.region.y]
            assert top.count("╭") + top.count("┏") == 3

    asyncio.run(go())


@pytest.mark.slow
def test_command_palette_lists_screens_and_keys(tmp_path, db_path, no_images):
    make_dataset(db_path, tmp_path / "ds", 5, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            titles = [c.title for c in app.get_system_commands(browser)]
            for wanted in (
                "Tag dictionary",
                "Tag groups and aliases",
                "Training runs",
                "browser: Add tag (t)",
                "browser: Search (/)",
            ):
                assert wanted in titles, titles
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"add tag")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await pilot.pause(0.2)
            from sushitui.tui.screens.bulk_tag import BulkTagDialog

            await settle(pilot, lambda: isinstance(app.screen, BulkTagDialog), what="bulk dialog from the palette")

    asyncio.run(go())


@pytest.mark.slow
def test_browser_opens_the_other_screens_on_the_selection(tmp_path, db_path, no_images):
    """Enter → item detail (with the result around it for ←/→); q/e → quick tagging and
    export on the selection; ctrl+t/g/r → dictionary, groups, runs."""
    make_dataset(db_path, tmp_path / "ds", 30, nested=False)
    app = _app(db_path)

    async def go():
        from sushitui.tui.screens.dictionary import DictionaryScreen
        from sushitui.tui.screens.export_dialog import ExportDialog
        from sushitui.tui.screens.groups import GroupsScreen
        from sushitui.tui.screens.item_detail import ItemDetailScreen
        from sushitui.tui.screens.quick_tag import QuickTagScreen
        from sushitui.tui.screens.runs import RunsScreen

        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            await pilot.press("right", "right")
            current = browser.grid.current.item_id
            await pilot.press("enter")
            await settle(pilot, lambda: isinstance(app.screen, ItemDetailScreen), what="item detail")
            detail = app.screen
            assert detail.item_id == current
            # the detail walks the browser's whole result, in the browser's order
            await settle(pilot, lambda: len(detail.item_ids) == 30, what="result ids in the detail")
            assert detail.item_ids[detail.index] == current and detail.index == 2
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is browser, what="back to the browser")
            await pilot.press("space", "space")
            selected = sorted(browser.selected)
            assert len(selected) == 2
            # (A → AutotagDialog is wired the same way; its onnxruntime import costs seconds here)
            for key, cls in (("q", QuickTagScreen), ("e", ExportDialog)):
                await pilot.press(key)
                await settle(pilot, lambda: isinstance(app.screen, cls), what=cls.__name__)
                opened = app.screen
                assert getattr(opened, "dataset_id", browser.dataset_id) == browser.dataset_id
                app.pop_screen()
                await settle(pilot, lambda: app.screen is browser, what="back")
            for key, cls in (("ctrl+t", DictionaryScreen), ("ctrl+g", GroupsScreen), ("ctrl+r", RunsScreen)):
                await pilot.press(key)
                await settle(pilot, lambda: isinstance(app.screen, cls), what=cls.__name__)
                app.pop_screen()
                await settle(pilot, lambda: app.screen is browser, what="back")

    asyncio.run(go())
