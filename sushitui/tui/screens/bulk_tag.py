"""Bulk add / remove / replace of a tag on the selection or the whole result (BR-4).

The dialog only asks (tag, replacement, scope); the edit itself is
``sushitui.dataset.bulk_edit`` run by the browser in a worker, which writes the caption files
through the one caption write path (atomic, conflict-checked).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from sushitui.sanitize import for_terminal

MODES = {"add": "Add tag", "remove": "Remove tag", "replace": "Replace tag"}


@dataclass
class BulkChoice:
    mode: str  # add | remove | replace
    tag: str
    new_tag: str = ""
    scope: str = "result"  # selection | result


@dataclass
class BulkSummary:
    text: str
    changed: int = 0
    problems: list[str] = field(default_factory=list)


def _tag_input(placeholder: str, id: str, dataset_id: int):
    """The dictionary's autocompleting tag entry (dataset tags first)."""
    from sushitui.tui.widgets.tag_input import TagInput

    return TagInput(placeholder=placeholder, id=id, dataset_id=dataset_id)


def validate_tag(text: str) -> str | None:
    """Why ``text`` cannot be a tag, or None."""
    from sushitui.tags.normalize import clean

    tag = clean(text)
    if not tag:
        return "enter a tag"
    if "," in tag:
        return "one tag at a time (no commas)"
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in tag):
        return "control characters are not allowed in tags"
    return None


class BulkTagDialog(ModalScreen[BulkChoice | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without changing anything"),
        Binding("ctrl+s", "apply", "Apply", id="bulk.apply", tooltip="Apply this edit to the items"),
    ]

    def __init__(
        self,
        mode: str,
        *,
        dataset_id: int,
        selection_count: int,
        result_count: int | None,
        query: str = "",
    ) -> None:
        super().__init__()
        self.mode = mode
        self.dataset_id = dataset_id
        self.selection_count = selection_count
        self.result_count = result_count
        self.query_text = query

    def compose(self) -> ComposeResult:
        with Vertical(id="bulk-box", classes="dialog"):
            yield Static(Text(MODES[self.mode], style="bold"), classes="dialog-title")
            yield Label("Tag" if self.mode != "replace" else "Tag to replace (or a * pattern)")
            yield _tag_input("tag, e.g. long hair", "bulk-tag", self.dataset_id)
            if self.mode == "replace":
                yield Label("Replace with")
                yield _tag_input("new tag", "bulk-new-tag", self.dataset_id)
            yield Static("", id="bulk-error", classes="field-error")
            result = f"{self.result_count:,}" if self.result_count is not None else "…"
            what = "whole result" if self.query_text.strip() else "whole dataset"
            with RadioSet(id="bulk-scope"):
                if self.selection_count:
                    yield RadioButton(f"selection ({self.selection_count:,} items)", value=True, id="scope-selection")
                yield RadioButton(f"{what} ({result} items)", value=not self.selection_count, id="scope-result")
            if self.query_text.strip():
                yield Static(Text("query: " + for_terminal(self.query_text), style="dim"))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (ctrl+s)", id="apply", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#bulk-tag").focus()

    def _choice(self) -> BulkChoice | None:
        error = self.query_one("#bulk-error", Static)
        tag = self.query_one("#bulk-tag", Input).value
        problem = validate_tag(tag)
        new_tag = ""
        if problem is None and self.mode == "replace":
            new_tag = self.query_one("#bulk-new-tag", Input).value
            problem = validate_tag(new_tag)
            if problem:
                problem = f"replacement: {problem}"
        if problem:
            error.update(Text(problem, style="bold red"))
            return None
        pressed = self.query_one(RadioSet).pressed_button
        scope = "selection" if pressed is not None and pressed.id == "scope-selection" else "result"
        from sushitui.tags.normalize import clean

        return BulkChoice(self.mode, clean(tag), clean(new_tag) if new_tag else "", scope)

    def _submit(self) -> None:
        choice = self._choice()
        if choice is not None:
            self.dismiss(choice)

    def on_tag_input_submitted(self, event: Input.Submitted) -> None:
        # TagInput.Submitted carries the chosen candidate (alias resolved) as its value.
        if event.value and event.input.value != event.value:
            event.input.value = event.value
        self.on_input_submitted(event)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.mode == "replace" and event.input.id == "bulk-tag":
            self.query_one("#bulk-new-tag").focus()
            return
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply":
            self._submit()
        else:
            self.dismiss(None)

    def action_apply(self) -> None:
        # ctrl+s applies as in every other form; Enter in the tag field also does.
        self._submit()

    def action_cancel(self) -> None:
        self.dismiss(None)


def run_bulk(
    dataset_id: int, choice: BulkChoice, *, item_ids: list[int] | None, query: str, progress=None, cancel=None
) -> BulkSummary:
    """Run the chosen bulk edit (in a worker thread) and summarise it for a notification.

    ``item_ids`` (the selection) wins over ``query``: the selection is exactly what the
    user marked, whatever the search bar says now.
    """
    from sushitui.dataset import bulk_edit
    from sushitui.dataset.captions import EACH_ITEM

    target = list(item_ids) if item_ids is not None else (query.strip() or None)
    # each item's own tag caption: main, or the one holding its tags when main is prose
    kwargs = dict(progress=progress, cancel=cancel, subtype=EACH_ITEM)
    if choice.mode == "add":
        report = bulk_edit.bulk_add(dataset_id, target, choice.tag, **kwargs)
        verb = f"added '{choice.tag}' to"
    elif choice.mode == "remove":
        report = bulk_edit.bulk_remove(dataset_id, target, choice.tag, **kwargs)
        verb = f"removed '{choice.tag}' from"
    else:
        report = bulk_edit.bulk_replace(dataset_id, target, choice.tag, choice.new_tag, **kwargs)
        verb = f"replaced '{choice.tag}' with '{choice.new_tag}' on"
    problems = [f"{p.path or f'item {p.item_id}'}: {p.reason}" for p in report.problems]
    text = f"Bulk edit: {verb} {report.items_changed:,} of {report.items_matched:,} items"
    if report.cancelled:
        text += " (cancelled; the files written so far are kept)"
    if problems:
        text += f"; {len(problems)} problems, e.g. {problems[0]}"
    return BulkSummary(for_terminal(text), report.items_changed, problems)
