"""The metadata pane: file facts, the item's other images, and its EXIF/XMP with the
fields mapped to captions highlighted (IT-6). Hidden at narrow widths; ``m`` toggles it."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Collapsible, OptionList, Static
from textual.widgets.option_list import Option

from sushitui.dataset.item_view import ItemView, flatten_metadata
from sushitui.sanitize import for_terminal


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


class MetaPane(VerticalScroll):
    """File facts, related images (Enter shows one) and EXIF/XMP of one item."""

    DEFAULT_CSS = """
    MetaPane { width: 2fr; min-width: 28; border-left: solid $panel-lighten-2; padding: 0 1; }
    MetaPane.-hidden { display: none; }
    MetaPane #related { height: auto; max-height: 8; }
    """

    class ImageChosen(Message):
        """The user picked one of the item's images in the related list."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def compose(self) -> ComposeResult:
        yield Static("", id="meta-info")
        yield Static(Text("Related images (Enter shows one):", style="bold"), id="related-title")
        yield OptionList(id="related")
        with Collapsible(title="EXIF / XMP", id="exif", collapsed=True):
            yield Static("", id="exif-body")

    def show(self, v: ItemView) -> None:
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
        self._show_exif(v)

    def _show_exif(self, v: ItemView) -> None:
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

    @on(OptionList.OptionSelected, "#related")
    def _related_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.ImageChosen(int(event.option.id.split("-")[1])))


class DetailTitle(Static):
    """The item detail's top line: dataset, position in the walk, item name, unsaved."""

    DEFAULT_CSS = "DetailTitle { height: 1; background: $panel; padding: 0 1; }"

    def show(self, v: ItemView, index: int, total: int, dirty: bool, marks: str = "") -> None:
        name = f"{v.rel_dir}/{v.base_name}" if v.rel_dir else v.base_name
        title = Text()
        title.append(for_terminal(v.dataset_name), style="bold")
        title.append(f"  item {index + 1}/{total}  ")
        title.append(for_terminal(name), style="bold")
        if v.is_group:
            title.append(f"  [{v.item_type}]", style="cyan")
        if marks:  # stars and flags (sushitui.dataset.marks)
            title.append(f"  {marks}", style="magenta")
        if dirty:
            title.append("  ● unsaved", style="yellow")
        self.update(title)

    def show_error(self, message: str) -> None:
        self.update(Text(for_terminal(message), style="bold red"))
