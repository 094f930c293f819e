"""Decode in parallel worker processes, infer in batches, overlapped (AT-4).

JPEG decoding is the bottleneck (≈70 ms per 1024×1536 JPEG on one core), so a pool of
worker processes decodes ahead of the model through a bounded window of in-flight
files (memory stays flat) while the consumer fills a preallocated batch buffer and
runs the session. Each worker returns a uint8 (S, S, 3) array — 4× less to pickle
than float32. Failures come back as data with the file's index.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from sushitui.progress import CancelToken
from sushitui.tagger.preprocess import Decoded, decode_file, to_model_input

# Below this many files a process pool costs more to start than it saves.
MIN_FILES_FOR_POOL = 8


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


def _context():
    # forkserver: never fork a process that already runs threads (onnxruntime, Textual,
    # SQLite); the server forks clean workers with numpy/PIL preloaded.
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["sushitui.tagger.preprocess"])
        return ctx
    return multiprocessing.get_context("spawn")


def decode_stream(
    paths: Sequence[str], size: int, *, draft: bool = False, workers: int | None = None,
    want_hash: bool = False, window: int = 64, cancel: CancelToken | None = None,
) -> Iterator[Decoded]:
    """Decoded files in completion order (``Decoded.index`` is the position in ``paths``)."""
    workers = default_workers() if workers is None else workers
    if workers <= 0 or len(paths) < MIN_FILES_FOR_POOL:
        for i, p in enumerate(paths):
            if cancel is not None and cancel.cancelled:
                return
            yield decode_file(i, p, size, draft, want_hash)
        return
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_context())
    try:
        pending: set[cf.Future] = set()
        nxt = 0
        window = max(window, 2 * workers)
        while nxt < len(paths) or pending:
            while nxt < len(paths) and len(pending) < window:
                pending.add(pool.submit(decode_file, nxt, paths[nxt], size, draft, want_hash))
                nxt += 1
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                try:
                    yield fut.result()
                except Exception as exc:  # a worker that died (e.g. killed for memory)
                    yield Decoded(-1, error=f"decode worker failed: {exc}")
            if cancel is not None and cancel.cancelled:
                return
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    paths: Sequence[str], runner, *, draft: bool = False, workers: int | None = None, want_hash: bool = False,
    cancel: CancelToken | None = None, on_decoded: Callable[[int], None] | None = None,
) -> Iterator[BatchResult | Failure]:
    """Tag files: yields a BatchResult per model batch and a Failure per unreadable file."""
    b, size = runner.batch_size, runner.size
    pix = np.empty((b, size, size, 3), np.uint8)
    tensor = np.empty(runner.input_shape(b), np.float32)
    idx: list[int] = []
    shas: list[str | None] = []

    def flush() -> BatchResult:
        n = len(idx)
        x = to_model_input(pix[:n], runner.family, tensor[:n])
        result = BatchResult(list(idx), list(shas), runner.predict(x))
        idx.clear()
        shas.clear()
        return result

    stream = decode_stream(paths, size, draft=draft, workers=workers, want_hash=want_hash, window=max(64, 4 * b), cancel=cancel)
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
