"""How long a step may run: pipeline.yaml `timeouts`, or `--timeout` for every step.

Both runners read the same limits; pytest also gets a limit per test (pytest-timeout), kept
below its step's limit so that a hanging test is named and the tests after it still run.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_STEP_SECONDS = 600.0  # a step's limit when pipeline.yaml and the flag say nothing
DEFAULT_KEY = "default"
PER_TEST_KEY = "test-case"  # seconds one test may run (pytest-timeout's --timeout)
# A share of pytest's step limit: the per-test limit fires first, unless the tests before the
# hanging one took more than the rest, and then the step limit still keeps the partial report.
PER_TEST_SHARE = 0.8
STOP_GRACE_SECONDS = 5.0  # between the step's stop signal and SIGKILL
TIMEOUT_EXIT_CODE = 124  # as GNU timeout reports a command it stopped; the local runner too


def timed_out_note(limit_seconds: float) -> str:
    """What a step's stderr ends with when its time limit stopped it."""
    return (
        f"\ntimed out after {limit_seconds:g}s (the step's time limit: "
        "pipeline.yaml `timeouts`, or --timeout)\n"
    )


def step_limit(limits: Mapping[str, float], tool: str, fallback: float) -> float:
    """The tool's own limit, else the default, else the step's built-in one."""
    return limits.get(tool, limits.get(DEFAULT_KEY, fallback))


def per_test_limit(limits: Mapping[str, float], pytest_step_seconds: float) -> float:
    share = round(step_limit(limits, "pytest", pytest_step_seconds) * PER_TEST_SHARE, 3)
    configured = limits.get(PER_TEST_KEY)
    return share if configured is None else min(configured, share)


def with_flag(configured: Mapping[str, float], flag_seconds: float | None) -> dict[str, float]:
    """`--timeout` is the last word for every step; a per-test limit still stays below it."""
    if flag_seconds is None:
        return dict(configured)
    limits = {DEFAULT_KEY: flag_seconds}
    if PER_TEST_KEY in configured:
        limits[PER_TEST_KEY] = configured[PER_TEST_KEY]
    return limits
