"""The whole schema as Peewee models.

Models are bound to ``database_proxy``; ``sushitui.store.db.open_database`` initialises it.
Timestamps are Unix seconds (REAL): cheap to compare, sort and bulk-insert.
JSON columns hold small structured values (settings, related images, problems).
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Iterator

from peewee import (
    SQL,
    AutoField,
    BlobField,
    BooleanField,
    CompositeKey,
    DatabaseProxy,
    FieldAccessor,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from sushitui.store.natural_key import natural_key

database_proxy = DatabaseProxy()


def now() -> float:
    return time.time()


class JSONField(TextField):
    """A TEXT column holding JSON; ``None`` stays SQL NULL."""

    def db_value(self, value):
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def python_value(self, value):
        if value is None:
            return None
        return json.loads(value)


HOST_ENV_VAR = "SUSHITUI_HOST"


def current_host() -> str:
    """This machine's name for per-host dataset folders (``SUSHITUI_HOST`` overrides)."""
    return os.environ.get(HOST_ENV_VAR) or socket.gethostname()


class _HostRootAccessor(FieldAccessor):
    """``dataset.root_path`` is this machine's folder of the dataset: its entry in
    ``host_roots`` when it has one, else the stored root_path. Setting it changes the
    entry of this machine when it has one, so that an edit made here never moves the
    folder other machines use."""

    def __get__(self, instance, instance_type=None):
        if instance is None:
            return self.field
        roots = instance.__data__.get("host_roots")
        if isinstance(roots, dict) and roots.get(current_host()):
            return roots[current_host()]
        return instance.__data__.get(self.name)

    def __set__(self, instance, value):
        roots = instance.__data__.get("host_roots")
        host = current_host()
        if isinstance(roots, dict) and roots.get(host):
            if roots[host] != value:
                instance.__data__["host_roots"] = {**roots, host: value}
                instance._dirty.add("host_roots")
            return
        super().__set__(instance, value)


class HostRootField(TextField):
    accessor_class = _HostRootAccessor


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


def tuple_rows(query: Any) -> Iterator[tuple[Any, ...]]:
    """The rows of a ``.tuples()`` select, typed as tuples (peewee's stub types them as models)."""
    return iter(query)


# --- datasets and their index -------------------------------------------------------


class Dataset(BaseModel):
    id = AutoField()
    name = TextField(unique=True)
    root_path = HostRootField()  # this machine's folder (host_roots), else the stored one
    type = TextField(default="auto")  # auto | single | pairs
    caption_suffixes = JSONField(default=lambda: ["main", "alt", "instruction", "caption", "tags", "description"])
    image_suffixes = JSONField(default=lambda: ["source", "target", "cref", "mask"])
    primary_suffix = TextField(default="target")
    recursive = BooleanField(default=True)
    max_depth = IntegerField(null=True)
    read_exif = BooleanField(default=False)
    # subtype -> caption type override (SCAN-6), e.g. {"alt": "natural_language"}
    caption_types = JSONField(default=dict)
    # quick-tagging preset tags (QT-3)
    presets = JSONField(default=list)
    total_images = IntegerField(default=0)
    total_items = IntegerField(default=0)
    total_captions = IntegerField(default=0)
    indexed_at = FloatField(null=True)
    # {"started_at", "finished_at", "files_seen", "items", "problems": [{"path", "reason"}], ...}
    last_scan_report = JSONField(null=True)
    created_at = FloatField(default=now)
    updated_at = FloatField(default=now)
    # what a trainer config said about this folder (migration 8, sushitui.export.configs_in):
    # {"format", "config", "entry", "repeats", "class_tokens", "trigger", "is_reg",
    #  "keep_tokens", "caption_extension", "control_dirs", "mask_dirs", "metadata_files", "other"}
    trainer = JSONField(default=dict, constraints=[SQL("DEFAULT '{}'")])
    # how the folder names its files (migration 10, sushitui.dataset.grouping / tables):
    # the separator before a suffix ("_", "." or "-"), a folder-level caption file name
    # (besides prompt.json, always read), and the caption tables named by the user:
    # [{"file", "image_column", "columns": {column: subtype}, "format"}]
    suffix_separator = TextField(default="_", constraints=[SQL("DEFAULT '_'")])
    folder_caption = TextField(null=True)
    caption_tables = JSONField(default=list, constraints=[SQL("DEFAULT '[]'")])
    # the folder on machines that mount it elsewhere (migration 11): {hostname: path}
    host_roots = JSONField(default=dict, constraints=[SQL("DEFAULT '{}'")])


class Item(BaseModel):
    id = AutoField()
    dataset = ForeignKeyField(Dataset, backref="items", on_delete="CASCADE", index=False)
    dataset_id: int  # for the type checker: peewee's accessor of the raw key (an annotation is no field)
    item_type = TextField(default="single")  # single | pair | group
    base_name = TextField()
    rel_dir = TextField(default="")  # directory relative to the dataset root, "" for the root
    group_key = TextField()  # rel_dir/base_name: unique per dataset
    image_path = TextField(null=True)  # primary image, dataset-relative (POSIX separators)
    image_suffix = TextField(null=True)
    related_images = JSONField(default=dict)  # suffix -> dataset-relative path
    width = IntegerField(null=True)
    height = IntegerField(null=True)
    file_size = IntegerField(null=True)
    mtime_ns = IntegerField(null=True)
    sha256 = TextField(null=True)
    exif_data = JSONField(null=True)
    tag_count = IntegerField(default=0)  # tags of the main tag caption; kept for sorting/queries
    problems = JSONField(null=True)
    created_at = FloatField(default=now)  # file creation/modification time of the image
    indexed_at = FloatField(default=now)
    updated_at = FloatField(default=now)
    # natural_key(group_key): the "name" sort (1, 2, 10) through a plain index (migration 4)
    name_key = TextField(default="", constraints=[SQL("DEFAULT ''")])
    # a user's marks (migration 9, sushitui.dataset.marks): stars 0-5 (0: unrated), a bit
    # set of ITEM_FLAGS and a crop [x, y, w, h] in image pixels. The truth is the
    # dataset's .sushitui/marks.json; these columns are its index, refilled after a scan.
    rating = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
    flags = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
    crop = JSONField(null=True)

    class Meta:
        indexes = (
            (("dataset", "group_key"), True),
            (("dataset", "name_key"), False),
            (("dataset", "base_name"), False),
            (("dataset", "width"), False),
            (("dataset", "height"), False),
            (("dataset", "tag_count"), False),
            (("dataset", "created_at"), False),
            (("sha256",), False),
            (("dataset", "rel_dir"), False),  # reindex: items of changed/vanished folders
        )

    def save(self, *args, **kwargs):
        # rows made through the model (tests, tools) sort like scanned ones
        if self.group_key is not None:
            self.name_key = natural_key(self.group_key)
        return super().save(*args, **kwargs)


# Item.flags bits, in this order: flag i is bit 1 << i (never reorder; append new flags)
ITEM_FLAGS = ("exclude", "needs-work", "reg")


class ScanDir(BaseModel):
    """Per scanned folder: a digest of (name, size, mtime) of its image and caption
    files. A reindex that finds the same digest skips the folder's items entirely
    (SCAN-8 at 100k items in ~1 s); the per-item comparison is the fallback."""

    dataset = ForeignKeyField(Dataset, backref="scan_dirs", on_delete="CASCADE")
    dataset_id: int
    rel_dir = TextField()
    signature = TextField()
    n_items = IntegerField(default=0)
    problems = JSONField(null=True)  # [[path, reason]] re-reported while the folder is unchanged

    class Meta:
        table_name = "scan_dir"
        primary_key = CompositeKey("dataset", "rel_dir")


class Caption(BaseModel):
    """One caption of an item: a caption file, an embedded metadata field or a tagger output."""

    id = AutoField()
    item = ForeignKeyField(Item, backref="captions", on_delete="CASCADE")
    item_id: int
    type = TextField()  # tags | natural_language | social_media | instruction | description | prompt
    subtype = TextField(default="")  # "" for image001.txt, else main/alt/... or auto_<model>
    content = TextField(default="")
    language = TextField(default="auto")  # en | ja | auto
    source = TextField(default="txt_file")  # txt_file | exif | xmp | iptc | png_text | user | auto_<model>
    source_field = TextField(null=True)  # e.g. "ImageDescription", "parameters"
    file_path = TextField(null=True)  # dataset-relative caption file
    file_size = IntegerField(null=True)
    file_mtime_ns = IntegerField(null=True)
    file_sha256 = TextField(null=True)
    encoding = TextField(null=True)  # utf-8 | utf-8-sig | cp932 ... (SCAN-9)
    encoding_flagged = BooleanField(default=False)
    created_at = FloatField(default=now)
    updated_at = FloatField(default=now)

    class Meta:
        indexes = ((("item", "type", "subtype"), False),)


class ItemTag(BaseModel):
    """A tag of a tag-type caption, in the caption's order."""

    id = AutoField()
    item = ForeignKeyField(Item, backref="tags", on_delete="CASCADE", index=False)
    caption = ForeignKeyField(Caption, backref="tag_rows", on_delete="CASCADE", null=True)
    item_id: int
    caption_id: int | None
    tag = TextField()  # as written in the file
    norm = TextField()  # normalised match key (sushitui.tags.normalize.match_key)
    position = IntegerField()
    subtype = TextField(default="")
    source = TextField(default="txt_file")
    confidence = FloatField(null=True)

    class Meta:
        table_name = "item_tag"
        indexes = (
            (("norm", "item"), False),
            (("item", "position"), False),
        )


# --- tag groups, aliases, dictionary ---------------------------------------------------


class TagGroup(BaseModel):
    id = AutoField()
    name = TextField(unique=True)
    color = TextField(default="#95E1D3")
    description = TextField(default="")
    sort_order = IntegerField(default=0)
    created_at = FloatField(default=now)


class TagGroupMember(BaseModel):
    group = ForeignKeyField(TagGroup, backref="members", on_delete="CASCADE")
    group_id: int
    tag = TextField()
    norm = TextField(index=True)

    class Meta:
        table_name = "tag_group_member"
        primary_key = CompositeKey("group", "norm")


class Alias(BaseModel):
    id = AutoField()
    from_tag = TextField()
    from_norm = TextField(unique=True)
    to_tag = TextField()
    created_at = FloatField(default=now)


class AppSetting(BaseModel):
    """Small app-wide facts and settings by key, e.g. ``tag_groups_initialised`` (so that
    default groups a user deleted are not re-created at the next start)."""

    key = TextField(primary_key=True)
    value = JSONField(null=True)
    updated_at = FloatField(default=now)

    class Meta:
        table_name = "app_setting"


class DictionaryTag(BaseModel):
    id = AutoField()
    tag = TextField(unique=True)
    norm = TextField(index=True)
    category = TextField(default="general")  # character artist copyright general meta model
    count = IntegerField(default=0)
    display_name = TextField(null=True)
    aliases = TextField(default="")  # comma-separated
    description = TextField(default="")
    wiki_url = TextField(null=True)
    source = TextField(default="danbooru")  # danbooru | user_custom | auto_detected
    official = BooleanField(default=True)
    deprecated = BooleanField(default=False)
    replacement = TextField(null=True)  # the tag to use instead of a deprecated one
    created_at = FloatField(default=now)
    updated_at = FloatField(default=now)

    class Meta:
        table_name = "dictionary_tag"
        indexes = (
            (("category", "count"), False),
            # dictionary screen: keyset paging by count over all categories, and by name /
            # creation within a category (issue 6)
            (("count",), False),
            (("category", "norm"), False),
            (("category", "id"), False),
        )


class DictionaryLoad(BaseModel):
    """One load of a taglist folder or import file into the dictionary (TAG-4).

    The first start loads the shipped ``taglist/`` only when no ``kind="builtin"`` row
    exists, so the load is skipped once done (and not repeated after the user deletes
    tags).
    """

    id = AutoField()
    kind = TextField()  # builtin | load | import
    source = TextField()  # folder or file path
    fingerprint = TextField(default="")  # file names + sizes, to tell a changed taglist
    imported = IntegerField(default=0)
    updated = IntegerField(default=0)
    skipped = IntegerField(default=0)
    rejected = IntegerField(default=0)
    elapsed_s = FloatField(default=0.0)
    loaded_at = FloatField(default=now)

    class Meta:
        table_name = "dictionary_load"


class TagTranslation(BaseModel):
    """A tag's name in a user's language (issue 22): one row per alternative, in the file's
    order (``position``). Keyed by the tag's match key, not the dictionary row, so a
    dictionary reload keeps translations; ``in_dictionary`` marks rows whose tag was not in
    the dictionary when they were imported (kept, reported). ``text_key`` / ``reading_key``
    are the search keys (NFKC, case-folded, katakana as hiragana)."""

    id = AutoField()
    norm = TextField()  # the tag's match key (sushitui.tags.normalize.match_key)
    tag = TextField()  # the tag's spelling (the dictionary's when it is there)
    lang = TextField()  # ja, zh, zh-tw, ...
    text = TextField()
    text_key = TextField()
    reading = TextField(null=True)
    reading_key = TextField(null=True)
    position = IntegerField(default=0)
    in_dictionary = BooleanField(default=True)
    source = TextField(default="")  # the file it came from
    created_at = FloatField(default=now)

    class Meta:
        table_name = "tag_translation"
        indexes = (
            (("lang", "norm", "text"), True),
            (("lang", "text_key"), False),  # dict search / complete by translation
        )


# --- auto-tagger cache -----------------------------------------------------------------


class TaggerCache(BaseModel):
    """Raw model scores per image hash and model version (AT-5)."""

    sha256 = TextField()
    model_key = TextField()  # registry key + revision / file hash
    scores = BlobField()  # float32 little-endian array, label order of the model
    created_at = FloatField(default=now)

    class Meta:
        table_name = "tagger_cache"
        primary_key = CompositeKey("sha256", "model_key")


# --- training runs ---------------------------------------------------------------------


class TrainingRun(BaseModel):
    id = AutoField()
    name = TextField(unique=True)
    number = IntegerField(default=1)
    dataset = ForeignKeyField(Dataset, backref="runs", on_delete="CASCADE")
    parent = ForeignKeyField("self", null=True, backref="children", on_delete="SET NULL")
    dataset_id: int
    parent_id: int | None
    model_type = TextField(null=True)
    base_model = TextField(null=True)
    caption_type = TextField(null=True)
    config = JSONField(null=True)
    status = TextField(default="pending")  # pending running completed failed cancelled
    epochs_planned = IntegerField(null=True)
    steps_planned = IntegerField(null=True)
    epochs_done = IntegerField(default=0)
    steps_done = IntegerField(default=0)
    samples_seen = IntegerField(default=0)
    output_path = TextField(null=True)
    checkpoint_dir = TextField(null=True)
    metadata_file = TextField(null=True)
    # JSONL usage files read by `run record`, so that reading one again continues where
    # it stopped instead of counting lines twice:
    # {absolute path: {"offset", "lines", "dev", "ino", "head_sha1"}}
    record_offsets = JSONField(null=True)
    created_at = FloatField(default=now)
    started_at = FloatField(null=True)
    finished_at = FloatField(null=True)

    class Meta:
        table_name = "training_run"


class RunItemUsage(BaseModel):
    # no separate run index: the primary key (run, item) starts with run
    run = ForeignKeyField(TrainingRun, backref="usage", on_delete="CASCADE", index=False)
    item = ForeignKeyField(Item, backref="run_usage", on_delete="CASCADE")
    run_id: int
    item_id: int
    times_seen = IntegerField(default=0)
    first_epoch = IntegerField(null=True)
    last_epoch = IntegerField(null=True)
    first_step = IntegerField(null=True)
    last_step = IntegerField(null=True)

    class Meta:
        table_name = "run_item_usage"
        primary_key = CompositeKey("run", "item")
        # clustered by (run, item): recording UPSERTs touch one b-tree, and a run's
        # usage over an item-id range (the stats heatmap) is one contiguous read
        without_rowid = True
        # run stats (TR-5) read (times_seen, item) per run from this index alone: the
        # distribution, the heatmap and the top 10 (ORDER BY times_seen DESC LIMIT 10
        # without a sort)
        indexes = ((("run", "times_seen", "item"), False),)


class ItemStats(BaseModel):
    """Usage of an item over all runs, kept up to date incrementally (TR-2).

    ``usage_sumsq`` is the sum over runs of (times seen in that run)²; with
    ``total_seen`` and ``runs_participated`` it gives the variance of per-run usage
    without scanning history.
    """

    item = ForeignKeyField(Item, primary_key=True, backref="stats", on_delete="CASCADE")
    item_id: int
    total_seen = IntegerField(default=0)
    runs_participated = IntegerField(default=0)
    usage_sumsq = IntegerField(default=0)
    first_trained_at = FloatField(null=True)
    last_trained_at = FloatField(null=True)

    class Meta:
        table_name = "item_stats"


# --- vision-language captioning (issue 16) ---------------------------------------------


class VlmEndpoint(BaseModel):
    """An OpenAI-compatible chat-completions server a user registered
    (``sushitui endpoint add``). Never holds a key: ``api_key_env`` names the environment
    variable the key is read from when a request is sent."""

    id = AutoField()
    name = TextField(unique=True)
    base_url = TextField()  # e.g. http://127.0.0.1:8000/v1
    model = TextField(null=True)  # None: the first model the server lists
    api_key_env = TextField(null=True)
    created_at = FloatField(default=now)
    updated_at = FloatField(default=now)

    class Meta:
        table_name = "vlm_endpoint"


class VlmCache(BaseModel):
    """A model's answer per request: ``key`` is the SHA-256 of (image hashes, model,
    system and user prompt after variables, parameters), so a rerun after a crash sends
    nothing that was answered, and a new prompt sends again. The raw answer is kept;
    post-processing (banned words, start text, one line) runs on every use."""

    key = TextField(primary_key=True)
    model = TextField()
    text = TextField()
    finish_reason = TextField(null=True)
    refusal = TextField(null=True)  # the API's own refusal field, when the server sets it
    prompt_tokens = IntegerField(null=True)
    completion_tokens = IntegerField(null=True)
    created_at = FloatField(default=now)

    class Meta:
        table_name = "vlm_cache"


# --- dataset health checks (sushitui.check) ------------------------------------------------


class ImageHash(BaseModel):
    """What ``sushitui check`` learnt by decoding an image, keyed by the file's sha256: the
    same bytes in two datasets (or after ``dataset remove`` + ``add``) are decoded once.
    ``version`` is the hashing code's (sushitui.check.hashing.HASH_VERSION); rows of
    another version are recomputed."""

    sha256 = TextField(primary_key=True)
    version = IntegerField()
    phash = IntegerField(null=True)  # 64-bit DCT perceptual hash as a signed integer; NULL: unreadable
    mode = TextField(null=True)  # Pillow mode: RGB, RGBA, P, CMYK, I;16 ...
    bits = IntegerField(null=True)  # bits per sample (16 for 16-bit PNGs)
    orientation = IntegerField(null=True)  # EXIF 0x0112; NULL when absent
    frames = IntegerField(default=1)  # > 1: animated
    error = TextField(null=True)  # why it could not be decoded
    created_at = FloatField(default=now)

    class Meta:
        table_name = "image_hash"


class CaptionTokens(BaseModel):
    """CLIP / T5 token counts of a caption text, keyed by a digest of the text (and the
    tokenizer version, sushitui.check.tokens.TOKENS_VERSION): a later check or a
    ``tokens:`` query tokenises only texts it has not seen."""

    digest = TextField(primary_key=True)
    clip = IntegerField()
    t5 = IntegerField(null=True)  # NULL until a check with T5 counted it

    class Meta:
        table_name = "caption_tokens"


class CheckFinding(BaseModel):
    """One finding of the last ``sushitui check`` of an item's dataset (``check:CODE`` in
    queries); the check replaces a dataset's rows each time it runs."""

    item = ForeignKeyField(Item, backref="findings", on_delete="CASCADE", index=False)
    code = TextField()  # e.g. upscaled, clip_tokens, near_duplicate (sushitui.check.findings)
    severity = TextField()  # error | warning | info
    message = TextField()
    detail = JSONField(null=True)

    class Meta:
        table_name = "check_finding"
        primary_key = CompositeKey("item", "code")
        without_rowid = True
        indexes = ((("code", "item"), False),)


# --- long jobs that outlive the terminal (sushitui.jobs) ------------------------------------


class Job(BaseModel):
    """A long command run by a detached worker process (``sushitui ... --detach``).

    The worker re-runs the command's own argv, so ``argv`` and ``cwd`` are all a retry
    needs. ``host``/``pid``/``pid_started`` name the worker process; ``pid_started`` is
    the kernel's start time of that pid, so a pid reused by another program after the
    worker died does not pass for the worker. ``lock_key`` ("dataset:NAME",
    "dictionary"): two jobs with the same key never run at once; ``device`` ("cpu",
    "gpu:N"): one job at a time per GPU."""

    id = AutoField()
    kind = TextField()  # the command: autotag, caption, dataset reindex, tag add, ...
    dataset = TextField(null=True)  # the dataset's name as given (a job may outlive its dataset)
    argv = JSONField()  # sushitui's arguments without --detach
    cwd = TextField()
    state = TextField(default="queued")  # queued | running | done | failed | cancelled | interrupted
    device = TextField(default="cpu")
    lock_key = TextField(null=True)
    phase = TextField(null=True)
    done = IntegerField(default=0)
    total = IntegerField(null=True)
    unit = TextField(default="items")
    rate = FloatField(null=True)  # units per second
    eta_s = FloatField(null=True)
    message = TextField(null=True)  # why it failed or was interrupted
    exit_code = IntegerField(null=True)
    cancel_requested = BooleanField(default=False)
    host = TextField(null=True)
    pid = IntegerField(null=True)
    pid_started = TextField(null=True)
    log_path = TextField(null=True)
    retry_of = IntegerField(null=True)
    announced = BooleanField(default=False)  # an interruption was reported to the user once
    created_at = FloatField(default=now)
    started_at = FloatField(null=True)
    finished_at = FloatField(null=True)
    updated_at = FloatField(default=now)

    class Meta:
        table_name = "job"
        indexes = ((("state", "id"), False),)


ALL_MODELS = [
    Dataset,
    Item,
    Caption,
    ItemTag,
    ScanDir,
    TagGroup,
    TagGroupMember,
    Alias,
    AppSetting,
    DictionaryTag,
    DictionaryLoad,
    TagTranslation,
    TaggerCache,
    TrainingRun,
    RunItemUsage,
    ItemStats,
    VlmEndpoint,
    VlmCache,
    ImageHash,
    CaptionTokens,
    CheckFinding,
    Job,
]
