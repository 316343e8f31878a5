"""kubeconform over every rendered file in one run, parsed from its JSON output."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from pipeline.model import Arg, ByFile, Finding, Ref, Status, Step
from pipeline.stages import tool_output

STATUS = {
    "statusValid": Status.PASSED,
    "statusInvalid": Status.FAILED,
    "statusError": Status.FAILED,
    "statusSkipped": Status.SKIPPED,
}
MISSING_SCHEMA = "could not find schema"


def step(files: Sequence[Ref], kube_version: str, schema_locations: Sequence[Arg]) -> Step:
    locations: list[Arg] = []
    for location in schema_locations:
        locations += ["-schema-location", location]
    return Step(
        name="kubeconform",
        tool="kubeconform",
        args=(
            "-strict",
            "-summary",
            "-verbose",
            "-output",
            "json",
            "-kubernetes-version",
            kube_version,
            *locations,
            *files,
        ),
        # Local schema bundles under OUT travel with the step into a container.
        inputs=(*files, *(loc for loc in schema_locations if isinstance(loc, Ref))),
        cacheable=True,
        by_file=ByFile("kubeconform", tuple(files)),
    )


@dataclass(frozen=True)
class Verdict:
    """One resource as kubeconform judged it."""

    filename: str
    kind: str
    name: str
    status: Status
    message: str
    paths: tuple[str, ...] = ()


class OutputError(ValueError):
    pass


_SHAPE = tool_output.Shape("kubeconform", OutputError)


def parse(stdout: str, ignore_missing: Collection[str]) -> list[Verdict]:
    """Resources from kubeconform's JSON; a missing schema counts as a failure unless ignored.

    Output of any other shape (not JSON, a list where an object belongs, a number for a
    name) is an OutputError naming what differs.
    """
    document = _SHAPE.mapping(tool_output.load(stdout, "kubeconform", OutputError), "the output")
    verdicts: list[Verdict] = []
    for index, entry in enumerate(_SHAPE.items(document.get("resources"), "resources")):
        where = f"resources[{index}]"
        resource = _SHAPE.mapping(entry, where)
        status_text = _SHAPE.text(resource, "status", where)
        message = _SHAPE.text(resource, "msg", where)
        kind = _SHAPE.text(resource, "kind", where)
        if not status_text and not kind and not _SHAPE.text(resource, "name", where):
            continue  # a file (or document) with no resource in it: nothing was validated
        status = STATUS.get(status_text, Status.ERROR)
        if status is Status.FAILED and MISSING_SCHEMA in message and kind in ignore_missing:
            status = Status.SKIPPED
            message = f"no schema for {kind}; ignored by kubeconform.ignore_missing_schemas"
        elif status is Status.FAILED and MISSING_SCHEMA in message:
            message = (
                f"{message}: add a schema location for it, or list the kind in "
                "kubeconform.ignore_missing_schemas"
            )
        verdicts.append(
            Verdict(
                filename=_SHAPE.text(resource, "filename", where),
                kind=kind,
                name=_SHAPE.text(resource, "name", where),
                status=status,
                message=message,
                paths=_validation_errors(resource.get("validationErrors"), where),
            )
        )
    return verdicts


def _validation_errors(errors: object, where: str) -> tuple[str, ...]:
    paths: list[str] = []
    for index, entry in enumerate(_SHAPE.items(errors, f"{where}.validationErrors")):
        at = f"{where}.validationErrors[{index}]"
        error = _SHAPE.mapping(entry, at)
        paths.append(f"{_SHAPE.text(error, 'path', at)}: {_SHAPE.text(error, 'msg', at)}")
    return tuple(paths)


_AT = re.compile(r"at '(?P<path>[^']*)': (?P<problem>.+?)(?= - at '|$)")


def describe(verdict: Verdict) -> str:
    """The precise problems: kubeconform's msg names each path; its validationErrors often don't."""
    located = [f"{m['path'] or '/'}: {m['problem'].strip()}" for m in _AT.finditer(verdict.message)]
    if located:
        return "; ".join(located)
    return "; ".join(verdict.paths) if verdict.paths else verdict.message


def to_finding(verdict: Verdict, **where: str | int | None) -> Finding:
    detail = describe(verdict)
    return Finding(
        check="kubeconform",
        message=detail or "valid",
        status=verdict.status,
        resource=f"{verdict.kind}/{verdict.name}",
        **where,  # type: ignore[arg-type]
    )
