"""git, read-only: the history questions a release asks, as steps and parsers.

Every step runs in the source root through a runner, so the same argv reads the
history on the host (``LocalRunner``) and in a container (a Dagger runner). The
parsers are pure and take the step's stdout.

The log format separates fields with US (0x1f) and ends each commit with RS
(0x1e): commit messages are free text that can hold any printable character,
blank lines included, but git's own message cleanup never leaves these two
control characters in a message made by ``git commit``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.model import Ref, SecretRef, Step, src

FIELD_SEPARATOR = "\x1f"
RECORD_SEPARATOR = "\x1e"
# %P: parent hashes, so merges are known from the graph rather than guessed from the subject.
LOG_FORMAT = "%H%x1f%P%x1f%s%x1f%b%x1e"
# %(*objectname) is the peeled target of an annotated tag and empty for a lightweight one.
TAG_FORMAT = "%(refname:strip=2)%09%(objectname)%09%(*objectname)"
_LOG_FIELDS = 4
_TAG_FIELDS = 3


def is_shallow_step() -> Step:
    return Step(
        name="git-is-shallow",
        tool="git",
        args=("rev-parse", "--is-shallow-repository"),
        workdir=src(),
    )


def head_step() -> Step:
    # --verify: a repository without commits fails here instead of echoing "HEAD" back.
    return Step(name="git-head", tool="git", args=("rev-parse", "--verify", "HEAD"), workdir=src())


def tags_step(*, merged_into: str | None = "HEAD") -> Step:
    """Tags with the commit each resolves to; only ancestors of ``merged_into`` unless None."""
    merged = ("--merged", merged_into) if merged_into is not None else ()
    return Step(
        name="git-tags-merged" if merged_into is not None else "git-tags",
        tool="git",
        args=("tag", "--list", *merged, f"--format={TAG_FORMAT}"),
        workdir=src(),
    )


def log_step(since: str | None = None, until: str = "HEAD") -> Step:
    """Commits reachable from ``until`` but not from ``since`` (all history when None).

    ``since`` should be a commit hash (a tag's resolved commit), which can never be
    mistaken for a branch or a path the way a tag name can.
    """
    revision = f"{since}..{until}" if since is not None else until
    return Step(
        name="git-log",
        tool="git",
        args=(
            "log",
            # A user's log.showSignature would print gpg output into the records.
            "--no-show-signature",
            "--encoding=UTF-8",
            f"--format={LOG_FORMAT}",
            revision,
            "--",
        ),
        workdir=src(),
    )


def status_step() -> Step:
    return Step(name="git-status", tool="git", args=("status", "--porcelain"), workdir=src())


class OutputError(ValueError):
    """git printed something these parsers do not understand."""


def parse_is_shallow(stdout: str) -> bool:
    answer = stdout.strip()
    if answer not in {"true", "false"}:
        raise OutputError(f"expected true or false from --is-shallow-repository, got {answer!r}")
    return answer == "true"


def parse_head(stdout: str) -> str:
    sha = stdout.strip()
    if not sha or any(c not in "0123456789abcdef" for c in sha):
        raise OutputError(f"expected a commit hash from rev-parse, got {sha!r}")
    return sha


@dataclass(frozen=True)
class Tag:
    name: str
    commit: str  # the commit the tag resolves to, for annotated and lightweight tags alike
    annotated: bool


def _lines(stdout: str) -> list[str]:
    """git's output lines, split at newlines only.

    str.splitlines() also splits at U+0085, U+2028 and other characters that a tag name or a
    path may hold, which would cut one tag's line in two.
    """
    return stdout.split("\n")


def parse_tags(stdout: str) -> list[Tag]:
    tags: list[Tag] = []
    for line in _lines(stdout):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != _TAG_FIELDS:
            raise OutputError(f"unexpected tag line {line!r}")
        name, target, peeled = fields
        tags.append(Tag(name=name, commit=peeled or target, annotated=bool(peeled)))
    return tags


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    subject: str
    body: str  # everything after the subject paragraph; "" when there is none

    @property
    def is_merge(self) -> bool:
        return len(self.parents) >= 2  # noqa: PLR2004 - a merge is any commit with two parents or more

    @property
    def message(self) -> str:
        """The message as written: %s joins the subject paragraph, %b is the rest."""
        return f"{self.subject}\n\n{self.body}" if self.body else self.subject


def parse_log(stdout: str) -> list[Commit]:
    commits: list[Commit] = []
    for raw in stdout.split(RECORD_SEPARATOR):
        # tformat puts a newline after each record's terminator; it belongs to no message.
        record = raw.lstrip("\n")
        if not record.strip():
            continue
        fields = record.split(FIELD_SEPARATOR, _LOG_FIELDS - 1)
        if len(fields) != _LOG_FIELDS:
            raise OutputError(f"unexpected log record {record[:120]!r}")
        sha, parents, subject, body = fields
        commits.append(
            Commit(
                sha=parse_head(sha),
                parents=tuple(parents.split()),
                subject=subject.strip(),
                body=body.strip("\n").rstrip(),
            )
        )
    return commits


@dataclass(frozen=True)
class StatusEntry:
    code: str  # the two porcelain status letters, e.g. " M", "??", "A "
    path: str


def parse_status(stdout: str) -> list[StatusEntry]:
    """Changed and untracked paths; an empty list is a clean tree."""
    # No strip of the whole output: the first entry may start with a significant space.
    return [StatusEntry(code=line[:2], path=line[3:]) for line in _lines(stdout) if line]


# --- writing: the release tag --------------------------------------------------------------

TOKEN_VARIABLE = "GITOPS_PIPELINE_GIT_TOKEN"  # noqa: S105 - a variable name, not a value
# git asks GIT_ASKPASS for the user name and the password; the token answers the latter and
# only ever travels in the environment, never in argv or a remote URL.
ASKPASS_SCRIPT = f"""#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "${{GITOPS_PIPELINE_GIT_USER:-x-access-token}}" ;;
  *) printf '%s\\n' "${TOKEN_VARIABLE}" ;;
esac
"""


def commit_time_step() -> Step:
    return Step(
        name="git-commit-time",
        tool="git",
        args=("log", "-1", "--no-show-signature", "--format=%cI", "HEAD"),
        workdir=src(),
    )


def remote_url_step(remote: str) -> Step:
    return Step(
        name="git-remote-url", tool="git", args=("remote", "get-url", remote), workdir=src()
    )


def annotate_tag_step(
    tag: str, message: str, commit: str, tagger: tuple[str, str] | None = None
) -> Step:
    """An annotated tag; `tagger` (name, email) overrides git's configured identity."""
    identity = (
        (("GIT_COMMITTER_NAME", tagger[0]), ("GIT_COMMITTER_EMAIL", tagger[1])) if tagger else ()
    )
    return Step(
        name="git-tag",
        tool="git",
        args=("tag", "--annotate", tag, "--message", message, commit),
        workdir=src(),
        env=identity,
        writes_source=True,
    )


def delete_tag_step(tag: str) -> Step:
    return Step(
        name="git-tag-delete",
        tool="git",
        args=("tag", "--delete", tag),
        workdir=src(),
        writes_source=True,
    )


def push_tag_step(remote: str, tag: str, askpass: Ref, token: SecretRef | None) -> Step:
    """Push exactly one tag; never forced, so an existing remote tag rejects the push."""
    return Step(
        name="git-push-tag",
        tool="git",
        args=("push", "--porcelain", remote, f"refs/tags/{tag}:refs/tags/{tag}"),
        workdir=src(),
        env=(("GIT_ASKPASS", askpass), ("GIT_TERMINAL_PROMPT", "0")),
        inputs=(askpass,),
        secrets=(SecretRef(TOKEN_VARIABLE, token.source),) if token else (),
        timeout=120.0,
    )


def push_rejected(stderr: str, stdout: str) -> bool:
    """The remote refused the tag because it exists already (someone released first)."""
    text = f"{stdout}\n{stderr}"
    # --porcelain marks a refused ref with "!" and a tab; servers word the reason differently.
    return any(
        marker in text
        for marker in ("[rejected]", "[remote rejected]", "already exists", "!\trefs/tags/")
    )


def tag_created(stdout: str, tag: str) -> bool:
    """--porcelain prints "*" for a ref this push created ("=" when it was already there)."""
    return any(line.startswith(f"*\trefs/tags/{tag}:") for line in stdout.splitlines())


def merge_base_step(ref: str) -> Step:
    """Where the branch left `ref`: a pull request's changes are those since that commit."""
    return Step(
        name="git-merge-base",
        tool="git",
        # --end-of-options: a ref that starts with "-" is a ref, not an option.
        args=("merge-base", "--end-of-options", ref, "HEAD"),
        workdir=src(),
    )


def changed_files_step(commit: str) -> Step:
    """Tracked files that differ between `commit` and the work tree, NUL-separated."""
    return Step(
        name="git-diff-names",
        tool="git",
        args=("diff", "--name-only", "--no-renames", "-z", commit, "--"),
        workdir=src(),
    )


def untracked_files_step() -> Step:
    return Step(
        name="git-untracked",
        tool="git",
        args=("ls-files", "-z", "--others", "--exclude-standard"),
        workdir=src(),
    )


def nul_separated(stdout: str) -> list[str]:
    return [name for name in stdout.split("\0") if name]
