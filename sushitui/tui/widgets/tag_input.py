"""``TagInput``: the one autocompleting tag entry (TAG-7), used by item detail, quick
tagging and bulk-edit prompts.

An ``Input`` (so screens can treat it as one) plus a dropdown of candidates mounted
right after it. Each keystroke queries ``sushitui.tags.autocomplete`` in a thread worker
(exclusive: a newer keystroke makes older answers stale), so typing never waits for the
database. ↑/↓ move the highlight, Tab completes the input with the highlighted (or
first) candidate, Enter submits the highlighted candidate or, with none highlighted, the
typed text; Escape closes the dropdown. ``TagInput.Submitted.tag`` is the tag to add,
with an alias already resolved to its target. Typing a tag's translation (猫耳, ねこ)
offers the tag, shown as ``cat_ears 猫耳``; choosing it inserts ``cat_ears``.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, work
from textual.widget import Widget
from textual.widgets import Input
from textual.worker import get_current_worker

from sushitui.sanitize import for_terminal

# TAG-1 group colours by dictionary category
CATEGORY_COLORS = {
    "character": "#FF6B9D",
    "copyright": "#4ECDC4",
    "artist": "#FFE66D",
    "general": "#95E1D3",
    "meta": "#C7CEEA",
    "model": "#A8E6CF",
}


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n // 1000}k"
    return f"{n:,}"


class TagCandidates(Widget):
    """The dropdown: a few candidate lines, one highlighted. Not focusable: keys stay in the input."""

    DEFAULT_CSS = """
    TagCandidates {
        height: auto;
        max-height: 12;
        background: $panel;
        border: round $accent;
        padding: 0 1;
        display: none;
    }
    TagCandidates.-open { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.candidates: list = []
        self.highlight = -1

    def set(self, candidates: list) -> None:
        self.candidates = candidates
        self.highlight = -1
        self.set_class(bool(candidates), "-open")
        self.refresh(layout=True)

    def move(self, delta: int) -> None:
        if not self.candidates:
            return
        self.highlight = (
            (self.highlight + delta) % len(self.candidates)
            if self.highlight >= 0
            else (0 if delta > 0 else len(self.candidates) - 1)
        )
        self.refresh()

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.candidates:
            # Enter takes the typed text unless a candidate is highlighted: say so (first
            # line: the dropdown's height is capped), or a half-typed "blue_ey" + Enter
            # silently becomes a tag (in a bulk edit, on every selected file).
            if 0 <= self.highlight < len(self.candidates):
                text.append(f"Enter uses {for_terminal(self.candidates[self.highlight].value)}", style="dim italic")
            else:
                text.append("Tab completes · ↓ picks · Enter uses it as typed", style="dim italic")
        for i, c in enumerate(self.candidates):
            text.append("\n")
            color = CATEGORY_COLORS.get(c.category or "", "#BBBBBB")
            style = "reverse" if i == self.highlight else ""
            text.append("● ", style=color)
            text.append(for_terminal(c.tag), style=f"{style} bold" if c.match == "prefix" else style)
            if c.alias_of:
                text.append(f" → {for_terminal(c.alias_of)}", style="italic")
            if c.translation:
                # shown as "cat_ears 猫耳"; what matched is bold (Enter/Tab still insert the tag)
                text.append(
                    f" {for_terminal(c.translation)}", style=f"{style} bold" if c.match == "translation" else "italic"
                )
                if c.reading and c.match == "translation":
                    text.append(f" ({for_terminal(c.reading)})", style="dim")
            meta = f"  {c.category or '-'} {_count(c.count)}" + ("  (in dataset)" if c.source == "dataset" else "")
            text.append(meta, style="dim")
        return text


class TagInput(Input):
    """Tag entry with dictionary + dataset autocomplete."""

    class Submitted(Input.Submitted):
        """Posted with the tag to add (an alias resolved to its target)."""

        @property
        def tag(self) -> str:
            return self.value

    def __init__(
        self,
        value: str | None = None,
        placeholder: str = "tag",
        *,
        dataset_id: int | None = None,
        limit: int = 10,
        id: str | None = None,
        classes: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(value=value, placeholder=placeholder, id=id, classes=classes, **kwargs)
        self.dataset_id = dataset_id
        self.limit = limit
        self.dropdown = TagCandidates()
        self._completed = None  # value set by Tab: its Changed event does not reopen the dropdown

    def on_mount(self) -> None:
        if self.parent is not None:
            self.parent.mount(self.dropdown, after=self)
        self._warm()

    def on_unmount(self) -> None:
        if self.dropdown.is_mounted:
            self.dropdown.remove()

    @work(thread=True, group="tag-input-warm", exit_on_error=False)
    def _warm(self) -> None:
        from sushitui.tags.autocomplete import get_completer

        get_completer().warm(self.dataset_id)

    # -- querying ----------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is not self:
            return
        if event.value == self._completed:
            self._completed = None
            return
        if not event.value.strip():
            self.dropdown.set([])
            return
        self._query(event.value)

    @work(thread=True, exclusive=True, group="tag-input-query", exit_on_error=False)
    def _query(self, text: str) -> None:
        from sushitui.tags.autocomplete import get_completer

        candidates = get_completer().complete(text, self.dataset_id, self.limit)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, text, candidates)

    def _show(self, text: str, candidates: list) -> None:
        if text == self.value and self.has_focus:  # an answer for an older keystroke is dropped
            self.dropdown.set(candidates)

    # -- keys ----------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return bool(self.dropdown.candidates) and self.dropdown.has_class("-open")

    def _chosen(self):
        d = self.dropdown
        if 0 <= d.highlight < len(d.candidates):
            return d.candidates[d.highlight]
        return None

    async def _on_key(self, event: events.Key) -> None:
        if self.open:
            if event.key in ("down", "up"):
                self.dropdown.move(1 if event.key == "down" else -1)
                event.prevent_default()
                event.stop()
                return
            if event.key == "tab":
                cand = self._chosen() or self.dropdown.candidates[0]
                self._completed = cand.value
                self.value = cand.value
                self.cursor_position = len(self.value)
                self.dropdown.set([])
                event.prevent_default()
                event.stop()
                return
            if event.key == "escape":
                self.dropdown.set([])
                event.prevent_default()
                event.stop()
                return
        await super()._on_key(event)

    def on_blur(self) -> None:
        self.dropdown.set([])

    async def action_submit(self) -> None:
        cand = self._chosen() if self.open else None
        tag = cand.value if cand is not None else self.value.strip()
        self.dropdown.set([])
        if not tag:
            return
        self.post_message(self.Submitted(self, tag))

    def choose(self, index: int) -> None:
        """Highlight candidate ``index`` (for callers that drive the widget directly)."""
        if 0 <= index < len(self.dropdown.candidates):
            self.dropdown.highlight = index
            self.dropdown.refresh()
