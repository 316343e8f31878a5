"""`notify` against local servers that answer as Telegram, Slack, Alertmanager and a webhook do.

Every channel is sent over real HTTP to tests/notify_servers.py; faults (a 429 with its
retry_after, 5xx, an answer later than the client waits, a closed port) are the servers'.
No test's output, report or exception holds a token.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT
from notify_servers import (
    SLACK_PATH,
    TELEGRAM_LIMIT,
    TELEGRAM_TOKEN,
    WEBHOOK_SECRET,
    FakeApis,
    Fault,
    fake_apis,
    telegram_text_problem,
)

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.notify import message, slack, targets, telegram
from pipeline.notify.settings import ChannelSettings, Event, NotifySettings
from pipeline.notify.verb import notice_from, notify
from pipeline.publish import PushedRef
from pipeline.release import ReleaseOutcome, outcome_json

SECRETS = (TELEGRAM_TOKEN, SLACK_PATH.rsplit("/", 1)[-1], WEBHOOK_SECRET)
FAST = {"attempts": 4, "backoff": 0.05, "request_timeout": 1.0, "deadline": 20.0}
ENV = {
    "TEST_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
    "TEST_SLACK_URL": "",  # set per server: the URL holds the secret
    "TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def failed_summary(
    findings: int = 2, message_text: str = "no <limits> & no probes"
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "status": "failed",
        "stages": [
            {"stage": "helm-lint", "status": "passed", "summary": "ok", "findings": []},
            {
                "stage": "policy",
                "status": "failed",
                "summary": f"{findings} denied",
                "findings": [
                    {
                        "check": "policy",
                        "status": "failed",
                        "message": f"{message_text} #{n}",
                        "file": "charts/chat/templates/deployment.yaml",
                        "line": 3 + n,
                        "rule": "GP004",
                        "chart": "chat",
                        "environment": "prd",
                        "resource": "Deployment/chat",
                    }
                    for n in range(findings)
                ],
            },
        ],
    }


def passed_summary() -> dict[str, Any]:
    return {"schema_version": 1, "status": "passed", "stages": []}


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def settings_for(apis: FakeApis, **timing: float) -> NotifySettings:
    return NotifySettings(
        channels={
            "alertmanager": ChannelSettings("alertmanager", url=apis.base, labels={"team": "ops"}),
            "telegram": ChannelSettings(
                "telegram",
                token="env:TEST_TELEGRAM_TOKEN",  # noqa: S106 - a reference
                chat_id="-100200",
                api_url=apis.base,
            ),
            "slack": ChannelSettings("slack", url="env:TEST_SLACK_URL"),
            "webhook": ChannelSettings(
                "webhook",
                url=f"{apis.base}/hook",
                secret="env:TEST_WEBHOOK_SECRET",  # noqa: S106 - a reference
            ),
        },
        **{**FAST, **timing},  # type: ignore[arg-type]
    )


@pytest.fixture
def apis(monkeypatch: pytest.MonkeyPatch) -> Any:
    with fake_apis() as served:
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("TEST_SLACK_URL", f"{served.base}{SLACK_PATH}")
        yield served


def send(
    apis: FakeApis,
    notice: message.Notice | None,
    only: tuple[str, ...] = (),
    **timing: float,
) -> dict[str, Any]:
    return notify(
        notice,
        "",
        settings_for(apis, **timing),
        flags={},
        only=only,
        lookup=targets.host_lookup,
    )


def failure(findings: int = 2, text: str = "no <limits> & no probes") -> message.Notice:
    notice = message.summary_notice(
        failed_summary(findings, text),
        message.Context(
            labels={"repository": "acme/chat"}, links=(("run", "https://ci/1?a=1&b=2"),)
        ),
        name="summary.json",
    )
    assert notice is not None
    return notice


def channel(document: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in document["channels"] if c["channel"] == name]
    assert len(found) == 1, document
    return found[0]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# --- the message --------------------------------------------------------------------------------


def test_a_failure_says_what_failed_where_and_caps_the_findings() -> None:
    notice = failure(findings=25)
    assert notice.event is Event.FAILURE
    assert notice.lines[0] == "policy: failed: 25 denied"
    assert notice.lines[1] == (
        "- policy [GP004] chat/prd charts/chat/templates/deployment.yaml:3 Deployment/chat: "
        "no <limits> & no probes #0"
    )
    findings = [line for line in notice.lines if line.startswith("- ")]
    assert len(findings) == message.MAX_FINDINGS
    assert notice.lines[-1] == "… and 15 more findings: see summary.json"
    long = failure(findings=1, text="x" * 5000)
    assert all(len(line) < 500 for line in long.lines)


def test_a_passed_summary_is_a_recovery_and_an_interrupted_one_says_nothing(tmp_path: Path) -> None:
    context = message.Context()
    recovered = message.summary_notice(passed_summary(), context, name="s")
    assert recovered is not None
    assert recovered.event is Event.RECOVERY
    stopped = {"status": "interrupted", "stages": [], "stopped": "SIGTERM"}
    notice, why = notice_from(
        summary=write(tmp_path / "s.json", stopped), release=None, text=None, context=context
    )
    assert notice is None
    assert "interrupted" in why


def test_the_release_notice_reads_what_release_writes() -> None:
    digest = "sha256:" + "a" * 64
    outcome = ReleaseOutcome(
        "1.4.0",
        "v1.4.0",
        released=True,
        republished=False,
        pushed=(
            PushedRef("ghcr.io/acme/chat:1.4.0", digest),
            PushedRef("ghcr.io/acme/chat:latest", digest),
        ),
    )
    data = json.loads(outcome_json(outcome))
    notice = message.release_notice(data, message.Context(), name="release.json")
    assert notice is not None
    assert notice.title == "gitops-pipeline: released 1.4.0"
    assert notice.lines == (
        "version 1.4.0",
        "tag v1.4.0",
        "image ghcr.io/acme/chat",
        "tags 1.4.0, latest",
        f"digest {digest}",
    )
    nothing = json.loads(outcome_json(ReleaseOutcome("1.3.0", "v1.3.0", False, False)))
    assert message.release_notice(nothing, message.Context(), name="r") is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not JSON"),
        ("[1]", "expected a JSON object"),
        ('{"status": "failed"}', "not a summary.json"),
    ],
)
def test_a_file_that_is_not_a_summary_is_a_config_error_naming_it(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "summary.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected) as raised:
        notice_from(summary=path, release=None, text=None, context=message.Context())
    assert str(path) in str(raised.value)


# --- channels against their APIs ----------------------------------------------------------------


def test_every_channel_gets_the_failure_in_its_own_format(apis: FakeApis) -> None:
    document = send(apis, failure())
    assert document["status"] == "sent", document
    assert [c["status"] for c in document["channels"]] == ["sent"] * 4
    # Telegram: HTML the API accepted (tags balanced, <, > and & escaped).
    (sent,) = apis.of("telegram")
    text = sent.json()["text"]
    assert "no &lt;limits&gt; &amp; no probes" in text
    assert '<a href="https://ci/1?a=1&amp;b=2">run</a>' in text
    assert sent.json()["chat_id"] == "-100200"
    # Slack: mrkdwn control characters escaped, the link in Slack's syntax.
    (posted,) = apis.of("slack")
    assert "no &lt;limits&gt; &amp; no probes" in posted.json()["text"]
    assert "<https://ci/1?a=1&amp;b=2|run>" in posted.json()["text"]
    # The webhook verified the signature over the exact bytes (it answers 401 otherwise).
    (hooked,) = apis.of("webhook")
    assert hooked.json()["event"] == "failure"
    assert hooked.headers["X-Gitops-Pipeline-Event"] == "failure"
    # Alertmanager: one firing alert with our labels.
    (alert,) = apis.firing()
    assert alert["labels"] == {
        "alertname": "GitopsPipelineFailed",
        "severity": "critical",
        "team": "ops",
        "repository": "acme/chat",
    }
    assert alert["generatorURL"] == "https://ci/1?a=1&b=2"


def test_a_passed_run_after_a_failure_resolves_the_alert(apis: FakeApis) -> None:
    send(apis, failure())
    assert len(apis.firing()) == 1
    recovery = message.summary_notice(
        passed_summary(), message.Context(labels={"repository": "acme/chat"}), name="s"
    )
    document = send(apis, recovery)
    assert channel(document, "alertmanager")["status"] == "sent"
    assert apis.firing() == []  # the same labels, endsAt now: resolved
    # Chats hear of a recovery only when their `on:` asks for it.
    assert channel(document, "slack")["status"] == "skipped"
    assert len(apis.of("slack")) == 1


def test_a_bad_signature_is_refused_by_the_receiver(apis: FakeApis, monkeypatch) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", "another-key")
    document = send(apis, failure(), only=("webhook",))
    assert channel(document, "webhook")["status"] == "failed"
    assert "HTTP 401" in channel(document, "webhook")["detail"]


def test_telegram_429_waits_the_retry_after_it_was_given(apis: FakeApis) -> None:
    apis.fail("telegram", Fault(status=429, retry_after=1))
    started = time.monotonic()
    document = send(apis, failure(), only=("telegram",))
    assert channel(document, "telegram") | {"duration_seconds": 0} == {
        "channel": "telegram",
        "status": "sent",
        "detail": "1 request(s) accepted",
        "requests": 1,
        "attempts": 2,
        "duration_seconds": 0,
    }
    first, second = apis.of("telegram")
    assert second.at - first.at >= 1.0  # not the 0.05 s backoff: the server's retry_after
    assert time.monotonic() - started < 5


def test_a_retry_after_past_the_deadline_fails_at_once(apis: FakeApis) -> None:
    apis.fail("telegram", Fault(status=429, retry_after=30))
    started = time.monotonic()
    document = send(apis, failure(), only=("telegram",), deadline=3.0)
    report = channel(document, "telegram")
    assert report["status"] == "failed"
    assert "the next try, in 30s, would pass the deadline" in report["detail"]
    assert time.monotonic() - started < 2
    assert len(apis.of("telegram")) == 1


def test_5xx_then_success_is_retried_with_backoff(apis: FakeApis) -> None:
    apis.fail("alertmanager", Fault(status=503), Fault(status=502))
    document = send(apis, failure(), only=("alertmanager",), backoff=0.2)
    report = channel(document, "alertmanager")
    assert (report["status"], report["attempts"]) == ("sent", 3)
    first, second, third = apis.of("alertmanager")
    assert second.at - first.at >= 0.2
    assert third.at - second.at >= 0.4  # doubled


def test_a_4xx_is_not_retried(apis: FakeApis) -> None:
    apis.fail("slack", Fault(status=400, body="invalid_payload"))
    report = channel(send(apis, failure(), only=("slack",)), "slack")
    assert report["status"] == "failed"
    assert report["attempts"] == 1
    assert "HTTP 400: invalid_payload" in report["detail"]


def test_an_answer_later_than_the_timeout_is_retried(apis: FakeApis) -> None:
    apis.fail("webhook", Fault(delay=1.5))
    document = send(apis, failure(), only=("webhook",), request_timeout=0.5)
    report = channel(document, "webhook")
    assert (report["status"], report["attempts"]) == ("sent", 2)


def test_a_server_that_never_answers_in_time_fails_within_the_deadline(apis: FakeApis) -> None:
    apis.fail("webhook", *[Fault(delay=2.0)] * 10)
    started = time.monotonic()
    document = send(apis, failure(), only=("webhook",), request_timeout=0.3, deadline=1.5)
    report = channel(document, "webhook")
    assert report["status"] == "failed"
    assert "no answer within" in report["detail"]
    assert time.monotonic() - started < 3.0


def test_a_closed_port_is_a_connection_error_retried_then_reported(
    apis: FakeApis, monkeypatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings = settings_for(apis)
    settings.channels["alertmanager"] = ChannelSettings(  # type: ignore[index]
        "alertmanager", url=f"http://127.0.0.1:{closed}"
    )
    document = notify(
        failure(), "", settings, flags={}, only=("alertmanager",), lookup=targets.host_lookup
    )
    report = channel(document, "alertmanager")
    assert report["status"] == "failed"
    assert report["attempts"] == FAST["attempts"]
    assert "connection failed" in report["detail"]


def test_an_oversize_telegram_message_is_split_then_truncated_with_a_note(apis: FakeApis) -> None:
    notice = message.text_notice(
        "\n".join(f"line {n}: " + "é<&>" * 60 for n in range(message.MAX_MESSAGE_LINES)),
        message.Context(),
    )
    texts = telegram.parts(notice)
    assert len(texts) == telegram.MAX_PARTS
    assert all(telegram_text_problem(text) == "" for text in texts)  # each within 4,096
    assert texts[0].startswith(f"(1/{telegram.MAX_PARTS}) <b>")
    assert "… truncated:" in texts[-1]
    document = send(apis, notice, only=("telegram",))
    assert channel(document, "telegram")["requests"] == telegram.MAX_PARTS
    assert len(apis.of("telegram")) == telegram.MAX_PARTS


def test_one_line_longer_than_a_message_is_shortened_not_refused(apis: FakeApis) -> None:
    notice = message.Notice(Event.MESSAGE, "t", ("&" * (3 * TELEGRAM_LIMIT),))
    texts = telegram.parts(notice)
    assert len(texts) == 2  # the title, then the line cut to what fits
    assert all(telegram_text_problem(text) == "" for text in texts)
    assert texts[1].endswith("&amp;…")
    assert channel(send(apis, notice, only=("telegram",)), "telegram")["status"] == "sent"


def test_the_fake_telegram_refuses_what_the_real_one_refuses() -> None:
    """The server's checks can fail: otherwise the tests above would prove nothing."""
    assert "too long" in telegram_text_problem("x" * (TELEGRAM_LIMIT + 1))
    assert "parse entities" in telegram_text_problem("a < b")
    assert "parse entities" in telegram_text_problem("<b>open")
    assert "parse entities" in telegram_text_problem("R&D")
    assert telegram_text_problem("<b>R&amp;D</b> &lt;ok&gt;") == ""


def test_slack_escaping_stops_mentions_and_links() -> None:
    notice = message.Notice(Event.MESSAGE, "t", ("<!channel> <https://evil|click> a&b",))
    assert "&lt;!channel&gt; &lt;https://evil|click&gt; a&amp;b" in slack.text(notice)


def test_a_token_the_server_echoes_is_redacted(apis: FakeApis) -> None:
    apis.fail("telegram", Fault(status=400, body=f"Bad Request: token {TELEGRAM_TOKEN} is odd"))
    document = send(apis, failure(), only=("telegram",))
    report = channel(document, "telegram")
    assert "token *** is odd" in report["detail"]
    assert_no_secret(json.dumps(document))


# --- configuration ------------------------------------------------------------------------------


def config_error(tmp_path: Path, text: str) -> str:
    (tmp_path / "pipeline.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    return str(raised.value)


def test_pipeline_yaml_notify_block_is_read(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "notify:\n"
        "  deadline: 30\n"
        "  attempts: 2\n"
        "  telegram:\n"
        "    token: env:TELEGRAM_BOT_TOKEN\n"
        "    chat_id: -100123\n"
        "    on: [failure, recovery]\n"
        "  alertmanager:\n"
        "    url: http://alertmanager.monitoring:9093\n"
        "    labels: {team: platform}\n",
        encoding="utf-8",
    )
    settings = load_config(tmp_path).notify
    assert (settings.deadline, settings.attempts) == (30.0, 2)
    assert settings.channels["telegram"].chat_id == "-100123"
    assert settings.channels["telegram"].hears(Event.RECOVERY)
    assert not settings.channels["telegram"].hears(Event.RELEASE)
    assert settings.channels["alertmanager"].labels == {"team": "platform"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "notify:\n  telegram:\n    tokn: env:X\n",
            "pipeline.yaml:3: notify.telegram.tokn: unknown key 'tokn'; did you mean 'token'?",
        ),
        ("notify:\n  slak: {}\n", "did you mean 'slack'?"),
        ("notify:\n  telegram:\n    token: env:X\n", "notify.telegram.chat_id: is required"),
        (
            "notify:\n  slack:\n    url: https://hooks.slack.com/services/T/B/s3cr3t\n",
            "expected a reference",
        ),
        (
            "notify:\n  webhook:\n    url: https://user:s3cr3t@hooks.example/x\n",
            "must be a reference",
        ),
        (
            "notify:\n  webhook:\n    url: https://hooks.example/x?token=s3cr3t\n",
            "must be a reference",
        ),
        ("notify:\n  webhook:\n    url: ftp://hooks.example/x\n", "expected an http(s) URL"),
        ("notify:\n  slack:\n    url: env:S\n    on: [failed]\n", "did you mean 'failure'?"),
        ("notify:\n  attempts: 0\n", "expected a whole number of 1 or more"),
    ],
)
def test_a_bad_notify_block_is_refused_with_its_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    error = config_error(tmp_path, text)
    assert expected in error
    assert "s3cr3t" not in error  # a value that may be a secret is never repeated


def test_a_channel_without_its_secret_is_a_config_error_before_anything_is_sent(
    apis: FakeApis, monkeypatch
) -> None:
    monkeypatch.delenv("TEST_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match="TEST_WEBHOOK_SECRET is not set"):
        send(apis, failure())
    assert apis.received == []


# --- the CLI ------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "notify", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path, apis: FakeApis) -> Path:
    (tmp_path / "pipeline.yaml").write_text(
        "notify:\n"
        "  attempts: 3\n"
        "  backoff: 0.05\n"
        "  request_timeout: 1\n"
        "  deadline: 20\n"
        "  telegram:\n"
        "    token: env:TEST_TELEGRAM_TOKEN\n"
        "    chat_id: '-100200'\n"
        f"    api_url: {apis.base}\n"
        "    on: [failure, release, message]\n"
        f"  webhook:\n    url: {apis.base}/hook\n    secret: env:TEST_WEBHOOK_SECRET\n",
        encoding="utf-8",
    )
    return tmp_path


def host_env(apis: FakeApis) -> dict[str, str]:
    import os  # noqa: PLC0415

    return {**os.environ, **ENV, "TEST_SLACK_URL": f"{apis.base}{SLACK_PATH}"}


def test_cli_every_channel_failing_still_exits_0_and_reports_it(repo: Path, apis: FakeApis) -> None:
    apis.fail("telegram", *[Fault(status=500, body=f"boom {TELEGRAM_TOKEN}")] * 3)
    apis.fail("webhook", *[Fault(status=503)] * 3)
    apis.fail("slack", *[Fault(status=502)] * 3)
    summary = write(repo / "summary.json", failed_summary())
    done = cli(
        "--summary",
        str(summary),
        "--slack-url",
        "env:TEST_SLACK_URL",
        "--out",
        "artifacts",
        cwd=repo,
        env=host_env(apis),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((repo / "artifacts" / "notify.json").read_text(encoding="utf-8"))
    assert report["status"] == "failed"
    assert {c["channel"]: c["status"] for c in report["channels"]} == {
        "telegram": "failed",
        "slack": "failed",
        "webhook": "failed",
    }
    assert "notify telegram: failed: sendMessage 1/1: HTTP 500: boom ***" in done.stderr
    assert_no_secret(done.stdout, done.stderr, json.dumps(report))


def test_cli_release_and_message(repo: Path, apis: FakeApis) -> None:
    digest = "sha256:" + "b" * 64
    release = write(
        repo / "release.json",
        json.loads(
            outcome_json(
                ReleaseOutcome(
                    "2.0.0", "v2.0.0", True, False, (PushedRef("r.io/a/b:2.0.0", digest),)
                )
            )
        ),
    )
    done = cli("--release", str(release), "--format", "json", cwd=repo, env=host_env(apis))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["result"]["status"] == "sent"
    assert "released 2.0.0" in apis.of("telegram")[0].json()["text"]
    assert apis.of("webhook")[0].json()["details"]["digests"] == [digest]
    said = cli(
        "--message",
        "deploy <frozen> & waiting",
        "--channel",
        "telegram",
        cwd=repo,
        env=host_env(apis),
    )
    assert said.returncode == 0, said.stderr
    assert "deploy &lt;frozen&gt; &amp; waiting" in apis.of("telegram")[-1].json()["text"]
    assert len(apis.of("webhook")) == 1  # --channel telegram only
    assert_no_secret(done.stdout, done.stderr, said.stdout, said.stderr)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "pass exactly one of --summary FILE, --release FILE, --message TEXT"),
        (("--summary", "missing.json"), "missing.json: --summary: cannot read it"),
        (("--message", "hi", "--telegram-token", TELEGRAM_TOKEN), "takes a reference"),
        (("--message", "hi", "--channel", "pager"), "unknown channel 'pager'"),
    ],
)
def test_cli_configuration_errors_exit_2(
    repo: Path, apis: FakeApis, args: tuple[str, ...], expected: str
) -> None:
    done = cli(*args, cwd=repo, env=host_env(apis))
    assert done.returncode == 2
    assert expected in done.stderr
    assert apis.received == []
    assert_no_secret(done.stdout, done.stderr)


def test_cli_flags_alone_make_a_channel(tmp_path: Path, apis: FakeApis) -> None:
    done = cli(
        "--message",
        "hello",
        "--webhook-url",
        f"{apis.base}/hook",
        "--webhook-secret",
        "env:TEST_WEBHOOK_SECRET",
        cwd=tmp_path,
        env=host_env(apis),
    )
    assert done.returncode == 0, done.stderr
    assert apis.of("webhook")[0].json()["lines"] == ["hello"]


def test_the_readme_documents_notify() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "gitops-pipeline notify --summary artifacts/summary.json" in readme
    assert "dagger call notify" in readme
