"""The sushitui Textual app: opens the database, starts on the datasets screen.

``run(db_path, demo=False)`` is what ``sushitui`` without a command calls. It imports
``textual_image.widget`` BEFORE the app starts: textual-image asks the terminal which
graphics protocol it speaks (Kitty, Sixel, else half-cell blocks) and its cell size,
which is impossible once Textual owns the terminal.

First-start work (default tag groups, the shipped tag dictionary) runs in a thread
worker with its progress in the top bar, so the UI is usable at once.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

import sushitui.check  # noqa: F401 - gives the query language its tokens:/t5tokens: counters (browser search)
from sushitui.config import log_path
from sushitui.dataset.thumbnails import ThumbnailCache
from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressEvent, Throttle
from sushitui.sanitize import for_terminal
from sushitui.tui.edit_flow import ExitReport
from sushitui.workers import start_helper_processes

log = logging.getLogger(__name__)


class SushiApp(App):
    """Datasets → browser → item detail, plus the dictionary, groups and runs screens."""

    CSS_PATH = "sushitui.tcss"
    TITLE = "sushitui"
    # Every binding has an id (users remap it in keymap.toml, see sushitui.tui.keymap)
    # and a tooltip (the help screen shows it). Textual's own ctrl+q is declared again
    # here only to give it an id.
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="app.quit", tooltip="Quit sushitui"),
        Binding(
            "ctrl+t",
            "open_dictionary",
            "Dictionary",
            id="app.dictionary",
            tooltip="The tag dictionary (search, add, edit, import)",
        ),
        Binding("ctrl+g", "open_groups", "Groups", id="app.groups", tooltip="Tag groups and aliases"),
        Binding("ctrl+r", "open_runs", "Runs", id="app.runs", tooltip="Training runs and their statistics"),
        Binding(
            "ctrl+b",
            "open_jobs",
            "Jobs",
            id="app.jobs",
            tooltip="Background jobs (--detach): live progress, cancel, retry, logs",
        ),
        Binding(
            "ctrl+o", "open_datasets", "Datasets", show=False, id="app.datasets", tooltip="Back to the list of datasets"
        ),
        Binding("f1,question_mark", "help", "Help", show=False, id="app.help", tooltip="Every key of this screen"),
    ]

    # What background work (first-start dictionary load, ...) is doing; screens show it.
    job_status: reactive[str] = reactive("")

    def __init__(
        self, db_path: str | os.PathLike, *, open_dataset: str | None = None, first_start: bool = True
    ) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.open_dataset = open_dataset
        self.first_start = first_start
        self.database = None
        self.thumbnails = ThumbnailCache()
        self.first_start_token = CancelToken()
        self.first_start_done = False
        self.started_at = time.perf_counter()
        # Edits that could not be saved while the app was closing: printed by run()
        # once the terminal is back (nothing can be shown on screen by then).
        self.exit_report = ExitReport()
        # The scanner's and the tagger's worker pools need multiprocessing's resource
        # tracker, which must start while sys.stderr is still the real one (Textual
        # replaces it with an object without a file descriptor).
        start_helper_processes()

    # -- start and stop ------------------------------------------------------------------
    def on_mount(self) -> None:
        from sushitui.store import StoreError, open_database

        self._apply_user_keymap()

        try:
            self.database = open_database(self.db_path)
        except StoreError as exc:
            self.exit(return_code=2, message=f"sushitui: error: {for_terminal(exc)}")
            return
        from sushitui.tui.screens.datasets import DatasetsScreen

        self.push_screen(DatasetsScreen())
        from sushitui.tui.screens.jobs import JobWatch

        self.job_watch = JobWatch(self)  # says when a job ends; quitting says which go on
        self.job_watch.start()
        # Everything alive now (Textual, the DOM, imported modules) lives as long as the
        # app: keep it out of the garbage collector's full passes, which otherwise walk
        # it again and again while pages of thumbnails come and go.
        self.call_after_refresh(gc.freeze)
        if self.open_dataset:
            self._open_named_dataset(self.open_dataset)
        if self.first_start:
            self._first_start(self.first_start_token)
        else:
            self.first_start_done = True

    def _apply_user_keymap(self) -> None:
        """The user's keymap.toml (if any) over the default keys; its problems are shown,
        never raised: a typo in a config file must not keep the app from starting."""
        from sushitui.config import keymap_path
        from sushitui.tui.keymap import load_keymap

        path = keymap_path()
        loaded = load_keymap(path)
        if loaded.keymap:
            self.set_keymap(loaded.keymap)
        if loaded.problems:
            shown = loaded.problems[:6]
            if len(loaded.problems) > len(shown):
                shown.append(f"... and {len(loaded.problems) - len(shown)} more")
            lines = "\n".join(f"- {for_terminal(p)}" for p in shown)
            applied = f"{len(loaded.keymap)} other entries applied." if loaded.keymap else "No entry applied."
            self.notify(
                f"{for_terminal(path)}:\n{lines}\nFix the file and restart sushitui. {applied}",
                title="Key map problems",
                severity="warning",
                timeout=20,
                markup=False,
            )

    def on_unmount(self) -> None:
        self.first_start_token.cancel()
        self.thumbnails.close()
        if self.database is not None:
            self.database.close()

    def _open_named_dataset(self, name: str) -> None:
        from sushitui.dataset.registry import DatasetNotFound, get_dataset
        from sushitui.tui.screens.browser import BrowserScreen

        try:
            ds = get_dataset(name)
        except DatasetNotFound:
            self.notify(f"No dataset named {for_terminal(name)}", severity="error")
            return
        self.push_screen(BrowserScreen(ds.id, ds.name, ds.root_path))

    @work(thread=True, group="first-start", exit_on_error=False, description="first-start setup")
    def _first_start(self, token: CancelToken) -> None:
        """Default tag groups and the shipped tag dictionary, once per database (TAG-1, TAG-4)."""
        from sushitui.tags import dictionary
        from sushitui.tags.groups import ensure_default_groups

        ensure_default_groups()

        def show(event: ProgressEvent) -> None:
            pct = f" {100 * event.done // event.total}%" if event.total else f" {event.done:,}"
            self.call_from_thread(setattr, self, "job_status", f"loading tag dictionary{pct}")

        if dictionary.is_builtin_loaded():
            self.first_start_done = True
            return
        started = time.perf_counter()
        self.call_from_thread(
            self.notify, "First start: loading the tag dictionary; the app is usable meanwhile.", timeout=5
        )
        try:
            report = dictionary.ensure_loaded(progress=Throttle(show, interval=0.25), cancel=token)
        finally:
            self.call_from_thread(setattr, self, "job_status", "")
        if report is not None:
            n = sum(getattr(report, k, 0) or 0 for k in ("imported", "updated"))
            self.call_from_thread(
                self.notify, f"Tag dictionary loaded: {n:,} tags in {time.perf_counter() - started:.1f} s", timeout=6
            )
        self.first_start_done = True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed is a message to the user, never a crash (NF-5). This is
        the one place the app catches the core's errors (workers run with
        exit_on_error=False): a UserError's message says what to do and is shown as it
        is; anything else is a bug, logged with its traceback and shown with the log's
        path."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        what = event.worker.description or event.worker.group or event.worker.name
        if isinstance(error, UserError):
            log.debug("worker %s: %s", what, error, exc_info=error)
            self.notify(for_terminal(str(error)), severity="error", timeout=12)
            return
        log.error("worker %s failed", what, exc_info=error)
        self.notify(
            f"{for_terminal(what)} failed: {for_terminal(error)} (details in {for_terminal(str(log_path()))})",
            severity="error",
            timeout=12,
        )

    def _handle_exception(self, error: Exception) -> None:
        # An exception outside a worker ends the app (Textual prints its traceback on
        # exit); the log file keeps it too, with whatever was logged before it.
        log.critical("the app stopped on an unexpected error", exc_info=error)
        super()._handle_exception(error)

    # -- other screens --------------------------------------------------------------------
    def action_open_datasets(self) -> None:
        from sushitui.tui.screens.datasets import DatasetsScreen

        while len(self.screen_stack) > 2 and not isinstance(self.screen, DatasetsScreen):
            self.pop_screen()

    def _current_dataset_id(self) -> int | None:
        """The dataset of the browser the user is in (for screens that can filter by it)."""
        for screen in reversed(self.screen_stack):
            dataset_id = getattr(screen, "dataset_id", None)
            if dataset_id is not None:
                return dataset_id
        return None

    def action_help(self) -> None:
        from sushitui.tui.widgets.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_open_dictionary(self) -> None:
        from sushitui.tui.screens.dictionary import DictionaryScreen

        if not isinstance(self.screen, DictionaryScreen):
            self.push_screen(DictionaryScreen())

    def action_open_groups(self) -> None:
        from sushitui.tui.screens.groups import GroupsScreen

        if not isinstance(self.screen, GroupsScreen):
            self.push_screen(GroupsScreen())

    def action_open_jobs(self) -> None:
        from sushitui.tui.screens.jobs import JobsScreen

        if not isinstance(self.screen, JobsScreen):
            self.push_screen(JobsScreen())

    async def action_quit(self) -> None:
        watch = getattr(self, "job_watch", None)
        self.exit(message=watch.goodbye() if watch is not None else None)

    def action_open_runs(self) -> None:
        from sushitui.tui.screens.runs import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen(self._current_dataset_id()))

    # -- command palette ----------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every screen and every key of the current screen, searchable (NF-6).

        The one source of the palette's commands: a screen adds none of its own (the item
        detail and quick tag screens did, and listed every key twice). One entry per
        action, however many keys or bindings (``quit`` and ``app.quit``) reach it."""
        yield SystemCommand(
            "Datasets", f"The list of datasets ({self._keys_of(screen, 'open_datasets')})", self.action_open_datasets
        )
        yield SystemCommand(
            "Tag dictionary",
            f"Search, add, edit and import dictionary tags ({self._keys_of(screen, 'open_dictionary')})",
            self.action_open_dictionary,
        )
        yield SystemCommand(
            "Tag groups and aliases",
            f"Groups with colours, aliases ({self._keys_of(screen, 'open_groups')})",
            self.action_open_groups,
        )
        yield SystemCommand(
            "Training runs",
            f"Runs, usage statistics and samplers ({self._keys_of(screen, 'open_runs')})",
            self.action_open_runs,
        )
        yield SystemCommand(
            "Help: keys of this screen",
            f"Every key of the current screen ({self._keys_of(screen, 'help')})",
            self.action_help,
        )
        yield SystemCommand("Quit", f"Quit sushitui ({self._keys_of(screen, 'quit')})", self.action_quit)
        seen = {
            (self, name) for name in ("open_datasets", "open_dictionary", "open_groups", "open_runs", "help", "quit")
        }
        screen_name = getattr(screen, "PALETTE_NAME", None) or type(screen).__name__.removesuffix("Screen").lower()
        keys_by_action: dict[tuple, list[str]] = {}
        commands: dict[tuple, tuple] = {}
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.system:
                continue
            target = _action_target(self, active.node, binding.action)
            if target in seen:
                continue
            keys_by_action.setdefault(target, []).append(self.get_key_display(binding))
            commands.setdefault(target, (binding, active.node))
        for target, (binding, node) in commands.items():
            key_display = ", ".join(dict.fromkeys(keys_by_action[target]))
            help_text = binding.tooltip or binding.description
            callback = partial(self.run_action, binding.action, node)
            yield SystemCommand(f"{screen_name}: {binding.description} ({key_display})", help_text, callback)
        for command in super().get_system_commands(screen):
            if command.title != "Quit":  # listed above, with its keys
                yield command

    def _keys_of(self, screen: Screen, action: str) -> str:
        """The keys that run an app action on ``screen`` now (after the user's keymap)."""
        keys = [
            self.get_key_display(active.binding)
            for active in screen.active_bindings.values()
            if _action_target(self, active.node, active.binding.action) == (self, action)
        ]
        return ", ".join(dict.fromkeys(keys)) or "no key"


def _action_target(app: App, node, action: str) -> tuple:
    """(the node that runs it, the action name): ``app.quit`` bound on a screen and
    ``quit`` bound on the app are one action."""
    if action.startswith("app."):
        return (app, action.removeprefix("app."))
    if action.startswith("screen."):
        return (getattr(node, "screen", node), action.removeprefix("screen."))
    return (node, action)


def run(db_path: str | os.PathLike, open_dataset: str | None = None) -> tuple[int, list[str]]:
    """Start the app (``sushitui`` with no command); returns its exit code and the edits
    lost on the way out as terminal-safe lines, for the command to print once the
    terminal is back. ``open_dataset`` opens that dataset's browser at once (``--demo``)."""
    # Must happen before the app owns the terminal: protocol and cell-size detection.
    import textual_image.widget  # noqa: F401

    app = SushiApp(db_path, open_dataset=open_dataset)
    app.run()
    lost = app.exit_report.shown_lines()
    # an edit was lost: say so to a calling script too
    return (app.return_code or (1 if lost else 0)), lost
