"""The CUDA path, for machines with an NVIDIA GPU: ``python -m pytest -m gpu``.

Deselected unless ``-m`` names it (tests/conftest.py), so CI on CPU machines and
``-m "not slow"`` neither run nor skip it. Asked for explicitly, it FAILS when
CUDAExecutionProvider is not really active (checked by creating a session, since
get_available_providers() lists CUDA even without a GPU) instead of passing quietly."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from tagger_support import WD_LABELS, tiny_models


def _cuda_active() -> tuple[bool, str]:
    try:
        from sushitui.tagger.runner import CUDA, create_session

        _, info = create_session(tiny_models()["wd"], device="auto")
        return info.active == CUDA, info.describe()
    except Exception as exc:  # noqa: BLE001 - a probe: any failure to start a CUDA session means "no GPU here", and says why
        return False, str(exc)


pytestmark = [pytest.mark.gpu]


def test_cuda_is_active_reported_and_agrees_with_cpu():
    active, why = _cuda_active()
    assert active, f"CUDAExecutionProvider is not active here: {why}"
    from sushitui.tagger.preprocess import square_pixels, to_model_input
    from sushitui.tagger.runner import CUDA, Runner

    gpu = Runner(tiny_models()["wd"], "wd", WD_LABELS, device="cuda", device_id=0, batch_size=32)
    assert gpu.provider.active == CUDA and gpu.provider.device_id == 0
    assert gpu.provider.describe().startswith("CUDAExecutionProvider device=0")
    cpu = Runner(tiny_models()["wd"], "wd", WD_LABELS, device="cpu", batch_size=32)
    imgs = [Image.new("RGB", (300, 200), (255, 0, 0)), Image.new("RGB", (200, 300), (0, 0, 255))] * 16
    x = to_model_input(np.stack([square_pixels(i) for i in imgs]), "wd")
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), atol=1e-3)
    gpu.warm_up()
    t = time.perf_counter()
    for _ in range(10):
        gpu.predict(x)
    rate = 320 / (time.perf_counter() - t)
    assert rate > 100  # a tiny model on a GPU: anything slower means it is not really on the GPU path
