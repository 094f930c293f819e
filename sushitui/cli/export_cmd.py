"""CLI command: ``export NAME OUTDIR --format ...`` (EX-1..3).

Thin over ``sushitui.export``: parse the options, run the export with a terminal
progress bar (first Ctrl-C cancels and leaves OUTDIR empty), print a summary.
"""

from __future__ import annotations

from sushitui.cli.common import (
    CliError,
    IntArg,
    add_common,
    fmt_duration,
    open_db,
    out,
    progress_and_cancel,
    reply,
)

FORMAT_CHOICES = [
    "txt",
    "kohya-json",
    "kohya-toml",
    "ai-toolkit",
    "diffusers",
    "onetrainer",
    "diffusion-pipe",
    "musubi",
    "kohya-jsonl",
]
PROBLEMS_SHOWN = 20


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a dataset for a trainer (txt, kohya-ss JSON/TOML, ai-toolkit YAML)",
        description="Export a dataset (or a query result) into OUTDIR, which must be new or empty. "
        "The source dataset is never modified. Captions are written exactly as the trainer will read them.",
    )
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("outdir", metavar="OUTDIR", help="a new or empty folder")
    p.add_argument(
        "--format",
        "-f",
        choices=FORMAT_CHOICES,
        default="txt",
        help="txt: image + .txt per item in kohya N_name folders; kohya-json: fine-tuning metadata.json + dataset.toml; "
        "kohya-toml: dataset config TOML (one subset per folder; group masks become conditioning_data_dir "
        "for --masked_loss, and txt places them under masks/ too); ai-toolkit: dataset YAML with control "
        "and mask images; diffusers: imagefolder metadata.jsonl; onetrainer: concepts.json (masks as -masklabel.png); "
        "diffusion-pipe: dataset.toml [[directory]] (+ captions.json); musubi: musubi-tuner dataset TOML "
        "(control_directory); kohya-jsonl: sd-scripts JSONL metadata + dataset.toml",
    )
    p.add_argument("--query", "-q", metavar="Q", help="export only the items matching this query")
    p.add_argument(
        "--include-excluded",
        action="store_true",
        help="also export items flagged exclude (`sushitui flag NAME ITEM exclude`); left out by default",
    )
    p.add_argument(
        "--caption",
        metavar="SUBTYPE[,FALLBACK...]",
        default="main",
        help="caption subtype(s) in fallback order, e.g. main,alt (a caption type such as natural_language also works)",
    )
    p.add_argument(
        "--exclude-groups",
        metavar="GROUPS",
        default="",
        help="comma-separated tag groups whose tags are left out, e.g. Meta",
    )
    p.add_argument("--aliases", action="store_true", help="replace aliased tags by their targets")
    p.add_argument(
        "--underscores-to-spaces", action="store_true", help="long_hair -> long hair (kaomoji like ^_^ are kept)"
    )
    p.add_argument("--escape-parens", action="store_true", help=r"foo (bar) -> foo \(bar\) as prompt syntax needs")
    p.add_argument(
        "--trigger",
        metavar="WORD",
        help="trigger word put first in every caption (kohya keep_tokens, ai-toolkit trigger_word)",
    )
    p.add_argument(
        "--repeats",
        type=IntArg(1, 10_000),
        metavar="N",
        help="kohya repeats (default: the N of folders named N_name, else 1)",
    )
    p.add_argument(
        "--shuffle-caption", action="store_true", help="write shuffle_caption/shuffle_tokens = true in the config"
    )
    p.add_argument(
        "--resolution", metavar="R[,R...]", help="kohya resolution / ai-toolkit buckets (default from the image sizes)"
    )
    p.add_argument("--batch-size", type=IntArg(1, 65_536), default=1, metavar="N", help="kohya batch_size (default 1)")
    p.add_argument(
        "--config-root",
        metavar="PATH",
        help="the path the trainer sees OUTDIR at, written into configs (default OUTDIR)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--link",
        dest="link_mode",
        action="store_const",
        const="link",
        help="hard-link images (default; copies across devices)",
    )
    mode.add_argument("--symlink", dest="link_mode", action="store_const", const="symlink", help="symlink images")
    mode.add_argument("--copy", dest="link_mode", action="store_const", const="copy", help="copy images")
    p.add_argument("--zip", action="store_true", help="pack the export into OUTDIR/<OUTDIR name>.zip")
    add_common(p)
    p.set_defaults(func=cmd_export, link_mode="link")


def options_from_args(args):
    from sushitui.export import ExportOptions

    resolution = None
    if args.resolution:
        try:
            resolution = tuple(int(r) for r in args.resolution.split(",") if r.strip())
        except ValueError as exc:
            raise CliError(f"--resolution takes numbers like 1024 or 512,768,1024, not {args.resolution!r}", 2) from exc
    return ExportOptions(
        format=args.format,
        query=args.query,
        include_excluded=args.include_excluded,
        caption=tuple(c.strip() for c in args.caption.split(",") if c.strip()),
        exclude_groups=tuple(g.strip() for g in args.exclude_groups.split(",") if g.strip()),
        aliases=args.aliases,
        underscores_to_spaces=args.underscores_to_spaces,
        escape_parens=args.escape_parens,
        trigger=args.trigger.strip() if args.trigger and args.trigger.strip() else None,
        repeats=args.repeats,
        link_mode=args.link_mode,
        zip=args.zip,
        config_root=args.config_root,
        resolution=resolution,
        batch_size=args.batch_size,
        shuffle_caption=args.shuffle_caption,
    )


def cmd_export(args) -> int:
    from sushitui.dataset.registry import DatasetNotFound
    from sushitui.export import ExportError, export_dataset

    options = options_from_args(args)
    open_db(args)
    try:
        with progress_and_cancel("export") as (bar, token):
            report = export_dataset(args.name, args.outdir, options, progress=bar, cancel=token)
    except (ExportError, DatasetNotFound) as exc:  # what to export is wrong: a usage error
        raise CliError(str(exc), 2) from exc
    reply(args, report.to_dict(), lambda: _print_report(report))
    if report.cancelled:
        return 130
    return 0


def _print_report(report) -> None:
    if report.cancelled:
        out(f"export cancelled; nothing was left in {report.outdir}")
        return
    where = report.zip_path or report.outdir
    images = []
    for n, what in (
        (report.images_linked, "hard-linked"),
        (report.images_symlinked, "symlinked"),
        (report.images_copied, "copied"),
    ):
        if n:
            images.append(f"{n:,} {what}")
    out(f"exported {report.items_exported:,} of {report.items_total:,} items as {report.format} to {where}")
    out(
        f"  images: {', '.join(images) or 'none'}; caption files: {report.captions_written:,}; "
        f"{fmt_duration(report.elapsed)} ({report.files_per_s:,.0f} files/s)"
    )
    for cfg in report.config_files:
        out(f"  config: {cfg}")
    if report.items_without_caption:
        out(
            f"  {report.items_without_caption:,} items had no caption (no caption file written; kohya then uses the folder's class tokens)"
        )
    if report.renamed:
        out(f"  {len(report.renamed):,} names were made unique, e.g. {report.renamed[0][0]} -> {report.renamed[0][1]}")
    if report.shortened:
        from sushitui.export.writer import MAX_STEM_BYTES

        out(
            f"  {len(report.shortened):,} names longer than {MAX_STEM_BYTES} bytes were shortened "
            "(a stable hash of the full name at the end; an item's caption, mask and control images share the short name):"
        )
        for s in report.shortened[:PROBLEMS_SHOWN]:
            out(f"    {s.source} -> {s.exported}")
        if len(report.shortened) > PROBLEMS_SHOWN:
            out(f"    … and {len(report.shortened) - PROBLEMS_SHOWN:,} more (use --json for all)")
    if report.problems:
        out(f"  {len(report.problems):,} problems:")
        for p in report.problems[:PROBLEMS_SHOWN]:
            out(f"    {p.path}: {p.reason}")
        if len(report.problems) > PROBLEMS_SHOWN:
            out(f"    … and {len(report.problems) - PROBLEMS_SHOWN:,} more (use --json for all)")
