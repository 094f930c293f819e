"""Removing items: every file of an item goes to the trash, and can come back.

An item's files are its image(s) (``image_path`` and ``related_images``: source, target,
mask ...), its caption files, and its sidecars: other files in its folder named after it
(``img001.json``, ``img001.npz``, ``img001.png.xmp``) that belong to no other item.

Where they go: the freedesktop trash of the user (``$XDG_DATA_HOME/Trash``, with a
``.trashinfo`` per file, written by ``send2trash``'s freedesktop code so file managers can
restore them too) when it is on the same device as the dataset, so a file is renamed, never
copied; otherwise ``.trash/<time>/`` inside the dataset folder (the scanner skips hidden
folders), as the issue asks: a dataset on a USB disk or NFS mount is not copied
across devices into the home folder. On macOS and Windows the system trash is used
(``send2trash``), and files come back from there by hand.

Everything runs under the dataset's write lock; the item's rows leave the index at once
and its marks leave ``.sushitui/marks.json`` (kept in the ``Removal`` for ``restore``).
``restore`` moves every file back (refusing to overwrite a file that appeared since),
puts the marks back and reindexes the dataset, so the item returns as it was.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sushitui.dataset.grouping import IMAGE_EXTENSIONS
from sushitui.dataset.marks import Marks, forget, put_back
from sushitui.dataset.paths import to_abs
from sushitui.errors import UserError
from sushitui.store import current_database, write_transaction
from sushitui.store.models import Dataset

DATASET_TRASH = ".trash"


class RemoveError(UserError):
    """Items could not be removed or restored; the message says which file and why."""


@dataclass
class TrashedFile:
    original: str  # absolute path it had
    trashed: str | None  # where it is now (None: a system trash whose path is unknown)
    info: str | None = None  # the freedesktop .trashinfo written for it


@dataclass
class RemovedItem:
    item_id: int
    group_key: str
    files: list[TrashedFile] = field(default_factory=list)
    marks: dict[str, Marks] = field(default_factory=dict)


@dataclass
class Removal:
    """What ``remove_items`` did, enough for ``restore``."""

    dataset_id: int
    dataset_name: str
    root: str
    items: list[RemovedItem] = field(default_factory=list)
    where: str = ""  # "the trash (PATH)" or "PATH/.trash/…": for the message
    problems: list[str] = field(default_factory=list)  # files that could not be moved
    restored_ids: list[int] = field(default_factory=list)  # the items' new ids after ``restore``

    @property
    def files(self) -> list[TrashedFile]:
        return [f for item in self.items for f in item.files]


# --- where ----------------------------------------------------------------------------------


def home_trash() -> Path:
    """``$XDG_DATA_HOME/Trash`` as the environment says now (send2trash reads it once at import)."""
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data_home) / "Trash"


def _device(path: Path) -> int | None:
    """st_dev of ``path`` or of its nearest existing parent (the trash may not exist yet)."""
    for p in (path, *path.parents):
        try:
            return os.stat(p).st_dev
        except OSError:
            continue
    return None


def uses_home_trash(root: str | os.PathLike) -> bool:
    """Whether a dataset's files go to the user's trash (same device: a rename) or to
    the dataset's own ``.trash/`` (another device)."""
    if sys.platform != "linux" and not sys.platform.startswith("freebsd"):
        return True  # the system trash (send2trash): the OS decides where
    dev = _device(Path(root))
    return dev is not None and dev == _device(home_trash())


# --- which files --------------------------------------------------------------------------------


def item_files(dataset: Dataset, item_ids: Sequence[int]) -> dict[int, tuple[str, list[str]]]:
    """item id -> (group_key, dataset-relative paths of every file of the item)."""
    import json

    db = current_database()
    ids = list(item_ids)
    rows = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows += db.execute_sql(
            f"SELECT id, group_key, rel_dir, base_name, image_path, related_images FROM item "
            f"WHERE dataset_id = ? AND id IN ({','.join('?' * len(chunk))})",
            (dataset.id, *chunk),
        ).fetchall()
    out: dict[int, tuple[str, list[str]]] = {}
    folders: dict[str, list[tuple[int, str]]] = {}
    for item_id, key, rel_dir, base, image, related in rows:
        paths = [image] if image else []
        paths += [p for p in (json.loads(related) if related else {}).values() if p and p not in paths]
        paths += [
            p
            for (p,) in db.execute_sql(
                "SELECT DISTINCT file_path FROM caption WHERE item_id = ? AND file_path IS NOT NULL", (item_id,)
            )
            if p not in paths
        ]
        out[item_id] = (key, paths)
        folders.setdefault(rel_dir, []).append((item_id, base))
    # sidecars: files named after the item that no indexed item claims
    for rel_dir, members in folders.items():
        claimed = _claimed(db, dataset.id, rel_dir)
        try:
            names = sorted(
                e.name
                for e in os.scandir(to_abs(dataset.root_path, rel_dir) if rel_dir else dataset.root_path)
                if e.is_file(follow_symlinks=False)
            )
        except OSError:
            continue
        for item_id, base in members:
            for name in names:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if rel not in claimed and rel not in out[item_id][1] and _is_sidecar(name, base):
                    out[item_id][1].append(rel)
    return out


def _claimed(db, dataset_id: int, rel_dir: str) -> set[str]:
    import json

    claimed: set[str] = set()
    for image, related, item_id in db.execute_sql(
        "SELECT image_path, related_images, id FROM item WHERE dataset_id = ? AND rel_dir = ?", (dataset_id, rel_dir)
    ):
        if image:
            claimed.add(image)
        claimed.update((json.loads(related) if related else {}).values())
        claimed.update(
            p
            for (p,) in db.execute_sql(
                "SELECT file_path FROM caption WHERE item_id = ? AND file_path IS NOT NULL", (item_id,)
            )
        )
    return claimed


def _is_sidecar(name: str, base: str) -> bool:
    if name.startswith("."):
        return False
    stem, _ext = os.path.splitext(name)
    if stem == base:
        return True
    inner, inner_ext = os.path.splitext(stem)  # img001.png.xmp
    return inner == base and inner_ext.lower() in IMAGE_EXTENSIONS


# --- moving ---------------------------------------------------------------------------------------


def _to_home_trash(src: Path) -> TrashedFile:
    """Into the freedesktop home trash with send2trash's own writer (.trashinfo, name
    collisions), at the trash the environment names now."""
    from send2trash import plat_other  # type: ignore[attr-defined]  # a module types-Send2Trash leaves out

    trash = home_trash()
    data_home = trash.parent
    name = src.name
    stem, ext = os.path.splitext(name)
    files, info = trash / "files", trash / "info"
    counter, dest = 0, name
    while (files / dest).exists() or (info / (dest + ".trashinfo")).exists():  # the name trash_move will pick
        counter += 1
        dest = f"{stem} {counter}{ext}"
    plat_other.trash_move(os.fsencode(src), os.fsencode(trash), os.fsencode(data_home))
    return TrashedFile(str(src), str(files / dest), str(info / (dest + ".trashinfo")))


def _to_dataset_trash(src: Path, root: Path, batch: str) -> TrashedFile:
    rel = src.relative_to(root)
    dest = root / DATASET_TRASH / batch / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    counter = 0
    while dest.exists():
        counter += 1
        dest = dest.with_name(f"{src.stem} {counter}{src.suffix}")
    os.rename(src, dest)  # same folder tree: same device
    return TrashedFile(str(src), str(dest))


def _to_system_trash(src: Path) -> TrashedFile:
    from send2trash import send2trash

    send2trash(str(src))
    return TrashedFile(str(src), None)


def remove_items(dataset: Dataset, item_ids: Sequence[int], *, home: bool | None = None) -> Removal:
    """Move every file of the items to the trash and take them out of the index.
    ``home``: force the user's trash (True) or the dataset's ``.trash/`` (False); None
    decides by device. A file that cannot be moved is reported in ``problems`` and its
    item stays indexed (its other files are moved back)."""
    from sushitui.dataset.write_lock import dataset_write_lock

    root = Path(dataset.root_path)
    use_home = uses_home_trash(root) if home is None else home
    system = use_home and sys.platform != "linux" and not sys.platform.startswith("freebsd")
    batch = time.strftime("%Y%m%d-%H%M%S")
    removal = Removal(dataset.id, dataset.name, str(root))
    if system:
        removal.where = "the system trash"
    elif use_home:
        removal.where = f"the trash ({home_trash() / 'files'})"
    else:
        removal.where = str(root / DATASET_TRASH / batch)
    with dataset_write_lock(root, what="removing items", name=dataset.name):
        files = item_files(dataset, item_ids)
        gone: list[int] = []
        for item_id, (key, rels) in files.items():
            done = RemovedItem(item_id, key)
            try:
                for rel in rels:
                    src = to_abs(root, rel)
                    if not os.path.lexists(src):
                        continue  # already gone: the reindex would drop it anyway
                    if system:
                        done.files.append(_to_system_trash(src))
                    elif use_home:
                        done.files.append(_to_home_trash(src))
                    else:
                        done.files.append(_to_dataset_trash(src, root, batch))
            except OSError as exc:
                removal.problems.append(
                    f"{rel}: not moved to the trash ({exc.strerror or exc}); the item {key!r} is kept"
                )
                _move_back(done.files, removal.problems)
                continue
            removal.items.append(done)
            gone.append(item_id)
        if gone:
            taken = forget(dataset, [item.group_key for item in removal.items])
            for item in removal.items:
                item.marks = {item.group_key: taken[item.group_key]} if item.group_key in taken else {}
            _drop_rows(dataset, gone)
    return removal


def _drop_rows(dataset: Dataset, ids: list[int]) -> None:
    from sushitui.dataset.scan_writer import Writer
    from sushitui.dataset.scanner import ScanReport

    db = current_database()
    with write_transaction(db):
        Writer(db, dataset, ScanReport()).delete_items(ids)
        n_items = db.execute_sql("SELECT COUNT(*) FROM item WHERE dataset_id = ?", (dataset.id,)).fetchone()[0]
        db.execute_sql("UPDATE dataset SET total_items = ? WHERE id = ?", (n_items, dataset.id))


def _move_back(files: list[TrashedFile], problems: list[str]) -> list[str]:
    restored = []
    for f in files:
        if f.trashed is None:
            problems.append(f"{f.original}: in the system trash; restore it from there")
            continue
        if os.path.lexists(f.original):
            problems.append(f"{f.original}: a file of that name exists again; the trashed copy stays at {f.trashed}")
            continue
        try:
            os.makedirs(os.path.dirname(f.original), exist_ok=True)
            try:
                os.rename(f.trashed, f.original)
            except OSError:
                shutil.move(f.trashed, f.original)
        except OSError as exc:
            problems.append(f"{f.original}: not restored from {f.trashed} ({exc.strerror or exc})")
            continue
        if f.info:
            try:
                os.unlink(f.info)
            except OSError:
                pass  # a stale .trashinfo is harmless: file managers skip entries without a file
        restored.append(f.original)
    return restored


def restore(removal: Removal) -> list[str]:
    """Undo ``remove_items``: every file back where it was (never over a file that
    appeared since), the marks back in the marks file, then a reindex so the items
    return. Returns the problems (empty when all came back)."""
    from sushitui.dataset.registry import get_dataset, reindex
    from sushitui.dataset.write_lock import dataset_write_lock

    problems: list[str] = []
    dataset = get_dataset(removal.dataset_id)
    with dataset_write_lock(dataset.root_path, what="restoring items", name=dataset.name):
        for item in removal.items:
            _move_back(item.files, problems)
            put_back(dataset, item.marks)
    reindex(dataset)
    db = current_database()
    removal.restored_ids = [
        row[0]
        for item in removal.items
        for row in db.execute_sql(
            "SELECT id FROM item WHERE dataset_id = ? AND group_key = ?", (dataset.id, item.group_key)
        )
    ]
    return problems
