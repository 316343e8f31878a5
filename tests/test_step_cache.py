"""The local runner's step cache: a re-run replays what did not change, and only that."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import fixture_repo, requires_tools
from test_validate import run_cli

from pipeline.model import Step, StepResult, src
from pipeline.runners.local import LocalRunner
from pipeline.step_cache import StepCache

RENDER = ("helm", "kubeconform", "conftest")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GITOPS_PIPELINE_CACHE", str(cache))
    return cache


def validate(source: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code, _, _ = run_cli("validate", "--source", str(source), "--out", str(out), *extra)
    return code, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def steps(summary: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {s["stage"]: (s["steps"], s["cached_steps"]) for s in summary["stages"]}


def verdicts(summary: dict[str, Any]) -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    """Everything a reader acts on: stages, statuses, summaries and findings."""
    return [(s["stage"], s["status"], s["summary"], s["findings"]) for s in summary["stages"]]


def rendered(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((out / "rendered").rglob("*.yaml"))
    }


@requires_tools(*RENDER)
def test_a_rerun_with_nothing_changed_replays_every_step_with_the_same_reports(
    tmp_path: Path,
) -> None:
    source = fixture_repo("ok", tmp_path)
    out = tmp_path / "out"
    code, cold = validate(source, out)
    first_render = rendered(out)
    assert code == 0
    assert all(cached == 0 for _, cached in steps(cold).values())
    code, warm = validate(source, out)
    assert code == 0
    assert verdicts(warm) == verdicts(cold)
    assert rendered(out) == first_render
    counts = steps(warm)
    # Every stage that runs tools replayed all of them (the secrets scan runs in-process here).
    tool_stages = {stage: c for stage, c in counts.items() if stage != "secrets"}
    assert set(tool_stages) == {"helm-lint", "render", "kubeconform", "policy"}
    assert all(total > 0 and cached == total for total, cached in tool_stages.values()), counts
    assert counts["secrets"] == (0, 0)


@requires_tools(*RENDER)
def test_a_changed_values_file_reruns_only_its_chart(tmp_path: Path) -> None:
    source = two_charts("ok", tmp_path)
    out = tmp_path / "out"
    validate(source, out)
    # Every file of a chart's folder is an input of its steps, but another environment's
    # overlay, which helm only exposes through .Files and no template here reads: prd's
    # values file reruns web/prd alone.
    (source / "charts" / "web" / "values-prd.yaml").write_text(
        "replicaCount: 3\n", encoding="utf-8"
    )
    code, warm = validate(source, out)
    assert code == 0
    counts = steps(warm)
    assert counts["helm-lint"] == (4, 3)
    assert counts["render"] == (4, 3)
    # kubeconform and conftest ran again, over the one rendered file that changed.
    assert counts["kubeconform"] == (1, 0)
    assert counts["policy"] == (1, 0)
    assert "replicas: 3" in (out / "rendered" / "web" / "prd.yaml").read_text(encoding="utf-8")
    _, fresh = validate(source, tmp_path / "fresh", "--no-cache")
    assert verdicts(warm) == verdicts(fresh)


@requires_tools(*RENDER)
def test_a_failed_step_is_never_replayed(tmp_path: Path) -> None:
    source = fixture_repo("template-error", tmp_path)
    out = tmp_path / "out"
    code, cold = validate(source, out)
    assert code == 1
    code, warm = validate(source, out)
    assert code == 1
    assert verdicts(warm) == verdicts(cold)
    failed = [s for s in warm["stages"] if s["status"] in {"failed", "error"}]
    assert failed
    # Each failed stage ran again: at least one of its steps was not replayed.
    assert all(s["cached_steps"] < s["steps"] for s in failed), failed


@requires_tools(*RENDER)
def test_no_cache_runs_every_step_and_cache_clear_empties_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    source = fixture_repo("ok", tmp_path)
    out = tmp_path / "out"
    validate(source, out)
    _, again = validate(source, out, "--no-cache")
    assert all(cached == 0 for _, cached in steps(again).values())
    code, shown, _ = run_cli("cache", "info", "--format", "json")
    assert code == 0
    info = json.loads(shown)["result"]
    assert info["directory"] == str(cache_dir / "steps")
    assert info["entries"] > 0
    code, cleared, _ = run_cli("cache", "clear")
    assert code == 0
    assert f"removed {info['entries']} cache entries" in cleared
    assert not list((cache_dir / "steps").rglob("result.json"))


@requires_tools("helm")
def test_the_cache_keeps_to_its_size_bound_dropping_the_least_recently_used(
    tmp_path: Path,
) -> None:
    (tmp_path / "chart").mkdir()
    cache = StepCache(tmp_path / "steps", max_bytes=2_500)
    runner = LocalRunner(source=tmp_path, out=tmp_path / "out", cache=cache)

    def version_step(name: str) -> Step:
        # `helm version` with a template: a real tool run, distinct per name, about 1 kB each.
        template = name + "-{{ .Version }}" + "x" * 900
        return Step(
            name=name,
            tool="helm",
            args=("version", "--template", template),
            cacheable=True,
            inputs=(src("chart"),),
        )

    async def run_all() -> list[StepResult]:
        return [await runner.run(version_step(n)) for n in ("a", "b", "c", "a")]

    results = anyio.run(run_all)
    assert [r.cached for r in results] == [False, False, False, False]
    assert results[0].stdout.startswith("a-v")
    entries, size = cache.usage()
    assert size <= 2_500
    assert entries == 2


FIXTURES = sorted(p.name for p in (Path(__file__).parent / "fixtures" / "repos").iterdir())


@requires_tools(*RENDER)
@pytest.mark.parametrize("name", FIXTURES)
def test_cached_runs_report_exactly_what_an_uncached_run_does(tmp_path: Path, name: str) -> None:
    """Differential: every fixture, with the cache cold and warm, against no cache at all."""
    source = fixture_repo(name, tmp_path)
    code, plain = validate(source, tmp_path / "plain", "--no-cache")
    out = tmp_path / "out"
    cold_code, cold = validate(source, out)
    first = rendered(out)
    warm_code, warm = validate(source, out)
    assert code == cold_code == warm_code
    assert verdicts(plain) == verdicts(cold) == verdicts(warm)
    assert rendered(out) == first == rendered(tmp_path / "plain")
    for name_ in ("policy-results.json", "kubeconform.json"):
        if (out / name_).is_file():
            assert (out / name_).read_text(encoding="utf-8") == (
                tmp_path / "plain" / name_
            ).read_text(encoding="utf-8").replace(str(tmp_path / "plain"), str(out))


def test_parsed_manifests_are_remembered_only_when_json_holds_them_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt  # noqa: PLC0415

    from pipeline import manifests  # noqa: PLC0415

    memo = StepCache(tmp_path / "steps")
    plain = (
        "---\n# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: a\n  namespace: n\ndata:\n  ratio: '1.5'\n  n: 1\nbinaryData: {}\n"
        "---\n# Source: c/templates/x.yaml\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n"
        "stringData:\n  enabled: 'true'\nimmutable: true\n"
    )
    dated = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\ndata:\n  at: 2024-01-01\n"
    first = manifests.parse_resources_remembered(plain, memo)
    assert first == manifests.parse_resources(plain)
    assert manifests.parse_resources_remembered(dated, memo)[0].document["data"]["at"] == dt.date(
        2024, 1, 1
    )

    def not_again(text: str) -> list[manifests.Resource]:
        raise AssertionError("parsed again")

    monkeypatch.setattr(manifests, "parse_resources", not_again)
    again = manifests.parse_resources_remembered(plain, memo)
    assert again == first
    assert [type(v) for v in again[0].document["data"].values()] == [str, int]
    # A date is not JSON: never remembered as a string, parsed again (and found again); so
    # is YAML 1.1's `on:` key, which is the boolean true.
    with pytest.raises(AssertionError, match="parsed again"):
        manifests.parse_resources_remembered(dated, memo)
    monkeypatch.undo()
    switched = "---\nkind: ConfigMap\nmetadata:\n  name: s\ndata:\n  on: x\n"
    assert manifests.parse_resources_remembered(switched, memo)[0].document["data"] == {True: "x"}
    monkeypatch.setattr(manifests, "parse_resources", not_again)
    with pytest.raises(AssertionError, match="parsed again"):
        manifests.parse_resources_remembered(switched, memo)


def checked_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """The rendered files on each kubeconform and conftest command line the runner starts
    (the real tools run; this only reads their argv)."""
    from pipeline.runners import local  # noqa: PLC0415

    seen: dict[str, list[list[str]]] = {"kubeconform": [], "conftest": []}
    spawn = local._spawn

    async def recorded(argv: list[str], *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        tool = Path(argv[0]).name
        if tool in seen:
            files = [a for a in argv if "/rendered/" in a]
            seen[tool].append(sorted("/".join(Path(f).parts[-2:]) for f in files))
        return await spawn(argv, *args, **kwargs)

    monkeypatch.setattr(local, "_spawn", recorded)
    return seen


def two_charts(name: str, tmp_path: Path) -> Path:
    """The fixture `name` (chart web) and a passing chart `api`, copied from `ok`."""
    source = fixture_repo(name, tmp_path)
    passing = fixture_repo("ok", tmp_path / "spare") / "charts" / "web"
    shutil.copytree(passing, source / "charts" / "api")
    chart_yaml = source / "charts" / "api" / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text(encoding="utf-8").replace("name: web", "name: api"), encoding="utf-8"
    )
    return source


@requires_tools(*RENDER)
def test_kubeconform_and_conftest_check_only_the_rendered_files_whose_verdicts_are_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = two_charts("ok", tmp_path)
    out = tmp_path / "out"
    seen = checked_files(monkeypatch)
    validate(source, out)
    everything = ["api/dev.yaml", "api/prd.yaml", "web/dev.yaml", "web/prd.yaml"]
    assert seen == {"kubeconform": [everything], "conftest": [everything]}

    seen["kubeconform"].clear()
    seen["conftest"].clear()
    (source / "charts" / "api" / "values-prd.yaml").write_text("replicaCount: 5\n", "utf-8")
    code, warm = validate(source, out)
    assert seen == {"kubeconform": [["api/prd.yaml"]], "conftest": [["api/prd.yaml"]]}
    assert code == 0
    fresh_out = tmp_path / "fresh"
    _, fresh = validate(source, fresh_out, "--no-cache")
    assert verdicts(warm) == verdicts(fresh)
    assert (out / "kubeconform.json").read_text(encoding="utf-8") == (
        fresh_out / "kubeconform.json"
    ).read_text(encoding="utf-8").replace(str(fresh_out), str(out))

    # A chart gone: every verdict left is known, and neither tool starts.
    seen["kubeconform"].clear()
    seen["conftest"].clear()
    shutil.rmtree(source / "charts" / "web")
    code, fewer = validate(source, out)
    assert code == 0
    assert seen == {"kubeconform": [], "conftest": []}
    _, fresh = validate(source, tmp_path / "fresh-fewer", "--no-cache")
    assert verdicts(fewer) == verdicts(fresh)


@requires_tools(*RENDER)
def test_verdicts_are_remembered_only_from_a_run_that_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conftest fails on web (a policy violation): none of that run's verdicts is kept, so
    after api changes conftest checks every file again; kubeconform passed, and checks one."""
    source = two_charts("policy-violation", tmp_path)
    out = tmp_path / "out"
    seen = checked_files(monkeypatch)
    code, _ = validate(source, out)
    assert code == 1
    seen["kubeconform"].clear()
    seen["conftest"].clear()
    (source / "charts" / "api" / "values-prd.yaml").write_text("replicaCount: 5\n", "utf-8")
    code, warm = validate(source, out)
    assert code == 1
    assert seen["kubeconform"] == [["api/prd.yaml"]]
    assert seen["conftest"] == [["api/dev.yaml", "api/prd.yaml", "web/dev.yaml", "web/prd.yaml"]]
    _, fresh = validate(source, tmp_path / "fresh", "--no-cache")
    assert verdicts(warm) == verdicts(fresh)
    assert any(f["status"] == "failed" for s in warm["stages"] for f in s["findings"])


@requires_tools(*RENDER)
def test_a_changed_policy_data_file_is_never_answered_from_the_cache(tmp_path: Path) -> None:
    """conftest reads `policy.data` files: they are inputs of its steps like the policies."""
    source = fixture_repo("ok", tmp_path)
    (source / "policy").mkdir()
    (source / "policy" / "registry.rego").write_text(
        "package main\n\nimport rego.v1\n\n"
        "deny contains msg if {\n"
        '  input.kind == "Deployment"\n'
        "  some c in input.spec.template.spec.containers\n"
        "  not startswith(c.image, data.registry.prefix)\n"
        "  msg := sprintf(\"Deployment/%s: container '%s' image not from %s\","
        " [input.metadata.name, c.name, data.registry.prefix])\n"
        "}\n",
        encoding="utf-8",
    )
    registry = source / "policy-data" / "registry.yaml"
    registry.parent.mkdir()
    registry.write_text("registry:\n  prefix: ghcr.io/acme/\n", encoding="utf-8")
    (source / "pipeline.yaml").write_text(
        "policy:\n  data: [policy-data/registry.yaml]\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    code, _ = validate(source, out)
    assert code == 0

    registry.write_text("registry:\n  prefix: registry.example.com/\n", encoding="utf-8")
    code, again = validate(source, out)
    assert code == 1
    problems = [f["message"] for s in again["stages"] for f in s["findings"]]
    assert any("image not from registry.example.com/" in m for m in problems), problems


@requires_tools(*RENDER)
def test_a_chart_that_reads_files_reruns_every_environment_when_an_overlay_changes(
    tmp_path: Path,
) -> None:
    """A template that reads prd's overlay through .Files renders it into dev too: dev's
    steps must not be answered from the cache when that file changes."""
    source = fixture_repo("ok", tmp_path)
    chart = source / "charts" / "web"
    (chart / "templates" / "overlay.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: overlay\n"
        "  labels:\n    app.kubernetes.io/name: web\n"
        '    app.kubernetes.io/instance: "{{ .Release.Name }}"\n'
        '    app.kubernetes.io/version: "1.0.0"\n'
        "    app.kubernetes.io/managed-by: Helm\n"
        'data:\n  prd: {{ .Files.Get "values-prd.yaml" | quote }}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code, cold = validate(source, out)
    assert code == 0, verdicts(cold)
    (chart / "values-prd.yaml").write_text("replicaCount: 7\n", encoding="utf-8")
    code, warm = validate(source, out)
    assert code == 0
    assert steps(warm)["render"] == (2, 0)
    assert "replicaCount: 7" in (out / "rendered" / "web" / "dev.yaml").read_text("utf-8")


def canonical(document: Any) -> Any:
    """A tool's JSON with its lists of entries in one order: these tools print them in
    whatever order their concurrent checks finish."""
    if isinstance(document, list):
        return sorted(json.dumps(entry, sort_keys=True) for entry in document)
    return {**document, "resources": canonical(document["resources"])}


@requires_tools("kubeconform", "conftest")
def test_joined_output_is_what_one_run_over_the_same_files_prints(tmp_path: Path) -> None:
    """split/join of each by-file format, against the real tools: the entries of two runs
    over one file each, joined, are those of one run over both (order aside), with the
    same summary; output of another shape is not split."""
    import subprocess  # noqa: PLC0415

    from pipeline.stages.by_file import FORMATS  # noqa: PLC0415
    from pipeline.tools import require  # noqa: PLC0415

    files = []
    for name, replicas in (("a", 1), ("b", "two")):  # b is invalid for kubeconform
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: "
            + name
            + f"\nspec:\n  replicas: {replicas}\n",
            encoding="utf-8",
        )
        files.append(str(path))
    (tmp_path / "replicationcontroller.json").write_text(
        json.dumps({"properties": {"spec": {"properties": {"replicas": {"type": "integer"}}}}}),
        encoding="utf-8",
    )
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "p.rego").write_text(
        'package main\n\nimport rego.v1\n\nwarn contains "one" if input.kind == "x"\n', "utf-8"
    )
    argv = {
        "kubeconform": [
            str(require("kubeconform")),
            "-summary",
            "-verbose",
            "-output",
            "json",
            "-schema-location",
            str(tmp_path / "{{ .ResourceKind }}.json"),
        ],
        "conftest": [
            str(require("conftest")),
            "test",
            "--policy",
            str(policy),
            "--rego-version",
            "v1",
            "--no-color",
            "--all-namespaces",
            "--output",
            "json",
        ],
    }
    outputs: dict[str, str] = {}
    for tool, command in argv.items():
        output = FORMATS[tool]

        def run(paths: list[str], command: list[str] = command) -> str:
            return subprocess.run(
                [*command, *paths], capture_output=True, text=True, check=False, timeout=120
            ).stdout

        printed = run(files)
        whole = output.split(printed, files)
        parts = [output.split(run([file]), [file]) for file in files]
        assert whole is not None, tool
        assert all(part is not None for part in parts), tool
        assert whole == {file: part[file] for part, file in zip(parts, files, strict=True) if part}
        joined = json.loads(output.join([e for file in files for e in whole[file]]))
        assert canonical(joined) == canonical(json.loads(printed)), tool
        assert output.split("not json", files) is None
        assert output.split(printed, files[:1]) is None  # an entry of a file not asked for
        outputs[tool] = printed
    # Both verdicts occurred, so the joined summary counted each kind.
    assert "statusValid" in outputs["kubeconform"]
    assert "statusInvalid" in outputs["kubeconform"]
