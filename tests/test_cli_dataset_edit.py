"""``sushitui dataset edit NAME ...``: the CLI face of the datasets screen's "edit
settings", driven through ``sushitui.cli.main``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from sushitui.cli import main


def image(path: Path, size=(8, 8), color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def text(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two images with `.txt` captions, plus `_notes` caption files that the default
    caption suffixes do not know (they read as captions without an image)."""
    root = tmp_path / "cats"
    image(root / "a.png", (8, 8))
    text(root / "a.txt", "cat, sitting")
    text(root / "a_notes.txt", "a ginger cat on a sofa")
    image(root / "b.png", (12, 6), (10, 10, 200))
    text(root / "b.txt", "cat, sleeping")
    text(root / "b_notes.txt", "a black cat asleep")
    image(root / "sub" / "c.png", (4, 4))
    text(root / "sub" / "c.txt", "cat")
    return root


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli(capsys, tmp_path, folder, started_database):
    db = str(started_database(tmp_path / "t.db"))  # these test commands, not a first start

    def call(*argv):
        return run(capsys, "--db", db, *argv)

    code, _, err = call("dataset", "add", "cats", str(folder))
    assert code == 0, err
    return call


def show(cli, name: str) -> dict:
    code, out, err = cli("dataset", "show", name, "--json")
    assert code == 0, err
    return json.loads(out)


def names(cli) -> list[str]:
    code, out, _ = cli("dataset", "list", "--json")
    return [d["name"] for d in json.loads(out)]


def caption_subtypes(cli, name: str) -> dict[str, list[str]]:
    code, out, err = cli("items", name, "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    return {r["base_name"]: sorted(c["subtype"] for c in r["captions"]) for r in rows}


def test_rename_keeps_items_and_needs_no_full_reindex(cli):
    before = show(cli, "cats")
    code, out, err = cli("dataset", "edit", "cats", "--name", "kittens")
    assert code == 0, err
    assert "name: 'cats' → 'kittens'" in out
    assert "reindex" not in out  # reading is unaffected: no re-read suggested
    assert names(cli) == ["kittens"]
    after = show(cli, "kittens")
    assert after["id"] == before["id"] and after["total_items"] == before["total_items"] == 3
    assert not (after["last_scan_report"] or {}).get("needs_full")
    code, _, err = cli("dataset", "show", "cats")
    assert code != 0 and "no dataset named 'cats'" in err


def test_caption_suffixes_then_reindex_reads_the_new_caption_files(cli):
    assert caption_subtypes(cli, "cats")["a"] == ["main"]
    code, out, err = cli("dataset", "edit", "cats", "--caption-suffixes", "main,notes")
    assert code == 0, err
    assert "caption suffixes: main, alt, instruction, caption, tags, description → main, notes" in out
    assert "re-reads every file" in out and "sushitui dataset reindex cats" in out
    # saved, not yet read
    assert show(cli, "cats")["caption_suffixes"] == ["main", "notes"]
    assert caption_subtypes(cli, "cats")["a"] == ["main"]

    code, out, err = cli("dataset", "reindex", "cats", "--json")
    assert code == 0, err
    assert caption_subtypes(cli, "cats") == {"a": ["main", "notes"], "b": ["main", "notes"], "c": ["main"]}
    code, out, _ = cli("items", "cats", "--json")
    a = next(json.loads(line) for line in out.splitlines() if json.loads(line)["base_name"] == "a")
    assert {c["subtype"]: c["content"] for c in a["captions"]}["notes"] == "a ginger cat on a sofa"


def test_json_shape(cli):
    code, out, err = cli(
        "dataset",
        "edit",
        "cats",
        "--name",
        "felines",
        "--no-recursive",
        "--max-depth",
        "0",
        "--caption-type",
        "main=tags",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"dataset", "changed", "needs_full_reindex", "reindex"}
    assert result["dataset"]["name"] == "felines"
    assert result["dataset"]["recursive"] is False and result["dataset"]["max_depth"] == 0
    assert result["changed"] == {
        "name": ["cats", "felines"],
        "recursive": [True, False],
        "max_depth": [None, 0],
        "caption_types": [{}, {"main": "tags"}],
    }
    assert result["needs_full_reindex"] is True  # caption types change how captions are read
    assert result["reindex"] is None
    # options not given are kept
    assert result["dataset"]["caption_suffixes"] == show(cli, "felines")["caption_suffixes"]
    assert result["dataset"]["type"] == "auto"


def test_negated_options_reset_settings(cli):
    assert cli("dataset", "edit", "cats", "--max-depth", "1", "--exif", "--caption-type", "main=tags")[0] == 0
    code, out, err = cli(
        "dataset", "edit", "cats", "--no-max-depth", "--no-exif", "--no-caption-types", "--recursive", "--json"
    )
    assert code == 0, err
    changed = json.loads(out)["changed"]
    assert changed == {"max_depth": [1, None], "read_exif": [True, False], "caption_types": [{"main": "tags"}, {}]}
    d = show(cli, "cats")
    assert (d["max_depth"], d["read_exif"], d["caption_types"], d["recursive"]) == (None, False, {}, True)


def test_no_change_options_is_a_usage_error(cli):
    code, out, err = cli("dataset", "edit", "cats")
    assert code == 2
    assert err.startswith("sushitui: error: nothing to change for 'cats'")
    for flag in ("--name", "--path", "--caption-suffixes", "--exif/--no-exif", "--max-depth"):
        assert flag in err
    assert out == ""
    # --reindex and --json alone change nothing either
    assert cli("dataset", "edit", "cats", "--reindex", "--json")[0] == 2


def test_same_value_reports_nothing_changed(cli):
    code, out, err = cli("dataset", "edit", "cats", "--type", "auto")
    assert code == 0, err
    assert "nothing changed" in out
    assert not (show(cli, "cats")["last_scan_report"] or {}).get("needs_full")


@pytest.mark.slow
def test_unknown_dataset(cli):
    code, out, err = cli("dataset", "edit", "dogs", "--name", "puppies")
    assert code == 1
    assert "no dataset named 'dogs'" in err and "dataset list" in err
    assert "Traceback" not in err
    assert names(cli) == ["cats"]


@pytest.mark.slow
def test_name_clash_changes_nothing(cli, folder):
    assert cli("dataset", "add", "dogs", str(folder))[0] == 0
    before = show(cli, "dogs")
    code, out, err = cli("dataset", "edit", "dogs", "--name", "cats", "--caption-suffixes", "main,notes")
    assert code == 1
    assert "a dataset named 'cats' already exists" in err and "pick another name" in err
    after = show(cli, "dogs")
    assert after["caption_suffixes"] == before["caption_suffixes"]
    assert names(cli) == ["cats", "dogs"]


def test_missing_folder_changes_nothing(cli, tmp_path):
    before = show(cli, "cats")
    code, out, err = cli("dataset", "edit", "cats", "--path", str(tmp_path / "moved"), "--type", "single")
    assert code == 1
    assert "does not exist" in err and str(tmp_path / "moved") in err
    after = show(cli, "cats")
    assert (after["root_path"], after["type"]) == (before["root_path"], before["type"])


def test_bad_suffix_list_names_the_field(cli):
    code, out, err = cli("dataset", "edit", "cats", "--image-suffixes", "source,tar get")
    assert code == 1
    assert "image suffix 'tar get'" in err and "letters, digits and '-'" in err
    code, out, err = cli("dataset", "edit", "cats", "--caption-suffixes", "main,target")
    assert code == 1 and "'target' is both an image and a caption suffix" in err
    assert show(cli, "cats")["image_suffixes"] == ["source", "target", "cref", "mask"]


def test_moved_folder_then_reindex_option(cli, folder, tmp_path):
    moved = tmp_path / "moved"
    folder.rename(moved)
    code, out, err = cli("dataset", "edit", "cats", "--path", str(moved), "--reindex")
    assert code == 0, err
    assert f"path: {folder} → {moved}" in out
    assert "reindexed" in out and "3 items" in out
    assert show(cli, "cats")["root_path"] == str(moved)


def test_needs_full_is_flagged_and_reindex_option_performs_it(cli):
    code, out, err = cli("dataset", "edit", "cats", "--caption-suffixes", "main,notes", "--reindex", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["needs_full_reindex"] is True
    report = result["reindex"]
    assert report is not None and report["cancelled"] is False
    assert report["items_total"] == 3 and report["items_unchanged"] == 0  # every item re-read
    assert result["dataset"]["total_captions"] == 5
    assert caption_subtypes(cli, "cats")["b"] == ["main", "notes"]
    assert not show(cli, "cats")["last_scan_report"].get("needs_full")

    # human output says it re-read everything
    code, out, err = cli("dataset", "edit", "cats", "--caption-suffixes", "main", "--reindex")
    assert code == 0, err
    assert "reindexed (every file re-read) 'cats': 3 items" in out
    assert caption_subtypes(cli, "cats")["b"] == ["main"]


def test_terminal_output_neutralises_control_characters(cli, folder, tmp_path, monkeypatch):
    evil = tmp_path / "evil\x1b]0;pwned\x07"
    folder.rename(evil)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = cli("dataset", "edit", "cats", "--path", str(evil))
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b]0;pwned\\x07" in out


def test_primary_suffix_must_be_an_image_suffix(cli):
    code, out, err = cli("dataset", "edit", "cats", "--primary-suffix", "after")
    assert code == 1
    assert "primary suffix 'after' is not one of the image suffixes (source, target, cref, mask)" in err
    assert show(cli, "cats")["primary_suffix"] == "target"
    code, out, err = cli("dataset", "edit", "cats", "--image-suffixes", "before,after", "--primary-suffix", "after")
    assert code == 0, err
    assert show(cli, "cats")["primary_suffix"] == "after"
