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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.secrets.kubeseal_format import looks_sealed

if TYPE_CHECKING:
    from pipeline.step_cache import StepCache

NOT_SECRETS = frozenset({"Public IP (ipv4)"})
# Bump when what this module keeps of detect-secrets' findings changes: remembered scans
# made by the previous rules are then never reused.
SCAN_RULES = 1
_NO_CONTENT = frozenset({"absent", "unreadable"})  # step_cache.file_digest of no file
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


def scan(source: Path, files: Sequence[str], memo: StepCache | None = None) -> Iterator[Detected]:
    """Every plaintext-secret finding in `files`, in order (see `scan_by_file`)."""
    by_file = scan_by_file(source, files, memo)
    for relative in files:
        yield from by_file[relative]


def scan_by_file(
    source: Path, files: Sequence[str], memo: StepCache | None = None
) -> dict[str, list[Detected]]:
    """The plaintext-secret findings of each of `files`.

    With a `memo`, a file's findings are remembered by its content and what detect-secrets
    reads of its name (the extension picks the parser; lock, baseline and swagger files are
    filtered), so an unchanged file, or an identical copy, is not scanned again; when every
    file is remembered, detect-secrets (100 ms to import) is not even loaded.
    """
    found: dict[str, list[tuple[int, str]]] = {}
    keys: dict[str, str] = {}
    if memo is not None:
        scanner = _scanner_identity()
        for relative in files:
            path = source / relative
            digest = memo.file_digest(path)
            if digest in _NO_CONTENT:
                continue
            keys[relative] = key = memo.remember_key(
                "secrets-scan",
                scanner=scanner,
                name=path.name,
                # detect-secrets' swagger filter: its pattern `.*swagger.*` searched in the path.
                swagger="swagger" in str(path),
                digest=digest,
            )
            remembered = memo.recall(key)
            if isinstance(remembered, list):
                found[relative] = [(int(line), str(kind)) for line, kind in remembered]
    pending = [relative for relative in files if relative not in found]
    if pending:
        found.update(_scan_files(source, pending, keys, memo))
    return {
        relative: [Detected(relative, line, kind) for line, kind in found[relative]]
        for relative in files
    }


def _scan_files(
    source: Path, files: Sequence[str], keys: Mapping[str, str], memo: StepCache | None
) -> dict[str, list[tuple[int, str]]]:
    from detect_secrets.core.scan import scan_file  # noqa: PLC0415 - the secrets extra
    from detect_secrets.settings import transient_settings  # noqa: PLC0415

    found: dict[str, list[tuple[int, str]]] = {}
    by_key: dict[str, list[tuple[int, str]]] = {}  # identical copies: scanned once
    with transient_settings({"plugins_used": plugins_used(), "filters_used": filters_used()}):
        for relative in files:
            key = keys.get(relative)
            if key is not None and key in by_key:
                found[relative] = by_key[key]
                continue
            found[relative] = list(_scan_one(source / relative, scan_file))
            if key is not None and memo is not None:
                by_key[key] = found[relative]
                memo.remember(key, [[line, kind] for line, kind in found[relative]])
    return found


def plugins_used() -> list[dict[str, str]]:
    """Every detect-secrets plugin of this version but those in NOT_SECRETS, as its settings
    name them."""
    from detect_secrets.core.plugins.util import (  # noqa: PLC0415 - the secrets extra
        get_mapping_from_secret_type_to_class,
    )

    mapping: dict[str, type] = get_mapping_from_secret_type_to_class()
    return [
        {"name": plugin.__name__}
        for secret_type, plugin in sorted(mapping.items())
        if secret_type not in NOT_SECRETS
    ]


def filters_used() -> list[dict[str, str]]:
    """detect-secrets' default filters, with `detect_filters`' faster equivalents in place of
    the ones they stand in for (same verdicts: tests/test_secrets.py compares)."""
    from detect_secrets.settings import Settings  # noqa: PLC0415

    from pipeline.secrets import detect_filters  # noqa: PLC0415 - imports detect-secrets

    stock = sorted(set(Settings().filters) - Settings.DEFAULT_FILTERS)
    replaced = {detect_filters.STOCK_INDIRECT_REFERENCE: detect_filters.INDIRECT_REFERENCE}
    return [{"path": replaced.get(path, path)} for path in stock]


def _scan_one(path: Path, scan_file: Callable[[str], Iterable[Any]]) -> Iterator[tuple[int, str]]:
    seen: set[tuple[int, str]] = set()
    lines: list[str] | None = None
    for found in scan_file(str(path)):
        value = found.secret_value or ""
        if looks_sealed(value.strip("\"'")):
            continue
        if found.type == KEYWORD:
            if lines is None:
                lines = _lines(path)
            text = lines[found.line_number - 1] if found.line_number <= len(lines) else ""
            if _SECRET_REFERENCE_KEY.match(text):
                continue
        key = (found.line_number, found.type)
        if key not in seen:
            seen.add(key)
            yield key


def _scanner_identity() -> dict[str, object]:
    """What decides a file's findings besides its content and name: every plugin of this
    detect-secrets version (`plugins_used` above) but those in NOT_SECRETS, and our rules."""
    from importlib.metadata import version  # noqa: PLC0415

    return {
        "detect-secrets": version("detect-secrets"),
        "not": sorted(NOT_SECRETS),
        "rules": SCAN_RULES,
    }


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
