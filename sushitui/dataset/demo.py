"""The sample dataset behind ``sushitui --demo``: generated once, registered, reused.

The pictures are drawn scenes with tags and captions taken from what was drawn
(``sushitui.dataset.demo_scenes``); embedded EXIF/XMP captions are read, so the dataset
shows every caption source. (``sushitui.dataset.synthetic`` stays the generator of
scale for tests and benchmarks.)"""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "demo"
DEMO_ITEMS = 150
DEMO_SEED = 7


def prepare_demo(data_dir: Path | None = None, n_items: int = DEMO_ITEMS) -> str:
    """Generate the sample dataset (once) and register it; returns its name.

    The database must be open. Files go to ``<data dir>/demo``; an existing demo dataset
    is reused as it is.
    """
    from sushitui.config import data_dir as default_data_dir
    from sushitui.dataset.demo_scenes import generate_demo
    from sushitui.dataset.registry import DatasetNotFound, DatasetSettings, add_dataset, get_dataset

    try:
        get_dataset(DEMO_NAME)
        return DEMO_NAME
    except DatasetNotFound:
        pass
    root = (data_dir or default_data_dir()) / "demo"
    if not root.is_dir() or not any(root.iterdir()):
        generate_demo(root, n_items, seed=DEMO_SEED)
    add_dataset(DatasetSettings(name=DEMO_NAME, root_path=str(root), read_exif=True))
    return DEMO_NAME
