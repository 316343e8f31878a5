"""`promote` and `diff` in the Dagger module: the same code, the repository in the engine.

promote's git steps run in the git container on the runner's copy of the repository (the
work tree with `--git-dir` as its .git); the overlay's new bytes are written into that copy.
The commit reaches the caller as `promote.patch` among the artifacts (`git am` applies it),
so nothing is exported over a checkout. The registry password is a `Secret`, read here only
for the registry request; a registry only the caller's machine reaches is given as
`--registry-service tcp://localhost:PORT` and asked through that tunnel.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagger

from pipeline.delivery import git_steps, registry
from pipeline.delivery.diff import RunnerFor
from pipeline.delivery.promote import PromoteRequest, Promotion, promote
from pipeline.errors import ConfigError
from pipeline.run import Run
from pipeline.runners import Runner
from pipeline.runners.dagger_runner import DaggerRunner, local_directory


async def credentials(username: str, password: dagger.Secret | None) -> registry.Credentials | None:
    if password is None:
        return None
    if not username:
        raise ConfigError("a password needs --registry-username", field="registry-username")
    return registry.Credentials(username, await password.plaintext())


async def tunnel_endpoint(service: dagger.Service | None) -> str | None:
    """host:port where the module reaches a registry only the caller's machine reaches."""
    if service is None:
        return None
    await service.start()
    return await service.endpoint()


async def promote_in_engine(
    run: Run, runner: DaggerRunner, request: PromoteRequest, identity: git_steps.Identity
) -> Promotion:
    async def write(relative: str, data: bytes) -> None:
        runner.source = runner.source.with_new_file(relative, data.decode("utf-8"))
        (run.source / relative).write_bytes(data)  # the local copy planning reads, kept equal

    return await promote(run, replace(request, identity=identity), write)


def runner_for(images: dict[str, str]) -> RunnerFor:
    """diff's sides: a runner whose source is a local folder of the module's scratch space."""

    def make(source: Path, out: Path) -> Runner:
        return DaggerRunner(source=local_directory(source), out=out, images=images)

    return make
