"""A small asynchronous client for the part of the OpenAI API that captioning uses:
``GET /models`` and ``POST /chat/completions`` (plain or streamed).

Plain ``httpx2`` (the HTTP client huggingface_hub already installs; ``import httpx`` is
not there) rather than the ``openai`` package: in tests/benchmarks/bench_vlm.py the
``openai`` client (which runs on the same httpx2 underneath, plus pydantic models for
every answer) cost more CPU per request and kept fewer requests per second in flight
than these ~200 lines, and every server the issue names (vLLM, SGLang, Ollama,
llama.cpp, LM Studio, hosted APIs) speaks the same JSON. It also keeps the retry policy
ours: 429 with ``Retry-After``, 5xx, timeouts and dropped connections are retried with
backoff; other 4xx are not (a wrong model name does not get better).

The key is sent as a bearer token and is held only here, in memory; no message this
module produces contains it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx

from sushitui.errors import UserError

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_WAIT_S = 120.0  # a Retry-After beyond this is capped (the run would look hung)
ERROR_TEXT_LIMIT = 300


class EndpointError(UserError):
    """A request failed for good (after retries, or not retryable); the message says
    what the server answered, never the key."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass
class ChatAnswer:
    text: str
    finish_reason: str | None = None
    refusal: str | None = None  # the API's own refusal field (OpenAI structured refusals)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    attempts: int = 1
    retries: list[str] = field(default_factory=list)  # why each retry happened


def _short(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= ERROR_TEXT_LIMIT else text[:ERROR_TEXT_LIMIT] + "…"


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(body: bytes) -> str:
    """The error text a server put in its JSON (``{"error": {"message": ...}}`` or
    ``{"detail": ...}``), else the start of the body."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _short(body[:ERROR_TEXT_LIMIT].decode("utf-8", "replace"))
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and err.get("message"):
            return _short(str(err["message"]))
        if isinstance(err, str):
            return _short(err)
        if doc.get("detail"):
            return _short(str(doc["detail"]))
        if doc.get("message"):
            return _short(str(doc["message"]))
    return _short(str(doc))


def parse_completion(doc: Any) -> ChatAnswer:
    """A non-streamed ``chat.completion`` → ChatAnswer; ValueError when the shape is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("the answer is not a JSON object")
    if isinstance(doc.get("error"), (dict, str)):
        raise ValueError(f"the server answered with an error: {_server_message(json.dumps(doc).encode())}")
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("the answer has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    if not isinstance(message, dict):
        raise ValueError("the answer's message is not an object")
    text = _content_text(message.get("content"))
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    refusal = message.get("refusal")
    return ChatAnswer(
        text,
        choice.get("finish_reason"),
        refusal if isinstance(refusal, str) and refusal else None,
        _int(usage.get("prompt_tokens")),
        _int(usage.get("completion_tokens")),
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    raise ValueError("the answer's content is not text")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ChatClient:
    """One connection pool to one server; ``concurrency`` requests may be in flight.

    ``timeout_s`` bounds one attempt of one request (connect, upload, generation,
    answer); ``max_retries`` attempts follow a retryable failure, waiting
    ``Retry-After`` when the server says, else ``retry_base_s`` × 2^n (with jitter,
    at most 30 s)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 180.0,
        max_retries: int = 4,
        retry_base_s: float = 1.0,
        concurrency: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_base_s = retry_base_s
        headers = {"Accept": "application/json", "User-Agent": "sushitui"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        limits = httpx.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency))
        self._client = httpx.AsyncClient(
            headers=headers,
            limits=limits,
            timeout=httpx.Timeout(timeout_s, connect=min(30.0, timeout_s)),
            trust_env=False,  # a loopback server must not go through $HTTP_PROXY
            # plain http never negotiates TLS: skip loading the CA store (0.25 s per client)
            verify=not self.base_url.startswith("http://"),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> "ChatClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # --- requests ------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        url = f"{self.base_url}/models"
        try:
            resp = await asyncio.wait_for(self._client.get(url), self.timeout_s)
        except (httpx.HTTPError, asyncio.TimeoutError, OSError) as exc:
            raise EndpointError(f"GET {url}: {_transport_reason(exc)}", retryable=True) from None
        if resp.status_code != 200:
            raise EndpointError(
                f"GET {url}: HTTP {resp.status_code}: {_server_message(resp.content)}", resp.status_code
            )
        try:
            doc = resp.json()
            data = doc["data"] if isinstance(doc, dict) else doc
            return [str(m["id"]) if isinstance(m, dict) else str(m) for m in data]
        except (ValueError, KeyError, TypeError):
            raise EndpointError(
                f'GET {url}: the answer is not a model list (expected {{"data": [{{"id": ...}}]}})'
            ) from None

    async def chat(self, body: dict, *, stream: bool = False) -> ChatAnswer:
        """POST /chat/completions with retries; raises EndpointError when it fails for good."""
        payload = dict(body, stream=bool(stream))
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        started = time.monotonic()
        retries: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await asyncio.wait_for(self._attempt(data, stream), self.timeout_s)
                answer.latency_s = time.monotonic() - started
                answer.attempts = attempt
                answer.retries = retries
                return answer
            except asyncio.TimeoutError:
                error = EndpointError(f"no complete answer within {self.timeout_s:g} s", retryable=True)
            except EndpointError as exc:
                error = exc
            if not error.retryable or attempt > self.max_retries:
                if attempt > 1:
                    error.args = (f"{error.args[0]} (after {attempt} attempts)",)
                raise error
            wait = getattr(error, "retry_after", None)
            if wait is None:
                wait = min(30.0, self.retry_base_s * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
            retries.append(str(error))
            await asyncio.sleep(min(wait, MAX_RETRY_WAIT_S))

    async def _attempt(self, data: bytes, stream: bool) -> ChatAnswer:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if stream:
            headers["Accept"] = "text/event-stream"
        try:
            async with self._client.stream("POST", url, content=data, headers=headers) as resp:
                if resp.status_code != 200:
                    body = await resp.aread()
                    retryable = resp.status_code in RETRY_STATUSES or resp.status_code >= 500
                    err = EndpointError(
                        f"HTTP {resp.status_code}: {_server_message(body)}", resp.status_code, retryable
                    )
                    err.retry_after = retry_after_s(resp.headers.get("retry-after"))  # type: ignore[attr-defined]
                    raise err
                if stream and "text/event-stream" in resp.headers.get("content-type", ""):
                    return await _read_stream(resp)
                body = await resp.aread()
        except (httpx.TimeoutException, httpx.TransportError, OSError) as exc:
            raise EndpointError(_transport_reason(exc), retryable=True) from None
        try:
            return parse_completion(json.loads(body))
        except ValueError as exc:
            # a proxy or a server restarting can answer garbage once: worth another try
            reason = str(exc) if not isinstance(exc, json.JSONDecodeError) else "the answer is not valid JSON"
            raise EndpointError(
                f"malformed answer: {reason}: {_short(body[:120].decode('utf-8', 'replace'))}", 200, retryable=True
            ) from None


async def _read_stream(resp) -> ChatAnswer:
    """Server-sent events: ``data: {chunk}`` lines until ``data: [DONE]``."""
    parts: list[str] = []
    finish = None
    refusal_parts: list[str] = []
    usage: dict = {}
    chunks = 0
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        try:
            doc = json.loads(payload)
        except ValueError:
            raise EndpointError(f"malformed stream chunk: {_short(payload[:120])}", 200, retryable=True) from None
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("error"), (dict, str)):
            raise EndpointError(f"the server stopped with an error: {_server_message(payload.encode())}", 200, True)
        if isinstance(doc.get("usage"), dict):
            usage = doc["usage"]
        for choice in doc.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), str):
                    parts.append(delta["content"])
                    chunks += 1
                if isinstance(delta.get("refusal"), str):
                    refusal_parts.append(delta["refusal"])
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    completion = _int(usage.get("completion_tokens"))
    return ChatAnswer(
        "".join(parts),
        finish,
        "".join(refusal_parts) or None,
        _int(usage.get("prompt_tokens")),
        completion if completion is not None else (chunks or None),
    )


def _transport_reason(exc: BaseException) -> str:
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError)):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({_short(str(exc)) or 'connection refused'})"
    return f"{type(exc).__name__}: {_short(str(exc))}" if str(exc) else type(exc).__name__
