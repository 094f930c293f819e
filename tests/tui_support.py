"""Helpers for the Pilot tests of the TUI shell (datasets screen, browser)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path


def make_dataset(db_path: Path, root: Path, n_items: int, name: str = "cats", **gen) -> int:
    """Generate ``n_items`` under ``root`` and register them in the database at ``db_path``."""
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.dataset.synthetic import generate_dataset
    from sushitui.store import open_database

    generate_dataset(root, n_items, seed=3, **gen)
    db = open_database(db_path)
    try:
        ds, _ = add_dataset(DatasetSettings(name=name, root_path=str(root)))
        return ds.id
    finally:
        db.close()


def register(db_path: Path, root: Path, name: str) -> int:
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import open_database

    db = open_database(db_path)
    try:
        ds, _ = add_dataset(DatasetSettings(name=name, root_path=str(root)))
        return ds.id
    finally:
        db.close()


async def settle(pilot, until=None, timeout: float | None = None, what: str = "condition") -> bool:
    """The one way the Pilot tests wait for the app (workers post back asynchronously).

    ``settle(pilot, until)``: run the app until ``until()`` is true (then one pause, so
    that what it changed is drawn before the test reads the screen); an AssertionError
    naming ``what`` after ``timeout`` (10 s). Returns True, so ``assert await settle(...)``
    reads as it did.

    ``settle(pilot)``: run it until it is idle: no worker left running (or a dialog is
    waiting for the user, which its worker cannot finish without), still so after one
    more pause (a finished worker often starts the next). Gives up quietly after
    ``timeout`` (5 s): a worker that runs on is not in itself wrong; the assertions that
    follow say what the test expected.
    """
    from textual.screen import ModalScreen

    app = pilot.app
    if until is not None:
        deadline = time.monotonic() + (10.0 if timeout is None else timeout)
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await pilot.pause(0.02)
        await pilot.pause()  # and what it changed is on the screen (a pending layout is done)
        return True

    def idle() -> bool:
        return isinstance(app.screen, ModalScreen) or not any(w.is_running for w in app.workers)

    deadline = time.monotonic() + (5.0 if timeout is None else timeout)
    await pilot.pause()
    while time.monotonic() < deadline:
        if idle():
            await pilot.pause()
            if idle():
                break
        await pilot.pause(0.02)
    await pilot.pause()
    return True


async def open_browser(app, pilot, timeout: float = 10.0):
    """From the datasets screen: wait for the list, press Enter, wait for the first page."""
    from sushitui.tui.screens.browser import BrowserScreen
    from sushitui.tui.screens.datasets import DatasetsScreen

    await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen) and app.screen.rows, timeout, "the dataset list")
    await pilot.press("enter")
    await settle(
        pilot,
        lambda: isinstance(app.screen, BrowserScreen) and app.screen.first_page_at is not None,
        timeout,
        "the first page",
    )
    screen = app.screen
    await settle(pilot, lambda: screen.state.total is not None, timeout, "the count")
    await pilot.pause()
    return screen


def screen_text(app) -> str:
    """The visible screen as plain text, one line per row (what the user sees)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


def run(coro):
    return asyncio.run(coro)
