"""Alertmanager: `POST /api/v2/alerts` with labels, annotations, startsAt and endsAt.

The labels are the alert's identity (Alertmanager fingerprints them): a failure and the
recovery after it carry the same labels, so the recovery's `endsAt` of now resolves exactly
the alert the failure raised. A failure's `endsAt` lies `resolve_after` ahead, so an alert
nobody resolves still ends; a release or a message is an alert that ends on its own.
"""

from __future__ import annotations

import datetime as dt

from pipeline.notify.message import Notice
from pipeline.notify.settings import Event
from pipeline.notify.wire import Reply, Request, Target, Verdict, http_verdict, json_body

KIND = "alertmanager"
PATH = "/api/v2/alerts"
ALERT_NAMES = {
    Event.FAILURE: "GitopsPipelineFailed",
    Event.RECOVERY: "GitopsPipelineFailed",  # the same alert, resolved
    Event.RELEASE: "GitopsPipelineReleased",
    Event.MESSAGE: "GitopsPipelineMessage",
}
SEVERITY = {
    Event.FAILURE: "critical",
    Event.RECOVERY: "critical",
    Event.RELEASE: "info",
    Event.MESSAGE: "info",
}
INFO_SECONDS = 3600.0  # how long a release or a message stays an active alert


def _timestamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert(notice: Notice, target: Target, now: dt.datetime) -> dict[str, object]:
    labels = {
        "alertname": ALERT_NAMES[notice.event],
        "severity": SEVERITY[notice.event],
        **target.settings.labels,
        **notice.labels,
    }
    if notice.event is Event.RECOVERY:
        ends = now
    elif notice.event is Event.FAILURE:
        ends = now + dt.timedelta(seconds=target.settings.resolve_after)
    else:
        ends = now + dt.timedelta(seconds=INFO_SECONDS)
    annotations = {"summary": notice.title, "description": "\n".join(notice.lines)}
    annotations.update({f"link_{name}": url for name, url in notice.links})
    body: dict[str, object] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _timestamp(now),
        "endsAt": _timestamp(ends),
    }
    if notice.links:
        body["generatorURL"] = notice.links[0][1]
    return body


def requests(notice: Notice, target: Target, now: dt.datetime) -> tuple[Request, ...]:
    url = target.url.rstrip("/") + PATH
    return (Request("POST /api/v2/alerts", url, json_body([alert(notice, target, now)])),)


def verdict(reply: Reply) -> Verdict:
    return http_verdict(reply)
