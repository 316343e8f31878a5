"""Plaintext secrets in values files and templates, found by detect-secrets (as a library).

Every detect-secrets plugin runs with its default filters (so `# pragma: allowlist secret`
on a line works as it does for detect-secrets itself), except the public-IP one: addresses
in NetworkPolicies and Services are configuration, not credentials. A value that is itself
a kubeseal ciphertext is not a plaintext secret, whatever its entropy, and a key that names
a Secret (`tlsSecretName: chat-tls`, `existingSecret: db`) holds a reference, not a secret. A
finding names the file, line and kind of secret; the value never leaves this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.secrets.kubeseal_format import looks_sealed

NOT_SECRETS = frozenset({"Public IP (ipv4)"})
KEYWORD = "Secret Keyword"
# Helm's idioms for the name of a Secret the chart reads: `<x>SecretName`, `existingSecret`.
_SECRET_REFERENCE_KEY = re.compile(
    r"^\s*-?\s*[\"']?[\w.-]*(secretname|secret_name|existingsecret|secretref)[\"']?\s*:",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Detected:
    file: str  # relative to the source, as given
    line: int
    type: str  # detect-secrets' name for it: "AWS Access Key", "Secret Keyword", ...


def scan(source: Path, files: Sequence[str]) -> Iterator[Detected]:
    from detect_secrets.core.plugins.util import (  # noqa: PLC0415 - the secrets extra
        get_mapping_from_secret_type_to_class,
    )
    from detect_secrets.core.scan import scan_file  # noqa: PLC0415
    from detect_secrets.settings import transient_settings  # noqa: PLC0415

    mapping: dict[str, type] = get_mapping_from_secret_type_to_class()
    plugins = [
        {"name": plugin.__name__}
        for secret_type, plugin in sorted(mapping.items())
        if secret_type not in NOT_SECRETS
    ]
    with transient_settings({"plugins_used": plugins}):
        for relative in files:
            seen: set[tuple[int, str]] = set()
            lines: list[str] | None = None
            for found in scan_file(str(source / relative)):
                value = found.secret_value or ""
                if looks_sealed(value.strip("\"'")):
                    continue
                if found.type == KEYWORD:
                    if lines is None:
                        lines = _lines(source / relative)
                    text = lines[found.line_number - 1] if found.line_number <= len(lines) else ""
                    if _SECRET_REFERENCE_KEY.match(text):
                        continue
                key = (found.line_number, found.type)
                if key not in seen:
                    seen.add(key)
                    yield Detected(relative, found.line_number, found.type)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
