"""The auto-tag dialog driven with Pilot: settings, a real run in a worker, provider shown."""

from __future__ import annotations

import asyncio

import pytest
from tagger_support import make_dataset, tiny_models
from textual.app import App
from textual.widgets import Input, Select, Static
from tui_support import settle

from sushitui.tui.screens.autotag_dialog import CUSTOM, AutotagDialog


class Host(App):
    def __init__(self, dialog):
        super().__init__()
        self.dialog = dialog
        self.result = "not dismissed"

    def on_mount(self) -> None:
        self.push_screen(self.dialog, callback=lambda r: setattr(self, "result", r))


async def _start_and_read_error(app, pilot, dialog) -> str:
    """Wait for the dialog, press Start, and return the error it shows."""
    assert await settle(
        pilot, lambda: "all 1 items" in str(dialog.query_one("#autotag-title", Static).render()), timeout=15
    )
    await pilot.press("ctrl+s")
    assert await settle(pilot, lambda: dialog.query_one("#autotag-error").display, timeout=15)
    return str(dialog.query_one("#autotag-error", Static).render())


@pytest.mark.slow
def test_dialog_runs_autotag_and_shows_the_provider(db, tmp_path):
    ds, items = make_dataset(
        tmp_path / "data", {"red.png": ((255, 0, 0), (300, 200)), "blue.png": ((0, 0, 255), (200, 300))}
    )
    m = tiny_models()

    async def scenario():
        dialog = AutotagDialog(ds.id, item_ids=[items[0].id])
        app = Host(dialog)
        async with app.run_test(size=(80, 24)) as pilot:
            assert await settle(
                pilot, lambda: "1 item" in str(dialog.query_one("#autotag-title", Static).render()), timeout=15
            )
            select = dialog.query_one("#at-model", Select)
            assert any(v == "cl-1.02" for _, v in select._options)
            select.value = CUSTOM
            await pilot.pause()
            assert dialog.query_one("#custom-model").display
            dialog.query_one("#at-model-path", Input).value = str(m["wd"])
            dialog.query_one("#at-labels", Input).value = str(m["wd_csv"])
            dialog.query_one("#at-threshold", Input).value = "2"
            await pilot.press("ctrl+s")
            assert "Threshold: must be between 0 and 1" in str(dialog.query_one("#autotag-error", Static).render())
            assert not dialog.running
            dialog.query_one("#at-threshold", Input).value = "0.35"
            await pilot.press("ctrl+s")
            assert await settle(pilot, lambda: dialog.report is not None, timeout=15)
            provider = str(dialog.query_one("#autotag-provider", Static).render())
            assert "CPUExecutionProvider" in provider
            assert dialog.query_one("#autotag-provider").has_class("fallback")  # auto fell back: shown as a warning
            assert "tagged 1" in str(dialog.query_one("#autotag-result", Static).render())
            await pilot.press("escape")
            await pilot.pause()
            assert app.result is dialog.report

    asyncio.run(scenario())
    assert (tmp_path / "data" / "red.txt").read_text() == "red background"
    assert not (tmp_path / "data" / "blue.txt").exists()  # only the chosen item


@pytest.mark.slow
def test_dialog_reports_a_missing_model_without_crashing(db, tmp_path):
    ds, _ = make_dataset(tmp_path / "data", {"red.png": ((255, 0, 0), (30, 20))})

    async def scenario():
        dialog = AutotagDialog(ds.id)
        app = Host(dialog)
        async with app.run_test(size=(100, 30)) as pilot:
            text = await _start_and_read_error(app, pilot, dialog)  # cl-1.02 is not in the (empty, offline) cache
            assert "models download cl-1.02" in text and not dialog.running
            # The advice names the dialog's own way, not only the CLI flags.
            assert "custom file" in text

    asyncio.run(scenario())


@pytest.mark.slow
def test_dialog_refuses_a_subtype_no_scan_could_read_back(db, tmp_path):
    """wd_tags would be written as red_wd_tags.txt, which a scan reads as subtype 'tags'
    of an image 'red_wd': refused before the model is even looked for, nothing written."""
    ds, _ = make_dataset(tmp_path / "data", {"red.png": ((255, 0, 0), (30, 20))})

    async def scenario():
        dialog = AutotagDialog(ds.id)
        app = Host(dialog)
        async with app.run_test(size=(80, 24)) as pilot:
            dialog.query_one("#at-subtype", Input).value = "wd_tags"  # typed before Start
            text = await _start_and_read_error(app, pilot, dialog)
            assert "'wd_tags' cannot name a caption file" in text and "'wd-tags'" in text and not dialog.running

    asyncio.run(scenario())
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["red.png"]
