"""Runners execute ``Step`` values. The interface is one async method."""

from __future__ import annotations

from typing import Protocol

from pipeline.model import Step, StepResult


class Runner(Protocol):
    """Runs one step to completion and reports what happened as a value.

    A non-zero exit code is a result, not an exception; a runner raises only
    when the step could not be started at all (``pipeline.errors.SetupError``).
    """

    async def run(self, step: Step) -> StepResult: ...


__all__ = ["Runner"]
