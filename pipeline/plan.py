"""What validate would do, as text: chart environments, values layering and every step."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.config import Config
from pipeline.discovery import plan_targets
from pipeline.model import Step
from pipeline.run import Run
from pipeline.runners.recording import RecordingRunner, Reply, describe


def dry_run_reply(step: Step) -> Reply:
    """Well-formed empty answers, so a dry run walks every stage without tools."""
    if step.tool == "kubeconform":
        return Reply(stdout='{"resources": []}')
    if step.tool == "conftest":
        return Reply(stdout="[]")
    return Reply()


async def plan_text(
    config: Config, environments: tuple[str, ...] = (), schema_locations: tuple[str, ...] = ()
) -> str:
    from pipeline.validate import validate  # noqa: PLC0415 - validate imports this module's peers

    lines: list[str] = []
    for target in plan_targets(config, environments):
        chart = target.chart
        lines.append(f"{target.key}: release {chart.release} namespace {chart.namespace}")
        lines += [f"  values {values}" for values in target.values]
    recorder = RecordingRunner(responder=dry_run_reply)
    with tempfile.TemporaryDirectory(prefix="gitops-pipeline-plan-") as scratch:
        await validate(Run(config, recorder, Path(scratch), environments, schema_locations))
    lines.append("steps:")
    lines += [f"  {describe(step)}" for step in recorder.steps]
    return "\n".join(lines) + "\n"
