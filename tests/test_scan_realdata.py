"""The scanner on real-world folders from ../shared/testdata (skipped when absent)."""

from __future__ import annotations

from sushitui.dataset.items import item_to_dict, list_items
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.store import Caption, Item, ItemTag


def problems_by_path(report) -> dict[str, str]:
    return {p.path: p.reason for p in report.problems}


def test_kohya_ss_gui_folders(db, testdata):
    ds, report = add_dataset(DatasetSettings("kohya", str(testdata / "kohya-ss-gui-test")))
    paths = {i.image_path for i in Item.select()}
    assert "img/10_darius kawasaki person/Dariusz_Zawadzki_2.jpg" in paths
    assert "img with spaces/10_darius kawasaki person/Dariusz_Zawadzki_2.jpg" in paths
    # Dariusz_Zawadzki_2 stays one image: "2" is not a suffix
    item = Item.get(Item.image_path == "img/10_darius kawasaki person/Dariusz_Zawadzki_2.jpg")
    assert item.base_name == "Dariusz_Zawadzki_2" and item.item_type == "single"
    cap = Caption.get((Caption.item == item.id) & (Caption.subtype == "main"))
    assert cap.file_path.endswith("Dariusz_Zawadzki_2.txt")
    assert cap.content == (testdata / "kohya-ss-gui-test" / cap.file_path).read_text(encoding="utf-8-sig")
    assert report.items_added == ds.total_items > 0
    assert reindex("kohya").items_unchanged == ds.total_items


def test_dreambooth_subset_nested_subjects(db, testdata):
    ds, report = add_dataset(DatasetSettings("db", str(testdata / "dreambooth-subset")))
    assert ds.total_items == len(list((testdata / "dreambooth-subset").rglob("*.jpg")))
    # the MPO photos (multi-picture JPEG named .jpg) are ordinary JPEGs to the scanner
    assert Item.select().where(Item.rel_dir == "dataset/poop_emoji").count() == 2
    folders = {i.rel_dir for i in Item.select()}
    assert {"dataset/dog", "dataset/cat", "dataset/backpack"} <= folders
    assert all(i.width and i.height and len(i.sha256) == 64 for i in Item.select())


def test_omnigen_layout_c_groups(db, testdata):
    ds, report = add_dataset(DatasetSettings("omni", str(testdata / "omnigen-toy" / "layout-c")))
    items = {d["base_name"]: d for d in (item_to_dict(i) for i in list_items(ds.id))}
    assert set(items) == {"lamp", "pose", "tryon", "umbrella"}
    assert items["tryon"]["related_images"] == {
        "cref": "tryon_cref.png",
        "source": "tryon_source.png",
        "target": "tryon_target.png",
    }
    assert items["lamp"]["image"] == "lamp_target.png" and items["lamp"]["type"] == "group"
    by_subtype = {c["subtype"]: c for c in items["lamp"]["captions"]}
    assert by_subtype["instruction"]["type"] == "instruction"
    # the instruction text is taken verbatim (no trailing newline in the file, none added)
    assert by_subtype["instruction"]["content"] == (
        "Find lamp in the picture <img><|image_1|></img> and color them blue."
    )
    # two targets are really JPEGs named .png: indexed, but the user is told
    assert "JPEG file with a .png extension" in problems_by_path(report)["pose_target.png"]


def test_exiftool_images_metadata(db, testdata):
    ds, report = add_dataset(DatasetSettings("exif", str(testdata / "exiftool-images"), read_exif=True))
    iptc = Item.get(Item.image_path == "images/IPTC.jpg")
    caps = {(c.source, c.source_field): c for c in Caption.select().where(Caption.item == iptc.id)}
    assert caps[("iptc", "Keywords")].type == "tags"
    assert caps[("iptc", "Caption-Abstract")].type == "description"
    assert caps[("iptc", "Caption-Abstract")].content == "A witty caption"
    assert iptc.exif_data["iptc"]["Keywords"] == ["ExifTool", "Test", "IPTC"]
    xmp = Item.get(Item.image_path == "images/XMP.jpg")  # UTF-16 XMP packet
    caps = {(c.source, c.source_field): c.content for c in Caption.select().where(Caption.item == xmp.id)}
    # the embedded packet is read (raw), but XMP.xmp beside it is its sidecar, whose dc:subject wins
    assert xmp.exif_data["xmp"]["dc:subject"] == ["ExifTool", "Test", "XMP"]
    assert caps[("xmp", "XMP.xmp: dc:subject")] == "test1, &-&amp;-&"
    assert caps[("xmp", "dc:description")] == "UTF-16 (big-endian) encoded XMP"
    assert caps[("exif", "ImageDescription")] == "A witty caption"


def test_exif_python_windows_xp_tags_and_zero_byte(db, testdata):
    ds, report = add_dataset(DatasetSettings("xp", str(testdata / "exif-python-pkgs"), read_exif=True))
    item = Item.get(Item.image_path == "TNThieding-exif/windows_xp_tags.jpg")
    caps = {c.source_field: c for c in Caption.select().where(Caption.item == item.id)}
    assert caps["XPComment"].type == "social_media" and caps["XPComment"].content == "XP-Style Comment ⛷"
    assert caps["XPKeywords"].type == "tags"
    assert "0 bytes" in problems_by_path(report)["piexif/notjpeg.jpg"]


def test_sd_parsers_generation_parameters(db, testdata):
    ds, report = add_dataset(DatasetSettings("sd", str(testdata / "sd-parsers-images"), read_exif=True))
    png = Item.get(Item.image_path == "parsers/AUTOMATIC1111/automatic1111_cropped.png")
    cap = Caption.get(Caption.item == png.id)
    assert (cap.type, cap.source, cap.source_field, cap.content) == (
        "prompt",
        "png_text",
        "parameters",
        "photo of a duck",
    )
    jpg = Item.get(Item.image_path == "parsers/AUTOMATIC1111/automatic1111_cropped.jpg")
    cap = Caption.get(Caption.item == jpg.id)
    assert (cap.type, cap.source, cap.source_field, cap.content) == ("prompt", "exif", "UserComment", "photo of a duck")
    comfy = Item.get(Item.image_path == "parsers/ComfyUI/img2img_cropped.png")
    assert "workflow" in comfy.exif_data["png_text"]  # kept raw, not a caption
    assert "0 bytes" in problems_by_path(report)["bad_images/empty_file.png"]


def test_pillow_tests_hostile_and_metadata(db, testdata):
    ds, report = add_dataset(DatasetSettings("pil", str(testdata / "pillow-tests"), read_exif=True))
    problems = problems_by_path(report)
    assert "truncated" in problems["hostile/truncated_jpeg.jpg"]
    assert "truncated" in problems["hostile/truncated_image.png"]
    assert "EXIF data is damaged" in problems["hostile/invalid-exif.jpg"]
    assert Item.get(Item.image_path == "hostile/invalid-exif.jpg").problems  # indexed, with its problem
    iptc = Item.get(Item.image_path == "metadata/iptc.jpg")
    assert "Budapest" in [t.tag for t in ItemTag.select().where(ItemTag.item == iptc.id)]


def test_danbooru_testfiles_corrupt_and_renamed(db, testdata):
    ds, report = add_dataset(DatasetSettings("dan", str(testdata / "danbooru-testfiles")))
    problems = problems_by_path(report)
    assert "0 bytes" in problems["png/empty.png"]
    assert "truncated WebP" in problems["webp/truncated.webp"]
    assert "JPEG file with a .png extension" in problems["png/jpg.png"]
    item = Item.get(Item.image_path == "png/jpg.png")
    assert (item.width, item.height) == (16, 16)
    webp = Item.get(Item.image_path == "webp/Exif6.webp")
    assert (webp.width, webp.height) == (427, 640)
