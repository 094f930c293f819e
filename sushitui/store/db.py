"""The one place that opens the database: pragmas, schema migrations, clear errors.

Every process (TUI, CLI, a training loop) may write at the same time, so the database
runs in WAL mode with a long busy timeout, and writers take the write lock up front
(``write_transaction``) so that a reader upgrading to a writer cannot dead-lock into an
immediate "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from peewee import Database, DatabaseError, OperationalError, SqliteDatabase

# migrate() reads these two names from this module (tests replace them here)
from sushitui.errors import UserError
from sushitui.store.migrations import LATEST_VERSION, MIGRATIONS
from sushitui.store.models import database_proxy

BUSY_TIMEOUT_S = 30.0

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "cache_size": -65536,  # 64 MiB page cache
    "temp_store": "memory",
}


class StoreError(UserError):
    """A database problem the user can act on; the message says what to do."""


class SchemaTooNewError(StoreError):
    pass


def _check_file(path: Path, read_header: bool = True) -> None:
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a directory, not a database file. Pass --db with a file path.")
        if not os.access(path, os.R_OK):
            raise StoreError(
                f"{path}: the database file is not readable (permission denied). Fix its permissions or pass --db."
            )
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
            raise StoreError(
                f"{path}: the database (or its folder, which needs room for the -wal/-shm files) is read-only. "
                "Make it writable or pass --db with a writable location."
            )
        head = b""
        if read_header:
            with open(path, "rb") as fh:
                head = fh.read(16)
        if head and head != b"SQLite format 3\x00":
            raise StoreError(
                f"{path} is not a SQLite database (it starts with {head[:8]!r}). "
                "Move it away or pass --db with another path; sushitui never overwrites it."
            )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder {path.parent} for the database: {exc.strerror}. Pass --db."
            ) from exc
        if not os.access(path.parent, os.W_OK):
            raise StoreError(f"cannot create the database in {path.parent}: the folder is read-only. Pass --db.")


def schema_version(db: Database) -> int:
    if is_postgres(db):
        cur = db.execute_sql("SELECT to_regclass('schema_migrations')")
        if cur.fetchone()[0] is None:
            return 0
    elif (
        db.execute_sql("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_migrations'").fetchone()
        is None
    ):
        return 0
    row = db.execute_sql("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _backup(path: Path, version: int) -> Path:
    target = path.with_name(f"{path.name}.v{version}-backup-{time.strftime('%Y%m%d-%H%M%S')}")
    src = sqlite3.connect(str(path))
    try:
        dst = sqlite3.connect(str(target))
        with dst:
            src.backup(dst)
        dst.close()
    finally:
        src.close()
    return target


def migrate(db: Database, path: Path | None = None) -> list[int]:
    """Apply pending migrations; returns the versions applied."""
    if is_postgres(db):
        return _migrate_postgres(db)
    current = schema_version(db)
    if current > LATEST_VERSION:
        raise SchemaTooNewError(
            f"{path or 'the database'} has schema version {current}, but this sushitui knows only up to "
            f"{LATEST_VERSION}. Upgrade sushitui (pip install -U sushitui); the database was not changed."
        )
    pending = [m for m in MIGRATIONS if m[0] > current]
    if not pending:
        return []
    if current > 0 and path is not None and path.exists():
        _backup(path, current)
    applied = []
    with db.atomic("IMMEDIATE"):
        db.execute_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for version, name, fn in pending:
            fn(db)
            db.execute_sql(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
            applied.append(version)
    return applied


# any number the processes that migrate one PostgreSQL database agree on
_MIGRATION_LOCK = 0x5355_5348_4954_5549 & 0x7FFF_FFFF_FFFF_FFFF


def _migrate_postgres(db) -> list[int]:
    """migrate() on PostgreSQL: DDL is transactional there, so all pending migrations
    commit together or not at all (no backup file); an advisory lock makes two machines
    starting at once migrate one after the other."""
    applied: list[int] = []
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        current = schema_version(db)
        if current > LATEST_VERSION:
            raise SchemaTooNewError(
                f"{db.url} has schema version {current}, but this sushitui knows only up to "
                f"{LATEST_VERSION}. Upgrade sushitui (pip install -U sushitui); the database was not changed."
            )
        db.execute_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for version, name, fn in [m for m in MIGRATIONS if m[0] > current]:
            fn(db)
            db.execute_sql(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (version, name, time.time()),
            )
            applied.append(version)
    return applied


_URL_SCHEMES = ("postgresql:", "postgres:")


def database_url(path: str | os.PathLike) -> str | None:
    """The PostgreSQL URL ``path`` names, or None for a SQLite file. A URL that went
    through ``Path`` (``postgresql:/user@host/db``, one slash) is read as the URL."""
    text = os.fspath(path)
    for scheme in _URL_SCHEMES:
        at = text.find(scheme)
        if at == 0 or (at > 0 and text[at - 1] == "/"):
            rest = text[at + len(scheme) :].lstrip("/")
            return f"postgresql://{rest}"
    return None


def is_postgres(db: object) -> bool:
    from peewee import PostgresqlDatabase

    return isinstance(db, PostgresqlDatabase)


def _open_postgres(url: str, migrate_schema: bool):
    try:
        import psycopg  # noqa: F401

        from sushitui.store.postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"{url}: PostgreSQL needs psycopg 3. Install it with: pip install 'sushitui[postgres]'"
        ) from exc
    db = PostgresStore(url)
    try:
        db.connect(reuse_if_open=True)
        database_proxy.initialize(db)
        if migrate_schema:
            migrate(db)
    except SchemaTooNewError:
        db.close()
        raise
    except (DatabaseError, OperationalError) as exc:
        db.close()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"{_safe_url(url)}: cannot open the database: {reason}. Check that the server runs, the database "
            "exists (createdb) and the user may connect, or pass --db with another URL."
        ) from exc
    return db


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    import re

    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


_OPENED_IN_THIS_PROCESS: set[str] = set()


def open_database(path: str | os.PathLike, *, migrate_schema: bool = True) -> SqliteDatabase:
    """Open (creating if needed) the database at ``path`` and bind the models to it.

    ``path`` may be a PostgreSQL URL (``postgresql://user@host/dbname``): the database
    must exist; its schema is created or migrated like a file's."""
    url = database_url(path)
    if url is not None:
        return _open_postgres(url, migrate_schema)
    path = Path(path)
    real = os.path.realpath(path)
    # Reading the header opens and closes the file, and closing any descriptor of a file
    # drops every POSIX lock this process holds on it (SQLite's connections' too): another
    # process closing its last connection would then delete the WAL under ours, and what
    # we write next is lost. The header was checked when this process first opened it.
    _check_file(path, read_header=real not in _OPENED_IN_THIS_PROCESS)
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    try:
        db.connect(reuse_if_open=True)
        database_proxy.initialize(db)
        _OPENED_IN_THIS_PROCESS.add(real)
        if migrate_schema:
            migrate(db, path)
            # an index a crashed bulk load dropped (see deferred_index) is rebuilt here
            from sushitui.store.deferred_index import restore_abandoned

            restore_abandoned(db)
    except SchemaTooNewError:
        db.close()
        raise
    except (DatabaseError, OperationalError, sqlite3.DatabaseError) as exc:
        db.close()
        raise StoreError(f"{path}: cannot open the database: {exc}. Pass --db with another path.") from exc
    return db


@contextmanager
def write_transaction(db: SqliteDatabase | None = None) -> Iterator[None]:
    """A transaction that takes the write lock at once (BEGIN IMMEDIATE).

    With deferred transactions, two connections that both read and then write can make
    SQLite return SQLITE_BUSY without waiting; IMMEDIATE makes writers queue on the busy
    timeout instead.
    """
    db = db or database_proxy.obj
    with db.atomic("IMMEDIATE"):
        yield


def current_database() -> SqliteDatabase:
    db = database_proxy.obj
    if db is None:
        raise StoreError("no database is open (call sushitui.store.open_database first)")
    return db
