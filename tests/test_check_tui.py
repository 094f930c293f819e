"""The health check in the TUI (issue 18): a badge on cards with findings, a findings column
on the datasets screen, a check run from the browser, the duplicates screen (keep one,
exclude the rest) and the export dialog's new trainer formats."""

from __future__ import annotations

import asyncio
import atexit
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tui_support import open_browser, register, settle


@pytest.fixture(autouse=True)
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


def _picture(seed: int, size=(1024, 1024)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)


_made_sets: dict[int, Path] = {}


def make_check_set(root: Path, seed: int = 0) -> Path:
    """alpha = alpha_copy (the same bytes), beta ≈ beta_near (resized JPEG), clean (1024²,
    no finding), tiny (300×200: upscaled, too small). Each test gets its own copy of a set
    made once per seed (encoding the 1024² pictures was ~1 s of CPU per test)."""
    if seed not in _made_sets:
        made = Path(tempfile.mkdtemp(prefix="sushitui-check-set-"))
        atexit.register(shutil.rmtree, made, True)
        _made_sets[seed] = _make_check_set(made / "set", seed)
    shutil.copytree(_made_sets[seed], root)
    return root


def _make_check_set(root: Path, seed: int) -> Path:
    root.mkdir(parents=True)
    _picture(seed + 1).save(root / "alpha.png")
    shutil.copy(root / "alpha.png", root / "alpha_copy.png")
    _picture(seed + 2).save(root / "beta.png")
    _picture(seed + 2).resize((1000, 1000)).save(root / "beta_near.jpg", quality=80)
    _picture(seed + 3).save(root / "clean.png")
    _picture(seed + 4, (300, 200)).save(root / "tiny.png")
    for name in ("alpha", "alpha_copy", "beta", "beta_near", "clean", "tiny"):
        (root / f"{name}.txt").write_text("1girl, solo, smile", encoding="utf-8")
    return root


def run_core_check(db_path: Path, name: str) -> None:
    from sushitui.check import CheckOptions, run_check
    from sushitui.store import open_database

    db = open_database(db_path)
    try:
        run_check(name, CheckOptions(t5=False))
    finally:
        db.close()


def _marks(root: Path) -> dict:
    path = root / ".sushitui" / "marks.json"
    return json.loads(path.read_text("utf-8"))["items"] if path.exists() else {}


def _app(db_path):
    from sushitui.tui.app import SushiApp

    return SushiApp(db_path, first_start=False)


def card_top(grid, name: str) -> str:
    """The top border of ``name``'s card as the user sees it."""
    index = next(i for i, c in enumerate(grid.page) if c.name == name)
    card = grid._render_card(index, grid._styles())
    return "".join(seg.text for seg in card[0])


def test_cards_with_findings_show_a_badge_and_clean_ones_do_not(tmp_path, db_path):
    root = make_check_set(tmp_path / "set")
    register(db_path, root, "set")
    run_core_check(db_path, "set")
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            grid = browser.grid
            assert "!2" in card_top(grid, "tiny")  # upscaled + small image
            assert "!1" in card_top(grid, "alpha")  # exact duplicate
            clean = card_top(grid, "clean")
            assert "clean" in clean and "!" not in clean
            assert len(card_top(grid, "tiny")) == grid.card_width  # the badge keeps the card's width

    asyncio.run(go())


def test_datasets_screen_counts_items_with_findings_and_dashes_unchecked(tmp_path, db_path):
    from sushitui.tui.screens.datasets import DatasetsScreen

    register(db_path, make_check_set(tmp_path / "set"), "checked")
    register(db_path, make_check_set(tmp_path / "other", seed=10), "unchecked")  # other pictures: no copies
    run_core_check(db_path, "checked")
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen) and len(app.screen.rows) == 2)
            await settle(pilot)
            table = app.screen.query_one("#datasets-table")
            assert table.get_cell("checked", "findings").plain == "5"  # all but clean
            assert table.get_cell("unchecked", "findings").plain == "—"

    asyncio.run(go())


def test_k_in_the_browser_runs_the_check_then_check_any_lists_the_items(tmp_path, db_path):
    root = make_check_set(tmp_path / "set")
    register(db_path, root, "set")
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            browser = await open_browser(app, pilot)
            assert "!" not in card_top(browser.grid, "tiny")  # never checked: no badge
            await pilot.press("k")
            await settle(pilot, lambda: browser.checks_done == 1, timeout=60, what="the check")
            await settle(pilot, lambda: "!2" in card_top(browser.grid, "tiny"), what="the badge after the check")
            browser.set_query("check:any")
            await settle(pilot, lambda: browser.state.total == 5, what="check:any's count")

    asyncio.run(go())


def test_duplicates_screen_keeps_one_and_flags_the_rest_exclude(tmp_path, db_path):
    from sushitui.tui.screens.duplicates import DuplicatesScreen

    root = make_check_set(tmp_path / "set")
    register(db_path, root, "set")
    run_core_check(db_path, "set")
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await open_browser(app, pilot)
            await pilot.press("d")
            await settle(pilot, lambda: isinstance(app.screen, DuplicatesScreen) and app.screen.loaded, what="groups")
            dup = app.screen
            await settle(pilot, lambda: dup.columns == 2, what="two columns at 80×24")
            assert [g.kind for g in dup.groups] == ["exact", "near"]
            assert [m.name for m in dup.group.members] == ["alpha", "alpha_copy"]
            await pilot.press("right", "k")  # keep alpha_copy
            await settle(pilot, lambda: dup.keeps_done == 1, what="the keep")
            assert _marks(root) == {"alpha": {"flags": ["exclude"]}}
            assert dup.group_index == 1  # the next group came up
            assert {m.name for m in dup.group.members} == {"beta", "beta_near"}
            await pilot.press("k")  # keep the first of the near group
            await settle(pilot, lambda: dup.keeps_done == 2, what="the second keep")
            kept = dup.group.members[0].name
            other = ({"beta", "beta_near"} - {kept}).pop()
            assert _marks(root) == {"alpha": {"flags": ["exclude"]}, other: {"flags": ["exclude"]}}
            await pilot.press("p")  # back to the exact group: it shows who is out
            assert [m.excluded for m in dup.group.members] == [True, False]
            await pilot.press("k")  # change of mind: keep alpha after all
            await settle(pilot, lambda: dup.keeps_done == 3, what="the third keep")
            assert _marks(root)["alpha_copy"] == {"flags": ["exclude"]} and "alpha" not in _marks(root)

    asyncio.run(go())


def test_export_dialog_lists_the_new_formats_and_exports_diffusers(tmp_path, db_path):
    from textual.widgets import Input, Select, Static

    from sushitui.tui.screens.export_dialog import ExportDialog

    root = make_check_set(tmp_path / "set")
    register(db_path, root, "set")
    app = _app(db_path)
    out = tmp_path / "out"

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            browser = await open_browser(app, pilot)
            await pilot.press("e")
            await settle(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
            dialog = app.screen
            select = dialog.query_one("#ex-format", Select)
            values = [value for _label, value in select._options]
            for fmt in ("diffusers", "onetrainer", "diffusion-pipe", "musubi", "kohya-jsonl"):
                assert fmt in values
            select.value = "diffusers"
            await settle(
                pilot,
                lambda: "metadata.jsonl" in str(dialog.query_one("#export-format-hint", Static).render()),
                what="the diffusers line",
            )
            dialog.query_one("#ex-outdir", Input).value = str(out)
            dialog.query_one("#ex-trigger", Input).value = "ohwx"
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: dialog.report is not None, timeout=30, what="the export")
            assert browser is not None

    asyncio.run(go())
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 6 and all(r["text"].startswith("ohwx") for r in rows)


def test_keep_one_excludes_a_copy_in_another_dataset_in_that_datasets_marks_file(tmp_path, db):
    from sushitui.check.report import duplicate_groups, keep_one
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    here = make_check_set(tmp_path / "here")
    there = tmp_path / "there"
    there.mkdir()
    shutil.copy(here / "alpha.png", there / "same.png")
    ds, _ = add_dataset(DatasetSettings("here", str(here)))
    add_dataset(DatasetSettings("there", str(there)))
    exact = [g for g in duplicate_groups(ds.id) if g.kind == "exact"]
    assert [sorted((m.dataset, m.name) for m in g.members) for g in exact] == [
        [("here", "alpha"), ("here", "alpha_copy"), ("there", "same")]
    ]  # no check needed for exact copies
    group = exact[0]
    keep = next(m for m in group.members if m.name == "alpha")
    assert keep_one(group, keep.item_id) == sorted(m.item_id for m in group.members if m.name != "alpha")
    assert _marks(here) == {"alpha_copy": {"flags": ["exclude"]}}
    assert _marks(there) == {"same": {"flags": ["exclude"]}}


def test_a_check_from_the_browser_judges_by_the_last_checks_trainer_settings(tmp_path, db):
    from sushitui.check import CheckOptions, run_check
    from sushitui.check.report import last_check_options
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    ds, _ = add_dataset(DatasetSettings("set", str(make_check_set(tmp_path / "set"))))
    assert last_check_options(ds.id).trainer == "kohya"  # never checked: the defaults
    run_check(
        "set",
        CheckOptions(
            trainer="onetrainer", resolution=768, batch_size=4, t5=False, trainer_options={"quantization": 32}
        ),
    )
    again = last_check_options(ds.id)
    assert (again.trainer, again.resolution, again.batch_size, again.trainer_options) == (
        "onetrainer",
        768,
        4,
        {"quantization": 32},
    )


def test_a_group_wider_than_the_screen_scrolls_with_the_cursor():
    from sushitui.tui.screens.duplicates import column_count, window_start

    assert column_count(80) == 2 and column_count(120) == 3
    assert window_start(cursor=0, start=0, shown=2, total=5) == 0
    assert window_start(cursor=2, start=0, shown=2, total=5) == 1  # the cursor went right past the edge
    assert window_start(cursor=4, start=1, shown=2, total=5) == 3
    assert window_start(cursor=0, start=3, shown=2, total=5) == 0
