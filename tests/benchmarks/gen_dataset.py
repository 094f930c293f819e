"""Generate a synthetic dataset folder: ``python tests/benchmarks/gen_dataset.py DIR --n N``.

Small valid PNGs with tag captions (Danbooru-like Zipf tag frequencies), some layout-C
groups, some prose captions, nested folders; see ``sushitui.dataset.synthetic``.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", help="target folder (created)")
    p.add_argument("--n", type=int, default=1000, help="number of items (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="32x32", help="image size WxH (default 32x32)")
    p.add_argument("--tags", default="8-30", help="tags per caption, MIN-MAX (default 8-30)")
    p.add_argument("--groups", type=float, default=0.05, help="fraction of layout-C groups (default 0.05)")
    p.add_argument("--flat", action="store_true", help="all files in one folder")
    args = p.parse_args(argv)
    from sushitui.dataset.synthetic import generate_dataset

    w, h = (int(x) for x in args.size.lower().split("x"))
    lo, hi = (int(x) for x in args.tags.split("-"))
    t0 = time.perf_counter()
    g = generate_dataset(
        args.dir,
        args.n,
        seed=args.seed,
        image_size=(w, h),
        tags_per_item=(lo, hi),
        group_fraction=args.groups,
        nested=not args.flat,
    )
    dt = time.perf_counter() - t0
    print(
        f"{g.n_items:,} items ({g.n_images:,} images, {g.n_captions:,} captions, {g.n_groups:,} groups, "
        f"{g.n_tag_rows:,} tags) in {g.root} — {dt:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
