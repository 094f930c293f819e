"""Layouts A–D, name parsing, caption typing and encodings on generated folders."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from sushitui.dataset.grouping import FileEntry, group_directory, parse_name
from sushitui.dataset.items import item_to_dict, list_items
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex, update_settings
from sushitui.dataset.synthetic import png_bytes
from sushitui.store import Caption, Item, ItemTag


def img(path: Path, size=(16, 12), fmt=None, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path, format=fmt, **save)
    return path


def txt(path: Path, text: str, encoding="utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def by_image(ds) -> dict[str, dict]:
    return {d["image"]: d for d in (item_to_dict(i) for i in list_items(ds.id))}


def test_parse_name_keeps_unknown_suffix_in_base():
    suffixes = {"source", "target"}
    assert parse_name("img_001", suffixes) == ("img_001", None)
    assert parse_name("cat_source", suffixes) == ("cat", "source")
    assert parse_name("Cat_Target", suffixes) == ("Cat", "target")
    assert parse_name("_target", suffixes) == ("_target", None)


def test_grouping_is_per_directory():
    groups, orphans = group_directory("a", [FileEntry("x_source.png", 1, 1)], [FileEntry("x_instruction.txt", 1, 1)])
    assert len(groups) == 1 and groups[0].captions["instruction"].name == "x_instruction.txt"
    groups, orphans = group_directory("b", [], [FileEntry("x_instruction.txt", 1, 1)])
    assert groups == [] and orphans[0][0] == "x_instruction.txt"


def test_layout_a_image_with_tag_caption(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "image001.png", (40, 30))
    txt(root / "image001.txt", "1girl, solo, long_hair, smile")
    img(root / "img_001.png")  # an unknown suffix stays part of the name
    txt(root / "img_001.txt", "cat")
    ds, report = add_dataset(DatasetSettings("a", str(root)))
    assert report.items_added == 2 and report.problems == []
    items = by_image(ds)
    one = items["image001.png"]
    assert one["type"] == "single" and one["base_name"] == "image001"
    assert (one["width"], one["height"]) == (40, 30)
    assert one["captions"] == [
        {
            "type": "tags",
            "subtype": "main",
            "source": "txt_file",
            "content": "1girl, solo, long_hair, smile",
            "file": "image001.txt",
        }
    ]
    assert [t["tag"] for t in one["tags"]] == ["1girl", "solo", "long_hair", "smile"]
    assert [t["position"] for t in one["tags"]] == [0, 1, 2, 3]
    assert items["img_001.png"]["base_name"] == "img_001"
    assert Item.get(Item.image_path == "image001.png").tag_count == 4
    assert ItemTag.select().where(ItemTag.norm == "long hair").count() == 1
    assert ds.total_items == 2 and ds.total_images == 2 and ds.total_captions == 2


def test_layout_b_several_captions_by_suffix(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "image001.jpg", fmt="JPEG")
    txt(root / "image001_main.txt", "1girl, solo")
    txt(root / "image001_alt.txt", "A girl standing alone in a field of flowers at dawn. She is smiling.")
    ds, report = add_dataset(DatasetSettings("b", str(root)))
    assert report.items_added == 1
    d = by_image(ds)["image001.jpg"]
    caps = {c["subtype"]: c for c in d["captions"]}
    assert caps["main"]["type"] == "tags"
    assert caps["alt"]["type"] == "natural_language"
    assert {t["subtype"] for t in d["tags"]} == {"main"}


def test_caption_type_override_per_subtype(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    txt(root / "x_alt.txt", "red, blue")
    ds, _ = add_dataset(DatasetSettings("o", str(root), caption_types={"alt": "social_media"}))
    assert Caption.get().type == "social_media"
    assert ItemTag.select().count() == 0
    # changing the override makes the next reindex re-type the existing file
    update_settings("o", caption_types={"alt": "tags"})
    reindex("o")
    assert Caption.get().type == "tags"
    assert [t.tag for t in ItemTag.select().order_by(ItemTag.position)] == ["red", "blue"]


def test_layout_c_group_is_one_item(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "X_source.webp", (20, 20), fmt="WEBP")
    img(root / "X_target.webp", (64, 48), fmt="WEBP")
    img(root / "X_cref.png")
    txt(root / "X_instruction.txt", "Make the sky look like a sunset.")
    txt(root / "X_tags.txt", "sky, sunset")
    ds, report = add_dataset(DatasetSettings("c", str(root)))
    assert report.items_added == 1 and ds.total_images == 3
    d = by_image(ds)["X_target.webp"]
    assert d["type"] == "group" and d["base_name"] == "X"
    assert d["related_images"] == {"source": "X_source.webp", "target": "X_target.webp", "cref": "X_cref.png"}
    assert (d["width"], d["height"]) == (64, 48)  # the primary image is the target
    types = {c["subtype"]: c["type"] for c in d["captions"]}
    assert types == {"instruction": "instruction", "tags": "tags"}


def test_primary_suffix_and_pairs_type(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "p_source.png", (10, 10))
    img(root / "p_target.png", (20, 20))
    ds, _ = add_dataset(DatasetSettings("p", str(root), type="pairs", primary_suffix="source"))
    item = Item.get()
    assert item.item_type == "pair" and item.image_path == "p_source.png" and item.width == 10


def test_single_type_keeps_every_image_apart(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "p_source.png")
    img(root / "p_target.png")
    ds, _ = add_dataset(DatasetSettings("s", str(root), type="single"))
    assert sorted(i.base_name for i in Item.select()) == ["p_source", "p_target"]


def test_nested_folders_recursive_and_max_depth(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "a.png")
    img(root / "sub" / "a.png")  # same base name in another folder: another item
    img(root / "sub" / "deeper" / "b.png")
    ds, _ = add_dataset(DatasetSettings("n", str(root)))
    assert sorted(i.image_path for i in Item.select()) == ["a.png", "sub/a.png", "sub/deeper/b.png"]
    ds2, _ = add_dataset(DatasetSettings("n1", str(root), max_depth=1))
    assert Item.select().where(Item.dataset == ds2.id).count() == 2
    ds3, _ = add_dataset(DatasetSettings("n0", str(root), recursive=False))
    assert [i.image_path for i in Item.select().where(Item.dataset == ds3.id)] == ["a.png"]


def test_extensions_case_insensitive_and_other_files_ignored(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "A.PNG")
    img(root / "b.JpEg", fmt="JPEG")
    txt(root / "notes.md", "not a caption")
    (root / "model.safetensors").write_bytes(b"\0" * 10)
    ds, report = add_dataset(DatasetSettings("e", str(root)))
    assert report.items_added == 2 and report.files_seen == 2


def test_encodings_bom_and_cp932_fallback_flagged(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "bom.png")
    txt(root / "bom.txt", "\ufeff猫, 1girl", "utf-8")
    img(root / "sjis.png")
    txt(root / "sjis.txt", "猫耳, 少女", "cp932")
    ds, report = add_dataset(DatasetSettings("enc", str(root)))
    bom = Caption.get(Caption.file_path == "bom.txt")
    assert bom.content == "猫, 1girl" and bom.encoding == "utf-8-sig" and not bom.encoding_flagged
    sjis = Caption.get(Caption.file_path == "sjis.txt")
    assert sjis.content == "猫耳, 少女" and sjis.encoding == "cp932" and sjis.encoding_flagged
    assert [p.path for p in report.problems] == ["sjis.txt"]
    assert "cp932" in report.problems[0].reason
    # reading never rewrites the file
    assert (root / "sjis.txt").read_bytes() == "猫耳, 少女".encode("cp932")


def _png_with_text(path: Path, **text) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)


def _jpeg_with_exif(path: Path) -> None:
    import piexif

    exif = {
        "0th": {
            piexif.ImageIFD.ImageDescription: b"A red bicycle leaning on a wall",
            piexif.ImageIFD.XPKeywords: tuple("bicycle;red;wall".encode("utf-16-le") + b"\0\0"),
            piexif.ImageIFD.XPComment: tuple("nice ride 🚲".encode("utf-16-le") + b"\0\0"),
        },
        "Exif": {piexif.ExifIFD.UserComment: b"ASCII\0\0\0posted from my phone"},
    }
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", exif=piexif.dump(exif))
    path.write_bytes(buf.getvalue())


def test_layout_d_embedded_metadata_when_enabled(db, tmp_path):
    root = tmp_path / "ds"
    _png_with_text(
        root / "gen.png",
        parameters="photo of a duck\nNegative prompt: ugly\nSteps: 20, Sampler: Euler",
        Comment="made with love",
    )
    _jpeg_with_exif(root / "bike.jpg")
    ds, report = add_dataset(DatasetSettings("d", str(root), read_exif=True))
    items = by_image(ds)
    gen = {c["subtype"]: c for c in items["gen.png"]["captions"]}
    assert gen["png_text_parameters"]["type"] == "prompt"
    assert gen["png_text_parameters"]["content"] == "photo of a duck"
    assert gen["png_text_parameters"]["source"] == "png_text"
    assert gen["png_text_comment"]["type"] == "natural_language"
    gen_item = Item.get(Item.image_path == "gen.png")
    assert gen_item.exif_data["png_text"]["parameters"].startswith("photo of a duck\nNegative prompt")
    bike = {(c["type"], c["source"], c.get("source_field")): c["content"] for c in items["bike.jpg"]["captions"]}
    assert bike[("natural_language", "exif", "ImageDescription")] == "A red bicycle leaning on a wall"
    assert bike[("social_media", "exif", "XPComment")] == "nice ride 🚲"
    assert bike[("social_media", "exif", "UserComment")] == "posted from my phone"
    assert bike[("tags", "exif", "XPKeywords")] == "bicycle, red, wall"
    assert [t["tag"] for t in items["bike.jpg"]["tags"]] == ["bicycle", "red", "wall"]
    assert {t["source"] for t in items["bike.jpg"]["tags"]} == {"exif"}


def test_embedded_metadata_off_by_default(db, tmp_path):
    root = tmp_path / "ds"
    _png_with_text(root / "gen.png", parameters="photo of a duck")
    add_dataset(DatasetSettings("d", str(root)))
    assert Caption.select().count() == 0 and Item.get().exif_data is None


def test_synthetic_png_is_valid_and_unique():
    a, b = png_bytes(32, 32, 1), png_bytes(32, 32, 2)
    assert a != b
    im = Image.open(io.BytesIO(a))
    im.load()
    assert im.size == (32, 32)


def test_cancelled_full_reindex_after_a_settings_change_is_finished_by_the_next(db, tmp_path, cancel_after_write):
    """A settings change that needs every file re-read must not be forgotten when that
    reindex is cancelled part-way: the folders it did not reach would otherwise keep what
    the old settings made of them, since their contents did not change."""
    root = tmp_path / "ds"
    for folder in ("a", "b"):
        img(root / folder / "x.png")
        txt(root / folder / "x_alt.txt", "red, blue")
    add_dataset(DatasetSettings("o", str(root), caption_types={"alt": "social_media"}))
    update_settings("o", caption_types={"alt": "tags"})

    report = reindex("o", cancel=cancel_after_write(1))
    assert report.cancelled
    assert sorted(c.type for c in Caption.select()) == ["social_media", "tags"]  # one folder done

    reindex("o")  # no token this time: the armed write trips one nobody watches
    assert [c.type for c in Caption.select()] == ["tags", "tags"]
    assert ItemTag.select().count() == 4
