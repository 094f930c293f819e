"""The app's side of background jobs (issue 19): the jobs screen with live progress, a
notice when a job ends while the app is open, interrupted jobs shown at start, quitting
says running jobs go on, and a job started from the app (retry) outlives the app."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from jobs_support import cli, wait_state
from tui_support import settle

from sushitui.jobs.process import hostname, process_start


def _app(db_path):
    from sushitui.tui.app import SushiApp

    return SushiApp(db_path, first_start=False)


def _job(**fields):
    """A job row as a live worker (this test process) keeps it."""
    from sushitui.store.models import Job

    row = {
        "kind": "tag add",
        "dataset": "cats",
        "argv": ["tag", "add", "cats", "smile"],
        "cwd": os.getcwd(),
        "state": "running",
        "host": hostname(),
        "pid": os.getpid(),
        "pid_started": process_start(os.getpid()),
        "phase": "writing",
        "done": 5,
        "total": 10,
        "started_at": time.time(),
        **fields,
    }
    return Job.create(**row).id


def _update(job_id, **fields):
    from sushitui.store.models import Job

    Job.update(**fields).where(Job.id == job_id).execute()


def _messages(app) -> list[str]:
    return [n.message for n in app._notifications]


def _cells(app) -> list[list[str]]:
    from textual.widgets import DataTable

    table = app.screen.query_one("#jobs-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_the_jobs_screen_shows_live_progress_and_the_app_says_when_a_job_ends(db, db_path):
    from sushitui.tui.screens.jobs import JobsScreen

    job_id = _job()

    async def go():
        app = _app(db_path)
        async with app.run_test(size=(140, 30)) as pilot:
            await settle(
                pilot,
                lambda: any("background job(s) running" in m for m in _messages(app)),
                what="the start notice of running jobs",
            )
            await pilot.press("ctrl+b")
            await settle(pilot, lambda: isinstance(app.screen, JobsScreen) and _cells(app), what="the jobs list")
            row = _cells(app)[0]
            assert row[0] == str(job_id) and row[1] == "tag add" and row[3] == "running" and "5/10" in row[4]
            _update(job_id, done=8, rate=2.0, eta_s=1.0)  # the worker writes progress
            await settle(pilot, lambda: "8/10" in _cells(app)[0][4], what="the progress to move")
            assert "2.0/s" in _cells(app)[0][5]
            _update(job_id, state="done", done=10, finished_at=time.time(), exit_code=0)
            await settle(
                pilot,
                lambda: any(f"job {job_id} (tag add cats) done" in m for m in _messages(app)),
                timeout=8,
                what="the notice that the job ended",
            )
            await settle(pilot, lambda: _cells(app)[0][3] == "done", what="the list to show it done")

    asyncio.run(go())


def test_quitting_while_a_job_runs_says_it_goes_on(db, db_path, capfd):
    job_id = _job()

    async def go():
        app = _app(db_path)
        async with app.run_test() as pilot:
            await settle(pilot)
            await pilot.press("ctrl+q")
            await pilot.pause()

    asyncio.run(go())
    said = " ".join(capfd.readouterr().err.split())  # printed once the terminal is back
    assert "1 background job(s) go on" in said and f"({job_id})" in said and "sushitui jobs" in said


def test_an_interrupted_job_is_shown_at_start_and_its_retry_from_the_app_outlives_the_app(db, db_path, tmp_path):
    from dict_helpers import make_dataset

    make_dataset(tmp_path / "cats", "cats", [f"solo, {i}" for i in range(12)])
    dead = _job(
        state="interrupted",
        pid=2**22 + 7,
        pid_started="gone",
        finished_at=time.time(),
        message="the worker (pid 4194311) ended without finishing, while writing at 5/10 items",
        argv=["--db", str(db_path), "tag", "add", "cats", "smile"],
    )

    async def go():
        from sushitui.tui.screens.jobs import JobsScreen

        app = _app(db_path)
        async with app.run_test(size=(140, 30)) as pilot:
            await settle(
                pilot,
                lambda: any(f"job {dead} (tag add cats) was interrupted" in m for m in _messages(app)),
                what="the interrupted job's notice",
            )
            await pilot.press("ctrl+b")
            await settle(pilot, lambda: isinstance(app.screen, JobsScreen) and _cells(app), what="the jobs list")
            await pilot.press("r")
            await settle(pilot, lambda: any("retry of job" in m for m in _messages(app)), what="the retry to start")
            await pilot.press("ctrl+q")
            await pilot.pause()

    asyncio.run(go())
    # after the app is gone, the CLI sees the new job and it finishes
    listed = json.loads(cli("--db", str(db_path), "jobs", "--json").stdout)
    retried = [j for j in listed if j["retry_of"] == dead]
    assert len(retried) == 1, listed
    job = wait_state(retried[0]["id"], timeout=30)
    assert job.state == "done", job
    assert all("smile" in p.read_text() for p in (tmp_path / "cats").glob("*.txt"))
    # the interruption was told once (by the app): the next command does not repeat it
    assert "was interrupted" not in cli("--db", str(db_path), "dataset", "list").stderr


@pytest.mark.slow  # a real autotag worker outliving the app; the retry test above covers a job from the app in the quick run
def test_an_autotag_started_from_the_app_as_a_job_finishes_after_the_app_quit(db, db_path, tmp_path, monkeypatch):
    from jobs_support import image_dataset, slow_model
    from textual.widgets import Input, Select, Static
    from tui_support import open_browser

    from sushitui.tui.screens.autotag_dialog import CUSTOM, AutotagDialog

    monkeypatch.setenv("SUSHITUI_IMAGES", "off")  # no thumbnails: not what this test is about
    image_dataset(tmp_path / "data", "cats", 30)
    model, labels = slow_model()

    async def go():
        app = _app(db_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await open_browser(app, pilot)
            await pilot.press("A")  # the browser's auto-tag key
            await settle(pilot, lambda: isinstance(app.screen, AutotagDialog), what="the dialog")
            dialog = app.screen
            await settle(
                pilot,
                lambda: "all 30 items" in str(dialog.query_one("#autotag-title", Static).render()),
                timeout=15,
                what="the dialog's context",
            )
            dialog.query_one("#at-model", Select).value = CUSTOM
            await pilot.pause()
            dialog.query_one("#at-model-path", Input).value = str(model)
            dialog.query_one("#at-labels", Input).value = str(labels)
            dialog.query_one("#at-device", Select).value = "cpu"
            await pilot.press("ctrl+d")
            await settle(
                pilot,
                lambda: any("Auto-tag job 1 started" in m for m in _messages(app)),
                timeout=15,
                what="the job to start",
            )
            assert not dialog.is_attached  # the dialog closed: the app is free at once
            await pilot.press("ctrl+q")
            await pilot.pause()

    asyncio.run(go())
    listed = json.loads(cli("--db", str(db_path), "jobs", "--json").stdout)
    assert [(j["id"], j["kind"], j["dataset"]) for j in listed] == [(1, "autotag", "cats")]
    job = wait_state(1, timeout=60)
    assert job.state == "done", job
    assert len(list((tmp_path / "data").glob("*.txt"))) == 30
