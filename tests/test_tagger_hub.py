"""Model registry and the Hugging Face cache, offline (fake cache, no network)."""

from __future__ import annotations

import json
import time

import pytest
from tagger_support import COMMIT_CL, COMMIT_WD, make_fake_hf_cache, tiny_models

from sushitui.tagger import hub
from sushitui.tagger.registry import DEFAULT_MODEL, UnknownModel, get_spec


@pytest.fixture
def fake_hf_cache(tmp_path, monkeypatch):
    cache = make_fake_hf_cache(tmp_path / "hf-cache")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_registry_keys_default_and_aliases():
    assert DEFAULT_MODEL == "cl-1.02"
    assert get_spec(None).model_file == "cl_tagger_1_02/model.onnx"
    assert get_spec("CL-1.00").label_file == "cl_tagger_1_00/tag_mapping.json"
    assert get_spec("wd-eva02-large-v3").repo_id == "SmilingWolf/wd-eva02-large-tagger-v3"
    with pytest.raises(UnknownModel, match="--model-path"):
        get_spec("nope")


def test_cached_models_resolve_offline_fast(fake_hf_cache):
    t = time.monotonic()
    cl = hub.resolve(get_spec("cl-1.02"))
    wd = hub.resolve(get_spec("wd-vit-v3"))
    assert time.monotonic() - t < 1.0
    assert cl.model_path.read_bytes() == tiny_models()["cl"].read_bytes()
    assert cl.version == f"cl-1.02@{COMMIT_CL}" and wd.version == f"wd-vit-v3@{COMMIT_WD}"
    assert wd.family == "wd" and cl.family == "cl"


def test_missing_version_offline_is_immediate_and_says_what_to_do(fake_hf_cache):
    t = time.monotonic()
    with pytest.raises(hub.ModelUnavailable) as exc:
        hub.resolve(get_spec("cl-1.01"))
    assert time.monotonic() - t < 1.0  # no retry loop
    msg = str(exc.value)
    assert "HF_HUB_OFFLINE" in msg and "sushitui models download cl-1.01" in msg and "--model-path" in msg
    with pytest.raises(hub.ModelUnavailable, match="not in the cache"):
        hub.download(get_spec("cl-1.01"))


def test_pinned_revision_resolves(fake_hf_cache):
    from dataclasses import replace

    spec = replace(get_spec("wd-vit-v3"), revision=COMMIT_WD)
    assert hub.locate(spec).revision == COMMIT_WD
    assert hub.locate(replace(spec, revision="b" * 40)) is None


def test_hf_home_is_honoured_when_hub_cache_is_unset(tmp_path, monkeypatch):
    make_fake_hf_cache(tmp_path / "home" / "hub")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / "hub"
    assert hub.locate(get_spec("cl-1.02")) is not None


def test_local_files_and_folder(tmp_path):
    m = tiny_models()
    f = hub.local_files(m["wd"], m["wd_csv"])
    assert f.family == "wd" and f.version.startswith("file:")
    folder = tmp_path / "my_tagger"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(m["cl"].read_bytes())
    (folder / "tag_mapping.json").write_bytes(m["cl_json"].read_bytes())
    g = hub.local_files(folder)
    assert g.family == "cl" and g.key == "my_tagger"
    with pytest.raises(hub.ModelUnavailable, match="does not exist"):
        hub.local_files(tmp_path / "nope.onnx", m["wd_csv"])


def test_cli_models_list_json_shows_what_is_cached(fake_hf_cache, capsys):
    from sushitui.cli import main

    assert main(["models", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cached = {r["key"]: r["cached"] for r in data["models"]}
    assert cached["cl-1.02"] and cached["wd-vit-v3"] and not cached["cl-1.01"] and not cached["wd-eva02-large-v3"]
    assert data["offline"] is True and data["cache_dir"] == str(fake_hf_cache)
    assert main(["models", "list"]) == 0
    assert "cl-1.02*" in capsys.readouterr().out


def test_cli_models_download_offline_miss_exits_nonzero(fake_hf_cache, capsys):
    from sushitui.cli import main

    assert main(["models", "download", "cl-1.01"]) == 1
    assert "sushitui: error: model cl-1.01" in capsys.readouterr().err
    assert main(["models", "download", "wd-vit-v3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == f"wd-vit-v3@{COMMIT_WD}"


def test_unreachable_hub_fails_at_once_without_huggingface_retries(fake_hf_cache, monkeypatch):
    """No network and HF_HUB_OFFLINE unset: huggingface_hub alone retries for ~23 s."""
    import socket

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "is_offline", lambda: False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_dns)
    called = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: called.append(a))
    spec = get_spec("cl-1.01")  # not in the fake cache
    t = time.monotonic()
    with pytest.raises(hub.ModelUnavailable) as exc:
        hub.download(spec)
    assert time.monotonic() - t < 2.0
    assert not called
    message = str(exc.value)
    assert "huggingface.co:443" in message and "does not resolve" in message
    assert "sushitui models download cl-1.01" in message and "--model-path" in message
