"""Items flagged ``reg`` (the marks' regularisation flag) are exported as the trainer's
regularisation images, not as training images: sd-scripts' ``reg_data_dir`` folders and
``is_reg`` subsets, ai-toolkit ``is_reg`` datasets, OneTrainer prior-prediction concepts.
Formats without a regularisation set leave them out and say so."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from export_helpers import register

from sushitui.dataset.marks import set_flag
from sushitui.export import ExportOptions, export_dataset
from sushitui.store import Item


def _dataset(tmp_path: Path, n: int = 6):
    from PIL import Image

    root = tmp_path / "src" / "5_alice"
    root.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (64, 48), (i * 30, 0, 0)).save(root / f"img{i}.png")
        (root / f"img{i}.txt").write_text(f"alice, pose{i}")
    ds = register("alice", tmp_path / "src")
    ids = {it.base_name: it.id for it in Item.select().where(Item.dataset == ds.id)}
    set_flag([ids["img1"], ids["img4"]], "reg")
    return ds


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_txt_puts_reg_items_in_a_reg_data_dir_that_train_data_dir_skips(db, tmp_path):
    ds = _dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format="txt"))
    assert report.items_exported == 6
    assert _names(out / "5_alice") == {f"img{i}.{ext}" for i in (0, 2, 3, 5) for ext in ("png", "txt")}
    # sd-scripts: --reg_data_dir OUTDIR/reg; "reg" has no repeat count, so train_data_dir skips it
    assert _names(out / "reg" / "5_alice") == {f"img{i}.{ext}" for i in (1, 4) for ext in ("png", "txt")}
    assert (out / "reg" / "5_alice" / "img1.txt").read_text() == "alice, pose1"


def test_kohya_toml_lists_reg_items_as_an_is_reg_subset(db, tmp_path):
    ds = _dataset(tmp_path)
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="kohya-toml"))
    doc = tomllib.loads((out / "dataset.toml").read_text())
    subsets = doc["datasets"][0]["subsets"]
    by_dir = {Path(s["image_dir"]).relative_to(out).as_posix(): s for s in subsets}
    assert set(by_dir) == {"5_alice", "reg/5_alice"}
    assert by_dir["reg/5_alice"].get("is_reg") is True and "is_reg" not in by_dir["5_alice"]
    assert len(list((out / "reg" / "5_alice").glob("*.png"))) == 2
    assert len(list((out / "5_alice").glob("*.png"))) == 4


def test_ai_toolkit_and_onetrainer_mark_the_reg_folder(db, tmp_path):
    ds = _dataset(tmp_path)
    out = tmp_path / "ai"
    export_dataset(ds.id, out, ExportOptions(format="ai-toolkit"))
    entries = yaml.safe_load((out / "dataset.yaml").read_text())["datasets"]
    regs = [e for e in entries if e.get("is_reg")]
    assert len(regs) == 1 and len(entries) == 2
    assert len(list(Path(regs[0]["folder_path"]).glob("*.png"))) == 2

    out = tmp_path / "ot"
    export_dataset(ds.id, out, ExportOptions(format="onetrainer"))
    concepts = json.loads((out / "concepts.json").read_text())
    prior = [c for c in concepts if c.get("type") == "PRIOR_PREDICTION"]
    assert len(prior) == 1 and len(concepts) == 2
    assert len(list(Path(prior[0]["path"]).glob("*.png"))) == 2


@pytest.mark.parametrize("fmt", ["diffusers", "kohya-json", "diffusion-pipe"])
def test_formats_without_a_reg_set_leave_reg_items_out_and_say_so(db, tmp_path, fmt):
    ds = _dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format=fmt))
    assert report.items_exported == 4
    assert not any("img1" in p.name or "img4" in p.name for p in out.rglob("*.png"))
    problem = next(p for p in report.problems if "reg" in p.path)
    assert "2 items flagged reg" in problem.path and "kohya-toml" in problem.reason


def test_a_reg_dataset_exports_every_item_as_reg_once(db, tmp_path):
    from sushitui.store import Dataset

    ds = _dataset(tmp_path)
    Dataset.update(trainer={"is_reg": True}).where(Dataset.id == ds.id).execute()
    out = tmp_path / "out"
    export_dataset(ds.id, out, ExportOptions(format="kohya-toml"))
    subsets = tomllib.loads((out / "dataset.toml").read_text())["datasets"][0]["subsets"]
    assert len(subsets) == 1 and subsets[0]["is_reg"] is True
    assert len(list((out / "5_alice").glob("*.png"))) == 6
