"""Finding and downloading model files in the standard Hugging Face cache (AT-1).

The cache is shared with other tools. ``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE``
are read from the environment at *call* time (huggingface_hub itself reads them once at
import, which would make a later change silently ignored), and passed explicitly as
``cache_dir=`` / ``local_files_only=``. Looking into the cache never touches the
network, so an offline miss is reported at once instead of after ~23 s of retries.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sushitui.errors import UserError
from sushitui.tagger.registry import ModelSpec, family_for_label_file

_TRUE = {"1", "true", "yes", "on"}
_SNAPSHOT = re.compile(r"snapshots[/\\]([0-9a-fA-F]{40})[/\\]")


class ModelUnavailable(UserError):
    """The model's files are not here and cannot be fetched now; the message says what to do."""


@dataclass(frozen=True)
class ModelFiles:
    """A model ready to load: its files, family and the version the result cache keys on."""

    key: str
    family: str
    model_path: Path
    labels_path: Path
    version: str  # e.g. "cl-1.02@<commit>" or "file:<digest>"
    revision: str | None = None


def cache_dir() -> Path:
    env = os.environ.get("HF_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_offline() -> bool:
    env = os.environ.get("HF_HUB_OFFLINE")
    if env is not None:
        return env.strip().lower() in _TRUE
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _commit_of(path: str) -> str | None:
    m = _SNAPSHOT.search(path)
    return m.group(1).lower() if m else None


def _cached_file(spec: ModelSpec, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.repo_id, filename, cache_dir=str(cache_dir()), revision=spec.revision)
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found)
    return None


def locate(spec: ModelSpec) -> ModelFiles | None:
    """The spec's files in the local cache, or None when any is missing (no network)."""
    model = _cached_file(spec, spec.model_file)
    labels = _cached_file(spec, spec.label_file)
    if model is None or labels is None:
        return None
    commit = _commit_of(str(model)) or spec.revision or "local"
    return ModelFiles(spec.key, spec.family, model, labels, f"{spec.key}@{commit}", commit)


def _how_to_get(spec: ModelSpec) -> str:
    return (
        f"run `sushitui models download {spec.key}` on a machine with network access "
        f"(or copy its Hugging Face cache folder models--{spec.repo_id.replace('/', '--')} into {cache_dir()}), "
        "or give the files directly with --model-path FILE --labels FILE"
    )


REACH_TIMEOUT_S = 5.0


def _endpoint() -> tuple[str, int]:
    from urllib.parse import urlsplit

    url = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlsplit(url)
    return parts.hostname or "huggingface.co", parts.port or (80 if parts.scheme == "http" else 443)


def check_reachable(timeout: float = REACH_TIMEOUT_S) -> None:
    """Fail at once when the Hub cannot be reached.

    Without this, huggingface_hub retries a failed name lookup or connection five times
    with back-off (~23 s) before saying anything. The lookup runs in a thread so that a
    hanging resolver is bounded too.
    """
    import socket
    import threading

    host, port = _endpoint()
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if not outcome:
        raise ModelUnavailable(f"cannot reach {host}:{port} (no answer within {timeout:.0f} s)")
    if outcome[0] is not None:
        exc = outcome[0]
        why = (
            "its name does not resolve"
            if isinstance(exc, socket.gaierror)
            else (getattr(exc, "strerror", None) or str(exc))
        )
        raise ModelUnavailable(f"cannot reach {host}:{port} ({why})")


def download(spec: ModelSpec) -> ModelFiles:
    """Fetch the spec's files into the cache (a no-op for files already there)."""
    found = locate(spec)
    if found is not None:
        return found
    if is_offline():
        raise ModelUnavailable(
            f"model {spec.key} ({spec.repo_id}) is not in the cache {cache_dir()} and HF_HUB_OFFLINE is set: {_how_to_get(spec)}"
        )
    try:
        check_reachable()
    except ModelUnavailable as exc:
        raise ModelUnavailable(
            f"model {spec.key} is not in the cache {cache_dir()} and the Hugging Face Hub is unreachable: {exc}. {_how_to_get(spec)[0].upper()}{_how_to_get(spec)[1:]}"
        ) from exc
    from huggingface_hub import hf_hub_download

    paths = []
    for filename in spec.files:
        try:
            paths.append(hf_hub_download(spec.repo_id, filename, revision=spec.revision, cache_dir=str(cache_dir())))
        except Exception as exc:  # network, auth, missing file: one clear message
            reason = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).rstrip(".")
            raise ModelUnavailable(
                f"could not download {spec.repo_id}/{filename}: {reason}. Check the network (or HF_ENDPOINT / HF_TOKEN), or {_how_to_get(spec)}"
            ) from exc
    found = locate(spec)
    if found is None:  # e.g. a cache_dir huggingface_hub did not write into
        commit = _commit_of(paths[0]) or spec.revision or "local"
        return ModelFiles(spec.key, spec.family, Path(paths[0]), Path(paths[1]), f"{spec.key}@{commit}", commit)
    return found


def resolve(spec: ModelSpec, *, allow_download: bool = True) -> ModelFiles:
    """The spec's files: from the cache, else downloaded (unless offline or not allowed)."""
    found = locate(spec)
    if found is not None:
        return found
    if is_offline() or not allow_download:
        why = "HF_HUB_OFFLINE is set" if is_offline() else "downloading was not allowed"
        raise ModelUnavailable(
            f"model {spec.key} ({spec.repo_id}) is not in the cache {cache_dir()} and {why}: {_how_to_get(spec)}"
        )
    return download(spec)


def _file_digest(path: Path, edge: int = 1 << 20) -> str:
    """A cheap content fingerprint of a (possibly 1.4 GB) model file: size + first and
    last MiB. Retraining or re-exporting changes both; hashing 1.4 GB on every run would
    cost seconds."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(edge))
        if size > edge:
            fh.seek(max(edge, size - edge))
            h.update(fh.read(edge))
    return h.hexdigest()


def local_files(
    model_path: str | os.PathLike, labels_path: str | os.PathLike | None = None, family: str | None = None
) -> ModelFiles:
    """User-supplied model + label files, or a folder holding ``model.onnx`` and
    ``selected_tags.csv`` / ``tag_mapping.json`` (never touches the hub)."""
    model = Path(model_path).expanduser()
    labels = Path(labels_path).expanduser() if labels_path else None
    if model.is_dir():
        folder = model
        model = folder / "model.onnx"
        if labels is None:
            labels = next(
                (folder / n for n in ("selected_tags.csv", "tag_mapping.json") if (folder / n).is_file()), None
            )
        if labels is None:
            raise ModelUnavailable(f"{folder} has no selected_tags.csv or tag_mapping.json; pass --labels FILE")
    if labels is None:
        raise ModelUnavailable(f"{model}: give the label file too (--labels selected_tags.csv or tag_mapping.json)")
    for p, what in ((model, "model"), (labels, "label")):
        if not p.is_file():
            raise ModelUnavailable(f"{what} file {p} does not exist (or is not a file)")
    fam = family or family_for_label_file(str(labels))
    digest = hashlib.sha256((_file_digest(model) + _file_digest(labels)).encode()).hexdigest()[:16]
    name = model.stem if model.stem != "model" else (model.parent.name or "model")
    return ModelFiles(re.sub(r"[^A-Za-z0-9._-]+", "_", name), fam, model, labels, f"file:{digest}", None)
