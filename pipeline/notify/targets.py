"""Which channels to send to, with their references looked up, from pipeline.yaml and flags.

A flag replaces the same field of pipeline.yaml's channel, and flags alone make a channel.
The lookup is the caller's: on the host a reference is read from the environment or a file;
in the Dagger module only the `Secret`s given to the function can be read.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from pipeline.errors import ConfigError
from pipeline.notify.settings import CHANNEL_KINDS, ChannelSettings, NotifySettings
from pipeline.notify.wire import Target
from pipeline.references import read_reference_text

REDACTED = "***"


@dataclass(frozen=True)
class FlagField:
    kind: str
    attribute: str
    flag: str
    secret: bool  # a reference only; else a URL or a reference (or plain text: chat_id)


FLAG_FIELDS = {
    "telegram_token": FlagField("telegram", "token", "--telegram-token", secret=True),
    "telegram_chat_id": FlagField("telegram", "chat_id", "--telegram-chat-id", secret=False),
    "slack_url": FlagField("slack", "url", "--slack-url", secret=True),
    "webhook_url": FlagField("webhook", "url", "--webhook-url", secret=False),
    "webhook_secret": FlagField("webhook", "secret", "--webhook-secret", secret=True),
    "alertmanager_url": FlagField("alertmanager", "url", "--alertmanager-url", secret=False),
}
# What a channel cannot send without, and the flag that gives it.
REQUIRED = {
    "alertmanager": ("url",),
    "telegram": ("token", "chat_id"),
    "slack": ("url",),
    "webhook": ("url",),
}
LOOKED_UP = ("url", "token", "secret")


def is_reference(text: str) -> bool:
    scheme, sep, rest = text.partition(":")
    return bool(sep) and scheme in {"env", "file"} and bool(rest)


def url_or_reference(flag: str) -> Callable[[str], str]:
    """argparse type: env:NAME, file:PATH, or an http(s) URL with no credentials in it."""

    def parse(text: str) -> str:
        if is_reference(text):
            return text
        try:
            parts = urlsplit(text)
            credentials = bool(parts.username or parts.password or parts.query)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes an http(s) URL") from None
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise argparse.ArgumentTypeError(
                f"{flag} takes an http(s) URL or a reference, env:NAME or file:PATH"
            )
        if credentials:
            # Never repeated: the user or query part may be a token.
            raise argparse.ArgumentTypeError(
                f"{flag}: a URL with credentials or a query goes by reference (env:NAME)"
            )
        return text

    return parse


def merged(settings: NotifySettings, flags: Mapping[str, str]) -> dict[str, ChannelSettings]:
    """pipeline.yaml's channels with the flags given (field name -> value) applied."""
    channels = dict(settings.channels)
    for name, value in flags.items():
        if not value:
            continue
        field = FLAG_FIELDS[name]
        current = channels.get(field.kind, ChannelSettings(kind=field.kind))
        changes: dict[str, str] = {field.attribute: value}
        channels[field.kind] = replace(current, **changes)  # type: ignore[arg-type]
    return channels


def chosen(channels: Mapping[str, ChannelSettings], only: tuple[str, ...]) -> list[str]:
    for kind in only:
        if kind not in CHANNEL_KINDS:
            raise ConfigError(f"unknown channel {kind!r}; known: {', '.join(CHANNEL_KINDS)}")
        if kind not in channels:
            raise ConfigError(
                f"channel {kind} is not configured: add notify.{kind} to pipeline.yaml or pass "
                "its flags",
                field="--channel",
            )
    return [kind for kind in CHANNEL_KINDS if kind in channels and (not only or kind in only)]


def _flag_of(kind: str, attribute: str) -> str:
    for field in FLAG_FIELDS.values():
        if (field.kind, field.attribute) == (kind, attribute):
            return field.flag
    return ""


Lookup = Callable[[str, str], str]  # (reference, where it was given) -> the value


def targets(
    channels: Mapping[str, ChannelSettings], kinds: list[str], lookup: Lookup
) -> list[Target]:
    found = []
    for kind in kinds:
        settings = channels[kind]
        for attribute in REQUIRED[kind]:
            if not getattr(settings, attribute):
                raise ConfigError(
                    f"the {kind} channel has no {attribute}: set notify.{kind}.{attribute} in "
                    f"pipeline.yaml or pass {_flag_of(kind, attribute)}",
                    field=f"notify.{kind}.{attribute}",
                )
        values = {
            attribute: lookup(value, f"notify.{kind}.{attribute} ({_flag_of(kind, attribute)})")
            if is_reference(value := getattr(settings, attribute))
            else value
            for attribute in LOOKED_UP
        }
        found.append(Target(settings, **values))
    return found


def host_lookup(reference: str, where: str) -> str:
    """A reference read on this machine: the environment variable or the file's text."""
    value = read_reference_text(reference, where).strip()
    if not value:
        # An empty token would only fail later, at the channel, less clearly.
        raise ConfigError(f"{reference} is empty", field=where)
    return value


def given_lookup(given: Mapping[str, str]) -> Lookup:
    """The Dagger module's lookup: only the secrets passed to the function, by reference."""

    def lookup(reference: str, where: str) -> str:
        if reference in given:
            return given[reference]
        raise ConfigError(
            f"{reference} is on the machine that runs dagger, which the module cannot read: "
            "pass it to the function as a secret (the flag in parentheses)",
            field=where,
        )

    return lookup


def redact(text: str, secrets: tuple[str, ...]) -> str:
    # Longest first: a URL that contains a token is replaced whole.
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, REDACTED)
    return text
