"""Tag groups (TAG-1) and aliases (TAG-2): defaults, editing, colours, imports, resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sushitui.store import TagGroup
from sushitui.tags import aliases, groups

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_new_database_gets_default_groups_with_spec_colours_and_shipped_tags(db):
    report = groups.ensure_default_groups()
    assert report is not None and not report.problems
    by_name = {g.name: g for g in groups.list_groups()}
    assert {n: by_name[n].color for n, _, _ in groups.DEFAULT_GROUPS} == {
        "Character": "#FF6B9D",
        "Copyright": "#4ECDC4",
        "Artist": "#FFE66D",
        "General": "#95E1D3",
        "Quality": "#A8E6CF",
        "Rating": "#FF6F69",
        "Meta": "#C7CEEA",
    }
    assert [g.name for g in groups.list_groups()][:7] == [n for n, _, _ in groups.DEFAULT_GROUPS]
    assert by_name["Quality"].tag_count > 10 and by_name["Clothes"].tag_count > 500
    colors = groups.group_colors()
    assert colors["masterpiece"] == "#A8E6CF"
    assert colors["highres"] == "#C7CEEA"
    assert colors["floating hair"] == by_name["Body"].color  # floating_hair in the file: stored by match key


def test_defaults_run_once_and_a_deleted_default_stays_deleted(db):
    assert groups.ensure_default_groups() is not None
    groups.remove_group("Artist")
    assert groups.ensure_default_groups() is None
    assert "Artist" not in [g.name for g in groups.list_groups()]


def test_group_editing(db):
    groups.ensure_default_groups(taglist=REPO / "nonexistent")  # defaults only
    info = groups.add_group("Hair", "#abc", "hair styles")
    assert info.color == "#AABBCC"
    with pytest.raises(groups.GroupError):
        groups.add_group("hair")  # names are case-insensitive
    with pytest.raises(groups.GroupError):
        groups.add_group("X", "red")
    added, rejected = groups.add_tags("hair", ["long_hair", "Long Hair", "short hair", "", "a,b"])
    assert added == 2 and rejected == ["", "a,b"]
    assert groups.group_tags("Hair") == ["long_hair", "short hair"]
    groups.rename_group("Hair", "Hairstyle")
    with pytest.raises(groups.GroupError):
        groups.rename_group("Hairstyle", "quality")
    assert groups.set_color("hairstyle", "00ff00") == "#00FF00"
    assert groups.group_colors()["long hair"] == "#00FF00"
    assert groups.remove_tags("Hairstyle", ["LONG_HAIR"]) == 1
    assert "long hair" not in groups.group_colors()
    assert groups.remove_group("Hairstyle") == 1
    with pytest.raises(groups.GroupError):
        groups.get_group("Hairstyle")


def test_first_group_in_order_wins_the_colour(db):
    groups.ensure_default_groups(taglist=REPO / "nonexistent")
    groups.add_tags("Quality", ["masterpiece"])
    groups.add_group("Late", "#000000")
    groups.add_tags("Late", ["masterpiece", "other"])
    colors = groups.group_colors()
    assert colors["masterpiece"] == "#A8E6CF" and colors["other"] == "#000000"
    assert groups.groups_of("Masterpiece") == ["Quality", "Late"]


def test_import_shapes_and_problems(db, tmp_path):
    f = tmp_path / "g.json"
    f.write_text(
        json.dumps(
            {
                "groups": [
                    {"name": "Eyes", "color": "#123456", "tags": ["blue eyes", "red_eyes", 5, "bad\x1btag"]},
                    {"color": "#000000"},
                ]
            }
        )
    )
    report = groups.import_groups(f)
    assert report.groups_created == ["Eyes"] and report.tags_added == 2
    assert len(report.problems) == 3  # the number, the control character, the nameless group
    report = groups.import_groups(
        {"Eyes": {"color": "#654321", "tags": ["green eyes", "blue eyes"]}, "Misc": ["a", "b"]}
    )
    assert report.groups_updated == ["Eyes"] and report.groups_created == ["Misc"]
    assert report.tags_added == 3 and report.tags_already == 1
    assert groups.get_group("eyes").color == "#654321"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(groups.GroupError, match="line 1"):
        groups.import_groups(bad)
    with pytest.raises(groups.GroupError, match="no such file"):
        groups.import_groups(tmp_path / "missing.json")


def test_import_nested_tree_with_refs(db, tmp_path):
    (tmp_path / "_data").mkdir()
    (tmp_path / "_data" / "names.txt").write_text("# comment\nhakurei_reimu\nkirisame_marisa\n")
    (tmp_path / "_data" / "prompts.txt").write_text("kaga \\(kancolle\\), kantai collection, 1girl\n")
    tree = {
        "characters": {
            "names": ["$ref: _data/names.txt"],
            "prompts": ["$ref: _data/prompts.txt"],
            "gone": ["$ref: _data/missing.txt"],
            "escape": ["$ref: ../../etc/passwd"],
        },
        "body": {"hair": {"length": ["long_hair"], "_data": ["short_hair"]}},
    }
    (tmp_path / "tree.json").write_text(json.dumps(tree))
    report = groups.import_groups(tmp_path / "tree.json")
    assert sorted(report.groups_created) == ["body", "characters"]
    assert groups.group_tags("characters") == ["hakurei_reimu", "kirisame_marisa"]
    assert groups.group_tags("body") == ["long_hair", "short_hair"]
    reasons = " | ".join(report.problems)
    assert "missing.txt does not exist" in reasons and "captions" in reasons and "outside" in reasons


@pytest.mark.slow
def test_import_the_real_jtreminio_tree(db, testdata):
    report = groups.import_groups(testdata / "tag-groups-jtreminio" / "tag_tree.json")
    assert len(report.groups_created) == 26
    assert report.tags_added > 8000
    # the two dangling references of the snapshot are reported, not fatal
    assert sum("does not exist" in p for p in report.problems) == 2
    assert "floating hair" in groups.group_colors()


# --- aliases -----------------------------------------------------------------------------


def test_alias_resolve_and_chains(db):
    assert aliases.resolve("girl") == "girl"
    aliases.add_alias("girl", "1girl")
    assert aliases.resolve("  Girl ") == "1girl"
    aliases.add_alias("lh", "long_hair")
    aliases.add_alias("long hair", "very long hair")  # long_hair (by key) → very long hair
    assert aliases.resolve("lh") == "very long hair"
    assert aliases.resolve_many(["girl", "1girl", "smile", "lh"]) == ["1girl", "smile", "very long hair"]
    aliases.add_alias("girl", "female")  # retarget
    assert aliases.resolve("girl") == "female"
    assert [(a.from_tag, a.to_tag) for a in aliases.list_aliases()] == [
        ("girl", "female"),
        ("lh", "long_hair"),
        ("long hair", "very long hair"),
    ]
    assert aliases.remove_alias("GIRL") is True
    assert aliases.remove_alias("girl") is False
    assert aliases.resolve("girl") == "girl"


def test_alias_errors(db):
    with pytest.raises(aliases.AliasError):
        aliases.add_alias("a", "A")
    with pytest.raises(aliases.AliasError):
        aliases.add_alias("", "x")
    with pytest.raises(aliases.AliasError):
        aliases.add_alias("a, b", "x")
    aliases.add_alias("a", "b")
    aliases.add_alias("b", "c")
    with pytest.raises(aliases.AliasError, match="cycle"):
        aliases.add_alias("c", "a")
    assert aliases.resolve("a") == "c"


def test_alias_cache_sees_changes_from_another_connection(db, db_path):
    import sqlite3

    assert aliases.resolve("cat") == "cat"
    other = sqlite3.connect(db_path)
    other.execute("INSERT INTO alias (from_tag, from_norm, to_tag, created_at) VALUES ('cat', 'cat', 'feline', 0)")
    other.commit()
    other.close()
    assert aliases.resolve("cat") == "feline"


@pytest.mark.slow
def test_groups_query_uses_group_members(db):
    from sushitui.store import Dataset, Item, ItemTag
    from sushitui.tags.query import matching_item_ids

    groups.ensure_default_groups()
    ds = Dataset.create(name="d", root_path="/x")
    a = Item.create(dataset=ds, base_name="a", group_key="a")
    b = Item.create(dataset=ds, base_name="b", group_key="b")
    ItemTag.insert_many(
        [(a.id, "Masterpiece", "masterpiece", 0, "main"), (b.id, "cat", "cat", 0, "main")],
        fields=[ItemTag.item, ItemTag.tag, ItemTag.norm, ItemTag.position, ItemTag.subtype],
    ).execute()
    assert matching_item_ids(ds.id, "group:quality") == [a.id]
    assert matching_item_ids(ds.id, "-group:Quality") == [b.id]
    assert TagGroup.select().count() >= 7
