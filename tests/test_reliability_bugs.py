"""Bugs found while proving issue 10 (data was safe in each; what the user was told or
shown was wrong). Both were fixed in the scanner; these tests keep them fixed.

The NF-4 leak of caption text areas is pinned in tests/test_reliability_terminal.py."""

from __future__ import annotations

import re

import pytest
from PIL import Image


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


@pytest.mark.slow
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
