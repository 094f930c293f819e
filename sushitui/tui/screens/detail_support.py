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
- ``BindingCommands``: a command-palette provider listing the active screen's bindings
  (NF-6: every binding in the footer and the command palette).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from functools import partial
from typing import Callable

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.widgets import Input

from sushitui.dataset.caption_files import CaptionConflict, CaptionFileError
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


class BindingCommands(Provider):
    """The active screen's bindings as command-palette commands."""

    def _commands(self) -> list[tuple[str, str, str]]:
        screen = self.screen
        title = getattr(screen, "PALETTE_PREFIX", type(screen).__name__)
        out = []
        for b in getattr(screen, "BINDINGS", []):
            if not isinstance(b, Binding) or not b.description:
                continue
            key = b.key.split(",")[0]
            out.append((f"{title}: {b.description}", b.action, f"key: {key}" + (f" — {b.tooltip}" if b.tooltip else "")))
        return out

    async def discover(self) -> Hits:
        for name, action, help_text in self._commands():
            yield DiscoveryHit(name, partial(self.screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self.screen.run_action, action), help=help_text)
