"""Runs steps in containers through dagger-io: one container per step from the pinned image."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import dagger
from dagger import dag, telemetry

from pipeline.errors import SetupError
from pipeline.labels import step_label
from pipeline.limits import STOP_GRACE_SECONDS, step_limit
from pipeline.model import CONTAINER_MOUNTS, Arg, Joined, Ref, Root, SecretRef, Step, StepResult
from pipeline.tools import PACKAGE_ROOT, Tool, get_tool

CACHE_PREFIX = "gitops-pipeline"
TIMEOUT_EXIT_CODE = 124  # GNU timeout's, as the local runner reports a stopped step
# Beyond the in-container limit and its grace period: time for the engine to hand back a
# stopped step's exit code before the query itself is given up.
ENGINE_SLACK_SECONDS = 30.0
PACKAGE_MOUNT = CONTAINER_MOUNTS[Root.PACKAGE].rsplit("/", 1)[0]


def tool_container(tool: Tool, image: str = "") -> dagger.Container:
    """A tool's image (the pinned one unless `image` replaces it), setup and cache volumes."""
    if not (image or tool.image):
        raise SetupError(
            f"{tool.name} has no pinned image: it runs on the host only "
            f"(pipeline.yaml `tools.{tool.name}.image` can name one)"
        )
    container = dag.container().from_(image or tool.image)
    for variable, value in tool.container_env:
        container = container.with_env_variable(variable, value)
    for command in tool.container_setup:
        container = container.with_exec(list(command))
    for variable, path in tool.cache_dirs:
        # Keyed by path, not tool: the Python tools share one uv cache.
        volume = dag.cache_volume(f"{CACHE_PREFIX}-{path.strip('/').replace('/', '-')}")
        container = container.with_mounted_cache(path, volume).with_env_variable(variable, path)
    if tool.runs_package:
        container = container.with_mounted_directory(
            f"{PACKAGE_MOUNT}/{PACKAGE_ROOT.name}", package_directory()
        ).with_env_variable("PYTHONPATH", PACKAGE_MOUNT)
    return container


def package_directory() -> dagger.Directory:
    """This package's own Python source, for tools that run one of its modules."""
    if in_module():
        return dag.current_module().source().directory(PACKAGE_ROOT.name)
    return dag.host().directory(str(PACKAGE_ROOT), include=["**/*.py", "data/**", "policies/**"])


def container_path(ref: Ref) -> str:
    base = CONTAINER_MOUNTS[ref.root]
    return base if ref.path == "." else f"{base}/{ref.path}"


def in_module() -> bool:
    """True inside a Dagger module function (the runtime sets DAGGER_MODULE)."""
    return bool(os.environ.get("DAGGER_MODULE"))


def scratch_dir(prefix: str) -> Path:
    """A fresh local directory that `local_directory` can hand to the engine.

    In a module only the function's scratch working directory can be loaded back as a
    `Directory`, so work happens there; a client (the CLI) may use any temporary directory.
    """
    if in_module():
        base = Path.cwd() / ".gitops-pipeline"
        base.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    return Path(tempfile.mkdtemp(prefix=prefix))


def local_directory(path: Path, names: tuple[str, ...] | None = None) -> dagger.Directory:
    """Local files as a Dagger directory: all of `path`, or only the named files and dirs.

    One `workdir`/`host().directory` call, not a `withNewFile` per file: a schema bundle
    holds hundreds of files, and a chain that long overflows dagger-io's query builder.
    """
    if names == ():
        return dag.directory()
    include = None if names is None else [p for name in names for p in (name, f"{name}/**")]
    if in_module():
        relative = path.resolve().relative_to(Path.cwd().resolve())
        return dag.current_module().workdir(str(relative), include=include)
    return dag.host().directory(str(path.resolve()), include=include)


@dataclass
class DaggerRunner:
    """Source is a Dagger directory mounted read-only; OUT lives on the local disk.

    Steps read earlier artifacts from OUT (copied in as declared inputs) and their
    declared outputs are exported back to the local OUT directory, so orchestration
    and reports are the same code for both runners.
    """

    source: dagger.Directory
    out: Path
    secrets: Mapping[str, dagger.Secret] = field(default_factory=dict)
    images: Mapping[str, str] = field(default_factory=dict)  # tool name -> image override
    services: Mapping[str, dagger.Service] = field(default_factory=dict)  # hostname -> service
    # Seconds per tool, "default" for the others (pipeline.yaml `timeouts`, --timeout).
    timeouts: Mapping[str, float] = field(default_factory=dict)

    def time_limit(self, step: Step) -> float:
        return step_limit(self.timeouts, step.tool, step.timeout)

    def _secret(self, ref: SecretRef) -> dagger.Secret:
        given = self.secrets.get(ref.source)
        if given is not None:
            return given
        scheme, _, target = ref.source.partition(":")
        return dag.secret(f"{scheme}://{target}")

    def container(self, step: Step) -> dagger.Container:
        """The prepared container of a step, without the step's command (for `terminal`)."""
        tool = get_tool(step.tool)
        base = tool_container(tool, self.images.get(tool.name, ""))
        if step.writes_source:
            container = base.with_directory(CONTAINER_MOUNTS[Root.SOURCE], self.source)
        else:
            container = base.with_mounted_directory(
                CONTAINER_MOUNTS[Root.SOURCE], self.source, read_only=True
            )
        # Setup first: its layers depend only on the image and the source, so they stay
        # cached across runs whose artifacts, environment or secrets differ.
        for command in step.container_setup:
            container = container.with_exec([self._arg(a) for a in command])
        out_inputs = tuple(r.path for r in step.inputs if r.root is Root.OUT)
        container = container.with_directory(
            CONTAINER_MOUNTS[Root.OUT], local_directory(self.out, out_inputs)
        )
        for name, value in step.env:
            container = container.with_env_variable(name, self._arg(value))
        for secret in step.secrets:
            container = container.with_secret_variable(secret.variable, self._secret(secret))
        for hostname, service in self.services.items():
            container = container.with_service_binding(hostname, service)
        return container.with_workdir(container_path(step.workdir))

    def executed(self, step: Step) -> dagger.Container:
        tool = get_tool(step.tool)
        argv0 = step.container_argv0 or tool.argv0_in_container()
        argv = [argv0, *(self._arg(a) for a in step.args)]
        if tool.container_timeout:
            # Stopped inside the container, so the step's outputs so far (pytest's partial
            # JUnit) are still exported; an image without GNU timeout is stopped from here.
            argv = [
                "timeout",
                f"--signal={step.stop_signal.removeprefix('SIG')}",
                f"--kill-after={STOP_GRACE_SECONDS:g}",
                f"{self.time_limit(step):g}",
                *argv,
            ]
        container = self.container(step)
        if step.stdin_secret is not None:
            # Dagger's stdin is plain text in the query; a secret goes in as a mounted file.
            secret_file = f"/run/secrets/{step.stdin_secret.variable}"
            container = container.with_mounted_secret(secret_file, self._secret(step.stdin_secret))
            return container.with_exec(
                argv, expect=dagger.ReturnType.ANY, redirect_stdin=secret_file
            )
        return container.with_exec(argv, expect=dagger.ReturnType.ANY, stdin=step.stdin or "")

    @classmethod
    def _arg(cls, arg: Arg) -> str:
        if isinstance(arg, Joined):
            return "".join(cls._arg(part) for part in arg.parts)
        return container_path(arg) if isinstance(arg, Ref) else arg

    async def run(self, step: Step) -> StepResult:
        # Named as the CLI's progress names it: the engine's own display reads the same way.
        with telemetry.get_tracer().start_as_current_span(str(step_label(step, ""))):
            return await self._run(step)

    async def _run(self, step: Step) -> StepResult:
        started = time.monotonic()
        executed = self.executed(step)
        limit = self.time_limit(step)
        tool = get_tool(step.tool)
        deadline = (
            limit + STOP_GRACE_SECONDS + ENGINE_SLACK_SECONDS if tool.container_timeout else limit
        )
        try:
            with anyio.move_on_after(deadline) as scope:
                exit_code = await executed.exit_code()
            if scope.cancelled_caught:
                # Giving up the query cancels the exec in the engine; nothing comes back.
                return StepResult(
                    step=step,
                    exit_code=TIMEOUT_EXIT_CODE,
                    stdout="",
                    stderr=f"timed out after {limit:g}s in the Dagger engine (the step's time "
                    "limit: pipeline.yaml `timeouts`, or --timeout); its output is lost",
                    outputs=(),
                    duration=time.monotonic() - started,
                    timed_out_after=limit,
                )
        except dagger.ExecError as error:
            # The step's own command never fails this way (any exit code is a result): a
            # command that prepares its container did (installing a tool or dependencies).
            raise SetupError(
                f"{step.name}: preparing the {step.tool} container failed: "
                f"`{' '.join(error.command)}` exited {error.exit_code}: "
                f"{_tail(error.stderr or error.stdout)}"
            ) from None
        except dagger.QueryError as error:
            image = self.images.get(step.tool) or get_tool(step.tool).image
            raise SetupError(
                f"{step.name}: the Dagger engine could not run {step.tool} in {image} "
                f"(pipeline.yaml `tools.{step.tool}.image` points it at a mirror): "
                f"{_tail(str(error))}"
            ) from None
        if step.writes_source and exit_code == 0:
            # Each step is a fresh container: later steps see the change through the source.
            self.source = executed.directory(CONTAINER_MOUNTS[Root.SOURCE])
        stdout = await executed.stdout()
        stderr = await executed.stderr()
        produced: tuple[str, ...] = ()
        if step.outputs:
            # An output may be a directory (a schema bundle): its contents come with it.
            include = [p for o in step.outputs for p in (o, f"{o}/**")]
            exported = executed.directory(CONTAINER_MOUNTS[Root.OUT]).filter(include=include)
            await exported.export(str(self.out))
            produced = tuple(o for o in step.outputs if (self.out / o).exists())
        timed_out = tool.container_timeout and _stopped_by_timeout(exit_code)
        if timed_out:
            stderr += (
                f"\ntimed out after {limit:g}s (the step's time limit: pipeline.yaml `timeouts`, "
                "or --timeout)\n"
            )
        return StepResult(
            step=step,
            exit_code=TIMEOUT_EXIT_CODE if timed_out else exit_code,
            stdout=stdout,
            stderr=stderr,
            outputs=produced,
            duration=time.monotonic() - started,
            timed_out_after=limit if timed_out else None,
        )


def _stopped_by_timeout(exit_code: int) -> bool:
    # GNU timeout: 124 when the command stopped on its signal, 128+9 when it had to be killed.
    return exit_code in {TIMEOUT_EXIT_CODE, 128 + 9}


def _tail(text: str, limit: int = 2000) -> str:
    text = text.strip()
    return text if len(text) <= limit else f"...{text[-limit:]}"
