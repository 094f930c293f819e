"""The answer cache: one row per (images, model, prompts, parameters) key.

A request's key is computed before anything is sent; a key that has a row is never
sent again. Rows are written as answers arrive (small batches, each committed), so a
run killed at any point resumes with only the unanswered items.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from sushitui.store import tuple_rows, write_transaction
from sushitui.store.models import VlmCache

KEY_VERSION = 1
_CHUNK = 500


@dataclass
class CachedAnswer:
    text: str
    finish_reason: str | None
    refusal: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


def request_key(image_shas: Sequence[str], model: str, system: str, prompt: str, params: dict) -> str:
    """SHA-256 of everything that decides the answer."""
    doc = {
        "v": KEY_VERSION,
        "images": list(image_shas),
        "model": model,
        "system": system,
        "prompt": prompt,
        "params": params,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def get_many(keys: Iterable[str]) -> dict[str, CachedAnswer]:
    keys = list(dict.fromkeys(keys))
    out: dict[str, CachedAnswer] = {}
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        rows = (
            VlmCache.select(
                VlmCache.key,
                VlmCache.text,
                VlmCache.finish_reason,
                VlmCache.refusal,
                VlmCache.prompt_tokens,
                VlmCache.completion_tokens,
            )
            .where(VlmCache.key.in_(chunk))
            .tuples()
        )
        for key, *rest in tuple_rows(rows):
            out[key] = CachedAnswer(*rest)
    return out


def put_many(rows: Sequence[tuple[str, str, CachedAnswer]]) -> None:
    """(key, model, answer) rows, in one transaction."""
    if not rows:
        return
    now = time.time()
    data = [
        {
            "key": k,
            "model": m,
            "text": a.text,
            "finish_reason": a.finish_reason,
            "refusal": a.refusal,
            "prompt_tokens": a.prompt_tokens,
            "completion_tokens": a.completion_tokens,
            "created_at": now,
        }
        for k, m, a in rows
    ]
    with write_transaction():
        for i in range(0, len(data), 100):
            VlmCache.insert_many(data[i : i + 100]).on_conflict_replace().execute()


def forget(keys: Iterable[str]) -> int:
    keys = list(keys)
    n = 0
    with write_transaction():
        for i in range(0, len(keys), _CHUNK):
            n += VlmCache.delete().where(VlmCache.key.in_(keys[i : i + _CHUNK])).execute()
    return n
