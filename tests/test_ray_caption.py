"""`caption` on a local Ray cluster of 2 CPUs (issue 20) against a fake OpenAI-compatible
server on 127.0.0.1: the same captions and requests as a local run, the answer cache
deciding what is left, and two endpoints used in turn."""

from __future__ import annotations

import pytest
from ray_support import local_ray  # noqa: F401 - the module-scoped cluster fixture
from test_vlm_core import KEY, make_images
from vlm_support import FakeVlmServer

from sushitui.dataset.registry import DatasetSettings, add_dataset
from sushitui.store import Caption, Item
from sushitui.tagger import vlm
from sushitui.tagger.ray_caption import caption_ray
from sushitui.tagger.vlm import CaptionOptions, caption_items

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]


@pytest.fixture
def env(db, tmp_path, monkeypatch):
    with FakeVlmServer() as one, FakeVlmServer() as two:
        for name in ("local", "ray"):
            make_images(tmp_path / name)
            add_dataset(DatasetSettings(name=name, root_path=str(tmp_path / name)))
        monkeypatch.setenv("SUSHI_TEST_KEY", KEY)
        vlm.add_endpoint("one", one.base_url, model="test-vlm", api_key_env="SUSHI_TEST_KEY")
        vlm.add_endpoint("two", two.base_url, model="test-vlm", api_key_env="SUSHI_TEST_KEY")
        template = tmp_path / "named.txt"
        template.write_text("Describe <<{name}>> from {folder}. Tags: {tags}.", encoding="utf-8")
        yield {"tmp": tmp_path, "one": one, "two": two, "template": str(template)}


def _opts(env, **kw) -> CaptionOptions:
    base = dict(template=env["template"], endpoint="one", concurrency=4, workers=0, retry_base_s=0.01, max_retries=2)
    return CaptionOptions(**{**base, "subtype": "vlm", **kw})


def _written(name: str) -> dict[str, tuple[str, str]]:
    q = Caption.select(Caption, Item).join(Item).where(Caption.subtype == "vlm")
    return {c.item.base_name: (c.content, c.source) for c in q if c.item.dataset.name == name}


def test_ray_captions_equal_a_local_run_and_a_rerun_sends_nothing(env):
    local = caption_items("local", None, _opts(env))
    sent_locally = sorted(env["one"].names_sent())
    local_images = {r.name: r.images for r in env["one"].chat_requests()}
    env["one"].received.clear()

    report = caption_ray("ray", None, _opts(env), actors=2)

    assert report.written == local.written == 4 and report.failed == 0 and report.flagged == 0
    assert _written("ray") == _written("local")
    assert (env["tmp"] / "ray" / "fox_03_vlm.txt").read_text() == "A detailed photo of fox_03."
    ray_requests = env["one"].chat_requests()
    assert sorted(r.name for r in ray_requests) == sent_locally  # each item asked once
    for r in ray_requests:  # the same images (size, flattening) and prompt as the local code sends
        assert [(i["format"], i["size"]) for i in r.images] == [(i["format"], i["size"]) for i in local_images[r.name]]
        assert r.authorization == f"Bearer {KEY}" and r.model == "test-vlm" and r.max_tokens == 300
    assert any("2 caption actor(s)" in n for n in report.notes)

    env["one"].received.clear()
    again = caption_ray("ray", None, _opts(env, mode="replace"), actors=2)
    assert again.cached == 4 and again.requests == 0 and env["one"].names_sent() == []


def test_failed_requests_fail_their_items_and_extra_endpoints_share_the_load(env, capfd):
    env["one"].script["dog_02"] = ["400"]
    env["two"].script["dog_02"] = ["400"]
    report = caption_ray("ray", None, _opts(env), actors=1, endpoints=["two"])
    assert report.written == 3 and report.failed == 1
    failed = [r for r in report.results if r.status == "failed"]
    assert failed[0].name == "dog_02" and failed[0].problem.startswith("request failed:")
    names = env["one"].names_sent() + env["two"].names_sent()
    assert sorted(names) == ["cat_01", "dog_02", "edit", "fox_03"]
    assert env["one"].names_sent() and env["two"].names_sent()  # both endpoints answered
    out, err = capfd.readouterr()
    assert out == "" and "Dataset" not in err  # the core prints nothing, Ray Data's own log lines included
