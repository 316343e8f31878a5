"""Image tags, names and labels; docker steps; build and publish with real docker and registries.

The service tests talk to what `bash ci/services.sh` starts: dockerd, an open registry,
one with htpasswd auth and a local base image. What the registry holds is checked
through its own HTTP API, not through docker. The one stand-in is the injectable
``sleep`` of the retry loop; the registry that is down is a real closed port.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from conftest import REPO_ROOT, child_processes
from services import Observed, Services, find_services, registry_request, remove_local_images

from pipeline import publish
from pipeline.config import Config
from pipeline.errors import ConfigError, PipelineError
from pipeline.model import SecretRef, Step, src
from pipeline.run import Run
from pipeline.runners.local import LocalRunner
from pipeline.runners.recording import RecordingRunner, Reply, describe
from pipeline.stages import docker

IMAGES = REPO_ROOT / "tests" / "fixtures" / "images"
SHA = "abc1234" + "0f" * 16 + "9"  # 40 hex digits
RUN_ID = secrets.token_hex(4)  # keeps repositories of concurrent test runs apart
DIGEST_A = "sha256:" + "a" * 64


# --- image_tags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.2.3", ["1.2.3", "1.2", "1", "latest", "sha-abc1234"]),
        ("v1.2.3", ["1.2.3", "1.2", "1", "latest", "sha-abc1234"]),
        ("10.20.30", ["10.20.30", "10.20", "10", "latest", "sha-abc1234"]),
        ("0.4.1", ["0.4.1", "0.4", "latest", "sha-abc1234"]),
        ("v0.0.1", ["0.0.1", "0.0", "latest", "sha-abc1234"]),
        ("2.0.0-rc.1", ["2.0.0-rc.1", "sha-abc1234"]),
        ("v0.3.0-beta.2", ["0.3.0-beta.2", "sha-abc1234"]),
    ],
)
def test_image_tags(version: str, expected: list[str]) -> None:
    assert publish.image_tags(version, SHA) == expected


def test_image_tags_lower_cases_the_sha() -> None:
    assert publish.image_tags("1.0.0", "ABC1234DEF")[-1] == "sha-abc1234"


@pytest.mark.parametrize("version", ["1.2", "latest", "01.2.3", "1.2.3.4", "", "vv1.2.3"])
def test_image_tags_rejects_what_is_not_semver(version: str) -> None:
    with pytest.raises(ConfigError, match="semantic versioning") as caught:
        publish.image_tags(version, SHA)
    assert caught.value.exit_code == 2


def test_image_tags_rejects_build_metadata() -> None:
    with pytest.raises(ConfigError, match="build metadata"):
        publish.image_tags("1.2.3+build.7", SHA)


@pytest.mark.parametrize("sha", ["abc12", "not-a-sha", ""])
def test_image_tags_rejects_a_bad_sha(sha: str) -> None:
    with pytest.raises(ConfigError, match="hex digits"):
        publish.image_tags("1.2.3", sha)


# --- check_image_name ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme/chat",
        "127.0.0.1:5000/acme/chat-x",
        "localhost:5000/acme/chat",
        "localhost/acme/chat",
        "REGISTRY.example.com/acme/chat",  # host names are case-insensitive
        "registry.example.com:443/a/b_c/d.e/f__g/h--i",
        "acme/chat",
        "chat",
        "[::1]:5000/acme/chat",
    ],
)
def test_valid_image_names(image: str) -> None:
    publish.check_image_name(image)


def test_upper_case_owner_is_named_with_the_lower_case_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        publish.check_image_name("ghcr.io/Acme/Chat")
    message = str(caught.value)
    assert "'Acme'" in message
    assert "'Chat'" in message
    assert "lower-case" in message
    assert "'ghcr.io/acme/chat'" in message
    assert caught.value.exit_code == 2


def test_upper_case_without_a_host_is_a_path_too() -> None:
    with pytest.raises(ConfigError, match=r"use 'acme/chat'"):
        publish.check_image_name("Acme/chat")


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ("ghcr.io/acme/chat:1.2.3", "carries a tag"),
        ("127.0.0.1:5000/acme/chat:latest", "carries a tag"),
        ("ghcr.io/acme/chat@" + DIGEST_A, "carries a digest"),
        ("ghcr.io/acme/-chat", "invalid part"),
        ("ghcr.io/acme/chat_", "invalid part"),
        ("ghcr.io/acme//chat", "invalid part"),
        ("ghcr.io/acme/ch at", "invalid part"),
        ("ghcr.io/", "invalid part"),
        ("bad_host.io:x/acme/chat", "registry host"),
        ("", "empty"),
        (" ghcr.io/acme/chat", "surrounding spaces"),
        ("ghcr.io/" + "a" * 256, "longer than 255"),
    ],
)
def test_invalid_image_names(image: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        publish.check_image_name(image)


def test_registry_of() -> None:
    assert publish.registry_of("ghcr.io/acme/chat") == "ghcr.io"
    assert publish.registry_of("127.0.0.1:5000/acme/chat") == "127.0.0.1:5000"
    assert publish.registry_of("acme/chat") == "docker.io"


# --- oci_labels ---------------------------------------------------------------------------


def test_oci_labels() -> None:
    import datetime as dt  # noqa: PLC0415

    labels = publish.oci_labels(
        title="chat",
        source="https://github.com/acme/chat",
        version="1.2.3",
        revision=SHA,
        created=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        licenses="Apache-2.0",
        description="A chat service",
    )
    assert labels == {
        "org.opencontainers.image.title": "chat",
        "org.opencontainers.image.url": "https://github.com/acme/chat",
        "org.opencontainers.image.source": "https://github.com/acme/chat",
        "org.opencontainers.image.version": "1.2.3",
        "org.opencontainers.image.created": "2026-01-02T03:04:05Z",
        "org.opencontainers.image.revision": SHA,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.description": "A chat service",
    }


def test_oci_labels_leave_out_a_missing_description() -> None:
    labels = publish.oci_labels(
        title="t", source="s", version="1.0.0", revision=SHA, created="c", licenses="MIT"
    )
    assert "org.opencontainers.image.description" not in labels


# --- docker steps and parsers -------------------------------------------------------------


def test_login_step_sends_the_password_on_stdin_only(tmp_path: Path) -> None:
    password = SecretRef("REGISTRY_PASSWORD", "env:SOME_TOKEN")
    step = docker.login_step("ghcr.io", "octocat", password, docker_config=tmp_path)

    assert step.tool == "docker"
    assert step.args == ("login", "--username", "octocat", "--password-stdin", "ghcr.io")
    assert step.stdin_secret == password
    assert step.secrets == ()  # a secret variable would be in the environment
    assert step.env == (("DOCKER_CONFIG", str(tmp_path)),)


def test_build_step_argv(tmp_path: Path) -> None:
    step = docker.build_step(
        src("app"),
        src("app/Dockerfile"),
        ["r/x:build-abc1234"],
        {"b.label": "two", "a.label": "one=1"},
        {"BASE": "base:1"},
        "runtime",
        "linux/amd64",
        iidfile="images/x.iid",
        docker_config=tmp_path,
    )
    rendered = [str(a) for a in step.args]
    assert rendered == [
        "build",
        "--file",
        "$SOURCE/app/Dockerfile",
        "--label",
        "a.label=one=1",
        "--label",
        "b.label=two",
        "--build-arg",
        "BASE=base:1",
        "--tag",
        "r/x:build-abc1234",
        "--target",
        "runtime",
        "--platform",
        "linux/amd64",
        "--iidfile",
        "$OUT/images/x.iid",
        "$SOURCE/app",
    ]
    assert step.outputs == ("images/x.iid",)
    assert dict(step.env) == {"DOCKER_CONFIG": str(tmp_path)}


def test_every_docker_step_uses_the_given_config_dir(tmp_path: Path) -> None:
    steps = [
        docker.tag_step("a:1", "b:2", docker_config=tmp_path),
        docker.push_step("b:2", docker_config=tmp_path),
        docker.pull_step("b:2", docker_config=tmp_path),
        docker.logout_step("ghcr.io", docker_config=tmp_path),
    ]
    assert [s.args for s in steps] == [
        ("tag", "a:1", "b:2"),
        ("push", "b:2"),
        ("pull", "b:2"),
        ("logout", "ghcr.io"),
    ]
    assert all(dict(s.env) == {"DOCKER_CONFIG": str(tmp_path)} for s in steps)


def test_build_step_rejects_a_label_name_with_equals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label name"):
        docker.build_step(
            src(),
            src("Dockerfile"),
            [],
            {"a=b": "c"},
            {},
            None,
            None,
            iidfile="x.iid",
            docker_config=tmp_path,
        )


def test_pushed_digest() -> None:
    digest_b = "sha256:" + "b" * 64
    output = (
        "The push refers to repository [127.0.0.1:5000/acme/chat]\n"
        "5f70bf18a086: Pushed\n"
        f"1.2.3: digest: {DIGEST_A} size: 735\n"
        f"latest: digest: {digest_b} size: 735\n"
    )
    assert docker.pushed_digest(output) == digest_b
    assert docker.pushed_digest(output, "1.2.3") == DIGEST_A
    assert docker.pushed_digest(output, "1.2") is None
    assert docker.pushed_digest("no digest here") is None


def test_pulled_digest() -> None:
    output = f"1.2.3: Pulling from acme/chat\nDigest: {DIGEST_A}\nStatus: Image is up to date\n"
    assert docker.pulled_digest(output) == DIGEST_A
    assert docker.pulled_digest("Status: nothing") is None


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("login attempt to http://r/v2/ failed with status: 401 Unauthorized", "auth"),
        ("no basic auth credentials", "auth"),
        ("denied: requested access to the resource is denied", "auth"),
        ("unexpected status from HEAD request: 403 Forbidden", "auth"),
        ("unauthorized: authentication required", "auth"),
        (
            'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
            "transient",
        ),
        ("net/http: TLS handshake timeout", "transient"),
        ("Get https://r/v2/: net/http: request canceled (Client.Timeout exceeded)", "transient"),
        ("dial tcp 10.0.0.1:443: i/o timeout", "transient"),
        ("received unexpected HTTP status: 503 Service Unavailable", "transient"),
        ("received unexpected HTTP status: 500 Internal Server Error", "transient"),
        ("Patch https://r/v2/a/blobs/uploads/x: EOF", "transient"),
        ("put: unexpected EOF", "transient"),
        ("toomanyrequests: rate limit exceeded", "transient"),
        ("manifest invalid: manifest invalid", "other"),
        ("name unknown: repository name not known to registry", "other"),
        ("tag does not exist: 127.0.0.1:5000/acme/chat:1.2.5", "other"),
        (f"blob upload unknown {'5031' * 10}", "other"),  # digits inside hex are not statuses
        ("open /cfg/config.json: permission denied", "other"),
        ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", "other"),
        ("permission denied while trying to connect to the Docker daemon socket", "other"),
    ],
)
def test_classify(stderr: str, kind: str) -> None:
    assert docker.classify(stderr) == kind


def test_tail_drops_colour_and_the_legacy_builder_notice() -> None:
    stderr = (
        "DEPRECATED: The legacy builder is deprecated and will be removed.\n"
        "            Install the buildx component to build images with BuildKit:\n"
        "            https://docs.docker.com/go/buildx/\n\n"
        "\x1b[91mboom\n\x1b[0mThe command returned a non-zero code: 3\n"
    )
    assert docker.tail(stderr) == "boom\nThe command returned a non-zero code: 3"


# --- checks before any step ---------------------------------------------------------------


def recording_run(tmp_path: Path) -> tuple[Run, RecordingRunner]:
    runner = RecordingRunner()
    return Run(config=Config(source=IMAGES), runner=runner, out=tmp_path / "out"), runner


@pytest.mark.anyio
async def test_publish_rejects_an_upper_case_owner_before_any_step(tmp_path: Path) -> None:
    run, runner = recording_run(tmp_path)
    with pytest.raises(ConfigError, match=r"'ghcr\.io/acme/chat'"):
        await publish.publish(
            run,
            local_ref="ghcr.io/acme/chat:build-abc1234",
            image="ghcr.io/Acme/chat",
            tags=["1.2.3"],
            registry="ghcr.io",
            username="octocat",
            password=SecretRef("REGISTRY_PASSWORD", "env:NOT_READ"),
            docker_config=tmp_path / "docker",
        )
    assert runner.steps == []


@pytest.mark.anyio
async def test_build_rejects_an_upper_case_owner_before_any_step(tmp_path: Path) -> None:
    run, runner = recording_run(tmp_path)
    with pytest.raises(ConfigError, match="lower-case"):
        await publish.build(
            run,
            image="ghcr.io/Acme/chat",
            dockerfile="hello/Dockerfile",
            context="hello",
            labels={},
            build_args={},
            docker_config=tmp_path / "docker",
            revision=SHA,
        )
    assert runner.steps == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"registry": "docker.io"}, "lives in registry ghcr.io"),
        ({"tags": []}, "no tags"),
        ({"tags": ["1.2.3", "1.2.3"]}, "duplicate"),
        ({"tags": ["bad tag"]}, "invalid image tag"),
        ({"username": None}, "needs a username"),
        ({"retries": -1}, "retries"),
    ],
)
async def test_publish_rejects_bad_arguments_before_any_step(
    tmp_path: Path, overrides: dict[str, object], fragment: str
) -> None:
    run, runner = recording_run(tmp_path)
    arguments: dict[str, object] = {
        "local_ref": "ghcr.io/acme/chat:build-abc1234",
        "image": "ghcr.io/acme/chat",
        "tags": ["1.2.3"],
        "registry": "ghcr.io",
        "username": "octocat",
        "password": SecretRef("REGISTRY_PASSWORD", "env:NOT_READ"),
        "docker_config": tmp_path / "docker",
    } | overrides
    with pytest.raises(ConfigError, match=fragment):
        await publish.publish(run, **arguments)  # type: ignore[arg-type]
    assert runner.steps == []


@pytest.mark.anyio
async def test_publish_step_order_and_logout_on_failure(tmp_path: Path) -> None:
    """Logout runs even when a push fails for good; the order is login, tag, push, logout."""

    def reply(step: Step) -> Reply:
        if step.args[0] == "push":
            return Reply(exit_code=1, stderr="manifest invalid: manifest invalid")
        return Reply()

    runner = RecordingRunner(responder=reply)
    run = Run(config=Config(source=IMAGES), runner=runner, out=tmp_path)
    with pytest.raises(publish.PublishError, match="manifest invalid") as caught:
        await publish.publish(
            run,
            local_ref="ghcr.io/acme/chat:build-abc1234",
            image="ghcr.io/acme/chat",
            tags=["1.2.3", "latest"],
            registry="ghcr.io",
            username="octocat",
            password=SecretRef("REGISTRY_PASSWORD", "env:NOT_READ"),
            docker_config=tmp_path,
        )
    assert caught.value.exit_code == 1
    assert [s.args[0] for s in runner.steps] == ["login", "tag", "push", "logout"]


# --- real docker and registries -----------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> Services:
    return find_services()


@pytest.fixture(scope="module", autouse=True)
def _remove_local_tags() -> Iterator[None]:
    """Untag every local image of this module's repositories afterwards (their layers stay)."""
    yield
    remove_local_images(RUN_ID)


def local_run(tmp_path: Path) -> tuple[Run, Observed]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    runner = Observed(LocalRunner(source=IMAGES, out=out))
    return Run(config=Config(source=IMAGES), runner=runner, out=out), runner


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def labels_for(image: str) -> dict[str, str]:
    return publish.oci_labels(
        title=image.rsplit("/", 1)[-1],
        source="https://github.com/acme/chat",
        version="1.2.3",
        revision=SHA,
        created="2026-01-02T03:04:05Z",
        licenses="Apache-2.0",
        description="publish test image",
    )


@dataclass(frozen=True)
class Built:
    image: str
    built: publish.BuiltImage


@pytest.fixture(scope="module")
def built(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The hello image, built once for the module (with the open registry's name)."""
    image = f"{services.registry}/acme/chat-{RUN_ID}"
    run, _ = local_run(tmp_path_factory.mktemp("build"))

    async def go() -> publish.BuiltImage:
        return await publish.build(
            run,
            image=image,
            dockerfile=src("hello/Dockerfile"),
            context=src("hello"),
            labels=labels_for(image),
            build_args={"BASE": services.base_image},
            docker_config=run.out / "docker-config",
        )

    return Built(image, anyio.run(go))


def inspect(ref: str) -> dict[str, object]:
    shown = subprocess.run(
        ["docker", "image", "inspect", ref], capture_output=True, text=True, check=True
    )
    found: dict[str, object] = json.loads(shown.stdout)[0]
    return found


def test_build_labels_the_image(built: Built) -> None:
    assert built.built.local_ref == f"{built.image}:build-abc1234"
    details = inspect(built.built.local_ref)
    config = details["Config"]
    assert isinstance(config, dict)
    assert details["Id"] == built.built.image_id
    assert config["Labels"] == labels_for(built.image)
    assert config["User"] == "10001"


@pytest.mark.anyio
async def test_a_failed_build_is_a_build_error(services: Services, tmp_path: Path) -> None:
    run, _ = local_run(tmp_path)
    with pytest.raises(publish.BuildError) as caught:
        await publish.build(
            run,
            image=f"{services.registry}/acme/broken-{RUN_ID}",
            dockerfile="broken/Dockerfile",
            context="broken",
            labels={},
            build_args={"BASE": services.base_image},
            docker_config=tmp_path / "docker-config",
            revision=SHA,
        )
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert isinstance(caught.value, PipelineError)
    assert "widget.c:3: error: expected ';'" in message
    assert "returned a non-zero code: 3" in message
    assert "legacy builder" not in message
    assert "\x1b[" not in message


def assert_registry_holds(
    registry: str,
    image: str,
    pushed: list[publish.PushedRef],
    tags: list[str],
    auth: tuple[str, str] | None = None,
) -> None:
    """Through the registry's HTTP API: the tags exist and all name the returned digest."""
    name = image.removeprefix(f"{registry}/")
    assert [p.ref for p in pushed] == [f"{image}:{t}" for t in tags]
    digests = {p.digest for p in pushed}
    assert len(digests) == 1
    (digest,) = digests
    _, body = registry_request(registry, f"{name}/tags/list", auth=auth)
    assert sorted(json.loads(body)["tags"]) == sorted(tags)
    for tag in tags:
        head, _ = registry_request(registry, f"{name}/manifests/{tag}", method="HEAD", auth=auth)
        assert head["Docker-Content-Digest"] == digest, tag
        got, manifest = registry_request(registry, f"{name}/manifests/{tag}", auth=auth)
        assert got["Docker-Content-Digest"] == digest, tag
        # The digest is of the bytes served: the manifest is exactly what was pushed.
        assert f"sha256:{hashlib.sha256(manifest).hexdigest()}" == digest
    assert pushed[0].pinned == f"{image}@{digest}"


@pytest.mark.anyio
async def test_publish_to_an_open_registry(
    built: Built, services: Services, tmp_path: Path
) -> None:
    run, runner = local_run(tmp_path)
    tags = publish.image_tags("1.2.3", SHA)
    sleeps = Sleeps()

    pushed = await publish.publish(
        run,
        local_ref=built.built.local_ref,
        image=built.image,
        tags=tags,
        registry=services.registry,
        username=None,
        password=None,
        docker_config=tmp_path / "docker-config",
        sleep=sleeps,
    )

    assert tags == ["1.2.3", "1.2", "1", "latest", "sha-abc1234"]
    assert_registry_holds(services.registry, built.image, pushed, tags)
    assert runner.args_of("login") == []
    assert runner.args_of("logout") == []  # nothing to log out of
    assert len(runner.args_of("push")) == len(tags)
    assert sleeps.delays == []


def search_for_leaks(
    secret: str,
    runner: Observed,
    places: list[Path],
    texts: dict[str, str],
) -> list[str]:
    """Every place the secret must not be, named where it was found."""
    found = [name for name, text in texts.items() if secret in text]
    for result in runner.results:
        where = result.step.name
        step_text = describe(result.step) + repr(result.step.args) + repr(result.step.env)
        outputs = {"stdout": result.stdout, "stderr": result.stderr, "step": step_text}
        found += [f"{where} {part}" for part, text in outputs.items() if secret in text]
    for place in places:
        for file in (p for p in place.rglob("*") if p.is_file()):
            if secret.encode() in file.read_bytes():
                found.append(str(file))
    return found


@dataclass(frozen=True)
class Printed:
    """What a test printed and logged (at DEBUG, from the start of the test)."""

    capsys: pytest.CaptureFixture[str]
    caplog: pytest.LogCaptureFixture

    def texts(self) -> dict[str, str]:
        """stdout and stderr so far (read, so consumed) and the log text."""
        captured = self.capsys.readouterr()
        return {"stdout": captured.out, "stderr": captured.err, "log": self.caplog.text}


@pytest.fixture
def printed(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Printed:
    caplog.set_level(logging.DEBUG)
    return Printed(capsys, caplog)


def auth_image(services: Services, suffix: str) -> str:
    return f"{services.auth_registry}/acme/chat-{RUN_ID}-{suffix}"


@pytest.mark.anyio
async def test_publish_with_credentials_logs_in_and_out(
    built: Built, services: Services, tmp_path: Path, printed: Printed
) -> None:
    run, runner = local_run(tmp_path)
    image = auth_image(services, "ok")
    config_dir = tmp_path / "docker-config"
    tags = publish.image_tags("1.2.3", SHA)

    pushed = await publish.publish(
        run,
        local_ref=built.built.local_ref,
        image=image,
        tags=tags,
        registry=services.auth_registry,
        username=services.auth_user,
        password=SecretRef("REGISTRY_PASSWORD", f"file:{services.auth_password_file}"),
        docker_config=config_dir,
    )

    password = services.auth_password
    assert_registry_holds(
        services.auth_registry, image, pushed, tags, auth=(services.auth_user, password)
    )
    assert runner.args_of("login") == [
        ("login", "--username", services.auth_user, "--password-stdin", services.auth_registry)
    ]
    assert runner.args_of("logout") == [("logout", services.auth_registry)]
    # The login went to the per-run config dir, and the logout took it away again.
    auths = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))["auths"]
    assert services.auth_registry not in auths
    texts = printed.texts()
    assert search_for_leaks(password, runner, [run.out, config_dir], texts) == []


@pytest.mark.anyio
async def test_a_wrong_password_is_an_auth_error_that_leaks_nothing(
    built: Built, services: Services, tmp_path: Path, printed: Printed
) -> None:
    run, runner = local_run(tmp_path)
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    password_file = tmp_path / "wrong-password"  # outside the out dir on purpose
    password_file.write_text(wrong + "\n", encoding="utf-8")
    config_dir = tmp_path / "docker-config"
    sleeps = Sleeps()

    with pytest.raises(publish.RegistryAuthError) as caught:
        await publish.publish(
            run,
            local_ref=built.built.local_ref,
            image=auth_image(services, "wrong"),
            tags=publish.image_tags("1.2.3", SHA),
            registry=services.auth_registry,
            username=services.auth_user,
            password=SecretRef("REGISTRY_PASSWORD", f"file:{password_file}"),
            docker_config=config_dir,
            sleep=sleeps,
        )

    error = caught.value
    message = str(error)
    assert error.exit_code == 3
    assert services.auth_registry in message
    assert repr(services.auth_user) in message
    assert "token/password" in message
    assert sleeps.delays == []  # a rejected password is never retried
    assert [r.step.args[0] for r in runner.results] == ["login", "logout"]
    assert runner.results[0].exit_code != 0
    texts = {
        "message": message,
        "repr": repr(error),
        "args": repr(error.args),
        **printed.texts(),
        "records": " ".join(r.getMessage() for r in printed.caplog.records),
    }
    assert search_for_leaks(wrong, runner, [run.out, config_dir], texts) == []


@pytest.mark.anyio
async def test_a_push_without_login_to_an_auth_registry_is_an_auth_error(
    built: Built, services: Services, tmp_path: Path
) -> None:
    run, runner = local_run(tmp_path)
    sleeps = Sleeps()
    with pytest.raises(publish.RegistryAuthError, match="anonymous") as caught:
        await publish.publish(
            run,
            local_ref=built.built.local_ref,
            image=auth_image(services, "anon"),
            tags=["1.2.3"],
            registry=services.auth_registry,
            username=None,
            password=None,
            docker_config=tmp_path / "docker-config",
            sleep=sleeps,
        )
    assert caught.value.exit_code == 3
    assert sleeps.delays == []
    assert len(runner.args_of("push")) == 1


def unused_port() -> int:
    # The kernel hands out a free port; once closed, nothing listens there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.anyio
async def test_a_registry_that_is_down_is_retried_then_unavailable(
    built: Built, tmp_path: Path
) -> None:
    run, runner = local_run(tmp_path)
    registry = f"127.0.0.1:{unused_port()}"
    sleeps = Sleeps()

    with pytest.raises(publish.RegistryUnavailableError) as caught:
        await publish.publish(
            run,
            local_ref=built.built.local_ref,
            image=f"{registry}/acme/chat-{RUN_ID}",
            tags=publish.image_tags("1.2.3", SHA),
            registry=registry,
            username=None,
            password=None,
            docker_config=tmp_path / "docker-config",
            retries=3,
            backoff=0.5,
            sleep=sleeps,
        )

    error = caught.value
    assert error.exit_code == 3
    assert sleeps.delays == [0.5, 1.0, 2.0]  # retried `retries` times, doubling each time
    assert len(runner.args_of("push")) == 4  # the first attempt and three retries
    assert error.attempts == 4
    message = str(error)
    assert f"registry {registry} is unavailable" in message
    assert "all 4 attempts" in message
    assert "connection refused" in message


@pytest.mark.anyio
async def test_a_non_lower_case_name_is_rejected_before_docker_runs(
    built: Built, services: Services, tmp_path: Path
) -> None:
    run, runner = local_run(tmp_path)
    with pytest.raises(ConfigError, match=f"acme/chat-{RUN_ID}"):
        await publish.publish(
            run,
            local_ref=built.built.local_ref,
            image=f"{services.registry}/Acme/chat-{RUN_ID}",
            tags=["1.2.3"],
            registry=services.registry,
            username=None,
            password=None,
            docker_config=tmp_path / "docker-config",
        )
    assert runner.results == []


@pytest.mark.anyio
async def test_a_build_killed_by_a_signal_names_it(services: Services, tmp_path: Path) -> None:
    context = tmp_path / "slow"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN sleep 300\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    run = Run(config=Config(source=tmp_path), runner=LocalRunner(source=tmp_path, out=out), out=out)
    killed: list[int] = []
    errors: list[publish.BuildError] = []

    async def kill_the_build() -> None:
        with anyio.fail_after(60):
            while not (found := child_processes("docker")):  # noqa: ASYNC110 - polls /proc
                await anyio.sleep(0.05)
        await anyio.sleep(1)  # into the build, not its start-up
        os.kill(found[0], signal.SIGKILL)
        killed.append(found[0])

    async def build() -> None:
        try:
            await publish.build(
                run,
                image=f"{services.registry}/acme/slow-{RUN_ID}",
                dockerfile="slow/Dockerfile",
                context="slow",
                labels={},
                build_args={"BASE": services.base_image},
                docker_config=tmp_path / "docker-config",
                revision=SHA,
            )
        except publish.BuildError as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(kill_the_build)
        group.start_soon(build)
    assert killed
    (error,) = errors
    assert "docker was killed by SIGKILL (exit code -9) while running" in str(error)
