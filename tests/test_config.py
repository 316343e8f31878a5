"""pipeline.yaml: optional, strictly checked, every error located by file and line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.config import (
    CONFIG_FILE,
    DEFAULT_KUBERNETES_VERSION,
    Config,
    KubeconformConfig,
    PolicyConfig,
    ReleaseConfig,
    load_config,
)
from pipeline.errors import ConfigError


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / CONFIG_FILE).write_text(text, encoding="utf-8")
    return tmp_path / CONFIG_FILE


def config_error(tmp_path: Path, text: str) -> ConfigError:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    # Named as in the repository, whoever reads it and wherever the copy lives.
    assert caught.value.file == str(path.relative_to(tmp_path)) == CONFIG_FILE
    assert caught.value.exit_code == 2
    return caught.value


def test_no_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)

    assert config == Config(source=tmp_path)
    assert config.file is None
    assert config.kubernetes_version == DEFAULT_KUBERNETES_VERSION
    assert config.charts == {}
    assert config.environments == ()
    assert config.kubeconform == KubeconformConfig()
    assert config.policy == PolicyConfig(path="policy")
    assert config.release == ReleaseConfig(tag_format="v{version}")


def test_empty_file_gives_defaults_and_remembers_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "# nothing configured yet\n")

    config = load_config(tmp_path)

    assert config.file == path.relative_to(tmp_path)
    assert config.kubernetes_version == DEFAULT_KUBERNETES_VERSION
    assert config.charts == {}


def test_full_file_is_read_into_typed_values(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """\
kubernetes_version: 1.33.2
environments: [dev, prd]
charts:
  web:
    path: deploy/web
    namespace: shop
    api_versions: [monitoring.coreos.com/v1]
    environments:
      prd:
        values: [infra/prd/web.yaml]
kubeconform:
  ignore_missing_schemas: [Widget]
policy:
  path: rules
release:
  tag_format: web-{version}
  major_on_zero: false
python:
  min_coverage: 80
""",
    )

    config = load_config(tmp_path)

    assert config.kubernetes_version == "1.33.2"
    assert config.environments == ("dev", "prd")
    web = config.charts["web"]
    assert (web.path, web.release, web.namespace) == ("deploy/web", "web", "shop")
    assert web.api_versions == ("monitoring.coreos.com/v1",)
    assert web.environments["prd"].values == ("infra/prd/web.yaml",)
    assert config.kubeconform.ignore_missing_schemas == ("Widget",)
    # keys that were not given keep their defaults
    assert config.kubeconform.schema_locations == KubeconformConfig().schema_locations
    assert config.policy.path == "rules"
    assert config.release.tag_format == "web-{version}"
    assert config.release.major_on_zero is False
    assert config.python.min_coverage == 80.0


def test_chart_defaults_follow_the_chart_name(tmp_path: Path) -> None:
    write_config(tmp_path, "charts:\n  api: {}\n")

    chart = load_config(tmp_path).charts["api"]

    assert (chart.path, chart.release, chart.namespace) == ("charts/api", "api", "api")


def test_unknown_top_level_key_suggests_the_closest_and_gives_the_line(tmp_path: Path) -> None:
    error = config_error(tmp_path, "environments: [dev]\nkubernets_version: 1.35.0\n")

    assert error.line == 2
    assert error.field == "kubernets_version"
    assert "did you mean 'kubernetes_version'" in str(error)
    assert str(error).startswith(f"{CONFIG_FILE}:2: kubernets_version:")


def test_unknown_nested_key_names_the_dotted_path(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        """\
charts:
  web:
    path: charts/web
    enviroments:
      dev: {}
""",
    )

    assert error.line == 4
    assert error.field == "charts.web.enviroments"
    assert "did you mean 'environments'" in error.message


def test_unknown_key_without_a_close_match_lists_the_known_keys(tmp_path: Path) -> None:
    error = config_error(tmp_path, "policy:\n  zzz: 1\n")

    assert error.field == "policy.zzz"
    assert "did you mean" not in error.message
    assert "known keys: path, data" in error.message


@pytest.mark.parametrize(
    ("text", "field", "line", "expected"),
    [
        ("environments: dev\n", "environments", 1, "expected a list"),
        (
            "kubeconform:\n  ignore_missing_schemas: Widget\n",
            "kubeconform.ignore_missing_schemas",
            2,
            "expected a list",
        ),
        ("release:\n  major_on_zero: sometimes\n", "release.major_on_zero", 2, "true or false"),
        ("charts:\n  web:\n    path: [a, b]\n", "charts.web.path", 3, "expected a string"),
        ("charts: [web]\n", "charts", 1, "expected a mapping"),
        ("policy:\n  data: [a, [b]]\n", "policy.data[1]", 2, "expected a string"),
    ],
)
def test_wrong_type_names_the_field_and_line(
    tmp_path: Path, text: str, field: str, line: int, expected: str
) -> None:
    error = config_error(tmp_path, text)

    assert error.field == field
    assert error.line == line
    assert expected in error.message


def test_a_top_level_list_is_rejected(tmp_path: Path) -> None:
    error = config_error(tmp_path, "- charts\n")

    assert error.line == 1
    assert "expected a mapping" in error.message


def test_non_numeric_min_coverage_is_a_config_error(tmp_path: Path) -> None:
    # A scalar that is not a number must be a ConfigError naming the field, not a ValueError
    # escaping the CLI's error handler as a traceback.
    error = config_error(tmp_path, "python:\n  min_coverage: high\n")

    assert error.field == "python.min_coverage"
    assert error.line == 2


@pytest.mark.parametrize(("word", "expected"), [("yes", True), ("on", True), ("no", False)])
def test_yaml_11_booleans_keep_their_meaning(tmp_path: Path, word: str, expected: bool) -> None:
    # The loader is PyYAML's SafeLoader (YAML 1.1): `yes`/`on` are booleans tagged bool,
    # and must not silently become False.
    write_config(tmp_path, f"release:\n  major_on_zero: {word}\n")

    assert load_config(tmp_path).release.major_on_zero is expected


def test_invalid_chart_name_is_rejected(tmp_path: Path) -> None:
    error = config_error(tmp_path, "charts:\n  Web_App: {}\n")

    assert error.field == "charts.Web_App"
    assert error.line == 2
    assert "DNS label" in error.message


def test_duplicate_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    error = config_error(tmp_path, "charts:\n  web: {}\n  web: {}\n")

    assert error.line == 3
    assert error.field == "charts.web"
    assert "duplicate key" in error.message


def test_duplicate_top_level_key_names_the_key_itself(tmp_path: Path) -> None:
    error = config_error(tmp_path, "environments: [dev]\nenvironments: [prd]\n")

    assert error.line == 2
    assert error.field == "environments"


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        """\
environments: [dev]
charts:
  web: path: charts/web
""",
    )

    assert error.line == 3
    assert "invalid YAML" in error.message
    assert str(error).startswith(f"{CONFIG_FILE}:3:")


@pytest.mark.parametrize("version", ["1.35", "v1.35.0", "latest", "1.35.0-rc.1"])
def test_kubernetes_version_must_be_a_full_version(tmp_path: Path, version: str) -> None:
    error = config_error(tmp_path, f'kubernetes_version: "{version}"\n')

    assert error.field == "kubernetes_version"
    assert error.line == 1
    assert "x.y.z" in error.message
    assert repr(version) in error.message


def test_first_release_must_be_a_full_version(tmp_path: Path) -> None:
    error = config_error(tmp_path, "release:\n  first_release: '1.0'\n")

    assert error.field == "release.first_release"
    assert error.line == 2


def test_tag_format_must_contain_the_version_placeholder(tmp_path: Path) -> None:
    error = config_error(
        tmp_path, "image:\n  repository: ghcr.io/acme/web\nrelease:\n  tag_format: release\n"
    )

    assert error.field == "release.tag_format"
    assert "{version}" in error.message
    # the module promises that every error carries the file and the line
    assert error.line == 4


def test_config_is_frozen(tmp_path: Path) -> None:
    write_config(tmp_path, "charts:\n  web:\n    environments:\n      dev: {values: [a.yaml]}\n")
    config = load_config(tmp_path)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.kubernetes_version = "1.30.0"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.release.tag_format = "{version}"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.charts["web"].path = "elsewhere"  # type: ignore[misc]
    assert isinstance(config.charts["web"].environments["dev"].values, tuple)
    assert isinstance(config.environments, tuple)
