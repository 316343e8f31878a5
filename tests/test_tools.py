"""One tool table, read the same way by both runners, the dev extra and the install script."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, requires_tools
from dagger import dag

from pipeline.errors import ConfigError, SetupError, ToolVersionError
from pipeline.model import CONTAINER_MOUNTS, Root, SecretRef, Step, out, src
from pipeline.runners.dagger_runner import DaggerRunner
from pipeline.tools import (
    INSTALL_SCRIPT,
    PYTHON_IMAGE,
    TOOLS,
    Source,
    get_tool,
    go_install_lines,
    inspect_tool,
    require,
)

# Tools with an image (every tool but the host-only kubeseal, used by the interop tests).
CONTAINER_TOOLS = {name: tool for name, tool in TOOLS.items() if tool.image}
IMAGE = re.compile(r"^(?P<repository>[^@]+):(?P<tag>[^:@/]+)@sha256:(?P<digest>[0-9a-f]{64})$")


def selections(container: Any) -> list[tuple[str, dict[str, Any]]]:
    """The query chain dagger-io built, as (field, args); nothing is sent anywhere."""
    return [(field.name, field.args) for field in container._ctx.selections]


def built(tool: str, tmp_path: Path, **step: Any) -> list[tuple[str, dict[str, Any]]]:
    runner = DaggerRunner(source=dag.directory(), out=tmp_path)
    return selections(runner.executed(Step(name="t", tool=tool, args=("--version",), **step)))


@pytest.mark.parametrize("tool", CONTAINER_TOOLS.values(), ids=list(CONTAINER_TOOLS))
def test_image_is_pinned_by_tag_and_digest(tool: Any) -> None:
    match = IMAGE.match(tool.image)
    assert match, f"{tool.name}: image {tool.image!r} is not repository:tag@sha256:digest"


@pytest.mark.parametrize("tool", CONTAINER_TOOLS.values(), ids=list(CONTAINER_TOOLS))
def test_image_carries_the_pinned_version(tool: Any) -> None:
    match = IMAGE.match(tool.image)
    assert match is not None
    if tool.source is Source.GO:
        # the tool's own image: its tag is the version (kubeconform and conftest add a v)
        assert match["tag"].removeprefix("v") == tool.version
        assert tool.container_setup == ()
    elif tool.source is Source.PYPI:
        # a base image: exactly one setup command installs exactly the pinned version
        installs = [c for c in tool.container_setup if f"{tool.package}=={tool.version}" in c]
        assert len(installs) == 1
        assert not [
            c for c in installs[0] if c.startswith(f"{tool.package}==") and c != tool.install_spec
        ]
    else:
        assert tool.source is Source.DEBIAN
        installs = [c for c in tool.container_setup if c[:2] == ("apt-get", "install")]
        assert len(installs) == 1
        assert f"{tool.package}={tool.version}" in installs[0]
        assert [c for c in installs[0][2:] if not c.startswith("-")] == [tool.install_spec]


@pytest.mark.parametrize("tool", CONTAINER_TOOLS.values(), ids=list(CONTAINER_TOOLS))
def test_dagger_runner_starts_from_the_table_image(tool: Any, tmp_path: Path) -> None:
    chain = built(tool.name, tmp_path)

    names = [name for name, _ in chain]
    assert names[:2] == ["container", "from"]
    assert chain[1][1] == {"address": tool.image}
    setup = [args["args"] for name, args in chain if name == "withExec"][:-1]
    assert setup == [list(command) for command in tool.container_setup]
    name, args = chain[-1]
    assert name == "withExec"
    command = [tool.argv0_in_container(), "--version"]
    if tool.container_timeout:
        # Stopped in the container at the step's limit (600s by default), by GNU timeout.
        command = ["timeout", "--signal=TERM", "--kill-after=5", "600", *command]
    assert args["args"] == command


def test_a_host_only_tool_is_refused_in_containers_naming_the_override(tmp_path: Path) -> None:
    assert [name for name, tool in TOOLS.items() if not tool.image] == ["kubeseal"]
    with pytest.raises(SetupError, match=r"kubeseal has no pinned image.*tools\.kubeseal\.image"):
        built("kubeseal", tmp_path)


def test_dagger_runner_follows_a_change_in_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = "registry.example/helm:9.9.9@sha256:" + "0" * 64
    monkeypatch.setitem(TOOLS, "helm", dataclasses.replace(TOOLS["helm"], image=image))

    assert built("helm", tmp_path)[1] == ("from", {"address": image})


def test_dagger_container_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext = "never-in-a-query-3d9a"
    monkeypatch.setenv("PIPELINE_TEST_SECRET", plaintext)
    chain = built(
        "kubeconform",
        tmp_path,
        workdir=src("charts"),
        env=(("KUBECONFORM_X", "1"),),
        secrets=(SecretRef("TOKEN", "env:PIPELINE_TEST_SECRET"),),
    )
    fields = dict(chain)

    assert fields["withMountedDirectory"]["path"] == CONTAINER_MOUNTS[Root.SOURCE] == "/src"
    assert fields["withMountedDirectory"]["readOnly"] is True
    assert fields["withDirectory"]["path"] == CONTAINER_MOUNTS[Root.OUT] == "/out"
    assert fields["withEnvVariable"] == {"name": "KUBECONFORM_X", "value": "1"}
    assert fields["withSecretVariable"]["name"] == "TOKEN"
    assert fields["withWorkdir"] == {"path": "/src/charts"}
    assert plaintext not in repr(chain)


def test_dagger_runner_maps_refs_to_mount_points(tmp_path: Path) -> None:
    runner = DaggerRunner(source=dag.directory(), out=tmp_path)
    step = Step(name="t", tool="conftest", args=("test", src("policy"), out("rendered/a.yaml")))

    argv = selections(runner.executed(step))[-1][1]["args"]

    assert argv == ["conftest", "test", "/src/policy", "/out/rendered/a.yaml"]


def test_helm_cache_is_a_cache_volume(tmp_path: Path) -> None:
    fields = dict(built("helm", tmp_path))

    assert fields["withMountedCache"]["path"] == "/cache/helm"
    assert ("withEnvVariable", {"name": "HELM_CACHE_HOME", "value": "/cache/helm"}) in built(
        "helm", tmp_path
    )


@requires_tools("helm", "kubeconform", "conftest")
@pytest.mark.parametrize("name", list(TOOLS))
def test_local_runner_finds_the_table_version(name: str) -> None:
    tool = TOOLS[name]
    status = inspect_tool(tool)
    if status.path is None:
        pytest.skip(f"{name} is not installed on this host: {tool.install_hint}")

    assert require(name) == status.path
    if tool.source is not Source.DEBIAN:  # the host's git is accepted at any version
        assert status.installed_version == tool.version
        assert status.ok


@requires_tools("helm")
def test_require_checks_the_table_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TOOLS, "helm", dataclasses.replace(TOOLS["helm"], version="4.2.5"))

    with pytest.raises(ToolVersionError) as caught:
        require("helm")

    assert (caught.value.found, caught.value.pinned) == ("4.2.4", "4.2.5")
    assert "helm.sh/helm/v4/cmd/helm@v4.2.5" in str(caught.value)


def test_unknown_tool_is_a_config_error() -> None:
    known = r"known: actionlint, conftest, detect-secrets, docker, git, helm"
    with pytest.raises(ConfigError, match=rf"unknown tool 'helmfile'.*{known}"):
        get_tool("helmfile")


def test_dev_extra_pins_the_python_tools_to_the_table() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = dict(
        requirement.split("==", 1)
        for requirement in pyproject["project"]["optional-dependencies"]["dev"]
        if "==" in requirement
    )
    python_tools = [t for t in TOOLS.values() if t.source is Source.PYPI]

    assert {t.name for t in python_tools} == {
        "ruff",
        "mypy",
        "pytest",
        "kubernetes-validate",
        "detect-secrets",
    }
    for tool in python_tools:
        assert pins.get(tool.package) == tool.version, tool.name
    schemas_extra = pyproject["project"]["optional-dependencies"]["schemas"]
    assert schemas_extra == [f"kubernetes-validate=={TOOLS['kubernetes-validate'].version}"]
    # The secrets container's cryptography is the extra's, which the host runs in-process.
    secrets_extra = pyproject["project"]["optional-dependencies"]["secrets"]
    crypto = next(c for c in TOOLS["detect-secrets"].container_setup[-1] if "cryptography" in c)
    assert secrets_extra == [crypto, TOOLS["detect-secrets"].install_spec]
    assert crypto in pyproject["project"]["optional-dependencies"]["dev"]


def test_the_module_runtime_installs_nothing_heavy() -> None:
    """`uv sync --no-dev` installs [project].dependencies only: no schema package there."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = [re.split(r"[<>=!~; ]", r, maxsplit=1)[0] for r in pyproject["project"]["dependencies"]]
    assert "kubernetes-validate" not in names
    assert "dagger-io" in names


def test_the_module_base_image_is_the_pinned_python_image() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["dagger"]["base-image"] == PYTHON_IMAGE


def test_python_m_pipeline_tools_prints_the_go_install_lines() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.tools"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    lines = completed.stdout.splitlines()
    assert lines == go_install_lines()
    go_tools = {t.name: t for t in TOOLS.values() if t.source is Source.GO}
    assert [line.split(" ")[0] for line in lines] == list(go_tools)
    for line in lines:
        name, spec, ldflag = line.split(" ")
        tool = go_tools[name]
        assert spec == f"{tool.package}@v{tool.version}"
        assert ldflag.endswith(tool.version), ldflag  # stamped with the pinned version
    assert (
        "helm helm.sh/helm/v4/cmd/helm@v4.2.4 helm.sh/helm/v4/internal/version.version=v4.2.4"
    ) in lines


@pytest.mark.parametrize(
    ("tool", "argv"),
    [
        ("helm", ("version", "--short")),
        ("kubeconform", ("-v",)),
        ("conftest", ("--version",)),
        ("actionlint", ("--version",)),
        ("kubeseal", ("--version",)),
    ],
)
def test_installed_go_tools_report_their_pinned_version(tool: str, argv: tuple[str, ...]) -> None:
    """As the projects' own builds (and images) do: `--version` names the pinned release."""
    binary = require(tool)
    shown = subprocess.run(
        [str(binary), *argv], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert TOOLS[tool].version in shown.splitlines()[0], shown


def test_install_script_takes_its_versions_from_the_table() -> None:
    script = REPO_ROOT / INSTALL_SCRIPT
    assert script.is_file(), f"{INSTALL_SCRIPT} is named in every install hint but does not exist"
    text = script.read_text(encoding="utf-8")

    assert "-m pipeline.tools" in text
    assert "go install" in text
    for tool in TOOLS.values():
        if tool.source is Source.GO:
            assert tool.version not in text, f"{INSTALL_SCRIPT} hard-codes {tool.name}'s version"


def test_install_script_without_a_venv_says_in_one_line_what_to_run(tmp_path: Path) -> None:
    completed = subprocess.run(
        ["bash", str(REPO_ROOT / INSTALL_SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "no-venv" / "python")},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert completed.returncode == 3
    assert completed.stderr.count("\n") == 1
    assert "create the venv first: python3 -m venv .venv" in completed.stderr
