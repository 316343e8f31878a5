"""The release decision against real git histories, read through LocalRunner.

Each test scripts a small repository with subprocess (that is the fixture); the
code under test reads it only through `decide` and the steps of pipeline.stages.git.
Git runs with an empty global and no system configuration, so a developer's
settings (signing, log.showSignature, default branch) cannot change the outcome.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.config import ReleaseConfig
from pipeline.runners.local import LocalRunner
from pipeline.stages import git
from pipeline.tools import TOOLS, find_binary
from pipeline.versioning import (
    Decision,
    GitError,
    ShallowCloneError,
    TagConflictError,
    decide,
)

GIT_BINARY = find_binary(TOOLS["git"])
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(GIT_BINARY is None, reason="git is not installed"),
]
FIRST_DATE = 1_700_000_000  # commits get increasing dates so `git log` order is fixed


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ada@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Carl Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "carl@example.com")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # Never find an enclosing repository above the temporary directory.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


class Repo:
    """A scripted repository: the test fixture, driven by subprocess on purpose."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = FIRST_DATE

    @classmethod
    def init(cls, path: Path) -> Repo:
        path.mkdir(parents=True)
        repo = cls(path)
        repo.git("-c", "init.defaultBranch=main", "init", "--quiet")
        return repo

    def git(self, *args: str) -> str:
        self.clock += 60
        date = f"@{self.clock} +0000"
        env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        done = subprocess.run(
            [str(GIT_BINARY), *args],
            cwd=self.path,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def commit(self, message: str) -> str:
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def tag(self, name: str, *, annotated: bool = False) -> None:
        if annotated:
            self.git("tag", "--annotate", name, "-m", f"release {name}")
        else:
            self.git("tag", name)

    def branch(self, name: str) -> None:
        self.git("switch", "--quiet", "-c", name)

    def switch(self, name: str) -> None:
        self.git("switch", "--quiet", name)

    def merge(self, branch: str, message: str) -> str:
        self.git("merge", "--quiet", "--no-ff", branch, "-m", message)
        return self.head()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


def runner_for(repo: Repo) -> LocalRunner:
    out = repo.path.parent / "out"
    out.mkdir(exist_ok=True)
    return LocalRunner(source=repo.path, out=out)


async def decide_in(
    repo: Repo, *, prerelease: str | None = None, config: ReleaseConfig | None = None
) -> Decision:
    return await decide(runner_for(repo), config=config or ReleaseConfig(), prerelease=prerelease)


def descriptions(decision: Decision) -> set[str]:
    return {commit.description for commit in decision.commits}


# --- reading the history ------------------------------------------------------------------


async def test_commits_since_a_lightweight_tag(repo: Repo) -> None:
    repo.commit("chore: initial layout")
    repo.commit("feat: before the release")
    repo.tag("v1.0.0")
    repo.commit("feat: add export")
    repo.commit("fix: crash on empty input")
    repo.commit("docs: usage")
    repo.commit("tweak things")

    decision = await decide_in(repo)

    assert (decision.current, decision.next, decision.bump) == ("1.0.0", "1.1.0", "minor")
    assert (decision.current_tag, decision.next_tag) == ("v1.0.0", "v1.1.0")
    assert decision.head == repo.head()
    assert descriptions(decision) == {"add export", "crash on empty input", "usage"}
    assert [error.subject for error in decision.unparsed] == ["tweak things"]
    # History order, newest first, as git log gives it.
    assert [c.description for c in decision.commits] == [
        "usage",
        "crash on empty input",
        "add export",
    ]


async def test_annotated_and_lightweight_tags_resolve_to_their_commits(repo: Repo) -> None:
    first = repo.commit("feat: one")
    repo.tag("v1.0.0", annotated=True)
    second = repo.commit("fix: two")
    repo.tag("v1.0.1")
    repo.commit("fix: three")

    result = await runner_for(repo).run(git.tags_step())
    tags = {tag.name: tag for tag in git.parse_tags(result.stdout)}

    assert result.ok, result.stderr
    assert tags["v1.0.0"] == git.Tag("v1.0.0", first, annotated=True)
    assert tags["v1.0.1"] == git.Tag("v1.0.1", second, annotated=False)
    decision = await decide_in(repo)
    assert (decision.current, decision.next) == ("1.0.1", "1.0.2")
    assert descriptions(decision) == {"three"}


async def test_newest_tag_by_semver_not_by_date_or_name(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.10.0")
    repo.commit("fix: two")
    repo.tag("v1.9.0")  # tagged later, on a later commit, but lower
    repo.commit("fix: three")

    decision = await decide_in(repo)

    assert (decision.current, decision.next) == ("1.10.0", "1.10.1")
    assert descriptions(decision) == {"two", "three"}


async def test_first_release_reads_the_whole_history(repo: Repo) -> None:
    repo.commit("chore: initial commit")
    repo.commit("fix: a bug")
    repo.tag("not-a-version")

    decision = await decide_in(repo)

    assert (decision.current, decision.current_tag) == (None, None)
    assert (decision.next, decision.next_tag, decision.bump) == ("1.0.0", "v1.0.0", "patch")
    assert descriptions(decision) == {"initial commit", "a bug"}


async def test_no_releasable_commit_means_no_release(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    repo.commit("docs: readme")
    repo.commit("ci: cache")

    decision = await decide_in(repo)

    assert (decision.current, decision.next, decision.bump) == ("1.0.0", None, "none")
    assert not decision.released


async def test_a_tag_on_head_leaves_nothing_to_release(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")

    decision = await decide_in(repo)

    assert (decision.next, decision.commits, decision.unparsed) == (None, (), ())


async def test_a_tag_on_a_side_branch_is_not_the_current_version(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    repo.branch("side")
    repo.commit("feat!: only on the side branch")
    repo.tag("v2.0.0")
    repo.switch("main")
    repo.commit("fix: on main")

    merged = await runner_for(repo).run(git.tags_step(merged_into="HEAD"))
    decision = await decide_in(repo)

    assert [tag.name for tag in git.parse_tags(merged.stdout)] == ["v1.0.0"]
    assert (decision.current, decision.next) == ("1.0.0", "1.0.1")
    assert descriptions(decision) == {"on main"}


async def test_a_side_branch_tag_becomes_current_once_merged(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    repo.branch("release")
    repo.commit("fix: on release")
    repo.tag("v1.0.1")
    repo.switch("main")
    repo.commit("feat: on main")
    repo.merge("release", "Merge branch 'release'")

    decision = await decide_in(repo)

    assert (decision.current, decision.next) == ("1.0.1", "1.1.0")
    assert descriptions(decision) == {"on main"}


async def test_the_next_version_tagged_on_another_branch_is_a_conflict(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    repo.branch("hotfix")
    repo.commit("fix: hotfix")
    repo.tag("v1.0.1")
    repo.switch("main")
    repo.commit("fix: on main")

    with pytest.raises(TagConflictError) as caught:
        await decide_in(repo)

    assert caught.value.tag == "v1.0.1"


async def test_merge_commits_are_ignored_and_merged_commits_counted(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    repo.branch("feature")
    repo.commit("feat: from the feature branch")
    repo.commit("fix: also from the feature branch")
    repo.switch("main")
    repo.commit("docs: on main meanwhile")
    merge = repo.merge("feature", "Merge branch 'feature'")
    repo.branch("other")
    repo.commit("fix: from the other branch")
    repo.switch("main")
    repo.commit("chore: keep main moving")
    # A merge with a conventional message is still a merge: its parents carry the changes.
    conventional_merge = repo.merge("other", "feat!: this merge message must not count")

    history = git.parse_log((await runner_for(repo).run(git.log_step())).stdout)
    decision = await decide_in(repo)

    merges = {commit.sha for commit in history if commit.is_merge}
    assert merges == {merge, conventional_merge}
    assert all(len(c.parents) == 2 for c in history if c.is_merge)
    assert (decision.next, decision.bump) == ("1.1.0", "minor")
    assert descriptions(decision) == {
        "from the feature branch",
        "also from the feature branch",
        "on main meanwhile",
        "from the other branch",
        "keep main moving",
    }
    assert decision.unparsed == ()


async def test_bodies_with_blank_lines_and_footers_survive_git(repo: Repo) -> None:
    message = (
        "feat(api): stream results\n"
        "\n"
        "Results are streamed as they come.\n"
        "Clients must read incrementally.\n"
        "\n"
        "The old buffered mode was slow.\n"
        "\n"
        "BREAKING CHANGE: `?buffered=1` is no longer accepted\n"
        "Refs: #42"
    )
    repo.commit("fix: one")
    repo.tag("v1.4.2")
    sha = repo.commit(message)

    history = git.parse_log((await runner_for(repo).run(git.log_step())).stdout)
    decision = await decide_in(repo)

    assert history[0].sha == sha
    assert history[0].message == message
    assert (decision.next, decision.bump) == ("2.0.0", "major")
    (commit,) = decision.commits
    assert commit.body == (
        "Results are streamed as they come.\n"
        "Clients must read incrementally.\n"
        "\n"
        "The old buffered mode was slow."
    )
    assert commit.breaking_notes == ("`?buffered=1` is no longer accepted",)
    assert [(f.token, f.value) for f in commit.footers] == [
        ("BREAKING CHANGE", "`?buffered=1` is no longer accepted"),
        ("Refs", "#42"),
    ]


async def test_a_github_squash_merge_is_expanded(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    sha = repo.commit(
        "feat(auth): OIDC login (#12)\n\n* feat(auth): client\n\n* fix: token expiry\n\n"
        "* docs: how to configure\n\n---------\n\nCo-authored-by: Bo <bo@example.com>"
    )

    decision = await decide_in(repo)

    assert (decision.next, decision.bump) == ("1.1.0", "minor")
    assert [(c.type, c.description) for c in decision.commits] == [
        ("feat", "OIDC login (#12)"),
        ("feat", "client"),
        ("fix", "token expiry"),
        ("docs", "how to configure"),
    ]
    assert {c.sha for c in decision.commits} == {sha}


async def test_release_candidates_count_up_across_branches(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    repo.commit("feat: two")
    repo.tag("v1.1.0-rc.1")
    repo.branch("elsewhere")
    repo.commit("fix: elsewhere")
    repo.tag("v1.1.0-rc.2")  # not an ancestor of main, but its number is taken
    repo.switch("main")
    repo.commit("fix: three")

    candidate = await decide_in(repo, prerelease="rc")
    final = await decide_in(repo)

    assert (candidate.current, candidate.next) == ("1.1.0-rc.1", "1.1.0-rc.3")
    assert candidate.is_prerelease
    assert descriptions(candidate) == {"three"}
    # The final release ignores the candidates and counts everything since 1.0.0.
    assert (final.current, final.next) == ("1.0.0", "1.1.0")
    assert descriptions(final) == {"two", "three"}


async def test_tag_format_selects_the_tags(repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("web-2.3.0")
    repo.commit("fix: two")
    repo.tag("v9.9.9")
    repo.commit("fix: three")
    config = ReleaseConfig(tag_format="web-{version}")

    decision = await decide_in(repo, config=config)

    assert (decision.current_tag, decision.next_tag) == ("web-2.3.0", "web-2.3.1")
    assert descriptions(decision) == {"two", "three"}


async def test_working_tree_status(repo: Repo) -> None:
    repo.commit("feat: one")
    runner = runner_for(repo)

    clean = await runner.run(git.status_step())
    (repo.path / "notes.txt").write_text("draft\n", encoding="utf-8")
    dirty = await runner.run(git.status_step())

    assert clean.ok
    assert git.parse_status(clean.stdout) == []
    assert git.parse_status(dirty.stdout) == [git.StatusEntry("??", "notes.txt")]


# --- what stops a decision ----------------------------------------------------------------


async def test_a_shallow_clone_is_refused_with_the_fix(tmp_path: Path, repo: Repo) -> None:
    repo.commit("feat: one")
    repo.tag("v1.0.0")
    repo.commit("fix: two")
    repo.commit("fix: three")
    clone = Repo(tmp_path / "clone")
    Repo(tmp_path).git("clone", "--quiet", "--depth", "1", f"file://{repo.path}", str(clone.path))

    with pytest.raises(ShallowCloneError) as caught:
        await decide_in(clone)

    assert caught.value.exit_code == 3
    assert "git fetch --unshallow --tags" in str(caught.value)
    # The advice works: after it the same checkout decides normally.
    clone.git("fetch", "--quiet", "--unshallow", "--tags")
    decision = await decide_in(clone)
    assert (decision.current, decision.next) == ("1.0.0", "1.0.1")


async def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()

    with pytest.raises(GitError) as caught:
        await decide_in(Repo(plain))

    assert "not a git repository" in str(caught.value)
    assert caught.value.exit_code == 2


async def test_a_repository_without_commits(repo: Repo) -> None:
    with pytest.raises(GitError) as caught:
        await decide_in(repo)

    assert "the repository has no commits yet" in str(caught.value)
    assert caught.value.exit_code == 2


# --- the parsers on their own -------------------------------------------------------------


def test_parse_log_of_nothing() -> None:
    assert git.parse_log("") == []


def test_parse_log_keeps_separator_free_bodies_whole() -> None:
    sha = "1" * 40
    parent = "2" * 40
    output = f"{sha}\x1f{parent}\x1ffeat: a\x1fline one\n\nline three\n\x1e\n"

    (commit,) = git.parse_log(output)

    assert commit == git.Commit(sha, (parent,), "feat: a", "line one\n\nline three")
    assert not commit.is_merge


@pytest.mark.parametrize(
    ("parser", "output"),
    [
        (git.parse_tags, "v1.0.0 only-one-field\n"),
        (git.parse_log, "not a record\x1e"),
        (git.parse_head, "HEAD\n"),
        (git.parse_is_shallow, "yes\n"),
    ],
)
def test_parsers_reject_unexpected_output(parser: Callable[[str], object], output: str) -> None:
    with pytest.raises(git.OutputError):
        parser(output)
