"""`diff`: what a change does to the rendered manifests, per environment, field by field.

Both sides are rendered by `validate`'s own render stage, with each side's own pipeline.yaml:
the work tree as it is, and the base (the merge base of REF and HEAD, as a pull request's
diff is) exported with `git archive` into a folder under OUT, so the user's work tree and
.git are never touched. Resources are matched by API group, kind, namespace and name; maps
are compared by key, whatever their order; lists of objects that all carry a unique `name`
(containers, ports, env) by that name, other lists by position. Fields whose path matches
`diff.ignore` in pipeline.yaml (the helm.sh/chart label and checksum/* annotations unless
it says otherwise) are noise: a resource whose only changes are noise is unchanged.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio.to_thread

from pipeline import reports
from pipeline.changes import merge_base
from pipeline.config import load_config
from pipeline.delivery import git_steps
from pipeline.errors import CheckFailedError, ConfigError, PipelineError
from pipeline.manifests import Resource
from pipeline.run import Run
from pipeline.runners import Runner
from pipeline.validate import Rendered, validate

JSON_FILE = "diff.json"
MARKDOWN_FILE = "diff.md"
FULL_MARKDOWN_FILE = "diff-full.md"
MARKER = "<!-- gitops-pipeline-diff -->"
COMMENT_LIMIT = 65_536  # characters GitHub accepts in a comment body
_COMMENT_BUDGET = COMMENT_LIMIT - 1_536  # room for what a wrapper adds around the file
_BASE_ARCHIVE = ".cache/diff/base.tar"
_BASE_SOURCE = ".cache/diff/base-source"
_VALUE_SHOWN = 300  # characters of one value in Markdown (JSON has it whole)

# (source, out) -> a runner whose roots are those: the same kind of runner for both sides.
RunnerFor = Callable[[Path, Path], Runner]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any = MISSING
    after: Any = MISSING

    @property
    def change(self) -> str:
        if self.before is MISSING:
            return "added"
        return "removed" if self.after is MISSING else "changed"

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"path": self.path, "change": self.change}
        if self.before is not MISSING:
            document["before"] = self.before
        if self.after is not MISSING:
            document["after"] = self.after
        return document


@dataclass(frozen=True)
class ResourceId:
    chart: str
    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        group = self.api_version.rpartition("/")[0]
        return (self.chart, group, self.kind, self.namespace, self.name)

    def label(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"

    def json(self) -> dict[str, Any]:
        return {
            "chart": self.chart,
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace or None,
            "name": self.name,
        }


@dataclass(frozen=True)
class ResourceChange:
    resource: ResourceId
    fields: tuple[FieldChange, ...]


@dataclass
class EnvironmentDiff:
    environment: str
    added: list[ResourceId] = field(default_factory=list)
    removed: list[ResourceId] = field(default_factory=list)
    changed: list[ResourceChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def json(self) -> dict[str, Any]:
        return {
            "added": [r.json() for r in self.added],
            "removed": [r.json() for r in self.removed],
            "changed": [
                {**c.resource.json(), "fields": [f.json() for f in c.fields]} for c in self.changed
            ],
        }


@dataclass
class DiffOutcome:
    ref: str
    commit: str
    ignored: tuple[str, ...]
    environments: dict[str, EnvironmentDiff] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(not e.empty for e in self.environments.values())

    def json(self) -> dict[str, Any]:
        return {
            "schema_version": reports.SUMMARY_SCHEMA_VERSION,
            "base": {"ref": self.ref, "commit": self.commit},
            "head": "work tree",
            "changed": self.changed,
            "ignored_fields": list(self.ignored),
            "environments": {name: env.json() for name, env in sorted(self.environments.items())},
            "errors": self.errors,
        }


# --- comparing ------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _by_name(items: Sequence[Any]) -> dict[str, Any] | None:
    if not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items):
        return None
    named = {i["name"]: i for i in items}
    return named if len(named) == len(items) else None


def field_changes(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Every leaf that differs; a map added or removed as a whole is listed leaf by leaf."""
    if isinstance(before, Mapping) or isinstance(after, Mapping):
        if (before is not MISSING and not isinstance(before, Mapping)) or (
            after is not MISSING and not isinstance(after, Mapping)
        ):
            return [FieldChange(path, before, after)]
        old = before if before is not MISSING else {}
        new = after if after is not MISSING else {}
        changes: list[FieldChange] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += field_changes(
                old.get(key, MISSING), new.get(key, MISSING), _join(path, str(key))
            )
        return changes
    if isinstance(before, list) and isinstance(after, list):
        old_named, new_named = _by_name(before), _by_name(after)
        if old_named is not None and new_named is not None and (before or after):
            changes = []
            for name in sorted(set(old_named) | set(new_named)):
                changes += field_changes(
                    old_named.get(name, MISSING), new_named.get(name, MISSING), f"{path}[{name}]"
                )
            return changes
        changes = []
        for index in range(max(len(before), len(after))):
            changes += field_changes(
                before[index] if index < len(before) else MISSING,
                after[index] if index < len(after) else MISSING,
                f"{path}[{index}]",
            )
        return changes
    return [] if before == after else [FieldChange(path, before, after)]


def is_noise(path: str, ignore: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in ignore)


def _identified(
    chart: str, resources: Iterable[Resource]
) -> dict[tuple[str, ...], tuple[ResourceId, Resource]]:
    found: dict[tuple[str, ...], tuple[ResourceId, Resource]] = {}
    for resource in resources:
        identity = ResourceId(
            chart=chart,
            api_version=str(resource.document.get("apiVersion", "")),
            kind=resource.kind,
            namespace=str(resource.namespace or ""),
            name=resource.name,
        )
        found[identity.key] = (identity, resource)
    return found


def compare(
    environment: str,
    base: Mapping[str, Sequence[Resource]],
    head: Mapping[str, Sequence[Resource]],
    ignore: Sequence[str],
) -> EnvironmentDiff:
    """One environment's resources, per chart, before and after."""
    result = EnvironmentDiff(environment)
    for chart in sorted(set(base) | set(head)):
        old = _identified(chart, base.get(chart, ()))
        new = _identified(chart, head.get(chart, ()))
        for key in sorted(set(old) | set(new)):
            if key not in old:
                result.added.append(new[key][0])
            elif key not in new:
                result.removed.append(old[key][0])
            else:
                changes = field_changes(old[key][1].document, new[key][1].document)
                kept = tuple(c for c in changes if not is_noise(c.path, ignore))
                if kept:
                    result.changed.append(ResourceChange(new[key][0], kept))
    return result


# --- rendering both sides ---------------------------------------------------------------------


async def _base_commit(run: Run, ref: str) -> str:
    return await merge_base(run, ref, "--base")


def _safe_members(tar: tarfile.TarFile, into: Path) -> list[tarfile.TarInfo]:
    """Files, folders and links that stay inside `into`: checked here, since the filter
    argument of extractall is missing from Python 3.11 before 3.11.4 (Debian bookworm's)."""
    root = into.resolve()
    safe: list[tarfile.TarInfo] = []
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        inside = target == root or root in target.parents
        if member.issym():
            link = (target.parent / member.linkname).resolve()
            inside = inside and (link == root or root in link.parents)
        elif not (member.isfile() or member.isdir()):
            inside = False
        if not inside:
            raise ConfigError(f"the base's files include {member.name!r}, which leaves the tree")
        safe.append(member)
    return safe


def _extract(archive: Path, into: Path) -> None:
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        members = _safe_members(tar, into)
        # The data filter as well where Python has it (and warns without it).
        extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(into, members=members, **extra)  # noqa: S202 - members checked above


async def _export_base(run: Run, commit: str) -> Path:
    (run.out / _BASE_ARCHIVE).parent.mkdir(parents=True, exist_ok=True)
    archived = await run.runner.run(git_steps.archive_step(commit, _BASE_ARCHIVE))
    if not archived.ok:
        raise ConfigError(
            f"git archive of {commit} failed: {archived.stderr.strip()}", field="--base"
        )
    into = run.out / _BASE_SOURCE
    await anyio.to_thread.run_sync(_extract, run.out / _BASE_ARCHIVE, into)
    return into


def _side_run(run: Run, source: Path, out: Path, runner_for: RunnerFor) -> Run:
    config = load_config(source)
    return replace(
        run,
        config=config,
        runner=runner_for(source, out),
        out=out,
        environments=(),  # every environment: one may exist on one side only
        allow_empty=True,
        changed_since=None,
    )


def _resources(
    rendered: Sequence[Rendered], side: str, errors: list[str], failed: set[tuple[str, str]]
) -> dict[str, dict[str, list[Resource]]]:
    """environment -> chart -> resources; a target that did not render is an error, and
    `failed` (environment, chart) so that neither side of it is compared."""
    by_environment: dict[str, dict[str, list[Resource]]] = {}
    for item in rendered:
        target = item.target
        if item.text is None or (item.render and not item.resources):
            reason = item.render[0].message if item.render else "did not render"
            errors.append(f"{target.key} in {side}: {reason}")
            failed.add((target.environment, target.chart.name))
            continue
        by_environment.setdefault(target.environment, {})[target.chart.name] = item.resources
    return by_environment


def _without(
    rendered: dict[str, dict[str, list[Resource]]], failed: set[tuple[str, str]]
) -> dict[str, dict[str, list[Resource]]]:
    return {
        env: {chart: found for chart, found in charts.items() if (env, chart) not in failed}
        for env, charts in rendered.items()
    }


async def diff(run: Run, ref: str, runner_for: RunnerFor) -> DiffOutcome:
    """Render the base and the work tree; compare; write diff.json, diff.md (and the full one)."""
    commit = await _base_commit(run, ref)
    base_source = await _export_base(run, commit)
    ignore = run.config.diff.ignore
    outcome = DiffOutcome(ref, commit, ignore)
    sides = {
        "base": _side_run(run, base_source, run.out / "diff" / "base", runner_for),
        "head": _side_run(run, run.source, run.out / "diff" / "head", runner_for),
    }
    rendered: dict[str, dict[str, dict[str, list[Resource]]]] = {}
    failed: set[tuple[str, str]] = set()
    for side, side_run in sides.items():
        validated = await validate(side_run, ("render",))
        label = f"{ref} ({commit[:12]})" if side == "base" else "the work tree"
        if validated.error is not None:
            outcome.errors.append(f"{label}: {validated.error}")
        rendered[side] = _resources(validated.rendered, label, outcome.errors, failed)
    rendered = {side: _without(found, failed) for side, found in rendered.items()}
    wanted = set(run.environments)
    names = sorted(set(rendered["base"]) | set(rendered["head"]))
    for environment in names:
        if wanted and environment not in wanted:
            continue
        outcome.environments[environment] = compare(
            environment,
            rendered["base"].get(environment, {}),
            rendered["head"].get(environment, {}),
            ignore,
        )
    unknown = wanted - set(names)
    if unknown:
        outcome.errors.append(
            f"no environment {', '.join(sorted(unknown))} on either side; known: "
            f"{', '.join(names) or 'none'}"
        )
    write_reports(run.out, outcome)
    return outcome


# --- reports ----------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is MISSING:
        return "(none)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= _VALUE_SHOWN else f"{text[:_VALUE_SHOWN]}… ({len(text)} chars)"


def _fence(lines: Iterable[str]) -> str:
    body = "\n".join(lines)
    fence = "```"
    while fence in body:
        fence += "`"
    return f"{fence}diff\n{body}\n{fence}"


def _field_lines(change: FieldChange) -> list[str]:
    lines = [f"@@ {change.path} ({change.change}) @@"]
    if change.before is not MISSING:
        lines.append(f"- {_shown(change.before)}")
    if change.after is not MISSING:
        lines.append(f"+ {_shown(change.after)}")
    return lines


def _heading(outcome: DiffOutcome) -> list[str]:
    lines = [MARKER, f"## Rendered changes against `{outcome.ref}` (`{outcome.commit[:12]}`)", ""]
    if outcome.errors:
        lines += ["**Could not compare everything:**", ""]
        lines += [f"- {error}" for error in outcome.errors]
        lines.append("")
    if not outcome.changed:
        lines.append("No rendered resource changes in any environment.")
        return lines
    lines += ["| environment | added | removed | changed |", "|---|---:|---:|---:|"]
    for name, env in sorted(outcome.environments.items()):
        lines.append(f"| {name} | {len(env.added)} | {len(env.removed)} | {len(env.changed)} |")
    lines.append("")
    return lines


def _listed(title: str, resources: Sequence[ResourceId], limit: int | None) -> list[str]:
    if not resources:
        return []
    shown = resources if limit is None else resources[:limit]
    lines = [f"**{title}**", ""]
    lines += [f"- `{r.chart}` {r.label()}" for r in shown]
    if len(shown) < len(resources):
        lines.append(f"- … and {len(resources) - len(shown)} more")
    return [*lines, ""]


def markdown(outcome: DiffOutcome, *, details: bool = True, limit: int | None = None) -> str:
    lines = _heading(outcome)
    for name, env in sorted(outcome.environments.items()):
        if env.empty:
            continue
        lines += [f"### {name}", ""]
        lines += _listed("Added", env.added, limit)
        lines += _listed("Removed", env.removed, limit)
        changed = env.changed if limit is None else env.changed[:limit]
        if changed:
            lines += ["**Changed**", ""]
        for change in changed:
            count = len(change.fields)
            title = f"<code>{change.resource.chart}</code> {change.resource.label()}"
            if not details:
                lines.append(
                    f"- `{change.resource.chart}` {change.resource.label()}: {count} field(s)"
                )
                continue
            lines += [
                f"<details><summary>{title} ({count} field(s))</summary>",
                "",
                _fence(line for c in change.fields for line in _field_lines(c)),
                "",
                "</details>",
                "",
            ]
        if len(changed) < len(env.changed):
            lines.append(f"- … and {len(env.changed) - len(changed)} more changed")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def comment_markdown(outcome: DiffOutcome) -> tuple[str, bool]:
    """The PR comment: the whole diff when it fits GitHub's limit, else a summary. (text, whole)"""
    full = markdown(outcome)
    if len(full) <= _COMMENT_BUDGET:
        return full, True
    note = (
        f"\n_The full diff ({len(full):,} characters) is over GitHub's comment limit: it is in "
        f"the `{FULL_MARKDOWN_FILE}` artifact, with `{JSON_FILE}`._\n"
    )
    for limit in (200, 50, 10, 0):
        summary = markdown(outcome, details=False, limit=limit) + note
        if len(summary) <= _COMMENT_BUDGET:
            return summary, False
    return "\n".join(_heading(outcome)) + note, False


def write_reports(out: Path, outcome: DiffOutcome) -> None:
    reports.write_json(out / JSON_FILE, outcome.json())
    comment, whole = comment_markdown(outcome)
    reports.write_text(out / MARKDOWN_FILE, comment)
    if not whole:
        reports.write_text(out / FULL_MARKDOWN_FILE, markdown(outcome))


def failure(outcome: DiffOutcome) -> PipelineError | None:
    """A failure (exit 1) when a side could not be rendered in full: the diff is incomplete."""
    if not outcome.errors:
        return None
    return CheckFailedError("the diff is incomplete: " + "; ".join(outcome.errors))
