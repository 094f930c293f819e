"""Pieces shared by the item detail and quick tagging screens.

- ``preview_cache``: the one cache of large previews (``sushitui.dataset.preview``), so
  an image prefetched by one screen is instant in the other.
- ``tag_input_widget``: the dictionary helper's autocompleting ``TagInput`` when it is
  installed, a plain Input otherwise (both post a ``TagInput.Submitted`` message).
- ``resolve_alias`` / ``load_group_colors``: aliases (TAG-2) and pill colours (TAG-1)
  from the tags helper, degrading to no-ops when they are missing.
- ``save_with_conflict_dialog``: the one save loop both screens use: run the write in a
  thread, and when the file changed on disk show ``ConflictDialog`` and do what the
  user chose. Never a silent overwrite.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Callable

from textual.widgets import Input

from sushitui.dataset.caption_files import CaptionConflict, CaptionFileError, LossyCaption
from sushitui.sanitize import for_terminal
from sushitui.dataset.preview import PreviewCache, shared_preview_cache


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
    except Exception:  # noqa: BLE001 - a broken alias table must not stop typing
        return tag


def load_group_colors() -> dict[str, str]:
    """{match key: colour}; run in a worker (reads the database)."""
    try:
        from sushitui.tags.groups import group_colors
    except ImportError:
        return {}
    try:
        return dict(group_colors())
    except Exception:  # noqa: BLE001 - colours are decoration; never fail a screen for them
        return {}


@dataclass
class SaveOutcome:
    saved: bool  # the file now holds the wanted version (written or chosen from disk)
    choice: str | None = None  # None (no conflict) | mine | disk | cancel
    disk_value: object = None  # what was taken from disk (tags list or text)
    error: str | None = None


async def _confirm_lossy_save(screen, write: Callable[[bool], object], exc: CaptionFileError, what: str) -> SaveOutcome:
    """The file holds bytes that are not clean text (binary, NUL, undecodable): saving
    replaces them with the text shown. Say what will be lost and ask."""
    from sushitui.tui.widgets.confirm import ConfirmDialog

    agreed = await screen.app.push_screen_wait(ConfirmDialog(
        f"Replace {what}? The file is not clean text.",
        detail=f"{exc}\n\nSaving writes the text shown here; the file's original bytes are lost.",
        yes_label="Replace", danger=True,
    ))
    if not agreed:
        screen.notify("Not saved: the file was left as it is.", severity="warning", timeout=6, markup=False)
        return SaveOutcome(False, "cancel", error=str(exc))
    try:
        await asyncio.to_thread(write, True)
    except CaptionFileError as again:
        screen.notify(for_terminal(again), title="Not saved", severity="error", timeout=10, markup=False)
        return SaveOutcome(False, error=str(again))
    return SaveOutcome(True)


async def save_with_conflict_dialog(
    screen,
    write: Callable[[bool], object],
    take_disk: Callable[[str | None], object],
    *,
    mine_text: str,
    is_tags: bool,
    what: str,
    root: str | None = None,
) -> SaveOutcome:
    """Run ``write(force)`` in a thread; on a conflict ask the user (must run in a worker).

    ``take_disk(rel_path)`` indexes and returns the file's version when the user picks it.
    """
    from sushitui.tui.screens.conflict import CANCEL, KEEP_MINE, TAKE_DISK, ConflictDialog

    try:
        await asyncio.to_thread(write, False)
        return SaveOutcome(True)
    except CaptionConflict as exc:
        conflict = exc
    except LossyCaption as exc:
        return await _confirm_lossy_save(screen, write, exc, what)
    except CaptionFileError as exc:
        screen.notify(for_terminal(exc), title="Not saved", severity="error", timeout=10, markup=False)
        return SaveOutcome(False, error=str(exc))
    rel = None
    shown = str(conflict.path)
    if root:
        try:
            rel = os.path.relpath(conflict.path, root)
            shown = rel
        except ValueError:
            rel = None
    choice = await screen.app.push_screen_wait(
        ConflictDialog(shown, mine_text, conflict.disk_text, is_tags=is_tags, what=what)
    )
    try:
        if choice == KEEP_MINE:
            await asyncio.to_thread(write, True)
            screen.notify(f"Kept your version of {for_terminal(shown)}", timeout=4, markup=False)
            return SaveOutcome(True, KEEP_MINE)
        if choice == TAKE_DISK:
            value = await asyncio.to_thread(take_disk, rel)
            screen.notify(f"Reloaded {for_terminal(shown)} from disk", timeout=4, markup=False)
            return SaveOutcome(True, TAKE_DISK, value)
    except CaptionConflict as exc:
        screen.notify(for_terminal(exc), title="Still in conflict", severity="error", timeout=10, markup=False)
        return SaveOutcome(False, choice, error=str(exc))
    except CaptionFileError as exc:
        screen.notify(for_terminal(exc), title="Not saved", severity="error", timeout=10, markup=False)
        return SaveOutcome(False, choice, error=str(exc))
    screen.notify("Not saved: the conflict is still open; save again to choose.", severity="warning", timeout=6, markup=False)
    return SaveOutcome(False, CANCEL)
