"""``sushitui`` with no command: start the terminal app (``--demo``: on a sample dataset)."""

from __future__ import annotations

import sys

from sushitui.cli.common import CliError, err, open_db


def run_app(args) -> int:
    from sushitui.config import resolve_db_path

    try:
        from sushitui.tui.app import run
    except ImportError as exc:  # pragma: no cover - only when the TUI is not installed
        raise CliError(f"the terminal app cannot start: {exc}") from exc
    open_dataset = None
    if args.demo:
        from sushitui.dataset.demo import prepare_demo

        db = open_db(args)
        err("sushitui: preparing the demo dataset…")
        try:
            open_dataset = prepare_demo()
        finally:
            db.close()
    code, lost = run(resolve_db_path(args.db), open_dataset=open_dataset)
    for line in lost:  # already neutralised, and several lines each (err() would fold them)
        sys.stderr.write(line + "\n")
    return code
