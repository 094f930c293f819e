"""The item detail screen's keys: its bindings (each with an id for keymap.toml and a
tooltip) and the actions that hand a key to the pane that owns it.

The keys are bound on the screen, not on the panes, so that they work from every tab
(Tags, the text tabs, the caption list) and show in one help and one command palette.
``DetailKeys`` is mixed into ``ItemDetailScreen``; it reaches the panes through the
screen's ``_pane`` (``CaptionPane``), ``_image`` and ``_panes``.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from textual.binding import Binding

from sushitui.tui.screens.marks_keys import CROP_BINDINGS, MARK_BINDINGS, TRASH_BINDINGS


def _tag_key(method: str):
    """The action of a tag key: ``TagsTab.<method>``, on the Tags tab (switched to)."""

    def action(self: Any, *args) -> None:
        if tab := self._pane.tags_tab():
            getattr(tab, method)(*args)

    return action


def _pane_key(path: str):
    """The action of a pane's key: the method ``self.<path>``, with the key's arguments."""

    def action(self: Any, *args) -> None:
        attrgetter(path)(self)(*args)

    return action


DETAIL_BINDINGS = [
    Binding("escape", "back", "Back", tooltip="Save and go back (Esc in an editor leaves the editor)", id="nav.back"),
    Binding("left", "prev_item", "Prev", tooltip="Save and show the previous item", id="item.prev"),
    Binding("right", "next_item", "Next", tooltip="Save and show the next item", id="item.next"),
    Binding("ctrl+s", "save", "Save", tooltip="Save now (autosave runs 500 ms after the last edit)", id="detail.save"),
    Binding("a,plus,t", "add_tag", "Add tag", tooltip="Type a tag with autocomplete", id="tags.add"),
    Binding("delete,x", "remove_tag", "Remove tag", id="tags.remove", tooltip="Remove the tag under the cursor"),
    Binding("ctrl+z", "undo", "Undo", id="edit.undo", tooltip="Undo the last tag edit"),
    Binding("ctrl+y", "redo", "Redo", id="edit.redo", tooltip="Redo the edit just undone"),
    Binding(
        "up,k", "cursor(-1)", "Previous tag", show=False, id="tags.cursor_up", tooltip="Cursor to the previous tag"
    ),
    Binding("down,j", "cursor(1)", "Next tag", show=False, id="tags.cursor_down", tooltip="Cursor to the next tag"),
    Binding(
        "shift+up,K",
        "move_tag(-1)",
        "Move tag earlier",
        show=False,
        id="detail.move_tag_up",
        tooltip="Move the tag one place earlier",
    ),
    Binding(
        "shift+down,J",
        "move_tag(1)",
        "Move tag later",
        show=False,
        id="detail.move_tag_down",
        tooltip="Move the tag one place later",
    ),
    Binding("home", "cursor_to(0)", "First tag", show=False, id="detail.first_tag", tooltip="Cursor to the first tag"),
    Binding("end", "cursor_to(-1)", "Last tag", show=False, id="detail.last_tag", tooltip="Cursor to the last tag"),
    Binding(
        "c",
        "copy_tags",
        "Copy tags",
        show=False,
        tooltip="Copy all tags (also to the terminal clipboard)",
        id="detail.copy_tags",
    ),
    Binding("v", "paste_tags", "Paste tags", show=False, tooltip="Add the copied tags", id="detail.paste_tags"),
    Binding(
        "X",
        "clear_tags",
        "Clear tags",
        show=False,
        id="detail.clear_tags",
        tooltip="Remove every tag of this caption (undoable)",
    ),
    Binding(
        "s",
        "cycle_subtype",
        "Subtype",
        show=False,
        tooltip="Switch tag caption: main, alt, auto_…",
        id="detail.cycle_subtype",
    ),
    Binding("R", "revert", "Revert", show=False, tooltip="Back to the version on disk (undoable)", id="detail.revert"),
    Binding(
        "right_square_bracket",
        "caption_tab(1)",
        "Next caption tab",
        show=False,
        id="detail.next_caption_tab",
        tooltip="Show the next caption tab",
    ),
    Binding(
        "left_square_bracket",
        "caption_tab(-1)",
        "Previous caption tab",
        show=False,
        id="detail.prev_caption_tab",
        tooltip="Show the previous caption tab",
    ),
    Binding(
        "i",
        "cycle_image",
        "Image tab",
        show=False,
        tooltip="Next image of a group (source/target/cref/mask)",
        id="detail.cycle_image",
    ),
    Binding(
        "L",
        "cycle_language",
        "Language",
        show=False,
        tooltip="Caption language: auto, en, ja",
        id="detail.cycle_language",
    ),
    Binding("m", "toggle_meta", "Metadata", tooltip="Show or hide the metadata pane", id="detail.toggle_meta"),
    # t adds a tag here as in the browser and quick tagging; A auto-tags as in the browser.
    Binding("A", "autotag", "Auto-tag", show=False, tooltip="Auto-tag this item", id="detail.autotag"),
    Binding(
        "C",
        "caption_vlm",
        "Caption (VLM)",
        show=False,
        id="detail.caption_vlm",
        tooltip="Caption this item with a vision-language model, then review the answer",
    ),
    Binding(
        "e",
        "export_caption",
        "Export caption",
        show=False,
        tooltip="Write this caption to a .txt file",
        id="detail.export_caption",
    ),
    Binding(
        "d",
        "delete_caption",
        "Delete caption",
        show=False,
        id="detail.delete_caption",
        tooltip="Delete this caption (asks first)",
    ),
    *MARK_BINDINGS,  # stars 0-5, > <, flags E N G, as in the browser
    *TRASH_BINDINGS,  # D: this item to the trash (then the next one shows); U: undo
    *CROP_BINDINGS,  # f: the crop frame (sushitui.tui.screens.crop_dialog)
]


class DetailKeys:
    """The pane actions of the item detail screen's keys (see ``DETAIL_BINDINGS``)."""

    _pane: Any
    _image: Any
    _panes: Any

    action_add_tag = _tag_key("open_input")
    action_move_tag = _tag_key("move")
    action_copy_tags = _tag_key("copy")
    action_paste_tags = _tag_key("paste")
    action_clear_tags = _tag_key("clear_tags")
    action_undo = _tag_key("undo")
    action_redo = _tag_key("redo")
    action_cycle_subtype = _tag_key("cycle_subtype")
    action_cursor = _pane_key("_pane.tags.move_cursor")
    action_cursor_to = _pane_key("_pane.tags.cursor_to")
    action_caption_tab = _pane_key("_pane.switch_tab")
    action_cycle_language = _pane_key("_pane.cycle_language")
    action_delete_caption = _pane_key("_pane.captions.request_delete")
    action_export_caption = _pane_key("_pane.export_caption")
    action_cycle_image = _pane_key("_image.cycle")
    action_autotag = _pane_key("_pane.autotag")
    action_caption_vlm = _pane_key("_pane.caption_vlm")
    action_toggle_meta = _pane_key("_panes.toggle_meta")
