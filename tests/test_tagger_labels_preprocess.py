"""Label files, preprocessing per family, score selection and the cache encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tagger_support import CL_LABELS, WD_CSV, tiny_models

from sushitui.tagger import cache as tcache
from sushitui.tagger.labels import LabelError, load_labels, parse_cl_json, parse_wd_csv
from sushitui.tagger.postprocess import Selection, mcut, select_tags, sigmoid, to_probabilities
from sushitui.tagger.preprocess import decode_file, prepare_image, square_pixels, to_rgb_over_white

# --- label files -----------------------------------------------------------------------


def test_wd_csv_keeps_row_order_categories_and_kaomoji():
    labels = parse_wd_csv(tiny_models()["wd_csv"])
    assert labels.names[:2] == ["red_background", "blue_background"]
    assert labels.indices("rating") == [2, 3]
    assert labels.indices("general") == [0, 1, 4, 6]
    assert labels.indices("character") == [5]
    assert labels.display(4) == "^_^"  # kaomoji keeps its underscore
    assert labels.display(5) == "hatsune miku"
    assert labels.display(5, underscores=True) == "hatsune_miku"


def test_wd_csv_missing_column_names_the_file(tmp_path):
    p = tmp_path / "selected_tags.csv"
    p.write_text("tag_id,name,count\n1,a,2\n")
    with pytest.raises(LabelError, match=r"selected_tags.csv.*category"):
        parse_wd_csv(p)
    p.write_text(WD_CSV.replace(",4,40", ",x,40"))
    with pytest.raises(LabelError, match="line 7"):
        parse_wd_csv(p)


def test_cl_schemas_a_and_b_parse_alike_with_holes_and_any_case():
    m = tiny_models()
    a, b = parse_cl_json(m["cl_json"]), parse_cl_json(m["cl_json_b"])
    assert a.names == b.names and a.categories == b.categories
    assert len(a) == CL_LABELS
    assert a.names[4] is None  # the hole is never emitted
    assert a.indices("general") == [0, 1]  # "General" and "general" both map
    assert a.indices("quality") == [6] and a.indices("meta") == [7]
    assert a.categories[8] == "other"  # unknown category "Foo"


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "JSON object"),
        ('{"x": {"tag": "a"}}', "'x' is not an integer"),
        ('{"0": {"category": "General"}}', 'no string "tag"'),
        ("{not json", "not valid JSON"),
    ],
)
def test_cl_bad_mapping_is_one_clear_error(tmp_path, content, message):
    p = tmp_path / "tag_mapping.json"
    p.write_text(content)
    with pytest.raises(LabelError) as exc:
        load_labels(p)
    assert message in str(exc.value) and "tag_mapping.json" in str(exc.value)


def test_cl_escaped_parentheses_are_unescaped(tmp_path):
    p = tmp_path / "tag_mapping.json"
    p.write_text(json.dumps({"0": {"tag": "star_\\(symbol\\)", "category": "General"}}))
    assert parse_cl_json(p).display(0) == "star (symbol)"


# --- preprocessing -----------------------------------------------------------------------


def test_wd_red_is_bgr_nhwc_0_255_with_white_padding():
    x = prepare_image(Image.new("RGB", (300, 200), (255, 0, 0)), "wd")
    assert x.shape == (448, 448, 3) and x.dtype == np.float32
    assert x[224, 224].tolist() == [0.0, 0.0, 255.0]  # BGR
    assert x[0, 224].tolist() == [255.0, 255.0, 255.0]  # white band on top (landscape)


def test_wd_padding_is_centred_white_rows_top_and_bottom():
    x = prepare_image(Image.new("RGB", (448, 224), (0, 0, 0)), "wd")
    assert (x[:100] == 255).all() and (x[-100:] == 255).all()
    assert (x[150:290] == 0).all()


def test_cl_is_nchw_bgr_minus_one_to_one():
    x = prepare_image(Image.new("RGB", (300, 200), (255, 0, 0)), "cl")
    assert x.shape == (3, 448, 448)
    assert (
        x[2, 224, 224] == pytest.approx(1.0)
        and x[0, 224, 224] == pytest.approx(-1.0)
        and x[1, 224, 224] == pytest.approx(-1.0)
    )
    assert x[:, 0, 224].tolist() == pytest.approx([1.0, 1.0, 1.0])  # white padding = +1


def test_fully_transparent_image_becomes_white():
    x = prepare_image(Image.new("RGBA", (64, 32), (0, 0, 0, 0)), "wd")
    assert (x == 255).all()


def _mode_images():
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 1  # index 1 (red) is transparent → white
    i16 = Image.fromarray(np.full((30, 40), 65535, np.uint16))
    return {
        "RGB": Image.new("RGB", (40, 30), (255, 0, 0)),
        "RGBA": Image.new("RGBA", (40, 30), (255, 0, 0, 255)),
        "L": Image.new("L", (40, 30), 255),
        "LA": Image.new("LA", (40, 30), (0, 0)),
        "P+transparency": pal,
        "I;16": i16,
        "CMYK": Image.new("CMYK", (40, 30), (0, 0, 0, 0)),
        "1": Image.new("1", (40, 30), 1),
        "F": Image.new("F", (40, 30), 1.0),
    }


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_every_image_mode_gives_three_channels(mode):
    img = _mode_images()[mode]
    rgb = to_rgb_over_white(img)
    assert rgb.mode == "RGB"
    px = square_pixels(img, 32)
    assert px.shape == (32, 32, 3) and px.dtype == np.uint8
    if mode in ("L", "LA", "P+transparency", "I;16", "CMYK", "1", "F"):
        assert px[16, 16].tolist() == [255, 255, 255], mode  # white, transparent-over-white, or full-scale grey


@pytest.mark.parametrize("fmt,suffix", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("GIF", "gif")])
def test_decode_file_formats_and_hash(tmp_path, fmt, suffix):
    p = tmp_path / f"x.{suffix}"
    Image.new("RGB", (60, 40), (255, 0, 0)).save(p, format=fmt)
    d = decode_file(0, str(p), 32)
    assert d.error is None and d.pixels.shape == (32, 32, 3)
    assert d.pixels[16, 16, 0] > 200 and d.pixels[16, 16, 2] < 60  # red stays red
    assert d.sha256 and len(d.sha256) == 64


def test_cmyk_jpeg_and_corrupt_files_are_data_not_exceptions(tmp_path):
    good = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (50, 50), (0, 255, 255, 0)).save(good)
    assert decode_file(0, str(good), 32).error is None
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    assert "not a readable image" in decode_file(1, str(bad), 32).error
    trunc = tmp_path / "trunc.png"
    Image.new("RGB", (200, 200), (1, 2, 3)).save(tmp_path / "full.png")
    trunc.write_bytes((tmp_path / "full.png").read_bytes()[:60])
    assert decode_file(2, str(trunc), 32).error is not None
    assert "cannot read" in decode_file(3, str(tmp_path / "missing.png"), 32).error


def test_jpeg_draft_changes_little_and_decodes_smaller(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 32, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((1024, 1536), Image.BICUBIC)
    p = tmp_path / "big.jpg"
    img.save(p, quality=90)
    full = decode_file(0, str(p), 448, draft=False).pixels.astype(np.int16)
    drafted = decode_file(0, str(p), 448, draft=True).pixels.astype(np.int16)
    assert np.abs(full - drafted).mean() < 2.0  # of 255


# --- selection -----------------------------------------------------------------------


def test_mcut_and_character_floor():
    assert mcut(np.array([0.9, 0.85, 0.3, 0.2, 0.1])) == pytest.approx(0.575)
    assert mcut(np.array([0.5])) is None
    labels = parse_wd_csv(tiny_models()["wd_csv"])
    probs = np.array([0.9, 0.85, 0.1, 0.2, 0.3, 0.12, 0.2], np.float32)
    sel = Selection(categories=("general", "character"), mcut_categories=("general", "character"))
    tags = [p.tag for p in select_tags(probs, labels, "wd", sel)]
    assert tags == ["red background", "blue background"]  # 0.12 < the 0.15 character floor
    probs[5] = 0.16
    assert "hatsune miku" not in [p.tag for p in select_tags(probs, labels, "wd", sel)]  # one value → no MCut


def test_thresholds_are_inclusive_and_argmax_for_rating_and_quality():
    labels = parse_cl_json(tiny_models()["cl_json"])
    probs = np.array([0.35, 0.3499, 0.2, 0.7, 0.0, 0.6, 0.4, 0.9, 0.99], np.float32)
    sel = Selection(categories=("rating", "general", "character", "quality", "meta"), threshold=0.35)
    got = [(p.tag, p.category) for p in select_tags(probs, labels, "cl", sel)]
    assert got == [
        ("sensitive", "rating"),
        ("hatsune miku", "character"),
        ("red background", "general"),
        ("masterpiece", "quality"),
    ]
    # the cl_tagger meta filter dropped "commentary_request"; without it, it is kept
    sel.cl_meta_filter = False
    assert ("commentary request", "meta") in [(p.tag, p.category) for p in select_tags(probs, labels, "cl", sel)]
    sel.exclude = frozenset({"red_background"})
    assert "red background" not in [p.tag for p in select_tags(probs, labels, "cl", sel)]


def test_general_tags_are_ordered_by_confidence_and_character_default_differs_per_family():
    labels = parse_wd_csv(tiny_models()["wd_csv"])
    probs = np.array([0.5, 0.9, 0.0, 0.0, 0.7, 0.8, 0.0], np.float32)
    sel = Selection(categories=("general", "character"))
    assert [p.tag for p in select_tags(probs, labels, "wd", sel)] == [
        "blue background",
        "^_^",
        "red background",
    ]  # 0.8 < WD 0.85
    cl = Selection(categories=("character",))
    assert cl.threshold_for("character", "cl") == 0.60 and cl.threshold_for("character", "wd") == 0.85


def test_probabilities_sigmoid_for_cl_and_guard_for_wd():
    logits = np.array([[0.0, 30.0, -30.0, np.nan]], np.float32)
    p, guard = to_probabilities(logits, "cl")
    assert p[0, 0] == pytest.approx(0.5) and p[0, 1] > 0.999 and p[0, 2] < 1e-6 and p[0, 3] == pytest.approx(0.5)
    wd, guard = to_probabilities(np.array([[0.2, 0.9]], np.float32), "wd")
    assert not guard and wd.tolist()[0] == pytest.approx([0.2, 0.9])
    out, guard = to_probabilities(np.array([[-2.0, 3.0]], np.float32), "wd")
    assert guard and out[0].tolist() == pytest.approx(sigmoid(np.array([-2.0, 3.0])).tolist())


def test_cache_encoding_round_trips_scores_above_the_floor_and_argmax_rows():
    probs = np.array([0.5, 0.001, 0.02, 0.0005, 0.9], np.float32)
    back = tcache.decode(tcache.encode(probs, keep=np.array([3])))
    assert back.tolist() == pytest.approx([0.5, 0.0, 0.02, 0.0005, 0.9])
    assert tcache.decode(b"garbage") is None
    assert tcache.covers(0.01) and not tcache.covers(0.005)


def test_real_hostile_and_odd_mode_files_never_raise(testdata):
    """Real files: a 50-gigapixel PNG bomb, truncated JPEG/PNG, random bytes, broken
    EXIF, APNG oddities, 16-bit, CMYK, LA, palette+tRNS, MPO, animated WebP/GIF."""
    folders = [testdata / "hostile-images", testdata / "pillow-tests", testdata / "danbooru-testfiles"]
    files = [
        p for f in folders for p in sorted(f.rglob("*")) if p.is_file() and p.suffix.lower() not in (".md", ".bz2", "")
    ]
    files += [testdata / "hostile-images" / "rabbit" / "nonsense.bin"]
    results = {p.relative_to(testdata).as_posix(): decode_file(i, str(p), 64, draft=True) for i, p in enumerate(files)}
    assert len(results) > 50
    for name, d in results.items():
        if d.error is None:
            assert d.pixels.shape == (64, 64, 3) and d.pixels.dtype == np.uint8, name
        else:
            assert d.error and d.sha256, name  # a reason, and the hash that lets the cache remember it
    assert "too large" in results["hostile-images/big-png/spark.png"].error
    assert results["hostile-images/rabbit/pillars-1024x1024-truncated.jpg"].error is not None
    assert results["hostile-images/rabbit/pillars-1024x1024-truncated.png"].error is not None
    assert results["hostile-images/rabbit/nonsense.bin"].error is not None
    assert results["hostile-images/rabbit/pillars-1024x1024.jpg"].error is None
    for ok in (
        "pillow-tests/modes/pil_sample_cmyk.jpg",
        "pillow-tests/modes/uncompressed_la.png",
        "pillow-tests/modes/1_trns.png",
        "pillow-tests/modes/i_trns.png",
        "pillow-tests/modes/transparent.webp",
        "pillow-tests/modes/sugarshack.mpo",
        "pillow-tests/modes/hopper_16bit_qtables.jpg",
    ):
        assert results[ok].error is None, (ok, results[ok].error)
