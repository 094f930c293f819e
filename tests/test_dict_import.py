"""Tag dictionary files (TAG-4, TAG-6): every format round-trips, every conflict mode does
what it says, bad rows are rejected one by one with a reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.tags import dictionary as d
from sushitui.tags.dictionary_formats import bulk_keys
from sushitui.tags.normalize import match_key

ODD_TAGS = ["3rd|zero", ":d", 'don\'t_say_"lazy"', "star_\\(symbol\\)", "\\m/", "^_^", "foo (bar)"]


def snapshot() -> dict[str, tuple]:
    from sushitui.store import current_database

    rows = (
        current_database()
        .execute_sql("SELECT tag, category, count, display_name, aliases, description, source FROM dictionary_tag")
        .fetchall()
    )
    return {r[0]: r[1:] for r in rows}


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_taglist_json_category_from_file_name_and_round_trip(db, tmp_path):
    src = tmp_path / "Character.json"
    src.write_text(json.dumps({"hatsune_miku": 121975, "kagamine_rin": 30000, ODD_TAGS[0]: 3}), encoding="utf-8")
    rep = d.import_file(src)
    assert (rep.imported, rep.updated, rep.skipped, rep.rejected) == (3, 0, 0, [])
    assert d.get_tag("Hatsune Miku").category == "character"
    out = tmp_path / "out.json"
    d.export(out, fmt="json", category="character")
    assert json.loads(out.read_text()) == {"hatsune_miku": 121975, "kagamine_rin": 30000, "3rd|zero": 3}


def test_json_file_not_named_after_a_category_needs_one(db, tmp_path):
    src = tmp_path / "mine.json"
    src.write_text('{"a_tag": 1}')
    with pytest.raises(d.DictionaryFileError, match="--category"):
        d.import_file(src)
    assert d.import_file(src, category="meta").imported == 1
    assert d.get_tag("a tag").category == "meta"


def test_csv_round_trip_keeps_every_column_and_odd_characters(db, tmp_path):
    rows = [["tag", "category", "count", "display_name", "aliases", "description"]]
    rows += [
        [t, "general", i * 10, f"Name {i}", f"alias_{i}a,alias_{i}b", f'desc "{i}", with comma']
        for i, t in enumerate(ODD_TAGS)
    ]
    src = write_csv(tmp_path / "in.csv", rows)
    rep = d.import_file(src)
    assert rep.imported == len(ODD_TAGS) and not rep.rejected
    before = snapshot()
    assert before['don\'t_say_"lazy"'][3] == "alias_2a,alias_2b"
    assert {v[5] for v in before.values()} == {"user_custom"}  # a user's CSV is custom by default
    out = tmp_path / "out.csv"
    assert d.export(out, fmt="csv")["tags"] == len(ODD_TAGS)
    # into a fresh dictionary: identical rows
    from sushitui.store import current_database

    current_database().execute_sql("DELETE FROM dictionary_tag")
    assert d.import_file(out).imported == len(ODD_TAGS)
    assert snapshot() == before


def test_tagcomplete_csv_with_aliases_and_json_folder_round_trip(db, tmp_path):
    src = write_csv(
        tmp_path / "danbooru.csv",
        [
            ["1girl", "0", "6008644", "1girls,sole_female"],
            ["long_hair", "0", "4350743", "/lh,longhair"],
            ["highres", "5", "5256195", "high_res,hires"],
            ["hatsune_miku", "4", "121975", ""],
            ["original", "3", "1000", ""],
            ["some_artist", "1", "25", ""],
        ],
    )
    rep = d.import_file(src)
    assert rep.imported == 6 and not rep.rejected
    assert d.get_tag("long_hair").aliases == ["/lh", "longhair"]
    assert {e.tag: e.category for e in d.search("", limit=10)} == {
        "1girl": "general",
        "long_hair": "general",
        "highres": "meta",
        "hatsune_miku": "character",
        "original": "copyright",
        "some_artist": "artist",
    }
    before = snapshot()
    folder = tmp_path / "taglist"
    res = d.export(folder, fmt="json")
    assert (folder / "General.json").is_file() and (folder / "aliases.json").is_file()
    assert json.loads((folder / "Meta.json").read_text()) == {"highres": 5256195}
    assert res["tags"] == 6
    from sushitui.store import current_database

    current_database().execute_sql("DELETE FROM dictionary_tag")
    rep = d.load_dir(folder)
    assert rep.imported == 6 and not rep.rejected
    assert snapshot() == before


def test_e621_file_rejected_row_by_row_nothing_half_imported(db, testdata):
    rep = d.import_file(testdata / "tagcomplete" / "e621.csv")
    assert rep.imported == 0
    assert len(rep.rejected) == 101_668
    first = {p.tag: p for p in rep.rejected[:3]}
    assert "e621" in first["hi_res"].reason and "7" in first["hi_res"].reason
    assert "e621" in first["mammal"].reason  # a 5 (species there) is not taken as meta
    assert first["hi_res"].where == "e621.csv line 3"
    assert d.count_matches(d.DictQuery()) == 0


def test_text_counts_rejected_with_the_row(db, testdata):
    rep = d.import_file(testdata / "tagcomplete" / "extra-quality-tags.csv")
    assert rep.imported == 0 and len(rep.rejected) == 6
    p = rep.rejected[0]
    assert (p.where, p.tag) == ("extra-quality-tags.csv line 1", "masterpiece")
    assert "'Quality tag' is not an integer" in p.reason


def test_bad_rows_rejected_with_reasons_good_rows_imported(db, tmp_path):
    src = write_csv(
        tmp_path / "mixed.csv",
        [
            ["good_tag", "general", "5"],
            ["comma,tag", "general", "5"],
            ["ctrl\x1b[31mtag", "general", "5"],
            ["neg_tag", "general", "-3"],
            ["", "general", "1"],
            ["cat_tag", "species", "1"],
            ["float_tag", "general", "1.5"],
            ["alias_bad", "general", "1", "", "ok,bad\x07alias"],
            ["fine_2", "artist", ""],
        ],
    )
    rep = d.import_file(src)
    assert rep.imported == 2
    reasons = {p.where: p.reason for p in rep.rejected}
    assert "comma" in reasons["mixed.csv line 2"]
    assert "control character U+001B" in reasons["mixed.csv line 3"]
    assert "negative" in reasons["mixed.csv line 4"]
    assert "empty" in reasons["mixed.csv line 5"]
    assert "species" in reasons["mixed.csv line 6"]
    assert "not an integer" in reasons["mixed.csv line 7"]
    assert "alias" in reasons["mixed.csv line 8"]
    assert d.get_tag("fine_2").count == 0  # an empty count is 0
    rep = d.import_file(
        write_csv(tmp_path / "tc.csv", [["x", "2", "5", ""], ["y", "0", "many", ""]]), fmt="tagcomplete"
    )
    assert rep.imported == 0 and len(rep.rejected) == 2


def test_json_with_bad_values_falls_back_to_row_checks(db, tmp_path):
    src = tmp_path / "General.json"
    src.write_text(json.dumps({"ok": 1, "neg": -1, "txt": "many", "a,b": 2, "flt": 1.5}), encoding="utf-8")
    rep = d.import_file(src)
    assert rep.imported == 1
    assert sorted(p.tag for p in rep.rejected) == ["a,b", "flt", "neg", "txt"]


@pytest.mark.parametrize("mode", ["skip", "update", "merge"])
def test_conflict_modes(db, tmp_path, mode):
    d.import_file(
        write_csv(
            tmp_path / "a.csv",
            [["long_hair", "general", "100", "Long", "longhair", "old desc"], ["solo", "general", "50", "", "", ""]],
        ),
        source="danbooru",
    )
    rep = d.import_file(
        write_csv(
            tmp_path / "b.csv",
            [
                ["Long Hair", "general", "70", "", "/lh", "new desc"],
                ["solo", "general", "50", "", "", ""],
                ["new_tag", "meta", "1", "", "", ""],
            ],
        ),
        on_conflict=mode,
        source="danbooru",
    )
    e = d.get_tag("long_hair")
    assert rep.imported == 1 and d.get_tag("new tag") is not None
    assert e.tag == "long_hair"  # the existing spelling stays
    if mode == "skip":
        assert (rep.updated, rep.skipped) == (0, 2)
        assert (e.count, e.aliases, e.description) == (100, ["longhair"], "old desc")
        assert "skip" in rep.skipped_rows[0].reason
    elif mode == "update":
        assert (rep.updated, rep.skipped) == (1, 1)  # solo is unchanged: skipped, not "updated"
        assert (e.count, e.aliases, e.description) == (70, ["longhair"], "old desc")
    else:
        assert (rep.updated, rep.skipped) == (1, 1)
        assert (e.count, e.aliases, e.description) == (100, ["longhair", "/lh"], "old desc")
    with pytest.raises(d.DictionaryError, match="conflict mode"):
        d.import_file(tmp_path / "b.csv", on_conflict="replace")


def test_duplicates_inside_one_file_are_skipped_with_the_row_they_repeat(db, tmp_path):
    rep = d.import_file(write_csv(tmp_path / "dup.csv", [["long_hair", "general", "1"], ["Long Hair", "general", "2"]]))
    assert (rep.imported, rep.skipped) == (1, 1)
    assert "dup.csv line 1" in rep.skipped_rows[0].reason


def test_load_dir_reads_aliases_and_tolerates_missing_categories(db, tmp_path):
    (tmp_path / "General.json").write_text('{"long_hair": 10, "solo": 5}')
    (tmp_path / "Meta.json").write_text('{"highres": 7}')
    (tmp_path / "aliases.json").write_text('{"long_hair": ["/lh", "longhair"], "not_there": ["x"]}')
    (tmp_path / "aliases.csv").write_text(
        "antecedent_name,consequent_name,status\nsolo_female,solo,active\nold,solo,deleted\n"
    )
    rep = d.load_dir(tmp_path)
    assert rep.imported == 3 and rep.aliases_unmatched == 1
    assert d.get_tag("long_hair").aliases == ["/lh", "longhair"]
    assert d.get_tag("solo").aliases == ["solo_female"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(d.DictionaryFileError, match="no taglist files"):
        d.load_dir(tmp_path / "empty")


@pytest.mark.slow
def test_first_start_loads_the_shipped_taglist_once(db):
    rep = d.ensure_loaded()
    assert rep is not None and rep.imported > 140_000 and not rep.rejected
    e = d.get_tag("long_hair")
    assert e.category == "general" and "/lh" in e.aliases and e.official
    assert d.stats()["by_category"]["model"] == 0
    assert d.stats()["builtin_loaded"] is True
    # recorded in the database: the second start skips it, even after tags were deleted
    d.remove_tag("long_hair")
    assert d.ensure_loaded() is None
    assert d.get_tag("long_hair") is None


@pytest.mark.slow
def test_bulk_keys_equals_match_key_on_the_shipped_list_and_edge_cases():
    folder = Path(__file__).resolve().parents[1] / "taglist"
    tags = [t for f in sorted(folder.glob("[A-Z]*.json")) for t in json.loads(f.read_text())]
    tags += [
        "a_b",
        "^_^",
        "Long_Hair",
        "x  y",
        "_a_",
        "a__b",
        "foo_\\(bar\\)",
        "日本_語",
        "a\u3000b",
        "x_",
        "T_T",
        ";_;",
    ]
    assert bulk_keys(tags) == [match_key(t) for t in tags]


def test_csv_round_trip_property(db, tmp_path):
    """Any valid names (quotes, pipes, colons, backslashes, unicode) survive export → import."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from sushitui.store import current_database
    from sushitui.tags.dictionary_formats import TagRow

    alphabet = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=",")
    name = st.text(alphabet, min_size=1, max_size=20).map(str.strip).filter(bool)
    entry = st.tuples(name, st.sampled_from(d.CATEGORIES), st.integers(0, 10**9))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(entry, min_size=1, max_size=8, unique_by=lambda e: match_key(e[0])))
    def check(entries):
        current_database().execute_sql("DELETE FROM dictionary_tag")
        rep = d.import_rows([TagRow(" ".join(t.split()), c, n, None, (), "", "") for t, c, n in entries])
        assert rep.imported == len(entries)
        before = snapshot()
        out = tmp_path / "rt.csv"
        d.export(out, fmt="csv")
        current_database().execute_sql("DELETE FROM dictionary_tag")
        again = d.import_file(out, source="danbooru")
        assert not again.rejected and snapshot() == before

    check()


@pytest.mark.slow
def test_big_load_over_an_existing_dictionary_keeps_every_index(db):
    from sushitui.store import current_database
    from sushitui.tags.dictionary_formats import TagRow

    d.add_tag("long_hair", "general", 5)

    def names() -> list[str]:
        return sorted(
            r[0]
            for r in current_database().execute_sql(
                "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='dictionary_tag'"
            )
        )

    before = names()
    rows = [TagRow(f"bulk_tag_{i:06d}", "artist", i, None, (), "", "") for i in range(60_000)]
    rows.append(TagRow("Long Hair", "general", 99, None, ("lh",), "", ""))
    rep = d.import_rows(rows, on_conflict="merge")
    assert (rep.imported, rep.updated) == (60_000, 1)
    assert names() == before and len(before) >= 6
    assert d.get_tag("long_hair").count == 99 and d.get_tag("long_hair").aliases == ["lh"]
    assert [e.tag for e in d.search("bulk tag 05999", mode="prefix", sort="name", limit=3)] == [
        "bulk_tag_059990",
        "bulk_tag_059991",
        "bulk_tag_059992",
    ]


# --- the bulk fast path's name check -------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sushitui.tags.dictionary_formats import clean, name_problem, names_all_clean  # noqa: E402

_NAME_CHARS = st.sampled_from(list("ab_( )\\,") + ["\t", "\n", "\u3000", "\u00a0", "\x85", "\u2028", "é", "\x7f"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(_NAME_CHARS, max_size=6), min_size=1, max_size=6))
def test_names_all_clean_is_exactly_the_per_row_check(names):
    """A big file skips the per-row checks only when every row would have passed them
    unchanged: a padded name, doubled whitespace or a control character anywhere sends
    the file to the slow path, which reports that row."""
    per_row = all(name_problem(n) is None and n == n.strip() and "  " not in n for n in names)
    if names_all_clean(names):
        assert per_row
        assert all(clean(n) == n or any(c.isspace() and c != " " for c in n) for n in names)
    elif all(n.isascii() for n in names):
        assert not per_row  # ASCII names: the fast check rejects only what is really wrong


def test_a_padded_name_in_a_big_taglist_is_reported_not_imported_padded(db, tmp_path):
    names = {f"tag_{i}": i for i in range(2000)}
    names[" padded_tag"] = 5
    names["double  space"] = 3
    folder = tmp_path / "list"
    folder.mkdir()
    (folder / "General.json").write_text(json.dumps(names))
    report = d.load_dir(folder)
    assert report.imported == 2002
    stored = {e.tag for e in d.search("", mode="prefix", limit=5000)}
    assert {"padded_tag", "double space"} <= stored  # cleaned, as the per-row path does
    assert not {" padded_tag", "double  space"} & stored
