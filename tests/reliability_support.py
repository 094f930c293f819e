"""Helpers for the reliability tests (issue 10): CLI subprocesses killed at random
points, snapshots of caption files, and the consistency checks every crash test ends
with (SQLite integrity, a reindex that agrees with the files). Not a test module."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sushitui.dataset.caption_files import TEMP_MARKER, read_caption

CLI = [sys.executable, "-m", "sushitui"]


def cli_env(db_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SUSHITUI_DB": str(db_path), **extra}


def run_cli(db_path: Path, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env or cli_env(db_path), capture_output=True, text=True, timeout=timeout)


def spawn_cli(db_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args], env=env or cli_env(db_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds; True when it was still running (a real
    crash), False when it had already finished."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


def kill_once(proc: subprocess.Popen, started, delay: float, timeout: float = 30) -> bool:
    """Wait until ``started()`` is true (the command has begun writing), then SIGKILL
    ``proc`` after ``delay`` more seconds. True when it was still running."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not started() and time.monotonic() < deadline:
        time.sleep(0.005)
    return kill_after(proc, delay)


def caption_snapshot(root: Path) -> dict[str, bytes]:
    """Every visible ``.txt`` under ``root`` (relative path → bytes); temp files apart."""
    out = {}
    for p in root.rglob("*.txt"):
        if TEMP_MARKER not in p.name:
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (images too)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def temp_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(f"*{TEMP_MARKER}*"))


def assert_database_ok(db_path: Path) -> None:
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


def reindex_and_check(db_path: Path, name: str, n_items: int) -> dict:
    """After a crash: reindex, then the index says what the files say, nothing was added
    or lost, stale temp files are not items, and a second reindex finds nothing to do.
    Returns the first report as a dict."""
    from sushitui.dataset.registry import get_dataset, reindex
    from sushitui.store import Caption, Item, open_database

    db = open_database(db_path)
    try:
        first = reindex(name)
        assert first.items_added == 0 and first.items_removed == 0, first
        ds = get_dataset(name)
        root = Path(ds.root_path)
        items = list(Item.select().where(Item.dataset == ds.id))
        assert len(items) == n_items
        assert not [i for i in items if TEMP_MARKER in (i.image_path or "")]
        caps = list(Caption.select().join(Item).where(Item.dataset == ds.id))
        for c in caps:
            if c.file_path:
                assert TEMP_MARKER not in c.file_path
                assert c.content == read_caption(root / c.file_path).text, c.file_path
        second = reindex(name)
        assert (second.items_added, second.items_updated, second.items_removed) == (0, 0, 0), second
        return first.to_dict()
    finally:
        db.close()


def register(db_path: Path, root: Path, name: str) -> int:
    """Scan ``root`` as dataset ``name``; returns the number of items."""
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import open_database

    db = open_database(db_path)
    try:
        _, report = add_dataset(DatasetSettings(name=name, root_path=str(root)))
        return report.items_total or report.items_added
    finally:
        db.close()


def own_peak_kb() -> int:
    """This process's own peak resident set in KiB. ``VmHWM`` belongs to the memory
    image, which exec starts afresh; ``ru_maxrss`` is kept across exec, so a child that
    subprocess started via vfork reports the *parent's* (pytest's) peak when that is
    higher."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# own_peak_kb, as a snippet a child process runs after its code (no import needed)
_PRINT_OWN_PEAK = (
    "import sys as _s, resource as _r\n"
    "try:\n"
    "    _k = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])\n"
    "except (OSError, StopIteration):\n"
    "    _k = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss\n"
    "print('PEAK_KB', _k, file=_s.stderr)\n"
)


def peak_rss_mb(
    code: str, *args: str, timeout: float = 120, env: dict | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``code`` in a fresh interpreter; return its peak RSS (MiB) and the result.
    The child prints its own peak (``own_peak_kb``) last, so the measure is of that
    process only."""
    wrapped = code + "\n" + _PRINT_OWN_PEAK
    res = subprocess.run(
        [sys.executable, "-c", wrapped, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    peak = 0.0
    for line in res.stderr.splitlines():
        if line.startswith("PEAK_KB "):
            peak = int(line.split()[1]) / 1024
    return peak, res
