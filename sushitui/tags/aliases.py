"""Tag aliases (TAG-2): ``girl`` → ``1girl``.

``resolve(tag)`` is applied whenever a tag is added anywhere (item editor, quick tagging,
bulk add, the auto-tagger). It is cheap: the alias table is cached in memory and reloaded
only when the database changed (``PRAGMA data_version`` for other connections, a local
generation counter for this one).

Chains are followed (``a → b`` and ``b → c`` resolve ``a`` to ``c``); adding an alias that
would close a cycle is refused.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from sushitui.progress import CancelToken, ProgressEvent
from sushitui.store import Alias, Dataset, Item, ItemTag, current_database, write_transaction
from sushitui.tags.normalize import clean, dedupe, match_key

MAX_CHAIN = 16


class AliasError(ValueError):
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


def _alias_map() -> dict[str, str]:
    """from_norm → to_tag for the open database, reloaded when it changed."""
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


def _follow(mapping: dict[str, str], tag: str) -> str:
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
    mapping = _alias_map()
    if not mapping:
        return tag
    return _follow(mapping, tag)


def resolve_many(tags: Iterable[str]) -> list[str]:
    """Resolve each tag and drop the duplicates that aliasing creates, keeping order."""
    mapping = _alias_map()
    if not mapping:
        return dedupe(tags)
    return dedupe(_follow(mapping, clean(t)) for t in tags)


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
    mapping = dict(_alias_map())
    mapping[src_key] = dst
    if match_key(_follow(mapping, src)) == src_key or _cycles(mapping, dst):
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


# --- one-shot application to a dataset ------------------------------------------------


@dataclass
class AliasApplyReport:
    dry_run: bool
    items_changed: int = 0
    tags_replaced: int = 0
    files: list[str] = field(default_factory=list)  # written (or that would be written)
    by_alias: dict[str, int] = field(default_factory=dict)  # "from → to": items
    problems: list[tuple[int, str | None, str]] = field(default_factory=list)  # (item id, path, reason)
    cancelled: bool = False
    elapsed: float = 0.0


def apply_to_dataset(
    dataset: Dataset | int | str,
    *,
    dry_run: bool = False,
    subtypes: Sequence[str] | None = None,
    progress=None,
    cancel: CancelToken | None = None,
) -> AliasApplyReport:
    """Rewrite the tags of a dataset's items through the aliases (every tag caption, or
    only ``subtypes``); ``dry_run`` counts the items and files without writing."""
    from sushitui.tags.bulk import edit_items, resolve_dataset

    t0 = time.perf_counter()
    ds = resolve_dataset(dataset)
    report = AliasApplyReport(dry_run=dry_run)
    mapping = _alias_map()
    if not mapping:
        report.elapsed = time.perf_counter() - t0
        return report
    keys = list(mapping)
    affected: dict[str, set[int]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        q = (
            ItemTag.select(ItemTag.item, ItemTag.subtype)
            .join(Item, on=(ItemTag.item == Item.id))
            .where((Item.dataset == ds.id) & ItemTag.norm.in_(chunk))
        )
        if subtypes:
            q = q.where(ItemTag.subtype.in_(list(subtypes)))
        for item_id, subtype in q.tuples():
            affected.setdefault(subtype, set()).add(item_id)

    def rewrite(tags: list[str]) -> list[str]:
        out = []
        for t in tags:
            target = _follow(mapping, t)
            if target != t:
                report.tags_replaced += 1
                label = f"{t} → {target}"
                report.by_alias[label] = report.by_alias.get(label, 0) + 1
            out.append(target)
        return dedupe(out)

    total = sum(len(v) for v in affected.values())
    done = 0
    started = time.monotonic()
    for subtype, ids in sorted(affected.items()):
        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(ProgressEvent("aliases", done, total, unit="items", started_at=started))

        sub = edit_items(sorted(ids), rewrite, subtype=subtype, dry_run=dry_run, on_batch=step, cancel=cancel)
        report.items_changed += sub.items_changed
        report.files.extend(sub.files)
        report.problems.extend(sub.problems)
        if sub.cancelled:
            report.cancelled = True
            break
    report.elapsed = time.perf_counter() - t0
    return report
