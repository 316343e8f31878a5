"""The Python stages of a pull request: lint (ruff), typecheck (mypy) and test (pytest).

Each runs once per Python project (`python.paths` in pipeline.yaml, else the
source root when it has a pyproject.toml), from the project's own directory so
its configuration applies. Results are values; nothing here decides exit codes.
"""

from __future__ import annotations

import configparser
import time
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

from pipeline import reports
from pipeline.errors import ConfigError
from pipeline.limits import DEFAULT_STEP_SECONDS, per_test_limit
from pipeline.model import (
    CONTAINER_MOUNTS,
    Finding,
    Result,
    Root,
    Status,
    StepResult,
    killed_by_signal,
)
from pipeline.run import Run, gather
from pipeline.stages import mypy, pytest, ruff


class NoPythonProjectError(ConfigError):
    """The source has no Python project at all (a charts-only repository)."""


def python_projects(run: Run) -> list[str]:
    paths = list(run.config.python.paths)
    if not paths:
        if (run.source / "pyproject.toml").is_file():
            _check_pyproject(run.source / "pyproject.toml")
            return ["."]
        raise NoPythonProjectError(
            "no Python project found: the source has no pyproject.toml and python.paths "
            "is not set in pipeline.yaml",
            file=run.source,
        )
    for path in paths:
        if not (run.source / path).is_dir():
            raise ConfigError(
                "Python project directory does not exist",
                file=run.config.file or run.source,
                field=f"python.paths ({path})",
            )
    for path in paths:
        _check_pyproject(run.source / path / "pyproject.toml")
    return paths


def _check_pyproject(pyproject: Path) -> None:
    """A broken pyproject.toml is the project's configuration error (exit 2) in every stage,
    not whatever each tool makes of it."""
    if not pyproject.is_file():
        return
    try:
        tomllib.loads(pyproject.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text (byte {exc.start})", file=pyproject) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=pyproject) from None


def mypy_targets(run: Run, project: str) -> tuple[str, ...]:
    """pipeline.yaml's targets, else none (mypy reads `files` from its config), else `.`."""
    if run.config.python.mypy_targets:
        return run.config.python.mypy_targets
    pyproject = run.source / project / "pyproject.toml"
    if pyproject.is_file():
        try:
            settings = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", file=pyproject) from None
        if settings.get("tool", {}).get("mypy", {}).get("files"):
            return ()
    for name in ("mypy.ini", ".mypy.ini", "setup.cfg"):
        config = run.source / project / name
        if config.is_file() and _ini_mypy_files(config):
            return ()
    return (".",)


def _ini_mypy_files(path: Path) -> bool:
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"invalid INI: {exc}", file=path) from None
    return parser.has_option("mypy", "files")


def _status(findings: Sequence[Finding], steps: Sequence[StepResult]) -> Status:
    if any(f.status is Status.ERROR for f in findings):
        return Status.ERROR
    if any(f.status.failed for f in findings) or any(not s.ok for s in steps):
        return Status.FAILED
    return Status.PASSED


def _killed(step: StepResult, check: str) -> list[Finding]:
    """An error finding when a signal ended the tool: its output is cut short, so not read."""
    message = killed_by_signal(step)
    return [] if message is None else [Finding(check=check, message=message, status=Status.ERROR)]


def _crashed(step: StepResult, check: str) -> Finding:
    detail = (step.stderr or step.stdout).strip()[-800:]
    return Finding(
        check=check,
        message=f"{step.step.tool} exited {step.exit_code} without findings: {detail}",
        status=Status.ERROR,
    )


async def lint(run: Run) -> Result:
    started = time.monotonic()
    projects = python_projects(run)
    jobs: list[Callable[[], Awaitable[StepResult]]] = []
    for project in projects:
        jobs.append(partial(run.runner.run, ruff.check_step(run.source, project)))
        jobs.append(partial(run.runner.run, ruff.format_step(run.source, project)))
    steps = await gather(jobs, run.concurrency)
    findings: list[Finding] = []
    diffs: list[str] = []
    for index, project in enumerate(projects):
        check, fmt = steps[2 * index], steps[2 * index + 1]
        try:
            found = _killed(check, "ruff") or ruff.check_findings(
                project, check.stdout, str(run.source)
            )
        except ruff.OutputError as exc:
            found = [Finding(check="ruff", message=str(exc), status=Status.ERROR)]
        if not check.ok and not found:
            found = [_crashed(check, "ruff")]
        findings += found
        formatting = _killed(fmt, "ruff-format") or ruff.format_findings(project, fmt.stdout)
        if not fmt.ok and not formatting:
            formatting = [_crashed(fmt, "ruff-format")]
        findings += formatting
        if fmt.stdout.strip():
            diffs.append(fmt.stdout)
    reports.write_text(run.out / "ruff-format.diff", "".join(diffs))
    problems = sum(1 for f in findings if f.status.failed)
    summary = f"{problems} lint/format problem(s) in {', '.join(projects)}"
    return Result(
        "lint",
        _status(findings, steps),
        summary,
        tuple(findings),
        tuple(steps),
        ("ruff-format.diff",),
        time.monotonic() - started,
    )


async def typecheck(run: Run) -> Result:
    started = time.monotonic()
    projects = python_projects(run)
    steps = await gather(
        [partial(run.runner.run, mypy.step(run.source, p, mypy_targets(run, p))) for p in projects],
        run.concurrency,
    )
    findings: list[Finding] = []
    for project, step in zip(projects, steps, strict=True):
        try:
            found = _killed(step, "mypy") or mypy.findings(project, step.stdout)
        except mypy.OutputError as exc:
            found = [Finding(check="mypy", message=str(exc), status=Status.ERROR)]
        if not step.ok and not found:
            found = [_crashed(step, "mypy")]
        findings += found
    summary = f"{len(findings)} type error(s) in {', '.join(projects)}"
    return Result(
        "typecheck",
        _status(findings, steps),
        summary,
        tuple(findings),
        tuple(steps),
        duration=time.monotonic() - started,
    )


def _read(path: Path) -> str | None:
    # A report cut short mid-character is still read: the XML parser says what is wrong.
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


def _matrix(run: Run) -> list[tuple[str, str | None]]:
    projects = python_projects(run)
    if not run.python_versions:
        return [(project, None) for project in projects]
    if run.on_host:
        raise ConfigError(
            "a Python version matrix needs the Dagger runner (each version in its own "
            "container); locally the tests run with this interpreter",
            field="--python",
        )
    return [(project, python) for project in projects for python in run.python_versions]


async def test(run: Run) -> Result:
    started = time.monotonic()
    matrix = _matrix(run)
    per_test = per_test_limit(run.timeouts, DEFAULT_STEP_SECONDS)
    steps = await gather(
        [
            partial(run.runner.run, pytest.step(run.source, p, python, per_test_seconds=per_test))
            for p, python in matrix
        ],
        run.concurrency,
    )
    findings: list[Finding] = []
    artifacts: list[str] = []
    totals: list[str] = []
    for (project, python), step in zip(matrix, steps, strict=True):
        paths = (pytest.junit_path(project, python), pytest.coverage_path(project, python))
        junit = _read(run.out / paths[0])
        report, problems = _test_report(run, project, step, junit, _read(run.out / paths[1]))
        artifacts += [p for p in paths if (run.out / p).is_file()]
        findings += report.failures
        findings += problems or _test_verdicts(
            run, project, step, report, has_junit=junit is not None
        )
        coverage = (
            f", coverage {report.coverage_percent:.1f}%"
            if report.coverage_percent is not None
            else ""
        )
        label = f"{project} (Python {python})" if python else project
        totals.append(f"{label}: {report.tests} tests{coverage}")
    return Result(
        "test",
        _status(findings, steps),
        "; ".join(totals),
        tuple(findings),
        tuple(steps),
        tuple(artifacts),
        time.monotonic() - started,
    )


def _test_report(
    run: Run, project: str, step: StepResult, junit: str | None, coverage: str | None
) -> tuple[pytest.TestReport, list[Finding]]:
    """The reports pytest wrote, or the error that stands in for them (killed, unreadable)."""
    nothing = pytest.TestReport(0, [], None)
    if step.timed_out_after is not None:
        return _timed_out(run, project, step, junit)
    killed = _killed(step, "pytest")
    if killed:
        return nothing, killed
    try:
        return pytest.parse(project, junit, coverage, _roots(run)), []
    except pytest.OutputError as exc:
        return nothing, [Finding(check="pytest", message=str(exc), status=Status.ERROR)]


def _roots(run: Run) -> tuple[str, ...]:
    """Where pytest sees the repository: on the host, or the container's mount."""
    return (str(run.source), CONTAINER_MOUNTS[Root.SOURCE])


def _timed_out(
    run: Run, project: str, step: StepResult, junit: str | None
) -> tuple[pytest.TestReport, list[Finding]]:
    """What finished before the time limit (the partial JUnit), and where pytest was stopped."""
    try:
        report = pytest.parse(project, junit, None)
    except pytest.OutputError:
        report = pytest.TestReport(0, [], None)
    where = pytest.interrupted_at(step.stdout + step.stderr, _roots(run))
    kept = (
        f"{report.tests} test(s) finished and are in the JUnit report"
        if junit
        else ("no JUnit report was written")
    )
    stopped = f"; it was at {where[0]}:{where[1]} when stopped" if where else ""
    finding = Finding(
        check="pytest",
        message=f"pytest was stopped at its time limit of {step.timed_out_after:g}s: {kept}"
        f"{stopped} (pipeline.yaml `timeouts`: pytest, test-case; or --timeout)",
        status=Status.ERROR,
        rule="timeout",
        file=where[0] if where else project,
        line=where[1] if where else None,
    )
    return report, [finding]


def _test_verdicts(
    run: Run, project: str, step: StepResult, report: pytest.TestReport, *, has_junit: bool
) -> list[Finding]:
    if step.exit_code == pytest.NO_TESTS_COLLECTED:
        return [
            Finding(
                check="pytest",
                message="no tests were collected: add tests or fix testpaths/python_files; "
                "a project without tests does not pass",
                file=project,
                status=Status.FAILED,
                rule="no-tests",
            )
        ]
    if not step.ok and not report.failures:
        return [_crashed(step, "pytest")]
    # Exit 0 proves nothing by itself: a conftest.py calling sys.exit(0) ends the session
    # "successfully" before a single test ran.
    if not has_junit or report.tests == 0:
        problem = "wrote no JUnit report" if not has_junit else "ran no test"
        return [
            Finding(
                check="pytest",
                message=f"pytest exited {step.exit_code} but {problem}: nothing shows the tests "
                "ran (a conftest.py or plugin that ends the session early?)",
                file=project,
                status=Status.FAILED,
                rule="no-tests-run",
            )
        ]
    minimum = run.config.python.min_coverage
    if minimum is not None and report.coverage_percent is None:
        return [
            Finding(
                check="coverage",
                message=f"no coverage data was produced, so the minimum of {minimum:g}% is not met",
                file=project,
                status=Status.FAILED,
                rule="min-coverage",
            )
        ]
    if (
        minimum is not None
        and report.coverage_percent is not None
        and (report.coverage_percent < minimum)
    ):
        return [
            Finding(
                check="coverage",
                message=f"coverage {report.coverage_percent:.1f}% is below the minimum "
                f"{minimum:g}%",
                file=project,
                status=Status.FAILED,
                rule="min-coverage",
            )
        ]
    return []


def write_stage_reports(run: Run, result: Result) -> None:
    """One Python stage's reports, the same from the CLI and the Dagger module.

    `<stage>.json` keeps a stage's own verdict beside a later `ci` or `validate` in the same
    directory; summary.json, summary.md, junit.xml and the annotations are what CI wrappers
    read.
    """
    summary = reports.write_summaries(run.out, run.source, [result], result.stage, {})
    reports.write_json(run.out / f"{result.stage}.json", summary)
