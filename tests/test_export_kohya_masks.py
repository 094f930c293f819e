"""kohya masked loss: group items' masks exported as sd-scripts ``conditioning_data_dir``.

sd-scripts (library/train_util.py, ControlNetDataset) pairs each image of a subset with
``glob_images(conditioning_data_dir, <image stem>)``: same stem, one of its image
extensions; an image without one stops training. library/config_util.py reads a
dataset as ControlNet-style only when every subset has ``conditioning_data_dir`` and
then allows no ``class_tokens``.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest
from export_helpers import register
from PIL import Image

from sushitui.export import ExportOptions, export_dataset

SD_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}  # sd-scripts IMAGE_EXTENSIONS (any case)
FOLDER = "10_thing"


def make_group_dataset(tmp_path: Path, masks=("a", "b"), names=("a", "b", "c"), folder=FOLDER, size=(64, 48)):
    """``folder/a.png`` + ``a_mask.png``, ``b.png`` + ``b_mask.png``, ``c.png`` (no mask),
    each with a tag caption."""
    root = tmp_path / "src"
    src = root / folder
    src.mkdir(parents=True)
    for i, n in enumerate(names):
        Image.new("RGB", size, (40 * i, 90, 200)).save(src / f"{n}.png")
        (src / f"{n}.txt").write_text(f"tag_{n}, 1girl\n", encoding="utf-8")
    for i, n in enumerate(masks):
        # masks differ from their image and from each other, so a swapped pair shows
        Image.new("L", size, 255 - 50 * i).save(src / f"{n}_mask.png")
    return register("grp", root), root


def load_toml(out: Path) -> dict:
    with open(out / "dataset.toml", "rb") as f:
        return tomllib.load(f)


def subsets(doc: dict) -> list[dict]:
    return [s for ds in doc["datasets"] for s in ds["subsets"]]


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SD_IMAGE_EXTS)


def assert_sd_scripts_pairs(sub: dict) -> dict[str, tuple[Path, Path]]:
    """What sd-scripts' ControlNetDataset checks: every image of the subset has exactly
    one conditioning image with its stem, and no conditioning image is left over."""
    image_dir, cond_dir = Path(sub["image_dir"]), Path(sub["conditioning_data_dir"])
    assert cond_dir.is_dir(), cond_dir
    images = {p.stem: p for p in image_files(image_dir)}
    conds = {}
    for p in image_files(cond_dir):
        assert p.stem not in conds, f"two masks for {p.stem}"
        conds[p.stem] = p
    assert images and set(images) == set(conds), (sorted(images), sorted(conds))
    for stem, img in images.items():
        with Image.open(img) as a, Image.open(conds[stem]) as b:
            assert a.size == b.size, stem  # sd-scripts asserts this with enable_bucket
    return {stem: (images[stem], conds[stem]) for stem in images}


def assert_sd_scripts_config(doc: dict) -> None:
    """config_util's rule: a dataset's subsets all have conditioning_data_dir (then no
    class_tokens / is_reg / metadata_file) or none has it."""
    for ds in doc["datasets"]:
        has = {"conditioning_data_dir" in s for s in ds["subsets"]}
        assert len(has) == 1, "masked and plain subsets mixed in one [[datasets]]"
        if has == {True}:
            for s in ds["subsets"]:
                assert not {"class_tokens", "is_reg", "metadata_file"} & set(s), s


def test_kohya_toml_masks_pair_with_images_by_stem(db, tmp_path):
    ds, root = make_group_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds, out, ExportOptions(format="kohya-toml"))

    doc = load_toml(out)
    assert_sd_scripts_config(doc)
    masked = [s for s in subsets(doc) if "conditioning_data_dir" in s]
    assert len(masked) == 1
    sub = masked[0]
    assert Path(sub["image_dir"]) == out / FOLDER
    assert sub["num_repeats"] == 10
    pairs = assert_sd_scripts_pairs(sub)
    assert sorted(pairs) == ["a", "b"]
    for stem, (img, mask) in pairs.items():
        assert mask.read_bytes() == (root / FOLDER / f"{stem}_mask.png").read_bytes()
        assert img.read_bytes() == (root / FOLDER / f"{stem}.png").read_bytes()
        assert (img.parent / f"{stem}.txt").read_text(encoding="utf-8").startswith(f"tag_{stem}")
    # the mask folder lies outside every image_dir and has no N_ prefix, so neither
    # a subset nor sd-scripts' train_data_dir loader reads it as training images
    mask_dir = Path(sub["conditioning_data_dir"])
    assert mask_dir == out / "masks" / FOLDER
    assert all(not mask_dir.is_relative_to(Path(s["image_dir"])) for s in subsets(doc))
    assert report.items_exported == 3
    assert report.images_linked + report.images_copied == 5  # 3 images + 2 masks


def test_item_without_mask_is_reported_and_trains_unmasked(db, tmp_path):
    ds, _ = make_group_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds, out, ExportOptions(format="kohya-toml"))

    problems = [p for p in report.problems if p.path == f"{FOLDER}/c.png"]
    assert len(problems) == 1, report.problems
    assert "no mask image" in problems[0].reason and "10_thing_unmasked" in problems[0].reason
    assert len(report.problems) == 1
    # c is not dropped: it is a plain subset of its own [[datasets]], keeping its class tokens
    plain = [s for s in subsets(load_toml(out)) if "conditioning_data_dir" not in s]
    assert [Path(s["image_dir"]) for s in plain] == [out / "10_thing_unmasked"]
    assert plain[0]["class_tokens"] == "thing" and plain[0]["num_repeats"] == 10
    assert [p.name for p in image_files(out / "10_thing_unmasked")] == ["c.png"]
    assert (out / "10_thing_unmasked" / "c.txt").is_file()
    assert not (out / "masks" / FOLDER / "c.png").exists()


@pytest.mark.parametrize("mode", ["link", "copy"])
def test_masks_follow_the_link_choice(db, tmp_path, mode):
    ds, root = make_group_dataset(tmp_path)
    out = tmp_path / mode
    export_dataset(ds, out, ExportOptions(format="kohya-toml", link_mode=mode))
    src_mask, dst_mask = root / FOLDER / "a_mask.png", out / "masks" / FOLDER / "a.png"
    same = os.stat(src_mask).st_ino == os.stat(dst_mask).st_ino
    assert same is (mode == "link")
    assert dst_mask.read_bytes() == src_mask.read_bytes()


def test_dataset_without_masks_exports_as_before(db, tmp_path):
    ds, _ = make_group_dataset(tmp_path, masks=())
    out = tmp_path / "out"
    report = export_dataset(ds, out, ExportOptions(format="kohya-toml"))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "10_thing/a.png",
        "10_thing/a.txt",
        "10_thing/b.png",
        "10_thing/b.txt",
        "10_thing/c.png",
        "10_thing/c.txt",
        "dataset.toml",
    ]
    text = (out / "dataset.toml").read_text(encoding="utf-8")
    assert "conditioning_data_dir" not in text and text.count("[[datasets]]") == 1
    assert subsets(tomllib.loads(text)) == [
        {"image_dir": str(out / FOLDER), "num_repeats": 10, "class_tokens": "thing"}
    ]
    assert report.problems == []


def test_txt_keeps_its_layout_and_gets_the_masks_beside_it(db, tmp_path):
    ds, root = make_group_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds, out, ExportOptions(format="txt"))
    # train_data_dir = OUTDIR: only N_ folders are concept folders; c stays in place
    assert [p.name for p in image_files(out / FOLDER)] == ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in out.iterdir()) == [FOLDER, "masks"]
    assert [p.name for p in image_files(out / "masks" / FOLDER)] == ["a.png", "b.png"]
    assert (out / "masks" / FOLDER / "b.png").read_bytes() == (root / FOLDER / "b_mask.png").read_bytes()
    assert [p.path for p in report.problems] == [f"{FOLDER}/c.png"]


def test_kohya_json_reports_that_masks_are_left_out(db, tmp_path):
    ds, _ = make_group_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds, out, ExportOptions(format="kohya-json"))
    assert not (out / "masks").exists()
    assert len(report.problems) == 1 and "kohya-toml" in report.problems[0].reason
    assert report.problems[0].path == "2 mask images"


def test_mask_of_another_size_is_not_paired(db, tmp_path):
    ds, root = make_group_dataset(tmp_path)
    Image.new("L", (32, 32), 255).save(root / FOLDER / "b_mask.png")
    out = tmp_path / "out"
    report = export_dataset(ds, out, ExportOptions(format="kohya-toml"))
    reasons = {p.path: p.reason for p in report.problems}
    assert "32x32" in reasons[f"{FOLDER}/b_mask.png"]
    sub = next(s for s in subsets(load_toml(out)) if "conditioning_data_dir" in s)
    assert sorted(assert_sd_scripts_pairs(sub)) == ["a"]
    assert [p.name for p in image_files(out / "10_thing_unmasked")] == ["b.png", "c.png"]


def test_mask_root_never_collides_with_an_image_folder(db, tmp_path):
    ds, _ = make_group_dataset(tmp_path, folder="masks")
    out = tmp_path / "out"
    export_dataset(ds, out, ExportOptions(format="kohya-toml"))
    sub = next(s for s in subsets(load_toml(out)) if "conditioning_data_dir" in s)
    assert Path(sub["image_dir"]) == out / "masks"
    assert Path(sub["conditioning_data_dir"]) == out / "masks_2" / "masks"
    assert sorted(assert_sd_scripts_pairs(sub)) == ["a", "b"]


def test_kohya_gui_masked_loss_example_pairs_all_eight(db, tmp_path, testdata):
    """The kohya_ss GUI's own masked-loss test data, with its masked_loss/X.jpg laid out
    as X_mask.jpg beside X.jpg."""
    real = testdata / "kohya-ss-gui-test"
    concept = "10_darius kawasaki person"
    src = tmp_path / "src" / concept
    src.mkdir(parents=True)
    for p in (real / "img" / concept).iterdir():
        if p.suffix in (".jpg", ".txt"):
            shutil.copyfile(p, src / p.name)
    masks = sorted((real / "masked_loss").glob("*.jpg"))
    assert len(masks) == 8
    for m in masks:
        shutil.copyfile(m, src / f"{m.stem}_mask.jpg")
    ds = register("darius", tmp_path / "src")

    out = tmp_path / "out"
    report = export_dataset(ds, out, ExportOptions(format="kohya-toml", link_mode="copy"))
    assert report.problems == [] and report.items_exported == 8
    doc = load_toml(out)
    assert_sd_scripts_config(doc)
    (sub,) = subsets(doc)
    assert sub["num_repeats"] == 10
    pairs = assert_sd_scripts_pairs(sub)
    assert sorted(pairs) == sorted(m.stem for m in masks)
    for stem, (img, mask) in pairs.items():
        assert mask.name == f"{stem}.jpg"  # the same file name as in the GUI's masked_loss/
        assert mask.read_bytes() == (real / "masked_loss" / f"{stem}.jpg").read_bytes()
        assert img.read_bytes() == (real / "img" / concept / f"{stem}.jpg").read_bytes()
