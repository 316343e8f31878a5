"""pytest with JUnit XML and coverage (XML and a total) written to the artifacts."""

from __future__ import annotations

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


def parse(project: str, junit_xml: str | None, coverage_xml: str | None) -> TestReport:
    prefix = "" if project in {"", "."} else f"{project}/"
    failures: list[Finding] = []
    tests = 0
    if junit_xml:
        root = ET.fromstring(junit_xml)  # noqa: S314 - our own pytest's report
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
                    line=int(line) + 1 if line and line.isdigit() else None,
                    rule=problem.tag,
                    status=Status.FAILED,
                )
            )
    percent = None
    if coverage_xml:
        rate = ET.fromstring(coverage_xml).get("line-rate")  # noqa: S314
        percent = round(float(rate) * 100, 2) if rate is not None else None
    return TestReport(tests, failures, percent)
