"""Slack: an incoming webhook, JSON `{"text": ...}` in mrkdwn.

Slack reads `&`, `<` and `>` as control characters in mrkdwn; everything we did not write
ourselves is escaped, so a finding's message can neither link nor mention anyone.
"""

from __future__ import annotations

import datetime as dt

from pipeline.notify.message import Notice
from pipeline.notify.wire import Reply, Request, Target, Verdict, http_verdict, json_body

KIND = "slack"
# Slack truncates a message's text past 40,000 characters; ours stops well before.
MAX_TEXT = 39_000
TRUNCATED = "\n_… truncated: the full report is in the pipeline's artifacts_"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(name: str, url: str) -> str:
    # Inside <url|name> a `|` or `>` would end the part early.
    return f"<{escape(url).replace('|', '%7C')}|{escape(name).replace('|', '/')}>"


def text(notice: Notice) -> str:
    lines = [f"*{escape(notice.title)}*", *(escape(line) for line in notice.text_lines())]
    if notice.links:
        lines.append(" · ".join(_link(name, url) for name, url in notice.links))
    body = "\n".join(lines)
    if len(body) > MAX_TEXT:
        cut = body.rfind("\n", 0, MAX_TEXT - len(TRUNCATED))
        body = body[: cut if cut > 0 else MAX_TEXT - len(TRUNCATED)] + TRUNCATED
    return body


def requests(notice: Notice, target: Target, now: dt.datetime) -> tuple[Request, ...]:
    del now
    return (Request("incoming webhook", target.url, json_body({"text": text(notice)})),)


def verdict(reply: Reply) -> Verdict:
    return http_verdict(reply)
