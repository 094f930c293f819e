"""Decode in parallel worker processes, infer in batches, overlapped (AT-4).

JPEG decoding is the bottleneck (≈70 ms per 1024×1536 JPEG on one core), so a pool of
worker processes decodes ahead of the model through a bounded window of in-flight
files (memory stays flat) while the consumer fills a preallocated batch buffer and
runs the session. Each worker returns a uint8 (S, S, 3) array — 4× less to pickle
than float32. Failures come back as data with the file's index.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, Sequence

import numpy as np

from sushitui.progress import CancelToken
from sushitui.tagger.preprocess import Decoded, decode_file, layout_to_input
from sushitui.workers import mp_context, process_pool

# Below this many files a process pool costs more to start than it saves.
MIN_FILES_FOR_POOL = 8


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


# The decode workers are forked by a fork server (never fork a process that already runs
# threads: onnxruntime, Textual, SQLite) that has numpy/PIL preloaded.
POOL_METHOD = "forkserver"
POOL_PRELOAD = ("sushitui.tagger.preprocess",)


def _context():
    """The multiprocessing context of the decode pool (benchmarks use it too)."""
    return mp_context(POOL_METHOD, POOL_PRELOAD)


def decode_stream(
    paths: Sequence[str],
    size: int,
    *,
    draft: bool = False,
    workers: int | None = None,
    want_hash: bool = False,
    window: int = 64,
    cancel: CancelToken | None = None,
    notes: list[str] | None = None,
    family: str | None = None,
) -> Generator[Decoded, None, None]:
    """Decoded files in completion order (``Decoded.index`` is the position in ``paths``).

    If the worker pool cannot run (e.g. a script without the ``if __name__ ==
    "__main__"`` guard, or no /dev/shm), decoding continues in-process and a note says so."""
    workers = default_workers() if workers is None else workers
    if workers <= 0 or len(paths) < MIN_FILES_FOR_POOL:
        yield from _decode_serial(paths, range(len(paths)), size, draft, want_hash, cancel, family)
        return
    yielded: set[int] = set()
    pool = None
    try:
        # workers die with this process and ignore Ctrl-C (sushitui.workers)
        pool = process_pool(workers, method=POOL_METHOD, preload=POOL_PRELOAD)
        pending: set[cf.Future] = set()
        nxt = 0
        window = max(window, 2 * workers)
        while nxt < len(paths) or pending:
            while nxt < len(paths) and len(pending) < window:
                pending.add(pool.submit(decode_file, nxt, paths[nxt], size, draft, want_hash, family))
                nxt += 1
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                d = fut.result()  # decode_file never raises; a dead pool raises BrokenProcessPool
                yielded.add(d.index)
                yield d
            if cancel is not None and cancel.cancelled:
                return
    except (BrokenProcessPool, OSError, RuntimeError, ValueError) as exc:
        if notes is not None:
            notes.append(
                f"decode worker processes unavailable ({type(exc).__name__}: {exc}); decoding in the main process"
            )
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
        rest = [i for i in range(len(paths)) if i not in yielded]
        yield from _decode_serial(paths, rest, size, draft, want_hash, cancel, family)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _decode_serial(paths, indices, size, draft, want_hash, cancel, family=None) -> Iterator[Decoded]:
    for i in indices:
        if cancel is not None and cancel.cancelled:
            return
        yield decode_file(i, paths[i], size, draft, want_hash, family)


@dataclass
class BatchResult:
    indices: list[int]  # positions in the input paths
    shas: list[str | None]
    probs: np.ndarray  # (len(indices), labels)


@dataclass
class Failure:
    index: int
    sha256: str | None
    reason: str


def run_pipeline(
    paths: Sequence[str],
    runner,
    *,
    draft: bool = False,
    workers: int | None = None,
    want_hash: bool = False,
    cancel: CancelToken | None = None,
    on_decoded: Callable[[int], None] | None = None,
    notes: list[str] | None = None,
) -> Iterator[BatchResult | Failure]:
    """Tag files: yields a BatchResult per model batch and a Failure per unreadable file."""
    b, size = runner.batch_size, runner.size
    pix = np.empty(runner.input_shape(b), np.uint8)  # decoded straight into the family layout
    tensor = np.empty(runner.input_shape(b), np.float32)
    idx: list[int] = []
    shas: list[str | None] = []

    def flush() -> BatchResult:
        n = len(idx)
        if n < b:
            pix[n:] = 0  # pad the short last batch in place: fixed shapes, no reallocation
        x = layout_to_input(pix, runner.family, tensor)
        result = BatchResult(list(idx), list(shas), runner.predict(x, valid=n))
        idx.clear()
        shas.clear()
        return result

    stream = decode_stream(
        paths,
        size,
        draft=draft,
        workers=workers,
        want_hash=want_hash,
        window=max(64, 4 * b),
        cancel=cancel,
        notes=notes,
        family=runner.family,
    )
    try:
        for d in stream:
            if on_decoded is not None:
                on_decoded(d.index)
            if d.error is not None or d.pixels is None:
                yield Failure(d.index, d.sha256, d.error or "not decoded")
                continue
            pix[len(idx)] = d.pixels
            idx.append(d.index)
            shas.append(d.sha256)
            if len(idx) == b:
                yield flush()
            if cancel is not None and cancel.cancelled:
                break
        if idx:
            yield flush()
    finally:
        stream.close()
