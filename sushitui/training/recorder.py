"""Recording usage from a training loop (TR-2) and sampling its epochs (TR-3).

    import sushitui.training as training

    with training.open_run("my-lora") as run:
        for epoch in range(1, 11):
            order = run.sample_epoch(epoch, sampler="min-usage", seed=42)
            for step, batch in enumerate(chunks(order, 4)):
                train_step(batch)                                  # your trainer
                run.record([it.id for it in batch], epoch, step)

``record`` only appends to an in-memory buffer (aggregated per item), so it costs the
trainer almost nothing. The buffer is written in one transaction when it holds
``flush_every`` events, when ``flush_seconds`` have passed, on ``flush()``/``close()``,
on leaving the ``with`` block and at interpreter exit. A crash of the trainer therefore
loses at most the events since the last flush; every flush is atomic.

A flush updates the run's per-item usage and the per-item totals over all runs with
UPSERTs of just the items in the buffer: nothing rescans the history.
"""

from __future__ import annotations

import atexit
import functools
import logging
import operator
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee
from peewee import DatabaseError, IntegrityError, OperationalError

from sushitui.store import TrainingRun, write_transaction
from sushitui.store.models import database_proxy
from sushitui.training.pool import Pool, SampleItem, history_counts, load_pool
from sushitui.training.runs import TrainingError, get_run, set_status

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    from peewee import SqliteDatabase

FLUSH_EVERY = 100_000  # events; a flush costs per distinct item, so bigger batches are cheaper
FLUSH_SECONDS = 5.0
BUSY_RETRIES = 8
# a Run dropped without close() is written by a thread of its own; garbage collection
# waits this long for it (the write goes on after, should this thread hold the lock)
DROPPED_FLUSH_WAIT_S = 5.0


class UnknownItemError(TrainingError, ValueError):
    pass


class RecordingWarning(UserWarning):
    """An automatic flush failed; the events stay buffered and are retried."""


RETRY_AFTER_FAILURE_S = 30.0


_DELTA_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS sushitui_usage_delta ("
    "item_id INTEGER PRIMARY KEY, n INTEGER NOT NULL, first_epoch INTEGER, first_step INTEGER, "
    "last_epoch INTEGER, last_step INTEGER)"
)
# Per-item totals first: they need the run's count *before* this flush (c) to add
# (c+d)^2 - c^2 = 2cd + d^2 to the sum of squares and to count a new participation.
_UPSERT_STATS = (
    "INSERT INTO item_stats (item_id, total_seen, runs_participated, usage_sumsq, first_trained_at, last_trained_at) "
    "SELECT d.item_id, d.n, (u.times_seen IS NULL), 2 * COALESCE(u.times_seen, 0) * d.n + d.n * d.n, ?, ? "
    "FROM sushitui_usage_delta d LEFT JOIN run_item_usage u ON u.run_id = ? AND u.item_id = d.item_id WHERE true "
    "ON CONFLICT (item_id) DO UPDATE SET "
    "total_seen = item_stats.total_seen + excluded.total_seen, "
    "runs_participated = item_stats.runs_participated + excluded.runs_participated, "
    "usage_sumsq = item_stats.usage_sumsq + excluded.usage_sumsq, "
    "first_trained_at = COALESCE(item_stats.first_trained_at, excluded.first_trained_at), "
    "last_trained_at = excluded.last_trained_at"
)
_UPSERT_USAGE = (
    "INSERT INTO run_item_usage (run_id, item_id, times_seen, first_epoch, first_step, last_epoch, last_step) "
    "SELECT ?, item_id, n, first_epoch, first_step, last_epoch, last_step FROM sushitui_usage_delta WHERE true "
    "ON CONFLICT (run_id, item_id) DO UPDATE SET "
    "times_seen = run_item_usage.times_seen + excluded.times_seen, "
    "first_epoch = COALESCE(run_item_usage.first_epoch, excluded.first_epoch), "
    "first_step = COALESCE(run_item_usage.first_step, excluded.first_step), "
    "last_epoch = excluded.last_epoch, last_step = excluded.last_step"
)
_UPDATE_RUN = (
    "UPDATE training_run SET samples_seen = samples_seen + ?, "
    "epochs_done = MAX(epochs_done, ?), steps_done = MAX(steps_done, ?), "
    "status = CASE WHEN status = 'pending' THEN 'running' ELSE status END, "
    "started_at = COALESCE(started_at, ?) WHERE id = ?"
)


def _is_busy(exc: Exception) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Run:
    """A training run opened for recording; see the module docstring."""

    def __init__(
        self,
        db: "SqliteDatabase",
        run: TrainingRun,
        *,
        flush_every: int = FLUSH_EVERY,
        flush_seconds: float = FLUSH_SECONDS,
        owns_db: bool = False,
    ):
        self.db = db
        self.row = run
        self.flush_every = max(1, int(flush_every))
        self.flush_seconds = float(flush_seconds)
        self._owns_db = owns_db
        self._buffer: dict[int, list[int]] = {}  # item id -> [n, first_epoch, first_step, last_epoch, last_step]
        self._buffered = 0
        self._max_epoch = 0
        self._max_step = 0
        self._first_event_at: float | None = None
        self._last_flush = time.monotonic()
        self._pool: Pool | None = None
        self._items_arr: np.ndarray | None = None
        self._lock = threading.RLock()  # record() may be called from a trainer's helper threads
        # called with the database inside each flush's transaction: progress markers
        # (e.g. how far a JSONL file was read) commit atomically with the usage
        self.flush_hooks: list[Callable[["SqliteDatabase"], None]] = []
        self._planners: dict[tuple, Any] = {}
        self._history: dict[str, "np.ndarray"] = {}
        self._known_ids: frozenset[int] | None = None
        self.flushed_events = 0  # events written by this object
        self.dropped_events = 0  # events of items deleted from the index before a flush
        self.last_error: Exception | None = None
        self.closed = False
        self._retry_at = 0.0  # after a failed automatic flush, not before this (monotonic)
        self._warned = False
        # a weak reference: a Run dropped without close() is flushed by __del__ instead
        self._atexit = functools.partial(_flush_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    # --- identity ------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def pending_events(self) -> int:
        """Events recorded but not yet written."""
        return self._buffered

    # --- items and sampling --------------------------------------------------------

    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = load_pool(self.row)
            self._known_ids = self._pool.all_ids
        return self._pool

    def items(self) -> list[SampleItem]:
        """Every item of the dataset that has an image, in id order."""
        return self.pool().items

    def history(self, history: str = "all") -> "np.ndarray":
        """Times each item was seen before this run (cached: the base of every plan)."""
        counts = self._history.get(history)
        if counts is None:
            counts = self._history[history] = history_counts(self.row, self.pool(), history)
        return counts

    def epoch_positions(
        self, epoch: int, sampler: str = "random", seed: int = 0, history: str = "all", epoch_size: int | None = None
    ) -> "np.ndarray":
        from sushitui.training.samplers import EpochPlanner, canonical_sampler

        key = (canonical_sampler(sampler), int(seed), history, epoch_size)
        planner = self._planners.get(key)
        if planner is None:
            if key[0] == "random":  # a shuffle ignores the history: skip the query
                import numpy as np

                base = np.zeros(len(self.pool().items), dtype=np.int64)
            else:
                base = self.history(history)
            planner = EpochPlanner(base, key[0], seed=key[1], size=epoch_size)
            self._planners[key] = planner
        return planner.order(epoch)

    def sample_epoch(
        self, epoch: int, sampler: str = "random", seed: int = 0, history: str = "all", epoch_size: int | None = None
    ) -> list[SampleItem]:
        """The items of epoch ``epoch`` (from 1) in the sampler's order.

        The plan depends only on the history before this run, the sampler, the seed and
        the epoch size: a restarted trainer gets the same order, and ``run sample`` with
        the same arguments writes the same order to a file.
        """
        return self._item_array()[self.epoch_positions(epoch, sampler, seed, history, epoch_size)].tolist()

    def _item_array(self) -> "np.ndarray":
        # an object array turns an order into records with one fancy-indexing step
        if self._items_arr is None:
            import numpy as np

            items = self.pool().items
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            self._items_arr = arr
        return self._items_arr

    # --- recording -----------------------------------------------------------------

    def record(self, items: Iterable[int | SampleItem], epoch: int, step: int) -> None:
        """Note that the trainer used ``items`` (ids or SampleItems) at ``epoch``/``step``.

        Raises ``UnknownItemError`` (recording nothing of this call) for an id that is
        not an item of the run's dataset.
        """
        if self.closed:
            raise TrainingError(f"run {self.name!r} is closed; open it again to record more")
        try:  # operator.index: ints and numpy integers, not floats or strings
            ids = [it.id if isinstance(it, SampleItem) else operator.index(it) for it in items]
        except TypeError as exc:
            raise UnknownItemError(f"record() takes item ids or SampleItems: {exc}") from None
        with self._lock:
            self._add(ids, int(epoch), int(step))

    def _add(self, ids: list[int], epoch: int, step: int) -> None:
        known = self._known_ids
        if known is None:
            known = self.pool().all_ids
        if not known.issuperset(ids):
            bad = sorted({i for i in ids if i not in known})[:5]
            raise UnknownItemError(
                f"item ids {bad} are not items of dataset #{self.row.dataset_id} (run {self.name!r})"
            )
        buf = self._buffer
        for i in ids:
            entry = buf.get(i)
            if entry is None:
                buf[i] = [1, epoch, step, epoch, step]
            else:
                entry[0] += 1
                entry[3] = epoch
                entry[4] = step
        self._buffered += len(ids)
        if epoch > self._max_epoch:
            self._max_epoch = epoch
        if step > self._max_step:
            self._max_step = step
        if self._first_event_at is None:
            self._first_event_at = time.time()
        now = time.monotonic()
        if (
            self._buffered >= self.flush_every or now - self._last_flush >= self.flush_seconds
        ) and now >= self._retry_at:
            try:
                self.flush()
            except (OperationalError, IntegrityError, DatabaseError, TrainingError) as exc:
                # A training run of hours must not die because its bookkeeping could not
                # be written (disk full, a lock held for minutes): keep the events (the
                # buffer holds at most one entry per item), warn once, retry later.
                # flush()/close() called explicitly still raise.
                self._retry_at = now + max(self.flush_seconds, RETRY_AFTER_FAILURE_S)
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        RecordingWarning(
                            f"sushitui: usage of run {self.name!r} could not be written ({exc}); "
                            "it stays buffered and is retried"
                        ),
                        stacklevel=3,
                    )

    def flush(self) -> int:
        """Write the buffered events in one transaction; returns how many were written.

        On "database is locked" it retries with back-off; if it still cannot write, the
        events stay buffered (nothing is lost) and the error is raised.
        """
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> int:
        if not self._buffered:
            self._last_flush = time.monotonic()
            return 0
        delay = 0.05
        busy_tries = 0
        vanished_checked = False
        while True:
            try:
                written = self._write_buffer()
                break
            except OperationalError as exc:
                busy_tries += 1
                if not _is_busy(exc) or busy_tries > BUSY_RETRIES:
                    self.last_error = exc
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except IntegrityError as exc:
                # items removed from the index (e.g. a reindex) since they were recorded:
                # their events cannot be stored; drop them once and write the rest
                if not self._run_exists():
                    self.last_error = TrainingError(
                        f"run {self.name!r} was removed while recording; its usage cannot be stored"
                    )
                    raise self.last_error from exc
                if vanished_checked:
                    self.last_error = exc
                    raise
                vanished_checked = True
                self._drop_vanished_items()
                if not self._buffered:
                    self._buffer = {}
                    return 0
        self._buffer = {}
        self._buffered = 0
        self._first_event_at = None
        self._last_flush = time.monotonic()
        self.flushed_events += written
        self.last_error = None
        self._retry_at = 0.0
        self._warned = False
        return written

    def _write_buffer(self) -> int:
        db = self.db
        rows = [(i, e[0], e[1], e[2], e[3], e[4]) for i, e in self._buffer.items()]
        now = time.time()
        first_at = self._first_event_at or now
        with write_transaction(db):
            db.execute_sql(_DELTA_TABLE)
            db.execute_sql("DELETE FROM sushitui_usage_delta")
            # sqlite3 errors as peewee's, like execute_sql's (the wrapper is not in peewee's stub)
            with peewee.__exception_wrapper__:  # type: ignore[attr-defined]
                db.cursor().executemany("INSERT INTO sushitui_usage_delta VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute_sql(_UPSERT_STATS, (first_at, now, self.id))
            db.execute_sql(_UPSERT_USAGE, (self.id,))
            cur = db.execute_sql(_UPDATE_RUN, (self._buffered, self._max_epoch, self._max_step, first_at, self.id))
            if cur.rowcount == 0:
                raise TrainingError(f"run {self.name!r} was removed while recording; its usage cannot be stored")
            for hook in self.flush_hooks:
                hook(db)
            db.execute_sql("DELETE FROM sushitui_usage_delta")
        return self._buffered

    def _run_exists(self) -> bool:
        # this run's own database: the models' default one may be another by now
        table = TrainingRun._meta.table_name
        return self.db.execute_sql(f"SELECT 1 FROM {table} WHERE id = ?", (self.id,)).fetchone() is not None

    def _drop_vanished_items(self) -> None:
        ids = list(self._buffer)
        alive: set[int] = set()
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            alive.update(r[0] for r in self.db.execute_sql(f"SELECT id FROM item WHERE id IN ({marks})", chunk))
        for i in ids:
            if i not in alive:
                n = self._buffer.pop(i)[0]
                self._buffered -= n
                self.dropped_events += n

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - at exit or garbage collection nobody is left to raise to: the log tells
            log.warning("training run: recording the last usage rows failed", exc_info=True)

    def __del__(self) -> None:
        if not getattr(self, "closed", True) and getattr(self, "_buffered", 0) > 0:
            # Garbage collection runs this wherever this thread happens to be: inside a
            # query (a PostgreSQL connection's lock is then held by this very thread, and a
            # flush on it would wait forever) or a transaction (a nested write would join
            # it, and go with its rollback). A thread of its own has its own connection
            # and queues for the write lock like any writer.
            flusher = threading.Thread(target=self._flush_quietly, name="sushitui-run-flush")
            try:
                flusher.start()
            except RuntimeError:  # the interpreter is shutting down: no new threads, no other work
                self._flush_quietly()
                return
            flusher.join(DROPPED_FLUSH_WAIT_S)

    # --- status and lifetime -------------------------------------------------------

    def set_status(self, status: str) -> None:
        self.flush()
        self.row = set_status(self.row, status)

    def refresh(self) -> TrainingRun:
        self.row = get_run(self.row.id)
        return self.row

    def close(self, status: str | None = None) -> None:
        """Flush, optionally set the final status, and release the database."""
        if self.closed:
            return
        try:
            self.flush()
            if status:
                self.row = set_status(self.row, status)
        finally:
            self.closed = True
            atexit.unregister(self._atexit)
            if self._owns_db and not self.db.is_closed():
                self.db.close()

    def __enter__(self) -> "Run":
        if self.row.status == "pending":
            self.row = set_status(self.row, "running")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = "completed"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "cancelled"
        else:
            status = "failed"
        self.close(status)


def _flush_at_exit(ref: "weakref.ref[Run]") -> None:
    run = ref()
    if run is not None and not run.closed:
        run._flush_quietly()


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def open_run(
    name: str | int,
    db_path: str | os.PathLike | None = None,
    *,
    flush_every: int = FLUSH_EVERY,
    flush_seconds: float = FLUSH_SECONDS,
) -> Run:
    """Open the run ``name`` (create it first with ``sushitui run create``) for recording.

    ``db_path`` defaults to ``--db``'s defaults (``SUSHITUI_DB``, then the XDG data dir);
    a database already open in this process at that path is reused.
    """
    from sushitui.config import resolve_db_path
    from sushitui.store import open_database

    current = database_proxy.obj
    owns = False
    if current is not None and not current.is_closed() and (db_path is None or _same_file(current.database, db_path)):
        db = current
    else:
        db = open_database(resolve_db_path(db_path))
        owns = True
    try:
        row = get_run(name)
    except TrainingError:
        if owns:
            db.close()
        raise
    return Run(db, row, flush_every=flush_every, flush_seconds=flush_seconds, owns_db=owns)
