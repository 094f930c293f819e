"""The very first start at 80×24: the empty datasets screen says what to do first, and the
dictionary-loading notifications do not cover it."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from tui_support import screen_text, settle


@pytest.fixture(autouse=True)
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


@pytest.fixture
def small_taglist(tmp_path, monkeypatch):
    """A taglist of the shipped shape, small enough to load in a test."""
    from sushitui import config

    shipped = config.taglist_dir()
    small = tmp_path / "taglist"
    shutil.copytree(shipped / "groups", small / "groups")
    (small / "General.json").write_text(json.dumps({f"tag_{i}": 5000 - i for i in range(2000)}))
    monkeypatch.setattr(config, "taglist_dir", lambda: small)


@pytest.mark.slow
def test_the_empty_state_hint_is_readable_at_80x24_while_first_start_notifications_show(db_path, small_taglist):
    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.datasets import DatasetsScreen

    app = SushiApp(db_path, first_start=True)

    async def go():
        async with app.run_test(size=(80, 24), notifications=True) as pilot:  # toasts are off in tests by default
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen), what="datasets screen")
            await settle(
                pilot,
                lambda: app.first_start_done and len(app._notifications) >= 2,
                timeout=60,
                what="both first-start notifications",
            )
            await pilot.pause(0.3)
            text = screen_text(app)
            # the notifications are on screen (else this test could not fail) ...
            assert "dictionary" in text, text
            # ... and every line of what to do first is whole
            for line in ("No datasets yet", "register a folder of images with captions", "sushitui --demo"):
                assert line in text, f"{line!r} is covered or cut at 80×24:\n{text}"
            assert "n " in text and "New" in text  # the key bar still names the key

    asyncio.run(go())


def test_the_hint_goes_when_a_dataset_exists(db_path, tmp_path):
    from tui_support import make_dataset

    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.datasets import DatasetsScreen

    make_dataset(db_path, tmp_path / "ds", 3, name="cats", nested=False)
    app = SushiApp(db_path, first_start=False)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen) and app.screen.rows, what="list")
            await pilot.pause(0.1)
            text = screen_text(app)
            assert "cats" in text and "No datasets yet" not in text

    asyncio.run(go())
