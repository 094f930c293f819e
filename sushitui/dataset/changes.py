"""A cheap signal that the catalogue changed, for faces that stay open (the TUI browser).

``CatalogueWatch.version()`` returns a number that moves whenever a write is committed
to the catalogue: on SQLite ``PRAGMA data_version``, on PostgreSQL its translation (the
next transaction id, which moves with every committed write on the server). Polling it
costs one tiny query, so an open browser can ask every few seconds and reload only when
someone - another process, another machine, or this one - changed something.

The watch reads through a connection of its own: SQLite's ``data_version`` moves only
for commits made by OTHER connections, and its values from two connections cannot be
compared, so the pooled per-thread connections (a new one per worker thread) would not
do. With a private connection every commit - the face's own included - counts.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sushitui.store import current_database
from sushitui.store.db import BUSY_TIMEOUT_S, is_postgres


class CatalogueWatch:
    """The change counter of the open catalogue; ``version()`` may run in any thread
    (one at a time: calls are serialised), ``close()`` when the face goes away."""

    def __init__(self, db: Any = None) -> None:
        self._db: Any = db if db is not None else current_database()
        self._con: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        if is_postgres(self._db):
            import psycopg

            # autocommit: each poll sees the server as it is now, and no transaction stays open
            return psycopg.connect(self._db.url, autocommit=True)
        # read-only use: no write lock, no WAL checkpoint from this connection
        return sqlite3.connect(self._db.database, timeout=BUSY_TIMEOUT_S, check_same_thread=False)

    def version(self) -> int:
        """A number that differs from the previous call's when a write was committed since."""
        with self._lock:
            if self._con is None:
                self._con = self._connect()
            if is_postgres(self._db):
                from sushitui.store.postgres import DATA_VERSION_SQL

                row = self._con.execute(DATA_VERSION_SQL).fetchone()
            else:
                row = self._con.execute("PRAGMA data_version").fetchone()
            return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
