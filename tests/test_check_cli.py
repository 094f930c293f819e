"""sushitui check end to end: a dataset on disk, the --json report, duplicates across
datasets, the stored findings behind check:/dup:, and tokens:/chars: in queries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sushitui.cli import main


def _picture(seed: int, size=(1024, 1024)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


LONG = ", ".join(f"tag number {i}" for i in range(40))


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    _picture(1).save(root / "square.png")
    (root / "square.txt").write_text("ohwx, 1girl, smile")
    _picture(2, (300, 200)).save(root / "tiny.png")  # upscaled 3.5x, its own bucket
    (root / "tiny.txt").write_text("ohwx, (smile")
    _picture(1).save(root / "copy.png")  # the same bytes as square.png
    (root / "copy.txt").write_text("ohwx, 1girl")
    _picture(1).resize((1000, 1000)).resize((1024, 1024)).save(root / "near.png")  # same picture, other bytes
    (root / "near.txt").write_text(f"ohwx, {LONG}")
    _picture(3).save(root / "other.png")
    (root / "other.txt").write_text("ohwx")
    _picture(4).save(root / "nocap.png")
    other = tmp_path / "elsewhere"
    other.mkdir()
    _picture(3).save(other / "dup_of_other.png")  # the same bytes as set/other.png, another dataset
    return root, other


@pytest.mark.slow
def test_check_json_report(capsys, tmp_path, dataset):
    root, other = dataset
    db = str(tmp_path / "db.sqlite")
    assert _run(capsys, "--db", db, "dataset", "add", "set", str(root))[0] == 0
    assert _run(capsys, "--db", db, "dataset", "add", "elsewhere", str(other))[0] == 0
    code, out, err = _run(capsys, "--db", db, "check", "set", "--json", "--batch-size", "2")
    assert code == 1, err  # nocap has no caption: an error
    report = json.loads(out)
    by_name = {f["name"]: {x["code"] for x in f["findings"]} for f in report["findings"]}
    assert report["trainer"] == "kohya" and report["items"] == 6
    assert report["trigger"] == "ohwx"  # every caption starts with it
    assert {"upscaled", "small_image", "small_bucket", "unbalanced"} <= by_name["tiny"]
    assert "missing_caption" in by_name["nocap"]
    assert "trigger_only" in by_name["other"]
    assert "exact_duplicate" in by_name["square"] and "exact_duplicate" in by_name["copy"]
    assert "exact_duplicate" in by_name["other"]  # its twin is in the other dataset
    assert "near_duplicate" in by_name["near"]
    assert "clip_tokens" in by_name["near"]
    tiny = next(f for f in report["findings"] if f["name"] == "tiny")
    assert tiny["bucket"] == [1024, 704] and tiny["scale"] == pytest.approx(3.52)
    assert {"bucket": [1024, 704], "images": 1} in report["buckets"]
    assert any(sorted(g) == ["elsewhere:dup_of_other", "set:other"] for g in report["exact_duplicates"])
    near_ids = [g for g in report["near_duplicates"]]
    assert len(near_ids) == 1 and len(near_ids[0]) == 3  # square, copy (same bytes) and near
    assert all("fix" in x for f in report["findings"] for x in f["findings"])

    # the text form: summary, histogram bars with counts, findings with fixes
    code, out, _ = _run(capsys, "--db", db, "check", "set", "--batch-size", "2")
    assert "buckets (" in out and "█" in out and "< batch" in out
    assert "fix:" in out and "missing_caption" in out

    # the stored findings and the new query fields
    def names(query):
        code, out, err = _run(capsys, "--db", db, "items", "set", "--json", f"--query={query}")
        assert code == 0, err
        return sorted(json.loads(line)["base_name"] for line in out.splitlines() if line.strip())

    assert names("check:upscaled") == ["tiny"]
    assert names("check:small_bucket") == ["tiny"]
    assert names("check:missing_*") == ["nocap"]
    assert names("check:error") == ["nocap"]
    assert names("-check:any") == []  # every item has some finding here
    assert names("dup:exact") == ["copy", "other", "square"]
    assert names("dup:near") == ["copy", "near", "square"]
    assert names("dup:") == ["copy", "near", "other", "square"]
    assert names("tokens:>75") == ["near"]
    assert names("tokens:<4") == ["other"]  # "ohwx" is 3 CLIP tokens
    assert names("chars:>300") == ["near"]
    assert names("t5tokens:>100") == ["near"]

    # another trainer: other buckets, and the stored findings follow the last check
    code, out, _ = _run(
        capsys, "--db", db, "check", "set", "--json", "--trainer", "diffusion-pipe", "--resolution", "512"
    )
    report = json.loads(out)
    assert report["trainer"] == "diffusion-pipe"
    assert report["buckets"] == [{"bucket": [512, 512], "images": 5}, {"bucket": [640, 400], "images": 1}]
    assert names("check:small_bucket") == []  # batch size 1 this time: the last check counts


@pytest.mark.slow
def test_bad_arguments_are_messages(capsys, tmp_path, dataset):
    root, _ = dataset
    db = str(tmp_path / "db.sqlite")
    _run(capsys, "--db", db, "dataset", "add", "set", str(root))
    code, _, err = _run(capsys, "--db", db, "check", "nope")
    assert code == 1 and "nope" in err
    code, _, err = _run(capsys, "--db", db, "check", "set", "--resolution", "2048")
    assert code == 2 and "max_bucket_reso" in err
    code, _, err = _run(capsys, "--db", db, "items", "set", "--query", "dup:maybe")
    assert code != 0 and "dup:exact" in err
