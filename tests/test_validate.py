"""`gitops-pipeline validate` end to end: real helm, kubeconform and conftest on fixture repos.

Each fixture repo is copied to a temporary directory (with the repository's policy/) and
validated once per module through the CLI entry point, in-process, with the offline
`bundled` schema location. The tests then read what CI would read: the exit code, the
printed lines and the artifacts directory.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    FIXTURE_REPOS,
    RENDER_TOOLS,
    REPO_ROOT,
    CliRun,
    fixture_repo,
    tool_marks,
)

from pipeline.cli import main
from pipeline.config import CONFIG_FILE
from pipeline.manifests import parse_resources
from pipeline.tools import TOOLS_DIR_ENV

pytestmark = tool_marks(*RENDER_TOOLS)

BUNDLED = ("--schema-location", "bundled")
ARTIFACTS = (
    "rendered.yaml",
    "kubeconform.json",
    "policy-results.txt",
    "policy-results.json",
    "policy.sarif",
    "junit.xml",
    "summary.md",
    "summary.json",
    ".version",
    ".image-tag",
)


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(list(argv))
    return code, stdout.getvalue(), stderr.getvalue()


def validate_repo(source: Path, out: Path, *extra: str) -> CliRun:
    code, stdout, stderr = run_cli("validate", "--source", str(source), "--out", str(out), *extra)
    return CliRun(code, stdout, stderr, source, out)


def chat_repo(tmp_path: Path) -> Path:
    """The repository's own example: charts/chat, policy/ and pipeline.yaml, copied."""
    source = tmp_path / "chat-example"
    shutil.copytree(REPO_ROOT / "charts" / "chat", source / "charts" / "chat")
    if (REPO_ROOT / CONFIG_FILE).is_file():
        shutil.copy(REPO_ROOT / CONFIG_FILE, source / CONFIG_FILE)
    if (REPO_ROOT / "deploy").is_dir():  # the Argo CD objects pipeline.yaml's delivery: writes
        shutil.copytree(REPO_ROOT / "deploy", source / "deploy")
    return source


def ignore_widget(source: Path) -> None:
    (source / CONFIG_FILE).write_text(
        "kubeconform:\n  ignore_missing_schemas: [Widget]\n", encoding="utf-8"
    )


@dataclass(frozen=True)
class Case:
    repo: str
    args: tuple[str, ...] = BUNDLED
    prepare: Callable[[Path], None] | None = None
    exit_code: int = 0
    status: str = "passed"
    rendered: frozenset[str] = frozenset({"web/dev", "web/prd"})


CASES: dict[str, Case] = {
    "ok": Case("ok"),
    "template-error": Case(
        "template-error", exit_code=1, status="failed", rendered=frozenset({"web/dev"})
    ),
    "wrong-type": Case("wrong-type", exit_code=1, status="failed"),
    "unknown-field": Case("unknown-field", exit_code=1, status="failed"),
    "policy-violation": Case("policy-violation", exit_code=1, status="failed"),
    "missing-overlay": Case("missing-overlay", exit_code=2, status="error", rendered=frozenset()),
    "bad-yaml": Case("bad-yaml", exit_code=1, status="error", rendered=frozenset({"web/prd"})),
    "unknown-env": Case(
        "ok", (*BUNDLED, "--env", "nope"), exit_code=2, status="error", rendered=frozenset()
    ),
    "crd-no-schema": Case("crd-no-schema", exit_code=1, status="failed"),
    "crd-ignored": Case("crd-no-schema", prepare=ignore_widget),
    "external-overlay": Case("external-overlay"),
}


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CliRun]:
    """Each case validated once per module, in its own copy of the fixture repo."""
    done: dict[str, CliRun] = {}

    def get(case_name: str) -> CliRun:
        if case_name not in done:
            case = CASES[case_name]
            base = tmp_path_factory.mktemp(case_name)
            source = fixture_repo(case.repo, base)
            if case.prepare is not None:
                case.prepare(source)
            done[case_name] = validate_repo(source, base / "artifacts", *case.args)
        return done[case_name]

    return get


# --- every fixture: exit code, status and a complete artifacts directory ----------------------


@pytest.mark.parametrize("name", list(CASES))
def test_exit_code_and_summary_status(validated: Callable[[str], CliRun], name: str) -> None:
    run = validated(name)
    case = CASES[name]

    assert run.exit_code == case.exit_code, run.stdout + run.stderr
    assert run.summary()["status"] == case.status
    consistent = {0: {"passed", "skipped"}, 1: {"failed", "error"}, 2: {"error"}}
    assert run.summary()["status"] in consistent[run.exit_code]
    assert f"artifacts: {run.out}" in run.stdout


@pytest.mark.parametrize("name", list(CASES))
def test_artifacts_directory_is_complete(validated: Callable[[str], CliRun], name: str) -> None:
    run = validated(name)

    missing = [a for a in ARTIFACTS if not (run.out / a).is_file()]
    assert not missing, f"{name}: artifacts missing: {missing}"

    sarif = json.loads((run.out / "policy.sarif").read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0"
    assert isinstance(sarif["runs"][0]["results"], list)
    assert isinstance(json.loads((run.out / "policy-results.json").read_text()), list)
    assert "resources" in json.loads((run.out / "kubeconform.json").read_text())
    assert (run.out / "policy-results.txt").read_text().strip()
    assert (
        (run.out / "summary.md")
        .read_text()
        .startswith(f"## gitops-pipeline validate: {run.summary()['status']}")
    )
    ET.parse(run.out / "junit.xml")  # noqa: S314 - our own artifact


@pytest.mark.parametrize("name", list(CASES))
def test_rendered_file_for_every_environment_that_rendered(
    validated: Callable[[str], CliRun], name: str
) -> None:
    run = validated(name)
    case = CASES[name]
    targets = {f"{t['chart']}/{t['environment']}": t for t in run.summary()["targets"]}

    rendered = {key for key, target in targets.items() if target["rendered"]}
    assert rendered == case.rendered
    for key in targets:
        chart, env = key.split("/")
        path = run.out / "rendered" / chart / f"{env}.yaml"
        if key in rendered:
            assert parse_resources(path.read_text(encoding="utf-8")), f"{path} has no resources"
        else:
            assert not path.exists(), f"{path} written for an environment that did not render"
    combined = (run.out / "rendered.yaml").read_text(encoding="utf-8")
    for key in sorted(rendered):
        chart, env = key.split("/")
        assert f"# chart: {chart} environment: {env}\n" in combined


@pytest.mark.parametrize("name", list(CASES))
def test_junit_has_a_kubeconform_testcase_per_resource(
    validated: Callable[[str], CliRun], name: str
) -> None:
    run = validated(name)
    expected = set()
    for path in sorted((run.out / "rendered").glob("*/*.yaml")):
        chart, env = path.parent.name, path.stem
        for resource in parse_resources(path.read_text(encoding="utf-8")):
            expected.add((f"kubeconform.{chart}.{env}", resource.ref))

    root = ET.parse(run.out / "junit.xml").getroot()  # noqa: S314 - our own artifact
    suites = root.findall("testsuite")
    cases = [
        (case.get("classname"), case.get("name"))
        for suite in suites
        if suite.get("name") == "kubeconform"
        for case in suite.findall("testcase")
    ]
    assert sorted(cases) == sorted(expected)
    assert {s.get("name") for s in suites} >= ({"kubeconform"} if expected else set())
    for suite in suites:
        assert int(suite.get("tests", "-1")) == len(suite.findall("testcase"))


# --- what each fixture is about ------------------------------------------------------------------


def test_ok_passes_every_stage(validated: Callable[[str], CliRun]) -> None:
    run = validated("ok")

    stages = {s["stage"]: s["status"] for s in run.summary()["stages"]}
    assert stages == {
        "helm-lint": "passed",
        "render": "passed",
        "kubeconform": "passed",
        "policy": "passed",
        "secrets": "passed",
    }
    assert (run.out / ".version").read_text() == "1.0.0\n"
    assert (run.out / ".image-tag").read_text() == "1.0.0\n"
    verdicts = json.loads((run.out / "kubeconform.json").read_text())["resources"]
    assert len(verdicts) == 4
    assert {v["status"] for v in verdicts} == {"passed"}


def line_of(path: Path, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    (number,) = [i for i, line in enumerate(lines, start=1) if text in line]
    return number


def test_template_error_names_chart_env_template_and_line(
    validated: Callable[[str], CliRun],
) -> None:
    run = validated("template-error")
    template = "charts/web/templates/ingress.yaml"

    (finding,) = run.check_problems("render")
    assert (finding["chart"], finding["environment"]) == ("web", "prd")
    assert finding["file"] == template
    assert finding["line"] == line_of(run.source / template, "secretName")
    assert "secretName" in finding["message"]
    assert f"web/prd {template}:{finding['line']}" in run.stdout


def test_wrong_type_names_path_resource_template_and_env(
    validated: Callable[[str], CliRun],
) -> None:
    run = validated("wrong-type")

    (finding,) = run.check_problems("kubeconform")
    assert "/spec/replicas" in finding["message"]
    assert finding["resource"] == "Deployment/web"
    assert finding["file"] == "charts/web/templates/deployment.yaml"
    assert (finding["chart"], finding["environment"]) == ("web", "dev")
    assert "Deployment/web: /spec/replicas" in run.stdout


def test_unknown_field_is_named(validated: Callable[[str], CliRun]) -> None:
    run = validated("unknown-field")

    findings = run.check_problems("kubeconform")
    assert {f["environment"] for f in findings} == {"dev", "prd"}
    for finding in findings:
        assert "imagePullPolicyy" in finding["message"]
        assert finding["resource"] == "Deployment/web"
        assert finding["file"] == "charts/web/templates/deployment.yaml"


def test_policy_violation_names_resource_container_and_env(
    validated: Callable[[str], CliRun],
) -> None:
    run = validated("policy-violation")

    (finding,) = run.check_problems("policy")
    assert finding["resource"] == "Deployment/web"
    assert finding["container"] == "web"
    assert (finding["chart"], finding["environment"]) == ("web", "dev")
    assert "privileged" in finding["message"]
    assert run.stage("kubeconform")["status"] == "passed"

    sarif = json.loads((run.out / "policy.sarif").read_text())
    (result,) = sarif["runs"][0]["results"]
    assert result["message"]["text"].startswith("[web/dev] Deployment/web")
    assert result["ruleId"] in {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    rows = json.loads((run.out / "policy-results.json").read_text())
    assert [r["environment"] for r in rows if r["status"] == "failed"] == ["dev"]
    table = (run.out / "policy-results.txt").read_text()
    assert re.search(r"FAILED\s+web/dev\s+Deployment/web\s+web\s+", table)
    assert "web/prd" not in table
    # The result line names the resource once: its location, then what is wrong with it.
    (line,) = [entry for entry in run.stdout.splitlines() if "privileged" in entry]
    assert line.count("Deployment/web") == 1, line
    assert re.match(r"  - web/dev \S+:\d+ Deployment/web: ", line), line


def test_missing_overlay_is_a_config_error(validated: Callable[[str], CliRun]) -> None:
    run = validated("missing-overlay")

    assert "infra/clusters/prd/web-values.yaml" in run.stderr
    assert "chart 'web'" in run.stderr
    assert "environment 'prd'" in run.stderr
    assert not (run.out / "rendered").exists()


def test_bad_yaml_names_the_values_file_and_line(validated: Callable[[str], CliRun]) -> None:
    run = validated("bad-yaml")
    readme = (FIXTURE_REPOS / "bad-yaml" / "README.txt").read_text(encoding="utf-8")
    match = re.search(r"values-dev\.yaml has a YAML syntax error on line (\d+)", readme)
    assert match, "bad-yaml/README.txt no longer says which line is broken"
    line = int(match[1])

    (finding,) = run.check_problems("render")
    assert finding["file"] == "charts/web/values-dev.yaml"
    assert finding["line"] == line
    assert (finding["chart"], finding["environment"]) == ("web", "dev")
    assert f"charts/web/values-dev.yaml:{line}" in run.stdout


def test_unknown_environment_lists_the_known_ones(validated: Callable[[str], CliRun]) -> None:
    run = validated("unknown-env")

    assert "'nope'" in run.stderr
    assert "dev, prd" in run.stderr


def test_crd_without_schema_is_a_failure_naming_the_kind(
    validated: Callable[[str], CliRun],
) -> None:
    run = validated("crd-no-schema")

    findings = run.check_problems("kubeconform")
    assert {(f["resource"], f["environment"]) for f in findings} == {
        ("Widget/web", "dev"),
        ("Widget/web", "prd"),
    }
    assert all("Widget" in f["message"] for f in findings)
    assert all(f["file"] == "charts/web/templates/widget.yaml" for f in findings)


def test_crd_listed_in_ignore_missing_schemas_passes(validated: Callable[[str], CliRun]) -> None:
    run = validated("crd-ignored")

    assert run.check_problems("kubeconform") == []
    verdicts = json.loads((run.out / "kubeconform.json").read_text())["resources"]
    widgets = [v for v in verdicts if v["resource"] == "Widget/web"]
    assert [w["status"] for w in widgets] == ["skipped", "skipped"]
    assert all("ignore_missing_schemas" in w["message"] for w in widgets)


def test_external_overlay_is_layered_last(validated: Callable[[str], CliRun]) -> None:
    run = validated("external-overlay")

    def replicas(env: str) -> int:
        text = (run.out / "rendered" / "web" / f"{env}.yaml").read_text(encoding="utf-8")
        (deployment,) = [r for r in parse_resources(text) if r.kind == "Deployment"]
        return int(deployment.document["spec"]["replicas"])

    assert replicas("prd") == 3  # infra/clusters/prd/web-values.yaml over values.yaml's 1
    assert replicas("dev") == 1
    targets = {t["environment"]: t["values"] for t in run.summary()["targets"]}
    assert targets["prd"] == ["charts/web/values.yaml", "infra/clusters/prd/web-values.yaml"]


# --- the repository's own example, dry runs and plan --------------------------------------------


def test_example_chat_chart_validates(tmp_path: Path) -> None:
    """With no flag and nothing beside the repository: the defaults are offline and complete."""
    run = validate_repo(chat_repo(tmp_path), tmp_path / "artifacts")

    assert run.exit_code == 0, run.stdout + run.stderr
    summary = run.summary()
    assert summary["status"] == "passed"
    assert {f"{t['chart']}/{t['environment']}" for t in summary["targets"] if t["rendered"]} == {
        "chat/dev",
        "chat/prd",
    }
    verdicts = json.loads((run.out / "kubeconform.json").read_text())["resources"]
    assert verdicts
    assert {v["status"] for v in verdicts} == {"passed"}


def test_a_missing_crd_schemas_directory_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    run = validate_repo(chat_repo(tmp_path), tmp_path / "artifacts", "--crd-schemas", str(missing))
    assert run.exit_code == 2
    assert f"{missing}: --crd-schemas: CRD schema directory does not exist" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_configured_crd_schemas_directory_that_does_not_exist_is_named(tmp_path: Path) -> None:
    source = chat_repo(tmp_path)
    config = source / "pipeline.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "kubeconform:\n", "kubeconform:\n  crd_schemas: [schemas/crds]\n"
        ),
        encoding="utf-8",
    )
    run = validate_repo(source, tmp_path / "artifacts")
    assert run.exit_code == 2, run.stdout + run.stderr
    (problem,) = run.check_problems("config")
    assert problem["file"] == "pipeline.yaml"
    assert "kubeconform.crd_schemas (schemas/crds)" in problem["message"]


@pytest.fixture
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pinned tool can be found: any attempt to run one fails with exit code 3."""
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv(TOOLS_DIR_ENV, str(empty))
    monkeypatch.setenv("PATH", str(empty))


def test_no_tools_really_means_exit_3(tmp_path: Path, no_tools: None) -> None:
    # the premise of the dry-run and plan tests below
    run = validate_repo(fixture_repo("ok", tmp_path), tmp_path / "artifacts", *BUNDLED)

    assert run.exit_code == 3
    assert "not installed" in run.stderr


def test_dry_run_runs_no_tool_and_prints_the_steps(tmp_path: Path, no_tools: None) -> None:
    source = fixture_repo("ok", tmp_path)

    run = validate_repo(source, tmp_path / "artifacts", *BUNDLED, "--dry-run")

    assert run.exit_code == 0, run.stderr
    assert "passed" not in run.stdout  # nothing ran, so nothing passed
    assert "steps planned, none ran" in run.stdout
    steps = run.stdout.split("these steps would run:", 1)[1]
    for env in ("dev", "prd"):
        assert (
            f"helm-template:web/{env}: (cd $SOURCE) helm template web '$SOURCE/charts/web'" in steps
        )
        assert f"helm-lint:web/{env}: (cd $SOURCE) helm lint --strict" in steps
        assert f"--values '$SOURCE/charts/web/values-{env}.yaml'" in steps
    assert "kubeconform: (cd $SOURCE) kubeconform -strict" in steps
    assert "'$OUT/rendered/web/dev.yaml' '$OUT/rendered/web/prd.yaml'" in steps
    assert "conftest-test: (cd $SOURCE) conftest test --policy '$PACKAGE/policies'" in steps
    assert "conftest-verify" not in steps  # no policies of the repository's own to verify


def test_plan_lists_environments_and_values_in_order(tmp_path: Path, no_tools: None) -> None:
    source = fixture_repo("external-overlay", tmp_path)

    code, stdout, stderr = run_cli("plan", "--source", str(source), "--out", str(tmp_path / "out"))

    assert code == 0, stderr
    lines = stdout.splitlines()
    for env in ("dev", "prd"):
        start = lines.index(f"web/{env}: release web namespace web")
        assert lines[start + 1 : start + 3] == [
            "  values charts/web/values.yaml",
            f"  values infra/clusters/{env}/web-values.yaml",
        ]
    assert lines.index("web/dev: release web namespace web") < lines.index(
        "web/prd: release web namespace web"
    )
    assert any("helm template web" in line for line in lines)


def test_plan_with_unknown_environment_is_a_usage_error(tmp_path: Path, no_tools: None) -> None:
    source = fixture_repo("ok", tmp_path)

    code, _, stderr = run_cli("plan", "--source", str(source), "--env", "nope")

    assert code == 2
    assert "known environments: dev, prd" in stderr


def test_a_dependency_the_repository_does_not_vendor_is_named(tmp_path: Path) -> None:
    source = fixture_repo("ok", tmp_path)
    chart_yaml = source / "charts" / "web" / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text(encoding="utf-8")
        + "dependencies:\n  - name: redis\n    version: 19.0.1\n"
        + "    repository: https://charts.example.com\n",
        encoding="utf-8",
    )
    run = validate_repo(source, tmp_path / "out", "--schema-location", "bundled")

    assert run.exit_code == 1
    problems = run.check_problems("render")
    assert {p["environment"] for p in problems} == {"dev", "prd"}
    assert all(p["file"] == "charts/web/Chart.yaml" for p in problems)
    assert (
        "dependency 'redis' (19.0.1) is not vendored in charts/web/charts/"
        in problems[0]["message"]
    )
    assert (run.out / "summary.json").is_file()
    assert (run.out / "junit.xml").is_file()

    # Vendored (as `helm dependency build` leaves it), the dependency is found.
    vendored = source / "charts" / "web" / "charts" / "redis"
    vendored.mkdir(parents=True)
    (vendored / "Chart.yaml").write_text("apiVersion: v2\nname: redis\nversion: 19.0.1\n")
    again = validate_repo(source, tmp_path / "out2", "--schema-location", "bundled")
    assert again.check_problems("render") == []
