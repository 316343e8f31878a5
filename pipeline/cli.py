"""`gitops-pipeline VERB`: the same verbs as the Dagger functions.

One top-level handler owns exit codes: 0 passed, 1 a check failed, 2 usage or
configuration error, 3 environment error (tool missing, daemon or registry
unreachable). Errors print one line; the traceback only with -v.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from pipeline import __version__, artifacts, progress, reports
from pipeline.config import Config, load_config
from pipeline.errors import ConfigError, InterruptedRunError, PipelineError, SetupError
from pipeline.limits import with_flag
from pipeline.model import Result, SecretRef, Status
from pipeline.plan import dry_run_reply
from pipeline.run import Run, default_cache_dir, default_concurrency, first_leaf
from pipeline.runners import Runner, helm_worker
from pipeline.runners.local import LocalRunner, check_secret
from pipeline.runners.observed import ObservedRunner
from pipeline.runners.recording import RecordingRunner, describe
from pipeline.step_cache import CACHE_LIMIT_ENV, DEFAULT_MAX_BYTES, StepCache

if TYPE_CHECKING:
    from pipeline.release import ReleaseOptions

EXIT = {Status.PASSED: 0, Status.SKIPPED: 0, Status.FAILED: 1, Status.ERROR: 1}

VerbFunc = Callable[[argparse.Namespace, Run], Awaitable[Status]]
MachineVerbFunc = Callable[[argparse.Namespace], Awaitable[Status]]


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    # Verbs about a repository get a Run; verbs about this machine (tools) get none.
    func: VerbFunc | None
    machine_func: MachineVerbFunc | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    # A check writes summary.json: `--format json` prints it, `--quiet` only its verdict.
    check: bool = False


VERBS: dict[str, Verb] = {}


def verb(
    name: str,
    help_text: str,
    *,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    check: bool = False,
) -> Callable[[VerbFunc], VerbFunc]:
    """Register a verb; the registry is the CLI, in the order verbs are declared."""

    def register(func: VerbFunc) -> VerbFunc:
        VERBS[name] = Verb(name, help_text, func, add_arguments=arguments, check=check)
        return func

    return register


def machine_verb(
    name: str,
    help_text: str,
    *,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Callable[[MachineVerbFunc], MachineVerbFunc]:
    """Register a verb that needs no repository."""

    def register(func: MachineVerbFunc) -> MachineVerbFunc:
        VERBS[name] = Verb(name, help_text, None, machine_func=func, add_arguments=arguments)
        return func

    return register


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


# What a verb answers, as data, for `--format json`. A holder set before the event loop starts,
# so the answer given inside the loop's task is still there when main() prints it.
_ANSWER: ContextVar[dict[str, Any]] = ContextVar("answer")


def answer(data: dict[str, Any]) -> None:
    holder = _ANSWER.get(None)
    if holder is not None:
        holder.clear()
        holder.update(data)


# --- verbs -----------------------------------------------------------------------------------


def _tools_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.tool_archives import ARCHIVES_ENV, MIRROR_ENV  # noqa: PLC0415

    parser.add_argument(
        "--install",
        nargs="*",
        metavar="TOOL",
        help="install the pinned Go tools (default: all) that are missing: their release "
        "archives, verified by the published SHA-256 (go install where no archive is pinned "
        "for this platform)",
    )
    parser.add_argument(
        "--tools-dir",
        type=Path,
        metavar="DIR",
        help="where --install puts them (default: $GITOPS_PIPELINE_TOOLS_DIR, else .tools/bin)",
    )
    parser.add_argument(
        "--mirror",
        metavar="URL",
        default=os.environ.get(MIRROR_ENV),
        help="download the official archives from URL/<tool>/<version>/<file> instead; the "
        f"pinned sums still apply (default: ${MIRROR_ENV})",
    )
    parser.add_argument(
        "--archives",
        type=Path,
        metavar="FILE",
        default=os.environ.get(ARCHIVES_ENV),
        help='your own archive table, JSON {"helm": {"url": ..., "sha256": ...}}, replacing '
        f"the official entry of each tool it names (default: ${ARCHIVES_ENV})",
    )


async def _install_tools(args: argparse.Namespace) -> Status:
    from pipeline.tool_archives import install_tools, load_archive_overrides  # noqa: PLC0415
    from pipeline.tools import tools_dir  # noqa: PLC0415

    overrides = load_archive_overrides(args.archives) if args.archives else None
    dest = args.tools_dir or tools_dir()
    chosen = args.install or None
    for installed in install_tools(dest, chosen, mirror=args.mirror, overrides=overrides):
        out(f"{installed.tool.name} {installed.tool.version}: {installed.how}")
    return Status.PASSED


@machine_verb(
    "tools",
    "list every pinned tool with version and image, and whether it is installed; "
    "--install installs the pinned Go tools",
    arguments=_tools_arguments,
)
async def tools_verb(args: argparse.Namespace) -> Status:
    from pipeline.tools import TOOLS, inspect_tool  # noqa: PLC0415

    if args.install is not None:
        return await _install_tools(args)

    # The images the Dagger runner would use for this repository (pipeline.yaml's overrides).
    images = load_config(args.source.resolve()).tool_images()
    tools = []
    rows = [("TOOL", "VERSION", "SOURCE", "INSTALLED", "IMAGE")]
    for tool in TOOLS.values():
        status = inspect_tool(tool)
        tools.append(
            {
                "name": tool.name,
                "version": tool.version,
                "source": tool.source.value,
                "package": tool.package,
                "path": None if status.path is None else str(status.path),
                "installed_version": status.installed_version,
                "ok": status.ok,
                "image": images[tool.name],
            }
        )
        if status.path is None:
            installed = "missing"
        elif status.ok or (tool.source.value == "debian" and status.installed_version):
            installed = f"yes ({status.path})"
        else:
            installed = f"wrong version {status.installed_version or 'unknown'} ({status.path})"
        rows.append(
            (
                tool.name,
                tool.version,
                f"{tool.source.value}:{tool.package}",
                installed,
                images[tool.name],
            )
        )
    worker = helm_worker.status()
    answer({"tools": tools, "helm_worker": worker})
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        out("  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:4])) + "  " + row[4])
    out(worker)
    return Status.PASSED


def step_cache() -> StepCache:
    """The local runner's step cache: $GITOPS_PIPELINE_CACHE/steps, bounded in size."""
    limit = os.environ.get(CACHE_LIMIT_ENV, "")
    try:
        megabytes = float(limit) if limit else DEFAULT_MAX_BYTES / 2**20
    except ValueError:
        raise ConfigError(f"expected megabytes, got {limit!r}", field=CACHE_LIMIT_ENV) from None
    return StepCache(default_cache_dir() / "steps", max_bytes=int(megabytes * 2**20))


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("info", "clear"), help="show, or empty, the cache")


@machine_verb(
    "cache",
    "the local runner's step cache: `info` shows where and how big, `clear` empties it",
    arguments=_cache_arguments,
)
async def cache_verb(args: argparse.Namespace) -> Status:
    cache = step_cache()
    if args.action == "clear":
        removed = cache.clear()
        answer({"directory": str(cache.root), "removed": removed})
        kept = "steps, remembered scans and parses"
        out(f"removed {removed} cache entries ({kept}) from {cache.root}")
        return Status.PASSED
    entries, size = cache.usage()
    answer(
        {
            "directory": str(cache.root),
            "entries": entries,
            "bytes": size,
            "max_bytes": cache.max_bytes,
        }
    )
    megabytes = f"{size / 2**20:.1f} MB of {cache.max_bytes / 2**20:.0f} MB"
    out(f"{cache.root}: {entries} entries (steps, remembered scans and parses), {megabytes}")
    return Status.PASSED


@machine_verb("policies", "list the built-in policy rules: id, severity, title, remediation")
async def policies_verb(_args: argparse.Namespace) -> Status:
    from pipeline.policy import RULES, catalog_text  # noqa: PLC0415

    out(catalog_text().rstrip("\n"))
    rules = [
        {"id": r.id, "severity": r.severity, "title": r.title, "remediation": r.remediation}
        for r in RULES
    ]
    answer({"rules": rules})
    return Status.PASSED


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schema-location",
        action="append",
        default=[],
        metavar="LOCATION",
        help="kubeconform schema location, repeatable; 'bundled' builds an offline bundle "
        "from kubernetes-validate (overrides pipeline.yaml)",
    )
    parser.add_argument(
        "--crd-schemas",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="CRD JSON schemas in the CRDs-catalog layout for the bundled location (repeatable)",
    )
    parser.add_argument(
        "--release-version", help="the release version, written to .version and .image-tag"
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="pass when the repository has nothing to check (default: that is a failure)",
    )
    parser.add_argument(
        "--changed-since",
        metavar="REF",
        help="check only the charts whose files, values files or file:// dependencies changed "
        "since the merge base with REF (all of them when pipeline.yaml, policies or CRD "
        "schemas changed); the others are listed as skipped",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="download nothing: chart dependencies must be vendored in the chart's charts/ "
        "(default: build them from Chart.lock)",
    )
    parser.add_argument(
        "--cert",
        type=Path,
        metavar="FILE",
        help="the sealed-secrets certificate: SealedSecrets must be sealed for its key, and it "
        "must not have expired (validate's secrets check)",
    )


def _checks_verb(name: str, checks: tuple[str, ...], help_text: str) -> None:
    async def run_checks(_args: argparse.Namespace, run: Run) -> Status:
        from pipeline.validate import validate  # noqa: PLC0415

        outcome = await validate(run, checks)
        _print_results(outcome.results)
        out(f"artifacts: {run.out}")
        if outcome.error is not None:
            raise outcome.error
        return outcome.status

    verb(name, help_text, arguments=_validate_arguments, check=True)(run_checks)


_checks_verb(
    "render",
    ("lint", "render"),
    "helm lint --strict and helm template for every chart and environment",
)
_checks_verb(
    "kubeconform",
    ("render", "kubeconform"),
    "render, then validate manifests against Kubernetes and CRD schemas",
)
_checks_verb(
    "policy",
    ("render", "policy"),
    "render, then conftest test with the built-in policies and policy/, and conftest verify",
)
_checks_verb(
    "validate",
    ("lint", "render", "kubeconform", "policy", "delivery", "secrets"),
    "lint, render every environment, kubeconform, policies and the Argo CD objects; write "
    "every report",
)


@verb(
    "plan",
    "show the chart environments, values layering and the steps validate would run",
    arguments=_validate_arguments,
)
async def plan_verb(_args: argparse.Namespace, run: Run) -> Status:
    from pipeline.plan import plan_text  # noqa: PLC0415

    text = await plan_text(run.config, run.environments, run.schema_locations)
    out(text)
    answer({"plan": text})
    return Status.PASSED


def _print_results(results: Sequence[Result]) -> None:
    for result in results:
        out(f"{result.stage:<12} {result.status.value:<8} {result.summary}")
        for finding in result.findings:
            if finding.status.failed:
                # The location ends with the resource; a message that starts with it too
                # (policies name what they judge) says it once.
                message = finding.message
                if finding.resource and message.startswith(f"{finding.resource}: "):
                    message = message.removeprefix(f"{finding.resource}: ")
                out(f"  - {finding.location()}: {message}")


def _python_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        dest="python_versions",
        metavar="VERSION",
        help="test on these Python versions (repeatable; needs --runner dagger)",
    )


def _python_verb(
    name: str,
    stage: str,
    help_text: str,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    async def run_stage(_args: argparse.Namespace, run: Run) -> Status:
        from pipeline.pychecks import lint, test, typecheck, write_stage_reports  # noqa: PLC0415

        stages = {"lint": lint, "typecheck": typecheck, "test": test}
        result = await stages[stage](run)
        _print_results([result])
        write_stage_reports(run, result)
        out(f"artifacts: {run.out}")
        return result.status

    verb(name, help_text, arguments=arguments, check=True)(run_stage)


_python_verb("lint", "lint", "ruff check and ruff format --check with the project's config")
_python_verb("typecheck", "typecheck", "mypy with the project's configuration")
_python_verb(
    "test",
    "test",
    "pytest with JUnit XML and coverage (XML and total) as artifacts",
    _python_arguments,
)


@verb(
    "ci",
    "lint, typecheck, test and validate concurrently; one merged summary and JUnit",
    arguments=_validate_arguments,
    check=True,
)
async def ci_verb(_args: argparse.Namespace, run: Run) -> Status:
    from pipeline.ci import run_ci  # noqa: PLC0415

    results, outcome, config_error = await run_ci(run)
    _print_results(results)
    out(f"artifacts: {run.out}")
    if outcome.error is not None:
        raise outcome.error
    if config_error is not None:
        raise config_error
    return reports.overall(results)


def _version_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prerelease", metavar="TOKEN", help="a prerelease: X.Y.Z-TOKEN.N")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")


@verb(
    "version",
    "the next version from conventional commits since the last tag",
    arguments=_version_arguments,
)
async def version_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.versioning import decide, decision_json  # noqa: PLC0415

    decision = await decide(run.runner, config=run.config.release, prerelease=args.prerelease)
    answer(decision_json(decision))
    if args.json:
        out(json.dumps(decision_json(decision), indent=2))
    else:
        out(decision.next or decision.current or "")
    if not decision.released:
        err(f"no release: no releasable commit since {decision.current_tag or 'the beginning'}")
    return Status.PASSED


def _changelog_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prerelease", metavar="TOKEN", help="notes for a prerelease")
    parser.add_argument("--repo-url", help="https://github.com/OWNER/REPO, to link commits")


@verb("changelog", "Markdown release notes for the next version", arguments=_changelog_arguments)
async def changelog_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.changelog import changelog_markdown  # noqa: PLC0415
    from pipeline.versioning import decide  # noqa: PLC0415

    decision = await decide(run.runner, config=run.config.release, prerelease=args.prerelease)
    version = decision.next or decision.current or "unreleased"
    today = dt.datetime.now(dt.UTC).date()
    notes = changelog_markdown(decision, version=version, date=today, repo_url=args.repo_url)
    out(notes)
    answer({"version": version, "released": decision.released, "markdown": notes})
    if not decision.released:
        err("no release: these notes describe no new version")
    return Status.PASSED


def secret_reference(flag: str) -> Callable[[str], SecretRef]:
    """argparse type: a secret by reference only (env:NAME or file:PATH), never a value."""

    def parse(text: str) -> SecretRef:
        scheme = text.partition(":")[0]
        if scheme not in {"env", "file"} or ":" not in text:
            # The text may be the secret itself: never repeat it.
            raise argparse.ArgumentTypeError(
                f"{flag} takes a reference, env:NAME or file:PATH, not a value"
            )
        return SecretRef(flag.removeprefix("--").replace("-", "_").upper(), text)

    return parse


def _registry_login_arguments(parser: argparse.ArgumentParser, where_it_goes: str) -> None:
    parser.add_argument("--registry-username", help="registry user (GHCR: the GitHub actor)")
    parser.add_argument(
        "--registry-password",
        type=secret_reference("--registry-password"),
        metavar="REF",
        help=f"env:NAME or file:PATH; {where_it_goes}",
    )


def _image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image", help="registry/owner/name, lower-case (default: image.repository)"
    )
    parser.add_argument("--dockerfile", help="default: image.dockerfile (app/Dockerfile)")
    parser.add_argument("--context", help="build context (default: image.context, app)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--licenses", default="", help="SPDX id for org.opencontainers.image.licenses"
    )
    parser.add_argument(
        "--source-url", help="org.opencontainers.image.source (default: the git remote)"
    )
    _registry_login_arguments(parser, "sent to docker login on stdin")


def _release_arguments(parser: argparse.ArgumentParser) -> None:
    _image_arguments(parser)
    parser.add_argument("--prerelease", metavar="TOKEN", help="release X.Y.Z-TOKEN.N")
    parser.add_argument("--remote", default="origin", help="git remote the tag is pushed to")
    parser.add_argument(
        "--git-token",
        type=secret_reference("--git-token"),
        metavar="REF",
        help="env:NAME or file:PATH; given to git through GIT_ASKPASS, never in a URL",
    )
    parser.add_argument("--repo-url", help="https://github.com/OWNER/REPO, to link the notes")


def release_options(args: argparse.Namespace, run: Run) -> ReleaseOptions:
    from pipeline.release import ReleaseOptions  # noqa: PLC0415

    image = args.image or run.config.image.repository
    if not image:
        raise ConfigError("no image: pass --image or set image.repository", field="--image")
    build_args: list[tuple[str, str]] = []
    for item in args.build_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", field="--build-arg")
        build_args.append((key, value))
    if run.on_host:
        # Resolved before anything is built or tagged, never after the claim on a version.
        for reference in (args.registry_password, getattr(args, "git_token", None)):
            if reference is not None:
                check_secret(reference)
    return ReleaseOptions(
        image=image,
        dockerfile=args.dockerfile or run.config.image.dockerfile,
        context=args.context or run.config.image.context,
        remote=getattr(args, "remote", "origin"),
        git_token=getattr(args, "git_token", None),
        registry_username=args.registry_username,
        registry_password=args.registry_password,
        prerelease=getattr(args, "prerelease", None),
        licenses=args.licenses,
        source_url=args.source_url,
        build_args=tuple(build_args),
        repo_url=getattr(args, "repo_url", None),
    )


@verb(
    "build",
    "build the image with OCI labels (version from the history)",
    arguments=_image_arguments,
)
async def build_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.release import build_only  # noqa: PLC0415

    image = await build_only(run, release_options(args, run))
    out(image)
    answer({"image": image})
    return Status.PASSED


@verb(
    "publish",
    "build, then push the version's tags (X.Y.Z, X.Y, X, latest, sha-)",
    arguments=_image_arguments,
)
async def publish_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.release import publish_only  # noqa: PLC0415

    pushed_refs = await publish_only(run, release_options(args, run))
    for pushed in pushed_refs:
        out(f"{pushed.ref}@{pushed.digest}")
    answer({"pushed": [{"ref": p.ref, "digest": p.digest} for p in pushed_refs]})
    return Status.PASSED


@verb(
    "release",
    "version, changelog, build, tag push, publish; safe to rerun",
    arguments=_release_arguments,
)
async def release_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.release import outcome_json, release  # noqa: PLC0415

    outcome = await release(run, release_options(args, run))
    out(outcome_json(outcome))
    answer(json.loads(outcome_json(outcome)))
    if not outcome.released:
        err(f"no release: nothing releasable since {outcome.tag or 'the beginning'}")
    return Status.PASSED


def _schemas_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubernetes-version", help="x.y.z (default: pipeline.yaml or 1.35.0)")
    parser.add_argument("--crd-schemas", action="append", default=[], type=Path, metavar="DIR")


@verb(
    "schemas", "write an offline kubeconform schema bundle into --out", arguments=_schemas_arguments
)
async def schemas_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.schemas import write_schema_bundle  # noqa: PLC0415

    version = args.kubernetes_version or run.config.kubernetes_version
    bundle = write_schema_bundle(run.out, version, args.crd_schemas)
    crds = len(bundle.crd_files)
    out(f"wrote {bundle.kinds_written} Kubernetes {version} schemas and {crds} CRD schemas")
    for location in bundle.schema_locations():
        out(f"-schema-location {location}")
    answer(
        {
            "kubernetes_version": version,
            "kubernetes_schemas": bundle.kinds_written,
            "crd_schemas": crds,
            "schema_locations": list(bundle.schema_locations()),
        }
    )
    return Status.PASSED


@verb(
    "argocd",
    "write the Argo CD objects (AppProject, ApplicationSet, Image Updater, notifications) "
    "into delivery.path from pipeline.yaml",
)
async def argocd_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.delivery import argocd  # noqa: PLC0415

    folder = argocd.delivery_config(run.config).path
    files = [f"{folder}/{name}" for name in argocd.rendered_files(run.config)]
    written = [] if args.dry_run else argocd.write(run.config)
    for file in files:
        done = "written" if file in written else "unchanged"
        out(f"{'planned' if args.dry_run else done}: {file}")
    answer({"files": files, "written": written})
    return Status.PASSED


def _promote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", dest="promote_version", metavar="TAG", help="the image tag")
    parser.add_argument("--from", dest="from_env", metavar="ENV", help="take ENV's version")
    parser.add_argument("--to", metavar="ENV", help="the environment to promote (or --env)")
    parser.add_argument("--chart", help="the chart, when several deploy to the environment")
    parser.add_argument(
        "--path",
        dest="tag_path",
        metavar="A.B.C",
        help="values path of the tag (default: delivery.charts.<chart>.image_tag_path, image.tag)",
    )
    parser.add_argument(
        "--image", help="the image the registry must hold (default: the values' repository)"
    )
    _registry_login_arguments(parser, "sent only to the registry (and its token service)")
    parser.add_argument(
        "--pr",
        action="store_true",
        help="commit on a new branch and write the pull request's body into --out",
    )


@verb(
    "promote",
    "write a published version into one environment's overlay and commit it",
    arguments=_promote_arguments,
)
async def promote_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.delivery import promote, registry  # noqa: PLC0415

    targets = [args.to] if args.to else args.environments
    if len(targets) != 1 or (args.to and args.environments):
        raise ConfigError("name one environment to promote: --to ENV (or --env ENV)", field="--to")
    credentials = None
    if args.registry_password is not None:
        if not args.registry_username:
            raise ConfigError("a password needs --registry-username", field="--registry-username")
        password = registry.read_reference(args.registry_password)
        credentials = registry.Credentials(args.registry_username, password)
    request = promote.PromoteRequest(
        environment=targets[0],
        version=args.promote_version,
        from_environment=args.from_env,
        chart=args.chart,
        path=args.tag_path,
        image=args.image,
        credentials=credentials,
        pull_request=args.pr,
    )
    done = await promote.promote(run, request, promote.host_writer(run))
    out(done.describe())
    answer(done.json())
    return Status.PASSED


def _diff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base", required=True, metavar="REF", help="compare with the merge base of REF and HEAD"
    )
    parser.add_argument(
        "--exit-code", action="store_true", help="exit 1 when a rendered resource changed"
    )
    parser.add_argument("--offline", action="store_true", help="build no chart dependency")


@verb(
    "diff",
    "render every chart and environment at a base ref and in the work tree; report what changed",
    arguments=_diff_arguments,
)
async def diff_verb(args: argparse.Namespace, run: Run) -> Status:
    from pipeline.delivery import diff  # noqa: PLC0415

    outcome = await diff.diff(run, args.base, _runner_for(args, run))
    out((run.out / diff.MARKDOWN_FILE).read_text(encoding="utf-8"))
    out(f"artifacts: {run.out}")
    answer(outcome.json())
    error = diff.failure(outcome)
    if error is not None:
        raise error
    return Status.FAILED if args.exit_code and outcome.changed else Status.PASSED


def _runner_for(args: argparse.Namespace, run: Run) -> Callable[[Path, Path], Runner]:
    """Runners like the verb's own, for another source and artifacts folder (diff's sides)."""
    if args.runner == "local":
        cache = None if args.no_cache else step_cache()
        own = run.runner.inner if isinstance(run.runner, ObservedRunner) else run.runner
        # The verb's helm workers serve the other side too: a request names its own folder.
        workers = own.helm_workers if isinstance(own, LocalRunner) else None
        return lambda source, out_dir: LocalRunner(
            source=source,
            out=out_dir,
            timeouts=run.timeouts,
            cache=cache,
            tool_caches=default_cache_dir() / "tools",
            helm_workers=workers,
        )
    import dagger  # noqa: PLC0415

    from pipeline.runners.dagger_runner import DaggerRunner  # noqa: PLC0415

    return lambda source, out_dir: DaggerRunner(
        source=dagger.dag.host().directory(str(source)),
        out=out_dir,
        images=run.config.tool_images(),
        timeouts=run.timeouts,
    )


def _notify_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.notify.verb import add_arguments  # noqa: PLC0415

    add_arguments(parser, secret_reference)


@machine_verb(
    "notify",
    "tell Alertmanager, Telegram, Slack or a webhook what failed, recovered or was released "
    "(--summary, --release) or --message TEXT; a channel that fails never changes the exit code",
    arguments=_notify_arguments,
)
async def notify_verb(args: argparse.Namespace) -> Status:
    from pipeline.notify.verb import report_lines, run_from_cli  # noqa: PLC0415

    settings = load_config(args.source.resolve()).notify
    out_dir = args.out if args.out.is_absolute() else Path.cwd() / args.out
    document = await anyio.to_thread.run_sync(run_from_cli, args, settings, out_dir)
    for line in report_lines(document):
        err(line)
    answer(document)
    return Status.PASSED


def _seal_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.secrets.options import add_arguments  # noqa: PLC0415

    add_arguments(parser)


@machine_verb(
    "seal",
    "seal values (env:NAME or file:PATH) into a SealedSecret for the controller's certificate",
    arguments=_seal_arguments,
)
async def seal_verb(args: argparse.Namespace) -> Status:
    from pipeline.secrets.options import seal_options  # noqa: PLC0415

    try:
        from pipeline.secrets import sealing  # noqa: PLC0415
    except ImportError as exc:
        raise SetupError(
            f"seal needs the `secrets` extra ({exc.name} is missing): "
            "pip install 'gitops-pipeline[secrets]'"
        ) from None
    sealed = await anyio.to_thread.run_sync(sealing.seal, seal_options(args))
    described = sealing.describe(sealed)
    if sealed.target is None:
        described["manifest"] = sealed.text
        if args.format != "json":
            sys.stdout.write(sealed.text)
    else:
        err(f"sealed {', '.join(sealed.keys)} into {sealed.target} ({sealed.scope.value})")
    answer(described)
    return Status.PASSED


# --- wiring ------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--source", type=Path, default=Path(), help="repository root (default .)")
    common.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts"),
        help="artifacts directory (default artifacts/)",
    )
    common.add_argument(
        "--env",
        action="append",
        default=[],
        dest="environments",
        metavar="NAME",
        help="environment to check (repeatable; default all)",
    )
    common.add_argument(
        "--runner",
        choices=("local", "dagger"),
        default="local",
        help="run tools on this host or in Dagger containers",
    )
    common.add_argument(
        "--dry-run", action="store_true", help="print the steps instead of running them"
    )
    common.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="stop any step that runs longer (default: pipeline.yaml `timeouts`, else 600); "
        "one test may run 0.8 of it, or `timeouts.test-case` when lower",
    )
    common.add_argument(
        "--no-cache",
        action="store_true",
        help="run every step, even one whose passed result the step cache holds (local runner)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    common.add_argument(
        "--progress",
        choices=[mode.value for mode in progress.ProgressMode],
        default=progress.ProgressMode.AUTO.value,
        help="running steps on stderr: live on a terminal, a line per finished step "
        "otherwise (auto, the default), or none",
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", help="no progress; a check prints only its verdict"
    )
    common.add_argument(
        "--no-color", action="store_true", help="no colour (so does NO_COLOR in the environment)"
    )
    common.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: stdout is one JSON document (a check's summary.json); the rest goes to stderr",
    )
    parser = argparse.ArgumentParser(
        prog="gitops-pipeline",
        description="CI for GitOps repositories: the same verbs as the Dagger module's functions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for item in VERBS.values():
        sub = verbs.add_parser(item.name, parents=[common], help=item.help, description=item.help)
        if item.add_arguments:
            item.add_arguments(sub)
    return parser


@asynccontextmanager
async def open_runner(
    args: argparse.Namespace, config: Config, out_dir: Path, limits: Mapping[str, float]
) -> AsyncIterator[tuple[Runner, RecordingRunner | None]]:
    source = config.source
    if args.dry_run:
        recorder = RecordingRunner(responder=dry_run_reply)
        yield recorder, recorder
        return
    if args.runner == "local":
        cache = None if args.no_cache else step_cache()
        workers = helm_worker.pool(default_concurrency())
        local = LocalRunner(
            source=source,
            out=out_dir,
            timeouts=limits,
            cache=cache,
            tool_caches=default_cache_dir() / "tools",
            helm_workers=workers,
        )
        try:
            yield local, None
        finally:
            if workers is not None:
                await workers.aclose()
        return
    import dagger  # noqa: PLC0415

    from pipeline.runners.dagger_runner import DaggerRunner  # noqa: PLC0415

    try:
        async with dagger.connection(dagger.Config(log_output=sys.stderr)):
            runner = DaggerRunner(
                source=dagger.dag.host().directory(str(source)),
                out=out_dir,
                images=config.tool_images(),
                timeouts=limits,
            )
            yield runner, None
    except (dagger.ClientConnectionError, dagger.ProvisionError) as exc:
        raise SetupError(f"no Dagger engine reachable: {exc}") from None


async def _main(args: argparse.Namespace) -> Status:
    item = VERBS[args.verb]
    if item.func is None:
        assert item.machine_func is not None  # noqa: S101 - a Verb has one of the two
        return await item.machine_func(args)
    func = item.func
    source = args.source.resolve()
    if not source.is_dir():
        raise ConfigError("source directory does not exist", file=args.source, field="--source")
    out_dir = args.out if args.out.is_absolute() else Path.cwd() / args.out
    try:
        config = load_config(source)
        _check_schema_flags(args, source)
        _check_out(out_dir, config)
    except ConfigError as error:
        # The last run's reports must not stay behind looking like this run's verdict.
        if not args.dry_run and _is_reports_directory(out_dir, source):
            write_stopped(out_dir, args.verb, Status.ERROR, str(error))
        raise
    if not args.dry_run:
        return await _run_verb(args, func, config, out_dir)
    # A dry run must not leave reports that look like a real run's.
    with tempfile.TemporaryDirectory(prefix="gitops-pipeline-dry-run-") as scratch:
        return await _run_verb(args, func, config, Path(scratch))


def _check_schema_flags(args: argparse.Namespace, source: Path) -> None:
    from pipeline.validate import missing_schema_directory  # noqa: PLC0415

    for crd_dir in getattr(args, "crd_schemas", ()):
        if not crd_dir.is_dir():
            raise ConfigError(
                "CRD schema directory does not exist", file=crd_dir, field="--crd-schemas"
            )
    for location in getattr(args, "schema_location", ()):
        missing = missing_schema_directory(location, source)
        if missing is not None:
            raise ConfigError(
                "schema location is a folder that does not exist",
                file=missing,
                field="--schema-location",
            )


def _is_reports_directory(out_dir: Path, source: Path) -> bool:
    return (
        _not_its_own(out_dir, source) is None
        and out_dir.is_dir()
        and (out_dir / "summary.json").is_file()
    )


def _not_its_own(out_dir: Path, source: Path) -> str | None:
    """Why `--out` is not a directory of its own, where reports may be rewritten: or None."""
    resolved = out_dir.resolve()
    if resolved.exists() and not resolved.is_dir():
        return "is a file, not a directory"
    if resolved == Path(resolved.anchor):
        return "must not be the root of the file system"
    if resolved == source.resolve():
        return "must not be the repository itself: use a directory inside it, such as artifacts"
    return None


def write_stopped(out_dir: Path, verb: str, status: Status | str, message: str) -> None:
    """summary.json and summary.md of a run that stopped before its checks could finish."""
    value = status.value if isinstance(status, Status) else status
    stopped = {
        "schema_version": reports.SUMMARY_SCHEMA_VERSION,
        "status": value,
        "stages": [],
        "stopped": message,
    }
    reports.write_json(out_dir / "summary.json", stopped)
    reports.write_text(out_dir / "summary.md", f"## gitops-pipeline {verb}: {value}\n\n{message}\n")


def _check_out(out_dir: Path, config: Config) -> None:
    """`--out` must be a directory of its own: reports are rewritten there on every run."""
    problem = _not_its_own(out_dir, config.source)
    if problem is not None:
        raise ConfigError(problem, file=out_dir, field="--out")
    resolved = out_dir.resolve()
    source = config.source.resolve()
    from pipeline.discovery import find_chart_dirs  # noqa: PLC0415

    try:
        owned = [*find_chart_dirs(config), config.policy.path]
    except ConfigError:
        owned = [config.policy.path]  # reported by the verb itself, with its artifacts
    for relative in owned:
        inside = (source / relative).resolve()
        if resolved == inside or inside in resolved.parents:
            raise ConfigError(
                f"must not be inside {relative}: the reports would become part of it; "
                "pass --out with a directory outside it (for example ../artifacts)",
                file=out_dir,
                field="--out",
            )


async def _run_verb(
    args: argparse.Namespace, func: VerbFunc, config: Config, out_dir: Path
) -> Status:
    # Once, for the runner that enforces them and the stages that read them (per-test limit).
    limits = with_flag(config.timeouts, args.timeout)
    async with (
        open_runner(args, config, out_dir, limits) as (runner, recorder),
        _progress_shown(args, recorder) as display,
    ):
        run = Run(
            config=config,
            runner=runner if display is None else ObservedRunner(runner, display),
            out=out_dir,
            environments=tuple(args.environments),
            schema_locations=tuple(getattr(args, "schema_location", ())),
            crd_schemas=tuple(p.resolve() for p in getattr(args, "crd_schemas", ())),
            release_version=getattr(args, "release_version", None),
            python_versions=tuple(getattr(args, "python_versions", ())),
            schema_cache=default_cache_dir() if isinstance(runner, LocalRunner) else None,
            allow_empty=getattr(args, "allow_empty", False),
            offline=getattr(args, "offline", False),
            timeouts=limits,
            on_host=isinstance(runner, LocalRunner),
            changed_since=getattr(args, "changed_since", None),
            secrets_certificate=args.cert.resolve() if getattr(args, "cert", None) else None,
            memo=runner.cache if isinstance(runner, LocalRunner) else None,
        )
        ledger = artifacts.begin(out_dir) if recorder is None else None
        summary_before = _stamp(out_dir / "summary.json")
        try:
            if recorder is None:
                status = await func(args, run)
            else:
                # A dry run's verdicts are the scripted replies': printed, they would read as
                # "passed" for checks that never ran.
                with contextlib.redirect_stdout(io.StringIO()):
                    status = await func(args, run)
        except anyio.get_cancelled_exc_class():
            if recorder is None:  # plain file writes: nothing here awaits, nothing is cancelled
                write_stopped(
                    out_dir, args.verb, "interrupted", "interrupted before the checks finished"
                )
            raise
        except PipelineError as error:
            # A check stopped before its reports (a broken pyproject.toml): the last run's
            # summary must not stay behind looking like this run's verdict.
            stale = _stamp(out_dir / "summary.json") == summary_before
            if recorder is None and VERBS[args.verb].check and stale:
                write_stopped(out_dir, args.verb, Status.ERROR, str(error))
            raise
        finally:
            if ledger is not None:
                ledger.finish()
        if recorder is not None:
            out(f"dry run: {len(recorder.steps)} steps planned, none ran; these steps would run:")
            for step in recorder.steps:
                out(f"  {describe(step)}")
            answer({"steps": [describe(step) for step in recorder.steps]})
            return Status.PASSED
        if VERBS[args.verb].check and args.format == "json":
            answer(json.loads((out_dir / "summary.json").read_text(encoding="utf-8")))
        return status


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells one write of a file from another: its modification time and inode."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ino


@asynccontextmanager
async def _progress_shown(
    args: argparse.Namespace, recorder: RecordingRunner | None
) -> AsyncIterator[progress.Display | None]:
    """The progress display on stderr while the verb runs, ended before the verb's output."""
    mode = progress.resolve_mode(
        progress.ProgressMode(args.progress),
        quiet=args.quiet or recorder is not None,  # a dry run runs nothing to show
        terminal=progress.is_terminal(sys.stderr, os.environ),
        engine_logs=args.runner == "dagger",  # Dagger's own log shares stderr
    )
    colour = progress.colour_wanted(args.no_color, os.environ)
    display = progress.open_display(mode, args.verb, sys.stderr, colour=colour)
    if display is None:
        yield None
        return
    try:
        with contextlib.redirect_stdout(progress.ClosesOnWrite(sys.stdout, display.close)):
            yield display
    finally:
        display.close()


async def _main_until_signalled(args: argparse.Namespace) -> Status:
    """The verb, stopped by SIGINT or SIGTERM (what CI sends on cancel) with its tools."""
    received: list[int] = []
    finished: list[Status] = []
    try:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        received.append(int(signum))
                        group.cancel_scope.cancel()
                        return

            group.start_soon(watch)
            finished.append(await _main(args))
            group.cancel_scope.cancel()
    except BaseExceptionGroup as errors:
        raise first_leaf(errors) from None  # the verb's own error, mapped to its exit code
    if received:
        raise InterruptedRunError(received[0])
    return finished[0]


@dataclass(frozen=True)
class Ending:
    exit_code: int
    status: str  # a Status value, "planned" (a dry run) or "interrupted"
    message: str | None = None  # the error the verb stopped on
    reader_gone: bool = False


def _run_to_the_end(args: argparse.Namespace) -> Ending:
    try:
        status = anyio.run(_main_until_signalled, args)
    except PipelineError as error:
        if args.verbose:
            traceback.print_exc()
        err(f"gitops-pipeline {args.verb}: error: {error}")
        stopped = "interrupted" if isinstance(error, InterruptedRunError) else "error"
        return Ending(error.exit_code, stopped, str(error))
    except KeyboardInterrupt:
        err("gitops-pipeline: interrupted")
        return Ending(130, "interrupted", "interrupted")
    except BrokenPipeError:
        _stdout_to_devnull()
        return Ending(0, "", reader_gone=True)
    return Ending(EXIT[status], "planned" if args.dry_run else status.value)


def _stdout_to_devnull() -> None:
    # The reader went away (`gitops-pipeline tools | head`): not an error of ours.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _verb_text_redirected(args: argparse.Namespace) -> contextlib.AbstractContextManager[object]:
    if args.format == "json":
        return contextlib.redirect_stdout(sys.stderr)  # stdout is the JSON document's alone
    if args.quiet and VERBS[args.verb].check:
        return contextlib.redirect_stdout(io.StringIO())  # the verdict is printed instead
    return contextlib.nullcontext()


def json_document(args: argparse.Namespace, ending: Ending, answered: dict[str, Any]) -> object:
    """What `--format json` prints: a check's summary.json, else the verb's answer."""
    common = {"schema_version": reports.SUMMARY_SCHEMA_VERSION, "verb": args.verb}
    if ending.message is not None:
        return {
            **common,
            "status": ending.status,
            "exit_code": ending.exit_code,
            "message": ending.message,
        }
    if VERBS[args.verb].check and not args.dry_run:
        return answered
    return {**common, "status": ending.status, "result": answered}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stdout = sys.stdout
    answered: dict[str, Any] = {}
    token = _ANSWER.set(answered)
    try:
        with _verb_text_redirected(args):
            ending = _run_to_the_end(args)
    finally:
        _ANSWER.reset(token)
    try:
        if ending.reader_gone:
            pass
        elif args.format == "json":
            _write_line(stdout, json.dumps(json_document(args, ending, answered), indent=2))
        elif args.quiet and VERBS[args.verb].check and ending.message is None:
            _write_line(stdout, f"gitops-pipeline {args.verb}: {ending.status}")
    except BrokenPipeError:
        _stdout_to_devnull()
    return ending.exit_code


def _write_line(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


if __name__ == "__main__":
    sys.exit(main())
