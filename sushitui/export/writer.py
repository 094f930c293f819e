"""Safe export output (EX-3).

- OUTDIR must be new or empty; everything is written into a private staging folder
  inside it and published (renamed into OUTDIR) only when complete, so an interrupted
  export never leaves half-written files among finished ones.
- Every name comes from ``safe_component`` (no ``..``, no separators, no control
  characters) and every target is checked to lie inside the staging folder, so names
  from the database can never escape OUTDIR.
- Colliding names are made unique per folder (case-insensitively, by stem, because an
  image and its caption share the stem).
- Long names are shortened, not refused: a stem over ``MAX_STEM_BYTES`` becomes its
  first bytes (cut on a character boundary) + ``-`` + 8 hex digits of the SHA-256 of the
  whole name, so the same name always gives the same short one and two names sharing a
  long prefix stay apart. The stem is shortened once and shared by all files of the
  item, so image, caption, mask and control image still pair.
- Images are hard-linked (copied when the link fails, e.g. across devices), symlinked or
  copied; the source is only ever read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import unicodedata
import zipfile
from pathlib import Path

from sushitui.dataset.caption_files import CaptionFileError, write_atomic, write_new
from sushitui.export.options import ExportError
from sushitui.store.natural_key import natural_key, natural_sorted

STAGING_NAME = ".sushitui-export-partial"
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")
# One path component: ext4, XFS, Btrfs, ZFS and APFS allow 255 bytes; NTFS 255 UTF-16
# units, never more than the UTF-8 bytes of the same name.
NAME_MAX_BYTES = 255
# Room kept after an exported stem for what is added to it, by the export or later by a
# trainer writing beside the image: ".jpeg"/".txt"; sd-scripts' caches
# ("<stem>.npz", "<stem>_1024x1024_lumina.npz", "<stem>_lumina_te.npz",
# "<stem>_te_outputs.npz": at most 24 bytes); ai-toolkit's latent cache
# ("_latent_cache/<stem>_<22-character hash>.safetensors": 35 bytes); "_mask.png" and
# the like. 55 bytes leaves 200 for the stem, the limit names always had here.
SUFFIX_ROOM_BYTES = 55
MAX_STEM_BYTES = NAME_MAX_BYTES - SUFFIX_ROOM_BYTES
HASH_HEX_DIGITS = 8


def byte_len(name: str) -> int:
    # surrogatepass: a name read with surrogateescape counts 3 bytes per escaped byte,
    # never fewer than it takes on disk
    return len(name.encode("utf-8", "surrogatepass"))


def shorten_name(name: str, max_bytes: int, original: str | None = None) -> str:
    """``name`` if it fits in ``max_bytes``; else its longest prefix (whole characters)
    that fits with ``-`` and the first 8 hex digits of SHA-256 of ``original`` (default:
    ``name``) after it. Stable: the same name always gives the same result."""
    if byte_len(name) <= max_bytes:
        return name
    digest = hashlib.sha256((name if original is None else original).encode("utf-8", "surrogatepass")).hexdigest()
    tail = "-" + digest[:HASH_HEX_DIGITS]
    room = max_bytes - len(tail)
    used = cut = 0
    for cut, ch in enumerate(name):
        used += byte_len(ch)
        if used > room:
            break
    prefix = name[:cut].rstrip()  # no trailing space before the hash (Windows drops it)
    return prefix + tail


def safe_component(name: str, fallback: str = "_", max_bytes: int = MAX_STEM_BYTES) -> str:
    """One path component that cannot escape its folder or hide in it, at most
    ``max_bytes`` long (a longer one is shortened with a hash of the whole name)."""
    if (
        name.isascii()
        and name.isprintable()
        and "/" not in name
        and "\\" not in name
        and not name.startswith("..")
        and name not in ("", ".", STAGING_NAME)
        and name == name.strip()
        and len(name) <= max_bytes
    ):
        return name  # the common case, without the per-character Unicode checks
    original = name
    name = _sanitized(name, fallback)
    return shorten_name(name, max_bytes, original)


def is_shortened(name: str, max_bytes: int = MAX_STEM_BYTES) -> bool:
    """Whether ``safe_component(name)`` shortens ``name`` (rather than keeping it or
    only replacing unsafe characters)."""
    return byte_len(name) > max_bytes and byte_len(_sanitized(name, "_")) > max_bytes


def _sanitized(name: str, fallback: str) -> str:
    name = unicodedata.normalize("NFC", name)
    name = _BAD_CHARS.sub("_", name)
    name = "".join("_" if unicodedata.category(ch) in ("Cf", "Zl", "Zp") else ch for ch in name).strip()
    if name in ("", ".", ".."):
        name = fallback
    if name.startswith(".."):
        name = "_" + name[2:]
    if name == STAGING_NAME:
        name = "_" + name
    return name


def _is_inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def prepare_outdir(outdir: str | os.PathLike, source_roots: list[str]) -> Path:
    """Check OUTDIR (new or empty, not inside or containing a source dataset) and
    create it."""
    out = Path(os.path.abspath(os.fspath(outdir)))
    real_out = os.path.realpath(out)
    for root in source_roots:
        real_root = os.path.realpath(root)
        if _is_inside(real_out, real_root):
            raise ExportError(
                f"{out} is inside the dataset folder {root}; exporting there would change the dataset. Choose a folder outside it."
            )
        if _is_inside(real_root, real_out):
            raise ExportError(f"the dataset folder {root} is inside {out}; choose a new or empty folder elsewhere.")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ExportError(f"{out} exists and is not a folder; choose a new or empty folder.")
        try:
            entries = natural_sorted(os.listdir(out))
        except OSError as exc:
            raise ExportError(f"{out}: cannot read the folder ({exc.strerror or exc})") from exc
        if STAGING_NAME in entries:
            raise ExportError(
                f"{out} holds a partial export from an interrupted run ({STAGING_NAME}); delete it or choose another folder."
            )
        if entries:
            shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
            raise ExportError(
                f"{out} is not empty ({len(entries)} entries: {shown}); export only writes into a new or empty folder."
            )
    else:
        try:
            out.mkdir(parents=True)
        except OSError as exc:
            raise ExportError(f"{out}: cannot create the folder ({exc.strerror or exc})") from exc
    return out


class OutputTree:
    """Files of one export, staged inside OUTDIR and published at the end."""

    def __init__(self, outdir: Path, link_mode: str = "link"):
        self.outdir = outdir
        self.link_mode = link_mode
        self.stage = outdir / STAGING_NAME
        try:
            self.stage.mkdir()
        except OSError as exc:
            raise ExportError(f"{outdir}: cannot write there ({exc.strerror or exc})") from exc
        self._real_stage = os.path.realpath(self.stage)
        self._stems: dict[tuple[str, ...], set[str]] = {}
        self._dirs: dict[tuple[str, ...], str] = {}
        self._cross_device = False

    # --- names -------------------------------------------------------------------

    def unique_stem(self, folder: tuple[str, ...], stem: str) -> str:
        """A stem not used yet in ``folder`` (case-insensitive: trainers run on
        Windows and macOS too), at most MAX_STEM_BYTES long. Reserved for all files of
        one item."""
        used = self._stems.setdefault(folder, set())
        candidate, n = safe_component(stem, "image"), 1
        while candidate.casefold() in used:
            n += 1
            tail = f"_{n}"
            # the "_n" goes inside the limit: a long stem is shortened a little more
            candidate = safe_component(stem, "image", MAX_STEM_BYTES - len(tail)) + tail
        used.add(candidate.casefold())
        return candidate

    def _dir(self, folder: tuple[str, ...]) -> str:
        try:
            return self._dirs[folder]
        except KeyError:
            pass
        if any(part != safe_component(part, max_bytes=NAME_MAX_BYTES) for part in folder):
            raise ExportError(f"unsafe export folder {'/'.join(folder)!r}")
        path = os.path.join(self.stage, *folder) if folder else str(self.stage)
        os.makedirs(path, exist_ok=True)
        if not _is_inside(os.path.realpath(path), self._real_stage):
            raise ExportError(f"refusing to write outside {self.outdir}: {'/'.join(folder)}")
        self._dirs[folder] = path
        return path

    def target(self, folder: tuple[str, ...], name: str) -> str:
        """The staged path of ``folder/name`` (checked: a plain name in a folder
        inside the staging folder)."""
        if name != safe_component(name, max_bytes=NAME_MAX_BYTES):
            raise ExportError(f"unsafe export name {name!r}")
        return os.path.join(self._dir(folder), name)

    def rel(self, folder: tuple[str, ...], name: str) -> str:
        return "/".join(folder + (name,))

    # --- writing -------------------------------------------------------------------

    def place_image(self, source: str | os.PathLike, folder: tuple[str, ...], name: str) -> str:
        """Put the image at ``folder/name``; returns how: link | symlink | copy."""
        dest = self.target(folder, name)
        if self.link_mode == "symlink":
            os.symlink(os.path.abspath(source), dest)
            return "symlink"
        if self.link_mode == "link" and not self._cross_device:
            try:
                os.link(source, dest)
                return "link"
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                    raise
                self._cross_device = exc.errno == errno.EXDEV
        shutil.copyfile(source, dest)
        return "copy"

    def write_caption(self, folder: tuple[str, ...], name: str, text: str) -> None:
        write_new(self.target(folder, name), text)

    def write_config(self, name: str, text: str) -> str:
        write_atomic(self.target((), name), text, expected=False)
        return name

    # --- finishing -----------------------------------------------------------------

    def publish(self) -> None:
        """Move the staged files into OUTDIR.

        No fsync per file or sync(): a killed export never exposes a partial file
        (the staging folder is renamed into place only when complete), and after a
        power failure the export is simply run again; the source is never at risk."""
        for entry in sorted(os.listdir(self.stage)):
            os.rename(self.stage / entry, self.outdir / entry)
        self.stage.rmdir()

    def publish_zip(self, zip_name: str) -> Path:
        """Pack the staged files into OUTDIR/zip_name and drop the staged copies."""
        dest = self.outdir / zip_name
        tmp = self.outdir / (zip_name + ".partial")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for dirpath, dirnames, filenames in os.walk(self.stage):
                dirnames.sort(key=natural_key)  # the archive lists files as a file manager would
                for fn in natural_sorted(filenames):
                    full = Path(dirpath) / fn
                    arc = full.relative_to(self.stage).as_posix()
                    text_like = fn.endswith((".txt", ".json", ".toml", ".yaml"))
                    zf.write(full, arc, compress_type=zipfile.ZIP_DEFLATED if text_like else zipfile.ZIP_STORED)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        self.discard()
        return dest

    def discard(self) -> None:
        """Remove the staged files (only ever the staging folder this export made;
        hard links and symlinks are unlinked, their sources stay)."""
        if self.stage.is_dir() and not self.stage.is_symlink():
            shutil.rmtree(self.stage)


__all__ = [
    "MAX_STEM_BYTES",
    "NAME_MAX_BYTES",
    "OutputTree",
    "prepare_outdir",
    "safe_component",
    "shorten_name",
    "is_shortened",
    "STAGING_NAME",
    "CaptionFileError",
]
