"""The Dagger module: the same verbs as the CLI, each tool in its pinned container.

`dagger call validate export --path artifacts` runs what
`gitops-pipeline validate` runs on a laptop; planning, parsing and reports are
the same code, only the runner differs (`DaggerRunner` instead of `LocalRunner`).
Functions that check return the artifacts `Directory` even when a check fails,
so CI can export the reports; `check` raises instead, for `dagger check`.

This is the face: signatures and documentation, one line of work per function. The work
is in pipeline/module_functions.py (`functions`), imported when a function runs, so the
engine lists the functions without loading the rest of the package.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore, function, object_type
from dagger import check as dagger_check

from pipeline.defaults import CONFIG_FILE, DEFAULT_KUBERNETES_VERSION

if TYPE_CHECKING:
    from pipeline import module_functions as functions
    from pipeline.config import Config
else:

    class _LoadedWhenUsed:
        """A module imported at its first use: when a function runs, not when the engine
        lists the functions."""

        def __init__(self, name: str) -> None:
            self._name = name

        def __getattr__(self, attribute: str) -> object:
            return getattr(importlib.import_module(self._name), attribute)

    functions = _LoadedWhenUsed("pipeline.module_functions")

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
AllowEmpty = Annotated[bool, Doc("pass when the repository has nothing to check")]
Offline = Annotated[
    bool, Doc("download nothing: chart dependencies must be vendored (default: from Chart.lock)")
]
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
        # Planning reads pipeline.yaml, charts and values on disk, as the CLI does.
        local = workdir / "source"
        await self.source.export(str(local))
        return local

    async def _config_only(self) -> Config:
        """pipeline.yaml alone, for functions that need the configuration but no chart."""
        from pipeline.config import load_config  # noqa: PLC0415 - loaded when a function runs
        from pipeline.runners.dagger_runner import scratch_dir  # noqa: PLC0415

        local = scratch_dir("gitops-pipeline-") / "source"
        await self.source.filter(include=[CONFIG_FILE]).export(str(local))
        return load_config(local)

    @function
    async def render(
        self, env: Environments = None, release_version: ReleaseVersion = ""
    ) -> dagger.Directory:
        """helm lint --strict and helm template for every chart and environment."""
        run = await functions.checks_run(self, env, release_version=release_version)
        return await functions.checked(run, ("lint", "render"))

    @function
    async def kubeconform(
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
    ) -> dagger.Directory:
        """Render, then validate every manifest against Kubernetes and CRD schemas."""
        run = await functions.checks_run(self, env, schema_location, crd_schemas)
        return await functions.checked(run, ("render", "kubeconform"))

    @function
    async def policy(self, env: Environments = None) -> dagger.Directory:
        """Render, then conftest test with the built-in policy pack and the repository's policy/."""
        run = await functions.checks_run(self, env)
        return await functions.checked(run, ("render", "policy"))

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
        run = await functions.checks_run(
            self,
            env,
            schema_location,
            crd_schemas,
            release_version,
            allow_empty=allow_empty,
            offline=offline,
            changed_since=changed_since,
            git_dir=git_dir,
        )
        return await functions.validate_with_certificate(run, cert)

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
        run = await functions.checks_run(
            self, env, schema_location, crd_schemas, allow_empty=allow_empty, offline=offline
        )
        return await functions.check(run)

    @function
    async def lint(self) -> dagger.Directory:
        """ruff check and ruff format --check (with the diff) per Python project."""
        return await functions.python_stage(self, "lint")

    @function
    async def typecheck(self) -> dagger.Directory:
        """mypy with each project's own configuration; returns reports."""
        return await functions.python_stage(self, "typecheck")

    @function
    async def test(
        self,
        python: Annotated[
            list[str] | None,
            Doc("Python versions to test on, e.g. 3.11 3.12 (default: the image's)"),
        ] = None,
    ) -> dagger.Directory:
        """pytest with JUnit XML and coverage per project (and Python version); returns reports."""
        return await functions.python_stage(self, "test", python)

    @function
    async def lint_env(self) -> dagger.Container:
        """The container lint runs in, prepared: `dagger call lint-env terminal`."""
        return await functions.stage_container(self, "lint")

    @function
    async def typecheck_env(self) -> dagger.Container:
        """The container typecheck runs in, with the project's dependencies installed."""
        return await functions.stage_container(self, "typecheck")

    @function
    async def test_env(self) -> dagger.Container:
        """The container the tests run in: `dagger call test-env terminal`."""
        return await functions.stage_container(self, "test")

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
        run = await functions.checks_run(
            self,
            env,
            schema_location,
            crd_schemas,
            allow_empty=allow_empty,
            offline=offline,
            changed_since=changed_since,
            git_dir=git_dir,
        )
        return await functions.ci(run)

    # --- release ---------------------------------------------------------------------------

    @function
    async def version(
        self,
        git_dir: GitDir,
        prerelease: Annotated[str, Doc("a prerelease token: X.Y.Z-TOKEN.N")] = "",
        json_output: Annotated[bool, Doc("the whole decision as JSON")] = False,
    ) -> str:
        """The next version from conventional commits since the last release tag."""
        return await functions.version(self, git_dir, prerelease, json_output=json_output)

    @function(cache="never")  # type: ignore[call-overload, untyped-decorator]
    async def changelog(
        self,
        git_dir: GitDir,
        prerelease: Annotated[str, Doc("notes for a prerelease")] = "",
        repo_url: Annotated[str, Doc("https://github.com/OWNER/REPO, to link commits")] = "",
    ) -> str:
        """Markdown release notes for the next version, breaking changes first."""
        return await functions.changelog(self, git_dir, prerelease, repo_url)

    @function
    async def build(
        self,
        git_dir: GitDir,
        image: Image = "",
        platform: Annotated[list[str] | None, Doc("platforms, e.g. linux/amd64")] = None,
    ) -> dagger.Container:
        """The image of the version the history gives, with OCI labels (first platform)."""
        return await functions.build(self, git_dir, image, platform)

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
        return await functions.publish_images(
            self, git_dir, registry_password, image, registry_username, platform
        )

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
        options = (image, registry_username, remote, prerelease)
        return await functions.release_all(
            self, git_dir, registry_password, git_token, options, platform, git_server
        )

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
        return await functions.notify(
            self,
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

    @function
    async def plan(self, env: Environments = None) -> str:
        """The chart environments, their values layering and the steps validate would run."""
        return await functions.plan(self, env)

    @function
    async def argocd(self) -> dagger.Directory:
        """The Argo CD objects pipeline.yaml's delivery: block describes (the deploy folder)."""
        return await functions.argocd(self)

    @function
    async def tools(self) -> str:
        """Every pinned tool: version, how it is installed locally, and the image it runs in.

        The image is pipeline.yaml's `tools.<name>.image` where the repository replaces it.
        """
        return await functions.tools(self)

    @function
    def policies(self) -> str:
        """The built-in policy rules: id, severity (deny fails, warn reports), title, fix."""
        return functions.policies()

    @function
    async def tool_env(
        self, tool: Annotated[str, Doc("a pinned tool: helm, kubeconform, conftest, ...")]
    ) -> dagger.Container:
        """A tool's container, source at /src: `dagger call tool-env --tool helm terminal`."""
        return await functions.tool_env(self, tool)

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
        return await functions.seal(
            self,
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
        target = (env, version, from_env, chart, path, image)
        return await functions.promote(
            self,
            git_dir,
            target,
            registry_username,
            registry_password,
            registry_service,
            pull_request=pr,
        )

    @function
    async def diff(
        self,
        base: Annotated[str, Doc("compare with the merge base of this ref and HEAD")],
        git_dir: GitDir,
        env: Environments = None,
        offline: Offline = False,
    ) -> dagger.Directory:
        """Rendered resources added, removed and changed per environment: diff.json, diff.md."""
        run = await functions.checks_run(self, env, offline=offline, git_dir=git_dir)
        return await functions.diff(run, base)

    @function
    async def schemas(
        self,
        kubernetes_version: Annotated[str, Doc("x.y.z")] = DEFAULT_KUBERNETES_VERSION,
        crd_schemas: CrdSchemas = None,
    ) -> dagger.Directory:
        """An offline kubeconform schema bundle for one Kubernetes version (kubernetes-validate)."""
        return await functions.schemas(self, kubernetes_version, crd_schemas)
