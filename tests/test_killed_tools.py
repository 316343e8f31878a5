"""A tool killed by a signal is an error that names the signal, never half an output parsed.

Real processes through the LocalRunner, never a mocked runner: pytest (the pinned tool, from
the venv) whose test kills its own process, kubeconform blocked on a FIFO and killed from
outside by its process id, and git ended by a signal while the release reads the history.
The local runner reports a process that signal N ended as exit code -N; a shell (or a
container's init) reports a child that signal N ended as 128+N: both are read as the signal.
"""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import anyio
import pytest
from conftest import child_processes, requires_tools

from pipeline import pychecks
from pipeline.config import ReleaseConfig, load_config
from pipeline.model import Status, Step, StepResult, killed_by_signal, signal_of_exit_code, src
from pipeline.run import Run
from pipeline.runners.local import TIMEOUT_EXIT_CODE, LocalRunner
from pipeline.tools import TOOLS_DIR_ENV
from pipeline.versioning import GitError, decide


@pytest.mark.parametrize(
    ("exit_code", "name"),
    [
        (-9, "SIGKILL"),  # the local runner: Python's process API reports -N
        (-15, "SIGTERM"),
        (137, "SIGKILL"),  # a shell or a container: 128+N
        (143, "SIGTERM"),
        (130, "SIGINT"),
        (-40, "signal 40"),  # a real-time signal has no name, and -N is a signal all the same
    ],
)
def test_exit_codes_that_report_a_signal(exit_code: int, name: str) -> None:
    assert signal_of_exit_code(exit_code) == name


@pytest.mark.parametrize("exit_code", [0, 1, 2, 5, 127, 128, TIMEOUT_EXIT_CODE, 168, 255])
def test_exit_codes_of_a_tool_that_ended_by_itself(exit_code: int) -> None:
    # 128 is git's "fatal"; 168 and 255 are past any signal (128 + 40 has no name either).
    assert signal_of_exit_code(exit_code) is None


def test_the_wording_names_tool_signal_exit_code_and_step() -> None:
    step = Step(name="helm-template:web/dev", tool="helm", args=("template",))
    killed = StepResult(step, exit_code=-9, stdout="kind: Dep", stderr="", outputs=(), duration=1)

    assert killed_by_signal(killed) == (
        "helm was killed by SIGKILL (exit code -9) while running helm-template:web/dev; "
        "its output is incomplete and was not read"
    )
    assert killed_by_signal(StepResult(step, 1, "", "Error: x", (), 1)) is None


# --- pytest whose test kills its own process: the `test` stage ---------------------------------


def dying_project(root: Path, signal_name: str) -> Path:
    """A Python project whose one test sends its own pytest process `signal_name`."""
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "dies"\nversion = "0.1.0"\n\n'
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
        encoding="utf-8",
    )
    (root / "tests" / "test_dies.py").write_text(
        "import os\nimport signal\n\n\n"
        "def test_the_process_dies() -> None:\n"
        f"    os.kill(os.getpid(), signal.{signal_name})\n",
        encoding="utf-8",
    )
    return root


@pytest.mark.parametrize("name", ["SIGTERM", "SIGKILL"])
def test_pytest_killed_by_a_signal_is_an_error_naming_it(tmp_path: Path, name: str) -> None:
    source = dying_project(tmp_path / "project", name)
    out = tmp_path / "artifacts"
    run = Run(config=load_config(source), runner=LocalRunner(source=source, out=out), out=out)

    result = anyio.run(pychecks.test, run)

    number = signal.Signals[name].value
    (step,) = result.steps
    assert step.exit_code == -number
    assert result.status is Status.ERROR
    (finding,) = result.findings
    assert (finding.check, finding.status) == ("pytest", Status.ERROR)
    assert finding.message == (
        f"pytest was killed by {name} (exit code -{number}) while running pytest:.; "
        "its output is incomplete and was not read"
    )


# --- kubeconform killed from outside, by its process id -----------------------------------------


@requires_tools("kubeconform")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGKILL"])
def test_a_tool_killed_from_outside_is_reported_with_the_signal(tmp_path: Path, name: str) -> None:
    source, out = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    os.mkfifo(source / "blocked.yaml")  # opening it blocks until a writer comes: never
    step = Step(
        name="kubeconform", tool="kubeconform", args=("-output", "json", src("blocked.yaml"))
    )
    results: list[StepResult] = []

    async def run_and_kill() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(_append, results, LocalRunner(source=source, out=out), step)
            deadline = time.monotonic() + 30
            while not (found := child_processes("kubeconform")):
                assert time.monotonic() < deadline, "kubeconform never started"
                await anyio.sleep(0.05)
            os.kill(found[0], signal.Signals[name])

    anyio.run(run_and_kill)

    (result,) = results
    number = signal.Signals[name].value
    assert result.exit_code == -number
    assert killed_by_signal(result) == (
        f"kubeconform was killed by {name} (exit code -{number}) while running kubeconform; "
        "its output is incomplete and was not read"
    )


async def _append(results: list[StepResult], runner: LocalRunner, step: Step) -> None:
    results.append(await runner.run(step))


# --- git ended by a signal while the release reads the history ----------------------------------


@pytest.mark.parametrize(
    ("script", "reported"),
    [
        ("kill -TERM $$", "SIGTERM (exit code -15)"),
        # A wrapper whose child a signal ended exits 128+N, as a container's shell reports it.
        ("sh -c 'kill -KILL $$'\nexit $?", "SIGKILL (exit code 137)"),
    ],
    ids=["itself", "under-a-shell"],
)
def test_git_killed_while_reading_history_is_a_git_error_naming_the_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, reported: str
) -> None:
    # The host's git is accepted at any version, so a script stands in for it: a real process
    # that a real signal ends, run by the real runner.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "git").write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    (tools / "git").chmod(0o755)
    monkeypatch.setenv(TOOLS_DIR_ENV, str(tools))
    runner = LocalRunner(source=tmp_path, out=tmp_path)

    with pytest.raises(GitError) as caught:
        anyio.run(partial(decide, runner, config=ReleaseConfig(), prerelease=None))

    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        f"git rev-parse --is-shallow-repository: git was killed by {reported} while running "
        "git-is-shallow; its output is incomplete and was not read"
    )
