"""SealedSecrets for real: kubeseal opens what `seal` seals, `validate` accepts what kubeseal
seals, and damaged SealedSecrets or plaintext secrets fail naming file, field and line.

kubeseal is the pinned Go tool (`--recovery-unseal` with the test's own private key, and
`--cert` sealing offline); keys and certificates are made in the test. No plaintext value
may appear in any output or artifact: every test that seals checks that.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURE_REPOS, REPO_ROOT, requires_tools
from secrets_pki import Pki, ec_certificate, expired_certificate, make_pki, tls_identity

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.secrets import kubeseal_format
from pipeline.secrets.detector_types import DETECTOR_TYPES
from pipeline.secrets.scopes import CLUSTER_WIDE, NAMESPACE_WIDE, Scope
from pipeline.tools import require

SCOPES = [scope.value for scope in Scope]
PASSWORD = "pw-0f9e8d7c-never-printed"  # noqa: S105 - the plaintext the tests look for
USER = "user-5b4a-never-printed"
# The documentation's example access key id, split so no scanner reads it as ours.
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def cli(
    *args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def kubeseal(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require("kubeseal")), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_no_plaintext(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert USER not in text


def assert_no_plaintext_in(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data, path
            assert USER.encode() not in data, path
            assert AWS_KEY.encode() not in data, path


def unsealed(pki: Pki, manifest: str) -> dict[str, str]:
    opened = kubeseal("--recovery-unseal", "--recovery-private-key", str(pki.key), stdin=manifest)
    assert opened.returncode == 0, opened.stderr
    secret = json.loads(opened.stdout)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# --- seal: kubeseal opens what we seal -------------------------------------------------------


@requires_tools("kubeseal")
@pytest.mark.parametrize("scope", SCOPES)
def test_kubeseal_unseals_what_we_seal(scope: str, pki: Pki, tmp_path: Path) -> None:
    user_file = tmp_path / "user"
    user_file.write_text(USER, encoding="utf-8")
    sealed = tmp_path / "sealed.yaml"
    namespace = [] if scope == "cluster-wide" else ["--namespace", "chat"]
    done = cli(
        "seal", "--cert", str(pki.cert), "--name", "db", *namespace, "--scope", scope,
        "--value", "password=env:SEAL_TEST_PASSWORD", "--value", f"user=file:{user_file}",
        "--output", str(sealed),
        env={"SEAL_TEST_PASSWORD": PASSWORD},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert_no_plaintext(done.stdout, done.stderr, sealed.read_text(encoding="utf-8"))
    manifest = yaml.safe_load(sealed.read_text(encoding="utf-8"))
    expected = Scope(scope).annotations()
    assert (manifest["metadata"].get("annotations") or {}) == expected
    assert (manifest["spec"]["template"]["metadata"].get("annotations") or {}) == expected
    assert unsealed(pki, sealed.read_text(encoding="utf-8")) == {"password": PASSWORD, "user": USER}


@requires_tools("kubeseal")
def test_a_value_sealed_for_one_name_does_not_open_under_another(pki: Pki, tmp_path: Path) -> None:
    sealed = tmp_path / "sealed.yaml"
    cli(
        "seal", "--cert", str(pki.cert), "--name", "db", "--namespace", "chat",
        "--value", "password=env:SEAL_TEST_PASSWORD", "--output", str(sealed),
        env={"SEAL_TEST_PASSWORD": PASSWORD},
    )  # fmt: skip
    moved = sealed.read_text(encoding="utf-8").replace("name: db", "name: other")

    opened = kubeseal("--recovery-unseal", "--recovery-private-key", str(pki.key), stdin=moved)

    assert opened.returncode != 0  # the strict label binds namespace/name, as the controller's
    assert_no_plaintext(opened.stdout, opened.stderr)


@requires_tools("kubeseal")
def test_merge_into_updates_one_key_and_keeps_every_other_byte(pki: Pki, tmp_path: Path) -> None:
    sealed = tmp_path / "sealed.yaml"
    cli(
        "seal", "--cert", str(pki.cert), "--name", "db", "--namespace", "chat",
        "--value", "password=env:A", "--value", "user=env:B", "--output", str(sealed),
        env={"A": "old-password", "B": USER},
    )  # fmt: skip
    before = "# kept: a comment of ours\n" + sealed.read_text(encoding="utf-8")
    sealed.write_text(before, encoding="utf-8")

    done = cli(
        "seal", "--cert", str(pki.cert), "--merge-into", str(sealed),
        "--value", "password=env:A", "--value", "token=env:B",
        env={"A": PASSWORD, "B": "new-token"},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    after = sealed.read_text(encoding="utf-8")
    old_lines, new_lines = before.splitlines(), after.splitlines()
    changed = [line for line in new_lines if line not in old_lines]
    assert [line.split(":")[0].strip() for line in changed] == ["password", "token"]
    assert [line for line in old_lines if line not in new_lines] == [
        line for line in old_lines if line.strip().startswith("password:")
    ]
    assert after.startswith("# kept: a comment of ours\n")
    assert unsealed(pki, after) == {"password": PASSWORD, "user": USER, "token": "new-token"}
    assert_no_plaintext(done.stdout, done.stderr)


def test_merge_into_refuses_flags_that_disagree_with_the_file(pki: Pki, tmp_path: Path) -> None:
    sealed = tmp_path / "sealed.yaml"
    cli(
        "seal", "--cert", str(pki.cert), "--name", "db", "--namespace", "chat",
        "--value", "password=env:A", "--output", str(sealed), env={"A": PASSWORD},
    )  # fmt: skip
    before = sealed.read_bytes()

    done = cli(
        "seal", "--cert", str(pki.cert), "--merge-into", str(sealed), "--scope", "cluster-wide",
        "--value", "password=env:A", env={"A": PASSWORD},
    )  # fmt: skip

    assert done.returncode == 2
    assert str(sealed) in done.stderr
    assert "--scope cluster-wide differs from the file's strict" in done.stderr
    assert sealed.read_bytes() == before


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_text("not a certificate\n") and p, "not a PEM certificate"),
        (ec_certificate, "not RSA"),
        (expired_certificate, "expired on 2021-01-01 00:00:00 UTC (valid from 2020-01-01"),
    ],
    ids=["not-a-cert", "not-rsa", "expired"],
)
def test_a_wrong_certificate_is_exit_2_naming_the_file(
    make: Any, expected: str, tmp_path: Path
) -> None:
    cert = make(tmp_path / "cert.pem")

    done = cli(
        "seal", "--cert", str(cert), "--name", "db", "--namespace", "chat",
        "--value", "password=env:A", env={"A": PASSWORD},
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert str(cert) in done.stderr
    assert expected in done.stderr
    assert_no_plaintext(done.stdout, done.stderr)


def test_a_private_key_given_as_certificate_says_so(pki: Pki) -> None:
    done = cli(
        "seal", "--cert", str(pki.key), "--name", "db", "--namespace", "chat",
        "--value", "password=env:A", env={"A": PASSWORD},
    )  # fmt: skip

    assert done.returncode == 2
    assert "that is a private key" in done.stderr
    assert "PRIVATE KEY" not in done.stderr


@pytest.mark.parametrize(
    "flag", [f"password={PASSWORD}", PASSWORD, f"password=plain:{PASSWORD}", "pass word=env:A"]
)
def test_a_value_on_the_command_line_is_refused_and_never_repeated(flag: str, pki: Pki) -> None:
    done = cli("seal", "--cert", str(pki.cert), "--name", "db", "--namespace", "c", "--value", flag)

    assert done.returncode == 2
    assert "--value" in done.stderr
    assert_no_plaintext(done.stdout, done.stderr)


def test_a_missing_namespace_for_strict_scope_is_exit_2(pki: Pki) -> None:
    done = cli(
        "seal", "--cert", str(pki.cert), "--name", "db", "--value", "password=env:A",
        env={"A": PASSWORD},
    )  # fmt: skip

    assert done.returncode == 2
    assert "--namespace: is required for a strict SealedSecret" in done.stderr


@requires_tools("kubeseal")
def test_the_certificate_can_come_from_an_https_url(pki: Pki, tmp_path: Path) -> None:
    tls_cert, tls_key = tls_identity(tmp_path / "tls")
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(pki.cert, served / "cert.pem")
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_cert, tls_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        sealed = tmp_path / "sealed.yaml"
        args = ("seal", "--name", "db", "--namespace", "chat", "--value", "password=env:A")
        done = cli(
            *args, "--cert", f"{url}/cert.pem", "--output", str(sealed),
            env={"A": PASSWORD, "SSL_CERT_FILE": str(tls_cert)},
        )  # fmt: skip
        missing = cli(
            *args, "--cert", f"{url}/nope.pem", env={"A": PASSWORD, "SSL_CERT_FILE": str(tls_cert)}
        )
        untrusted = cli(*args, "--cert", f"{url}/cert.pem", env={"A": PASSWORD})
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert done.returncode == 0, done.stderr
    assert unsealed(pki, sealed.read_text(encoding="utf-8")) == {"password": PASSWORD}
    assert missing.returncode == 2
    assert f"{url}/nope.pem: --cert: the server answered HTTP 404" in missing.stderr
    assert untrusted.returncode == 3  # the server's certificate is not trusted: not fetched
    assert "could not be fetched" in untrusted.stderr


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        del format, args


def test_plain_http_certificate_urls_are_refused(pki: Pki) -> None:
    done = cli(
        "seal", "--cert", "http://127.0.0.1:9/cert.pem", "--name", "db", "--namespace", "c",
        "--value", "password=env:A", env={"A": PASSWORD},
    )  # fmt: skip

    assert done.returncode == 2
    assert "must be https://" in done.stderr


def test_json_answer_names_keys_never_values(pki: Pki) -> None:
    done = cli(
        "seal", "--cert", str(pki.cert), "--name", "db", "--namespace", "chat", "--format",
        "json", "--value", "password=env:A", env={"A": PASSWORD},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["result"]["keys"] == ["password"]
    assert answer["result"]["scope"] == "strict"
    manifest = yaml.safe_load(answer["result"]["manifest"])
    label = b"chat/db"
    blob = base64.b64decode(manifest["spec"]["encryptedData"]["password"])
    assert kubeseal_format.unseal(pki.private_key, blob, label) == PASSWORD.encode()
    assert_no_plaintext(done.stdout, done.stderr)


# --- validate: our check accepts what kubeseal seals, and fails what is damaged ----------------


def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE_REPOS / "ok", repo)
    return repo


def kubeseal_sealed(pki: Pki, scope: str, name: str) -> str:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "chat"},
        "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
    }
    done = kubeseal(
        "--cert", str(pki.cert), "--scope", scope, "--format", "yaml", stdin=json.dumps(secret)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def secrets_stage(out: Path) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return next(s for s in summary["stages"] if s["stage"] == "secrets")


@requires_tools("helm", "kubeconform", "conftest", "kubeseal")
def test_validate_accepts_what_kubeseal_seals_in_every_scope(pki: Pki, tmp_path: Path) -> None:
    repo = repository(tmp_path)
    (repo / "secrets").mkdir()
    for scope in SCOPES:
        text = kubeseal_sealed(pki, scope, f"db-{scope}")
        (repo / "secrets" / f"{scope}.yaml").write_text(text, encoding="utf-8")
        # Our reading of kubeseal's layout: each value opens under the scope's label.
        document = yaml.safe_load(text)
        blob = base64.b64decode(document["spec"]["encryptedData"]["password"])
        label = Scope(scope).label("chat", f"db-{scope}")
        assert kubeseal_format.unseal(pki.private_key, blob, label) == PASSWORD.encode()
    out = tmp_path / "out"

    done = cli("validate", "--source", str(repo), "--out", str(out), "--cert", str(pki.cert))

    assert done.returncode == 0, done.stdout + done.stderr
    stage = secrets_stage(out)
    assert stage["status"] == "passed"
    assert "3 committed SealedSecret file(s)" in stage["summary"]
    assert_no_plaintext_in(out)
    # Held to another controller's certificate, with a key of another size: every value fails.
    other = make_pki(tmp_path / "other", bits=3072)
    again = cli("validate", "--source", str(repo), "--out", str(out), "--cert", str(other.cert))
    failed = [f for f in secrets_stage(out)["findings"] if f["status"] == "failed"]
    assert again.returncode == 1
    assert sorted(f["file"] for f in failed) == sorted(f"secrets/{s}.yaml" for s in SCOPES)
    expected = (
        "spec.encryptedData.password: was sealed for a 2048-bit key, but the certificate's key "
        "has 3072 bits: sealed for another controller"
    )
    assert {f["message"] for f in failed} == {expected}


@requires_tools("helm", "kubeconform", "conftest", "kubeseal")
def test_a_wrong_scope_annotation_and_a_corrupted_value_fail_naming_file_and_field(
    pki: Pki, tmp_path: Path
) -> None:
    repo = repository(tmp_path)
    (repo / "secrets").mkdir()
    wrong_scope = yaml.safe_load(kubeseal_sealed(pki, "strict", "db"))
    wrong_scope["metadata"]["annotations"] = {NAMESPACE_WIDE: "true"}
    (repo / "secrets" / "wrong-scope.yaml").write_text(yaml.safe_dump(wrong_scope), "utf-8")
    not_true = yaml.safe_load(kubeseal_sealed(pki, "cluster-wide", "api"))
    not_true["metadata"]["annotations"][CLUSTER_WIDE] = "yes"
    (repo / "secrets" / "not-true.yaml").write_text(yaml.safe_dump(not_true), "utf-8")
    corrupted = kubeseal_sealed(pki, "strict", "token")
    value = yaml.safe_load(corrupted)["spec"]["encryptedData"]["password"]
    corrupted = corrupted.replace(value, value[: len(value) // 2])
    (repo / "secrets" / "corrupted.yaml").write_text(corrupted, encoding="utf-8")
    out = tmp_path / "out"

    done = cli("validate", "--source", str(repo), "--out", str(out))

    assert done.returncode == 1
    failed = {
        (f["file"], f["message"].split(":")[0]): f
        for f in secrets_stage(out)["findings"]
        if f["status"] == "failed"
    }
    assert set(failed) == {
        ("secrets/wrong-scope.yaml", "spec.template.metadata.annotations"),
        ("secrets/not-true.yaml", f"metadata.annotations.{CLUSTER_WIDE}"),
        ("secrets/not-true.yaml", "spec.template.metadata.annotations"),
        ("secrets/corrupted.yaml", "spec.encryptedData.password"),
    }
    password_line = corrupted.splitlines().index(
        next(line for line in corrupted.splitlines() if line.strip().startswith("password:"))
    )
    assert failed["secrets/corrupted.yaml", "spec.encryptedData.password"]["line"] == (
        password_line + 1
    )
    annotations = (repo / "secrets" / "not-true.yaml").read_text().splitlines()
    assert annotations[failed["secrets/not-true.yaml", f"metadata.annotations.{CLUSTER_WIDE}"]
                       ["line"] - 1].strip().startswith(CLUSTER_WIDE)  # fmt: skip
    annotations_text = (out / "github-annotations.txt").read_text(encoding="utf-8")
    assert "file=secrets/corrupted.yaml" in annotations_text
    assert_no_plaintext_in(out)


@requires_tools("helm", "kubeconform", "conftest")
def test_a_plaintext_secret_in_a_values_file_fails_naming_file_and_line(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    values = repo / "charts" / "web" / "values-dev.yaml"
    lines = values.read_text(encoding="utf-8").splitlines()
    lines.append(f"awsAccessKeyId: {AWS_KEY}")
    values.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"

    done = cli("validate", "--source", str(repo), "--out", str(out))

    assert done.returncode == 1
    failed = [f for f in secrets_stage(out)["findings"] if f["status"] == "failed"]
    assert [(f["file"], f["line"], f["rule"]) for f in failed] == [
        ("charts/web/values-dev.yaml", len(lines), "AWS Access Key")
    ]
    assert AWS_KEY not in done.stdout + done.stderr
    assert_no_plaintext_in(out)

    # Allowed in pipeline.yaml, with a reason: waived, named in every report, and passing.
    (repo / "pipeline.yaml").write_text(
        "secrets:\n  allow:\n    - file: charts/web/values-*.yaml\n      type: AWS Access Key\n"
        "      reason: the documentation's example key\n",
        encoding="utf-8",
    )
    allowed = cli("validate", "--source", str(repo), "--out", str(out))
    assert allowed.returncode == 0, allowed.stdout
    waived = [f for f in secrets_stage(out)["findings"] if f["status"] == "waived"]
    assert [f["waiver"] for f in waived] == ["the documentation's example key (pipeline.yaml:3)"]


def test_the_secrets_block_is_checked_strictly(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "secrets:\n  allow:\n    - file: a.yaml\n      type: AWS Acces Key\n      reason: x\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"did you mean 'AWS Access Key'") as raised:
        load_config(tmp_path)
    assert raised.value.line == 4

    (tmp_path / "pipeline.yaml").write_text("secrets:\n  alow: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"allow") as raised:
        load_config(tmp_path)
    assert raised.value.line == 2

    (tmp_path / "pipeline.yaml").write_text("secrets:\n  allow:\n    - file: a\n", "utf-8")
    with pytest.raises(ConfigError, match=r"reason: is required"):
        load_config(tmp_path)


def test_the_allow_list_types_are_detect_secrets_own() -> None:
    from detect_secrets.core.plugins.util import (  # noqa: PLC0415 - the library itself
        get_mapping_from_secret_type_to_class,
    )

    assert set(DETECTOR_TYPES) == set(get_mapping_from_secret_type_to_class()) - {
        "Public IP (ipv4)"
    }


def test_the_layout_is_read_back_exactly() -> None:
    blob = (512).to_bytes(2, "big") + bytes(512) + bytes(16)

    layout = kubeseal_format.split(blob)

    assert isinstance(layout, kubeseal_format.Layout)
    assert layout.key_bits == 4096
    assert isinstance(kubeseal_format.split(blob[:-1]), str)  # one byte short of the tag
    assert isinstance(kubeseal_format.split((600).to_bytes(2, "big") + bytes(512)), str)


def test_a_remembered_scan_is_reused_only_for_the_same_content_and_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detect_secrets.core.scan  # noqa: PLC0415 - the library itself

    from pipeline.secrets.detect import scan  # noqa: PLC0415
    from pipeline.step_cache import StepCache  # noqa: PLC0415

    source = tmp_path / "repo"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    leaky = f"image: nginx\nawsAccessKeyId: {AWS_KEY}\n"
    (source / "a" / "values.yaml").write_text(leaky, encoding="utf-8")
    (source / "b" / "values.yaml").write_text(leaky, encoding="utf-8")  # an identical copy
    (source / "b" / "other.yaml").write_text("image: nginx\n", encoding="utf-8")
    memo = StepCache(tmp_path / "cache")
    files = ["a/values.yaml", "b/values.yaml", "b/other.yaml"]

    first = [(d.file, d.line, d.type) for d in scan(source, files, memo)]
    assert first == [("a/values.yaml", 2, "AWS Access Key"), ("b/values.yaml", 2, "AWS Access Key")]
    # What is remembered is where and what kind, never the value.
    for stored in (tmp_path / "cache").rglob("*.json"):
        assert AWS_KEY not in stored.read_text(encoding="utf-8")

    # Unchanged files are not scanned again: detect-secrets is not called at all.
    def not_again(filename: str) -> list[Any]:
        raise AssertionError(f"scanned {filename} again")

    monkeypatch.setattr(detect_secrets.core.scan, "scan_file", not_again)
    assert [(d.file, d.line, d.type) for d in scan(source, files, memo)] == first
    monkeypatch.undo()

    # A changed file is scanned again; so is the same content under another name, whose
    # extension decides how detect-secrets reads it.
    (source / "a" / "values.yaml").write_text(f"image: nginx\n\n\nkey: {AWS_KEY}\n", "utf-8")
    (source / "b" / "other.txt").write_text(leaky, encoding="utf-8")
    again = [(d.file, d.line, d.type) for d in scan(source, [*files, "b/other.txt"], memo)]
    assert again[0] == ("a/values.yaml", 4, "AWS Access Key")
    assert ("b/other.txt", 2, "AWS Access Key") in again
    assert [(d.file, d.line, d.type) for d in scan(source, [*files, "b/other.txt"])] == again


@requires_tools("helm", "kubeconform", "conftest")
def test_the_scan_started_before_rendering_reports_what_a_scan_after_it_does(
    tmp_path: Path,
) -> None:
    """On the host the plaintext scan overlaps helm; it still reports only the files of the
    chart environments that rendered, in the stage's own order."""
    import anyio  # noqa: PLC0415

    from pipeline.run import Run  # noqa: PLC0415
    from pipeline.runners.local import LocalRunner  # noqa: PLC0415
    from pipeline.secrets.stage import secrets_stage  # noqa: PLC0415
    from pipeline.validate import validate  # noqa: PLC0415

    repo = repository(tmp_path)
    shutil.copytree(repo / "charts" / "web", repo / "charts" / "broken")
    for chart in ("web", "broken"):
        values = repo / "charts" / chart / "values-dev.yaml"
        values.write_text(values.read_text(encoding="utf-8") + f"awsKey: {AWS_KEY}\n", "utf-8")
    chart_yaml = repo / "charts" / "broken" / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text(encoding="utf-8").replace("name: web", "name: broken")
    )
    (repo / "charts" / "broken" / "templates" / "bad.yaml").write_text("{{ .Values.nope.nope }}\n")
    out = tmp_path / "out"
    run = Run(load_config(repo), LocalRunner(repo, out), out, on_host=True)

    outcome = anyio.run(validate, run)
    early = next(r for r in outcome.results if r.stage == "secrets")
    rendered = [item for item in outcome.rendered if item.text is not None]
    after = anyio.run(secrets_stage, run, rendered)

    assert early.findings == after.findings
    assert (early.status, early.summary) == (after.status, after.summary)
    flagged = {f.file for f in early.findings if f.status.failed}
    assert flagged == {"charts/web/values-dev.yaml"}  # not the chart that did not render


# Lines an indirect reference filter must judge as detect-secrets does: references in both
# bracket shapes and after every operator its regex knows, near misses, its length limit.
INDIRECT_REFERENCE_LINES = (
    "  password: vault.read(dbpass)",
    "  token: lookup[apitoken]",
    "secret = get_secret_key()",
    "api_key = request.headers['apikey']",
    "if key != os.environ['KEY']:",
    "key := env[NAME]",
    "a = b",
    "name: web(1",
    "name: (web)",
    "image: nginx",
    "  {{- toYaml .Values.resources | nindent 12 }}",
    "x" * 995 + " = f(y)",
    "x" * 1001 + " = f(y)",
    "",
)
SCANNED_SUFFIXES = {".yaml", ".yml", ".tpl", ".json", ".txt"}


def fixture_files() -> list[Path]:
    return sorted(
        p for p in (REPO_ROOT / "tests" / "fixtures").rglob("*") if p.suffix in SCANNED_SUFFIXES
    )


def test_our_indirect_reference_filter_gives_detect_secrets_own_verdicts() -> None:
    from detect_secrets.filters import heuristic  # noqa: PLC0415 - the library itself

    from pipeline.secrets import detect_filters  # noqa: PLC0415

    lines = list(INDIRECT_REFERENCE_LINES)
    for path in fixture_files():
        lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())

    ours = [(line, detect_filters.is_indirect_reference(line)) for line in lines]

    assert ours == [(line, heuristic.is_indirect_reference(line)) for line in lines]
    assert sum(verdict for _, verdict in ours[:6]) == 6  # the references are references


def test_a_scan_finds_what_detect_secrets_finds_with_its_own_filters(tmp_path: Path) -> None:
    from detect_secrets.core.scan import scan_file  # noqa: PLC0415 - the library itself
    from detect_secrets.settings import Settings, transient_settings  # noqa: PLC0415

    from pipeline.secrets import detect, detect_filters  # noqa: PLC0415

    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT / "tests" / "fixtures", source)
    leaky = source / "charts" / "leaky" / "templates" / "secret.yaml"
    leaky.parent.mkdir(parents=True)
    # Not YAML (a template), so detect-secrets reads its lines as they are: line 4 is an
    # indirect reference its filter drops, line 7 a plaintext password.
    leaky.write_text(
        "apiVersion: v1\nkind: Secret\nstringData:\n  password: vault.read(dbpass)\n"
        "  token: lookup[apitoken]\n  other: {{ .Values.x | quote }}\n"
        f"  apiKey: {PASSWORD}\n",
        encoding="utf-8",
    )
    files = [
        str(p.relative_to(source))
        for p in sorted(source.rglob("*"))
        if p.suffix in SCANNED_SUFFIXES
    ]

    ours = [(d.file, d.line, d.type) for d in detect.scan(source, files)]
    with transient_settings({"plugins_used": detect.plugins_used()}):  # its default filters
        theirs = [
            (relative, line, kind)
            for relative in files
            for line, kind in detect._scan_one(source / relative, scan_file)
        ]

    assert ours == theirs
    leaky_file = str(leaky.relative_to(source))
    assert [(line, kind) for file, line, kind in ours if file == leaky_file] == [
        (7, "Secret Keyword")
    ]
    # The scan uses ours in place of theirs, and every other default filter.
    used = {f["path"] for f in detect.filters_used()}
    stock = set(Settings().filters) - Settings.DEFAULT_FILTERS
    assert used == stock - {detect_filters.STOCK_INDIRECT_REFERENCE} | {
        detect_filters.INDIRECT_REFERENCE
    }
