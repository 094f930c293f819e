"""PostgreSQL as the catalogue (``--db postgresql://user@host/dbname``), through psycopg 3.

The Peewee models run unchanged: Peewee writes PostgreSQL's SQL for them. Raw SQL in
sushitui is written for SQLite (the default backend, whose speed the benchmarks
measure), so the PostgreSQL database rewrites the few SQLite spellings it uses into
what means the same there (``translate``): ``?``/``?N`` placeholders, ``INSERT OR
IGNORE``/``OR REPLACE`` (an upsert on the table's key), ``GLOB`` (an operator over a
function the migrations create), ``json_each``/``json_extract``/``group_concat``
(functions the migrations create with SQLite's meaning), ``instr``, ``char(10)``,
``PRAGMA`` (``data_version`` becomes a counter that moves whenever any client commits;
the others have no meaning here and read 0) and the index lookups in ``sqlite_master``.
Booleans stay 0/1 integers on both backends, so raw SQL comparing them with 0 or 1
means the same.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from peewee import OnConflict, PostgresqlDatabase

# SQLite's transaction kinds; PostgreSQL takes row locks as it writes instead
_SQLITE_LOCKS = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}

# the advisory lock a SQLite-style write transaction (BEGIN IMMEDIATE) holds
WRITE_LOCK = 0x5355_5348_0000_0001

# ``#~#``: a text matches a SQLite GLOB pattern (the function is created by migration 1)
GLOB_OPERATOR = "OPERATOR(public.#~#)"

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?(\d*)|%s|%|[^'\"?%]+", re.S)


def _placeholders(sql: str, params: Sequence[Any] | None) -> tuple[str, Sequence[Any] | None]:
    """``?`` and ``?N`` become ``%s`` (numbered ones repeat their parameter); a literal
    ``%`` is doubled, as psycopg wants once there are parameters. Peewee's own ``%s`` in
    the same statement (raw SQL embedded with ``SQL(...)``) stay placeholders."""
    out: list[str] = []
    order: list[int] = []
    numbered = False
    plain = 0
    for m in _TOKEN.finditer(sql):
        text = m.group(0)
        if text.startswith("?"):
            if m.group(1):
                numbered = True
                order.append(int(m.group(1)) - 1)
            else:
                order.append(plain)
                plain += 1
            out.append("%s")
        elif text[0] in "'\"" and params is not None:
            out.append(text.replace("%", "%%"))  # psycopg reads % inside literals too
        elif text == "%s":  # Peewee's placeholder, in SQL that embeds raw SQLite SQL
            order.append(plain)
            plain += 1
            out.append("%s")
        elif text == "%":
            out.append("%" if params is None else "%%")
        else:
            out.append(text)
    if params is None:
        return "".join(out), None
    if isinstance(params, dict):
        return "".join(out), params
    params = list(params)
    if numbered:
        params = [params[i] for i in order]
    return "".join(out), params


_NAMED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|(?<![\w:]):(\w+)|%|[^'\":%]+|:", re.S)


def _named(sql: str) -> str:
    """sqlite3's ``:name`` parameters as psycopg's ``%(name)s``."""
    out = []
    for m in _NAMED.finditer(sql):
        text = m.group(0)
        if m.group(1):
            out.append(f"%({m.group(1)})s")
        elif text == "%" or text[0] in "'\"":
            out.append(text.replace("%", "%%"))
        else:
            out.append(text)
    return "".join(out)


def _upsert_keys() -> dict[str, list[str]]:
    from sushitui.store.models import ALL_MODELS

    keys: dict[str, list[str]] = {
        "group_item": ["dataset_id", "group_id", "item_id"],
        "group_item_state": ["dataset_id", "group_id"],
    }
    for model in ALL_MODELS:
        meta = model._meta
        pk: Any = meta.primary_key
        fields = pk.field_names if hasattr(pk, "field_names") else [pk.name]
        keys[meta.table_name] = [meta.fields[f].column_name for f in fields]
    return keys


_KEYS: dict[str, list[str]] | None = None
_FLAGS: re.Pattern[str] | None = None


def _negated_flags() -> re.Pattern[str]:
    """``NOT "t1"."announced"`` (Peewee's ``~Job.announced``) over a 0/1 column."""
    global _FLAGS
    if _FLAGS is None:
        from peewee import BooleanField

        from sushitui.store.models import ALL_MODELS

        names = sorted(
            {f.column_name for m in ALL_MODELS for f in m._meta.sorted_fields if isinstance(f, BooleanField)}
        )
        _FLAGS = re.compile(r'\bNOT\s+("\w+"\.)?"(' + "|".join(names) + r')"(?!\s*(?:=|<>|!=|IS|IN)\b)')
    return _FLAGS


_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+\"?(\w+)\"?\s*\(([^)]*)\)", re.I | re.S)


def _insert_or(sql: str) -> str:
    global _KEYS
    m = _INSERT_OR.match(sql)
    if m is None:
        return sql
    kind, table, cols = m.group(1).upper(), m.group(2), m.group(3)
    head = f'INSERT INTO "{table}" ({cols})'
    body = sql[m.end() :].rstrip().rstrip(";")
    if kind == "IGNORE":
        return f"{head}{body} ON CONFLICT DO NOTHING"
    if _KEYS is None:
        _KEYS = _upsert_keys()
    key = _KEYS.get(table)
    if key is None:
        raise ValueError(f"INSERT OR REPLACE on {table}: its key is not known to sushitui.store.postgres")
    names = [c.strip().strip('"') for c in cols.split(",")]
    rest = [c for c in names if c not in key]
    keys = ", ".join(f'"{c}"' for c in key)
    if not rest:
        return f"{head}{body} ON CONFLICT ({keys}) DO NOTHING"
    sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in rest)
    return f"{head}{body} ON CONFLICT ({keys}) DO UPDATE SET {sets}"


_PRAGMA = re.compile(r"^\s*PRAGMA\s+(\w+)\s*(=.*)?$", re.I | re.S)
_MASTER_INDEX_BY_NAME = re.compile(
    r"SELECT\s+sql\s+FROM\s+sqlite_master\s+WHERE\s+type\s*=\s*'index'\s+AND\s+name\s*=\s*\?", re.I
)
_MASTER_INDEXES_OF = re.compile(
    r"SELECT\s+name\s*(,\s*sql\s*)?FROM\s+sqlite_master\s+WHERE\s+type\s*=\s*'index'\s+AND\s+tbl_name\s*=\s*'(\w+)'"
    r"(\s+AND\s+sql\s+IS\s+NOT\s+NULL)?\s*(ORDER\s+BY\s+name)?\s*$",
    re.I,
)
_FUNCTIONS = (
    (re.compile(r"\bjson_each\(", re.I), "sushitui_json_each("),
    (re.compile(r"\bjson_extract\(", re.I), "sushitui_json_extract("),
    (re.compile(r"\binstr\(", re.I), "strpos("),
    # a comparison as a value (SQLite's 0/1) in a select list
    (re.compile(r",\s*\((\w+(?:\.\w+)?\s+IS\s+(?:NOT\s+)?NULL)\)\s*,", re.I), r", (\1)::int,"),
    # the length in bytes
    (re.compile(r"\blength\(\s*CAST\(\s*([\w.]+)\s+AS\s+BLOB\s*\)\s*\)", re.I), r"octet_length(\1)"),
    # planner hints SQLite has and PostgreSQL does without
    (re.compile(r"\s+(?:INDEXED\s+BY\s+\w+|NOT\s+INDEXED)\b", re.I), ""),
    # substr(x, -n): the last n characters
    (re.compile(r"\bsubstr\((\w+),\s*-(%s)\)", re.I), r"right(\1, \2)"),
    (re.compile(r"\bchar\((\d+)\)", re.I), r"chr(\1)"),
    (re.compile(r"\sGLOB\s", re.I), f" {GLOB_OPERATOR} "),
    # SQLite's LIKE ignores (ASCII) case; PostgreSQL's does not
    (re.compile(r"(?<![\w\"])LIKE\b", re.I), "ILIKE"),
)
# data_version: SQLite's counter of commits by other connections. The next transaction
# id moves whenever anyone commits a write; a reader that also sees its own commits only
# reloads once more.
DATA_VERSION_SQL = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"


def translate(sql: str, params: Sequence[Any] | None = None) -> tuple[str, Sequence[Any] | None]:
    """SQLite-flavoured SQL as PostgreSQL means it (see the module's doc)."""
    pragma = _PRAGMA.match(sql)
    if pragma:
        if pragma.group(2) is None and pragma.group(1).lower() == "data_version":
            return DATA_VERSION_SQL, None
        return "SELECT 0", None
    if "sqlite_master" in sql:
        if _MASTER_INDEX_BY_NAME.search(sql):
            return "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s", params
        m = _MASTER_INDEXES_OF.search(sql)
        if m:
            columns = "indexname, indexdef" if m.group(1) else "indexname"
            return (
                f"SELECT {columns} FROM pg_indexes WHERE schemaname = current_schema() "
                f"AND tablename = '{m.group(2)}' AND indexname NOT LIKE '%\\_pkey'"
                + (" ORDER BY indexname" if m.group(4) else ""),
                None,
            )
    if isinstance(params, dict):
        sql = _named(sql)
    elif "?" in sql:
        sql, params = _placeholders(sql, params)
    if sql.lstrip()[:6].upper() == "INSERT" and re.match(r"\s*INSERT\s+OR\s", sql, re.I):
        sql = _insert_or(sql)
    for pattern, repl in _FUNCTIONS:
        sql = pattern.sub(repl, sql)
    if "group_concat(" in sql.lower():
        sql = _group_concat(sql)
    if re.search(r"\b(?:MAX|MIN)\(", sql, re.I):
        sql = _scalar_min_max(sql)
    if "NOT " in sql:
        sql = _negated_flags().sub(r'NOT (\1"\2" <> 0)', sql)
    if re.search(r"\b(?:FROM|JOIN)\s*\(", sql, re.I):
        sql = _alias_subqueries(sql)
    return sql, params


_NOT_AN_ALIAS = {
    "",
    "GROUP",
    "WHERE",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "ON",
    "LEFT",
    "INNER",
    "CROSS",
    "HAVING",
    "WINDOW",
    "RETURNING",
    ")",
    ",",
    ";",
}


def _closing(sql: str, start: int) -> int:
    """The index after the parenthesis that closes the one before ``start``."""
    depth, i = 1, start
    while depth and i < len(sql):
        c = sql[i]
        if c in "'\"":
            i = sql.index(c, i + 1)
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        i += 1
    return i


def _alias_subqueries(sql: str) -> str:
    """PostgreSQL wants a name for every subquery in FROM; SQLite does not."""
    n = 0
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\b(?:FROM|JOIN)\s*\(\s*(?=SELECT\b|VALUES\b|WITH\b)", sql, re.I):
        if m.start() < pos:
            continue
        end = _closing(sql, m.end())
        after = re.match(r"\s*(\w+|\S?)", sql[end:])
        word = after.group(1).upper() if after else ""
        out.append(sql[pos : m.end()] + _alias_subqueries(sql[m.end() : end - 1]) + ")")
        if word in _NOT_AN_ALIAS:
            n += 1
            out.append(f" AS _sq{n}")
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def _scalar_min_max(sql: str) -> str:
    """SQLite's MAX(a, b) / MIN(a, b) of several arguments: GREATEST / LEAST."""
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\b(MAX|MIN)\(", sql, re.I):
        if m.start() < pos:
            continue
        end = _closing(sql, m.end())
        inner = _scalar_min_max(sql[m.end() : end - 1])
        name = m.group(1)
        if _top_level_comma(inner):
            name = "GREATEST" if name.upper() == "MAX" else "LEAST"
        out.append(f"{sql[pos : m.start()]}{name}({inner})")
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def _top_level_comma(text: str) -> bool:
    depth = 0
    quote = ""
    for c in text:
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            return True
    return False


def _group_concat(sql: str) -> str:
    """``group_concat(x[, sep])`` as ``string_agg((x)::text, sep)`` (sep ',' by default)."""
    out, pos = [], 0
    for m in re.finditer(r"\bgroup_concat\(", sql, re.I):
        if m.start() < pos:
            continue
        depth, i, comma = 1, m.end(), None
        while depth and i < len(sql):
            c = sql[i]
            if c == "'":
                i = sql.index("'", i + 1)
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 1 and comma is None:
                comma = i
            i += 1
        inner = sql[m.end() : i - 1]
        if comma is None:
            arg, sep = inner, "','"
        else:
            arg, sep = sql[m.end() : comma], sql[comma + 1 : i - 1]
        out.append(sql[pos : m.start()] + f"string_agg(({arg})::text, {sep.strip()})")
        pos = i
    out.append(sql[pos:])
    return "".join(out)


_INSERT_WITH_ID = re.compile(r'\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+"?(\w+)"?\s*\(\s*"?id"?\s*[,)]', re.I)


class _Cursor:
    """A psycopg cursor that takes SQLite-flavoured SQL."""

    def __init__(self, cursor: Any):
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        translated, params = translate(sql, params)
        self._cursor.execute(translated, params or None)
        self._follow_ids(sql)
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> _Cursor:
        rows = list(rows)
        if not rows:
            return self
        translated, _ = translate(sql, rows[0])
        self._cursor.executemany(translated, [translate(sql, r)[1] for r in rows])
        self._follow_ids(sql)
        return self

    def _follow_ids(self, sql: str) -> None:
        """Raw SQL that chose the ids itself (the scanner numbers rows from MAX(id) + 1, as
        SQLite's INTEGER PRIMARY KEY allows): move the table's id sequence past them, so
        the next row the models insert does not collide."""
        m = _INSERT_WITH_ID.match(sql)
        if m is None:
            return
        table = m.group(1)
        # on a cursor of its own: this one still holds the INSERT's RETURNING rows
        self._cursor.connection.cursor().execute(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
            f'GREATEST((SELECT MAX("id") FROM "{table}"), 1))'
        )

    def __iter__(self):
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _Connection:
    """The raw connection as code written for sqlite3 uses it (execute, executemany)."""

    def __init__(self, conn: Any):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        return _Cursor(self._conn.cursor()).execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> _Cursor:
        return _Cursor(self._conn.cursor()).executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _bool_as_int(conn: Any) -> None:
    """Booleans go to PostgreSQL as 0/1 integers, as SQLite stores them."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format
    from psycopg.types import TypeInfo  # noqa: F401  (psycopg.types loads the int adapters)

    class BoolAsInt(Dumper):
        format = Format.TEXT
        oid = 20  # int8

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    conn.adapters.register_dumper(bool, BoolAsInt)


class PostgresStore(PostgresqlDatabase):
    """The catalogue on PostgreSQL; see the module's doc."""

    def __init__(self, url: str, **kwargs: Any):
        super().__init__(url, prefer_psycopg3=True, **kwargs)
        self.url = url

    def _connect(self) -> Any:
        conn = super()._connect()  # type: ignore[misc]
        _bool_as_int(conn)
        return conn

    def begin(self, isolation_level: Any = None) -> None:
        lock = isinstance(isolation_level, str) and isolation_level.upper() in _SQLITE_LOCKS
        super().begin(None if lock else isolation_level)
        if lock and isolation_level.upper() != "DEFERRED":
            # BEGIN IMMEDIATE: one writer at a time, as on SQLite, so that code that
            # reads and then writes under it (ids from MAX(id) + 1) stays right
            self.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

    def conflict_update(self, oc: Any, query: Any) -> Any:
        """``on_conflict_replace()`` (SQLite's INSERT OR REPLACE) as an upsert of every
        column on the primary key, which is what it does to a row that has no other
        unique key."""
        if (oc._action or "").lower() == "replace":
            meta = query.model._meta
            key = list(meta.get_primary_keys())
            rest = [f for f in meta.sorted_fields if f not in key]
            oc = OnConflict(action="update" if rest else "ignore", preserve=rest or None, conflict_target=key)
        return super().conflict_update(oc, query)

    def cursor(self, named_cursor: Any = None) -> Any:
        return _Cursor(super().cursor(named_cursor))

    def connection(self) -> Any:
        return _Connection(super().connection())
