"""VLM captioning on a Ray cluster (issue 20): ``caption_ray(...)`` = ``caption_items(...)``
with image encoding and the endpoint requests done by Ray actors.

Only encode + send move to the cluster; planning, the answer cache (which decides what
is left), post-processing, flags and the writes through ``set_texts_many`` stay in
this process, the only writer of the catalogue. Each actor runs the local request
code: ``encode_many`` for the images and ``ChatClient`` (retries, Retry-After,
timeouts) for the request, with its share of ``concurrency`` requests in flight, so
the endpoint sees the same load as from a local run. Extra endpoints serving the same
model (``endpoints=``, e.g. one vLLM server per GPU node) are used in turn.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import warnings
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np

from sushitui.progress import CancelToken, ProgressEvent
from sushitui.tagger.distributed import (
    ACTOR_RESTARTS,
    MAX_BLOCKS,
    Cluster,
    _unreadable_error,
    cluster,
    import_ray,
    stream_batches,
)


class CaptionActor:
    """A Ray actor: encodes each row's images and asks the endpoint(s) for its caption."""

    def __init__(
        self,
        endpoints: list[tuple[str, str | None]],
        client_kwargs: dict,
        body: dict,
        max_side: int,
        stream: bool,
        concurrency: int,
    ) -> None:
        from sushitui.tagger.vlm.client import ChatClient

        self.host = socket.gethostname()
        self.loop = asyncio.new_event_loop()
        self.body, self.max_side, self.stream = body, max_side, stream
        self.concurrency = max(1, concurrency)
        kwargs = {**client_kwargs, "concurrency": self.concurrency}

        async def make():
            return [ChatClient(url, key, **kwargs) for url, key in endpoints]

        self.clients = self.loop.run_until_complete(make())
        self.turn = 0

    async def _one(self, sem: asyncio.Semaphore, index: int, paths: list[str], system: str, prompt: str) -> dict:
        from sushitui.tagger.vlm.client import EndpointError
        from sushitui.tagger.vlm.images import encode_many
        from sushitui.tagger.vlm.run import _messages  # the local run's request body

        out: dict[str, Any] = {"index": index, "node": self.host}
        unreadable = [p for p in paths if not os.access(p, os.R_OK)]
        if unreadable:
            return {**out, "unreadable": unreadable[0]}
        async with sem:
            # Pillow releases the GIL while it decodes and encodes: a thread overlaps the requests
            encoded = await self.loop.run_in_executor(None, encode_many, paths, self.max_side, index)
            bad = next((e for e in encoded if e.error), None)
            if bad is not None:
                return {**out, "encode_error": bad.error, "image": encoded.index(bad)}
            body = {**self.body, "messages": _messages(system, prompt, [e.data_uri for e in encoded if e.data_uri])}
            client = self.clients[self.turn % len(self.clients)]
            self.turn += 1
            try:
                answer = await client.chat(body, stream=self.stream)
            except EndpointError as exc:
                return {**out, "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one answer's bug must fail that item, not the actor
                return {**out, "error": f"{type(exc).__name__}: {exc}"}
        return {**out, "answer": asdict(answer), "sent_sizes": [(e.width, e.height) for e in encoded]}

    async def _all(self, batch: dict[str, np.ndarray]) -> list[dict]:
        sem = asyncio.Semaphore(self.concurrency)
        return await asyncio.gather(
            *(
                self._one(sem, int(i), json.loads(str(p)), str(s), str(q))
                for i, p, s, q in zip(batch["index"], batch["images"], batch["system"], batch["prompt"])
            )
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.loop.run_until_complete(self._all(batch))
        return {
            "index": np.asarray(batch["index"], np.int64),
            "result": np.asarray([json.dumps(r) for r in results], dtype=object),
        }


def _dispatcher(c: Cluster, actors: int | None, extra: Sequence[Any]) -> Callable[..., None]:
    """caption_items's ``dispatch``: the misses through a Ray actor pool, answers back to the run."""

    def dispatch(run, jobs, endpoint, api_key, client_kwargs) -> None:
        from sushitui.tagger.vlm.client import ChatAnswer
        from sushitui.tagger.vlm.endpoints import api_key as key_of

        ray = c.ray()
        cpus = float(ray.cluster_resources().get("CPU", 1))
        n_actors = actors or max(1, int(cpus))
        opts = run.opts
        per_actor = max(1, math.ceil(opts.concurrency / n_actors))  # the endpoint's load as from a local run
        # two rounds of requests per call, but every actor gets work on a small run
        batch = max(1, min(2 * per_actor, math.ceil(len(jobs) / n_actors)))
        body: dict[str, Any] = {"model": run.report.model, "max_tokens": opts.max_tokens}
        if opts.temperature is not None:
            body["temperature"] = opts.temperature
        endpoints = [(endpoint.base_url, api_key)] + [(e.base_url, key_of(e)) for e in extra]
        rows = [
            {"index": j.index, "images": json.dumps(j.abs_images), "system": j.result.system, "prompt": j.result.prompt}
            for j in jobs
        ]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(math.ceil(len(rows) / batch), MAX_BLOCKS)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")  # see distributed.py
            ds = ds.map_batches(
                CaptionActor,
                fn_constructor_kwargs={
                    "endpoints": endpoints,
                    "client_kwargs": {k: v for k, v in client_kwargs.items() if k != "concurrency"},
                    "body": body,
                    "max_side": opts.max_side,
                    "stream": opts.stream,
                    "concurrency": per_actor,
                },
                batch_size=batch,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=n_actors),
                num_cpus=min(1.0, cpus / n_actors),
                max_restarts=ACTOR_RESTARTS,
                max_task_retries=ACTOR_RESTARTS,
            )
        run.report.notes.append(
            f"{c.describe()}: {n_actors} caption actor(s), up to {per_actor} request(s) in flight each, "
            f"{len(endpoints)} endpoint(s)"
        )
        by_index = {j.index: j for j in jobs}
        seen: set[int] = set()
        with stream_batches(ds) as batches:
            for out in batches:
                results = [json.loads(str(r)) for r in out["result"]]
                unreadable = [(r["node"], r["unreadable"]) for r in results if "unreadable" in r]
                if unreadable:
                    raise _unreadable_error(unreadable)
                for r in results:
                    if r["index"] in seen:  # a retried block delivered again: never written twice
                        continue
                    seen.add(r["index"])
                    job = by_index[r["index"]]
                    if "encode_error" in r:
                        where = job.result.images[r["image"]] if r["image"] < len(job.result.images) else ""
                        run.finish(job, failed=f"{where}: {r['encode_error']}" if where else r["encode_error"])
                    elif "error" in r:
                        run.finish(job, failed=f"request failed: {r['error']}")
                    else:
                        job.result.sent_sizes = [tuple(s) for s in r["sent_sizes"]]
                        run._take_answer(job, ChatAnswer(**r["answer"]))  # cached, processed, queued to write
                run.flush()
                run.emit()
                if run.cancelled():
                    break

    return dispatch


def caption_ray(
    dataset,
    target=None,
    options=None,
    *,
    address: str | None = None,
    actors: int | None = None,
    endpoints: Sequence[str] = (),
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
    init_kwargs: dict | None = None,
):
    """``caption_items`` with encoding and requests on Ray. ``address`` as for
    ``autotag_ray``; ``actors``: caption actors (default: one per cluster CPU);
    ``endpoints``: more registered endpoint names serving the same model, used in turn
    with the run's own endpoint."""
    from sushitui.tagger.vlm.endpoints import get_endpoint
    from sushitui.tagger.vlm.run import caption_items

    import_ray()
    extra = [get_endpoint(name) for name in endpoints]
    with cluster(address, **(init_kwargs or {})) as c:
        return caption_items(
            dataset, target, options, progress=progress, cancel=cancel, dispatch=_dispatcher(c, actors, extra)
        )
