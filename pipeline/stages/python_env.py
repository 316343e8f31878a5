"""Container preparation for the Python stages: the project's dependencies, installed with uv.

Only containers need this (`Step.container_setup`); on the host the project's
environment is the one gitops-pipeline runs in. A Python version other than
the image's is provided by uv into its own virtual environment.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.model import Arg, src
from pipeline.tools import get_tool

REQUIREMENTS = "/tmp/gitops-pipeline-requirements.txt"  # noqa: S108 - inside the step's container


def venv_path(python: str) -> str:
    return f"/opt/venv-{python}"


def setup(
    source: Path, project: str, tool_name: str, python: str | None = None
) -> tuple[tuple[tuple[Arg, ...], ...], str | None]:
    """Commands that install the project's dependencies (and a Python), and the argv0 to use."""
    tool = get_tool(tool_name)
    target: tuple[str, ...] = ("--system",)
    commands: list[tuple[Arg, ...]] = []
    argv0: str | None = None
    if python is not None:
        venv = venv_path(python)
        commands.append(("uv", "venv", "--python", python, venv))
        target = ("--python", f"{venv}/bin/python")
        argv0 = f"{venv}/bin/{tool.binary}"
        tool_install = next(c for c in tool.container_setup if tool.install_spec in c)
        commands.append(
            (
                "uv",
                "pip",
                "install",
                *target,
                *tool_install[tool_install.index(tool.install_spec) :],
            )
        )
    project_dir = source / project
    if (project_dir / "uv.lock").is_file():
        commands.append(
            (
                "uv",
                "export",
                "--frozen",
                "--all-extras",
                "--no-emit-project",
                "--no-hashes",
                "--project",
                src(project),
                "--output-file",
                REQUIREMENTS,
            )
        )
        commands.append(("uv", "pip", "install", *target, "-r", REQUIREMENTS))
    elif (project_dir / "pyproject.toml").is_file():
        commands.append(
            (
                "uv",
                "pip",
                "install",
                *target,
                "-r",
                src(f"{project}/pyproject.toml"),
                "--all-extras",
            )
        )
    elif (project_dir / "requirements.txt").is_file():
        commands.append(("uv", "pip", "install", *target, "-r", src(f"{project}/requirements.txt")))
    return tuple(commands), argv0
