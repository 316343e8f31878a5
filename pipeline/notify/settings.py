"""The `notify:` block of pipeline.yaml, as plain data (checked in pipeline.config).

Tokens, and URLs that carry one, are references (`env:NAME`, `file:PATH`): the value is
looked up when a notice is sent and never stored here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Event(enum.Enum):
    FAILURE = "failure"  # a summary.json that failed or could not reach a verdict
    RECOVERY = "recovery"  # a summary.json that passed: resolves a firing alert
    RELEASE = "release"  # a release.json that released a version
    MESSAGE = "message"  # `notify --message TEXT`


CHANNEL_KINDS = ("alertmanager", "telegram", "slack", "webhook")

# Alertmanager resolves its alert on a recovery, so it hears every event. A chat hears of a
# recovery only when asked: without the previous run's state, every passed run would post.
DEFAULT_EVENTS: Mapping[str, tuple[Event, ...]] = {
    "alertmanager": tuple(Event),
    "telegram": (Event.FAILURE, Event.RELEASE, Event.MESSAGE),
    "slack": (Event.FAILURE, Event.RELEASE, Event.MESSAGE),
    "webhook": (Event.FAILURE, Event.RELEASE, Event.MESSAGE),
}

TELEGRAM_API = "https://api.telegram.org"
DEFAULT_DEADLINE_SECONDS = 60.0
DEFAULT_REQUEST_SECONDS = 10.0
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF_SECONDS = 1.0
# A failure alert nobody resolves (the branch was abandoned) still ends by itself.
DEFAULT_RESOLVE_AFTER_SECONDS = 86_400.0


@dataclass(frozen=True)
class ChannelSettings:
    """One channel. `url`, `token` and `secret` hold a reference or, where allowed, a URL."""

    kind: str
    url: str = ""  # alertmanager (base URL), slack (webhook URL), webhook (endpoint)
    token: str = ""  # telegram: the bot token, a reference
    chat_id: str = ""  # telegram
    api_url: str = TELEGRAM_API  # telegram: a self-hosted Bot API server, or a test server
    secret: str = ""  # webhook: the HMAC key, a reference
    labels: Mapping[str, str] = field(default_factory=dict)  # alertmanager
    resolve_after: float = DEFAULT_RESOLVE_AFTER_SECONDS  # alertmanager
    events: tuple[Event, ...] = ()  # empty: DEFAULT_EVENTS[kind]

    def hears(self, event: Event) -> bool:
        return event in (self.events or DEFAULT_EVENTS[self.kind])


@dataclass(frozen=True)
class NotifySettings:
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)  # kind -> settings
    deadline: float = DEFAULT_DEADLINE_SECONDS  # every channel, every retry, all together
    request_timeout: float = DEFAULT_REQUEST_SECONDS  # one HTTP request
    attempts: int = DEFAULT_ATTEMPTS  # per request, the first included
    backoff: float = DEFAULT_BACKOFF_SECONDS  # first wait; doubled after each retry
