"""Shared by tests/test_export_trainers_*.py and tests/test_import_config*.py: a small
dataset with every case the trainer formats handle, and each trainer's own rule for
finding an image's caption, control image and mask, written from its parser."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from PIL import Image

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")


def _img(path: Path, color, size=(48, 32), fmt=None) -> None:
    Image.new("RGB", size, color).save(path, format=fmt)


def make_dataset(tmp_path: Path, name: str = "trainers"):
    """``10_cat/``: a (tags + alt prose), b.jpg, nocap (no caption), sub/c;
    ``edits/``: groups p1 (png mask), p2 (jpg mask) with source/target/instruction, and
    solo (no source). Returns the registered dataset."""
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    root = tmp_path / "src"
    (root / "10_cat" / "sub").mkdir(parents=True)
    (root / "edits").mkdir()
    _img(root / "10_cat/a.png", (200, 0, 0))
    (root / "10_cat/a.txt").write_text("cat, sitting", encoding="utf-8")
    (root / "10_cat/a_alt.txt").write_text("A cat sits on a mat.", encoding="utf-8")
    _img(root / "10_cat/b.jpg", (0, 0, 200))
    (root / "10_cat/b.txt").write_text("cat, running", encoding="utf-8")
    _img(root / "10_cat/nocap.png", (9, 9, 9))
    _img(root / "10_cat/sub/c.png", (0, 200, 0))
    (root / "10_cat/sub/c.txt").write_text("cat, sleeping", encoding="utf-8")
    for n, mask_ext in (("p1", ".png"), ("p2", ".jpg")):
        _img(root / f"edits/{n}_source.png", (10 * int(n[1]), 50, 50))
        _img(root / f"edits/{n}_target.png", (50, 10 * int(n[1]), 50))
        _img(root / f"edits/{n}_mask{mask_ext}", (255, 255, 255))
        (root / f"edits/{n}.txt").write_text(f"edited square {n}", encoding="utf-8")
        (root / f"edits/{n}_instruction.txt").write_text(f"make {n} green", encoding="utf-8")
    _img(root / "edits/solo.png", (1, 2, 3))
    (root / "edits/solo.txt").write_text("a lonely square", encoding="utf-8")
    ds, _ = add_dataset(DatasetSettings(name=name, root_path=str(root)))
    return ds, root


def source_bytes(root: Path, rel: str) -> bytes:
    return (root / rel).read_bytes()


# --- each trainer's reading rule -------------------------------------------------------
# Each loader returns {image stem: {"image": path, "caption": str | None,
# "control": path | None, "mask": path | None}} and raises AssertionError where the
# trainer itself would stop.


def _entry(image, caption, control=None, mask=None) -> dict:
    return {"image": Path(image), "caption": caption, "control": control and Path(control), "mask": mask and Path(mask)}


def _put(out: dict, stem: str, value: dict) -> None:
    assert stem not in out, f"two images named {stem}"
    out[stem] = value


def load_imagefolder(outdir: Path) -> dict:
    """datasets' imagefolder with a metadata.jsonl (packaged_modules/folder_based_builder):
    rows come from the metadata file only; ``file_name`` and every ``*_file_name``
    string column is an image path relative to the metadata file's folder; pyarrow
    reads one schema for the file, so every row has the same keys. (``datasets`` itself
    pulls pyarrow and pandas, too heavy for this project's test extra.)"""
    rows = [json.loads(line) for line in (outdir / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows
    keys = list(rows[0])
    assert keys[:2] == ["file_name", "text"]
    out = {}
    for row in rows:
        assert list(row) == keys, "pyarrow infers one schema: every row needs the same columns"
        paths = {}
        for k, v in row.items():
            if k == "file_name" or k.endswith("_file_name"):
                if v is None:
                    continue
                assert isinstance(v, str)
                p = outdir / os.path.normpath(v)
                assert p.is_file(), p
                paths[k] = p
        _put(
            out,
            paths["file_name"].stem,
            _entry(
                paths["file_name"], row["text"], paths.get("conditioning_image_file_name"), paths.get("mask_file_name")
            )
            | {"row": row},
        )
    return out


def load_onetrainer(outdir: Path) -> dict:
    """OneTrainer: concepts.json; a concept's images are the image files of ``path``
    (one level unless include_subdirectories), the prompt ``<stem>.txt`` (prompt_source
    sample), the mask ``<stem>-masklabel.png``, the conditioning image
    ``<stem>-condlabel.png``."""
    concepts = json.loads((outdir / "concepts.json").read_text(encoding="utf-8"))
    out = {}
    for c in concepts:
        assert c["text"]["prompt_source"] == "sample" and c["include_subdirectories"] is False
        folder = Path(c["path"])
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() not in IMAGE_EXTS or p.stem.endswith(("-masklabel", "-condlabel")):
                continue
            txt = p.with_suffix(".txt")
            mask = folder / f"{p.stem}-masklabel.png"
            cond = folder / f"{p.stem}-condlabel.png"
            _put(
                out,
                p.stem,
                _entry(
                    p,
                    txt.read_text(encoding="utf-8").strip() if txt.exists() else None,
                    cond if cond.exists() else None,
                    mask if mask.exists() else None,
                ),
            )
    return out


def load_diffusion_pipe(outdir: Path) -> dict:
    """diffusion-pipe utils/dataset.py: every file of ``path`` (not sub-folders) but
    .txt/.npz/.json/.parquet/.bak/.db is an image; captions.json (``{name: [..]}``)
    when present, else ``<stem>.txt`` read whole and stripped; a control file of the
    same stem must exist for every image when control_path is set; masks by stem."""
    doc = tomllib.loads((outdir / "dataset.toml").read_text(encoding="utf-8"))
    assert isinstance(doc["resolutions"], list)
    out = {}
    for d in doc["directory"]:
        path = Path(d["path"])
        assert isinstance(d["num_repeats"], int) and d["num_repeats"] >= 1
        controls = (
            {p.stem: p for p in Path(d["control_path"]).glob("*") if p.is_file()} if "control_path" in d else None
        )
        masks = {p.stem: p for p in Path(d["mask_path"]).glob("*") if p.is_file()} if "mask_path" in d else {}
        cj = path / "captions.json"
        captions = json.loads(cj.read_text(encoding="utf-8")) if cj.exists() else None
        for f in sorted(path.glob("*")):
            if not f.is_file() or f.suffix in (".txt", ".npz", ".json", ".parquet", ".bak", ".db"):
                continue
            if captions is not None:
                caption = captions.get(f.name)
                assert caption is None or isinstance(caption, list)
            else:
                txt = f.with_suffix(".txt")
                caption = [txt.read_text().strip()] if txt.exists() else None
            control = None
            if controls is not None:
                assert f.stem in controls, f"No control file exists for image {f}"
                control = controls[f.stem]
            _put(
                out,
                f.stem,
                _entry(f, caption[0] if caption else None, control, masks.get(f.stem)) | {"captions": caption},
            )
    return out


def load_musubi(outdir: Path) -> dict:
    """musubi-tuner (dataset/datasources.py, media_utils.glob_images): image_directory's
    images that have a caption ``<stem><caption_extension>`` (from the dataset or
    [general]; images without one are left out), a control image of the same stem (any
    extension, or ``<stem>_N``) in control_directory for every image, else it stops;
    one cache_directory per dataset (docs/dataset_config.md)."""
    doc = tomllib.loads((outdir / "dataset.toml").read_text(encoding="utf-8"))
    general = doc.get("general", {})
    caches = [d["cache_directory"] for d in doc["datasets"]]
    assert len(set(caches)) == len(caches), "musubi-tuner needs a cache folder per dataset"
    out = {}
    for d in doc["datasets"]:
        ext = d.get("caption_extension", general.get("caption_extension"))
        folder = Path(d["image_directory"])
        controls = {p.stem: p for p in Path(d["control_directory"]).glob("*")} if "control_directory" in d else None
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() not in IMAGE_EXTS:
                continue
            cap = p.with_suffix(ext)
            if not cap.exists():
                continue
            control = None
            if controls is not None:
                assert p.stem in controls, f"no control image for {p}"
                control = controls[p.stem]
            _put(out, p.stem, _entry(p, cap.read_text(encoding="utf-8"), control))
    return out


def load_kohya_jsonl(outdir: Path) -> dict:
    """sd-scripts library/train_util.py FineTuningDataset: a subset's metadata_file
    ending in .jsonl holds ``{"image_path", "caption", "tags"?, "image_size"?}``; a
    relative image_path is joined to image_dir; the caption is caption + ", " + tags."""
    doc = tomllib.loads((outdir / "dataset.toml").read_text(encoding="utf-8"))
    out = {}
    for ds in doc["datasets"]:
        for s in ds["subsets"]:
            assert s["metadata_file"].endswith(".jsonl")
            for line in Path(s["metadata_file"]).read_text(encoding="utf-8").splitlines():
                md = json.loads(line)
                path = md["image_path"]
                abs_path = Path(path) if os.path.isabs(path) else Path(s["image_dir"]) / path
                assert abs_path.is_file(), abs_path
                caption = md.get("caption", "")
                if md.get("tags"):
                    caption = caption + ", " + md["tags"] if caption else md["tags"]
                if "image_size" in md:
                    with Image.open(abs_path) as im:
                        assert list(im.size) == md["image_size"]
                _put(out, abs_path.stem, _entry(abs_path, caption))
    return out


LOADERS = {
    "diffusers": load_imagefolder,
    "onetrainer": load_onetrainer,
    "diffusion-pipe": load_diffusion_pipe,
    "musubi": load_musubi,
    "kohya-jsonl": load_kohya_jsonl,
}
