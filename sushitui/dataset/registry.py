"""Registering datasets and keeping their index up to date (SCAN-4, SCAN-8).

The core API behind ``sushitui dataset ...`` and the TUI's datasets screen. Removing a
dataset removes its index only; files on disk are never touched.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields

from sushitui.dataset.grouping import (
    DEFAULT_CAPTION_SUFFIXES,
    DEFAULT_IMAGE_SUFFIXES,
    IMAGE_EXTENSIONS,
    SUFFIX_SEPARATORS,
    image_suffix_roles,
)
from sushitui.dataset.scan_worker import CAPTION_TYPES
from sushitui.dataset.scanner import ScanError, ScanReport, scan_dataset
from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressCallback
from sushitui.store import Caption, Dataset, Item, ItemTag, current_database, tag_bitmaps, write_transaction

DATASET_TYPES = ("auto", "single", "pairs")
NAME_MAX = 100
# Settings whose change alters how existing files are read: the next reindex re-reads all.
_RESCAN_SETTINGS = {
    "type",
    "caption_suffixes",
    "image_suffixes",
    "read_exif",
    "primary_suffix",
    "caption_types",
    "suffix_separator",
    "folder_caption",
    "caption_tables",
}


class DatasetError(UserError, ValueError):
    """A dataset operation the user asked for cannot be done; the message says why."""


class DatasetNotFound(DatasetError):
    pass


class DatasetExists(DatasetError):
    pass


@dataclass
class DatasetSettings:
    """Registration settings (SCAN-4)."""

    name: str
    root_path: str
    type: str = "auto"
    caption_suffixes: list[str] = field(default_factory=lambda: list(DEFAULT_CAPTION_SUFFIXES))
    image_suffixes: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGE_SUFFIXES))
    recursive: bool = True
    max_depth: int | None = None
    read_exif: bool = False
    primary_suffix: str = "target"
    caption_types: dict[str, str] = field(default_factory=dict)
    # "_" (x_source.png), "." (0.src.jpg) or "-" (OneTrainer's x-masklabel.png)
    suffix_separator: str = "_"
    # a file name applied as the instruction of every item in its folder (prompt.json is
    # always read); None: none
    folder_caption: str | None = None
    # caption tables named by the user (sushitui.dataset.tables.TableSpec as dicts)
    caption_tables: list[dict] = field(default_factory=list)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> "DatasetSettings":
        return cls(**{f.name: getattr(ds, f.name) for f in fields(cls)})


def _suffix_list(value, what: str, separator: str = "_") -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    out: list[str] = []
    for s in value or ():
        s = str(s).strip().lower()
        if not s:
            continue
        # an image suffix may name its role: 0=source reads x_0.jpg as the group's source
        parts = s.split("=", 1) if what == "image" else [s]
        for part in parts:
            if not part or not all(c.isalnum() or c == "-" for c in part):
                example = " (or SUFFIX=ROLE, e.g. 0=source)" if what == "image" else ""
                raise DatasetError(
                    f"{what} suffix {s!r}: use letters, digits and '-' only{example}; it is the part "
                    f"after the last '{separator}' of a file name"
                )
        if separator in parts[0]:
            raise DatasetError(
                f"{what} suffix {s!r} contains the suffix separator {separator!r}: a file name could "
                "not be split unambiguously; pick another separator or suffix"
            )
        if s not in out:
            out.append(s)
    return out


def validate(
    settings: DatasetSettings, *, check_root: bool = True, check_tables: bool | None = None
) -> DatasetSettings:
    """Normalised settings, or DatasetError naming the bad field."""
    name = (settings.name or "").strip()
    if not name:
        raise DatasetError("the dataset name is empty; give it a name (1–100 characters)")
    if len(name) > NAME_MAX:
        raise DatasetError(f"the dataset name is {len(name)} characters long; use at most {NAME_MAX}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise DatasetError("the dataset name contains control characters; use plain text")
    if settings.type not in DATASET_TYPES:
        raise DatasetError(f"type {settings.type!r} is not one of {', '.join(DATASET_TYPES)}")
    if settings.max_depth is not None and settings.max_depth < 0:
        raise DatasetError("max depth must be 0 or more (empty = unlimited)")
    root = os.path.abspath(os.path.expanduser(str(settings.root_path or "")))
    if check_root:
        if not settings.root_path:
            raise DatasetError("no folder given; pass the folder that holds the images")
        if not os.path.exists(root):
            raise DatasetError(f"{root} does not exist; check the path (nothing was registered)")
        if not os.path.isdir(root):
            raise DatasetError(
                f"{root} is a file, not a folder; pass the folder that holds the images (nothing was registered)"
            )
        if not os.access(root, os.R_OK | os.X_OK):
            raise DatasetError(f"{root}: permission denied; make the folder readable (nothing was registered)")
    separator = settings.suffix_separator or "_"
    if separator not in SUFFIX_SEPARATORS:
        raise DatasetError(
            f"suffix separator {separator!r} is not one of {' '.join(SUFFIX_SEPARATORS)} "
            "(x_source.png, 0.src.jpg, x-masklabel.png)"
        )
    caption_suffixes = _suffix_list(settings.caption_suffixes, "caption", separator)
    image_suffixes = _suffix_list(settings.image_suffixes, "image", separator)
    roles = image_suffix_roles(image_suffixes)
    both = set(caption_suffixes) & set(roles)
    if both:
        raise DatasetError(f"suffix {sorted(both)[0]!r} is both an image and a caption suffix; use it for one only")
    types = dict(settings.caption_types or {})
    for subtype, ctype in types.items():
        if ctype not in CAPTION_TYPES:
            raise DatasetError(f"caption type {ctype!r} for {subtype!r} is not one of {', '.join(CAPTION_TYPES)}")
    primary = (settings.primary_suffix or "target").strip().lower()
    # "target" is the default and may be absent from custom suffixes (grouping then picks
    # the first present); any other choice must be one of them, as the TUI form checks
    if primary != "target" and image_suffixes and primary not in roles.values() and primary not in roles:
        raise DatasetError(
            f"primary suffix {primary!r} is not one of the image suffixes ({', '.join(image_suffixes)}); "
            "pick one of them"
        )
    primary = roles.get(primary, primary)  # 1 of 1=target is the role target
    folder_caption = (settings.folder_caption or "").strip() or None
    if folder_caption is not None:
        if "/" in folder_caption or "\\" in folder_caption or folder_caption in (".", ".."):
            raise DatasetError(
                f"folder caption {folder_caption!r}: give a file name (e.g. instruction.txt), not a path; "
                "the file of that name in each folder is read"
            )
        if os.path.splitext(folder_caption)[1].lower() in IMAGE_EXTENSIONS:
            raise DatasetError(
                f"folder caption {folder_caption!r} is an image name; give a text file name (e.g. instruction.txt)"
            )
    tables = list(settings.caption_tables or [])
    if (check_root if check_tables is None else check_tables) and tables:
        from sushitui.dataset.tables import TableError, check_table_spec

        try:
            tables = [check_table_spec(root, t) for t in tables]
        except TableError as exc:
            raise DatasetError(f"{exc} (nothing was registered)") from exc
    return DatasetSettings(
        name=name,
        root_path=root,
        type=settings.type,
        caption_suffixes=caption_suffixes,
        image_suffixes=image_suffixes,
        recursive=bool(settings.recursive),
        max_depth=settings.max_depth,
        read_exif=bool(settings.read_exif),
        primary_suffix=primary,
        caption_types=types,
        suffix_separator=separator,
        folder_caption=folder_caption,
        caption_tables=tables,
    )


def get_dataset(name_or_id: str | int | Dataset) -> Dataset:
    """The one way to find a dataset: a row (returned as is), an id, or a name (a name
    of digits that no dataset has is read as an id, so ``--dataset 3`` works).
    Raises DatasetNotFound, whose message says how to list the registered ones."""
    if isinstance(name_or_id, Dataset):
        return name_or_id
    if isinstance(name_or_id, int):
        ds = Dataset.get_or_none(Dataset.id == name_or_id)
        if ds is None:
            raise DatasetNotFound(f"no dataset with id {name_or_id}; `sushitui dataset list` shows the registered ones")
        return ds
    name = str(name_or_id)
    ds = Dataset.get_or_none(Dataset.name == name)
    if ds is None and name.isascii() and name.isdecimal() and len(name) <= 18:  # beyond SQLite's integers: no id
        ds = Dataset.get_or_none(Dataset.id == int(name))
    if ds is None:
        raise DatasetNotFound(f"no dataset named {name!r}; `sushitui dataset list` shows the registered ones")
    return ds


def list_datasets() -> list[Dataset]:
    return list(Dataset.select().order_by(Dataset.name))


def add_dataset(
    settings: DatasetSettings,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Dataset, ScanReport]:
    """Register a folder and scan it. A cancelled scan keeps the dataset with what was
    indexed so far (reindex continues it)."""
    s = validate(settings)
    if Dataset.get_or_none(Dataset.name == s.name) is not None:
        raise DatasetExists(
            f"a dataset named {s.name!r} already exists; pick another name or `sushitui dataset reindex {s.name}`"
        )
    now = time.time()
    with write_transaction():
        ds = Dataset.create(
            name=s.name,
            root_path=s.root_path,
            type=s.type,
            caption_suffixes=s.caption_suffixes,
            image_suffixes=s.image_suffixes,
            primary_suffix=s.primary_suffix,
            recursive=s.recursive,
            max_depth=s.max_depth,
            read_exif=s.read_exif,
            caption_types=s.caption_types,
            created_at=now,
            updated_at=now,
            suffix_separator=s.suffix_separator,
            folder_caption=s.folder_caption,
            caption_tables=s.caption_tables,
        )
    try:
        report = scan_dataset(ds, progress=progress, cancel=cancel)
    except ScanError as exc:
        raise DatasetError(str(exc)) from exc
    _restore_marks(ds, report)
    return ds, report


def reindex(
    dataset_or_name: str | int | Dataset,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    *,
    full: bool = False,
) -> ScanReport:
    """Incremental reindex (SCAN-8); ``full`` re-reads every file."""
    ds = get_dataset(dataset_or_name)
    ds = Dataset.get_by_id(ds.id)  # fresh settings
    report_before = ds.last_scan_report or {}
    full = full or bool(report_before.get("needs_full"))
    try:
        report = scan_dataset(ds, progress=progress, cancel=cancel, full=full)
    except ScanError as exc:
        raise DatasetError(str(exc)) from exc
    _restore_marks(ds, report)
    return report


def _restore_marks(ds: Dataset, report: ScanReport) -> None:
    """Stars, flags and crops live in the dataset's marks file; a scan (re)creates item
    rows without them, so they are read back here. A bad file is a problem of the scan."""
    from sushitui.dataset.marks import MarksError, restore_marks
    from sushitui.dataset.scanner import Problem

    try:
        restore_marks(ds)
    except MarksError as exc:
        report.problems.append(Problem(".sushitui/marks.json", str(exc)))


def update_settings(name: str | int | Dataset, /, **changes) -> Dataset:
    """Change settings; a change that affects how files are read makes the next
    reindex re-read everything. Renaming (``name=``; the dataset is positional-only so
    that a new name can be passed) checks uniqueness."""
    ds = get_dataset(name)
    unknown = set(changes) - {f.name for f in fields(DatasetSettings)}
    if unknown:
        raise DatasetError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    current = DatasetSettings.from_dataset(ds)
    for k, v in changes.items():
        setattr(current, k, v)
    s = validate(
        current, check_root="root_path" in changes, check_tables="caption_tables" in changes or "root_path" in changes
    )
    if s.name != ds.name and Dataset.get_or_none(Dataset.name == s.name) is not None:
        raise DatasetExists(f"a dataset named {s.name!r} already exists; pick another name")
    needs_full = any(getattr(s, k) != getattr(ds, k) for k in _RESCAN_SETTINGS) or s.root_path != ds.root_path
    with write_transaction():
        for f in fields(DatasetSettings):
            setattr(ds, f.name, getattr(s, f.name))
        if needs_full:
            report = dict(ds.last_scan_report or {})
            report["needs_full"] = True
            ds.last_scan_report = report
        ds.updated_at = time.time()
        ds.save()
    return ds


def set_host_roots(name: str | int | Dataset, roots: dict[str, str | None]) -> Dataset:
    """Give the dataset its folder on other machines (issue 21): ``{host: path}``, a
    ``None`` or empty path removes the host's entry. One catalogue (PostgreSQL) then serves
    machines that mount the folder in different places; ``root_path`` on each machine is
    its own entry, else the stored folder. The path of this machine must be a folder here."""
    from sushitui.store.models import current_host

    ds = get_dataset(name)
    merged = dict(ds.host_roots or {})
    for host, path in roots.items():
        host = host.strip()
        if not host:
            raise DatasetError("--host-root needs a host name before '=' (HOST=PATH)")
        if not path:
            merged.pop(host, None)
            continue
        path = os.path.expanduser(path)
        if not os.path.isabs(path):
            raise DatasetError(f"--host-root {host}={path}: give the folder as an absolute path on that machine")
        if host == current_host() and not os.path.isdir(path):
            raise DatasetError(f"--host-root {host}={path}: no such folder on this machine ({host})")
        merged[host] = path
    with write_transaction():
        Dataset.update(host_roots=merged, updated_at=time.time()).where(Dataset.id == ds.id).execute()
    return get_dataset(ds.id)


def remove_dataset(name: str | int | Dataset) -> int:
    """Remove the dataset's index (items, captions, tags, runs); returns the number of
    items removed. Files on disk are never touched."""
    ds = get_dataset(name)
    db = current_database()
    with write_transaction():
        n = Item.select().where(Item.dataset == ds.id).count()
        items = Item.select(Item.id).where(Item.dataset == ds.id)
        ItemTag.delete().where(ItemTag.item.in_(items)).execute()
        tag_bitmaps.forget_all(db)  # their bits would outlive the items (a later scan may reuse ids)
        Caption.delete().where(Caption.item.in_(items)).execute()
        db.execute_sql("DELETE FROM item WHERE dataset_id = ?", (ds.id,))
        ds.delete_instance()
    return n


def last_report(ds: Dataset) -> ScanReport | None:
    return ScanReport.from_dict(ds.last_scan_report) if ds.last_scan_report else None


def dataset_to_dict(ds: Dataset) -> dict:
    """Settings and totals (the ``dataset list/show --json`` shape)."""
    return {
        "id": ds.id,
        "name": ds.name,
        "root_path": ds.root_path,
        "host_roots": ds.host_roots or {},
        "type": ds.type,
        "caption_suffixes": ds.caption_suffixes,
        "image_suffixes": ds.image_suffixes,
        "primary_suffix": ds.primary_suffix,
        "recursive": ds.recursive,
        "max_depth": ds.max_depth,
        "read_exif": ds.read_exif,
        "caption_types": ds.caption_types or {},
        "suffix_separator": ds.suffix_separator or "_",
        "folder_caption": ds.folder_caption,
        "caption_tables": ds.caption_tables or [],
        "total_items": ds.total_items,
        "total_images": ds.total_images,
        "total_captions": ds.total_captions,
        "indexed_at": ds.indexed_at,
        "created_at": ds.created_at,
    }
