"""The jobs screen (issue 19): background jobs (``sushitui ... --detach``, and those
started here) with live progress, their log, cancel and retry.

The list is read by a thread worker on a timer (``sushitui.jobs.list_jobs``; the database
is shared with the workers that write progress), so the screen never blocks. ``JobWatch``
runs for the whole app: it says when a job ends while the app is open, shows once the
jobs a dead worker left interrupted, and tells the user on quit that running jobs go on.
"""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from sushitui.sanitize import for_terminal
from sushitui.tui.widgets.key_bar import KeyBar

POLL_S = 1.0  # the screen's refresh while open
WATCH_S = 2.0  # the app-wide watcher's
BAR_WIDTH = 16
LOG_LINES = 12


def _bar(job) -> str:
    if job.state == "queued":
        return "waiting"
    frac = job.fraction
    if frac is None:
        return f"{job.done:,} {job.unit}" if job.done else "-"
    filled = int(frac * BAR_WIDTH)
    return f"{'█' * filled}{'░' * (BAR_WIDTH - filled)} {job.done:,}/{job.total:,}"


def _rate(job) -> str:
    if job.state != "running" or not job.rate:
        return ""
    eta = "--:--" if job.eta_s is None else time.strftime("%H:%M:%S", time.gmtime(job.eta_s))
    return f"{job.rate:,.1f}/s ETA {eta}"


def _when(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(ts)) if ts else ""


def describe(job) -> str:
    return f"job {job.id} ({job.kind}{' ' + job.dataset if job.dataset else ''})"


class JobsScreen(Screen):
    """Every job of the last day (or all), refreshed each second, with the highlighted
    job's log below."""

    PALETTE_NAME = "jobs"

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="nav.back", tooltip="Back to the previous screen"),
        Binding(
            "c",
            "cancel_job",
            "Cancel job",
            id="jobs.cancel",
            tooltip="Stop the highlighted job; what it finished is kept",
        ),
        Binding(
            "r",
            "retry_job",
            "Retry",
            id="jobs.retry",
            tooltip="Run the highlighted job's command again as a new job; it resumes where it stopped",
        ),
        Binding(
            "a",
            "toggle_all",
            "Last day / all",
            id="jobs.toggle_all",
            tooltip="Show the jobs of the last day, or every job",
        ),
        Binding(
            "x", "clear_finished", "Clear ended", id="jobs.clear", tooltip="Forget the jobs that ended, and their logs"
        ),
        Binding("f5,ctrl+l", "refresh", "Refresh", id="jobs.refresh", tooltip="Read the jobs again now"),
    ]

    DEFAULT_CSS = """
    JobsScreen #jobs-table { height: auto; max-height: 60%; }
    JobsScreen #jobs-empty { color: $text-muted; padding: 1 2; }
    JobsScreen #jobs-log-scroll { height: 1fr; border-top: solid $primary-darken-2; }
    JobsScreen #jobs-log { padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.include_all = False
        self.jobs: list = []

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("ID", "Kind", "Dataset", "State", "Progress", "Rate / ETA", "Started", "Device")
        yield table
        yield Static("", id="jobs-empty")
        with VerticalScroll(id="jobs-log-scroll"):
            yield Static("", id="jobs-log", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = "Background jobs"
        self.load_jobs()
        self.set_interval(POLL_S, self.load_jobs)

    # -- loading ---------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="jobs-list", description="Reading the jobs", exit_on_error=False)
    def load_jobs(self) -> None:
        from sushitui.jobs import list_jobs

        jobs = list_jobs(include_all=self.include_all)
        self.app.call_from_thread(self._show_jobs, jobs)

    def _show_jobs(self, jobs: list) -> None:
        table = self.query_one("#jobs-table", DataTable)
        selected = self.selected_job()
        keep = selected.id if selected else None
        table.clear()
        self.jobs = jobs
        for j in jobs:
            table.add_row(
                str(j.id),
                for_terminal(j.kind),
                for_terminal(j.dataset or "-"),
                j.state,
                _bar(j),
                _rate(j),
                _when(j.started_at or j.created_at),
                j.device,
                key=str(j.id),
            )
        empty = self.query_one("#jobs-empty", Static)
        empty.update(
            ""
            if jobs
            else "No jobs. Long commands run as jobs with --detach, e.g. "
            "sushitui autotag NAME --detach; they go on when the terminal or this app closes."
        )
        if jobs:
            ids = [j.id for j in jobs]
            table.move_cursor(row=ids.index(keep) if keep in ids else len(ids) - 1)
        self._show_log()

    def selected_job(self):
        table = self.query_one("#jobs-table", DataTable)
        if not self.jobs or table.cursor_row is None or not 0 <= table.cursor_row < len(self.jobs):
            return None
        return self.jobs[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_log()

    def _show_log(self) -> None:
        job = self.selected_job()
        if job is None:
            self.query_one("#jobs-log", Static).update("")
            return
        self.read_log(job)

    @work(thread=True, exclusive=True, group="jobs-log", description="Reading a job's log", exit_on_error=False)
    def read_log(self, job) -> None:
        lines: list[str] = []
        if job.log_path:
            try:
                with open(job.log_path, encoding="utf-8", errors="replace") as fh:
                    lines = [ln.rstrip("\n").split("\r")[-1] for ln in fh.readlines()[-LOG_LINES:]]
            except OSError:
                lines = ["(no log file: it was cleared or not written yet)"]
        head = [
            f"{job.command}",
            f"state {job.state}" + (f" — {job.message}" if job.message else ""),
            f"log {job.log_path or '-'}",
            "",
        ]
        text = "\n".join(for_terminal(line) for line in head + lines)
        self.app.call_from_thread(self.query_one("#jobs-log", Static).update, text)

    # -- actions ---------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.load_jobs()

    def action_toggle_all(self) -> None:
        self.include_all = not self.include_all
        self.notify("Every job" if self.include_all else "Jobs of the last day", timeout=2)
        self.load_jobs()

    def action_cancel_job(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run_action("cancel", job.id)

    def action_retry_job(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run_action("retry", job.id)

    def action_clear_finished(self) -> None:
        self._run_action("clear", None)

    @work(thread=True, group="jobs-action", description="Changing a job", exit_on_error=False)
    def _run_action(self, what: str, job_id: int | None) -> None:
        from sushitui.jobs import JobError, clear_finished, request_cancel, retry

        try:
            if what == "cancel":
                job = request_cancel(job_id)
                message = f"{describe(job)}: cancel requested; it stops at the next item"
            elif what == "retry":
                job = retry(job_id)
                message = f"{describe(job)} started: retry of job {job_id}; it goes on if you quit"
            else:
                message = f"Cleared {clear_finished()} ended job(s)"
        except JobError as exc:
            self.app.call_from_thread(self.notify, for_terminal(str(exc)), severity="warning", markup=False)
            return
        self.app.call_from_thread(self.notify, for_terminal(message), markup=False)
        self.app.call_from_thread(self.load_jobs)


class JobWatch:
    """The app's eye on the job table while it runs (see the module's docstring)."""

    def __init__(self, app) -> None:
        self.app = app
        self.active: dict[int, object] = {}
        self.started = False
        self.listed = False

    def start(self) -> None:
        self.poll()
        self.app.set_interval(WATCH_S, self.poll)

    def poll(self) -> None:
        self.app.run_worker(
            self._poll,
            thread=True,
            exclusive=True,
            group="jobs-watch",
            description="Watching background jobs",
            exit_on_error=False,
        )

    def _poll(self) -> None:
        from sushitui.jobs import active_jobs, jobs_by_id, take_unannounced_interruptions

        notes: list[tuple[str, str]] = []
        if not self.started:
            self.started = True
            for job in take_unannounced_interruptions():
                notes.append(
                    (f"{describe(job)} was interrupted: {job.message}. Retry it on the jobs screen.", "warning")
                )
        now_active = {j.id: j for j in active_jobs()}
        ended = jobs_by_id([i for i in self.active if i not in now_active])
        for job in ended.values():
            severity = {"done": "information", "cancelled": "information"}.get(job.state, "error")
            detail = f": {job.message}" if job.message and job.state != "done" else ""
            notes.append((f"{describe(job)} {job.state}{detail}", severity))
        if not self.listed and now_active:  # the app just started: say what runs
            notes.append((f"{len(now_active)} background job(s) running; see them on the jobs screen", "information"))
        self.active = now_active
        self.listed = True
        for text, severity in notes:
            self.app.call_from_thread(self.app.notify, for_terminal(text), severity=severity, timeout=10, markup=False)

    def goodbye(self) -> str | None:
        """What quitting says when jobs still run (they go on)."""
        try:
            from sushitui.jobs import active_jobs

            running = active_jobs()
        except Exception:  # noqa: BLE001 - the database closing under us: nothing to add
            return None
        if not running:
            return None
        ids = ", ".join(str(j.id) for j in running)
        return (
            f"sushitui: {len(running)} background job(s) go on ({ids}): `sushitui jobs` shows them, "
            f"`sushitui jobs attach ID` follows one"
        )
