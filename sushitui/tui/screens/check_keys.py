"""The browser's keys for the health check (issue 18): ``k`` runs ``sushitui check`` on the
dataset in a thread worker with a one-line progress bar (``k`` again cancels), ``d`` opens
the duplicates screen. After a check the cards carry a ``!N`` badge and ``check:any``
(or ``check:CODE``) in the search finds the items.

The check reuses the trainer, resolution and bucket settings of the dataset's last
``sushitui check`` (defaults: kohya at 1024), so the badges judge the same buckets as
the CLI report did. A screen mixes in ``CheckKeys``; it provides ``dataset_id`` and,
to redraw after the check, ``action_reload``.
"""

from __future__ import annotations

import logging
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static
from textual.worker import get_current_worker

from sushitui.errors import UserError, log_if_unexpected
from sushitui.sanitize import for_terminal

log = logging.getLogger(__name__)

CHECK_BINDINGS = [
    Binding(
        "k",
        "run_check",
        "Check",
        id="browser.run_check",
        tooltip="Health check of the dataset (buckets, token lengths, duplicates, images, captions); "
        "then check:any finds the items with findings. k again cancels",
    ),
    Binding(
        "d",
        "duplicates",
        "Duplicates",
        id="browser.duplicates",
        tooltip="Exact and near duplicates side by side: keep one, flag the rest exclude",
    ),
]


class CheckProgress(Horizontal):
    """One line: what the check does now, and a bar while images are hashed."""

    DEFAULT_CSS = """
    CheckProgress { height: 1; background: $boost; padding: 0 1; }
    CheckProgress > .check-status { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    CheckProgress > ProgressBar { width: 30; height: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", classes="check-status")
        yield ProgressBar(total=None, show_eta=False, show_percentage=True)

    def start(self, text: str) -> None:
        self.query_one(".check-status", Static).update(Text(for_terminal(text)))
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.display = True

    def step(self, stage: str, done: int, total: int) -> None:
        self.query_one(".check-status", Static).update(
            Text(f"Check: {for_terminal(stage)} {done:,}/{total:,} images — k cancels")
        )
        self.query_one(ProgressBar).update(total=total or None, progress=done)

    def status(self, text: str) -> None:
        self.query_one(".check-status", Static).update(Text(for_terminal(text)))


def check_summary(report) -> str:
    """One notification line: items with findings, per severity, and how to list them."""
    with_findings = len(report.items_with_findings())
    if not with_findings:
        return f"Check of {report.dataset}: no findings in {len(report.items):,} items ({report.elapsed_s:.1f} s)"
    sev = report.severity_counts()
    parts = ", ".join(f"{n:,} {s}{'s' if n != 1 else ''}" for s, n in sev.items() if n)
    dups = len(report.exact_groups) + len(report.near_groups)
    text = (
        f"Check of {report.dataset}: {with_findings:,} of {len(report.items):,} items have findings ({parts}). "
        "Search check:any to list them (check:error, check:upscaled, …)."
    )
    if dups:
        text += f" {dups:,} duplicate group{'s' if dups != 1 else ''}: d shows them."
    return text


class CheckKeys:
    """``action_run_check`` and ``action_duplicates`` for a screen with ``dataset_id``."""

    check_worker = None
    _check_starting = False
    checks_done = 0  # finished checks (tests wait on it)

    async def action_run_check(self) -> None:
        if self.check_worker is not None:
            self.check_worker.cancel()
            self.query_one(CheckProgress).status("Check: cancelling… (after the image being hashed)")  # type: ignore[attr-defined, unused-ignore]
            return
        if self._check_starting:
            return  # a second k while the bar is being mounted
        if not self.query(CheckProgress):  # type: ignore[attr-defined]
            # mounted on first use: the screen's first paint does not pay for it
            from sushitui.tui.widgets.key_bar import KeyBar

            self._check_starting = True
            try:
                await self.mount(CheckProgress(), before=self.query_one(KeyBar))  # type: ignore[attr-defined]
            finally:
                self._check_starting = False
        self.query_one(CheckProgress).start("Check: reading the index…  (k cancels)")  # type: ignore[attr-defined]
        self.check_worker = self.run_worker(
            self._check_in_thread,
            thread=True,
            group="check",  # type: ignore[attr-defined]
            exit_on_error=False,
            description="Checking the dataset",
        )

    def _check_in_thread(self) -> None:
        from sushitui.check.report import last_check_options, run_check

        worker = get_current_worker()
        app = self.app  # type: ignore[attr-defined]
        bar = self.query_one(CheckProgress)  # type: ignore[attr-defined]
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.1 or done >= total:
                last[0] = now
                app.call_from_thread(bar.step, stage, done, total)

        try:
            report = run_check(
                self.dataset_id,
                last_check_options(self.dataset_id),  # type: ignore[attr-defined]
                progress=progress,
                cancelled=lambda: worker.is_cancelled,
            )
        except Exception as exc:  # noqa: BLE001 - the bar must go and say why; a bug is logged
            if not isinstance(exc, (UserError, ValueError)):
                log_if_unexpected(log, exc, "checking the dataset")
            app.call_from_thread(self._check_done, None, f"Check failed: {for_terminal(str(exc))}")
            return
        # cancelling stops the hashing (the slow part); the core reports the rest with the
        # images not hashed yet as "not inspected", as `sushitui check` does after ctrl+c
        app.call_from_thread(self._check_done, report, None, worker.is_cancelled)

    def _check_done(self, report, error: str | None, cancelled: bool = False) -> None:
        self.check_worker = None
        if not self.is_attached:  # type: ignore[attr-defined]
            return  # the screen was closed meanwhile (its worker was cancelled with it)
        self.query_one(CheckProgress).display = False  # type: ignore[attr-defined]
        if error:
            self.notify(error, severity="error", timeout=10)  # type: ignore[attr-defined]
            return
        self.checks_done += 1
        text = check_summary(report)
        if cancelled:
            text = "Hashing cancelled: images not hashed yet are reported as not inspected. " + text
        self.notify(
            for_terminal(text),
            title="Check finished",
            timeout=10,  # type: ignore[attr-defined]
            severity="warning" if report.severity_counts()["error"] else "information",
        )
        reload = getattr(self, "action_reload", None)
        if reload is not None:
            reload()  # badges, and a check: query's result

    def action_duplicates(self) -> None:
        from sushitui.tui.screens.duplicates import DuplicatesScreen

        self.app.push_screen(DuplicatesScreen(self.dataset_id, getattr(self, "dataset_name", "")))  # type: ignore[attr-defined]
