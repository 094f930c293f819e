"""NF-4: text from files never reaches the terminal raw."""

from hypothesis import given
from hypothesis import strategies as st

from sushitui.sanitize import for_terminal


def test_escape_sequences_osc52_and_bidi_are_neutralised():
    hostile = "cat\x1b[2J\x1b]52;c;ZXZpbA==\x07\u202egnp.exe\x9b31m"
    shown = for_terminal(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert "\\x1b]52" in shown and "\\u202e" in shown


def test_newlines_escaped_on_one_line_kept_in_multiline():
    assert for_terminal("a\nb") == "a\\nb"
    assert for_terminal("a\nb\rc", multiline=True) == "a\nb\\x0dc"


@given(st.text())
def test_output_never_contains_control_or_bidi_characters(text):
    shown = for_terminal(text)
    assert not any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        for c in shown
    )
