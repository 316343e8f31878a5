"""docker build, login, tag, push, pull and logout as steps, and parsers for what docker prints.

Every step carries ``DOCKER_CONFIG`` pointing at a per-run directory: a login writes
the registry credential into ``config.json`` there, never into the user's
``~/.docker``, and logging out (or deleting the directory) leaves no trace behind.

The password only ever travels as a ``SecretRef`` read by the runner and written to
``docker login --password-stdin``: argv is visible in ``ps`` and in step descriptions,
and the environment is inherited by every child process, so neither may hold it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pipeline.model import Arg, Ref, SecretRef, Step, out, src

DockerConfig = Path | Ref  # a host directory (local runner) or a directory under OUT
ErrorKind = Literal["auth", "transient", "other"]

# Pushes and pulls move layers; a slow registry is not a hung one, so give them time.
TRANSFER_TIMEOUT = 900.0
LOGIN_TIMEOUT = 120.0

_DIGEST = r"sha256:[0-9a-f]{64}"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# `docker push` ends with `<tag>: digest: sha256:<hex> size: <bytes>`.
_PUSH_DIGEST = re.compile(
    rf"^(?P<tag>{_TAG}): digest: (?P<digest>{_DIGEST}) size: \d+\s*$", re.MULTILINE
)
# `docker pull` prints `Digest: sha256:<hex>` once it has resolved the tag in the registry.
_PULL_DIGEST = re.compile(rf"^Digest: (?P<digest>{_DIGEST})\s*$", re.MULTILINE)
_IMAGE_ID = re.compile(rf"^{_DIGEST}$")

_AUTH = re.compile(
    r"unauthorized|(?<!permission )\bdenied\b|forbidden|no basic auth credentials"
    r"|authentication required"
    r"|\b40[13] (?:Unauthorized|Forbidden)|status(?: code)?:? 40[13]\b",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|timed? ?out|deadline exceeded"
    r"|\bEOF\b|TLS handshake|temporary failure in name resolution|server misbehaving"
    r"|network is unreachable|no route to host|toomanyrequests|too many requests"
    r"|\b5\d\d (?:[A-Z][a-z]+)|status(?: code)?:? (?:5\d\d|429)\b|\b429 Too Many",
    re.IGNORECASE,
)
# Talking to the local daemon fails with "permission denied" too; that is no registry's doing.
_DAEMON = re.compile(
    r"Cannot connect to the Docker daemon|while trying to connect to the Docker daemon"
    r"|Is the docker daemon running",
    re.IGNORECASE,
)
# The legacy builder colours a RUN step's stderr red; messages should carry the text only.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Hex runs (digests, layer and image ids) can contain "401" or "503" by chance.
_HEX_RUN = re.compile(r"[0-9a-f]{12,}")


def _env(docker_config: DockerConfig) -> tuple[tuple[str, Arg], ...]:
    value: Arg = str(docker_config) if isinstance(docker_config, Path) else docker_config
    return (("DOCKER_CONFIG", value),)


def _pairs(flag: str, values: Mapping[str, str], what: str) -> list[Arg]:
    args: list[Arg] = []
    for key, value in sorted(values.items()):
        if not key or "=" in key or key != key.strip():
            msg = f"{what} name {key!r} must be non-empty, without '=' or surrounding spaces"
            raise ValueError(msg)
        args += [flag, f"{key}={value}"]
    return args


def build_step(  # noqa: PLR0917 - positional by design, like docker build's options
    context: Ref,
    dockerfile: Ref,
    tags: Sequence[str],
    labels: Mapping[str, str],
    build_args: Mapping[str, str],
    target: str | None,
    platform: str | None,
    *,
    iidfile: str,
    docker_config: DockerConfig,
) -> Step:
    """`docker build`; the image id is written to ``iidfile`` (relative to OUT).

    Build arguments end up in the image history, so they must never carry secrets.
    """
    args: list[Arg] = ["build", "--file", dockerfile]
    args += _pairs("--label", labels, "label")
    args += _pairs("--build-arg", build_args, "build argument")
    for tag in tags:
        args += ["--tag", tag]
    if target is not None:
        args += ["--target", target]
    if platform is not None:
        args += ["--platform", platform]
    args += ["--iidfile", out(iidfile), context]
    return Step(
        name="docker-build",
        tool="docker",
        args=tuple(args),
        workdir=src(),
        env=_env(docker_config),
        inputs=(context, dockerfile),
        outputs=(iidfile,),
        timeout=TRANSFER_TIMEOUT,
    )


def login_step(
    registry: str, username: str, password: SecretRef, *, docker_config: DockerConfig
) -> Step:
    return Step(
        name=f"docker-login:{registry}",
        tool="docker",
        args=("login", "--username", username, "--password-stdin", registry),
        env=_env(docker_config),
        stdin_secret=password,
        timeout=LOGIN_TIMEOUT,
    )


def tag_step(source: str, target: str, *, docker_config: DockerConfig) -> Step:
    return Step(
        name=f"docker-tag:{target}",
        tool="docker",
        args=("tag", source, target),
        env=_env(docker_config),
    )


def push_step(ref: str, *, docker_config: DockerConfig) -> Step:
    return Step(
        name=f"docker-push:{ref}",
        tool="docker",
        args=("push", ref),
        env=_env(docker_config),
        timeout=TRANSFER_TIMEOUT,
    )


def pull_step(ref: str, *, docker_config: DockerConfig) -> Step:
    """Resolves ``ref`` in the registry; layers already present locally are not fetched."""
    return Step(
        name=f"docker-pull:{ref}",
        tool="docker",
        args=("pull", ref),
        env=_env(docker_config),
        timeout=TRANSFER_TIMEOUT,
    )


def logout_step(registry: str, *, docker_config: DockerConfig) -> Step:
    return Step(
        name=f"docker-logout:{registry}",
        tool="docker",
        args=("logout", registry),
        env=_env(docker_config),
        timeout=LOGIN_TIMEOUT,
    )


# --- parsers ------------------------------------------------------------------------------


def pushed_digest(stdout: str, tag: str | None = None) -> str | None:
    """The manifest digest `docker push` reports (for ``tag`` when given), or None."""
    found = [m for m in _PUSH_DIGEST.finditer(stdout) if tag is None or m["tag"] == tag]
    return found[-1]["digest"] if found else None


def pulled_digest(stdout: str) -> str | None:
    """The digest the registry resolved a tag to during `docker pull`, or None."""
    found = _PULL_DIGEST.findall(stdout)
    return str(found[-1]) if found else None


def image_id(iidfile_text: str) -> str | None:
    text = iidfile_text.strip()
    return text if _IMAGE_ID.match(text) else None


def daemon_unreachable(stderr: str) -> bool:
    return bool(_DAEMON.search(stderr))


def classify(stderr: str) -> ErrorKind:
    """Whether a failed registry command is worth retrying.

    Authentication comes first: a registry that answers 401 will answer 401 again, and
    retrying a rejected password can lock the account. Only failures of the transport or
    of the registry's server (5xx, 429, resets, timeouts) are transient.
    """
    if daemon_unreachable(stderr):
        return "other"
    text = _HEX_RUN.sub("<hex>", stderr)
    if _AUTH.search(text):
        return "auth"
    if _TRANSIENT.search(text):
        return "transient"
    return "other"


_NOISE = (
    "DEPRECATED: The legacy builder is deprecated",
    "Install the buildx component",
    "https://docs.docker.com/go/buildx/",
    "WARNING! Your credentials are stored unencrypted",
    "Configure a credential helper",
    "https://docs.docker.com/go/credential-store/",
)


def tail(text: str, lines: int = 20) -> str:
    """The last meaningful lines of docker output, without its standing deprecation notices."""
    kept = [
        line.rstrip()
        for line in _ANSI.sub("", text).splitlines()
        if line.strip() and not line.strip().startswith(_NOISE)
    ]
    return "\n".join(kept[-lines:])
