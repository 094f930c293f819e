"""Bugs found while proving issue 10, each pinned by a test that fails today (strict
xfail: when the bug is fixed the test passes and the xfail marker must go). Data is safe
in each case; what is wrong is what the user is told or shown.

The NF-4 leak of caption text areas is in tests/test_reliability_terminal.py."""

from __future__ import annotations

import re

import pytest
from PIL import Image



@pytest.mark.xfail(strict=True, reason=(
    "BUG sushitui/dataset/metadata.py _raw_value (~line 70-80) + _exif (~line 135): an EXIF "
    "ImageDescription holding a control character (ESC) is replaced by the placeholder "
    "'<N bytes>', and that placeholder becomes the item's natural-language caption text "
    "(shown in the detail screen and exported as a caption)"))
def test_exif_description_with_a_control_character_does_not_become_a_placeholder_caption(db, db_path, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import Caption

    root = tmp_path / "d"
    root.mkdir()
    exif = Image.Exif()
    exif[0x010E] = "a red fox\x1b[2J in snow"
    Image.new("RGB", (8, 8)).save(root / "fox.jpg", exif=exif)
    add_dataset(DatasetSettings(name="exif", root_path=str(root), read_exif=True))
    contents = [c.content for c in Caption.select()]
    assert not [c for c in contents if re.fullmatch(r"<\d+ bytes>", c or "")], contents


@pytest.mark.xfail(strict=True, reason=(
    "BUG sushitui/dataset/captions.py new_caption_rel_path / set_tags_many: two images with one "
    "base name (a.jpg, a.webp; the scanner warns that captions go to a.jpg) -- a bulk edit or an "
    "auto-tag run writes a.txt for a.jpg, then refuses a.webp's write as 'created by another "
    "program since sushitui read it' although sushitui itself created it moments before; the "
    "user should be told that a.webp shares a.jpg's caption file and to rename one"))
def test_bulk_edit_on_images_sharing_a_base_name_names_the_real_reason(db_path, tmp_path):
    from reliability_support import register, run_cli

    root = tmp_path / "d"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.jpg")
    Image.new("RGB", (8, 8)).save(root / "a.webp")
    register(db_path, root, "dup")
    res = run_cli(db_path, "tag", "add", "dup", "cat")
    said = res.stdout + res.stderr
    assert (root / "a.txt").read_text() == "cat"  # safe today already: nothing clobbered
    assert "another program" not in said, said
