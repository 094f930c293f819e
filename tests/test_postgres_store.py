"""The catalogue on PostgreSQL: opened by URL or SUSHITUI_DB, shared by two processes,
SQLite's GLOB and LIKE meaning the same there, a newer schema refused."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sushitui.store import LATEST_VERSION, SchemaTooNewError, StoreError, open_database

TEXT = st.text(alphabet="ab*?[]^-.\\(_%é", max_size=6)


@pytest.fixture
def pg_db(pg_url):
    db = open_database(pg_url)
    yield db
    db.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, pattern=TEXT)
# classes PostgreSQL's regex reads otherwise: a collating element, a reversed range, a
# non-ASCII letter, a ] first, a - at either end
@example(text="[", pattern="[[.]")
@example(text="a", pattern="[[-?]")
@example(text="é", pattern="[é]")
@example(text="]", pattern="[]a]")
@example(text="-", pattern="[a-]")
@example(text="b", pattern="[^-a]")
def test_glob_means_on_postgresql_what_it_means_on_sqlite(pg_db, text, pattern):
    lite = sqlite3.connect(":memory:")
    want = bool(lite.execute("SELECT ? GLOB ?", (text, pattern)).fetchone()[0])
    lite.close()
    assert bool(pg_db.execute_sql("SELECT ? GLOB ?", (text, pattern)).fetchone()[0]) is want


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="aAbB_%é", max_size=5), pattern=st.text(alphabet="aAbB_%", max_size=5))
def test_like_ignores_ascii_case_as_on_sqlite(pg_db, text, pattern):
    lite = sqlite3.connect(":memory:")
    want = bool(lite.execute("SELECT ? LIKE ?", (text, pattern)).fetchone()[0])
    lite.close()
    assert bool(pg_db.execute_sql("SELECT ? LIKE ?", (text, pattern)).fetchone()[0]) is want


def _cli(env_db: str, *argv: str) -> subprocess.CompletedProcess:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "SUSHITUI_DB": env_db, "PYTHONPATH": repo}
    return subprocess.run(
        [sys.executable, "-m", "sushitui", *argv], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_two_processes_share_one_catalogue_through_sushitui_db(pg_url, tmp_path):
    from sushitui.dataset.synthetic import png_bytes

    root = tmp_path / "shared"
    root.mkdir()
    for i in range(3):
        (root / f"img_{i}.png").write_bytes(png_bytes(8, 8, i + 1))
        (root / f"img_{i}.txt").write_text("1girl, smile" if i else "cat", encoding="utf-8")
    added = _cli(pg_url, "dataset", "add", "shared", str(root))
    assert added.returncode == 0, added.stderr
    # another process (another machine) sees and edits the same dataset
    tagged = _cli(pg_url, "tag", "add", "shared", "reviewed", "--query", "smile")
    assert tagged.returncode == 0, tagged.stderr
    listed = _cli(pg_url, "items", "shared", "--query", "reviewed", "--json")
    assert listed.returncode == 0, listed.stderr
    names = sorted(json.loads(line)["base_name"] for line in listed.stdout.splitlines() if line.strip())
    assert names == ["img_1", "img_2"]
    assert (root / "img_1.txt").read_text(encoding="utf-8").endswith("reviewed")  # the caption file is the truth


def test_a_newer_schema_is_refused_and_left_alone(pg_url):
    db = open_database(pg_url)
    db.execute_sql("INSERT INTO schema_migrations VALUES (%s, 'from the future', 0)", (LATEST_VERSION + 1,))
    db.close()
    with pytest.raises(SchemaTooNewError, match="Upgrade sushitui"):
        open_database(pg_url)


def test_a_missing_database_says_what_to_do(pg_server):
    with pytest.raises(StoreError, match="createdb") as info:
        open_database(pg_server.url("does_not_exist"))
    assert "Traceback" not in str(info.value)
