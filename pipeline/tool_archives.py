"""Installs the pinned Go tools from their projects' release archives, without Go.

Each archive is fetched with the standard library, streamed to a temporary file in the
destination directory, checked against the SHA-256 its project publishes (the tool table in
``pipeline.tools``) before anything is read from it, and only the tool's binary is taken out
of it: no other member is ever extracted, so no path in the archive can land anywhere. The
binary is renamed into place atomically; a failed install leaves nothing behind.

Where the table has no archive for this platform, ``go install`` builds the pinned module
when Go is present, stamped as ``ci/install-tools.sh`` stamps it; without Go the error says
what to do.

Two settings point the download elsewhere, for every user alike:

- a mirror (``--mirror URL`` or ``GITOPS_PIPELINE_TOOLS_MIRROR``) serving the official
  archives as ``URL/<tool>/<version>/<file>``: the pinned sums still apply, since a mirror
  serves the same bytes;
- an archive table of your own (``--archives FILE`` or ``GITOPS_PIPELINE_TOOL_ARCHIVES``), a
  JSON object ``{"helm": {"url": "...", "sha256": "..."}}`` (optionally ``"member"``, the
  binary's path inside the archive; default the official layout) replacing the official
  entry of each tool it names: archives you build or host yourself, with their own sums.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, SetupError
from pipeline.tools import (
    TOOLS,
    ReleaseArchive,
    Source,
    Tool,
    archive_record,
    file_sha256,
    get_tool,
    go_tool_version,
)

MIRROR_ENV = "GITOPS_PIPELINE_TOOLS_MIRROR"
ARCHIVES_ENV = "GITOPS_PIPELINE_TOOL_ARCHIVES"
DOWNLOAD_TIMEOUT_SECONDS = 120
_SHA256_HEX_LENGTH = 64
_GO_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_platform() -> str:
    """This machine as Go names it (GOOS-GOARCH), the key of the archive table."""
    machine = platform.machine().lower()
    return f"{platform.system().lower()}-{_GO_MACHINES.get(machine, machine)}"


def go_tools() -> list[Tool]:
    return [tool for tool in TOOLS.values() if tool.source is Source.GO]


def _go_tool(name: str) -> Tool:
    tool = get_tool(name)
    if tool.source is not Source.GO:
        known = ", ".join(t.name for t in go_tools())
        raise ConfigError(f"{name} is not installed by --install (Go tools: {known})")
    return tool


def load_archive_overrides(path: Path) -> dict[str, ReleaseArchive]:
    """Your own archive table: {tool: {url, sha256[, member]}}; a mistake is exit 2 naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the archive table: {error.strerror}", file=path) from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"not JSON: {error.msg}", file=path, line=error.lineno) from None
    if not isinstance(data, dict):
        raise ConfigError("expected an object of tool: {url, sha256}", file=path)
    known = {tool.name: tool for tool in go_tools()}
    overrides: dict[str, ReleaseArchive] = {}
    for name, entry in data.items():
        if name not in known:
            raise ConfigError(
                f"not a tool installed from an archive (known: {', '.join(sorted(known))})",
                file=path,
                field=name,
            )
        overrides[name] = _override_entry(known[name], entry, path)
    return overrides


def _override_entry(tool: Tool, entry: object, path: Path) -> ReleaseArchive:
    if not isinstance(entry, dict):
        raise ConfigError("expected {url, sha256}", file=path, field=tool.name)
    url, sha256 = entry.get("url"), entry.get("sha256")
    if not isinstance(url, str) or not url:
        raise ConfigError("url is required", file=path, field=f"{tool.name}.url")
    if not _is_sha256(sha256):
        raise ConfigError("expected 64 hex digits", file=path, field=f"{tool.name}.sha256")
    member = entry.get("member", _official_member(tool))
    if not isinstance(member, str) or not member:
        raise ConfigError(
            "expected a path inside the archive", file=path, field=f"{tool.name}.member"
        )
    return ReleaseArchive(host_platform(), url, str(sha256).lower(), member)


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == _SHA256_HEX_LENGTH
        and all(c in "0123456789abcdefABCDEF" for c in value)
    )


def _official_member(tool: Tool) -> str:
    official = _official_archive(tool, host_platform())
    return official.member if official else tool.binary


def _official_archive(tool: Tool, platform_key: str) -> ReleaseArchive | None:
    return next((a for a in tool.archives if a.platform == platform_key), None)


def archive_for(
    tool: Tool,
    platform_key: str,
    *,
    mirror: str | None = None,
    overrides: Mapping[str, ReleaseArchive] | None = None,
) -> ReleaseArchive | None:
    """The archive to install `tool` from on `platform_key`, or None when none is pinned."""
    if overrides and tool.name in overrides:
        return overrides[tool.name]
    official = _official_archive(tool, platform_key)
    if official is None or not mirror:
        return official
    url = f"{mirror.rstrip('/')}/{tool.name}/{tool.version}/{official.file}"
    return ReleaseArchive(official.platform, url, official.sha256, official.member)


@dataclass(frozen=True)
class Installed:
    tool: Tool
    path: Path
    how: str  # one line: where it came from, or that it was already there


def install_tools(
    dest: Path,
    names: Sequence[str] | None = None,
    *,
    mirror: str | None = None,
    overrides: Mapping[str, ReleaseArchive] | None = None,
    platform_key: str | None = None,
) -> Iterator[Installed]:
    """Install the pinned Go tools (`names`, default all) missing from `dest` or at another
    version, one by one; the first that cannot be installed stops the rest with its error."""
    platform_key = platform_key or host_platform()
    tools = [_go_tool(name) for name in names] if names else go_tools()
    dest.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        target = dest / tool.binary
        if target.is_file() and go_tool_version(target) == tool.version:
            yield Installed(tool, target, "already installed")
            continue
        archive = archive_for(tool, platform_key, mirror=mirror, overrides=overrides)
        if archive is not None:
            install_from_archive(tool, archive, dest)
            yield Installed(tool, target, f"from {archive.url} (sha256 {archive.sha256} verified)")
        else:
            go_install(tool, dest, platform_key)
            yield Installed(
                tool,
                target,
                f"go install {tool.install_spec} (no release archive pinned for {platform_key})",
            )


def install_from_archive(tool: Tool, archive: ReleaseArchive, dest: Path) -> Path:
    """Download, verify, extract the one member, make it executable and rename it into place."""
    dest.mkdir(parents=True, exist_ok=True)
    with _scratch_file(dest, f".{tool.binary}.", ".download") as download:
        actual = _download(archive.url, download)
        if actual != archive.sha256:
            raise SetupError(
                f"{archive.file}: SHA-256 mismatch: expected {archive.sha256} (pinned), "
                f"got {actual}; downloaded from {archive.url}, nothing installed"
            )
        with _scratch_file(dest, f".{tool.binary}.", ".new") as binary:
            _extract_member(archive, download, binary)
            binary.chmod(0o755)
            target = dest / tool.binary
            binary.replace(target)
    archive_record(target).write_text(
        f"{file_sha256(target)} {tool.version} {archive.url} {archive.sha256}\n", encoding="utf-8"
    )
    # ci/install-tools.sh's stamp says "built by go install"; it no longer describes this file.
    (dest / f".{tool.binary}.pin").unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def _scratch_file(directory: Path, prefix: str, suffix: str) -> Iterator[Path]:
    # In the destination directory, so the final rename never crosses a file system.
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(handle)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _download(url: str, to: Path) -> str:
    """Stream `url` into `to`; the SHA-256 of what arrived."""
    if not url.startswith(("https://", "http://", "file://")):
        raise SetupError(f"cannot download {url}: only https, http and file URLs are supported")
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response,  # noqa: S310 - scheme checked above
            to.open("wb") as stream,
        ):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                stream.write(chunk)
    except urllib.error.HTTPError as error:
        raise SetupError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise SetupError(f"cannot download {url}: {error.reason}") from None
    except (OSError, TimeoutError) as error:
        raise SetupError(f"cannot download {url}: {error}") from None
    return digest.hexdigest()


def _extract_member(archive: ReleaseArchive, download: Path, to: Path) -> None:
    try:
        with tarfile.open(download, "r:gz") as tar:
            try:
                member = tar.getmember(archive.member)
            except KeyError:
                raise SetupError(
                    f"{archive.file}: has no {archive.member} (from {archive.url})"
                ) from None
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise SetupError(f"{archive.file}: {archive.member} is not a regular file")
            with source, to.open("wb") as stream:
                shutil.copyfileobj(source, stream)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise SetupError(
            f"{archive.file}: not a readable tar.gz archive ({error}); from {archive.url}"
        ) from None


def go_install(tool: Tool, dest: Path, platform_key: str) -> Path:
    """The pinned module built with Go, stamped with its version as ci/install-tools.sh does."""
    go = shutil.which("go")
    if go is None:
        raise SetupError(
            f"{tool.name}: no release archive is pinned for {platform_key} and Go is not "
            f"installed: install Go (https://go.dev/dl) and rerun, or pass --archives FILE"
        )
    flags = f"{os.environ.get('GOFLAGS', '')} -buildvcs=false".strip()
    env = {**os.environ, "GOBIN": str(dest), "CGO_ENABLED": "0", "GOFLAGS": flags}
    completed = subprocess.run(
        [go, "install", "-ldflags", f"-X {tool.version_ldflag}", tool.install_spec],
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise SetupError(f"go install {tool.install_spec} failed (exit {completed.returncode})")
    (dest / f".{tool.binary}.pin").write_text(
        f"{tool.install_spec} {tool.version_ldflag}\n", encoding="utf-8"
    )
    archive_record(dest / tool.binary).unlink(missing_ok=True)
    return dest / tool.binary
