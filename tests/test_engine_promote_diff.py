"""`promote` and `diff` called for real with `dagger call` on the local engine.

promote checks a tag in the htpasswd registry (127.0.0.1:5001, reached from the module through
`--registry-service`), commits in the git container and returns the commit as promote.patch,
which `git am` applies here. diff renders the planted fixture of tests/test_diff.py at both
sides in the tool containers and must report what the local runner reports.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from engine import Engine
from services import Services, find_services
from test_diff import assert_the_planted_changes, plant, run_diff
from test_promote import git, push, repository


def test_promote_commits_in_the_engine_and_returns_the_patch(
    engine: Engine, module: Path, tmp_path: Path
) -> None:
    services: Services = find_services()
    image = push(services, services.auth_registry, "1.4.2", tmp_path)
    repo = repository(tmp_path, image, prepare=engine.use_look_alikes)
    overlay = repo / "charts/web/values-prd.yaml"
    before = overlay.read_bytes()
    password_env = {"PROMOTE_REGISTRY_PASSWORD": services.auth_password}
    port = services.auth_registry.rsplit(":", 1)[1]
    common = (
        "promote",
        "--git-dir",
        str(repo / ".git"),
        "--env",
        "prd",
        "--registry-username",
        services.auth_user,
        "--registry-password",
        "env:PROMOTE_REGISTRY_PASSWORD",
        "--registry-service",
        f"tcp://localhost:{port}",
    )
    out = tmp_path / "artifacts"

    done = engine.call(
        module,
        *common,
        "--version",
        "1.4.2",
        "export",
        "--path",
        str(out),
        source=repo,
        env=password_env,
    ).check()

    result = json.loads((out / "promote.json").read_text(encoding="utf-8"))
    assert (result["changed"], result["previous"], result["version"]) == (True, "1.0.0", "1.4.2")
    assert result["digest"].startswith("sha256:")
    assert overlay.read_bytes() == before  # nothing exported over the checkout
    git(repo, "am", "--quiet", str(out / "promote.patch"))
    assert overlay.read_bytes() == before.replace(b'tag: "1.0.0"', b'tag: "1.4.2"')
    assert git(repo, "log", "-1", "--format=%s%n%an") == (
        "chore(deploy): promote web to 1.4.2 in prd\ngitops-pipeline\n"
    )
    assert services.auth_password not in done.stdout + done.stderr

    refused = engine.call(
        module,
        *common,
        "--version",
        "9.9.9",
        "export",
        "--path",
        str(tmp_path / "refused"),
        source=repo,
        env=password_env,
    )
    assert refused.exit_code != 0
    assert f"{image}:9.9.9 is not in the registry" in refused.stderr
    assert services.auth_password not in refused.stdout + refused.stderr


def test_diff_reports_the_planted_changes_as_the_local_runner_does(
    engine: Engine, module: Path, tmp_path: Path
) -> None:
    repo = plant(tmp_path / "repo", prepare=engine.use_look_alikes)
    out = tmp_path / "artifacts"

    engine.call(
        module,
        "diff",
        "--base",
        "main",
        "--git-dir",
        str(repo / ".git"),
        "export",
        "--path",
        str(out),
        source=repo,
    ).check()

    in_engine = json.loads((out / "diff.json").read_text(encoding="utf-8"))
    assert_the_planted_changes(in_engine, repo)
    assert (out / "diff.md").read_text(encoding="utf-8").count("<details>") == 1
    local_out = tmp_path / "local"
    assert run_diff(repo, local_out, "--base", "main") == 0
    local = json.loads((local_out / "diff.json").read_text(encoding="utf-8"))
    assert in_engine == local
    assert subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines() == [" M charts/shop/Chart.yaml", " M charts/shop/values-prd.yaml"]
