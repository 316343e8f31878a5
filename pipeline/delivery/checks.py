"""The `delivery` stage of `validate`: the committed Argo CD objects agree with the charts.

Run when the repository has a `delivery:` block or a deploy folder. It reads what Argo CD
would read (the committed files, the ApplicationSet expanded per element) and checks that
every value file exists and is the layering `validate` checked; that Image Updater (both
forms) writes into one of the Application's value files, at a values path the chart
really puts into a container image (helm renders it with a probe tag), for the image
`release` publishes, admitting X.Y.Z and none of the other tags `release` pushes; that
every object is valid against its CRD schema; that each Rollout's services and analysis
templates are rendered; and that the files are exactly what `gitops-pipeline argocd`
generates from pipeline.yaml, naming the first field that differs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.delivery import argocd, gotemplate, imageupdater
from pipeline.discovery import RenderTarget, plan_targets
from pipeline.errors import ConfigError
from pipeline.manifests import load_values_text, load_yaml, merged_values, parse_resources
from pipeline.model import Arg, Finding, Result, Status, StepResult, src
from pipeline.publish import image_tags
from pipeline.run import Run, gather
from pipeline.stages import helm, kubeconform

if TYPE_CHECKING:
    from pipeline.validate import Rendered

CHECK = "delivery"
DEFAULT_PATH = "deploy"
SAMPLE_VERSION = "1.2.3"
SAMPLE_SHA = "0123456789abcdef0123456789abcdef01234567"
SchemaLocations = Callable[[], Awaitable[list[Arg]]]


def deploy_path(run: Run) -> str:
    return run.config.delivery.path if run.config.delivery else DEFAULT_PATH


def applies(run: Run) -> bool:
    """Only a repository that delivers with us: a delivery: block or a deploy folder."""
    return run.config.delivery is not None or (run.source / deploy_path(run)).is_dir()


@dataclass(frozen=True)
class App:
    """One Application as Argo CD would create it, and where its fields come from."""

    name: str
    document: Mapping[str, Any]
    file: str
    where: str  # e.g. spec.generators[0].list.elements[1]

    def labels(self) -> Mapping[str, Any]:
        metadata = self.document.get("metadata") or {}
        return metadata.get("labels") or {}

    def source(self) -> Mapping[str, Any]:
        spec = self.document.get("spec") or {}
        source = spec.get("source")
        return source if isinstance(source, dict) else {}


@dataclass
class _Probe:
    """A helm render with a unique tag at `tag_path`: the chart must put it in an image."""

    target: RenderTarget
    tag_path: str
    value: str
    named_by: list[tuple[str, str]]  # (file, field) of each setting that names the path
    result: StepResult | None = None


async def delivery_result(
    run: Run, rendered: Sequence[Rendered], schema_locations: SchemaLocations
) -> Result:
    started = time.monotonic()
    folder = deploy_path(run)
    findings: list[Finding] = list(_drift(run, folder))
    documents = list(_committed(run, folder, findings))
    skipped_only = all(f.status is Status.SKIPPED for f in findings)  # not an invalid file
    if run.config.delivery is None and not documents and skipped_only:
        # A folder that happens to be called deploy/ (charts under deploy/helm/, say), with
        # no delivery: block: nothing here is delivered with us. Said, never a green check.
        message = (
            f"skipped: no delivery: block in pipeline.yaml and no manifests in {folder}/ "
            "(its top level) to check"
        )
        return Result(
            CHECK, Status.SKIPPED, message, tuple(findings), duration=time.monotonic() - started
        )
    apps = list(_applications(documents, findings))
    probes: dict[tuple[str, tuple[str, ...], str], _Probe] = {}
    targets = {(r.target.chart.name, r.target.environment): r.target for r in rendered}
    app_values: dict[str, tuple[RenderTarget, tuple[str, ...]]] = {}
    # --env and --changed-since narrow what is rendered: an Application of a chart or
    # environment left out is not checked this run, and is no finding either.
    left_out = {(t.chart.name, t.environment) for t in plan_targets(run.config, ())} - set(targets)
    for app in apps:
        labels = app.labels()
        key = (
            str(labels.get(argocd.CHART_LABEL, "")),
            str(labels.get(argocd.ENVIRONMENT_LABEL, "")),
        )
        if key in left_out:
            continue
        known = _check_app(run, app, targets, findings)
        if known is not None:
            app_values[app.name] = known
    for settings, app in _updater_settings(documents, apps, findings):
        if app.name in app_values:
            target, values = app_values[app.name]
            _check_settings(_Judged(run, settings, app, target, values, findings), probes)
    steps: list[StepResult] = []
    steps += await _run_probes(run, list(probes.values()), findings)
    steps += await _kubeconform(run, folder, documents, schema_locations, findings)
    _check_rollouts(rendered, findings)
    failed = [f for f in findings if f.status.failed]
    status = (
        Status.ERROR
        if any(f.status is Status.ERROR for f in findings)
        else Status.FAILED
        if failed
        else Status.PASSED
    )
    summary = f"{len(apps)} Application(s) in {folder}/: " + (
        f"{len(failed)} problem(s)" if failed else "consistent with the charts"
    )
    return Result(
        CHECK, status, summary, tuple(findings), tuple(steps), (), time.monotonic() - started
    )


def _fail(message: str, file: str | None, field: str | None = None, **where: Any) -> Finding:
    text = f"{field}: {message}" if field else message
    return Finding(check=CHECK, message=text, file=file, **where)


# --- drift: the files are what `argocd` generates -----------------------------------------


def _drift(run: Run, folder: str) -> Iterator[Finding]:
    if run.config.delivery is None:
        yield Finding(
            check=CHECK,
            message=f"{folder}/ is not compared with generated objects: pipeline.yaml has no "
            "delivery: block",
            status=Status.SKIPPED,
            file=folder,
        )
        return
    try:
        expected = argocd.rendered_files(run.config)
    except ConfigError as error:
        field = f"{error.field}: " if error.field else ""
        yield Finding(
            check=CHECK,
            message=f"{field}{error.message}",
            status=Status.ERROR,
            file=str(error.file) if error.file else None,
            line=error.line,
        )
        return
    for name, text in expected.items():
        file = f"{folder}/{name}"
        path = run.source / file
        if not path.is_file():
            yield _fail("missing: run `gitops-pipeline argocd` and commit it", file)
            continue
        committed = path.read_text(encoding="utf-8", errors="replace")
        if committed == text:
            continue
        try:
            found = list(differences(load_yaml(committed), load_yaml(text)))
        except yaml.YAMLError:
            found = []
        if not found:
            message = "differs from the generated file in formatting or comments only"
            yield _fail(f"{message}; run `gitops-pipeline argocd`", file)
            continue
        for field, have, want in found[:_MAX_DIFFERENCES]:
            yield _fail(
                f"differs from what pipeline.yaml generates: {_short(have)} here, "
                f"{_short(want)} generated; change pipeline.yaml and run `gitops-pipeline argocd`",
                file,
                field or "(document)",
            )
        if len(found) > _MAX_DIFFERENCES:
            more = len(found) - _MAX_DIFFERENCES
            yield _fail(f"and {more} more field(s) differ", file)


_MISSING = object()
_SHORT = 80  # characters of a value quoted in a finding
_MAX_DIFFERENCES = 20  # per file; a regenerated file shows the rest


def differences(have: object, want: object, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Each field (dotted, with [i]) where two documents differ, with both values."""
    if isinstance(have, dict) and isinstance(want, dict):
        for key in [*want, *(k for k in have if k not in want)]:
            where = f"{path}.{key}" if path else str(key)
            yield from differences(have.get(key, _MISSING), want.get(key, _MISSING), where)
    elif isinstance(have, list) and isinstance(want, list):
        for index in range(max(len(have), len(want))):
            left = have[index] if index < len(have) else _MISSING
            right = want[index] if index < len(want) else _MISSING
            yield from differences(left, right, f"{path}[{index}]")
    elif have != want or type(have) is not type(want):
        yield path, have, want


def _short(value: object) -> str:
    if value is _MISSING:
        return "absent"
    text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


# --- reading the committed objects --------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    file: str
    document: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.document.get("kind", ""))


def _committed(run: Run, folder: str, findings: list[Finding]) -> Iterator[_Document]:
    root = run.source / folder
    if not root.is_dir():
        return
    for path in sorted(root.glob("*.y*ml")):
        file = f"{folder}/{path.name}"
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            findings.append(
                Finding(check=CHECK, message=f"invalid YAML: {exc}", file=file, line=line)
            )
            continue
        for document in documents:
            if isinstance(document, dict):
                yield _Document(file, document)


def _applications(documents: Sequence[_Document], findings: list[Finding]) -> Iterator[App]:
    for item in documents:
        if item.kind == "Application":
            name = str((item.document.get("metadata") or {}).get("name", ""))
            yield App(name, item.document, item.file, "")
        elif item.kind == "ApplicationSet":
            yield from _expand(item, findings)


def _expand(item: _Document, findings: list[Finding]) -> Iterator[App]:
    spec = item.document.get("spec") or {}
    if spec.get("goTemplate") is not True:
        findings.append(_fail("only goTemplate: true is checked", item.file, "spec.goTemplate"))
        return
    template = spec.get("template") or {}
    patch = spec.get("templatePatch")
    for g_index, generator in enumerate(spec.get("generators") or []):
        elements = (generator.get("list") or {}).get("elements") if generator else None
        if not isinstance(elements, list):
            findings.append(
                _fail(
                    "only list generators are checked",
                    item.file,
                    f"spec.generators[{g_index}]",
                )
            )
            continue
        for e_index, element in enumerate(elements):
            where = f"spec.generators[{g_index}].list.elements[{e_index}]"
            try:
                document = gotemplate.render_strings(template, element)
                if isinstance(patch, str):
                    patched = load_yaml(gotemplate.render(patch, element)) or {}
                    document = _strategic_merge(document, patched)
            except (gotemplate.TemplateError, yaml.YAMLError) as exc:
                findings.append(_fail(f"cannot be expanded: {exc}", item.file, where))
                continue
            if not isinstance(document, dict):
                continue
            name = str((document.get("metadata") or {}).get("name", ""))
            yield App(name, document, item.file, where)


def _strategic_merge(base: object, patch: object) -> object:
    """Maps merged key by key, lists and scalars replaced: Application's lists have no merge
    keys, so a strategic merge patch replaces them whole."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _strategic_merge(base.get(key), value)
        return merged
    return patch


# --- each Application ----------------------------------------------------------------------


def _check_app(
    run: Run,
    app: App,
    targets: Mapping[tuple[str, str], RenderTarget],
    findings: list[Finding],
) -> tuple[RenderTarget, tuple[str, ...]] | None:
    """The app's target and its value files (relative to the repository), when they exist."""
    source = app.source()
    chart_path = str(source.get("path", ""))
    at = f"{app.where}." if app.where else ""
    helm_source = source.get("helm") or {}
    value_files = helm_source.get("valueFiles") or []
    labels = app.labels()
    key = (str(labels.get(argocd.CHART_LABEL, "")), str(labels.get(argocd.ENVIRONMENT_LABEL, "")))
    where = {
        "chart": key[0] or None,
        "environment": key[1] or None,
        "resource": f"Application/{app.name}",
    }
    files: list[str] = []
    missing = False
    for index, value_file in enumerate(value_files):
        field = f"{at}valueFiles[{index}]" if app.where else f"spec.source.helm.valueFiles[{index}]"
        if not isinstance(value_file, str) or value_file.startswith("$"):
            findings.append(
                _fail(
                    f"{value_file!r}: only paths relative to the chart are checked",
                    app.file,
                    field,
                    **where,
                )
            )
            missing = True
            continue
        relative = posixpath.normpath(posixpath.join(chart_path, value_file))
        files.append(relative)
        if relative.startswith("../") or not (run.source / relative).is_file():
            findings.append(
                _fail(
                    f"value file {value_file} ({relative}) of Application {app.name} does not "
                    "exist in the repository",
                    app.file,
                    field,
                    **where,
                )
            )
            missing = True
    target = targets.get(key)
    if target is None:
        findings.append(
            _fail(
                f"Application {app.name} names no chart and environment validate renders "
                f"(labels {argocd.CHART_LABEL}={key[0]!r}, {argocd.ENVIRONMENT_LABEL}={key[1]!r})",
                app.file,
                f"{app.where or 'metadata'}.labels" if not app.where else app.where,
                **where,
            )
        )
        return None
    if chart_path != target.chart.path:
        findings.append(
            _fail(
                f"Application {app.name} deploys {chart_path!r}, not the chart's folder "
                f"{target.chart.path!r}",
                app.file,
                f"{at}path" if app.where else "spec.source.path",
                **where,
            )
        )
        return None
    if not missing and tuple(files) != target.values:
        findings.append(
            _fail(
                f"Application {app.name} layers {', '.join(files) or 'no file'}; validate "
                f"checked {', '.join(target.values)}",
                app.file,
                f"{at}valueFiles" if app.where else "spec.source.helm.valueFiles",
                **where,
            )
        )
    if missing:
        return None
    return target, tuple(files)


def _updater_settings(
    documents: Sequence[_Document], apps: Sequence[App], findings: list[Finding]
) -> Iterator[tuple[imageupdater.UpdaterSettings, App]]:
    for app in apps:
        metadata = app.document.get("metadata") or {}
        where = app.where or "metadata"
        # An ApplicationSet's annotations are written once, in its template.
        prefix = "spec.template" if app.where else ""
        settings = imageupdater.from_annotations(
            metadata.get("annotations") or {}, app.file, prefix
        )
        if settings is not None:
            yield settings, app
        elif any(d.kind == "ImageUpdater" for d in documents):
            continue
        else:
            findings.append(
                Finding(
                    check=CHECK,
                    message=f"{where}: Application {app.name} has no Image Updater "
                    "configuration: its tag is never updated",
                    status=Status.WARNING,
                    file=app.file,
                    resource=f"Application/{app.name}",
                )
            )
    for item in documents:
        if item.kind != "ImageUpdater":
            continue
        for ref in imageupdater.from_resource(item.document, item.file):
            matched = [a for a in apps if fnmatch.fnmatchcase(a.name, ref.name_pattern)]
            if not matched:
                findings.append(
                    _fail(
                        f"namePattern {ref.name_pattern!r} matches no Application",
                        item.file,
                        ref.settings.where.rsplit(".images", 1)[0] + ".namePattern",
                    )
                )
            for app in matched:
                yield ref.settings, app


@dataclass(frozen=True)
class _Judged:
    """One form of Image Updater settings for one Application, and what it is judged against."""

    run: Run
    settings: imageupdater.UpdaterSettings
    app: App
    target: RenderTarget
    values: tuple[str, ...]
    findings: list[Finding]

    def fail(self, setting: str, message: str) -> None:
        form = f"Image Updater ({self.settings.form}) for {self.app.name}"
        self.findings.append(
            _fail(
                f"{form}: {message}",
                self.settings.file,
                self.settings.field(setting),
                chart=self.target.chart.name,
                environment=self.target.environment,
                resource=f"Application/{self.app.name}",
            )
        )


def _check_settings(
    judged: _Judged, probes: dict[tuple[str, tuple[str, ...], str], _Probe]
) -> None:
    before = len(judged.findings)
    write_back = _check_write_back(judged)
    name = _check_image(judged)
    _check_filter(judged)
    _check_tag_path(judged, probes)
    if len(judged.findings) == before:
        settings = judged.settings
        judged.findings.append(
            Finding(
                check=CHECK,
                message=f"Image Updater ({settings.form}) for {judged.app.name}: writes "
                f"{write_back}, {settings.tag_path} of {name}, tags {settings.allow_tags}",
                status=Status.PASSED,
                file=settings.file,
                chart=judged.target.chart.name,
                environment=judged.target.environment,
                resource=f"Application/{judged.app.name}",
            )
        )


def _check_write_back(judged: _Judged) -> str | None:
    """One of the app's value files, and no later file sets the tag over it."""
    target = judged.settings.write_back_target
    write_back = _write_back_file(target, str(judged.app.source().get("path", "")))
    if write_back is None:
        judged.fail("write_back_target", f"write-back target {target!r} is not helmvalues:<file>")
        return None
    values = judged.values
    if write_back not in values:
        judged.fail(
            "write_back_target",
            f"writes {write_back}, which is not one of the Application's value files "
            f"({', '.join(values)})",
        )
        return write_back
    tag_path = judged.settings.tag_path or "image.tag"
    later = values[values.index(write_back) + 1 :]
    for file in later:
        if _get(_values_documents(judged.run, (file,))[0], tag_path) is not _MISSING:
            judged.fail(
                "write_back_target",
                f"writes {write_back}, but {file} comes later and sets {tag_path}: the "
                "written tag never takes effect",
            )
            break
    return write_back


def _check_image(judged: _Judged) -> str:
    """The image `release` publishes, and the chart's values name the same one."""
    name, _ = imageupdater.split_image(judged.settings.image)
    repository = judged.run.config.image.repository
    if not repository:
        judged.findings.append(
            _fail(
                "is not set: the image release publishes, which Image Updater must watch",
                str(judged.run.config.file or "pipeline.yaml"),
                "image.repository",
            )
        )
        return name
    if name != repository:
        judged.fail(
            "image", f"watches {name}, but release publishes {repository} (image.repository)"
        )
    name_path = judged.settings.name_path
    if name_path:
        current = _get(merged_values(_values_documents(judged.run, judged.values)), name_path)
        if current is not _MISSING and current != repository:
            judged.fail(
                "name_path", f"{name_path} is {current!r} in the chart's values, not {repository}"
            )
    return name


def _check_filter(judged: _Judged) -> None:
    """X.Y.Z admitted; every other tag `release` pushes for it (X.Y, X, latest, sha-) not."""
    allow = judged.settings.allow_tags
    if allow is None:
        judged.fail(
            "allow_tags",
            "no allow-tags filter: every tag release pushes (latest, sha-...) would be deployed",
        )
        return
    tags = image_tags(SAMPLE_VERSION, SAMPLE_SHA)
    admitted, problem = imageupdater.tags_admitted(allow, tags)
    if admitted is None:
        judged.fail("allow_tags", f"{allow!r}: {problem}")
        return
    extra = [t for t in admitted if t != SAMPLE_VERSION]
    if extra:
        judged.fail(
            "allow_tags",
            f"{allow!r} admits {', '.join(extra)}, which release also pushes; admit only X.Y.Z",
        )
    if SAMPLE_VERSION not in admitted:
        judged.fail(
            "allow_tags", f"{allow!r} rejects {SAMPLE_VERSION}: no release would be deployed"
        )


def _check_tag_path(
    judged: _Judged, probes: dict[tuple[str, tuple[str, ...], str], _Probe]
) -> None:
    """In the chart's values; whether a container image reads it is the probe render's."""
    tag_path = judged.settings.tag_path or "image.tag"
    merged = merged_values(_values_documents(judged.run, judged.values))
    if _get(merged, tag_path) is _MISSING:
        judged.fail(
            "tag_path", f"{tag_path} is not in the chart's values ({', '.join(judged.values)})"
        )
        return
    key = (judged.target.chart.path, judged.values, tag_path)
    if key not in probes:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:8]
        probes[key] = _Probe(
            replace(judged.target, values=judged.values), tag_path, f"0.0.0-probe.{digest}", []
        )
    named = (judged.settings.file, judged.settings.field("tag_path"))
    if named not in probes[key].named_by:
        probes[key].named_by.append(named)


def _write_back_file(target: str | None, chart_path: str) -> str | None:
    if target is None or not target.startswith("helmvalues"):
        return None
    if target == "helmvalues":
        return posixpath.join(chart_path, "values.yaml")
    if not target.startswith(imageupdater.HELMVALUES):
        return None
    path = target.removeprefix(imageupdater.HELMVALUES)
    if path.startswith("/"):
        return posixpath.normpath(path.lstrip("/"))
    return posixpath.normpath(posixpath.join(chart_path, path))


def _values_documents(run: Run, files: Sequence[str]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for file in files:
        try:
            # Parsed once per run with validate's own reading of the same files (read-only).
            loaded = load_values_text((run.source / file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            loaded = None  # the render stage reports a values file it cannot read
        documents.append(loaded if isinstance(loaded, dict) else {})
    return documents


def _get(values: object, dotted: str) -> object:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return _MISSING
        values = values[part]
    return values


# --- the probe renders ----------------------------------------------------------------------


async def _run_probes(run: Run, probes: list[_Probe], findings: list[Finding]) -> list[StepResult]:
    def job(probe: _Probe) -> Callable[[], Awaitable[StepResult]]:
        base = helm.template_step(probe.target, run.config.kubernetes_version)
        step = replace(
            base,
            name=f"helm-template-probe:{probe.target.key}",
            args=(*base.args, "--set-string", f"{probe.tag_path}={probe.value}"),
        )
        return lambda: run.runner.run(step)

    results = await gather([job(p) for p in probes], run.concurrency)
    for probe, result in zip(probes, results, strict=True):
        probe.result = result
        for file, field in probe.named_by:
            findings.extend(_probe_findings(run, probe, result, file, field))
    return results


def _probe_findings(
    run: Run, probe: _Probe, result: StepResult, file: str, field: str
) -> Iterator[Finding]:
    where: dict[str, Any] = {
        "chart": probe.target.chart.name,
        "environment": probe.target.environment,
    }
    if not result.ok:
        yield Finding(
            check=CHECK,
            message=f"{field}: helm template with {probe.tag_path}={probe.value} failed: "
            f"{result.stderr.strip()[:500]}",
            status=Status.ERROR,
            file=file,
            **where,
        )
        return
    images = list(_container_images(parse_resources(result.stdout)))
    carrying = [image for image in images if probe.value in image]
    if not carrying:
        yield _fail(
            f"no container image changes when {probe.tag_path} changes (rendered images: "
            f"{', '.join(sorted(set(images))) or 'none'}): the chart does not read its tag there",
            file,
            field,
            **where,
        )
        return
    repository = run.config.image.repository
    names = {image.split(f":{probe.value}")[0] for image in carrying}
    if repository and names != {repository}:
        yield _fail(
            f"{probe.tag_path} sets the tag of {', '.join(sorted(names))}, not of {repository} "
            "(image.repository)",
            file,
            field,
            **where,
        )


def _container_images(resources: Sequence[Any]) -> Iterator[str]:
    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"containers", "initContainers", "ephemeralContainers"} and isinstance(
                    value, list
                ):
                    for container in value:
                        if isinstance(container, dict) and isinstance(container.get("image"), str):
                            yield container["image"]
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for resource in resources:
        yield from walk(resource.document)


# --- schemas --------------------------------------------------------------------------------


async def _kubeconform(
    run: Run,
    folder: str,
    documents: Sequence[_Document],
    schema_locations: SchemaLocations,
    findings: list[Finding],
) -> list[StepResult]:
    files = sorted({d.file for d in documents})
    if not files:
        return []
    try:
        locations = await schema_locations()
    except ConfigError as error:
        findings.append(Finding(check=CHECK, message=str(error), status=Status.ERROR))
        return []
    step = replace(
        kubeconform.step([src(f) for f in files], run.config.kubernetes_version, locations),
        name=f"kubeconform:{folder}",
    )
    result = await run.runner.run(step)
    try:
        verdicts = kubeconform.parse(result.stdout, run.config.kubeconform.ignore_missing_schemas)
    except kubeconform.OutputError as exc:
        findings.append(
            Finding(
                check=CHECK,
                message=f"kubeconform of {folder}/ did not run: {exc}; "
                f"{result.stderr.strip()[:300]}",
                status=Status.ERROR,
            )
        )
        return [result]
    for verdict in verdicts:
        # Each runner names the file its own way (an absolute path, /src/...): ours is the one
        # it ends with.
        file = next((f for f in files if verdict.filename.endswith(f)), verdict.filename)
        finding = kubeconform.to_finding(verdict, file=file)
        if finding.status.failed:
            findings.append(replace(finding, check=CHECK, message=f"schema: {finding.message}"))
    if not result.ok and not any(f.status.failed for f in findings):
        findings.append(
            Finding(
                check=CHECK,
                message=f"kubeconform failed: {result.stderr.strip()[:300]}",
                status=Status.ERROR,
            )
        )
    return [result]


# --- Rollouts -------------------------------------------------------------------------------


def _check_rollouts(rendered: Sequence[Rendered], findings: list[Finding]) -> None:
    for item in rendered:
        names: dict[str, set[str]] = {}
        for resource in item.resources:
            names.setdefault(resource.kind, set()).add(resource.name)
        for resource in item.resources:
            if resource.kind != "Rollout":
                continue
            where = item.where(resource)
            for field, kind, name in _rollout_references(resource.document):
                if name not in names.get(kind, set()):
                    findings.append(
                        Finding(
                            check=CHECK,
                            message=f"{field}: Rollout {resource.name} names {kind} {name!r}, "
                            "which the chart does not render in this environment",
                            resource=resource.ref,
                            **where,
                        )
                    )


def _rollout_references(document: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(field, kind, name) of each Service and analysis template a Rollout needs."""
    strategy = (document.get("spec") or {}).get("strategy") or {}
    canary = strategy.get("canary")
    blue_green = strategy.get("blueGreen")
    if isinstance(canary, dict):
        base = "spec.strategy.canary"
        for key in ("canaryService", "stableService"):
            if isinstance(canary.get(key), str):
                yield f"{base}.{key}", "Service", canary[key]
        yield from _templates(f"{base}.analysis", canary.get("analysis"))
        for index, step in enumerate(canary.get("steps") or []):
            if isinstance(step, dict):
                yield from _templates(f"{base}.steps[{index}].analysis", step.get("analysis"))
    if isinstance(blue_green, dict):
        base = "spec.strategy.blueGreen"
        for key in ("activeService", "previewService"):
            if isinstance(blue_green.get(key), str):
                yield f"{base}.{key}", "Service", blue_green[key]
        for key in ("prePromotionAnalysis", "postPromotionAnalysis"):
            yield from _templates(f"{base}.{key}", blue_green.get(key))


def _templates(field: str, analysis: object) -> Iterator[tuple[str, str, str]]:
    if not isinstance(analysis, dict):
        return
    for index, template in enumerate(analysis.get("templates") or []):
        if isinstance(template, dict) and isinstance(template.get("templateName"), str):
            kind = "ClusterAnalysisTemplate" if template.get("clusterScope") else "AnalysisTemplate"
            yield f"{field}.templates[{index}].templateName", kind, template["templateName"]
