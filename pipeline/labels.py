"""What a step is called where people watch it run: the CLI's progress and Dagger's own.

"render web/dev helm template": the stage, the chart/environment or project, the tool and its
action. Names only, never argv: an argument may hold what a step's secrets protect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.model import Step

# The stage of a step, by the action its name starts with ("helm-template:web/dev"). Steps of
# other actions (git, docker) belong to the verb that runs them.
STAGE_OF_ACTION: Mapping[str, str] = {
    "helm-lint": "helm-lint",
    "helm-template": "render",
    "helm-dependency-build": "render",
    "schema-bundle": "kubeconform",
    "kubeconform": "kubeconform",
    "conftest-test": "policy",
    "conftest-verify": "policy",
    "ruff-check": "lint",
    "ruff-format": "lint",
    "mypy": "typecheck",
    "pytest": "test",
    "secrets-check": "secrets",
    "helm-template-probe": "delivery",
}


@dataclass(frozen=True)
class StepLabel:
    stage: str
    subject: str  # chart/environment, Python project, image or registry; "" for a whole stage
    tool: str  # the tool and its action: "helm template"

    def __str__(self) -> str:
        stage = "" if self.stage == self.tool else self.stage  # "kubeconform", not twice
        return " ".join(part for part in (stage, self.subject, self.tool) if part)


def step_label(step: Step, verb: str) -> StepLabel:
    action, _, subject = step.name.partition(":")
    detail = action.removeprefix(f"{step.tool}-")
    tool = step.tool if detail == step.tool else f"{step.tool} {detail}"
    return StepLabel(STAGE_OF_ACTION.get(action, verb), subject, tool)
