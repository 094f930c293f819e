"""The All-captions tab (IT-5): every caption of the item, with its type, subtype,
source and first line. Enter edits one (``CaptionList.EditRequested``), d deletes it
(``DeleteRequested``); the screen saves through the same flow as the other panes."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static, TabPane, TextArea
from textual.widgets.option_list import Option

from sushitui.dataset.item_view import CaptionView, ItemView
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.detail.meta_pane import fmt_ts
from sushitui.tui.widgets.detail.text_tab import SafeTextArea


class CaptionList(TabPane):
    """The captions of one item as a list."""

    DEFAULT_CSS = """
    CaptionList { padding: 0 1; }
    CaptionList #all-captions { height: 1fr; }
    CaptionList .line { height: auto; color: $text-muted; }
    """

    class EditRequested(Message):
        def __init__(self, caption: CaptionView) -> None:
            super().__init__()
            self.caption = caption

    class DeleteRequested(Message):
        def __init__(self, caption: CaptionView) -> None:
            super().__init__()
            self.caption = caption

    def __init__(self, label: str) -> None:
        super().__init__(label, id="tab-all")
        self.view: ItemView | None = None
        self.options = OptionList(id="all-captions")

    def compose(self) -> ComposeResult:
        yield self.options
        yield Static(Text("Enter edit · d delete", style="dim"), classes="line")

    def show(self, view: ItemView | None) -> None:
        self.view = view
        self.options.clear_options()
        for c in view.captions if view is not None else []:
            prompt = Text()
            prompt.append(f"{c.type}", style="bold")
            prompt.append(f" · {for_terminal(c.subtype) or '—'} · {c.source}")
            if c.source_field:
                prompt.append(f" ({for_terminal(c.source_field)})")
            prompt.append(f" · {fmt_ts(c.updated_at)}", style="dim")
            if c.encoding_flagged:
                prompt.append(f" · {c.encoding}", style="yellow")
            first = (c.content or "").strip().splitlines()[0] if (c.content or "").strip() else "(empty)"
            prompt.append("\n  " + for_terminal(first[:200]))
            self.options.add_option(Option(prompt, id=f"cap-{c.id}"))

    @property
    def has_focus_on_list(self) -> bool:
        return self.screen.focused is self.options

    def selected(self) -> CaptionView | None:
        if self.view is None or self.options.highlighted is None:
            return None
        opt = self.options.get_option_at_index(self.options.highlighted)
        cid = int((opt.id or "cap-0")[4:])
        return next((c for c in self.view.captions if c.id == cid), None)

    def request_edit(self) -> None:
        cap = self.selected() if self.has_focus_on_list else None
        if cap is not None:
            self.post_message(self.EditRequested(cap))

    def request_delete(self) -> None:
        cap = self.selected() if self.has_focus_on_list else None
        if cap is not None:
            self.post_message(self.DeleteRequested(cap))

    @on(OptionList.OptionSelected, "#all-captions")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.request_edit()


class CaptionEditDialog(ModalScreen["str | None"]):
    """Edit one caption's whole text (All captions tab, IT-5)."""

    DEFAULT_CSS = """
    CaptionEditDialog { align: center middle; }
    CaptionEditDialog > Vertical { width: 90%; max-width: 120; height: 80%; border: thick $primary; background: $surface; }
    CaptionEditDialog TextArea { height: 1fr; }
    CaptionEditDialog Static { height: auto; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save caption", id="caption_edit.save", tooltip="Save the edited caption"),
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving"),
    ]

    def __init__(self, caption: CaptionView) -> None:
        super().__init__()
        self.caption = caption

    def compose(self) -> ComposeResult:
        c = self.caption
        head = Text(f"{c.type} · {c.subtype or '—'} · {c.source}", style="bold")
        if c.file_path:
            head.append(f" · {for_terminal(c.file_path)}")
        with Vertical():
            yield Static(head)
            area = SafeTextArea("", id="caption-edit-area", soft_wrap=True)
            area.load_text(c.content)
            yield area
            yield Static(Text("ctrl+s save · esc cancel", style="dim"))

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.move_cursor(area.document.end)  # typically one appends to a caption
        area.focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(SafeTextArea).value())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportCaptionDialog(ModalScreen["str | None"]):
    """Ask where to write the caption as a .txt (IT-7); returns the path or None."""

    DEFAULT_CSS = """
    ExportCaptionDialog { align: center middle; }
    ExportCaptionDialog > Vertical { width: 80%; max-width: 100; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    ExportCaptionDialog Static { height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving")]

    def __init__(self, default_path: str) -> None:
        super().__init__()
        self.default_path = default_path

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Export this caption to a text file (an existing file is never overwritten):")
            yield Input(self.default_path, id="export-path")
            yield Static(Text("Enter write · Esc cancel", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
