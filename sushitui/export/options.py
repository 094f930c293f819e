"""What an export should produce: the format, which items, how captions are transformed,
how images are placed. One value passed from the CLI and the TUI dialog to the core."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sushitui.errors import UserError

FORMATS = (
    "txt",
    "kohya-json",
    "kohya-toml",
    "ai-toolkit",
    "diffusers",
    "onetrainer",
    "diffusion-pipe",
    "musubi",
    "kohya-jsonl",
)
LINK_MODES = ("link", "symlink", "copy")


class ExportError(UserError):
    """The export cannot start or cannot finish; the message says what to do."""


@dataclass
class ExportOptions:
    format: str = "txt"
    # item subset: a query of the query language and/or explicit item ids
    query: str | None = None
    item_ids: list[int] | None = None
    # items flagged "exclude" (sushitui rate/flag, the TUI's E key) are left out unless asked
    include_excluded: bool = False
    # caption subtypes (or caption types) in fallback order: the first non-empty one wins
    caption: tuple[str, ...] = ("main",)
    exclude_groups: tuple[str, ...] = ()
    aliases: bool = False
    underscores_to_spaces: bool = False
    escape_parens: bool = False
    trigger: str | None = None
    # kohya repeats: None keeps the repeat prefix of folders like ``10_name`` (else 1)
    repeats: int | None = None
    link_mode: str = "link"
    zip: bool = False
    # the path at which the trainer will see OUTDIR (written into TOML/YAML configs);
    # default: OUTDIR's absolute path on this machine
    config_root: str | None = None
    # kohya: one resolution; ai-toolkit: buckets. None: chosen from the image sizes
    resolution: tuple[int, ...] | None = None
    batch_size: int = 1
    shuffle_caption: bool = False
    # group items (layout C): image suffixes exported as ai-toolkit control images
    control_suffixes: tuple[str, ...] = ("source",)
    mask_suffixes: tuple[str, ...] = ("mask",)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.link_mode not in LINK_MODES:
            raise ExportError(f"unknown image mode {self.link_mode!r}; choose one of {', '.join(LINK_MODES)}")
        if self.repeats is not None and not 1 <= self.repeats <= 10000:
            raise ExportError(f"--repeats must be between 1 and 10000, not {self.repeats}")
        if not [c for c in self.caption if c.strip()]:
            raise ExportError("name at least one caption subtype (e.g. main)")
        if self.batch_size < 1:
            raise ExportError("batch size must be at least 1")
        if self.resolution is not None and any(r < 64 or r > 16384 for r in self.resolution):
            raise ExportError("resolutions must be between 64 and 16384 pixels")
        if self.trigger is not None and ("\n" in self.trigger or "\r" in self.trigger):
            raise ExportError("the trigger word must be on one line")

    @property
    def keep_tokens(self) -> int:
        """kohya ``keep_tokens``: the trigger's comma-separated tokens stay first when
        captions are shuffled."""
        from sushitui.tags.normalize import split_tags

        return len(split_tags(self.trigger)) if self.trigger and self.trigger.strip() else 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExportProblem:
    item_id: int | None
    path: str | None
    reason: str


@dataclass
class ShortenedName:
    """A name too long for the trainers' file systems, exported shorter (see
    writer.shorten_name). ``files``: every exported file (or folder) that took the short
    name, relative to OUTDIR (or the zip): image, caption, mask, control image."""

    item_id: int | None  # None for a folder
    source: str  # dataset-relative path of the image (or folder)
    exported: str  # its exported path
    files: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    outdir: str
    format: str
    items_total: int = 0
    items_exported: int = 0
    images_linked: int = 0
    images_symlinked: int = 0
    images_copied: int = 0
    captions_written: int = 0
    items_without_caption: int = 0
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (source path, exported path)
    shortened: list[ShortenedName] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    zip_path: str | None = None
    problems: list[ExportProblem] = field(default_factory=list)
    cancelled: bool = False
    elapsed: float = 0.0

    @property
    def files_written(self) -> int:
        return (
            self.images_linked
            + self.images_symlinked
            + self.images_copied
            + self.captions_written
            + len(self.config_files)
        )

    @property
    def files_per_s(self) -> float:
        return self.files_written / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["files_written"] = self.files_written
        d["files_per_s"] = round(self.files_per_s, 1)
        d["renamed"] = [{"source": a, "exported": b} for a, b in self.renamed]
        return d
