"""helm lint and helm template for one chart in one environment."""

from __future__ import annotations

import re

from pipeline.discovery import RenderTarget
from pipeline.model import Arg, Finding, Status, Step, src

_LINT_LINE = re.compile(r"^\s*\[(?P<level>ERROR|WARNING)\]\s+(?P<where>[^:]+):\s*(?P<message>.*)$")
_ERROR_LINE = re.compile(r"^Error:\s*(?P<message>.*)$")
_FILE_AT = re.compile(r"(?P<file>[\w./-]+\.(?:ya?ml|tpl|txt|json)):(?P<line>\d+)")


def _values_args(target: RenderTarget) -> tuple[Arg, ...]:
    args: list[Arg] = []
    for values in target.values:
        args += ["--values", src(values)]
    return tuple(args)


def lint_step(target: RenderTarget, kube_version: str) -> Step:
    return Step(
        name=f"helm-lint:{target.key}",
        tool="helm",
        args=(
            "lint",
            "--strict",
            "--kube-version",
            kube_version,
            "--namespace",
            target.chart.namespace,
            *_values_args(target),
            src(target.chart.path),
        ),
        inputs=(src(target.chart.path), *(src(v) for v in target.values)),
    )


def template_step(target: RenderTarget, kube_version: str) -> Step:
    api_versions: list[str] = []
    for api in target.chart.api_versions:
        api_versions += ["--api-versions", api]
    return Step(
        name=f"helm-template:{target.key}",
        tool="helm",
        args=(
            "template",
            target.chart.release,
            src(target.chart.path),
            "--namespace",
            target.chart.namespace,
            "--kube-version",
            kube_version,
            "--include-crds",
            "--skip-tests",
            *api_versions,
            *_values_args(target),
        ),
        inputs=(src(target.chart.path), *(src(v) for v in target.values)),
    )


def _blocks(output: str, start: re.Pattern[str]) -> list[str]:
    """Helm 4 continues a message on indented lines; join each message into one line."""
    blocks: list[list[str]] = []
    for raw in output.splitlines():
        if start.match(raw):
            blocks.append([raw.strip()])
        elif blocks and raw.startswith((" ", "\t")) and raw.strip():
            blocks[-1].append(raw.strip())
    return [" ".join(block) for block in blocks]


def _located(target: RenderTarget, message: str) -> tuple[str | None, int | None]:
    at = _FILE_AT.search(message)
    if not at:
        return None, None
    inside = at["file"].split("/", 1)[1] if "/" in at["file"] else at["file"]
    return f"{target.chart.path}/{inside}", int(at["line"])


def lint_findings(target: RenderTarget, output: str) -> list[Finding]:
    findings: list[Finding] = []
    for block in _blocks(output, _LINT_LINE):
        match = _LINT_LINE.match(block)
        if not match:
            continue
        message = match["message"]
        file, line = _located(target, message)
        if file is None:
            file = f"{target.chart.path}/{match['where'].strip()}"
        findings.append(
            Finding(
                check="helm-lint",
                message=f"[{match['level']}] {message}",
                file=file,
                line=line,
                chart=target.chart.name,
                environment=target.environment,
            )
        )
    return findings


def template_error(target: RenderTarget, stderr: str) -> Finding:
    """The error helm template stops at, with the template file and line when helm gives them."""
    blocks = _blocks(stderr, _ERROR_LINE)
    message = blocks[0].removeprefix("Error:").strip() if blocks else stderr.strip()
    file, line = _located(target, message)
    return Finding(
        check="render",
        message=message or "helm template failed",
        status=Status.FAILED,
        file=file,
        line=line,
        chart=target.chart.name,
        environment=target.environment,
    )
