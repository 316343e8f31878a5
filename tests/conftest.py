"""Shared paths, the fixture-repo copier, the pinned-tool skip helpers and the CLI run record."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pipeline.tools import INSTALL_SCRIPT, TOOLS, inspect_tool

if TYPE_CHECKING:
    from engine import Engine

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_CRDS = SHARED / "schemas" / "crds"
FIXTURE_REPOS = REPO_ROOT / "tests" / "fixtures" / "repos"
POLICY = REPO_ROOT / "pipeline" / "policies"  # the built-in pack every repository gets
RENDER_TOOLS = ("helm", "kubeconform", "conftest")

F = TypeVar("F", bound=Callable[..., object])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fixture_repo(name: str, tmp_path: Path) -> Path:
    """A private copy of tests/fixtures/repos/<name>; no policies of its own: the pack applies."""
    source = FIXTURE_REPOS / name
    if not source.is_dir():
        msg = f"no fixture repo named {name!r} in {FIXTURE_REPOS}"
        raise FileNotFoundError(msg)
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def missing_tools(*names: str) -> list[str]:
    return [name for name in names if not inspect_tool(TOOLS[name]).ok]


def tool_marks(*names: str) -> list[pytest.MarkDecorator]:
    """`pytestmark` for a module that runs the named pinned tools for real."""
    missing = missing_tools(*names)
    reason = (
        f"pinned tool(s) {', '.join(missing)} not installed at the pinned version; "
        f"run `bash {INSTALL_SCRIPT}`"
    )
    return [pytest.mark.tools, pytest.mark.skipif(bool(missing), reason=reason)]


def requires_tools(*names: str) -> Callable[[F], F]:
    """Decorator form of :func:`tool_marks` for single tests."""

    def decorate(func: F) -> F:
        for mark in tool_marks(*names):
            func = mark(func)
        return func

    return decorate


requires_shared = pytest.mark.skipif(
    not SHARED_CRDS.is_dir(),
    reason=f"shared CRD schemas not found at {SHARED_CRDS} (../shared is outside the repo)",
)


@dataclass(frozen=True)
class CliRun:
    """One in-process `gitops-pipeline` run: what it returned and printed, and its report."""

    exit_code: int
    stdout: str
    stderr: str
    source: Path
    out: Path
    report: str = "summary.json"  # `<verb>.json` for a single Python check

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / self.report).read_text(encoding="utf-8"))
        return data

    def stage(self, name: str) -> dict[str, Any]:
        stages: list[dict[str, Any]] = self.summary()["stages"]
        (stage,) = [s for s in stages if s["stage"] == name]
        return stage

    def problems(self, stage: str) -> list[dict[str, Any]]:
        """Failed or errored findings of one stage."""
        return [f for f in self.stage(stage)["findings"] if f["status"] in {"failed", "error"}]

    def check_problems(self, check: str) -> list[dict[str, Any]]:
        """Failed or errored findings of one check, from every stage."""
        return [
            f
            for s in self.summary()["stages"]
            for f in s["findings"]
            if f["check"] == check and f["status"] in {"failed", "error"}
        ]


REQUIRE_ALL = "GITOPS_PIPELINE_REQUIRE_ALL"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (GITOPS_PIPELINE_REQUIRE_ALL=1) a skipped test is a failure: nothing may hide."""
    del item, call
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get(REQUIRE_ALL) == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but {REQUIRE_ALL}=1 requires every test to run: {reason}"


# Every process the suite starts inherits this marker; none may outlive the suite.
RUN_MARKER = "GITOPS_PIPELINE_TEST_RUN"
os.environ.setdefault(RUN_MARKER, f"{os.getpid()}-{time.time_ns()}")


def processes_left_behind() -> list[str]:
    """`pid: command` of live processes, other than this one, that carry this run's marker."""
    marker = f"{RUN_MARKER}={os.environ[RUN_MARKER]}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if state != "Z":
            found.append(f"{entry.name}: {command.strip()}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test run leaves a process behind: a tool, a server or a child of either."""
    del exitstatus
    if not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + 10  # processes a test just stopped may still be exiting
    left = processes_left_behind()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_left_behind()
    if left:
        sys.stderr.write("\nprocesses left behind by the test run:\n  " + "\n  ".join(left) + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def child_processes(name: str) -> list[int]:
    """This process's children running `name`, from /proc (comm is in parentheses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
        except OSError:
            continue  # it ended meanwhile
        command, _, rest = stat.rpartition(")")
        if command.partition("(")[2] == name and int(rest.split()[1]) == os.getpid():
            found.append(int(entry.name))
    return found


# --- the local Dagger engine: one engine and one module copy for every engine test file ---------


@pytest.fixture(scope="session")
def engine() -> Engine:
    from engine import find_engine  # noqa: PLC0415 - engine.py reads this file's paths

    return find_engine()


@pytest.fixture(scope="session")
def module(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's module, loaded once per session: a load costs the engine seconds."""
    from engine import copy_module  # noqa: PLC0415 - engine.py reads this file's paths

    return copy_module(tmp_path_factory.mktemp("module"), engine)
