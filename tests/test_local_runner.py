"""LocalRunner with the real pinned binaries: env, cwd, timeouts, missing tools and secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO_ROOT, fixture_repo, requires_tools

from pipeline.errors import ConfigError, ToolMissingError, ToolVersionError
from pipeline.model import SecretRef, Step, out, src
from pipeline.references import read_reference_text
from pipeline.runners.local import REDACTED, TIMEOUT_EXIT_CODE, LocalRunner
from pipeline.runners.recording import describe
from pipeline.tools import INSTALL_SCRIPT, TOOLS, TOOLS_DIR_ENV, go_module_version, tools_dir

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-Value-7f1c9e"  # noqa: S105 - a made-up value to look for in output


@pytest.fixture
def runner(tmp_path: Path) -> LocalRunner:
    (tmp_path / "out").mkdir()
    return LocalRunner(source=fixture_repo("ok", tmp_path), out=tmp_path / "out")


def helm_env(stdout: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in stdout.splitlines() if "=" in line)
    return {name: value.strip('"') for name, _, value in pairs}


@requires_tools("helm")
async def test_step_env_reaches_the_tool(runner: LocalRunner) -> None:
    step = Step(
        name="env",
        tool="helm",
        args=("env",),
        env=(("HELM_NAMESPACE", "from-step"), ("HELM_MAX_HISTORY", "7")),
    )

    result = await runner.run(step)

    assert result.ok, result.stderr
    printed = helm_env(result.stdout)
    assert printed["HELM_NAMESPACE"] == "from-step"
    assert printed["HELM_MAX_HISTORY"] == "7"
    assert result.step is step


@requires_tools("helm")
async def test_step_env_overrides_the_inherited_environment(
    runner: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELM_NAMESPACE", "inherited")
    monkeypatch.setenv("HELM_KUBECONTEXT", "inherited-context")
    step = Step(name="env", tool="helm", args=("env",), env=(("HELM_NAMESPACE", "step"),))

    printed = helm_env((await runner.run(step)).stdout)

    assert printed["HELM_NAMESPACE"] == "step"
    assert printed["HELM_KUBECONTEXT"] == "inherited-context"


@requires_tools("helm")
async def test_workdir_is_the_tools_cwd(runner: LocalRunner) -> None:
    # a relative chart path only resolves when the tool runs inside charts/
    step = Step(name="show", tool="helm", args=("show", "chart", "web"), workdir=src("charts"))

    result = await runner.run(step)

    assert result.ok, result.stderr
    assert "name: web" in result.stdout
    elsewhere = await runner.run(Step(name="show", tool="helm", args=("show", "chart", "web")))
    assert not elsewhere.ok


@requires_tools("helm")
async def test_refs_resolve_to_the_roots_and_outputs_are_reported(runner: LocalRunner) -> None:
    step = Step(
        name="template",
        tool="helm",
        args=("template", "web", src("charts/web"), "--output-dir", out("manifests")),
        outputs=("manifests/web/templates/service.yaml", "manifests/never-written.yaml"),
    )

    result = await runner.run(step)

    assert result.ok, result.stderr
    assert (runner.out / "manifests" / "web" / "templates" / "deployment.yaml").is_file()
    assert result.outputs == ("manifests/web/templates/service.yaml",)
    assert result.duration > 0


@requires_tools("helm")
async def test_non_zero_exit_is_a_result_not_an_exception(runner: LocalRunner) -> None:
    result = await runner.run(Step(name="bad", tool="helm", args=("template", "x", src("nope"))))

    assert result.exit_code == 1
    assert not result.ok
    assert "nope" in result.stderr


@requires_tools("kubeconform")
async def test_stdin_is_passed_to_the_tool(runner: LocalRunner) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-stdin}\ndata: {a: b}\n"
    step = Step(
        name="stdin",
        tool="kubeconform",
        args=("-summary", "-output", "json", "-skip", "ConfigMap", "-"),
        stdin=manifest,
    )

    result = await runner.run(step)

    assert result.ok, result.stderr
    assert '"skipped": 1' in result.stdout


@requires_tools("kubeconform")
async def test_timeout_kills_the_tool_and_exits_124(runner: LocalRunner) -> None:
    # Opening a FIFO blocks until a writer appears, which never happens: a real hang.
    os.mkfifo(runner.source / "blocked.yaml")
    step = Step(name="hang", tool="kubeconform", args=(src("blocked.yaml"),), timeout=0.5)

    result = await runner.run(step)

    assert result.exit_code == TIMEOUT_EXIT_CODE == 124
    assert "timed out after 0.5s" in result.stderr
    assert result.duration < 10


async def test_missing_tool_names_the_tool_and_install_script(
    runner: LocalRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(TOOLS_DIR_ENV, str(empty))
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(ToolMissingError) as caught:
        await runner.run(Step(name="lint", tool="helm", args=("version",)))

    assert caught.value.exit_code == 3
    assert caught.value.tool == "helm"
    assert "'helm'" in str(caught.value)
    assert f"bash {INSTALL_SCRIPT}" in str(caught.value)
    assert INSTALL_SCRIPT == "ci/install-tools.sh"


def test_tools_dir_follows_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOOLS_DIR_ENV, str(tmp_path))
    assert tools_dir() == tmp_path
    monkeypatch.delenv(TOOLS_DIR_ENV)
    assert tools_dir() == REPO_ROOT / ".tools" / "bin"


@requires_tools("kubeconform")
async def test_wrong_version_is_refused(
    runner: LocalRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kubeconform 0.7.0 installed under the name helm: a helm of the wrong version
    fake = tmp_path / "fake-tools"
    fake.mkdir()
    (fake / "helm").symlink_to(REPO_ROOT / ".tools" / "bin" / "kubeconform")
    monkeypatch.setenv(TOOLS_DIR_ENV, str(fake))

    with pytest.raises(ToolVersionError) as caught:
        await runner.run(Step(name="v", tool="helm", args=("version",)))

    assert caught.value.exit_code == 3
    assert (caught.value.found, caught.value.pinned) == ("0.7.0", TOOLS["helm"].version)
    assert str(fake / "helm") in str(caught.value)
    assert INSTALL_SCRIPT in str(caught.value)


@requires_tools("helm", "kubeconform", "conftest")
@pytest.mark.parametrize("name", ["helm", "kubeconform", "conftest"])
def test_go_module_version_reads_the_build_info(name: str) -> None:
    assert go_module_version(REPO_ROOT / ".tools" / "bin" / name) == TOOLS[name].version


def test_go_module_version_of_a_non_go_file_is_none(tmp_path: Path) -> None:
    script = tmp_path / "helm"
    script.write_bytes(b"#!/bin/sh\necho 4.2.4\n")

    assert go_module_version(script) is None


@requires_tools("helm")
async def test_secret_reaches_the_child_env_and_is_redacted_from_stdout(
    runner: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_TEST_SECRET", SECRET)
    secret = SecretRef("HELM_REGISTRY_CONFIG", "env:PIPELINE_TEST_SECRET")
    step = Step(name="env", tool="helm", args=("env",), secrets=(secret,))

    result = await runner.run(step)

    assert result.ok, result.stderr
    # helm printed the variable it received; the value itself was replaced
    assert helm_env(result.stdout)["HELM_REGISTRY_CONFIG"] == REDACTED
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    # the secret is passed by reference: neither the argv nor the printed plan holds it
    assert all(SECRET not in str(arg) for arg in step.args)
    assert SECRET not in describe(step)
    assert "[secret HELM_REGISTRY_CONFIG from env:PIPELINE_TEST_SECRET]" in describe(step)


@requires_tools("conftest")
async def test_secret_is_redacted_from_stderr(
    runner: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # conftest takes --policy from CONFTEST_POLICY and names the missing path in its error
    monkeypatch.setenv("PIPELINE_TEST_SECRET", f"/nonexistent/{SECRET}")
    step = Step(
        name="policy",
        tool="conftest",
        args=("test", src("charts/web/values.yaml")),
        secrets=(SecretRef("CONFTEST_POLICY", "env:PIPELINE_TEST_SECRET"),),
    )

    result = await runner.run(step)

    assert not result.ok
    assert f"stat {REDACTED}" in result.stderr
    assert SECRET not in result.stderr
    assert SECRET not in result.stdout


@requires_tools("helm")
async def test_file_secret_is_read_without_trailing_newline(
    runner: LocalRunner, tmp_path: Path
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(f"{SECRET}\n", encoding="utf-8")
    secret = SecretRef("HELM_REGISTRY_CONFIG", f"file:{secret_file}")

    result = await runner.run(Step(name="env", tool="helm", args=("env",), secrets=(secret,)))

    assert helm_env(result.stdout)["HELM_REGISTRY_CONFIG"] == REDACTED


@requires_tools("helm")
async def test_missing_secret_variable_is_a_config_error_without_values(
    runner: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_TEST_SECRET", SECRET)
    monkeypatch.delenv("PIPELINE_TEST_UNSET", raising=False)
    step = Step(
        name="env",
        tool="helm",
        args=("env",),
        secrets=(
            SecretRef("HELM_REGISTRY_CONFIG", "env:PIPELINE_TEST_SECRET"),
            SecretRef("HELM_REPOSITORY_CONFIG", "env:PIPELINE_TEST_UNSET"),
        ),
    )

    with pytest.raises(ConfigError) as caught:
        await LocalRunner(source=runner.source, out=runner.out).run(step)

    assert caught.value.exit_code == 2
    assert "PIPELINE_TEST_UNSET" in str(caught.value)
    assert "HELM_REPOSITORY_CONFIG" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_secret_source_must_be_env_or_file() -> None:
    with pytest.raises(ValueError, match="env:NAME or file:PATH"):
        SecretRef("TOKEN", "literal:hunter2")
    with pytest.raises(ValueError, match="env:NAME or file:PATH"):
        SecretRef("TOKEN", "env:")


def test_a_secret_file_that_is_not_utf8_is_named_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_bytes(b"\xffs3cr3t\n")
    with pytest.raises(ConfigError) as caught:
        read_reference_text(f"file:{secret}", "--registry-password")
    assert caught.value.field == "--registry-password"
    assert f"file:{secret} is not UTF-8 text" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
