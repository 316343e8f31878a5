"""`dagger call notify` on the local engine, against servers only the host reaches.

The servers (tests/notify_servers.py) listen on the host's 127.0.0.1; the function reaches
them through a host service tunnel (`--notify-server tcp://localhost:PORT`), as the host
`notify-server` in pipeline.yaml's URLs. Tokens go in as Dagger secrets (`env:NAME`).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from engine import Engine
from notify_servers import TELEGRAM_TOKEN, WEBHOOK_SECRET, Fault, fake_apis

SECRETS_ENV = {
    "GITOPS_TEST_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
    "GITOPS_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def notify_repo(target: Path, port: int) -> Path:
    target.mkdir()
    server = f"http://notify-server:{port}"
    config = {
        "notify": {
            "attempts": 3,
            "backoff": 0.2,
            "request_timeout": 5,
            "deadline": 60,
            "alertmanager": {"url": server, "labels": {"team": "ops"}},
            "telegram": {
                "token": "env:TELEGRAM_BOT_TOKEN",
                "chat_id": "-100200",
                "api_url": server,
            },
            "webhook": {"url": f"{server}/hook", "secret": "env:WEBHOOK_SECRET"},
        }
    }
    (target / "pipeline.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return target


def failed_summary(path: Path) -> Path:
    finding = {
        "check": "kubeconform",
        "status": "failed",
        "message": "spec.replicas: expected integer & got <string>",
        "file": "charts/chat/templates/deployment.yaml",
        "line": 9,
        "chart": "chat",
        "environment": "dev",
    }
    stage = {
        "stage": "kubeconform",
        "status": "failed",
        "summary": "1 invalid",
        "findings": [finding],
    }
    path.write_text(json.dumps({"status": "failed", "stages": [stage]}), encoding="utf-8")
    return path


def test_notify_reaches_every_channel_through_the_tunnel(
    engine: Engine,
    module: Path,
    tmp_path: Path,
) -> None:
    with fake_apis() as apis:
        apis.fail("telegram", Fault(status=429, retry_after=1))  # honoured inside the engine too
        repo = notify_repo(tmp_path / "repo", apis.port)
        out = tmp_path / "out"
        done = engine.call(
            module,
            "notify",
            "--summary",
            str(failed_summary(tmp_path / "summary.json")),
            "--telegram-token",
            "env:GITOPS_TEST_TELEGRAM_TOKEN",
            "--webhook-secret",
            "env:GITOPS_TEST_WEBHOOK_SECRET",
            "--label",
            "repository=acme/chat",
            "--notify-server",
            f"tcp://localhost:{apis.port}",
            "export",
            "--path",
            str(out),
            source=repo,
            env=SECRETS_ENV,
        ).check()
        report = json.loads((out / "notify.json").read_text(encoding="utf-8"))
        assert report["status"] == "sent", report
        statuses = {c["channel"]: (c["status"], c["attempts"]) for c in report["channels"]}
        assert statuses == {
            "alertmanager": ("sent", 1),
            "telegram": ("sent", 2),
            "webhook": ("sent", 1),
        }
        (alert,) = apis.firing()
        assert alert["labels"]["repository"] == "acme/chat"
        text = apis.of("telegram")[-1].json()["text"]
        assert "expected integer &amp; got &lt;string&gt;" in text
        assert "chat/dev charts/chat/templates/deployment.yaml:9" in text
        assert len(apis.of("webhook")) == 1  # the receiver checked the signature
        for secret in SECRETS_ENV.values():
            assert secret not in done.stdout + done.stderr
            assert secret not in json.dumps(report)

        # A channel that fails is reported, and the function still succeeds.
        apis.fail("webhook", *[Fault(status=503)] * 3)
        again = tmp_path / "again"
        engine.call(
            module,
            "notify",
            "--message",
            "hello from the engine",
            "--channel",
            "webhook",
            "--webhook-secret",
            "env:GITOPS_TEST_WEBHOOK_SECRET",
            "--notify-server",
            f"tcp://localhost:{apis.port}",
            "export",
            "--path",
            str(again),
            source=repo,
            env=SECRETS_ENV,
        ).check()
        failed = json.loads((again / "notify.json").read_text(encoding="utf-8"))
        assert failed["status"] == "failed"
        assert failed["channels"][0]["detail"].startswith("POST: HTTP 503")


def test_a_declared_channel_without_its_secret_is_an_error(
    engine: Engine,
    module: Path,
    tmp_path: Path,
) -> None:
    with fake_apis() as apis:
        repo = notify_repo(tmp_path / "repo", apis.port)
        done = engine.call(
            module, "notify", "--message", "hi", "--channel", "telegram", source=repo
        )
        assert done.exit_code != 0
        assert "notify.telegram.token (--telegram-token)" in done.stderr
        assert apis.received == []
