"""Aspect-ratio buckets exactly as the trainers assign them, reimplemented from their source.

Each trainer is a ``BucketPlan`` whose ``place(width, height)`` answers what the trainer
does with an image of that size: the bucket (width, height) it trains at, the size it
resizes the image to before cropping, the scale factor and the share of the resized
image cropped away. The arithmetic (``int(x + 0.5)``, ``round``, ``math.ceil``, numpy's
``argmin`` with its first-wins ties, float order of operations) follows each source line
by line, because a bucket one step off is the bug a user comes here to find.

Sources (tests/test_check_buckets.py holds size → bucket tables computed from them):

- kohya-ss/sd-scripts 48d368fa557731ad0488c07304dfeba8c07910eb:
  ``library/model_util.py`` ``make_bucket_resolutions``; ``library/train_util.py``
  ``BucketManager.select_bucket`` / ``round_to_steps`` (with and without
  ``bucket_no_upscale``), ``adjust_min_max_bucket_reso_by_steps``; defaults from
  ``library/config_util.py`` (min 256, max 1024, steps 64).
- ostris/ai-toolkit 27a03a91f23eb1b757d5ec2e80ee3e129cfcc350: ``toolkit/buckets.py``
  ``get_bucket_for_image_size``; scale/crop from ``toolkit/dataloader_mixins.py``
  ``BucketsMixin.setup_buckets`` (``bucket_tolerance`` default 64, config_modules.py).
- tdrussell/diffusion-pipe 8f83dbf25d03219df705570ec03e62be04bc402f: ``utils/dataset.py``
  ``DirectoryDataset`` (``np.geomspace`` AR buckets, ``dedup_and_sort`` to 3 decimals,
  ``_find_closest_ar_bucket`` in log space), ``ARBucketDataset.cache_latents`` (size per
  resolution, ``round_to_nearest_multiple`` from ``utils/common.py``), crop by
  ``ImageOps.fit`` in ``models/base.py``; ``pixels_round_to_multiple`` 16 (models/base.py).
- Nerogar/OneTrainer 23df3832e8f213d64c337e39f9365ba46e99fed0 uses
  Nerogar/mgds 3a6994ad18a490acc4f3876658167525b7d88da7 (pinned in requirements-global.txt):
  ``src/mgds/pipelineModules/AspectBucketing.py``; quantization 64 for SDXL/Flux/SD3
  (8 for SD 1.5) from ``modules/dataLoader/*BaseDataLoader.py``.

No Textual, no printing; pure arithmetic plus numpy (as the trainers use it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

TRAINERS = ("kohya", "ai-toolkit", "diffusion-pipe", "onetrainer")


@dataclass(frozen=True)
class Placement:
    """What a trainer does with one image."""

    bucket: tuple[int, int]  # (width, height) trained at
    resized: tuple[int, int]  # size the image is scaled to before the crop
    scale: float  # resized / original (> 1: upscaled)
    cropped: float  # share of the resized image's area cut away, 0..1

    @property
    def label(self) -> str:
        return f"{self.bucket[0]}×{self.bucket[1]}"


def _placement(width: int, height: int, bucket: tuple[int, int], resized: tuple[int, int]) -> Placement:
    scale = max(resized[0] / width, resized[1] / height)
    area = resized[0] * resized[1]
    kept = min(bucket[0], resized[0]) * min(bucket[1], resized[1])
    cropped = 0.0 if area <= 0 else max(0.0, 1.0 - kept / area)
    return Placement((int(bucket[0]), int(bucket[1])), (int(resized[0]), int(resized[1])), scale, cropped)


@dataclass
class Placements:
    """Column form of ``Placement`` for many images."""

    bucket_w: np.ndarray
    bucket_h: np.ndarray
    resized_w: np.ndarray
    resized_h: np.ndarray
    scale: np.ndarray
    cropped: np.ndarray

    @classmethod
    def of(cls, w, h, bw, bh, rw, rh) -> "Placements":
        bw, bh, rw, rh = (np.asarray(a, dtype=np.int64) for a in (bw, bh, rw, rh))
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.maximum(rw / w, rh / h)
            area = (rw * rh).astype(np.float64)
            kept = (np.minimum(bw, rw) * np.minimum(bh, rh)).astype(np.float64)
            cropped = np.where(area > 0, np.maximum(0.0, 1.0 - kept / area), 0.0)
        return cls(bw, bh, rw, rh, scale, cropped)

    def __len__(self) -> int:
        return len(self.bucket_w)

    def at(self, i: int) -> Placement:
        return Placement(
            (int(self.bucket_w[i]), int(self.bucket_h[i])),
            (int(self.resized_w[i]), int(self.resized_h[i])),
            float(self.scale[i]),
            float(self.cropped[i]),
        )


@dataclass
class BucketPlan:
    trainer: str
    resolution: int
    settings: dict = field(default_factory=dict)
    _place: Callable[[int, int], Placement] | None = None
    exif_transpose: bool = False  # the trainer rotates by the EXIF orientation before bucketing
    _many: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]] | None = None

    def place(self, width: int, height: int) -> Placement:
        assert self._place is not None
        return self._place(int(width), int(height))

    def place_many(self, widths, heights) -> "Placements":
        """``place`` for whole columns at once (numpy, the same float operations in the same
        order, so the same answers: tests/test_check_buckets.py compares them)."""
        w = np.asarray(widths, dtype=np.int64)
        h = np.asarray(heights, dtype=np.int64)
        assert self._many is not None
        bw, bh, rw, rh = self._many(w, h)
        return Placements.of(w, h, bw, bh, rw, rh)

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{self.trainer} at {self.resolution}" + (f" ({opts})" if opts else "")


def _nearest_first(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.abs(values - xi).argmin()`` for every xi (the lowest index among equal
    distances), by binary search instead of an (n, buckets) matrix."""
    order = np.argsort(values, kind="stable")
    sv = values[order]
    # the first (lowest original index) of each run of equal values
    run_start = np.r_[0, np.flatnonzero(sv[1:] != sv[:-1]) + 1]
    first_of = np.repeat(order[run_start], np.diff(np.r_[run_start, len(sv)]))
    pos = np.searchsorted(sv, x, side="left")
    right = np.minimum(pos, len(sv) - 1)
    left = np.maximum(pos - 1, 0)
    left_first = first_of[np.searchsorted(sv, sv[left], side="left")]
    right_first = first_of[right]
    d_left = np.abs(values[left_first] - x)
    d_right = np.abs(values[right_first] - x)
    pick_left = (d_left < d_right) | ((d_left == d_right) & (left_first < right_first))
    return np.where(pick_left, left_first, right_first)


# --- kohya-ss/sd-scripts -------------------------------------------------------------------


def kohya_bucket_resolutions(
    max_reso: tuple[int, int], min_size: int = 256, max_size: int = 1024, divisible: int = 64
) -> list[tuple[int, int]]:
    """``library/model_util.py`` ``make_bucket_resolutions``."""
    max_width, max_height = max_reso
    max_area = max_width * max_height
    resos = set()
    width = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((width, width))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def kohya_adjust_min_max(resolution: tuple[int, int], min_reso: int, max_reso: int, steps: int) -> tuple[int, int]:
    """``BaseDataset.adjust_min_max_bucket_reso_by_steps`` (without its asserts: the
    caller reports those as a configuration error)."""
    if min_reso % steps != 0:
        min_reso = min_reso - min_reso % steps
    if max_reso % steps != 0:
        max_reso = max_reso + steps - max_reso % steps
    return min_reso, max_reso


def kohya_plan(
    resolution: int | tuple[int, int] = 1024,
    *,
    no_upscale: bool = False,
    min_bucket_reso: int = 256,
    max_bucket_reso: int = 1024,
    bucket_reso_steps: int = 64,
) -> BucketPlan:
    """``BucketManager`` as ``BaseDataset.make_buckets`` drives it with enable_bucket."""
    res = (resolution, resolution) if isinstance(resolution, int) else (resolution[0], resolution[1])
    min_size, max_size = kohya_adjust_min_max(res, min_bucket_reso, max_bucket_reso, bucket_reso_steps)
    if min(res) < min_size or max(res) > max_size:
        raise ValueError(
            f"kohya needs min_bucket_reso ≤ resolution ≤ max_bucket_reso; got {min_size} ≤ {res} ≤ {max_size} "
            "(pass a resolution in range or change the bucket limits)"
        )
    steps = bucket_reso_steps
    max_area = res[0] * res[1]
    resos = kohya_bucket_resolutions(res, min_size, max_size, steps)
    resos_set = set(resos)
    aspect_ratios = np.array([w / h for w, h in resos])

    def round_to_steps(x: float) -> int:
        x = int(x + 0.5)
        return x - x % steps

    def place(image_width: int, image_height: int) -> Placement:
        aspect_ratio = image_width / image_height
        if not no_upscale:
            reso = (image_width, image_height)
            if reso not in resos_set:
                reso = resos[int(np.abs(aspect_ratios - aspect_ratio).argmin())]
            ar_reso = reso[0] / reso[1]
            if aspect_ratio > ar_reso:
                scale = reso[1] / image_height
            else:
                scale = reso[0] / image_width
            resized_size = (int(image_width * scale + 0.5), int(image_height * scale + 0.5))
        else:
            if image_width * image_height > max_area:
                resized_width = math.sqrt(max_area * aspect_ratio)
                resized_height = max_area / resized_width
                b_width_rounded = round_to_steps(resized_width)
                b_height_in_wr = round_to_steps(b_width_rounded / aspect_ratio)
                ar_width_rounded = b_width_rounded / b_height_in_wr
                b_height_rounded = round_to_steps(resized_height)
                b_width_in_hr = round_to_steps(b_height_rounded * aspect_ratio)
                ar_height_rounded = b_width_in_hr / b_height_rounded
                if abs(ar_width_rounded - aspect_ratio) < abs(ar_height_rounded - aspect_ratio):
                    resized_size = (b_width_rounded, int(b_width_rounded / aspect_ratio + 0.5))
                else:
                    resized_size = (int(b_height_rounded * aspect_ratio + 0.5), b_height_rounded)
            else:
                resized_size = (image_width, image_height)
            reso = (resized_size[0] - resized_size[0] % steps, resized_size[1] - resized_size[1] % steps)
        return _placement(image_width, image_height, reso, resized_size)

    reso_w = np.array([r[0] for r in resos], dtype=np.int64)
    reso_h = np.array([r[1] for r in resos], dtype=np.int64)
    reso_keys = reso_w * 1_000_003 + reso_h

    def many(w: np.ndarray, h: np.ndarray):
        ar = w / h
        if not no_upscale:
            idx = np.empty(len(w), dtype=np.int64)
            exact = np.isin(w * 1_000_003 + h, reso_keys)
            if exact.any():
                idx[exact] = np.searchsorted(reso_keys, (w * 1_000_003 + h)[exact], sorter=np.argsort(reso_keys))
                idx[exact] = np.argsort(reso_keys)[idx[exact]]
            rest = np.flatnonzero(~exact)
            idx[rest] = _nearest_first(aspect_ratios, ar[rest])
            bw, bh = reso_w[idx], reso_h[idx]
            ar_reso = bw / bh
            scale = np.where(ar > ar_reso, bh / h, bw / w)
            rw = np.floor(w * scale + 0.5).astype(np.int64)
            rh = np.floor(h * scale + 0.5).astype(np.int64)
            return bw, bh, rw, rh
        big = w * h > max_area

        def rts(x):
            x = np.floor(x + 0.5).astype(np.int64)
            return x - x % steps

        rw, rh = w.copy(), h.copy()
        if big.any():
            a = ar[big]
            resized_width = np.sqrt(max_area * a)
            resized_height = max_area / resized_width
            b_width_rounded = rts(resized_width)
            b_height_in_wr = rts(b_width_rounded / a)
            with np.errstate(divide="ignore", invalid="ignore"):
                ar_width_rounded = b_width_rounded / b_height_in_wr
            b_height_rounded = rts(resized_height)
            b_width_in_hr = rts(b_height_rounded * a)
            ar_height_rounded = b_width_in_hr / b_height_rounded
            by_width = np.abs(ar_width_rounded - a) < np.abs(ar_height_rounded - a)
            rw[big] = np.where(by_width, b_width_rounded, np.floor(b_height_rounded * a + 0.5).astype(np.int64))
            rh[big] = np.where(by_width, np.floor(b_width_rounded / a + 0.5).astype(np.int64), b_height_rounded)
        return rw - rw % steps, rh - rh % steps, rw, rh

    settings = {"bucket_no_upscale": no_upscale, "bucket_reso_steps": steps}
    if not no_upscale:
        settings.update(min_bucket_reso=min_size, max_bucket_reso=max_size)
    return BucketPlan("kohya", res[0] if res[0] == res[1] else max_area, settings, place, _many=many)


# --- ostris/ai-toolkit ---------------------------------------------------------------------


def ai_toolkit_bucket(width: int, height: int, resolution: int = 512, divisibility: int = 8) -> tuple[int, int]:
    """``toolkit/buckets.py`` ``get_bucket_for_image_size``."""
    total_pixels = width * height
    max_pixels = resolution * resolution
    target_pixels = min(total_pixels, max_pixels)
    scaler = (target_pixels / total_pixels) ** 0.5
    w_raw = (width * scaler) / divisibility
    h_raw = (height * scaler) / divisibility
    candidates = [
        (math.floor(w_raw) * divisibility, math.floor(h_raw) * divisibility),
        (math.floor(w_raw) * divisibility, math.ceil(h_raw) * divisibility),
        (math.ceil(w_raw) * divisibility, math.floor(h_raw) * divisibility),
        (math.ceil(w_raw) * divisibility, math.ceil(h_raw) * divisibility),
    ]
    capped = [(w, h) for w, h in candidates if w > 0 and h > 0 and w * h <= max_pixels]
    if not capped:
        capped = [
            (max(divisibility, math.floor(w_raw) * divisibility), max(divisibility, math.floor(h_raw) * divisibility))
        ]
    return min(capped, key=lambda wh: abs(wh[0] * wh[1] - target_pixels))


def ai_toolkit_plan(resolution: int = 1024, *, bucket_tolerance: int = 64) -> BucketPlan:
    def place(width: int, height: int) -> Placement:
        bw, bh = ai_toolkit_bucket(width, height, resolution=resolution, divisibility=bucket_tolerance)
        max_scale_factor = max(bw / width, bh / height)
        resized = (int(math.ceil(width * max_scale_factor)), int(math.ceil(height * max_scale_factor)))
        return _placement(width, height, (bw, bh), resized)

    div = bucket_tolerance
    max_pixels = resolution * resolution

    def many(w: np.ndarray, h: np.ndarray):
        total = w * h
        target = np.minimum(total, max_pixels)
        scaler = (target / total) ** 0.5
        w_raw = (w * scaler) / div
        h_raw = (h * scaler) / div
        fw, cw = np.floor(w_raw).astype(np.int64) * div, np.ceil(w_raw).astype(np.int64) * div
        fh, ch = np.floor(h_raw).astype(np.int64) * div, np.ceil(h_raw).astype(np.int64) * div
        cands = [(fw, fh), (fw, ch), (cw, fh), (cw, ch)]
        cost = np.stack(
            [
                np.where(
                    (cw_ > 0) & (ch_ > 0) & (cw_ * ch_ <= max_pixels),
                    np.abs(cw_ * ch_ - target),
                    np.iinfo(np.int64).max,
                )
                for cw_, ch_ in cands
            ]
        )
        pick = cost.argmin(axis=0)  # first of equals, like min()
        bw = np.choose(pick, [c[0] for c in cands])
        bh = np.choose(pick, [c[1] for c in cands])
        none = (cost == np.iinfo(np.int64).max).all(axis=0)
        bw = np.where(none, np.maximum(div, fw), bw)
        bh = np.where(none, np.maximum(div, fh), bh)
        m = np.maximum(bw / w, bh / h)
        return bw, bh, np.ceil(w * m).astype(np.int64), np.ceil(h * m).astype(np.int64)

    return BucketPlan(
        "ai-toolkit", resolution, {"bucket_tolerance": bucket_tolerance}, place, exif_transpose=True, _many=many
    )


# --- tdrussell/diffusion-pipe --------------------------------------------------------------

_ROUND_DECIMAL_DIGITS = 3


def _dedup_and_sort(values) -> np.ndarray:
    return np.array(sorted(set(round(float(x), _ROUND_DECIMAL_DIGITS) for x in values)))


def _round_to_nearest_multiple(x: float, multiple: int) -> int:
    return int(round(x / multiple) * multiple)


def diffusion_pipe_plan(
    resolution: int = 1024,
    *,
    enable_ar_bucket: bool = True,
    min_ar: float = 0.5,
    max_ar: float = 2.0,
    num_ar_buckets: int = 7,
    round_to_multiple: int = 16,
) -> BucketPlan:
    """Defaults are examples/dataset.toml's (min_ar 0.5, max_ar 2.0, 7 buckets) and
    models/base.py's ``pixels_round_to_multiple`` 16 (32 for Wan / LTX / HunyuanImage)."""
    if enable_ar_bucket:
        ars = _dedup_and_sort(np.geomspace(min_ar, max_ar, num=num_ar_buckets))
    else:
        ars = _dedup_and_sort([1.0])
    log_ars = np.log(ars)
    area = resolution**2
    sizes = []
    for ar in ars:
        w = math.sqrt(area * ar)
        h = area / w
        sizes.append(
            (_round_to_nearest_multiple(w, round_to_multiple), _round_to_nearest_multiple(h, round_to_multiple))
        )

    def place(width: int, height: int) -> Placement:
        i = int(np.argmin(np.abs(np.log(width / height) - log_ars)))
        bw, bh = sizes[i]
        # ImageOps.fit: scale to cover the bucket, then a centred crop
        scale = max(bw / width, bh / height)
        resized = (max(bw, round(width * scale)), max(bh, round(height * scale)))
        return _placement(width, height, (bw, bh), resized)

    size_w = np.array([sz[0] for sz in sizes], dtype=np.int64)
    size_h = np.array([sz[1] for sz in sizes], dtype=np.int64)

    def many(w: np.ndarray, h: np.ndarray):
        i = np.abs(np.log(w / h)[:, None] - log_ars[None, :]).argmin(axis=1)
        bw, bh = size_w[i], size_h[i]
        scale = np.maximum(bw / w, bh / h)
        return (
            bw,
            bh,
            np.maximum(bw, np.round(w * scale).astype(np.int64)),
            np.maximum(bh, np.round(h * scale).astype(np.int64)),
        )

    settings: dict[str, Any] = {"enable_ar_bucket": enable_ar_bucket, "round_to_multiple": round_to_multiple}
    if enable_ar_bucket:
        settings.update(min_ar=min_ar, max_ar=max_ar, num_ar_buckets=num_ar_buckets)
    return BucketPlan("diffusion-pipe", resolution, settings, place, _many=many)


# --- Nerogar/OneTrainer (mgds AspectBucketing) -----------------------------------------------

_ONETRAINER_ASPECTS = [
    (1.0, 1.0),
    (1.0, 1.25),
    (1.0, 1.5),
    (1.0, 1.75),
    (1.0, 2.0),
    (1.0, 2.5),
    (1.0, 3.0),
    (1.0, 3.5),
    (1.0, 4.0),
]


def onetrainer_bucket_resolutions(target_resolution: int, quantization: int = 64) -> list[tuple[int, int]]:
    """``AspectBucketing.__create_automatic_buckets`` for one target resolution, as
    (height, width) pairs in the order mgds keeps them (``list(set(...))``: its argmin
    breaks ties by that order, so it is kept)."""
    exact = [
        (h / math.sqrt(h * w) * target_resolution, w / math.sqrt(h * w) * target_resolution)
        for (h, w) in _ONETRAINER_ASPECTS
    ]
    exact = exact + [(w, h) for (h, w) in exact]
    new = [(round(r[0] / quantization) * quantization, round(r[1] / quantization) * quantization) for r in exact]
    return list(set(new))


def onetrainer_plan(resolution: int = 1024, *, quantization: int = 64) -> BucketPlan:
    resolutions = onetrainer_bucket_resolutions(resolution, quantization)
    aspects = np.array([h / w for (h, w) in resolutions])

    def place(width: int, height: int) -> Placement:
        h, w = height, width  # mgds works in (height, width)
        target = resolutions[int(np.argmin(abs(aspects - h / w)))]
        aspect, target_aspect = h / w, target[0] / target[1]
        if aspect > target_aspect:
            scale = target[1] / w
            scaled = (round(h * scale), target[1])
        else:
            scale = target[0] / h
            scaled = (target[0], round(w * scale))
        return _placement(width, height, (target[1], target[0]), (scaled[1], scaled[0]))

    res_h = np.array([r[0] for r in resolutions], dtype=np.int64)
    res_w = np.array([r[1] for r in resolutions], dtype=np.int64)

    def many(w: np.ndarray, h: np.ndarray):
        a = h / w
        i = np.abs(aspects[None, :] - a[:, None]).argmin(axis=1)
        th, tw = res_h[i], res_w[i]
        wide = a > th / tw
        sh = np.where(wide, np.round(h * (tw / w)).astype(np.int64), th)
        sw = np.where(wide, tw, np.round(w * (th / h)).astype(np.int64))
        return tw, th, sw, sh

    return BucketPlan("onetrainer", resolution, {"quantization": quantization}, place, exif_transpose=True, _many=many)


def make_plan(trainer: str = "kohya", resolution: int = 1024, **options) -> BucketPlan:
    """The plan for a trainer name in ``TRAINERS``; options are that trainer's settings."""
    trainer = trainer.lower()
    if trainer == "kohya":
        return kohya_plan(resolution, **options)
    if trainer == "ai-toolkit":
        return ai_toolkit_plan(resolution, **options)
    if trainer == "diffusion-pipe":
        return diffusion_pipe_plan(resolution, **options)
    if trainer == "onetrainer":
        return onetrainer_plan(resolution, **options)
    raise ValueError(f"unknown trainer {trainer!r}; use one of {', '.join(TRAINERS)}")
