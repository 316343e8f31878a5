"""Test helpers shipped with the package, so downstream tests can use them too."""

from __future__ import annotations

from pipeline.testing.dagger_capture import (
    CapturedQuery,
    QueryRecorder,
    UnbuildableQueryError,
    capture,
    load_engine_schema,
    run_offline,
)

__all__ = [
    "CapturedQuery",
    "QueryRecorder",
    "UnbuildableQueryError",
    "capture",
    "load_engine_schema",
    "run_offline",
]
