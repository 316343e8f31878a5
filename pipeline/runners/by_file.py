"""A step whose output is a verdict per file, run over only the files whose verdict is unknown.

kubeconform and conftest check every rendered file in one process; after one values file
changed, all but one of their verdicts are those of the last run. Each file's verdict is
remembered in the step cache from a run that passed (exit 0, nothing on stderr: the joined
output is then exactly what one run over all the files prints, up to the order of entries,
which these tools do not keep either), keyed by the step without its files (tool, binary,
arguments, every other input's digest), the file's path and its content's digest.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import anyio

from pipeline.model import ByFile, Ref, Step, StepResult
from pipeline.stages.by_file import FORMATS
from pipeline.step_cache import StepCache

RunStep = Callable[[Step], Awaitable[StepResult]]


async def run_by_file(
    step: Step,
    by_file: ByFile,
    cache: StepCache,
    *,
    resolve: Callable[[Ref], Path],
    binary: Path,
    run: RunStep,
) -> StepResult:
    """`run(step)`, or `run` of the step over the files whose verdicts are not remembered,
    with the remembered ones joined into its output; `run` nothing when all are."""
    started = time.monotonic()
    output = FORMATS[by_file.output]
    named = {file: str(resolve(file)) for file in by_file.files}
    shared = cache.key(_without(step, by_file.files), resolve, binary)
    keys = {
        file: cache.remember_key(
            "verdict-by-file", step=shared, file=name, digest=cache.file_digest(resolve(file))
        )
        for file, name in named.items()
    }
    known: dict[Ref, list[Any]] = {}
    for file, key in keys.items():
        remembered = cache.recall(key)
        if isinstance(remembered, list):
            known[file] = remembered
    unknown = tuple(file for file in by_file.files if file not in known)
    if not known:
        result = await run(step)
    elif unknown:
        result = dataclasses.replace(await run(_without(step, known)), step=step)
    else:  # every verdict is known: nothing to run
        result = StepResult(step, 0, "", "", (), 0.0, cached=True)
    ran = output.split(result.stdout, [named[file] for file in unknown]) if unknown else {}
    if ran is None:
        return result  # not the shape it should have: reported as the tool printed it
    if unknown and result.ok and not result.stderr:
        await anyio.to_thread.run_sync(_remember, cache, {keys[f]: ran[named[f]] for f in unknown})
    if not known:
        return result
    entries = [
        entry
        for file in by_file.files
        for entry in (known[file] if file in known else ran[named[file]])
    ]
    return dataclasses.replace(
        result, stdout=output.join(entries), duration=time.monotonic() - started
    )


def _without(step: Step, files: Collection[Ref]) -> Step:
    """The step minus `files`, from its arguments and its inputs."""
    return dataclasses.replace(
        step,
        args=tuple(arg for arg in step.args if arg not in files),
        inputs=tuple(ref for ref in step.inputs if ref not in files),
        by_file=None,
    )


def _remember(cache: StepCache, verdicts: dict[str, list[Any]]) -> None:
    for key, entries in verdicts.items():
        cache.remember(key, entries)
