"""The built-in policy pack: shipped rules with ids, severities and waivers, with the real tools."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun, tool_marks
from test_validate import validate_repo

from pipeline import policy
from pipeline.cli import main
from pipeline.tools import require

pytestmark = tool_marks("helm", "kubeconform", "conftest")

# One workload that breaks every built-in rule, and a plaintext Secret.
EVERYTHING_WRONG = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
{annotations}spec:
  selector: {{matchLabels: {{app: bad}}}}
  template:
    metadata: {{labels: {{app: bad}}}}
    spec:
      hostNetwork: true
      volumes: [{{name: host, hostPath: {{path: /var/run}}}}]
      initContainers:
        - name: init
      containers:
        - name: untagged
          image: nginx
          securityContext: {{privileged: true}}
        - name: latest
          image: nginx:latest
---
apiVersion: v1
kind: Secret
metadata: {{name: plain}}
stringData: {{password: hunter2}}
"""


def chart_repo(tmp_path: Path, annotations: str = "", config: str = "") -> Path:
    repo = tmp_path / "repo"
    templates = repo / "charts" / "bad" / "templates"
    templates.mkdir(parents=True)
    (repo / "charts" / "bad" / "Chart.yaml").write_text(
        "apiVersion: v2\nname: bad\nversion: 0.1.0\n", encoding="utf-8"
    )
    (repo / "charts" / "bad" / "values-dev.yaml").write_text("{}\n", encoding="utf-8")
    (repo / "charts" / "bad" / "values-prd.yaml").write_text("{}\n", encoding="utf-8")
    (templates / "all.yaml").write_text(
        EVERYTHING_WRONG.format(annotations=annotations), encoding="utf-8"
    )
    if config:
        (repo / "pipeline.yaml").write_text(config, encoding="utf-8")
    return repo


def policy_findings(run: CliRun) -> list[dict[str, Any]]:
    return [f for f in run.stage("policy")["findings"] if f["check"] == "policy"]


def test_the_packs_own_unit_tests_pass() -> None:
    done = subprocess.run(
        [
            str(require("conftest")),
            *("verify", "--policy", str(policy.BUILTIN_POLICIES)),
            *("--rego-version", "v1", "--output", "json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = sum(entry["successes"] for entry in json.loads(done.stdout))
    assert passed >= 60


def test_every_built_in_rule_fires_with_its_id_and_severity(tmp_path: Path) -> None:
    run = validate_repo(chart_repo(tmp_path), tmp_path / "artifacts", "--env", "dev")
    assert run.exit_code == 1
    findings = policy_findings(run)
    assert {f["rule"] for f in findings} == set(policy.RULES_BY_ID)
    for finding in findings:
        rule = policy.RULES_BY_ID[finding["rule"]]
        assert finding["status"] == ("failed" if rule.severity == "deny" else "warning")
        assert finding["file"] == "charts/bad/templates/all.yaml"


def test_a_repository_without_policies_gets_the_pack(tmp_path: Path) -> None:
    repo = chart_repo(tmp_path)
    assert not (repo / "policy").exists()
    run = validate_repo(repo, tmp_path / "artifacts", "--env", "dev")
    assert run.stage("policy")["status"] == "failed"
    assert any(f["rule"] == "GP010" for f in policy_findings(run))


def test_a_repository_policy_adds_to_the_pack(tmp_path: Path) -> None:
    repo = chart_repo(tmp_path)
    (repo / "policy").mkdir()
    (repo / "policy" / "acme.rego").write_text(
        'package acme\n\ndeny contains msg if {\n\tinput.kind == "Secret"\n'
        '\tmsg := sprintf("%s/%s: acme forbids Secrets", [input.kind, input.metadata.name])\n}\n',
        encoding="utf-8",
    )
    run = validate_repo(repo, tmp_path / "artifacts", "--env", "dev")
    rules = {f["rule"] for f in policy_findings(run)}
    assert "GP010" in rules
    assert "acme-forbids-secrets" in rules


def test_the_pack_can_be_turned_off(tmp_path: Path) -> None:
    repo = chart_repo(tmp_path, config="policy:\n  builtin: false\n")
    run = validate_repo(repo, tmp_path / "artifacts", "--env", "dev")
    assert run.stage("policy")["status"] == "error"
    assert "policy.builtin: false" in run.stage("policy")["summary"]


ANNOTATED = """\
  annotations:
    gitops-pipeline.dev/waive: "GP001, GP002,GP011"
    gitops-pipeline.dev/waive-reason: "node agent: needs the host"
"""


def test_an_annotation_waives_named_rules_with_its_reason(tmp_path: Path) -> None:
    run = validate_repo(chart_repo(tmp_path, ANNOTATED), tmp_path / "artifacts", "--env", "dev")
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for finding in policy_findings(run):
        by_rule.setdefault(finding["rule"], []).append(finding)
    for rule in ("GP001", "GP002", "GP011"):
        assert {f["status"] for f in by_rule[rule]} == {"waived"}
        assert all(f["waiver"] == "node agent: needs the host (annotation)" for f in by_rule[rule])
    assert {f["status"] for f in by_rule["GP004"]} == {"failed"}  # not named: still fails
    sarif = json.loads((run.out / "policy.sarif").read_text(encoding="utf-8"))
    suppressed = [r for r in sarif["runs"][0]["results"] if "suppressions" in r]
    assert {r["ruleId"] for r in suppressed} == {"GP001", "GP002", "GP011"}
    assert "Waived" in (run.out / "summary.md").read_text(encoding="utf-8")


def test_an_annotation_without_a_reason_waives_nothing(tmp_path: Path) -> None:
    annotations = '  annotations:\n    gitops-pipeline.dev/waive: "GP001"\n'
    run = validate_repo(chart_repo(tmp_path, annotations), tmp_path / "artifacts", "--env", "dev")
    (finding,) = [f for f in policy_findings(run) if f["rule"] == "GP001"]
    assert finding["status"] == "failed"
    assert "gitops-pipeline.dev/waive-reason" in finding["message"]


WAIVERS = """\
policy:
  waivers:
    - rule: GP010
      kind: Secret
      name: plain
      environment: dev
      reason: a throwaway dev password, rotated nightly
    - rule: GP005
      kind: Deployment
      name: bad
      reason: was fine once
      expires: 2020-01-31
"""


def test_pipeline_yaml_waivers_apply_per_environment_and_expire(tmp_path: Path) -> None:
    run = validate_repo(chart_repo(tmp_path, config=WAIVERS), tmp_path / "artifacts")
    secret = {f["environment"]: f for f in policy_findings(run) if f["rule"] == "GP010"}
    assert secret["dev"]["status"] == "waived"
    assert secret["dev"]["waiver"] == "a throwaway dev password, rotated nightly (pipeline.yaml:3)"
    assert secret["prd"]["status"] == "failed"  # the waiver names dev only
    latest = [f for f in policy_findings(run) if f["rule"] == "GP005"]
    expired = [f for f in latest if "expired" in f["message"]]
    assert len(expired) == 1
    assert expired[0]["file"] == "pipeline.yaml"
    assert expired[0]["line"] == 8
    assert expired[0]["status"] == "failed"
    assert {f["status"] for f in latest if f not in expired} == {"failed"}  # not applied


@pytest.mark.parametrize(
    ("waiver", "field"),
    [
        ("    - {rule: GP010, kind: Secret, name: plain}\n", "reason"),
        ("    - {rule: GP010, kind: Secret, reason: r}\n", "name"),
        ("    - {rule: GP010, kind: Secret, name: p, reason: r, expires: soon}\n", "expires"),
    ],
)
def test_a_waiver_without_what_it_needs_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], waiver: str, field: str
) -> None:
    repo = chart_repo(tmp_path, config=f"policy:\n  waivers:\n{waiver}")
    code = main(["validate", "--source", str(repo), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"pipeline.yaml:3: policy.waivers[0].{field}" in capsys.readouterr().err


def test_policies_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [rule.id for rule in policy.RULES]
    for line, rule in zip(lines, policy.RULES, strict=True):
        assert rule.severity in line.split()[1]
        assert rule.title in line
        assert line.endswith(rule.remediation)
