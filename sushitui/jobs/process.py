"""The worker process of a job: starting it detached, and telling a live worker from a
dead one.

A detached worker runs in a session of its own (``setsid``): it has no controlling
terminal, so the terminal closing (SIGHUP), the SSH connection dropping or the shell's
process group being killed do not reach it. Its output goes to a log file.

A pid alone does not identify a worker: after it dies the kernel may hand the number to
another program. So the worker's start time (``/proc/PID/stat`` field 22, with the boot
id) is stored beside the pid; a process with that pid but another start time is not the
worker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

JOB_ENV_VAR = "SUSHITUI_JOB_ID"


def hostname() -> str:
    return socket.gethostname()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')'
    return raw[raw.rfind(")") + 2 :].split()


def process_start(pid: int) -> str | None:
    """A string that names this run of process ``pid`` (its start time in clock ticks
    since boot, and the boot), or None when there is no such process. Where /proc is
    missing (macOS, Windows) the empty string: only the pid is checked there."""
    if not Path("/proc/self/stat").exists():
        return "" if _pid_exists(pid) else None
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # fields[0] is field 3 (state), so field 22 (starttime) is fields[19]
    return f"{_boot_id()}:{fields[19]}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def is_alive(host: str | None, pid: int | None, started: str | None) -> bool | None:
    """Whether the worker (host, pid, start) still runs: True, False, or None when this
    machine cannot tell (the worker runs on another host sharing the database)."""
    if host and host != hostname():
        return None
    if not pid:
        return False
    fields = _stat_fields(pid)
    if fields is not None and fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    now = process_start(pid)
    if now is None:
        return False
    return not started or not now or now == started


def spawn_worker(
    job_id: int, argv: list[str], cwd: str, log_path: Path, env_extra: dict[str, str] | None = None
) -> int:
    """Start ``python -m sushitui ARGV`` as the worker of job ``job_id``, detached from
    this process's terminal and session; returns its pid. Its stdin is empty (a job
    never asks), stdout and stderr go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, JOB_ENV_VAR: str(job_id), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    kwargs: dict = {}
    if sys.platform == "win32":  # pragma: no cover - no sessions there: a new process group, no console
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "DETACHED_PROCESS", 0)
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sushitui", *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            **kwargs,
        )
    # A long-lived starter (the app, a test) reaps the worker when it ends, so that no
    # zombie is left; a CLI starter exits first and init adopts the worker.
    threading.Thread(target=proc.wait, name=f"job-{job_id}-reaper", daemon=True).start()
    return proc.pid
