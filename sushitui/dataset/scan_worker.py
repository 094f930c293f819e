"""The per-item file work of a scan: read and hash the primary image, take its size
from the header, read caption files, type them (SCAN-6) and split tag captions.

Pure functions over paths, no database: they run in a small process pool so that
hashing and parsing use both cores while the main process writes the index. The
module stays light to import (the pool spawns fresh interpreters).
"""

from __future__ import annotations

import hashlib
import os
import signal
from dataclasses import dataclass

from sushitui.dataset.caption_files import CaptionFileError, read_caption
from sushitui.dataset.image_header import inspect
from sushitui.tags.normalize import looks_like_tags, match_key, split_tags

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


def tag_pairs(text: str) -> list[tuple[str, str]]:
    """(tag as written, match key) in caption order, duplicates dropped."""
    return [(t, match_key(t)) for t in split_tags(text)]


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
    tags: list[tuple[str, str]] | None = None
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
        return CaptionResult(subtype, name, error=reason[len(prefix):] if reason.startswith(prefix) else reason)
    text = ct.text
    ctype = caption_type(subtype, text, overrides)
    return CaptionResult(
        subtype, name, ctype, text, ct.encoding, ct.flagged, ct.state.size, ct.state.mtime_ns, ct.state.sha256,
        tag_pairs(text) if ctype == "tags" else None,
    )


# A task: (index, absolute dir, primary image name or None when unchanged,
#          [(subtype, caption file name)], read metadata?)
Task = tuple[int, str, "str | None", list[tuple[str, str]], bool]


def run_tasks(tasks: list[Task], overrides: dict[str, str] | None = None) -> list[tuple[int, ImageResult | None, list[CaptionResult]]]:
    out = []
    for index, directory, image_name, captions, read_meta in tasks:
        image = None
        if image_name is not None:
            ext = image_name[image_name.rfind(".") :].lower()
            image = probe_image(os.path.join(directory, image_name), ext, read_meta)
        caps = []
        if image is None or image.error is None:
            for subtype, name in captions:
                caps.append(read_caption_file(os.path.join(directory, name), subtype, name, overrides))
        out.append((index, image, caps))
    return out


def init_worker() -> None:
    """Pool initialiser: Ctrl-C goes to the main process, which cancels cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
