"""A training loop that records which images it trained on (the README's example).

    sushitui run create my-lora --dataset mydata --epochs 3
    python examples/train_loop.py my-lora --epochs 3 --sampler min-usage --seed 42
    sushitui run stats my-lora

The "training step" here only loads the images and their captions, which is where a
real trainer would run the model. Everything sushitui-specific is three calls:
``open_run``, ``run.sample_epoch`` and ``run.record``.
"""

from __future__ import annotations

import argparse

from PIL import Image

import sushitui.training as training


def train_step(images: list[Image.Image], captions: list[str]) -> float:
    """Stand-in for forward/backward: a number computed from the batch."""
    return sum(sum(img.resize((1, 1)).getpixel((0, 0))[:3]) for img in images) / (len(images) * 765.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run created with `sushitui run create`")
    ap.add_argument("--db", help="database file (default: SUSHITUI_DB or the XDG data dir)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--sampler", default="random", help="random, min-usage, stratified or variance")
    ap.add_argument("--history", default="all", help="all previous runs or only the parent run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    # Leaving the `with` block flushes the last batch and marks the run completed
    # (failed on an exception, cancelled on Ctrl-C).
    with training.open_run(args.run, db_path=args.db) as run:
        step = 0
        for epoch in range(1, args.epochs + 1):
            order = run.sample_epoch(epoch, sampler=args.sampler, seed=args.seed, history=args.history)
            for start in range(0, len(order), args.batch_size):
                batch = order[start : start + args.batch_size]
                images = [Image.open(item.image).convert("RGB") for item in batch]
                loss = train_step(images, [item.caption for item in batch])
                run.record(batch, epoch, step)  # cheap: buffered, written in batches
                step += 1
            print(f"epoch {epoch}: {len(order)} samples, last loss {loss:.4f}")


if __name__ == "__main__":
    main()
