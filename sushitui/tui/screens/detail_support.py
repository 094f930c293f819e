"""Pieces shared by the item detail and quick tagging screens.

- ``preview_cache``: the one cache of large previews (``sushitui.dataset.preview``), so
  an image prefetched by one screen is instant in the other.
- ``tag_input_widget``: the dictionary helper's autocompleting ``TagInput`` when it is
  installed, a plain Input otherwise (both post a ``TagInput.Submitted`` message).
- ``resolve_alias`` / ``load_group_colors``: aliases (TAG-2) and pill colours (TAG-1)
  from the tags helper, degrading to no-ops when they are missing.
- ``edit_flow``: the one save flow both screens use (``sushitui.tui.edit_flow``), with
  ``ConflictDialog`` when the file changed on disk and a confirmation before replacing a
  file that is not clean text. Never a silent overwrite.
- ``report_unsaved``: edits that could not be written as a screen closed are shown, or
  printed after exit when the app is gone.
"""

from __future__ import annotations

import logging

from textual.widgets import Input

from sushitui.dataset.caption_files import CaptionFileError
from sushitui.dataset.preview import PreviewCache, shared_preview_cache
from sushitui.sanitize import for_terminal
from sushitui.tui.edit_flow import ConflictQuestion, EditFlow, SaveOutcome  # noqa: F401 - SaveOutcome: re-exported

log = logging.getLogger(__name__)


def preview_cache() -> PreviewCache:
    return shared_preview_cache()


class FallbackTagInput(Input):
    """A plain tag entry used until the autocompleting TagInput exists."""

    class Submitted(Input.Submitted):
        @property
        def tag(self) -> str:
            return self.value


FallbackTagInput.Submitted.handler_name = "on_tag_input_submitted"


def tag_input_widget(dataset_id: int | None, *, id: str, placeholder: str = "tag (Enter adds, Esc closes)") -> Input:
    try:
        from sushitui.tui.widgets.tag_input import TagInput  # helper "dict": autocomplete
    except ImportError:
        return FallbackTagInput(placeholder=placeholder, id=id)
    return TagInput(placeholder=placeholder, dataset_id=dataset_id, id=id)


def submitted_tag(message: object) -> str:
    return str(getattr(message, "tag", None) or getattr(message, "value", "") or "")


def resolve_alias(tag: str) -> str:
    try:
        from sushitui.tags.aliases import resolve
    except ImportError:
        return tag
    try:
        return resolve(tag) or tag
    except Exception:  # noqa: BLE001 - a broken alias table must not stop typing (any database error)
        log.debug("alias lookup of %r failed", tag, exc_info=True)
        return tag


def load_group_colors() -> dict[str, str]:
    """{match key: colour}; run in a worker (reads the database)."""
    try:
        from sushitui.tags.groups import group_colors
    except ImportError:
        return {}
    try:
        return dict(group_colors())
    except Exception:  # noqa: BLE001 - colours are decoration; never fail a screen for them (any database error)
        log.debug("loading group colours failed", exc_info=True)
        return {}


def edit_flow(screen) -> EditFlow:
    """The save/conflict flow (``sushitui.tui.edit_flow``) with this screen's dialogs:
    ``ConflictDialog`` for a file changed on disk, ``_confirm_lossy_save`` for a file
    that is not clean text, the screen's notifications. Its saves must run in a worker
    (the dialogs are awaited)."""

    async def ask_conflict(question: ConflictQuestion) -> str:
        from sushitui.tui.screens.conflict import ConflictDialog

        return await screen.app.push_screen_wait(
            ConflictDialog(
                question.shown_path,
                question.mine_text,
                question.disk_text,
                is_tags=question.is_tags,
                what=question.what,
            )
        )

    async def confirm_lossy(what: str, exc: CaptionFileError) -> bool:
        return await _confirm_lossy_save(screen, what, exc)

    def notify(message: str, **kwargs) -> None:
        screen.notify(message, markup=False, **kwargs)

    return EditFlow(ask_conflict=ask_conflict, confirm_lossy=confirm_lossy, notify=notify)


async def _confirm_lossy_save(screen, what: str, exc: CaptionFileError) -> bool:
    """The file holds bytes that are not clean text (binary, NUL, undecodable): saving
    replaces them with the text shown. Say what will be lost and ask."""
    from sushitui.tui.widgets.confirm import ConfirmDialog

    return bool(
        await screen.app.push_screen_wait(
            ConfirmDialog(
                f"Replace {what}? The file is not clean text.",
                detail=f"{exc}\n\nSaving writes the text shown here; the file's original bytes are lost.",
                yes_label="Replace",
                danger=True,
            )
        )
    )


def report_unsaved(app, problems: list[str]) -> None:
    """Edits that could not be written as a screen closed: a notification while the app
    runs; once it is closing, kept in its ``exit_report`` for the TUI entry point to print
    after exit (an app without one: the log). Never dropped."""
    if not problems:
        return
    if app.is_running:
        for problem in problems:
            app.notify(
                for_terminal(problem, multiline=True),
                title="Edit not saved",
                severity="error",
                timeout=30,
                markup=False,
            )
        return
    report = getattr(app, "exit_report", None)
    for problem in problems:
        if report is not None:
            report.add(problem)
        else:
            log.error("%s", problem)
