"""The sample dataset behind ``sushitui --demo``: generated once, registered, reused."""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "demo"
DEMO_ITEMS = 240


def prepare_demo(data_dir: Path | None = None, n_items: int = DEMO_ITEMS) -> str:
    """Generate the sample dataset (once) and register it; returns its name.

    The database must be open. Files go to ``<data dir>/demo``; an existing demo dataset
    is reused as it is.
    """
    from sushitui.config import data_dir as default_data_dir
    from sushitui.dataset.registry import DatasetNotFound, DatasetSettings, add_dataset, get_dataset
    from sushitui.dataset.synthetic import generate_dataset

    try:
        get_dataset(DEMO_NAME)
        return DEMO_NAME
    except DatasetNotFound:
        pass
    root = (data_dir or default_data_dir()) / "demo"
    if not root.is_dir() or not any(root.iterdir()):
        generate_dataset(root, n_items, seed=7, image_size=(96, 96), items_per_dir=60)
    add_dataset(DatasetSettings(name=DEMO_NAME, root_path=str(root)))
    return DEMO_NAME
