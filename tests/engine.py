"""The real Dagger engine of the tests: finding it, copying the module, calling functions.

`bash ci/engine.sh` starts the local engine (../shared/dagger-engine) and publishes
look-alikes of the pinned images, then writes .tools/engine.env. Tests that need the engine
call ``find_engine()``: it skips with a reason naming that script, or fails when
GITOPS_PIPELINE_REQUIRE_ALL=1.

The module under test is this repository's module, copied file for file, with one change:
`[tool.dagger] base-image` points at the engine's Python image, the override the README
documents. Repositories under test get the other documented override, pipeline.yaml's
`tools.<name>.image`, so every tool runs in its look-alike image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from conftest import REPO_ROOT
from services import env_file_values, unavailable

ENGINE_ENV = REPO_ROOT / ".tools" / "engine.env"
ENGINE_SCRIPT = "ci/engine.sh"
# The module's own files: what dagger.json's include keeps, read from git so a stray local
# file cannot make the copy differ from a clone.
MODULE_FILES = ("dagger.json", "pyproject.toml", "README.md", "uv.lock", "LICENSE")
MODULE_DIRS = ("pipeline",)
BASE_IMAGE_LINE = re.compile(r'^base-image = "[^"]*"$', re.MULTILINE)
CALL_TIMEOUT = 900


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> Call:
        assert self.exit_code == 0, (
            f"{' '.join(self.argv)} exited {self.exit_code}\n--- stdout\n{self.stdout[-3000:]}"
            f"\n--- stderr\n{self.stderr[-6000:]}"
        )
        return self


@dataclass(frozen=True)
class Engine:
    env: dict[str, str]  # the process environment that reaches the local engine
    module_base_image: str
    tool_images: dict[str, str]

    def dagger(
        self,
        *args: str,
        cwd: Path,
        timeout: float = CALL_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> Call:
        argv = ("dagger", "--progress=plain", *args)
        started = time.monotonic()
        # The CLI waits minutes for an engine it cannot reach: the time limit is ours.
        done = subprocess.run(
            argv,
            cwd=cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Call(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def call(
        self,
        module: Path,
        *args: str,
        source: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Call:
        """`dagger call` on the module, with `--source` when the repository is elsewhere."""
        constructor = ("--source", str(source)) if source is not None else ()
        return self.dagger("call", "-m", str(module), *constructor, *args, cwd=module, env=env)

    def use_look_alikes(self, repository: Path) -> None:
        """pipeline.yaml's documented override: each tool's image is its look-alike."""
        config = repository / "pipeline.yaml"
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {} if config.is_file() else {}
        data["tools"] = {name: {"image": image} for name, image in self.tool_images.items()}
        config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def find_engine() -> Engine:
    values = env_file_values(ENGINE_ENV, "GITOPS_TEST_ENGINE")
    if values.get("GITOPS_TEST_ENGINE") != "1":
        unavailable(f"no local Dagger engine ({ENGINE_ENV} not found)", ENGINE_SCRIPT)
    env = dict(os.environ)
    for key, value in values.items():
        env[key] = os.path.expandvars(value) if key == "PATH" else value
    if shutil.which("dagger", path=env.get("PATH")) is None:
        unavailable("the dagger CLI is not on the engine's PATH", ENGINE_SCRIPT)
    probe = subprocess.run(
        ["dagger", "core", "version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        unavailable(
            f"the local Dagger engine does not answer: {probe.stderr.strip()[-300:]}",
            ENGINE_SCRIPT,
        )
    images = dict(pair.split("=", 1) for pair in values["GITOPS_TEST_TOOL_IMAGES"].split())
    return Engine(env, values["GITOPS_TEST_MODULE_BASE_IMAGE"], images)


def module_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--", *MODULE_FILES, *MODULE_DIRS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in listed if (REPO_ROOT / name).is_file()]


def copy_module(target: Path, engine: Engine, *, files: tuple[str, ...] | None = None) -> Path:
    """This repository's module files under `target` (or only `files`), base image overridden."""
    for name in module_files() if files is None else files:
        source = REPO_ROOT / name
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            shutil.copy2(source, destination)
    pyproject = target / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert BASE_IMAGE_LINE.search(text), "pyproject.toml must pin [tool.dagger] base-image"
    pyproject.write_text(
        BASE_IMAGE_LINE.sub(f'base-image = "{engine.module_base_image}"', text), encoding="utf-8"
    )
    return target
