"""``HelpScreen``: every key of the screen underneath, one modal for all screens.

The footer (KeyBar) only has room for the most used keys; on an 80-column terminal
most of a screen's keys are cut off, and many are ``show=False`` on purpose. ``?`` or
F1 (app bindings, so they work on every screen and dialog) opens this list: the keys
that are active right now (the focused widget's, the screen's and the app's), each
with its description and tooltip, keys of one action shown together, and the binding
id in brackets: the name a ``keymap.toml`` line uses to give it other keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from sushitui.sanitize import for_terminal


@dataclass
class HelpEntry:
    keys: list[str]
    description: str
    tooltip: str
    scope: str  # one of SCOPES
    binding_id: str = ""  # what keymap.toml remaps ("browser.quick_tag")


# Most useful first: at 80x24 the list scrolls, and the screen's own keys matter most.
SCOPES = (
    ("screen", "This screen"),
    ("widget", "Where the cursor is"),
    ("app", "Everywhere"),
    ("general", "Focus and copy"),
)


def help_entries(screen: Screen) -> list[HelpEntry]:
    """The keys active on ``screen`` now, one entry per action (several keys joined),
    ordered by SCOPES."""
    app = screen.app
    generic = {b.action for b in Screen.BINDINGS if isinstance(b, Binding)}
    entries: dict[tuple[str, str], HelpEntry] = {}
    from sushitui.tui.widgets.key_bar import screen_first_bindings

    for key, active in screen_first_bindings(screen).items():
        binding = active.binding
        if not binding.description or binding.action == "help":
            continue
        if active.node is app:
            scope = "app"
        elif binding.action in generic:
            scope = "general"
        elif active.node is screen:
            scope = "screen"
        else:
            scope = "widget"
        ident = (scope, binding.action)
        display = app.get_key_display(binding)
        entry = entries.get(ident)
        if entry is None:
            entries[ident] = HelpEntry([display], binding.description, binding.tooltip or "", scope, binding.id or "")
        elif display not in entry.keys:
            entry.keys.append(display)
    order = {name: i for i, (name, _title) in enumerate(SCOPES)}
    return sorted(entries.values(), key=lambda e: order[e.scope])


def screen_title(screen: Screen) -> str:
    import re

    name = type(screen).__name__.removesuffix("Screen").removesuffix("Dialog")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)  # ItemDetail -> Item Detail


class HelpScreen(ModalScreen[None]):
    """The key list of the screen below; Esc, q, ? or F1 closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help-box {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    HelpScreen #help-title { text-style: bold; height: 1; }
    HelpScreen #help-scroll { height: auto; max-height: 80vh; }
    HelpScreen #help-hint { color: $text-muted; height: 1; }
    """

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close help", id="help.close", tooltip="Back to the screen"),
        Binding("j", "scroll(1)", "Scroll down", show=False, id="help.scroll_down", tooltip="Scroll the list down"),
        Binding("k", "scroll(-1)", "Scroll up", show=False, id="help.scroll_up", tooltip="Scroll the list up"),
    ]

    def __init__(self, target: Screen) -> None:
        super().__init__()
        self.target = target
        self.entries = help_entries(target)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(Text(f"Keys: {for_terminal(screen_title(self.target))}"), id="help-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(self._table(), id="help-table")
            yield Static(f"↑/↓ scroll · {self._close_keys()} close · Ctrl+P searches every command", id="help-hint")

    def _close_keys(self) -> str:
        """ "Esc, q, ? or F1", or the keys the user's keymap gave ``help.close``."""
        from sushitui.tui.widgets.key_bar import key_labels

        chain = dict(self._binding_chain)
        bindings = [b for _key, b in chain.get(self, self._bindings) if b.action == "close"]
        labels = key_labels(self.app, bindings)
        return ", ".join(labels[:-1]) + f" or {labels[-1]}" if len(labels) > 1 else "".join(labels)

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("what")
        for scope, heading in SCOPES:
            rows = [e for e in self.entries if e.scope == scope]
            if not rows:
                continue
            table.add_row(Text(heading, style="underline"), "")
            for e in rows:
                what = Text(e.description)
                if e.tooltip and e.tooltip != e.description:
                    what.append(f" — {e.tooltip}", style="dim")
                if e.binding_id:
                    what.append(f" [{e.binding_id}]", style="dim italic")
                table.add_row(Text(", ".join(e.keys)), what)
        return table

    @property
    def plain(self) -> str:
        """The whole list as text (also the part scrolled out of view)."""
        return "\n".join(f"{', '.join(e.keys)}  {e.description}  {e.tooltip}  [{e.binding_id}]" for e in self.entries)

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_scroll(self, lines: int) -> None:
        self.query_one("#help-scroll", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
