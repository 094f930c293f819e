"""The database: pragmas, migrations, clear errors for files that are not ours."""

import sqlite3

import pytest

from sushitui.store import LATEST_VERSION, SchemaTooNewError, StoreError, open_database
from sushitui.store.db import schema_version


def test_new_database_is_wal_with_foreign_keys_and_current_schema(db):
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert schema_version(db) == LATEST_VERSION
    assert {"dataset", "item", "caption", "item_tag", "dictionary_tag", "training_run"} <= set(db.get_tables())


def test_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my important notes\n")
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_database(path)
    assert path.read_text() == "my important notes\n"


def test_read_only_database_gives_clear_error(tmp_path, monkeypatch):
    import os

    path = tmp_path / "ro.db"
    open_database(path).close()
    real_access = os.access
    # CI runs as root, where permission bits do not bind: simulate what a user sees.
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    with pytest.raises(StoreError, match="read-only"):
        open_database(path)


def test_newer_schema_is_refused_without_change(tmp_path):
    path = tmp_path / "new.db"
    open_database(path).close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (LATEST_VERSION + 5,))
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNewError, match="Upgrade sushitui"):
        open_database(path)


def test_older_schema_is_migrated_with_a_backup(tmp_path, monkeypatch):
    from sushitui.store import db as dbmod

    path = tmp_path / "old.db"
    open_database(path).close()
    applied = []
    monkeypatch.setattr(
        dbmod,
        "MIGRATIONS",
        dbmod.MIGRATIONS
        + [(LATEST_VERSION + 1, "test column", lambda d: applied.append(d.execute_sql("CREATE TABLE t_extra (x)")))],
    )
    monkeypatch.setattr(dbmod, "LATEST_VERSION", LATEST_VERSION + 1)
    db = open_database(path)
    assert applied and schema_version(db) == LATEST_VERSION + 1
    backups = list(tmp_path.glob("old.db.v*-backup-*"))
    assert len(backups) == 1
    con = sqlite3.connect(backups[0])
    assert con.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == LATEST_VERSION


def test_a_version_1_database_from_before_scan_dir_and_app_setting_gets_them(tmp_path):
    """Pre-release databases ran migration 1 before scan_dir and app_setting were models;
    migration 2 creates them (and the group_item store), keeping the data."""
    from sushitui.store import Dataset

    path = tmp_path / "v1.db"
    open_database(path)
    Dataset.create(name="kept", root_path="/x")
    Dataset._meta.database.close()
    con = sqlite3.connect(path)
    con.executescript(
        "DROP TABLE scan_dir; DROP TABLE app_setting; DROP TABLE group_item; DROP TABLE group_item_state;"
        "DROP TRIGGER tag_group_member_ai; DROP TRIGGER tag_group_member_ad; DROP TRIGGER tag_group_member_au;"
        "DELETE FROM schema_migrations WHERE version > 1;"
    )
    con.commit()
    con.close()
    db = open_database(path)
    assert schema_version(db) == LATEST_VERSION >= 2
    assert {"scan_dir", "app_setting", "group_item", "group_item_state"} <= set(db.get_tables())
    triggers = {r[0] for r in db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"tag_group_member_ai", "tag_group_member_ad", "tag_group_member_au", "group_item_state_ad"} <= triggers
    assert db.execute_sql("SELECT name FROM dataset").fetchall() == [("kept",)]
    assert len(list(tmp_path.glob("v1.db.v1-backup-*"))) == 1
    from sushitui.tags.groups import ensure_default_groups

    assert ensure_default_groups() is not None  # app_setting is usable: the first-start import ran
