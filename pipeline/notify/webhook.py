"""A generic webhook: the notice as JSON, signed as GitHub signs its webhooks.

`X-Signature-256: sha256=<hex HMAC-SHA256 of the body, keyed by the secret>`: the receiver
recomputes it over the bytes it received and compares in constant time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from pipeline.notify.message import Notice
from pipeline.notify.wire import (
    JSON_HEADERS,
    Reply,
    Request,
    Target,
    Verdict,
    http_verdict,
    json_body,
)

KIND = "webhook"
SIGNATURE_HEADER = "X-Signature-256"
EVENT_HEADER = "X-Gitops-Pipeline-Event"
SCHEMA_VERSION = 1


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def document(notice: Notice, now: dt.datetime) -> dict[str, object]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event": notice.event.value,
        "title": notice.title,
        "lines": list(notice.lines),
        "labels": dict(notice.labels),
        "links": [{"name": name, "url": url} for name, url in notice.links],
        "details": dict(notice.details),
        "sent_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
    }


def requests(notice: Notice, target: Target, now: dt.datetime) -> tuple[Request, ...]:
    body = json_body(document(notice, now))
    headers = [*JSON_HEADERS, (EVENT_HEADER, notice.event.value)]
    if target.secret:
        headers.append((SIGNATURE_HEADER, signature(body, target.secret)))
    return (Request("POST", target.url, body, tuple(headers)),)


def verdict(reply: Reply) -> Verdict:
    return http_verdict(reply)
