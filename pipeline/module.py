"""The Dagger module: the same verbs as the CLI, each tool in its pinned container.

`dagger call validate export --path artifacts` runs what
`gitops-pipeline validate` runs on a laptop; planning, parsing and reports are
the same code, only the runner differs (`DaggerRunner` instead of `LocalRunner`).
Functions that check return the artifacts `Directory` even when a check fails,
so CI can export the reports; `check` raises instead, for `dagger check`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore, dag, function, object_type

from pipeline.config import DEFAULT_KUBERNETES_VERSION, load_config
from pipeline.errors import ConfigError
from pipeline.plan import plan_text
from pipeline.run import Run
from pipeline.runners.dagger_runner import DaggerRunner, local_directory, tool_container
from pipeline.tools import TOOLS, get_tool
from pipeline.validate import ALL_CHECKS, SCHEMA_CACHE, Outcome, validate

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
ReleaseVersion = Annotated[str, Doc("release version written to .version and .image-tag")]


@object_type
class Pipeline:
    """CI for a GitOps repository: Helm per environment, kubeconform, OPA policies, reports."""

    source: Annotated[
        dagger.Directory,
        DefaultPath("/"),
        Ignore(SOURCE_IGNORE),
        Doc("the repository: charts/, policy/, pipeline.yaml"),
    ]

    async def _local_source(self, workdir: Path) -> Path:
        # Planning reads pipeline.yaml, charts and values on disk, as the CLI does; the
        # tools themselves get `source` mounted in their containers.
        local = workdir / "source"
        await self.source.export(str(local))
        return local

    async def _outcome(
        self,
        checks: Collection[str],
        env: list[str] | None,
        schema_location: list[str] | None,
        crd_schemas: dagger.Directory | None,
        release_version: str,
    ) -> tuple[Outcome, Path]:
        workdir = Path(tempfile.mkdtemp(prefix="gitops-pipeline-"))
        crd_paths: tuple[Path, ...] = ()
        if crd_schemas is not None:
            await crd_schemas.export(str(workdir / "crds"))
            crd_paths = (workdir / "crds",)
        config = load_config(await self._local_source(workdir))
        out = workdir / "artifacts"
        run = Run(
            config=config,
            runner=DaggerRunner(source=self.source, out=out),
            out=out,
            environments=tuple(env or ()),
            schema_locations=tuple(schema_location or ()),
            crd_schemas=crd_paths,
            release_version=release_version or None,
        )
        return await validate(run, checks), out

    async def _artifacts(
        self,
        checks: Collection[str],
        env: list[str] | None,
        schema_location: list[str] | None,
        crd_schemas: dagger.Directory | None,
        release_version: str,
    ) -> dagger.Directory:
        _, out = await self._outcome(checks, env, schema_location, crd_schemas, release_version)
        return artifacts_directory(out)

    @function
    async def render(
        self,
        env: Environments = None,
        release_version: ReleaseVersion = "",
    ) -> dagger.Directory:
        """helm lint --strict and helm template for every chart and environment."""
        return await self._artifacts(("lint", "render"), env, None, None, release_version)

    @function
    async def kubeconform(
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
    ) -> dagger.Directory:
        """Render, then validate every manifest against Kubernetes and CRD schemas."""
        return await self._artifacts(
            ("render", "kubeconform"), env, schema_location, crd_schemas, ""
        )

    @function
    async def policy(self, env: Environments = None) -> dagger.Directory:
        """Render, then run conftest test with policy/ and conftest verify on the policies."""
        return await self._artifacts(("render", "policy"), env, None, None, "")

    @function
    async def validate(
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
        release_version: ReleaseVersion = "",
    ) -> dagger.Directory:
        """Lint, render every environment, kubeconform and policies; returns every report.

        The directory is returned even when a check fails; its summary.json says so.
        """
        return await self._artifacts(ALL_CHECKS, env, schema_location, crd_schemas, release_version)

    @function
    async def check(
        self,
        env: Environments = None,
        schema_location: SchemaLocations = None,
        crd_schemas: CrdSchemas = None,
    ) -> str:
        """Like validate, but fails when any check fails; returns the Markdown summary."""
        outcome, out = await self._outcome(ALL_CHECKS, env, schema_location, crd_schemas, "")
        summary = (out / "summary.md").read_text(encoding="utf-8")
        if outcome.error is not None:
            raise outcome.error
        if outcome.status.failed:
            raise ConfigError(f"validation {outcome.status.value}:\n{summary}")
        return summary

    @function
    async def plan(self, env: Environments = None) -> str:
        """The chart environments, their values layering and the steps validate would run."""
        workdir = Path(tempfile.mkdtemp(prefix="gitops-pipeline-"))
        config = load_config(await self._local_source(workdir))
        return await plan_text(config, tuple(env or ()))

    @function
    def tools(self) -> str:
        """Every pinned tool: version, how it is installed locally, and its container image."""
        return "\n".join(
            f"{t.name}\t{t.version}\t{t.source.value}:{t.package}\t{t.image}"
            for t in TOOLS.values()
        )

    @function
    def tool_env(
        self, tool: Annotated[str, Doc("a pinned tool: helm, kubeconform, conftest, ...")]
    ) -> dagger.Container:
        """A tool's container, source at /src: `dagger call tool-env --tool helm terminal`."""
        return (
            tool_container(get_tool(tool))
            .with_mounted_directory("/src", self.source)
            .with_workdir("/src")
        )

    @function
    async def schemas(
        self,
        kubernetes_version: Annotated[str, Doc("x.y.z")] = DEFAULT_KUBERNETES_VERSION,
        crd_schemas: CrdSchemas = None,
    ) -> dagger.Directory:
        """An offline kubeconform schema bundle for one Kubernetes version (kubernetes-validate)."""
        from pipeline.schemas import write_schema_bundle  # noqa: PLC0415

        workdir = Path(tempfile.mkdtemp(prefix="gitops-pipeline-schemas-"))
        crd_dirs: list[Path] = []
        if crd_schemas is not None:
            await crd_schemas.export(str(workdir / "crds-in"))
            crd_dirs.append(workdir / "crds-in")
        write_schema_bundle(workdir / "bundle", kubernetes_version, crd_dirs)
        return local_directory(workdir / "bundle")


def artifacts_directory(out: Path) -> dagger.Directory:
    """The artifacts as a Dagger directory, without the schema cache (rebuilt on demand)."""
    if not out.is_dir():
        return dag.directory()
    cache_root = SCHEMA_CACHE.split("/", 1)[0]
    names = tuple(path.name for path in sorted(out.iterdir()) if path.name != cache_root)
    return local_directory(out, names)
