"""Rendered manifests as data: which resources a file holds and which template made each."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

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
        resources.append(_resource(document, source["path"].strip() if source else None))
    return resources


def _resource(document: dict[str, Any], template: str | None) -> Resource:
    metadata = document.get("metadata") or {}
    return Resource(
        kind=str(document.get("kind", "")),
        name=str(metadata.get("name", "")),
        namespace=metadata.get("namespace"),
        template=template,
        document=document,
    )


class Memo(Protocol):
    """Where parsed manifests are remembered between runs (pipeline.step_cache.StepCache)."""

    def remember_key(self, kind: str, **described: Any) -> str: ...

    def recall(self, key: str) -> Any: ...

    def remember(self, key: str, value: Any) -> None: ...


RESOURCES_FORMAT = 1  # bump when what parse_resources keeps of a document changes


def parse_resources_remembered(text: str, memo: Memo | None) -> list[Resource]:
    """parse_resources, remembered by the text's digest when the documents are plain JSON
    data (what Kubernetes accepts anyway): JSON reads back in a tenth of YAML's time. A
    document with anything JSON cannot hold exactly (a date, a number as a key, NaN) is
    parsed again each time, never approximated."""
    if memo is None:
        return parse_resources(text)
    key = memo.remember_key(
        "rendered-resources",
        parser=f"pyyaml {yaml.__version__} {SafeLoader.__name__} {RESOURCES_FORMAT}",
        digest=hashlib.sha256(text.encode()).hexdigest(),
    )
    remembered = memo.recall(key)
    if isinstance(remembered, list):
        return [_resource(entry["document"], entry["template"]) for entry in remembered]
    resources = parse_resources(text)
    stored = [{"document": r.document, "template": r.template} for r in resources]
    try:
        exact = json.loads(json.dumps(stored, allow_nan=False)) == stored and all(
            _plain(r.document) for r in resources
        )
    except (TypeError, ValueError):
        exact = False
    if exact:
        memo.remember(key, stored)
    return resources


def _plain(value: object) -> bool:
    """JSON's own types all the way down, keys strings: what reads back equal and alike."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


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
