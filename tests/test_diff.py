"""`diff`: a fixture repository with planted changes, rendered at both sides with real helm.

Planted between the base and the work tree: a ConfigMap added, the Service removed, the
Deployment's replicas changed in prd only, and noise on every resource (the chart's version
bump changes the helm.sh/chart label and a checksum/ annotation).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import tool_marks

from pipeline.cli import main
from pipeline.delivery import diff
from pipeline.delivery.diff import (
    DiffOutcome,
    EnvironmentDiff,
    FieldChange,
    ResourceChange,
    ResourceId,
)

pytestmark = tool_marks("helm")

IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.test",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.test",
}
LABELS = """    app.kubernetes.io/name: shop
    helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
"""
DEPLOYMENT = f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  labels:
{LABELS}spec:
  replicas: {{{{ .Values.replicaCount }}}}
  selector:
    matchLabels:
      app.kubernetes.io/name: shop
  template:
    metadata:
      labels:
        app.kubernetes.io/name: shop
      annotations:
        checksum/chart: {{{{ .Chart.Version | sha256sum }}}}
    spec:
      containers:
        - name: shop
          image: "ghcr.io/acme/shop:1.0.0"
          ports:
            - name: http
              containerPort: 8080
"""
SERVICE = f"""apiVersion: v1
kind: Service
metadata:
  name: shop
  labels:
{LABELS}spec:
  ports:
    - name: http
      port: 80
"""
CONFIGMAP = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-config
  labels:
{LABELS}data:
  LOG_LEVEL: info
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(repo), **IDENTITY},
    ).stdout


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    return plant(tmp_path / "repo")


def plant(repo: Path, prepare: Callable[[Path], None] | None = None) -> Path:
    """main: the chart (and what `prepare` adds); branch `topic`: a commit, and uncommitted
    work on top."""
    write(
        repo,
        {
            "charts/shop/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
            "charts/shop/values.yaml": "replicaCount: 1\n",
            "charts/shop/values-dev.yaml": "replicaCount: 1\n",
            "charts/shop/values-prd.yaml": "replicaCount: 2\n",
            "charts/shop/templates/deployment.yaml": DEPLOYMENT,
            "charts/shop/templates/service.yaml": SERVICE,
        },
    )
    if prepare is not None:
        prepare(repo)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "feat: shop")
    git(repo, "switch", "--quiet", "--create", "topic")
    (repo / "charts/shop/templates/service.yaml").unlink()
    write(repo, {"charts/shop/templates/configmap.yaml": CONFIGMAP})
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "feat: a config map instead of the service")
    # Not committed: the work tree is what is compared.
    write(
        repo,
        {
            "charts/shop/values-prd.yaml": "replicaCount: 3\n",
            "charts/shop/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.2.0\n",
        },
    )
    return repo


def run_diff(repo: Path, out: Path, *args: str) -> int:
    return main(["diff", "--source", str(repo), "--out", str(out), "--progress", "none", *args])


def names(resources: list[dict[str, Any]]) -> list[str]:
    return [f"{r['kind']}/{r['name']}" for r in resources]


def assert_the_planted_changes(report: dict[str, Any], repo: Path) -> None:
    assert report["base"] == {"ref": "main", "commit": git(repo, "rev-parse", "main").strip()}
    assert report["changed"] is True
    assert report["errors"] == []
    environments = report["environments"]
    assert sorted(environments) == ["dev", "prd"]
    for name in ("dev", "prd"):
        assert names(environments[name]["added"]) == ["ConfigMap/shop-config"]
        assert names(environments[name]["removed"]) == ["Service/shop"]
    assert environments["dev"]["changed"] == []
    (changed,) = environments["prd"]["changed"]
    assert (changed["kind"], changed["name"], changed["chart"]) == ("Deployment", "shop", "shop")
    assert changed["fields"] == [
        {"path": "spec.replicas", "change": "changed", "before": 2, "after": 3}
    ]


def test_the_planted_changes_exactly(planted: Path, tmp_path: Path) -> None:
    status_before = git(planted, "status", "--porcelain")
    out = tmp_path / "out"

    assert run_diff(planted, out, "--base", "main") == 0

    assert_the_planted_changes(json.loads((out / "diff.json").read_text(encoding="utf-8")), planted)
    comment = (out / "diff.md").read_text(encoding="utf-8")
    assert comment.startswith(diff.MARKER)
    assert "| prd | 1 | 1 | 1 |" in comment
    assert "@@ spec.replicas (changed) @@\n- 2\n+ 3" in comment
    # The user's work tree and history are as they were: the base came from `git archive`.
    assert git(planted, "status", "--porcelain") == status_before
    assert len(git(planted, "worktree", "list").splitlines()) == 1

    assert run_diff(planted, out, "--base", "main", "--exit-code") == 1


def test_noise_is_what_diff_ignore_says(planted: Path, tmp_path: Path) -> None:
    (planted / "pipeline.yaml").write_text("diff:\n  ignore: []\n", encoding="utf-8")
    out = tmp_path / "out"

    assert run_diff(planted, out, "--base", "main", "--env", "dev") == 0

    report = json.loads((out / "diff.json").read_text(encoding="utf-8"))
    assert list(report["environments"]) == ["dev"]
    (changed,) = report["environments"]["dev"]["changed"]
    assert [f["path"] for f in changed["fields"]] == [
        "metadata.labels.helm.sh/chart",
        "spec.template.metadata.annotations.checksum/chart",
    ]


def test_no_change_exits_0_even_with_exit_code(planted: Path, tmp_path: Path) -> None:
    git(planted, "stash", "--include-untracked", "--quiet")
    out = tmp_path / "out"

    assert run_diff(planted, out, "--base", "topic", "--exit-code") == 0

    assert json.loads((out / "diff.json").read_text(encoding="utf-8"))["changed"] is False
    assert "No rendered resource changes" in (out / "diff.md").read_text(encoding="utf-8")


def test_an_unknown_base_is_a_usage_error(
    planted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_diff(planted, tmp_path / "out", "--base", "no-such-branch") == 2
    assert "cannot compare with 'no-such-branch'" in capsys.readouterr().err


def test_a_chart_that_does_not_render_makes_the_diff_incomplete(
    planted: Path, tmp_path: Path
) -> None:
    write(planted, {"charts/shop/templates/broken.yaml": "{{ .Values.nope.deeper }}\n"})
    out = tmp_path / "out"

    assert run_diff(planted, out, "--base", "main") == 1

    errors = json.loads((out / "diff.json").read_text(encoding="utf-8"))["errors"]
    assert sorted(error.split(":")[0] for error in errors) == [
        "shop/dev in the work tree",
        "shop/prd in the work tree",
    ]
    report = json.loads((out / "diff.json").read_text(encoding="utf-8"))
    assert report["environments"]["prd"] == {"added": [], "removed": [], "changed": []}


# --- comparing and the comment's size -------------------------------------------------------------


def test_maps_compare_by_key_and_named_lists_by_name() -> None:
    before = {"b": 1, "a": {"x": 1}, "containers": [{"name": "a", "image": "1"}, {"name": "b"}]}
    after = {"a": {"x": 1}, "b": 1, "containers": [{"name": "b"}, {"name": "a", "image": "2"}]}
    assert diff.field_changes(before, after) == [FieldChange("containers[a].image", "1", "2")]
    assert diff.field_changes({"l": [1, 2]}, {"l": [2]}) == [
        FieldChange("l[0]", 1, 2),
        FieldChange("l[1]", 2, diff.MISSING),
    ]


def many_changes(count: int) -> DiffOutcome:
    outcome = DiffOutcome("main", "0" * 40, ())
    env = EnvironmentDiff("prd")
    for index in range(count):
        resource = ResourceId("web", "v1", "ConfigMap", "", f"config-{index}")
        env.changed.append(
            ResourceChange(resource, (FieldChange("data.big", "x" * 200, "y" * 200),))
        )
    outcome.environments["prd"] = env
    return outcome


def test_a_large_diff_is_summarised_under_github_s_limit(tmp_path: Path) -> None:
    outcome = many_changes(2_000)

    diff.write_reports(tmp_path, outcome)

    comment = (tmp_path / "diff.md").read_text(encoding="utf-8")
    full = (tmp_path / "diff-full.md").read_text(encoding="utf-8")
    assert len(comment) < diff.COMMENT_LIMIT < len(full)
    assert comment.startswith(diff.MARKER)
    assert "is over GitHub's comment limit" in comment
    assert full.count("<details>") == 2_000


def test_a_small_diff_is_the_whole_comment(tmp_path: Path) -> None:
    diff.write_reports(tmp_path, many_changes(3))
    assert (tmp_path / "diff.md").read_text(encoding="utf-8").count("<details>") == 3
    assert not (tmp_path / "diff-full.md").exists()
