"""The dataset form offers the issue-17 layout settings: suffix separator, image suffix
roles (0=source) and a folder caption file."""

from __future__ import annotations

import asyncio

import pytest
from tui_support import make_dataset, settle

from sushitui.tui.screens.datasets import validate_form

RAW = {
    "name": "n",
    "root_path": "",
    "type": "auto",
    "caption_suffixes": "main,alt",
    "image_suffixes": "source,target",
    "primary_suffix": "",
    "recursive": True,
    "max_depth": "",
    "read_exif": False,
    "caption_types": "",
}


@pytest.fixture(autouse=True)
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


def test_form_accepts_roles_separator_and_folder_caption():
    values, errors = validate_form(
        {
            **RAW,
            "image_suffixes": "0=source,1=target",
            "primary_suffix": "target",
            "suffix_separator": "-",
            "folder_caption": "instruction.txt",
        },
        set(),
        True,
    )
    assert errors == {}
    assert values.scan_settings()["image_suffixes"] == ["0=source", "1=target"]
    assert values.scan_settings()["suffix_separator"] == "-"
    assert values.scan_settings()["folder_caption"] == "instruction.txt"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"suffix_separator": "-", "image_suffixes": "mask-label"}, "image_suffixes"),
        ({"folder_caption": "a/instruction.txt"}, "folder_caption"),
        ({"image_suffixes": "0=,1=target"}, "image_suffixes"),
    ],
)
def test_form_names_the_bad_field(changes, field):
    values, errors = validate_form({**RAW, **changes}, set(), True)
    assert values is None and field in errors


def test_editing_the_separator_in_the_form_saves_it(tmp_path, db_path):
    from textual.widgets import Input, Select

    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.datasets import DatasetForm, DatasetsScreen
    from sushitui.tui.widgets.confirm import ConfirmDialog

    make_dataset(db_path, tmp_path / "ds", 4, name="lay", nested=False)
    app = SushiApp(db_path, first_start=False)

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await settle(pilot, lambda: isinstance(screen, DatasetsScreen) and screen.rows, what="list")
            await pilot.press("e")
            await settle(pilot, lambda: isinstance(app.screen, DatasetForm), what="settings form")
            app.screen.query_one("#f-suffix_separator", Select).value = "."
            app.screen.query_one("#f-folder_caption", Input).value = "prompt.txt"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="reindex question")
            await pilot.press("n")
            await pilot.pause()

    asyncio.run(go())
    from sushitui.store import Dataset, open_database

    db = open_database(db_path)
    try:
        ds = Dataset.get(Dataset.name == "lay")
        assert (ds.suffix_separator, ds.folder_caption) == (".", "prompt.txt")
    finally:
        db.close()
