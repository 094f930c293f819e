"""Tags shown as coloured pills with a cursor (IT-3, QT-1).

The widget only draws and moves its cursor; the screen owns the tag list (a
``TagListEditor``) and calls ``set_tags``. Pills are laid out line by line here, so a
pill never breaks across two lines; tag text is sanitised (NF-4) and never parsed as
markup. Widths are terminal cells (a CJK character is two), and a pill too long for the
line is cut between characters, never through one.

``T`` shows each tag's translation inside its pill (``cat_ears 猫耳``, issue 22), in the
language of ``sushitui dict translations show``; the choice is kept as a setting, so
item detail and quick tagging both follow it.
"""

from __future__ import annotations

import logging

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region
from textual.reactive import reactive
from textual.widget import Widget

from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import match_key

log = logging.getLogger(__name__)

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


def fit_cells(text: str, cells: int) -> str:
    """``text`` cut to at most ``cells`` terminal cells; a wide (CJK) character that does
    not fit whole is left out, never halved."""
    if cell_len(text) <= cells:
        return text
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > cells:
            break
        out.append(ch)
        used += w
    return "".join(out)


def pills_text(
    tags: list[str],
    colors: dict[str, str],
    width: int,
    *,
    cursor: int | None = None,
    marked: set[str] | None = None,
    numbered: bool = False,
    translations: dict[str, str] | None = None,
) -> Text:
    """Pills wrapped to ``width`` cells; ``marked`` match keys are drawn bold;
    ``translations`` (match key → text) are shown inside the pill after the tag."""
    text = Text(no_wrap=True, overflow="ellipsis")
    x = 0
    width = max(8, width)
    for i, tag in enumerate(tags):
        key = match_key(tag)
        label = for_terminal(tag)
        if numbered:
            label = f"{i + 1} {label}"
        head = f" {label}"
        translated = translations.get(key) if translations else None
        tail = f" {for_terminal(translated)}" if translated else ""
        end = " "
        if cell_len(head + tail) + 1 > width - 1:
            body = fit_cells(head + tail, max(4, width - 3))
            head, tail, end = body[: len(head)], body[len(head) :], "… "
        w = cell_len(head + tail + end)
        if x and x + w > width:
            text.append("\n")
            x = 0
        elif x:
            text.append(" ")
            x += 1
        style = pill_style(colors.get(key), cursor=(i == cursor), marked=bool(marked and key in marked))
        text.append(head, style=style)
        if tail:
            text.append(tail, style=f"{style} italic")
        text.append(end, style=style)
        x += w
    return text


class TagPills(Widget, can_focus=True):
    """Coloured tag pills with a cursor; ↑/↓ (or k/j) move it, the screen does the rest."""

    DEFAULT_CSS = """
    TagPills { height: auto; min-height: 1; padding: 0 0; }
    TagPills:focus { background: $boost; }
    """

    BINDINGS = [
        Binding(
            "T",
            "toggle_translations",
            "Translations",
            show=False,
            id="tags.translations",
            tooltip="Show or hide each tag's translation beside it (language: sushitui dict translations show)",
        ),
    ]

    cursor: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None, classes: str | None = None, empty_hint: str = "no tags") -> None:
        super().__init__(id=id, classes=classes)
        self.tags: list[str] = []
        self.tag_colors: dict[str, str] = {}
        self.empty_hint = empty_hint
        self.show_translations = False
        self.translations: dict[str, str] = {}  # match key -> translation, for the tags shown

    def on_mount(self) -> None:
        from sushitui.tags import translations

        try:
            self.show_translations = translations.pills_show_translations()
        except Exception:  # noqa: BLE001 - no database open (a widget test; peewee's proxy raises its own types)
            log.debug("translation setting unreadable: pills without translations", exc_info=True)
            self.show_translations = False
        if self.show_translations:
            self._load_translations()

    def set_tags(self, tags: list[str], colors: dict[str, str] | None = None, cursor: int | None = None) -> None:
        self.tags = list(tags)
        if colors is not None:
            self.tag_colors = colors
        if cursor is not None:
            self.cursor = cursor
        self.cursor = max(0, min(self.cursor, len(self.tags) - 1))
        if self.show_translations:
            self._load_translations()
        self.refresh(layout=True)

    def _load_translations(self) -> None:
        """The shown tags' translations: one indexed query for a caption's few dozen tags."""
        from sushitui.tags import translations

        missing = [t for t in self.tags if match_key(t) not in self.translations]
        if not missing:
            return
        try:
            self.translations.update(translations.lookup(missing))
        except Exception:  # noqa: BLE001 - translations are decoration; no database open raises peewee's own types
            log.debug("looking up translations failed", exc_info=True)

    def _shown(self) -> dict[str, str] | None:
        return self.translations if self.show_translations else None

    def action_toggle_translations(self) -> None:
        from sushitui.tags import translations

        self.show_translations = not self.show_translations
        self.translations = {}
        try:
            translations.set_pills_show_translations(self.show_translations)
            lang = translations.preferred_lang()
        except Exception as exc:  # noqa: BLE001 - the setting could not be written (any database error): still toggle here
            log.warning("saving the translations setting failed", exc_info=True)
            self.notify(f"translations: {exc}", severity="warning", timeout=3)
            lang = None
        if self.show_translations:
            self._load_translations()
            if lang is None:
                self.notify("no translations yet: sushitui dict translations import FILE --lang ja", timeout=4)
            else:
                self.notify(f"translations shown ({lang})", timeout=1.5)
        self.refresh(layout=True)

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, max(0, len(self.tags) - 1)))

    @property
    def current_tag(self) -> str | None:
        return self.tags[self.cursor] if 0 <= self.cursor < len(self.tags) else None

    def render(self) -> Text:
        if not self.tags:
            return Text(self.empty_hint, style="dim italic")
        return pills_text(
            self.tags,
            self.tag_colors,
            self.size.width or 40,
            cursor=self.cursor if self.has_focus else None,
            translations=self._shown(),
        )

    def get_content_height(self, container, viewport, width: int) -> int:
        if not self.tags:
            return 1
        return len(pills_text(self.tags, self.tag_colors, width, translations=self._shown()).plain.split("\n"))

    def cursor_line(self, width: int | None = None) -> int:
        """The wrapped line the cursor's pill is on."""
        if not self.tags:
            return 0
        width = width or self.size.width or 40
        return pills_text(self.tags[: self.cursor + 1], self.tag_colors, width, translations=self._shown()).plain.count(
            "\n"
        )

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
