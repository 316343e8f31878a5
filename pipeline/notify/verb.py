"""`notify` as the CLI verb and the Dagger function both run it.

Everything that can be wrong with the configuration or the input (a file that is not a
summary, a channel without its token, a reference that cannot be read) is a ConfigError
before anything is sent: exit 2. Once sending starts, nothing changes the exit code: each
channel's outcome is a line on stderr and an entry of notify.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline import reports
from pipeline.errors import ConfigError
from pipeline.notify import message, targets
from pipeline.notify.message import Context, Notice
from pipeline.notify.send import ChannelReport, deliver
from pipeline.notify.settings import NotifySettings

REPORT = "notify.json"
SCHEMA_VERSION = 1


def notice_from(
    *, summary: Path | None, release: Path | None, text: str | None, context: Context
) -> tuple[Notice | None, str]:
    """The notice of exactly one input, or None with the reason nothing is to be said."""
    given = [name for name, value in (("--summary", summary), ("--release", release)) if value]
    if text is not None:
        given.append("--message")
    if len(given) != 1:
        raise ConfigError(
            "pass exactly one of --summary FILE, --release FILE, --message TEXT"
            + (f" (got {', '.join(given)})" if given else ""),
            field="notify",
        )
    if summary is not None:
        notice = message.from_file(summary, "--summary", context)
        return notice, "" if notice else "the run was interrupted: nothing to report"
    if release is not None:
        notice = message.from_file(release, "--release", context)
        return notice, "" if notice else "nothing was released"
    if not (text or "").strip():
        raise ConfigError("the message is empty", field="--message")
    return message.text_notice(text or "", context), ""


def notify(
    notice: Notice | None,
    why_none: str,
    settings: NotifySettings,
    *,
    flags: Mapping[str, str],
    only: tuple[str, ...],
    lookup: targets.Lookup,
    hosts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Send `notice` to the chosen channels; the notify.json document."""
    channels = targets.merged(settings, flags)
    kinds = targets.chosen(channels, only)
    if notice is None:
        return _document(None, why_none, [])
    hearing = [kind for kind in kinds if channels[kind].hears(notice.event)]
    resolved = targets.targets(channels, hearing, lookup)  # every lookup before any send
    sent = deliver(notice, resolved, settings, hosts)
    skipped = [
        ChannelReport(kind, "skipped", f"not subscribed to {notice.event.value} (its `on:`)")
        for kind in kinds
        if kind not in hearing
    ]
    order = {kind: n for n, kind in enumerate(kinds)}
    every = sorted([*sent, *skipped], key=lambda report: order[report.channel])
    why = "" if kinds else "no channel configured (pipeline.yaml notify:, or the flags)"
    return _document(notice, why, every)


def _document(notice: Notice | None, why: str, channels: list[ChannelReport]) -> dict[str, Any]:
    statuses = {report.status for report in channels}
    if "sent" in statuses and "failed" in statuses:
        status = "partial"
    elif "failed" in statuses:
        status = "failed"
    elif "sent" in statuses:
        status = "sent"
    else:
        status = "nothing sent"
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "event": notice.event.value if notice else None,
        "title": notice.title if notice else None,
        "reason": why or None,
        "channels": [report.json() for report in channels],
    }


def write_report(out: Path, document: Mapping[str, Any]) -> Path:
    return reports.write_json(out / REPORT, document)


def report_lines(document: Mapping[str, Any]) -> list[str]:
    """One line per channel, for stderr; what notify.json holds, in words."""
    lines = [
        f"notify: {document['status']}" + (f": {document['reason']}" if document["reason"] else "")
    ]
    lines.extend(
        f"notify {c['channel']}: {c['status']}: {c['detail']}" for c in document["channels"]
    )
    return lines


# --- the CLI verb's flags and body (pipeline.cli registers them) -----------------------------


def add_arguments(
    parser: argparse.ArgumentParser, reference: Callable[[str], Callable[[str], object]]
) -> None:
    """The flags of `gitops-pipeline notify`; `reference` is the CLI's secret-reference type."""
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--summary", type=Path, metavar="FILE", help="a summary.json: failure or recovery"
    )
    what.add_argument("--release", type=Path, metavar="FILE", help="a release.json: the release")
    what.add_argument("--message", metavar="TEXT", help="say this, now")
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="NAME",
        help="only these channels (repeatable): alertmanager, telegram, slack, webhook",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="who it is about (repository=acme/chat, ref=main): the alert's identity",
    )
    parser.add_argument(
        "--link", action="append", default=[], metavar="NAME=URL", help="a link (run=https://...)"
    )
    for name, field in targets.FLAG_FIELDS.items():
        if field.secret:
            kind: Callable[[str], object] = reference(field.flag)
            metavar, shape = "REF", "env:NAME or file:PATH"
        elif field.attribute == "url":
            kind, metavar, shape = (
                targets.url_or_reference(field.flag),
                "URL|REF",
                "a URL or a reference",
            )
        else:
            kind, metavar, shape = str, "ID", "the value"
        parser.add_argument(
            field.flag,
            dest=name,
            type=kind,
            metavar=metavar,
            help=f"{field.kind} {field.attribute}: {shape} "
            f"(replaces notify.{field.kind}.{field.attribute} of pipeline.yaml)",
        )


def flags_of(args: argparse.Namespace) -> dict[str, str]:
    found = {}
    for name in targets.FLAG_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            # A secret flag arrives as the CLI's SecretRef: only its reference travels on.
            found[name] = str(getattr(value, "source", value))
    return found


def run_from_cli(args: argparse.Namespace, settings: NotifySettings, out: Path) -> dict[str, Any]:
    if out.exists() and not out.is_dir():
        raise ConfigError("is a file, not a directory", file=out, field="--out")
    context = Context(
        labels=dict(message.pairs(args.label, "--label")),
        links=message.pairs(args.link, "--link"),
    )
    notice, why = notice_from(
        summary=args.summary, release=args.release, text=args.message, context=context
    )
    document = notify(
        notice,
        why,
        settings,
        flags=flags_of(args),
        only=tuple(args.channel),
        lookup=targets.host_lookup,
    )
    write_report(out, document)
    return document
