"""``sushitui rate``, ``flag`` and ``crop``: a user's marks on items (sushitui.dataset.marks),
and ``sushitui item remove`` (sushitui.dataset.remove)."""

from __future__ import annotations

import argparse

from sushitui.cli.common import CliError, add_common, open_db, out, reply

ITEMS_HELP = "items by id, name as `sushitui items` lists it (sub/img001), image path, or a base name only one item has"


def register(subparsers) -> None:
    from sushitui.dataset.marks import FLAGS

    p = subparsers.add_parser(
        "rate",
        help="give items 0-5 stars (0 clears); `rating:>=4` finds them",
        usage="sushitui rate NAME [ITEM ...] STARS [--query Q] [--json]",
        description="Give items 0-5 stars (0 clears). Stars are kept in the dataset's .sushitui/marks.json, "
        "so they survive a rebuild of the index.",
    )
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("args", nargs="+", metavar="ITEM... STARS", help=f"{ITEMS_HELP}, then the stars (0-5)")
    p.add_argument("--query", "-q", default=None, metavar="Q", help="also every item matching this query")
    add_common(p)
    p.set_defaults(func=cmd_rate)

    p = subparsers.add_parser(
        "flag",
        help=f"set or clear a flag ({', '.join(FLAGS)}) on items; `flag:exclude` finds them",
        usage="sushitui flag NAME [ITEM ...] [-]FLAG [--query Q] [--json]",
        description=f"Set a flag ({', '.join(FLAGS)}) on items, or clear it with -FLAG (e.g. -exclude). "
        "Exports leave items flagged exclude out unless --include-excluded is given.",
    )
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("args", nargs="+", metavar="ITEM... [-]FLAG", help=f"{ITEMS_HELP}, then the flag (-FLAG clears it)")
    p.add_argument("--query", "-q", default=None, metavar="Q", help="also every item matching this query")
    for flag in FLAGS:  # "-exclude" would otherwise be an unknown option to argparse
        p.add_argument(f"-{flag}", dest="clear_flags", action="append_const", const=flag, help=argparse.SUPPRESS)
    add_common(p)
    p.set_defaults(func=cmd_flag, clear_flags=None)

    p = subparsers.add_parser(
        "crop",
        help="set or clear an item's crop (exports write the cropped image; the original is kept)",
        description="Set an item's crop rectangle x,y,w,h in image pixels, or clear it with --clear. "
        "Exports write the cropped image; the original file is never changed.",
    )
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("item", metavar="ITEM", help=ITEMS_HELP)
    p.add_argument("rect", nargs="?", metavar="x,y,w,h", help="the rectangle in image pixels")
    p.add_argument("--clear", action="store_true", help="remove the crop")
    add_common(p)
    p.set_defaults(func=cmd_crop)

    item = subparsers.add_parser("item", help="act on single items: remove (to the trash)")
    item_sub = item.add_subparsers(dest="item_command", metavar="ACTION", required=True)
    p = item_sub.add_parser(
        "remove",
        help="move items' images, captions and sidecars to the trash and drop them from the index",
        description="Move every file of the items (images, caption files, sidecars named after them) to the "
        "freedesktop trash, or to .trash/ in the dataset when the trash is on another device, and drop them "
        "from the index. Prints where each file went; restore them from there (the TUI's U key undoes).",
    )
    p.add_argument("name", metavar="NAME", help="dataset name")
    p.add_argument("items", nargs="*", metavar="ITEM", help=ITEMS_HELP)
    p.add_argument("--query", "-q", default=None, metavar="Q", help="also every item matching this query")
    p.add_argument(
        "--dataset-trash",
        action="store_true",
        help="use .trash/ in the dataset even when the user's trash is on the same device",
    )
    add_common(p)
    p.set_defaults(func=cmd_item_remove)


def _dataset(args):
    from sushitui.dataset.registry import get_dataset

    open_db(args)
    return get_dataset(args.name)


def _items(ds, refs: list[str], query: str | None) -> list[int]:
    from sushitui.dataset.marks import resolve_items

    if not refs and query is None:
        raise CliError("name the items (or give --query Q)", 2)
    try:
        ids = resolve_items(ds, refs, query)
    except Exception as exc:
        if type(exc).__name__ != "QueryError":
            raise
        raise CliError(f"bad query: {exc}") from exc
    if not ids:
        raise CliError(f"no item of {ds.name!r} matches {query!r}; nothing was changed")
    return ids


def _summary(verb: str, result, total: int) -> str:
    text = f"{verb} {result.changed:,} item(s)"
    if result.unchanged:
        text += f" ({result.unchanged:,} of {total:,} had it already)"
    if result.path is not None:
        text += f"; saved in {result.path}"
    return text


def cmd_rate(args) -> int:
    from sushitui.dataset.marks import Marks, MarksError, parse_rating, set_rating

    *refs, stars = args.args
    try:
        rating = parse_rating(stars)
    except MarksError as exc:
        raise CliError(str(exc), 2) from exc
    ds = _dataset(args)
    ids = _items(ds, refs, args.query)
    result = set_rating(ids, rating, dataset=ds)
    label = Marks(rating).stars() or "no stars"
    reply(
        args,
        {
            "dataset": ds.name,
            "rating": rating,
            "items": len(ids),
            "changed": result.changed,
            "file": str(result.path) if result.path else None,
        },
        _summary(f"rated {label}:", result, len(ids)),
    )
    return 0


def cmd_flag(args) -> int:
    from sushitui.dataset.marks import FLAGS, MarksError, parse_flag, set_flag

    refs = list(args.args)
    clear = list(args.clear_flags or [])
    set_on: list[str] = []
    if refs and refs[-1].lower().lstrip("-").replace("_", "-") in FLAGS + ("needs-work",):
        last = refs.pop()
        (clear if last.startswith("-") else set_on).append(last.lstrip("-"))
    if not set_on and not clear:
        raise CliError(f"give the flag last: one of {', '.join(FLAGS)} (or -FLAG to clear it)", 2)
    try:
        changes = [(parse_flag(f), True) for f in set_on] + [(parse_flag(f), False) for f in clear]
    except MarksError as exc:
        raise CliError(str(exc), 2) from exc
    ds = _dataset(args)
    ids = _items(ds, refs, args.query)
    lines, data = [], []
    for flag, on in changes:
        result = set_flag(ids, flag, on, dataset=ds)
        verb = f"flagged {flag}:" if on else f"cleared {flag} on"
        lines.append(_summary(verb, result, len(ids)))
        data.append({"flag": flag, "set": on, "changed": result.changed})

    def text() -> None:
        for line in lines:
            out(line)

    reply(args, {"dataset": ds.name, "items": len(ids), "changes": data}, text)
    return 0


def cmd_crop(args) -> int:
    from sushitui.dataset.marks import MarksError, parse_crop, set_crop

    if args.clear == (args.rect is not None):
        raise CliError("give the rectangle x,y,w,h, or --clear", 2)
    try:
        rect = None if args.clear else parse_crop(args.rect)
    except MarksError as exc:
        raise CliError(str(exc), 2) from exc
    ds = _dataset(args)
    [item_id] = _items(ds, [args.item], None)
    result = set_crop(item_id, rect, dataset=ds)
    what = "cleared the crop of" if rect is None else f"cropped to {','.join(map(str, rect))}:"
    reply(
        args,
        {"dataset": ds.name, "item": item_id, "crop": list(rect) if rect else None, "changed": result.changed},
        f"{what} {args.item}" + (f"; saved in {result.path}" if result.path else " (unchanged)"),
    )
    return 0


def cmd_item_remove(args) -> int:
    from sushitui.dataset.remove import remove_items

    ds = _dataset(args)
    ids = _items(ds, list(args.items), args.query)
    removal = remove_items(ds, ids, home=False if args.dataset_trash else None)
    data = {
        "dataset": ds.name,
        "removed": len(removal.items),
        "where": removal.where,
        "files": [{"from": f.original, "to": f.trashed} for f in removal.files],
        "problems": removal.problems,
    }

    def text() -> None:
        out(
            f"removed {len(removal.items):,} item(s) of {ds.name!r}; {len(removal.files):,} file(s) moved to {removal.where}:"
        )
        for f in removal.files:
            out(f"  {f.original} -> {f.trashed or 'the system trash'}")
        for problem in removal.problems:
            out(f"  problem: {problem}")

    reply(args, data, text)
    return 1 if removal.problems else 0
