"""Dictionary search, paging, add/edit/remove (TAG-5) and statistics (TAG-8)."""

from __future__ import annotations

import pytest
from dict_helpers import add_many, make_dataset
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.dataset.bulk_edit import remove_tag_everywhere
from sushitui.tags import dictionary as d


@pytest.fixture
def small(db):
    add_many(
        [
            ("long_hair", "general", 4000, "/lh", "longhair"),
            ("hair_ornament", "general", 900),
            ("short_hair", "general", 2000),
            ("very_long_hair", "general", 700),
            ("hatsune_miku", "character", 120),
            ("highres", "meta", 5000),
            ("3rd|zero", "artist", 3),
            (":d", "general", 800),
            ("star_\\(symbol\\)", "general", 50),
        ]
    )
    return db


def test_search_modes_and_category(small):
    names = lambda es: [e.tag for e in es]  # noqa: E731
    assert names(d.search("hair", mode="prefix")) == ["hair_ornament"]
    assert names(d.search("hair", mode="substring")) == ["long_hair", "short_hair", "hair_ornament", "very_long_hair"]
    assert names(d.search("long hair", mode="suffix")) == ["long_hair", "very_long_hair"]
    assert names(d.search("Long_Hair", mode="exact")) == ["long_hair"]
    assert names(d.search("", category="meta")) == ["highres"]
    assert names(d.search("|", mode="substring")) == ["3rd|zero"]
    assert names(d.search(":d", mode="exact")) == [":d"]
    assert names(d.search("star (symbol)", mode="exact")) == ["star_\\(symbol\\)"]
    assert names(d.search("hair", sort="name")) == ["hair_ornament", "long_hair", "short_hair", "very_long_hair"]
    with pytest.raises(d.DictionaryError):
        d.search("x", category="species")


@pytest.mark.parametrize("sort", ["count", "name", "created"])
def test_keyset_pages_cover_everything_once_in_order(db, sort):
    add_many([(f"tag_{i:04d}", "general" if i % 3 else "artist", i % 17) for i in range(1000)])
    q = d.DictQuery(sort=sort)
    seen, cursor = [], None
    while True:
        page, cursor = d.query_page(q, limit=64, after=cursor)
        seen += page
        if cursor is None:
            break
    assert len(seen) == 1000 == len({e.id for e in seen}) == d.count_matches(q)
    key = {"count": lambda e: (-e.count, -e.id), "name": lambda e: (e.tag, e.id), "created": lambda e: -e.id}[sort]
    assert seen == sorted(seen, key=key)
    artists, cursor = d.query_page(d.DictQuery(category="artist", sort=sort), limit=1000)
    assert len(artists) == 334 and {e.category for e in artists} == {"artist"}


def test_filters_official_custom_deprecated(small):
    d.add_tag("my_style", "general", 3)
    d.edit_tag("highres", deprecated=True)
    assert [e.tag for e in d.query_page(d.DictQuery(only_custom=True))[0]] == ["my_style"]
    assert "my_style" not in [e.tag for e in d.query_page(d.DictQuery(only_official=True))[0]]
    assert "highres" not in [e.tag for e in d.query_page(d.DictQuery())[0]]
    assert "highres" in [e.tag for e in d.query_page(d.DictQuery(show_deprecated=True))[0]]


def test_add_validation_reports_each_field(small):
    with pytest.raises(d.ValidationError) as exc:
        d.add_tag("a,b", "species", "-1")
    assert set(exc.value.problems) == {"tag", "category", "count"}
    with pytest.raises(d.ValidationError) as exc:
        d.add_tag("", "general", "many")
    assert "empty" in exc.value.problems["tag"] and "not an integer" in exc.value.problems["count"]
    with pytest.raises(d.ValidationError, match="control character"):
        d.add_tag("evil\x1b]52;c;AAAA\x07", "general", 1)
    with pytest.raises(d.ValidationError, match="already in the dictionary"):
        d.add_tag("Long Hair", "general", 1)
    e = d.add_tag('quote_"tag"', "Character", "12", aliases="qt, q_t", description="x")
    assert (e.category, e.count, e.aliases, e.source, e.official) == (
        "character",
        12,
        ["qt", "q_t"],
        "user_custom",
        False,
    )


def test_edit_and_rename(small):
    e = d.edit_tag("hatsune_miku", count=150, display_name="Hatsune Miku")
    assert (e.count, e.display_name) == (150, "Hatsune Miku")
    e = d.edit_tag("hatsune_miku", tag="hatsune_miku_(vocaloid)")
    assert d.get_tag("hatsune_miku") is None and e.tag == "hatsune_miku_(vocaloid)" and e.count == 150
    with pytest.raises(d.ValidationError, match="already"):
        d.edit_tag("short_hair", tag="long_hair")
    with pytest.raises(d.ValidationError):
        d.edit_tag("short_hair", count=-5)
    with pytest.raises(d.DictionaryError, match="not in the dictionary"):
        d.edit_tag("no_such_tag", count=1)


def test_remove_from_datasets_strips_captions_through_the_edit_path(small, tmp_path):
    make_dataset(tmp_path / "a", "a", ["1girl, long_hair, smile", "Long Hair, solo", "solo"])
    make_dataset(tmp_path / "b", "b", ["long_hair"])
    rep = remove_tag_everywhere("long_hair")
    assert rep.removed and rep.items_changed == 3 and not rep.problems
    assert (tmp_path / "a" / "img_000.txt").read_text() == "1girl, smile"
    assert (tmp_path / "a" / "img_001.txt").read_text() == "solo"
    assert (tmp_path / "a" / "img_002.txt").read_text() == "solo"
    assert (tmp_path / "b" / "img_000.txt").read_text() == ""
    assert d.get_tag("long_hair") is None
    assert d.items_with_tag("long_hair") == {}
    # without from_datasets the captions stay
    make_dataset(tmp_path / "c", "c", ["short_hair, solo"])
    d.remove_tag("short_hair")
    assert (tmp_path / "c" / "img_000.txt").read_text() == "short_hair, solo"


def test_stats_used_unused_and_top(small, tmp_path):
    make_dataset(tmp_path / "a", "a", ["long_hair, :d, my_own_tag", "long_hair, solo_thing", "Long Hair"])
    d.add_tag("custom_x", "meta", 1)
    s = d.stats()
    assert s["total"] == 10 and s["custom"] == 1 and s["by_source"]["user_custom"] == 1
    assert s["by_category"]["general"] == 6 and s["by_category"]["model"] == 0
    assert s["used_in_datasets"] == 2 and s["unused"] == 8
    assert s["dataset_tags_not_in_dictionary"] == 2
    top = s["top_used"]
    assert top[0]["uses"] == 3 and top[0]["category"] == "general" and top[0]["items"] == 3
    assert {t["tag"] for t in top} >= {":d", "my_own_tag"}


def test_replacement_rules_in_the_core_api(small):
    e = d.add_tag("old_hair", replacement="LONG_HAIR")
    assert (e.deprecated, e.replacement, e.official) == (True, "long_hair", False)
    # renaming the deprecated tag to its own replacement's name is refused
    with pytest.raises(d.ValidationError) as exc:
        d.edit_tag("old_hair", tag="long hair", replacement="long_hair")
    assert "its own replacement" in exc.value.problems["replacement"]
    # clearing the replacement keeps the tag deprecated; the official flag can be set on add
    assert (d.edit_tag("old_hair", replacement="").replacement, d.get_tag("old_hair").deprecated) == (None, True)
    assert d.add_tag("curated", official=True, wiki_url="https://example.org/w/curated").official is True
    assert d.replacement_problem("x", "") is None and "not in the dictionary" in d.replacement_problem("x", "nope")
