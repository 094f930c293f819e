"""sd-scripts metadata files named by an imported kohya config (``metadata_file``, the
fine-tuning ``in_json``) are read as the dataset's captions table when they sit inside
the image folder, and listed with what to do when they do not (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sushitui.export.configs_in import import_config
from sushitui.store import Caption, Dataset, Item


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (5, 6, 7)).save(path)


def _captions(ds) -> dict[str, dict[str, tuple[str, str]]]:
    out: dict[str, dict[str, tuple[str, str]]] = {}
    q = Caption.select(Caption, Item.image_path).join(Item).where(Item.dataset == ds.id)
    for c in q:
        out.setdefault(c.item.image_path, {})[c.subtype] = (c.content, c.source)
    return out


def test_a_metadata_json_inside_the_image_folder_is_the_datasets_captions_table(db, tmp_path):
    imgs = tmp_path / "train" / "img"
    _png(imgs / "a.png")
    _png(imgs / "sub" / "b.png")
    meta = {
        # keys as sd-scripts writes them: relative to where it ran, Windows separators
        "train\\img\\a.png": {"caption": "a cat on a sofa", "tags": "cat, sofa"},
        "train\\img\\sub\\b.png": {"caption": "a red car", "train_resolution": [512, 512]},
    }
    (imgs / "meta_custom.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    toml = tmp_path / "dataset.toml"
    toml.write_text(
        '[[datasets]]\nresolution = 512\n\n  [[datasets.subsets]]\n  image_dir = "train/img"\n'
        '  metadata_file = "train/img/meta_custom.json"\n',
        encoding="utf-8",
    )
    result = import_config(toml, name_prefix="k")
    ds = Dataset.get_by_id(result.registered[0]["id"])
    assert ds.caption_tables == [
        {"file": "meta_custom.json", "image_column": "image_key", "columns": {"caption": "main", "tags": "tags"}}
    ]
    assert _captions(ds) == {
        "a.png": {"main": ("a cat on a sofa", "table"), "tags": ("cat, sofa", "table")},
        "sub/b.png": {"main": ("a red car", "table")},
    }
    assert result.plan.entries[0].settings["caption_tables"] == ds.caption_tables  # the plan shows it
    assert not any("meta_custom.json" in n for n in result.plan.entries[0].unmapped)


def test_a_metadata_jsonl_inside_the_folder_is_read_by_its_columns(db, tmp_path):
    imgs = tmp_path / "img"
    _png(imgs / "x.png")
    (imgs / "meta.jsonl").write_text(
        json.dumps({"image_path": "x.png", "caption": "a dog", "tags": "dog"}) + "\n", encoding="utf-8"
    )
    toml = tmp_path / "dataset.toml"
    toml.write_text(
        '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "img"\nmetadata_file = "img/meta.jsonl"\n', encoding="utf-8"
    )
    ds = Dataset.get_by_id(import_config(toml, name_prefix="k").registered[0]["id"])
    assert ds.caption_tables[0]["image_column"] == "image_path"
    assert _captions(ds) == {"x.png": {"main": ("a dog", "table"), "tags": ("dog", "table")}}


def test_a_metadata_file_outside_the_image_folder_is_listed_with_what_to_do(db, tmp_path):
    imgs = tmp_path / "img"
    _png(imgs / "x.png")
    (imgs / "x.txt").write_text("from the caption file", encoding="utf-8")
    (tmp_path / "meta_lat.json").write_text(json.dumps({"x": {"caption": "from the metadata"}}), encoding="utf-8")
    toml = tmp_path / "dataset.toml"
    toml.write_text(
        '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "img"\nmetadata_file = "meta_lat.json"\n', encoding="utf-8"
    )
    result = import_config(toml, name_prefix="k")
    ds = Dataset.get_by_id(result.registered[0]["id"])
    assert ds.caption_tables == []
    assert _captions(ds) == {"x.png": {"main": ("from the caption file", "txt_file")}}
    (note,) = [n for n in result.plan.entries[0].unmapped if "meta_lat.json" in n]
    assert "inside the dataset folder only" in note and "--captions-table" in note
