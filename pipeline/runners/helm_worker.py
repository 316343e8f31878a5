"""`helm template` and `helm lint` run by resident helm processes instead of one process each.

A helm process spends about 45 of its ~50 ms starting up (the initialisers of the Kubernetes
client libraries it links), and validate runs two per chart and environment. The worker
(tools/helm-worker, built with the pinned helm module and installed beside helm) runs each
invocation through helm's own command tree, one after another, writing its stdout and
stderr to files we name: the same output and exit code as the helm binary, for about a
fifth of the time. Anything else (an invocation the worker refuses, a worker that died, one
that is missing or built with another helm) falls back to starting helm, so a step's result
never depends on whether a worker ran it.

The pool starts at most `size` workers, on demand; a worker serves `REQUESTS_PER_WORKER`
invocations and is then replaced (helm's command tree keeps a little state per invocation).
A worker that runs out of a step's time limit is stopped with its process group, as a helm
process would be. Workers end when their input closes: when the pool closes, or when this
process dies.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from pipeline.limits import TIMEOUT_EXIT_CODE, timed_out_note
from pipeline.model import Step
from pipeline.runners.process_group import stop_group
from pipeline.tools import find_binary, get_tool, go_dependency_version

WORKER = "helm-worker"
PROTOCOL = 1
REQUESTS_PER_WORKER = 200
# Workers that died in a request before the pool stops starting them: helm's own panic on
# one chart is reproduced by helm itself, a worker that cannot run at all is given up.
DEATHS_ALLOWED = 3
DISABLE_ENV = "GITOPS_PIPELINE_HELM_WORKER"  # "0": every helm step starts helm
SERVED = frozenset({"template", "lint"})
_OFF = frozenset({"0", "false", "no", "off"})
_MAX_LINE = 1 << 20
_START_SECONDS = 10.0  # the worker's greeting; helm itself starts in well under a second


def serves(step: Step) -> bool:
    """Steps whose whole input is argv and files: no environment, stdin or secret of their own."""
    return (
        step.tool == "helm"
        and bool(step.args)
        and step.args[0] in SERVED
        and not step.env
        and not step.secrets
        and step.stdin is None
        and step.stdin_secret is None
    )


def _switched_off() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in _OFF


def find_worker(helm: Path) -> Path | None:
    """The worker installed beside this helm binary, unless switched off."""
    if _switched_off():
        return None
    worker = helm.parent / WORKER
    return worker if worker.is_file() and os.access(worker, os.X_OK) else None


def status() -> str:
    """One line for `gitops-pipeline tools`: whether validate runs helm through a worker."""
    helm = get_tool("helm")
    binary = find_binary(helm)
    if binary is None:
        return f"{WORKER}: not used (no helm)"
    if _switched_off():
        return f"{WORKER}: switched off ({DISABLE_ENV}); every helm step starts helm"
    worker = find_worker(binary)
    if worker is None:
        return (
            f"{WORKER}: not installed beside {binary}; every helm step starts helm "
            "(bash ci/install-tools.sh builds it with Go)"
        )
    built = go_dependency_version(worker, "helm.sh/helm/v4")
    if built != helm.version:
        return (
            f"{WORKER}: {worker} is built with helm {built or 'unknown'}, not {helm.version}: "
            "not used; rebuild it with bash ci/install-tools.sh"
        )
    return f"{WORKER}: yes ({worker}, helm {built}): helm template and lint run in it"


def pool(size: int) -> HelmWorkers | None:
    """Workers for the helm a run uses, when one is installed beside it; started on demand."""
    helm = get_tool("helm")
    binary = find_binary(helm)
    worker = find_worker(binary) if binary is not None else None
    return HelmWorkers(worker, f"v{helm.version}", size) if worker is not None else None


@dataclass
class _Worker:
    process: Process
    answers: BufferedByteReceiveStream
    served: int = 0


class HelmWorkers:
    """A pool of resident helm processes for one run."""

    def __init__(self, worker: Path, helm_version: str, size: int) -> None:
        self.worker = worker
        self.helm_version = helm_version  # the pinned helm's; a worker of another is not used
        self._slots = anyio.Semaphore(max(1, size))
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._scratch: Path | None = None
        self._names = itertools.count()
        self._deaths = 0
        self.started = 0  # workers started, and invocations they answered: for reports, tests
        self.answered = 0
        self.unusable: str | None = None  # why the workers are not used, once known

    async def run(
        self,
        args: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        limit_seconds: float,
        stop: signal.Signals,
    ) -> tuple[int, str, str] | None:
        """helm's exit code, stdout and stderr for `args`, or None: start helm instead.

        When the time limit stops it: as for a helm process, exit code 124 and what it had
        written, followed by the time limit's note.
        """
        if self.unusable is not None:
            return None
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._start(env)
            if worker is None:
                return None
            name = next(self._names)
            assert self._scratch is not None  # noqa: S101 - made with the first worker
            stdout_file = self._scratch / f"{name}.out"
            stderr_file = self._scratch / f"{name}.err"
            request = {
                "args": list(args),
                "cwd": str(cwd),
                "stdout": str(stdout_file),
                "stderr": str(stderr_file),
            }
            try:
                exit_code = await self._ask(worker, request, limit_seconds, stop)
                if exit_code is _Stopped.TIMED_OUT:
                    stderr = _read(stderr_file) + timed_out_note(limit_seconds)
                    return TIMEOUT_EXIT_CODE, _read(stdout_file), stderr
                if exit_code is None:
                    await self._retire(worker, stop)
                    self._deaths += 1
                    if self._deaths >= DEATHS_ALLOWED:
                        self.unusable = f"{self.worker} stopped answering {self._deaths} times"
                    return None  # died or refused: helm itself gives the true result
                worker.served += 1
                self.answered += 1
                if worker.served >= REQUESTS_PER_WORKER:
                    await self._retire(worker, stop)
                else:
                    self._idle.append(worker)
                return exit_code, _read(stdout_file), _read(stderr_file)
            finally:
                for file in (stdout_file, stderr_file):
                    file.unlink(missing_ok=True)

    async def _ask(
        self, worker: _Worker, request: Mapping[str, object], limit: float, stop: signal.Signals
    ) -> int | _Stopped | None:
        """The invocation's exit code; TIMED_OUT; None when the worker died or refused it."""
        stdin = worker.process.stdin
        assert stdin is not None  # noqa: S101 - opened with a pipe
        try:
            with anyio.move_on_after(limit) as scope:
                await stdin.send(json.dumps(request).encode() + b"\n")
                line = await worker.answers.receive_until(b"\n", _MAX_LINE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead, OSError):
            return None
        except BaseException:
            # Cancelled from outside (an interrupt, a failed sibling): the invocation is
            # stopped with its worker, as its helm process would be.
            with anyio.CancelScope(shield=True):
                await self._retire(worker, stop)
            raise
        if scope.cancelled_caught:
            with anyio.CancelScope(shield=True):
                await self._retire(worker, stop)
            return _Stopped.TIMED_OUT
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        exit_code = answer.get("exit") if isinstance(answer, dict) else None
        return exit_code if isinstance(exit_code, int) else None

    async def _start(self, env: Mapping[str, str]) -> _Worker | None:
        try:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="gitops-pipeline-helm-"))
            process = await anyio.open_process(
                [str(self.worker)],
                env=dict(env),
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self.unusable = f"{self.worker} did not start: {exc}"
            return None
        assert process.stdout is not None  # noqa: S101 - opened with a pipe
        worker = _Worker(process, BufferedByteReceiveStream(process.stdout))
        self._all.append(worker)
        self.started += 1
        greeting: object = None
        with anyio.move_on_after(_START_SECONDS):
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead, ValueError):
                greeting = json.loads(await worker.answers.receive_until(b"\n", _MAX_LINE))
        expected = {"protocol": PROTOCOL, "helm": self.helm_version}
        if not isinstance(greeting, dict) or any(greeting.get(k) != v for k, v in expected.items()):
            self.unusable = f"{self.worker} said {greeting!r}, expected {expected}"
            await self._retire(worker, signal.SIGTERM)
            return None
        return worker

    async def _retire(self, worker: _Worker, stop: signal.Signals, patience: float = 0) -> None:
        """End the worker's input, give it `patience` seconds to exit by itself, then stop
        its process group as a helm process's is stopped."""
        with contextlib.suppress(ValueError):
            self._all.remove(worker)
        stdin = worker.process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stdin.aclose()
        if patience:
            with anyio.move_on_after(patience):
                await worker.process.wait()
        await stop_group(worker.process, stop)
        await worker.process.aclose()

    async def aclose(self) -> None:
        """Let every worker finish and go; remove the pool's scratch files."""
        with anyio.CancelScope(shield=True):
            self._idle.clear()
            for worker in list(self._all):
                # End of input is the worker's signal to exit; a stop signal if it lingers.
                await self._retire(worker, signal.SIGTERM, patience=2)
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)


class _Stopped(Enum):
    TIMED_OUT = "timed out"


def _read(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""
