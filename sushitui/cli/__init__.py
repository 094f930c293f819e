"""The ``sushitui`` command: argument parsing and printing over the core.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its parsers and sets ``func`` (called with the parsed args, returns an exit
code). Heavy imports (textual, onnxruntime, numpy) happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys

from sushitui import __version__
from sushitui.cli.common import CliError, database_error_message, err, is_database_error, set_raw_output

COMMAND_MODULES = [
    "sushitui.cli.dataset_cmd",
    "sushitui.cli.tags_cmd",
    "sushitui.cli.dict_cmd",
    "sushitui.cli.models_cmd",
    "sushitui.cli.export_cmd",
    "sushitui.cli.run_cmd",
    "sushitui.cli.caption_cmd",
    "sushitui.cli.check_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="sushitui",
        description="Prepare image datasets for Stable Diffusion / LoRA training. "
        "Without a command, opens the terminal app.",
    )
    parser.add_argument("--version", action="version", version=f"sushitui {__version__}")
    parser.add_argument("--db", metavar="PATH", help="database file (default: $SUSHITUI_DB or $XDG_DATA_HOME/sushitui/sushitui.db)")
    parser.add_argument("--demo", action="store_true", help="create a small generated sample dataset and open it in the app")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (code 2, message printed) or --help/--version (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    set_raw_output(getattr(args, "raw", False))
    previous_sigterm = _terminate_like_ctrl_c() if args.command is not None else None
    try:
        if args.command is None:
            from sushitui.cli.app_cmd import run_app

            return run_app(args)
        return int(args.func(args) or 0)
    except CliError as exc:
        err(f"sushitui: error: {exc}")
        for line in exc.more:
            err(line)
        return exc.code
    except KeyboardInterrupt:
        err("sushitui: interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        # The database failing under a command (disk full, I/O error, locked past the
        # busy timeout) is the user's to fix, not a bug: say what happened and what to do.
        if not is_database_error(exc):
            raise
        err(f"sushitui: error: {database_error_message(exc, args)}")
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
