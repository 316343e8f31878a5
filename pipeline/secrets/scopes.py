"""SealedSecret scopes and their annotations, without any cryptography.

Source: bitnami-labs/sealed-secrets v0.40.0, pkg/apis/sealedsecrets/v1alpha1/types.go (the
annotation names) and sealedsecret_expansion.go (`EncryptionLabel`, `SecretScope`: only the
exact value "true" counts, cluster-wide before namespace-wide; `UpdateScopeAnnotations`).
"""

from __future__ import annotations

import enum

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
ANNOTATION_PREFIX = "sealedsecrets.bitnami.com/"
NAMESPACE_WIDE = f"{ANNOTATION_PREFIX}namespace-wide"
CLUSTER_WIDE = f"{ANNOTATION_PREFIX}cluster-wide"
SCOPE_ANNOTATIONS = (NAMESPACE_WIDE, CLUSTER_WIDE)


class Scope(enum.Enum):
    STRICT = "strict"
    NAMESPACE_WIDE = "namespace-wide"
    CLUSTER_WIDE = "cluster-wide"

    def label(self, namespace: str, name: str) -> bytes:
        """The RSA-OAEP label the controller decrypts with (`EncryptionLabel`)."""
        if self is Scope.CLUSTER_WIDE:
            return b""
        if self is Scope.NAMESPACE_WIDE:
            return namespace.encode()
        return f"{namespace}/{name}".encode()

    def annotations(self) -> dict[str, str]:
        """The scope annotations kubeseal writes (`UpdateScopeAnnotations`)."""
        if self is Scope.NAMESPACE_WIDE:
            return {NAMESPACE_WIDE: "true"}
        if self is Scope.CLUSTER_WIDE:
            return {CLUSTER_WIDE: "true"}
        return {}


def scope_of(annotations: object) -> Scope:
    """The scope the controller reads from annotations (`SecretScope`)."""
    if not isinstance(annotations, dict):
        return Scope.STRICT
    if annotations.get(CLUSTER_WIDE) == "true":
        return Scope.CLUSTER_WIDE
    if annotations.get(NAMESPACE_WIDE) == "true":
        return Scope.NAMESPACE_WIDE
    return Scope.STRICT
