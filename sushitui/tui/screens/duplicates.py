"""Duplicates side by side (issue 18): the dataset's exact copies (the same file, in any
dataset) and near duplicates (looking alike, from the last check), one group at a time.

←/→ pick a copy, ``k`` keeps it and flags every other copy of the group ``exclude``
(``sushitui.check.report.keep_one`` through the marks core: the marks file of each copy's
dataset, so exports leave them out and a rebuild keeps the choice), then the next group
comes up. ``n``/``p`` walk the groups, Enter opens the copy in item detail (its mark keys
set stars and flags by hand; the column shows them when you come back).

Each copy is a column with the item detail's preview pane; the columns are a fixed pool
sized to the terminal (2 at 80 columns, 3 at 120) and re-targeted when the group or the
cursor changes, so walking groups mounts nothing. A group with more copies than columns
scrolls sideways with the cursor.
"""

from __future__ import annotations

import logging

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import Static

from sushitui.errors import UserError, log_if_unexpected
from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.key_bar import KeyBar
from sushitui.tui.widgets.preview_pane import PreviewPane

log = logging.getLogger(__name__)

COLUMN_MIN_WIDTH = 36
MAX_COLUMNS = 4
KIND_TEXT = {"exact": "exact: the same file", "near": "near: looks alike (perceptual hash)"}


def fmt_bytes(n: int | None) -> str:
    if not n:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def column_count(width: int) -> int:
    return max(1, min(MAX_COLUMNS, width // COLUMN_MIN_WIDTH))


def window_start(cursor: int, start: int, shown: int, total: int) -> int:
    """The first copy shown so that the cursor is among the ``shown`` columns."""
    if cursor < start:
        start = cursor
    elif cursor >= start + shown:
        start = cursor - shown + 1
    return max(0, min(start, max(0, total - shown)))


class DupColumn(Vertical):
    """One copy: its picture, then name, size, dataset, marks and the start of its caption."""

    DEFAULT_CSS = """
    DupColumn { width: 1fr; height: 1fr; border: round $panel-lighten-2; padding: 0; }
    DupColumn.-cursor { border: heavy $secondary; }
    DupColumn.-excluded { border-subtitle-color: $error; }
    DupColumn.-kept { border-subtitle-color: $success; }
    DupColumn > PreviewPane { height: 1fr; }
    DupColumn > .dup-info { height: 4; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield PreviewPane()
        yield Static("", classes="dup-info")

    def show_member(self, member, number: int, total: int, is_cursor: bool, other_dataset: bool) -> None:
        self.set_class(is_cursor, "-cursor")
        self.set_class(member.excluded, "-excluded")
        self.set_class(not member.excluded, "-kept")
        self.border_title = f"{number}/{total}"
        self.border_subtitle = "excluded" if member.excluded else "exported"
        pane = self.query_one(PreviewPane)
        if member.image_path:
            pane.show(member.image_path, member.stamp)
        else:
            pane.show_message("no image (or its path leaves the dataset's folder)")
        info = Text(no_wrap=True, overflow="ellipsis")
        info.append(for_terminal(member.name), style="bold")
        size = " · ".join(
            p
            for p in (
                f"{member.width}×{member.height}" if member.width and member.height else "",
                fmt_bytes(member.file_size),
            )
            if p
        )
        info.append("\n" + size)
        if other_dataset:
            info.append(f"  in {for_terminal(member.dataset)}", style="bold yellow")
        marks = ("★" * member.rating + " " if member.rating else "") + ("excluded" if member.excluded else "")
        info.append("\n" + marks, style="red" if member.excluded else "")
        info.append("\n" + for_terminal(member.caption or "(no caption)"), style="dim")
        self.query_one(".dup-info", Static).update(info)


class DuplicatesScreen(Screen):
    """A dataset's duplicate groups, one at a time, copies side by side."""

    DEFAULT_CSS = """
    DuplicatesScreen #dup-columns { height: 1fr; }
    DuplicatesScreen #dup-empty { height: 1fr; padding: 1 2; }
    """

    BINDINGS = [
        Binding(
            "k",
            "keep",
            "Keep this one",
            id="duplicates.keep",
            tooltip="Keep the copy under the cursor and flag every other copy of the group exclude",
        ),
        Binding("n,pagedown", "group(1)", "Next group", id="duplicates.next_group", tooltip="The next duplicate group"),
        Binding(
            "p,pageup",
            "group(-1)",
            "Previous group",
            id="duplicates.prev_group",
            tooltip="The previous duplicate group",
        ),
        Binding(
            "left",
            "move(-1)",
            "Previous copy",
            show=False,
            id="duplicates.left",
            tooltip="Cursor to the copy on the left",
        ),
        Binding(
            "right",
            "move(1)",
            "Next copy",
            show=False,
            id="duplicates.right",
            tooltip="Cursor to the copy on the right",
        ),
        Binding(
            "enter",
            "open_item",
            "Open",
            id="duplicates.open_item",
            tooltip="Open the copy under the cursor in item detail",
        ),
        Binding(
            "f5", "reload", "Reload", show=False, id="duplicates.reload", tooltip="Read the duplicate groups again"
        ),
        Binding("escape", "back", "Back", id="nav.back", tooltip="Back to the browser"),
    ]

    def __init__(self, dataset_id: int, dataset_name: str = "") -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.dataset_name = dataset_name
        self.groups: list = []
        self.group_index = 0
        self.cursor = 0
        self.start = 0
        self.columns = 0
        self.loaded = False
        self.checked = False  # the dataset has a check (near duplicates are known)
        self.keeps_done = 0  # finished keeps (tests wait on it)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="topbar"):
            yield Static("", id="dup-title")
            yield Static("", id="dup-position")
        yield Horizontal(id="dup-columns")
        yield Static("Looking for duplicates…", id="dup-empty")
        yield KeyBar()

    def on_mount(self) -> None:
        position = self.query_one("#dup-position", Static)
        # inline: the app's stylesheet gives every top-bar Static width auto, and it wins over DEFAULT_CSS
        position.styles.width = "1fr"
        position.styles.text_align = "right"
        self.query_one("#dup-columns").display = False
        self._title()
        self._load()

    # -- loading ---------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="duplicates-load", exit_on_error=False)
    def _load(self) -> None:
        from sushitui.check.report import duplicate_groups, findings_counts
        from sushitui.dataset.registry import get_dataset

        name = self.dataset_name or get_dataset(self.dataset_id).name
        groups = duplicate_groups(self.dataset_id)
        checked = self.dataset_id in findings_counts()
        self.app.call_from_thread(self._loaded, name, groups, checked)

    def _loaded(self, name: str, groups: list, checked: bool) -> None:
        self.dataset_name = name
        self.groups = groups
        self.checked = checked
        self.loaded = True
        self.group_index = min(self.group_index, max(0, len(groups) - 1))
        self.cursor = 0
        self.start = 0
        self._show()

    def action_reload(self) -> None:
        self._load()

    # -- layout ----------------------------------------------------------------------------
    def on_resize(self, event: Resize) -> None:
        self.call_after_refresh(self._fit_columns)

    async def _fit_columns(self) -> None:
        wanted = column_count(self.size.width)
        if wanted == self.columns:
            return
        self.columns = wanted
        box = self.query_one("#dup-columns", Horizontal)
        await box.remove_children()
        await box.mount_all([DupColumn() for _ in range(wanted)])
        self._show()

    @property
    def group(self):
        return self.groups[self.group_index] if self.groups else None

    def _title(self) -> None:
        title = Text("Duplicates ", style="bold")
        title.append(for_terminal(self.dataset_name or f"dataset {self.dataset_id}"), style="bold")
        self.query_one("#dup-title", Static).update(title)
        group = self.group
        pos = Text()
        if group is not None:
            pos.append(f"group {self.group_index + 1:,} of {len(self.groups):,}  ")
            pos.append(KIND_TEXT.get(group.kind, group.kind), style="yellow" if group.kind == "exact" else "cyan")
            if len(group.members) > self.columns:
                shown = min(self.columns, len(group.members))
                pos.append(f"  copies {self.start + 1}–{self.start + shown} of {len(group.members)}", style="dim")
        self.query_one("#dup-position", Static).update(pos)

    def _show(self) -> None:
        """Put the current group on the column pool (the cursor's window of it)."""
        self._title()
        box = self.query_one("#dup-columns", Horizontal)
        empty = self.query_one("#dup-empty", Static)
        group = self.group
        if group is None:
            box.display = False
            empty.display = True
            if not self.loaded:
                empty.update("Looking for duplicates…")
            elif self.checked:
                empty.update(
                    Text(
                        "No duplicates: no file is indexed twice and the last check found no near "
                        "duplicates. Esc goes back."
                    )
                )
            else:
                empty.update(
                    Text(
                        "No exact duplicates. Near duplicates are found by the check: press k in the "
                        "browser (or run `sushitui check NAME`), then come back. Esc goes back."
                    )
                )
            self.refresh_bindings()
            return
        empty.display = False
        box.display = True
        columns = list(box.query(DupColumn))
        total = len(group.members)
        self.cursor = max(0, min(self.cursor, total - 1))
        shown = min(len(columns), total)
        self.start = window_start(self.cursor, self.start, shown, total)
        for i, column in enumerate(columns):
            k = self.start + i
            if i < shown:
                column.display = True
                member = group.members[k]
                column.show_member(member, k + 1, total, k == self.cursor, member.dataset_id != self.dataset_id)
            else:
                column.display = False
        self._title()
        self.refresh_bindings()

    def check_action(self, action: str, parameters) -> bool | None:
        if action in ("keep", "open_item", "move"):
            return self.group is not None or None
        if action == "group":
            return len(self.groups) > 1 or None
        return True

    # -- keys --------------------------------------------------------------------------------
    def action_move(self, step: int) -> None:
        group = self.group
        if group is None:
            return
        cursor = max(0, min(len(group.members) - 1, self.cursor + step))
        if cursor != self.cursor:
            self.cursor = cursor
            self._show()

    def action_group(self, step: int) -> None:
        if not self.groups:
            return
        index = max(0, min(len(self.groups) - 1, self.group_index + step))
        if index != self.group_index:
            self.group_index = index
            self.cursor = 0
            self.start = 0
            self._show()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_open_item(self) -> None:
        group = self.group
        if group is None:
            return
        from sushitui.tui.screens.item_detail import ItemDetailScreen

        member = group.members[self.cursor]
        self.app.push_screen(ItemDetailScreen(member.item_id, dataset_id=member.dataset_id))

    def action_keep(self) -> None:
        group = self.group
        if group is None:
            return
        self._keep(self.group_index, group, group.members[self.cursor].item_id)

    @work(thread=True, group="duplicates-keep", exit_on_error=False)
    def _keep(self, index: int, group, keep_id: int) -> None:
        from sushitui.check.report import keep_one

        try:
            excluded = keep_one(group, keep_id)
        except Exception as exc:  # noqa: BLE001 - shown to the user; a bug is logged with its traceback
            if not isinstance(exc, (UserError, ValueError)):
                log_if_unexpected(log, exc, "keeping one duplicate")
            self.app.call_from_thread(self.notify, for_terminal(str(exc)), severity="error", timeout=10)
            return
        self.app.call_from_thread(self._kept, index, group, keep_id, excluded)

    def _kept(self, index: int, group, keep_id: int, excluded: list[int]) -> None:
        self.keeps_done += 1
        kept = next(m for m in group.members if m.item_id == keep_id)
        n = len(excluded)
        self.notify(
            f"Kept {for_terminal(kept.name)}; {n} other cop{'ies' if n != 1 else 'y'} flagged exclude", timeout=4
        )
        if index == self.group_index and index + 1 < len(self.groups):
            self.action_group(1)  # the next group comes up: one key per group
        else:
            self._show()

    # -- marks set elsewhere ------------------------------------------------------------------------
    @work(thread=True, group="duplicates-marks", exit_on_error=False)
    def _refresh_members(self, index: int) -> None:
        from sushitui.check.report import duplicate_members

        group = self.groups[index] if 0 <= index < len(self.groups) else None
        if group is None:
            return
        fresh = duplicate_members([m.item_id for m in group.members])
        self.app.call_from_thread(self._members_refreshed, index, fresh)

    def _members_refreshed(self, index: int, fresh: dict) -> None:
        group = self.groups[index] if 0 <= index < len(self.groups) else None
        if group is None:
            return
        group.members = [fresh.get(m.item_id, m) for m in group.members]
        if index == self.group_index:
            self._show()

    def on_screen_resume(self) -> None:
        # back from item detail: marks or the image may have changed
        if self.loaded:
            self._refresh_members(self.group_index)
