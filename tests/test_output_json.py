"""`--format json`: stdout is one JSON document, on every verb, and for a check it is summary.json.

Every verb runs in-process with the real tools; human text (tables, progress, errors) must be
on stderr so that `gitops-pipeline VERB --format json | jq` always reads one document.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, fixture_repo, requires_tools

from pipeline.cli import VERBS, main
from pipeline.policy import RULES
from pipeline.reports import SUMMARY_SCHEMA_VERSION
from pipeline.tools import TOOLS

PYTHON_OK = REPO_ROOT / "tests" / "fixtures" / "python" / "ok"
BUNDLED = ("--schema-location", "bundled")
CHECK_VERBS = ("render", "kubeconform", "policy", "validate", "lint", "typecheck", "test", "ci")


def cli(argv: list[str]) -> tuple[int, Any, str]:
    """Exit code, the one JSON document on stdout, and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main([*argv, "--format", "json"])
    return code, json.loads(stdout.getvalue()), stderr.getvalue()


def summary_of(out: Path) -> Any:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_every_check_verb_is_covered() -> None:
    assert {name for name, item in VERBS.items() if item.check} == set(CHECK_VERBS)


@pytest.fixture(scope="module")
def checked(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], tuple[int, Any, str, Path]]:
    """Each check verb once, on one repository with charts and a Python project."""
    base = tmp_path_factory.mktemp("checks")
    source = fixture_repo("ok", base)
    shutil.copytree(PYTHON_OK, source, dirs_exist_ok=True)
    done: dict[str, tuple[int, Any, str, Path]] = {}

    def get(verb: str) -> tuple[int, Any, str, Path]:
        if verb not in done:
            out = base / f"artifacts-{verb}"
            extra = BUNDLED if verb in {"kubeconform", "validate", "ci"} else ()
            done[verb] = (*cli([verb, "--source", str(source), "--out", str(out), *extra]), out)
        return done[verb]

    return get


@requires_tools("helm", "kubeconform", "conftest", "ruff", "mypy", "pytest")
@pytest.mark.parametrize("verb", CHECK_VERBS)
def test_a_check_prints_its_summary_json(
    checked: Callable[[str], tuple[int, Any, str, Path]], verb: str
) -> None:
    code, document, stderr, out = checked(verb)
    assert code == 0, stderr
    assert document == summary_of(out)
    assert document["schema_version"] == SUMMARY_SCHEMA_VERSION
    assert document["status"] == "passed"
    assert document["stages"]
    # The human table went to stderr, not into the document's stream.
    assert f"artifacts: {out}" in stderr


@requires_tools("helm", "kubeconform", "conftest")
def test_a_failed_check_prints_its_summary_json_and_exits_1(tmp_path: Path) -> None:
    source = fixture_repo("policy-violation", tmp_path)
    out = tmp_path / "artifacts"
    code, document, _ = cli(["policy", "--source", str(source), "--out", str(out), "--quiet"])
    assert code == 1
    assert document == summary_of(out)
    assert document["status"] == "failed"
    policy = next(s for s in document["stages"] if s["stage"] == "policy")
    assert any(f["status"] == "failed" for f in policy["findings"])


def test_a_configuration_error_is_a_json_error_document(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text("kubernets_version: 1.35.0\n", encoding="utf-8")
    code, document, stderr = cli(
        ["validate", "--source", str(tmp_path), "--out", str(tmp_path / "a")]
    )
    assert code == 2
    assert document["status"] == "error"
    assert document["exit_code"] == 2
    assert document["verb"] == "validate"
    assert "kubernets_version" in document["message"]
    assert stderr.splitlines()[-1] == f"gitops-pipeline validate: error: {document['message']}"


@requires_tools("helm", "kubeconform", "conftest")
def test_an_environment_error_is_a_json_error_document(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    out = tmp_path / "artifacts"
    unreachable = ("--schema-location", "http://127.0.0.1:9/schemas")
    code, document, stderr = cli(
        ["kubeconform", "--source", str(source), "--out", str(out), *unreachable]
    )
    assert code == 3
    assert document["status"] == "error"
    assert document["exit_code"] == 3
    assert "http://127.0.0.1:9" in document["message"]
    assert "kubeconform  error" in stderr  # the table, on stderr


def test_a_usage_error_of_a_verb_is_a_json_error_document(tmp_path: Path) -> None:
    code, document, _ = cli(["build", "--source", str(tmp_path), "--out", str(tmp_path / "a")])
    assert code == 2
    assert document["status"] == "error"
    assert "no image" in document["message"]


def test_a_dry_run_lists_the_planned_steps(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    code, document, _ = cli(["validate", "--source", str(source), "--dry-run"])
    assert code == 0
    assert document["status"] == "planned"
    steps = document["result"]["steps"]
    assert any(step.startswith("helm-template:web/dev: ") for step in steps)


def test_policies(tmp_path: Path) -> None:
    code, document, stderr = cli(["policies", "--source", str(tmp_path)])
    assert code == 0
    assert document["verb"] == "policies"
    assert [rule["id"] for rule in document["result"]["rules"]] == [rule.id for rule in RULES]
    assert "GP001" in stderr  # the human catalogue


def test_tools(tmp_path: Path) -> None:
    code, document, _ = cli(["tools", "--source", str(tmp_path)])
    assert code == 0
    tools = {tool["name"]: tool for tool in document["result"]["tools"]}
    assert set(tools) == set(TOOLS)
    assert tools["helm"]["version"] == TOOLS["helm"].version
    assert tools["helm"]["image"].startswith(("alpine/helm:", "docker.io/alpine/helm:"))


@requires_tools("helm", "kubeconform", "conftest")
def test_plan(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    code, document, _ = cli(["plan", "--source", str(source)])
    assert code == 0
    assert "helm-template:web/prd" in document["result"]["plan"]


def committed_repository(path: Path, *subjects: str) -> Path:
    path.mkdir()
    env = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for subject in subjects:
        subprocess.run(
            ["git", *env, "-C", str(path), "commit", "-q", "--allow-empty", "-m", subject],
            check=True,
        )
    return path


@requires_tools("git")
def test_version_and_version_json(tmp_path: Path) -> None:
    source = committed_repository(tmp_path / "repo", "feat: first", "fix: second")
    argv = ["version", "--source", str(source), "--out", str(tmp_path / "a")]
    code, document, _ = cli(argv)
    assert code == 0
    assert document["status"] == "passed"
    assert [c["type"] for c in document["result"]["commits"]] == ["fix", "feat"]
    assert document["result"]["next"] is not None
    # `--json` keeps printing the decision itself, the same one.
    stdout = io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(io.StringIO()):
        assert main([*argv, "--json"]) == 0
    assert json.loads(stdout.getvalue()) == document["result"]


@requires_tools("git")
def test_changelog(tmp_path: Path) -> None:
    source = committed_repository(tmp_path / "repo", "feat: add the greeting")
    code, document, _ = cli(["changelog", "--source", str(source), "--out", str(tmp_path / "a")])
    assert code == 0
    assert document["result"]["released"] is True
    assert "add the greeting" in document["result"]["markdown"]


def test_schemas(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    code, document, _ = cli(["schemas", "--source", str(tmp_path), "--out", str(out)])
    assert code == 0
    result = document["result"]
    assert result["kubernetes_schemas"] > 0
    assert result["schema_locations"][0] == str(out)
