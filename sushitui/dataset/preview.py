"""Large previews for the item detail and quick tagging screens (IT-1, QT-1, QT-4).

One image is shown big, so it is decoded at up to ``PREVIEW_BOX``, off the UI thread,
and kept in a small LRU so that the image prefetched while the user looks at the
current one is shown at once. The decoder is the browser's (``thumbnails.decode_thumbnail``
with a bigger box): JPEG decoded at a reduced scale by libjpeg, other formats within a
pixel budget and reduced a band at a time, big decodes one at a time; an image over the
budget gets "too large to preview (W×H); open it in an image viewer" instead of 350 MB
of pixels. Broken files give a ``Preview`` with a plain reason instead of raising.
The LRU is bounded by the bytes of its pixels as well as by count. No Textual here.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from sushitui.dataset.thumbnails import decode_thumbnail

# 1024 px covers a full-screen pane with Kitty/Sixel graphics at ~10×20 px per cell;
# half-cell text rendering shows far fewer pixels and downsizes per render.
PREVIEW_BOX = (1024, 1024)
CACHE_ITEMS = 12
CACHE_BYTES = 48 * 1024 * 1024  # twelve 1024×1024 RGBA previews


@dataclass(frozen=True)
class Preview:
    image: Image.Image | None
    reason: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def nbytes(self) -> int:
        """What the decoded pixels take (Pillow keeps RGB as 4 bytes per pixel)."""
        if self.image is None:
            return 64
        return self.image.width * self.image.height * 4 + 64


def decode_preview(path: str | os.PathLike, box: tuple[int, int] = PREVIEW_BOX) -> Preview:
    """Decode ``path`` to fit ``box``; never raises for bad files."""
    t = decode_thumbnail(path, box)
    return Preview(t.image, t.reason, t.width, t.height)


class PreviewCache:
    """Thread-safe LRU of decoded previews keyed by path and a stamp (e.g. mtime)."""

    def __init__(
        self, box: tuple[int, int] = PREVIEW_BOX, max_items: int = CACHE_ITEMS, max_bytes: int = CACHE_BYTES
    ) -> None:
        self.box = box
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Preview] = OrderedDict()
        self._bytes = 0
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
                    old = self._items.pop(k, None)
                    if old is not None:
                        self._bytes -= old.nbytes
                    self._items[k] = p
                    self._bytes += p.nbytes
                    # the newest stays even when it alone is over the budget: it is on screen
                    while len(self._items) > 1 and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                        self._bytes -= self._items.popitem(last=False)[1].nbytes
                return p
            finally:
                with self._lock:
                    self._inflight.pop(k, None)
                event.set()

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


_SHARED: PreviewCache | None = None


def shared_preview_cache() -> PreviewCache:
    """The one cache both screens use, so a prefetched image is instant in either."""
    global _SHARED
    if _SHARED is None:
        _SHARED = PreviewCache()
    return _SHARED
