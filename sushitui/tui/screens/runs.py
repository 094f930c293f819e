"""Training runs screen (TR-1, TR-5): the runs list and the statistics of the highlighted
run: overview, usage heatmap (Unicode blocks), histogram of times seen, the numbers,
top 10, never used, and the resume recommendation.

Statistics are computed by ``sushitui.training.stats.run_stats`` in a thread worker (an
exclusive group: moving the cursor quickly only finishes the last request), so the list
stays responsive; a 100k-item dataset takes tens of milliseconds anyway.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.confirm import ConfirmDialog
from sushitui.tui.widgets.key_bar import KeyBar

HEATMAP_ROWS = 6
BAR_WIDTH = 30


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


def render_stats(st, width: int) -> Text:
    """The stats view as one Rich Text (plain text from the database is sanitised)."""
    from sushitui.training.stats import heatmap_rows

    t = Text()
    t.append(for_terminal(f"{st.run}  #{st.number} of {st.dataset}"), style="bold")
    t.append(f"  {st.status}  ·  {'this run' if st.scope == 'run' else 'all runs'}\n", style="dim")
    t.append(f"items used {st.items_used:,} of {st.items:,}   never used {st.never_used_count:,}\n")
    t.append(f"samples {st.samples_seen:,}   epochs {st.epochs_done}   steps {st.steps_done}\n")
    t.append(
        f"mean {st.mean:.2f}  median {st.median:g}  std {st.std:.2f}  variance {st.variance:.2f}  "
        f"min {st.min}  max {st.max}\n\n"
    )
    t.append("Usage heatmap (items in id order, darker = more used)\n", style="bold")
    for line in heatmap_rows(st.heatmap, width):
        t.append("│", style="dim")
        t.append(line, style="cyan")
        t.append("│\n", style="dim")
    t.append("\nTimes seen\n", style="bold")
    peak = max((b["count"] for b in st.histogram), default=0) or 1
    for b in st.histogram:
        label = f"{b['low']}" if b["low"] == b["high"] else f"{b['low']}–{b['high']}"
        bar = "█" * max(0, round(BAR_WIDTH * b["count"] / peak))
        t.append(f"{label:>11} ")
        t.append(f"{bar:<{BAR_WIDTH}}", style="green")
        t.append(f" {b['count']:,}\n")
    if st.top:
        t.append("\nMost used\n", style="bold")
        for row in st.top:
            t.append(f"{row['times_seen']:>9,}  {for_terminal(row['name'])}\n")
    if st.never_used_count:
        t.append(f"\nNever used ({st.never_used_count:,})\n", style="bold")
        names = [for_terminal(r["name"]) for r in st.never_used[:20]]
        t.append("  ".join(names) + (" …" if st.never_used_count > len(names) else "") + "\n")
    rec = st.recommendation
    if rec:
        t.append("\nRecommendation: ", style="bold yellow")
        t.append(f"resume with sampler {rec.sampler} (history {rec.history}). {rec.reason}\n")
    return t


class RunsScreen(Screen):
    """Runs of one dataset (or all) and the statistics of the highlighted run."""

    PALETTE_NAME = "runs"

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="nav.back", tooltip="Back to the previous screen"),
        Binding(
            "enter",
            "toggle_focus",
            "Stats / list",
            tooltip="Switch between the runs list and the full statistics view",
            id="runs.toggle_focus",
        ),
        Binding(
            "a",
            "toggle_scope",
            "Run / all runs",
            tooltip="Statistics of this run or totals over all runs of the dataset",
            id="runs.toggle_scope",
        ),
        Binding("f5,ctrl+l", "refresh", "Refresh", id="runs.refresh", tooltip="Read the runs and statistics again"),
        Binding(
            "c",
            "set_status('completed')",
            "Mark completed",
            id="runs.mark_completed",
            tooltip="Mark the highlighted run as completed",
        ),
        Binding(
            "f",
            "set_status('failed')",
            "Mark failed",
            id="runs.mark_failed",
            tooltip="Mark the highlighted run as failed",
        ),
        Binding(
            "delete,x",
            "remove",
            "Remove run",
            id="runs.remove",
            tooltip="Remove the highlighted run and its records (asks first)",
        ),
    ]

    DEFAULT_CSS = """
    RunsScreen #runs-table { height: auto; max-height: 9; }
    RunsScreen.stats-only #runs-table { display: none; }
    RunsScreen #runs-stats-scroll { height: 1fr; border-top: solid $primary-darken-2; }
    RunsScreen #runs-empty { color: $text-muted; padding: 1 2; }
    RunsScreen #runs-stats { padding: 0 1; }
    """

    def __init__(self, dataset_id: int | None = None) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.scope = "run"
        self.run_ids: list[int] = []
        self.current_stats = None

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("Run", "Dataset", "#", "Status", "Epochs", "Samples", "Created")
        yield table
        yield Static("", id="runs-empty")
        with VerticalScroll(id="runs-stats-scroll"):
            yield Static("", id="runs-stats")
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = "Training runs"
        self.load_runs()

    # -- loading -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="runs-list", description="Loading training runs")
    def load_runs(self, select_id: int | None = None) -> None:
        from sushitui.training.runs import list_runs, run_to_dict

        runs = [run_to_dict(r) for r in list_runs(self.dataset_id)]
        self.app.call_from_thread(self._show_runs, runs, select_id)

    def _show_runs(self, runs: list[dict], select_id: int | None) -> None:
        table = self.query_one("#runs-table", DataTable)
        previous = select_id or self.selected_run_id()
        table.clear()
        self.run_ids = [r["id"] for r in runs]
        for r in runs:
            planned = r["epochs_planned"] if r["epochs_planned"] is not None else "?"
            table.add_row(
                for_terminal(r["name"]),
                for_terminal(r["dataset"]),
                str(r["number"]),
                r["status"],
                f"{r['epochs_done']}/{planned}",
                f"{r['samples_seen']:,}",
                _when(r["created_at"]),
                key=str(r["id"]),
            )
        self.refresh_bindings()  # run keys are greyed out while there is no run
        empty = self.query_one("#runs-empty", Static)
        empty.display = not runs
        empty.update(
            "No training runs yet. Create one with\n  sushitui run create NAME --dataset D\n"
            "then record from your trainer (sushitui.training.open_run) or `sushitui run record`."
        )
        if not runs:
            self.query_one("#runs-stats", Static).update("")
            return
        row = self.run_ids.index(previous) if previous in self.run_ids else 0
        table.move_cursor(row=row)
        self.load_stats(self.run_ids[row])
        table.focus()

    def selected_run_id(self) -> int | None:
        table = self.query_one("#runs-table", DataTable)
        if not self.run_ids or table.cursor_row is None or table.cursor_row >= len(self.run_ids):
            return None
        return self.run_ids[table.cursor_row]

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self.load_stats(int(event.row_key.value))

    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        # the table takes Enter itself; it means "show me this run's statistics"
        if not self.has_class("stats-only"):
            self.action_toggle_focus()

    @work(thread=True, exclusive=True, group="run-stats", description="Computing run statistics")
    def load_stats(self, run_id: int) -> None:
        from sushitui.training.runs import TrainingError
        from sushitui.training.stats import run_stats

        width = max(10, self.size.width - 8)  # heatmap characters per row, inside the borders
        try:
            st = run_stats(run_id, scope=self.scope, heatmap_cells=width * HEATMAP_ROWS)
        except TrainingError as exc:
            self.app.call_from_thread(self.query_one("#runs-stats", Static).update, Text(for_terminal(str(exc))))
            return
        self.app.call_from_thread(self._show_stats, st, width)

    def _show_stats(self, st, width: int) -> None:
        self.current_stats = st
        self.query_one("#runs-stats", Static).update(render_stats(st, width))

    # -- actions ---------------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        # Without a run these keys did nothing; shown dimmed in the footer instead.
        if action in ("set_status", "remove", "toggle_scope", "toggle_focus"):
            return True if self.run_ids else None
        return True

    def action_back(self) -> None:
        if self.has_class("stats-only"):
            self.action_toggle_focus()
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_toggle_focus(self) -> None:
        self.toggle_class("stats-only")
        if self.has_class("stats-only"):
            self.query_one("#runs-stats-scroll").focus()
        else:
            self.query_one("#runs-table").focus()

    def action_toggle_scope(self) -> None:
        self.scope = "all" if self.scope == "run" else "run"
        self.notify(f"Statistics of {'this run' if self.scope == 'run' else 'all runs of the dataset'}", timeout=2)
        run_id = self.selected_run_id()
        if run_id is not None:
            self.load_stats(run_id)

    def action_refresh(self) -> None:
        self.load_runs(self.selected_run_id())

    def action_set_status(self, status: str) -> None:
        run_id = self.selected_run_id()
        if run_id is None:
            return
        self._set_status(run_id, status)

    @work(thread=True, group="run-edit", description="Changing the run status")
    def _set_status(self, run_id: int, status: str) -> None:
        from sushitui.training.runs import set_status

        run = set_status(run_id, status)
        self.app.call_from_thread(self.notify, f"{for_terminal(run.name)}: {status}", timeout=3)
        self.app.call_from_thread(self.load_runs, run_id)

    def action_remove(self) -> None:
        run_id = self.selected_run_id()
        if run_id is None:
            return
        name = self.query_one("#runs-table", DataTable).get_row_at(self.query_one("#runs-table", DataTable).cursor_row)[
            0
        ]

        def done(ok: bool | None) -> None:
            if ok:
                self._remove(run_id)

        self.app.push_screen(
            ConfirmDialog(
                f"Remove run {name}?",
                detail="Its usage history is taken out of the per-item totals. Images and captions are not touched.",
                yes_label="Remove",
                danger=True,
            ),
            done,
        )

    @work(thread=True, group="run-edit", description="Removing the run")
    def _remove(self, run_id: int) -> None:
        from sushitui.training.runs import remove_run

        remove_run(run_id)
        self.app.call_from_thread(self.notify, "Run removed", timeout=3)
        self.app.call_from_thread(self.load_runs)
