"""Property-based tests (hypothesis) for what the other test files do not cover yet.

Already covered elsewhere and not repeated: the query parser (tests/test_tags_query.py:
fuzzing of parse and apply_query, SQL = Python evaluation on generated queries), tag
splitting (tests/test_normalize.py, tests/test_export_captions.py), sanitising
(tests/test_sanitize.py), the sushitui dictionary CSV round trip
(tests/test_dict_import.py::test_csv_round_trip_property).

Added here: caption file decoding and writing, the tag normalisation laws every index
key relies on, the scanner's memoised tag split, and the other dictionary file formats
(taglist JSON, tag-autocomplete CSV): any bytes give rows or row problems, never a crash,
and no accepted row carries a name a caption could not hold."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sushitui.dataset.caption_files import decode_caption, read_caption, write_atomic
from sushitui.dataset.scan_worker import caption_type, tag_pairs
from sushitui.tags.dictionary_formats import CATEGORIES, DictionaryFileError, parse_file
from sushitui.tags.normalize import (
    clean,
    dedupe,
    escape_parens,
    join_tags,
    match_key,
    split_tags,
    underscores_to_spaces,
)

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# tag-ish text: the characters captions are made of, plus odd ones
TAGGY = st.lists(
    st.sampled_from(list("ab_ ()\\^;:,.\n\t\u3000-|'\"é日") + ["1girl", "long_hair", "^_^", "\\(", "\\)"]), max_size=25
).map("".join)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


# --- caption files ---------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_text_and_unusual_ones_are_flagged(data):
    text, encoding, flagged = decode_caption(data)
    assert isinstance(text, str)
    if not flagged:
        assert encoding in ("utf-8", "utf-8-sig")
        assert (b"\xef\xbb\xbf" + text.encode() if encoding == "utf-8-sig" else text.encode()) == data


@pytest.mark.slow
@FAST
@given(st.text(max_size=200), st.booleans())
def test_any_text_written_atomically_reads_back_exactly(text, bom):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.txt"
        path.write_text("old", encoding="utf-8")
        before = read_caption(path).state
        state = write_atomic(path, text, expected=before, encoding="utf-8-sig" if bom else None)
        back = read_caption(path)
        assert back.text == text and back.state == state
        assert back.encoding == ("utf-8-sig" if bom else "utf-8") and not back.flagged
        assert [p.name for p in Path(tmp).iterdir()] == ["c.txt"]  # no temp file left


@FAST
@given(TAGGY)
def test_scanner_split_equals_the_normalisation_and_caption_type_never_fails(text):
    assert [t for t, _ in tag_pairs(text)] == split_tags(text)
    assert all(k == match_key(t) for t, k in tag_pairs(text))
    assert caption_type("", text) in ("tags", "natural_language")


# --- tag normalisation laws -------------------------------------------------------------


@FAST
@given(TAGGY)
def test_match_key_laws(tag):
    key = match_key(tag)
    assert match_key(key) == key  # a key is its own key (stored keys can be re-keyed)
    assert match_key(clean(tag)) == key
    assert match_key(escape_parens(tag)) == key  # foo (bar) = foo \(bar\)
    assert match_key(underscores_to_spaces(tag)) == key  # long_hair = long hair


def test_match_key_is_idempotent_with_doubled_backslashes():
    for tag in ("\\\\(", "a\\\\(b\\\\)"):
        key = match_key(tag)
        assert match_key(key) == key, (tag, key)


def test_underscores_to_spaces_keeps_the_key_of_escaped_kaomoji():
    tag = "a^_^^_^\\("
    assert match_key(underscores_to_spaces(tag)) == match_key(tag)


@FAST
@given(TAGGY)
def test_split_join_round_trip_and_dedupe(text):
    tags = split_tags(text)
    assert split_tags(join_tags(tags)) == tags  # what is written reads back the same
    assert dedupe(tags) == tags
    assert len({match_key(t) for t in tags}) == len(tags)
    assert all(t == clean(t) and t and "," not in t and "\n" not in t for t in tags)


# --- dictionary formats -------------------------------------------------------------------


def _accepted_rows_are_sound(parsed) -> None:
    for row in parsed.rows:
        tag, category, count = row[0], row[1], row[2]
        assert tag and tag == tag.strip() and "," not in tag and not CONTROL.search(tag), row
        assert category in CATEGORIES and isinstance(count, int) and count >= 0, row
    for problem in parsed.rejected:
        assert problem.reason and problem.where


JSON_VALUES = st.one_of(
    st.integers(-5, 10**12),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
)


@FAST
@given(st.one_of(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8).map(json.dumps), st.text(max_size=60)))
def test_taglist_json_of_any_content_gives_rows_or_reasons(tmp_path, content):
    path = tmp_path / "General.json"
    path.write_text(content, encoding="utf-8")
    try:
        parsed = parse_file(path)
    except DictionaryFileError as exc:
        assert str(exc)
        return
    _accepted_rows_are_sound(parsed)


CSV_CELL = st.lists(st.sampled_from(list('ab_, "\n\r\t\x1b\x00é1-+|') + ["0", "4", "99", "1girl"]), max_size=8).map(
    "".join
)


@FAST
@given(st.lists(st.lists(CSV_CELL, min_size=0, max_size=5), max_size=6), st.sampled_from([None, "tagcomplete", "csv"]))
@example(rows=[["", "--1"]], fmt=None)  # found by this test: a doubled sign crashed the count parser
@example(rows=[["1girl", "0", "+-4"]], fmt="tagcomplete")
@example(rows=[["1girl", "\u00b2", "3"]], fmt=None)  # "²".isdigit() is True, int("²") raises
def test_csv_formats_of_any_content_give_rows_or_reasons(tmp_path, rows, fmt):
    import csv

    path = tmp_path / "any.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    try:
        parsed = parse_file(path, fmt, "general" if fmt == "csv" else None)
    except DictionaryFileError as exc:
        assert str(exc)
        return
    _accepted_rows_are_sound(parsed)


NAME = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs"), blacklist_characters=","),
    min_size=1,
    max_size=15,
)


@FAST
@given(
    st.dictionaries(NAME, st.integers(0, 10**9), min_size=1, max_size=8),
    st.lists(st.lists(NAME, max_size=2), min_size=8, max_size=8),
)
def test_taglist_json_and_tagcomplete_round_trip(tmp_path, tags, aliases):
    import csv

    from sushitui.tags.dictionary_formats import write_taglist_json

    path = tmp_path / "Character.json"
    write_taglist_json(path, tags.items())
    parsed = parse_file(path)
    assert not parsed.rejected
    assert {(r[0], r[1], r[2]) for r in parsed.rows} == {(t, "character", n) for t, n in tags.items()}
    tc = tmp_path / "tc.csv"
    with open(tc, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([t, 4, n, ",".join(a)] for (t, n), a in zip(tags.items(), aliases))
    parsed = parse_file(tc)
    assert not parsed.rejected, parsed.rejected
    got = {r[0]: (r[1], r[2], tuple(r[4])) for r in parsed.rows}
    assert got == {t: ("character", n, tuple(a)) for (t, n), a in zip(tags.items(), aliases)}
