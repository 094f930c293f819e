"""Name parsing and per-directory grouping of images and caption files (SCAN-2, SCAN-3).

``{base}_{suffix}.{ext}``: when ``suffix`` is one of the dataset's image or caption
suffixes, the file belongs to the item ``base``; otherwise the whole stem is the base
name (so ``img_001.png`` stays one image). Grouping happens per directory: files in
different folders never join one item.

Layouts:
- A ``x.png`` + ``x.txt``                      one item, caption subtype ``main``
- B ``x.png`` + ``x_main.txt`` + ``x_alt.txt`` one item, captions ``main``, ``alt``
- C ``x_source.png`` + ``x_target.png`` + ``x_instruction.txt``  ONE group item whose
  ``related_images`` maps suffix → path, primary image = the dataset's primary suffix
- D captions embedded in the image (read by ``sushitui.dataset.metadata``)

Caption files are ``.txt``, ``.caption`` (sd-scripts' default ``--caption_extension``)
and ``.cap`` (the kohya_ss GUI's WD14 captioner), in every layout. An image's plain
caption (``x.txt``) is ``main`` when it is its only plain caption; with several plain
captions of different extensions, the first in ``CAPTION_EXTENSIONS_ORDER`` is ``main``
and each other one gets the subtype named after its extension (``x.txt`` + ``x.cap``:
``main`` + ``cap``). Two files claiming one subtype: the one whose extension comes
first wins, then the plain name over the suffixed one (``x.txt`` over ``x_main.txt``);
the other stays on disk, unindexed, and is reported.

Suffix separator (a dataset setting, ``_`` by default): ``.`` groups ``0.src.jpg`` with
``0.mask.png``, ``-`` groups OneTrainer's ``x.png`` + ``x-masklabel.png`` +
``x-condlabel.png`` (given ``--image-suffixes masklabel,condlabel``). Caption files
are read with ``_`` as well, since that is how sushitui names the captions it writes.

XMP sidecars (``x.xmp`` or ``x.jpg.xmp`` beside ``x.jpg``) belong to the image's item
(``ItemGroup.sidecar``); ``x.jpg.xmp`` names its image exactly and wins over ``x.xmp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
SIDECAR_EXTENSIONS = frozenset({".xmp"})  # metadata beside an image: read, never written
SUFFIX_SEPARATORS = ("_", ".", "-")
# precedence when one image has several captions of the same subtype (or several plain ones)
CAPTION_EXTENSIONS_ORDER = (".txt", ".caption", ".cap")
CAPTION_EXTENSIONS = frozenset(CAPTION_EXTENSIONS_ORDER)
_EXT_RANK = {ext: i for i, ext in enumerate(CAPTION_EXTENSIONS_ORDER)}
DEFAULT_IMAGE_SUFFIXES = ("source", "target", "cref", "mask")
DEFAULT_CAPTION_SUFFIXES = ("main", "alt", "instruction", "caption", "tags", "description")
MAIN = "main"
PLAIN_IMAGE_KEY = "image"  # key in related_images of an unsuffixed image inside a group


class FileEntry(NamedTuple):
    """One file found by the walk (``name`` within its directory)."""

    name: str
    size: int
    mtime_ns: int


@dataclass(slots=True)
class ItemGroup:
    """The files of one item in one directory."""

    rel_dir: str
    base_name: str
    group_key: str
    images: dict[str, FileEntry] = field(default_factory=dict)  # suffix ("" = plain) -> file
    captions: dict[str, FileEntry] = field(default_factory=dict)  # subtype -> file
    primary_suffix: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    sidecar: FileEntry | None = None  # x.xmp / x.jpg.xmp
    # captions that come from a file shared by several items (a folder's prompt.json, a
    # captions table): (ctype, subtype, source, source_field, text), set by the scanner
    external: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    @property
    def primary(self) -> FileEntry:
        return self.images[self.primary_suffix]

    def rel_path(self, name: str) -> str:
        return f"{self.rel_dir}/{name}" if self.rel_dir else name

    def related_images(self) -> dict[str, str]:
        """suffix → dataset-relative path; empty for a plain single image."""
        if list(self.images) == [""]:
            return {}
        return {(k or PLAIN_IMAGE_KEY): self.rel_path(f.name) for k, f in self.images.items()}

    def item_type(self, dataset_type: str) -> str:
        if len(self.images) <= 1:
            return "single"
        return "pair" if dataset_type == "pairs" else "group"


def image_suffix_roles(image_suffixes) -> dict[str, str]:
    """file suffix -> the key it gets in ``related_images``: ``0=source`` reads
    ``x_0.jpg`` as the group's source (InstructPix2Pix folders), a plain ``mask`` is
    itself."""
    roles: dict[str, str] = {}
    for s in image_suffixes or ():
        file_suffix, _eq, role = str(s).lower().partition("=")
        roles.setdefault(file_suffix, role or file_suffix)
    return roles


def split_ext(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:].lower()


def parse_name(stem: str, suffixes, separators: str | tuple[str, ...] = "_") -> tuple[str, str | None]:
    """``(base, suffix)`` when the last ``<separator>part`` of ``stem`` is a known
    suffix (the first separator that gives one wins), else ``(stem, None)``. Suffixes
    compare case-insensitively and are returned lowercase."""
    for sep in (separators,) if isinstance(separators, str) else separators:
        cut = stem.rfind(sep)
        if cut <= 0:
            continue
        suffix = stem[cut + 1 :].lower()
        if suffix in suffixes:
            return stem[:cut], suffix
    return stem, None


def classify(name: str) -> str | None:
    """``"image"``, ``"caption"`` or None (ignored) by extension."""
    ext = split_ext(name)[1]
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in CAPTION_EXTENSIONS:
        return "caption"
    return None


def group_directory(
    rel_dir: str,
    images: list[FileEntry],
    captions: list[FileEntry],
    *,
    image_suffixes=DEFAULT_IMAGE_SUFFIXES,
    caption_suffixes=DEFAULT_CAPTION_SUFFIXES,
    dataset_type: str = "auto",
    primary_suffix: str = "target",
    suffix_separator: str = "_",
    sidecars: list[FileEntry] = (),  # type: ignore[assignment]
) -> tuple[list[ItemGroup], list[tuple[str, str]]]:
    """Group one directory's files into items.

    Returns ``(groups, orphans)``; orphans are ``(file name, reason)`` for caption files
    and sidecars with no image.
    """
    # captions: the dataset's separator, then "_" (what sushitui writes)
    caption_separators = (suffix_separator,) if suffix_separator == "_" else (suffix_separator, "_")
    roles = image_suffix_roles(image_suffixes)
    image_suffixes = frozenset(roles)
    caption_suffixes = frozenset(s.lower() for s in caption_suffixes)
    prefix = f"{rel_dir}/" if rel_dir else ""
    groups: dict[str, ItemGroup] = {}  # base name -> group
    by_stem: dict[str, ItemGroup] = {}  # full image stem -> its group
    extra: list[ItemGroup] = []

    for entry in sorted(images, key=lambda e: e.name):
        stem = split_ext(entry.name)[0]
        base, suffix = (stem, None) if dataset_type == "single" else parse_name(stem, image_suffixes, suffix_separator)
        key = roles[suffix] if suffix else ""
        group = groups.get(base)
        if group is None:
            group = groups[base] = ItemGroup(rel_dir, base, prefix + base)
        if key in group.images:
            # x.png and x.jpg: the first keeps the base name (and x.txt); the other
            # becomes its own item named by its full file name, so that its captions
            # are x.jpg.txt (what sushitui writes for it) and never collide with x.txt.
            other = ItemGroup(rel_dir, entry.name, prefix + entry.name, images={"": entry})
            other.problems.append(
                (
                    entry.name,
                    f"another image has the base name {base!r} ({group.images[key].name}) and owns "
                    f"{base}.txt; this image's captions are {entry.name}.txt. Rename one of the images to avoid the confusion.",
                )
            )
            if entry.name in groups:
                extra.append(other)
            else:
                groups[entry.name] = other
            continue
        group.images[key] = entry
        by_stem.setdefault(stem, group)

    for group in groups.values():
        group.primary_suffix = _pick_primary(group, primary_suffix)
    for group in extra:
        group.primary_suffix = ""

    orphans: list[tuple[str, str]] = []
    claims: list[tuple[ItemGroup, str | None, FileEntry]] = []  # subtype None: plain caption, decided below
    plain: dict[int, list[FileEntry]] = {}  # id(group) -> its plain captions
    for entry in sorted(captions, key=lambda e: e.name):
        stem = split_ext(entry.name)[0]
        base, subtype = parse_name(stem, caption_suffixes, caption_separators)
        group = groups.get(base) if subtype else None
        if group is None:
            # x.txt (layout A), or a name like photo_alt.txt beside photo_alt.png
            group, subtype = groups.get(stem) or by_stem.get(stem), None
        if group is None:
            orphans.append((entry.name, "caption file without an image of the same base name; not indexed"))
            continue
        claims.append((group, subtype, entry))
        if subtype is None:
            plain.setdefault(id(group), []).append(entry)

    # Several plain captions (x.txt + x.cap): the first extension is main, the others
    # are named after their extension. Same extension twice (x.txt, x.TXT): both main,
    # and the clash rule below picks one.
    plain_subtype: dict[str, str] = {}
    for entries in plain.values():
        first_rank = min(_ext_rank(e.name) for e in entries)
        for e in entries:
            rank = _ext_rank(e.name)
            plain_subtype[e.name] = MAIN if rank == first_rank else CAPTION_EXTENSIONS_ORDER[rank][1:]

    for group, subtype, entry in claims:
        subtype = subtype or plain_subtype[entry.name]
        if subtype in group.captions:
            first = group.captions[subtype]
            # x.txt and x_main.txt both say "main": the plain one wins, both stay on disk.
            # Across extensions (x_alt.txt and x_alt.cap) the .txt wins first.
            rank_first, rank_entry = _ext_rank(first.name), _ext_rank(entry.name)
            if rank_first != rank_entry:
                first_wins = rank_first < rank_entry
            else:
                first_wins = split_ext(first.name)[0] == group.base_name
            keep, drop = (first, entry) if first_wins else (entry, first)
            group.captions[subtype] = keep
            why = (
                f"{split_ext(keep.name)[1]} captions come before {split_ext(drop.name)[1]}"
                if _ext_rank(keep.name) != _ext_rank(drop.name)
                else ""
            )
            group.problems.append(
                (
                    drop.name,
                    f"two '{subtype}' captions for {group.base_name!r}: {keep.name} is used, "
                    f"this one is ignored{f' ({why})' if why else ''}",
                )
            )
            continue
        group.captions[subtype] = entry

    _attach_sidecars(groups, extra, sidecars, orphans)
    return list(groups.values()) + extra, orphans


def _attach_sidecars(groups: dict[str, ItemGroup], extra: list[ItemGroup], sidecars, orphans: list) -> None:
    """``x.jpg.xmp`` goes to the item whose image is ``x.jpg``; ``x.xmp`` to the item
    whose image stem (or base name) is ``x``. Photo tools write one or the other; with
    both, the one naming the image exactly is read and the other reported."""
    by_image: dict[str, ItemGroup] = {}
    by_stem: dict[str, ItemGroup] = {}
    for known in (*groups.values(), *extra):
        by_stem.setdefault(known.base_name, known)
        for entry in known.images.values():
            by_image.setdefault(entry.name, known)
            by_stem.setdefault(split_ext(entry.name)[0], known)
    for entry in sorted(sidecars, key=lambda e: e.name):
        stem = split_ext(entry.name)[0]
        exact = by_image.get(stem)
        group = exact or by_stem.get(stem)
        if group is None:
            orphans.append((entry.name, "XMP sidecar without an image of the same name; not read"))
            continue
        current = group.sidecar
        if current is not None:
            current_exact = split_ext(current.name)[0] in group_names(group)
            keep, drop = (current, entry) if current_exact or not exact else (entry, current)
            group.sidecar = keep
            group.problems.append(
                (drop.name, f"two XMP sidecars for {group.base_name!r}: {keep.name} is read, this one is ignored")
            )
            continue
        group.sidecar = entry


def group_names(group: ItemGroup) -> set[str]:
    return {e.name for e in group.images.values()}


def _pick_primary(group: ItemGroup, preferred: str) -> str:
    if preferred in group.images:
        return preferred
    for key in ("", "target", *DEFAULT_IMAGE_SUFFIXES):
        if key in group.images:
            return key
    return sorted(group.images)[0]


def _ext_rank(name: str) -> int:
    return _EXT_RANK[split_ext(name)[1]]
