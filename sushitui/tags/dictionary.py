"""The tag dictionary (TAG-3..TAG-8): loading taglists, import/export, search, paging for
the dictionary screen, add/edit/remove with validation, statistics.

Identity is the match key (``DictionaryTag.norm``): ``long_hair`` and ``Long Hair`` are
the same tag. Bulk loads go through ``executemany`` in one write transaction; into an
empty table the secondary indexes are dropped first and rebuilt after (one sort per
index instead of 925k random B-tree inserts).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, cast

from peewee import OperationalError

from sushitui import config
from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressCallback, ProgressEvent, Throttle
from sushitui.store import DictionaryTag, ItemTag, current_database, tuple_rows, write_transaction
from sushitui.store.deferred_index import build_indexes
from sushitui.store.models import DictionaryLoad
from sushitui.tags.autocomplete import dictionary_changed
from sushitui.tags.dictionary_formats import (
    CATEGORIES,
    CATEGORY_FILES,
    SOURCES,
    DictionaryFileError,
    RowProblem,
    TagRow,
    bulk_keys,
    category_problem,
    detect_format,
    name_problem,
    names_all_clean,
    parse_alias_file,
    parse_count,
    parse_file,
    parse_taglist_json,
    split_aliases,
    write_csv,
    write_taglist_json,
)
from sushitui.tags.normalize import clean, match_key

CONFLICT_MODES = ("skip", "update", "merge")
SEARCH_MODES = ("prefix", "substring", "suffix", "exact")
SORTS = ("count", "name", "created")
CHUNK = 20_000

__all__ = [
    "CATEGORIES",
    "SOURCES",
    "CONFLICT_MODES",
    "SEARCH_MODES",
    "SORTS",
    "DictionaryFileError",
    "DictionaryError",
    "ValidationError",
    "ImportReport",
    "DictEntry",
    "DictQuery",
    "RowProblem",
    "load_dir",
    "ensure_loaded",
    "import_file",
    "import_rows",
    "export",
    "search",
    "query_page",
    "count_matches",
    "get_tag",
    "add_tag",
    "edit_tag",
    "remove_tag",
    "stats",
    "lookup_many",
]


class DictionaryError(UserError):
    """A dictionary operation the user asked for cannot be done; the message says why."""


class ValidationError(DictionaryError):
    """Field problems of an add/edit: ``problems`` maps field name → reason."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    skipped_rows: list[RowProblem] = field(default_factory=list)
    aliases_unmatched: int = 0
    files: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    cancelled: bool = False

    def merge(self, other: "ImportReport") -> None:
        self.imported += other.imported
        self.updated += other.updated
        self.skipped += other.skipped
        self.rejected += other.rejected
        self.skipped_rows += other.skipped_rows

    def to_dict(self) -> dict:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "skipped": self.skipped,
            "rejected": len(self.rejected),
            "rejected_rows": [p.to_dict() for p in self.rejected],
            "skipped_rows": [p.to_dict() for p in self.skipped_rows],
            "aliases_unmatched": self.aliases_unmatched,
            "files": self.files,
            "elapsed_s": round(self.elapsed_s, 3),
            "cancelled": self.cancelled,
        }


@dataclass
class DictEntry:
    id: int
    tag: str
    category: str
    count: int
    display_name: str | None
    aliases: list[str]
    description: str
    source: str
    official: bool
    deprecated: bool
    replacement: str | None
    wiki_url: str | None
    created_at: float
    updated_at: float
    translations: dict[str, list[str]] = field(default_factory=dict)  # lang -> translations (issue 22)

    def to_dict(self) -> dict:
        return asdict(self)


_ENTRY_COLS = (
    "id, tag, category, count, display_name, aliases, description, source, official, "
    "deprecated, replacement, wiki_url, created_at, updated_at"
)


def _entry(r: Sequence) -> DictEntry:
    return DictEntry(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        split_aliases(r[5]),
        r[6] or "",
        r[7],
        bool(r[8]),
        bool(r[9]),
        r[10],
        r[11],
        r[12],
        r[13],
    )


def _db():
    return current_database()


# --- loading and importing -------------------------------------------------------------


def _secondary_indexes(db) -> list[tuple[str, str]]:
    return db.execute_sql(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='dictionary_tag' AND sql IS NOT NULL"
    ).fetchall()


def _emit(throttle: Throttle, phase: str, done: int, total: int, started: float, force: bool = False) -> None:
    throttle(ProgressEvent(phase, done, total, unit="tags", started_at=started), force=force)


def _existing(db, norms: list[str]) -> dict[str, tuple]:
    """norm → (id, count, aliases, display_name, description) for the norms that exist."""
    out: dict[str, tuple] = {}
    total = db.execute_sql("SELECT COUNT(*) FROM dictionary_tag").fetchone()[0]
    if total == 0:
        return out
    if len(norms) > total // 4:
        wanted = set(norms)
        for r in db.execute_sql("SELECT norm, id, count, aliases, display_name, description FROM dictionary_tag"):
            if r[0] in wanted:
                out[r[0]] = r[1:]
        return out
    for i in range(0, len(norms), 900):
        chunk = norms[i : i + 900]
        q = ",".join("?" * len(chunk))
        for r in db.execute_sql(
            f"SELECT norm, id, count, aliases, display_name, description FROM dictionary_tag WHERE norm IN ({q})", chunk
        ):
            out[r[0]] = r[1:]
    return out


def _dedupe(rows: list[TagRow], norms: list[str], report: ImportReport) -> list[int] | None:
    """Indices of the first row per match key; None when there is no duplicate at all."""
    if len(dict.fromkeys(norms)) == len(norms):
        return None
    first: dict[str, int] = {}
    keep: list[int] = []
    for i, k in enumerate(norms):
        j = first.setdefault(k, i)
        if j != i:
            report.skipped += 1
            report.skipped_rows.append(
                RowProblem(
                    rows[i][6], rows[i][0], f"duplicate of {rows[j][6] or rows[j][0]!r} (same tag after normalisation)"
                )
            )
        else:
            keep.append(i)
    return keep


def import_rows(
    rows: list[TagRow],
    *,
    on_conflict: str = "update",
    source: str = "danbooru",
    norms: list[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Write validated rows: new tags inserted; existing ones (same match key) skipped,
    given the imported count (``update``), or merged (``merge``: aliases united, empty
    display name/description filled, the larger count kept). Duplicates inside the
    input are skipped with the row they repeat.

    Rows are plain ``(tag, category, count, display_name, aliases, description, where)``
    tuples (``TagRow``); the columns are handled in bulk because a Danbooru list is ~1M rows.
    """
    if on_conflict not in CONFLICT_MODES:
        raise DictionaryError(f"unknown conflict mode {on_conflict!r}; use one of {', '.join(CONFLICT_MODES)}")
    if source not in SOURCES:
        raise DictionaryError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    started = time.monotonic()
    throttle = Throttle(progress)
    report = ImportReport()
    db = _db()
    if not rows:
        return report
    # lists, as the picks below make them
    tags, cats, counts, displays, aliases, descs, _where_col = map(list, zip(*rows))
    norms = norms if norms is not None else bulk_keys(list(tags))
    keep = _dedupe(rows, norms, report)
    if keep is not None:
        pick = lambda col: [col[i] for i in keep]  # noqa: E731
        tags, cats, counts, displays, aliases, descs, norms = map(
            pick, (tags, cats, counts, displays, aliases, descs, norms)
        )
        rows = [rows[i] for i in keep]
    alias_text = [",".join(a) if a else "" for a in aliases]
    official = 1 if source == "danbooru" else 0
    now = time.time()
    total = len(tags)
    with write_transaction(db):
        existing = _existing(db, norms)
        updates = []
        if existing:
            new_idx = []
            for i, k in enumerate(norms):
                old = existing.get(k)
                if old is None:
                    new_idx.append(i)
                    continue
                r = rows[i]
                oid, ocount, oaliases, odisplay, odesc = old
                if on_conflict == "skip":
                    report.skipped += 1
                    report.skipped_rows.append(RowProblem(r[6], r[0], "already in the dictionary (on conflict: skip)"))
                    continue
                if on_conflict == "update":
                    new = (r[2], oaliases, odisplay, odesc)
                else:
                    merged = split_aliases(oaliases)
                    seen = {match_key(x) for x in merged}
                    for x in r[4]:
                        if match_key(x) not in seen:
                            seen.add(match_key(x))
                            merged.append(x)
                    new = (max(ocount, r[2]), ",".join(merged), odisplay or r[3], odesc or r[5])
                if new == (ocount, oaliases, odisplay, odesc):
                    report.skipped += 1
                    report.skipped_rows.append(RowProblem(r[6], r[0], "already in the dictionary with the same values"))
                    continue
                updates.append((*new, now, oid))
            pick = lambda col: [col[i] for i in new_idx]  # noqa: E731
            tags, cats, counts, displays, alias_text, descs, norms = map(
                pick, (tags, cats, counts, displays, alias_text, descs, norms)
            )
        inserts = list(zip(tags, norms, cats, counts, displays, alias_text, descs))
        dropped = []
        if len(inserts) > 50_000:
            (in_table,) = db.execute_sql("SELECT COUNT(*) FROM dictionary_tag").fetchone()
            if len(inserts) > in_table:
                # Mostly new rows (a first load, or the full list over the shipped one): drop
                # the indexes, insert, rebuild each with one sort. The UNIQUE index on tag is
                # dropped only into an empty table (names deduplicated above); otherwise it
                # stays, so a clash with an existing row fails the insert, not the rebuild.
                dropped = [
                    (n, q)
                    for n, q in _secondary_indexes(db)
                    if in_table == 0 or not q.upper().startswith("CREATE UNIQUE")
                ]
                for name, _sql in dropped:
                    db.execute_sql(f'DROP INDEX "{name}"')
        cur = db.cursor()
        # constant columns are literals (source is one of SOURCES, checked above): fewer binds
        sql = (
            "INSERT INTO dictionary_tag (tag, norm, category, count, display_name, aliases, description, "
            f"source, official, deprecated, created_at, updated_at) VALUES (?,?,?,?,?,?,?,'{source}',{official},0,{now!r},{now!r})"
        )
        try:
            for s in range(0, len(inserts), CHUNK):
                if cancel is not None and cancel.cancelled:
                    report.cancelled = True
                    break
                chunk = inserts[s : s + CHUNK]
                cur.executemany(sql, chunk)
                report.imported += len(chunk)
                _emit(throttle, "writing", s + len(chunk), total, started)
            if updates and not report.cancelled:
                cur.executemany(
                    "UPDATE dictionary_tag SET count=?, aliases=?, display_name=?, description=?, updated_at=? WHERE id=?",
                    updates,
                )
                report.updated += len(updates)
        finally:
            if dropped:
                _emit(throttle, f"indexing ({len(dropped)} indexes)", total, total, started, force=True)
                build_indexes(db, [sql_text for _name, sql_text in dropped])
    dictionary_changed()
    _emit(throttle, "done", total, total, started, force=True)
    report.elapsed_s = time.monotonic() - started
    return report


def import_file(
    path: str | Path,
    *,
    fmt: str | None = None,
    category: str | None = None,
    on_conflict: str = "update",
    source: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Import one file (format from ``fmt`` or detected); bad rows are reported, the rest imported."""
    started = time.monotonic()
    if category is not None and category_problem(category):
        raise DictionaryError(category_problem(category))
    fmt = fmt or detect_format(Path(path)) if Path(path).is_file() else fmt
    parsed = parse_file(Path(path), fmt, category.lower() if category else None)
    if source is None:
        source = "user_custom" if fmt == "csv" else "danbooru"
    report = import_rows(parsed.rows, on_conflict=on_conflict, source=source, progress=progress, cancel=cancel)
    report.rejected = parsed.rejected + report.rejected
    report.files = [str(path)]
    report.elapsed_s = time.monotonic() - started
    _record_load("import", str(path), report)
    return report


def _record_load(kind: str, source: str, report: ImportReport, fingerprint: str = "") -> None:
    with write_transaction(_db()):
        DictionaryLoad.create(
            kind=kind,
            source=source,
            fingerprint=fingerprint,
            imported=report.imported,
            updated=report.updated,
            skipped=report.skipped,
            rejected=len(report.rejected),
            elapsed_s=report.elapsed_s,
        )


def _category_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() == ".json" and p.stem.lower() in CATEGORIES:
            found[p.stem.lower()] = p
    return found


def taglist_fingerprint(folder: Path) -> str:
    parts = []
    for p in sorted(folder.glob("*.json")):
        parts.append(f"{p.name}:{p.stat().st_size}")
    return ";".join(parts)


def load_dir(
    folder: str | Path,
    *,
    on_conflict: str = "update",
    source: str = "danbooru",
    kind: str = "load",
    aliases_file: str | Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Load a taglist folder: ``<Category>.json`` files (``{"tag": count}``; missing
    categories are fine) plus optional ``aliases.json`` (``{tag: [aliases]}``) or
    ``aliases.csv`` (``antecedent_name,consequent_name,status``), or ``aliases_file``."""
    started = time.monotonic()
    folder = Path(folder)
    if not folder.is_dir():
        raise DictionaryFileError(
            f"{folder}: no such folder (a taglist folder holds General.json, Character.json, ...)"
        )
    files = _category_files(folder)
    if not files:
        raise DictionaryFileError(
            f'{folder}: no taglist files found; expected {", ".join(CATEGORY_FILES.values())} ({{"tag": count}})'
        )
    throttle = Throttle(progress)
    rows: list[TagRow] = []
    report = ImportReport(files=[str(p) for p in files.values()])
    for i, (cat, path) in enumerate(files.items()):
        _emit(throttle, f"reading {path.name}", i, len(files), started, force=True)
        if cancel is not None and cancel.cancelled:  # nothing written yet
            report.cancelled = True
            report.elapsed_s = time.monotonic() - started
            return report
        parsed = parse_taglist_json(path, cat)
        rows.extend(parsed.rows)
        report.rejected.extend(parsed.rejected)
    alias_map: dict[str, list[str]] = {}
    alias_files = [folder / "aliases.json", folder / "aliases.csv"] + ([Path(aliases_file)] if aliases_file else [])
    if aliases_file and not Path(aliases_file).is_file():
        raise DictionaryFileError(f"{aliases_file}: no such alias file")
    for p in alias_files:
        if p.is_file():
            m, probs = parse_alias_file(p)
            report.files.append(str(p))
            report.rejected.extend(probs)
            for k, v in m.items():
                alias_map.setdefault(k, []).extend(v)
    norms = bulk_keys([r[0] for r in rows])
    if alias_map:
        rows, report.aliases_unmatched = _attach_aliases(rows, norms, alias_map, report)
    sub = import_rows(rows, on_conflict=on_conflict, source=source, norms=norms, progress=progress, cancel=cancel)
    report.merge(sub)
    report.cancelled = sub.cancelled
    report.elapsed_s = time.monotonic() - started
    if not report.cancelled:
        _record_load(kind, str(folder), report, taglist_fingerprint(folder))
    return report


def _attach_aliases(
    rows: list[TagRow], norms: list[str], alias_map: dict[str, list[str]], report: ImportReport
) -> tuple[list[TagRow], int]:
    """Add the aliases of ``alias_map`` (tag → aliases) to the rows of their tags."""
    by_key = dict(zip(bulk_keys(list(alias_map)), alias_map.values()))
    # one check over every alias at once; per-alias checks only when something is wrong
    all_clean = names_all_clean([a for v in alias_map.values() for a in v])
    matched = 0
    out = list(rows)
    get = by_key.get
    for i, key in enumerate(norms):
        extra = get(key)
        if not extra:
            continue
        matched += 1
        r = out[i]
        if all_clean:
            good = extra
        else:
            good = []
            for a in extra:
                reason = name_problem(a, f"alias {a!r}")
                if reason:
                    report.rejected.append(RowProblem(f"aliases of {r[0]}", a, reason))
                else:
                    good.append(clean(a))
        merged = tuple(dict.fromkeys(tuple(r[4]) + tuple(good))) if r[4] else tuple(good)
        out[i] = cast(TagRow, (r[0], r[1], r[2], r[3], merged, r[5], r[6]))  # plain, like the rows
    return out, len(by_key) - matched


def is_builtin_loaded() -> bool:
    return DictionaryLoad.select().where(DictionaryLoad.kind == "builtin").exists()


def ensure_loaded(progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> ImportReport | None:
    """First start (TAG-4): load the shipped ``taglist/`` once. Returns None when it was
    loaded before (recorded in ``dictionary_load``) or no taglist is installed."""
    if is_builtin_loaded():
        return None
    folder = config.taglist_dir()
    if not folder.is_dir() or not _category_files(folder):
        return None
    return load_dir(folder, on_conflict="skip", kind="builtin", progress=progress, cancel=cancel)


# --- export -----------------------------------------------------------------------------


def _export_where(category: str | None, source: str | None) -> tuple[str, list]:
    where, params = ["1=1"], []
    if category:
        if category_problem(category):
            raise DictionaryError(category_problem(category))
        where.append("category = ?")
        params.append(category.lower())
    if source:
        if source not in SOURCES:
            raise DictionaryError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
        where.append("source = ?")
        params.append(source)
    return " AND ".join(where), params


def export(path: str | Path, *, fmt: str = "csv", category: str | None = None, source: str | None = None) -> dict:
    """Write the dictionary (optionally one category / source).

    CSV: one file with a header (``tag,category,count,display_name,aliases,description``).
    JSON with a category: one taglist file ``{"tag": count}``. JSON without a category:
    ``path`` becomes a taglist folder (``General.json`` … plus ``aliases.json``) that
    ``dict load`` reads back. Returns ``{"tags": n, "files": [...]}``.
    """
    path = Path(path)
    where, params = _export_where(category, source)
    db = _db()
    order = "ORDER BY count DESC, norm"
    if fmt == "csv":
        rows = db.execute_sql(
            f"SELECT tag, category, count, display_name, aliases, description FROM dictionary_tag WHERE {where} {order}",
            params,
        )
        n = write_csv(path, rows)
        return {"tags": n, "files": [str(path)]}
    if fmt != "json":
        raise DictionaryError(f"unknown export format {fmt!r}; use json or csv")
    if category:
        pairs = db.execute_sql(f"SELECT tag, count FROM dictionary_tag WHERE {where} {order}", params)
        return {"tags": write_taglist_json(path, pairs), "files": [str(path)]}
    if path.exists() and not path.is_dir():
        raise DictionaryError(
            f"{path} is a file; exporting all categories as JSON writes a taglist folder (or pass --category)"
        )
    path.mkdir(parents=True, exist_ok=True)
    files, total = [], 0
    for cat, fname in CATEGORY_FILES.items():
        w, p = _export_where(cat, source)
        pairs = list(db.execute_sql(f"SELECT tag, count FROM dictionary_tag WHERE {w} {order}", p))
        if pairs or cat != "model":
            total += write_taglist_json(path / fname, pairs)
            files.append(str(path / fname))
    aliases = {
        t: split_aliases(a)
        for t, a in db.execute_sql(
            f"SELECT tag, aliases FROM dictionary_tag WHERE {where} AND aliases != '' {order}", params
        )
    }
    if aliases:
        import json

        (path / "aliases.json").write_text(json.dumps(aliases, ensure_ascii=False), encoding="utf-8")
        files.append(str(path / "aliases.json"))
    return {"tags": total, "files": files}


# --- search and paging ------------------------------------------------------------------


@dataclass
class DictQuery:
    """What the dictionary screen / ``dict search`` shows."""

    text: str = ""
    mode: str = "substring"
    category: str | None = None
    only_official: bool = False
    only_custom: bool = False
    show_deprecated: bool = False
    sort: str = "count"  # count (desc) | name (asc) | created (newest first)
    lang: str | None = None  # translations searched too: this language (None: every language)


def _where(q: DictQuery) -> tuple[str, list]:
    where: list[str] = []
    params: list[Any] = []
    if q.category:
        if category_problem(q.category):
            raise DictionaryError(category_problem(q.category))
        where.append("category = ?")
        params.append(q.category.lower())
    if q.only_official:
        where.append("official = 1")
    if q.only_custom:
        where.append("official = 0")
    if not q.show_deprecated:
        where.append("deprecated = 0")
    key = match_key(q.text) if q.text.strip() else ""
    if key:
        if q.mode not in SEARCH_MODES:
            raise DictionaryError(f"unknown search mode {q.mode!r}; use one of {', '.join(SEARCH_MODES)}")
        if q.mode == "exact":
            where.append("norm = ?")
            params.append(key)
        elif q.mode == "prefix":
            where.append("norm >= ? AND norm < ?")
            params += [key, key + "\U0010ffff"]
        elif q.mode == "suffix":
            where.append("substr(norm, -?) = ?")
            params += [len(key), key]
        else:
            where.append("instr(norm, ?) > 0")
            params.append(key)
    if q.text.strip() and q.mode in SEARCH_MODES:
        _or_translated(q, where, params, bool(key))
    return (" AND ".join(where) or "1=1"), params


# At most this many names are looked up by key (below); more keep the name condition.
NAME_MATCH_LIMIT = 5000


def _or_translated(q: DictQuery, where: list[str], params: list, has_name_condition: bool) -> None:
    """Widen the last (name) condition to "or a translation matches" (猫耳 finds cat_ears).
    The few matching keys are bound as a list, so a search no translation matches keeps
    its plain index plan."""
    from sushitui.tags import translations

    norms = translations.matching_norms(q.text, q.mode, q.lang)
    if norms == []:
        return
    name_cond, name_params = "", []
    if has_name_condition:
        name_cond = where.pop()
        n_name = name_cond.count("?")
        name_params = params[len(params) - n_name :]
        del params[len(params) - n_name :]
    if norms is not None and has_name_condition and q.mode in ("substring", "suffix"):
        # "name matches OR translation matches" reads every dictionary row, twice per screen
        # (the page, most of whose 925k rows a rare CJK text never matches, and the count):
        # ~2.4 s. The name condition alone over the norm index (norm only) is ~0.1 s, and
        # its few matches join the translations' keys: then both queries are key lookups.
        names = _names_matching(q, name_cond, name_params)
        if names is not None:
            keys = list(dict.fromkeys(names + norms))
            where.append(f"norm IN ({','.join('?' * len(keys))})")
            params += keys
            return
    if norms is None:
        sql, extra = translations.matching_sql(q.text, q.mode, q.lang)
        cond, cond_params = f"norm IN ({sql})", extra
    else:
        cond, cond_params = f"norm IN ({','.join('?' * len(norms))})", norms
    if has_name_condition:
        where.append(f"({name_cond} OR {cond})")
        params += name_params + cond_params
    else:
        where.append(cond)
        params += cond_params


def _names_matching(q: DictQuery, name_cond: str, name_params: list) -> list[str] | None:
    """The match keys the name condition (substring or suffix) matches; None when more
    than NAME_MATCH_LIMIT do (the caller keeps the condition in its query)."""
    key = match_key(q.text)
    if not key.isascii():
        # only a name with a non-ASCII character can hold 猫耳: the Danbooru list has none,
        # a user's own tags a few
        found = [n for n in _non_ascii_names() if (key in n if q.mode == "substring" else n.endswith(key))]
        return found if len(found) <= NAME_MATCH_LIMIT else None
    sql = "SELECT norm FROM dictionary_tag {} WHERE " + name_cond + " LIMIT ?"
    args = [*name_params, NAME_MATCH_LIMIT + 1]
    db = _db()
    try:  # the norm index alone (norm only): a tenth of the table's pages
        rows = db.execute_sql(sql.format("INDEXED BY dictionary_tag_norm"), args).fetchall()
    except OperationalError:  # the index is missing (dropped while a dictionary load rebuilds it)
        rows = db.execute_sql(sql.format(""), args).fetchall()
    if len(rows) > NAME_MATCH_LIMIT:
        return None
    return [r[0] for r in rows]


# (stamp, keys): the dictionary's match keys with a non-ASCII character, read again when the
# stamp changes: this process's dictionary writes (autocomplete's generation, bumped by
# dictionary_changed), another connection's commits (data_version), rows added without
# either (MAX(id): the tagger's auto-added tags)
_non_ascii_cache: tuple | None = None


def _non_ascii_names() -> list[str]:
    global _non_ascii_cache
    from sushitui.tags import autocomplete

    db = _db()
    stamp = (
        id(db.connection()),
        autocomplete._generation,
        db.execute_sql("PRAGMA data_version").fetchone()[0],
        db.execute_sql("SELECT MAX(id) FROM dictionary_tag").fetchone()[0],
    )
    if _non_ascii_cache is not None and _non_ascii_cache[0] == stamp:
        return _non_ascii_cache[1]
    # more bytes than characters: a non-ASCII character (3× faster than GLOB '*[^ -~]*')
    names = [
        r[0] for r in db.execute_sql("SELECT norm FROM dictionary_tag WHERE length(norm) != length(CAST(norm AS BLOB))")
    ]
    _non_ascii_cache = (stamp, names)
    return names


# sort → (ORDER BY, cursor columns, comparison): keyset paging, an index per order
_ORDERS = {
    "count": ("count DESC, id DESC", ("count", "id"), "<"),
    "name": ("norm ASC, id ASC", ("norm", "id"), ">"),
    "created": ("id DESC", ("id",), "<"),
}


def query_page(q: DictQuery, limit: int = 50, after: tuple | None = None) -> tuple[list[DictEntry], tuple | None]:
    """One page of entries in ``q.sort`` order after the keyset cursor ``after``;
    returns (entries, cursor of the last row or None at the end).

    A two-column cursor ``(value, id)`` is split into "same value, id beyond" and "value
    beyond": SQLite uses only the first column of a row-value comparison for an index
    range, which made deep pages among 400k tags of count 1 take ~200 ms; each half is an
    exact index range (< 1 ms).
    """
    if q.sort not in _ORDERS:
        raise DictionaryError(f"unknown sort {q.sort!r}; use one of {', '.join(SORTS)}")
    where, params = _where(q)
    order, cols, op = _ORDERS[q.sort]
    db = _db()
    sql = f"SELECT {_ENTRY_COLS}, norm FROM dictionary_tag WHERE {{}} ORDER BY {{}} LIMIT ?"
    if after is None:
        rows = db.execute_sql(sql.format(where, order), params + [limit]).fetchall()
    elif len(cols) == 1:
        rows = db.execute_sql(sql.format(f"{where} AND id {op} ?", order), params + [after[0], limit]).fetchall()
    else:
        id_order = "id DESC" if op == "<" else "id ASC"
        rows = db.execute_sql(
            sql.format(f"{where} AND {cols[0]} = ? AND id {op} ?", id_order), params + [after[0], after[1], limit]
        ).fetchall()
        if len(rows) < limit:
            rows += db.execute_sql(
                sql.format(f"{where} AND {cols[0]} {op} ?", order), params + [after[0], limit - len(rows)]
            ).fetchall()
    entries = [_entry(r) for r in rows]
    _attach_translations(entries, [r[14] for r in rows])
    cursor = None
    if len(rows) == limit:
        last = rows[-1]
        cursor = {"count": (last[3], last[0]), "name": (last[14], last[0]), "created": (last[0],)}[q.sort]
    return entries, cursor


def _attach_translations(entries: list[DictEntry], norms: list[str]) -> None:
    from sushitui.tags import translations

    found = translations.for_norms(norms)
    for e, norm in zip(entries, norms):
        e.translations = found.get(norm, {})


def count_matches(q: DictQuery) -> int:
    where, params = _where(q)
    return _db().execute_sql(f"SELECT COUNT(*) FROM dictionary_tag WHERE {where}", params).fetchone()[0]


def search(
    text: str,
    *,
    mode: str = "substring",
    category: str | None = None,
    limit: int = 50,
    sort: str = "count",
    show_deprecated: bool = True,
    lang: str | None = None,
) -> list[DictEntry]:
    """Tags whose name — or translation (in ``lang``, default any) — matches ``text``."""
    entries, _ = query_page(
        DictQuery(text, mode, category, sort=sort, show_deprecated=show_deprecated, lang=lang), limit
    )
    return entries


def get_tag(tag: str) -> DictEntry | None:
    row = (
        _db()
        .execute_sql(f"SELECT {_ENTRY_COLS} FROM dictionary_tag WHERE norm = ? LIMIT 1", [match_key(tag)])
        .fetchone()
    )
    if not row:
        return None
    entry = _entry(row)
    _attach_translations([entry], [match_key(entry.tag)])
    return entry


def _stored_entry(tag: str) -> DictEntry:
    """``get_tag`` of a tag known to be in the dictionary (just written, or checked)."""
    entry = get_tag(tag)
    assert entry is not None, tag
    return entry


def lookup_many(tags: Iterable[str]) -> dict[str, tuple[str, int]]:
    """match key → (category, count) for the given tags that are in the dictionary."""
    keys = list({match_key(t) for t in tags})
    out: dict[str, tuple[str, int]] = {}
    for i in range(0, len(keys), 900):
        chunk = keys[i : i + 900]
        for n, c, cnt in _db().execute_sql(
            f"SELECT norm, category, count FROM dictionary_tag WHERE norm IN ({','.join('?' * len(chunk))})", chunk
        ):
            out[n] = (c, cnt)
    return out


# --- add / edit / remove (TAG-5) --------------------------------------------------------


def validate_fields(tag: object, category: object, count: object, aliases: object = None) -> dict[str, str]:
    """Field → reason for every invalid field (empty when all are valid)."""
    problems: dict[str, str] = {}
    reason = name_problem(tag if isinstance(tag, str) else "")
    if reason:
        problems["tag"] = reason
    reason = category_problem(category)
    if reason:
        problems["category"] = reason
    _, reason = parse_count(count)
    if reason or (isinstance(count, str) and not count.strip()):
        problems["count"] = reason or "count is empty; give an integer ≥ 0"
    for a in split_aliases(aliases):
        reason = name_problem(a, f"alias {a!r}")
        if reason:
            problems["aliases"] = reason
            break
    return problems


def replacement_problem(tag: str, replacement: str | None) -> str | None:
    """Why ``replacement`` cannot replace the deprecated ``tag`` (None when it can, or is
    empty). The auto-tagger maps a deprecated tag to it (AT-3), so it must be a live
    dictionary tag other than the tag itself."""
    if not replacement:
        return None
    reason = name_problem(replacement, f"replacement {replacement!r}")
    if reason:
        return reason
    if match_key(replacement) == match_key(tag):
        return "a tag cannot be its own replacement; name the tag that replaces it"
    target = get_tag(replacement)
    if target is None:
        return f"replacement {replacement!r} is not in the dictionary; add it first (sushitui dict add)"
    if target.deprecated:
        hint = f"; use {target.replacement!r}" if target.replacement else ""
        return f"replacement {target.tag!r} is deprecated itself{hint}"
    return None


def wiki_url_problem(url: object) -> str | None:
    if not url:
        return None
    if not isinstance(url, str) or not _WIKI_URL.fullmatch(url):
        return f"wiki URL {url!r} is not an http:// or https:// address (no spaces)"
    return None


_WIKI_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]+")


def _deprecation(tag: str, deprecated: bool | None, replacement: str | None, problems: dict[str, str]):
    """(deprecated, stored replacement) from what was asked: a replacement implies a
    deprecated tag; an explicitly not-deprecated tag has none."""
    if replacement:
        if deprecated is False:
            problems["replacement"] = "a replacement is only for deprecated tags; drop --no-deprecated"
            return False, None
        reason = replacement_problem(tag, replacement)
        if reason:
            problems["replacement"] = reason
            return True, None
        return True, _stored_entry(replacement).tag  # the dictionary's own spelling
    return bool(deprecated), None


def add_tag(
    tag: str,
    category: str = "general",
    count: int | str = 0,
    *,
    display_name: str | None = None,
    aliases: Iterable[str] | str = (),
    description: str = "",
    source: str = "user_custom",
    deprecated: bool | None = None,
    replacement: str | None = None,
    wiki_url: str | None = None,
    official: bool | None = None,
) -> DictEntry:
    """Add a tag. ``replacement`` (a dictionary tag) marks it deprecated; ``official``
    defaults to whether the source is danbooru."""
    problems = validate_fields(tag, category, count, aliases)
    if source not in SOURCES:
        problems["source"] = f"unknown source {source!r}; use one of {', '.join(SOURCES)}"
    deprecated, replacement = _deprecation(tag if isinstance(tag, str) else "", deprecated, replacement, problems)
    reason = wiki_url_problem(wiki_url)
    if reason:
        problems["wiki_url"] = reason
    if problems:
        raise ValidationError(problems)
    existing = get_tag(tag)
    if existing is not None:
        raise ValidationError({"tag": f"{existing.tag!r} is already in the dictionary; edit it instead"})
    now = time.time()
    with write_transaction(_db()):
        DictionaryTag.insert(
            tag=clean(tag),
            norm=match_key(tag),
            category=category.strip().lower(),
            count=parse_count(count)[0],
            display_name=display_name or None,
            aliases=",".join(split_aliases(aliases)),
            description=description or "",
            source=source,
            official=source == "danbooru" if official is None else bool(official),
            deprecated=deprecated,
            replacement=replacement,
            wiki_url=wiki_url or None,
            created_at=now,
            updated_at=now,
        ).execute()
    dictionary_changed()
    return _stored_entry(tag)


def _official(changes: dict, entry: DictEntry) -> bool:
    if changes.get("official") is not None:
        return bool(changes["official"])
    return changes["source"] == "danbooru" if changes.get("source") is not None else entry.official


def edit_tag(tag: str, /, **changes) -> DictEntry:
    """Change fields of an existing tag (``tag=`` renames it). Same validation as add."""
    entry = get_tag(tag)
    if entry is None:
        raise DictionaryError(f"{tag!r} is not in the dictionary; add it first")
    allowed = {
        "tag",
        "category",
        "count",
        "display_name",
        "aliases",
        "description",
        "source",
        "deprecated",
        "replacement",
        "wiki_url",
        "official",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise DictionaryError(f"cannot change {', '.join(sorted(unknown))}")
    new = entry.to_dict() | {k: v for k, v in changes.items() if v is not None}
    problems = validate_fields(new["tag"], new["category"], new["count"], new["aliases"])
    if new["source"] not in SOURCES:
        problems["source"] = f"unknown source {new['source']!r}; use one of {', '.join(SOURCES)}"
    # "" clears a replacement or wiki URL; a stored replacement is re-checked only when it
    # is given again or the tag is renamed (so unrelated edits never fail on it)
    wanted, deprecated = changes.get("replacement"), changes.get("deprecated")
    if wanted is not None:
        if deprecated is None and wanted == "":
            deprecated = entry.deprecated  # clearing the replacement alone keeps the flag
        new["deprecated"], new["replacement"] = _deprecation(new["tag"], deprecated, wanted, problems)
    elif deprecated is False:
        new["deprecated"], new["replacement"] = False, None  # a live tag has no replacement
    elif "tag" in changes and new["replacement"] and match_key(new["replacement"]) == match_key(new["tag"]):
        problems["replacement"] = "a tag cannot be its own replacement; name the tag that replaces it"
    reason = wiki_url_problem(new["wiki_url"]) if changes.get("wiki_url") else None
    if reason:
        problems["wiki_url"] = reason
    new["wiki_url"] = new["wiki_url"] or None
    if not problems and match_key(new["tag"]) != match_key(entry.tag):
        other = get_tag(new["tag"])
        if other is not None:
            problems["tag"] = f"{other.tag!r} is already in the dictionary"
    if problems:
        raise ValidationError(problems)
    with write_transaction(_db()):
        DictionaryTag.update(
            tag=clean(new["tag"]),
            norm=match_key(new["tag"]),
            category=new["category"].strip().lower(),
            count=parse_count(new["count"])[0],
            display_name=new["display_name"] or None,
            aliases=",".join(split_aliases(new["aliases"])),
            description=new["description"] or "",
            source=new["source"],
            official=_official(changes, entry),
            deprecated=bool(new["deprecated"]),
            replacement=new["replacement"],
            wiki_url=new["wiki_url"],
            updated_at=time.time(),
        ).where(DictionaryTag.id == entry.id).execute()
    dictionary_changed()
    return _stored_entry(new["tag"])


@dataclass
class RemoveReport:
    """What ``dict remove`` did. The caption fields are filled by
    ``sushitui.dataset.bulk_edit.remove_tag_everywhere`` (``--from-datasets``)."""

    removed: bool
    items_changed: int = 0
    files_written: int = 0
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def items_with_tag(tag: str) -> dict[str, list[int]]:
    """subtype → item ids whose captions hold ``tag`` (by match key)."""
    out: dict[str, list[int]] = {}
    rows = ItemTag.select(ItemTag.item, ItemTag.subtype).where(ItemTag.norm == match_key(tag)).distinct().tuples()
    for item_id, subtype in tuple_rows(rows):
        out.setdefault(subtype, []).append(item_id)
    return out


def remove_tag(tag: str, *, missing_ok: bool = False) -> RemoveReport:
    """Delete the tag's dictionary entry; captions are not touched (stripping the tag
    from them is a caption edit: ``sushitui.dataset.bulk_edit.remove_tag_everywhere``).
    A tag not in the dictionary is a DictionaryError unless ``missing_ok``."""
    entry = get_tag(tag)
    if entry is None:
        if missing_ok:
            return RemoveReport(removed=False)
        raise DictionaryError(f"{tag!r} is not in the dictionary")
    with write_transaction(_db()):
        DictionaryTag.delete().where(DictionaryTag.id == entry.id).execute()
    dictionary_changed()
    return RemoveReport(removed=True)


# --- statistics (TAG-8) -----------------------------------------------------------------


def stats(top: int = 100) -> dict:
    db = _db()
    by_cat = dict(db.execute_sql("SELECT category, COUNT(*) FROM dictionary_tag GROUP BY category").fetchall())
    by_source = dict(db.execute_sql("SELECT source, COUNT(*) FROM dictionary_tag GROUP BY source").fetchall())
    total = sum(by_cat.values())
    official, deprecated = db.execute_sql(
        "SELECT COALESCE(SUM(official), 0), COALESCE(SUM(deprecated), 0) FROM dictionary_tag"
    ).fetchone()
    used = db.execute_sql(
        "SELECT COUNT(*) FROM (SELECT DISTINCT norm FROM item_tag) u "
        "WHERE EXISTS (SELECT 1 FROM dictionary_tag d WHERE d.norm = u.norm)"
    ).fetchone()[0]
    dataset_distinct = db.execute_sql("SELECT COUNT(DISTINCT norm) FROM item_tag").fetchone()[0]
    top_rows = db.execute_sql(
        "SELECT u.tag, u.n, u.items, d.tag, d.category, d.count FROM "
        "(SELECT norm, COUNT(*) AS n, COUNT(DISTINCT item_id) AS items, MIN(tag) AS tag FROM item_tag "
        " GROUP BY norm ORDER BY n DESC LIMIT ?) u "
        "LEFT JOIN dictionary_tag d ON d.norm = u.norm ORDER BY u.n DESC, u.norm",
        [top],
    ).fetchall()
    last = DictionaryLoad.select().order_by(DictionaryLoad.id.desc()).first()
    return {
        "total": total,
        "by_category": {c: by_cat.get(c, 0) for c in CATEGORIES},
        "by_source": {s: by_source.get(s, 0) for s in SOURCES}
        | {k: v for k, v in by_source.items() if k not in SOURCES},
        "official": int(official),
        "custom": total - int(official),
        "deprecated": int(deprecated),
        "used_in_datasets": used,
        "unused": total - used,
        "dataset_tags_not_in_dictionary": dataset_distinct - used,
        "top_used": [
            {"tag": r[3] or r[0], "uses": r[1], "items": r[2], "category": r[4], "dictionary_count": r[5]}
            for r in top_rows
        ],
        "builtin_loaded": is_builtin_loaded(),
        "last_load": None
        if last is None
        else {
            "kind": last.kind,
            "source": last.source,
            "imported": last.imported,
            "loaded_at": last.loaded_at,
            "elapsed_s": last.elapsed_s,
        },
    }
