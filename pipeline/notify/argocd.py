"""The Argo CD side: argocd-notifications templates and triggers for the same channels.

`configmap(settings)` is the `argocd-notifications-cm` ConfigMap: one service per channel
pipeline.yaml's `notify:` declares (`service.telegram`, `service.slack`,
`service.webhook.gitops-pipeline`, `service.alertmanager`), three templates and the three
catalog triggers that send them: a sync that failed, health that degraded, a deployment
that is synced and healthy. Credentials stay in `argocd-notifications-secret`, referenced as
`$key` (Argo CD's syntax); `SECRET_KEYS` lists the keys the ConfigMap needs. The `argocd`
generator (pipeline/delivery) writes it as `deploy/argocd-notifications-cm.yaml`;
Applications subscribe with `notifications.argoproj.io/subscribe.<trigger>.<service>`.

Trigger conditions are the Argo CD notifications catalog's (argoproj/argo-cd
notifications_catalog/triggers, as gathered in shared/reference/gitops.md §5.4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from pipeline.notify.settings import NotifySettings

FILE = "argocd-notifications-cm.yaml"
CONFIGMAP = "argocd-notifications-cm"
SECRET = "argocd-notifications-secret"  # noqa: S105 - the Secret object's name
WEBHOOK_SERVICE = "gitops-pipeline"

# trigger -> (template, description, condition, oncePer)
TRIGGERS: Mapping[str, tuple[str, str, str, str | None]] = {
    "on-sync-failed": (
        "app-sync-failed",
        "Application syncing has failed",
        (
            "app.status.operationState != nil and "
            "app.status.operationState.phase in ['Error', 'Failed']"
        ),
        "app.status.operationState?.syncResult?.revision",
    ),
    "on-health-degraded": (
        "app-health-degraded",
        "Application has degraded",
        "app.status.health.status == 'Degraded'",
        None,
    ),
    "on-deployed": (
        "app-deployed",
        "Application is synced and healthy. Triggered once per commit.",
        (
            "app.status.operationState != nil and "
            "app.status.operationState.phase in ['Succeeded'] and "
            "app.status.health.status == 'Healthy' and "
            "!time.Parse(app.status.health.lastTransitionTime)"
            ".Before(time.Parse(app.status.operationState.finishedAt))"
        ),
        "app.status.operationState?.syncResult?.revision",
    ),
}
# template -> (title, event, alert severity)
TEMPLATES: Mapping[str, tuple[str, str, str]] = {
    "app-sync-failed": ("sync failed", "failure", "critical"),
    "app-health-degraded": ("health degraded", "failure", "warning"),
    "app-deployed": ("deployed", "release", "info"),
}
SECRET_KEYS: Mapping[str, tuple[str, ...]] = {
    "telegram": ("telegram-token",),
    "slack": ("slack-token",),
    "webhook": ("webhook-url", "webhook-token"),
    "alertmanager": (),
}
APP = "{{.app.metadata.name}}"
REVISION = "{{.app.status.sync.revision}}"
APP_URL = "{{.context.argocdUrl}}/applications/{{.app.metadata.name}}"


def _message(title: str) -> str:
    return (
        f"Application {APP} {title}.\n"
        f"Revision: {REVISION}\n"
        "Sync: {{.app.status.sync.status}}, health: {{.app.status.health.status}}\n"
        "{{if .app.status.operationState}}{{.app.status.operationState.message}}{{end}}\n"
        f"{APP_URL}"
    )


def _webhook_body(title: str, event: str) -> str:
    # The shape of the CI side's webhook (pipeline/notify/webhook.py), so one receiver reads both.
    document = {
        "schema_version": 1,
        "event": event,
        "title": f"argocd: {APP} {title}",
        "lines": [f"revision {REVISION}", "health {{.app.status.health.status}}"],
        "labels": {"application": APP},
        "links": [{"name": "argocd", "url": APP_URL}],
        "details": {"source": "argocd"},
    }
    return json.dumps(document, indent=2)


def _template(name: str, kinds: set[str]) -> str:
    title, event, severity = TEMPLATES[name]
    body: dict[str, object] = {"message": _message(title)}
    if "slack" in kinds:
        body["slack"] = {
            "attachments": json.dumps(
                [{"title": f"{APP} {title}", "title_link": APP_URL, "text": REVISION}]
            ),
            "groupingKey": APP,
        }
    if "webhook" in kinds:
        body["webhook"] = {WEBHOOK_SERVICE: {"method": "POST", "body": _webhook_body(title, event)}}
    if "alertmanager" in kinds:
        body["alertmanager"] = {
            "labels": {"application": APP, "severity": severity, "source": "argocd"},
            "annotations": {"summary": f"{APP} {title}", "revision": REVISION},
            "generatorURL": APP_URL,
        }
    return yaml.safe_dump(body, sort_keys=False, width=1000)


def _trigger(name: str) -> str:
    template, description, condition, once_per = TRIGGERS[name]
    rule: dict[str, object] = {"when": condition, "description": description, "send": [template]}
    if once_per:
        rule["oncePer"] = once_per
    return yaml.safe_dump([rule], sort_keys=False, width=1000)


def _alertmanager_service(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    service = {
        "targets": [f"{parts.hostname}:{port}"],
        "scheme": parts.scheme,
        "apiPath": (parts.path.rstrip("/") or "") + "/api/v2/alerts",
    }
    return yaml.safe_dump(service, sort_keys=False)


def _services(settings: NotifySettings) -> dict[str, str]:
    services: dict[str, str] = {}
    kinds = settings.channels
    if "telegram" in kinds:
        services["service.telegram"] = "token: $telegram-token\n"
    if "slack" in kinds:
        # Argo CD's Slack service posts with a bot token (chat:write), not the CI's webhook.
        services["service.slack"] = "token: $slack-token\n"
    if "webhook" in kinds:
        services[f"service.webhook.{WEBHOOK_SERVICE}"] = yaml.safe_dump(
            {
                "url": "$webhook-url",
                "headers": [
                    {"name": "Content-Type", "value": "application/json"},
                    # Argo CD cannot sign a body: the receiver checks this token instead.
                    {"name": "Authorization", "value": "Bearer $webhook-token"},
                ],
            },
            sort_keys=False,
        )
    alertmanager = kinds.get("alertmanager")
    if alertmanager is not None and not alertmanager.url.startswith(("env:", "file:")):
        services["service.alertmanager"] = _alertmanager_service(alertmanager.url)
    return services


def secret_keys(settings: NotifySettings) -> tuple[str, ...]:
    """The keys `argocd-notifications-secret` must hold for this ConfigMap."""
    return tuple(key for kind in settings.channels for key in SECRET_KEYS[kind])


def configmap(
    settings: NotifySettings, *, namespace: str = "argocd", argocd_url: str = ""
) -> dict[str, object]:
    kinds = set(settings.channels)
    data: dict[str, str] = {}
    if argocd_url:
        data["context"] = yaml.safe_dump({"argocdUrl": argocd_url})
    data.update(_services(settings))
    data.update({f"template.{name}": _template(name, kinds) for name in TEMPLATES})
    data.update({f"trigger.{name}": _trigger(name) for name in TRIGGERS})
    data["defaultTriggers"] = yaml.safe_dump(list(TRIGGERS))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": CONFIGMAP,
                "app.kubernetes.io/part-of": "argocd",
                "app.kubernetes.io/managed-by": "gitops-pipeline",
            },
        },
        "data": data,
    }


def configmap_yaml(
    settings: NotifySettings, *, namespace: str = "argocd", argocd_url: str = ""
) -> str:
    keys = secret_keys(settings)
    note = (
        f"# Secrets: {SECRET} in namespace {namespace} holds {', '.join(keys)}\n"
        "# (referenced below as $key; create it with kubeseal or your secret manager).\n"
        if keys
        else ""
    )
    body = yaml.safe_dump(
        configmap(settings, namespace=namespace, argocd_url=argocd_url),
        sort_keys=False,
        width=1000,
    )
    return f"# Generated by gitops-pipeline (pipeline/notify/argocd.py).\n{note}---\n{body}"


def write(
    directory: Path, settings: NotifySettings, *, namespace: str = "argocd", argocd_url: str = ""
) -> Path:
    """`directory`/argocd-notifications-cm.yaml (the delivery generator passes deploy/)."""
    path = directory / FILE
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(
        configmap_yaml(settings, namespace=namespace, argocd_url=argocd_url), encoding="utf-8"
    )
    return path
