"""Auto-tagging on a Ray cluster (issue 20): ``autotag_ray(...)`` = ``autotag(...)`` with
decoding and inference spread over Ray's CPUs and GPUs.

    report = autotag_ray("my-dataset", address="auto", model="cl-1.02", progress=cb)

Only decode + inference move to the cluster. Everything else is the local run
(``sushitui.tagger.autotag``): selection, hashes, the score cache (which decides what
is left, so a killed run resumes), thresholds, dictionary mapping, progress and the
writes through ``set_tags_many`` — done by this process, the only writer of the
catalogue. The Ray Data pipeline:

    (index, path) rows from the driver
      → map_batches(decode_rows)   tasks on CPUs: ``decode_file``, the local decode code
      → map_batches(TagActor)      an actor pool, 1 GPU each on a GPU cluster, running the
                                   local ``Runner`` (same onnxruntime session and batching)
      → iter_batches               streamed back here as BatchResult / Failure events

Images must be readable at the same path on every node. A node that cannot read one
stops the run with a ``NodeCannotRead`` naming the node and the paths (every retry
there would fail the same way). Ray is imported only here and only when a run needs
inference (a fully cached re-run never starts Ray).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from sushitui.errors import UserError
from sushitui.progress import CancelToken, ProgressEvent
from sushitui.tagger.pipeline import BatchResult, Failure
from sushitui.tagger.runner import CPU, CUDA, Runner, RunnerError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'sushitui[ray]'"
# Restarts of a dead model actor and retries of its batch before the run gives up (Ray's
# default is forever, which turns a model that always crashes its process into a hang).
ACTOR_RESTARTS = 3
MAX_BLOCKS = 20_000
UNREADABLE_SHOWN = 5


class RayUnavailable(UserError):
    """``--ray`` without Ray installed, or a cluster that cannot be reached."""


class NodeCannotRead(UserError):
    """A Ray node cannot read image files that the driver can: the cluster does not
    share the dataset's storage at the same path."""


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] part of the extra
    except ImportError as exc:
        raise RayUnavailable(f"--ray needs Ray, which is not installed ({exc.name}): {INSTALL_HINT}") from exc
    return ray


class Cluster:
    """A Ray connection opened on first use: ``address`` None starts a local Ray
    (all this machine's CPUs/GPUs), ``"auto"`` or ``"HOST:6379"`` joins a cluster this
    machine is a node of. ``ray://`` (Ray Client) is refused with a clear message: Ray
    Data's streaming executor needs a driver with its own core worker (Ray 2.60 fails
    with "'Worker' object has no attribute 'core_worker'"). A Ray already initialised in
    this process (a script, the tests) is used as it is and left running."""

    def __init__(self, address: str | None = None, *, init_kwargs: dict | None = None) -> None:
        if address and address.startswith("ray://"):  # refused before any work is done
            raise RayUnavailable(
                f"--ray {address}: Ray Data cannot run through Ray Client (ray://). Run sushitui on a node "
                "of the cluster (the head, or a machine that joined it with `ray start --address HEAD:6379`) "
                "with --ray auto, or --ray HEAD:6379"
            )
        self.address = address or None
        self.init_kwargs = dict(init_kwargs or {})
        self.started = False
        self._ray = None

    def ray(self):
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "log_to_driver": False,  # worker output would land on our stdout/stderr
                "logging_level": logging.WARNING,
            }
            if self.address is None:
                kwargs["include_dashboard"] = False  # a run's own Ray serves no web UI
            kwargs.update(self.init_kwargs)
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                raise RayUnavailable(f"cannot start or reach {where}: {exc}") from exc
            self.started = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own, about its own settings
            ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # progress is ours (ProgressEvent), not Ray's bars on stderr
        ctx.print_on_execution_start = False
        for handler in logging.getLogger("ray.data").handlers:
            # the console one (its warnings are about its own settings, e.g. "Progress bars
            # disabled"); the session's ray-data.log keeps everything
            if "File" not in type(handler).__name__:
                handler.setLevel(max(handler.level, logging.ERROR))
        self._ray = ray
        return ray

    def describe(self) -> str:
        return f"Ray cluster {self.address}" if self.address else "local Ray"

    def close(self) -> None:
        if self.started and self._ray is not None:
            self._ray.shutdown()
        self.started = False
        self._ray = None


@contextmanager
def cluster(address: str | None = None, **init_kwargs) -> Iterator[Cluster]:
    c = Cluster(address, init_kwargs=init_kwargs)
    try:
        yield c
    finally:
        c.close()


class ClusterProvider:
    """Where inference runs, in the ProviderInfo shape that reports use. GPU actors run
    with ``device="cuda"``: a node whose session falls back to CPU fails loudly instead
    of tagging a million images at CPU speed."""

    def __init__(self, where: str, on_gpu: bool, actors: int, cpus: float, requested: str) -> None:
        self.where, self.on_gpu, self.actors, self.cpus, self.requested = where, on_gpu, actors, cpus, requested
        self.active = CUDA if on_gpu else CPU

    def describe(self) -> str:
        each = "1 GPU each" if self.on_gpu else "on CPU"
        return f"{self.where}: {self.actors} model actor(s) ({self.active}, {each}), decoding on {self.cpus:g} CPU(s)"

    def as_dict(self) -> dict:
        return {
            "requested": self.requested,
            "active": self.active,
            "device_id": None,
            "ray": {"where": self.where, "actors": self.actors, "gpu_per_actor": 1 if self.on_gpu else 0},
            "notes": [],
            "description": self.describe(),
        }


class RayTagger:
    """The driver's stand-in for ``Runner`` (autotag's ``runner_factory``).

    The model is opened once here on the CPU to learn and check what the local run
    checks (input size and layout, a fixed batch size, output width); the inference
    itself runs in the actors. ``runs`` counts model batches as results arrive."""

    def __init__(
        self,
        cluster: Cluster,
        model_path,
        family: str,
        num_labels: int,
        *,
        device: str = "auto",
        device_id: int = 0,
        batch_size: int | None = None,
        actors: int | None = None,
        actor_runner_factory: Callable[..., Runner] | None = None,
    ) -> None:
        ray = cluster.ray()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 1))
        if device == "cuda" and gpus == 0:
            raise RunnerError(f"--device cuda: {cluster.describe()} has no GPU (resources: {resources})")
        self.on_gpu = gpus > 0 and device != "cpu"
        self.actors = actors or (gpus if self.on_gpu else max(1, int(cpus) // 2))
        if self.on_gpu:
            self.actors = min(self.actors, gpus)
            self.actor_cpus = 1.0
        else:
            # CPU actors leave at least half the CPUs to the decode tasks (an actor that held
            # a whole CPU each on a 2-CPU cluster would leave decoding none: a deadlock)
            self.actor_cpus = min(1.0, cpus / (2 * self.actors))
        wanted = batch_size or (32 if self.on_gpu else 4)
        probe = Runner(model_path, family, num_labels, device="cpu", batch_size=wanted, threads=1)
        self.model_path = str(model_path)
        self.family = family
        self.num_labels = num_labels
        self.size = probe.size
        self.batch_size = probe.batch_size
        self.notes = list(probe.notes)
        self.width = min(probe.output_size or num_labels, num_labels)
        del probe
        self.device = "cuda" if self.on_gpu else "cpu"
        self.provider = ClusterProvider(cluster.describe(), self.on_gpu, self.actors, cpus, device)
        self.runs = 0
        self.cluster = cluster
        self.actor_runner_factory = actor_runner_factory

    def warm_up(self) -> None:
        """Each GPU actor warms its own session (TagActor)."""

    def input_shape(self, n: int) -> tuple[int, ...]:
        s = self.size
        return (n, s, s, 3) if self.family == "wd" else (n, 3, s, s)


# --- what runs on the nodes -------------------------------------------------------------------


def decode_rows(batch: dict[str, np.ndarray], *, size: int, draft: bool, family: str) -> dict[str, np.ndarray]:
    """A Ray task: the local decoder (``decode_file``) over a batch of (index, path) rows.

    Failures are rows (``ok`` False), as in the local pipeline; ``unreadable`` marks a
    path this node cannot open, which the driver turns into ``NodeCannotRead``."""
    from sushitui.tagger.preprocess import decode_file

    host = socket.gethostname()
    n = len(batch["index"])
    shape = (size, size, 3) if family == "wd" else (3, size, size)
    pixels = np.zeros((n, *shape), np.uint8)
    ok = np.zeros(n, bool)
    unreadable = np.zeros(n, bool)
    errors = [""] * n
    for row, (index, path) in enumerate(zip(batch["index"], batch["path"])):
        path = str(path)
        if not os.access(path, os.R_OK):
            unreadable[row] = True
            errors[row] = "cannot read the file on this node"
            continue
        d = decode_file(int(index), path, size, draft, False, family)
        if d.error is not None or d.pixels is None:
            errors[row] = d.error or "not decoded"
            continue
        pixels[row] = d.pixels
        ok[row] = True
    return {
        "index": np.asarray(batch["index"], np.int64),
        "path": np.asarray(batch["path"]),
        "pixels": pixels,
        "ok": ok,
        "unreadable": unreadable,
        "error": np.asarray(errors, dtype=object),
        "node": np.asarray([host] * n, dtype=object),
    }


class TagActor:
    """A Ray actor: one ``Runner`` (one onnxruntime session; with GPUs, on the GPU Ray
    gave it, which CUDA_VISIBLE_DEVICES makes device 0) over decoded batches."""

    def __init__(
        self,
        model_path: str,
        family: str,
        num_labels: int,
        device: str,
        batch_size: int,
        threads: int,
        width: int,
        runner_factory: Callable[..., Runner] | None = None,
    ) -> None:
        from sushitui.tagger.preprocess import layout_to_input

        self.host = socket.gethostname()
        if not os.access(model_path, os.R_OK):
            raise RunnerError(
                f"node {self.host} cannot read the model file {model_path}: every node needs the model at the same "
                "path (shared storage, or `sushitui models download KEY` on each node)"
            )
        self.runner = (runner_factory or Runner)(
            model_path, family, num_labels, device=device, device_id=0, batch_size=batch_size, threads=threads
        )
        if self.runner.provider.on_gpu:
            self.runner.warm_up()
        self.where = f"{self.host}: {self.runner.provider.describe()}"
        self.width = width
        self.family = family
        self._to_input = layout_to_input
        self.pix = np.empty(self.runner.input_shape(self.runner.batch_size), np.uint8)
        self.tensor = np.empty(self.pix.shape, np.float32)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = self.runner.batch_size
        n = len(batch["index"])
        probs = np.zeros((n, self.width), np.float32)
        good = np.nonzero(batch["ok"])[0]
        for start in range(0, len(good), b):
            rows = good[start : start + b]
            k = len(rows)
            self.pix[:k] = batch["pixels"][rows]
            self.pix[k:] = 0  # the short last batch is padded, as the local pipeline does
            out = self.runner.predict(self._to_input(self.pix, self.family, self.tensor), valid=k)
            probs[rows, : out.shape[1]] = out[:, : self.width]
        return {
            "index": batch["index"],
            "path": batch["path"],
            "ok": batch["ok"],
            "unreadable": batch["unreadable"],
            "error": batch["error"],
            "node": batch["node"],
            "probs": probs,
            "where": np.asarray([self.where] * n, dtype=object),
        }


# --- the driver side --------------------------------------------------------------------------


def _num_blocks(n: int, batch: int, actors: int) -> int:
    # a few model batches per block: small enough to spread over every actor (at least
    # 4 blocks each while there are batches for that) and to redo little when a node
    # dies, few enough that Ray's per-block cost stays small
    return max(1, min(max(math.ceil(n / (4 * batch)), min(math.ceil(n / batch), 4 * actors)), MAX_BLOCKS))


def _unreadable_error(rows: list[tuple[str, str]]) -> NodeCannotRead:
    nodes = sorted({node for node, _ in rows})
    shown = "; ".join(f"{node}: {path}" for node, path in rows[:UNREADABLE_SHOWN])
    more = f" (and {len(rows) - UNREADABLE_SHOWN} more)" if len(rows) > UNREADABLE_SHOWN else ""
    return NodeCannotRead(
        f"Ray node(s) {', '.join(nodes)} cannot read image files that this machine can: {shown}{more}. "
        "Every node must see the dataset at the same path (shared storage mounted at the same place); "
        "fix the mount and run the same command again (finished images are cached)."
    )


def _model_stage(ray, ds, runner: RayTagger, b: int):
    return ds.map_batches(
        TagActor,
        fn_constructor_kwargs={
            "model_path": runner.model_path,
            "family": runner.family,
            "num_labels": runner.num_labels,
            "device": runner.device,
            "batch_size": b,
            "threads": max(1, int(runner.actor_cpus)),
            "width": runner.width,
            "runner_factory": runner.actor_runner_factory,
        },
        batch_size=b,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=runner.actors),
        num_gpus=1 if runner.on_gpu else 0,
        num_cpus=runner.actor_cpus,
        max_restarts=ACTOR_RESTARTS,
        max_task_retries=ACTOR_RESTARTS,
    )


def ray_pipeline(
    paths: Sequence[str],
    runner: RayTagger,
    *,
    draft: bool = False,
    workers: int | None = None,
    cancel: CancelToken | None = None,
    notes: list[str] | None = None,
    **_ignored,
) -> Iterator[BatchResult | Failure]:
    """``run_pipeline`` on Ray (autotag's ``pipeline``): the same events, each path at
    most once however often Ray retries a task or restarts an actor."""
    ray = runner.cluster.ray()
    b = runner.batch_size
    rows = [{"index": i, "path": p} for i, p in enumerate(paths)]
    ds = ray.data.from_items(rows, override_num_blocks=_num_blocks(len(rows), b, runner.actors))
    del rows
    ds = ds.map_batches(
        decode_rows,
        fn_kwargs={"size": runner.size, "draft": draft, "family": runner.family},
        batch_size=b,
        batch_format="numpy",
        num_cpus=1,
    )
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing max_restarts/max_task_retries this way but has no
        # named parameter for them yet; its default (retry forever) would turn a model
        # that always kills its process into a run that never ends
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        ds = _model_stage(ray, ds, runner, b)
    seen: set[int] = set()
    where: set[str] = set()
    try:
        with stream_batches(ds) as batches:
            for out in batches:
                unreadable = [
                    (str(node), str(path))
                    for node, path, bad in zip(out["node"], out["path"], out["unreadable"])
                    if bad
                ]
                if unreadable:
                    raise _unreadable_error(unreadable)
                where.update(str(w) for w in out["where"])
                good: list[int] = []
                for row, index in enumerate(out["index"].tolist()):
                    if index in seen:  # a retried block delivered again: never written twice
                        continue
                    seen.add(index)
                    if out["ok"][row]:
                        good.append(row)
                    else:
                        yield Failure(index, None, str(out["error"][row]))
                if good:
                    runner.runs += math.ceil(len(good) / b)
                    yield BatchResult([int(out["index"][r]) for r in good], [None] * len(good), out["probs"][good])
                if cancel is not None and cancel.cancelled:
                    break
    finally:
        if notes is not None:
            notes.extend(f"model actor on {w}" for w in sorted(where))


@contextmanager
def stream_batches(ds) -> Iterator[Any]:
    """The dataset's output batches, one block at a time. Closed on the way out, so a
    cancelled or failed run stops the actors' work; a UserError raised in an actor is
    raised again unwrapped, so the user sees its message, not Ray's traceback."""
    batches = ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
    try:
        yield batches
    except Exception as exc:
        cause = _user_error_in(exc)
        if cause is not None and cause is not exc:
            raise type(cause)(str(cause)) from exc
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _user_error_in(exc: BaseException) -> UserError | None:
    """A UserError raised in an actor (e.g. a node without the model file) arrives
    wrapped in Ray's errors: find it so the user sees its message, not a traceback."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 20:
        if isinstance(cur, UserError):
            return cur
        inner = getattr(cur, "cause", None)
        if isinstance(inner, BaseException) and inner is not cur:
            cur = inner
        else:
            cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def autotag_ray(
    dataset,
    query: str | None = None,
    item_ids: Sequence[int] | None = None,
    options=None,
    *,
    address: str | None = None,
    actors: int | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
    init_kwargs: dict | None = None,
    actor_runner_factory: Callable[..., Runner] | None = None,
    **overrides,
):
    """``autotag`` with decode + inference on Ray (see the module docstring).

    ``address``: None starts a local Ray, ``"auto"`` or ``"HEAD:6379"`` joins the
    cluster this machine is a node of. ``actors``: model actors (default: one per GPU, else half the CPUs). Ray is
    imported first, so a missing extra is reported before any work."""
    from sushitui.tagger.autotag import AutotagError, AutotagOptions, autotag

    import_ray()
    opts = options or AutotagOptions()
    if overrides:
        opts = AutotagOptions(**{**asdict(opts), **overrides})
    with cluster(address, **(init_kwargs or {})) as c:

        def factory(model_path, family, num_labels, *, device="auto", device_id=0, batch_size=None):
            return RayTagger(
                c,
                model_path,
                family,
                num_labels,
                device=device,
                device_id=device_id,
                batch_size=batch_size,
                actors=actors,
                actor_runner_factory=actor_runner_factory,
            )

        try:
            return autotag(
                dataset,
                query,
                item_ids,
                opts,
                progress=progress,
                cancel=cancel,
                runner_factory=factory,
                pipeline=ray_pipeline,
            )
        except RunnerError as exc:
            raise AutotagError(str(exc)) from exc
