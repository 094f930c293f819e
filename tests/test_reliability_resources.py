"""NF-5 resources: a full disk during a save, a bulk edit or an export gives a clear
message and leaves the previous files intact; a read-only dataset folder can be browsed
and saving there is refused with the reason.

The full disk is real where possible: a 512 KiB tmpfs, filled up (the tests run as root
here, which may mount). Where mounting is not allowed the same CLI runs with writes
under that folder failing with ENOSPC (a small prelude, below) -- the assertions are the
same either way."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import (
    assert_database_ok,
    caption_snapshot,
    cli_env,
    register,
    reindex_and_check,
    temp_files,
    tree_snapshot,
)

pytestmark = pytest.mark.slow  # long stress test: skipped by the quick run, run by CI

# Fallback when tmpfs cannot be mounted: os.write/os.fsync on files under FULL_DIR fail
# as they would on a full disk.
ENOSPC_PRELUDE = """
import builtins, errno, os, runpy, sys
_full = os.environ["SUSHITUI_TEST_FULL_DIR"]
def _under(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(_full)
    except OSError:
        return False
def _nospace(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")
class _Full:
    def __init__(self, f):
        self._f = f
    write = flush = _nospace
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self._f.close()
    def __getattr__(self, name):
        return getattr(self._f, name)
def _wrap(opener):
    def wrapped(*a, **k):
        f = opener(*a, **k)
        mode = k.get("mode", a[1] if len(a) > 1 else "r")
        if any(m in mode for m in "wax+") and _under(f.fileno()):
            return _Full(f)
        return f
    return wrapped
_write, _fsync = os.write, os.fsync
os.write = lambda fd, data: _nospace() if _under(fd) else _write(fd, data)
os.fsync = lambda fd: _nospace() if _under(fd) else _fsync(fd)
builtins.open, os.fdopen = _wrap(builtins.open), _wrap(os.fdopen)
sys.argv = ["sushitui", *sys.argv[1:]]
runpy.run_module("sushitui", run_name="__main__")
"""


@contextlib.contextmanager
def full_disk(path: Path, size_kib: int = 512):
    """A folder on a small filesystem that is full. Yields True when it is a real tmpfs,
    False when writes under it are made to fail instead (see ENOSPC_PRELUDE)."""
    path.mkdir(parents=True, exist_ok=True)
    res = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], capture_output=True, text=True
        )
        if os.geteuid() == 0 and not os.environ.get("SUSHITUI_TEST_NO_MOUNT")
        else None
    )
    real = res is not None and res.returncode == 0
    try:
        yield real
    finally:
        if real:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_up(path: Path) -> None:
    with open(path / "filler.bin", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError):  # the last partial blocks too
        with open(path / "filler2.bin", "wb") as fh:
            while True:
                fh.write(b"\0" * 512)
                fh.flush()


def run_on_full_disk(real: bool, full_dir: Path, db_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = cli_env(db_path, SUSHITUI_TEST_FULL_DIR=str(full_dir))
    cmd = [sys.executable, "-m", "sushitui", *args] if real else [sys.executable, "-c", ENOSPC_PRELUDE, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _small_dataset(root: Path, n: int = 12) -> None:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / f"s{i:02d}.png")
        (root / f"s{i:02d}.txt").write_text(f"keep_{i}, solo, " + ", ".join(f"t{k}" for k in range(20)))


def test_full_disk_during_cli_bulk_edit_keeps_every_caption(tmp_path, db_path):
    disk = tmp_path / "disk"
    with full_disk(disk) as real:
        root = disk / "ds"
        _small_dataset(root)
        n = register(db_path, root, "full")
        before = caption_snapshot(root)
        if real:
            fill_up(disk)
        res = run_on_full_disk(real, disk, db_path, "tag", "add", "full", "one_more_tag")
        assert res.returncode != 0
        said = res.stdout + res.stderr  # problems are listed with the report on stdout
        assert "disk is full" in said and "previous file is intact" in said, said
        assert "Traceback" not in said
        assert caption_snapshot(root) == before  # nothing truncated, nothing half-written
        assert temp_files(root) == []  # the failed temp files were removed
        assert_database_ok(db_path)
        report = reindex_and_check(db_path, "full", n)
        assert report["items_updated"] == 0  # the index was not changed either


def test_full_disk_during_export_leaves_nothing_and_says_why(tmp_path, db_path):
    src = tmp_path / "src"
    _small_dataset(src, 30)
    register(db_path, src, "exp")
    source_before = tree_snapshot(src)
    disk = tmp_path / "disk"
    with full_disk(disk) as real:
        if real:
            fill_up(disk)
        out = disk / "out"
        res = run_on_full_disk(real, disk, db_path, "export", "exp", str(out), "--copy")
        assert res.returncode != 0
        err = res.stderr.lower()
        assert ("full" in err or "no space" in err) and "traceback" not in err, res.stderr
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert not [p for p in out.rglob("*.txt")] if out.exists() else True, left  # never half-published
    assert tree_snapshot(src) == source_before


def _detail_app(root: Path, captions: dict[str, str]):
    from detail_helpers import ScreenApp, make_dataset

    from sushitui.tui.screens.item_detail import ItemDetailScreen

    ds, ids = make_dataset(root, captions)
    notes: list[str] = []

    class App(ScreenApp):
        def notify(self, message, *, title="", severity="information", **kw):
            notes.append(f"{severity}: {title} {message}")
            return super().notify(message, title=title, severity=severity, **kw)

    return App(lambda: ItemDetailScreen(ids[0], ids)), notes


def test_full_disk_during_tui_save_keeps_file_and_edit(db, tmp_path, monkeypatch):
    from tui_support import settle

    root = tmp_path / "d"
    app, notes = _detail_app(root, {"a": "1girl, solo", "b": "cat"})
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(root)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            monkeypatch.setattr(os, "fsync", fsync)
            await pilot.press("a", *"smile", "enter", "escape", "ctrl+s")
            await settle(pilot)
            await pilot.pause(0.3)
            assert app.screen.editor.dirty and app.screen.editor.tags == ["1girl", "solo", "smile"]  # edit kept
            monkeypatch.setattr(os, "fsync", real_fsync)  # space freed: saving works again
            await pilot.press("ctrl+s")
            await settle(pilot)
            await pilot.pause(0.3)
            return (root / "a.txt").read_text()

    text_before_retry = (root / "a.txt").read_text()
    saved = asyncio.run(go())
    assert text_before_retry == "1girl, solo"
    assert any("disk is full" in n and n.startswith("error") for n in notes), notes
    assert saved == "1girl, solo, smile"
    assert temp_files(root) == []


def test_read_only_folder_browses_and_refuses_saving_with_the_reason(db, tmp_path, monkeypatch):
    """Tests run as root, for whom permission bits do not bind, so the read-only folder
    is simulated where sushitui meets it: creating the temporary file next to the caption
    fails with EACCES / EROFS as it would on a read-only folder or mount."""
    import tempfile

    from detail_helpers import screen_text
    from tui_support import settle

    from sushitui.dataset import caption_files

    root = tmp_path / "ro"
    app, notes = _detail_app(root, {"a": "1girl, solo", "b": "cat, dog"})
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*a, dir=None, **kw):
        if dir is not None and str(dir).startswith(str(root)):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*a, dir=dir, **kw)

    monkeypatch.setattr(caption_files.tempfile, "mkstemp", mkstemp)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert "1girl" in screen_text(app)  # browsing works
            await pilot.press("right")  # next item: nothing to save, navigation works
            await settle(pilot)
            assert app.screen.view.base_name == "b" and "dog" in screen_text(app)
            await pilot.press("a", *"smile", "enter", "escape", "ctrl+s")
            await settle(pilot)
            await pilot.pause(0.3)
            assert app.screen.editor.dirty  # the edit is not thrown away

    asyncio.run(go())
    assert (root / "b.txt").read_text() == "cat, dog"
    assert any("read-only" in n and n.startswith("error") for n in notes), notes
