"""Benchmark: `validate` against a naive sequential loop of the same tool calls.

Makes a synthetic repository (6 copies of charts/chat x 3 environments), then in one
process times (a) the same steps `validate` runs, executed one after another through
LocalRunner, and (b) `validate` itself, which runs independent steps concurrently.
Prints both medians and their ratio (target on a 2-core machine: at most 0.6).

    .venv/bin/python benchmarks/validate_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from pipeline.config import load_config
from pipeline.plan import dry_run_reply
from pipeline.run import Run
from pipeline.runners.local import LocalRunner
from pipeline.runners.recording import RecordingRunner
from pipeline.validate import validate

REPO = Path(__file__).resolve().parents[1]
SHARED_CRDS = REPO.parent / "shared" / "schemas" / "crds"
CHARTS = 6
ENVIRONMENTS = ("dev", "stg", "prd")


def make_repo(root: Path) -> Path:
    for index in range(1, CHARTS + 1):
        chart = root / "charts" / f"chat{index}"
        shutil.copytree(REPO / "charts" / "chat", chart)
        shutil.copy(chart / "values-dev.yaml", chart / "values-stg.yaml")
        text = (chart / "Chart.yaml").read_text(encoding="utf-8")
        (chart / "Chart.yaml").write_text(text.replace("name: chat", f"name: chat{index}", 1))
    shutil.copytree(REPO / "policy", root / "policy")
    ignore = "" if SHARED_CRDS.is_dir() else "  ignore_missing_schemas: [Rollout, SealedSecret]\n"
    (root / "pipeline.yaml").write_text(f"kubeconform:\n  schema_locations: [bundled]\n{ignore}")
    return root


async def sequential(run: Run, steps: list) -> float:  # type: ignore[type-arg]
    started = time.perf_counter()
    for step in steps:
        await run.runner.run(step)
    return time.perf_counter() - started


async def concurrent(run: Run) -> float:
    started = time.perf_counter()
    outcome = await validate(run)
    elapsed = time.perf_counter() - started
    if outcome.status.failed:
        sys.exit(f"validate failed on the synthetic repo: {[r.summary for r in outcome.results]}")
    return elapsed


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gitops-bench-") as scratch:
        source = make_repo(Path(scratch) / "repo")
        config = load_config(source)
        crds = (SHARED_CRDS,) if SHARED_CRDS.is_dir() else ()
        out = Path(scratch) / "out"

        cache = Path(scratch) / "cache"  # as the CLI does for host runs: the schema bundle

        def make_run(runner: object, out_dir: Path) -> Run:
            return Run(config, runner, out_dir, crd_schemas=crds, schema_cache=cache)  # type: ignore[arg-type]

        await concurrent(make_run(LocalRunner(source, out), out))  # warm-up; outputs for (a)
        recorder = RecordingRunner(responder=dry_run_reply)
        await validate(make_run(recorder, Path(scratch) / "plan"))
        steps = recorder.steps
        naive_times: list[float] = []
        validate_times: list[float] = []
        for _ in range(rounds):
            naive_times.append(await sequential(make_run(LocalRunner(source, out), out), steps))
            fresh = Path(scratch) / f"out-{len(validate_times)}"
            validate_times.append(await concurrent(make_run(LocalRunner(source, fresh), fresh)))
        naive = statistics.median(naive_times)
        ours = statistics.median(validate_times)
        shape = f"{CHARTS} charts x {len(ENVIRONMENTS)} environments"
        print(f"synthetic repo: {shape}, {len(steps)} tool calls")
        print(f"naive sequential loop: {naive:.2f}s (median of {rounds})")
        print(f"validate (concurrent): {ours:.2f}s (median of {rounds})")
        print(f"ratio validate/naive: {ours / naive:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    anyio.run(main, parser.parse_args().rounds)
