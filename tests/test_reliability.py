"""Stopping cleanly: signals end every tool's process group, reports never lie, --out is safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, fixture_repo, processes_left_behind, requires_tools
from test_validate import run_cli, validate_repo

HANGING_PROJECT = {
    "pyproject.toml": (
        '[project]\nname = "hangs"\nversion = "0.1.0"\n\n'
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    ),
    "tests/test_hangs.py": (
        "import os, subprocess, time\n\n"
        "def test_hangs():\n"
        "    child = subprocess.Popen(['sleep', '300'])\n"
        "    with open(os.environ['HANG_MARKER'], 'w') as marker:\n"
        "        marker.write(f'{os.getpid()} {child.pid}')\n"
        "    time.sleep(300)\n"
    ),
}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: it runs nothing and its parent will reap it.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_every_tool_process_and_says_so(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    project = tmp_path / "project"
    for name, text in HANGING_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    cli = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "test", "--source", str(project), "--out", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "HANG_MARKER": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert cli.poll() is None, cli.communicate()
            assert time.monotonic() < deadline, "the hanging test never started"
            time.sleep(0.1)
        pytest_pid, child_pid = (int(p) for p in marker.read_text().split())
        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == code, stderr
    assert f"interrupted by {signum.name}" in stderr
    for pid in (pytest_pid, child_pid):
        assert not alive(pid), f"process {pid} outlived the run"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "interrupted"


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file", "is a file, not a directory"),
        ("root", "must not be the root of the file system"),
        ("source", "must not be the repository itself"),
        ("chart", "must not be inside charts/web"),
    ],
)
def test_out_must_be_a_directory_of_its_own(tmp_path: Path, where: str, message: str) -> None:
    source = fixture_repo("ok", tmp_path)
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    out = {
        "file": source / "charts" / "web" / "Chart.yaml",
        "root": Path("/"),
        "source": source,
        "chart": source / "charts" / "web" / "reports",
    }[where]
    run = validate_repo(source, out)
    assert run.exit_code == 2
    assert f"--out: {message}" in run.stderr
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before


@requires_tools("helm", "kubeconform", "conftest")
def test_a_configuration_error_replaces_the_last_verdict(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    out = tmp_path / "artifacts"
    assert validate_repo(source, out).exit_code == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "passed"
    (source / "pipeline.yaml").write_text("kubernets_version: 1.35.0\n", encoding="utf-8")
    run = validate_repo(source, out)
    assert run.exit_code == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "error"
    assert "unknown key 'kubernets_version'" in summary["stopped"]
    assert "error" in (out / "summary.md").read_text()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            "charts:\n  web:\n    environments:\n      prd:\n        values: [../outside.yaml]\n",
            "charts.web.environments.prd.values",
        ),
        ("charts:\n  other:\n    path: ../elsewhere\n", "charts.other.path"),
    ],
)
def test_paths_that_leave_the_repository_are_refused(
    tmp_path: Path, config: str, field: str
) -> None:
    source = fixture_repo("ok", tmp_path / "repo")
    (tmp_path / "repo" / "outside.yaml").write_text("replicas: 9\n", encoding="utf-8")
    (tmp_path / "repo" / "elsewhere").mkdir()
    (source / "pipeline.yaml").write_text(config, encoding="utf-8")
    run = validate_repo(source, tmp_path / "out")
    assert run.exit_code == 2, run.stdout + run.stderr
    assert f"pipeline.yaml: {field}" in run.stderr
    assert "resolves outside the repository" in run.stderr


def test_a_linked_overlay_that_leaves_the_repository_is_refused(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path / "repo")
    secret = tmp_path / "host-secrets.yaml"
    secret.write_text("password: x\n", encoding="utf-8")
    overlay = source / "charts" / "web" / "values-dev.yaml"
    overlay.unlink()
    overlay.symlink_to(secret)
    run = validate_repo(source, tmp_path / "out")
    assert run.exit_code == 2
    assert "charts/web/values-dev.yaml' resolves outside the repository" in run.stderr


@requires_tools("helm", "kubeconform", "conftest")
def test_a_values_file_that_is_not_utf8_is_a_finding(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    values = source / "charts" / "web" / "values-dev.yaml"
    values.write_bytes("replicas: 1\n# caf\u00e9\n".encode("utf-16"))
    run = validate_repo(source, tmp_path / "out")
    assert run.exit_code == 1
    (problem,) = run.check_problems("render")
    assert problem["file"] == "charts/web/values-dev.yaml"
    assert "is not UTF-8 text" in problem["message"]
    assert "Traceback" not in run.stderr
    assert (tmp_path / "out" / "rendered" / "web" / "prd.yaml").is_file()  # the rest ran


def test_the_left_behind_check_sees_a_stray_process() -> None:
    """The suite's final check (conftest.pytest_sessionfinish) finds what a test forgot."""
    stray = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5  # /proc shows the new program once exec completes
        seen = False
        while not seen and time.monotonic() < deadline:
            seen = any(
                line.startswith(f"{stray.pid}: sleep 60") for line in processes_left_behind()
            )
            time.sleep(0.05)
        assert seen, processes_left_behind()
    finally:
        stray.kill()
        stray.wait()
    assert not any(line.startswith(f"{stray.pid}:") for line in processes_left_behind())


def hanging_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name, text in HANGING_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    return project


@pytest.mark.parametrize(
    ("config", "flags", "limit"),
    [
        ("timeouts:\n  pytest: 2\n", (), "2s"),
        ("timeouts:\n  default: 300\n", ("--timeout", "1.5"), "1.5s"),
    ],
)
def test_a_step_over_its_time_limit_is_stopped_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, flags: tuple[str, ...], limit: str
) -> None:
    project = hanging_project(tmp_path)
    (project / "pipeline.yaml").write_text(config, encoding="utf-8")
    marker = tmp_path / "marker"
    monkeypatch.setenv("HANG_MARKER", str(marker))
    started = time.monotonic()
    code, _, _ = run_cli("test", "--source", str(project), "--out", str(tmp_path / "out"), *flags)
    assert time.monotonic() - started < 60
    assert code == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    (stage,) = summary["stages"]
    assert stage["status"] in {"failed", "error"}
    # The step limit (exit 124) or pytest-timeout's per-test share of it, whichever came first.
    assert any(
        f"time limit of {limit}" in f["message"] or "Timeout" in f["message"]
        for f in stage["findings"]
    ), stage
    for pid in (int(p) for p in marker.read_text().split()):
        assert not alive(pid)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("timeouts:\n  helmm: 3\n", "unknown tool 'helmm'; did you mean 'helm'?"),
        ("timeouts:\n  helm: 0\n", "expected a number of seconds above 0"),
    ],
)
def test_a_wrong_time_limit_is_a_config_error(tmp_path: Path, config: str, message: str) -> None:
    source = fixture_repo("ok", tmp_path)
    (source / "pipeline.yaml").write_text(config, encoding="utf-8")
    run = validate_repo(source, tmp_path / "out")
    assert run.exit_code == 2
    assert message in run.stderr


def test_version_outside_a_repository_or_before_a_commit_says_so(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    code, _, stderr = run_cli("version", "--source", str(plain))
    assert code == 2
    assert "the source is not a git repository" in stderr
    subprocess.run(["git", "init", "-q", str(plain)], check=True)
    code, _, stderr = run_cli("version", "--source", str(plain))
    assert code == 2
    assert "the repository has no commits yet" in stderr


def test_tags_that_are_not_versions_are_listed_as_ignored(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "feat: first"], check=True)
    for tag in ("v1.0.0", "deploy-2026-11-27", "latest"):
        subprocess.run([*git, "tag", tag], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "fix: second"], check=True)
    code, stdout, _ = run_cli("version", "--json", "--source", str(repo))
    assert code == 0
    decided = json.loads(stdout)
    assert decided["next"] == "1.0.1"
    assert decided["ignored_tags"] == ["deploy-2026-11-27", "latest"]


@pytest.mark.parametrize("verb", ["lint", "typecheck", "test"])
def test_an_invalid_pyproject_is_a_config_error_in_every_python_stage(
    tmp_path: Path, verb: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project\nname = "x"\n', encoding="utf-8")
    code, _, stderr = run_cli(verb, "--source", str(project), "--out", str(tmp_path / "out"))
    assert code == 2, stderr
    assert "pyproject.toml: invalid TOML" in stderr
    assert "Traceback" not in stderr


def released_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "app").mkdir()
    (repo / "app" / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "feat: first"], check=True)
    return repo


def test_a_missing_dockerfile_is_a_config_error_before_anything_runs(tmp_path: Path) -> None:
    repo = released_repo(tmp_path)
    code, _, stderr = run_cli(
        "build", "--source", str(repo), "--image", "registry.test/acme/x", "--dockerfile", "nope"
    )
    assert code == 2
    assert "image.dockerfile (or --dockerfile): no Dockerfile at nope" in stderr


def test_secret_references_are_resolved_before_the_release_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = released_repo(tmp_path)
    monkeypatch.delenv("GITOPS_TEST_UNSET_TOKEN", raising=False)
    code, _, stderr = run_cli(
        "release",
        "--source",
        str(repo),
        "--out",
        str(tmp_path / "out"),
        "--image",
        "registry.test/acme/x",
        "--registry-password",
        "env:GITOPS_TEST_UNSET_TOKEN",
    )
    assert code == 2
    assert "environment variable GITOPS_TEST_UNSET_TOKEN is not set" in stderr
    tags = subprocess.run(
        ["git", "-C", str(repo), "tag", "--list"], capture_output=True, text=True, check=True
    )
    assert tags.stdout == ""  # nothing was claimed


@requires_tools("helm", "kubeconform", "conftest")
def test_a_run_removes_only_what_the_last_run_of_ours_wrote(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    out = tmp_path / "artifacts"
    (out / "rendered" / "notes").mkdir(parents=True)
    theirs = [out / "README.txt", out / "rendered" / "notes" / "keep.md"]
    for path in theirs:
        path.write_text("not gitops-pipeline's\n", encoding="utf-8")
    assert validate_repo(source, out).exit_code == 0
    assert (out / "rendered" / "web" / "prd.yaml").is_file()
    assert validate_repo(source, out, "--env", "dev").exit_code == 0
    # The prd render of the first run would read as this run's: gone. Theirs: untouched.
    assert not (out / "rendered" / "web" / "prd.yaml").exists()
    assert (out / "rendered" / "web" / "dev.yaml").is_file()
    assert all(p.read_text(encoding="utf-8") == "not gitops-pipeline's\n" for p in theirs)
    manifest = json.loads((out / ".gitops-pipeline-manifest.json").read_text(encoding="utf-8"))
    assert "rendered/web/dev.yaml" in manifest["files"]
    assert "README.txt" not in manifest["files"]
