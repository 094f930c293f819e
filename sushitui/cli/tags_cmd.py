"""CLI commands: ``tag add|remove|replace`` (bulk edits), ``alias ...``, ``group ...``."""

from __future__ import annotations

from sushitui.cli.common import (
    CliError,
    IntArg,
    TerminalProgress,
    add_common,
    ask,
    cancel_on_sigint,
    emit_json,
    int_list,
    on_database_error,
    open_db,
    out,
    reply,
)

SHOW_FILES = 20


def register(subparsers) -> None:
    _register_tag(subparsers)
    _register_alias(subparsers)
    _register_group(subparsers)


# --- tag add|remove|replace ------------------------------------------------------------


def _register_tag(subparsers) -> None:
    p = subparsers.add_parser(
        "tag",
        help="add, remove or replace a tag on many items (bulk edit)",
        description="Bulk tag edits on the items of a dataset that match --query (all items without it). "
        "Caption files are written atomically; --dry-run shows what would change.",
    )
    sub = p.add_subparsers(dest="tag_command", metavar="ACTION", required=True)
    specs = {
        "add": ("add TAG to the matching items that lack it (aliases applied)", ["tag"]),
        "remove": ("remove TAG (or a '*' pattern) from the matching items", ["tag"]),
        "replace": ("replace TAG (or a '*' pattern) by NEW in place", ["tag", "new"]),
    }
    for action, (help_text, positionals) in specs.items():
        sp = sub.add_parser(action, help=help_text, description=help_text)
        sp.add_argument("name", metavar="NAME", help="dataset name")
        for pos in positionals:
            sp.add_argument(pos, metavar=pos.upper())
        sp.add_argument(
            "--query",
            "-q",
            default=None,
            metavar="Q",
            help="only items matching this query (see README: query language)",
        )
        sp.add_argument("--items", default=None, metavar="IDS", help="only these item ids (comma-separated)")
        sp.add_argument(
            "--subtype",
            default="main",
            help="the tag caption to edit (default: main); 'auto': each item's own, i.e. main, or the "
            "caption holding its tags when main is prose (kohya x.txt + x.cap), as the browser does",
        )
        if action == "add":
            sp.add_argument(
                "--position",
                type=IntArg(0),
                default=None,
                metavar="N",
                help="insert at index N (0: first) instead of the end",
            )
        sp.add_argument(
            "--dry-run", action="store_true", help="report the items and files that would change; write nothing"
        )
        add_common(sp)
        sp.set_defaults(func=_cmd_tag, tag_action=action)


def _item_ids(text: str | None) -> list[int] | None:
    return None if text is None else int_list("--items", text)


def _unindexed_hint(name: str, progress: "_CountingProgress", verb: str = "edited"):
    """For a database failure in a bulk edit: batches before the failing one are in
    files and index; the failing batch's caption files were written before its index
    transaction, so they are on disk but not yet in the index. A reindex reads them in."""
    import shlex

    def hint() -> str:
        done = (
            f"{progress.done:,} of {progress.total:,} items were {verb} and indexed before it; "
            if progress.total
            else ""
        )
        return (
            f"{done}caption files written by the batch that failed are on disk but not yet in the index. "
            f"Once the database can be written again, `sushitui dataset reindex {shlex.quote(name)}` "
            "brings the index up to date with them"
        )

    return hint


class _CountingProgress:
    """Passes progress on to the bar and keeps the last count (for the failure message)."""

    def __init__(self, bar):
        self.bar = bar
        self.done = 0
        self.total = 0

    def __call__(self, ev) -> None:
        self.done, self.total = ev.done, ev.total or 0
        self.bar(ev)


def _cmd_tag(args) -> int:
    from sushitui.dataset import bulk_edit
    from sushitui.dataset.registry import DatasetNotFound
    from sushitui.tags.groups import ensure_default_groups
    from sushitui.tags.query import QueryError

    open_db(args)
    ensure_default_groups()  # group:NAME queries need the shipped groups on a new database
    ids = _item_ids(args.items)
    if ids is not None and args.query:
        raise CliError("use either --query or --items, not both", 2)
    target = ids if ids is not None else args.query
    progress = TerminalProgress(f"tag {args.tag_action}", enabled=None if not args.json else False)
    counting = _CountingProgress(progress)
    hint = None if args.dry_run else _unindexed_hint(args.name, counting)
    try:
        with cancel_on_sigint() as cancel, on_database_error(args, hint):
            kwargs = dict(subtype=args.subtype, dry_run=args.dry_run, progress=counting, cancel=cancel)
            if args.tag_action == "add":
                report = bulk_edit.bulk_add(args.name, target, args.tag, position=args.position, **kwargs)
            elif args.tag_action == "remove":
                report = bulk_edit.bulk_remove(args.name, target, args.tag, **kwargs)
            else:
                report = bulk_edit.bulk_replace(args.name, target, args.tag, args.new, **kwargs)
    except QueryError as exc:
        raise CliError(f"bad --query: {exc}", 2, more=exc.pointer(args.query or "").split("\n")) from exc
    except (bulk_edit.BulkError, DatasetNotFound) as exc:  # what to edit is wrong: a usage error
        raise CliError(str(exc), 2) from exc
    finally:
        progress.close()
    reply(args, report.to_dict(), lambda: _print_bulk(report))
    return 1 if report.problems else (130 if report.cancelled else 0)


def _print_bulk(report) -> None:
    what = {
        "add": f"add '{report.tag}' to",
        "remove": f"remove '{report.tag}' from",
        "replace": f"replace '{report.tag}' with '{report.new_tag}' on",
    }[report.operation]
    if report.dry_run:
        out(
            f"dry run: would {what} {report.items_changed:,} of {report.items_matched:,} matching items "
            f"({len(report.files):,} caption files)"
        )
    else:
        done = {"add": "added", "remove": "removed", "replace": "replaced"}[report.operation]
        out(
            f"{done}: {what.split(' ', 1)[1]} {report.items_changed:,} of {report.items_matched:,} matching items; "
            f"{len(report.files):,} caption files written in {report.elapsed:.2f} s"
        )
    for f in report.files[:SHOW_FILES]:
        out(f"  {f}")
    if len(report.files) > SHOW_FILES:
        out(f"  … and {len(report.files) - SHOW_FILES:,} more (--json lists all)")
    if report.cancelled:
        out("cancelled: the batches written so far are kept; run the command again to finish")
    for p in report.problems:
        out(f"problem: item {p.item_id} {p.path or ''}: {p.reason}")


# --- alias -----------------------------------------------------------------------------


def _register_alias(subparsers) -> None:
    p = subparsers.add_parser(
        "alias",
        help="tag aliases (girl → 1girl), applied whenever a tag is added",
        description="Tag aliases: a tag written as FROM is written as TO whenever a tag is added.",
    )
    sub = p.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    sp = sub.add_parser("list", help="list aliases")
    add_common(sp)
    sp.set_defaults(func=_cmd_alias_list)
    sp = sub.add_parser("add", help="add or retarget an alias FROM → TO")
    sp.add_argument("from_tag", metavar="FROM")
    sp.add_argument("to_tag", metavar="TO")
    add_common(sp)
    sp.set_defaults(func=_cmd_alias_add)
    sp = sub.add_parser("remove", help="remove the alias of FROM")
    sp.add_argument("from_tag", metavar="FROM")
    add_common(sp)
    sp.set_defaults(func=_cmd_alias_remove)
    sp = sub.add_parser("apply", help="rewrite a dataset's existing tags through the aliases")
    sp.add_argument("name", metavar="NAME", help="dataset name")
    sp.add_argument("--dry-run", action="store_true", help="show how many items and files would change; write nothing")
    add_common(sp)
    sp.set_defaults(func=_cmd_alias_apply)


def _cmd_alias_list(args) -> int:
    from sushitui.tags import aliases

    open_db(args)
    rows = aliases.list_aliases()
    if args.json:
        emit_json([{"from": a.from_tag, "to": a.to_tag} for a in rows])
        return 0
    if not rows:
        out("no aliases (add one with: sushitui alias add FROM TO)")
    width = max((len(a.from_tag) for a in rows), default=0)
    for a in rows:
        out(f"{a.from_tag:<{width}}  →  {a.to_tag}")
    return 0


def _cmd_alias_add(args) -> int:
    from sushitui.tags import aliases

    open_db(args)
    try:
        a = aliases.add_alias(args.from_tag, args.to_tag)
    except aliases.AliasError as exc:
        raise CliError(str(exc), 2) from exc
    reply(
        args,
        {"from": a.from_tag, "to": a.to_tag},
        f"alias added: {a.from_tag} → {a.to_tag} (existing captions: sushitui alias apply NAME)",
    )
    return 0


def _cmd_alias_remove(args) -> int:
    from sushitui.tags import aliases

    open_db(args)
    if not aliases.remove_alias(args.from_tag):
        raise CliError(f"no alias for '{args.from_tag}' (see: sushitui alias list)", 1)
    reply(args, {"removed": args.from_tag}, f"alias removed: {args.from_tag}")
    return 0


def _cmd_alias_apply(args) -> int:
    from sushitui.dataset import bulk_edit
    from sushitui.dataset.registry import DatasetNotFound

    open_db(args)
    progress = TerminalProgress("alias apply", enabled=None if not args.json else False)
    counting = _CountingProgress(progress)
    try:
        with (
            cancel_on_sigint() as cancel,
            on_database_error(args, None if args.dry_run else _unindexed_hint(args.name, counting, "rewritten")),
        ):
            report = bulk_edit.apply_aliases(args.name, dry_run=args.dry_run, progress=counting, cancel=cancel)
    except (bulk_edit.BulkError, DatasetNotFound) as exc:  # what to edit is wrong: a usage error
        raise CliError(str(exc), 2) from exc
    finally:
        progress.close()
    if args.json:
        from dataclasses import asdict

        emit_json(asdict(report))
        return 1 if report.problems else (130 if report.cancelled else 0)
    verb = "would change" if report.dry_run else "changed"
    out(f"{verb} {report.items_changed:,} items ({len(report.files):,} caption files, {report.tags_replaced:,} tags)")
    for label, n in sorted(report.by_alias.items(), key=lambda kv: -kv[1]):
        out(f"  {label}: {n:,}")
    for item_id, path, reason in report.problems:
        out(f"problem: item {item_id} {path or ''}: {reason}")
    if report.cancelled:
        out("cancelled: the batches written so far are kept; run the command again to finish")
    return 1 if report.problems else (130 if report.cancelled else 0)


# --- group -----------------------------------------------------------------------------


def _register_group(subparsers) -> None:
    p = subparsers.add_parser(
        "group",
        help="tag groups: list, create, rename, colour, members, import",
        description="Tag groups colour tag pills and drive group:NAME queries.",
    )
    sub = p.add_subparsers(dest="group_command", metavar="ACTION", required=True)

    def cmd(name, help_text, func, *args_spec):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        for spec in args_spec:
            spec(sp)
        add_common(sp)
        sp.set_defaults(func=func)
        return sp

    def group_name(sp):
        sp.add_argument("group", metavar="GROUP")

    def tags(sp):
        sp.add_argument("tags", metavar="TAG", nargs="+", help="tags (several, or one comma-separated list)")

    cmd("list", "list groups with their colours and sizes", _cmd_group_list)
    cmd(
        "add",
        "create a group",
        _cmd_group_add,
        group_name,
        lambda sp: sp.add_argument("--color", default=None, help="#RRGGBB"),
        lambda sp: sp.add_argument("--description", default="", help="a short description"),
    )
    cmd(
        "rename", "rename a group", _cmd_group_rename, group_name, lambda sp: sp.add_argument("new_name", metavar="NEW")
    )
    cmd(
        "remove",
        "delete a group (tags on items are not touched)",
        _cmd_group_remove,
        group_name,
        lambda sp: sp.add_argument("--yes", action="store_true", help="do not ask for confirmation"),
    )
    cmd(
        "color",
        "set a group's colour",
        _cmd_group_color,
        group_name,
        lambda sp: sp.add_argument("color", metavar="#RRGGBB"),
    )
    cmd("tags", "list a group's tags", _cmd_group_tags, group_name)
    cmd("add-tags", "add tags to a group", _cmd_group_add_tags, group_name, tags)
    cmd("remove-tags", "remove tags from a group", _cmd_group_remove_tags, group_name, tags)
    cmd(
        "import",
        "import group definitions from a JSON file",
        _cmd_group_import,
        lambda sp: sp.add_argument("file", metavar="FILE"),
    )


def _groups():
    from sushitui.tags import groups

    return groups


def _run_group(args, fn):
    g = _groups()
    open_db(args)
    g.ensure_default_groups()
    try:
        return fn(g)
    except g.GroupError as exc:
        raise CliError(str(exc), 2) from exc


def _split(values: list[str]) -> list[str]:
    from sushitui.tags.normalize import split_tags

    return [t for v in values for t in split_tags(v)]


def _cmd_group_list(args) -> int:
    def run(g):
        rows = g.list_groups()
        if args.json:
            emit_json(
                [{"name": r.name, "color": r.color, "description": r.description, "tags": r.tag_count} for r in rows]
            )
            return 0
        width = max((len(r.name) for r in rows), default=4)
        for r in rows:
            out(f"{r.name:<{width}}  {r.color}  {r.tag_count:>6,} tags  {r.description}")
        return 0

    return _run_group(args, run)


def _cmd_group_add(args) -> int:
    def run(g):
        info = g.add_group(args.group, args.color, args.description)
        reply(args, {"name": info.name, "color": info.color}, f"group added: {info.name} {info.color}")
        return 0

    return _run_group(args, run)


def _cmd_group_rename(args) -> int:
    def run(g):
        g.rename_group(args.group, args.new_name)
        reply(args, {"renamed": args.group, "to": args.new_name}, f"group renamed: {args.group} → {args.new_name}")
        return 0

    return _run_group(args, run)


def _cmd_group_remove(args) -> int:
    import sys

    def run(g):
        info = g.get_group(args.group)
        if not args.yes:
            if not sys.stdin.isatty():
                raise CliError(f"removing group '{info.name}' needs --yes when not run interactively", 2)
            answer = ask(f"Delete group '{info.name}' and its tag list? Tags on items are kept. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                out("not deleted")
                return 1
        n = g.remove_group(args.group)
        reply(args, {"removed": info.name, "tags": n}, f"group removed: {info.name} ({n:,} tags)")
        return 0

    return _run_group(args, run)


def _cmd_group_color(args) -> int:
    def run(g):
        c = g.set_color(args.group, args.color)
        reply(args, {"name": args.group, "color": c}, f"{args.group}: {c}")
        return 0

    return _run_group(args, run)


def _cmd_group_tags(args) -> int:
    def run(g):
        tags = g.group_tags(args.group)
        if args.json:
            emit_json(tags)
        else:
            for t in tags:
                out(t)
        return 0

    return _run_group(args, run)


def _cmd_group_add_tags(args) -> int:
    def run(g):
        added, rejected = g.add_tags(args.group, _split(args.tags))
        if args.json:
            emit_json({"added": added, "rejected": rejected})
        else:
            out(f"{args.group}: {added:,} tags added")
            for r in rejected:
                out(f"rejected: {r!r} is not a tag")
        return 0

    return _run_group(args, run)


def _cmd_group_remove_tags(args) -> int:
    def run(g):
        n = g.remove_tags(args.group, _split(args.tags))
        reply(args, {"removed": n}, f"{args.group}: {n:,} tags removed")
        return 0

    return _run_group(args, run)


def _cmd_group_import(args) -> int:
    def run(g):
        report = g.import_groups(args.file)
        if args.json:
            from dataclasses import asdict

            emit_json(asdict(report))
        else:
            out(
                f"imported: {len(report.groups_created)} groups created, {len(report.groups_updated)} updated, "
                f"{report.tags_added:,} tags added ({report.tags_already:,} already there)"
            )
            for name in report.groups_created:
                out(f"  + {name}")
            for p in report.problems[:50]:
                out(f"problem: {p}")
            if len(report.problems) > 50:
                out(f"… and {len(report.problems) - 50} more problems (--json lists all)")
        return 0

    return _run_group(args, run)
