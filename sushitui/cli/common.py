"""Shared CLI plumbing: opening the database, JSON output, the terminal progress bar,
Ctrl-C handling, the log file. Only the CLI prints."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressEvent
from sushitui.sanitize import for_terminal, json_escape_controls

log = logging.getLogger(__name__)

# SQLite stores integers in 64 bits: a larger number given to a query is an
# OverflowError deep in the driver, so every integer option is checked on the way in.
SQLITE_INT_MAX = 2**63 - 1


class CliError(UserError):
    """An error shown to the user as ``sushitui: error: ...`` with exit code ``code``.

    ``more``: further lines printed under it (e.g. a query and a ^ under the bad
    position); each is one line, so text inside them cannot start a line of its own."""

    def __init__(self, message: str, code: int = 1, more: "list[str] | tuple[str, ...]" = ()):
        super().__init__(message)
        self.code = code
        self.more = list(more)


class IntArg:
    """The ``type=`` of every integer option: a whole number in ``[low, high]``.

    argparse turns the refusal into ``argument --limit: ...`` and exit code 2, like any
    other usage error; the message names the allowed range."""

    def __init__(self, low: int = 0, high: int = SQLITE_INT_MAX, why: str = ""):
        self.low, self.high, self.why = low, high, why

    @property
    def allowed(self) -> str:
        if self.high == SQLITE_INT_MAX:
            return f"a whole number ≥ {self.low} (at most {SQLITE_INT_MAX}, the largest the database stores)"
        return f"a whole number from {self.low} to {self.high}" + (f" ({self.why})" if self.why else "")

    def __call__(self, text: str) -> int:
        import argparse

        value = text.strip()
        shown = value if len(value) <= 40 else value[:40] + "…"
        digits = value.lstrip("+-")
        if not digits.isascii() or not digits.isdigit() or len(value) - len(digits) > 1:
            raise argparse.ArgumentTypeError(f"{shown!r} is not a whole number; give {self.allowed}")
        # more digits than any 64-bit number: out of range without building a huge int
        # (int() refuses over 4,300 digits with a ValueError of its own)
        n = int(value) if len(digits) <= 25 else (-1 if value.startswith("-") else 1) * 10**25
        if not self.low <= n <= self.high:
            raise argparse.ArgumentTypeError(f"{shown} is out of range; give {self.allowed}")
        return n

    def __repr__(self) -> str:  # argparse shows the type's name in some messages
        return "integer"


def int_list(option: str, text: str, low: int = 1, high: int = SQLITE_INT_MAX) -> list[int]:
    """A comma-separated list of whole numbers (``--items 12,15,40``), each range-checked
    by ``IntArg``; a bad one is a usage error naming ``option``."""
    import argparse

    check = IntArg(low, high)
    values = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            values.append(check(part))
        except argparse.ArgumentTypeError as exc:
            raise CliError(f"{option} takes comma-separated item ids, e.g. 12,15,40: {exc}", 2) from None
    return values


def open_db(args, notice_jobs: bool = True):
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
    if notice_jobs:
        _say_interrupted_jobs()
    return db


def _say_interrupted_jobs() -> None:
    """Every command's start notices jobs whose worker died (kill -9, out of memory, a
    reboot) and says so, once per job."""
    import os

    from sushitui.jobs import JOB_ENV_VAR, take_unannounced_interruptions

    if os.environ.get(JOB_ENV_VAR):  # a worker's log is not where the user looks
        return
    try:
        jobs = take_unannounced_interruptions()
    except Exception as exc:  # a read-only or busy database: the command itself goes on
        if not is_database_error(exc):
            raise
        return
    for j in jobs:
        err(
            f"sushitui: job {j.id} ({j.kind}{' ' + j.dataset if j.dataset else ''}) was interrupted: {j.message}. "
            f"`sushitui jobs retry {j.id}` resumes it"
        )


# The job this process runs as a detached worker (sushitui.jobs.JobWorker), or None: the
# progress bar and the Ctrl-C token report to it (sushitui.cli.jobs_cmd.run_as_job).
_job_worker = None


def set_job_worker(worker) -> None:
    global _job_worker
    _job_worker = worker


def _database_errors() -> tuple[type, ...]:
    import sqlite3

    import peewee

    return (sqlite3.OperationalError, sqlite3.DatabaseError, peewee.OperationalError, peewee.DatabaseError)


def _not_user_errors() -> tuple[type, ...]:
    """Database errors that mean a bug (a constraint or a statement sushitui got wrong),
    not a condition the user can fix: these keep their traceback."""
    import sqlite3

    import peewee

    return (
        sqlite3.IntegrityError,
        sqlite3.ProgrammingError,
        sqlite3.InterfaceError,
        peewee.IntegrityError,
        peewee.ProgrammingError,
        peewee.InterfaceError,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during (peewee's failed
    ROLLBACK after SQLITE_FULL hides the 'database or disk is full' behind it)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 20:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def is_database_error(exc: BaseException) -> bool:
    """True for SQLite failing under a command for reasons outside sushitui: the disk
    full, an I/O error, the database locked past the busy timeout, a damaged or
    read-only file."""
    chain = _chain(exc)
    return any(isinstance(e, _database_errors()) for e in chain) and not any(
        isinstance(e, _not_user_errors()) for e in chain
    )


# (what SQLite says, what it means and what to do); {path} is the database file
_DATABASE_ADVICE = (
    (
        "database or disk is full",
        "the database {path} cannot grow: the disk (or your quota) is full. "
        "Free some space, then run the command again",
    ),
    (
        "disk i/o error",
        "the database {path} could not be read or written (disk I/O error): check that its disk is "
        "mounted, healthy and not full, then run the command again",
    ),
    (
        "locked",
        "the database {path} stayed locked by another program (another sushitui, or a tool that holds it "
        "open) for longer than sushitui waits; run the command again when that program has finished",
    ),
    (
        "busy",
        "the database {path} stayed locked by another program (another sushitui, or a tool that holds it "
        "open) for longer than sushitui waits; run the command again when that program has finished",
    ),
    ("readonly", "the database {path} is read-only: make it (and its folder) writable, or pass --db with another path"),
    (
        "malformed",
        "the database {path} is damaged ({reason}): restore a backup, or pass --db with a new path and "
        "add the datasets again (the files on disk hold every caption)",
    ),
    ("not a database", "{path} is not a sushitui database ({reason}): pass --db with another path"),
    (
        "unable to open",
        "the database {path} cannot be opened ({reason}): check that its folder exists and is "
        "writable, or pass --db with another path",
    ),
)


def database_error_message(exc: BaseException, args=None) -> str:
    """What a database failure means for the user and what to do, naming the file."""
    from sushitui.config import resolve_db_path

    try:
        path = str(resolve_db_path(getattr(args, "db", None)))
    except Exception:  # noqa: BLE001 - the error message must not fail in turn, whatever went wrong
        log.debug("resolving the database path for a message failed", exc_info=True)
        path = "file"
    reasons = [str(e) for e in _chain(exc) if isinstance(e, _database_errors())]
    for needle, advice in _DATABASE_ADVICE:
        for reason in reasons:
            if needle in reason.lower():
                return advice.format(path=path, reason=reason)
    return f"the database {path} failed: {reasons[0] if reasons else exc}; run the command again, or see --db"


@contextmanager
def on_database_error(args, hint: "Callable[[], str | None] | str | None" = None) -> Iterator[None]:
    """A database failure inside becomes a ``CliError`` with the general advice plus
    ``hint`` (what the command had already done and how to finish it)."""
    try:
        yield
    except Exception as exc:
        if not is_database_error(exc):
            raise
        extra = None
        try:
            extra = hint() if callable(hint) else hint
        except Exception:  # noqa: BLE001 - the hint reads the database that just failed: best effort
            log.debug("the hint for a database error failed", exc_info=True)
            extra = None
        message = database_error_message(exc, args)
        raise CliError(f"{message}. {extra}" if extra else message, 1) from exc


def emit_json(obj: Any) -> None:
    """One JSON document (or one line of JSON Lines) on stdout. Control characters
    (C0, C1, DEL), bidi overrides and undecodable file-name bytes are ``\\uXXXX``
    escapes, so the document can be shown on a terminal and still parses back to the
    exact strings."""
    sys.stdout.write(json_escape_controls(json.dumps(obj, ensure_ascii=False, default=str)) + "\n")


_raw_output = False


def set_raw_output(raw: bool) -> None:
    """``--raw``: ``out`` prints text from files unchanged (for scripts that want the
    bytes); set once per command by ``main``."""
    global _raw_output
    _raw_output = bool(raw)
    if raw:
        try:  # a file name that is not UTF-8 goes out as its own bytes
            sys.stdout.reconfigure(errors="surrogateescape")
        except (AttributeError, ValueError):
            pass


def out(text: str = "") -> None:
    """One line of human output. Text from files is always neutralised, terminal or
    pipe (``sushitui items NAME | less`` shows it too): control characters, bidi
    overrides and newlines become visible escapes, so a file name cannot fake a line.
    A caller that prints several lines calls ``out`` once per line. ``--raw`` prints
    the text as it is."""
    sys.stdout.write((text if _raw_output else for_terminal(text)) + "\n")


def reply(args, data: Any, text: "str | Callable[[], None]") -> None:
    """The result of a command: ``data`` as JSON with ``--json``, else ``text`` (a line,
    or a function that prints the human form)."""
    if args.json:
        emit_json(data)
    elif callable(text):
        text()
    else:
        out(text)


def ask(prompt: str) -> str:
    """``input`` with the prompt neutralised (it names datasets, groups, runs)."""
    return input(for_terminal(prompt))


def ask_stderr(prompt: str) -> None:
    """A question on stderr (stdout stays the command's output), neutralised."""
    sys.stderr.write(for_terminal(prompt))
    sys.stderr.flush()


_last_error = ""


def err(text: str) -> None:
    """One line on stderr, always neutralised (``--raw`` is for stdout only)."""
    global _last_error
    _last_error = text
    sys.stderr.write(for_terminal(text) + "\n")


def last_error() -> str:
    """The last line ``err`` printed (a job records it as why the job failed)."""
    return _last_error


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
        if _job_worker is not None:
            _job_worker.progress(ev)
            self._last_event = ev
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
        if _job_worker is not None and getattr(self, "_last_event", None) is not None:
            _job_worker.progress(self._last_event, force=True)
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._drawn = False


@contextmanager
def cancel_on_sigint() -> Iterator[CancelToken]:
    """First Ctrl-C asks the operation to stop (it commits what it has); a second one
    interrupts at once. SIGTERM (``kill``, a service manager stopping sushitui) does the
    same: the work done so far is kept and the command exits 130, as for Ctrl-C."""
    token = CancelToken()
    if _job_worker is not None:  # `sushitui jobs cancel` from another process trips it too
        _job_worker.watch(token)
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def restore() -> None:
        for s in signums:
            signal.signal(s, previous[s])

    def handler(signum, frame):
        if token.cancelled:
            restore()
            raise KeyboardInterrupt
        token.cancel()
        what = "Ctrl-C" if signum == signal.SIGINT else "terminate signal"
        sys.stderr.write(f"\n{what}: cancelling… (press Ctrl-C again to abort at once)\n")

    try:
        for s in signums:
            signal.signal(s, handler)
    except ValueError:  # not the main thread
        yield token
        return
    try:
        yield token
    finally:
        restore()


@contextmanager
def progress_and_cancel(label: str) -> Iterator[tuple[TerminalProgress, CancelToken]]:
    """A progress bar and a Ctrl-C token (``cancel_on_sigint``) for one long piece of
    work; the bar is closed after it, however it ends."""
    bar = TerminalProgress(label)
    try:
        with cancel_on_sigint() as token:
            yield bar, token
    finally:
        bar.close()


LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "warning"
LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d %(threadName)s] %(name)s: %(message)s"
LOG_MAX_BYTES = 2_000_000  # then rotated once: the log never grows without bound
_log_handler: logging.Handler | None = None


def setup_logging(level: str = DEFAULT_LOG_LEVEL) -> "str | None":
    """Send sushitui's log records at ``level`` and above to the log file
    (``config.log_path()``; the core logs with ``logging.getLogger(__name__)`` and never
    prints). Returns the file's path, or None when it cannot be written (then nothing is
    logged to a file and errors keep their traceback on stderr). Called once per
    ``main``; a second call replaces the first one's handler."""
    from logging.handlers import RotatingFileHandler

    from sushitui.config import log_path

    global _log_handler
    logger = logging.getLogger("sushitui")
    if _log_handler is not None:
        logger.removeHandler(_log_handler)
        _log_handler.close()
        _log_handler = None
    logger.setLevel(getattr(logging, level.upper(), logging.WARNING))
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    # delay: a command that logs nothing creates no file, so ask now whether it could
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        return None
    handler = RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=1, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    _log_handler = handler
    return str(path)


def add_common(parser, *, json_flag: bool = True) -> None:
    """``--db`` and ``--log-level`` (also accepted after the command), ``--json`` and
    ``--raw`` for a subcommand.

    ``default=SUPPRESS`` so that a ``--db`` given before the command is not reset.
    """
    import argparse

    parser.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help="database file")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help=f"how much goes to the log file (default: {DEFAULT_LOG_LEVEL})",
    )
    if json_flag:
        parser.add_argument(
            "--json", action="store_true", help="machine-readable JSON output (control characters as \\uXXXX escapes)"
        )
        parser.add_argument(
            "--raw",
            action="store_true",
            help="print file names and text from files exactly as they are, control characters "
            "and all (default: shown as visible escapes such as \\x1b)",
        )
