"""Tag autocomplete (TAG-7) that keeps up with typing on a ~1M-tag dictionary.

``Completer.complete(text, dataset_id, limit)`` returns candidates in this order:

1. prefix matches — the dataset's own tags by frequency, then dictionary tags by count;
2. substring matches and alias matches — dataset tags first, then dictionary tags and
   aliases by count. An alias candidate names its target in ``alias_of``; choosing it
   means the target (``Candidate.value``).

Prefixes come first but may take at most ``limit - limit // 3`` slots when there are
substring/alias candidates (with limit 10: 7 + 3), so a common prefix cannot hide them
(``miku`` offers ``hatsune_miku``); slots either class leaves free go to the other.

Index (built lazily in a background thread, swapped in atomically, read without locks):

- every dictionary match key, UTF-8, joined by ``\\n`` into one bytes blob in *count
  order* (rank 0 = most used), so "first k matches in rank order" = "top k by count";
- ``by_norm``: ranks sorted by key (from SQLite's ``norm`` index); a prefix is a
  ``bisect`` range of it, and its top k is the k smallest ranks (``np.partition``);
- a byte-trigram inverted index (CSR arrays built with one numpy sort) for substrings
  of ≥ 3 bytes: intersect the postings, verify the few candidates; 1–2 byte substrings
  scan the blob with ``bytes.find`` (memchr speed), stopping at k hits.

Until the index is ready, prefix candidates come from SQLite's ``norm`` index, so the
first keystroke after start is answered at once. Nothing here touches Textual.

Translations (issue 22, ``sushitui.tags.translations``) have an index of their own,
rebuilt when they change: per language, the search keys of every translation and reading
in the count order of their tags (a ``_SmallSet``). Typing 猫耳 or ねこ offers
``cat_ears`` (``match="translation"``, ``translation="猫耳"``); what is typed in another
script than ASCII puts those candidates first, an ASCII query only fills free slots with
them. Every candidate carries its translation in the display language when it has one.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

from peewee import OperationalError

from sushitui.store import current_database
from sushitui.tags.normalize import is_kaomoji, match_key
from sushitui.tags.translations import search_key

log = logging.getLogger(__name__)

CATEGORY_CODES = ("general", "artist", "copyright", "character", "meta", "model")
_CODE = {c: i for i, c in enumerate(CATEGORY_CODES)}
DATASET_TTL_S = 5.0
SHORT_SCAN_TOP = 100_000  # most-used tags a 1-2 letter substring scans once prefixes fill their share

# bumped by sushitui.tags.dictionary after every write; completers rebuild when it moves
_generation = 0
# bumped by sushitui.tags.translations (imports, removals, the display language)
_translation_generation = 0


def dictionary_changed() -> None:
    """Tell every completer in this process that the dictionary was written."""
    global _generation
    _generation += 1


def translations_changed() -> None:
    """Tell every completer that the translations (or the display language) changed."""
    global _translation_generation
    _translation_generation += 1


@dataclass(frozen=True)
class Candidate:
    tag: str  # what matched: a tag, or an alias when ``alias_of`` is set
    category: str | None
    count: int  # dictionary count, or uses in the dataset for dataset tags
    source: str  # "dataset" | "dictionary"
    alias_of: str | None = None
    match: str = "prefix"  # prefix | substring | alias | translation
    translation: str | None = None  # the tag's name in the display language (or the one matched)
    reading: str | None = None  # the matched translation's reading, when the file gave one

    @property
    def value(self) -> str:
        """The tag to insert when this candidate is chosen (aliases resolve to their target)."""
        return self.alias_of or self.tag

    def to_dict(self) -> dict:
        out = {
            "tag": self.tag,
            "category": self.category,
            "count": self.count,
            "source": self.source,
            "alias_of": self.alias_of,
            "match": self.match,
            "value": self.value,
        }
        # only when there are translations: the output stays what it was without them
        out.update({k: v for k, v in (("translation", self.translation), ("reading", self.reading)) if v})
        return out


def query_key(text: str) -> str:
    """The match key of what is typed; a trailing ``_``/space is kept (``long_`` → ``long ``)."""
    key = match_key(text)
    if key and text[-1:] in ("_", " ") and not is_kaomoji(text.strip()):
        key += " "
    return key


_Payload = TypeVar("_Payload")


class _SmallSet(Generic[_Payload]):
    """Keys with payloads in ranking order (dataset tags by frequency, aliases by their
    target's count): prefix by ``bisect`` over the sorted keys, substring by
    ``str.find`` over all keys joined in ranking order (C speed, stops at ``limit``)."""

    def __init__(self, entries: Sequence[tuple[str, _Payload]]):
        self.entries = list(entries)
        order = sorted(range(len(self.entries)), key=lambda i: self.entries[i][0])
        self.sorted_keys = [self.entries[i][0] for i in order]
        self.sorted_pos = order
        self.blob = "\n".join(k for k, _ in self.entries) + "\n"
        self.starts = []
        pos = 0
        for k, _ in self.entries:
            self.starts.append(pos)
            pos += len(k) + 1

    def prefix(self, key: str, limit: int) -> list[int]:
        import heapq

        lo = bisect.bisect_left(self.sorted_keys, key)
        hi = bisect.bisect_left(self.sorted_keys, key + "\U0010ffff", lo)
        return heapq.nsmallest(limit, self.sorted_pos[lo:hi])

    def substring(self, key: str, limit: int) -> list[int]:
        """Positions of keys containing ``key`` but not starting with it, best first."""
        out: list[int] = []
        if "\n" in key:
            return out
        pos = self.blob.find(key)
        while pos >= 0 and len(out) < limit:
            i = bisect.bisect_right(self.starts, pos) - 1
            if pos != self.starts[i]:
                out.append(i)
            nxt = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.blob)
            pos = self.blob.find(key, nxt)
        return out


class _KeyView:
    """The dictionary keys in sorted order, as a sequence ``bisect`` can search."""

    def __init__(self, index: "_DictIndex"):
        self.index = index

    def __len__(self) -> int:
        return self.index.n

    def __getitem__(self, i: int) -> bytes:
        return self.index.key_bytes(int(self.index.by_norm[i]))


class _DictIndex:
    def __init__(self, db) -> None:
        import numpy as np

        # One row of group_concat'ed columns instead of ~1M Python row tuples: SQLite
        # builds the big strings in C, in the (count DESC, id DESC) order of its index.
        cases = " ".join(f"WHEN '{c}' THEN '{i}'" for i, c in enumerate(CATEGORY_CODES))
        norms, tags, counts, cats, ids, n = db.execute_sql(
            "SELECT group_concat(norm, char(10)), group_concat(tag, char(10)), group_concat(count), "
            f"group_concat(CASE category {cases} ELSE '0' END, ''), group_concat(id), COUNT(*) "
            "FROM (SELECT norm, tag, count, category, id FROM dictionary_tag ORDER BY count DESC, id DESC)"
        ).fetchone()
        self.n = n
        if n == 0:
            norms = tags = counts = cats = ids = ""
        self.blob, self.offsets = self._join(norms)
        self.tag_blob, self.tag_offsets = self._join(tags)
        self.counts = self._ints(counts, n)
        self.cats = (np.frombuffer(cats.encode("ascii"), np.uint8) - 48).astype(np.int8)
        ids = self._ints(ids, n)
        # ranks in key order (SQLite's BINARY collation = UTF-8 byte order = bytes order)
        rank_of_id = np.zeros(int(ids.max()) + 1 if n else 1, np.int32)
        rank_of_id[ids] = np.arange(n, dtype=np.int32)
        (sorted_ids,) = db.execute_sql(
            "SELECT group_concat(id) FROM (SELECT id FROM dictionary_tag ORDER BY norm)"
        ).fetchone()
        self.by_norm = rank_of_id[self._ints(sorted_ids or "", n)]
        self.keys = _KeyView(self)
        aliases: list[tuple[int, str, str]] = []
        for tag_id, text in db.execute_sql("SELECT id, aliases FROM dictionary_tag WHERE aliases != ''"):
            rank = int(rank_of_id[tag_id])
            for a in text.split(","):
                if a:
                    aliases.append((rank, match_key(a), a))
        aliases.sort()
        self.aliases = _SmallSet([(key, (alias, rank)) for rank, key, alias in aliases])
        del norms, tags, counts, cats
        self._build_trigrams()

    @staticmethod
    def _ints(text: str, n: int):
        import numpy as np

        if n == 0:
            return np.zeros(0, np.int64)
        # parsed in C: a list of ~1M small str objects would stay in Python's allocator (RSS)
        return np.fromstring(text, dtype=np.int64, sep=",")

    @staticmethod
    def _join(text: str):
        import numpy as np

        blob = (text + "\n").encode("utf-8") if text else b""
        arr = np.frombuffer(blob, np.uint8)
        ends = np.flatnonzero(arr == 10)
        offsets = np.concatenate(([0], ends + 1)).astype(np.int64)
        return blob, offsets

    def _build_trigrams(self) -> None:
        import numpy as np

        a = np.frombuffer(self.blob, np.uint8)
        if len(a) < 3:
            self.tri_codes = np.zeros(0, np.uint32)
            self.tri_starts = np.zeros(1, np.int64)
            self.tri_post = np.zeros(0, np.int32)
            return
        nl = a == 10
        valid = ~(nl[:-2] | nl[1:-1] | nl[2:])
        # the rank owning each byte: rank r repeated over its key and its newline
        rank = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.offsets))[:-2][valid]
        codes = (a[:-2][valid].astype(np.int64) << 16) | (a[1:-1][valid].astype(np.int64) << 8) | a[2:][valid]
        keys = (codes << 32) | rank
        del codes, rank, valid, nl
        keys.sort()
        keep = np.empty(len(keys), bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
        self.tri_post = (keys & 0xFFFFFFFF).astype(np.int32)
        kc = keys >> 32
        del keys
        change = np.flatnonzero(kc[1:] != kc[:-1]) + 1
        self.tri_starts = np.concatenate(([0], change, [len(kc)])).astype(np.int64)
        self.tri_codes = kc[self.tri_starts[:-1]]

    # -- lookups -------------------------------------------------------------------------

    def key_bytes(self, rank: int) -> bytes:
        return self.blob[self.offsets[rank] : self.offsets[rank + 1] - 1]

    def tag(self, rank: int) -> str:
        return self.tag_blob[self.tag_offsets[rank] : self.tag_offsets[rank + 1] - 1].decode("utf-8")

    def category(self, rank: int) -> str:
        return CATEGORY_CODES[int(self.cats[rank])]

    def find(self, key: str) -> int | None:
        kb = key.encode("utf-8")
        i = bisect.bisect_left(self.keys, kb)
        if i < self.n and self.keys[i] == kb:
            return int(self.by_norm[i])
        return None

    def prefix_range(self, kb: bytes) -> tuple[int, int]:
        lo = bisect.bisect_left(self.keys, kb)
        hi = bisect.bisect_left(self.keys, kb + b"\xff", lo)  # no UTF-8 byte is 0xff
        return lo, hi

    def prefix(self, key: str, limit: int) -> list[int]:
        import numpy as np

        lo, hi = self.prefix_range(key.encode("utf-8"))
        ranks = self.by_norm[lo:hi]
        if len(ranks) > limit:
            ranks = np.partition(ranks, limit - 1)[:limit]
        return sorted(int(r) for r in ranks)

    def _postings(self, code: int):
        import numpy as np

        i = int(np.searchsorted(self.tri_codes, code))
        if i >= len(self.tri_codes) or int(self.tri_codes[i]) != code:
            return self.tri_post[0:0]
        return self.tri_post[self.tri_starts[i] : self.tri_starts[i + 1]]

    def substring(self, key: str, limit: int, top: int | None = None) -> list[int]:
        """Ranks (best first) of keys containing ``key`` but not starting with it; for a
        1–2 byte key, ``top`` limits the scan to that many most-used tags."""
        import numpy as np

        kb = key.encode("utf-8")
        out: list[int] = []
        if len(kb) < 3:
            end = len(self.blob) if top is None or top >= self.n else int(self.offsets[top])
            pos = self.blob.find(kb, 0, end)
            while 0 <= pos and len(out) < limit:
                rank = int(np.searchsorted(self.offsets, pos, side="right")) - 1
                start = int(self.offsets[rank])
                if pos != start:
                    out.append(rank)
                pos = self.blob.find(kb, int(self.offsets[rank + 1]), end)
            return out
        codes = {(kb[i] << 16) | (kb[i + 1] << 8) | kb[i + 2] for i in range(len(kb) - 2)}
        lists = sorted((self._postings(c) for c in codes), key=len)
        cand = lists[0]
        for other in lists[1:]:
            if not len(cand):
                break
            idx = np.searchsorted(other, cand)
            idx[idx >= len(other)] = 0
            cand = cand[other[idx] == cand]
        # verify in small slices: a common trigram's postings run to 100k+ ranks, and
        # converting them all to a Python list cost more than the whole lookup
        for start in range(0, len(cand), 256):
            for rank in cand[start : start + 256].tolist():
                if self.key_bytes(rank).find(kb) > 0:
                    out.append(rank)
                    if len(out) >= limit:
                        return out
        return out


class _TranslationIndex:
    """Every translation and reading, per language, in the count order of its tag (tags
    not in the dictionary last). Row ``i`` holds one translation; ``by_lang[lang]`` is a
    ``_SmallSet`` of (search key, row); ``first[lang]`` maps a tag's match key to its
    first translation (what is shown beside a candidate)."""

    def __init__(self, db) -> None:
        from sushitui.tags.translations import preferred_lang

        rows = db.execute_sql(
            "SELECT t.norm, COALESCE(d.tag, t.tag), t.lang, t.text, t.text_key, t.reading, t.reading_key, "
            "d.category, COALESCE(d.count, 0), d.id IS NULL "
            "FROM tag_translation t LEFT JOIN dictionary_tag d ON d.norm = t.norm "
            "ORDER BY d.id IS NULL, d.count DESC, t.norm, t.position"
        ).fetchall()
        self.n = len(rows)
        self.norm = [r[0] for r in rows]
        self.tag = [r[1] for r in rows]
        self.text = [r[3] for r in rows]
        self.reading = [r[5] for r in rows]
        self.category = [r[7] for r in rows]
        self.count = [r[8] for r in rows]
        per_lang: dict[str, list[tuple[str, int]]] = {}
        self.first: dict[str, dict[str, str]] = {}
        for i, r in enumerate(rows):
            entries = per_lang.setdefault(r[2], [])
            entries.append((r[4], i))
            if r[6] and r[6] != r[4]:
                entries.append((r[6], i))  # the reading: typing ねこ finds 猫耳 (ねこみみ)
            self.first.setdefault(r[2], {}).setdefault(r[0], r[3])
        self.by_lang = {lang: _SmallSet(entries) for lang, entries in per_lang.items()}
        self.langs = sorted(per_lang, key=lambda lang: -len(self.first[lang]))
        self.display_lang = preferred_lang() if self.n else None

    def find(self, key: str, langs: list[str], limit: int) -> list[int]:
        """Rows best first: translations (or readings) starting with ``key`` by their
        tag's count, then those containing it."""
        out: list[int] = []
        for kind in ("prefix", "substring"):
            found: list[int] = []
            for lang in langs:
                small = self.by_lang.get(lang)
                if small is None:
                    continue
                positions = small.prefix(key, limit * 2) if kind == "prefix" else small.substring(key, limit * 2)
                found += [small.entries[p][1] for p in positions]
            found.sort()
            out += found
        return out

    def candidate(self, row: int) -> tuple[Candidate, str]:
        source = "dictionary" if self.category[row] is not None else "translations"  # None: not in the dictionary
        return Candidate(
            self.tag[row],
            self.category[row],
            self.count[row],
            source,
            None,
            "translation",
            self.text[row],
            self.reading[row],
        ), self.norm[row]


class Completer:
    """Thread-safe candidate source; one per app (or per process via ``get_completer``)."""

    def __init__(self, db=None) -> None:
        self._db = db
        self._index: _DictIndex | None = None
        self._index_generation = -1
        self._index_db = None  # the database the index was built from (tests open several)
        self._tindex: _TranslationIndex | None = None
        self._tindex_generation: tuple[int, int] = (-1, -1)
        self._tindex_db = None
        self._building: threading.Thread | None = None
        self._lock = threading.Lock()
        self._datasets: dict[int, tuple[float, _SmallSet[tuple[str, int]]]] = {}
        self._dataset_loading: set[int] = set()
        self.build_seconds: float | None = None

    # -- index management ----------------------------------------------------------------

    def _database(self):
        return self._db or current_database()

    @property
    def ready(self) -> bool:
        return self._dict_ready() and self._translations_ready()

    def _dict_ready(self) -> bool:
        return self._index is not None and self._index_generation == _generation and self._index_db is self._database()

    def _translations_ready(self) -> bool:
        return (
            self._tindex is not None
            and self._tindex_generation == (_generation, _translation_generation)
            and self._tindex_db is self._database()
        )

    def warm(self, dataset_id: int | None = None, wait: bool = False) -> None:
        """Start building the dictionary index (and load the dataset's tags) in the
        background; ``wait`` blocks until done (tests, benchmarks)."""
        thread = self._ensure_building()
        if dataset_id is not None:
            self._dataset(dataset_id, wait=wait)
        if wait and thread is not None:
            thread.join()

    def invalidate(self, dataset_id: int | None = None) -> None:
        """Forget cached dataset tags (after an edit) so the next call reloads them."""
        with self._lock:
            if dataset_id is None:
                self._datasets.clear()
            else:
                self._datasets.pop(dataset_id, None)

    def _ensure_building(self) -> threading.Thread | None:
        with self._lock:
            if self.ready:
                return None
            if self._building is not None and self._building.is_alive():
                return self._building
            if self._index_db is not self._database():
                self._datasets.clear()
            gen = _generation
            t = threading.Thread(
                target=self._build, args=(gen, _translation_generation), name="sushitui-autocomplete-index", daemon=True
            )
            self._building = t
            t.start()
            return t

    def _build(self, generation: int, translation_generation: int) -> None:
        started = time.perf_counter()
        db = self._database()
        index = tindex = None
        try:
            if not self._dict_ready():
                index = _DictIndex(db)
            if not self._translations_ready():
                tindex = _TranslationIndex(db)
        finally:
            # peewee keeps one connection per thread; close this worker's
            if db is not None and not db.is_closed() and self._db is None:
                try:
                    db.close()
                except Exception:  # noqa: BLE001 - the main thread's connection is not ours to close
                    log.debug("closing the index builder's connection failed", exc_info=True)
        self.build_seconds = time.perf_counter() - started
        with self._lock:
            if index is not None:
                self._index = index
                self._index_generation = generation
                self._index_db = db
            if tindex is not None:
                self._tindex = tindex
                self._tindex_generation = (generation, translation_generation)
                self._tindex_db = db

    def _dataset(self, dataset_id: int, wait: bool = False) -> _SmallSet[tuple[str, int]] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._datasets.get(dataset_id)
            fresh = hit is not None and now - hit[0] < DATASET_TTL_S
            loading = dataset_id in self._dataset_loading
            if not fresh and not loading:
                self._dataset_loading.add(dataset_id)
        if fresh and hit is not None:  # (fresh implies a hit)
            return hit[1]
        if not loading:
            if wait or hit is None:
                # the first time for this dataset: a GROUP BY over its tags (fast for
                # typical sizes); afterwards refreshed in the background
                self._load_dataset(dataset_id)
            else:
                threading.Thread(target=self._load_dataset, args=(dataset_id,), daemon=True).start()
        with self._lock:
            hit = self._datasets.get(dataset_id)
        return hit[1] if hit else None

    def _load_dataset(self, dataset_id: int) -> None:
        try:
            rows = (
                self._database()
                .execute_sql(
                    "SELECT t.norm, MIN(t.tag), COUNT(*) AS n FROM item_tag t JOIN item i ON i.id = t.item_id "
                    "WHERE i.dataset_id = ? GROUP BY t.norm ORDER BY n DESC, t.norm",
                    [dataset_id],
                )
                .fetchall()
            )
            small = _SmallSet([(r[0], (r[1], r[2])) for r in rows])
            with self._lock:
                self._datasets[dataset_id] = (time.monotonic(), small)
        finally:
            with self._lock:
                self._dataset_loading.discard(dataset_id)

    # -- queries ---------------------------------------------------------------------------

    def _sqlite_prefix(self, key: str, limit: int) -> list[Candidate]:
        """Prefix candidates straight from SQLite, for the first seconds before the index
        is built. A narrow prefix: its ``norm`` range sorted by count. A broad one (more
        than 2,000 keys): walk the ``count`` index from the top until ``limit`` keys
        match, which stops early exactly because the prefix is common."""
        db = self._database()
        hi = key + "\U0010ffff"
        (n,) = db.execute_sql(
            "SELECT COUNT(*) FROM (SELECT 1 FROM dictionary_tag WHERE norm >= ? AND norm < ? LIMIT 2001)", [key, hi]
        ).fetchone()
        sql = "SELECT tag, category, count FROM dictionary_tag {} WHERE norm >= ? AND norm < ? ORDER BY count DESC LIMIT ?"
        rows = None
        if n > 2000:
            try:
                rows = db.execute_sql(sql.format("INDEXED BY dictionary_tag_count"), [key, hi, limit]).fetchall()
            except OperationalError:  # the index is missing (an older schema): the plain query below
                log.debug("dictionary_tag_count index not usable", exc_info=True)
                rows = None
        if rows is None:
            rows = db.execute_sql(sql.format(""), [key, hi, limit]).fetchall()
        return [Candidate(r[0], r[1], r[2], "dictionary") for r in rows]

    def complete(
        self, text: str, dataset_id: int | None = None, limit: int = 10, lang: str | None = None
    ) -> list[Candidate]:
        """Candidates for what is typed (see the module docstring for the order); ``lang``
        limits translation matches to one language (default: all) and is the language
        shown beside each candidate (default: the ``tag_lang`` setting, else the largest)."""
        found = self._complete_tags(text, dataset_id, limit)
        tindex = self._tindex if self._tindex_db is self._database() else None
        if tindex is None or not tindex.n or limit <= 0:
            return found
        if text.isascii() and len(found) >= limit:
            return self._annotate(found, tindex, lang)
        key = search_key(text)
        langs = [lang] if lang else tindex.langs
        translated = [tindex.candidate(row) for row in tindex.find(key, langs, limit)] if key else []
        if not translated:
            return self._annotate(found, tindex, lang)
        tagged = [(c, match_key(c.value)) for c in found]
        ordered = translated + tagged if not text.isascii() else tagged + translated
        out: list[Candidate] = []
        seen: set[str] = set()
        for c, norm in ordered:
            if norm not in seen:
                seen.add(norm)
                out.append(c)
                if len(out) >= limit:
                    break
        return self._annotate(out, tindex, lang)

    @staticmethod
    def _annotate(found: list[Candidate], tindex: _TranslationIndex, lang: str | None) -> list[Candidate]:
        from dataclasses import replace

        shown = tindex.first.get(lang or tindex.display_lang or (tindex.langs[0] if tindex.langs else ""))
        if not shown:
            return found
        return [
            c if c.translation else (replace(c, translation=t) if (t := shown.get(match_key(c.value))) else c)
            for c in found
        ]

    def _complete_tags(self, text: str, dataset_id: int | None, limit: int) -> list[Candidate]:
        key = query_key(text)
        if not key or limit <= 0:
            return []
        if not self.ready:
            self._ensure_building()
        index = self._index if self._index_db is self._database() else None
        ds = self._dataset(dataset_id) if dataset_id is not None else None
        seen: set[str] = set()

        def ds_candidate(i: int, match: str) -> tuple[Candidate, str]:
            assert ds is not None  # called for the dataset's matches only
            norm, (tag, freq) = ds.entries[i]
            cat = None
            if index is not None:  # an older index of this database is better than none while rebuilding
                r = index.find(norm)
                cat = index.category(r) if r is not None else None
            return Candidate(tag, cat, freq, "dataset", None, match), norm

        def take(found, into: list[Candidate], want: int) -> None:
            """Append (candidate, norm) pairs not offered yet until ``want`` are there."""
            for c, norm in found:
                if len(into) >= want:
                    return
                if norm not in seen:
                    seen.add(norm)
                    into.append(c)

        # 1. prefix: dataset tags, then the dictionary
        prefixes: list[Candidate] = []
        if ds is not None:
            take((ds_candidate(i, "prefix") for i in ds.prefix(key, limit)), prefixes, limit)
        if index is None:
            take(((c, match_key(c.tag)) for c in self._sqlite_prefix(key, limit)), prefixes, limit)
            return prefixes  # substring/alias need the index; it is being built
        take(
            (
                (
                    Candidate(index.tag(r), index.category(r), int(index.counts[r]), "dictionary"),
                    index.key_bytes(r).decode("utf-8"),
                )
                for r in index.prefix(key, limit)
            ),
            prefixes,
            limit,
        )

        # 2. substring (dataset first), then dictionary substrings and aliases by count.
        # A common prefix ("miku", "hair") fills every slot on its own, so up to a third
        # of them are kept for these when there are any (typing "miku" offers hatsune_miku).
        reserve = max(1, limit // 3) if limit >= 2 else 0
        want = max(reserve, limit - len(prefixes))
        others: list[Candidate] = []
        if ds is not None:
            take((ds_candidate(i, "substring") for i in ds.substring(key, want)), others, want)
        if len(others) < want:
            # prefixes already fill their share: a 1-2 letter substring then only looks
            # through the most-used tags (a full scan of 900k keys cost ~2 ms at p99)
            top = SHORT_SCAN_TOP if len(prefixes) >= limit - reserve else None
            take(self._dictionary_others(index, key, want - len(others) + len(seen), top), others, want)
        n_prefix = min(len(prefixes), limit - min(len(others), reserve))
        return prefixes[:n_prefix] + others[: limit - n_prefix]

    @staticmethod
    def _dictionary_others(index: _DictIndex, key: str, k: int, top: int | None = None):
        """(candidate, norm) for dictionary substrings and aliases, by the tag's count."""
        subs: list[tuple[int, str | None]] = [(r, None) for r in index.substring(key, k, top)]
        for i in index.aliases.prefix(key, k + 5) + index.aliases.substring(key, k + 5):
            _akey, (alias_text, alias_rank) = index.aliases.entries[i]
            subs.append((alias_rank, alias_text))
        subs.sort(key=lambda x: (x[0], x[1] is not None))
        for rank, alias in subs:
            norm = index.key_bytes(rank).decode("utf-8")
            if alias is None:
                yield (
                    Candidate(
                        index.tag(rank), index.category(rank), int(index.counts[rank]), "dictionary", None, "substring"
                    ),
                    norm,
                )
            else:
                yield (
                    Candidate(
                        alias, index.category(rank), int(index.counts[rank]), "dictionary", index.tag(rank), "alias"
                    ),
                    norm,
                )


_default: Completer | None = None
_default_lock = threading.Lock()


def get_completer() -> Completer:
    """The process-wide completer over the open database."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Completer()
        return _default
