"""The Tags tab (IT-3, IT-9): the item's tag captions as pills with a cursor, one tag
caption at a time (``s`` switches: main, alt, auto_…), add with autocomplete, remove,
reorder, copy/paste between items, undo/redo. Each edit posts ``TagsTab.Edited`` (the
screen autosaves); the editors (``TagListEditor``) hold what is on disk and the history."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static, TabPane

from sushitui.dataset.captions import MAIN, tag_subtype_order
from sushitui.dataset.item_view import ItemView
from sushitui.dataset.tag_editing import TagListEditor
from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import join_tags, split_tags
from sushitui.tui.screens.detail_support import resolve_alias, submitted_tag, tag_input_widget
from sushitui.tui.widgets.tag_pills import TagPills

# The session-wide tag clipboard: copy on one item, paste on another (the terminal
# clipboard is also set, but cannot be read back over SSH).
_TAG_CLIPBOARD: list[str] = []


class KeylessScroll(VerticalScroll, inherit_bindings=False):
    """Scrolls (mouse, and to follow the pill cursor) but takes no keys: as a parent of
    the focused pills its ↑/↓/Home/End/PgUp/PgDn bindings came before the screen's, so on a
    tag list taller than the pane (80x24) ↓ scrolled the pane and the tag cursor stayed put."""


class TagsTab(TabPane):
    """The tag captions of one item; ``editor`` is the one shown (``subtype``)."""

    DEFAULT_CSS = """
    TagsTab { padding: 0 1; }
    TagsTab .line { height: auto; color: $text-muted; }
    TagsTab #tag-scroll { height: 1fr; }
    TagsTab #tag-input { display: none; }
    TagsTab #tag-input.-open { display: block; }
    """

    class Edited(Message):
        """The user changed the tags: autosave."""

    def __init__(self, label: str) -> None:
        super().__init__(label, id="tab-tags")
        self.editors: dict[str, TagListEditor] = {}
        self.subtype = MAIN
        self._subtype_chosen = False  # the user switched subtypes with s: keep it across items
        self.tag_colors: dict[str, str] = {}
        self.pills = TagPills(id="pills", empty_hint="no tags — press a to add one")

    def compose(self) -> ComposeResult:
        yield Static("", id="subtype-line", classes="line")
        with KeylessScroll(id="tag-scroll"):
            yield self.pills
        yield tag_input_widget(None, id="tag-input")
        yield Static("", id="tags-status", classes="line")

    @property
    def editor(self) -> TagListEditor | None:
        return self.editors.get(self.subtype)

    def load(self, view: ItemView, editors: dict[str, TagListEditor]) -> None:
        """Show ``editors`` (subtype -> editor; the screen's ``ItemEdits`` owns them)."""
        box = self.query_one("#tag-input")
        if hasattr(box, "dataset_id"):
            box.dataset_id = view.dataset_id  # autocomplete ranks this dataset's own tags
        self.editors = editors
        if not self._subtype_chosen or self.subtype not in self.editors:
            # main, or the tag caption that has the tags when main is prose
            self.subtype = view.default_tag_subtype
        self.refresh_tags(cursor=0)

    def clear(self) -> None:
        self.editors = {}
        self.refresh_tags(cursor=0)

    def set_colors(self, colors: dict[str, str]) -> None:
        self.tag_colors = colors

    def refresh_tags(self, cursor: int | None = None) -> None:
        ed = self.editor
        self.pills.set_tags(ed.tags if ed else [], self.tag_colors, cursor)
        line = Text("Subtype: ")
        for sub in self.subtype_cycle():
            line.append(f" {for_terminal(sub)} ", style="reverse bold" if sub == self.subtype else "")
            line.append(" ")
        line.append(" (s switches)", style="dim")
        self.query_one("#subtype-line", Static).update(line)
        status = Text()
        if ed is not None:
            status.append(f"{len(ed)} tags")
            if ed.dirty:
                status.append(" · unsaved", style="yellow")
            if ed.can_undo:
                status.append(" · ctrl+z undo")
            if ed.can_redo:
                status.append(" · ctrl+y redo")
        self.query_one("#tags-status", Static).update(status)

    def _edited(self, cursor: int | None = None) -> None:
        self.refresh_tags(cursor)
        self.post_message(self.Edited())

    # --- the tag box ----------------------------------------------------------------

    def open_input(self) -> None:
        box = self.query_one("#tag-input")
        box.add_class("-open")
        box.focus()

    def close_input(self) -> None:
        """Close the tag box if it is open; the pills get the focus back."""
        box = self.query_one("#tag-input")
        if box.has_class("-open"):
            box.remove_class("-open")
            self.pills.focus()

    def on_tag_input_submitted(self, message) -> None:
        message.stop()
        tag = submitted_tag(message)
        self.query_one("#tag-input", Input).value = ""
        ed = self.editor
        if ed is None or not tag.strip():
            return
        for part in split_tags(tag):
            if ed.add(part):
                self._edited(cursor=len(ed) - 1)
            else:
                self.notify(f"already tagged: {for_terminal(part)}", timeout=2, markup=False)

    def on_paste(self, event) -> None:
        """Bracketed paste while the pills have focus adds the pasted tags."""
        if self.screen.focused is self.pills and self.editor is not None and self.editor.paste_text(event.text):
            self._edited(cursor=len(self.editor) - 1)

    # --- editing (the screen's key actions; an editor exists when they are called) --

    def move_cursor(self, delta: int) -> None:
        self.pills.cursor = self.pills.cursor + delta

    def cursor_to(self, index: int) -> None:
        self.pills.cursor = index if index >= 0 else len(self.pills.tags) - 1

    def remove(self) -> None:
        ed = self.editor
        if ed is not None and ed.remove(self.pills.cursor) is not None:
            self._edited(cursor=min(self.pills.cursor, len(ed) - 1))

    def move(self, delta: int) -> None:
        ed = self.editor
        if ed is None:
            return
        new = ed.move(self.pills.cursor, delta)
        if new != self.pills.cursor:
            self._edited(cursor=new)

    def copy(self) -> None:
        ed = self.editor
        if ed is None:
            return
        _TAG_CLIPBOARD[:] = ed.tags
        self.app.copy_to_clipboard(join_tags(ed.tags))
        self.notify(f"copied {len(ed)} tags", timeout=2, markup=False)

    def paste(self) -> None:
        ed = self.editor
        if ed is None:
            return
        if not _TAG_CLIPBOARD:
            self.notify(
                "nothing copied yet: press c on an item first (or paste text into the tag box)", timeout=4, markup=False
            )
            return
        added = ed.add_many(_TAG_CLIPBOARD)
        if added:
            self._edited(cursor=len(ed) - 1)
        self.notify(f"pasted {added} new tags", timeout=2, markup=False)

    def clear_tags(self) -> None:
        ed = self.editor
        if ed is not None and ed.clear():
            self._edited(cursor=0)
            self.notify("all tags cleared (ctrl+z brings them back)", timeout=3, markup=False)

    def undo(self) -> None:
        if self.editor is not None and self.editor.undo():
            self._edited()

    def redo(self) -> None:
        if self.editor is not None and self.editor.redo():
            self._edited()

    def replace(self, subtype: str, tags: list[str]) -> None:
        """Set a tag caption's whole list (the All-captions editor): one undo step."""
        ed = self.editors.setdefault(subtype, TagListEditor([], resolve=resolve_alias))
        if ed.set_tags(tags):
            self._edited()

    def revert(self) -> bool:
        changed = False
        for ed in self.editors.values():
            changed |= ed.revert()
        if changed:
            self.refresh_tags()
        return changed

    def subtype_cycle(self) -> list[str]:
        """The tag captions ``s`` steps through, in the order the subtype line shows
        them: the item's own, plus an empty ``alt`` to start one."""
        return tag_subtype_order([*self.editors, MAIN, "alt"])

    def cycle_subtype(self) -> None:
        if not self.editors:
            return
        subs = self.subtype_cycle()
        i = (subs.index(self.subtype) + 1) % len(subs) if self.subtype in subs else 0
        self.subtype = subs[i]
        self._subtype_chosen = True
        if self.subtype not in self.editors:
            self.editors[self.subtype] = TagListEditor([], resolve=resolve_alias)
        self.refresh_tags(cursor=0)

    def followed(self, subtype: str, written: str) -> None:
        """The image's own ``subtype`` tags were saved to the caption file ``written``
        (``ItemEdits.follow_embedded``): go on editing that one."""
        if self.subtype == subtype:
            self.subtype = written
        self.notify(
            f"saved as tag caption {written!r}, a file of its own: the image's {subtype} metadata is never rewritten",
            timeout=4,
            markup=False,
        )
