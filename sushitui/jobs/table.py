"""The job table: creating, listing, cancelling, retrying and clearing jobs, and noticing
workers that died (sushitui.store.models.Job)."""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sushitui.config import data_dir
from sushitui.errors import UserError
from sushitui.jobs import process
from sushitui.store import write_transaction
from sushitui.store.models import Job

ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled", "interrupted")
# a row whose starter has not recorded the worker's pid yet (it is spawning it) counts as
# alive this long
SPAWN_GRACE_S = 30.0
RECENT_S = 24 * 3600.0


class JobError(UserError):
    """A job that does not exist, or an action its state does not allow."""


@dataclass(frozen=True)
class JobInfo:
    """One job as the CLI and the app show it (no database objects outside the core)."""

    id: int
    kind: str
    dataset: str | None
    state: str
    device: str
    phase: str | None
    done: int
    total: int | None
    unit: str
    rate: float | None
    eta_s: float | None
    message: str | None
    exit_code: int | None
    cancel_requested: bool
    host: str | None
    pid: int | None
    log_path: str | None
    argv: list
    cwd: str
    retry_of: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def command(self) -> str:
        """The command line the job runs (without --db), for display."""
        argv = list(self.argv)
        if len(argv) >= 2 and argv[0] == "--db":
            argv = argv[2:]
        return "sushitui " + shlex.join(argv)

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None

    def as_dict(self) -> dict:
        return {**asdict(self), "command": self.command}


def _info(row: Job) -> JobInfo:
    return JobInfo(
        id=row.id,
        kind=row.kind,
        dataset=row.dataset,
        state=row.state,
        device=row.device,
        phase=row.phase,
        done=row.done,
        total=row.total,
        unit=row.unit,
        rate=row.rate,
        eta_s=row.eta_s,
        message=row.message,
        exit_code=row.exit_code,
        cancel_requested=bool(row.cancel_requested),
        host=row.host,
        pid=row.pid,
        log_path=row.log_path,
        argv=list(row.argv or []),
        cwd=row.cwd,
        retry_of=row.retry_of,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
    )


def log_dir() -> Path:
    """Where job logs go: ``$XDG_DATA_HOME/sushitui/jobs``."""
    return data_dir() / "jobs"


def _row(job_id: int) -> Job:
    row = Job.get_or_none(Job.id == job_id)
    if row is None:
        raise JobError(f"there is no job {job_id}; `sushitui jobs --all` lists every job")
    return row


def get_job(job_id: int) -> JobInfo:
    return _info(_row(job_id))


def submit(
    kind: str,
    argv: list[str],
    *,
    cwd: str | None = None,
    dataset: str | None = None,
    device: str = "cpu",
    lock_key: str | None = None,
    retry_of: int | None = None,
) -> JobInfo:
    """Record a job and start its detached worker, which runs ``sushitui ARGV`` (argv
    should name the database with ``--db``). Returns the job as recorded, queued."""
    cwd = cwd or os.getcwd()
    with write_transaction():
        row = Job.create(
            kind=kind,
            argv=list(argv),
            cwd=cwd,
            dataset=dataset,
            device=device,
            lock_key=lock_key,
            retry_of=retry_of,
            host=process.hostname(),
        )
        row.log_path = str(log_dir() / f"job-{row.id}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        row.save()
    try:
        pid = process.spawn_worker(row.id, list(argv), cwd, Path(row.log_path))
    except OSError as exc:
        _finish(row.id, "failed", message=f"the worker could not be started: {exc}")
        raise JobError(f"job {row.id}: the worker could not be started ({exc}); see the log {row.log_path}") from exc
    # the worker writes its own pid too; whichever comes first, the values are the same
    started = process.process_start(pid)
    with write_transaction():
        Job.update(pid=pid, pid_started=started, updated_at=time.time()).where(
            (Job.id == row.id) & (Job.pid.is_null())
        ).execute()
    return get_job(row.id)


def list_jobs(include_all: bool = False) -> list[JobInfo]:
    """Jobs in the order they were started: the queued and running ones and those that
    ended in the last day (every job with ``include_all``)."""
    reap()
    query = Job.select().order_by(Job.id)
    if not include_all:
        query = query.where(
            Job.state.in_(ACTIVE)
            | (Job.finished_at >= time.time() - RECENT_S)
            | ((Job.state == "interrupted") & ~Job.announced)
        )
    return [_info(r) for r in query]


def active_jobs() -> list[JobInfo]:
    reap()
    return [_info(r) for r in Job.select().where(Job.state.in_(ACTIVE)).order_by(Job.id)]


def jobs_by_id(ids) -> dict[int, JobInfo]:
    ids = list(ids)
    if not ids:
        return {}
    return {r.id: _info(r) for r in Job.select().where(Job.id.in_(ids))}


def _finish(job_id: int, state: str, *, message: str | None = None, exit_code: int | None = None) -> None:
    now = time.time()
    fields = {Job.state: state, Job.finished_at: now, Job.updated_at: now}
    if message is not None:
        fields[Job.message] = message
    if exit_code is not None:
        fields[Job.exit_code] = exit_code
    with write_transaction():
        Job.update(fields).where(Job.id == job_id).execute()


def reap() -> list[JobInfo]:
    """Mark queued and running jobs whose worker died (kill -9, out of memory, a reboot)
    as interrupted; returns them. Workers on another host are left alone."""
    now = time.time()
    dead = []
    for row in Job.select().where(Job.state.in_(ACTIVE)):
        if row.pid is None and now - row.created_at < SPAWN_GRACE_S:
            continue
        if process.is_alive(row.host, row.pid, row.pid_started) is False:
            dead.append(row)
    if not dead:
        return []
    out = []
    with write_transaction():
        for row in dead:
            fresh = Job.get_or_none(Job.id == row.id)
            if fresh is None or fresh.state not in ACTIVE:  # it ended meanwhile
                continue
            at = f" at {fresh.done:,}/{fresh.total:,} {fresh.unit}" if fresh.total else ""
            what = "while queued" if fresh.state == "queued" else f"while {fresh.phase or 'running'}{at}"
            state = "cancelled" if fresh.cancel_requested else "interrupted"
            Job.update(
                state=state,
                finished_at=now,
                updated_at=now,
                message=f"the worker (pid {fresh.pid}) ended without finishing, {what}",
            ).where(Job.id == fresh.id).execute()
            out.append(fresh.id)
    return [get_job(i) for i in out]


def take_unannounced_interruptions() -> list[JobInfo]:
    """Interrupted jobs nobody was told about yet; marks them told (each is said once)."""
    reap()
    rows = list(Job.select().where((Job.state == "interrupted") & ~Job.announced).order_by(Job.id))
    if rows:
        with write_transaction():
            Job.update(announced=True).where(Job.id.in_([r.id for r in rows])).execute()
    return [_info(r) for r in rows]


def request_cancel(job_id: int) -> JobInfo:
    """Ask job ``job_id`` to stop. Its worker sees the flag within a second, stops at the
    next item and keeps what it finished; a queued job never starts."""
    reap()
    row = _row(job_id)
    if row.state in FINAL:
        raise JobError(f"job {job_id} has already ended ({row.state}); nothing to cancel")
    with write_transaction():
        Job.update(cancel_requested=True, updated_at=time.time()).where(Job.id == job_id).execute()
    return get_job(job_id)


def retry(job_id: int) -> JobInfo:
    """Start job ``job_id``'s command again as a new job. The long commands resume: the
    auto-tagger's score cache and the captioner's answer cache skip what was finished,
    bulk edits skip items already edited, a reindex reads only what changed."""
    reap()
    row = _row(job_id)
    if row.state in ACTIVE:
        raise JobError(f"job {job_id} is still {row.state}; cancel it first (`sushitui jobs cancel {job_id}`)")
    if row.state == "interrupted" and not row.announced:
        with write_transaction():
            Job.update(announced=True).where(Job.id == job_id).execute()
    return submit(
        row.kind,
        list(row.argv),
        cwd=row.cwd,
        dataset=row.dataset,
        device=row.device,
        lock_key=row.lock_key,
        retry_of=row.id,
    )


def clear_finished() -> int:
    """Forget jobs that ended (their logs too); queued and running ones stay."""
    reap()
    rows = list(Job.select().where(Job.state.in_(FINAL)))
    for row in rows:
        if row.log_path:
            try:
                os.unlink(row.log_path)
            except OSError:
                pass
    with write_transaction():
        Job.delete().where(Job.id.in_([r.id for r in rows])).execute()
    return len(rows)
