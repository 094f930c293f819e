"""autotag on a local Ray cluster of 2 CPUs (issue 20): the same scores as the
single-process run item for item, a killed model actor retried with nothing written
twice, and the messages for a node that cannot read an image and for a missing Ray."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from ray_support import local_ray  # noqa: F401 - the module-scoped cluster fixture
from tagger_support import make_dataset, tiny_models

from sushitui.store import Caption, TaggerCache
from sushitui.tagger import cache as tcache
from sushitui.tagger.autotag import autotag
from sushitui.tagger.distributed import NodeCannotRead, RayUnavailable, autotag_ray
from sushitui.tagger.runner import Runner

# each test runs a Ray Data pipeline (actors start in ~2 s) on the module's 2-CPU cluster
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 200, 40)


def _images(n: int) -> dict[str, tuple]:
    # distinct colours and sizes: every image has its own hash and its own scores
    out: dict[str, tuple] = {}
    for i in range(n):
        color = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
        out[f"d{i % 3}/img{i:03d}.png"] = (color, (40 + i, 30 + 2 * i))
    return out


def _opts(model: str = "wd", **kw):
    m = tiny_models()
    labels = m["wd_csv"] if model.startswith("wd") else m["cl_json"]
    return {"model_path": str(m[model]), "labels_path": str(labels), "workers": 0, "threshold": 0.01, **kw}


def _scores(version: str) -> dict[str, np.ndarray]:
    rows = TaggerCache.select().where(TaggerCache.model_key == version)
    return {r.sha256: tcache.decode(bytes(r.scores)) for r in rows}


def _captions(ds_id) -> dict[str, str]:
    from sushitui.store import Item

    q = Caption.select(Caption, Item).join(Item).where(Item.dataset == ds_id)
    return {c.item.image_path: c.content for c in q}


@pytest.mark.parametrize("model", ["wd", "cl"])
def test_ray_scores_and_captions_equal_the_local_run_item_for_item(db, tmp_path, model):
    local_ds, _ = make_dataset(tmp_path / "local", _images(13), name="local")
    ray_ds, _ = make_dataset(tmp_path / "ray", _images(13), name="ray")
    local = autotag("local", **_opts(model), use_cache=True)
    local_scores = _scores(local.model_version)
    assert len(local_scores) == 13
    TaggerCache.delete().execute()  # the Ray run must compute every score itself

    report = autotag_ray("ray", actors=2, **_opts(model))

    assert report.inferred == 13 and report.cached == 0 and not report.failed
    assert report.provider["ray"]["actors"] == 2 and "2 model actor(s)" in report.provider_line
    assert sum("model actor on" in n for n in report.notes) >= 1
    ray_scores = _scores(report.model_version)
    assert ray_scores.keys() == local_scores.keys()
    for sha, probs in local_scores.items():
        np.testing.assert_array_equal(ray_scores[sha], probs)
    assert {p: t for p, t in _captions(ray_ds.id).items()} == _captions(local_ds.id)
    assert (tmp_path / "ray" / "d0" / "img000.txt").read_text() == (tmp_path / "local/d0/img000.txt").read_text()


def test_a_rerun_takes_every_score_from_the_cache_and_starts_no_inference(db, tmp_path):
    make_dataset(tmp_path / "data", _images(6))
    first = autotag_ray("ds", actors=1, **_opts())
    assert first.inferred == 6
    again = autotag_ray("ds", actors=1, **_opts())
    assert again.inferred == 0 and again.cached == 6 and again.provider is None and again.unchanged == 6


class CrashOnce:
    """A model actor's runner factory whose first predict kills the actor's process,
    once per test (a marker file survives the process)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, *a, **kw):
        r = Runner(*a, **kw)
        real, marker = r.predict, self.marker

        def predict(x, **kw):
            if not os.path.exists(marker):
                with open(marker, "w") as fh:
                    fh.write(str(os.getpid()))
                os._exit(1)  # the process dies mid-batch, as with an OOM kill or a lost node
            return real(x, **kw)

        r.predict = predict
        return r


def test_a_killed_actor_is_restarted_and_every_item_is_written_exactly_once(db, tmp_path, monkeypatch):
    from sushitui.dataset import captions as captions_mod

    dataset, items = make_dataset(tmp_path / "data", _images(12))
    written: list[int] = []
    real_set = captions_mod.set_tags_many

    def counting(edits, **kw):
        written.extend(e.item.id for e in edits)
        return real_set(edits, **kw)

    monkeypatch.setattr("sushitui.tagger.autotag.set_tags_many", counting)
    puts: list[str] = []
    real_put = tcache.put_many

    def counting_put(entries, *a, **kw):
        puts.extend(sha for sha, _ in entries)
        return real_put(entries, *a, **kw)

    monkeypatch.setattr(tcache, "put_many", counting_put)
    marker = tmp_path / "crashed"

    report = autotag_ray("ds", actors=1, actor_runner_factory=CrashOnce(str(marker)), **_opts())

    assert marker.exists(), "the actor never crashed: the test proves nothing"
    assert report.inferred == 12 and report.tagged == 12 and not report.failed
    assert sorted(written) == sorted(it.id for it in items)  # each item written once
    assert len(puts) == len(set(puts)) == 12  # each score cached once
    assert TaggerCache.select().count() == 12
    for it in items:
        txt = (tmp_path / "data" / it.image_path).with_suffix(".txt")
        assert txt.read_text().strip(), it.image_path


def test_a_node_that_cannot_read_an_image_stops_the_run_naming_node_and_path(db, tmp_path, monkeypatch):
    import socket

    make_dataset(tmp_path / "data", _images(5))
    hidden = tmp_path / "data" / "d1" / "img001.png"
    real_access = os.access

    # the driver hashes the file (it can read it); the nodes' decode tasks see it unreadable,
    # as on a node without the dataset's mount. Decode tasks run in other processes, so the
    # check is patched where they run it: through an environment variable they read.
    def fake_access(path, mode, *a, **kw):
        if str(path) == str(hidden) and os.environ.get("SUSHITUI_TEST_NODE") == "1":
            return False
        return real_access(path, mode, *a, **kw)

    from sushitui.tagger import distributed

    real_decode = distributed.decode_rows

    def decode_on_node(batch, **kw):
        os.environ["SUSHITUI_TEST_NODE"] = "1"
        os.access = fake_access
        try:
            return real_decode(batch, **kw)
        finally:
            os.access = real_access
            os.environ.pop("SUSHITUI_TEST_NODE", None)

    monkeypatch.setattr(distributed, "decode_rows", decode_on_node)
    with pytest.raises(NodeCannotRead) as err:
        autotag_ray("ds", actors=1, **_opts())
    msg = str(err.value)
    assert socket.gethostname() in msg and str(hidden) in msg and "same path" in msg


def test_without_ray_the_message_says_how_to_install_it(db, tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", _images(2))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(RayUnavailable, match=r"pip install 'sushitui\[ray\]'"):
        autotag_ray("ds", **_opts())


def test_a_ray_client_address_is_refused_before_any_work_saying_what_works(db, tmp_path):
    make_dataset(tmp_path / "data", _images(2))
    with pytest.raises(RayUnavailable, match=r"--ray auto, or --ray HEAD:6379"):
        autotag_ray("ds", address="ray://head:10001", **_opts())
    assert not list((tmp_path / "data").rglob("*.txt")) and TaggerCache.select().count() == 0
