"""`sushitui autotag NAME --ray` from the command line (issue 20): a local Ray started
and stopped by the command, the same captions as a local run, and the message when the
[ray] extra is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tagger_support import make_dataset, solid, tiny_models

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _cli(db_path, env, *args):
    return subprocess.run(
        [sys.executable, "-m", "sushitui", "--db", str(db_path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


def _model_args():
    m = tiny_models()
    return ["--model-path", str(m["wd"]), "--labels", str(m["wd_csv"])]


@pytest.mark.slow
def test_cli_autotag_ray_starts_a_local_ray_tags_and_leaves_no_ray_process(db, db_path, tmp_path):
    images = {f"img{i}.png": ((RED if i % 2 else BLUE), (60 + i, 50)) for i in range(6)}
    make_dataset(tmp_path / "data", images)
    ray_tmp = Path(tempfile.mkdtemp(prefix="sr-"))  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    try:
        res = _cli(db_path, env, "autotag", "ds", *_model_args(), "--ray", "--json")
        leftover = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True).stdout.split()
        used_tmp = any(ray_tmp.iterdir())  # Ray's session lived there: the pgrep check above means something
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["tagged"] == 6 and data["inferred"] == 6 and not data["failed"]
    assert data["provider"]["description"].startswith("local Ray:")
    assert (tmp_path / "data" / "img1.txt").read_text() == "red background"
    assert (tmp_path / "data" / "img0.txt").read_text() == "blue background"
    assert used_tmp and not leftover, f"Ray processes survived the command: {leftover}"
    # the same command again: every score from the cache, so Ray is not even started
    res = _cli(db_path, env, "autotag", "ds", *_model_args(), "--ray", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["cached"] == 6 and data["inferred"] == 0 and data["provider"] is None


def test_cli_ray_without_the_extra_says_how_to_install_it(db, db_path, tmp_path):
    make_dataset(tmp_path / "data", {"a.png": (RED, (40, 40))})
    fake = tmp_path / "noray"
    fake.mkdir()
    (fake / "ray.py").write_text('raise ImportError("No module named \'ray\'", name="ray")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    res = _cli(db_path, env, "autotag", "ds", *_model_args(), "--ray")
    assert res.returncode == 1, res.stderr
    assert "pip install 'sushitui[ray]'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "data" / "a.txt").exists()


@pytest.mark.slow
def test_cli_caption_ray_writes_the_captions_through_a_local_ray(db, db_path, tmp_path, monkeypatch):
    from vlm_support import FakeVlmServer

    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.tagger import vlm

    root = tmp_path / "pics"
    for i, color in enumerate([RED, BLUE, RED]):
        solid(root / f"pic_{i}.png", color, (80, 60))
    add_dataset(DatasetSettings(name="pics", root_path=str(root)))
    template = tmp_path / "named.txt"
    template.write_text("Describe <<{name}>>.", encoding="utf-8")
    ray_tmp = Path(tempfile.mkdtemp(prefix="sr-"))
    with FakeVlmServer() as server:
        vlm.add_endpoint("one", server.base_url, model="test-vlm")
        env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
        try:
            res = _cli(db_path, env, "caption", "pics", "--template", str(template), "--ray", "--json")
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)
        sent = sorted(server.names_sent())
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["written"] == 3 and data["failed"] == 0
    assert any("caption actor(s)" in n for n in data["notes"])
    assert sent == ["pic_0", "pic_1", "pic_2"]
    assert (root / "pic_1_caption.txt").read_text(encoding="utf-8") == "A detailed photo of pic_1."
