"""Benchmark: what importing our package adds on top of `import dagger`, in fresh interpreters.

The module runtime imports dagger, then pipeline.module; the CLI imports pipeline.cli (and
dagger only for --runner dagger). Each measurement is a fresh process, median of --rounds,
printed beside the baseline measured the same way (target: at most 100 ms on top of dagger).

    .venv/bin/python benchmarks/import_bench.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROBE = (
    "import time; started = time.perf_counter(); {imports}; print(time.perf_counter() - started)"
)


def seconds(imports: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        done = subprocess.run(
            [sys.executable, "-c", PROBE.format(imports=imports)],
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(done.stdout))
    return statistics.median(times)


def main(rounds: int) -> None:
    dagger = seconds("import dagger", rounds)
    module = seconds("import dagger; import pipeline.module", rounds)
    cli = seconds("import pipeline.cli", rounds)
    heavy = seconds("import dagger; import pipeline.module; import kubernetes_validate", rounds)
    print(f"import dagger: {dagger * 1000:.0f} ms (baseline, median of {rounds})")
    print(
        f"pipeline.module on top: {(module - dagger) * 1000:.0f} ms "
        f"({module / dagger:.2f} x the baseline; target +100 ms)"
    )
    print(f"pipeline.cli alone (local runner, no dagger): {cli * 1000:.0f} ms")
    print(
        f"for scale, the schema package the module never imports: "
        f"{(heavy - module) * 1000:.0f} ms more"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    main(parser.parse_args().rounds)
