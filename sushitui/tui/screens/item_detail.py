"""Item detail (IT-1..9): the image, every caption of one item, its metadata, and safe
editing with autosave, conflict handling and undo.

Layout: image pane (tabs for the images of a group, resolution, size), caption pane
(tabs: Tags, Natural language, Social media, Instruction for groups, Description, All
captions) and a metadata pane (hidden at narrow widths, ``m`` toggles it).

Saving (IT-8): 500 ms after the last edit, on leaving the item (←/→, Esc) and on
``ctrl+s``. Every write goes through ``sushitui.dataset.captions`` (atomic, checked
against what was read); a file changed on disk opens ``ConflictDialog``. Database reads
and file writes run in workers; the UI thread only draws.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import (
    Collapsible,
    Input,
    OptionList,
    Static,
    TabbedContent,
    TabPane,
    Tabs,
    TextArea,
)
from textual.widgets.option_list import Option

from sushitui.tui.widgets.key_bar import KeyBar
from sushitui.dataset.caption_files import CaptionFileError, write_atomic
from sushitui.dataset.captions import MAIN, file_subtype, tag_subtype_order
from sushitui.dataset.item_view import (
    TEXT_TAB_TYPES,
    CaptionView,
    ItemView,
    delete_caption,
    flatten_metadata,
    load_item_view,
    save_tags,
    save_text,
    set_language,
    take_disk_tags,
    take_disk_text,
)
from sushitui.dataset.tag_editing import TagListEditor
from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import join_tags, split_tags
from sushitui.tui.screens.detail_support import (
    load_group_colors,
    resolve_alias,
    save_with_conflict_dialog,
    submitted_tag,
    tag_input_widget,
)
from sushitui.tui.widgets.preview_pane import PreviewPane
from sushitui.tui.widgets.tag_pills import TagPills

AUTOSAVE_DELAY_S = 0.5
SOCIAL_LIMIT = 280
LANGUAGES = ("auto", "en", "ja")
TAB_LABELS = {
    "tags": "Tags",
    "natural_language": "Natural language",
    "social_media": "Social media",
    "instruction": "Instruction",
    "description": "Description",
    "all": "All captions",
}
NARROW_WIDTH = 110

# The session-wide tag clipboard: copy on one item, paste on another (the terminal
# clipboard is also set, but cannot be read back over SSH).
_TAG_CLIPBOARD: list[str] = []


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def fmt_ts(ts: float | None) -> str:
    if not ts:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@dataclass
class TextState:
    """One text tab: the caption it edits and what is on disk."""

    ctype: str
    subtype: str | None
    baseline: str
    language: str
    caption_id: int | None
    source: str
    file_path: str | None


class ItemLoaded(Message):
    def __init__(self, view: ItemView | None, error: str | None = None, colors: dict[str, str] | None = None) -> None:
        super().__init__()
        self.view = view
        self.error = error
        self.tag_colors = colors


class CaptionEditDialog(ModalScreen["str | None"]):
    """Edit one caption's whole text (All captions tab, IT-5)."""

    DEFAULT_CSS = """
    CaptionEditDialog { align: center middle; }
    CaptionEditDialog > Vertical { width: 90%; max-width: 120; height: 80%; border: thick $primary; background: $surface; }
    CaptionEditDialog TextArea { height: 1fr; }
    CaptionEditDialog Static { height: auto; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save caption", id="caption_edit.save", tooltip="Save the edited caption"),
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving"),
    ]

    def __init__(self, caption: CaptionView) -> None:
        super().__init__()
        self.caption = caption

    def compose(self) -> ComposeResult:
        c = self.caption
        head = Text(f"{c.type} · {c.subtype or '—'} · {c.source}", style="bold")
        if c.file_path:
            head.append(f" · {for_terminal(c.file_path)}")
        with Vertical():
            yield Static(head)
            area = SafeTextArea("", id="caption-edit-area", soft_wrap=True)
            area.load_text(c.content)
            yield area
            yield Static(Text("ctrl+s save · esc cancel", style="dim"))

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.move_cursor(area.document.end)  # typically one appends to a caption
        area.focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(SafeTextArea).value())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportCaptionDialog(ModalScreen["str | None"]):
    """Ask where to write the caption as a .txt (IT-7); returns the path or None."""

    DEFAULT_CSS = """
    ExportCaptionDialog { align: center middle; }
    ExportCaptionDialog > Vertical { width: 80%; max-width: 100; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    ExportCaptionDialog Static { height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving")]

    def __init__(self, default_path: str) -> None:
        super().__init__()
        self.default_path = default_path

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Export this caption to a text file (an existing file is never overwritten):")
            yield Input(self.default_path, id="export-path")
            yield Static(Text("Enter write · Esc cancel", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SafeTextArea(TextArea):
    """A caption editor that never sends a file's control characters to the terminal
    (NF-4). A caption holding ESC/C1/bidi controls is shown escaped and read-only (editing
    the escaped text would save the escapes); ``value()`` is the caption as it is on disk,
    so nothing is written for it."""

    unsafe_original: str | None = None

    def load_text(self, text: str) -> None:
        shown = for_terminal(text, multiline=True)
        if shown != text.replace("\t", "    "):
            self.unsafe_original = text
            self.read_only = True
            super().load_text(shown)
        else:
            self.unsafe_original = None
            self.read_only = False
            super().load_text(text)

    def value(self) -> str:
        return self.unsafe_original if self.unsafe_original is not None else self.text


class KeylessScroll(VerticalScroll, inherit_bindings=False):
    """Scrolls (mouse, and to follow the pill cursor) but takes no keys: as a parent of
    the focused pills its ↑/↓/Home/End/PgUp/PgDn bindings came before the screen's, so on a
    tag list taller than the pane (80x24) ↓ scrolled the pane and the tag cursor stayed put."""


class ItemDetailScreen(Screen):
    """One item: image, captions, metadata; tag editing with autosave and undo."""

    PALETTE_NAME = "item"

    DEFAULT_CSS = """
    ItemDetailScreen { layout: vertical; }
    ItemDetailScreen #detail-title { height: 1; background: $panel; padding: 0 1; }
    ItemDetailScreen #detail-panes { height: 1fr; }
    ItemDetailScreen #image-pane { width: 2fr; min-width: 24; border-right: solid $panel-lighten-2; }
    ItemDetailScreen #image-tabs { height: 1; padding: 0 1; }
    ItemDetailScreen #image-box { height: 1fr; }
    ItemDetailScreen #image-info { height: auto; padding: 0 1; color: $text-muted; }
    ItemDetailScreen #caption-pane { width: 3fr; min-width: 36; }
    ItemDetailScreen #caption-tabs { height: 1fr; }
    ItemDetailScreen TabPane { padding: 0 1; }
    ItemDetailScreen .line { height: auto; color: $text-muted; }
    ItemDetailScreen #tag-scroll { height: 1fr; }
    ItemDetailScreen #tag-input { display: none; }
    ItemDetailScreen #tag-input.-open { display: block; }
    ItemDetailScreen .caption-text { height: 1fr; }
    ItemDetailScreen #all-captions { height: 1fr; }
    ItemDetailScreen #meta-pane { width: 2fr; min-width: 28; border-left: solid $panel-lighten-2; padding: 0 1; }
    ItemDetailScreen #meta-pane.-hidden { display: none; }
    ItemDetailScreen #image-pane.-hidden { display: none; }
    ItemDetailScreen #related { height: auto; max-height: 8; }
    ItemDetailScreen .-over { color: $error; text-style: bold; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Save and go back (Esc in an editor leaves the editor)", id="nav.back"),
        Binding("left", "prev_item", "Prev", tooltip="Save and show the previous item", id="item.prev"),
        Binding("right", "next_item", "Next", tooltip="Save and show the next item", id="item.next"),
        Binding("ctrl+s", "save", "Save", tooltip="Save now (autosave runs 500 ms after the last edit)", id="detail.save"),
        Binding("a,plus,t", "add_tag", "Add tag", tooltip="Type a tag with autocomplete", id="tags.add"),
        Binding("delete,x", "remove_tag", "Remove tag", id="tags.remove", tooltip="Remove the tag under the cursor"),
        Binding("ctrl+z", "undo", "Undo", id="edit.undo", tooltip="Undo the last tag edit"),
        Binding("ctrl+y", "redo", "Redo", id="edit.redo", tooltip="Redo the edit just undone"),
        Binding("up,k", "cursor(-1)", "Previous tag", show=False, id="tags.cursor_up", tooltip="Cursor to the previous tag"),
        Binding("down,j", "cursor(1)", "Next tag", show=False, id="tags.cursor_down", tooltip="Cursor to the next tag"),
        Binding("shift+up,K", "move_tag(-1)", "Move tag earlier", show=False, id="detail.move_tag_up", tooltip="Move the tag one place earlier"),
        Binding("shift+down,J", "move_tag(1)", "Move tag later", show=False, id="detail.move_tag_down", tooltip="Move the tag one place later"),
        Binding("home", "cursor_to(0)", "First tag", show=False, id="detail.first_tag", tooltip="Cursor to the first tag"),
        Binding("end", "cursor_to(-1)", "Last tag", show=False, id="detail.last_tag", tooltip="Cursor to the last tag"),
        Binding("c", "copy_tags", "Copy tags", show=False, tooltip="Copy all tags (also to the terminal clipboard)", id="detail.copy_tags"),
        Binding("v", "paste_tags", "Paste tags", show=False, tooltip="Add the copied tags", id="detail.paste_tags"),
        Binding("X", "clear_tags", "Clear tags", show=False, id="detail.clear_tags", tooltip="Remove every tag of this caption (undoable)"),
        Binding("s", "cycle_subtype", "Subtype", show=False, tooltip="Switch tag caption: main, alt, auto_…", id="detail.cycle_subtype"),
        Binding("R", "revert", "Revert", show=False, tooltip="Back to the version on disk (undoable)", id="detail.revert"),
        Binding("right_square_bracket", "caption_tab(1)", "Next caption tab", show=False, id="detail.next_caption_tab", tooltip="Show the next caption tab"),
        Binding("left_square_bracket", "caption_tab(-1)", "Previous caption tab", show=False, id="detail.prev_caption_tab", tooltip="Show the previous caption tab"),
        Binding("i", "cycle_image", "Image tab", show=False, tooltip="Next image of a group (source/target/cref/mask)", id="detail.cycle_image"),
        Binding("L", "cycle_language", "Language", show=False, tooltip="Caption language: auto, en, ja", id="detail.cycle_language"),
        Binding("m", "toggle_meta", "Metadata", tooltip="Show or hide the metadata pane", id="detail.toggle_meta"),
        # t adds a tag here as in the browser and quick tagging; A auto-tags as in the browser.
        Binding("A", "autotag", "Auto-tag", show=False, tooltip="Auto-tag this item", id="detail.autotag"),
        Binding("e", "export_caption", "Export caption", show=False, tooltip="Write this caption to a .txt file", id="detail.export_caption"),
        Binding("d", "delete_caption", "Delete caption", show=False, id="detail.delete_caption", tooltip="Delete this caption (asks first)"),
    ]

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
        self.editors: dict[str, TagListEditor] = {}
        self.subtype = MAIN
        self._subtype_chosen = False  # the user switched subtypes with s: keep it across items
        self.texts: dict[str, TextState] = {}
        self.tag_colors: dict[str, str] = {}
        self.image_tab = 0
        self._autosave_timer: Timer | None = None
        self._save_lock = asyncio.Lock()
        self._load_seq = 0
        self._meta_forced: bool | None = None
        self._leaving = False
        self._nav_delta = 0
        self._nav_running = False

    # --- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-title")
        with Horizontal(id="detail-panes"):
            with Vertical(id="image-pane"):
                yield Static("", id="image-tabs")
                yield PreviewPane(id="image-box")
                yield Static("", id="image-info")
            with Vertical(id="caption-pane"):
                with TabbedContent(id="caption-tabs"):
                    with TabPane(TAB_LABELS["tags"], id="tab-tags"):
                        yield Static("", id="subtype-line", classes="line")
                        with KeylessScroll(id="tag-scroll"):
                            yield TagPills(id="pills", empty_hint="no tags — press a to add one")
                        yield tag_input_widget(None, id="tag-input")
                        yield Static("", id="tags-status", classes="line")
                    for ctype in TEXT_TAB_TYPES:
                        with TabPane(TAB_LABELS[ctype], id=f"tab-{ctype}"):
                            yield Static("", id=f"src-{ctype}", classes="line")
                            yield SafeTextArea("", id=f"text-{ctype}", classes="caption-text", soft_wrap=True)
                            if ctype == "social_media":
                                yield Static("", id="social-count", classes="line")
                    with TabPane(TAB_LABELS["all"], id="tab-all"):
                        yield OptionList(id="all-captions")
                        yield Static(Text("Enter edit · d delete", style="dim"), classes="line")
            with VerticalScroll(id="meta-pane"):
                yield Static("", id="meta-info")
                yield Static(Text("Related images (Enter shows one):", style="bold"), id="related-title")
                yield OptionList(id="related")
                with Collapsible(title="EXIF / XMP", id="exif", collapsed=True):
                    yield Static("", id="exif-body")
        yield KeyBar()

    def on_mount(self) -> None:
        for tabs in self.query_one("#caption-tabs", TabbedContent).query(Tabs):
            tabs.can_focus = False
        self._pane = self.query_one(PreviewPane)  # workers use it; no DOM queries from threads
        self._apply_width(self.app.size.width)
        self.query_one("#pills", TagPills).focus()
        self._load(self.item_id)
        if self._result_spec is not None:
            self._result_worker(*self._result_spec)

    @work(thread=True, group="detail-result", exit_on_error=False)
    def _result_worker(self, dataset_id: int, query: str | None, sort: str, desc: bool) -> None:
        from sushitui.dataset.items import select_items
        from sushitui.store import Item

        try:
            ids = [row[0] for row in select_items(dataset_id, query or None, sort, desc).select(Item.id).tuples()]
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

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        show = self._meta_forced if self._meta_forced is not None else width >= NARROW_WIDTH
        self.query_one("#meta-pane").set_class(not show, "-hidden")
        # Three panes need ~88 columns (their minimum widths): below NARROW_WIDTH the
        # metadata takes the image's place, or at 80x24 `m` pushed it off screen and
        # scrolled the captions away.
        self.query_one("#image-pane").set_class(show and width < NARROW_WIDTH, "-hidden")

    # --- loading --------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="detail-load", exit_on_error=False)
    def _load_worker(self, item_id: int, seq: int, want_colors: bool) -> None:
        colors = load_group_colors() if want_colors else None
        try:
            view = load_item_view(item_id)
        except Exception as exc:  # noqa: BLE001 - a vanished item is shown, not raised
            self.post_message(ItemLoaded(None, f"item {item_id} could not be loaded: {exc}", colors))
            return
        if seq == self._load_seq:
            self.post_message(ItemLoaded(view, None, colors))

    def _load(self, item_id: int) -> None:
        self._load_seq += 1
        self.item_id = item_id
        self._load_worker(item_id, self._load_seq, not self.tag_colors)

    def on_item_loaded(self, message: ItemLoaded) -> None:
        if message.tag_colors is not None:
            self.tag_colors = message.tag_colors
        if message.view is None:
            self.view = None
            self.editors = {}
            self.query_one("#detail-title", Static).update(Text(for_terminal(message.error), style="bold red"))
            return
        if message.view.item_id != self.item_id:
            return
        self._populate(message.view)

    def _populate(self, view: ItemView) -> None:
        self.view = view
        box = self.query_one("#tag-input")
        if hasattr(box, "dataset_id"):
            box.dataset_id = view.dataset_id  # autocomplete ranks this dataset's own tags
        self.editors = {sub: TagListEditor(view.tags.get(sub, []), resolve=resolve_alias) for sub in view.tag_subtypes}
        if not self._subtype_chosen or self.subtype not in self.editors:
            # main, or the tag caption that has the tags when main is prose
            self.subtype = view.default_tag_subtype
        self.texts = {}
        for ctype in TEXT_TAB_TYPES:
            cap = view.text_caption(ctype)
            self.texts[ctype] = TextState(
                ctype, cap.subtype if cap and not cap.embedded else None, cap.content if cap else "", cap.language if cap else "auto",
                cap.id if cap else None, cap.source if cap else "new", cap.file_path if cap else None,
            )
            self.query_one(f"#text-{ctype}", TextArea).load_text(self.texts[ctype].baseline)
            self._update_text_line(ctype)
        tabbed = self.query_one("#caption-tabs", TabbedContent)
        if view.is_group:
            tabbed.show_tab("tab-instruction")
        else:
            tabbed.hide_tab("tab-instruction")
        self._refresh_title()
        self._refresh_tags(cursor=0)
        self._refresh_all_captions()
        self._refresh_meta()
        self._setup_image_tabs()
        self._prefetch_neighbours()

    def _refresh_title(self) -> None:
        v = self.view
        if v is None:
            return
        name = f"{v.rel_dir}/{v.base_name}" if v.rel_dir else v.base_name
        title = Text()
        title.append(for_terminal(v.dataset_name), style="bold")
        title.append(f"  item {self.index + 1}/{len(self.item_ids)}  ")
        title.append(for_terminal(name), style="bold")
        if v.is_group:
            title.append(f"  [{v.item_type}]", style="cyan")
        if self._dirty():
            title.append("  ● unsaved", style="yellow")
        self.query_one("#detail-title", Static).update(title)

    # --- image pane -----------------------------------------------------------------

    def _setup_image_tabs(self) -> None:
        self.image_tab = 0
        self._show_image()

    def _render_image_tabs(self) -> None:
        tabs = self.view.image_tabs if self.view else []
        line = Text()
        for i, (label, _) in enumerate(tabs):
            line.append(f" {for_terminal(label)} ", style="reverse bold" if i == self.image_tab else "")
            line.append(" ")
        if len(tabs) > 1:
            line.append("(i)", style="dim")
        widget = self.query_one("#image-tabs", Static)
        widget.update(line)
        widget.display = len(tabs) > 1

    def _show_image(self) -> None:
        v = self.view
        pane = self.query_one(PreviewPane)
        tabs = v.image_tabs if v else []
        self._render_image_tabs()
        if not tabs:
            pane.show_message("this item has no image")
            self._update_image_info(None)
            return
        label, rel = tabs[min(self.image_tab, len(tabs) - 1)]
        path = v.abs_path(rel)
        if path is None:
            pane.show_message(f"unsafe image path refused: {rel}")
        else:
            pane.show(path, v.mtime_ns if rel == v.image_path else None)
        self._update_image_info(rel)

    def _update_image_info(self, rel: str | None) -> None:
        v = self.view
        info = Text()
        if v is not None:
            info.append(f"{v.width or '?'}×{v.height or '?'} · {human_size(v.file_size)}")
            if rel:
                info.append(f" · {for_terminal(rel)}")
        self.query_one("#image-info", Static).update(info)

    def action_cycle_image(self) -> None:
        if self.view is None or len(self.view.image_tabs) < 2:
            return
        self._select_image((self.image_tab + 1) % len(self.view.image_tabs))

    def _select_image(self, index: int) -> None:
        self.image_tab = index
        self._show_image()

    @on(OptionList.OptionSelected, "#related")
    def _related_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self._select_image(int(event.option.id.split("-")[1]))

    def _prefetch_neighbours(self) -> None:
        ids = [self.item_ids[i] for i in (self.index + 1, self.index - 1) if 0 <= i < len(self.item_ids)]
        if ids:
            self._prefetch_worker(ids)

    @work(thread=True, exclusive=True, group="detail-prefetch", exit_on_error=False)
    def _prefetch_worker(self, item_ids: list[int]) -> None:
        for item_id in item_ids:
            try:
                v = load_item_view(item_id)
            except Exception:  # noqa: BLE001 - prefetching is best effort
                continue
            path = v.abs_path(v.image_path)
            if path is not None:
                self._pane.prefetch(path, v.mtime_ns)

    # --- tags tab -------------------------------------------------------------------

    @property
    def editor(self) -> TagListEditor | None:
        return self.editors.get(self.subtype)

    def _refresh_tags(self, cursor: int | None = None) -> None:
        ed = self.editor
        pills = self.query_one("#pills", TagPills)
        pills.set_tags(ed.tags if ed else [], self.tag_colors, cursor)
        line = Text("Subtype: ")
        for sub in self._subtype_cycle():
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
        self._refresh_title()

    def _tags_edited(self, cursor: int | None = None) -> None:
        self._refresh_tags(cursor)
        self._schedule_autosave()

    def _on_tags_tab(self) -> bool:
        """Tag keys work on the Tags tab; from another tab they switch to it first."""
        tabbed = self.query_one("#caption-tabs", TabbedContent)
        if tabbed.active != "tab-tags":
            tabbed.active = "tab-tags"
            self.query_one("#pills", TagPills).focus()
        return self.editor is not None

    def action_cursor(self, delta: int) -> None:
        pills = self.query_one("#pills", TagPills)
        pills.cursor = pills.cursor + delta

    def action_cursor_to(self, index: int) -> None:
        pills = self.query_one("#pills", TagPills)
        pills.cursor = index if index >= 0 else len(pills.tags) - 1

    def action_add_tag(self) -> None:
        if not self._on_tags_tab():
            return
        box = self.query_one("#tag-input")
        box.add_class("-open")
        box.focus()

    def on_tag_input_submitted(self, message) -> None:
        message.stop()
        tag = submitted_tag(message)
        box = self.query_one("#tag-input", Input)
        box.value = ""
        ed = self.editor
        if ed is None or not tag.strip():
            return
        for part in split_tags(tag):
            if ed.add(part):
                self._tags_edited(cursor=len(ed) - 1)
            else:
                self.notify(f"already tagged: {for_terminal(part)}", timeout=2, markup=False)

    def _close_tag_input(self) -> None:
        box = self.query_one("#tag-input")
        box.remove_class("-open")
        self.query_one("#pills", TagPills).focus()

    def action_remove_tag(self) -> None:
        if self.focused is self.query_one("#all-captions"):
            self.action_delete_caption()
            return
        if not self._on_tags_tab():
            return
        pills = self.query_one("#pills", TagPills)
        if self.editor.remove(pills.cursor) is not None:
            self._tags_edited(cursor=min(pills.cursor, len(self.editor) - 1))

    def action_move_tag(self, delta: int) -> None:
        if not self._on_tags_tab():
            return
        pills = self.query_one("#pills", TagPills)
        new = self.editor.move(pills.cursor, delta)
        if new != pills.cursor:
            self._tags_edited(cursor=new)

    def action_copy_tags(self) -> None:
        if not self._on_tags_tab():
            return
        _TAG_CLIPBOARD[:] = self.editor.tags
        self.app.copy_to_clipboard(join_tags(self.editor.tags))
        self.notify(f"copied {len(self.editor)} tags", timeout=2, markup=False)

    def action_paste_tags(self) -> None:
        if not self._on_tags_tab():
            return
        if not _TAG_CLIPBOARD:
            self.notify("nothing copied yet: press c on an item first (or paste text into the tag box)", timeout=4, markup=False)
            return
        added = self.editor.add_many(_TAG_CLIPBOARD)
        if added:
            self._tags_edited(cursor=len(self.editor) - 1)
        self.notify(f"pasted {added} new tags", timeout=2, markup=False)

    def on_paste(self, event) -> None:
        """Bracketed paste while the pills have focus adds the pasted tags."""
        if self.focused is self.query_one("#pills") and self.editor is not None:
            if self.editor.paste_text(event.text):
                self._tags_edited(cursor=len(self.editor) - 1)

    def action_clear_tags(self) -> None:
        if self._on_tags_tab() and self.editor.clear():
            self._tags_edited(cursor=0)
            self.notify("all tags cleared (ctrl+z brings them back)", timeout=3, markup=False)

    def action_undo(self) -> None:
        if self._on_tags_tab() and self.editor.undo():
            self._tags_edited()

    def action_redo(self) -> None:
        if self._on_tags_tab() and self.editor.redo():
            self._tags_edited()

    def action_revert(self) -> None:
        changed = False
        for ed in self.editors.values():
            changed |= ed.revert()
        for ctype, state in self.texts.items():
            area = self.query_one(f"#text-{ctype}", TextArea)
            if area.value() != state.baseline:
                area.load_text(state.baseline)
                changed = True
        if changed:
            self._refresh_tags()
            self.notify("reverted to the saved version (ctrl+z undoes the revert of tags)", timeout=3, markup=False)

    def _subtype_cycle(self) -> list[str]:
        """The tag captions ``s`` steps through, in the order the subtype line shows
        them: the item's own, plus an empty ``alt`` to start one."""
        return tag_subtype_order([*self.editors, MAIN, "alt"])

    def action_cycle_subtype(self) -> None:
        if not self.editors:
            return
        subs = self._subtype_cycle()
        i = (subs.index(self.subtype) + 1) % len(subs) if self.subtype in subs else 0
        self.subtype = subs[i]
        self._subtype_chosen = True
        if self.subtype not in self.editors:
            self.editors[self.subtype] = TagListEditor([], resolve=resolve_alias)
        self._on_tags_tab()
        self._refresh_tags(cursor=0)

    # --- text tabs ------------------------------------------------------------------

    def _update_text_line(self, ctype: str) -> None:
        state = self.texts.get(ctype)
        if state is None:
            return
        line = Text()
        if state.caption_id is None:
            line.append("no caption yet — typing creates one", style="italic")
        else:
            line.append(f"source: {state.source}")
            if state.file_path:
                line.append(f" ({for_terminal(state.file_path)})")
        line.append(f" · language: {state.language} (L)")
        if self.query_one(f"#text-{ctype}", SafeTextArea).unsafe_original is not None:
            line.append(" · has control characters: shown escaped, read-only", style="yellow")
        self.query_one(f"#src-{ctype}", Static).update(line)
        if ctype == "social_media":
            n = len(self.query_one("#text-social_media", SafeTextArea).value())
            counter = self.query_one("#social-count", Static)
            counter.update(f"{n}/{SOCIAL_LIMIT} characters" + (" — over X's limit" if n > SOCIAL_LIMIT else ""))
            counter.set_class(n > SOCIAL_LIMIT, "-over")

    @on(TextArea.Changed)
    def _text_changed(self, event: TextArea.Changed) -> None:
        area_id = event.text_area.id or ""
        if not area_id.startswith("text-"):
            return
        ctype = area_id[5:]
        state = self.texts.get(ctype)
        if state is None:
            return
        if ctype == "social_media":
            self._update_text_line(ctype)
        if event.text_area.value() != state.baseline:
            self._refresh_title()
            self._schedule_autosave()

    def _current_text_type(self) -> str | None:
        active = self.query_one("#caption-tabs", TabbedContent).active
        ctype = active[4:] if active.startswith("tab-") else ""
        return ctype if ctype in TEXT_TAB_TYPES else None

    def action_cycle_language(self) -> None:
        ctype = self._current_text_type()
        if ctype is None:
            self.notify("switch to a text tab first ([ and ] change tabs)", timeout=3, markup=False)
            return
        state = self.texts[ctype]
        state.language = LANGUAGES[(LANGUAGES.index(state.language) + 1) % len(LANGUAGES)] if state.language in LANGUAGES else "auto"
        self._update_text_line(ctype)
        if state.caption_id is not None:
            self._language_worker(state.caption_id, state.language)

    @work(thread=True, group="detail-language", exit_on_error=False)
    def _language_worker(self, caption_id: int, language: str) -> None:
        set_language(caption_id, language)

    @on(TabbedContent.TabActivated, "#caption-tabs")
    def _caption_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane_id = event.pane.id or ""
        if pane_id == "tab-tags":
            self.query_one("#pills").focus()
        elif pane_id == "tab-all":
            self.query_one("#all-captions").focus()
        elif pane_id.startswith("tab-"):
            self.query_one(f"#text-{pane_id[4:]}").focus()

    def action_caption_tab(self, delta: int) -> None:
        tabbed = self.query_one("#caption-tabs", TabbedContent)
        panes = [p.id for p in tabbed.query(TabPane) if p.id and (p.id != "tab-instruction" or (self.view and self.view.is_group))]
        if tabbed.active in panes:
            tabbed.active = panes[(panes.index(tabbed.active) + delta) % len(panes)]

    # --- all captions ---------------------------------------------------------------

    def _refresh_all_captions(self) -> None:
        olist = self.query_one("#all-captions", OptionList)
        olist.clear_options()
        if self.view is None:
            return
        for c in self.view.captions:
            prompt = Text()
            prompt.append(f"{c.type}", style="bold")
            prompt.append(f" · {for_terminal(c.subtype) or '—'} · {c.source}")
            if c.source_field:
                prompt.append(f" ({for_terminal(c.source_field)})")
            prompt.append(f" · {fmt_ts(c.updated_at)}", style="dim")
            if c.encoding_flagged:
                prompt.append(f" · {c.encoding}", style="yellow")
            first = (c.content or "").strip().splitlines()[0] if (c.content or "").strip() else "(empty)"
            prompt.append("\n  " + for_terminal(first[:200]))
            olist.add_option(Option(prompt, id=f"cap-{c.id}"))

    def _selected_caption(self) -> CaptionView | None:
        olist = self.query_one("#all-captions", OptionList)
        if self.view is None or olist.highlighted is None:
            return None
        opt = olist.get_option_at_index(olist.highlighted)
        cid = int((opt.id or "cap-0")[4:])
        return next((c for c in self.view.captions if c.id == cid), None)

    @on(OptionList.OptionSelected, "#all-captions")
    def _caption_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_edit_caption()

    def action_edit_caption(self) -> None:
        if self.focused is not self.query_one("#all-captions"):
            return
        cap = self._selected_caption()
        if cap is not None:
            self._edit_caption_flow(cap)

    @work(group="detail-save", exit_on_error=False)
    async def _edit_caption_flow(self, cap: CaptionView) -> None:
        text = await self.app.push_screen_wait(CaptionEditDialog(cap))
        if text is None or text == cap.content or self.view is None:
            return
        if not await self._save_all():
            return
        view = self.view
        if cap.type == "tags":
            tags = split_tags(text)
            outcome = await save_with_conflict_dialog(
                self, lambda force: save_tags(view.item_id, cap.subtype, tags, force=force, view=view),
                lambda rel: take_disk_tags(view.item_id, cap.subtype, rel, view=view),
                mine_text=join_tags(tags), is_tags=True, what=f"tags/{cap.subtype}", root=view.root,
            )
        else:
            outcome = await save_with_conflict_dialog(
                self, lambda force: save_text(view.item_id, cap.type, cap.subtype, text, force=force, view=view),
                lambda rel: take_disk_text(view.item_id, cap.type, cap.subtype, rel, view=view),
                mine_text=text, is_tags=False, what=f"{cap.type}/{cap.subtype}", root=view.root,
            )
        if outcome.saved:
            self._load(view.item_id)

    def action_delete_caption(self) -> None:
        if self.focused is not self.query_one("#all-captions"):
            return
        cap = self._selected_caption()
        if cap is not None:
            self._delete_caption_flow(cap)

    @work(group="detail-save", exit_on_error=False)
    async def _delete_caption_flow(self, cap: CaptionView) -> None:
        from sushitui.tui.widgets.confirm import ConfirmDialog

        where = cap.file_path or f"{cap.type} caption"
        ok = await self.app.push_screen_wait(
            ConfirmDialog(f"Delete {where}?", detail="The caption file is deleted from disk.", yes_label="Delete", danger=True)
        )
        if not ok or self.view is None:
            return
        if not await self._save_all():
            return
        try:
            msg = await asyncio.to_thread(delete_caption, cap.id)
        except CaptionFileError as exc:
            self.notify(for_terminal(exc), title="Not deleted", severity="error", timeout=8, markup=False)
            return
        self.notify(for_terminal(msg), timeout=3, markup=False)
        self._load(self.view.item_id)

    # --- metadata pane --------------------------------------------------------------

    def _refresh_meta(self) -> None:
        v = self.view
        if v is None:
            return
        t = Text()

        def row(label: str, value: object) -> None:
            t.append(f"{label}: ", style="bold")
            t.append(for_terminal(value) + "\n")

        row("File", v.image_path.rsplit("/", 1)[-1] if v.image_path else "—")
        row("Path", v.abs_path(v.image_path) or "—")
        row("Type", v.item_type)
        row("Resolution", f"{v.width or '?'}×{v.height or '?'}")
        row("Size", human_size(v.file_size))
        row("SHA-256", (v.sha256 or "—")[:16] + ("…" if v.sha256 else ""))
        row("Created", fmt_ts(v.created_at))
        row("Updated", fmt_ts(v.updated_at))
        row("Indexed", fmt_ts(v.indexed_at))
        if v.problems:
            t.append("Problems: ", style="bold red")
            t.append(for_terminal(v.problems) + "\n", style="red")
        self.query_one("#meta-info", Static).update(t)
        related = self.query_one("#related", OptionList)
        related.clear_options()
        for i, (label, rel) in enumerate(v.image_tabs):
            related.add_option(Option(Text(f"{for_terminal(label)}: {for_terminal(rel)}"), id=f"img-{i}"))
        self.query_one("#related-title").display = len(v.image_tabs) > 1
        related.display = len(v.image_tabs) > 1
        rows = flatten_metadata(v.exif_data) if v.exif_data else []
        mapped = v.mapped_fields
        body = Text()
        for key, value in rows:
            leaf = key.rsplit(".", 1)[-1]
            target = mapped.get(leaf) or mapped.get(key)
            if target:
                body.append(f"{for_terminal(key)}: ", style="bold green")
                body.append(for_terminal(value), style="green")
                body.append(f"  → {target}\n", style="bold green")
            else:
                body.append(f"{for_terminal(key)}: ", style="bold")
                body.append(for_terminal(value) + "\n")
        if not rows:
            body.append("no EXIF/XMP data (enable 'read EXIF' in the dataset settings and reindex)", style="dim")
        self.query_one("#exif-body", Static).update(body)
        self.query_one("#exif", Collapsible).title = f"EXIF / XMP ({len(rows)} fields, {len(mapped)} mapped)"

    def action_toggle_meta(self) -> None:
        pane = self.query_one("#meta-pane")
        self._meta_forced = pane.has_class("-hidden")
        self._apply_width(self.app.size.width)

    # --- saving ---------------------------------------------------------------------

    def _dirty(self) -> bool:
        if any(ed.dirty for ed in self.editors.values()):
            return True
        for ctype, state in self.texts.items():
            try:
                if self.query_one(f"#text-{ctype}", SafeTextArea).value() != state.baseline:
                    return True
            except Exception:  # noqa: BLE001 - during teardown widgets may be gone
                return False
        return False

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
            view = self.view
            if view is None:
                return True
            ok = True
            for subtype, ed in list(self.editors.items()):
                if not ed.dirty:
                    continue
                tags = ed.tags
                outcome = await save_with_conflict_dialog(
                    self, lambda force, s=subtype, t=tags: save_tags(view.item_id, s, t, force=force, view=view),
                    lambda rel, s=subtype: take_disk_tags(view.item_id, s, rel, view=view),
                    mine_text=join_tags(tags), is_tags=True, what=f"tags/{subtype}", root=view.root,
                )
                if outcome.choice == "disk":
                    ed.adopt(outcome.disk_value or [])
                elif outcome.saved:
                    ed.mark_saved(tags)
                    self._follow_embedded_save(view, subtype)
                ok &= outcome.saved
            for ctype, state in self.texts.items():
                area = self.query_one(f"#text-{ctype}", TextArea)
                text = area.value()
                if text == state.baseline:
                    continue
                outcome = await save_with_conflict_dialog(
                    self,
                    lambda force, c=ctype, s=state, x=text: save_text(view.item_id, c, s.subtype, x, language=s.language, force=force, view=view),
                    lambda rel, c=ctype, s=state: take_disk_text(view.item_id, c, s.subtype or "", rel, view=view),
                    mine_text=text, is_tags=False, what=TAB_LABELS[ctype], root=view.root,
                )
                if outcome.choice == "disk":
                    state.baseline = str(outcome.disk_value or "")
                    area.load_text(state.baseline)
                elif outcome.saved:
                    state.baseline = text
                    if state.caption_id is None or state.subtype is None:
                        # The first save created the caption file: learn its id and path.
                        saved = await asyncio.to_thread(load_item_view, view.item_id)
                        cap = next((c for c in saved.captions if c.type == ctype and c.file_path), None)
                        if cap is not None:
                            state.caption_id, state.subtype, state.file_path, state.source = cap.id, cap.subtype, cap.file_path, cap.source
                        self._update_text_line(ctype)
                ok &= outcome.saved
            if self.view is view:
                self._refresh_tags()
            return ok

    def _follow_embedded_save(self, view: ItemView, subtype: str) -> None:
        """Tags of the image's own metadata (EXIF/XMP) were saved: the core wrote them to
        a caption file of their own (captions.file_subtype). Edit that one from now on,
        and keep the metadata's tags under their own subtype, as a reload will show."""
        written = file_subtype(subtype)
        if written == subtype or not any(c.subtype == subtype and c.type == "tags" and c.embedded for c in view.captions):
            return
        self.editors[written] = self.editors.pop(subtype)
        self.editors[subtype] = TagListEditor(view.tags.get(subtype, []), resolve=resolve_alias)
        if self.subtype == subtype:
            self.subtype = written
        self.notify(f"saved as tag caption {written!r}, a file of its own: the image's {subtype} metadata is "
                    "never rewritten", timeout=4, markup=False)

    def action_save(self) -> None:
        self._explicit_save()

    def on_unmount(self) -> None:
        """The app is quitting with edits younger than the autosave delay: write them
        now if the files are unchanged on disk (a conflict is left alone, never forced)."""
        view = self.view
        if view is None:
            return
        for subtype, ed in self.editors.items():
            if ed.dirty:
                try:
                    save_tags(view.item_id, subtype, ed.tags, view=view)
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
        for ctype, state in self.texts.items():
            try:
                text = self.query_one(f"#text-{ctype}", SafeTextArea).value()
            except Exception:  # noqa: BLE001 - widgets may already be gone
                return
            if text != state.baseline:
                try:
                    save_text(view.item_id, ctype, state.subtype, text, language=state.language, view=view)
                except Exception:  # noqa: BLE001
                    pass

    @work(group="detail-save", exit_on_error=False)
    async def _explicit_save(self) -> None:
        if not self._dirty():
            self.notify("nothing to save", timeout=2, markup=False)
            return
        if await self._save_all():
            self.notify("saved", timeout=2, markup=False)

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
                self._close_tag_input_quietly()
                self._load(self.item_ids[target])
        finally:
            self._nav_running = False

    def _close_tag_input_quietly(self) -> None:
        box = self.query_one("#tag-input")
        if box.has_class("-open"):
            box.remove_class("-open")
            self.query_one("#pills").focus()

    def action_back(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "tag-input":
            self._close_tag_input()
            return
        if isinstance(focused, TextArea):
            self.query_one("#pills").focus()
            self.query_one("#caption-tabs", TabbedContent).active = "tab-tags"
            return
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

    # --- actions on the item --------------------------------------------------------

    def action_autotag(self) -> None:
        if self.view is None:
            return
        try:
            from sushitui.tui.screens.autotag_dialog import AutotagDialog
        except ImportError:
            self.notify("auto-tagging is not available in this build", severity="warning", timeout=4, markup=False)
            return
        view = self.view
        self._autotag_flow(AutotagDialog(view.dataset_id, item_ids=[view.item_id]))

    @work(group="detail-save", exit_on_error=False)
    async def _autotag_flow(self, dialog) -> None:
        if not await self._save_all():
            return
        await self.app.push_screen_wait(dialog)
        if self.view is not None:
            self._load(self.view.item_id)

    def action_export_caption(self) -> None:
        if self.view is None:
            return
        self._export_flow()

    @work(group="detail-save", exit_on_error=False)
    async def _export_flow(self) -> None:
        import os

        view = self.view
        ctype = self._current_text_type()
        if ctype is not None:
            text = self.query_one(f"#text-{ctype}", SafeTextArea).value()
        else:
            text = join_tags(self.editor.tags if self.editor else [])
        default = os.path.join(os.path.expanduser("~"), f"{view.base_name}.txt")
        path = await self.app.push_screen_wait(ExportCaptionDialog(default))
        if not path:
            return
        try:
            # expected=None: the target must not exist; an existing file is a conflict.
            await asyncio.to_thread(write_atomic, os.path.expanduser(path), text, expected=None)
        except CaptionFileError as exc:
            reason = "that file already exists; choose another name" if os.path.exists(os.path.expanduser(path)) else str(exc)
            self.notify(for_terminal(reason), title="Not exported", severity="error", timeout=8, markup=False)
            return
        self.notify(f"caption written to {for_terminal(path)}", timeout=4, markup=False)
