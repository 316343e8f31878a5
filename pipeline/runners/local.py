"""Runs steps as subprocesses on the host: the one module that spawns tool processes.

(`helm template` and `helm lint` go to resident helm processes when a worker is installed:
runners/helm_worker.py, which keeps them.)"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import Process

from pipeline.limits import STOP_GRACE_SECONDS, TIMEOUT_EXIT_CODE, step_limit, timed_out_note
from pipeline.model import Arg, Joined, Ref, Root, SecretRef, Step, StepResult
from pipeline.references import read_reference_text
from pipeline.runners import helm_worker
from pipeline.runners.by_file import run_by_file
from pipeline.runners.process_group import stop_group
from pipeline.step_cache import StepCache
from pipeline.tools import PACKAGE_ROOT, UV_CACHE, get_tool, require

__all__ = ["REDACTED", "TIMEOUT_EXIT_CODE", "LocalRunner", "check_secret"]
REDACTED = "***"


@dataclass(frozen=True)
class LocalRunner:
    """Roots are host directories; tools come from `.tools/bin`, the venv, then PATH."""

    source: Path
    out: Path
    # Seconds per tool, "default" for the others (pipeline.yaml `timeouts`, --timeout).
    timeouts: Mapping[str, float] = field(default_factory=dict)
    # Replays passed steps whose inputs did not change (None: every step runs).
    cache: StepCache | None = None
    # Where tools keep their own caches (ruff's, mypy's), as a container's cache volume: never
    # the repository, which a check must leave as it found it. None: the tools' defaults.
    tool_caches: Path | None = None
    # Resident helm processes for `helm template`/`helm lint` (runners/helm_worker.py);
    # None: every helm step starts helm. Same results either way, in a fifth of the time.
    helm_workers: helm_worker.HelmWorkers | None = None
    # Each tool's binary, checked against its pin once per runner (one run), not per step.
    _binaries: dict[str, Path] = field(default_factory=dict, init=False, repr=False, compare=False)

    def time_limit(self, step: Step) -> float:
        return step_limit(self.timeouts, step.tool, step.timeout)

    def resolve(self, ref: Ref) -> Path:
        base = {Root.SOURCE: self.source, Root.OUT: self.out, Root.PACKAGE: PACKAGE_ROOT}
        return base[ref.root] / ref.path

    def _tool_cache_env(self, tool_name: str) -> dict[str, str]:
        """The tool's cache variables, unless the user's environment sets them.

        One cache per tool, shared by every repository, as a Dagger cache volume is: mypy's
        typeshed analysis is the same for all of them, and each entry is checked against
        its source before it is used.
        """
        if self.tool_caches is None:
            return {}
        return {
            variable: str(self.tool_caches / tool_name)
            for variable, _ in get_tool(tool_name).cache_dirs
            if variable not in os.environ and variable != UV_CACHE[0]
        }

    def _arg(self, arg: Arg) -> str:
        if isinstance(arg, Joined):
            return "".join(self._arg(part) for part in arg.parts)
        return str(self.resolve(arg)) if isinstance(arg, Ref) else arg

    def binary(self, tool_name: str) -> Path:
        """`require`d once per tool by this runner; a missing tool is looked for again."""
        found = self._binaries.get(tool_name)
        if found is None:
            found = self._binaries[tool_name] = require(tool_name)
        return found

    async def run(self, step: Step) -> StepResult:
        binary = self.binary(step.tool)
        if self.cache is None or not step.cacheable or step.secrets or step.stdin_secret:
            return await self._run(step, binary)
        key, hit = self.cache.lookup(step, self.resolve, binary, self.out)  # see its note
        if hit is not None:
            return hit
        if step.by_file is None:
            result = await self._run(step, binary)
        else:
            result = await run_by_file(
                step,
                step.by_file,
                self.cache,
                resolve=self.resolve,
                binary=binary,
                run=lambda part: self._run(part, binary),
            )
        await anyio.to_thread.run_sync(self.cache.store, key, result, self.out)
        return result

    async def _run(self, step: Step, binary: Path) -> StepResult:
        argv = [str(binary), *(self._arg(a) for a in step.args)]
        secrets = {s.variable: _read_secret(s) for s in step.secrets}
        env = {
            **os.environ,
            **self._tool_cache_env(step.tool),
            **{k: self._arg(v) for k, v in step.env},
            **secrets,
        }
        cwd = self.resolve(step.workdir)
        started = time.monotonic()
        stdin = step.stdin.encode() if step.stdin is not None else None
        redact = list(secrets.values())
        if step.stdin_secret is not None:
            secret_input = _read_secret(step.stdin_secret)
            redact.append(secret_input)
            stdin = secret_input.encode()
        limit = self.time_limit(step)
        stop = signal.Signals[step.stop_signal]
        done = None
        if self.helm_workers is not None and helm_worker.serves(step):
            done = await self.helm_workers.run(argv[1:], cwd, env, limit, stop)
        if done is None:
            done = await _spawn(argv, cwd, env, stdin, limit_seconds=limit, stop=stop)
        exit_code, stdout, stderr = done
        return StepResult(
            step=step,
            exit_code=exit_code,
            stdout=_redact(stdout, redact),
            stderr=_redact(stderr, redact),
            outputs=tuple(o for o in step.outputs if (self.out / o).exists()),
            duration=time.monotonic() - started,
            timed_out_after=limit if exit_code == TIMEOUT_EXIT_CODE else None,
        )


async def _spawn(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdin: bytes | None,
    *,
    limit_seconds: float,
    stop: signal.Signals,
) -> tuple[int, str, str]:
    stdout_chunks: list[bytes] = []
    stderr_chunks: list[bytes] = []
    # A session of its own: the tool and everything it starts form one process group, which
    # a time limit, an interrupt or a cancelled run stops as a whole (no orphans).
    process: Process = await anyio.open_process(argv, cwd=cwd, env=env, start_new_session=True)
    try:
        with anyio.move_on_after(limit_seconds) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, process.stdout, stdout_chunks)
                tg.start_soon(_drain, process.stderr, stderr_chunks)
                if process.stdin is not None:
                    if stdin is not None:
                        await process.stdin.send(stdin)
                    await process.stdin.aclose()
                await process.wait()
        if scope.cancelled_caught:
            # Still draining: what the tool writes while it stops (pytest's report of the
            # test it was in) is part of its output.
            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_drain_while_stopping, process.stdout, stdout_chunks)
                    tg.start_soon(_drain_while_stopping, process.stderr, stderr_chunks)
                    await stop_group(process, stop)
            stderr_chunks.append(timed_out_note(limit_seconds).encode())
            return TIMEOUT_EXIT_CODE, _text(stdout_chunks), _text(stderr_chunks)
    finally:
        with anyio.CancelScope(shield=True):
            await stop_group(process, stop)
        await process.aclose()
    return process.returncode or 0, _text(stdout_chunks), _text(stderr_chunks)


async def _drain(stream: anyio.abc.ByteReceiveStream | None, into: list[bytes]) -> None:
    if stream is None:
        return
    async for chunk in stream:
        into.append(chunk)


async def _drain_while_stopping(
    stream: anyio.abc.ByteReceiveStream | None, into: list[bytes]
) -> None:
    # Bounded: a process outside the group may hold the pipe open after the group is gone.
    with anyio.move_on_after(STOP_GRACE_SECONDS + 1):
        await _drain(stream, into)


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", errors="replace")


def check_secret(secret: SecretRef) -> None:
    """Resolve a reference now, so a missing variable or file stops a run before it builds."""
    _read_secret(secret)


def _read_secret(secret: SecretRef) -> str:
    return read_reference_text(secret.source, f"secret {secret.variable}")


def _redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, REDACTED)
    return text
