"""One error model (issue 15 §3): a UserError says what to do and reaches the user as one
line (exit 1) or a notification; anything else goes to the log file with its traceback,
and the user is told where that file is."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sushitui.cli import main
from sushitui.config import log_path
from sushitui.errors import UserError


@pytest.fixture(autouse=True)
def _no_handler_left_behind():
    yield
    from sushitui.cli import common

    if common._log_handler is not None:  # the next test's main() would replace it anyway
        logging.getLogger("sushitui").removeHandler(common._log_handler)
        common._log_handler.close()
        common._log_handler = None


def test_every_domain_error_is_a_user_error_and_keeps_its_old_base():
    from sushitui.dataset.registry import DatasetNotFound
    from sushitui.export.options import ExportError
    from sushitui.store.db import StoreError
    from sushitui.tagger.autotag import AutotagError
    from sushitui.tags.query import QueryError
    from sushitui.training.runs import TrainingError

    for cls in (DatasetNotFound, ExportError, StoreError, AutotagError, QueryError, TrainingError):
        assert issubclass(cls, UserError), cls
    assert issubclass(DatasetNotFound, ValueError) and issubclass(QueryError, ValueError)


def test_a_user_error_from_the_core_is_one_line_and_exit_1(db_path, capsys):
    # `autotag` lets the core's DatasetNotFound through to main: no command-level handler
    code = main(["--db", str(db_path), "autotag", "nope"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == (
        "sushitui: error: no dataset named 'nope'; `sushitui dataset list` shows the registered ones\n"
    )


def test_a_message_of_several_lines_stays_one_line(db_path, capsys, monkeypatch):
    def refuse():
        raise UserError("the file is bad\nfix line 3")

    monkeypatch.setattr("sushitui.dataset.registry.list_datasets", refuse)
    assert main(["--db", str(db_path), "dataset", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the file is bad" in err and "fix line 3" in err and "Traceback" not in err


def test_an_unexpected_error_goes_to_the_log_with_its_traceback(db_path, capsys, monkeypatch):
    def broken():
        raise RuntimeError("an index that cannot happen")

    monkeypatch.setattr("sushitui.dataset.registry.list_datasets", broken)
    assert main(["--db", str(db_path), "dataset", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "unexpected error: RuntimeError: an index that cannot happen" in err
    assert str(log_path()) in err  # where to look
    text = log_path().read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: an index that cannot happen" in text
    assert "in broken" in text  # the frame that raised


def test_log_level_debug_writes_debug_lines(db_path, capsys):
    assert main(["--db", str(db_path), "dataset", "list"]) == 0
    assert not log_path().exists() or " DEBUG " not in log_path().read_text()  # default: warnings and up
    assert main(["--log-level", "debug", "--db", str(db_path), "dataset", "list"]) == 0
    assert " DEBUG " in log_path().read_text() and "dataset list" in log_path().read_text()
    # also after the command, like --db
    log_path().unlink()
    assert main(["--db", str(db_path), "dataset", "list", "--log-level", "debug"]) == 0
    assert " DEBUG " in log_path().read_text()


def test_help_names_the_log_file(capsys):
    assert main(["--help"]) == 0
    # argparse wraps long lines, also at a hyphen inside the path (pytest-xdist's
    # .../popen-gw0/...): compare with all white space removed
    out = "".join(capsys.readouterr().out.split())
    assert "Logfile:" + "".join(str(log_path()).split()) in out and "--log-level" in out


def _run_app(db_path, job):
    from sushitui.tui.app import SushiApp

    async def go():
        app = SushiApp(db_path, first_start=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.run_worker(job, thread=True, exit_on_error=False, description="loading the page")
            for _ in range(200):
                await pilot.pause(0.02)
                if app._notifications:
                    break
            return [str(n.message) for n in app._notifications], app.is_running

    return asyncio.run(go())


def test_a_failing_worker_with_a_user_error_shows_its_message(db_path):
    from sushitui.dataset.registry import DatasetNotFound

    def job():
        raise DatasetNotFound("no dataset named 'x'; `sushitui dataset list` shows the registered ones")

    messages, running = _run_app(db_path, job)
    assert running  # the app goes on
    assert messages == ["no dataset named 'x'; `sushitui dataset list` shows the registered ones"]


def test_a_failing_worker_with_a_bug_is_logged_and_names_the_log(db_path):
    from sushitui.cli.common import setup_logging

    setup_logging("warning")

    def job():
        raise KeyError("row")

    messages, running = _run_app(db_path, job)
    assert running and len(messages) == 1
    assert "loading the page failed" in messages[0] and str(log_path()) in messages[0]
    text = log_path().read_text()
    assert "worker loading the page failed" in text and "Traceback" in text and "KeyError: 'row'" in text
