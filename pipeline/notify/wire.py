"""What travels between a channel and the sender: requests, replies and their verdicts.

A channel module builds `Request` values and judges each `Reply` (pure functions); only
`send.py` touches the network. A request names itself by `what` ("sendMessage 2/3"), never by
its URL: a Telegram or Slack URL carries the token.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.notify.settings import ChannelSettings

JSON_HEADERS = (("Content-Type", "application/json"),)
# How much of a reply's body a report quotes: enough for an API's error description.
QUOTED_BODY = 300


@dataclass(frozen=True)
class Target:
    """A channel ready to send: its settings with every reference looked up."""

    settings: ChannelSettings
    url: str = ""  # alertmanager base URL, slack or webhook URL
    token: str = ""  # telegram bot token
    secret: str = ""  # webhook HMAC key

    @property
    def kind(self) -> str:
        return self.settings.kind

    def secret_values(self) -> tuple[str, ...]:
        """Everything that must never be printed: looked-up values that came by reference."""
        return tuple(v for v in (self.token, self.secret, self.url_secret()) if v)

    def url_secret(self) -> str:
        # A Slack or webhook URL by reference is a credential as a whole.
        return self.url if self.settings.url.startswith(("env:", "file:")) else ""


@dataclass(frozen=True)
class Request:
    what: str
    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    method: str = "POST"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased

    def text(self) -> str:
        return self.body[:QUOTED_BODY].decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    retry: bool = False  # worth another attempt: 5xx, 429, a timeout, a refused connection
    retry_after: float | None = None  # seconds the server asked for (429)
    detail: str = ""


TOO_MANY_REQUESTS = 429
SERVER_ERRORS = range(500, 600)


def http_verdict(reply: Reply) -> Verdict:
    """The verdict of a plain HTTP API: 2xx sent, 429 and 5xx retried, the rest refused."""
    if 200 <= reply.status < 300:  # noqa: PLR2004 - the 2xx range
        return Verdict(ok=True, detail=f"HTTP {reply.status}")
    detail = f"HTTP {reply.status}: {reply.text()}" if reply.text() else f"HTTP {reply.status}"
    if reply.status == TOO_MANY_REQUESTS:
        return Verdict(
            ok=False, retry=True, retry_after=retry_after_header(reply.headers), detail=detail
        )
    return Verdict(ok=False, retry=reply.status in SERVER_ERRORS, detail=detail)


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date (RFC 9110); None when absent."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def json_body(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
