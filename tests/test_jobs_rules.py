"""Whose turn it is (one job per GPU, one writer per dataset, CPU jobs of different
datasets side by side, in the order started) and telling a dead worker from a live one,
checked on the job table without starting workers."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest

from sushitui.jobs import blockers, get_job, reap
from sushitui.jobs.process import hostname, is_alive, process_start


def _job(state="queued", device="cpu", lock="dataset:a", pid=None, **extra) -> int:
    from sushitui.store.models import Job

    pid = os.getpid() if pid is None else pid
    return Job.create(
        kind="autotag",
        argv=[],
        cwd="/",
        state=state,
        device=device,
        lock_key=lock,
        host=hostname(),
        pid=pid,
        pid_started=process_start(pid),
        **extra,
    ).id


def test_one_job_at_a_time_per_gpu_in_the_order_started(db):
    running = _job("running", device="gpu:0", lock="dataset:a")
    second = _job(device="gpu:0", lock="dataset:b")
    third = _job(device="gpu:0", lock="dataset:c")
    other_gpu = _job(device="gpu:1", lock="dataset:d")
    assert blockers(second) == [running]
    assert blockers(third) == [running, second]  # it does not overtake the one queued before it
    assert blockers(other_gpu) == []


def test_cpu_jobs_of_different_datasets_run_side_by_side_and_one_dataset_has_one_writer(db):
    a = _job("running", lock="dataset:a")
    b = _job(lock="dataset:b")
    a_again = _job(lock="dataset:a")
    export_of_a = _job(lock=None)  # a reader
    assert blockers(b) == [] and blockers(export_of_a) == []
    assert blockers(a_again) == [a]
    dict_load, dict_import = _job("running", lock="dictionary"), _job(lock="dictionary")
    assert blockers(dict_import) == [dict_load]


def test_a_worker_that_died_is_interrupted_and_a_live_one_is_left_alone(db):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = _job("running", pid=proc.pid, phase="tagging", done=3, total=10, started_at=time.time())
    alive = _job("running")
    assert [j.id for j in reap()] == [dead]
    job = get_job(dead)
    assert job.state == "interrupted" and "at 3/10 items" in job.message and job.finished_at
    assert get_job(alive).state == "running"
    assert reap() == []  # said once


def test_a_reused_pid_is_not_taken_for_the_worker():
    me = os.getpid()
    assert is_alive(hostname(), me, process_start(me)) is True
    if process_start(me) == "":
        pytest.skip("no /proc here: only the pid can be checked")
    # the pid is alive, but it started at another time: another program, the worker is gone
    assert is_alive(hostname(), me, "another-boot:12345") is False
    assert is_alive("some-other-host", 1, "x") is None  # cannot tell from here


def test_a_cancelled_queued_job_never_starts(db):
    from sushitui.jobs import JobWorker, request_cancel

    _job("running", device="gpu:0")
    queued = _job(device="gpu:0")
    request_cancel(queued)
    assert JobWorker(queued, poll_s=0.01).wait_turn() is False
    assert get_job(queued).state == "cancelled"


def test_opening_the_database_twice_in_one_process_loses_no_write(db_path):
    """A job's worker opens the database, then the command it runs opens it again. The
    second open must not drop the first connection's locks: another process closing its
    connection would then delete the WAL under ours, and later writes (the job's
    progress, its end) would silently vanish."""
    from sushitui.store import open_database
    from sushitui.store.models import AppSetting

    first = open_database(db_path)
    AppSetting.create(key="before", value="1")
    open_database(db_path)
    reader = f"import sqlite3; c = sqlite3.connect({str(db_path)!r}); print(c.execute('SELECT COUNT(*) FROM app_setting').fetchone()[0]); c.close()"
    subprocess.run([sys.executable, "-c", reader], check=True, capture_output=True)
    AppSetting.create(key="after", value="2")
    seen = subprocess.run([sys.executable, "-c", reader], check=True, capture_output=True, text=True).stdout.strip()
    first.close()
    assert seen == "2"


def test_the_apps_autotag_job_runs_the_command_with_the_options_of_its_form(tmp_path):
    """The app starts `sushitui autotag ... ` as a job: what the CLI parses back from that
    command line is exactly the options the form built."""
    from sushitui.cli import build_parser
    from sushitui.cli.models_cmd import _options
    from sushitui.jobs import autotag_argv
    from sushitui.tagger.autotag import AutotagOptions

    opts = AutotagOptions(
        model=None,
        model_path=str(tmp_path / "m.onnx"),
        labels_path=str(tmp_path / "tags.csv"),
        family="wd",
        threshold=0.4,
        character_threshold=0.7,
        category_thresholds={"meta": 0.5},
        categories=("general", "meta"),
        mcut=("general",),
        mode="add",
        subtype="tags",
        device="cpu",
        device_id=1,
        batch_size=8,
        workers=0,
        jpeg_draft=False,
        dictionary_mapping=False,
        add_unknown_to_dictionary=True,
        underscores=True,
        exclude=("bad tag",),
        use_cache=False,
        dry_run=True,
        allow_download=False,
    )
    argv = autotag_argv(tmp_path / "x.db", "my set", opts, query="cat -dog", item_ids=[3, 9])
    args = build_parser().parse_args(argv)
    assert (args.name, args.query, args.item_ids) == ("my set", "cat -dog", [3, 9])
    # with a model file, the CLI keeps its default key beside it (the file wins)
    assert dataclasses.replace(_options(args), model=None) == opts
    builtin = AutotagOptions(model="wd-vit-v3", threshold=0.3)
    assert _options(build_parser().parse_args(autotag_argv(tmp_path / "x.db", "s", builtin))) == builtin
