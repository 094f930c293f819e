"""Shared CLI plumbing: opening the database, JSON output, the terminal progress bar,
Ctrl-C handling. Only the CLI prints."""

from __future__ import annotations

import json
import signal
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sushitui.progress import CancelToken, ProgressEvent
from sushitui.sanitize import for_terminal


class CliError(Exception):
    """An error shown to the user as ``sushitui: error: ...`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def open_db(args):
    from sushitui.config import resolve_db_path
    from sushitui.store import StoreError, open_database

    from sushitui.tags.groups import ensure_default_groups

    path = resolve_db_path(getattr(args, "db", None))
    try:
        db = open_database(path)
    except StoreError as exc:
        raise CliError(str(exc), 2) from exc
    # Default groups exist on every database, whichever face opened it first
    # (`items --query group:Character` on a fresh database must work). One read after
    # the first time.
    ensure_default_groups()
    return db


def emit_json(obj: Any) -> None:
    """One JSON document (or one line of JSON Lines) on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def out(text: str = "") -> None:
    """Human output: text from files is neutralised when stdout is a terminal."""
    sys.stdout.write((for_terminal(text, multiline=True) if sys.stdout.isatty() else text) + "\n")


def reply(args, data: Any, text: "str | Callable[[], None]") -> None:
    """The result of a command: ``data`` as JSON with ``--json``, else ``text`` (a line,
    or a function that prints the human form)."""
    if args.json:
        emit_json(data)
    elif callable(text):
        text()
    else:
        out(text)


def err(text: str) -> None:
    sys.stderr.write((for_terminal(text, multiline=True) if sys.stderr.isatty() else text) + "\n")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


class TerminalProgress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise
    (piped output stays clean; the final summary is printed by the command)."""

    def __init__(self, label: str, enabled: bool | None = None):
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._drawn = False

    def __call__(self, ev: ProgressEvent) -> None:
        if not self.enabled:
            return
        width = 24
        if ev.total:
            frac = min(1.0, ev.done / ev.total)
            bar = "█" * int(frac * width) + "░" * (width - int(frac * width))
            count = f"{ev.done:,}/{ev.total:,} {ev.unit}"
        else:
            bar = "·" * width
            count = f"{ev.done:,} {ev.unit}"
        extra = "".join(f"  {k} {v:,}" if isinstance(v, int) else f"  {k} {v}" for k, v in ev.extra.items())
        line = f"{self.label} {ev.phase} {bar} {count}{extra}  {ev.rate:,.0f}/s  ETA {fmt_duration(ev.eta_s)}"
        # Only the text is neutralised; the carriage return and erase-line are ours.
        sys.stderr.write("\r" + for_terminal(line)[:200] + "\x1b[K")
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._drawn = False


@contextmanager
def cancel_on_sigint() -> Iterator[CancelToken]:
    """First Ctrl-C asks the operation to stop (it commits what it has); a second one
    interrupts at once."""
    token = CancelToken()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if token.cancelled:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        token.cancel()
        sys.stderr.write("\ncancelling… (press Ctrl-C again to abort at once)\n")

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield token
        return
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


def add_common(parser, *, json_flag: bool = True) -> None:
    """``--db`` (also accepted after the command) and ``--json`` for a subcommand.

    ``default=SUPPRESS`` so that a ``--db`` given before the command is not reset.
    """
    import argparse

    parser.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help="database file")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
