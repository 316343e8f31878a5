"""`seal` inside the Dagger module: the seal step in the secrets container, values as Secrets.

Each value reaches the container only as a secret variable; the module never reads it. The
certificate is a file given to the function, or an https URL the engine fetches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagger
from dagger import dag

from pipeline.errors import ConfigError
from pipeline.model import SecretRef, out
from pipeline.runners.dagger_runner import DaggerRunner, local_directory, scratch_dir
from pipeline.secrets import steps
from pipeline.secrets.scopes import Scope

SEALED = "seal/sealed.yaml"
CERTIFICATE = "seal/cert.pem"


def _reference(index: int) -> SecretRef:
    # A lookup key into the runner's secrets, never resolved from the engine's environment.
    return SecretRef(f"SEAL_VALUE_{index}", f"env:GITOPS_PIPELINE_SEAL_VALUE_{index}")


async def seal(
    *,
    images: Mapping[str, str],
    keys: Sequence[str],
    values: Sequence[dagger.Secret],
    cert: dagger.File | None,
    cert_url: str,
    name: str,
    namespace: str,
    scope: str,
    secret_type: str,
    merge_into: dagger.File | None,
) -> dagger.File:
    if len(keys) != len(values) or not keys:
        raise ConfigError(
            f"give one --value per --key ({len(keys)} keys, {len(values)} values)", field="--key"
        )
    if (cert is None) == (not cert_url):
        raise ConfigError("give the certificate as --cert FILE or --cert-url https://…")
    if cert_url and not cert_url.startswith("https://"):
        raise ConfigError("must be an https:// URL", field="--cert-url")
    work = scratch_dir("gitops-pipeline-seal-")
    certificate = cert if cert is not None else dag.http(cert_url)
    await certificate.export(str(work / CERTIFICATE))
    if merge_into is not None:
        await merge_into.export(str(work / SEALED))
    references = [_reference(i) for i in range(len(keys))]
    runner = DaggerRunner(
        source=dag.directory(),
        out=work,
        images=images,
        secrets={ref.source: secret for ref, secret in zip(references, values, strict=True)},
    )
    step = steps.seal_step(
        out(CERTIFICATE),
        list(zip(keys, references, strict=True)),
        target=out(SEALED),
        merge=merge_into is not None,
        name=name,
        namespace=namespace,
        scope=Scope(scope) if scope else None,
        secret_type=secret_type,
    )
    result = await runner.run(step)
    if not result.ok:
        message = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.exit_code}"]
        raise ConfigError(f"seal: {message[0]}")
    return local_directory(work, ("seal",)).file(SEALED)
