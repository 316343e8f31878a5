"""The next release version, decided from Conventional Commits since the last release tag.

Parsing and the bump rules are pure: commit messages in, a ``Decision`` out. A
message that is not a Conventional Commit is a value (``ParseError``), not an
exception: it cannot release anything, and it is listed so that people see it.
Only ``decide`` touches a repository, and only through a runner, so git runs on
the host or in a container alike.

The rules, in the order they apply:

1. Commits are read with ``git log <last release tag's commit>..HEAD``, or the
   whole history when there is no release tag yet.
2. Commits with two parents or more (and single-parent commits whose subject is
   git's own "Merge branch ...", "Merge pull request #N from ...") are ignored:
   the commits they merge are in the log on their own.
3. Each remaining commit is parsed as Conventional Commits 1.0 (``parse_commit``).
   A GitHub squash merge (subject ``feat: x (#12)``, body with ``* fix: y`` lines)
   counts as the subject commit plus one commit per conventional bullet.
4. Bump of one commit: breaking (``!`` or a ``BREAKING CHANGE:``/``BREAKING-CHANGE:``
   footer) → major, ``feat`` → minor, ``fix`` and ``perf`` → patch, any other type →
   none. The release bump is the highest over all commits.
5. No commit with a bump → no release (``Decision.next is None``). That is a normal
   outcome, not an error (semantic-release and python-semantic-release agree).
6. No release tag yet → the first release is ``first_release`` (1.0.0 by default)
   whatever the bump, as semantic-release does.
7. On 0.y.z a breaking change goes to 1.0.0, or to the next minor when
   ``major_on_zero`` is false.
8. A prerelease (``prerelease="rc"``) is ``X.Y.Z-rc.N``: X.Y.Z is the version the
   bump gives, N is one more than the highest ``rc.N`` already tagged for X.Y.Z
   anywhere in the repository (not only on this branch), starting at 1.
9. The current version is the highest tag by semver precedence that matches
   ``tag_format`` and is an ancestor of HEAD. Prerelease tags count only when a
   prerelease is being computed; a final release is always computed from the last
   final release, so commits already shipped in release candidates are counted again
   and ``1.2.0-rc.2`` is followed by ``1.2.0`` when the same commits call for a minor.
10. When the current version is itself a prerelease, its X.Y.Z is kept if it
    already carries the bump (``1.2.0-rc.1`` + a fix → ``1.2.0-rc.2``) and bumped
    from there when it does not (``1.2.0-rc.1`` + a breaking change → ``2.0.0-rc.1``):
    1.2.0 implies a minor bump since the last final release, 1.2.1 a patch, 2.0.0 a
    major.
11. A final version whose tag already exists (necessarily on a commit that is not an
    ancestor of HEAD, or it would be the current version) is a ``TagConflictError``:
    tagging it again would fail or move a published release.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from functools import cache
from typing import Literal, TypeVar

import semver

from pipeline.config import ReleaseConfig
from pipeline.errors import ConfigError, PipelineError, SetupError
from pipeline.model import Step, killed_by_signal
from pipeline.runners import Runner
from pipeline.stages import git

Bump = Literal["major", "minor", "patch", "none"]
BUMP_RANK: dict[Bump, int] = {"none": 0, "patch": 1, "minor": 2, "major": 3}
TYPE_BUMPS: dict[str, Bump] = {"feat": "minor", "fix": "patch", "perf": "patch"}
BREAKING_TOKENS = frozenset({"BREAKING CHANGE", "BREAKING-CHANGE"})
VERSION_PLACEHOLDER = "{version}"
T = TypeVar("T")

# --- errors -------------------------------------------------------------------------------


class ShallowCloneError(SetupError):
    """The checkout has truncated history, so the last release tag may be out of reach.

    Exit 3 (the environment is not ready) rather than 2: the configuration is fine and
    the same command succeeds once the CI checkout fetches the full history.
    """

    def __init__(self) -> None:
        super().__init__(
            "the repository is a shallow clone, so the commits and tags since the last "
            "release cannot all be seen; fetch the full history with "
            "`git fetch --unshallow --tags` (GitHub Actions: actions/checkout with "
            "`fetch-depth: 0`)"
        )


class GitError(PipelineError):
    """A git command failed or printed something unexpected (exit 2)."""

    def __init__(self, step: Step, detail: str) -> None:
        self.step = step
        argv = " ".join(str(arg) for arg in step.args)
        super().__init__(f"git {argv}: {detail}")


class NotARepositoryError(GitError):
    """The source is not a git repository: there is no history to version (exit 2)."""

    def __init__(self, step: Step) -> None:
        self.step = step
        PipelineError.__init__(
            self,
            "the source is not a git repository: versions come from its history; run this in "
            "a clone (or point --source at one)",
        )


class NoCommitsError(GitError):
    """A repository without a commit has nothing to version (exit 2)."""

    def __init__(self, step: Step) -> None:
        self.step = step
        PipelineError.__init__(
            self, "the repository has no commits yet: commit, then ask for a version"
        )


class TagConflictError(PipelineError):
    """The next final version is already tagged on a commit that HEAD does not contain."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        super().__init__(
            f"the next version's tag {tag} already exists on a commit that is not an "
            "ancestor of HEAD; merge the branch that carries it, or release from that branch"
        )


# --- commit parsing -----------------------------------------------------------------------

# <type>[(scope)][!]: <description> -- a colon and exactly one space, then the description.
_HEADER = re.compile(
    r"^(?P<type>[A-Za-z][A-Za-z0-9_-]*)"
    r"(?:\((?P<scope>[^()\r\n]*)\))?"
    r"(?P<breaking>!)?"
    r": (?P<description>\S.*?)\s*$"
)
# `Token: value` or `Token #value`; a token uses `-` for spaces, except BREAKING CHANGE.
_FOOTER = re.compile(
    r"^(?P<token>BREAKING CHANGE|[A-Za-z0-9][A-Za-z0-9_-]*)(?P<separator>: | #)(?P<value>.*)$"
)
_MERGE_SUBJECT = re.compile(
    r"^Merge (?:pull request #\d+ from |(?:remote-tracking )?branch |tag |commit )"
)
# GitHub's squash merge lists each squashed commit's message as a `* ` bullet.
_SQUASH_BULLET = re.compile(r"^\* (?P<header>.+)$")
# GitHub ends the bullets with a rule before the Co-authored-by trailers.
_SQUASH_RULE = re.compile(r"^-{3,}\s*$")


@dataclass(frozen=True)
class Footer:
    token: str
    value: str  # may span several lines
    separator: str = ": "  # ": " or " #"


@dataclass(frozen=True)
class ParsedCommit:
    """A commit that follows Conventional Commits 1.0."""

    sha: str
    type: str  # lower-cased: the spec says types are not case-sensitive
    scope: str | None
    description: str
    body: str = ""
    footers: tuple[Footer, ...] = ()
    breaking: bool = False
    # What breaks: the BREAKING CHANGE footer values, or the description for a bare `!`.
    breaking_notes: tuple[str, ...] = ()
    # The commits a squash merge contains (same sha); empty for an ordinary commit.
    squashed: tuple[ParsedCommit, ...] = ()

    @property
    def bump(self) -> Bump:
        """This commit's own bump; a squash merge's bullets are separate commits."""
        if self.breaking:
            return "major"
        return TYPE_BUMPS.get(self.type, "none")

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class ParseError:
    """A commit that is not a Conventional Commit, or one deliberately ignored (a merge)."""

    sha: str
    message: str
    reason: str
    merge: bool = False  # ignored merges are not reported as unparsed
    # Conventional bullets of a squash merge whose own subject is not conventional.
    squashed: tuple[ParsedCommit, ...] = ()

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


ParseResult = ParsedCommit | ParseError


def parse_commit(sha: str, message: str, *, merge: bool = False) -> ParseResult:
    """Parse one commit message; ``merge`` says git reported two parents or more.

    Body and footers follow the spec: the body starts one blank line after the
    header; footers are ``Token: value`` / ``Token #value`` lines after a blank line,
    a value runs (newlines and blank lines included) until the next token. Footers are
    the trailing paragraphs that each begin with a token, and also everything from the
    first ``BREAKING CHANGE:`` / ``BREAKING-CHANGE:`` line on (from the start of its
    paragraph when that paragraph opens with a footer): those two tokens cannot be
    prose, whereas a "Note: ..." paragraph in the middle of a body is.
    ``BREAKING CHANGE`` must be upper case; every other part is case-insensitive.
    """
    text = message.replace("\r\n", "\n").strip("\n")
    if merge:
        return ParseError(sha, text, "merge commit (two parents or more)", merge=True)
    if not text.strip():
        return ParseError(sha, text, "empty commit message")
    subject, _, rest = text.partition("\n")
    if _MERGE_SUBJECT.match(subject):
        return ParseError(sha, text, "merge commit (git's merge subject)", merge=True)
    own_lines, bullets = _split_squash(rest.split("\n") if rest else [])
    squashed = tuple(
        commit
        for bullet in bullets
        if isinstance(commit := _parse_single(sha, "\n".join(bullet)), ParsedCommit)
    )
    own = _parse_single(sha, "\n".join([subject, *own_lines]).rstrip())
    return replace(own, squashed=squashed)


def _parse_single(sha: str, text: str) -> ParseResult:
    subject, _, rest = text.partition("\n")
    header = _HEADER.match(subject)
    if header is None:
        return ParseError(
            sha, text, "subject is not `<type>[(scope)][!]: <description>` (Conventional Commits)"
        )
    scope = header["scope"]
    if scope is not None and not scope.strip():
        return ParseError(sha, text, "empty scope `()`")
    lines = rest.split("\n") if rest else []
    if lines and lines[0].strip():
        return ParseError(sha, text, "the body must begin one blank line after the description")
    body_lines, footer_lines = _split_footers(lines)
    footers = _footers(footer_lines)
    breaking_notes = tuple(f.value for f in footers if f.token in BREAKING_TOKENS)
    bang = header["breaking"] is not None
    description = header["description"]
    return ParsedCommit(
        sha=sha,
        type=header["type"].lower(),
        scope=scope.strip() if scope is not None else None,
        description=description,
        body="\n".join(body_lines).strip("\n"),
        footers=footers,
        breaking=bang or bool(breaking_notes),
        breaking_notes=breaking_notes or ((description,) if bang else ()),
    )


def _split_squash(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """The squash commit's own body lines, and the lines of each conventional bullet.

    Only a `* ` line whose text is a valid header starts a bullet, so an ordinary body
    with a bulleted list stays one commit. After GitHub's `---` rule the lines (the
    Co-authored-by trailers) go back to the squash commit itself.
    """
    own: list[str] = []
    bullets: list[list[str]] = []
    current = own
    for line in lines:
        bullet = _SQUASH_BULLET.match(line)
        if bullet and _valid_header(bullet["header"]):
            current = [bullet["header"]]
            bullets.append(current)
        elif bullets and _SQUASH_RULE.match(line):
            current = own
            own.append("")
        else:
            current.append(line)
    return own, [[b[0], *_as_body(b[1:])] for b in bullets]


def _valid_header(line: str) -> bool:
    header = _HEADER.match(line)
    return header is not None and (header["scope"] is None or bool(header["scope"].strip()))


def _as_body(lines: list[str]) -> list[str]:
    """A bullet's body keeps one blank line after its header, as a commit's would."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return ["", *lines] if lines else []


def _split_footers(lines: list[str]) -> tuple[list[str], list[str]]:
    """Body lines and footer lines (see ``parse_commit`` for where footers start)."""
    paragraph_starts = [
        i for i, line in enumerate(lines) if line.strip() and (i == 0 or not lines[i - 1].strip())
    ]
    start = len(lines)
    for i in reversed(paragraph_starts):
        if not _FOOTER.match(lines[i]):
            break
        start = i
    breaking_line = next((i for i, line in enumerate(lines) if _is_breaking_footer(line)), None)
    if breaking_line is not None:
        paragraph = max(i for i in [*paragraph_starts, 0] if i <= breaking_line)
        # Inside a run of footers (Refs: #1 / BREAKING CHANGE: x) the run starts the section;
        # inside prose the breaking line itself does: missing a major bump is the worse error.
        opens = paragraph if _FOOTER.match(lines[paragraph]) else breaking_line
        start = min(start, opens)
    return lines[:start], lines[start:]


def _is_breaking_footer(line: str) -> bool:
    footer = _FOOTER.match(line)
    return footer is not None and footer["token"] in BREAKING_TOKENS


def _footers(lines: list[str]) -> tuple[Footer, ...]:
    footers: list[Footer] = []
    for line in lines:
        match = _FOOTER.match(line)
        if match:
            footers.append(Footer(match["token"], match["value"], match["separator"]))
        elif footers:
            last = footers[-1]
            footers[-1] = replace(last, value=f"{last.value}\n{line}")
    return tuple(replace(f, value=f.value.strip()) for f in footers)


def flatten(results: Iterable[ParseResult]) -> list[ParseResult]:
    """Each result followed by the commits it squashes."""
    flat: list[ParseResult] = []
    for result in results:
        flat += [result, *result.squashed]
    return flat


# --- tags ---------------------------------------------------------------------------------

_SEMVER = (
    r"(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)"
    r"(?:-(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
# Characters git refuses in a ref name (git check-ref-format), checked up front so a bad
# format fails as configuration and not at `git tag` after the release notes are written.
_REF_FORBIDDEN = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{")
_PRERELEASE_TOKEN = re.compile(r"^[A-Za-z][0-9A-Za-z-]*$")


def _check_tag_format(tag_format: str) -> tuple[str, str]:
    if tag_format.count(VERSION_PLACEHOLDER) != 1:
        raise ConfigError(
            f"must contain {VERSION_PLACEHOLDER} exactly once, got {tag_format!r}",
            field="release.tag_format",
        )
    prefix, suffix = tag_format.split(VERSION_PLACEHOLDER)
    if _REF_FORBIDDEN.search(prefix + suffix):
        raise ConfigError(
            f"{tag_format!r} would not be a valid git tag name", field="release.tag_format"
        )
    return prefix, suffix


@cache
def tag_pattern(tag_format: str) -> re.Pattern[str]:
    """A pattern matching exactly the tags ``tag_format`` produces; group ``version``."""
    prefix, suffix = _check_tag_format(tag_format)
    return re.compile(f"^{re.escape(prefix)}(?P<version>{_SEMVER}){re.escape(suffix)}$")


def format_tag(tag_format: str, version: semver.Version | str) -> str:
    _check_tag_format(tag_format)
    return tag_format.replace(VERSION_PLACEHOLDER, str(version))


def parse_tag(tag_format: str, tag: str) -> semver.Version | None:
    """The version a tag names, or None for tags that ``tag_format`` does not produce."""
    match = tag_pattern(tag_format).match(tag)
    return semver.Version.parse(match["version"]) if match else None


@dataclass(frozen=True)
class ReleaseTag:
    name: str
    commit: str
    version: semver.Version


def current_release(
    tags: Iterable[git.Tag], tag_format: str, *, include_prereleases: bool
) -> ReleaseTag | None:
    """The highest-precedence release tag among ``tags`` (pass only ancestors of HEAD)."""
    releases = [
        ReleaseTag(tag.name, tag.commit, version)
        for tag in tags
        if (version := parse_tag(tag_format, tag.name)) is not None
        and (include_prereleases or version.prerelease is None)
    ]
    # The name breaks ties between versions differing only in build metadata.
    return max(releases, key=lambda r: (r.version, r.name), default=None)


# --- the decision -------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    current: str | None  # the version released last (see rule 9), None before the first
    next: str | None  # None: nothing to release
    bump: Bump  # the level applied, after the 0.y.z rule; "none" when nothing releases
    commits: tuple[ParsedCommit, ...]  # flat: a squash merge is followed by its bullets
    unparsed: tuple[ParseError, ...]  # not conventional; merges are left out
    current_tag: str | None = None
    next_tag: str | None = None
    head: str | None = None  # the commit the next tag goes on, when decided from git
    ignored_tags: tuple[str, ...] = ()  # tags that are not versions under the tag format

    @property
    def released(self) -> bool:
        return self.next is not None

    @property
    def is_prerelease(self) -> bool:
        return self.next is not None and semver.Version.parse(self.next).prerelease is not None


def _version(text: str, field: str) -> semver.Version:
    try:
        return semver.Version.parse(text)
    except ValueError:
        raise ConfigError(f"expected a semantic version x.y.z, got {text!r}", field=field) from None


def _check_prerelease_token(token: str | None) -> None:
    if token is not None and not _PRERELEASE_TOKEN.match(token):
        raise ConfigError(
            f"a prerelease token is letters, digits and '-', starting with a letter; got {token!r}",
            field="prerelease",
        )


def _implied_bump(version: semver.Version) -> Bump:
    """The bump that produced a version from its predecessor: 1.2.1 patch, 1.2.0 minor."""
    if version.patch:
        return "patch"
    if version.minor:
        return "minor"
    return "major"


def _apply(version: semver.Version, bump: Bump) -> semver.Version:
    if bump == "major":
        return version.bump_major()
    if bump == "minor":
        return version.bump_minor()
    return version.bump_patch()


def _bumped(current: semver.Version, bump: Bump) -> semver.Version:
    if current.prerelease is None:
        return _apply(current, bump)
    base = current.finalize_version()
    if BUMP_RANK[bump] <= BUMP_RANK[_implied_bump(base)]:
        return base
    return _apply(base, bump)


def _prerelease_number(base: semver.Version, token: str, existing: Iterable[semver.Version]) -> int:
    counter = re.compile(rf"^{re.escape(token)}\.(?P<n>0|[1-9]\d*)$")
    numbers = [
        int(match["n"])
        for version in existing
        if version.finalize_version() == base
        and (match := counter.match(version.prerelease or "")) is not None
    ]
    return max(numbers, default=0) + 1


def next_version(
    current: semver.Version | None,
    commits: Iterable[ParseResult],
    *,
    first_release: str = "1.0.0",
    major_on_zero: bool = True,
    prerelease: str | None = None,
    existing_tags: Collection[str],
    tag_format: str = "v{version}",
) -> Decision:
    """The version after ``current`` given the commits since it (rules 4-11 above).

    ``existing_tags`` are all tag names in the repository, ancestors of HEAD or not:
    they number prereleases and catch a final version that is already tagged.
    """
    first = _version(first_release, "release.first_release")
    _check_prerelease_token(prerelease)
    flat = flatten(commits)
    parsed = tuple(c for c in flat if isinstance(c, ParsedCommit))
    unparsed = tuple(c for c in flat if isinstance(c, ParseError) and not c.merge)
    wanted: Bump = max((c.bump for c in parsed), key=BUMP_RANK.__getitem__, default="none")
    current_text = str(current) if current is not None else None
    current_tag = format_tag(tag_format, current) if current is not None else None
    decision = Decision(current_text, None, "none", parsed, unparsed, current_tag=current_tag)
    if wanted == "none":
        return decision

    bump: Bump
    if current is None:
        bump, base = wanted, first
    else:
        demote = current.major == 0 and wanted == "major" and not major_on_zero
        bump = "minor" if demote else wanted
        base = _bumped(current, bump)

    existing = [v for tag in existing_tags if (v := parse_tag(tag_format, tag)) is not None]
    if prerelease is not None:
        number = _prerelease_number(base, prerelease, existing)
        upcoming = base.replace(prerelease=f"{prerelease}.{number}")
    else:
        if any(version == base for version in existing):
            raise TagConflictError(format_tag(tag_format, base))
        upcoming = base
    return replace(
        decision, next=str(upcoming), bump=bump, next_tag=format_tag(tag_format, upcoming)
    )


async def _git(runner: Runner, step: Step, parse: Callable[[str], T]) -> T:
    result = await runner.run(step)
    killed = killed_by_signal(result)
    if killed is not None:
        raise GitError(step, killed)
    if not result.ok:
        detail = result.stderr.strip() or result.stdout.strip() or "no output"
        raise GitError(step, f"exited {result.exit_code}: {detail}")
    try:
        return parse(result.stdout)
    except git.OutputError as exc:
        raise GitError(step, f"unexpected output: {exc}") from None


async def decide(runner: Runner, *, config: ReleaseConfig, prerelease: str | None) -> Decision:
    """Read the repository through ``runner`` and decide the next version.

    Raises ``ShallowCloneError`` (exit 3) on a shallow clone, ``ConfigError`` (exit 2)
    for a bad tag format or prerelease token, ``GitError`` (exit 2) when git fails (not
    a repository, no commit yet) and ``TagConflictError`` (exit 2) per rule 11. No
    releasable commit is not an error: ``Decision.next`` is None.
    """
    tag_pattern(config.tag_format)  # a bad format fails before any git runs
    _check_prerelease_token(prerelease)
    try:
        shallow = await _git(runner, git.is_shallow_step(), git.parse_is_shallow)
    except GitError as error:
        if "not a git repository" in str(error):
            raise NotARepositoryError(error.step) from None
        raise
    if shallow:
        raise ShallowCloneError
    try:
        head = await _git(runner, git.head_step(), git.parse_head)
    except GitError as error:
        if "Needed a single revision" in str(error) or "unknown revision" in str(error):
            raise NoCommitsError(error.step) from None
        raise
    ancestors = await _git(runner, git.tags_step(merged_into="HEAD"), git.parse_tags)
    every_tag = await _git(runner, git.tags_step(merged_into=None), git.parse_tags)
    current = current_release(
        ancestors, config.tag_format, include_prereleases=prerelease is not None
    )
    since = current.commit if current is not None else None
    history = await _git(runner, git.log_step(since=since), git.parse_log)
    decision = next_version(
        current.version if current is not None else None,
        [parse_commit(c.sha, c.message, merge=c.is_merge) for c in history],
        first_release=config.first_release,
        major_on_zero=config.major_on_zero,
        prerelease=prerelease,
        existing_tags=[tag.name for tag in every_tag],
        tag_format=config.tag_format,
    )
    ignored = sorted(t.name for t in every_tag if parse_tag(config.tag_format, t.name) is None)
    return replace(
        decision,
        head=head,
        current_tag=current.name if current is not None else None,
        ignored_tags=tuple(ignored),
    )


def decision_json(decision: Decision) -> dict[str, object]:
    """The `version --json` shape: current, next (or null), bump and the commits counted."""
    return {
        "current": decision.current,
        "next": decision.next,
        "bump": decision.bump,
        "current_tag": decision.current_tag,
        "next_tag": decision.next_tag,
        "commits": [
            {
                "sha": commit.sha,
                "type": commit.type,
                "scope": commit.scope,
                "description": commit.description,
                "breaking": commit.breaking,
                "bump": commit.bump,
            }
            for commit in decision.commits
        ],
        "unparsed": [
            {"sha": e.sha, "subject": e.subject, "reason": e.reason} for e in decision.unparsed
        ],
        "ignored_tags": list(decision.ignored_tags),
    }
