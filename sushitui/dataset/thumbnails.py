"""Small preview images for the item browser (BR-2), decoded off the UI thread.

A thumbnail is decoded once, small and early (JPEG ``draft()`` makes libjpeg decode at
1/2, 1/4 or 1/8 scale, then ``thumbnail()`` finishes the downscale), and kept in a
size-bounded LRU cache so that memory stays flat however far the user pages. Broken
or hostile files never raise: they give a ``Thumbnail`` with no image and a plain
``reason`` that the grid shows in place of the picture.

Memory: Pillow decodes PNG, WebP, TIFF and the like only whole, at 4 bytes per pixel
(RGB is stored as RGBX): a 260 KB 9,400×9,400 PNG is 353 MB decoded, and four of them
decoded at once took item detail to 3.3 GB. So the header is read first and

- a JPEG is decoded at the smallest libjpeg scale (1/2 … 1/8) that still covers the box
  (``draft``);
- an image whose decoded size exceeds ``MAX_DECODE_PIXELS`` is not decoded: the reason
  says "too large to preview (W×H); open it in an image viewer". 36 megapixels covers
  8K frames (33 MP), 6,000×6,000 upscales and camera-sized PNG/TIFF exports (JPEGs of
  any size preview at a reduced scale); at 4 bytes per pixel one such decode is 144 MB,
  and item detail showing four of them peaks at ~250 MB (measured; 40 MP gave ~267 MB,
  too close to the 300 MB goal). WebP and AVIF, which Pillow decodes into a buffer
  first, count several times;
- what is decoded is shrunk with ``Image.reduce`` a band of rows at a time to just
  above the box (whole-image ``reduce``/``resize`` of RGBA first makes a premultiplied
  full-size copy), and the full-size pixels are released before the final resize;
- decodes bigger than ``BIG_DECODE_BYTES`` run one at a time in one thread (the
  browser's thumbnail threads and the detail screens' prefetch threads hand them over),
  so their peaks never add up, and their freed pixels are given back to the system.

Decompression bombs (``PIL.Image.MAX_IMAGE_PIXELS``) are refused from the header too.

This module knows nothing about Textual; the browser calls ``load``/``load_many`` from a
worker thread and ``get`` (cache only, never touches the disk) from the UI thread.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, cast

from PIL import Image, ImageFile, UnidentifiedImageError

log = logging.getLogger(__name__)

# Thumbnails are made for a grid card of roughly 30×12 cells; 256 px covers that even
# for Kitty/Sixel at 10×20 px cells, and halfcell rendering downsizes further per render.
DEFAULT_BOX = (256, 256)
DEFAULT_BUDGET_BYTES = 96 * 1024 * 1024
_OPEN_LOCK = threading.Lock()

MAX_DECODE_PIXELS = 36_000_000  # decoded pixels per preview (see the module docstring)
BIG_DECODE_BYTES = 32 * 1024 * 1024  # decodes above this take turns
_BIG_DECODER: ThreadPoolExecutor | None = None
_STRIP_BYTES = 4 * 1024 * 1024  # rows reduced at a time
# Pillow decodes these into a buffer first (WebP: RGBA, then copied; measured 15 bytes
# per pixel at the peak, against 4 for PNG), so they count several times
_DECODE_COST = {"WEBP": 4, "AVIF": 2}


@dataclass(frozen=True)
class Thumbnail:
    """A decoded preview, or the reason there is none."""

    image: Image.Image | None
    reason: str | None = None
    width: int | None = None  # the original image's size, when the header could be read
    height: int | None = None

    @property
    def ok(self) -> bool:
        return self.image is not None

    @property
    def nbytes(self) -> int:
        if self.image is None:
            return 64
        return self.image.width * self.image.height * len(self.image.getbands()) + 64


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def _flatten_mode(img: Image.Image, extrema: tuple | None = None) -> Image.Image:
    """RGB or RGBA, whatever came in (P with transparency, LA, I;16, CMYK, 1, F...).
    ``extrema``: the whole image's (low, high) when ``img`` is a band of it."""
    if img.mode in ("RGB", "RGBA"):
        return img
    if img.mode in _WIDE_MODES:
        # 16-bit and float images: scale to 8 bit instead of clipping to white.
        img = img.convert("I") if img.mode != "I" else img
        lo, hi = extrema if extrema is not None else cast("tuple[float, float]", img.getextrema())  # one band
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        return img.point(lambda v: (v - lo) * scale).convert("L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("LA", "PA", "La"):
        return img.convert("RGBA")
    return img.convert("RGB")


# EXIF orientation → the transpose that shows the picture upright (as cameras meant it)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises any type on broken EXIF; it never stops a preview
        log.debug("EXIF orientation unreadable", exc_info=True)
        return 1


def _plain_reason(what: str, exc: BaseException) -> str:
    reason = str(exc) or type(exc).__name__
    if "truncated" in reason.lower():
        reason = "image file is truncated (incomplete download or copy?)"
    return f"{what}: {reason}"


def too_large_reason(width: int, height: int) -> str:
    return f"too large to preview ({width}×{height}); open it in an image viewer"


def _reduce_in_bands(img: Image.Image, factor: int, extrema: tuple | None) -> Image.Image:
    """``img`` made RGB/RGBA and reduced ``factor`` times, a band of rows at a time: the
    extra memory is one band, not a full-size copy (``reduce`` and ``convert`` of the
    whole image would make one)."""
    width, height = img.size
    rows = max(factor, _STRIP_BYTES // max(1, width * 4) // factor * factor)
    out = None
    for top in range(0, height, rows):
        band = _flatten_mode(img.crop((0, top, width, min(height, top + rows))), extrema)
        small = band.reduce(factor)
        if out is None:
            out = Image.new(small.mode, (-(-width // factor), -(-height // factor)))
        out.paste(small, (0, top // factor))
    assert out is not None  # the image has at least one row
    return out


_malloc_trim: Any = None  # libc's malloc_trim; False where there is none


def _release_freed_memory() -> None:
    """Hand the freed pixels of a big decode back to the system. glibc keeps freed blocks
    in its heaps: after four big previews the app stayed at 2.9 GB. Measured with four
    40 MP previews taking turns: 40 MB resident afterwards with this, 490 MB without
    (and a higher peak, as other threads' heaps could not reuse what was freed)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to do
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def _decode_fitted(img: Image.Image, box: tuple[int, int]) -> Image.Image:
    """The opened (and drafted) image, decoded and made to fit ``box`` (RGB/RGBA, upright)."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    img.load()
    orientation = _orientation(img)  # after load: a PNG's EXIF may follow its pixels
    w, h = img.size
    # reduce (an area average, a good downscale filter) to just above the box, so that
    # the final resize works on a small image: from 6,000 px to 1,024, a 1,200 px
    # intermediate of 6 MB instead of the 36 MB that a reduce to twice the box keeps
    factor = int(max(w / box[0], h / box[1]))
    if factor >= 2:
        extrema = img.getextrema() if img.mode in _WIDE_MODES else None
        small = _reduce_in_bands(img, factor, extrema)
        img.close()  # the full-size pixels go now, not when the caller lets go of them
    else:
        small = _flatten_mode(img)
    small.thumbnail(box, Image.Resampling.BILINEAR, reducing_gap=2.0)
    if orientation in _TRANSPOSE:
        small = small.transpose(_TRANSPOSE[orientation])
    return small


def _big_decoder() -> ThreadPoolExecutor:
    """The one thread that decodes big images: they take turns, so their peaks never
    add up, and their memory is always taken from and given back to one heap (glibc
    gives each thread its own; pixels freed in one are not reused by another)."""
    global _BIG_DECODER
    with _OPEN_LOCK:
        if _BIG_DECODER is None:
            _BIG_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="big-decode")
        return _BIG_DECODER


def _decode_big(img: Image.Image, box: tuple[int, int]) -> Image.Image:
    try:
        small = _decode_fitted(img, box)
        return small.copy() if small is img else small
    finally:
        img.close()  # also on failure: the full-size pixels go before the next big decode
        _release_freed_memory()


def decode_thumbnail(path: str | os.PathLike, box: tuple[int, int] = DEFAULT_BOX) -> Thumbnail:
    """Decode ``path`` into an image that fits ``box``; never raises for bad files.
    Also the decoder of the large previews (``sushitui.dataset.preview``)."""
    img: Image.Image  # the opened file, then its decoded pixels
    try:
        # Opening reads only the header. We check the size ourselves below; the warning
        # would only reach stderr (catch_warnings is process-global, hence the lock).
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = opened = Image.open(path)
    except Image.DecompressionBombError:
        return Thumbnail(None, "image too large to preview (decompression-bomb limit); open it in an image viewer")
    except FileNotFoundError:
        return Thumbnail(None, "file not found (deleted or moved?) — reindex the dataset")
    except PermissionError:
        return Thumbnail(None, "permission denied reading the image")
    except IsADirectoryError:
        return Thumbnail(None, "path is a directory, not an image")
    except UnidentifiedImageError:
        return Thumbnail(None, "not a readable image (corrupt, empty or wrong extension)")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return Thumbnail(None, _plain_reason("cannot open image", exc))
    big = False
    try:
        width, height = img.size
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and width * height > limit:
            return Thumbnail(None, too_large_reason(width, height), width, height)
        if width <= 0 or height <= 0:
            return Thumbnail(None, "image has no pixels", width, height)
        try:
            if img.format == "JPEG":
                # libjpeg will decode at the smallest scale (1/2 … 1/8) that covers the box
                img.draft("RGB", (box[0], box[1]))
            decoded = img.size[0] * img.size[1] * _DECODE_COST.get(img.format or "", 1)
            if decoded > MAX_DECODE_PIXELS:
                return Thumbnail(None, too_large_reason(width, height), width, height)
            big = decoded * 4 > BIG_DECODE_BYTES
            if big:
                img = _big_decoder().submit(_decode_big, img, box).result()
            else:
                img = _decode_fitted(img, box)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            return Thumbnail(None, _plain_reason("cannot decode image", exc), width, height)
        except MemoryError:
            return Thumbnail(None, "not enough memory to decode this image", width, height)
        if img is opened:
            img = img.copy()  # detach the pixels from the file we close below
        return Thumbnail(img, None, width, height)
    finally:
        try:
            opened.close()
        except Exception:  # noqa: BLE001 - closing a half-broken image must not raise (any decoder type)
            log.debug("closing an image failed", exc_info=True)


# Pillow refuses truncated files by default, which is what we want (they are reported);
# make sure nobody flipped it globally in this process.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ThumbnailCache:
    """Thread-safe LRU of thumbnails bounded by an estimate of their pixel bytes."""

    def __init__(self, box: tuple[int, int] = DEFAULT_BOX, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.box = box
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[str, Thumbnail] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.hits = 0
        self.misses = 0

    # -- cache ----------------------------------------------------------------------
    @staticmethod
    def key(path: str | os.PathLike, stamp: object = None) -> str:
        """Cache key: the path plus a stamp (e.g. the indexed mtime) so replaced images refresh."""
        return f"{os.fspath(path)}\x00{stamp}"

    def get(self, path: str | os.PathLike, stamp: object = None) -> Thumbnail | None:
        """The cached thumbnail or None. Never touches the disk (safe on the UI thread)."""
        k = self.key(path, stamp)
        with self._lock:
            thumb = self._items.get(k)
            if thumb is not None:
                self._items.move_to_end(k)
                self.hits += 1
            return thumb

    def _put(self, k: str, thumb: Thumbnail) -> None:
        with self._lock:
            old = self._items.pop(k, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[k] = thumb
            self._bytes += thumb.nbytes
            while self._bytes > self.budget_bytes and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    # -- decoding (worker threads only) ---------------------------------------------
    def load(self, path: str | os.PathLike, stamp: object = None) -> Thumbnail:
        """Cached thumbnail, decoding it on a miss. Call from a worker thread."""
        cached = self.get(path, stamp)
        if cached is not None:
            return cached
        self.misses += 1
        thumb = decode_thumbnail(path, self.box)
        self._put(self.key(path, stamp), thumb)
        return thumb

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            # Pillow releases the GIL while decoding, so two threads use both cores.
            self._pool = ThreadPoolExecutor(
                max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="thumbs"
            )
        return self._pool

    def load_many(
        self,
        entries: Sequence[tuple[str | os.PathLike, object]],
        cancel=None,
    ) -> list[Thumbnail | None]:
        """Decode many (path, stamp) entries in parallel; None where cancelled before decoding."""
        results: list[Thumbnail | None] = [self.get(p, s) for p, s in entries]
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results
        if len(todo) == 1:
            i = todo[0]
            results[i] = self.load(*entries[i])
            return results

        def one(i: int) -> tuple[int, Thumbnail | None]:
            if cancel is not None and getattr(cancel, "cancelled", False):
                return i, None
            return i, self.load(*entries[i])

        for i, thumb in self._executor().map(one, todo):
            results[i] = thumb
        return results

    def prefetch(self, entries: Iterable[tuple[str | os.PathLike, object]]) -> None:
        """Start decoding entries in the background (e.g. the next page) and return at once."""
        pool = self._executor()
        for path, stamp in entries:
            if self.get(path, stamp) is None:
                pool.submit(self.load, path, stamp)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def image_abs_path(root: str | os.PathLike, rel: str | None) -> Path | None:
    """Absolute path of an item's dataset-relative image, None when it has none or escapes root."""
    if not rel:
        return None
    from sushitui.dataset.paths import to_abs

    try:
        return Path(to_abs(root, rel))
    except ValueError:
        return None
