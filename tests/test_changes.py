"""`--changed-since REF`: only the charts a change touched are checked; the rest are named."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURE_REPOS, tool_marks
from test_validate import run_cli

pytestmark = tool_marks("helm", "kubeconform", "conftest")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def add_chart(repo: Path, name: str, *, depends_on: str | None = None) -> None:
    chart = repo / "charts" / name
    shutil.copytree(FIXTURE_REPOS / "ok" / "charts" / "web", chart)
    text = (chart / "Chart.yaml").read_text(encoding="utf-8").replace("name: web", f"name: {name}")
    if depends_on is not None:
        text += f"dependencies:\n  - name: {depends_on}\n    version: 0.1.0\n"
        text += f"    repository: file://../{depends_on}\n"
    (chart / "Chart.yaml").write_text(text, encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """web (overlays in infra/clusters), api, and shop, which includes api by file://; on main."""
    source = tmp_path / "repo"
    shutil.copytree(FIXTURE_REPOS / "external-overlay", source)
    add_chart(source, "api")
    add_chart(source, "shop", depends_on="api")
    (source / "charts" / "shop" / "charts").mkdir()
    shutil.copytree(source / "charts" / "api", source / "charts" / "shop" / "charts" / "api")
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "feat: three charts")
    git(source, "switch", "-q", "-c", "topic")
    return source


def changed_run(source: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    code, _, stderr = run_cli(
        "validate", "--source", str(source), "--out", str(out), "--changed-since", "main", *extra
    )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return code, summary, stderr


def checked_targets(summary: dict[str, Any]) -> set[str]:
    return {f"{t['chart']}/{t['environment']}" for t in summary["targets"]}


def test_only_the_chart_whose_overlay_changed_is_checked(repo: Path, tmp_path: Path) -> None:
    overlay = repo / "infra" / "clusters" / "prd" / "web-values.yaml"
    overlay.write_text(overlay.read_text(encoding="utf-8") + "replicaCount: 4\n", "utf-8")
    git(repo, "commit", "-q", "-am", "fix: more web replicas in prd")
    code, summary, _ = changed_run(repo, tmp_path / "out")
    assert code == 0
    # Both environments of web: a change to one overlay still checks the chart as a whole.
    assert checked_targets(summary) == {"web/dev", "web/prd"}
    report = summary["changed_since"]
    assert report["changed_files"] == ["infra/clusters/prd/web-values.yaml"]
    assert set(report["skipped"]) == {"api", "shop"}
    assert "nothing it reads changed since main" in report["skipped"]["api"]
    (changes,) = [s for s in summary["stages"] if s["stage"] == "changes"]
    assert changes["summary"].startswith("1 chart(s) changed since main and are checked (web)")
    assert {f["chart"] for f in changes["findings"]} == {"api", "shop"}


def test_an_uncommitted_change_to_a_dependency_checks_the_chart_that_includes_it(
    repo: Path, tmp_path: Path
) -> None:
    values = repo / "charts" / "api" / "values.yaml"
    values.write_text(values.read_text(encoding="utf-8") + "replicaCount: 2\n", encoding="utf-8")
    (repo / "charts" / "api" / "NOTES.md").write_text("untracked, but a change\n", "utf-8")
    code, summary, _ = changed_run(repo, tmp_path / "out")
    assert code == 0
    assert checked_targets(summary) == {"api/dev", "api/prd", "shop/dev", "shop/prd"}
    assert summary["changed_since"]["changed_files"] == [
        "charts/api/NOTES.md",
        "charts/api/values.yaml",
    ]
    assert set(summary["changed_since"]["skipped"]) == {"web"}


def test_a_change_to_pipeline_yaml_checks_everything(repo: Path, tmp_path: Path) -> None:
    config = repo / "pipeline.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "kubernetes_version: 1.34.0\n", "utf-8")
    code, summary, _ = changed_run(repo, tmp_path / "out")
    assert code == 0
    assert {t.split("/")[0] for t in checked_targets(summary)} == {"web", "api", "shop"}
    assert summary["changed_since"]["everything_because"] == "pipeline.yaml (pipeline.yaml)"
    assert summary["changed_since"]["skipped"] == {}


def test_nothing_changed_checks_nothing_and_says_so(repo: Path, tmp_path: Path) -> None:
    code, summary, _ = changed_run(repo, tmp_path / "out")
    assert code == 0
    assert summary["status"] == "skipped"
    (changes,) = summary["stages"]
    assert changes["stage"] == "changes"
    assert changes["status"] == "skipped"
    assert changes["summary"].startswith("0 chart(s) changed since main")
    assert set(summary["changed_since"]["skipped"]) == {"web", "api", "shop"}


def test_a_planted_failure_in_a_skipped_chart_is_not_seen_but_is_in_a_changed_one(
    repo: Path, tmp_path: Path
) -> None:
    """The selection is real: what it skips is not checked, what it keeps is."""
    broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  bogus: 1\n"
    (repo / "charts" / "web" / "templates" / "broken.yaml").write_text(broken, "utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: web config")
    git(repo, "switch", "-q", "-c", "later")
    code, quiet, _ = changed_run(repo, tmp_path / "a", "--changed-since", "topic")
    assert code == 0  # web did not change since topic: not checked
    assert quiet["changed_since"]["ref"] == "topic"
    assert quiet["changed_since"]["checked"] == []
    code, summary, _ = changed_run(repo, tmp_path / "b")
    assert code == 1  # since main, web changed: its broken ConfigMap is found
    assert "web/dev" in checked_targets(summary)


def test_an_unknown_ref_is_a_usage_error_naming_the_flag(repo: Path, tmp_path: Path) -> None:
    code, _, stderr = run_cli(
        "validate",
        "--source",
        str(repo),
        "--out",
        str(tmp_path / "out"),
        "--changed-since",
        "no-such-branch",
    )
    assert code == 2
    assert "--changed-since: cannot compare with 'no-such-branch'" in stderr
