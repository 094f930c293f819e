"""``sushitui dict ...`` end to end (in-process, a tiny taglist as the shipped one)."""

from __future__ import annotations

import json

import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.cli import main


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    taglist = tmp_path / "taglist"
    taglist.mkdir()
    (taglist / "General.json").write_text('{"long_hair": 4000, "short_hair": 2000, "hair_ornament": 900}')
    (taglist / "Character.json").write_text('{"hatsune_miku": 120}')
    (taglist / "aliases.json").write_text('{"long_hair": ["/lh", "longhair"]}')
    monkeypatch.setattr("sushitui.config.taglist_dir", lambda: taglist)
    db = str(tmp_path / "cli.db")

    def run(*argv):
        code = main(["--db", db, "dict", *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_first_command_loads_the_taglist_then_search_and_complete(cli):
    code, out, _ = cli("search", "hair", "--json")
    assert code == 0
    assert [e["tag"] for e in json.loads(out)] == ["long_hair", "short_hair", "hair_ornament"]
    code, out, _ = cli("complete", "/l", "--json")
    assert json.loads(out)[0] | {} == {
        "tag": "/lh",
        "category": "general",
        "count": 4000,
        "source": "dictionary",
        "alias_of": "long_hair",
        "match": "alias",
        "value": "long_hair",
    }
    code, out, _ = cli("stats", "--json")
    s = json.loads(out)
    assert s["total"] == 4 and s["builtin_loaded"] and s["by_category"]["character"] == 1


def test_add_edit_remove_and_validation_errors(cli):
    code, out, err = cli("add", "bad,tag")
    assert code == 2 and "sushitui: error: invalid tag" in err and "comma" in err and "Traceback" not in err
    code, out, err = cli("add", "x_tag", "--count", "-4")
    assert code == 2 and "≥ 0" in err
    assert cli("add", "my_style", "--category", "meta", "--count", "3", "--aliases", "ms,mystyle")[0] == 0
    code, out, _ = cli("edit", "my_style", "--count", "9", "--rename", "my_style_v2", "--json")
    assert json.loads(out)["tag"] == "my_style_v2" and json.loads(out)["count"] == 9
    code, out, _ = cli("search", "my style", "--mode", "prefix", "--json")
    assert json.loads(out)[0]["aliases"] == ["ms", "mystyle"]
    code, out, err = cli("remove", "my_style_v2", "--from-datasets")
    assert code == 2 and "--yes" in err  # stdin is not a terminal: asks for --yes instead of guessing
    assert cli("remove", "my_style_v2", "--yes")[0] == 0
    code, out, err = cli("remove", "my_style_v2")
    assert code == 1 and "not in the dictionary" in err


def test_import_report_and_export(cli, tmp_path, testdata):
    code, out, _ = cli("import", str(testdata / "tagcomplete" / "extra-quality-tags.csv"), "--json")
    rep = json.loads(out)
    assert code == 3 and rep["imported"] == 0 and rep["rejected"] == 6
    assert rep["rejected_rows"][0]["where"] == "extra-quality-tags.csv line 1"
    src = tmp_path / "in.csv"
    src.write_text(
        "tag,category,count,display_name,aliases,description\nlong_hair,general,5,,lh2,\nnew_one,meta,7,,,\n"
    )
    code, out, _ = cli("import", str(src), "--on-conflict", "merge")
    assert code == 0 and "imported 1  updated 1  skipped 0  rejected 0" in out
    code, out, _ = cli("search", "long_hair", "--mode", "exact", "--json")
    assert json.loads(out)[0]["aliases"] == ["/lh", "longhair", "lh2"] and json.loads(out)[0]["count"] == 4000
    dest = tmp_path / "custom.csv"
    assert cli("export", str(dest), "--source", "user_custom")[0] == 0
    assert dest.read_text().splitlines()[1:] == ["new_one,meta,7,,,"]
    dest = tmp_path / "chars.json"
    assert cli("export", str(dest), "--category", "character")[0] == 0
    assert json.loads(dest.read_text()) == {"hatsune_miku": 120}
    code, _, err = cli("import", str(tmp_path / "missing.csv"))
    assert code == 1 and "no such file" in err


def test_load_dir_with_alias_file(cli, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    (big / "Artist.json").write_text('{"some_artist": 12}')
    aliases = tmp_path / "aliases.csv"
    aliases.write_text("antecedent_name,consequent_name,status\nsa,some_artist,active\n")
    code, out, _ = cli("load", str(big), "--aliases", str(aliases), "--json")
    assert code == 0 and json.loads(out)["imported"] == 1
    code, out, _ = cli("complete", "sa", "--json")
    assert [c["value"] for c in json.loads(out)] == ["some_artist"]


def test_deprecated_tags_with_a_replacement_wiki_url_and_official_flag(cli):
    code, out, _ = cli(
        "add",
        "longhair_old",
        "--replacement",
        "Long Hair",
        "--wiki-url",
        "https://danbooru.donmai.us/wiki_pages/long_hair",
        "--official",
        "--json",
    )
    e = json.loads(out)
    assert code == 0 and e["deprecated"] and e["replacement"] == "long_hair"  # the dictionary's own spelling
    assert e["official"] and e["wiki_url"] == "https://danbooru.donmai.us/wiki_pages/long_hair"
    code, out, _ = cli("search", "longhair_old", "--mode", "exact")
    assert "deprecated → long_hair" in out
    # the auto-tagger's mapping (AT-3) reads exactly these columns
    from sushitui.store import DictionaryTag

    row = DictionaryTag.get(DictionaryTag.norm == "longhair old")
    assert (row.deprecated, row.replacement) == (True, "long_hair")
    # edit: change the replacement, drop official, clear the URL, then un-deprecate
    code, out, _ = cli(
        "edit", "longhair_old", "--replacement", "short_hair", "--no-official", "--wiki-url", "", "--json"
    )
    e = json.loads(out)
    assert code == 0 and (e["replacement"], e["official"], e["wiki_url"], e["deprecated"]) == (
        "short_hair",
        False,
        None,
        True,
    )
    code, out, _ = cli("edit", "longhair_old", "--count", "5", "--json")  # unrelated edits keep it
    assert json.loads(out)["replacement"] == "short_hair"
    code, out, _ = cli("edit", "longhair_old", "--no-deprecated", "--json")
    e = json.loads(out)
    assert (e["deprecated"], e["replacement"]) == (False, None)


@pytest.mark.parametrize(
    "argv, words",
    [
        (("add", "t1", "--replacement", "no_such_tag"), "not in the dictionary"),
        (("add", "t1", "--replacement", "T1"), "its own replacement"),
        (("add", "t1", "--replacement", "long_hair", "--no-deprecated"), "only for deprecated tags"),
        (("add", "t1", "--replacement", "a,b"), "comma"),
        (("add", "t1", "--wiki-url", "danbooru wiki"), "http"),
        (("edit", "short_hair", "--replacement", "short hair"), "its own replacement"),
        (("edit", "short_hair", "--replacement", "old_one"), "deprecated itself; use 'long_hair'"),
        (("edit", "short_hair", "--wiki-url", "ftp://x"), "http"),
    ],
)
def test_bad_replacements_and_urls_are_refused_and_nothing_changes(cli, argv, words):
    assert cli("add", "old_one", "--replacement", "long_hair")[0] == 0
    code, _, err = cli(*argv)
    assert code == 2 and "sushitui: error: invalid tag" in err and words in err and "Traceback" not in err
    _, out, _ = cli("search", "t1", "--mode", "exact", "--json")
    assert json.loads(out) == []
    _, out, _ = cli("search", "short_hair", "--mode", "exact", "--json")
    (e,) = json.loads(out)
    assert (e["deprecated"], e["replacement"], e["wiki_url"]) == (False, None, None)
