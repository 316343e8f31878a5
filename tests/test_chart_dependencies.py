"""Chart dependencies built from Chart.lock, with the real helm against real repositories.

A chart repository is served on 127.0.0.1 by `http.server` from a thread; OCI charts go to
the registries `bash ci/services.sh` starts. The dependency is a chart made here (one
ConfigMap, so the built-in policies have nothing to say about it), packaged and indexed with
helm; the parent chart is the `ok` fixture with a Chart.lock written by `helm dependency
update` and its charts/ folder deleted, so nothing is vendored. Every helm command the tests
run themselves uses a helm home of its own; the pipeline's cache directory is the test's.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURE_REPOS, RENDER_TOOLS, SHARED, CliRun, child_processes, tool_marks
from dagger import dag
from services import find_services

from pipeline.cli import main
from pipeline.config import ChartConfig
from pipeline.manifests import parse_resources
from pipeline.model import Root, out
from pipeline.runners.dagger_runner import DaggerRunner
from pipeline.stages import helm
from pipeline.testing.dagger_capture import capture
from pipeline.tools import require

pytestmark = tool_marks(*RENDER_TOOLS)

DEPENDENCY = "settings"
PARENT = "charts/web"
DAGGER_SCHEMA = SHARED / "dagger" / "schema-v0.21.8.graphqls"


# --- helm, with a home of the test's own -----------------------------------------------------


@pytest.fixture
def helm_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "helm-home"
    return {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def run_helm(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(require("helm")), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def dependency_chart(parent_dir: Path, version: str) -> Path:
    """A chart with one ConfigMap that says which version of the chart rendered it."""
    chart = parent_dir / f"{DEPENDENCY}-{version}" / DEPENDENCY
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: {DEPENDENCY}\nversion: {version}\n", encoding="utf-8"
    )
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-settings\n"
        "  labels:\n"
        "    app.kubernetes.io/name: settings\n"
        "data:\n"
        "  chart-version: {{ .Chart.Version | quote }}\n",
        encoding="utf-8",
    )
    return chart


# --- an HTTP chart repository on 127.0.0.1 ---------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, repository: ChartRepository, **kwargs: Any) -> None:
        self.repository = repository
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.repository.requests.append(self.path)
        if self.repository.hanging.is_set():
            self.repository.released.wait(60)  # a repository that never answers
        if self.repository.private:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        del format, args  # quiet: pytest shows what the assertions need


class ChartRepository:
    """`http.server` in a thread, serving `root`; records every request it answers."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        root.mkdir(parents=True)
        self.root = root
        self.env = env
        self.requests: list[str] = []
        self.private = False  # answer 401 to everything, as a repository needing credentials
        self.hanging = threading.Event()
        self.released = threading.Event()
        handler = functools.partial(_Handler, directory=str(root), repository=self)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, chart: Path) -> None:
        run_helm(self.env, "package", str(chart), "--destination", str(self.root))
        run_helm(self.env, "repo", "index", str(self.root), "--url", self.url)

    def stop(self) -> None:
        self.released.set()
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)


@pytest.fixture
def chart_repository(tmp_path: Path, helm_env: dict[str, str]) -> Iterator[ChartRepository]:
    repository = ChartRepository(tmp_path / "chart-repository", helm_env)
    try:
        yield repository
    finally:
        repository.stop()


@pytest.fixture
def pipeline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host cache of the runs in one test: what a second run finds is this test's doing."""
    cache = tmp_path / "pipeline-cache"
    monkeypatch.setenv("GITOPS_PIPELINE_CACHE", str(cache))
    return cache


# --- the repository under test ----------------------------------------------------------------


def parent_repo(
    tmp_path: Path, env: dict[str, str], repository: str, version: str = "0.1.0", *, lock: bool
) -> Path:
    """The `ok` fixture with a dependency on `repository`, locked (or not), not vendored."""
    source = tmp_path / "repo"
    shutil.copytree(FIXTURE_REPOS / "ok", source)
    chart_yaml = source / PARENT / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text(encoding="utf-8")
        + f"\ndependencies:\n  - name: {DEPENDENCY}\n    version: {version!r}\n"
        + f"    repository: {repository}\n",
        encoding="utf-8",
    )
    if lock:
        plain_http = ["--plain-http"] if repository.startswith("oci://") else []
        run_helm(env, "dependency", "update", str(source / PARENT), *plain_http)
        assert (source / PARENT / "Chart.lock").is_file()
        shutil.rmtree(source / PARENT / "charts")  # what the repository commits: the lock only
    return source


def snapshot(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def validate(source: Path, out_dir: Path, *extra: str) -> CliRun:
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["validate", "--source", str(source), "--out", str(out_dir), *extra])
    return CliRun(code, stdout.getvalue(), stderr.getvalue(), source, out_dir)


def settings_versions(run: CliRun) -> set[str]:
    """The dependency's chart version each environment rendered, from the rendered files."""
    versions: set[str] = set()
    for env in ("dev", "prd"):
        text = (run.out / "rendered" / "web" / f"{env}.yaml").read_text(encoding="utf-8")
        for resource in parse_resources(text):
            if resource.kind == "ConfigMap" and resource.name == "web-settings":
                versions.add(f"{env}={resource.document['data']['chart-version']}")
    return versions


def render_problem(run: CliRun) -> dict[str, Any]:
    """The one chart-level render finding, the same for both environments."""
    problems = run.check_problems("render")
    assert {p["environment"] for p in problems} == {"dev", "prd"}, problems
    assert len({(p["file"], p["message"]) for p in problems}) == 1, problems
    return problems[0]


# --- an HTTP chart repository -----------------------------------------------------------------


def test_http_dependency_is_built_from_the_lock_and_cached(
    tmp_path: Path,
    helm_env: dict[str, str],
    chart_repository: ChartRepository,
    pipeline_cache: Path,
) -> None:
    chart_repository.publish(dependency_chart(tmp_path, "0.1.0"))
    source = parent_repo(tmp_path, helm_env, chart_repository.url, ">=0.1.0", lock=True)
    # A newer version appears after the lock was written: the lock's version is built.
    chart_repository.publish(dependency_chart(tmp_path, "0.2.0"))
    before = snapshot(source)

    first = validate(source, tmp_path / "first")

    assert first.exit_code == 0, first.stdout + first.stderr
    assert settings_versions(first) == {"dev=0.1.0", "prd=0.1.0"}
    assert first.stage("render")["checked"] == 2
    # Findings about the dependency's resources name the chart in the source, as vendored.
    findings = [f for s in first.summary()["stages"] for f in s["findings"]]
    assert all(".cache" not in str(f.get("file")) for f in findings), findings
    policy_rows = (first.out / "policy-results.json").read_text(encoding="utf-8")
    assert f"{PARENT}/charts/{DEPENDENCY}/templates/configmap.yaml" in policy_rows
    assert any(path.endswith(f"{DEPENDENCY}-0.1.0.tgz") for path in chart_repository.requests)
    assert not any("0.2.0" in path for path in chart_repository.requests)

    # The second run finds the build in the cache: no repository is needed any more.
    chart_repository.stop()
    second = validate(source, tmp_path / "second")

    assert second.exit_code == 0, second.stdout + second.stderr
    assert settings_versions(second) == {"dev=0.1.0", "prd=0.1.0"}
    (cached,) = (pipeline_cache / "chart-dependencies").iterdir()  # one chart, one lock
    assert cached.name.startswith("web-")
    assert sorted(p.name for p in (cached / "charts").iterdir()) == [f"{DEPENDENCY}-0.1.0.tgz"]
    assert snapshot(source) == before, "the source tree changed"


def test_a_lock_out_of_sync_with_chart_yaml_names_chart_lock(
    tmp_path: Path,
    helm_env: dict[str, str],
    chart_repository: ChartRepository,
    pipeline_cache: Path,
) -> None:
    chart_repository.publish(dependency_chart(tmp_path, "0.1.0"))
    source = parent_repo(tmp_path, helm_env, chart_repository.url, lock=True)
    assert validate(source, tmp_path / "built").exit_code == 0  # the build is in the cache now
    chart_yaml = source / PARENT / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text(encoding="utf-8").replace("'0.1.0'", "'0.2.0'"), encoding="utf-8"
    )

    run = validate(source, tmp_path / "out")

    assert run.exit_code == 1, run.stdout + run.stderr
    problem = render_problem(run)
    assert problem["file"] == f"{PARENT}/Chart.lock"
    assert problem["status"] == "error"
    assert "is out of sync with the dependencies in charts/web/Chart.yaml" in problem["message"]
    assert "run `helm dependency update charts/web` and commit Chart.lock" in problem["message"]
    assert "Traceback" not in run.stderr
    assert pipeline_cache.is_dir()


def test_dependencies_without_a_lock_say_what_to_run(
    tmp_path: Path, helm_env: dict[str, str]
) -> None:
    source = parent_repo(tmp_path, helm_env, "https://charts.example.com", lock=False)

    run = validate(source, tmp_path / "out")

    assert run.exit_code == 1, run.stdout + run.stderr
    problem = render_problem(run)
    assert problem["file"] == f"{PARENT}/Chart.yaml"
    assert problem["message"] == (
        f"dependency '{DEPENDENCY}' (0.1.0) is not vendored in charts/web/charts/ and there "
        "is no charts/web/Chart.lock to build it from: run `helm dependency update charts/web` "
        "and commit Chart.lock (dependencies are built from the lock's versions only)"
    )
    assert (run.out / "summary.json").is_file()


def test_offline_downloads_nothing_and_names_the_dependency(
    tmp_path: Path,
    helm_env: dict[str, str],
    chart_repository: ChartRepository,
    pipeline_cache: Path,
) -> None:
    chart_repository.publish(dependency_chart(tmp_path, "0.1.0"))
    source = parent_repo(tmp_path, helm_env, chart_repository.url, lock=True)
    chart_repository.requests.clear()

    run = validate(source, tmp_path / "out", "--offline")

    assert run.exit_code == 1, run.stdout + run.stderr
    problem = render_problem(run)
    assert problem["file"] == f"{PARENT}/Chart.yaml"
    assert problem["message"].startswith(
        f"dependency '{DEPENDENCY}' (0.1.0) is not vendored in charts/web/charts/ and "
        "--offline downloads nothing: run `helm dependency build charts/web`"
    )
    assert chart_repository.requests == []
    assert not (pipeline_cache / "chart-dependencies").exists()


def test_a_private_http_repository_is_named_in_the_401_finding(
    tmp_path: Path,
    helm_env: dict[str, str],
    chart_repository: ChartRepository,
    pipeline_cache: Path,
) -> None:
    chart_repository.publish(dependency_chart(tmp_path, "0.1.0"))
    source = parent_repo(tmp_path, helm_env, chart_repository.url, lock=True)
    chart_repository.private = True

    run = validate(source, tmp_path / "out")

    assert run.exit_code == 1, run.stdout + run.stderr
    problem = render_problem(run)
    assert problem["file"] == f"{PARENT}/Chart.lock"
    assert problem["message"].startswith(
        f"chart repository {chart_repository.url} refused access (401 Unauthorized)"
    )
    assert "need credentials" in problem["message"]
    assert not (pipeline_cache / "chart-dependencies").exists()


# --- OCI registries ---------------------------------------------------------------------------


def test_oci_dependency_is_built_over_plain_http_from_a_local_registry(
    tmp_path: Path, helm_env: dict[str, str], pipeline_cache: Path
) -> None:
    services = find_services()
    package_dir = tmp_path / "packages"
    run_helm(helm_env, "package", str(dependency_chart(tmp_path, "0.1.0")), "-d", str(package_dir))
    registry = f"oci://{services.registry}/gitops-pipeline-tests/{uuid.uuid4().hex[:12]}"
    archive = str(package_dir / f"{DEPENDENCY}-0.1.0.tgz")
    run_helm(helm_env, "push", archive, registry, "--plain-http")
    source = parent_repo(tmp_path, helm_env, registry, lock=True)
    before = snapshot(source)

    run = validate(source, tmp_path / "out")

    assert run.exit_code == 0, run.stdout + run.stderr
    assert settings_versions(run) == {"dev=0.1.0", "prd=0.1.0"}
    assert snapshot(source) == before
    assert any((pipeline_cache / "chart-dependencies").glob(f"web-*/charts/{DEPENDENCY}-0.1.0.tgz"))


def test_an_oci_registry_that_wants_credentials_is_named(
    tmp_path: Path, helm_env: dict[str, str], pipeline_cache: Path
) -> None:
    services = find_services()
    package_dir = tmp_path / "packages"
    run_helm(helm_env, "package", str(dependency_chart(tmp_path, "0.1.0")), "-d", str(package_dir))
    # Logged in for the test's own helm only: the pipeline's build has no credentials.
    run_helm(
        helm_env,
        "registry",
        "login",
        services.auth_registry,
        "--plain-http",
        "--username",
        services.auth_user,
        "--password-stdin",
        stdin=services.auth_password,
    )
    registry = f"oci://{services.auth_registry}/gitops-pipeline-tests/{uuid.uuid4().hex[:12]}"
    archive = str(package_dir / f"{DEPENDENCY}-0.1.0.tgz")
    run_helm(helm_env, "push", archive, registry, "--plain-http")
    source = parent_repo(tmp_path, helm_env, registry, lock=True)

    run = validate(source, tmp_path / "out")

    assert run.exit_code == 1, run.stdout + run.stderr
    problem = render_problem(run)
    assert problem["file"] == f"{PARENT}/Chart.lock"
    assert problem["message"].startswith(
        f"chart repository {registry} refused access (401 Unauthorized)"
    )
    assert not (pipeline_cache / "chart-dependencies").exists()


# --- the step as data: what a container runs ---------------------------------------------------


def test_the_build_step_works_under_out_and_declares_what_a_container_needs() -> None:
    workspace = ".cache/chart-dependencies/web"
    step = helm.dependency_build_step("web", workspace, ["https://charts.example.com"])

    assert step.tool == "helm"
    assert step.args[:3] == ("dependency", "build", out(f"{workspace}/chart"))
    assert "update" not in step.args
    assert step.workdir == out(workspace)
    refs = [a for a in step.args if not isinstance(a, str)]
    assert all(getattr(ref, "root", None) is Root.OUT for ref in refs), refs
    assert set(step.inputs) == {out(f"{workspace}/chart"), out(f"{workspace}/repositories.yaml")}
    assert step.outputs == (f"{workspace}/chart/charts",)
    assert "--plain-http" not in step.args


@pytest.mark.anyio
@pytest.mark.skipif(not DAGGER_SCHEMA.is_file(), reason=f"no Dagger schema at {DAGGER_SCHEMA}")
async def test_in_a_container_the_workspace_goes_in_and_the_archives_come_back(
    tmp_path: Path,
) -> None:
    workspace = ".cache/chart-dependencies/web"
    (tmp_path / workspace / "chart").mkdir(parents=True)
    step = helm.dependency_build_step("web", workspace, ["https://charts.example.com"])

    with capture(DAGGER_SCHEMA) as recorder:
        await DaggerRunner(source=dag.directory(), out=tmp_path).run(step)

    assert recorder.errors() == []
    text = " ".join(" ".join(q.document for q in recorder.queries).split())
    # Only the workspace's chart and repositories file are uploaded from the local OUT ...
    uploaded = (
        f'include: [ "{workspace}/chart" "{workspace}/chart/**" '
        f'"{workspace}/repositories.yaml" "{workspace}/repositories.yaml/**" ]'
    )
    assert uploaded in text
    assert f'"dependency" "build" "/out/{workspace}/chart"' in text
    assert f'withWorkdir(path: "/out/{workspace}")' in text
    # ... and the built archives are exported back to it.
    exported = f'include: [ "{workspace}/chart/charts" "{workspace}/chart/charts/**" ]'
    assert exported in text


@pytest.mark.parametrize(
    ("repositories", "plain_http"),
    [
        (["oci://127.0.0.1:5000/charts"], True),
        (["oci://localhost:5000/charts", "https://charts.example.com"], True),
        (["oci://ghcr.io/acme/charts"], False),
        (["oci://127.0.0.1:5000/charts", "oci://ghcr.io/acme/charts"], False),
        (["http://127.0.0.1:8080"], False),
    ],
)
def test_plain_http_only_for_registries_on_this_machine(
    repositories: list[str], plain_http: bool
) -> None:
    step = helm.dependency_build_step("web", ".cache/chart-dependencies/web", repositories)

    assert ("--plain-http" in step.args) is plain_http


def test_output_about_the_copy_names_the_source_chart() -> None:
    chart = ChartConfig(name="web", path="charts/web", release="web", namespace="web")
    copy = out(".cache/charts/web/web")
    output = (
        "==> Linting /tmp/run/artifacts/.cache/charts/web/web\n"
        'Error: open "/out/.cache/charts/web/web/values.yaml": denied\n'
        "Error: web/templates/x.yaml:3:1: bad\n"
    )

    assert helm.source_paths(output, copy, chart) == (
        "==> Linting charts/web\n"
        'Error: open "charts/web/values.yaml": denied\n'
        "Error: web/templates/x.yaml:3:1: bad\n"
    )


def test_plan_lists_the_dependency_build_and_renders_the_copy(tmp_path: Path) -> None:
    source = tmp_path / "repo"
    shutil.copytree(FIXTURE_REPOS / "ok", source)
    chart = source / PARENT
    dependency = (
        f"  - name: {DEPENDENCY}\n    version: 0.1.0\n    repository: oci://127.0.0.1:5000/c\n"
    )
    (chart / "Chart.yaml").write_text(
        (chart / "Chart.yaml").read_text(encoding="utf-8") + "\ndependencies:\n" + dependency,
        encoding="utf-8",
    )
    (chart / "Chart.lock").write_text(
        "dependencies:\n"
        + dependency.replace("  - ", "- ").replace("    ", "  ")
        + "digest: sha256:0\n",
        encoding="utf-8",
    )
    stdout = io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(io.StringIO()):
        code = main(["plan", "--source", str(source), "--out", str(tmp_path / "out")])

    assert code == 0
    steps = stdout.getvalue()
    assert (
        "helm-dependency-build:web: (cd $OUT/.cache/chart-dependencies/web) helm dependency build "
        "'$OUT/.cache/chart-dependencies/web/chart' --repository-config "
        "'$OUT/.cache/chart-dependencies/web/repositories.yaml'"
    ) in steps
    assert "--plain-http" in steps
    assert "helm template web '$OUT/.cache/charts/web/web'" in steps
    assert "--values '$SOURCE/charts/web/values.yaml'" in steps


def test_a_dependency_build_killed_by_a_signal_names_it(
    tmp_path: Path,
    helm_env: dict[str, str],
    chart_repository: ChartRepository,
    pipeline_cache: Path,
) -> None:
    del pipeline_cache
    chart_repository.publish(dependency_chart(tmp_path / "charts", "0.1.0"))
    source = parent_repo(tmp_path, helm_env, chart_repository.url, lock=True)
    chart_repository.hanging.set()  # helm waits for the archive: it is killed meanwhile
    killed: list[int] = []

    def kill_the_build() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in child_processes("helm"):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"dependency" in cmdline:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_the_build)
    watcher.start()
    run = validate(source, tmp_path / "out")
    watcher.join()
    assert killed, "helm dependency build never started"
    assert run.exit_code == 1
    problem = render_problem(run)
    assert problem["file"] == f"{PARENT}/Chart.lock"
    assert "helm was killed by SIGKILL (exit code -9) while running" in problem["message"]
    assert "dependency" in problem["message"]
