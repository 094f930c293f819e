"""The ``sushitui`` command: argument parsing and printing over the core.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its parsers and sets ``func`` (called with the parsed args, returns an exit
code). Heavy imports (textual, onnxruntime, numpy) happen inside the commands.

Errors are handled here, once: a ``UserError`` (any domain error; the message says what
to do) is one line on stderr and exit code 1 (a ``CliError`` carries its own code);
anything else is written with its traceback to the log file and the user is told where.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sushitui import __version__
from sushitui.cli.common import (
    DEFAULT_LOG_LEVEL,
    LOG_LEVELS,
    CliError,
    database_error_message,
    err,
    is_database_error,
    set_raw_output,
    setup_logging,
)
from sushitui.errors import UserError

log = logging.getLogger("sushitui.cli")

COMMAND_MODULES = [
    "sushitui.cli.dataset_cmd",
    "sushitui.cli.tags_cmd",
    "sushitui.cli.dict_cmd",
    "sushitui.cli.models_cmd",
    "sushitui.cli.export_cmd",
    "sushitui.cli.run_cmd",
    "sushitui.cli.caption_cmd",
    "sushitui.cli.check_cmd",
    "sushitui.cli.jobs_cmd",
    "sushitui.cli.marks_cmd",
    "sushitui.cli.db_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from sushitui.config import log_path

    parser = argparse.ArgumentParser(
        prog="sushitui",
        description="Prepare image datasets for Stable Diffusion / LoRA training. "
        "Without a command, opens the terminal app.",
        epilog=f"Log file: {log_path()} (unexpected errors with their details; --log-level sets how much more).",
    )
    parser.add_argument("--version", action="version", version=f"sushitui {__version__}")
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="database file, or postgresql://user@host/dbname (default: $SUSHITUI_DB or $XDG_DATA_HOME/sushitui/sushitui.db)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=DEFAULT_LOG_LEVEL,
        help=f"how much goes to the log file, for the commands and the app (default: {DEFAULT_LOG_LEVEL})",
    )
    parser.add_argument(
        "--demo", action="store_true", help="create a small generated sample dataset and open it in the app"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    from sushitui.cli.jobs_cmd import add_detach_options

    add_detach_options(parser)  # --detach on the long commands
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (code 2, message printed) or --help/--version (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    set_raw_output(getattr(args, "raw", False))
    args.log_file = setup_logging(args.log_level)
    log.debug(
        "sushitui %s (Python %s): %s",
        __version__,
        sys.version.split()[0],
        " ".join(sys.argv[1:] if argv is None else argv) or "(the app)",
    )
    if getattr(args, "detach", False):  # record a job and start its worker instead
        from sushitui.cli.jobs_cmd import cmd_detach

        command_argv = list(sys.argv[1:] if argv is None else argv)
        args.func = lambda a: cmd_detach(a, command_argv)
    import os

    from sushitui.jobs.process import JOB_ENV_VAR

    if os.environ.get(JOB_ENV_VAR) and args.command not in (None, "jobs"):  # this process is a job's worker
        from sushitui.cli.jobs_cmd import run_as_job

        return run_as_job(args, lambda: _run(args))
    return _run(args)


def _run(args) -> int:
    previous_sigterm = _terminate_like_ctrl_c() if args.command is not None else None
    try:
        if args.command is None:
            from sushitui.cli.app_cmd import run_app

            return run_app(args)
        return int(args.func(args) or 0)
    except CliError as exc:
        log.debug("%s: exit %d: %s", args.command, exc.code, exc, exc_info=True)
        err(f"sushitui: error: {exc}")
        for line in exc.more:
            err(line)
        return exc.code
    except UserError as exc:
        # any domain error: its message says what to do; one line, no traceback
        log.debug("%s: %s", args.command, exc, exc_info=True)
        err(f"sushitui: error: {exc}")
        return 1
    except KeyboardInterrupt:
        err("sushitui: interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        # The database failing under a command (disk full, I/O error, locked past the
        # busy timeout) is the user's to fix, not a bug: say what happened and what to do.
        if is_database_error(exc):
            log.warning("%s: the database failed", args.command, exc_info=True)
            err(f"sushitui: error: {database_error_message(exc, args)}")
            return 1
        log_file = getattr(args, "log_file", None)
        if log_file is None:  # nowhere to keep the details: show them
            raise
        log.error("%s: unexpected error", args.command or "the app", exc_info=True)
        err(f"sushitui: unexpected error: {type(exc).__name__}: {exc}")
        err(f"sushitui: the details are in {log_file} (please include them when reporting the problem)")
        return 1
    finally:
        if previous_sigterm is not None:
            import signal

            signal.signal(signal.SIGTERM, previous_sigterm)


def _terminate_like_ctrl_c():
    """SIGTERM ends a command the way Ctrl-C does (KeyboardInterrupt: transactions roll
    back, worker pools shut down, exit code 130) instead of killing it mid-write; long
    operations cancel cleanly through ``cancel_on_sigint``. The app keeps Textual's own
    handling. Returns the handler to put back (None when none was set)."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # main() called from a thread (tests)
        return None
