"""The worker's side of a job: waiting for its turn, writing progress, hearing a cancel
from another process, recording how it ended.

Why not huey (or another task queue): huey's SQLite storage is a queue that a
long-running consumer pops; nothing in it reports progress, serialises by device or
dataset, stops a task that already runs (revocation is checked before a task starts),
or tells that a consumer died mid-task (a popped task is simply gone). Each of those is
what users need here, and a job row plus a self-starting worker gives all of them
without a daemon to keep alive. See ``sushitui.jobs``.

Turn rules (``may_start``): a job waits while an earlier job (lower id) that is queued
or running needs the same GPU (``device``) or writes the same dataset or the dictionary
(``lock_key``). CPU jobs with different keys run side by side. Jobs wait in id order:
an earlier queued job is never overtaken by a later one that conflicts with it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

from sushitui.jobs import process
from sushitui.jobs.table import ACTIVE, get_job, reap
from sushitui.progress import CancelToken, ProgressEvent
from sushitui.store import write_transaction
from sushitui.store.models import Job, database_proxy

PROGRESS_INTERVAL_S = 0.5  # at most two progress writes a second
POLL_S = 0.5  # how often a queued job looks for its turn and a running one for a cancel


def _conflicts(me: Job, other: Job) -> bool:
    same_gpu = me.device != "cpu" and other.device == me.device
    same_lock = me.lock_key is not None and other.lock_key == me.lock_key
    return same_gpu or same_lock


def blockers(job_id: int) -> list[int]:
    """The ids of the queued or running jobs ahead of ``job_id`` that it must wait for."""
    me = Job.get_by_id(job_id)
    ahead = Job.select().where(Job.state.in_(ACTIVE) & (Job.id != job_id)).order_by(Job.id)
    return [o.id for o in ahead if _conflicts(me, o) and (o.state == "running" or o.id < job_id)]


def _on_own_connection(write: Callable[[], object]) -> None:
    """``write()`` in a transaction of its own, on a connection of its own (a short
    thread's): the job's row must not ride in, or wait for, a transaction the command
    left open on the main thread's connection."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with write_transaction():
                write()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            errors.append(exc)
        finally:
            database_proxy.obj.close()  # this thread's connection only

    thread = threading.Thread(target=run, name="job-write")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


class JobWorker:
    """Runs inside the worker process: ``wait_turn()``, then the command with
    ``progress`` and ``watch(token)`` wired in, then ``finish(exit_code)``."""

    def __init__(self, job_id: int, poll_s: float = POLL_S, progress_interval_s: float = PROGRESS_INTERVAL_S):
        self.job_id = job_id
        self.poll_s = poll_s
        self.progress_interval_s = progress_interval_s
        self._tokens: list[CancelToken] = []
        self._cancel_seen = threading.Event()
        self._stop = threading.Event()
        self._latest: ProgressEvent | None = None
        self._written: ProgressEvent | None = None
        self._write_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self.on_cancel_without_token: Callable[[], None] | None = None

    # --- before the command -------------------------------------------------------------

    def register(self) -> None:
        """Record this process as the job's worker (the starter may have done so)."""
        pid = os.getpid()
        with write_transaction():
            Job.update(
                pid=pid, pid_started=process.process_start(pid), host=process.hostname(), updated_at=time.time()
            ).where(Job.id == self.job_id).execute()

    def wait_turn(self, on_wait: Callable[[list[int]], None] | None = None) -> bool:
        """Wait until no job ahead conflicts, then mark this one running. False when it
        was cancelled while queued (it is then marked cancelled)."""
        told = None
        while True:
            reap()
            with write_transaction():
                me = Job.get_by_id(self.job_id)
                if me.cancel_requested:
                    now = time.time()
                    Job.update(
                        state="cancelled", finished_at=now, updated_at=now, message="cancelled before it started"
                    ).where(Job.id == self.job_id).execute()
                    return False
                waiting_for = blockers(self.job_id)
                if not waiting_for:
                    now = time.time()
                    Job.update(state="running", started_at=now, updated_at=now).where(Job.id == self.job_id).execute()
                    self._start_poller()
                    return True
            if on_wait is not None and waiting_for != told:
                on_wait(waiting_for)
                told = waiting_for
            time.sleep(self.poll_s)

    # --- while the command runs ---------------------------------------------------------

    def progress(self, ev: ProgressEvent, force: bool = False) -> None:
        """Keep the latest event; the job's own thread writes it to the row at most
        every ``progress_interval_s`` (the command never waits on the database for
        it, and the write is never part of a transaction the command has open)."""
        self._latest = ev
        if force:
            self._write_progress()

    def _write_progress(self) -> None:
        with self._write_lock:
            ev = self._latest
            if ev is None or ev is self._written:
                return
            try:
                with write_transaction():
                    Job.update(
                        phase=ev.phase,
                        done=ev.done,
                        total=ev.total,
                        unit=ev.unit or "items",
                        rate=round(ev.rate, 3),
                        eta_s=ev.eta_s,
                        updated_at=time.time(),
                    ).where(Job.id == self.job_id).execute()
                self._written = ev
            except Exception:  # noqa: BLE001 - a busy database must not stop the work; the next write catches up
                pass

    def watch(self, token: CancelToken) -> None:
        """``token`` is tripped when someone cancels the job (``sushitui jobs cancel``)."""
        self._tokens.append(token)
        if self._cancel_seen.is_set():
            token.cancel()

    def _start_poller(self) -> None:
        self._poller = threading.Thread(target=self._poll, name=f"job-{self.job_id}", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        """The job's own thread (its own database connection): writes progress, and
        looks for a cancel request from another process."""
        next_cancel_check = 0.0
        try:
            while not self._stop.wait(min(self.poll_s, self.progress_interval_s)):
                self._write_progress()
                if time.monotonic() < next_cancel_check or self._cancel_seen.is_set():
                    continue
                next_cancel_check = time.monotonic() + self.poll_s
                try:
                    row = Job.get_or_none(Job.id == self.job_id)
                except Exception:  # noqa: BLE001 - the database busy for a moment: ask again
                    continue
                if row is None or row.cancel_requested:
                    self._cancel_seen.set()
                    for token in self._tokens:
                        token.cancel()
                    if not self._tokens and self.on_cancel_without_token is not None:
                        self.on_cancel_without_token()
        finally:
            database_proxy.obj.close()  # this thread's connection only

    # --- after the command --------------------------------------------------------------

    def finish(self, exit_code: int, message: str | None = None) -> str:
        """Record how the command ended; returns the state."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        _on_own_connection(self._write_progress)
        cancelled = self._cancel_seen.is_set() or Job.get_by_id(self.job_id).cancel_requested
        if exit_code == 0:
            state = "done"
        elif cancelled:
            state = "cancelled"
        elif exit_code == 130:
            state = "interrupted"  # a signal stopped the worker (SIGTERM, a shutdown)
            message = message or "the worker was stopped by a signal; the work finished so far is kept"
        else:
            state = "failed"
        now = time.time()
        fields = {Job.state: state, Job.exit_code: exit_code, Job.finished_at: now, Job.updated_at: now}
        if message:
            fields[Job.message] = message
        _on_own_connection(lambda: Job.update(fields).where(Job.id == self.job_id).execute())
        return state

    def current(self):
        return get_job(self.job_id)
