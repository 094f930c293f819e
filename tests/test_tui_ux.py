"""What a keyboard-only user over SSH runs into: every screen has a key list (? / F1),
the footer always says how to get it, and keys do what the list says at 80x24."""

from __future__ import annotations

import pytest
from detail_helpers import ScreenApp, sync
from detail_helpers import make_dataset as make_detail_dataset
from tui_support import make_dataset, open_browser, screen_text, settle


@pytest.fixture
def no_images(monkeypatch):
    monkeypatch.setenv("SUSHITUI_IMAGES", "off")


def _app(db_path):
    from sushitui.tui.app import SushiApp

    return SushiApp(db_path, first_start=False)


@pytest.mark.slow
def test_help_lists_every_key_of_each_screen_and_footer_points_to_it(tmp_path, db_path, no_images):
    from sushitui.tui.screens.datasets import DatasetsScreen
    from sushitui.tui.screens.dictionary import DictionaryScreen
    from sushitui.tui.screens.groups import GroupsScreen
    from sushitui.tui.screens.runs import RunsScreen
    from sushitui.tui.widgets.help import HelpScreen
    from sushitui.tui.widgets.key_bar import KeyBar

    make_dataset(db_path, tmp_path / "ds", 12, nested=False)
    app = _app(db_path)

    async def check_help(pilot, key: str, must_list: list[str]) -> None:
        under = app.screen
        # At 80 columns the footer cannot hold every key, but it always shows the help key.
        bar = under.query_one(KeyBar)
        assert "? F1 help" in bar.plain
        assert "? F1 help" in screen_text(app).splitlines()[-1]
        await pilot.press(key)
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen), what=f"help on {type(under).__name__}")
        shown = screen_text(app)
        assert "Keys:" in shown
        assert "Esc, q, ? or F1 close" in shown  # the closing hint stays on screen at 80x24
        text = app.screen.plain
        for description in must_list:
            assert description in text, f"{description!r} missing from the help of {type(under).__name__}"
        await pilot.press("escape")
        await settle(pilot, lambda: app.screen is under, what="help closed")

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen) and app.screen.rows, what="datasets")
            # The table's hidden Enter binding hid the screen's "⏎ Open" from the footer.
            assert app.screen.query_one(KeyBar).plain.startswith(" ⏎ Open ")
            await check_help(pilot, "question_mark", ["Open", "Reindex", "Problems", "Refresh", "Dictionary"])
            browser = await open_browser(app, pilot)
            # Keys hidden from the footer (paging, range select, export) are in the list.
            await check_help(pilot, "f1", ["Next page", "Select right", "Export", "Quick tag", "Clear selection"])
            assert app.screen is browser
            for key, screen_type, listed in (
                ("ctrl+t", DictionaryScreen, ["Delete everywhere", "Official"]),
                ("ctrl+g", GroupsScreen, ["New alias", "Rename"]),
                ("ctrl+r", RunsScreen, ["Mark completed", "Remove run"]),
            ):
                await pilot.press(key)
                await settle(pilot, lambda: isinstance(app.screen, screen_type), what=screen_type.__name__)
                await pilot.pause()
                if screen_type is GroupsScreen:
                    # Pane keys read as keys, not as counts ("Groups (1)" next to 14 groups).
                    await settle(pilot, lambda: "[2] Tags of" in screen_text(app), what="group tags")
                    assert "[1] Groups" in screen_text(app) and "[3] Aliases" in screen_text(app)
                if screen_type is RunsScreen:
                    # No run yet: the run keys are greyed out in the footer, not silently dead.
                    await settle(pilot, lambda: app.screen.query_one("#runs-empty").display, what="no runs")
                    active = app.screen.active_bindings
                    assert not active["x"].enabled and not active["c"].enabled
                await check_help(pilot, "f1", listed)
                await pilot.press("escape")
                await settle(pilot, lambda: app.screen is browser, what="back to the browser")

    import asyncio

    asyncio.run(go())


def test_help_is_in_the_command_palette(tmp_path, db_path, no_images):
    from sushitui.tui.screens.datasets import DatasetsScreen

    app = _app(db_path)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: isinstance(app.screen, DatasetsScreen), what="datasets")
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert any(t.startswith("Help") for t in titles)

    import asyncio

    asyncio.run(go())


@sync
async def test_long_tag_list_down_moves_the_tag_cursor_and_keeps_it_visible(db, tmp_path):
    """At 80x24 a long caption does not fit; ↓ moved the pane, not the tag cursor."""
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.widgets.tag_pills import TagPills

    tags = ", ".join(f"some_long_tag_name_{i:03d}" for i in range(120))
    ds, ids = make_detail_dataset(tmp_path / "d", {"a": tags, "b": "x"})
    app = ScreenApp(lambda: ItemDetailScreen(ds.id, ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        pills = app.screen.query_one("#pills", TagPills)
        # 20 presses reach a pill below the visible part (each press waits for the pane to
        # scroll: 50 cost 8 s of the quick run and showed nothing more)
        assert "some_long_tag_name_020" not in screen_text_of(app)
        await pilot.press(*["down"] * 20)
        await pilot.pause()
        assert pills.cursor == 20
        # The cursor's pill is on screen (the pane followed it).
        assert "some_long_tag_name_020" in screen_text_of(app)
        await pilot.press("end")
        await pilot.pause()
        assert pills.cursor == 119
        assert "some_long_tag_name_119" in screen_text_of(app)
        await pilot.press("home")
        await pilot.pause()
        assert pills.cursor == 0
        assert "some_long_tag_name_000" in screen_text_of(app)


def test_a_list_load_older_than_the_scan_does_not_lose_the_scanned_row_highlight(tmp_path, db_path, no_images):
    """Closing the new-dataset form reloads the list while the scan runs; on a loaded machine
    that load (without the new dataset) arrived after the scan had finished and used up the
    "highlight the scanned dataset" request, so p showed the old row's problems."""
    import asyncio

    from sushitui.tui.screens.datasets import DatasetsLoaded, DatasetsScreen

    make_dataset(db_path, tmp_path / "first", 3, name="aaa", nested=False)

    async def go():
        app = _app(db_path)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await settle(pilot, lambda: isinstance(screen, DatasetsScreen) and screen.rows, what="list")
            rows_before_the_scan = list(screen.rows)
            make_dataset(db_path, tmp_path / "new", 2, name="zzz", nested=False)  # what the scan committed
            screen._select_after_load = "zzz"  # as on_scan_finished asks
            screen.post_message(DatasetsLoaded(rows_before_the_scan))  # the late, older load
            screen.action_refresh()  # the scan's own reload
            await settle(pilot, lambda: len(screen.rows) == 2, what="the reload with the new dataset")
            await settle(pilot)
            assert screen.current_row()["name"] == "zzz"

    asyncio.run(go())


def screen_text_of(app) -> str:
    return screen_text(app)


@pytest.mark.slow
def test_new_dataset_is_highlighted_after_its_scan_so_p_shows_its_problems(tmp_path, db_path, no_images):
    """The notice says "press p to see the problems"; p showed the old row's (empty) list."""
    import asyncio

    from sushitui.dataset.synthetic import generate_dataset
    from sushitui.tui.screens.datasets import DatasetForm, DatasetsScreen, ProblemsScreen

    make_dataset(db_path, tmp_path / "first", 3, name="aaa", nested=False)
    root = tmp_path / "new"
    generate_dataset(root, 4, seed=5, nested=False)
    (root / "broken.png").write_bytes(b"")
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await settle(pilot, lambda: isinstance(screen, DatasetsScreen) and screen.rows, what="list")
            await pilot.press("n")
            await settle(pilot, lambda: isinstance(app.screen, DatasetForm), what="form")
            await pilot.pause()
            await pilot.press(*"zzz", "tab", *str(root), "ctrl+s")
            await settle(
                pilot,
                lambda: len(screen.rows) == 2 and screen.current_row()["name"] == "zzz",
                what="new row highlighted",
            )
            await pilot.press("p")
            await settle(pilot, lambda: isinstance(app.screen, ProblemsScreen), what="problems")
            await pilot.pause(0.1)
            text = screen_text(app)
            assert "zzz" in text and "broken.png" in text

    asyncio.run(go())


def test_cards_of_untagged_items_show_their_caption_text(tmp_path, db_path, no_images):
    """kohya-style natural-language captions: every card said "(no tags)"."""
    import asyncio

    from PIL import Image
    from tui_support import register

    root = tmp_path / "nl"
    root.mkdir()
    for name, caption in (
        ("a", "a painting of a skull with a gas mask"),
        ("b", None),
        ("c", "A red skull lies on a wooden table. It glows in the dark."),
    ):
        Image.new("RGB", (16, 16), (200, 10, 10)).save(root / f"{name}.png")
        if caption:
            (root / f"{name}.txt").write_text(caption, encoding="utf-8")
    # kohya GUI layout: BLIP prose in c.txt (main), WD14 tags in c.cap: the card shows the tags
    (root / "c.cap").write_text("skull,gas_mask,steampunk,machine,solo", encoding="utf-8")
    register(db_path, root, "nl")
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await open_browser(app, pilot)
            await pilot.pause()
            text = screen_text(app)
            assert "a painting of a" in text
            assert "(no tags)" in text  # b has no caption at all
            assert "skull, gas_mask" in text and "A red skull" not in text
            assert "│…" not in text.replace(" ", "")  # never a card line that is only "…"

    asyncio.run(go())


@pytest.mark.slow
def test_a_bad_search_shows_where_the_error_is_until_a_good_one(tmp_path, db_path, no_images):
    """The error line shrank the grid, the resize re-showed the page and that hid the error."""
    import asyncio

    make_dataset(db_path, tmp_path / "ds", 10, nested=False)
    app = _app(db_path)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            browser = await open_browser(app, pilot)
            await pilot.press("slash", *"1girl, (long_hair | ", "enter")
            await pilot.pause(0.3)
            text = screen_text(app)
            assert "query error at column 21" in text and "expected a tag" in text
            assert browser.position_text().endswith("of 10")  # the old result stays
            search = browser.query_one("#browser-search")
            search.value = ""
            await pilot.press("slash", *"long_hair", "enter")
            await settle(pilot, lambda: "query error" not in screen_text(app), what="error cleared")

    asyncio.run(go())


@sync
async def test_t_adds_a_tag_in_item_detail_as_everywhere_and_A_auto_tags(db, tmp_path):
    """t adds a tag in the browser and quick tagging; in item detail it opened auto-tag."""
    from sushitui.tui.screens.autotag_dialog import AutotagDialog
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    ds, ids = make_detail_dataset(tmp_path / "d", {"a": "cat", "b": "dog"})
    app = ScreenApp(lambda: ItemDetailScreen(ds.id, ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        detail = app.screen
        await pilot.press("t", *"red_eyes", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, AutotagDialog)
        assert "red_eyes" in detail.editor.tags
        await pilot.press("escape")  # leave the tag input
        await pilot.press("A")
        await settle(pilot)
        assert isinstance(app.screen, AutotagDialog)


@sync
async def test_footer_in_a_caption_text_editor_does_not_offer_keys_the_editor_takes(db, tmp_path):
    """In a TextArea ←/→ move the text cursor and Delete deletes a character."""
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.widgets.key_bar import KeyBar

    ds, ids = make_detail_dataset(tmp_path / "d", {"a": "cat", "b": "dog"})
    app = ScreenApp(lambda: ItemDetailScreen(ds.id, ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        bar = app.screen.query_one(KeyBar)
        assert "→ Next" in bar.plain
        await pilot.press("right_square_bracket")  # the natural-language tab, its editor focused
        await pilot.pause()
        from textual.widgets import TextArea

        assert isinstance(app.focused, TextArea)
        assert "→ Next" not in bar.plain and "Remove tag" not in bar.plain


@sync
async def test_prose_caption_with_control_characters_is_shown_escaped_and_never_rewritten(db, tmp_path):
    """NF-4: the natural-language editor sent a caption's ESC sequences to the terminal."""
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    hostile = "a cat\x1b]52;c;cHduZWQ=\x07 on a \u202emat\x9b"
    root = tmp_path / "d"
    ds, ids = make_detail_dataset(root, {"a": None, "b": "dog"})
    (root / "a_caption.txt").write_text(hostile, encoding="utf-8")  # a prose caption (subtype caption)
    from sushitui.dataset.registry import reindex

    reindex(ds.name)
    app = ScreenApp(lambda: ItemDetailScreen(ds.id, ids))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        detail = app.screen
        tabs = detail.query_one("#caption-tabs")
        for pane in ("tab-natural_language", "tab-description", "tab-social_media"):
            tabs.active = pane
            await pilot.pause()
            area = detail.query_one(f"#text-{pane[4:]}")
            if area.unsafe_original is not None:
                break
        else:
            raise AssertionError("the hostile caption is on no text tab")
        text = screen_text(app)
        assert "a cat" in text and "\\x1b" in text
        assert "\x1b" not in text and "\u202e" not in text and "\x9b" not in text
        assert "read-only" in text
        await pilot.press("x", "y")  # typing does not change it
        await pilot.press("escape", "escape")
        await settle(pilot)
    assert (root / "a_caption.txt").read_text(encoding="utf-8") == hostile


def test_autotag_dialog_says_how_to_get_a_missing_model_at_80x24(db, tmp_path, monkeypatch):
    """The advice (models download / custom file) was cut to one line at 80 columns."""
    import asyncio

    from detail_helpers import make_dataset as make_ds
    from textual.app import App

    from sushitui.tui.screens.autotag_dialog import AutotagDialog

    ds, ids = make_ds(tmp_path / "d", {"a": "cat"})

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(AutotagDialog(ds.id))

    app = Host()

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: "all 1 items" in screen_text(app), what="dialog context")
            text = " ".join(screen_text(app).split())
            assert "models download cl-1.02" in text and "custom file" in text

    asyncio.run(go())


def test_group_and_alias_prompts_say_how_to_save_and_ctrl_s_saves(db):
    """The prompts had no hint and only Enter in the last field submitted them."""
    import asyncio

    from textual.app import App

    from sushitui.tags import aliases, groups
    from sushitui.tui.screens.groups import GroupsScreen, PromptDialog

    groups.ensure_default_groups(taglist="/nonexistent")

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(GroupsScreen())

    app = Host()

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            await pilot.press("A")  # new alias
            await settle(pilot, lambda: isinstance(app.screen, PromptDialog), what="alias prompt")
            assert "ctrl+s save" in screen_text(app)
            await pilot.press(*"lh", "ctrl+s")
            await pilot.pause()
            assert isinstance(app.screen, PromptDialog)  # "both tags are needed"
            assert "both tags are needed" in screen_text(app)
            app.screen.query_one("#field-1").value = "long_hair"
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: not isinstance(app.screen, PromptDialog), what="saved")
            await settle(pilot, lambda: aliases.resolve("lh") == "long_hair", what="alias stored")

    asyncio.run(go())


@pytest.mark.slow
def test_second_esc_closes_the_autotag_dialog_while_a_download_cannot_be_interrupted(db, tmp_path, monkeypatch):
    """Offline, the model download blocks ~30 s; Esc only said "stopping…" meanwhile."""
    import asyncio
    import importlib
    import threading

    from detail_helpers import make_dataset as make_ds
    from textual.app import App

    from sushitui.tui.screens.autotag_dialog import AutotagDialog

    autotag_mod = importlib.import_module("sushitui.tagger.autotag")
    release = threading.Event()

    def blocking_autotag(*args, **kwargs):
        release.wait(10)  # like hf_hub_download retrying without network: ignores cancel
        raise autotag_mod.AutotagError("could not download the model: no network")

    monkeypatch.setattr(autotag_mod, "autotag", blocking_autotag)
    ds, ids = make_ds(tmp_path / "d", {"a": "cat"})

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(AutotagDialog(ds.id))

    app = Host()

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            dialog = app.screen
            await settle(pilot, lambda: "all 1 items" in screen_text(app), what="dialog context")
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: dialog.running, what="running")
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is dialog and "Esc again" in screen_text(app)
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is not dialog, what="dialog closed")
            release.set()
            await settle(
                pilot,
                lambda: any("Auto-tag stopped" in n.message for n in app._notifications),
                what="the background end is told",
            )

    asyncio.run(go())


@sync
async def test_metadata_pane_at_80_columns_takes_the_image_place_and_keeps_the_captions(db, tmp_path):
    """At 80x24 `m` pushed the metadata off screen and scrolled the captions away."""
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    ds, ids = make_detail_dataset(tmp_path / "d", {"a": "cat_ears", "b": "dog"})
    app = ScreenApp(lambda: ItemDetailScreen(ds.id, ids))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "cat_ears" in screen_text(app) and "Resolution" not in screen_text(app)
        await pilot.press("m")
        await pilot.pause()
        text = screen_text(app)
        assert "cat_ears" in text and "Subtype" in text  # the captions stay
        assert "Resolution" in text  # the metadata is on screen
        await pilot.press("m")
        await pilot.pause()
        assert "Resolution" not in screen_text(app) and app.screen.query_one("#image-pane").display
