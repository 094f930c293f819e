"""An open browser sees other people's edits: another process tags an item and the card
shows it within seconds, the cursor and the selection staying where they were; never
while the user types a search (issue 21). On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest
from pg_support import both_backends_db_path  # noqa: F401  (db_path: a SQLite file, or a PostgreSQL URL)
from tui_support import make_dataset, open_browser, screen_text, settle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# another process: opens the catalogue itself and puts a tag first on one item's caption
OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from sushitui.dataset.captions import TagEdit, set_tags_many
    from sushitui.store import Item, open_database

    db = open_database(sys.argv[1])
    item = Item.get_by_id(int(sys.argv[2]))
    report = set_tags_many([TagEdit(item, rewrite=lambda tags: [sys.argv[3], *tags])])
    assert report.changed == 1, report.problems
    db.close()
    """
)


@pytest.fixture
def fast_polls(monkeypatch):
    from sushitui.tui.screens import browser

    monkeypatch.setenv("SUSHITUI_IMAGES", "off")
    monkeypatch.setattr(browser, "LIVE_REFRESH_S", 0.2)


def _tag_in_other_process(db_path, item_id: int, tag: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, str(db_path), str(item_id), tag],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _card(browser, item_id: int):
    return next(c for c in browser.grid.page if c.item_id == item_id)


async def _wait_process(pilot, proc: subprocess.Popen) -> None:
    await settle(pilot, lambda: proc.poll() is not None, timeout=60, what="the other process")
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


@pytest.mark.slow
def test_a_tag_added_by_another_process_shows_on_its_card_cursor_and_selection_kept(tmp_path, db_path, fast_polls):
    from sushitui.tui.app import SushiApp

    make_dataset(db_path, tmp_path / "ds", 30, nested=False)
    app = SushiApp(db_path, first_start=False)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            await pilot.press("right", "right", "down")  # the cursor away from the first card
            cursor = browser.grid.cursor
            assert cursor == 2 + browser.columns
            target = browser.grid.current.item_id
            await pilot.press("space")  # select it (the cursor moves on to the next card)
            selected = set(browser.selected)
            assert selected == {target}
            cursor = browser.grid.cursor
            target = browser.grid.current.item_id
            assert "livetag" not in _card(browser, target).tags
            await settle(pilot, lambda: browser._seen_version is not None, what="the first poll")

            started = time.monotonic()
            proc = _tag_in_other_process(db_path, target, "livetag")
            await _wait_process(pilot, proc)
            await settle(pilot, lambda: "livetag" in _card(browser, target).tags, timeout=15, what="the new tag")
            assert time.monotonic() - started < 60
            await settle(pilot)
            assert "livetag" in screen_text(app)  # the first tag is on the card
            assert browser.grid.cursor == cursor
            assert browser.grid.current.item_id == target
            assert browser.selected == selected
            assert browser.state.total == 30

    asyncio.run(go())


@pytest.mark.slow
def test_no_refresh_while_the_user_types_a_search_then_it_comes(tmp_path, db_path, fast_polls):
    from textual.widgets import Input

    from sushitui.tui.app import SushiApp

    make_dataset(db_path, tmp_path / "ds", 12, nested=False)
    app = SushiApp(db_path, first_start=False)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            target = browser.grid.current.item_id
            await settle(pilot, lambda: browser._seen_version is not None, what="the first poll")
            await pilot.press("slash", *"1gi")
            search = browser.query_one("#browser-search", Input)
            assert browser.focused is search
            proc = _tag_in_other_process(db_path, target, "livetag")
            await _wait_process(pilot, proc)
            shown = browser.pages_shown
            await pilot.pause(1.0)  # five polls: each sees the change and leaves it for later
            assert browser.pages_shown == shown
            assert "livetag" not in _card(browser, target).tags
            assert search.value == "1gi"  # what the user typed is untouched
            await pilot.press("escape")  # leaves the search bar: the next poll reloads
            await settle(pilot, lambda: "livetag" in _card(browser, target).tags, timeout=15, what="the new tag")

    asyncio.run(go())
