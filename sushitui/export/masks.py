"""Related images of group items (masks, control images) for the export formats.

ai-toolkit: ``control/<folder>`` and ``mask/<folder>`` beside ``images/<folder>``.

kohya (``txt``, ``kohya-toml``): sd-scripts' masked loss (``--masked_loss``) reads
masks from a subset's ``conditioning_data_dir``. Its ControlNetDataset pairs each image
with ``glob_images(conditioning_data_dir, <image stem>)`` (library/train_util.py): same
file stem, any of its image extensions (.png .jpg .jpeg .webp .bmp, either case); an
image without one stops training ("missing conditioning data"), an extra file in the
folder is an error or a warning depending on the version; with ``enable_bucket`` the
mask must have the image's pixel size. Masks therefore go into
``OUTDIR/masks/<image folder>/<image stem>.<mask ext>``, one per exported image:

- ``masks`` has no ``<N>_`` prefix, so sd-scripts' ``train_data_dir`` loader
  (``generate_dreambooth_subsets_config_by_subdirs``) skips it ("ignore directory
  without repeats") and the ``txt`` convention ``train_data_dir = OUTDIR`` still holds;
  the name gets ``_2``, ``_3`` when a kohya-toml image folder is called ``masks``.
- sd-scripts' config validator takes a dataset as ControlNet-style only when *every*
  subset has ``conditioning_data_dir`` (and then allows no ``class_tokens``), so masked
  subsets get their own ``[[datasets]]`` block (formats.kohya_dreambooth_toml).
- kohya-toml: an item without a usable mask in a folder whose other items have one goes
  to a sibling folder ``<folder>_unmasked`` (a plain subset, trained without masked
  loss) and is reported. ``txt`` has no config; such items stay in place, reported.
- kohya-json: sd-scripts' fine-tuning subsets (``metadata_file``) cannot have a
  ``conditioning_data_dir`` (the validator accepts it only with ``image_dir`` subsets
  read through caption files), so masks are not exported and that is reported once.
"""

from __future__ import annotations

import os
from typing import Iterable

from sushitui.dataset.paths import UnsafePathError, to_abs
from sushitui.export.formats import FolderInfo, sibling_folder

MASK_ROOT = "masks"
UNMASKED_SUFFIX = "_unmasked"
# sd-scripts' IMAGE_EXTENSIONS without the optional plugins (avif, jxl)
SD_SCRIPTS_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def related_rel(item, suffixes: Iterable[str]) -> tuple[str, str] | None:
    """(suffix, dataset-relative path) of the item's first related image with one of
    ``suffixes``, or None."""
    if not item.related_json:
        return None
    related = item.related_images
    for suffix in suffixes:
        rel = related.get(suffix)
        if rel and rel != item.image_path:
            return suffix, rel
    return None


def related_source(root, suffix: str, rel: str) -> tuple[str | None, str | None]:
    """(absolute path, None) of a related image, or (None, why it is unusable)."""
    try:
        src = to_abs(root, rel)
    except UnsafePathError:
        return None, "related image path outside the dataset folder; skipped"
    if not os.path.isfile(src):
        return None, f"{suffix} image missing on disk; skipped"
    return str(src), None


def plan_kohya_masks(masked: Iterable[FolderInfo], all_folders: Iterable[FolderInfo]) -> None:
    """Give each folder holding masks its mask folder under one masks root that is no
    image folder's first component."""
    taken = {f.folder[0].casefold() for f in all_folders if f.folder}
    name, n = MASK_ROOT, 1
    while name.casefold() in taken:
        n += 1
        name = f"{MASK_ROOT}_{n}"
    for info in masked:
        info.mask_folder = (name, *info.folder)


def unmasked_folder(info: FolderInfo, folders: dict[str, FolderInfo]) -> FolderInfo:
    """kohya-toml: the plain sibling folder for items of a masked folder that have no
    usable mask (a new folder name, so no real folder is merged into it)."""
    return sibling_folder(
        info,
        folders,
        "unmasked",
        UNMASKED_SUFFIX,
        lambda path: FolderInfo(path, info.repeats, info.class_tokens, is_reg=info.is_reg),
    )


def mask_unusable(src: str, rel: str, width: int | None, height: int | None) -> str | None:
    """Why sd-scripts could not use this mask for an image of ``width`` x ``height``
    (None when it can)."""
    ext = os.path.splitext(rel)[1].lower()
    if ext not in SD_SCRIPTS_IMAGE_EXTS:
        return f"sd-scripts does not read {ext or 'extension-less'} mask images ({', '.join(SD_SCRIPTS_IMAGE_EXTS)})"
    if width and height:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(src) as im:
                size = im.size
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return f"the mask image cannot be read ({exc})"
        if size != (width, height):
            return f"the mask is {size[0]}x{size[1]}, the image {width}x{height} (sd-scripts needs the same size)"
    return None
