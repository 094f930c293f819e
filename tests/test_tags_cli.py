"""The ``tag``, ``alias`` and ``group`` commands as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sushitui.cli import main
from sushitui.dataset.synthetic import png_bytes


@pytest.fixture
def cli(tmp_path, capsys):
    db = tmp_path / "cli.db"

    def run(*argv):
        code = main(["--db", str(db), *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def dataset(cli, tmp_path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i, text in enumerate(["1girl, long hair, smile", "1girl, short hair", "1boy, grin", r"^_^, kaga \(kancolle\)"]):
        (root / f"p{i}.png").write_bytes(png_bytes(8, 8, i + 1))
        (root / f"p{i}.txt").write_text(text)
    code, _, err = cli("dataset", "add", "photos", str(root))
    assert code == 0, err
    return root


@pytest.mark.slow
def test_tag_add_dry_run_then_for_real(cli, dataset):
    code, out, _ = cli("tag", "add", "photos", "--query", "1girl, -short hair", "blue eyes", "--dry-run")
    assert code == 0 and "would add 'blue eyes' to 1 of 1 matching items" in out and "p0.txt" in out
    assert (dataset / "p0.txt").read_text() == "1girl, long hair, smile"
    code, out, _ = cli("tag", "add", "photos", "-q", "1girl, -short hair", "blue eyes", "--json")
    report = json.loads(out)
    assert code == 0 and report["items_changed"] == 1 and report["files"] == ["p0.txt"]
    assert (dataset / "p0.txt").read_text() == "1girl, long hair, smile, blue eyes"


@pytest.mark.slow
def test_tag_remove_and_replace(cli, dataset):
    code, out, _ = cli("tag", "remove", "photos", "*hair")
    assert code == 0 and "from 2 of 4 matching items" in out
    assert (dataset / "p1.txt").read_text() == "1girl"
    code, out, _ = cli("tag", "replace", "photos", "grin", "smile")
    assert code == 0 and (dataset / "p2.txt").read_text() == "1boy, smile"
    assert (dataset / "p3.txt").read_text() == r"^_^, kaga \(kancolle\)"


@pytest.mark.slow
def test_tag_errors_are_clean(cli, dataset):
    code, _, err = cli("tag", "add", "photos", "-q", "1girl, (smile", "x")
    assert code == 2 and err.startswith("sushitui: error: bad --query") and "^" in err and "Traceback" not in err
    code, _, err = cli("tag", "add", "nope", "x")
    assert code == 2 and "no dataset named 'nope'" in err
    code, _, err = cli("tag", "add", "photos", "a, b")
    assert code == 2 and "not a single tag" in err
    code, _, err = cli("tag", "add", "photos", "-q", "group:Nope", "x")
    assert code == 2 and "no tag group named 'Nope'" in err


@pytest.mark.slow
def test_alias_commands(cli, dataset):
    assert cli("alias", "add", "girl", "1girl")[0] == 0
    assert cli("alias", "add", "grin", "smile")[0] == 0
    code, out, _ = cli("alias", "list", "--json")
    assert json.loads(out) == [{"from": "girl", "to": "1girl"}, {"from": "grin", "to": "smile"}]
    code, out, _ = cli("alias", "apply", "photos", "--dry-run")
    assert code == 0 and "would change 1 items" in out and "grin → smile" in out
    assert (dataset / "p2.txt").read_text() == "1boy, grin"
    code, out, _ = cli("alias", "apply", "photos")
    assert code == 0 and (dataset / "p2.txt").read_text() == "1boy, smile"
    code, _, _ = cli("tag", "add", "photos", "-q", "1boy", "girl")  # aliases apply on add
    assert (dataset / "p2.txt").read_text() == "1boy, smile, 1girl"
    assert cli("alias", "remove", "girl")[0] == 0
    code, _, err = cli("alias", "remove", "girl")
    assert code == 1 and "no alias" in err
    code, _, err = cli("alias", "add", "smile", "grin")
    assert code == 2 and "cycle" in err


@pytest.mark.slow
def test_group_commands(cli, tmp_path):
    code, out, _ = cli("group", "list", "--json")
    names = [g["name"] for g in json.loads(out)]
    assert names[:7] == ["Character", "Copyright", "Artist", "General", "Quality", "Rating", "Meta"]
    assert cli("group", "add", "Hair", "--color", "#123abc")[0] == 0
    code, out, _ = cli("group", "add-tags", "Hair", "long_hair, short hair", "bob cut")
    assert code == 0 and "3 tags added" in out
    code, out, _ = cli("group", "tags", "hair", "--json")
    assert json.loads(out) == ["bob cut", "long_hair", "short hair"]
    assert cli("group", "remove-tags", "Hair", "bob_cut")[0] == 0
    assert cli("group", "rename", "Hair", "Hairstyle")[0] == 0
    code, out, _ = cli("group", "color", "Hairstyle", "fff")
    assert code == 0 and "#FFFFFF" in out
    code, _, err = cli("group", "color", "Hairstyle", "white")
    assert code == 2 and "#RRGGBB" in err
    code, _, err = cli("group", "remove", "Hairstyle")  # not a terminal: needs --yes
    assert code == 2 and "--yes" in err
    assert cli("group", "remove", "Hairstyle", "--yes")[0] == 0
    f = tmp_path / "g.json"
    f.write_text(json.dumps({"Eyes": ["blue eyes", "red eyes"]}))
    code, out, _ = cli("group", "import", str(f))
    assert code == 0 and "1 groups created" in out and "2 tags added" in out
    code, _, err = cli("group", "tags", "Nope")
    assert code == 2 and "no tag group named 'Nope'" in err
