"""Training runs: usage recording from training loops, balanced samplers, statistics (TR).

The public API for training scripts is ``open_run``; see ``sushitui.training.recorder``.
"""

from sushitui.training.pool import SampleItem
from sushitui.training.recorder import Run, UnknownItemError, open_run
from sushitui.training.runs import (
    STATUSES,
    DatasetNotFoundError,
    RunExists,
    RunNotFound,
    TrainingError,
    create_run,
    get_run,
    list_runs,
    remove_run,
    run_to_dict,
    set_status,
)

__all__ = [
    "STATUSES",
    "DatasetNotFoundError",
    "Run",
    "RunExists",
    "RunNotFound",
    "SampleItem",
    "TrainingError",
    "UnknownItemError",
    "create_run",
    "get_run",
    "list_runs",
    "open_run",
    "remove_run",
    "run_to_dict",
    "set_status",
]
