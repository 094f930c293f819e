"""The trainer formats added for issue 17: where each trainer reads what, and the
config files written for it.

- diffusers: one Hugging Face ``imagefolder`` (``load_dataset("imagefolder",
  data_dir=OUTDIR)``, the diffusers training scripts' ``--train_data_dir``):
  ``images/<folder>/x.png`` and ``OUTDIR/metadata.jsonl`` with ``file_name`` (relative
  to OUTDIR) and ``text`` (the caption), one more column per other caption subtype of
  the exported items (``main``, ``alt``, …; a subtype whose name imagefolder reserves
  gets ``caption_`` before it), and for group items ``conditioning_image_file_name`` /
  ``mask_file_name`` (imagefolder loads every ``*_file_name`` column as an image;
  control images under ``conditioning/<folder>``, masks under ``mask/<folder>``). Every
  row has every column (null when absent): pyarrow infers one schema for the file.
- onetrainer: one concept per source folder (``<folder>/x.png`` + ``x.txt``, prompt
  source "sample"), masks beside the image as ``x-masklabel.png`` and control images as
  ``x-condlabel.png`` (PNG: converted when the source is not), and ``concepts.json``
  for OneTrainer's concept file (``concept_file_name``).
- diffusion-pipe: ``images/<folder>`` + ``x.txt``, ``control/<folder>``,
  ``mask/<folder>`` (same stems) and ``dataset.toml`` with one ``[[directory]]`` per
  folder (``path``, ``num_repeats``, ``control_path``, ``mask_path``). diffusion-pipe
  reads every non-caption file of ``path`` as an image and stops on an image without a
  control file, so a folder's items without one go to ``<folder>_nocontrol``. When an
  item has several captions (the subtypes named in ``--caption``), its folder gets
  ``captions.json`` (``{"x.png": [caption, …]}``, which diffusion-pipe then reads
  instead of the ``.txt`` files; the ``.txt`` keeps the first caption).
- musubi: musubi-tuner's dataset config (``[general]`` + one ``[[datasets]]`` per
  folder with ``image_directory``, its own ``cache_directory``, ``num_repeats`` and
  ``control_directory`` for edit models: FLUX.1 Kontext, Qwen-Image-Edit). Masks have no
  place there and are reported.
- kohya-jsonl: sd-scripts' JSONL metadata (``{"image_path", "caption" | "tags",
  "image_size"}``, paths relative to ``image_dir``) and a fine-tuning ``dataset.toml``
  whose subset names it as ``metadata_file``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Iterable, Sequence

from sushitui.export.captions import CaptionBuilder, CaptionRow
from sushitui.export.formats import FolderInfo, config_path, pick_resolution, sibling_folder
from sushitui.export.options import ExportOptions

NOCONTROL_SUFFIX = "_nocontrol"
ONETRAINER_MASK = "-masklabel"
ONETRAINER_CONTROL = "-condlabel"
CAPTIONS_JSON = "captions.json"
# columns imagefolder gives a meaning of its own
_RESERVED_COLUMNS = {"file_name", "file_names", "text", "image", "label"}


def subtype_column(subtype: str) -> str:
    name = subtype or "main"
    if name in _RESERVED_COLUMNS or name.endswith(("_file_name", "_file_names")):
        return "caption_" + name
    return name


def per_subtype_builders(builder: CaptionBuilder, subtypes: Iterable[str]) -> dict[str, CaptionBuilder]:
    """A builder per caption subtype, sharing the alias table and excluded tags."""
    return {
        s: CaptionBuilder(replace(builder.options, caption=(s or "main",)), builder.alias_map, builder.excluded)
        for s in subtypes
    }


def item_captions(rows: Sequence[CaptionRow], builders: dict[str, CaptionBuilder]) -> dict[str, str]:
    """subtype → the caption as the trainer reads it, for each subtype the item has."""
    out = {}
    for sub, b in builders.items():
        built = b.build(rows)
        if built.subtype is not None and built.text:
            out[sub] = built.text
    return out


def nocontrol_folder(info: FolderInfo, folders: dict[str, FolderInfo]) -> FolderInfo:
    """The plain sibling folder of a folder with control images, for its items without
    one (a new name, so no real folder is merged into it)."""

    def make(path: tuple[str, ...]) -> FolderInfo:
        mask = info.mask_folder[:-1] + (path[-1],) if info.mask_folder else None
        return FolderInfo(path, info.repeats, info.class_tokens, mask_folder=mask, is_reg=info.is_reg)

    return sibling_folder(info, folders, "nocontrol", NOCONTROL_SUFFIX, make)


# --- config files -------------------------------------------------------------------


def _header(trainer: str, how: str) -> str:
    return f"# sushitui export for {trainer}: {how}\n"


def diffusion_pipe_toml(
    folders: Sequence[FolderInfo], options: ExportOptions, root: str, long_sides: Sequence[int]
) -> str:
    import tomli_w

    res = list(options.resolution) if options.resolution else [pick_resolution(long_sides)]
    top = {"resolutions": res, "enable_ar_bucket": True, "min_ar": 0.5, "max_ar": 2.0, "num_ar_buckets": 7}
    if options.shuffle_caption:
        top["shuffle_tags"] = True
    parts = [_header("diffusion-pipe", "set dataset = '<this file>' in your training config") + tomli_w.dumps(top)]
    for f in folders:
        entry: dict = {"path": config_path(root, f.folder), "num_repeats": f.repeats}
        if f.has_control and f.control_folder:
            entry["control_path"] = config_path(root, f.control_folder)
        if f.has_mask and f.mask_folder:
            entry["mask_path"] = config_path(root, f.mask_folder)
        parts.append("[[directory]]\n" + tomli_w.dumps(entry))
    return "\n".join(parts)


def musubi_toml(folders: Sequence[FolderInfo], options: ExportOptions, root: str, long_sides: Sequence[int]) -> str:
    import tomli_w

    res = options.resolution[0] if options.resolution else pick_resolution(long_sides)
    general = {
        "resolution": [res, res],
        "caption_extension": ".txt",
        "batch_size": options.batch_size,
        "enable_bucket": True,
        "bucket_no_upscale": False,
    }
    parts = [_header("musubi-tuner", "pass with --dataset_config") + "[general]\n" + tomli_w.dumps(general)]
    for f in folders:
        entry: dict = {
            "image_directory": config_path(root, f.folder),
            # musubi-tuner wants a cache folder of its own per dataset
            "cache_directory": config_path(root, ("cache", *f.folder[1:])),
            "num_repeats": f.repeats,
        }
        if f.has_control and f.control_folder:
            entry["control_directory"] = config_path(root, f.control_folder)
        parts.append("[[datasets]]\n" + tomli_w.dumps(entry))
    return "\n".join(parts)


def onetrainer_concepts(folders: Sequence[FolderInfo], options: ExportOptions, root: str) -> str:
    concepts = []
    for f in folders:
        text: dict = {"prompt_source": "sample", "enable_tag_shuffling": options.shuffle_caption}
        if options.keep_tokens:
            text["keep_tags_count"] = options.keep_tokens
        concepts.append(
            {
                "name": f.folder[-1],
                "path": config_path(root, f.folder),
                "enabled": True,
                "include_subdirectories": False,
                "balancing": float(f.repeats),
                "balancing_strategy": "REPEATS",
                "text": text,
            }
        )
        if f.is_reg:
            # OneTrainer's regularisation concept: trained towards the model's own
            # prediction (ConceptType.PRIOR_PREDICTION); older versions ignore the key
            concepts[-1]["type"] = "PRIOR_PREDICTION"
    return json.dumps(concepts, indent=4, ensure_ascii=False) + "\n"


def jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def diffusers_rows(rows: list[dict], columns: Sequence[str]) -> list[dict]:
    """Every row with every column, in one order (null where the item has none)."""
    return [{c: r.get(c) for c in columns} for r in rows]


__all__ = [
    "CAPTIONS_JSON",
    "NOCONTROL_SUFFIX",
    "ONETRAINER_CONTROL",
    "ONETRAINER_MASK",
    "diffusers_rows",
    "diffusion_pipe_toml",
    "item_captions",
    "jsonl",
    "musubi_toml",
    "nocontrol_folder",
    "onetrainer_concepts",
    "per_subtype_builders",
    "subtype_column",
]
