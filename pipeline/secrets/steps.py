"""The secrets container's steps, as data: validate's check and `seal` in Dagger.

The container is the pinned `detect-secrets` tool (with `cryptography`) running this
package's modules; values travel into it only as secret variables, named in argv by
reference (`KEY=env:VARIABLE`), never as text.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.model import Ref, SecretRef, Step, src
from pipeline.secrets.scopes import Scope

TOOL = "detect-secrets"
WORK = ".cache/secrets"  # under OUT: the plan and the certificate's copy


def check_step(plan: Ref, certificate: Ref | None) -> Step:
    """The check over `plan`; its findings are a JSON list on stdout."""
    cert_args: tuple[str | Ref, ...] = ("--cert", certificate) if certificate else ()
    return Step(
        name="secrets-check",
        tool=TOOL,
        args=("-m", "pipeline.secrets.check", plan, src(), *cert_args),
        inputs=(plan, *((certificate,) if certificate else ())),
    )


def seal_step(
    certificate: Ref,
    values: Sequence[tuple[str, SecretRef]],
    *,
    target: Ref,
    merge: bool,
    name: str = "",
    namespace: str = "",
    scope: Scope | None = None,
    secret_type: str = "Opaque",  # noqa: S107 - the Secret's type, not a password
) -> Step:
    """Seal `values` (key, secret reference) into `target`, a new manifest or one to update."""
    value_args = [a for key, ref in values for a in ("--value", f"{key}=env:{ref.variable}")]
    args: list[str | Ref] = ["-m", "pipeline.secrets.sealing", "--cert", certificate, *value_args]
    for flag, given in (("--name", name), ("--namespace", namespace)):
        if given:
            args += [flag, given]
    if scope is not None:
        args += ["--scope", scope.value]
    if not merge:
        args += ["--type", secret_type]
    args += ["--merge-into" if merge else "--output", target]
    return Step(
        name="seal",
        tool=TOOL,
        args=tuple(args),
        secrets=tuple(ref for _, ref in values),
        inputs=(certificate, *((target,) if merge else ())),
        outputs=(target.path,),
    )
