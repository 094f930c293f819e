"""Geometry of a crop rectangle edited with the keyboard (item detail's crop frame).

A crop is ``(x, y, w, h)`` in the pixels of the upright image (EXIF orientation applied,
as the preview shows it and the export reads it). Every function returns a rectangle
inside the image with a width and height of at least one pixel.
"""

from __future__ import annotations

Crop = tuple[int, int, int, int]
MIN_SIDE = 8


def full(width: int, height: int) -> Crop:
    return 0, 0, width, height


def step_of(width: int, height: int) -> int:
    """How far one key press moves or resizes: 1/32 of the short side."""
    return max(1, round(min(width, height) / 32))


def clamp(crop: Crop, width: int, height: int) -> Crop:
    x, y, w, h = crop
    w = max(min(MIN_SIDE, width), min(w, width))
    h = max(min(MIN_SIDE, height), min(h, height))
    x = max(0, min(x, width - w))
    y = max(0, min(y, height - h))
    return int(x), int(y), int(w), int(h)


def move(crop: Crop, dx: int, dy: int, width: int, height: int) -> Crop:
    x, y, w, h = crop
    return clamp((x + dx, y + dy, w, h), width, height)


def resize(crop: Crop, dw: int, dh: int, width: int, height: int, aspect: float | None = None) -> Crop:
    """Grow or shrink from the top-left corner; with ``aspect`` (w/h) the other side
    follows, so a preset ratio is kept."""
    x, y, w, h = crop
    if aspect:
        if dw:
            w = w + dw
            h = round(w / aspect)
        else:
            h = h + dh
            w = round(h * aspect)
        if w > width - x or h > height - y:  # at the image's edge: the largest that fits
            w, h = _largest(min(width - x, width), min(height - y, height), aspect)
        if w < MIN_SIDE or h < MIN_SIDE:
            return crop
        return clamp((x, y, w, h), width, height)
    # the top-left corner stays: the frame grows up to the image's right and bottom edges
    return clamp((x, y, min(w + dw, width - x), min(h + dh, height - y)), width, height)


def _largest(max_w: int, max_h: int, aspect: float) -> tuple[int, int]:
    """The largest w×h with w/h = aspect inside max_w × max_h."""
    if max_w / max_h > aspect:
        return max(1, round(max_h * aspect)), max_h
    return max_w, max(1, round(max_w / aspect))


def with_aspect(crop: Crop, aspect: float, width: int, height: int) -> Crop:
    """The crop with ratio ``aspect`` (w/h): the same area where the image allows it,
    the same centre, inside the image."""
    x, y, w, h = crop
    cx, cy = x + w / 2, y + h / 2
    area = w * h
    nw = (area * aspect) ** 0.5
    nh = nw / aspect
    if nw > width or nh > height:
        nw, nh = _largest(width, height, aspect)
    nw, nh = max(1, round(nw)), max(1, round(nh))
    return clamp((round(cx - nw / 2), round(cy - nh / 2), nw, nh), width, height)


def fit_bucket(
    crop: Crop | None, buckets: list[tuple[int, int]], width: int, height: int
) -> tuple[Crop, tuple[int, int]]:
    """The bucket whose ratio is nearest the crop's (the whole image's when there is
    none), and the largest rectangle of that ratio inside the image around the crop's
    centre: the least of the picture is lost to the trainer's own crop."""
    import math

    base = crop or full(width, height)
    ratio = base[2] / base[3]
    bucket = min(buckets, key=lambda b: (abs(math.log((b[0] / b[1]) / ratio)), -b[0] * b[1]))
    aspect = bucket[0] / bucket[1]
    w, h = _largest(width, height, aspect)
    x, y, bw, bh = base
    cx, cy = x + bw / 2, y + bh / 2
    return clamp((round(cx - w / 2), round(cy - h / 2), w, h), width, height), bucket


def aspect_presets(buckets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """One bucket per distinct ratio, tallest first (the order ``a`` cycles them in)."""
    seen: dict[float, tuple[int, int]] = {}
    for b in sorted(buckets, key=lambda b: b[0] / b[1]):
        seen.setdefault(round(b[0] / b[1], 3), b)
    return list(seen.values())
