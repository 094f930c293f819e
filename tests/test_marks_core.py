"""Stars, flags and crops: set on items, kept in the dataset's .sushitui/marks.json, found by
``rating:`` / ``flag:`` queries, and back after the index is rebuilt from the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sushitui.dataset.synthetic import png_bytes


def _folder(root: Path, names=("a", "b", "sub/c", "sub/d")) -> Path:
    for name in names:
        path = root / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(64, 48, seed=len(name) * 31 + ord(name[-1])))
        path.with_suffix(".txt").write_text(f"tag_{name[-1]}, common", encoding="utf-8")
    return root


@pytest.fixture
def ds(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    dataset, _ = add_dataset(DatasetSettings(name="pics", root_path=str(_folder(tmp_path / "pics"))))
    return dataset


def _ids(ds, query):
    from sushitui.tags.query import matching_item_ids

    return matching_item_ids(ds.id, query)


def _key_ids(ds):
    from sushitui.store import Item

    return {i.group_key: i.id for i in Item.select().where(Item.dataset == ds.id)}


def test_ratings_and_flags_are_found_by_queries(ds):
    from sushitui.dataset.marks import set_flag, set_rating

    ids = _key_ids(ds)
    assert set_rating([ids["a"], ids["sub/c"]], 4).changed == 2
    set_rating([ids["b"]], 2)
    set_flag([ids["b"], ids["sub/d"]], "exclude")
    set_flag([ids["sub/d"]], "needs_work")  # the spelling with "_" is the same flag
    assert sorted(_ids(ds, "rating:>=4")) == sorted([ids["a"], ids["sub/c"]])
    assert _ids(ds, "rating:2") == [ids["b"]]
    assert sorted(_ids(ds, "flag:exclude")) == sorted([ids["b"], ids["sub/d"]])
    assert _ids(ds, "flag:needs-work") == [ids["sub/d"]]
    assert sorted(_ids(ds, "-flag:exclude, tag_a | tag_c")) == sorted([ids["a"], ids["sub/c"]])
    assert sorted(_ids(ds, "flag:any")) == sorted([ids["b"], ids["sub/d"]])
    assert sorted(_ids(ds, "rating:0")) == sorted([ids["sub/d"]])
    set_flag([ids["b"]], "exclude", on=False)
    assert _ids(ds, "flag:exclude") == [ids["sub/d"]]


def test_a_bad_flag_or_rating_query_says_what_is_allowed(ds):
    from sushitui.tags.query import QueryError, parse

    with pytest.raises(QueryError, match="exclude, needs-work, reg"):
        parse("flag:nope")
    assert parse("rating:general").key == "rating:general"  # a tagger's rating tag stays a tag
    assert parse("rating: >= 4").field == "rating"


def test_marks_are_written_to_the_dataset_file(ds):
    from sushitui.dataset.marks import marks_path, set_crop, set_flag, set_rating

    ids = _key_ids(ds)
    set_rating([ids["sub/c"]], 5)
    set_flag([ids["sub/c"]], "reg")
    set_crop(ids["a"], (0, 0, 32, 32))
    doc = json.loads(marks_path(ds.root_path).read_text("utf-8"))
    assert doc["version"] == 1
    assert doc["items"] == {"a": {"crop": [0, 0, 32, 32]}, "sub/c": {"rating": 5, "flags": ["reg"]}}
    set_rating([ids["sub/c"]], 0)
    set_flag([ids["sub/c"]], "reg", on=False)
    assert "sub/c" not in json.loads(marks_path(ds.root_path).read_text("utf-8"))["items"]


def test_remove_and_add_the_same_folder_gets_every_mark_back(ds):
    from sushitui.dataset.marks import item_marks, set_crop, set_flag, set_rating
    from sushitui.dataset.registry import DatasetSettings, add_dataset, remove_dataset

    ids = _key_ids(ds)
    set_rating([ids["a"]], 3)
    set_flag([ids["sub/d"]], "exclude")
    set_crop(ids["sub/c"], (4, 4, 40, 40))
    root = ds.root_path
    remove_dataset("pics")
    again, report = add_dataset(DatasetSettings(name="pics again", root_path=root))
    ids = _key_ids(again)
    assert item_marks(ids["a"]).rating == 3
    assert item_marks(ids["sub/d"]).flags == {"exclude"}
    assert item_marks(ids["sub/c"]).crop == (4, 4, 40, 40)
    assert item_marks(ids["b"]).empty
    assert _ids(again, "flag:exclude") == [ids["sub/d"]]
    assert not [p for p in report.problems if "marks" in p.path]


def test_a_reindex_follows_the_file_edited_by_hand(ds):
    from sushitui.dataset.marks import item_marks, marks_path, set_rating
    from sushitui.dataset.registry import reindex

    ids = _key_ids(ds)
    set_rating([ids["a"]], 3)
    marks_path(ds.root_path).write_text(json.dumps({"version": 1, "items": {"b": {"rating": 1}}}), "utf-8")
    reindex("pics")
    assert item_marks(ids["a"]).empty
    assert item_marks(ids["b"]).rating == 1


def test_a_broken_marks_file_is_reported_and_never_overwritten(ds):
    from sushitui.dataset.marks import MarksError, item_marks, marks_path, set_rating
    from sushitui.dataset.registry import reindex

    ids = _key_ids(ds)
    set_rating([ids["a"]], 3)
    path = marks_path(ds.root_path)
    path.write_text('{"version": 1, "items": {', "utf-8")
    report = reindex("pics")
    assert [p for p in report.problems if "not valid JSON" in p.reason and str(path) in p.reason]
    assert item_marks(ids["a"]).rating == 3  # the index is left as it was
    with pytest.raises(MarksError, match="not valid JSON"):
        set_rating([ids["b"]], 2)
    assert path.read_text("utf-8") == '{"version": 1, "items": {'


def test_marks_of_an_item_that_left_come_back_when_it_returns(ds, tmp_path):
    from sushitui.dataset.marks import item_marks, set_rating
    from sushitui.dataset.registry import reindex

    ids = _key_ids(ds)
    set_rating([ids["b"]], 4)
    root = Path(ds.root_path)
    away = tmp_path / "away"
    away.mkdir()
    for f in ("b.png", "b.txt"):
        (root / f).rename(away / f)
    reindex("pics")
    assert "b" not in _key_ids(ds)
    for f in ("b.png", "b.txt"):
        (away / f).rename(root / f)
    reindex("pics")
    assert item_marks(_key_ids(ds)["b"]).rating == 4


def test_item_references_by_id_name_path_and_unknown(ds):
    from sushitui.dataset.marks import MarksError, resolve_items

    ids = _key_ids(ds)
    root = Path(ds.root_path)
    got = resolve_items(ds, [str(ids["a"]), "sub/c", "sub/d.png", str(root / "b.png"), "c"])
    assert got == [ids["a"], ids["sub/c"], ids["sub/d"], ids["b"]]
    with pytest.raises(MarksError, match="no item 'nope'"):
        resolve_items(ds, ["a", "nope"])


def test_rating_out_of_range_is_refused(ds):
    from sushitui.dataset.marks import MarksError, set_rating

    with pytest.raises(MarksError, match="0 to 5"):
        set_rating([_key_ids(ds)["a"]], 6)


def test_the_query_language_and_the_store_agree_on_the_flag_bits():
    from sushitui.store.models import ITEM_FLAGS
    from sushitui.tags import query

    assert query.ITEM_FLAGS == ITEM_FLAGS
