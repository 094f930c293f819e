"""Listing a dataset's items: selection, sorting, paging and the ``items --json`` shape.

``select_items`` returns a Peewee select so callers (browser, export, bulk edits) can
page it, count it or narrow it further; the query language (``sushitui.tags.query``)
adds its WHERE clauses to it.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from sushitui.errors import UserError
from sushitui.store import Item, current_database

SORT_KEYS = {
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
        select = select.offset(offset) if limit is not None else select.limit(-1).offset(offset)
    return list(select)


def count_items(dataset_id: int, query: str | None = None) -> int:
    if query and query.strip():
        from sushitui.tags.query import count_matches

        return count_matches(dataset_id, query)
    return Item.select(Item.id).where(Item.dataset == dataset_id).count()


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
