"""The runs screen (TR-5) driven with Pilot: list, stats view, scope, status, remove."""

from __future__ import annotations

import asyncio

from textual.app import App
from textual.widgets import DataTable, Static
from training_support import make_dataset
from tui_support import settle

from sushitui.store import TrainingRun
from sushitui.training import create_run, open_run
from sushitui.tui.screens.runs import RunsScreen


class Host(App):
    def __init__(self, screen):
        super().__init__()
        self._screen = screen

    def on_mount(self) -> None:
        self.push_screen(self._screen)


def stats_text(screen) -> str:
    return str(screen.query_one("#runs-stats", Static).render())


def test_runs_screen_shows_stats_and_acts_on_runs(db, tmp_path):
    ds = make_dataset(tmp_path / "data", 30, files=False)
    ids = [r[0] for r in db.execute_sql("SELECT id FROM item ORDER BY id")]
    create_run("first", ds.name)
    with open_run("first") as run:
        run.record(ids[:10] * 4 + [ids[3]] * 20, 1, 0)
    create_run("second", ds.name, parent="first")
    with open_run("second") as run:
        run.record(ids[10:], 1, 0)

    async def scenario():
        screen = RunsScreen(dataset_id=ds.id)
        app = Host(screen)
        async with app.run_test(size=(80, 24)) as pilot:
            table = screen.query_one("#runs-table", DataTable)
            assert await settle(pilot, lambda: table.row_count == 2 and "Most used" in stats_text(screen))
            text = stats_text(screen)
            assert "first" in text and "never used 20" in text and "img_00003" in text
            assert "Recommendation" in text and "stratified" in text
            assert any(ch in text for ch in "░▒▓█")  # the heatmap
            await pilot.press("down")
            assert await settle(pilot, lambda: "second" in stats_text(screen) and "never used 10" in stats_text(screen))
            await pilot.press("a")  # totals over all runs: every item was used by one of them
            assert await settle(
                pilot, lambda: "all runs" in stats_text(screen) and "never used 0" in stats_text(screen)
            )
            await pilot.press("enter")
            assert screen.has_class("stats-only")
            await pilot.press("escape")
            assert not screen.has_class("stats-only")
            await pilot.press("c")
            assert await settle(pilot, lambda: TrainingRun.get(TrainingRun.name == "second").status == "completed")
            await pilot.press("x")
            await pilot.press("y")
            assert await settle(pilot, lambda: table.row_count == 1)
            assert TrainingRun.get_or_none(TrainingRun.name == "second") is None

    asyncio.run(scenario())


def test_runs_screen_without_runs_says_how_to_create_one(db):
    async def scenario():
        screen = RunsScreen()
        app = Host(screen)
        async with app.run_test(size=(80, 24)) as pilot:
            empty = screen.query_one("#runs-empty", Static)
            assert await settle(pilot, lambda: "sushitui run create" in str(empty.render()))

    asyncio.run(scenario())
