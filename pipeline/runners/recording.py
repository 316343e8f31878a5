"""A runner that runs nothing: it records steps and answers from a script.

Shipped in the package (like httpx's ``MockTransport``) for tests and for
``--dry-run``, where it prints what the real runners would execute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.model import Arg, Step, StepResult


@dataclass(frozen=True)
class Reply:
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""


Responder = Callable[[Step], Reply]


def _always_ok(_step: Step) -> Reply:
    return Reply()


@dataclass
class RecordingRunner:
    responder: Responder = _always_ok
    steps: list[Step] = field(default_factory=list)

    async def run(self, step: Step) -> StepResult:
        self.steps.append(step)
        reply = self.responder(step)
        return StepResult(
            step=step,
            exit_code=reply.exit_code,
            stdout=reply.stdout,
            stderr=reply.stderr,
            outputs=(),
            duration=0.0,
        )


def render_arg(arg: Arg) -> str:
    return arg if isinstance(arg, str) else str(arg)


def describe(step: Step) -> str:
    """A shell-like line for humans; paths shown relative to $SOURCE and $OUT."""
    import shlex  # noqa: PLC0415

    argv = " ".join(shlex.quote(render_arg(a)) for a in step.args)
    secrets = "".join(f" [secret {s.variable} from {s.source}]" for s in step.secrets)
    return f"{step.name}: (cd {step.workdir}) {step.tool} {argv}{secrets}"
