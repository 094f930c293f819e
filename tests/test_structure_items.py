"""The browser's page, the ids of a result and the export's caption kinds come from core
functions in ``sushitui.dataset.items`` (issue 15 §3): the TUI builds no query of its
own, and item detail, quick tagging and the browser walk the same ids in the same order."""

from __future__ import annotations

from pathlib import Path

import pytest

from sushitui.dataset.synthetic import png_bytes


@pytest.fixture
def dataset(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    root = tmp_path / "ds"
    root.mkdir()
    for i, name in enumerate("abc"):
        (root / f"{name}.png").write_bytes(png_bytes(8, 8 + i, i))
    (root / "a.txt").write_text("cat, dog, sky, tree, sun")
    (root / "b.txt").write_text("cat")
    (root / "b.caption").write_text("A photo of a cat.")
    (root / "c.caption").write_text("A photo of a dog\nsitting on a mat.")
    ds, _ = add_dataset(DatasetSettings("t", str(root)))
    return ds, root


def test_a_page_of_cards_has_the_first_tags_or_the_caption_text(dataset):
    from sushitui.dataset.items import page_cards

    ds, root = dataset
    cards = page_cards(ds.id, None, "name", False, 0, 10)
    assert [c.name for c in cards] == ["a", "b", "c"]
    a, b, c = cards
    assert a.tags == ["cat", "dog", "sky", "tree"] and a.tag_count == 5  # 4 read: 3 shown and "…"
    assert b.tags == ["cat"] and b.caption == ""
    assert c.tags == [] and c.caption == "A photo of a dog sitting on a mat."  # one line
    assert a.image_path == str(root / "a.png") and (a.width, a.height) == (8, 8) and c.height == 10
    assert a.problem is None and a.stamp


def test_pages_follow_the_sort_and_the_query(dataset):
    from sushitui.dataset.items import page_cards

    ds, _ = dataset
    assert [c.name for c in page_cards(ds.id, "", "name", False, 1, 1)] == ["b"]
    assert [c.name for c in page_cards(ds.id, None, "height", True, 0, 2)] == ["c", "b"]
    assert [c.name for c in page_cards(ds.id, "cat", "name", False, 0, 10)] == ["a", "b"]
    assert page_cards(ds.id, None, "name", False, 3, 10) == []


def test_result_ids_are_the_result_in_the_browsers_order(dataset):
    from sushitui.dataset.items import page_cards, result_ids

    ds, _ = dataset
    for query, sort, desc in (
        (None, "name", False),
        ("", "name", True),
        ("cat", "tags", True),
        ("-dog", "height", False),
    ):
        shown = [c.item_id for c in page_cards(ds.id, query, sort, desc, 0, 100)]
        assert result_ids(ds.id, query, sort, desc) == shown


def test_a_bad_query_is_a_user_error(dataset):
    from sushitui.dataset.items import ItemQueryError, page_cards, result_ids
    from sushitui.errors import UserError
    from sushitui.tags.query import QueryError

    ds, _ = dataset
    with pytest.raises(QueryError) as info:
        result_ids(ds.id, "width:>=abc")
    assert isinstance(info.value, UserError)
    with pytest.raises(ItemQueryError, match="unknown sort key 'colour'"):
        page_cards(ds.id, None, "colour", False, 0, 10)


def test_caption_kinds_name_the_subtypes_and_types_an_export_can_pick(dataset):
    from sushitui.dataset.items import caption_kinds

    ds, _ = dataset
    kinds = caption_kinds(ds.id)
    assert {"main", "caption"} <= kinds  # the unsuffixed .txt is "main"; .caption its own subtype
    assert "alt" not in kinds


def test_no_screen_imports_the_store(tmp_path):
    """The browser and the export dialog are off the import-linter's list of exceptions."""
    import tomllib

    repo = Path(__file__).resolve().parents[1]
    with (repo / "pyproject.toml").open("rb") as f:
        contracts = {c["id"]: c for c in tomllib.load(f)["tool"]["importlinter"]["contracts"]}
    ignored = " ".join(contracts["no-queries-in-tui"].get("ignore_imports", []))
    assert "browser" not in ignored and "export_dialog" not in ignored
