"""`release`: version, changelog, build, tag, publish — in an order that leaves no half-release.

1. Decide the version from the history (nothing releasable: done, exit 0).
2. Refuse a dirty working tree: the image must be built from the commit that is tagged.
3. Build the image. Nothing has left the machine yet, so a failed build costs nothing.
4. Tag the commit and push the tag. The tag is the claim on the version: a push the remote
   rejects means someone released first, and the release stops before any image is pushed.
5. Publish every image tag; all must resolve to one digest.

A rerun on a commit that already carries its release tag republishes that version
instead of making a new one, so retrying a release whose publish failed is safe.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from pipeline import publish, reports
from pipeline.changelog import changelog_markdown
from pipeline.config import Config
from pipeline.discovery import require_inside
from pipeline.errors import ConfigError, PipelineError
from pipeline.model import SecretRef, Step, StepResult, killed_by_signal, out
from pipeline.run import Run
from pipeline.stages import git
from pipeline.versioning import Decision, GitError, decide

ASKPASS = ".cache/git-askpass.sh"


class ImageBackend(Protocol):
    """Builds and pushes the image: the docker CLI locally, Dagger's API in the module."""

    async def check_access(self) -> None:
        """Fail now if the registry will refuse the push (before the version is claimed)."""
        ...

    async def build(self, *, labels: Mapping[str, str], revision: str) -> str:
        """Build the image; return a reference `push` understands."""
        ...

    async def push(self, built: str, *, tags: Sequence[str]) -> list[publish.PushedRef]: ...


@dataclass
class DockerImages:
    """The local Docker engine through the runner; logins live in a throw-away DOCKER_CONFIG."""

    run: Run
    options: ReleaseOptions
    docker_config: Path

    async def check_access(self) -> None:
        await publish.check_login(
            self.run,
            registry=publish.registry_of(self.options.image),
            username=self.options.registry_username,
            password=self.options.registry_password,
            docker_config=self.docker_config,
        )

    async def build(self, *, labels: Mapping[str, str], revision: str) -> str:
        built = await publish.build(
            self.run,
            image=self.options.image,
            dockerfile=self.options.dockerfile,
            context=self.options.context,
            labels=labels,
            build_args=dict(self.options.build_args),
            docker_config=self.docker_config,
            revision=revision,
        )
        return built.local_ref

    async def push(self, built: str, *, tags: Sequence[str]) -> list[publish.PushedRef]:
        return await publish.publish(
            self.run,
            local_ref=built,
            image=self.options.image,
            tags=tags,
            registry=publish.registry_of(self.options.image),
            username=self.options.registry_username,
            password=self.options.registry_password,
            docker_config=self.docker_config,
        )


class ReleaseConflictError(PipelineError):
    """Someone else claimed this version first; nothing was pushed by this run (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class ReleaseOptions:
    image: str  # registry/owner/name, lower-case, no tag
    dockerfile: str = "app/Dockerfile"
    context: str = "app"
    remote: str = "origin"
    git_token: SecretRef | None = None
    registry_username: str | None = None
    registry_password: SecretRef | None = None
    prerelease: str | None = None
    licenses: str = ""
    source_url: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    repo_url: str | None = None
    tagger: tuple[str, str] | None = None  # (name, email) of the release tag; default: git's


@dataclass(frozen=True)
class ReleaseOutcome:
    version: str | None
    tag: str | None
    released: bool  # False: nothing to release
    republished: bool  # True: HEAD already carried this version's tag
    pushed: tuple[publish.PushedRef, ...] = ()


async def _checked(run: Run, step: Step) -> StepResult:
    result = await run.runner.run(step)
    if not result.ok:
        raise GitError(step, killed_by_signal(result) or (result.stderr or result.stdout).strip())
    return result


Parsed = TypeVar("Parsed")


async def _parsed(run: Run, step: Step, parse: Callable[[str], Parsed]) -> Parsed:
    """A git step's output through its parser: output it cannot read is a GitError too."""
    result = await _checked(run, step)
    try:
        return parse(result.stdout)
    except git.OutputError as exc:
        raise GitError(step, f"unexpected output: {exc}") from None


def check_build_inputs(config: Config, options: ReleaseOptions) -> None:
    """Before anything is built or claimed: the Dockerfile and context exist in the repository."""
    require_inside(config, options.dockerfile, "image.dockerfile")
    require_inside(config, options.context, "image.context")
    if not (config.source / options.dockerfile).is_file():
        raise ConfigError(
            f"no Dockerfile at {options.dockerfile}",
            file=config.file or config.source,
            field="image.dockerfile (or --dockerfile)",
        )
    if not (config.source / options.context).is_dir():
        raise ConfigError(
            f"no build context directory at {options.context}",
            file=config.file or config.source,
            field="image.context (or --context)",
        )


async def release(
    run: Run, options: ReleaseOptions, images: ImageBackend | None = None
) -> ReleaseOutcome:
    """Release with `images` (default: the local Docker engine)."""
    if images is not None:
        return _recorded(run, await _release(run, options, images))
    with tempfile.TemporaryDirectory(prefix="gitops-pipeline-docker-") as docker_config:
        outcome = await _release(run, options, DockerImages(run, options, Path(docker_config)))
        return _recorded(run, outcome)


RELEASE_JSON = "release.json"


def _recorded(run: Run, outcome: ReleaseOutcome) -> ReleaseOutcome:
    """release.json beside the notes: what `notify --release` announces."""
    reports.write_text(run.out / RELEASE_JSON, outcome_json(outcome) + "\n")
    return outcome


async def _release(run: Run, options: ReleaseOptions, images: ImageBackend) -> ReleaseOutcome:
    publish.check_image_name(options.image)
    check_build_inputs(run.config, options)
    decision, head = await _decision_and_head(run, options)
    republish = decision.next is None and await _tagged_at_head(run, decision, head)
    if decision.next is None and not republish:
        _write_version_files(run.out, decision.current, None)
        return ReleaseOutcome(
            decision.current, decision.current_tag, released=False, republished=False
        )
    version = decision.next if decision.next is not None else decision.current
    tag = decision.next_tag if decision.next is not None else decision.current_tag
    if version is None or tag is None:  # unreachable: a release or a rerun has both
        raise GitError(git.head_step(), "no version to release")
    await _require_clean_tree(run)
    notes = changelog_markdown(
        decision, version=version, date=dt.datetime.now(dt.UTC).date(), repo_url=options.repo_url
    )
    reports.write_text(run.out / "release-notes.md", notes)

    built = await images.build(
        labels=await image_labels(run, options, version, head), revision=head
    )
    await images.check_access()  # a refused login must fail before the version is claimed
    if not republish:
        await _claim(run, options, tag, version, head)
    pushed = await images.push(built, tags=publish.image_tags(version, head))
    _write_version_files(run.out, version, version)
    reports.write_json(
        run.out / "image-digests.json",
        {"image": options.image, "tags": [{"ref": p.ref, "digest": p.digest} for p in pushed]},
    )
    return ReleaseOutcome(version, tag, released=True, republished=republish, pushed=tuple(pushed))


async def _tagged_at_head(run: Run, decision: Decision, head: str) -> bool:
    """HEAD is exactly the commit of the current release tag: a rerun of that release."""
    if decision.current_tag is None:
        return False
    tags = await _parsed(run, git.tags_step(merged_into="HEAD"), git.parse_tags)
    return any(t.name == decision.current_tag and t.commit == head for t in tags)


async def _require_clean_tree(run: Run) -> None:
    status = await _checked(run, git.status_step())
    dirty = [
        line
        for line in status.stdout.splitlines()
        if line.strip() and not _is_own_output(run, line[3:])
    ]
    if dirty:
        shown = ", ".join(line[3:] for line in dirty[:5])
        more = f" and {len(dirty) - 5} more" if len(dirty) > 5 else ""  # noqa: PLR2004
        raise ConfigError(
            f"the working tree has uncommitted changes ({shown}{more}); a release builds and "
            "tags exactly one commit: commit or stash them first",
            file=run.source,
        )


def _is_own_output(run: Run, path: str) -> bool:
    """The artifacts directory may sit inside the repository (the default `artifacts/`)."""
    try:
        inside = run.out.resolve().relative_to(run.source.resolve())
    except ValueError:
        return False
    own = inside.as_posix()
    changed = path.strip('"')  # porcelain quotes paths with unusual characters
    return changed == own or f"{changed}/".startswith(f"{own}/")


async def image_labels(
    run: Run, options: ReleaseOptions, version: str, head: str
) -> dict[str, str]:
    # The commit time, not the build time: a rebuild of the same commit gets the same labels.
    created = (await _checked(run, git.commit_time_step())).stdout.strip()
    source_url = options.source_url or await _source_url(run, options.remote)
    return publish.oci_labels(
        title=options.image.rsplit("/", 1)[-1],
        source=source_url or "",
        version=version,
        revision=head,
        created=created,
        licenses=options.licenses,
    )


async def _source_url(run: Run, remote: str) -> str | None:
    result = await run.runner.run(git.remote_url_step(remote))
    url = result.stdout.strip()
    if not result.ok or not url.startswith(("https://", "http://")):
        return None
    # Credentials embedded in a remote URL must not end up in an image label.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}".removesuffix(".git")


async def _claim(run: Run, options: ReleaseOptions, tag: str, version: str, head: str) -> None:
    askpass = run.out / ASKPASS
    reports.write_text(askpass, git.ASKPASS_SCRIPT)
    askpass.chmod(0o700)
    await _checked(run, git.annotate_tag_step(tag, f"Release {version}", head, options.tagger))
    push = git.push_tag_step(options.remote, tag, out(ASKPASS), options.git_token)
    pushed = await run.runner.run(push)
    if pushed.ok and git.tag_created(pushed.stdout, tag):
        return
    # The local tag must not outlive a failed claim, or the next run would think it released.
    await run.runner.run(git.delete_tag_step(tag))
    if pushed.ok or git.push_rejected(pushed.stderr, pushed.stdout):
        # ok without "created": an identical tag was there already, made by another run.
        raise ReleaseConflictError(
            f"the remote '{options.remote}' rejected tag {tag}: it exists there already, so "
            f"{version} was released by someone else; no image was pushed"
        )
    raise GitError(push, killed_by_signal(pushed) or pushed.stderr.strip())


async def _decision_and_head(run: Run, options: ReleaseOptions) -> tuple[Decision, str]:
    decision = await decide(run.runner, config=run.config.release, prerelease=options.prerelease)
    if decision.head:
        return decision, decision.head
    return decision, await _parsed(run, git.head_step(), git.parse_head)


async def version_and_head(run: Run, options: ReleaseOptions) -> tuple[str, str]:
    decision, head = await _decision_and_head(run, options)
    version = decision.next or decision.current
    if version is None:
        raise ConfigError(
            "nothing was ever released and nothing is releasable: no version to build"
        )
    return version, head


async def build_current(
    run: Run, options: ReleaseOptions, images: ImageBackend
) -> tuple[str, str, str]:
    """Build the image of the version the history gives: (built reference, version, head)."""
    publish.check_image_name(options.image)
    check_build_inputs(run.config, options)
    version, head = await version_and_head(run, options)
    built = await images.build(
        labels=await image_labels(run, options, version, head), revision=head
    )
    return built, version, head


async def publish_current(
    run: Run, options: ReleaseOptions, images: ImageBackend
) -> list[publish.PushedRef]:
    """Build and push the version's tags without tagging git (for images outside releases)."""
    built, version, head = await build_current(run, options, images)
    return await images.push(built, tags=publish.image_tags(version, head))


async def build_only(run: Run, options: ReleaseOptions) -> str:
    """Build with the local Docker engine; returns the local reference."""
    with tempfile.TemporaryDirectory(prefix="gitops-pipeline-docker-") as docker_config:
        built, _, _ = await build_current(
            run, options, DockerImages(run, options, Path(docker_config))
        )
        return built


async def publish_only(run: Run, options: ReleaseOptions) -> list[publish.PushedRef]:
    """Build and push with the local Docker engine."""
    with tempfile.TemporaryDirectory(prefix="gitops-pipeline-docker-") as docker_config:
        return await publish_current(run, options, DockerImages(run, options, Path(docker_config)))


def _write_version_files(out_dir: Path, version: str | None, image_tag: str | None) -> None:
    reports.write_text(out_dir / ".version", f"{version}\n" if version else "")
    reports.write_text(out_dir / ".image-tag", f"{image_tag}\n" if image_tag else "")


def outcome_json(outcome: ReleaseOutcome) -> str:
    return json.dumps(
        {
            "version": outcome.version,
            "tag": outcome.tag,
            "released": outcome.released,
            "republished": outcome.republished,
            "pushed": [{"ref": p.ref, "digest": p.digest} for p in outcome.pushed],
        },
        indent=2,
    )
