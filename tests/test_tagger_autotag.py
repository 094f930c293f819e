"""autotag() end to end on tiny models and real image files: captions written through
the one write path, cache hits, threshold re-filtering, modes, failures, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from tagger_support import make_dataset, make_fake_hf_cache, tiny_models

from sushitui.dataset.captions import item_tags, set_tags
from sushitui.progress import CancelToken
from sushitui.store import Caption, DictionaryTag, Item, ItemTag, TaggerCache
from sushitui.tagger.autotag import AutotagError, autotag
from sushitui.tagger.runner import Runner

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255, 255), (0, 255, 0)


def wd_opts(**kw):
    m = tiny_models()
    return {"model_path": str(m["wd"]), "labels_path": str(m["wd_csv"]), "workers": 0, **kw}


class Counting:
    """runner_factory that records every Runner built (model loads) and their runs."""

    def __init__(
        self, fail_on_run: int | None = None, cancel: CancelToken | None = None, cancel_after: int | None = None
    ):
        self.runners: list[Runner] = []
        self.fail_on_run, self.cancel, self.cancel_after = fail_on_run, cancel, cancel_after

    def __call__(self, *a, **kw):
        r = Runner(*a, **kw)
        real = r.predict
        outer = self

        def predict(x, **kw):
            if outer.fail_on_run is not None and r.runs + 1 >= outer.fail_on_run:
                raise KeyboardInterrupt("simulated kill during inference")
            out = real(x, **kw)
            if outer.cancel_after is not None and r.runs >= outer.cancel_after:
                outer.cancel.cancel()
            return out

        r.predict = predict
        self.runners.append(r)
        return r

    @property
    def runs(self) -> int:
        return sum(r.runs for r in self.runners)


@pytest.fixture
def ds(db, tmp_path):
    return make_dataset(
        tmp_path / "data",
        {
            "red.png": (RED, (300, 200)),
            "blue.png": (BLUE, (200, 300)),
            "sub/red2.jpg": (RED, (120, 160)),
            "broken.jpg": None,
        },
    )


def test_captions_written_with_auto_source_and_confidence(ds, tmp_path):
    dataset, items = ds
    report = autotag(dataset.name, **wd_opts())
    root = tmp_path / "data"
    assert (root / "red.txt").read_text() == "red background"
    assert (root / "blue.txt").read_text() == "blue background"
    assert (root / "sub" / "red2.txt").read_text() == "red background"
    assert not (root / "broken.txt").exists()
    assert report.tagged == 3 and report.inferred == 3 and report.files_written == 3
    assert [f.path for f in report.failed] == ["broken.jpg"] and "not a readable image" in report.failed[0].reason
    assert report.provider["active"] == "CPUExecutionProvider" and "CPU" in report.provider_line
    row = ItemTag.get(ItemTag.item == items[0].id)
    assert row.source == "auto_wd" and row.confidence == pytest.approx(0.982, abs=0.01)
    assert Item.get_by_id(items[0].id).tag_count == 1


def test_rerun_uses_cache_and_does_not_run_the_model(ds):
    dataset, _ = ds
    first = Counting()
    autotag(dataset.name, runner_factory=first, **wd_opts())
    assert first.runs >= 1
    again = Counting()
    report = autotag(dataset.name, runner_factory=again, **wd_opts())
    assert again.runners == [] and report.model_runs == 0  # the model was not even loaded
    assert report.cached == 3 and report.inferred == 0 and report.unchanged == 3 and report.tagged == 0
    assert report.provider is None and "cache" in report.provider_line
    assert [f.path for f in report.failed] == ["broken.jpg"]  # unreadable files stay reported


def test_threshold_change_refilters_cached_scores_without_inference(ds, tmp_path):
    dataset, _ = ds
    autotag(dataset.name, **wd_opts())
    counting = Counting()
    # red image: blue channel = 85/255 (white padding) → tag "blue background" ≈ 0.21
    report = autotag(dataset.name, threshold=0.2, runner_factory=counting, **wd_opts())
    assert counting.runners == [] and report.cached == 3
    assert (tmp_path / "data" / "red.txt").read_text() == "red background, blue background"
    # the threshold is below the cache floor: that needs the model
    low = Counting()
    autotag(dataset.name, threshold=0.005, runner_factory=low, **wd_opts())
    assert low.runs >= 1


def test_mode_add_keeps_user_tags_and_never_duplicates(ds, tmp_path):
    dataset, items = ds
    set_tags(items[0], ["1girl", "Red_Background"])
    autotag(dataset.name, mode="add", **wd_opts())
    autotag(dataset.name, mode="add", **wd_opts())  # a second run adds nothing twice
    assert (tmp_path / "data" / "red.txt").read_text() == "1girl, Red_Background"
    assert (tmp_path / "data" / "blue.txt").read_text() == "blue background"
    src = {r.tag: r.source for r in ItemTag.select().where(ItemTag.item == items[0].id)}
    assert src == {"1girl": "user", "Red_Background": "user"}


def test_mode_skip_really_skips_items_that_have_tags(ds, tmp_path):
    dataset, items = ds
    set_tags(items[1], ["my own tag"])
    counting = Counting()
    report = autotag(dataset.name, mode="skip", runner_factory=counting, **wd_opts())
    assert report.skipped_existing == 1 and report.tagged == 2
    assert (tmp_path / "data" / "blue.txt").read_text() == "my own tag"
    again = autotag(dataset.name, mode="skip", **wd_opts())
    assert again.skipped_existing == 3 and again.tagged == 0 and again.cached == 0 and again.inferred == 0
    assert (tmp_path / "data" / "red.txt").read_text() == "red background"  # not appended twice


def test_mode_replace_overwrites(ds, tmp_path):
    dataset, items = ds
    set_tags(items[0], ["old", "tags"])
    autotag(dataset.name, mode="replace", **wd_opts())
    assert item_tags(items[0]) == ["red background"]
    assert (tmp_path / "data" / "red.txt").read_text() == "red background"


def test_dry_run_writes_no_caption(ds, tmp_path):
    dataset, _ = ds
    report = autotag(dataset.name, dry_run=True, **wd_opts())
    assert report.tagged == 3 and report.files_written == 0
    assert not (tmp_path / "data" / "red.txt").exists() and Caption.select().count() == 0
    assert {p["path"]: p["tags"] for p in report.preview}["blue.png"] == ["blue background"]


def test_query_selects_the_items_to_tag(ds, tmp_path):
    dataset, items = ds
    set_tags(items[1], ["needs_retag"])
    report = autotag(dataset.name, query="needs_retag", **wd_opts())
    assert report.items == 1 and report.tagged == 1
    assert (tmp_path / "data" / "blue.txt").read_text() == "blue background"
    assert not (tmp_path / "data" / "red.txt").exists()


def test_item_selection_and_subtype(ds, tmp_path):
    dataset, items = ds
    report = autotag(dataset.name, item_ids=[items[1].id], subtype="auto", **wd_opts())
    assert report.items == 1 and (tmp_path / "data" / "blue_auto.txt").read_text() == "blue background"
    assert not (tmp_path / "data" / "red_auto.txt").exists()


def test_resume_after_kill_redoes_no_finished_inference(db, tmp_path):
    images = {f"img{i:02d}.png": ((RED if i % 2 else BLUE), (64, 40 + i)) for i in range(10)}
    dataset, _ = make_dataset(tmp_path / "data", images)
    killer = Counting(fail_on_run=2)  # dies in the second batch, like a kill -9 mid-run
    with pytest.raises(KeyboardInterrupt):
        autotag(dataset.name, batch_size=4, runner_factory=killer, **wd_opts())
    assert TaggerCache.select().count() == 4  # the finished batch is cached (its captions may not be written yet)
    assert len(list((tmp_path / "data").glob("*.txt"))) <= 4
    resume = Counting()
    report = autotag(dataset.name, batch_size=4, runner_factory=resume, **wd_opts())
    assert report.cached == 4 and report.inferred == 6 and resume.runs == 2
    assert report.unchanged + report.tagged == 10
    assert len(list((tmp_path / "data").glob("*.txt"))) == 10
    assert {p.read_text() for p in (tmp_path / "data").glob("*.txt")} == {"red background", "blue background"}


def test_cancel_stops_after_the_batch_and_resumes(db, tmp_path):
    images = {f"img{i:02d}.png": (RED, (40, 40 + i)) for i in range(10)}
    dataset, _ = make_dataset(tmp_path / "data", images)
    token = CancelToken()
    report = autotag(
        dataset.name, batch_size=4, cancel=token, runner_factory=Counting(cancel=token, cancel_after=1), **wd_opts()
    )
    assert report.cancelled and report.inferred == 4 and report.tagged == 4
    report = autotag(dataset.name, batch_size=4, **wd_opts())
    assert not report.cancelled and report.cached == 4 and report.inferred == 6


def test_images_without_any_tag_get_no_empty_caption(db, tmp_path):
    dataset, items = make_dataset(tmp_path / "data", {"green.png": (GREEN, (50, 50)), "keep.png": (GREEN, (40, 50))})
    set_tags(items[1], ["user tag"])
    report = autotag(dataset.name, mode="replace", **wd_opts())
    assert report.no_tags == 2 and report.tagged == 0
    assert not (tmp_path / "data" / "green.txt").exists()
    assert (tmp_path / "data" / "keep.txt").read_text() == "user tag"  # nothing predicted: nothing wiped


def test_fixed_batch_model_end_to_end_runs_per_image_with_a_note(ds, tmp_path):
    dataset, _ = ds
    m = tiny_models()
    report = autotag(dataset.name, **{**wd_opts(), "model_path": str(m["wd_fixed1"])}, batch_size=8)
    assert report.batch_size == 1 and report.model_runs == report.inferred == 3
    assert any("fixed to 1" in n for n in report.notes)
    assert (tmp_path / "data" / "blue.txt").read_text() == "blue background"


def test_identical_images_are_inferred_once(db, tmp_path):
    dataset, _ = make_dataset(tmp_path / "data", {"a.png": (RED, (50, 50)), "b/a.png": (RED, (50, 50))})
    report = autotag(dataset.name, **wd_opts())
    assert report.inferred == 1 and report.tagged == 2


def test_decode_worker_processes_give_the_same_tags(db, tmp_path):
    images = {f"img{i:02d}.png": ((RED if i % 3 else BLUE), (64, 40 + i)) for i in range(9)}
    dataset, _ = make_dataset(tmp_path / "data", images)
    report = autotag(dataset.name, use_cache=False, **{**wd_opts(), "workers": 2})
    assert report.workers == 2 and report.inferred == 9 and not report.failed
    texts = {p.name: p.read_text() for p in (tmp_path / "data").glob("*.txt")}
    assert texts["img00.txt"] == "blue background" and texts["img01.txt"] == "red background"


def test_cl_model_with_quality_and_rating(db, tmp_path):
    dataset, _ = make_dataset(tmp_path / "data", {"red.png": (RED, (300, 200))})
    m = tiny_models()
    autotag(
        dataset.name,
        model_path=str(m["cl"]),
        labels_path=str(m["cl_json"]),
        workers=0,
        categories=("rating", "general", "character", "quality"),
    )
    # argmax picks the first of equal rating/quality scores; general probe tag fires
    assert (tmp_path / "data" / "red.txt").read_text() == "general, red background, masterpiece"
    assert ItemTag.get(ItemTag.tag == "masterpiece").source == "auto_cl"


def test_dictionary_mapping_and_aliases(ds, tmp_path):
    from sushitui.tags.aliases import add_alias
    from sushitui.tags.normalize import match_key

    dataset, _ = ds
    DictionaryTag.create(
        tag="blue_background", norm=match_key("blue_background"), deprecated=True, replacement="blue_bg"
    )
    add_alias("red_background", "crimson background")
    autotag(dataset.name, add_unknown_to_dictionary=True, **wd_opts())
    assert (tmp_path / "data" / "red.txt").read_text() == "crimson background"
    assert (tmp_path / "data" / "blue.txt").read_text() == "blue_bg"
    added = DictionaryTag.get(DictionaryTag.norm == "crimson background")
    assert added.source == "auto_detected" and added.category == "general" and not added.official
    row = ItemTag.get(ItemTag.tag == "crimson background")
    assert row.source == "auto_wd" and row.confidence > 0.9  # the confidence follows the aliased tag
    autotag(dataset.name, dictionary_mapping=False, **wd_opts())
    assert (tmp_path / "data" / "blue.txt").read_text() == "blue background"


def test_scanned_synthetic_dataset_add_mode_keeps_layout(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.dataset.synthetic import generate_dataset

    root = tmp_path / "syn"
    generate_dataset(root, 12, seed=3, image_size=(24, 24), items_per_dir=5, prose_fraction=0.0)
    ds, _ = add_dataset(DatasetSettings(name="syn", root_path=str(root)))
    before = {it.id: item_tags(it) for it in Item.select().where(Item.dataset == ds.id)}
    counting = Counting()
    report = autotag("syn", mode="add", threshold=0.01, runner_factory=counting, **wd_opts())
    assert report.items == len(before) and not report.failed
    for it in Item.select().where(Item.dataset == ds.id):
        tags = item_tags(it)
        assert tags[: len(before[it.id])] == before[it.id]  # existing tags first, untouched
        assert len(tags) > len(before[it.id])
        rel = f"{it.rel_dir}/{it.base_name}" if it.rel_dir else it.base_name
        main = root / f"{rel}.txt"
        if main.exists() and it.item_type != "group":
            assert main.read_text().startswith(", ".join(before[it.id]))


def test_unknown_dataset_model_or_mode_is_a_clear_error(ds):
    dataset, _ = ds
    # an unknown dataset is the registry's DatasetNotFound on every path (issue 15 §3),
    # a UserError like AutotagError
    from sushitui.dataset.registry import DatasetNotFound

    with pytest.raises(DatasetNotFound, match="no dataset named 'nope'.*sushitui dataset list"):
        autotag("nope", **wd_opts())
    with pytest.raises(AutotagError, match="unknown mode"):
        autotag(dataset.name, mode="merge", **wd_opts())
    with pytest.raises(AutotagError, match="HF_HUB_OFFLINE"):
        autotag(dataset.name, model="cl-1.02", workers=0)  # empty isolated cache, offline


def _cli(db_path, env, *args):
    return subprocess.run(
        [sys.executable, "-m", "sushitui", "--db", str(db_path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_autotag_end_to_end_offline(ds, db_path, tmp_path):
    dataset, _ = ds
    cache = make_fake_hf_cache(tmp_path / "hf")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    res = _cli(db_path, env, "autotag", dataset.name, "--model", "wd-vit-v3", "--workers", "0", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["model"] == "wd-vit-v3" and data["tagged"] == 3 and data["provider"]["active"] == "CPUExecutionProvider"
    assert data["failed"][0]["path"] == "broken.jpg"
    assert (tmp_path / "data" / "blue.txt").read_text() == "blue background"
    res = _cli(db_path, env, "autotag", dataset.name, "--model", "wd-vit-v3", "--threshold", "0.2", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "provider: none (every result came from the cache" in res.stdout and "from cache 3" in res.stdout
    assert "broken.jpg" in res.stderr
    t = time.monotonic()
    res = _cli(db_path, env, "autotag", dataset.name, "--model", "cl-1.01")
    assert res.returncode == 1 and "sushitui models download cl-1.01" in res.stderr and "Traceback" not in res.stderr
    assert time.monotonic() - t < 20
    res = _cli(db_path, env, "autotag", dataset.name, "--categories", "general,bogus")
    assert res.returncode == 2 and "bogus" in res.stderr


def test_decoding_survives_a_stderr_without_fd_and_a_pool_that_cannot_start(tmp_path, monkeypatch):
    import io

    from sushitui.tagger import pipeline

    paths = []
    for i in range(9):
        p = tmp_path / f"{i}.png"
        from PIL import Image

        Image.new("RGB", (20 + i, 20), (255, 0, 0)).save(p)
        paths.append(str(p))
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # what Textual installs: no real file descriptor
    notes: list[str] = []
    got = sorted(d.index for d in pipeline.decode_stream(paths, 32, workers=2, notes=notes) if d.error is None)
    assert got == list(range(9)) and notes == []

    class NoPool:
        def __init__(self, *a, **k):
            raise OSError("no /dev/shm")

    monkeypatch.setattr(pipeline.cf, "ProcessPoolExecutor", NoPool)
    got = sorted(d.index for d in pipeline.decode_stream(paths, 32, workers=2, notes=notes) if d.error is None)
    assert got == list(range(9)) and "decoding in the main process" in notes[0]


@pytest.mark.slow
def test_cli_ctrl_c_stops_cleanly_and_the_same_command_resumes(db, db_path, tmp_path):
    import signal
    import sqlite3

    images = {f"img{i:03d}.png": (RED, (48, 20 + i)) for i in range(60)}
    dataset, _ = make_dataset(tmp_path / "data", images)
    m = tiny_models()
    cmd = [
        sys.executable,
        "-m",
        "sushitui",
        "--db",
        str(db_path),
        "autotag",
        dataset.name,
        "--model-path",
        str(m["wd"]),
        "--labels",
        str(m["wd_csv"]),
        "--workers",
        "0",
        "--batch-size",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and done < 3:
        time.sleep(0.1)
        try:
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as con:
                done = con.execute("SELECT COUNT(*) FROM tagger_cache").fetchone()[0]
        except sqlite3.OperationalError:
            pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "cancelled; run the same command again to resume" in out and "Traceback" not in err
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cached = int(res.stdout.split("from cache ")[1].split(",")[0])
    assert 3 <= cached < 60 and "failed 0" in res.stdout
    assert len(list((tmp_path / "data").glob("*.txt"))) == 60
