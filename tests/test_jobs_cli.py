"""Long jobs outlive the terminal (issue 19): --detach, jobs list/attach/cancel/retry/log,
a killed worker noticed and resumed, GPU jobs one at a time. Every job here runs a real
worker process on the CPU (a slow tiny ONNX tagger, or a bulk tag edit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from jobs_support import autotag_argv, cli, detach, image_dataset, query, wait_for, wait_state

from sushitui.jobs import get_job


def _txt_count(root) -> int:
    return len(list(root.glob("*.txt")))


def test_a_detached_job_goes_on_when_its_terminal_and_shell_are_killed(db, db_path, tmp_path):
    image_dataset(tmp_path / "data", "cats", 40)
    # a shell in its own session, like an SSH login: it starts the job, then "the
    # connection drops": SIGHUP and SIGKILL to its whole process group
    shell = subprocess.Popen(
        [sys.executable, "-m", "sushitui", *autotag_argv(db_path, "cats"), "--detach"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    shell_out, shell_err = shell.communicate(timeout=30)
    assert shell.returncode == 0, shell_err
    assert "goes on when this terminal closes" in shell_out
    job_id = int(shell_out.split(":")[0].split()[1])
    wait_for(lambda: get_job(job_id).state == "running", 20, "the job to run")
    worker_pid = get_job(job_id).pid
    assert os.getpgid(worker_pid) != shell.pid, "the worker must not be in the shell's process group"
    for sig in (signal.SIGHUP, signal.SIGKILL):
        try:
            os.killpg(shell.pid, sig)
        except ProcessLookupError:
            pass
    assert get_job(job_id).state == "running" and _txt_count(tmp_path / "data") < 40
    job = wait_state(job_id, timeout=60)
    assert job.state == "done", job
    assert job.done == job.total == 40 and job.exit_code == 0
    assert _txt_count(tmp_path / "data") == 40
    log = cli("--db", str(db_path), "jobs", "log", str(job_id)).stdout
    assert "autotag cats: 40 item(s)" in log and "failed 0" in log


def test_kill_9_marks_the_job_interrupted_once_and_retry_resumes_from_the_cache(db, db_path, tmp_path):
    image_dataset(tmp_path / "data", "cats", 50)
    job_id = detach(db_path, autotag_argv(db_path, "cats"))
    cached = lambda: query(db_path, "SELECT COUNT(*) FROM tagger_cache")[0][0]  # noqa: E731
    wait_for(lambda: cached() >= 5, 40, "5 images scored")
    os.kill(get_job(job_id).pid, signal.SIGKILL)
    done_before = cached()
    assert done_before < 50

    # the next start of any command notices it, and says so once
    first = cli("--db", str(db_path), "dataset", "list")
    assert f"job {job_id} (autotag cats) was interrupted" in first.stderr
    assert "sushitui jobs retry" in first.stderr
    assert "interrupted" not in cli("--db", str(db_path), "dataset", "list").stderr
    listed = json.loads(cli("--db", str(db_path), "jobs", "--json").stdout)
    assert [(j["id"], j["state"]) for j in listed] == [(job_id, "interrupted")]

    res = cli("--db", str(db_path), "jobs", "retry", str(job_id), "--json")
    assert res.returncode == 0, res.stderr
    retry_id = json.loads(res.stdout)["id"]
    job = wait_state(retry_id, timeout=60)
    assert job.state == "done" and job.retry_of == job_id
    log = cli("--db", str(db_path), "jobs", "log", str(retry_id)).stdout
    # the images scored before the kill come from the cache: the model did not run again
    from_cache = int(log.split("from cache ")[1].split(",")[0])
    inferred = int(log.split("inferred ")[1].split(" ")[0])
    assert from_cache >= done_before and from_cache + inferred == 50, log
    assert _txt_count(tmp_path / "data") == 50


def test_cancel_from_another_process_stops_the_job_and_keeps_what_it_finished(db, db_path, tmp_path):
    image_dataset(tmp_path / "data", "cats", 60)
    job_id = detach(db_path, autotag_argv(db_path, "cats"))
    wait_for(lambda: query(db_path, "SELECT COUNT(*) FROM tagger_cache")[0][0] >= 3, 40, "3 images scored")
    res = cli("--db", str(db_path), "jobs", "cancel", str(job_id))
    assert res.returncode == 0 and "cancel requested" in res.stdout, res.stderr
    job = wait_state(job_id, timeout=30)
    assert job.state == "cancelled", job
    scored = query(db_path, "SELECT COUNT(*) FROM tagger_cache")[0][0]
    assert 3 <= scored < 60
    assert "cancelled; run the same command again to resume" in cli("--db", str(db_path), "jobs", "log", str(job_id)).stdout
    # a job that ended cannot be cancelled again, and the message says why
    again = cli("--db", str(db_path), "jobs", "cancel", str(job_id))
    assert again.returncode == 1 and "already ended (cancelled)" in again.stderr


def test_two_gpu_jobs_run_one_after_the_other_in_the_order_started(db, db_path, tmp_path):
    image_dataset(tmp_path / "a", "a", 20)
    image_dataset(tmp_path / "b", "b", 20)
    first = detach(db_path, autotag_argv(db_path, "a", "--job-device", "gpu:0"))
    second = detach(db_path, autotag_argv(db_path, "b", "--job-device", "gpu:0"))
    wait_for(lambda: get_job(first).state == "running", 20, "the first job to run")
    listing = cli("--db", str(db_path), "jobs").stdout
    assert get_job(second).state == "queued", listing
    assert "waiting" in listing
    a, b = wait_state(first, timeout=60), wait_state(second, timeout=60)
    assert a.state == b.state == "done"
    assert b.started_at >= a.finished_at, "the second GPU job started before the first ended"
