"""The tag-list editor model and the item-view save/adopt functions behind the item
detail and quick tagging screens (no UI)."""

from __future__ import annotations

import pytest
from detail_helpers import make_dataset

from sushitui.dataset.caption_files import CaptionConflict
from sushitui.dataset.item_view import (
    delete_caption,
    get_presets,
    load_item_view,
    save_tags,
    save_text,
    set_presets,
    take_disk_tags,
)
from sushitui.dataset.preview import PreviewCache, decode_preview
from sushitui.dataset.tag_editing import TagListEditor
from sushitui.store import Caption, Dataset, Item


def test_editor_add_remove_move_and_dirty():
    ed = TagListEditor(["1girl", "solo"])
    assert not ed.dirty
    assert ed.add("long_hair")
    assert not ed.add("long hair"), "same tag by match key is not added twice"
    assert ed.tags == ["1girl", "solo", "long_hair"] and ed.dirty
    assert ed.move(2, -2) == 0
    assert ed.tags == ["long_hair", "1girl", "solo"]
    assert ed.remove(1) == "1girl"
    ed.mark_saved()
    assert not ed.dirty
    assert ed.add("smile", position=0)
    assert ed.tags[0] == "smile"


def test_editor_undo_redo_and_revert():
    ed = TagListEditor(["a", "b"])
    ed.add("c")
    ed.clear()
    assert ed.tags == []
    assert ed.undo() and ed.tags == ["a", "b", "c"]
    assert ed.undo() and ed.tags == ["a", "b"]
    assert not ed.undo()
    assert ed.redo() and ed.tags == ["a", "b", "c"]
    ed.add("d")
    assert not ed.can_redo, "a new edit drops the redo branch"
    assert ed.revert() and ed.tags == ["a", "b"]
    assert ed.undo() and ed.tags == ["a", "b", "c", "d"], "revert is undoable"


def test_editor_aliases_paste_toggle_and_adopt():
    ed = TagListEditor([], resolve=lambda t: "1girl" if t == "girl" else t)
    ed.add("girl")
    assert ed.tags == ["1girl"]
    assert ed.paste_text("solo, 1girl, smile\nblush") == 3
    assert ed.tags == ["1girl", "solo", "smile", "blush"]
    assert ed.undo() and ed.tags == ["1girl"], "a paste is one undo step"
    assert ed.toggle("smile") is True and ed.toggle("smile") is False
    ed.adopt(["x", "y"])
    assert ed.tags == ["x", "y"] and not ed.dirty
    assert ed.undo() and ed.tags == ["1girl"], "the user's version stays one undo away"


def test_save_conflict_and_take_disk(db, tmp_path):
    ds, ids = make_dataset(tmp_path / "d", {"a": "1girl, solo"})
    path = tmp_path / "d" / "a.txt"
    path.write_text("cat, dog", encoding="utf-8")
    with pytest.raises(CaptionConflict) as info:
        save_tags(ids[0], "main", ["1girl", "solo", "smile"])
    assert info.value.disk_text == "cat, dog"
    assert path.read_text() == "cat, dog", "a conflict never writes"
    assert take_disk_tags(ids[0], "main") == ["cat", "dog"]
    assert load_item_view(ids[0]).tags["main"] == ["cat", "dog"]
    save_tags(ids[0], "main", ["cat", "dog", "bird"])  # the index now matches the file
    assert path.read_text() == "cat, dog, bird"
    assert Item.get_by_id(ids[0]).tag_count == 3


def test_new_text_caption_reads_back_after_reindex(db, tmp_path):
    from sushitui.dataset.registry import reindex

    ds, ids = make_dataset(tmp_path / "d", {"a": "1girl"})
    save_text(ids[0], "social_media", None, "Look at this #art")
    written = tmp_path / "d" / "a_social.txt"
    assert written.read_text() == "Look at this #art"
    reindex(ds.name)
    item = Item.get(Item.dataset == ds.id)
    view = load_item_view(item.id)
    assert view.text_caption("social_media").content == "Look at this #art"
    assert view.tags["main"] == ["1girl"]


def test_delete_caption_removes_file_and_refuses_changed(db, tmp_path):
    ds, ids = make_dataset(tmp_path / "d", {"a": "1girl", "b": "cat"})
    cap_a = Caption.get(Caption.item == ids[0])
    delete_caption(cap_a.id)
    assert not (tmp_path / "d" / "a.txt").exists()
    assert load_item_view(ids[0]).tags == {}
    (tmp_path / "d" / "b.txt").write_text("changed", encoding="utf-8")
    cap_b = Caption.get(Caption.item == ids[1])
    with pytest.raises(Exception):
        delete_caption(cap_b.id)
    assert (tmp_path / "d" / "b.txt").read_text() == "changed"


def test_presets_persist_max_nine(db, tmp_path):
    ds, _ = make_dataset(tmp_path / "d", {"a": "x"})
    saved = set_presets(ds.id, [f"t{i}" for i in range(12)] + ["t1"])
    assert saved == [f"t{i}" for i in range(9)]
    assert Dataset.get_by_id(ds.id).presets == saved
    assert get_presets(ds.id) == saved


def test_preview_decode_is_small_and_bomb_safe(tmp_path):
    from PIL import Image

    big = tmp_path / "big.jpg"
    Image.new("RGB", (1800, 1200), (10, 20, 30)).save(big, quality=80)
    p = decode_preview(big)
    assert p.image is not None and max(p.image.size) <= 1024 and (p.width, p.height) == (1800, 1200)
    bomb = tmp_path / "bomb.png"
    old = Image.MAX_IMAGE_PIXELS
    Image.new("L", (400, 400)).save(bomb)
    try:
        Image.MAX_IMAGE_PIXELS = 1000
        assert decode_preview(bomb).image is None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image")
    assert "not a readable image" in decode_preview(broken).reason
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(big.read_bytes()[:2000])
    assert decode_preview(truncated).image is None
    cache = PreviewCache(max_items=2)
    first = cache.load(big, 1)
    assert cache.get(big, 1) is first and cache.get(big, 2) is None


def test_real_hostile_images_never_raise(testdata):
    """The real 225,000×225,000 PNG bomb is refused from its header; truncated files
    and random bytes give a reason instead of an exception."""
    import resource

    hostile = testdata / "hostile-images"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bomb = decode_preview(hostile / "big-png" / "spark.png")
    assert bomb.image is None and "too large" in bomb.reason
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024, "no memory blow-up"
    for name in ("pillars-1024x1024-truncated.jpg", "pillars-1024x1024-truncated.png", "nonsense.bin"):
        p = decode_preview(hostile / "rabbit" / name)
        assert p.image is None and p.reason
    good = decode_preview(hostile / "rabbit" / "pillars-1024x1024.jpg")
    assert good.image is not None and good.image.size == (1024, 1024)


def test_take_disk_when_another_program_created_the_file(db, tmp_path):
    from sushitui.dataset.item_view import take_disk_text, text_subtype_for

    ds, ids = make_dataset(tmp_path / "d", {"a": "1girl"})
    sub = text_subtype_for(ds.id, "description")
    (tmp_path / "d" / f"a_{sub}.txt").write_text("written elsewhere", encoding="utf-8")
    with pytest.raises(CaptionConflict):
        save_text(ids[0], "description", sub, "mine")
    assert take_disk_text(ids[0], "description", sub, f"a_{sub}.txt") == "written elsewhere"
    assert load_item_view(ids[0]).text_caption("description").content == "written elsewhere"
    save_text(ids[0], "description", sub, "mine after all")  # the index now knows the file
    assert (tmp_path / "d" / f"a_{sub}.txt").read_text() == "mine after all"
