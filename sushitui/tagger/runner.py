"""The onnxruntime session: provider choice and honest reporting (AT-2), batching.

onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU or CUDA
libraries and then silently runs on the CPU; the only truthful signal is
``session.get_providers()[0]`` after creation, which is what we report.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sushitui.errors import UserError
from sushitui.tagger.postprocess import to_probabilities

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cuda", "cpu")


class RunnerError(UserError):
    """The model cannot be used as asked; the message says why and what to do."""


@dataclass
class ProviderInfo:
    requested: str  # auto | cuda | cpu
    active: str  # the provider the session really runs on
    device_id: int | None
    ort_version: str
    cuda_version: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def on_gpu(self) -> bool:
        return self.active == CUDA

    def describe(self) -> str:
        """One line for the user, e.g. ``CPUExecutionProvider (CUDA unavailable: ...)``."""
        if self.on_gpu:
            return f"{self.active} device={self.device_id}"
        if self.requested == "cpu":
            return f"{self.active} (CPU requested)"
        why = self.notes[0] if self.notes else "no CUDA device or libraries"
        return f"{self.active} (CUDA unavailable, fell back to CPU: {why})"

    def as_dict(self) -> dict:
        return {
            "requested": self.requested,
            "active": self.active,
            "device_id": self.device_id if self.on_gpu else None,
            "onnxruntime": self.ort_version,
            "ort_cuda_version": self.cuda_version,
            "notes": self.notes,
            "description": self.describe(),
        }


def _cuda_build_version() -> str | None:
    try:
        from onnxruntime.capi import build_and_package_info as info

        return getattr(info, "cuda_version", None)
    except Exception:  # noqa: BLE001 - onnxruntime's build info differs by version and build: "unknown" then
        log.debug("reading onnxruntime's CUDA version failed", exc_info=True)
        return None


def create_session(model_path: str | os.PathLike, device: str = "auto", device_id: int = 0, threads: int | None = None):
    """(session, ProviderInfo). ``auto`` falls back to CPU (reported); ``cuda`` raises
    RunnerError when CUDA is not really active."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise RunnerError(f"unknown device {device!r}: use auto, cuda or cpu")
    avail = ort.get_available_providers()
    notes: list[str] = []
    want_cuda = device in ("auto", "cuda") and CUDA in avail
    if device == "cuda" and CUDA not in avail:
        raise RunnerError(
            "CUDA was requested but this onnxruntime has no CUDA support "
            f"(providers: {', '.join(avail)}); install onnxruntime-gpu[cuda,cudnn] or use --device cpu"
        )
    if want_cuda and hasattr(ort, "preload_dlls"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):  # it prints failures; keep stdout clean for --json
            try:
                ort.preload_dlls()
            except Exception as exc:  # noqa: BLE001 - raises what the platform's loader does; never fatal: the session outcome counts
                log.debug("onnxruntime.preload_dlls failed", exc_info=True)
                notes.append(f"preload_dlls: {exc}")
        missing = [
            ln.split(":")[0].replace("Failed to load ", "")
            for ln in buf.getvalue().splitlines()
            if ln.startswith("Failed to load")
        ]
        if missing:
            notes.append("missing CUDA libraries: " + ", ".join(missing))
    so = ort.SessionOptions()
    if want_cuda:
        so.intra_op_num_threads = threads or 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list = [
            (
                CUDA,
                {
                    "device_id": int(device_id),
                    "cudnn_conv_algo_search": "HEURISTIC",
                    "arena_extend_strategy": "kSameAsRequested",
                },
            ),
            CPU,
        ]
    else:
        if threads:
            so.intra_op_num_threads = threads
        # Spinning ORT threads would steal the cores the decode workers need between batches.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [CPU]
    ort.set_default_logger_severity(4 if want_cuda else 3)  # we report the outcome ourselves
    try:
        session = ort.InferenceSession(str(model_path), so, providers=providers)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunnerError(f"{model_path}: onnxruntime cannot load the model: {first}") from exc
    finally:
        ort.set_default_logger_severity(2)
    active = session.get_providers()[0]
    info = ProviderInfo(
        device, active, int(device_id) if active == CUDA else None, ort.__version__, _cuda_build_version(), notes
    )
    if device == "cuda" and active != CUDA:
        raise RunnerError(
            "CUDA was requested but the session runs on "
            + active
            + ": "
            + "; ".join(notes or ["no usable GPU"])
            + ". Install onnxruntime-gpu[cuda,cudnn] matching the driver, or use --device cpu"
        )
    return session, info


class Runner:
    """A loaded model: runs batches, pads to a fixed batch size, returns probabilities."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        family: str,
        num_labels: int,
        *,
        device: str = "auto",
        device_id: int = 0,
        batch_size: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.family = family
        self.session, self.provider = create_session(model_path, device, device_id, threads)
        self.notes: list[str] = []
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.dtype = np.float16 if "float16" in inp.type else np.float32
        shape = list(inp.shape)
        if len(shape) != 4:
            raise RunnerError(f"{Path(model_path).name}: expected a 4-D image input, got shape {shape}")
        if family == "wd":
            size_dim, ok = shape[1], shape[3] in (3, "3") or not isinstance(shape[3], int)
            layout = "[N, S, S, 3] (NHWC)"
        else:
            size_dim, ok = shape[2], shape[1] in (3, "3") or not isinstance(shape[1], int)
            layout = "[N, 3, S, S] (NCHW)"
        if not ok:
            raise RunnerError(
                f"{Path(model_path).name}: input shape {shape} does not fit the {family.upper()} family, which expects {layout}; "
                "check the label file / family"
            )
        self.size = size_dim if isinstance(size_dim, int) and size_dim > 0 else 448
        wanted = batch_size or (32 if self.provider.on_gpu else 4)
        fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.fixed_batch = fixed is not None
        if fixed is not None and fixed != wanted:
            self.notes.append(
                f"the model's batch size is fixed to {fixed}; running {fixed} image(s) per batch instead of {wanted}"
            )
        self.batch_size = fixed or wanted
        self.num_labels = num_labels
        self.runs = 0  # session.run calls (tests count these to prove cache hits)
        self.logit_guard = False
        out_shape = self.session.get_outputs()[0].shape
        out_n = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None
        self.output_size: int | None = out_n
        self._check_output_size(out_n)

    def _check_output_size(self, out_n: int | None) -> None:
        if out_n is None or out_n == self.num_labels:
            return
        if out_n > self.num_labels:
            note = f"the model has {out_n} outputs but the label file only {self.num_labels} labels; extra outputs are ignored"
        else:
            note = f"the model has only {out_n} outputs but the label file {self.num_labels} labels; labels beyond {out_n} are never emitted"
        if note not in self.notes:
            self.notes.append(note)

    def warm_up(self) -> None:
        """One zero batch so the first real batch does not pay for kernel selection."""
        self._run(np.zeros(self.input_shape(self.batch_size), self.dtype))
        self.runs -= 1  # not a tagging run

    def input_shape(self, n: int) -> tuple[int, ...]:
        s = self.size
        return (n, s, s, 3) if self.family == "wd" else (n, 3, s, s)

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.runs += 1
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def predict(self, batch: np.ndarray, valid: int | None = None) -> np.ndarray:
        """Model inputs (already in the family layout) → (n, min(outputs, labels)) probabilities.

        A short batch is padded with zeros to the batch size (a fixed shape avoids
        re-tuning and arena growth on the GPU) and the padding rows are dropped."""
        if valid is not None and batch.shape[0] == self.batch_size:
            # already padded by the caller (in its preallocated buffer: no 77 MB copy)
            out = np.asarray(self._run(batch if batch.dtype == self.dtype else batch.astype(self.dtype)))
            return self._finish(out[:valid])
        n = batch.shape[0]
        if n == 0:
            return np.zeros((0, self.num_labels), np.float32)
        outs = []
        for start in range(0, n, self.batch_size):
            part = batch[start : start + self.batch_size]
            k = part.shape[0]
            if k < self.batch_size:
                pad = np.zeros((self.batch_size - k, *part.shape[1:]), dtype=part.dtype)
                part = np.concatenate([part, pad])
            if part.dtype != self.dtype:
                part = part.astype(self.dtype)
            out = np.asarray(self._run(part))
            if out.ndim != 2 or out.shape[0] != self.batch_size:
                raise RunnerError(
                    f"unexpected model output shape {out.shape}; expected ({self.batch_size}, {self.num_labels})"
                )
            outs.append(out[:k])
        return self._finish(np.concatenate(outs) if len(outs) > 1 else outs[0])

    def _finish(self, out: np.ndarray) -> np.ndarray:
        if out.ndim != 2:
            raise RunnerError(f"unexpected model output shape {out.shape}; expected (batch, {self.num_labels})")
        self._check_output_size(out.shape[1])
        probs, guard = to_probabilities(out, self.family)
        if guard and not self.logit_guard:
            self.logit_guard = True
            self.notes.append("the WD model's outputs are outside 0..1; treating them as logits (applying sigmoid)")
        # Width is min(outputs, labels): extra outputs are dropped; with fewer outputs the
        # labels beyond them simply have no score (select_tags never emits them).
        return np.ascontiguousarray(probs[:, : self.num_labels], dtype=np.float32)
