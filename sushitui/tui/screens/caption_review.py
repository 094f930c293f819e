"""Review captions a vision-language model wrote (issue 16): the image, the caption the
item has now, the new one; accept, edit, reject, regenerate with another temperature,
or accept all remaining.

A caption is written only on accept, through ``sushitui.tagger.vlm.write_caption`` with
``base=`` the file state the old caption was read from: a file changed on disk since is
a conflict, and the one save flow (``sushitui.tui.edit_flow.EditFlow``: the
``ConflictDialog``) asks which version to keep. "Accept all" never asks: a conflict
there leaves that item unwritten and says so. Leaving the screen writes nothing more;
the answers stay cached, so captioning the same items again sends nothing.

``dismiss`` returns how many captions were written.
"""

from __future__ import annotations

import asyncio
import os

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static, TextArea

from sushitui.sanitize import for_terminal
from sushitui.tui.screens.caption_dialog import result_label, with_temperature
from sushitui.tui.widgets.key_bar import KeyBar
from sushitui.tui.widgets.preview_pane import PreviewPane

# Regenerate walks these temperatures, skipping the one the current answer came from.
REGEN_TEMPERATURES = (0.7, 1.0, 1.3, 0.4)

PENDING, ACCEPTED, REJECTED, KEPT_DISK = "pending", "accepted", "rejected", "kept file"


def next_temperature(current: float | None) -> float:
    if current is None or current not in REGEN_TEMPERATURES:
        return REGEN_TEMPERATURES[0] if current != REGEN_TEMPERATURES[0] else REGEN_TEMPERATURES[1]
    return REGEN_TEMPERATURES[(REGEN_TEMPERATURES.index(current) + 1) % len(REGEN_TEMPERATURES)]


class Entry:
    """One item under review: the model's answer, the text to write, the decision."""

    def __init__(self, result, temperature: float | None) -> None:
        self.result = result
        self.text = result.text or ""
        self.temperature = temperature
        self.decision = PENDING
        self.note = ""  # why it was not written (conflict, error)

    @property
    def writable(self) -> bool:
        """Accept all takes answers without a problem; a flagged one needs a look."""
        return self.decision == PENDING and self.result.status == "answered" and bool(self.text.strip())


class CaptionReviewScreen(Screen):
    """One answer at a time; the caption is written only when accepted."""

    DEFAULT_CSS = """
    CaptionReviewScreen { layout: vertical; }
    CaptionReviewScreen #review-title { height: auto; max-height: 2; padding: 0 1; background: $boost; }
    CaptionReviewScreen #review-body { height: 1fr; }
    CaptionReviewScreen #review-image { width: 2fr; min-width: 20; border: round $primary; }
    CaptionReviewScreen #review-texts { width: 3fr; }
    CaptionReviewScreen #review-old { height: 1fr; min-height: 3; border: round $secondary; padding: 0 1; }
    CaptionReviewScreen #review-new { height: 2fr; min-height: 4; border: round $success; }
    CaptionReviewScreen #review-new:focus { border: round $accent; }
    CaptionReviewScreen #review-status { height: auto; max-height: 3; padding: 0 1; }
    CaptionReviewScreen #review-status.problem { color: $warning; }
    """

    BINDINGS = [
        Binding("y,enter", "accept", "Accept", id="review.accept", tooltip="Write this caption and go to the next"),
        Binding(
            "e", "edit", "Edit", id="review.edit", tooltip="Edit the new caption (Esc leaves the editor; then accept)"
        ),
        Binding("n,x", "reject", "Reject", id="review.reject", tooltip="Do not write this caption; go to the next"),
        Binding(
            "r",
            "regenerate",
            "Regenerate",
            id="review.regenerate",
            tooltip="Ask the model again for this item with another temperature",
        ),
        Binding(
            "A",
            "accept_all",
            "Accept all",
            id="review.accept_all",
            tooltip="Write every remaining answer that has no problem (asks first)",
        ),
        Binding("left", "move(-1)", "Prev", id="item.prev", tooltip="The previous answer"),
        Binding("right", "move(1)", "Next", id="item.next", tooltip="The next answer"),
        Binding(
            "escape",
            "back",
            "Back",
            id="nav.back",
            tooltip="Leave the review (Esc in the editor leaves the editor); what is not accepted is not written",
        ),
    ]

    def __init__(
        self, dataset_id: int, results: list, options, *, model: str, ctype: str, subtype: str, root: str = ""
    ) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.options = options
        self.model = model
        self.ctype = ctype
        self.subtype = subtype
        self.root = root
        self.mode = "append" if options.mode == "append" else "replace"
        self.entries = [Entry(r, options.temperature) for r in results]
        self.index = 0
        self.written = 0
        self.busy = False  # a write or a regenerate is running: keys wait for it

    # --- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="review-title")
        with Horizontal(id="review-body"):
            yield PreviewPane(id="review-image")
            with Vertical(id="review-texts"):
                with VerticalScroll(id="review-old"):
                    yield Static("", id="review-old-text")
                yield TextArea("", id="review-new", soft_wrap=True, show_line_numbers=False)
                yield Static("", id="review-status")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#review-old").border_title = "Caption now"
        self.query_one("#review-image").border_title = "Image"
        if not self.root:
            self._load_root()
        self._show()

    @work(thread=True, exclusive=True, group="review-root", exit_on_error=False)
    def _load_root(self) -> None:
        from sushitui.dataset.registry import get_dataset

        root = get_dataset(self.dataset_id).root_path
        self.app.call_from_thread(self._set_root, root)

    def _set_root(self, root: str) -> None:
        self.root = root
        self._show_image()

    @property
    def entry(self) -> Entry:
        return self.entries[self.index]

    @property
    def editor(self) -> TextArea:
        return self.query_one("#review-new", TextArea)

    def counts(self) -> dict[str, int]:
        out = {PENDING: 0, ACCEPTED: 0, REJECTED: 0, KEPT_DISK: 0}
        for e in self.entries:
            out[e.decision] += 1
        return out

    def _show(self) -> None:
        e = self.entry
        r = e.result
        c = self.counts()
        title = Text()
        title.append(f"Review {self.index + 1}/{len(self.entries)} ", style="bold")
        title.append(for_terminal(result_label(r)), style="bold")
        title.append(f"  {c[ACCEPTED]} accepted · {c[REJECTED]} rejected · {c[PENDING]} to review", style="dim")
        title.append(for_terminal(f"  → {self.subtype} ({self.ctype}) by {self.model}"), style="dim")
        self.query_one("#review-title", Static).update(title)
        old = self.query_one("#review-old-text", Static)
        old.update(
            Text(for_terminal(r.old_text, multiline=True))
            if r.old_text
            else Text("(no caption of this kind yet)", style="dim italic")
        )
        verb = "appended to" if self.mode == "append" else "replaces"
        self.query_one("#review-old").border_title = f"Caption now ({self.subtype})"
        editor = self.editor
        editor.border_title = f"New caption ({verb} it)" + (
            f" · T={e.temperature:g}" if e.temperature is not None else ""
        )
        if editor.text != e.text:
            editor.load_text(e.text)
        self._show_status()
        self._show_image()

    def _show_status(self) -> None:
        e = self.entry
        r = e.result
        status = self.query_one("#review-status", Static)
        text = Text()
        problem = False
        if e.decision == ACCEPTED:
            text.append("✓ accepted: written", style="bold green")
        elif e.decision == REJECTED:
            text.append("✗ rejected: not written", style="bold")
        elif e.decision == KEPT_DISK:
            text.append("kept the file's version: not written", style="bold")
        elif r.status in ("flagged", "failed"):
            text.append(for_terminal(f"⚠ {r.status}: {r.problem}"), style="bold")
            text.append(
                "  (r asks again; accept writes it anyway once you edited or checked it)"
                if r.status == "flagged"
                else "  (r asks again)"
            )
            problem = True
        else:
            text.append("y accept · e edit · n reject · r regenerate · A accept all", style="dim")
        if e.note:
            text.append("\n" + for_terminal(e.note), style="bold")
            problem = True
        status.set_class(problem, "problem")
        status.update(text)

    def _show_image(self) -> None:
        r = self.entry.result
        rel = (r.images[-1] if r.images else None) or r.image_path
        pane = self.query_one(PreviewPane)
        if not rel:
            pane.show_message("no image")
        elif self.root:
            pane.show(os.path.join(self.root, rel))

    # --- moving -------------------------------------------------------------------------
    def _keep_edit(self) -> None:
        """What is in the editor is the text of the entry (an edit is kept when moving)."""
        if self.is_mounted:
            self.entry.text = self.editor.text

    def action_move(self, delta: int) -> None:
        self._keep_edit()
        target = self.index + delta
        if not 0 <= target < len(self.entries):
            self.notify("first answer" if delta < 0 else "last answer", timeout=1.5, markup=False)
            return
        self.index = target
        self._show()

    def _advance(self) -> None:
        """To the next answer still to review (after this one, then from the start)."""
        n = len(self.entries)
        for step in range(1, n + 1):
            i = (self.index + step) % n
            if self.entries[i].decision == PENDING:
                self.index = i
                self._show()
                return
        self._show()
        self.notify(f"All reviewed: {self.written} written. Esc goes back.", timeout=5, markup=False)

    def action_edit(self) -> None:
        if self.entry.decision == PENDING:
            editor = self.editor
            editor.focus()
            editor.move_cursor(editor.document.end)  # most edits add to the answer

    def action_back(self) -> None:
        if self.focused is self.editor:
            self._keep_edit()
            self.set_focus(None)
            return
        self._keep_edit()
        left = self.counts()[PENDING]
        if left:
            self.notify(
                f"{left} answer(s) not reviewed: not written (the answers are cached; captioning these items "
                "again sends nothing)",
                timeout=6,
                markup=False,
            )
        self.dismiss(self.written)

    # --- deciding -------------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("accept", "reject", "regenerate", "accept_all", "edit") and self.busy:
            return False
        return True

    def action_reject(self) -> None:
        self._keep_edit()
        if self.entry.decision != PENDING:
            return
        self.entry.decision = REJECTED
        self._advance()

    def action_accept(self) -> None:
        self._keep_edit()
        e = self.entry
        if e.decision != PENDING or self.busy:
            return
        if not e.text.strip():
            self.notify(
                "No caption to write: edit it (e) or ask again (r)", severity="warning", timeout=4, markup=False
            )
            return
        self.set_focus(None)
        self._accept_one(e)

    def _writer(self, e: Entry, text: str):
        from sushitui.tagger.vlm import write_caption

        def write(force: bool) -> None:
            write_caption(
                e.result.item_id,
                text,
                model=self.model,
                ctype=self.ctype,
                subtype=self.subtype,
                mode=self.mode,
                base=e.result.base,
                force=force,
            )

        return write

    @work(group="review-write", exit_on_error=False)
    async def _accept_one(self, e: Entry) -> None:
        from sushitui.dataset.item_view import take_disk_text
        from sushitui.tui.edit_flow import TAKE_DISK
        from sushitui.tui.screens.detail_support import edit_flow

        self.busy = True
        self.refresh_bindings()
        text = e.text.strip()
        try:
            outcome = await edit_flow(self).save(
                self._writer(e, text),
                lambda rel: take_disk_text(e.result.item_id, self.ctype, self.subtype, rel),
                mine_text=text,
                is_tags=False,
                what=f"{self.ctype}/{self.subtype}",
                root=self.root or None,
            )
        except Exception as exc:  # noqa: BLE001 - DatasetBusy, a bad subtype: said, nothing lost
            e.note = f"not written: {exc}"
            self.notify(for_terminal(e.note), severity="error", timeout=8, markup=False)
            self._finish_busy()
            return
        if outcome.choice == TAKE_DISK:
            e.decision, e.note = KEPT_DISK, ""
            e.result.old_text = str(outcome.disk_value or "")
        elif outcome.saved:
            e.decision, e.note = ACCEPTED, ""
            self.written += 1
        else:
            e.note = f"not written: {outcome.error}" if outcome.error else "not written yet: the conflict is open"
        self._finish_busy()
        if e.decision != PENDING and self.entry is e:
            self._advance()
        elif self.entry is e:
            self._show()

    def _finish_busy(self) -> None:
        self.busy = False
        self.refresh_bindings()
        if self.is_mounted:
            self._show()

    def action_accept_all(self) -> None:
        self._keep_edit()
        if self.busy:
            return
        todo = [e for e in self.entries if e.writable]
        if not todo:
            self.notify("Nothing left to accept (flagged answers need a look one by one)", timeout=4, markup=False)
            return
        self._accept_all(todo)

    @work(group="review-write", exit_on_error=False)
    async def _accept_all(self, todo: list[Entry]) -> None:
        from sushitui.tui.widgets.confirm import ConfirmDialog

        flagged = sum(1 for e in self.entries if e.decision == PENDING and not e.writable)
        detail = "Each is written through the conflict check: a file changed on disk since is left alone and listed."
        if flagged:
            detail += f"\n{flagged} flagged or failed answer(s) are not included: review them one by one."
        if not await self.app.push_screen_wait(
            ConfirmDialog(f"Write the {len(todo)} remaining caption(s)?", detail=detail, yes_label="Write all")
        ):
            return
        self.busy = True
        self.refresh_bindings()
        written, problems = await asyncio.to_thread(self._write_all, todo)
        self.written += written
        self._finish_busy()
        if problems:
            self.notify(
                f"{written} written; {len(problems)} not written (see each one's note): " + for_terminal(problems[0]),
                severity="warning",
                timeout=10,
                markup=False,
            )
        else:
            self.notify(f"{written} caption(s) written", timeout=4, markup=False)
        self._advance()

    def _write_all(self, todo: list[Entry]) -> tuple[int, list[str]]:
        """In a thread: one write per entry; a conflict or error is noted, never forced."""
        written, problems = 0, []
        for e in todo:
            try:
                self._writer(e, e.text.strip())(False)
            except Exception as exc:  # noqa: BLE001 - CaptionConflict, CaptionFileError, DatasetBusy: noted
                e.note = f"not written: {exc}"
                problems.append(f"{result_label(e.result)}: {exc}")
                continue
            e.decision, e.note = ACCEPTED, ""
            written += 1
        return written, problems

    # --- regenerate -------------------------------------------------------------------------
    def action_regenerate(self) -> None:
        self._keep_edit()
        e = self.entry
        if e.decision != PENDING or self.busy:
            return
        temperature = next_temperature(e.temperature)
        self.busy = True
        self.refresh_bindings()
        self.query_one("#review-status", Static).update(
            Text(f"asking again at temperature {temperature:g}…", style="bold")
        )
        self._regenerate(e, temperature)

    @work(thread=True, group="review-regenerate", exit_on_error=False)
    def _regenerate(self, e: Entry, temperature: float) -> None:
        from sushitui.tagger import vlm

        app = self.app
        try:
            report = vlm.sample(self.dataset_id, [e.result.item_id], with_temperature(self.options, temperature), n=1)
            result = report.results[0] if report.results else None
            error = None if result is not None else "the item is no longer in the dataset"
        except Exception as exc:  # noqa: BLE001 - VlmError or a bug: said, the old answer stays
            result, error = None, str(exc)
        app.call_from_thread(self._regenerated, e, temperature, result, error)

    def _regenerated(self, e: Entry, temperature: float, result, error: str | None) -> None:
        if result is not None:
            e.result = result
            e.text = result.text or ""
            e.temperature = temperature
            e.note = ""
        else:
            e.note = f"regenerate failed: {error}"
        self.busy = False
        self.refresh_bindings()
        if self.is_mounted and self.entry is e:
            self._show()
