"""What a notice says, built from summary.json, release.json or a text.

The text is plain and channel-neutral (each channel escapes and shapes it); what failed is
capped so a run with hundreds of findings still makes a message worth reading, and the
message says how much it left out and where the rest is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.notify.settings import Event

MAX_FINDINGS = 10
MAX_LINE = 300  # characters of one finding's message
MAX_MESSAGE_LINES = 100  # of a `--message` text
FAILED = {"failed", "error"}
PASSED = {"passed", "skipped"}


@dataclass(frozen=True)
class Notice:
    event: Event
    title: str
    lines: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (name, URL)
    # Who this is about (repository, ref): the identity of an alert, so a recovery resolves
    # exactly the alert a failure raised. Never anything that changes from run to run.
    labels: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)  # structured, for the webhook

    def text_lines(self) -> tuple[str, ...]:
        """The lines every channel shows: who it is about, then the lines."""
        about = ", ".join(f"{key}: {value}" for key, value in self.labels.items())
        return (about, *self.lines) if about else self.lines


@dataclass(frozen=True)
class Context:
    labels: Mapping[str, str] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()


def _load(path: Path, flag: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", file=path, field=flag) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"not JSON: {exc}", file=path, field=flag) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", file=path, field=flag)
    return data


def clip(text: str, limit: int = MAX_LINE) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def where(finding: Mapping[str, Any]) -> str:
    """chart/env file:line resource, as much of it as the finding knows."""
    parts = [str(finding[k]) for k in ("chart", "environment") if finding.get(k)]
    place = "/".join(parts)
    if finding.get("file"):
        file = str(finding["file"])
        if finding.get("line") is not None:
            file = f"{file}:{finding['line']}"
        place = f"{place} {file}" if place else file
    if finding.get("resource"):
        place = f"{place} {finding['resource']}" if place else str(finding["resource"])
    return place


def _failed_lines(stages: list[Any], lines: list[str]) -> tuple[int, int]:
    """Each failed stage and its first failed findings: (findings shown, findings left out)."""
    shown = left = 0
    for stage in stages:
        if not isinstance(stage, dict) or stage.get("status") not in FAILED:
            continue
        stage_name = str(stage.get("stage", "?"))
        lines.append(f"{stage_name}: {stage.get('status')}: {clip(str(stage.get('summary', '')))}")
        for finding in stage.get("findings") or ():
            if not isinstance(finding, dict) or finding.get("status") not in FAILED:
                continue
            if shown == MAX_FINDINGS:
                left += 1
                continue
            shown += 1
            place = where(finding)
            rule = f" [{finding['rule']}]" if finding.get("rule") else ""
            message = clip(str(finding.get("message", "")))
            lines.append(f"- {stage_name}{rule} {place}: {message}" if place else f"- {message}")
    if left:
        lines.append(f"… and {left} more findings: see summary.json")
    return shown, left


def summary_notice(data: Mapping[str, Any], context: Context, *, name: str) -> Notice | None:
    """A failure or a recovery from summary.json; None for an interrupted run."""
    status = data.get("status")
    stages = data.get("stages")
    if not isinstance(status, str) or not isinstance(stages, list):
        raise ConfigError("not a summary.json: no `status` and `stages`", file=name)
    if status in PASSED:
        event = Event.RECOVERY
    elif status in FAILED:
        event = Event.FAILURE
    else:
        return None  # interrupted: cancelled by a newer run, nothing to tell
    lines: list[str] = []
    if data.get("stopped"):
        lines.append(f"stopped: {clip(str(data['stopped']))}")
    shown, left = _failed_lines(stages, lines)
    verdict = "failed" if event is Event.FAILURE else "passed"
    details = {"status": status, "findings_shown": shown, "findings_left_out": left}
    return Notice(
        event,
        f"gitops-pipeline: {verdict}",
        tuple(lines),
        context.links,
        context.labels,
        details,
    )


def release_notice(data: Mapping[str, Any], context: Context, *, name: str) -> Notice | None:
    """A release from release.json (what `release` writes); None when nothing was released."""
    if not isinstance(data.get("released"), bool) or not isinstance(data.get("pushed"), list):
        raise ConfigError("not a release.json: no `released` and `pushed`", file=name)
    if not data["released"]:
        return None
    version, tag = data.get("version"), data.get("tag")
    refs = [p for p in data["pushed"] if isinstance(p, dict)]
    digests = sorted({str(p.get("digest")) for p in refs if p.get("digest")})
    image = str(refs[0].get("ref", "")).rsplit(":", 1)[0] if refs else ""
    lines = [f"version {version}", f"tag {tag}"]
    if image:
        lines.append(f"image {image}")
        tags = ", ".join(str(p.get("ref", "")).rsplit(":", 1)[-1] for p in refs)
        lines.append(f"tags {tags}")
    lines.extend(f"digest {digest}" for digest in digests)
    verb = "republished" if data.get("republished") else "released"
    details = {"version": version, "tag": tag, "image": image, "digests": digests}
    return Notice(
        Event.RELEASE,
        f"gitops-pipeline: {verb} {version}",
        tuple(lines),
        context.links,
        context.labels,
        details,
    )


def text_notice(text: str, context: Context) -> Notice:
    lines = text.strip().splitlines() or [""]
    kept = [clip(line, 1000) for line in lines[:MAX_MESSAGE_LINES]]
    if len(lines) > MAX_MESSAGE_LINES:
        kept.append(f"… {len(lines) - MAX_MESSAGE_LINES} more lines left out")
    return Notice(Event.MESSAGE, "gitops-pipeline", tuple(kept), context.links, context.labels)


def from_file(path: Path, flag: str, context: Context) -> Notice | None:
    data = _load(path, flag)
    build = summary_notice if flag == "--summary" else release_notice
    return build(data, context, name=str(path))


def pairs(items: Sequence[str], flag: str) -> tuple[tuple[str, str], ...]:
    """NAME=VALUE flags, in order."""
    found = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"expected NAME=VALUE, got {item!r}", field=flag)
        found.append((key.strip(), value.strip()))
    return tuple(found)
