"""A chart's dependencies: vendored in its charts/, or built from its Chart.lock.

Argo CD builds the dependencies a chart declares but does not vendor, so the pipeline does
too, the same way: `helm dependency build` from the committed Chart.lock (the lock's
versions, never newer ones; a lock whose digest does not match Chart.yaml is refused).

Nothing is written into the source. Each chart is built in a workspace under OUT that holds
only its Chart.yaml and Chart.lock, then rendered from a copy of the chart under OUT with
the built archives in its charts/. On the host the archives are kept in the run's cache
directory, keyed by what the lock's digest covers, so a second run downloads nothing.
Each chart is prepared once per run, however many environments render it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import anyio.to_thread
import yaml

from pipeline.config import ChartConfig
from pipeline.discovery import RenderTarget
from pipeline.manifests import load_yaml, not_utf8
from pipeline.model import Finding, Ref, Status, StepResult, killed_by_signal, out, src
from pipeline.run import Run
from pipeline.stages import helm

BUILDS = ".cache/chart-dependencies"  # under OUT: one build workspace per chart
COPIES = ".cache/charts"  # under OUT: charts with their built dependencies, rendered from here
HOST_CACHE = "chart-dependencies"  # in the host's cache directory, beside the schema bundles
_COMPLETE = ".complete"
_REPOSITORY_ALIAS = ("@", "alias:")  # names from `helm repo add`, which only a machine knows


@dataclass(frozen=True)
class ChartToRender:
    """Where helm reads a chart: the source's folder or a copy under OUT, or why it cannot."""

    chart: Ref
    problem: Finding | None = None  # about the chart; each environment gets its own copy
    built: StepResult | None = None  # the dependency build, when one ran

    def finding(self, target: RenderTarget) -> Finding | None:
        if self.problem is None:
            return None
        return replace(self.problem, chart=target.chart.name, environment=target.environment)

    def source_paths(self, output: str, target: RenderTarget) -> str:
        """helm's output, naming the source's chart files even when it read the copy."""
        return helm.source_paths(output, self.chart, target.chart)


@dataclass
class ChartDependencies:
    """Each chart of a run prepared once, shared by the render jobs of its environments."""

    run: Run
    _locks: dict[str, anyio.Lock] = field(default_factory=dict)
    _prepared: dict[str, ChartToRender] = field(default_factory=dict)
    # Whether each chart folder names `.Files` (discovery.overlays_helm_cannot_read), read once.
    names_files: dict[Path, bool] = field(default_factory=dict)

    async def for_target(self, target: RenderTarget) -> ChartToRender:
        name = target.chart.name
        async with self._locks.setdefault(name, anyio.Lock()):
            if name not in self._prepared:
                self._prepared[name] = await _prepare(self.run, target.chart)
        return self._prepared[name]


async def _prepare(run: Run, chart: ChartConfig) -> ChartToRender:
    chart_dir = run.source / chart.path
    dependencies = _declared(chart, chart_dir)
    if isinstance(dependencies, ChartToRender):
        return dependencies
    missing = [d for d in dependencies if not _vendored(chart_dir, d)]
    if not missing:
        return ChartToRender(src(chart.path))
    lock = _unbuildable(run, chart, dependencies, missing) or _read_lock(
        chart, chart_dir / "Chart.lock"
    )
    if isinstance(lock, ChartToRender):
        return lock
    try:
        built = await _built_archives(run, chart, lock, _cache_key(chart, dependencies, lock))
        if isinstance(built, ChartToRender):
            return built
        archives, step = built
        copy = await anyio.to_thread.run_sync(
            _render_copy, run, chart, archives, [_name(d) for d in dependencies if d not in missing]
        )
    except OSError as exc:
        message = f"could not prepare the dependencies of {chart.path} from Chart.lock: {exc}"
        return _problem(chart, message, chart.file("Chart.lock"))
    return ChartToRender(out(copy), built=step)


def _declared(chart: ChartConfig, chart_dir: Path) -> list[dict[str, Any]] | ChartToRender:
    """The dependencies Chart.yaml declares."""
    try:
        metadata = load_yaml((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return _problem(chart, not_utf8("Chart.yaml", exc), chart.file("Chart.yaml"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        message = f"invalid YAML in Chart.yaml: {exc.problem}"
        return _problem(chart, message, chart.file("Chart.yaml"), line)
    declared = metadata.get("dependencies") if isinstance(metadata, dict) else None
    return [d for d in declared or [] if isinstance(d, dict)]


def _name(dependency: Mapping[str, Any]) -> str:
    return str(dependency.get("name", ""))


def _vendored(chart_dir: Path, dependency: Mapping[str, Any]) -> bool:
    repository = str(dependency.get("repository") or "")
    if repository.startswith("file://"):
        return (chart_dir / repository.removeprefix("file://")).is_dir()
    vendored = chart_dir / "charts"
    name = _name(dependency)
    return (vendored / name).is_dir() or any(vendored.glob(f"{name}-*.tgz"))


def _unbuildable(
    run: Run,
    chart: ChartConfig,
    dependencies: Sequence[Mapping[str, Any]],
    missing: Sequence[Mapping[str, Any]],
) -> ChartToRender | None:
    """Why the missing dependencies cannot be built from the lock, naming the file to fix."""
    first = missing[0]
    not_vendored = (
        f"dependency '{_name(first)}' ({first.get('version', 'any version')}) is not vendored "
        f"in {chart.file('charts')}/"
    )
    chart_yaml = chart.file("Chart.yaml")
    lock = chart.file("Chart.lock")
    if run.offline:
        message = (
            f"{not_vendored} and --offline downloads nothing: run `helm dependency build "
            f"{chart.path}` and commit the result, or drop --offline to build it from {lock}"
        )
        return _problem(chart, message, chart_yaml)
    for dependency in missing:
        if not dependency.get("repository"):
            message = (
                f"dependency '{_name(dependency)}' is not vendored in {chart.file('charts')}/ "
                "and names no repository to build it from: vendor it there"
            )
            return _problem(chart, message, chart_yaml)
    for dependency in dependencies:
        repository = str(dependency.get("repository") or "")
        if repository.startswith(_REPOSITORY_ALIAS):
            message = (
                f"dependency '{_name(dependency)}' names its repository '{repository}', a name "
                "from `helm repo add` that only that machine knows: write the repository's URL "
                f"in {chart_yaml}, run `helm dependency update {chart.path}` and commit Chart.lock"
            )
            return _problem(chart, message, chart_yaml)
        if repository.startswith("file://"):
            # The build workspace holds Chart.yaml and Chart.lock only: a path relative to
            # the chart does not resolve there.
            message = (
                f"dependency '{_name(dependency)}' comes from {repository}, and {not_vendored}: "
                "the pipeline builds dependencies from chart repositories and OCI registries "
                f"only; run `helm dependency build {chart.path}` and commit {chart.file('charts')}/"
            )
            return _problem(chart, message, chart_yaml)
    if not (run.source / lock).is_file():
        message = (
            f"{not_vendored} and there is no {lock} to build it from: run `helm dependency "
            f"update {chart.path}` and commit Chart.lock (dependencies are built from the lock's "
            "versions only)"
        )
        return _problem(chart, message, chart_yaml)
    return None


def _read_lock(chart: ChartConfig, path: Path) -> dict[str, Any] | ChartToRender:
    lock_file = chart.file("Chart.lock")
    try:
        lock = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return _problem(chart, not_utf8("Chart.lock", exc), lock_file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        return _problem(chart, f"invalid YAML in Chart.lock: {exc.problem}", lock_file, line)
    if (
        not isinstance(lock, dict)
        or not isinstance(lock.get("digest"), str)
        or not isinstance(lock.get("dependencies"), list)
    ):
        message = (
            f"{lock_file} has no digest or no dependencies, so it cannot be checked against "
            f"Chart.yaml: run `helm dependency update {chart.path}` and commit Chart.lock"
        )
        return _problem(chart, message, lock_file)
    return lock


def _cache_key(
    chart: ChartConfig, dependencies: Sequence[Mapping[str, Any]], lock: Mapping[str, Any]
) -> str:
    """The chart's path and lock digest, with what the digest covers.

    The digest is helm's hash of Chart.yaml's dependencies and the lock's. Hashing those as
    well means an edit that forgot to update the lock misses the cache, so helm's digest
    check runs and reports it, instead of an earlier build being reused.
    """
    material = {
        "chart": chart.path,
        "digest": lock["digest"],
        "requested": list(dependencies),
        "locked": lock["dependencies"],
    }
    encoded = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _folder_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip(".-") or "chart"


async def _built_archives(
    run: Run, chart: ChartConfig, lock: Mapping[str, Any], key: str
) -> tuple[Path, StepResult | None] | ChartToRender:
    """The folder of the built dependency archives, from the host cache or a build."""
    cached = (
        run.schema_cache / HOST_CACHE / f"{_folder_name(chart.name)}-{key}"
        if run.schema_cache is not None
        else None
    )
    if cached is not None and (cached / _COMPLETE).is_file():
        return cached / "charts", None
    workspace = f"{BUILDS}/{_folder_name(chart.name)}"
    repositories = [
        str(d.get("repository") or "") for d in lock["dependencies"] if isinstance(d, dict)
    ]
    await anyio.to_thread.run_sync(_write_workspace, run, chart, workspace, repositories)
    built = await run.runner.run(helm.dependency_build_step(chart.name, workspace, repositories))
    if not built.ok:
        output = helm.source_paths(
            built.stdout + built.stderr, out(f"{workspace}/{helm.WORKSPACE_CHART}"), chart
        )
        message = killed_by_signal(built) or helm.dependency_build_error(
            chart, output, repositories
        )
        return _problem(chart, message, chart.file("Chart.lock"), built=built)
    archives = run.out / workspace / helm.WORKSPACE_CHART / "charts"
    if cached is not None and archives.is_dir():
        await anyio.to_thread.run_sync(_keep, archives, cached)
    return archives, built


def _write_workspace(run: Run, chart: ChartConfig, workspace: str, repositories: list[str]) -> None:
    # A fresh folder with just what the build reads: nothing left over from an earlier run
    # can end up in the charts/ it writes, and a container gets the same inputs every time.
    root = run.out / workspace
    shutil.rmtree(root, ignore_errors=True)
    (root / helm.WORKSPACE_CHART).mkdir(parents=True)
    for name in ("Chart.yaml", "Chart.lock"):
        shutil.copy2(run.source / chart.file(name), root / helm.WORKSPACE_CHART / name)
    (root / helm.WORKSPACE_REPOSITORIES).write_text(
        helm.repositories_file(repositories), encoding="utf-8"
    )


def _keep(archives: Path, cached: Path) -> None:
    """Copy a build into the host cache: staged beside its final name, then renamed."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{cached.name}-", dir=cached.parent))
    shutil.copytree(archives, staging / "charts")
    (staging / _COMPLETE).write_text("", encoding="utf-8")
    try:
        staging.rename(cached)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run finished first; keep its copy


def _render_copy(run: Run, chart: ChartConfig, archives: Path, vendored: Sequence[str]) -> str:
    """The chart copied under OUT with the built archives added to its charts/ (OUT-relative).

    The copy keeps the chart folder's own name and is made fresh from the source each run:
    the cache holds only the archives, so an edited template is never rendered stale.
    """
    folder = _folder_name(chart.name)
    copy = f"{COPIES}/{folder}/{PurePosixPath(chart.path).name or folder}"
    target = run.out / copy
    shutil.rmtree(target.parent, ignore_errors=True)
    out_dir = run.out.resolve()

    def skipped(directory: str, names: list[str]) -> set[str]:
        # A chart at the repository's root would otherwise copy the artifacts into themselves.
        return {n for n in names if n == ".git" or (Path(directory) / n).resolve() == out_dir}

    shutil.copytree(run.source / chart.path, target, ignore=skipped)
    (target / "charts").mkdir(exist_ok=True)
    for archive in sorted(archives.glob("*.tgz")) if archives.is_dir() else []:
        # A dependency the source vendors is rendered from there, not twice.
        if not any(re.fullmatch(rf"{re.escape(n)}-v?\d.*\.tgz", archive.name) for n in vendored):
            shutil.copy2(archive, target / "charts" / archive.name)
    return copy


def _problem(
    chart: ChartConfig,
    message: str,
    file: str,
    line: int | None = None,
    *,
    built: StepResult | None = None,
) -> ChartToRender:
    finding = Finding(check="render", message=message, status=Status.ERROR, file=file, line=line)
    return ChartToRender(src(chart.path), finding, built)
