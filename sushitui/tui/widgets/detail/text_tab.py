"""A prose caption tab (IT-4): natural language, social media (with X's 280-character
counter), instruction (groups only) or description. Typing in a type that has no
caption yet creates one on the next save; ``L`` cycles the caption's language."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Static, TabPane, TextArea

from sushitui.dataset.item_view import ItemView, set_language
from sushitui.sanitize import for_terminal
from sushitui.tui.edit_flow import TextState

SOCIAL_LIMIT = 280
LANGUAGES = ("auto", "en", "ja")
TAB_LABELS = {
    "tags": "Tags",
    "natural_language": "Natural language",
    "social_media": "Social media",
    "instruction": "Instruction",
    "description": "Description",
    "all": "All captions",
}


class SafeTextArea(TextArea):
    """A caption editor that never sends a file's control characters to the terminal
    (NF-4). A caption holding ESC/C1/bidi controls is shown escaped and read-only (editing
    the escaped text would save the escapes); ``value()`` is the caption as it is on disk,
    so nothing is written for it."""

    unsafe_original: str | None = None

    def load_text(self, text: str) -> None:
        shown = for_terminal(text, multiline=True)
        if shown != text.replace("\t", "    "):
            self.unsafe_original = text
            self.read_only = True
            super().load_text(shown)
        else:
            self.unsafe_original = None
            self.read_only = False
            super().load_text(text)

    def value(self) -> str:
        return self.unsafe_original if self.unsafe_original is not None else self.text


class TextTab(TabPane):
    """The first caption of one prose type; ``state`` says which caption it is."""

    DEFAULT_CSS = """
    TextTab { padding: 0 1; }
    TextTab .line { height: auto; color: $text-muted; }
    TextTab .caption-text { height: 1fr; }
    TextTab .-over { color: $error; text-style: bold; }
    """

    class Edited(Message):
        """The user changed the text: it differs from the saved version."""

    def __init__(self, ctype: str) -> None:
        super().__init__(TAB_LABELS[ctype], id=f"tab-{ctype}")
        self.ctype = ctype
        self.state: TextState | None = None
        self.area = SafeTextArea("", id=f"text-{ctype}", classes="caption-text", soft_wrap=True)

    def compose(self) -> ComposeResult:
        yield Static("", id=f"src-{self.ctype}", classes="line")
        yield self.area  # kept as an attribute: its text is read while the screen closes
        if self.ctype == "social_media":
            yield Static("", id="social-count", classes="line")

    def load(self, view: ItemView) -> None:
        cap = view.text_caption(self.ctype)
        self.state = TextState(
            self.ctype,
            cap.subtype if cap and not cap.embedded else None,
            cap.content if cap else "",
            cap.language if cap else "auto",
            cap.id if cap else None,
            cap.source if cap else "new",
            cap.file_path if cap else None,
        )
        self.area.load_text(self.state.baseline)
        self.update_line()

    def clear(self) -> None:
        self.state = None
        self.area.load_text("")

    def value(self) -> str:
        return self.area.value()

    @property
    def dirty(self) -> bool:
        return self.state is not None and self.value() != self.state.baseline

    def set_text(self, text: str) -> None:
        self.area.load_text(text)
        self.update_line()

    def revert(self) -> bool:
        if not self.dirty or self.state is None:
            return False
        self.set_text(self.state.baseline)
        return True

    def update_line(self) -> None:
        state = self.state
        if state is None:
            return
        line = Text()
        if state.caption_id is None:
            line.append("no caption yet — typing creates one", style="italic")
        else:
            line.append(f"source: {state.source}")
            if state.file_path:
                line.append(f" ({for_terminal(state.file_path)})")
        line.append(f" · language: {state.language} (L)")
        if self.area.unsafe_original is not None:
            line.append(" · has control characters: shown escaped, read-only", style="yellow")
        self.query_one(f"#src-{self.ctype}", Static).update(line)
        if self.ctype == "social_media":
            n = len(self.value())
            counter = self.query_one("#social-count", Static)
            counter.update(f"{n}/{SOCIAL_LIMIT} characters" + (" — over X's limit" if n > SOCIAL_LIMIT else ""))
            counter.set_class(n > SOCIAL_LIMIT, "-over")

    @on(TextArea.Changed)
    def _changed(self, event: TextArea.Changed) -> None:
        event.stop()
        if self.state is None:
            return
        if self.ctype == "social_media":
            self.update_line()
        if self.dirty:
            self.post_message(self.Edited())

    def cycle_language(self) -> None:
        state = self.state
        if state is None:
            return
        state.language = (
            LANGUAGES[(LANGUAGES.index(state.language) + 1) % len(LANGUAGES)] if state.language in LANGUAGES else "auto"
        )
        self.update_line()
        if state.caption_id is not None:
            self._language_worker(state.caption_id, state.language)

    @work(thread=True, group="detail-language", exit_on_error=False)
    def _language_worker(self, caption_id: int, language: str) -> None:
        set_language(caption_id, language)
