"""The schema migrations, each written out as the SQL it ran when it was released.

A migration never reads the Peewee models or another module's constants: those change,
and a fresh database (all migrations) must stay exactly what an upgraded one becomes
(tests/test_store_migrations.py upgrades a database made by the released v1 code and
compares). So: append a migration for every schema change, spell out its DDL here, and
never edit a released one. ``test_store_migrations`` also fails while the models and the
latest migration disagree.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from peewee import SqliteDatabase

# Migration 1 as released: the statements Peewee 3/4's ``create_tables(ALL_MODELS,
# safe=True)`` ran for the models of schema version 1 (tests/data/v1.sqlite holds a
# database made by that code).
SCHEMA_V1: tuple[str, ...] = (
    (
        'CREATE TABLE IF NOT EXISTS "alias" ("id" INTEGER NOT NULL PRIMARY KEY, "from_tag" TEXT NOT NULL, '
        '"from_norm" TEXT NOT NULL, "to_tag" TEXT NOT NULL, "created_at" REAL NOT NULL)'
    ),
    'CREATE UNIQUE INDEX IF NOT EXISTS "alias_from_norm" ON "alias" ("from_norm")',
    (
        'CREATE TABLE IF NOT EXISTS "app_setting" ("key" TEXT NOT NULL PRIMARY KEY, "value" TEXT, '
        '"updated_at" REAL NOT NULL)'
    ),
    (
        'CREATE TABLE IF NOT EXISTS "dataset" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, '
        '"root_path" TEXT NOT NULL, "type" TEXT NOT NULL, "caption_suffixes" TEXT NOT NULL, '
        '"image_suffixes" TEXT NOT NULL, "primary_suffix" TEXT NOT NULL, "recursive" INTEGER NOT NULL, '
        '"max_depth" INTEGER, "read_exif" INTEGER NOT NULL, "caption_types" TEXT NOT NULL, '
        '"presets" TEXT NOT NULL, "total_images" INTEGER NOT NULL, "total_items" INTEGER NOT NULL, '
        '"total_captions" INTEGER NOT NULL, "indexed_at" REAL, "last_scan_report" TEXT, '
        '"created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)'
    ),
    'CREATE UNIQUE INDEX IF NOT EXISTS "dataset_name" ON "dataset" ("name")',
    (
        'CREATE TABLE IF NOT EXISTS "item" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"dataset_id" INTEGER NOT NULL, "item_type" TEXT NOT NULL, "base_name" TEXT NOT NULL, '
        '"rel_dir" TEXT NOT NULL, "group_key" TEXT NOT NULL, "image_path" TEXT, "image_suffix" TEXT, '
        '"related_images" TEXT NOT NULL, "width" INTEGER, "height" INTEGER, "file_size" INTEGER, '
        '"mtime_ns" INTEGER, "sha256" TEXT, "exif_data" TEXT, "tag_count" INTEGER NOT NULL, "problems" TEXT, '
        '"created_at" REAL NOT NULL, "indexed_at" REAL NOT NULL, "updated_at" REAL NOT NULL, '
        'FOREIGN KEY ("dataset_id") REFERENCES "dataset" ("id") ON DELETE CASCADE)'
    ),
    'CREATE UNIQUE INDEX IF NOT EXISTS "item_dataset_id_group_key" ON "item" ("dataset_id", "group_key")',
    'CREATE INDEX IF NOT EXISTS "item_dataset_id_base_name" ON "item" ("dataset_id", "base_name")',
    'CREATE INDEX IF NOT EXISTS "item_dataset_id_width" ON "item" ("dataset_id", "width")',
    'CREATE INDEX IF NOT EXISTS "item_dataset_id_height" ON "item" ("dataset_id", "height")',
    'CREATE INDEX IF NOT EXISTS "item_dataset_id_tag_count" ON "item" ("dataset_id", "tag_count")',
    'CREATE INDEX IF NOT EXISTS "item_dataset_id_created_at" ON "item" ("dataset_id", "created_at")',
    'CREATE INDEX IF NOT EXISTS "item_sha256" ON "item" ("sha256")',
    'CREATE INDEX IF NOT EXISTS "item_dataset_id_rel_dir" ON "item" ("dataset_id", "rel_dir")',
    (
        'CREATE TABLE IF NOT EXISTS "caption" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"item_id" INTEGER NOT NULL, "type" TEXT NOT NULL, "subtype" TEXT NOT NULL, "content" TEXT NOT NULL, '
        '"language" TEXT NOT NULL, "source" TEXT NOT NULL, "source_field" TEXT, "file_path" TEXT, '
        '"file_size" INTEGER, "file_mtime_ns" INTEGER, "file_sha256" TEXT, "encoding" TEXT, '
        '"encoding_flagged" INTEGER NOT NULL, "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL, '
        'FOREIGN KEY ("item_id") REFERENCES "item" ("id") ON DELETE CASCADE)'
    ),
    'CREATE INDEX IF NOT EXISTS "caption_item_id" ON "caption" ("item_id")',
    'CREATE INDEX IF NOT EXISTS "caption_item_id_type_subtype" ON "caption" ("item_id", "type", "subtype")',
    (
        'CREATE TABLE IF NOT EXISTS "dictionary_load" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"kind" TEXT NOT NULL, "source" TEXT NOT NULL, "fingerprint" TEXT NOT NULL, '
        '"imported" INTEGER NOT NULL, "updated" INTEGER NOT NULL, "skipped" INTEGER NOT NULL, '
        '"rejected" INTEGER NOT NULL, "elapsed_s" REAL NOT NULL, "loaded_at" REAL NOT NULL)'
    ),
    (
        'CREATE TABLE IF NOT EXISTS "dictionary_tag" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"tag" TEXT NOT NULL, "norm" TEXT NOT NULL, "category" TEXT NOT NULL, "count" INTEGER NOT NULL, '
        '"display_name" TEXT, "aliases" TEXT NOT NULL, "description" TEXT NOT NULL, "wiki_url" TEXT, '
        '"source" TEXT NOT NULL, "official" INTEGER NOT NULL, "deprecated" INTEGER NOT NULL, '
        '"replacement" TEXT, "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)'
    ),
    'CREATE UNIQUE INDEX IF NOT EXISTS "dictionary_tag_tag" ON "dictionary_tag" ("tag")',
    'CREATE INDEX IF NOT EXISTS "dictionary_tag_norm" ON "dictionary_tag" ("norm")',
    'CREATE INDEX IF NOT EXISTS "dictionary_tag_category_count" ON "dictionary_tag" ("category", "count")',
    'CREATE INDEX IF NOT EXISTS "dictionary_tag_count" ON "dictionary_tag" ("count")',
    'CREATE INDEX IF NOT EXISTS "dictionary_tag_category_norm" ON "dictionary_tag" ("category", "norm")',
    'CREATE INDEX IF NOT EXISTS "dictionary_tag_category_id" ON "dictionary_tag" ("category", "id")',
    (
        'CREATE TABLE IF NOT EXISTS "item_stats" ("item_id" INTEGER NOT NULL PRIMARY KEY, '
        '"total_seen" INTEGER NOT NULL, "runs_participated" INTEGER NOT NULL, '
        '"usage_sumsq" INTEGER NOT NULL, "first_trained_at" REAL, "last_trained_at" REAL, '
        'FOREIGN KEY ("item_id") REFERENCES "item" ("id") ON DELETE CASCADE)'
    ),
    (
        'CREATE TABLE IF NOT EXISTS "item_tag" ("id" INTEGER NOT NULL PRIMARY KEY, '
        '"item_id" INTEGER NOT NULL, "caption_id" INTEGER, "tag" TEXT NOT NULL, "norm" TEXT NOT NULL, '
        '"position" INTEGER NOT NULL, "subtype" TEXT NOT NULL, "source" TEXT NOT NULL, "confidence" REAL, '
        'FOREIGN KEY ("item_id") REFERENCES "item" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("caption_id") REFERENCES "caption" ("id") ON DELETE CASCADE)'
    ),
    'CREATE INDEX IF NOT EXISTS "item_tag_caption_id" ON "item_tag" ("caption_id")',
    'CREATE INDEX IF NOT EXISTS "item_tag_norm_item_id" ON "item_tag" ("norm", "item_id")',
    'CREATE INDEX IF NOT EXISTS "item_tag_item_id_position" ON "item_tag" ("item_id", "position")',
    (
        'CREATE TABLE IF NOT EXISTS "training_run" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, '
        '"number" INTEGER NOT NULL, "dataset_id" INTEGER NOT NULL, "parent_id" INTEGER, "model_type" TEXT, '
        '"base_model" TEXT, "caption_type" TEXT, "config" TEXT, "status" TEXT NOT NULL, '
        '"epochs_planned" INTEGER, "steps_planned" INTEGER, "epochs_done" INTEGER NOT NULL, '
        '"steps_done" INTEGER NOT NULL, "samples_seen" INTEGER NOT NULL, "output_path" TEXT, '
        '"checkpoint_dir" TEXT, "metadata_file" TEXT, "record_offsets" TEXT, "created_at" REAL NOT NULL, '
        '"started_at" REAL, "finished_at" REAL, '
        'FOREIGN KEY ("dataset_id") REFERENCES "dataset" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("parent_id") REFERENCES "training_run" ("id") ON DELETE SET NULL)'
    ),
    'CREATE UNIQUE INDEX IF NOT EXISTS "training_run_name" ON "training_run" ("name")',
    'CREATE INDEX IF NOT EXISTS "training_run_dataset_id" ON "training_run" ("dataset_id")',
    'CREATE INDEX IF NOT EXISTS "training_run_parent_id" ON "training_run" ("parent_id")',
    (
        'CREATE TABLE IF NOT EXISTS "run_item_usage" ("run_id" INTEGER NOT NULL, "item_id" INTEGER NOT NULL, '
        '"times_seen" INTEGER NOT NULL, "first_epoch" INTEGER, "last_epoch" INTEGER, "first_step" INTEGER, '
        '"last_step" INTEGER, PRIMARY KEY ("run_id", "item_id"), '
        'FOREIGN KEY ("run_id") REFERENCES "training_run" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("item_id") REFERENCES "item" ("id") ON DELETE CASCADE) WITHOUT ROWID'
    ),
    'CREATE INDEX IF NOT EXISTS "run_item_usage_item_id" ON "run_item_usage" ("item_id")',
    (
        'CREATE INDEX IF NOT EXISTS "run_item_usage_run_id_times_seen_item_id" ON "run_item_usage" ("run_id", '
        '"times_seen", "item_id")'
    ),
    (
        'CREATE TABLE IF NOT EXISTS "scan_dir" ("dataset_id" INTEGER NOT NULL, "rel_dir" TEXT NOT NULL, '
        '"signature" TEXT NOT NULL, "n_items" INTEGER NOT NULL, "problems" TEXT, PRIMARY KEY ("dataset_id", '
        '"rel_dir"), FOREIGN KEY ("dataset_id") REFERENCES "dataset" ("id") ON DELETE CASCADE)'
    ),
    'CREATE INDEX IF NOT EXISTS "scan_dir_dataset_id" ON "scan_dir" ("dataset_id")',
    (
        'CREATE TABLE IF NOT EXISTS "tagger_cache" ("sha256" TEXT NOT NULL, "model_key" TEXT NOT NULL, '
        '"scores" BLOB NOT NULL, "created_at" REAL NOT NULL, PRIMARY KEY ("sha256", "model_key"))'
    ),
    (
        'CREATE TABLE IF NOT EXISTS "tag_group" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, '
        '"color" TEXT NOT NULL, "description" TEXT NOT NULL, "sort_order" INTEGER NOT NULL, '
        '"created_at" REAL NOT NULL)'
    ),
    'CREATE UNIQUE INDEX IF NOT EXISTS "tag_group_name" ON "tag_group" ("name")',
    (
        'CREATE TABLE IF NOT EXISTS "tag_group_member" ("group_id" INTEGER NOT NULL, "tag" TEXT NOT NULL, '
        '"norm" TEXT NOT NULL, PRIMARY KEY ("group_id", "norm"), '
        'FOREIGN KEY ("group_id") REFERENCES "tag_group" ("id") ON DELETE CASCADE)'
    ),
    'CREATE INDEX IF NOT EXISTS "tag_group_member_group_id" ON "tag_group_member" ("group_id")',
    'CREATE INDEX IF NOT EXISTS "tag_group_member_norm" ON "tag_group_member" ("norm")',
)


# Migration 2 as released. scan_dir and app_setting joined migration 1's models after
# some pre-release databases had run it, so they are created here when missing (the
# statements are migration 1's own). group_item and its triggers keep the answer behind
# ``group:`` counts (sushitui.store.group_index).
SCHEMA_V2: tuple[str, ...] = (
    (
        'CREATE TABLE IF NOT EXISTS "scan_dir" ("dataset_id" INTEGER NOT NULL, "rel_dir" TEXT NOT NULL, '
        '"signature" TEXT NOT NULL, "n_items" INTEGER NOT NULL, "problems" TEXT, '
        'PRIMARY KEY ("dataset_id", "rel_dir"), '
        'FOREIGN KEY ("dataset_id") REFERENCES "dataset" ("id") ON DELETE CASCADE)'
    ),
    'CREATE INDEX IF NOT EXISTS "scan_dir_dataset_id" ON "scan_dir" ("dataset_id")',
    (
        'CREATE TABLE IF NOT EXISTS "app_setting" ("key" TEXT NOT NULL PRIMARY KEY, "value" TEXT, '
        '"updated_at" REAL NOT NULL)'
    ),
    """CREATE TABLE IF NOT EXISTS group_item_state (
        dataset_id INTEGER NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL REFERENCES tag_group (id) ON DELETE CASCADE,
        valid INTEGER NOT NULL DEFAULT 0,
        built_at REAL NOT NULL,
        PRIMARY KEY (dataset_id, group_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS group_item_state_group_id ON group_item_state (group_id)",
    """CREATE TABLE IF NOT EXISTS group_item (
        dataset_id INTEGER NOT NULL,
        group_id INTEGER NOT NULL,
        item_id INTEGER NOT NULL,
        PRIMARY KEY (dataset_id, group_id, item_id)
    ) WITHOUT ROWID""",
    # an entry owns its rows: eviction and the cascades from dataset / tag_group take them
    """CREATE TRIGGER IF NOT EXISTS group_item_state_ad AFTER DELETE ON group_item_state BEGIN
        DELETE FROM group_item WHERE dataset_id = old.dataset_id AND group_id = old.group_id;
    END""",
    """CREATE TRIGGER IF NOT EXISTS tag_group_member_ai AFTER INSERT ON tag_group_member BEGIN
        UPDATE group_item_state SET valid = 0 WHERE group_id = new.group_id AND valid;
    END""",
    """CREATE TRIGGER IF NOT EXISTS tag_group_member_ad AFTER DELETE ON tag_group_member BEGIN
        UPDATE group_item_state SET valid = 0 WHERE group_id = old.group_id AND valid;
    END""",
    """CREATE TRIGGER IF NOT EXISTS tag_group_member_au AFTER UPDATE ON tag_group_member BEGIN
        UPDATE group_item_state SET valid = 0 WHERE group_id IN (old.group_id, new.group_id) AND valid;
    END""",
)


# Migration 3: endpoints of vision-language model servers and the answers they gave
# (sushitui.tagger.vlm). An endpoint row names the environment variable of its key,
# never the key.
SCHEMA_V3: tuple[str, ...] = (
    (
        'CREATE TABLE IF NOT EXISTS "vlm_endpoint" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, '
        '"base_url" TEXT NOT NULL, "model" TEXT, "api_key_env" TEXT, "created_at" REAL NOT NULL, '
        '"updated_at" REAL NOT NULL)'
    ),
    'CREATE UNIQUE INDEX IF NOT EXISTS "vlm_endpoint_name" ON "vlm_endpoint" ("name")',
    (
        'CREATE TABLE IF NOT EXISTS "vlm_cache" ("key" TEXT NOT NULL PRIMARY KEY, "model" TEXT NOT NULL, '
        '"text" TEXT NOT NULL, "finish_reason" TEXT, "refusal" TEXT, "prompt_tokens" INTEGER, '
        '"completion_tokens" INTEGER, "created_at" REAL NOT NULL)'
    ),
)


# Migration 4 as released: the natural name sort key (sushitui.store.natural_key), stored
# and indexed so that ORDER BY runs no Python. Rows that exist are filled by the frozen
# copy of the key function below, registered as an SQL function for the UPDATE only.
SCHEMA_V4: tuple[str, ...] = (
    """ALTER TABLE "item" ADD COLUMN "name_key" TEXT NOT NULL DEFAULT ''""",
    'UPDATE "item" SET "name_key" = sushitui_name_key_v4("group_key")',
    'CREATE INDEX IF NOT EXISTS "item_dataset_id_name_key" ON "item" ("dataset_id", "name_key")',
)


def _name_key_v4(name: str) -> str:
    """natural_key as migration 4 released it (see sushitui/store/natural_key.py)."""
    import re
    import unicodedata

    if name.isascii():
        folded = name.lower()
    else:
        folded = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).casefold()
    folded = folded.replace("/", "\x02")

    def number(m: re.Match) -> str:
        digits = m.group().lstrip("0")
        return "\x03" + chr(0x30 + len(digits)) + digits

    return re.sub(r"[0-9]+", number, folded) + "\x01" + name


def _migrate_v4(db: SqliteDatabase) -> None:
    if is_postgres(db):
        _run(SCHEMA_V4[:1])(db)
        rows = db.execute_sql('SELECT "id", "group_key" FROM "item"').fetchall()
        if rows:
            db.cursor().executemany(
                'UPDATE "item" SET "name_key" = %s WHERE "id" = %s', [(_name_key_v4(k), i) for i, k in rows]
            )
        _run(SCHEMA_V4[2:])(db)
        return
    db.connection().create_function("sushitui_name_key_v4", 1, _name_key_v4, deterministic=True)
    statements = SCHEMA_V4
    # ADD COLUMN has no IF NOT EXISTS: a database rewound to an older version (as other
    # migrations allow with their IF NOT EXISTS) must not fail on the column it has
    if any(row[1] == "name_key" for row in db.execute_sql('PRAGMA table_info("item")')):
        statements = statements[1:]
    _run(statements)(db)


# Migration 5: tag translations (issue 22, sushitui.tags.translations): a tag's name in
# the user's language, keyed by the tag's match key.
SCHEMA_V5: tuple[str, ...] = (
    (
        'CREATE TABLE IF NOT EXISTS "tag_translation" ("id" INTEGER NOT NULL PRIMARY KEY, "norm" TEXT NOT NULL, '
        '"tag" TEXT NOT NULL, "lang" TEXT NOT NULL, "text" TEXT NOT NULL, "text_key" TEXT NOT NULL, '
        '"reading" TEXT, "reading_key" TEXT, "position" INTEGER NOT NULL, "in_dictionary" INTEGER NOT NULL, '
        '"source" TEXT NOT NULL, "created_at" REAL NOT NULL)'
    ),
    (
        'CREATE UNIQUE INDEX IF NOT EXISTS "tag_translation_lang_norm_text" ON "tag_translation" '
        '("lang", "norm", "text")'
    ),
    'CREATE INDEX IF NOT EXISTS "tag_translation_lang_text_key" ON "tag_translation" ("lang", "text_key")',
)


# Migration 6: what ``sushitui check`` keeps (issue 18): facts and a perceptual hash per
# image content (by sha256), the findings of each dataset's last check, and token counts
# per caption text (by digest).
SCHEMA_V6: tuple[str, ...] = (
    (
        'CREATE TABLE IF NOT EXISTS "image_hash" ("sha256" TEXT NOT NULL PRIMARY KEY, "version" INTEGER NOT NULL, '
        '"phash" INTEGER, "mode" TEXT, "bits" INTEGER, "orientation" INTEGER, "frames" INTEGER NOT NULL, '
        '"error" TEXT, "created_at" REAL NOT NULL)'
    ),
    (
        'CREATE TABLE IF NOT EXISTS "check_finding" ("item_id" INTEGER NOT NULL, "code" TEXT NOT NULL, '
        '"severity" TEXT NOT NULL, "message" TEXT NOT NULL, "detail" TEXT, PRIMARY KEY ("item_id", "code"), '
        'FOREIGN KEY ("item_id") REFERENCES "item" ("id") ON DELETE CASCADE) WITHOUT ROWID'
    ),
    'CREATE INDEX IF NOT EXISTS "check_finding_code_item_id" ON "check_finding" ("code", "item_id")',
    'CREATE TABLE IF NOT EXISTS "caption_tokens" ("digest" TEXT NOT NULL PRIMARY KEY, "clip" INTEGER NOT NULL, "t5" INTEGER)',
)


# Migration 7: long jobs run by detached worker processes (issue 19, sushitui.jobs): the
# command, its state and throttled progress, and the worker that runs it.
SCHEMA_V7: tuple[str, ...] = (
    (
        'CREATE TABLE IF NOT EXISTS "job" ("id" INTEGER NOT NULL PRIMARY KEY, "kind" TEXT NOT NULL, "dataset" TEXT, '
        '"argv" TEXT NOT NULL, "cwd" TEXT NOT NULL, "state" TEXT NOT NULL, "device" TEXT NOT NULL, "lock_key" TEXT, '
        '"phase" TEXT, "done" INTEGER NOT NULL, "total" INTEGER, "unit" TEXT NOT NULL, "rate" REAL, "eta_s" REAL, '
        '"message" TEXT, "exit_code" INTEGER, "cancel_requested" INTEGER NOT NULL, "host" TEXT, "pid" INTEGER, '
        '"pid_started" TEXT, "log_path" TEXT, "retry_of" INTEGER, "announced" INTEGER NOT NULL, '
        '"created_at" REAL NOT NULL, "started_at" REAL, "finished_at" REAL, "updated_at" REAL NOT NULL)'
    ),
    'CREATE INDEX IF NOT EXISTS "job_state_id" ON "job" ("state", "id")',
)


# Migration 8: what a trainer config said about a dataset's folder (issue 17,
# sushitui.export.configs_in): repeats, class tokens / trigger, is_reg, keep_tokens,
# caption extension, control/mask folders, metadata files and where it came from. One
# JSON object, because each trainer has its own settings and an export reuses them.
SCHEMA_V8: tuple[str, ...] = ("""ALTER TABLE "dataset" ADD COLUMN "trainer" TEXT NOT NULL DEFAULT '{}'""",)


def _migrate_v8(db: SqliteDatabase) -> None:
    if is_postgres(db):
        return _run(SCHEMA_V8)(db)
    # ADD COLUMN has no IF NOT EXISTS (see _migrate_v4)
    if any(row[1] == "trainer" for row in db.execute_sql('PRAGMA table_info("dataset")')):
        return
    _run(SCHEMA_V8)(db)


# Migration 9: a user's marks on an item (issue 18, sushitui.dataset.marks): stars 0-5,
# flags as bits (exclude 1, needs-work 2, reg 4) and a crop rectangle as JSON. The
# dataset's .sushitui/marks.json holds them too, so a rebuild of the index gets them back.
SCHEMA_V9: tuple[str, ...] = (
    """ALTER TABLE "item" ADD COLUMN "rating" INTEGER NOT NULL DEFAULT 0""",
    """ALTER TABLE "item" ADD COLUMN "flags" INTEGER NOT NULL DEFAULT 0""",
    """ALTER TABLE "item" ADD COLUMN "crop" TEXT""",
)


def _migrate_v9(db: SqliteDatabase) -> None:
    if is_postgres(db):
        return _run(SCHEMA_V9)(db)
    # ADD COLUMN has no IF NOT EXISTS (see _migrate_v4): skip the columns a database has
    have = {row[1] for row in db.execute_sql('PRAGMA table_info("item")')}
    _run(tuple(s for s in SCHEMA_V9 if s.split('"')[3] not in have))(db)


# Migration 10: how a dataset's folder names its files beyond x.png + x.txt (issue 17,
# Read): the separator before an image/caption suffix ('_', '.', '-'), a folder-level
# caption file applied to every item of its folder, and the caption tables
# (metadata.jsonl, CSV/TSV) named with ``dataset add --captions-table``.
SCHEMA_V10: tuple[str, ...] = (
    """ALTER TABLE "dataset" ADD COLUMN "suffix_separator" TEXT NOT NULL DEFAULT '_'""",
    """ALTER TABLE "dataset" ADD COLUMN "folder_caption" TEXT""",
    """ALTER TABLE "dataset" ADD COLUMN "caption_tables" TEXT NOT NULL DEFAULT '[]'""",
)


def _migrate_v10(db: SqliteDatabase) -> None:
    if is_postgres(db):
        return _run(SCHEMA_V10)(db)
    # ADD COLUMN has no IF NOT EXISTS (see _migrate_v4): skip the columns a database has
    have = {row[1] for row in db.execute_sql('PRAGMA table_info("dataset")')}
    _run(tuple(s for s in SCHEMA_V10 if s.split('"')[3] not in have))(db)


# Migration 11: a dataset's folder per machine (issue 21): {hostname: path} for machines
# that mount the dataset elsewhere than root_path (/mnt/nfs/data here, /data there).
SCHEMA_V11: tuple[str, ...] = ("""ALTER TABLE "dataset" ADD COLUMN "host_roots" TEXT NOT NULL DEFAULT '{}'""",)


def _migrate_v11(db: SqliteDatabase) -> None:
    # ADD COLUMN has no IF NOT EXISTS on SQLite (see _migrate_v4); pg_form adds it there
    if not is_postgres(db) and any(row[1] == "host_roots" for row in db.execute_sql('PRAGMA table_info("dataset")')):
        return
    _run(SCHEMA_V11)(db)


# Migration 12: which items have a tag, one bit per item id (issue 24,
# sushitui.store.tag_bitmaps): pages of frequent tags that rarely occur together are
# answered from these instead of every row of the tags' index lists. Built on first use,
# forgotten by the writers that change a tag's rows.
SCHEMA_V12: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS tag_bitmap (
        norm TEXT NOT NULL PRIMARY KEY,
        first_id INTEGER NOT NULL,
        item_count INTEGER NOT NULL,
        bits BLOB NOT NULL,
        built_at REAL NOT NULL
    )""",
)


def _run(statements: tuple[str, ...], postgres: tuple[str, ...] = ()) -> Callable[[SqliteDatabase], None]:
    """Run the statements; on PostgreSQL each in its PostgreSQL form (``pg_form``) and then
    ``postgres``, the statements only PostgreSQL needs."""

    def apply(db: SqliteDatabase) -> None:
        if is_postgres(db):
            for statement in [pg_form(s) for s in statements if not _sqlite_only(s)] + list(postgres):
                db.execute_sql(statement)
            return
        for statement in statements:
            db.execute_sql(statement)

    return apply


# --- the PostgreSQL form of the migrations -------------------------------------------------
#
# The same versions run on PostgreSQL. Their DDL is SQLite's with the column types
# PostgreSQL gives the same meaning (``pg_form``): SQLite's INTEGER is 64-bit (BIGINT), an
# INTEGER PRIMARY KEY "id" numbers itself (BIGSERIAL), REAL is a double, BLOB is BYTEA,
# booleans stay 0/1 integers; WITHOUT ROWID (a storage choice) has no counterpart.
# Triggers, which PostgreSQL writes as functions, and the functions that give raw SQLite
# SQL its meaning there (sushitui.store.postgres) are spelt out below.


def is_postgres(db: object) -> bool:
    from peewee import PostgresqlDatabase

    return isinstance(db, PostgresqlDatabase)


_PG_TYPES = (
    (re.compile(r'"id" INTEGER NOT NULL PRIMARY KEY'), '"id" BIGSERIAL NOT NULL PRIMARY KEY'),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID\s*$"), ")"),
    (re.compile(r"\bADD COLUMN\b"), "ADD COLUMN IF NOT EXISTS"),
)


def pg_form(statement: str) -> str:
    for pattern, repl in _PG_TYPES:
        statement = pattern.sub(repl, statement)
    return statement


def _sqlite_only(statement: str) -> bool:
    # triggers (spelt out in PostgreSQL's form below) and SQL functions registered per connection
    return statement.lstrip().upper().startswith("CREATE TRIGGER") or "sushitui_name_key_v4" in statement


# Migration 1 on PostgreSQL also creates what SQLite has built in and sushitui's raw SQL
# uses: GLOB (operator #~#), json_each / json_extract over TEXT holding JSON.
PG_FUNCTIONS_V1: tuple[str, ...] = (
    r"""CREATE OR REPLACE FUNCTION sushitui_regex_char(ch text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN ch ~ '^[A-Za-z0-9]$' THEN ch ELSE '\' || ch END $$""",
    r"""CREATE OR REPLACE FUNCTION sushitui_glob_regex(p text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    out text := '^';
    i int := 1;
    j int;
    n int := length(p);
    c text;
    c2 text;
    hi text;
    prior text;
    cls text;
    inv boolean;
BEGIN
    WHILE i <= n LOOP
        c := substr(p, i, 1);
        IF c = '*' THEN
            out := out || '.*';
        ELSIF c = chr(63) THEN
            out := out || '.';
        ELSIF c = '[' THEN
            -- a class as SQLite's patternCompare reads it: optional ^, a leading ] is
            -- literal, x-y is a range only after a single character and before another
            -- (a reversed range adds nothing), every other character is literal
            j := i + 1;
            inv := false;
            cls := '';
            prior := NULL;
            IF j <= n AND substr(p, j, 1) = '^' THEN inv := true; j := j + 1; END IF;
            IF j <= n AND substr(p, j, 1) = ']' THEN cls := '\]'; j := j + 1; END IF;
            WHILE j <= n AND substr(p, j, 1) <> ']' LOOP
                c2 := substr(p, j, 1);
                IF c2 = '-' AND prior IS NOT NULL AND j < n AND substr(p, j + 1, 1) <> ']' THEN
                    hi := substr(p, j + 1, 1);
                    IF ascii(prior) <= ascii(hi) THEN
                        cls := cls || sushitui_regex_char(prior) || '-' || sushitui_regex_char(hi);
                    END IF;
                    prior := NULL;
                    j := j + 2;
                ELSE
                    cls := cls || sushitui_regex_char(c2);
                    prior := c2;
                    j := j + 1;
                END IF;
            END LOOP;
            IF j > n THEN
                RETURN '[^\s\S]';  -- an unclosed class matches nothing (as in SQLite)
            END IF;
            IF cls = '' THEN
                out := out || CASE WHEN inv THEN '[\s\S]' ELSE '[^\s\S]' END;
            ELSE
                out := out || '[' || CASE WHEN inv THEN '^' ELSE '' END || cls || ']';
            END IF;
            i := j;
        ELSIF strpos('.^$+(){}|\[]', c) > 0 THEN
            out := out || '\' || c;
        ELSE
            out := out || c;
        END IF;
        i := i + 1;
    END LOOP;
    RETURN out || '$';
END
$$""",
    """CREATE OR REPLACE FUNCTION sushitui_glob(s text, p text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT s ~ sushitui_glob_regex(p) $$""",
    "CREATE OPERATOR public.#~# (LEFTARG = text, RIGHTARG = text, FUNCTION = sushitui_glob)",
    # arrays: (index, element); objects: (NULL, value); a string element as its text
    """CREATE OR REPLACE FUNCTION sushitui_json_each(doc text) RETURNS TABLE (key bigint, value text)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT (e.ord - 1)::bigint, e.v #>> '{}'
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(doc::jsonb) = 'array' THEN doc::jsonb ELSE '[]'::jsonb END)
        WITH ORDINALITY AS e (v, ord)
    UNION ALL
    SELECT NULL::bigint, o.value #>> '{}'
    FROM jsonb_each(CASE WHEN jsonb_typeof(doc::jsonb) = 'object' THEN doc::jsonb ELSE '{}'::jsonb END) AS o
$$""",
    """CREATE OR REPLACE FUNCTION sushitui_json_extract(doc text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_path_query_first(doc::jsonb, path::jsonpath) #>> '{}' $$""",
)

# Migration 2's triggers as PostgreSQL writes them
PG_TRIGGERS_V2: tuple[str, ...] = (
    """CREATE OR REPLACE FUNCTION group_item_state_ad() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM group_item WHERE dataset_id = OLD.dataset_id AND group_id = OLD.group_id;
    RETURN NULL;
END
$$""",
    """CREATE OR REPLACE TRIGGER group_item_state_ad AFTER DELETE ON group_item_state
    FOR EACH ROW EXECUTE FUNCTION group_item_state_ad()""",
    """CREATE OR REPLACE FUNCTION tag_group_member_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE group_item_state SET valid = 0 WHERE group_id = OLD.group_id AND valid <> 0;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE group_item_state SET valid = 0 WHERE group_id = NEW.group_id AND valid <> 0;
    END IF;
    RETURN NULL;
END
$$""",
    """CREATE OR REPLACE TRIGGER tag_group_member_aiud AFTER INSERT OR UPDATE OR DELETE ON tag_group_member
    FOR EACH ROW EXECUTE FUNCTION tag_group_member_changed()""",
)


# (version, name, function). Append new migrations; never edit a released one.
MIGRATIONS: list[tuple[int, str, Callable[[Any], None]]] = [
    (1, "initial schema", _run(SCHEMA_V1, PG_FUNCTIONS_V1)),
    (2, "group_item: materialised group membership for group: counts", _run(SCHEMA_V2, PG_TRIGGERS_V2)),
    (3, "vlm_endpoint, vlm_cache: vision-language captioning", _run(SCHEMA_V3)),
    (4, "item.name_key: natural name order through an index", _migrate_v4),
    (5, "tag_translation: tags in the user's language", _run(SCHEMA_V5)),
    (6, "image_hash, check_finding, caption_tokens: dataset health checks", _run(SCHEMA_V6)),
    (7, "job: long jobs run by detached workers", _run(SCHEMA_V7)),
    (8, "dataset.trainer: settings read from trainer configs", _migrate_v8),
    (9, "item.rating, item.flags, item.crop: a user's marks", _migrate_v9),
    (10, "dataset.suffix_separator, folder_caption, caption_tables: more folder layouts", _migrate_v10),
    (11, "dataset.host_roots: the dataset's folder on each machine", _migrate_v11),
    (12, "tag_bitmap: which items have a tag, for pages of rare combinations", _run(SCHEMA_V12)),
]
# the highest, not the last: migrations written at the same time may be appended out of order
LATEST_VERSION = max(version for version, _name, _fn in MIGRATIONS)
