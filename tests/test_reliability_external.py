"""IT-8 / NF-3 / NF-5: files changed, deleted or replaced by another program while
sushitui has them open are never overwritten silently, and the user is told.

Already shown elsewhere (not repeated here): explicit save and navigation conflicts with
keep-mine / take-disk / cancel (tests/test_detail_screen.py::test_conflict_*), the quick
tagging background save (tests/test_detail_quicktag.py), an image broken after indexing
(tests/test_detail_screen.py::test_broken_image_shows_reason_and_navigation_goes_on,
tests/test_tui_app_browser.py::test_hostile_and_odd_names_render_without_breaking_the_screen)."""

from __future__ import annotations

import asyncio
import time

import pytest
from detail_helpers import ScreenApp, make_dataset, screen_text
from PIL import Image
from reliability_support import run_cli
from tui_support import settle

pytestmark = pytest.mark.slow  # long stress test: skipped by the quick run, run by CI


def _app(root, captions):
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    ds, ids = make_dataset(root, captions)
    notes: list[str] = []

    class App(ScreenApp):
        def notify(self, message, *, title="", severity="information", **kw):
            notes.append(f"{severity}: {title} {message}")
            return super().notify(message, title=title, severity=severity, **kw)

    return App(lambda: ItemDetailScreen(ids[0], ids)), notes, ids


def test_autosave_never_overwrites_an_external_change(db, tmp_path):
    from sushitui.tui.screens.conflict import ConflictDialog

    root = tmp_path / "d"
    app, notes, ids = _app(root, {"a": "1girl, solo", "b": "cat"})

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("a", *"smile", "enter", "escape")
            # another program writes the file between the edit and the autosave
            (root / "a.txt").write_text("edited, by, hand", encoding="utf-8")
            await asyncio.sleep(0.8)  # autosave fires after 500 ms of quiet
            await settle(pilot)
            assert isinstance(app.screen, ConflictDialog), "the user is asked"
            shot = screen_text(app)
            assert "edited, by, hand" in shot and "smile" in shot  # both versions shown
            assert (root / "a.txt").read_text() == "edited, by, hand"
            await pilot.press("d")  # take the disk version
            await settle(pilot)

    asyncio.run(go())
    assert (root / "a.txt").read_text() == "edited, by, hand"


def test_caption_deleted_under_the_app_is_not_recreated_silently(db, tmp_path):
    from sushitui.tui.screens.conflict import ConflictDialog

    root = tmp_path / "d"
    app, notes, ids = _app(root, {"a": "1girl, solo", "b": "cat"})

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            (root / "a.txt").unlink()
            await pilot.press("a", *"smile", "enter", "escape", "ctrl+s")
            await settle(pilot)
            assert isinstance(app.screen, ConflictDialog)
            assert "deleted" in screen_text(app)
            assert not (root / "a.txt").exists(), "nothing written before the user chooses"
            await pilot.press("m")  # keep mine: now it is written, on purpose
            await settle(pilot)

    asyncio.run(go())
    assert (root / "a.txt").read_text() == "1girl, solo, smile"


def test_image_deleted_or_replaced_under_the_app_gives_a_message(db, tmp_path):
    # c and e are not neighbours of a, so no preview of them was prefetched before the change
    root = tmp_path / "d"
    app, notes, ids = _app(root, {"a": "1girl", "b": "cat", "c": "dog", "d": "fox", "e": "owl"})
    texts = {}

    async def step_to(pilot, name):
        await pilot.press("right")
        await settle(pilot)
        await settle(
            pilot, lambda: app.screen.view is not None and app.screen.view.base_name == name, timeout=2.5, what=name
        )
        await pilot.pause(0.5)
        return screen_text(app)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            (root / "c.png").unlink()
            (root / "e.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png any more")
            await step_to(pilot, "b")
            texts["c"] = await step_to(pilot, "c")
            await pilot.press("a", *"still_editable", "enter", "escape", "ctrl+s")  # the caption still saves
            await settle(pilot)
            await step_to(pilot, "d")
            texts["e"] = await step_to(pilot, "e")

    asyncio.run(go())
    assert "not found" in texts["c"].lower(), texts["c"]
    assert "cannot" in texts["e"].lower() or "not a" in texts["e"].lower() or "damaged" in texts["e"].lower(), texts[
        "e"
    ]
    assert (root / "c.txt").read_text() == "dog, still_editable"


def test_cli_bulk_edit_skips_a_file_changed_since_indexing_and_names_it(db, db_path, tmp_path):
    root = tmp_path / "d"
    make_dataset(root, {f"i{k}": f"tag{k}, solo" for k in range(6)})
    time.sleep(0.01)
    (root / "i3.txt").write_text("hand, edited", encoding="utf-8")
    res = run_cli(db_path, "tag", "add", "ds", "new_tag")
    assert res.returncode == 1
    said = res.stdout + res.stderr
    assert "i3.txt" in said and "changed by another program" in said and "not overwritten" in said
    assert (root / "i3.txt").read_text() == "hand, edited"
    for k in (0, 1, 2, 4, 5):
        assert (root / f"i{k}.txt").read_text() == f"tag{k}, solo, new_tag"


def test_tag_add_on_an_item_with_a_prose_caption_says_why(db_path, tmp_path):
    from reliability_support import register

    root = tmp_path / "p"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "p.png")
    (root / "p.txt").write_text("A cat sleeps on a warm windowsill. The light is soft.", encoding="utf-8")
    register(db_path, root, "prose")
    res = run_cli(db_path, "tag", "add", "prose", "cat")
    said = res.stdout + res.stderr
    assert res.returncode == 1 and "p.txt" in said
    assert (root / "p.txt").read_text().startswith("A cat sleeps")  # the prose is never overwritten
    assert "another program" not in said and "natural language" in said, said
