"""`notify` in the Dagger module: secrets are `Secret`s, hosts only the engine reaches.

The module cannot read the machine that runs `dagger`: each secret pipeline.yaml names by
reference is given to the function as a `Secret` (`--slack-url env:SLACK_WEBHOOK_URL`), read
here and only for the channels pipeline.yaml declares, so a secret CI passes for a channel
this repository does not use is never looked up. A server only the host reaches
(`--notify-server tcp://localhost:PORT`) is the host `notify-server` in the channels' URLs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import dagger

from pipeline.errors import ConfigError
from pipeline.notify import message, targets
from pipeline.notify.settings import NotifySettings
from pipeline.notify.verb import notice_from, notify, report_lines, write_report

NOTIFY_SERVER_HOST = "notify-server"


def _placeholder(name: str) -> str:
    # A lookup key, never read from any environment: the module fills it from the Secret.
    return f"env:GITOPS_PIPELINE_NOTIFY_{name.upper()}"


async def _given(
    settings: NotifySettings, secrets: Mapping[str, dagger.Secret | None]
) -> tuple[dict[str, str], dict[str, str]]:
    """(flags as placeholders, placeholder -> plaintext) for the declared channels' secrets."""
    flags: dict[str, str] = {}
    given: dict[str, str] = {}
    for name, secret in secrets.items():
        field = targets.FLAG_FIELDS[name]
        if secret is None or field.kind not in settings.channels:
            continue
        try:
            value = await secret.plaintext()
        except dagger.DaggerError:
            # The engine's message may quote the provider; it is the reference, not the value.
            raise ConfigError("the secret given cannot be read", field=field.flag) from None
        flags[name] = _placeholder(name)
        given[flags[name]] = value
    return flags, given


async def notify_in_module(
    settings: NotifySettings,
    workdir: Path,
    *,
    summary: dagger.File | None,
    release: dagger.File | None,
    text: str,
    secrets: Mapping[str, dagger.Secret | None],
    channels: list[str],
    labels: list[str],
    links: list[str],
    notify_server: dagger.Service | None,
) -> Path:
    """Send; the directory holding notify.json."""
    inputs: dict[str, Path | None] = {"summary": None, "release": None}
    for name, file in (("summary", summary), ("release", release)):
        if file is not None:
            inputs[name] = workdir / f"{name}.json"
            await file.export(str(inputs[name]))
    context = message.Context(
        labels=dict(message.pairs(labels, "--label")), links=message.pairs(links, "--link")
    )
    notice, why = notice_from(
        summary=inputs["summary"], release=inputs["release"], text=text or None, context=context
    )
    flags, given = await _given(settings, secrets)
    hosts = {}
    if notify_server is not None:
        await notify_server.start()
        hosts[NOTIFY_SERVER_HOST] = await notify_server.hostname()

    def send() -> dict[str, Any]:
        return notify(
            notice,
            why,
            settings,
            flags=flags,
            only=tuple(channels),
            lookup=targets.given_lookup(given),
            hosts=hosts,
        )

    document = await anyio.to_thread.run_sync(send)
    out = workdir / "artifacts"
    write_report(out, document)
    for line in report_lines(document):
        sys.stderr.write(line + "\n")
    return out
