"""One item as the item detail and quick tagging screens see it, and the edits they make.

``load_item_view`` reads everything a screen shows about one item in a handful of
queries (run it in a worker). The save functions go through ``sushitui.dataset.captions``
(the one edit path: atomic, conflict-checked writes); ``take_disk_*`` adopt the version
on disk after a conflict, updating the index to match the file. Presets for quick
tagging (QT-3) live in ``Dataset.presets``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sushitui.dataset.caption_files import CaptionFileError, FileState, read_caption, unchanged_since
from sushitui.dataset.captions import (
    EMBEDDED_SOURCES,
    MAIN,
    UNSET,
    CellBase,
    EditReport,
    TagEdit,
    caption_state,
    file_subtype,
    find_caption,
    in_table,
    preferred_tag_subtype,
    set_tags,
    set_tags_many,
    set_text,
    table_text_now,
    tag_subtype_order,
)
from sushitui.dataset.paths import to_abs
from sushitui.dataset.tables import TABLE_SOURCE
from sushitui.dataset.write_lock import EDITOR_WAIT_S, dataset_write_lock
from sushitui.store import (
    Caption,
    Dataset,
    Item,
    ItemTag,
    current_database,
    group_index,
    tag_bitmaps,
    tuple_rows,
    write_transaction,
)
from sushitui.tags.normalize import dedupe, join_tags, split_tags

MAX_PRESETS = 9
# Caption types that have a text tab, and the file suffix a new caption of that type gets.
TEXT_TAB_TYPES = ("natural_language", "social_media", "instruction", "description")
NEW_TEXT_SUBTYPE = {
    "natural_language": "caption",
    "social_media": "social",
    "instruction": "instruction",
    "description": "description",
}


@dataclass
class CaptionView:
    id: int
    type: str
    subtype: str
    content: str
    language: str
    source: str
    source_field: str | None
    file_path: str | None
    updated_at: float | None
    encoding: str | None
    encoding_flagged: bool
    state: FileState | None = None  # the file as the index recorded it when loaded

    @property
    def embedded(self) -> bool:
        return self.file_path is None and self.source in EMBEDDED_SOURCES

    @classmethod
    def of(cls, c: Caption) -> CaptionView:
        """The view of an index row, with the file state it records (an editor's base)."""
        return cls(
            c.id,
            c.type,
            c.subtype,
            c.content,
            c.language or "auto",
            c.source,
            c.source_field,
            c.file_path,
            c.updated_at,
            c.encoding,
            bool(c.encoding_flagged),
            caption_state(c),
        )


@dataclass
class ItemView:
    item_id: int
    dataset_id: int
    dataset_name: str
    root: str
    item_type: str
    base_name: str
    rel_dir: str
    image_path: str | None
    image_suffix: str | None
    related_images: dict[str, str]
    width: int | None
    height: int | None
    file_size: int | None
    mtime_ns: int | None
    sha256: str | None
    created_at: float | None
    indexed_at: float | None
    updated_at: float | None
    exif_data: Any
    problems: Any
    captions: list[CaptionView] = field(default_factory=list)
    tags: dict[str, list[str]] = field(default_factory=dict)  # subtype -> tags in order
    # (caption type, subtype) -> the file state this view's editor last read or wrote (for
    # a caption-table caption: the cell text, CellBase); saves are checked against it, so
    # another process's edit since is a conflict
    bases: dict[tuple[str, str], FileState | CellBase | None] = field(default_factory=dict)

    def base_of(self, ctype: str, subtype: str) -> FileState | CellBase | None:
        """What the editor of (ctype, subtype) last saw of the caption's file (None: no
        file). A caption read from the image's metadata is saved to a file of its own
        (``captions.file_subtype``): that file is the one compared. A caption read from a
        caption table is saved into its cell, which must still hold what the view showed."""
        cap = next((c for c in self.captions if c.type == ctype and c.subtype == subtype), None)
        if cap is not None and cap.embedded:
            subtype = file_subtype(subtype)
        if (ctype, subtype) in self.bases:
            return self.bases[(ctype, subtype)]
        if cap is not None and cap.file_path is None and cap.source == TABLE_SOURCE:
            return CellBase(cap.content)
        cap = next((c for c in self.captions if c.type == ctype and c.subtype == subtype and c.file_path), None)
        return cap.state if cap is not None else None

    @property
    def is_group(self) -> bool:
        return self.item_type in ("group", "pair")

    @property
    def image_tabs(self) -> list[tuple[str, str]]:
        """(label, dataset-relative path) of every image of the item, primary first."""
        tabs: list[tuple[str, str]] = []
        if self.image_path:
            tabs.append((self.image_suffix or "image", self.image_path))
        for suffix, rel in (self.related_images or {}).items():
            if rel and rel != self.image_path:
                tabs.append((suffix, rel))
        return tabs

    def abs_path(self, rel: str | None) -> Path | None:
        if not rel:
            return None
        try:
            return Path(to_abs(self.root, rel))
        except ValueError:
            return None

    @property
    def tag_subtypes(self) -> list[str]:
        """Subtypes of the tag captions: main first, then alt, then the rest (auto_…)."""
        found = set(self.tags) | {c.subtype for c in self.captions if c.type == "tags"}
        found.add(MAIN)
        return tag_subtype_order(found)

    @property
    def default_tag_subtype(self) -> str:
        """The tag caption to edit first (``captions.preferred_tag_subtype``)."""
        main_is_prose = any(c.subtype == MAIN and c.type != "tags" and c.file_path for c in self.captions)
        return preferred_tag_subtype(self.tags, main_is_prose)

    def text_caption(self, ctype: str) -> CaptionView | None:
        return next((c for c in self.captions if c.type == ctype), None)

    @property
    def mapped_fields(self) -> dict[str, str]:
        """Metadata field name -> the caption type it was mapped to (SCAN-7)."""
        return {c.source_field: c.type for c in self.captions if c.source_field}


def load_item_view(item_id: int) -> ItemView:
    """Everything the detail screen shows about one item; raises Item.DoesNotExist."""
    item = Item.get_by_id(item_id)
    dataset = Dataset.get_by_id(item.dataset_id)
    view = ItemView(
        item_id=item.id,
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        root=dataset.root_path,
        item_type=item.item_type,
        base_name=item.base_name,
        rel_dir=item.rel_dir,
        image_path=item.image_path,
        image_suffix=item.image_suffix,
        related_images=dict(item.related_images or {}),
        width=item.width,
        height=item.height,
        file_size=item.file_size,
        mtime_ns=item.mtime_ns,
        sha256=item.sha256,
        created_at=item.created_at,
        indexed_at=item.indexed_at,
        updated_at=item.updated_at,
        exif_data=item.exif_data,
        problems=item.problems,
    )
    for c in Caption.select().where(Caption.item == item.id).order_by(Caption.type, Caption.subtype, Caption.id):
        view.captions.append(CaptionView.of(c))
    rows = (
        ItemTag.select(ItemTag.subtype, ItemTag.tag)
        .where(ItemTag.item == item.id)
        .order_by(ItemTag.subtype, ItemTag.position)
        .tuples()
    )
    for subtype, tag in tuple_rows(rows):
        view.tags.setdefault(subtype or MAIN, []).append(tag)
    return view


def load_tags(item_id: int, subtype: str = MAIN) -> list[str]:
    rows = (
        ItemTag.select(ItemTag.tag)
        .where((ItemTag.item == item_id) & (ItemTag.subtype == subtype))
        .order_by(ItemTag.position)
    )
    return [r.tag for r in rows]


# --- saving -----------------------------------------------------------------------------


def save_tags(
    item_id: int,
    subtype: str,
    tags: Sequence[str],
    *,
    force: bool = False,
    view: ItemView | None = None,
    allow_lossy: bool = False,
) -> EditReport:
    """Write the item's tag caption; raises CaptionConflict when the file changed on disk
    (``force=True`` overwrites it: the user chose their version) or CaptionFileError
    (``LossyCaption`` when the file's bytes are not clean text: ``allow_lossy`` after the
    user agreed). With the editor's ``view`` the file must still be what the view last
    read or wrote (another process's edit since is a conflict), and the view learns the
    new state."""
    base = view.base_of("tags", subtype) if view is not None else UNSET
    report = set_tags(
        Item.get_by_id(item_id),
        list(tags),
        subtype=subtype,
        force=force,
        base=base,
        allow_lossy=allow_lossy,
        lock_wait=EDITOR_WAIT_S,
    )
    if view is not None and item_id in report.written:
        written_sub, state = report.written[item_id]
        view.bases[("tags", written_sub)] = state
    return report


def text_subtype_for(dataset_id: int, ctype: str) -> str:
    """The subtype (file suffix) of a new text caption of ``ctype``.

    An existing suffix mapped to that type in the dataset settings wins. A suffix the
    scanner would not recognise is added to the settings (with its type), so that the
    new file reads back as the same caption on the next reindex and is not mistaken for
    an image base name.
    """
    ds = Dataset.get_by_id(dataset_id)
    overrides = dict(ds.caption_types or {})
    for sub, typ in overrides.items():
        if typ == ctype:
            return sub
    sub = NEW_TEXT_SUBTYPE.get(ctype, ctype)
    suffixes = list(ds.caption_suffixes or [])
    if sub not in suffixes:
        suffixes.append(sub)
        overrides[sub] = ctype
        with write_transaction():
            Dataset.update(caption_suffixes=suffixes, caption_types=overrides).where(Dataset.id == ds.id).execute()
    return sub


def save_text(
    item_id: int,
    ctype: str,
    subtype: str | None,
    text: str,
    *,
    language: str | None = None,
    force: bool = False,
    view: ItemView | None = None,
    allow_lossy: bool = False,
) -> CaptionView:
    """Write a text caption (creating its file when it has none yet); ``view`` as for
    ``save_tags``."""
    item = Item.get_by_id(item_id)
    if not subtype:
        # An existing caption file of this type is edited in place; embedded metadata
        # (EXIF/XMP...) is never rewritten, so editing it creates a caption file.
        existing = (
            Caption.select()
            .where((Caption.item == item_id) & (Caption.type == ctype) & Caption.file_path.is_null(False))
            .order_by(Caption.id)
            .first()
        )
        subtype = existing.subtype if existing is not None else text_subtype_for(item.dataset_id, ctype)
    base = view.base_of(ctype, subtype) if view is not None else UNSET
    c = set_text(
        item,
        ctype,
        subtype,
        text,
        force=force,
        language=language,
        base=base,
        allow_lossy=allow_lossy,
        lock_wait=EDITOR_WAIT_S,
    )
    saved = CaptionView.of(c)
    if view is not None:
        view.bases[(ctype, c.subtype)] = CellBase(c.content) if in_table(c) else saved.state
    return saved


def set_language(caption_id: int, language: str) -> None:
    with write_transaction():
        Caption.update(language=language).where(Caption.id == caption_id).execute()


def disk_text(item_id: int, ctype: str, subtype: str) -> tuple[str | None, str | None]:
    """(text on disk now or None when the file is gone, dataset-relative path)."""
    item = Item.get_by_id(item_id)
    caption = find_caption(item, ctype, subtype)
    if caption is None or not caption.file_path:
        return None, None
    root = Dataset.get_by_id(item.dataset_id).root_path
    try:
        return read_caption(to_abs(root, caption.file_path)).text, caption.file_path
    except CaptionFileError:
        return None, caption.file_path


def _adopt_file_state(item: Item, ctype: str, subtype: str, rel: str | None) -> tuple[str | None, FileState | None]:
    """Point the caption row at the file as it is on disk now; returns the disk text
    (None when the file no longer exists) and the file's state. Caller holds the
    dataset's write lock."""
    caption = find_caption(item, ctype, subtype)
    if caption is not None and in_table(caption):
        # the conflict was in a caption table's cell: index the cell as it is now
        text = table_text_now(caption)
        with write_transaction():
            Caption.update(content=text or "", updated_at=time.time()).where(Caption.id == caption.id).execute()
        return text, None
    rel = rel or (caption.file_path if caption is not None else None)
    if not rel:
        return None, None
    if caption is None:
        # Another program created the file the app was about to create: index it.
        with write_transaction():
            caption = Caption.create(item=item.id, type=ctype, subtype=subtype, source="txt_file", file_path=rel)
    root = Dataset.get_by_id(item.dataset_id).root_path
    path = to_abs(root, rel)
    try:
        ct = read_caption(path)
    except CaptionFileError:
        if os.path.exists(path):
            raise
        ct = None
    with write_transaction():
        caption = Caption.get_by_id(caption.id)
        caption.file_path = rel
        caption.source = "txt_file"
        if ct is None:
            caption.file_size = caption.file_mtime_ns = caption.file_sha256 = None
            caption.content = ""
        else:
            caption.file_size, caption.file_mtime_ns, caption.file_sha256 = (
                ct.state.size,
                ct.state.mtime_ns,
                ct.state.sha256,
            )
            caption.encoding, caption.encoding_flagged = ct.encoding, ct.flagged
            caption.content = ct.text
        caption.save()
    return (None, None) if ct is None else (ct.text, ct.state)


def _item_lock(item: Item):
    ds = Dataset.get_by_id(item.dataset_id)
    return dataset_write_lock(ds.root_path, name=ds.name, what="adopting a caption file", wait=EDITOR_WAIT_S)


def take_disk_tags(item_id: int, subtype: str, rel: str | None = None, view: ItemView | None = None) -> list[str]:
    """The user chose the file's version after a conflict: index the file as it is now
    and return its tags (``[]`` when the file was deleted); ``view`` learns its state."""
    item = Item.get_by_id(item_id)
    with _item_lock(item):
        caption = find_caption(item, "tags", subtype)
        if caption is not None and in_table(caption):
            # the conflict was in a caption table's cell: index the cell as it is now
            tags = split_tags(table_text_now(caption) or "")
            set_tags_many([TagEdit(item, tags)], subtype=subtype, write_files=False, force=True, lock_held=True)
            if view is not None:
                view.bases[("tags", subtype)] = CellBase(join_tags(tags))
            return tags
        if rel is None and caption is not None:
            rel = caption.file_path
        if rel is None:
            return load_tags(item_id, subtype)
        root = Dataset.get_by_id(item.dataset_id).root_path
        path = to_abs(root, rel)
        try:
            text = read_caption(path).text
        except CaptionFileError:
            if os.path.exists(path):
                raise
            text = ""
        tags = split_tags(text)
        # Update the tag rows without writing the file, then record the file's state.
        set_tags_many(
            [TagEdit(item, tags)], subtype=subtype, source="txt_file", write_files=False, force=True, lock_held=True
        )
        _text, state = _adopt_file_state(item, "tags", subtype, rel)
    if view is not None:
        view.bases[("tags", subtype)] = state
    return tags


def take_disk_text(item_id: int, ctype: str, subtype: str, rel: str | None = None, view: ItemView | None = None) -> str:
    item = Item.get_by_id(item_id)
    with _item_lock(item):
        text, state = _adopt_file_state(item, ctype, subtype, rel)
    if view is not None:
        view.bases[(ctype, subtype)] = state if state is not None or text is None else CellBase(text)
    return text or ""


def delete_caption(caption_id: int) -> str:
    """Delete a caption and its file (IT-5). Refuses embedded captions (they live in the
    image) and a file that changed since it was read (the user must look first).
    Returns a message for the user."""
    c = Caption.get_by_id(caption_id)
    item = Item.get_by_id(c.item_id)
    if c.file_path is None:
        if c.source in EMBEDDED_SOURCES:
            raise CaptionFileError(
                f"this caption comes from the image's {c.source} metadata ({c.source_field or 'field'}); "
                "sushitui never rewrites images, so it cannot be deleted here"
            )
        if c.source in ("table", "folder"):
            # a shared file (caption table, prompt.json) covers other items too: deleting
            # the row here would only last until the folder's next reindex
            raise CaptionFileError(
                f"this caption comes from a shared {c.source} file ({c.source_field or 'file'}); sushitui never "
                "rewrites it, so it cannot be deleted here: edit or remove the row in that file"
            )
    with _item_lock(item):
        _delete_caption_locked(c, item)
    return f"deleted {c.file_path or c.type + ' caption'}"


def _delete_caption_locked(c: Caption, item: Item) -> None:
    c = Caption.get_by_id(c.id)  # as it is under the lock
    if c.file_path is not None:
        root = Dataset.get_by_id(item.dataset_id).root_path
        path = to_abs(root, c.file_path)
        if os.path.lexists(path):
            if not unchanged_since(path, caption_state(c)):
                raise CaptionFileError(
                    f"{c.file_path} changed on disk since it was read; not deleted. Reload the item first."
                )
            try:
                os.unlink(path)
            except OSError as exc:
                raise CaptionFileError(f"{c.file_path}: cannot delete ({exc.strerror or exc})") from exc
    with write_transaction():
        ItemTag.delete().where(ItemTag.caption == c.id).execute()
        Caption.delete().where(Caption.id == c.id).execute()
        if c.type == "tags" and c.subtype == MAIN:
            Item.update(tag_count=0).where(Item.id == item.id).execute()
        group_index.refresh_items(current_database(), [item.id])
        tag_bitmaps.forget_all(current_database())


# --- quick-tagging presets (QT-3) ---------------------------------------------------------


def get_presets(dataset_id: int) -> list[str]:
    ds = Dataset.get_by_id(dataset_id)
    return dedupe(ds.presets or [])[:MAX_PRESETS]


def set_presets(dataset_id: int, tags: Sequence[str]) -> list[str]:
    presets = dedupe(tags)[:MAX_PRESETS]
    with write_transaction():
        Dataset.update(presets=presets).where(Dataset.id == dataset_id).execute()
    return presets


def flatten_metadata(data: Any, prefix: str = "", limit: int = 400) -> list[tuple[str, str]]:
    """Nested EXIF/XMP dicts as (dotted key, value text) rows, values cut at ``limit``."""
    rows: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            rows.extend(flatten_metadata(v, f"{prefix}.{k}" if prefix else str(k), limit))
    elif isinstance(data, (list, tuple)) and data and all(isinstance(v, dict) for v in data):
        for i, v in enumerate(data):
            rows.extend(flatten_metadata(v, f"{prefix}[{i}]", limit))
    else:
        if isinstance(data, (list, tuple)):
            text = ", ".join(str(v) for v in data)
        elif isinstance(data, bytes):
            text = f"<{len(data)} bytes>"
        else:
            text = "" if data is None else str(data)
        if len(text) > limit:
            text = text[:limit] + "…"
        rows.append((prefix or "value", text))
    return rows
