"""A large image drawn with text cells, rendered off the UI thread (QT-4).

textual-image's widget builds a new renderable on every paint, and for the text-cell
modes (half-cell blocks in tmux and plain terminals, Unicode in pipes and tests) turning
a picture into ~2,000 styled cells costs 100–300 ms of UI-thread time. Here that work
happens once, in a worker, while the user still looks at the previous image:
``prerender`` returns the finished lines, and ``CellImage`` only hands them out.

With a graphics protocol (Kitty TGP, Sixel) ``text_mode()`` is False and the screens
use textual-image's widget as before.
"""

from __future__ import annotations

import io

from PIL import Image
from rich.console import Console
from rich.segment import Segment
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget


def _renderable_class():
    from textual_image.renderable import halfcell, unicode
    from textual_image.widget import Image as AutoImage

    cls = getattr(AutoImage, "_Renderable", None)
    return cls if cls in (halfcell.Image, unicode.Image) else None


def text_mode() -> bool:
    """True when images are drawn with text cells (no graphics protocol)."""
    return _renderable_class() is not None


def fit_cells(width: int, height: int, cols: int, rows: int) -> tuple[int, int]:
    """Cells for an image of width×height inside cols×rows; a cell is 1×2 'pixels'."""
    if width <= 0 or height <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / width, (rows * 2) / height)
    return max(1, int(width * scale)), max(1, int(height * scale / 2))


def prerender(image: Image.Image, cols: int, rows: int) -> list[Strip] | None:
    """The image as lines of styled cells fitting cols×rows (call from a worker)."""
    cls = _renderable_class()
    if cls is None or cols <= 0 or rows <= 0:
        return None
    w, h = fit_cells(image.width, image.height, cols, rows)
    small = image.copy()
    small.thumbnail((max(1, w), max(1, h * 2)))
    console = Console(width=w, file=io.StringIO(), force_terminal=True, color_system="truecolor", legacy_windows=False)
    lines = console.render_lines(cls(small, w, h), console.options.update(width=w), pad=False)
    return [Strip(line, cell_length=Segment.get_line_length(line)) for line in lines]


class CellImage(Widget):
    """Shows pre-rendered lines from ``prerender``; costs nothing to paint."""

    DEFAULT_CSS = """
    CellImage { width: auto; height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.lines: list[Strip] = []

    def set_lines(self, lines: list[Strip]) -> None:
        self.lines = lines
        self.refresh(layout=True)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return max((s.cell_length for s in self.lines), default=0)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines)

    def render_line(self, y: int) -> Strip:
        if 0 <= y < len(self.lines):
            return self.lines[y]
        return Strip.blank(self.size.width)
