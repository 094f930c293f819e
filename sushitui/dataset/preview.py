"""Large previews for the item detail and quick tagging screens (IT-1, QT-1, QT-4).

One image is shown big, so it is decoded at up to ``PREVIEW_BOX`` (JPEG ``draft()``
lets libjpeg decode at a reduced scale, ``thumbnail()`` finishes), off the UI thread,
and kept in a small LRU so that the image prefetched while the user looks at the
current one is shown at once. Decompression bombs are refused from the header, broken
files give a ``Preview`` with a plain reason instead of raising. No Textual here.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

PREVIEW_BOX = (1024, 1024)
CACHE_ITEMS = 12


@dataclass(frozen=True)
class Preview:
    image: Image.Image | None
    reason: str | None = None
    width: int | None = None
    height: int | None = None


def decode_preview(path: str | os.PathLike, box: tuple[int, int] = PREVIEW_BOX) -> Preview:
    """Decode ``path`` to fit ``box``; never raises for bad files."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            src = Image.open(path)
    except Image.DecompressionBombError:
        return Preview(None, "image too large to preview (decompression-bomb limit)")
    except FileNotFoundError:
        return Preview(None, "image file not found (moved or deleted?) — reindex the dataset")
    except PermissionError:
        return Preview(None, "permission denied reading the image")
    except (UnidentifiedImageError, IsADirectoryError):
        return Preview(None, "not a readable image (corrupt, empty or wrong extension)")
    except (OSError, ValueError, SyntaxError) as exc:
        return Preview(None, f"cannot open image: {exc}")
    with src:
        width, height = src.size
        limit = Image.MAX_IMAGE_PIXELS
        if width <= 0 or height <= 0:
            return Preview(None, "image has no pixels", width, height)
        if limit is not None and width * height > limit:
            return Preview(None, f"image too large to preview ({width}×{height} pixels)", width, height)
        try:
            if src.format == "JPEG":
                src.draft("RGB", box)
            img = src.copy() if src.mode in ("RGB", "RGBA") else src.convert("RGBA" if "A" in src.getbands() or "transparency" in src.info else "RGB")
            img = ImageOps.exif_transpose(img) or img
            img.thumbnail(box, Image.Resampling.BILINEAR, reducing_gap=2.0)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            reason = str(exc) or type(exc).__name__
            if "truncated" in reason:
                reason = "image file is truncated (incomplete download or copy?)"
            return Preview(None, f"cannot decode image: {reason}", width, height)
        except MemoryError:
            return Preview(None, "not enough memory to decode this image", width, height)
    return Preview(img, None, width, height)


class PreviewCache:
    """Thread-safe LRU of decoded previews keyed by path and a stamp (e.g. mtime)."""

    def __init__(self, box: tuple[int, int] = PREVIEW_BOX, max_items: int = CACHE_ITEMS) -> None:
        self.box = box
        self.max_items = max_items
        self._items: OrderedDict[str, Preview] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}

    @staticmethod
    def key(path: str | os.PathLike, stamp: object = None) -> str:
        return f"{os.fspath(path)}\x00{stamp}"

    def get(self, path: str | os.PathLike, stamp: object = None) -> Preview | None:
        """Cached preview or None; never touches the disk (safe on the UI thread)."""
        k = self.key(path, stamp)
        with self._lock:
            p = self._items.get(k)
            if p is not None:
                self._items.move_to_end(k)
            return p

    def load(self, path: str | os.PathLike, stamp: object = None) -> Preview:
        """Cached or decoded now (worker threads only). Two threads asking for the same
        image decode it once: the second waits for the first."""
        k = self.key(path, stamp)
        while True:
            with self._lock:
                p = self._items.get(k)
                if p is not None:
                    self._items.move_to_end(k)
                    return p
                event = self._inflight.get(k)
                if event is None:
                    event = self._inflight[k] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                event.wait(30)
                continue
            try:
                p = decode_preview(path, self.box)
                with self._lock:
                    self._items[k] = p
                    while len(self._items) > self.max_items:
                        self._items.popitem(last=False)
                return p
            finally:
                with self._lock:
                    self._inflight.pop(k, None)
                event.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_SHARED: PreviewCache | None = None


def shared_preview_cache() -> PreviewCache:
    """The one cache both screens use, so a prefetched image is instant in either."""
    global _SHARED
    if _SHARED is None:
        _SHARED = PreviewCache()
    return _SHARED
