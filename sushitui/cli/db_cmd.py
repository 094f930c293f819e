"""``sushitui db copy``: move a catalogue between a SQLite file and PostgreSQL (sushitui.store.copy)."""

from __future__ import annotations

from sushitui.cli.common import CliError, add_common, emit_json, out


def register(subparsers) -> None:
    db = subparsers.add_parser("db", help="the catalogue itself: copy it between SQLite and PostgreSQL")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    p = db_sub.add_parser(
        "copy",
        help="copy every row of one catalogue into another (SQLite file <-> PostgreSQL)",
        usage="sushitui db copy --from SRC --to DST [--replace] [--json]",
        description="Copy every table of a catalogue, in foreign-key order and in batches, into another one: "
        "sqlite:PATH (or a plain path) and postgresql://user@host/dbname either way round. Both are brought to "
        "this sushitui's schema first. The copy is one transaction on the target; a target that holds rows "
        "is refused unless --replace. Caption files are not touched: they stay the truth.",
    )
    p.add_argument("--from", dest="source", required=True, metavar="SRC", help="sqlite:PATH or postgresql://...")
    p.add_argument("--to", dest="target", required=True, metavar="DST", help="sqlite:PATH or postgresql://...")
    p.add_argument("--replace", action="store_true", help="delete the target's rows first")
    add_common(p)
    p.set_defaults(func=cmd_copy)


def cmd_copy(args) -> int:
    from sushitui.store import StoreError
    from sushitui.store.copy import copy_catalogue

    try:
        report = copy_catalogue(args.source, args.target, replace=args.replace)
    except StoreError as exc:
        raise CliError(str(exc), 2) from exc
    if getattr(args, "json", False):
        emit_json({"source": report.source, "target": report.target, "rows": report.rows, "total": report.total})
        return 0
    for table, n in report.rows.items():
        if n:
            out(f"{table:<20} {n:>10}")
    out(f"copied {report.total} rows from {report.source} to {report.target}")
    return 0
