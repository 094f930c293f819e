"""XMP sidecars (x.xmp / x.jpg.xmp beside x.jpg) and Windows XPKeywords (issue 17, Read)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import piexif
import pytest
from PIL import Image

from sushitui.dataset.captions import set_tags
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.store import Caption, Item

XMP_DIR = "exiftool-images/images"


def _img(path: Path, exif: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (16, 12), (10, 120, 30))
    if exif is not None:
        im.save(path, "JPEG", exif=exif)
    else:
        im.save(path, "JPEG")
    return path


def _xmp(subjects: list[str], description: str | None = None) -> str:
    lis = "".join(f"<rdf:li>{s}</rdf:li>" for s in subjects)
    desc = (
        (f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt></dc:description>')
        if description
        else ""
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:subject><rdf:Bag>{lis}</rdf:Bag></dc:subject>{desc}"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )


def _captions(item_path: str) -> dict[str, Caption]:
    item = Item.get(Item.image_path == item_path)
    return {c.subtype: c for c in Caption.select().where(Caption.item == item.id)}


def test_sidecar_keywords_become_tags_and_description_a_description(db, tmp_path):
    root = tmp_path / "photos"
    _img(root / "beach.jpg")
    (root / "beach.xmp").write_text(_xmp(["sea", "sand", "summer holiday"], "A quiet beach at dawn"), "utf-8")
    _img(root / "sub" / "dog.jpg")
    (root / "sub" / "dog.jpg.xmp").write_text(_xmp(["dog"]), "utf-8")  # darktable's naming
    ds, report = add_dataset(DatasetSettings("p", str(root)))  # embedded metadata off: sidecars are still read
    assert report.problems == []
    caps = _captions("beach.jpg")
    assert caps["xmp_dc_subject"].type == "tags" and caps["xmp_dc_subject"].content == "sea, sand, summer holiday"
    assert caps["xmp_dc_description"].type == "description"
    assert caps["xmp_dc_description"].content == "A quiet beach at dawn"
    assert caps["xmp_dc_subject"].source == "xmp" and caps["xmp_dc_subject"].file_path is None
    assert "beach.xmp" in caps["xmp_dc_subject"].source_field
    assert _captions("sub/dog.jpg")["xmp_dc_subject"].content == "dog"
    assert Item.get(Item.image_path == "beach.jpg").tag_count == 3
    assert ds.total_items == 2  # a sidecar is no item of its own


def test_a_changed_or_deleted_sidecar_is_reread_by_an_incremental_reindex(db, tmp_path):
    root = tmp_path / "photos"
    _img(root / "a.jpg")
    side = root / "a.xmp"
    side.write_text(_xmp(["one"]), "utf-8")
    ds, _ = add_dataset(DatasetSettings("p", str(root)))
    side.write_text(_xmp(["one", "two"]), "utf-8")
    os.utime(side, ns=(side.stat().st_mtime_ns + 10**9,) * 2)
    report = reindex(ds)
    assert report.items_updated == 1
    assert _captions("a.jpg")["xmp_dc_subject"].content == "one, two"
    assert reindex(ds).items_updated == 0  # nothing changed: nothing re-read
    side.unlink()
    reindex(ds)
    assert "xmp_dc_subject" not in _captions("a.jpg")


def test_editing_sidecar_tags_writes_a_caption_file_and_never_the_sidecar(db, tmp_path):
    root = tmp_path / "photos"
    _img(root / "a.jpg")
    side = root / "a.xmp"
    side.write_text(_xmp(["one"]), "utf-8")
    before = side.read_bytes()
    ds, _ = add_dataset(DatasetSettings("p", str(root)))
    item = Item.get(Item.image_path == "a.jpg")
    set_tags(item, ["one", "edited"], subtype="xmp_dc_subject")
    assert side.read_bytes() == before
    written = root / "a_xmp-dc-subject.txt"
    assert written.read_text("utf-8") == "one, edited"
    reindex(ds)
    caps = _captions("a.jpg")
    assert caps["xmp-dc-subject"].content == "one, edited" and caps["xmp_dc_subject"].content == "one"


def test_both_sidecar_names_the_exact_one_is_read_and_the_other_reported(db, tmp_path):
    root = tmp_path / "photos"
    _img(root / "a.jpg")
    (root / "a.xmp").write_text(_xmp(["from-a-xmp"]), "utf-8")
    (root / "a.jpg.xmp").write_text(_xmp(["from-a-jpg-xmp"]), "utf-8")
    (root / "lonely.xmp").write_text(_xmp(["x"]), "utf-8")
    ds, report = add_dataset(DatasetSettings("p", str(root)))
    assert _captions("a.jpg")["xmp_dc_subject"].content == "from-a-jpg-xmp"
    reasons = {p.path: p.reason for p in report.problems}
    assert "a.xmp" in reasons and "ignored" in reasons["a.xmp"]
    assert "lonely.xmp" in reasons and "without an image" in reasons["lonely.xmp"]


def test_a_broken_sidecar_is_a_problem_named_by_file_and_the_image_is_indexed(db, tmp_path):
    root = tmp_path / "photos"
    _img(root / "a.jpg")
    (root / "a.xmp").write_text("<x:xmpmeta><rdf:RDF>not closed", "utf-8")
    ds, report = add_dataset(DatasetSettings("p", str(root)))
    assert ds.total_items == 1
    assert any("a.xmp" in p.reason and "not valid XML" in p.reason for p in report.problems)


def test_sidecar_wins_over_embedded_xmp_of_the_same_field(db, tmp_path, testdata):
    root = tmp_path / "photos"
    root.mkdir()
    shutil.copy(testdata / XMP_DIR / "XMP.jpg", root / "x.jpg")  # embedded dc:subject ExifTool, Test, XMP
    (root / "x.xmp").write_text(_xmp(["sidecar"]), "utf-8")
    add_dataset(DatasetSettings("p", str(root), read_exif=True))
    caps = [c for c in Caption.select() if c.subtype == "xmp_dc_subject"]
    assert [c.content for c in caps] == ["sidecar"]
    # the embedded description is kept: the sidecar has none
    assert "UTF-16" in _captions("x.jpg")["xmp_dc_description"].content


@pytest.mark.parametrize("name, expected", [("XMP.xmp", ["test1", "&-&amp;-&"]), ("XMP4.xmp", ["one", "two"])])
def test_real_exiftool_sidecars(db, tmp_path, testdata, name, expected):
    root = tmp_path / "photos"
    _img(root / "p.jpg")
    shutil.copy(testdata / XMP_DIR / name, root / "p.xmp")
    os.chmod(root / "p.xmp", 0o644)
    _, report = add_dataset(DatasetSettings("p", str(root)))
    assert report.problems == []
    from sushitui.dataset.captions import item_tags

    assert item_tags(Item.get(Item.image_path == "p.jpg"), "xmp_dc_subject") == expected


def test_windows_xpkeywords_are_split_on_semicolons(db, tmp_path, testdata):
    root = tmp_path / "photos"
    kw = "cat;black and white;sleeping".encode("utf-16-le") + b"\x00\x00"
    exif = piexif.dump({"0th": {piexif.ImageIFD.XPKeywords: tuple(kw)}})
    _img(root / "win.jpg", exif=exif)
    shutil.copy(testdata / "exif-python-pkgs/TNThieding-exif/windows_xp_tags.jpg", root / "real.jpg")
    add_dataset(DatasetSettings("w", str(root), read_exif=True))
    from sushitui.dataset.captions import item_tags

    assert item_tags(Item.get(Item.image_path == "win.jpg"), "exif_xpkeywords") == [
        "cat",
        "black and white",
        "sleeping",
    ]
    assert item_tags(Item.get(Item.image_path == "real.jpg"), "exif_xpkeywords") == ["XP-Style Keywords"]
