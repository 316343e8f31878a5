"""Installing the pinned Go tools from release archives: verified, one member, nothing left behind.

The archives are built here from the real binaries in .tools/bin, in the official layout
(helm under OS-ARCH/, the others at the root, each beside a LICENSE as the projects ship
them), and served by a local HTTP server. Their sums are not the official ones, so they go
through the documented archive table (GITOPS_PIPELINE_TOOL_ARCHIVES / --archives), the
same setting a user with archives of their own would use.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, fixture_repo, requires_tools

from pipeline.cli import main
from pipeline.errors import ConfigError, SetupError
from pipeline.tool_archives import (
    ARCHIVES_ENV,
    archive_for,
    go_tools,
    host_platform,
    install_from_archive,
    install_tools,
    load_archive_overrides,
)
from pipeline.tools import (
    TOOLS,
    TOOLS_DIR_ENV,
    ReleaseArchive,
    archive_record,
    go_module_version,
    go_tool_version,
    tools_dir,
)

GO_TOOLS = [tool.name for tool in go_tools()]
# The tools a laptop needs for the checks; kubeseal (seal, and its interop tests) has no sum
# found in a public source for its pinned release, so it installs with `go install` only.
ARCHIVED_TOOLS = [name for name in GO_TOOLS if name != "kubeseal"]
INSTALLED = tools_dir()  # the real binaries the test archives are built from


def official_member(name: str) -> str:
    official = archive_for(TOOLS[name], host_platform())
    return official.member if official else name


def tar_gz(path: Path, members: dict[str, bytes | Path]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, content in members.items():
            if isinstance(content, Path):
                tar.add(content, arcname=name)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(content))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class ArchiveServer:
    root: Path
    base: str

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def table(self, path: Path, entries: dict[str, dict[str, str]]) -> Path:
        path.write_text(json.dumps(entries), encoding="utf-8")
        return path


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        del format, args


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveServer]:
    root = tmp_path_factory.mktemp("archives")
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ArchiveServer(root, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def real_archives(server: ArchiveServer) -> dict[str, dict[str, str]]:
    """Every pinned Go tool's real binary in its official archive layout: {tool: {url, sha256}}."""
    missing = [name for name in GO_TOOLS if not (INSTALLED / name).is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)} in {INSTALLED} to build archives from")
    license_file = server.root / "LICENSE"
    license_file.write_text("the project's licence\n", encoding="utf-8")
    table = {}
    for name in GO_TOOLS:
        member = official_member(name)
        archive = tar_gz(
            server.root / f"{name}.tar.gz",
            {member: INSTALLED / name, str(Path(member).parent / "LICENSE"): license_file},
        )
        table[name] = {"url": server.url(archive.name), "sha256": sha256(archive)}
    return table


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(argv))
    return code, stdout.getvalue(), stderr.getvalue()


def install(dest: Path, table: Path, *tools: str) -> tuple[int, str, str]:
    return run_cli("tools", "--tools-dir", str(dest), "--archives", str(table), "--install", *tools)


# --- the table of official archives -------------------------------------------------------------


@pytest.mark.parametrize("name", ARCHIVED_TOOLS)
def test_every_go_tool_has_official_archives_for_linux_amd64(name: str) -> None:
    tool = TOOLS[name]
    platforms = [archive.platform for archive in tool.archives]

    assert "linux-amd64" in platforms
    assert len(platforms) == len(set(platforms)), "one archive per platform"
    for archive in tool.archives:
        assert len(archive.sha256) == 64
        assert int(archive.sha256, 16) >= 0
        assert archive.url.startswith("https://")
        assert tool.version in archive.url, archive.url
        assert archive.file.endswith(".tar.gz")


def test_a_tool_without_a_pinned_sum_has_no_archive_to_trust() -> None:
    assert TOOLS["kubeseal"].archives == ()


def test_official_archive_names_follow_each_projects_release_naming() -> None:
    releases = "https://github.com/{}/releases/download/{}/{}"
    expected = {
        "helm": ("https://get.helm.sh/helm-v4.2.4-linux-amd64.tar.gz", "linux-amd64/helm"),
        "kubeconform": (
            releases.format("yannh/kubeconform", "v0.7.0", "kubeconform-linux-amd64.tar.gz"),
            "kubeconform",
        ),
        "conftest": (
            releases.format(
                "open-policy-agent/conftest", "v0.69.0", "conftest_0.69.0_Linux_x86_64.tar.gz"
            ),
            "conftest",
        ),
        "actionlint": (
            releases.format("rhysd/actionlint", "v1.7.12", "actionlint_1.7.12_linux_amd64.tar.gz"),
            "actionlint",
        ),
    }

    for name, (url, member) in expected.items():
        archive = archive_for(TOOLS[name], "linux-amd64")
        assert archive is not None
        assert (archive.url, archive.member) == (url, member)


def test_a_mirror_serves_the_same_file_under_the_same_sum() -> None:
    helm = TOOLS["helm"]
    official = archive_for(helm, "linux-amd64")
    mirrored = archive_for(helm, "linux-amd64", mirror="https://mirror.example/tools/")

    assert official is not None
    assert mirrored is not None
    assert mirrored.url == "https://mirror.example/tools/helm/4.2.4/helm-v4.2.4-linux-amd64.tar.gz"
    assert (mirrored.sha256, mirrored.member) == (official.sha256, official.member)


def test_a_platform_without_a_pinned_archive_has_none() -> None:
    assert archive_for(TOOLS["helm"], "plan9-mips") is None
    assert archive_for(TOOLS["conftest"], "linux-arm64") is None  # no confirmed sum


# --- installing from a local server ---------------------------------------------------------------


def test_the_right_sum_installs_a_binary_that_runs(
    real_archives: dict[str, dict[str, str]], server: ArchiveServer, tmp_path: Path
) -> None:
    table = server.table(tmp_path / "archives.json", real_archives)
    dest = tmp_path / "bin"

    code, stdout, stderr = install(dest, table)

    assert code == 0, stderr
    assert f"helm 4.2.4: from {real_archives['helm']['url']}" in stdout
    shown = subprocess.run(
        [str(dest / "helm"), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert shown.startswith("v4.2.4"), shown
    assert all(os.access(dest / name, os.X_OK) for name in GO_TOOLS)
    # only each binary came out (and the record of what was verified), never the LICENSE beside it
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [*GO_TOOLS, *(f".{name}.archive" for name in GO_TOOLS)]
    )


def test_a_wrong_sum_is_an_environment_error_naming_the_file_and_both_sums(
    real_archives: dict[str, dict[str, str]], server: ArchiveServer, tmp_path: Path
) -> None:
    entry = real_archives["kubeconform"]
    pinned = "0" * 64
    table = server.table(
        tmp_path / "t.json", {"kubeconform": {"url": entry["url"], "sha256": pinned}}
    )
    dest = tmp_path / "bin"

    code, _, stderr = install(dest, table, "kubeconform")

    assert code == 3
    assert "kubeconform.tar.gz" in stderr
    assert pinned in stderr
    assert entry["sha256"] in stderr
    assert list(dest.iterdir()) == [], "nothing installed, no download left behind"


def test_a_wrong_sum_leaves_the_installed_binary_alone(
    real_archives: dict[str, dict[str, str]], server: ArchiveServer, tmp_path: Path
) -> None:
    dest = tmp_path / "bin"
    dest.mkdir()
    (dest / "kubeconform").write_bytes(b"#!/bin/sh\necho an older one\n")
    entry = {"url": real_archives["kubeconform"]["url"], "sha256": "f" * 64}

    code, _, _ = install(
        dest, server.table(tmp_path / "t.json", {"kubeconform": entry}), "kubeconform"
    )

    assert code == 3
    assert (dest / "kubeconform").read_bytes() == b"#!/bin/sh\necho an older one\n"
    assert [p.name for p in dest.iterdir()] == ["kubeconform"]


@pytest.mark.usefixtures("real_archives")
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_an_unreadable_archive_is_a_clear_error(
    damage: str, server: ArchiveServer, tmp_path: Path
) -> None:
    whole = (server.root / "actionlint.tar.gz").read_bytes()
    damaged = server.root / f"actionlint-{damage}.tar.gz"
    damaged.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"<html>oops</html>")
    # Its own sum: the sum matches, so what is tested is reading the archive, not verifying it.
    entry = {"url": server.url(damaged.name), "sha256": sha256(damaged)}
    dest = tmp_path / "bin"

    code, _, stderr = install(
        dest, server.table(tmp_path / "t.json", {"actionlint": entry}), "actionlint"
    )

    assert code == 3
    assert f"actionlint-{damage}.tar.gz: not a readable tar.gz archive" in stderr
    assert list(dest.iterdir()) == []


def test_a_missing_archive_is_a_clear_error(server: ArchiveServer, tmp_path: Path) -> None:
    entry = {"url": server.url("no-such.tar.gz"), "sha256": "a" * 64}
    dest = tmp_path / "bin"

    code, _, stderr = install(
        dest, server.table(tmp_path / "t.json", {"actionlint": entry}), "actionlint"
    )

    assert code == 3
    assert f"cannot download {entry['url']}: HTTP 404" in stderr
    assert list(dest.iterdir()) == []


def test_an_archive_without_the_binary_is_a_clear_error(
    server: ArchiveServer, tmp_path: Path
) -> None:
    archive = tar_gz(server.root / "empty-ish.tar.gz", {"README.md": b"nothing here\n"})
    entry = {"url": server.url(archive.name), "sha256": sha256(archive)}

    code, _, stderr = install(
        tmp_path / "bin", server.table(tmp_path / "t.json", {"actionlint": entry}), "actionlint"
    )

    assert code == 3
    assert "empty-ish.tar.gz: has no actionlint" in stderr


def test_only_the_binary_is_extracted_never_another_member(
    server: ArchiveServer, tmp_path: Path
) -> None:
    archive = tar_gz(
        server.root / "traversal.tar.gz",
        {"../../escaped": b"should never be written\n", "actionlint": b"#!/bin/sh\necho ok\n"},
    )
    dest = tmp_path / "a" / "bin"  # extracting everything would write tmp_path/escaped
    entry = ReleaseArchive(host_platform(), server.url(archive.name), sha256(archive), "actionlint")

    install_from_archive(TOOLS["actionlint"], entry, dest)

    assert not list(tmp_path.rglob("escaped"))
    assert (dest / "actionlint").read_bytes() == b"#!/bin/sh\necho ok\n"


def test_a_tool_already_at_its_pin_is_not_downloaded_again(
    server: ArchiveServer, tmp_path: Path
) -> None:
    if not (INSTALLED / "kubeconform").is_file():
        pytest.skip(f"no kubeconform in {INSTALLED}")
    dest = tmp_path / "bin"
    dest.mkdir()
    shutil.copy2(INSTALLED / "kubeconform", dest / "kubeconform")
    unreachable = {"url": server.url("never-fetched.tar.gz"), "sha256": "b" * 64}
    overrides = load_archive_overrides(
        server.table(tmp_path / "t.json", {"kubeconform": unreachable})
    )

    installed = next(install_tools(dest, ["kubeconform"], overrides=overrides))

    assert (installed.tool.name, installed.how) == ("kubeconform", "already installed")


@pytest.mark.usefixtures("real_archives")
def test_the_mirror_option_downloads_from_the_mirror_and_keeps_the_pinned_sum(
    server: ArchiveServer, tmp_path: Path
) -> None:
    official = archive_for(TOOLS["kubeconform"], host_platform())
    if official is None:
        pytest.skip(f"no official kubeconform archive for {host_platform()}")
    mirrored = server.root / "mirror" / "kubeconform" / "0.7.0" / official.file
    mirrored.parent.mkdir(parents=True)
    shutil.copy(server.root / "kubeconform.tar.gz", mirrored)  # not the official bytes
    dest = tmp_path / "bin"

    code, _, stderr = run_cli(
        "tools",
        "--tools-dir",
        str(dest),
        "--mirror",
        f"{server.base}/mirror/",
        "--install",
        "kubeconform",
    )

    # the mirror was asked (it served our own build), and the official sum still judged it
    assert code == 3
    assert f"downloaded from {server.base}/mirror/kubeconform/0.7.0/{official.file}" in stderr
    assert f"{official.file}: SHA-256 mismatch: expected {official.sha256}" in stderr
    assert sha256(mirrored) in stderr


# --- without an archive for the platform: go install, or one line saying what to do ---------------


def test_no_archive_and_no_go_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(
        SetupError,
        match=r"helm: no release archive is pinned for plan9-mips "
        r"and Go is not installed: install Go",
    ):
        next(install_tools(tmp_path / "bin", platform_key="plan9-mips"))


def test_no_archive_falls_back_to_go_install_with_the_version_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "fake-go"
    fake_bin.mkdir()
    calls = tmp_path / "calls.txt"
    go = fake_bin / "go"
    go.write_text(
        f'#!/bin/sh\necho "$GOBIN|$CGO_ENABLED|$*" >> {calls}\n'
        'name=$(basename "${4%@*}")\n'
        'printf "#!/bin/sh\\n" > "$GOBIN/$name"\n',
        encoding="utf-8",
    )
    go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}/usr/bin{os.pathsep}/bin")
    dest = tmp_path / "bin"

    installed = list(install_tools(dest, platform_key="plan9-mips"))

    assert [i.tool.name for i in installed] == GO_TOOLS
    lines = calls.read_text(encoding="utf-8").splitlines()
    helm = TOOLS["helm"]
    assert lines[0] == (f"{dest}|0|install -ldflags -X {helm.version_ldflag} {helm.install_spec}")
    assert (dest / ".helm.pin").read_text(encoding="utf-8").split() == [
        helm.install_spec,
        helm.version_ldflag,
    ]


# --- the archive table of your own --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"helmfile": {"url": "https://x/y.tar.gz", "sha256": "' + "a" * 64 + '"}}', "helmfile"),
        ('{"helm": {"url": "https://x/y.tar.gz", "sha256": "abc"}}', "helm.sha256"),
        ('{"helm": {"sha256": "' + "a" * 64 + '"}}', "helm.url"),
        ("[1, 2]", "expected an object"),
        ("{not json", "not JSON"),
    ],
)
def test_a_bad_archive_table_is_a_config_error_naming_it(
    content: str, message: str, tmp_path: Path
) -> None:
    table = tmp_path / "archives.json"
    table.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=message) as caught:
        load_archive_overrides(table)

    assert str(table) in str(caught.value)
    assert caught.value.exit_code == 2


def test_the_archive_table_defaults_to_the_official_member_layout(tmp_path: Path) -> None:
    table = tmp_path / "archives.json"
    table.write_text(
        json.dumps({"helm": {"url": "http://127.0.0.1/h.tar.gz", "sha256": "A" * 64}}),
        encoding="utf-8",
    )

    (entry,) = load_archive_overrides(table).values()

    assert entry.member == official_member("helm")
    assert entry.sha256 == "a" * 64


# --- what the installed version is ----------------------------------------------------------------


def test_a_verified_archive_record_names_the_version_of_a_binary_without_build_info(
    server: ArchiveServer, tmp_path: Path
) -> None:
    """Release builds may carry no module version; the record of the verified sum does."""
    archive = tar_gz(server.root / "no-buildinfo.tar.gz", {"conftest": b"#!/bin/sh\necho hi\n"})
    entry = ReleaseArchive(host_platform(), server.url(archive.name), sha256(archive), "conftest")
    dest = tmp_path / "bin"
    dest.mkdir()

    binary = install_from_archive(TOOLS["conftest"], entry, dest)

    assert go_module_version(binary) is None
    assert go_tool_version(binary) == "0.69.0"
    assert archive_record(binary).read_text(encoding="utf-8").split()[1:] == [
        "0.69.0",
        entry.url,
        entry.sha256,
    ]
    binary.write_bytes(b"#!/bin/sh\necho replaced\n")  # no longer the verified file
    assert go_tool_version(binary) is None


# --- end to end: a machine without Go -------------------------------------------------------------


def path_without_go(tmp_path: Path) -> str:
    """The venv's bin and the system's, minus any go: a PATH dir of symlinks where needed."""
    parts = [str(Path(sys.executable).parent)]
    for directory in ("/usr/bin", "/bin"):
        if shutil.which("go", path=directory) is None:
            parts.append(directory)
            continue
        links = tmp_path / f"no-go{directory.replace('/', '-')}"
        links.mkdir()
        for entry in Path(directory).iterdir():
            if entry.name != "go":
                (links / entry.name).symlink_to(entry)
        parts.append(str(links))
    path = os.pathsep.join(parts)
    assert shutil.which("go", path=path) is None
    return path


@requires_tools("helm", "kubeconform", "conftest")
def test_without_go_the_bootstrap_installs_the_tools_and_validate_runs(
    real_archives: dict[str, dict[str, str]], server: ArchiveServer, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"
    env = {
        "PATH": path_without_go(tmp_path),
        "HOME": str(tmp_path / "home"),
        TOOLS_DIR_ENV: str(tools),
        ARCHIVES_ENV: str(server.table(tmp_path / "archives.json", real_archives)),
        "PYTHON": sys.executable,
    }

    bootstrap = subprocess.run(
        ["bash", str(REPO_ROOT / "ci" / "install-tools.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert bootstrap.returncode == 0, bootstrap.stderr
    assert "no Go on PATH: installing the verified release archives" in bootstrap.stdout
    for name in GO_TOOLS:
        assert (
            f"{name} {TOOLS[name].version}: from {real_archives[name]['url']}" in bootstrap.stdout
        )
    cli = [sys.executable, "-m", "pipeline.cli"]
    listed = subprocess.run(
        [*cli, "tools"], env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for name in GO_TOOLS:
        assert f"yes ({tools / name})" in listed, listed
    source = fixture_repo("ok", tmp_path)
    validated = subprocess.run(
        [*cli, "validate", "--source", str(source), "--out", str(tmp_path / "artifacts")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    summary = json.loads((tmp_path / "artifacts" / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "passed"
