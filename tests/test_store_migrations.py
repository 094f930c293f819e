"""Migrations are written out, and an upgraded database equals a fresh one.

``tests/data/v1.sqlite`` was made by the released schema-version-1 code, with real rows
(see tests/data/README.md). Upgrading it must keep every row and end with exactly the
schema a fresh database gets; and the Peewee models must describe that schema, so a model
changed without a migration fails here instead of making fresh and upgraded databases
quietly differ.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from peewee import SqliteDatabase, TextField

from sushitui.store import LATEST_VERSION, open_database
from sushitui.store.db import schema_version
from sushitui.store.migrations import MIGRATIONS
from sushitui.store.models import ALL_MODELS, Dataset, Item, ItemTag

V1_FILE = Path(__file__).parent / "data" / "v1.sqlite"
# tables of the migrations that no model maps: migrate()'s own bookkeeping and the raw-SQL
# stores behind group: counts (sushitui/store/group_index.py) and rare-combination pages
# (sushitui/store/tag_bitmaps.py)
TABLES_WITHOUT_MODEL = {"schema_migrations", "group_item", "group_item_state", "tag_bitmap"}


def _v1_copy(tmp_path: Path) -> Path:
    path = tmp_path / "v1.db"
    shutil.copyfile(V1_FILE, path)
    return path


def _tables(con: sqlite3.Connection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]


def _rows(path: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    try:
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in _tables(con)}
    finally:
        con.close()


def _normal_sql(sql: str | None) -> str | None:
    """Spelling aside: quotes, whitespace, case, IF NOT EXISTS."""
    if sql is None:
        return None  # an automatic index (PRIMARY KEY / UNIQUE): compared by name and structure
    sql = re.sub(r'["`\[\]]', "", sql)
    sql = re.sub(r"\s+", " ", sql).strip().lower()
    sql = re.sub(r"\s*([(),;])\s*", r"\1", sql)
    return sql.replace(" if not exists ", " ")


def _master(con: sqlite3.Connection) -> list[tuple]:
    rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'")
    return sorted((t, n, tbl, _normal_sql(sql)) for t, n, tbl, sql in rows)


def _structure(con: sqlite3.Connection, tables) -> dict[str, dict]:
    """Per table what the engine makes of its DDL: columns (type, NOT NULL, default, key),
    foreign keys, indexes with their columns, WITHOUT ROWID."""
    out = {}
    for t in sorted(tables):
        columns = [(c[1], c[2].upper(), c[3], c[4], c[5], c[6]) for c in con.execute(f'PRAGMA table_xinfo("{t}")')]
        fks = sorted((f[2], f[3], f[4], f[5], f[6]) for f in con.execute(f'PRAGMA foreign_key_list("{t}")'))
        indexes = {}
        for _seq, name, unique, origin, partial in con.execute(f'PRAGMA index_list("{t}")'):
            cols = tuple(r[2] for r in con.execute(f'PRAGMA index_info("{name}")'))
            # an automatic index's name is SQLite's numbering: key it by what it indexes
            key = name if origin == "c" else f"{origin}:{','.join(cols)}"
            indexes[key] = (bool(unique), origin, bool(partial), cols)
        sql = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone()[0]
        out[t] = {
            "columns": columns,
            "foreign_keys": fks,
            "indexes": indexes,
            "without_rowid": _normal_sql(sql).endswith("without rowid"),
        }
    return out


def _model_drift(migrated: sqlite3.Connection) -> list[str]:
    """How the tables the models create differ from the migrated database's; [] when
    they agree."""
    mem = SqliteDatabase(":memory:")
    with mem.bind_ctx(ALL_MODELS):
        mem.create_tables(ALL_MODELS)
    model_con = mem.connection()
    model_tables = set(_tables(model_con))
    migrated_tables = set(_tables(migrated)) - TABLES_WITHOUT_MODEL
    drift = [f"table {t}: a model, but no migration creates it" for t in sorted(model_tables - migrated_tables)]
    drift += [
        f"table {t}: created by a migration, but no model maps it" for t in sorted(migrated_tables - model_tables)
    ]
    want, have = (
        _structure(model_con, model_tables & migrated_tables),
        _structure(migrated, model_tables & migrated_tables),
    )
    for t in sorted(want):
        for part in ("columns", "foreign_keys", "indexes", "without_rowid"):
            if want[t][part] != have[t][part]:
                drift.append(f"table {t} {part}: models {want[t][part]!r} != migrated {have[t][part]!r}")
    mem.close()
    return drift


@pytest.fixture
def fresh(tmp_path):
    db = open_database(tmp_path / "fresh.db")
    db.close()
    return tmp_path / "fresh.db"


def test_the_checked_in_v1_database_is_schema_version_1_with_rows_in_every_table():
    con = sqlite3.connect(
        f"file:{V1_FILE}?mode=ro&immutable=1", uri=True
    )  # immutable: no -wal/-shm beside the checked-in file
    try:
        assert con.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 1
        empty = [t for t in _tables(con) if con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] == 0]
        assert empty == []
    finally:
        con.close()


def test_upgrading_the_v1_database_keeps_every_row(tmp_path):
    path = _v1_copy(tmp_path)
    before = _rows(path)
    db = open_database(path)
    try:
        assert schema_version(db) == LATEST_VERSION
    finally:
        db.close()
    after = _rows(path)
    for table, rows in before.items():
        if table == "schema_migrations":
            assert after[table][: len(rows)] == rows
            continue
        assert len(after[table]) == len(rows), table
        width = len(rows[0])  # columns a later migration adds come after v1's (ALTER TABLE ADD COLUMN)
        assert [row[:width] for row in after[table]] == rows, table
    assert len(list(tmp_path.glob("v1.db.v1-backup-*"))) == 1  # the v1 file was kept beside it


def test_an_upgraded_v1_database_works_with_its_rows(tmp_path):
    """Spot checks through the app's own functions: what a user finds after upgrading."""
    from sushitui.dataset.items import list_items
    from sushitui.tags import aliases, dictionary, groups
    from sushitui.tags.query import count_matches
    from sushitui.training.runs import get_run, items_used

    db = open_database(_v1_copy(tmp_path))
    try:
        ds = Dataset.get(Dataset.name == "cats")
        assert ds.total_items == 5
        names = {i.base_name for i in list_items(ds.id, limit=10)}
        assert names == {"cat_01", "cat_02", "dog_01", "fox_01", "p1"}
        cat = Item.get(Item.dataset == ds, Item.base_name == "cat_01")
        assert [t.tag for t in cat.tags.order_by(ItemTag.position)] == ["1girl", "cat ears", "long hair", "smile"]
        assert aliases.resolve("girl") == "1girl"
        assert sorted(groups.group_tags("Animals")) == ["cat ears", "dog", "fox"]
        # group: counts read the store migration 2 added, and the triggers keep it true
        assert count_matches(ds.id, "group:Animals") == 4
        groups.remove_tags("Animals", ["fox"])
        assert count_matches(ds.id, "group:Animals") == 3
        assert dictionary.get_tag("my_style").category == "meta"
        run = get_run("cats-v1")
        assert run.status == "completed" and items_used(run) == 4
        assert get_run("cats-v2").parent_id == run.id
    finally:
        db.close()


def test_an_upgraded_v1_database_has_exactly_the_schema_of_a_fresh_one(tmp_path, fresh):
    upgraded = _v1_copy(tmp_path)
    open_database(upgraded).close()
    a, b = sqlite3.connect(fresh), sqlite3.connect(upgraded)
    try:
        assert _master(b) == _master(a)
        assert _structure(b, _tables(b)) == _structure(a, _tables(a))
        assert {r[0] for r in a.execute("SELECT type FROM sqlite_master")} == {"table", "index", "trigger"}
    finally:
        a.close()
        b.close()


def test_the_models_agree_with_the_latest_migration(fresh):
    con = sqlite3.connect(fresh)
    try:
        assert _model_drift(con) == []
    finally:
        con.close()


def _add_column(monkeypatch):
    Dataset._meta.add_field("note", TextField(null=True), set_attribute=False)
    return lambda: Dataset._meta.remove_field("note")


def _allow_null(monkeypatch):
    monkeypatch.setattr(Item._meta.fields["base_name"], "null", True)
    return lambda: None


def _add_index(monkeypatch):
    monkeypatch.setattr(Item._meta, "indexes", [*Item._meta.indexes, (("dataset", "file_size"), False)])
    return lambda: None


@pytest.mark.parametrize(
    "change, expected",
    [(_add_column, "table dataset columns"), (_allow_null, "table item columns"), (_add_index, "table item indexes")],
    ids=["new column", "nullability", "new index"],
)
def test_a_model_changed_without_a_migration_fails_here_and_changes_no_fresh_database(
    tmp_path, monkeypatch, change, expected
):
    def model_tables(con):
        return {r for r in _master(con) if r[2] not in TABLES_WITHOUT_MODEL and r[0] != "trigger"}

    # what the migrations make while the models are unchanged (v1 plus later migrations)
    open_database(tmp_path / "unchanged.db").close()
    ref = sqlite3.connect(tmp_path / "unchanged.db")
    expected_tables = model_tables(ref)
    ref.close()
    undo = change(monkeypatch)
    try:
        path = tmp_path / "fresh.db"
        open_database(path).close()
        con = sqlite3.connect(path)
        try:
            # a fresh database is still exactly what the migrations say, whatever the models
            assert model_tables(con) == expected_tables
            drift = _model_drift(con)
        finally:
            con.close()
    finally:
        undo()
    assert any(d.startswith(expected) for d in drift), drift


# --- the same migrations on PostgreSQL -----------------------------------------------------

# PostgreSQL's column types by what they hold: the migrations widen INTEGER to BIGINT
# (SQLite's integers are 64-bit) and REAL to DOUBLE PRECISION, and keep booleans 0/1
# integers as on SQLite (sushitui.store.postgres), where Peewee would write BOOLEAN
_PG_FAMILY = {
    "integer": "int",
    "bigint": "int",
    "smallint": "int",
    "boolean": "int",
    "real": "float",
    "double precision": "float",
    "text": "text",
    "character varying": "text",
    "bytea": "bytes",
}


def _pg_structure(url: str) -> dict[str, dict]:
    import psycopg

    with psycopg.connect(url) as con:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
        out: dict[str, dict] = {}
        for t in tables:
            columns = sorted(
                (name, _PG_FAMILY[dtype], nullable)
                for name, dtype, nullable in con.execute(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = %s",
                    (t,),
                )
            )
            indexes = sorted(
                (unique, tuple(cols))
                for unique, cols in con.execute(
                    "SELECT i.indisunique, array_agg(a.attname ORDER BY k.n) FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indrelid "
                    "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n) "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                    "WHERE c.relname = %s GROUP BY i.indexrelid, i.indisunique",
                    (t,),
                )
            )
            fks = sorted(
                con.execute(
                    "SELECT kcu.column_name, ccu.table_name, ccu.column_name, rc.delete_rule "
                    "FROM information_schema.referential_constraints rc "
                    "JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name "
                    "JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = rc.constraint_name "
                    "JOIN information_schema.table_constraints tc ON tc.constraint_name = rc.constraint_name "
                    "WHERE tc.table_name = %s",
                    (t,),
                ).fetchall()
            )
            out[t] = {"columns": columns, "indexes": indexes, "foreign_keys": fks}
    return out


def test_on_postgresql_the_models_agree_with_the_same_migrations(pg_server, pg_url):
    from peewee import PostgresqlDatabase

    models_db = f"models_{pg_url.rsplit('_', 1)[1]}"
    pg_server.admin(f"CREATE DATABASE {models_db}")
    try:
        mem = PostgresqlDatabase(pg_server.url(models_db), prefer_psycopg3=True)
        rowid = {m: m._meta.without_rowid for m in ALL_MODELS}  # SQLite only: Peewee writes it anyway
        try:
            for m in ALL_MODELS:
                m._meta.without_rowid = False
            with mem.bind_ctx(ALL_MODELS):
                mem.create_tables(ALL_MODELS)
        finally:
            for m, value in rowid.items():
                m._meta.without_rowid = value
            mem.close()
        want = _pg_structure(pg_server.url(models_db))
        have = _pg_structure(pg_url)
    finally:
        pg_server.admin(f"DROP DATABASE {models_db} WITH (FORCE)")
    assert set(have) - set(want) == TABLES_WITHOUT_MODEL
    drift = [
        f"table {t} {part}: models {want[t][part]!r} != migrated {have[t][part]!r}"
        for t in sorted(want)
        for part in ("columns", "indexes", "foreign_keys")
        if want[t][part] != have[t][part]
    ]
    assert drift == []
    db = open_database(pg_url)
    try:
        assert schema_version(db) == LATEST_VERSION
        versions = [r[0] for r in db.execute_sql("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == sorted(m[0] for m in MIGRATIONS)  # the same numbered migrations as SQLite
    finally:
        db.close()
