"""ruff check (JSON findings) and ruff format --check --diff, in the project's own directory.

Running from the project directory makes ruff honour that project's configuration.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from pipeline.model import Finding, Status, Step, src
from pipeline.stages import python_env, tool_output

# A line number of more digits than any file has is not one (and int() refuses 4300 digits).
_DIFF_FILE = re.compile(
    r"^--- (?P<file>\S+)\n\+\+\+ \S+\n@@ -(?P<line>[0-9]{1,9})(?![0-9])", re.MULTILINE
)


def check_step(source: Path, project: str) -> Step:
    setup, _ = python_env.setup(source, project, "ruff")
    return Step(
        name=f"ruff-check:{project}",
        tool="ruff",
        args=("check", "--output-format", "json", "--no-fix", "--force-exclude", "."),
        workdir=src(project),
        inputs=(src(project),),
        container_setup=setup,
    )


def format_step(source: Path, project: str) -> Step:
    setup, _ = python_env.setup(source, project, "ruff")
    return Step(
        name=f"ruff-format:{project}",
        tool="ruff",
        args=("format", "--check", "--diff", "--force-exclude", "."),
        workdir=src(project),
        inputs=(src(project),),
        container_setup=setup,
    )


class OutputError(ValueError):
    pass


def _relative(project: str, filename: str) -> str:
    path = PurePosixPath(filename)
    if path.is_absolute():
        # ruff prints absolute paths; the project directory is the last part we know of.
        parts = path.parts
        marker = PurePosixPath(project).name
        if project not in {"", "."} and marker in parts:
            return str(PurePosixPath(project, *parts[len(parts) - parts[::-1].index(marker) :]))
        return filename
    return str(PurePosixPath(project) / path) if project not in {"", "."} else str(path)


_SHAPE = tool_output.Shape("ruff", OutputError)


def check_findings(project: str, stdout: str, root: str = "") -> list[Finding]:
    """ruff's JSON findings; output of any other shape is an OutputError naming what differs."""
    items = _SHAPE.items(tool_output.load(stdout or "[]", "ruff", OutputError), "the output")
    findings: list[Finding] = []
    for index, entry in enumerate(items):
        where = f"[{index}]"
        item = _SHAPE.mapping(entry, where)
        filename = _SHAPE.text(item, "filename", where)
        if root and filename.startswith(root):
            filename = filename[len(root) :].lstrip("/")
        else:
            filename = _relative(project, filename)
        location = item.get("location")
        at = f"{where}.location"
        row = None
        if location is not None:
            row = _SHAPE.optional_integer(_SHAPE.mapping(location, at), "row", at)
        findings.append(
            Finding(
                check="ruff",
                message=_SHAPE.text(item, "message", where),
                file=filename,
                line=row,
                rule=_SHAPE.text(item, "code", where) or "syntax-error",
            )
        )
    return findings


def format_findings(project: str, stdout: str) -> list[Finding]:
    prefix = "" if project in {"", "."} else f"{project}/"
    return [
        Finding(
            check="ruff-format",
            message="would be reformatted (see ruff-format.diff)",
            file=f"{prefix}{match['file']}",
            line=int(match["line"]),
            rule="format",
            status=Status.FAILED,
        )
        for match in _DIFF_FILE.finditer(stdout)
    ]
