"""Long jobs that outlive the terminal (issue 19).

``sushitui COMMAND ... --detach`` records a job (sushitui.store.models.Job) and starts a
worker process in a session of its own that runs the same command, so SIGHUP, a closed
SSH connection or the app quitting do not stop it. The worker waits for its turn (one
job at a time per GPU, one writer at a time per dataset), writes throttled progress to
the job's row and its output to a log file in the data directory, stops when another
process sets the row's cancel flag, and records how it ended. A worker that died
(kill -9, out of memory, a reboot) is noticed by the next sushitui process and its job
marked interrupted; ``retry`` runs the command again, which resumes from the caches the
long commands keep.

This package sits beside tagger/export/training/check: it runs commands by starting
``python -m sushitui ARGV`` and so imports none of them.
"""

from __future__ import annotations

import importlib

# Names are loaded on first use (PEP 562): every CLI start asks process.JOB_ENV_VAR and
# should not pay for the store's imports to do so.
_EXPORTS = {
    "JOB_ENV_VAR": "process",
    "is_alive": "process",
    "process_start": "process",
    "JobWorker": "runner",
    "blockers": "runner",
    "ACTIVE": "table",
    "FINAL": "table",
    "JobError": "table",
    "JobInfo": "table",
    "active_jobs": "table",
    "clear_finished": "table",
    "get_job": "table",
    "jobs_by_id": "table",
    "list_jobs": "table",
    "log_dir": "table",
    "reap": "table",
    "request_cancel": "table",
    "retry": "table",
    "submit": "table",
    "take_unannounced_interruptions": "table",
    "autotag_argv": "commands",
    "autotag_device": "commands",
    "submit_autotag": "commands",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sushitui.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sushitui.jobs.{_EXPORTS[name]}"), name)
