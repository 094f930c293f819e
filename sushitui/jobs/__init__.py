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

from sushitui.jobs.process import JOB_ENV_VAR, is_alive, process_start
from sushitui.jobs.runner import JobWorker, blockers
from sushitui.jobs.table import (
    ACTIVE,
    FINAL,
    JobError,
    JobInfo,
    active_jobs,
    clear_finished,
    get_job,
    jobs_by_id,
    list_jobs,
    log_dir,
    reap,
    request_cancel,
    retry,
    submit,
    take_unannounced_interruptions,
)

__all__ = [
    "ACTIVE", "FINAL", "JOB_ENV_VAR", "JobError", "JobInfo", "JobWorker", "active_jobs", "blockers", "clear_finished",
    "get_job", "is_alive", "jobs_by_id", "list_jobs", "log_dir", "process_start", "reap", "request_cancel", "retry",
    "submit", "take_unannounced_interruptions",
]
