"""`--changed-since REF`: check only the charts a change touched, as `ct lint --target-branch`.

A chart is checked when a file under its folder changed, or one of its environments' values
files (an overlay anywhere in the repository), or a chart it depends on through `file://`.
Every chart is checked when something all of them read changed: pipeline.yaml, the
policies, or CRD schemas kept in the repository. The charts left out are named in the
reports with the reason, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import yaml

from pipeline.defaults import CONFIG_FILE
from pipeline.discovery import RenderTarget
from pipeline.errors import ConfigError
from pipeline.model import Finding, Result, Status
from pipeline.run import Run
from pipeline.stages import git


@dataclass(frozen=True)
class Selection:
    ref: str
    changed: tuple[str, ...]  # files changed since the merge base with `ref`, work tree included
    targets: list[RenderTarget]  # what will be checked
    skipped: dict[str, str]  # chart name -> why it is not checked
    everything_because: str | None  # a shared input that changed, when all charts are checked

    def result(self) -> Result:
        charts = sorted({t.chart.name for t in self.targets})
        if self.everything_because is not None:
            summary = f"every chart checked: {self.everything_because} changed since {self.ref}"
        else:
            shown = ", ".join(charts) if charts else "none"
            summary = (
                f"{len(charts)} chart(s) changed since {self.ref} and are checked ({shown}); "
                f"{len(self.skipped)} skipped"
            )
        findings = tuple(
            Finding(check="changes", message=reason, chart=name, status=Status.SKIPPED)
            for name, reason in sorted(self.skipped.items())
        )
        status = Status.PASSED if self.targets else Status.SKIPPED
        return Result("changes", status, summary, findings)

    def report(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "changed_files": list(self.changed),
            "checked": sorted({t.chart.name for t in self.targets}),
            "skipped": dict(sorted(self.skipped.items())),
            "everything_because": self.everything_because,
        }


async def merge_base(run: Run, ref: str, field: str) -> str:
    """The commit where HEAD left `ref`: what a pull request's changes are counted from."""
    base = await run.runner.run(git.merge_base_step(ref))
    if not base.ok:
        detail = (base.stderr or base.stdout).strip().splitlines()
        raise ConfigError(
            f"cannot compare with {ref!r}: {detail[-1] if detail else 'git merge-base failed'} "
            "(fetch it first: a shallow clone needs `git fetch origin <branch>`)",
            field=field,
        )
    return git.parse_head(base.stdout)


async def changed_since(run: Run, ref: str) -> tuple[str, ...]:
    """Files changed since the merge base of `ref` and HEAD, uncommitted and untracked too."""
    commit = await merge_base(run, ref, "--changed-since")
    diff = await run.runner.run(git.changed_files_step(commit))
    untracked = await run.runner.run(git.untracked_files_step())
    for step in (diff, untracked):
        if not step.ok:
            raise ConfigError(
                f"git could not list the changes: {step.stderr.strip()}", field="--changed-since"
            )
    return tuple(sorted({*git.nul_separated(diff.stdout), *git.nul_separated(untracked.stdout)}))


def select(
    run: Run, ref: str, targets: Sequence[RenderTarget], changed: Sequence[str]
) -> Selection:
    shared = _shared_inputs(run)
    for name in changed:
        for label, path in shared:
            if _under(name, path):
                return Selection(ref, tuple(changed), list(targets), {}, f"{label} ({name})")
    kept: list[RenderTarget] = []
    skipped: dict[str, str] = {}
    for target in targets:
        reason = _why_checked(run, target, changed)
        if reason is None:
            skipped[target.chart.name] = (
                f"nothing it reads changed since {ref} (its folder {target.chart.path}, "
                "its values files, its file:// dependencies)"
            )
        else:
            kept.append(target)
    # A chart is checked in every selected environment once any of them changed.
    names = {t.chart.name for t in kept}
    kept = [t for t in targets if t.chart.name in names]
    for name in names:
        skipped.pop(name, None)
    return Selection(ref, tuple(changed), kept, skipped, None)


def _shared_inputs(run: Run) -> list[tuple[str, str]]:
    config = run.config
    shared = [(CONFIG_FILE, CONFIG_FILE), ("the policies", config.policy.path)]
    shared += [("CRD schemas", path) for path in config.kubeconform.crd_schemas]
    return shared


def _why_checked(run: Run, target: RenderTarget, changed: Sequence[str]) -> str | None:
    reads = [target.chart.path, *target.values, *_file_dependencies(run, target.chart.path)]
    for name in changed:
        for path in reads:
            if _under(name, path):
                return name
    return None


def _file_dependencies(run: Run, chart: str) -> list[str]:
    """Charts this one includes from the repository (`repository: file://../common`)."""
    try:
        text = (run.source / chart / "Chart.yaml").read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # the render reports a broken Chart.yaml itself
    found: list[str] = []
    dependencies = data.get("dependencies") if isinstance(data, dict) else None
    for dependency in dependencies if isinstance(dependencies, list) else []:
        repository = dependency.get("repository") if isinstance(dependency, dict) else None
        if isinstance(repository, str) and repository.startswith("file://"):
            path = PurePosixPath(chart, repository.removeprefix("file://"))
            parts: list[str] = []
            for part in path.parts:
                if part == "..":
                    if parts:
                        parts.pop()
                elif part != ".":
                    parts.append(part)
            found.append("/".join(parts))
    return found


def _under(name: str, path: str) -> bool:
    path = path.strip("/")
    return path in {"", "."} or name == path or name.startswith(f"{path}/")
