"""CLI command: ``dataset import-config FILE`` (issue 17, trainer configs in).

Thin over ``sushitui.export.configs_in``: read and check the config, print the plan,
register every folder (or, with ``--dry-run``, nothing)."""

from __future__ import annotations

from sushitui.cli.common import CliError, TerminalProgress, add_common, on_database_error, open_db, out, reply


def register(sub) -> None:
    from sushitui.export.configs_in import FORMATS_IN

    p = sub.add_parser(
        "import-config",
        help="register the image folders a trainer config names (kohya, ai-toolkit, OneTrainer, diffusion-pipe, musubi-tuner)",
        description="Read a trainer's dataset config (kohya dataset_config.toml, ai-toolkit YAML, OneTrainer concepts.json, "
        "diffusion-pipe dataset.toml, musubi-tuner dataset TOML) and register each image folder as a dataset, keeping "
        "repeats, class tokens / trigger, is_reg, keep_tokens, caption extension, control/mask folders and metadata files "
        "in the dataset's trainer settings. Every folder is checked first: nothing is registered unless all can be.",
    )
    p.add_argument("file", metavar="FILE", help="the trainer config")
    p.add_argument(
        "--path-map",
        action="append",
        default=[],
        metavar="FROM=TO",
        help=r"rewrite a path prefix, e.g. 'C:\data=/data' (repeatable; Windows prefixes match case-insensitively)",
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="the folder the trainer runs in, for relative paths (default: the config's folder)",
    )
    p.add_argument("--format", choices=FORMATS_IN, help="the trainer (default: from the file name and contents)")
    p.add_argument(
        "--name", metavar="PREFIX", help="dataset names are PREFIX-<folder name> (default: the config's file name)"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be registered; register nothing")
    add_common(p)
    p.set_defaults(func=cmd_import_config)


def cmd_import_config(args) -> int:
    from sushitui.export.configs_in import ConfigImportError, import_config, parse_path_map

    open_db(args)
    bar = TerminalProgress("scanning")
    try:
        with on_database_error(args):
            result = import_config(
                args.file,
                parse_path_map(args.path_map),
                args.workdir,
                args.format,
                args.name,
                dry_run=args.dry_run,
                progress=bar,
            )
    except ConfigImportError as exc:
        first = str(exc).split("\n", 1)[0]
        raise CliError(first, 1, more=["  " + p for p in exc.problems]) from exc
    finally:
        bar.close()
    reply(args, result.to_dict(), lambda: _print(result))
    return 0


def _print(result) -> None:
    plan = result.plan
    verb = "would register" if result.dry_run else "registered"
    out(f"{plan.config} ({plan.format}): {len(plan.entries)} folder(s)")
    counts = {r["path"]: r["items"] for r in result.registered}
    for e in plan.entries:
        t = e.trainer
        facts = [
            f"repeats {t['repeats']}" if "repeats" in t else None,
            f"class tokens {t['class_tokens']!r}" if t.get("class_tokens") else None,
            f"trigger {t['trigger']!r}" if t.get("trigger") else None,
            "is_reg" if t.get("is_reg") else None,
            f"keep_tokens {t['keep_tokens']}" if t.get("keep_tokens") else None,
            f"captions *{t['caption_extension']}" if t.get("caption_extension") else None,
            "recursive" if e.recursive else None,
            f"suffix separator {e.settings['suffix_separator']!r}" if e.settings.get("suffix_separator") else None,
            "captions table " + ", ".join(t["file"] for t in e.settings["caption_tables"])
            if e.settings.get("caption_tables")
            else None,
        ]
        facts = ", ".join(f for f in facts if f)
        if e.existing:
            head = f"  = {e.name} ← {e.path} (already registered)"
        else:
            items = f", {counts[e.path]:,} items" if e.path in counts else ""
            head = f"  {'+' if not result.dry_run else '?'} {e.name} ← {e.path} ({facts}{items})"
        out(head)
        for d in t.get("control_dirs", []) + t.get("mask_dirs", []) + t.get("conditioning_dirs", []):
            out(f"      related folder: {d}")
        for note in e.unmapped:
            out(f"      not mapped: {note}")
    for note in plan.unmapped:
        out(f"  not mapped: {note}")
    if result.dry_run:
        out(f"dry run: {verb} {sum(1 for e in plan.entries if not e.existing)} dataset(s); nothing was registered")
    else:
        out(f"{verb} {len(result.registered)} dataset(s)")
