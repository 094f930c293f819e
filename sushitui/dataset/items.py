"""Listing a dataset's items: selection, sorting, paging and the ``items --json`` shape.

``select_items`` returns a Peewee select so callers (export, bulk edits) can page it,
count it or narrow it further; the query language (``sushitui.tags.query``) adds its
WHERE clauses to it. The faces call the plain functions below (``page_cards``,
``result_ids``, ``count_items``, ``caption_kinds``): the TUI builds no query of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from peewee import Field

from sushitui.errors import UserError
from sushitui.store import Item, current_database, tuple_rows

SORT_KEYS: dict[str, tuple[Field, ...]] = {
    # natural order (1, 2, 10; case and accents folded), stored at scan time and indexed
    "name": (Item.name_key,),
    "created": (Item.created_at,),
    "width": (Item.width,),
    "height": (Item.height,),
    "tags": (Item.tag_count,),
}


class ItemQueryError(UserError, ValueError):
    """The sort key or query is not valid; ``position`` is the offset in the query text."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position


def _apply_query(select, query: str, dataset_id: int | None):
    from sushitui.tags.query import apply_query  # the query language (TAG/Q), written separately

    return apply_query(select, query, dataset_id)


def select_items(dataset_id: int, query: str | None = None, sort: str = "name", desc: bool = False):
    """A select of the dataset's items, filtered by ``query`` and sorted by ``sort``
    (name | created | width | height | tags). Raises the query module's QueryError on a
    bad query and ItemQueryError on an unknown sort key."""
    if sort not in SORT_KEYS:
        raise ItemQueryError(f"unknown sort key {sort!r}; use one of {', '.join(SORT_KEYS)}")
    select = Item.select().where(Item.dataset == dataset_id)
    if query and query.strip():
        select = _apply_query(select, query, dataset_id)
    order = [k.desc() if desc else k.asc() for k in SORT_KEYS[sort]]
    order.append(Item.id.desc() if desc else Item.id.asc())
    return select.order_by(*order)


def list_items(
    dataset_id: int,
    query: str | None = None,
    sort: str = "name",
    desc: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[Item]:
    select = select_items(dataset_id, query, sort, desc)
    if limit is not None:
        select = select.limit(limit)
    if offset:
        # no LIMIT -1 for "no limit": PostgreSQL refuses it, and peewee adds it on SQLite
        select = select.offset(offset)
    return list(select)


def count_items(dataset_id: int, query: str | None = None) -> int:
    if query and query.strip():
        from sushitui.tags.query import count_matches

        return count_matches(dataset_id, query)
    return Item.select(Item.id).where(Item.dataset == dataset_id).count()


def result_ids(dataset_id: int, query: str | None = None, sort: str = "name", desc: bool = False) -> list[int]:
    """The ids of the items of a result (a dataset filtered by ``query``), in the order
    the browser shows them: what item detail's ←/→ and quick tagging walk through.
    Raises QueryError / ItemQueryError like ``select_items``."""
    select = select_items(dataset_id, query or None, sort, desc).select(Item.id)
    # the raw cursor: 100,000 ids through peewee's row conversion cost more than the query
    return [row[0] for row in current_database().execute_sql(*select.sql())]


@dataclass
class ItemCard:
    """What a browser card shows of one item. Text is raw from the index (the face
    sanitises it when drawing)."""

    item_id: int
    name: str
    tags: list[str] = field(default_factory=list)  # first tags of the main (or first) tag caption
    tag_count: int = 0
    image_path: str | None = None  # absolute; None when the item has none or it escapes the root
    stamp: int | None = None  # indexed mtime: a replaced image gets a new thumbnail cache entry
    width: int | None = None
    height: int | None = None
    problem: str | None = None  # the first problem of the item, in words
    caption: str = ""  # start of the caption text, for items without tags
    findings: int = 0  # findings of the dataset's last ``sushitui check`` (a badge on the card)
    finding_severity: str | None = None  # the worst of them: error | warning | info


CARD_TAGS = 4  # first tag positions read per card: 3 shown, a 4th tells "…"


def page_cards(
    dataset_id: int,
    query: str | None,
    sort: str = "name",
    desc: bool = False,
    offset: int = 0,
    limit: int = 50,
    *,
    root: str | None = None,
) -> list[ItemCard]:
    """One page of a result as cards: item fields, the first tags of each item's main tag
    caption (or, for an item without tags, the start of its caption text) and the number
    of findings of the last check. Five queries per page whatever its size. ``root`` is the dataset's folder (looked up when not
    given). Raises QueryError / ItemQueryError like ``select_items``."""
    from sushitui.dataset.captions import MAIN, tag_subtype_order
    from sushitui.dataset.paths import to_abs

    if root is None:
        from sushitui.store import Dataset

        root = Dataset.get_by_id(dataset_id).root_path
    select = select_items(dataset_id, query, sort, desc)
    cols = (
        Item.id,
        Item.base_name,
        Item.image_path,
        Item.mtime_ns,
        Item.width,
        Item.height,
        Item.tag_count,
        Item.problems,
    )
    # Peewee builds the SQL (query language, sort); rows are read with the raw cursor:
    # converting ~1,000 tag rows per page through peewee cost more than the queries.
    db = current_database()
    rows = db.execute_sql(*select.select(*cols).limit(limit).offset(offset).sql()).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    first: dict[int, list[str]] = {i: [] for i in ids}
    marks = ",".join("?" * len(ids))
    # The main tags; an item without any (kohya's BLIP .txt beside a WD14 .cap) shows
    # its other tag caption, picked in the order item detail lists them.
    tag_rows = db.execute_sql(
        f"SELECT item_id, subtype, tag FROM item_tag WHERE item_id IN ({marks}) "
        f"AND position <= {CARD_TAGS} ORDER BY item_id, position",
        ids,
    ).fetchall()
    by_subtype: dict[int, dict[str, list[str]]] = {i: {} for i in ids}
    for item_id, subtype, tag in tag_rows:
        by_subtype[item_id].setdefault(subtype, []).append(tag)
    for item_id, subs in by_subtype.items():
        if subs:
            shown = next((s for s in (MAIN, "") if s in subs), None) or tag_subtype_order(subs)[0]
            first[item_id] = subs[shown][:CARD_TAGS]
    # Items without tags show the start of their caption text (natural-language datasets
    # such as kohya's showed "(no tags)" on every card, as if nothing was captioned).
    untagged = [i for i in ids if not first[i]]
    texts: dict[int, str] = {}
    if untagged:
        marks = ",".join("?" * len(untagged))
        for item_id, content in db.execute_sql(
            f"SELECT item_id, substr(content, 1, 200) FROM caption WHERE item_id IN ({marks}) "
            f"AND content != '' ORDER BY item_id, subtype IN ('main', '') DESC, id",
            untagged,
        ).fetchall():
            texts.setdefault(item_id, " ".join(content.split()))
    findings = page_findings(ids)
    cards = []
    for item_id, base, image_path, mtime_ns, width, height, tag_count, problems in rows:
        try:
            path = to_abs(root, image_path) if image_path else None
        except ValueError:
            path = None
        if isinstance(problems, str):
            problems = json.loads(problems)
        problem = None
        if image_path is None:
            problem = "no image"
        elif path is None:
            problem = "unsafe image path in the index"
        elif problems:
            first_problem = problems[0] if isinstance(problems, list) else problems
            problem = first_problem.get("reason") if isinstance(first_problem, dict) else str(first_problem)
        cards.append(
            ItemCard(
                item_id=item_id,
                name=base,  # the folder is in the item detail; the base name is what tells items apart
                tags=first[item_id],
                tag_count=max(tag_count or 0, len(first[item_id])),
                image_path=str(path) if path is not None else None,
                stamp=mtime_ns,
                width=width,
                height=height,
                problem=problem,
                caption=texts.get(item_id, ""),
                findings=findings.get(item_id, (0, None))[0],
                finding_severity=findings.get(item_id, (0, None))[1],
            )
        )
    return cards


_SEVERITY_RANK = ("error", "warning", "info")  # sushitui.check.findings.SEVERITIES (a layer up)


def page_findings(item_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
    """item id -> (number of findings of the last check, the worst severity), for the items
    that have any: one query on the findings' primary key (item_id, code)."""
    if not item_ids:
        return {}
    rank = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(_SEVERITY_RANK))
    rows = (
        current_database()
        .execute_sql(
            f"SELECT item_id, COUNT(*), MIN(CASE severity {rank} ELSE {len(_SEVERITY_RANK)} END) FROM check_finding "
            f"WHERE item_id IN ({','.join('?' * len(item_ids))}) GROUP BY item_id",
            list(item_ids),
        )
        .fetchall()
    )
    return {i: (n, _SEVERITY_RANK[worst] if worst < len(_SEVERITY_RANK) else "info") for i, n, worst in rows}


def caption_kinds(dataset_id: int) -> set[str]:
    """The caption subtypes ("main" for the unsuffixed caption) and types present in a
    dataset: what an export can pick captions by."""
    from sushitui.store import Caption

    rows = list(
        tuple_rows(
            Caption.select(Caption.subtype, Caption.type)
            .join(Item)
            .where(Item.dataset == dataset_id)
            .distinct()
            .tuples()
        )
    )
    return {(sub or "main") for sub, _type in rows} | {ctype for _sub, ctype in rows if ctype}


def _chunks(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def items_to_dicts(items: Sequence[Item]) -> list[dict]:
    """The ``items --json`` shape for many items, with two queries per 500 items."""
    captions: dict[int, list[dict]] = {}
    tags: dict[int, list[dict]] = {}
    ids = [it.id for it in items]
    db = current_database()
    for chunk in _chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        cur = db.execute_sql(
            "SELECT item_id, type, subtype, source, content, file_path, source_field, encoding, encoding_flagged "
            f"FROM caption WHERE item_id IN ({marks}) ORDER BY item_id, subtype, id",
            list(chunk),
        )
        for item_id, ctype, subtype, source, content, path, source_field, enc, flagged in cur:
            d = {"type": ctype, "subtype": subtype, "source": source, "content": content}
            if path:
                d["file"] = path
            if source_field:
                d["source_field"] = source_field
            if flagged:
                d["encoding"] = enc
            captions.setdefault(item_id, []).append(d)
        cur = db.execute_sql(
            f"SELECT item_id, tag, position, subtype, source, confidence FROM item_tag WHERE item_id IN ({marks}) "
            "ORDER BY item_id, subtype, position",
            list(chunk),
        )
        for item_id, tag, pos, subtype, source, conf in cur:
            tags.setdefault(item_id, []).append(
                {"tag": tag, "position": pos, "subtype": subtype, "source": source, "confidence": conf}
            )
    out = []
    for it in items:
        d = {
            "id": it.id,
            "type": it.item_type,
            "base_name": it.base_name,
            "image": it.image_path,
            "related_images": it.related_images or {},
            "width": it.width,
            "height": it.height,
            "file_size": it.file_size,
            "sha256": it.sha256,
            "captions": captions.get(it.id, []),
            "tags": tags.get(it.id, []),
        }
        if it.problems:
            d["problems"] = it.problems
        out.append(d)
    return out


def item_to_dict(item: Item) -> dict:
    """One item in the ``items --json`` shape: id, type, base_name, image,
    related_images, width, height, file_size, sha256, captions, tags (+ problems)."""
    return items_to_dicts([item])[0]
