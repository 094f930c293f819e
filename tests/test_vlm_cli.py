"""``sushitui endpoint …`` and ``sushitui caption …`` as a user runs them (subprocesses)
against a real HTTP server on 127.0.0.1: JSON output, no key anywhere, a kill mid-run
resumes sending only the remaining items, Ctrl-C keeps what finished (exit 130)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from vlm_support import FakeVlmServer

KEY = "sk-cli-test-key-9f8e7d6c5b4a"
N_ITEMS = 12


def cli(db_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sushitui", "--db", str(db_path), *args], capture_output=True, text=True, timeout=timeout
    )


def start_cli(db_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sushitui", "--db", str(db_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def server():
    with FakeVlmServer() as srv:
        yield srv


@pytest.fixture
def setup(tmp_path, server, monkeypatch):
    monkeypatch.setenv("SUSHI_TEST_KEY", KEY)
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(N_ITEMS):
        Image.new("RGB", (320, 240), (i * 20, 100, 50)).save(root / f"im_{i:02d}.jpg", quality=90)
    db_path = tmp_path / "cli.db"
    assert cli(db_path, "dataset", "add", "set", str(root)).returncode == 0
    template = tmp_path / "t.txt"
    template.write_text("Caption <<{name}>>.", encoding="utf-8")
    r = cli(
        db_path,
        "endpoint",
        "add",
        "local",
        server.base_url,
        "--model",
        "test-vlm",
        "--api-key-env",
        "SUSHI_TEST_KEY",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    return {"db": db_path, "root": root, "template": str(template)}


def cache_rows(db_path: Path) -> int:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT COUNT(*) FROM vlm_cache").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def wait_for(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
def test_endpoint_add_list_test_remove_with_json_and_no_key_in_any_output(setup, server):
    db = setup["db"]
    listed = cli(db, "endpoint", "list", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert rows == [
        {
            "name": "local",
            "base_url": server.base_url,
            "model": "test-vlm",
            "api_key_env": "SUSHI_TEST_KEY",
            "key_present": True,
            "local": True,
        }
    ]
    tested = cli(db, "endpoint", "test", "local", "--json")
    assert tested.returncode == 0, tested.stderr
    probe = json.loads(tested.stdout)
    assert probe["ok"] and probe["models"] == ["test-vlm"] and probe["reply_latency_s"] is not None
    human = cli(db, "endpoint", "test", "local")
    assert human.returncode == 0 and "answered in" in human.stdout and "ok" in human.stdout
    assert server.received[0].authorization == f"Bearer {KEY}"
    for r in (listed, tested, human):
        assert KEY not in r.stdout + r.stderr
    assert cli(db, "endpoint", "remove", "local").returncode == 0
    assert json.loads(cli(db, "endpoint", "list", "--json").stdout) == []
    bad = cli(db, "endpoint", "add", "x", "https://u:secret@api.example.com/v1")
    assert bad.returncode == 1 and "environment variable" in bad.stderr


@pytest.mark.slow
def test_caption_writes_captions_and_reports_json_without_the_key(setup, server):
    r = cli(setup["db"], "caption", "set", "--template", setup["template"], "--json", "--concurrency", "4")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["written"] == N_ITEMS and doc["requests"] == N_ITEMS and doc["failed"] == 0
    assert doc["model"] == "test-vlm" and doc["subtype"] == "caption"
    assert (setup["root"] / "im_03_caption.txt").read_text(encoding="utf-8") == "A detailed photo of im_03."
    assert KEY not in r.stdout + r.stderr
    assert KEY.encode() not in b"".join(p.read_bytes() for p in setup["db"].parent.glob("cli.db*"))
    human = cli(setup["db"], "caption", "set", "--template", setup["template"], "--mode", "replace")
    assert human.returncode == 0 and f"from cache {N_ITEMS}" in human.stdout and "sent 0" in human.stdout


@pytest.mark.slow
def test_sample_shows_answers_and_writes_nothing(setup, server):
    server.script = {"im_01": ["refusal"]}
    r = cli(setup["db"], "caption", "set", "--template", setup["template"], "--items", "1,2,3", "--sample", "3")
    assert r.returncode == 0, r.stderr
    assert "new: A detailed photo of im_00." in r.stdout and "FLAGGED: the model refused" in r.stdout
    assert "nothing written" in r.stdout
    assert not list(setup["root"].glob("*_caption.txt"))


@pytest.mark.slow
def test_bad_options_are_messages(setup):
    r = cli(setup["db"], "caption", "set", "--template", "nope")
    assert r.returncode == 1 and "no template named 'nope'" in r.stderr
    r = cli(setup["db"], "caption", "set", "--endpoint", "other")
    assert r.returncode == 1 and "no endpoint named 'other'" in r.stderr
    r = cli(setup["db"], "caption", "set", "--temperature", "7")
    assert r.returncode == 2 and "out of range" in r.stderr


@pytest.mark.slow
def test_a_killed_caption_run_resumes_sending_only_the_remaining_items(setup, server):
    server.delay = 0.4
    proc = start_cli(setup["db"], "caption", "set", "--template", setup["template"], "--concurrency", "2")
    try:
        wait_for(lambda: cache_rows(setup["db"]) >= 4)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    answered_before_kill = cache_rows(setup["db"])
    assert 4 <= answered_before_kill < N_ITEMS
    written_before = {p.name.removesuffix("_caption.txt") for p in setup["root"].glob("*_caption.txt")}
    first_run = len(server.chat_requests())
    server.delay = 0.0
    r = cli(setup["db"], "caption", "set", "--template", setup["template"], "--json")
    assert r.returncode == 0, r.stderr
    resent = server.names_sent()[first_run:]
    assert len(resent) == N_ITEMS - answered_before_kill  # nothing answered is sent twice
    assert not set(resent) & written_before
    assert len(list(setup["root"].glob("*_caption.txt"))) == N_ITEMS
    assert len(list(setup["root"].glob("*.tmp*"))) == 0


@pytest.mark.slow
def test_ctrl_c_keeps_what_finished_and_exits_130(setup, server):
    server.delay = 0.5
    proc = start_cli(setup["db"], "caption", "set", "--template", setup["template"], "--concurrency", "2")
    try:
        wait_for(lambda: cache_rows(setup["db"]) >= 2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "cancelled" in stdout
    kept = len(list(setup["root"].glob("*_caption.txt")))
    assert kept >= 2 and kept == cache_rows(setup["db"]) < N_ITEMS
    before = len(server.chat_requests())
    server.delay = 0.0
    r = cli(setup["db"], "caption", "set", "--template", setup["template"], "--json")
    assert json.loads(r.stdout)["requests"] == N_ITEMS - kept == len(server.chat_requests()) - before
