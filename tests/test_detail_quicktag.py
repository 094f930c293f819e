"""Quick tagging screen (QT-1..4) driven with Pilot on a real scanned folder."""

from __future__ import annotations

import pytest
from detail_helpers import ScreenApp, make_dataset, screen_text, sync
from tui_support import settle

from sushitui.dataset.item_view import set_presets
from sushitui.store import Dataset
from sushitui.tui.screens.conflict import ConflictDialog
from sushitui.tui.screens.quick_tag import PresetsDialog, QuickTagScreen


@pytest.fixture
def folder(db, tmp_path):
    root = tmp_path / "q"
    ds, ids = make_dataset(root, {"a": "1girl", "b": "cat", "c": "", "d": "dog"})
    set_presets(ds.id, ["smile", "blush", "solo"])
    return root, ds, ids


@sync
async def test_presets_toggle_enter_saves_and_moves_on(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: QuickTagScreen(ds.id, ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert "Image 1/4" in screen_text(app)
        assert "1 smile" in screen_text(app) and "3 solo" in screen_text(app)
        await pilot.press("1", "3", "3", "2")  # solo on and off again
        assert screen.editor.tags == ["1girl", "smile", "blush"]
        await pilot.press("enter")
        await settle(pilot)
        assert "Image 2/4" in screen_text(app)
        assert (root / "a.txt").read_text() == "1girl, smile, blush"
        await pilot.press("2", "right")  # skip: not saved
        await settle(pilot)
        assert "Image 3/4" in screen_text(app)
        assert (root / "b.txt").read_text() == "cat"
        await pilot.press("left")
        await settle(pilot)
        assert "Image 2/4" in screen_text(app) and screen.editor.tags == ["cat"]


@pytest.mark.slow
@sync
async def test_custom_tag_undo_and_presets_persist(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: QuickTagScreen(ds.id, ids[2:]))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("t", *"red_eyes", "enter")
        assert screen.editor.tags == ["red_eyes"]
        await pilot.press("ctrl+z")
        assert screen.editor.tags == []
        await pilot.press("ctrl+y", "enter")
        await settle(pilot)
        assert (root / "c.txt").read_text() == "red_eyes"
        await pilot.press("ctrl+z")  # nothing to undo on d: undo the save of c
        await settle(pilot)
        assert "Image 1/2" in screen_text(app)
        assert (root / "c.txt").read_text() == ""
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PresetsDialog)
        await pilot.press("end", *", open_mouth", "ctrl+s")  # ctrl+s saves as in every form (Enter too)
        await settle(pilot)
        assert Dataset.get_by_id(ds.id).presets == ["smile", "blush", "solo", "open_mouth"]
        await pilot.press("4")
        assert screen.editor.tags == ["open_mouth"]
    # A new screen on the same dataset sees the stored presets.
    app2 = ScreenApp(lambda: QuickTagScreen(ds.id, ids))
    async with app2.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app2.screen.presets == ["smile", "blush", "solo", "open_mouth"]


@sync
async def test_conflict_in_background_save_asks_the_user(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: QuickTagScreen(ds.id, ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        (root / "a.txt").write_text("edited elsewhere", encoding="utf-8")
        await pilot.press("1", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ConflictDialog)
        assert (root / "a.txt").read_text() == "edited elsewhere"
        await pilot.press("m")
        await settle(pilot)
        assert (root / "a.txt").read_text() == "1girl, smile"
        await pilot.press("escape")
        await settle(pilot)
        assert app.dismissed, "Esc leaves the screen"


@sync
async def test_whole_dataset_or_query_result(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: QuickTagScreen(ds.id, None, query="dog"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.item_ids == [ids[3]]
        assert "Image 1/1" in screen_text(app) and "dog" in screen_text(app)
    app = ScreenApp(lambda: QuickTagScreen(ds.id))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert sorted(app.screen.item_ids) == sorted(ids)


@sync
async def test_next_image_is_prefetched_before_enter(folder):
    import asyncio

    from sushitui.dataset.item_view import load_item_view
    from sushitui.dataset.preview import shared_preview_cache
    from sushitui.tui.widgets.preview_pane import PreviewPane

    root, ds, ids = folder
    shared_preview_cache().clear()
    app = ScreenApp(lambda: QuickTagScreen(ds.id, ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await asyncio.sleep(0.3)  # the prefetch starts once the first picture is painted
        await settle(pilot)
        nxt = load_item_view(ids[1])
        assert shared_preview_cache().get(nxt.abs_path(nxt.image_path), nxt.mtime_ns) is not None
        pane = app.screen.query_one(PreviewPane)
        before = pane.shown_at
        await pilot.press("enter")
        # Shown while handling the key: no worker round-trip, no "loading…".
        assert pane.shown_at > before
        assert "loading" not in screen_text(app)
        assert "Image 2/4" in screen_text(app)


@sync
async def test_prose_main_caption_tags_the_other_tag_caption(db, tmp_path):
    """kohya GUI folders (BLIP prose in x.txt, WD14 tags in x.cap): quick tagging showed
    no tags and its saves went to the prose caption, which refuses tags."""
    from sushitui.dataset.registry import reindex

    root = tmp_path / "k"
    ds, ids = make_dataset(root, {"x": "A skull with a gas mask lies on a table. It is painted in oil.", "y": "solo"})
    (root / "x.cap").write_text("skull,steampunk", encoding="utf-8")
    reindex(ds.name)
    set_presets(ds.id, ["smile", "oil painting"])
    app = ScreenApp(lambda: QuickTagScreen(ds.id, ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.editor.tags == ["skull", "steampunk"]
        await pilot.press("2", "enter")
        await settle(pilot)
        assert (root / "x.cap").read_text() == "skull, steampunk, oil painting"
        assert (root / "x.txt").read_text().startswith("A skull with a gas mask")
        assert screen.editor.tags == ["solo"]  # y: main as before
        await pilot.press("1", "enter")
        await settle(pilot)
        assert (root / "y.txt").read_text() == "solo, smile"
