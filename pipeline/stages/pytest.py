"""pytest with JUnit XML and coverage (XML and a total) written to the artifacts."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from pipeline.model import Finding, Status, Step, joined, out, src
from pipeline.stages import python_env

NO_TESTS_COLLECTED = 5


def slug(project: str, python: str | None = None) -> str:
    name = "root" if project in {"", "."} else project.replace("/", "-")
    return f"{name}-py{python}" if python else name


def junit_path(project: str, python: str | None = None) -> str:
    return f"pytest/{slug(project, python)}/junit.xml"


def coverage_path(project: str, python: str | None = None) -> str:
    return f"pytest/{slug(project, python)}/coverage.xml"


def step(source: Path, project: str, python: str | None = None) -> Step:
    setup, argv0 = python_env.setup(source, project, "pytest", python)
    suffix = f"@py{python}" if python else ""
    return Step(
        name=f"pytest:{project}{suffix}",
        tool="pytest",
        args=(
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "junit_family=xunit1",  # xunit1 records each test's file and line
            joined("--junitxml=", out(junit_path(project, python))),
            "--cov",
            joined("--cov-report=xml:", out(coverage_path(project, python))),
            "--cov-report=term",
        ),
        workdir=src(project),
        # The source may be read-only (a container mount): coverage data goes to OUT.
        env=(("COVERAGE_FILE", out(f"pytest/{slug(project, python)}/.coverage")),),
        inputs=(src(project),),
        outputs=(junit_path(project, python), coverage_path(project, python)),
        container_setup=setup,
        container_argv0=argv0,
    )


@dataclass(frozen=True)
class TestReport:
    tests: int
    failures: list[Finding]
    coverage_percent: float | None


class OutputError(ValueError):
    """A JUnit or coverage report that cannot be read: cut short, or not such a report."""


_JUNIT_ROOTS = frozenset({"testsuites", "testsuite"})
# A line number of more digits than any file has is not one (and int() refuses 4300 digits).
_LINE = re.compile(r"[0-9]{1,9}")


def _xml(text: str, report: str, kind: str, roots: frozenset[str]) -> ET.Element:
    try:
        # Our own pytest's report; expat (>= 2.4) refuses entity expansion bombs.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise OutputError(f"{report} is not well-formed XML ({exc})") from None
    except ValueError as exc:  # text Python cannot hand to expat as UTF-8 (lone surrogates)
        raise OutputError(f"{report} cannot be read as XML ({exc})") from None
    if root.tag not in roots:
        raise OutputError(
            f"{report} is not a {kind} report: its root element is <{str(root.tag)[:100]}>"
        )
    return root


def _coverage_percent(coverage_xml: str) -> float | None:
    rate = _xml(coverage_xml, "coverage.xml", "coverage", frozenset({"coverage"})).get("line-rate")
    if rate is None:
        return None
    try:
        fraction = float(rate)
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction <= 1:  # NaN fails this too
        raise OutputError(f"coverage.xml: line-rate {rate[:100]!r} is not a fraction from 0 to 1")
    return round(fraction * 100, 2)


def parse(project: str, junit_xml: str | None, coverage_xml: str | None) -> TestReport:
    """Tests and failures from the JUnit report, and the line coverage in percent.

    A report that is not well-formed XML, or not that kind of report, is an OutputError.
    """
    prefix = "" if project in {"", "."} else f"{project}/"
    failures: list[Finding] = []
    tests = 0
    if junit_xml:
        root = _xml(junit_xml, "junit.xml", "JUnit", _JUNIT_ROOTS)
        for case in root.iter("testcase"):
            tests += 1
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is None:
                continue
            file = case.get("file")
            line = case.get("line")
            failures.append(
                Finding(
                    check="pytest",
                    message=f"{case.get('classname')}::{case.get('name')}: "
                    f"{(problem.get('message') or '').strip()[:500]}",
                    file=f"{prefix}{file}" if file else None,
                    line=int(line) + 1 if line and _LINE.fullmatch(line) else None,
                    rule=problem.tag,
                    status=Status.FAILED,
                )
            )
    percent = _coverage_percent(coverage_xml) if coverage_xml else None
    return TestReport(tests, failures, percent)
