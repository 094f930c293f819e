"""``sushitui dataset ...`` and ``sushitui items`` driven through ``sushitui.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sushitui.cli import main
from sushitui.dataset.synthetic import png_bytes


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    for i, (w, h) in enumerate([(10, 20), (30, 5), (16, 16)]):
        write(root / f"p{i}.png", png_bytes(w, h, i))
        write(root / f"p{i}.txt", ", ".join(["1girl", "solo", "smile"][: i + 1]))
    write(root / "g_source.png", png_bytes(8, 8, 10))
    write(root / "g_target.png", png_bytes(12, 8, 11))
    write(root / "g_instruction.txt", "Make it blue.")
    write(root / "broken.png", b"\x89PNG\r\n\x1a\nnope")
    return root


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_add_list_show_items_reindex_remove(capsys, tmp_path, folder):
    db = str(tmp_path / "t.db")
    code, out, err = run(capsys, "--db", db, "dataset", "add", "photos", str(folder))
    assert code == 0, err
    assert "registered 'photos': 4 items" in out
    assert "broken.png" in out  # the problem is printed with its reason

    code, out, _ = run(capsys, "dataset", "list", "--db", db)
    assert code == 0 and "photos" in out and str(folder) in out
    code, out, _ = run(capsys, "dataset", "list", "--json", "--db", db)
    listed = json.loads(out)
    assert listed[0]["name"] == "photos" and listed[0]["total_items"] == 4 and listed[0]["total_images"] == 5

    code, out, _ = run(capsys, "dataset", "show", "photos", "--db", db)
    assert code == 0 and "problems (1)" in out and "broken.png" in out and "4 (5 images, 4 captions)" in out
    code, out, _ = run(capsys, "dataset", "show", "photos", "--json", "--db", db)
    shown = json.loads(out)
    assert shown["last_scan_report"]["problems"][0]["path"] == "broken.png"

    code, out, _ = run(capsys, "items", "photos", "--json", "--db", db)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["base_name"] for r in rows] == ["g", "p0", "p1", "p2"]
    assert set(rows[0]) >= {
        "id",
        "type",
        "base_name",
        "image",
        "related_images",
        "width",
        "height",
        "file_size",
        "sha256",
        "captions",
        "tags",
    }
    assert rows[0]["type"] == "group" and rows[0]["related_images"] == {
        "source": "g_source.png",
        "target": "g_target.png",
    }
    assert rows[3]["tags"][2] == {
        "tag": "smile",
        "position": 2,
        "subtype": "main",
        "source": "txt_file",
        "confidence": None,
    }

    code, out, _ = run(capsys, "items", "photos", "--json", "--sort", "width", "--desc", "--limit", "2", "--db", db)
    assert [json.loads(line)["base_name"] for line in out.splitlines()] == ["p1", "p2"]
    code, out, _ = run(
        capsys, "items", "photos", "--sort", "tags", "--desc", "--offset", "1", "--limit", "1", "--db", db
    )
    assert "p1.png" in out and "1girl, solo" in out

    write(folder / "p3.png", png_bytes(4, 4, 3))
    code, out, _ = run(capsys, "dataset", "reindex", "photos", "--json", "--db", db)
    result = json.loads(out)
    assert result["report"]["items_added"] == 1 and result["report"]["items_unchanged"] == 4
    assert result["dataset"]["total_items"] == 5

    code, out, err = run(capsys, "dataset", "remove", "photos", "--yes", "--db", db)
    assert code == 0 and "files in" in out and "were not touched" in out
    assert (folder / "p0.png").exists()
    code, out, _ = run(capsys, "dataset", "list", "--json", "--db", db)
    assert json.loads(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "file", "duplicate", "empty-name", "too-long"])
def test_add_errors_register_nothing(capsys, tmp_path, folder, case):
    db = str(tmp_path / "t.db")
    assert run(capsys, "--db", db, "dataset", "add", "first", str(folder))[0] == 0
    args = {
        "missing": ("new", str(tmp_path / "nope")),
        "file": ("new", str(folder / "p0.png")),
        "duplicate": ("first", str(folder)),
        "empty-name": ("  ", str(folder)),
        "too-long": ("x" * 101, str(folder)),
    }[case]
    code, out, err = run(capsys, "--db", db, "dataset", "add", *args)
    assert code != 0
    assert err.startswith("sushitui: error: ")
    assert "Traceback" not in err
    expected = {
        "missing": "does not exist",
        "file": "is a file",
        "duplicate": "already exists",
        "empty-name": "name is empty",
        "too-long": "at most 100",
    }[case]
    assert expected in err
    code, out, _ = run(capsys, "--db", db, "dataset", "list", "--json")
    assert [d["name"] for d in json.loads(out)] == ["first"]


@pytest.mark.slow
def test_unknown_dataset_and_bad_db(capsys, tmp_path):
    db = str(tmp_path / "t.db")
    code, _, err = run(capsys, "--db", db, "items", "nope")
    assert code != 0 and "no dataset named 'nope'" in err
    code, _, err = run(capsys, "--db", db, "dataset", "show", "nope")
    assert code != 0 and "no dataset named" in err
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("hello, I am not a database")
    code, _, err = run(capsys, "--db", str(not_sqlite), "dataset", "list")
    assert code != 0 and "not a SQLite database" in err


@pytest.mark.slow
def test_remove_without_yes_when_piped_refuses(capsys, tmp_path, folder, monkeypatch):
    db = str(tmp_path / "t.db")
    run(capsys, "--db", db, "dataset", "add", "d", str(folder))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, _, err = run(capsys, "--db", db, "dataset", "remove", "d")
    assert code != 0 and "--yes" in err
    code, out, _ = run(capsys, "--db", db, "dataset", "list", "--json")
    assert len(json.loads(out)) == 1


@pytest.mark.slow
def test_add_options_are_stored(capsys, tmp_path, folder):
    db = str(tmp_path / "t.db")
    code, out, err = run(
        capsys,
        "--db",
        db,
        "dataset",
        "add",
        "opts",
        str(folder),
        "--type",
        "single",
        "--caption-suffixes",
        "main,alt",
        "--image-suffixes",
        "before,after",
        "--no-recursive",
        "--max-depth",
        "2",
        "--exif",
        "--caption-type",
        "alt=natural_language",
        "--json",
    )
    assert code == 0, err
    d = json.loads(out)["dataset"]
    assert (d["type"], d["caption_suffixes"], d["image_suffixes"], d["recursive"], d["max_depth"], d["read_exif"]) == (
        "single",
        ["main", "alt"],
        ["before", "after"],
        False,
        2,
        True,
    )
    assert d["caption_types"] == {"alt": "natural_language"}


@pytest.mark.slow
def test_items_query_errors_are_clear(capsys, tmp_path, folder):
    db = str(tmp_path / "t.db")
    run(capsys, "--db", db, "dataset", "add", "q", str(folder))
    code, out, err = run(capsys, "--db", db, "items", "q", "--query", "smile", "--json")
    assert code == 0, err
    assert [json.loads(line)["base_name"] for line in out.splitlines()] == ["p2"]
    code, out, err = run(capsys, "--db", db, "items", "q", "--query", "(smile", "--json")
    assert code != 0 and err.startswith("sushitui: error: ") and "position" in err


@pytest.mark.slow
def test_ctrl_c_during_scan_keeps_what_was_indexed(capsys, tmp_path, monkeypatch):
    """The first Ctrl-C cancels: the command exits 130, says so, and the items indexed
    before it stay registered (reindex finishes the job)."""
    import os
    import signal

    import sushitui.dataset.scanner as scanner
    from sushitui.cli import common
    from sushitui.dataset.synthetic import generate_dataset

    generate_dataset(tmp_path / "many", 50, seed=5, nested=False)
    monkeypatch.setattr(scanner, "BATCH", 10)
    monkeypatch.setattr(scanner, "Throttle", lambda cb, interval=0.1: lambda ev, force=False: cb and cb(ev))

    class CtrlCAfterFirstBatch(common.TerminalProgress):
        def __call__(self, ev):
            if ev.phase == "indexing" and ev.done >= 10:
                os.kill(os.getpid(), signal.SIGINT)

    import sushitui.cli.dataset_cmd as dataset_cmd

    monkeypatch.setattr(dataset_cmd, "TerminalProgress", CtrlCAfterFirstBatch)
    db = str(tmp_path / "t.db")
    code, out, err = run(capsys, "--db", db, "dataset", "add", "many", str(tmp_path / "many"))
    assert code == 130
    assert "cancelled" in out and "reindex many" in out
    assert "cancelling" in err
    code, out, _ = run(capsys, "--db", db, "dataset", "list", "--json")
    first = json.loads(out)[0]["total_items"]
    assert 10 <= first < 50
    monkeypatch.setattr(dataset_cmd, "TerminalProgress", common.TerminalProgress)
    code, out, _ = run(capsys, "--db", db, "dataset", "reindex", "many", "--json")
    assert code == 0 and json.loads(out)["dataset"]["total_items"] == 50
