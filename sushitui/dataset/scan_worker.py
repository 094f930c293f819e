"""The per-item file work of a scan: read and hash the primary image, take its size
from the header, read caption files, type them (SCAN-6) and split tag captions.

Pure functions over paths, no database: they run in a small process pool so that
hashing and parsing use both cores while the main process writes the index (the pool
comes from ``sushitui.workers``: its workers ignore Ctrl-C and die with the scan). The
module stays light to import (the pool spawns fresh interpreters).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

from sushitui.dataset.caption_files import CaptionFileError, read_caption
from sushitui.dataset.image_header import inspect
from sushitui.tags import normalize as _normalize
from sushitui.tags.normalize import clean, looks_like_tags, match_key

# Files up to this size are read in one go (hash + header + integrity from one buffer);
# larger ones are hashed in chunks and only their head is inspected.
WHOLE_READ_LIMIT = 64 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024
_HEAD = 1024 * 1024

FIXED_TYPES = {"instruction": "instruction", "description": "description", "tags": "tags"}
CAPTION_TYPES = ("tags", "natural_language", "social_media", "instruction", "description", "prompt")


def caption_type(subtype: str, text: str, overrides: dict[str, str] | None = None) -> str:
    """SCAN-6: the user's override for the subtype, else by suffix, else by content."""
    if overrides and subtype in overrides:
        return overrides[subtype]
    fixed = FIXED_TYPES.get(subtype)
    if fixed:
        return fixed
    return "tags" if looks_like_tags(text) else "natural_language"


# Tags repeat heavily across a dataset (Zipf), so each worker memoises the
# part -> (clean tag, match key, word count) step; the splitting rules are
# normalize.split_tags' (same separators, empties dropped, first spelling of a key
# kept) and the tags-or-prose rule is normalize.looks_like_tags', computed from the
# same split so that a caption is split once, not twice (tests check both against
# normalize).
_SEPARATORS = _normalize._SEPARATORS
_PART_CACHE: dict[str, tuple[str, str, int]] = {}
_PART_CACHE_MAX = 200_000


def _split(text: str) -> tuple[list[tuple[str, str]], list[int]]:
    """(tag pairs in caption order without duplicates, word count of each non-blank part)."""
    cache = _PART_CACHE
    if len(cache) > _PART_CACHE_MAX:
        cache.clear()
    out: list[tuple[str, str]] = []
    words: list[int] = []
    seen: set[str] = set()
    for part in _SEPARATORS.split(text):
        hit = cache.get(part)
        if hit is None:
            tag = clean(part)
            stripped = part.strip()
            hit = cache[part] = (tag, match_key(tag) if tag else "", len(stripped.split()) if stripped else 0)
        if hit[2]:
            words.append(hit[2])
        if hit[0] and hit[1] not in seen:
            seen.add(hit[1])
            out.append(hit[:2])
    return out, words


def tag_pairs(text: str) -> list[tuple[str, str]]:
    """(tag as written, match key) in caption order, duplicates dropped."""
    return _split(text)[0]


def _looks_like_tags(text: str, words: list[int]) -> bool:
    """normalize.looks_like_tags from the word counts ``_split`` already has."""
    if len(words) <= 1:
        return looks_like_tags(text)  # empty or one phrase: the sentence rule needs the text
    long_parts = sum(1 for w in words if w > 6)
    return sum(words) / len(words) <= 4 and long_parts <= max(1, len(words) // 5)


def typed_tags(
    subtype: str, text: str, overrides: dict[str, str] | None = None
) -> tuple[str, list[tuple[str, str]] | None]:
    """``caption_type`` and, for a tag caption, its ``tag_pairs``, splitting the text once."""
    fixed = overrides[subtype] if overrides and subtype in overrides else FIXED_TYPES.get(subtype)
    if fixed is not None:
        return fixed, (tag_pairs(text) if fixed == "tags" else None)
    pairs, words = _split(text)
    if _looks_like_tags(text, words):
        return "tags", pairs
    return "natural_language", None


def tags_json(pairs: list[tuple[str, str]]) -> str:
    """The tag rows of one caption as JSON; SQLite expands it with json_each, which is
    cheaper than binding one Python tuple per tag row."""
    return json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))


@dataclass
class ImageResult:
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    warning: str | None = None
    meta: dict | None = None  # from sushitui.dataset.metadata.extract


@dataclass
class CaptionResult:
    subtype: str
    name: str
    ctype: str | None = None
    text: str = ""
    encoding: str | None = None
    flagged: bool = False
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None
    tags: str | None = None  # JSON [[tag, key], ...] for tag captions
    n_tags: int = 0
    error: str | None = None


def _read_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "vanished during the scan (deleted or renamed); reindex when the folder is settled"
    if isinstance(exc, PermissionError):
        return "permission denied; make the file readable (chmod +r) and reindex"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image"
    return f"cannot be read ({exc.strerror or exc}); check the disk and reindex"


def probe_image(path: str, ext: str, read_meta: bool = False) -> ImageResult:
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size <= WHOLE_READ_LIMIT:
                data = fh.read()
                digest = hashlib.sha256(data).hexdigest()
                complete = True
            else:
                h = hashlib.sha256()
                data = b""
                while chunk := fh.read(_CHUNK):
                    if len(data) < _HEAD:
                        data += chunk[: _HEAD - len(data)]
                    h.update(chunk)
                digest = h.hexdigest()
                complete = False
    except OSError as exc:
        return ImageResult(error=_read_error(exc))
    info = inspect(data, ext, total_size=st.st_size, complete=complete)
    result = ImageResult(st.st_size, st.st_mtime_ns, digest, info.width, info.height, info.error, info.warning)
    if read_meta and info.error is None:
        from sushitui.dataset.metadata import extract

        result.meta = extract(data, info.format)
    return result


def read_caption_file(path: str, subtype: str, name: str, overrides: dict[str, str] | None) -> CaptionResult:
    try:
        ct = read_caption(path)
    except CaptionFileError as exc:
        # read_caption names the absolute path; the report names the file itself
        reason = str(exc)
        prefix = f"{path}: "
        return CaptionResult(subtype, name, error=reason[len(prefix) :] if reason.startswith(prefix) else reason)
    text = ct.text
    ctype, pairs = typed_tags(subtype, text, overrides)
    return CaptionResult(
        subtype,
        name,
        ctype,
        text,
        ct.encoding,
        ct.flagged,
        ct.state.size,
        ct.state.mtime_ns,
        ct.state.sha256,
        tags_json(pairs) if pairs else None,
        len(pairs or ()),
    )


# A task: (index, absolute dir, primary image name or None when unchanged,
#          [(subtype, caption file name)], read metadata?, XMP sidecar name or None,
#          sidecar captions to refresh (there is or was a sidecar)?)
Task = tuple[int, str, "str | None", list[tuple[str, str]], bool, "str | None", bool]


def _task_paths(task: Task) -> list[str]:
    """The files a task will read, in the order it reads them."""
    _index, directory, image_name, captions, _read_meta, sidecar, refresh_sidecar = task
    paths = [os.path.join(directory, image_name)] if image_name is not None else []
    if image_name is not None and refresh_sidecar and sidecar:
        paths.append(os.path.join(directory, sidecar))
    paths.extend(os.path.join(directory, name) for _subtype, name in captions)
    return paths


def _read_ahead(path: str) -> None:
    """Ask the kernel to start reading the head of ``path`` now, without waiting for it.
    Where the files are not in the page cache (a first scan of a big folder, a network
    mount), each synchronous read of a small file waits for the disk in turn; with the
    next files already on their way the disk serves many at once (measured on this
    project's VM: 20,000 uncached files read 3-3.6x faster). In the page cache it
    costs ~4 us a file. Only the head: a large image's rest comes by the kernel's own
    sequential read-ahead, so a worker has at most READ_AHEAD_ITEMS items' heads of
    READ_AHEAD_BYTES on their way (~33 MB for an image and a caption each)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # the real read reports it
    try:
        os.posix_fadvise(fd, 0, READ_AHEAD_BYTES, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass  # not supported for this file system: a plain read follows anyway
    finally:
        os.close(fd)


READ_AHEAD_ITEMS = 128  # items whose files are asked for ahead of the one being read
READ_AHEAD_BYTES = 256 * 1024
# Read-ahead costs ~20 us an item where the files are cached (~20 % of a worker's time
# on small files), so each task list first reads PROBE_ITEMS items plainly and turns it
# on only when they waited for the disk: the median item spent over WAIT_FOR_DISK_S
# off the CPU (a cached small file waits ~0; one from this VM's disk ~400 us). A large
# cached image also reads long, but on the CPU (copying), so it is not mistaken.
PROBE_ITEMS = 24
WAIT_FOR_DISK_S = 60e-6
_CAN_READ_AHEAD = hasattr(os, "posix_fadvise")


def run_tasks(
    tasks: list[Task], overrides: dict[str, str] | None = None
) -> list[tuple[int, ImageResult | None, list[CaptionResult]]]:
    out = []
    waits: list[float] = []  # per probed item: wall time minus this thread's CPU time
    read_ahead = False
    asked = 0  # tasks[:asked] are read or asked for
    for i, (index, directory, image_name, captions, read_meta, sidecar, refresh_sidecar) in enumerate(tasks):
        probing = _CAN_READ_AHEAD and i < PROBE_ITEMS
        if probing:
            wall0, cpu0 = time.perf_counter(), time.thread_time()
        elif i == PROBE_ITEMS and waits:
            read_ahead = sorted(waits)[len(waits) // 2] > WAIT_FOR_DISK_S
        if read_ahead:
            asked = max(asked, i + 1)
            while asked < min(len(tasks), i + 1 + READ_AHEAD_ITEMS):
                for path in _task_paths(tasks[asked]):
                    _read_ahead(path)
                asked += 1
        image = None
        if image_name is not None:
            ext = image_name[image_name.rfind(".") :].lower()
            image = probe_image(os.path.join(directory, image_name), ext, read_meta)
            if image.error is None and refresh_sidecar:
                from sushitui.dataset.metadata import add_sidecar

                image.meta = add_sidecar(image.meta, os.path.join(directory, sidecar) if sidecar else None, sidecar)
        caps = []
        if image is None or image.error is None:
            for subtype, name in captions:
                caps.append(read_caption_file(os.path.join(directory, name), subtype, name, overrides))
        out.append((index, image, caps))
        if probing:
            waits.append((time.perf_counter() - wall0) - (time.thread_time() - cpu0))
    return out
