"""``run sample`` (TR-4): plan a run's epochs now and write them to a file the trainer
reads, so the trainer never touches the database.

Formats:
- ``list``: one absolute image path per line, all epochs in order.
- ``kohya-json``: kohya-ss fine-tuning metadata ``{image_path: {"caption": ...}}`` (kohya joins
  "caption" and "tags" when both are set, so only "caption" is written)
  for the sampled items in order of first use (a JSON object cannot repeat a key, so the
  per-epoch order lives in the other formats).
- ``jsonl``: one line per sample ``{"epoch", "index", "id", "image", "caption"}`` (plus
  ``"related": {suffix: path}`` for groups such as source/target pairs); a
  trainer can echo ``epoch``/``step``/``id`` back for ``run record --from``.

The file is written atomically (temporary file, fsync, rename); a cancelled or failed
run leaves no partial file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sushitui.progress import CancelToken, ProgressEvent, Throttle
from sushitui.store import TrainingRun, write_transaction
from sushitui.training.recorder import Run
from sushitui.training.runs import TrainingError

FORMATS = ("list", "kohya-json", "jsonl")


@dataclass
class SampleReport:
    path: str
    format: str
    epochs: int
    samples: int
    distinct_items: int
    sampler: str
    seed: int
    history: str
    cancelled: bool = False  # stopped before the file was complete: no file was written


class _Stop(Exception):
    """Internal: the writer was cancelled (callers see SampleReport.cancelled)."""


def _atomic_write(path: Path, write: Callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_sample_file(
    run: Run,
    out: str | os.PathLike,
    *,
    epochs: int,
    sampler: str = "random",
    seed: int = 0,
    history: str = "all",
    fmt: str = "list",
    epoch_size: int | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
) -> SampleReport:
    if fmt not in FORMATS:
        raise TrainingError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if epochs < 1:
        raise TrainingError("--epochs must be at least 1")
    out = Path(out).expanduser().resolve()
    items = run.items()
    if not items:
        raise TrainingError(f"dataset of run {run.name!r} has no items with images; index it first")
    tick = Throttle(progress)
    ev = ProgressEvent("sampling", 0, epochs, unit="epochs")
    seen: dict[int, None] = {}  # positions in order of first use
    totals = {"samples": 0}

    tails: dict[int, str] = {}

    def tail(p: int) -> str:
        # each item's JSON fields are encoded once, not once per sample (10x faster)
        text = tails.get(p)
        if text is None:
            it = items[p]
            fields = {"id": it.id, "image": it.image, "caption": it.caption}
            if it.related:
                fields["related"] = it.related
            body = json.dumps(fields, ensure_ascii=False)
            text = tails[p] = body[1:] + "\n"
        return text

    def write(fh) -> None:
        # epochs are planned and written one at a time: memory stays one epoch's order
        meta: dict[str, dict] = {}
        for e in range(1, epochs + 1):
            if cancel is not None and cancel.cancelled:
                raise _Stop  # unwinds _atomic_write, which removes the partial file
            order = run.epoch_positions(e, sampler, seed, history, epoch_size).tolist()
            totals["samples"] += len(order)
            seen.update(dict.fromkeys(order))
            if fmt == "list":
                fh.write("".join(items[p].image + "\n" for p in order))
            elif fmt == "jsonl":
                fh.write("".join(f'{{"epoch": {e}, "index": {k}, {tail(p)}' for k, p in enumerate(order)))
            ev.done = e
            tick(ev, force=e == epochs)
        if fmt == "kohya-json":
            for p in seen:
                meta[items[p].image] = {"caption": items[p].caption}
            json.dump(meta, fh, ensure_ascii=False, indent=1)
            fh.write("\n")

    try:
        _atomic_write(out, write)
    except _Stop:
        from sushitui.training.samplers import canonical_sampler

        return SampleReport(
            "",
            fmt,
            epochs,
            totals["samples"],
            len(seen),
            canonical_sampler(sampler),
            int(seed),
            history,
            cancelled=True,
        )
    with write_transaction(run.db):
        TrainingRun.update(metadata_file=str(out)).where(TrainingRun.id == run.id).execute()
    from sushitui.training.samplers import canonical_sampler

    return SampleReport(
        str(out), fmt, epochs, totals["samples"], len(seen), canonical_sampler(sampler), int(seed), history
    )
