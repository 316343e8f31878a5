"""`argocd` and validate's `delivery` stage called for real with `dagger call` on the engine.

The function's directory must be byte for byte what the CLI writes; the stage must reach
the same verdicts in containers (probe renders with helm, kubeconform with the bundle built
for the deploy folder's kinds) as on the host.
"""

from __future__ import annotations

from pathlib import Path

from engine import Engine
from test_engine import chart_repo, summary

from pipeline.config import load_config
from pipeline.delivery import argocd

APPSET = "deploy/applicationset.yaml"


def test_argocd_returns_the_generated_deploy_folder(
    engine: Engine,
    module: Path,
    tmp_path: Path,
) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "delivery")
    out = tmp_path / "deploy"
    engine.call(module, "argocd", "export", "--path", str(out), source=repo).check()
    expected = argocd.rendered_files(load_config(repo))
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, text in expected.items():
        assert (out / name).read_text(encoding="utf-8") == text, name
        assert (repo / "deploy" / name).read_text(encoding="utf-8") == text, name


def test_validate_runs_the_delivery_checks_in_containers(
    engine: Engine,
    module: Path,
    tmp_path: Path,
) -> None:
    repo = chart_repo(engine, tmp_path / "repo", "delivery")
    out = tmp_path / "artifacts"
    engine.call(module, "validate", "export", "--path", str(out), source=repo).check()
    stage = next(s for s in summary(out)["stages"] if s["stage"] == "delivery")
    assert stage["status"] == "passed", stage
    assert stage["steps"] >= 3  # two probe renders and kubeconform (plus the schema bundle)

    appset = repo / APPSET
    text = appset.read_text(encoding="utf-8")
    appset.write_text(
        text.replace(
            "writeBack: infra/clusters/dev/web-values.yaml",
            "writeBack: infra/clusters/prd/web-values.yaml",
        ),
        encoding="utf-8",
    )
    failed_out = tmp_path / "failed"
    engine.call(module, "validate", "export", "--path", str(failed_out), source=repo).check()
    report = summary(failed_out)
    assert report["status"] == "failed"
    stage = next(s for s in report["stages"] if s["stage"] == "delivery")
    messages = [(f["file"], f["message"]) for f in stage["findings"] if f["status"] == "failed"]
    assert any(
        file == APPSET
        and "write-back-target]: Image Updater (annotations) for web-dev: writes "
        "infra/clusters/prd/web-values.yaml, which is not one of"
        in message
        for file, message in messages
    ), messages
