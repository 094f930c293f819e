"""TR-5 run statistics: the numbers, histogram, heatmap, top/never used, recommendation,
and the same through `sushitui run stats`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)
from training_support import make_dataset

from sushitui.cli import main as cli_main
from sushitui.training import create_run, open_run
from sushitui.training.stats import heatmap_rows, recommend, run_stats


@pytest.fixture
def recorded(db, tmp_path):
    ds = make_dataset(tmp_path / "data", 60, files=False)
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    rng = np.random.default_rng(3)
    times = rng.integers(1, 30, size=60)
    times[:15] = 0  # never used
    times[20] = 500
    create_run("r", ds.name)
    with open_run("r") as run:
        for item_id, n in zip(ids, times.tolist()):
            for k in range(n):
                run.record([item_id], 1 + k // 10, k)
    return ids, times


def test_numbers_match_numpy_over_all_items_of_the_dataset(db, recorded):
    ids, times = recorded
    st = run_stats("r")
    assert st.items == 60 and st.items_used == int((times > 0).sum()) and st.never_used_count == 15
    assert st.mean == pytest.approx(times.mean(), abs=1e-3)
    assert st.median == pytest.approx(np.median(times))
    assert st.std == pytest.approx(times.std(), abs=1e-3)
    assert st.variance == pytest.approx(times.var(), rel=1e-3)
    assert (st.min, st.max) == (0, 500)
    assert sum(b["count"] for b in st.histogram) == 60
    assert st.histogram[0]["low"] == 0 and st.histogram[-1]["high"] >= 500
    assert st.top[0] == {"id": ids[20], "name": "img_00020", "times_seen": 500}
    assert [t["times_seen"] for t in st.top] == sorted(times.tolist(), reverse=True)[:10]
    assert [n["id"] for n in st.never_used] == ids[:15]
    assert len(st.heatmap) == 60 and max(st.heatmap) == 1.0 and st.heatmap[0] == 0.0
    # 25 % never used -> the recommendation is to go for them first
    assert st.recommendation.sampler == "stratified"


def test_recommendation_follows_the_spread():
    assert recommend(np.array([10, 10, 11, 9])).sampler == "random"
    assert recommend(np.array([10, 5, 14, 8, 13])).sampler == "min-usage"
    assert recommend(np.array([1, 1, 1, 40, 2, 1])).sampler == "variance"
    assert recommend(np.array([0, 0, 5, 5])).sampler == "stratified"
    assert recommend(np.zeros(5, dtype=int)).sampler == "random"


def test_heatmap_rows_use_blocks_and_wrap():
    rows = heatmap_rows([0.0, 0.1, 0.5, 1.0, 0.0], 3)
    assert rows == [" ░▒", "█ "]


def test_cli_stats_json_and_text(db, db_path, recorded, capsys):
    assert cli_main(["--db", str(db_path), "run", "stats", "r", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["max"] == 500 and data["recommendation"]["sampler"] == "stratified"
    assert cli_main(["--db", str(db_path), "run", "stats", "r"]) == 0
    text = capsys.readouterr().out
    assert "never used (15)" in text and "img_00020" in text and "recommendation" in text
    assert cli_main(["--db", str(db_path), "run", "stats", "r", "--scope", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples_seen"] == int(recorded[1].sum())


def test_heatmap_cells_cover_id_ranges_also_with_gaps_in_the_ids(db, tmp_path):
    ds = make_dataset(tmp_path / "data", 40, files=False)
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    db.execute_sql(f"DELETE FROM item WHERE id BETWEEN {ids[10]} AND {ids[19]}")  # a gap of 10 ids
    create_run("r", ds.name)
    with open_run("r") as run:
        run.record(ids[:10] * 4 + ids[20:30], 1, 0)  # first quarter of ids 4x, third quarter 1x
    st = run_stats("r", heatmap_cells=4)
    assert st.items == 30
    # cells are id ranges of 10: [4x], [gap: no items], [1x], [unused]
    assert st.heatmap == [1.0, 0.0, 0.25, 0.0]
    # the totals over all runs (one run here) give the same picture by another query
    assert run_stats("r", scope="all", heatmap_cells=4).heatmap == [1.0, 0.0, 0.25, 0.0]


def test_cli_item_shows_per_run_usage_and_its_variance(db, db_path, recorded, capsys):
    ids, times = recorded
    create_run("again", "ds")
    with open_run("again") as run:
        run.record([ids[20]] * 100, 7, 3)
    assert cli_main(["--db", str(db_path), "run", "item", "img_00020", "--dataset", "ds", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_seen"] == 600 and data["runs_participated"] == 2
    assert data["variance_per_run"] == pytest.approx(40000.0)  # per-run 500 and 100: mean 300
    assert [(r["run"], r["times_seen"]) for r in data["runs"]] == [("r", 500), ("again", 100)]
    assert cli_main(["--db", str(db_path), "run", "item", str(ids[20])]) == 0
    assert "std 200.00" in capsys.readouterr().out
    assert cli_main(["--db", str(db_path), "run", "item", "nope", "--dataset", "ds"]) == 1
    assert "no item 'nope'" in capsys.readouterr().err
