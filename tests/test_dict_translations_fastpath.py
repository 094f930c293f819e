"""Translation files read by the fast path (issue 22, speed): a 150k-row file is read by one
pattern over the whole text, and only lines that pattern does not vouch for are read line
by line. These tests hold the two ways to the same answer: every row a user would see
imported, rejected (file, line, reason) or repaired is the same whichever way it was read."""

from __future__ import annotations

from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.tags import translations as tr

# Lines a real file carries, plain-looking enough that the fast path may take them.
LINES = [
    "cat_ears,猫耳|ネコミミ,ねこみみ|",  # alternatives, a reading for the first only
    "cat,猫|猫|ねこ,ねこ|ねこ|ねこ",  # a repeated alternative is kept once
    "cat_tail,猫の尻尾||しっぽ,",  # an empty alternative is dropped
    "long_hair,長髪|,",  # a trailing empty alternative too
    "animal_ears,獣耳 | けもみみ,",  # spaces around "|" are not part of the text
    "hair_ornament,髪飾り|123,",  # a number among alternatives: rejected, the rest kept
    "hatsune_miku,初音ミク|Hatsune Miku,",  # the tag itself among alternatives: dropped
    "fox_girl,Fox Girl,",  # English that is not the tag: kept
    "cat,CAT,",  # the tag itself: rejected
    "cat ears,猫耳,",  # a tag written with a space
    "cat_ears,猫\u3000耳,",  # an ideographic space folds to one space
    "cat_ears," + "猫" * 101 + ",",  # too long: rejected
    "cat_ears,猫耳," + "ね" * 101,  # a reading too long: the translation kept without it
    "cat_ears,猫耳|ネコ,ねこ",  # one reading for two alternatives: the first's
    "cat_ears,猫耳,#N/A",  # a spreadsheet error as the reading
    "cat_ears,+12,",  # a number: rejected
    "cat_ears,猫耳,ねこ,みみ",  # an unquoted comma: the translation kept whole
    "cat_ears,猫耳  ねこ,",  # inner whitespace folded
    "cat_ears, 猫耳 ,",  # padding trimmed
    "cat_ears",  # no translation at all
    "cat_ears,猫耳|#NAME?|ねこ",  # one bad alternative of three
    "Cat_Ears,ネコミミ|ねこみみ|猫みみ,ねこみみ|ねこみみ|ねこみみ",  # three readings for three
    "cat_ears,猫耳|ネコミミ,|ねこみみ",  # a reading for the second only
    "#compass,コンパス",  # a Danbooru tag that starts with '#'
    "cat_ears,猫\x07耳",  # a control character
    "cat_ears,猫\t耳",  # a tab is whitespace: folded
    "cat_ears,1girl",  # digits and letters: a text, not a number
    "cat_ears,ＣＡＴ ＥＡＲＳ",  # full-width Latin is kept as written
    "cat_ears,猫耳,ね  こ",  # a reading's whitespace folded
    "cat_ears,-,",  # a lone sign is not a number
]


def quoted(line: str) -> str:
    """The same fields, each quoted (what a spreadsheet writes): read line by line."""
    return ",".join(f'"{f}"' for f in line.split(","))


def parse(tmp_path, name: str, lines: list[str], **kw) -> tr.ParsedTranslations:
    f = tmp_path / name
    f.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return tr.parse_file(f, **kw)


def outcome(p: tr.ParsedTranslations) -> tuple:
    return (p.rows, [(x.where, x.tag, x.reason) for x in p.rejected], [(x.where, x.tag, x.reason) for x in p.repaired])


def test_plain_and_quoted_lines_give_the_same_rows_rejections_and_repairs(tmp_path):
    plain = parse(tmp_path, "t.csv", LINES)
    careful = parse(tmp_path, "t.csv", [quoted(line) for line in LINES])  # same file name: same 'where'
    assert outcome(plain) == outcome(careful)
    # and what that answer is, for the rows a user would look for
    rows = {line: (tag, texts, readings) for tag, texts, readings, line in plain.rows}
    assert rows[1] == ("cat_ears", ["猫耳", "ネコミミ"], ["ねこみみ", None])
    assert rows[2] == ("cat", ["猫", "ねこ"], ["ねこ", "ねこ"])
    assert rows[3] == ("cat_tail", ["猫の尻尾", "しっぽ"], [None, None])
    assert rows[5] == ("animal_ears", ["獣耳", "けもみみ"], [None, None])
    assert rows[6] == ("hair_ornament", ["髪飾り"], [None])
    assert rows[7] == ("hatsune_miku", ["初音ミク"], [None])
    assert rows[11] == ("cat_ears", ["猫 耳"], [None])
    assert rows[14] == ("cat_ears", ["猫耳", "ネコ"], ["ねこ", None])
    assert rows[17] == ("cat_ears", ["猫耳,ねこ,みみ"], [None])
    assert rows[23] == ("cat_ears", ["猫耳", "ネコミミ"], [None, "ねこみみ"])
    rejected = {(p.where, p.tag): p.reason for p in plain.rejected}
    assert "translation 2 of 2 is the number 123" in rejected[("t.csv line 6", "hair_ornament")]
    assert rejected[("t.csv line 9", "cat")] == "the translation is the tag itself"
    assert "101 characters long" in rejected[("t.csv line 12", "cat_ears")]
    assert "the translation is kept without it" in rejected[("t.csv line 13", "cat_ears")]
    assert "the translation is empty" in rejected[("t.csv line 20", "cat_ears")]
    assert "translation 2 of 3 is the spreadsheet error #NAME?" in rejected[("t.csv line 21", "cat_ears")]
    assert "control character" in rejected[("t.csv line 25", "cat_ears")]
    assert rows[26] == ("cat_ears", ["猫 耳"], [None])


def test_a_translation_of_only_separators_is_reported_not_dropped_silently(tmp_path):
    # "|" alone (or "||") leaves no translation: the row is rejected, with its line, like an empty cell
    p = parse(tmp_path, "zh.csv", ["cat_ears,猫耳", "cat,|", "cat_tail, | ,", "long_hair,长发"])
    assert [r[3] for r in p.rows] == [1, 4]
    assert [(x.where, x.tag, x.reason) for x in p.rejected] == [
        ("zh.csv line 2", "cat", "the translation is empty"),
        ("zh.csv line 3", "cat_tail", "the translation is empty"),
    ]


def test_a_large_file_mixing_good_and_damaged_lines_reports_each_damaged_line_where_it_is(tmp_path):
    lines = ["tag,translation,reading"]
    damaged = {}
    for i in range(2, 3002):
        if i % 250 == 0:
            lines.append(f"tag_{i},#VALUE!,")
            damaged[i] = "#VALUE!"
        elif i % 333 == 0:
            lines.append(f'tag_{i},"猫{i},')
            damaged[i] = "stray quote"
        elif i % 7 == 0:
            lines.append("")  # blank lines keep the numbering of the lines after them
        else:
            lines.append(f"tag_{i},猫{i}|ねこ{i},ねこ{i}")
    p = parse(tmp_path, "big.csv", lines, lang="ja")
    assert p.notes == ["big.csv line 1: header row skipped"]
    assert [(x.where, x.tag) for x in p.rejected] == [
        (f"big.csv line {i}", f"tag_{i}") for i, what in damaged.items() if what == "#VALUE!"
    ]
    assert [(x.where, x.tag) for x in p.repaired] == [
        (f"big.csv line {i}", f"tag_{i}") for i, what in damaged.items() if what == "stray quote"
    ]
    good = [i for i in range(2, 3002) if i not in damaged and i % 7]
    assert [r[3] for r in p.rows] == sorted(good + [i for i, w in damaged.items() if w == "stray quote"])
    row_of = {r[3]: r for r in p.rows}
    assert row_of[2] == ("tag_2", ["猫2", "ねこ2"], ["ねこ2", None], 2)
    assert row_of[333] == ("tag_333", ["猫333"], [None], 333)
