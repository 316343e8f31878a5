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
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from pipeline.discovery import SKIPPED_DIRS, RenderTarget
from pipeline.errors import ConfigError, SetupError
from pipeline.manifests import Resource
from pipeline.model import Finding, Result, Status, out
from pipeline.run import Run
from pipeline.secrets import steps
from pipeline.secrets.scopes import KIND

if TYPE_CHECKING:
    from pipeline.secrets.detect import Detected
    from pipeline.step_cache import StepCache

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


def scan_files(run: Run, targets: Sequence[RenderTarget]) -> list[str]:
    """The values files and chart templates of these targets, each once, in order."""
    chart_dirs = {PurePosixPath(t.chart.path).as_posix() for t in targets}
    scan = dict.fromkeys(v for t in targets for v in t.values)
    for chart in sorted(chart_dirs):
        scan.update(dict.fromkeys(_chart_files(run.source, chart)))
    return list(scan)


class EarlyScan:
    """The plaintext scan on the host, started before anything renders: it reads only values
    files and templates, so it overlaps helm's work. The stage then takes, in its own order,
    the findings of the files it checks (those of the targets that rendered).

    A thread of its own, not a task: nothing waits for it unless the stage runs, and a run
    that ends first (a configuration error, an interrupt) leaves it to finish by itself.
    """

    def __init__(self, run: Run, targets: Sequence[RenderTarget]) -> None:
        self._found: dict[str, list[Detected]] | None = None
        self._error: Exception | None = None
        files = scan_files(run, targets)
        self._thread = threading.Thread(
            target=self._scan, args=(run.source, files, run.memo), daemon=True
        )
        self._thread.start()

    def _scan(self, source: Path, files: Sequence[str], memo: StepCache | None) -> None:
        try:
            from pipeline.secrets.detect import scan_by_file  # noqa: PLC0415 - detect-secrets

            self._found = scan_by_file(source, files, memo)
        except ImportError:
            pass  # no secrets extra: the stage says so when it runs
        except Exception as exc:  # noqa: BLE001 - raised again where the stage awaits it
            self._error = exc

    async def found(self, files: Sequence[str]) -> list[Detected] | None:
        """The detections in `files`, in their order; None when the scan could not run."""
        await anyio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)
        if self._error is not None:
            raise self._error
        if self._found is None or any(f not in self._found for f in files):
            return None
        return [detected for file in files for detected in self._found[file]]


def plan(
    run: Run, rendered: Sequence[RenderedTarget], certificate_name: str | None
) -> dict[str, Any]:
    targets = [item.target for item in rendered]
    chart_dirs = {PurePosixPath(t.chart.path).as_posix() for t in targets}
    scan = scan_files(run, targets)
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
        "scan_files": scan,
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


async def _in_process(
    run: Run, the_plan: dict[str, Any], early: EarlyScan | None
) -> list[dict[str, Any]]:
    try:
        import detect_secrets  # noqa: F401, PLC0415 - the secrets extra, imported when scanning

        from pipeline.secrets.check import run_plan  # noqa: PLC0415 - the secrets extra
    except ImportError as exc:
        raise SetupError(
            f"the secrets check needs the `secrets` extra ({exc.name} is missing): "
            "pip install 'gitops-pipeline[secrets]'"
        ) from None
    certificate = run.secrets_certificate
    detected = await early.found(the_plan["scan_files"]) if early is not None else None
    return await anyio.to_thread.run_sync(
        run_plan, the_plan, run.source, certificate, run.memo, detected
    )


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


async def secrets_stage(
    run: Run, rendered: Sequence[RenderedTarget], early: EarlyScan | None = None
) -> Result:
    started = time.monotonic()
    certificate = run.secrets_certificate
    if certificate is not None and not certificate.is_file():
        raise ConfigError("the certificate file does not exist", file=certificate, field="--cert")
    the_plan = plan(run, rendered, str(certificate) if certificate else None)
    raw = await (_in_process(run, the_plan, early) if run.on_host else _in_container(run, the_plan))
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
