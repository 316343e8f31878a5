"""Secrets by reference on this machine: `env:NAME` or `file:PATH`, read only when needed.

One reader for every caller (the local runner's secret variables, `seal`'s values, a
registry password), so each says the same thing when a reference cannot be read, and none
of them ever repeats the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import ConfigError


def read_reference(reference: str, field: str) -> bytes:
    """The exact bytes behind `reference`; a ConfigError naming `field` when it cannot be read."""
    scheme, _, target = reference.partition(":")
    if scheme == "env":
        value = os.environ.get(target)
        if value is None:
            raise ConfigError(f"environment variable {target} is not set", field=field)
        return value.encode()
    path = Path(target).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the secret's file: {exc.strerror}", file=path, field=field
        ) from None


def read_reference_text(reference: str, field: str) -> str:
    """As text, without the file's final newline (editors add one; passwords have none)."""
    try:
        return read_reference(reference, field).decode("utf-8").rstrip("\n")
    except UnicodeDecodeError:
        # The bytes are the secret: say where they are, never what they are.
        raise ConfigError(f"{reference} is not UTF-8 text", field=field) from None
