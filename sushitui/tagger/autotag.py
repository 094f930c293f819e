"""The auto-tagging API (AT-1..6), used by the CLI, the TUI and scripts.

    report = autotag("my-dataset", model="cl-1.02", mode="add", progress=cb, cancel=token)

Flow: select items → (mode skip) drop items that already have tags → image hashes →
cached scores by (sha256, model version) → decode + infer only the misses, in
batches, cache each batch as it completes → scores → tags (thresholds) → aliases and
dictionary mapping → captions written through ``set_tags_many`` (the one write path),
in batches. Because every finished batch is cached and written before the next one,
re-running after a Ctrl-C or a kill redoes no inference for finished images and
reports them as cached/unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

from sushitui.dataset.caption_files import CaptionFileError
from sushitui.dataset.captions import MAIN, TagEdit, check_new_subtype, set_tags_many
from sushitui.dataset.paths import to_abs
from sushitui.dataset.registry import get_dataset
from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressEvent, Throttle
from sushitui.store import Dataset, DictionaryTag, Item, ItemTag, tuple_rows, write_transaction
from sushitui.tagger import cache as tcache
from sushitui.tagger.hub import ModelFiles, local_files, resolve
from sushitui.tagger.labels import load_labels
from sushitui.tagger.postprocess import DEFAULT_CATEGORIES, DEFAULT_THRESHOLD, Predicted, Selection, select_tags
from sushitui.tagger.registry import DEFAULT_MODEL, get_spec
from sushitui.tags.normalize import match_key

log = logging.getLogger(__name__)

MODES = ("replace", "add", "skip")
WRITE_BATCH = 64
WRITE_INTERVAL_S = 2.0
CACHE_CHUNK = 256
DICTIONARY_CATEGORIES = ("general", "character", "copyright", "artist", "meta", "model")
# Bumped when decoding/preprocessing changes what a model sees: old cached scores no longer apply.
PREPROCESS_VERSION = "pp1"


class AutotagError(UserError):
    """The run cannot start (unknown dataset/model, model unavailable, bad option)."""


@dataclass
class AutotagOptions:
    model: str | None = DEFAULT_MODEL
    model_path: str | None = None  # user files instead of a registry key (a file or a folder)
    labels_path: str | None = None
    family: str | None = None  # wd | cl, for user files (default: from the label file)
    threshold: float = DEFAULT_THRESHOLD
    character_threshold: float | None = None  # None: family default (WD 0.85, cl_tagger 0.60)
    category_thresholds: dict[str, float] = field(default_factory=dict)
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    mcut: tuple[str, ...] = ()
    mode: str = "replace"
    subtype: str = MAIN
    device: str = "auto"
    device_id: int = 0
    batch_size: int | None = None
    workers: int | None = None  # decode processes (default: CPU cores, ≤ 16)
    jpeg_draft: bool = True
    dictionary_mapping: bool = True  # deprecated tags → replacement (AT-3)
    add_unknown_to_dictionary: bool = False
    underscores: bool = False  # keep "_" in written tags
    exclude: tuple[str, ...] = ()
    use_cache: bool = True
    dry_run: bool = False
    allow_download: bool = True

    def selection(self) -> Selection:
        return Selection(
            categories=tuple(self.categories),
            threshold=self.threshold,
            character_threshold=self.character_threshold,
            per_category=dict(self.category_thresholds),
            mcut_categories=tuple(self.mcut),
            exclude=frozenset(self.exclude),
            underscores=self.underscores,
        )


@dataclass
class Problem:
    path: str
    reason: str


@dataclass
class AutotagReport:
    dataset: str
    model: str
    model_version: str
    provider: dict | None = None  # ProviderInfo.as_dict(); None when no inference was needed
    selection: dict = field(default_factory=dict)
    mode: str = "replace"
    subtype: str = MAIN
    dry_run: bool = False
    items: int = 0  # items selected
    tagged: int = 0  # captions changed (or that would change, in a dry run)
    unchanged: int = 0  # already had exactly these tags (e.g. a resumed run)
    skipped_existing: int = 0  # mode skip: items that already had tags
    no_tags: int = 0  # nothing passed the thresholds: the item was left as it was
    cached: int = 0  # scores taken from the cache: no inference
    inferred: int = 0  # images run through the model
    model_runs: int = 0  # session.run calls
    files_written: int = 0
    failed: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)  # first items: {"item_id", "path", "tags"}
    batch_size: int | None = None
    workers: int | None = None
    cancelled: bool = False
    elapsed_s: float = 0.0

    @property
    def provider_line(self) -> str:
        return (
            self.provider["description"]
            if self.provider
            else "none (every result came from the cache; the model was not loaded)"
        )

    @property
    def rate(self) -> float:
        return (self.cached + self.inferred) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["provider_line"] = self.provider_line
        d["images_per_s"] = round(self.rate, 2)
        return d


PREVIEW_LIMIT = 50


def resolve_model(opts: AutotagOptions) -> ModelFiles:
    from sushitui.tagger.hub import ModelUnavailable
    from sushitui.tagger.registry import UnknownModel

    try:
        if opts.model_path:
            return local_files(opts.model_path, opts.labels_path, opts.family)
        return resolve(get_spec(opts.model), allow_download=opts.allow_download)
    except (ModelUnavailable, UnknownModel, ValueError) as exc:
        raise AutotagError(str(exc)) from exc


def _announce_download(opts: AutotagOptions, progress: Callable[[ProgressEvent], None]) -> None:
    """A model download can take minutes: say so before it starts (the CLI also shows
    huggingface_hub's own progress bars)."""
    from sushitui.tagger.hub import cache_dir, is_offline, locate
    from sushitui.tagger.registry import UnknownModel

    try:
        spec = get_spec(opts.model)
    except UnknownModel:
        return
    if opts.allow_download and not is_offline() and locate(spec) is None:
        progress(
            ProgressEvent(
                "downloading",
                0,
                None,
                "files",
                message=f"downloading {spec.repo_id}/{spec.model_file} into {cache_dir()}",
            )
        )


def _select_items(ds: Dataset, query: str | None, item_ids: Sequence[int] | None) -> list[Item]:
    q = Item.select().where(Item.dataset == ds.id)
    if query:
        from sushitui.tags.query import QueryError, apply_query

        try:
            q = apply_query(q, query, ds.id)
        except QueryError as exc:
            raise AutotagError(f"bad query {query!r}: {exc}") from exc
    if item_ids is not None:
        wanted = sorted(set(int(i) for i in item_ids))
        found: list[Item] = []
        for i in range(0, len(wanted), 500):
            found.extend(q.where(Item.id.in_(wanted[i : i + 500])))
        return sorted(found, key=lambda it: it.group_key)
    return list(q.order_by(Item.group_key))


def _items_with_tags(items: Sequence[Item], subtype: str) -> set[int]:
    have: set[int] = set()
    ids = [it.id for it in items]
    for i in range(0, len(ids), 500):
        rows = (
            ItemTag.select(ItemTag.item)
            .where(ItemTag.item.in_(ids[i : i + 500]) & (ItemTag.subtype == subtype))
            .distinct()
            .tuples()
        )
        have.update(r[0] for r in tuple_rows(rows))
    return have


class _TagMapper:
    """Aliases (TAG-2) and dictionary mapping (AT-3), memoised per run."""

    def __init__(self, dictionary_mapping: bool, add_unknown: bool) -> None:
        self.dictionary_mapping = dictionary_mapping
        self.add_unknown = add_unknown
        self._alias: Callable[[str], str] | None
        try:
            from sushitui.tags.aliases import resolve as alias_resolve  # lands with the "tags" helper

            self._alias = alias_resolve
        except ImportError:
            self._alias = None
        self._alias_memo: dict[str, str] = {}
        self._dict_memo: dict[str, str | None] = {}  # norm → replacement tag (None: keep)
        self._known: set[str] = set()
        self.unknown: dict[str, tuple[str, str]] = {}  # norm → (tag, category) to add
        self._keys: dict[str, str] = {}

    def key(self, tag: str) -> str:
        """match_key, memoised: the same tags recur on every image."""
        k = self._keys.get(tag)
        if k is None:
            k = self._keys[tag] = match_key(tag)
        return k

    def prefetch(self, tags: Sequence[Predicted]) -> None:
        """One dictionary query for a whole write batch's new tags."""
        if not (self.dictionary_mapping or self.add_unknown):
            return
        norms = [self.key(t.tag) for t in tags]
        todo = [n for n in set(norms) if n not in self._dict_memo]
        for i in range(0, len(todo), 500):
            chunk = todo[i : i + 500]
            for norm, deprecated, replacement in tuple_rows(
                DictionaryTag.select(DictionaryTag.norm, DictionaryTag.deprecated, DictionaryTag.replacement)
                .where(DictionaryTag.norm.in_(chunk))
                .tuples()
            ):
                self._known.add(norm)
                if deprecated and replacement:
                    self._dict_memo[norm] = replacement
            for n in chunk:
                self._dict_memo.setdefault(n, None)

    def alias(self, tag: str) -> str:
        if self._alias is None:
            return tag
        key = self.key(tag)
        if key not in self._alias_memo:
            try:
                self._alias_memo[key] = self._alias(tag) or tag
            except Exception:  # noqa: BLE001 - an alias table problem must not stop tagging; logged once
                if not getattr(self, "_alias_failed", False):
                    self._alias_failed = True
                    log.warning("alias lookup failed (tags are kept as predicted)", exc_info=True)
                self._alias_memo[key] = tag
        return self._alias_memo[key]

    def map(self, predicted: Sequence[Predicted]) -> list[Predicted]:
        self.prefetch(predicted)
        out = []
        for p in predicted:
            tag = self.alias(p.tag)
            norm = self.key(tag)
            if self.dictionary_mapping:
                repl = self._dict_memo.get(norm) if norm in self._dict_memo else self._dict_memo.get(self.key(p.tag))
                if repl:
                    tag = self.alias(repl)
                    norm = self.key(tag)
            if self.add_unknown and norm not in self._known and p.category in DICTIONARY_CATEGORIES:
                self.unknown.setdefault(norm, (tag, p.category))
            out.append(Predicted(tag, p.category, p.confidence))
        return out

    def flush_unknown(self) -> int:
        if not self.unknown:
            return 0
        now = time.time()
        rows = [
            {
                "tag": t,
                "norm": n,
                "category": c,
                "count": 0,
                "source": "auto_detected",
                "official": False,
                "created_at": now,
                "updated_at": now,
            }
            for n, (t, c) in self.unknown.items()
        ]
        with write_transaction():
            for i in range(0, len(rows), 200):
                DictionaryTag.insert_many(rows[i : i + 200]).on_conflict_ignore().execute()
        self._known.update(self.unknown)
        added = len(self.unknown)
        self.unknown.clear()
        return added


def autotag(
    dataset,
    query: str | None = None,
    item_ids: Sequence[int] | None = None,
    options: AutotagOptions | None = None,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
    runner_factory=None,
    pipeline=None,
    **overrides,
) -> AutotagReport:
    """Auto-tag the dataset's items (all, a query's result, or ``item_ids``).

    Options come as an ``AutotagOptions`` and/or keyword overrides (``model=``,
    ``threshold=``, ``mode=``, ``device=``, ``dry_run=`` ...). Returns a report with
    the provider actually used, counts and per-file failures. Cancelling stops after
    the current batch; what was done is written and cached (``report.cancelled``).
    ``runner_factory``/``pipeline`` replace the Runner and ``run_pipeline`` (same
    signatures): ``sushitui.tagger.distributed`` runs inference on a Ray cluster so.
    """
    opts = options or AutotagOptions()
    if overrides:
        unknown = [k for k in overrides if not hasattr(opts, k)]
        if unknown:
            raise TypeError(f"unknown autotag option(s): {', '.join(unknown)}")
        opts = AutotagOptions(**{**asdict(opts), **overrides})
    if opts.mode not in MODES:
        raise AutotagError(f"unknown mode {opts.mode!r}: use replace, add or skip")
    started = time.monotonic()
    ds = get_dataset(dataset)
    try:
        check_new_subtype(ds, opts.subtype)
    except CaptionFileError as exc:
        raise AutotagError(str(exc)) from exc
    if progress is not None and not opts.model_path:
        _announce_download(opts, progress)
    files = resolve_model(opts)
    try:
        labels = load_labels(files.labels_path, files.family)
    except ValueError as exc:
        raise AutotagError(str(exc)) from exc
    family = files.family
    sel = opts.selection()
    version = f"{files.version}/{PREPROCESS_VERSION}{'+draft' if opts.jpeg_draft else ''}"
    report = AutotagReport(
        ds.name,
        files.key,
        version,
        selection=sel.describe(family),
        mode=opts.mode,
        subtype=opts.subtype,
        dry_run=opts.dry_run,
    )
    source = f"auto_{files.key}"
    mapper = _TagMapper(opts.dictionary_mapping, opts.add_unknown_to_dictionary and not opts.dry_run)
    keep = _argmax_indices(labels)
    thresholds = [
        sel.threshold_for(c, family)
        for c in sel.categories
        if c not in ("rating", "quality") and c not in sel.mcut_categories
    ]
    read_cache = opts.use_cache and all(tcache.covers(t) for t in thresholds)
    if opts.use_cache and not read_cache:
        report.notes.append(f"a threshold below {tcache.FLOOR} cannot be answered from the cache; running the model")

    items = _select_items(ds, query, item_ids)
    report.items = len(items)
    if opts.mode == "skip":
        have = _items_with_tags(items, opts.subtype)
        report.skipped_existing = sum(1 for it in items if it.id in have)
        items = [it for it in items if it.id not in have]

    throttle = Throttle(progress, 0.1)
    phase_start = time.monotonic()

    def emit(phase: str, done: int, total: int, force: bool = False) -> None:
        extra: dict[str, Any] = {"cached": report.cached, "failed": len(report.failed)}
        if report.provider:
            extra["on"] = "GPU" if report.provider["active"] == "CUDAExecutionProvider" else "CPU"
        throttle(
            ProgressEvent(
                phase,
                done,
                total,
                "images",
                started_at=phase_start,
                extra=extra,
                message=report.provider["description"] if report.provider else "",
            ),
            force,
        )

    # 1. image paths and hashes (the scan's hash when the file is unchanged)
    todo: list[tuple[Item, str, str]] = []
    for n, it in enumerate(items):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        if not it.image_path:
            report.failed.append(Problem(it.group_key, "the item has no image to tag"))
            continue
        try:
            path = str(to_abs(ds.root_path, it.image_path))
        except ValueError as exc:
            report.failed.append(Problem(it.image_path, str(exc)))
            continue
        sha = tcache.known_sha256(it, path)
        if sha is None:
            from sushitui.tagger.preprocess import hash_file

            sha = hash_file(path)
            if sha is None:
                report.failed.append(
                    Problem(it.image_path, "cannot read the image file (missing or unreadable); reindex the dataset")
                )
                continue
        todo.append((it, path, sha))
        if n % 256 == 0:
            emit("hashing", n, len(items))

    total = len(todo)
    phase_start = time.monotonic()
    pending: list[tuple[Item, list[Predicted]]] = []
    done = 0

    def finish_item(it: Item, probs) -> None:
        pending.append((it, select_tags(probs, labels, family, sel)))

    last_write = [time.monotonic()]

    def flush(force: bool = False, min_size: int = WRITE_BATCH) -> None:
        # Captions go out in batches (one transaction each) and at least every
        # WRITE_INTERVAL_S, so an interrupted run has little unwritten — and the cache
        # holds even that, so a re-run writes it without inference.
        due = time.monotonic() - last_write[0] >= WRITE_INTERVAL_S
        if pending and (force or len(pending) >= min_size or due):
            _write(pending, opts, source, report, mapper)
            pending.clear()
            last_write[0] = time.monotonic()
        if force and not opts.dry_run:
            mapper.flush_unknown()

    # 2. cache hits: no inference
    # In chunks: a dense cl_tagger score row is 165 KiB, so 100k hits at once would be 16 GB.
    misses: dict[str, list[tuple[Item, str]]] = {}
    for start in range(0, len(todo), CACHE_CHUNK):
        chunk = todo[start : start + CACHE_CHUNK]
        cached = tcache.get_many([sha for _, _, sha in chunk], version) if read_cache else {}
        for it, path, sha in chunk:
            probs = cached.get(sha)
            if isinstance(probs, tcache.CachedFailure):
                report.failed.append(
                    Problem(
                        it.image_path or it.group_key,
                        f"{probs} — skipped (known from an earlier run); fix or remove the file",
                    )
                )
                done += 1
            elif probs is not None:
                report.cached += 1
                finish_item(it, probs)
                done += 1
                flush()
            else:
                misses.setdefault(sha, []).append((it, path))
        del cached
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        emit("tagging", done, total)
    emit("tagging", done, total, True)

    # 3. the rest through the model, one decode per distinct image
    if misses and not report.cancelled:
        from sushitui.tagger.pipeline import BatchResult, default_workers, run_pipeline
        from sushitui.tagger.runner import Runner, RunnerError

        try:
            runner = (runner_factory or Runner)(
                files.model_path,
                family,
                len(labels),
                device=opts.device,
                device_id=opts.device_id,
                batch_size=opts.batch_size,
            )
        except RunnerError as exc:
            flush(True)
            raise AutotagError(str(exc)) from exc
        report.provider = runner.provider.as_dict()
        report.batch_size = runner.batch_size
        emit("tagging", done, total, True)  # the provider in use, before the first image
        report.workers = default_workers() if opts.workers is None else opts.workers
        if runner.provider.on_gpu:
            runner.warm_up()
        keys = list(misses)
        paths = [misses[k][0][1] for k in keys]
        for ev in (pipeline or run_pipeline)(
            paths, runner, draft=opts.jpeg_draft, workers=opts.workers, cancel=cancel, notes=report.notes
        ):
            if isinstance(ev, BatchResult):
                entries = []
                for row, i in enumerate(ev.indices):
                    probs = ev.probs[row]
                    entries.append((keys[i], probs))
                    for it, _ in misses[keys[i]]:
                        finish_item(it, probs)
                        done += 1
                    report.inferred += 1
                if opts.use_cache:
                    tcache.put_many(entries, version, keep)
                flush()
            else:
                group = misses.get(keys[ev.index], []) if ev.index >= 0 else []
                if group and opts.use_cache and ev.reason.startswith("not a readable image"):
                    tcache.put_many([(keys[ev.index], ev.reason)], version)
                for it, _ in group:
                    report.failed.append(
                        Problem(
                            it.image_path or it.group_key,
                            ev.reason + " — skipped; fix or remove the file and run again",
                        )
                    )
                    done += 1
                if not group:
                    report.failed.append(Problem("?", ev.reason))
            emit("tagging", done, total)
        report.model_runs = runner.runs
        report.notes.extend(runner.notes)
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
    elif cancel is not None and cancel.cancelled:
        report.cancelled = True
    flush(True)
    emit("tagging", done, total, True)
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report


def _argmax_indices(labels):
    import numpy as np

    return np.asarray(labels.indices("rating") + labels.indices("quality"), dtype=np.int64)


def _existing_tags(items: Sequence[Item], subtype: str) -> dict[int, list[str]]:
    """Current tags of many items in one query (caption order)."""
    out: dict[int, list[str]] = {it.id: [] for it in items}
    ids = list(out)
    for i in range(0, len(ids), 500):
        rows = (
            ItemTag.select(ItemTag.item, ItemTag.tag)
            .where(ItemTag.item.in_(ids[i : i + 500]) & (ItemTag.subtype == subtype))
            .order_by(ItemTag.item, ItemTag.position)
            .tuples()
        )
        for item_id, tag in tuple_rows(rows):
            out[item_id].append(tag)
    return out


def _append_new(existing: list[str], auto: list[str], key: Callable[[str], str]) -> list[str]:
    have = {key(t) for t in existing}
    return existing + [t for t in auto if key(t) not in have]


def _write(
    batch: list[tuple[Item, list[Predicted]]],
    opts: AutotagOptions,
    source: str,
    report: AutotagReport,
    mapper: _TagMapper,
) -> None:
    mapper.prefetch([p for _, predicted in batch for p in predicted])
    need_existing = opts.mode == "add" or opts.dry_run
    existing_by_item = _existing_tags([it for it, _ in batch], opts.subtype) if need_existing else {}
    key = mapper.key

    def unique(tags: Sequence[str]) -> list[str]:  # dedupe() for already-clean tags, memoised keys
        seen: set[str] = set()
        out: list[str] = []
        for t in tags:
            k = key(t)
            if k not in seen:
                seen.add(k)
                out.append(t)
        return out

    edits: list[TagEdit] = []
    for it, predicted in batch:
        predicted = mapper.map(predicted)
        auto = unique([p.tag for p in predicted])
        if not auto:  # never write an empty caption or wipe existing tags for "nothing found"
            report.no_tags += 1
            continue
        conf: dict[str, float] = {}
        for p in predicted:
            conf.setdefault(key(p.tag), p.confidence)
        if opts.mode == "add":
            existing = existing_by_item.get(it.id, [])
            have = {key(t) for t in existing}
            new = [t for t in auto if key(t) not in have]
            tags = existing + new
        else:
            new = tags = auto
        sources = {key(t): (source, conf.get(key(t))) for t in new}
        if len(report.preview) < PREVIEW_LIMIT:
            report.preview.append({"item_id": it.id, "path": it.image_path, "tags": tags})
        if opts.mode == "add":
            # merged with the caption as it is when written (under the dataset's write
            # lock), not as read above: a tag someone added meanwhile stays
            edits.append(TagEdit(it, tags, sources, rewrite=partial(_append_new, auto=auto, key=key)))
        else:
            edits.append(TagEdit(it, tags, sources))
    if opts.dry_run:
        for e in edits:
            if unique(existing_by_item.get(e.item.id, [])) == unique(e.tags):  # as set_tags_many decides
                report.unchanged += 1
            else:
                report.tagged += 1
        return
    result = set_tags_many(edits, subtype=opts.subtype, source=source)
    report.tagged += result.changed
    report.unchanged += result.unchanged
    report.files_written += len(result.files_written)
    for problem in result.problems:
        report.failed.append(Problem(problem.path or str(problem.item_id), problem.reason))
