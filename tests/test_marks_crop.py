"""The crop frame: keyboard geometry, bucket fitting, the frame drawn over the picture at
80×24, and the crop saved from item detail."""

from __future__ import annotations

import asyncio
import json

from sushitui.dataset import crop_frame


def test_moving_and_resizing_stay_inside_the_image():
    c = crop_frame.full(640, 480)
    assert crop_frame.move(c, 50, 0, 640, 480) == c  # the whole image cannot move
    c = (100, 100, 200, 100)
    assert crop_frame.move(c, -500, 20, 640, 480) == (0, 120, 200, 100)
    assert crop_frame.resize(c, 1000, 0, 640, 480) == (100, 100, 540, 100)
    assert crop_frame.resize(c, -1000, 0, 640, 480)[2] == crop_frame.MIN_SIDE
    w, h = crop_frame.resize(c, 40, 0, 640, 480, aspect=2.0)[2:]
    assert (w, h) == (240, 120)  # a chosen ratio is kept while resizing


def test_aspect_keeps_the_centre_and_fit_bucket_takes_the_nearest_ratio():
    c = crop_frame.with_aspect((200, 100, 200, 200), 1.5, 1000, 800)
    assert abs(c[2] / c[3] - 1.5) < 0.01 and abs((c[0] + c[2] / 2) - 300) <= 1 and abs((c[1] + c[3] / 2) - 200) <= 1
    buckets = [(1024, 1024), (1216, 832), (832, 1216), (1344, 768)]
    crop, bucket = crop_frame.fit_bucket(None, buckets, 1500, 1000)  # 3:2 picture
    assert bucket == (1216, 832)
    assert crop[3] == 1000 and abs(crop[2] / crop[3] - 1216 / 832) < 0.01  # as large as the picture allows
    presets = crop_frame.aspect_presets(buckets + [(512, 512)])
    assert presets == [(832, 1216), (1024, 1024), (1216, 832), (1344, 768)]


def test_the_frame_is_drawn_over_the_picture_with_the_outside_dimmed():
    from PIL import Image

    from sushitui.tui.screens.crop_dialog import render_cells

    img = Image.new("RGB", (100, 100), (200, 100, 50))
    text = render_cells(img, (50, 0, 50, 100), (100, 100), 20, 10)
    lines = text.plain.split("\n")
    assert len(lines) == 10 and all(len(line) == 20 for line in lines)
    styles = {}
    for span in text.spans:
        styles[span.start] = span.style
    left = styles[0].color.triplet  # first cell of the first row: outside the crop
    middle = styles[5 * 21 + 15].color.triplet  # row 5 (rows are 20 cells and a newline): inside
    edge = styles[5 * 21 + 10].color.triplet  # the frame's left edge
    assert tuple(left) == (60, 30, 15)  # dimmed
    assert tuple(middle) == (200, 100, 50)
    assert tuple(edge) == (255, 214, 0)


def test_item_detail_sets_a_crop_with_the_keyboard_at_80x24(tmp_path, db_path, monkeypatch):
    from tui_support import make_dataset, open_browser, screen_text, settle

    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.crop_dialog import CropDialog
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    monkeypatch.setenv("SUSHITUI_IMAGES", "off")
    root = tmp_path / "ds"
    make_dataset(db_path, root, 3, nested=False)
    app = SushiApp(db_path, first_start=False)

    def marks() -> dict:
        path = root / ".sushitui" / "marks.json"
        return json.loads(path.read_text("utf-8"))["items"] if path.exists() else {}

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            browser = await open_browser(app, pilot)
            name = browser.grid.current.name
            await pilot.press("enter")
            await settle(
                pilot,
                lambda: isinstance(app.screen, ItemDetailScreen) and app.screen.view is not None,
                what="item detail",
            )
            view = app.screen.view
            await pilot.press("f")
            await settle(
                pilot,
                lambda: isinstance(app.screen, CropDialog) and app.screen.image is not None,
                what="the crop frame with its picture",
            )
            dialog = app.screen
            assert "▀" in screen_text(app)
            await pilot.press("shift+left", "shift+left", "shift+up", "right", "down")
            x, y, w, h = dialog.crop
            step = crop_frame.step_of(view.width, view.height)
            assert (w, h) == (view.width - 2 * step, view.height - step) and (x, y) == (step, step)
            await pilot.press("b")
            assert dialog.aspect is not None
            await pilot.press("enter")
            await settle(pilot, lambda: name in marks() and "crop" in marks()[name], what="the crop saved")
            saved = tuple(marks()[name]["crop"])
            assert saved == dialog.crop
            await settle(pilot, lambda: "crop" in screen_text(app), what="the title says the item is cropped")
            await pilot.press("f")
            await settle(pilot, lambda: isinstance(app.screen, CropDialog), what="the crop frame again")
            assert app.screen.crop == saved  # opens on the saved crop
            await pilot.press("x")
            await settle(pilot, lambda: "crop" not in marks().get(name, {}), what="the crop removed")

    asyncio.run(go())
