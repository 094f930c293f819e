"""The tag groups and aliases screen, driven from the keyboard with Pilot."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App
from textual.widgets import DataTable
from tui_support import settle

from sushitui.tags import aliases, groups
from sushitui.tui.screens.groups import GroupsScreen


class GroupsApp(App):
    def on_mount(self) -> None:
        self.push_screen(GroupsScreen())


async def type_text(pilot, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


def rows(app, table_id: str) -> list[str]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_manage_groups_and_aliases_from_the_keyboard(db):
    groups.ensure_default_groups(taglist="/nonexistent")  # defaults only: a quick screen
    asyncio.run(drive())


async def drive() -> None:
    app = GroupsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert rows(app, "groups-table")[:3] == ["Character", "Copyright", "Artist"]

        await pilot.press("a")  # new group: name, then colour
        await type_text(pilot, "Hair")
        await pilot.press("enter")
        await pilot.pause()
        await type_text(pilot, "#123456")
        await pilot.press("enter")
        await settle(pilot)
        assert groups.get_group("Hair").color == "#123456"
        assert "Hair" in rows(app, "groups-table")

        await pilot.press("t")  # add tags to the highlighted (new) group
        await type_text(pilot, "long_hair, short hair")
        await pilot.press("enter")
        await settle(pilot)
        assert groups.group_tags("Hair") == ["long_hair", "short hair"]
        assert rows(app, "tags-table") == ["long_hair", "short hair"]

        await pilot.press("2", "x")  # remove the highlighted tag
        await settle(pilot)
        assert groups.group_tags("Hair") == ["short hair"]

        await pilot.press("1", "c")  # colour with a bad value is refused in the dialog
        await type_text(pilot, "red")
        await pilot.press("enter")
        await pilot.pause()
        assert "not a colour" in str(app.screen.query_one("#prompt-error").render())
        await pilot.press("escape")
        await pilot.pause()

        await pilot.press("r")  # rename
        for _ in range(4):
            await pilot.press("backspace")
        await type_text(pilot, "Hairstyle")
        await pilot.press("enter")
        await settle(pilot)
        assert "Hairstyle" in rows(app, "groups-table")

        await pilot.press("A")  # alias
        await type_text(pilot, "girl")
        await pilot.press("enter")
        await pilot.pause()
        await type_text(pilot, "1girl")
        await pilot.press("enter")
        await settle(pilot)
        assert aliases.resolve("girl") == "1girl"
        assert rows(app, "aliases-table") == ["girl"]

        await pilot.press("d")  # delete needs confirmation: n keeps it
        await pilot.pause()
        await pilot.press("n")
        await settle(pilot)
        assert groups.get_group("Hairstyle")
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        with pytest.raises(groups.GroupError):
            groups.get_group("Hairstyle")

        await pilot.press("3", "D")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert aliases.list_aliases() == []
