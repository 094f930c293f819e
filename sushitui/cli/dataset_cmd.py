"""CLI commands: ``dataset add|edit|list|show|reindex|remove`` and ``items``.

Thin over ``sushitui.dataset.registry`` / ``items``: parse, call, print. Long scans draw
a progress bar on a terminal (plain output when piped); the first Ctrl-C cancels and
keeps what was indexed.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys

from sushitui.cli.common import (
    CliError,
    IntArg,
    TerminalProgress,
    add_common,
    ask,
    cancel_on_sigint,
    emit_json,
    fmt_duration,
    fmt_time,
    on_database_error,
    open_db,
    out,
    reply,
)

PROBLEMS_SHOWN = 20
MAX_DEPTH = 4096  # PATH_MAX: a path of 4,096 bytes holds at most ~2,048 folder levels


def register(subparsers) -> None:
    ds = subparsers.add_parser("dataset", help="register, list, show, reindex and remove datasets")
    add_common(ds, json_flag=False)
    sub = ds.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    p = sub.add_parser("add", help="register a folder of images and captions and index it")
    p.add_argument("name", metavar="NAME", help="unique name (1-100 characters)")
    p.add_argument("path", metavar="PATH", help="the folder that holds the images")
    _add_setting_options(p, editing=False)
    add_common(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser(
        "edit",
        help="change a dataset's settings (name, folder, how files are read)",
        description="Change a dataset's settings; only the options given are changed. "
        "A change to how files are read makes the next reindex re-read every file.",
    )
    p.add_argument("name", metavar="NAME", help="the dataset to change")
    p.add_argument("--name", dest="new_name", metavar="NEW", help="rename the dataset (1-100 characters, unique)")
    p.add_argument("--path", dest="new_path", metavar="DIR", help="the folder that holds the images (it moved)")
    _add_setting_options(p, editing=True)
    p.add_argument(
        "--host-root",
        action="append",
        default=None,
        metavar="HOST=PATH",
        help="the folder on machine HOST when it mounts the dataset elsewhere (HOST= removes it; repeatable)",
    )
    p.add_argument(
        "--reindex", action="store_true", help="reindex at once after saving (a full re-read when the change needs one)"
    )
    add_common(p)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("list", help="list registered datasets")
    add_common(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="settings, totals and the last scan report (problems)")
    p.add_argument("name", metavar="NAME")
    add_common(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("reindex", help="re-read what changed on disk (incremental)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--full", action="store_true", help="re-read and re-hash every file")
    add_common(p)
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("remove", help="remove a dataset from the index (files on disk are never touched)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_common(p)
    p.set_defaults(func=cmd_remove)

    from sushitui.cli import import_config_cmd  # issue 17: trainer configs in

    import_config_cmd.register(sub)

    p = subparsers.add_parser("items", help="list a dataset's items (JSON Lines with --json)")
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument(
        "--query",
        "-q",
        metavar="Q",
        help="filter with the query language: tags joined by ',' (AND), '|' (OR), '-' (NOT), "
        "'( )'; '*' wildcards; group:NAME, caption:TYPE (tags, nl, social, inst, desc, prompt), "
        "source:PATTERN (txt_file, user, auto_*), width:/height:/tags:>=N; "
        "e.g. '1girl, -solo, caption:nl'",
    )
    p.add_argument("--limit", type=IntArg(0), metavar="N", help="at most N items")
    p.add_argument("--offset", type=IntArg(0), default=0, metavar="N", help="skip the first N items")
    p.add_argument("--sort", choices=["name", "created", "width", "height", "tags"], default="name")
    p.add_argument("--desc", action="store_true", help="descending order")
    add_common(p)
    p.set_defaults(func=cmd_items)


# --- helpers ---------------------------------------------------------------------------


def _dataset_error(exc: Exception) -> CliError:
    return CliError(str(exc), 1)


def _get(name: str):
    from sushitui.dataset.registry import DatasetNotFound, get_dataset

    try:
        return get_dataset(name)
    except DatasetNotFound as exc:
        raise _dataset_error(exc) from exc


def _print_report(report, name: str, verb: str) -> None:
    line = (
        f"{verb} {name!r}: {report.items_total:,} items "
        f"(+{report.items_added:,} new, {report.items_updated:,} changed, {report.items_removed:,} removed, "
        f"{report.items_unchanged:,} unchanged), {report.files_seen:,} files, {report.captions:,} captions read "
        f"in {report.elapsed:.1f}s"
    )
    out(line)
    if report.cancelled:
        out(f"cancelled: what was indexed so far is kept; run `sushitui dataset reindex {name}` to finish")
    _print_problems(report.problems, name)


def _print_problems(problems, name: str, limit: int | None = PROBLEMS_SHOWN) -> None:
    if not problems:
        return
    out(f"{len(problems):,} problem(s):")
    shown = problems if limit is None else problems[:limit]
    for p in shown:
        path = p.path if hasattr(p, "path") else p["path"]
        reason = p.reason if hasattr(p, "reason") else p["reason"]
        out(f"  {path}: {reason}")
    if limit is not None and len(problems) > limit:
        out(f"  … and {len(problems) - limit:,} more: sushitui dataset show {name}")


# The settings options that `dataset add` and `dataset edit` share (_add_setting_options),
# named in the error for an `edit` that changes nothing.
_SETTING_FLAGS = (
    "--type",
    "--caption-suffixes",
    "--image-suffixes",
    "--primary-suffix",
    "--caption-type",
    "--no-caption-types",
    "--recursive/--no-recursive",
    "--max-depth",
    "--no-max-depth",
    "--exif/--no-exif",
    "--suffix-separator",
    "--folder-caption",
    "--captions-table",
    "--no-captions-tables",
)


def _add_setting_options(p, *, editing: bool) -> None:
    """How the folder is read; ``add`` fills what is not given from DatasetSettings'
    defaults, ``edit`` keeps the dataset's current value."""
    d = "default for new datasets" if editing else "default"
    p.add_argument(
        "--type",
        choices=["auto", "single", "pairs"],
        help=f"auto ({d}): group X_source/X_target/...; single: every image is its own item; pairs: groups are pairs",
    )
    p.add_argument(
        "--caption-suffixes",
        metavar="LIST",
        help=f"comma-separated caption suffixes ({d}: main,alt,instruction,caption,tags,description)",
    )
    p.add_argument(
        "--image-suffixes",
        metavar="LIST",
        help=f"comma-separated image suffixes ({d}: source,target,cref,mask); SUFFIX=ROLE reads a suffix as "
        "a role, e.g. 0=source,1=target for InstructPix2Pix's <seed>_0.jpg/<seed>_1.jpg",
    )
    p.add_argument(
        "--suffix-separator",
        choices=["_", ".", "-"],
        help=f"what comes before a suffix ({d}: _): '.' groups 0.src.jpg + 0.mask.png, '-' OneTrainer's "
        "x-masklabel.png / x-condlabel.png (with --image-suffixes masklabel,condlabel)",
    )
    p.add_argument(
        "--folder-caption",
        metavar="FILE",
        help="a file name (e.g. instruction.txt) whose text is the instruction of every item in its folder "
        "(prompt.json with edit/input/output keys is always read)" + ("; '' removes it" if editing else ""),
    )
    p.add_argument(
        "--captions-table",
        metavar="FILE",
        help="a CSV/TSV/JSONL inside the folder holding captions (metadata.jsonl, metadata.csv, caption.csv "
        "and sd-scripts meta_cap.json are found by name); with --image-column and --caption-column"
        + ("; replaces the dataset's tables" if editing else ""),
    )
    p.add_argument(
        "--image-column", metavar="C", help="the --captions-table column naming each image (relative to the table)"
    )
    p.add_argument(
        "--caption-column",
        metavar="C[=SUBTYPE]",
        action="append",
        help="a --captions-table column holding captions, read as caption SUBTYPE (the first: main; repeatable)",
    )
    if editing:
        p.add_argument("--no-captions-tables", action="store_true", help="stop reading the named captions tables")
    p.add_argument(
        "--primary-suffix", metavar="SUFFIX", help=f"which image of a group is the primary one ({d}: target)"
    )
    types = p.add_mutually_exclusive_group()
    types.add_argument(
        "--caption-type",
        metavar="SUBTYPE=TYPE",
        action="append",
        help="override the caption type of a subtype, e.g. alt=natural_language (repeatable)"
        + ("; replaces the dataset's overrides" if editing else ""),
    )
    if editing:
        types.add_argument("--no-caption-types", action="store_true", help="remove every caption type override")
    p.add_argument(
        "--recursive",
        action=argparse.BooleanOptionalAction,
        help=f"descend into subfolders ({d}) or, with --no-recursive, only the folder itself",
    )
    depth = p.add_mutually_exclusive_group()
    depth.add_argument(
        "--max-depth",
        type=IntArg(0, MAX_DEPTH, "no path on disk goes deeper"),
        metavar="N",
        help=f"subfolder levels to descend (0 = the folder only; {d}: unlimited)",
    )
    if editing:
        depth.add_argument("--no-max-depth", action="store_true", help="descend without a depth limit")
    p.add_argument(
        "--exif",
        action=argparse.BooleanOptionalAction,
        help=f"also read captions embedded in images (EXIF/XMP/IPTC/PNG text; {d}: off)",
    )


def _setting_changes(args) -> dict:
    """The settings options given, as keyword arguments for DatasetSettings / update_settings."""
    changes: dict = {}
    for key in ("type", "caption_suffixes", "image_suffixes", "primary_suffix", "recursive", "max_depth"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if args.exif is not None:
        changes["read_exif"] = args.exif
    if args.caption_type is not None:
        changes["caption_types"] = _caption_types(args.caption_type)
    if getattr(args, "no_caption_types", False):
        changes["caption_types"] = {}
    if getattr(args, "no_max_depth", False):
        changes["max_depth"] = None
    if args.suffix_separator is not None:
        changes["suffix_separator"] = args.suffix_separator
    if args.folder_caption is not None:
        changes["folder_caption"] = args.folder_caption or None
    if args.captions_table is not None:
        changes["caption_tables"] = [_table_spec(args)]
    elif args.image_column is not None or args.caption_column is not None:
        raise CliError("--image-column and --caption-column describe a --captions-table FILE; give the file too", 2)
    if getattr(args, "no_captions_tables", False):
        changes["caption_tables"] = []
    return changes


def _table_spec(args) -> dict:
    from sushitui.dataset.tables import TableError, TableSpec, parse_caption_columns

    if not args.image_column or not args.caption_column:
        raise CliError(
            f"--captions-table {args.captions_table}: name its columns too, e.g. "
            "--image-column file_name --caption-column text (--caption-column C=SUBTYPE for more)",
            2,
        )
    try:
        columns = parse_caption_columns(args.caption_column)
    except TableError as exc:
        raise CliError(str(exc), 2) from exc
    return TableSpec(args.captions_table, args.image_column, columns).to_dict()


def _caption_types(pairs: list[str]) -> dict[str, str]:
    types = {}
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"--caption-type {pair!r}: use SUBTYPE=TYPE, e.g. alt=natural_language")
        k, v = pair.split("=", 1)
        types[k.strip().lower()] = v.strip()
    return types


# --- commands --------------------------------------------------------------------------


def _finish_hint(name: str, registered_only: bool = False):
    """For a database failure during a scan: how to finish once it is fixed (a
    reindex; `dataset add` again would find the name taken)."""

    def hint() -> str | None:
        from sushitui.store import Dataset

        if registered_only and Dataset.get_or_none(Dataset.name == name) is None:
            return None  # it failed before the dataset was registered: `dataset add` again
        return (
            f"The items indexed before the failure are kept; once it is fixed, "
            f"`sushitui dataset reindex {shlex.quote(name)}` finishes the index"
        )

    return hint


def cmd_add(args) -> int:
    from sushitui.dataset.registry import DatasetError, DatasetSettings, add_dataset, dataset_to_dict

    open_db(args)
    settings = DatasetSettings(name=args.name, root_path=args.path, **_setting_changes(args))
    bar = TerminalProgress(f"scanning {args.name}")
    try:
        with cancel_on_sigint() as token, on_database_error(args, _finish_hint(args.name, registered_only=True)):
            ds, report = add_dataset(settings, progress=bar, cancel=token)
    except DatasetError as exc:
        raise _dataset_error(exc) from exc
    finally:
        bar.close()
    reply(
        args,
        {"dataset": dataset_to_dict(ds), "report": report.to_dict()},
        lambda: _print_report(report, ds.name, "registered"),
    )
    return 130 if report.cancelled else 0


def _reindex(ds, full: bool = False, args=None):
    """Reindex with the terminal progress bar; the first Ctrl-C cancels (kept so far)."""
    from sushitui.dataset.registry import DatasetError, reindex

    bar = TerminalProgress(f"reindexing {ds.name}")
    try:
        with cancel_on_sigint() as token, on_database_error(args, _finish_hint(ds.name)):
            return reindex(ds, progress=bar, cancel=token, full=full)
    except DatasetError as exc:
        raise _dataset_error(exc) from exc
    finally:
        bar.close()


def cmd_reindex(args) -> int:
    from sushitui.dataset.registry import dataset_to_dict, get_dataset

    open_db(args)
    ds = _get(args.name)
    report = _reindex(ds, full=args.full, args=args)
    reply(
        args,
        {"dataset": dataset_to_dict(get_dataset(ds.id)), "report": report.to_dict()},
        lambda: _print_report(report, ds.name, "reindexed"),
    )
    return 130 if report.cancelled else 0


_SETTING_LABELS = {
    "name": "name",
    "root_path": "path",
    "type": "type",
    "caption_suffixes": "caption suffixes",
    "image_suffixes": "image suffixes",
    "primary_suffix": "primary suffix",
    "caption_types": "caption types",
    "recursive": "recursive",
    "max_depth": "max depth",
    "read_exif": "embedded metadata",
    "suffix_separator": "suffix separator",
    "folder_caption": "folder caption",
    "caption_tables": "captions tables",
}


def _fmt_setting(key: str, value) -> str:
    if key == "caption_types":
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
    if key == "max_depth":
        return "unlimited" if value is None else str(value)
    if key == "read_exif":
        return "read" if value else "off"
    if key == "caption_tables":
        return "; ".join(_fmt_table(t) for t in value) or "none"
    if key == "folder_caption":
        return value or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return repr(value) if key == "name" else str(value)


def _fmt_table(t: dict) -> str:
    columns = ", ".join(f"{c}={s}" for c, s in t.get("columns", {}).items())
    return f"{t.get('file')} (image: {t.get('image_column')}; captions: {columns})"


def _edit_host_roots(args, quiet: bool) -> None:
    from sushitui.dataset.registry import DatasetError, dataset_to_dict, set_host_roots

    roots: dict[str, str | None] = {}
    for spec in args.host_root:
        host, sep, path = spec.partition("=")
        if not sep:
            raise CliError(f"--host-root {spec!r}: write HOST=PATH (HOST= removes the host's folder)", 2)
        roots[host] = path or None
    open_db(args)
    try:
        ds = set_host_roots(_get(args.name), roots)
    except DatasetError as exc:
        raise _dataset_error(exc) from exc
    if quiet:  # the other changes report
        return
    if args.json:
        emit_json({"dataset": dataset_to_dict(ds)})
    else:
        for host, path in sorted((ds.host_roots or {}).items()):
            out(f"{host}: {path}")


def cmd_edit(args) -> int:
    from sushitui.dataset.registry import DatasetError, DatasetSettings, dataset_to_dict, update_settings

    changes = _setting_changes(args)
    if args.new_name is not None:
        changes["name"] = args.new_name
    if args.new_path is not None:
        changes["root_path"] = args.new_path
    if args.host_root:
        _edit_host_roots(args, quiet=bool(changes))
        if not changes:
            return 0
    if not changes:
        flags = ["--name NEW", "--path DIR", *_SETTING_FLAGS]
        raise CliError(
            f"nothing to change for {args.name!r}: give one or more of {', '.join(flags)} "
            "(`sushitui dataset edit --help` explains them; `sushitui dataset show NAME` shows the current ones)",
            2,
        )
    open_db(args)
    ds = _get(args.name)
    before = copy.deepcopy(DatasetSettings.from_dataset(ds))
    try:
        ds = update_settings(ds, **changes)
    except DatasetError as exc:
        raise _dataset_error(exc) from exc
    after = DatasetSettings.from_dataset(ds)
    changed = {
        f: [getattr(before, f), getattr(after, f)] for f in _SETTING_LABELS if getattr(before, f) != getattr(after, f)
    }
    needs_full = bool((ds.last_scan_report or {}).get("needs_full"))
    report = _reindex(ds, args=args) if args.reindex else None
    if args.json:
        from sushitui.dataset.registry import get_dataset

        emit_json(
            {
                "dataset": dataset_to_dict(get_dataset(ds.id)),
                "changed": changed,
                "needs_full_reindex": needs_full,
                "reindex": report.to_dict() if report else None,
            }
        )
        return 130 if report and report.cancelled else 0
    if changed:
        out(f"updated {ds.name!r}:")
        for key, (old, new) in changed.items():
            out(f"  {_SETTING_LABELS[key]}: {_fmt_setting(key, old)} → {_fmt_setting(key, new)}")
    else:
        out(f"nothing changed: {ds.name!r} already has these settings")
    if report is not None:
        _print_report(report, ds.name, "reindexed (every file re-read)" if needs_full else "reindexed")
        return 130 if report.cancelled else 0
    if needs_full:
        out(
            f"the next reindex re-reads every file so the new settings take effect: "
            f"sushitui dataset reindex {shlex.quote(ds.name)} (or pass --reindex)"
        )
    return 0


def cmd_list(args) -> int:
    from sushitui.dataset.registry import dataset_to_dict, list_datasets

    open_db(args)
    datasets = list_datasets()
    if args.json:
        emit_json([dataset_to_dict(d) for d in datasets])
        return 0
    if not datasets:
        out("no datasets yet: sushitui dataset add NAME PATH")
        return 0
    width = max(4, *(len(d.name) for d in datasets))
    out(f"{'NAME':<{width}}  {'ITEMS':>8}  {'IMAGES':>8}  {'CAPTIONS':>8}  {'INDEXED':<16}  PATH")
    for d in datasets:
        out(
            f"{d.name:<{width}}  {d.total_items:>8,}  {d.total_images:>8,}  {d.total_captions:>8,}  "
            f"{fmt_time(d.indexed_at):<16}  {d.root_path}"
        )
    return 0


def cmd_show(args) -> int:
    from sushitui.dataset.registry import dataset_to_dict

    open_db(args)
    ds = _get(args.name)
    report = ds.last_scan_report or {}
    if args.json:
        d = dataset_to_dict(ds)
        d["last_scan_report"] = report or None
        emit_json(d)
        return 0
    out(f"name:             {ds.name}")
    out(f"path:             {ds.root_path}")
    out(f"type:             {ds.type}")
    out(f"caption suffixes: {', '.join(ds.caption_suffixes or [])}")
    out(f"image suffixes:   {', '.join(ds.image_suffixes or [])} (primary: {ds.primary_suffix})")
    if ds.caption_types:
        out(f"caption types:    {', '.join(f'{k}={v}' for k, v in sorted(ds.caption_types.items()))}")
    out(
        f"recursive:        {'yes' if ds.recursive else 'no'}"
        + (f" (max depth {ds.max_depth})" if ds.max_depth is not None else "")
    )
    out(f"embedded metadata: {'read' if ds.read_exif else 'off'}")
    if (ds.suffix_separator or "_") != "_":
        out(f"suffix separator: {ds.suffix_separator}")
    if ds.folder_caption:
        out(f"folder caption:   {ds.folder_caption} (and prompt.json)")
    for t in ds.caption_tables or ():
        out(f"captions table:   {_fmt_table(t)}")
    out(f"items:            {ds.total_items:,} ({ds.total_images:,} images, {ds.total_captions:,} captions)")
    out(f"indexed:          {fmt_time(ds.indexed_at)}")
    if report:
        state = "cancelled" if report.get("cancelled") else "complete"
        out(
            f"last scan:        {state}, {report.get('files_seen', 0):,} files in {fmt_duration(report.get('elapsed'))}, "
            f"+{report.get('items_added', 0):,} / ~{report.get('items_updated', 0):,} / -{report.get('items_removed', 0):,} items"
        )
        problems = report.get("problems") or []
        total = report.get("problems_total", len(problems))
        if problems:
            out(f"problems ({total:,}):")
            for p in problems:
                out(f"  {p['path']}: {p['reason']}")
            if total > len(problems):
                out(f"  … and {total - len(problems):,} more (not stored)")
        else:
            out("problems:         none")
    return 0


def cmd_remove(args) -> int:
    from sushitui.dataset.registry import remove_dataset

    open_db(args)
    ds = _get(args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"removing {ds.name!r} from the index needs confirmation: pass --yes (files on disk are not touched)"
            )
        answer = ask(
            f"Remove {ds.name!r} ({ds.total_items:,} items) from the index? Files on disk are not touched. [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            out("not removed")
            return 1
    n = remove_dataset(ds)
    out(f"removed {ds.name!r} from the index ({n:,} items); files in {ds.root_path} were not touched")
    return 0


def cmd_items(args) -> int:
    from sushitui.dataset.items import ItemQueryError, items_to_dicts, select_items

    open_db(args)
    ds = _get(args.name)
    try:
        select = select_items(ds.id, args.query, args.sort, args.desc)
    except ItemQueryError as exc:
        raise CliError(str(exc)) from exc
    except Exception as exc:  # the query language's QueryError
        if type(exc).__name__ != "QueryError":
            raise
        raise _query_error(exc, args.query) from exc
    if args.limit is not None:
        select = select.limit(args.limit)
    if args.offset:
        select = select.offset(args.offset) if args.limit is not None else select.limit(-1).offset(args.offset)
    try:
        page = 500
        batch = []
        for item in select.iterator():
            batch.append(item)
            if len(batch) >= page:
                _emit_items(batch, args.json, items_to_dicts)
                batch = []
        if batch:
            _emit_items(batch, args.json, items_to_dicts)
    except Exception as exc:
        if type(exc).__name__ != "QueryError":
            raise
        raise _query_error(exc, args.query) from exc
    return 0


def _query_error(exc, query: str) -> CliError:
    msg = getattr(exc, "message", str(exc))
    pos = getattr(exc, "position", None)
    if pos is None:
        return CliError(f"bad query: {msg}")
    return CliError(f"bad query at position {pos + 1}: {msg}", more=[f"  {query}", f"  {' ' * pos}^"])


def _emit_items(items, as_json: bool, items_to_dicts) -> None:
    if as_json:
        for d in items_to_dicts(items):
            emit_json(d)
        return
    for d in items_to_dicts(items):
        main_tags = [t["tag"] for t in d["tags"] if t["subtype"] == "main"][:8]
        size = f"{d['width']}×{d['height']}" if d["width"] else "?"
        extra = f"  [{len(d['problems'])} problem(s)]" if d.get("problems") else ""
        out(f"{d['id']:>7}  {d['type']:<6} {size:>11}  {d['image']}  {', '.join(main_tags)}{extra}")
