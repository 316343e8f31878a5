"""The docker services of the image tests: finding them, asking the registry, cleaning up.

`bash ci/services.sh` starts dockerd, an open registry, one with htpasswd auth and a local
base image, and writes their details to .tools/services.env. Tests that need them call
``find_services()``: it skips with a reason naming that script, or fails when
GITOPS_PIPELINE_REQUIRE_ALL=1. What a registry holds is read through its HTTP API.
``Observed`` wraps the real LocalRunner and keeps every step's result for the tests to read.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from conftest import REPO_ROOT

from pipeline.model import Step, StepResult
from pipeline.runners.local import LocalRunner

SERVICES_ENV = REPO_ROOT / ".tools" / "services.env"
REQUIRE_ALL = "GITOPS_PIPELINE_REQUIRE_ALL"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
HTTP_NOT_FOUND = 404

Auth = tuple[str, str] | None


@dataclass(frozen=True)
class Services:
    registry: str
    auth_registry: str
    auth_user: str
    auth_password_file: Path
    base_image: str

    @property
    def auth_password(self) -> str:
        return self.auth_password_file.read_text(encoding="utf-8").rstrip("\n")


def unavailable(reason: str, script: str = "ci/services.sh") -> NoReturn:
    """Skip, naming the script that starts what is missing; in CI, fail instead."""
    reason = f"{reason}; run `bash {script}`"
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)


def env_file_values(path: Path, prefix: str) -> dict[str, str]:
    """`KEY=value` lines of a file a setup script wrote; the environment's `prefix*` wins."""
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    # The environment wins, so CI can point the tests at services of its own.
    values.update({k: v for k, v in os.environ.items() if k.startswith(prefix)})
    return values


def _service_values() -> dict[str, str]:
    return env_file_values(SERVICES_ENV, "GITOPS_TEST_")


def _registry_answers(registry: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5):
            return True
    except urllib.error.HTTPError as error:
        return error.code == 401  # an auth registry is up when it asks for credentials
    except OSError:
        return False


def find_services() -> Services:
    """The running services, or a skip (a failure under GITOPS_PIPELINE_REQUIRE_ALL=1)."""
    values = _service_values()
    keys = (
        "GITOPS_TEST_REGISTRY",
        "GITOPS_TEST_AUTH_REGISTRY",
        "GITOPS_TEST_AUTH_USER",
        "GITOPS_TEST_AUTH_PASSWORD_FILE",
        "GITOPS_TEST_BASE_IMAGE",
    )
    missing = [k for k in keys if not values.get(k)]
    if missing:
        unavailable(f"docker services not configured ({', '.join(missing)} unset, {SERVICES_ENV})")
    found = Services(
        registry=values["GITOPS_TEST_REGISTRY"],
        auth_registry=values["GITOPS_TEST_AUTH_REGISTRY"],
        auth_user=values["GITOPS_TEST_AUTH_USER"],
        auth_password_file=Path(values["GITOPS_TEST_AUTH_PASSWORD_FILE"]),
        base_image=values["GITOPS_TEST_BASE_IMAGE"],
    )
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not on PATH")
    info = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    if info.returncode != 0:
        unavailable("`docker info` fails: dockerd is not running")
    for registry in (found.registry, found.auth_registry):
        if not _registry_answers(registry):
            unavailable(f"registry {registry} does not answer")
    if not found.auth_password_file.is_file():
        unavailable(f"registry password file {found.auth_password_file} is missing")
    base = subprocess.run(
        ["docker", "image", "inspect", found.base_image], capture_output=True, check=False
    )
    if base.returncode != 0:
        unavailable(f"base image {found.base_image} is missing")
    return found


# --- the registry's HTTP API ----------------------------------------------------------------


def registry_request(
    registry: str, path: str, *, method: str = "GET", auth: Auth = None
) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://{registry}/v2/{path}", method=method, headers={"Accept": ", ".join(MANIFEST_TYPES)}
    )
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return dict(response.headers.items()), response.read()


def split_image(image: str) -> tuple[str, str]:
    """(registry host, repository name) of ``host/owner/name``."""
    registry, _, name = image.partition("/")
    return registry, name


def registry_tags(image: str, *, auth: Auth = None) -> list[str] | None:
    """The sorted tags of ``image`` in its registry; None when the repository does not exist."""
    registry, name = split_image(image)
    try:
        _, body = registry_request(registry, f"{name}/tags/list", auth=auth)
    except urllib.error.HTTPError as error:
        if error.code == HTTP_NOT_FOUND:
            return None
        raise
    tags = json.loads(body)["tags"]
    return sorted(tags) if tags else []


def registry_digests(image: str, tags: list[str], *, auth: Auth = None) -> dict[str, str]:
    """Tag -> the manifest digest the registry serves for it (HEAD request)."""
    registry, name = split_image(image)
    found: dict[str, str] = {}
    for tag in tags:
        headers, _ = registry_request(registry, f"{name}/manifests/{tag}", method="HEAD", auth=auth)
        found[tag] = headers["Docker-Content-Digest"]
    return found


def registry_labels(image: str, tag: str, *, auth: Auth = None) -> dict[str, str]:
    """The labels in the image config the registry serves for ``image:tag``."""
    registry, name = split_image(image)
    _, manifest = registry_request(registry, f"{name}/manifests/{tag}", auth=auth)
    config_digest = json.loads(manifest)["config"]["digest"]
    _, config = registry_request(registry, f"{name}/blobs/{config_digest}", auth=auth)
    labels: dict[str, str] = json.loads(config)["config"]["Labels"]
    return labels


# --- local docker -------------------------------------------------------------------------


def remove_local_images(marker: str) -> None:
    """Untag every local image whose reference contains ``marker`` (layers stay cached)."""
    if shutil.which("docker") is None:
        return
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ours = [ref for ref in listed.stdout.split() if marker in ref]
    if ours:
        subprocess.run(["docker", "image", "rm", *ours], capture_output=True, check=False)


def local_refs(marker: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(ref for ref in listed.stdout.split() if marker in ref)


# --- the real runner, observed --------------------------------------------------------------


@dataclass
class Observed:
    """The real LocalRunner, keeping every result so a test can search what the steps saw."""

    inner: LocalRunner
    results: list[StepResult] = field(default_factory=list)

    async def run(self, step: Step) -> StepResult:
        result = await self.inner.run(step)
        self.results.append(result)
        return result

    def args_of(self, command: str) -> list[tuple[str, ...]]:
        """The arguments of every step that ran ``command`` (its first argument), in order."""
        return [tuple(map(str, r.step.args)) for r in self.results if r.step.args[0] == command]
