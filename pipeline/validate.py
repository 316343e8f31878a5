"""Render every chart in every environment, then kubeconform and policies, then every report.

Independent steps run concurrently: lint and template of all targets together
with the policies' own unit tests; then kubeconform and conftest together over
all rendered files. The artifacts directory is always written, even when a
step fails or the configuration is wrong; what was produced stays on disk.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import anyio.to_thread
import yaml

from pipeline import policy, reports
from pipeline.changes import Selection, changed_since, select
from pipeline.chart_dependencies import ChartDependencies, ChartToRender
from pipeline.config import Waiver
from pipeline.delivery import checks as delivery_checks
from pipeline.discovery import (
    SKIPPED_DIRS,
    RenderTarget,
    overlays_helm_cannot_read,
    plan_targets,
)
from pipeline.errors import ConfigError, PipelineError, SetupError
from pipeline.manifests import (
    Resource,
    load_values_text,
    load_yaml,
    merged_values,
    not_utf8,
    parse_resources_remembered,
)
from pipeline.model import (
    CONTAINER_MOUNTS,
    Arg,
    Finding,
    Ref,
    Result,
    Root,
    Status,
    StepResult,
    killed_by_signal,
    out,
    package,
    src,
)
from pipeline.policy import BUILTIN_POLICIES
from pipeline.run import Run, gather
from pipeline.schemas import BUILTIN_CRDS, write_schema_bundle
from pipeline.secrets.stage import EarlyScan, secrets_stage
from pipeline.stages import conftest, helm, kubeconform, kubernetes_validate

ALL_CHECKS = ("lint", "render", "kubeconform", "policy", "delivery", "secrets")
BUNDLED = "bundled"  # schema location: an offline bundle built from kubernetes-validate
SCHEMA_CACHE = ".cache/schemas"
CRD_INPUT = ".cache/crd-input"  # CRD schemas given by path, copied where containers see them


@dataclass
class Rendered:
    target: RenderTarget
    text: str | None = None
    resources: list[Resource] = field(default_factory=list)
    lint: list[Finding] = field(default_factory=list)
    render: list[Finding] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    # Per resource, the line of its template where it starts (see _template_lines).
    lines: list[int | None] = field(default_factory=list)
    # helm lint of this target, run once every target has rendered (see _validate_targets).
    pending_lint: Callable[[], Awaitable[None]] | None = field(
        default=None, compare=False, repr=False
    )

    def template_file(self, resource: Resource) -> str | None:
        if resource.template is None:
            return None
        _, _, inside = resource.template.partition("/")
        return self.target.chart.file(inside)

    def where(self, resource: Resource | None = None) -> dict[str, Any]:
        if resource is None:
            return {
                "chart": self.target.chart.name,
                "environment": self.target.environment,
                "file": self.target.rendered_path,
            }
        lines = (
            line
            for known, line in zip(self.resources, self.lines, strict=False)
            if known is resource
        )
        return {
            "chart": self.target.chart.name,
            "environment": self.target.environment,
            "file": self.template_file(resource),
            "line": next(lines, None),
        }


@dataclass
class Outcome:
    results: list[Result]
    rendered: list[Rendered]
    error: PipelineError | None = None
    changes: Selection | None = None  # what `--changed-since` checked and what it skipped

    @property
    def status(self) -> Status:
        return reports.overall(self.results)


async def validate(
    run: Run, checks: Collection[str] = ALL_CHECKS, *, nothing_is_skipped: bool = False
) -> Outcome:
    """Run the selected checks; always write the artifacts; never raise for a failed check.

    A repository without a chart fails (a CI that checked nothing must not be green) unless
    the run allows it; `ci` passes `nothing_is_skipped` and judges all its stages together.
    """
    run.out.mkdir(parents=True, exist_ok=True)
    selection: Selection | None = None
    try:
        targets = plan_targets(run.config, run.environments)
        if "kubeconform" in checks:
            _check_crd_dirs(run)
            if not run.schema_locations:  # flags are checked by the CLI, before anything runs
                _check_schema_locations(run)
        if run.changed_since is not None and targets:
            changed = await changed_since(run, run.changed_since)
            selection = select(run, run.changed_since, targets, changed)
            targets = selection.targets
    except ConfigError as error:
        results = [Result("plan", Status.ERROR, str(error), (_config_finding(error),))]
        outcome = Outcome(results, [], error)
        write_artifacts(run, outcome, checks)
        return outcome
    if selection is not None and not targets:
        # Said, not silent: no chart changed, so none is checked, and the reports say why.
        outcome = Outcome([selection.result()], [], changes=selection)
        write_artifacts(run, outcome, checks)
        return outcome
    if not targets:
        outcome = Outcome([_nothing_found(run, skipped=run.allow_empty or nothing_is_skipped)], [])
        write_artifacts(run, outcome, checks)
        return outcome
    try:
        outcome = await _validate_targets(run, targets, checks)
    except SetupError as error:
        # The machine is not ready (a tool is missing): still leave a complete report behind.
        finding = Finding(check="setup", message=str(error), status=Status.ERROR)
        outcome = Outcome([Result("setup", Status.ERROR, str(error), (finding,))], [], error)
    if selection is not None:
        outcome.results.insert(0, selection.result())
        outcome.changes = selection
    write_artifacts(run, outcome, checks)
    return outcome


def _nothing_found(run: Run, *, skipped: bool) -> Result:
    discovery = run.config.discovery
    where = ", ".join(discovery.paths)
    skipping = ", ".join(("hidden folders", *sorted(SKIPPED_DIRS), *discovery.ignore))
    message = f"no Helm chart found: looked for Chart.yaml under {where} (skipping {skipping})" + (
        "" if not run.environments else f" for environment(s) {', '.join(run.environments)}"
    )
    if skipped:
        return Result("discovery", Status.SKIPPED, f"skipped: {message}")
    message += (
        "; add a chart, point discovery.paths in pipeline.yaml at your charts, "
        "or pass --allow-empty"
    )
    finding = Finding(check="discovery", message=message, file=_config_file(run))
    return Result("discovery", Status.FAILED, message, (finding,))


def _config_file(run: Run) -> str | None:
    """pipeline.yaml as findings name it, when the repository has one."""
    return str(run.config.file) if run.config.file else None


def _config_finding(error: ConfigError) -> Finding:
    message = f"{error.field}: {error.message}" if error.field else error.message
    return Finding(
        check="config", message=message, status=Status.ERROR, file=error.file, line=error.line
    )


async def _validate_targets(
    run: Run, targets: list[RenderTarget], checks: Collection[str]
) -> Outcome:
    started = time.monotonic()
    # The plaintext scan reads only sources: on the host it runs while helm renders.
    early = EarlyScan(run, targets) if "secrets" in checks and run.on_host else None
    dependencies = ChartDependencies(run)  # built once per chart, for all its environments
    jobs: list[Callable[[], Awaitable[Any]]] = [
        _render_job(run, target, dependencies, lint="lint" in checks) for target in targets
    ]
    verifying = "policy" in checks and (run.source / run.config.policy.path).is_dir()
    if verifying:
        # The policies' unit tests are the longest single step: start them first.
        jobs.insert(
            0,
            lambda: run.runner.run(
                conftest.verify_step(run.config.policy.path, run.config.policy.data)
            ),
        )
    finished = await gather(jobs, run.concurrency)
    verify: StepResult | None = finished.pop(0) if verifying else None
    rendered: list[Rendered] = finished
    render_seconds = time.monotonic() - started
    _write_rendered(run.out, rendered)

    ok = [r for r in rendered if r.text is not None]
    # Python's share of the work (reading the manifests back) overlaps the tools' processes;
    # a check waits for it only where it attributes findings to resources.
    parsed = anyio.Event()

    async def parse() -> None:
        await _parse_rendered(run, ok)
        parsed.set()

    lints = [item.pending_lint for item in rendered if item.pending_lint is not None]

    async def lint() -> None:
        await gather(lints, run.concurrency)

    later: list[Callable[[], Awaitable[Result | None]]] = [lint, parse]
    if "kubeconform" in checks:
        later.append(lambda: _kubeconform(run, ok, parsed))
    if "policy" in checks:
        later.append(lambda: _policy(run, ok, verify, parsed))
    if "secrets" in checks:
        later.append(lambda: _secrets(run, ok, parsed, early))
    # Each job bounds its own processes (lint's to the run's concurrency; the others run one).
    checked = [r for r in await gather(later, len(later)) if r is not None]
    if "delivery" in checks and delivery_checks.applies(run):
        await parsed.wait()
        deploy_kinds = {"configmap"}  # argocd-notifications-cm, beside the CRD kinds
        checked.append(
            await delivery_checks.delivery_result(
                run, ok, lambda: _schema_locations(run, ok, deploy_kinds)
            )
        )
    results: list[Result] = []
    if "lint" in checks:
        results.append(_lint_result(rendered))
    results.append(_render_result(rendered, render_seconds))
    unreachable = [f for r in checked for f in r.findings if f.check == SCHEMA_LOCATION_CHECK]
    error = SetupError(unreachable[0].message) if unreachable else None
    return Outcome(results + checked, rendered, error)


async def _secrets(
    run: Run, rendered: Sequence[Rendered], parsed: anyio.Event, early: EarlyScan | None
) -> Result:
    await parsed.wait()  # SealedSecrets are judged as parsed, named by their template
    return await secrets_stage(run, rendered, early)


async def _parse_rendered(run: Run, rendered: Sequence[Rendered]) -> None:
    # One hand-off to a thread for them all: each costs more than reading back a remembered
    # parse, and the files are parsed one after another either way.
    await anyio.to_thread.run_sync(_parse_all, run, rendered)


def _parse_all(run: Run, rendered: Sequence[Rendered]) -> None:
    """Each rendered file's resources, then their templates' lines."""
    for item in rendered:
        try:
            item.resources = parse_resources_remembered(item.text or "", run.memo)
        except yaml.YAMLError as exc:
            finding = Finding(
                check="render", message=f"helm printed invalid YAML: {exc}", **item.where()
            )
            item.render.append(finding)
            continue
        item.lines = _template_lines(run.source, item)


def _render_job(
    run: Run, target: RenderTarget, dependencies: ChartDependencies, *, lint: bool
) -> Callable[[], Awaitable[Rendered]]:
    async def job() -> Rendered:
        result = Rendered(target)
        broken = _broken_values(run.source, target)
        if broken:
            result.render.append(broken)
            return result
        # The source's chart, or a copy under OUT with dependencies built from Chart.lock.
        chart = await dependencies.for_target(target)
        if chart.built is not None:
            result.steps.append(chart.built)
        problem = chart.finding(target)
        if problem is not None:
            result.render.append(problem)
            return result
        kube = run.config.kubernetes_version
        unread = (
            overlays_helm_cannot_read(run.source, target, dependencies.names_files)
            if run.memo is not None
            else ()
        )
        template = await run.runner.run(helm.template_step(target, kube, chart.chart, unread))
        result.steps.append(template)
        if template.ok:
            result.text = template.stdout  # parsed later, while kubeconform and conftest run
        elif (killed := _killed(template, "render", target)) is not None:
            result.render.append(killed)
        else:
            stderr = chart.source_paths(template.stderr, target)
            result.render.append(helm.template_error(target, stderr))
        if lint:
            # Nothing else waits for lint's findings: it runs beside kubeconform and conftest.
            result.pending_lint = lambda: _lint(run, result, chart, unread)
        return result

    return job


async def _lint(run: Run, result: Rendered, chart: ChartToRender, unread: Sequence[str]) -> None:
    target = result.target
    step = helm.lint_step(target, run.config.kubernetes_version, chart.chart, unread)
    lint_step = await run.runner.run(step)
    result.steps.append(lint_step)
    stdout = chart.source_paths(lint_step.stdout, target)
    stderr = chart.source_paths(lint_step.stderr, target)
    killed = _killed(lint_step, "helm-lint", target)
    result.lint = [killed] if killed else helm.lint_findings(target, stdout + stderr)
    if not lint_step.ok and not result.lint:
        result.lint.append(helm.template_error(target, stderr or stdout))


# A resource's own `kind:` is at the start of a line; a nested one (roleRef, scaleTargetRef) is not.
_KIND_LINE = re.compile(
    r"""^kind:[ \t]*["']?(?P<kind>[A-Za-z0-9]+)["']?[ \t]*(?:#.*)?$""", re.MULTILINE
)


def _template_lines(source: Path, item: Rendered) -> list[int | None]:
    """The line of its chart template where each rendered resource starts, so a finding about
    the resource lands where a reviewer can change it.

    The nth resource of a kind from a template is the template's nth `kind:` line of that
    kind (a loop renders many from its one line: the last); line 1 when the kind itself is
    templated; None when the template is not in the repository (a dependency that was
    built from Chart.lock).
    """
    kind_lines: dict[str, dict[str, list[int]] | None] = {}
    rendered_so_far: dict[tuple[str, str], int] = {}
    lines: list[int | None] = []
    for resource in item.resources:
        file = item.template_file(resource)
        # Never read outside the repository, whatever a "# Source:" line says.
        if file is None or ".." in PurePosixPath(file).parts:
            lines.append(None)
            continue
        if file not in kind_lines:
            kind_lines[file] = _kinds_by_line(source / file)
        kinds = kind_lines[file]
        if kinds is None:
            lines.append(None)
            continue
        nth = rendered_so_far.get((file, resource.kind), 0)
        rendered_so_far[file, resource.kind] = nth + 1
        candidates = kinds.get(resource.kind)
        lines.append(candidates[min(nth, len(candidates) - 1)] if candidates else 1)
    return lines


def _kinds_by_line(template: Path) -> dict[str, list[int]] | None:
    """Each kind a template spells out, and the lines where it does; None when unreadable."""
    try:
        text = template.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    kinds: dict[str, list[int]] = {}
    for match in _KIND_LINE.finditer(text):
        kinds.setdefault(match["kind"], []).append(text.count("\n", 0, match.start()) + 1)
    return kinds


def _killed(step: StepResult, check: str, target: RenderTarget | None = None) -> Finding | None:
    """An error finding when a signal ended the step's tool: its output is cut short."""
    message = killed_by_signal(step)
    if message is None:
        return None
    return Finding(
        check=check,
        message=message,
        status=Status.ERROR,
        chart=target.chart.name if target else None,
        environment=target.environment if target else None,
    )


def _broken_values(source: Path, target: RenderTarget) -> Finding | None:
    """A values file Helm could not parse, reported with its own file and line."""
    for values in target.values:
        try:
            load_values_text((source / values).read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            return Finding(
                check="render",
                message=not_utf8("values file", exc),
                status=Status.ERROR,
                file=values,
                chart=target.chart.name,
                environment=target.environment,
            )
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            return Finding(
                check="render",
                message=f"invalid YAML in values file: {exc.problem}",
                status=Status.ERROR,
                file=values,
                line=mark.line + 1 if mark else None,
                chart=target.chart.name,
                environment=target.environment,
            )
    return None


def _write_rendered(out_dir: Path, rendered: Sequence[Rendered]) -> None:
    combined: list[str] = []
    for item in rendered:
        if item.text is None:
            continue
        reports.write_text(out_dir / item.target.rendered_path, item.text)
        combined.append(
            f"# chart: {item.target.chart.name} environment: {item.target.environment}\n"
        )
        combined.append(item.text if item.text.startswith("---") else f"---\n{item.text}")
    reports.write_text(out_dir / "rendered.yaml", "".join(combined))


def _lint_result(rendered: Sequence[Rendered]) -> Result:
    findings: list[Finding] = []
    steps: list[StepResult] = []
    failed = 0
    for item in rendered:
        lint_steps = [s for s in item.steps if s.step.args[0] == "lint"]
        steps += lint_steps
        if not lint_steps:
            failed += 1
            reason = item.render[0].message if item.render else "not run"
            findings.append(
                Finding(
                    check="helm-lint",
                    message=f"not linted: {reason}",
                    status=Status.ERROR,
                    chart=item.target.chart.name,
                    environment=item.target.environment,
                    file=item.render[0].file if item.render else None,
                    line=item.render[0].line if item.render else None,
                )
            )
        elif item.lint or any(not s.ok for s in lint_steps):
            failed += 1
            findings += item.lint
        else:
            findings.append(
                Finding(
                    check="helm-lint",
                    message="lint passed",
                    status=Status.PASSED,
                    **_target_where(item),
                )
            )
    status = Status.PASSED
    if any(f.status is Status.ERROR for f in findings):
        status = Status.ERROR
    elif failed:
        status = Status.FAILED
    return Result(
        "helm-lint",
        status,
        f"{len(rendered) - failed}/{len(rendered)} chart environments lint clean",
        tuple(findings),
        tuple(steps),
    )


def _target_where(item: Rendered) -> dict[str, Any]:
    return {
        "chart": item.target.chart.name,
        "environment": item.target.environment,
        "file": item.target.rendered_path,
    }


def _render_result(rendered: Sequence[Rendered], seconds: float) -> Result:
    findings: list[Finding] = []
    # One environment with everything switched off can be deliberate; a run in which nothing
    # rendered a single resource checked nothing, and must not pass.
    empty = Status.WARNING if any(item.resources for item in rendered) else Status.FAILED
    for item in rendered:
        if item.render:
            findings += item.render
        elif not item.resources:
            # Nothing rendered is nothing checked: said, never counted as valid.
            findings.append(
                Finding(
                    check="render",
                    message="rendered no resources: every template is disabled or empty with "
                    f"these values ({item.target.rendered_path} is empty)",
                    status=empty,
                    # The chart is what to look at; the empty render is only its outcome.
                    chart=item.target.chart.name,
                    environment=item.target.environment,
                    file=f"{item.target.chart.path}/Chart.yaml",
                )
            )
        else:
            findings.append(
                Finding(
                    check="render",
                    message=f"{len(item.resources)} resources",
                    status=Status.PASSED,
                    **_target_where(item),
                )
            )
    broken = [i for i in rendered if i.render]
    status = Status.PASSED
    if any(f.status is Status.ERROR for f in findings):
        status = Status.ERROR
    elif broken or any(f.status is Status.FAILED for f in findings):
        status = Status.FAILED
    elif not rendered:
        status = Status.SKIPPED
    summary = f"{len(rendered) - len(broken)}/{len(rendered)} chart environments rendered"
    if not rendered:
        summary = "no charts found"
    artifacts = (
        *tuple(i.target.rendered_path for i in rendered if i.text is not None),
        "rendered.yaml",
    )
    return Result(
        "render",
        status,
        summary,
        tuple(findings),
        # A chart's dependency build is shared by its environments: listed once.
        tuple(
            dict.fromkeys(
                s for i in rendered for s in i.steps if s.step.args[0] in {"template", "dependency"}
            )
        ),
        artifacts,
        seconds,
    )


def _index(rendered: Sequence[Rendered]) -> dict[str, Rendered]:
    return {item.target.rendered_path: item for item in rendered}


def _owner(filename: str, index: dict[str, Rendered]) -> Rendered | None:
    for path, item in index.items():
        if filename.endswith(path):
            return item
    return None


CRD_TEMPLATE = "crds/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"


def _check_crd_dirs(run: Run) -> None:
    for crd_dir in run.config.kubeconform.crd_schemas:
        if not (run.source / crd_dir).is_dir():
            raise ConfigError(
                "CRD schema directory does not exist",
                file=run.config.file,
                field=f"kubeconform.crd_schemas ({crd_dir})",
            )


def missing_schema_directory(location: str, source: Path) -> Path | None:
    """The local folder a schema location reads that does not exist, or None.

    A URL is kubeconform's to fetch; `bundled` and `default` are names; anything else is a
    path (relative to the repository, where kubeconform runs), possibly with a template.
    """
    if location in {BUNDLED, "default"} or location.startswith(("http://", "https://")):
        return None
    fixed = location.split("{{", 1)[0]
    folder = Path(fixed) if "{{" not in location or fixed.endswith("/") else Path(fixed).parent
    folder = folder if folder.is_absolute() else source / folder
    return None if folder.is_dir() else folder


def _check_schema_locations(run: Run) -> None:
    for location in run.config.kubeconform.schema_locations:
        if missing_schema_directory(location, run.source) is not None:
            raise ConfigError(
                "schema location is a folder that does not exist",
                file=run.config.file,
                field=f"kubeconform.schema_locations ({location})",
            )


async def _schema_locations(
    run: Run, rendered: Sequence[Rendered], extra_kinds: Collection[str] = ()
) -> list[Arg]:
    configured = run.schema_locations or run.config.kubeconform.schema_locations
    locations: list[Arg] = []
    for location in configured:
        if location != BUNDLED:
            locations.append(location)
            continue
        if run.schema_cache is not None:
            # On the host: one full bundle per version and CRD set, built once and reused.
            crd_dirs = [run.source / d for d in run.config.kubeconform.crd_schemas]
            crd_dirs += list(run.crd_schemas)
            root = _cached_bundle(run.schema_cache, run.config.kubernetes_version, crd_dirs)
            locations += [str(root), f"{root}/{CRD_TEMPLATE}"]
            continue
        # In containers the bundle is written by a step of its own and travels with the
        # kubeconform step: only the kinds this render uses.
        built = await run.runner.run(
            kubernetes_validate.bundle_step(
                out(SCHEMA_CACHE),
                run.config.kubernetes_version,
                _container_crd_dirs(run),
                _builtin_kinds(rendered) | set(extra_kinds),
            )
        )
        if not built.ok:
            detail = killed_by_signal(built) or built.stderr
            raise ConfigError(f"the offline schema bundle could not be written: {detail}")
        locations += [out(SCHEMA_CACHE), out(f"{SCHEMA_CACHE}/{CRD_TEMPLATE}")]
    return locations


def _container_crd_dirs(run: Run) -> list[Ref]:
    """CRD schema directories as paths a container sees: in the source, or copied under OUT."""
    dirs = [src(d) for d in run.config.kubeconform.crd_schemas]
    for index, given in enumerate(run.crd_schemas):
        if not given.is_dir():
            raise ConfigError("CRD schema directory does not exist", file=given)
        copy = run.out / CRD_INPUT / str(index)
        if given.resolve() != copy.resolve():
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(given, copy)
        dirs.append(out(f"{CRD_INPUT}/{index}"))
    return dirs


def _cached_bundle(cache: Path, version: str, crd_dirs: Sequence[Path]) -> Path:
    fingerprint = hashlib.sha256(f"{version}\n{_package_version()}".encode())
    # The shipped CRD schemas are part of every bundle: a change to them is a new bundle.
    for crd_dir in (BUILTIN_CRDS, *crd_dirs):
        for file in sorted(crd_dir.rglob("*.json")) if crd_dir.is_dir() else [crd_dir]:
            stat = file.stat()
            fingerprint.update(
                f"{file.relative_to(crd_dir.parent)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()
            )
    root = cache / "schemas" / f"v{version}-{fingerprint.hexdigest()[:16]}"
    if (root / ".complete").is_file():
        return root
    # Built beside its final name and renamed, so a concurrent run never reads half a bundle.
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{root.name}-", dir=root.parent))
    write_schema_bundle(staging, version, crd_dirs)
    (staging / ".complete").write_text("", encoding="utf-8")
    try:
        staging.rename(root)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run finished first; use its bundle
    return root


def _package_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version("kubernetes-validate")


def _builtin_kinds(rendered: Sequence[Rendered]) -> set[str]:
    kinds: set[str] = set()
    for item in rendered:
        for resource in item.resources:
            group = str(resource.document.get("apiVersion", "")).rpartition("/")[0]
            if "." not in group or group.endswith(".k8s.io"):
                kinds.add(resource.kind.lower())
    return kinds


async def _kubeconform(run: Run, rendered: Sequence[Rendered], parsed: anyio.Event) -> Result:
    started = time.monotonic()
    if not rendered:
        return Result(
            "kubeconform",
            Status.SKIPPED,
            "nothing rendered to validate",
            artifacts=("kubeconform.json",),
        )
    files = [out(item.target.rendered_path) for item in rendered]
    try:
        if run.schema_cache is None:
            await parsed.wait()  # a bundle for containers holds just the kinds rendered
        locations = await _schema_locations(run, rendered)
    except ConfigError as error:
        return Result("kubeconform", Status.ERROR, str(error), (_config_finding(error),))
    step_result = await run.runner.run(
        kubeconform.step(files, run.config.kubernetes_version, locations)
    )
    killed = _killed(step_result, "kubeconform")
    if killed is not None:
        return Result("kubeconform", Status.ERROR, killed.message, (killed,), (step_result,))
    try:
        verdicts = kubeconform.parse(
            step_result.stdout, run.config.kubeconform.ignore_missing_schemas
        )
    except kubeconform.OutputError as exc:
        message = f"{exc}; stderr: {step_result.stderr.strip()[:500]}"
        finding = Finding(check="kubeconform", message=message, status=Status.ERROR)
        return Result(
            "kubeconform", Status.ERROR, "kubeconform did not run", (finding,), (step_result,)
        )
    await parsed.wait()
    index = _index(rendered)
    placed: list[tuple[tuple[int, int, str], Finding]] = []
    for verdict in verdicts:
        item = _owner(verdict.filename, index)
        resource = _find_resource(item, verdict.kind, verdict.name)
        where = item.where(resource) if item else {"file": verdict.filename}
        # kubeconform checks files concurrently and prints in whatever order they finish:
        # reports follow the render order instead, so every run (and runner) reads the same.
        position = (
            rendered.index(item) if item else len(rendered),
            item.resources.index(resource) if item and resource else 0,
            verdict.filename,
        )
        placed.append((position, kubeconform.to_finding(verdict, **where)))
    findings = [finding for _, finding in sorted(placed, key=lambda pair: pair[0])]
    reports.write_json(run.out / "kubeconform.json", _kubeconform_report(findings))
    unreachable = _unreachable_locations(findings)
    if unreachable:
        # No network, or a wrong URL: one environment error, not a failure per resource.
        message = (
            f"kubeconform could not download schemas from {', '.join(unreachable)} "
            f"({len(findings)} resources unchecked); use the offline location `bundled` "
            "(kubeconform.schema_locations: [bundled], the default) or a mirror that answers"
        )
        finding = Finding(check=SCHEMA_LOCATION_CHECK, message=message, status=Status.ERROR)
        return Result("kubeconform", Status.ERROR, message, (finding,), (step_result,))
    failed = [f for f in findings if f.status.failed]
    status = Status.FAILED if failed or (not step_result.ok and not findings) else Status.PASSED
    version = run.config.kubernetes_version
    valid = len(findings) - len(failed)
    summary = f"{valid}/{len(findings)} resources valid against Kubernetes {version} schemas"
    return Result(
        "kubeconform",
        status,
        summary,
        tuple(findings),
        (step_result,),
        ("kubeconform.json",),
        time.monotonic() - started,
    )


_DOWNLOAD_FAILED = re.compile(r"^failed downloading schema at (?P<url>\w+://[^/\s]+)")
SCHEMA_LOCATION_CHECK = "schema-location"


def _unreachable_locations(findings: Sequence[Finding]) -> list[str]:
    hosts = {m["url"] for f in findings if (m := _DOWNLOAD_FAILED.match(f.message or ""))}
    return sorted(hosts)


def _kubeconform_report(findings: Sequence[Finding]) -> dict[str, Any]:
    counts = {s.value: sum(1 for f in findings if f.status is s) for s in Status}
    return {"resources": [reports.finding_json(f) for f in findings], "summary": counts}


def _find_resource(item: Rendered | None, kind: str, name: str) -> Resource | None:
    if item is None:
        return None
    for resource in item.resources:
        if resource.kind == kind and resource.name == name:
            return resource
    return None


async def _policy(
    run: Run, rendered: Sequence[Rendered], verify: StepResult | None, parsed: anyio.Event
) -> Result:
    started = time.monotonic()
    findings: list[Finding] = []
    steps: list[StepResult] = []
    policies = _policy_dirs(run)
    if not policies:
        message = (
            "no policies: the built-in pack is off (policy.builtin: false) and the source has "
            f"no '{run.config.policy.path}' directory; add Rego policies or turn the pack back on"
        )
        finding = Finding(
            check="policy",
            message=message,
            status=Status.ERROR,
            file=_config_file(run),
        )
        return Result(
            "policy", Status.ERROR, message, (finding,), artifacts=("policy-results.txt",)
        )
    if verify is not None:
        steps.append(verify)
        findings += _verify_findings(run, verify)
    today = dt.datetime.now(dt.UTC).date()
    findings += [
        _expired(run, waiver) for waiver in policy.expired_waivers(run.config.policy.waivers, today)
    ]
    if rendered:
        files: list[Ref] = [out(item.target.rendered_path) for item in rendered]
        test = await run.runner.run(
            conftest.policy_test_step(files, policies, run.config.policy.data)
        )
        steps.append(test)
        await parsed.wait()
        findings += _test_findings(
            test, rendered, run.config.policy.waivers, today, _policy_roots(run)
        )
    failed = [f for f in findings if f.status.failed]
    errors = [f for f in findings if f.status is Status.ERROR]
    status = Status.ERROR if errors else Status.FAILED if failed else Status.PASSED
    checked = sum(1 for f in findings if f.status is Status.PASSED and f.check == "policy")
    summary = f"{len(failed)} policy problem(s); {checked} resources passed every policy"
    unit_tests = [f for f in findings if f.check == "policy-verify" and f.status is Status.PASSED]
    if unit_tests:
        summary += f"; {unit_tests[0].message}"
    return Result(
        "policy",
        status,
        summary,
        tuple(findings),
        tuple(steps),
        ("policy-results.txt", "policy-results.json", "policy.sarif"),
        time.monotonic() - started,
    )


def _policy_dirs(run: Run) -> list[Ref]:
    """The built-in pack (unless turned off), then the repository's own policies."""
    dirs = [package(BUILTIN_POLICIES.name)] if run.config.policy.builtin else []
    if (run.source / run.config.policy.path).is_dir():
        dirs.append(src(run.config.policy.path))
    return dirs


def _expired(run: Run, waiver: Waiver) -> Finding:
    return Finding(
        check="policy",
        message=(
            f"waiver of {waiver.rule} for {waiver.kind}/{waiver.name} expired on "
            f"{waiver.expires}: fix the finding, or renew the waiver with a new date and reason"
        ),
        file=_config_file(run),
        line=waiver.line,
        rule=waiver.rule,
        resource=f"{waiver.kind}/{waiver.name}",
        environment=waiver.environment,
    )


def _policy_roots(run: Run) -> tuple[str, ...]:
    """Where conftest sees the repository: on the host, or the container's mount."""
    return (str(run.source), CONTAINER_MOUNTS[Root.SOURCE])


def _verify_findings(run: Run, verify: StepResult) -> list[Finding]:
    killed = _killed(verify, "policy-verify")
    if killed is not None:
        return [killed]
    try:
        outcome = conftest.parse_verify(verify.stdout, run.config.policy.path)
    except conftest.OutputError as exc:
        return conftest.load_errors("policy-verify", verify.stderr, _policy_roots(run)) or [
            Finding(
                check="policy-verify",
                message=f"{exc}; stderr: {verify.stderr.strip()[:500]}",
                status=Status.ERROR,
            )
        ]
    passed = Finding(
        check="policy-verify",
        message=f"{outcome.passed} policy unit tests passed",
        status=Status.PASSED,
        file=run.config.policy.path,
    )
    return [*outcome.failed, passed]


def _waive(
    status: Status,
    message: str,
    *,
    rule: str,
    resource: Resource | None,
    owner: Rendered | None,
    waivers: Sequence[Waiver],
    today: dt.date,
) -> tuple[Status, str, str | None]:
    """A finding's status, message and waiver after the resource's and pipeline.yaml's waivers."""
    if resource is None:
        return status, message, None
    annotations = resource.document.get("metadata", {}).get("annotations") or {}
    by_annotation = (
        policy.annotation_waiver(annotations, rule) if isinstance(annotations, dict) else None
    )
    if isinstance(by_annotation, str):
        return Status.FAILED, f"{message} ({by_annotation})", None
    waived = by_annotation or policy.config_waiver(
        waivers, rule, resource.ref, owner.target.environment if owner else None, today
    )
    if waived is None:
        return status, message, None
    return Status.WAIVED, message, f"{waived.reason} ({waived.source})"


def _test_findings(
    test: StepResult,
    rendered: Sequence[Rendered],
    waivers: Sequence[Waiver],
    today: dt.date,
    roots: tuple[str, ...],
) -> list[Finding]:
    killed = _killed(test, "policy")
    if killed is not None:
        return [killed]
    try:
        results, _ = conftest.parse(test.stdout)
    except conftest.OutputError as exc:
        return conftest.load_errors("policy", test.stderr, roots) or [
            Finding(
                check="policy",
                message=f"{exc}; stderr: {test.stderr.strip()[:500]}",
                status=Status.ERROR,
            )
        ]
    index = _index(rendered)
    findings: list[Finding] = []
    flagged: set[tuple[str, str]] = set()
    for item in results:
        owner = _owner(item.filename, index)
        resource = _find_resource(owner, item.kind or "", item.name or "")
        where = owner.where(resource) if owner else {"file": item.filename}
        builtin = (
            policy.builtin_rule(item.problem)
            if item.namespace == policy.BUILTIN_NAMESPACE
            else None
        )
        rule = builtin.id if builtin else conftest.rule_id(item.message)
        status = item.status
        if builtin is not None:
            status = Status.FAILED if builtin.severity == "deny" else Status.WARNING
        message, waiver = item.message, None
        if status is not Status.PASSED:
            status, message, waiver = _waive(
                status,
                item.message,
                rule=rule,
                resource=resource,
                owner=owner,
                waivers=waivers,
                today=today,
            )
        findings.append(
            Finding(
                check="policy",
                message=message,
                status=status,
                resource=f"{item.kind}/{item.name}" if item.kind else None,
                container=item.container,
                rule=rule,
                waiver=waiver,
                **where,
            )
        )
        if owner and status is Status.FAILED:
            flagged.add((owner.target.key, f"{item.kind}/{item.name}"))
    for owner in rendered:
        for resource in owner.resources:
            if (owner.target.key, resource.ref) not in flagged:
                findings.append(
                    Finding(
                        check="policy",
                        message="passed every policy",
                        status=Status.PASSED,
                        resource=resource.ref,
                        **owner.where(resource),
                    )
                )
    return findings


def image_tags(run: Run, rendered: Sequence[Rendered]) -> dict[str, str]:
    """chart/env -> the image tag its values select (chart appVersion when the tag is empty)."""
    tags: dict[str, str] = {}
    for item in rendered:
        documents = []
        for values in item.target.values:
            loaded = load_values_text((run.source / values).read_text(encoding="utf-8"))
            documents.append(loaded if isinstance(loaded, dict) else {})
        image = merged_values(documents).get("image")
        tag = image.get("tag") if isinstance(image, dict) else None
        if not tag:
            chart_yaml = load_yaml(
                (run.source / item.target.chart.path / "Chart.yaml").read_text(encoding="utf-8")
            )
            tag = (chart_yaml or {}).get("appVersion")
        if tag:
            tags[item.target.key] = str(tag)
    return tags


def write_artifacts(run: Run, outcome: Outcome, checks: Collection[str]) -> None:
    out_dir = run.out
    results = outcome.results
    findings = [f for r in results for f in r.findings]
    if "render" in checks and not (out_dir / "rendered.yaml").exists():
        reports.write_text(out_dir / "rendered.yaml", "")
    if "kubeconform" in checks and not (out_dir / "kubeconform.json").exists():
        reports.write_json(
            out_dir / "kubeconform.json",
            {"resources": [], "summary": {}, "note": "kubeconform did not run"},
        )
    if "policy" in checks:
        reports.write_text(out_dir / "policy-results.txt", reports.policy_table(findings))
        reports.write_json(out_dir / "policy-results.json", reports.policy_rows(findings))
        reports.write_json(out_dir / "policy.sarif", reports.sarif(findings))
    tags = _safe_image_tags(run, outcome.rendered)
    version = run.release_version or _single(tags.values()) or ""
    reports.write_text(out_dir / ".version", version + "\n" if version else "")
    image_tag = run.release_version or _single(tags.values())
    tag_lines = image_tag or "\n".join(f"{k}={v}" for k, v in sorted(tags.items()))
    reports.write_text(out_dir / ".image-tag", tag_lines + "\n" if tag_lines else "")
    extra: dict[str, object] = {
        "targets": [
            {
                "chart": r.target.chart.name,
                "environment": r.target.environment,
                "values": list(r.target.values),
                "rendered": r.text is not None,
            }
            for r in outcome.rendered
        ],
        "image_tags": tags,
        "version": version or None,
    }
    if outcome.changes is not None:
        extra["changed_since"] = outcome.changes.report()
    reports.write_summaries(out_dir, run.source, results, "gitops-pipeline validate", extra)


def _safe_image_tags(run: Run, rendered: Sequence[Rendered]) -> dict[str, str]:
    # A values file that does not parse is already a finding; it must not stop the reports.
    try:
        return image_tags(
            run, [r for r in rendered if not any(f.status is Status.ERROR for f in r.render)]
        )
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}


def _single(values: Collection[str]) -> str | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None
