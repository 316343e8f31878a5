"""Dagger mode against the local runner, on this repository, in one run.

Needs the local engine (`bash ci/engine.sh`). Prints seconds and ratios against the local
runner's `gitops-pipeline validate`, measured in the same process:

- `dagger functions` on a module content the engine has not loaded yet (cold) and again (warm);
- `dagger call validate` on a source the engine has not seen (cold: a fresh marker file makes
  every step's input new) and on the same source again (warm);
- `gitops-pipeline validate` with the local runner (its schema bundle already cached).

    python benchmarks/dagger_bench.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from engine import Engine, find_engine  # noqa: E402
from test_engine import self_copy  # noqa: E402


def timed(engine: Engine, *args: str, cwd: Path) -> float:
    done = engine.dagger(*args, cwd=cwd).check()
    return done.seconds


def local_validate(source: Path, out: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "validate",
            "--source",
            str(source),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def main() -> None:
    engine = find_engine()
    with tempfile.TemporaryDirectory(prefix="dagger-bench-") as scratch:
        work = Path(scratch)
        repo = self_copy(engine, work / "repo")
        # A module content never loaded before: a fresh line in a file the module includes.
        readme = repo / "README.md"
        readme.write_text(readme.read_text() + f"\n<!-- {uuid.uuid4()} -->\n")
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        functions_cold = timed(engine, "functions", cwd=repo)
        functions_warm = timed(engine, "functions", cwd=repo)
        (repo / "charts" / "chat" / f"bench-{uuid.uuid4().hex}.txt").write_text("cold\n")
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        validate_cold = timed(
            engine, "call", "validate", "export", "--path", str(work / "a"), cwd=repo
        )
        validate_warm = timed(
            engine, "call", "validate", "export", "--path", str(work / "b"), cwd=repo
        )
        local_validate(repo, work / "warmup")  # the host's schema bundle, built once
        local = min(local_validate(repo, work / f"l{i}") for i in range(3))
    rows = [
        ("dagger functions, cold", functions_cold),
        ("dagger functions, warm", functions_warm),
        ("dagger call validate, cold", validate_cold),
        ("dagger call validate, warm", validate_warm),
        ("gitops-pipeline validate (local runner)", local),
    ]
    for name, seconds in rows:
        print(f"{name:42s} {seconds:7.1f} s  {seconds / local:6.1f} x local")


if __name__ == "__main__":
    main()
