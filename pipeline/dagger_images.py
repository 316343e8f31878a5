"""The release's image backend in Dagger: `Directory.docker_build` and `Container.publish`.

The local backend drives the docker CLI through the runner; inside the Dagger
module there is no Docker daemon, so the engine builds (one container per
platform) and publishes (a multi-platform index when several are built).
Credentials only ever travel as a `dagger.Secret` through `with_registry_auth`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import anyio
import dagger

from pipeline import publish
from pipeline.release import ReleaseOptions
from pipeline.stages import docker

Sleep = Callable[[float], Awaitable[None]]


def with_labels(labels: Mapping[str, str]) -> Callable[[dagger.Container], dagger.Container]:
    def apply(container: dagger.Container) -> dagger.Container:
        for name, value in sorted(labels.items()):
            container = container.with_label(name, value)
        return container

    return apply


@dataclass
class DaggerImages:
    source: dagger.Directory
    options: ReleaseOptions
    password: dagger.Secret | None = None
    platforms: Sequence[str] = ()
    retries: int = 3
    backoff: float = 1.0
    sleep: Sleep = anyio.sleep
    built: dict[str, list[dagger.Container]] = field(default_factory=dict)

    def containers(self, labels: Mapping[str, str]) -> list[dagger.Container]:
        context = PurePosixPath(self.options.context)
        dockerfile = PurePosixPath(self.options.dockerfile)
        relative = (
            str(dockerfile.relative_to(context))
            if dockerfile.is_relative_to(context)
            else str(dockerfile)
        )
        build_args = [dagger.BuildArg(name=k, value=v) for k, v in self.options.build_args]
        directory = self.source.directory(str(context))
        platforms: Sequence[str | None] = list(self.platforms) or [None]
        return [
            directory.docker_build(
                dockerfile=relative,
                platform=dagger.Platform(p) if p else None,
                build_args=build_args or None,
            ).with_(with_labels(labels))
            for p in platforms
        ]

    async def check_access(self) -> None:
        # The engine authenticates only when it pushes; a wrong token fails at publish, and a
        # rerun of the release on the tagged commit republishes.
        return

    async def build(self, *, labels: Mapping[str, str], revision: str) -> str:
        variants = self.containers(labels)
        for variant in variants:
            await variant.sync()  # build now: a broken Dockerfile fails before any tag is pushed
        key = f"build-{revision[:7]}"
        self.built[key] = variants
        return key

    async def push(self, built: str, *, tags: Sequence[str]) -> list[publish.PushedRef]:
        image = self.options.image
        registry = publish.registry_of(image)
        first, *others = self.built[built]
        if self.password is not None:
            username = self.options.registry_username or ""
            first = first.with_registry_auth(registry, username, self.password)
        pushed = [
            await self._publish_one(first, others, f"{image}:{tag}", registry) for tag in tags
        ]
        if len({p.digest for p in pushed}) != 1:
            raise publish.DigestMismatchError({p.ref: p.digest for p in pushed})
        return pushed

    async def _publish_one(
        self,
        container: dagger.Container,
        variants: list[dagger.Container],
        address: str,
        registry: str,
    ) -> publish.PushedRef:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                reference = await container.publish(address, platform_variants=variants or None)
            except dagger.QueryError as error:
                last = docker.tail(str(error), 5)
                kind = docker.classify(str(error))
                if kind == "auth":
                    raise publish.RegistryAuthError(
                        registry, self.options.registry_username, last
                    ) from None
                if kind != "transient":
                    raise publish.PublishError(f"publishing {address} failed: {last}") from None
                if attempt < self.retries:
                    await self.sleep(self.backoff * 2**attempt)
                continue
            return publish.PushedRef(address, reference.rpartition("@")[2])
        raise publish.RegistryUnavailableError(registry, f"push {address}", self.retries + 1, last)
