"""The Dagger layer, offline: registration as the engine sees it, and real stage queries.

No engine runs here. dagger-io builds queries lazily, so `capture` records the
GraphQL each function would send and validates it against the engine's schema.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import graphql
import pytest
from dagger import dag
from dagger.mod import default_module

from pipeline import module as pipeline_module
from pipeline.cli import VERBS
from pipeline.config import load_config
from pipeline.dagger_images import DaggerImages
from pipeline.discovery import plan_targets
from pipeline.model import SecretRef, Step, out
from pipeline.release import ReleaseOptions
from pipeline.runners.dagger_runner import DaggerRunner
from pipeline.stages import git, helm, kubeconform
from pipeline.testing.dagger_capture import QueryRecorder, capture
from pipeline.tools import TOOLS

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "dagger" / "schema-v0.21.8.graphqls"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not SCHEMA.is_file(), reason=f"Dagger engine schema not found at {SCHEMA} (../shared)"
    ),
]

EXPECTED_FUNCTIONS = {
    "render",
    "kubeconform",
    "policy",
    "validate",
    "check",
    "plan",
    "tools",
    "tool_env",
    "schemas",
    "lint",
    "typecheck",
    "test",
    "ci",
    "lint_env",
    "typecheck_env",
    "test_env",
    "version",
    "changelog",
    "build",
    "publish",
    "release",
    "policies",
    "seal",
    "argocd",
    "notify",
    "promote",
    "diff",
}


@dataclass
class Registered:
    description: str = ""
    args: dict[str, dict[str, object]] = field(default_factory=dict)


def _argument_values(node: graphql.FieldNode) -> dict[str, object]:
    return {
        arg.name.value: graphql.value_from_ast_untyped(arg.value) for arg in node.arguments or ()
    }


def _walk(node: graphql.FieldNode, into: Registered) -> None:
    values = _argument_values(node)
    if node.name.value == "withDescription":
        into.description = str(values["description"])
    if node.name.value == "withArg":
        into.args[str(values["name"])] = values
    for child in node.selection_set.selections if node.selection_set else ():
        assert isinstance(child, graphql.FieldNode)
        _walk(child, into)


def registered_functions(recorder: QueryRecorder) -> dict[str, Registered]:
    functions: dict[str, Registered] = {}
    for query in recorder.queries:
        document = graphql.parse(query.document)
        operation = document.definitions[0]
        assert isinstance(operation, graphql.OperationDefinitionNode)
        root = operation.selection_set.selections[0]
        assert isinstance(root, graphql.FieldNode)
        if root.name.value == "function":
            registered = Registered()
            _walk(root, registered)
            functions[str(_argument_values(root)["name"])] = registered
    return functions


@pytest.fixture(scope="module")
def registration() -> tuple[dict[str, Registered], list[str]]:
    import anyio  # noqa: PLC0415

    module = default_module()
    module._main_name = "Pipeline"
    module._main = module._objects["Pipeline"]

    async def register() -> tuple[dict[str, Registered], list[str]]:
        with capture(SCHEMA) as recorder:
            await module._typedefs()
        return registered_functions(recorder), recorder.errors()

    return anyio.run(register)


def test_registration_queries_are_valid_against_the_engine_schema(registration):
    _, errors = registration
    assert errors == []


def test_every_function_registers_with_a_docstring(registration):
    functions, _ = registration
    assert set(functions) == EXPECTED_FUNCTIONS | {""}  # "" is the constructor
    for name, registered in functions.items():
        assert registered.description.strip(), f"function {name!r} has no description"


def test_constructor_takes_the_repository_with_default_path_and_ignore(registration):
    functions, _ = registration
    source = functions[""].args["source"]
    assert source["defaultPath"] == "/"
    ignore = source["ignore"]
    assert isinstance(ignore, list)
    assert {".git", ".venv", ".tools", "artifacts"} <= set(ignore)


def test_arguments_and_defaults_are_registered(registration):
    functions, _ = registration
    validate = functions["validate"].args
    assert set(validate) == {
        "env",
        "schema_location",
        "crd_schemas",
        "release_version",
        "allow_empty",
        "offline",
        "changed_since",
        "git_dir",
        "cert",
    }
    assert validate["env"]["defaultValue"] == "null"
    assert validate["changed_since"]["defaultValue"] == '""'
    assert validate["git_dir"]["defaultValue"] == "null"  # the history only when asked for
    assert validate["allow_empty"]["defaultValue"] == "false"
    assert validate["release_version"]["defaultValue"] == '""'
    assert functions["schemas"].args["kubernetes_version"]["defaultValue"] == '"1.35.0"'
    assert "defaultValue" not in functions["tool_env"].args["tool"]  # required


def test_cli_verbs_and_dagger_functions_are_the_same_set():
    # The step cache is the local runner's: in Dagger the engine's own cache does that work.
    host_only = {"cache"}
    cli = {name.replace("-", "_") for name in VERBS} - host_only
    containers = {"tool_env", "lint_env", "typecheck_env", "test_env"}
    dagger_functions = set(EXPECTED_FUNCTIONS) - {"check"} - containers
    assert cli == dagger_functions


def _documents(recorder: QueryRecorder) -> str:
    """All queries on one line, without dagger-io's field aliases, for substring checks."""
    text = " ".join(" ".join(q.document for q in recorder.queries).split())
    text = re.sub(r"\b(\w+): \1\b", r"\1", text)
    return text.replace("( ", "(").replace(" )", ")").replace('", "', '" "')


async def test_helm_template_step_query_is_valid_and_uses_the_pinned_image(tmp_path):
    config = load_config(REPO)
    target = next(t for t in plan_targets(config) if t.key == "chat/dev")
    with capture(SCHEMA) as recorder:
        runner = DaggerRunner(source=dag.directory(), out=tmp_path)
        result = await runner.run(helm.template_step(target, "1.35.0"))
    assert recorder.errors() == []
    text = _documents(recorder)
    assert f'from(address: "{TOOLS["helm"].image}")' in text
    assert 'withMountedDirectory(path: "/src"' in text
    assert '"/src/charts/chat/values-dev.yaml"' in text
    assert 'withMountedCache(path: "/cache/helm"' in text
    assert result.exit_code == 0


async def test_kubeconform_step_copies_rendered_inputs_and_runs_its_binary(tmp_path):
    rendered = tmp_path / "rendered" / "web" / "dev.yaml"
    rendered.parent.mkdir(parents=True)
    rendered.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    step = kubeconform.step([out("rendered/web/dev.yaml")], "1.35.0", ["default"])
    with capture(SCHEMA) as recorder:
        await DaggerRunner(source=dag.directory(), out=tmp_path).run(step)
    assert recorder.errors() == []
    text = " ".join(_documents(recorder).split())
    # Earlier artifacts come in by one host directory call, only the files the step declared.
    assert f'host {{ directory(path: "{tmp_path}" include: ["rendered/web/dev.yaml"' in text
    assert '"/kubeconform"' in text
    assert '"/out/rendered/web/dev.yaml"' in text


async def test_declared_outputs_are_exported(tmp_path):
    step = Step(name="x", tool="conftest", args=("--version",), outputs=("report.json",))
    with capture(SCHEMA) as recorder:
        await DaggerRunner(source=dag.directory(), out=tmp_path).run(step)
    assert recorder.errors() == []
    text = " ".join(_documents(recorder).split())
    assert 'directory(path: "/out")' in text
    assert 'include: ["report.json" "report.json/**"]' in text
    assert "export(" in text


async def test_secrets_travel_by_reference_never_as_plaintext(tmp_path, monkeypatch):
    plaintext = "s3cr3t-registry-password"
    monkeypatch.setenv("REGISTRY_PASSWORD", plaintext)
    step = Step(
        name="login",
        tool="helm",
        args=("registry", "login", "ghcr.io", "--password-stdin"),
        secrets=(SecretRef("HELM_REGISTRY_PASSWORD", "env:REGISTRY_PASSWORD"),),
    )
    with capture(SCHEMA) as recorder:
        await DaggerRunner(source=dag.directory(), out=tmp_path).run(step)
    assert recorder.errors() == []
    assert not recorder.contains_text(plaintext)
    assert recorder.contains_text("env://REGISTRY_PASSWORD")
    assert "withSecretVariable" in _documents(recorder)


async def test_validate_function_sends_only_valid_queries(tmp_path, monkeypatch):
    fixture = REPO / "tests" / "fixtures" / "repos" / "ok"

    async def local_copy(_self: object, workdir: Path) -> Path:
        target = workdir / "source"
        shutil.copytree(fixture, target)
        return target

    monkeypatch.setattr(pipeline_module.Pipeline, "_local_source", local_copy)
    with capture(SCHEMA) as recorder:
        pipeline = pipeline_module.Pipeline(source=dag.directory())
        artifacts = await pipeline.validate(env=["dev"])
        await artifacts.export(str(tmp_path / "exported"))
    assert recorder.errors() == []
    text = _documents(recorder)
    for tool in ("helm", "kubeconform", "conftest"):
        assert TOOLS[tool].image in text, f"{tool} never ran in its pinned image"
    assert '"summary.json" "summary.json/**"' in text  # the artifacts, from the local run
    # The built-in pack, mounted from the module's own source; the fixture has no policies of
    # its own, so there are no unit tests of theirs to verify.
    assert '"conftest" "test" "--policy" "/opt/gitops-pipeline/pipeline/policies"' in text
    assert '"conftest" "verify"' not in text


def _release_options(**overrides: object) -> ReleaseOptions:
    values: dict[str, object] = {
        "image": "ghcr.io/acme/chat",
        "dockerfile": "app/Dockerfile",
        "context": "app",
        "registry_username": "bot",
        "build_args": (("PYTHON", "3.12"),),
    }
    values.update(overrides)
    return ReleaseOptions(**values)  # type: ignore[arg-type]


async def test_dagger_images_build_and_publish_every_tag_with_auth_by_reference():
    plaintext = "ghp_never-in-a-query"
    tags = ["1.2.3", "1.2", "1", "latest", "sha-abc1234"]
    with capture(SCHEMA) as recorder:
        password = dag.secret("env://REGISTRY_TOKEN")
        images = DaggerImages(
            dag.directory(), _release_options(), password, platforms=("linux/amd64", "linux/arm64")
        )
        labels = {"org.opencontainers.image.version": "1.2.3"}
        built = await images.build(labels=labels, revision="abc1234def")
        pushed = await images.push(built, tags=tags)
    assert recorder.errors() == []
    assert [p.ref for p in pushed] == [f"ghcr.io/acme/chat:{t}" for t in tags]
    text = _documents(recorder)
    # The context is app/, and app/Dockerfile is dagger's default name inside it.
    assert 'directory(path: "app") { dockerBuild(platform: "linux/amd64"' in text
    assert '{ name: "PYTHON", value: "3.12" }' in text
    assert 'platform: "linux/arm64"' in text
    assert 'withLabel(name: "org.opencontainers.image.version", value: "1.2.3")' in text
    assert 'withRegistryAuth(address: "ghcr.io" username: "bot"' in text
    for tag in tags:
        assert f'publish(address: "ghcr.io/acme/chat:{tag}"' in text
    assert "platformVariants" in text
    assert not recorder.contains_text(plaintext)


async def test_a_step_that_writes_the_source_hands_its_result_to_the_next_step(tmp_path):
    with capture(SCHEMA) as recorder:
        runner = DaggerRunner(source=dag.directory(), out=tmp_path)
        original = runner.source
        await runner.run(git.annotate_tag_step("v1.0.0", "Release 1.0.0", "abc", ("bot", "b@x")))
        assert runner.source is not original
        (tmp_path / ".cache").mkdir()
        (tmp_path / ".cache" / "askpass.sh").write_text(git.ASKPASS_SCRIPT)
        (tmp_path / ".cache" / "askpass.sh").chmod(0o700)
        token = SecretRef("GIT_TOKEN", "env:GITOPS_PIPELINE_GIT_TOKEN")
        await runner.run(git.push_tag_step("origin", "v1.0.0", out(".cache/askpass.sh"), token))
    assert recorder.errors() == []
    text = _documents(recorder)
    assert 'withDirectory(path: "/src"' in text  # writable for the tag
    assert '"tag" "--annotate" "v1.0.0"' in text
    # The askpass script comes from disk as it is (executable), declared as the push's input.
    assert 'include: [".cache/askpass.sh" ".cache/askpass.sh/**"]' in text
    assert 'withSecretVariable(name: "GITOPS_PIPELINE_GIT_TOKEN"' in text


@pytest.mark.parametrize(
    ("entry", "never"),
    [
        # The module runtime loads this on every call, and to list the functions: only the
        # face; the functions' bodies, and all they use (the 100 MB schema package builds its
        # bundle in a step of its own), load when a function runs.
        (
            "pipeline.module",
            {
                "kubernetes_validate",
                "pipeline.progress",
                "pipeline.module_functions",
                "pipeline.validate",
                "pipeline.config",
                "pipeline.runners.dagger_runner",
                "yaml",
            },
        ),
        # The CLI with the local runner: no Dagger client, no schema package, no rich.
        ("pipeline.cli", {"dagger", "kubernetes_validate", "rich", "pipeline.tool_archives"}),
    ],
)
def test_starting_up_imports_nothing_heavy(entry: str, never: set[str]) -> None:
    probe = f"import sys, {entry}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    loaded = set(done.stdout.split())
    assert entry in loaded
    assert not loaded & never
