"""One writer at a time per dataset, across every sushitui process.

A caption edit is read (index rows and file) → check → write file → commit index. Two
processes doing that at once lose each other's edits (each rewrites the file from what
it read) and refuse each other's work as "changed by another program". Every sushitui
writer of caption files or of their index rows (editors, bulk edits, the auto-tagger,
the scanner's commit) therefore holds this lock around the whole read-check-write. With
it held, a caption row's recorded file state is the file's state whenever the lock is
free, so a mismatch means a program that is not sushitui changed the file.

The lock is an OS file lock (``flock``; ``msvcrt.locking`` on Windows) on a file beside
the database, named after the dataset folder's real path: the kernel drops it when a
holder dies, so a SIGKILLed writer never leaves it stuck. Waiting is bounded; the error
names who holds it. Waiters mark a file so that a holder that releases between batches
lets them in instead of taking the lock straight back (flock has no fairness).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sushitui.dataset.caption_files import CaptionFileError

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 60.0  # CLI and bulk work: another process's batch takes seconds
EDITOR_WAIT_S = 15.0  # an editor's save: the edit stays unsaved and is retried
_POLL_S = 0.004
_POLITE_WINDOW_NS = 250_000_000  # a waiter marked the lock within this: let it in
_POLITE_PAUSE_S = 0.03


class DatasetBusy(CaptionFileError):
    """Another sushitui process kept the dataset's write lock past the wait limit."""


def _lock_folder() -> Path:
    from sushitui.store import current_database

    try:
        name = current_database().database
    except Exception:  # noqa: BLE001 - no database open (peewee's proxy raises its own types): the lock still works, per user
        log.debug("no database open: per-user lock folder", exc_info=True)
        name = ":memory:"
    # a PostgreSQL catalogue (a URL) has no folder: the per-user one, per machine; two
    # machines editing one caption meet in the conflict check of every write
    if not name or name == ":memory:" or str(name).startswith(("file:", "postgresql:")):
        return Path(tempfile.gettempdir()) / f"sushitui-locks-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    return Path(os.path.abspath(name)).parent / "sushitui-locks"


def lock_path(root: str | os.PathLike) -> Path:
    """The lock file of the dataset folder ``root`` (the same for every name of it)."""
    real = os.path.realpath(os.fspath(root))
    return _lock_folder() / (hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".lock")


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        # flock, not lockf: flock locks belong to the open file, so two threads of one
        # process (the TUI's autosave and a bulk edit worker) exclude each other too
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        text = path.read_text("utf-8", "replace").strip()
        pid, since, what = text.split(" ", 2)
        return f"sushitui (pid {int(pid)}, {what}) has been writing it for {time.time() - float(since):.0f} s"
    except (OSError, ValueError):
        return "another sushitui process is writing it"


@contextmanager
def dataset_write_lock(
    root: str | os.PathLike, *, what: str = "an edit", wait: float = DEFAULT_WAIT_S, name: str | None = None
) -> Iterator[None]:
    """Hold the write lock of the dataset at ``root``; raise DatasetBusy after ``wait`` s."""
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    waiting = path.with_suffix(".waiting")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                label = f"dataset {name!r}" if name else f"the dataset at {root}"
                raise DatasetBusy(
                    f"{label} is busy: {_holder(path)}. Try again when it finishes (waited {wait:.0f} s)."
                )
            try:
                waiting.touch()
            except OSError:
                pass
            time.sleep(_POLL_S)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {time.time():.3f} {what}\n".encode("utf-8", "replace"), 0) if hasattr(
                os, "pwrite"
            ) else None
        except OSError:
            pass  # the holder note is only for the busy message
        try:
            yield
        finally:
            _unlock(fd)
            _let_waiters_in(waiting)
    finally:
        os.close(fd)


def _let_waiters_in(waiting: Path) -> None:
    try:
        marked = os.stat(waiting).st_mtime_ns
    except OSError:
        return
    if time.time_ns() - marked < _POLITE_WINDOW_NS:
        time.sleep(_POLITE_PAUSE_S)
