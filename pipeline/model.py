"""Plain data shared by every stage and runner.

A ``Step`` is one tool invocation described as data: which pinned tool, which
argv, which files it reads and writes. Paths inside argv are ``Ref`` values
relative to a named root, so the same step runs on the host (roots are host
directories) and in a container (roots are mount points).
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pipeline.limits import DEFAULT_STEP_SECONDS


class Root(enum.Enum):
    SOURCE = "source"  # the repository under test; read-only
    OUT = "out"  # the artifacts directory; steps read earlier artifacts and write new ones
    PACKAGE = "package"  # gitops-pipeline's own files (the built-in policies); read-only


CONTAINER_MOUNTS: Mapping[Root, str] = {
    Root.SOURCE: "/src",
    Root.OUT: "/out",
    Root.PACKAGE: "/opt/gitops-pipeline/pipeline",
}


@dataclass(frozen=True)
class Ref:
    """A path relative to one of the roots, resolved by the runner."""

    root: Root
    path: str = "."

    def __post_init__(self) -> None:
        pure = PurePosixPath(self.path)
        if pure.is_absolute() or ".." in pure.parts:
            msg = f"step paths must stay inside their root, got {self.path!r}"
            raise ValueError(msg)

    def __str__(self) -> str:
        return (
            f"${self.root.value.upper()}/{self.path}"
            if self.path != "."
            else f"${self.root.value.upper()}"
        )


def src(path: str = ".") -> Ref:
    return Ref(Root.SOURCE, path)


def out(path: str = ".") -> Ref:
    return Ref(Root.OUT, path)


def package(path: str = ".") -> Ref:
    return Ref(Root.PACKAGE, path)


@dataclass(frozen=True)
class Joined:
    """One argv element built from text and paths, such as `--cov-report=xml:$OUT/c.xml`."""

    parts: tuple[str | Ref, ...]

    def __str__(self) -> str:
        return "".join(str(p) for p in self.parts)


def joined(*parts: str | Ref) -> Joined:
    return Joined(parts)


Arg = str | Ref | Joined


@dataclass(frozen=True)
class SecretRef:
    """A secret by reference: the variable a step sees and where the value comes from.

    ``source`` uses Dagger's provider syntax (``env:NAME`` or ``file:PATH``). The
    plaintext is looked up by the runner at the last moment and never stored here.
    """

    variable: str
    source: str

    def __post_init__(self) -> None:
        scheme, _, rest = self.source.partition(":")
        if scheme not in {"env", "file"} or not rest:
            msg = f"secret source must be env:NAME or file:PATH, got scheme {scheme!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class ByFile:
    """A step whose output is a verdict per input file, each independent of the others
    (kubeconform, conftest test): a runner that remembers verdicts may run it over only the
    files whose verdicts it does not know (pipeline.runners.by_file)."""

    output: str  # how to split and join its stdout: a name in pipeline.stages.by_file.FORMATS
    files: tuple[Ref, ...]  # those files, each among the step's args and inputs


@dataclass(frozen=True)
class Step:
    """One invocation of one pinned tool."""

    name: str
    tool: str
    args: tuple[Arg, ...]
    workdir: Ref = field(default_factory=src)
    env: tuple[tuple[str, Arg], ...] = ()
    secrets: tuple[SecretRef, ...] = ()
    inputs: tuple[Ref, ...] = ()
    outputs: tuple[str, ...] = ()  # files the step writes, relative to the OUT root
    stdin: str | None = None
    stdin_secret: SecretRef | None = None  # e.g. `docker login --password-stdin`
    timeout: float = DEFAULT_STEP_SECONDS
    # Sent to the tool's process group when it runs out of time, SIGKILL after a grace period:
    # pytest stops on SIGINT the way it does on Ctrl-C, writing the report of what finished.
    stop_signal: str = "SIGTERM"
    # Containers only: commands that prepare the step's container (install the project's
    # dependencies, a Python version) and the binary to run there. The host is prepared once,
    # by ci/local.sh and ci/install-tools.sh, so the local runner ignores both.
    container_setup: tuple[tuple[Arg, ...], ...] = ()
    container_argv0: str | None = None
    # The step changes the source (a git tag): containers carry the change to later steps.
    writes_source: bool = False
    # Its declared inputs are all it reads, and it reads nothing from the network: the local
    # runner may replay a passed result of the same inputs (pipeline.step_cache).
    cacheable: bool = False
    # Its stdout is a verdict per file: the local runner checks only files it has no verdict
    # for (each verdict remembered from a run that passed), and joins the rest in.
    by_file: ByFile | None = None
    # Files inside its input folders that cannot change its result (another environment's
    # values overlay, which helm only exposes through .Files that no template reads): the
    # step cache leaves them out of its key, so editing one does not rerun this step.
    cache_ignores: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class StepResult:
    step: Step
    exit_code: int
    stdout: str
    stderr: str
    outputs: tuple[str, ...]  # declared outputs that exist after the run
    duration: float
    timed_out_after: float | None = None  # the limit that stopped the step, when one did
    cached: bool = False  # replayed from the step cache, not run

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def signal_name(self) -> str | None:
        """The signal that ended the tool ("SIGKILL"), or None when it exited by itself.

        None as well when the step's time limit stopped it: that is reported as a timeout.
        """
        if self.timed_out_after is not None:
            return None
        return signal_of_exit_code(self.exit_code)


# A shell or a container runtime reports a process that signal N ended as exit code 128+N;
# Python's process API (the local runner) reports it as -N.
_SHELL_SIGNAL_BASE = 128


def signal_of_exit_code(exit_code: int) -> str | None:
    """The name of the signal an exit code reports: SIGKILL for -9 and for 137; else None.

    128+N is only a convention, and a tool may exit 129 by itself (git does on a usage error):
    the steps here run fixed argv, so such an exit is read as the signal it would mean.
    """
    if exit_code < 0:
        number = -exit_code
    elif exit_code > _SHELL_SIGNAL_BASE:
        number = exit_code - _SHELL_SIGNAL_BASE
    else:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        # Real-time signals between SIGRTMIN and SIGRTMAX have no name; -N is a signal anyway.
        return f"signal {number}" if exit_code < 0 else None


def killed_by_signal(result: StepResult) -> str | None:
    """'helm was killed by SIGKILL (exit code -9)…' when a signal ended the step's tool.

    A killed tool's output stops wherever the signal caught it, so callers report this as an
    error of the check instead of parsing half an output as if it were the tool's verdict.
    """
    name = result.signal_name
    if name is None:
        return None
    return (
        f"{result.step.tool} was killed by {name} (exit code {result.exit_code}) while running "
        f"{result.step.name}; its output is incomplete and was not read"
    )


class Status(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"  # a check ran and found problems
    ERROR = "error"  # the check could not run to a verdict (bad input, tool crash)
    SKIPPED = "skipped"  # nothing to check, said explicitly
    WARNING = "warning"  # a finding that is reported but does not fail the check
    WAIVED = "waived"  # a finding a waiver (with its reason) lets pass

    @property
    def failed(self) -> bool:
        return self in {Status.FAILED, Status.ERROR}


@dataclass(frozen=True)
class Finding:
    """One problem (or, for reports, one passed check) attributed as precisely as known."""

    check: str  # e.g. "kubeconform", "policy", "render", "ruff"
    message: str
    status: Status = Status.FAILED
    file: str | None = None
    line: int | None = None
    rule: str | None = None
    chart: str | None = None
    environment: str | None = None
    resource: str | None = None  # Kind/name
    container: str | None = None
    waiver: str | None = None  # why a WAIVED finding passes, and where that is said

    def location(self) -> str:
        parts = [p for p in (self.chart, self.environment) if p]
        where = "/".join(parts)
        if self.file:
            file = self.file if self.line is None else f"{self.file}:{self.line}"
            where = f"{where} {file}" if where else file
        if self.resource:
            where = f"{where} {self.resource}" if where else self.resource
        return where


@dataclass(frozen=True)
class Result:
    """What one stage concluded."""

    stage: str
    status: Status
    summary: str
    findings: tuple[Finding, ...] = ()
    steps: tuple[StepResult, ...] = ()
    artifacts: tuple[str, ...] = ()
    duration: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status.failed
