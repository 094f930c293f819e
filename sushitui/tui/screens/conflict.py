"""The save-conflict dialog (IT-8, NF-3): a caption file changed on disk since sushitui
read it. Both versions are shown side by side and the user chooses; nothing is ever
overwritten silently.

``ConflictDialog`` returns ``"mine"`` (save the app's version over the file),
``"disk"`` (reload the file's version) or ``"cancel"`` (leave both alone for now).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from sushitui.sanitize import for_terminal
from sushitui.tags.normalize import match_key, split_tags

KEEP_MINE = "mine"
TAKE_DISK = "disk"
CANCEL = "cancel"


def _tag_diff(mine: list[str], disk: list[str]) -> Text:
    mine_keys = {match_key(t) for t in mine}
    disk_keys = {match_key(t) for t in disk}
    only_mine = [t for t in mine if match_key(t) not in disk_keys]
    only_disk = [t for t in disk if match_key(t) not in mine_keys]
    text = Text()
    text.append("only yours: ", style="bold")
    text.append(for_terminal(", ".join(only_mine)) or "—", style="green")
    text.append("   only on disk: ", style="bold")
    text.append(for_terminal(", ".join(only_disk)) or "—", style="red")
    if not only_mine and not only_disk:
        text.append("   (same tags, different order or spelling)")
    return text


class ConflictDialog(ModalScreen[str]):
    """Both versions of a caption file that changed on disk; the user picks one."""

    DEFAULT_CSS = """
    ConflictDialog { align: center middle; }
    ConflictDialog > #conflict-box {
        width: 96%; max-width: 140; height: 90%; max-height: 40;
        border: thick $error; background: $surface; padding: 0 1;
    }
    ConflictDialog #conflict-title { height: auto; }
    ConflictDialog #conflict-diff { height: auto; margin-bottom: 1; }
    ConflictDialog #conflict-sides { height: 1fr; }
    ConflictDialog .conflict-side { width: 1fr; border: round $primary; padding: 0 1; }
    ConflictDialog #conflict-disk-side { border: round $warning; }
    ConflictDialog #conflict-buttons { height: auto; align-horizontal: center; }
    ConflictDialog Button { margin: 0 1; width: auto; min-width: 16; }
    """

    BINDINGS = [
        Binding(
            "m",
            "choose('mine')",
            "Keep mine",
            tooltip="Overwrite the file on disk with the app's version",
            id="conflict.keep_mine",
        ),
        Binding(
            "d",
            "choose('disk')",
            "Take disk",
            tooltip="Drop the app's version and reload the file",
            id="conflict.take_disk",
        ),
        Binding(
            "escape,c", "choose('cancel')", "Cancel", tooltip="Decide later; nothing is written", id="conflict.cancel"
        ),
    ]

    def __init__(self, path: str, mine: str, disk: str | None, *, is_tags: bool = True, what: str = "") -> None:
        super().__init__()
        self.path = path
        self.mine = mine
        self.disk = disk
        self.is_tags = is_tags
        self.what = what

    def compose(self) -> ComposeResult:
        title = Text()
        title.append("Caption changed on disk\n", style="bold red")
        title.append(for_terminal(self.path), style="bold")
        if self.what:
            title.append(f"  ({for_terminal(self.what)})")
        title.append(
            "\nAnother program changed this file after sushitui read it. Choose which version to keep; "
            "nothing has been written yet."
        )
        with Vertical(id="conflict-box"):
            yield Static(title, id="conflict-title")
            if self.is_tags and self.disk is not None:
                yield Static(_tag_diff(split_tags(self.mine), split_tags(self.disk)), id="conflict-diff")
            with Horizontal(id="conflict-sides"):
                with VerticalScroll(classes="conflict-side", id="conflict-mine-side") as mine:
                    mine.border_title = "Yours (in sushitui)"
                    yield Static(Text(for_terminal(self.mine, multiline=True) or "(empty)"), id="conflict-mine")
                with VerticalScroll(classes="conflict-side", id="conflict-disk-side") as disk:
                    disk.border_title = "On disk now"
                    body = (
                        "(the file was deleted)"
                        if self.disk is None
                        else (for_terminal(self.disk, multiline=True) or "(empty)")
                    )
                    yield Static(Text(body), id="conflict-disk")
            with Horizontal(id="conflict-buttons"):
                yield Button("Keep mine (m)", id="mine", variant="error")
                yield Button("Take disk (d)", id="disk", variant="warning")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or CANCEL)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
