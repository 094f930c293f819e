"""A real OpenAI-compatible HTTP server on 127.0.0.1 for the VLM captioning tests and
the benchmark: ``GET /v1/models`` and ``POST /v1/chat/completions`` (plain or streamed).

It answers per item according to a script: the item is recognised by ``<<name>>`` in the
user prompt (test templates put ``<<{name}>>`` in their prompt), and ``script[name]`` is a
list of actions used one per attempt (the last one repeats): ``ok``, ``slow:SECONDS``,
``429:RETRY_AFTER``, ``500``, ``400``, ``malformed``, ``refusal``, ``api-refusal``,
``length``, ``empty``, ``text:WORDS``. Every request is recorded: headers, the
prompts, each image (decoded: format, size, whether the base64 was valid), the
parameters. Not a test module. Also runs as a script (the benchmark's server in its own
process): ``python tests/vlm_support.py [--delay S] [--record-images]`` prints the port.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME_RE = re.compile(r"<<(.+?)>>")


@dataclass
class Received:
    path: str
    authorization: str | None
    name: str | None = None
    model: str | None = None
    system: str | None = None
    prompt: str | None = None
    images: list[dict] = field(default_factory=list)  # {"valid": bool, "format", "size": (w, h), "bytes": n}
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    headers: dict = field(default_factory=dict)
    at: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 32+ clients connect at once; the default backlog of 5 drops SYNs (1 s stalls)

    def handle_error(self, request, client_address):
        # a client that cancelled or timed out hung up before the answer: expected in the tests
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeVlmServer:
    def __init__(self, *, delay: float = 0.0, record_images: bool = True, models=("test-vlm",)):
        self.delay = delay
        self.record_images = record_images
        self.models = list(models)
        self.script: dict[str, list[str]] = {}
        self.default_action = "ok"
        self.received: list[Received] = []
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.reply_format = "A detailed photo of {name}."
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeVlmServer":
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def chat_requests(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.endswith("/chat/completions")]

    def names_sent(self) -> list[str]:
        return [r.name for r in self.chat_requests()]

    def _action(self, name: str | None) -> str:
        with self.lock:
            n = self.attempts.get(name or "", 0)
            self.attempts[name or ""] = n + 1
        actions = self.script.get(name or "") or [self.default_action]
        return actions[min(n, len(actions) - 1)]

    # --- the handler ---------------------------------------------------------------------

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                rec = Received(self.path, self.headers.get("Authorization"), headers=dict(self.headers), at=time.time())
                with owner.lock:
                    owner.received.append(rec)
                if self.path.rstrip("/").endswith("/models"):
                    doc = {"object": "list", "data": [{"id": m, "object": "model"} for m in owner.models]}
                    self._send(200, json.dumps(doc).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                rec = Received(self.path, self.headers.get("Authorization"), headers=dict(self.headers), at=time.time())
                try:
                    doc = json.loads(raw)
                except ValueError:
                    self._send(400, b'{"error": {"message": "bad json"}}')
                    return
                owner._record(rec, doc)
                with owner.lock:
                    owner.received.append(rec)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                action = owner._action(rec.name)
                if owner.delay:
                    time.sleep(owner.delay)
                kind, _, arg = action.partition(":")
                if kind == "slow":
                    time.sleep(float(arg))
                    kind = "ok"
                if kind == "429":
                    self._send(429, b'{"error": {"message": "rate limited"}}', headers={"Retry-After": arg or "1"})
                    return
                if kind == "500":
                    self._send(500, b'{"error": {"message": "internal error"}}')
                    return
                if kind == "400":
                    self._send(400, b'{"error": {"message": "model does not support images"}}')
                    return
                if kind == "malformed":
                    self._send(200, b'{"choices": [{"message": {"content": "trunc')
                    return
                text, finish, refusal = owner.reply_format.format(name=rec.name or "?"), "stop", None
                if kind == "refusal":
                    text = "I'm sorry, but I can't help with describing this image."
                elif kind == "api-refusal":
                    text, refusal = "", "I cannot assist with that."
                elif kind == "length":
                    text, finish = "A detailed photo of a long and winding", "length"
                elif kind == "empty":
                    text = ""
                elif kind == "text":
                    text = arg
                if rec.stream:
                    self._stream(text, finish, refusal)
                    return
                message = {"role": "assistant", "content": text}
                if refusal:
                    message["refusal"] = refusal
                body = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": rec.model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {
                        "prompt_tokens": 100,
                        "completion_tokens": len(text.split()),
                        "total_tokens": 100 + len(text.split()),
                    },
                }
                self._send(200, json.dumps(body).encode())

            def _stream(self, text: str, finish: str, refusal: str | None):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(obj) -> None:
                    data = f"data: {json.dumps(obj)}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

                words = text.split(" ") if text else []
                for i, w in enumerate(words):
                    chunk(
                        {
                            "choices": [
                                {"index": 0, "delta": {"content": (w if i == 0 else " " + w)}, "finish_reason": None}
                            ]
                        }
                    )
                if refusal:
                    chunk({"choices": [{"index": 0, "delta": {"refusal": refusal}, "finish_reason": None}]})
                chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                data = b"data: [DONE]\n\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")

        return Handler

    def _record(self, rec: Received, doc: dict) -> None:
        rec.model = doc.get("model")
        rec.stream = bool(doc.get("stream"))
        rec.max_tokens = doc.get("max_tokens")
        rec.temperature = doc.get("temperature")
        for m in doc.get("messages") or ():
            if m.get("role") == "system":
                rec.system = m.get("content")
            elif m.get("role") == "user":
                content = m.get("content")
                parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
                for p in parts:
                    if p.get("type") == "text":
                        rec.prompt = p.get("text")
                    elif p.get("type") == "image_url":
                        rec.images.append(self._image(p["image_url"]["url"]))
        found = NAME_RE.search(rec.prompt or "")
        rec.name = found.group(1) if found else None

    def _image(self, url: str) -> dict:
        head, _, data = url.partition(",")
        info = {"header": head, "bytes": len(data), "valid": False}
        if not self.record_images:
            info["valid"] = head.startswith("data:image/") and head.endswith(";base64")
            return info
        try:
            raw = base64.b64decode(data, validate=True)
            from PIL import Image

            img = Image.open(io.BytesIO(raw))
            img.load()
            info.update(
                valid=True,
                format=img.format,
                size=img.size,
                mode=img.mode,
                corner=img.convert("RGB").getpixel((0, 0)),
                center=img.convert("RGB").getpixel((img.size[0] // 2, img.size[1] // 2)),
            )
        except (binascii.Error, ValueError, OSError):
            pass
        return info


def main() -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--record-images", action="store_true")
    a = p.parse_args()
    srv = FakeVlmServer(delay=a.delay, record_images=a.record_images)
    print(srv.port, flush=True)
    try:
        srv.server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
