"""Quick tagging (QT-1..4): one image at a time, large, with its tags and a row of up to
nine preset tags that 1–9 toggle. Enter saves and moves on, → skips, ← goes back.

Moving on is instant because the next images (their tags and a decoded preview) are
prefetched while the user looks at the current one, and the save runs in the background
(in order, through the same save flow as the item detail screen,
``sushitui.tui.edit_flow``: a file changed on disk opens ``ConflictDialog``). Toggles
still unsaved when the screen closes are written on the way out; what cannot be written
is shown, or printed after the app exits. ``ctrl+z`` undoes the last toggle, or, when
the current image has none, the last save (going back to that image).
"""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Static

from sushitui.dataset.captions import MAIN
from sushitui.dataset.item_view import ItemView, get_presets, load_item_view, set_presets
from sushitui.dataset.tag_editing import TagListEditor
from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import join_tags, match_key, split_tags
from sushitui.tui.edit_flow import TAKE_DISK, left_tag_edit, write_left_edits
from sushitui.tui.screens.detail_support import (
    edit_flow,
    load_group_colors,
    report_unsaved,
    resolve_alias,
    submitted_tag,
    tag_input_widget,
)
from sushitui.tui.screens.marks_keys import QUICK_TAG_MARK_BINDINGS, MarkKeys
from sushitui.tui.widgets.key_bar import KeyBar
from sushitui.tui.widgets.preview_pane import PreviewPane
from sushitui.tui.widgets.tag_pills import TagPills, pill_style

PREFETCH_AHEAD = 2
PREFETCH_DELAY_S = 0.12


class ViewsLoaded(Message):
    def __init__(self, views: list[ItemView], errors: dict[int, str]) -> None:
        super().__init__()
        self.views = views
        self.errors = errors


class SetupLoaded(Message):
    def __init__(self, presets: list[str], colors: dict[str, str]) -> None:
        super().__init__()
        self.presets = presets
        self.colors = colors


class PresetsDialog(ModalScreen["list[str] | None"]):
    """Edit the dataset's preset tags: up to nine, comma-separated (QT-3)."""

    DEFAULT_CSS = """
    PresetsDialog { align: center middle; }
    PresetsDialog > Vertical { width: 80%; max-width: 100; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    PresetsDialog Static { height: auto; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving"),
        Binding("ctrl+s", "save", "Save", id="presets.save", tooltip="Save the nine preset tags"),
    ]

    def __init__(self, presets: list[str]) -> None:
        super().__init__()
        self.presets = presets

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Preset tags for keys 1–9, comma-separated (saved with the dataset):")
            yield Input(join_tags(self.presets), id="presets-input")
            yield Static(Text("Enter or ctrl+s save · Esc cancel", style="dim"))

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss([resolve_alias(t) for t in split_tags(event.value)])

    def action_save(self) -> None:
        self.dismiss([resolve_alias(t) for t in split_tags(self.query_one(Input).value)])

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuickTagScreen(MarkKeys, Screen):
    """Tag a run of images fast: presets on 1–9, Enter saves and moves on."""

    PALETTE_NAME = "quick tag"
    PREFETCH = True  # the benchmark turns it off to show what prefetching buys

    DEFAULT_CSS = """
    QuickTagScreen { layout: vertical; }
    QuickTagScreen #qt-title { height: 1; background: $panel; padding: 0 1; }
    QuickTagScreen #qt-image-box { height: 1fr; }
    QuickTagScreen #qt-tags { max-height: 4; padding: 0 1; }
    QuickTagScreen #qt-tag-input { display: none; }
    QuickTagScreen #qt-tag-input.-open { display: block; }
    QuickTagScreen #qt-presets { height: auto; padding: 0 1; background: $panel; }
    """

    BINDINGS = (
        [
            Binding("escape", "back", "Back", tooltip="Save this image's changes and leave", id="nav.back"),
            Binding(
                "enter",
                "save_next",
                "Save+next",
                tooltip="Save the tags and show the next image",
                id="quick_tag.save_next",
            ),
            Binding("right", "skip", "Skip", tooltip="Next image without saving this one's changes", id="item.next"),
            Binding(
                "left",
                "prev",
                "Prev",
                tooltip="Previous image (this one's unsaved changes are dropped)",
                id="item.prev",
            ),
            Binding("t,slash", "custom_tag", "Tag…", tooltip="Type a tag with autocomplete", id="tags.add"),
            Binding("p", "edit_presets", "Presets", tooltip="Edit the nine preset tags", id="quick_tag.presets"),
            Binding("ctrl+z", "undo", "Undo", id="edit.undo", tooltip="Undo the last tag edit"),
            Binding("ctrl+y", "redo", "Redo", show=False, id="edit.redo", tooltip="Redo the edit just undone"),
            Binding(
                "x,delete",
                "remove_tag",
                "Remove tag",
                show=False,
                id="tags.remove",
                tooltip="Remove the tag under the cursor",
            ),
            Binding(
                "up,k",
                "cursor(-1)",
                "Previous tag",
                show=False,
                id="tags.cursor_up",
                tooltip="Cursor to the previous tag",
            ),
            Binding(
                "down,j", "cursor(1)", "Next tag", show=False, id="tags.cursor_down", tooltip="Cursor to the next tag"
            ),
        ]
        + [
            Binding(
                str(n),
                f"toggle_preset({n})",
                f"Toggle preset {n}",
                show=False,
                id=f"quick_tag.preset_{n}",
                tooltip=f"Add or remove preset tag {n}",
            )
            for n in range(1, 10)
        ]
        + QUICK_TAG_MARK_BINDINGS
    )  # > < stars, E N G flags, as in the browser (digits are the presets)

    def __init__(self, dataset_id: int, item_ids: list[int] | None = None, query: str | None = None) -> None:
        """``item_ids`` in order; None means every item matching ``query`` (the whole
        dataset when that is empty too), e.g. ``tags:<3`` to tag what is untagged."""
        super().__init__()
        self.dataset_id = dataset_id
        self.item_ids = list(item_ids) if item_ids is not None else []
        self.query_text = query
        self._resolve_ids = item_ids is None
        self.index = 0
        self.presets: list[str] = []
        self.tag_colors: dict[str, str] = {}
        self.views: dict[int, ItemView] = {}
        self.load_errors: dict[int, str] = {}
        self.editors: dict[int, TagListEditor] = {}
        self.subtypes: dict[int, str] = {}  # item id -> the tag caption edited (subtype_of)
        self.saved_history: list[tuple[int, list[str], list[str]]] = []  # (item id, before, after)
        self._save_lock = asyncio.Lock()
        self._requested: set[int] = set()
        self.shown_item: int | None = None
        self.pending_saves = 0
        self._prefetch_timer = None

    def compose(self) -> ComposeResult:
        yield Static("", id="qt-title")
        yield PreviewPane(id="qt-image-box")
        yield TagPills(id="qt-tags", empty_hint="no tags yet — 1–9 toggle presets, t types a tag")
        yield tag_input_widget(self.dataset_id, id="qt-tag-input")
        yield Static("", id="qt-presets")
        yield KeyBar()

    def on_mount(self) -> None:
        self._pane = self.query_one(PreviewPane)  # workers use it; no DOM queries from threads
        self.query_one("#qt-tags").focus()
        self._setup_worker()
        if self._resolve_ids:
            self.query_one("#qt-title", Static).update("finding the images to tag…")
            self._ids_worker()
            return
        if not self.item_ids:
            self.query_one("#qt-title", Static).update("No images to tag (the query matched nothing).")
            return
        self._show()

    @property
    def shown_at(self) -> float:
        """perf_counter when the current picture went on screen (for the benchmark)."""
        return self.query_one(PreviewPane).shown_at

    @work(thread=True, group="qt-setup", exit_on_error=False)
    def _setup_worker(self) -> None:
        self.post_message(SetupLoaded(get_presets(self.dataset_id), load_group_colors()))

    @work(thread=True, group="qt-setup", exit_on_error=False)
    def _ids_worker(self) -> None:
        from sushitui.dataset.items import result_ids

        try:
            ids = result_ids(self.dataset_id, self.query_text or None)
        except Exception as exc:  # noqa: BLE001 - a bad query is shown, not raised
            self.app.call_from_thread(self._ids_ready, [], f"cannot select images: {exc}")
            return
        self.app.call_from_thread(self._ids_ready, ids, None)

    def _ids_ready(self, ids: list[int], error: str | None) -> None:
        self._resolve_ids = False
        self.item_ids = ids
        if error or not ids:
            self.query_one("#qt-title", Static).update(
                Text(for_terminal(error or "No images match; nothing to tag."), style="yellow")
            )
            return
        self.index = 0
        self._show()

    def on_setup_loaded(self, message: SetupLoaded) -> None:
        self.presets = message.presets
        self.tag_colors = message.colors
        self._refresh_tags()

    # --- loading and prefetching ----------------------------------------------------

    @property
    def item_id(self) -> int | None:
        return self.item_ids[self.index] if 0 <= self.index < len(self.item_ids) else None

    def editor_for(self, item_id: int) -> TagListEditor | None:
        ed = self.editors.get(item_id)
        if ed is None and item_id in self.views:
            sub = self.subtype_of(item_id)
            ed = self.editors[item_id] = TagListEditor(self.views[item_id].tags.get(sub, []), resolve=resolve_alias)
        return ed

    def subtype_of(self, item_id: int) -> str:
        """The tag caption quick tagging edits for an item: main, or the one with the tags
        when main is prose (as item detail opens); fixed once chosen, so that emptying it
        never sends the next toggle to the prose caption."""
        sub = self.subtypes.get(item_id)
        if sub is None:
            view = self.views.get(item_id)
            if view is None:
                return MAIN
            sub = self.subtypes[item_id] = view.default_tag_subtype
        return sub

    @property
    def editor(self) -> TagListEditor | None:
        return self.editor_for(self.item_id) if self.item_id is not None else None

    def _request_views(self, ids: list[int], with_previews: bool) -> None:
        todo = [i for i in ids if i not in self.views and i not in self._requested]
        self._requested.update(todo)
        if todo or with_previews:
            self._views_worker(todo, [i for i in ids] if with_previews else [])

    @work(thread=True, group="qt-views", exit_on_error=False)
    def _views_worker(self, ids: list[int], preview_ids: list[int]) -> None:
        views, errors = [], {}
        for item_id in ids:
            try:
                views.append(load_item_view(item_id))
            except Exception as exc:  # noqa: BLE001 - a vanished item is shown as such
                errors[item_id] = f"item {item_id} could not be loaded: {exc}"
        if views or errors:
            self.post_message(ViewsLoaded(views, errors))
        known = {v.item_id: v for v in views}
        pane = self._pane
        for item_id in preview_ids:
            v = known.get(item_id) or self.views.get(item_id)
            if v is None:
                try:
                    v = load_item_view(item_id)
                except Exception:  # noqa: BLE001 - prefetching is best effort; the item's own load reports it
                    continue
            path = v.abs_path(v.image_path)
            if path is not None:
                pane.prefetch(path, v.mtime_ns)

    def on_views_loaded(self, message: ViewsLoaded) -> None:
        for v in message.views:
            self.views.setdefault(v.item_id, v)
        self.load_errors.update(message.errors)
        if self.item_id in self.views or self.item_id in self.load_errors:
            if self.shown_item != self.item_id:
                self._show()

    def _prefetch(self) -> None:
        if not self.PREFETCH:
            return
        ahead = [
            self.item_ids[i] for i in range(self.index + 1, min(len(self.item_ids), self.index + 1 + PREFETCH_AHEAD))
        ]
        if self.index > 0:
            ahead.append(self.item_ids[self.index - 1])
        if ahead:
            self._request_views(ahead, with_previews=True)

    # --- showing an image -----------------------------------------------------------

    def _show(self) -> None:
        item_id = self.item_id
        if item_id is None:
            return
        title = self.query_one("#qt-title", Static)
        view = self.views.get(item_id)
        if view is None:
            if item_id in self.load_errors:
                title.update(Text(for_terminal(self.load_errors[item_id]), style="red"))
                self.shown_item = item_id
            else:
                title.update(f"Image {self.index + 1}/{len(self.item_ids)} · loading…")
                self._request_views([item_id], with_previews=False)
            return
        self.shown_item = item_id
        t = Text()
        t.append(f"Image {self.index + 1}/{len(self.item_ids)}", style="bold")
        name = f"{view.rel_dir}/{view.base_name}" if view.rel_dir else view.base_name
        t.append("  " + for_terminal(name))
        t.append(f"  {view.width or '?'}×{view.height or '?'}", style="dim")
        title.update(t)
        self._title_text = t
        self.load_marks_label(item_id, lambda: self._show_marks(item_id))
        self._show_image(view)
        self._refresh_tags(cursor=0)
        # Prefetching renders cells in Python (it holds the GIL): start it once this
        # picture has been painted, not during the paint. Two images ahead are ready, so
        # the delay never makes the next one late.
        if self._prefetch_timer is not None:
            self._prefetch_timer.stop()
        self._prefetch_timer = self.set_timer(PREFETCH_DELAY_S, self._prefetch)

    def _show_marks(self, item_id: int) -> None:
        if item_id != self.item_id:
            return
        t = self._title_text.copy()
        if self.marks_label:
            t.append(f"  {self.marks_label}", style="magenta")
        self.query_one("#qt-title", Static).update(t)

    def mark_targets(self) -> list[int] | None:
        return [self.item_id] if self.item_id is not None and self.item_id in self.views else None

    def marks_changed(self, item_ids: list[int]) -> None:
        item_id = self.item_id
        if item_id in item_ids:
            self.load_marks_label(item_id, lambda: self._show_marks(item_id))

    def _show_image(self, view: ItemView) -> None:
        pane = self.query_one(PreviewPane)
        path = view.abs_path(view.image_path)
        if path is None:
            pane.show_message("this item has no image" if not view.image_path else "unsafe image path refused")
        else:
            pane.show(path, view.mtime_ns)

    def _refresh_tags(self, cursor: int | None = None) -> None:
        ed = self.editor
        self.query_one("#qt-tags", TagPills).set_tags(ed.tags if ed else [], self.tag_colors, cursor)
        present = {match_key(t) for t in (ed.tags if ed else [])}
        row = Text()
        if not self.presets:
            row.append("No presets yet: press p to set up to nine tags for keys 1–9.", style="dim")
        for n, tag in enumerate(self.presets, start=1):
            on = match_key(tag) in present
            label = f" {n} {for_terminal(tag)} "
            row.append(label, style=pill_style(self.tag_colors.get(match_key(tag)), marked=on) if on else "dim")
            row.append(" ")
        if ed is not None and ed.dirty:
            row.append(" ● unsaved (Enter saves)", style="yellow")
        if self.pending_saves:
            row.append(f" saving {self.pending_saves}…", style="dim")
        self.query_one("#qt-presets", Static).update(row)

    # --- editing --------------------------------------------------------------------

    def action_toggle_preset(self, n: int) -> None:
        ed = self.editor
        if ed is None:
            return
        if not 1 <= n <= len(self.presets):
            self.notify(f"no preset {n}: press p to set presets", timeout=2, markup=False)
            return
        ed.toggle(self.presets[n - 1])
        self._refresh_tags()

    def action_custom_tag(self) -> None:
        box = self.query_one("#qt-tag-input")
        box.add_class("-open")
        box.focus()

    def on_tag_input_submitted(self, message) -> None:
        message.stop()
        tag = submitted_tag(message)
        box = self.query_one("#qt-tag-input", Input)
        box.value = ""
        box.remove_class("-open")
        self.query_one("#qt-tags").focus()
        ed = self.editor
        if ed is not None:
            for part in split_tags(tag):
                ed.add(part)
            self._refresh_tags(cursor=len(ed) - 1)

    def action_remove_tag(self) -> None:
        ed = self.editor
        pills = self.query_one("#qt-tags", TagPills)
        if ed is not None and ed.remove(pills.cursor) is not None:
            self._refresh_tags(cursor=pills.cursor)

    def action_cursor(self, delta: int) -> None:
        pills = self.query_one("#qt-tags", TagPills)
        pills.cursor = pills.cursor + delta

    def action_undo(self) -> None:
        ed = self.editor
        if ed is not None and ed.undo():
            self._refresh_tags()
            return
        if not self.saved_history:
            self.notify("nothing to undo", timeout=2, markup=False)
            return
        item_id, before, _after = self.saved_history.pop()
        if item_id in self.item_ids:
            self.index = self.item_ids.index(item_id)
        target = self.editor_for(item_id)
        if target is not None:
            target.set_tags(before)
            self._enqueue_save(item_id, record=False)
        self._show()
        self.notify("undid the last save", timeout=2, markup=False)

    def action_redo(self) -> None:
        ed = self.editor
        if ed is not None and ed.redo():
            self._refresh_tags()

    def action_edit_presets(self) -> None:
        self.app.push_screen(PresetsDialog(self.presets), self._presets_chosen)

    def _presets_chosen(self, presets: list[str] | None) -> None:
        if presets is None:
            return
        self._save_presets_worker(presets)

    @work(thread=True, group="qt-presets", exit_on_error=False)
    def _save_presets_worker(self, presets: list[str]) -> None:
        saved = set_presets(self.dataset_id, presets)
        self.post_message(SetupLoaded(saved, self.tag_colors))
        if len(presets) > len(saved):
            self.app.call_from_thread(
                self.notify, f"only the first {len(saved)} presets are kept (keys 1–9)", timeout=4, markup=False
            )

    # --- moving and saving ----------------------------------------------------------

    def _enqueue_save(self, item_id: int, record: bool = True) -> None:
        ed = self.editor_for(item_id)
        if ed is None or not ed.dirty:
            return
        self.pending_saves += 1
        self._save_worker(item_id, ed.tags, ed.baseline, record)

    @work(group="qt-save", exit_on_error=False)
    async def _save_worker(self, item_id: int, tags: list[str], before: list[str], record: bool) -> None:
        try:
            async with self._save_lock:  # saves happen in the order they were asked for
                view = self.views.get(item_id)
                name = view.base_name if view else str(item_id)
                sub = self.subtype_of(item_id)
                outcome = await edit_flow(self).save_tags(
                    view, item_id, sub, tags, editor=self.editor_for(item_id), what=f"tags of {name}"
                )
                if outcome.saved and outcome.choice != TAKE_DISK:
                    if view is not None:
                        view.tags[sub] = list(tags)
                    if record:
                        self.saved_history.append((item_id, list(before), list(tags)))
        finally:
            self.pending_saves -= 1
            if self.is_attached:
                self._refresh_tags()

    def _go(self, index: int) -> None:
        if not 0 <= index < len(self.item_ids):
            self.notify(
                "that was the last image" if index >= len(self.item_ids) else "this is the first image",
                timeout=2,
                markup=False,
            )
            return
        self.index = index
        self._show()

    def action_save_next(self) -> None:
        if self.focused is not None and self.focused.id == "qt-tag-input":
            return
        if self.item_id is not None:
            self._enqueue_save(self.item_id)
        if self.index + 1 >= len(self.item_ids):
            self._refresh_tags()
            self.notify(f"saved — all {len(self.item_ids)} images done; Esc goes back", timeout=4, markup=False)
            return
        self._go(self.index + 1)

    def _drop_unsaved(self) -> None:
        ed = self.editor
        if ed is not None and ed.dirty:
            n = len(set(map(match_key, ed.tags)) ^ set(map(match_key, ed.baseline)))
            ed.revert()
            self.notify(f"not saved: {n} tag change(s) on this image dropped", timeout=3, markup=False)

    def action_skip(self) -> None:
        if self.index + 1 >= len(self.item_ids):
            self.notify("that was the last image", timeout=2, markup=False)
            return
        self._drop_unsaved()
        self._go(self.index + 1)

    def action_prev(self) -> None:
        if self.index == 0:
            self.notify("this is the first image", timeout=2, markup=False)
            return
        self._drop_unsaved()
        self._go(self.index - 1)

    def action_back(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "qt-tag-input":
            focused.remove_class("-open")
            self.query_one("#qt-tags").focus()
            return
        if self.item_id is not None:
            self._enqueue_save(self.item_id)
        self._leave()

    async def on_unmount(self) -> None:
        """The screen closes (the app quits, ctrl+o): toggles on the current image and
        saves still queued are written in a thread if their files are unchanged on disk
        (a conflict is never forced); what could not be written is shown, or printed
        after exit."""
        left = [
            left_tag_edit(self.views.get(item_id), item_id, self.subtype_of(item_id), ed.tags)
            for item_id, ed in self.editors.items()
            if ed.dirty and (item_id == self.item_id or self.pending_saves)
        ]
        if left:
            report_unsaved(self.app, await asyncio.to_thread(write_left_edits, left))

    @work(group="qt-leave", exit_on_error=False)
    async def _leave(self) -> None:
        # Wait for queued saves (and any conflict dialog they open) before leaving.
        while self.pending_saves:
            await asyncio.sleep(0.02)
        self.dismiss(self.item_id)
