"""Test support for tests/test_ray_*.py: one local Ray cluster of 2 CPUs per test module,
its temp dir under the test's tmp, shut down after the module (no Ray process survives)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def start_local_ray(num_cpus: int = 2):
    import ray

    # Ray's socket paths must stay under ~107 bytes: a short temp dir, not pytest's deep tmp_path
    tmp = Path(tempfile.mkdtemp(prefix="sr-"))
    # workers import the tests' helpers (tagger_support, a test's runner factory) by name
    here = str(Path(__file__).parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        runtime_env={"env_vars": {"PYTHONPATH": path}},
        num_cpus=num_cpus,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        object_store_memory=200 * 1024 * 1024,
        _temp_dir=str(tmp),
    )
    return ray, tmp


def stop_local_ray(ray, tmp: Path) -> None:
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    # ray.shutdown() ends every process of a cluster that this process started; check it
    out = subprocess.run(["pgrep", "-f", str(tmp)], capture_output=True, text=True).stdout.split()
    left = [int(p) for p in out if int(p) != os.getpid()]
    assert not left, f"Ray processes survived the cluster's shutdown: {left}"


@pytest.fixture(scope="module")
def local_ray():
    ray, tmp = start_local_ray()
    try:
        yield ray
    finally:
        stop_local_ray(ray, tmp)
