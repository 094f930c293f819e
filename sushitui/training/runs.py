"""Training runs (TR-1): create, list, show, change status, remove.

A run belongs to a dataset; its ``number`` counts the runs of that dataset (1, 2, ...).
A run may name a parent run it resumes from. Removing a run takes its usage out of the
per-item totals (``ItemStats``) with one set-based UPDATE, so the totals stay equal to
the sum over the remaining runs without rescanning history.
"""

from __future__ import annotations

import time
from typing import Any

from peewee import fn

from sushitui.dataset.registry import DatasetNotFound, get_dataset
from sushitui.errors import UserError
from sushitui.store import Dataset, ItemStats, RunItemUsage, TrainingRun, write_transaction
from sushitui.store.db import current_database

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FINISHED_STATUSES = ("completed", "failed", "cancelled")


class TrainingError(UserError):
    """A problem with a run the user can act on; the message says what to do."""


class RunNotFound(TrainingError):
    pass


class RunExists(TrainingError):
    pass


# An unknown dataset is the registry's error everywhere; the old name stays for
# training scripts that catch it.
DatasetNotFoundError = DatasetNotFound


def get_run(name_or_id: str | int | TrainingRun) -> TrainingRun:
    """A run by name (or numeric id)."""
    if isinstance(name_or_id, TrainingRun):
        return name_or_id
    run = TrainingRun.get_or_none(TrainingRun.name == str(name_or_id))
    if run is None and str(name_or_id).isdecimal():
        run = TrainingRun.get_or_none(TrainingRun.id == int(name_or_id))
    if run is None:
        raise RunNotFound(f"no training run named {name_or_id!r}; `sushitui run list` shows the runs")
    return run


def create_run(
    name: str,
    dataset: str | int | Dataset,
    *,
    parent: str | int | TrainingRun | None = None,
    model_type: str | None = None,
    base_model: str | None = None,
    caption_type: str | None = None,
    config: dict[str, Any] | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    output_path: str | None = None,
    checkpoint_dir: str | None = None,
    metadata_file: str | None = None,
) -> TrainingRun:
    name = (name or "").strip()
    if not name:
        raise TrainingError("a run needs a name")
    if epochs is not None and epochs < 0:
        raise TrainingError("--epochs must be 0 or more")
    ds = get_dataset(dataset)
    parent_run = get_run(parent) if parent is not None else None
    if parent_run is not None and parent_run.dataset_id != ds.id:
        raise TrainingError(
            f"parent run {parent_run.name!r} trained dataset #{parent_run.dataset_id}, not {ds.name!r}; "
            "a resumed run must use the same dataset"
        )
    with write_transaction():
        if TrainingRun.get_or_none(TrainingRun.name == name) is not None:
            raise RunExists(f"a run named {name!r} exists already; choose another name or remove it first")
        # number = max + 1 inside the write transaction, so two creators never share one
        last = TrainingRun.select(fn.MAX(TrainingRun.number)).where(TrainingRun.dataset == ds.id).scalar()
        return TrainingRun.create(
            name=name,
            number=(last or 0) + 1,
            dataset=ds.id,
            parent=parent_run.id if parent_run else None,
            model_type=model_type,
            base_model=base_model,
            caption_type=caption_type,
            config=config,
            epochs_planned=epochs,
            steps_planned=steps,
            output_path=output_path,
            checkpoint_dir=checkpoint_dir,
            metadata_file=metadata_file,
        )


def list_runs(dataset: str | int | Dataset | None = None) -> list[TrainingRun]:
    q = TrainingRun.select().order_by(TrainingRun.dataset, TrainingRun.number)
    if dataset is not None:
        q = q.where(TrainingRun.dataset == get_dataset(dataset).id)
    return list(q)


def set_status(run: str | int | TrainingRun, status: str) -> TrainingRun:
    """Change the status; ``running`` stamps the start, a finished status the end."""
    status = status.strip().lower()
    if status not in STATUSES:
        raise TrainingError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    run = get_run(run)
    now = time.time()
    with write_transaction():
        updates: dict[Any, Any] = {TrainingRun.status: status}
        if status == "running":
            updates[TrainingRun.started_at] = fn.COALESCE(TrainingRun.started_at, now)
            updates[TrainingRun.finished_at] = None
        elif status in FINISHED_STATUSES:
            updates[TrainingRun.finished_at] = now
            updates[TrainingRun.started_at] = fn.COALESCE(TrainingRun.started_at, now)
        TrainingRun.update(updates).where(TrainingRun.id == run.id).execute()
    return TrainingRun.get_by_id(run.id)


def remove_run(run: str | int | TrainingRun) -> int:
    """Delete a run and its usage rows; returns the number of items whose totals changed."""
    run = get_run(run)
    db = current_database()
    with write_transaction():
        cur = db.execute_sql(
            "UPDATE item_stats SET total_seen = item_stats.total_seen - u.times_seen, "
            "runs_participated = item_stats.runs_participated - 1, "
            "usage_sumsq = item_stats.usage_sumsq - u.times_seen * u.times_seen "
            "FROM (SELECT item_id, times_seen FROM run_item_usage WHERE run_id = ?) AS u "
            "WHERE item_stats.item_id = u.item_id",
            (run.id,),
        )
        changed = cur.rowcount
        ItemStats.delete().where(ItemStats.runs_participated <= 0).execute()
        RunItemUsage.delete().where(RunItemUsage.run == run.id).execute()
        TrainingRun.update(parent=None).where(TrainingRun.parent == run.id).execute()
        TrainingRun.delete().where(TrainingRun.id == run.id).execute()
    return changed


def items_used(run: TrainingRun) -> int:
    return RunItemUsage.select().where(RunItemUsage.run == run.id).count()


def run_to_dict(run: TrainingRun, *, with_usage: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "number": run.number,
        "dataset": run.dataset.name,
        "dataset_id": run.dataset_id,
        "parent": run.parent.name if run.parent_id else None,
        "model_type": run.model_type,
        "base_model": run.base_model,
        "caption_type": run.caption_type,
        "config": run.config,
        "status": run.status,
        "epochs_planned": run.epochs_planned,
        "steps_planned": run.steps_planned,
        "epochs_done": run.epochs_done,
        "steps_done": run.steps_done,
        "samples_seen": run.samples_seen,
        "output_path": run.output_path,
        "checkpoint_dir": run.checkpoint_dir,
        "metadata_file": run.metadata_file,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }
    if with_usage:
        d["items_used"] = items_used(run)
    return d
