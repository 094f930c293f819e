"""The command lines of jobs started from the app (issue 19): the app runs its long
actions as the same ``sushitui`` command a user would type with --detach, so one
implementation runs them, and the job outlives the app."""

from __future__ import annotations

import os

from sushitui.jobs.table import JobInfo, submit


def autotag_device(device: str = "auto", device_id: int = 0) -> str:
    """The device an auto-tag job occupies: ``gpu:N`` when it runs on CUDA (``cuda``, or
    ``auto`` with a CUDA-enabled onnxruntime), else ``cpu``."""
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return f"gpu:{device_id}"
    try:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return f"gpu:{device_id}"
    except Exception:  # noqa: BLE001 - no usable onnxruntime: the job itself will say so
        pass
    return "cpu"


def autotag_argv(
    db_path: str | os.PathLike, dataset: str, opts, query: str | None = None, item_ids: list[int] | None = None
) -> list[str]:
    """``sushitui autotag`` arguments for the options of ``sushitui.tagger.autotag.
    AutotagOptions`` (read by attribute: this package does not import the tagger)."""
    argv = ["--db", os.path.abspath(db_path), "autotag", dataset]
    if query:
        argv += ["--query", query]
    for item_id in item_ids or ():
        argv += ["--item", str(item_id)]
    if opts.model_path:
        argv += ["--model-path", str(opts.model_path)]
        if opts.labels_path:
            argv += ["--labels", str(opts.labels_path)]
        if opts.family:
            argv += ["--family", opts.family]
    elif opts.model:
        argv += ["--model", opts.model]
    argv += ["--threshold", repr(float(opts.threshold))]
    argv += [f"--threshold={cat}={value!r}" for cat, value in sorted(opts.category_thresholds.items())]
    if opts.character_threshold is not None:
        argv += ["--character-threshold", repr(float(opts.character_threshold))]
    argv += [
        "--categories",
        ",".join(opts.categories),
        "--mode",
        opts.mode,
        "--subtype",
        opts.subtype,
        "--device",
        opts.device,
        "--device-id",
        str(opts.device_id),
    ]
    if opts.mcut:
        argv += ["--mcut", ",".join(opts.mcut)]
    if opts.exclude:
        argv += ["--exclude", ",".join(opts.exclude)]
    if opts.batch_size:
        argv += ["--batch-size", str(opts.batch_size)]
    if opts.workers is not None:
        argv += ["--workers", str(opts.workers)]
    flags = {
        "--no-draft": not opts.jpeg_draft,
        "--no-dictionary-mapping": not opts.dictionary_mapping,
        "--add-unknown": opts.add_unknown_to_dictionary,
        "--underscores": opts.underscores,
        "--no-cache": not opts.use_cache,
        "--dry-run": opts.dry_run,
        "--offline": not opts.allow_download,
    }
    return argv + [flag for flag, on in flags.items() if on]


def submit_autotag(
    db_path: str | os.PathLike, dataset: str, opts, query: str | None = None, item_ids: list[int] | None = None
) -> JobInfo:
    """Start an auto-tag of ``dataset`` as a background job; returns it (queued)."""
    return submit(
        "autotag",
        autotag_argv(db_path, dataset, opts, query, item_ids),
        dataset=dataset,
        device=autotag_device(opts.device, opts.device_id),
        lock_key=f"dataset:{dataset}",
    )
