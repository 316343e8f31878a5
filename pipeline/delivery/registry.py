"""Does a registry hold IMAGE:TAG? Asked through the OCI distribution API, nothing pulled.

`HEAD /v2/<name>/manifests/<tag>` with the manifest media types in `Accept`; a 401 names
how to authenticate in `WWW-Authenticate`: `Bearer realm=…,service=…,scope=…` (GHCR, Docker
Hub: a token from the realm, asked with the credentials when there are any) or `Basic`
(an htpasswd registry). Credentials are sent only in headers, never in a URL, and no message
carries them. Redirects are not followed: a manifest is answered where it is asked for, and
a redirect would carry the credentials to another host.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pipeline.errors import ConfigError, SetupError
from pipeline.model import SecretRef
from pipeline.references import read_reference_text

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
# A registry on this machine speaks plain HTTP (as helm's --plain-http for loopback hosts).
_LOOPBACK = re.compile(r"^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?$")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[::1\])(?::[0-9]+)?$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*"([^"]*)"')
TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class ImageName:
    registry: str  # as written in the name (docker.io when none is)
    repository: str  # the path inside the registry (library/nginx on Docker Hub)

    @property
    def api_host(self) -> str:
        return (
            _DOCKER_HUB_API if self.registry in {DOCKER_HUB, "index.docker.io"} else self.registry
        )

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


def parse_image(image: str, field_name: str = "--image") -> ImageName:
    """`ghcr.io/acme/chat` or `nginx` as registry and repository; a tag or digest is refused."""
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, image
    if "@" in path or ":" in path:
        raise ConfigError(
            f"expected an image name without a tag or digest, got {image!r}", field=field_name
        )
    if not _HOST.match(registry) or not _REPOSITORY.match(path):
        raise ConfigError(
            f"expected an image name such as ghcr.io/owner/name (lower case), got {image!r}",
            field=field_name,
        )
    if registry in {DOCKER_HUB, "index.docker.io"} and "/" not in path:
        path = f"library/{path}"
    return ImageName(registry, path)


def check_tag(tag: str, field_name: str = "--version") -> str:
    if not TAG.match(tag):
        raise ConfigError(
            f"expected an image tag (letters, digits, _ . -; at most 128), got {tag!r}",
            field=field_name,
        )
    return tag


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # the 3xx reaches the caller as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _request(url: str, method: str, headers: dict[str, str], what: str) -> _Answer:
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - http(s) only
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            return _Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return _Answer(error.code, dict(error.headers.items()), error.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SetupError(f"cannot reach {what}: {reason}") from None


def _scheme(host: str) -> str:
    return "http" if _LOOPBACK.match(host) else "https"


def _challenge(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    value = next((v for k, v in headers.items() if k.lower() == "www-authenticate"), "")
    scheme, _, params = value.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


def _token(name: ImageName, params: dict[str, str], credentials: Credentials | None) -> str:
    realm = params.get("realm", "")
    parts = urllib.parse.urlsplit(realm)
    if parts.scheme != "https" and not (parts.scheme == "http" and _LOOPBACK.match(parts.netloc)):
        raise SetupError(
            f"registry {name.registry} names a token service that is not https ({realm!r}); "
            "refusing to send anything there"
        )
    query = {"service": params.get("service", ""), "scope": params.get("scope", "")}
    if not query["scope"]:
        query["scope"] = f"repository:{name.repository}:pull"
    url = f"{realm}?{urllib.parse.urlencode({k: v for k, v in query.items() if v})}"
    headers = {"Authorization": credentials.basic()} if credentials else {}
    answer = _request(url, "GET", headers, f"the token service of {name.registry} ({parts.netloc})")
    if answer.status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}:
        raise _refused(name, credentials)
    if answer.status != HTTPStatus.OK:
        raise SetupError(
            f"the token service of {name.registry} answered HTTP {answer.status} for a pull token"
        )
    try:
        document = json.loads(answer.body)
        token = document.get("token") or document.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise SetupError(f"the token service of {name.registry} answered without a token")
    return token


def _refused(name: ImageName, credentials: Credentials | None) -> SetupError:
    if credentials is None:
        return SetupError(
            f"registry {name.registry} wants credentials to read {name.repository}: pass "
            "--registry-username and --registry-password env:NAME (or file:PATH)"
        )
    return SetupError(
        f"registry {name.registry} refused the credentials of {credentials.username!r} for "
        f"{name.repository} (they need pull access)"
    )


def manifest_digest(
    name: ImageName,
    tag: str,
    credentials: Credentials | None = None,
    *,
    endpoint: str | None = None,
) -> str | None:
    """The digest the registry serves for `name:tag` ("" when it names none), or None: no such tag.

    `endpoint` (host:port) is where to connect when the registry is reached through a tunnel.
    """
    host = endpoint or name.api_host
    # The scheme is the registry's own: a tunnel to a loopback registry still speaks HTTP.
    url = f"{_scheme(name.api_host)}://{host}/v2/{name.repository}/manifests/{check_tag(tag)}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    what = f"registry {name.registry}" + (f" (through {endpoint})" if endpoint else "")
    answer = _request(url, "HEAD", headers, what)
    if answer.status == HTTPStatus.UNAUTHORIZED:
        scheme, params = _challenge(answer.headers)
        if scheme == "bearer":
            headers["Authorization"] = f"Bearer {_token(name, params, credentials)}"
        elif scheme == "basic" and credentials is not None:
            headers["Authorization"] = credentials.basic()
        else:
            raise _refused(name, credentials)
        answer = _request(url, "HEAD", headers, what)
    if answer.status == HTTPStatus.METHOD_NOT_ALLOWED:
        answer = _request(url, "GET", headers, what)
    if answer.status == HTTPStatus.OK:
        return next(
            (v for k, v in answer.headers.items() if k.lower() == "docker-content-digest"), ""
        )
    if answer.status == HTTPStatus.NOT_FOUND:
        return None
    if answer.status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}:
        raise _refused(name, credentials)
    raise SetupError(f"{what} answered HTTP {answer.status} for {name}:{tag}")


def read_reference(reference: SecretRef) -> str:
    """The value behind env:NAME or file:PATH, on this machine; the message never holds it."""
    return read_reference_text(reference.source, "--registry-password")
