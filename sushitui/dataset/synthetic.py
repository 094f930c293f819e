"""A generated dataset for tests, benchmarks and the demo: small valid PNGs with tag
captions whose tags follow Danbooru-like (Zipf) frequencies, some layout-C groups
(``X_source.png`` + ``X_target.png`` + ``X_instruction.txt``), some prose captions,
nested folders.

PNGs are written directly (IHDR + one zlib IDAT + IEND), each with different pixels so
that every image has its own hash; this is ~20× faster than encoding with Pillow and
matters for the 100k-item benchmark.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

# Frequent real Danbooru general tags, most frequent first; the rest of the vocabulary is
# made-up long-tail tags.
COMMON_TAGS = [
    "1girl",
    "solo",
    "long_hair",
    "highres",
    "breasts",
    "looking_at_viewer",
    "blush",
    "smile",
    "short_hair",
    "open_mouth",
    "bangs",
    "blue_eyes",
    "skirt",
    "simple_background",
    "blonde_hair",
    "shirt",
    "large_breasts",
    "hair_ornament",
    "brown_hair",
    "black_hair",
    "long_sleeves",
    "red_eyes",
    "white_background",
    "1boy",
    "gloves",
    "thighhighs",
    "dress",
    "hat",
    "bow",
    "holding",
    "jewelry",
    "multiple_girls",
    "closed_mouth",
    "ribbon",
    "animal_ears",
    "brown_eyes",
    "standing",
    "navel",
    "school_uniform",
    "green_eyes",
    "sitting",
    "jacket",
    "purple_eyes",
    "upper_body",
    "full_body",
    "outdoors",
    "sky",
    "day",
    "cloud",
    "tree",
    "flower",
    "indoors",
    "water",
    "night",
    "sunlight",
    "from_side",
    "cowboy_shot",
    "portrait",
    "twintails",
    "ponytail",
]
PROSE = [
    "A quiet street at dusk with warm lights in the windows.",
    "Portrait of a woman with long hair looking out of a train window.",
    "A small cat sleeping on a stack of old books near the fireplace.",
    "Mountains reflected in a still lake under a pale morning sky.",
]
INSTRUCTIONS = [
    "Make the sky look like a sunset.",
    "Replace the background with a snowy forest.",
    "Turn the photo into a watercolor painting.",
    "Add a red umbrella in the person's hand.",
]


@dataclass
class GeneratedDataset:
    root: Path
    n_items: int = 0
    n_images: int = 0
    n_captions: int = 0
    n_groups: int = 0
    n_tag_rows: int = 0
    tag_counts: dict[str, int] = field(default_factory=dict)


def vocabulary(size: int = 5000) -> list[str]:
    extra = [f"tag_{i:05d}" for i in range(max(0, size - len(COMMON_TAGS)))]
    return (COMMON_TAGS + extra)[:size]


def png_bytes(width: int, height: int, seed: int) -> bytes:
    """A valid RGB PNG whose pixels depend on ``seed``."""
    r, g, b = seed & 0xFF, (seed >> 8) & 0xFF, (seed >> 16) & 0xFF
    row = bytes([0]) + bytes((r, g, b)) * width
    first = bytes([0]) + struct.pack(">I", seed) + bytes((r, g, b)) * width
    raw = first[: 1 + 3 * width] + row * (height - 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def generate_dataset(
    root: str | os.PathLike,
    n_items: int,
    seed: int = 0,
    image_size: tuple[int, int] = (32, 32),
    *,
    tags_per_item: tuple[int, int] = (8, 30),
    vocabulary_size: int = 5000,
    group_fraction: float = 0.05,
    prose_fraction: float = 0.05,
    uncaptioned_fraction: float = 0.02,
    items_per_dir: int = 500,
    nested: bool = True,
    zipf_s: float = 1.0,
) -> GeneratedDataset:
    """Write ``n_items`` items under ``root`` (created if missing) and describe them.

    Layout: ``root/part_NN/sub_M/`` folders of ``items_per_dir`` items when ``nested``
    (else all in ``root``); item ``i`` is ``img_{i:06d}.png`` + ``img_{i:06d}.txt``, or a
    group ``grp_{i:06d}_source.png`` + ``_target.png`` + ``_instruction.txt`` (+ a tag
    caption ``grp_{i:06d}.txt``); a few items have a prose caption or none.
    """
    rnd = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(vocabulary_size)
    weights = [1.0 / (rank + 1) ** zipf_s for rank in range(len(vocab))]
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    out = GeneratedDataset(root)
    w, h = image_size
    made_dirs: set[Path] = set()
    lo, hi = tags_per_item
    for i in range(n_items):
        if nested:
            d = root / f"part_{i // (items_per_dir * 10):02d}" / f"sub_{(i // items_per_dir) % 10}"
        else:
            d = root
        if d not in made_dirs:
            d.mkdir(parents=True, exist_ok=True)
            made_dirs.add(d)
        roll = rnd.random()
        is_group = roll < group_fraction
        base = f"grp_{i:06d}" if is_group else f"img_{i:06d}"
        if is_group:
            (d / f"{base}_source.png").write_bytes(png_bytes(w, h, seed * 1_000_003 + i * 2 + 1))
            (d / f"{base}_target.png").write_bytes(png_bytes(w, h, seed * 1_000_003 + i * 2))
            (d / f"{base}_instruction.txt").write_text(rnd.choice(INSTRUCTIONS) + "\n", encoding="utf-8")
            out.n_images += 2
            out.n_captions += 1
            out.n_groups += 1
        else:
            (d / f"{base}.png").write_bytes(png_bytes(w, h, seed * 1_000_003 + i * 2))
            out.n_images += 1
        out.n_items += 1
        roll = rnd.random()
        if roll < uncaptioned_fraction:
            continue
        if roll < uncaptioned_fraction + prose_fraction and not is_group:
            (d / f"{base}.txt").write_text(rnd.choice(PROSE) + "\n", encoding="utf-8")
            out.n_captions += 1
            continue
        k = rnd.randint(lo, hi)
        tags: list[str] = []
        seen = set()
        for t in rnd.choices(vocab, cum_weights=cum, k=k * 2):
            if t not in seen:
                seen.add(t)
                tags.append(t)
                if len(tags) == k:
                    break
        for t in tags:
            out.tag_counts[t] = out.tag_counts.get(t, 0) + 1
        out.n_tag_rows += len(tags)
        (d / f"{base}.txt").write_text(", ".join(tags) + "\n", encoding="utf-8")
        out.n_captions += 1
    return out
