"""VLM captioning core against a real HTTP server on 127.0.0.1 (tests/vlm_support.py):
what is sent (images, prompts, key), what is written, retries, flags, cache, cancel."""

from __future__ import annotations

import json
from pathlib import Path

import piexif
import pytest
from PIL import Image
from vlm_support import FakeVlmServer

from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.progress import CancelToken
from sushitui.store import Caption, Dataset, Item
from sushitui.tagger import vlm
from sushitui.tagger.vlm import CaptionOptions, CaptionTarget, caption_items, preview_prompt, sample, write_caption
from sushitui.tagger.vlm.endpoints import VlmError, is_local, privacy_notice

KEY = "sk-test-0123456789abcdef-SECRET"


def _jpeg_rotated(path: Path) -> None:
    """1600×1200 as stored, EXIF orientation 6 (shown turned a quarter: 1200×1600); the
    stored top-left is red, so after turning the top-right is red."""
    img = Image.new("RGB", (1600, 1200), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 400, 300))
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}})
    img.save(path, "JPEG", quality=90, exif=exif)


def make_images(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _jpeg_rotated(root / "cat_01.jpg")
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))  # fully transparent black
    rgba.paste((0, 200, 0, 255), (100, 50, 200, 150))
    rgba.save(root / "dog_02.png")
    Image.new("RGB", (640, 480), (200, 120, 40)).save(root / "fox_03.jpg", quality=90)
    (root / "fox_03.txt").write_text("fox, snow, 1girl", encoding="utf-8")
    Image.new("RGB", (512, 512), (255, 0, 0)).save(root / "edit_source.png")
    Image.new("RGB", (512, 512), (0, 0, 255)).save(root / "edit_target.png")


@pytest.fixture
def server():
    with FakeVlmServer() as srv:
        yield srv


@pytest.fixture
def env(db, tmp_path, server, monkeypatch):
    root = tmp_path / "photos"
    make_images(root)
    ds, _ = add_dataset(DatasetSettings(name="pics", root_path=str(root)))
    monkeypatch.setenv("SUSHI_TEST_KEY", KEY)
    vlm.add_endpoint("local", server.base_url, model="test-vlm", api_key_env="SUSHI_TEST_KEY")
    template = tmp_path / "named.txt"
    template.write_text("Describe <<{name}>> from {folder}. Tags: {tags}.", encoding="utf-8")
    return {"ds": ds, "root": root, "template": str(template), "tmp": tmp_path}


def opts(env, **kw) -> CaptionOptions:
    base = dict(template=env["template"], concurrency=4, workers=0, retry_base_s=0.01, max_retries=2, subtype="vlm")
    base.update(kw)
    return CaptionOptions(**base)


def item(name: str) -> Item:
    return Item.get(Item.base_name == name)


def test_images_are_sent_downscaled_upright_flattened_with_the_variables_filled_and_the_key_as_bearer(env, server):
    report = caption_items("pics", None, opts(env, max_side=512))
    assert report.failed == 0 and report.flagged == 0
    reqs = {r.name: r for r in server.chat_requests()}
    assert set(reqs) == {"cat_01", "dog_02", "fox_03", "edit"}
    cat = reqs["cat_01"].images[0]
    assert cat["valid"] and cat["format"] == "JPEG"
    assert cat["size"] == (384, 512)  # EXIF orientation applied, long side = max_side
    dog = reqs["dog_02"].images[0]
    assert dog["size"] == (300, 200)  # never enlarged
    assert min(dog["corner"]) >= 245  # transparent pixels are white, not black
    assert reqs["fox_03"].prompt == "Describe <<fox_03>> from photos. Tags: fox, snow, 1girl."
    assert all(r.authorization == f"Bearer {KEY}" for r in server.chat_requests())
    assert all(r.model == "test-vlm" and r.max_tokens == 300 for r in server.chat_requests())


def test_captions_are_written_as_files_with_the_model_as_source_and_read_back_by_a_reindex(env):
    report = caption_items("pics", None, opts(env))
    assert report.written == 4
    path = env["root"] / "fox_03_vlm.txt"
    assert path.read_text(encoding="utf-8") == "A detailed photo of fox_03."
    cap = Caption.get((Caption.item == item("fox_03").id) & (Caption.subtype == "vlm"))
    assert cap.type == "natural_language" and cap.source == "vlm_test-vlm"
    assert "vlm" in Dataset.get(Dataset.name == "pics").caption_suffixes  # joins the suffixes like tagger output
    assert (env["root"] / "fox_03.txt").read_text(encoding="utf-8") == "fox, snow, 1girl"  # other captions untouched
    reindex("pics", full=True)
    again = Caption.get((Caption.item == item("fox_03").id) & (Caption.subtype == "vlm"))
    assert again.content == "A detailed photo of fox_03." and again.type == "natural_language"
    assert Item.select().where(Item.dataset == env["ds"].id).count() == 4  # no caption file became an item


def test_the_key_is_nowhere_but_the_authorization_header(env, server, db_path, tmp_path):
    report = caption_items("pics", None, opts(env))
    blob = json.dumps(report.as_dict(), default=str)
    assert KEY not in blob
    for f in db_path.parent.glob(db_path.name + "*"):
        assert KEY.encode() not in f.read_bytes(), f
    for r in server.chat_requests():
        others = {k: v for k, v in r.headers.items() if k.lower() != "authorization"}
        assert KEY not in json.dumps(others) and KEY not in (r.prompt or "") + (r.system or "")
    assert [e.as_dict() for e in vlm.list_endpoints()][0]["api_key_env"] == "SUSHI_TEST_KEY"


def test_a_missing_key_variable_stops_before_anything_is_sent(env, server, monkeypatch):
    monkeypatch.delenv("SUSHI_TEST_KEY")
    with pytest.raises(VlmError, match="SUSHI_TEST_KEY"):
        caption_items("pics", None, opts(env))
    assert server.chat_requests() == []


def test_a_rerun_sends_nothing_and_a_new_prompt_sends_again(env, server):
    caption_items("pics", None, opts(env))
    assert len(server.chat_requests()) == 4
    again = caption_items("pics", None, opts(env, mode="replace"))
    assert len(server.chat_requests()) == 4 and again.cached == 4 and again.unchanged == 4
    skipped = caption_items("pics", None, opts(env))
    assert skipped.skipped_existing == 4 and len(server.chat_requests()) == 4
    other = env["tmp"] / "other.txt"
    other.write_text("Write one line about <<{name}>>.", encoding="utf-8")
    new = caption_items("pics", None, opts(env, template=str(other), mode="replace"))
    assert new.requests == 4 and len(server.chat_requests()) == 8


def test_429_with_retry_after_and_500_are_retried_and_written(env, server):
    server.script = {"cat_01": ["429:1", "ok"], "dog_02": ["500", "500", "ok"]}
    report = caption_items("pics", None, opts(env))
    assert report.written == 4 and report.failed == 0 and report.retries == 3
    cat_times = [r.at for r in server.chat_requests() if r.name == "cat_01"]
    assert len(cat_times) == 2 and cat_times[1] - cat_times[0] >= 0.9  # waited as Retry-After said


def test_persistent_errors_and_malformed_json_fail_those_items_and_the_rest_are_written(env, server):
    server.script = {"cat_01": ["500"], "dog_02": ["malformed"], "fox_03": ["400"]}
    report = caption_items("pics", None, opts(env, max_retries=1))
    assert report.written == 1 and report.failed == 3
    why = {r.name: r.problem for r in report.problems}
    assert "HTTP 500" in why["cat_01"] and "after 2 attempts" in why["cat_01"]
    assert "malformed" in why["dog_02"]
    assert "HTTP 400" in why["fox_03"] and "does not support images" in why["fox_03"]
    assert len([r for r in server.chat_requests() if r.name == "fox_03"]) == 1  # a 400 is not retried
    assert not (env["root"] / "cat_01_vlm.txt").exists() and (env["root"] / "edit_vlm.txt").exists()
    server.script = {}
    rerun = caption_items("pics", None, opts(env))  # failures are not cached: a rerun tries again
    assert rerun.requests == 3 and rerun.written == 3 and rerun.skipped_existing == 1


def test_refusals_empty_and_truncated_answers_are_flagged_and_not_written(env, server):
    server.script = {"cat_01": ["refusal"], "dog_02": ["length"], "fox_03": ["empty"], "edit": ["api-refusal"]}
    report = caption_items("pics", None, opts(env))
    assert report.written == 0 and report.flagged == 4
    flags = {r.name: r.flags for r in report.problems}
    assert flags == {"cat_01": ["refusal"], "dog_02": ["truncated"], "fox_03": ["empty"], "edit": ["refusal"]}
    assert not list(env["root"].glob("*_vlm.txt"))


def test_banned_words_are_flagged_not_edited_and_start_with_and_one_line_apply(env, server):
    server.script = {
        "cat_01": ["text:A cat with a watermark in the corner."],
        "dog_02": ["text:Line one.\n\n- Line two."],
    }
    report = caption_items("pics", None, opts(env, ban=("watermark", "signature"), start_with="photo:"))
    flagged = {r.name: r for r in report.problems}
    assert list(flagged) == ["cat_01"] and flagged["cat_01"].flags == ["banned"]
    assert "watermark" in flagged["cat_01"].problem
    assert not (env["root"] / "cat_01_vlm.txt").exists()
    assert (env["root"] / "dog_02_vlm.txt").read_text(encoding="utf-8") == "photo: Line one. Line two."
    assert "Begin your answer with: photo:" in server.chat_requests()[0].prompt


def test_streamed_answers_give_the_same_captions(env, server):
    report = caption_items("pics", None, opts(env, stream=True))
    assert report.written == 4 and all(r.stream for r in server.chat_requests())
    assert (env["root"] / "dog_02_vlm.txt").read_text(encoding="utf-8") == "A detailed photo of dog_02."


def test_edit_instruction_sends_source_then_target_and_writes_the_instruction_caption(env, server):
    (env["tmp"] / "edit.toml").write_text(
        'prompt = "Instruction for <<{name}>>"\ntype = "instruction"\nimages = "source,target"\n', encoding="utf-8"
    )
    report = caption_items(
        "pics", None, CaptionOptions(template=str(env["tmp"] / "edit.toml"), workers=0, retry_base_s=0.01)
    )
    assert report.written == 1 and report.ctype == "instruction" and report.subtype == "instruction"
    sent = server.chat_requests()
    assert [r.name for r in sent] == ["edit"]  # single images are not sent
    source, target = sent[0].images
    assert source["center"][0] > 200 and target["center"][2] > 200  # red source first, blue target second
    assert (env["root"] / "edit_instruction.txt").read_text(encoding="utf-8") == "A detailed photo of edit."
    cap = Caption.get((Caption.item == item("edit").id) & (Caption.subtype == "instruction"))
    assert cap.type == "instruction" and cap.source == "vlm_test-vlm"
    why = {r.name: r.problem for r in report.problems}
    assert set(why) == {"cat_01", "dog_02", "fox_03"} and "_source and a _target" in why["cat_01"]


def test_the_builtin_edit_instruction_template_targets_groups(env, server):
    report = caption_items("pics", None, CaptionOptions(template="edit-instruction", workers=0))
    assert report.written == 1 and len(server.chat_requests()[0].images) == 2
    assert "first image is the original" in server.chat_requests()[0].prompt


def test_sample_writes_nothing_and_a_real_run_then_sends_only_the_rest(env, server):
    report = sample("pics", None, opts(env), n=2)
    assert len(report.results) == 2 and report.written == 0 and report.answered == 2
    assert all(r.text and r.text.startswith("A detailed photo of") for r in report.results)
    assert not list(env["root"].glob("*_vlm.txt"))
    sampled = set(server.names_sent())
    full = caption_items("pics", None, opts(env))
    assert full.cached == 2 and full.written == 4
    assert set(server.names_sent()[2:]) == {"cat_01", "dog_02", "fox_03", "edit"} - sampled


@pytest.mark.slow
def test_cancel_keeps_what_finished_and_a_rerun_sends_only_the_rest(env, server):
    server.script = {"cat_01": ["slow:0.1"], "dog_02": ["slow:3"], "fox_03": ["slow:3"], "edit": ["slow:3"]}
    token = CancelToken()

    def on_result(r):
        if r.status == "written":
            token.cancel()

    report = caption_items("pics", None, opts(env), cancel=token, on_result=on_result)
    assert report.cancelled and report.written == 1
    assert (env["root"] / "cat_01_vlm.txt").exists() and not (env["root"] / "fox_03_vlm.txt").exists()
    server.script = {}
    before = len(server.chat_requests())
    rerun = caption_items("pics", None, opts(env))
    assert sorted(server.names_sent()[before:]) == ["dog_02", "edit", "fox_03"] and rerun.written == 3


def test_a_request_over_the_timeout_fails_that_item(env, server):
    server.script = {"cat_01": ["slow:3"]}
    report = caption_items("pics", [item("cat_01").id, item("dog_02").id], opts(env, timeout_s=0.5, max_retries=0))
    assert report.written == 1 and report.failed == 1
    assert "within 0.5 s" in report.problems[0].problem


def test_append_and_replace_modes(env, server):
    fox = item("fox_03").id
    caption_items("pics", [fox], opts(env))
    server.script = {"fox_03": ["text:Second answer."]}
    caption_items("pics", [fox], opts(env, mode="append", read_cache=False))
    assert (env["root"] / "fox_03_vlm.txt").read_text(encoding="utf-8") == "A detailed photo of fox_03. Second answer."
    server.script = {"fox_03": ["text:Third."]}
    caption_items("pics", [fox], opts(env, mode="replace", read_cache=False))
    assert (env["root"] / "fox_03_vlm.txt").read_text(encoding="utf-8") == "Third."


def test_a_caption_file_changed_on_disk_is_a_conflict_not_overwritten(env, server):
    fox = item("fox_03").id
    caption_items("pics", [fox], opts(env))
    (env["root"] / "fox_03_vlm.txt").write_text("edited by hand", encoding="utf-8")
    server.script = {"fox_03": ["text:New."]}
    report = caption_items("pics", [fox], opts(env, mode="replace", read_cache=False))
    assert report.failed == 1 and "changed" in report.problems[0].problem.lower()
    assert (env["root"] / "fox_03_vlm.txt").read_text(encoding="utf-8") == "edited by hand"


def test_query_target_and_preview_prompt(env, server):
    report = caption_items("pics", CaptionTarget(query="fox"), opts(env))
    assert server.names_sent() == ["fox_03"] and report.items == 1
    p = preview_prompt(item("fox_03"), opts(env))
    assert p.prompt == "Describe <<fox_03>> from photos. Tags: fox, snow, 1girl."
    assert p.images == ["fox_03.jpg"] and p.subtype == "vlm" and p.ctype == "natural_language"


def test_default_subtype_is_the_editors_caption_slot_and_natural_language_is_accepted(env, server):
    report = caption_items("pics", [item("dog_02").id], opts(env, subtype="natural_language"))
    assert report.subtype == "caption" and (env["root"] / "dog_02_caption.txt").exists()
    with pytest.raises(VlmError, match="cannot name a caption file"):
        caption_items("pics", None, opts(env, subtype="bad_name"))


def test_trigger_variable_needs_a_trigger(env):
    (env["tmp"] / "trig.txt").write_text("{trigger} <<{name}>>", encoding="utf-8")
    with pytest.raises(VlmError, match="--trigger"):
        caption_items("pics", None, opts(env, template=str(env["tmp"] / "trig.txt")))
    (env["tmp"] / "typo.txt").write_text("{tagz} <<{name}>>", encoding="utf-8")
    with pytest.raises(VlmError, match=r"unknown variable \{tagz\}"):
        caption_items("pics", None, opts(env, template=str(env["tmp"] / "typo.txt")))


def test_write_caption_writes_one_reviewed_caption(env):
    cap = write_caption(item("dog_02").id, "A reviewed caption.", model="m1", subtype="vlm")
    assert (
        cap.source == "vlm_m1" and (env["root"] / "dog_02_vlm.txt").read_text(encoding="utf-8") == "A reviewed caption."
    )
    write_caption(item("dog_02").id, "More.", model="m1", subtype="vlm", mode="append")
    assert (env["root"] / "dog_02_vlm.txt").read_text(encoding="utf-8") == "A reviewed caption. More."


def test_the_model_comes_from_the_server_when_the_endpoint_names_none(env, server):
    vlm.add_endpoint("auto", server.base_url)
    report = caption_items("pics", [item("dog_02").id], opts(env, endpoint="auto"))
    assert (
        report.model == "test-vlm" and report.written == 1 and any("first the server lists" in n for n in report.notes)
    )


def test_endpoint_registry_and_privacy(db):
    vlm.add_endpoint("a", "http://127.0.0.1:8000/v1/", model="m")
    assert [e.base_url for e in vlm.list_endpoints()] == ["http://127.0.0.1:8000/v1"]
    with pytest.raises(VlmError, match="exists"):
        vlm.add_endpoint("a", "http://127.0.0.1:8001/v1")
    with pytest.raises(VlmError, match="environment variable"):
        vlm.add_endpoint("b", "https://user:sk-123@api.example.com/v1")
    with pytest.raises(VlmError, match="variable name"):
        vlm.add_endpoint("b", "https://api.example.com/v1", api_key_env="sk-123 456")
    vlm.remove_endpoint("a")
    assert vlm.list_endpoints() == []
    for url in (
        "http://127.0.0.1:8000/v1",
        "http://localhost:11434/v1",
        "http://192.168.1.20:8000/v1",
        "http://10.0.0.5/v1",
        "http://gpubox:8000/v1",
        "http://[::1]:8000/v1",
    ):
        assert is_local(url) and privacy_notice(url) is None, url
    assert "api.openai.com" in privacy_notice("https://api.openai.com/v1")
    assert privacy_notice("http://8.8.8.8/v1")


def test_probe_endpoint_lists_models_and_sends_one_image(db, server, monkeypatch):
    monkeypatch.setenv("SUSHI_TEST_KEY", KEY)
    vlm.add_endpoint("local", server.base_url, api_key_env="SUSHI_TEST_KEY")
    probe = vlm.probe_endpoint("local")
    assert probe.ok and probe.models == ["test-vlm"] and probe.reply and probe.reply_latency_s is not None
    img = server.chat_requests()[0].images[0]
    assert img["valid"] and img["size"] == (256, 256)
    assert KEY not in json.dumps(probe.as_dict())
