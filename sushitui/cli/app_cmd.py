"""``sushitui`` with no command: start the terminal app."""

from __future__ import annotations

from sushitui.cli.common import CliError


def run_app(args) -> int:
    from sushitui.config import resolve_db_path

    try:
        from sushitui.tui.app import run
    except ImportError as exc:  # pragma: no cover - only when the TUI is not installed
        raise CliError(f"the terminal app cannot start: {exc}") from exc
    return run(resolve_db_path(args.db), demo=args.demo)
