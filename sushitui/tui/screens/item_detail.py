"""Item detail (IT-1..9): the image, every caption of one item, its metadata, and safe
editing with autosave, conflict handling and undo.

The panes are widgets (``sushitui.tui.widgets.detail``) that report edits by message;
this screen loads the item, saves and navigates. Saving (IT-8): 500 ms after the last
edit, on leaving the item (←/→, Esc) and on ``ctrl+s``, through the one save flow
(``sushitui.tui.edit_flow``; a file changed on disk opens ``ConflictDialog``). Edits left
when the screen closes are written on the way out; what cannot be written is shown, or
printed after the app exits. Reads and writes run in workers; the UI thread only draws.
"""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import TextArea

from sushitui.dataset.item_view import ItemView, load_item_view
from sushitui.dataset.tag_editing import TagListEditor
from sushitui.tui.edit_flow import ItemEdits, write_left_edits
from sushitui.tui.screens.detail_keys import DETAIL_BINDINGS, DetailKeys
from sushitui.tui.screens.detail_support import edit_flow, load_group_colors, report_unsaved, resolve_alias
from sushitui.tui.screens.marks_keys import CropKey, MarkKeys, TrashKeys
from sushitui.tui.widgets.detail import TAB_LABELS, ImagePane, MetaPane, TagsTab, TextTab
from sushitui.tui.widgets.detail.caption_list import CaptionEditDialog, ExportCaptionDialog
from sushitui.tui.widgets.detail.caption_pane import CaptionPane
from sushitui.tui.widgets.detail.meta_pane import DetailTitle
from sushitui.tui.widgets.detail.panes import DetailPanes
from sushitui.tui.widgets.key_bar import KeyBar

__all__ = ["CaptionEditDialog", "ExportCaptionDialog", "ItemDetailScreen"]

AUTOSAVE_DELAY_S = 0.5


class ItemLoaded(Message):
    """A load finished: ``view``, or ``error`` when the item could not be read."""

    def __init__(
        self, seq: int, view: ItemView | None, error: str | None = None, colors: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.seq = seq
        self.view = view
        self.error = error
        self.tag_colors = colors


class ItemDetailScreen(DetailKeys, MarkKeys, TrashKeys, CropKey, Screen):
    """One item: image, captions, metadata; tag editing with autosave and undo."""

    PALETTE_NAME = "item"

    DEFAULT_CSS = """
    ItemDetailScreen { layout: vertical; }
    """

    BINDINGS = DETAIL_BINDINGS

    def __init__(
        self,
        item_id: int,
        item_ids: list[int] | None = None,
        *,
        dataset_id: int | None = None,
        query: str | None = None,
        sort: str = "name",
        desc: bool = False,
    ) -> None:
        """``item_ids``: the order ←/→ walk through. Without it, pass ``dataset_id`` (and
        the browser's ``query``/``sort``/``desc``) and the whole result is fetched in a
        worker, so ←/→ never stop at a page boundary."""
        super().__init__()
        self._result_spec = (dataset_id, query, sort, desc) if item_ids is None and dataset_id is not None else None
        self.item_ids: list[int] = list(item_ids) if item_ids else [item_id]
        try:
            self.index = self.item_ids.index(item_id)
        except ValueError:
            self.item_ids.insert(0, item_id)
            self.index = 0
        self.item_id = item_id
        self.view: ItemView | None = None
        self.edits: ItemEdits | None = None  # the editors of the item shown
        self._autosave_timer: Timer | None = None
        self._save_lock = asyncio.Lock()
        self._load_seq = 0
        self._leaving = False
        self._nav_delta = 0
        self._nav_running = False
        self._title = DetailTitle(id="detail-title")
        self._image = ImagePane(id="image-pane")
        self._pane = CaptionPane(self._save_all, self._load, id="caption-pane")
        self._meta = MetaPane(id="meta-pane")
        self._panes = DetailPanes(self._image, self._pane, self._meta, id="detail-panes")

    # The tag editors live in the Tags tab; these read them (tests and the help use them).
    @property
    def editors(self) -> dict[str, TagListEditor]:
        return self._pane.tags.editors

    @property
    def editor(self) -> TagListEditor | None:
        return self._pane.tags.editor

    @property
    def subtype(self) -> str:
        return self._pane.tags.subtype

    @property
    def image_tab(self) -> int:
        return self._image.image_tab

    # --- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._panes
        yield KeyBar()

    def on_mount(self) -> None:
        self._pane.tags.pills.focus()
        self._load(self.item_id)
        if self._result_spec is not None:
            self._result_worker(*self._result_spec)

    @work(thread=True, group="detail-result", exit_on_error=False)
    def _result_worker(self, dataset_id: int, query: str | None, sort: str, desc: bool) -> None:
        from sushitui.dataset.items import result_ids

        try:
            ids = result_ids(dataset_id, query, sort, desc)
        except Exception:  # noqa: BLE001 - without the result, ←/→ simply stay on this item
            return
        self.app.call_from_thread(self._result_ready, ids)

    def _result_ready(self, ids: list[int]) -> None:
        current = self.item_ids[self.index] if self.item_ids else self.item_id
        if current in ids:
            self.item_ids = ids
            self.index = ids.index(current)
            self._refresh_title()
            self._prefetch_neighbours()

    # --- loading --------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="detail-load", exit_on_error=False)
    def _load_worker(self, item_id: int, seq: int, want_colors: bool) -> None:
        colors = load_group_colors() if want_colors else None
        try:
            view, error = load_item_view(item_id), None
        except Exception as exc:  # noqa: BLE001 - a vanished item is shown, not raised
            view, error = None, f"item {item_id} could not be loaded: {exc}"
        self.post_message(ItemLoaded(seq, view, error, colors))

    def _load(self, item_id: int) -> None:
        self._load_seq += 1
        self.item_id = item_id
        self._load_worker(item_id, self._load_seq, not self._pane.tags.tag_colors)

    def on_item_loaded(self, message: ItemLoaded) -> None:
        if message.tag_colors is not None:
            self._pane.tags.set_colors(message.tag_colors)
        if message.seq != self._load_seq:
            return  # a newer item was asked for since: this result, or failure, is stale
        if message.view is None:
            self.view, self.edits = None, None
            self._pane.clear()
            self._title.show_error(message.error or "")
            return
        view = self.view = message.view
        self._pane.load_texts(view)
        self.edits = ItemEdits(view, dict(self._pane.texts), resolve_alias)
        self._pane.show(view, self.edits.editors)
        self.marks_label = ""
        self._refresh_title()
        self.load_marks_label(view.item_id, self._refresh_title)
        self._meta.show(view)
        self._image.show_item(view)
        self._prefetch_neighbours()

    def mark_targets(self) -> list[int] | None:
        return [self.view.item_id] if self.view is not None else None

    def marks_changed(self, item_ids: list[int]) -> None:
        if self.view is not None and self.view.item_id in item_ids:
            self.load_marks_label(self.view.item_id, self._refresh_title)

    async def before_trash(self) -> bool:
        return await self._save_all()  # nothing left to write into a file about to leave

    def items_removed(self, item_ids: list[int]) -> None:
        self.item_ids = [i for i in self.item_ids if i not in item_ids]
        if not self.item_ids:
            self.edits = None
            self.app.pop_screen()
            return
        self.index = min(self.index, len(self.item_ids) - 1)
        self._load(self.item_ids[self.index])

    def items_restored(self, item_ids: list[int]) -> None:
        if item_ids:
            self.item_ids[self.index : self.index] = item_ids
            self._load(self.item_ids[self.index])

    def _refresh_title(self) -> None:
        if self.view is not None:
            self._title.show(self.view, self.index, len(self.item_ids), self._dirty(), self.marks_label)

    def _prefetch_neighbours(self) -> None:
        ids = [self.item_ids[i] for i in (self.index + 1, self.index - 1) if 0 <= i < len(self.item_ids)]
        if ids:
            self._image.prefetch(ids)

    # --- keys that need the screen (the rest: detail_keys.DetailKeys) ---------------

    def action_remove_tag(self) -> None:
        if self._pane.captions.has_focus_on_list:
            self._pane.captions.request_delete()
        elif tab := self._pane.tags_tab():
            tab.remove()

    def action_revert(self) -> None:
        if self._pane.revert():
            self._refresh_title()
            self.notify("reverted to the saved version (ctrl+z undoes the revert of tags)", timeout=3, markup=False)

    @on(MetaPane.ImageChosen)
    def _image_chosen(self, message: MetaPane.ImageChosen) -> None:
        self._image.select(message.index)

    @on(TagsTab.Edited)
    @on(TextTab.Edited)
    def _edited(self) -> None:
        self._refresh_title()
        self._schedule_autosave()

    # --- saving (the one flow: sushitui.tui.edit_flow) --------------------------------

    def _dirty(self) -> bool:
        return self.edits is not None and self.edits.dirty

    def _schedule_autosave(self) -> None:
        if self._autosave_timer is not None:
            self._autosave_timer.stop()
        self._autosave_timer = self.set_timer(AUTOSAVE_DELAY_S, self._autosave)

    def _autosave(self) -> None:
        self._autosave_timer = None
        if self._dirty():
            self._save_worker()

    @work(group="detail-save", exit_on_error=False)
    async def _save_worker(self) -> None:
        await self._save_all()

    async def _save_all(self) -> bool:
        """Save every dirty tag caption and text of the current item, in order.
        Returns False when something stayed unsaved (conflict cancelled, write error)."""
        if self._autosave_timer is not None:
            self._autosave_timer.stop()
            self._autosave_timer = None
        async with self._save_lock:
            edits = self.edits
            if edits is None:
                return True
            ok, moved = await edits.save_all(edit_flow(self), TAB_LABELS.__getitem__)
            for subtype, written in moved:
                self._pane.tags.followed(subtype, written)
            if self.edits is edits:
                self._pane.after_save()
                self._refresh_title()
            return ok

    def action_save(self) -> None:
        self._explicit_save()

    @work(group="detail-save", exit_on_error=False)
    async def _explicit_save(self) -> None:
        if not self._dirty():
            self.notify("nothing to save", timeout=2, markup=False)
            return
        if await self._save_all():
            self.notify("saved", timeout=2, markup=False)

    async def on_unmount(self) -> None:
        """The screen closes (the app quits, ctrl+o) with edits younger than the autosave
        delay: write them in a thread unless their files changed on disk (a conflict is
        never forced). What could not be written is shown, or printed after exit."""
        if self.edits is not None and (left := self.edits.left_edits()):
            report_unsaved(self.app, await asyncio.to_thread(write_left_edits, left))

    # --- navigation -----------------------------------------------------------------

    def action_prev_item(self) -> None:
        self._request_nav(-1)

    def action_next_item(self) -> None:
        self._request_nav(1)

    def _request_nav(self, delta: int) -> None:
        # Key repeats while a save is running add up instead of cancelling it half-way:
        # the running navigation takes the sum when the save is done.
        self._nav_delta += delta
        if not self._nav_running:
            self._nav_running = True
            self._navigate()

    @work(group="detail-nav", exit_on_error=False)
    async def _navigate(self) -> None:
        try:
            while self._nav_delta:
                delta, self._nav_delta = self._nav_delta, 0
                target = max(0, min(len(self.item_ids) - 1, self.index + delta))
                if target == self.index:
                    self.notify("first item" if delta < 0 else "last item", timeout=1.5, markup=False)
                    continue
                if not await self._save_all():
                    self._nav_delta = 0
                    return
                self.index = target
                self._pane.tags.close_input()
                self._load(self.item_ids[target])
        finally:
            self._nav_running = False

    def action_back(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "tag-input":
            self._pane.tags.close_input()
        elif isinstance(focused, TextArea):
            self._pane.leave_editor()
        else:
            self._leave()

    @work(group="detail-leave", exit_on_error=False)
    async def _leave(self) -> None:
        if self._leaving:
            return
        self._leaving = True
        try:
            if not await self._save_all():
                return
        finally:
            self._leaving = False
        self.dismiss(self.item_ids[self.index] if self.item_ids else None)
