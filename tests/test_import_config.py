"""Trainer configs in (issue 17): ``dataset import-config`` registers each image folder a
trainer config names, with what the config says about it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from trainer_support import make_dataset

from sushitui.export.configs_in import import_config
from sushitui.store import Caption, Dataset, Item

DATA = Path(__file__).parent / "data" / "trainer_configs"


def main_captions(ds) -> dict[str, str]:
    q = (
        Caption.select(Item.base_name, Caption.content)
        .join(Item)
        .where((Item.dataset == ds.id) & (Caption.subtype.in_(["", "main"])))
        .tuples()
    )
    return dict(q)


def items(ds) -> set[str]:
    return {r.base_name for r in Item.select(Item.base_name).where(Item.dataset == ds.id)}


def kohya_map(testdata):
    # the kohya_ss GUI runs sd-scripts from its repository root, where test/ is
    return [("test", str(testdata / "kohya-ss-gui-test"))]


def test_kohya_gui_dataset_toml_registers_the_folder_with_its_settings(db, testdata):
    result = import_config(testdata / "kohya-ss-gui-test/config/dataset.toml", kohya_map(testdata))
    (reg,) = result.registered
    ds = Dataset.get_by_id(reg["id"])
    assert ds.root_path == str(testdata / "kohya-ss-gui-test/img/10_darius kawasaki person")
    assert ds.recursive is False  # sd-scripts reads image_dir's own files only
    t = ds.trainer
    assert (t["format"], t["repeats"], t["class_tokens"], t["keep_tokens"], t["caption_extension"], t["is_reg"]) == (
        "kohya",
        10,
        "darius kawasaki person",
        1,
        ".txt",
        False,
    )
    assert t["line"] == 12 and t["entry"] == "datasets[0].subsets[0]"
    assert t["other"]["resolution"] == 512
    caps = main_captions(ds)
    assert len(caps) == 8
    assert caps["Dariusz_Zawadzki"] == "a painting of a steam punk skull with a gas mask , by darius kawasaki"


def test_kohya_windows_relative_paths_and_the_masked_loss_folder(db, testdata):
    # '.\test\img\10_darius kawasaki person' and conditioning_data_dir '.\test\masked_loss'
    result = import_config(testdata / "kohya-ss-gui-test/config/dataset-masked_loss.toml", kohya_map(testdata))
    ds = Dataset.get_by_id(result.registered[0]["id"])
    assert ds.trainer["conditioning_dirs"] == [str(testdata / "kohya-ss-gui-test/masked_loss")]
    (entry,) = result.plan.entries
    assert any("masked_loss" in n and "kept in the dataset's trainer settings" in n for n in entry.unmapped)


def test_kohya_finetune_metadata_file_is_kept_and_listed(db, testdata):
    result = import_config(testdata / "kohya-ss-gui-test/config/dataset-finetune.toml", kohya_map(testdata))
    ds = Dataset.get_by_id(result.registered[0]["id"])
    assert ds.trainer["metadata_files"] == [str(testdata / "kohya-ss-gui-test/config/meta-1_lat.json")]
    assert "caption_extension" not in ds.trainer  # captions come from the metadata
    assert any("metadata_file" in n for n in result.plan.entries[0].unmapped)


def test_the_same_folder_named_three_times_is_registered_once(db, testdata):
    result = import_config(testdata / "kohya-ss-gui-test/config/dataset-multires.toml", kohya_map(testdata))
    assert len(result.registered) == 1
    (entry,) = result.plan.entries
    assert entry.also == ["datasets[1].subsets[0]", "datasets[2].subsets[0]"]
    # [general] caption_extension is inherited by the subset
    assert Dataset.get_by_id(result.registered[0]["id"]).trainer["caption_extension"] == ".txt"


def test_ai_toolkit_example_config_with_control_folders(db, tmp_path):
    for d in ("images/folder", "control/images/folder1", "control/images/folder2", "control/images/folder3"):
        (tmp_path / d).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "images/folder/x.png")
    (tmp_path / "images/folder/x.txt").write_text("turn it red", encoding="utf-8")
    result = import_config(DATA / "ai-toolkit_train_lora_qwen_image_edit_2509_32gb.yaml", [("/path/to", str(tmp_path))])
    ds = Dataset.get_by_id(result.registered[0]["id"])
    t = ds.trainer
    assert ds.root_path == str(tmp_path / "images/folder") and ds.recursive is True
    assert t["control_dirs"] == [str(tmp_path / f"control/images/folder{i}") for i in (1, 2, 3)]
    assert (t["caption_extension"], t["repeats"], t["line"]) == (".txt", 1, 27)
    assert t["other"]["caption_dropout_rate"] == 0.05


def test_onetrainer_concepts(db, tmp_path):
    for d in ("a", "reg"):
        (tmp_path / d).mkdir()
    concepts = [
        {
            "name": "a",
            "path": str(tmp_path / "a"),
            "include_subdirectories": True,
            "balancing": 3.0,
            "balancing_strategy": "REPEATS",
            "text": {"prompt_source": "sample", "keep_tags_count": 2},
        },
        {
            "name": "reg",
            "path": "reg",
            "type": "PRIOR_PREDICTION",
            "balancing": 0.5,
            "balancing_strategy": "SAMPLES",
            "text": {"prompt_source": "concept", "prompt_path": "prompts.txt"},
        },
    ]
    (tmp_path / "prompts.txt").write_text("a photo\n", encoding="utf-8")
    f = tmp_path / "concepts.json"
    f.write_text(json.dumps(concepts, indent=2), encoding="utf-8")
    result = import_config(f, name_prefix="ot")
    a, reg = (Dataset.get_by_id(r["id"]) for r in result.registered)
    assert (a.name, a.recursive, a.trainer["repeats"], a.trainer["keep_tokens"], a.trainer["is_reg"]) == (
        "ot-a",
        True,
        3,
        2,
        False,
    )
    assert reg.trainer["is_reg"] is True and "repeats" not in reg.trainer
    assert reg.trainer["other_balancing"] == {"balancing": 0.5, "balancing_strategy": "SAMPLES"}
    assert reg.trainer["metadata_files"] == [str(tmp_path / "prompts.txt")]
    assert reg.root_path == str(tmp_path / "reg")  # relative to the config's folder


def test_diffusion_pipe_and_musubi_tomls(db, tmp_path):
    for d in ("imgs", "imgs2", "ctrl", "masks"):
        (tmp_path / d).mkdir()
    (tmp_path / "dp.toml").write_text(
        "resolutions = [512]\nenable_ar_bucket = true\nnum_repeats = 2\n\n[[directory]]\npath = 'imgs'\n"
        "mask_path = 'masks'\ncontrol_path = 'ctrl'\n",
        encoding="utf-8",
    )
    result = import_config(tmp_path / "dp.toml")
    t = Dataset.get_by_id(result.registered[0]["id"]).trainer
    assert (t["format"], t["repeats"], t["mask_dirs"], t["control_dirs"]) == (
        "diffusion-pipe",
        2,
        [str(tmp_path / "masks")],
        [str(tmp_path / "ctrl")],
    )
    assert t["other"] == {"resolutions": [512], "enable_ar_bucket": True}
    (tmp_path / "mu.toml").write_text(
        '[general]\nresolution = [960, 544]\ncaption_extension = ".caption"\n\n[[datasets]]\nimage_directory = "imgs2"\n'
        'cache_directory = "cache"\ncontrol_directory = "ctrl"\nnum_repeats = 4\n\n[[datasets]]\nvideo_directory = "v"\n',
        encoding="utf-8",
    )
    result = import_config(tmp_path / "mu.toml", name_prefix="mu")
    (reg,) = result.registered
    t = Dataset.get_by_id(reg["id"]).trainer
    assert (t["format"], t["caption_extension"], t["repeats"], t["control_dirs"]) == (
        "musubi",
        ".caption",
        4,
        [str(tmp_path / "ctrl")],
    )
    # the video dataset is listed, not dropped
    assert any("video_directory" in n for n in result.plan.unmapped)


def test_dry_run_registers_nothing_and_already_registered_folders_are_not_doubled(db, testdata):
    before = Dataset.select().count()
    result = import_config(testdata / "kohya-ss-gui-test/config/dataset.toml", kohya_map(testdata), dry_run=True)
    assert result.registered == [] and len(result.plan.entries) == 1 and Dataset.select().count() == before
    import_config(testdata / "kohya-ss-gui-test/config/dataset.toml", kohya_map(testdata))
    again = import_config(testdata / "kohya-ss-gui-test/config/dataset-masked_loss.toml", kohya_map(testdata))
    assert again.registered == [] and again.plan.entries[0].existing == "dataset-10_darius kawasaki person"


def test_cli_import_config_json(db_path, db, testdata, capsys):
    from sushitui.cli import main

    rc = main(
        [
            "dataset",
            "import-config",
            str(testdata / "kohya-ss-gui-test/config/dataset.toml"),
            "--path-map",
            f"test={testdata / 'kohya-ss-gui-test'}",
            "--json",
            "--db",
            str(db_path),
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "kohya" and doc["registered"][0]["items"] == 8
    assert doc["entries"][0]["trainer"]["repeats"] == 10


# --- round trip: import-config of each of our exports ------------------------------------

CONFIG_OF = {
    "kohya-toml": "dataset.toml",
    "ai-toolkit": "dataset.yaml",
    "onetrainer": "concepts.json",
    "diffusion-pipe": "dataset.toml",
    "musubi": "dataset.toml",
    "kohya-jsonl": "dataset.toml",
}


@pytest.mark.parametrize("fmt", list(CONFIG_OF))
def test_import_config_of_our_export_registers_the_same_items_with_the_same_captions(db, tmp_path, fmt):
    from sushitui.export import ExportOptions, export_dataset

    src, _ = make_dataset(tmp_path)
    out = tmp_path / "out"
    export_dataset(src.id, out, ExportOptions(format=fmt, caption=("main",)))
    related = ("control", "mask", "masks")  # the folders of control images and masks
    exported = {
        p.stem: (p.with_suffix(".txt").read_text(encoding="utf-8") if p.with_suffix(".txt").exists() else None)
        for p in out.rglob("*")
        if p.suffix in (".png", ".jpg")
        and p.relative_to(out).parts[0] not in related
        and not p.stem.endswith(("-masklabel", "-condlabel"))
    }
    assert set(exported) == {"a", "b", "nocap", "c", "p1", "p2", "solo"}
    result = import_config(out / CONFIG_OF[fmt], name_prefix="rt")
    got_items: set[str] = set()
    got_caps: dict[str, str] = {}
    for reg in result.registered:
        ds = Dataset.get_by_id(reg["id"])
        got_items |= items(ds)
        got_caps.update(main_captions(ds))
    if fmt == "onetrainer":
        # OneTrainer's mask/condition files sit beside the images: grouped with them ('-' separator)
        ids = [r["id"] for r in result.registered]
        pairs = list(Item.select().where(Item.dataset.in_(ids) & Item.base_name.in_(["p1", "p2"])))
        assert len(pairs) == 2
        for item in pairs:
            rel = item.image_path.rsplit(".", 1)[0]
            assert (item.related_images["mask"], item.related_images["source"]) == (
                f"{rel}-masklabel.png",
                f"{rel}-condlabel.png",
            ), item.related_images
    assert got_items == set(exported)
    assert got_caps == {k: v for k, v in exported.items() if v is not None}
    # the source's captions, not only what was written
    assert got_caps["a"] == "cat, sitting" and got_caps["p1"] == "edited square p1"
    assert result.plan.format == {"kohya-toml": "kohya", "kohya-jsonl": "kohya"}.get(fmt, fmt)


def test_an_export_reuses_the_repeats_and_is_reg_the_config_gave(db, tmp_path):
    import tomllib

    import yaml

    from sushitui.export import ExportOptions, export_dataset

    (tmp_path / "reg").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "reg/r.png")
    (tmp_path / "reg/r.txt").write_text("a person", encoding="utf-8")
    cfg = tmp_path / "ds.toml"
    cfg.write_text(
        '[[datasets]]\n  [[datasets.subsets]]\n  image_dir = "reg"\n  num_repeats = 3\n  is_reg = true\n',
        encoding="utf-8",
    )
    ds = Dataset.get_by_id(import_config(cfg).registered[0]["id"])
    export_dataset(ds.id, tmp_path / "k", ExportOptions(format="kohya-toml"))
    (sub,) = tomllib.loads((tmp_path / "k/dataset.toml").read_text(encoding="utf-8"))["datasets"][0]["subsets"]
    assert (sub["num_repeats"], sub["is_reg"]) == (3, True)
    export_dataset(ds.id, tmp_path / "a", ExportOptions(format="ai-toolkit"))
    (entry,) = yaml.safe_load((tmp_path / "a/dataset.yaml").read_text(encoding="utf-8"))["datasets"]
    assert (entry["num_repeats"], entry["is_reg"]) == (3, True)
    export_dataset(ds.id, tmp_path / "o", ExportOptions(format="onetrainer"))
    (concept,) = json.loads((tmp_path / "o/concepts.json").read_text(encoding="utf-8"))
    assert (concept["balancing"], concept["type"]) == (3.0, "PRIOR_PREDICTION")
    # and OneTrainer's concept reads back as the same settings
    back = import_config(tmp_path / "o/concepts.json").plan.entries[0].trainer
    assert (back["repeats"], back["is_reg"]) == (3, True)
    # --repeats still wins
    export_dataset(ds.id, tmp_path / "k2", ExportOptions(format="kohya-toml", repeats=7))
    assert (
        tomllib.loads((tmp_path / "k2/dataset.toml").read_text(encoding="utf-8"))["datasets"][0]["subsets"][0][
            "num_repeats"
        ]
        == 7
    )


def test_musubi_without_caption_extension_reads_no_captions_and_says_so(db, tmp_path):
    (tmp_path / "imgs").mkdir()
    cfg = tmp_path / "mu.toml"
    cfg.write_text('[[datasets]]\nimage_directory = "imgs"\ncache_directory = "c"\n', encoding="utf-8")
    (entry,) = import_config(cfg, dry_run=True).plan.entries
    assert "caption_extension" not in entry.trainer
    assert any("no caption_extension" in n for n in entry.unmapped)
