"""HTTP servers on 127.0.0.1 that answer as Telegram, Slack, Alertmanager and a webhook do.

One threading server routes by path, as the real services would be reached:
`/bot<token>/sendMessage` (Telegram Bot API), `/api/v2/alerts` (Alertmanager),
`/services/T000/B000/<secret>` (a Slack incoming webhook) and `/hook` (a webhook that checks
`X-Signature-256`). Each validates what the real API validates where our code could get it
wrong (the token, HTML entities and the 4,096-character limit, the alert's shape, the
signature) and answers in the real API's shape. `faults` queues misbehaviour per route:
a status code, a Telegram 429 with `retry_after`, or a delay longer than the client waits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import html.parser
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TELEGRAM_TOKEN = "123456:AAF-telegram-token-never-printed"  # noqa: S105 - a test value
SLACK_PATH = "/services/T000/B000/slack-secret-never-printed"
WEBHOOK_SECRET = "webhook-hmac-key-never-printed"  # noqa: S105 - a test value
TELEGRAM_LIMIT = 4096
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#[0-9]+|#x[0-9a-fA-F]+);")
_TAG = re.compile(r"</?(?:b|strong|i|em|u|ins|s|strike|del|code|pre)>|<a href=\"[^\"<>]*\">|</a>")
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre"}


@dataclass(frozen=True)
class Fault:
    status: int = 0  # answer this status (0: none)
    retry_after: int | None = None  # Telegram 429's parameters.retry_after / Retry-After
    delay: float = 0.0  # seconds to sleep before answering
    body: str = ""


@dataclass(frozen=True)
class Received:
    route: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Entities(html.parser.HTMLParser):
    """Telegram's HTML: only its tags, balanced; the text length after parsing."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []
        self.problem = ""

    def handle_starttag(self, tag: str, _attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS:
            self.problem = f'Unsupported start tag "{tag}"'
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problem = f'Unexpected end tag "{tag}"'

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def telegram_text_problem(text: str) -> str:
    """What Telegram would refuse in `text` with parse_mode=HTML, or ''."""
    if "&" in _ENTITY.sub("", text):
        return "Bad Request: can't parse entities: unescaped &"
    if {"<", ">"} & set(_TAG.sub("", text)):
        return "Bad Request: can't parse entities: unescaped < or >"
    parser = _Entities()
    parser.feed(text)
    parser.close()
    if parser.problem or parser.open:
        return f"Bad Request: can't parse entities: {parser.problem or 'unclosed tag'}"
    plain = "".join(parser.text)
    if len(plain.encode("utf-16-le")) // 2 > TELEGRAM_LIMIT:
        return "Bad Request: message is too long"
    if not plain.strip():
        return "Bad Request: message text is empty"
    return ""


@dataclass
class FakeApis:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # fingerprint -> alert
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, route: str, *faults: Fault) -> None:
        self.faults[route].extend(faults)

    def of(self, route: str) -> list[Received]:
        return [r for r in self.received if r.route == route]

    def firing(self) -> list[dict[str, Any]]:
        now = dt.datetime.now(dt.UTC)
        return [a for a in self.alerts.values() if _time(a["endsAt"]) > now]


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _route(path: str) -> str:
    if path.startswith("/bot"):
        return "telegram"
    if path == "/api/v2/alerts":
        return "alertmanager"
    if path.startswith("/services/"):
        return "slack"
    return "webhook" if path == "/hook" else "unknown"


class _Handler(BaseHTTPRequestHandler):
    apis: FakeApis

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # The client may have given up waiting: what a timeout test wants.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        route = _route(self.path)
        with self.apis.lock:
            self.apis.received.append(
                Received(route, self.path, dict(self.headers), body, time.monotonic())
            )
            fault = self.apis.faults[route].popleft() if self.apis.faults[route] else None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                self.fault(route, fault)
                return
        getattr(self, f"real_{route}")(body)

    def fault(self, route: str, fault: Fault) -> None:
        headers = {}
        if fault.retry_after is not None and route != "telegram":
            headers["Retry-After"] = str(fault.retry_after)
        if route == "telegram":
            answer: dict[str, Any] = {
                "ok": False,
                "error_code": fault.status,
                "description": fault.body or "Too Many Requests: retry later",
            }
            if fault.retry_after is not None:
                answer["parameters"] = {"retry_after": fault.retry_after}
            self.answer(fault.status, answer, headers)
        else:
            self.answer(fault.status, (fault.body or "error").encode(), headers)

    def real_unknown(self, _body: bytes) -> None:
        self.answer(404, b"404 page not found")

    def real_telegram(self, body: bytes) -> None:
        if self.path != f"/bot{TELEGRAM_TOKEN}/sendMessage":
            self.answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        request = json.loads(body)
        problem = "" if request.get("parse_mode") == "HTML" else "Bad Request: no parse_mode"
        problem = problem or telegram_text_problem(str(request.get("text", "")))
        if problem:
            self.answer(400, {"ok": False, "error_code": 400, "description": problem})
            return
        message = {"message_id": len(self.apis.received), "date": int(time.time()), "text": "…"}
        self.answer(200, {"ok": True, "result": message})

    def real_alertmanager(self, body: bytes) -> None:
        try:
            alerts = json.loads(body)
            assert isinstance(alerts, list)
            for alert in alerts:
                assert alert["labels"], "labels must not be empty"
                starts, ends = _time(alert["startsAt"]), _time(alert["endsAt"])
                assert starts <= ends, "start time must be before end time"
                fingerprint = json.dumps(sorted(alert["labels"].items()))
                with self.apis.lock:
                    self.apis.alerts[fingerprint] = alert
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            self.answer(400, f"{error}".encode())
            return
        self.answer(200, b"")

    def real_slack(self, body: bytes) -> None:
        if self.path != SLACK_PATH:
            self.answer(404, b"no_service")
            return
        try:
            text = json.loads(body)["text"]
        except (ValueError, KeyError):
            self.answer(400, b"invalid_payload")
            return
        self.answer(200 if text else 400, b"ok" if text else b"no_text")

    def real_webhook(self, body: bytes) -> None:
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        given = self.headers.get("X-Signature-256", "")
        if not hmac.compare_digest(given, expected):
            self.answer(401, b"bad signature")
            return
        self.answer(204, b"")


@contextmanager
def fake_apis() -> Iterator[FakeApis]:
    apis = FakeApis()
    handler = type("Handler", (_Handler,), {"apis": apis})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    apis.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield apis
    finally:
        server.shutdown()
        server.server_close()
