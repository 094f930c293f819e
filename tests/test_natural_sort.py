"""Names sort as a file manager sorts them (1, 2, 10), in the browser, `items --sort name`,
exports and the key that migration 4 fills for existing rows."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import zipfile
from pathlib import Path

import pytest

from sushitui.cli import main
from sushitui.dataset.synthetic import png_bytes
from sushitui.store.natural_key import natural_key, natural_sorted


def test_numbers_sort_by_value():
    assert natural_sorted(["10", "2", "1", "14", "3"]) == ["1", "2", "3", "10", "14"]
    assert natural_sorted(["img10b", "img2b", "img1b"]) == ["img1b", "img2b", "img10b"]
    assert natural_sorted(["v1.10", "v1.9", "v1.2"]) == ["v1.2", "v1.9", "v1.10"]
    # a number longer than any other still sorts by value, not by first digit
    assert natural_sorted(["x99999999999999999999", "x100000000000000000000", "x9"]) == [
        "x9",
        "x99999999999999999999",
        "x100000000000000000000",
    ]


def test_leading_zeros_are_the_same_number_and_the_name_breaks_the_tie():
    names = ["a1", "a01", "a001", "a2", "a010", "a10"]
    ordered = natural_sorted(names)
    assert ordered == ["a001", "a01", "a1", "a2", "a010", "a10"]
    assert natural_sorted(reversed(names)) == ordered  # the tie-break is the name, not input order
    assert natural_sorted(["img_0009", "img_0010", "img_0100"]) == ["img_0009", "img_0010", "img_0100"]


def test_case_is_folded_with_uppercase_first_among_equals():
    assert natural_sorted(["b", "B", "a", "A", "C"]) == ["A", "a", "B", "b", "C"]
    assert natural_sorted(["Zebra", "apple", "Mango"]) == ["apple", "Mango", "Zebra"]


def test_non_ascii_sorts_beside_its_base_letter_and_deterministically():
    assert natural_sorted(["zoo", "été", "ete", "eta", "Été"]) == ["eta", "ete", "Été", "été", "zoo"]
    assert natural_sorted(["straße", "strasse", "strb"]) == ["strasse", "straße", "strb"]
    # full-width digits are numbers too; other scripts keep a fixed order
    assert natural_sorted(["画像１０", "画像２", "画像1"]) == ["画像1", "画像２", "画像１０"]
    names = ["猫", "犬", "ねこ", "Ärger", "arg", "ångström", "z"]
    assert natural_sorted(names) == natural_sorted(list(reversed(names)))


def test_every_name_has_its_own_key_so_equal_names_never_swap():
    names = ["a1", "a01", "A1", "á1", "a 1", "a_1", "a-1", "a/1", "a1/", "a", "A"]
    keys = [natural_key(n) for n in names]
    assert len(set(keys)) == len(names)
    rnd = random.Random(3)
    for _ in range(20):
        shuffled = names[:]
        rnd.shuffle(shuffled)
        assert natural_sorted(shuffled) == natural_sorted(names)


def test_a_folder_sorts_by_its_own_name_first():
    assert natural_sorted(["s10/a", "s2/b", "s2/a", "s2", "s1 x/a"]) == ["s1 x/a", "s2", "s2/a", "s2/b", "s10/a"]


def test_the_frozen_migration_key_is_the_live_key():
    """Migration 4 filled existing rows with its own copy: a change to natural_key needs a
    migration that recomputes the column, and this fails until there is one."""
    from sushitui.store.migrations import _name_key_v4

    rnd = random.Random(1)
    alphabet = "aAzZ09_- ./éÉßｱ１猫\u0301"
    samples = ["", "1", "a01", "Straße/IMG_0010", "é", "ｶﾞ10"] + [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12))) for _ in range(500)
    ]
    assert [_name_key_v4(s) for s in samples] == [natural_key(s) for s in samples]


def _kohya_folder(root: Path, n: int = 14) -> Path:
    root.mkdir(parents=True)
    for i in range(1, n + 1):
        (root / f"{i}.png").write_bytes(png_bytes(8, 8, i))
        (root / f"{i}.txt").write_text(f"tag{i}\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_items_sort_name_lists_a_kohya_folder_1_to_14(db_path, tmp_path, capsys):
    root = _kohya_folder(tmp_path / "10_cat")
    assert main(["--db", str(db_path), "dataset", "add", "kohya", str(root)]) == 0
    capsys.readouterr()
    assert main(["--db", str(db_path), "items", "kohya", "--sort", "name", "--json"]) == 0
    images = [json.loads(line)["image"] for line in capsys.readouterr().out.splitlines()]
    assert images == [f"{i}.png" for i in range(1, 15)]
    assert main(["--db", str(db_path), "items", "kohya", "--sort", "name", "--desc", "--json"]) == 0
    images = [json.loads(line)["image"] for line in capsys.readouterr().out.splitlines()]
    assert images == [f"{i}.png" for i in range(14, 0, -1)]


def test_the_browser_pages_in_natural_order(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.tui.screens.browser import load_cards

    root = _kohya_folder(tmp_path / "ds")
    ds, _ = add_dataset(DatasetSettings("k", str(root)))
    first = load_cards(ds.id, str(root), "", "name", False, 0, 5)
    rest = load_cards(ds.id, str(root), "", "name", False, 5, 20)
    assert [c.name for c in first + rest] == [str(i) for i in range(1, 15)]
    # a query keeps the order
    assert [c.name for c in load_cards(ds.id, str(root), "tag1|tag2|tag10", "name", False, 0, 20)] == ["1", "2", "10"]


def test_the_name_sort_reads_the_index_without_sorting(db, tmp_path):
    from sushitui.dataset.items import select_items
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    root = _kohya_folder(tmp_path / "ds", 3)
    ds, _ = add_dataset(DatasetSettings("k", str(root)))
    sql, params = select_items(ds.id, None, "name").limit(50).sql()
    plan = " ".join(str(r[-1]) for r in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
    assert "item_dataset_id_name_key" in plan and "TEMP B-TREE" not in plan, plan


def test_export_lists_items_and_archive_entries_in_natural_order(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.export import ExportOptions, export_dataset

    root = _kohya_folder(tmp_path / "ds", 12)
    add_dataset(DatasetSettings("k", str(root)))
    report = export_dataset("k", tmp_path / "out", ExportOptions(format="kohya-json", link_mode="copy", zip=True))
    listing = zipfile.ZipFile(report.zip_path).namelist()
    pngs = [Path(n).stem for n in listing if n.endswith(".png")]
    assert pngs == [str(i) for i in range(1, 13)], listing
    meta = json.loads(zipfile.ZipFile(report.zip_path).read(next(n for n in listing if n.endswith(".json"))))
    assert [Path(k).stem for k in meta] == [str(i) for i in range(1, 13)]


def test_migration_4_fills_the_key_of_existing_rows(tmp_path):
    from sushitui.dataset.items import list_items
    from sushitui.store import Dataset, open_database

    path = tmp_path / "v1.db"
    shutil.copyfile(Path(__file__).parent / "data" / "v1.sqlite", path)
    con = sqlite3.connect(path)
    # names a text sort gets wrong, written as v1 code would have left them
    con.execute("UPDATE item SET base_name = 'cat_10', group_key = 'cat_10' WHERE group_key = 'cat_02'")
    con.execute("UPDATE item SET base_name = 'cat_9', group_key = 'cat_9' WHERE group_key = 'cat_01'")
    con.commit()
    con.close()
    db = open_database(path)
    try:
        rows = db.execute_sql("SELECT group_key, name_key FROM item").fetchall()
        assert rows and all(key == natural_key(gk) for gk, key in rows)
        ds = Dataset.get(Dataset.name == "cats")
        assert [i.group_key for i in list_items(ds.id)] == ["cat_9", "cat_10", "pair/p1", "sub/dog_01", "sub/fox_01"]
    finally:
        db.close()
