"""The ``sushitui`` command: argument parsing and printing over the core.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its parsers and sets ``func`` (called with the parsed args, returns an exit
code). Heavy imports (textual, onnxruntime, numpy) happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys

from sushitui import __version__
from sushitui.cli.common import CliError, err

COMMAND_MODULES = [
    "sushitui.cli.dataset_cmd",
    "sushitui.cli.tags_cmd",
    "sushitui.cli.dict_cmd",
    "sushitui.cli.models_cmd",
    "sushitui.cli.export_cmd",
    "sushitui.cli.run_cmd",
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
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from sushitui.cli.app_cmd import run_app

            return run_app(args)
        return int(args.func(args) or 0)
    except CliError as exc:
        err(f"sushitui: error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        err("sushitui: interrupted")
        return 130
    except BrokenPipeError:
        return 0
