"""Charts, their environments and Helm's values layering, found from the files on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import CONFIG_FILE, load_config
from pipeline.discovery import (
    BASE_ENVIRONMENT,
    chart_environments,
    overlays_helm_cannot_read,
    plan_targets,
)
from pipeline.errors import ConfigError

CHART_YAML = "apiVersion: v2\nname: {name}\nversion: 0.1.0\n"


def make_chart(source: Path, name: str, *files: str, base: bool = True) -> Path:
    chart = source / "charts" / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML.format(name=name), encoding="utf-8")
    if base:
        (chart / "values.yaml").write_text("replicaCount: 1\n", encoding="utf-8")
    for file in files:
        (chart / file).write_text("replicaCount: 2\n", encoding="utf-8")
    return chart


def write(source: Path, relative: str, text: str = "replicaCount: 3\n") -> None:
    path = source / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def layering(source: Path, requested: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    return {t.key: t.values for t in plan_targets(load_config(source), requested)}


def test_both_overlay_spellings_are_environments(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml", "prd-values.yaml", "values-stg.yml")

    assert layering(tmp_path) == {
        "web/dev": ("charts/web/values.yaml", "charts/web/values-dev.yaml"),
        "web/prd": ("charts/web/values.yaml", "charts/web/prd-values.yaml"),
        "web/stg": ("charts/web/values.yaml", "charts/web/values-stg.yml"),
    }


def test_files_that_are_not_overlays_are_ignored(tmp_path: Path) -> None:
    chart = make_chart(tmp_path, "web", "values-dev.yaml", "values.schema.json", "README.md")
    (chart / "values-old.yaml.bak").write_text("x: 1\n", encoding="utf-8")
    (chart / "values-UPPER.yaml").write_text("x: 1\n", encoding="utf-8")
    (chart / "values-dir.yaml").mkdir()

    assert list(layering(tmp_path)) == ["web/dev"]


def test_layering_is_base_then_chart_overlay_then_declared_files(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-prd.yaml")
    write(tmp_path, "infra/clusters/prd/web-values.yaml")
    write(tmp_path, "infra/common/prd.yaml")
    write(
        tmp_path,
        CONFIG_FILE,
        """\
charts:
  web:
    environments:
      prd:
        values:
          - infra/clusters/prd/web-values.yaml
          - infra/common/prd.yaml
""",
    )

    assert layering(tmp_path) == {
        "web/prd": (
            "charts/web/values.yaml",
            "charts/web/values-prd.yaml",
            "infra/clusters/prd/web-values.yaml",
            "infra/common/prd.yaml",
        )
    }


def test_declared_environment_without_in_chart_overlay_is_added(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml")
    write(tmp_path, "infra/prd/web.yaml")
    write(
        tmp_path,
        CONFIG_FILE,
        "charts:\n  web:\n    environments:\n      prd:\n        values: [infra/prd/web.yaml]\n",
    )

    assert layering(tmp_path) == {
        "web/dev": ("charts/web/values.yaml", "charts/web/values-dev.yaml"),
        "web/prd": ("charts/web/values.yaml", "infra/prd/web.yaml"),
    }


def test_chart_without_values_yaml_layers_only_its_overlay(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml", base=False)

    assert layering(tmp_path) == {"web/dev": ("charts/web/values-dev.yaml",)}


def test_missing_declared_overlay_names_chart_environment_and_file(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml")
    write(
        tmp_path,
        CONFIG_FILE,
        "charts:\n  web:\n    environments:\n      prd:\n"
        "        values: [infra/clusters/prd/web-values.yaml]\n",
    )

    with pytest.raises(ConfigError) as caught:
        plan_targets(load_config(tmp_path))

    error = caught.value
    assert error.exit_code == 2
    assert error.file == CONFIG_FILE
    assert error.field == "charts.web.environments.prd.values"
    assert "chart 'web'" in error.message
    assert "environment 'prd'" in error.message
    assert "infra/clusters/prd/web-values.yaml" in error.message


def test_unknown_requested_environment_lists_the_known_ones(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml", "values-prd.yaml")

    with pytest.raises(ConfigError) as caught:
        plan_targets(load_config(tmp_path), ["nope"])

    assert caught.value.field == "--env"
    assert "'nope'" in caught.value.message
    assert "known environments: dev, prd" in caught.value.message


def test_requested_environments_select_targets(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml", "values-prd.yaml")
    make_chart(tmp_path, "api", "values-prd.yaml", "values-stg.yaml")

    assert list(layering(tmp_path, ("prd",))) == ["api/prd", "web/prd"]


def test_environment_known_to_one_chart_only_is_accepted(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml")
    make_chart(tmp_path, "api", "values-stg.yaml")

    assert list(layering(tmp_path, ("stg",))) == ["api/stg"]


def test_chart_without_overlays_renders_once_as_default(tmp_path: Path) -> None:
    make_chart(tmp_path, "web")

    targets = plan_targets(load_config(tmp_path))

    assert [(t.key, t.values) for t in targets] == [
        (f"web/{BASE_ENVIRONMENT}", ("charts/web/values.yaml",))
    ]
    assert targets[0].rendered_path == "rendered/web/default.yaml"


def test_config_environments_restrict_discovered_ones(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "values-dev.yaml", "values-stg.yaml", "values-prd.yaml")
    write(tmp_path, CONFIG_FILE, "environments: [dev, prd]\n")

    assert list(layering(tmp_path)) == ["web/dev", "web/prd"]
    with pytest.raises(ConfigError, match="known environments: dev, prd"):
        layering(tmp_path, ("stg",))


def test_config_environments_also_restrict_declared_overlays(tmp_path: Path) -> None:
    # a declared overlay for an environment that is not checked is not even looked at
    make_chart(tmp_path, "web", "values-dev.yaml")
    write(
        tmp_path,
        CONFIG_FILE,
        "environments: [dev]\n"
        "charts:\n  web:\n    environments:\n      prd:\n        values: [missing.yaml]\n",
    )

    assert list(layering(tmp_path)) == ["web/dev"]


def test_charts_are_discovered_in_name_order_with_defaults(tmp_path: Path) -> None:
    make_chart(tmp_path, "zeta")
    make_chart(tmp_path, "alpha")
    (tmp_path / "charts" / "not-a-chart").mkdir()

    targets = plan_targets(load_config(tmp_path))

    assert [t.chart.name for t in targets] == ["alpha", "zeta"]
    assert (targets[0].chart.release, targets[0].chart.namespace) == ("alpha", "alpha")


def test_declared_chart_outside_charts_dir(tmp_path: Path) -> None:
    chart = tmp_path / "deploy" / "shop"
    chart.mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML.format(name="shop"), encoding="utf-8")
    (chart / "values-dev.yaml").write_text("a: 1\n", encoding="utf-8")
    write(tmp_path, CONFIG_FILE, "charts:\n  shop:\n    path: deploy/shop\n    namespace: store\n")

    targets = plan_targets(load_config(tmp_path))

    assert [(t.key, t.values, t.chart.namespace) for t in targets] == [
        ("shop/dev", ("deploy/shop/values-dev.yaml",), "store")
    ]


def test_declared_chart_without_chart_yaml_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, CONFIG_FILE, "charts:\n  shop:\n    path: deploy/shop\n")

    with pytest.raises(ConfigError) as caught:
        plan_targets(load_config(tmp_path))

    assert "chart 'shop' has no Chart.yaml" in caught.value.message
    assert "deploy/shop" in str(caught.value)


def test_chart_environments_of_one_chart(tmp_path: Path) -> None:
    make_chart(tmp_path, "web", "dev-values.yaml")
    config = load_config(tmp_path)

    (chart,) = [t.chart for t in plan_targets(config)]

    assert chart_environments(config, chart) == {
        "dev": ("charts/web/values.yaml", "charts/web/dev-values.yaml")
    }


def unread(source: Path) -> dict[str, tuple[str, ...]]:
    return {t.key: overlays_helm_cannot_read(source, t) for t in plan_targets(load_config(source))}


def test_other_environments_overlays_are_unread_unless_something_names_files(
    tmp_path: Path,
) -> None:
    chart = make_chart(tmp_path, "web", "values-dev.yaml", "values-prd.yaml")
    (chart / "templates" / "deploy.yaml").write_text(
        "# securityContext: {readOnlyRootFilesystem: true}, valueFiles\n", encoding="utf-8"
    )
    assert unread(tmp_path) == {"web/dev": ("values-prd.yaml",), "web/prd": ("values-dev.yaml",)}

    # A template that reads the chart's files could print any overlay.
    (chart / "templates" / "files.yaml").write_text('{{ $.Files.Get "x" }}\n', "utf-8")
    assert unread(tmp_path) == {"web/dev": (), "web/prd": ()}

    # So could a values file of the target itself, through tpl: only its environment.
    (chart / "templates" / "files.yaml").unlink()
    write(tmp_path, "env/prd.yaml", 'note: "{{ .Files.Get \\"values-dev.yaml\\" }}"\n')
    write(
        tmp_path,
        "pipeline.yaml",
        "charts:\n  web:\n    path: charts/web\n"
        "    environments:\n      prd:\n        values: [env/prd.yaml]\n",
    )
    assert unread(tmp_path) == {"web/dev": ("values-prd.yaml",), "web/prd": ()}


def test_a_linked_folder_in_the_chart_leaves_every_overlay_read(tmp_path: Path) -> None:
    chart = make_chart(tmp_path, "web", "values-dev.yaml", "values-prd.yaml")
    (tmp_path / "elsewhere").mkdir()
    (chart / "templates" / "more").symlink_to(tmp_path / "elsewhere")
    assert unread(tmp_path) == {"web/dev": (), "web/prd": ()}
