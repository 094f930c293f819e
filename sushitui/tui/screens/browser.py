"""The item browser (BR-1..4): a grid of item cards over a dataset or a query result.

Only the visible page is ever loaded: the page query (LIMIT/OFFSET over the dataset's
sort index, filtered by the query language), the count and the thumbnails all run in
thread workers; the UI thread only puts finished page data on the fixed pool of cards.
After a page is shown the worker prefetches the next page's rows and thumbnails, so
paging forward is normally served from memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from sushitui.dataset.changes import CatalogueWatch
from sushitui.dataset.items import count_items, page_cards, result_ids
from sushitui.errors import log_if_unexpected
from sushitui.progress import CancelToken, Throttle
from sushitui.sanitize import for_terminal
from sushitui.tui.screens.check_keys import CHECK_BINDINGS, CheckKeys
from sushitui.tui.screens.marks_keys import MARK_BINDINGS, TRASH_BINDINGS, MarkKeys, TrashKeys
from sushitui.tui.widgets.item_grid import CardData, ItemGrid, image_mode, thumbnail_strips
from sushitui.tui.widgets.key_bar import KeyBar
from sushitui.tui.widgets.progress import ProgressPanel

log = logging.getLogger(__name__)

SORT_KEYS = ["name", "created", "width", "height", "tags"]
SORT_LABELS = {"name": "file name", "created": "created", "width": "width", "height": "height", "tags": "tag count"}
PAGE_CACHE_PAGES = 8
# how often the open browser asks whether the catalogue changed (other people's edits)
LIVE_REFRESH_S = 2.0


# --- data access (core functions, run in workers) --------------------------------------


def count_result(dataset_id: int, query: str) -> int:
    return count_items(dataset_id, query or None)


def fmt_size(width: int | None, height: int | None) -> str:
    return f"{width}×{height}" if width and height else ""


def load_cards(
    dataset_id: int, root: str, query: str, sort: str, desc: bool, offset: int, limit: int
) -> list[CardData]:
    """One page of cards: the core's ``page_cards`` in the grid's shape, with each item's
    stars and flags before its size (``★4 ✕ 1024×768``)."""
    from sushitui.dataset.marks import marks_of

    page = page_cards(dataset_id, query or None, sort, desc, offset, limit, root=root)
    marks = marks_of([c.item_id for c in page])
    return [
        CardData(
            item_id=c.item_id,
            name=c.name,
            tags=c.tags,
            tag_count=c.tag_count,
            image_path=c.image_path,
            stamp=c.stamp,
            problem=c.problem,
            caption=c.caption,
            findings=c.findings,
            finding_severity=c.finding_severity,
            size_text=" ".join(
                p for p in ((marks[c.item_id].badge() if c.item_id in marks else ""), fmt_size(c.width, c.height)) if p
            ),
        )
        for c in page
    ]


# --- messages from workers ---------------------------------------------------------------


class PageLoaded(Message):
    def __init__(self, generation: int, offset: int, limit: int, cards: list[CardData], seconds: float) -> None:
        super().__init__()
        self.generation = generation
        self.offset = offset
        self.limit = limit
        self.cards = cards
        self.seconds = seconds


class ThumbsLoaded(Message):
    def __init__(self, generation: int, offset: int, thumbs: list) -> None:
        super().__init__()
        self.generation = generation
        self.offset = offset
        self.thumbs = thumbs  # [(index, item_id, Thumbnail)]


class CountLoaded(Message):
    def __init__(self, generation: int, total: int) -> None:
        super().__init__()
        self.generation = generation
        self.total = total


class CatalogueVersion(Message):
    """The catalogue's change counter, read by the poll worker (None: it could not be read)."""

    def __init__(self, version: int | None) -> None:
        super().__init__()
        self.version = version


class QueryFailed(Message):
    def __init__(self, generation: int, message: str, position: int | None) -> None:
        super().__init__()
        self.generation = generation
        self.message = message
        self.position = position


class StripCache:
    """Rendered thumbnail strips by (path, stamp, box): bounded, shared with worker threads."""

    def __init__(self, max_entries: int = 600) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        if value is None:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


class _WorkerCancel:
    """A worker's cancel flag in the CancelToken shape the core expects."""

    def __init__(self, worker) -> None:
        self._worker = worker

    @property
    def cancelled(self) -> bool:
        return self._worker.is_cancelled


@dataclass
class BrowserState:
    query: str = ""
    sort: str = "name"
    desc: bool = False
    offset: int = 0
    total: int | None = None


class BrowserScreen(MarkKeys, TrashKeys, CheckKeys, Screen):
    """Grid of a dataset's items; Enter opens the item detail."""

    BINDINGS = [
        Binding("enter", "open_item", "Open", id="browser.open_item", tooltip="Open the item under the cursor"),
        Binding("slash", "focus_search", "Search", id="browser.search", tooltip="Type a tag query to filter the items"),
        Binding(
            "space",
            "toggle_select",
            "Select",
            id="browser.toggle_select",
            tooltip="Select or unselect the item under the cursor",
        ),
        Binding("a", "select_all", "Select all", id="browser.select_all", tooltip="Select every item of the result"),
        Binding(
            "t",
            "bulk('add')",
            "Add tag",
            id="browser.add_tag",
            tooltip="Add a tag to the selected items (or the whole result)",
        ),
        Binding(
            "u",
            "bulk('remove')",
            "Remove tag",
            id="browser.remove_tag",
            tooltip="Remove a tag from the selected items (or the whole result)",
        ),
        Binding(
            "c",
            "bulk('replace')",
            "Replace tag",
            id="browser.replace_tag",
            tooltip="Replace one tag by another in the selected items",
        ),
        Binding("s", "cycle_sort", "Sort", id="browser.sort", tooltip="Sort by name, date, size or tag count"),
        Binding("r", "reverse_sort", "Reverse", id="browser.reverse_sort", tooltip="Reverse the sort order"),
        Binding(
            "q",
            "quick_tag",
            "Quick tag",
            id="browser.quick_tag",
            tooltip="Tag the selected items one by one with presets",
        ),
        Binding("A", "autotag", "Auto-tag", id="browser.autotag", tooltip="Run the auto-tagger on the selected items"),
        Binding(
            "C",
            "caption_vlm",
            "Caption (VLM)",
            id="browser.caption_vlm",
            tooltip="Caption the selected items (or the result) with a vision-language model, then review",
        ),
        Binding("e", "export", "Export", id="browser.export", tooltip="Export the selected items for training"),
        Binding("escape", "back", "Back", id="nav.back", tooltip="Back to the list of datasets"),
        Binding(
            "x",
            "cancel_bulk",
            "Cancel bulk edit",
            id="browser.cancel_bulk",
            tooltip="Stop the running bulk edit (what is done is kept)",
        ),
        Binding("f5", "reload", "Reload", show=False, id="browser.reload", tooltip="Read the items again"),
        Binding("up", "move(0, -1)", "Up", show=False, id="browser.up", tooltip="Cursor one row up"),
        Binding("down", "move(0, 1)", "Down", show=False, id="browser.down", tooltip="Cursor one row down"),
        Binding("left", "move(-1, 0)", "Left", show=False, id="browser.left", tooltip="Cursor to the previous item"),
        Binding("right", "move(1, 0)", "Right", show=False, id="browser.right", tooltip="Cursor to the next item"),
        Binding(
            "shift+up",
            "move(0, -1, True)",
            "Select up",
            show=False,
            id="browser.select_up",
            tooltip="Extend the selection one row up",
        ),
        Binding(
            "shift+down",
            "move(0, 1, True)",
            "Select down",
            show=False,
            id="browser.select_down",
            tooltip="Extend the selection one row down",
        ),
        Binding(
            "shift+left",
            "move(-1, 0, True)",
            "Select left",
            show=False,
            id="browser.select_left",
            tooltip="Extend the selection to the previous item",
        ),
        Binding(
            "shift+right",
            "move(1, 0, True)",
            "Select right",
            show=False,
            id="browser.select_right",
            tooltip="Extend the selection to the next item",
        ),
        Binding("pagedown", "page(1)", "Next page", show=False, id="browser.next_page", tooltip="Next page of items"),
        Binding(
            "pageup", "page(-1)", "Previous page", show=False, id="browser.prev_page", tooltip="Previous page of items"
        ),
        Binding("home", "jump(0)", "First item", show=False, id="browser.first", tooltip="Cursor to the first item"),
        Binding("end", "jump(-1)", "Last item", show=False, id="browser.last", tooltip="Cursor to the last item"),
        Binding(
            "ctrl+n",
            "clear_selection",
            "Clear selection",
            show=False,
            id="browser.clear_selection",
            tooltip="Unselect everything",
        ),
        *MARK_BINDINGS,  # stars 0-5, > <, flags E N G: on the selection or the cursor item
        *TRASH_BINDINGS,  # D: the selection or the cursor item to the trash; U: undo
        *CHECK_BINDINGS,  # k: run the health check (badges, check:any); d: the duplicates screen
    ]

    def __init__(self, dataset_id: int, dataset_name: str = "", root_path: str = "", query: str = "") -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.dataset_name = dataset_name
        self.root_path = root_path
        self.state = BrowserState(query=query)
        self.generation = 0
        self.capacity = 0
        self.columns = 1
        self.selected: set[int] = set()
        self._pages: OrderedDict[tuple[int, int, int], list[CardData]] = OrderedDict()
        self._pending_cursor = 0
        self._extend_pending = False  # shift+move crossed a page: select the new cursor item once shown
        self.image_mode = image_mode()
        self.box = (1, 1)
        self.strips = StripCache()
        self.bulk_token: CancelToken | None = None
        self.bulk_done_count = 0
        self.opened_at = time.perf_counter()
        self.first_page_at: float | None = None  # perf_counter when the first page was on the cards
        self.counted_at: float | None = None
        self.page_shown_at: float = 0.0
        self.pages_shown = 0
        self._watch: CatalogueWatch | None = None
        self._seen_version: int | None = None
        self._polling = False  # a poll worker is out: the timer does not start a second one
        self._follow_cursor_item = False  # the next page shown puts the cursor back on its item

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="browser-top", classes="topbar"):
            yield Static("", id="browser-title")
            yield Static("", id="browser-position")
        yield Input(
            value=self.state.query,
            placeholder="search: 1girl, -solo, smile | grin, width:>=1024  (/ to focus, Enter to apply)",
            id="browser-search",
        )
        yield Static("", id="browser-error")
        yield ItemGrid(id="browser-grid")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#browser-error", Static).display = False
        self.query_one(ItemGrid).focus()
        self._update_title()
        self.watch(self.app, "job_status", lambda _status: self._update_position(), init=False)
        if not self.root_path:
            self._load_dataset()
        self._start_count()
        self.set_interval(LIVE_REFRESH_S, self._poll_catalogue)

    def on_unmount(self) -> None:
        if self._watch is not None:
            self._watch.close()

    @property
    def grid(self) -> ItemGrid:
        return self.query_one(ItemGrid)

    @property
    def thumbs(self):
        return self.app.thumbnails  # type: ignore[attr-defined]

    # -- top bar -------------------------------------------------------------------------
    def _update_title(self) -> None:
        title = Text("Browse ", style="bold")
        title.append(for_terminal(self.dataset_name or f"dataset {self.dataset_id}"), style="bold")
        order = "↓" if self.state.desc else "↑"
        title.append(f"  sort: {SORT_LABELS[self.state.sort]} {order}", style="dim")
        if self.selected:
            title.append(f"  {len(self.selected):,} selected", style="bold")
        self.query_one("#browser-title", Static).update(title)
        self._update_position()

    def position_text(self) -> str:
        total = self.state.total
        shown = len(self.grid.page) if self.is_mounted else 0
        if total == 0:
            return "no items" if not self.state.query.strip() else "no matches"
        start = self.state.offset + 1
        end = self.state.offset + max(shown, 1)
        of = f"{total:,}" if total is not None else "…"
        return f"{start:,}–{end:,} of {of}"

    def _update_position(self) -> None:
        text = Text()
        job = getattr(self.app, "job_status", "")
        if job:
            text.append(for_terminal(job) + "  ", style="dim")
        text.append(self.position_text())
        self.query_one("#browser-position", Static).update(text)

    # -- loading -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="browser-dataset", exit_on_error=False)
    def _load_dataset(self) -> None:
        from sushitui.dataset.registry import get_dataset

        ds = get_dataset(self.dataset_id)
        self.app.call_from_thread(self._set_dataset, ds.name, ds.root_path)

    def _set_dataset(self, name: str, root: str) -> None:
        self.dataset_name = name
        self.root_path = root
        self._update_title()
        if self.capacity:
            self._request_page()

    def _start_count(self) -> None:
        self.state.total = None
        self._count(self.generation, self.state.query)

    @work(thread=True, exclusive=True, group="browser-count", exit_on_error=False)
    def _count(self, generation: int, query: str) -> None:
        from sushitui.tags.query import QueryError

        try:
            total = count_result(self.dataset_id, query)
        except QueryError as exc:
            self.post_message(QueryFailed(generation, exc.message, exc.position))
            return
        self.post_message(CountLoaded(generation, total))

    def _request_page(self) -> None:
        """Show the page at state.offset: from the page cache at once, else via a worker."""
        if not self.capacity or not self.root_path:
            return
        key = (self.generation, self.state.offset, self.capacity)
        cards = self._pages.get(key)
        if cards is not None:
            self._pages.move_to_end(key)
            self._show(cards)
        self._load_page(self.generation, self.state.offset, self.capacity, cards)

    @work(thread=True, exclusive=True, group="browser-page", exit_on_error=False)
    def _load_page(self, generation: int, offset: int, limit: int, cached: list[CardData] | None) -> None:
        """Rows of the page (unless already cached and shown), its thumbnails, then prefetch."""
        from sushitui.tags.query import QueryError

        worker = get_current_worker()
        st = self.state
        try:
            if cached is not None:
                cards = cached
            else:
                t0 = time.perf_counter()
                cards = load_cards(self.dataset_id, self.root_path, st.query, st.sort, st.desc, offset, limit)
                if worker.is_cancelled:
                    return
                self.post_message(PageLoaded(generation, offset, limit, cards, time.perf_counter() - t0))
        except QueryError as exc:
            self.post_message(QueryFailed(generation, exc.message, exc.position))
            return
        if self.image_mode == "off":
            return
        box = self.box
        thumbs = self._thumbs_for(cards, box, worker)
        if worker.is_cancelled:
            return
        if thumbs:
            self.post_message(ThumbsLoaded(generation, offset, thumbs))
        # Prefetch the next page (rows, thumbnails and their strips) so paging forward is instant.
        next_offset = offset + limit
        if worker.is_cancelled or (st.total is not None and next_offset >= st.total):
            return
        key = (generation, next_offset, limit)
        nxt = self.app.call_from_thread(self._pages.get, key)
        if nxt is None:
            try:
                nxt = load_cards(self.dataset_id, self.root_path, st.query, st.sort, st.desc, next_offset, limit)
            except QueryError:
                return
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._cache_page, key, nxt)
        self._thumbs_for(nxt, box, worker)

    def _thumbs_for(self, cards: list[CardData], box: tuple[int, int], worker) -> list:
        """Decode (cached) thumbnails of ``cards`` and render their strips for ``box`` (worker thread)."""
        entries = [(i, c) for i, c in enumerate(cards) if c.image_path]
        if not entries:
            return []
        results = self.thumbs.load_many([(c.image_path, c.stamp) for _, c in entries], cancel=_WorkerCancel(worker))
        out = []
        for (i, card), thumb in zip(entries, results):
            if thumb is None or worker.is_cancelled:
                continue
            strips = None
            if thumb.image is not None and self.image_mode != "tgp":
                key = (card.image_path, card.stamp, box)
                strips = self.strips.get(key)
                if strips is None:
                    strips = thumbnail_strips(thumb, box, self.image_mode)
                    self.strips.put(key, strips)
            out.append((i, card.item_id, thumb, strips))
        return out

    def _cache_page(self, key, cards: list[CardData]) -> None:
        self._pages[key] = cards
        self._pages.move_to_end(key)
        while len(self._pages) > PAGE_CACHE_PAGES:
            self._pages.popitem(last=False)

    def on_page_loaded(self, message: PageLoaded) -> None:
        if (
            message.generation != self.generation
            or message.offset != self.state.offset
            or message.limit != self.capacity
        ):
            return
        self._cache_page((message.generation, message.offset, message.limit), message.cards)
        self._show(message.cards)

    def _show(self, cards: list[CardData]) -> None:
        grid = self.grid
        if self._follow_cursor_item:
            # a live refresh: the item under the cursor may have moved on the page
            self._follow_cursor_item = False
            current = grid.current
            if current is not None:
                for i, card in enumerate(cards):
                    if card.item_id == current.item_id:
                        self._pending_cursor = i
                        break
        grid.show_page(cards, self.selected, self._pending_cursor)
        # Thumbnails already rendered (prefetched) go on at once; the rest arrive with ThumbsLoaded.
        if self.image_mode != "off":
            box = self.box
            for i, card in enumerate(cards):
                if card.image_path:
                    thumb = self.thumbs.get(card.image_path, card.stamp)
                    if thumb is None:
                        continue
                    strips = self.strips.get((card.image_path, card.stamp, box))
                    if strips is not None or thumb.image is None or self.image_mode == "tgp":
                        grid.set_thumbnail(i, card.item_id, thumb, strips)
        if self._extend_pending:
            self._extend_pending = False
            self._mark_cursor_selected()
        # No _set_error(None) here: the error line shrinks the grid, the resize re-shows
        # the page, and clearing it there hid every query error at once. A valid query
        # clears it in _restart.
        self.pages_shown += 1
        self.page_shown_at = time.perf_counter()
        if self.first_page_at is None:
            self.first_page_at = self.page_shown_at
        self._update_position()

    def on_thumbs_loaded(self, message: ThumbsLoaded) -> None:
        if message.generation != self.generation or message.offset != self.state.offset:
            return
        grid = self.grid
        for index, item_id, thumb, strips in message.thumbs:
            grid.set_thumbnail(index, item_id, thumb, strips)

    def on_count_loaded(self, message: CountLoaded) -> None:
        if message.generation != self.generation:
            return
        self.state.total = message.total
        self.counted_at = time.perf_counter()
        if message.total == 0:
            self.grid.show_page([], self.selected, 0)
        self._update_position()

    def on_query_failed(self, message: QueryFailed) -> None:
        if message.generation != self.generation:
            return
        self._set_error(message.message, message.position)

    def _set_error(self, message: str | None, position: int | None = None) -> None:
        label = self.query_one("#browser-error", Static)
        if message is None:
            label.display = False
            return
        text = Text("query error", style="bold red")
        if position is not None:
            text.append(f" at column {position + 1}", style="bold red")
            query = self.state.query
            text.append(": ")
            text.append(for_terminal(message))
            text.append("\n  " + for_terminal(query[:position]))
            text.append(for_terminal(query[position : position + 1] or " "), style="reverse red")
            text.append(for_terminal(query[position + 1 :]))
        else:
            text.append(": " + for_terminal(message))
        label.update(text)
        label.display = True

    # -- grid events ----------------------------------------------------------------------
    def on_item_grid_resized(self, message: ItemGrid.Resized) -> None:
        # Keep the item under the cursor on screen when the page size changes.
        absolute = self.state.offset + self.grid.cursor
        self.capacity = message.capacity
        self.columns = message.columns
        self.box = message.box
        # rendered thumbnails for about four pages (this, next, previous, one spare):
        # each is hundreds of small objects, and a bigger cache made every full
        # garbage collection (which stalls the UI thread too) slower
        self.strips.max_entries = max(120, 4 * message.capacity)
        self.state.offset = (absolute // self.capacity) * self.capacity
        self._pending_cursor = absolute - self.state.offset
        self._request_page()

    def on_item_grid_card_clicked(self, message: ItemGrid.CardClicked) -> None:
        self.grid.focus()
        self.grid.move_cursor(message.index)
        if message.chain >= 2:
            self.action_open_item()

    # -- search ----------------------------------------------------------------------------
    @on(Input.Submitted, "#browser-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.set_query(event.value)
        self.grid.focus()

    def set_query(self, text: str) -> None:
        from sushitui.tags.query import check

        error = check(text) if text.strip() else None
        if error is not None:
            self.state.query = text
            self._set_error(error.message, error.position)
            return
        self.state.query = text
        self._restart()

    def _restart(self, keep_offset: bool = False) -> None:
        """New generation: the result changed (query, sort, edits)."""
        self.generation += 1
        if not keep_offset:
            self.state.offset = 0
            self._pending_cursor = 0
        else:
            self._pending_cursor = self.grid.cursor
        self._pages.clear()
        self._set_error(None)
        self._start_count()
        self._update_title()
        self._request_page()

    def action_focus_search(self) -> None:
        self.query_one("#browser-search", Input).focus()

    # -- navigation -------------------------------------------------------------------------
    def _go(self, absolute: int, extend_selection: bool = False) -> None:
        total = self.state.total
        if total is not None:
            absolute = min(absolute, total - 1)
        absolute = max(0, absolute)
        if extend_selection and self.grid.current is not None:
            self.selected.add(self.grid.current.item_id)
        page_offset = (absolute // self.capacity) * self.capacity if self.capacity else 0
        if page_offset != self.state.offset:
            if total is None and page_offset > self.state.offset and len(self.grid.page) < self.capacity:
                return  # past the end of a result that is still being counted
            self.state.offset = page_offset
            self._pending_cursor = absolute - page_offset
            self._extend_pending = extend_selection
            self._request_page()
            self._update_position()
            return
        index = absolute - page_offset
        if index >= len(self.grid.page):
            return
        self.grid.move_cursor(index)
        if extend_selection:
            self._mark_cursor_selected()

    def _mark_cursor_selected(self) -> None:
        current = self.grid.current
        if current is not None:
            self.selected.add(current.item_id)
        self.grid.refresh_marks(self.selected)
        self._update_title()

    def action_move(self, dx: int, dy: int, extend: bool = False) -> None:
        if self.grid.current is None:
            return
        absolute = self.state.offset + self.grid.cursor + dx + dy * self.columns
        if absolute < 0:
            return
        self._go(absolute, extend)

    def action_page(self, direction: int) -> None:
        if not self.capacity:
            return
        new_offset = self.state.offset + direction * self.capacity
        total = self.state.total
        if new_offset < 0:
            new_offset = 0
        if total is not None and new_offset >= total:
            return
        if total is None and direction > 0 and len(self.grid.page) < self.capacity:
            return
        if new_offset == self.state.offset:
            return
        self.state.offset = new_offset
        self._pending_cursor = self.grid.cursor
        self._request_page()
        self._update_position()

    def action_jump(self, where: int) -> None:
        if where >= 0:
            self._go(where)
        elif self.state.total:
            self._go(self.state.total - 1)

    def action_back(self) -> None:
        if self.focused is self.query_one("#browser-search", Input):
            self.grid.focus()  # Esc leaves the search bar, not the browser
            return
        if self.selected:
            self.action_clear_selection()
            return
        self.app.pop_screen()

    # -- other people's edits -------------------------------------------------------------
    def _poll_catalogue(self) -> None:
        if not self._polling:
            self._polling = True
            self._read_catalogue_version()

    @work(thread=True, group="browser-changes", exit_on_error=False)
    def _read_catalogue_version(self) -> None:
        version = None
        try:
            if self._watch is None:
                self._watch = CatalogueWatch()
            version = self._watch.version()
        except Exception as exc:  # noqa: BLE001 - a lost server: the browser goes on, the next tick retries
            log.warning("reading the catalogue's change counter failed: %s", exc)
        finally:
            self.post_message(CatalogueVersion(version))

    def on_catalogue_version(self, message: CatalogueVersion) -> None:
        self._polling = False
        if message.version is None or message.version == self._seen_version:
            return
        if self._seen_version is None:
            self._seen_version = message.version
            return
        if not self._may_refresh():
            return  # the version stays unseen: the next tick tries again
        self._seen_version = message.version
        self._refresh_in_place()

    def _may_refresh(self) -> bool:
        """Not under a dialog or another screen, not while the user types a search, not
        before the first page or during a bulk edit (which reloads when it ends), and not
        while the page or count is still loading (a slow count under a job that commits
        every second must not pile up threads)."""
        return (
            self.app.screen is self
            and self.focused is not self.query_one("#browser-search", Input)
            and self.first_page_at is not None
            and self.bulk_token is None
            and not any(
                w.node is self and w.group in ("browser-count", "browser-page") and w.is_running
                for w in self.app.workers
            )
        )

    def _refresh_in_place(self) -> None:
        """Reload the page and the count where they are: the old cards and total stay up
        until the new ones arrive, the cursor stays on its item, the selection is kept."""
        self.generation += 1
        self._pending_cursor = self.grid.cursor
        self._follow_cursor_item = True
        self._pages.clear()
        self._count(self.generation, self.state.query)
        self._request_page()

    def action_reload(self) -> None:
        self._restart(keep_offset=True)

    def on_screen_resume(self) -> None:
        # Back from item detail / quick tagging / a bulk edit: tags may have changed.
        if self.first_page_at is not None:
            self._restart(keep_offset=True)

    # -- sort ----------------------------------------------------------------------------------
    def action_cycle_sort(self) -> None:
        i = SORT_KEYS.index(self.state.sort)
        self.state.sort = SORT_KEYS[(i + 1) % len(SORT_KEYS)]
        self._restart()

    def action_reverse_sort(self) -> None:
        self.state.desc = not self.state.desc
        self._restart()

    # -- selection -------------------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        current = self.grid.current
        if current is None:
            return
        if current.item_id in self.selected:
            self.selected.discard(current.item_id)
        else:
            self.selected.add(current.item_id)
        self.grid.refresh_marks(self.selected)
        self._update_title()
        self.action_move(1, 0)

    def action_clear_selection(self) -> None:
        self.selected.clear()
        self.grid.refresh_marks(self.selected)
        self._update_title()

    def action_select_all(self) -> None:
        self._select_all(self.generation)

    @work(thread=True, exclusive=True, group="browser-select", exit_on_error=False)
    def _select_all(self, generation: int) -> None:
        st = self.state
        ids = result_ids(self.dataset_id, st.query, st.sort, st.desc)
        self.app.call_from_thread(self._set_selection, generation, ids)

    def _set_selection(self, generation: int, ids: list[int]) -> None:
        if generation != self.generation:
            return
        self.selected = set(ids)
        self.grid.refresh_marks(self.selected)
        self._update_title()
        self.notify(f"Selected all {len(ids):,} items of the result")

    # -- actions on items -------------------------------------------------------------------------
    def target_ids(self) -> list[int] | None:
        """The selection, or the item under the cursor when nothing is selected."""
        if self.selected:
            return sorted(self.selected)
        current = self.grid.current
        return [current.item_id] if current else None

    def action_open_item(self) -> None:
        """Open the item detail; ←/→ there walk the whole result (it fetches the ids of
        this query and sort in its own worker, so opening does not wait for them)."""
        current = self.grid.current
        if current is None:
            return
        from sushitui.tui.screens.item_detail import ItemDetailScreen

        st = self.state
        self.app.push_screen(
            ItemDetailScreen(
                current.item_id, dataset_id=self.dataset_id, query=st.query or None, sort=st.sort, desc=st.desc
            )
        )

    def action_bulk(self, mode: str) -> None:
        from sushitui.tui.screens.bulk_tag import BulkTagDialog

        total = self.state.total
        dialog = BulkTagDialog(
            mode,
            dataset_id=self.dataset_id,
            selection_count=len(self.selected),
            result_count=total,
            query=self.state.query,
        )
        self.app.push_screen(dialog, self._bulk_chosen)

    async def _bulk_chosen(self, choice) -> None:
        if not choice:
            return
        await self._run_bulk(choice, sorted(self.selected) if choice.scope == "selection" else None, self.state.query)

    async def _run_bulk(self, choice, item_ids: list[int] | None, query: str) -> None:
        if self.bulk_token is not None:
            self.notify("A bulk edit is already running (x cancels it).", severity="warning")
            return
        self.bulk_token = CancelToken()
        if not self.query(ProgressPanel):
            # mounted on first use: the browser's first paint does not pay for it
            await self.mount(ProgressPanel(id="bulk-panel"), before=self.query_one(KeyBar))
        self.query_one(ProgressPanel).start(f"Bulk edit: {choice.mode} '{choice.tag}' — x cancels")
        self.refresh_bindings()
        self._bulk_worker(choice, item_ids, query, self.bulk_token)

    @work(thread=True, group="browser-bulk", exit_on_error=False)
    def _bulk_worker(self, choice, item_ids: list[int] | None, query: str, token: CancelToken) -> None:
        from sushitui.tui.screens.bulk_tag import run_bulk

        panel = self.query_one(ProgressPanel)
        progress = Throttle(lambda event: self.app.call_from_thread(panel.update_event, event), interval=0.1)
        try:
            summary = run_bulk(self.dataset_id, choice, item_ids=item_ids, query=query, progress=progress, cancel=token)
        except Exception as exc:  # noqa: BLE001 - the progress panel must close and say why; a bug is logged
            log_if_unexpected(log, exc, "bulk edit")
            self.app.call_from_thread(self._bulk_done, None, f"Bulk edit failed: {for_terminal(exc)}")
            return
        self.app.call_from_thread(self._bulk_done, summary, None)

    def _bulk_done(self, summary, error: str | None) -> None:
        self.bulk_token = None
        self.query_one(ProgressPanel).finish()
        self.refresh_bindings()
        if error:
            self.notify(error, severity="error", timeout=10)
        else:
            self.notify(summary.text, severity="warning" if summary.problems else "information", timeout=8)
        self.bulk_done_count += 1
        self._restart(keep_offset=True)

    def action_cancel_bulk(self) -> None:
        if self.bulk_token is not None:
            self.bulk_token.cancel()
            self.query_one(ProgressPanel).set_status("cancelling…")

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "cancel_bulk":
            return self.bulk_token is not None
        return True

    def mark_targets(self) -> list[int] | None:
        return self.target_ids()

    def marks_changed(self, item_ids: list[int]) -> None:
        self._restart(keep_offset=True)  # a rating:/flag: query may no longer match them

    def items_removed(self, item_ids: list[int]) -> None:
        self.selected.difference_update(item_ids)
        self._restart(keep_offset=True)

    def items_restored(self, item_ids: list[int]) -> None:
        self._restart(keep_offset=True)

    def action_quick_tag(self) -> None:
        from sushitui.tui.screens.quick_tag import QuickTagScreen

        self.app.push_screen(
            QuickTagScreen(self.dataset_id, item_ids=sorted(self.selected) or None, query=self.state.query)
        )

    def action_autotag(self) -> None:
        from sushitui.tui.screens.autotag_dialog import AutotagDialog

        self.app.push_screen(
            AutotagDialog(self.dataset_id, item_ids=sorted(self.selected) or None, query=self.state.query)
        )

    def action_caption_vlm(self) -> None:
        from sushitui.tui.screens.caption_dialog import CaptionDialog

        current = self.grid.current
        dialog = CaptionDialog(
            self.dataset_id,
            item_ids=sorted(self.selected) or None,
            query=self.state.query,
            current_id=current.item_id if current else None,
        )
        # the dialog hands back the review screen of its answers (None: closed)
        self.app.push_screen(dialog, lambda review: review and self.app.push_screen(review))

    def action_export(self) -> None:
        from sushitui.tui.screens.export_dialog import ExportDialog

        self.app.push_screen(
            ExportDialog(self.dataset_id, item_ids=sorted(self.selected) or None, query=self.state.query)
        )
