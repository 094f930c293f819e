"""A reusable yes/no dialog.

Usage (any screen)::

    from sushitui.tui.widgets.confirm import ConfirmDialog

    def done(ok: bool | None) -> None:
        if ok:
            ...
    self.app.push_screen(ConfirmDialog("Remove the index of 'cats'?", detail="Files stay on disk."), done)

or inside a ``@work`` coroutine: ``if await self.app.push_screen_wait(ConfirmDialog(...)): ...``.
``y``/Enter confirm, ``n``/Escape cancel. ``title``/``detail`` are shown as plain text
(never parsed as markup) and sanitised, so they may contain names from files.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from sushitui.sanitize import for_terminal


class ConfirmDialog(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True (yes) or False (no)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Yes, do it"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="No, leave everything as it is"),
        Binding(
            "left,right",
            "app.focus_next",
            "Switch button",
            show=False,
            id="confirm.switch",
            tooltip="Move between the Yes and No buttons",
        ),
    ]

    def __init__(
        self,
        question: str,
        *,
        detail: str = "",
        yes_label: str = "Yes",
        no_label: str = "No",
        danger: bool = False,
    ) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes_label = yes_label
        self.no_label = no_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(Text(for_terminal(self.question, multiline=True), style="bold"), id="confirm-question")
            if self.detail:
                yield Static(Text(for_terminal(self.detail, multiline=True)), id="confirm-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error" if self.danger else "primary")
                yield Button(f"{self.no_label} (n)", id="no")

    def on_mount(self) -> None:
        # Destructive questions start on "No" so a stray Enter does no harm.
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")
