"""The trainer formats (EX-1): where each item's files go and which config files are
written.

- txt: ``OUTDIR/<N>_<folder>/image.ext`` + ``image.txt`` (one line, UTF-8): kohya-ss
  DreamBooth folders (``train_data_dir = OUTDIR``) and every trainer that reads
  caption files beside images.
- kohya-toml: the same files (folder names kept) plus ``dataset.toml`` for
  ``--dataset_config``: one ``[[datasets.subsets]]`` per folder, because sd-scripts
  does not recurse into sub-folders of an ``image_dir``. Group items' masks go to
  ``masks/<folder>/`` under the image's stem and their subsets get
  ``conditioning_data_dir`` (sd-scripts ``--masked_loss``; ``txt`` gets the masks only;
  see masks.py).
- kohya-json: the images plus ``metadata.json`` in the shape sd-scripts' ``finetune/``
  tools write (``{image_key: {"caption" | "tags": ...}}``, keys relative to the
  image_dir without extension) and a fine-tuning ``dataset.toml``.
- ai-toolkit: ``images/<folder>`` (+ ``control/<folder>`` and ``mask/<folder>`` with
  the same file stems for group items) and ``dataset.yaml`` with one entry per folder;
  nested folders are flattened (``a/b`` → ``a__b``) because ai-toolkit recurses.
- diffusers, onetrainer, diffusion-pipe, musubi, kohya-jsonl: see trainers.py.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

from sushitui.export.captions import BuiltCaption
from sushitui.export.options import ExportOptions
from sushitui.export.writer import is_shortened, safe_component

_REPEAT_PREFIX = re.compile(r"^(\d+)_(.+)$")
CAPTION_EXT = ".txt"
WRITES_CAPTION_FILES = {
    "txt": True,
    "kohya-toml": True,
    "kohya-json": False,
    "ai-toolkit": True,
    # diffusers reads only metadata.jsonl; kohya-jsonl writes .txt beside the images as
    # well (sd-scripts reads the JSONL, `sushitui dataset import-config` and other tools
    # the .txt)
    "diffusers": False,
    "onetrainer": True,
    "diffusion-pipe": True,
    "musubi": True,
    "kohya-jsonl": True,
}
# formats whose control and mask images go to parallel folders under the image's stem
PARALLEL_RELATED_FORMATS = ("ai-toolkit", "diffusion-pipe", "musubi", "diffusers")
# formats whose trainer stops on an image without its control image (diffusion-pipe:
# "No control file exists for image"; musubi-tuner pairs every image of a
# control_directory dataset): such items go to a sibling folder without control_path
CONTROL_REQUIRED_FORMATS = ("diffusion-pipe", "musubi")
# formats with a regularisation set, where items flagged ``reg`` go (the others leave
# them out): sd-scripts' reg_data_dir / is_reg subsets, ai-toolkit's is_reg datasets,
# OneTrainer's prior-prediction concepts
REG_FORMATS = ("txt", "kohya-toml", "ai-toolkit", "onetrainer")
REG_PREFIX = "reg__"
# formats whose mask images go to OUTDIR/masks/<folder> (sd-scripts conditioning_data_dir)
KOHYA_MASK_FORMATS = ("txt", "kohya-toml")


@dataclass
class FolderInfo:
    folder: tuple[str, ...]  # output folder of the images, relative to OUTDIR
    repeats: int
    class_tokens: str | None
    images: int = 0
    control_folder: tuple[str, ...] | None = None
    mask_folder: tuple[str, ...] | None = None  # ai-toolkit mask/<folder>; kohya masks/<folder>
    has_control: bool = False
    has_mask: bool = False
    needs_control: bool = False  # CONTROL_REQUIRED_FORMATS: some item of the folder has a control image
    is_reg: bool = False  # regularisation images (the dataset's trainer settings say so: import-config)
    shortened: bool = False  # a folder name was too long and got writer.shorten_name's hash


def sibling_folder(
    info: FolderInfo,
    folders: dict[str, FolderInfo],
    kind: str,
    suffix: str,
    make: Callable[[tuple[str, ...]], FolderInfo],
) -> FolderInfo:
    """The plain sibling of ``info``'s folder for its items that lack something (``kind``),
    made once by ``make(path)``: the folder's name + ``suffix``, then ``_2``, ``_3``... while
    a folder in ``folders`` has that name, so no real folder is merged into it."""
    key = f"\0{kind}/" + "/".join(info.folder)
    sibling = folders.get(key)
    if sibling is None:
        taken = {f.folder for f in folders.values()}
        base = info.folder[-1] + suffix
        name, n = base, 1
        while info.folder[:-1] + (name,) in taken:
            n += 1
            name = f"{base}_{n}"
        sibling = folders[key] = make(info.folder[:-1] + (name,))
    return sibling


def output_folder(fmt: str, rel_dir: str, dataset_name: str, repeats: int | None) -> FolderInfo:
    """The output folder for items of the dataset folder ``rel_dir``."""
    raw = [p for p in rel_dir.replace("\\", "/").split("/") if p not in ("", ".")]
    parts = [safe_component(p) for p in raw] or [safe_component(dataset_name, "dataset")]
    shortened = any(is_shortened(p) for p in raw or [dataset_name])
    m = _REPEAT_PREFIX.match(parts[0])
    class_tokens = m.group(2) if m else None
    prefixed = int(m.group(1)) if m else None
    if fmt == "txt":
        # kohya's DreamBooth folders: train_data_dir/<repeats>_<class tokens>/
        n = repeats or prefixed or 1
        parts[0] = f"{n}_{class_tokens or parts[0]}"
        class_tokens = class_tokens or parts[0].split("_", 1)[1]
        return FolderInfo(tuple(parts), n, class_tokens, shortened=shortened)
    n = repeats or prefixed or 1
    if fmt in ("ai-toolkit", "diffusion-pipe", "musubi", "onetrainer"):
        # ai-toolkit walks folder_path recursively, so nested folders would be read
        # twice: one flat folder per source folder instead (diffusion-pipe, musubi-tuner
        # and OneTrainer read one folder level: one entry per source folder, flat alike)
        flat = safe_component("__".join(parts))
        shortened = shortened or is_shortened("__".join(parts))
        if fmt == "onetrainer":  # masks and control images sit beside the image
            return FolderInfo((flat,), n, class_tokens, shortened=shortened)
        # musubi-tuner has no mask folder for image datasets
        mask = None if fmt == "musubi" else ("mask", flat)
        return FolderInfo(
            ("images", flat), n, class_tokens, control_folder=("control", flat), mask_folder=mask, shortened=shortened
        )
    if fmt == "diffusers":
        # one imagefolder: images/<folder>/…, control and mask images in parallel trees
        return FolderInfo(
            ("images", *parts),
            n,
            class_tokens,
            control_folder=("conditioning", *parts),
            mask_folder=("mask", *parts),
            shortened=shortened,
        )
    return FolderInfo(tuple(parts), n, class_tokens, shortened=shortened)


def reg_folder(fmt: str, info: FolderInfo, folders: dict[str, FolderInfo]) -> FolderInfo:
    """The regularisation sibling of a training folder, for its items flagged ``reg``.

    txt / kohya-toml: ``OUTDIR/reg/<N>_<class>/`` (sd-scripts' ``reg_data_dir =
    OUTDIR/reg``; ``train_data_dir = OUTDIR`` skips ``reg`` as it has no repeat count;
    kohya-toml lists it as an ``is_reg`` subset). Flat formats: a ``reg__<folder>``
    sibling (ai-toolkit ``is_reg: true``, OneTrainer ``PRIOR_PREDICTION``)."""

    def renamed(path: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if path is None:
            return None
        if fmt in ("txt", "kohya-toml"):
            return ("reg", *path) if path == info.folder else (path[0], "reg", *path[1:])
        return (*path[:-1], REG_PREFIX + path[-1])

    folder = renamed(info.folder)
    assert folder is not None
    taken = {f.folder for f in folders.values()}
    base, n = folder, 1
    while folder in taken:  # a real folder of that name: never merge into it
        n += 1
        folder = (*base[:-1], f"{base[-1]}_{n}")
    return FolderInfo(
        folder,
        info.repeats,
        info.class_tokens,
        control_folder=renamed(info.control_folder),
        mask_folder=renamed(info.mask_folder),
        is_reg=True,
        shortened=info.shortened,
    )


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def metadata_entry(caption: BuiltCaption) -> dict:
    """One entry of kohya fine-tuning metadata."""
    return {"tags": caption.text} if caption.kind == "tags" else {"caption": caption.text}


def trainer_text(fmt: str, caption: BuiltCaption) -> str:
    """What the trainer reads for this caption (sd-scripts: the first line of the
    caption file; fine-tuning metadata: caption + ", " + tags)."""
    if fmt in ("kohya-json", "kohya-jsonl"):
        md = metadata_entry(caption)
        text = md.get("caption")
        tags = md.get("tags")
        if text is None:
            return tags or ""
        return f"{text}, {tags}" if tags else text
    return first_line(caption.text)


def config_path(root: str, folder: Sequence[str]) -> str:
    root = root.rstrip("/\\") or "/"
    return "/".join([root, *folder]) if folder else root


def pick_resolution(long_sides: Sequence[int]) -> int:
    """kohya ``resolution``: the common training size the images can fill."""
    if not long_sides:
        return 1024
    median = statistics.median(long_sides)
    for r in (1024, 768, 512):
        if median >= r:
            return r
    return 512


def pick_buckets(long_sides: Sequence[int]) -> list[int]:
    """ai-toolkit resolution buckets no larger than the largest image."""
    top = max(long_sides) if long_sides else 1024
    return [r for r in (512, 768, 1024) if r <= top] or [512]


def kohya_dreambooth_toml(
    folders: Sequence[FolderInfo], options: ExportOptions, root: str, long_sides: Sequence[int]
) -> str:
    general: dict = {"caption_extension": CAPTION_EXT, "shuffle_caption": options.shuffle_caption}
    if options.keep_tokens:
        general["keep_tokens"] = options.keep_tokens
    plain, masked = [], []
    for f in folders:
        sub: dict = {"image_dir": config_path(root, f.folder), "num_repeats": f.repeats}
        if f.has_mask and f.mask_folder:
            # masked loss: sd-scripts reads this subset as ControlNet-style, whose schema
            # has no class_tokens
            sub["conditioning_data_dir"] = config_path(root, f.mask_folder)
            masked.append(sub)
            continue
        if f.class_tokens:
            sub["class_tokens"] = f.class_tokens
        if f.is_reg:
            sub["is_reg"] = True
        plain.append(sub)
    dataset = _kohya_dataset(options, long_sides)
    # a dataset is ControlNet-style only when every subset has conditioning_data_dir:
    # masked subsets get their own [[datasets]]
    blocks = [(dataset, subsets) for subsets in (plain, masked) if subsets] or [(dataset, [])]
    return _header(options) + _toml_sections(general, blocks)


def kohya_finetune_toml(options: ExportOptions, root: str, long_sides: Sequence[int], metadata_name: str) -> str:
    general: dict = {"shuffle_caption": options.shuffle_caption}
    if options.keep_tokens:
        general["keep_tokens"] = options.keep_tokens
    subset = {
        "image_dir": config_path(root, ()),
        "metadata_file": config_path(root, (metadata_name,)),
        "num_repeats": options.repeats or 1,
    }
    return _header(options) + _toml_sections(general, [(_kohya_dataset(options, long_sides), [subset])])


def _toml_sections(general: dict, datasets: Sequence[tuple[dict, Sequence[dict]]]) -> str:
    """``[general]``, then per dataset ``[[datasets]]`` and one ``[[datasets.subsets]]``
    table per subset, the layout of sd-scripts' documented examples (tomli-w alone would
    inline the nested array of tables)."""
    import tomli_w

    parts = ["[general]\n" + tomli_w.dumps(general)]
    for dataset, subsets in datasets:
        parts.append("[[datasets]]\n" + tomli_w.dumps(dataset))
        for sub in subsets:
            parts.append(
                "  [[datasets.subsets]]\n" + "".join("  " + line + "\n" for line in tomli_w.dumps(sub).splitlines())
            )
    return "\n".join(parts)


def _kohya_dataset(options: ExportOptions, long_sides: Sequence[int]) -> dict:
    res = options.resolution[0] if options.resolution else pick_resolution(long_sides)
    return {
        "resolution": res,
        "batch_size": options.batch_size,
        "enable_bucket": True,
        "min_bucket_reso": 256,
        "max_bucket_reso": max(1024, res * 2),
        "bucket_reso_steps": 64,
        "bucket_no_upscale": True,
    }


def kohya_metadata_json(metadata: dict[str, dict]) -> str:
    # as sd-scripts' finetune/merge_*_to_metadata.py write it: json.dump(indent=2)
    return json.dumps(metadata, indent=2) + "\n"


def ai_toolkit_yaml(folders: Sequence[FolderInfo], options: ExportOptions, root: str, long_sides: Sequence[int]) -> str:
    import yaml

    buckets = list(options.resolution) if options.resolution else pick_buckets(long_sides)
    datasets = []
    for f in folders:
        entry: dict = {
            "folder_path": config_path(root, f.folder),
            "caption_ext": CAPTION_EXT.lstrip("."),
            "resolution": list(buckets),
            "num_repeats": f.repeats,
            "shuffle_tokens": options.shuffle_caption,
        }
        if options.keep_tokens:
            entry["keep_tokens"] = options.keep_tokens
        if f.is_reg:
            entry["is_reg"] = True
        if f.has_control and f.control_folder:
            entry["control_path"] = config_path(root, f.control_folder)
        if f.has_mask and f.mask_folder:
            entry["mask_path"] = config_path(root, f.mask_folder)
        datasets.append(entry)
    doc: dict = {}
    if options.trigger:
        doc["trigger_word"] = options.trigger
    doc["datasets"] = datasets
    body = yaml.dump(doc, Dumper=_no_alias_dumper(), sort_keys=False, allow_unicode=True, default_flow_style=None)
    return (
        "# sushitui export for ai-toolkit: put trigger_word and datasets under config.process[0]\n"
        "# of your training config (ai-toolkit reads one folder per dataset entry).\n" + body
    )


def _no_alias_dumper():
    import yaml

    class NoAliasDumper(yaml.SafeDumper):
        # each dataset entry gets its own literal list, not a YAML anchor (&id001)
        def ignore_aliases(self, data):
            return True

    return NoAliasDumper


def _header(options: ExportOptions) -> str:
    lines = ["# sushitui export: pass to sd-scripts with --dataset_config"]
    if options.trigger:
        lines.append(f"# trigger word first in every caption: {options.trigger!r} (kept in place by keep_tokens)")
    return "\n".join(lines) + "\n"
