"""The tag dictionary screen (TAG-5, TAG-8).

A page of 50 tags at a time, fetched by keyset from SQLite in a thread worker (the
previous pages' cursors are kept for going back), so paging costs the same on page 1
and page 18,000 of a 925k-tag dictionary. Category, search mode, filters and sort are
cycled with single keys; ``/`` edits the search text. Add/edit in a dialog with the
TAG-5 validation shown per field; delete asks first, optionally stripping the tag from
every dataset's captions. The translation column shows each tag's name in the display
language (``sushitui dict translations show``), and the search finds tags through their
translations too (猫耳 finds cat_ears).
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import get_current_worker

from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.key_bar import KeyBar
from sushitui.tui.widgets.tag_input import CATEGORY_COLORS
from sushitui.tui.widgets.tag_pills import fit_cells

PAGE = 50
TRANSLATION_CELLS = 18  # the translation column's width: two tags' CJK names, then "…"
CATEGORY_CYCLE = (None, "general", "character", "copyright", "artist", "meta", "model")
MODE_CYCLE = ("substring", "prefix", "suffix", "exact")
SORT_CYCLE = ("count", "name", "created")


def _cycle(seq, value):
    return seq[(seq.index(value) + 1) % len(seq)]


class DictionaryScreen(Screen):
    """Browse, search and edit the tag dictionary."""

    DEFAULT_CSS = """
    DictionaryScreen #dict-bar { height: 3; }
    DictionaryScreen #dict-search { width: 1fr; }
    DictionaryScreen #dict-status { height: 1; padding: 0 1; color: $text-muted; }
    DictionaryScreen #dict-table { height: 1fr; }
    """

    BINDINGS = [
        Binding("slash", "focus_search", "Search", tooltip="Edit the search text", id="dictionary.search"),
        Binding("c", "cycle_category", "Category", tooltip="Cycle the category filter", id="dictionary.category"),
        Binding(
            "m", "cycle_mode", "Mode", tooltip="Search mode: substring, prefix, suffix, exact", id="dictionary.mode"
        ),
        Binding("s", "cycle_sort", "Sort", tooltip="Sort by count, name or created", id="dictionary.sort"),
        Binding(
            "o",
            "toggle('only_official')",
            "Official",
            tooltip="Only official (Danbooru) tags",
            id="dictionary.only_official",
        ),
        Binding("u", "toggle('only_custom')", "Custom", tooltip="Only custom tags", id="dictionary.only_custom"),
        Binding(
            "v",
            "toggle('show_deprecated')",
            "Deprecated",
            tooltip="Show deprecated tags",
            id="dictionary.show_deprecated",
        ),
        Binding("pagedown,n", "next_page", "Next page", id="dictionary.next_page", tooltip="Next page of tags"),
        Binding("pageup,p", "prev_page", "Prev page", id="dictionary.prev_page", tooltip="Previous page of tags"),
        Binding("a", "add", "Add", tooltip="Add a tag", id="dictionary.add"),
        Binding("e", "edit", "Edit", tooltip="Edit the highlighted tag", id="dictionary.edit"),
        Binding(
            "delete,x", "delete", "Delete", tooltip="Delete the highlighted tag (asks first)", id="dictionary.delete"
        ),
        Binding(
            "X",
            "delete(True)",
            "Delete everywhere",
            tooltip="Delete and remove from every dataset's captions",
            id="dictionary.delete_everywhere",
        ),
        Binding("t", "stats", "Stats", tooltip="Dictionary statistics", id="dictionary.stats"),
        Binding("escape,q", "close", "Close", id="nav.back", tooltip="Back to the previous screen"),
    ]

    def __init__(self) -> None:
        super().__init__()
        from sushitui.tags.dictionary import DictQuery

        self.query_state = DictQuery()
        self.cursors: list[tuple | None] = [None]  # cursor before each page shown so far
        self.next_cursor: tuple | None = None
        self.entries: list = []
        self.total: int | None = None
        self.page_ms: float | None = None
        self.lang: str | None = None  # the language of the translation column

    def compose(self) -> ComposeResult:
        with Horizontal(id="dict-bar"):
            yield Input(placeholder="search tags or translations (/), Enter to apply", id="dict-search")
        yield Static("", id="dict-status")
        table = DataTable(id="dict-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("tag", "translation", "category", "count", "source", "aliases")
        table.focus()
        self.reload()

    # -- loading -------------------------------------------------------------------------------

    def reload(self) -> None:
        self.cursors = [None]
        self.total = None
        self._load_page(self.query_state, None, count=True)

    @work(thread=True, exclusive=True, group="dict-page", exit_on_error=False)
    def _load_page(self, q, after, count: bool = False) -> None:
        import time

        from sushitui.tags import dictionary, translations

        started = time.perf_counter()
        try:
            entries, cursor = dictionary.query_page(q, PAGE, after)
            self.lang = translations.preferred_lang()
        except dictionary.DictionaryError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        elapsed = (time.perf_counter() - started) * 1000
        if get_current_worker().is_cancelled:
            return
        self.app.call_from_thread(self._show_page, q, entries, cursor, elapsed)
        if count:
            total = dictionary.count_matches(q)
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self._show_total, q, total)

    def _show_page(self, q, entries, cursor, elapsed_ms: float) -> None:
        if q != self.query_state:
            return
        self.entries = entries
        self.next_cursor = cursor
        self.page_ms = elapsed_ms
        table = self.query_one(DataTable)
        table.clear()
        for e in entries:
            color = CATEGORY_COLORS.get(e.category, "")
            flags = ("" if e.official else "custom") + (" deprecated" if e.deprecated else "")
            aliases = ", ".join(e.aliases[:4]) + ("…" if len(e.aliases) > 4 else "")
            table.add_row(
                Text(for_terminal(e.tag), style="strike" if e.deprecated else ""),
                Text(self._translation(e)),
                Text(e.category, style=color),
                Text(f"{e.count:,}", justify="right"),
                Text(flags or e.source, style="dim"),
                Text(for_terminal(aliases), style="dim"),
                key=str(e.id),
            )
        self._update_status()

    def _translation(self, entry) -> str:
        """The display language's translations (else any language's), cut to the column."""
        texts = entry.translations.get(self.lang) if self.lang else None
        if not texts and entry.translations:
            texts = next(iter(entry.translations.values()))
        text = for_terminal(" | ".join(texts)) if texts else ""
        return text if fit_cells(text, TRANSLATION_CELLS) == text else fit_cells(text, TRANSLATION_CELLS - 1) + "…"

    def _show_total(self, q, total: int) -> None:
        if q == self.query_state:
            self.total = total
            self._update_status()

    def _update_status(self) -> None:
        q = self.query_state
        page = len(self.cursors)
        pages = "?" if self.total is None else f"{max(1, -(-self.total // PAGE)):,}"
        total = "…" if self.total is None else f"{self.total:,}"
        filters = [
            name
            for name, on_ in (
                ("official", q.only_official),
                ("custom", q.only_custom),
                ("+deprecated", q.show_deprecated),
            )
            if on_
        ]
        text = (
            f"{total} tags · page {page:,}/{pages} · category {q.category or 'all'} · mode {q.mode} · "
            f"sort {q.sort}"
            + (f" · {' '.join(filters)}" if filters else "")
            + (f" · {self.page_ms:.0f} ms" if self.page_ms is not None else "")
        )
        self.query_one("#dict-status", Static).update(Text(text))

    # -- actions -------------------------------------------------------------------------------

    def _set(self, **changes) -> None:
        self.query_state = replace(self.query_state, **changes)
        self.reload()

    def action_focus_search(self) -> None:
        self.query_one("#dict-search", Input).focus()

    @on(Input.Submitted, "#dict-search")
    def _search(self, event: Input.Submitted) -> None:
        self._set(text=event.value)
        self.query_one(DataTable).focus()

    def action_cycle_category(self) -> None:
        self._set(category=_cycle(CATEGORY_CYCLE, self.query_state.category))

    def action_cycle_mode(self) -> None:
        self._set(mode=_cycle(MODE_CYCLE, self.query_state.mode))

    def action_cycle_sort(self) -> None:
        self._set(sort=_cycle(SORT_CYCLE, self.query_state.sort))

    def action_toggle(self, name: str) -> None:
        changes = {name: not getattr(self.query_state, name)}
        if name == "only_official" and changes[name]:
            changes["only_custom"] = False
        if name == "only_custom" and changes[name]:
            changes["only_official"] = False
        self._set(**changes)

    def action_next_page(self) -> None:
        if self.next_cursor is None:
            self.notify("last page", timeout=1.5)
            return
        self.cursors.append(self.next_cursor)
        self._load_page(self.query_state, self.next_cursor)

    def action_prev_page(self) -> None:
        if len(self.cursors) <= 1:
            return
        self.cursors.pop()
        self._load_page(self.query_state, self.cursors[-1])

    def _highlighted(self):
        table = self.query_one(DataTable)
        if not self.entries or table.cursor_row is None or not (0 <= table.cursor_row < len(self.entries)):
            return None
        return self.entries[table.cursor_row]

    def _refresh_same_page(self, _result=None) -> None:
        self.total = None
        self._load_page(self.query_state, self.cursors[-1], count=True)

    def action_add(self) -> None:
        self.app.push_screen(TagFormDialog(None), self._after_form)

    def action_edit(self) -> None:
        entry = self._highlighted()
        if entry is not None:
            self.app.push_screen(TagFormDialog(entry), self._after_form)

    def _after_form(self, entry) -> None:
        if entry is not None:
            self.notify(f"saved {for_terminal(entry.tag)}", timeout=2)
            self._refresh_same_page()

    def action_delete(self, everywhere: bool = False) -> None:
        entry = self._highlighted()
        if entry is None:
            return
        from sushitui.tui.widgets.confirm import ConfirmDialog

        detail = (
            "Its tag is also removed from every caption in every dataset (files are rewritten)."
            if everywhere
            else "Captions in your datasets keep the tag (X also removes it from them)."
        )

        def done(ok: bool | None) -> None:
            if ok:
                self._delete(entry.tag, everywhere)

        self.app.push_screen(
            ConfirmDialog(f"Delete {entry.tag!r} from the dictionary?", detail=detail, yes_label="Delete", danger=True),
            done,
        )

    @work(thread=True, group="dict-delete", exit_on_error=False)
    def _delete(self, tag: str, everywhere: bool) -> None:
        from sushitui.dataset import bulk_edit
        from sushitui.tags import dictionary

        try:
            report = bulk_edit.remove_tag_everywhere(tag) if everywhere else dictionary.remove_tag(tag)
        except dictionary.DictionaryError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        msg = f"deleted {for_terminal(tag)}" + (
            f"; removed from {report.items_changed:,} captions" if everywhere else ""
        )
        if report.problems:
            msg += f"; {len(report.problems)} captions not changed (see `sushitui dict remove`)"
        self.app.call_from_thread(self.notify, msg, severity="warning" if report.problems else "information")
        self.app.call_from_thread(self._refresh_same_page)

    def action_stats(self) -> None:
        self.app.push_screen(DictionaryStats())

    def action_close(self) -> None:
        if self.focused is self.query_one("#dict-search"):
            self.query_one(DataTable).focus()
            return
        self.app.pop_screen()


class TagFormDialog(ModalScreen):
    """Add or edit a dictionary tag; invalid fields are named and explained, nothing saved."""

    DEFAULT_CSS = """
    TagFormDialog { align: center middle; }
    TagFormDialog #tag-form { width: 76; max-width: 100%; height: auto; max-height: 100%; border: thick $accent;
                              background: $surface; padding: 0 1; }
    TagFormDialog .form-row { height: 1; margin-top: 1; }
    TagFormDialog .form-row Label { width: 13; }
    TagFormDialog .form-row Input { border: none; height: 1; width: 1fr; padding: 0 1; }
    TagFormDialog #tag-form-errors { color: $error; height: auto; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="tag_form.save", tooltip="Save this tag"),
        Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without saving"),
    ]
    FIELDS = (
        ("tag", "Tag"),
        ("category", "Category"),
        ("count", "Count"),
        ("aliases", "Aliases"),
        ("description", "Description"),
    )
    HINTS = {"category": "general artist copyright character meta model", "aliases": "comma-separated"}

    def __init__(self, entry=None) -> None:
        super().__init__()
        self.entry = entry

    def compose(self) -> ComposeResult:
        e = self.entry
        values = {
            "tag": e.tag if e else "",
            "category": e.category if e else "general",
            "count": str(e.count) if e else "0",
            "aliases": ", ".join(e.aliases) if e else "",
            "description": e.description if e else "",
        }
        with Vertical(id="tag-form"):
            yield Static(Text("Edit tag" if e else "Add a tag", style="bold"))
            yield Static("", id="tag-form-errors")
            for name, label in self.FIELDS:
                with Horizontal(classes="form-row"):
                    yield Label(label)
                    yield Input(values[name], id=f"form-{name}", placeholder=self.HINTS.get(name, ""))
            yield Static(Text("ctrl+s save · Enter next field · Esc cancel", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#form-tag", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "form-description":
            self.action_save()
        else:
            self.focus_next()

    def action_save(self) -> None:
        from sushitui.tags import dictionary

        v = {name: self.query_one(f"#form-{name}", Input).value for name, _ in self.FIELDS}
        try:
            if self.entry is None:
                entry = dictionary.add_tag(
                    v["tag"],
                    v["category"].strip().lower(),
                    v["count"],
                    aliases=v["aliases"],
                    description=v["description"],
                )
            else:
                entry = dictionary.edit_tag(
                    self.entry.tag,
                    tag=v["tag"],
                    category=v["category"].strip().lower(),
                    count=v["count"],
                    aliases=v["aliases"],
                    description=v["description"],
                )
        except dictionary.ValidationError as exc:
            self.errors = exc.problems
            self.query_one("#tag-form-errors", Static).update(
                Text("\n".join(f"{k}: {for_terminal(r)}" for k, r in exc.problems.items()))
            )
            first = next(iter(exc.problems))
            if first in dict(self.FIELDS):
                self.query_one(f"#form-{first}", Input).focus()
            return
        except dictionary.DictionaryError as exc:
            self.query_one("#tag-form-errors", Static).update(Text(for_terminal(str(exc))))
            return
        self.dismiss(entry)

    def action_cancel(self) -> None:
        self.dismiss(None)


class DictionaryStats(ModalScreen):
    """TAG-8: tags per category and source, used vs unused, top used tags."""

    DEFAULT_CSS = """
    DictionaryStats { align: center middle; }
    DictionaryStats #dict-stats { width: 90%; height: 90%; border: thick $accent; background: $surface; padding: 1 2; }
    """
    BINDINGS = [Binding("escape,q,t", "close", "Close", id="dialog.close", tooltip="Close the statistics")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dict-stats"):
            yield Static("computing statistics…", id="dict-stats-summary")
            table = DataTable(id="dict-stats-top", cursor_type="row")
            yield table
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("#", "tag", "category", "uses", "items", "dictionary count")
        self._compute()

    @work(thread=True, exit_on_error=False)
    def _compute(self) -> None:
        from sushitui.tags import dictionary

        s = dictionary.stats()
        self.app.call_from_thread(self._show, s)

    def _show(self, s: dict) -> None:
        lines = [
            f"{s['total']:,} tags — official {s['official']:,}, custom {s['custom']:,}, deprecated {s['deprecated']:,}",
            "by category: " + ", ".join(f"{k} {v:,}" for k, v in s["by_category"].items()),
            "by source: " + ", ".join(f"{k} {v:,}" for k, v in s["by_source"].items()),
            f"used in datasets {s['used_in_datasets']:,} · unused {s['unused']:,} · "
            f"dataset tags not in the dictionary {s['dataset_tags_not_in_dictionary']:,}",
            f"top {len(s['top_used'])} used tags:",
        ]
        self.query_one("#dict-stats-summary", Static).update(Text("\n".join(lines)))
        table = self.query_one(DataTable)
        for i, t in enumerate(s["top_used"], 1):
            table.add_row(
                str(i),
                Text(for_terminal(t["tag"])),
                Text(t["category"] or "-", style=CATEGORY_COLORS.get(t["category"] or "", "")),
                f"{t['uses']:,}",
                f"{t['items']:,}",
                "-" if t["dictionary_count"] is None else f"{t['dictionary_count']:,}",
            )
        self.stats = s

    def action_close(self) -> None:
        self.dismiss(None)
