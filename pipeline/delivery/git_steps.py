"""git steps of promote and diff, in pipeline.stages.git's style: argv as data, run by a runner.

Writing steps (`writes_source`) change the repository: on the host its work tree and .git,
in a container the runner's copy, which later steps see.
"""

from __future__ import annotations

from pipeline.model import Step, joined, out, src

Identity = tuple[str, str]  # (name, email)


def _identity_env(identity: Identity | None) -> tuple[tuple[str, str], ...]:
    if identity is None:
        return ()
    name, email = identity
    return (
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
    )


def identity_step(identity: Identity | None) -> Step:
    """Fails when git has no committer identity: checked before anything is written."""
    return Step(
        name="git-identity",
        tool="git",
        args=("var", "GIT_COMMITTER_IDENT"),
        env=_identity_env(identity),
    )


def file_status_step(path: str) -> Step:
    """Uncommitted changes of one file (porcelain; empty when it is as committed)."""
    return Step(
        name="git-status-file",
        tool="git",
        args=("status", "--porcelain", "--untracked-files=all", "--", path),
    )


def tracked_step(path: str) -> Step:
    return Step(
        name="git-ls-files",
        tool="git",
        args=("ls-files", "--error-unmatch", "--", path),
    )


def new_branch_step(branch: str) -> Step:
    return Step(
        name="git-switch-create",
        tool="git",
        args=("switch", "--create", branch),
        writes_source=True,
    )


def commit_file_step(path: str, message: str, identity: Identity | None) -> Step:
    """Commit exactly `path` as it is in the work tree; whatever else is staged stays staged."""
    return Step(
        name="git-commit",
        tool="git",
        args=("commit", "--quiet", "--no-verify", "--message", message, "--only", "--", path),
        env=_identity_env(identity),
        writes_source=True,
    )


def add_file_step(path: str) -> Step:
    return Step(name="git-add", tool="git", args=("add", "--", path), writes_source=True)


def format_patch_step() -> Step:
    """The last commit as a mailbox patch on stdout, for `git am` elsewhere."""
    return Step(
        name="git-format-patch",
        tool="git",
        args=("format-patch", "-1", "--stdout", "--no-signature", "HEAD"),
    )


def resolve_commit_step(ref: str) -> Step:
    return Step(
        name="git-rev-parse",
        tool="git",
        args=("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"),
    )


def archive_step(commit: str, output: str) -> Step:
    """The tree of `commit` as a tar file under OUT: the work tree and .git are not touched.

    git creates no folder: the one `output` goes in must exist (it is the step's input, so a
    container gets it too).
    """
    folder = out(output.rpartition("/")[0] or ".")
    return Step(
        name="git-archive",
        tool="git",
        args=("archive", "--format=tar", joined("--output=", out(output)), commit),
        workdir=src(),
        inputs=(folder,),
        outputs=(output,),
    )
