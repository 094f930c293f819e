"""The TUI export dialog: trigger word asked for, live preview as the trainer reads it,
export in a worker."""

from __future__ import annotations

import asyncio

import pytest
from export_helpers import make_synthetic
from textual.app import App
from textual.widgets import Input, Static
from tui_support import settle

from sushitui.tui.screens.export_dialog import ExportDialog


class Host(App):
    def __init__(self, dialog: ExportDialog):
        super().__init__()
        self.dialog = dialog
        self.result = "unset"

    def on_mount(self) -> None:
        self.push_screen(self.dialog, callback=self._done)

    def _done(self, result) -> None:
        self.result = result


def preview_text(dialog) -> str:
    return str(dialog.query_one("#export-preview", Static).render())


@pytest.mark.slow
def test_preview_shows_trigger_first_and_export_runs(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 20)
    dialog = ExportDialog(ds.id)
    app = Host(dialog)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, lambda: len(dialog.preview_texts) == 3)
            assert not any(t.startswith("ohwx") for t in dialog.preview_texts)
            await pilot.press(*"ohwx")  # the trigger field has the focus
            await settle(
                pilot, lambda: dialog.preview_texts and all(t.startswith("ohwx") for t in dialog.preview_texts)
            )
            assert all(t.split(", ")[0] == "ohwx" for t in dialog.preview_texts)
            assert "ohwx, " in preview_text(dialog)
            out = tmp_path / "out"
            dialog.query_one("#ex-outdir", Input).value = str(out)
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: dialog.report is not None, timeout=30)
            assert dialog.report.items_exported == 20
            written = {p.read_text(encoding="utf-8") for p in out.rglob("*.txt")}
            assert all(t in written for t in dialog.preview_texts)
            await pilot.press("escape")
            await settle(pilot, lambda: app.result != "unset")
            assert app.result is dialog.report

    asyncio.run(go())


def test_export_without_trigger_needs_a_second_press(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 8)
    dialog = ExportDialog(ds.id, query=None)
    app = Host(dialog)
    out = tmp_path / "out"

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: len(dialog.preview_texts) == 3)
            dialog.query_one("#ex-outdir", Input).value = str(out)
            await pilot.press("ctrl+s")
            await pilot.pause(0.2)
            error = str(dialog.query_one("#export-error", Static).render())
            assert "No trigger word" in error
            assert not out.exists()
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: dialog.report is not None, timeout=30)
            assert dialog.report.items_exported == 8

    asyncio.run(go())


def test_non_empty_outdir_is_shown_as_an_error(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 5)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    dialog = ExportDialog(ds.id, item_ids=None)
    app = Host(dialog)

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press(*"sks")
            dialog.query_one("#ex-outdir", Input).value = str(out)
            await pilot.press("ctrl+s")
            await settle(
                pilot, lambda: "not empty" in str(dialog.query_one("#export-error", Static).render()), timeout=20
            )
            assert [p.name for p in out.iterdir()] == ["mine.txt"]

    asyncio.run(go())


def test_a_caption_subtype_no_item_has_is_flagged_before_exporting_empty_captions(db, tmp_path):
    """A typo in the Captions field exported every image without a caption."""
    ds, _ = make_synthetic(tmp_path, 6)
    dialog = ExportDialog(ds.id)
    app = Host(dialog)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: len(dialog.preview_texts) == 3 and dialog.known_subtypes is not None)
            dialog.query_one("#ex-trigger", Input).value = "ohwx"
            dialog.query_one("#ex-caption", Input).value = "mian"
            await settle(pilot, lambda: "No item has a caption mian" in preview_text(dialog))
            assert "this dataset has: main" in preview_text(dialog)
            out = tmp_path / "out"
            dialog.query_one("#ex-outdir", Input).value = str(out)
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert not dialog.running and dialog.report is None
            assert "No item has a caption mian" in str(dialog.query_one("#export-error", Static).render())
            assert dialog.focused is dialog.query_one("#ex-caption")
            dialog.query_one("#ex-caption", Input).value = "main"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: dialog.report is not None, timeout=30)
            assert dialog.report.items_exported == 6

    asyncio.run(go())
