"""CLI commands: ``sushitui dict ...`` — the tag dictionary (TAG-3..TAG-8)."""

from __future__ import annotations

import sys

from sushitui.cli.common import (
    CliError,
    IntArg,
    TerminalProgress,
    add_common,
    ask_stderr,
    cancel_on_sigint,
    emit_json,
    err,
    on_database_error,
    open_db,
    out,
    progress_and_cancel,
    reply,
)

CATEGORIES = ("general", "artist", "copyright", "character", "meta", "model")
SOURCES = ("danbooru", "user_custom", "auto_detected")


def register(subparsers) -> None:
    p = subparsers.add_parser("dict", help="the tag dictionary: load, import/export, search, edit, complete, stats")
    sub = p.add_subparsers(dest="dict_command", metavar="SUBCOMMAND", required=True)

    s = sub.add_parser("load", help='load a taglist folder (General.json, Character.json, ... {"tag": count})')
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--on-conflict", choices=("skip", "update", "merge"), default="update")
    s.add_argument(
        "--aliases", metavar="FILE", help="an alias file: aliases.json {tag: [aliases]} or Danbooru's aliases.csv"
    )
    add_common(s)
    s.set_defaults(func=cmd_load)

    s = sub.add_parser("import", help="import a taglist JSON, a CSV or a tag-autocomplete CSV")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--format", choices=("json", "csv", "tagcomplete"), help="default: from the file")
    s.add_argument("--category", choices=CATEGORIES, help="category for a JSON file not named after one")
    s.add_argument(
        "--on-conflict",
        choices=("skip", "update", "merge"),
        default="update",
        help="existing tags: skip, update (count) or merge (aliases); default update",
    )
    s.add_argument("--source", choices=SOURCES, help="default: user_custom for CSV, danbooru otherwise")
    add_common(s)
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("export", help="export as CSV or taglist JSON")
    s.add_argument("file", metavar="FILE", help="a file; for JSON without --category a folder")
    s.add_argument("--format", choices=("json", "csv"), help="default: from the file extension (csv otherwise)")
    s.add_argument("--category", choices=CATEGORIES)
    s.add_argument("--source", choices=SOURCES)
    add_common(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("search", help="search tags by name")
    s.add_argument("text", metavar="TEXT")
    s.add_argument("--mode", choices=("prefix", "substring", "suffix", "exact"), default="substring")
    s.add_argument("--category", choices=CATEGORIES)
    s.add_argument("--sort", choices=("count", "name", "created"), default="count")
    s.add_argument("--limit", type=IntArg(1), default=50, metavar="N", help="at most N tags (default 50)")
    s.add_argument("--lang", metavar="LANG", help="search translations in this language only (default: every language)")
    add_common(s)
    s.set_defaults(func=cmd_search)

    for name, helptext in (("add", "add a tag"), ("edit", "change a tag")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("tag", metavar="TAG")
        s.add_argument("--category", choices=CATEGORIES, default="general" if name == "add" else None)
        s.add_argument(
            "--count",
            type=IntArg(0),
            default=0 if name == "add" else None,
            metavar="N",
            help="how often the tag is used (Danbooru post count)",
        )
        s.add_argument("--display-name")
        s.add_argument("--aliases", help="comma-separated")
        s.add_argument("--description")
        s.add_argument("--source", choices=SOURCES, default="user_custom" if name == "add" else None)
        s.add_argument(
            "--deprecated",
            action=argparse_bool(),
            default=None,
            help="a deprecated tag (the auto-tagger writes its --replacement instead)",
        )
        s.add_argument(
            "--replacement",
            metavar="TAG",
            help="the dictionary tag that replaces this deprecated one (implies --deprecated"
            + ("; '' clears it)" if name == "edit" else ")"),
        )
        s.add_argument(
            "--official",
            action=argparse_bool(),
            default=None,
            help="an official (Danbooru) tag; default: whether --source is danbooru",
        )
        s.add_argument(
            "--wiki-url",
            metavar="URL",
            help="an http(s) link to the tag's wiki page" + (" ('' clears it)" if name == "edit" else ""),
        )
        if name == "edit":
            s.add_argument("--rename", metavar="NEW", help="new tag name")
        add_common(s)
        s.set_defaults(func=cmd_add if name == "add" else cmd_edit)

    s = sub.add_parser("remove", help="remove a tag (optionally from every dataset's captions too)")
    s.add_argument("tag", metavar="TAG")
    s.add_argument("--from-datasets", action="store_true", help="also strip the tag from every caption that has it")
    s.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_common(s)
    s.set_defaults(func=cmd_remove)

    s = sub.add_parser("complete", help="autocomplete candidates for what is typed")
    s.add_argument("prefix", metavar="TEXT")
    s.add_argument("--dataset", metavar="NAME")
    s.add_argument("--limit", type=IntArg(1, 10_000), default=10, metavar="N", help="at most N candidates (default 10)")
    s.add_argument(
        "--lang",
        metavar="LANG",
        help="match translations in this language only, and show it "
        "(default: every language; shown: the tag_lang setting)",
    )
    add_common(s)
    s.set_defaults(func=cmd_complete)

    _register_translations(sub)

    s = sub.add_parser("stats", help="dictionary statistics (TAG-8)")
    s.add_argument("--top", type=IntArg(0), default=100, metavar="N", help="list the N most used tags (default 100)")
    add_common(s)
    s.set_defaults(func=cmd_stats)


def _register_translations(sub) -> None:
    p = sub.add_parser("translations", help="tags in your language: import, list, export, remove translation files")
    tsub = p.add_subparsers(dest="translations_command", metavar="SUBCOMMAND", required=True)

    s = tsub.add_parser("import", help="import a tag,translation CSV or a tag-autocomplete translation file")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--lang", required=True, metavar="LANG", help="the file's language: ja, zh, zh-tw, ko, ...")
    s.add_argument(
        "--format",
        choices=("csv", "tagcomplete"),
        help="csv: tag,translation[,reading]; tagcomplete: tag,translation or tag,category,translation "
        "(default: from the file)",
    )
    s.add_argument(
        "--on-conflict",
        choices=("skip", "update"),
        default="update",
        help="a tag that already has translations in LANG: keep them (skip) or take the file's (update, default)",
    )
    add_common(s)
    s.set_defaults(func=cmd_translations_import)

    s = tsub.add_parser("list", help="languages with translations: how many, tags not in the dictionary, files")
    add_common(s)
    s.set_defaults(func=cmd_translations_list)

    s = tsub.add_parser("export", help="write one language's translations as tag,translation,reading CSV")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--lang", required=True, metavar="LANG")
    add_common(s)
    s.set_defaults(func=cmd_translations_export)

    s = tsub.add_parser("remove", help="delete every translation of one language")
    s.add_argument("--lang", required=True, metavar="LANG")
    add_common(s)
    s.set_defaults(func=cmd_translations_remove)

    s = tsub.add_parser("show", help="set the language shown beside tags (autocomplete, dictionary, tag pills)")
    s.add_argument("lang", nargs="?", metavar="LANG", help="a language code; omit to see the setting")
    s.add_argument("--off", action="store_true", help="clear the setting (then the language with most translations)")
    add_common(s)
    s.set_defaults(func=cmd_translations_show)


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction


# --- helpers --------------------------------------------------------------------------------


def _open(args, load_builtin: bool = True):
    db = open_db(args)
    if load_builtin:
        from sushitui.tags import dictionary

        if not dictionary.is_builtin_loaded():
            bar = TerminalProgress("loading the tag dictionary")
            try:
                with cancel_on_sigint() as cancel:
                    dictionary.ensure_loaded(progress=bar, cancel=cancel)
            except dictionary.DictionaryFileError as exc:
                err(f"sushitui: warning: the shipped taglist could not be loaded: {exc}")
            finally:
                bar.close()
    return db


def _fail(exc: Exception) -> CliError:
    return CliError(str(exc), 1)


def _show_rows(label: str, rows, shown: int, kind: str) -> None:
    """The first ``shown`` problem rows of an import (``  LABEL WHERE: 'TAG': REASON``),
    then how many more ``kind`` rows --json lists."""
    for p in rows[:shown]:
        out(f"  {label}{p.where}: {p.tag!r}: {p.reason}")
    if len(rows) > shown:
        out(f"  … {len(rows) - shown:,} more {kind} rows (use --json for all)")


def _print_report(report, args) -> int:
    if args.json:
        emit_json(report.to_dict())
    else:
        out(
            f"imported {report.imported:,}  updated {report.updated:,}  skipped {report.skipped:,}  "
            f"rejected {len(report.rejected):,}  ({report.elapsed_s:.2f} s)"
        )
        if report.aliases_unmatched:
            out(f"aliases for {report.aliases_unmatched:,} tags not in the list were ignored")
        _show_rows("rejected ", report.rejected, 20, "rejected")
        _show_rows("skipped ", report.skipped_rows, 5, "skipped")
        if report.cancelled:
            out("cancelled: the rows written so far are kept")
    return 3 if report.rejected else (130 if report.cancelled else 0)


# --- commands ---------------------------------------------------------------------------------


def cmd_load(args) -> int:
    from sushitui.tags import dictionary

    _open(args, load_builtin=False)
    try:
        with progress_and_cancel("loading") as (bar, cancel):
            report = dictionary.load_dir(
                args.dir, on_conflict=args.on_conflict, aliases_file=args.aliases, progress=bar, cancel=cancel
            )
    except (dictionary.DictionaryError, dictionary.DictionaryFileError) as exc:
        raise _fail(exc) from exc
    return _print_report(report, args)


def cmd_import(args) -> int:
    from sushitui.tags import dictionary

    _open(args)
    try:
        with progress_and_cancel("importing") as (bar, cancel):
            report = dictionary.import_file(
                args.file,
                fmt=args.format,
                category=args.category,
                on_conflict=args.on_conflict,
                source=args.source,
                progress=bar,
                cancel=cancel,
            )
    except (dictionary.DictionaryError, dictionary.DictionaryFileError) as exc:
        raise _fail(exc) from exc
    return _print_report(report, args)


def cmd_export(args) -> int:
    from sushitui.tags import dictionary

    _open(args)
    fmt = args.format or ("json" if args.file.lower().endswith(".json") else "csv")
    try:
        result = dictionary.export(args.file, fmt=fmt, category=args.category, source=args.source)
    except (dictionary.DictionaryError, OSError) as exc:
        raise _fail(exc) from exc
    reply(args, result, f"exported {result['tags']:,} tags to {', '.join(result['files'])}")
    return 0


def _entry_line(e) -> str:
    flags = ("" if e.official else " custom") + (" deprecated" if e.deprecated else "")
    if e.replacement:
        flags += f" → {e.replacement}"
    alias = f"  (aliases: {', '.join(e.aliases[:5])}{'…' if len(e.aliases) > 5 else ''})" if e.aliases else ""
    translated = "".join(f"  [{lang}: {' | '.join(texts[:3])}]" for lang, texts in e.translations.items())
    return f"{e.tag:<40} {e.category:<10} {e.count:>10,}{flags}{translated}{alias}"


def cmd_search(args) -> int:
    from sushitui.tags import dictionary

    _open(args)
    try:
        entries = dictionary.search(
            args.text, mode=args.mode, category=args.category, limit=args.limit, sort=args.sort, lang=_lang(args.lang)
        )
    except dictionary.DictionaryError as exc:
        raise _fail(exc) from exc
    if args.json:
        emit_json([e.to_dict() for e in entries])
    else:
        for e in entries:
            out(_entry_line(e))
        if not entries:
            out("no tags found")
    return 0


def _fields(args) -> dict:
    fields = {
        "category": args.category,
        "count": args.count,
        "display_name": args.display_name,
        "aliases": args.aliases,
        "description": args.description,
        "source": args.source,
        "deprecated": args.deprecated,
        "replacement": args.replacement,
        "official": args.official,
        "wiki_url": args.wiki_url,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _validation(exc) -> CliError:
    return CliError("invalid tag: " + "; ".join(f"{k}: {v}" for k, v in exc.problems.items()), 2)


def cmd_add(args) -> int:
    from sushitui.tags import dictionary

    _open(args)
    f = _fields(args)
    try:
        entry = dictionary.add_tag(args.tag, f.pop("category"), f.pop("count"), **f)
    except dictionary.ValidationError as exc:
        raise _validation(exc) from exc
    reply(args, entry.to_dict(), f"added {_entry_line(entry)}")
    return 0


def cmd_edit(args) -> int:
    from sushitui.tags import dictionary

    _open(args)
    f = _fields(args)
    if args.rename:
        f["tag"] = args.rename
    try:
        entry = dictionary.edit_tag(args.tag, **f)
    except dictionary.ValidationError as exc:
        raise _validation(exc) from exc
    except dictionary.DictionaryError as exc:
        raise _fail(exc) from exc
    reply(args, entry.to_dict(), f"changed {_entry_line(entry)}")
    return 0


def cmd_remove(args) -> int:
    from sushitui.dataset import bulk_edit
    from sushitui.tags import dictionary

    _open(args)
    if args.from_datasets and not args.yes:
        uses = sum(len(v) for v in dictionary.items_with_tag(args.tag).values())
        if not sys.stdin.isatty():
            raise CliError(f"removing {args.tag!r} from {uses:,} captions needs confirmation; pass --yes", 2)
        ask_stderr(f"Remove {args.tag!r} from the dictionary and from {uses:,} captions in your datasets? [y/N] ")
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            out("nothing removed")
            return 1
    bar = TerminalProgress("removing")
    hint = (
        (
            "Caption files written before the failure may not be in the index yet: once the database can be written "
            "again, `sushitui dataset reindex NAME` for each dataset that had the tag reads them in"
        )
        if args.from_datasets
        else None
    )
    try:
        with cancel_on_sigint() as cancel, on_database_error(args, hint):
            if args.from_datasets:
                report = bulk_edit.remove_tag_everywhere(args.tag, progress=bar, cancel=cancel)
            else:
                report = dictionary.remove_tag(args.tag)
    except dictionary.DictionaryError as exc:
        raise _fail(exc) from exc
    finally:
        bar.close()
    if args.json:
        emit_json(report.to_dict())
    elif report.cancelled:
        out(
            f"{args.tag}: cancelled after removing it from {report.items_changed:,} captions; the captions written "
            "so far are kept and the tag is still in the dictionary: run the command again to finish"
        )
    else:
        what = "removed from the dictionary" if report.removed else "was not in the dictionary"
        out(f"{args.tag}: {what}" + (f"; removed from {report.items_changed:,} captions" if args.from_datasets else ""))
    if not args.json:
        for p in report.problems[:20]:
            out(f"  not changed: {p}")
    return 3 if report.problems else (130 if report.cancelled else 0)


def cmd_complete(args) -> int:
    from sushitui.tags.autocomplete import Completer

    _open(args)
    dataset_id = None
    if args.dataset:
        from sushitui.dataset.registry import DatasetNotFound, get_dataset

        try:
            dataset_id = get_dataset(args.dataset).id
        except DatasetNotFound as exc:
            raise CliError(str(exc), 2) from exc
    lang = _lang(args.lang)
    completer = Completer()
    completer.warm(dataset_id, wait=True)  # a one-shot command: build the index and answer fully
    cands = completer.complete(args.prefix, dataset_id, args.limit, lang=lang)
    if args.json:
        emit_json([c.to_dict() for c in cands])
    else:
        for c in cands:
            target = f" → {c.alias_of}" if c.alias_of else ""
            translated = f"  {c.translation}" + (f" ({c.reading})" if c.reading else "") if c.translation else ""
            out(f"{c.tag}{target:<30} {c.category or '-':<10} {c.count:>10,}  {c.source}/{c.match}{translated}")
    return 0


# --- translations (issue 22) ----------------------------------------------------------------------


def _lang(value: str | None) -> str | None:
    from sushitui.tags.translations import TranslationError, normalize_lang

    if value is None:
        return None
    try:
        return normalize_lang(value)
    except TranslationError as exc:
        raise CliError(str(exc), 2) from exc


def cmd_translations_import(args) -> int:
    from sushitui.tags import translations
    from sushitui.tags.dictionary_formats import DictionaryFileError

    lang = _lang(args.lang)
    _open(args)
    try:
        with progress_and_cancel("importing translations") as (bar, cancel), on_database_error(args):
            report = translations.import_file(
                args.file, lang, fmt=args.format, on_conflict=args.on_conflict, progress=bar, cancel=cancel
            )
    except (translations.TranslationError, DictionaryFileError) as exc:
        raise _fail(exc) from exc
    if args.json:
        emit_json(report.to_dict())
    else:
        out(
            f"{report.file}: {lang}, {report.format} format: {report.translations:,} translations for "
            f"{report.tags:,} tags  (replaced {report.replaced:,}, skipped {len(report.skipped):,}, "
            f"via alias {report.via_alias:,}, not in the dictionary {len(report.not_in_dictionary):,}, "
            f"rejected {len(report.rejected):,}; {report.elapsed_s:.2f} s)"
        )
        for note in report.notes:
            out(f"  note: {note}")
        for title, rows, shown in (
            ("rejected", report.rejected, 30),
            ("repaired", report.repaired, 10),
            ("not in the dictionary (kept, marked)", report.not_in_dictionary, 10),
            ("skipped", report.skipped, 5),
        ):
            _show_rows(f"{title}: ", rows, shown, title.split(" (")[0])
        if report.cancelled:
            out("cancelled: the translations written so far are kept")
    return 3 if report.rejected else (130 if report.cancelled else 0)


def cmd_translations_list(args) -> int:
    from sushitui.tags import translations

    _open(args, load_builtin=False)
    rows = translations.summary()
    shown = translations.preferred_lang()
    if args.json:
        emit_json({"languages": rows, "shown": shown, "setting": translations.preferred_setting()})
        return 0
    if not rows:
        out("no translations; import one with `sushitui dict translations import FILE --lang ja`")
        return 0
    for r in rows:
        mark = "  (shown beside tags)" if r["lang"] == shown else ""
        out(
            f"{r['lang']:<8} {r['translations']:>9,} translations  {r['tags']:>9,} tags  "
            f"{r['not_in_dictionary']:>7,} not in the dictionary  from {', '.join(r['sources'])}{mark}"
        )
    return 0


def cmd_translations_export(args) -> int:
    from sushitui.tags import translations

    lang = _lang(args.lang)
    _open(args, load_builtin=False)
    try:
        result = translations.export(args.file, lang)
    except translations.TranslationError as exc:
        raise _fail(exc) from exc
    reply(
        args,
        result,
        f"exported {result['translations']:,} {lang} translations of {result['tags']:,} tags to {result['file']}",
    )
    return 0


def cmd_translations_remove(args) -> int:
    from sushitui.tags import translations

    lang = _lang(args.lang)
    _open(args, load_builtin=False)
    with on_database_error(args):
        n = translations.remove(lang)
    reply(
        args,
        {"lang": lang, "removed": n},
        f"removed {n:,} {lang} translations" if n else f"there were no {lang} translations",
    )
    return 0


def cmd_translations_show(args) -> int:
    from sushitui.tags import translations

    _open(args, load_builtin=False)
    if args.off or args.lang:
        with on_database_error(args):
            translations.set_preferred_lang(None if args.off else _lang(args.lang))
    setting, shown = translations.preferred_setting(), translations.preferred_lang()
    text = f"shown beside tags: {shown or 'none (no translations)'}" + (
        "" if setting else " (no setting: the language with the most translations)"
    )
    reply(args, {"setting": setting, "shown": shown}, text)
    return 0


def cmd_stats(args) -> int:
    from sushitui.tags import dictionary

    _open(args)
    s = dictionary.stats(top=args.top)
    if args.json:
        emit_json(s)
        return 0
    out(f"tags: {s['total']:,}  (official {s['official']:,}, custom {s['custom']:,}, deprecated {s['deprecated']:,})")
    out("by category: " + ", ".join(f"{k} {v:,}" for k, v in s["by_category"].items()))
    out("by source:   " + ", ".join(f"{k} {v:,}" for k, v in s["by_source"].items()))
    out(
        f"used in datasets: {s['used_in_datasets']:,}   unused: {s['unused']:,}   "
        f"dataset tags not in the dictionary: {s['dataset_tags_not_in_dictionary']:,}"
    )
    if s["top_used"]:
        out(f"top {len(s['top_used'])} used tags:")
        for t in s["top_used"]:
            out(f"  {t['tag']:<40} {t['category'] or '-':<10} {t['uses']:>8,} uses")
    return 0
