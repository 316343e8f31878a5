"""Container images of a release: tags, OCI labels, build and push.

Tag and label rules follow docker/metadata-action, the de-facto convention of
GitHub Actions releases: ``X.Y.Z``, ``X.Y``, ``X`` (not for ``0``), ``latest`` for
final releases only, and ``sha-<7>``; a prerelease gets its full version and the sha
tag, so no floating tag ever moves to a release candidate.

Names are checked before any step runs, because registries (GHCR first of all)
reject upper-case repository paths only after the layers have been uploaded.

Every docker command goes through the run's runner. Registry credentials are a
``SecretRef`` the runner resolves and feeds to ``docker login --password-stdin``;
this module never sees the password, so no message it builds can contain it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import semver

from pipeline.errors import ConfigError, PipelineError, SetupError
from pipeline.model import Ref, SecretRef, Step, StepResult, killed_by_signal, src
from pipeline.run import Run
from pipeline.stages import docker

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]

LABEL_PREFIX = "org.opencontainers.image."
TITLE = f"{LABEL_PREFIX}title"
DESCRIPTION = f"{LABEL_PREFIX}description"
URL = f"{LABEL_PREFIX}url"
SOURCE = f"{LABEL_PREFIX}source"
VERSION = f"{LABEL_PREFIX}version"
CREATED = f"{LABEL_PREFIX}created"
REVISION = f"{LABEL_PREFIX}revision"
LICENSES = f"{LABEL_PREFIX}licenses"

SHORT_SHA = 7
MAX_NAME_LENGTH = 255  # the distribution spec's limit on a repository name
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})

# The OCI distribution spec's path component, and a host (name or IPv4, or [IPv6]) + port.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


# --- errors -------------------------------------------------------------------------------


class BuildError(PipelineError):
    """`docker build` failed: the Dockerfile or the context is broken (exit 1, like a check)."""

    exit_code = 1

    def __init__(self, image: str, detail: str) -> None:
        self.image = image
        self.detail = detail
        super().__init__(f"docker build of {image} failed:\n{detail}")


class PublishError(PipelineError):
    """A registry refused the image for a reason other than credentials or availability."""

    exit_code = 1


class DigestMismatchError(PublishError):
    """The tags of one push do not all name the same manifest in the registry."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self.digests = dict(digests)
        listing = ", ".join(f"{ref} -> {digest}" for ref, digest in digests.items())
        super().__init__(
            f"the pushed tags resolve to different digests ({listing}); another push to the "
            "same repository probably raced this one, so the release is not consistent"
        )


class RegistryAuthError(SetupError):
    """The registry rejected the credentials (or demanded some): retrying cannot help."""

    def __init__(self, registry: str, username: str | None, detail: str) -> None:
        self.registry = registry
        self.username = username
        who = f"user {username!r}" if username else "an anonymous client (no login)"
        super().__init__(
            f"registry {registry} refused {who}: {detail}; check the token/password and "
            "that it may push to this repository (for ghcr.io: GITHUB_TOKEN with "
            "`permissions: packages: write`, or a PAT with write:packages)"
        )


class RegistryUnavailableError(SetupError):
    """The registry could not be reached, or kept failing, on every attempt."""

    def __init__(self, registry: str, action: str, attempts: int, detail: str) -> None:
        self.registry = registry
        self.attempts = attempts
        super().__init__(
            f"registry {registry} is unavailable: {action} failed on all {attempts} attempts "
            f"(last error: {detail}); check that the registry is up and reachable, then retry"
        )


class DockerDaemonError(SetupError):
    """The docker CLI cannot talk to its daemon."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"docker cannot reach its daemon: {detail}; start dockerd (locally: "
            "`bash ci/services.sh`) or point DOCKER_HOST at a running one"
        )


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    image_id: str  # sha256:<hex> of the image config
    local_ref: str  # <image>:build-<sha7>, the tag publish() starts from


@dataclass(frozen=True)
class PushedRef:
    ref: str  # <image>:<tag>
    digest: str  # sha256:<hex> of the manifest in the registry

    @property
    def pinned(self) -> str:
        """``<image>@<digest>``: what a deployment should reference."""
        repository = self.ref.rsplit(":", 1)[0]
        return f"{repository}@{self.digest}"


# --- tags, names and labels ---------------------------------------------------------------


def _short_sha(sha: str) -> str:
    if not _SHA.match(sha):
        raise ConfigError(f"commit sha must be 7 to 64 hex digits, got {sha!r}", field="sha")
    return sha[:SHORT_SHA].lower()


def image_tags(version: str, sha: str) -> list[str]:
    """Tags for ``version`` built from commit ``sha``, as docker/metadata-action computes them."""
    text = version.strip()
    text = text[1:] if text[:1] in {"v", "V"} else text
    try:
        parsed = semver.Version.parse(text)
    except ValueError:
        raise ConfigError(
            f"version {version!r} is not semantic versioning (X.Y.Z[-prerelease])",
            field="version",
        ) from None
    if parsed.build is not None:
        # `+` cannot appear in a tag, and metadata-action's `-` substitute reads as a prerelease.
        raise ConfigError(
            f"version {version!r} has build metadata (+{parsed.build}), which an image tag "
            "cannot carry; release without it",
            field="version",
        )
    tags = [str(parsed)]
    if parsed.prerelease is None:
        tags.append(f"{parsed.major}.{parsed.minor}")
        # metadata-action's advice: `0` would float across breaking 0.y releases.
        if parsed.major != 0:
            tags.append(str(parsed.major))
        tags.append("latest")
    tags.append(f"sha-{_short_sha(sha)}")
    for tag in tags:
        if not _TAG.match(tag):
            raise ConfigError(f"tag {tag!r} is not a valid image tag", field="version")
    return tags


def _split_host(image: str) -> tuple[str | None, str]:
    """(registry host or None for Docker Hub, repository path), by Docker's reference rules."""
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, image


def registry_of(image: str) -> str:
    host, _ = _split_host(image)
    return host if host is not None else DOCKER_HUB


def check_image_name(image: str) -> None:
    """Raise ConfigError unless ``image`` is ``[host[:port]/]path`` valid for OCI registries."""
    if not image or image != image.strip():
        raise ConfigError(f"image name {image!r} is empty or has surrounding spaces", field="image")
    host, path = _split_host(image)
    last = path.rsplit("/", 1)[-1]
    if "@" in image:
        raise ConfigError(
            f"image name {image!r} carries a digest; give the repository only, the digest "
            "is what the push returns",
            field="image",
        )
    if ":" in last:
        name, _, tag = image.rpartition(":")
        raise ConfigError(
            f"image name {image!r} carries a tag (:{tag}); give {name!r}: the tags are "
            "computed from the release version",
            field="image",
        )
    if host is not None and not _HOST.match(host):
        raise ConfigError(f"registry host {host!r} in {image!r} is not valid", field="image")
    components = path.split("/")
    upper = [c for c in components if c != c.lower()]
    if upper:
        suggestion = f"{host}/{path.lower()}" if host is not None else path.lower()
        parts = ", ".join(repr(c) for c in upper)
        raise ConfigError(
            f"repository path of {image!r} must be lower-case, but {parts} is not "
            f"(registries such as ghcr.io reject it); use {suggestion!r}",
            field="image",
        )
    bad = [c for c in components if not _COMPONENT.match(c)]
    if bad:
        parts = ", ".join(repr(c) for c in bad)
        raise ConfigError(
            f"repository path of {image!r} has invalid part(s) {parts}: each part between "
            "slashes is lower-case letters and digits, separated by single '.', '_', '__' "
            "or runs of '-', and must not be empty",
            field="image",
        )
    if len(path) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"repository path of {image!r} is longer than {MAX_NAME_LENGTH} characters",
            field="image",
        )


def oci_labels(
    *,
    title: str,
    source: str,
    version: str,
    revision: str,
    created: dt.datetime | str,
    licenses: str,
    description: str | None = None,
    url: str | None = None,
) -> dict[str, str]:
    """The `org.opencontainers.image.*` labels metadata-action sets.

    ``source`` links a GHCR package to its repository; ``url`` defaults to it, as
    metadata-action uses the repository's page for both. ``created`` is RFC 3339.
    """
    if isinstance(created, dt.datetime):
        if created.tzinfo is None:
            raise ConfigError("created must be timezone-aware", field="created")
        created = created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    labels = {
        TITLE: title,
        URL: url or source,
        SOURCE: source,
        VERSION: version,
        CREATED: created,
        REVISION: revision,
        LICENSES: licenses,
    }
    if description is not None:
        labels[DESCRIPTION] = description
    return labels


# --- build --------------------------------------------------------------------------------


def _slug(image: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", image.lower()).strip("-")


async def build(
    run: Run,
    *,
    image: str,
    dockerfile: Ref | str,
    context: Ref | str,
    labels: Mapping[str, str],
    build_args: Mapping[str, str],
    docker_config: Path,
    revision: str | None = None,
    target: str | None = None,
    platform: str | None = None,
) -> BuiltImage:
    """Build ``image`` and tag it ``<image>:build-<sha7>``, the ref publish() starts from.

    ``dockerfile`` and ``context`` given as text are relative to the source root.
    ``revision`` (the commit sha) defaults to the OCI revision label.
    """
    check_image_name(image)
    sha = revision or labels.get(REVISION)
    if not sha:
        raise ConfigError(
            f"building {image} needs the commit sha: pass revision= or the {REVISION} label",
            field="revision",
        )
    local_ref = f"{image}:build-{_short_sha(sha)}"
    iidfile = f"images/{_slug(image)}-{_short_sha(sha)}.iid"
    (run.out / iidfile).parent.mkdir(parents=True, exist_ok=True)
    step = docker.build_step(
        src(context) if isinstance(context, str) else context,
        src(dockerfile) if isinstance(dockerfile, str) else dockerfile,
        [local_ref],
        labels,
        build_args,
        target,
        platform,
        iidfile=iidfile,
        docker_config=docker_config,
    )
    log.info("building %s", local_ref)
    result = await run.runner.run(step)
    if not result.ok:
        killed = killed_by_signal(result)
        if killed is not None:
            raise BuildError(image, killed)
        _raise_if_daemon(result)
        # The legacy builder prints the failing instruction's output on stdout, BuildKit on
        # stderr; the message needs both to be useful without rerunning.
        detail = "\n".join(
            t for t in (docker.tail(result.stdout, 10), docker.tail(result.stderr)) if t
        )
        raise BuildError(image, detail or f"exit code {result.exit_code}")
    iid_path = run.out / iidfile
    found = docker.image_id(iid_path.read_text(encoding="utf-8")) if iid_path.exists() else None
    if found is None:
        raise BuildError(image, f"docker build succeeded but wrote no image id to {iidfile}")
    return BuiltImage(image_id=found, local_ref=local_ref)


# --- publish ------------------------------------------------------------------------------


def _raise_if_daemon(result: StepResult) -> None:
    if docker.daemon_unreachable(result.stderr):
        raise DockerDaemonError(docker.tail(result.stderr, 3))


def _last_line(result: StepResult) -> str:
    return docker.tail(result.stderr, 1) or f"exit code {result.exit_code}"


@dataclass(frozen=True)
class _Registry:
    """What every registry command of one publish shares: where, who and how to retry."""

    run: Run
    registry: str
    username: str | None
    retries: int
    backoff: float
    sleep: Sleep

    async def call(self, step: Step, action: str) -> StepResult:
        """Run a registry command, retrying transient failures with exponential backoff."""
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            result = await self.run.runner.run(step)
            if result.ok:
                return result
            killed = killed_by_signal(result)
            if killed is not None:  # stopped from outside: a retry would be stopped again
                raise PublishError(f"{action} failed: {killed}")
            _raise_if_daemon(result)
            kind = docker.classify(result.stderr)
            if kind == "auth":
                raise RegistryAuthError(self.registry, self.username, _last_line(result))
            if kind == "other":
                raise PublishError(f"{action} failed: {docker.tail(result.stderr, 5)}")
            if attempt == attempts:
                raise RegistryUnavailableError(self.registry, action, attempts, _last_line(result))
            delay = self.backoff * 2 ** (attempt - 1)
            log.warning(
                "%s failed (attempt %d of %d, retrying in %.1fs): %s",
                action,
                attempt,
                attempts,
                delay,
                _last_line(result),
            )
            await self.sleep(delay)
        msg = "unreachable: the loop returns or raises"
        raise AssertionError(msg)


def _check_publish_args(
    image: str, tags: Sequence[str], registry: str, username: str | None, retries: int
) -> None:
    check_image_name(image)
    if not tags:
        raise ConfigError("no tags to publish", field="tags")
    bad = [t for t in tags if not _TAG.match(t)]
    if bad:
        raise ConfigError(f"invalid image tag(s): {', '.join(map(repr, bad))}", field="tags")
    if len(set(tags)) != len(tags):
        raise ConfigError(f"duplicate tags in {list(tags)}", field="tags")
    host = registry_of(image).lower()
    given = registry.lower()
    same = host == given or {host, given} <= _HUB_ALIASES
    if not same:
        # A login to one registry and a push to another fails as a confusing auth error.
        raise ConfigError(
            f"image {image} lives in registry {registry_of(image)}, not {registry}",
            field="registry",
        )
    if retries < 0:
        raise ConfigError("retries must be 0 or more", field="retries")
    if username is not None and not username.strip():
        raise ConfigError("username is empty", field="username")


async def publish(
    run: Run,
    *,
    local_ref: str,
    image: str,
    tags: Sequence[str],
    registry: str,
    username: str | None,
    password: SecretRef | None,
    docker_config: Path,
    retries: int = 3,
    backoff: float = 1.0,
    sleep: Sleep = anyio.sleep,
) -> list[PushedRef]:
    """Tag ``local_ref`` as ``image:<tag>`` for every tag, push them and verify the digests.

    Logs in first when ``password`` is given and always logs out afterwards. Transient
    registry failures are retried ``retries`` times (waits ``backoff``, 2x, 4x, ...).
    """
    _check_publish_args(image, tags, registry, username, retries)
    if password is not None and username is None:
        raise ConfigError("a registry password needs a username", field="username")
    client = _Registry(run, registry, username, retries, backoff, sleep)
    try:
        if password is not None and username is not None:
            await client.call(
                docker.login_step(registry, username, password, docker_config=docker_config),
                f"docker login to {registry} as {username}",
            )
        pushed = [
            await _push_one(client, local_ref, f"{image}:{tag}", docker_config) for tag in tags
        ]
        await _verify(client, pushed, docker_config)
    finally:
        if password is not None:
            await _logout(run, registry, docker_config)
    return pushed


async def check_login(
    run: Run,
    *,
    registry: str,
    username: str | None,
    password: SecretRef | None,
    docker_config: Path,
) -> None:
    """Log in once (then out) before anything is claimed: a wrong token fails the release early."""
    if password is None:
        return
    if username is None:
        raise ConfigError("a registry password needs a username", field="username")
    client = _Registry(run, registry, username, retries=3, backoff=1.0, sleep=anyio.sleep)
    try:
        await client.call(
            docker.login_step(registry, username, password, docker_config=docker_config),
            f"docker login to {registry} as {username}",
        )
    finally:
        await _logout(run, registry, docker_config)


async def _push_one(client: _Registry, local_ref: str, ref: str, docker_config: Path) -> PushedRef:
    tagged = await client.run.runner.run(
        docker.tag_step(local_ref, ref, docker_config=docker_config)
    )
    if not tagged.ok:
        killed = killed_by_signal(tagged)
        if killed is not None:
            raise PublishError(killed)
        _raise_if_daemon(tagged)
        raise PublishError(f"docker tag {local_ref} {ref} failed: {_last_line(tagged)}")
    log.info("pushing %s", ref)
    result = await client.call(docker.push_step(ref, docker_config=docker_config), f"push of {ref}")
    digest = docker.pushed_digest(result.stdout, ref.rsplit(":", 1)[1])
    if digest is None:
        raise PublishError(f"docker push {ref} reported no digest: {docker.tail(result.stdout, 3)}")
    return PushedRef(ref=ref, digest=digest)


async def _verify(client: _Registry, pushed: list[PushedRef], docker_config: Path) -> None:
    """Every tag must name one manifest, both as pushed and as the registry now resolves it.

    The push output alone cannot show a concurrent push that moved a tag afterwards; a pull
    asks the registry (only the manifest moves: the layers are already local).
    """
    reported = {p.ref: p.digest for p in pushed}
    if len(set(reported.values())) > 1:
        raise DigestMismatchError(reported)
    resolved: dict[str, str] = {}
    for item in pushed:
        result = await client.call(
            docker.pull_step(item.ref, docker_config=docker_config), f"verification of {item.ref}"
        )
        resolved[item.ref] = docker.pulled_digest(result.stdout) or "(no digest reported)"
    if any(resolved[p.ref] != p.digest for p in pushed):
        raise DigestMismatchError(resolved)


async def _logout(run: Run, registry: str, docker_config: Path) -> None:
    # Shielded: a cancelled publish must still remove the credential from the config dir.
    with anyio.CancelScope(shield=True):
        try:
            result = await run.runner.run(docker.logout_step(registry, docker_config=docker_config))
        except PipelineError as error:
            # Never mask the error that got us here; the config dir is per run anyway.
            log.warning("docker logout from %s could not run: %s", registry, error)
            return
    if not result.ok:
        log.warning("docker logout from %s failed: %s", registry, _last_line(result))
