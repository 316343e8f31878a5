"""The offline schema bundle, checked by running the real kubeconform over it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import requires_tools

from pipeline.errors import ConfigError
from pipeline.schemas import (
    BUILTIN_CRDS,
    SchemaBundle,
    supported_kubernetes_versions,
    write_schema_bundle,
)
from pipeline.tools import require

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CRDS = REPO_ROOT.parent / "shared" / "schemas" / "crds"
K8S_VERSION = "1.35.0"
TEST_KINDS = frozenset(
    {
        "deployment-apps-v1",
        "networkpolicy-networking-v1",
        "horizontalpodautoscaler-autoscaling-v2",
        "poddisruptionbudget-policy-v1",
    }
)

needs_shared_crds = pytest.mark.skipif(
    not SHARED_CRDS.is_dir(), reason=f"shared CRD schemas not found at {SHARED_CRDS}"
)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{name: http, containerPort: 80}]
          resources: {limits: {cpu: 500m, memory: 128Mi}}
          livenessProbe: {httpGet: {path: /, port: http}}
"""
NETWORK_POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {}}], ports: [{port: 80, protocol: TCP}]}]
"""
HPA_V2 = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
"""
PDB_V1 = """\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
"""
ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {duration: 10m}}]
"""
BITNAMI_SEALED_MANIFEST = """\
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata: {name: web}
spec:
  encryptedData: {password: AgBy3i4OJSWK}
  template: {metadata: {name: web}}
"""


# --- helpers ----------------------------------------------------------------------------------


def _find_kubeconform() -> Path | None:
    on_path = shutil.which("kubeconform")
    candidates = [Path(on_path)] if on_path else []
    candidates += [REPO_ROOT / ".tools" / "bin" / "kubeconform", Path("/tmp/gobin/kubeconform")]
    return next((path for path in candidates if path.is_file() and os.access(path, os.X_OK)), None)


def _run_kubeconform(
    binary: Path, bundle: SchemaBundle, manifest: str, workdir: Path, *, strict: bool = True
) -> dict[str, Any]:
    manifest_file = workdir / "manifest.yaml"
    manifest_file.write_text(manifest, encoding="utf-8")
    argv = [str(binary), "-summary", "-output", "json"]
    argv += ["-strict"] if strict else []
    argv += ["-kubernetes-version", bundle.kubernetes_version]
    for location in bundle.schema_locations():
        argv += ["-schema-location", location]
    completed = subprocess.run(
        [*argv, str(manifest_file)], capture_output=True, text=True, check=False, timeout=120
    )
    report: dict[str, Any] = json.loads(completed.stdout)
    # kubeconform exits non-zero exactly when something is invalid or erred.
    failures = report["summary"]["invalid"] + report["summary"]["errors"]
    assert (completed.returncode == 0) == (failures == 0), completed.stderr
    return report


def _assert_all_valid(report: dict[str, Any], count: int) -> None:
    assert report["resources"] == [], report
    assert report["summary"] == {"valid": count, "invalid": 0, "errors": 0, "skipped": 0}


def _only_result(report: dict[str, Any]) -> dict[str, Any]:
    assert len(report["resources"]) == 1, report
    result: dict[str, Any] = report["resources"][0]
    return result


def _refs(node: object) -> list[str]:
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for key, value in node.items() if key != "$ref" for ref in _refs(value)]
    return []


def _resolve_local_pointer(document: object, ref: str) -> object:
    assert ref.startswith("#/"), ref
    node = document
    for token in ref[2:].split("/"):
        token_text = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert token_text in node, ref
        node = node[token_text]
    return node


def _crd_dir(tmp_path: Path, relative: str, content: str | bytes) -> Path:
    crd_dir = tmp_path / "crd-schemas"
    schema = crd_dir / relative
    schema.parent.mkdir(parents=True, exist_ok=True)
    schema.write_bytes(content.encode() if isinstance(content, str) else content)
    return crd_dir


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubeconform() -> Path:
    binary = _find_kubeconform()
    if binary is None:
        pytest.skip("kubeconform not found on PATH, in .tools/bin or at /tmp/gobin/kubeconform")
    return binary


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> SchemaBundle:
    crd_dirs = [SHARED_CRDS] if SHARED_CRDS.is_dir() else []
    out = tmp_path_factory.mktemp("bundle")
    return write_schema_bundle(out, K8S_VERSION, crd_dirs, kinds=TEST_KINDS)


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory: pytest.TempPathFactory) -> SchemaBundle:
    crd_dirs = [SHARED_CRDS] if SHARED_CRDS.is_dir() else []
    return write_schema_bundle(tmp_path_factory.mktemp("full"), K8S_VERSION, crd_dirs)


# --- the bundle's shape -----------------------------------------------------------------------


def test_supported_versions_are_the_shipped_minors() -> None:
    supported = supported_kubernetes_versions()
    assert supported[0] == "1.25"
    assert "1.35" in supported
    assert list(supported) == sorted(supported, key=lambda v: tuple(map(int, v.split("."))))


def test_restricted_bundle_holds_only_the_requested_kinds(bundle: SchemaBundle) -> None:
    assert bundle.kinds_written == len(TEST_KINDS)
    for variant in ("standalone", "standalone-strict"):
        written = {path.stem for path in (bundle.root / f"v{K8S_VERSION}-{variant}").iterdir()}
        assert written == TEST_KINDS


def test_schema_locations_name_the_bundle_and_its_crd_template(bundle: SchemaBundle) -> None:
    assert bundle.schema_locations() == (
        str(bundle.root),
        f"{bundle.root}/crds/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json",
    )


def test_full_bundle_has_every_kind_in_both_variants(full_bundle: SchemaBundle) -> None:
    loose = {p.name for p in (full_bundle.root / f"v{K8S_VERSION}-standalone").iterdir()}
    strict = {p.name for p in (full_bundle.root / f"v{K8S_VERSION}-standalone-strict").iterdir()}
    assert loose == strict
    assert len(loose) == full_bundle.kinds_written > 250
    assert {f"{stem}.json" for stem in TEST_KINDS} <= loose
    # Named by kubeconform's rule from the kind's group, not by the shipped file name.
    assert "storageversion-internal-v1alpha1.json" in loose
    assert "customresourcedefinition-apiextensions-v1.json" in loose


def test_no_ref_points_outside_its_file(full_bundle: SchemaBundle) -> None:
    checked = 0
    for schema_file in full_bundle.root.rglob("*.json"):
        document = json.loads(schema_file.read_text(encoding="utf-8"))
        for ref in _refs(document):
            assert ref.startswith("#"), f"{schema_file}: {ref}"
            _resolve_local_pointer(document, ref)
            checked += 1
    assert checked > 1000


def test_strict_variant_forbids_unknown_fields(bundle: SchemaBundle) -> None:
    def deployment_schema(variant: str) -> dict[str, Any]:
        path = bundle.root / f"v{K8S_VERSION}-{variant}" / "deployment-apps-v1.json"
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return schema

    assert "additionalProperties" not in deployment_schema("standalone")
    assert deployment_schema("standalone-strict")["additionalProperties"] is False


@needs_shared_crds
def test_crd_schemas_are_copied_in_catalog_layout(bundle: SchemaBundle) -> None:
    given = {path.relative_to(SHARED_CRDS) for path in SHARED_CRDS.rglob("*.json")}
    expected = sorted(given | _builtin_crds())  # the shipped ones come with every bundle
    assert [path.relative_to(bundle.root / "crds") for path in bundle.crd_files] == expected
    rollout = bundle.root / "crds" / "argoproj.io" / "rollout_v1alpha1.json"
    assert (
        rollout.read_bytes() == (SHARED_CRDS / "argoproj.io" / "rollout_v1alpha1.json").read_bytes()
    )


def test_rewriting_replaces_the_bundle(tmp_path: Path) -> None:
    crd_dir = _crd_dir(tmp_path, "example.com/widget_v1.json", '{"type": "object"}')
    out = tmp_path / "bundle"
    write_schema_bundle(out, K8S_VERSION, [crd_dir], kinds={"deployment"})
    again = write_schema_bundle(out, K8S_VERSION, kinds={"pod-v1"})
    assert [p.name for p in (out / f"v{K8S_VERSION}-standalone").iterdir()] == ["pod-v1.json"]
    assert not (out / "crds" / "example.com").exists()
    assert {p.relative_to(out / "crds") for p in again.crd_files} == _builtin_crds()


def _builtin_crds() -> set[Path]:
    return {p.relative_to(BUILTIN_CRDS) for p in BUILTIN_CRDS.rglob("*.json")}


def test_the_shipped_crd_schemas_are_always_in_the_bundle(tmp_path: Path) -> None:
    written = write_schema_bundle(tmp_path / "b", K8S_VERSION, kinds={"pod-v1"})
    relative = {p.relative_to(tmp_path / "b" / "crds") for p in written.crd_files}
    assert relative == _builtin_crds()
    for kind in ("argoproj.io/rollout_v1alpha1.json", "bitnami.com/sealedsecret_v1alpha1.json"):
        assert Path(kind) in relative


def test_a_repository_schema_replaces_the_shipped_one(tmp_path: Path) -> None:
    own = '{"type": "object", "description": "ours"}'
    crd_dir = _crd_dir(tmp_path, "bitnami.com/sealedsecret_v1alpha1.json", own)
    write_schema_bundle(tmp_path / "b", K8S_VERSION, [crd_dir], kinds={"pod-v1"})
    written = tmp_path / "b" / "crds" / "bitnami.com" / "sealedsecret_v1alpha1.json"
    assert written.read_text(encoding="utf-8") == own


def test_bare_kind_selects_every_group_version(tmp_path: Path) -> None:
    written = write_schema_bundle(tmp_path / "b", K8S_VERSION, kinds={"horizontalpodautoscaler"})
    stems = {p.stem for p in (tmp_path / "b" / f"v{K8S_VERSION}-standalone").iterdir()}
    assert stems == {
        "horizontalpodautoscaler-autoscaling-v1",
        "horizontalpodautoscaler-autoscaling-v2",
    }
    assert written.kinds_written == 2


def test_patch_version_is_served_by_its_minor(tmp_path: Path) -> None:
    written = write_schema_bundle(tmp_path / "b", "1.35.7", kinds={"deployment-apps-v1"})
    assert written.kubernetes_version == "1.35.7"
    assert (tmp_path / "b" / "v1.35.7-standalone-strict" / "deployment-apps-v1.json").is_file()


# --- errors -----------------------------------------------------------------------------------


def test_unsupported_version_lists_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        write_schema_bundle(tmp_path / "b", "1.10.0")
    message = str(raised.value)
    assert "1.10.0" in message
    assert all(version in message for version in supported_kubernetes_versions())
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("version", ["1.35", "v1.35.0", "1.35.0-rc.1", "latest"])
def test_version_must_be_major_minor_patch(tmp_path: Path, version: str) -> None:
    with pytest.raises(ConfigError, match=r"x\.y\.z") as raised:
        write_schema_bundle(tmp_path / "b", version)
    assert version in str(raised.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"), (b"\xff", "not valid JSON")],
)
def test_bad_crd_schema_names_the_file(tmp_path: Path, content: str | bytes, problem: str) -> None:
    crd_dir = _crd_dir(tmp_path, "example.com/widget_v1.json", content)
    with pytest.raises(ConfigError, match=problem) as raised:
        write_schema_bundle(tmp_path / "b", K8S_VERSION, [crd_dir], kinds={"deployment"})
    assert str(crd_dir / "example.com" / "widget_v1.json") in str(raised.value)


def test_crd_schema_with_remote_ref_is_rejected(tmp_path: Path) -> None:
    content = json.dumps({"properties": {"spec": {"$ref": "https://example.com/spec.json"}}})
    crd_dir = _crd_dir(tmp_path, "example.com/widget_v1.json", content)
    with pytest.raises(ConfigError, match="points outside the file") as raised:
        write_schema_bundle(tmp_path / "b", K8S_VERSION, [crd_dir], kinds={"deployment"})
    assert "widget_v1.json" in str(raised.value)


@pytest.mark.parametrize("relative", ["widget_v1.json", "example.com/widget.json", "a/b/w_v1.json"])
def test_crd_schema_outside_catalog_layout_is_rejected(tmp_path: Path, relative: str) -> None:
    crd_dir = _crd_dir(tmp_path, relative, '{"type": "object"}')
    with pytest.raises(ConfigError, match="kind>_<version>") as raised:
        write_schema_bundle(tmp_path / "b", K8S_VERSION, [crd_dir], kinds={"deployment"})
    assert str(crd_dir / relative) in str(raised.value)


def test_missing_crd_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as raised:
        write_schema_bundle(tmp_path / "b", K8S_VERSION, [tmp_path / "nowhere"])
    assert str(tmp_path / "nowhere") in str(raised.value)


def test_unknown_kind_filter_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="deploymnt"):
        write_schema_bundle(tmp_path / "b", K8S_VERSION, kinds={"deployment", "deploymnt"})


def test_failed_rebuild_keeps_the_previous_bundle(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_schema_bundle(out, K8S_VERSION, kinds={"deployment-apps-v1"})
    crd_dir = _crd_dir(tmp_path, "example.com/widget_v1.json", "{not json")
    with pytest.raises(ConfigError):
        write_schema_bundle(out, K8S_VERSION, [crd_dir])
    assert (out / f"v{K8S_VERSION}-standalone" / "deployment-apps-v1.json").is_file()


def test_bundle_dir_ending_in_json_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must not end in 'json'"):
        write_schema_bundle(tmp_path / "schemas.json", K8S_VERSION, kinds={"deployment"})


def test_bundle_path_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a directory") as raised:
        write_schema_bundle(tmp_path / "taken", K8S_VERSION, kinds={"deployment"})
    assert str(tmp_path / "taken") in str(raised.value)


# --- the real kubeconform over the bundle -----------------------------------------------------


@pytest.mark.tools
def test_valid_deployment_passes(kubeconform: Path, bundle: SchemaBundle, tmp_path: Path) -> None:
    _assert_all_valid(_run_kubeconform(kubeconform, bundle, DEPLOYMENT, tmp_path), 1)


@pytest.mark.tools
def test_replicas_as_string_is_invalid(
    kubeconform: Path, bundle: SchemaBundle, tmp_path: Path
) -> None:
    manifest = DEPLOYMENT.replace("replicas: 2", 'replicas: "two"')
    result = _only_result(_run_kubeconform(kubeconform, bundle, manifest, tmp_path))
    assert result["status"] == "statusInvalid"
    assert "/spec/replicas" in result["msg"]


@pytest.mark.tools
def test_unknown_field_is_invalid_only_when_strict(
    kubeconform: Path, bundle: SchemaBundle, tmp_path: Path
) -> None:
    manifest = DEPLOYMENT.replace("  replicas: 2\n", "  replicas: 2\n  replicaCount: 2\n")
    result = _only_result(_run_kubeconform(kubeconform, bundle, manifest, tmp_path))
    assert result["status"] == "statusInvalid"
    assert "replicaCount" in result["msg"]
    _assert_all_valid(_run_kubeconform(kubeconform, bundle, manifest, tmp_path, strict=False), 1)


@pytest.mark.tools
@pytest.mark.parametrize("manifest", [NETWORK_POLICY, HPA_V2, PDB_V1], ids=["np", "hpa", "pdb"])
def test_other_core_kinds_pass(
    kubeconform: Path, bundle: SchemaBundle, tmp_path: Path, manifest: str
) -> None:
    _assert_all_valid(_run_kubeconform(kubeconform, bundle, manifest, tmp_path), 1)


@pytest.mark.tools
def test_hpa_v1_field_in_v2_is_invalid(
    kubeconform: Path, bundle: SchemaBundle, tmp_path: Path
) -> None:
    manifest = HPA_V2 + "  targetCPUUtilizationPercentage: 80\n"
    result = _only_result(_run_kubeconform(kubeconform, bundle, manifest, tmp_path))
    assert "targetCPUUtilizationPercentage" in result["msg"]


@pytest.mark.tools
@needs_shared_crds
def test_custom_resources_validate_against_crd_schemas(
    kubeconform: Path, bundle: SchemaBundle, tmp_path: Path
) -> None:
    manifests = f"{ROLLOUT}---\n{BITNAMI_SEALED_MANIFEST}"
    _assert_all_valid(_run_kubeconform(kubeconform, bundle, manifests, tmp_path), 2)


@pytest.mark.tools
@needs_shared_crds
def test_invalid_custom_resource_is_reported(
    kubeconform: Path, bundle: SchemaBundle, tmp_path: Path
) -> None:
    manifest = ROLLOUT.replace("replicas: 2", "replicas: many")
    result = _only_result(_run_kubeconform(kubeconform, bundle, manifest, tmp_path))
    assert result["status"] == "statusInvalid"
    assert "/spec/replicas" in result["msg"]
    assert "rollout_v1alpha1.json" in result["msg"]


@pytest.mark.tools
def test_unknown_kind_has_no_schema(
    kubeconform: Path, bundle: SchemaBundle, tmp_path: Path
) -> None:
    manifest = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    result = _only_result(_run_kubeconform(kubeconform, bundle, manifest, tmp_path))
    assert result["status"] == "statusError"
    assert "could not find schema" in result["msg"]


@pytest.mark.tools
def test_every_kind_schema_in_the_full_bundle_compiles(
    kubeconform: Path, full_bundle: SchemaBundle, tmp_path: Path
) -> None:
    # A schema that kubeconform cannot load or compile is reported as an error, never as
    # invalid, so bare objects of every kind separate the two.
    documents = {}
    for schema_file in (full_bundle.root / f"v{K8S_VERSION}-standalone-strict").iterdir():
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        for gvk in schema["x-kubernetes-group-version-kind"]:
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            documents[api_version, gvk["kind"]] = json.dumps(
                {"apiVersion": api_version, "kind": gvk["kind"], "metadata": {"name": "x"}}
            )
    report = _run_kubeconform(
        kubeconform, full_bundle, "\n---\n".join(documents.values()), tmp_path
    )
    assert report["summary"]["errors"] == 0, [
        result for result in report["resources"] if result["status"] == "statusError"
    ]
    assert report["summary"]["valid"] + report["summary"]["invalid"] == len(documents)


def test_a_directory_it_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    """`schemas --out schemas` beside committed CRD schemas: theirs stay, the run refuses."""
    out = tmp_path / "schemas"
    committed = out / "crds" / "acme.com" / "widget_v1.json"
    committed.parent.mkdir(parents=True)
    committed.write_text('{"type": "object"}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"already holds crds, which gitops-pipeline did not"):
        write_schema_bundle(out, K8S_VERSION, kinds={"pod-v1"})
    assert committed.read_text(encoding="utf-8") == '{"type": "object"}'
    assert not (out / f"v{K8S_VERSION}-standalone").exists()


def test_its_own_bundle_is_rewritten(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    write_schema_bundle(out, K8S_VERSION, kinds={"pod-v1"})
    write_schema_bundle(out, K8S_VERSION, kinds={"deployment"})
    stems = {p.stem for p in (out / f"v{K8S_VERSION}-standalone").iterdir()}
    assert stems == {"deployment-apps-v1"}


COMMON_CRDS = """\
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: web-tls}
spec: {secretName: web-tls, dnsNames: [web.example.com], issuerRef: {name: letsencrypt}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: db}
spec:
  secretStoreRef: {name: vault, kind: ClusterSecretStore}
  data: [{secretKey: password, remoteRef: {key: db/password}}]
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: rules}
spec: {groups: [{name: web, rules: [{alert: Down, expr: up == 0}]}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata: {name: exp}
spec:
  templates:
    - name: baseline
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: "nginx:1.27"}]}
"""


@requires_tools("kubeconform")
@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (None, 0),
        (("dnsNames:", "dnsNamez:"), 1),
        (("expr: up == 0", "exp: up == 0"), 1),
    ],
)
def test_the_shipped_crds_validate_common_resources(
    tmp_path: Path, broken: tuple[str, str] | None, expected: int
) -> None:
    bundle = write_schema_bundle(tmp_path / "bundle", K8S_VERSION, kinds={"pod-v1"})
    manifest = tmp_path / "crs.yaml"
    text = COMMON_CRDS if broken is None else COMMON_CRDS.replace(*broken)
    manifest.write_text(text, encoding="utf-8")
    locations = [
        a for location in bundle.schema_locations() for a in ("-schema-location", location)
    ]
    done = subprocess.run(
        [str(require("kubeconform")), "-strict", "-summary", *locations, str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == expected, done.stdout + done.stderr
    assert f"Invalid: {expected}" in done.stdout
    assert "Skipped: 0" in done.stdout
