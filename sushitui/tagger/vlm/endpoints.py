"""The endpoint registry: named OpenAI-compatible servers (``sushitui endpoint ...``).

An endpoint is a name, a base URL (``http://127.0.0.1:8000/v1``), optionally a model
(else the first one the server lists) and optionally the name of the environment
variable that holds its key. The key itself is read from that variable when a request
goes out and is never stored, logged or reported.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sushitui.errors import UserError
from sushitui.store import write_transaction
from sushitui.store.models import VlmEndpoint

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LOCAL_SUFFIXES = (".local", ".lan", ".internal", ".home.arpa", ".localdomain")


class VlmError(UserError):
    """A captioning run or endpoint operation cannot go on; the message says what to do."""


@dataclass
class EndpointInfo:
    name: str
    base_url: str
    model: str | None = None
    api_key_env: str | None = None

    @property
    def key_present(self) -> bool:
        return bool(self.api_key_env and os.environ.get(self.api_key_env))

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "key_present": self.key_present,
            "local": is_local(self.base_url),
        }


def _info(row: VlmEndpoint) -> EndpointInfo:
    return EndpointInfo(row.name, row.base_url, row.model, row.api_key_env)


def normalise_url(url: str) -> str:
    """The base URL as stored: scheme and host checked, no credentials, no trailing '/'."""
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VlmError(f"{url!r} is not an http(s) URL; give the server's base URL, e.g. http://127.0.0.1:8000/v1")
    if parts.username or parts.password:
        raise VlmError(
            "the URL contains a user name or password; keys are never stored: put the key in an "
            "environment variable and pass --api-key-env VAR"
        )
    if parts.query or parts.fragment:
        raise VlmError(f"{url!r}: give the base URL without '?…' or '#…' (requests go to BASE/chat/completions)")
    return text.rstrip("/")


def is_local(url: str) -> bool:
    """True for this machine and private networks (RFC 1918, link-local, ULA, a bare
    host name or a .local/.lan name); False where images would leave the network."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost") or host.endswith(LOCAL_SUFFIXES):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host  # a bare name ("gpubox") resolves on the local network
    return ip.is_loopback or ip.is_private or ip.is_link_local


def privacy_notice(url: str) -> str | None:
    """The one-line notice shown before images go to a server that is neither this
    machine nor a private address; None when they stay local."""
    if is_local(url):
        return None
    host = urlsplit(url).hostname or url
    return f"images are sent to {host}: they leave this machine and your network"


def add_endpoint(
    name: str, base_url: str, model: str | None = None, api_key_env: str | None = None, *, replace: bool = False
) -> EndpointInfo:
    if not NAME_RE.fullmatch(name or ""):
        raise VlmError(f"endpoint name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    url = normalise_url(base_url)
    if api_key_env is not None and not ENV_RE.fullmatch(api_key_env):
        raise VlmError(
            f"--api-key-env {api_key_env!r} is not an environment variable name (e.g. OPENAI_API_KEY); "
            "give the variable's NAME, not the key"
        )
    model = (model or "").strip() or None
    now = time.time()
    with write_transaction():
        row = VlmEndpoint.get_or_none(VlmEndpoint.name == name)
        if row is not None and not replace:
            raise VlmError(f"an endpoint named {name!r} exists ({row.base_url}); remove it first or pick another name")
        if row is None:
            row = VlmEndpoint.create(
                name=name, base_url=url, model=model, api_key_env=api_key_env, created_at=now, updated_at=now
            )
        else:
            row.base_url, row.model, row.api_key_env, row.updated_at = url, model, api_key_env, now
            row.save()
    return _info(row)


def list_endpoints() -> list[EndpointInfo]:
    return [_info(r) for r in VlmEndpoint.select().order_by(VlmEndpoint.name)]


def get_endpoint(name: str | None = None) -> EndpointInfo:
    """The endpoint of that name; without a name the only one registered."""
    if name:
        row = VlmEndpoint.get_or_none(VlmEndpoint.name == name)
        if row is None:
            known = ", ".join(e.name for e in list_endpoints()) or "none yet"
            raise VlmError(
                f"no endpoint named {name!r} (registered: {known}); add one with "
                "`sushitui endpoint add NAME URL --model MODEL`"
            )
        return _info(row)
    rows = list_endpoints()
    if len(rows) == 1:
        return rows[0]
    if not rows:
        raise VlmError(
            "no endpoint registered: add your server with `sushitui endpoint add local "
            "http://127.0.0.1:8000/v1 --model MODEL`"
        )
    raise VlmError(f"several endpoints are registered ({', '.join(e.name for e in rows)}); choose one with --endpoint")


def remove_endpoint(name: str) -> None:
    with write_transaction():
        if VlmEndpoint.delete().where(VlmEndpoint.name == name).execute() == 0:
            raise VlmError(f"no endpoint named {name!r}")


def api_key(endpoint: EndpointInfo) -> str | None:
    """The key from the endpoint's environment variable (None when it names none)."""
    if not endpoint.api_key_env:
        return None
    key = os.environ.get(endpoint.api_key_env, "").strip()
    if not key:
        raise VlmError(
            f"endpoint {endpoint.name!r} takes its key from ${endpoint.api_key_env}, which is not set; "
            f"export {endpoint.api_key_env}=... and run again"
        )
    return key


def make_client(endpoint: EndpointInfo, **kwargs):
    from sushitui.tagger.vlm.client import ChatClient

    return ChatClient(endpoint.base_url, api_key(endpoint), **kwargs)


async def resolve_model(client, endpoint: EndpointInfo) -> str:
    """The endpoint's model, or the first one the server lists."""
    if endpoint.model:
        return endpoint.model
    from sushitui.tagger.vlm.client import EndpointError

    try:
        models = await client.list_models()
    except EndpointError as exc:
        raise VlmError(
            f"endpoint {endpoint.name!r} has no model set and listing the server's models failed: {exc}. "
            "Set one: `sushitui endpoint add NAME URL --model MODEL`"
        ) from None
    if not models:
        raise VlmError(f"endpoint {endpoint.name!r}: the server lists no models")
    return models[0]


@dataclass
class EndpointProbe:
    """What ``probe_endpoint`` found."""

    endpoint: str
    base_url: str
    models: list[str] = field(default_factory=list)
    model: str | None = None
    list_latency_s: float | None = None
    reply: str | None = None
    reply_latency_s: float | None = None
    finish_reason: str | None = None
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    notice: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _probe_image() -> str:
    """A small generated picture (a red disc on blue), as a data URI: no file needed."""
    import io

    from PIL import Image, ImageDraw

    from sushitui.tagger.vlm.images import encode_bytes

    img = Image.new("RGB", (256, 256), (40, 80, 200))
    ImageDraw.Draw(img).ellipse((64, 64, 192, 192), fill=(220, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return encode_bytes(buf.getvalue(), 256).data_uri or ""


def probe_endpoint(
    name: str | EndpointInfo | None = None,
    *,
    timeout_s: float = 60.0,
    prompt: str = "Describe this image in one short sentence.",
) -> EndpointProbe:
    """List the server's models, send one small image, time both."""
    endpoint = name if isinstance(name, EndpointInfo) else get_endpoint(name)
    report = EndpointProbe(endpoint.name, endpoint.base_url, notice=privacy_notice(endpoint.base_url))
    key = api_key(endpoint)
    asyncio.run(_test(endpoint, key, timeout_s, prompt, report))
    return report


async def _test(endpoint: EndpointInfo, key: str | None, timeout_s: float, prompt: str, report: EndpointProbe) -> None:
    from sushitui.tagger.vlm.client import ChatClient, EndpointError

    async with ChatClient(endpoint.base_url, key, timeout_s=timeout_s, max_retries=0, concurrency=1) as client:
        t0 = time.monotonic()
        try:
            report.models = await client.list_models()
            report.list_latency_s = round(time.monotonic() - t0, 3)
        except EndpointError as exc:
            report.problems.append(f"listing models: {exc}")
        report.model = endpoint.model or (report.models[0] if report.models else None)
        if report.model is None:
            report.problems.append("no model: set one with `sushitui endpoint add NAME URL --model MODEL`")
            return
        if endpoint.model and report.models and endpoint.model not in report.models:
            report.problems.append(
                f"the server does not list the model {endpoint.model!r} (it lists: {', '.join(report.models[:10])})"
            )
        body = {
            "model": report.model,
            "max_tokens": 60,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": prompt},
                        {"type": "image_url", "image_url": {"url": _probe_image()}},
                    ],
                }
            ],
        }
        try:
            answer = await client.chat(body)
        except EndpointError as exc:
            report.problems.append(f"sending an image: {exc}")
            return
        report.reply = answer.text
        report.finish_reason = answer.finish_reason
        report.reply_latency_s = round(answer.latency_s, 3)
        report.ok = not report.problems
