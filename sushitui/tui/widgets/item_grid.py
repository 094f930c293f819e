"""The item grid of the browser (BR-1, BR-2): one Line-API widget that draws all cards.

Why not one widget per card: measured here, a pool of 20 card widgets (container,
image widget, labels) cost 75 ms of UI-thread CPU per page move without images and
150–230 ms with them (Textual re-lays-out and repaints every widget); 49 cards at
200×60 cost 370–570 ms. Drawing the cards as strips in ``render_line`` costs a few ms.

Images come from textual-image renderables (the protocol was chosen when
``textual_image.renderable`` was imported before the app started, see ``tui.app.run``):

- half-cell blocks (any true-colour terminal, plain tmux) and unicode shades (no TTY,
  tests): rendered to strips in the worker thread (``thumbnail_strips``), so the UI
  thread only pastes finished strips;
- Kitty graphics (TGP): the renderable transmits the image once and yields unicode
  placeholder cells, which compose into strips like text; rendered on the UI thread
  (it writes to the terminal) when the thumbnail arrives;
- Sixel terminals get half-cell previews in the grid: Sixel output cannot be composed
  into lines and flickers when paging (textual-image README).

``SUSHITUI_IMAGES=auto|tgp|halfcell|unicode|off`` overrides the choice.
The browser screen owns the data; the grid owns the cursor within the page.
"""

from __future__ import annotations

import logging
import os
import textwrap
from dataclasses import dataclass, field

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions
from rich.segment import Segment
from rich.style import Style
from textual.events import Click, Resize
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from sushitui.dataset.thumbnails import Thumbnail
from sushitui.sanitize import for_terminal

log = logging.getLogger(__name__)

CARD_MIN_WIDTH = 24
CARD_MIN_HEIGHT = 9
TAGS_SHOWN = 3

_ROUND = ("╭", "─", "╮", "│", "╰", "╯")
_HEAVY = ("┏", "━", "┓", "┃", "┗", "┛")


def image_mode() -> str:
    """``tgp``, ``halfcell``, ``unicode`` or ``off`` (see the module docstring)."""
    choice = os.environ.get("SUSHITUI_IMAGES", "auto").strip().lower()
    if choice in ("off", "none", "0"):
        return "off"
    if choice in ("tgp", "kitty"):
        return "tgp"
    if choice in ("halfcell", "unicode"):
        return choice
    import textual_image.renderable as tir

    if tir.Image is tir.TGPImage:
        return "tgp"
    if tir.Image is tir.UnicodeImage:
        return "unicode"
    return "halfcell"  # half-cell terminals and Sixel terminals


def _renderable_class(mode: str):
    import textual_image.renderable as tir

    return {"tgp": tir.TGPImage, "halfcell": tir.HalfcellImage, "unicode": tir.UnicodeImage}[mode]


_CONSOLE: Console | None = None


def _console() -> Console:
    global _CONSOLE
    if _CONSOLE is None:
        _CONSOLE = Console(width=200, height=100, color_system="truecolor", force_terminal=False, legacy_windows=False)
    return _CONSOLE


@dataclass
class ThumbStrips:
    """A thumbnail rendered for a box of cells: ``lines`` of equal width, centred later."""

    lines: list[Strip]
    width: int
    renderable: object = None  # kept for TGP so the terminal copy can be freed

    def cleanup(self) -> None:
        cleanup = getattr(self.renderable, "cleanup", None)
        if cleanup is not None:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - the image protocol's cleanup writes to a terminal that may be gone already
                log.debug("image cleanup failed", exc_info=True)


def halfcell_strips(image, box: tuple[int, int]) -> ThumbStrips:
    """Upper-half blocks, foreground = upper pixel, background = lower pixel: what
    textual-image's half-cell renderable draws, built straight from the bytes of one
    small resize (3× less CPU than going through the renderable and Rich colours)."""
    from PIL import Image as PILImage
    from rich.color import Color, ColorType
    from rich.color_triplet import ColorTriplet
    from textual_image._terminal import get_cell_size

    cell = get_cell_size()
    px_w, px_h = image.size
    # a half cell is cell.width × cell.height/2 pixels on screen
    aspect = (px_w / max(1, px_h)) * ((cell.height / 2) / max(1, cell.width))
    cols = min(box[0], max(1, round(2 * box[1] * aspect)))
    rows2 = max(2, min(2 * box[1], round(cols / aspect) if aspect else 2 * box[1]))
    rows2 += rows2 % 2
    rows2 = min(rows2, 2 * box[1])
    small = image.convert("RGB").resize((cols, rows2), PILImage.Resampling.BILINEAR)
    data = small.tobytes()
    colors: dict[bytes, Color] = {}

    def color(rgb: bytes) -> Color:
        c = colors.get(rgb)
        if c is None:
            c = colors[rgb] = Color(f"#{rgb.hex()}", ColorType.TRUECOLOR, triplet=ColorTriplet(rgb[0], rgb[1], rgb[2]))
        return c

    stride = cols * 3
    lines = []
    for row in range(0, rows2, 2):
        top, bottom = data[row * stride : (row + 1) * stride], data[(row + 1) * stride : (row + 2) * stride]
        segments = [
            Segment("▀", Style.from_color(color(top[i : i + 3]), color(bottom[i : i + 3]))) for i in range(0, stride, 3)
        ]
        lines.append(Strip(segments, cols))
    return ThumbStrips(lines, cols)


def thumbnail_strips(thumb: Thumbnail, box: tuple[int, int], mode: str) -> ThumbStrips | None:
    """Render ``thumb`` to fit ``box`` (cells, keeping its aspect). Thread-safe except for ``tgp``."""
    if thumb.image is None or mode == "off" or box[0] < 1 or box[1] < 1:
        return None
    if mode == "halfcell":
        return halfcell_strips(thumb.image, box)
    renderable = _renderable_class(mode)(thumb.image, "auto", "auto")
    console = _console()
    options = ConsoleOptions(
        size=(box[0], box[1]),
        legacy_windows=False,
        min_width=1,
        max_width=box[0],
        is_terminal=False,
        encoding="utf-8",
        max_height=box[1],
        height=box[1],
    )
    lines = Segment.split_lines(console.render(renderable, options))
    strips = [Strip(line) for line in lines][: box[1]]
    strips = [s for s in strips if s.cell_length] or strips
    width = max((s.cell_length for s in strips), default=0)
    return ThumbStrips([s.extend_cell_length(width) for s in strips], width, renderable if mode == "tgp" else None)


@dataclass
class CardData:
    """What one card shows; text is raw from the index and sanitised when drawn."""

    item_id: int
    name: str
    tags: list[str] = field(default_factory=list)
    tag_count: int = 0
    image_path: str | None = None  # absolute path, for the thumbnail cache key
    stamp: object = None  # indexed mtime: a replaced image gets a new cache entry
    size_text: str = ""
    problem: str | None = None
    caption: str = ""  # start of the caption text, shown when the item has no tags
    findings: int = 0  # findings of the last ``sushitui check``: a badge on the top border
    finding_severity: str | None = None  # the worst of them (error | warning | info): the badge's colour


def finding_badge(findings: int, room: int) -> str:
    """`` !3 `` for a card with three findings ("" for none, or when the border has no room)."""
    if findings <= 0:
        return ""
    badge = f" !{findings} " if findings < 100 else " !99+ "
    return badge if cell_len(badge) + 6 <= room else ""


def tags_text(tags: list[str], tag_count: int) -> str:
    """The first three tags then "…" when there are more (BR-1)."""
    shown = [for_terminal(t) for t in tags[:TAGS_SHOWN]]
    if not shown:
        return ""  # a bare "…" said nothing; the card shows the caption text instead
    text = ", ".join(shown)
    if tag_count > TAGS_SHOWN or len(tags) > TAGS_SHOWN:
        text += ", …"
    return text


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells (with "…" when cut) and padded to exactly ``width``."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


class ItemGrid(Widget, can_focus=True):
    """All cards of a page, drawn line by line; ``capacity`` = columns × rows that fit."""

    COMPONENT_CLASSES = {
        "item-grid--border",
        "item-grid--cursor",
        "item-grid--selected",
        "item-grid--title",
        "item-grid--tags",
        "item-grid--dim",
        "item-grid--problem",
        "item-grid--finding-error",
        "item-grid--finding-warning",
        "item-grid--finding-info",
    }
    DEFAULT_CSS = """
    ItemGrid > .item-grid--finding-error { color: $error; text-style: bold reverse; }
    ItemGrid > .item-grid--finding-warning { color: $warning; text-style: bold reverse; }
    ItemGrid > .item-grid--finding-info { color: $text-muted; text-style: bold; }
    """

    class Resized(Message):
        """The number of cards that fit changed (the browser reloads the page)."""

        def __init__(self, capacity: int, columns: int, box: tuple[int, int]) -> None:
            super().__init__()
            self.capacity = capacity
            self.columns = columns
            self.box = box

    class CardClicked(Message):
        def __init__(self, index: int, chain: int) -> None:
            super().__init__()
            self.index = index
            self.chain = chain

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode = image_mode()
        self.columns = 1
        self.rows = 1
        self.card_width = CARD_MIN_WIDTH
        self.card_height = CARD_MIN_HEIGHT
        self.page: list[CardData] = []
        self.selected: set[int] = set()
        self.cursor = 0
        self._thumbs: dict[int, ThumbStrips | str | None] = {}  # index -> strips, or a reason text
        self._card_cache: dict[int, list[list[Segment]]] = {}
        self._line_cache: dict[int, Strip] = {}
        self._tgp_live: list[ThumbStrips] = []

    # -- geometry -------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.columns * self.rows

    @property
    def box(self) -> tuple[int, int]:
        """Cells available to a card's image (inside the border, above the tags line)."""
        return max(1, self.card_width - 2), max(1, self.card_height - 3)

    @staticmethod
    def fit_grid(width: int, height: int) -> tuple[int, int]:
        return max(1, width // CARD_MIN_WIDTH), max(1, height // CARD_MIN_HEIGHT)

    def on_resize(self, event: Resize) -> None:
        width, height = event.size.width, event.size.height
        columns, rows = self.fit_grid(width, height)
        card_w, card_h = max(1, width // columns), max(3, height // rows)
        if (columns, rows, card_w, card_h) == (
            self.columns,
            self.rows,
            self.card_width,
            self.card_height,
        ) and self.page:
            return
        box_changed = (card_w, card_h) != (self.card_width, self.card_height)
        self.columns, self.rows, self.card_width, self.card_height = columns, rows, card_w, card_h
        self._card_cache.clear()
        self._line_cache.clear()
        if box_changed:
            self._drop_thumbs()
        self.refresh()
        self.post_message(self.Resized(columns * rows, columns, self.box))

    # -- data -------------------------------------------------------------------------------
    def show_page(self, page: list[CardData], selected: set[int], cursor: int) -> None:
        """Put ``page`` on the cards (blank cards past its end); thumbnails come separately."""
        self.page = page
        self.selected = selected
        self.cursor = max(0, min(cursor, len(page) - 1)) if page else 0
        self._drop_thumbs()
        self._card_cache.clear()
        self._line_cache.clear()
        self.refresh()

    def _drop_thumbs(self) -> None:
        for strips in self._tgp_live:
            strips.cleanup()
        self._tgp_live.clear()
        self._thumbs.clear()

    def set_thumbnail(
        self, index: int, item_id: int, thumb: Thumbnail | None, strips: ThumbStrips | None = None
    ) -> None:
        """Show a card's thumbnail; ``strips`` pre-rendered in a worker for the current box."""
        if not (0 <= index < len(self.page)) or self.page[index].item_id != item_id:
            return
        if thumb is None:
            return
        if thumb.image is None:
            value = "⚠ " + for_terminal(thumb.reason or "no preview")
            if self._thumbs.get(index) == value:
                return
            self._thumbs[index] = value
        else:
            current = self._thumbs.get(index)
            if isinstance(current, ThumbStrips) and (strips is None or current is strips):
                return  # already showing it: the worker's copy of a prefetched page
            if strips is None:
                strips = thumbnail_strips(thumb, self.box, self.mode)
                if strips is not None and strips.renderable is not None:
                    self._tgp_live.append(strips)
            self._thumbs[index] = strips
        self._card_cache.pop(index, None)
        self.refresh_card(index)

    def refresh_card(self, index: int) -> None:
        row = index // self.columns
        for y in range(row * self.card_height, (row + 1) * self.card_height):
            self._line_cache.pop(y, None)
        self.refresh(Region(0, row * self.card_height, self.size.width, self.card_height))

    def move_cursor(self, index: int) -> None:
        if not self.page:
            return
        index = max(0, min(index, len(self.page) - 1))
        if index == self.cursor:
            return
        old, self.cursor = self.cursor, index
        for i in (old, index):
            self._card_cache.pop(i, None)
            self.refresh_card(i)

    def refresh_marks(self, selected: set[int]) -> None:
        self.selected = selected
        self._card_cache.clear()
        self._line_cache.clear()
        self.refresh()

    @property
    def current(self) -> CardData | None:
        if 0 <= self.cursor < len(self.page):
            return self.page[self.cursor]
        return None

    def card_at(self, x: int, y: int) -> int | None:
        col, row = x // self.card_width, y // self.card_height
        if col >= self.columns or row >= self.rows:
            return None
        index = row * self.columns + col
        return index if index < len(self.page) else None

    def on_click(self, event: Click) -> None:
        index = self.card_at(event.x, event.y)
        if index is not None:
            self.post_message(self.CardClicked(index, event.chain))

    # -- drawing -----------------------------------------------------------------------------
    def _styles(self) -> dict[str, Style]:
        base = self.rich_style
        get = self.get_component_rich_style
        return {
            "base": base,
            "border": base + get("item-grid--border", partial=True),
            "cursor": base + get("item-grid--cursor", partial=True),
            "selected": base + get("item-grid--selected", partial=True),
            "title": base + get("item-grid--title", partial=True),
            "tags": base + get("item-grid--tags", partial=True),
            "dim": base + get("item-grid--dim", partial=True),
            "problem": base + get("item-grid--problem", partial=True),
            **{
                f"finding-{s}": base + get(f"item-grid--finding-{s}", partial=True)
                for s in ("error", "warning", "info")
            },
        }

    def _render_card(self, index: int, st: dict[str, Style]) -> list[list[Segment]]:
        """The card's lines as segment lists, each exactly ``card_width`` cells wide.

        Plain segment lists (not Strips): one Strip per screen line is built in
        ``render_line``; a Strip per card line cost more than drawing the card."""
        w, h = self.card_width, self.card_height
        data = self.page[index] if index < len(self.page) else None
        if data is None or w < 4:
            return [[Segment(" " * w, st["base"])]] * h
        selected = data.item_id in self.selected
        is_cursor = index == self.cursor
        chars = _HEAVY if is_cursor else _ROUND
        border = st["cursor"] if is_cursor else st["selected"] if selected else st["border"]
        if is_cursor and selected:
            border = st["selected"] + Style(bold=True)
        tl, hz, tr, vt, bl, br = chars
        inner = w - 2
        base = st["base"]
        left_bar, right_bar = Segment(vt, border), Segment(vt, border)
        lines: list[list[Segment]] = []
        # top border with the name (and a check mark when selected)
        # and the findings of the last check as a badge at the right (`` !2 ``, coloured by the worst)
        badge = finding_badge(data.findings, inner)
        badge_len = cell_len(badge)
        title = ("✓ " if selected else "") + ("⚠ " if data.problem else "") + for_terminal(data.name)
        title = fit(title, inner - 2 - badge_len - (1 if badge else 0)).rstrip() if inner > 2 else ""
        title_len = cell_len(title)
        top = [
            Segment(tl + hz, border),
            Segment(title, st["title"] + (Style(bold=True) if is_cursor else Style())),
            Segment(hz * max(0, inner - 1 - title_len - badge_len - (1 if badge else 0)), border),
        ]
        if badge:
            top += [
                Segment(badge, st.get(f"finding-{data.finding_severity}", st["finding-warning"])),
                Segment(hz, border),
            ]
        top.append(Segment(tr, border))
        lines.append(top)
        # image area
        box_w, box_h = inner, max(0, h - 3)
        thumb = self._thumbs.get(index)
        if isinstance(thumb, ThumbStrips) and thumb.width <= box_w:
            pad_top = max(0, (box_h - len(thumb.lines)) // 2)
            left = (box_w - thumb.width) // 2
            right = box_w - thumb.width - left
            left_pad, right_pad = Segment(" " * left, base), Segment(" " * right, base)
            blank = [left_bar, Segment(" " * box_w, base), right_bar]
            for r in range(box_h):
                k = r - pad_top
                if 0 <= k < len(thumb.lines):
                    lines.append([left_bar, left_pad, *thumb.lines[k], right_pad, right_bar])
                else:
                    lines.append(blank)
        else:
            text = (
                thumb
                if isinstance(thumb, str)
                else (for_terminal(data.problem) if data.problem else ("…" if self.mode != "off" else ""))
            )
            style = st["problem"] if isinstance(thumb, str) or data.problem else st["dim"]
            wrapped = textwrap.wrap(text, max(1, box_w), max_lines=max(1, box_h), placeholder="…") if text else []
            if data.size_text and not wrapped and self.mode == "off":
                wrapped = [data.size_text]
            pad_top = max(0, (box_h - len(wrapped)) // 2)
            for r in range(box_h):
                k = r - pad_top
                line = wrapped[k] if 0 <= k < len(wrapped) else ""
                left = max(0, (box_w - cell_len(line)) // 2)
                lines.append([left_bar, Segment(fit(" " * left + line, box_w), style), right_bar])
        # tags line
        tags = tags_text(data.tags, data.tag_count)
        if tags:
            tag_segment = Segment(fit(tags, inner), st["tags"])
        elif data.caption:
            tag_segment = Segment(fit(for_terminal(data.caption), inner), st["dim"])
        else:
            tag_segment = Segment(fit("(no tags)", inner), st["dim"])
        lines.append([left_bar, tag_segment, right_bar])
        # bottom border with the image size
        size = f" {data.size_text} " if data.size_text and cell_len(data.size_text) + 4 <= inner else ""
        size_len = cell_len(size)
        bottom = [
            Segment(bl + hz * max(0, inner - size_len - 1), border),
            Segment(size, st["dim"]),
            Segment(hz + br, border),
        ]
        lines.append(bottom)
        return lines[:h]

    def render_line(self, y: int) -> Strip:
        cached = self._line_cache.get(y)
        if cached is not None:
            return cached
        width = self.size.width
        row, line = divmod(y, self.card_height)
        if row >= self.rows:
            strip = Strip.blank(width, self.rich_style)
        else:
            st = None
            segments: list[Segment] = []
            for col in range(self.columns):
                index = row * self.columns + col
                card = self._card_cache.get(index)
                if card is None:
                    if st is None:
                        st = self._styles()
                    card = self._render_card(index, st)
                    self._card_cache[index] = card
                if line < len(card):
                    segments.extend(card[line])
                else:
                    segments.append(Segment(" " * self.card_width, self.rich_style))
            used = self.columns * self.card_width
            if used < width:
                segments.append(Segment(" " * (width - used), self.rich_style))
            strip = Strip(segments, width)
        # The same Strip object on every repaint lets Textual reuse its filtered copy.
        self._line_cache[y] = strip
        return strip

    def get_line_filters(self):
        """The app's filters minus ANSI→truecolor: every colour here is already truecolor,
        and converting thousands of half-cell segments per page cost more than the rest
        of the paint."""
        from textual.filter import ANSIToTruecolor

        return [f for f in super().get_line_filters() if not isinstance(f, ANSIToTruecolor)]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._card_cache.clear()
        self._line_cache.clear()

    def on_unmount(self) -> None:
        self._drop_thumbs()
