"""CLI command: ``check NAME`` — a dataset's health report before training (issue 18).

Thin over ``sushitui.check``: a summary table, the bucket histogram, then every finding
per item with its severity and the fix. ``--json`` gives the whole report. Exit code 0
when nothing is an error, 1 when some item has an error finding (scripts can gate a
training run on it).
"""

from __future__ import annotations

import sushitui.check  # noqa: F401 - gives every command's --query its tokens:/t5tokens: counters
from sushitui.cli.common import (
    CliError,
    IntArg,
    TerminalProgress,
    add_common,
    cancel_on_sigint,
    emit_json,
    open_db,
    out,
)

TRAINERS = ["kohya", "ai-toolkit", "diffusion-pipe", "onetrainer"]
_SEVERITY_MARK = {"error": "E", "warning": "W", "info": "i"}


def _fraction(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError as exc:
        raise ValueError(f"expected a percentage like 15 or 15%, not {text!r}") from exc
    if not 0 <= value <= 100:
        raise ValueError("a percentage between 0 and 100")
    return value / 100


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="health report before training: buckets, token lengths, duplicates, image and caption problems",
        description="Check a dataset as a trainer will see it: the bucket each image lands in (reimplemented from "
        "the trainer's code), CLIP/T5 token lengths, exact and near duplicates, image modes/orientation/size and "
        "caption problems. Images are decoded once (hashes are kept). Findings are stored: check:CODE in queries "
        "selects them. Exit code 1 when an item has an error.",
    )
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("--trainer", choices=TRAINERS, default="kohya", help="whose buckets to use (default kohya)")
    p.add_argument(
        "--resolution", type=IntArg(64, 16384), default=1024, metavar="N", help="training resolution (default 1024)"
    )
    p.add_argument(
        "--batch-size",
        type=IntArg(1, 65_536),
        default=1,
        metavar="N",
        help="batch size: buckets with fewer images are reported (default 1)",
    )
    p.add_argument("--bucket-no-upscale", action="store_true", help="kohya: --bucket_no_upscale")
    p.add_argument("--min-bucket-reso", type=IntArg(64, 16384), default=256, metavar="N", help="kohya (default 256)")
    p.add_argument("--max-bucket-reso", type=IntArg(64, 16384), default=1024, metavar="N", help="kohya (default 1024)")
    p.add_argument("--bucket-reso-steps", type=IntArg(8, 1024), default=64, metavar="N", help="kohya (default 64)")
    p.add_argument("--bucket-tolerance", type=IntArg(1, 1024), default=64, metavar="N", help="ai-toolkit (default 64)")
    p.add_argument(
        "--quantization",
        type=IntArg(1, 1024),
        default=64,
        metavar="N",
        help="OneTrainer aspect bucketing quantization (64 for SDXL/Flux, 8 for SD 1.5)",
    )
    p.add_argument(
        "--round-to",
        type=IntArg(1, 1024),
        default=16,
        metavar="N",
        help="diffusion-pipe pixels_round_to_multiple (16; 32 for Wan/LTX)",
    )
    p.add_argument("--min-ar", type=float, default=0.5, metavar="R", help="diffusion-pipe min_ar (default 0.5)")
    p.add_argument("--max-ar", type=float, default=2.0, metavar="R", help="diffusion-pipe max_ar (default 2.0)")
    p.add_argument(
        "--num-ar-buckets",
        type=IntArg(1, 1000),
        default=7,
        metavar="N",
        help="diffusion-pipe num_ar_buckets (default 7)",
    )
    p.add_argument(
        "--max-token-length",
        type=int,
        choices=[75, 150, 225],
        default=75,
        help="CLIP tokens read (sd-scripts --max_token_length; default 75)",
    )
    p.add_argument(
        "--max-crop",
        type=_fraction,
        default="15",
        metavar="PCT",
        help="report images with more than this share cropped away (default 15%%)",
    )
    p.add_argument(
        "--max-upscale", type=float, default=1.5, metavar="X", help="report images upscaled more than X (default 1.5)"
    )
    p.add_argument(
        "--near",
        type=IntArg(0, 20),
        default=6,
        metavar="BITS",
        help="near duplicates differ in at most BITS of 64 hash bits (default 6)",
    )
    p.add_argument("--trigger", metavar="WORD", help="trigger word (default: the tag most captions start with, if any)")
    p.add_argument("--no-t5", action="store_true", help="skip T5 token counts")
    p.add_argument("--no-hash", action="store_true", help="do not decode images that were never hashed")
    p.add_argument(
        "--limit",
        type=IntArg(0, 10**9),
        default=200,
        metavar="N",
        help="items listed with their findings (default 200; 0 lists all)",
    )
    add_common(p)
    p.set_defaults(func=cmd_check)


def _options(args):
    from sushitui.check import CheckOptions

    trainer_options: dict = {}
    if args.trainer == "kohya":
        trainer_options = {
            "no_upscale": args.bucket_no_upscale,
            "min_bucket_reso": args.min_bucket_reso,
            "max_bucket_reso": args.max_bucket_reso,
            "bucket_reso_steps": args.bucket_reso_steps,
        }
    elif args.trainer == "ai-toolkit":
        trainer_options = {"bucket_tolerance": args.bucket_tolerance}
    elif args.trainer == "onetrainer":
        trainer_options = {"quantization": args.quantization}
    elif args.trainer == "diffusion-pipe":
        if not 0 < args.min_ar <= args.max_ar:
            raise CliError(f"--min-ar {args.min_ar} and --max-ar {args.max_ar}: need 0 < min-ar <= max-ar", 2)
        trainer_options = {
            "min_ar": args.min_ar,
            "max_ar": args.max_ar,
            "num_ar_buckets": args.num_ar_buckets,
            "round_to_multiple": args.round_to,
        }
    return CheckOptions(
        trainer=args.trainer,
        resolution=args.resolution,
        batch_size=args.batch_size,
        trainer_options=trainer_options,
        max_crop=args.max_crop,
        max_upscale=args.max_upscale,
        near_distance=args.near,
        max_token_length=args.max_token_length,
        t5=not args.no_t5,
        trigger=args.trigger.strip() if args.trigger and args.trigger.strip() else None,
        hash_images=not args.no_hash,
    )


def cmd_check(args) -> int:
    from sushitui.check import run_check
    from sushitui.check.tokens import TokenizerUnavailable
    from sushitui.dataset.registry import DatasetNotFound

    options = _options(args)
    open_db(args)
    bar = TerminalProgress(f"check {args.name}")
    from sushitui.progress import ProgressEvent

    started = {}

    def progress(phase: str, done: int, total: int) -> None:
        import time

        started.setdefault(phase, time.monotonic())
        bar(ProgressEvent(phase, done, total, unit="images", started_at=started[phase]))

    try:
        with cancel_on_sigint() as token:
            report = run_check(args.name, options, progress=progress, cancelled=lambda: token.cancelled)
    except DatasetNotFound as exc:
        raise CliError(str(exc), 1) from exc
    except TokenizerUnavailable as exc:
        raise CliError(str(exc), 1) from exc
    except ValueError as exc:  # a trainer setting the trainer itself would refuse
        raise CliError(str(exc), 2) from exc
    finally:
        bar.close()
    if args.json:
        emit_json(report.to_dict())
    else:
        _print(report, args)
    return 1 if report.severity_counts()["error"] else 0


def _print(report, args) -> None:
    import shutil

    from sushitui.check.histogram import histogram_lines

    width = min(120, shutil.get_terminal_size((100, 24)).columns)
    sev = report.severity_counts()
    with_findings = report.items_with_findings()
    out(
        f"{report.dataset}: {len(report.items):,} items, {report.plan.describe()}, batch size {report.options.batch_size}"
    )
    out(
        f"{len(with_findings):,} items with findings: {sev['error']:,} errors, {sev['warning']:,} warnings, "
        f"{sev['info']:,} notes" + (f"  (decoded {report.hashed:,} new images)" if report.hashed else "")
    )
    if report.trigger:
        out(f"trigger word: {report.trigger}")
    rows = report.summary_rows()
    if rows:
        out("")
        code_w = max(len(r["code"]) for r in rows)
        n_w = max(len(f"{r['items']:,}") for r in rows)
        out(f"  {'':1} {'finding':<{code_w}}  {'items':>{n_w}}  fix")
        for r in rows:
            out(f"  {_SEVERITY_MARK[r['severity']]} {r['code']:<{code_w}}  {r['items']:>{n_w},}  {r['fix']}")
    if report.buckets:
        out("")
        out(f"buckets ({len(report.buckets)}; width×height, aspect, images):")
        for line in histogram_lines(report.buckets, width=width - 2, batch_size=report.options.batch_size):
            out("  " + line)
    if report.exact_groups:
        out("")
        out(f"exact duplicates: {len(report.exact_groups):,} groups")
    if report.near_groups:
        out(f"near duplicates: {len(report.near_groups):,} groups (≤ {report.options.near_distance} of 64 hash bits)")
    if not with_findings:
        out("")
        out("no findings")
        return
    out("")
    limit = args.limit or len(with_findings)
    order = {"error": 0, "warning": 1, "info": 2}
    shown = sorted(with_findings, key=lambda it: (min(order[f.severity] for f in it.findings), it.name))[:limit]
    for it in shown:
        head = it.name
        if it.bucket:
            head += (
                f"  {it.width}×{it.height} → {it.bucket[0]}×{it.bucket[1]}  ×{it.scale:.2f}  {it.cropped:.0%} cropped"
            )
        if it.clip_tokens is not None:
            head += f"  {it.clip_tokens} CLIP tokens"
        out(head)
        for f in sorted(it.findings, key=lambda f: order[f.severity]):
            out(f"  {_SEVERITY_MARK[f.severity]} {f.code}: {f.message}")
            if f.code == "clip_tokens":
                lost = _lost_text(f.detail)
                if lost:
                    out(f"      never read: '{lost[:70]}{'…' if len(lost) > 70 else ''}'")
            out(f"      fix: {f.fix}")
    if len(with_findings) > limit:
        out(f"… {len(with_findings) - limit:,} more items with findings (--limit 0 lists all, --json gives everything)")


def _lost_text(detail: dict) -> str | None:
    """The end of the caption a CLIP encoder never sees (only for the items listed)."""
    from sushitui.check.tokens import clip_cut_at
    from sushitui.store import Caption

    caption = Caption.get_or_none(Caption.id == detail.get("caption_id"))
    if caption is None:
        return None
    return clip_cut_at(caption.content, int(detail.get("limit", 75)))
