"""The one table of pinned tools that both runners read.

Every tool appears once, with the version that the local runner installs
(the project's release archive verified by its published SHA-256, or ``go install``,
into ``.tools/bin``; or an exact pip pin, or a Debian package) and the container
image, tag and digest, that the Dagger runner starts. The image tag always carries
the same version; ``tests/test_tools.py`` holds both sides to it.
"""

from __future__ import annotations

import hashlib
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


@dataclass(frozen=True)
class ReleaseArchive:
    """One platform's official release archive of a Go tool, pinned by its published sum."""

    platform: str  # GOOS-GOARCH of the machine it runs on: linux-amd64, darwin-arm64, ...
    url: str
    sha256: str  # as the project publishes it; a mirror serves the same bytes
    member: str  # the binary's path inside the archive: the only member ever extracted

    @property
    def file(self) -> str:
        return self.url.rsplit("/", 1)[-1]


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
    image: str  # repository:tag@sha256:digest used by the Dagger runner; "" runs on the host only
    container_binary: str = ""  # absolute path inside the image when it is not on PATH
    # The image has GNU coreutils' `timeout` (Debian-based): steps are stopped in the container.
    container_timeout: bool = False
    container_setup: tuple[tuple[str, ...], ...] = field(default=())
    cache_dirs: tuple[tuple[str, str], ...] = ()  # (env var, path) the tool caches under
    container_env: tuple[tuple[str, str], ...] = ()  # set before the setup commands run
    # Go tools: the `-X` link flag that stamps the version into `tool --version`, as the
    # project's own release builds do (a plain `go install` prints "dev" or "development").
    version_ldflag: str = ""
    # The container reads this package's own files: a module run with `python -m pipeline.…`
    # (so the heavy schema data stays out of the module runtime), or the built-in policies.
    runs_package: bool = False
    # Go tools: the project's own release archives, installed without Go (pipeline.tool_archives).
    archives: tuple[ReleaseArchive, ...] = ()

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
            return (
                f"run `bash {INSTALL_SCRIPT}` (its verified release archive, or "
                f"go install {self.install_spec}, into .tools/bin)"
            )
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
        container_timeout=True,
    )


# Official release archives of the Go tools and the SHA-256 sums their projects publish,
# each cross-checked against public repositories that pin the same file. A platform left out
# had no published sum we could confirm: there `tools --install` falls back to `go install`.
def _helm_archive(platform: str, sha256: str) -> ReleaseArchive:
    url = f"https://get.helm.sh/helm-v4.2.4-{platform}.tar.gz"
    return ReleaseArchive(platform, url, sha256, f"{platform}/helm")


# Source: the v4.2.4 release notes, github.com/helm/helm/releases/tag/v4.2.4, which list each
# archive with its sum (also served as https://get.helm.sh/<file>.sha256sum). linux-amd64 and
# linux-arm64 are pinned identically in other public repositories' installers and Dockerfiles.
HELM_ARCHIVES = (
    _helm_archive(
        "linux-amd64", "c306b46f719b0a4da32d0f78ee21bf90ce8d602f15b22ab753f0674d1670a7f3"
    ),
    _helm_archive(
        "linux-arm64", "564de2191b881e9f71b5606b25345821ea1682f06ab90499d3ab22b530176da1"
    ),
    _helm_archive(
        "darwin-amd64", "6c163d687ca03c3b5c01928e53bbbcf9518278f47ce7a2f249a5a08e8bdaa2bc"
    ),
    _helm_archive(
        "darwin-arm64", "d747eb4e28bd2727173d15b759fa0a17822291ec09db7ced3d55af290a3661a2"
    ),
)


def _kubeconform_archive(platform: str, sha256: str) -> ReleaseArchive:
    url = (
        "https://github.com/yannh/kubeconform/releases/download/v0.7.0/"
        f"kubeconform-{platform}.tar.gz"
    )
    return ReleaseArchive(platform, url, sha256, "kubeconform")


# Source: the release's CHECKSUMS asset (github.com/yannh/kubeconform/releases/tag/v0.7.0), as
# recorded in cashapp/hermit-packages kubeconform.hcl (commit fae401cc, sha256-source = that
# CHECKSUMS file); the same four sums are pinned in other public repositories' install scripts.
KUBECONFORM_ARCHIVES = (
    _kubeconform_archive(
        "linux-amd64", "c31518ddd122663b3f3aa874cfe8178cb0988de944f29c74a0b9260920d115d3"
    ),
    _kubeconform_archive(
        "linux-arm64", "cc907ccf9e3c34523f0f32b69745265e0a6908ca85b92f41931d4537860eb83c"
    ),
    _kubeconform_archive(
        "darwin-amd64", "c6771cc894d82e1b12f35ee797dcda1f7da6a3787aa30902a15c264056dd40d4"
    ),
    _kubeconform_archive(
        "darwin-arm64", "b5d32b2cb77f9c781c976b20a85e2d0bc8f9184d5d1cfe665a2f31a19f99eeb9"
    ),
)


def _conftest_archive(platform: str, release_platform: str, sha256: str) -> ReleaseArchive:
    # goreleaser's uname-style names: Linux_x86_64, Darwin_arm64.
    url = (
        "https://github.com/open-policy-agent/conftest/releases/download/v0.69.0/"
        f"conftest_0.69.0_{release_platform}.tar.gz"
    )
    return ReleaseArchive(platform, url, sha256, "conftest")


# Source: the release's checksums.txt (github.com/open-policy-agent/conftest/releases/download/
# v0.69.0/checksums.txt), as quoted by several public repositories' pinned installers that
# agree. linux-arm64 and darwin-amd64 are left out: no two public sources confirmed a sum.
CONFTEST_ARCHIVES = (
    _conftest_archive(
        "linux-amd64",
        "Linux_x86_64",
        "96fc2fbf11f0afde51256647127e6f00a64ce839a4d9a0a1aef2426c0e6f4b3f",
    ),
    _conftest_archive(
        "darwin-arm64",
        "Darwin_arm64",
        "78302d045f0ec52e9786a06c6c621ac4516b4c5dd1e54efc8050c86c29b964d9",
    ),
)


def _actionlint_archive(platform: str, sha256: str) -> ReleaseArchive:
    url = (
        "https://github.com/rhysd/actionlint/releases/download/v1.7.12/"
        f"actionlint_1.7.12_{platform.replace('-', '_')}.tar.gz"
    )
    return ReleaseArchive(platform, url, sha256, "actionlint")


# Source: the release's actionlint_1.7.12_checksums.txt
# (github.com/rhysd/actionlint/releases/tag/v1.7.12), as quoted by many public repositories'
# pinned installers and tests, all four platforms in agreement.
ACTIONLINT_ARCHIVES = (
    _actionlint_archive(
        "linux-amd64", "8aca8db96f1b94770f1b0d72b6dddcb1ebb8123cb3712530b08cc387b349a3d8"
    ),
    _actionlint_archive(
        "linux-arm64", "325e971b6ba9bfa504672e29be93c24981eeb1c07576d730e9f7c8805afff0c6"
    ),
    _actionlint_archive(
        "darwin-amd64", "5b44c3bc2255115c9b69e30efc0fecdf498fdb63c5d58e17084fd5f16324c644"
    ),
    _actionlint_archive(
        "darwin-arm64", "aba9ced2dee8d27fecca3dc7feb1a7f9a52caefa1eb46f3271ea66b6e0e6953f"
    ),
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
            archives=HELM_ARCHIVES,
        ),
        Tool(
            name="kubeconform",
            version="0.7.0",
            source=Source.GO,
            package="github.com/yannh/kubeconform/cmd/kubeconform",
            version_ldflag="main.version=v0.7.0",
            image="ghcr.io/yannh/kubeconform:v0.7.0@sha256:85dbef6b4b312b99133decc9c6fc9495e9fc5f92293d4ff3b7e1b30f5611823c",
            container_binary="/kubeconform",
            archives=KUBECONFORM_ARCHIVES,
        ),
        Tool(
            name="conftest",
            version="0.69.0",
            source=Source.GO,
            package="github.com/open-policy-agent/conftest",
            version_ldflag="github.com/open-policy-agent/conftest/internal/version.Version=0.69.0",
            image="docker.io/openpolicyagent/conftest:v0.69.0@sha256:a38ba21668929a00dce2fe6ee43d1312228340bce5fd243f47dd0ce90516e558",
            runs_package=True,
            archives=CONFTEST_ARCHIVES,
        ),
        Tool(
            name="actionlint",
            version="1.7.12",
            source=Source.GO,
            package="github.com/rhysd/actionlint/cmd/actionlint",
            version_ldflag="github.com/rhysd/actionlint.version=1.7.12",
            image="docker.io/rhysd/actionlint:1.7.12@sha256:b1934ee5f1c509618f2508e6eb47ee0d3520686341fec936f3b79331f9315667",
            archives=ACTIONLINT_ARCHIVES,
        ),
        # Host only (the SealedSecret interop tests): no image of it could be pinned by digest
        # here. v0.27.1 is the newest the Go module proxy serves that `go install` accepts;
        # v0.40.0 is listed under this path but its go.mod declares github.com/bitnami/...
        Tool(
            name="kubeseal",
            version="0.27.1",
            source=Source.GO,
            package="github.com/bitnami-labs/sealed-secrets/cmd/kubeseal",
            version_ldflag="main.VERSION=0.27.1",
            image="",
        ),
        _python_tool("ruff", "0.17.6", cache_dirs=(("RUFF_CACHE_DIR", "/cache/ruff"), UV_CACHE)),
        _python_tool("mypy", "2.4.1", cache_dirs=(("MYPY_CACHE_DIR", "/cache/mypy"), UV_CACHE)),
        _python_tool(
            "pytest",
            "9.2.0",
            "pytest-cov==7.1.0",
            # Names the test that hangs, within the step's time limit (pipeline.limits).
            "pytest-timeout==2.4.0",
            cache_dirs=(UV_CACHE,),
        ),
        # The Kubernetes JSON schemas the offline bundle is made from (pipeline.schemas).
        _python_tool(
            "kubernetes-validate",
            "1.37.0",
            cache_dirs=(UV_CACHE,),
            container_binary="python",
            runs_package=True,
        ),
        # validate's secrets check and `seal` in Dagger (pipeline.secrets), with the certificate
        # reader they share; on the host both run in-process from the `secrets` extra.
        _python_tool(
            "detect-secrets",
            "1.5.0",
            "cryptography==50.0.2",
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
            container_timeout=True,
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
            container_timeout=True,
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
    match = _GO_MOD_LINE.search(_go_modinfo(binary))
    return match["version"].removeprefix("v") if match else None


@cache
def go_dependencies(binary: Path) -> dict[str, str]:
    """Module -> version (without the v) of every module a Go binary links (`dep` lines)."""
    found: dict[str, str] = {}
    for line in _go_modinfo(binary).splitlines():
        kind, _, rest = line.partition("\t")
        path, _, version = rest.partition("\t")
        if kind == "dep":
            found[path] = version.split("\t", 1)[0].removeprefix("v")
    return found


def go_dependency_version(binary: Path, module: str) -> str | None:
    """The version of a module a Go binary was built with (`dep` in `go version -m`)."""
    return go_dependencies(binary).get(module)


def _go_modinfo(binary: Path) -> str:
    data = binary.read_bytes()
    start = data.find(_GO_BUILDINFO_MAGIC)
    inline_strings_flag = 0x2
    if start < 0 or not data[start + 15] & inline_strings_flag:
        return ""
    offset = start + 32
    go_version_len, offset = _read_uvarint(data, offset)
    offset += go_version_len
    modinfo_len, offset = _read_uvarint(data, offset)
    return data[offset : offset + modinfo_len].decode("utf-8", "replace")


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


def archive_record(binary: Path) -> Path:
    """Where an archive install records what it verified, beside the binary."""
    return binary.parent / f".{binary.name}.archive"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@cache
def _recorded_version(binary: Path, size: int, mtime_ns: int) -> str | None:
    del size, mtime_ns  # part of the cache key only: a replaced binary is read again
    record = archive_record(binary)
    try:
        binary_sha256, version, *_ = record.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return None
    return version if file_sha256(binary) == binary_sha256 else None


def go_tool_version(binary: Path) -> str | None:
    """The version of a Go tool: its build info, else what a verified archive install recorded.

    A release build may carry no usable module version in its build info ("(devel)"); the
    record written after the archive's published sum matched names the version instead, and
    counts only while the binary is byte for byte the one installed then.
    """
    resolved = binary.resolve()
    found = go_module_version(resolved)
    if found and found[0].isdigit():
        return found
    stat = resolved.stat()
    return _recorded_version(resolved, stat.st_size, stat.st_mtime_ns) or found


def inspect_tool(tool: Tool) -> ToolStatus:
    path = find_binary(tool)
    if path is None:
        return ToolStatus(tool, None, None)
    if tool.source is Source.GO:
        return ToolStatus(tool, path, go_tool_version(path))
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
