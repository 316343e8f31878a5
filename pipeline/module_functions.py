"""The bodies of the Dagger module's functions: pipeline/module.py is their face.

Each function takes the module object (`face`: its `source`, and how it reads the source
on this side) and the function's arguments. This module, and everything it imports, loads
when a function is called, not when the engine loads the module to list its functions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import dagger
from dagger import dag

from pipeline import publish
from pipeline.changelog import changelog_markdown
from pipeline.ci import PYTHON_STAGES, run_ci
from pipeline.config import Config, load_config
from pipeline.dagger_images import DaggerImages
from pipeline.errors import ConfigError
from pipeline.model import SecretRef, Step
from pipeline.model import out as output_ref
from pipeline.plan import plan_text
from pipeline.policy import catalog_text
from pipeline.pychecks import mypy_targets, python_projects, write_stage_reports
from pipeline.release import (
    ReleaseOptions,
    check_build_inputs,
    image_labels,
    publish_current,
    release,
    version_and_head,
)
from pipeline.run import Run
from pipeline.runners.dagger_runner import (
    DaggerRunner,
    local_directory,
    scratch_dir,
    tool_container,
)
from pipeline.stages import kubernetes_validate, mypy, pytest, ruff
from pipeline.tools import TOOLS, get_tool
from pipeline.validate import ALL_CHECKS, CRD_INPUT, SCHEMA_CACHE, validate
from pipeline.versioning import decide, decision_json

# The release tag's identity in CI, where no git user is configured.
RELEASE_TAGGER = ("gitops-pipeline", "gitops-pipeline@users.noreply.github.com")
# Secrets given to the module are looked up by this reference, never resolved from the host.
GIT_TOKEN_REFERENCE = "env:GITOPS_PIPELINE_GIT_TOKEN"  # noqa: S105 - a lookup key
GIT_SERVER_HOST = "git-server"


class Face(Protocol):
    """What the functions need of the module object."""

    @property
    def source(self) -> dagger.Directory: ...

    async def _local_source(self, workdir: Path) -> Path: ...

    async def _config_only(self) -> Config: ...


# --- the checks ----------------------------------------------------------------------------


async def checks_run(  # noqa: PLR0917 - the validate functions' arguments, passed along
    face: Face,
    env: list[str] | None = None,
    schema_location: list[str] | None = None,
    crd_schemas: dagger.Directory | None = None,
    release_version: str = "",
    python: list[str] | None = None,
    *,
    allow_empty: bool = False,
    offline: bool = False,
    changed_since: str = "",
    git_dir: dagger.Directory | None = None,
) -> Run:
    """A run over a local copy of the source, tools in containers, artifacts on local disk."""
    if changed_since and git_dir is None:
        raise ConfigError(
            "comparing with a git ref needs the history: pass --git-dir .git",
            field="--changed-since",
        )
    workdir = scratch_dir("gitops-pipeline-")
    out = workdir / "artifacts"
    crd_paths: tuple[Path, ...] = ()
    if crd_schemas is not None:
        # Where the schema bundle's step finds them, so they are not copied again.
        crd_paths = (out / CRD_INPUT / "0",)
        await crd_schemas.export(str(crd_paths[0]))
    # Planning reads pipeline.yaml, charts and values on disk, as the CLI does; the tools
    # themselves get `source` mounted in their containers.
    config = load_config(await face._local_source(workdir))  # noqa: SLF001 - the face's own reader
    # `source` ignores .git; the history goes beside the work tree only when asked for.
    source = face.source if git_dir is None else face.source.with_directory(".git", git_dir)
    return Run(
        config=config,
        runner=DaggerRunner(source=source, out=out, images=config.tool_images()),
        out=out,
        environments=tuple(env or ()),
        schema_locations=tuple(schema_location or ()),
        crd_schemas=crd_paths,
        release_version=release_version or None,
        python_versions=tuple(python or ()),
        allow_empty=allow_empty,
        offline=offline,
        changed_since=changed_since or None,
    )


async def checked(run: Run, checks: Collection[str] = ALL_CHECKS) -> dagger.Directory:
    """The artifacts of the checks; a failed check is in summary.json, returned with the rest."""
    await validate(run, checks)
    return artifacts_directory(run.out)


async def validate_with_certificate(run: Run, cert: dagger.File | None) -> dagger.Directory:
    if cert is not None:
        certificate = run.out.parent / "sealing-cert.pem"
        await cert.export(str(certificate))
        run = replace(run, secrets_certificate=certificate)
    return await checked(run)


async def check(run: Run) -> str:
    outcome, out = await validate(run, ALL_CHECKS), run.out
    summary = (out / "summary.md").read_text(encoding="utf-8")
    if outcome.error is not None:
        raise outcome.error
    if outcome.status.failed:
        raise ConfigError(f"validation {outcome.status.value}:\n{summary}")
    return summary


async def ci(run: Run) -> dagger.Directory:
    await run_ci(run)  # failures are in the returned summary.json, like validate's
    return artifacts_directory(run.out)


# --- Python projects -----------------------------------------------------------------------


async def python_stage(face: Face, stage: str, python: list[str] | None = None) -> dagger.Directory:
    run = await checks_run(face, python=python)
    write_stage_reports(run, await PYTHON_STAGES[stage](run))
    return artifacts_directory(run.out)


async def _stage_container(face: Face, step_for: Callable[[Run, str], Step]) -> dagger.Container:
    """The prepared container of the first Python project's step, without its command."""
    run = await checks_run(face)
    step = step_for(run, python_projects(run)[0])
    images = run.config.tool_images()
    return DaggerRunner(source=face.source, out=run.out, images=images).container(step)


async def stage_container(face: Face, stage: str) -> dagger.Container:
    """lint, typecheck or test's container, prepared: for `terminal`."""
    steps: dict[str, Callable[[Run, str], Step]] = {
        "lint": lambda run, p: ruff.check_step(run.source, p),
        "typecheck": lambda run, p: mypy.step(run.source, p, mypy_targets(run, p)),
        "test": lambda run, p: pytest.step(run.source, p),
    }
    return await _stage_container(face, steps[stage])


# --- release -------------------------------------------------------------------------------


async def release_run(face: Face, git_dir: dagger.Directory) -> tuple[Run, DaggerRunner]:
    workdir = scratch_dir("gitops-pipeline-")
    config = load_config(await face._local_source(workdir))  # noqa: SLF001 - the face's own reader
    out = workdir / "artifacts"
    out.mkdir()
    # The history lives beside the work tree, as in a checkout; `source` ignores .git.
    runner = DaggerRunner(
        source=face.source.with_directory(".git", git_dir),
        out=out,
        images=config.tool_images(),
    )
    return Run(config=config, runner=runner, out=out), runner


async def version(
    face: Face, git_dir: dagger.Directory, prerelease: str, *, json_output: bool
) -> str:
    run, _ = await release_run(face, git_dir)
    decision = await decide(run.runner, config=run.config.release, prerelease=prerelease or None)
    if json_output:
        return json.dumps(decision_json(decision), indent=2)
    return decision.next or decision.current or ""


async def changelog(face: Face, git_dir: dagger.Directory, prerelease: str, repo_url: str) -> str:
    run, _ = await release_run(face, git_dir)
    decision = await decide(run.runner, config=run.config.release, prerelease=prerelease or None)
    version = decision.next or decision.current or "unreleased"
    today = dt.datetime.now(dt.UTC).date()
    return changelog_markdown(decision, version=version, date=today, repo_url=repo_url or None)


def release_options(
    config: Config, image: str, registry_username: str, prerelease: str = ""
) -> ReleaseOptions:
    repository = image or config.image.repository
    if not repository:
        raise ConfigError("no image: pass --image or set image.repository", field="image")
    return ReleaseOptions(
        image=repository,
        dockerfile=config.image.dockerfile,
        context=config.image.context,
        registry_username=registry_username or None,
        prerelease=prerelease or None,
        tagger=RELEASE_TAGGER,
    )


async def build(
    face: Face, git_dir: dagger.Directory, image: str, platform: list[str] | None
) -> dagger.Container:
    run, runner = await release_run(face, git_dir)
    options = release_options(run.config, image, "")
    publish.check_image_name(options.image)
    check_build_inputs(run.config, options)
    version, head = await version_and_head(run, options)
    images = DaggerImages(runner.source, options, platforms=platform or ())
    return images.containers(await image_labels(run, options, version, head))[0]


async def publish_images(  # noqa: PLR0917 - the function's arguments, passed along
    face: Face,
    git_dir: dagger.Directory,
    registry_password: dagger.Secret,
    image: str,
    registry_username: str,
    platform: list[str] | None,
) -> list[str]:
    run, runner = await release_run(face, git_dir)
    options = release_options(run.config, image, registry_username)
    images = DaggerImages(runner.source, options, registry_password, platform or ())
    pushed = await publish_current(run, options, images)
    return [f"{p.ref}@{p.digest}" for p in pushed]


async def release_all(  # noqa: PLR0917 - the function's arguments, passed along
    face: Face,
    git_dir: dagger.Directory,
    registry_password: dagger.Secret,
    git_token: dagger.Secret | None,
    options: tuple[str, str, str, str],  # image, registry user, remote, prerelease
    platform: list[str] | None,
    git_server: dagger.Service | None,
) -> dagger.Directory:
    image, registry_username, remote, prerelease = options
    run, runner = await release_run(face, git_dir)
    if git_token is not None:
        runner.secrets = {GIT_TOKEN_REFERENCE: git_token}
    if git_server is not None:
        runner.services = {GIT_SERVER_HOST: git_server}
    release_with = replace(
        release_options(run.config, image, registry_username, prerelease),
        remote=remote,
        git_token=SecretRef("GIT_TOKEN", GIT_TOKEN_REFERENCE) if git_token else None,
    )
    images = DaggerImages(runner.source, release_with, registry_password, platform or ())
    await release(run, release_with, images)
    return artifacts_directory(run.out)


# --- everything else -----------------------------------------------------------------------


async def plan(face: Face, env: list[str] | None) -> str:
    workdir = scratch_dir("gitops-pipeline-")
    config = load_config(await face._local_source(workdir))  # noqa: SLF001 - the face's own reader
    return await plan_text(config, tuple(env or ()))


async def argocd(face: Face) -> dagger.Directory:
    from pipeline.delivery.argocd import rendered_files  # noqa: PLC0415 - delivery, when called

    workdir = scratch_dir("gitops-pipeline-")
    config = load_config(await face._local_source(workdir))  # noqa: SLF001 - the face's own reader
    directory = dag.directory()
    for name, text in rendered_files(config).items():
        directory = directory.with_new_file(name, text)
    return directory


async def tools(face: Face) -> str:
    images = (await face._config_only()).tool_images()  # noqa: SLF001 - the face's own reader
    return "\n".join(
        f"{t.name}\t{t.version}\t{t.source.value}:{t.package}\t{images[t.name]}"
        for t in TOOLS.values()
    )


def policies() -> str:
    return catalog_text()


async def tool_env(face: Face, tool: str) -> dagger.Container:
    pinned = get_tool(tool)
    images = (await face._config_only()).tool_images()  # noqa: SLF001 - the face's own reader
    return (
        tool_container(pinned, images[pinned.name])
        .with_mounted_directory("/src", face.source)
        .with_workdir("/src")
    )


async def schemas(
    face: Face, kubernetes_version: str, crd_schemas: dagger.Directory | None
) -> dagger.Directory:
    out = scratch_dir("gitops-pipeline-schemas-")
    crd_dirs = []
    if crd_schemas is not None:
        await crd_schemas.export(str(out / CRD_INPUT / "0"))
        crd_dirs.append(output_ref(f"{CRD_INPUT}/0"))
    images = (await face._config_only()).tool_images()  # noqa: SLF001 - the face's own reader
    runner = DaggerRunner(source=dag.directory(), out=out, images=images)
    step = kubernetes_validate.bundle_step(output_ref("bundle"), kubernetes_version, crd_dirs)
    result = await runner.run(step)
    if not result.ok:
        raise ConfigError(f"schema bundle: {result.stderr.strip()}")
    return local_directory(out / "bundle")


async def notify(face: Face, **given: object) -> dagger.Directory:
    """`given`: the notify function's arguments, by name."""
    from pipeline.notify.in_dagger import notify_in_module  # noqa: PLC0415 - notify, when called

    workdir = scratch_dir("gitops-pipeline-notify-")
    out = await notify_in_module(
        (await face._config_only()).notify,  # noqa: SLF001 - the face's own reader
        workdir,
        **given,  # type: ignore[arg-type]
    )
    return local_directory(out, ("notify.json",))


async def seal(face: Face, **given: object) -> dagger.File:
    """`given`: the seal function's arguments, by name."""
    from pipeline.secrets import in_dagger  # noqa: PLC0415 - secrets, when called

    images = (await face._config_only()).tool_images()  # noqa: SLF001 - the face's own reader
    return await in_dagger.seal(images=images, **given)  # type: ignore[arg-type]


async def promote(  # noqa: PLR0917 - the function's arguments, passed along
    face: Face,
    git_dir: dagger.Directory,
    target: tuple[str, str, str, str, str, str],  # env, version, from env, chart, path, image
    registry_username: str,
    registry_password: dagger.Secret | None,
    registry_service: dagger.Service | None,
    *,
    pull_request: bool,
) -> dagger.Directory:
    from pipeline.delivery import in_dagger  # noqa: PLC0415 - delivery, when called
    from pipeline.delivery.promote import PromoteRequest  # noqa: PLC0415

    env, version, from_env, chart, path, image = target
    run, runner = await release_run(face, git_dir)
    request = PromoteRequest(
        environment=env,
        version=version or None,
        from_environment=from_env or None,
        chart=chart or None,
        path=path or None,
        image=image or None,
        credentials=await in_dagger.credentials(registry_username, registry_password),
        pull_request=pull_request,
        registry_endpoint=await in_dagger.tunnel_endpoint(registry_service),
    )
    await in_dagger.promote_in_engine(run, runner, request, RELEASE_TAGGER)
    return artifacts_directory(run.out)


async def diff(run: Run, base: str) -> dagger.Directory:
    from pipeline.delivery import in_dagger  # noqa: PLC0415 - delivery, when called
    from pipeline.delivery.diff import diff as rendered_diff  # noqa: PLC0415

    await rendered_diff(run, base, in_dagger.runner_for(run.config.tool_images()))
    return artifacts_directory(run.out)


def artifacts_directory(out: Path) -> dagger.Directory:
    """The artifacts as a Dagger directory, without the schema cache (rebuilt on demand)."""
    if not out.is_dir():
        return dag.directory()
    cache_root = SCHEMA_CACHE.split("/", 1)[0]
    names = tuple(path.name for path in sorted(out.iterdir()) if path.name != cache_root)
    return local_directory(out, names)
