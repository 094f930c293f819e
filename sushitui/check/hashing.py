"""Decode each image once: a 64-bit perceptual hash and the facts a trainer trips over.

The hash is the DCT pHash (as in the ``imagehash`` library's ``phash``: 32×32 grey, 2-D
DCT-II, the 8×8 lowest frequencies against their median). JPEGs decode through
``draft()`` at 1/8 scale, since 32×32 needs no more, so hashing costs about what that
decode costs; workers run one per core.

Facts: Pillow mode, bits per sample (16-bit PNGs open as 8-bit modes in Pillow, so the
PNG header's bit depth is read from the tile), EXIF orientation, frame count, and the
error when decoding fails. Rows are keyed by the file's sha256 (the scanner's), so a
file present twice, or a dataset removed and added again, is decoded once.

Near duplicates: pairs within a Hamming distance found without comparing all pairs. By
the pigeonhole principle two hashes within distance ``k`` agree exactly on at least one
of ``k + 1`` disjoint bands of bits; candidates are the pairs sharing a band value
(sorted runs, numpy), each checked with a popcount. No Textual, no printing.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

HASH_VERSION = 1
HASH_SIZE = 8
_IMG = 32
CHUNK = 64  # files per worker task
# a worker process costs ~0.5 s to start (Python, numpy, Pillow), the time of decoding some
# hundreds of files: fewer files than this are hashed in-process (measured on 2 cores: 1000
# JPEGs hash 1.9× faster on 2 workers than in-process when the machine is quiet)
MIN_FILES_FOR_WORKERS = 500


@dataclass
class ImageFacts:
    sha256: str
    phash: int | None  # signed 64-bit (SQLite INTEGER)
    mode: str | None = None
    bits: int | None = None
    orientation: int | None = None
    frames: int = 1
    error: str | None = None


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    return m.astype(np.float64)


_DCT = _dct_matrix(_IMG)
_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def phash_pixels(grey32: np.ndarray) -> int:
    """pHash of a 32×32 grey array, as a signed 64-bit integer."""
    d = _DCT @ grey32.astype(np.float64) @ _DCT.T
    low = d[:HASH_SIZE, :HASH_SIZE].ravel()
    bits = (low > np.median(low)).astype(np.uint64)
    value = int((bits * _WEIGHTS).sum(dtype=np.uint64))
    return value - (1 << 64) if value >= 1 << 63 else value


def _bits(img) -> int:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N") or mode.endswith(";16"):
        return 16
    if mode in ("I", "F"):
        return 32
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:
            return 16
    if mode == "1":
        return 1
    return 8


def inspect_file(path: str | os.PathLike, sha256: str) -> ImageFacts:
    """Open, read the facts, decode small and hash. Never raises for a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            # an MPO (camera JPEG with a preview or depth picture) is a still image to every trainer
            frames = 1 if img.format == "MPO" else int(getattr(img, "n_frames", 1) or 1)
            facts = ImageFacts(sha256, None, mode=img.mode, bits=_bits(img), frames=frames)
            try:
                orientation = img.getexif().get(0x0112)
                facts.orientation = int(orientation) if orientation is not None else None
            except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
                facts.orientation = None
            if img.format == "JPEG":
                img.draft("L", (_IMG * 2, _IMG * 2))
            grey = img.convert("L") if img.mode != "L" else img
            grey = grey.resize((_IMG, _IMG), Image.Resampling.BILINEAR, reducing_gap=2.0)
            facts.phash = phash_pixels(np.asarray(grey, dtype=np.float64))
            return facts
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return ImageFacts(sha256, None, error=f"{type(exc).__name__}: {exc}"[:300])
    except MemoryError:
        return ImageFacts(sha256, None, error="out of memory while decoding")


def _inspect_chunk(tasks: Sequence[tuple[str, str]]) -> list[ImageFacts]:
    return [inspect_file(path, sha) for path, sha in tasks]


def decode_floor(path: str | os.PathLike) -> None:
    """What the benchmark compares against: open, ``draft()`` and decode, nothing more."""
    from PIL import Image

    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("L", (_IMG * 2, _IMG * 2))
        img.load()


def hash_files(
    tasks: Sequence[tuple[str, str]],
    *,
    workers: int | None = None,
    on_done: Callable[[list[ImageFacts]], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[ImageFacts]:
    """Hash (path, sha256) pairs, in worker processes when there are enough to pay for them
    (``MIN_FILES_FOR_WORKERS``, unless ``workers`` is given). ``on_done`` receives each
    finished chunk (to store it as it comes)."""
    results: list[ImageFacts] = []
    if not tasks:
        return results
    chunks = [tasks[i : i + CHUNK] for i in range(0, len(tasks), CHUNK)]
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    pool = None
    if n_workers > 1 and len(tasks) >= (MIN_FILES_FOR_WORKERS if workers is None else 2 * CHUNK):
        try:
            from sushitui.workers import process_pool

            pool = process_pool(n_workers, method="auto")
        except (OSError, ValueError, ImportError):
            pool = None
    if pool is None:
        for chunk in chunks:
            if cancelled and cancelled():
                break
            done = _inspect_chunk(chunk)
            results.extend(done)
            if on_done:
                on_done(done)
        return results
    import concurrent.futures as cf

    try:
        pending = set()
        it = iter(chunks)
        for chunk in it:
            pending.add(pool.submit(_inspect_chunk, chunk))
            if len(pending) >= n_workers * 3:
                break
        while pending:
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                done = fut.result()
                results.extend(done)
                if on_done:
                    on_done(done)
            if cancelled and cancelled():
                for fut in pending:
                    fut.cancel()
                break
            for chunk in it:
                pending.add(pool.submit(_inspect_chunk, chunk))
                if len(pending) >= n_workers * 3:
                    break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


# --- store ------------------------------------------------------------------------------------


def missing_hashes(dataset_id: int) -> list[tuple[int, str, str]]:
    """(item id, image path relative to the dataset, sha256) of the dataset's images that
    have no current ``image_hash`` row."""
    from sushitui.store import current_database

    rows = (
        current_database()
        .execute_sql(
            "SELECT i.id, i.image_path, i.sha256 FROM item i LEFT JOIN image_hash h ON h.sha256 = i.sha256 "
            "AND h.version = ? WHERE i.dataset_id = ? AND i.image_path IS NOT NULL AND i.sha256 IS NOT NULL "
            "AND h.sha256 IS NULL ORDER BY i.id",
            (HASH_VERSION, dataset_id),
        )
        .fetchall()
    )
    seen: set[str] = set()
    out = []
    for item_id, rel, sha in rows:
        if sha not in seen:  # the same bytes twice: decode once
            seen.add(sha)
            out.append((item_id, rel, sha))
    return out


def store_facts(facts: Iterable[ImageFacts]) -> int:
    from sushitui.store import current_database, write_transaction

    rows = [
        (f.sha256, HASH_VERSION, f.phash, f.mode, f.bits, f.orientation, f.frames, f.error, time.time()) for f in facts
    ]
    if not rows:
        return 0
    with write_transaction():
        current_database().connection().executemany(
            'INSERT OR REPLACE INTO "image_hash" ("sha256", "version", "phash", "mode", "bits", "orientation", '
            '"frames", "error", "created_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
            rows,
        )
    return len(rows)


def ensure_hashes(
    dataset_id: int,
    root: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Hash every image of the dataset that has no current row; returns how many were hashed."""
    todo = missing_hashes(dataset_id)
    if not todo:
        return 0
    root = Path(root)
    tasks = [(str(root / rel), sha) for _id, rel, sha in todo]
    done = 0

    def save(chunk: list[ImageFacts]) -> None:
        nonlocal done
        store_facts(chunk)
        done += len(chunk)
        if progress:
            progress(done, len(tasks))

    hash_files(tasks, workers=workers, on_done=save, cancelled=cancelled)
    return done


# --- near duplicates ---------------------------------------------------------------------------


def _bands(m: int) -> list[tuple[int, int]]:
    """``m`` disjoint (shift, width) bands covering the 64 bits, widths differing by one at most."""
    base, extra = divmod(64, m)
    out, shift = [], 0
    for i in range(m):
        width = base + (1 if i < extra else 0)
        out.append((shift, width))
        shift += width
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


_MAX_TABLE_BITS = 22  # a band this wide or narrower is looked up in a table of 2**width counts
# the cost of one pass over every hash, in candidate checks per hash (measured: a pass is
# ~70 ns a hash, a candidate ~50 ns): a table lookup, or two binary searches for wider bands
_PASS_COST_TABLE = 1.5
_PASS_COST_SEARCH = 15


def _masks(width: int, radius: int) -> list[int]:
    from itertools import combinations

    return [sum(1 << b for b in bits) for r in range(radius + 1) for bits in combinations(range(width), r)]


def _plan(n: int, k: int) -> int:
    """How many bands for the multi-index search. Two hashes within ``k`` bits differ in at
    most ``k // m`` bits of one of ``m`` bands (pigeonhole). More bands mean fewer masks to
    try per band but more candidate pairs sharing a narrow band; the estimate (for evenly
    spread hashes) picks the cheaper. ``m = k + 1`` (exact bands) always qualifies."""
    best: tuple[float, int] = (float("inf"), k + 1)
    for m in range(1, k + 2):
        width = -(-64 // m)  # the widest band
        r = k // m
        masks = sum(math.comb(width, i) for i in range(r + 1))
        if masks > 4096:
            continue
        per_pass = _PASS_COST_TABLE if width <= _MAX_TABLE_BITS else _PASS_COST_SEARCH
        candidates = m * masks * n * n / 2 ** (width + 1)
        cost = m * masks * n * per_pass + candidates
        if cost < best[0]:
            best = (cost, m)
    return best[1]


def near_pairs(hashes: Sequence[int] | np.ndarray, max_distance: int = 6) -> np.ndarray:
    """Index pairs (i < j) whose hashes differ in at most ``max_distance`` bits, as an
    (n, 3) array of i, j, distance, sorted by i then j. Exact for any input: every pair
    within the distance is a candidate of some band (pigeonhole), and every candidate is
    checked with a popcount.

    Multi-index hashing: the 64 bits are cut into ``m`` bands; a pair is a candidate when
    one band of the two differs in at most ``k // m`` bits. Each band's keys are counted in
    a table (bincount, cumulative starts), and for each mask of at most ``k // m`` bits every
    hash looks up the hashes whose band equals its own XOR the mask (bands wider than a table
    are binary-searched in their sorted keys): all in numpy, no comparing of all pairs
    (100k evenly spread hashes at k=6: 4 bands of 16 bits, 17 masks each)."""
    h = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    n = len(h)
    if n < 2:
        return np.empty((0, 3), dtype=np.int64)
    k = max_distance
    if k >= 32 or n <= 2048:
        return _pairs_brute(h, k)
    m = _plan(n, k)
    radius = k // m
    found: list[np.ndarray] = []
    for shift, width in _bands(m):
        keys = (h >> np.uint64(shift)) & np.uint64((1 << width) - 1) if width < 64 else h
        order = np.argsort(keys, kind="stable")
        if width <= _MAX_TABLE_BITS:
            table_keys = keys.astype(np.int64)
            counts = np.bincount(table_keys, minlength=1 << width)
            starts = np.cumsum(counts) - counts
            for mask in _masks(width, radius):
                q = table_keys ^ mask if mask else table_keys
                _band_pass(h, k, order, starts[q], counts[q], found)
        else:
            sorted_keys = keys[order]
            for mask in _masks(width, radius):
                wanted = keys ^ np.uint64(mask) if mask else keys
                lo = np.searchsorted(sorted_keys, wanted, side="left")
                _band_pass(h, k, order, lo, np.searchsorted(sorted_keys, wanted, side="right") - lo, found)
    if not found:
        return np.empty((0, 3), dtype=np.int64)
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0)  # a pair close in several bands was found once per band


_MAX_CANDIDATES = 4_000_000  # per numpy step: bounds memory when many hashes share a band


def _band_pass(
    h: np.ndarray, k: int, order: np.ndarray, lo: np.ndarray, cnt: np.ndarray, found: list[np.ndarray]
) -> None:
    """Check hash ``i`` against the ``cnt[i]`` hashes ``order[lo[i]:lo[i] + cnt[i]]``, for
    every ``i``, in steps of a bounded number of candidates."""
    ends = np.cumsum(cnt)
    n = len(cnt)
    a = 0
    while a < n:
        base = int(ends[a - 1]) if a else 0
        # the queries whose candidates fit in one step (at least one query)
        b = max(a + 1, int(np.searchsorted(ends, base + _MAX_CANDIDATES, side="right")))
        c = cnt[a:b]
        total = int(ends[b - 1]) - base
        a_next = b
        if total:
            i_idx = np.repeat(np.arange(a, b, dtype=np.int64), c)
            # each candidate's place in its run of equal keys
            offsets = np.arange(total, dtype=np.int64) - np.repeat(ends[a:b] - c - base, c)
            j_idx = order[np.repeat(lo[a:b], c) + offsets]
            keep = i_idx < j_idx  # each pair once (a mask finds it from both ends)
            i_idx, j_idx = i_idx[keep], j_idx[keep]
            d = _popcount(h[i_idx] ^ h[j_idx])
            close = d <= k
            if close.any():
                found.append(np.stack([i_idx[close], j_idx[close], d[close].astype(np.int64)], axis=1))
        a = a_next


def _pairs_within(members: np.ndarray, h: np.ndarray, k: int) -> np.ndarray:
    members = np.sort(members)
    m = len(members)
    out = []
    step = max(1, 4_000_000 // max(m, 1))
    for a in range(0, m, step):
        block = members[a : a + step]
        d = _popcount(h[block][:, None] ^ h[members][None, :])
        ii, jj = np.nonzero(d <= k)
        i_idx, j_idx = block[ii], members[jj]
        keep = i_idx < j_idx
        if keep.any():
            out.append(np.stack([i_idx[keep], j_idx[keep], d[ii[keep], jj[keep]].astype(np.int64)], axis=1))
    return np.concatenate(out) if out else np.empty((0, 3), dtype=np.int64)


def _pairs_brute(h: np.ndarray, k: int) -> np.ndarray:
    return _pairs_within(np.arange(len(h)), h, k)


def groups_from_pairs(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (union-find) of the pairs; only groups of two or more."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _d in pairs.tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i, j, _d in pairs.tolist():
        for x in (i, j):
            groups.setdefault(find(x), [])
    for x in range(n):
        r = find(x)
        if r in groups:
            groups[r].append(x)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
