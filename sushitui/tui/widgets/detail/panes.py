"""The item detail's three panes side by side: image, captions, metadata."""

from __future__ import annotations

from textual.containers import Horizontal
from textual.widget import Widget

NARROW_WIDTH = 110


class DetailPanes(Horizontal):
    """Image, caption and metadata panes. The metadata is hidden below NARROW_WIDTH
    columns unless ``m`` asked for it (``toggle_meta``)."""

    DEFAULT_CSS = "DetailPanes { height: 1fr; }"

    def __init__(self, image: Widget, captions: Widget, meta: Widget, **kwargs) -> None:
        super().__init__(image, captions, meta, **kwargs)
        self._image, self._meta = image, meta
        self._meta_forced: bool | None = None

    def on_mount(self) -> None:
        self._apply_width(self.app.size.width)

    def on_resize(self) -> None:
        self._apply_width(self.app.size.width)

    def toggle_meta(self) -> None:
        self._meta_forced = self._meta.has_class("-hidden")
        self._apply_width(self.app.size.width)

    def _apply_width(self, width: int) -> None:
        show = self._meta_forced if self._meta_forced is not None else width >= NARROW_WIDTH
        self._meta.set_class(not show, "-hidden")
        # Three panes need ~88 columns (their minimum widths): below NARROW_WIDTH the
        # metadata takes the image's place, or at 80x24 `m` pushed it off screen and
        # scrolled the captions away.
        self._image.set_class(show and width < NARROW_WIDTH, "-hidden")
