"""mypy with the project's own configuration, parsed from its JSON lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.model import Finding, Status, Step, src
from pipeline.stages import python_env, tool_output


def step(source: Path, project: str, targets: Sequence[str]) -> Step:
    setup, _ = python_env.setup(source, project, "mypy")
    return Step(
        name=f"mypy:{project}",
        tool="mypy",
        args=("--output", "json", "--no-color-output", "--no-error-summary", *targets),
        workdir=src(project),
        inputs=(src(project),),
        container_setup=setup,
    )


class OutputError(ValueError):
    """mypy printed a JSON line these parsers do not understand."""


_SHAPE = tool_output.Shape("mypy", OutputError)


def findings(project: str, stdout: str) -> list[Finding]:
    """One finding per JSON line mypy printed (notes aside); other lines are not findings.

    A line that starts like JSON but is not, or JSON of another shape, is an OutputError.
    """
    prefix = "" if project in {"", "."} else f"{project}/"
    result: list[Finding] = []
    for number, line in enumerate(stdout.splitlines(), start=1):
        text = line.strip()
        if not text.startswith("{"):
            continue
        where = f"line {number}"
        item = _SHAPE.mapping(tool_output.load(text, "mypy", OutputError), where)
        severity = _SHAPE.text(item, "severity", where, "error")
        if severity == "note":
            continue
        message = _SHAPE.text(item, "message", where)
        hint = _SHAPE.optional_text(item, "hint", where)
        if hint:
            message = f"{message} ({hint})"
        result.append(
            Finding(
                check="mypy",
                message=message,
                file=f"{prefix}{_SHAPE.text(item, 'file', where)}",
                line=_SHAPE.optional_integer(item, "line", where),
                rule=_SHAPE.optional_text(item, "code", where),
                status=Status.FAILED,
            )
        )
    return result
