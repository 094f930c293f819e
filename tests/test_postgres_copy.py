"""``sushitui db copy``: a catalogue goes SQLite -> PostgreSQL -> SQLite and every table
comes back row for row; a filled target is refused unless --replace."""

from __future__ import annotations

import json
import sqlite3

from dict_helpers import make_dataset

from sushitui.cli import main as cli_main
from sushitui.store import open_database
from sushitui.store.copy import table_order


def _build_catalogue(path, tmp_path) -> None:
    """A catalogue with rows in the tables users fill: a scanned dataset (items, captions,
    tag rows, scan folders), a group with a stored group: answer, an alias, dictionary
    rows, a training run with usage, a tagger cache blob."""
    from sushitui import training
    from sushitui.store import Item, TaggerCache
    from sushitui.tags import aliases, dictionary, groups
    from sushitui.tags.query import count_matches

    db = open_database(path)
    try:
        ds = make_dataset(tmp_path / "ds", "cats", ["1girl, cat ears, smile", "cat ears, long hair", "dog, solo"])
        groups.add_group("Animals")
        groups.add_tags("Animals", ["cat ears", "dog"])
        assert count_matches(ds.id, "group:Animals") == 3  # builds the stored answer (group_item)
        aliases.add_alias("girl", "1girl")
        dictionary.add_tag("my_style", "meta", 3)
        training.create_run("lora1", ds.name)
        with training.open_run("lora1", db_path=str(path)) as run:
            ids = [i.id for i in Item.select(Item.id).order_by(Item.id)]
            run.record(ids[:2], 1, 0)
            run.record(ids[1:], 2, 10)
        TaggerCache.create(sha256="ab" * 32, model_key="m@1", scores=b"\x00\x01\xfe\xff" * 4)
    finally:
        db.close()


def _dump(path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    try:
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in table_order()}
    finally:
        con.close()


def test_round_trip_sqlite_postgres_sqlite_keeps_every_row(tmp_path, pg_url, capsys):
    src = tmp_path / "src.db"
    back = tmp_path / "back.db"
    _build_catalogue(src, tmp_path)
    before = _dump(src)
    assert all(before[t] for t in ("item", "caption", "item_tag", "group_item", "run_item_usage", "tagger_cache"))

    assert cli_main(["db", "copy", "--from", f"sqlite:{src}", "--to", pg_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"]["item"] == len(before["item"])
    assert report["total"] == sum(len(rows) for rows in before.values())
    assert cli_main(["db", "copy", "--from", pg_url, "--to", f"sqlite:{back}", "--json"]) == 0
    capsys.readouterr()
    assert _dump(back) == before

    # the copy is a working catalogue: a new row gets a fresh id (sequences moved past the copy)
    from sushitui.store import Dataset, Item
    from sushitui.tags.query import count_matches

    db = open_database(pg_url)
    try:
        ds = Dataset.get(Dataset.name == "cats")
        assert count_matches(ds.id, "cat ears") == 2
        assert count_matches(ds.id, "group:Animals") == 3
        new = Item.create(dataset=ds, base_name="new", group_key="new")
        assert new.id > max(row[0] for row in before["item"])
    finally:
        db.close()


def test_a_filled_target_is_refused_unless_replace(tmp_path, pg_url, capsys):
    src = tmp_path / "src.db"
    _build_catalogue(src, tmp_path)
    assert cli_main(["db", "copy", "--from", str(src), "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert "copied" in out and "item_tag" in out

    assert cli_main(["db", "copy", "--from", str(src), "--to", pg_url]) == 2
    err = capsys.readouterr().err
    assert "already holds a catalogue" in err and "--replace" in err

    assert cli_main(["db", "copy", "--from", str(src), "--to", pg_url, "--replace", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]["item"] == 3


def test_copy_to_itself_is_refused(tmp_path, capsys):
    src = tmp_path / "src.db"
    open_database(src).close()
    assert cli_main(["db", "copy", "--from", f"sqlite:{src}", "--to", str(src)]) == 2
    assert "same database" in capsys.readouterr().err


def test_an_unreachable_server_is_a_clear_error(tmp_path, capsys):
    url = "postgresql://nobody@127.0.0.1:1/none"
    assert cli_main(["db", "copy", "--from", str(tmp_path / "a.db"), "--to", url]) == 2
    err = capsys.readouterr().err
    assert "cannot open the database" in err and "server" in err and "Traceback" not in err
