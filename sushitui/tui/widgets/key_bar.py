"""``KeyBar``: the footer line of keys, drawn as one widget.

Textual's ``Footer`` mounts one widget per key and recomposes on every bindings change
(focus moves, screen mount): on the browser (18 keys) that was 7 recomposes and most of
the 650 ms of UI-thread CPU before the first page appeared. This bar shows the same
active bindings (``show=True``, enabled state, the command palette key last) as one
line of text, updated from the screen's ``bindings_updated_signal``; a click on a key
runs its action like the Footer does.
"""

from __future__ import annotations

from rich.text import Text
from textual.events import Click
from textual.widget import Widget


def screen_first_bindings(screen) -> dict:
    """``screen.active_bindings`` where a hidden binding of the focused widget (a
    DataTable's Enter "select") hides the screen's own shown binding for that key: the
    screen's is listed instead. The widget's key ends up doing the screen's thing (the
    screen handles RowSelected), but the footer of the datasets and runs screens never
    showed "⏎ Open" / "⏎ Stats"."""
    from textual.binding import ActiveBinding

    # Only a list's "select" (its Enter posts RowSelected / OptionSelected, which the
    # screen turns into its own action). A TextArea's or Input's hidden ←/→/Delete do
    # their own thing, so the screen's bindings for those keys are really shadowed.
    selecting = {"select_cursor", "select"}
    active = dict(screen.active_bindings)
    own = {}
    # The screen's bindings with the user's keymap applied (screen._bindings has the
    # default keys), as active_bindings has them.
    screen_map = next((bindings for node, bindings in screen._binding_chain if node is screen), screen._bindings)
    for key, binding in screen_map:
        if binding.show and key not in own:
            own[key] = binding
    for key, entry in active.items():
        alt = own.get(key)
        if alt is None or entry.binding.show or entry.node is screen or entry.binding.action not in selecting:
            continue
        state = screen.app._check_action_state(alt.action, screen)
        if state is not False:
            active[key] = ActiveBinding(screen, alt, bool(state), alt.tooltip)
    return active


def key_labels(app, bindings, shortest_first: bool = False) -> list[str]:
    """Short key names for hints ("?", "F1", "Esc"), each once, in binding order (or
    single characters first)."""
    labels = []
    for binding in bindings:
        label = app.get_key_display(binding)
        if label == "esc" or (label[:1] == "f" and label[1:].isdigit()):
            label = label.capitalize() if label == "esc" else label.upper()
        labels.append(label)
    labels = list(dict.fromkeys(labels))
    return sorted(labels, key=len) if shortest_first else labels


class KeyBar(Widget):
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description", "key-bar--disabled"}

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-description-foreground;
    }
    KeyBar > .key-bar--key { color: $footer-key-foreground; text-style: bold; }
    KeyBar > .key-bar--description { color: $footer-description-foreground; }
    KeyBar > .key-bar--disabled { color: $text-disabled; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._spans: list[tuple[int, int, str, object]] = []  # (start, end, action, namespace)
        self._text = Text()
        self._tail = Text()
        self._palette = None
        self._help = None
        self._help_label = ""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self._rebuild)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        if self.is_attached and screen is self.screen:
            self._rebuild()

    def _rebuild(self) -> None:
        key_style = self.get_component_rich_style("key-bar--key")
        desc_style = self.get_component_rich_style("key-bar--description")
        off_style = self.get_component_rich_style("key-bar--disabled")
        text = Text(no_wrap=True, overflow="crop")
        spans = []
        seen: set[str] = set()
        palette = None
        for key, (namespace, binding, enabled, _tooltip) in screen_first_bindings(self.screen).items():
            if key == self.app.COMMAND_PALETTE_BINDING:
                palette = (namespace, binding, enabled)
                continue
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            start = len(text)
            text.append(f" {self.app.get_key_display(binding)} ", key_style if enabled else off_style)
            text.append(f"{binding.description} ", desc_style if enabled else off_style)
            spans.append((start, len(text), binding.action, namespace))
        tail = Text(no_wrap=True)
        self._palette = None
        self._help = None
        help_bindings = [
            a for a in self.screen.active_bindings.values() if a.node is self.app and a.binding.action == "help"
        ]
        if help_bindings:
            # The help key is always visible (with the palette key): the keys that do
            # not fit on the line, and the show=False ones, are all listed there.
            self._help_label = (
                "▏" + " ".join(key_labels(self.app, [a.binding for a in help_bindings], shortest_first=True)) + " help "
            )
            tail.append("▏")
            tail.append(self._help_label[1:].removesuffix(" help "), key_style)
            tail.append(" help ", desc_style)
            self._help = (help_bindings[0].binding.action, help_bindings[0].node)
        if palette is not None and self.app.ENABLE_COMMAND_PALETTE:
            namespace, binding, enabled = palette
            tail.append("▏" if self._help is None else "")
            tail.append(f"{self.app.get_key_display(binding)}", key_style)
            tail.append(" palette ", desc_style)
            self._palette = (binding.action, namespace)
        self._text = text
        self._tail = tail
        self._spans = spans
        self.refresh()

    def render(self) -> Text:
        # The palette key stays visible at the right edge however narrow the terminal.
        width = self.size.width
        room = max(0, width - len(self._tail))
        cut = len(self._text)
        if cut > room:  # drop whole keys that do not fit, never half a key
            cut = max((end for _start, end, _a, _n in self._spans if end <= room), default=0)
        line = self._text[:cut]
        out = line.copy()
        out.append(" " * max(0, room - len(line)))
        out.append_text(self._tail)
        return out

    @property
    def plain(self) -> str:
        return self._text.plain + self._tail.plain

    async def on_click(self, event: Click) -> None:
        width = self.size.width
        tail_start = width - len(self._tail)
        if event.x >= tail_start and (self._palette is not None or self._help is not None):
            event.stop()
            help_width = len(self._help_label) if self._help is not None else 0
            if self._help is not None and event.x < tail_start + help_width:
                await self.app.run_action(*self._help)
            elif self._palette is not None:
                await self.app.run_action(*self._palette)
            return
        room = width - len(self._tail)
        for start, end, action, namespace in self._spans:
            if start <= event.x < min(end, room):
                event.stop()
                await self.app.run_action(action, namespace)
                return
