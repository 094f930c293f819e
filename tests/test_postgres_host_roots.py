"""A dataset's folder per machine (``dataset edit NAME --host-root HOST=PATH``): one
catalogue serves machines that mount the dataset in different places."""

from __future__ import annotations

import json

from dict_helpers import make_dataset
from pg_support import both_backends_db_path  # noqa: F401  (each test on SQLite and PostgreSQL)

from sushitui.cli import main as cli_main
from sushitui.dataset.registry import get_dataset, update_settings


def test_each_host_reads_and_edits_the_dataset_in_its_own_folder(db, db_path, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("SUSHITUI_HOST", "node-a")
    ds = make_dataset(tmp_path / "nfs" / "data", "shared", ["cat", "dog"])
    # node-b mounts the same files at another path
    shutil.copytree(tmp_path / "nfs" / "data", tmp_path / "data")
    monkeypatch.setenv("SUSHITUI_HOST", "node-b")
    assert get_dataset("shared").root_path == str(tmp_path / "nfs" / "data")  # no entry yet: the stored folder
    code = cli_main(["--db", str(db_path), "dataset", "edit", "shared", "--host-root", f"node-b={tmp_path / 'data'}"])
    assert code == 0, capsys.readouterr().err
    assert "node-b: " in capsys.readouterr().out

    assert get_dataset("shared").root_path == str(tmp_path / "data")
    assert cli_main(["--db", str(db_path), "items", "shared", "--json"]) == 0
    assert {json.loads(line)["image"] for line in capsys.readouterr().out.splitlines()} == {
        "img_000.png",
        "img_001.png",
    }
    # a caption edit on node-b writes node-b's copy, through the usual path
    assert cli_main(["--db", str(db_path), "tag", "add", "shared", "solo", "--query", "cat"]) == 0
    capsys.readouterr()
    assert (tmp_path / "data" / "img_000.txt").read_text(encoding="utf-8") == "cat, solo"
    assert (tmp_path / "nfs" / "data" / "img_000.txt").read_text(encoding="utf-8") == "cat"

    # a settings edit on node-b keeps node-a's folder
    update_settings("shared", recursive=False)
    monkeypatch.setenv("SUSHITUI_HOST", "node-a")
    assert get_dataset("shared").root_path == str(tmp_path / "nfs" / "data")
    assert get_dataset(ds.id).host_roots == {"node-b": str(tmp_path / "data")}

    # HOST= removes the entry
    assert cli_main(["--db", str(db_path), "dataset", "edit", "shared", "--host-root", "node-b=", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"]["host_roots"] == {}


def test_bad_host_roots_are_clear_errors(db, db_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUSHITUI_HOST", "here")
    make_dataset(tmp_path / "ds", "d", ["cat"])
    base = ["--db", str(db_path), "dataset", "edit", "d", "--host-root"]
    assert cli_main([*base, "no-equals-sign"]) == 2
    assert "HOST=PATH" in capsys.readouterr().err
    assert cli_main([*base, "here=relative/dir"]) != 0
    assert "absolute path" in capsys.readouterr().err
    assert cli_main([*base, f"here={tmp_path / 'missing'}"]) != 0
    assert "no such folder on this machine" in capsys.readouterr().err
    # another machine's folder need not exist here
    assert cli_main([*base, "elsewhere=/mnt/nowhere"]) == 0
