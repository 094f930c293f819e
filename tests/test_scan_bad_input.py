"""Bad input never stops a scan (SCAN-10): each bad file is a problem, the rest is indexed."""

from __future__ import annotations

import os
from pathlib import Path

from sushitui.dataset import scan_worker
from sushitui.dataset.image_header import inspect
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.dataset.synthetic import png_bytes
from sushitui.store import Caption, Item


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def problems_by_path(report) -> dict[str, str]:
    return {p.path: p.reason for p in report.problems}


def good(root: Path, name: str = "good.png") -> None:
    write(root / name, png_bytes(8, 8, 42))
    write(root / (name.rsplit(".", 1)[0] + ".txt"), "ok")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header that claims a huge size (what a decompression bomb looks like)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def test_broken_images_are_problems_and_the_rest_is_indexed(db, tmp_path):
    root = tmp_path / "ds"
    good(root)
    full = png_bytes(64, 64, 1)
    write(root / "zero.png", b"")
    write(root / "truncated.png", full[: len(full) // 2])
    write(root / "garbage.jpg", os.urandom(300))
    write(root / "bomb.png", bomb_png(225_000, 225_000))
    write(root / "bomb.txt", "caption of the bomb")
    write(root / "named_wrong.jpg", png_bytes(8, 8, 5))  # a PNG with a .jpg name: usable, flagged
    ds, report = add_dataset(DatasetSettings("bad", str(root)))
    problems = problems_by_path(report)
    assert "0 bytes" in problems["zero.png"]
    assert "truncated PNG" in problems["truncated.png"]
    assert "not a PNG, JPEG or WebP" in problems["garbage.jpg"]
    assert "decompression-bomb limit" in problems["bomb.png"] and "225000×225000" in problems["bomb.png"]
    assert "PNG file with a .jpg extension" in problems["named_wrong.jpg"]
    assert sorted(i.image_path for i in Item.select()) == ["good.png", "named_wrong.jpg"]
    assert Item.get(Item.image_path == "named_wrong.jpg").problems
    assert Caption.select().count() == 1  # the bomb's caption was not indexed with it
    # the report is stored for `dataset show` and the TUI
    stored = {p["path"] for p in ds.last_scan_report["problems"]}
    assert {"zero.png", "bomb.png", "truncated.png"} <= stored


def test_truncated_jpeg_and_webp_detected_from_bytes():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    jpg = buf.getvalue()
    assert inspect(jpg, ".jpg").error is None
    assert "truncated JPEG" in inspect(jpg[: len(jpg) - 40], ".jpg").error
    buf = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buf, format="WEBP")
    webp = buf.getvalue()
    info = inspect(webp, ".webp")
    assert (info.width, info.height, info.error) == (64, 48, None)
    assert "truncated WebP" in inspect(webp[:30], ".webp").error


def test_symlinks_broken_and_looping(db, tmp_path):
    root = tmp_path / "ds"
    good(root)
    (root / "dangling.png").symlink_to(root / "does-not-exist.png")
    (root / "self.png").symlink_to(root / "self.png")
    (root / "sub").mkdir()
    good(root / "sub", "inner.png")
    (root / "sub" / "back").symlink_to(root)  # a directory loop
    (root / "linked.png").symlink_to(root / "good.png")  # a valid link is followed
    ds, report = add_dataset(DatasetSettings("links", str(root)))
    problems = problems_by_path(report)
    assert "broken symbolic link" in problems["dangling.png"]
    assert "loop" in problems["self.png"]
    assert "loop" in problems["sub/back"]
    assert sorted(i.image_path for i in Item.select()) == ["good.png", "linked.png", "sub/inner.png"]


def test_odd_names(db, tmp_path):
    root = tmp_path / "ds"
    names = ["with space.png", "ünïcødé 猫.png", "new\nline.png", "tab\there.png", "-dash.png", "esc\x1b[31m.png"]
    for i, n in enumerate(names):
        write(root / n, png_bytes(8, 8, i))
        write(root / (n[:-4] + ".txt"), f"tag{i}")
    ds, report = add_dataset(DatasetSettings("odd", str(root)))
    assert report.problems == []
    assert sorted(i.image_path for i in Item.select()) == sorted(names)
    assert Caption.select().count() == len(names)


def test_unreadable_and_vanished_files(db, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    good(root)
    write(root / "locked.png", png_bytes(8, 8, 1))
    write(root / "gone.png", png_bytes(8, 8, 2))
    write(root / "lockedcap.png", png_bytes(8, 8, 3))
    write(root / "lockedcap.txt", "x")
    real_probe = scan_worker.probe_image
    real_open = open

    def fake_open(path, *a, **kw):
        if str(path).endswith(("locked.png", "lockedcap.txt")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    def probe(path, ext, read_meta=False):
        if path.endswith("gone.png"):
            os.unlink(path)  # deleted between the walk and the read
        return real_probe(path, ext, read_meta)

    import sushitui.dataset.caption_files as caption_files

    monkeypatch.setattr(scan_worker, "open", fake_open, raising=False)
    monkeypatch.setattr(caption_files, "open", fake_open, raising=False)
    monkeypatch.setattr(scan_worker, "probe_image", probe)
    ds, report = add_dataset(DatasetSettings("perm", str(root)))
    problems = problems_by_path(report)
    assert "permission denied" in problems["locked.png"]
    assert "vanished" in problems["gone.png"]
    assert "permission denied" in problems["lockedcap.txt"]
    assert sorted(i.image_path for i in Item.select()) == ["good.png", "lockedcap.png"]


def test_unreadable_folder_keeps_its_items_on_reindex(db, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    good(root)
    good(root / "sub", "inner.png")
    add_dataset(DatasetSettings("dir", str(root)))
    real_scandir, real_open = os.scandir, os.open

    def denied(path):
        if isinstance(path, str) and path.endswith("sub"):  # as root, chmod 000 would not stop us
            raise PermissionError(13, "Permission denied", path)

    def scandir(path):
        denied(path)
        return real_scandir(path)

    def open_(path, *args, **kw):
        denied(path)
        return real_open(path, *args, **kw)

    # the walk opens a folder with os.open (then scandir on the descriptor) or os.scandir
    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", open_)
    report = reindex("dir")
    assert "folder cannot be read" in problems_by_path(report)["sub"]
    assert report.items_removed == 0 and Item.select().count() == 2


def test_fifo_and_temp_files_are_skipped(db, tmp_path):
    root = tmp_path / "ds"
    good(root)
    os.mkfifo(root / "pipe.png")  # would block a naive open()
    write(root / ".good.txt.sushitui-tmp-abc", "half-written")
    write(root / "._good.png", b"\0\5\x16\7")  # macOS resource fork
    ds, report = add_dataset(DatasetSettings("fifo", str(root)))
    assert "not a regular file" in problems_by_path(report)["pipe.png"]
    assert [i.image_path for i in Item.select()] == ["good.png"]
    assert Caption.get().content == "ok"


def test_orphan_caption_and_duplicate_base_names(db, tmp_path):
    root = tmp_path / "ds"
    write(root / "x.png", png_bytes(8, 8, 1))
    write(root / "x.jpg", png_bytes(8, 8, 2))
    write(root / "x.txt", "for x")
    write(root / "x.png.txt", "for the png")
    write(root / "lonely.txt", "no image")
    ds, report = add_dataset(DatasetSettings("dup", str(root)))
    problems = problems_by_path(report)
    assert "without an image" in problems["lonely.txt"]
    assert "another image has the base name 'x'" in problems["x.png"]
    assert "x.png.txt" in problems["x.png"]
    assert Item.select().count() == 2  # both images are indexed
    assert Caption.get(Caption.file_path == "x.txt").item.image_path == "x.jpg"
    assert Caption.get(Caption.file_path == "x.png.txt").item.image_path == "x.png"


def test_images_sharing_a_base_name_get_separate_caption_files_on_edit(db, tmp_path):
    from sushitui.dataset.captions import TagEdit, set_tags_many

    root = tmp_path / "ds"
    write(root / "a.jpg", png_bytes(8, 8, 1))
    write(root / "a.webp", png_bytes(8, 8, 2))
    add_dataset(DatasetSettings("dup", str(root)))
    report = set_tags_many([TagEdit(i, ["cat"]) for i in Item.select()])
    assert report.problems == [] and report.changed == 2
    assert (root / "a.txt").read_text() == "cat" and (root / "a.webp.txt").read_text() == "cat"
    assert reindex("dup").items_unchanged == 2


def test_exif_description_with_control_characters_stays_text(db, tmp_path):
    from PIL import Image

    root = tmp_path / "ds"
    root.mkdir()
    exif = Image.Exif()
    exif[0x010E] = "a red fox\x1b[2J in snow"
    Image.new("RGB", (8, 8)).save(root / "fox.jpg", exif=exif)
    add_dataset(DatasetSettings("exif", str(root), read_exif=True))
    assert [c.content for c in Caption.select()] == ["a red fox\x1b[2J in snow"]


def test_non_utf8_filename_is_a_problem(db, tmp_path):
    root = tmp_path / "ds"
    good(root)
    bad = os.fsencode(str(root)) + b"/caf\xe9.png"
    with open(bad, "wb") as fh:
        fh.write(png_bytes(8, 8, 3))
    ds, report = add_dataset(DatasetSettings("enc", str(root)))
    assert any("not valid UTF-8" in p.reason for p in report.problems)
    assert Item.select().count() == 1


def test_hostile_images_folder(db, testdata):
    ds, report = add_dataset(DatasetSettings("hostile", str(testdata / "hostile-images")))
    problems = problems_by_path(report)
    assert "decompression-bomb limit" in problems["big-png/spark.png"]
    assert "truncated" in problems["rabbit/pillars-1024x1024-truncated.jpg"]
    assert "truncated" in problems["rabbit/pillars-1024x1024-truncated.png"]
    assert [i.image_path for i in Item.select()] == ["rabbit/pillars-1024x1024.jpg"]


def test_hostile_bomb_never_decoded_even_with_metadata(db, testdata, monkeypatch):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ds, report = add_dataset(DatasetSettings("hostile", str(testdata / "hostile-images"), read_exif=True))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200
    assert "decompression-bomb" in problems_by_path(report)["big-png/spark.png"]
