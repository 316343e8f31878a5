"""Send a notice to every chosen channel: retries with backoff, one deadline, a report.

Channels are sent concurrently, each request with up to `attempts` tries: a 5xx, a timeout
or a connection error waits `backoff`, doubled each time; a 429 waits what the server asked.
No wait goes past the deadline. A channel that fails is a line of the report (stderr and
notify.json), never an exception: notifying must not change the pipeline's verdict. Every
looked-up secret is replaced by `***` in whatever the report quotes.
"""

from __future__ import annotations

import datetime as dt
import http.client
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.notify import alertmanager, slack, telegram, webhook
from pipeline.notify.message import Notice
from pipeline.notify.settings import NotifySettings
from pipeline.notify.targets import redact
from pipeline.notify.wire import Reply, Request, Target, Verdict

CHANNELS: Mapping[str, ModuleType] = {
    module.KIND: module for module in (alertmanager, telegram, slack, webhook)
}
MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True)
class ChannelReport:
    channel: str
    status: str  # "sent", "failed" or "skipped"
    detail: str
    requests: int = 0  # sent successfully
    attempts: int = 0
    seconds: float = 0.0

    def json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "status": self.status,
            "detail": self.detail,
            "requests": self.requests,
            "attempts": self.attempts,
            "duration_seconds": round(self.seconds, 3),
        }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the endpoint's error: following it would carry the body elsewhere."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _aliased(url: str, hosts: Mapping[str, str]) -> str:
    """The URL with a host alias (`notify-server`) replaced by the host it stands for."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.hostname not in hosts:
        return url
    netloc = hosts[parts.hostname] + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def post(request: Request, timeout: float, hosts: Mapping[str, str]) -> Reply:
    """One HTTP exchange; any status is a Reply, the network's failures are exceptions."""
    prepared = urllib.request.Request(  # noqa: S310 - the scheme was checked as http(s)
        _aliased(request.url, hosts),
        data=request.body,
        headers=dict(request.headers),
        method=request.method,
    )
    try:
        with _OPENER.open(prepared, timeout=timeout) as response:
            body = response.read(MAX_REPLY_BYTES)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Reply(response.status, body, headers)
    except urllib.error.HTTPError as error:
        with error:
            body = error.read(MAX_REPLY_BYTES)
        return Reply(error.code, body, {k.lower(): v for k, v in error.headers.items()})


def _network_verdict(error: BaseException, timeout: float) -> Verdict:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError | socket.timeout):
        return Verdict(ok=False, retry=True, detail=f"no answer within {timeout:g}s")
    return Verdict(ok=False, retry=True, detail=f"connection failed: {reason}")


@dataclass
class Sending:
    """What every request of one delivery shares: the timing, the deadline, host aliases."""

    settings: NotifySettings
    deadline: float  # time.monotonic() value
    hosts: Mapping[str, str]
    now: dt.datetime
    sleep: Callable[[float], None] = time.sleep
    attempts: int = 0  # made so far, for the report


def _send_one(request: Request, judge: Callable[[Reply], Verdict], sending: Sending) -> Verdict:
    settings = sending.settings
    wait = settings.backoff
    for attempt in range(1, settings.attempts + 1):
        remaining = sending.deadline - time.monotonic()
        if remaining <= 0:
            return Verdict(ok=False, detail="the deadline passed before it could be sent")
        timeout = min(settings.request_timeout, remaining)
        sending.attempts += 1
        try:
            verdict = judge(post(request, timeout, sending.hosts))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            verdict = _network_verdict(error, timeout)
        if verdict.ok or not verdict.retry or attempt == settings.attempts:
            return verdict
        pause = verdict.retry_after if verdict.retry_after is not None else wait
        wait *= 2
        if time.monotonic() + pause >= sending.deadline:
            return Verdict(
                ok=False,
                detail=f"{verdict.detail}; the next try, in {pause:g}s, would pass the "
                f"deadline of {settings.deadline:g}s",
            )
        sending.sleep(pause)
    return Verdict(ok=False, detail="no attempt allowed")  # attempts is at least 1


def send_channel(notice: Notice, target: Target, sending: Sending) -> ChannelReport:
    channel = CHANNELS[target.kind]
    started = time.monotonic()
    secrets = target.secret_values()
    sent = 0
    try:
        for request in channel.requests(notice, target, sending.now):
            verdict = _send_one(request, channel.verdict, sending)
            if not verdict.ok:
                detail = f"{request.what}: {verdict.detail} (after {sending.attempts} attempts)"
                return ChannelReport(
                    target.kind,
                    "failed",
                    redact(detail, secrets),
                    sent,
                    sending.attempts,
                    time.monotonic() - started,
                )
            sent += 1
    except Exception as error:  # noqa: BLE001 - a channel's bug must not stop the others
        detail = redact(f"{type(error).__name__}: {error}", secrets)
        return ChannelReport(
            target.kind, "failed", detail, sent, sending.attempts, time.monotonic() - started
        )
    return ChannelReport(
        target.kind,
        "sent",
        f"{sent} request(s) accepted",
        sent,
        sending.attempts,
        time.monotonic() - started,
    )


def deliver(
    notice: Notice,
    targets: Sequence[Target],
    settings: NotifySettings,
    hosts: Mapping[str, str] | None = None,
) -> list[ChannelReport]:
    """Every target, concurrently, within one deadline; reports in the targets' order."""
    if not targets:
        return []
    deadline = time.monotonic() + settings.deadline
    now = dt.datetime.now(dt.UTC)
    aliases = hosts or {}
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = [
            pool.submit(send_channel, notice, t, Sending(settings, deadline, aliases, now))
            for t in targets
        ]
        return [future.result() for future in futures]
