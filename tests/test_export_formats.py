"""Every format round-trips and is what the trainers read (EX-1)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from export_helpers import captions_by_base, make_synthetic, register

from sushitui.export import ExportOptions, export_dataset, preview_captions
from sushitui.export.captions import CaptionBuilder, CaptionRow
from sushitui.tags.normalize import split_tags

# The keys sd-scripts' library/config_util.py accepts for a DreamBooth-style dataset
# (ConfigSanitizer: SUBSET_ASCENDABLE + DB_SUBSET_* + DO_* + DATASET_ASCENDABLE).
SD_SUBSET_KEYS = {
    "color_aug",
    "face_crop_aug_range",
    "flip_aug",
    "num_repeats",
    "random_crop",
    "shuffle_caption",
    "keep_tokens",
    "keep_tokens_separator",
    "secondary_separator",
    "enable_wildcard",
    "token_warmup_min",
    "token_warmup_step",
    "caption_prefix",
    "caption_suffix",
    "caption_dropout_every_n_epochs",
    "caption_dropout_rate",
    "caption_tag_dropout_rate",
    "caption_extension",
    "class_tokens",
    "cache_info",
    "image_dir",
    "is_reg",
    "metadata_file",
    "conditioning_data_dir",
}
SD_DATASET_KEYS = {
    "batch_size",
    "bucket_no_upscale",
    "bucket_reso_steps",
    "enable_bucket",
    "max_bucket_reso",
    "min_bucket_reso",
    "resolution",
    "network_multiplier",
} | (SD_SUBSET_KEYS - {"image_dir", "is_reg", "metadata_file", "conditioning_data_dir"})
SD_GENERAL_KEYS = SD_DATASET_KEYS


def expected_captions(dataset_id: int, options: ExportOptions) -> dict[str, str]:
    """base name -> caption text after the chosen transforms, from the source index."""
    from sushitui.store import Caption, Item

    builder = CaptionBuilder.from_database(options)
    per_item: dict[tuple[int, str], list[CaptionRow]] = {}
    q = (
        Caption.select(Item.id, Item.base_name, Caption.type, Caption.subtype, Caption.content)
        .join(Item)
        .where(Item.dataset == dataset_id)
        .tuples()
    )
    for item_id, base, ctype, sub, content in q:
        per_item.setdefault((item_id, base), []).append(CaptionRow(ctype, sub, content))
    return {base: builder.build(rs).text for (item_id, base), rs in per_item.items()}


def sd_scripts_validate(doc: dict) -> None:
    """What sd-scripts' config loader checks: known keys, required image_dir, and either
    DreamBooth subsets (no metadata_file) or fine-tuning subsets (metadata_file) per dataset."""
    assert set(doc) <= {"general", "datasets"}
    assert set(doc.get("general", {})) <= SD_GENERAL_KEYS, set(doc["general"]) - SD_GENERAL_KEYS
    assert doc["datasets"], "no [[datasets]]"
    for ds in doc["datasets"]:
        assert set(ds) - {"subsets"} <= SD_DATASET_KEYS, set(ds) - SD_DATASET_KEYS
        assert ds["subsets"], "no [[datasets.subsets]]"
        kinds = {"metadata_file" in s for s in ds["subsets"]}
        assert len(kinds) == 1, "DreamBooth and fine-tuning subsets mixed in one dataset"
        for s in ds["subsets"]:
            assert set(s) <= SD_SUBSET_KEYS, set(s) - SD_SUBSET_KEYS
            assert isinstance(s.get("num_repeats", 1), int)
            if "metadata_file" not in s:
                assert isinstance(s["image_dir"], str)
        if isinstance(ds.get("resolution"), list):
            assert len(ds["resolution"]) == 2


def images_in(folder: Path) -> list[Path]:
    # sd-scripts globs images directly in image_dir, never in sub-folders
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))


def test_txt_round_trips_through_a_rescan(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 80, prose_fraction=0.1)
    opts = ExportOptions(format="txt", trigger="ohwx", underscores_to_spaces=True, escape_parens=True)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, opts)
    assert report.items_exported == 80 and not report.problems
    # kohya DreamBooth layout: every top-level folder is <repeats>_<name>
    assert all(p.name.split("_", 1)[0].isdigit() for p in out.iterdir())
    for txt in out.rglob("*.txt"):
        text = txt.read_text(encoding="utf-8")
        assert "\n" not in text and text.startswith("ohwx")
    again = register("exported", out)
    got = captions_by_base(again.id)
    want = expected_captions(ds.id, opts)
    assert set(got) == set(want)
    for base, text in want.items():
        ctype, content = got[base]
        if ctype == "tags":
            assert split_tags(content) == split_tags(text), base
        else:
            assert content.strip() == text, base


def test_kohya_toml_has_one_subset_per_folder_that_sd_scripts_accepts(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 60)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format="kohya-toml", trigger="ohwx", repeats=3))
    assert report.config_files == ["dataset.toml"]
    doc = tomllib.loads((out / "dataset.toml").read_text(encoding="utf-8"))
    sd_scripts_validate(doc)
    assert doc["general"]["caption_extension"] == ".txt"
    assert doc["general"]["keep_tokens"] == 1
    subsets = doc["datasets"][0]["subsets"]
    total = 0
    for s in subsets:
        folder = Path(s["image_dir"])
        assert folder.is_dir() and str(folder).startswith(str(out))
        assert s["num_repeats"] == 3
        imgs = images_in(folder)
        assert imgs, f"empty subset {folder}"
        for img in imgs:
            assert img.with_suffix(".txt").read_text(encoding="utf-8").split(", ")[0] == "ohwx"
        total += len(imgs)
    # nested source folders: every exported image is in exactly one subset's image_dir
    assert total == report.items_exported == 60
    assert len(subsets) == len({s["image_dir"] for s in subsets}) > 1


def test_kohya_json_is_finetune_metadata_keyed_by_image(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 40)
    out = tmp_path / "out"
    opts = ExportOptions(format="kohya-json", trigger="ohwx")
    export_dataset(ds.id, out, opts)
    meta = json.loads((out / "metadata.json").read_text())
    doc = tomllib.loads((out / "dataset.toml").read_text())
    sd_scripts_validate(doc)
    sub = doc["datasets"][0]["subsets"][0]
    assert Path(sub["metadata_file"]) == out / "metadata.json" and Path(sub["image_dir"]) == out
    want = expected_captions(ds.id, opts)
    assert len(meta) == 40
    for key, entry in meta.items():
        assert set(entry) <= {"caption", "tags"} and entry
        # sd-scripts looks the key up as image_dir/key + an image extension
        matches = [p for p in (out / key).parent.glob(Path(key).name + ".*") if p.suffix != ".txt"]
        assert len(matches) == 1, key
        text = entry.get("caption") or entry.get("tags")
        assert text == want[Path(key).name]
        assert text.startswith("ohwx")
    assert not list(out.rglob("*.txt")), "fine-tuning export keeps captions in metadata.json only"


def test_ai_toolkit_yaml_with_control_images_by_stem(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 80, group_fraction=0.3)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format="ai-toolkit", trigger="sks"))
    doc = yaml.safe_load((out / "dataset.yaml").read_text(encoding="utf-8"))
    assert doc["trigger_word"] == "sks"
    controls = 0
    for entry in doc["datasets"]:
        folder = Path(entry["folder_path"])
        assert entry["caption_ext"] == "txt" and isinstance(entry["resolution"], list)
        for img in images_in(folder):
            assert img.with_suffix(".txt").read_text(encoding="utf-8").startswith("sks")
        if "control_path" in entry:
            cdir = Path(entry["control_path"])
            for ctrl in images_in(cdir):
                # ai-toolkit pairs a control image with the image of the same stem
                assert [p for p in images_in(folder) if p.stem == ctrl.stem], ctrl
                controls += 1
    assert controls > 0
    assert report.images_linked == report.items_exported + controls


def test_preview_is_what_the_export_writes(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 20)
    opts = ExportOptions(format="txt", trigger="ohwx", underscores_to_spaces=True)
    preview = preview_captions(ds.id, opts, n=3)
    assert len(preview) == 3 and all(p.text.startswith("ohwx") for p in preview)
    out = tmp_path / "out"
    export_dataset(ds.id, out, opts)
    written = {p.read_text(encoding="utf-8") for p in out.rglob("*.txt")}
    assert all(p.text in written for p in preview)


def test_query_and_item_ids_select_the_subset(db, tmp_path):
    from sushitui.store import Item

    ds, _ = make_synthetic(tmp_path, 50)
    ids = [i.id for i in Item.select(Item.id).where(Item.dataset == ds.id).limit(7)]
    report = export_dataset(ds.id, tmp_path / "o1", ExportOptions(item_ids=ids))
    assert report.items_exported == 7
    pytest.importorskip("sushitui.tags.query")
    from sushitui.dataset.items import count_items

    n = count_items(ds.id, "1girl")
    report = export_dataset(ds.id, tmp_path / "o2", ExportOptions(query="1girl"))
    assert report.items_exported == n > 0
    for txt in (tmp_path / "o2").rglob("*.txt"):
        assert "1girl" in split_tags(txt.read_text(encoding="utf-8"))


def test_kohya_gui_test_data_matches_the_real_configs(db, testdata, tmp_path):
    src = testdata / "kohya-ss-gui-test"
    real = tomllib.loads((src / "config" / "dataset.toml").read_text())
    ds = register("kohya", src / "img")
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="kohya-toml", trigger="darius kawasaki"))
    doc = tomllib.loads((out / "dataset.toml").read_text())
    sd_scripts_validate(doc)
    sd_scripts_validate(real)  # the checker agrees with a config the kohya GUI ships
    real_sub, sub = real["datasets"][0]["subsets"][0], doc["datasets"][0]["subsets"][0]
    # the same folder name, repeats and class tokens as the hand-written config
    assert (
        Path(sub["image_dir"]).name
        == Path(real_sub["image_dir"].replace("\\", "/")).name
        == "10_darius kawasaki person"
    )
    assert sub["num_repeats"] == real_sub["num_repeats"] == 10
    assert sub["class_tokens"] == real_sub["class_tokens"]
    caption_ext = sub.get("caption_extension", doc["general"].get("caption_extension"))
    assert caption_ext == real_sub["caption_extension"] == ".txt"
    # every dataset-level key we write is one the real configs use
    real_keys = set()
    for name in ("dataset.toml", "dataset-finetune.toml", "dataset-masked_loss.toml", "dataset-multires.toml"):
        for d in tomllib.loads((src / "config" / name).read_text())["datasets"]:
            real_keys |= set(d) - {"subsets"}
    assert set(doc["datasets"][0]) - {"subsets"} <= real_keys
    images = images_in(Path(sub["image_dir"]))
    assert len(images) == 8
    first = images[0].with_suffix(".txt").read_text(encoding="utf-8")
    assert first.startswith("darius kawasaki, a painting of")


def test_kohya_json_matches_the_real_metadata_shape(db, testdata, tmp_path):
    src = testdata / "kohya-ss-gui-test"
    real = json.loads((src / "config" / "meta-1_lat.json").read_text())
    ds = register("kohya", src / "img")
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="kohya-json"))
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta) == len(real) == 8
    real_by_name = {k.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]: v for k, v in real.items()}
    for key, entry in meta.items():
        name = key.rsplit("/", 1)[-1]
        assert entry["caption"] == real_by_name[name]["caption"]


def _repeat_dataset(tmp_path):
    from sushitui.dataset.synthetic import png_bytes

    src = tmp_path / "src"
    for folder in ("10_concept", "plain", ""):
        d = src / folder if folder else src
        d.mkdir(parents=True, exist_ok=True)
        (d / f"img{folder or 'root'}.png").write_bytes(png_bytes(16, 16, 2))
        (d / f"img{folder or 'root'}.txt").write_text("a, b", encoding="utf-8")
    return register("rep", src)


def test_txt_keeps_repeat_folders_and_prefixes_the_others(db, tmp_path):
    ds = _repeat_dataset(tmp_path)
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="txt"))
    # kohya's train_data_dir reads only <repeats>_<name> folders
    assert sorted(p.name for p in out.iterdir()) == ["10_concept", "1_plain", "1_rep"]
    out2 = tmp_path / "out2"
    export_dataset(ds.id, out2, ExportOptions(format="txt", repeats=3))
    assert sorted(p.name for p in out2.iterdir()) == ["3_concept", "3_plain", "3_rep"]


def test_toml_repeats_come_from_folder_names_unless_set(db, tmp_path):
    ds = _repeat_dataset(tmp_path)
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="kohya-toml"))
    subs = tomllib.loads((out / "dataset.toml").read_text())["datasets"][0]["subsets"]
    by_dir = {Path(s["image_dir"]).name: s for s in subs}
    assert by_dir["10_concept"]["num_repeats"] == 10 and by_dir["10_concept"]["class_tokens"] == "concept"
    assert by_dir["plain"]["num_repeats"] == 1 and "class_tokens" not in by_dir["plain"]


def test_no_folder_is_listed_twice_or_inside_another(db, tmp_path):
    """ai-toolkit walks folder_path recursively and sd-scripts reads each subset: a
    folder inside another (or listed twice) would train those images twice."""
    from sushitui.dataset.synthetic import png_bytes

    src = tmp_path / "src"
    for folder in ("", "a", "a/b", "a/b/c"):
        d = src / folder
        d.mkdir(parents=True, exist_ok=True)
        for k in range(2):
            (d / f"x{k}.png").write_bytes(png_bytes(16, 16, k))
            (d / f"x{k}.txt").write_text("a, b", encoding="utf-8")
    ds = register("nest", src)
    out = tmp_path / "ai"
    export_dataset(ds.id, out, ExportOptions(format="ai-toolkit"))
    paths = [e["folder_path"] for e in yaml.safe_load((out / "dataset.yaml").read_text())["datasets"]]
    assert len(paths) == len(set(paths)) == 4
    for p in paths:
        assert not any(q != p and q.startswith(p + "/") for q in paths)
        assert len(images_in(Path(p))) == 2
    out = tmp_path / "toml"
    export_dataset(ds.id, out, ExportOptions(format="kohya-toml"))
    dirs = [s["image_dir"] for s in tomllib.loads((out / "dataset.toml").read_text())["datasets"][0]["subsets"]]
    assert len(dirs) == len(set(dirs)) == 4
    assert all(len(images_in(Path(d))) == 2 for d in dirs)
