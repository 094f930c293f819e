"""Run statistics (TR-5): overview, usage heatmap, histogram of times seen, summary
numbers, most and never used items, and a resume recommendation from the spread.

The numbers come from the distribution of times seen grouped in SQL (one row per
distinct count), the heatmap from per-id-range sums in SQL, the top and
never-used lists from LIMITed queries: no per-item row reaches Python, so a 100k-item
dataset takes tens of milliseconds.
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
    heatmap: list[float] = field(default_factory=list)  # cells over consecutive id ranges, mean count / max, 0..1
    top: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "name", "times_seen"}]
    never_used: list[dict[str, Any]] = field(default_factory=list)  # first NEVER_LIST [{"id", "name"}]
    recommendation: Recommendation | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _used_rows(run: TrainingRun, scope: str) -> tuple[str, tuple]:
    """SQL for (id, n) of the items with n > 0 in the scope, and its parameters."""
    if scope == "run":
        return "SELECT item_id AS id, times_seen AS n FROM run_item_usage WHERE run_id = ? AND times_seen > 0", (
            run.id,
        )
    if scope == "all":
        return (
            "SELECT s.item_id AS id, s.total_seen AS n FROM item_stats s JOIN item i ON i.id = s.item_id "
            "WHERE i.dataset_id = ? AND s.total_seen > 0",
            (run.dataset_id,),
        )
    raise ValueError(f"unknown scope {scope!r}; use run or all")


def _pairs(cursor) -> "np.ndarray":
    import itertools

    import numpy as np

    return np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.int64).reshape(-1, 2)


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
        {"low": lo + k * width, "high": lo + (k + 1) * width - 1, "count": int(c)}
        for k, c in enumerate(per_bin.tolist())
    ]


def _heatmap(
    run: TrainingRun, scope: str, used_sql: str, used_params: tuple, n_items: int, lo: int, hi: int, cells: int
) -> list[float]:
    """``cells`` values in 0..1: the mean count of the items in consecutive id ranges over
    the largest such mean, grouped in SQL so no per-item row reaches Python."""
    import numpy as np

    if n_items == 0:
        return []
    cells = max(1, min(cells, n_items))
    span = hi - lo + 1
    db = current_database()
    per_cell = np.zeros(cells)
    used = np.zeros(cells)
    bucket = "(id - ?) * ? / ?"
    if span == n_items:  # ids without gaps (the usual case): count per cell arithmetically
        per_cell = np.bincount(np.arange(span, dtype=np.int64) * cells // span, minlength=cells).astype(np.float64)
    else:
        for b, c in db.execute_sql(
            f"SELECT {bucket}, COUNT(*) FROM item WHERE dataset_id = ? GROUP BY 1", (lo, cells, span, run.dataset_id)
        ):
            per_cell[b] = c
    if scope == "run":
        # cell k holds ids with (id - lo) * cells // span == k, i.e. the id range
        # [lo + ceil(k*span/cells), lo + ceil((k+1)*span/cells)): one range sum per cell
        # over the run's clustered (run, item) key, no sort
        rows = db.execute_sql(
            "WITH RECURSIVE cells(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM cells WHERE k + 1 < :c) "
            "SELECT k, (SELECT SUM(times_seen) FROM run_item_usage WHERE run_id = :run "
            "AND item_id >= :lo + (k * :span + :c - 1) / :c AND item_id < :lo + ((k + 1) * :span + :c - 1) / :c) "
            "FROM cells",
            {"c": cells, "run": run.id, "lo": lo, "span": span},
        )
    else:  # totals: only the dataset's items count, whatever else lies in the id range
        rows = db.execute_sql(f"SELECT {bucket}, SUM(n) FROM ({used_sql}) GROUP BY 1", (lo, cells, span, *used_params))
    for b, total in rows:
        used[b] = total or 0
    means = np.divide(used, per_cell, out=np.zeros(cells), where=per_cell > 0)
    top = means.max()
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
        return Recommendation(
            "random", "all", "nothing was trained yet: a plain shuffle sees every image once per epoch"
        )
    mean = float(counts.mean())
    cv = float(counts.std()) / mean if mean else 0.0
    if never / counts.size >= 0.2:
        return Recommendation(
            "stratified",
            "parent",
            f"{never:,} of {counts.size:,} items ({never / counts.size:.0%}) were never used: stratified sampling "
            "gives the never-used stratum 40 % of the draws",
        )
    if cv >= 0.5:
        return Recommendation(
            "variance",
            "parent",
            f"usage is very uneven (std/mean = {cv:.2f}): variance minimisation draws the under-used items until "
            "they catch up with the mean",
        )
    if cv >= 0.15:
        return Recommendation(
            "min-usage",
            "parent",
            f"usage is somewhat uneven (std/mean = {cv:.2f}): min-usage-first favours the less-seen items",
        )
    return Recommendation("random", "parent", f"usage is even (std/mean = {cv:.2f}): keep the random shuffle")


def run_stats(
    run: str | int | TrainingRun, *, scope: str = "run", heatmap_cells: int = 400, bins: int = 12
) -> RunStats:
    """Statistics of a run (``scope="run"``) or of all runs' totals over the run's dataset
    (``scope="all"``). The distribution of times seen is fetched grouped by value (a few
    hundred rows, not one per item); unused items count as 0."""
    import numpy as np

    run = get_run(run)
    db = current_database()
    used_sql, used_params = _used_rows(run, scope)
    n_items, lo, hi = db.execute_sql(
        "SELECT COUNT(*), MIN(id), MAX(id) FROM item WHERE dataset_id = ?", (run.dataset_id,)
    ).fetchone()
    dist = _pairs(db.execute_sql(f"SELECT n, COUNT(*) FROM ({used_sql}) GROUP BY n ORDER BY n", used_params))
    items_used = int(dist[:, 1].sum()) if dist.size else 0
    never = n_items - items_used
    values = np.concatenate([[0], dist[:, 0]]) if dist.size else np.zeros(1, dtype=np.int64)
    freqs = np.concatenate([[never], dist[:, 1]]) if dist.size else np.array([never])
    counts = np.repeat(values, freqs)  # sorted times seen of every item: cheap even at 100k
    n = int(counts.size)
    mean = float(counts.mean()) if n else 0.0
    std = float(counts.std()) if n else 0.0
    top = db.execute_sql(
        f"SELECT u.id, i.group_key, u.n FROM ({used_sql}) u JOIN item i ON i.id = u.id ORDER BY u.n DESC, u.id LIMIT ?",
        (*used_params, TOP_N),
    ).fetchall()
    never_rows = []
    if never:
        params: tuple[int, ...]
        if scope == "run":
            join, cond, params = "run_item_usage u ON u.run_id = ? AND u.item_id = i.id", "u.times_seen", (run.id,)
        else:
            join, cond, params = "item_stats u ON u.item_id = i.id", "u.total_seen", ()
        # ordered by name along the (dataset, group_key) index: stops after NEVER_LIST rows
        never_rows = db.execute_sql(
            f"SELECT i.id, i.group_key FROM item i LEFT JOIN {join} WHERE i.dataset_id = ? "
            f"AND COALESCE({cond}, 0) = 0 ORDER BY i.group_key LIMIT ?",
            (*params, run.dataset_id, NEVER_LIST),
        ).fetchall()
    return RunStats(
        run=run.name,
        number=run.number,
        dataset=run.dataset.name,
        status=run.status,
        scope=scope,
        items=n,
        items_used=items_used,
        never_used_count=never,
        samples_seen=int(counts.sum()) if scope == "all" else run.samples_seen,
        epochs_done=run.epochs_done,
        steps_done=run.steps_done,
        mean=round(mean, 4),
        median=float(np.median(counts)) if n else 0.0,
        std=round(std, 4),
        variance=round(std * std, 4),
        min=int(counts[0]) if n else 0,
        max=int(counts[-1]) if n else 0,
        cv=round(std / mean, 4) if mean else 0.0,
        histogram=histogram(counts, bins),
        heatmap=_heatmap(run, scope, used_sql, used_params, n, lo or 0, hi or 0, heatmap_cells),
        top=[{"id": i, "name": name, "times_seen": c} for i, name, c in top],
        never_used=[{"id": i, "name": name} for i, name in never_rows],
        recommendation=recommend(counts),
    )


def item_usage_stats(item_id: int) -> dict[str, Any] | None:
    """Totals of one item over all runs, with the variance of its per-run usage (over the
    runs that used it) derived from the incrementally kept sum of squares, and the
    item's row of each run (an index lookup per run, not a history scan)."""
    row = (
        current_database()
        .execute_sql(
            "SELECT total_seen, runs_participated, usage_sumsq, first_trained_at, last_trained_at FROM item_stats "
            "WHERE item_id = ?",
            (item_id,),
        )
        .fetchone()
    )
    if row is None:
        return None
    total, runs, sumsq, first, last = row
    mean = total / runs if runs else 0.0
    var = max(0.0, sumsq / runs - mean * mean) if runs else 0.0
    per_run = [
        {
            "run": name,
            "number": number,
            "times_seen": n,
            "first_epoch": fe,
            "last_epoch": le,
            "first_step": fs,
            "last_step": ls,
        }
        for name, number, n, fe, le, fs, ls in current_database().execute_sql(
            "SELECT r.name, r.number, u.times_seen, u.first_epoch, u.last_epoch, u.first_step, u.last_step "
            "FROM run_item_usage u JOIN training_run r ON r.id = u.run_id WHERE u.item_id = ? ORDER BY r.created_at",
            (item_id,),
        )
    ]
    return {
        "item_id": item_id,
        "total_seen": total,
        "runs_participated": runs,
        "mean_per_run": mean,
        "variance_per_run": var,
        "std_per_run": var**0.5,
        "first_trained_at": first,
        "last_trained_at": last,
        "runs": per_run,
    }
