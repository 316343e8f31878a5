"""The offline schema bundle, written in a container that has kubernetes-validate's data.

On the host the bundle is built in-process (and cached); in Dagger the module runtime does
not carry the 100 MB schema package, so this step writes the bundle where kubeconform's
step reads it: under OUT.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pipeline.model import Ref, Step


def bundle_step(
    bundle: Ref,
    kubernetes_version: str,
    crd_dirs: Sequence[Ref],
    kinds: Collection[str] | None = None,
) -> Step:
    """Every Kubernetes kind when `kinds` is None, else only those (and every CRD given)."""
    crd_args = [a for crd_dir in crd_dirs for a in ("--crd-dir", crd_dir)]
    kind_args = [a for kind in sorted(kinds or ()) for a in ("--kind", kind)]
    return Step(
        name="schema-bundle",
        tool="kubernetes-validate",
        args=("-m", "pipeline.schemas", bundle, kubernetes_version, *crd_args, *kind_args),
        inputs=tuple(crd_dirs),
        outputs=(bundle.path,),
    )
