"""Non-destructive crops in exports: an item with a crop (``sushitui crop``, item detail's
crop frame) is exported as a new, cropped image; the original file is never touched and
its captions are unchanged. Related images of a group item (source, control, mask) of
the same size get the same rectangle, so pairs stay aligned.

The exporter places images through its ``OutputTree``; ``cropping_tree`` wraps it so
that the images of cropped items are written cropped instead of linked (counted as
copies), and every other image is placed as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from sushitui.dataset.paths import UnsafePathError, to_abs

JPEG_QUALITY = 95


def _key(path: str | os.PathLike) -> str:
    return os.path.normpath(os.fspath(path))


Crop = tuple[int, int, int, int]


def crops_by_source(root: Path, items: Sequence) -> dict[str, tuple[Crop, tuple[int, int] | None]]:
    """Absolute source path -> (crop, size of the item's main image), for the cropped
    items among ``items`` (rows with ``id``, ``image_path``, ``related_json``, ``width``,
    ``height``)."""
    from sushitui.dataset.marks import marks_of

    marked = marks_of([i.id for i in items])
    out: dict[str, tuple[Crop, tuple[int, int] | None]] = {}
    for item in items:
        m = marked.get(item.id)
        if m is None or m.crop is None or not item.image_path:
            continue
        size = (item.width, item.height) if item.width and item.height else None
        rels = [item.image_path] + list((json.loads(item.related_json) if item.related_json else {}).values())
        for rel in rels:
            try:
                out[_key(to_abs(root, rel))] = (m.crop, size)
            except UnsafePathError:
                continue
    return out


def write_cropped(source: str | os.PathLike, dest: str | os.PathLike, crop: tuple[int, int, int, int]) -> None:
    """The rectangle of ``source`` as a new file at ``dest``, in the format its
    extension names (PNG and WebP losslessly, JPEG at quality 95). A rectangle that
    reaches past the image (an image replaced by a smaller one since) is clipped."""
    from PIL import Image, ImageOps

    x, y, w, h = crop
    with Image.open(source) as opened:
        img = ImageOps.exif_transpose(opened)  # the crop was drawn on the upright picture
        box = (max(0, x), max(0, y), min(img.width, x + w), min(img.height, y + h))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise OSError(f"the crop {x},{y},{w},{h} lies outside the image ({img.width}×{img.height})")
        out = img.crop(box)
        ext = os.path.splitext(os.fspath(dest))[1].lower()
        if ext in (".jpg", ".jpeg"):
            if out.mode not in ("RGB", "L"):
                out = out.convert("RGB")
            out.save(dest, "JPEG", quality=JPEG_QUALITY, subsampling=0)
        elif ext == ".webp":
            out.save(dest, "WEBP", lossless=True)
        else:
            out.save(dest, "PNG")


class CroppingTree:
    """An ``OutputTree`` whose ``place_image`` crops the images of cropped items."""

    def __init__(self, tree, crops: dict[str, tuple[Crop, tuple[int, int] | None]]):
        self._tree = tree
        self._crops = crops
        self.cropped = 0

    def __getattr__(self, name):
        return getattr(self._tree, name)

    def place_image(self, source, folder, name) -> str:
        found = self._crops.get(_key(source))
        if found is None or not _same_size(source, found[1]):
            return self._tree.place_image(source, folder, name)
        write_cropped(source, self._tree.target(folder, name), found[0])
        self.cropped += 1
        return "copy"


def _same_size(source, size: tuple[int, int] | None) -> bool:
    """A related image (control, mask) is cropped only when it is the main image's size:
    the rectangle means nothing on a picture of another size."""
    if size is None:
        return True
    from PIL import Image

    try:
        with Image.open(source) as img:  # reads the header only
            return img.size == size or img.size == size[::-1]
    except OSError:
        return True  # write_cropped reports it


def cropping_tree(tree, root: Path, items: Sequence):
    """``tree`` itself when no item is cropped, else a CroppingTree over it."""
    crops = crops_by_source(root, items)
    return CroppingTree(tree, crops) if crops else tree
