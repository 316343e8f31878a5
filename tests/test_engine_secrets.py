"""`seal` and validate's secrets check called for real with `dagger call` on the local engine.

The value reaches the module only as a Dagger Secret (`--value env:NAME`); the sealed file is
opened with the pinned kubeseal and the test's private key. Neither the call's output nor the
exported files may hold the plaintext.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import yaml
from conftest import requires_tools
from engine import Engine
from secrets_pki import Pki, make_pki
from test_engine import chart_repo, summary

from pipeline.tools import require

PASSWORD = "engine-pw-6c1d-never-printed"  # noqa: S105 - the plaintext the test looks for
TOKEN = "engine-token-92ab-never-printed"  # noqa: S105
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"


def secrets_repo(engine: Engine, target: Path) -> Path:
    repo = chart_repo(engine, target, "ok")
    config = repo / "pipeline.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    # The secrets container is a Python image with detect-secrets: the Python look-alike.
    data["tools"]["detect-secrets"] = {"image": engine.tool_images["ruff"]}
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return repo


def unsealed(pki: Pki, manifest: Path) -> dict[str, str]:
    opened = subprocess.run(
        [str(require("kubeseal")), "--recovery-unseal", "--recovery-private-key", str(pki.key)],
        input=manifest.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(opened.stdout)["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


@requires_tools("kubeseal")
def test_seal_in_the_engine_takes_the_value_as_a_dagger_secret(
    engine: Engine, module: Path, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    repo = secrets_repo(engine, tmp_path / "repo")
    sealed = tmp_path / "sealed.yaml"
    secrets = {"SEAL_ENGINE_PASSWORD": PASSWORD, "SEAL_ENGINE_TOKEN": TOKEN}

    first = engine.call(
        module, "seal", "--cert", str(pki.cert), "--name", "db", "--namespace", "chat",
        "--scope", "namespace-wide", "--key", "password", "--value", "env:SEAL_ENGINE_PASSWORD",
        "export", "--path", str(sealed), source=repo, env=secrets,
    ).check()  # fmt: skip

    manifest = yaml.safe_load(sealed.read_text(encoding="utf-8"))
    assert manifest["metadata"]["annotations"] == {
        "sealedsecrets.bitnami.com/namespace-wide": "true"
    }
    assert unsealed(pki, sealed) == {"password": PASSWORD}

    merged = tmp_path / "merged.yaml"
    second = engine.call(
        module, "seal", "--cert", str(pki.cert), "--merge-into", str(sealed),
        "--key", "token", "--value", "env:SEAL_ENGINE_TOKEN",
        "export", "--path", str(merged), source=repo, env=secrets,
    ).check()  # fmt: skip

    assert unsealed(pki, merged) == {"password": PASSWORD, "token": TOKEN}
    before, after = sealed.read_text().splitlines(), merged.read_text().splitlines()
    assert [line for line in before if line not in after] == []  # only a line added
    assert [line.split(":")[0].strip() for line in after if line not in before] == ["token"]
    for text in (first.stdout, first.stderr, second.stdout, second.stderr, merged.read_text()):
        assert PASSWORD not in text
        assert TOKEN not in text


def test_validate_in_the_engine_runs_the_secrets_check(
    engine: Engine, module: Path, tmp_path: Path
) -> None:
    repo = secrets_repo(engine, tmp_path / "repo")
    values = repo / "charts" / "web" / "values-dev.yaml"
    lines = values.read_text(encoding="utf-8").splitlines()
    lines.append(f"awsAccessKeyId: {AWS_KEY}")
    values.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "artifacts"

    engine.call(
        module, "validate", "--env", "dev", "export", "--path", str(out), source=repo
    ).check()

    stage = next(s for s in summary(out)["stages"] if s["stage"] == "secrets")
    assert stage["status"] == "failed"
    failed = [f for f in stage["findings"] if f["status"] == "failed"]
    assert [(f["file"], f["line"], f["rule"]) for f in failed] == [
        ("charts/web/values-dev.yaml", len(lines), "AWS Access Key")
    ]
    for path in out.rglob("*"):
        if path.is_file():
            assert AWS_KEY.encode() not in path.read_bytes(), path
