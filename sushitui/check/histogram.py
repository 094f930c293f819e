"""The bucket histogram as lines of terminal cells: one bar per bucket, with its count.

Bars use the eighth blocks (▏▎▍▌▋▊▉█) so that small differences show at 80 columns.
Pure text: the CLI prints the lines, a TUI widget can show the same ones.
"""

from __future__ import annotations

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(value: int, maximum: int, width: int) -> str:
    if maximum <= 0 or width <= 0:
        return ""
    eighths = round(value / maximum * width * 8)
    if value > 0:
        eighths = max(1, eighths)  # a bucket with one image still shows
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def histogram_lines(
    buckets: list[tuple[tuple[int, int], int]], *, width: int = 80, batch_size: int = 1, marker: str = " < batch"
) -> list[str]:
    """``buckets``: ((w, h), images) pairs. Each line: ``  832×1216  ████▌ 123``; buckets
    with fewer images than the batch size are marked."""
    if not buckets:
        return []
    labels = [f"{w}×{h}" for (w, h), _n in buckets]
    counts = [n for _b, n in buckets]
    label_w = max(len(s) for s in labels)
    count_w = len(f"{max(counts):,}")
    ar_w = 6
    room = max(10, width - label_w - count_w - ar_w - len(marker) - 6)
    top = max(counts)
    lines = []
    for ((w, h), n), label in zip(buckets, labels):
        ar = f"{w / h:.2f}" if h else "-"
        line = f"{label:>{label_w}} {ar:>{ar_w - 1}} {bar(n, top, room):<{room}} {n:>{count_w},}"
        if n < batch_size:
            line += marker
        lines.append(line.rstrip())
    return lines
