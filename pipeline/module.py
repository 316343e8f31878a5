"""The Dagger module: the same verbs as the CLI, each tool in its pinned container.

`dagger call validate export --path artifacts` runs what
`gitops-pipeline validate` runs on a laptop; planning, parsing and reports are
the same code, only the runner differs (`DaggerRunner` instead of `LocalRunner`).
Functions that check return the artifacts `Directory` even when a check fails,
so CI can export the reports; `check` raises instead, for `dagger check`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore, dag, function, object_type
from dagger import check as dagger_check

from pipeline import publish
from pipeline.changelog import changelog_markdown
from pipeline.ci import PYTHON_STAGES, run_ci
from pipeline.config import CONFIG_FILE, DEFAULT_KUBERNETES_VERSION, Config, load_config
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

SOURCE_IGNORE = [
    ".git",
    ".venv",
    ".tools",
    "artifacts",
    "sdk",
    "**/__pycache__",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/node_modules",
]

Environments = Annotated[
    list[str] | None, Doc("environments to check (default: every environment found)")
]
SchemaLocations = Annotated[
    list[str] | None,
    Doc(
        "kubeconform schema locations; 'bundled' builds an offline bundle (default: pipeline.yaml)"
    ),
]
CrdSchemas = Annotated[
    dagger.Directory | None,
    Doc("CRD JSON schemas in the CRDs-catalog layout, added to the bundled location"),
]
GitDir = Annotated[
    dagger.Directory,
    DefaultPath("/.git"),
    Doc("the repository's .git directory: the history versions are computed from"),
]
Image = Annotated[str, Doc("registry/owner/name, lower-case (default: image.repository)")]
# The release tag's identity in CI, where no git user is configured.
RELEASE_TAGGER = ("gitops-pipeline", "gitops-pipeline@users.noreply.github.com")
# Secrets given to the module are looked up by this reference, never resolved from the host.
GIT_TOKEN_REFERENCE = "env:GITOPS_PIPELINE_GIT_TOKEN"  # noqa: S105 - a lookup key
AllowEmpty = Annotated[bool, Doc("pass when the repository has nothing to check")]
Offline = Annotated[
    bool, Doc("download nothing: chart dependencies must be vendored (default: from Chart.lock)")
]
GIT_SERVER_HOST = "git-server"
ReleaseVersion = Annotated[str, Doc("release version written to .version and .image-tag")]
ChangedSince = Annotated[
    str,
    Doc(
        "check only the charts changed since the merge base with this git ref "
        "(needs --git-dir .git, fetched deep enough to hold the ref)"
    ),
]
NotifySecret = Annotated[
    dagger.Secret | None,
    Doc("for the channel pipeline.yaml's notify: declares, e.g. env:SLACK_WEBHOOK_URL"),
]
SealingCertificate = Annotated[
    dagger.File | None, Doc("the sealed-secrets controller's certificate (PEM)")
]
ChangesGitDir = Annotated[
    dagger.Directory | None, Doc("the repository's .git, for --changed-since")
]


@object_type
class Pipeline:
    """CI for a GitOps repository: Helm per environment, kubeconform, OPA policies, reports."""

    source: Annotated[
        dagger.Directory,
        DefaultPath("/"),
        Ignore(SOURCE_IGNORE),
        Doc("the repository: its charts, policy/, pipeline.yaml"),
    ]

    async def _local_source(self, workdir: Path) -> Path:
        # Planning reads pipeline.yaml, charts and values on disk, as the CLI does; the
        # tools themselves get `source` mounted in their containers.
        local = workdir / "source"
        await self.source.export(str(local))
        return local

    async def _checks_run(  # noqa: PLR0917 - the validate functions' arguments, passed along
        self,
        env: list[str] | None = None,
        schema_location: list[str] | None = None,
        crd_schemas: dagger.Directory | None = None,
        release_version: str = "",
        python: list[str] | None = None,
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
        config = load_config(await self._local_source(workdir))
        # `source` ignores .git; the history goes beside the work tree only when asked for.
        source = self.source if git_dir is None else self.source.with_directory(".git", git_dir)
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

    async def _artifacts(self, checks: Collection[str], run: Run) -> dagger.Directory:
        await validate(run, checks)  # the verdict is in summary.json, returned with the rest
        return artifacts_directory(run.out)

    @function
    async def render(
        self,
        env: Environments = None,
        release_version: ReleaseVersion = "",
    ) -> dagger.Directory:
        """helm lint --strict and helm template for every chart and environment."""
        run = await self._checks_run(env, None, None, release_version)
        return await self._artifacts(("lint", "render"), run)

    @function
    async def kubeconform(
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
    ) -> dagger.Directory:
        """Render, then validate every manifest against Kubernetes and CRD schemas."""
        run = await self._checks_run(env, schema_location, crd_schemas)
        return await self._artifacts(("render", "kubeconform"), run)

    @function
    async def policy(self, env: Environments = None) -> dagger.Directory:
        """Render, then conftest test with the built-in policy pack and the repository's policy/."""
        return await self._artifacts(("render", "policy"), await self._checks_run(env, None, None))

    @function
    async def validate(  # noqa: PLR0917 - Dagger functions take their arguments by name
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
        release_version: ReleaseVersion = "",
        allow_empty: AllowEmpty = False,
        offline: Offline = False,
        changed_since: ChangedSince = "",
        git_dir: ChangesGitDir = None,
        cert: SealingCertificate = None,
    ) -> dagger.Directory:
        """Lint, render every environment, kubeconform and policies; returns every report.

        The directory is returned even when a check fails; its summary.json says so.
        """
        run = await self._checks_run(
            env,
            schema_location,
            crd_schemas,
            release_version,
            allow_empty=allow_empty,
            offline=offline,
            changed_since=changed_since,
            git_dir=git_dir,
        )
        if cert is not None:
            certificate = run.out.parent / "sealing-cert.pem"
            await cert.export(str(certificate))
            run = replace(run, secrets_certificate=certificate)
        return await self._artifacts(ALL_CHECKS, run)

    @function
    @dagger_check
    async def check(
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
        allow_empty: AllowEmpty = False,
        offline: Offline = False,
    ) -> str:
        """Like validate, but fails when any check fails; returns the Markdown summary."""
        run = await self._checks_run(
            env, schema_location, crd_schemas, allow_empty=allow_empty, offline=offline
        )
        outcome, out = await validate(run, ALL_CHECKS), run.out
        summary = (out / "summary.md").read_text(encoding="utf-8")
        if outcome.error is not None:
            raise outcome.error
        if outcome.status.failed:
            raise ConfigError(f"validation {outcome.status.value}:\n{summary}")
        return summary

    async def _python_stage(self, stage: str, python: list[str] | None = None) -> dagger.Directory:
        run = await self._checks_run(python=python)
        write_stage_reports(run, await PYTHON_STAGES[stage](run))
        return artifacts_directory(run.out)

    @function
    async def lint(self) -> dagger.Directory:
        """ruff check and ruff format --check (with the diff) per Python project."""
        return await self._python_stage("lint")

    @function
    async def typecheck(self) -> dagger.Directory:
        """mypy with each project's own configuration; returns reports."""
        return await self._python_stage("typecheck")

    @function
    async def test(
        self,
        python: Annotated[
            list[str] | None,
            Doc("Python versions to test on, e.g. 3.11 3.12 (default: the image's)"),
        ] = None,
    ) -> dagger.Directory:
        """pytest with JUnit XML and coverage per project (and Python version); returns reports."""
        return await self._python_stage("test", python)

    async def _stage_container(self, step_for: Callable[[Run, str], Step]) -> dagger.Container:
        """The prepared container of the first Python project's step, without its command."""
        run = await self._checks_run()
        step = step_for(run, python_projects(run)[0])
        images = run.config.tool_images()
        return DaggerRunner(source=self.source, out=run.out, images=images).container(step)

    @function
    async def lint_env(self) -> dagger.Container:
        """The container lint runs in, prepared: `dagger call lint-env terminal`."""
        return await self._stage_container(lambda run, p: ruff.check_step(run.source, p))

    @function
    async def typecheck_env(self) -> dagger.Container:
        """The container typecheck runs in, with the project's dependencies installed."""
        return await self._stage_container(
            lambda run, p: mypy.step(run.source, p, mypy_targets(run, p))
        )

    @function
    async def test_env(self) -> dagger.Container:
        """The container the tests run in: `dagger call test-env terminal`."""
        return await self._stage_container(lambda run, p: pytest.step(run.source, p))

    @function
    async def ci(  # noqa: PLR0917 - Dagger functions take their arguments by name
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
        allow_empty: AllowEmpty = False,
        offline: Offline = False,
        changed_since: ChangedSince = "",
        git_dir: ChangesGitDir = None,
    ) -> dagger.Directory:
        """lint, typecheck, test and validate concurrently; one merged summary.md and junit.xml."""
        run = await self._checks_run(
            env,
            schema_location,
            crd_schemas,
            allow_empty=allow_empty,
            offline=offline,
            changed_since=changed_since,
            git_dir=git_dir,
        )
        await run_ci(run)  # failures are in the returned summary.json, like validate's
        return artifacts_directory(run.out)

    # --- release ---------------------------------------------------------------------------

    async def _release_run(self, git_dir: dagger.Directory) -> tuple[Run, DaggerRunner]:
        workdir = scratch_dir("gitops-pipeline-")
        config = load_config(await self._local_source(workdir))
        out = workdir / "artifacts"
        out.mkdir()
        # The history lives beside the work tree, as in a checkout; `source` ignores .git.
        runner = DaggerRunner(
            source=self.source.with_directory(".git", git_dir),
            out=out,
            images=config.tool_images(),
        )
        return Run(config=config, runner=runner, out=out), runner

    @function
    async def version(
        self,
        git_dir: GitDir,
        prerelease: Annotated[str, Doc("a prerelease token: X.Y.Z-TOKEN.N")] = "",
        json_output: Annotated[bool, Doc("the whole decision as JSON")] = False,
    ) -> str:
        """The next version from conventional commits since the last release tag."""
        run, _ = await self._release_run(git_dir)
        decision = await decide(
            run.runner, config=run.config.release, prerelease=prerelease or None
        )
        if json_output:
            return json.dumps(decision_json(decision), indent=2)
        return decision.next or decision.current or ""

    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def changelog(
        self,
        git_dir: GitDir,
        prerelease: Annotated[str, Doc("notes for a prerelease")] = "",
        repo_url: Annotated[str, Doc("https://github.com/OWNER/REPO, to link commits")] = "",
    ) -> str:
        """Markdown release notes for the next version, breaking changes first."""
        run, _ = await self._release_run(git_dir)
        decision = await decide(
            run.runner, config=run.config.release, prerelease=prerelease or None
        )
        version = decision.next or decision.current or "unreleased"
        today = dt.datetime.now(dt.UTC).date()
        return changelog_markdown(decision, version=version, date=today, repo_url=repo_url or None)

    def _release_options(
        self, config: Config, image: str, registry_username: str, prerelease: str = ""
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

    @function
    async def build(
        self,
        git_dir: GitDir,
        image: Image = "",
        platform: Annotated[list[str] | None, Doc("platforms, e.g. linux/amd64")] = None,
    ) -> dagger.Container:
        """The image of the version the history gives, with OCI labels (first platform)."""
        run, runner = await self._release_run(git_dir)
        options = self._release_options(run.config, image, "")
        publish.check_image_name(options.image)
        check_build_inputs(run.config, options)
        version, head = await version_and_head(run, options)
        images = DaggerImages(runner.source, options, platforms=platform or ())
        return images.containers(await image_labels(run, options, version, head))[0]

    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def publish(
        self,
        git_dir: GitDir,
        registry_password: Annotated[dagger.Secret, Doc("registry token, e.g. env:GITHUB_TOKEN")],
        image: Image = "",
        registry_username: Annotated[str, Doc("registry user (GHCR: the GitHub actor)")] = "",
        platform: Annotated[list[str] | None, Doc("platforms, e.g. linux/amd64")] = None,
    ) -> list[str]:
        """Build and push X.Y.Z, X.Y, X, latest and sha-<7>; returns the references with digest."""
        run, runner = await self._release_run(git_dir)
        options = self._release_options(run.config, image, registry_username)
        images = DaggerImages(runner.source, options, registry_password, platform or ())
        pushed = await publish_current(run, options, images)
        return [f"{p.ref}@{p.digest}" for p in pushed]

    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def release(  # noqa: PLR0917 - Dagger functions take their arguments by name
        self,
        git_dir: GitDir,
        registry_password: Annotated[dagger.Secret, Doc("registry token, e.g. env:GITHUB_TOKEN")],
        git_token: Annotated[
            dagger.Secret | None, Doc("token that may push the tag, e.g. env:GITHUB_TOKEN")
        ] = None,
        image: Image = "",
        registry_username: Annotated[str, Doc("registry user (GHCR: the GitHub actor)")] = "",
        remote: Annotated[str, Doc("git remote the tag is pushed to")] = "origin",
        prerelease: Annotated[str, Doc("release X.Y.Z-TOKEN.N")] = "",
        platform: Annotated[list[str] | None, Doc("platforms, e.g. linux/amd64")] = None,
        git_server: Annotated[
            dagger.Service | None,
            Doc(
                "a git server only this machine reaches (tcp://localhost:PORT), seen by the tag "
                "push as host git-server: pair with --remote git://git-server:PORT/REPO"
            ),
        ] = None,
    ) -> dagger.Directory:
        """Version, changelog, build, tag push, publish; returns .version, notes and digests."""
        run, runner = await self._release_run(git_dir)
        if git_token is not None:
            runner.secrets = {GIT_TOKEN_REFERENCE: git_token}
        if git_server is not None:
            runner.services = {GIT_SERVER_HOST: git_server}
        options = replace(
            self._release_options(run.config, image, registry_username, prerelease),
            remote=remote,
            git_token=SecretRef("GIT_TOKEN", GIT_TOKEN_REFERENCE) if git_token else None,
        )
        images = DaggerImages(runner.source, options, registry_password, platform or ())
        await release(run, options, images)
        return artifacts_directory(run.out)

    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def notify(  # noqa: PLR0917 - Dagger functions take their arguments by name
        self,
        summary: Annotated[dagger.File | None, Doc("a summary.json: failure or recovery")] = None,
        release: Annotated[dagger.File | None, Doc("a release.json: the release")] = None,
        message: Annotated[str, Doc("say this, now")] = "",
        telegram_token: NotifySecret = None,
        slack_url: NotifySecret = None,
        webhook_url: NotifySecret = None,
        webhook_secret: NotifySecret = None,
        alertmanager_url: NotifySecret = None,
        channel: Annotated[list[str] | None, Doc("only these channels")] = None,
        label: Annotated[list[str] | None, Doc("KEY=VALUE: who it is about")] = None,
        link: Annotated[list[str] | None, Doc("NAME=URL")] = None,
        notify_server: Annotated[
            dagger.Service | None,
            Doc("a server only this machine reaches (tcp://localhost:PORT), host notify-server"),
        ] = None,
    ) -> dagger.Directory:
        """Send to pipeline.yaml's notify: channels; returns notify.json (a failed channel too)."""
        workdir = scratch_dir("gitops-pipeline-notify-")
        from pipeline.notify.in_dagger import notify_in_module  # noqa: PLC0415 - loaded when called, not at module load

        out = await notify_in_module(
            (await self._config_only()).notify,
            workdir,
            summary=summary,
            release=release,
            text=message,
            secrets={
                "telegram_token": telegram_token,
                "slack_url": slack_url,
                "webhook_url": webhook_url,
                "webhook_secret": webhook_secret,
                "alertmanager_url": alertmanager_url,
            },
            channels=channel or [],
            labels=label or [],
            links=link or [],
            notify_server=notify_server,
        )
        return local_directory(out, ("notify.json",))

    @function
    async def plan(self, env: Environments = None) -> str:
        """The chart environments, their values layering and the steps validate would run."""
        workdir = scratch_dir("gitops-pipeline-")
        config = load_config(await self._local_source(workdir))
        return await plan_text(config, tuple(env or ()))

    async def _config_only(self) -> Config:
        """pipeline.yaml alone, for functions that need the configuration but no chart."""
        local = scratch_dir("gitops-pipeline-") / "source"
        await self.source.filter(include=[CONFIG_FILE]).export(str(local))
        return load_config(local)

    @function
    async def argocd(self) -> dagger.Directory:
        """The Argo CD objects pipeline.yaml's delivery: block describes (the deploy folder)."""
        workdir = scratch_dir("gitops-pipeline-")
        config = load_config(await self._local_source(workdir))
        directory = dag.directory()
        from pipeline.delivery.argocd import rendered_files  # noqa: PLC0415 - loaded when called, not at module load

        for name, text in rendered_files(config).items():
            directory = directory.with_new_file(name, text)
        return directory

    @function
    async def tools(self) -> str:
        """Every pinned tool: version, how it is installed locally, and the image it runs in.

        The image is pipeline.yaml's `tools.<name>.image` where the repository replaces it.
        """
        images = (await self._config_only()).tool_images()
        return "\n".join(
            f"{t.name}\t{t.version}\t{t.source.value}:{t.package}\t{images[t.name]}"
            for t in TOOLS.values()
        )

    @function
    def policies(self) -> str:
        """The built-in policy rules: id, severity (deny fails, warn reports), title, fix."""
        return catalog_text()

    @function
    async def tool_env(
        self, tool: Annotated[str, Doc("a pinned tool: helm, kubeconform, conftest, ...")]
    ) -> dagger.Container:
        """A tool's container, source at /src: `dagger call tool-env --tool helm terminal`."""
        pinned = get_tool(tool)
        images = (await self._config_only()).tool_images()
        return (
            tool_container(pinned, images[pinned.name])
            .with_mounted_directory("/src", self.source)
            .with_workdir("/src")
        )

    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def seal(  # noqa: PLR0917 - Dagger functions take their arguments by name
        self,
        key: Annotated[list[str], Doc("the Secret's data keys, one per --value, in order")],
        value: Annotated[
            list[dagger.Secret], Doc("each key's value as a secret: env:NAME or file:PATH")
        ],
        cert: SealingCertificate = None,
        cert_url: Annotated[str, Doc("or the certificate's https:// URL")] = "",
        name: Annotated[str, Doc("the Secret's name")] = "",
        namespace: Annotated[str, Doc("its namespace (not for cluster-wide)")] = "",
        scope: Annotated[str, Doc("strict (default), namespace-wide or cluster-wide")] = "",
        secret_type: Annotated[str, Doc("the Secret's type")] = "Opaque",  # noqa: S107
        merge_into: Annotated[
            dagger.File | None, Doc("a SealedSecret file to update these keys in")
        ] = None,
    ) -> dagger.File:
        """A SealedSecret for the controller's certificate, or merge_into with the keys updated."""
        images = (await self._config_only()).tool_images()
        from pipeline.secrets import in_dagger as sealing_in_dagger  # noqa: PLC0415 - loaded when called, not at module load

        return await sealing_in_dagger.seal(
            images=images,
            keys=key,
            values=value,
            cert=cert,
            cert_url=cert_url,
            name=name,
            namespace=namespace,
            scope=scope,
            secret_type=secret_type,
            merge_into=merge_into,
        )

    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def promote(  # noqa: PLR0917 - Dagger functions take their arguments by name
        self,
        git_dir: GitDir,
        env: Annotated[str, Doc("the environment whose overlay takes the version")],
        version: Annotated[str, Doc("the image tag (or --from)")] = "",
        from_env: Annotated[str, Doc("take this environment's version")] = "",
        chart: Annotated[str, Doc("the chart, when several deploy to the environment")] = "",
        path: Annotated[str, Doc("values path of the tag (default image.tag)")] = "",
        image: Annotated[str, Doc("the image (default: the values' repository)")] = "",
        registry_username: Annotated[str, Doc("registry user (GHCR: the GitHub actor)")] = "",
        registry_password: Annotated[
            dagger.Secret | None, Doc("registry token, e.g. env:GITHUB_TOKEN")
        ] = None,
        pr: Annotated[bool, Doc("commit on a new branch; write the PR body")] = False,
        registry_service: Annotated[
            dagger.Service | None,
            Doc("a registry only this machine reaches (tcp://localhost:PORT), asked through it"),
        ] = None,
    ) -> dagger.Directory:
        """Write a published version into one overlay and commit it; returns promote.patch."""
        run, runner = await self._release_run(git_dir)
        from pipeline.delivery import in_dagger as delivery_in_dagger  # noqa: PLC0415 - loaded when called, not at module load
        from pipeline.delivery.promote import PromoteRequest  # noqa: PLC0415 - loaded when called, not at module load

        request = PromoteRequest(
            environment=env,
            version=version or None,
            from_environment=from_env or None,
            chart=chart or None,
            path=path or None,
            image=image or None,
            credentials=await delivery_in_dagger.credentials(registry_username, registry_password),
            pull_request=pr,
            registry_endpoint=await delivery_in_dagger.tunnel_endpoint(registry_service),
        )
        await delivery_in_dagger.promote_in_engine(run, runner, request, RELEASE_TAGGER)
        return artifacts_directory(run.out)

    @function
    async def diff(
        self,
        base: Annotated[str, Doc("compare with the merge base of this ref and HEAD")],
        git_dir: GitDir,
        env: Environments = None,
        offline: Offline = False,
    ) -> dagger.Directory:
        """Rendered resources added, removed and changed per environment: diff.json, diff.md."""
        run = await self._checks_run(env, offline=offline, git_dir=git_dir)
        from pipeline.delivery import in_dagger as delivery_in_dagger  # noqa: PLC0415 - loaded when called, not at module load
        from pipeline.delivery.diff import diff as rendered_diff  # noqa: PLC0415 - loaded when called, not at module load

        await rendered_diff(run, base, delivery_in_dagger.runner_for(run.config.tool_images()))
        return artifacts_directory(run.out)

    @function
    async def schemas(
        self,
        kubernetes_version: Annotated[str, Doc("x.y.z")] = DEFAULT_KUBERNETES_VERSION,
        crd_schemas: CrdSchemas = None,
    ) -> dagger.Directory:
        """An offline kubeconform schema bundle for one Kubernetes version (kubernetes-validate)."""
        out = scratch_dir("gitops-pipeline-schemas-")
        crd_dirs = []
        if crd_schemas is not None:
            await crd_schemas.export(str(out / CRD_INPUT / "0"))
            crd_dirs.append(output_ref(f"{CRD_INPUT}/0"))
        images = (await self._config_only()).tool_images()
        runner = DaggerRunner(source=dag.directory(), out=out, images=images)
        step = kubernetes_validate.bundle_step(output_ref("bundle"), kubernetes_version, crd_dirs)
        result = await runner.run(step)
        if not result.ok:
            raise ConfigError(f"schema bundle: {result.stderr.strip()}")
        return local_directory(out / "bundle")


def artifacts_directory(out: Path) -> dagger.Directory:
    """The artifacts as a Dagger directory, without the schema cache (rebuilt on demand)."""
    if not out.is_dir():
        return dag.directory()
    cache_root = SCHEMA_CACHE.split("/", 1)[0]
    names = tuple(path.name for path in sorted(out.iterdir()) if path.name != cache_root)
    return local_directory(out, names)
