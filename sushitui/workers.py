"""Worker process pools: the one place that starts child processes for the scanner
(hashing and caption parsing) and the tagger (image decoding).

``process_pool`` returns a ``concurrent.futures.ProcessPoolExecutor`` whose workers

- die with the process that started them. A SIGKILLed ``sushitui dataset add`` used to
  leave its workers running for good: a fork-started worker waits on a task pipe whose
  write end its siblings also hold, so it never sees end-of-file. On Linux each worker
  asks the kernel for SIGKILL when its parent goes (``prctl(PR_SET_PDEATHSIG)``) and
  then checks that the parent had not already gone before it asked. Every worker also
  runs a thread that waits on multiprocessing's parent sentinel (a pipe that reads
  end-of-file when the parent is gone) and exits then: that covers systems without
  prctl and forkserver workers, whose direct parent is the fork server (which itself
  lives on as long as any worker does);
- ignore Ctrl-C: it reaches the whole process group, and the main process turns it into
  a clean cancel that keeps the work done so far; a worker must not die mid-file.
  SIGTERM ends a worker (the default action, also after a fork from the CLI, whose
  SIGTERM handler cancels);
- can be started under Textual, which replaces ``sys.stderr`` with an object without a
  file descriptor: starting the resource tracker or the fork server passes
  ``sys.stderr.fileno()`` to the new process ("bad value(s) in fds_to_keep"). The
  helpers are started with the real stderr (``real_stderr``); the app calls
  ``start_helper_processes`` before Textual takes over so that nothing needs swapping
  later.

The kernel sends the parent-death signal when the *thread* that started a worker ends,
so a pool is created, used and shut down by one thread (as the scanner and the tagger
do). Usable from every layer; no Textual, no printing.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 0.5  # only where there is neither prctl nor a parent sentinel


# --- the real stderr while helper processes start ------------------------------------------


def _stderr_has_fd() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.fileno() >= 0
    except Exception:  # noqa: BLE001 - io.UnsupportedOperation, ValueError (closed), anything a replacement raises
        return False


@contextmanager
def real_stderr() -> Iterator[None]:
    """Point ``sys.stderr`` at the process's real stderr while a helper process starts
    (it is handed ``sys.stderr.fileno()``); nothing changes when stderr already has one."""
    if _stderr_has_fd():
        yield
        return
    saved = sys.stderr
    fallback = None
    if sys.__stderr__ is not None:
        sys.stderr = sys.__stderr__
    else:
        sys.stderr = fallback = open(os.devnull, "w")
    try:
        yield
    finally:
        sys.stderr = saved
        if fallback is not None:
            fallback.close()


def start_helper_processes() -> None:
    """Start multiprocessing's resource tracker now, while ``sys.stderr`` is the real one.

    The app calls this before Textual replaces stderr; every later pool reuses the
    tracker, so starting a pool inside the app never has to swap stderr. Failing here
    is harmless: ``process_pool`` tries again, and the scanner and the tagger work in
    their own process when no pool can start."""
    try:
        from multiprocessing import resource_tracker

        with real_stderr():
            resource_tracker.ensure_running()
    except (OSError, ValueError, RuntimeError):
        pass


# --- start methods ---------------------------------------------------------------------------


def start_method(kind: str = "auto") -> str:
    """The multiprocessing start method for a pool.

    ``auto``: fork while this is the only thread (fast, and the workers share the
    parent's imported modules); from a process that runs threads (the TUI scans from a
    worker thread) forking can dead-lock the child, so spawn. ``forkserver``: a clean
    server process forks the workers (the tagger: onnxruntime runs threads), where the
    platform has one, else spawn."""
    methods = multiprocessing.get_all_start_methods()
    if kind == "auto":
        if threading.active_count() == 1 and "fork" in methods:
            return "fork"
        return "spawn"
    if kind == "forkserver":
        return "forkserver" if sys.platform.startswith("linux") and "forkserver" in methods else "spawn"
    if kind in methods:
        return kind
    raise ValueError(f"unknown start method {kind!r}; use one of auto, {', '.join(methods)}")


def mp_context(kind: str = "auto", preload: Sequence[str] = ()):
    """The multiprocessing context for ``start_method(kind)``; ``preload`` lists modules
    the fork server imports once so that its workers start with them."""
    ctx = multiprocessing.get_context(start_method(kind))
    if ctx.get_start_method() == "forkserver" and preload:
        ctx.set_forkserver_preload(list(preload))
    return ctx


def _forkserver_pid() -> int | None:
    from multiprocessing import forkserver

    return getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)


# --- the pool --------------------------------------------------------------------------------


def process_pool(
    max_workers: int,
    *,
    method: str = "auto",
    preload: Sequence[str] = (),
    initializer: Callable[..., object] | None = None,
    initargs: tuple = (),
    death_signal: bool = True,
) -> cf.ProcessPoolExecutor:
    """A process pool whose workers die with this process and ignore Ctrl-C.

    Raises what ``ProcessPoolExecutor`` raises when processes cannot start (OSError
    without /dev/shm, ...); callers fall back to working in this process.
    ``death_signal=False`` leaves out the prctl request (tests of the fallback)."""
    from multiprocessing import forkserver, resource_tracker

    ctx = mp_context(method, preload)
    use_forkserver = ctx.get_start_method() == "forkserver"

    def start() -> cf.ProcessPoolExecutor:
        resource_tracker.ensure_running()
        parent_pid: int | None = os.getpid()
        if use_forkserver:
            forkserver.ensure_running()
            parent_pid = _forkserver_pid()
        # looked up at call time so that a test can replace the class
        return cf.ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=ctx,
            initializer=_start_worker,
            initargs=(parent_pid, death_signal, initializer, initargs),
        )

    # The resource tracker and the fork server start here, with a real stderr; later
    # submits (which start spawn/forkserver workers) reuse them. Once they run, stderr is
    # left alone: under Textual, another thread's output would reach the screen.
    running = getattr(resource_tracker._resource_tracker, "_fd", None) is not None and (
        not use_forkserver or _forkserver_pid() is not None
    )
    if running:
        try:
            return start()
        except ValueError:  # a helper had died and restarting it wanted the stderr fd
            pass
    with real_stderr():
        return start()


# --- inside a worker -------------------------------------------------------------------------


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(parent_pid: int | None, death_signal: bool = True) -> bool:
    """Make this worker exit when its parent does; exits at once when the parent is
    already gone. Returns whether the kernel will send the signal (prctl took)."""
    armed = False
    prctl = _prctl() if death_signal else None
    if prctl is not None:
        armed = prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        # The parent may have died between our fork and the prctl: then we were already
        # re-parented and no signal will ever come.
        if armed and parent_pid is not None and os.getppid() != parent_pid:
            os._exit(1)
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if parent is not None and sentinel is not None and not parent.is_alive():
        os._exit(1)
    if sentinel is not None:
        threading.Thread(target=_exit_when_readable, args=(sentinel,), name="parent-watch", daemon=True).start()
    elif not armed:
        threading.Thread(target=_exit_when_reparented, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    return armed


def _exit_when_readable(sentinel: int) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])  # end-of-file: every copy of the parent's end is closed
    os._exit(1)


def _exit_when_reparented(ppid: int) -> None:
    while os.getppid() == ppid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _start_worker(parent_pid: int | None, death_signal: bool, initializer, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the CLI's "SIGTERM cancels" handler, which means nothing
    # here: SIGTERM (the pool's own terminate(), a service manager stopping the group)
    # ends a worker.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent_pid, death_signal)
    if initializer is not None:
        initializer(*initargs)
