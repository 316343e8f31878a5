"""A corpus of bad inputs, one table: each case plants one fault and says what must come out.

Every case runs the real CLI (in-process, or in a subprocess when it sends a signal) with the
real tools, and is held to the same promises: the documented exit code; a message that names
the file and the field or line; no traceback; the reports a CI wrapper reads (this run's
verdict, never a previous run's) or none for a verb that writes none; and a source tree that
is byte-for-byte what it was. Many faults also have a focused test elsewhere; this table keeps
them all honest together.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURE_REPOS, RENDER_TOOLS, REPO_ROOT, tool_marks

from pipeline.cli import main
from pipeline.tools import TOOLS, TOOLS_DIR_ENV, inspect_tool

Plant = Callable[[Path], Path]  # given an empty case directory, returns the source it planted
Edit = Callable[[Path], None]  # one change to a copied fixture repository


# --- what a case expects -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reports:
    """Reports that must be in --out afterwards, and the status summary.json must give."""

    status: str
    files: tuple[str, ...] = ("summary.json", "summary.md")
    # What summary.json must say, when it differs from what stderr says (default: the same).
    message: str | None = None


STOPPED = Reports("error")  # a run stopped on a configuration or environment error
FAILED = Reports("failed", ("summary.json", "summary.md", "junit.xml"))
ERRORED = Reports("error", ("summary.json", "summary.md", "junit.xml"))
VALIDATED_FAILED = Reports(
    "failed", ("summary.json", "summary.md", "junit.xml", "rendered.yaml", "kubeconform.json")
)
VALIDATED_ERROR = Reports(
    "error", ("summary.json", "summary.md", "junit.xml", "rendered.yaml", "kubeconform.json")
)


@dataclass(frozen=True)
class BadInput:
    id: str
    plant: Plant
    # {repo}: what plant returned; {tmp}: the case directory; {out}: the artifacts directory.
    argv: tuple[str, ...]
    exit_code: int
    # A regex: on stderr for exit 2, 3 and signals, among the findings of summary.json for
    # exit 1 (each rendered as `file:line: message`), on stdout for exit 0.
    message: str
    reports: Reports | None
    out: str = "{tmp}/out"
    env: Mapping[str, str | None] = field(default_factory=dict)  # None: unset
    signal: signal.Signals | None = None
    tools: tuple[str, ...] = RENDER_TOOLS
    forbidden: tuple[str, ...] = ()  # must not appear in any output (a secret given as a value)


def validate(*extra: str) -> tuple[str, ...]:
    return ("validate", "--source", "{repo}", "--out", "{out}", *extra)


def verb(name: str, *extra: str) -> tuple[str, ...]:
    return (name, "--source", "{repo}", "--out", "{out}", *extra)


# --- planting faults -----------------------------------------------------------------------------


def fixture(name: str, *edits: Edit) -> Plant:
    def plant(case_dir: Path) -> Path:
        source = case_dir / "repo"
        shutil.copytree(FIXTURE_REPOS / name, source)
        for edit in edits:
            edit(source)
        return source

    return plant


def write(relative: str, content: str | bytes) -> Edit:
    def edit(source: Path) -> None:
        path = source / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return edit


def append(relative: str, text: str) -> Edit:
    def edit(source: Path) -> None:
        path = source / relative
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")

    return edit


def replace(relative: str, old: str, new: str) -> Edit:
    def edit(source: Path) -> None:
        path = source / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{relative} no longer contains {old!r}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    return edit


def remove(relative: str) -> Edit:
    def edit(source: Path) -> None:
        (source / relative).unlink()

    return edit


def link_outside(relative: str, content: str) -> Edit:
    """`relative` becomes a link to a file next to the repository, outside it."""

    def edit(source: Path) -> None:
        outside = source.parent / "outside.yaml"
        outside.write_text(content, encoding="utf-8")
        path = source / relative
        path.unlink(missing_ok=True)
        path.symlink_to(outside)

    return edit


def beside(relative: str, content: str) -> Edit:
    """A file next to the repository (for paths in pipeline.yaml that leave it)."""

    def edit(source: Path) -> None:
        path = source.parent / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")

    return edit


def config(text: str | bytes) -> Plant:
    """The `ok` repository with this pipeline.yaml."""
    return fixture("ok", write("pipeline.yaml", text))


def empty_dir(name: str) -> Edit:
    def edit(source: Path) -> None:
        (source.parent / name).mkdir()

    return edit


def only_tools(*names: str) -> Edit:
    """A tools directory, beside the repository, holding links to just these pinned tools."""

    def edit(source: Path) -> None:
        tools = source.parent / "some-tools"
        tools.mkdir()
        for name in names:
            found = inspect_tool(TOOLS[name]).path
            assert found is not None, f"{name} is not installed"
            (tools / name).symlink_to(found)

    return edit


def files(tree: Mapping[str, str | bytes]) -> Plant:
    """A directory holding exactly these files (a small Python project, a plain folder)."""

    def plant(case_dir: Path) -> Path:
        source = case_dir / "repo"
        source.mkdir()
        for relative, content in tree.items():
            write(relative, content)(source)
        return source

    return plant


GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false")


def git_repo(tree: Mapping[str, str], *, commits: tuple[str, ...] = ("feat: first",)) -> Plant:
    """A git repository with these files, committed once per message (none: no commit)."""

    def plant(case_dir: Path) -> Path:
        source = files(tree)(case_dir)
        subprocess.run([*GIT, "init", "-q", str(source)], check=True)
        for message in commits:
            subprocess.run([*GIT, "-C", str(source), "add", "-A"], check=True)
            subprocess.run(
                [*GIT, "-C", str(source), "commit", "-q", "--allow-empty", "-m", message],
                check=True,
            )
        return source

    return plant


PROJECT_TOML = (
    '[project]\nname = "demo"\nversion = "0.1.0"\n\n'
    '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
)
PASSING_TEST = "from demo import double\n\n\ndef test_double():\n    assert double(2) == 4\n"
DEMO_MODULE = "def double(x):\n    return 2 * x\n"


def python_project(extra: Mapping[str, str | bytes]) -> Plant:
    tree: dict[str, str | bytes] = {
        "pyproject.toml": PROJECT_TOML,
        "demo.py": DEMO_MODULE,
        "tests/test_demo.py": PASSING_TEST,
        "tests/conftest.py": "import sys, pathlib\n"
        "sys.path.insert(0, str(pathlib.Path(__file__).parents[1]))\n",
    }
    tree.update(extra)
    return files({k: v for k, v in tree.items() if v != ""})


HANGING = python_project(
    {
        "tests/test_demo.py": "import os, time\n\n\n"
        "def test_hangs():\n"
        "    with open(os.environ['HANG_MARKER'], 'w') as marker:\n"
        "        marker.write(str(os.getpid()))\n"
        "    time.sleep(300)\n",
    }
)

CHART_YAML = "charts/web/Chart.yaml"
VALUES_DEV = "charts/web/values-dev.yaml"
DEPLOYMENT = "charts/web/templates/deployment.yaml"
REDIS = "dependencies:\n  - name: redis\n    version: 19.0.1\n    repository: {repository}\n"
LOCK_OUT_OF_SYNC = (
    "dependencies:\n- name: redis\n  repository: https://charts.example.invalid\n"
    "  version: 19.0.1\ndigest: sha256:" + "0" * 64 + '\ngenerated: "2026-01-01T00:00:00Z"\n'
)
WAIVER = "policy:\n  waivers:\n    - rule: {rule}\n      kind: Deployment\n      name: web\n"
VALID_POLICY = (
    'package main\n\nimport rego.v1\n\ndeny contains msg if {\n  false\n  msg := "x"\n}\n'
)
NO_SECRET = "GITOPS_BAD_INPUTS_UNSET_TOKEN"  # noqa: S105 - the name of a variable nobody sets
RELEASABLE = {"app/Dockerfile": "FROM scratch\n"}
NO_REPORTS = None  # a verb that writes none, or a run refused before it could


# --- the corpus ----------------------------------------------------------------------------------

CASES: list[BadInput] = [
    # pipeline.yaml
    BadInput(
        "config-not-utf8",
        config(b'kubernetes_version: "1.35.0"\n# caf\xe9\n'),
        validate(),
        2,
        r"pipeline\.yaml:2: pipeline\.yaml is not UTF-8: byte 0xe9",
        STOPPED,
    ),
    BadInput(
        "config-utf16-with-bom",
        config('kubernetes_version: "1.35.0"\n'.encode("utf-16")),
        validate(),
        2,
        r"pipeline\.yaml:1: .*not UTF-8 \(it starts with a UTF-16 byte order mark\)",
        STOPPED,
    ),
    BadInput(
        "config-utf16-without-bom",
        config('kubernetes_version: "1.35.0"\n'.encode("utf-16-le")),
        validate(),
        2,
        r"pipeline\.yaml:1: invalid YAML: character U\+0000 .*is the file UTF-16\?",
        STOPPED,
    ),
    BadInput(
        "config-invalid-yaml",
        config("charts:\n  web:\n    path: [charts/web\n"),
        validate(),
        2,
        r"pipeline\.yaml:4: invalid YAML",
        STOPPED,
    ),
    BadInput(
        "config-unknown-key",
        config('kubernetes_version: "1.35.0"\nenvironment: [dev]\n'),
        validate(),
        2,
        r"pipeline\.yaml:2: environment: unknown key 'environment'; did you mean 'environments'\?",
        STOPPED,
    ),
    BadInput(
        "config-unknown-nested-key",
        config("charts:\n  web:\n    pathh: charts/web\n"),
        validate(),
        2,
        r"pipeline\.yaml:3: charts\.web\.pathh: unknown key 'pathh'; did you mean 'path'\?",
        STOPPED,
    ),
    BadInput(
        "config-list-where-a-list-is-wanted",
        config("environments: dev\n"),
        validate(),
        2,
        r"pipeline\.yaml:1: environments: expected a list",
        STOPPED,
    ),
    BadInput(
        "config-not-a-boolean",
        config("policy:\n  builtin: maybe\n"),
        validate(),
        2,
        r"pipeline\.yaml:2: policy\.builtin: expected true or false",
        STOPPED,
    ),
    BadInput(
        "config-partial-kubernetes-version",
        config('kubernetes_version: "1.35"\n'),
        validate(),
        2,
        r"pipeline\.yaml:1: kubernetes_version: expected a full version x\.y\.z, got '1\.35'",
        STOPPED,
    ),
    BadInput(
        "config-zero-timeout",
        config("timeouts:\n  helm: 0\n"),
        validate(),
        2,
        r"pipeline\.yaml:2: timeouts\.helm: expected a number of seconds above 0, got 0",
        STOPPED,
    ),
    BadInput(
        "config-negative-timeout",
        config("timeouts:\n  default: -5\n"),
        validate(),
        2,
        r"pipeline\.yaml:2: timeouts\.default: expected a number of seconds above 0, got -5",
        STOPPED,
    ),
    BadInput(
        "config-timeout-as-text",
        config("timeouts:\n  default: soon\n"),
        validate(),
        2,
        r"pipeline\.yaml:2: timeouts\.default: expected a number",
        STOPPED,
    ),
    BadInput(
        "config-timeout-for-an-unknown-tool",
        config("timeouts:\n  helmm: 3\n"),
        validate(),
        2,
        r"pipeline\.yaml:2: timeouts\.helmm: unknown tool 'helmm'; did you mean 'helm'\?",
        STOPPED,
    ),
    BadInput(
        "config-image-for-an-unknown-tool",
        config("tools:\n  kubeconfrom: {image: registry.internal/kubeconform:v0.7.0}\n"),
        validate(),
        2,
        r"pipeline\.yaml:2: tools\.kubeconfrom: unknown tool 'kubeconfrom'; "
        r"did you mean 'kubeconform'\?",
        STOPPED,
    ),
    BadInput(
        "config-image-without-tag-or-digest",
        config("tools:\n  helm: {image: registry.internal/alpine/helm}\n"),
        validate(),
        2,
        r"pipeline\.yaml:2: tools\.helm\.image: pin the image with a tag or a digest",
        STOPPED,
    ),
    BadInput(
        "config-duplicate-key",
        config('kubernetes_version: "1.35.0"\nkubernetes_version: "1.34.0"\n'),
        validate(),
        2,
        r"pipeline\.yaml:2: kubernetes_version: duplicate key",
        STOPPED,
    ),
    BadInput(
        "config-a-list-instead-of-a-mapping",
        config("- charts\n- web\n"),
        validate(),
        2,
        r"pipeline\.yaml:1: \(top level\): expected a mapping",
        STOPPED,
    ),
    BadInput(
        # Not a fault: an empty file is the same as none, and must not be mistaken for one.
        "config-empty-file-means-defaults",
        config(""),
        validate(),
        0,
        r"artifacts: ",
        Reports("passed"),
    ),
    BadInput(
        "config-overlay-missing",
        fixture("missing-overlay"),
        validate(),
        2,
        r"pipeline\.yaml: charts\.web\.environments\.prd\.values: values file for chart 'web' "
        r"environment 'prd' does not exist: infra/clusters/prd/web-values\.yaml",
        VALIDATED_ERROR,
    ),
    BadInput(
        "config-overlay-outside-the-repository",
        fixture(
            "ok",
            beside("outside.yaml", "replicaCount: 9\n"),
            write(
                "pipeline.yaml",
                "charts:\n  web:\n    environments:\n      prd:\n"
                "        values: [../outside.yaml]\n",
            ),
        ),
        validate(),
        2,
        r"pipeline\.yaml: charts\.web\.environments\.prd\.values: '\.\./outside\.yaml' "
        r"resolves outside the repository",
        STOPPED,
    ),
    BadInput(
        "config-chart-path-outside-the-repository",
        fixture(
            "ok",
            beside("elsewhere/Chart.yaml", "apiVersion: v2\nname: other\nversion: 0.1.0\n"),
            write("pipeline.yaml", "charts:\n  other:\n    path: ../elsewhere\n"),
        ),
        validate(),
        2,
        r"pipeline\.yaml: charts\.other\.path: '\.\./elsewhere' resolves outside the repository",
        STOPPED,
    ),
    BadInput(
        "config-linked-overlay-leaves-the-repository",
        fixture("ok", link_outside(VALUES_DEV, "password: from-the-host\n")),
        validate(),
        2,
        r"charts/web/values-dev\.yaml' resolves outside the repository",
        STOPPED,
        forbidden=("from-the-host",),
    ),
    BadInput(
        "config-discovery-path-missing",
        config("discovery:\n  paths: [deploy]\n"),
        validate(),
        2,
        r"pipeline\.yaml: discovery\.paths \(deploy\): directory does not exist",
        VALIDATED_ERROR,
    ),
    BadInput(
        "config-crd-schemas-missing",
        config("kubeconform:\n  crd_schemas: [schemas/crds]\n"),
        validate(),
        2,
        r"pipeline\.yaml: kubeconform\.crd_schemas \(schemas/crds\): "
        r"CRD schema directory does not exist",
        VALIDATED_ERROR,
    ),
    BadInput(
        "config-tag-format-without-version",
        config('release:\n  tag_format: "release"\n'),
        validate(),
        2,
        r"pipeline\.yaml:2: release\.tag_format: must contain \{version\} exactly once",
        STOPPED,
    ),
    # policies and waivers
    BadInput(
        "waiver-for-an-unknown-rule",
        config(WAIVER.format(rule="GP999") + "      reason: typo in the rule id\n"),
        validate(),
        2,
        r"pipeline\.yaml:3: policy\.waivers\[0\]\.rule: .*GP999",
        STOPPED,
    ),
    BadInput(
        "waiver-expired",
        config(WAIVER.format(rule="GP004") + "      reason: demo\n      expires: 2020-01-31\n"),
        validate(),
        1,
        r"pipeline\.yaml:3: waiver of GP004 for Deployment/web expired on 2020-01-31",
        VALIDATED_FAILED,
    ),
    BadInput(
        "waiver-without-reason",
        config(WAIVER.format(rule="GP004")),
        validate(),
        2,
        r"pipeline\.yaml:3: policy\.waivers\[0\]\.reason: is required for a waiver",
        STOPPED,
    ),
    BadInput(
        "waiver-with-a-bad-date",
        config(WAIVER.format(rule="GP004") + "      reason: demo\n      expires: next week\n"),
        validate(),
        2,
        r"pipeline\.yaml:3: policy\.waivers\[0\]\.expires: expected YYYY-MM-DD",
        STOPPED,
    ),
    BadInput(
        "rego-syntax-error",
        fixture("ok", write("policy/broken.rego", "package main\n\ndeny contains msg if {\n")),
        validate(),
        1,
        r"^policy/broken\.rego:4: .*rego_parse_error",
        VALIDATED_ERROR,
    ),
    # charts
    BadInput(
        "chart-yaml-invalid",
        fixture("ok", write(CHART_YAML, "apiVersion: v2\nname: web\nversion: [0.1.0\n")),
        validate(),
        1,
        r"charts/web/Chart\.yaml",
        VALIDATED_ERROR,
    ),
    BadInput(
        "chart-yaml-without-name",
        fixture("ok", replace(CHART_YAML, "name: web\n", "")),
        validate(),
        1,
        r"charts/web/Chart\.yaml.*name",
        VALIDATED_FAILED,
    ),
    BadInput(
        "chart-yaml-not-utf8",
        fixture("ok", write(CHART_YAML, b"apiVersion: v2\nname: web\nversion: 0.1.0\n# \xe9\n")),
        validate(),
        1,
        r"charts/web/Chart\.yaml.*not UTF-8",
        VALIDATED_ERROR,
    ),
    BadInput(
        "values-not-utf8",
        fixture("ok", write(VALUES_DEV, "replicaCount: 1\n# caf\u00e9\n".encode("utf-16"))),
        validate(),
        1,
        r"charts/web/values-dev\.yaml:.*is not UTF-8 text",
        VALIDATED_ERROR,
    ),
    BadInput(
        "values-invalid-yaml",
        fixture("bad-yaml"),
        validate(),
        1,
        r"charts/web/values-dev\.yaml:\d+: ",
        VALIDATED_ERROR,
    ),
    BadInput(
        "template-syntax-error",
        fixture("ok", append(DEPLOYMENT, "{{ if }}\n")),
        validate(),
        1,
        r"charts/web/templates/deployment\.yaml:\d+: ",
        VALIDATED_FAILED,
        # Reports inside the repository: the only part of the tree that may change.
        out="{repo}/artifacts",
    ),
    BadInput(
        "template-render-error",
        fixture("template-error"),
        validate(),
        1,
        r"charts/web/templates/ingress\.yaml:\d+: .*secretName",
        VALIDATED_FAILED,
    ),
    BadInput(
        "template-renders-nothing",
        fixture(
            "ok",
            write(DEPLOYMENT, "{{- if .Values.enabled }}\nkind: Pod\n{{- end }}\n"),
            remove("charts/web/templates/service.yaml"),
        ),
        validate(),
        1,
        r"^charts/web.*rendered no resources",
        VALIDATED_FAILED,
    ),
    BadInput(
        "no-chart-at-all",
        files({"README.md": "nothing to deploy here\n"}),
        validate(),
        1,
        r"no Helm chart found: looked for Chart\.yaml under \..*--allow-empty",
        FAILED,
    ),
    BadInput(
        "chart-lock-out-of-sync",
        fixture(
            "ok",
            append(CHART_YAML, REDIS.format(repository="https://charts.example.invalid")),
            write("charts/web/Chart.lock", LOCK_OUT_OF_SYNC),
        ),
        validate(),
        1,
        r"charts/web/Chart\.lock:.*out of sync",
        VALIDATED_ERROR,
        env={"GITOPS_PIPELINE_CACHE": "{tmp}/cache"},
    ),
    BadInput(
        "dependency-without-a-lock",
        fixture("ok", append(CHART_YAML, REDIS.format(repository="https://charts.example.com"))),
        validate(),
        1,
        r"charts/web/Chart\.yaml:.*no charts/web/Chart\.lock to build it from: "
        r"run `helm dependency update charts/web`",
        VALIDATED_ERROR,
        env={"GITOPS_PIPELINE_CACHE": "{tmp}/cache"},
    ),
    BadInput(
        "dependency-not-vendored-offline",
        fixture(
            "ok",
            append(CHART_YAML, REDIS.format(repository="https://charts.example.invalid")),
            write("charts/web/Chart.lock", LOCK_OUT_OF_SYNC),
        ),
        validate("--offline"),
        1,
        r"charts/web/Chart\.yaml:.*dependency 'redis' \(19\.0\.1\) is not vendored in "
        r"charts/web/charts/ and --offline downloads nothing",
        VALIDATED_ERROR,
    ),
    BadInput(
        "manifest-with-a-wrong-type",
        fixture("wrong-type"),
        validate(),
        1,
        r"charts/web/templates/deployment\.yaml:.*/spec/replicas",
        VALIDATED_FAILED,
    ),
    BadInput(
        "custom-resource-without-a-schema",
        fixture("crd-no-schema"),
        validate(),
        1,
        r"charts/web/templates/widget\.yaml:.*Widget",
        VALIDATED_FAILED,
    ),
    # CLI flags
    BadInput(
        "out-is-a-file",
        fixture("ok"),
        validate(),
        2,
        r"charts/web/Chart\.yaml: --out: is a file, not a directory",
        NO_REPORTS,
        out="{repo}/charts/web/Chart.yaml",
        tools=(),
    ),
    BadInput(
        "out-is-the-root",
        fixture("ok"),
        validate(),
        2,
        r"/: --out: must not be the root of the file system",
        NO_REPORTS,
        out="/",
        tools=(),
    ),
    BadInput(
        "out-is-the-source-root",
        fixture("ok"),
        validate(),
        2,
        r"--out: must not be the repository itself",
        NO_REPORTS,
        out="{repo}",
        tools=(),
    ),
    BadInput(
        "out-inside-a-chart",
        fixture("ok"),
        validate(),
        2,
        r"--out: must not be inside charts/web",
        NO_REPORTS,
        out="{repo}/charts/web/reports",
        tools=(),
    ),
    BadInput(
        "out-inside-the-policy-folder",
        fixture("ok", write("policy/main.rego", VALID_POLICY)),
        validate(),
        2,
        r"--out: must not be inside policy",
        NO_REPORTS,
        out="{repo}/policy/reports",
        tools=(),
    ),
    BadInput(
        "source-missing",
        fixture("ok"),
        ("validate", "--source", "{tmp}/not-there", "--out", "{out}"),
        2,
        r"not-there: --source: source directory does not exist",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "crd-schemas-flag-missing-directory",
        fixture("ok"),
        validate("--crd-schemas", "{tmp}/no-crds"),
        2,
        r"no-crds: --crd-schemas: CRD schema directory does not exist",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "env-unknown",
        fixture("ok"),
        validate("--env", "qa"),
        2,
        r"--env: unknown environment 'qa'; known environments: dev, prd",
        VALIDATED_ERROR,
    ),
    BadInput(
        "schema-location-unreachable",
        fixture("ok"),
        validate("--schema-location", "http://127.0.0.1:9/schemas"),
        3,
        r"kubeconform could not download schemas from http://127\.0\.0\.1:9 "
        r"\(4 resources unchecked\)",
        VALIDATED_ERROR,
    ),
    BadInput(
        "schema-location-missing-directory",
        fixture("ok"),
        validate("--schema-location", "{tmp}/no-schemas"),
        2,
        r"no-schemas: --schema-location: schema location is a folder that does not exist",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "config-schema-location-missing-directory",
        config("kubeconform:\n  schema_locations: ['schemas/{{ .ResourceKind }}.json']\n"),
        validate(),
        2,
        r"pipeline\.yaml: kubeconform\.schema_locations "
        r"\(schemas/\{\{ \.ResourceKind \}\}\.json\): "
        r"schema location is a folder that does not exist",
        VALIDATED_ERROR,
    ),
    BadInput(
        "timeout-zero",
        fixture("ok"),
        validate("--timeout", "0"),
        2,
        r"argument --timeout: expected seconds above 0, got '0'",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "timeout-negative",
        fixture("ok"),
        validate("--timeout=-3"),
        2,
        r"argument --timeout: expected seconds above 0, got '-3'",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "timeout-as-text",
        fixture("ok"),
        validate("--timeout", "soon"),
        2,
        r"argument --timeout: expected seconds, got 'soon'",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "python-matrix-without-dagger",
        python_project({}),
        verb("test", "--python", "3.12"),
        2,
        r"--python: a Python version matrix needs the Dagger runner",
        STOPPED,
        tools=(),
    ),
    BadInput(
        "secret-flag-given-a-value",
        git_repo(RELEASABLE),
        verb("release", "--image", "registry.test/acme/x", "--registry-password", "hunter2"),
        2,
        r"--registry-password takes a reference, env:NAME or file:PATH, not a value",
        NO_REPORTS,
        tools=(),
        forbidden=("hunter2",),
    ),
    BadInput(
        "git-token-given-a-value",
        git_repo(RELEASABLE),
        verb("release", "--image", "registry.test/acme/x", "--git-token", "ghp_s3cr3t"),
        2,
        r"--git-token takes a reference, env:NAME or file:PATH, not a value",
        NO_REPORTS,
        tools=(),
        forbidden=("ghp_s3cr3t",),
    ),
    BadInput(
        "verb-misspelt",
        fixture("ok"),
        ("valdate", "--source", "{repo}"),
        2,
        r"invalid choice: 'valdate'",
        NO_REPORTS,
        tools=(),
    ),
    # Python projects
    BadInput(
        "pyproject-invalid-toml",
        python_project({"pyproject.toml": '[project\nname = "demo"\n'}),
        verb("test"),
        2,
        r"pyproject\.toml: invalid TOML",
        STOPPED,
        tools=(),
    ),
    BadInput(
        "pyproject-not-utf8",
        python_project({"pyproject.toml": b'[project]\nname = "d\xe9mo"\n'}),
        verb("lint"),
        2,
        r"pyproject\.toml: is not UTF-8 text",
        STOPPED,
        tools=(),
    ),
    BadInput(
        "no-python-project",
        files({"README.md": "charts only\n"}),
        verb("test"),
        2,
        r"no Python project found",
        STOPPED,
        tools=(),
    ),
    BadInput(
        "python-path-missing",
        python_project({"pipeline.yaml": "python:\n  paths: [service]\n"}),
        verb("typecheck"),
        2,
        r"pipeline\.yaml: python\.paths \(service\): Python project directory does not exist",
        STOPPED,
        tools=(),
    ),
    BadInput(
        "conftest-exits-the-session-early",
        python_project({"tests/conftest.py": "import sys\n\nsys.exit(0)\n"}),
        verb("test"),
        1,
        r"\.: pytest exited 0 but (wrote no JUnit report|ran no test)",
        FAILED,
        tools=(),
    ),
    BadInput(
        "no-tests-collected",
        python_project({"tests/test_demo.py": "def helper():\n    return 1\n"}),
        verb("test"),
        1,
        r"\.: no tests were collected",
        FAILED,
        tools=(),
    ),
    BadInput(
        "coverage-below-minimum",
        python_project(
            {
                "pipeline.yaml": "python:\n  min_coverage: 100\n",
                "demo.py": DEMO_MODULE + "\n\ndef unused(x):\n    y = x + 1\n    return y\n",
            }
        ),
        verb("test"),
        1,
        r"\.: coverage \d+\.\d% is below the minimum 100%",
        FAILED,
        tools=(),
    ),
    BadInput(
        "module-syntax-error-in-test",
        python_project({"demo.py": "def double(x)\n    return 2 * x\n"}),
        verb("test"),
        1,
        r"SyntaxError.*(?<!test_)demo\.py|(?<!test_)demo\.py.*SyntaxError",
        FAILED,
        tools=(),
    ),
    BadInput(
        "module-syntax-error-in-lint",
        python_project({"demo.py": "def double(x)\n    return 2 * x\n"}),
        verb("lint"),
        1,
        r"demo\.py:1: Expected `:`",
        FAILED,
        tools=(),
    ),
    BadInput(
        "type-error-in-typecheck",
        python_project({"demo.py": "def double(x: int) -> int:\n    return str(x)\n"}),
        verb("typecheck"),
        1,
        r"demo\.py:2: .*Incompatible return value type",
        FAILED,
        tools=(),
    ),
    # release and version
    BadInput(
        "version-outside-a-git-repository",
        files({"README.md": "not a repository\n"}),
        verb("version"),
        2,
        r"the source is not a git repository",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "version-before-the-first-commit",
        git_repo({"README.md": "x\n"}, commits=()),
        verb("version"),
        2,
        r"the repository has no commits yet",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "changelog-outside-a-git-repository",
        files({"README.md": "not a repository\n"}),
        verb("changelog"),
        2,
        r"the source is not a git repository",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "build-without-a-dockerfile",
        git_repo(RELEASABLE),
        verb("build", "--image", "registry.test/acme/x", "--dockerfile", "nope"),
        2,
        r"image\.dockerfile \(or --dockerfile\): no Dockerfile at nope",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "build-arg-without-a-value",
        git_repo(RELEASABLE),
        verb("build", "--image", "registry.test/acme/x", "--build-arg", "VERSION"),
        2,
        r"--build-arg: expected KEY=VALUE, got 'VERSION'",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "release-without-an-image",
        git_repo(RELEASABLE),
        verb("release"),
        2,
        r"--image: no image: pass --image or set image\.repository",
        NO_REPORTS,
        tools=(),
    ),
    BadInput(
        "release-password-from-an-unset-variable",
        git_repo(RELEASABLE),
        verb(
            "release",
            "--image",
            "registry.test/acme/x",
            "--registry-password",
            f"env:{NO_SECRET}",
        ),
        2,
        rf"environment variable {NO_SECRET} is not set",
        NO_REPORTS,
        env={NO_SECRET: None},
        tools=(),
    ),
    BadInput(
        "release-password-from-a-missing-file",
        git_repo(RELEASABLE),
        verb(
            "release",
            "--image",
            "registry.test/acme/x",
            "--registry-password",
            "file:{tmp}/no-such-secret",
        ),
        2,
        r"no-such-secret: secret REGISTRY_PASSWORD: cannot read the secret's file",
        NO_REPORTS,
        tools=(),
    ),
    # tools
    BadInput(
        "every-tool-missing",
        fixture("ok", empty_dir("no-tools")),
        validate(),
        3,
        r"tool 'helm' is not installed: run `bash ci/install-tools\.sh` "
        r"\(.*go install helm\.sh/helm",
        ERRORED,
        env={TOOLS_DIR_ENV: "{tmp}/no-tools", "PATH": "{tmp}/no-tools"},
        tools=(),
    ),
    BadInput(
        "kubeconform-missing",
        fixture("ok", only_tools("helm", "conftest")),
        validate(),
        3,
        r"tool 'kubeconform' is not installed: run `bash ci/install-tools\.sh` "
        r"\(.*go install github\.com/yannh/kubeconform",
        VALIDATED_ERROR,
        env={TOOLS_DIR_ENV: "{tmp}/some-tools", "PATH": "{tmp}/some-tools"},
        tools=("helm", "conftest"),
    ),
    BadInput(
        "conftest-missing",
        fixture("ok", only_tools("helm", "kubeconform")),
        verb("policy"),
        3,
        r"tool 'conftest' is not installed: run `bash ci/install-tools\.sh` "
        r"\(.*go install github\.com/open-policy-agent/conftest",
        ERRORED,
        env={TOOLS_DIR_ENV: "{tmp}/some-tools", "PATH": "{tmp}/some-tools"},
        tools=("helm", "kubeconform"),
    ),
    # signals: what CI sends on cancel
    BadInput(
        "sigterm-during-test",
        HANGING,
        verb("test"),
        143,
        r"interrupted by SIGTERM",
        Reports("interrupted", ("summary.json",), message="interrupted"),
        env={"HANG_MARKER": "{tmp}/marker"},
        signal=signal.SIGTERM,
        tools=(),
    ),
    BadInput(
        "sigint-during-test",
        HANGING,
        verb("test"),
        130,
        r"interrupted by SIGINT",
        Reports("interrupted", ("summary.json",), message="interrupted"),
        env={"HANG_MARKER": "{tmp}/marker"},
        signal=signal.SIGINT,
        tools=(),
    ),
]


def params() -> list[Any]:
    found = []
    for case in CASES:
        marks = tool_marks(*case.tools) if case.tools else []
        found.append(pytest.param(case, id=case.id, marks=marks))
    return found


# --- running a case ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def in_process(argv: list[str]) -> Outcome:
    """The CLI in this process; argparse's own usage errors end in SystemExit, kept as a code."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


def signalled(argv: list[str], signum: signal.Signals, marker: Path) -> Outcome:
    """The CLI in a subprocess, sent `signum` once the hanging test is running."""
    cli = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.is_file() or not marker.read_text(encoding="utf-8"):
            assert cli.poll() is None, cli.communicate()
            assert time.monotonic() < deadline, "the hanging test never started"
            time.sleep(0.1)
        cli.send_signal(signum)
        stdout, stderr = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    return Outcome(cli.returncode, stdout, stderr)


def snapshot(root: Path, skip: Path | None) -> dict[str, str]:
    """Every file's sha256, every folder and every link's target, under `root`."""
    found: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        if skip is not None and here == skip:
            dirs.clear()
            continue
        for name in [*dirs, *names]:
            path = here / name
            if path == skip:
                continue
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[key] = f"-> {path.readlink()}"
            elif path.is_dir():
                found[key] = "folder"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def findings_text(summary: dict[str, Any]) -> list[str]:
    """Each failed or errored finding as `file[:line]: message`, as the CLI prints it."""
    return [
        ":".join(str(part) for part in (f.get("file"), f.get("line")) if part is not None)
        + f": {f['message']}"
        for stage in summary.get("stages", [])
        for f in stage["findings"]
        if f["status"] in {"failed", "error"}
    ]


STALE = {"schema_version": 1, "status": "passed", "stages": [], "note": "an earlier run"}


def run_case(case: BadInput, argv: list[str]) -> Outcome:
    if case.signal is None:
        return in_process(argv)
    return signalled(argv, case.signal, Path(os.environ["HANG_MARKER"]))


def reports_left(case: BadInput, out: Path, printed: str) -> dict[str, Any] | None:
    """summary.json as this run left it: checked against the case's reports, or None."""
    if case.reports is None:
        return None
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert "note" not in summary, f"the previous run's summary.json was left behind\n{printed}"
    missing = [name for name in case.reports.files if not (out / name).is_file()]
    assert not missing, f"reports missing: {missing}\n{printed}"
    assert summary["status"] == case.reports.status, summary
    return summary


@pytest.mark.parametrize("case", params())
def test_a_bad_input_is_reported_and_changes_nothing(
    case: BadInput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = case.plant(tmp_path)
    out = Path(case.out.format(repo=repo, tmp=tmp_path))
    if case.reports is not None:
        # A previous run's verdict: afterwards summary.json must be this run's, never it.
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(STALE), encoding="utf-8")
    # Reports are the one part of the tree a run may write, and only when --out is there.
    out_in_source = out == repo or repo in out.parents
    unwatched = out if out_in_source and case.reports is not None else None
    before = snapshot(repo, unwatched)
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value.format(tmp=tmp_path))

    run = run_case(case, [arg.format(repo=repo, tmp=tmp_path, out=out) for arg in case.argv])

    printed = run.stdout + run.stderr
    assert run.exit_code == case.exit_code, printed
    assert "Traceback" not in printed
    for secret in case.forbidden:
        assert secret not in printed
    summary = reports_left(case, out, printed)
    if case.reports is None and tmp_path in out.parents and not out_in_source:
        written = [p for p in out.rglob("*") if p.is_file()]
        assert not written, f"{case.argv[0]} writes no reports, yet wrote {written}"
    if case.exit_code == 0:
        assert re.search(case.message, run.stdout), run.stdout
    elif case.exit_code == 1:
        findings = findings_text(summary or {})
        assert any(re.search(case.message, f) for f in findings), "\n".join(findings) or printed
    else:
        assert re.search(case.message, run.stderr), run.stderr
        if case.reports is not None and summary is not None:
            expected = case.reports.message or case.message
            said = [summary.get("stopped") or "", *findings_text(summary)]
            assert any(re.search(expected, text) for text in said), summary
    assert snapshot(repo, unwatched) == before, "the source tree changed"
