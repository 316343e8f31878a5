"""Benchmark: `validate` against a naive sequential loop of the same tool calls, and re-runs.

Makes a synthetic repository (N copies of charts/chat x 3 environments), then in one
process times (a) the same steps `validate` runs, executed one after another through
LocalRunner, (b) `validate` itself, which runs independent steps concurrently, and with the
step cache (c) a re-run with nothing changed and (d) one with one values file changed.
Prints medians and the ratios (targets: b/a <= 0.5, c/b <= 0.1, d/b <= 0.2), the peak
memory of the tools, and, with --scale, the same cold run at 50 charts per target.

    .venv/bin/python benchmarks/validate_bench.py [--rounds 3] [--charts 6] [--scale 50]
"""

from __future__ import annotations

import argparse
import resource
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
from pipeline.step_cache import StepCache
from pipeline.validate import validate

REPO = Path(__file__).resolve().parents[1]
SHARED_CRDS = REPO.parent / "shared" / "schemas" / "crds"
ENVIRONMENTS = ("dev", "stg", "prd")


def make_repo(root: Path, charts: int) -> Path:
    for index in range(1, charts + 1):
        chart = root / "charts" / f"chat{index}"
        shutil.copytree(REPO / "charts" / "chat", chart)
        stg = (chart / "values-dev.yaml").read_text(encoding="utf-8")
        (chart / "values-stg.yaml").write_text(stg.replace("replicaCount: 1", "replicaCount: 2"))
        text = (chart / "Chart.yaml").read_text(encoding="utf-8")
        (chart / "Chart.yaml").write_text(text.replace("name: chat", f"name: chat{index}", 1))
        _make_distinct(chart, index)
    if (REPO / "policy").is_dir():  # the repository's own; the built-in pack applies anyway
        shutil.copytree(REPO / "policy", root / "policy")
    ignore = "" if SHARED_CRDS.is_dir() else "  ignore_missing_schemas: [Rollout, SealedSecret]\n"
    (root / "pipeline.yaml").write_text(f"kubeconform:\n  schema_locations: [bundled]\n{ignore}")
    return root


def _make_distinct(chart: Path, index: int) -> None:
    """Every file its own content: no chart is a byte-identical copy of another, which a
    content-addressed cache would otherwise check once for all."""
    for file in sorted(chart.rglob("*")):
        if file.suffix == ".tpl":
            comment = f"{{{{/* copy {index} */}}}}\n"
        elif file.suffix in {".yaml", ".txt"}:
            comment = f"# copy {index}\n"
        else:
            continue
        file.write_text(file.read_text(encoding="utf-8") + comment, encoding="utf-8")


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


async def main(rounds: int, charts: int, scale: int | None) -> None:
    with tempfile.TemporaryDirectory(prefix="gitops-bench-") as scratch:
        source = make_repo(Path(scratch) / "repo", charts)
        config = load_config(source)
        crds = (SHARED_CRDS,) if SHARED_CRDS.is_dir() else ()
        out = Path(scratch) / "out"

        cache = Path(scratch) / "cache"  # as the CLI does for host runs: the schema bundle

        def make_run(runner: LocalRunner | RecordingRunner, out_dir: Path) -> Run:
            memo = runner.cache if isinstance(runner, LocalRunner) else None  # as the CLI does
            return Run(
                config,
                runner,
                out_dir,
                crd_schemas=crds,
                schema_cache=cache,
                on_host=True,
                memo=memo,
            )

        await concurrent(make_run(LocalRunner(source, out), out))  # warm-up; outputs for (a)
        recorder = RecordingRunner(responder=dry_run_reply)
        await validate(make_run(recorder, Path(scratch) / "plan"))
        steps = recorder.steps
        naive_times: list[float] = []
        validate_times: list[float] = []
        warm_times: list[float] = []
        changed_times: list[float] = []
        values = source / "charts" / "chat1" / "values-prd.yaml"
        original = values.read_text(encoding="utf-8")
        for round_index in range(rounds):
            naive_times.append(await sequential(make_run(LocalRunner(source, out), out), steps))
            fresh = Path(scratch) / f"out-{round_index}"
            step_cache = StepCache(Path(scratch) / f"steps-{round_index}")
            cached = LocalRunner(source, fresh, cache=step_cache)
            validate_times.append(await concurrent(make_run(cached, fresh)))  # fills the cache
            warm_times.append(await concurrent(make_run(cached, fresh)))
            values.write_text(f"{original}\n# round {round_index}\nreplicaCount: 3\n", "utf-8")
            changed_times.append(await concurrent(make_run(cached, fresh)))
            values.write_text(original, encoding="utf-8")
        naive = statistics.median(naive_times)
        ours = statistics.median(validate_times)
        warm = statistics.median(warm_times)
        changed = statistics.median(changed_times)
        shape = f"{charts} charts x {len(ENVIRONMENTS)} environments"
        print(f"synthetic repo: {shape}, {len(steps)} tool calls")
        print(f"naive sequential loop: {naive:.2f}s (median of {rounds})")
        print(f"validate, cold cache: {ours:.2f}s; ratio to naive {ours / naive:.2f} (target 0.5)")
        print(f"re-run, nothing changed: {warm:.2f}s; ratio to cold {warm / ours:.2f} (target 0.1)")
        print(
            f"re-run, one values file changed: {changed:.2f}s; ratio to cold "
            f"{changed / ours:.2f} (target 0.2)"
        )
        print(f"peak memory of one tool process: {_peak_child_mb():.0f} MB")
        if scale:
            per_target = ours / (charts * len(ENVIRONMENTS))
            big = make_repo(Path(scratch) / "big", scale)
            big_config = load_config(big)
            big_out = Path(scratch) / "big-out"
            started = time.perf_counter()
            await validate(
                Run(
                    big_config,
                    LocalRunner(big, big_out),
                    big_out,
                    crd_schemas=crds,
                    schema_cache=cache,
                )
            )
            elapsed = time.perf_counter() - started
            big_per_target = elapsed / (scale * len(ENVIRONMENTS))
            print(
                f"{scale} charts x {len(ENVIRONMENTS)}: {elapsed:.2f}s, "
                f"{big_per_target / per_target:.2f} x the time per chart environment of "
                f"{charts} x {len(ENVIRONMENTS)} (linear: 1.00, within 10%); peak tool memory "
                f"{_peak_child_mb():.0f} MB, this process {_peak_self_mb():.0f} MB"
            )


def _peak_child_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _peak_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--charts", type=int, default=6)
    parser.add_argument("--scale", type=int, default=None, metavar="CHARTS")
    arguments = parser.parse_args()
    anyio.run(main, arguments.rounds, arguments.charts, arguments.scale)
