"""Saving a caption editor's work (IT-8, QT-2), with no UI in it: the one save and
conflict flow of the item detail and quick tagging screens.

``EditFlow.save`` runs a write in a thread; when the file changed on disk since the
editor read it (``CaptionConflict``) it asks the user through the injected
``ask_conflict`` coroutine (the screens pass one that opens ``ConflictDialog``) and does
what they chose; a file that is not clean text (``LossyCaption``) is replaced only after
``confirm_lossy`` agreed. Never a silent overwrite. ``save_tags``/``save_text`` add what
an editor does with the outcome (mark saved, adopt the disk's version), so both screens
behave alike.

Saves are checked against the ``ItemView`` the editor loaded (``view=``): another
process's edit since is a conflict, and the view learns each state written.

``write_left_edits`` is the way out: edits younger than the autosave delay when a screen
closes are written if their files are unchanged (a conflict is never forced), and each
one that could not be written comes back as a message naming the file, the reason and
the user's version, for the screen to show or, when the app is gone, for the TUI entry
point to print after exit (``ExitReport``). Nothing is dropped.

This module must not import textual (it is tested, and could be reused, without it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence

from sushitui.dataset.caption_files import CaptionConflict, CaptionFileError, LossyCaption
from sushitui.dataset.captions import file_subtype
from sushitui.dataset.item_view import ItemView, load_item_view, save_tags, save_text, take_disk_tags, take_disk_text
from sushitui.dataset.tag_editing import TagListEditor
from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import join_tags

log = logging.getLogger(__name__)

# The user's answers to a conflict (the values ConflictDialog returns).
KEEP_MINE = "mine"
TAKE_DISK = "disk"
CANCEL = "cancel"


@dataclass
class SaveOutcome:
    saved: bool  # the file now holds the wanted version (written or chosen from disk)
    choice: str | None = None  # None (no conflict) | mine | disk | cancel
    disk_value: object = None  # what was taken from disk (tags list or text)
    error: str | None = None


@dataclass
class ConflictQuestion:
    """What the conflict dialog shows: both versions of one caption file."""

    shown_path: str
    mine_text: str
    disk_text: str | None
    is_tags: bool
    what: str


@dataclass
class TextState:
    """One text caption being edited: the caption it is and what is on disk."""

    ctype: str
    subtype: str | None  # None: no caption file yet (the first save creates one)
    baseline: str
    language: str
    caption_id: int | None
    source: str
    file_path: str | None


AskConflict = Callable[[ConflictQuestion], Awaitable[str]]
ConfirmLossy = Callable[[str, CaptionFileError], Awaitable[bool]]
Notify = Callable[..., object]  # notify(message, *, title=, severity=, timeout=)


class EditFlow:
    """Save, ask on a conflict, do what the user chose. The UI comes in as callbacks."""

    def __init__(self, *, ask_conflict: AskConflict, confirm_lossy: ConfirmLossy, notify: Notify) -> None:
        self._ask_conflict = ask_conflict
        self._confirm_lossy = confirm_lossy
        self._notify = notify

    async def save(
        self,
        write: Callable[[bool], object],
        take_disk: Callable[[str | None], object],
        *,
        mine_text: str,
        is_tags: bool,
        what: str,
        root: str | None = None,
    ) -> SaveOutcome:
        """Run ``write(force)`` in a thread; on a conflict ask the user. ``take_disk(rel)``
        indexes and returns the file's version when the user picks it."""
        try:
            await asyncio.to_thread(write, False)
            return SaveOutcome(True)
        except CaptionConflict as exc:
            conflict = exc
        except LossyCaption as exc:
            return await self._lossy(write, exc, what)
        except CaptionFileError as exc:
            self._notify(for_terminal(exc), title="Not saved", severity="error", timeout=10)
            return SaveOutcome(False, error=str(exc))
        rel = None
        shown = str(conflict.path)
        if root:
            try:
                rel = os.path.relpath(conflict.path, root)
                shown = rel
            except ValueError:
                rel = None
        choice = await self._ask_conflict(ConflictQuestion(shown, mine_text, conflict.disk_text, is_tags, what))
        try:
            if choice == KEEP_MINE:
                await asyncio.to_thread(write, True)
                self._notify(f"Kept your version of {for_terminal(shown)}", timeout=4)
                return SaveOutcome(True, KEEP_MINE)
            if choice == TAKE_DISK:
                value = await asyncio.to_thread(take_disk, rel)
                self._notify(f"Reloaded {for_terminal(shown)} from disk", timeout=4)
                return SaveOutcome(True, TAKE_DISK, value)
        except CaptionConflict as exc:
            self._notify(for_terminal(exc), title="Still in conflict", severity="error", timeout=10)
            return SaveOutcome(False, choice, error=str(exc))
        except CaptionFileError as exc:
            self._notify(for_terminal(exc), title="Not saved", severity="error", timeout=10)
            return SaveOutcome(False, choice, error=str(exc))
        self._notify("Not saved: the conflict is still open; save again to choose.", severity="warning", timeout=6)
        return SaveOutcome(False, CANCEL)

    async def _lossy(self, write: Callable[[bool], object], exc: CaptionFileError, what: str) -> SaveOutcome:
        """The file holds bytes that are not clean text: saving replaces them with the
        text shown, so only after the user agreed."""
        if not await self._confirm_lossy(what, exc):
            self._notify("Not saved: the file was left as it is.", severity="warning", timeout=6)
            return SaveOutcome(False, CANCEL, error=str(exc))
        try:
            await asyncio.to_thread(write, True)
        except CaptionFileError as again:
            self._notify(for_terminal(again), title="Not saved", severity="error", timeout=10)
            return SaveOutcome(False, error=str(again))
        return SaveOutcome(True)

    async def save_tags(
        self,
        view: ItemView | None,
        item_id: int,
        subtype: str,
        tags: Sequence[str],
        *,
        editor: TagListEditor | None = None,
        what: str,
    ) -> SaveOutcome:
        """Save ``tags`` as the item's tag caption ``subtype``; the ``editor`` that holds
        them is marked saved, or takes the disk's version when the user chose it."""
        tags = list(tags)
        outcome = await self.save(
            lambda force: save_tags(item_id, subtype, tags, force=force, view=view),
            lambda rel: take_disk_tags(item_id, subtype, rel, view=view),
            mine_text=join_tags(tags),
            is_tags=True,
            what=what,
            root=view.root if view is not None else None,
        )
        if editor is not None:
            if outcome.choice == TAKE_DISK:
                editor.adopt(outcome.disk_value or [])  # type: ignore[arg-type]
            elif outcome.saved:
                editor.mark_saved(tags)
        return outcome

    async def save_text(self, view: ItemView, state: TextState, text: str, *, what: str) -> SaveOutcome:
        """Save ``text`` as the caption ``state`` edits; ``state.baseline`` becomes what is
        on disk (the text, or the disk's version the user chose). The first save of a
        caption that had no file yet learns the caption it created."""
        outcome = await self.save(
            lambda force: save_text(
                view.item_id, state.ctype, state.subtype, text, language=state.language, force=force, view=view
            ),
            lambda rel: take_disk_text(view.item_id, state.ctype, state.subtype or "", rel, view=view),
            mine_text=text,
            is_tags=False,
            what=what,
            root=view.root,
        )
        if outcome.choice == TAKE_DISK:
            state.baseline = str(outcome.disk_value or "")
        elif outcome.saved:
            state.baseline = text
            if state.caption_id is None or state.subtype is None:
                saved = await asyncio.to_thread(load_item_view, view.item_id)
                cap = next((c for c in saved.captions if c.type == state.ctype and c.file_path), None)
                if cap is not None:
                    state.caption_id, state.subtype, state.file_path, state.source = (
                        cap.id,
                        cap.subtype,
                        cap.file_path,
                        cap.source,
                    )
        return outcome


# --- one item's editors -----------------------------------------------------------------


class TextSource(Protocol):
    """A text editor of one caption (the item detail's text tabs)."""

    state: TextState | None

    def value(self) -> str: ...

    def set_text(self, text: str) -> None: ...


class ItemEdits:
    """The editors of one item, as the item detail screen holds them: a tag editor per
    tag caption (subtype) and a text editor per prose caption type, all checked against
    ``view``. Saves them in order, gives back what is left when the screen closes."""

    def __init__(
        self, view: ItemView, texts: dict[str, TextSource], resolve: Callable[[str], str] | None = None
    ) -> None:
        self.view = view
        self.texts = texts
        self._resolve = resolve
        self.editors = {sub: self.new_editor(view.tags.get(sub, [])) for sub in view.tag_subtypes}

    def new_editor(self, tags: Sequence[str] = ()) -> TagListEditor:
        return TagListEditor(tags, resolve=self._resolve)

    def _dirty_texts(self) -> list[tuple[str, TextSource, str]]:
        found = []
        for ctype, source in self.texts.items():
            text = source.value()
            if source.state is not None and text != source.state.baseline:
                found.append((ctype, source, text))
        return found

    @property
    def dirty(self) -> bool:
        return any(ed.dirty for ed in self.editors.values()) or bool(self._dirty_texts())

    async def save_all(
        self, flow: EditFlow, text_label: Callable[[str], str] = str
    ) -> tuple[bool, list[tuple[str, str]]]:
        """Save every dirty editor, in order. Returns (all saved, [(subtype, subtype now
        edited)] for tags of the image's own metadata, which were saved to a file of
        their own: ``follow_embedded``)."""
        view = self.view
        ok, moved = True, []
        for subtype, ed in list(self.editors.items()):
            if ed.dirty:
                outcome = await flow.save_tags(view, view.item_id, subtype, ed.tags, editor=ed, what=f"tags/{subtype}")
                if outcome.saved and outcome.choice != TAKE_DISK and (written := self.follow_embedded(subtype)):
                    moved.append((subtype, written))
                ok &= outcome.saved
        for ctype, source, text in self._dirty_texts():
            state = source.state
            assert state is not None  # _dirty_texts only lists loaded editors
            outcome = await flow.save_text(view, state, text, what=text_label(ctype))
            if outcome.choice == TAKE_DISK:
                source.set_text(state.baseline)
            ok &= outcome.saved
        return ok, moved

    def follow_embedded(self, subtype: str) -> str | None:
        """Tags of the image's own metadata (EXIF/XMP) were saved: the core wrote them to
        a caption file of their own (``captions.file_subtype``). That one is edited from
        now on; the metadata's tags stay under their own subtype, as a reload shows.
        Returns the new subtype, or None when ``subtype`` is a caption file's."""
        written = file_subtype(subtype)
        view = self.view
        if written == subtype or not any(
            c.subtype == subtype and c.type == "tags" and c.embedded for c in view.captions
        ):
            return None
        self.editors[written] = self.editors.pop(subtype)
        self.editors[subtype] = self.new_editor(view.tags.get(subtype, []))
        return written

    def left_edits(self) -> list[LeftEdit]:
        """The unsaved edits, for ``write_left_edits`` as the screen closes."""
        view = self.view
        edits = [left_tag_edit(view, view.item_id, sub, ed.tags) for sub, ed in self.editors.items() if ed.dirty]
        edits += [left_text_edit(view, source.state, text) for _c, source, text in self._dirty_texts() if source.state]
        return edits


# --- the way out ----------------------------------------------------------------------------


@dataclass
class LeftEdit:
    """An edit still unsaved when its screen closes."""

    where: str  # the caption file (dataset-relative) or the item and caption, for the user
    mine_text: str  # the user's version, given back when it cannot be written
    write: Callable[[], object]


def left_tag_edit(view: ItemView | None, item_id: int, subtype: str, tags: Sequence[str]) -> LeftEdit:
    tags = list(tags)
    where = f"item {item_id}: tags/{subtype}"
    if view is not None:
        cap = next((c for c in view.captions if c.type == "tags" and c.subtype == subtype and c.file_path), None)
        where = cap.file_path if cap is not None else f"{_item_name(view)}: tags/{subtype}"
    return LeftEdit(where, join_tags(tags), lambda: save_tags(item_id, subtype, tags, view=view))


def left_text_edit(view: ItemView, state: TextState, text: str) -> LeftEdit:
    where = state.file_path or f"{_item_name(view)}: {state.ctype}"
    return LeftEdit(
        where,
        text,
        lambda: save_text(view.item_id, state.ctype, state.subtype, text, language=state.language, view=view),
    )


def _item_name(view: ItemView) -> str:
    return f"{view.rel_dir}/{view.base_name}" if view.rel_dir else view.base_name


def write_left_edits(edits: Sequence[LeftEdit]) -> list[str]:
    """Write each edit unless its file changed on disk (never forced); run it in a
    thread. Returns one message per edit that was not written."""
    problems = []
    for edit in edits:
        try:
            edit.write()
        except CaptionConflict:
            problems.append(_not_saved(edit, "the file changed on disk since it was read (not overwritten)"))
        except CaptionFileError as exc:
            problems.append(_not_saved(edit, str(exc)))
        except Exception as exc:  # noqa: BLE001 - any failure on the way out is reported, never lost
            log.exception("saving %s on the way out failed", edit.where)
            problems.append(_not_saved(edit, f"{type(exc).__name__}: {exc}"))
    return problems


def _not_saved(edit: LeftEdit, reason: str) -> str:
    return f"Not saved: {edit.where}: {reason}\n  your version: {edit.mine_text}"


class ExitReport:
    """Problems found while the app was closing, when nothing can be shown any more:
    the TUI entry point prints them once the terminal is given back."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def add(self, message: str) -> None:
        log.error("%s", message)
        with self._lock:
            self._lines.append(message)

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def shown_lines(self) -> list[str]:
        """The problems as lines for the terminal (sanitised: they name files); the
        entry point prints them, this module never does."""
        return [f"sushitui: {for_terminal(line, multiline=True)}" for line in self.lines]
