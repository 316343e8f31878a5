"""The context every stage receives: configuration, a runner and where artifacts go."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio

from pipeline.config import Config
from pipeline.runners import Runner
from pipeline.step_cache import StepCache

T = TypeVar("T")


def default_concurrency() -> int:
    # Tool processes are mostly CPU-bound; one more than the cores hides process start-up.
    return (os.cpu_count() or 2) + 1


@dataclass(frozen=True)
class Run:
    config: Config
    runner: Runner
    out: Path
    environments: tuple[str, ...] = ()
    schema_locations: tuple[str, ...] = ()  # overrides kubeconform.schema_locations when given
    crd_schemas: tuple[Path, ...] = ()  # added to kubeconform.crd_schemas
    release_version: str | None = None
    python_versions: tuple[str, ...] = ()  # a test matrix; needs a runner that can provide them
    # Where host runs keep what is worth keeping between runs (the offline schema bundle,
    # charts' dependencies built from their Chart.lock). None when steps run elsewhere
    # (containers), which then get what they need through OUT.
    schema_cache: Path | None = None
    concurrency: int = field(default_factory=default_concurrency)
    # A repository with nothing to check passes instead of failing (`--allow-empty`).
    allow_empty: bool = False
    # Nothing is downloaded (`--offline`): a chart dependency must be vendored in its charts/.
    offline: bool = False
    # Seconds per tool, "default" and "test-case" (pipeline.limits); the runner enforces the
    # step limits, stages read the per-test one.
    timeouts: Mapping[str, float] = field(default_factory=dict)
    # Steps run on this host (the local runner), whatever wraps the runner: this interpreter
    # runs the tests, and secret references resolve here.
    on_host: bool = False
    # Only the charts a change since this git ref touched (`--changed-since`); None: all.
    changed_since: str | None = None
    # The sealed-secrets certificate the secrets check holds SealedSecrets to (`--cert`).
    secrets_certificate: Path | None = None
    # Remembers in-process work between runs as the step cache does tools' (the secrets
    # scan, per file); None: always done again (`--no-cache`, or steps run elsewhere).
    memo: StepCache | None = None

    @property
    def source(self) -> Path:
        return self.config.source


async def gather(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run jobs concurrently, at most `limit` at once; results in the order given."""
    results: list[T | None] = [None] * len(jobs)
    limiter = anyio.CapacityLimiter(max(1, limit))

    async def one(index: int, job: Callable[[], Awaitable[T]]) -> None:
        async with limiter:
            results[index] = await job()

    try:
        async with anyio.create_task_group() as group:
            for index, job in enumerate(jobs):
                group.start_soon(one, index, job)
    except BaseExceptionGroup as group_error:
        # A job that could not start (tool missing, bad secret) must surface as itself, so
        # the CLI maps it to its exit code instead of printing a task-group traceback.
        first = first_leaf(group_error)
        raise first from None
    return results  # type: ignore[return-value]


def first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def default_cache_dir() -> Path:
    override = os.environ.get("GITOPS_PIPELINE_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitops-pipeline"
