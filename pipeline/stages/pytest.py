"""pytest with JUnit XML and coverage (XML and a total) written to the artifacts."""

from __future__ import annotations

import dataclasses
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from pipeline.model import Finding, Status, Step, joined, out, src
from pipeline.stages import python_env, tool_output

NO_TESTS_COLLECTED = 5


def slug(project: str, python: str | None = None) -> str:
    name = "root" if project in {"", "."} else project.replace("/", "-")
    return f"{name}-py{python}" if python else name


def junit_path(project: str, python: str | None = None) -> str:
    return f"pytest/{slug(project, python)}/junit.xml"


def coverage_path(project: str, python: str | None = None) -> str:
    return f"pytest/{slug(project, python)}/coverage.xml"


def step(
    source: Path, project: str, python: str | None = None, *, per_test_seconds: float | None = None
) -> Step:
    setup, argv0 = python_env.setup(source, project, "pytest", python)
    suffix = f"@py{python}" if python else ""
    # pytest-timeout fails a test that runs longer, names it and goes on with the others.
    per_test = () if per_test_seconds is None else (f"--timeout={per_test_seconds:g}",)
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
            *per_test,
        ),
        workdir=src(project),
        # The source may be read-only (a container mount): coverage data goes to OUT.
        env=(("COVERAGE_FILE", out(f"pytest/{slug(project, python)}/.coverage")),),
        inputs=(src(project),),
        outputs=(junit_path(project, python), coverage_path(project, python)),
        container_setup=setup,
        container_argv0=argv0,
        # As Ctrl-C does: pytest stops where it is and still writes the JUnit of what finished.
        stop_signal="SIGINT",
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


def parse(
    project: str, junit_xml: str | None, coverage_xml: str | None, roots: tuple[str, ...] = ()
) -> TestReport:
    """Tests and failures from the JUnit report, and the line coverage in percent.

    A report that is not well-formed XML, or not that kind of report, is an OutputError.
    `roots` are where the repository is (on the host, in a container): a module that
    cannot be imported is named relative to it.
    """
    prefix = "" if project in {"", "."} else f"{project}/"
    failures: list[Finding] = []
    tests = 0
    if junit_xml:
        root = _xml(junit_xml, "junit.xml", "JUnit", _JUNIT_ROOTS)
        for case in root.iter("testcase"):
            if case.get("name") is None:
                continue  # the test an interrupt stopped: pytest records it without a name
            tests += 1
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is None:
                continue
            file = case.get("file")
            line = case.get("line")
            finding = Finding(
                check="pytest",
                message=f"{case.get('classname')}::{case.get('name')}: "
                f"{(problem.get('message') or '').strip()[:500]}",
                file=f"{prefix}{file}" if file else None,
                line=int(line) + 1 if line and _LINE.fullmatch(line) else None,
                rule=problem.tag,
                status=Status.FAILED,
            )
            if problem.get("message") == "collection failure":
                finding = _collection_failure(finding, problem.text or "", roots)
            failures.append(finding)
    percent = _coverage_percent(coverage_xml) if coverage_xml else None
    return TestReport(tests, failures, percent)


# pytest's last words on an interrupt (SIGINT at a time limit): where the code was.
_INTERRUPTED_AT = re.compile(
    r"^(?P<file>\S.*?):(?P<line>[0-9]{1,9}): KeyboardInterrupt$", re.MULTILINE
)


def interrupted_at(output: str, roots: tuple[str, ...]) -> tuple[str, int] | None:
    """The file and line pytest was running when it was interrupted, relative to a root."""
    found = None
    for found in _INTERRUPTED_AT.finditer(output):  # noqa: B007 - the last one is pytest's
        pass
    if found is None:
        return None
    return tool_output.under_root(found["file"], roots) or found["file"], int(found["line"])


# A module that cannot be compiled: pytest's traceback ends with the compiler's own location.
_COMPILE_ERROR_AT = re.compile(
    r'^E\s+File "(?P<file>[^"]+)", line (?P<line>[0-9]{1,9})$', re.MULTILINE
)
_CAUSE = re.compile(r"^E\s+(?P<cause>\w+(?:Error|Exception)\b.*)$", re.MULTILINE)


def _collection_failure(finding: Finding, traceback: str, roots: tuple[str, ...]) -> Finding:
    """A test module pytest could not import: the error that stopped it, where it is."""
    causes = _CAUSE.findall(traceback)
    message = finding.message if not causes else f"{finding.message}: {causes[-1].strip()[:300]}"
    located = list(_COMPILE_ERROR_AT.finditer(traceback))
    if not located:
        return dataclasses.replace(finding, message=message)
    file, line = located[-1]["file"], int(located[-1]["line"])
    inside = tool_output.under_root(file, roots)
    if inside is None:  # outside the repository: said in the message, the test file stays
        return dataclasses.replace(finding, message=f"{message} ({file}:{line})")
    return dataclasses.replace(finding, message=message, file=inside, line=line)
