"""`seal`'s options, shared by the CLI verb and the container step (no cryptography here).

Values are named by reference only, `KEY=env:NAME` or `KEY=file:PATH`: a value on the
command line would sit in shell history and in every process listing.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.secrets.scopes import Scope

# A Secret's data keys (k8s.io/apimachinery IsConfigMapKey).
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_KEY_LENGTH = 253
# A DNS-1123 subdomain: what Kubernetes accepts as a Secret's name and a namespace's.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class ValueSource:
    key: str
    reference: str  # env:NAME or file:PATH; never the value


@dataclass(frozen=True)
class SealOptions:
    cert: str  # a file or an https:// URL
    values: tuple[ValueSource, ...]
    name: str | None = None
    namespace: str | None = None
    scope: Scope | None = None  # None: strict, or the scope of the file merged into
    secret_type: str = "Opaque"  # noqa: S105 - the Secret type, not a password
    merge_into: Path | None = None
    output: Path | None = None


def value_source(text: str) -> ValueSource:
    """argparse type for `--value KEY=env:NAME|file:PATH`; the text is never repeated."""
    key, equals, reference = text.partition("=")
    scheme, colon, target = reference.partition(":")
    if not equals or scheme not in {"env", "file"} or not colon or not target:
        raise argparse.ArgumentTypeError(
            "--value takes KEY=env:NAME or KEY=file:PATH (a reference, never the value)"
        )
    if not SECRET_KEY.match(key) or len(key) > MAX_KEY_LENGTH or key in {".", ".."}:
        raise argparse.ArgumentTypeError(
            "--value: the key must be letters, digits, '-', '_' or '.' (a Secret data key)"
        )
    return ValueSource(key, reference)


def object_name(text: str) -> str:
    if not _OBJECT_NAME.match(text) or len(text) > MAX_KEY_LENGTH:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Kubernetes name (lower-case letters, digits, '-' and '.')"
        )
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cert",
        required=True,
        metavar="FILE|URL",
        help="the sealed-secrets controller's certificate: a PEM file or an https:// URL "
        "(kubeseal --fetch-cert)",
    )
    parser.add_argument(
        "--value",
        action="append",
        type=value_source,
        required=True,
        dest="values",
        metavar="KEY=REF",
        help="a data key and where its value is read: KEY=env:NAME or KEY=file:PATH (the "
        "file's exact bytes); repeatable",
    )
    parser.add_argument("--name", type=object_name, help="the Secret's name")
    parser.add_argument(
        "--namespace",
        type=object_name,
        help="the namespace it is unsealed in (required unless --scope cluster-wide)",
    )
    parser.add_argument(
        "--scope",
        choices=[scope.value for scope in Scope],
        help="strict (namespace/name, the default), namespace-wide or cluster-wide",
    )
    parser.add_argument("--type", default="Opaque", dest="secret_type", help="the Secret's type")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--merge-into",
        type=Path,
        metavar="FILE",
        help="update these keys of the SealedSecret in FILE, every other byte unchanged",
    )
    where.add_argument(
        "--output", type=Path, metavar="FILE", help="write the manifest here (default: stdout)"
    )


def seal_options(args: argparse.Namespace) -> SealOptions:
    return SealOptions(
        cert=args.cert,
        values=tuple(args.values),
        name=args.name,
        namespace=args.namespace,
        scope=Scope(args.scope) if args.scope else None,
        secret_type=args.secret_type,
        merge_into=args.merge_into,
        output=args.output,
    )
