"""Item detail screen (IT-1..9) driven with Pilot on a real scanned folder."""

from __future__ import annotations

import asyncio

import pytest
from detail_helpers import ScreenApp, make_dataset, screen_text, sync
from tui_support import settle

from sushitui.dataset.item_view import load_item_view
from sushitui.store import Item
from sushitui.tui.screens.conflict import ConflictDialog
from sushitui.tui.screens.item_detail import ItemDetailScreen


@pytest.fixture
def folder(db, tmp_path):
    root = tmp_path / "d"
    ds, ids = make_dataset(
        root,
        {"a": "1girl, solo, long_hair", "b": "cat, dog", "c": "tree"},
        groups={"g": {"source": None, "target": None, "instruction": "make the sky red", "": "sky, cloud"}},
    )
    return root, ds, ids


@sync
async def test_add_tag_autosaves_after_500ms(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.editor.tags == ["1girl", "solo", "long_hair"]
        await pilot.press("a", *"smile", "enter")
        await pilot.pause()
        assert screen.editor.tags[-1] == "smile"
        assert (root / "a.txt").read_text() == "1girl, solo, long_hair", "not written before 500 ms of quiet"
        await asyncio.sleep(0.65)
        await settle(pilot)
        assert (root / "a.txt").read_text() == "1girl, solo, long_hair, smile"
        assert Item.get_by_id(ids[0]).tag_count == 4


@sync
async def test_remove_reorder_undo_redo_and_explicit_save(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("down", "down")  # cursor on long_hair
        await pilot.press("shift+up")  # move it before solo
        assert screen.editor.tags == ["1girl", "long_hair", "solo"]
        await pilot.press("K")  # and to the front
        assert screen.editor.tags == ["long_hair", "1girl", "solo"]
        await pilot.press("x")  # remove long_hair (cursor followed it)
        assert screen.editor.tags == ["1girl", "solo"]
        await pilot.press("ctrl+z")
        assert screen.editor.tags == ["long_hair", "1girl", "solo"]
        await pilot.press("ctrl+z")
        assert screen.editor.tags == ["1girl", "long_hair", "solo"]
        await pilot.press("ctrl+y")
        assert screen.editor.tags == ["long_hair", "1girl", "solo"]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (root / "a.txt").read_text() == "long_hair, 1girl, solo", "the user's order is kept"
        assert load_item_view(ids[0]).tags["main"] == ["long_hair", "1girl", "solo"]
        # Fast key repeats while the save runs add up: 3 × → and 1 × ← is item c.
        await pilot.press("x", "right", "right", "right", "left")
        await settle(pilot)
        assert screen.index == 2 and screen.view.base_name == "c"
        assert (root / "a.txt").read_text() == "1girl, solo"


@sync
async def test_copy_paste_clear_between_items(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("c", "right")
        await settle(pilot)
        assert screen.view.base_name == "b"
        await pilot.press("v")
        assert screen.editor.tags == ["cat", "dog", "1girl", "solo", "long_hair"]
        await pilot.press("X")
        assert screen.editor.tags == []
        await pilot.press("ctrl+z")
        assert len(screen.editor.tags) == 5
        await pilot.press("R")  # revert to what is on disk ...
        assert screen.editor.tags == ["cat", "dog"]
        await pilot.press("ctrl+z")  # ... which is undoable
        assert len(screen.editor.tags) == 5
        await pilot.press("left")  # leaving saves
        await settle(pilot)
        assert screen.view.base_name == "a"
        assert (root / "b.txt").read_text() == "cat, dog, 1girl, solo, long_hair"


@sync
async def test_conflict_keep_mine_overwrites_after_choice(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        (root / "a.txt").write_text("changed, elsewhere", encoding="utf-8")
        await pilot.press("a", *"smile", "enter", "escape", "ctrl+s")
        # the save reads the file and finds it changed: wait for that, not for "idle"
        # (under -n 2 the app was once idle before the save had begun)
        await settle(pilot, lambda: isinstance(app.screen, ConflictDialog), what="the conflict dialog")
        shot = screen_text(app)
        assert "changed, elsewhere" in shot and "smile" in shot
        assert (root / "a.txt").read_text() == "changed, elsewhere", "nothing written before the user chooses"
        await pilot.press("m")
        await settle(pilot, lambda: isinstance(app.screen, ItemDetailScreen), what="the dialog to close")
        await settle(pilot)
        assert (root / "a.txt").read_text() == "1girl, solo, long_hair, smile"
        assert not app.screen.editor.dirty


@sync
async def test_conflict_take_disk_reloads_and_keeps_undo(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        (root / "a.txt").write_text("changed, elsewhere", encoding="utf-8")
        await pilot.press("x", "right")  # edit, then leave the item: the save conflicts
        await settle(pilot, lambda: isinstance(app.screen, ConflictDialog), what="the conflict dialog")
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ItemDetailScreen), what="the dialog to close")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ItemDetailScreen)
        assert (root / "a.txt").read_text() == "changed, elsewhere", "take-disk never writes"
        assert load_item_view(ids[0]).tags["main"] == ["changed", "elsewhere"]


@sync
async def test_conflict_cancel_keeps_edit_and_stays(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        (root / "a.txt").write_text("changed", encoding="utf-8")
        await pilot.press("x", "right")
        await settle(pilot, lambda: isinstance(app.screen, ConflictDialog), what="the conflict dialog")
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, ItemDetailScreen), what="the dialog to close")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ItemDetailScreen)
        assert screen.view.base_name == "a", "navigation stops when the conflict is not resolved"
        assert screen.editor.dirty and screen.editor.tags == ["solo", "long_hair"]
        assert (root / "a.txt").read_text() == "changed"


@sync
async def test_navigation_group_tabs_and_text_caption(folder):
    root, ds, ids = folder
    by_name = {Item.get_by_id(i).base_name: i for i in ids}
    app = ScreenApp(lambda: ItemDetailScreen(by_name["g"], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.view.is_group
        assert [label for label, _ in screen.view.image_tabs] == ["target", "source"]
        assert "target" in str(screen.query_one("#image-info").render())
        await pilot.press("i")
        await settle(pilot)
        assert screen.image_tab == 1 and "g_source.png" in str(screen.query_one("#image-info").render())
        tabbed = screen.query_one("#caption-tabs")
        assert tabbed.get_tab("tab-instruction").display
        assert screen.query_one("#text-instruction").text == "make the sky red"
        tabbed.active = "tab-instruction"
        await pilot.pause()
        await pilot.press("end", *" now")
        await asyncio.sleep(0.65)
        await settle(pilot)
        assert (root / "g_instruction.txt").read_text() == "make the sky red now"
        await pilot.press("escape", "left")  # leave the editor, then go to the previous item
        await settle(pilot)
        assert screen.view.base_name == "c"
        assert not tabbed.get_tab("tab-instruction").display, "Instruction is for groups only"


@sync
async def test_social_counter_and_new_caption(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.query_one("#caption-tabs").active = "tab-social_media"
        await pilot.pause()
        screen.query_one("#text-social_media").insert("x" * 290)
        await pilot.pause()
        counter = screen.query_one("#social-count")
        assert "290/280" in str(counter.render()) and counter.has_class("-over")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (root / "a_social.txt").read_text() == "x" * 290


@sync
async def test_hostile_names_and_captions_are_neutralised(db, tmp_path):
    root = tmp_path / "h"
    evil = "evil\x1b]52;c;cGF3bmVk\x07\x1b[2J\u202egnp"
    ds, ids = make_dataset(root, {"evil\x1b[31mname": f"{evil}, ok"})
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        shot = screen_text(app)
        assert "\x1b" not in shot and "\u202e" not in shot and "\x07" not in shot
        assert "\\x1b" in shot and "\\u202e" in shot
        assert app.screen.editor.tags[0] == evil, "the tag itself is kept as written"


@sync
async def test_leaving_saves_and_dismisses(folder):
    root, ds, ids = folder
    app = ScreenApp(lambda: ItemDetailScreen(ids[2], ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("a", *"leaf", "enter", "escape", "escape")
        await settle(pilot)
        assert app.dismissed == [ids[2]]
        assert (root / "c.txt").read_text() == "tree, leaf"


@sync
async def test_metadata_pane_highlights_mapped_exif_fields(folder):
    from sushitui.store import Caption

    root, ds, ids = folder
    Item.update(exif_data={"exif": {"ImageDescription": "a red fox", "Model": "cam\x1b[2J"}}).where(
        Item.id == ids[1]
    ).execute()
    Caption.create(
        item=ids[1],
        type="natural_language",
        subtype="exif",
        content="a red fox",
        source="exif",
        source_field="ImageDescription",
    )
    app = ScreenApp(lambda: ItemDetailScreen(ids[1], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        body = screen.query_one("#exif-body").render()
        plain = str(body)
        assert "exif.ImageDescription: a red fox  → natural_language" in plain
        assert "\x1b" not in plain and "\\x1b[2J" in plain
        highlighted = [span for span in body.spans if "green" in str(span.style)]
        assert highlighted, "the mapped field is highlighted"
        assert "1 mapped" in str(screen.query_one("#exif").title)
        assert screen.query_one("#text-natural_language").text == "a red fox"
        assert "source: exif" in str(screen.query_one("#src-natural_language").render())
        await pilot.press("m")
        assert screen.query_one("#meta-pane").has_class("-hidden")
        # Editing a caption that lives in the image's metadata writes a caption file;
        # the image is never rewritten.
        screen.query_one("#text-natural_language").insert("Edited: ")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (root / "b_caption.txt").read_text() == "Edited: a red fox"


@sync
async def test_aliases_applied_and_pills_coloured_by_group(folder):
    from sushitui.tags.aliases import add_alias
    from sushitui.tags.groups import add_group, add_tags
    from sushitui.tui.widgets.tag_pills import TagPills

    root, ds, ids = folder
    add_alias("girl", "1girl")
    add_alias("kitty", "cat")
    add_group("Animals", "#123456")
    add_tags("Animals", ["cat", "dog"])
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("a", *"kitty", "enter", "escape")
        await pilot.pause()
        assert screen.editor.tags[-1] == "cat", "the alias target is added, not the typed alias"
        pills = screen.query_one("#pills", TagPills)
        text = pills.render()
        cat_spans = [s for s in text.spans if text.plain[s.start : s.end].strip() == "cat"]
        assert cat_spans and "#123456" in str(cat_spans[0].style).lower()
        await pilot.press("a", *"girl", "enter")
        assert screen.editor.tags.count("1girl") == 1, "an alias of a present tag adds nothing"


@sync
async def test_broken_image_shows_reason_and_navigation_goes_on(db, tmp_path, testdata):
    import shutil

    from sushitui.dataset.registry import DatasetSettings, add_dataset

    root = tmp_path / "hostile"
    root.mkdir()
    rabbit = testdata / "hostile-images" / "rabbit"
    shutil.copy(rabbit / "pillars-1024x1024.jpg", root / "a_broken.jpg")
    shutil.copy(rabbit / "pillars-1024x1024.jpg", root / "b_good.jpg")
    (root / "a_broken.txt").write_text("space", encoding="utf-8")
    (root / "b_good.txt").write_text("space, pillars", encoding="utf-8")
    ds, _ = add_dataset(DatasetSettings(name="hostile", root_path=str(root)))
    ids = [i.id for i in Item.select().where(Item.dataset == ds.id).order_by(Item.base_name)]
    # The image is cut short after it was indexed (an interrupted copy, a failing disk).
    shutil.copy(rabbit / "pillars-1024x1024-truncated.jpg", root / "a_broken.jpg")
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "truncated" in screen_text(app)
        await pilot.press("right")
        await settle(pilot)
        assert app.screen.view.base_name == "b_good"
        assert "truncated" not in screen_text(app)


@sync
async def test_all_captions_edit_and_delete(folder):
    from sushitui.tui.screens.item_detail import CaptionEditDialog

    root, ds, ids = folder
    by_name = {Item.get_by_id(i).base_name: i for i in ids}
    app = ScreenApp(lambda: ItemDetailScreen(by_name["g"], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.query_one("#caption-tabs").active = "tab-all"
        await pilot.pause()
        olist = screen.query_one("#all-captions")
        kinds = [screen.view.captions[i].type for i in range(olist.option_count)]
        assert sorted(kinds) == ["instruction", "tags"]
        olist.highlighted = kinds.index("instruction")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CaptionEditDialog)
        await pilot.press(*" slowly", "ctrl+s")
        await settle(pilot)
        assert (root / "g_instruction.txt").read_text() == "make the sky red slowly"
        olist = screen.query_one("#all-captions")
        olist.focus()
        olist.highlighted = [c.type for c in screen.view.captions].index("instruction")
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert not (root / "g_instruction.txt").exists()
        assert [c.type for c in screen.view.captions] == ["tags"]


@sync
async def test_walks_the_whole_query_result(folder):
    root, ds, ids = folder
    by_name = {Item.get_by_id(i).base_name: i for i in ids}
    app = ScreenApp(lambda: ItemDetailScreen(by_name["g"], dataset_id=ds.id, query="", sort="name", desc=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.item_ids == [by_name[n] for n in ("g", "c", "b", "a")]
        assert "item 1/4" in screen_text(app)
        await pilot.press("right")
        await settle(pilot)
        assert screen.view.base_name == "c"


@sync
async def test_prose_main_caption_opens_on_the_other_tag_caption(db, tmp_path):
    """kohya GUI folders: BLIP prose in x.txt (main) and WD14 tags in x.cap. The Tags tab
    opened on the empty main ("no tags — press a"), hiding the tags the user came for."""
    root = tmp_path / "k"
    ds, ids = make_dataset(
        root, {"x": "A skull with a gas mask lies on a table. It is painted in oil.", "y": "solo, smile"}
    )
    (root / "x.cap").write_text("skull,gas mask,steampunk", encoding="utf-8")
    from sushitui.dataset.registry import reindex

    reindex(ds.name)
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.subtype == "cap" and screen.editor.tags == ["skull", "gas mask", "steampunk"]
        await pilot.press("a", *"oil painting", "enter", "ctrl+s")
        await settle(pilot)
        assert (root / "x.cap").read_text() == "skull, gas mask, steampunk, oil painting"
        assert (root / "x.txt").read_text().startswith("A skull with a gas mask")
        await pilot.press("escape", "right")  # y has main tags: it opens on main
        await settle(pilot)
        assert screen.subtype == "main" and screen.editor.tags == ["solo", "smile"]
        await pilot.press("left", "s")  # back on x, the user picks a subtype: it sticks
        await settle(pilot)
        chosen = screen.subtype
        await pilot.press("right")
        await settle(pilot)
        assert screen.subtype == chosen


@sync
async def test_editing_the_images_own_keywords_saves_a_caption_file_and_follows_it(db, tmp_path):
    """EXIF keywords are tags the image carries: saving edits of them writes a caption
    file of its own (subtype exif-xpkeywords) and the screen goes on editing that one."""
    import io

    import piexif
    from PIL import Image

    from sushitui.dataset.registry import DatasetSettings, add_dataset

    root = tmp_path / "exif"
    root.mkdir()
    exif = piexif.dump({"0th": {piexif.ImageIFD.XPKeywords: tuple("cat, sofa\x00".encode("utf-16-le"))}})
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buf, "JPEG", exif=exif)
    (root / "j.jpg").write_bytes(buf.getvalue())
    ds, _ = add_dataset(DatasetSettings(name="exif", root_path=str(root), read_exif=True))
    ids = [i.id for i in Item.select().where(Item.dataset == ds.id)]
    app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        # s steps through the subtypes in the order the subtype line shows them
        line = str(screen.query_one("#subtype-line").render())
        assert line.index("main") < line.index("alt") < line.index("exif_xpkeywords")
        await pilot.press("s")
        assert screen.subtype == "alt"
        await pilot.press("s")
        assert screen.subtype == "exif_xpkeywords" and screen.editor.tags == ["cat", "sofa"]
        await pilot.press("a", *"indoors", "enter", "ctrl+s")
        await settle(pilot)
        assert (root / "j_exif-xpkeywords.txt").read_text() == "cat, sofa, indoors"
        assert screen.subtype == "exif-xpkeywords" and screen.editor.tags == ["cat", "sofa", "indoors"]
        assert screen.editors["exif_xpkeywords"].tags == ["cat", "sofa"]  # the image's own, as a reload shows them
        await pilot.press(*"night", "enter", "ctrl+s")  # the tag box stays open for the next tag
        await settle(pilot)
        assert (root / "j_exif-xpkeywords.txt").read_text() == "cat, sofa, indoors, night"
    view = load_item_view(ids[0])
    assert view.tags["exif-xpkeywords"] == ["cat", "sofa", "indoors", "night"] and view.tags["exif_xpkeywords"] == [
        "cat",
        "sofa",
    ]
