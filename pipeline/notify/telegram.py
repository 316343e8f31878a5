"""Telegram: the Bot API's `sendMessage`, `parse_mode=HTML`.

A message holds at most 4,096 characters after entity parsing; the HTML we send is never
shorter than what Telegram counts, so packing whole lines under the limit, counted in UTF-16
code units as Telegram counts, is always safe and never cuts a tag in half. A long report
goes out as up to `MAX_PARTS` messages, numbered; what is left after them is replaced by a
note. A `429` carries `parameters.retry_after`, the seconds to wait, which the sender honours.
"""

from __future__ import annotations

import datetime as dt
import html
import json

from pipeline.notify.message import Notice
from pipeline.notify.wire import Reply, Request, Target, Verdict, http_verdict, json_body

KIND = "telegram"
LIMIT = 4096
MAX_PARTS = 4
# Room kept in every part for the "(2/4)" marker and, in the last, the truncation note.
RESERVED = 200
MAX_LINE = LIMIT - RESERVED


def units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def escape(text: str) -> str:
    # Telegram's HTML needs exactly these three; quotes only inside attributes.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _line(text: str) -> str:
    """One escaped line, its plain text shortened until the escaped form fits in a part."""
    escaped = escape(text)
    keep = len(text)
    while units(escaped) > MAX_LINE:
        keep = keep * MAX_LINE // max(units(escaped), 1) - 1
        escaped = escape(text[: max(keep, 0)]) + "…"
    return escaped


def lines(notice: Notice) -> list[str]:
    rendered = [f"<b>{_line(notice.title)}</b>", *(_line(line) for line in notice.text_lines())]
    if notice.links:
        rendered.append(
            " · ".join(
                f'<a href="{html.escape(url, quote=True)}">{escape(name)}</a>'
                for name, url in notice.links
            )
        )
    return rendered


def parts(notice: Notice) -> list[str]:
    """The texts of the messages, each within the limit; a note says what was left out."""
    packed: list[list[str]] = [[]]
    rendered = lines(notice)
    left_out = 0
    for index, line in enumerate(rendered):
        current = packed[-1]
        if current and units("\n".join([*current, line])) > LIMIT - RESERVED:
            if len(packed) == MAX_PARTS:
                left_out = len(rendered) - index
                break
            packed.append([])
        packed[-1].append(line)
    if left_out:
        packed[-1].append(
            f"<i>… truncated: {left_out} more lines; the full report is in the pipeline's "
            "artifacts</i>"
        )
    texts = ["\n".join(part) for part in packed]
    if len(texts) > 1:
        texts = [f"({n}/{len(texts)}) {text}" for n, text in enumerate(texts, start=1)]
    return texts


def requests(notice: Notice, target: Target, now: dt.datetime) -> tuple[Request, ...]:
    del now
    url = f"{target.settings.api_url.rstrip('/')}/bot{target.token}/sendMessage"
    texts = parts(notice)
    return tuple(
        Request(
            f"sendMessage {n}/{len(texts)}",
            url,
            json_body(
                {
                    "chat_id": target.settings.chat_id,
                    "text": text,
                    "parse_mode": "HTML",
                    "link_preview_options": {"is_disabled": True},
                }
            ),
        )
        for n, text in enumerate(texts, start=1)
    )


def verdict(reply: Reply) -> Verdict:
    """Telegram answers `{"ok": false, "description", "parameters": {"retry_after"}}`."""
    plain = http_verdict(reply)
    try:
        answer = json.loads(reply.body)
    except ValueError:
        return plain
    if not isinstance(answer, dict):
        return plain
    if answer.get("ok") is True and plain.ok:
        return plain
    description = str(answer.get("description") or reply.text())
    parameters = answer.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    wait = float(retry_after) if isinstance(retry_after, int | float) else plain.retry_after
    return Verdict(
        ok=False,
        retry=plain.retry or wait is not None,
        retry_after=wait,
        detail=f"HTTP {reply.status}: {description}",
    )
