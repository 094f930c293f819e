"""The items a run trains on: ids, absolute image paths and the caption text, loaded
once with two set-based queries and kept in item-id order (the samplers' positions)."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field

import numpy as np

from sushitui.dataset.paths import UnsafePathError, to_abs
from sushitui.store import TrainingRun
from sushitui.store.db import current_database

DEFAULT_CAPTION_SUBTYPE = "main"


@dataclass(frozen=True, slots=True)
class SampleItem:
    """One item as a trainer needs it."""

    id: int
    image: str  # absolute path of the primary image
    caption: str  # text of the run's caption subtype (see ``load_pool``)
    name: str  # dataset-relative group key, for messages
    related: dict[str, str] = field(
        default_factory=dict, hash=False
    )  # groups: suffix -> absolute path (source, cref, mask...)


@dataclass
class Pool:
    items: list[SampleItem]
    ids: np.ndarray
    position: dict[int, int]  # item id -> position in ``items``
    by_image: dict[str, int] = field(default_factory=dict)  # absolute and relative image path -> id
    all_ids: frozenset[int] = frozenset()  # every item of the dataset, with or without image


def _plain_relative(rel: str) -> bool:
    """A relative POSIX path without ``..``/``.``/empty parts, drive or backslash:
    joining it to the root cannot leave the root. Anything else goes through ``to_abs``."""
    wrapped = "/" + rel + "/"  # "//" catches empty parts, a leading "/" and ""
    return not ("//" in wrapped or "/./" in wrapped or "/../" in wrapped or "\\" in rel or ":" in rel)


def _absolute(root: str, prefix: str, rel: str) -> str | None:
    if _plain_relative(rel):
        # the common case, without pathlib's per-call cost (100k items: 10 s -> 0.1 s)
        return prefix + (rel if os.sep == "/" else rel.replace("/", os.sep))
    try:
        return str(to_abs(root, rel))
    except UnsafePathError:
        return None


def _caption_rank(subtype: str, ctype: str, wanted: str) -> int:
    if subtype == wanted:
        return 0
    if subtype == DEFAULT_CAPTION_SUBTYPE:
        return 1
    if subtype == "":
        return 2
    return 3 if ctype == "tags" else 4


def load_pool(run: TrainingRun, caption_subtype: str | None = None) -> Pool:
    """Items of the run's dataset that have an image, in id order, with their caption.

    The caption is the run's caption subtype when the item has it, else ``main``, else the
    unnamed caption, else any tag caption, else any caption, else "".
    """
    db = current_database()
    ds = run.dataset
    wanted = caption_subtype or run.caption_type or DEFAULT_CAPTION_SUBTYPE
    captions: dict[int, tuple[int, str]] = {}
    for item_id, subtype, ctype, content in db.execute_sql(
        "SELECT c.item_id, c.subtype, c.type, c.content FROM caption c JOIN item i ON i.id = c.item_id "
        "WHERE i.dataset_id = ?",
        (ds.id,),
    ):
        rank = _caption_rank(subtype or "", ctype or "", wanted)
        best = captions.get(item_id)
        if best is None or rank < best[0]:
            captions[item_id] = (rank, content or "")
    items: list[SampleItem] = []
    by_image: dict[str, int] = {}
    all_ids = []
    root = ds.root_path
    prefix = os.path.join(root, "")
    for item_id, image_path, group_key, related_json in db.execute_sql(
        "SELECT id, image_path, group_key, related_images FROM item WHERE dataset_id = ? ORDER BY id", (ds.id,)
    ):
        all_ids.append(item_id)
        if not image_path:
            continue
        absolute = _absolute(root, prefix, image_path)
        if absolute is None:
            continue  # never hand a trainer a path outside the dataset
        related = {}
        if related_json and related_json != "{}":  # only groups (pairs) have related images
            for suffix, rel in json.loads(related_json).items():
                path = _absolute(root, prefix, rel) if isinstance(rel, str) else None
                if path is not None and path != absolute:
                    related[suffix] = path
        items.append(SampleItem(item_id, absolute, captions.get(item_id, (0, ""))[1], group_key, related))
        by_image[absolute] = item_id
        by_image[image_path] = item_id
    ids = np.fromiter((it.id for it in items), dtype=np.int64, count=len(items))
    return Pool(items, ids, {it.id: pos for pos, it in enumerate(items)}, by_image, frozenset(all_ids))


def history_counts(run: TrainingRun, pool: Pool, history: str = "all") -> np.ndarray:
    """Times each pool item was seen before this run: over all other runs (``all``, from
    the incremental per-item totals) or in the parent run only (``parent``)."""
    from sushitui.training.samplers import HISTORIES, SamplerError

    if history not in HISTORIES:
        raise SamplerError(f"unknown history {history!r}; use one of {', '.join(HISTORIES)}")
    db = current_database()
    counts = np.zeros(len(pool.items), dtype=np.int64)
    if history == "parent":
        if not run.parent_id:
            return counts
        # the parent trained the same dataset; ids outside the pool are ignored below
        rows = db.execute_sql("SELECT item_id, times_seen FROM run_item_usage WHERE run_id = ?", (run.parent_id,))
    else:
        # all runs minus this run's own usage, so a restarted trainer plans the same
        # epochs; two primary-key range scans, matched to the pool in numpy
        if not pool.ids.size:
            return counts
        totals = _pairs(
            db.execute_sql(
                "SELECT item_id, total_seen FROM item_stats WHERE item_id BETWEEN ? AND ?",
                (int(pool.ids[0]), int(pool.ids[-1])),
            )
        )
        _scatter(pool, counts, totals)
        own = _pairs(db.execute_sql("SELECT item_id, times_seen FROM run_item_usage WHERE run_id = ?", (run.id,)))
        if own.size:
            own[:, 1] = -own[:, 1]
            _scatter(pool, counts, own, add=True)
        return counts
    _scatter(pool, counts, _pairs(rows))
    return counts


def _pairs(cursor) -> np.ndarray:
    return np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.int64).reshape(-1, 2)


def _scatter(pool: Pool, counts: np.ndarray, pairs: np.ndarray, add: bool = False) -> None:
    """counts[position of id] = (or +=) n for each (id, n); ids outside the pool are ignored."""
    if not pairs.size or not pool.ids.size:
        return
    # pool.ids is sorted (id order): map ids to positions without a Python loop
    pos = np.searchsorted(pool.ids, pairs[:, 0]).clip(0, pool.ids.size - 1)
    hit = pool.ids[pos] == pairs[:, 0]  # other datasets' items, items without an image
    if add:
        np.add.at(counts, pos[hit], pairs[hit, 1])
    else:
        counts[pos[hit]] = pairs[hit, 1]
