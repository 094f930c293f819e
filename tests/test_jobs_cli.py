"""Long jobs outlive the terminal (issue 19): --detach, jobs list/attach/cancel/retry/log,
a killed worker noticed and resumed, GPU jobs one at a time. Every job here runs a real
worker process on the CPU (a slow tiny ONNX tagger, or a bulk tag edit). The quick run
(-m "not slow") keeps detach, cancel through the database, log and clear; the kills,
attach, and the GPU/CPU ordering of two jobs (3-5 s of real workers each) are `slow`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from cli_support import run_cli
from jobs_support import autotag_argv, cli, detach, image_dataset, query, wait_for, wait_state

from sushitui.jobs import get_job


def _txt_count(root) -> int:
    return len(list(root.glob("*.txt")))


@pytest.mark.slow
def test_a_detached_job_goes_on_when_its_terminal_and_shell_are_killed(db, db_path, tmp_path):
    image_dataset(tmp_path / "data", "cats", 40)
    # a shell in its own session, like an SSH login: it starts the job, then "the
    # connection drops": SIGHUP and SIGKILL to its whole process group
    shell = subprocess.Popen(
        [sys.executable, "-m", "sushitui", *autotag_argv(db_path, "cats"), "--detach"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
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


@pytest.mark.slow
def test_kill_9_marks_the_job_interrupted_once_and_retry_resumes_from_the_cache(db, db_path, tmp_path, capsys):
    from sushitui.cli import main

    image_dataset(tmp_path / "data", "cats", 40)
    job_id = detach(db_path, autotag_argv(db_path, "cats"))
    cached = lambda: query(db_path, "SELECT COUNT(*) FROM tagger_cache")[0][0]  # noqa: E731
    wait_for(lambda: cached() >= 5, 40, "5 images scored")
    os.kill(get_job(job_id).pid, signal.SIGKILL)
    wait_for(
        lambda: (
            get_job(job_id).pid
            and not os.path.exists(f"/proc/{get_job(job_id).pid}/status")
            or "Z" in open(f"/proc/{get_job(job_id).pid}/status").read().split("State:")[1][:4]
        ),
        10,
        "the kill",
    )
    done_before = cached()
    assert done_before < 40

    # the next start of any command notices it, and says so once
    capsys.readouterr()
    assert main(["--db", str(db_path), "dataset", "list"]) == 0
    first = capsys.readouterr().err
    assert f"job {job_id} (autotag cats) was interrupted" in first and "sushitui jobs retry" in first
    assert main(["--db", str(db_path), "dataset", "list"]) == 0
    assert "interrupted" not in capsys.readouterr().err
    assert main(["--db", str(db_path), "jobs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(j["id"], j["state"]) for j in listed] == [(job_id, "interrupted")]

    assert main(["--db", str(db_path), "jobs", "retry", str(job_id), "--json"]) == 0
    retry_id = json.loads(capsys.readouterr().out)["id"]
    job = wait_state(retry_id, timeout=60)
    assert job.state == "done" and job.retry_of == job_id
    assert main(["--db", str(db_path), "jobs", "log", str(retry_id)]) == 0
    log = capsys.readouterr().out
    # the images scored before the kill come from the cache: the model did not run again
    from_cache = int(log.split("from cache ")[1].split(",")[0])
    inferred = int(log.split("inferred ")[1].split(" ")[0])
    assert from_cache >= done_before and from_cache + inferred == 40, log
    assert _txt_count(tmp_path / "data") == 40


def test_cancel_from_another_process_stops_the_job_and_keeps_what_it_finished(db, db_path, tmp_path, capsys):
    from sushitui.cli import main

    image_dataset(tmp_path / "data", "cats", 60)
    job_id = detach(db_path, autotag_argv(db_path, "cats"))
    wait_for(lambda: query(db_path, "SELECT COUNT(*) FROM tagger_cache")[0][0] >= 3, 40, "3 images scored")
    # `jobs cancel` here, the worker a process of its own: the flag goes through the database
    assert main(["--db", str(db_path), "jobs", "cancel", str(job_id)]) == 0
    assert "cancel requested" in capsys.readouterr().out
    job = wait_state(job_id, timeout=30)
    assert job.state == "cancelled", job
    scored = query(db_path, "SELECT COUNT(*) FROM tagger_cache")[0][0]
    assert 3 <= scored < 60
    assert "cancelled; run the same command again to resume" in run_cli("--db", db_path, "jobs", "log", job_id).stdout
    # a job that ended cannot be cancelled again, and the message says why
    again = run_cli("--db", db_path, "jobs", "cancel", job_id)
    assert again.returncode == 1 and "already ended (cancelled)" in again.stderr


@pytest.mark.slow
def test_two_gpu_jobs_run_one_after_the_other_in_the_order_started(db, db_path, tmp_path):
    image_dataset(tmp_path / "a", "a", 30)
    image_dataset(tmp_path / "b", "b", 30)
    # --job-device stands in for a CUDA autotag (or a caption job against a local server)
    first = detach(db_path, autotag_argv(db_path, "a", "--job-device", "gpu:0"))
    second = detach(db_path, autotag_argv(db_path, "b", "--job-device", "gpu:0"))
    a, b = wait_state(first, timeout=60), wait_state(second, timeout=60)
    assert a.state == b.state == "done"
    assert b.started_at >= a.finished_at, "the second GPU job started before the first ended"
    log = cli("--db", str(db_path), "jobs", "log", str(second)).stdout
    assert f"job {second}: waiting for job {first} to finish" in log


@pytest.mark.slow
def test_cpu_jobs_of_two_datasets_run_side_by_side(db, db_path, tmp_path):
    image_dataset(tmp_path / "a", "a", 30)
    image_dataset(tmp_path / "b", "b", 30)
    first = detach(db_path, autotag_argv(db_path, "a"))
    second = detach(db_path, autotag_argv(db_path, "b"))
    a, b = wait_state(first, timeout=60), wait_state(second, timeout=60)
    assert a.state == b.state == "done"
    assert b.started_at < a.finished_at, "CPU jobs of different datasets waited for each other"


@pytest.mark.slow
def test_attach_follows_a_job_to_its_end_and_ctrl_c_only_detaches(db, db_path, tmp_path):
    # 300 images (~9 s at CI speed): with 40 the job had ended before Ctrl-C reached attach
    image_dataset(tmp_path / "data", "cats", 300)
    job_id = detach(db_path, autotag_argv(db_path, "cats"))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "sushitui", "--db", str(db_path), "jobs", "attach", str(job_id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first_line = watcher.stderr.readline()  # it is attached and drawing
    assert f"job {job_id} autotag cats" in first_line
    wait_for(lambda: get_job(job_id).state == "running" and get_job(job_id).done > 0, 30, "progress")
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, err
    assert f"detached: job {job_id} goes on" in err and "Traceback" not in err
    job = get_job(job_id)
    assert job.state == "running", (job, open(job.log_path).read())
    # attached again, it stays until the end and exits with the job's outcome
    again = cli("--db", str(db_path), "jobs", "attach", str(job_id))
    assert again.returncode == 0 and f"job {job_id}: done" in again.stdout, (
        again.stdout,
        again.stderr,
        get_job(job_id),
        open(get_job(job_id).log_path).read(),
    )
    assert get_job(job_id).state == "done"


def test_detach_refuses_an_unknown_dataset_at_once_and_clear_forgets_ended_jobs(db, db_path, tmp_path, capsys):
    from dict_helpers import make_dataset

    from sushitui.cli import main

    assert main(["--db", str(db_path), "tag", "add", "nope", "x", "--detach"]) == 1
    assert "nope" in capsys.readouterr().err
    make_dataset(tmp_path / "cats", "cats", ["solo", "solo"])
    job_id = detach(db_path, ["--db", str(db_path), "tag", "add", "cats", "smile"])
    job = wait_state(job_id, timeout=30)
    assert job.state == "done" and os.path.exists(job.log_path)
    assert main(["--db", str(db_path), "jobs", "clear"]) == 0
    assert "cleared 1 finished job" in capsys.readouterr().out
    assert not os.path.exists(job.log_path)
    assert main(["--db", str(db_path), "jobs", "--all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
