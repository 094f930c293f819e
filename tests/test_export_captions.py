"""Caption selection and transforms: what the trainer reads for each option (EX-2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sushitui.export.captions import CaptionBuilder, CaptionRow, choose_caption
from sushitui.export.options import ExportError, ExportOptions
from sushitui.tags.normalize import split_tags


def rows(*triples):
    return [CaptionRow(t, s, c) for t, s, c in triples]


def test_fallback_order_picks_first_non_empty_subtype():
    r = rows(("tags", "main", "  "), ("tags", "alt", "b, c"), ("natural_language", "caption", "a cat"))
    assert choose_caption(r, ["main", "alt"]).content == "b, c"
    assert choose_caption(r, ["caption", "alt"]).content == "a cat"
    # a caption type works as a fallback entry too
    assert choose_caption(r, ["missing", "natural_language"]).content == "a cat"
    assert choose_caption(r, ["missing"]) is None


def test_main_also_matches_the_unsuffixed_caption():
    r = rows(("tags", "", "x, y"))
    assert choose_caption(r, ["main"]).content == "x, y"


def test_trigger_first_once_and_one_line():
    b = CaptionBuilder(ExportOptions(trigger="ohwx"))
    built = b.build(rows(("tags", "main", "1girl, OHWX, long_hair\nsmile")))
    assert built.text == "ohwx, 1girl, long_hair, smile"
    assert "\n" not in built.text


def test_prose_is_folded_to_one_line_with_trigger_prefix():
    b = CaptionBuilder(ExportOptions(trigger="ohwx man"))
    built = b.build(rows(("natural_language", "main", "A man\nstanding   in rain.")))
    assert built.text == "ohwx man, A man standing in rain."
    # already starting with the trigger: not doubled
    assert b.transform_text("ohwx man walking") == "ohwx man walking"


def test_underscores_to_spaces_keeps_kaomoji_and_escape_parens():
    b = CaptionBuilder(ExportOptions(underscores_to_spaces=True, escape_parens=True))
    built = b.build(rows(("tags", "main", "long_hair, ^_^, >_<, hatsune_miku (cosplay), already \\(x\\)")))
    assert built.text.split(", ") == ["long hair", "^_^", ">_<", "hatsune miku \\(cosplay\\)", "already \\(x\\)"]


def test_aliases_and_excluded_groups_then_dedupe():
    b = CaptionBuilder(
        ExportOptions(aliases=True, exclude_groups=("Meta",)),
        alias_map={"lh": "long hair", "blonde": "blonde hair"},
        excluded_norms={"highres", "absurdres"},
    )
    built = b.build(rows(("tags", "main", "lh, long_hair, highres, blonde, absurdres, smile")))
    assert built.text == "long hair, blonde hair, smile"


def test_no_caption_gives_only_the_trigger_or_nothing():
    assert CaptionBuilder(ExportOptions()).build([]).text == ""
    assert CaptionBuilder(ExportOptions(trigger="ohwx")).build([]).text == "ohwx"


def test_keep_tokens_counts_trigger_tokens():
    assert ExportOptions(trigger="ohwx").keep_tokens == 1
    assert ExportOptions(trigger="ohwx, style of x").keep_tokens == 2
    assert ExportOptions().keep_tokens == 0


def test_exclude_groups_from_database(db):
    from sushitui.store import Alias, TagGroup, TagGroupMember

    g = TagGroup.create(name="Meta-test")
    TagGroupMember.create(group=g, tag="highres", norm="highres")
    Alias.create(from_tag="lh", from_norm="lh", to_tag="long hair")
    b = CaptionBuilder.from_database(ExportOptions(exclude_groups=("meta-TEST",), aliases=True))
    assert b.build(rows(("tags", "main", "highres, lh, smile"))).text == "long hair, smile"
    with pytest.raises(ExportError, match="unknown tag group"):
        CaptionBuilder.from_database(ExportOptions(exclude_groups=("NoSuchGroup",)))


@pytest.mark.parametrize(
    "kw",
    [dict(format="csv"), dict(link_mode="move"), dict(repeats=0), dict(caption=()), dict(trigger="a\nb")],
)
def test_bad_options_are_refused(kw):
    with pytest.raises(ExportError):
        ExportOptions(**kw).validate()


_tag_text = st.lists(
    st.text(alphabet=st.sampled_from(list("abcAB _-^()\\\n\r,;:0 ")), min_size=0, max_size=12), max_size=12
).map(", ".join)


@settings(max_examples=200, deadline=None)
@given(_tag_text)
def test_memoised_split_matches_the_normalisation_module(text):
    # without options the export's fast path must give exactly normalize.split_tags
    b = CaptionBuilder(ExportOptions())
    assert b.transform_text_tags(text) == split_tags(text)
    assert b.transform_text_tags(text) == split_tags(text)  # and again from the memo
