"""Every Dagger function called for real with `dagger call`, on the local engine.

The module is this repository's, copied file for file with the documented base-image
override; each repository under test selects the look-alike images through pipeline.yaml's
`tools.<name>.image`. Where a function has a local counterpart, the differential tests hold
the two runners to the same findings, statuses and rendered output.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURE_REPOS, REPO_ROOT
from engine import Engine, copy_module, module_files
from services import find_services, registry_digests, registry_labels, registry_tags

from pipeline.tools import TOOLS

PYTHON_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "python"
FUNCTIONS = (
    "argocd",
    "build",
    "changelog",
    "check",
    "ci",
    "kubeconform",
    "lint",
    "lint-env",
    "plan",
    "policies",
    "policy",
    "publish",
    "release",
    "render",
    "schemas",
    "test",
    "test-env",
    "tool-env",
    "tools",
    "typecheck",
    "typecheck-env",
    "validate",
    "version",
)


def chart_repo(engine: Engine, target: Path, name: str) -> Path:
    shutil.copytree(FIXTURE_REPOS / name, target)
    engine.use_look_alikes(target)
    return target


def local_cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return data


def comparable(data: dict[str, Any], roots: dict[str, str]) -> dict[str, Any]:
    """A summary without durations, each runner's own paths replaced by the root's name."""
    text = json.dumps(data, sort_keys=True)
    for path, name in sorted(roots.items(), key=lambda item: -len(item[0])):
        # Only where a path starts: `py/app/src/calc` keeps its `/src`.
        text = re.sub(rf"(?<![\w./-]){re.escape(path)}(?=[/\"\s:]|$)", name, text)
    clean: dict[str, Any] = json.loads(text)
    for stage in clean["stages"]:
        stage.pop("duration_seconds", None)
    return clean


def container_roots() -> dict[str, str]:
    return {"/src": "$SOURCE", "/out": "$OUT"}


# --- the README's commands are these tests' commands ---------------------------------------------


def readme_calls() -> list[tuple[str, set[str]]]:
    """(function, flags) of every `dagger call`/`dagger check` line in the README."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("## With Dagger") : text.index("## CI wrappers")]
    commands = block.replace("\\\n", " ").splitlines()
    calls = []
    for line in commands:
        words = line.split("#")[0].split()
        if words[:2] == ["dagger", "check"]:
            calls.append(("check", set()))
        elif words[:2] == ["dagger", "call"] and len(words) > 2 and not words[2].startswith("-"):
            flags = {w for w in words[3:] if w.startswith("--")} - {"--path"}
            calls.append((words[2], flags))
    return calls


def test_every_readme_command_is_run_by_these_tests() -> None:
    tests = Path(__file__).read_text(encoding="utf-8")
    calls = readme_calls()
    assert {function for function, _ in calls} >= {"validate", "ci", "release", "check"}
    for function, flags in calls:
        if function == "check":
            assert '"check", "-m"' in tests
            continue
        assert f'"{function}"' in tests, function
        for flag in flags:
            assert f'"{flag}"' in tests, (function, flag)


# --- module load ------------------------------------------------------------------------------


def test_dagger_functions_lists_every_function(engine: Engine, module: Path) -> None:
    listed = engine.dagger("functions", "-m", str(module), cwd=module).check()
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert set(FUNCTIONS) <= names
    print(f"dagger functions: {listed.seconds:.1f}s")  # noqa: T201 - the measured load time


def test_the_copy_differs_from_the_repository_only_by_the_base_image(module: Path) -> None:
    for name in module_files():
        ours, theirs = REPO_ROOT / name, module / name
        if name == "pyproject.toml":
            assert (
                tomllib.loads(theirs.read_text())["tool"]["dagger"]["base-image"]
                != (tomllib.loads(ours.read_text())["tool"]["dagger"]["base-image"])
            )
            continue
        assert theirs.read_bytes() == ours.read_bytes(), name


def test_the_committed_uv_lock_is_current(engine: Engine, tmp_path: Path) -> None:
    """`dagger develop` vendors the engine's SDK; against it the committed lock needs no change."""
    copy = copy_module(tmp_path / "module", engine)
    engine.dagger("develop", "-m", str(copy), cwd=copy).check()
    assert (copy / "sdk" / "pyproject.toml").is_file()
    # develop re-locks (without upgrading): a current lock comes back byte for byte.
    assert (copy / "uv.lock").read_bytes() == (REPO_ROOT / "uv.lock").read_bytes()
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv is not None, "uv is in the dev extra"
    locked = subprocess.run(
        [uv, "lock", "--check"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )
    assert locked.returncode == 0, locked.stderr


# --- validate and its parts ---------------------------------------------------------------------


def test_validate_exports_every_report(engine: Engine, module: Path, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    out = tmp_path / "artifacts"
    engine.call(
        module,
        "validate",
        "--env",
        "dev",
        "--env",
        "prd",
        "export",
        "--path",
        str(out),
        source=repo,
    ).check()
    data = summary(out)
    assert data["status"] == "passed"
    stages = {s["stage"]: s for s in data["stages"]}
    assert set(stages) == {"helm-lint", "render", "kubeconform", "policy", "secrets"}
    assert stages["kubeconform"]["checked"] > 0
    assert (out / "rendered.yaml").read_text(encoding="utf-8").count("kind: Deployment") == 2
    for name in ("junit.xml", "policy.sarif", "kubeconform.json", "summary.md"):
        assert (out / name).is_file(), name
    assert not (out / ".cache").exists()  # the schema bundle is not an artifact


def test_validate_checks_only_what_changed_since_a_ref(
    engine: Engine, module: Path, tmp_path: Path
) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    api = repo / "charts" / "api"
    shutil.copytree(repo / "charts" / "web", api)
    chart_yaml = api / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text(encoding="utf-8").replace("name: web", "name: api"), "utf-8"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: two charts")
    git(repo, "switch", "-q", "-c", "topic")
    (api / "values-prd.yaml").write_text("replicaCount: 3\n", encoding="utf-8")
    git(repo, "commit", "-q", "-am", "fix(api): three replicas in prd")
    out = tmp_path / "artifacts"
    engine.call(
        module,
        "validate",
        "--changed-since",
        "main",
        "--git-dir",
        str(repo / ".git"),
        "export",
        "--path",
        str(out),
        source=repo,
    ).check()
    data = summary(out)
    assert data["status"] == "passed"
    assert data["changed_since"]["checked"] == ["api"]
    assert list(data["changed_since"]["skipped"]) == ["web"]
    assert data["changed_since"]["changed_files"] == ["charts/api/values-prd.yaml"]
    assert {t["chart"] for t in data["targets"]} == {"api"}


@pytest.mark.parametrize(
    ("function", "stages"),
    [
        ("render", {"helm-lint", "render"}),
        ("kubeconform", {"render", "kubeconform"}),
        ("policy", {"render", "policy"}),
    ],
)
def test_each_part_of_validate(
    engine: Engine, module: Path, tmp_path: Path, function: str, stages: set[str]
) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "policy-violation")
    out = tmp_path / "artifacts"
    engine.call(module, function, "--env", "dev", "export", "--path", str(out), source=repo).check()
    data = summary(out)
    assert {s["stage"] for s in data["stages"]} == stages
    rendered = (out / "rendered" / "web" / "dev.yaml").read_text(encoding="utf-8")
    assert "kind: Deployment" in rendered
    assert not (out / "rendered" / "web" / "prd.yaml").exists()
    if function == "policy":
        assert data["status"] == "failed"
        assert any(f["check"] == "policy" for s in data["stages"] for f in s["findings"])
    else:
        assert data["status"] == "passed"


def test_the_engine_shows_steps_by_the_names_the_cli_shows(
    engine: Engine, module: Path, tmp_path: Path
) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    # A source the engine has never seen: a step it ran for an earlier test is served from its
    # cache without running, and only what runs is shown by name.
    values = repo / "charts" / "web" / "values.yaml"
    values.write_text(
        values.read_text(encoding="utf-8") + f"# run {uuid.uuid4()}\n", encoding="utf-8"
    )
    done = engine.call(
        module, "render", "--env", "dev", "export", "--path", str(tmp_path / "out"), source=repo
    ).check()
    # dagger's plain progress prints each span's name: the same labels as `--progress plain`.
    assert "render web/dev helm template" in done.stderr
    assert "helm-lint web/dev helm lint" in done.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURE_REPOS.iterdir()))
def test_both_runners_agree_on_every_fixture_repository(
    engine: Engine, module: Path, tmp_path: Path, name: str
) -> None:
    repo = chart_repo(engine, tmp_path / "repo", name)
    dagger_out, local_out = tmp_path / "dagger", tmp_path / "local"
    engine.call(module, "validate", "export", "--path", str(dagger_out), source=repo).check()
    local = local_cli("validate", "--source", str(repo), "--out", str(local_out))
    assert local.returncode in {0, 1, 2}, local.stderr
    ours = comparable(summary(local_out), {str(local_out): "$OUT", str(repo): "$SOURCE"})
    theirs = comparable(summary(dagger_out), container_roots())
    assert theirs == ours
    for rendered in sorted(local_out.glob("rendered/**/*.yaml")):
        relative = rendered.relative_to(local_out)
        assert (dagger_out / relative).read_bytes() == rendered.read_bytes(), relative


def test_dagger_check_passes_on_this_repository(engine: Engine, tmp_path: Path) -> None:
    repo = self_copy(engine, tmp_path / "self")
    done = engine.dagger("check", "-m", str(repo), cwd=repo).check()
    assert "check" in done.stdout + done.stderr


def test_dagger_check_fails_on_a_policy_violation(engine: Engine, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "policy-violation")
    copy_module(repo, engine)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    done = engine.dagger("check", "-m", str(repo), cwd=repo)
    assert done.exit_code != 0
    assert "validation failed" in done.stdout + done.stderr


def self_copy(engine: Engine, target: Path) -> Path:
    """This repository as a clone would have it, with both documented overrides."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if (REPO_ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, target / name)
    copy_module(target, engine)
    engine.use_look_alikes(target)
    git(target, "init", "-q")
    git(target, "add", "-A")
    return target


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


# --- Python stages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def python_repo(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every Python fixture project as one repository's python.paths, beside a chart."""
    repo = tmp_path_factory.mktemp("python") / "repo"
    shutil.copytree(FIXTURE_REPOS / "ok", repo)
    projects = sorted(p.name for p in PYTHON_FIXTURES.iterdir())
    for name in projects:
        shutil.copytree(PYTHON_FIXTURES / name, repo / "py" / name)
    (repo / "pipeline.yaml").write_text(
        json.dumps({"python": {"paths": [f"py/{n}" for n in projects]}}), encoding="utf-8"
    )
    engine.use_look_alikes(repo)
    return repo


@pytest.mark.parametrize("stage", ["lint", "typecheck", "test"])
def test_python_stages_agree_with_the_local_runner(
    engine: Engine, module: Path, python_repo: Path, tmp_path: Path, stage: str
) -> None:
    dagger_out, local_out = tmp_path / "dagger", tmp_path / "local"
    engine.call(module, stage, "export", "--path", str(dagger_out), source=python_repo).check()
    local = local_cli(stage, "--source", str(python_repo), "--out", str(local_out))
    assert local.returncode in {0, 1}, local.stderr
    ours = comparable(summary(local_out), {str(local_out): "$OUT", str(python_repo): "$SOURCE"})
    theirs = comparable(summary(dagger_out), container_roots())
    assert theirs == ours
    assert theirs["status"] == "failed"  # each stage has a fixture planted to fail it
    problems = [f for s in theirs["stages"] for f in s["findings"] if f["status"] != "passed"]
    assert problems
    assert all(f.get("file") for f in problems if f["check"] in {"ruff", "mypy"})


def test_test_on_each_available_python(
    engine: Engine, module: Path, tmp_path: Path, python_only_repo: Path
) -> None:
    out = tmp_path / "artifacts"
    engine.call(
        module, "test", "--python", "3.11", "export", "--path", str(out), source=python_only_repo
    ).check()
    data = summary(out)
    assert data["status"] == "passed"
    assert "3.11" in (out / "summary.md").read_text(encoding="utf-8")


@pytest.fixture
def python_only_repo(engine: Engine, tmp_path: Path) -> Path:
    repo = tmp_path / "ok"
    shutil.copytree(PYTHON_FIXTURES / "ok", repo)
    engine.use_look_alikes(repo)
    return repo


def test_ci_merges_every_stage(engine: Engine, module: Path, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    shutil.copytree(PYTHON_FIXTURES / "ok", repo / "app")
    config = json.loads(json.dumps(_yaml(repo / "pipeline.yaml")))
    config["python"] = {"paths": ["app"]}
    (repo / "pipeline.yaml").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "artifacts"
    engine.call(module, "ci", "export", "--path", str(out), source=repo).check()
    data = summary(out)
    assert data["status"] == "passed", json.dumps(data, indent=1)[:3000]
    stages = {s["stage"] for s in data["stages"]}
    assert {"lint", "typecheck", "test", "render", "kubeconform", "policy"} <= stages
    assert "<testsuite" in (out / "junit.xml").read_text(encoding="utf-8")


def _yaml(path: Path) -> Any:
    import yaml  # noqa: PLC0415

    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("function", "command", "expected"),
    [
        ("lint-env", "ruff --version", f"ruff {TOOLS['ruff'].version}"),
        ("typecheck-env", "mypy --version", f"mypy {TOOLS['mypy'].version}"),
        ("test-env", "pytest --version", f"pytest {TOOLS['pytest'].version}"),
    ],
)
def test_each_stage_container_is_ready_for_a_terminal(
    engine: Engine,
    module: Path,
    python_only_repo: Path,
    function: str,
    command: str,
    expected: str,
) -> None:
    argv = ",".join(command.split())
    done = engine.call(
        module, function, "with-exec", "--args", argv, "stdout", source=python_only_repo
    ).check()
    assert expected in done.stdout
    # Where a terminal opens: the project's directory, its sources mounted.
    listed = engine.call(
        module, function, "with-exec", "--args", "ls,src", "stdout", source=python_only_repo
    ).check()
    assert "calc" in listed.stdout


@pytest.mark.parametrize(
    ("tool", "argv", "expected"),
    [
        ("helm", "helm,version,--short", f"v{TOOLS['helm'].version}"),
        ("conftest", "conftest,--version", TOOLS["conftest"].version),
        ("kubeconform", "/kubeconform,-v", TOOLS["kubeconform"].version),
    ],
)
def test_tool_env_runs_the_pinned_tool(
    engine: Engine, module: Path, tmp_path: Path, tool: str, argv: str, expected: str
) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    done = engine.call(
        module, "tool-env", "--tool", tool, "with-exec", "--args", argv, "stdout", source=repo
    ).check()
    assert expected in done.stdout.splitlines()[0], done.stdout


# --- plan, tools, schemas -----------------------------------------------------------------------


def test_plan(engine: Engine, module: Path, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "external-overlay")
    done = engine.call(module, "plan", "--env", "prd", source=repo).check()
    assert "infra/clusters/prd/web-values.yaml" in done.stdout
    assert "web/dev" not in done.stdout
    local = local_cli("plan", "--env", "prd", "--source", str(repo))
    assert local.returncode == 0
    assert done.stdout.strip() == local.stdout.strip()


def test_policies_lists_the_pack(engine: Engine, module: Path, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    done = engine.call(module, "policies", source=repo).check()
    local = local_cli("policies")
    assert done.stdout.strip() == local.stdout.strip()
    assert done.stdout.startswith("GP001")


def test_tools_shows_the_images_in_use(engine: Engine, module: Path, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    done = engine.call(module, "tools", source=repo).check()
    rows = {line.split("\t")[0]: line.split("\t") for line in done.stdout.splitlines() if line}
    assert set(rows) == set(TOOLS)
    for name, image in engine.tool_images.items():
        assert rows[name][3] == image


def test_schemas_writes_a_full_offline_bundle(engine: Engine, module: Path, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "ok")
    out = tmp_path / "bundle"
    engine.call(
        module,
        "schemas",
        "--kubernetes-version",
        "1.35.0",
        "export",
        "--path",
        str(out),
        source=repo,
    ).check()
    strict = out / "v1.35.0-standalone-strict"
    assert (strict / "deployment-apps-v1.json").is_file()
    assert len(list(strict.iterdir())) > 300
    assert (out / "crds" / "argoproj.io" / "rollout_v1alpha1.json").is_file()


# --- the CLI against the same engine ------------------------------------------------------------


def test_the_cli_runs_on_the_engine(engine: Engine, tmp_path: Path) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "policy-violation")
    out, local_out = tmp_path / "dagger", tmp_path / "local"
    done = engine.dagger(
        "run",
        sys.executable,
        "-m",
        "pipeline.cli",
        "validate",
        "--runner",
        "dagger",
        "--source",
        str(repo),
        "--out",
        str(out),
        cwd=REPO_ROOT,
    )
    assert done.exit_code == 1, done.stderr[-3000:]
    local = local_cli("validate", "--source", str(repo), "--out", str(local_out))
    assert local.returncode == 1
    ours = comparable(summary(local_out), {str(local_out): "$OUT", str(repo): "$SOURCE"})
    theirs = comparable(summary(out), container_roots())
    assert theirs == ours


HANGING_SUITE = (
    "import time\n\n"
    "def test_before():\n    pass\n\n"
    "def test_hangs():\n    time.sleep(300)\n\n"
    "def test_after():\n    pass\n"
)


def test_time_limits_hold_in_the_engine(engine: Engine, tmp_path: Path) -> None:
    """pytest-timeout names the hanging test in the container too, and the rest still run."""
    repo = tmp_path / "hangs"
    (repo / "tests").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "hangs"\nversion = "0.1.0"\n', encoding="utf-8"
    )
    (repo / "tests" / "test_suite.py").write_text(HANGING_SUITE, encoding="utf-8")
    engine.use_look_alikes(repo)
    out = tmp_path / "out"
    done = engine.dagger(
        "run",
        sys.executable,
        "-m",
        "pipeline.cli",
        "test",
        "--runner",
        "dagger",
        "--timeout",
        "20",
        "--source",
        str(repo),
        "--out",
        str(out),
        cwd=REPO_ROOT,
    )
    assert done.exit_code == 1, done.stderr[-3000:]
    (stage,) = summary(out)["stages"]
    (hung,) = stage["findings"]
    assert "test_hangs" in hung["message"]
    assert "Timeout (>16" in hung["message"]
    assert (hung["file"], hung["line"]) == ("tests/test_suite.py", 6)
    assert "3 tests" in stage["summary"]


STOPPED_FROM_OUTSIDE = """
import asyncio, json, sys
import dagger
from dagger import dag
from pathlib import Path
from pipeline.model import Step
from pipeline.runners.dagger_runner import DaggerRunner

async def main() -> None:
    async with dagger.connection(dagger.Config(log_output=sys.stderr)):
        runner = DaggerRunner(
            source=dag.directory(), out=Path(sys.argv[1]), images={"helm": sys.argv[2]},
            timeouts={"helm": 3},
        )
        step = Step(name="sleeps", tool="helm", args=("4321",), container_argv0="/bin/sleep")
        result = await runner.run(step)
        print(json.dumps({"exit_code": result.exit_code, "stderr": result.stderr,
                          "timed_out_after": result.timed_out_after, "seconds": result.duration}))

asyncio.run(main())
"""


def test_an_image_without_gnu_timeout_is_stopped_from_the_client(
    engine: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "stopped.py"
    script.write_text(STOPPED_FROM_OUTSIDE, encoding="utf-8")
    done = engine.dagger(
        "run", sys.executable, str(script), str(tmp_path), engine.tool_images["helm"], cwd=REPO_ROOT
    )
    assert done.exit_code == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["exit_code"] == 124
    assert result["timed_out_after"] == 3
    assert "timed out after 3s in the Dagger engine" in result["stderr"]
    assert result["seconds"] < 30
    # Giving up the query stopped the exec in the engine too: no `sleep 4321` is left.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", "sleep 4321"], capture_output=True, check=False)
        if left.returncode != 0:
            break
        time.sleep(1)
    assert left.returncode != 0, left.stdout


# --- release side -------------------------------------------------------------------------------

HELLO_DOCKERFILE = (
    "FROM busybox:latest\nCOPY hello.txt /srv/hello.txt\nUSER 10001\n"
    'CMD ["cat", "/srv/hello.txt"]\n'
)


@pytest.fixture
def history(engine: Engine, tmp_path: Path) -> Path:
    """A released repository with one fix since: v1.0.0, then `fix: ...`."""
    repo = chart_repo(engine, tmp_path / "history", "ok")
    (repo / "app").mkdir()
    (repo / "app" / "Dockerfile").write_text(HELLO_DOCKERFILE, encoding="utf-8")
    (repo / "app" / "hello.txt").write_text("hello\n", encoding="utf-8")
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: first feature")
    git(repo, "tag", "-a", "v1.0.0", "-m", "release v1.0.0")
    (repo / "app" / "hello.txt").write_text("hello again\n", encoding="utf-8")
    git(repo, "commit", "-q", "-am", "fix(app): say hello again")
    return repo


def test_version_agrees_with_the_local_runner(engine: Engine, module: Path, history: Path) -> None:
    git_dir = str(history / ".git")
    plain = engine.call(module, "version", "--git-dir", git_dir, source=history).check()
    assert plain.stdout.strip() == "1.0.1"
    as_json = engine.call(
        module, "version", "--git-dir", git_dir, "--json-output", source=history
    ).check()
    decided = json.loads(as_json.stdout)
    local = local_cli("version", "--json", "--source", str(history))
    assert local.returncode == 0, local.stderr
    assert decided == json.loads(local.stdout)
    assert decided["bump"] == "patch"


def test_changelog_is_dated_today(engine: Engine, module: Path, history: Path) -> None:
    import datetime as dt  # noqa: PLC0415

    done = engine.call(
        module, "changelog", "--git-dir", str(history / ".git"), source=history
    ).check()
    assert "1.0.1" in done.stdout
    assert dt.datetime.now(dt.UTC).date().isoformat() in done.stdout
    assert "say hello again" in done.stdout


def test_build_labels_the_image_with_the_version(
    engine: Engine, module: Path, history: Path
) -> None:
    base = ("build", "--git-dir", str(history / ".git"), "--image", "registry.test/acme/hello")
    ran = engine.call(
        module, *base, "with-exec", "--args", "cat,/srv/hello.txt", "stdout", source=history
    ).check()
    assert ran.stdout == "hello again\n"
    label = engine.call(
        module, *base, "label", "--name", "org.opencontainers.image.version", source=history
    ).check()
    assert label.stdout.strip() == "1.0.1"
    user = engine.call(module, *base, "user", source=history).check()
    assert user.stdout.strip() == "10001"


def test_publish_pushes_every_tag_on_one_digest(
    engine: Engine, module: Path, history: Path
) -> None:
    services = find_services()
    image = f"{services.auth_registry}/acme/hello-{uuid.uuid4().hex[:8]}"
    password = services.auth_password
    done = engine.call(
        module,
        "publish",
        "--git-dir",
        str(history / ".git"),
        "--image",
        image,
        "--registry-username",
        services.auth_user,
        "--registry-password",
        "env:GITOPS_TEST_REGISTRY_PASSWORD",
        source=history,
        env={"GITOPS_TEST_REGISTRY_PASSWORD": password},
    ).check()
    auth = (services.auth_user, password)
    commit = git(history, "rev-parse", "--short=7", "HEAD").strip()
    tags = sorted(registry_tags(image, auth=auth) or [])
    assert tags == sorted(["1.0.1", "1.0", "1", "latest", f"sha-{commit}"])
    digests = set(registry_digests(image, tags, auth=auth).values())
    assert len(digests) == 1
    assert registry_labels(image, "1.0.1", auth=auth)["org.opencontainers.image.version"] == "1.0.1"
    assert password not in done.stdout + done.stderr


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A bare remote served by `git daemon` on 127.0.0.1, pushes allowed."""
    served = tmp_path / "served"
    remote = served / "remote.git"
    remote.mkdir(parents=True)
    git(remote, "init", "-q", "--bare")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={served}",
            str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield remote, port
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_release_claims_the_tag_and_publishes_and_a_rerun_changes_nothing(
    engine: Engine, module: Path, history: Path, git_server: tuple[Path, int]
) -> None:
    remote, port = git_server
    services = find_services()
    image = f"{services.registry}/acme/released-{uuid.uuid4().hex[:8]}"
    git(history, "push", "-q", f"git://127.0.0.1:{port}/remote.git", "main", "v1.0.0")
    release = (
        "release",
        "--git-dir",
        str(history / ".git"),
        "--image",
        image,
        "--registry-username",
        "ci",
        "--registry-password",
        "env:GITOPS_TEST_REGISTRY_PASSWORD",
        "--remote",
        f"git://git-server:{port}/remote.git",
        "--git-server",
        f"tcp://localhost:{port}",
        "--git-token",
        "env:GITOPS_TEST_GIT_TOKEN",
    )
    env = {
        "GITOPS_TEST_REGISTRY_PASSWORD": "unused-by-an-open-registry",
        "GITOPS_TEST_GIT_TOKEN": "unused-by-git-daemon",
    }
    out = history.parent / "released"
    engine.call(module, *release, "export", "--path", str(out), source=history, env=env).check()
    assert (out / ".version").read_text(encoding="utf-8").strip() == "1.0.1"
    tags = git(remote, "tag", "--list").split()
    assert tags == ["v1.0.0", "v1.0.1"]
    claimed = git(remote, "rev-parse", "v1.0.1^{commit}").strip()
    assert claimed == git(history, "rev-parse", "HEAD").strip()
    pushed = sorted(registry_tags(image) or [])
    assert "1.0.1" in pushed
    digest = registry_digests(image, ["1.0.1"])["1.0.1"]

    # A rerun, as CI reruns it: a fresh checkout has the remote's tags, v1.0.1 among them.
    git(history, "fetch", "-q", f"git://127.0.0.1:{port}/remote.git", "refs/tags/*:refs/tags/*")
    again = history.parent / "again"
    engine.call(module, *release, "export", "--path", str(again), source=history, env=env).check()
    assert (again / ".version").read_text(encoding="utf-8").strip() == "1.0.1"
    assert git(remote, "tag", "--list").split() == tags
    assert sorted(registry_tags(image) or []) == pushed
    assert registry_digests(image, ["1.0.1"])["1.0.1"] == digest


def test_the_vendoring_recipe_in_docs_works(engine: Engine, tmp_path: Path) -> None:
    """docs/ci.md's copy command, run as written, gives a module that validates its repository."""
    text = (REPO_ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    section = text[text.index("### B. Vendor the module") :]
    recipe = section[section.index("```sh\n") + len("```sh\n") : section.index("```\n", 6)]
    assert "README.md" in recipe
    repo = chart_repo(engine, tmp_path / "adopter", "ok")
    git(repo, "init", "-q")
    subprocess.run(
        ["bash", "-euc", recipe],
        cwd=REPO_ROOT,
        env={"REPO": str(repo), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    vendored = repo / "ci" / "gitops-pipeline"
    copy_module(vendored, engine, files=())  # only the documented base-image override
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ci: vendor gitops-pipeline")
    out = tmp_path / "artifacts"
    engine.dagger(
        "call", "-m", "ci/gitops-pipeline", "validate", "export", "--path", str(out), cwd=repo
    ).check()
    data = summary(out)
    assert data["status"] == "passed"
    assert (out / "rendered" / "web" / "dev.yaml").is_file()
