"""Scores → tags (TAGGERS.md §6.4, §6.6): probabilities, thresholds, argmax, MCut.

Probabilities are what the cache stores, so a threshold change re-runs only this
module, never the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sushitui.tagger.labels import LabelSet

ARGMAX_CATEGORIES = ("rating", "quality")
CHARACTER_LIKE = ("character", "copyright", "artist")
# Text output order (TAGGERS.md §6.6).
CATEGORY_ORDER = ("rating", "character", "copyright", "artist", "general", "meta", "model", "quality")
DEFAULT_CATEGORIES = ("general", "character", "quality")
DEFAULT_THRESHOLD = 0.35
DEFAULT_CHARACTER_THRESHOLD = {"wd": 0.85, "cl": 0.60}
CL_META_DROP = ("id", "commentary", "request", "mismatch")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(logits.astype(np.float32, copy=False), nan=0.0, posinf=30.0, neginf=-30.0)
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def to_probabilities(out: np.ndarray, family: str) -> tuple[np.ndarray, bool]:
    """Model output → probabilities. cl_tagger emits logits; WD emits probabilities
    already (sigmoid inside the graph) — unless its values fall outside [0, 1], then
    they are treated as logits. Returns (probs, guard_triggered)."""
    if family == "cl":
        return sigmoid(out), False
    out = np.nan_to_num(out.astype(np.float32, copy=False), nan=0.0)
    if out.size and (float(out.min()) < 0.0 or float(out.max()) > 1.0):
        return sigmoid(out), True
    return out, False


def mcut(values: np.ndarray) -> float | None:
    """MCut threshold: the midpoint of the largest gap between consecutive sorted
    values; None (no tags) for fewer than two values."""
    if values.size < 2:
        return None
    s = np.sort(values)[::-1]
    gaps = s[:-1] - s[1:]
    t = int(np.argmax(gaps))
    return float((s[t] + s[t + 1]) / 2.0)


@dataclass
class Selection:
    """How scores become tags."""

    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    threshold: float = DEFAULT_THRESHOLD  # general, meta, model (and other)
    character_threshold: float | None = None  # character, copyright, artist; None: the family default
    per_category: dict[str, float] = field(default_factory=dict)  # overrides, e.g. {"meta": 0.5}
    mcut_categories: tuple[str, ...] = ()  # e.g. ("general", "character")
    exclude: frozenset[str] = frozenset()  # raw or display names
    cl_meta_filter: bool = True
    underscores: bool = False  # keep "_" in output tags (default: spaces, kaomoji kept)

    def threshold_for(self, category: str, family: str) -> float:
        if category in self.per_category:
            return self.per_category[category]
        if category in CHARACTER_LIKE:
            return (
                self.character_threshold
                if self.character_threshold is not None
                else DEFAULT_CHARACTER_THRESHOLD.get(family, 0.85)
            )
        return self.threshold

    def describe(self, family: str) -> dict:
        return {
            "categories": list(self.categories),
            "thresholds": {
                c: (None if c in ARGMAX_CATEGORIES else self.threshold_for(c, family)) for c in self.categories
            },
            "mcut": list(self.mcut_categories),
        }


@dataclass(frozen=True)
class Predicted:
    tag: str  # display spelling written to captions
    category: str
    confidence: float


def _threshold_vector(labels: LabelSet, family: str, sel: Selection) -> np.ndarray:
    """Per-label threshold for the plain ``p >= t`` categories (+inf elsewhere: holes,
    unwanted, argmax and MCut categories), cached on the label set per selection."""
    key = (
        family,
        tuple(sel.categories),
        sel.threshold,
        sel.character_threshold,
        tuple(sorted(sel.per_category.items())),
        tuple(sel.mcut_categories),
    )
    cache = labels._arrays.setdefault("_thr", {})
    vec = cache.get(key)
    if vec is None:
        vec = np.full(len(labels), np.inf, np.float32)
        for category in sel.categories:
            if category in ARGMAX_CATEGORIES or category in sel.mcut_categories:
                continue
            idx = labels.index_array(category)
            if idx.size:
                vec[idx] = sel.threshold_for(category, family)
        cache.clear()  # one selection at a time in practice; keep memory flat
        cache[key] = vec
    return vec


def select_tags(probs: np.ndarray, labels: LabelSet, family: str, sel: Selection) -> list[Predicted]:
    """One image's probabilities (label order) → tags, category order then confidence.

    One vectorised comparison against a per-label threshold vector picks the plain
    threshold categories (a cl_tagger row has 42k labels and this runs per image, also
    for every cache hit); argmax and MCut categories are handled per category."""
    n = min(len(labels), probs.shape[-1])
    probs = probs[:n]
    hits = np.nonzero(probs >= _threshold_vector(labels, family, sel)[:n])[0]
    by_cat: dict[str, list[int]] = {}
    if hits.size:
        cats = labels.categories
        for i in hits.tolist():
            by_cat.setdefault(cats[i], []).append(i)
    chosen: list[Predicted] = []
    wanted = set(sel.categories)
    for category in CATEGORY_ORDER + tuple(c for c in sel.categories if c not in CATEGORY_ORDER):
        if category not in wanted:
            continue
        if category in ARGMAX_CATEGORIES or category in sel.mcut_categories:
            idx = labels.index_array(category)
            if idx.size and idx[-1] >= n:  # fewer model outputs than labels
                idx = idx[idx < n]
            if idx.size == 0:
                continue
            p = probs[idx]
            if category in ARGMAX_CATEGORIES:
                keep = [int(idx[int(np.argmax(p))])]
            else:
                thr = mcut(p)
                if thr is None:
                    continue
                if category == "character":
                    thr = max(0.15, thr)
                keep = idx[p >= thr].tolist()
        else:
            keep = by_cat.get(category, [])
        if category not in ARGMAX_CATEGORIES and len(keep) > 1:
            keep = sorted(keep, key=lambda i: -probs[i])  # stable: ties keep label order
        for i in keep:
            raw = labels.names[i] or ""
            if family == "cl" and category == "meta" and sel.cl_meta_filter and any(w in raw for w in CL_META_DROP):
                continue
            display = labels.display(i, underscores=sel.underscores)
            if sel.exclude and (raw in sel.exclude or display in sel.exclude):
                continue
            chosen.append(Predicted(display, category, float(probs[i])))
    return chosen
