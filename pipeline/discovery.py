"""What there is to check: charts, their environments and values layering.

Overlays are found in the chart (`values-<env>.yaml` or `<env>-values.yaml`)
and declared in `pipeline.yaml` for overlays kept elsewhere (for example
`infra/clusters/<env>/<chart>-values.yaml`). Helm's order is kept: the chart's
`values.yaml` first, then the in-chart overlay, then declared files; later wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ChartConfig, Config
from pipeline.errors import ConfigError

BASE_ENVIRONMENT = "default"  # a chart without overlays renders once, with its values.yaml
_OVERLAY = re.compile(r"^(?:values-(?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)-values)\.ya?ml$")


@dataclass(frozen=True)
class RenderTarget:
    chart: ChartConfig
    environment: str
    values: tuple[str, ...]  # relative to the source root, in Helm's layering order

    @property
    def key(self) -> str:
        return f"{self.chart.name}/{self.environment}"

    @property
    def rendered_path(self) -> str:
        return f"rendered/{self.chart.name}/{self.environment}.yaml"


def discover_charts(config: Config) -> list[ChartConfig]:
    charts = dict(config.charts)
    charts_dir = config.source / "charts"
    if charts_dir.is_dir():
        for chart_yaml in sorted(charts_dir.glob("*/Chart.yaml")):
            name = chart_yaml.parent.name
            charts.setdefault(
                name, ChartConfig(name=name, path=f"charts/{name}", release=name, namespace=name)
            )
    for chart in charts.values():
        if not (config.source / chart.path / "Chart.yaml").is_file():
            raise ConfigError(
                f"chart '{chart.name}' has no Chart.yaml",
                file=config.file or config.source,
                field=f"charts.{chart.name}.path ({chart.path})",
            )
    return [charts[name] for name in sorted(charts)]


def in_chart_overlays(chart_dir: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for file in sorted(chart_dir.iterdir()):
        match = _OVERLAY.match(file.name)
        if not (match and file.is_file()):
            continue
        env = match["a"] or match["b"]
        if env in found:
            raise ConfigError(
                f"two overlays for environment '{env}': {found[env]} and {file.name}; keep one",
                file=chart_dir,
            )
        found[env] = file.name
    return found


def chart_environments(config: Config, chart: ChartConfig) -> dict[str, tuple[str, ...]]:
    """Environment name -> values files (relative to source), base first."""
    chart_dir = config.source / chart.path
    base = f"{chart.path}/values.yaml"
    base_files = (base,) if (config.source / base).is_file() else ()
    overlays = in_chart_overlays(chart_dir)
    all_names = sorted(set(overlays) | set(chart.environments))
    names = [n for n in all_names if n in config.environments] if config.environments else all_names
    environments: dict[str, tuple[str, ...]] = {}
    for env in names:
        files = list(base_files)
        if env in overlays:
            files.append(f"{chart.path}/{overlays[env]}")
        declared = chart.environments.get(env)
        for value_file in declared.values if declared else ():
            if not (config.source / value_file).is_file():
                raise ConfigError(
                    f"values file for chart '{chart.name}' environment '{env}' does not exist: "
                    f"{value_file}",
                    file=config.file,
                    field=f"charts.{chart.name}.environments.{env}.values",
                )
            files.append(value_file)
        environments[env] = tuple(files)
    if not all_names:
        environments[BASE_ENVIRONMENT] = base_files
    return environments


def plan_targets(config: Config, requested: Sequence[str] = ()) -> list[RenderTarget]:
    targets = [
        RenderTarget(chart, env, files)
        for chart in discover_charts(config)
        for env, files in chart_environments(config, chart).items()
    ]
    _check_requested(requested, {t.environment for t in targets})
    if requested:
        targets = [t for t in targets if t.environment in requested]
    return targets


def _check_requested(requested: Iterable[str], known: set[str]) -> None:
    unknown = sorted(set(requested) - known)
    if unknown:
        listing = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"unknown environment {', '.join(repr(u) for u in unknown)}; known environments: "
            f"{listing}",
            field="--env",
        )
