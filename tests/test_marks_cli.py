"""``sushitui rate`` / ``flag`` / ``crop`` from a shell, and exports leaving ``exclude`` out."""

from __future__ import annotations

import json

import pytest

from sushitui.dataset.synthetic import png_bytes


@pytest.fixture
def env(tmp_path, monkeypatch, capsys, started_database):
    from sushitui.cli import main

    root = tmp_path / "pics"
    for i, name in enumerate(("a", "b", "sub/c", "sub/d")):
        path = root / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(64, 48, seed=i))
        path.with_suffix(".txt").write_text(f"tag_{name[-1]}, common", encoding="utf-8")
    # these test commands, not a first start
    monkeypatch.setenv("SUSHITUI_DB", str(started_database(tmp_path / "db.sqlite")))
    assert main(["dataset", "add", "pics", str(root)]) == 0
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    run.root = root
    return run


def _names(run, query: str) -> list[str]:
    code, out, _ = run("items", "pics", "--query", query, "--json")
    assert code == 0
    return sorted(json.loads(line)["image"].rsplit(".", 1)[0] for line in out.splitlines())


def test_rate_by_name_path_and_query(env):
    code, out, _ = env("rate", "pics", "a", str(env.root / "sub" / "c.png"), "4")
    assert code == 0 and "★★★★☆" in out and "2 item(s)" in out and "marks.json" in out
    assert _names(env, "rating:>=4") == ["a", "sub/c"]
    assert env("rate", "pics", "--query", "tag_d", "2")[0] == 0
    assert _names(env, "rating:2") == ["sub/d"]
    code, out, _ = env("rate", "pics", "a", "4")
    assert "1 of 1 had it already" in out


def test_flag_sets_and_minus_flag_clears(env):
    assert env("flag", "pics", "a", "b", "exclude")[0] == 0
    assert _names(env, "flag:exclude") == ["a", "b"]
    code, out, _ = env("flag", "pics", "a", "-exclude")
    assert code == 0 and "cleared exclude" in out
    assert _names(env, "flag:exclude") == ["b"]
    assert env("flag", "pics", "--query", "tag_c | tag_d", "needs_work")[0] == 0
    assert _names(env, "flag:needs-work") == ["sub/c", "sub/d"]
    code, out, _ = env("flag", "pics", "--json", "--query", "flag:needs-work", "--", "-needs-work")
    assert code == 0 and json.loads(out)["changes"] == [{"flag": "needs-work", "set": False, "changed": 2}]


def test_bad_input_is_one_line_that_says_what_to_do(env):
    code, _, err = env("rate", "pics", "a", "6")
    assert code == 2 and "0 to 5" in err
    code, _, err = env("flag", "pics", "a", "shiny")
    assert code == 2 and "exclude, needs-work, reg" in err
    code, _, err = env("rate", "pics", "nope", "a", "3")
    assert code == 1 and "no item 'nope'" in err and "nothing was changed" in err
    assert _names(env, "rating:3") == []  # nothing half-done
    code, _, err = env("crop", "pics", "a", "0,0,100,100")
    assert code == 1 and "reaches past the image (64×48)" in err


def test_crop_set_and_clear(env):
    assert env("crop", "pics", "b", "8,8,32,24")[0] == 0
    doc = json.loads((env.root / ".sushitui" / "marks.json").read_text("utf-8"))
    assert doc["items"]["b"] == {"crop": [8, 8, 32, 24]}
    assert env("crop", "pics", "b", "--clear")[0] == 0
    doc = json.loads((env.root / ".sushitui" / "marks.json").read_text("utf-8"))
    assert "b" not in doc["items"]


def test_export_leaves_excluded_items_out_unless_asked(env, tmp_path):
    assert env("flag", "pics", "b", "sub/d", "exclude")[0] == 0
    out_dir = tmp_path / "out"
    assert env("export", "pics", str(out_dir))[0] == 0
    exported = sorted(p.name for p in out_dir.rglob("*.png"))
    assert exported == ["a.png", "c.png"]
    all_dir = tmp_path / "all"
    assert env("export", "pics", str(all_dir), "--include-excluded")[0] == 0
    assert sorted(p.name for p in all_dir.rglob("*.png")) == ["a.png", "b.png", "c.png", "d.png"]


def test_rebuild_from_the_files_keeps_cli_marks(env):
    env("rate", "pics", "a", "5")
    env("flag", "pics", "sub/c", "reg")
    assert env("dataset", "remove", "pics", "--yes")[0] == 0
    assert env("dataset", "add", "pics", str(env.root))[0] == 0
    assert _names(env, "rating:5") == ["a"]
    assert _names(env, "flag:reg") == ["sub/c"]


def test_export_writes_the_cropped_image_and_keeps_the_original(env, tmp_path):
    from PIL import Image

    original = (env.root / "a.png").read_bytes()
    assert env("crop", "pics", "a", "8,4,40,30")[0] == 0
    out_dir = tmp_path / "out"
    assert env("export", "pics", str(out_dir), "--copy")[0] == 0
    [exported] = [p for p in out_dir.rglob("a.png")]
    with Image.open(exported) as img, Image.open(env.root / "a.png") as src:
        assert img.size == (40, 30)
        assert img.convert("RGB").getpixel((0, 0)) == src.convert("RGB").getpixel((8, 4))
    assert (env.root / "a.png").read_bytes() == original  # never modified
    [caption] = [p for p in out_dir.rglob("a.txt")]
    assert caption.read_text("utf-8").startswith("tag_a")
    [other] = [p for p in out_dir.rglob("b.png")]
    with Image.open(other) as img:
        assert img.size == (64, 48)  # uncropped items as they were
