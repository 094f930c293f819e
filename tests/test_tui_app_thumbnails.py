"""Thumbnails for the browser: small, upright, bounded in memory, and every bad file
gives a reason instead of an exception (or a decompression-bomb decode)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from sushitui.dataset.thumbnails import ThumbnailCache, decode_thumbnail


def _jpeg(path: Path, size=(1600, 1200), exif_orientation: int | None = None) -> Path:
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, size[0] // 2, size[1]))  # left half blue
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    img.save(path, "JPEG", quality=85, **kwargs)
    return path


def test_big_jpeg_is_downscaled_into_the_box(tmp_path):
    thumb = decode_thumbnail(_jpeg(tmp_path / "big.jpg"), (256, 256))
    assert thumb.ok and thumb.reason is None
    assert (thumb.width, thumb.height) == (1600, 1200)  # original size reported
    assert max(thumb.image.size) == 256 and thumb.image.mode == "RGB"
    # the left half stayed blue: pixels survive the draft + thumbnail path
    r, g, b = thumb.image.getpixel((10, 10))
    assert b > 150 and r < 100


def test_exif_orientation_is_applied(tmp_path):
    thumb = decode_thumbnail(_jpeg(tmp_path / "rot.jpg", (400, 200), exif_orientation=6), (256, 256))
    w, h = thumb.image.size
    assert h > w  # a landscape file tagged "rotate 90" shows portrait


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "not a readable image"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10), "truncated"),
        (lambda p: p.write_text("hello"), "not a readable image"),
        (lambda p: None, "file not found"),
    ],
)
def test_bad_files_give_a_reason(tmp_path, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    thumb = decode_thumbnail(path)
    assert thumb.image is None and reason in thumb.reason


def test_truncated_jpeg_is_reported_not_decoded(tmp_path):
    path = _jpeg(tmp_path / "t.jpg")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    thumb = decode_thumbnail(path)
    assert thumb.image is None and "truncated" in thumb.reason


def test_decompression_bomb_header_is_refused_without_decoding(tmp_path, monkeypatch):
    # a real 3000×3000 PNG with the limit lowered below its size: refused from the header
    path = tmp_path / "large.png"
    Image.new("RGB", (3000, 3000)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    t = time.perf_counter()
    thumb = decode_thumbnail(path)
    assert thumb.image is None and "too large" in thumb.reason
    assert time.perf_counter() - t < 0.5


def test_real_png_bomb_from_testdata(testdata):
    bomb = next((testdata / "hostile-images").rglob("spark.png"))
    t = time.perf_counter()
    thumb = decode_thumbnail(bomb)
    assert thumb.image is None and "too large" in thumb.reason
    assert time.perf_counter() - t < 1.0


@pytest.mark.parametrize("mode", ["CMYK", "LA", "I;16", "P", "1", "F"])
def test_every_mode_becomes_rgb_or_rgba(tmp_path, mode):
    img = Image.new(mode, (64, 48))
    path = tmp_path / f"m.{'tiff' if mode in ('F', 'I;16', 'CMYK') else 'png'}"
    img.save(path)
    thumb = decode_thumbnail(path)
    assert thumb.ok and thumb.image.mode in ("RGB", "RGBA")


def test_cache_is_bounded_and_get_never_decodes(tmp_path):
    paths = []
    for i in range(12):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (300, 300), (i * 20, 0, 0)).save(p)
        paths.append(p)
    one = 256 * 256 * 3 + 64
    cache = ThumbnailCache(budget_bytes=one * 5)
    assert cache.get(paths[0]) is None  # cache-only: nothing decoded yet
    results = cache.load_many([(p, None) for p in paths])
    assert all(r.ok for r in results)
    assert len(cache) == 5 and cache.used_bytes <= one * 5  # LRU kept the budget
    assert cache.get(paths[-1]) is not None and cache.get(paths[0]) is None
    # a new stamp (the file was replaced and reindexed) is a different entry
    assert cache.get(paths[-1], stamp=123) is None
    cache.close()


def test_halfcell_preview_fits_the_box_and_keeps_colours():
    from sushitui.dataset.thumbnails import Thumbnail
    from sushitui.tui.widgets.item_grid import thumbnail_strips

    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 50, 200, 100))  # lower half blue
    strips = thumbnail_strips(Thumbnail(img, None, 200, 100), (20, 6), "halfcell")
    assert strips.width <= 20 and len(strips.lines) <= 6
    assert all(line.cell_length == strips.width for line in strips.lines)
    # wide picture: limited by the width, so it is wider than tall in cells
    assert strips.width == 20 and len(strips.lines) < 6
    top = list(strips.lines[0])[0]
    bottom = list(strips.lines[-1])[0]
    assert top.text == "▀"
    assert top.style.color.triplet == (255, 0, 0)
    assert bottom.style.bgcolor.triplet == (0, 0, 255)


def test_kitty_preview_is_sent_once_and_drawn_with_placeholders(monkeypatch):
    """Kitty graphics: the image goes to the terminal once; the grid composes the
    renderable's placeholder cells like text, and frees the image when done."""
    import textual_image.renderable.tgp as tgp

    from sushitui.dataset.thumbnails import Thumbnail
    from sushitui.tui.widgets.item_grid import thumbnail_strips

    sent = []
    monkeypatch.setattr(tgp, "_send_tgp_message", lambda **kw: sent.append(kw))
    img = Image.new("RGB", (100, 100), (0, 200, 0))
    strips = thumbnail_strips(Thumbnail(img, None, 100, 100), (20, 6), "tgp")
    assert strips.width <= 20 and 0 < len(strips.lines) <= 6
    assert any(kw.get("a") == "p" for kw in sent)  # one virtual placement
    transmitted = len(sent)
    strips.cleanup()
    assert sent[transmitted:] and sent[-1].get("a") == "d"  # deleted from the terminal
