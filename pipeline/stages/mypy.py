"""mypy with the project's own configuration, parsed from its JSON lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipeline.model import Finding, Status, Step, src
from pipeline.stages import python_env


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


def findings(project: str, stdout: str) -> list[Finding]:
    prefix = "" if project in {"", "."} else f"{project}/"
    result: list[Finding] = []
    for line in stdout.splitlines():
        text = line.strip()
        if not text.startswith("{"):
            continue
        item = json.loads(text)
        severity = item.get("severity", "error")
        if severity == "note":
            continue
        message = item.get("message", "")
        if item.get("hint"):
            message = f"{message} ({item['hint']})"
        result.append(
            Finding(
                check="mypy",
                message=message,
                file=f"{prefix}{item.get('file', '')}",
                line=item.get("line"),
                rule=item.get("code"),
                status=Status.FAILED,
            )
        )
    return result
