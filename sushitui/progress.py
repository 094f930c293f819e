"""Progress reporting and cancellation for long core operations.

Long operations (scan, reindex, auto-tag, import, export, bulk edit) take an optional
``progress`` callback and an optional ``cancel`` token. The TUI runs them in a worker
and turns events into a progress bar; the CLI draws a terminal bar. Neither the core
nor this module prints.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable


class CancelToken:
    """Asks a long operation to stop. The one convention: the operation keeps (commits)
    what it finished, stops at the next safe point and returns its report with
    ``cancelled = True`` — it never raises for a cancel. Callers read the flag (the CLI
    exits 130)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class ProgressEvent:
    """``done`` of ``total`` units (``total`` None when unknown yet)."""

    phase: str  # e.g. "scanning", "hashing", "writing"
    done: int
    total: int | None = None
    unit: str = "items"
    message: str = ""
    started_at: float = field(default_factory=time.monotonic)
    extra: dict = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return max(1e-9, time.monotonic() - self.started_at)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed

    @property
    def eta_s(self) -> float | None:
        if not self.total or not self.done:
            return None
        return max(0.0, (self.total - self.done) / self.rate)


ProgressCallback = Callable[[ProgressEvent], None]


class Throttle:
    """Call the callback at most every ``interval`` seconds (and always for the last event)."""

    def __init__(self, callback: ProgressCallback | None, interval: float = 0.1) -> None:
        self.callback = callback
        self.interval = interval
        self._last = 0.0

    def __call__(self, event: ProgressEvent, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.callback(event)
