"""Pilot tests: typing into TagInput and choosing a candidate; the dictionary screen
(search, paging, add with a validation error, delete with confirmation, stats)."""

from __future__ import annotations

import pytest
from dict_helpers import add_many, sync
from textual.app import App
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static
from tui_support import settle

from sushitui.tags import dictionary as d
from sushitui.tags.autocomplete import get_completer


@pytest.fixture
def tags(db):
    add_many(
        [
            ("long_hair", "general", 4000, "/lh", "longhair"),
            ("hair_ornament", "general", 900),
            ("hairband", "general", 1200),
            ("short_hair", "general", 2000),
            ("hatsune_miku", "character", 120),
        ]
        + [(f"filler_{i:03d}", "artist", i) for i in range(120)]
    )
    get_completer().warm(wait=True)
    return db


class InputApp(App):
    def __init__(self):
        super().__init__()
        self.submitted: list[str] = []

    def compose(self):
        from sushitui.tui.widgets.tag_input import TagInput

        with Vertical():
            yield TagInput(placeholder="tag", id="ti")
            yield Input(id="other")

    def on_tag_input_submitted(self, message) -> None:
        self.submitted.append(message.tag)


@sync
async def test_typing_shows_candidates_and_enter_chooses_the_highlighted_one(tags):
    from sushitui.tui.widgets.tag_input import TagInput

    app = InputApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"hair")
        await settle(pilot)
        ti = app.query_one(TagInput)
        assert [c.tag for c in ti.dropdown.candidates] == ["hairband", "hair_ornament", "long_hair", "short_hair"]
        assert ti.dropdown.display and "hairband" in str(ti.dropdown.render())
        # The dropdown says what Enter will do: the typed text until a candidate is picked.
        assert "Enter uses it as typed" in str(ti.dropdown.render())
        await pilot.press("down", "down")
        assert "Enter uses hair_ornament" in str(ti.dropdown.render())
        await pilot.press("enter")
        await settle(pilot)
        assert app.submitted == ["hair_ornament"]
        assert not ti.dropdown.has_class("-open")


@pytest.mark.slow
@sync
async def test_alias_candidate_submits_its_target_and_tab_completes(tags):
    from sushitui.tui.widgets.tag_input import TagInput

    app = InputApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"/lh")
        await settle(pilot)
        ti = app.query_one(TagInput)
        assert [(c.tag, c.alias_of) for c in ti.dropdown.candidates] == [("/lh", "long_hair")]
        await pilot.press("down", "enter")
        await settle(pilot)
        assert app.submitted == ["long_hair"]
        ti.value = ""
        await pilot.press(*"hatsu")
        await settle(pilot)
        await pilot.press("tab")  # completes with the first candidate; focus stays
        await settle(pilot)
        assert ti.value == "hatsune_miku" and app.focused is ti
        await pilot.press("enter")  # nothing highlighted: the typed text
        await settle(pilot)
        assert app.submitted == ["long_hair", "hatsune_miku"]
        ti.value = ""
        await pilot.press(*"brand_new_tag", "enter")
        await settle(pilot)
        assert app.submitted[-1] == "brand_new_tag"


class DictApp(App):
    def on_mount(self) -> None:
        from sushitui.tui.screens.dictionary import DictionaryScreen

        self.push_screen(DictionaryScreen())


@pytest.mark.slow
@sync
async def test_dictionary_screen_search_page_add_delete_stats(tags):
    from sushitui.tui.screens.dictionary import DictionaryScreen, DictionaryStats, TagFormDialog

    app = DictApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DictionaryScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == 50 and screen.total == 125
        assert screen.entries[0].tag == "long_hair"  # by count
        await pilot.press("n")
        await settle(pilot)
        assert len(screen.cursors) == 2 and screen.entries[0].tag == "filler_074"
        await pilot.press("n", "n")
        await settle(pilot)
        assert table.row_count == 25  # last page
        await pilot.press("p")
        await settle(pilot)
        assert screen.entries[0].tag == "filler_074"
        # search
        await pilot.press("slash", *"hair", "enter")
        await settle(pilot)
        assert [e.tag for e in screen.entries] == ["long_hair", "short_hair", "hairband", "hair_ornament"]
        await pilot.press("m")  # substring → prefix
        await settle(pilot)
        assert [e.tag for e in screen.entries] == ["hairband", "hair_ornament"]
        assert "mode prefix" in str(screen.query_one("#dict-status", Static).render())
        # add with a validation error, then fixed
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, TagFormDialog)
        dialog = app.screen
        await pilot.press(*"hair,clip")
        dialog.query_one("#form-count", Input).value = "-2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, TagFormDialog)
        errors = str(dialog.query_one("#tag-form-errors", Static).render())
        assert "comma" in errors and "negative" in errors
        dialog.query_one("#form-tag", Input).value = "hairclip"
        dialog.query_one("#form-count", Input).value = "5000"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert d.get_tag("hairclip").count == 5000
        assert [e.tag for e in screen.entries][0] == "hairclip"
        # delete with confirmation
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert d.get_tag("hairclip") is None
        assert [e.tag for e in screen.entries] == ["hairband", "hair_ornament"]
        # stats
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, DictionaryStats)
        assert app.screen.stats["total"] == 125
        await pilot.press("escape")
        await pilot.press("escape")
        await pilot.pause()
