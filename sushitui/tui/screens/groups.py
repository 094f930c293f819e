"""Tag groups and aliases screen (TAG-1, TAG-2): list, create, rename, colour and delete
groups, add and remove their tags, and manage aliases — keyboard only.

Three tables: groups (with a colour swatch and size), the highlighted group's tags, and
the aliases. Every database read and write runs in a thread worker through
``sushitui.tags.groups`` / ``sushitui.tags.aliases``; the tables are refreshed from the
results.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Header, Input, Static

from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.confirm import ConfirmDialog
from sushitui.tui.widgets.key_bar import KeyBar

MAX_TAG_ROWS = 2000  # a DataTable stays quick below a few thousand rows; the filter finds the rest


@dataclass
class PromptResult:
    values: list[str]


class PromptDialog(ModalScreen[PromptResult | None]):
    """One or more labelled text fields; Enter in the last field submits, Escape cancels."""

    DEFAULT_CSS = """
    PromptDialog { align: center middle; }
    PromptDialog > Vertical { width: 64; max-width: 95%; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    PromptDialog .prompt-title { text-style: bold; margin-bottom: 1; }
    PromptDialog .prompt-error { color: $error; height: auto; }
    PromptDialog Input { margin-bottom: 1; }
    """
    # ctrl+s saves as in every other form (dataset, dictionary tag); the dialog had no
    # hint at all of how to submit it.
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving"),
        Binding("ctrl+s", "submit", "Save", id="prompt.save", tooltip="Save what you typed"),
    ]

    def __init__(self, title: str, fields: list[tuple[str, str]], validate=None) -> None:
        super().__init__()
        self.prompt_title = title
        self.fields = fields  # (label, initial value)
        self.validate = validate  # values -> error message or None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(for_terminal(self.prompt_title)), classes="prompt-title")
            for i, (label, value) in enumerate(self.fields):
                yield Static(Text(label))
                yield Input(value=value, id=f"field-{i}")
            yield Static("", classes="prompt-error", id="prompt-error")
            hint = (
                "Enter next field · ctrl+s save · Esc cancel"
                if len(self.fields) > 1
                else "Enter or ctrl+s save · Esc cancel"
            )
            yield Static(Text(hint, style="dim"), classes="prompt-hint")

    def on_mount(self) -> None:
        self.query_one("#field-0", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        index = int((event.input.id or "field-0").split("-")[1])
        if index < len(self.fields) - 1:
            self.query_one(f"#field-{index + 1}", Input).focus()
            return
        self.action_submit()

    def action_submit(self) -> None:
        values = [self.query_one(f"#field-{i}", Input).value for i in range(len(self.fields))]
        problem = self.validate(values) if self.validate else None
        if problem:
            self.query_one("#prompt-error", Static).update(Text(for_terminal(problem)))
            return
        self.dismiss(PromptResult(values))

    def action_cancel(self) -> None:
        self.dismiss(None)


def _color_problem(values: list[str]) -> str | None:
    from sushitui.tags.groups import GroupError, normalize_color

    text = values[-1].strip()
    if not text:
        return None
    try:
        normalize_color(text)
    except GroupError as exc:
        return str(exc)
    return None


class GroupsScreen(Screen):
    """Manage tag groups and aliases."""

    DEFAULT_CSS = """
    GroupsScreen #groups-body { height: 1fr; }
    GroupsScreen .groups-pane { width: 1fr; height: 1fr; border: round $panel; }
    GroupsScreen .groups-pane:focus-within { border: round $accent; }
    GroupsScreen .pane-title { text-style: bold; padding: 0 1; height: 1; }
    GroupsScreen #tag-filter { height: 3; display: none; }
    GroupsScreen #tag-filter.visible { display: block; }
    GroupsScreen DataTable { height: 1fr; }
    GroupsScreen #groups-status { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Back", id="nav.back", tooltip="Back to the previous screen"),
        Binding("a", "add_group", "New group", id="groups.add_group", tooltip="Create a tag group"),
        Binding("r", "rename_group", "Rename", id="groups.rename_group", tooltip="Rename the highlighted group"),
        Binding("c", "color_group", "Colour", id="groups.color_group", tooltip="Change the group's pill colour"),
        Binding(
            "d,delete",
            "delete_group",
            "Delete group",
            id="groups.delete_group",
            tooltip="Delete the highlighted group (asks first)",
        ),
        Binding("t", "add_tags", "Add tags", id="groups.add_tags", tooltip="Add tags to the highlighted group"),
        Binding(
            "x", "remove_tag", "Remove tag", id="groups.remove_tag", tooltip="Take the highlighted tag out of the group"
        ),
        Binding(
            "slash", "filter_tags", "Filter tags", id="groups.filter_tags", tooltip="Filter the group's tags by text"
        ),
        Binding("A", "add_alias", "New alias", id="groups.add_alias", tooltip="Make one tag an alias of another"),
        Binding("D", "delete_alias", "Delete alias", id="groups.delete_alias", tooltip="Delete the highlighted alias"),
        Binding(
            "1",
            "focus_pane('groups-table')",
            "Groups",
            show=False,
            id="groups.focus_groups",
            tooltip="Move to the groups list",
        ),
        Binding(
            "2",
            "focus_pane('tags-table')",
            "Tags",
            show=False,
            id="groups.focus_tags",
            tooltip="Move to the group's tags",
        ),
        Binding(
            "3",
            "focus_pane('aliases-table')",
            "Aliases",
            show=False,
            id="groups.focus_aliases",
            tooltip="Move to the aliases list",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.current_group: str | None = None
        self.tag_filter = ""
        self._group_names: list[str] = []

    # --- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="groups-body"):
            with Vertical(classes="groups-pane"):
                yield Static(Text("[1] Groups"), classes="pane-title")
                yield DataTable(id="groups-table", cursor_type="row", zebra_stripes=True)
            with Vertical(classes="groups-pane"):
                yield Static(Text("[2] Tags"), classes="pane-title", id="tags-title")
                yield Input(placeholder="filter tags (Enter to apply, empty to clear)", id="tag-filter")
                yield DataTable(id="tags-table", cursor_type="row", zebra_stripes=True)
            with Vertical(classes="groups-pane"):
                yield Static(Text("[3] Aliases"), classes="pane-title")
                yield DataTable(id="aliases-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="groups-status")
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = "Tag groups and aliases"
        self.query_one("#groups-table", DataTable).add_columns("Group", "Colour", "Tags")
        self.query_one("#tags-table", DataTable).add_columns("Tag")
        self.query_one("#aliases-table", DataTable).add_columns("From", "To")
        self.query_one("#groups-table", DataTable).focus()
        self.reload()

    # --- loading -----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="groups-load", exit_on_error=False, description="loading groups")
    def reload(self, select: str | None = None) -> None:
        from sushitui.tags import aliases, groups

        groups.ensure_default_groups()
        rows = groups.list_groups()
        alias_rows = aliases.list_aliases()
        self.app.call_from_thread(self._show_groups, rows, alias_rows, select)

    def _show_groups(self, rows, alias_rows, select: str | None) -> None:
        table = self.query_one("#groups-table", DataTable)
        keep = select or self.current_group
        table.clear()
        self._group_names = [g.name for g in rows]
        for g in rows:
            swatch = Text("■■ ", style=g.color) + Text(g.color)
            table.add_row(Text(for_terminal(g.name)), swatch, f"{g.tag_count:,}", key=g.name)
        if keep in self._group_names:
            table.move_cursor(row=self._group_names.index(keep))
        aliases_table = self.query_one("#aliases-table", DataTable)
        aliases_table.clear()
        for a in alias_rows:
            aliases_table.add_row(Text(for_terminal(a.from_tag)), Text(for_terminal(a.to_tag)), key=a.from_tag)
        if rows:
            name = self._group_names[table.cursor_row] if 0 <= table.cursor_row < len(rows) else rows[0].name
            self._select_group(name)
        else:
            self.current_group = None
            self.query_one("#tags-table", DataTable).clear()
        self._status(f"{len(rows)} groups, {len(alias_rows)} aliases")

    @on(DataTable.RowHighlighted, "#groups-table")
    def _group_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self._select_group(str(event.row_key.value))

    def _select_group(self, name: str) -> None:
        if name == self.current_group and self.query_one("#tags-table", DataTable).row_count:
            return
        self.current_group = name
        self.load_tags(name, self.tag_filter)

    @work(thread=True, exclusive=True, group="groups-tags", exit_on_error=False, description="loading tags")
    def load_tags(self, name: str, text_filter: str) -> None:
        from sushitui.tags import groups
        from sushitui.tags.normalize import match_key

        try:
            tags = groups.group_tags(name)
        except groups.GroupError:
            tags = []
        total = len(tags)
        if text_filter:
            key = match_key(text_filter)
            tags = [t for t in tags if key in match_key(t)]
        self.app.call_from_thread(self._show_tags, name, tags, total)

    def _show_tags(self, name: str, tags: list[str], total: int) -> None:
        if name != self.current_group:
            return
        table = self.query_one("#tags-table", DataTable)
        table.clear()
        for t in tags[:MAX_TAG_ROWS]:
            table.add_row(Text(for_terminal(t)), key=t)
        shown = (
            f"{min(len(tags), MAX_TAG_ROWS):,} of {total:,}"
            if (self.tag_filter or len(tags) > MAX_TAG_ROWS)
            else f"{total:,}"
        )
        more = " (/ to filter)" if len(tags) > MAX_TAG_ROWS else ""
        flt = f" matching '{self.tag_filter}'" if self.tag_filter else ""
        self.query_one("#tags-title", Static).update(Text(for_terminal(f"[2] Tags of {name}: {shown}{flt}{more}")))

    # --- helpers -----------------------------------------------------------------------

    def _status(self, text: str) -> None:
        self.query_one("#groups-status", Static).update(Text(for_terminal(text)))

    def _highlighted(self, table_id: str) -> str | None:
        table = self.query_one(f"#{table_id}", DataTable)
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        from textual.widgets.data_table import CellDoesNotExist

        try:
            key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key
        except CellDoesNotExist:  # an empty or refreshing table has no cell there
            return None
        return None if key is None or key.value is None else str(key.value)

    @work(thread=True, exclusive=True, group="groups-write", exit_on_error=False, description="saving")
    def _write(self, fn, done_message: str, select: str | None = None) -> None:
        """Run a write (a callable using the core modules) and reload; errors become a message."""
        from sushitui.tags.aliases import AliasError
        from sushitui.tags.groups import GroupError

        try:
            fn()
        except (GroupError, AliasError) as exc:
            self.app.call_from_thread(self.notify, for_terminal(str(exc)), severity="error")
            return
        self.app.call_from_thread(self.notify, for_terminal(done_message), timeout=3)
        self.app.call_from_thread(self._after_write, select)

    def _after_write(self, select: str | None) -> None:
        self.current_group = None  # so that the reload shows the (changed) tags again
        self.reload(select)

    # --- actions -----------------------------------------------------------------------

    def action_close(self) -> None:
        flt = self.query_one("#tag-filter", Input)
        if flt.has_focus:
            flt.remove_class("visible")
            self.query_one("#tags-table", DataTable).focus()
            return
        self.app.pop_screen()

    def action_focus_pane(self, table_id: str) -> None:
        self.query_one(f"#{table_id}", DataTable).focus()

    def action_add_group(self) -> None:
        def done(result: PromptResult | None) -> None:
            if result is None:
                return
            name, color = result.values[0].strip(), result.values[1].strip() or None
            from sushitui.tags import groups

            self._write(lambda: groups.add_group(name, color), f"group '{name}' created", select=name)

        self.app.push_screen(
            PromptDialog(
                "New tag group",
                [("Name", ""), ("Colour (#RRGGBB, optional)", "")],
                validate=lambda v: "a group needs a name" if not v[0].strip() else _color_problem(v),
            ),
            done,
        )

    def action_rename_group(self) -> None:
        old = self._highlighted("groups-table")
        if old is None:
            return

        def done(result: PromptResult | None) -> None:
            if result is None or result.values[0].strip() in ("", old):
                return
            new = result.values[0].strip()
            from sushitui.tags import groups

            self._write(lambda: groups.rename_group(old, new), f"group renamed to '{new}'", select=new)

        self.app.push_screen(PromptDialog(f"Rename group '{old}'", [("New name", old)]), done)

    def action_color_group(self) -> None:
        name = self._highlighted("groups-table")
        if name is None:
            return

        def done(result: PromptResult | None) -> None:
            if result is None or not result.values[0].strip():
                return
            color = result.values[0].strip()
            from sushitui.tags import groups

            self._write(lambda: groups.set_color(name, color), f"colour of '{name}' set", select=name)

        self.app.push_screen(
            PromptDialog(
                f"Colour of '{name}'",
                [("Colour (#RRGGBB)", "")],
                validate=lambda v: _color_problem(v) if v[0].strip() else "type a colour like #FF6B9D",
            ),
            done,
        )

    def action_delete_group(self) -> None:
        name = self._highlighted("groups-table")
        if name is None:
            return

        def done(ok: bool | None) -> None:
            if ok:
                from sushitui.tags import groups

                self._write(lambda: groups.remove_group(name), f"group '{name}' deleted")

        self.app.push_screen(
            ConfirmDialog(
                f"Delete the tag group '{name}'?",
                detail="Its tag list goes; tags on items and caption files are not touched.",
                yes_label="Delete",
                danger=True,
            ),
            done,
        )

    def action_add_tags(self) -> None:
        name = self.current_group
        if name is None:
            return

        def done(result: PromptResult | None) -> None:
            if result is None:
                return
            from sushitui.tags import groups
            from sushitui.tags.normalize import split_tags

            tags = split_tags(result.values[0])
            if tags:
                self._write(lambda: groups.add_tags(name, tags), f"{len(tags)} tags added to '{name}'", select=name)

        self.app.push_screen(PromptDialog(f"Add tags to '{name}'", [("Tags (comma-separated)", "")]), done)

    def action_remove_tag(self) -> None:
        name, tag = self.current_group, self._highlighted("tags-table")
        if name is None or tag is None:
            return
        from sushitui.tags import groups

        self._write(lambda: groups.remove_tags(name, [tag]), f"'{tag}' removed from '{name}'", select=name)

    def action_filter_tags(self) -> None:
        flt = self.query_one("#tag-filter", Input)
        flt.add_class("visible")
        flt.focus()

    @on(Input.Submitted, "#tag-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.tag_filter = event.value.strip()
        if not self.tag_filter:
            event.input.remove_class("visible")
        self.query_one("#tags-table", DataTable).focus()
        if self.current_group:
            self.load_tags(self.current_group, self.tag_filter)

    def action_add_alias(self) -> None:
        def done(result: PromptResult | None) -> None:
            if result is None:
                return
            src, dst = (v.strip() for v in result.values)
            from sushitui.tags import aliases

            self._write(lambda: aliases.add_alias(src, dst), f"alias {src} → {dst} added", select=self.current_group)

        self.app.push_screen(
            PromptDialog(
                "New alias (applied whenever a tag is added)",
                [("From tag", ""), ("To tag", "")],
                validate=lambda v: "both tags are needed" if not (v[0].strip() and v[1].strip()) else None,
            ),
            done,
        )

    def action_delete_alias(self) -> None:
        src = self._highlighted("aliases-table")
        if src is None:
            self._status("highlight an alias first (3 focuses the aliases)")
            return

        def done(ok: bool | None) -> None:
            if ok:
                from sushitui.tags import aliases

                self._write(lambda: aliases.remove_alias(src), f"alias of '{src}' deleted", select=self.current_group)

        self.app.push_screen(
            ConfirmDialog(f"Delete the alias of '{src}'?", detail="Captions already rewritten stay as they are."), done
        )
