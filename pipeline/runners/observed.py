"""A runner that tells an observer when each step starts and ends: what progress displays see.

It wraps any runner and changes nothing about how steps run. Observers get the `Step`
(its name, never its resolved argv or secrets) and the `StepResult`.
"""

from __future__ import annotations

from typing import Protocol

from pipeline.model import Step, StepResult
from pipeline.runners import Runner


class StepObserver(Protocol):
    def started(self, step: Step) -> None: ...

    def finished(self, step: Step, result: StepResult | None) -> None:
        """`result` is None when the step ended without one: it could not start or was stopped."""


class ObservedRunner:
    __slots__ = ("inner", "observer")

    def __init__(self, inner: Runner, observer: StepObserver) -> None:
        self.inner = inner
        self.observer = observer

    def __repr__(self) -> str:
        return f"ObservedRunner({self.inner!r})"

    async def run(self, step: Step) -> StepResult:
        self.observer.started(step)
        result: StepResult | None = None
        try:
            result = await self.inner.run(step)
        finally:
            self.observer.finished(step, result)
        return result
