"""`seal`: a SealedSecret manifest the controller decrypts, or one key updated in a file.

A new manifest has kubeseal's shape (metadata with the scope annotations, encryptedData,
a template carrying the Secret's name, namespace, annotations and type). `--merge-into`
edits the file's text where the key's value is, so every other byte stays as it was.
Values are read from references at the last moment, sealed, and never written anywhere
in the clear: not to output, errors or logs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import ConfigError, PipelineError
from pipeline.references import read_reference
from pipeline.secrets import kubeseal_format, options
from pipeline.secrets.certificates import certificate_for_sealing, read_certificate_bytes
from pipeline.secrets.options import SealOptions, ValueSource
from pipeline.secrets.scopes import API_VERSION, KIND, SCOPE_ANNOTATIONS, Scope, scope_of


@dataclass(frozen=True)
class Sealed:
    text: str  # the whole manifest, or the whole merged file
    name: str
    namespace: str
    scope: Scope
    keys: tuple[str, ...]
    target: Path | None  # where it was written; None for stdout


def read_value(source: ValueSource) -> bytes:
    """The plaintext behind a reference: an environment variable, or a file's exact bytes."""
    return read_reference(source.reference, f"--value {source.key}")


def seal(opts: SealOptions, now: dt.datetime | None = None) -> Sealed:
    """Seal the values as options say, and write the result (a file, the merged file or none)."""
    certificate = certificate_for_sealing(
        read_certificate_bytes(opts.cert), opts.cert, now or dt.datetime.now(dt.UTC)
    )
    keys = [v.key for v in opts.values]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"key {repeated[0]} is given twice", field="--value")
    if opts.merge_into is not None:
        text = _read_manifest(opts.merge_into)
        found = locate(text, str(opts.merge_into), opts.name)
        _agree(found, opts)
        label = found.scope.label(found.namespace, found.name)
        sealed = {
            v.key: kubeseal_format.seal_text(certificate.public_key, read_value(v), label)
            for v in opts.values
        }
        merged = merge(text, found, sealed)
        _replace_file(opts.merge_into, merged)
        return Sealed(
            merged, found.name, found.namespace, found.scope, tuple(keys), opts.merge_into
        )
    scope = opts.scope or Scope.STRICT
    if not opts.name:
        raise ConfigError("is required: the name of the Secret to seal", field="--name")
    if not opts.namespace and scope is not Scope.CLUSTER_WIDE:
        raise ConfigError(
            f"is required for a {scope.value} SealedSecret: its values are sealed for it",
            field="--namespace",
        )
    namespace = opts.namespace or ""
    label = scope.label(namespace, opts.name)
    sealed = {
        v.key: kubeseal_format.seal_text(certificate.public_key, read_value(v), label)
        for v in opts.values
    }
    text = manifest(opts.name, namespace, scope, opts.secret_type, sealed)
    if opts.output is not None:
        _replace_file(opts.output, text)
    return Sealed(text, opts.name, namespace, scope, tuple(keys), opts.output)


def manifest(
    name: str, namespace: str, scope: Scope, secret_type: str, sealed: Mapping[str, str]
) -> str:
    """A SealedSecret as kubeseal writes it (keys sorted, as Go writes a map)."""

    def metadata() -> dict[str, object]:
        # A fresh mapping each time: a shared one would be written as a YAML alias.
        fields: dict[str, object] = {}
        if scope.annotations():
            fields["annotations"] = scope.annotations()
        fields["name"] = name
        if namespace:
            fields["namespace"] = namespace
        return fields

    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(),
        "spec": {
            "encryptedData": dict(sorted(sealed.items())),
            "template": {"metadata": metadata(), "type": secret_type},
        },
    }
    return yaml.safe_dump(document, sort_keys=False, width=1 << 16)


# --- merge-into ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """The SealedSecret to update in a file's text, and where its encryptedData is."""

    file: str
    name: str
    namespace: str
    scope: Scope
    encrypted_data: yaml.MappingNode


def _read_manifest(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read it: {exc.strerror}", file=path, field="--merge-into"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", file=path, field="--merge-into") from None


def _get(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found: yaml.Node = value_node
            return found
    return None


def _text(node: yaml.Node | None) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _annotations(metadata: yaml.Node | None) -> dict[str, str]:
    found = _get(metadata, "annotations") if metadata is not None else None
    if not isinstance(found, yaml.MappingNode):
        return {}
    return {
        k.value: v.value
        for k, v in found.value
        if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)
    }


def locate(text: str, file: str, name: str | None) -> Located:
    try:
        documents = [d for d in yaml.compose_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(exc, 'problem', None) or exc}",
            file=file,
            line=mark.line + 1 if mark else None,
        ) from None
    candidates = [d for d in documents if _text(_get(d, "kind")) == KIND]
    if name is not None:
        candidates = [
            d for d in candidates if _text(_get(_get(d, "metadata") or d, "name")) == name
        ]
    if not candidates:
        named = f" named {name}" if name else ""
        raise ConfigError(f"no SealedSecret{named} in the file", file=file, field="--merge-into")
    if len(candidates) > 1:
        raise ConfigError(
            f"{len(candidates)} SealedSecrets in the file: pass --name to pick one",
            file=file,
            field="--merge-into",
        )
    document = candidates[0]
    metadata = _get(document, "metadata")
    found_name = _text(_get(metadata, "name")) if metadata else None
    if not found_name:
        raise ConfigError("the SealedSecret has no metadata.name", file=file, line=_line(document))
    encrypted = _get(_get(document, "spec") or document, "encryptedData")
    if not isinstance(encrypted, yaml.MappingNode) or encrypted.flow_style or not encrypted.value:
        raise ConfigError(
            "spec.encryptedData is not a block mapping with at least one key: write the "
            "manifest anew with `seal --output`",
            file=file,
            line=_line(encrypted or document),
        )
    return Located(
        file=file,
        name=found_name,
        namespace=_text(_get(metadata, "namespace")) or "" if metadata else "",
        scope=scope_of(_annotations(metadata)),
        encrypted_data=encrypted,
    )


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _agree(found: Located, opts: SealOptions) -> None:
    """Flags given with --merge-into must say what the file says: values seal for the file's."""
    given = {"--name": opts.name, "--namespace": opts.namespace}
    actual = {"--name": found.name, "--namespace": found.namespace}
    for flag, value in given.items():
        if value is not None and value != actual[flag]:
            raise ConfigError(
                f"{flag} {value} differs from the file's {actual[flag] or '(none)'}",
                file=found.file,
                field="--merge-into",
            )
    if opts.scope is not None and opts.scope is not found.scope:
        raise ConfigError(
            f"--scope {opts.scope.value} differs from the file's {found.scope.value}",
            file=found.file,
            field="--merge-into",
        )
    if found.scope is not Scope.CLUSTER_WIDE and not found.namespace:
        raise ConfigError(
            f"a {found.scope.value} SealedSecret needs metadata.namespace to seal for",
            file=found.file,
            field="--merge-into",
        )


def _yaml_key(key: str) -> str:
    """The key as YAML text that reads back as the same string."""
    loaded = yaml.safe_load(f"{key}: x")
    return key if isinstance(loaded, dict) and list(loaded) == [key] else f'"{key}"'


def merge(text: str, found: Located, sealed: Mapping[str, str]) -> str:
    """The text with each key's value replaced or added; nothing else changes."""
    pairs = found.encrypted_data.value
    indent = pairs[0][0].start_mark.column
    existing = [k.value for k, _ in pairs]
    in_order = existing == sorted(existing)
    edits: list[tuple[int, int, str]] = []
    for key, value in sealed.items():
        match = next((v for k, v in pairs if k.value == key), None)
        if match is not None:
            quote = (
                match.style
                if isinstance(match, yaml.ScalarNode)
                and match.style
                in {
                    '"',
                    "'",
                }
                else ""
            )
            edits.append((match.start_mark.index, match.end_mark.index, f"{quote}{value}{quote}"))
            continue
        line = f"{' ' * indent}{_yaml_key(key)}: {value}\n"
        later = [k for k, _ in pairs if k.value > key] if in_order else []
        if later:
            at = later[0].start_mark.index - later[0].start_mark.column
        else:
            end = pairs[-1][1].end_mark.index
            newline = text.find("\n", end)
            at = len(text) if newline < 0 else newline + 1
            if newline < 0:
                line = "\n" + line
        edits.append((at, at, line))
    merged = text
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        merged = merged[:start] + replacement + merged[end:]
    _check_merge(text, merged, found, sealed)
    return merged


def _check_merge(before: str, after: str, found: Located, sealed: Mapping[str, str]) -> None:
    """The merged file reads back as the old one with exactly these keys' values changed."""

    def documents(text: str) -> list[object]:
        return list(yaml.safe_load_all(text))

    old, new = documents(before), documents(after)
    expected = []
    for document in old:
        if (
            isinstance(document, dict)
            and document.get("kind") == KIND
            and (document.get("metadata") or {}).get("name") == found.name
        ):
            document["spec"]["encryptedData"].update(sealed)
        expected.append(document)
    if new != expected:
        raise ConfigError(
            "the key could not be updated without changing other content; write the "
            "manifest anew with `seal --output`",
            file=found.file,
            field="--merge-into",
        )


def _replace_file(path: Path, text: str) -> None:
    """Written beside the file and renamed over it: a reader never sees half a manifest."""
    path = path.resolve()
    if path.is_dir():
        raise ConfigError("is a directory", file=path, field="--output")
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(staging).chmod(mode)
        Path(staging).replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write it: {exc.strerror}", file=path) from None


def describe(sealed: Sealed) -> dict[str, object]:
    """What `seal` answers (never a value): the name, namespace, scope and keys sealed."""
    return {
        "name": sealed.name,
        "namespace": sealed.namespace or None,
        "scope": sealed.scope.value,
        "keys": list(sealed.keys),
        "file": str(sealed.target) if sealed.target else None,
        "scope_annotations": [a for a in SCOPE_ANNOTATIONS if a in sealed.scope.annotations()],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipeline.secrets.sealing`: what the Dagger module's seal step runs."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.secrets.sealing")
    options.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        sealed = seal(options.seal_options(args))
    except PipelineError as error:
        sys.stderr.write(f"{error}\n")
        return error.exit_code
    if sealed.target is None:
        sys.stdout.write(sealed.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
