"""The README's example training loop runs for real against a scanned dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)
from training_support import usage_invariants

from sushitui.store import TrainingRun
from sushitui.training import create_run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_loop.py"


@pytest.mark.slow
def test_example_training_loop_records_every_sample(db, db_path, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.dataset.synthetic import generate_dataset

    generate_dataset(tmp_path / "pics", 24, seed=1, image_size=(8, 8))
    ds, report = add_dataset(DatasetSettings(name="pics", root_path=str(tmp_path / "pics")))
    n_images = db.execute_sql(
        "SELECT COUNT(*) FROM item WHERE dataset_id = ? AND image_path IS NOT NULL", (ds.id,)
    ).fetchone()[0]
    assert n_images >= 20
    create_run("my-lora", "pics", epochs=3)
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "my-lora",
            "--db",
            str(db_path),
            "--epochs",
            "3",
            "--sampler",
            "min-usage",
            "--seed",
            "42",
            "--batch-size",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("epoch ") == 3
    run = TrainingRun.get(TrainingRun.name == "my-lora")
    assert run.status == "completed"
    assert run.samples_seen == 3 * n_images and run.epochs_done == 3
    assert usage_invariants(db) == (3 * n_images,) * 3
