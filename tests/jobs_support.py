"""Test support for tests/test_jobs_*.py: a slow tiny tagger (so that a job is still
running when a test kills or cancels it), a dataset of distinct images, polling the job
table from outside. Not a test module."""

from __future__ import annotations

import functools
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RED = (220, 20, 20)


@functools.lru_cache(maxsize=None)
def slow_model() -> tuple[Path, Path]:
    """(model.onnx, selected_tags.csv): the tiny WD-like tagger of tagger_support plus a
    useless matrix product (scaled by 0) that makes each image take some tens of ms."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tagger_support import WD_CSV, WD_LABELS, _probe

    W, b = _probe(WD_LABELS)
    heavy = np.random.default_rng(0).random((1344, 768), dtype=np.float32)
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(np.array([255.0], np.float32), "s"),
        numpy_helper.from_array(heavy, "H"),
        numpy_helper.from_array(np.array([-1, 1344], np.int64), "shape"),
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Div", ["m", "s"], ["m01"]),
        helper.make_node("MatMul", ["m01", "W"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Reshape", ["input", "shape"], ["rows"]),
        helper.make_node("MatMul", ["rows", "H"], ["busy"]),
        helper.make_node("ReduceSum", ["busy"], ["busy_sum"], keepdims=0),
        helper.make_node("Mul", ["busy_sum", "zero"], ["nothing"]),
        helper.make_node("Add", ["logits", "nothing"], ["logits2"]),
        helper.make_node("Sigmoid", ["logits2"], ["output"]),
    ]
    g = helper.make_graph(
        nodes,
        "slow_wd",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 448, 448, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", WD_LABELS])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    root = Path(tempfile.mkdtemp(prefix="sushitui-slow-model-"))
    onnx.save(m, str(root / "model.onnx"))
    (root / "selected_tags.csv").write_text(WD_CSV, encoding="utf-8")
    return root / "model.onnx", root / "selected_tags.csv"


def image_dataset(root: Path, name: str, n: int):
    """A registered dataset of ``n`` distinct small images (no captions yet)."""
    from tagger_support import make_dataset

    return make_dataset(root, {f"img{i:03d}.png": (RED, (48, 20 + i)) for i in range(n)}, name=name)[0]


def autotag_argv(db_path: Path, name: str, *extra: str) -> list[str]:
    model, labels = slow_model()
    return [
        "--db",
        str(db_path),
        "autotag",
        name,
        "--model-path",
        str(model),
        "--labels",
        str(labels),
        "--workers",
        "0",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        *extra,
    ]


def cli(*argv: str, timeout: float = 60) -> "subprocess.CompletedProcess":
    """``sushitui ARGV`` in a process of its own (as a user types it)."""
    return subprocess.run([sys.executable, "-m", "sushitui", *argv], capture_output=True, text=True, timeout=timeout)


def query(db_path: Path, sql: str, *params):
    for _ in range(50):
        try:
            con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
            try:
                return con.execute(sql, params).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError:
            time.sleep(0.05)
    raise AssertionError(f"the database stayed locked: {sql}")


def wait_for(predicate, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_state(job_id: int, states=("done", "failed", "cancelled", "interrupted"), timeout=40):
    """The job (sushitui.jobs.JobInfo) once its state is one of ``states``, read through
    the database the test has open; dead workers are noticed as any sushitui start does."""
    from sushitui.jobs import get_job, reap

    def check():
        reap()
        job = get_job(job_id)
        return job if job.state in states else None

    return wait_for(check, timeout, f"job {job_id} to reach {states}")


def detach(db_path: Path, argv: list[str]) -> int:
    """``sushitui ARGV --detach`` (in this process: the worker is a process of its own
    anyway); returns the job id."""
    import contextlib
    import io

    from sushitui.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--detach"])
    assert code == 0, out.getvalue()
    first = out.getvalue().splitlines()[0]  # "job 7: sushitui autotag ..."
    assert first.startswith("job "), out.getvalue()
    return int(first.split(":")[0].split()[1])
