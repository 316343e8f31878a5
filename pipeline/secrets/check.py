"""validate's `secrets` check: plaintext secrets, and SealedSecrets the controller can open.

Its input is a `plan` (plain JSON: which files to scan for plaintext, which repository files
hold SealedSecrets, the rendered SealedSecrets with where their template is, the allow-list),
so the same function runs in-process on the host and as `python -m pipeline.secrets.check`
in the secrets container under Dagger, printing them as JSON. Findings are plain dicts of
`Finding`'s fields; none carries a value, plaintext or sealed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.secrets import kubeseal_format
from pipeline.secrets.options import SECRET_KEY
from pipeline.secrets.scopes import API_VERSION, KIND, SCOPE_ANNOTATIONS, Scope, scope_of

if TYPE_CHECKING:
    from pipeline.secrets.detect import Detected
    from pipeline.step_cache import StepCache

CHECK = "secrets"
FindingData = dict[str, Any]
LineOf = Callable[[tuple[str, ...]], int | None]


def _finding(message: str, *, rule: str, status: str = "failed", **where: Any) -> FindingData:
    return {"check": CHECK, "message": message, "status": status, "rule": rule, **where}


# --- one SealedSecret ----------------------------------------------------------------------------


class _Judge:
    """The findings about one SealedSecret document."""

    def __init__(
        self,
        document: Mapping[str, Any],
        where: Mapping[str, Any],
        line_of: LineOf,
        key_bytes: int | None,
        modulus: int | None,
    ) -> None:
        self.document = document
        self.where = where
        self.line_of = line_of
        self.key_bytes = key_bytes
        self.modulus = modulus
        self.findings: list[FindingData] = []
        metadata = document.get("metadata")
        self.metadata: Mapping[str, Any] = metadata if isinstance(metadata, dict) else {}
        name = self.metadata.get("name")
        self.name = name if isinstance(name, str) else ""
        self.resource = f"{KIND}/{self.name or '?'}"

    def fail(self, field: tuple[str, ...], message: str, rule: str, status: str = "failed") -> None:
        where = dict(self.where)
        line = self.line_of(field)
        if line is not None:
            where["line"] = line
        self.findings.append(
            _finding(
                f"{'.'.join(field)}: {message}",
                rule=rule,
                status=status,
                resource=self.resource,
                **where,
            )
        )

    def judge(self, default_namespace: str | None) -> list[FindingData]:
        if self.document.get("apiVersion") != API_VERSION:
            self.fail(("apiVersion",), f"is not {API_VERSION}", "sealedsecret-metadata")
        if not self.name:
            self.fail(("metadata", "name"), "is missing", "sealedsecret-metadata")
        scope = self._scope()
        namespace = self.metadata.get("namespace") or default_namespace or ""
        if not isinstance(namespace, str):
            namespace = ""
        if scope is not Scope.CLUSTER_WIDE and not namespace:
            self.fail(
                ("metadata", "namespace"),
                f"is missing: a {scope.value} SealedSecret is sealed for one namespace, and "
                "only metadata.namespace says which",
                "sealedsecret-scope",
                status="warning",
            )
        self._template(scope, namespace)
        spec = self.document.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        if "data" in spec and spec["data"] is not None:
            self.fail(
                ("spec", "data"),
                "is the deprecated single-blob format, which the controller refuses by "
                "default: seal the values again into spec.encryptedData",
                "sealedsecret-value",
            )
        self._values(spec.get("encryptedData"))
        return self.findings

    def _scope(self) -> Scope:
        annotations = self.metadata.get("annotations")
        annotations = annotations if isinstance(annotations, dict) else {}
        for annotation in SCOPE_ANNOTATIONS:
            if annotation in annotations and annotations[annotation] != "true":
                self.fail(
                    ("metadata", "annotations", annotation),
                    f"is {annotations[annotation]!r}: the controller reads only the string "
                    '"true", so this SealedSecret is opened as strict (namespace/name)',
                    "sealedsecret-scope",
                )
        scope = scope_of(annotations)
        if all(annotations.get(a) == "true" for a in SCOPE_ANNOTATIONS):
            self.fail(
                ("metadata", "annotations"),
                "says both namespace-wide and cluster-wide: the controller takes cluster-wide; "
                "keep the one the values were sealed for",
                "sealedsecret-scope",
            )
        return scope

    def _template(self, scope: Scope, namespace: str) -> None:
        spec = self.document.get("spec")
        template = spec.get("template") if isinstance(spec, dict) else None
        template_metadata = template.get("metadata") if isinstance(template, dict) else None
        if not isinstance(template_metadata, dict):
            return
        field = ("spec", "template", "metadata")
        annotations = template_metadata.get("annotations")
        template_scope = scope_of(annotations)
        if template_scope is not scope:
            self.fail(
                (*field, "annotations"),
                f"make the Secret {template_scope.value}, but metadata.annotations make the "
                f"SealedSecret {scope.value}: the values open only under the scope they were "
                "sealed for, and kubeseal writes the same scope in both places",
                "sealedsecret-scope",
            )
        for key, expected in (("name", self.name), ("namespace", namespace)):
            value = template_metadata.get(key)
            if value is not None and expected and value != expected:
                self.fail(
                    (*field, key),
                    f"is {value!r} but the SealedSecret's {key} is {expected!r}: the template "
                    "was copied from another secret, and the controller names the Secret "
                    "after the SealedSecret",
                    "sealedsecret-template",
                )

    def _values(self, encrypted: object) -> None:
        field = ("spec", "encryptedData")
        if not isinstance(encrypted, dict) or not encrypted:
            self.fail(field, "has no values", "sealedsecret-value", status="warning")
            return
        for key, value in encrypted.items():
            where = (*field, str(key))
            if not isinstance(key, str) or not SECRET_KEY.match(key):
                self.fail(where, "is not a valid Secret data key", "sealedsecret-value")
                continue
            problem = self._value_problem(value)
            if problem is not None:
                self.fail(where, problem, "sealedsecret-value")

    def _value_problem(self, value: object) -> str | None:
        blob = kubeseal_format.decode(value)
        if isinstance(blob, str):
            return blob
        layout = kubeseal_format.split(blob)
        if isinstance(layout, str):
            return layout
        size = len(layout.encrypted_key)
        if self.key_bytes is not None:
            if size != self.key_bytes:
                return (
                    f"was sealed for a {size * 8}-bit key, but the certificate's key has "
                    f"{self.key_bytes * 8} bits: sealed for another controller"
                )
            if self.modulus is not None and int.from_bytes(layout.encrypted_key) >= self.modulus:
                return "cannot have been sealed for the certificate's key (above its modulus)"
        elif layout.key_bits not in kubeseal_format.PLAUSIBLE_KEY_BITS:
            return (
                f"has a {size}-byte sealed session key ({layout.key_bits} bits), not the size "
                "of any RSA key the controller uses: the value is damaged or not a sealed value"
            )
        return None


def judge_document(
    document: Mapping[str, Any],
    where: Mapping[str, Any],
    *,
    line_of: LineOf = lambda _field: None,
    default_namespace: str | None = None,
    key_bytes: int | None = None,
    modulus: int | None = None,
) -> list[FindingData]:
    return _Judge(document, where, line_of, key_bytes, modulus).judge(default_namespace)


# --- repository files ----------------------------------------------------------------------------


def _field_lines(
    node: yaml.Node, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], int]]:
    if not isinstance(node, yaml.MappingNode) or len(prefix) > 6:  # noqa: PLR2004 - deep enough
        return
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode):
            path = (*prefix, key.value)
            yield path, key.start_mark.line + 1
            yield from _field_lines(value, path)


def judge_file(
    source: Path, relative: str, key_bytes: int | None, modulus: int | None
) -> list[FindingData]:
    try:
        text = (source / relative).read_text(encoding="utf-8")
        nodes = [n for n in yaml.compose_all(text) if n is not None]
    except (OSError, UnicodeDecodeError) as exc:
        return [_finding(f"cannot read it: {exc}", rule="sealedsecret-metadata", file=relative)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [
            _finding(
                f"invalid YAML: {getattr(exc, 'problem', None) or 'unreadable'}",
                rule="sealedsecret-metadata",
                file=relative,
                line=mark.line + 1 if mark else None,
            )
        ]
    findings: list[FindingData] = []
    for node in nodes:
        document = yaml.safe_load(yaml.serialize(node))
        if not isinstance(document, dict) or document.get("kind") != KIND:
            continue
        lines = dict(_field_lines(node))
        start = node.start_mark.line + 1

        def line_of(
            field: tuple[str, ...], lines: dict[tuple[str, ...], int] = lines, start: int = start
        ) -> int:
            while field and field not in lines:
                field = field[:-1]
            return lines.get(field, start) if field else start

        findings += judge_document(
            document,
            {"file": relative},
            line_of=line_of,
            key_bytes=key_bytes,
            modulus=modulus,
        )
    return findings


# --- the plan ------------------------------------------------------------------------------------


def _allowed(finding: FindingData, allow: Sequence[Mapping[str, Any]]) -> FindingData:
    for entry in allow:
        if not fnmatch.fnmatchcase(finding.get("file") or "", entry["file"]):
            continue
        if entry.get("type") and entry["type"] != finding.get("rule"):
            continue
        if entry.get("line") and entry["line"] != finding.get("line"):
            continue
        return {
            **finding,
            "status": "waived",
            "waiver": f"{entry['reason']} ({entry['source']})",
        }
    return finding


def run_plan(
    plan: Mapping[str, Any],
    source: Path,
    certificate_file: Path | None,
    memo: StepCache | None = None,
    detected: Iterable[Detected] | None = None,
) -> list[FindingData]:
    """Every finding of the secrets check; a certificate problem is a finding too.

    `memo` remembers each scanned file's plaintext findings between runs (the host's cache);
    `detected` are the plaintext findings of the plan's files when already scanned.
    """
    from pipeline.secrets.detect import scan  # noqa: PLC0415 - needs detect-secrets

    findings: list[FindingData] = []
    key_bytes = modulus = None
    if certificate_file is not None:
        from pipeline.secrets.certificates import parse_certificate  # noqa: PLC0415

        name = plan.get("certificate_name") or str(certificate_file)
        certificate = parse_certificate(certificate_file.read_bytes(), name)
        if isinstance(certificate, str):
            return [_finding(certificate, rule="certificate", status="error", file=name)]
        key_bytes = certificate.key_bytes
        modulus = certificate.public_key.public_numbers().n
        now = dt.datetime.fromisoformat(plan["now"]) if plan.get("now") else dt.datetime.now(dt.UTC)
        expired = certificate.expiry_problem(now)
        if expired is not None:
            findings.append(
                _finding(
                    f"{expired}: values sealed for it are not accepted by `kubeseal` any "
                    "more; fetch the controller's current certificate",
                    rule="certificate",
                    file=name,
                )
            )
    plaintext = detected if detected is not None else scan(source, plan.get("scan_files", ()), memo)
    for found in plaintext:
        findings.append(
            _allowed(
                _finding(
                    f"a {found.type}-looking literal: commit secrets as SealedSecrets "
                    "(`gitops-pipeline seal`), or allow this one in pipeline.yaml secrets.allow "
                    "with a reason",
                    rule=found.type,
                    file=found.file,
                    line=found.line,
                ),
                plan.get("allow", ()),
            )
        )
    for relative in plan.get("manifest_files", ()):
        findings += judge_file(source, relative, key_bytes, modulus)
    for rendered in plan.get("rendered", ()):
        findings += judge_document(
            rendered["document"],
            rendered["where"],
            default_namespace=rendered.get("namespace"),
            key_bytes=key_bytes,
            modulus=modulus,
        )
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipeline.secrets.check PLAN SOURCE [--cert FILE]`: the findings as JSON on
    stdout (the secrets container's step, read back as conftest's and kubeconform's are)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.secrets.check")
    parser.add_argument("plan", type=Path)
    parser.add_argument("source", type=Path)
    parser.add_argument("--cert", type=Path)
    args = parser.parse_args(argv)
    plan = json.loads(args.plan.read_text(encoding="utf-8"))
    sys.stdout.write(json.dumps(run_plan(plan, args.source, args.cert)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
