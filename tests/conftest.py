"""Fixtures shared by every test: a fresh database, the shared real-world test data."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
from pg_support import pg_server, pg_url  # noqa: F401  (PostgreSQL for the tests that run on both backends)

REPO = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = Path(os.environ.get("SUSHITUI_TESTDATA", REPO.parent / "shared" / "testdata"))


def _quicker_pilot_idle_checks() -> None:
    """Pilot's ``press`` and ``pause`` wait for the app to go idle: they sleep a slice,
    and again while the process used more than 5 % of it. Textual's slice is 20 ms and
    a key press waits at least two, so typing a word into a TUI test slept ~0.3 s: a
    quarter of the TUI tests' time (issue 15 §6, the quick run). A 10 ms slice keeps
    the same idle test, and a key's two slices still span one screen refresh (1/60 s),
    so what a key changed is laid out when ``press`` returns, as before; what a test
    waits *for* is a condition (``tui_support.settle``), not this sleep."""
    try:
        from textual import _wait
    except ImportError:  # pragma: no cover - textual is a dependency
        return
    _wait.SLEEP_GRANULARITY = 0.01
    _wait.SLEEP_IDLE = _wait.SLEEP_GRANULARITY / 20


_quicker_pilot_idle_checks()


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """No test touches the real user's data directory, key map or Hugging Face cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SUSHITUI_DB", raising=False)


@pytest.fixture(autouse=True)
def _restore_process_state():
    """What an in-process command (tests/cli_support.run_cli, ``cli.main``) changes for
    the whole process is put back after each test: the SIGINT/SIGTERM handlers and the
    ``sushitui`` logger's level and handlers. A leaked ignored SIGINT was inherited by a
    later test's child process, a leaked SIGTERM handler kept a killed pytest alive."""
    signals = (signal.SIGINT, signal.SIGTERM)
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in signals} if main_thread else {}
    logger = logging.getLogger("sushitui")
    level, log_handlers = logger.level, list(logger.handlers)
    yield
    for s, handler in handlers.items():
        if handler is not None and signal.getsignal(s) is not handler:
            signal.signal(s, handler)
    for added in [h for h in logger.handlers if h not in log_handlers]:
        logger.removeHandler(added)
        added.close()
    for lost in [h for h in log_handlers if h not in logger.handlers]:
        logger.addHandler(lost)
    logger.setLevel(level)


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "sushitui.db"


@pytest.fixture
def db(db_path):
    from sushitui.store import open_database

    database = open_database(db_path)
    yield database
    database.close()


@pytest.fixture(scope="session")
def _started_database_file(tmp_path_factory) -> Path:
    """A SQLite database as a first start leaves it (schema, the ~13,000 shipped group
    tags), made once per test process by the product's own code."""
    from sushitui.store import db as store_db
    from sushitui.store import open_database
    from sushitui.tags.groups import ensure_default_groups

    home = tmp_path_factory.mktemp("started-home")
    path = tmp_path_factory.mktemp("started") / "sushitui.db"
    bound = store_db.database_proxy.obj  # a test's open database stays the models' one
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(home / "data"))
        mp.setenv("XDG_CONFIG_HOME", str(home / "config"))
        database = open_database(path)
        try:
            assert ensure_default_groups() is not None
        finally:
            database.close()
    if bound is not None:
        store_db.database_proxy.initialize(bound)
    return path


@pytest.fixture
def started_database(_started_database_file):
    """``started_database(path)`` puts a copy of a started database at ``path`` and
    returns it. For tests of commands, not of a first start: every command on a new
    database first imports the shipped tag groups (~0.2 s CPU), which a module of
    command tests would otherwise pay once per test (issue 15 §6, the quick run)."""

    def place(path: Path) -> Path:
        shutil.copyfile(_started_database_file, path)
        return path

    return place


@pytest.fixture
def testdata() -> Path:
    """``../shared/testdata``; tests using it skip with a reason when it is absent."""
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"real-world test data not found at {SHARED_TESTDATA} (../shared is absent in this checkout)")
    return SHARED_TESTDATA


@pytest.fixture
def cancel_after_write(monkeypatch):
    """``cancel_after_write(batch_items)`` → a CancelToken that a scan trips right after
    its first write transaction, with batches of ``batch_items`` items: a scan stopped
    part-way, deterministically."""
    from sushitui.dataset import scanner
    from sushitui.progress import CancelToken

    def arm(batch_items: int):
        monkeypatch.setattr(scanner, "WRITE_BATCH", batch_items)
        monkeypatch.setattr(scanner, "BATCH", batch_items)
        token = CancelToken()
        real_write = scanner.Writer.write

        def write_then_cancel(self, batches):
            real_write(self, batches)
            token.cancel()

        monkeypatch.setattr(scanner.Writer, "write", write_then_cancel)
        return token

    return arm


PG_FIXTURES = {"pg_server", "pg_url", "pg_db", "pg_template"}


def pytest_itemcollected(item):
    """Tests on the PostgreSQL backend belong to the full run (CI): each starts from a
    fresh database (~1 s), which the quick run (``-m "not slow"``) cannot afford."""
    callspec = getattr(item, "callspec", None)
    on_pg = callspec is not None and callspec.params.get("db_path") == "postgres"
    if on_pg or PG_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.slow)


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need onnxruntime with CUDA really active: they run only when ``-m``
    names them (``python -m pytest -m gpu``); every other run deselects them, so CI on
    CPU and ``-m "not slow"`` never see them (deselected, not skipped)."""
    if "gpu" in (config.option.markexpr or ""):
        return
    keep, gpu = [], []
    for item in items:
        (gpu if item.get_closest_marker("gpu") is not None else keep).append(item)
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = keep
