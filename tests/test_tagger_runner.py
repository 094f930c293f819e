"""The onnxruntime runner on tiny models: layouts, batching, output sizes, providers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tagger_support import CL_LABELS, WD_LABELS, tiny_models

from sushitui.tagger.preprocess import square_pixels, to_model_input
from sushitui.tagger.runner import CPU, Runner, RunnerError, create_session


def _batch(family, *imgs, size=448):
    return to_model_input(np.stack([square_pixels(i, size) for i in imgs]), family)


RED = Image.new("RGB", (300, 200), (255, 0, 0))
BLUE = Image.new("RGBA", (200, 300), (0, 0, 255, 255))


@pytest.mark.parametrize("family,model,labels", [("wd", "wd", WD_LABELS), ("cl", "cl", CL_LABELS)])
def test_probe_model_sees_channel_order_layout_and_padding(family, model, labels):
    r = Runner(tiny_models()[model], family, labels, device="cpu")
    p = r.predict(_batch(family, RED, BLUE))
    assert p.shape == (2, labels)
    assert p[0, 0] > 0.95 and p[0, 1] < 0.25  # red → tag 0 (channel 2 of BGR)
    assert p[1, 1] > 0.95 and p[1, 0] < 0.25  # blue → tag 1
    assert ((p >= 0) & (p <= 1)).all()  # cl logits went through sigmoid, WD did not twice
    if family == "wd":
        assert p[0, 1] == pytest.approx(0.208, abs=0.01)  # white padding: the off channel is not 0


def test_partial_batch_is_padded_and_equals_one_by_one():
    r = Runner(tiny_models()["cl"], "cl", CL_LABELS, device="cpu", batch_size=4)
    imgs = [RED, BLUE, Image.new("RGB", (50, 80), (0, 255, 0))]
    together = r.predict(_batch("cl", *imgs))
    assert r.runs == 1  # three images, one padded batch of 4
    alone = np.concatenate([r.predict(_batch("cl", i)) for i in imgs])
    np.testing.assert_allclose(together, alone, rtol=1e-6)


def test_fixed_batch_model_runs_per_image_and_says_so():
    r = Runner(tiny_models()["wd_fixed1"], "wd", WD_LABELS, device="cpu", batch_size=8)
    assert r.batch_size == 1 and r.fixed_batch
    assert any("fixed to 1" in n for n in r.notes)
    p = r.predict(_batch("wd", RED, BLUE, RED))
    assert p.shape == (3, WD_LABELS) and r.runs == 3
    assert p[1, 1] > 0.95


def test_output_size_mismatches_are_reported_and_handled():
    wide = Runner(tiny_models()["wd_wide"], "wd", WD_LABELS, device="cpu")
    assert wide.predict(_batch("wd", RED)).shape == (1, WD_LABELS)
    assert any("extra outputs are ignored" in n for n in wide.notes)
    narrow = Runner(tiny_models()["wd_narrow"], "wd", WD_LABELS, device="cpu")
    assert narrow.predict(_batch("wd", RED)).shape == (1, 5)
    assert any("never emitted" in n for n in narrow.notes)


def test_family_layout_mismatch_is_refused():
    with pytest.raises(RunnerError, match="does not fit the CL family"):
        Runner(tiny_models()["wd"], "cl", WD_LABELS, device="cpu")


def test_cpu_request_reports_cpu():
    _, info = create_session(tiny_models()["wd"], device="cpu")
    assert info.active == CPU and info.describe() == "CPUExecutionProvider (CPU requested)"


@pytest.fixture
def fake_gpu_package_without_cuda(monkeypatch):
    """onnxruntime-gpu on a machine without a usable GPU: CUDA is 'available', preload
    prints failures on stdout, and the session silently runs on the CPU."""
    import onnxruntime as ort

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(
        ort,
        "preload_dlls",
        lambda *a, **k: print("Failed to load libcublasLt.so.13: cannot open shared object file"),
        raising=False,
    )

    def cpu_only(path, so=None, providers=None, **kw):
        return real(path, so, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", cpu_only)


def test_auto_falls_back_to_cpu_and_says_why(fake_gpu_package_without_cuda, capsys):
    _, info = create_session(tiny_models()["wd"], device="auto")
    assert info.active == CPU and not info.on_gpu
    assert "fell back to CPU" in info.describe() and "libcublasLt.so.13" in info.describe()
    assert capsys.readouterr().out == ""  # preload_dlls chatter kept off stdout


def test_cuda_requested_but_not_active_fails_loudly(fake_gpu_package_without_cuda):
    with pytest.raises(RunnerError, match="CUDA was requested but the session runs on CPUExecutionProvider"):
        create_session(tiny_models()["wd"], device="cuda")


def test_cuda_requested_without_cuda_build_fails(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(RunnerError, match="no CUDA support"):
        create_session(tiny_models()["wd"], device="cuda")


def test_unloadable_model_is_a_clear_error(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"not a model")
    with pytest.raises(RunnerError, match="cannot load the model"):
        Runner(p, "wd", 3, device="cpu")
