"""Make tests/data/v1.sqlite with the released schema-version-1 code (see README.md here).

Run against a checkout of the last commit whose store had migration 1 only, never
against the current code (that would write the current schema, not v1's):

    git worktree add /tmp/v1 e2d3dfe  # af158df^: the last commit with migration 1 only
    PYTHONPATH=/tmp/v1 python tests/data/make_v1_sqlite.py tests/data/v1.sqlite
    git worktree remove /tmp/v1

It drives that version's own CLI and core functions, so every row is one v1 wrote.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

from PIL import Image


def _image(path: Path, colour: tuple[int, int, int], size=(16, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _folder(root: Path) -> None:
    # layout A: image + tag caption, in the root and in a subfolder
    _image(root / "cat_01.png", (200, 10, 10))
    (root / "cat_01.txt").write_text("1girl, cat ears, long hair, smile\n", encoding="utf-8")
    _image(root / "cat_02.png", (10, 200, 10), size=(20, 10))
    (root / "cat_02.txt").write_text("girl, cat ears, short hair\n", encoding="utf-8")
    _image(root / "sub" / "dog_01.jpg", (10, 10, 200))
    (root / "sub" / "dog_01.txt").write_text("dog, outdoors, grass\n", encoding="utf-8")
    # layout B: main tags + alt prose
    _image(root / "sub" / "fox_01.png", (90, 90, 10))
    (root / "sub" / "fox_01_main.txt").write_text("fox, snow, night\n", encoding="utf-8")
    (root / "sub" / "fox_01_alt.txt").write_text("A red fox walking through fresh snow at night.\n", encoding="utf-8")
    # layout C: an edit pair with an instruction
    _image(root / "pair" / "p1_source.png", (1, 2, 3))
    _image(root / "pair" / "p1_target.png", (3, 2, 1))
    (root / "pair" / "p1_instruction.txt").write_text("make the background blue\n", encoding="utf-8")


def main(out: str) -> int:
    from sushitui.cli import main as cli
    from sushitui.store import db as store_db

    if store_db.LATEST_VERSION != 1:
        print(f"refusing: {store_db.__file__} is not the v1 code; run with PYTHONPATH=<v1 worktree>", file=sys.stderr)
        return 2
    out_path = Path(out).resolve()
    if out_path.exists():
        out_path.unlink()
    work = Path(tempfile.mkdtemp(prefix="sushitui-v1-"))
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")
    root = work / "cats"
    _folder(root)
    db = str(out_path)

    # the default groups, imported once per database from taglist/groups/*.json: from a
    # one-file folder here (the shipped one holds 13k tags, a 1.5 MB file)
    from sushitui.store import open_database
    from sushitui.tags.groups import ensure_default_groups

    groups = work / "taglist" / "groups"
    groups.mkdir(parents=True)
    (groups / "hair.json").write_text(json.dumps({"Hair": ["long hair", "short hair"]}), encoding="utf-8")
    open_database(db)
    assert ensure_default_groups(taglist=groups.parent) is not None

    def run(*argv: str) -> None:
        rc = cli(["--db", db, *argv])
        assert rc in (0, None), (argv, rc)

    run("dataset", "add", "cats", str(root))
    run("group", "add", "Animals", "--color", "#F4A261", "--description", "animal tags")
    run("group", "add-tags", "Animals", "cat ears, dog", "fox")
    run("alias", "add", "girl", "1girl")
    run(
        "run",
        "create",
        "cats-v1",
        "--dataset",
        "cats",
        "--model-type",
        "sdxl-lora",
        "--base-model",
        "sdxl.safetensors",
        "--epochs",
        "2",
    )
    run("run", "create", "cats-v2", "--dataset", "cats", "--parent", "cats-v1", "--epochs", "1")
    usage = work / "usage.jsonl"
    usage.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"epoch": 1, "step": 1, "ids": [1, 2]},
                {"epoch": 1, "step": 2, "images": ["sub/dog_01.jpg"]},
                {"epoch": 2, "step": 3, "ids": [1, 3]},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    run("run", "record", "cats-v1", "--from", str(usage))
    run("run", "status", "cats-v1", "completed")

    # the dictionary: a two-file taglist folder (records a dictionary_load row) and a
    # user entry; the shipped 4.5 MB taglist is not loaded, to keep the file small
    from sushitui.store.models import TaggerCache
    from sushitui.tags import dictionary

    open_database(db)
    taglist = work / "taglist"
    (taglist / "General.json").write_text(json.dumps({"long_hair": 100, "cat_ears": 50, "smile": 40}), encoding="utf-8")
    (taglist / "Meta.json").write_text(json.dumps({"highres": 900}), encoding="utf-8")
    dictionary.load_dir(taglist)
    dictionary.add_tag("my_style", category="meta", count=3, aliases="ms,mystyle", description="a user tag")
    dictionary.add_tag("old_tag", replacement="my_style")
    # a tagger cache row as the runner writes it (float32 scores of a model's labels)
    TaggerCache.create(sha256="0" * 64, model_key="wd-vit-tagger-v3@abc123", scores=b"\x00\x00\x80?" * 4)
    database = TaggerCache._meta.database.obj
    database.close()

    con = sqlite3.connect(db)  # the last connection: checkpoints the WAL into the file
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for name, n in (
        sqlite3.connect(db).execute("SELECT name, 0 FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    ):
        count = sqlite3.connect(db).execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
        print(f"{name:20} {count}")
    print(out_path, out_path.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "v1.sqlite"))
