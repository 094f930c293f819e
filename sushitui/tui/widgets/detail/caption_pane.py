"""The caption pane: the tabs of one item's captions (Tags, the prose types, All
captions) and what is done from them: switching tabs, the caption language, editing or
deleting a caption from the list, exporting the caption shown. Saving stays with the
screen: the pane is given its ``save_all`` and ``reload`` coroutines/callbacks, and
every edit made here goes into the editors those save (one save flow)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Awaitable, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import TabbedContent, TabPane, Tabs

from sushitui.dataset.caption_files import CaptionFileError, write_atomic
from sushitui.dataset.item_view import TEXT_TAB_TYPES, CaptionView, ItemView, delete_caption, load_item_view
from sushitui.dataset.tag_editing import TagListEditor
from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import join_tags, split_tags
from sushitui.tui.edit_flow import TextState
from sushitui.tui.screens.detail_support import edit_flow
from sushitui.tui.widgets.detail.caption_list import CaptionEditDialog, CaptionList, ExportCaptionDialog
from sushitui.tui.widgets.detail.tags_tab import TagsTab
from sushitui.tui.widgets.detail.text_tab import TAB_LABELS, TextTab


class CaptionPane(Vertical):
    """The caption tabs of one item."""

    DEFAULT_CSS = """
    CaptionPane { width: 3fr; min-width: 36; }
    CaptionPane #caption-tabs { height: 1fr; }
    """

    def __init__(self, save_all: Callable[[], Awaitable[bool]], reload: Callable[[int], None], **kwargs) -> None:
        super().__init__(**kwargs)
        self._save_all = save_all
        self._reload = reload
        self.view: ItemView | None = None
        self.tags = TagsTab(TAB_LABELS["tags"])
        self.texts = {ctype: TextTab(ctype) for ctype in TEXT_TAB_TYPES}
        self.captions = CaptionList(TAB_LABELS["all"])

    def compose(self) -> ComposeResult:
        with TabbedContent(id="caption-tabs"):
            yield self.tags
            yield from self.texts.values()
            yield self.captions

    def on_mount(self) -> None:
        self.tabbed = self.query_one(TabbedContent)
        for tabs in self.tabbed.query(Tabs):
            tabs.can_focus = False

    def show(self, view: ItemView, editors: dict[str, TagListEditor]) -> None:
        """The text tabs must be loaded (``load_texts``) before the editors are made."""
        self.view = view
        if view.is_group:
            self.tabbed.show_tab("tab-instruction")
        else:
            self.tabbed.hide_tab("tab-instruction")
        self.tags.load(view, editors)
        self.captions.show(view)

    def load_texts(self, view: ItemView) -> None:
        for tab in self.texts.values():
            tab.load(view)

    def clear(self) -> None:
        self.view = None
        self.tags.clear()
        for tab in self.texts.values():
            tab.clear()
        self.captions.show(None)

    def after_save(self) -> None:
        for tab in self.texts.values():
            tab.update_line()  # a first save created the caption: say which file
        self.tags.refresh_tags()

    # --- tabs -----------------------------------------------------------------------

    def tags_tab(self) -> TagsTab | None:
        """Tag keys work on the Tags tab; from another tab they switch to it first."""
        if self.tabbed.active != "tab-tags":
            self.tabbed.active = "tab-tags"
            self.tags.pills.focus()
        return self.tags if self.tags.editor is not None else None

    def leave_editor(self) -> None:
        """Esc in a text editor: back to the tag pills."""
        self.tags.pills.focus()
        self.tabbed.active = "tab-tags"

    def current_text_tab(self) -> TextTab | None:
        return self.texts.get(self.tabbed.active.removeprefix("tab-"))

    def switch_tab(self, delta: int) -> None:
        group = self.view is not None and self.view.is_group
        panes = [p.id for p in self.tabbed.query(TabPane) if p.id and (p.id != "tab-instruction" or group)]
        if self.tabbed.active in panes:
            self.tabbed.active = panes[(panes.index(self.tabbed.active) + delta) % len(panes)]

    @on(TabbedContent.TabActivated, "#caption-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane
        if pane is self.tags:
            self.tags.pills.focus()
        elif pane is self.captions:
            self.captions.options.focus()
        elif isinstance(pane, TextTab):
            pane.area.focus()

    def cycle_language(self) -> None:
        tab = self.current_text_tab()
        if tab is None:
            self.notify("switch to a text tab first ([ and ] change tabs)", timeout=3, markup=False)
        else:
            tab.cycle_language()

    def revert(self) -> bool:
        changed = self.tags.revert()
        for tab in self.texts.values():
            changed |= tab.revert()
        return changed

    # --- the All-captions list ------------------------------------------------------

    @on(CaptionList.EditRequested)
    def _edit_requested(self, message: CaptionList.EditRequested) -> None:
        message.stop()
        self._edit_caption_flow(message.caption)

    @work(group="detail-save", exit_on_error=False)
    async def _edit_caption_flow(self, cap: CaptionView) -> None:
        """An edit in the list goes to the tab that edits that caption and is saved with
        the item's other edits: a failed save leaves it there, unsaved, and the tag
        editor's undo takes it back. A caption no tab shows is saved on its own."""
        text = await self.app.push_screen_wait(CaptionEditDialog(cap))
        view = self.view
        if text is None or text == cap.content or view is None:
            return
        tab = self.texts.get(cap.type)
        if cap.type == "tags":
            self.tags.replace(cap.subtype, split_tags(text))
        elif tab is not None and tab.state is not None and tab.state.caption_id == cap.id:
            tab.set_text(text)
        else:
            await self._save_unshown_caption(view, cap, text)
            return
        if await self._save_all() and self.view is view:
            fresh = await asyncio.to_thread(load_item_view, view.item_id)
            view.captions = fresh.captions  # the list shows what was written; the editors keep their history
            self.captions.show(view)

    async def _save_unshown_caption(self, view: ItemView, cap: CaptionView, text: str) -> None:
        state = TextState(
            cap.type,
            None if cap.embedded else cap.subtype,
            cap.content,
            cap.language,
            cap.id,
            cap.source,
            cap.file_path,
        )
        while not (await edit_flow(self).save_text(view, state, text, what=f"{cap.type}/{cap.subtype}")).saved:
            # Not written: the dialog comes back with the user's text rather than losing it.
            text = await self.app.push_screen_wait(CaptionEditDialog(dataclasses.replace(cap, content=text)))
            if text is None or self.view is not view:
                return
        self._reload(view.item_id)

    @on(CaptionList.DeleteRequested)
    def _delete_requested(self, message: CaptionList.DeleteRequested) -> None:
        message.stop()
        self._delete_caption_flow(message.caption)

    @work(group="detail-save", exit_on_error=False)
    async def _delete_caption_flow(self, cap: CaptionView) -> None:
        from sushitui.tui.widgets.confirm import ConfirmDialog

        where = cap.file_path or f"{cap.type} caption"
        ok = await self.app.push_screen_wait(
            ConfirmDialog(
                f"Delete {where}?", detail="The caption file is deleted from disk.", yes_label="Delete", danger=True
            )
        )
        view = self.view
        if not ok or view is None or not await self._save_all():
            return
        try:
            msg = await asyncio.to_thread(delete_caption, cap.id)
        except CaptionFileError as exc:
            self.notify(for_terminal(exc), title="Not deleted", severity="error", timeout=8, markup=False)
            return
        self.notify(for_terminal(msg), timeout=3, markup=False)
        self._reload(view.item_id)

    # --- auto-tagging and export (IT-7) ----------------------------------------------

    @work(group="detail-save", exit_on_error=False)
    async def autotag(self) -> None:
        """Save, auto-tag this item (the dialog), show the result."""
        view = self.view
        if view is None:
            return
        try:
            from sushitui.tui.screens.autotag_dialog import AutotagDialog
        except ImportError:
            self.notify("auto-tagging is not available in this build", severity="warning", timeout=4, markup=False)
            return
        if await self._save_all():
            await self.app.push_screen_wait(AutotagDialog(view.dataset_id, item_ids=[view.item_id]))
            self._reload(view.item_id)

    @work(group="detail-save", exit_on_error=False)
    async def caption_vlm(self) -> None:
        """Save, caption this item with a VLM (the dialog, then the review), show the result."""
        view = self.view
        if view is None:
            return
        from sushitui.tui.screens.caption_dialog import CaptionDialog

        if not await self._save_all():
            return
        review = await self.app.push_screen_wait(
            CaptionDialog(view.dataset_id, item_ids=[view.item_id], current_id=view.item_id)
        )
        if review is not None and await self.app.push_screen_wait(review):
            self._reload(view.item_id)

    @work(group="detail-save", exit_on_error=False)
    async def export_caption(self) -> None:
        """Write the caption shown (the text tab's, else the tags) to a new .txt file."""
        if self.view is None:
            return
        tab = self.current_text_tab()
        ed = self.tags.editor
        text = tab.value() if tab is not None else join_tags(ed.tags if ed else [])
        default = os.path.join(os.path.expanduser("~"), f"{self.view.base_name}.txt")
        path = await self.app.push_screen_wait(ExportCaptionDialog(default))
        if not path:
            return
        try:
            # expected=None: the target must not exist; an existing file is a conflict.
            await asyncio.to_thread(write_atomic, os.path.expanduser(path), text, expected=None)
        except CaptionFileError as exc:
            reason = (
                "that file already exists; choose another name"
                if os.path.exists(os.path.expanduser(path))
                else str(exc)
            )
            self.notify(for_terminal(reason), title="Not exported", severity="error", timeout=8, markup=False)
            return
        self.notify(f"caption written to {for_terminal(path)}", timeout=4, markup=False)
