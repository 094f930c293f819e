"""Tags shown as coloured pills with a cursor (IT-3, QT-1).

The widget only draws and moves its cursor; the screen owns the tag list (a
``TagListEditor``) and calls ``set_tags``. Pills are laid out line by line here, so a
pill never breaks across two lines; tag text is sanitised (NF-4) and never parsed as
markup.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.reactive import reactive
from textual.geometry import Region
from textual.widget import Widget

from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import match_key

DEFAULT_PILL = "#5a5f73"


def pill_style(color: str | None, *, cursor: bool = False, marked: bool = False) -> str:
    bg = color or DEFAULT_PILL
    fg = "#000000" if color else "#ffffff"
    style = f"{fg} on {bg}"
    if marked:
        style += " bold"
    if cursor:
        style = f"bold reverse {style} underline"
    return style


def pills_text(
    tags: list[str],
    colors: dict[str, str],
    width: int,
    *,
    cursor: int | None = None,
    marked: set[str] | None = None,
    numbered: bool = False,
) -> Text:
    """Pills wrapped to ``width`` cells; ``marked`` match keys are drawn bold."""
    text = Text(no_wrap=True, overflow="ellipsis")
    x = 0
    width = max(8, width)
    for i, tag in enumerate(tags):
        label = for_terminal(tag)
        if numbered:
            label = f"{i + 1} {label}"
        label = f" {label} "
        if cell_len(label) > width - 1:
            label = label[: max(4, width - 3)] + "… "
        w = cell_len(label)
        if x and x + w > width:
            text.append("\n")
            x = 0
        elif x:
            text.append(" ")
            x += 1
        key = match_key(tag)
        text.append(label, style=pill_style(colors.get(key), cursor=(i == cursor), marked=bool(marked and key in marked)))
        x += w
    return text


class TagPills(Widget, can_focus=True):
    """Coloured tag pills with a cursor; ↑/↓ (or k/j) move it, the screen does the rest."""

    DEFAULT_CSS = """
    TagPills { height: auto; min-height: 1; padding: 0 0; }
    TagPills:focus { background: $boost; }
    """

    cursor: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None, classes: str | None = None, empty_hint: str = "no tags") -> None:
        super().__init__(id=id, classes=classes)
        self.tags: list[str] = []
        self.tag_colors: dict[str, str] = {}
        self.empty_hint = empty_hint

    def set_tags(self, tags: list[str], colors: dict[str, str] | None = None, cursor: int | None = None) -> None:
        self.tags = list(tags)
        if colors is not None:
            self.tag_colors = colors
        if cursor is not None:
            self.cursor = cursor
        self.cursor = max(0, min(self.cursor, len(self.tags) - 1))
        self.refresh(layout=True)

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, max(0, len(self.tags) - 1)))

    @property
    def current_tag(self) -> str | None:
        return self.tags[self.cursor] if 0 <= self.cursor < len(self.tags) else None

    def render(self) -> Text:
        if not self.tags:
            return Text(self.empty_hint, style="dim italic")
        return pills_text(self.tags, self.tag_colors, self.size.width or 40, cursor=self.cursor if self.has_focus else None)

    def get_content_height(self, container, viewport, width: int) -> int:
        if not self.tags:
            return 1
        return len(pills_text(self.tags, self.tag_colors, width).plain.split("\n"))

    def cursor_line(self, width: int | None = None) -> int:
        """The wrapped line the cursor's pill is on."""
        if not self.tags:
            return 0
        width = width or self.size.width or 40
        return pills_text(self.tags[: self.cursor + 1], self.tag_colors, width).plain.count("\n")

    def watch_cursor(self, cursor: int) -> None:
        # With more tags than fit (80x24), the scrolling parent follows the cursor;
        # otherwise ↓ on a long tag list moved a cursor the user could not see.
        parent = self.parent
        if self.tags and parent is not None and getattr(parent, "is_scrollable", False):
            line = self.virtual_region.y + self.cursor_line()
            parent.scroll_to_region(Region(0, line, 1, 1), animate=False, immediate=True)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
