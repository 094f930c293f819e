"""CLI: ``endpoint add|list|test|remove`` and ``caption NAME`` (issue 16): natural-language
captions from a vision-language model on an OpenAI-compatible server."""

from __future__ import annotations

import argparse

from sushitui.cli.common import (
    CliError,
    IntArg,
    TerminalProgress,
    add_common,
    cancel_on_sigint,
    emit_json,
    err,
    fmt_duration,
    int_list,
    on_database_error,
    open_db,
    out,
)


def _float_arg(low: float, high: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; give a number from {low:g} to {high:g}")
        return value

    parse.__name__ = "number"
    return parse


def register(subparsers) -> None:
    ep = subparsers.add_parser(
        "endpoint", help="vision-language model servers (OpenAI-compatible): add, list, test, remove"
    )
    esub = ep.add_subparsers(dest="endpoint_command", metavar="SUBCOMMAND")
    p = esub.add_parser(
        "add",
        help="register a server, e.g. endpoint add local http://127.0.0.1:8000/v1 --model MODEL",
        description="Register an OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama /v1, "
        "llama.cpp llama-server, LM Studio, hosted APIs). The key is never stored: --api-key-env names "
        "the environment variable it is read from.",
    )
    p.add_argument("name")
    p.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000/v1 (requests go to URL/chat/completions)")
    p.add_argument("--model", help="model name (default: the first one the server lists)")
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the key (e.g. OPENAI_API_KEY)")
    p.add_argument("--replace", action="store_true", help="replace an endpoint of the same name")
    add_common(p)
    p.set_defaults(func=cmd_endpoint_add)
    p = esub.add_parser("list", help="registered endpoints")
    add_common(p)
    p.set_defaults(func=cmd_endpoint_list)
    p = esub.add_parser("test", help="list the server's models, send one small image, print the latency")
    p.add_argument("name", nargs="?", help="endpoint (default: the only one)")
    p.add_argument(
        "--timeout", type=_float_arg(1, 3600), default=60.0, metavar="S", help="seconds per request (default 60)"
    )
    add_common(p)
    p.set_defaults(func=cmd_endpoint_test)
    p = esub.add_parser("remove", help="forget an endpoint (cached answers stay)")
    p.add_argument("name")
    add_common(p)
    p.set_defaults(func=cmd_endpoint_remove)
    ep.set_defaults(func=lambda args: (ep.print_help(), 0)[1])

    from sushitui.tagger.vlm.templates import BUILTIN

    templates = "\n".join(f"  {t.name:<17}{t.description}" for t in BUILTIN.values())
    c = subparsers.add_parser(
        "caption",
        help="natural-language captions from a vision-language model on your server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Caption a dataset's images with a VLM on an OpenAI-compatible server (see `sushitui endpoint`). "
        "Answers are cached by image, model, prompt and parameters: running again after a crash or Ctrl-C sends "
        "only what was not answered. Refusals, empty or cut-off answers and banned words are reported and not "
        "written.",
        epilog=f"templates:\n{templates}\n  FILE             a text file (the prompt) or a .toml file with prompt, "
        "system, type, images\n\nvariables: {tags} {trigger} {name} {folder} {caption:SUBTYPE}",
    )
    c.add_argument("name", help="dataset name")
    sel = c.add_mutually_exclusive_group()
    sel.add_argument("--query", "-q", help="only items matching this query")
    sel.add_argument("--items", metavar="ID,ID", help="only these item ids (comma-separated)")
    c.add_argument("--endpoint", "-e", help="endpoint name (default: the only one registered)")
    c.add_argument(
        "--template", "-t", default="flux", help="flux (default), short, tags-to-prose, edit-instruction, or a FILE"
    )
    c.add_argument("--prompt", help="use this prompt instead of the template's (variables allowed)")
    c.add_argument("--system", help="use this system prompt instead of the template's")
    c.add_argument(
        "--subtype",
        help="caption subtype (file suffix) to write; default: caption (base_caption.txt), "
        "instruction for edit-instruction; natural_language means the default",
    )
    c.add_argument(
        "--mode",
        choices=["skip-existing", "replace", "append"],
        default="skip-existing",
        help="items that already have this caption: skip them (default), replace it, or append to it",
    )
    c.add_argument(
        "--concurrency",
        "-j",
        type=IntArg(1, 1024),
        default=32,
        help="requests in flight (default 32: keeps a vLLM/SGLang batch busy)",
    )
    c.add_argument(
        "--max-side", type=IntArg(64, 16384), default=1024, help="downscale images to this long side (default 1024)"
    )
    c.add_argument("--max-tokens", type=IntArg(1, 1_000_000), default=300, help="answer length limit (default 300)")
    c.add_argument("--temperature", type=_float_arg(0, 2), help="sampling temperature (default: the server's)")
    c.add_argument("--start-with", metavar="TEXT", help="the caption starts with this text")
    c.add_argument(
        "--ban",
        metavar="WORDS",
        default="",
        help="comma-separated words or phrases; answers containing one are reported, not written",
    )
    c.add_argument("--trigger", metavar="WORD", help="value of {trigger} in the template")
    c.add_argument("--sample", type=IntArg(1, 10_000), metavar="N", help="caption N items and show them; write nothing")
    c.add_argument(
        "--stream", action="store_true", help="streamed answers (for servers or proxies that cut long requests)"
    )
    c.add_argument(
        "--timeout", type=_float_arg(1, 86400), default=180.0, metavar="S", help="seconds per request (default 180)"
    )
    c.add_argument("--retries", type=IntArg(0, 100), default=4, help="retries on 429/5xx/timeouts (default 4)")
    c.add_argument("--no-cache", action="store_true", help="send again even when answered before")
    c.add_argument("--keep-lines", action="store_true", help="keep the answer's line breaks (default: one line)")
    c.add_argument("--workers", type=IntArg(0, 1024), help="image processes (default: CPU cores, at most 16)")
    c.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="encode and send from Ray actors (pip install 'sushitui[ray]'): ADDRESS auto or HEAD:6379 "
        "joins the cluster this machine is a node of, none starts a local Ray; this process still writes every caption",
    )
    c.add_argument(
        "--ray-endpoint",
        action="append",
        default=[],
        metavar="NAME",
        help="with --ray: another registered endpoint serving the same model, used in turn (repeatable)",
    )
    add_common(c)
    c.set_defaults(func=cmd_caption)


# --- endpoints ---------------------------------------------------------------------------------


def _vlm_error(exc: Exception) -> CliError:
    return CliError(str(exc))


def cmd_endpoint_add(args) -> int:
    from sushitui.tagger.vlm.endpoints import VlmError, add_endpoint, privacy_notice

    open_db(args)
    try:
        info = add_endpoint(args.name, args.url, args.model, args.api_key_env, replace=args.replace)
    except VlmError as exc:
        raise _vlm_error(exc) from exc
    if args.json:
        emit_json(info.as_dict())
        return 0
    out(
        f"endpoint {info.name}: {info.base_url}"
        + (f", model {info.model}" if info.model else ", model: the server's first")
    )
    if info.api_key_env:
        out(f"key from ${info.api_key_env} ({'set' if info.key_present else 'not set in this shell'})")
    notice = privacy_notice(info.base_url)
    if notice:
        err(f"note: {notice}")
    return 0


def cmd_endpoint_list(args) -> int:
    from sushitui.tagger.vlm.endpoints import list_endpoints

    open_db(args)
    rows = list_endpoints()
    if args.json:
        emit_json([e.as_dict() for e in rows])
        return 0
    if not rows:
        out("no endpoints; add one: sushitui endpoint add local http://127.0.0.1:8000/v1 --model MODEL")
        return 0
    width = max(len(e.name) for e in rows) + 2
    out(f"{'NAME':<{width}}{'LOCAL':<7}{'KEY':<22}URL / MODEL")
    for e in rows:
        key = "-" if not e.api_key_env else f"${e.api_key_env}{'' if e.key_present else ' (unset)'}"
        local = "yes" if e.as_dict()["local"] else "NO"
        out(f"{e.name:<{width}}{local:<7}{key:<22}{e.base_url}  {e.model or '(server default)'}")
    return 0


def cmd_endpoint_test(args) -> int:
    from sushitui.tagger.vlm.endpoints import VlmError, get_endpoint, probe_endpoint

    open_db(args)
    try:
        endpoint = get_endpoint(args.name)
        probe = probe_endpoint(endpoint, timeout_s=args.timeout)
    except VlmError as exc:
        raise _vlm_error(exc) from exc
    if args.json:
        emit_json(probe.as_dict())
        return 0 if probe.ok else 1
    if probe.notice:
        err(f"note: {probe.notice}")
    out(f"endpoint {probe.endpoint}: {probe.base_url}")
    if probe.list_latency_s is not None:
        shown = ", ".join(probe.models[:10]) + (f" … ({len(probe.models)} in all)" if len(probe.models) > 10 else "")
        out(f"models ({probe.list_latency_s * 1000:.0f} ms): {shown or 'none'}")
    if probe.reply is not None:
        out(f"model {probe.model} answered in {probe.reply_latency_s:.2f} s ({probe.finish_reason}): {probe.reply}")
    for p in probe.problems:
        err(f"problem: {p}")
    out("ok" if probe.ok else "FAILED")
    return 0 if probe.ok else 1


def cmd_endpoint_remove(args) -> int:
    from sushitui.tagger.vlm.endpoints import VlmError, remove_endpoint

    open_db(args)
    try:
        remove_endpoint(args.name)
    except VlmError as exc:
        raise _vlm_error(exc) from exc
    if args.json:
        emit_json({"removed": args.name})
    else:
        out(f"endpoint {args.name} removed")
    return 0


# --- caption -----------------------------------------------------------------------------------


def _options(args):
    from sushitui.tagger.vlm.run import CaptionOptions

    return CaptionOptions(
        endpoint=args.endpoint,
        template=args.template,
        prompt=args.prompt,
        system=args.system,
        subtype=args.subtype,
        mode=args.mode,
        concurrency=args.concurrency,
        max_side=args.max_side,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        start_with=args.start_with,
        ban=tuple(w.strip() for w in (args.ban or "").split(",") if w.strip()),
        trigger=args.trigger,
        fold=not args.keep_lines,
        stream=args.stream,
        timeout_s=args.timeout,
        max_retries=args.retries,
        read_cache=not args.no_cache,
        workers=args.workers,
    )


def cmd_caption(args) -> int:
    import shlex

    from sushitui.tagger.vlm.endpoints import VlmError, get_endpoint, privacy_notice
    from sushitui.tagger.vlm.run import CaptionTarget, caption_items, sample

    opts = _options(args)
    target = CaptionTarget(query=args.query, item_ids=int_list("--items", args.items) if args.items else None)
    open_db(args)
    try:
        notice = privacy_notice(get_endpoint(args.endpoint).base_url)
    except VlmError as exc:
        raise _vlm_error(exc) from exc
    if notice:
        err(f"note: {notice}")
    bar = TerminalProgress(f"caption {args.name}")
    hint = (
        f"Answers received before the failure are cached: once the database can be written again, run the same "
        f"command to write them without sending (or `sushitui dataset reindex {shlex.quote(args.name)}`)"
    )
    with cancel_on_sigint() as token, on_database_error(args, None if args.sample else hint):
        try:
            if args.sample:
                report = sample(args.name, target, opts, n=args.sample, progress=bar, cancel=token)
            elif getattr(args, "ray", None):
                from sushitui.tagger.ray_caption import caption_ray

                report = caption_ray(
                    args.name,
                    target,
                    opts,
                    address=None if args.ray == "local" else args.ray,
                    endpoints=args.ray_endpoint,
                    progress=bar,
                    cancel=token,
                )
            else:
                report = caption_items(args.name, target, opts, progress=bar, cancel=token)
        except VlmError as exc:
            raise _vlm_error(exc) from exc
        finally:
            bar.close()
    if args.json:
        emit_json(report.as_dict())
    elif args.sample:
        _print_sample(report)
    else:
        _print_summary(report)
    return 130 if report.cancelled else 0


def _print_sample(r) -> None:
    out(
        f"sample of {len(r.results)} item(s) from {r.dataset}: model {r.model} on {r.endpoint}, template {r.template}; "
        "nothing written"
    )
    for res in r.results:
        out("")
        out(f"[{res.item_id}] {res.image_path or res.name}" + (" (cached)" if res.from_cache else ""))
        if res.old_text:
            out(f"  now: {res.old_text}")
        if res.status == "answered":
            out(f"  new: {res.text}")
        else:
            out(f"  {res.status.upper()}: {res.problem}" + (f" — {res.text}" if res.text else ""))
    if r.results:
        out("")
        out(f"prompt: {r.results[0].prompt}")
    for n in r.notes:
        out(f"note: {n}")


def _print_summary(r) -> None:
    out(
        f"caption {r.dataset}: {r.items} item(s), model {r.model} on {r.endpoint}, template {r.template}, "
        f"{r.ctype.replace('_', ' ')} caption '{r.subtype}', mode {r.mode}"
    )
    parts = [f"written {r.written}", f"unchanged {r.unchanged}"]
    if r.skipped_existing:
        parts.append(f"skipped (already captioned) {r.skipped_existing}")
    parts += [f"sent {r.requests}", f"from cache {r.cached}", f"flagged {r.flagged}", f"failed {r.failed}"]
    out(", ".join(parts))
    if r.requests:
        out(
            f"{r.requests_per_s:.1f} requests/s, {r.tokens_per_s:.0f} output tokens/s"
            + (f", {r.retries} retries" if r.retries else "")
        )
    for n in r.notes:
        out(f"note: {n}")
    problems = r.problems
    for p in problems[:50]:
        err(f"  {p.image_path or p.name}: {p.status}: {p.problem}")
    if len(problems) > 50:
        err(f"  … and {len(problems) - 50} more (use --json for all)")
    out(
        f"{fmt_duration(r.elapsed_s)} ({r.elapsed_s:.1f} s)"
        + ("  — cancelled; run the same command again to resume (answers received are kept)" if r.cancelled else "")
    )
