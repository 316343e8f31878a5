"""Runs steps as subprocesses on the host: the one module that spawns processes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import Process

from pipeline.errors import ConfigError
from pipeline.model import Arg, Joined, Ref, Root, SecretRef, Step, StepResult
from pipeline.tools import PACKAGE_ROOT, require

TIMEOUT_EXIT_CODE = 124
STOP_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when a step is stopped
REDACTED = "***"


@dataclass(frozen=True)
class LocalRunner:
    """Roots are host directories; tools come from `.tools/bin`, the venv, then PATH."""

    source: Path
    out: Path
    # Seconds per tool, "default" for the others (pipeline.yaml `timeouts`, --timeout).
    timeouts: Mapping[str, float] = field(default_factory=dict)

    def time_limit(self, step: Step) -> float:
        return self.timeouts.get(step.tool, self.timeouts.get("default", step.timeout))

    def resolve(self, ref: Ref) -> Path:
        base = {Root.SOURCE: self.source, Root.OUT: self.out, Root.PACKAGE: PACKAGE_ROOT}
        return base[ref.root] / ref.path

    def _arg(self, arg: Arg) -> str:
        if isinstance(arg, Joined):
            return "".join(self._arg(part) for part in arg.parts)
        return str(self.resolve(arg)) if isinstance(arg, Ref) else arg

    async def run(self, step: Step) -> StepResult:
        binary = require(step.tool)
        argv = [str(binary), *(self._arg(a) for a in step.args)]
        secrets = {s.variable: _read_secret(s) for s in step.secrets}
        env = {**os.environ, **{k: self._arg(v) for k, v in step.env}, **secrets}
        cwd = self.resolve(step.workdir)
        started = time.monotonic()
        stdin = step.stdin.encode() if step.stdin is not None else None
        redact = list(secrets.values())
        if step.stdin_secret is not None:
            secret_input = _read_secret(step.stdin_secret)
            redact.append(secret_input)
            stdin = secret_input.encode()
        exit_code, stdout, stderr = await _spawn(argv, cwd, env, stdin, self.time_limit(step))
        return StepResult(
            step=step,
            exit_code=exit_code,
            stdout=_redact(stdout, redact),
            stderr=_redact(stderr, redact),
            outputs=tuple(o for o in step.outputs if (self.out / o).exists()),
            duration=time.monotonic() - started,
        )


async def _spawn(
    argv: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None, limit_seconds: float
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
            await _stop_group(process)
            stderr_chunks.append(
                f"\ntimed out after {limit_seconds:g}s (the step's time limit: "
                "pipeline.yaml `timeouts`, or --timeout)\n".encode()
            )
            return TIMEOUT_EXIT_CODE, _text(stdout_chunks), _text(stderr_chunks)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop_group(process)
        await process.aclose()
    return process.returncode or 0, _text(stdout_chunks), _text(stderr_chunks)


async def _stop_group(process: Process) -> None:
    """SIGTERM to the tool's process group, SIGKILL after a grace period; reap the tool.

    Also after the tool exited by itself: anything it left running in its group goes too.
    """
    _signal_group(process.pid, signal.SIGTERM)
    if process.returncode is None:
        with anyio.move_on_after(STOP_GRACE_SECONDS):
            await process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _drain(stream: anyio.abc.ByteReceiveStream | None, into: list[bytes]) -> None:
    if stream is None:
        return
    async for chunk in stream:
        into.append(chunk)


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", errors="replace")


def check_secret(secret: SecretRef) -> None:
    """Resolve a reference now, so a missing variable or file stops a run before it builds."""
    _read_secret(secret)


def _read_secret(secret: SecretRef) -> str:
    scheme, _, target = secret.source.partition(":")
    if scheme == "env":
        value = os.environ.get(target)
        if value is None:
            raise ConfigError(
                f"environment variable {target} is not set", field=f"secret {secret.variable}"
            )
        return value
    path = Path(target).expanduser()
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot read secret file: {exc.strerror}", file=path, field=f"secret {secret.variable}"
        ) from None


def _redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, REDACTED)
    return text
