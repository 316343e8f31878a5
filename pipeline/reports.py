"""Every report format CI can show, written from `Result` values.

JUnit for test tabs, SARIF for code scanning, Markdown for step summaries,
JSON for machines, a plain table for people reading logs, and annotations on the diff
(pipeline.annotations).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.annotations import (
    GITHUB_ANNOTATIONS,
    GITLAB_CODE_QUALITY,
    IsSourceFile,
    github_annotations,
    gitlab_code_quality,
)
from pipeline.model import Finding, Result, Status
from pipeline.policy import RULES_BY_ID
from pipeline.stages.conftest import rule_id

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def overall(results: Sequence[Result]) -> Status:
    if any(r.status is Status.ERROR for r in results):
        return Status.ERROR
    if any(r.failed for r in results):
        return Status.FAILED
    if results and all(r.status is Status.SKIPPED for r in results):
        return Status.SKIPPED
    return Status.PASSED


def finding_json(finding: Finding) -> dict[str, Any]:
    data = {
        "check": finding.check,
        "status": finding.status.value,
        "message": finding.message,
        "file": finding.file,
        "line": finding.line,
        "rule": finding.rule,
        "chart": finding.chart,
        "environment": finding.environment,
        "resource": finding.resource,
        "container": finding.container,
        "waiver": finding.waiver,
    }
    return {k: v for k, v in data.items() if v is not None}


# summary.json's layout (README "Output"): bumped when a field changes meaning or goes away.
SUMMARY_SCHEMA_VERSION = 1


def summary_json(results: Sequence[Result], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "status": overall(results).value,
        "stages": [
            {
                "stage": r.stage,
                "status": r.status.value,
                "summary": r.summary,
                "duration_seconds": round(r.duration, 3),
                "artifacts": list(r.artifacts),
                "findings": [finding_json(f) for f in r.findings if f.status is not Status.PASSED],
                "checked": sum(1 for f in r.findings if f.status is Status.PASSED),
                "steps": len(r.steps),
                # Replayed from the local step cache: their inputs had not changed.
                "cached_steps": sum(1 for step in r.steps if step.cached),
            }
            for r in results
        ],
        **extra,
    }


_ICON = {
    Status.PASSED: "✅",
    Status.FAILED: "❌",
    Status.ERROR: "💥",
    Status.SKIPPED: "⏭️",
    Status.WARNING: "⚠️",
    Status.WAIVED: "🏳️",
}


def summary_markdown(results: Sequence[Result], title: str, limit: int = 50) -> str:
    lines = [
        f"## {title}: {overall(results).value}",
        "",
        "| stage | status | summary |",
        "|---|---|---|",
    ]
    lines += [f"| {r.stage} | {_ICON[r.status]} {r.status.value} | {r.summary} |" for r in results]
    problems = [f for r in results for f in r.findings if f.status.failed]
    if problems:
        lines += ["", "### Problems", ""]
        for finding in problems[:limit]:
            where = finding.location()
            lines.append(f"- **{finding.check}** `{where}`: {finding.message}")
        if len(problems) > limit:
            lines.append(f"- … and {len(problems) - limit} more (see summary.json)")
    for status, heading in ((Status.WARNING, "Warnings"), (Status.WAIVED, "Waived")):
        noted = [f for r in results for f in r.findings if f.status is status]
        if noted:
            lines += ["", f"### {heading}", ""]
            for finding in noted[:limit]:
                why = f" (waived: {finding.waiver})" if finding.waiver else ""
                lines.append(
                    f"- **{finding.check}** `{finding.location()}`: {finding.message}{why}"
                )
            if len(noted) > limit:
                lines.append(f"- … and {len(noted) - limit} more (see summary.json)")
    return "\n".join(lines) + "\n"


def junit_xml(results: Sequence[Result]) -> str:
    suites = ET.Element("testsuites", name="gitops-pipeline")
    for result in results:
        cases = list(result.findings) or [
            Finding(check=result.stage, message=result.summary, status=result.status)
        ]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=result.stage,
            tests=str(len(cases)),
            failures=str(sum(1 for c in cases if c.status is Status.FAILED)),
            errors=str(sum(1 for c in cases if c.status is Status.ERROR)),
            skipped=str(sum(1 for c in cases if c.status is Status.SKIPPED)),
            time=f"{result.duration:.3f}",
        )
        for case in cases:
            classname = ".".join(p for p in (result.stage, case.chart, case.environment) if p)
            name = case.resource or case.file or case.rule or case.check
            if case.container:
                name = f"{name} container {case.container}"
            element = ET.SubElement(suite, "testcase", classname=classname, name=name)
            if case.status is Status.FAILED:
                ET.SubElement(element, "failure", message=case.message).text = case.location()
            elif case.status is Status.ERROR:
                ET.SubElement(element, "error", message=case.message).text = case.location()
            elif case.status is Status.SKIPPED:
                ET.SubElement(element, "skipped", message=case.message)
            elif case.status is Status.WAIVED:
                ET.SubElement(
                    element, "skipped", message=f"waived: {case.waiver}"
                ).text = case.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def policy_rows(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [finding_json(f) for f in findings if f.check == "policy"]


def policy_table(findings: Sequence[Finding]) -> str:
    rows = [f for f in findings if f.check == "policy" and f.status is not Status.PASSED]
    checked = sum(1 for f in findings if f.check == "policy" and f.status is Status.PASSED)
    header = ("STATUS", "CHART/ENV", "RESOURCE", "CONTAINER", "MESSAGE")
    table = [header] + [
        (
            "WARN" if f.status is Status.WARNING else f.status.value.upper(),
            f"{f.chart or '-'}/{f.environment or '-'}",
            f.resource or "-",
            f.container or "-",
            f.message,
        )
        for f in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        for row in table
    ]
    lines.append(f"{len(rows)} problem(s); {checked} resource(s) passed every policy")
    return "\n".join(lines) + "\n"


_SARIF_LEVEL = {Status.FAILED: "error", Status.ERROR: "error", Status.WARNING: "warning"}


def sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    """Policy findings as SARIF 2.1.0: rule metadata from the pack, waivers as suppressions."""
    reported = [
        f
        for f in findings
        if f.check == "policy" and (f.status.failed or f.status in {Status.WARNING, Status.WAIVED})
    ]
    rules = []
    for rule_name in sorted({f.rule or rule_id(f.message) for f in reported}):
        known = RULES_BY_ID.get(rule_name)
        rules.append(
            {
                "id": rule_name,
                "name": known.title if known else rule_name,
                "shortDescription": {"text": known.title if known else rule_name},
                "help": {"text": known.remediation if known else rule_name},
                "defaultConfiguration": {
                    "level": "warning" if known and known.severity == "warn" else "error"
                },
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "gitops-pipeline policy",
                        "informationUri": "https://www.conftest.dev/",
                        "rules": rules,
                    }
                },
                "results": [_sarif_result(f) for f in reported],
            }
        ],
    }


def _sarif_result(finding: Finding) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.rule or rule_id(finding.message),
        "level": _SARIF_LEVEL.get(finding.status, "warning"),
        "message": {"text": f"[{finding.chart}/{finding.environment}] {finding.message}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": finding.file or "rendered.yaml"},
                    "region": {"startLine": finding.line or 1},
                }
            }
        ],
    }
    if finding.status is Status.WAIVED:
        result["suppressions"] = [{"kind": "external", "justification": finding.waiver or ""}]
    return result


def write_text(path: Path, text: str) -> Path:
    """Written beside its place and renamed into it: a reader (a CI upload, the next run)
    sees the old report or the new one, never half of one, even if the run dies mid-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        staging.write_text(text, encoding="utf-8")
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def write_json(path: Path, data: object) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_summaries(
    out: Path, source: Path, results: Sequence[Result], title: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """The reports every check writes, in one place: summary.json (returned), summary.md,
    junit.xml, and the findings on the diff for GitHub and GitLab."""
    summary = summary_json(results, extra)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", summary_markdown(results, title))
    write_text(out / "junit.xml", junit_xml(results))
    in_source = source_file_check(source)
    write_text(out / GITHUB_ANNOTATIONS, github_annotations(results, in_source))
    write_json(out / GITLAB_CODE_QUALITY, gitlab_code_quality(results, in_source))
    return summary


def source_file_check(source: Path) -> IsSourceFile:
    """Whether a finding's path is a file of the repository, where a diff can show it."""
    root = source.resolve()

    def is_source_file(path: str) -> bool:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts:
            return False
        return (root / pure).is_file()

    return is_source_file
