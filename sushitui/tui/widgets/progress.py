"""A progress panel for long core operations run in a worker (scan, bulk edit, ...).

The core reports ``sushitui.progress.ProgressEvent``s from a worker thread; the panel
receives them on the UI thread (``update_event`` via ``call_from_thread`` or a message)
and shows a bar plus "files seen, items, rate, ETA". ``c``/Escape on the owning screen
call ``cancel_token.cancel()``; the panel itself only displays.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from sushitui.progress import ProgressEvent
from sushitui.sanitize import for_terminal


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def describe_event(event: ProgressEvent) -> str:
    """One line: phase, counts, rate, ETA (plus item counts the scanner adds in ``extra``)."""
    total = f"/{event.total:,}" if event.total else ""
    parts = [f"{event.phase}: {event.done:,}{total} {event.unit}"]
    for key, value in (event.extra or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key.replace('_', ' ')} {value:,}")
    parts.append(f"{event.rate:,.0f}/s")
    if event.total:
        parts.append(f"ETA {fmt_eta(event.eta_s)}")
    if event.message:
        parts.append(for_terminal(event.message))
    return " · ".join(parts)


class ProgressPanel(Vertical):
    """Title, bar and a status line; hidden (``display: none``) until ``start``."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.display = False

    def compose(self) -> ComposeResult:
        yield Static("", classes="progress-title")
        yield ProgressBar(total=None, show_eta=False, classes="progress-bar")
        yield Static("", classes="progress-status")

    def start(self, title: str) -> None:
        self.query_one(".progress-title", Static).update(Text(for_terminal(title), style="bold"))
        self.query_one(".progress-status", Static).update("starting…")
        bar = self.query_one(ProgressBar)
        bar.update(total=None, progress=0)
        self.display = True

    def update_event(self, event: ProgressEvent) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(total=event.total if event.total else None, progress=event.done)
        self.query_one(".progress-status", Static).update(Text(describe_event(event)))

    def set_status(self, text: str) -> None:
        self.query_one(".progress-status", Static).update(Text(for_terminal(text)))

    def finish(self) -> None:
        self.display = False
