"""CLI: ``--detach`` on the long commands, and ``jobs [--all] [--json]``, ``jobs attach
ID``, ``jobs cancel ID``, ``jobs retry ID``, ``jobs log ID``, ``jobs clear`` (issue 19).

A detached command is recorded as a job and re-run by a worker process in a session of
its own (``sushitui.jobs``); this module also runs that worker's side: it waits for the
job's turn, then runs the command as usual with its progress bar and its Ctrl-C token
wired to the job's row."""

from __future__ import annotations

import argparse
import os
import sys
import time

from sushitui.cli.common import (
    CliError,
    IntArg,
    add_common,
    emit_json,
    err,
    fmt_duration,
    fmt_time,
    open_db,
    out,
)

# The long commands: (path of subcommands) -> what they write, which two jobs must not do
# at once ("dataset": the dataset named by NAME; "dictionary"; None: a reader).
DETACHABLE: dict[tuple[str, ...], str | None] = {
    ("autotag",): "dataset",
    ("caption",): "dataset",
    ("check",): "dataset",  # it replaces the dataset's findings
    ("dataset", "add"): "dataset",
    ("dataset", "reindex"): "dataset",
    ("export",): None,
    ("tag", "add"): "dataset",
    ("tag", "remove"): "dataset",
    ("tag", "replace"): "dataset",
    ("dict", "load"): "dictionary",
    ("dict", "import"): "dictionary",
}


def _device_arg(text: str) -> str:
    value = text.strip().lower()
    if value == "gpu":
        return "gpu:0"
    if value == "cpu":
        return value
    if value.startswith("gpu:") and value[4:].isdigit():
        return f"gpu:{int(value[4:])}"
    raise argparse.ArgumentTypeError(f"{text!r}: give cpu, gpu or gpu:N (N: the GPU's index)")


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def add_detach_options(root: argparse.ArgumentParser) -> None:
    """``--detach`` and ``--job-device`` on every long command (DETACHABLE) that exists."""
    for path, writes in DETACHABLE.items():
        parser = root
        for name in path:
            sub = _subparsers(parser)
            parser = sub.choices.get(name) if sub is not None else None
            if parser is None:
                break
        if parser is None:
            continue
        group = parser.add_argument_group("running as a job")
        group.add_argument(
            "--detach",
            action="store_true",
            help="run as a background job that survives the terminal closing; prints the job id (see `sushitui jobs`)",
        )
        group.add_argument(
            "--job-device",
            type=_device_arg,
            metavar="cpu|gpu[:N]",
            help="with --detach: the device the job occupies; jobs on one GPU run one at a time "
            "(default: autotag's GPU when it uses CUDA; say gpu for a caption server on this machine)",
        )
        parser.set_defaults(job_kind=" ".join(path), job_writes=writes)


def _job_device(args) -> str:
    if args.job_device:
        return args.job_device
    if args.job_kind == "autotag":
        from sushitui.jobs import autotag_device

        return autotag_device(args.device, args.device_id)
    return "cpu"


def _strip_detach(argv: list[str]) -> list[str]:
    """The command's arguments without ``--detach`` and ``--db`` (the job names the
    database by its absolute path); everything after a ``--`` is data."""
    kept, data, skip = [], False, False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--" and not data:
            data = True
        elif not data and (a == "--detach" or a.startswith("--db=")):
            continue
        elif not data and a == "--db":
            skip = True
            continue
        kept.append(a)
    return kept


def cmd_detach(args, argv: list[str]) -> int:
    """Record the command as a job, start its worker, print the id and return."""
    from sushitui.config import resolve_db_path
    from sushitui.jobs import JobError, blockers, submit

    open_db(args)
    db_path = os.path.abspath(resolve_db_path(getattr(args, "db", None)))
    writes = args.job_writes
    dataset = getattr(args, "name", None) if writes != "dictionary" else None
    if dataset is not None and args.job_kind != "dataset add":
        # a typo is said now, not found later in a failed job's log
        from sushitui.dataset.registry import DatasetNotFound, get_dataset

        try:
            get_dataset(dataset)
        except DatasetNotFound as exc:
            raise CliError(str(exc)) from exc
    lock = (
        f"dataset:{dataset}" if writes == "dataset" and dataset else ("dictionary" if writes == "dictionary" else None)
    )
    try:
        job = submit(
            args.job_kind,
            ["--db", db_path, *_strip_detach(argv)],
            dataset=dataset,
            device=_job_device(args),
            lock_key=lock,
        )
    except JobError as exc:
        raise CliError(str(exc)) from exc
    ahead = blockers(job.id)
    if getattr(args, "json", False):
        emit_json({"job": job.id, "state": job.state, "device": job.device, "waiting_for": ahead, "log": job.log_path})
        return 0
    out(f"job {job.id}: {job.command}")
    if ahead:
        out(
            f"  queued behind job{'s' if len(ahead) > 1 else ''} {', '.join(map(str, ahead))} "
            f"({'same GPU' if job.device != 'cpu' else 'same dataset'})"
        )
    out(
        f"  it goes on when this terminal closes. Follow it: sushitui jobs attach {job.id}  "
        f"cancel: sushitui jobs cancel {job.id}  log: {job.log_path}"
    )
    return 0


# --- the worker's side ----------------------------------------------------------------


def run_as_job(args, run) -> int:
    """In the worker process of job $SUSHITUI_JOB_ID: wait for the job's turn, then
    ``run()`` (the command, as ``main`` runs it) with progress and cancellation tied to
    the job's row; record how it ended."""
    import signal

    from sushitui.cli import common
    from sushitui.jobs import JOB_ENV_VAR, JobWorker

    job_id = int(os.environ.pop(JOB_ENV_VAR))  # processes the command starts are not the job
    open_db(args, notice_jobs=False)
    worker = JobWorker(job_id)
    worker.register()
    # a command that holds no cancel token stops the way SIGTERM stops it (exit 130)
    worker.on_cancel_without_token = lambda: os.kill(os.getpid(), signal.SIGTERM)

    def waiting(ids: list[int]) -> None:
        err(f"job {job_id}: waiting for job{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} to finish")

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    err(f"job {job_id}: {' '.join(sys.argv[1:])} (pid {os.getpid()}, {started})")
    try:
        if not worker.wait_turn(waiting):
            err(f"job {job_id}: cancelled before it started")
            return 130
    except KeyboardInterrupt:  # SIGTERM while queued: the worker is going away
        worker.finish(130, "stopped by a signal before it started")
        return 130
    common.set_job_worker(worker)
    code = 1
    message = None
    try:
        code = run()
        if code not in (0, 130):
            message = common.last_error()
        return code
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
        raise
    finally:
        common.set_job_worker(None)
        state = worker.finish(code, message)
        err(f"job {job_id}: {state} (exit code {code})")


# --- jobs [--all] | attach | cancel | retry | log | clear ----------------------------------


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "jobs",
        help="background jobs (--detach): list, attach, cancel, retry, log, clear",
        description="Long commands started with --detach run as jobs that survive the terminal. Without an action: "
        "the queued and running jobs and those that ended in the last day.",
    )
    p.add_argument("--all", action="store_true", help="every job, however old")
    add_common(p)
    sub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    s = sub.add_parser("attach", help="show the job's live progress; Ctrl-C detaches (the job goes on)")
    s.add_argument("id", type=IntArg(1), metavar="ID")
    add_common(s, json_flag=False)
    s.set_defaults(func=cmd_attach)
    s = sub.add_parser("cancel", help="stop a job (what it finished is kept)")
    s.add_argument("id", type=IntArg(1), metavar="ID")
    add_common(s)
    s.set_defaults(func=cmd_cancel)
    s = sub.add_parser("retry", help="run a job's command again as a new job; it resumes where it stopped")
    s.add_argument("id", type=IntArg(1), metavar="ID")
    add_common(s)
    s.set_defaults(func=cmd_retry)
    s = sub.add_parser("log", help="print a job's log (its output and errors)")
    s.add_argument("id", type=IntArg(1), metavar="ID")
    add_common(s, json_flag=False)
    s.set_defaults(func=cmd_log)
    s = sub.add_parser("clear", help="forget the jobs that ended, and their logs")
    add_common(s)
    s.set_defaults(func=cmd_clear)
    p.set_defaults(func=cmd_list)


def _open(args) -> None:
    open_db(args, notice_jobs=False)


def _progress_text(j) -> str:
    if j.state == "queued":
        return "waiting"
    if j.total:
        return f"{j.done:,}/{j.total:,} {j.unit} ({100 * j.done / j.total:.0f}%)"
    return f"{j.done:,} {j.unit}" if j.done else "-"


def _rate_text(j) -> str:
    if j.state != "running" or not j.rate:
        return "-"
    return f"{j.rate:,.1f}/s ETA {fmt_duration(j.eta_s)}"


def cmd_list(args) -> int:
    from sushitui.jobs import list_jobs

    _open(args)
    jobs = list_jobs(include_all=args.all)
    if args.json:
        emit_json([j.as_dict() for j in jobs])
        return 0
    if not jobs:
        out(
            "no jobs"
            + ("" if args.all else " in the last day (--all lists older ones)")
            + ". Start one with --detach, e.g. sushitui autotag NAME --detach"
        )
        return 0
    out(
        f"{'ID':>4}  {'KIND':<15} {'DATASET':<16} {'STATE':<11} {'PROGRESS':<26} {'RATE / ETA':<20} "
        f"{'STARTED':<16} {'DEVICE':<6} HOST/PID"
    )
    for j in jobs:
        ds = (j.dataset or "-")[:16]
        out(
            f"{j.id:>4}  {j.kind:<15} {ds:<16} {j.state:<11} {_progress_text(j):<26} {_rate_text(j):<20} "
            f"{fmt_time(j.started_at or j.created_at):<16} {j.device:<6} {j.host or '-'}/{j.pid or '-'}"
        )
        if j.state in ("failed", "interrupted", "cancelled") and j.message:
            out(f"      {j.message}")
        if j.state in ("failed", "interrupted"):
            out(f"      log: sushitui jobs log {j.id}   resume: sushitui jobs retry {j.id}")
    return 0


def _draw(j) -> str:
    width = 24
    frac = j.fraction
    bar = ("█" * int(frac * width) + "░" * (width - int(frac * width))) if frac is not None else "·" * width
    state = j.state if j.state != "running" else (j.phase or "running")
    return f"job {j.id} {j.kind} {j.dataset or ''} {state} {bar} {_progress_text(j)}  {_rate_text(j)}"


def cmd_attach(args) -> int:
    import signal

    from sushitui.jobs import FINAL, get_job, reap
    from sushitui.sanitize import for_terminal

    _open(args)
    # Ctrl-C detaches even when this process was started with SIGINT ignored (from a
    # background shell job or a script): Python then installs no KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    tty = sys.stderr.isatty()
    last = ""
    try:
        while True:
            reap()
            j = _get(args.id, get_job)
            line = _draw(j)
            if tty:
                sys.stderr.write("\r" + for_terminal(line)[:200] + "\x1b[K")
                sys.stderr.flush()
            elif line != last:
                err(line)
            last = line
            if j.state in FINAL:
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        if tty:
            sys.stderr.write("\n")
        err(f"detached: job {args.id} goes on (sushitui jobs attach {args.id} to follow it again)")
        return 0
    if tty:
        sys.stderr.write("\n")
    out(f"job {j.id}: {j.state}" + (f" — {j.message}" if j.message else ""))
    if j.state in ("failed", "interrupted"):
        out(f"log: sushitui jobs log {j.id}   resume: sushitui jobs retry {j.id}")
    return {"done": 0, "cancelled": 130}.get(j.state, j.exit_code or 1)


def _get(job_id, fn):
    from sushitui.jobs import JobError

    try:
        return fn(job_id)
    except JobError as exc:
        raise CliError(str(exc)) from exc


def cmd_cancel(args) -> int:
    from sushitui.jobs import request_cancel

    _open(args)
    j = _get(args.id, request_cancel)
    if args.json:
        emit_json(j.as_dict())
    else:
        out(
            f"job {j.id}: cancel requested; it stops at the next item and keeps what it finished "
            f"(sushitui jobs attach {j.id} to watch)"
        )
    return 0


def cmd_retry(args) -> int:
    from sushitui.jobs import retry

    _open(args)
    j = _get(args.id, retry)
    if args.json:
        emit_json(j.as_dict())
    else:
        out(f"job {j.id}: retry of job {args.id}: {j.command}")
        out(f"  follow it: sushitui jobs attach {j.id}")
    return 0


def cmd_log(args) -> int:
    from sushitui.jobs import get_job

    _open(args)
    j = _get(args.id, get_job)
    if not j.log_path or not os.path.exists(j.log_path):
        raise CliError(f"job {j.id} has no log file ({j.log_path or 'none recorded'}); it may have been cleared")
    with open(j.log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            # the bar's carriage returns: show only the last state of each line
            out(line.rstrip("\n").split("\r")[-1])
    return 0


def cmd_clear(args) -> int:
    from sushitui.jobs import clear_finished

    _open(args)
    n = clear_finished()
    if args.json:
        emit_json({"cleared": n})
    else:
        out(f"cleared {n} finished job{'s' if n != 1 else ''}; queued and running jobs stay")
    return 0
