"""helm template and helm lint through resident helm workers: the very results of helm itself.

Every comparison is against the real helm binary of the same pin, byte for byte; the worker
is the real one (tools/helm-worker, built by ci/install-tools.sh). Only the tests of what
the pool does when a worker misbehaves use stand-ins, small scripts that misbehave on purpose.
"""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

import anyio
import pytest
from conftest import REPO_ROOT, fixture_repo, requires_tools
from services import Observed
from test_step_cache import FIXTURES

from pipeline.config import load_config
from pipeline.limits import TIMEOUT_EXIT_CODE
from pipeline.model import Step, StepResult, src
from pipeline.run import Run
from pipeline.runners import helm_worker
from pipeline.runners.local import LocalRunner
from pipeline.tools import TOOLS, find_binary, go_dependencies, go_dependency_version
from pipeline.validate import validate

HELM = TOOLS["helm"]
RENDER = ("helm", "kubeconform", "conftest")


def installed_worker() -> Path:
    helm = find_binary(HELM)
    worker = helm_worker.find_worker(helm) if helm else None
    if worker is None:
        pytest.skip(f"no {helm_worker.WORKER} beside helm: bash ci/install-tools.sh builds it")
    return worker


def pool(size: int = 2, worker: Path | None = None) -> helm_worker.HelmWorkers:
    return helm_worker.HelmWorkers(worker or installed_worker(), f"v{HELM.version}", size)


def helm_results(source: Path, out: Path, workers: helm_worker.HelmWorkers | None) -> list[tuple]:  # type: ignore[type-arg]
    runner = Observed(LocalRunner(source, out, helm_workers=workers))

    async def go() -> None:
        try:
            await validate(Run(load_config(source), runner, out, on_host=True))
        finally:
            if workers is not None:
                await workers.aclose()

    anyio.run(go)
    return sorted(
        (r.step.name, r.step.args, r.exit_code, r.stdout, r.stderr)
        for r in runner.results
        if r.step.tool == "helm"
    )


@requires_tools(*RENDER)
@pytest.mark.parametrize("name", FIXTURES)
def test_every_helm_step_gives_byte_for_byte_what_helm_itself_gives(
    tmp_path: Path, name: str
) -> None:
    """Differential over every fixture, the broken ones included (template errors, invalid
    YAML, schema violations, lint failures): exit code, stdout and stderr are identical."""
    source = fixture_repo(name, tmp_path)
    workers = pool()
    served = helm_results(source, tmp_path / "worker", workers)
    plain = helm_results(source, tmp_path / "plain", None)
    # The artifacts folder differs; helm prints no path of it for these steps.
    assert served == plain
    expected = sum(1 for _, args, *_ in served if args[0] in helm_worker.SERVED)
    assert workers.answered == expected  # all of them in the worker (none: config error first)
    assert workers.unusable is None


def slow_chart(root: Path) -> Path:
    chart = root / "slow"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: slow\nversion: 0.1.0\n")
    # 10^8 iterations of text/template: minutes, in constant memory.
    (chart / "templates" / "cm.yaml").write_text(
        "{{- range until 10000 }}{{- range until 10000 }}{{- end }}{{- end }}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: slow\n"
    )
    return chart


def template(chart: str) -> Step:
    return Step(
        name=f"helm-template:{chart}",
        tool="helm",
        args=("template", "r", src(chart), "--namespace", "default"),
        timeout=1.0,
    )


@requires_tools("helm")
def test_a_step_out_of_time_stops_its_worker_and_the_next_step_gets_a_new_one(
    tmp_path: Path,
) -> None:
    slow_chart(tmp_path)
    quick = tmp_path / "quick"
    (quick / "templates").mkdir(parents=True)
    (quick / "Chart.yaml").write_text("apiVersion: v2\nname: quick\nversion: 0.1.0\n")
    workers = pool(size=1)
    runner = LocalRunner(tmp_path, tmp_path / "out", helm_workers=workers)
    pids: list[int] = []

    async def go() -> tuple[StepResult, StepResult, float]:
        try:
            started = time.monotonic()
            stopped = await runner.run(template("slow"))
            elapsed = time.monotonic() - started
            pids.extend(w.process.pid for w in workers._all)
            after = await runner.run(template("quick"))
            return stopped, after, elapsed
        finally:
            await workers.aclose()

    stopped, after, elapsed = anyio.run(go)
    assert stopped.exit_code == TIMEOUT_EXIT_CODE
    assert stopped.timed_out_after == 1.0
    assert stopped.stderr.rstrip().endswith("pipeline.yaml `timeouts`, or --timeout)")
    assert elapsed < 30
    assert pids == []  # the worker that ran out of time went with the step
    assert after.exit_code == 0, after.stderr
    assert workers.started == 2
    assert workers.answered == 1


@requires_tools("helm")
def test_workers_are_replaced_after_their_share_and_none_outlives_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helm_worker, "REQUESTS_PER_WORKER", 2)
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
    )
    workers = pool(size=1)
    runner = LocalRunner(tmp_path, tmp_path / "out", helm_workers=workers)
    seen: set[int] = set()

    async def go() -> list[StepResult]:
        results = []
        for _ in range(5):
            results.append(await runner.run(template("c")))
            seen.update(w.process.pid for w in workers._all)
        await workers.aclose()
        return results

    results = anyio.run(go)
    assert {r.exit_code for r in results} == {0}
    assert {r.stdout for r in results} == {results[0].stdout}
    assert "name: r" in results[0].stdout
    assert workers.started == 3
    for pid in seen:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return bool(re.search(r"^State:\s+Z", status, re.MULTILINE))


def stand_in(tmp_path: Path, script: str) -> Path:
    worker = tmp_path / "bin" / helm_worker.WORKER
    worker.parent.mkdir(parents=True, exist_ok=True)
    worker.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    worker.chmod(worker.stat().st_mode | stat.S_IXUSR)
    return worker


@requires_tools("helm")
@pytest.mark.parametrize(
    ("script", "unusable"),
    [
        pytest.param(
            'echo \'{"protocol":1,"helm":"v3.0.0"}\'; cat >/dev/null', True, id="other-helm"
        ),
        pytest.param("exit 0", True, id="says-nothing"),
        pytest.param(
            f'echo \'{{"protocol":1,"helm":"v{HELM.version}"}}\'; read -r line; exit 1',
            False,
            id="dies-in-a-request",
        ),
        pytest.param(
            f'echo \'{{"protocol":1,"helm":"v{HELM.version}"}}\'; read -r line; '
            'echo \'{"refused":"no"}\'; cat >/dev/null',
            False,
            id="refuses",
        ),
    ],
)
def test_a_worker_that_misbehaves_leaves_the_step_to_helm_itself(
    tmp_path: Path, script: str, *, unusable: bool
) -> None:
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
    )
    workers = pool(size=1, worker=stand_in(tmp_path, script))
    runner = LocalRunner(tmp_path, tmp_path / "out", helm_workers=workers)
    plain = LocalRunner(tmp_path, tmp_path / "out")

    async def go() -> tuple[StepResult, StepResult]:
        try:
            return await runner.run(template("c")), await plain.run(template("c"))
        finally:
            await workers.aclose()

    served, expected = anyio.run(go)
    assert (served.exit_code, served.stdout, served.stderr) == (
        expected.exit_code,
        expected.stdout,
        expected.stderr,
    )
    assert (workers.unusable is not None) is unusable
    assert workers.answered == 0


@requires_tools("helm")
def test_a_worker_that_keeps_dying_is_given_up(tmp_path: Path) -> None:
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    dies = f'echo \'{{"protocol":1,"helm":"v{HELM.version}"}}\'; read -r line; exit 1'
    workers = pool(size=1, worker=stand_in(tmp_path, dies))
    runner = LocalRunner(tmp_path, tmp_path / "out", helm_workers=workers)

    async def go() -> list[StepResult]:
        try:
            return [await runner.run(template("c")) for _ in range(5)]
        finally:
            await workers.aclose()

    assert {r.exit_code for r in anyio.run(go)} == {0}
    assert workers.started == helm_worker.DEATHS_ALLOWED
    assert workers.unusable is not None


def test_the_worker_is_built_on_the_pinned_helm_with_helms_own_dependencies() -> None:
    go_mod = (REPO_ROOT / "tools" / "helm-worker" / "go.mod").read_text(encoding="utf-8")
    pinned = rf"^\s*(require\s+)?helm\.sh/helm/v4 v{re.escape(HELM.version)}$"
    assert re.search(pinned, go_mod, re.MULTILINE)
    worker = installed_worker()
    assert go_dependency_version(worker, "helm.sh/helm/v4") == HELM.version
    assert helm_worker.status().startswith(f"{helm_worker.WORKER}: yes")
    # Every module both binaries link is at the same version: the code that renders and
    # lints is helm's release build list, not a newer dependency our go.mod pulled in.
    helm = find_binary(HELM)
    assert helm is not None
    helm_deps, worker_deps = go_dependencies(helm), go_dependencies(worker)
    shared = helm_deps.keys() & worker_deps.keys()
    assert len(shared) > 50  # the Kubernetes libraries and the rest
    assert {m: worker_deps[m] for m in shared} == {m: helm_deps[m] for m in shared}


def test_the_status_line_says_when_every_helm_step_starts_helm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(helm_worker.DISABLE_ENV, "0")
    assert "switched off" in helm_worker.status()
    assert helm_worker.pool(2) is None


@requires_tools("helm")
def test_no_room_for_the_workers_files_leaves_the_steps_to_helm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile  # noqa: PLC0415

    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    workers = pool(size=1)
    runner = LocalRunner(tmp_path, tmp_path / "out", helm_workers=workers)

    async def go() -> StepResult:
        try:
            return await runner.run(template("c"))
        finally:
            await workers.aclose()

    assert anyio.run(go).exit_code == 0
    assert workers.unusable is not None
    assert "did not start" in workers.unusable
    assert workers.started == 0
