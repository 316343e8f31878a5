from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from chat import __version__
from chat.server import Config, ConfigError

APP_DIR = Path(__file__).resolve().parent.parent
CHART_DIR = APP_DIR.parent / "charts" / "chat"


def test_defaults() -> None:
    config = Config.from_env({})
    assert config == Config()
    assert (config.host, config.port, config.log_level) == ("0.0.0.0", 8080, "info")  # noqa: S104
    assert (config.max_message_length, config.history_size) == (4096, 200)


def test_reads_every_variable() -> None:
    config = Config.from_env(
        {
            "HOST": "127.0.0.1",
            "PORT": "9000",
            "LOG_LEVEL": " WARNING ",
            "CHAT_MAX_MESSAGE_LENGTH": "100",
            "CHAT_HISTORY_SIZE": "5",
            "CHAT_MAX_BODY_BYTES": "2048",
            "CHAT_DRAIN_SECONDS": "0.5",
            "CHAT_REQUEST_TIMEOUT_SECONDS": "3",
        }
    )
    assert config == Config(
        host="127.0.0.1",
        port=9000,
        log_level="warning",
        max_message_length=100,
        history_size=5,
        max_body_bytes=2048,
        drain_seconds=0.5,
        request_timeout=3.0,
    )


def test_empty_values_keep_the_defaults() -> None:
    assert Config.from_env({"PORT": "", "LOG_LEVEL": "  "}) == Config()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("LOG_LEVEL", "verbose"),
        ("CHAT_MAX_MESSAGE_LENGTH", "0"),
        ("CHAT_HISTORY_SIZE", "1.5"),
        ("CHAT_MAX_BODY_BYTES", "big"),
        ("CHAT_DRAIN_SECONDS", "nan"),
        ("CHAT_DRAIN_SECONDS", "soon"),
        ("CHAT_DRAIN_SECONDS", "-1"),
        ("CHAT_REQUEST_TIMEOUT_SECONDS", "0"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_version_matches_pyproject() -> None:
    pyproject = tomllib.loads((APP_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == __version__


def _chart_config_keys(values_file: Path) -> dict[str, str]:
    """The keys and values of the top-level `config:` mapping (flat strings) of a values file."""
    keys: dict[str, str] = {}
    in_config = False
    for line in values_file.read_text(encoding="utf-8").splitlines():
        if re.match(r"^\S", line):
            in_config = line.rstrip() == "config:"
            continue
        match = re.match(r"^  ([A-Za-z_][A-Za-z0-9_]*):\s*(.*?)\s*$", line)
        if in_config and match:
            keys[match.group(1)] = match.group(2).strip("\"'")
    return keys


@pytest.mark.skipif(not CHART_DIR.is_dir(), reason="charts/chat is not beside app/")
def test_chart_matches_the_service() -> None:
    chart = (CHART_DIR / "Chart.yaml").read_text(encoding="utf-8")
    app_version = re.search(r'^appVersion:\s*"?([^"\s]+)"?', chart, re.MULTILINE)
    assert app_version is not None
    assert app_version.group(1) == __version__

    values = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    port = re.search(r"^containerPort:\s*(\d+)", values, re.MULTILINE)
    assert port is not None
    assert int(port.group(1)) == Config().port

    for values_file in sorted(CHART_DIR.glob("values*.yaml")):
        settings = _chart_config_keys(values_file)
        config = Config.from_env(settings)  # every value the chart sets is valid
        assert settings.keys() <= {
            "LOG_LEVEL",
            "CHAT_MAX_MESSAGE_LENGTH",
            "CHAT_HISTORY_SIZE",
            "CHAT_MAX_BODY_BYTES",
            "CHAT_DRAIN_SECONDS",
            "CHAT_REQUEST_TIMEOUT_SECONDS",
        }, f"{values_file.name} sets a variable the service does not read"
        if "LOG_LEVEL" in settings:
            assert config.log_level == settings["LOG_LEVEL"].lower()
