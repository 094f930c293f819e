"""The image pane: the item's image, with tabs for the images of a group (source,
target, cref, mask; ``i`` cycles them), its resolution and size (IT-1, IT-2). It also
decodes the neighbouring items' pictures ahead, so ←/→ show them at once."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from sushitui.dataset.item_view import ItemView, load_item_view
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.detail.meta_pane import human_size
from sushitui.tui.widgets.preview_pane import PreviewPane


class ImagePane(Vertical):
    """One item's images; ``image_tab`` is the one shown."""

    DEFAULT_CSS = """
    ImagePane { width: 2fr; min-width: 24; border-right: solid $panel-lighten-2; }
    ImagePane.-hidden { display: none; }
    ImagePane #image-tabs { height: 1; padding: 0 1; }
    ImagePane #image-box { height: 1fr; }
    ImagePane #image-info { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: ItemView | None = None
        self.image_tab = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="image-tabs")
        yield PreviewPane(id="image-box")
        yield Static("", id="image-info")

    def on_mount(self) -> None:
        self._preview = self.query_one(PreviewPane)  # the prefetch thread uses it; no DOM queries from threads

    def show_item(self, view: ItemView) -> None:
        self.view = view
        self.select(0)

    def cycle(self) -> None:
        if self.view is not None and len(self.view.image_tabs) > 1:
            self.select((self.image_tab + 1) % len(self.view.image_tabs))

    def select(self, index: int) -> None:
        self.image_tab = index
        v = self.view
        tabs = v.image_tabs if v else []
        self._render_tabs(tabs)
        if v is None or not tabs:
            self._preview.show_message("this item has no image")
            self._show_info(None)
            return
        _label, rel = tabs[min(self.image_tab, len(tabs) - 1)]
        path = v.abs_path(rel)
        if path is None:
            self._preview.show_message(f"unsafe image path refused: {rel}")
        else:
            self._preview.show(path, v.mtime_ns if rel == v.image_path else None)
        self._show_info(rel)

    def _render_tabs(self, tabs: list[tuple[str, str]]) -> None:
        line = Text()
        for i, (label, _) in enumerate(tabs):
            line.append(f" {for_terminal(label)} ", style="reverse bold" if i == self.image_tab else "")
            line.append(" ")
        if len(tabs) > 1:
            line.append("(i)", style="dim")
        widget = self.query_one("#image-tabs", Static)
        widget.update(line)
        widget.display = len(tabs) > 1

    def _show_info(self, rel: str | None) -> None:
        v = self.view
        info = Text()
        if v is not None:
            info.append(f"{v.width or '?'}×{v.height or '?'} · {human_size(v.file_size)}")
            if rel:
                info.append(f" · {for_terminal(rel)}")
        self.query_one("#image-info", Static).update(info)

    @work(thread=True, exclusive=True, group="detail-prefetch", exit_on_error=False)
    def prefetch(self, item_ids: list[int]) -> None:
        """Decode the pictures of ``item_ids`` into the shared preview cache."""
        for item_id in item_ids:
            try:
                v = load_item_view(item_id)
            except Exception:  # noqa: BLE001 - prefetching is best effort; the item's own load reports it
                continue
            path = v.abs_path(v.image_path)
            if path is not None:
                self._preview.prefetch(path, v.mtime_ns)
