from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chat.server import LOGGER, Application, Config
from support import AppFactory, base_url_of


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Start servers on 127.0.0.1:0 (readiness 'starting'); stop them after the test."""
    apps: list[Application] = []

    def factory(**overrides: Any) -> Application:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "drain_seconds": 0.0}
        settings.update(overrides)
        app = Application(Config(**settings), poll_interval=0.01)
        app.start_serving()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.shutdown()


@pytest.fixture
def app(make_app: AppFactory) -> Application:
    """A running, ready server with the default settings."""
    application = make_app()
    application.mark_ready()
    return application


@pytest.fixture
def base_url(app: Application) -> str:
    return base_url_of(app.address)


@pytest.fixture(autouse=True)
def _restore_logger() -> Iterator[None]:
    handlers, level, propagate = list(LOGGER.handlers), LOGGER.level, LOGGER.propagate
    yield
    LOGGER.handlers[:] = handlers
    LOGGER.setLevel(level)
    LOGGER.propagate = propagate
