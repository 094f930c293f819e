"""A real PostgreSQL 15 server for the tests, started by the tests themselves.

``pg_config --bindir`` finds ``initdb``/``pg_ctl``. ``initdb`` refuses to run as root, so
when the tests run as root the server runs as the ``postgres`` user (``runuser``), with
its data and socket folders in a temporary folder handed to that user. It listens on
127.0.0.1 on a free port with trust authentication and is stopped when the session ends.

``pg_url`` gives each test its own database, copied from a migrated template (a copy is
~10x faster than running every migration). Where the binaries are missing, the
postgres variants skip and say why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

TEMPLATE = "sushitui_template"


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
    path = Path(out)
    return path if (path / "initdb").exists() and (path / "pg_ctl").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root needs runuser to start PostgreSQL as the postgres user")
    return [runuser, "-u", "postgres", "--"]


class PgServer:
    def __init__(self, bindir: Path, base: Path):
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sockets = base / "sock"
        self.port = _free_port()
        self.prefix = _as_server_user()
        self.log = base / "server.log"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.prefix, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.sockets.mkdir(parents=True)
        if self.prefix:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockets, "postgres")
            self.base.chmod(0o755)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off -c full_page_writes=off"
        opts += " -c synchronous_commit=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(sql)


def start_server() -> PgServer:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (pg_config --bindir); install postgresql-15")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'sushitui[postgres]')")
    base = Path(tempfile.mkdtemp(prefix="sushitui-pg-"))
    server = PgServer(bindir, base)
    # also when the session ends without its teardown (an interrupted run): nothing stays running
    atexit.register(server.stop)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def pg_server():
    server = start_server()
    try:
        server.admin(f"CREATE DATABASE {TEMPLATE}")
        from sushitui.store import open_database

        open_database(server.url(TEMPLATE)).close()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, migrated database of its own for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield pg_server.url(name)
    for _ in range(50):
        try:
            pg_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            break
        except Exception:  # noqa: BLE001 - a connection of the test may still be closing
            time.sleep(0.1)


@pytest.fixture(name="db_path", params=["sqlite", "postgres"])
def both_backends_db_path(request, tmp_path):
    """``db_path`` for modules that run on both backends (``from pg_support import
    both_backends_db_path``): a SQLite file path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "sushitui.db"
    return request.getfixturevalue("pg_url")


class _OtherPg:
    """A second client of a PostgreSQL catalogue, used like a sqlite3 connection: ``with
    con:`` commits, ``execute`` takes SQLite's SQL."""

    def __init__(self, url: str):
        import psycopg

        self._con = psycopg.connect(url)
        # a SQLite transaction reads one snapshot; READ COMMITTED would not
        self._con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    def execute(self, sql: str, params=None):
        from sushitui.store.postgres import WRITE_LOCK, translate

        word = sql.strip().upper()
        if word in ("BEGIN", "BEGIN DEFERRED"):  # psycopg opens the transaction itself
            return None
        if word in ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"):  # a writer, as sushitui's own take it
            return self._con.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        if word == "COMMIT":
            return self._con.commit()
        sql, params = translate(sql, params)
        return self._con.execute(sql, params or None)

    def commit(self) -> None:
        self._con.commit()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self._con.commit()
        else:
            self._con.rollback()

    def close(self) -> None:
        self._con.close()


def other_connection(db_path, timeout: float = 30.0):
    """Another process's view of the catalogue at ``db_path`` (a file or a URL): a plain
    sqlite3 connection, or a psycopg one that takes the same SQL."""
    from sushitui.store.db import database_url

    url = database_url(db_path)
    if url is None:
        import sqlite3

        return sqlite3.connect(db_path, timeout=timeout, check_same_thread=False)
    return _OtherPg(url)
