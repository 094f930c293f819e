"""What check finds in an image file and in a caption's text."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from sushitui.check.findings import bracket_problems, caption_findings, control_chars, image_findings
from sushitui.check.hashing import inspect_file


def _facts(path):
    f = inspect_file(path, "sha")
    return dict(mode=f.mode, bits=f.bits, orientation=f.orientation, frames=f.frames, error=f.error)


def _codes(path, trainer="kohya", exif_transpose=False, size=(1024, 1024)):
    facts = _facts(path)
    return {
        f.code
        for f in image_findings(
            width=size[0], height=size[1], resolution=1024, trainer=trainer, exif_transpose=exif_transpose, **facts
        )
    }


def _photo(size=(64, 48), mode="RGB"):
    img = Image.new("RGB", size)
    for x in range(size[0]):
        for y in range(size[1]):
            img.putpixel((x, y), ((x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256))
    return img.convert(mode) if mode != "RGB" else img


def test_modes_a_trainer_converts_badly(tmp_path):
    _photo(mode="RGBA").save(tmp_path / "a.png")
    _photo().convert("CMYK").save(tmp_path / "c.jpg")
    _photo().convert("P").save(tmp_path / "p.png")
    Image.new("I;16", (32, 32), 4000).save(tmp_path / "g16.png")
    _photo().save(tmp_path / "ok.png")
    assert _codes(tmp_path / "a.png") == {"alpha"}
    assert _codes(tmp_path / "c.jpg") == {"cmyk"}
    assert _codes(tmp_path / "p.png") == {"palette"}
    assert _codes(tmp_path / "g16.png") == {"high_bit_depth"}
    assert _codes(tmp_path / "ok.png") == set()


def test_exif_orientation_matters_only_to_trainers_that_ignore_it(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    _photo().save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert _facts(tmp_path / "r.jpg")["orientation"] == 6
    assert "exif_rotation" in _codes(tmp_path / "r.jpg", "kohya", exif_transpose=False)
    assert "exif_rotation" not in _codes(tmp_path / "r.jpg", "ai-toolkit", exif_transpose=True)


def test_animated_and_unreadable_files(tmp_path):
    frames = [_photo(), _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    buf = io.BytesIO()
    _photo((256, 256)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:400])
    assert "animated" in _codes(tmp_path / "anim.gif")
    assert _codes(tmp_path / "cut.png") == {"unreadable"}
    assert inspect_file(tmp_path / "cut.png", "x").phash is None


def test_size_and_aspect_findings():
    def codes(w, h):
        return {
            f.code
            for f in image_findings(
                width=w,
                height=h,
                resolution=1024,
                mode="RGB",
                bits=8,
                orientation=None,
                frames=1,
                error=None,
                trainer="kohya",
                exif_transpose=False,
            )
        }

    assert codes(1024, 1024) == set()
    assert codes(512, 512) == {"small_image"}
    assert codes(4000, 1000) == {"extreme_aspect"}


@pytest.mark.parametrize(
    "text, is_tags, trigger, expected",
    [
        ("", True, None, {"empty_caption"}),
        ("  \n", False, None, {"empty_caption"}),
        ("ohwx", True, "ohwx", {"trigger_only"}),
        ("ohwx, 1girl", True, "ohwx", set()),
        ("(masterpiece, best quality", True, None, {"unbalanced"}),
        ("(masterpiece:high), smile", True, None, {"unbalanced"}),
        ("(masterpiece:1.2), kaga \\(kancolle\\), (o)_(o)", True, None, set()),
        ("1girl, smile\x07", True, None, {"control_chars"}),
        ("1girl, zero\u200bwidth", True, None, {"control_chars"}),
        ("1girl, a woman is standing in a field of flowers, smile", True, None, {"mixed_prose"}),
        ("1girl, smile, Smile, long_hair, long hair", True, None, {"duplicate_tags"}),
        ("A woman stands in a field. She smiles.", False, None, set()),
    ],
)
def test_caption_findings(text, is_tags, trigger, expected):
    assert {f.code for f in caption_findings(text, is_tags=is_tags, trigger=trigger)} == expected


def test_bracket_and_control_details():
    assert bracket_problems("a ) b") == ["')' at 3 closes nothing"]
    assert bracket_problems("[a (b] c)")  # crossed brackets
    assert control_chars("a\tb\nc") == []
    assert control_chars("a\x00b\u202e") == ["U+0000", "U+202E"]
