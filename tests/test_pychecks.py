"""`gitops-pipeline lint|typecheck|test|ci` end to end: real ruff, mypy and pytest.

The fixture projects under tests/fixtures/python/ are tiny standalone Python projects, each
with one known problem (or none, for `ok`). Each is copied to a temporary directory, so no
configuration of this repository can apply, and checked once per module through the CLI entry
point, in-process. The tests read what CI would read: the exit code, the printed lines, the
`<verb>.json` (or the merged summary.json) and the artifacts directory.

The fixture projects name their test files check_*.py (see their pyproject.toml) so that this
repository's own pytest run does not collect them.
"""

from __future__ import annotations

import io
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import anyio
import pytest
from conftest import RENDER_TOOLS, REPO_ROOT, CliRun, fixture_repo, requires_tools, tool_marks

from pipeline import pychecks
from pipeline.cli import main
from pipeline.config import CONFIG_FILE, load_config
from pipeline.errors import ConfigError
from pipeline.run import Run, default_cache_dir
from pipeline.runners.local import LocalRunner

PYTHON_TOOLS = ("ruff", "mypy", "pytest")
pytestmark = tool_marks(*PYTHON_TOOLS)

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "python"
VERBS = ("lint", "typecheck", "test")
VALIDATE_STAGES = ("helm-lint", "render", "kubeconform", "policy", "secrets")
CI_STAGES = (*VERBS, *VALIDATE_STAGES)
BUNDLED = ("--schema-location", "bundled")
PACKAGE = "src/calc/__init__.py"
TESTS = "tests/check_calc.py"

# What each fixture project is for: the verbs it fails (exit 1); it passes the others.
FAILS: dict[str, frozenset[str]] = {
    "ok": frozenset(),
    "lint-error": frozenset({"lint"}),
    "format-diff": frozenset({"lint"}),
    "type-error": frozenset({"typecheck"}),
    "failing-test": frozenset({"test"}),
    "no-tests": frozenset({"test"}),
}


def run_cli(verb: str, source: Path, out: Path, *extra: str) -> CliRun:
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [verb, "--source", str(source), "--out", str(out), *extra]
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(argv)
    report = "summary.json" if verb == "ci" else f"{verb}.json"
    return CliRun(code, stdout.getvalue(), stderr.getvalue(), source, out, report)


def python_fixture(name: str, target: Path) -> Path:
    """A private copy of tests/fixtures/python/<name> at `target`."""
    shutil.copytree(FIXTURES / name, target, dirs_exist_ok=True)
    return target


def write_config(source: Path, text: str) -> None:
    (source / CONFIG_FILE).write_text(text, encoding="utf-8")


def line_of(path: Path, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    (number,) = [i for i, line in enumerate(lines, start=1) if text in line]
    return number


def coverage_rate(path: Path) -> float:
    rate = ET.parse(path).getroot().get("line-rate")  # noqa: S314 - our own artifact
    assert rate is not None
    return float(rate) * 100


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mypy's cache of the standard library under the fixtures' settings, built once.

    The local runner gives mypy one cache of its own outside the repository, shared by every
    run as a Dagger cache volume is: the runs after this one find the standard library
    there. It holds no module of the fixture projects, so it cannot hide their errors.
    """
    project = tmp_path_factory.mktemp("mypy-warm-up") / "project"
    project.mkdir()
    shutil.copy(FIXTURES / "ok" / "pyproject.toml", project / "pyproject.toml")
    (project / "warm_up.py").write_text('"""Nothing to check."""\n', encoding="utf-8")
    run = run_cli("typecheck", project, project.parent / "artifacts")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert not (project / ".mypy_cache").exists(), "the repository is left as it was"
    cache = default_cache_dir() / "tools" / "mypy"
    assert cache.is_dir()
    return cache


@pytest.fixture(scope="module")
def checked(
    tmp_path_factory: pytest.TempPathFactory, mypy_cache: Path
) -> Callable[[str, str], CliRun]:
    """`gitops-pipeline <verb>` on a copy of each fixture project, once per module."""
    copies: dict[str, Path] = {}
    done: dict[tuple[str, str], CliRun] = {}

    def get(name: str, verb: str) -> CliRun:
        if name not in copies:
            target = tmp_path_factory.mktemp(name) / "project"
            copies[name] = python_fixture(name, target)
        if (name, verb) not in done:
            source = copies[name]
            done[name, verb] = run_cli(verb, source, source.parent / f"artifacts-{verb}")
        return done[name, verb]

    return get


# --- every fixture and verb: the exit code and a summary that agrees -----------------------------


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("name", list(FAILS))
def test_exit_code_and_summary(checked: Callable[[str, str], CliRun], name: str, verb: str) -> None:
    run = checked(name, verb)
    fails = verb in FAILS[name]

    assert run.exit_code == (1 if fails else 0), run.stdout + run.stderr
    summary = run.summary()
    assert [s["stage"] for s in summary["stages"]] == [verb]
    assert summary["status"] == ("failed" if fails else "passed")
    assert bool(run.problems(verb)) == fails
    assert re.search(rf"^{verb}\s+{summary['status']}\s", run.stdout, re.MULTILINE)
    assert f"artifacts: {run.out}" in run.stdout


# --- what each failure fixture is about ----------------------------------------------------------


def test_unused_import_names_file_line_and_rule(checked: Callable[[str, str], CliRun]) -> None:
    run = checked("lint-error", "lint")
    line = line_of(run.source / PACKAGE, "import os")

    (finding,) = run.problems("lint")
    assert (finding["check"], finding["file"], finding["line"]) == ("ruff", PACKAGE, line)
    assert finding["rule"] == "F401"
    assert "`os` imported but unused" in finding["message"]
    assert f"  - {PACKAGE}:{line}: `os` imported but unused" in run.stdout


def test_format_diff_names_the_file_and_writes_the_diff(
    checked: Callable[[str, str], CliRun],
) -> None:
    run = checked("format-diff", "lint")

    (finding,) = run.problems("lint")
    assert finding["check"] == "ruff-format"
    assert finding["rule"] == "format"
    assert finding["file"] == "src/calc/greeting.py"
    assert "  - src/calc/greeting.py:" in run.stdout
    assert run.stage("lint")["artifacts"] == ["ruff-format.diff"]
    diff = (run.out / "ruff-format.diff").read_text(encoding="utf-8")
    assert "--- src/calc/greeting.py\n" in diff
    assert "-GREETING = 'hello'\n" in diff
    assert '+GREETING = "hello"\n' in diff
    assert PACKAGE not in diff  # the formatted file is not reported


def test_clean_lint_writes_an_empty_diff(checked: Callable[[str, str], CliRun]) -> None:
    run = checked("ok", "lint")

    assert (run.out / "ruff-format.diff").read_text(encoding="utf-8") == ""


def test_type_error_names_file_line_and_mypy_code(checked: Callable[[str, str], CliRun]) -> None:
    run = checked("type-error", "typecheck")
    line = line_of(run.source / PACKAGE, 'return f"#{n}"')

    (finding,) = run.problems("typecheck")
    assert (finding["check"], finding["file"], finding["line"]) == ("mypy", PACKAGE, line)
    assert finding["rule"] == "return-value"
    assert 'got "str", expected "int"' in finding["message"]
    assert f"  - {PACKAGE}:{line}: Incompatible return value type" in run.stdout


def test_failing_test_names_the_test_file_and_line(checked: Callable[[str, str], CliRun]) -> None:
    run = checked("failing-test", "test")
    line = line_of(run.source / TESTS, "def test_add_is_wrong")

    (finding,) = run.problems("test")
    assert (finding["check"], finding["file"], finding["line"]) == ("pytest", TESTS, line)
    assert finding["rule"] == "failure"
    assert "test_add_is_wrong" in finding["message"]
    assert "assert 4 == 5" in finding["message"]
    assert f"  - {TESTS}:{line}: " in run.stdout
    assert run.stage("test")["summary"].startswith(".: 2 tests")
    suite = ET.parse(run.out / "pytest/root/junit.xml").getroot()  # noqa: S314
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["test_add_is_wrong"]


def test_no_tests_collected_fails(checked: Callable[[str, str], CliRun]) -> None:
    run = checked("no-tests", "test")

    (finding,) = run.problems("test")
    assert finding["rule"] == "no-tests"
    assert "no tests were collected" in finding["message"]
    assert "no tests were collected" in run.stdout


# --- test: JUnit, coverage and the coverage minimum ----------------------------------------------


def test_test_writes_junit_and_coverage_and_reports_the_percentage(
    checked: Callable[[str, str], CliRun],
) -> None:
    run = checked("ok", "test")
    junit, coverage = run.out / "pytest/root/junit.xml", run.out / "pytest/root/coverage.xml"

    assert run.stage("test")["artifacts"] == ["pytest/root/junit.xml", "pytest/root/coverage.xml"]
    cases = list(ET.parse(junit).getroot().iter("testcase"))  # noqa: S314
    assert sorted(str(c.get("name")) for c in cases) == ["test_add", "test_divide"]
    percent = coverage_rate(coverage)
    # The fixture leaves one line uncovered on purpose; the minimum tests below rely on it.
    assert 80 < percent < 99.5
    assert run.stage("test")["summary"] == f".: 2 tests, coverage {percent:.1f}%"


@pytest.mark.parametrize(("minimum", "exit_code"), [(99.5, 1), (80, 0)])
def test_min_coverage(tmp_path: Path, minimum: float, exit_code: int) -> None:
    source = python_fixture("ok", tmp_path / "project")
    write_config(source, f"python:\n  min_coverage: {minimum}\n")

    run = run_cli("test", source, tmp_path / "artifacts")

    assert run.exit_code == exit_code, run.stdout + run.stderr
    percent = coverage_rate(run.out / "pytest/root/coverage.xml")
    problems = run.problems("test")
    if exit_code == 0:
        assert problems == []
        return
    (finding,) = problems
    assert (finding["check"], finding["rule"]) == ("coverage", "min-coverage")
    assert finding["message"] == f"coverage {percent:.1f}% is below the minimum 99.5%"
    assert "is below the minimum 99.5%" in run.stdout


# --- projects in subdirectories (python.paths) ---------------------------------------------------


SERVICES = ("lint-error", "type-error", "failing-test")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, mypy_cache: Path) -> Callable[[str], CliRun]:
    """A repository with three projects under services/, listed in python.paths; each verb once."""
    source = tmp_path_factory.mktemp("services") / "repo"
    for name in SERVICES:
        python_fixture(name, source / "services" / name)
    write_config(source, f"python:\n  paths: [{', '.join(f'services/{n}' for n in SERVICES)}]\n")
    done: dict[str, CliRun] = {}

    def get(verb: str) -> CliRun:
        if verb not in done:
            done[verb] = run_cli(verb, source, source.parent / f"artifacts-{verb}")
        return done[verb]

    return get


@pytest.mark.parametrize(
    ("verb", "file", "marker"),
    [
        ("lint", f"services/lint-error/{PACKAGE}", "import os"),
        ("typecheck", f"services/type-error/{PACKAGE}", 'return f"#{n}"'),
        ("test", f"services/failing-test/{TESTS}", "def test_add_is_wrong"),
    ],
)
def test_findings_are_relative_to_the_source_root(
    services: Callable[[str], CliRun], verb: str, file: str, marker: str
) -> None:
    run = services(verb)

    assert run.exit_code == 1, run.stdout + run.stderr
    (finding,) = run.problems(verb)
    assert (finding["file"], finding["line"]) == (file, line_of(run.source / file, marker))
    assert f"  - {file}:{finding['line']}: " in run.stdout
    for name in SERVICES:
        assert f"services/{name}" in run.stage(verb)["summary"]


def test_each_project_has_its_own_test_artifacts(services: Callable[[str], CliRun]) -> None:
    run = services("test")

    for name in SERVICES:
        for artifact in ("junit.xml", "coverage.xml"):
            path = f"pytest/services-{name}/{artifact}"
            assert path in run.stage("test")["artifacts"]
            assert (run.out / path).is_file()


def test_fixture_is_linted_in_place_despite_the_repository_exclude(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This repository's pyproject excludes tests/fixtures from its own ruff runs. Run from the
    # fixture's directory, the fixture's pyproject must be the configuration, so the exclude
    # (and --force-exclude) must not leave ruff with nothing to lint.
    monkeypatch.setenv("RUFF_NO_CACHE", "true")  # leave nothing behind in the repository
    lint_error, format_diff = FIXTURES / "lint-error", FIXTURES / "format-diff"

    unused = run_cli("lint", lint_error, tmp_path / "lint-error")
    formatting = run_cli("lint", format_diff, tmp_path / "format-diff")

    assert unused.exit_code == 1, unused.stdout + unused.stderr
    assert [(f["file"], f["rule"]) for f in unused.problems("lint")] == [(PACKAGE, "F401")]
    assert formatting.exit_code == 1, formatting.stdout + formatting.stderr
    files = [(f["file"], f["rule"]) for f in formatting.problems("lint")]
    assert files == [("src/calc/greeting.py", "format")]


# --- configuration errors: exit 2 ----------------------------------------------------------------


@pytest.mark.parametrize("verb", VERBS)
def test_missing_python_path_is_a_config_error(tmp_path: Path, verb: str) -> None:
    source = python_fixture("ok", tmp_path / "project")
    write_config(source, "python:\n  paths: [missing]\n")

    run = run_cli(verb, source, tmp_path / "artifacts")

    assert run.exit_code == 2
    assert f"gitops-pipeline {verb}: error: " in run.stderr
    assert "python.paths (missing)" in run.stderr
    assert "does not exist" in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize("verb", VERBS)
def test_source_without_a_python_project_is_a_config_error(tmp_path: Path, verb: str) -> None:
    source = fixture_repo("ok", tmp_path)  # charts only

    run = run_cli(verb, source, tmp_path / "artifacts")

    assert run.exit_code == 2
    assert "no Python project found" in run.stderr
    assert "pyproject.toml" in run.stderr
    assert "python.paths" in run.stderr


def test_python_matrix_needs_the_dagger_runner(tmp_path: Path) -> None:
    # The CLI has no --python option; the matrix is the Dagger module's `test --python`.
    source = python_fixture("ok", tmp_path / "project")
    out = tmp_path / "artifacts"
    run = Run(
        config=load_config(source),
        runner=LocalRunner(source=source, out=out),
        out=out,
        python_versions=("3.12",),
        on_host=True,
    )

    with pytest.raises(ConfigError, match="needs the Dagger runner") as caught:
        anyio.run(pychecks.test, run)

    assert caught.value.field == "--python"
    assert not (out / "pytest").exists()  # refused before any test ran


def test_mypy_config_outside_the_mypy_section_keeps_the_default_target(
    tmp_path: Path, mypy_cache: Path
) -> None:
    # BUG: pychecks.mypy_targets treats the word "files" anywhere in setup.cfg (here
    # `data_files`) as mypy's `files` setting and runs mypy without targets, which fails.
    source = python_fixture("ok", tmp_path / "project")
    (source / "setup.cfg").write_text(
        "[options.data_files]\nshare = README.txt\n", encoding="utf-8"
    )

    run = run_cli("typecheck", source, tmp_path / "artifacts")

    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.problems("typecheck") == []


# --- ci: every stage, concurrently, one merged report --------------------------------------------


def project_with_charts(
    base: Path, project: str = "ok", charts: str = "ok", mypy_cache: Path | None = None
) -> Path:
    """A fixture repository's charts, the policies and a fixture project at the root."""
    source = fixture_repo(charts, base)
    return python_fixture(project, source)


@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory: pytest.TempPathFactory, mypy_cache: Path) -> Callable[[str], CliRun]:
    builders: dict[str, Callable[[Path], Path]] = {
        "ok": lambda base: project_with_charts(base, mypy_cache=mypy_cache),
        "failing": lambda base: project_with_charts(base, "lint-error", "wrong-type", mypy_cache),
        "charts-only": lambda base: fixture_repo("ok", base),
    }
    done: dict[str, CliRun] = {}

    def get(name: str) -> CliRun:
        if name not in done:
            base = tmp_path_factory.mktemp(f"ci-{name}")
            done[name] = run_cli("ci", builders[name](base), base / "artifacts", *BUNDLED)
        return done[name]

    return get


def junit_suites(run: CliRun) -> dict[str, ET.Element]:
    root = ET.parse(run.out / "junit.xml").getroot()  # noqa: S314 - our own artifact
    suites = root.findall("testsuite")
    for suite in suites:
        assert int(suite.get("tests", "-1")) == len(suite.findall("testcase"))
    return {str(s.get("name")): s for s in suites}


@requires_tools(*RENDER_TOOLS)
def test_ci_on_a_clean_repository_passes_every_stage(ci_runs: Callable[[str], CliRun]) -> None:
    run = ci_runs("ok")

    assert run.exit_code == 0, run.stdout + run.stderr
    summary = run.summary()
    assert summary["status"] == "passed"
    assert {s["stage"]: s["status"] for s in summary["stages"]} == dict.fromkeys(
        CI_STAGES, "passed"
    )
    assert summary["stages_run"] == list(CI_STAGES)
    markdown = (run.out / "summary.md").read_text(encoding="utf-8")
    assert markdown.startswith("## gitops-pipeline ci: passed\n")
    for stage in CI_STAGES:
        assert f"| {stage} | ✅ passed |" in markdown
    assert set(junit_suites(run)) == set(CI_STAGES)
    for artifact in (
        "ruff-format.diff",
        "pytest/root/junit.xml",
        "pytest/root/coverage.xml",
        "rendered.yaml",
        "kubeconform.json",
        "policy.sarif",
    ):
        assert (run.out / artifact).is_file(), artifact


@requires_tools(*RENDER_TOOLS)
def test_ci_reports_every_stage_when_lint_and_a_chart_fail(
    ci_runs: Callable[[str], CliRun],
) -> None:
    run = ci_runs("failing")

    assert run.exit_code == 1, run.stdout + run.stderr
    summary = run.summary()
    assert summary["status"] == "failed"
    statuses = {s["stage"]: s["status"] for s in summary["stages"]}
    assert set(statuses) == set(CI_STAGES)
    assert statuses["lint"] == "failed"
    assert statuses["kubeconform"] == "failed"
    assert statuses["typecheck"] == statuses["test"] == statuses["render"] == "passed"
    (unused,) = run.problems("lint")
    assert (unused["file"], unused["rule"]) == (PACKAGE, "F401")
    assert any(f["resource"] == "Deployment/web" for f in run.problems("kubeconform"))
    markdown = (run.out / "summary.md").read_text(encoding="utf-8")
    assert markdown.startswith("## gitops-pipeline ci: failed\n")
    assert f"`{PACKAGE}:{unused['line']}`" in markdown
    suites = junit_suites(run)
    assert set(suites) == set(CI_STAGES)
    assert suites["lint"].get("failures") == "1"
    assert int(suites["kubeconform"].get("failures", "0")) >= 1
    assert suites["test"].get("failures") == "0"


@requires_tools(*RENDER_TOOLS)
def test_ci_without_a_python_project_skips_the_python_stages(
    ci_runs: Callable[[str], CliRun],
) -> None:
    run = ci_runs("charts-only")

    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.summary()["status"] == "passed"
    for stage in VERBS:
        assert run.stage(stage)["status"] == "skipped"
        assert "no Python project found" in run.stage(stage)["summary"]
        printed = rf"^{stage}\s+skipped\s+skipped: no Python project"
        assert re.search(printed, run.stdout, re.MULTILINE)
    for stage in VALIDATE_STAGES:
        assert run.stage(stage)["status"] == "passed"
    suites = junit_suites(run)
    assert all(suites[stage].get("skipped") == "1" for stage in VERBS)


@requires_tools(*RENDER_TOOLS)
def test_ci_with_a_missing_python_path_is_a_config_error(tmp_path: Path) -> None:
    # BUG: `lint` exits 2 for this configuration error; `ci` reports it as a stage error
    # (good) but exits 1, unlike a configuration error in the chart stages, which exits 2.
    source = fixture_repo("ok", tmp_path)
    write_config(source, "python:\n  paths: [missing]\n")

    run = run_cli("ci", source, tmp_path / "artifacts", *BUNDLED)

    assert {s["stage"] for s in run.summary()["stages"]} == set(CI_STAGES)
    for stage in VERBS:
        assert run.stage(stage)["status"] == "error"
        assert "python.paths (missing)" in run.stage(stage)["summary"]
    assert run.exit_code == 2, run.stdout + run.stderr


@requires_tools(*RENDER_TOOLS)
def test_ci_does_not_skip_a_stage_over_a_broken_pyproject(tmp_path: Path) -> None:
    # BUG: ci skips a Python stage on any ConfigError when python.paths is unset, so the
    # invalid TOML that mypy_targets reports turns typecheck into "skipped".
    source = project_with_charts(tmp_path)
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text(encoding="utf-8").replace("[tool.mypy]", "[tool.mypy"),
        encoding="utf-8",
    )

    run = run_cli("ci", source, tmp_path / "artifacts", *BUNDLED)

    assert run.exit_code != 0
    for stage in VERBS:
        assert run.stage(stage)["status"] == "error", run.stage(stage)["summary"]


def test_every_fixture_project_is_checked() -> None:
    assert {p.parent.name for p in FIXTURES.glob("*/pyproject.toml")} == set(FAILS)
    # test_*.py would be collected by this repository's own pytest run (see the docstring).
    assert not list(FIXTURES.glob("*/tests/test_*.py"))


def test_a_session_ended_early_is_not_a_pass(tmp_path: Path) -> None:
    """A conftest.py that calls sys.exit(0): pytest exits 0, no test ran, no gate was met."""
    source = python_fixture("ok", tmp_path / "project")
    (source / "tests" / "conftest.py").write_text("import sys\n\nsys.exit(0)\n", encoding="utf-8")
    write_config(source, "python:\n  min_coverage: 80\n")
    run = run_cli("test", source, tmp_path / "out")
    assert run.exit_code == 1, run.stdout + run.stderr
    (problem,) = run.problems("test")
    assert problem["rule"] == "no-tests-run"
    assert "pytest exited 0 but" in problem["message"]


def test_the_coverage_gate_fails_without_coverage_data(tmp_path: Path) -> None:
    source = python_fixture("ok", tmp_path / "project")
    # Coverage of a package that is not imported: pytest-cov writes no data for it.
    (source / "pyproject.toml").write_text(
        (source / "pyproject.toml").read_text(encoding="utf-8")
        + '\n[tool.coverage.run]\nsource = ["nothing_here"]\n',
        encoding="utf-8",
    )
    write_config(source, "python:\n  min_coverage: 80\n")
    run = run_cli("test", source, tmp_path / "out")
    problems = run.problems("test")
    assert run.exit_code == 1, run.stdout + run.stderr
    assert [p["rule"] for p in problems] == ["min-coverage"], problems
    assert "no coverage data was produced" in problems[0]["message"]
