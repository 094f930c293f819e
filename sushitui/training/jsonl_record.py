"""``run record --from FILE.jsonl`` (TR-2) for trainers that cannot import Python.

Each line is a JSON object with ``epoch`` and, optionally, ``step`` (else ``index``,
else 0), and the items used: ``ids``/``id`` (item ids) or, when there are no ids, ``images``/``image``
(absolute paths or paths relative to the dataset root).  Bad lines are problems reported with
their line number; the rest is recorded. With ``follow=True`` the file is tailed like
``tail -F`` (a line is only read once its newline has been written, a truncated file is
read again from the start) until cancelled or idle for ``idle_timeout`` seconds.

How far a file was read is stored with the run, in the same transaction as the usage
it produced: reading the same file again (a restarted ``--follow``) continues after the
last recorded line, so nothing is counted twice or lost. A file that was replaced
(other inode, or different first bytes) is read from the start; ``reread=True`` reads
it from the start anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sushitui.progress import CancelToken, ProgressEvent, Throttle
from sushitui.store import TrainingRun, write_transaction
from sushitui.training.recorder import Run
from sushitui.training.runs import TrainingError


@dataclass
class LineProblem:
    line: int
    reason: str


@dataclass
class JsonlReport:
    path: str
    lines: int = 0
    lines_recorded: int = 0
    events: int = 0
    problems: list[LineProblem] = field(default_factory=list)
    cancelled: bool = False
    resumed_at_line: int = 0  # lines skipped because an earlier run of `run record` read them


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} must be a number, got {json.dumps(value)[:40]}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {json.dumps(value)[:40]}") from None
    if number < 0:
        raise ValueError(f"{what} must not be negative")
    return number


def _listed(obj: dict, plural: str, singular: str) -> list | None:
    if plural in obj:
        value = obj[plural]
        if not isinstance(value, list):
            raise ValueError(f'"{plural}" must be a list')
        return value
    if singular in obj:
        return [obj[singular]]
    return None


class _LineParser:
    def __init__(self, run: Run):
        pool = run.pool()
        self.known = pool.all_ids
        self.by_image = pool.by_image

    def parse(self, text: str) -> tuple[list[int], int, int, list[str]]:
        """(item ids, epoch, step, unknown references) of one line; ValueError if bad."""
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        if "epoch" not in obj:
            raise ValueError('missing "epoch"')
        epoch = _as_int(obj["epoch"], '"epoch"')
        step = _as_int(obj.get("step", obj.get("index", 0)), '"step"')
        ids: list[int] = []
        unknown: list[str] = []
        raw_ids = _listed(obj, "ids", "id")
        # a line may carry both ids and paths of the same items (``run sample --format jsonl``
        # lines echoed back): ids win, paths are only used when there are no ids
        raw_images = _listed(obj, "images", "image") if raw_ids is None else None
        if raw_ids is None and raw_images is None:
            raise ValueError('no "ids"/"id" or "images"/"image"')
        for value in raw_ids or ():
            item_id = _as_int(value, "an item id")
            (ids.append(item_id) if item_id in self.known else unknown.append(f"id {item_id}"))
        for value in raw_images or ():
            if not isinstance(value, str):
                raise ValueError("image paths must be strings")
            image_item = self.by_image.get(value)
            if image_item is None and os.path.isabs(value):
                image_item = self.by_image.get(os.path.normpath(value))
            (ids.append(image_item) if image_item is not None else unknown.append(repr(value)))
        return ids, epoch, step, unknown


HEAD_BYTES = 4096


def _head_sha1(fh, offset: int) -> str:
    pos = fh.tell()
    fh.seek(0)
    digest = hashlib.sha1(fh.read(min(offset, HEAD_BYTES))).hexdigest()
    fh.seek(pos)
    return digest


def _stored_position(run: Run, key: str, fh) -> tuple[int, int]:
    """(byte offset, lines) where an earlier read of this file stopped, or (0, 0)."""
    row = TrainingRun.get_by_id(run.id)
    mark = (row.record_offsets or {}).get(key)
    if not mark:
        return 0, 0
    st = os.fstat(fh.fileno())
    if (st.st_dev, st.st_ino) != (mark.get("dev"), mark.get("ino")) or st.st_size < mark.get("offset", 0):
        return 0, 0
    if _head_sha1(fh, mark["offset"]) != mark.get("head_sha1"):
        return 0, 0
    return int(mark["offset"]), int(mark.get("lines", 0))


def _save_position(db, run: Run, key: str, mark: dict) -> None:
    """Merge one file's mark into the run's offsets (inside the caller's transaction)."""
    row = db.execute_sql("SELECT record_offsets FROM training_run WHERE id = ?", (run.id,)).fetchone()
    offsets = json.loads(row[0]) if row and row[0] else {}
    offsets[key] = mark
    db.execute_sql("UPDATE training_run SET record_offsets = ? WHERE id = ?", (json.dumps(offsets), run.id))


def record_jsonl(
    run: Run,
    path: str | os.PathLike,
    *,
    follow: bool = False,
    poll_seconds: float = 0.5,
    idle_timeout: float | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
    max_problems: int = 1000,
    reread: bool = False,
) -> JsonlReport:
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TrainingError(f"{path}: no such file; pass the JSONL file your trainer writes")
    report = JsonlReport(str(path))
    key = str(path)
    parser = _LineParser(run)
    tick = Throttle(progress, 0.25)
    ev = ProgressEvent("recording", 0, None, unit="lines")

    def problem(reason: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(LineProblem(report.lines, reason))

    consumed = 0  # bytes of the file up to the end of the last line handled

    def handle(raw: bytes, end: int) -> None:
        nonlocal consumed
        consumed = end  # set before record(): a flush inside it covers this line
        report.lines += 1
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            ids, epoch, step, unknown = parser.parse(text)
        except ValueError as exc:
            problem(str(exc))
            return
        if unknown:
            shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
            problem(f"not an item of dataset {run.row.dataset.name!r}: {shown}")
        if ids:
            run.record(ids, epoch, step)
            report.lines_recorded += 1
            report.events += len(ids)
        ev.done = report.lines
        ev.extra = {"events": report.events}
        tick(ev)

    pending = b""
    fh = open(path, "rb")
    start, report.lines = (0, 0) if reread else _stored_position(run, key, fh)
    report.resumed_at_line = report.lines
    fh.seek(start)
    consumed = read_to = start

    def mark() -> dict:
        st = os.fstat(fh.fileno())
        return {
            "offset": consumed,
            "lines": report.lines,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "head_sha1": _head_sha1(fh, consumed),
        }

    hook = lambda db: _save_position(db, run, key, mark())  # noqa: E731
    run.flush_hooks.append(hook)
    idle_since = time.monotonic()
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                report.cancelled = True
                break
            chunk = fh.read(1 << 16)
            if chunk:
                idle_since = time.monotonic()
                base = read_to - len(pending)  # file offset of pending[0]
                read_to += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    base += len(raw) + 1
                    handle(raw, base)
                continue
            if not follow:
                if pending:
                    handle(pending, read_to)
                    pending = b""
                break
            run.flush()  # idle: make what was read visible to the TUI and other readers
            tick(ev, force=True)
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                break
            time.sleep(poll_seconds)
            try:
                if os.stat(path).st_size < fh.tell():  # truncated or replaced: start over
                    run.flush()
                    fh.close()
                    fh = open(path, "rb")
                    pending = b""
                    consumed = read_to = 0
                    report.lines = 0
            except FileNotFoundError:
                pass
        run.flush()
        # lines read since the last flush that recorded nothing (bad or empty lines)
        with write_transaction(run.db):
            _save_position(run.db, run, key, mark())
    finally:
        run.flush_hooks.remove(hook)
        fh.close()
        run.flush()
    return report
