"""validate's `secrets` stage: plan what to check, run the check, report its findings.

On the host (the local runner) the check runs in-process; elsewhere (Dagger) it runs as the
secrets container's step over the same plan, written under OUT. Either way the findings are
the same `Finding` values in every report. This module imports neither cryptography nor
detect-secrets, so the Dagger module loads without them.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import anyio.to_thread

from pipeline.discovery import SKIPPED_DIRS, RenderTarget
from pipeline.errors import ConfigError, SetupError
from pipeline.manifests import Resource
from pipeline.model import Finding, Result, Status, out
from pipeline.run import Run
from pipeline.secrets import steps
from pipeline.secrets.scopes import KIND

STAGE = "secrets"
MAX_MANIFEST_BYTES = 5 << 20
_SEALED_SECRET_KIND = re.compile(
    r"""^kind:[ \t]*["']?SealedSecret["']?[ \t]*(#.*)?$""", re.MULTILINE
)


class RenderedTarget(Protocol):
    """What validate knows of one rendered chart environment (validate.Rendered)."""

    @property
    def target(self) -> RenderTarget: ...

    @property
    def resources(self) -> list[Resource]: ...

    def where(self, resource: Resource | None = None) -> dict[str, Any]: ...


def _chart_files(source: Path, chart_path: str) -> Iterator[str]:
    templates = source / chart_path / "templates"
    if templates.is_dir():
        for path in sorted(templates.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield path.relative_to(source).as_posix()


def _ignored(relative: str, ignore: Sequence[str]) -> bool:
    return any(
        relative == pattern
        or relative.startswith(f"{pattern.rstrip('/')}/")
        or fnmatch.fnmatchcase(relative, pattern)
        for pattern in ignore
    )


def _manifest_files(run: Run, chart_dirs: set[str]) -> list[str]:
    """Files of the repository holding a SealedSecret, outside charts' templates."""
    source = run.source.resolve()
    out_dir = run.out.resolve()
    found: list[str] = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        parts = relative.parts
        if any(p.startswith(".") or p in SKIPPED_DIRS for p in parts[:-1]):
            continue
        if path.suffix not in {".yaml", ".yml"} or not path.is_file() or path.is_symlink():
            continue
        if out_dir == path or out_dir in path.parents:
            continue
        posix = relative.as_posix()
        if _ignored(posix, run.config.discovery.ignore) or any(
            posix.startswith(f"{chart}/templates/") for chart in chart_dirs
        ):
            continue
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "{{" not in text and _SEALED_SECRET_KIND.search(text):
            found.append(posix)
    return found


def plan(
    run: Run, rendered: Sequence[RenderedTarget], certificate_name: str | None
) -> dict[str, Any]:
    targets = [item.target for item in rendered]
    chart_dirs = {PurePosixPath(t.chart.path).as_posix() for t in targets}
    scan = dict.fromkeys(v for t in targets for v in t.values)
    for chart in sorted(chart_dirs):
        scan.update(dict.fromkeys(_chart_files(run.source, chart)))
    sealed = [
        {
            "document": resource.document,
            "where": item.where(resource),
            "namespace": item.target.chart.namespace,
        }
        for item in rendered
        for resource in item.resources
        if resource.kind == KIND
    ]
    config_name = run.config.file.name if run.config.file else "pipeline.yaml"
    allow = [
        {
            "file": entry.file,
            "type": entry.type,
            "line": entry.at_line,
            "reason": entry.reason,
            "source": f"{config_name}:{entry.line}",
        }
        for entry in run.config.secrets.allow
    ]
    return {
        "scan_files": list(scan),
        "manifest_files": _manifest_files(run, chart_dirs),
        "rendered": sealed,
        "allow": allow,
        "certificate_name": certificate_name,
        "now": dt.datetime.now(dt.UTC).isoformat(),
    }


def _to_finding(data: dict[str, Any]) -> Finding:
    fields = {k: data.get(k) for k in ("file", "line", "rule", "chart", "environment", "resource")}
    return Finding(
        check=str(data.get("check", STAGE)),
        message=str(data["message"]),
        status=Status(data.get("status", "failed")),
        waiver=data.get("waiver"),
        **fields,
    )


async def _in_process(run: Run, the_plan: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        import detect_secrets  # noqa: F401, PLC0415 - the secrets extra, imported when scanning

        from pipeline.secrets.check import run_plan  # noqa: PLC0415 - the secrets extra
    except ImportError as exc:
        raise SetupError(
            f"the secrets check needs the `secrets` extra ({exc.name} is missing): "
            "pip install 'gitops-pipeline[secrets]'"
        ) from None
    certificate = run.secrets_certificate
    return await anyio.to_thread.run_sync(run_plan, the_plan, run.source, certificate, run.memo)


async def _in_container(run: Run, the_plan: dict[str, Any]) -> list[dict[str, Any]]:
    work = run.out / steps.WORK
    work.mkdir(parents=True, exist_ok=True)
    (work / "plan.json").write_text(json.dumps(the_plan), encoding="utf-8")
    certificate = None
    if run.secrets_certificate is not None:
        shutil.copyfile(run.secrets_certificate, work / "cert.pem")
        certificate = out(f"{steps.WORK}/cert.pem")
    done = await run.runner.run(steps.check_step(out(f"{steps.WORK}/plan.json"), certificate))
    detail = done.stderr.strip()[-1000:] or f"exit code {done.exit_code}"
    if not done.ok:
        return [{"message": f"the secrets check did not run: {detail}", "status": "error"}]
    try:
        loaded = json.loads(done.stdout)
    except ValueError:
        loaded = None
    if not isinstance(loaded, list) or not all(
        isinstance(item, dict) and isinstance(item.get("message"), str) for item in loaded
    ):
        return [
            {"message": f"the secrets check printed no findings list: {detail}", "status": "error"}
        ]
    return loaded


async def secrets_stage(run: Run, rendered: Sequence[RenderedTarget]) -> Result:
    started = time.monotonic()
    certificate = run.secrets_certificate
    if certificate is not None and not certificate.is_file():
        raise ConfigError("the certificate file does not exist", file=certificate, field="--cert")
    the_plan = plan(run, rendered, str(certificate) if certificate else None)
    raw = await (_in_process(run, the_plan) if run.on_host else _in_container(run, the_plan))
    findings = [_to_finding(item) for item in raw]
    failed = [f for f in findings if f.status.failed]
    errors = [f for f in findings if f.status is Status.ERROR]
    status = Status.ERROR if errors else Status.FAILED if failed else Status.PASSED
    sealed = len(the_plan["rendered"])
    summary = (
        f"{len(failed)} secrets problem(s); scanned {len(the_plan['scan_files'])} values files "
        f"and templates, checked {sealed} rendered and "
        f"{len(the_plan['manifest_files'])} committed SealedSecret file(s)"
    )
    if not failed:
        findings.append(Finding(check=STAGE, message=summary, status=Status.PASSED))
    return Result(STAGE, status, summary, tuple(findings), duration=time.monotonic() - started)
