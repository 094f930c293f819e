"""Tagger result cache (AT-5): probabilities by image SHA-256 + model version.

Stored sparse — only scores ≥ FLOOR, plus every score of the argmax categories
(rating, quality) — because a dense cl_tagger row is 42,163 floats (165 KiB) per image
while an image has a few hundred labels above 1 %. Any threshold ≥ FLOOR re-filters
from the cache exactly; a lower one needs inference (the caller checks ``covers``).
"""

from __future__ import annotations

import os
import struct
import time
from typing import Iterable, Sequence

import numpy as np

from sushitui.store import Item, TaggerCache, tuple_rows, write_transaction

FLOOR = 0.01
_MAGIC = b"TC1\x00"
_FAILED = b"TCF\x00"  # + UTF-8 reason: an image whose bytes cannot be decoded
_HEAD = struct.Struct("<4sIIf")  # magic, width, count, floor
_CHUNK = 500


def known_sha256(item: Item, path: str) -> str | None:
    """The item's primary image hash (the cache key) without reading the image: the
    indexed hash, trusted only while the file's size and mtime still match."""
    if not item.sha256:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return item.sha256 if (st.st_size == item.file_size and st.st_mtime_ns == item.mtime_ns) else None


def covers(threshold: float) -> bool:
    """Whether cached scores can answer a threshold exactly."""
    return threshold >= FLOOR


def encode(probs: np.ndarray, keep: np.ndarray | None = None) -> bytes:
    probs = np.asarray(probs, np.float32)
    mask = probs >= FLOOR
    if keep is not None and keep.size:
        mask[keep[keep < probs.size]] = True
    idx = np.nonzero(mask)[0].astype("<u4")
    return _HEAD.pack(_MAGIC, probs.size, idx.size, FLOOR) + idx.tobytes() + probs[idx].astype("<f4").tobytes()


class CachedFailure(str):
    """A cached decode failure: the same bytes fail the same way, so a re-run neither
    re-decodes them nor loads the model for them."""


def encode_failure(reason: str) -> bytes:
    return _FAILED + reason.encode("utf-8", "replace")


def decode(blob: bytes) -> np.ndarray | CachedFailure | None:
    """Dense probabilities (zeros where not stored), a CachedFailure, or None for an unreadable row."""
    if blob.startswith(_FAILED):
        return CachedFailure(blob[len(_FAILED) :].decode("utf-8", "replace"))
    try:
        magic, width, count, _floor = _HEAD.unpack_from(blob, 0)
        if magic != _MAGIC or len(blob) != _HEAD.size + 8 * count:
            return None
        idx = np.frombuffer(blob, "<u4", count, _HEAD.size)
        val = np.frombuffer(blob, "<f4", count, _HEAD.size + 4 * count)
        out = np.zeros(width, np.float32)
        out[idx] = val
        return out
    except (struct.error, ValueError, IndexError):
        return None


def get_many(shas: Iterable[str], model_version: str) -> dict[str, np.ndarray | CachedFailure]:
    """Cached probabilities (or failures) for those image hashes under ``model_version``."""
    wanted = sorted(set(s for s in shas if s))
    found: dict[str, np.ndarray | CachedFailure] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        rows = (
            TaggerCache.select(TaggerCache.sha256, TaggerCache.scores)
            .where((TaggerCache.model_key == model_version) & TaggerCache.sha256.in_(chunk))
            .tuples()
        )
        for sha, blob in tuple_rows(rows):
            probs = decode(bytes(blob))
            if probs is not None:
                found[sha] = probs
    return found


def put_many(
    entries: Sequence[tuple[str, np.ndarray | str]], model_version: str, keep: np.ndarray | None = None
) -> int:
    """Store (sha256, probabilities or failure reason) rows; one transaction, chunked inserts."""
    now = time.time()
    rows = [
        (sha, model_version, encode_failure(p) if isinstance(p, str) else encode(p, keep), now)
        for sha, p in entries
        if sha
    ]
    if not rows:
        return 0
    with write_transaction():
        for i in range(0, len(rows), _CHUNK):
            (
                TaggerCache.insert_many(
                    rows[i : i + _CHUNK],
                    fields=[TaggerCache.sha256, TaggerCache.model_key, TaggerCache.scores, TaggerCache.created_at],
                )
                .on_conflict_replace()
                .execute()
            )
    return len(rows)


def count(model_version: str | None = None) -> int:
    q = TaggerCache.select()
    if model_version:
        q = q.where(TaggerCache.model_key == model_version)
    return q.count()


def clear(model_version: str | None = None) -> int:
    with write_transaction():
        q = TaggerCache.delete()
        if model_version:
            q = q.where(TaggerCache.model_key == model_version)
        return q.execute()
