"""Rendered manifests as data: which resources a file holds and which template made each."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

# libyaml when PyYAML was built with it: rendered charts run to thousands of lines.
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader, C or Python


@lru_cache(maxsize=1024)
def load_values_text(text: str) -> Any:
    """A values file's content, parsed once per distinct text in a process (a chart's
    values.yaml is read for each of its environments). Shared: callers must not change it;
    a YAML error is raised again for each call."""
    return load_yaml(text)


_SOURCE = re.compile(r"^# Source: (?P<path>.+)$", re.MULTILINE)
_SEPARATOR = re.compile(r"^---\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    namespace: str | None
    template: str | None  # path helm printed in "# Source:", relative to the chart's parent
    document: Mapping[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def split_documents(text: str) -> list[str]:
    return [doc for doc in _SEPARATOR.split(text) if doc.strip()]


def parse_resources(text: str) -> list[Resource]:
    resources: list[Resource] = []
    for chunk in split_documents(text):
        source = _SOURCE.search(chunk)
        document = load_yaml(chunk)
        if not isinstance(document, dict):
            continue
        metadata = document.get("metadata") or {}
        resources.append(
            Resource(
                kind=str(document.get("kind", "")),
                name=str(metadata.get("name", "")),
                namespace=metadata.get("namespace"),
                template=source["path"].strip() if source else None,
                document=document,
            )
        )
    return resources


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's values layering: maps merge recursively; scalars and lists from later files win."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merged_values(documents: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for document in documents:
        merged = deep_merge(merged, document)
    return merged


def not_utf8(name: str, error: UnicodeDecodeError) -> str:
    """What to say about a file that is not UTF-8 (Helm and Argo CD read only UTF-8)."""
    return f"{name} is not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8"
