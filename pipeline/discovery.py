"""What there is to check: charts, their environments and values layering.

Overlays are found in the chart (`values-<env>.yaml` or `<env>-values.yaml`)
and declared in `pipeline.yaml` for overlays kept elsewhere (for example
`infra/clusters/<env>/<chart>-values.yaml`). Helm's order is kept: the chart's
`values.yaml` first, then the in-chart overlay, then declared files; later wins.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from pipeline.config import ChartConfig, Config
from pipeline.errors import ConfigError
from pipeline.manifests import load_yaml

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


# Never a place for charts of the repository's own: tool caches, virtualenvs, vendored JS.
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages"})


def discover_charts(config: Config) -> list[ChartConfig]:
    """pipeline.yaml's charts, and every other chart found under `discovery.paths`."""
    charts = dict(config.charts)
    configured_paths = {PurePosixPath(c.path) for c in charts.values()}
    found = [p for p in find_chart_dirs(config) if PurePosixPath(p) not in configured_paths]
    for path in found:
        name = _chart_name(config.source / path, path)
        if name in charts:
            # Two charts of one name (apps/web, infra/web): the path tells them apart.
            name = _dns_label(path.replace("/", "-"))
        charts.setdefault(name, ChartConfig(name=name, path=path, release=name, namespace=name))
    for chart in charts.values():
        require_inside(config, chart.path, f"charts.{chart.name}.path")
        if not (config.source / chart.path / "Chart.yaml").is_file():
            raise ConfigError(
                f"chart '{chart.name}' has no Chart.yaml",
                file=config.file or config.source,
                field=f"charts.{chart.name}.path ({chart.path})",
            )
    return [charts[name] for name in sorted(charts)]


def find_chart_dirs(config: Config) -> list[str]:
    """Every chart under `discovery.paths`, relative to the source, in a stable order.

    A chart's own `charts/` folder holds its dependencies, not charts of the repository;
    hidden folders, `discovery.ignore` and SKIPPED_DIRS are not searched, and symbolic links
    are not followed (Argo CD's repo server refuses links that leave the repository).
    """
    found: list[str] = []
    for root in config.discovery.paths:
        base = config.source / root
        if not base.is_dir():
            raise ConfigError(
                "directory does not exist",
                file=config.file or config.source,
                field=f"discovery.paths ({root})",
            )
        for directory, subdirs, files in os.walk(base):
            relative = Path(directory).relative_to(config.source).as_posix()
            if "Chart.yaml" in files:
                found.append(relative)
                subdirs[:] = [d for d in subdirs if d != "charts"]
            subdirs[:] = sorted(
                d
                for d in subdirs
                if not d.startswith(".")
                and d not in SKIPPED_DIRS
                and not _ignored(config, f"{relative}/{d}".removeprefix("./"))
            )
    return sorted(set(found))


def _ignored(config: Config, relative: str) -> bool:
    return any(
        relative == pattern.rstrip("/") or fnmatch.fnmatch(relative, pattern)
        for pattern in config.discovery.ignore
    )


def _chart_name(chart_dir: Path, path: str) -> str:
    """The chart's own name (Chart.yaml `name`), else its folder's, as a DNS label."""
    try:
        metadata = load_yaml((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        metadata = None  # the render step reports the file itself
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(name, str) and _dns_label(name) == name:
        return name
    return _dns_label(PurePosixPath(path).name if path != "." else chart_dir.resolve().name)


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:63].strip("-") or "chart"


def require_inside(config: Config, relative: str, field: str) -> None:
    """A path from configuration must stay in the repository, symbolic links resolved.

    Argo CD's repo server refuses paths and links that leave the repository, so a render
    that reads one here would pass CI and fail in the cluster.
    """
    source = config.source.resolve()
    target = (config.source / relative).resolve()
    if target != source and source not in target.parents:
        raise ConfigError(
            f"{relative!r} resolves outside the repository ({target}); Argo CD refuses such "
            "paths: keep the file in the repository",
            file=config.file or config.source,
            field=field,
        )


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


# `.Files`, `$.Files`, `index . "Files"`; not readOnlyRootFilesystem or valueFiles.
_NAMES_FILES = re.compile(rb"\bFiles\b")


def overlays_helm_cannot_read(
    source: Path, target: RenderTarget, seen: dict[Path, bool] | None = None
) -> tuple[str, ...]:
    """The chart's in-chart overlays of other environments (chart-relative names) that helm
    cannot read while it renders or lints `target`: it loads them only into `.Files`, so
    unless a file of the chart, or a values file of `target` (through `tpl`), names `Files`,
    their content cannot change what it prints. () when any does, or cannot be read.

    `seen` keeps each chart folder's verdict for the other environments of one run.
    """
    chart_dir = source / target.chart.path
    mine = set(target.values)
    others = sorted(
        name
        for name in in_chart_overlays(chart_dir).values()
        if target.chart.file(name) not in mine
    )
    if not others:
        return ()
    seen = {} if seen is None else seen
    if chart_dir not in seen:
        files = _chart_files(chart_dir)
        seen[chart_dir] = files is None or _names_files(files)
    if seen[chart_dir] or _names_files([source / values for values in target.values]):
        return ()
    return tuple(others)


def _chart_files(chart_dir: Path) -> list[Path] | None:
    """Every file in the chart folder; None when a linked folder is in it (helm follows it;
    so would this, into places not worth judging)."""
    files: list[Path] = []
    for folder, dirs, names in os.walk(chart_dir):
        if any(Path(folder, name).is_symlink() for name in dirs):
            return None
        files += [Path(folder, name) for name in names]
    return files


def _names_files(paths: list[Path]) -> bool:
    """Whether any of `paths` names `Files`, or cannot be read."""
    for path in paths:
        try:
            if _NAMES_FILES.search(path.read_bytes()):
                return True
        except OSError:
            return True
    return False


def chart_environments(config: Config, chart: ChartConfig) -> dict[str, tuple[str, ...]]:
    """Environment name -> values files (relative to source), base first."""
    chart_dir = config.source / chart.path
    base = chart.file("values.yaml")
    base_files = (base,) if (config.source / base).is_file() else ()
    overlays = in_chart_overlays(chart_dir)
    all_names = sorted(set(overlays) | set(chart.environments))
    names = [n for n in all_names if n in config.environments] if config.environments else all_names
    environments: dict[str, tuple[str, ...]] = {}
    for env in names:
        files = list(base_files)
        if env in overlays:
            files.append(chart.file(overlays[env]))
        for in_chart in files:  # a symbolic link in the chart may point anywhere
            require_inside(config, in_chart, f"charts.{chart.name} ({in_chart})")
        declared = chart.environments.get(env)
        for value_file in declared.values if declared else ():
            field = f"charts.{chart.name}.environments.{env}.values"
            require_inside(config, value_file, field)
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
