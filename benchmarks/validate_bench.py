"""Benchmark: `validate` against a naive sequential loop of the same work, and re-runs.

Makes a synthetic repository (N charts, each its own files, x 3 environments), then in one
process times (a) the naive loop: the tool calls `validate` makes, one helm/kubeconform/
conftest process after another through LocalRunner, then detect-secrets as it ships over
the files `validate` scans, with the same plugins (its own filters: ours give the same
findings faster, tests/test_secrets.py); (b) `validate` itself, as the CLI runs it
(independent steps concurrently, helm through its resident workers when installed), and
with the step cache (c) a re-run with nothing changed and (d) one with one values file
changed so that its chart environment renders differently (kubeconform and conftest then
check that file again, and only it when their other verdicts are remembered). Prints
medians and the ratios (targets: b/a <= 0.5, c/b <= 0.1, d/b <= 0.2), the peak memory of
the tools, and, with --scale, the same cold run at 50 charts per target.

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
from dataclasses import dataclass
from pathlib import Path

import anyio

from pipeline.config import load_config
from pipeline.model import Step
from pipeline.plan import dry_run_reply
from pipeline.run import Run, default_concurrency
from pipeline.runners import helm_worker
from pipeline.runners.local import LocalRunner
from pipeline.runners.recording import RecordingRunner
from pipeline.secrets.detect import plugins_used, scan
from pipeline.secrets.stage import plan
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


async def sequential(
    run: Run, steps: list[Step], scanned: list[str], kinds: dict[str, list[float]]
) -> tuple[float, float]:
    """The tool calls one after another, then the secrets scan: (all, tool calls alone).

    `kinds` gets the seconds of each step by its kind ("helm template") and of the scan."""
    started = time.perf_counter()
    for step in steps:
        before = time.perf_counter()
        await run.runner.run(step)
        kinds.setdefault(f"{step.tool} {step.args[0]}", []).append(time.perf_counter() - before)
    tools = time.perf_counter() - started
    stock_scan(run.source, scanned)
    kinds.setdefault("secrets scan, detect-secrets as shipped", []).append(
        time.perf_counter() - started - tools
    )
    elapsed = time.perf_counter() - started
    before = time.perf_counter()
    list(scan(run.source, scanned))  # ours, outside the naive loop's time: for the table only
    kinds.setdefault("secrets scan, ours (same findings)", []).append(time.perf_counter() - before)
    return elapsed, tools


def stock_scan(source: Path, files: list[str]) -> None:
    """The scan done naively: detect-secrets with its own default filters, the plugins
    `validate` uses, each file in turn."""
    from detect_secrets.core.scan import scan_file  # noqa: PLC0415 - the library itself
    from detect_secrets.settings import transient_settings  # noqa: PLC0415

    with transient_settings({"plugins_used": plugins_used()}):
        for relative in files:
            list(scan_file(str(source / relative)))


async def helm_in_workers(run: Run, steps: list[Step], kinds: dict[str, list[float]]) -> None:
    """The served helm steps one after another through one worker, by kind."""
    workers = helm_worker.pool(1)
    if workers is None:
        return
    runner = LocalRunner(run.source, run.out, helm_workers=workers)
    for step in (s for s in steps if helm_worker.serves(s)):
        before = time.perf_counter()
        await runner.run(step)
        kind = f"{step.tool} {step.args[0]}, in a worker"
        kinds.setdefault(kind, []).append(time.perf_counter() - before)
    await workers.aclose()


async def concurrent(run: Run) -> float:
    started = time.perf_counter()
    outcome = await validate(run)
    elapsed = time.perf_counter() - started
    if outcome.status.failed:
        sys.exit(f"validate failed on the synthetic repo: {[r.summary for r in outcome.results]}")
    return elapsed


@dataclass(frozen=True)
class Bench:
    scratch: Path
    crds: tuple[Path, ...] = (SHARED_CRDS,) if SHARED_CRDS.is_dir() else ()

    def run(self, runner: LocalRunner | RecordingRunner, out_dir: Path) -> Run:
        memo = runner.cache if isinstance(runner, LocalRunner) else None  # as the CLI does
        return Run(
            load_config(runner.source if isinstance(runner, LocalRunner) else self.repo),
            runner,
            out_dir,
            crd_schemas=self.crds,
            schema_cache=self.scratch / "cache",  # as the CLI does on a host: the schema bundle
            on_host=True,
            memo=memo,
        )

    @property
    def repo(self) -> Path:
        return self.scratch / "repo"

    async def as_the_cli(self, source: Path, out_dir: Path, steps: Path) -> float:
        """One `gitops-pipeline validate`: its own step cache object over `steps`, its own
        helm workers (started, and stopped, within the timing)."""
        started = time.perf_counter()
        workers = helm_worker.pool(default_concurrency())
        runner = LocalRunner(source, out_dir, cache=StepCache(steps), helm_workers=workers)
        try:
            await concurrent(self.run(runner, out_dir))
        finally:
            if workers is not None:
                await workers.aclose()
        return time.perf_counter() - started


async def main(rounds: int, charts: int, scale: int | None) -> None:
    with tempfile.TemporaryDirectory(prefix="gitops-bench-") as scratch:
        bench = Bench(Path(scratch))
        source = make_repo(bench.repo, charts)
        out = Path(scratch) / "out"
        if helm_worker.pool(1) is None:
            print(f"no {helm_worker.WORKER} beside helm: every helm step starts helm")
        warm_up = bench.run(LocalRunner(source, out), out)
        outcome = await validate(warm_up)  # the outputs the naive loop's steps read
        scanned = plan(warm_up, outcome.rendered, None)["scan_files"]
        recorder = RecordingRunner(responder=dry_run_reply)
        await validate(bench.run(recorder, Path(scratch) / "plan"))
        steps = recorder.steps
        times: dict[str, list[float]] = {k: [] for k in ("tools", "naive", "cold", "warm", "one")}
        kinds: dict[str, list[float]] = {}
        values = source / "charts" / "chat1" / "values-prd.yaml"
        original = values.read_text(encoding="utf-8")
        for round_index in range(rounds):
            naive_run = bench.run(LocalRunner(source, out), out)
            naive, tools = await sequential(naive_run, steps, scanned, kinds)
            await helm_in_workers(naive_run, steps, kinds)
            times["naive"].append(naive)
            times["tools"].append(tools)
            fresh = Path(scratch) / f"out-{round_index}"
            cache = Path(scratch) / f"steps-{round_index}"
            times["cold"].append(await bench.as_the_cli(source, fresh, cache))
            times["warm"].append(await bench.as_the_cli(source, fresh, cache))
            # A change that reaches the rendered manifest (its CPU request), as a pull request's
            # does: that chart environment is rendered and checked again.
            changed = original.replace("cpu: 250m", f"cpu: {251 + round_index}m", 1)
            if changed == original:
                sys.exit("the benchmark's values file no longer has `cpu: 250m` to change")
            values.write_text(changed, "utf-8")
            times["one"].append(await bench.as_the_cli(source, fresh, cache))
            values.write_text(original, encoding="utf-8")
        median = {k: statistics.median(v) for k, v in times.items()}
        naive, ours = median["naive"], median["cold"]
        shape = f"{charts} charts x {len(ENVIRONMENTS)} environments"
        print(f"synthetic repo: {shape}, {len(steps)} tool calls")
        print(
            f"naive sequential loop: {naive:.2f}s (median of {rounds}; the tool calls "
            f"{median['tools']:.2f}s, then the secrets scan of {len(scanned)} files)"
        )
        print(f"validate, cold cache: {ours:.2f}s; ratio to naive {ours / naive:.2f} (target 0.5)")
        warm, one = median["warm"], median["one"]
        print(f"re-run, nothing changed: {warm:.2f}s; ratio to cold {warm / ours:.2f} (target 0.1)")
        print(f"re-run, one values file changed: {one:.2f}s; ratio to cold {one / ours:.2f} (0.2)")
        print("where the naive loop's time goes, per round (and helm's served steps in a worker):")
        for kind, seconds in kinds.items():
            count = len(seconds) // rounds
            each = statistics.median(seconds) * 1000
            print(f"  {kind}: {count} x {each:.0f} ms = {sum(seconds) / rounds:.2f}s")
        print(f"peak memory of one tool process: {_peak_child_mb():.0f} MB")
        if scale:
            await _scale(bench, charts, scale, ours)


async def _scale(bench: Bench, charts: int, scale: int, small: float) -> None:
    """Cold runs at `scale`/2 and `scale` charts: the time per chart environment, and whether
    the cost of each chart added stays the same (linear growth) or rises."""
    middle = max(charts + 1, scale // 2)
    elapsed: dict[int, float] = {charts: small}
    for size in (middle, scale):
        repo = make_repo(bench.scratch / f"big-{size}", size)
        out = bench.scratch / f"big-{size}-out"
        elapsed[size] = await bench.as_the_cli(repo, out, bench.scratch / f"big-{size}-steps")
    targets = len(ENVIRONMENTS)
    per_target = {size: seconds / (size * targets) for size, seconds in elapsed.items()}
    first = (elapsed[middle] - elapsed[charts]) / ((middle - charts) * targets)
    second = (elapsed[scale] - elapsed[middle]) / ((scale - middle) * targets)
    amortised = per_target[scale] / per_target[charts]
    print(
        f"{scale} charts x {targets}: {elapsed[scale]:.2f}s, {amortised:.2f}"
        f" x the time per chart environment of {charts} x {targets} (fixed costs amortised); "
        f"each chart environment added costs {first * 1000:.0f} ms from {charts} to {middle} "
        f"charts and {second * 1000:.0f} ms from {middle} to {scale}: ratio {second / first:.2f} "
        f"(linear: 1.00, within 10%); peak tool memory {_peak_child_mb():.0f} MB, this process "
        f"{_peak_self_mb():.0f} MB"
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
