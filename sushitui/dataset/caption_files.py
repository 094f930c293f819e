"""Caption-file I/O: the one module that reads and writes caption files.

Reading detects the encoding (SCAN-9): UTF-8 with or without BOM; anything else is
decoded with a fallback (cp932 first, as Japanese-Windows captions are the common case)
and flagged. Writing is atomic (temporary file in the same folder, fsync, rename) and
refuses to clobber a file that changed since it was read (IT-8, NF-3).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sushitui.errors import UserError

TEMP_MARKER = ".sushitui-tmp-"
MAX_CAPTION_BYTES = 4 * 1024 * 1024  # a caption larger than this is not a caption
_FALLBACK_ENCODINGS = ("cp932", "gb18030", "cp1252")


class CaptionFileError(UserError):
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


def _open_nonblocking(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO named like a caption must not wait for a writer; the
    # fstat below then refuses it. It changes nothing for regular files.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))


def read_at_most(fh: BinaryIO, limit: int, chunk_size: int) -> bytes:
    """Up to ``limit`` bytes of ``fh``, ``chunk_size`` a read: bounded even when the file
    is larger than its size said (read one byte over a limit to see that it is over)."""
    chunks = []
    left = limit
    while left > 0:
        chunk = fh.read(min(left, chunk_size))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_regular(path: str | os.PathLike) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most MAX_CAPTION_BYTES. Pipes, devices and
    sockets (a FIFO named x.txt, a link to /dev/zero) are refused without reading, and
    the read is bounded even when the size lied."""
    try:
        with open(path, "rb", buffering=0, opener=_open_nonblocking) as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CaptionFileError(f"{path}: not a regular file (a pipe, device or socket); skipped")
            if st.st_size > MAX_CAPTION_BYTES:
                raise CaptionFileError(
                    f"{path}: {st.st_size} bytes is too large for a caption file (limit {MAX_CAPTION_BYTES}); skipped"
                )
            # reads sized by the file (a caption is ~200 bytes): a fixed 1 MiB read allocated
            # 1 MiB per caption file before trimming it to what was there
            data = read_at_most(fh, MAX_CAPTION_BYTES + 1, min(max(st.st_size + 1, 4096), 1 << 20))
            if len(data) > MAX_CAPTION_BYTES:
                raise CaptionFileError(
                    f"{path}: more than {MAX_CAPTION_BYTES} bytes, too large for a caption file; skipped"
                )
            return data, st
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise CaptionFileError(f"{path}: permission denied; fix the file's permissions") from exc
    except IsADirectoryError as exc:
        raise CaptionFileError(f"{path}: is a folder, not a caption file") from exc
    except CaptionFileError:
        raise
    except OSError as exc:
        raise CaptionFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def read_caption(path: str | os.PathLike) -> CaptionText:
    # a str, not a Path: the scanner reads every caption file through here, and pathlib
    # parses and interns each name (interned names grow the interpreter's intern table)
    path = os.fspath(path)
    try:
        data, st = _read_regular(path)
    except FileNotFoundError as exc:
        raise CaptionFileError(f"{path}: the caption file vanished while it was being read") from exc
    text, enc, flagged = decode_caption(data)
    state = FileState(len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return CaptionText(text, enc, flagged, state)


def _read_state(path: Path) -> tuple[FileState | None, bytes | None, os.stat_result | None]:
    """(state, bytes, stat) of the file now; (None, None, None) when it does not exist."""
    try:
        data, st = _read_regular(path)
    except FileNotFoundError:
        return None, None, None
    return FileState(len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest()), data, st


def current_state(path: str | os.PathLike) -> FileState | None:
    """The state of the file now (None when it does not exist)."""
    return _read_state(Path(path))[0]


def unchanged_since(path: str | os.PathLike, expected: FileState | None) -> bool:
    """True when the file holds what ``expected`` describes (None: still absent). The
    content decides, not size and mtime: two writes within one clock tick can leave the
    same size and mtime with different text."""
    return _same(_read_state(Path(path))[0], expected)


def _same(now: FileState | None, expected: FileState | None) -> bool:
    if now is None or expected is None:
        return now is None and expected is None
    return now.size == expected.size and now.sha256 == expected.sha256


def text_problem(data: bytes) -> str | None:
    """Why rewriting this caption through its decoded text would damage it, or None.

    Bytes that decode in no known encoding come back as U+FFFD, and NUL or other control
    characters are cut or merged by tag normalisation (``sm\\0ile`` became ``sm``): the
    original bytes would be lost. Fallback encodings (cp932, ...) decode losslessly and
    are not a problem (they are saved as UTF-8)."""
    text, encoding, _flagged = decode_caption(data)
    if encoding == "utf-8-replaced":
        bad = text.count("\ufffd")
        return f"holds {bad} byte sequence(s) that are not text in any known encoding (a binary file?)"
    controls = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\n\r") or 0x7F <= ord(ch) < 0xA0)
    if controls:
        return f"holds {controls} NUL or control character(s)"
    return None


def encode_caption(text: str, encoding: str | None = None) -> bytes:
    """Edited captions are written as UTF-8; a BOM the file had is kept."""
    data = text.encode("utf-8")
    return b"\xef\xbb\xbf" + data if encoding == "utf-8-sig" else data


class ReadOnlyCaption(CaptionFileError):
    """The caption's permissions forbid writing: reported, never replaced."""


class LossyCaption(CaptionFileError):
    """Rewriting would lose bytes of the file (binary, NUL or undecodable bytes)."""


class UnsafeCaptionPath(CaptionFileError):
    """The caption is reached through a link leading outside the dataset folder, or is
    not a regular file."""


def write_target(path: Path, root: str | os.PathLike | None) -> Path:
    """The file a write of ``path`` really changes, checked at write time.

    Links are resolved, and the result must lie inside the dataset folder ``root``: a
    folder link inside the dataset that leads elsewhere (``outside/secret.txt``) is never
    written through. A caption that is itself a link to a file inside the dataset is
    written through to that file, so the link stays a link (documented choice: the user
    made the link to share one caption). Without ``root`` (export targets) the path is
    used as given and a link there is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise CaptionFileError(f"{path}: cannot check the file ({exc.strerror or exc})") from exc
    if root is None:
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise UnsafeCaptionPath(f"{path}: is a symbolic link; not replaced")
        return path
    root_real = os.path.realpath(root)
    if st is not None and stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if not os.path.lexists(real) or not os.path.exists(path):
            raise UnsafeCaptionPath(f"{path}: is a broken symbolic link; fix or remove the link")
    else:
        real = os.path.join(os.path.realpath(path.parent), path.name)
    if os.path.commonpath([root_real, real]) != root_real:
        raise UnsafeCaptionPath(
            f"{path}: leads outside the dataset folder through a symbolic link (to {real}); sushitui never writes "
            "there. Copy the file into the dataset to edit it."
        )
    return Path(real)


def _read_only(st: os.stat_result) -> bool:
    """The user protected the file (mode 0444, 000). Checked from the mode bits, since
    root (CI, containers) passes every os.access test; other users by their own bit."""
    if not st.st_mode & 0o222:
        return True
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return not _may_write(st)
    return False


def _may_write(st: os.stat_result) -> bool:
    if st.st_uid == os.geteuid():
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in os.getgroups() or st.st_gid == os.getegid():
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def write_atomic(
    path: str | os.PathLike,
    text: str,
    *,
    expected: FileState | None | bool = False,
    encoding: str | None = None,
    root: str | os.PathLike | None = None,
    allow_lossy: bool = False,
) -> FileState:
    """Write ``text`` to ``path`` atomically and return the new state.

    ``expected``: the FileState read earlier (or None if the file did not exist then);
    if the file on disk no longer matches, CaptionConflict is raised and nothing is
    written. Pass ``expected=False`` to skip the check (new export targets only).
    ``root``: the dataset folder the write must stay in (links are checked against it).
    A read-only file, a non-regular file and (unless ``allow_lossy``) a file whose bytes
    are not clean text are refused with the reason.
    """
    staged = _stage(Path(path), text, expected, encoding, fsync=True, root=root, allow_lossy=allow_lossy)
    try:
        os.replace(staged.tmp, staged.path)
    except OSError as exc:
        _discard(staged.tmp)
        raise CaptionFileError(
            f"{staged.path}: not saved ({exc.strerror or exc}); the previous file is intact"
        ) from exc
    fsync_dir(staged.path.parent)
    return _state_after(staged)


def _conflict(path: Path, expected: "FileState | None") -> CaptionConflict:
    disk = None
    now = None
    try:
        ct = read_caption(path)
        disk, now = ct.text, ct.state
    except CaptionFileError:
        pass
    return CaptionConflict(path, expected, now, disk)


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
            view = view[os.write(fd, view) :]
    except OSError as exc:
        reason = "the disk is full" if getattr(exc, "errno", None) == 28 else (exc.strerror or str(exc))
        raise CaptionFileError(f"{path}: not written, {reason}") from exc
    finally:
        os.close(fd)


@dataclass
class StagedWrite:
    """A caption write prepared by ``stage_atomic``: the new text is in a temporary file
    beside the target; ``publish_staged`` makes it durable and renames it into place."""

    path: Path  # the file really written (links resolved)
    tmp: str
    data: bytes
    expected: "FileState | None | bool"
    dev: int = -1  # the temporary file's filesystem: one syncfs per filesystem
    seen: tuple | None = None  # (size, mtime_ns, ctime_ns, ino) of the target when staged; None: absent


def stage_atomic(
    path: str | os.PathLike,
    text: str,
    *,
    expected: FileState | None | bool = False,
    encoding: str | None = None,
    root: str | os.PathLike | None = None,
    allow_lossy: bool = False,
) -> StagedWrite:
    """First half of ``write_atomic`` for batches: checks and temporary file, without
    the per-file fsyncs (``publish_staged`` syncs the whole batch at once)."""
    return _stage(Path(path), text, expected, encoding, fsync=False, root=root, allow_lossy=allow_lossy)


def _stat_key(st: os.stat_result | None) -> tuple | None:
    return None if st is None else (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _stage(
    path: Path,
    text: str,
    expected: "FileState | None | bool",
    encoding: str | None,
    *,
    fsync: bool,
    root: str | os.PathLike | None = None,
    allow_lossy: bool = False,
) -> StagedWrite:
    """Checks, then the new bytes in a temporary file beside the target with the
    target's permissions. The target itself is untouched."""
    target = write_target(path, root)
    now, old, st = _read_state(target)
    if expected is not False and not _same(now, expected):  # type: ignore[arg-type]
        raise _conflict(target, expected)  # type: ignore[arg-type]
    if st is not None and _read_only(st):
        raise ReadOnlyCaption(
            f"{target}: is read-only (mode {stat.S_IMODE(st.st_mode):04o}); not rewritten. "
            "Make it writable (chmod u+w) to edit it."
        )
    if old is not None and not allow_lossy:
        problem = text_problem(old)
        if problem is not None:
            raise LossyCaption(
                f"{target}: {problem}; not rewritten, as its original bytes would be lost. "
                "Fix or delete the file, or edit it in item detail to replace it."
            )
    data = encode_caption(text, encoding)
    directory = target.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=TEMP_SUFFIX, dir=directory)
    except PermissionError as exc:
        raise CaptionFileError(
            f"{target}: the folder {directory} is read-only; the caption cannot be saved there"
        ) from exc
    except OSError as exc:
        raise CaptionFileError(
            f"{target}: cannot create a temporary file in {directory} ({exc.strerror or exc})"
        ) from exc
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
        raise CaptionFileError(f"{target}: not saved, {reason}; the previous file is intact") from exc
    return StagedWrite(target, tmp, data, expected, dev, _stat_key(st))


_SYNCFS: list = []  # [syncfs or None], looked up once: find_library forks a subprocess


def _syncfs():
    if not _SYNCFS:
        try:
            import ctypes
            import ctypes.util

            _SYNCFS.append(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).syncfs)
        except (OSError, AttributeError):
            _SYNCFS.append(None)
    return _SYNCFS[0]


def _sync_batch(staged: list[StagedWrite]) -> None:
    """Make the temporary files' data durable: one ``syncfs`` per filesystem (Linux),
    else an fsync per file."""
    syncfs = _syncfs()
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


def _still_as_staged(s: StagedWrite) -> bool:
    """The target is still the file that was checked when staging: same size, times and
    inode (a change by another program in between shows in its ctime)."""
    try:
        st = os.lstat(s.path)
    except FileNotFoundError:
        st = None
    except OSError:
        return False
    if s.expected is False:
        return True
    return _stat_key(st) == s.seen


def publish_staged(staged: list[StagedWrite]) -> list["FileState | CaptionFileError"]:
    """Second half of a batch of atomic writes: sync the temporary files once, rename
    each into place (re-checking that the target did not change meanwhile), fsync each
    folder once. Each file is either wholly old or wholly new after a crash. Returns the
    new FileState or the error of each staged write, in order."""
    _sync_batch(staged)
    results: list[FileState | CaptionFileError] = []
    folders: set[Path] = set()
    for s in staged:
        if not _still_as_staged(s):
            _discard(s.tmp)
            results.append(_conflict(s.path, s.expected))  # type: ignore[arg-type]
            continue
        try:
            os.replace(s.tmp, s.path)
            state = _state_after(s)
        except OSError as exc:
            _discard(s.tmp)
            results.append(
                CaptionFileError(f"{s.path}: not saved ({exc.strerror or exc}); the previous file is intact")
            )
            continue
        folders.add(s.path.parent)
        results.append(state)
    for folder in folders:
        fsync_dir(folder)
    return results


def discard_staged(staged: list[StagedWrite]) -> None:
    for s in staged:
        _discard(s.tmp)


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable. A folder that cannot be opened or synced
    (some network mounts) is passed over: the rename is done and stays anyway."""
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


# --- temporary files ----------------------------------------------------------------------
# ".<target>.sushitui-tmp-<pid>-<random>~": hidden, the writer's pid, mkstemp's 8 random
# characters and a trailing "~". No user file plausibly has that whole shape; a name that
# merely contains the marker (``x.sushitui-tmp-.png``) is the user's and never touched.
TEMP_SUFFIX = "~"
_TEMP_RE = re.compile(r"^\..+\.sushitui-tmp-(?P<pid>[0-9]{1,10})-[a-z0-9_]{8}~$", re.DOTALL)
# what releases before this one wrote: ".<target>.sushitui-tmp-<mkstemp's 8 characters>"
_LEGACY_TEMP_RE = re.compile(r"^\..+\.sushitui-tmp-[a-z0-9_]{8}$", re.DOTALL)
STALE_TEMP_AGE_S = 3600.0  # any write takes milliseconds: an hour-old one is abandoned
DEAD_WRITER_GRACE_S = 60.0


def temp_prefix(target_name: str) -> str:
    return f".{target_name[:80]}{TEMP_MARKER}{os.getpid()}-"


def is_temp_file(name: str) -> bool:
    """A temporary file a sushitui writer made (this release's or an earlier one's)."""
    return TEMP_MARKER in name and bool(_TEMP_RE.match(name) or _LEGACY_TEMP_RE.match(name))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: assume alive
    return True


def is_stale_temp_file(name: str, st: os.stat_result, now: float | None = None) -> bool:
    """Provably an abandoned temporary file of ours: our name shape, a regular file, and
    either its writer process is gone (and a minute passed) or it is an hour old."""
    if not stat.S_ISREG(st.st_mode):
        return False
    match = _TEMP_RE.match(name)
    if match is None and not _LEGACY_TEMP_RE.match(name):
        return False
    age = (time.time() if now is None else now) - st.st_mtime
    if age > STALE_TEMP_AGE_S:
        return True
    return match is not None and age > DEAD_WRITER_GRACE_S and not _pid_alive(int(match["pid"]))
