"""Tag aliases (TAG-2): ``girl`` → ``1girl``.

``resolve(tag)`` is applied whenever a tag is added anywhere (item editor, quick tagging,
bulk add, the auto-tagger). It is cheap: the alias table is cached in memory and reloaded
only when the database changed (``PRAGMA data_version`` for other connections, a local
generation counter for this one).

Chains are followed (``a → b`` and ``b → c`` resolve ``a`` to ``c``); adding an alias that
would close a cycle is refused.

Rewriting the captions of a dataset through the aliases is a caption edit, so it lives
with the other bulk edits in ``sushitui.dataset.bulk_edit.apply_aliases``; this module only
stores and resolves aliases.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterable

from sushitui.errors import UserError
from sushitui.store import Alias, current_database, write_transaction
from sushitui.tags.normalize import clean, dedupe, match_key

MAX_CHAIN = 16


class AliasError(UserError, ValueError):
    """An alias that cannot be added or removed; the message says why."""


@dataclass(frozen=True)
class AliasInfo:
    from_tag: str
    to_tag: str
    created_at: float


# --- the cache -------------------------------------------------------------------------

_lock = threading.Lock()
_generation = 0
_cache: dict[str, str] | None = None
_cache_key: tuple | None = None


def _invalidate() -> None:
    global _generation
    with _lock:
        _generation += 1


def alias_map() -> dict[str, str]:
    """from_norm → to_tag for the open database, reloaded when it changed. Callers that
    resolve many tags take it once and pass it to ``follow``."""
    global _cache, _cache_key
    db = current_database()
    version = db.execute_sql("PRAGMA data_version").fetchone()[0]
    key = (id(db), db.database, threading.get_ident(), version, _generation)
    with _lock:
        if _cache is not None and _cache_key == key:
            return _cache
    mapping = {a.from_norm: a.to_tag for a in Alias.select(Alias.from_norm, Alias.to_tag)}
    with _lock:
        _cache, _cache_key = mapping, key
    return mapping


# --- resolving -------------------------------------------------------------------------


def follow(mapping: dict[str, str], tag: str) -> str:
    """``tag``'s target in ``mapping`` (an ``alias_map()``), chains followed; a cycle
    stops where it closes."""
    seen = set()
    current = tag
    for _ in range(MAX_CHAIN):
        k = match_key(current)
        target = mapping.get(k)
        if target is None or k in seen:
            return current
        seen.add(k)
        current = target
    return current


def resolve(tag: str) -> str:
    """The tag to write for ``tag``: its alias target (chains followed) or itself, cleaned."""
    tag = clean(tag)
    mapping = alias_map()
    if not mapping:
        return tag
    return follow(mapping, tag)


def resolve_many(tags: Iterable[str]) -> list[str]:
    """Resolve each tag and drop the duplicates that aliasing creates, keeping order."""
    mapping = alias_map()
    if not mapping:
        return dedupe(tags)
    return dedupe(follow(mapping, clean(t)) for t in tags)


# --- managing --------------------------------------------------------------------------


def list_aliases() -> list[AliasInfo]:
    return [AliasInfo(a.from_tag, a.to_tag, a.created_at) for a in Alias.select().order_by(Alias.from_norm)]


def add_alias(from_tag: str, to_tag: str) -> AliasInfo:
    """Add (or retarget) ``from_tag`` → ``to_tag``; raises AliasError for empty tags,
    a tag aliased to itself, or a cycle."""
    src, dst = clean(from_tag), clean(to_tag)
    if not src or not dst:
        raise AliasError("both tags are needed: alias add FROM TO")
    for t in (src, dst):
        if "," in t or any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in t):
            raise AliasError(f"'{t}' is not a single tag (no commas or control characters)")
    src_key, dst_key = match_key(src), match_key(dst)
    if src_key == dst_key:
        raise AliasError(f"'{src}' and '{dst}' are the same tag")
    mapping = dict(alias_map())
    mapping[src_key] = dst
    if match_key(follow(mapping, src)) == src_key or _cycles(mapping, dst):
        raise AliasError(f"'{src}' → '{dst}' would make a cycle: '{dst}' already leads back to '{src}'")
    now = time.time()
    with write_transaction():
        Alias.insert(from_tag=src, from_norm=src_key, to_tag=dst, created_at=now).on_conflict(
            conflict_target=[Alias.from_norm], update={Alias.from_tag: src, Alias.to_tag: dst}
        ).execute()
    _invalidate()
    return AliasInfo(src, dst, now)


def _cycles(mapping: dict[str, str], start: str) -> bool:
    seen = set()
    k = match_key(start)
    while k in mapping:
        if k in seen:
            return True
        seen.add(k)
        k = match_key(mapping[k])
    return False


def remove_alias(from_tag: str) -> bool:
    """Remove the alias of ``from_tag``; False when there was none."""
    with write_transaction():
        n = Alias.delete().where(Alias.from_norm == match_key(from_tag)).execute()
    _invalidate()
    return n > 0
