"""`promote`: one environment's overlay takes a published version, as one commit.

The version is written at the chart's image-tag path (`delivery.charts.<chart>.image_tag_path`,
default `image.tag`; `--path` overrides it) of the environment's own overlay, the last values
file of that environment; `values.yaml`, which every environment reads, is never written.
Nothing is written unless the registry serves the tag, the overlay has no uncommitted change
of someone else's, and git knows who commits. Promoting the version already there changes
nothing and says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

import anyio.to_thread
import yaml

from pipeline import reports
from pipeline.delivery import git_steps, registry
from pipeline.delivery.values_file import ValuesFileError, parse_path, set_scalar
from pipeline.discovery import BASE_ENVIRONMENT, RenderTarget, plan_targets
from pipeline.errors import ConfigError, SetupError
from pipeline.manifests import load_yaml, merged_values
from pipeline.model import Step, StepResult
from pipeline.run import Run
from pipeline.stages import git

DEFAULT_TAG_PATH = "image.tag"
RESULT_FILE = "promote.json"
PULL_REQUEST_BODY = "promote-pr.md"
PATCH_FILE = "promote.patch"

# Writes the overlay's new bytes where the runner's git steps see them (the host's work
# tree, or a container's copy of the source).
SourceWriter = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class PromoteRequest:
    environment: str
    version: str | None = None
    from_environment: str | None = None
    chart: str | None = None
    path: str | None = None
    image: str | None = None
    credentials: registry.Credentials | None = None
    pull_request: bool = False
    registry_endpoint: str | None = None  # host:port of a tunnel to the registry
    identity: git_steps.Identity | None = None  # the committer when git has none configured


@dataclass(frozen=True)
class Promotion:
    chart: str
    environment: str
    version: str
    before: str | None
    file: str
    path: str
    image: str
    changed: bool
    digest: str | None = None
    commit: str | None = None
    branch: str | None = None
    message: str | None = None

    def describe(self) -> str:
        where = f"{self.chart} in {self.environment} ({self.file}: {self.path})"
        if not self.changed:
            return f"{where} is at {self.version} already: nothing to do"
        target = f"branch {self.branch}" if self.branch else "commit"
        return f"{where}: {self.before or 'unset'} -> {self.version}, {target} {self.commit}"

    def json(self) -> dict[str, Any]:
        return {
            "chart": self.chart,
            "environment": self.environment,
            "version": self.version,
            "previous": self.before,
            "file": self.file,
            "path": self.path,
            "image": self.image,
            "digest": self.digest,
            "changed": self.changed,
            "commit": self.commit,
            "branch": self.branch,
            "message": self.message,
        }


def _target(run: Run, request: PromoteRequest, environment: str, flag: str) -> RenderTarget:
    targets = plan_targets(run.config)
    by_chart = [t for t in targets if request.chart in {None, t.chart.name}]
    if request.chart is not None and not by_chart:
        known = ", ".join(sorted({t.chart.name for t in targets})) or "none"
        raise ConfigError(f"no chart {request.chart!r}; charts: {known}", field="--chart")
    found = [t for t in by_chart if t.environment == environment]
    if not found:
        known = ", ".join(sorted({t.environment for t in by_chart})) or "none"
        raise ConfigError(
            f"no environment {environment!r}"
            + (f" for chart {request.chart}" if request.chart else "")
            + f"; environments: {known}",
            field=flag,
        )
    if len(found) > 1:
        names = ", ".join(t.chart.name for t in found)
        raise ConfigError(
            f"charts {names} all deploy to {environment}: pass --chart NAME", field="--chart"
        )
    return found[0]


def overlay_of(target: RenderTarget) -> str:
    """The environment's own values file: the last of its layering, never the chart's base."""
    base = target.chart.file("values.yaml")
    own = [v for v in target.values if v != base]
    if target.environment == BASE_ENVIRONMENT or not own:
        raise ConfigError(
            f"environment {target.environment!r} of chart {target.chart.name} has no values file "
            f"of its own (only {base}, which every environment reads): add "
            f"{target.chart.file(f'values-{target.environment}.yaml')} or declare one in "
            "pipeline.yaml",
            field="--env",
        )
    return own[-1]


def _merged(run: Run, target: RenderTarget) -> dict[str, Any]:
    documents = []
    for values in target.values:
        try:
            loaded = load_yaml((run.source / values).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the values file: {exc}", file=values) from None
        documents.append(loaded if isinstance(loaded, dict) else {})
    return merged_values(documents)


def _lookup(values: dict[str, Any], path: Sequence[str]) -> Any:
    node: Any = values
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _tag_path(run: Run, request: PromoteRequest, chart: str) -> str:
    if request.path:
        return request.path
    delivery = run.config.delivery
    return delivery.chart(chart).image_tag_path if delivery is not None else DEFAULT_TAG_PATH


def _name_path(run: Run, chart: str, tag_path: Sequence[str]) -> tuple[str, ...]:
    delivery = run.config.delivery
    if delivery is not None and chart in delivery.charts:
        return parse_path(delivery.chart(chart).image_name_path)
    return (*tag_path[:-1], "repository")  # beside the tag, as charts lay images out


def _version(run: Run, request: PromoteRequest, path: tuple[str, ...]) -> str:
    if request.version is not None:
        if request.from_environment is not None:
            raise ConfigError("pass --version or --from, not both", field="--version")
        return registry.check_tag(request.version)
    if request.from_environment is None:
        raise ConfigError("which version? pass --version X or --from ENV", field="--version")
    source = _target(run, request, request.from_environment, "--from")
    found = _lookup(_merged(run, source), path)
    if not isinstance(found, (str, int, float)) or isinstance(found, bool) or found == "":
        raise ConfigError(
            f"environment {request.from_environment} sets no {'.'.join(path)} for chart "
            f"{source.chart.name} (in {', '.join(source.values)})",
            field="--from",
        )
    return registry.check_tag(str(found), "--from")


def _image(
    run: Run, request: PromoteRequest, target: RenderTarget, tag_path: tuple[str, ...]
) -> str:
    if request.image:
        return request.image
    name_path = _name_path(run, target.chart.name, tag_path)
    found = _lookup(_merged(run, target), name_path)
    if isinstance(found, str) and found:
        return found
    if run.config.image.repository:
        return run.config.image.repository
    raise ConfigError(
        f"which image? {'.'.join(name_path)} is not set in {', '.join(target.values)}: pass "
        "--image or set image.repository in pipeline.yaml",
        field="--image",
    )


async def _git(run: Run, step: Step, what: str) -> StepResult:
    result = await run.runner.run(step)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ConfigError(f"{what}: {detail[-1] if detail else f'git exited {result.exit_code}'}")
    return result


def commit_message(promotion: Promotion) -> str:
    subject = (
        f"chore(deploy): promote {promotion.chart} to {promotion.version} in "
        f"{promotion.environment}"
    )
    digest = f"@{promotion.digest}" if promotion.digest else ""
    before = promotion.before or "(unset)"
    body = [
        f"{promotion.file}: {promotion.path} {before} -> {promotion.version}",
        f"Image: {promotion.image}:{promotion.version}{digest}",
    ]
    return subject + "\n\n" + "\n".join(body)


def pull_request_body(promotion: Promotion) -> str:
    digest = f"`{promotion.digest}`" if promotion.digest else "(the registry named none)"
    return (
        f"## Promote {promotion.chart} to {promotion.version} in {promotion.environment}\n\n"
        "| | |\n|---|---|\n"
        f"| chart | `{promotion.chart}` |\n"
        f"| environment | `{promotion.environment}` |\n"
        f"| file | `{promotion.file}` |\n"
        f"| path | `{promotion.path}` |\n"
        f"| from | `{promotion.before or '(unset)'}` |\n"
        f"| to | `{promotion.version}` |\n"
        f"| image | `{promotion.image}:{promotion.version}` |\n"
        f"| digest | {digest} |\n\n"
        "The registry serves this tag; the commit changes only this value. Argo CD deploys it "
        "once merged.\n"
    )


def _planned(run: Run, request: PromoteRequest) -> tuple[Promotion, str, bool]:
    """What promoting means here: the promotion, the overlay's new text, its byte order mark."""
    target = _target(run, request, request.environment, "--env")
    overlay = overlay_of(target)
    tag_path_text = _tag_path(run, request, target.chart.name)
    try:
        tag_path = parse_path(tag_path_text)
    except ValuesFileError as error:
        raise ConfigError(error.message, field="--path") from None
    version = _version(run, request, tag_path)
    raw = (run.source / overlay).read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 (byte {exc.start}); save it as UTF-8", file=overlay) from None
    try:
        edit = set_scalar(text, tag_path, version)
    except ValuesFileError as error:
        raise ConfigError(
            error.message, file=overlay, line=error.line, field=tag_path_text
        ) from None
    promotion = Promotion(
        chart=target.chart.name,
        environment=request.environment,
        version=version,
        before=edit.before,
        file=overlay,
        path=tag_path_text,
        image=_image(run, request, target, tag_path),
        changed=edit.changed,
    )
    return promotion, edit.text, raw.startswith(b"\xef\xbb\xbf")


async def promote(run: Run, request: PromoteRequest, write: SourceWriter) -> Promotion:
    """Check, write, commit; the outcome is also written to OUT (promote.json, and so on)."""
    promotion, new_text, bom = _planned(run, request)
    overlay, version, environment = promotion.file, promotion.version, promotion.environment
    if not promotion.changed:
        _write_outcome(run, promotion)
        return promotion
    name = registry.parse_image(promotion.image)
    await _git(run, git_steps.tracked_step(overlay), f"{overlay} is not tracked by git")
    status = await _git(run, git_steps.file_status_step(overlay), "git status")
    if status.stdout.strip():
        raise ConfigError(
            "has uncommitted changes: commit or stash them first, so the promotion commit holds "
            "only the new version",
            file=overlay,
        )
    await _git(run, git_steps.identity_step(request.identity), "git has no committer identity")
    digest = await anyio.to_thread.run_sync(
        lambda: registry.manifest_digest(
            name, version, request.credentials, endpoint=request.registry_endpoint
        )
    )
    if digest is None:
        raise ConfigError(
            f"{name}:{version} is not in the registry (no manifest for that tag): publish it "
            "first, or check the version",
            field="--version" if request.version is not None else "--from",
        )
    branch = None
    if request.pull_request:
        branch = f"promote/{promotion.chart}-{environment}-{version}"
        await _git(run, git_steps.new_branch_step(branch), f"cannot create branch {branch}")
    promotion = replace(promotion, digest=digest or None, branch=branch)
    message = commit_message(promotion)
    new_bytes = (b"\xef\xbb\xbf" if bom else b"") + new_text.encode("utf-8")
    await write(overlay, new_bytes)
    try:
        await _git(
            run, git_steps.commit_file_step(overlay, message, request.identity), "git commit"
        )
    except ConfigError as error:
        raise SetupError(f"{error}; the new version is in {overlay}, not committed") from None
    head = await _git(run, git.head_step(), "git rev-parse HEAD")
    patch = await _git(run, git_steps.format_patch_step(), "git format-patch")
    promotion = replace(promotion, commit=git.parse_head(head.stdout), message=message)
    reports.write_text(run.out / PATCH_FILE, patch.stdout)
    if branch is not None:
        reports.write_text(run.out / PULL_REQUEST_BODY, pull_request_body(promotion))
    _write_outcome(run, promotion)
    return promotion


def _write_outcome(run: Run, promotion: Promotion) -> None:
    document = {"schema_version": reports.SUMMARY_SCHEMA_VERSION, **promotion.json()}
    reports.write_json(run.out / RESULT_FILE, document)


def host_writer(run: Run) -> SourceWriter:
    """Writes into the repository on this machine (the local runner's source)."""

    async def write(relative: str, data: bytes) -> None:
        path = run.source / PurePosixPath(relative)
        await anyio.to_thread.run_sync(path.write_bytes, data)

    return write
