"""``sushitui run ...``: training runs (TR-1), recording (TR-2), sampling to a file (TR-4)
and statistics (TR-5). The work is done by ``sushitui.training``; this module parses and
prints."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from sushitui.cli.common import (
    SQLITE_INT_MAX,
    CliError,
    IntArg,
    TerminalProgress,
    add_common,
    ask,
    emit_json,
    fmt_time,
    open_db,
    out,
    progress_and_cancel,
    reply,
)
from sushitui.progress import CancelToken

if TYPE_CHECKING:
    from sushitui.training.recorder import Run


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="training runs: create, record usage, sample epochs, stats")
    sub = p.add_subparsers(dest="run_command", metavar="SUBCOMMAND", required=True)

    c = sub.add_parser("create", help="register a training run of a dataset")
    c.add_argument("name")
    c.add_argument("--dataset", required=True, help="dataset name")
    c.add_argument("--parent", metavar="RUN", help="the run this one resumes from")
    c.add_argument("--model-type", help="e.g. sdxl-lora, sd15-lora, flux-lora")
    c.add_argument("--base-model", help="base checkpoint name or path")
    c.add_argument("--caption", metavar="SUBTYPE", help="caption subtype the trainer uses (default main)")
    c.add_argument("--config", metavar="FILE", help="trainer config to keep with the run (JSON, TOML or YAML)")
    c.add_argument("--epochs", type=IntArg(0), help="epochs planned")
    c.add_argument("--steps", type=IntArg(0), help="steps planned")
    c.add_argument("--output-path", help="where the trainer writes the model")
    c.add_argument("--checkpoint-dir", help="where the trainer writes checkpoints")
    add_common(c)
    c.set_defaults(func=cmd_create)

    ls = sub.add_parser("list", help="list runs")
    ls.add_argument("--dataset", help="only the runs of this dataset")
    add_common(ls)
    ls.set_defaults(func=cmd_list)

    sh = sub.add_parser("show", help="settings and progress of a run")
    sh.add_argument("run")
    add_common(sh)
    sh.set_defaults(func=cmd_show)

    st = sub.add_parser("status", help="set a run's status")
    st.add_argument("run")
    st.add_argument("status", help="pending, running, completed, failed or cancelled")
    add_common(st)
    st.set_defaults(func=cmd_status)

    rm = sub.add_parser("remove", help="delete a run and take its usage out of the per-item totals")
    rm.add_argument("run")
    rm.add_argument("--yes", action="store_true", help="do not ask")
    add_common(rm)
    rm.set_defaults(func=cmd_remove)

    rec = sub.add_parser("record", help="record usage from a JSONL file a trainer writes")
    rec.add_argument("run")
    rec.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="FILE.jsonl",
        help='lines like {"epoch": 1, "step": 10, "ids": [3, 7]} or with "images": [paths]',
    )
    rec.add_argument("--follow", action="store_true", help="keep reading lines appended to the file (Ctrl-C stops)")
    rec.add_argument(
        "--idle-timeout", type=float, metavar="SECONDS", help="with --follow: stop after this long without new lines"
    )
    rec.add_argument(
        "--reread",
        action="store_true",
        help="read the file from the start even if an earlier `run record` read part of it (counts those lines again)",
    )
    add_common(rec)
    rec.set_defaults(func=cmd_record)

    sa = sub.add_parser("sample", help="plan epochs with a sampler and write the order for the trainer")
    sa.add_argument("run")
    sa.add_argument("--epochs", type=IntArg(1, 100_000), required=True, metavar="N", help="epochs to sample")
    sa.add_argument("--sampler", default="random", help="random, min-usage, stratified or variance (default random)")
    sa.add_argument("--seed", type=IntArg(0), default=0, metavar="N", help="random seed (default 0)")
    sa.add_argument(
        "--history",
        choices=("all", "parent"),
        default="all",
        help="usage history the weighted samplers balance: all previous runs or the parent run",
    )
    sa.add_argument(
        "--epoch-size",
        type=IntArg(1, 100_000_000),
        metavar="N",
        help="samples per epoch (default: the number of items)",
    )
    sa.add_argument("--out", required=True, metavar="FILE")
    sa.add_argument("--format", choices=("list", "kohya-json", "jsonl"), default="list")
    add_common(sa)
    sa.set_defaults(func=cmd_sample)

    it = sub.add_parser("item", help="how often one image was trained on, per run and over all runs")
    it.add_argument("item", help="item id, or the image path / name with --dataset")
    it.add_argument("--dataset", help="dataset the path or name belongs to")
    add_common(it)
    it.set_defaults(func=cmd_item)

    ss = sub.add_parser("stats", help="usage statistics of a run and a resume recommendation")
    ss.add_argument("run")
    ss.add_argument("--scope", choices=("run", "all"), default="run", help="this run's usage or totals over all runs")
    add_common(ss)
    ss.set_defaults(func=cmd_stats)


def _training_errors():
    from sushitui.dataset.registry import DatasetNotFound
    from sushitui.training.runs import TrainingError
    from sushitui.training.samplers import SamplerError

    return (TrainingError, SamplerError, DatasetNotFound)


def _guard(fn):
    """Turn the core's user errors into ``sushitui: error: ...``."""

    def wrapper(args):
        try:
            return fn(args)
        except _training_errors() as exc:
            raise CliError(str(exc)) from exc

    wrapper.__name__ = fn.__name__
    return wrapper


def _load_config(path: str) -> dict:
    import json

    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{p}: cannot read the config file ({exc.strerror})") from exc
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # each parser has its own error class; all mean "bad file"
        raise CliError(f"{p}: not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{p}: the config must be a mapping (a JSON object / TOML table)")
    return {"file": str(p.resolve()), **data} if "file" not in data else data


def _print_run(d: dict) -> None:
    out(f"{d['name']}  (#{d['number']} of dataset {d['dataset']})  {d['status']}")
    rows = [
        ("parent", d["parent"] or "-"),
        ("model type", d["model_type"] or "-"),
        ("base model", d["base_model"] or "-"),
        ("caption", d["caption_type"] or "main"),
        ("epochs", f"{d['epochs_done']} / {d['epochs_planned'] if d['epochs_planned'] is not None else '?'}"),
        ("steps", f"{d['steps_done']} / {d['steps_planned'] if d['steps_planned'] is not None else '?'}"),
        ("samples seen", f"{d['samples_seen']:,}"),
        ("items used", f"{d.get('items_used', 0):,}"),
        ("output", d["output_path"] or "-"),
        ("checkpoints", d["checkpoint_dir"] or "-"),
        ("metadata file", d["metadata_file"] or "-"),
        ("created", fmt_time(d["created_at"])),
        ("started", fmt_time(d["started_at"])),
        ("finished", fmt_time(d["finished_at"])),
    ]
    for k, v in rows:
        out(f"  {k:<14} {v}")


@_guard
def cmd_create(args) -> int:
    from sushitui.training.runs import create_run, run_to_dict

    open_db(args)
    config = _load_config(args.config) if args.config else None
    run = create_run(
        args.name,
        args.dataset,
        parent=args.parent,
        model_type=args.model_type,
        base_model=args.base_model,
        caption_type=args.caption,
        config=config,
        epochs=args.epochs,
        steps=args.steps,
        output_path=args.output_path,
        checkpoint_dir=args.checkpoint_dir,
    )
    reply(args, run_to_dict(run), f"created run {run.name} (#{run.number} of dataset {run.dataset.name})")
    return 0


@_guard
def cmd_list(args) -> int:
    from sushitui.training.runs import list_runs, run_to_dict

    open_db(args)
    runs = [run_to_dict(r) for r in list_runs(args.dataset)]
    if args.json:
        emit_json(runs)
        return 0
    if not runs:
        out("no training runs yet: sushitui run create NAME --dataset D")
        return 0
    out(f"{'NAME':<24} {'DATASET':<16} {'#':>3} {'STATUS':<10} {'EPOCHS':>9} {'SAMPLES':>12}  CREATED")
    for d in runs:
        epochs = f"{d['epochs_done']}/{d['epochs_planned'] if d['epochs_planned'] is not None else '?'}"
        out(
            f"{d['name']:<24} {d['dataset']:<16} {d['number']:>3} {d['status']:<10} {epochs:>9} "
            f"{d['samples_seen']:>12,}  {fmt_time(d['created_at'])}"
        )
    return 0


@_guard
def cmd_show(args) -> int:
    from sushitui.training.runs import get_run, run_to_dict

    open_db(args)
    d = run_to_dict(get_run(args.run), with_usage=True)
    reply(args, d, lambda: _print_run(d))
    return 0


@_guard
def cmd_status(args) -> int:
    from sushitui.training.runs import run_to_dict, set_status

    open_db(args)
    run = set_status(args.run, args.status)
    reply(args, run_to_dict(run), f"run {run.name}: {run.status}")
    return 0


@_guard
def cmd_remove(args) -> int:
    from sushitui.training.runs import get_run, remove_run

    open_db(args)
    run = get_run(args.run)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"removing run {run.name!r} deletes its usage history; pass --yes to confirm")
        answer = ask(f"remove run {run.name} and its usage history ({run.samples_seen:,} samples)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out("nothing removed")
            return 1
    changed = remove_run(run)
    reply(
        args,
        {"removed": run.name, "items_updated": changed},
        f"removed run {run.name}; per-item totals of {changed:,} items updated",
    )
    return 0


@contextmanager
def _open_run(args) -> Iterator[tuple[Run, TerminalProgress, CancelToken]]:
    """The run named by ``args.run``, open for recording, with a progress bar and a
    Ctrl-C token for the work done with it; the bar and the run are closed after."""
    from sushitui.training.recorder import open_run

    db = open_db(args)
    run = open_run(args.run, db.database)
    try:
        with progress_and_cancel(f"run {run.name}") as (bar, token):
            yield run, bar, token
    finally:
        run.close()


@_guard
def cmd_record(args) -> int:
    from sushitui.training.jsonl_record import record_jsonl

    with _open_run(args) as (run, bar, token):
        report = record_jsonl(
            run,
            args.source,
            follow=args.follow,
            idle_timeout=args.idle_timeout,
            progress=bar,
            cancel=token,
            reread=args.reread,
        )
    if args.json:
        emit_json(
            {
                "run": run.name,
                "file": report.path,
                "lines": report.lines,
                "lines_recorded": report.lines_recorded,
                "events": report.events,
                "cancelled": report.cancelled,
                "resumed_at_line": report.resumed_at_line,
                "problems": [{"line": p.line, "reason": p.reason} for p in report.problems],
            }
        )
    else:
        if report.resumed_at_line:
            out(
                f"continuing after line {report.resumed_at_line:,}, where an earlier `run record` of this file stopped "
                "(--reread reads it all again)"
            )
        out(
            f"recorded {report.events:,} samples from {report.lines_recorded:,} of {report.lines - report.resumed_at_line:,} "
            f"new lines into run {run.name}" + (" (stopped)" if report.cancelled else "")
        )
        for p in report.problems[:50]:
            out(f"  {report.path}:{p.line}: {p.reason}")
        if len(report.problems) > 50:
            out(f"  ... and {len(report.problems) - 50} more problems (see --json)")
    return 1 if report.problems and not report.lines_recorded else 0


@_guard
def cmd_sample(args) -> int:
    from sushitui.training.sample_file import write_sample_file

    with _open_run(args) as (run, bar, token):
        rep = write_sample_file(
            run,
            args.out,
            epochs=args.epochs,
            sampler=args.sampler,
            seed=args.seed,
            history=args.history,
            fmt=args.format,
            epoch_size=args.epoch_size,
            progress=bar,
            cancel=token,
        )
    if rep.cancelled:
        raise CliError("cancelled; no file written", 130)
    if args.json:
        from dataclasses import asdict

        emit_json(asdict(rep))
    else:
        out(
            f"wrote {rep.samples:,} samples ({rep.epochs} epochs, {rep.distinct_items:,} distinct items, "
            f"sampler {rep.sampler}, seed {rep.seed}) to {rep.path} [{rep.format}]"
        )
    return 0


def _find_item(ref: str, dataset: str | None) -> int:
    from sushitui.dataset.registry import get_dataset
    from sushitui.store import Item

    if ref.isdecimal() and dataset is None:  # isdigit() also takes "²", which int() refuses
        # beyond SQLite's integers no item can have the id (and the query would overflow)
        item = Item.get_or_none(Item.id == int(ref)) if len(ref) <= 19 and int(ref) <= SQLITE_INT_MAX else None
    else:
        if dataset is None:
            raise CliError("pass --dataset with an image path or name (or give the item id)")
        ds = get_dataset(dataset)
        rel = ref
        if Path(ref).is_absolute():
            try:
                rel = Path(ref).resolve().relative_to(Path(ds.root_path).resolve()).as_posix()
            except ValueError:
                raise CliError(f"{ref} is not inside dataset {ds.name!r} ({ds.root_path})") from None
        item = (
            Item.select()
            .where(
                (Item.dataset == ds.id) & ((Item.image_path == rel) | (Item.group_key == rel) | (Item.base_name == rel))
            )
            .first()
        )
    if item is None:
        raise CliError(f"no item {ref!r}" + (f" in dataset {dataset!r}" if dataset else ""))
    return item.id


@_guard
def cmd_item(args) -> int:
    from sushitui.training.stats import item_usage_stats

    open_db(args)
    item_id = _find_item(args.item, args.dataset)
    usage = item_usage_stats(item_id) or {"item_id": item_id, "total_seen": 0, "runs_participated": 0, "runs": []}
    if args.json:
        emit_json(usage)
        return 0
    if not usage["total_seen"]:
        out(f"item {item_id} was never trained on")
        return 0
    out(
        f"item {item_id}: seen {usage['total_seen']:,} times in {usage['runs_participated']} runs; per run mean "
        f"{usage['mean_per_run']:.2f}, std {usage['std_per_run']:.2f}, variance {usage['variance_per_run']:.2f}"
    )
    out(f"  first trained {fmt_time(usage['first_trained_at'])}, last {fmt_time(usage['last_trained_at'])}")
    for r in usage["runs"]:
        out(
            f"  {r['run']:<24} {r['times_seen']:>8,}  epochs {r['first_epoch']}–{r['last_epoch']}  "
            f"steps {r['first_step']}–{r['last_step']}"
        )
    return 0


@_guard
def cmd_stats(args) -> int:
    from sushitui.training.stats import heatmap_rows, run_stats

    open_db(args)
    st = run_stats(args.run, scope=args.scope, heatmap_cells=240)
    if args.json:
        emit_json(st.to_dict())
        return 0
    out(
        f"{st.run} (#{st.number} of {st.dataset}) {st.status}  scope: {'this run' if st.scope == 'run' else 'all runs'}"
    )
    out(f"  items used     {st.items_used:,} of {st.items:,}  (never used {st.never_used_count:,})")
    out(f"  samples seen   {st.samples_seen:,}   epochs {st.epochs_done}   steps {st.steps_done}")
    out(
        f"  times seen     mean {st.mean:.2f}  median {st.median:g}  std {st.std:.2f}  variance {st.variance:.2f}  "
        f"min {st.min}  max {st.max}"
    )
    out("  heatmap (items in id order, darker = more used)")
    for line in heatmap_rows(st.heatmap, 60):
        out(f"    |{line}|")
    out("  histogram of times seen")
    peak = max((b["count"] for b in st.histogram), default=0) or 1
    for b in st.histogram:
        label = f"{b['low']}" if b["low"] == b["high"] else f"{b['low']}-{b['high']}"
        out(f"    {label:>11} {'█' * max(0, round(40 * b['count'] / peak)):<40} {b['count']:,}")
    if st.top:
        out("  most used")
        for t in st.top:
            out(f"    {t['times_seen']:>8,}  {t['name']}")
    if st.never_used_count:
        out(f"  never used ({st.never_used_count:,})")
        for t in st.never_used[:10]:
            out(f"    {t['name']}")
        if st.never_used_count > 10:
            out(f"    ... and {st.never_used_count - 10:,} more (see --json)")
    rec = st.recommendation
    if rec:
        out(f"  recommendation: {rec.reason}")
        out(
            f"    resume: sushitui run create NEW --dataset {st.dataset} --parent {st.run}, then sample with "
            f"--sampler {rec.sampler} --history {rec.history}"
        )
    return 0
