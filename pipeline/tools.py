"""The one table of pinned tools that both runners read.

Every tool appears once, with the version that the local runner installs
(``go install`` into ``.tools/bin``, or an exact pip pin, or a Debian package)
and the container image, tag and digest, that the Dagger runner starts. The
image tag always carries the same version; ``tests/test_tools.py`` holds both
sides to it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path

from pipeline.errors import ConfigError, ToolMissingError, ToolVersionError

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
TOOLS_DIR_ENV = "GITOPS_PIPELINE_TOOLS_DIR"
INSTALL_SCRIPT = "ci/install-tools.sh"

# Images the Python tools and git run in. Pinned by digest so both runners are reproducible.
PYTHON_IMAGE = (
    "docker.io/library/python:3.12-slim"
    "@sha256:2c941e860699f878900b0edc2403613c234d4b32eda3cc9fa7036991a2a63c4a"
)
DEBIAN_IMAGE = (
    "docker.io/library/debian:bookworm-20251229-slim"
    "@sha256:d5d3f9c23164ea16f31852f95bd5959aad1c5e854332fe00f7b3a20fcc9f635c"
)


UV_PIN = "uv==0.13.9"  # installs the Python tools and the project's dependencies in containers
UV_CACHE = ("UV_CACHE_DIR", "/cache/uv")
# uv trusts the image's certificate store, as pip does: package indexes behind a proxy or an
# internal mirror with a private CA then work in containers too.
UV_SYSTEM_CERTS = ("UV_NATIVE_TLS", "true")


class Source(Enum):
    GO = "go"  # go install MODULE@vVERSION
    PYPI = "pypi"  # pip install NAME==VERSION (the project's dev extra pins the same)
    DEBIAN = "debian"  # apt-get install NAME=VERSION


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    source: Source
    package: str  # Go module path of the command, PyPI name, or Debian package
    image: str  # repository:tag@sha256:digest used by the Dagger runner
    container_binary: str = ""  # absolute path inside the image when it is not on PATH
    container_setup: tuple[tuple[str, ...], ...] = field(default=())
    cache_dirs: tuple[tuple[str, str], ...] = ()  # (env var, path) the tool caches under
    container_env: tuple[tuple[str, str], ...] = ()  # set before the setup commands run
    # Go tools: the `-X` link flag that stamps the version into `tool --version`, as the
    # project's own release builds do (a plain `go install` prints "dev" or "development").
    version_ldflag: str = ""
    # The container reads this package's own files: a module run with `python -m pipeline.…`
    # (so the heavy schema data stays out of the module runtime), or the built-in policies.
    runs_package: bool = False

    @property
    def binary(self) -> str:
        return self.name

    @property
    def install_spec(self) -> str:
        if self.source is Source.GO:
            return f"{self.package}@v{self.version}"
        if self.source is Source.PYPI:
            return f"{self.package}=={self.version}"
        return f"{self.package}={self.version}"

    @property
    def install_hint(self) -> str:
        if self.source is Source.GO:
            return f"run `bash {INSTALL_SCRIPT}` (go install {self.install_spec} into .tools/bin)"
        if self.source is Source.PYPI:
            return f"run `pip install '{self.install_spec}'` (or `pip install -e '.[dev]'`)"
        return f"run `apt-get install {self.install_spec}`"

    def argv0_in_container(self) -> str:
        return self.container_binary or self.binary


def _python_tool(
    name: str,
    version: str,
    *plugins: str,
    cache_dirs: tuple[tuple[str, str], ...] = (),
    container_binary: str = "",
    runs_package: bool = False,
) -> Tool:
    return Tool(
        name=name,
        version=version,
        source=Source.PYPI,
        package=name,
        image=PYTHON_IMAGE,
        container_binary=container_binary,
        container_env=(UV_SYSTEM_CERTS,),
        container_setup=(
            ("pip", "install", "--no-cache-dir", f"{UV_PIN}"),
            ("uv", "pip", "install", "--system", f"{name}=={version}", *plugins),
        ),
        cache_dirs=cache_dirs,
        runs_package=runs_package,
    )


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            name="helm",
            version="4.2.4",
            source=Source.GO,
            package="helm.sh/helm/v4/cmd/helm",
            version_ldflag="helm.sh/helm/v4/internal/version.version=v4.2.4",
            image="docker.io/alpine/helm:4.2.4@sha256:76c375eed56144c68d6197c55bc5a4552fb42002190b796729901cbab3ae6e51",
            cache_dirs=(("HELM_CACHE_HOME", "/cache/helm"),),
        ),
        Tool(
            name="kubeconform",
            version="0.7.0",
            source=Source.GO,
            package="github.com/yannh/kubeconform/cmd/kubeconform",
            version_ldflag="main.version=v0.7.0",
            image="ghcr.io/yannh/kubeconform:v0.7.0@sha256:85dbef6b4b312b99133decc9c6fc9495e9fc5f92293d4ff3b7e1b30f5611823c",
            container_binary="/kubeconform",
        ),
        Tool(
            name="conftest",
            version="0.69.0",
            source=Source.GO,
            package="github.com/open-policy-agent/conftest",
            version_ldflag="github.com/open-policy-agent/conftest/internal/version.Version=0.69.0",
            image="docker.io/openpolicyagent/conftest:v0.69.0@sha256:a38ba21668929a00dce2fe6ee43d1312228340bce5fd243f47dd0ce90516e558",
            runs_package=True,
        ),
        Tool(
            name="actionlint",
            version="1.7.12",
            source=Source.GO,
            package="github.com/rhysd/actionlint/cmd/actionlint",
            version_ldflag="github.com/rhysd/actionlint.version=1.7.12",
            image="docker.io/rhysd/actionlint:1.7.12@sha256:b1934ee5f1c509618f2508e6eb47ee0d3520686341fec936f3b79331f9315667",
        ),
        _python_tool("ruff", "0.17.6", cache_dirs=(("RUFF_CACHE_DIR", "/cache/ruff"), UV_CACHE)),
        _python_tool("mypy", "2.4.1", cache_dirs=(("MYPY_CACHE_DIR", "/cache/mypy"), UV_CACHE)),
        _python_tool("pytest", "9.2.0", "pytest-cov==7.1.0", cache_dirs=(UV_CACHE,)),
        # The Kubernetes JSON schemas the offline bundle is made from (pipeline.schemas).
        _python_tool(
            "kubernetes-validate",
            "1.37.0",
            cache_dirs=(UV_CACHE,),
            container_binary="python",
            runs_package=True,
        ),
        Tool(
            name="git",
            version="1:2.39.5-0+deb12u3",
            source=Source.DEBIAN,
            package="git",
            image=DEBIAN_IMAGE,
            container_setup=(
                ("apt-get", "update"),
                ("apt-get", "install", "-y", "--no-install-recommends", "git=1:2.39.5-0+deb12u3"),
            ),
        ),
        Tool(
            name="docker",
            version="20.10.24+dfsg1-1+deb12u1+b6",
            source=Source.DEBIAN,
            package="docker.io",
            image=DEBIAN_IMAGE,
            container_setup=(
                ("apt-get", "update"),
                (
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "docker.io=20.10.24+dfsg1-1+deb12u1+b6",
                ),
            ),
        ),
    )
}


def get_tool(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        known = ", ".join(sorted(TOOLS))
        raise ConfigError(f"unknown tool '{name}' (known: {known})") from None


def tools_dir() -> Path:
    override = os.environ.get(TOOLS_DIR_ENV)
    return Path(override) if override else PROJECT_ROOT / ".tools" / "bin"


def _search_path() -> str:
    # The venv's bin first: pip-installed tools live beside the interpreter running us.
    parts = [str(tools_dir()), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    return os.pathsep.join(parts)


def find_binary(tool: Tool) -> Path | None:
    found = shutil.which(tool.binary, path=_search_path())
    return Path(found) if found else None


_GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_GO_MOD_LINE = re.compile(r"^mod\t(?P<path>[^\t]+)\t(?P<version>[^\t]+)", re.MULTILINE)


def _read_uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:  # noqa: PLR2004 - varint continuation bit
            return value, offset
        shift += 7


@cache
def go_module_version(binary: Path) -> str | None:
    """The main module version embedded by the Go linker, as `go version -m` shows it.

    Commands built with `go install` report "development" or nothing from their own
    version flag; the build info is the only trustworthy record of what was installed.
    """
    data = binary.read_bytes()
    start = data.find(_GO_BUILDINFO_MAGIC)
    inline_strings_flag = 0x2
    if start < 0 or not data[start + 15] & inline_strings_flag:
        return None
    offset = start + 32
    go_version_len, offset = _read_uvarint(data, offset)
    offset += go_version_len
    modinfo_len, offset = _read_uvarint(data, offset)
    modinfo = data[offset : offset + modinfo_len].decode("utf-8", "replace")
    match = _GO_MOD_LINE.search(modinfo)
    return match["version"].removeprefix("v") if match else None


def _pypi_version(tool: Tool) -> str | None:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(tool.package)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class ToolStatus:
    tool: Tool
    path: Path | None
    installed_version: str | None

    @property
    def ok(self) -> bool:
        return self.path is not None and self.installed_version == self.tool.version


def inspect_tool(tool: Tool) -> ToolStatus:
    path = find_binary(tool)
    if path is None:
        return ToolStatus(tool, None, None)
    if tool.source is Source.GO:
        return ToolStatus(tool, path, go_module_version(path.resolve()))
    if tool.source is Source.PYPI:
        return ToolStatus(tool, path, _pypi_version(tool))
    return ToolStatus(tool, path, _debian_version(tool))


@cache
def _debian_version(tool: Tool) -> str | None:
    status = Path("/var/lib/dpkg/status")
    if not status.exists():
        return None
    for stanza in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        if f"Package: {tool.package}\n" in stanza + "\n":
            found = re.search(r"^Version: (.+)$", stanza, re.MULTILINE)
            return found[1] if found else None
    return None


def require(tool_name: str) -> Path:
    """The host binary of a pinned tool, or a SetupError saying how to install it."""
    tool = get_tool(tool_name)
    status = inspect_tool(tool)
    if status.path is None:
        raise ToolMissingError(tool.name, tool.install_hint)
    if tool.source is Source.DEBIAN:
        # The host's git is accepted at any version: history reading does not depend on it.
        return status.path
    if status.installed_version != tool.version:
        raise ToolVersionError(
            tool.name,
            status.installed_version or "unknown",
            tool.version,
            str(status.path),
            tool.install_hint,
        )
    return status.path


def go_install_lines() -> list[str]:
    """`name module@version -X-flag` lines that ci/install-tools.sh installs."""
    return [
        f"{t.name} {t.install_spec} {t.version_ldflag}"
        for t in TOOLS.values()
        if t.source is Source.GO
    ]


if __name__ == "__main__":
    # Used by ci/install-tools.sh so the shell script holds no versions of its own.
    sys.stdout.write("\n".join(go_install_lines()) + "\n")
