"""Time limits: a hanging test is named and the rest still run; a step stopped at its limit
keeps its partial JUnit and says where it was; the same limits hold in the Dagger engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT
from test_reliability import alive
from test_validate import run_cli

from pipeline.limits import per_test_limit, with_flag

PYPROJECT = (
    '[project]\nname = "slow"\nversion = "0.1.0"\n\n'
    '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
)
# A hanging test that also leaves a child behind: both must be gone when the run ends.
HANGS = (
    "def test_hangs():\n"
    "    child = subprocess.Popen(['sleep', '300'])\n"
    "    with open(os.environ['HANG_MARKER'], 'w') as marker:\n"
    "        marker.write(f'{os.getpid()} {child.pid}')\n"
    "    time.sleep(300)\n"
)


def ends_soon(pid: int) -> bool:
    """SIGKILL is sent when the run ends; the kernel takes a moment to finish the process."""
    deadline = time.monotonic() + 5
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def project(tmp_path: Path, tests: str, config: str = "") -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (root / "tests" / "test_suite.py").write_text(
        "import os, subprocess, time\n\n" + tests, encoding="utf-8"
    )
    if config:
        (root / "pipeline.yaml").write_text(config, encoding="utf-8")
    return root


def only_stage(out: Path) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    (stage,) = summary["stages"]
    assert isinstance(stage, dict)
    return stage


def junit_cases(out: Path) -> dict[str, str]:
    """Test name -> outcome, from the JUnit report the run kept."""
    (junit,) = (out / "pytest").glob("*/junit.xml")
    cases: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - our own report
        name = case.get("name")
        if name is not None:
            failed = case.find("failure") is not None or case.find("error") is not None
            cases[name] = "failed" if failed else "passed"
    return cases


def test_the_per_test_limit_stays_below_the_step_limit() -> None:
    assert per_test_limit({}, 600) == 480
    assert per_test_limit({"pytest": 100}, 600) == 80
    assert per_test_limit({"default": 50, "test-case": 30}, 600) == 30
    assert per_test_limit({"pytest": 10, "test-case": 30}, 600) == 8
    # The flag is the last word for every step, and the per-test limit follows it down.
    assert with_flag({"pytest": 100, "test-case": 30}, 5) == {"default": 5, "test-case": 30}
    assert per_test_limit(with_flag({"pytest": 100, "test-case": 30}, 5), 600) == 4


def test_a_hanging_test_is_named_and_the_tests_after_it_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project(
        tmp_path,
        "def test_before():\n    pass\n\n" + HANGS + "\n\ndef test_after():\n    pass\n",
        "timeouts:\n  pytest: 60\n  test-case: 3\n",
    )
    marker = tmp_path / "marker"
    monkeypatch.setenv("HANG_MARKER", str(marker))
    out = tmp_path / "out"
    code, _, _ = run_cli("test", "--source", str(source), "--out", str(out))
    assert code == 1
    stage = only_stage(out)
    assert stage["status"] == "failed"
    (hung,) = stage["findings"]
    assert "test_hangs" in hung["message"]
    assert "Timeout" in hung["message"]
    assert hung["file"] == "tests/test_suite.py"
    assert hung["line"] == 6  # `def test_hangs():`
    assert junit_cases(out) == {
        "test_before": "passed",
        "test_hangs": "failed",
        "test_after": "passed",
    }
    for pid in (int(p) for p in marker.read_text().split()):
        assert ends_soon(pid)


def test_a_step_stopped_at_its_limit_keeps_its_partial_junit_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-test limit (0.8 x 5s) cannot fire: the tests before the hang use most of the
    # step's time, so the step limit stops pytest, as SIGINT, in the middle of the suite.
    source = project(
        tmp_path,
        "def test_before():\n    time.sleep(3.5)\n\n" + HANGS + "\n\ndef test_after():\n    pass\n",
    )
    marker = tmp_path / "marker"
    monkeypatch.setenv("HANG_MARKER", str(marker))
    out = tmp_path / "out"
    code, _, _ = run_cli("test", "--source", str(source), "--out", str(out), "--timeout", "5")
    assert code == 1
    stage = only_stage(out)
    assert stage["status"] == "error"
    (stopped,) = [f for f in stage["findings"] if f.get("rule") == "timeout"]
    assert "stopped at its time limit of 5s" in stopped["message"]
    assert stopped["file"] == "tests/test_suite.py"
    assert stopped["line"] in {2, 10}  # in test_before's or test_hangs's sleep
    cases = junit_cases(out)
    assert "test_after" not in cases
    if stopped["line"] == 10:
        assert cases == {"test_before": "passed"}
        assert "1 test(s) finished" in stopped["message"]
    if marker.is_file():
        for pid in (int(p) for p in marker.read_text().split()):
            assert ends_soon(pid)


def test_a_timed_out_step_in_another_tool_is_an_error_naming_the_limit(tmp_path: Path) -> None:
    source = project(tmp_path, "def test_ok():\n    pass\n", "timeouts:\n  ruff: 0.001\n")
    code, stdout, _ = run_cli("lint", "--source", str(source), "--out", str(tmp_path / "out"))
    assert code == 1
    stage = only_stage(tmp_path / "out")
    assert stage["status"] == "error"
    assert any("timed out after 0.001s" in f["message"] for f in stage["findings"]), stdout


def test_the_cli_help_documents_the_limits() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "test", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "test-case" in done.stdout
