"""argocd-notifications-cm: a valid ConfigMap whose triggers and templates name each other."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import requires_tools

from pipeline.notify import argocd
from pipeline.notify.settings import ChannelSettings, NotifySettings
from pipeline.schemas import write_schema_bundle
from pipeline.tools import require

ALL = NotifySettings(
    channels={
        "alertmanager": ChannelSettings("alertmanager", url="http://alertmanager.monitoring:9093"),
        "telegram": ChannelSettings("telegram", token="env:T", chat_id="-1"),  # noqa: S106
        "slack": ChannelSettings("slack", url="env:S"),
        "webhook": ChannelSettings("webhook", url="env:W", secret="env:K"),  # noqa: S106
    }
)


def data_of(settings: NotifySettings) -> dict[str, str]:
    documents = list(yaml.safe_load_all(argocd.configmap_yaml(settings)))
    assert len(documents) == 1
    data: dict[str, str] = documents[0]["data"]
    return data


def test_every_trigger_sends_a_template_that_exists_and_every_template_is_sent() -> None:
    data = data_of(ALL)
    templates = {key.removeprefix("template.") for key in data if key.startswith("template.")}
    sent = set()
    for key in (k for k in data if k.startswith("trigger.")):
        for rule in yaml.safe_load(data[key]):
            assert set(rule["send"]) <= templates, (key, rule["send"])
            sent.update(rule["send"])
    assert sent == templates
    assert set(yaml.safe_load(data["defaultTriggers"])) == {
        key.removeprefix("trigger.") for key in data if key.startswith("trigger.")
    }


def test_the_triggers_are_the_catalogs() -> None:
    data = data_of(ALL)
    (failed,) = yaml.safe_load(data["trigger.on-sync-failed"])
    assert failed["when"] == (
        "app.status.operationState != nil and "
        "app.status.operationState.phase in ['Error', 'Failed']"
    )
    assert failed["oncePer"] == "app.status.operationState?.syncResult?.revision"
    (degraded,) = yaml.safe_load(data["trigger.on-health-degraded"])
    assert degraded["when"] == "app.status.health.status == 'Degraded'"


def test_services_exist_only_for_declared_channels_and_secrets_are_references() -> None:
    data = data_of(ALL)
    assert data["service.telegram"] == "token: $telegram-token\n"
    assert data["service.slack"] == "token: $slack-token\n"
    webhook = yaml.safe_load(data["service.webhook.gitops-pipeline"])
    assert webhook["url"] == "$webhook-url"
    assert yaml.safe_load(data["service.alertmanager"]) == {
        "targets": ["alertmanager.monitoring:9093"],
        "scheme": "http",
        "apiPath": "/api/v2/alerts",
    }
    template = yaml.safe_load(data["template.app-sync-failed"])
    body = json.loads(
        template["webhook"]["gitops-pipeline"]["body"].replace("{{", "").replace("}}", "")
    )
    assert body["event"] == "failure"
    assert argocd.secret_keys(ALL) == (
        "telegram-token",
        "slack-token",
        "webhook-url",
        "webhook-token",
    )
    only_slack = data_of(NotifySettings(channels={"slack": ChannelSettings("slack", url="env:S")}))
    assert [k for k in only_slack if k.startswith("service.")] == ["service.slack"]
    assert "webhook" not in yaml.safe_load(only_slack["template.app-deployed"])
    assert "argocd-notifications-secret in namespace argocd holds slack-token" in (
        argocd.configmap_yaml(
            NotifySettings(channels={"slack": ChannelSettings("slack", url="env:S")})
        )
    )


@requires_tools("kubeconform")
@pytest.mark.parametrize("settings", [ALL, NotifySettings()], ids=["every-channel", "none"])
def test_kubeconform_accepts_the_configmap(tmp_path: Path, settings: NotifySettings) -> None:
    written = argocd.write(tmp_path / "deploy", settings, argocd_url="https://argocd.example.com")
    assert written == tmp_path / "deploy" / "argocd-notifications-cm.yaml"
    bundle = write_schema_bundle(tmp_path / "schemas", "1.35.0", kinds={"configmap"})
    argv = [str(require("kubeconform")), "-strict", "-summary", "-output", "json"]
    argv += ["-kubernetes-version", bundle.kubernetes_version]
    for location in bundle.schema_locations():
        argv += ["-schema-location", location]
    done = subprocess.run(
        [*argv, str(written)], capture_output=True, text=True, timeout=120, check=False
    )
    report = json.loads(done.stdout)
    assert report["summary"] == {"valid": 1, "invalid": 0, "errors": 0, "skipped": 0}, done.stdout
    assert done.returncode == 0


@requires_tools("kubeconform")
def test_kubeconform_would_refuse_a_broken_configmap(tmp_path: Path) -> None:
    """The check above can fail: a data value that is not a string is refused."""
    broken = argocd.configmap(ALL)
    broken["data"] = {"defaultTriggers": ["on-sync-failed"]}
    path = tmp_path / "cm.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    bundle = write_schema_bundle(tmp_path / "schemas", "1.35.0", kinds={"configmap"})
    argv = [str(require("kubeconform")), "-strict", "-summary", "-output", "json"]
    argv += ["-kubernetes-version", bundle.kubernetes_version]
    for location in bundle.schema_locations():
        argv += ["-schema-location", location]
    done = subprocess.run(
        [*argv, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert json.loads(done.stdout)["summary"]["invalid"] == 1
