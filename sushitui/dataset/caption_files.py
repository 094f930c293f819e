"""Caption-file I/O: the one module that reads and writes caption files.

Reading detects the encoding (SCAN-9): UTF-8 with or without BOM; anything else is
decoded with a fallback (cp932 first, as Japanese-Windows captions are the common case)
and flagged. Writing is atomic (temporary file in the same folder, fsync, rename) and
refuses to clobber a file that changed since it was read (IT-8, NF-3).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

TEMP_MARKER = ".sushitui-tmp-"
MAX_CAPTION_BYTES = 4 * 1024 * 1024  # a caption larger than this is not a caption
_FALLBACK_ENCODINGS = ("cp932", "gb18030", "cp1252")


class CaptionFileError(Exception):
    """A caption file could not be read or written; the message names the file."""


class CaptionConflict(CaptionFileError):
    """The file on disk is no longer what was read: someone else changed it."""

    def __init__(self, path: Path, expected: "FileState | None", current: "FileState | None", disk_text: str | None):
        self.path = Path(path)
        self.expected = expected
        self.current = current
        self.disk_text = disk_text
        if current is None:
            what = "was deleted"
        elif expected is None:
            what = "was created by another program"
        else:
            what = "was changed by another program"
        super().__init__(f"{path} {what} since sushitui read it; not overwritten. Choose which version to keep.")


@dataclass(frozen=True)
class FileState:
    """What a caption file was when it was read; compared before overwriting."""

    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class CaptionText:
    text: str
    encoding: str  # utf-8 | utf-8-sig | cp932 | ...
    flagged: bool  # True when not valid UTF-8 and a fallback decoding was used
    state: FileState


def decode_caption(data: bytes) -> tuple[str, str, bool]:
    """Return (text, encoding, flagged)."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig", False
        except UnicodeDecodeError:
            pass
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16", True
        except UnicodeDecodeError:
            pass
    else:
        try:
            return data.decode("utf-8"), "utf-8", False
        except UnicodeDecodeError:
            pass
    for enc in _FALLBACK_ENCODINGS:
        try:
            return data.decode(enc), enc, True
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace"), "utf-8-replaced", True


def read_caption(path: str | os.PathLike) -> CaptionText:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size > MAX_CAPTION_BYTES:
                raise CaptionFileError(f"{path}: {st.st_size} bytes is too large for a caption file (limit {MAX_CAPTION_BYTES}); skipped")
            data = fh.read()
    except FileNotFoundError as exc:
        raise CaptionFileError(f"{path}: the caption file vanished while it was being read") from exc
    except PermissionError as exc:
        raise CaptionFileError(f"{path}: permission denied; fix the file's permissions") from exc
    except IsADirectoryError as exc:
        raise CaptionFileError(f"{path}: is a folder, not a caption file") from exc
    except OSError as exc:
        raise CaptionFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    text, enc, flagged = decode_caption(data)
    state = FileState(len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return CaptionText(text, enc, flagged, state)


def current_state(path: str | os.PathLike) -> FileState | None:
    """The state of the file now (None when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except FileNotFoundError:
        return None
    return FileState(len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest())


def unchanged_since(path: str | os.PathLike, expected: FileState | None) -> bool:
    """True when the file is still what ``expected`` describes (None: still absent)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return expected is None
    return _unchanged(path, st, expected)


def _unchanged(path: str | os.PathLike, st: os.stat_result | None, expected: FileState | None) -> bool:
    if st is None or expected is None:
        return st is None and expected is None
    if st.st_size == expected.size and st.st_mtime_ns == expected.mtime_ns:
        return True
    now = current_state(path)
    return now is not None and now.sha256 == expected.sha256


def encode_caption(text: str, encoding: str | None = None) -> bytes:
    """Edited captions are written as UTF-8; a BOM the file had is kept."""
    data = text.encode("utf-8")
    return b"\xef\xbb\xbf" + data if encoding == "utf-8-sig" else data


def write_atomic(
    path: str | os.PathLike,
    text: str,
    *,
    expected: FileState | None | bool = False,
    encoding: str | None = None,
) -> FileState:
    """Write ``text`` to ``path`` atomically and return the new state.

    ``expected``: the FileState read earlier (or None if the file did not exist then);
    if the file on disk no longer matches, CaptionConflict is raised and nothing is
    written. Pass ``expected=False`` to skip the check (new export targets only).
    """
    staged = _stage(Path(path), text, expected, encoding, fsync=True)
    try:
        os.replace(staged.tmp, staged.path)
    except OSError as exc:
        _discard(staged.tmp)
        raise CaptionFileError(f"{staged.path}: not saved ({exc.strerror or exc}); the previous file is intact") from exc
    _fsync_dir(staged.path.parent)
    return _state_after(staged)


def _conflict(path: Path, expected: "FileState | None") -> CaptionConflict:
    disk = None
    try:
        disk = read_caption(path).text
    except CaptionFileError:
        pass
    return CaptionConflict(path, expected, current_state(path), disk)


def _state_after(staged: "StagedWrite") -> FileState:
    st = os.stat(staged.path)
    return FileState(len(staged.data), st.st_mtime_ns, hashlib.sha256(staged.data).hexdigest())


def write_new(path: str | os.PathLike, text: str, *, encoding: str | None = None) -> None:
    """Create a caption file that must not exist yet (export staging).

    No temporary file and no fsync: the caller writes into a private staging folder,
    syncs once and publishes the folder as a whole, which keeps a crash from exposing a
    half-written file while writing 100k files at create() speed (temp + rename +
    fsync per file runs at ~900 files/s here).
    """
    data = encode_caption(text, encoding)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError as exc:
        raise CaptionFileError(f"{path}: already exists; not overwritten") from exc
    except OSError as exc:
        raise CaptionFileError(f"{path}: cannot create ({exc.strerror or exc})") from exc
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        reason = "the disk is full" if getattr(exc, "errno", None) == 28 else (exc.strerror or str(exc))
        raise CaptionFileError(f"{path}: not written, {reason}") from exc
    finally:
        os.close(fd)


@dataclass
class StagedWrite:
    """A caption write prepared by ``stage_atomic``: the new text is in a temporary file
    beside the target; ``publish_staged`` makes it durable and renames it into place."""

    path: Path
    tmp: str
    data: bytes
    expected: "FileState | None | bool"
    dev: int = -1  # the temporary file's filesystem: one syncfs per filesystem


def stage_atomic(
    path: str | os.PathLike,
    text: str,
    *,
    expected: FileState | None | bool = False,
    encoding: str | None = None,
) -> StagedWrite:
    """First half of ``write_atomic`` for batches: conflict check and temporary file,
    without the per-file fsyncs (``publish_staged`` syncs the whole batch at once)."""
    return _stage(Path(path), text, expected, encoding, fsync=False)


def _stage(path: Path, text: str, expected: "FileState | None | bool", encoding: str | None, *, fsync: bool) -> StagedWrite:
    """Conflict check, then the new bytes in a temporary file beside ``path`` with the
    target's permissions. The target itself is untouched."""
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    if expected is not False and not _unchanged(path, st, expected):  # type: ignore[arg-type]
        raise _conflict(path, expected)  # type: ignore[arg-type]
    data = encode_caption(text, encoding)
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:80]}{TEMP_MARKER}", dir=directory)
    except PermissionError as exc:
        raise CaptionFileError(f"{path}: the folder {directory} is read-only; the caption cannot be saved there") from exc
    except OSError as exc:
        raise CaptionFileError(f"{path}: cannot create a temporary file in {directory} ({exc.strerror or exc})") from exc
    try:
        if st is not None:
            mode = st.st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
            dev = os.fstat(fh.fileno()).st_dev
        os.chmod(tmp, mode)  # not fchmod: Windows has it only from Python 3.13
    except OSError as exc:
        _discard(tmp)
        reason = "the disk is full" if getattr(exc, "errno", None) == 28 else (exc.strerror or str(exc))
        raise CaptionFileError(f"{path}: not saved, {reason}; the previous file is intact") from exc
    return StagedWrite(path, tmp, data, expected, dev)


def _sync_batch(staged: list[StagedWrite]) -> None:
    """Make the temporary files' data durable: one ``syncfs`` per filesystem (Linux),
    else an fsync per file."""
    try:
        import ctypes
        import ctypes.util

        syncfs = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).syncfs
    except (OSError, AttributeError):
        syncfs = None
    synced: set[int] = set()
    for s in staged:
        dev = s.dev
        if dev in synced:
            continue
        try:
            fd = os.open(s.tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            if syncfs is not None and dev != -1 and syncfs(fd) == 0:
                synced.add(dev)
            else:
                os.fsync(fd)
        finally:
            os.close(fd)


def publish_staged(staged: list[StagedWrite]) -> list["FileState | CaptionFileError"]:
    """Second half of a batch of atomic writes: sync the temporary files once, rename
    each into place (re-checking that the target did not change meanwhile), fsync each
    folder once. Each file is either wholly old or wholly new after a crash. Returns the
    new FileState or the error of each staged write, in order."""
    _sync_batch(staged)
    results: list[FileState | CaptionFileError] = []
    folders: set[Path] = set()
    for s in staged:
        if s.expected is not False and not unchanged_since(s.path, s.expected):  # type: ignore[arg-type]
            _discard(s.tmp)
            results.append(_conflict(s.path, s.expected))  # type: ignore[arg-type]
            continue
        try:
            os.replace(s.tmp, s.path)
            state = _state_after(s)
        except OSError as exc:
            _discard(s.tmp)
            results.append(CaptionFileError(f"{s.path}: not saved ({exc.strerror or exc}); the previous file is intact"))
            continue
        folders.add(s.path.parent)
        results.append(state)
    for folder in folders:
        _fsync_dir(folder)
    return results


def discard_staged(staged: list[StagedWrite]) -> None:
    for s in staged:
        _discard(s.tmp)


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def is_temp_file(name: str) -> bool:
    return TEMP_MARKER in name
