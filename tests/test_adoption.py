"""First run on repositories shaped unlike ours: no flags, no pipeline.yaml, real tools.

The fixtures under tests/fixtures/adoption are shaped like popular public GitOps
repositories: a chart at the repository root with `values-prod.yaml`, several charts in
top-level folders (one with a vendored dependency, two with the same name), and an Argo CD
app-of-apps chart.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, CliRun, tool_marks
from test_validate import run_cli, validate_repo

pytestmark = tool_marks("helm", "kubeconform", "conftest")

ADOPTION = REPO_ROOT / "tests" / "fixtures" / "adoption"


def adopt(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(ADOPTION / name, target)
    return target


def rendered(run: CliRun) -> set[str]:
    return {f"{t['chart']}/{t['environment']}" for t in run.summary()["targets"] if t["rendered"]}


def test_a_chart_at_the_repository_root(tmp_path: Path) -> None:
    run = validate_repo(adopt("root-chart", tmp_path), tmp_path / "out")
    assert rendered(run) == {"podinfo/prod"}
    text = (run.out / "rendered" / "podinfo" / "prod.yaml").read_text(encoding="utf-8")
    assert "replicas: 3" in text  # values-prod.yaml over values.yaml
    assert run.stage("kubeconform")["status"] == "passed"
    problems = run.check_problems("policy")
    assert problems  # the built-in pack applies to a repository without policy/
    assert {p["file"] for p in problems} == {"templates/deployment.yaml"}


def test_charts_in_several_top_level_folders(tmp_path: Path) -> None:
    run = validate_repo(adopt("multi", tmp_path), tmp_path / "out")
    assert run.exit_code == 0, run.stdout + run.stderr
    # apps/api/charts/redis is api's dependency, not a chart of the repository; the two
    # charts named web are told apart by their folder.
    assert rendered(run) == {"api/dev", "web/dev", "legacy-web/dev"}
    api = (run.out / "rendered" / "api" / "dev.yaml").read_text(encoding="utf-8")
    assert "name: redis" in api  # rendered as part of api


def test_an_argo_cd_app_of_apps_chart(tmp_path: Path) -> None:
    run = validate_repo(adopt("app-of-apps", tmp_path), tmp_path / "out")
    assert run.exit_code == 0, run.stdout + run.stderr
    verdicts = json.loads((run.out / "kubeconform.json").read_text(encoding="utf-8"))
    applications = [v for v in verdicts["resources"] if v["resource"].startswith("Application/")]
    assert {v["resource"] for v in applications} == {
        "Application/guestbook",
        "Application/helm-guestbook",
    }
    assert {v["status"] for v in applications} == {"passed"}  # the shipped Application CRD


def test_a_broken_application_fails_against_the_shipped_crd(tmp_path: Path) -> None:
    repo = adopt("app-of-apps", tmp_path)
    template = repo / "templates" / "applications.yaml"
    template.write_text(
        template.read_text(encoding="utf-8").replace("  project: default", "  projekt: default"),
        encoding="utf-8",
    )
    run = validate_repo(repo, tmp_path / "out")
    assert run.exit_code == 1
    problems = run.check_problems("kubeconform")
    assert {p["resource"] for p in problems} == {
        "Application/guestbook",
        "Application/helm-guestbook",
    }
    assert all("projekt" in p["message"] for p in problems)


def test_every_finding_can_be_waived_with_a_reason(tmp_path: Path) -> None:
    repo = adopt("root-chart", tmp_path)
    first = validate_repo(repo, tmp_path / "first")
    problems = first.check_problems("policy")
    waivers = [
        {
            "rule": rule,
            "kind": resource.split("/")[0],
            "name": resource.split("/")[1],
            "reason": "adopted as is; tracked in ACME-42",
        }
        for rule, resource in sorted({(p["rule"], p["resource"]) for p in problems})
    ]
    (repo / "pipeline.yaml").write_text(
        yaml.safe_dump({"policy": {"waivers": waivers}}), encoding="utf-8"
    )
    second = validate_repo(repo, tmp_path / "second")
    assert second.exit_code == 0, second.stdout
    waived = [f for f in second.stage("policy")["findings"] if f["status"] == "waived"]
    assert len(waived) == len(problems)
    assert all("ACME-42" in f["waiver"] for f in waived)


def test_an_empty_repository_fails_naming_where_it_looked(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run = validate_repo(empty, tmp_path / "out")
    assert run.exit_code == 1
    (problem,) = run.check_problems("discovery")
    assert "no Helm chart found: looked for Chart.yaml under ." in problem["message"]
    assert "--allow-empty" in problem["message"]
    assert run.summary()["status"] == "failed"


def test_allow_empty_opts_out(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run = validate_repo(empty, tmp_path / "out", "--allow-empty")
    assert run.exit_code == 0
    assert run.stage("discovery")["status"] == "skipped"


def test_ci_that_checked_nothing_fails(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, _ = run_cli("ci", "--source", str(empty), "--out", str(tmp_path / "out"))
    assert code == 1
    data = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert data["status"] == "failed"
    assert any("nothing was checked" in s["summary"] for s in data["stages"])
    code, _, _ = run_cli(
        "ci", "--source", str(empty), "--out", str(tmp_path / "again"), "--allow-empty"
    )
    assert code == 0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("discovery:\n  paths: [apps]\n", {"api/dev", "web/dev"}),
        ("discovery:\n  ignore: [legacy]\n", {"api/dev", "web/dev"}),
        ("discovery:\n  ignore: ['*/web']\n", {"api/dev"}),
    ],
)
def test_discovery_can_be_restricted(tmp_path: Path, config: str, expected: set[str]) -> None:
    repo = adopt("multi", tmp_path)
    (repo / "pipeline.yaml").write_text(config, encoding="utf-8")
    assert rendered(validate_repo(repo, tmp_path / "out")) == expected


def test_a_discovery_path_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    repo = adopt("multi", tmp_path)
    (repo / "pipeline.yaml").write_text("discovery:\n  paths: [charts]\n", encoding="utf-8")
    run = validate_repo(repo, tmp_path / "out")
    assert run.exit_code == 2
    assert "pipeline.yaml: discovery.paths (charts): directory does not exist" in run.stderr


def test_a_linked_chart_outside_the_repository_is_not_followed(tmp_path: Path) -> None:
    outside = adopt("root-chart", tmp_path)
    repo = adopt("multi", tmp_path)
    (repo / "linked").symlink_to(outside, target_is_directory=True)
    assert "podinfo/prod" not in rendered(validate_repo(repo, tmp_path / "out"))


def test_an_unreachable_schema_location_is_one_environment_error(tmp_path: Path) -> None:
    # Port 9 (discard) on this machine: nothing listens, the connection is refused at once.
    run = validate_repo(
        adopt("multi", tmp_path), tmp_path / "out", "--schema-location", "http://127.0.0.1:9/s"
    )
    assert run.exit_code == 3
    stage = run.stage("kubeconform")
    assert stage["status"] == "error"
    (finding,) = stage["findings"]
    assert "http://127.0.0.1:9" in finding["message"]
    assert "bundled" in finding["message"]
    assert "(4 resources unchecked)" in finding["message"]
    assert run.stage("policy")["status"] == "passed"  # the other checks still ran


def test_a_chart_that_renders_nothing_says_so(tmp_path: Path) -> None:
    repo = adopt("root-chart", tmp_path)
    template = repo / "templates" / "deployment.yaml"
    template.write_text(
        "{{- if .Values.enabled }}\n" + template.read_text(encoding="utf-8") + "{{- end }}\n",
        encoding="utf-8",
    )
    run = validate_repo(repo, tmp_path / "out")
    # Its only environment rendered nothing: the run checked nothing, so it fails.
    assert run.exit_code == 1
    (finding,) = [f for f in run.stage("render")["findings"] if f["status"] == "failed"]
    assert "rendered no resources" in finding["message"]
    assert finding["chart"] == "podinfo"


def test_one_environment_switched_off_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    source = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "tests" / "fixtures" / "repos" / "ok", source)
    templates = source / "charts" / "web" / "templates"
    for template in templates.iterdir():
        text = template.read_text(encoding="utf-8")
        template.write_text(f"{{{{- if not .Values.disabled }}}}\n{text}{{{{- end }}}}\n", "utf-8")
    values = source / "charts" / "web" / "values-prd.yaml"
    values.write_text(values.read_text(encoding="utf-8") + "disabled: true\n", encoding="utf-8")
    run = validate_repo(source, tmp_path / "out")
    assert run.exit_code == 0
    (finding,) = [f for f in run.stage("render")["findings"] if f["status"] == "warning"]
    assert (finding["chart"], finding["environment"]) == ("web", "prd")
    assert "rendered no resources" in finding["message"]
    assert finding["file"] == "charts/web/Chart.yaml"
