"""Run statistics (TR-5): overview, usage heatmap, histogram of times seen, summary
numbers, most and never used items, and a resume recommendation from the spread.

One query fetches the per-item counts of the run (every item of the dataset, 0 for the
unused ones) straight into numpy; everything else is computed from that vector, so a
100k-item dataset takes tens of milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sushitui.store import TrainingRun
from sushitui.store.db import current_database
from sushitui.training.runs import get_run

if TYPE_CHECKING:
    import numpy as np

HEATMAP_LEVELS = " ░▒▓█"
TOP_N = 10
NEVER_LIST = 50


@dataclass
class Recommendation:
    sampler: str  # the sampler to resume with
    history: str  # "all" or "parent"
    reason: str


@dataclass
class RunStats:
    run: str
    number: int
    dataset: str
    status: str
    scope: str  # "run": this run's usage; "all": totals over all runs
    items: int  # items in the dataset
    items_used: int
    never_used_count: int
    samples_seen: int
    epochs_done: int
    steps_done: int
    mean: float
    median: float
    std: float
    variance: float
    min: int
    max: int
    cv: float  # std / mean, the spread the recommendation is based on
    histogram: list[dict[str, int]] = field(default_factory=list)  # [{"low", "high", "count"}]
    heatmap: list[float] = field(default_factory=list)  # cells in item order, mean count / max, 0..1
    top: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "name", "times_seen"}]
    never_used: list[dict[str, Any]] = field(default_factory=list)  # first NEVER_LIST [{"id", "name"}]
    recommendation: Recommendation | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usage_vector(run: TrainingRun, scope: str = "run") -> tuple["np.ndarray", "np.ndarray"]:
    """(item ids in id order, times seen) for every item of the run's dataset."""
    import numpy as np

    db = current_database()
    if scope == "all":
        sql = (
            "SELECT i.id, COALESCE(s.total_seen, 0) FROM item i LEFT JOIN item_stats s ON s.item_id = i.id "
            "WHERE i.dataset_id = ? ORDER BY i.id"
        )
        params: tuple = (run.dataset_id,)
    elif scope == "run":
        sql = (
            "SELECT i.id, COALESCE(u.times_seen, 0) FROM item i "
            "LEFT JOIN run_item_usage u ON u.run_id = ? AND u.item_id = i.id WHERE i.dataset_id = ? ORDER BY i.id"
        )
        params = (run.id, run.dataset_id)
    else:
        raise ValueError(f"unknown scope {scope!r}; use run or all")
    rows = db.execute_sql(sql, params).fetchall()
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def histogram(counts: "np.ndarray", bins: int = 12) -> list[dict[str, int]]:
    """Integer-edged bins of times seen; ``low``..``high`` inclusive."""
    import numpy as np

    if counts.size == 0:
        return []
    lo, hi = int(counts.min()), int(counts.max())
    width = max(1, -(-(hi - lo + 1) // bins))
    idx = (counts - lo) // width
    per_bin = np.bincount(idx, minlength=int(idx.max()) + 1)
    return [
        {"low": lo + k * width, "high": lo + (k + 1) * width - 1, "count": int(c)} for k, c in enumerate(per_bin.tolist())
    ]


def heatmap(counts: "np.ndarray", cells: int = 400) -> list[float]:
    """``cells`` values in 0..1: the mean count of consecutive item slices over the max."""
    import numpy as np

    if counts.size == 0:
        return []
    cells = max(1, min(cells, counts.size))
    edges = np.linspace(0, counts.size, cells + 1).astype(np.int64)
    sums = np.add.reduceat(counts.astype(np.float64), edges[:-1])
    means = sums / np.diff(edges)
    top = counts.max()
    return (means / top).round(4).tolist() if top > 0 else [0.0] * cells


def heatmap_rows(values: list[float], width: int) -> list[str]:
    """The heatmap as lines of ``width`` block characters (for the TUI and the CLI)."""
    chars = []
    for v in values:
        top = len(HEATMAP_LEVELS) - 1  # any use shows at least the lightest block
        level = 0 if v <= 0 else max(1, min(top, math.ceil(v * top)))
        chars.append(HEATMAP_LEVELS[level])
    width = max(1, width)
    return ["".join(chars[i : i + width]) for i in range(0, len(chars), width)]


def recommend(counts: "np.ndarray") -> Recommendation:
    """Which sampler to resume with, from how uneven the usage is."""
    if counts.size == 0:
        return Recommendation("random", "all", "the dataset has no items")
    used = int((counts > 0).sum())
    never = counts.size - used
    if used == 0:
        return Recommendation("random", "all", "nothing was trained yet: a plain shuffle sees every image once per epoch")
    mean = float(counts.mean())
    cv = float(counts.std()) / mean if mean else 0.0
    if never / counts.size >= 0.2:
        return Recommendation(
            "stratified", "parent",
            f"{never:,} of {counts.size:,} items ({never / counts.size:.0%}) were never used: stratified sampling "
            "gives the never-used stratum 40 % of the draws",
        )
    if cv >= 0.5:
        return Recommendation(
            "variance", "parent",
            f"usage is very uneven (std/mean = {cv:.2f}): variance minimisation draws the under-used items until "
            "they catch up with the mean",
        )
    if cv >= 0.15:
        return Recommendation(
            "min-usage", "parent",
            f"usage is somewhat uneven (std/mean = {cv:.2f}): min-usage-first favours the less-seen items",
        )
    return Recommendation("random", "parent", f"usage is even (std/mean = {cv:.2f}): keep the random shuffle")


def _names(ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    db = current_database()
    marks = ",".join("?" * len(ids))
    return dict(db.execute_sql(f"SELECT id, group_key FROM item WHERE id IN ({marks})", ids).fetchall())


def run_stats(run: str | int | TrainingRun, *, scope: str = "run", heatmap_cells: int = 400, bins: int = 12) -> RunStats:
    import numpy as np

    run = get_run(run)
    ids, counts = usage_vector(run, scope)
    n = int(counts.size)
    used_mask = counts > 0
    if n:
        top_pos = np.argsort(-counts, kind="stable")[:TOP_N]
        top_pos = top_pos[counts[top_pos] > 0]
    else:
        top_pos = np.empty(0, dtype=np.int64)
    never_ids = ids[~used_mask][:NEVER_LIST].tolist()
    top_ids = ids[top_pos].tolist()
    names = _names(top_ids + never_ids)
    mean = float(counts.mean()) if n else 0.0
    std = float(counts.std()) if n else 0.0
    return RunStats(
        run=run.name,
        number=run.number,
        dataset=run.dataset.name,
        status=run.status,
        scope=scope,
        items=n,
        items_used=int(used_mask.sum()),
        never_used_count=int(n - used_mask.sum()),
        samples_seen=int(counts.sum()) if scope == "all" else run.samples_seen,
        epochs_done=run.epochs_done,
        steps_done=run.steps_done,
        mean=round(mean, 4),
        median=float(np.median(counts)) if n else 0.0,
        std=round(std, 4),
        variance=round(std * std, 4),
        min=int(counts.min()) if n else 0,
        max=int(counts.max()) if n else 0,
        cv=round(std / mean, 4) if mean else 0.0,
        histogram=histogram(counts, bins),
        heatmap=heatmap(counts, heatmap_cells),
        top=[{"id": i, "name": names.get(i, ""), "times_seen": int(c)} for i, c in zip(top_ids, counts[top_pos].tolist())],
        never_used=[{"id": i, "name": names.get(i, "")} for i in never_ids],
        recommendation=recommend(counts),
    )


def item_usage_stats(item_id: int) -> dict[str, Any] | None:
    """Totals of one item over all runs, with the variance of its per-run usage derived
    from the incrementally kept sum of squares (no history scan)."""
    row = current_database().execute_sql(
        "SELECT total_seen, runs_participated, usage_sumsq, first_trained_at, last_trained_at FROM item_stats "
        "WHERE item_id = ?",
        (item_id,),
    ).fetchone()
    if row is None:
        return None
    total, runs, sumsq, first, last = row
    mean = total / runs if runs else 0.0
    var = max(0.0, sumsq / runs - mean * mean) if runs else 0.0
    return {
        "total_seen": total,
        "runs_participated": runs,
        "mean_per_run": mean,
        "variance_per_run": var,
        "std_per_run": var**0.5,
        "first_trained_at": first,
        "last_trained_at": last,
    }
