"""What people see while steps run: live on a real terminal, plain lines in logs, or nothing.

The live display is checked the way a person sees it: `gitops-pipeline ci` runs under a
pseudo-terminal (python's pty) with the real tools, and the test reads what the terminal got.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import anyio
import pytest
from conftest import REPO_ROOT, fixture_repo, requires_tools

from pipeline import progress
from pipeline.ci import run_ci
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import SetupError
from pipeline.model import SecretRef, Step, StepResult
from pipeline.plan import dry_run_reply
from pipeline.run import Run
from pipeline.runners.observed import ObservedRunner
from pipeline.runners.recording import RecordingRunner, Reply

PYTHON_OK = REPO_ROOT / "tests" / "fixtures" / "python" / "ok"
CI_STAGES = {
    "lint",
    "typecheck",
    "test",
    "helm-lint",
    "render",
    "kubeconform",
    "policy",
    "secrets",
}
BUNDLED = ("--schema-location", "bundled")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Select Graphic Rendition with a foreground colour: 30-37, 90-97 or 38;…
COLOUR = re.compile(r"\x1b\[(?:[0-9]+;)*(?:3[0-8]|9[0-7])(?:;[0-9]+)*m")
PLAIN_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+): (ok|exit \d+|killed by \w+|stopped) in \d+\.\ds$")


def charts_and_project(tmp_path: Path, charts: str = "ok") -> Path:
    source = fixture_repo(charts, tmp_path)
    shutil.copytree(PYTHON_OK, source, dirs_exist_ok=True)
    return source


def run_in_terminal(argv: list[str], *, environ: dict[str, str] | None = None) -> str:
    """Run the CLI with stdin, stdout and stderr on a 120x40 pseudo-terminal; all it drew."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    env.update(environ or {})
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *argv],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=REPO_ROOT,
    ) as process:
        os.close(terminal)
        received = bytearray()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not chunk:
                break
            received += chunk
        process.wait(timeout=30)
    os.close(controller)
    return received.decode("utf-8", errors="replace")


def cli(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


# --- on a terminal: the live display --------------------------------------------------------


@requires_tools("helm", "kubeconform", "conftest", "ruff", "mypy", "pytest")
def test_ci_on_a_terminal_shows_every_running_step_live(tmp_path: Path) -> None:
    source = charts_and_project(tmp_path)
    argv = ["ci", "--source", str(source), "--out", str(tmp_path / "artifacts"), *BUNDLED]
    screen = run_in_terminal(argv)
    text = ANSI.sub("", screen).replace("\r", "")

    # While steps run: a count of steps done and running, then each running step by name
    # (stage, chart/environment or project, tool) with the time it has been running.
    headers = re.findall(r"ci: (\d+)/(\d+) steps done, (\d+) running, \d+\.\ds", text)
    assert any(int(running) > 0 for _, _, running in headers), text
    running = re.findall(r"running  (.+?)  (\d+\.\d)s", text)
    names = {name for name, _ in running}
    assert "test . pytest" in names, names
    assert {"render web/dev helm template", "render web/prd helm template"} & names, names
    # Finished steps stay on screen above, each with its outcome and duration.
    assert re.search(r"\[\d+/\d+\] typecheck \. mypy: ok in \d+\.\ds", text), text
    # The last frame: everything done, nothing running; then the summary table on stdout.
    done, started, still_running = headers[-1]
    assert done == started
    assert still_running == "0"
    assert text.rindex(f"ci: {done}/{started} steps done") < text.index("typecheck    passed")
    # Colour by default on a terminal; names only, never a step's argv.
    assert COLOUR.search(screen)
    assert "--kube-version" not in text
    assert "$SOURCE" not in text


@requires_tools("helm")
@pytest.mark.parametrize("flag", ["--no-color", "NO_COLOR"])
def test_no_color_flag_and_environment_take_the_colour_away(tmp_path: Path, flag: str) -> None:
    source = fixture_repo("ok", tmp_path)
    argv = ["render", "--source", str(source), "--out", str(tmp_path / "artifacts")]
    if flag == "NO_COLOR":
        screen = run_in_terminal(argv, environ={"NO_COLOR": "1"})
    else:
        screen = run_in_terminal([*argv, flag])
    assert "render: 4/4 steps done, 0 running" in ANSI.sub("", screen)
    assert not COLOUR.search(screen), repr(screen)


# --- without a terminal: plain lines, or nothing --------------------------------------------


@requires_tools("helm", "kubeconform", "conftest")
def test_without_a_terminal_each_finished_step_is_one_line(tmp_path: Path) -> None:
    source = fixture_repo("template-error", tmp_path)
    out = tmp_path / "artifacts"
    code, stdout, stderr = cli(["validate", "--source", str(source), "--out", str(out), *BUNDLED])

    assert code == 1
    lines = stderr.splitlines()
    parsed = [PLAIN_LINE.match(line) for line in lines]
    assert all(parsed), lines  # nothing else on stderr: no live frames in a log
    labels = {m[3]: m[4] for m in parsed if m}
    assert labels["render web/prd helm template"] == "exit 1"  # prd's values break the chart
    assert labels["helm-lint web/prd helm lint"] == "exit 1"
    assert labels["render web/dev helm template"] == "ok"
    assert labels["policy conftest test"] == "ok"
    # Counted as they finish: the last line has every started step done.
    last = parsed[-1]
    assert last is not None
    assert last[1] == last[2] == str(len(lines))
    # stdout is as it was: the results table, not progress.
    assert "render       failed" in stdout
    assert "steps done" not in stdout


@requires_tools("helm", "kubeconform", "conftest")
def test_quiet_prints_only_the_verdict(tmp_path: Path) -> None:
    source = fixture_repo("policy-violation", tmp_path)
    out = tmp_path / "artifacts"
    code, stdout, stderr = cli(
        ["validate", "--source", str(source), "--out", str(out), "--quiet", *BUNDLED]
    )
    assert code == 1
    assert stdout == "gitops-pipeline validate: failed\n"
    assert stderr == ""
    assert (out / "summary.json").is_file()  # the reports are written all the same


@requires_tools("helm")
def test_progress_none_shows_nothing(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    out = tmp_path / "artifacts"
    code, stdout, stderr = cli(
        ["render", "--source", str(source), "--out", str(out), "--progress", "none"]
    )
    assert code == 0
    assert stderr == ""
    assert "render       passed" in stdout


def test_an_observed_local_runner_still_runs_steps_on_this_host(tmp_path: Path) -> None:
    # A Python version matrix needs containers: a local runner must still say so when observed.
    source = charts_and_project(tmp_path)
    out = tmp_path / "artifacts"
    argv = ["test", "--source", str(source), "--out", str(out), "--python", "3.12"]
    code, _, stderr = cli([*argv, "--progress", "plain"])
    assert code == 2
    assert "a Python version matrix needs the Dagger runner" in stderr


# --- the pieces -------------------------------------------------------------------------------


def test_every_step_of_ci_is_labelled_with_its_stage(tmp_path: Path) -> None:
    """A renamed step would otherwise show under the verb's name instead of its stage."""
    source = charts_and_project(tmp_path)
    recorder = RecordingRunner(responder=dry_run_reply)
    run = Run(load_config(source), recorder, tmp_path / "artifacts", schema_cache=None)
    anyio.run(run_ci, run)
    stages = {progress.step_label(step, "ci").stage for step in recorder.steps}
    assert stages == CI_STAGES
    subjects = {str(progress.step_label(step, "ci")) for step in recorder.steps}
    assert {
        "render web/dev helm template",
        "helm-lint web/prd helm lint",
        "kubeconform",
    } <= subjects


def test_a_step_is_shown_by_its_name_never_its_arguments_or_secrets() -> None:
    step = Step(
        name="docker-login:ghcr.io",
        tool="docker",
        args=("login", "--username", "octocat", "--password-stdin", "ghcr.io"),
        stdin_secret=SecretRef("REGISTRY_PASSWORD", "env:GITHUB_TOKEN"),
    )
    shown = io.StringIO()
    display = progress.PlainDisplay("publish", shown, colour=False)
    display.started(step)
    display.finished(step, StepResult(step, 0, "Login Succeeded", "", (), 0.25))
    assert re.fullmatch(r"\[1/1\] publish ghcr\.io docker login: ok in \d\.\ds\n", shown.getvalue())


def test_a_step_that_could_not_start_is_reported_stopped_and_its_error_kept() -> None:
    def refuse(_step: Step) -> Reply:
        raise SetupError("helm is not installed")

    shown = io.StringIO()
    runner = ObservedRunner(
        RecordingRunner(responder=refuse), progress.PlainDisplay("render", shown, colour=False)
    )
    step = Step(name="helm-template:web/dev", tool="helm", args=("template",))
    with pytest.raises(SetupError, match="helm is not installed"):
        anyio.run(runner.run, step)
    assert shown.getvalue().startswith("[1/1] render web/dev helm template: stopped in ")


@pytest.mark.parametrize(
    ("requested", "quiet", "terminal", "engine_logs", "expected"),
    [
        ("auto", False, True, False, "live"),
        ("auto", False, False, False, "plain"),
        ("auto", False, True, True, "plain"),  # Dagger's log shares stderr
        ("plain", False, True, False, "plain"),
        ("live", False, False, False, "live"),
        ("live", True, True, False, "none"),
        ("auto", True, True, False, "none"),
    ],
)
def test_which_display(
    requested: str, quiet: bool, terminal: bool, engine_logs: bool, expected: str
) -> None:
    mode = progress.resolve_mode(
        progress.ProgressMode(requested), quiet=quiet, terminal=terminal, engine_logs=engine_logs
    )
    assert mode.value == expected


def test_no_color_means_set_and_not_empty() -> None:
    assert progress.colour_wanted(False, {})
    assert progress.colour_wanted(False, {"NO_COLOR": ""})
    assert not progress.colour_wanted(False, {"NO_COLOR": "0"})
    assert not progress.colour_wanted(True, {})


def test_a_plain_run_does_not_import_rich(tmp_path: Path) -> None:
    # Start-up stays light: rich is for the live display only (here: no chart, a quick exit 1).
    argv = [
        "validate",
        "--source",
        str(tmp_path),
        "--out",
        str(tmp_path / "a"),
        "--progress",
        "plain",
    ]
    code = (
        "import sys; from pipeline.cli import main; "
        f"main({argv!r}); "
        "sys.exit(10 + ('rich' in sys.modules))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=False, cwd=REPO_ROOT
    )
    assert finished.returncode == 10, finished.stderr
