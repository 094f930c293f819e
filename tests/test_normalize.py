"""TAG-9: one normalisation used everywhere."""

from hypothesis import given
from hypothesis import strategies as st

from sushitui.tags.normalize import (
    dedupe,
    escape_parens,
    is_kaomoji,
    join_tags,
    looks_like_tags,
    match_key,
    split_tags,
    underscores_to_spaces,
)


def test_underscore_and_space_match_case_insensitively():
    assert match_key("Long_Hair") == match_key("long hair") == "long hair"


def test_kaomoji_keep_their_underscores():
    for face in ["^_^", ">_<", "0_0", "o_o", "x_x", ";_;"]:
        assert is_kaomoji(face)
        assert match_key(face) == face.lower()
        assert underscores_to_spaces(face) == face
    assert not is_kaomoji("long_hair")


def test_escaped_parentheses_match_plain_ones_and_spelling_is_kept():
    assert match_key(r"hatsune miku \(cosplay\)") == match_key("hatsune_miku_(cosplay)")
    assert split_tags(r"1girl, hatsune miku \(cosplay\)") == ["1girl", r"hatsune miku \(cosplay\)"]
    assert escape_parens("miku (cosplay)") == r"miku \(cosplay\)"
    assert escape_parens(r"miku \(cosplay\)") == r"miku \(cosplay\)"


def test_split_trims_folds_whitespace_and_drops_duplicates_keeping_first_spelling():
    assert split_tags("  1girl ,long_hair,\n Long   Hair, , smile,1girl") == ["1girl", "long_hair", "smile"]


def test_dedupe_and_join_round_trip():
    tags = dedupe(["a", "b", "A", "c d", "c_d"])
    assert tags == ["a", "b", "c d"]
    assert split_tags(join_tags(tags)) == tags


def test_caption_type_detection():
    assert looks_like_tags("1girl, solo, long hair, smile")
    assert looks_like_tags("1girl")
    assert not looks_like_tags("A photo of a woman standing in a field of flowers at sunset, smiling at the camera.")
    assert not looks_like_tags("The quick brown fox jumps over the lazy dog. Then it runs away.")


@given(st.text())
def test_split_is_idempotent_and_never_yields_empty_or_duplicate_tags(text):
    tags = split_tags(text)
    assert all(t and t == t.strip() for t in tags)
    assert len({match_key(t) for t in tags}) == len(tags)
    assert split_tags(join_tags(tags)) == tags
