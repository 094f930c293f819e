"""Walking a dataset folder: stat only, no reads (the part of a scan that a reindex of
an unchanged dataset is made of).

Each folder yields a ``DirScan``: its image and caption files with size and mtime,
the problems found while listing it, and a digest of (name, size, mtime) of those
files. When a folder's digest equals the one stored at the last scan, nothing in it
changed and the reindex skips its items (SCAN-8).
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_mod
from dataclasses import dataclass, field

from sushitui.dataset.caption_files import TEMP_MARKER
from sushitui.dataset.grouping import CAPTION_EXTENSIONS, IMAGE_EXTENSIONS, FileEntry
from sushitui.progress import CancelToken


class WalkError(Exception):
    """The root folder cannot be opened."""


@dataclass
class DirScan:
    rel_dir: str
    images: list[FileEntry] = field(default_factory=list)
    captions: list[FileEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (dataset-relative path, reason)
    signature: str = ""


@dataclass
class Walk:
    dirs: list[DirScan] = field(default_factory=list)
    files_seen: int = 0
    unreadable_dirs: list[str] = field(default_factory=list)  # their items must not be dropped
    cancelled: bool = False


BROKEN_LINK = "broken symbolic link (its target does not exist); fix or remove the link"


def _rel(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _stat_reason(exc: OSError) -> str:
    if getattr(exc, "errno", None) == 40:  # ELOOP
        return "symbolic link loop (the link points back to itself); fix or remove the link"
    if isinstance(exc, PermissionError):
        return "permission denied; make it readable and reindex"
    return f"cannot be read ({exc.strerror or exc})"


def _kind(name: str) -> str | None:
    dot = name.rfind(".")
    if dot <= 0:
        return None
    ext = name[dot:].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in CAPTION_EXTENSIONS:
        return "caption"
    return None


def walk(
    root: str,
    *,
    recursive: bool = True,
    max_depth: int | None = None,
    cancel: CancelToken | None = None,
    on_dir=None,
) -> Walk:
    """List every folder under ``root`` (following folder symlinks, never twice)."""
    result = Walk()
    try:
        root_st = os.stat(root)
    except OSError as exc:
        raise WalkError(f"{root}: the dataset folder cannot be opened ({exc.strerror}); check the path or remount the disk") from exc
    visited = {(root_st.st_dev, root_st.st_ino)}
    stack: list[tuple[str, str, int]] = [(root, "", 0)]
    while stack:
        if cancel is not None and cancel.cancelled:
            result.cancelled = True
            break
        path, rel_dir, depth = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
            d = DirScan(rel_dir, problems=[(rel_dir or ".", f"folder cannot be read ({reason}); its items are kept as they were")])
            result.unreadable_dirs.append(rel_dir)
            result.dirs.append(d)
            continue
        d = DirScan(rel_dir)
        sig: list[str] = []
        subdirs = []
        descend = recursive and (max_depth is None or depth < max_depth)
        for entry in entries:
            name = entry.name
            if name[0] == "." or TEMP_MARKER in name:
                continue  # hidden files, our own temp files, macOS ._ forks
            kind = _kind(name)
            if kind is None:
                try:
                    if entry.is_dir():
                        if descend:
                            subdirs.append(entry)
                        continue
                except OSError:
                    pass
                continue
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = _rel(rel_dir, name).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                d.problems.append((shown, "file name is not valid UTF-8; rename it to index it"))
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                reason = BROKEN_LINK if entry.is_symlink() else "vanished during the scan; reindex when the folder is settled"
                d.problems.append((_rel(rel_dir, name), reason))
                sig.append(f"{name}\0!")
                continue
            except OSError as exc:
                d.problems.append((_rel(rel_dir, name), _stat_reason(exc)))
                sig.append(f"{name}\0!")
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                if descend:
                    subdirs.append(entry)
                continue
            if not stat_mod.S_ISREG(st.st_mode):
                d.problems.append((_rel(rel_dir, name), "not a regular file (device, pipe or socket); skipped"))
                sig.append(f"{name}\0?")
                continue
            result.files_seen += 1
            (d.images if kind == "image" else d.captions).append(FileEntry(name, st.st_size, st.st_mtime_ns))
            sig.append(f"{name}\0{st.st_size}\0{st.st_mtime_ns}")
        for entry in sorted(subdirs, key=lambda e: e.name, reverse=True):
            rel = _rel(rel_dir, entry.name)
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                d.problems.append((rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                                   "folder name is not valid UTF-8; rename it to index it"))
                continue
            try:
                st = entry.stat()
            except OSError as exc:
                d.problems.append((rel, _stat_reason(exc)))
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in visited:
                d.problems.append((rel, "symbolic link loop (this folder was already scanned through another path); not followed"))
                continue
            visited.add(ident)
            stack.append((entry.path, rel, depth + 1))
        sig.sort()
        d.signature = hashlib.blake2b("\n".join(sig).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        result.dirs.append(d)
        if on_dir is not None:
            on_dir(result)
    return result
