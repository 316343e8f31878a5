"""`promote`: the overlay's bytes, the registry's answer, the commit, with real git and registries.

Images are pushed with docker to the local registries of `bash ci/services.sh` (127.0.0.1:5000
open, :5001 htpasswd); the Bearer token flow of GHCR and Docker Hub is served by a small HTTP
server on 127.0.0.1 that answers as they do (401 with a WWW-Authenticate challenge, a token
service behind Basic auth).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURE_REPOS
from services import Services, find_services

from pipeline.cli import main
from pipeline.delivery import registry
from pipeline.delivery.values_file import ValuesFileError, parse_path, set_scalar
from pipeline.errors import ConfigError, SetupError

IDENTITY = {
    "GIT_AUTHOR_NAME": "Promoter",
    "GIT_AUTHOR_EMAIL": "promoter@example.test",
    "GIT_COMMITTER_NAME": "Promoter",
    "GIT_COMMITTER_EMAIL": "promoter@example.test",
}
# Comments everywhere, a sequence indented two ways, alignment, a long line, quotes: a
# round-trip dump would rewrite some of it; promote may change the tag only.
OVERLAY = b"""# prd overlay: every byte but the tag stays
replicaCount: 2   # two in prd

image:
  # the tag the release pipeline promotes
  repository: REPOSITORY
  tag: "1.0.0"  # quoted on purpose
  pullPolicy:   IfNotPresent

tolerations:
- key: dedicated
  operator: Equal
topologySpreadConstraints:
    -   maxSkew: 1
        topologyKey: topology.kubernetes.io/zone
config: {LOG_LEVEL: warning, A_LONG_KEY: "with a value long enough to pass eighty columns"}
# trailing comment
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(repo), **IDENTITY},
    )
    return done.stdout


@pytest.fixture(scope="module")
def services() -> Services:
    return find_services()


def push(services: Services, registry_host: str, tag: str, tmp_path: Path) -> str:
    """A tiny image pushed as REGISTRY/acme/promote-<random>:TAG; returns the name."""
    name = f"{registry_host}/acme/promote-{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"docker-{uuid.uuid4().hex[:6]}"
    config.mkdir()
    docker = ["docker", "--config", str(config)]
    if registry_host == services.auth_registry:
        subprocess.run(
            [*docker, "login", "--username", services.auth_user, "--password-stdin", registry_host],
            input=services.auth_password,
            text=True,
            capture_output=True,
            check=True,
        )
    subprocess.run([*docker, "tag", services.base_image, f"{name}:{tag}"], check=True)
    try:
        subprocess.run(
            [*docker, "push", "--quiet", f"{name}:{tag}"], capture_output=True, check=True
        )
    finally:
        subprocess.run([*docker, "image", "rm", f"{name}:{tag}"], capture_output=True, check=False)
    return name


def repository(
    tmp_path: Path,
    image: str,
    overlay: bytes = OVERLAY,
    prepare: Callable[[Path], None] | None = None,
) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE_REPOS / "ok", repo)
    (repo / "charts/web/values-prd.yaml").write_bytes(
        overlay.replace(b"REPOSITORY", image.encode())
    )
    if prepare is not None:
        prepare(repo)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "feat: the web chart")
    return repo


def promote(repo: Path, out: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    return main(["promote", "--source", str(repo), "--out", str(out), "--progress", "none", *args])


def test_the_overlay_changes_in_the_tag_only_and_is_committed(
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = push(services, services.registry, "1.4.2", tmp_path)
    repo = repository(tmp_path, image)
    overlay = repo / "charts/web/values-prd.yaml"
    before = overlay.read_bytes()
    out = tmp_path / "artifacts"

    assert promote(repo, out, "--env", "prd", "--version", "1.4.2", monkeypatch=monkeypatch) == 0

    assert overlay.read_bytes() == before.replace(b'tag: "1.0.0"', b'tag: "1.4.2"')
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "log", "-1", "--format=%s") == "chore(deploy): promote web to 1.4.2 in prd\n"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "charts/web/values-prd.yaml"
    ]
    result = json.loads((out / "promote.json").read_text(encoding="utf-8"))
    assert result["previous"] == "1.0.0"
    assert result["version"] == "1.4.2"
    assert result["image"] == image
    assert result["digest"].startswith("sha256:")
    assert result["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert "Subject: [PATCH] chore(deploy): promote web to 1.4.2 in prd" in (
        out / "promote.patch"
    ).read_text(encoding="utf-8")
    assert "1.0.0 -> 1.4.2" in capsys.readouterr().out

    # Again: the version is there already; nothing changes, and it says so.
    head = git(repo, "rev-parse", "HEAD")
    assert promote(repo, out, "--to", "prd", "--version", "1.4.2", monkeypatch=monkeypatch) == 0
    assert "is at 1.4.2 already: nothing to do" in capsys.readouterr().out
    assert git(repo, "rev-parse", "HEAD") == head
    assert overlay.read_bytes() == before.replace(b'tag: "1.0.0"', b'tag: "1.4.2"')


def test_an_unpublished_version_is_refused_and_nothing_is_written(
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = push(services, services.registry, "1.4.2", tmp_path)
    repo = repository(tmp_path, image)
    before = (repo / "charts/web/values-prd.yaml").read_bytes()
    head = git(repo, "rev-parse", "HEAD")

    code = promote(
        repo, tmp_path / "out", "--env", "prd", "--version", "1.4.3", monkeypatch=monkeypatch
    )

    assert code == 2
    assert f"{image}:1.4.3 is not in the registry" in capsys.readouterr().err
    assert (repo / "charts/web/values-prd.yaml").read_bytes() == before
    assert git(repo, "rev-parse", "HEAD") == head


def test_the_auth_registry_with_credentials_by_reference_only(
    services: Services,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = push(services, services.auth_registry, "2.0.0", tmp_path)
    repo = repository(tmp_path, image)
    out = tmp_path / "out"
    base = ("--env", "prd", "--version", "2.0.0")

    assert promote(repo, out, *base, monkeypatch=monkeypatch) == 3
    assert "wants credentials" in capsys.readouterr().err

    monkeypatch.setenv("WRONG_PASSWORD", "not-the-password")
    wrong = ("--registry-username", services.auth_user, "--registry-password", "env:WRONG_PASSWORD")
    assert promote(repo, out, *base, *wrong, monkeypatch=monkeypatch) == 3
    assert "refused the credentials of 'ci'" in capsys.readouterr().err

    password = services.auth_password
    given = (
        "--registry-username",
        services.auth_user,
        "--registry-password",
        f"file:{services.auth_password_file}",
    )
    assert promote(repo, out, *base, *given, "--format", "json", monkeypatch=monkeypatch) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["result"]["version"] == "2.0.0"
    assert 'tag: "2.0.0"' in (repo / "charts/web/values-prd.yaml").read_text(encoding="utf-8")
    written = [
        p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*") if p.is_file()
    ]
    for text in (printed.out, printed.err, git(repo, "log", "-p"), *written):
        assert password not in text


def test_pull_request_mode_commits_on_a_branch_and_writes_the_body(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = push(services, services.registry, "1.5.0", tmp_path)
    repo = repository(tmp_path, image)
    out = tmp_path / "out"

    args = ("--env", "prd", "--version", "1.5.0", "--pr")
    assert promote(repo, out, *args, monkeypatch=monkeypatch) == 0

    assert git(repo, "branch", "--show-current").strip() == "promote/web-prd-1.5.0"
    assert git(repo, "log", "-1", "--format=%s", "main") == "feat: the web chart\n"
    body = (out / "promote-pr.md").read_text(encoding="utf-8")
    assert "## Promote web to 1.5.0 in prd" in body
    assert "| from | `1.0.0` |" in body


def test_from_another_environment_and_a_nested_path(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = push(services, services.registry, "3.1.0", tmp_path)
    repo = repository(tmp_path, image, b"# prd\nchat:\n  replicas: 2\n")
    (repo / "charts/web/values-dev.yaml").write_text(
        f"chat:\n  image:\n    repository: {image}\n    tag: 3.1.0\n", encoding="utf-8"
    )
    git(repo, "commit", "--quiet", "--all", "--message", "chore: dev runs 3.1.0")
    args = ("--from", "dev", "--to", "prd", "--path", "chat.image.tag", "--image", image)

    assert promote(repo, tmp_path / "out", *args, monkeypatch=monkeypatch) == 0

    assert (repo / "charts/web/values-prd.yaml").read_text(encoding="utf-8") == (
        "# prd\nchat:\n  replicas: 2\n  image:\n    tag: 3.1.0\n"
    )


def test_refusals_name_what_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = repository(tmp_path, "127.0.0.1:5000/acme/never-pushed")
    out = tmp_path / "out"
    (repo / "charts/web/values-prd.yaml").write_bytes(b"replicaCount: 9\n")  # uncommitted

    assert promote(repo, out, "--env", "prd", "--version", "1.0.1", monkeypatch=monkeypatch) == 2
    assert "charts/web/values-prd.yaml: has uncommitted changes" in capsys.readouterr().err

    assert promote(repo, out, "--env", "stg", "--version", "1.0.1", monkeypatch=monkeypatch) == 2
    assert "no environment 'stg'; environments: dev, prd" in capsys.readouterr().err

    assert promote(repo, out, "--env", "prd", monkeypatch=monkeypatch) == 2
    assert "pass --version X or --from ENV" in capsys.readouterr().err

    bare = tmp_path / "bare"
    shutil.copytree(FIXTURE_REPOS / "ok", bare)
    for overlay in (bare / "charts/web").glob("values-*.yaml"):
        overlay.unlink()
    assert (
        promote(bare, out, "--env", "default", "--version", "1.0.1", monkeypatch=monkeypatch) == 2
    )
    assert "has no values file of its own" in capsys.readouterr().err


# --- the edit itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version", ["1.20", "1e3", "true", "010", "yes", "y", "1_000", "0x1F", "1:20"]
)
def test_versions_yaml_would_misread_are_quoted(version: str) -> None:
    edit = set_scalar("image:\n  tag: 1.0.0 # c\n", parse_path("image.tag"), version)
    assert edit.text == f'image:\n  tag: "{version}" # c\n'
    assert yaml.safe_load(edit.text)["image"]["tag"] == version


@pytest.mark.parametrize("version", ["1.4.2", "v1.4.2", "1.4.2-rc.1", "sha-abc1234"])
def test_plain_versions_stay_plain(version: str) -> None:
    edit = set_scalar("image:\n  tag: 1.0.0\n", parse_path("image.tag"), version)
    assert edit.text == f"image:\n  tag: {version}\n"


def test_quotes_in_the_file_are_kept() -> None:
    edit = set_scalar("image:\n  tag: '1.0'\n", parse_path("image.tag"), "2.0.0")
    assert edit.text == "image:\n  tag: '2.0.0'\n"


def test_missing_keys_are_added_at_the_mapping_s_indentation() -> None:
    text = "image:\n    repository: x\n    nested:\n      a: 1\n# about next\nnext: 2\n"
    edit = set_scalar(text, parse_path("image.tag"), "1.0.0")
    assert edit.text == (
        "image:\n    repository: x\n    nested:\n      a: 1\n    tag: 1.0.0\n"
        "# about next\nnext: 2\n"
    )
    assert set_scalar("", parse_path("a.b"), "1").text == 'a:\n  b: "1"\n'
    assert set_scalar("image:\nx: 1\n", parse_path("image.tag"), "1.0.0").text == (
        "image:\n  tag: 1.0.0\nx: 1\n"
    )


def test_windows_line_ends_are_kept() -> None:
    edit = set_scalar("a: 1\r\nimage:\r\n  tag: 1.0\r\n", parse_path("image.tag"), "1.1.0")
    assert edit.text == "a: 1\r\nimage:\r\n  tag: 1.1.0\r\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image: {repository: x}\n", "flow mapping"),
        ("image:\n  tag: &t 1.0\nother: *t\n", "anchor"),
        ("image:\n  tag: [1]\n", "not a plain or quoted value"),
        ("image: x\n", "image is not a mapping"),
        ("a: 1\na: 2\n", "duplicate key"),
        ("- a\n", "not a mapping of values"),
    ],
)
def test_what_cannot_be_edited_safely_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValuesFileError, match=message):
        set_scalar(text, parse_path("image.tag"), "1.0.0")


# --- the registry's token flow -------------------------------------------------------------------

TOKEN = "a-pull-token"  # noqa: S105 - the fake registry's own


class _GhcrLike(BaseHTTPRequestHandler):
    """GHCR's answers: a 401 challenge naming the token realm; tokens for Basic credentials."""

    password = "s3cret"  # noqa: S105 - the fake registry's own

    def log_message(self, *_args: object) -> None:
        pass

    def _send(self, code: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/token?"):
            expected = "Basic " + base64.b64encode(f"ci:{self.password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._send(401, {})
                return
            assert "scope=repository%3Aacme%2Fchat%3Apull" in self.path
            self._send(
                200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode()
            )
            return
        self.do_HEAD()

    def do_HEAD(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            port = self.server.server_address[1]
            challenge = (
                f'Bearer realm="http://127.0.0.1:{port}/token",service="registry.test",'
                'scope="repository:acme/chat:pull"'
            )
            self._send(401, {"WWW-Authenticate": challenge})
            return
        if self.path == "/v2/acme/chat/manifests/1.4.2":
            assert "application/vnd.oci.image.index.v1+json" in self.headers["Accept"]
            self._send(200, {"Docker-Content-Digest": "sha256:" + "a" * 64})
            return
        self._send(404, {})


@pytest.fixture
def ghcr_like() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GhcrLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_tokens_are_asked_for_with_the_credentials(ghcr_like: str) -> None:
    name = registry.parse_image(f"{ghcr_like}/acme/chat")
    good = registry.Credentials("ci", _GhcrLike.password)

    assert registry.manifest_digest(name, "1.4.2", good) == "sha256:" + "a" * 64
    assert registry.manifest_digest(name, "9.9.9", good) is None
    with pytest.raises(SetupError, match="refused the credentials of 'ci'") as refused:
        registry.manifest_digest(name, "1.4.2", registry.Credentials("ci", "wrong-password"))
    assert "wrong-password" not in str(refused.value)


def test_image_names_and_tags() -> None:
    assert str(registry.parse_image("nginx")) == "docker.io/library/nginx"
    assert registry.parse_image("nginx").api_host == "registry-1.docker.io"
    assert str(registry.parse_image("ghcr.io/acme/chat")) == "ghcr.io/acme/chat"
    for bad in ("ghcr.io/acme/chat:1.0", "ghcr.io/Acme/chat", "a/b@sha256:00"):
        with pytest.raises(ConfigError):
            registry.parse_image(bad)
    with pytest.raises(ConfigError, match="expected an image tag"):
        registry.check_tag("../../v2")
