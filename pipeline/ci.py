"""`ci`: everything a pull request needs, concurrently, with one merged report.

lint, typecheck, test and validate run side by side; every stage's result is
reported even when another fails. summary.md, summary.json, junit.xml and the
annotations for GitHub and GitLab merge all stages; each stage's own artifacts stay
beside them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from pipeline import pychecks, reports
from pipeline.errors import ConfigError
from pipeline.model import Finding, Result, Status
from pipeline.pychecks import NoPythonProjectError
from pipeline.run import Run, gather
from pipeline.validate import Outcome, validate

PYTHON_STAGES: dict[str, Callable[[Run], Awaitable[Result]]] = {
    "lint": pychecks.lint,
    "typecheck": pychecks.typecheck,
    "test": pychecks.test,
}


async def _python_stage(run: Run, name: str, errors: list[ConfigError]) -> list[Result]:
    try:
        return [await PYTHON_STAGES[name](run)]
    except NoPythonProjectError as missing:
        return [Result(name, Status.SKIPPED, f"skipped: {missing.message}")]
    except ConfigError as error:
        # Reported with every other stage, then raised: a configuration error exits 2.
        errors.append(error)
        finding = Finding(check=name, message=str(error), status=Status.ERROR)
        return [Result(name, Status.ERROR, str(error), (finding,))]


async def run_ci(run: Run) -> tuple[list[Result], Outcome, ConfigError | None]:
    """All stages' results, validate's outcome, and the first configuration error if any."""
    errors: list[ConfigError] = []
    jobs: list[Callable[[], Awaitable[list[Result]]]] = [
        partial(_python_stage, run, name, errors) for name in PYTHON_STAGES
    ]
    outcome_box: list[Outcome] = []

    async def validation() -> list[Result]:
        outcome = await validate(run, nothing_is_skipped=True)
        outcome_box.append(outcome)
        return outcome.results

    jobs.append(validation)
    # Each stage bounds its own tool processes; the stages themselves all start at once.
    finished = await gather(jobs, len(jobs))
    results = [result for stage in finished for result in stage]
    outcome = outcome_box[0]
    if all(r.status is Status.SKIPPED for r in results) and not run.allow_empty:
        message = (
            "nothing was checked: no Python project and no Helm chart in the source; "
            "pass --allow-empty if that is expected"
        )
        results.append(Result("ci", Status.FAILED, message, (Finding("ci", message),)))
    write_merged(run, results, outcome)
    return results, outcome, errors[0] if errors else None


def write_merged(run: Run, results: list[Result], outcome: Outcome) -> None:
    extra = {"stages_run": [r.stage for r in results], "validate_status": outcome.status.value}
    reports.write_summaries(run.out, run.source, results, "gitops-pipeline ci", extra)
