"""Trainer configs out (issue 17): every new export format, loaded with the trainer's
own reading rule (tests/trainer_support.py), resolves each image to its caption,
control image and mask."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from PIL import Image
from trainer_support import LOADERS, load_diffusion_pipe, load_imagefolder, make_dataset

from sushitui.export import ExportOptions, export_dataset

NEW_FORMATS = ["diffusers", "onetrainer", "diffusion-pipe", "musubi", "kohya-jsonl"]
CAPTIONS = {
    "a": "cat, sitting",
    "b": "cat, running",
    "c": "cat, sleeping",
    "p1": "edited square p1",
    "p2": "edited square p2",
    "solo": "a lonely square",
}
# formats whose trainer reads control images / masks, and where
CONTROL = {"diffusers", "onetrainer", "diffusion-pipe", "musubi"}
MASK = {"diffusers", "onetrainer", "diffusion-pipe"}


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_every_image_resolves_to_its_caption_control_and_mask(db, tmp_path, fmt):
    ds, root = make_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format=fmt))
    assert report.items_exported == 7
    seen = LOADERS[fmt](out)
    # every item once (musubi-tuner leaves out an image without a caption file)
    assert set(seen) == set(CAPTIONS) | ({"nocap"} if fmt != "musubi" else set())
    for stem, entry in seen.items():
        assert entry["caption"] in (CAPTIONS.get(stem), "" if stem == "nocap" else None) or (
            stem == "nocap" and not entry["caption"]
        )
        if stem != "nocap":
            assert entry["caption"] == CAPTIONS[stem], (stem, entry)
    for n in ("p1", "p2"):
        if fmt in CONTROL:
            control = seen[n]["control"]
            assert control is not None, (fmt, n)
            # the source image of the group, unchanged (or as PNG for OneTrainer)
            with Image.open(control) as got, Image.open(root / f"edits/{n}_source.png") as want:
                assert got.tobytes() == want.convert(got.mode).tobytes()
        else:
            assert seen[n]["control"] is None
        if fmt in MASK:
            mask = seen[n]["mask"]
            assert mask is not None, (fmt, n)
            with Image.open(mask) as m:
                assert m.size == (48, 32) and m.convert("L").getextrema() == (255, 255)
    for stem in ("a", "b", "c", "solo"):
        assert seen[stem]["control"] is None and seen[stem]["mask"] is None


def test_onetrainer_masks_are_png_beside_the_image(db, tmp_path):
    ds, _ = make_dataset(tmp_path)
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="onetrainer"))
    for n in ("p1", "p2"):  # p2's mask is a JPEG: OneTrainer opens <stem>-masklabel.png
        with Image.open(out / "edits" / f"{n}-masklabel.png") as im:
            assert im.format == "PNG"
    concepts = json.loads((out / "concepts.json").read_text(encoding="utf-8"))
    assert {c["name"]: c["balancing"] for c in concepts} == {"10_cat": 10.0, "10_cat__sub": 10.0, "edits": 1.0}
    assert all(c["balancing_strategy"] == "REPEATS" for c in concepts)


def test_diffusers_has_a_column_per_caption_subtype_and_the_same_columns_in_every_row(db, tmp_path):
    ds, _ = make_dataset(tmp_path)
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="diffusers"))
    seen = load_imagefolder(out)
    assert seen["a"]["row"]["alt"] == "A cat sits on a mat."
    assert seen["b"]["row"]["alt"] is None
    assert seen["p1"]["row"]["instruction"] == "make p1 green"
    assert seen["a"]["row"]["text"] == "cat, sitting"


def test_diffusion_pipe_writes_captions_json_when_an_item_has_several_captions(db, tmp_path):
    ds, _ = make_dataset(tmp_path)
    out = tmp_path / "one"
    export_dataset(ds.id, out, ExportOptions(format="diffusion-pipe"))
    assert not list(out.rglob("captions.json"))  # one caption each: .txt files only
    out = tmp_path / "several"
    report = export_dataset(ds.id, out, ExportOptions(format="diffusion-pipe", caption=("main", "alt", "instruction")))
    seen = load_diffusion_pipe(out)
    assert seen["a"]["captions"] == ["cat, sitting", "A cat sits on a mat."]
    assert seen["b"]["captions"] == ["cat, running"]  # in the same captions.json: .txt files are then ignored
    assert seen["p1"]["captions"] == ["edited square p1", "make p1 green"]
    assert "images/10_cat/captions.json" in report.config_files
    # the first caption stays in the .txt, for tools that read those
    assert (out / "images/10_cat/a.txt").read_text(encoding="utf-8") == "cat, sitting"


@pytest.mark.parametrize("fmt", ["diffusion-pipe", "musubi"])
def test_items_without_control_in_a_folder_with_controls_go_to_a_sibling_folder(db, tmp_path, fmt):
    ds, _ = make_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format=fmt))
    assert (out / "images/edits_nocontrol/solo.png").is_file()
    assert any("edits_nocontrol" in p.reason and p.path == "edits/solo.png" for p in report.problems)
    doc = tomllib.loads((out / "dataset.toml").read_text(encoding="utf-8"))
    entries = doc["directory"] if fmt == "diffusion-pipe" else doc["datasets"]
    key = "path" if fmt == "diffusion-pipe" else "image_directory"
    control = "control_path" if fmt == "diffusion-pipe" else "control_directory"
    by_folder = {Path(e[key]).name: e for e in entries}
    assert control in by_folder["edits"] and control not in by_folder["edits_nocontrol"]


def test_musubi_and_kohya_jsonl_report_the_masks_they_cannot_carry(db, tmp_path):
    ds, _ = make_dataset(tmp_path)
    for fmt in ("musubi", "kohya-jsonl"):
        report = export_dataset(ds.id, tmp_path / fmt, ExportOptions(format=fmt))
        assert any(p.path == "2 mask images" and p.reason.startswith("not exported") for p in report.problems), fmt


def test_kohya_jsonl_config_is_one_fine_tuning_subset(db, tmp_path):
    ds, _ = make_dataset(tmp_path)
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="kohya-jsonl", trigger="sks"))
    doc = tomllib.loads((out / "dataset.toml").read_text(encoding="utf-8"))
    (subset,) = doc["datasets"][0]["subsets"]
    assert subset["image_dir"] == str(out) and subset["metadata_file"] == str(out / "metadata.jsonl")
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    by_name = {Path(r["image_path"]).stem: r for r in rows}
    assert by_name["a"]["tags"] == "sks, cat, sitting" and by_name["a"]["image_size"] == [48, 32]
    assert doc["general"]["keep_tokens"] == 1


@pytest.mark.parametrize("fmt", NEW_FORMATS)
def test_the_cli_exports_each_format(db_path, db, tmp_path, fmt):
    from sushitui.cli import main

    ds, _ = make_dataset(tmp_path)
    out = tmp_path / "out"
    assert main(["export", ds.name, str(out), "--format", fmt, "--db", str(db_path)]) == 0
    assert LOADERS[fmt](out)
