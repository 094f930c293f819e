"""The dictionary's search by translation (issue 22, speed): a substring or suffix search
that a translation matches finds the tags whose name matches and the tags whose
translation matches, counted and paged the same way, whether the names that match are few
(looked up by key) or many (the name condition kept in the query)."""

from __future__ import annotations

import pytest
from dict_helpers import add_many
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.tags import dictionary as d
from sushitui.tags import translations as tr

DICTIONARY = [
    ("cat_ears", "general", 280_000),
    ("cat", "general", 80_000),
    ("cat_tail", "general", 150_000),
    ("long_hair", "general", 4_000_000),
    ("hair_ornament", "general", 1_200_000),
    ("猫耳_(cosplay)", "general", 5_000),  # a user's own tag with a Japanese name
    ("old_猫耳", "general", 10),  # another, deprecated below
    ("猫耳", "character", 700),  # a name that is the whole search text
] + [(f"cat_{i}", "general", 100 + i) for i in range(40)]


@pytest.fixture
def translated(db, tmp_path):
    add_many(DICTIONARY)
    d.edit_tag("old_猫耳", deprecated=True)
    f = tmp_path / "ja.csv"
    f.write_text(
        "cat_ears,猫耳|ネコミミ,ねこみみ\ncat,猫,ねこ\ncat_tail,猫の尻尾\nlong_hair,長髪\n"
        "hair_ornament,髪飾り\nfox_girl,狐娘 猫耳\n",
        encoding="utf-8",
    )
    tr.import_file(f, "ja")
    return db


def every_page(q: d.DictQuery, size: int) -> list[str]:
    tags, after = [], None
    while True:
        page, after = d.query_page(q, size, after)
        tags += [e.tag for e in page]
        if after is None:
            return tags


@pytest.mark.parametrize("name_limit", [5000, 1])  # names looked up by key / the name condition kept
def test_a_cjk_substring_finds_names_and_translations_counted_and_paged_alike(translated, monkeypatch, name_limit):
    monkeypatch.setattr(d, "NAME_MATCH_LIMIT", name_limit)
    q = d.DictQuery("猫耳")
    # by count: cat_ears (translation), 猫耳_(cosplay) and 猫耳 (names); the deprecated one hidden,
    # fox_girl (translated, not in the dictionary) is not a dictionary row
    assert [e.tag for e in d.search("猫耳", show_deprecated=False)] == ["cat_ears", "猫耳_(cosplay)", "猫耳"]
    assert d.count_matches(q) == 3
    assert every_page(q, 2) == ["cat_ears", "猫耳_(cosplay)", "猫耳"]
    assert every_page(d.DictQuery("猫耳", show_deprecated=True, sort="name"), 1) == [
        "cat_ears",
        "old_猫耳",
        "猫耳",
        "猫耳_(cosplay)",
    ]
    assert [e.tag for e in d.search("猫耳", sort="name")] == ["cat_ears", "old_猫耳", "猫耳", "猫耳_(cosplay)"]
    assert [e.tag for e in d.search("猫耳", category="character")] == ["猫耳"]
    # a suffix: names ending in the text and translations ending in it
    assert [e.tag for e in d.search("耳", mode="suffix")] == ["cat_ears", "猫耳", "old_猫耳"]
    # katakana typed finds the hiragana reading and the katakana translation alike
    assert [e.tag for e in d.search("ミミ")] == ["cat_ears"]


@pytest.mark.parametrize("name_limit", [5000, 1])
def test_an_english_substring_a_translation_also_matches_keeps_every_name_match(
    translated, tmp_path, monkeypatch, name_limit
):
    monkeypatch.setattr(d, "NAME_MATCH_LIMIT", name_limit)
    (tmp_path / "de.csv").write_text("long_hair,Langes Haar\n", encoding="utf-8")
    tr.import_file(tmp_path / "de.csv", "de")
    names = [e.tag for e in d.search("hair", limit=100)]
    assert names == ["long_hair", "hair_ornament"]
    assert [e.tag for e in d.search("haar")] == ["long_hair"]
    assert d.count_matches(d.DictQuery("cat")) == 43  # cat, cat_ears, cat_tail, cat_0..39
    assert len(every_page(d.DictQuery("cat"), 7)) == 43


def test_a_cjk_search_sees_names_added_renamed_here_or_written_by_another_process(translated, db_path):
    from pg_support import other_connection

    def cats() -> list[str]:  # "猫" matches translations too: names come from what the search keeps of them
        return sorted(e.tag for e in d.search("猫", limit=100))

    translated_cats = ["cat", "cat_ears", "cat_tail", "old_猫耳", "猫耳", "猫耳_(cosplay)"]
    assert cats() == translated_cats
    d.add_tag("白猫", "general", 3)
    assert cats() == sorted(translated_cats + ["白猫"])
    d.edit_tag("hair_ornament", tag="猫の髪飾り")  # renamed here: no new row, no other connection
    assert cats() == sorted(translated_cats + ["白猫", "猫の髪飾り"])
    # another process renames a tag and adds one (the TUI open while the CLI writes)
    con = other_connection(db_path)
    with con:
        con.execute("UPDATE dictionary_tag SET tag = '長い猫', norm = '長い猫' WHERE tag = 'long_hair'")
    assert cats() == sorted(translated_cats + ["白猫", "猫の髪飾り", "長い猫"])
    with con:
        con.execute(
            "INSERT INTO dictionary_tag (tag, norm, category, count, display_name, aliases, description, "
            "wiki_url, source, official, deprecated, replacement, created_at, updated_at) "
            "SELECT '黒猫', '黒猫', category, 1, display_name, aliases, description, wiki_url, source, "
            "official, deprecated, replacement, created_at, updated_at FROM dictionary_tag WHERE tag = 'cat'"
        )
    con.close()
    assert cats() == sorted(translated_cats + ["白猫", "猫の髪飾り", "長い猫", "黒猫"])
