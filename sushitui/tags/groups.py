"""Tag groups (TAG-1): named, coloured sets of tags. They colour tag pills and drive
``group:NAME`` queries and export exclusions.

A new database gets the seven default groups with their colours and the group
definitions shipped in ``taglist/groups/*.json`` (``ensure_default_groups``, called by the
CLI and the TUI at start: one indexed read once done). Members are stored by match key,
so ``long_hair`` and ``Long Hair`` are one member.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from peewee import fn

from sushitui.errors import UserError
from sushitui.store import TagGroup, TagGroupMember, current_database, tuple_rows, write_transaction
from sushitui.store.models import AppSetting
from sushitui.tags.normalize import clean, match_key

# TAG-1: the initial groups and their colours
DEFAULT_GROUPS: list[tuple[str, str, str]] = [
    ("Character", "#FF6B9D", "Character names"),
    ("Copyright", "#4ECDC4", "Series, games and other works"),
    ("Artist", "#FFE66D", "Artists"),
    ("General", "#95E1D3", "General content tags"),
    ("Quality", "#A8E6CF", "Quality and aesthetic tags"),
    ("Rating", "#FF6F69", "Content rating"),
    ("Meta", "#C7CEEA", "Metadata about the image (resolution, text, artefacts)"),
]
INITIALISED_KEY = "tag_groups_initialised"
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
MAX_NAME = 100


class GroupError(UserError, ValueError):
    """A group operation that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class GroupInfo:
    id: int
    name: str
    color: str
    description: str
    sort_order: int
    tag_count: int


@dataclass
class ImportReport:
    groups_created: list[str] = field(default_factory=list)
    groups_updated: list[str] = field(default_factory=list)
    tags_added: int = 0
    tags_already: int = 0
    problems: list[str] = field(default_factory=list)  # "where: reason"


# --- validation ------------------------------------------------------------------------


def normalize_color(color: str) -> str:
    """``#rgb`` / ``rrggbb`` / ``#RRGGBB`` → ``#RRGGBB``; GroupError otherwise."""
    m = _HEX.match((color or "").strip())
    if not m:
        raise GroupError(f"'{color}' is not a colour: use #RRGGBB, e.g. #FF6B9D")
    h = m.group(1)
    if len(h) == 3:
        h = "".join(ch * 2 for ch in h)
    return "#" + h.upper()


def _check_name(name: str) -> str:
    n = clean(name or "")
    if not n:
        raise GroupError("a group needs a name")
    if len(n) > MAX_NAME or any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in n) or "," in n:
        raise GroupError(
            f"'{n[:40]}' is not a usable group name (no commas or control characters, at most {MAX_NAME} characters)"
        )
    return n


_BAD_TAG_CHAR = re.compile("[\x00-\x1f\x7f\ud800-\udfff,]")


def _check_tag(tag: Any) -> str | None:
    """The cleaned tag, or None when it is empty or has a comma, a control character or
    a lone surrogate (a regex: a new database checks ~13,000 shipped tags)."""
    if not isinstance(tag, str):
        return None
    t = clean(tag)
    if not t or _BAD_TAG_CHAR.search(t):
        return None
    return t


def _find(name: str) -> TagGroup | None:
    return TagGroup.select().where(fn.lower(TagGroup.name) == clean(name).lower()).first()


def get_group(name: str) -> TagGroup:
    g = _find(name)
    if g is None:
        raise GroupError(f"no tag group named '{name}' (see `sushitui group list`)")
    return g


# --- listing and editing ---------------------------------------------------------------


def list_groups() -> list[GroupInfo]:
    counts: dict[int, int] = dict(
        tuple_rows(
            TagGroupMember.select(TagGroupMember.group, fn.COUNT(TagGroupMember.norm))
            .group_by(TagGroupMember.group)
            .tuples()
        )
    )
    return [
        GroupInfo(g.id, g.name, g.color, g.description, g.sort_order, counts.get(g.id, 0))
        for g in TagGroup.select().order_by(TagGroup.sort_order, TagGroup.name)
    ]


def add_group(name: str, color: str | None = None, description: str = "") -> GroupInfo:
    n = _check_name(name)
    c = normalize_color(color) if color else "#95E1D3"
    with write_transaction():
        if _find(n) is not None:
            raise GroupError(f"a group named '{n}' already exists")
        last = TagGroup.select(fn.MAX(TagGroup.sort_order)).scalar() or 0
        g = TagGroup.create(name=n, color=c, description=description or "", sort_order=last + 1, created_at=time.time())
    _invalidate()
    return GroupInfo(g.id, g.name, g.color, g.description, g.sort_order, 0)


def rename_group(old: str, new: str) -> None:
    n = _check_name(new)
    with write_transaction():
        g = get_group(old)
        other = _find(n)
        if other is not None and other.id != g.id:
            raise GroupError(f"a group named '{n}' already exists")
        TagGroup.update(name=n).where(TagGroup.id == g.id).execute()
    _invalidate()


def remove_group(name: str) -> int:
    """Delete a group (its members go with it; tags on items are untouched). Returns the
    number of member tags it had."""
    with write_transaction():
        g = get_group(name)
        n = TagGroupMember.select().where(TagGroupMember.group == g.id).count()
        TagGroupMember.delete().where(TagGroupMember.group == g.id).execute()
        TagGroup.delete().where(TagGroup.id == g.id).execute()
    _invalidate()
    return n


def set_color(name: str, color: str) -> str:
    c = normalize_color(color)
    with write_transaction():
        g = get_group(name)
        TagGroup.update(color=c).where(TagGroup.id == g.id).execute()
    _invalidate()
    return c


def group_tags(name: str) -> list[str]:
    g = get_group(name)
    return [
        m.tag
        for m in TagGroupMember.select(TagGroupMember.tag)
        .where(TagGroupMember.group == g.id)
        .order_by(TagGroupMember.norm)
    ]


def _insert_members(group_id: int, tags: Iterable[str], new_group: bool = False) -> tuple[int, int]:
    """(added, already there) — caller holds a write transaction. ``new_group``: the
    group was created in this transaction, so none of the tags can be there yet."""
    rows: dict[str, str] = {}
    for t in tags:
        rows.setdefault(match_key(t), t)
    if not rows:
        return 0, 0
    keys = list(rows)
    existing: set[str] = set()
    if not new_group and not TagGroupMember.select().where(TagGroupMember.group == group_id).exists():
        # an empty group (the default groups a first start has just created) has no tag to
        # look up: peewee building the IN lists for ~13,000 tags was a third of a first start
        new_group = True
    for start in range(0, 0 if new_group else len(keys), 500):
        chunk = keys[start : start + 500]
        existing.update(
            r[0]
            for r in tuple_rows(
                TagGroupMember.select(TagGroupMember.norm)
                .where((TagGroupMember.group == group_id) & TagGroupMember.norm.in_(chunk))
                .tuples()
            )
        )
    new = [(group_id, rows[k], k) for k in keys if k not in existing]
    if new:
        # one statement run per row: peewee building a 500-row VALUES list cost most of
        # a new database's first start (~13,000 shipped tags, 0.6 s)
        sql, _ = TagGroupMember.insert(group=group_id, tag="", norm="").sql()
        TagGroupMember._meta.database.cursor().executemany(sql, new)
    return len(new), len(existing)


def add_tags(name: str, tags: Iterable[str]) -> tuple[int, list[str]]:
    """Add tags to a group; returns (added, rejected tags)."""
    good: list[str] = []
    bad: list[str] = []
    for t in tags:
        c = _check_tag(t)
        (good if c else bad).append(c or str(t))
    with write_transaction():
        g = get_group(name)
        added, _ = _insert_members(g.id, good)
    _invalidate()
    return added, bad


def remove_tags(name: str, tags: Iterable[str]) -> int:
    keys = list({match_key(t) for t in tags if isinstance(t, str) and clean(t)})
    removed = 0
    with write_transaction():
        g = get_group(name)
        for start in range(0, len(keys), 500):
            removed += (
                TagGroupMember.delete()
                .where((TagGroupMember.group == g.id) & TagGroupMember.norm.in_(keys[start : start + 500]))
                .execute()
            )
    _invalidate()
    return removed


# --- colours for tag pills -------------------------------------------------------------

_lock = threading.Lock()
_generation = 0
_colors: dict[str, str] | None = None
_colors_key: tuple | None = None


def _invalidate() -> None:
    global _generation
    with _lock:
        _generation += 1


def group_colors() -> dict[str, str]:
    """{match key: "#RRGGBB"} for every grouped tag; a tag in several groups takes the
    colour of the first group in list order. Cached until the database changes."""
    global _colors, _colors_key
    db = current_database()
    version = db.execute_sql("PRAGMA data_version").fetchone()[0]
    key = (id(db), db.database, threading.get_ident(), version, _generation)
    with _lock:
        if _colors is not None and _colors_key == key:
            return _colors
    rows = (
        TagGroupMember.select(TagGroupMember.norm, TagGroup.color)
        .join(TagGroup, on=(TagGroupMember.group == TagGroup.id))
        .order_by(TagGroup.sort_order.desc(), TagGroup.name.desc())
        .tuples()
    )
    colors: dict[str, str] = dict(tuple_rows(rows))  # later rows win: iterate from the last group to the first
    with _lock:
        _colors, _colors_key = colors, key
    return colors


def groups_of(tag: str) -> list[str]:
    """Names of the groups a tag belongs to, in list order."""
    q = (
        TagGroup.select(TagGroup.name)
        .join(TagGroupMember, on=(TagGroupMember.group == TagGroup.id))
        .where(TagGroupMember.norm == match_key(tag))
        .order_by(TagGroup.sort_order, TagGroup.name)
    )
    return [g.name for g in q]


# --- import ----------------------------------------------------------------------------


def _ref_tags(base: Path, ref: str, where: str, report: ImportReport) -> list[str]:
    rel = ref.split(":", 1)[1].strip()
    path = (base / rel).resolve()
    if not path.is_relative_to(base.resolve()):
        report.problems.append(f"{where}: reference {rel} points outside the file's folder; skipped")
        return []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        report.problems.append(f"{where}: referenced file {rel} does not exist; skipped")
        return []
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if any("," in ln for ln in lines):
        report.problems.append(f"{where}: {rel} holds captions, not one tag per line; skipped")
        return []
    return lines


def _leaf_tags(node: Any, where: str, base: Path | None, report: ImportReport) -> list[str]:
    """All tags under a (possibly nested) node of a group tree."""
    out: list[str] = []
    if isinstance(node, list):
        for i, t in enumerate(node):
            if isinstance(t, str) and t.startswith("$ref:"):
                if base is None:
                    report.problems.append(f"{where}[{i}]: a $ref needs the file on disk; skipped")
                else:
                    out.extend(_ref_tags(base, t, f"{where}[{i}]", report))
            elif isinstance(t, str):
                out.append(t)
            else:
                report.problems.append(f"{where}[{i}]: {type(t).__name__} is not a tag; skipped")
    elif isinstance(node, dict):
        for k, v in node.items():
            out.extend(_leaf_tags(v, f"{where}/{k}", base, report))
    elif isinstance(node, str):
        out.append(node)
    else:
        report.problems.append(f"{where}: {type(node).__name__} is not a tag list; skipped")
    return out


def _specs(data: Any, base: Path | None, report: ImportReport) -> list[dict]:
    """Normalise the accepted shapes into [{name, color, description, tags}]."""
    if isinstance(data, dict) and isinstance(data.get("groups"), list):
        specs = []
        for i, g in enumerate(data["groups"]):
            if not isinstance(g, dict) or not isinstance(g.get("name"), str):
                report.problems.append(f'groups[{i}]: needs a "name"; skipped')
                continue
            specs.append(
                {
                    "name": g["name"],
                    "color": g.get("color"),
                    "description": g.get("description") or "",
                    "tags": _leaf_tags(g.get("tags", []), g["name"], base, report),
                }
            )
        return specs
    if isinstance(data, dict):
        specs = []
        for name, value in data.items():
            if isinstance(value, dict) and isinstance(value.get("tags"), list):
                specs.append(
                    {
                        "name": name,
                        "color": value.get("color"),
                        "description": value.get("description") or "",
                        "tags": _leaf_tags(value["tags"], name, base, report),
                    }
                )
            else:  # a list, or a nested tree flattened into its top-level name
                specs.append(
                    {"name": name, "color": None, "description": "", "tags": _leaf_tags(value, name, base, report)}
                )
        return specs
    report.problems.append('the file is neither {"groups": [...]} nor {"Group name": [tags]}; nothing imported')
    return []


MAX_JSON_DEPTH = 64  # group files nest 3-5 levels (tag_tree.json: 5); far deeper is not a group file
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True when arrays/objects in ``text`` nest deeper than ``limit`` (brackets inside
    strings do not count). Checked before parsing: the parser and the tree walk recurse
    once per level, and a file nested thousands deep would exhaust Python's stack."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        ch = m.group(0)
        if ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def import_groups(source: str | Path | dict, *, default_color: str = "#95E1D3") -> ImportReport:
    """Import group definitions from a JSON file (or parsed data).

    Accepted shapes: ``{"groups": [{"name", "color", "description", "tags"}]}``,
    ``{"Name": [tags]}``, ``{"Name": {"color", "tags"}}``, and nested trees such as
    jtreminio's tag_tree.json (leaves are flattened into the top-level group;
    ``"$ref: file.txt"`` leaves are read relative to the file). Existing groups (by
    name, case-insensitive) gain the new tags; a colour in the file replaces theirs.
    Bad rows are reported, not fatal.
    """
    report = ImportReport()
    base: Path | None = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8-sig")
            if json_depth_exceeds(text, MAX_JSON_DEPTH):
                raise GroupError(
                    f"{path}: nested too deeply (limit {MAX_JSON_DEPTH}); a group file is "
                    '{"Group": [tags]} or a tag tree a few levels deep'
                )
            data = json.loads(text)
        except FileNotFoundError as exc:
            raise GroupError(f"{path}: no such file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise GroupError(f"{path}: cannot read it ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise GroupError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        base = path.parent
    else:
        data = source
    specs = _specs(data, base, report)
    with write_transaction():
        last = TagGroup.select(fn.MAX(TagGroup.sort_order)).scalar() or 0
        for spec in specs:
            try:
                name = _check_name(spec["name"])
                color = normalize_color(spec["color"]) if spec.get("color") else None
            except GroupError as exc:
                report.problems.append(f"{str(spec['name'])[:60]}: {exc}; skipped")
                continue
            good = []
            for t in spec["tags"]:
                c = _check_tag(t)
                if c is None:
                    report.problems.append(
                        f"{name}: {str(t)[:60]!r} is not a tag (empty, a comma or a control character); skipped"
                    )
                else:
                    good.append(c)
            g = _find(name)
            created = g is None
            if g is None:
                last += 1
                g = TagGroup.create(
                    name=name,
                    color=color or default_color,
                    description=spec.get("description") or "",
                    sort_order=last,
                    created_at=time.time(),
                )
                report.groups_created.append(name)
            else:
                if color and color != g.color:
                    TagGroup.update(color=color).where(TagGroup.id == g.id).execute()
                report.groups_updated.append(name)
            added, already = _insert_members(g.id, good, new_group=created)
            report.tags_added += added
            report.tags_already += already
    _invalidate()
    return report


# --- first start -----------------------------------------------------------------------


def ensure_default_groups(taglist: str | Path | None = None) -> ImportReport | None:
    """Create the default groups and import ``taglist/groups/*.json`` once per database.

    Returns the import report when it did the work, None when it was already done (a
    single indexed read: cheap to call at every start). Groups a user deleted later are
    not re-created.
    """
    if AppSetting.get_or_none(AppSetting.key == INITIALISED_KEY) is not None:
        return None
    if taglist is None:
        from sushitui.config import taglist_dir

        taglist = taglist_dir()
    folder = Path(taglist) / "groups"
    report = ImportReport()
    with write_transaction():
        if AppSetting.get_or_none(AppSetting.key == INITIALISED_KEY) is not None:
            return None  # another process did it meanwhile
        for order, (name, color, description) in enumerate(DEFAULT_GROUPS):
            if _find(name) is None:
                TagGroup.create(
                    name=name, color=color, description=description, sort_order=order, created_at=time.time()
                )
                report.groups_created.append(name)
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        for path in files:
            try:
                sub = import_groups(path)
            except GroupError as exc:
                report.problems.append(str(exc))
                continue
            report.groups_created.extend(g for g in sub.groups_created if g not in report.groups_created)
            report.tags_added += sub.tags_added
            report.problems.extend(f"{path.name}: {p}" for p in sub.problems)
        AppSetting.insert(
            key=INITIALISED_KEY, value={"files": [p.name for p in files], "at": time.time()}, updated_at=time.time()
        ).on_conflict_replace().execute()
    _invalidate()
    return report
