"""Copy a whole catalogue between backends: SQLite -> PostgreSQL and back (``sushitui db copy``).

Both ends are opened (and so migrated) to this sushitui's schema first, so they have the
same tables and columns. Tables go in foreign-key order, each in primary-key order (a
training run's parent comes before it), in batches, inside one transaction on the target:
a copy that fails half-way leaves the target as it was. PostgreSQL's id sequences are
moved past the copied ids, so the next row inserted there does not collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sushitui.store.db import StoreError, is_postgres, open_database
from sushitui.store.models import ALL_MODELS

BATCH = 5000

# tables only raw SQL writes (sushitui.store.group_index); after the tables they refer to
RAW_TABLES = ("group_item_state", "group_item")


class CopyError(StoreError):
    pass


@dataclass
class CopyReport:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    replaced: bool = False

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def table_order() -> list[str]:
    """Every table of the schema, each after the tables its foreign keys point to."""
    from peewee import sort_models  # type: ignore[attr-defined]

    return [m._meta.table_name for m in sort_models(ALL_MODELS)] + list(RAW_TABLES)


def _key_columns(db: Any, table: str) -> list[str]:
    for model in ALL_MODELS:
        if model._meta.table_name == table:
            return [f.column_name for f in model._meta.get_primary_keys()]
    return {"group_item_state": ["dataset_id", "group_id"], "group_item": ["dataset_id", "group_id", "item_id"]}[table]


def _columns(db: Any, table: str) -> list[str]:
    cursor = db.execute_sql(f'SELECT * FROM "{table}" LIMIT 0')
    return [d[0] for d in cursor.description]


def _count(db: Any, table: str) -> int:
    return int(db.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])


def describe(location: str) -> str:
    from sushitui.store.db import _safe_url, database_url

    url = database_url(location)
    return _safe_url(url) if url else location


def parse_location(text: str) -> str:
    """``sqlite:PATH``, a plain path, or a ``postgresql://`` URL -> what open_database takes."""
    if text.startswith("sqlite:"):
        text = text[len("sqlite:") :]
        if text.startswith("//"):
            text = text[2:]
    if not text:
        raise CopyError("an empty database location: give sqlite:PATH or postgresql://user@host/dbname")
    return text


def copy_catalogue(
    source: str,
    target: str,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every row of ``source`` into ``target`` (both as ``parse_location`` reads them)."""
    src_loc, dst_loc = parse_location(source), parse_location(target)
    report = CopyReport(describe(src_loc), describe(dst_loc), replaced=replace)
    if report.source == report.target:
        raise CopyError(f"--from and --to are the same database ({report.source}); name another target.")
    src = open_database(src_loc)
    try:
        dst = open_database(dst_loc)
        try:
            _copy(src, dst, report, replace, progress)
        finally:
            dst.close()
    finally:
        src.close()
    return report


def _copy(src: Any, dst: Any, report: CopyReport, replace: bool, progress) -> None:
    tables = table_order()
    with dst.atomic("IMMEDIATE"):
        filled = [t for t in tables if _count(dst, t) > 0]
        if filled and not replace:
            raise CopyError(
                f"{report.target} already holds a catalogue ({', '.join(filled[:4])}"
                f"{', ...' if len(filled) > 4 else ''} have rows); nothing was copied. "
                "Pass --replace to delete its rows first, or name an empty database."
            )
        for table in reversed(tables):
            dst.execute_sql(f'DELETE FROM "{table}"')
        for table in tables:
            columns = [c for c in _columns(src, table) if c in set(_columns(dst, table))]
            names = ", ".join(f'"{c}"' for c in columns)
            order = ", ".join(f'"{c}"' for c in _key_columns(src, table))
            insert = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
            cursor = src.execute_sql(f'SELECT {names} FROM "{table}" ORDER BY {order}')
            copied = 0
            while True:
                rows = cursor.fetchmany(BATCH)
                if not rows:
                    break
                dst.cursor().executemany(insert, [tuple(_value(v) for v in r) for r in rows])
                copied += len(rows)
                if progress is not None:
                    progress(table, copied)
            report.rows[table] = copied
        if is_postgres(dst):
            _reset_sequences(dst, tables)


def _value(v: Any) -> Any:
    # PostgreSQL's bytea comes back as memoryview; both drivers take bytes
    return bytes(v) if isinstance(v, memoryview) else v


def _reset_sequences(db: Any, tables: list[str]) -> None:
    for table in tables:
        if "id" not in _key_columns(db, table):
            continue
        db.execute_sql(
            'SELECT setval(pg_get_serial_sequence(%s, \'id\'), GREATEST((SELECT MAX("id") FROM "' + table + '"), 1))',
            (f'"{table}"',),
        )
