"""`gitops-pipeline argocd` and the `delivery` stage of `validate`, with real helm and kubeconform.

Each test generates deploy/ in a copy of a fixture repository, then plants one
inconsistency (by hand in deploy/, or through pipeline.yaml so that nothing drifts) and
reads the report CI would read: the stage, the file and the field each finding names.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURE_REPOS, RENDER_TOOLS, REPO_ROOT, CliRun, tool_marks
from test_validate import run_cli, validate_repo

from pipeline.config import load_config
from pipeline.delivery import argocd, gotemplate, imageupdater
from pipeline.errors import ConfigError
from pipeline.publish import image_tags

pytestmark = tool_marks(*RENDER_TOOLS)
BUNDLED = ("--schema-location", "bundled")
APPSET = "deploy/applicationset.yaml"
UPDATER = "deploy/imageupdater.yaml"


def delivery_repo(tmp_path: Path) -> Path:
    source = tmp_path / "repo"
    shutil.copytree(FIXTURE_REPOS / "delivery", source, ignore=shutil.ignore_patterns("deploy"))
    return source


def generate(source: Path) -> str:
    code, stdout, stderr = run_cli("argocd", "--source", str(source))
    assert code == 0, stderr
    return stdout


def validated(source: Path, tmp_path: Path) -> CliRun:
    return validate_repo(source, tmp_path / "out", *BUNDLED)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def messages(run: CliRun) -> list[tuple[str, str]]:
    return [(p["file"], p["message"]) for p in run.problems("delivery")]


def test_generated_deploy_passes_every_check_and_regenerates_byte_identical(
    tmp_path: Path,
) -> None:
    source = delivery_repo(tmp_path)
    assert "written: deploy/applicationset.yaml" in generate(source)
    first = {p.name: p.read_bytes() for p in (source / "deploy").iterdir()}
    assert set(first) == set(argocd.FILES)
    assert "unchanged: deploy/applicationset.yaml" in generate(source)
    assert {p.name: p.read_bytes() for p in (source / "deploy").iterdir()} == first
    # The committed fixture is this generator's output too.
    committed = {p.name: p.read_bytes() for p in (FIXTURE_REPOS / "delivery/deploy").iterdir()}
    assert committed == first

    run = validated(source, tmp_path)
    assert run.exit_code == 0, run.stdout + run.stderr
    stage = run.stage("delivery")
    assert stage["status"] == "passed"
    # two probe renders (one per Application) and kubeconform of deploy/
    assert stage["steps"] == 3


def test_an_application_left_out_by_env_is_not_checked_and_not_a_finding(
    tmp_path: Path,
) -> None:
    source = delivery_repo(tmp_path)
    generate(source)
    run = validate_repo(source, tmp_path / "out", *BUNDLED, "--env", "dev")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.stage("delivery")["status"] == "passed"
    # Only dev's Application was probed (one render), plus kubeconform of deploy/.
    assert run.stage("delivery")["steps"] == 2


def test_value_files_are_exactly_what_validate_layers(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    generate(source)
    appset = (source / APPSET).read_text(encoding="utf-8")
    assert "        - values.yaml\n        - ../../infra/clusters/dev/web-values.yaml\n" in appset
    updater = (source / UPDATER).read_text(encoding="utf-8")
    assert "writeBackTarget: helmvalues:/infra/clusters/dev/web-values.yaml" in updater


def test_write_back_file_outside_the_apps_value_files_fails(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    generate(source)
    edit(
        source / APPSET,
        "writeBack: infra/clusters/dev/web-values.yaml",
        "writeBack: infra/clusters/prd/web-values.yaml",
    )
    run = validated(source, tmp_path)
    assert run.exit_code == 1
    found = messages(run)
    drift = "spec.generators[0].list.elements[0].writeBack: differs from what pipeline.yaml"
    assert any(f == APPSET and m.startswith(drift) for f, m in found), found
    write_back = (
        "spec.template.metadata.annotations[argocd-image-updater.argoproj.io/"
        "write-back-target]: Image Updater (annotations) for web-dev: writes "
        "infra/clusters/prd/web-values.yaml, which is not one of the Application's value files"
    )
    assert any(f == APPSET and m.startswith(write_back) for f, m in found), found


def test_a_tag_path_the_chart_does_not_put_in_an_image_fails(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    # In the values, but no template puts it into a container image: nothing drifts.
    with (source / "pipeline.yaml").open("a", encoding="utf-8") as config:
        config.write("  charts:\n    web:\n      image_tag_path: replicaCount\n")
    generate(source)
    run = validated(source, tmp_path)
    assert run.exit_code == 1
    found = messages(run)
    field = "spec.applicationRefs[0].images[0].manifestTargets.helm.tag"
    assert any(
        f == UPDATER and m.startswith(f"{field}: no container image changes when replicaCount")
        for f, m in found
    ), found
    assert not any("differs from what pipeline.yaml generates" in m for _, m in found)


def test_a_tag_path_missing_from_the_values_fails(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    with (source / "pipeline.yaml").open("a", encoding="utf-8") as config:
        config.write("  charts:\n    web:\n      image_tag_path: image.version\n")
    generate(source)
    run = validated(source, tmp_path)
    found = messages(run)
    assert any(
        f == UPDATER and "image.version is not in the chart's values" in m for f, m in found
    ), found


@pytest.mark.parametrize(
    ("pattern", "admits"),
    [
        ("regexp:^.*$", "1.2, 1, latest, sha-0123456"),
        ("any", "1.2, 1, latest, sha-0123456"),
        (r"regexp:^(latest|[0-9.]+)$", "1.2, 1, latest,"),
    ],
)
def test_a_tag_filter_admitting_other_release_tags_fails(
    tmp_path: Path, pattern: str, admits: str
) -> None:
    source = delivery_repo(tmp_path)
    generate(source)
    edit(
        source / UPDATER,
        r"allowTags: regexp:^[0-9]+\.[0-9]+\.[0-9]+$",
        f"allowTags: '{pattern}'",
    )
    run = validated(source, tmp_path)
    assert run.exit_code == 1
    field = "spec.applicationRefs[1].images[0].commonUpdateSettings.allowTags"
    admitted = [
        m
        for f, m in messages(run)
        if f == UPDATER and m.startswith(f"{field}: Image Updater (ImageUpdater) for web-prd: ")
    ]
    assert len(admitted) == 1, messages(run)
    assert f"admits {admits}" in admitted[0]


def test_the_filters_we_write_admit_only_x_y_z() -> None:
    tags = image_tags("2.3.4", "abcdef0123456789")
    for prereleases in ("", r"rc\.[0-9]+"):
        admitted, problem = imageupdater.tags_admitted(imageupdater.allow_tags(prereleases), tags)
        assert problem is None
        assert admitted == ["2.3.4"]
    with_rc = imageupdater.allow_tags(r"rc\.[0-9]+")
    assert imageupdater.tags_admitted(with_rc, ["2.3.4-rc.1", "2.3.4-beta.1"])[0] == ["2.3.4-rc.1"]


def test_an_image_the_release_does_not_publish_fails(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    generate(source)
    edit(
        source / UPDATER, "imageName: ghcr.io/acme/web:>=0.0.0\n", "imageName: ghcr.io/acme/other\n"
    )
    run = validated(source, tmp_path)
    found = messages(run)
    assert any(
        f == UPDATER
        and m.startswith("spec.applicationRefs[1].images[0].imageName: ")
        and "watches ghcr.io/acme/other, but release publishes ghcr.io/acme/web" in m
        for f, m in found
    ), found


def test_generated_objects_are_checked_against_the_crd_schemas(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    generate(source)
    edit(source / UPDATER, "    - alias: app\n", "    - alias: app\n      bogus: true\n")
    run = validated(source, tmp_path)
    assert any(
        f == UPDATER and "schema:" in m and "'bogus' not allowed" in m for f, m in messages(run)
    ), messages(run)


def test_no_deploy_folder_and_no_delivery_block_means_no_stage(tmp_path: Path) -> None:
    source = tmp_path / "ok"
    shutil.copytree(FIXTURE_REPOS / "ok", source)
    run = validated(source, tmp_path)
    assert run.exit_code == 0
    assert "delivery" not in {s["stage"] for s in run.summary()["stages"]}


def test_a_deploy_folder_of_charts_without_a_delivery_block_is_skipped_not_passed(
    tmp_path: Path,
) -> None:
    """Charts kept under deploy/helm/ are not Argo CD objects: nothing is delivery-checked,
    and the report says so instead of a green "0 Application(s)"."""
    source = tmp_path / "ok"
    shutil.copytree(FIXTURE_REPOS / "ok", source)
    shutil.move(source / "charts", source / "deploy" / "helm")
    (source / "pipeline.yaml").write_text("discovery:\n  paths: [deploy/helm]\n", encoding="utf-8")
    run = validated(source, tmp_path)
    assert run.exit_code == 0
    stage = next(s for s in run.summary()["stages"] if s["stage"] == "delivery")
    assert stage["status"] == "skipped"
    assert "no delivery: block" in stage["summary"]
    assert "deploy/" in stage["summary"]
    # A manifest there that cannot be read is still a failure, not a reason to skip.
    (source / "deploy" / "broken.yaml").write_text("kind: [unclosed\n", encoding="utf-8")
    broken = validated(source, tmp_path)
    stage = next(s for s in broken.summary()["stages"] if s["stage"] == "delivery")
    assert broken.exit_code == 1
    assert stage["status"] == "failed"


def canary_repo(tmp_path: Path) -> Path:
    """This repository's chart with a canary environment, delivered from deploy/."""
    source = tmp_path / "canary"
    shutil.copytree(REPO_ROOT / "charts" / "chat", source / "charts" / "chat")
    (source / "charts/chat/values-stg.yaml").write_text(
        "rollout:\n  enabled: true\n  strategy: canary\n", encoding="utf-8"
    )
    (source / "pipeline.yaml").write_text(
        "image:\n  repository: ghcr.io/acme/chat\n"
        "delivery:\n  repo_url: https://github.com/acme/gitops.git\n",
        encoding="utf-8",
    )
    generate(source)
    return source


def test_rollout_services_and_analysis_templates_are_rendered(tmp_path: Path) -> None:
    source = canary_repo(tmp_path)
    run = validated(source, tmp_path)
    assert run.exit_code == 0, run.stdout
    assert run.stage("delivery")["status"] == "passed"


def test_a_missing_canary_service_fails_naming_the_rollout_field(tmp_path: Path) -> None:
    source = canary_repo(tmp_path)
    (source / "charts/chat/templates/service-canary.yaml").unlink()
    (source / "charts/chat/templates/analysistemplate.yaml").unlink()
    run = validated(source, tmp_path)
    assert run.exit_code == 1
    problems = {
        (p["file"], p["environment"], p["message"].split(":")[0]) for p in run.problems("delivery")
    }
    workload = "charts/chat/templates/workload.yaml"
    assert (workload, "stg", "spec.strategy.canary.canaryService") in problems
    assert (workload, "stg", "spec.strategy.canary.analysis.templates[0].templateName") in problems
    assert (
        workload,
        "prd",
        "spec.strategy.blueGreen.prePromotionAnalysis.templates[0].templateName",
    ) in problems


def test_this_repositorys_deploy_folder_is_what_pipeline_yaml_generates() -> None:
    expected = argocd.rendered_files(load_config(REPO_ROOT))
    for name, text in expected.items():
        assert (REPO_ROOT / "deploy" / name).read_text(encoding="utf-8") == text, name


def test_delivery_config_is_strict(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    config = source / "pipeline.yaml"
    edit(config, "  project: acme\n", "  projet: acme\n")
    with pytest.raises(ConfigError) as caught:
        load_config(source)
    assert caught.value.field == "delivery.projet"
    assert "did you mean 'project'" in caught.value.message
    assert caught.value.line is not None
    edit(config, "  projet: acme\n", "  project: acme\n")
    edit(config, "  repo_url: https://github.com/acme/gitops.git\n", "")
    with pytest.raises(ConfigError, match="is required"):
        load_config(source)


def test_an_unknown_delivery_environment_is_a_usage_error(tmp_path: Path) -> None:
    source = delivery_repo(tmp_path)
    edit(source / "pipeline.yaml", "    prd:\n      server:", "    prod:\n      server:")
    code, _, stderr = run_cli("argocd", "--source", str(source))
    assert code == 2
    assert "delivery.environments.prod" in stderr
    assert not (source / "deploy").exists()


def test_go_template_subset() -> None:
    patch = "a:\n{{- range .files }}\n  - {{ . }}\n{{- end }}\nb: {{.name}}\n"
    assert (
        gotemplate.render(patch, {"files": ["x", "y"], "name": "n"}) == "a:\n  - x\n  - y\nb: n\n"
    )
    with pytest.raises(gotemplate.TemplateError, match="no key 'name'"):
        gotemplate.render("{{.name}}", {})
    with pytest.raises(gotemplate.TemplateError, match="not understood"):
        gotemplate.render("{{ .name | upper }}", {"name": "x"})
    assert re.fullmatch(r"[^{}]*", gotemplate.render("{{ range .l }}{{ . }}{{ end }}", {"l": []}))
