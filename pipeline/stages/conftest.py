"""conftest test over all rendered files, and conftest verify for the policies' own tests."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.model import ByFile, Finding, Ref, Status, Step, src
from pipeline.stages import tool_output

# The shipped policies say "<Kind>/<name>: container '<c>' <problem>" or "<Kind>/<name>: <problem>".
_MESSAGE = re.compile(
    r"^(?P<kind>[A-Za-z0-9]+)/(?P<name>[^:\s]+):\s*"
    r"(?:container '(?P<container>[^']+)'\s*)?(?P<problem>.*)$"
)


def _common(policies: Sequence[Ref], data: Sequence[str]) -> list[str | Ref]:
    args: list[str | Ref] = []
    for policy in policies:
        args += ["--policy", policy]
    args += ["--rego-version", "v1", "--no-color"]
    for item in data:
        args += ["--data", src(item)]
    return args


def policy_test_step(
    files: Sequence[Ref], policies: Sequence[Ref], data: Sequence[str] = ()
) -> Step:
    """conftest test with every policy directory: the built-in pack and the repository's own."""
    return Step(
        name="conftest-test",
        tool="conftest",
        args=("test", *_common(policies, data), "--all-namespaces", "--output", "json", *files),
        inputs=(*policies, *(src(item) for item in data), *files),
        cacheable=True,
        by_file=ByFile("conftest", tuple(files)),
    )


def verify_step(policy: str, data: Sequence[str] = ()) -> Step:
    """The repository's own policies' unit tests (the built-in pack's are ours to run)."""
    return Step(
        name="conftest-verify",
        tool="conftest",
        args=("verify", *_common([src(policy)], data), "--output", "json"),
        inputs=(src(policy), *(src(item) for item in data)),
        cacheable=True,
    )


@dataclass(frozen=True)
class PolicyResult:
    filename: str
    status: Status  # warnings are reported but do not fail the check
    message: str
    kind: str | None
    name: str | None
    container: str | None
    level: str  # "failure" | "warning"
    namespace: str = ""  # the Rego package: gitops_pipeline for the built-in pack
    problem: str = ""  # the message without its "<Kind>/<name>: container '<c>'" prefix


class OutputError(ValueError):
    pass


_SHAPE = tool_output.Shape("conftest", OutputError)


def _entries(stdout: str, tool: str) -> list[tuple[str, Mapping[str, object]]]:
    """conftest's JSON: a list of one object per file (null: no files), each with its place."""
    document = tool_output.load(stdout, tool, OutputError)
    return [
        (f"[{index}]", _SHAPE.mapping(entry, f"[{index}]"))
        for index, entry in enumerate(_SHAPE.items(document, "the output"))
    ]


def _messages(entry: Mapping[str, object], key: str, where: str) -> list[str | None]:
    """The `msg` of each item under `key` ("failures", "warnings"); None where it has none."""
    messages: list[str | None] = []
    for index, item in enumerate(_SHAPE.items(entry.get(key), f"{where}.{key}")):
        at = f"{where}.{key}[{index}]"
        messages.append(_SHAPE.optional_text(_SHAPE.mapping(item, at), "msg", at))
    return messages


def parse(stdout: str) -> tuple[list[PolicyResult], dict[str, int]]:
    """Failures and warnings per file, and the number of successes per file.

    Output of any other shape is an OutputError naming what differs.
    """
    results: list[PolicyResult] = []
    successes: dict[str, int] = {}
    for where, entry in _entries(stdout, "conftest"):
        filename = _SHAPE.text(entry, "filename", where)
        namespace = _SHAPE.text(entry, "namespace", where)
        successes[filename] = successes.get(filename, 0) + _SHAPE.count(entry, "successes", where)
        for level, key in (("failure", "failures"), ("warning", "warnings")):
            for found in _messages(entry, key, where):
                message = found or ""
                match = _MESSAGE.match(message)
                results.append(
                    PolicyResult(
                        filename=filename,
                        status=Status.FAILED if level == "failure" else Status.WARNING,
                        message=message,
                        kind=match["kind"] if match else None,
                        name=match["name"] if match else None,
                        container=match["container"] if match else None,
                        level=level,
                        namespace=namespace,
                        problem=match["problem"] if match else message,
                    )
                )
    return results, successes


def rule_id(message: str) -> str:
    """A stable id for a policy message: its problem text without the resource or container."""
    match = _MESSAGE.match(message)
    problem = match["problem"] if match else message
    slug = re.sub(r"[^a-z0-9]+", "-", problem.lower()).strip("-")
    return slug[:60] or "policy"


@dataclass(frozen=True)
class VerifyOutcome:
    passed: int
    failed: list[Finding]


def parse_verify(stdout: str, policy: str) -> VerifyOutcome:
    passed = 0
    failed: list[Finding] = []
    for where, entry in _entries(stdout, "conftest verify"):
        passed += _SHAPE.count(entry, "successes", where)
        file = _SHAPE.text(entry, "filename", where) or policy
        for message in _messages(entry, "failures", where):
            failed.append(
                Finding(
                    check="policy-verify",
                    message=message if message is not None else "policy unit test failed",
                    file=file,
                )
            )
    return VerifyOutcome(passed, failed)


# OPA's load errors on stderr: `policy/x.rego:5: rego_parse_error: unexpected } token`.
_LOAD_ERROR = re.compile(
    r"^(?:.*?\s)?(?P<file>[^\s:]+\.rego):(?P<line>[0-9]{1,9}): (?P<kind>rego_\w+_error): "
    r"(?P<message>.+)$",
    re.MULTILINE,
)


def load_errors(check: str, stderr: str, roots: Sequence[str]) -> list[Finding]:
    """Policies that OPA could not load, each at its file and line (relative to a root)."""
    findings: list[Finding] = []
    for found in _LOAD_ERROR.finditer(stderr):
        file = tool_output.under_root(found["file"], roots) or found["file"]
        findings.append(
            Finding(
                check=check,
                message=f"{found['kind']}: {found['message'].strip()}",
                status=Status.ERROR,
                file=file,
                line=int(found["line"]),
                rule=found["kind"],
            )
        )
    return findings
