"""Findings where reviewers look: GitHub annotations and GitLab's Code Quality report.

Unit tests of the workflow-command text (escaping, the per-step cap, what is annotated) and
of the Code Quality entries, then `gitops-pipeline ci` for real (ruff, mypy, pytest, helm,
kubeconform, conftest) on a repository with faults planted at known lines: every annotation
and every Code Quality entry must point at exactly those lines.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RENDER_TOOLS, REPO_ROOT, fixture_repo, requires_tools

from pipeline.annotations import (
    GITHUB_ANNOTATIONS,
    GITLAB_CODE_QUALITY,
    escape_data,
    escape_property,
    github_annotations,
    gitlab_code_quality,
)
from pipeline.model import Finding, Result, Status
from pipeline.reports import source_file_check

SOURCE_FILES = {"app/main.py", "charts/web/templates/deployment.yaml", "pipeline.yaml"}


def in_source(path: str) -> bool:
    return path in SOURCE_FILES


def failed(message: str, **where: Any) -> Finding:
    return Finding(check="ruff", message=message, file="app/main.py", **where)


# --- GitHub's workflow commands, as the runner reads them -----------------------------------

_COMMAND = re.compile(r"^::(?P<level>error|warning) (?P<properties>[^:]*)::(?P<data>.*)$")


def _unescape(text: str) -> str:
    for escaped, plain in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(escaped, plain)
    return text


def annotations_of(text: str) -> list[dict[str, str]]:
    """Each annotation command in `text` with its level, properties and message, unescaped."""
    found = []
    for line in text.splitlines():
        match = _COMMAND.match(line)
        if match is None:
            continue
        properties = dict(p.split("=", 1) for p in match["properties"].split(","))
        found.append(
            {
                "level": match["level"],
                **{k: _unescape(v) for k, v in properties.items()},
                "message": _unescape(match["data"]),
            }
        )
    return found


def commands_in(text: str) -> list[str]:
    """Lines GitHub reads as commands: it trims leading white space, then looks for `::`."""
    return [line.lstrip() for line in text.splitlines() if line.lstrip().startswith("::")]


def test_escaping_follows_githubs_rules() -> None:
    assert escape_data("100% done\r\nnext: a,b") == "100%25 done%0D%0Anext: a,b"
    assert escape_property("a:b,c%d\ne") == "a%3Ab%2Cc%25d%0Ae"


def test_a_finding_annotates_its_file_and_line_with_everything_escaped() -> None:
    finding = failed("50% of it, then:\n::add-mask::oops", line=7, rule="E1,x:y")
    text = github_annotations([Result("lint", Status.FAILED, "1 problem", (finding,))], in_source)
    (annotation,) = annotations_of(text)
    assert annotation == {
        "level": "error",
        "file": "app/main.py",
        "line": "7",
        "title": "ruff E1,x:y",
        "message": "50% of it, then:\n::add-mask::oops",
    }
    # One command per annotation: the message's second line never reaches the runner alone.
    assert [c.split(" ", 1)[0] for c in commands_in(text)] == [
        "::group::lint:",
        "::error",
        "::endgroup::",
    ]


def test_a_finding_without_a_repository_file_is_a_plain_line_that_is_no_command() -> None:
    findings = (
        Finding(check="setup", message="helm missing\n::add-mask::x", status=Status.ERROR),
        Finding(check="render", message="bad YAML", file="rendered/web/dev.yaml"),
        Finding(check="kubeconform", message="invalid", file="/out/rendered/web/dev.yaml"),
    )
    text = github_annotations([Result("validate", Status.ERROR, "broken", findings)], in_source)
    assert annotations_of(text) == []
    assert [c.split(" ", 1)[0] for c in commands_in(text)] == ["::group::validate:", "::endgroup::"]
    assert "error setup: helm missing" in text.splitlines()
    assert "failed render rendered/web/dev.yaml: bad YAML" in text.splitlines()
    assert gitlab_code_quality([Result("validate", Status.ERROR, "", findings)], in_source) == []


def test_levels_follow_status_and_passed_or_waived_findings_are_not_annotated() -> None:
    findings = (
        failed("an error", status=Status.ERROR, line=1),
        failed("a failure", status=Status.FAILED, line=2),
        failed("a warning", status=Status.WARNING, line=3),
        failed("waived", status=Status.WAIVED, line=4, waiver="reason"),
        failed("passed", status=Status.PASSED, line=5),
    )
    results = [Result("lint", Status.FAILED, "", findings)]
    levels = [
        (a["level"], a["line"]) for a in annotations_of(github_annotations(results, in_source))
    ]
    assert levels == [("error", "1"), ("error", "2"), ("warning", "3")]
    severities = [
        (e["severity"], e["location"]["lines"]["begin"])
        for e in gitlab_code_quality(results, in_source)
    ]
    assert severities == [("critical", 1), ("major", 2), ("minor", 3)]


def test_annotations_stop_at_githubs_ten_per_level_and_say_how_many_more() -> None:
    errors = tuple(failed(f"error {n}", line=n) for n in range(1, 13))
    warnings = tuple(failed(f"warning {n}", line=n, status=Status.WARNING) for n in range(1, 12))
    results = [
        Result("lint", Status.FAILED, "", errors[:6]),
        Result("typecheck", Status.FAILED, "", errors[6:] + warnings),
    ]
    text = github_annotations(results, in_source)
    found = annotations_of(text)
    assert [a["message"] for a in found if a["level"] == "error"] == [
        f"error {n}" for n in range(1, 11)
    ]
    assert [a["message"] for a in found if a["level"] == "warning"] == [
        f"warning {n}" for n in range(1, 11)
    ]
    lines = text.splitlines()
    # The rest stay in their stage's group as plain lines, and the count closes the log.
    assert "failed ruff app/main.py:12: error 12" in lines
    assert "warning ruff app/main.py:11: warning 11" in lines
    assert lines[-1].startswith("2 more error(s) and 1 more warning(s) than GitHub shows")
    start = lines.index("::group::typecheck: failed")
    end = lines.index("::endgroup::", start)
    assert start < lines.index("failed ruff app/main.py:12: error 12") < end


def test_every_stage_is_a_log_group_and_no_count_when_all_fit() -> None:
    results = [
        Result("lint", Status.PASSED, "clean"),
        Result("policy", Status.FAILED, "1 problem", (failed("x", line=1),)),
    ]
    lines = github_annotations(results, in_source).splitlines()
    assert lines[0] == "::group::lint: passed"
    assert lines[1] == "lint: clean"
    assert lines.count("::endgroup::") == 2
    assert lines[-1] == "::endgroup::"


def test_alike_findings_of_several_environments_are_one_annotation() -> None:
    def in_env(environment: str, line: int = 2) -> Finding:
        return Finding(
            check="kubeconform",
            message="/spec: additional properties 'x' not allowed",
            file="charts/web/templates/deployment.yaml",
            line=line,
            chart="web",
            environment=environment,
            resource="Deployment/web",
        )

    results = [
        Result("kubeconform", Status.FAILED, "", (in_env("dev"), in_env("prd"), in_env("prd", 9)))
    ]
    found = annotations_of(github_annotations(results, in_source))
    assert [(a["line"], a["message"]) for a in found] == [
        ("2", "Deployment/web: /spec: additional properties 'x' not allowed [web/dev, web/prd]"),
        ("9", "Deployment/web: /spec: additional properties 'x' not allowed [web/prd]"),
    ]
    entries = gitlab_code_quality(results, in_source)
    assert [e["location"]["lines"]["begin"] for e in entries] == [2, 9]
    # GitLab shows one issue per fingerprint: they must differ where the places differ.
    assert len({e["fingerprint"] for e in entries}) == 2


def test_fingerprints_are_stable_and_tell_places_and_problems_apart() -> None:
    base = failed("unused import", line=3, rule="F401", chart="web", environment="dev")

    def fingerprint(finding: Finding) -> str:
        (entry,) = gitlab_code_quality([Result("lint", Status.FAILED, "", (finding,))], in_source)
        return str(entry["fingerprint"])

    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(base))
    assert fingerprint(base) == fingerprint(replace(base, environment="prd"))
    variants = [
        replace(base, line=4),
        replace(base, rule="F811"),
        replace(base, message="unused import os"),
        replace(base, file="pipeline.yaml"),
        replace(base, check="mypy"),
        replace(base, resource="Deployment/web"),
    ]
    assert len({fingerprint(base), *map(fingerprint, variants)}) == len(variants) + 1


def test_a_code_quality_entry_has_what_gitlab_requires() -> None:
    finding = Finding(check="config", message="bad key", status=Status.ERROR, file="pipeline.yaml")
    (entry,) = gitlab_code_quality([Result("plan", Status.ERROR, "", (finding,))], in_source)
    assert entry == {
        "description": "config: bad key",
        "check_name": "config",
        "fingerprint": entry["fingerprint"],
        "severity": "critical",
        "location": {"path": "pipeline.yaml", "lines": {"begin": 1}},  # GitLab needs a line
    }


def test_only_files_inside_the_repository_are_source_files(tmp_path: Path) -> None:
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "Chart.yaml").write_text("name: web\n", encoding="utf-8")
    (tmp_path.parent / "outside.yaml").write_text("", encoding="utf-8")
    is_source_file = source_file_check(tmp_path)
    assert is_source_file("charts/Chart.yaml")
    assert not is_source_file("charts")  # a folder
    assert not is_source_file("charts/missing.yaml")
    assert not is_source_file("../outside.yaml")
    assert not is_source_file(str(tmp_path / "charts" / "Chart.yaml"))  # absolute


# --- the wrappers use them ------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_github_workflow_prints_the_annotations_even_when_the_run_failed() -> None:
    steps = _load(REPO_ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["ci"]["steps"]
    names = [step.get("name") for step in steps]
    (printing,) = [s for s in steps if f"cat artifacts/{GITHUB_ANNOTATIONS}" in s.get("run", "")]
    assert printing["if"] == "always()"
    # Before the step that fails the job on a failed check, so a failure never skips it.
    assert names.index(printing["name"]) < names.index("fail when a check failed")


@pytest.mark.parametrize("wrapper", [".gitlab-ci.yml", "no-docker.gitlab-ci.yml"])
def test_the_gitlab_wrappers_declare_the_code_quality_report(wrapper: str) -> None:
    job = _load(REPO_ROOT / "ci" / "gitlab" / wrapper)["ci"]
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["codequality"] == f"artifacts/{GITLAB_CODE_QUALITY}"


# --- end to end: faults planted at known lines ------------------------------------------------

PLANTED_PYTHON = '''"""Planted by tests/test_annotations.py: os is never used."""

import json
import os

EMPTY = json.dumps({})
'''

# Three documents; the second ConfigMap has a field no ConfigMap has (kubeconform), and the
# Secret is plaintext (policy GP010). Each kind: line is where its resource starts.
PLANTED_TEMPLATE = """# Planted by tests/test_annotations.py.
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  mode: fast
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-broken
dataa:
  mode: slow
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-token
stringData:
  token: not-a-real-one
"""


def planted_repository(tmp_path: Path) -> Path:
    """The `ok` charts and Python project, with one fault of each kind at a known line."""
    source = fixture_repo("ok", tmp_path)
    shutil.copytree(REPO_ROOT / "tests" / "fixtures" / "python" / "ok", source, dirs_exist_ok=True)
    (source / "src" / "calc" / "planted.py").write_text(PLANTED_PYTHON, encoding="utf-8")
    templates = source / "charts" / "web" / "templates"
    (templates / "extras.yaml").write_text(PLANTED_TEMPLATE, encoding="utf-8")
    # The Deployment's own label goes (policy GP006, a warning); its pod template keeps one.
    deployment = templates / "deployment.yaml"
    text = deployment.read_text(encoding="utf-8")
    label = "\n    app.kubernetes.io/name: {{ .Chart.Name }}\n"
    assert text.count(label) == 1
    deployment.write_text(text.replace(label, "\n"), encoding="utf-8")
    return source


def line_of(path: Path, text: str, nth: int = 1) -> int:
    """The line number of the nth line of `path` that is exactly `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [i for i, line in enumerate(lines, start=1) if line == text][nth - 1]


@requires_tools(*RENDER_TOOLS, "ruff", "mypy", "pytest")
def test_ci_annotates_the_lines_of_the_planted_faults(tmp_path: Path) -> None:
    source = planted_repository(tmp_path)
    out = tmp_path / "artifacts"
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "ci", "--source", str(source), "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr

    template = "charts/web/templates/extras.yaml"
    deployment = "charts/web/templates/deployment.yaml"
    expected = {
        ("error", "src/calc/planted.py", line_of(source / "src/calc/planted.py", "import os")),
        ("error", template, line_of(source / template, "kind: ConfigMap", nth=2)),
        ("error", template, line_of(source / template, "kind: Secret")),
        ("warning", deployment, line_of(source / deployment, "kind: Deployment")),
    }
    assert expected == {
        ("error", "src/calc/planted.py", 4),
        ("error", template, 10),
        ("error", template, 17),
        ("warning", deployment, 2),
    }  # the fixture is what this test says it is

    printed = (out / GITHUB_ANNOTATIONS).read_text(encoding="utf-8")
    found = annotations_of(printed)
    assert {(a["level"], a["file"], int(a["line"])) for a in found} == expected
    titles = {(a["file"], int(a["line"])): a["title"] for a in found}
    assert titles == {
        ("src/calc/planted.py", 4): "ruff F401",
        (template, 10): "kubeconform",
        (template, 17): "policy GP010",
        (deployment, 2): "policy GP006",
    }
    # dev and prd fail alike: one annotation each, naming both.
    assert all(
        a["message"].endswith("[web/dev, web/prd]")
        for a in found
        if a["file"] != "src/calc/planted.py"
    ), found
    groups = [line for line in printed.splitlines() if line.startswith("::group::")]
    assert [g.split("::")[2].split(":")[0] for g in groups] == [
        "lint",
        "typecheck",
        "test",
        "helm-lint",
        "render",
        "kubeconform",
        "policy",
        "secrets",
    ]

    report = json.loads((out / GITLAB_CODE_QUALITY).read_text(encoding="utf-8"))
    severity = {"error": "major", "warning": "minor"}
    assert {
        (e["severity"], e["location"]["path"], e["location"]["lines"]["begin"]) for e in report
    } == {(severity[level], path, line) for level, path, line in expected}
    assert len({e["fingerprint"] for e in report}) == len(report)

    manifest = json.loads((out / ".gitops-pipeline-manifest.json").read_text(encoding="utf-8"))
    assert {GITHUB_ANNOTATIONS, GITLAB_CODE_QUALITY} <= set(manifest["files"])
