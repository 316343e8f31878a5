"""Findings where reviewers look: annotations on a GitHub diff, GitLab's Code Quality report.

Both are built from the same `Result` values as every other report. A finding lands on the
diff only when it names a file of the repository (the caller says which paths are), so a
report never points at a rendered manifest or a path in a container. Findings reported
alike by several chart environments (the same template line fails in dev and prd) are one
annotation naming every environment: each counts against GitHub's per-step cap only once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.model import Finding, Result, Status

GITHUB_ANNOTATIONS = "github-annotations.txt"
GITLAB_CODE_QUALITY = "gl-code-quality-report.json"

# GitHub shows at most 10 error and 10 warning annotations per step and drops the rest.
GITHUB_ANNOTATION_LIMIT = 10

# Code Climate's scale as GitLab reads it (info, minor, major, critical, blocker). An error
# outranks a failure: the check could not reach a verdict, so nothing behind it was checked.
CODE_QUALITY_SEVERITY = {
    Status.ERROR: "critical",
    Status.FAILED: "major",
    Status.WARNING: "minor",
}
_LEVEL = {Status.ERROR: "error", Status.FAILED: "error", Status.WARNING: "warning"}

IsSourceFile = Callable[[str], bool]


def escape_data(text: str) -> str:
    """A workflow command's message: GitHub decodes these three, so a message stays one line."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also `:` and `,`, which end a value."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Spot:
    """Findings that read the same at one line of one repository file, from any environment."""

    status: Status  # the most severe of them: ERROR, FAILED or WARNING
    check: str
    rule: str | None
    file: str
    line: int
    resource: str | None
    message: str
    environments: tuple[str, ...]  # chart/environment of each

    @property
    def title(self) -> str:
        return " ".join(part for part in (self.check, self.rule) if part)

    @property
    def text(self) -> str:
        message = self.message
        if self.resource and not message.startswith(self.resource):
            message = f"{self.resource}: {message}"
        # Sorted: tools report concurrent files in whatever order they finish.
        shown = ", ".join(sorted(self.environments))
        return f"{message} [{shown}]" if self.environments else message

    @property
    def fingerprint(self) -> str:
        """The same problem at the same place has the same fingerprint in every run.

        Environments are left out on purpose: a problem found in one more environment is
        still the problem GitLab already knows, not a new one.
        """
        parts = (self.check, self.rule or "", self.file, str(self.line), self.resource or "")
        return hashlib.sha256("\0".join((*parts, self.message)).encode()).hexdigest()


_SEVERITY_ORDER = (Status.WARNING, Status.FAILED, Status.ERROR)


def spots(
    findings: Iterable[Finding], is_source_file: IsSourceFile
) -> tuple[list[Spot], list[Finding]]:
    """Reportable findings merged by place, and those with no repository file to point at.

    Only failures, errors and warnings are reportable: passed and waived findings are not.
    A finding without a line is placed on line 1, as GitLab requires a line.
    """
    merged: dict[tuple[object, ...], Spot] = {}
    unplaced: list[Finding] = []
    for finding in findings:
        if finding.status not in _LEVEL:
            continue
        if not finding.file or not is_source_file(finding.file):
            unplaced.append(finding)
            continue
        line = finding.line or 1
        key = (finding.check, finding.rule, finding.file, line, finding.resource, finding.message)
        environment = "/".join(p for p in (finding.chart, finding.environment) if p)
        known = merged.get(key)
        if known is None:
            merged[key] = Spot(
                status=finding.status,
                check=finding.check,
                rule=finding.rule,
                file=finding.file,
                line=line,
                resource=finding.resource,
                message=finding.message,
                environments=(environment,) if environment else (),
            )
            continue
        status = max(known.status, finding.status, key=_SEVERITY_ORDER.index)
        environments = known.environments
        if environment and environment not in environments:
            environments = (*environments, environment)
        merged[key] = replace(known, status=status, environments=environments)
    return list(merged.values()), unplaced


def _plain(text: str) -> list[str]:
    """Log lines that GitHub never reads as a command (the runner trims, then looks for `::`)."""
    first, *rest = text.splitlines() or [""]
    return [first, *(f"  | {line}" for line in rest)]


def _unplaced_line(finding: Finding) -> list[str]:
    where = finding.location()
    at = f" {where}" if where else ""
    return _plain(f"{finding.status.value} {finding.check}{at}: {finding.message}")


def _spot_line(spot: Spot) -> list[str]:
    return _plain(f"{spot.status.value} {spot.title} {spot.file}:{spot.line}: {spot.text}")


def _command(spot: Spot) -> str:
    properties = ",".join(
        f"{name}={escape_property(value)}"
        for name, value in (("file", spot.file), ("line", str(spot.line)), ("title", spot.title))
    )
    return f"::{_LEVEL[spot.status]} {properties}::{escape_data(spot.text)}"


def github_annotations(
    results: Sequence[Result],
    is_source_file: IsSourceFile,
    limit: int = GITHUB_ANNOTATION_LIMIT,
) -> str:
    """Workflow commands, one log group per stage, for a step to print.

    Failures and errors become error annotations, warnings warning annotations, on the file
    and line they name. Past `limit` of a level, and for findings without a repository file,
    the finding is a plain line in its stage's group; a last line counts what was not
    annotated.
    """
    shown = {"error": 0, "warning": 0}
    left_out = {"error": 0, "warning": 0}
    lines: list[str] = []
    for result in results:
        lines.append(f"::group::{escape_data(f'{result.stage}: {result.status.value}')}")
        lines += _plain(f"{result.stage}: {result.summary}")
        placed, unplaced = spots(result.findings, is_source_file)
        for spot in placed:
            level = _LEVEL[spot.status]
            if shown[level] < limit:
                shown[level] += 1
                lines.append(_command(spot))
            else:
                left_out[level] += 1
                lines += _spot_line(spot)
        for finding in unplaced:
            lines += _unplaced_line(finding)
        lines.append("::endgroup::")
    if any(left_out.values()):
        lines.append(
            f"{left_out['error']} more error(s) and {left_out['warning']} more warning(s) than "
            "GitHub shows per step are listed above without an annotation; every finding is in "
            "summary.json"
        )
    return "\n".join(lines) + "\n"


def gitlab_code_quality(
    results: Sequence[Result], is_source_file: IsSourceFile
) -> list[dict[str, Any]]:
    """GitLab's Code Quality report: each finding on a repository file, once per place.

    GitLab shows one issue per fingerprint, so findings alike in several environments are
    one issue naming them all.
    """
    placed, _ = spots((f for r in results for f in r.findings), is_source_file)
    return [
        {
            "description": f"{spot.title}: {spot.text}",
            "check_name": "/".join(part for part in (spot.check, spot.rule) if part),
            "fingerprint": spot.fingerprint,
            "severity": CODE_QUALITY_SEVERITY[spot.status],
            "location": {"path": spot.file, "lines": {"begin": spot.line}},
        }
        for spot in placed
    ]
