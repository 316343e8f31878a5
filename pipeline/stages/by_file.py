"""Tool outputs that are a verdict per input file: split into each file's part, joined back.

A step with `by_file` (pipeline.model.ByFile) names its output here. `split` returns each
file's entries, exactly as the tool printed them, or None when the output is not of the
expected shape (nothing is then remembered); `join` prints entries as the tool would have
printed them had it checked those files in one run. Each format is the same small pair.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

Entries = dict[str, list[Any]]  # file, as given on the command line -> its entries


@dataclass(frozen=True)
class Format:
    split: Callable[[str, Collection[str]], Entries | None]
    join: Callable[[Sequence[Any]], str]


def _group(entries: object, files: Collection[str]) -> Entries | None:
    """Entries by their `filename`; None unless every entry is an object naming one of
    `files`. A file without entries (no resources in it) gets an empty list."""
    if not isinstance(entries, list):
        return None
    grouped: Entries = {file: [] for file in files}
    for entry in entries:
        file = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(file, str) or file not in grouped:
            return None
        grouped[file].append(entry)
    return grouped


def _load(stdout: str) -> object:
    try:
        return json.loads(stdout)
    except ValueError:
        return None


# kubeconform -output json -summary: {"resources": [...], "summary": {...}}.
_KUBECONFORM_COUNTS = {
    "statusValid": "valid",
    "statusInvalid": "invalid",
    "statusError": "errors",
    "statusSkipped": "skipped",
}


def _kubeconform_split(stdout: str, files: Collection[str]) -> Entries | None:
    document = _load(stdout)
    if not isinstance(document, dict):
        return None
    return _group(document.get("resources"), files)


def _kubeconform_join(entries: Sequence[Any]) -> str:
    summary = dict.fromkeys(_KUBECONFORM_COUNTS.values(), 0)
    for entry in entries:
        counted = _KUBECONFORM_COUNTS.get(entry.get("status", ""))
        if counted is not None:
            summary[counted] += 1
    return json.dumps({"resources": list(entries), "summary": summary}, indent=2) + "\n"


# conftest test --output json: a list of one object per file and namespace.
def _conftest_split(stdout: str, files: Collection[str]) -> Entries | None:
    return _group(_load(stdout), files)


def _conftest_join(entries: Sequence[Any]) -> str:
    return json.dumps(list(entries), indent="\t") + "\n"


FORMATS = {
    "kubeconform": Format(_kubeconform_split, _kubeconform_join),
    "conftest": Format(_conftest_split, _conftest_join),
}
