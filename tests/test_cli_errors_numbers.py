"""Issue 14 item 10: numbers too large for SQLite and JSON nested too deeply are usage
errors with a message, never a traceback (OverflowError / RecursionError)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from sushitui.cli import main

HUGE = "99999999999999999999"  # > 2**63 - 1


@pytest.fixture
def db_path(tmp_path, started_database):
    return started_database(tmp_path / "sushitui.db")  # these test commands, not a first start


@pytest.fixture
def cli(capsys, db_path):
    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(["--db", str(db_path), *args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def dataset(cli, tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(root / f"a{i}.png")
        (root / f"a{i}.txt").write_text("solo, smile", encoding="utf-8")
    assert cli("dataset", "add", "d", str(root))[0] == 0
    return root


@pytest.mark.parametrize(
    "argv, option",
    [
        (["items", "d", "--limit", HUGE], "--limit"),
        (["items", "d", "--offset", HUGE], "--offset"),
        (["items", "d", "--offset", "-1"], "--offset"),
        (["tag", "add", "d", "x", "--position", HUGE], "--position"),
        (["dataset", "edit", "d", "--max-depth", HUGE], "--max-depth"),
        (["dict", "add", "big_tag", "--count", HUGE], "--count"),
        (["dict", "edit", "solo", "--count", HUGE], "--count"),
        (["dict", "search", "a", "--limit", HUGE], "--limit"),
        (["dict", "stats", "--top", HUGE], "--top"),
        (["run", "create", "r", "--dataset", "d", "--epochs", HUGE], "--epochs"),
        (["export", "d", "/nonexistent-out", "--repeats", HUGE], "--repeats"),
        (["autotag", "d", "--item", HUGE], "--item"),
    ],
)
def test_integer_options_out_of_range_are_usage_errors(cli, dataset, argv, option):
    code, out, err = cli(*argv)
    assert code == 2, err
    assert "Traceback" not in err and "OverflowError" not in err
    assert f"argument {option}:" in err and "out of range" in err
    # the message names the allowed range
    assert "whole number" in err and ("≥" in err or " to " in err)


def test_integer_option_with_thousands_of_digits_is_a_usage_error(cli, dataset):
    code, _, err = cli("items", "d", "--limit", "9" * 5000)
    assert code == 2 and "argument --limit:" in err and "out of range" in err
    assert len(err) < 2000  # the number is not echoed whole


def test_items_ids_out_of_range_name_the_option(cli, dataset):
    code, _, err = cli("tag", "add", "d", "x", "--items", f"1,{HUGE}")
    assert code == 2 and "Traceback" not in err
    assert "--items" in err and "out of range" in err


def test_max_depth_names_its_allowed_range(cli, tmp_path, dataset):
    code, _, err = cli("dataset", "add", "e", str(dataset), "--max-depth", HUGE)
    assert code == 2 and "argument --max-depth:" in err and "from 0 to 4096" in err
    # an ordinary value still works, as before
    assert cli("dataset", "add", "e", str(dataset), "--max-depth", "2")[0] == 0


def test_run_item_with_an_id_beyond_sqlite_is_not_found(cli, dataset):
    code, _, err = cli("run", "item", HUGE)
    assert code == 1 and "Traceback" not in err and f"no item '{HUGE}'" in err


@pytest.mark.slow
def test_in_range_values_still_work(cli, dataset):
    code, out, _ = cli("items", "d", "--limit", "2", "--offset", "1", "--json")
    assert code == 0 and len(out.splitlines()) == 2
    code, out, _ = cli("dict", "add", "my_tag", "--count", str(2**63 - 1), "--json")
    assert code == 0 and json.loads(out)["count"] == 2**63 - 1


@pytest.mark.slow
def test_dictionary_csv_with_a_count_too_large_rejects_that_line_only(cli, tmp_path):
    csv_file = tmp_path / "tags.csv"
    csv_file.write_text(
        "tag,category,count\n"
        "fine_tag,general,10\n"
        f"huge_tag,general,{HUGE}\n"
        f"endless_tag,general,{'9' * 5000}\n"
        "other_tag,character,3\n",
        encoding="utf-8",
    )
    code, out, err = cli("dict", "import", str(csv_file), "--json")
    assert "Traceback" not in err
    report = json.loads(out)
    assert code == 3  # some rows rejected
    assert report["imported"] == 2
    rejected = {r["tag"]: r for r in report["rejected_rows"]}
    assert set(rejected) == {"huge_tag", "endless_tag"}
    assert "line 3" in rejected["huge_tag"]["where"] and "too large" in rejected["huge_tag"]["reason"]
    for tag, count in (("fine_tag", 10), ("other_tag", 3)):
        code, out, _ = cli("dict", "search", tag, "--mode", "exact", "--json")
        assert [(e["tag"], e["count"]) for e in json.loads(out)] == [(tag, count)]


@pytest.mark.slow
def test_tagcomplete_csv_with_a_count_too_large_rejects_that_line_only(cli, tmp_path):
    csv_file = tmp_path / "complete.csv"
    csv_file.write_text(f"good_tag,0,5,\nbad_tag,0,{HUGE},\n", encoding="utf-8")
    code, out, err = cli("dict", "import", str(csv_file), "--format", "tagcomplete", "--json")
    assert "Traceback" not in err and code == 3
    report = json.loads(out)
    assert report["imported"] == 1 and [r["tag"] for r in report["rejected_rows"]] == ["bad_tag"]


@pytest.mark.slow
def test_taglist_json_with_a_count_too_large_rejects_that_entry(cli, tmp_path):
    f = tmp_path / "General.json"
    f.write_text(json.dumps({"good_tag": 4, "bad_tag": 10**20}), encoding="utf-8")
    code, out, err = cli("dict", "import", str(f), "--json")
    assert "Traceback" not in err and code == 3
    assert [r["tag"] for r in json.loads(out)["rejected_rows"]] == ["bad_tag"]


def test_group_import_of_deeply_nested_json_is_a_clear_error(cli, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"G": ' + "[" * 5000 + "]" * 5000 + "}", encoding="utf-8")
    code, out, err = cli("group", "import", str(deep))
    assert code == 2
    assert "Traceback" not in err and "RecursionError" not in err
    assert f"{deep}: nested too deeply (limit 64)" in err


def test_group_import_of_a_real_tree_still_works(cli, tmp_path):
    tree = tmp_path / "tree.json"
    tree.write_text(
        json.dumps(
            {"MyBody": {"hair": {"color": ["red hair", "blue hair"], "len": ["long hair"]}}, "Brackets": ["[[[", "{{{"]}
        ),
        encoding="utf-8",
    )
    code, out, err = cli("group", "import", str(tree), "--json")
    assert code == 0, err
    assert "MyBody" in json.loads(out)["groups_created"]
    code, out, _ = cli("group", "tags", "MyBody", "--json")
    assert sorted(json.loads(out)) == ["blue hair", "long hair", "red hair"]
    # brackets inside tag names do not count as nesting
    code, out, _ = cli("group", "tags", "Brackets", "--json")
    assert sorted(json.loads(out)) == ["[[[", "{{{"]
