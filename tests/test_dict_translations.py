"""Tag translations (issue 22): real-shaped translation files (generated here: the licences
of public lists rarely allow copying them) with their damage, search and autocomplete by
translation, and the ``sushitui dict translations`` commands."""

from __future__ import annotations

import json

import pytest
from dict_helpers import add_many
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.tags import dictionary as d
from sushitui.tags import translations as tr
from sushitui.tags.autocomplete import Completer
from sushitui.tags.dictionary_formats import DictionaryFileError

DICTIONARY = [
    ("cat_ears", "general", 280_000, "nekomimi", "catears"),
    ("cat", "general", 80_000),
    ("animal_ears", "general", 900_000),
    ("long_hair", "general", 4_000_000),
    ("cat_tail", "general", 150_000),
    ("hatsune_miku", "character", 120_000),
    ("hair_ornament", "general", 1_200_000),
]


@pytest.fixture
def tags(db):
    add_many(DICTIONARY)
    return db


def write(path, text: str, *, bom: bool = False, crlf: bool = False, encoding: str = "utf-8"):
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


def ready() -> Completer:
    c = Completer()
    c.warm(wait=True)
    return c


def test_a_spreadsheet_export_with_bom_crlf_header_and_alternatives_imports(tags, tmp_path):
    f = write(
        tmp_path / "ja.csv",
        'tag,translation,reading\ncat_ears,猫耳|ネコミミ,ねこみみ|\ncat,猫,ねこ\nlong_hair,"長髪, ロングヘア",\n',
        bom=True,
        crlf=True,
    )
    rep = tr.import_file(f, "ja")
    assert (rep.rows, rep.tags, rep.translations, rep.rejected, rep.format) == (3, 3, 4, [], "csv")
    assert rep.notes == ["ja.csv line 1: header row skipped"]
    got = tr.for_norms(["cat ears", "cat", "long hair"])
    # the BOM is not part of the first tag, CR not part of the last column, "|" separates alternatives
    assert got == {
        "cat ears": {"ja": ["猫耳", "ネコミミ"]},
        "cat": {"ja": ["猫"]},
        "long hair": {"ja": ["長髪, ロングヘア"]},
    }
    # export writes what import reads back
    out = tmp_path / "back.csv"
    assert tr.export(out, "ja") == {"lang": "ja", "tags": 3, "translations": 4, "file": str(out)}
    tr.remove("ja")
    assert tr.for_norms(["cat ears"], ["ja"]) == {}
    assert tr.import_file(out, "ja").translations == 4
    assert tr.for_norms(["cat ears"])["cat ears"]["ja"] == ["猫耳", "ネコミミ"]


def test_every_damaged_row_is_reported_with_file_line_and_reason_and_the_rest_is_imported(tags, tmp_path):
    f = write(
        tmp_path / "zh.csv",
        "\n".join(
            [
                "cat_ears,猫耳",  # 1 fine
                "animal_ears,#NAME?",  # 2 spreadsheet error
                "#VALUE!,尾巴",  # 3 spreadsheet error as the tag
                "cat_tail,",  # 4 empty translation
                ",长发",  # 5 empty tag
                'long_hair,"长发',  # 6 stray quote: repaired, kept
                "fox_girl,狐娘",  # 7 not in the dictionary: kept, marked
                "hatsune_miku,初音未来|#N/A",  # 8 one bad alternative of two
                "cat,123",  # 9 a number is not a translation
                "hair_ornament,发饰",  # 10 fine (after the stray quote the file goes on)
            ]
        )
        + "\n",
        crlf=True,
    )
    rep = tr.import_file(f, "zh")
    rejected = {(p.where, p.tag): p.reason for p in rep.rejected}
    assert set(rejected) == {
        ("zh.csv line 2", "animal_ears"),
        ("zh.csv line 3", "#VALUE!"),
        ("zh.csv line 4", "cat_tail"),
        ("zh.csv line 5", ""),
        ("zh.csv line 8", "hatsune_miku"),
        ("zh.csv line 9", "cat"),
    }
    assert "#NAME?" in rejected[("zh.csv line 2", "animal_ears")]
    assert "#VALUE!" in rejected[("zh.csv line 3", "#VALUE!")]
    assert "empty" in rejected[("zh.csv line 4", "cat_tail")] and "empty" in rejected[("zh.csv line 5", "")]
    assert "#N/A" in rejected[("zh.csv line 8", "hatsune_miku")] and "number" in rejected[("zh.csv line 9", "cat")]
    assert [(p.where, p.tag) for p in rep.repaired] == [("zh.csv line 6", "long_hair")]
    assert [(p.where, p.tag) for p in rep.not_in_dictionary] == [("zh.csv line 7", "fox_girl")]
    got = tr.for_norms(["cat ears", "long hair", "fox girl", "hatsune miku", "hair ornament", "animal ears"])
    assert {k: v["zh"] for k, v in got.items()} == {
        "cat ears": ["猫耳"],
        "long hair": ["长发"],
        "fox girl": ["狐娘"],
        "hatsune miku": ["初音未来"],
        "hair ornament": ["发饰"],
    }
    assert tr.summary() == [{"lang": "zh", "translations": 5, "tags": 5, "not_in_dictionary": 1, "sources": ["zh.csv"]}]


def test_tagcomplete_three_column_file_aliases_and_an_e621_list_passed_as_danbooru(tags, tmp_path):
    # the extension's older layout: tag,category,translation; a row may name an alias
    f = write(tmp_path / "tc.csv", "cat_ears,0,猫耳\nnekomimi,0,ねこみみ\nhatsune_miku,4,初音ミク\n")
    rep = tr.import_file(f, "ja")
    assert rep.format == "tagcomplete" and rep.via_alias == 1 and rep.rejected == []
    assert tr.for_norms(["cat ears"])["cat ears"]["ja"] == ["猫耳", "ねこみみ"]  # the alias row joined its tag
    # an e621 translation list in the same layout: its codes give it away, nothing goes in
    e621 = write(tmp_path / "e621-ja.csv", "anthro,0,ケモノ\nhi_res,7,高解像度\nmammal,5,哺乳類\n")
    rep = tr.import_file(e621, "ja", fmt="tagcomplete")
    assert rep.translations == 0 and len(rep.rejected) == 3
    assert all("e621" in p.reason for p in rep.rejected)
    assert [p.where for p in rep.rejected] == ["e621-ja.csv line 1", "e621-ja.csv line 2", "e621-ja.csv line 3"]
    # a tag list (name,category,count,aliases) is not a translation file at all
    taglist = write(
        tmp_path / "e621.csv",
        'mammal,5,3437444,"mammals,mammalian"\nanthro,0,3381927,"anthromorph"\nhi_res,7,3116617,"highres"\n',
    )
    with pytest.raises(DictionaryFileError, match=r"e621 tag list.*not a translation file.*dict import"):
        tr.import_file(taglist, "ja")


@pytest.mark.slow
def test_the_real_e621_tag_list_is_refused_as_a_translation_file(tags, testdata):
    with pytest.raises(DictionaryFileError, match="e621 tag list"):
        tr.import_file(testdata / "tagcomplete" / "e621.csv", "ja")


def test_a_file_of_mostly_unknown_tags_is_kept_marked_and_questioned(tags, tmp_path):
    rows = "".join(f"furry_tag_{i},毛{i}\n" for i in range(30)) + "cat,猫\n"
    rep = tr.import_file(write(tmp_path / "other.csv", rows), "ja")
    assert rep.translations == 31 and len(rep.not_in_dictionary) == 30
    assert any("30 of 31 rows" in n and "e621" in n for n in rep.notes)


def test_on_conflict_skip_keeps_and_update_replaces(tags, tmp_path):
    tr.import_file(write(tmp_path / "a.csv", "cat_ears,猫耳\ncat,猫\n"), "ja")
    rep = tr.import_file(write(tmp_path / "b.csv", "cat_ears,ケモミミ\ncat_tail,猫の尻尾\n"), "ja", on_conflict="skip")
    assert [(p.tag, "skip" in p.reason) for p in rep.skipped] == [("cat_ears", True)]
    assert tr.lookup(["cat_ears", "cat_tail"], "ja") == {"cat ears": "猫耳", "cat tail": "猫の尻尾"}
    rep = tr.import_file(tmp_path / "b.csv", "ja", on_conflict="update")
    assert rep.replaced == 2
    assert tr.lookup(["cat_ears", "cat"], "ja") == {"cat ears": "ケモミミ", "cat": "猫"}  # cat untouched
    # languages are separate
    tr.import_file(write(tmp_path / "zh.csv", "cat_ears,猫耳朵\n"), "zh")
    assert tr.for_norms(["cat ears"]) == {"cat ears": {"ja": ["ケモミミ"], "zh": ["猫耳朵"]}}


def test_a_chinese_file_saved_as_gb18030_is_read_and_said_so(tags, tmp_path):
    f = write(tmp_path / "gbk.csv", "cat_ears,猫耳\nlong_hair,长发\n", encoding="gb18030")
    rep = tr.import_file(f, "zh")
    assert rep.encoding == "gb18030" and any("GB18030" in n for n in rep.notes)
    assert tr.lookup(["long_hair"], "zh") == {"long hair": "长发"}
    with pytest.raises(DictionaryFileError, match="not UTF-8"):
        tr.import_file(f, "de")  # no fallback encoding known for German


def test_language_codes_are_checked():
    assert tr.normalize_lang("zh_TW") == "zh-tw"
    with pytest.raises(tr.TranslationError, match="not a language code"):
        tr.normalize_lang("Japanese")


def test_autocomplete_offers_tags_by_translation_reading_and_kana(tags, tmp_path):
    tr.import_file(
        write(
            tmp_path / "ja.csv",
            "tag,translation,reading\ncat_ears,猫耳,ねこみみ\ncat,猫,ねこ\n"
            "cat_tail,猫の尻尾,ねこのしっぽ\nfox_girl,狐娘,きつねむすめ\n",
        ),
        "ja",
    )
    tr.import_file(write(tmp_path / "zh.csv", "cat_ears,猫耳朵\nlong_hair,长发\n"), "zh")
    c = ready()
    got = c.complete("猫")
    # by the tag's count: cat_ears 280k, cat 80k... cat_tail 150k
    assert [(x.tag, x.match) for x in got][:3] == [
        ("cat_ears", "translation"),
        ("cat_tail", "translation"),
        ("cat", "translation"),
    ]
    assert got[0].value == "cat_ears" and got[0].translation in ("猫耳", "猫耳朵")
    ja = c.complete("ねこ", lang="ja")  # the readings
    assert (
        [x.tag for x in ja] == ["cat_ears", "cat_tail", "cat"]
        and ja[0].translation == "猫耳"
        and ja[0].reading == "ねこみみ"
    )
    assert [x.tag for x in c.complete("ネコ", lang="ja")] == ["cat_ears", "cat_tail", "cat"]  # katakana finds hiragana
    assert [x.tag for x in c.complete("猫耳朵", lang="ja")] == []  # zh only
    assert [x.tag for x in c.complete("猫耳朵", lang="zh")] == ["cat_ears"]
    fox = c.complete("狐")  # a tag not in the dictionary is still offered, without a category
    assert [(x.tag, x.category, x.source) for x in fox] == [("fox_girl", None, "translations")]
    # typing English is unchanged, and shows the translation beside the tag
    hair = c.complete("long_h", lang="zh")
    assert [(x.tag, x.match, x.translation) for x in hair] == [("long_hair", "prefix", "长发")]
    # a removed language is gone from the next answer
    tr.remove("ja")
    assert [x.tag for x in ready().complete("ねこ")] == []


def test_dict_search_finds_tags_through_their_translation(tags, tmp_path):
    tr.import_file(write(tmp_path / "ja.csv", "cat_ears,猫耳,ねこみみ\ncat_tail,猫の尻尾\n"), "ja")
    assert [(e.tag, e.translations) for e in d.search("猫耳")] == [("cat_ears", {"ja": ["猫耳"]})]
    assert [e.tag for e in d.search("猫")] == ["cat_ears", "cat_tail"]
    assert [e.tag for e in d.search("ねこ", mode="prefix")] == ["cat_ears"]  # by reading
    assert [e.tag for e in d.search("猫", mode="exact")] == []
    assert d.count_matches(d.DictQuery("猫")) == 2
    # names still match as before, with the translation attached
    assert [(e.tag, e.translations.get("ja")) for e in d.search("cat_e")] == [("cat_ears", ["猫耳"])]
    assert [e.tag for e in d.search("猫", lang="zh")] == []


# --- the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    from sushitui.cli import main

    taglist = tmp_path / "taglist"
    taglist.mkdir()
    (taglist / "General.json").write_text('{"cat_ears": 280000, "cat": 80000, "animal_ears": 900000}')
    (taglist / "aliases.json").write_text('{"cat_ears": ["nekomimi"]}')
    monkeypatch.setattr("sushitui.config.taglist_dir", lambda: taglist)
    db = str(tmp_path / "cli.db")

    def run(*argv):
        code = main(["--db", db, "dict", *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_cli_import_list_search_complete_export_remove(cli, tmp_path):
    f = write(
        tmp_path / "ja.csv",
        "tag,translation,reading\ncat_ears,猫耳|ネコミミ,ねこみみ\ncat,猫,ねこ\nanimal_ears,#NAME?\nfox_girl,狐娘\n",
        bom=True,
        crlf=True,
    )
    code, out, _ = cli("translations", "import", str(f), "--lang", "ja")
    assert code == 3  # some rows rejected
    assert "4 translations for 3 tags" in out
    assert "rejected: ja.csv line 4: 'animal_ears': the translation is the spreadsheet error #NAME?" in out
    assert "ja.csv line 5: 'fox_girl': not in the dictionary: kept and marked" in out
    code, out, _ = cli("translations", "list", "--json")
    assert json.loads(out)["languages"] == [
        {"lang": "ja", "translations": 4, "tags": 3, "not_in_dictionary": 1, "sources": ["ja.csv"]}
    ]
    code, out, _ = cli("search", "猫耳")
    assert code == 0 and out.startswith("cat_ears") and "[ja: 猫耳 | ネコミミ]" in out
    code, out, _ = cli("complete", "ねこ", "--lang", "ja", "--json")
    got = json.loads(out)
    assert [(c["tag"], c["value"], c["match"], c["translation"]) for c in got] == [
        ("cat_ears", "cat_ears", "translation", "猫耳"),
        ("cat", "cat", "translation", "猫"),
    ]
    code, out, _ = cli("translations", "export", str(tmp_path / "out.csv"), "--lang", "ja")
    assert code == 0 and (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[0] == "tag,translation,reading"
    code, out, _ = cli("translations", "show", "ja", "--json")
    assert json.loads(out) == {"setting": "ja", "shown": "ja"}
    code, out, _ = cli("translations", "remove", "--lang", "ja")
    assert code == 0 and "removed 4 ja translations" in out
    code, out, _ = cli("search", "猫耳")
    assert "no tags found" in out
    code, _out, err = cli("translations", "import", str(f), "--lang", "Japanese")
    assert code == 2 and "not a language code" in err
    code, _out, err = cli("translations", "import", str(tmp_path / "missing.csv"), "--lang", "ja")
    assert code == 1 and "no such file" in err
