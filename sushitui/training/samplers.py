"""Samplers (TR-3): the order in which a trainer sees the items of one epoch.

Every sampler works on ``counts``: how often each item (by position in the run's item
list) was seen before. The history is either all previous runs or only the parent run
(``history="all"|"parent"``), plus the epochs already planned in this run: a planner
adds each epoch's draws to the counts before planning the next, so a weighted sampler
keeps balancing inside a run, and planning never reads the database.

- ``random``: each epoch is a permutation (every item once before any repeats).
- ``min-usage``: ``size`` draws with replacement, weight ``1/(n+1)``.
- ``stratified``: strata never / 1-10 / 11-50 / 51+ times seen get 40/30/20/10 % of the
  draws (shares of empty strata go to the others in proportion); inside a stratum items
  are taken in shuffled rounds, so no item repeats before its stratum is used up.
- ``variance``: draws with replacement, weight ``max(mean - n, 0) + 0.1`` (the deficit to
  the mean), which pulls the counts together.

Seeded and reproducible: epoch ``e`` uses ``numpy.random.default_rng([seed, e])``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sushitui.errors import UserError

if TYPE_CHECKING:
    import numpy as np

SAMPLERS = ("random", "min-usage", "stratified", "variance")
SAMPLER_ALIASES = {
    "random": "random",
    "shuffle": "random",
    "min-usage": "min-usage",
    "min-usage-first": "min-usage",
    "min_usage": "min-usage",
    "stratified": "stratified",
    "variance": "variance",
    "variance-min": "variance",
    "variance-minimisation": "variance",
    "variance-minimization": "variance",
}
HISTORIES = ("all", "parent")

# (low, high) inclusive bounds of times seen, and the share of the draws
STRATA = ((0, 0), (1, 10), (11, 50), (51, None))
STRATA_SHARES = (0.4, 0.3, 0.2, 0.1)


class SamplerError(UserError, ValueError):
    pass


def canonical_sampler(name: str) -> str:
    key = (name or "").strip().lower()
    if key not in SAMPLER_ALIASES:
        raise SamplerError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    return SAMPLER_ALIASES[key]


def weights(counts: "np.ndarray", sampler: str) -> "np.ndarray":
    """The draw weight of each item for the weighted samplers (not normalised)."""
    import numpy as np

    sampler = canonical_sampler(sampler)
    c = np.asarray(counts, dtype=np.float64)
    if sampler == "min-usage":
        return 1.0 / (c + 1.0)
    if sampler == "variance":
        return np.maximum(c.mean() - c, 0.0) + 0.1 if c.size else c
    raise SamplerError(f"sampler {sampler!r} has no weights")


def stratum_of(counts: "np.ndarray") -> "np.ndarray":
    """Stratum index 0..3 (never, 1-10, 11-50, 51+) for each count."""
    import numpy as np

    return np.searchsorted(np.array([1, 11, 51]), np.asarray(counts), side="right")


def _quotas(sizes: list[int], shares: tuple[float, ...], total: int) -> list[int]:
    """Split ``total`` draws over the non-empty strata by share (largest remainder)."""
    live = [s for s, n in zip(shares, sizes) if n > 0]
    norm = sum(live)
    exact = [(share / norm * total if n > 0 else 0.0) for share, n in zip(shares, sizes)]
    quotas = [int(x) for x in exact]
    rest = total - sum(quotas)
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - quotas[i], reverse=True)[:rest]:
        quotas[i] += 1
    return quotas


def _cycled(members: "np.ndarray", quota: int, rng: "np.random.Generator") -> "np.ndarray":
    import numpy as np

    rounds = -(-quota // len(members))
    return np.concatenate([rng.permutation(members) for _ in range(rounds)])[:quota]


def epoch_order(
    counts: "np.ndarray", sampler: str, rng: "np.random.Generator", size: int | None = None
) -> "np.ndarray":
    """Positions (0..len(counts)-1) of the items to train on, in order."""
    import numpy as np

    sampler = canonical_sampler(sampler)
    n = len(counts)
    size = n if size is None else int(size)
    if n == 0 or size <= 0:
        return np.empty(0, dtype=np.int64)
    if sampler == "random":
        rounds = -(-size // n)
        return np.concatenate([rng.permutation(n) for _ in range(rounds)])[:size]
    if sampler == "stratified":
        strata = stratum_of(counts)
        members = [np.flatnonzero(strata == k) for k in range(len(STRATA))]
        quotas = _quotas([len(m) for m in members], STRATA_SHARES, size)
        picks = [_cycled(m, q, rng) for m, q in zip(members, quotas) if q > 0]
        return rng.permutation(np.concatenate(picks))
    w = weights(counts, sampler)
    return rng.choice(n, size=size, replace=True, p=w / w.sum())


class EpochPlanner:
    """Plans epochs 1, 2, ... from a base history, adding each epoch's draws to the counts.

    ``order(e)`` is the same for the same (base counts, sampler, seed, size), whether it
    is asked for in a training loop or by ``run sample`` ahead of time.
    """

    def __init__(self, base_counts: "np.ndarray", sampler: str, seed: int = 0, size: int | None = None):
        import numpy as np

        self.sampler = canonical_sampler(sampler)
        self.seed = int(seed)
        self.size = size
        self._base = np.asarray(base_counts, dtype=np.int64).copy()
        self._counts = self._base.copy()
        self._next = 1  # the epoch whose order _counts is ready to plan
        self._cache: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> "np.ndarray":
        import numpy as np

        if epoch < 1:
            raise SamplerError("epochs are numbered from 1")
        if epoch in self._cache:
            return self._cache[epoch]
        if epoch < self._next:  # asked again for an older epoch: replay from the start
            self._counts = self._base.copy()
            self._next = 1
            self._cache.clear()
        while self._next <= epoch:
            e = self._next
            rng = np.random.default_rng([self.seed, e])
            order = epoch_order(self._counts, self.sampler, rng, self.size)
            if self.sampler != "random":  # random ignores counts; skip the bincount
                self._counts += np.bincount(order, minlength=len(self._counts))
            self._cache = {e: order}
            self._next += 1
        return self._cache[epoch]
