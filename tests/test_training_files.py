"""TR-4 `run sample` files and TR-2 `run record --from FILE.jsonl` (incl. --follow)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)
from training_support import make_dataset, usage_invariants

from sushitui.cli import main as cli_main
from sushitui.store import TrainingRun
from sushitui.training import create_run, open_run
from sushitui.training.jsonl_record import record_jsonl


@pytest.fixture
def ds(db, tmp_path):
    return make_dataset(tmp_path / "data", 30)


def cli(capsys, db_path, *argv):
    code = cli_main(["--db", str(db_path), *argv])
    c = capsys.readouterr()
    return code, c.out, c.err


@pytest.mark.slow
def test_sample_jsonl_and_list_match_the_training_loop_order(db, db_path, ds, tmp_path, capsys):
    create_run("r", ds.name)
    out = tmp_path / "plan.jsonl"
    code, _, err = cli(
        capsys,
        db_path,
        "run",
        "sample",
        "r",
        "--epochs",
        "3",
        "--sampler",
        "min-usage",
        "--seed",
        "7",
        "--out",
        str(out),
        "--format",
        "jsonl",
    )
    assert code == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 90 and {x["epoch"] for x in lines} == {1, 2, 3}
    assert all(os.path.exists(x["image"]) and x["caption"].startswith("main ") for x in lines)
    listing = tmp_path / "plan.txt"
    assert (
        cli(
            capsys,
            db_path,
            "run",
            "sample",
            "r",
            "--epochs",
            "3",
            "--sampler",
            "min-usage",
            "--seed",
            "7",
            "--out",
            str(listing),
        )[0]
        == 0
    )
    assert listing.read_text().splitlines() == [x["image"] for x in lines]
    # the same plan the Python API gives a trainer
    with open_run("r", db_path=db_path) as run:
        api = [it.id for e in (1, 2, 3) for it in run.sample_epoch(e, sampler="min-usage", seed=7)]
    assert api == [x["id"] for x in lines]
    assert TrainingRun.get(TrainingRun.name == "r").metadata_file == str(listing.resolve())


@pytest.mark.slow
def test_sample_kohya_json_is_kohya_metadata_in_first_use_order(db, db_path, ds, tmp_path, capsys):
    create_run("r", ds.name)
    out = tmp_path / "meta.json"
    code, _, err = cli(
        capsys,
        db_path,
        "run",
        "sample",
        "r",
        "--epochs",
        "1",
        "--sampler",
        "random",
        "--seed",
        "1",
        "--out",
        str(out),
        "--format",
        "kohya-json",
    )
    assert code == 0, err
    meta = json.loads(out.read_text())
    assert len(meta) == 30
    with open_run("r", db_path=db_path) as run:
        order = run.sample_epoch(1, sampler="random", seed=1)
    assert list(meta) == [it.image for it in order]
    assert all(set(v) == {"caption"} and v["caption"] for v in meta.values())


@pytest.mark.slow
def test_sample_rejects_bad_arguments(db, db_path, ds, tmp_path, capsys):
    create_run("r", ds.name)
    code, _, err = cli(
        capsys, db_path, "run", "sample", "r", "--epochs", "1", "--sampler", "bogus", "--out", str(tmp_path / "x")
    )
    assert code == 1 and "unknown sampler 'bogus'" in err
    assert not (tmp_path / "x").exists()


def test_record_from_jsonl_reports_bad_lines_by_number_and_records_the_rest(db, db_path, ds, tmp_path, capsys):
    create_run("r", ds.name)
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    root = ds.root_path
    lines = [
        json.dumps({"epoch": 1, "step": 0, "ids": ids[:4]}),
        json.dumps({"epoch": 1, "step": 1, "images": [os.path.join(root, "img_00004.png"), "img_00005.png"]}),
        "{broken",
        json.dumps({"step": 2, "ids": [ids[0]]}),
        json.dumps({"epoch": 1, "step": 3, "ids": [ids[6], 999999]}),
        json.dumps({"epoch": "x", "ids": [ids[0]]}),
        "",
        json.dumps([1, 2]),
        json.dumps({"epoch": 2, "step": 4, "image": "no/such.png"}),
        json.dumps({"epoch": 2, "step": 5, "id": ids[7]}),
    ]
    src = tmp_path / "usage.jsonl"
    src.write_text("\n".join(lines))  # last line without newline is still read
    code, out, _ = cli(capsys, db_path, "run", "record", "r", "--from", str(src), "--json")
    assert code == 0
    rep = json.loads(out)
    assert rep["events"] == 4 + 2 + 1 + 1
    assert [p["line"] for p in rep["problems"]] == [3, 4, 5, 6, 8, 9]
    reasons = {p["line"]: p["reason"] for p in rep["problems"]}
    assert "not JSON" in reasons[3] and '"epoch"' in reasons[4] and "id 999999" in reasons[5]
    assert "no/such.png" in reasons[9]
    assert usage_invariants(db) == (8, 8, 8)
    row = TrainingRun.get(TrainingRun.name == "r")
    assert (row.epochs_done, row.steps_done) == (2, 5)


def test_record_follow_tails_a_file_the_trainer_appends_to(db, db_path, ds, tmp_path):
    create_run("r", ds.name)
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    src = tmp_path / "live.jsonl"
    src.write_text("")

    def trainer():
        with open(src, "a") as fh:
            for step in range(10):
                line = json.dumps({"epoch": 1, "step": step, "ids": ids[step : step + 2]})
                fh.write(line[:5])  # a half-written line must wait for its newline
                fh.flush()
                time.sleep(0.02)
                fh.write(line[5:] + "\n")
                fh.flush()

    t = threading.Thread(target=trainer)
    t.start()
    run = open_run("r", db_path=db_path)
    report = record_jsonl(run, src, follow=True, poll_seconds=0.02, idle_timeout=1.0)
    t.join()
    run.close()
    assert report.problems == []
    assert report.lines_recorded == 10 and report.events == 20
    assert TrainingRun.get(TrainingRun.name == "r").samples_seen == 20


@pytest.mark.slow
def test_record_missing_file_is_a_clear_error(db, db_path, ds, tmp_path, capsys):
    create_run("r", ds.name)
    code, _, err = cli(capsys, db_path, "run", "record", "r", "--from", str(tmp_path / "nope.jsonl"))
    assert code == 1 and "no such file" in err


@pytest.mark.slow
def test_recording_a_file_again_continues_after_the_last_recorded_line(db, db_path, ds, tmp_path, capsys):
    create_run("r", ds.name)
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    src = tmp_path / "usage.jsonl"
    line = lambda step: json.dumps({"epoch": 1, "step": step, "ids": ids[:3]}) + "\n"  # noqa: E731
    src.write_text(line(0) + line(1) + "oops\n")
    code, out, _ = cli(capsys, db_path, "run", "record", "r", "--from", str(src), "--json")
    assert json.loads(out)["events"] == 6
    with open(src, "a") as fh:  # the trainer went on writing
        fh.write(line(2) + "bad again\n")
    code, out, _ = cli(capsys, db_path, "run", "record", "r", "--from", str(src), "--json")
    rep = json.loads(out)
    assert rep["events"] == 3 and rep["resumed_at_line"] == 3
    assert [p["line"] for p in rep["problems"]] == [5]  # line numbers stay those of the file
    assert TrainingRun.get(TrainingRun.name == "r").samples_seen == 9
    # nothing new: nothing counted
    code, out, _ = cli(capsys, db_path, "run", "record", "r", "--from", str(src))
    assert "recorded 0 samples" in out and "continuing after line 5" in out
    # a new file under the same name (a new training session) is read from the start
    src.unlink()
    src.write_text(line(0))
    code, out, _ = cli(capsys, db_path, "run", "record", "r", "--from", str(src), "--json")
    assert json.loads(out)["events"] == 3
    # --reread counts everything again, on purpose
    code, out, _ = cli(capsys, db_path, "run", "record", "r", "--from", str(src), "--reread", "--json")
    assert json.loads(out)["events"] == 3
    assert usage_invariants(db) == (15, 15, 15)


FOLLOW_SCRIPT = """
import sys
import sushitui.training as training
from sushitui.training.jsonl_record import record_jsonl
run = training.open_run("r", db_path=sys.argv[1], flush_every=40, flush_seconds=3600)
print("ready", flush=True)
record_jsonl(run, sys.argv[2], follow=True, poll_seconds=0.01)
"""


def test_killed_follow_then_restarted_counts_every_line_exactly_once(db, db_path, ds, tmp_path):
    import signal
    import subprocess
    import sys

    create_run("r", ds.name)
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    src = tmp_path / "live.jsonl"
    src.write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-c", FOLLOW_SCRIPT, str(db_path), str(src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        deadline = time.monotonic() + 20
        with open(src, "a") as fh:
            for step in range(300):
                fh.write(json.dumps({"epoch": 1, "step": step, "ids": ids[step % 20 : step % 20 + 3]}) + "\n")
                fh.flush()
                if step % 50 == 0:
                    time.sleep(0.02)
        # kill the follower once it has flushed part of the file
        while TrainingRun.get(TrainingRun.name == "r").samples_seen < 300 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with open(src, "a") as fh:  # the trainer goes on while nobody follows
        for step in range(300, 600):
            fh.write(json.dumps({"epoch": 1, "step": step, "ids": ids[step % 20 : step % 20 + 3]}) + "\n")
    flushed = TrainingRun.get(TrainingRun.name == "r").samples_seen
    assert 300 <= flushed <= 900
    run = open_run("r", db_path=db_path)
    report = record_jsonl(run, src)
    run.close()
    assert report.problems == []
    assert TrainingRun.get(TrainingRun.name == "r").samples_seen == 1800  # 600 lines x 3, once each
    assert usage_invariants(db) == (1800, 1800, 1800)


def test_sample_files_carry_captions_with_quotes_newlines_and_unicode(db, db_path, ds, tmp_path, capsys):
    tricky = 'a "quoted" tag, 日本語\nsecond line \\ end'
    first = db.execute_sql("SELECT MIN(id) FROM item").fetchone()[0]
    db.execute_sql("UPDATE caption SET content = ? WHERE item_id = ?", (tricky, first))
    create_run("r", ds.name)
    out = tmp_path / "plan.jsonl"
    assert cli(capsys, db_path, "run", "sample", "r", "--epochs", "2", "--out", str(out), "--format", "jsonl")[0] == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 60
    assert [x["caption"] for x in lines if x["id"] == first] == [tricky, tricky]
    meta_out = tmp_path / "meta.json"
    assert (
        cli(capsys, db_path, "run", "sample", "r", "--epochs", "1", "--out", str(meta_out), "--format", "kohya-json")[0]
        == 0
    )
    assert tricky in [v["caption"] for v in json.loads(meta_out.read_text(encoding="utf-8")).values()]


def test_group_items_carry_their_related_images_to_the_trainer(db, db_path, tmp_path, capsys):
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.dataset.synthetic import generate_dataset

    generate_dataset(tmp_path / "pairs", 30, seed=3, image_size=(8, 8), group_fraction=0.5)
    ds, _ = add_dataset(DatasetSettings(name="pairs", root_path=str(tmp_path / "pairs")))
    groups = db.execute_sql(
        "SELECT COUNT(*) FROM item WHERE dataset_id = ? AND related_images != '{}'", (ds.id,)
    ).fetchone()[0]
    assert groups > 0
    create_run("r", "pairs")
    out = tmp_path / "plan.jsonl"
    assert cli(capsys, db_path, "run", "sample", "r", "--epochs", "1", "--out", str(out), "--format", "jsonl")[0] == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    with_related = [x for x in lines if x.get("related")]
    assert len(with_related) == groups
    for x in with_related:
        assert all(os.path.isabs(p) and os.path.exists(p) and p != x["image"] for p in x["related"].values())
    with open_run("r", db_path=db_path) as run:
        assert {it.id: it.related for it in run.items()} == {x["id"]: x.get("related", {}) for x in lines}
        assert len(set(run.items())) == len(lines)  # SampleItems stay hashable
