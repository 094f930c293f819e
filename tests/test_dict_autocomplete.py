"""Autocomplete (TAG-7): order of candidates, aliases, dataset tags first, the SQLite
answer before the index is built, and a rebuild after the dictionary changes."""

from __future__ import annotations

import threading

import pytest
from dict_helpers import add_many, make_dataset
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.tags import dictionary as d
from sushitui.tags.autocomplete import Completer, query_key


@pytest.fixture
def dictionary(db):
    add_many(
        [
            ("long_hair", "general", 4000, "/lh", "longhair"),
            ("very_long_hair", "general", 700, "/vlh"),
            ("hair_ornament", "general", 900),
            ("hairband", "general", 1200),
            ("short_hair", "general", 2000),
            ("hatsune_miku", "character", 120),
            ("highres", "meta", 5000),
            ("3rd|zero", "artist", 3),
            (":d", "general", 800),
            ("star_\\(symbol\\)", "general", 50),
            ("1girl", "general", 6000, "1girls", "sole_female"),
        ]
    )
    return db


def ready(dataset_id=None) -> Completer:
    c = Completer()
    c.warm(dataset_id, wait=True)
    assert c.ready
    return c


def test_prefix_first_by_count_then_substring_and_aliases(dictionary):
    got = ready().complete("hair", limit=10)
    assert [(c.tag, c.match) for c in got] == [
        ("hairband", "prefix"),
        ("hair_ornament", "prefix"),  # prefix matches, by count
        ("long_hair", "substring"),
        ("short_hair", "substring"),
        ("very_long_hair", "substring"),
    ]
    assert got[0].category == "general" and got[0].count == 1200


def test_aliases_are_candidates_that_resolve_to_their_target(dictionary):
    c = ready()
    (cand,) = c.complete("/lh")
    assert (cand.tag, cand.alias_of, cand.value, cand.match, cand.category) == (
        "/lh",
        "long_hair",
        "long_hair",
        "alias",
        "general",
    )
    got = c.complete("longh")
    assert [(x.tag, x.value) for x in got] == [("longhair", "long_hair")]
    # an alias whose target is already offered is not repeated
    got = c.complete("1girl")
    assert [x.value for x in got] == ["1girl"]
    # substring of an alias: 'lh' finds /lh and /vlh, ranked by the target's count
    assert [x.tag for x in c.complete("lh")] == ["/lh", "/vlh"]


def test_underscore_space_case_and_odd_characters(dictionary):
    c = ready()
    assert [x.tag for x in c.complete("Long Ha")] == ["long_hair", "very_long_hair"]
    assert [x.tag for x in c.complete("long_")] == ["long_hair", "very_long_hair"]
    assert query_key("long_") == "long " and query_key("^_^") == "^_^"
    assert [x.tag for x in c.complete("3rd|")] == ["3rd|zero"]
    assert [x.tag for x in c.complete(":")] == [":d"]
    assert [x.tag for x in c.complete("star (sym")] == ["star_\\(symbol\\)"]
    assert [x.tag for x in c.complete("(symbol")] == ["star_\\(symbol\\)"]
    assert c.complete("") == [] and c.complete("zzzz") == []


def test_dataset_tags_come_first_by_frequency(dictionary, tmp_path):
    ds = make_dataset(
        tmp_path / "a", "a", ["hair_ornament, my_hairstyle", "hair_ornament, my_hairstyle", "my_hairstyle", "long_hair"]
    )
    c = ready(ds.id)
    got = c.complete("hair", dataset_id=ds.id, limit=6)
    assert [(x.tag, x.source, x.match) for x in got] == [
        ("hair_ornament", "dataset", "prefix"),  # the dataset's own tag first
        ("hairband", "dictionary", "prefix"),  # then the dictionary's prefix matches
        ("my_hairstyle", "dataset", "substring"),  # dataset substring before dictionary substring
        ("long_hair", "dataset", "substring"),
        ("short_hair", "dictionary", "substring"),
        ("very_long_hair", "dictionary", "substring"),
    ]
    assert got[0].count == 2 and got[0].category == "general"  # dataset frequency, dictionary category
    assert got[2].category is None  # not in the dictionary
    # without a dataset: dictionary only
    assert [x.tag for x in c.complete("my_h")] == []


def test_first_keystroke_answers_prefixes_from_sqlite_while_the_index_builds(dictionary):
    c = Completer()
    got = c.complete("hair")  # starts the background build, answers at once
    assert [x.tag for x in got][:2] == ["hairband", "hair_ornament"]
    c.warm(wait=True)
    assert c.ready and [x.tag for x in c.complete("hair")][2] == "long_hair"


def test_index_rebuilds_after_a_dictionary_write_and_old_index_serves_meanwhile(dictionary):
    c = ready()
    d.add_tag("hairpin", "general", 10_000)
    assert not c.ready
    first = c.complete("hairp")  # old index or SQLite: never an error, never blocks for the build
    assert isinstance(first, list)
    c.warm(wait=True)
    assert [x.tag for x in c.complete("hair")][0] == "hairpin"
    d.remove_tag("hairpin")
    c.warm(wait=True)
    assert "hairpin" not in [x.tag for x in c.complete("hair")]


def test_thread_safe_under_concurrent_queries(dictionary):
    c = Completer()
    errors: list[BaseException] = []
    results: list[list[str]] = []

    def worker():
        try:
            for _ in range(50):
                results.append([x.tag for x in c.complete("hair")][:2])
        except BaseException as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == ["hairband", "hair_ornament"] for r in results)


@pytest.mark.slow
def test_substring_search_over_the_shipped_list(db):
    d.ensure_loaded()
    c = ready()
    got = c.complete("miku", limit=200)
    assert got[0].match == "prefix" and got[0].tag.startswith("miku")
    subs = [x for x in got if x.match == "substring"]
    assert subs and subs[0].tag == "hatsune_miku" and all("miku" in x.tag for x in subs)
    counts = [x.count for x in subs]
    assert counts == sorted(counts, reverse=True)
    # two-letter substrings go through the scan path; results still by count
    two = [x for x in c.complete("qz", limit=30) if x.match == "substring"]
    assert all("qz" in x.tag and not x.tag.startswith("qz") for x in two)
    assert [x.count for x in two] == sorted((x.count for x in two), reverse=True)


def test_a_common_prefix_leaves_a_third_of_the_slots_for_substrings_and_aliases(db, tmp_path):
    # twelve "miku..." tags would fill ten slots by prefix alone, hiding hatsune_miku
    add_many(
        [(f"miku_{i:02d}", "general", 10_000 - i) for i in range(12)]
        + [
            ("hatsune_miku", "character", 500, "negi_miku"),
            ("yuki_miku", "character", 300),
            ("kagamine_rin", "character", 900, "rinmiku"),
        ]
    )
    ds = make_dataset(tmp_path / "m", "m", ["my_miku_cosplay, miku_zz", "miku_zz"])
    c = ready(ds.id)
    got = c.complete("miku", limit=10)
    assert [(x.tag, x.match) for x in got] == [(f"miku_{i:02d}", "prefix") for i in range(7)] + [
        ("rinmiku", "alias"),  # ranked by its target's count (900)
        ("hatsune_miku", "substring"),
        ("yuki_miku", "substring"),
    ]  # negi_miku: its target is already offered
    assert got[7].value == "kagamine_rin"
    # with the dataset: its tags first within each class
    got = c.complete("miku", dataset_id=ds.id, limit=10)
    assert [(x.tag, x.source, x.match) for x in got] == [("miku_zz", "dataset", "prefix")] + [
        (f"miku_{i:02d}", "dictionary", "prefix") for i in range(6)
    ] + [
        ("my_miku_cosplay", "dataset", "substring"),
        ("rinmiku", "dictionary", "alias"),
        ("hatsune_miku", "dictionary", "substring"),
    ]
    # small limits still offer one of them; limit 1 is the best prefix
    assert [x.match for x in c.complete("miku", limit=3)] == ["prefix", "prefix", "alias"]
    assert [x.tag for x in c.complete("miku", limit=1)] == ["miku_00"]
    # no substring or alias candidates: prefixes take every slot
    assert [x.tag for x in c.complete("miku_0", limit=10)] == [f"miku_{i:02d}" for i in range(10)]


@pytest.mark.slow
def test_typing_miku_offers_hatsune_miku_from_the_shipped_list(db):
    d.ensure_loaded()
    got = ready().complete("miku", limit=10)
    assert got[0].match == "prefix" and len(got) == 10
    assert "hatsune_miku" in [x.tag for x in got]
    matches = [x.match for x in got]
    assert matches == sorted(matches, key=lambda m: m != "prefix")  # prefixes first
    assert matches.count("prefix") >= 7
