"""``sushitui export``: the command a user types, its output and exit codes."""

from __future__ import annotations

import json
import tomllib

from export_helpers import make_synthetic

from sushitui.cli import main


def test_export_kohya_toml_json_summary(db, db_path, tmp_path, capsys):
    make_synthetic(tmp_path, 30)
    out = tmp_path / "out"
    code = main(
        [
            "--db",
            str(db_path),
            "export",
            "syn",
            str(out),
            "--format",
            "kohya-toml",
            "--trigger",
            "ohwx",
            "--repeats",
            "4",
            "--underscores-to-spaces",
            "--copy",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items_exported"] == 30 and report["images_copied"] == 30
    assert report["config_files"] == ["dataset.toml"] and report["files_per_s"] > 0
    doc = tomllib.loads((out / "dataset.toml").read_text())
    assert {s["num_repeats"] for s in doc["datasets"][0]["subsets"]} == {4}
    assert doc["general"]["keep_tokens"] == 1


def test_export_human_summary_and_query(db, db_path, tmp_path, capsys):
    make_synthetic(tmp_path, 30)
    code = main(["--db", str(db_path), "export", "syn", str(tmp_path / "out"), "-q", "1girl"])
    assert code == 0
    text = capsys.readouterr().out
    assert "exported" in text and "as txt" in text and "hard-linked" in text


def test_errors_exit_non_zero_without_traceback(db, db_path, tmp_path, capsys):
    make_synthetic(tmp_path, 5)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert main(["--db", str(db_path), "export", "syn", str(busy)]) == 2
    assert main(["--db", str(db_path), "export", "nope", str(tmp_path / "o")]) == 2
    assert main(["--db", str(db_path), "export", "syn", str(tmp_path / "o2"), "-q", "1girl,,"]) == 2
    assert main(["--db", str(db_path), "export", "syn", str(tmp_path / "o3"), "--exclude-groups", "NoSuchGroup"]) == 2
    err = capsys.readouterr().err
    assert err.count("sushitui: error:") == 4 and "Traceback" not in err
    assert "not empty" in err and "bad query" in err and "unknown tag group" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()
