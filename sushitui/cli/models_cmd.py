"""CLI: ``models list``, ``models download KEY`` and ``autotag NAME`` (SPEC §7)."""

from __future__ import annotations

import logging

from sushitui.cli.common import (
    CliError,
    IntArg,
    TerminalProgress,
    add_common,
    cancel_on_sigint,
    emit_json,
    err,
    fmt_duration,
    on_database_error,
    open_db,
    out,
)

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    models = subparsers.add_parser("models", help="tagger models: list, download")
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    p = msub.add_parser("list", help="built-in tagger models and whether they are in the local Hugging Face cache")
    add_common(p)
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser(
        "download", help="download a model into the Hugging Face cache (honours HF_HOME / HF_HUB_CACHE)"
    )
    p.add_argument("key", help="model key from `models list`")
    add_common(p)
    p.set_defaults(func=cmd_models_download)
    models.set_defaults(func=lambda args: (models.print_help(), 0)[1])

    a = subparsers.add_parser(
        "autotag",
        help="tag a dataset's images with an ONNX tagger (cl_tagger, WD v3)",
        description="Tag images with cl_tagger / WD taggers through onnxruntime (CUDA when available, else CPU; "
        "the provider actually used is printed). Results are cached by image hash + model version, so re-running "
        "(after a change of thresholds, or an interrupted run) does not run the model again for done images.",
    )
    a.add_argument("name", help="dataset name")
    a.add_argument("--query", "-q", help="only items matching this query")
    a.add_argument(
        "--item", type=IntArg(1), action="append", dest="item_ids", metavar="ID", help="only this item id (repeatable)"
    )
    a.add_argument("--model", "-m", help="built-in model key (default cl-1.02; see `models list`)")
    a.add_argument(
        "--model-path", metavar="FILE|DIR", help="your own model.onnx (or a folder with model.onnx + labels)"
    )
    a.add_argument(
        "--labels",
        metavar="FILE",
        help="label file for --model-path: selected_tags.csv (WD) or tag_mapping.json (cl_tagger)",
    )
    a.add_argument(
        "--family", choices=["wd", "cl"], help="input contract of --model-path (default: from the label file)"
    )
    a.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="VALUE|CAT=VALUE",
        help="general threshold (default 0.35), or a per-category one like meta=0.5 (repeatable)",
    )
    a.add_argument(
        "--character-threshold",
        type=float,
        metavar="VALUE",
        help="character/copyright/artist threshold (default: WD 0.85, cl_tagger 0.60)",
    )
    a.add_argument(
        "--categories",
        default="general,character,quality",
        help="categories to write (rating, general, artist, character, copyright, meta, quality, model)",
    )
    a.add_argument(
        "--mcut",
        default="",
        metavar="CATS",
        help="use the MCut adaptive threshold for these categories, e.g. general,character",
    )
    a.add_argument("--exclude", default="", metavar="TAGS", help="comma-separated tags never to write")
    a.add_argument(
        "--mode",
        choices=["replace", "add", "skip"],
        default="replace",
        help="replace the tags, add to them, or skip items that already have tags (default replace)",
    )
    a.add_argument("--subtype", default="main", help="caption subtype to write (default main: base.txt)")
    a.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="auto: CUDA when it really works, else CPU (reported); cuda: fail if CUDA is not active",
    )
    a.add_argument("--device-id", type=IntArg(0, 1023), default=0, help="GPU index (default 0)")
    a.add_argument("--batch-size", type=IntArg(1, 65_536), help="images per model run (default 32 on GPU, 4 on CPU)")
    a.add_argument(
        "--workers",
        type=IntArg(0, 1024),
        help="image decoding processes (default: CPU cores, at most 16; 0 = in-process)",
    )
    a.add_argument(
        "--no-draft",
        action="store_true",
        help="decode JPEGs at full size (slower; the default decodes at ≥ 2× the model size)",
    )
    a.add_argument(
        "--no-dictionary-mapping",
        action="store_true",
        help="do not replace deprecated tags by their dictionary replacement",
    )
    a.add_argument(
        "--add-unknown", action="store_true", help="add tags missing from the dictionary to it as auto_detected"
    )
    a.add_argument(
        "--underscores", action="store_true", help="write tags with underscores (default: spaces; kaomoji keep theirs)"
    )
    a.add_argument("--no-cache", action="store_true", help="ignore and do not write cached scores")
    a.add_argument("--offline", action="store_true", help="never download (same as HF_HUB_OFFLINE=1)")
    a.add_argument("--dry-run", action="store_true", help="show what would change; write no caption")
    a.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="decode and infer on Ray (pip install 'sushitui[ray]'): ADDRESS auto or HEAD:6379 joins the "
        "cluster this machine is a node of, none starts a local Ray; this process still writes every caption",
    )
    add_common(a)
    a.set_defaults(func=cmd_autotag)


def _model_rows() -> list[dict]:
    from sushitui.tagger.hub import locate
    from sushitui.tagger.registry import BUILTIN, DEFAULT_MODEL

    rows = []
    for key, spec in BUILTIN.items():
        try:
            found = locate(spec)
        except Exception:  # noqa: BLE001 - a broken cache entry (huggingface_hub raises many types) must not break the listing
            log.warning("looking up the cached files of %s failed", key, exc_info=True)
            found = None
        rows.append(
            {
                "key": key,
                "default": key == DEFAULT_MODEL,
                "family": spec.family,
                "repo_id": spec.repo_id,
                "model_file": spec.model_file,
                "label_file": spec.label_file,
                "description": spec.description,
                "note": spec.fixed_batch_note,
                "cached": found is not None,
                "revision": found.revision if found else None,
                "path": str(found.model_path) if found else None,
            }
        )
    return rows


def cmd_models_list(args) -> int:
    from sushitui.tagger.hub import cache_dir, is_offline

    rows = _model_rows()
    if getattr(args, "json", False):
        emit_json({"cache_dir": str(cache_dir()), "offline": is_offline(), "models": rows})
        return 0
    width = max(len(r["key"]) for r in rows) + 2
    out(f"{'KEY':<{width}}{'FAMILY':<8}{'CACHED':<8}REPO / DESCRIPTION")
    for r in rows:
        mark = "yes" if r["cached"] else "-"
        key = r["key"] + ("*" if r["default"] else "")
        out(
            f"{key:<{width}}{r['family'].upper():<8}{mark:<8}{r['repo_id']}  {r['description']}"
            + (f" ({r['note']})" if r["note"] else "")
        )
    out()
    out(
        f"* default. Cache: {cache_dir()}{' (offline)' if is_offline() else ''}. Get a model: sushitui models download KEY"
    )
    return 0


def cmd_models_download(args) -> int:
    from sushitui.tagger.hub import ModelUnavailable, download
    from sushitui.tagger.registry import UnknownModel, get_spec

    try:
        spec = get_spec(args.key)
        files = download(spec)
    except (UnknownModel, ModelUnavailable) as exc:
        raise CliError(str(exc)) from exc
    result = {
        "key": files.key,
        "version": files.version,
        "model_path": str(files.model_path),
        "labels_path": str(files.labels_path),
    }
    if getattr(args, "json", False):
        emit_json(result)
    else:
        out(f"{files.key}: ready ({files.version})")
        out(f"  model:  {files.model_path}")
        out(f"  labels: {files.labels_path}")
    return 0


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def _options(args):
    from sushitui.tagger.autotag import AutotagOptions
    from sushitui.tagger.labels import CATEGORIES

    general = 0.35
    per_cat: dict[str, float] = {}
    for t in args.threshold:
        try:
            if "=" in t:
                cat, val = t.split("=", 1)
                cat = cat.strip().lower()
                if cat not in CATEGORIES:
                    raise CliError(f"--threshold {t}: unknown category {cat!r} (one of {', '.join(CATEGORIES)})", 2)
                per_cat[cat] = float(val)
            else:
                general = float(t)
        except ValueError:
            raise CliError(f"--threshold {t}: not a number", 2) from None
    for v in (general, args.character_threshold, *per_cat.values()):
        if v is not None and not 0.0 <= v <= 1.0:
            raise CliError(f"threshold {v} is outside 0..1", 2)
    cats = _split(args.categories)
    bad = [c for c in cats + _split(args.mcut) if c not in CATEGORIES]
    if bad or not cats:
        raise CliError(
            f"unknown categor{'ies' if len(bad) > 1 else 'y'} {', '.join(bad) or '(none given)'}: use {', '.join(CATEGORIES)}",
            2,
        )
    if args.model and args.model_path:
        raise CliError("give either --model KEY or --model-path FILE, not both", 2)
    if args.labels and not args.model_path:
        raise CliError("--labels goes with --model-path", 2)
    if args.batch_size is not None and args.batch_size < 1:
        raise CliError("--batch-size must be at least 1", 2)
    return AutotagOptions(
        model=args.model or "cl-1.02",
        model_path=args.model_path,
        labels_path=args.labels,
        family=args.family,
        threshold=general,
        character_threshold=args.character_threshold,
        category_thresholds=per_cat,
        categories=cats,
        mcut=_split(args.mcut),
        mode=args.mode,
        subtype=args.subtype,
        device=args.device,
        device_id=args.device_id,
        batch_size=args.batch_size,
        workers=args.workers,
        jpeg_draft=not args.no_draft,
        dictionary_mapping=not args.no_dictionary_mapping,
        add_unknown_to_dictionary=args.add_unknown,
        underscores=args.underscores,
        exclude=_split(args.exclude),
        use_cache=not args.no_cache,
        dry_run=args.dry_run,
        allow_download=not args.offline,
    )


def cmd_autotag(args) -> int:
    from sushitui.tagger.autotag import AutotagError, autotag

    opts = _options(args)
    open_db(args)
    as_json = getattr(args, "json", False)
    bar = TerminalProgress(f"autotag {args.name}")
    import shlex

    unindexed = (
        f"Caption files written before the failure may not be in the index yet: once the database can be "
        f"written again, `sushitui dataset reindex {shlex.quote(args.name)}` reads them in (scores already "
        "computed are cached)"
    )
    with cancel_on_sigint() as token, on_database_error(args, None if args.dry_run else unindexed):
        try:
            if getattr(args, "ray", None):
                from sushitui.tagger.distributed import autotag_ray

                report = autotag_ray(
                    args.name,
                    query=args.query,
                    item_ids=args.item_ids,
                    options=opts,
                    address=None if args.ray == "local" else args.ray,
                    progress=bar,
                    cancel=token,
                )
            else:
                report = autotag(
                    args.name, query=args.query, item_ids=args.item_ids, options=opts, progress=bar, cancel=token
                )
        except AutotagError as exc:
            bar.close()
            raise CliError(str(exc)) from exc
        finally:
            bar.close()
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_summary(report)
    return 130 if report.cancelled else 0


def _print_summary(r) -> None:
    verb = "would change" if r.dry_run else "tagged"
    out(
        f"autotag {r.dataset}: {r.items} item(s), model {r.model} ({r.model_version}), mode {r.mode}, subtype {r.subtype}"
    )
    out(f"provider: {r.provider_line}")
    parts = [f"{verb} {r.tagged}", f"unchanged {r.unchanged}"]
    if r.no_tags:
        parts.append(f"nothing above the thresholds {r.no_tags}")
    if r.mode == "skip":
        parts.append(f"skipped (already tagged) {r.skipped_existing}")
    parts += [
        f"from cache {r.cached}",
        f"inferred {r.inferred} in {r.model_runs} model run(s)",
        f"failed {len(r.failed)}",
    ]
    out(", ".join(parts))
    if r.batch_size:
        out(f"batch size {r.batch_size}, decode workers {r.workers}")
    for n in r.notes:
        out(f"note: {n}")
    for p in r.failed[:50]:
        err(f"  {p.path}: {p.reason}")
    if len(r.failed) > 50:
        err(f"  … and {len(r.failed) - 50} more (use --json for all)")
    if r.dry_run:
        for p in r.preview[:10]:
            out(f"  {p['path']}: {', '.join(p['tags'])}")
    out(
        f"{fmt_duration(r.elapsed_s)} ({r.elapsed_s:.1f} s), {r.rate:.1f} images/s"
        + ("  — cancelled; run the same command again to resume" if r.cancelled else "")
    )
