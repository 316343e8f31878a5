"""One exception root with a few leaves; each leaf knows its exit code.

Exit codes are owned by the top-level handler in ``pipeline.cli``; it maps
these classes and nothing else. A failed *check* is not an exception: it is a
``Result`` value. These errors are for runs that could not be judged at all.
"""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 2


class ConfigError(PipelineError):
    """Bad usage or configuration: a file, field or argument the user must fix (exit 2)."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field is not None:
            where = f"{where}: {self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message


class SetupError(PipelineError):
    """The machine is not ready: a tool, daemon or registry is missing or unreachable (exit 3)."""

    exit_code = 3


class ToolMissingError(SetupError):
    """A pinned tool is not installed where the local runner looks for it."""

    def __init__(self, tool: str, hint: str) -> None:
        self.tool = tool
        self.hint = hint
        super().__init__(f"tool '{tool}' is not installed: {hint}")


class ToolVersionError(SetupError):
    """A tool is installed but not at the pinned version."""

    def __init__(self, tool: str, found: str, pinned: str, path: str, hint: str) -> None:
        self.tool = tool
        self.found = found
        self.pinned = pinned
        super().__init__(
            f"tool '{tool}' at {path} is version {found}, but {pinned} is pinned: {hint}"
        )


class CheckFailedError(PipelineError):
    """Raised only at the CLI boundary when a command's result is a failure (exit 1)."""

    exit_code = 1


class InterruptedRunError(PipelineError):
    """SIGINT or SIGTERM stopped the run: exit 128 + the signal's number (130, 143)."""

    def __init__(self, signum: int) -> None:
        import signal  # noqa: PLC0415

        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
