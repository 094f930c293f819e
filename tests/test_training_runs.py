"""TR-1 runs (create/list/show/status/remove) through the core and the CLI."""

from __future__ import annotations

import json

import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)
from training_support import make_dataset, usage_invariants

from sushitui.cli import main as cli_main
from sushitui.store import ItemStats, TrainingRun
from sushitui.training import (
    RunExists,
    RunNotFound,
    TrainingError,
    create_run,
    list_runs,
    open_run,
    remove_run,
    set_status,
)


@pytest.fixture
def ds(db, tmp_path):
    return make_dataset(tmp_path / "data", 20, files=False)


def test_numbers_count_per_dataset_and_parent_must_share_the_dataset(db, ds, tmp_path):
    other = make_dataset(tmp_path / "other", 3, name="other", files=False)
    a = create_run("a", ds.name)
    b = create_run("b", ds.name, parent="a")
    c = create_run("c", other.name)
    assert (a.number, b.number, c.number) == (1, 2, 1)
    assert b.parent.name == "a"
    with pytest.raises(RunExists):
        create_run("a", ds.name)
    with pytest.raises(TrainingError, match="same dataset"):
        create_run("d", other.name, parent="a")
    assert [r.name for r in list_runs(ds.name)] == ["a", "b"]


def test_status_stamps_start_and_finish(db, ds):
    create_run("r", ds.name)
    run = set_status("r", "running")
    assert run.started_at and run.finished_at is None
    run = set_status("r", "Completed")
    assert run.status == "completed" and run.finished_at >= run.started_at
    with pytest.raises(TrainingError, match="unknown status"):
        set_status("r", "done")
    with pytest.raises(RunNotFound):
        set_status("nope", "running")


def test_remove_takes_the_run_out_of_the_per_item_totals(db, ds):
    create_run("a", ds.name)
    create_run("b", ds.name, parent="a")
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    with open_run("a") as run:
        run.record(ids[:10] * 3, 1, 0)
    with open_run("b") as run:
        run.record(ids[5:15], 1, 0)
    assert usage_invariants(db) == (40, 40, 40)
    assert remove_run("a") == 10
    assert usage_invariants(db) == (10, 10, 10)
    assert TrainingRun.get(TrainingRun.name == "b").parent_id is None
    stats = {s.item_id: s for s in ItemStats.select()}
    assert set(stats) == set(ids[5:15])  # items only "a" used have no totals left
    assert all(s.runs_participated == 1 and s.usage_sumsq == 1 for s in stats.values())


def run_cli(capsys, db_path, *argv):
    code = cli_main(["--db", str(db_path), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_create_list_show_status_remove(db, db_path, ds, tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("learning_rate = 1e-4\nnetwork_dim = 16\n")
    code, out, _ = run_cli(
        capsys,
        db_path,
        "run",
        "create",
        "lora1",
        "--dataset",
        ds.name,
        "--model-type",
        "sdxl-lora",
        "--base-model",
        "sdxl.safetensors",
        "--caption",
        "alt",
        "--config",
        str(cfg),
        "--epochs",
        "5",
        "--json",
    )
    assert code == 0
    created = json.loads(out)
    assert created["number"] == 1 and created["epochs_planned"] == 5 and created["caption_type"] == "alt"
    assert created["config"]["network_dim"] == 16
    code, out, err = run_cli(capsys, db_path, "run", "create", "lora2", "--dataset", ds.name, "--parent", "lora1")
    assert code == 0 and "#2" in out
    code, out, err = run_cli(capsys, db_path, "run", "create", "lora3", "--dataset", "missing")
    assert code == 1 and err.startswith("sushitui: error: no dataset named 'missing'")
    code, out, _ = run_cli(capsys, db_path, "run", "list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["lora1", "lora2"]
    code, out, _ = run_cli(capsys, db_path, "run", "list")
    assert "lora1" in out and "pending" in out
    code, out, _ = run_cli(capsys, db_path, "run", "status", "lora1", "failed")
    assert code == 0 and "failed" in out
    code, out, _ = run_cli(capsys, db_path, "run", "show", "lora2")
    assert "parent         lora1" in out
    code, out, err = run_cli(capsys, db_path, "run", "remove", "lora1")
    assert code == 1 and "--yes" in err
    code, out, _ = run_cli(capsys, db_path, "run", "remove", "lora1", "--yes")
    assert code == 0
    code, out, err = run_cli(capsys, db_path, "run", "show", "lora1")
    assert code == 1 and "no training run named 'lora1'" in err


def test_cli_bad_config_file_is_a_clear_error(db, db_path, ds, tmp_path, capsys):
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json")
    code, _, err = run_cli(capsys, db_path, "run", "create", "x", "--dataset", ds.name, "--config", str(bad))
    assert code == 1 and "not valid json" in err.lower() and "Traceback" not in err


@pytest.mark.parametrize("ref", ["\u00b2", "1\u00b2"])
def test_cli_a_superscript_digit_is_a_name_not_a_crash(db, db_path, ds, capsys, ref):
    """str.isdigit() accepts "²" but int() does not: such a reference is looked up as a name."""
    code, _, err = run_cli(capsys, db_path, "run", "show", ref)
    assert code != 0 and "no training run named" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, db_path, "run", "create", "x", "--dataset", ref)
    assert code != 0 and "no dataset named" in err and "Traceback" not in err
