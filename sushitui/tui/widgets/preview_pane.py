"""The large image of the item detail and quick tagging screens (IT-1, QT-1, QT-4).

``show(path, stamp)`` puts an image up: at once when it was prefetched, otherwise after
a worker decoded it (a "loading…" line meanwhile). ``prefetch(path, stamp)`` is called
from a worker thread for the images the user will probably look at next: it decodes
them and, when images are drawn with text cells, also renders the cells for the pane's
current size, so that showing them later costs the UI thread nothing
(see ``cell_image``). With Kitty/Sixel graphics textual-image's widget draws instead.
Broken or too-large images show their reason in place of the picture.
"""

from __future__ import annotations

import os
import threading
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.widgets import Static
from textual_image.widget import Image as ImageWidget

from sushitui.dataset.preview import Preview, shared_preview_cache
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.cell_image import CellImage, prerender, text_mode

MAX_RENDERED = 8


class PreviewPane(Container):
    DEFAULT_CSS = """
    PreviewPane { height: 1fr; align: center middle; }
    PreviewPane > .pane-image { width: auto; height: auto; }
    PreviewPane > .pane-message { width: 100%; height: auto; text-align: center; color: $text-muted; }
    """

    class Ready(Message):
        def __init__(self, key: str, preview: Preview, lines, box) -> None:
            super().__init__()
            self.key = key
            self.preview = preview
            self.lines = lines
            self.box = box

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.box: tuple[int, int] | None = None  # content size in cells once laid out
        self.shown_key: str | None = None  # the image wanted on screen
        self.shown_at = 0.0  # perf_counter when a picture (or its reason) went up
        self._want: tuple[str, object] | None = None
        self._lines: dict[str, list] = {}
        self._lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield ImageWidget(None, classes="pane-image")
        yield CellImage(classes="pane-image")
        yield Static("", classes="pane-message")

    def on_mount(self) -> None:
        self.query_one(ImageWidget).display = False
        self.query_one(CellImage).display = False
        self.call_after_refresh(self._measure)

    def on_resize(self, event) -> None:
        self.call_after_refresh(self._measure)

    def _measure(self) -> None:
        size = self.content_region.size
        box = (size.width, size.height) if size.width > 0 and size.height > 0 else None
        if box != self.box:
            self.box = box
            with self._lock:
                self._lines.clear()
            if self._want is not None:
                self.show(*self._want)

    # -- worker-thread side ---------------------------------------------------------------

    def _render_key(self, key: str, box) -> str:
        return f"{key}|{box}"

    def _prepare(self, path: str | os.PathLike, stamp) -> tuple[str, Preview, list | None, tuple[int, int] | None]:
        cache = shared_preview_cache()
        key = cache.key(path, stamp)
        preview = cache.load(path, stamp)
        box = self.box
        lines = None
        if box is not None and preview.image is not None and text_mode():
            rkey = self._render_key(key, box)
            with self._lock:
                lines = self._lines.get(rkey)
            if lines is None:
                lines = prerender(preview.image, *box)
                with self._lock:
                    self._lines[rkey] = lines
                    while len(self._lines) > MAX_RENDERED:
                        self._lines.pop(next(iter(self._lines)))
        return key, preview, lines, box

    def prefetch(self, path: str | os.PathLike, stamp=None) -> None:
        """Decode (and pre-render) an image the user will probably want next. Call it
        from a worker thread; it never raises for bad files."""
        self._prepare(path, stamp)

    @work(thread=True, exclusive=True, group="preview-pane", exit_on_error=False)
    def _load_worker(self, path: str, stamp) -> None:
        self.post_message(self.Ready(*self._prepare(path, stamp)))

    # -- UI side --------------------------------------------------------------------------

    def show(self, path: str | os.PathLike, stamp=None) -> None:
        self._want = (path, stamp)
        cache = shared_preview_cache()
        key = cache.key(path, stamp)
        self.shown_key = key
        preview = cache.get(path, stamp)
        with self._lock:
            lines = self._lines.get(self._render_key(key, self.box))
        if preview is not None and (lines is not None or preview.image is None or not text_mode() or self.box is None):
            self._put(preview, lines)
        else:
            self._message("loading…")
            self._load_worker(os.fspath(path), stamp)

    def on_preview_pane_ready(self, message: "PreviewPane.Ready") -> None:
        message.stop()
        if message.key == self.shown_key and message.box == self.box:
            self._put(message.preview, message.lines)

    def _put(self, preview: Preview, lines) -> None:
        image = self.query_one(ImageWidget)
        cells = self.query_one(CellImage)
        if preview.image is None:
            self._message(preview.reason or "no preview")
            self.shown_at = time.perf_counter()
            return
        if lines is not None:
            cells.set_lines(lines)
            cells.display = True
            image.display = False
        else:
            image.image = preview.image
            image.display = True
            cells.display = False
        self.query_one(".pane-message").display = False
        self.shown_at = time.perf_counter()

    def show_message(self, text: str) -> None:
        """A line in place of the picture (no image, unsafe path)."""
        self._want = None
        self.shown_key = None
        self._message(text)
        self.shown_at = time.perf_counter()

    def _message(self, text: str) -> None:
        self.query_one(ImageWidget).display = False
        self.query_one(CellImage).display = False
        message = self.query_one(".pane-message", Static)
        message.update(Text(for_terminal(text)))
        message.display = True
