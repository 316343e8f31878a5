"""Every report format CI can show, written from `Result` values.

JUnit for test tabs, SARIF for code scanning, Markdown for step summaries,
JSON for machines and a plain table for people reading logs.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.model import Finding, Result, Status
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
    }
    return {k: v for k, v in data.items() if v is not None}


def summary_json(results: Sequence[Result], extra: dict[str, Any]) -> dict[str, Any]:
    return {
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
            }
            for r in results
        ],
        **extra,
    }


_ICON = {Status.PASSED: "✅", Status.FAILED: "❌", Status.ERROR: "💥", Status.SKIPPED: "⏭️"}


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
            "WARN" if f.status is Status.PASSED else f.status.value.upper(),
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


def sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    problems = [f for f in findings if f.check == "policy" and f.status.failed]
    rules = sorted({f.rule or rule_id(f.message) for f in problems})
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "gitops-pipeline policy",
                        "informationUri": "https://www.conftest.dev/",
                        "rules": [{"id": r, "shortDescription": {"text": r}} for r in rules],
                    }
                },
                "results": [
                    {
                        "ruleId": f.rule or rule_id(f.message),
                        "level": "error",
                        "message": {"text": f"[{f.chart}/{f.environment}] {f.message}"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": f.file or "rendered.yaml"},
                                    "region": {"startLine": f.line or 1},
                                }
                            }
                        ],
                    }
                    for f in problems
                ],
            }
        ],
    }


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, data: object) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
