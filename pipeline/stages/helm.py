"""helm lint and helm template for one chart in one environment; its dependencies built."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import yaml

from pipeline.config import ChartConfig
from pipeline.discovery import RenderTarget
from pipeline.model import Arg, Finding, Ref, Root, Status, Step, out, src

# `where` starts at a non-space so that the spaces before it are matched one way only: with
# `\s+[^:]+` a line of many spaces and no colon took time quadratic in its length.
_LINT_LINE = re.compile(
    r"^\s*\[(?P<level>ERROR|WARNING)\]\s+(?P<where>[^:\s][^:]*):\s*(?P<message>.*)$"
)
_ERROR_LINE = re.compile(r"^Error:\s*(?P<message>.*)$")
# Bounded on purpose: an unbounded file part makes a search over a long token quadratic (a
# 200 kB line of helm output would take minutes), and int() refuses 4300 digits.
_FILE_AT = re.compile(
    r"(?P<file>[\w./-]{1,255}\.(?:ya?ml|tpl|txt|json)):(?P<line>[0-9]{1,9})(?![0-9])"
)


def _values_args(target: RenderTarget) -> tuple[Arg, ...]:
    args: list[Arg] = []
    for values in target.values:
        args += ["--values", src(values)]
    return tuple(args)


def _unread(chart: Ref, names: Sequence[str]) -> tuple[Ref, ...]:
    return tuple(Ref(chart.root, PurePosixPath(chart.path, name).as_posix()) for name in names)


def lint_step(
    target: RenderTarget,
    kube_version: str,
    chart: Ref | None = None,
    unread: Sequence[str] = (),
) -> Step:
    """`chart` is where helm reads the chart: the source's, or a copy with built dependencies;
    `unread`, files in it helm cannot read for this target (discovery.overlays_helm_cannot_read)."""
    chart = chart or src(target.chart.path)
    return Step(
        name=f"helm-lint:{target.key}",
        tool="helm",
        args=(
            "lint",
            "--strict",
            "--kube-version",
            kube_version,
            "--namespace",
            target.chart.namespace,
            *_values_args(target),
            chart,
        ),
        inputs=(chart, *(src(v) for v in target.values)),
        cacheable=True,
        cache_ignores=_unread(chart, unread),
    )


def template_step(
    target: RenderTarget,
    kube_version: str,
    chart: Ref | None = None,
    unread: Sequence[str] = (),
) -> Step:
    chart = chart or src(target.chart.path)
    api_versions: list[str] = []
    for api in target.chart.api_versions:
        api_versions += ["--api-versions", api]
    return Step(
        name=f"helm-template:{target.key}",
        tool="helm",
        args=(
            "template",
            target.chart.release,
            chart,
            "--namespace",
            target.chart.namespace,
            "--kube-version",
            kube_version,
            "--include-crds",
            "--skip-tests",
            *api_versions,
            *_values_args(target),
        ),
        inputs=(chart, *(src(v) for v in target.values)),
        cacheable=True,
        cache_ignores=_unread(chart, unread),
    )


def _blocks(output: str, start: re.Pattern[str]) -> list[str]:
    """Helm 4 continues a message on indented lines; join each message into one line."""
    blocks: list[list[str]] = []
    for raw in output.splitlines():
        if start.match(raw):
            blocks.append([raw.strip()])
        elif blocks and raw.startswith((" ", "\t")) and raw.strip():
            blocks[-1].append(raw.strip())
    return [" ".join(block) for block in blocks]


def _located(target: RenderTarget, message: str) -> tuple[str | None, int | None]:
    at = _FILE_AT.search(message)
    if not at:
        return None, None
    inside = at["file"].split("/", 1)[1] if "/" in at["file"] else at["file"]
    return target.chart.file(inside), int(at["line"])


def lint_findings(target: RenderTarget, output: str) -> list[Finding]:
    findings: list[Finding] = []
    for block in _blocks(output, _LINT_LINE):
        match = _LINT_LINE.match(block)
        if not match:
            continue
        message = match["message"]
        file, line = _located(target, message)
        if file is None:
            file = target.chart.file(match["where"].strip())
        findings.append(
            Finding(
                check="helm-lint",
                message=f"[{match['level']}] {message}",
                file=file,
                line=line,
                chart=target.chart.name,
                environment=target.environment,
            )
        )
    return findings


def template_error(target: RenderTarget, stderr: str) -> Finding:
    """The error helm template stops at, with the template file and line when helm gives them."""
    blocks = _blocks(stderr, _ERROR_LINE)
    message = blocks[0].removeprefix("Error:").strip() if blocks else stderr.strip()
    file, line = _located(target, message)
    return Finding(
        check="render",
        message=message or "helm template failed",
        status=Status.FAILED,
        file=file,
        line=line,
        chart=target.chart.name,
        environment=target.environment,
    )


# --- a chart's dependencies, built from its Chart.lock ----------------------------------------

# Inside a build workspace (a folder under OUT): the chart's Chart.yaml and Chart.lock, and
# the chart repositories of the lock. Nothing of the user's helm setup is read or written:
# repositories, their index cache and registry credentials all live in the workspace, so a
# laptop builds exactly what CI builds.
WORKSPACE_CHART = "chart"
WORKSPACE_REPOSITORIES = "repositories.yaml"
_WORKSPACE_INDEX_CACHE = "repository-cache"
_WORKSPACE_REGISTRY_CONFIG = "registry-config.json"  # never written: no credentials, on purpose

# A registry on this machine is a test or development registry, and plain HTTP to it never
# leaves the machine; anywhere else helm's TLS default stands.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

_OUT_OF_SYNC = re.compile(r"lock file \(Chart\.lock\) is out of sync", re.IGNORECASE)
_REFRESH_FAILED = re.compile(
    r'Unable to get an update from the "[^"]*" chart repository \((?P<url>[^)\s]+)\):'
    r"\s*(?P<reason>[^\n]+)"
)
_DOWNLOAD_FAILED = re.compile(r"could not download (?P<url>\S+?):\s+(?P<reason>[^\n]+)")
_UNAUTHORIZED = re.compile(
    r"\b401\b|unauthorized|basic credential not found|authentication required", re.IGNORECASE
)


def dependency_build_step(chart_name: str, workspace: str, repositories: Sequence[str]) -> Step:
    """`helm dependency build` in `workspace` (relative to OUT): exactly the lock's versions.

    `build`, never `update`: it downloads what Chart.lock names and refuses a lock whose
    digest does not match Chart.yaml. The archives land in `<workspace>/chart/charts`, the
    step's one output (a container exports it back to the local OUT).
    """
    chart = out(f"{workspace}/{WORKSPACE_CHART}")
    repositories_file = out(f"{workspace}/{WORKSPACE_REPOSITORIES}")
    plain_http = ("--plain-http",) if loopback_registries_only(repositories) else ()
    return Step(
        name=f"helm-dependency-build:{chart_name}",
        tool="helm",
        args=(
            "dependency",
            "build",
            chart,
            "--repository-config",
            repositories_file,
            "--repository-cache",
            out(f"{workspace}/{_WORKSPACE_INDEX_CACHE}"),
            "--registry-config",
            out(f"{workspace}/{_WORKSPACE_REGISTRY_CONFIG}"),
            *plain_http,
        ),
        workdir=out(workspace),
        inputs=(chart, repositories_file),
        outputs=(f"{workspace}/{WORKSPACE_CHART}/charts",),
    )


def loopback_registries_only(repositories: Sequence[str]) -> bool:
    """True when every OCI registry of the lock is on this machine (then plain HTTP is used).

    helm 4 speaks TLS to every registry unless `--plain-http` is given, and the flag applies
    to all of a build's registries: a lock that mixes local and remote registries keeps TLS.
    """
    hosts = [urlsplit(r).hostname for r in repositories if r.startswith("oci://")]
    return bool(hosts) and all(
        host is not None and (host in LOOPBACK_HOSTS or host.startswith("127.")) for host in hosts
    )


def repositories_file(repositories: Sequence[str]) -> str:
    """helm's repositories.yaml naming the lock's HTTP chart repositories.

    `helm dependency build` only downloads from repositories it knows by name (`helm repo
    add`); this file is that knowledge, for this build only.
    """
    http = [r for r in dict.fromkeys(repositories) if r.startswith(("http://", "https://"))]
    document = {
        "apiVersion": "",
        "generated": "0001-01-01T00:00:00Z",
        "repositories": [
            {"name": f"dependency-repository-{index}", "url": url}
            for index, url in enumerate(http, start=1)
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def dependency_build_error(chart: ChartConfig, output: str, repositories: Sequence[str]) -> str:
    """What went wrong in `helm dependency build`, naming Chart.lock and the repository."""
    lock = chart.file("Chart.lock")
    if _OUT_OF_SYNC.search(output):
        return (
            f"{lock} is out of sync with the dependencies in {chart.file('Chart.yaml')}: its "
            f"digest does not match them; run `helm dependency update {chart.path}` and commit "
            "Chart.lock"
        )
    failures = [
        (match["url"], match["reason"].strip())
        for pattern in (_REFRESH_FAILED, _DOWNLOAD_FAILED)
        for match in pattern.finditer(output)
    ]
    for url, reason in failures:
        if _UNAUTHORIZED.search(reason):
            return (
                f"chart repository {_repository_of(url, repositories)} refused access "
                f"(401 Unauthorized) while building the dependencies in {lock}: private chart "
                "repositories need credentials, which the pipeline does not pass yet; vendor "
                f"the dependency in {chart.file('charts')}/ instead ({reason})"
            )
    if failures:
        url, reason = failures[0]
        repository = _repository_of(url, repositories)
        fetched = "" if url == repository else f"{url} from "
        return (
            f"could not fetch {fetched}chart repository {repository} while building the "
            f"dependencies in {lock}: {reason}"
        )
    blocks = _blocks(output, _ERROR_LINE)
    detail = blocks[-1].removeprefix("Error:").strip() if blocks else output.strip()[-500:]
    return f"`helm dependency build` from {lock} failed: {detail or 'no output'}"


def _repository_of(url: str, repositories: Sequence[str]) -> str:
    """The lock's repository that `url` belongs to (the URL itself when none matches)."""
    matching = [r for r in repositories if r and url.startswith(r.rstrip("/"))]
    return max(matching, key=len) if matching else url


def source_paths(output: str, copy: Ref, chart: ChartConfig) -> str:
    """helm's output about a chart copy under OUT, naming the source's chart folder instead.

    helm mostly names files relative to the chart (`web/templates/x.yaml`), but a message may
    carry the folder it was given, on the host or in a container: either way it becomes the
    chart's path in the source, so findings never point into the artifacts directory.
    """
    if copy.root is not Root.OUT:
        return output
    # The lookbehind starts a match at a token's start only; without it every position of a
    # long token is tried in turn, quadratic in its length (10 s for a 40 kB token).
    at_copy = re.compile(r"(?<![^\s\"'`(])[^\s\"'`(]*/" + re.escape(copy.path) + r"(?![\w.-])")
    return at_copy.sub(chart.path, output)
