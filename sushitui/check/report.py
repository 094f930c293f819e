"""``run_check``: a dataset's health report, and its findings stored for ``check:CODE``.

One pass over columns read with plain SQL: buckets for every image at once (numpy), token
counts for every distinct caption text at once (the tokenizers' Rust batch), exact
duplicates by sha256 across all datasets, near duplicates by perceptual hash within the
dataset, then the per-image and per-caption checks. Images are decoded only when their
content has no ``image_hash`` row yet (``hash_images=False`` skips that and reports them
as not inspected).

Ratings, crops and removal (issue 18's other parts) plug in as more codes in
``findings.CODES`` and more ``_add`` calls here; nothing else changes. No printing.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sushitui.check import findings as F
from sushitui.check.buckets import BucketPlan, make_plan

DEFAULT_MAX_CROP = 0.15  # more than 15 % of the resized image cut away
DEFAULT_UPSCALE = 1.5
DEFAULT_NEAR_DISTANCE = 6  # of 64 pHash bits
SETTING_KEY = "check:last:{}"  # AppSetting: the options and time of a dataset's last check


@dataclass
class CheckOptions:
    trainer: str = "kohya"
    resolution: int = 1024
    batch_size: int = 1
    trainer_options: dict = field(default_factory=dict)
    max_crop: float = DEFAULT_MAX_CROP
    max_upscale: float = DEFAULT_UPSCALE
    near_distance: int = DEFAULT_NEAR_DISTANCE
    max_token_length: int = 75  # 75, or 150 / 225 (sd-scripts --max_token_length)
    t5: bool = True
    trigger: str | None = None  # None: inferred when most tag captions start with one tag
    hash_images: bool = True
    store: bool = True


@dataclass
class ItemReport:
    id: int
    name: str  # group key, dataset-relative
    image: str | None
    width: int | None
    height: int | None
    bucket: tuple[int, int] | None = None
    scale: float | None = None
    cropped: float | None = None
    clip_tokens: int | None = None  # longest caption of the item
    t5_tokens: int | None = None
    findings: list[F.Finding] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "bucket": list(self.bucket) if self.bucket else None,
            "scale": None if self.scale is None else round(self.scale, 4),
            "cropped": None if self.cropped is None else round(self.cropped, 4),
            "clip_tokens": self.clip_tokens,
            "t5_tokens": self.t5_tokens,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class CheckReport:
    dataset: str
    dataset_id: int
    plan: BucketPlan
    options: CheckOptions
    items: list[ItemReport]
    buckets: list[tuple[tuple[int, int], int]]  # (bucket, images), by bucket
    exact_groups: list[list[str]]  # "dataset:name" per copy
    near_groups: list[list[int]]  # item ids
    trigger: str | None
    hashed: int = 0
    elapsed_s: float = 0.0
    timings: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.code for it in self.items for f in it.findings))

    def severity_counts(self) -> dict[str, int]:
        c: Counter = Counter()
        for code, n in self.counts().items():
            c[F.CODES[code].severity] += n
        return {s: c.get(s, 0) for s in F.SEVERITIES}

    def items_with_findings(self) -> list[ItemReport]:
        return [it for it in self.items if it.findings]

    def summary_rows(self) -> list[dict]:
        counts = self.counts()
        rows = [
            {"code": code, "severity": c.severity, "title": c.title, "items": counts[code], "fix": c.fix}
            for code, c in F.CODES.items()
            if counts.get(code)
        ]
        order = {s: i for i, s in enumerate(F.SEVERITIES)}
        return sorted(rows, key=lambda r: (order[r["severity"]], -r["items"], r["code"]))

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "trainer": self.plan.trainer,
            "resolution": self.options.resolution,
            "settings": self.plan.settings,
            "batch_size": self.options.batch_size,
            "items": len(self.items),
            "items_with_findings": len(self.items_with_findings()),
            "severities": self.severity_counts(),
            "summary": self.summary_rows(),
            "buckets": [{"bucket": list(b), "images": n} for b, n in self.buckets],
            "exact_duplicates": self.exact_groups,
            "near_duplicates": self.near_groups,
            "trigger": self.trigger,
            "hashed": self.hashed,
            "elapsed_s": round(self.elapsed_s, 3),
            "findings": [it.to_dict() for it in self.items if it.findings],
        }


# --- reading ---------------------------------------------------------------------------------


def _read_items(dataset_id: int):
    from sushitui.store import current_database

    return (
        current_database()
        .execute_sql(
            "SELECT i.id, i.group_key, i.image_path, i.width, i.height, i.sha256, h.phash, h.mode, h.bits, "
            "h.orientation, h.frames, h.error, h.sha256 IS NOT NULL FROM item i "
            "LEFT JOIN image_hash h ON h.sha256 = i.sha256 AND h.version = ? WHERE i.dataset_id = ? ORDER BY i.id",
            (_hash_version(), dataset_id),
        )
        .fetchall()
    )


def _hash_version() -> int:
    from sushitui.check.hashing import HASH_VERSION

    return HASH_VERSION


def _read_captions(dataset_id: int):
    from sushitui.store import current_database

    return (
        current_database()
        .execute_sql(
            "SELECT c.item_id, c.type, c.subtype, c.content, c.file_path, c.id FROM caption c JOIN item i ON i.id = c.item_id "
            "WHERE i.dataset_id = ? ORDER BY c.item_id, c.id",
            (dataset_id,),
        )
        .fetchall()
    )


def _exact_duplicates(dataset_id: int) -> dict[str, list[tuple[str, str, int]]]:
    """sha256 -> [(dataset name, group key, item id)] for contents indexed more than once,
    in any dataset, where at least one copy is in this dataset."""
    from sushitui.store import current_database

    rows = (
        current_database()
        .execute_sql(
            "SELECT i.sha256, d.name, i.group_key, i.id FROM item i JOIN dataset d ON d.id = i.dataset_id "
            "WHERE i.sha256 IN (SELECT sha256 FROM item WHERE dataset_id = ? AND sha256 IS NOT NULL "
            "INTERSECT SELECT sha256 FROM item WHERE sha256 IS NOT NULL GROUP BY sha256 HAVING COUNT(*) > 1) "
            "ORDER BY i.sha256, d.name, i.group_key",
            (dataset_id,),
        )
        .fetchall()
    )
    out: dict[str, list[tuple[str, str, int]]] = {}
    for sha, ds, key, item_id in rows:
        out.setdefault(sha, []).append((ds, key, item_id))
    return out


def infer_trigger(first_tags: list[str]) -> str | None:
    """The tag most tag captions start with, when at least 80 % of five or more do."""
    if len(first_tags) < 5:
        return None
    tag, n = Counter(first_tags).most_common(1)[0]
    return tag if n >= 0.8 * len(first_tags) else None


# --- the check ---------------------------------------------------------------------------------


def run_check(
    dataset,
    options: CheckOptions | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> CheckReport:
    """Check a dataset (name, id or row). Raises ``DatasetNotFound`` / ``ValueError`` for a
    bad dataset or trainer setting; per-file problems are findings, never exceptions."""
    from sushitui.dataset.registry import get_dataset

    options = options or CheckOptions()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    ds = get_dataset(dataset)
    plan = make_plan(options.trainer, options.resolution, **options.trainer_options)

    hashed = 0
    if options.hash_images:
        from sushitui.check.hashing import ensure_hashes

        t = time.perf_counter()
        hashed = ensure_hashes(
            ds.id,
            ds.root_path,
            cancelled=cancelled,
            progress=(lambda d, n: progress("hashing", d, n)) if progress else None,
        )
        timings["hash_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = _read_items(ds.id)
    caption_rows = _read_captions(ds.id)
    timings["read_s"] = time.perf_counter() - t

    index = {r[0]: k for k, r in enumerate(rows)}
    reports = [ItemReport(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # --- buckets (every image with a known size, at once)
    t = time.perf_counter()
    sized = np.array([k for k, r in enumerate(rows) if r[2] and r[3] and r[4]], dtype=np.int64)
    bucket_counts: Counter = Counter()
    if len(sized):
        w = np.array([rows[k][3] for k in sized], dtype=np.int64)
        h = np.array([rows[k][4] for k in sized], dtype=np.int64)
        if plan.exif_transpose:  # the trainer turns 5..8 by 90° before bucketing
            orient = np.array([rows[k][9] or 1 for k in sized])
            turn = orient >= 5
            w, h = np.where(turn, h, w), np.where(turn, w, h)
        placed = plan.place_many(w, h)
        keys = placed.bucket_w * 100_000 + placed.bucket_h
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        for u, c in zip(uniq.tolist(), counts.tolist()):
            bucket_counts[(u // 100_000, u % 100_000)] = c
        in_bucket = counts[inverse]
        bw, bh = placed.bucket_w.tolist(), placed.bucket_h.tolist()
        rw, rh = placed.resized_w.tolist(), placed.resized_h.tolist()
        scale, cropped = placed.scale.tolist(), placed.cropped.tolist()
        small_bucket = (in_bucket < options.batch_size).tolist()
        drop = plan.trainer == "diffusion-pipe"
        sized_list = sized.tolist()
        for j, bucket in enumerate(zip(bw, bh)):
            it = reports[sized_list[j]]
            it.bucket, it.scale, it.cropped = bucket, scale[j], cropped[j]
        # messages only for the images with a bucket finding (numpy picks them)
        flagged = (
            (placed.scale > options.max_upscale)
            | (placed.cropped > options.max_crop)
            | (in_bucket < options.batch_size)
        )
        for j in np.flatnonzero(flagged).tolist():
            it = reports[sized_list[j]]
            if scale[j] > options.max_upscale:
                it.findings.append(
                    F.Finding(
                        "upscaled",
                        f"{it.width}×{it.height} scaled {scale[j]:.2f}× to {rw[j]}×{rh[j]} for bucket {bw[j]}×{bh[j]}",
                        {"scale": round(scale[j], 4)},
                    )
                )
            if cropped[j] > options.max_crop:
                it.findings.append(
                    F.Finding(
                        "cropped",
                        f"{cropped[j]:.0%} cut away: resized to {rw[j]}×{rh[j]}, bucket {bw[j]}×{bh[j]}",
                        {"cropped": round(cropped[j], 4)},
                    )
                )
            if small_bucket[j]:
                c = int(in_bucket[j])
                what = (
                    "diffusion-pipe drops a bucket smaller than a batch"
                    if drop
                    else "its batches are smaller than the others"
                )
                it.findings.append(
                    F.Finding(
                        "small_bucket",
                        f"bucket {bw[j]}×{bh[j]} holds {c} image{'s' * (c != 1)} "
                        f"for batch size {options.batch_size}: {what}",
                        {"images": c},
                    )
                )
    timings["buckets_s"] = time.perf_counter() - t

    # --- images: most images share their facts (size, mode, ...), so each distinct set of
    # facts is judged once and its findings copied
    t = time.perf_counter()
    judged: dict[tuple, list[F.Finding]] = {}
    for k, r in enumerate(rows):
        if not r[2]:
            continue
        it = reports[k]
        if not r[12]:  # no image_hash row
            if r[5] is None or not options.hash_images:
                it.findings.append(
                    F.Finding("not_hashed", "the image was not decoded" + ("" if r[5] else " (no sha256 in the index)"))
                )
            facts = (r[3], r[4], None, None, None, None, None)
        else:
            facts = (r[3], r[4], r[7], r[8], r[9], r[10], r[11])
        found = judged.get(facts)
        if found is None:
            found = judged[facts] = F.image_findings(
                width=facts[0],
                height=facts[1],
                resolution=options.resolution,
                mode=facts[2],
                bits=facts[3],
                orientation=facts[4],
                frames=facts[5],
                error=facts[6],
                trainer=plan.trainer,
                exif_transpose=plan.exif_transpose,
            )
        if found:
            it.findings += [F.Finding(f.code, f.message, dict(f.detail)) for f in found]
    timings["images_s"] = time.perf_counter() - t

    # --- captions and tokens
    t = time.perf_counter()
    by_item: dict[int, list[tuple]] = {}
    for c in caption_rows:
        by_item.setdefault(c[0], []).append(c)
    texts = sorted({c[3] for c in caption_rows if c[3] and c[3].strip()})
    from sushitui.check import tokens as T

    clip_list, t5_list = T.stored_counts(texts, t5=options.t5, store=options.store)
    clip = dict(zip(texts, clip_list))
    t5: dict[str, int] = dict(zip(texts, t5_list)) if t5_list is not None else {}
    timings["tokens_s"] = time.perf_counter() - t

    t = time.perf_counter()
    trigger = options.trigger
    if trigger is None:
        firsts = []
        for c in caption_rows:
            if c[1] == "tags" and c[3] and c[3].strip():
                firsts.append(c[3].split(",", 1)[0].strip().lower())
        trigger = infer_trigger(firsts)
    clip_limit = options.max_token_length
    long_limit = max(clip_limit, F_LONG)
    for k, r in enumerate(rows):
        it = reports[k]
        caps = by_item.get(r[0], [])
        if not caps:
            it.findings.append(F.Finding("missing_caption", "no caption file or embedded caption"))
            continue
        if all(not (c[3] or "").strip() for c in caps):
            it.findings.append(F.Finding("empty_caption", f"{caps[0][4] or 'the caption'} is empty"))
            continue
        seen_codes: dict[str, F.Finding] = {}
        for c in caps:
            text = c[3] or ""
            if not text.strip():
                continue
            where = c[4] or f"{c[1]} caption" + (f" '{c[2]}'" if c[2] else "")
            for f in F.caption_findings(text, is_tags=c[1] == "tags", trigger=trigger):
                if f.code not in seen_codes:
                    f.message = f"{where}: {f.message}"
                    seen_codes[f.code] = f
            n_clip = clip.get(text)
            if n_clip is not None:
                it.clip_tokens = max(it.clip_tokens or 0, n_clip)
                if n_clip > long_limit and "clip_tokens_long" not in seen_codes:
                    seen_codes["clip_tokens_long"] = F.Finding(
                        "clip_tokens_long", f"{where}: {n_clip} CLIP tokens (225 at most)", {"tokens": n_clip}
                    )
                elif n_clip > clip_limit and "clip_tokens" not in seen_codes:
                    # what is cut off is shown by the CLI for the items it lists (clip_cut_at)
                    seen_codes["clip_tokens"] = F.Finding(
                        "clip_tokens",
                        f"{where}: {n_clip} CLIP tokens, {clip_limit} are read",
                        {"tokens": n_clip, "limit": clip_limit, "caption_id": c[5]},
                    )
            n_t5 = t5.get(text)
            if n_t5 is not None:
                it.t5_tokens = max(it.t5_tokens or 0, n_t5)
                if n_t5 > T.T5_MAX and "t5_tokens" not in seen_codes:
                    seen_codes["t5_tokens"] = F.Finding("t5_tokens", f"{where}: {n_t5} T5 tokens", {"tokens": n_t5})
        it.findings += seen_codes.values()
    timings["captions_s"] = time.perf_counter() - t

    # --- duplicates
    t = time.perf_counter()
    exact = _exact_duplicates(ds.id)
    exact_groups = []
    for sha, copies in exact.items():
        exact_groups.append([f"{d}:{key}" for d, key, _ in copies])
        for d, key, item_id in copies:
            pos = index.get(item_id)
            if pos is None:
                continue
            others = [f"{d2}:{k2}" for d2, k2, i2 in copies if i2 != item_id]
            reports[pos].findings.append(
                F.Finding(
                    "exact_duplicate",
                    f"same file as {', '.join(others[:3])}"
                    + (f" and {len(others) - 3} more" if len(others) > 3 else ""),
                    {"sha256": sha, "copies": others},
                )
            )
    near_groups: list[list[int]] = []
    hashed_rows = [(k, r[6], r[5]) for k, r in enumerate(rows) if r[6] is not None]
    if len(hashed_rows) > 1:
        from sushitui.check.hashing import groups_from_pairs, near_pairs

        # one representative per content: exact copies are reported above
        rep: dict[str, int] = {}
        members: dict[int, list[int]] = {}
        reps: list[tuple[int, int]] = []
        for k, ph, sha in hashed_rows:
            if sha in rep:
                members[rep[sha]].append(k)
                continue
            rep[sha] = len(reps)
            members[len(reps)] = [k]
            reps.append((k, ph))
        pairs = near_pairs(np.array([ph for _k, ph in reps], dtype=np.int64), options.near_distance)
        dist: dict[tuple[int, int], int] = {(int(a), int(b)): int(d) for a, b, d in pairs.tolist()}
        for group in groups_from_pairs(len(reps), pairs):
            ks = [k for g in group for k in members[g]]
            ids = [reports[k].id for k in ks]
            near_groups.append(ids)
            for g in group:
                closest = min(((dist.get((min(g, o), max(g, o)), 99), o) for o in group if o != g), default=None)
                for k in members[g]:
                    others = [reports[x].name for x in ks if x != k and rows[x][5] != rows[k][5]]
                    msg = f"looks like {', '.join(others[:3])}" + (
                        f" and {len(others) - 3} more" if len(others) > 3 else ""
                    )
                    if closest and closest[0] < 99:
                        msg += f" ({closest[0]} of 64 hash bits differ from the closest)"
                    reports[k].findings.append(F.Finding("near_duplicate", msg, {"group": ids}))
    timings["duplicates_s"] = time.perf_counter() - t

    report = CheckReport(
        ds.name,
        ds.id,
        plan,
        options,
        reports,
        sorted(bucket_counts.items()),
        exact_groups,
        near_groups,
        trigger,
        hashed,
    )
    if options.store:
        t = time.perf_counter()
        store_findings(ds.id, report)
        timings["store_s"] = time.perf_counter() - t
    report.elapsed_s = time.perf_counter() - started
    report.timings = timings
    return report


F_LONG = 225  # sd-scripts' longest --max_token_length


_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps(x, ensure_ascii=False), without a new encoder a call


def _detail_json(detail: dict) -> str:
    """``json.dumps(detail, ensure_ascii=False)``; the common one-number detail
    ({"scale": 1.5}) written directly (the same text: ints and finite floats by repr)."""
    if len(detail) == 1:
        ((key, value),) = detail.items()
        kind = type(value)
        if (kind is int or (kind is float and math.isfinite(value))) and key.isidentifier() and key.isascii():
            return f'{{"{key}": {value!r}}}'
    return _JSON.encode(detail)


def store_findings(dataset_id: int, report: CheckReport) -> None:
    """Make the dataset's stored findings the report's (``check:CODE`` reads them). Only
    what changed is written: a check run again over an unchanged dataset reads the stored
    findings and writes none of them (rewriting 100k rows and their index took seconds)."""
    from sushitui.store import current_database, write_transaction

    new: dict[tuple[int, str], tuple] = {}
    for it in report.items:
        for f in it.findings:  # one row per item and code; as INSERT OR REPLACE did, the last one wins
            new[(it.id, f.code)] = (f.severity, f.message, _detail_json(f.detail) if f.detail else None)
    db = current_database()
    with write_transaction():
        conn = db.connection()
        old = {
            (item_id, code): (severity, message, detail)
            for item_id, code, severity, message, detail in conn.execute(
                "SELECT f.item_id, f.code, f.severity, f.message, f.detail FROM check_finding f "
                "WHERE f.item_id IN (SELECT id FROM item WHERE dataset_id = ?)",
                (dataset_id,),
            )
        }
        gone = [key for key in old if key not in new]
        if gone:
            conn.executemany('DELETE FROM "check_finding" WHERE "item_id" = ? AND "code" = ?', gone)
        changed = [(*key, *row, key[0]) for key, row in new.items() if old.get(key) != row]
        # an item may have left the dataset meanwhile: its findings go with it (foreign key)
        conn.executemany(
            'INSERT OR REPLACE INTO "check_finding" ("item_id", "code", "severity", "message", "detail") '
            "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM item WHERE id = ?)",
            changed,
        )
        conn.execute(
            'INSERT OR REPLACE INTO "app_setting" ("key", "value", "updated_at") VALUES (?, ?, ?)',
            (
                SETTING_KEY.format(dataset_id),
                json.dumps(
                    {
                        "trainer": report.plan.trainer,
                        "resolution": report.options.resolution,
                        "settings": report.plan.settings,
                        "batch_size": report.options.batch_size,
                        "at": time.time(),
                        "items_with_findings": len(report.items_with_findings()),
                        "severities": report.severity_counts(),
                    }
                ),
                time.time(),
            ),
        )


def findings_count(dataset_id: int) -> int:
    """Items of the dataset with findings from its last check (for a datasets-screen column)."""
    from sushitui.store import current_database

    return (
        current_database()
        .execute_sql(
            "SELECT COUNT(DISTINCT f.item_id) FROM check_finding f JOIN item i ON i.id = f.item_id WHERE i.dataset_id = ?",
            (dataset_id,),
        )
        .fetchone()[0]
    )


def item_findings(item_ids: list[int]) -> dict[int, list[dict]]:
    """Stored findings per item (for a badge on browser cards)."""
    from sushitui.store import current_database

    out: dict[int, list[dict]] = {}
    if not item_ids:
        return out
    db = current_database()
    for a in range(0, len(item_ids), 500):
        chunk = item_ids[a : a + 500]
        for item_id, code, severity, message in db.execute_sql(
            f"SELECT item_id, code, severity, message FROM check_finding WHERE item_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchall():
            out.setdefault(item_id, []).append({"code": code, "severity": severity, "message": message})
    return out


# --- for the faces: the last check's options, counts per dataset, duplicate groups ------------------


def findings_counts() -> dict[int, int]:
    """dataset id -> items with findings from its last check, for every dataset that was
    checked (a dataset never checked is absent: the datasets screen shows "—")."""
    from sushitui.store import current_database

    db = current_database()
    prefix = SETTING_KEY.format("")
    checked = set()
    for (key,) in db.execute_sql("SELECT key FROM app_setting WHERE key LIKE ?", (prefix + "%",)).fetchall():
        tail = key[len(prefix) :]
        if tail.isdecimal():
            checked.add(int(tail))
    if not checked:
        return {}
    counts = dict(
        db.execute_sql(
            "SELECT i.dataset_id, COUNT(DISTINCT f.item_id) FROM check_finding f JOIN item i ON i.id = f.item_id "
            "GROUP BY i.dataset_id"
        ).fetchall()
    )
    return {ds: counts.get(ds, 0) for ds in checked}


_PLAN_KWARGS = {
    "kohya": {
        "bucket_no_upscale": "no_upscale",
        "min_bucket_reso": "min_bucket_reso",
        "max_bucket_reso": "max_bucket_reso",
        "bucket_reso_steps": "bucket_reso_steps",
    },
    "ai-toolkit": {"bucket_tolerance": "bucket_tolerance"},
    "onetrainer": {"quantization": "quantization"},
    "diffusion-pipe": {k: k for k in ("enable_ar_bucket", "min_ar", "max_ar", "num_ar_buckets", "round_to_multiple")},
}


def last_check_options(dataset_id: int) -> CheckOptions:
    """The trainer, resolution, batch size and bucket settings of the dataset's last check
    (what ``sushitui check --trainer ...`` chose), or the defaults: a check run again from
    the browser judges the items by the same buckets."""
    import json

    from sushitui.store import current_database

    row = (
        current_database()
        .execute_sql("SELECT value FROM app_setting WHERE key = ?", (SETTING_KEY.format(dataset_id),))
        .fetchone()
    )
    try:
        last = json.loads(row[0]) if row else None
    except (TypeError, ValueError):
        last = None
    if not isinstance(last, dict) or last.get("trainer") not in _PLAN_KWARGS:
        return CheckOptions()
    names = _PLAN_KWARGS[last["trainer"]]
    stored = last.get("settings")
    settings: dict = stored if isinstance(stored, dict) else {}
    options = CheckOptions(
        trainer=last["trainer"], trainer_options={names[k]: v for k, v in settings.items() if k in names}
    )
    if isinstance(last.get("resolution"), int) and last["resolution"] > 0:
        options.resolution = last["resolution"]
    if isinstance(last.get("batch_size"), int) and last["batch_size"] > 0:
        options.batch_size = last["batch_size"]
    try:
        make_plan(options.trainer, options.resolution, **options.trainer_options)
    except (TypeError, ValueError):  # settings an older version stored: the trainer's defaults
        options.trainer_options = {}
    return options


@dataclass
class DuplicateMember:
    item_id: int
    dataset_id: int
    dataset: str
    name: str  # group key, dataset-relative
    image_path: str | None  # absolute; None when missing or outside the dataset's folder
    stamp: int | None  # indexed mtime (preview cache key)
    width: int | None
    height: int | None
    file_size: int | None
    rating: int
    excluded: bool
    caption: str  # start of the main caption


@dataclass
class DuplicateGroup:
    kind: str  # "exact": the same file (sha256, any dataset) | "near": looks alike (pHash, this dataset)
    members: list[DuplicateMember]


def duplicate_groups(dataset_id: int) -> list[DuplicateGroup]:
    """The dataset's duplicate groups: exact copies by sha256 now (copies in other datasets
    included), then the near-duplicate groups of its last check. Groups with fewer than two
    items still indexed are left out."""
    import json

    from sushitui.store import current_database
    from sushitui.store.natural_key import natural_key

    db = current_database()
    wanted: list[tuple[str, list[int]]] = []
    # by the first copy's name, as the browser lists them (sha256 order means nothing to a user)
    for copies in sorted(_exact_duplicates(dataset_id).values(), key=lambda c: (natural_key(c[0][1]), c[0][0])):
        wanted.append(("exact", [item_id for _ds, _key, item_id in copies]))
    seen: set[tuple[int, ...]] = set()
    for (detail,) in db.execute_sql(
        "SELECT f.detail FROM check_finding f JOIN item i ON i.id = f.item_id "
        "WHERE i.dataset_id = ? AND f.code = 'near_duplicate' ORDER BY i.name_key, i.id",
        (dataset_id,),
    ).fetchall():
        try:
            ids = json.loads(detail).get("group") if detail else None
        except (TypeError, ValueError, AttributeError):
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            continue
        key = tuple(sorted(set(ids)))
        if key not in seen:
            seen.add(key)
            wanted.append(("near", list(dict.fromkeys(ids))))
    members = duplicate_members([i for _kind, ids in wanted for i in ids])
    groups = []
    for kind, ids in wanted:
        present = [members[i] for i in ids if i in members]
        if len(present) > 1:
            groups.append(DuplicateGroup(kind, present))
    return groups


def duplicate_members(item_ids: list[int]) -> dict[int, DuplicateMember]:
    """What the duplicates screen shows of each item (its marks as they are now)."""
    from sushitui.dataset.marks import FLAGS
    from sushitui.dataset.paths import to_abs
    from sushitui.store import current_database

    db = current_database()
    out: dict[int, DuplicateMember] = {}
    ids = list(dict.fromkeys(item_ids))
    exclude_bit = 1 << FLAGS.index("exclude")
    for a in range(0, len(ids), 500):
        chunk = ids[a : a + 500]
        marks = ",".join("?" * len(chunk))
        captions: dict[int, str] = {}
        for item_id, content in db.execute_sql(
            f"SELECT item_id, substr(content, 1, 300) FROM caption WHERE item_id IN ({marks}) AND content != '' "
            "ORDER BY item_id, subtype IN ('main', '') DESC, id",
            chunk,
        ).fetchall():
            captions.setdefault(item_id, " ".join(content.split()))
        for item_id, ds_id, ds_name, root, key, image, mtime, width, height, size, rating, flags in db.execute_sql(
            "SELECT i.id, i.dataset_id, d.name, d.root_path, i.group_key, i.image_path, i.mtime_ns, i.width, i.height, "
            f"i.file_size, i.rating, i.flags FROM item i JOIN dataset d ON d.id = i.dataset_id WHERE i.id IN ({marks})",
            chunk,
        ).fetchall():
            try:
                path = str(to_abs(root, image)) if image else None
            except ValueError:
                path = None
            out[item_id] = DuplicateMember(
                item_id,
                ds_id,
                ds_name,
                key,
                path,
                mtime,
                width,
                height,
                size,
                rating or 0,
                bool((flags or 0) & exclude_bit),
                captions.get(item_id, ""),
            )
    return out


def keep_one(group: DuplicateGroup, keep_id: int) -> list[int]:
    """Keep ``keep_id`` of a duplicate group: flag every other member ``exclude`` (in its
    own dataset's marks file) and clear the flag on the kept one, so the group says
    exactly which copy trains. Returns the ids excluded. Raises MarksError (a marks file
    that cannot be written, items gone)."""
    from sushitui.dataset.marks import set_flag

    if keep_id not in {m.item_id for m in group.members}:
        raise ValueError(f"item {keep_id} is not in this duplicate group")
    others: dict[int, list[int]] = {}
    for m in group.members:
        if m.item_id != keep_id:
            others.setdefault(m.dataset_id, []).append(m.item_id)
    for ids in others.values():  # one dataset at a time: each has its own marks file and lock
        set_flag(ids, "exclude", True)
    set_flag([keep_id], "exclude", False)
    excluded = {i for ids in others.values() for i in ids}
    for m in group.members:
        m.excluded = m.item_id in excluded
    return sorted(excluded)
