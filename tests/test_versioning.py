"""Conventional Commits parsing, bump rules, tag formats and release notes: pure logic.

`decide` is exercised here with a RecordingRunner (scripted git answers); the same
function against real repositories is in test_git_history.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
import semver

from pipeline.changelog import NOTHING_NOTABLE, changelog_markdown
from pipeline.config import ReleaseConfig
from pipeline.errors import ConfigError, PipelineError, SetupError
from pipeline.model import Step
from pipeline.runners.recording import RecordingRunner, Reply
from pipeline.stages import git
from pipeline.versioning import (
    Decision,
    Footer,
    GitError,
    ParsedCommit,
    ParseError,
    ShallowCloneError,
    TagConflictError,
    current_release,
    decide,
    format_tag,
    next_version,
    parse_commit,
    parse_tag,
    tag_pattern,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def parsed(message: str, *, merge: bool = False) -> ParsedCommit:
    result = parse_commit(SHA, message, merge=merge)
    assert isinstance(result, ParsedCommit), result
    return result


def unparsed(message: str, *, merge: bool = False) -> ParseError:
    result = parse_commit(SHA, message, merge=merge)
    assert isinstance(result, ParseError), result
    return result


def version(text: str | None) -> semver.Version | None:
    return semver.Version.parse(text) if text is not None else None


def commits(*messages: str) -> list[ParsedCommit | ParseError]:
    return [parse_commit(f"{i:040x}", message) for i, message in enumerate(messages, start=1)]


# --- the header ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("feat: add login", ("feat", None, "add login", False, "minor")),
        ("fix: handle empty values", ("fix", None, "handle empty values", False, "patch")),
        ("perf: cache templates", ("perf", None, "cache templates", False, "patch")),
        ("feat(api): add /health", ("feat", "api", "add /health", False, "minor")),
        ("fix(helm-chart): quote labels", ("fix", "helm-chart", "quote labels", False, "patch")),
        ("feat!: drop python 3.10", ("feat", None, "drop python 3.10", True, "major")),
        ("fix(api)!: rename field", ("fix", "api", "rename field", True, "major")),
        ("refactor!: new layout", ("refactor", None, "new layout", True, "major")),
        ("chore(deps)!: bump runtime", ("chore", "deps", "bump runtime", True, "major")),
        # Types are case-insensitive (spec item 15); the scope keeps its spelling.
        ("FEAT: shout", ("feat", None, "shout", False, "minor")),
        ("Fix(API): mixed", ("fix", "API", "mixed", False, "patch")),
        ("Feat(Core)!: all of it", ("feat", "Core", "all of it", True, "major")),
        ("docs: explain", ("docs", None, "explain", False, "none")),
        ("chore: tidy", ("chore", None, "tidy", False, "none")),
        ("ci: cache", ("ci", None, "cache", False, "none")),
        ("build: pin", ("build", None, "pin", False, "none")),
        ("refactor: split", ("refactor", None, "split", False, "none")),
        ("style: format", ("style", None, "format", False, "none")),
        ("test: cover", ("test", None, "cover", False, "none")),
        ("revert: feat: add login", ("revert", None, "feat: add login", False, "none")),
        (
            "wip: unknown types are allowed",
            ("wip", None, "unknown types are allowed", False, "none"),
        ),
        ("feat: trailing spaces   ", ("feat", None, "trailing spaces", False, "minor")),
    ],
)
def test_header(message: str, expected: tuple[str, str | None, str, bool, str]) -> None:
    commit = parsed(message)

    assert (commit.type, commit.scope, commit.description, commit.breaking, commit.bump) == expected
    assert commit.sha == SHA
    assert commit.short_sha == SHA[:7]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("add login page", "Conventional Commits"),
        ("feat:missing space", "Conventional Commits"),
        ("feat : space before colon", "Conventional Commits"),
        ("feat:  ", "Conventional Commits"),
        ("feat: ", "Conventional Commits"),
        ("(api): no type", "Conventional Commits"),
        ("feat(api: unclosed", "Conventional Commits"),
        ("feat(a)(b): two scopes", "Conventional Commits"),
        ("feat(): empty scope", "empty scope"),
        ("feat( ): blank scope", "empty scope"),
        ("feat: header\nno blank line before the body", "one blank line"),
        ("", "empty"),
        ("\n\n", "empty"),
        ('Revert "feat: add login"', "Conventional Commits"),
    ],
)
def test_non_conventional_messages_are_parse_errors(message: str, reason: str) -> None:
    error = unparsed(message)

    assert reason in error.reason
    assert not error.merge
    assert error.sha == SHA


# --- body and footers ---------------------------------------------------------------------


def test_body_keeps_blank_lines_and_footers_are_split_off() -> None:
    commit = parsed(
        "fix: prevent racing of requests\n"
        "\n"
        "Introduce a request id and a reference to latest request. Dismiss\n"
        "incoming responses other than from latest request.\n"
        "\n"
        "Remove timeouts which were used to mitigate the racing issue but are\n"
        "obsolete now.\n"
        "\n"
        "Reviewed-by: Z\n"
        "Refs: #123\n"
    )

    assert commit.body == (
        "Introduce a request id and a reference to latest request. Dismiss\n"
        "incoming responses other than from latest request.\n"
        "\n"
        "Remove timeouts which were used to mitigate the racing issue but are\n"
        "obsolete now."
    )
    assert commit.footers == (Footer("Reviewed-by", "Z"), Footer("Refs", "#123"))
    assert not commit.breaking


@pytest.mark.parametrize(
    ("message", "notes"),
    [
        ("feat: allow config\n\nBREAKING CHANGE: `extends` is gone", ("`extends` is gone",)),
        ("fix: x\n\nBREAKING-CHANGE: the synonym counts", ("the synonym counts",)),
        ("feat!: bang only", ("bang only",)),
        ("feat!: bang and footer\n\nBREAKING CHANGE: the footer text", ("the footer text",)),
        ("docs: any type\n\nBREAKING CHANGE: still major", ("still major",)),
        (
            "fix: two\n\nBREAKING CHANGE: first\nBREAKING-CHANGE: second",
            ("first", "second"),
        ),
        (
            "fix: among others\n\nRefs: #1\nBREAKING CHANGE: in a footer run\nAcked-by: A",
            ("in a footer run",),
        ),
        (
            (
                "fix: multi-line\n\nBREAKING CHANGE: config keys moved:\n  a -> b\n\n"
                "Migrate before upgrading.\nReviewed-by: Z"
            ),
            ("config keys moved:\n  a -> b\n\nMigrate before upgrading.",),
        ),
        ("fix: in prose\n\nSome text\nBREAKING CHANGE: wrapped", ("wrapped",)),
    ],
)
def test_breaking_changes(message: str, notes: tuple[str, ...]) -> None:
    commit = parsed(message)

    assert commit.breaking
    assert commit.bump == "major"
    assert commit.breaking_notes == notes


@pytest.mark.parametrize(
    "message",
    [
        "fix: lower case\n\nbreaking change: is not the token",
        "fix: mixed case\n\nBreaking Change: is not the token",
        "fix: no colon\n\nBREAKING CHANGE the colon is missing",
        "fix: in the description mentions BREAKING CHANGE: but that is the header",
    ],
)
def test_not_breaking(message: str) -> None:
    commit = parsed(message)

    assert not commit.breaking
    assert commit.bump == "patch"


def test_footer_forms_and_values_spanning_lines() -> None:
    commit = parsed(
        "feat: footers\n\n"
        "Closes #42\n"
        "Co-authored-by: A <a@example.com>\n"
        "Note: a value that\n"
        "continues here\n"
        "Signed-off-by: B <b@example.com>"
    )

    assert commit.footers == (
        Footer("Closes", "42", " #"),
        Footer("Co-authored-by", "A <a@example.com>"),
        Footer("Note", "a value that\ncontinues here"),
        Footer("Signed-off-by", "B <b@example.com>"),
    )
    assert commit.body == ""


def test_a_token_like_paragraph_inside_the_body_stays_body() -> None:
    commit = parsed("docs: guide\n\nExample: run it twice.\n\nThen check the output.\n\nRefs: #9")

    assert commit.body == "Example: run it twice.\n\nThen check the output."
    assert commit.footers == (Footer("Refs", "#9"),)


def test_crlf_messages() -> None:
    commit = parsed("feat: windows\r\n\r\nbody\r\n\r\nBREAKING CHANGE: yes\r\n")

    assert commit.body == "body"
    assert commit.breaking_notes == ("yes",)


# --- merges and squashes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "Merge pull request #12 from octo/feature-x\n\nfeat: add x",
        "Merge branch 'feature' into main",
        "Merge branch 'main' of github.com:o/r",
        "Merge remote-tracking branch 'origin/main'",
        "Merge tag 'v1.2.0'",
    ],
)
def test_merge_subjects_are_ignored(message: str) -> None:
    error = unparsed(message)

    assert error.merge
    assert "merge" in error.reason


def test_a_commit_with_two_parents_is_ignored_even_with_a_conventional_subject() -> None:
    error = unparsed("feat: merged with a conventional message", merge=True)

    assert error.merge


GITHUB_SQUASH = (
    "feat(auth): login with OIDC (#12)\n"
    "\n"
    "* feat(auth): add the OIDC client\n"
    "\n"
    "* fix: y\n"
    "\n"
    "Details about y that span\n"
    "two lines.\n"
    "\n"
    "* feat!: z\n"
    "\n"
    "BREAKING CHANGE: settings moved\n"
    "\n"
    "* wip\n"
    "\n"
    "---------\n"
    "\n"
    "Co-authored-by: A <a@example.com>"
)


def test_github_squash_merge_is_expanded_one_commit_per_bullet() -> None:
    squash = parsed(GITHUB_SQUASH)

    assert (squash.type, squash.scope, squash.description) == (
        "feat",
        "auth",
        "login with OIDC (#12)",
    )
    assert squash.footers == (Footer("Co-authored-by", "A <a@example.com>"),)
    assert [(c.type, c.scope, c.description, c.bump) for c in squash.squashed] == [
        ("feat", "auth", "add the OIDC client", "minor"),
        ("fix", None, "y", "patch"),
        ("feat", None, "z", "major"),
    ]
    fix, feat_breaking = squash.squashed[1], squash.squashed[2]
    assert fix.body == "Details about y that span\ntwo lines."
    # A non-conventional bullet is not a commit of its own: it stays text of the one before.
    assert feat_breaking.breaking_notes == ("settings moved\n\n* wip",)
    assert {c.sha for c in squash.squashed} == {SHA}


def test_squash_bump_is_the_highest_of_its_commits() -> None:
    decision = next_version(version("1.4.0"), [parse_commit(SHA, GITHUB_SQUASH)], existing_tags=())

    assert (decision.next, decision.bump) == ("2.0.0", "major")
    assert [c.description for c in decision.commits] == [
        "login with OIDC (#12)",
        "add the OIDC client",
        "y",
        "z",
    ]


def test_squash_with_a_non_conventional_title_still_counts_its_bullets() -> None:
    result = parse_commit(SHA, "Login with OIDC (#12)\n\n* docs: readme\n\n* fix: token expiry")

    assert isinstance(result, ParseError)
    decision = next_version(version("1.4.0"), [result], existing_tags=())
    assert (decision.next, decision.bump) == ("1.4.1", "patch")
    assert [c.type for c in decision.commits] == ["docs", "fix"]
    assert [e.subject for e in decision.unparsed] == ["Login with OIDC (#12)"]


def test_an_ordinary_bulleted_body_is_not_a_squash() -> None:
    commit = parsed("fix: several small things\n\n* a typo\n* the spacing\n- fix: dashes too")

    assert commit.squashed == ()
    assert commit.body == "* a typo\n* the spacing\n- fix: dashes too"


# --- next_version -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "messages", "expected_next", "expected_bump"),
    [
        ("1.2.3", ["fix: a"], "1.2.4", "patch"),
        ("1.2.3", ["perf: a"], "1.2.4", "patch"),
        ("1.2.3", ["fix: a", "feat: b", "docs: c"], "1.3.0", "minor"),
        ("1.2.3", ["feat!: a", "fix: b"], "2.0.0", "major"),
        ("1.2.3", ["fix(api)!: a"], "2.0.0", "major"),
        ("1.2.3", ["fix: a\n\nBREAKING CHANGE: b"], "2.0.0", "major"),
        ("1.2.3", ["fix: a\n\nBREAKING-CHANGE: b"], "2.0.0", "major"),
        ("1.2.3", ["docs: a", "chore: b", "ci: c", "test: d", "refactor: e"], None, "none"),
        ("1.2.3", ["update readme", "Merge branch 'x'"], None, "none"),
        ("1.2.3", [], None, "none"),
        ("1.9.0", ["feat: a"], "1.10.0", "minor"),
        # 0.y.z: a breaking change reaches 1.0.0 with major_on_zero (the default).
        ("0.3.1", ["feat!: a"], "1.0.0", "major"),
        ("0.3.1", ["feat: a"], "0.4.0", "minor"),
        ("0.3.1", ["fix: a"], "0.3.2", "patch"),
        # First release: first_release whatever the bump, nothing without a releasable commit.
        (None, ["fix: a"], "1.0.0", "patch"),
        (None, ["feat!: a"], "1.0.0", "major"),
        (None, ["docs: a", "hello"], None, "none"),
        (None, [], None, "none"),
    ],
)
def test_bump_rules(
    current: str | None, messages: Sequence[str], expected_next: str | None, expected_bump: str
) -> None:
    decision = next_version(version(current), commits(*messages), existing_tags=())

    assert decision.next == expected_next
    assert decision.bump == expected_bump
    assert decision.current == current
    assert decision.released is (expected_next is not None)
    assert decision.next_tag == (f"v{expected_next}" if expected_next else None)


def test_major_on_zero_false_turns_a_breaking_change_into_a_minor() -> None:
    decision = next_version(
        version("0.3.1"), commits("feat!: a"), major_on_zero=False, existing_tags=()
    )

    assert (decision.next, decision.bump) == ("0.4.0", "minor")


def test_major_on_zero_does_not_matter_from_one_on() -> None:
    decision = next_version(
        version("1.3.1"), commits("feat!: a"), major_on_zero=False, existing_tags=()
    )

    assert decision.next == "2.0.0"


def test_first_release_is_configurable() -> None:
    decision = next_version(None, commits("feat!: a"), first_release="0.1.0", existing_tags=())

    assert decision.next == "0.1.0"


def test_unparsed_and_merges_in_the_decision() -> None:
    results = [
        *commits("feat: a", "update readme"),
        parse_commit("f" * 40, "Merge pull request #3 from o/b"),
        parse_commit("e" * 40, "feat: via merge", merge=True),
    ]

    decision = next_version(version("1.0.0"), results, existing_tags=())

    assert [c.description for c in decision.commits] == ["a"]
    assert [e.subject for e in decision.unparsed] == ["update readme"]
    assert decision.next == "1.1.0"


@pytest.mark.parametrize(
    ("current", "messages", "existing", "expected"),
    [
        ("1.1.0", ["feat: a"], ["v1.1.0"], "1.2.0-rc.1"),
        ("1.1.0", ["feat: a"], ["v1.1.0", "v1.2.0-rc.1"], "1.2.0-rc.2"),
        ("1.1.0", ["feat: a"], ["v1.2.0-rc.1", "v1.2.0-rc.3"], "1.2.0-rc.4"),
        ("1.1.0", ["feat: a"], ["v1.2.0-rc.9", "v1.2.0-rc.10"], "1.2.0-rc.11"),
        # Other bases, other tokens and foreign formats do not count.
        (
            "1.1.0",
            ["feat: a"],
            ["v1.3.0-rc.5", "v1.2.0-beta.4", "v1.2.0-rc1", "1.2.0-rc.7", "v1.2.0-rc.2.1"],
            "1.2.0-rc.1",
        ),
        # The current version is a release candidate: its X.Y.Z holds if it carries the bump...
        ("1.2.0-rc.1", ["fix: a"], ["v1.2.0-rc.1"], "1.2.0-rc.2"),
        ("1.2.0-rc.2", ["feat: a"], ["v1.2.0-rc.1", "v1.2.0-rc.2"], "1.2.0-rc.3"),
        ("2.0.0-rc.1", ["feat!: a"], ["v2.0.0-rc.1"], "2.0.0-rc.2"),
        # ...and moves when the new commits need more.
        ("1.2.0-rc.1", ["feat!: a"], ["v1.2.0-rc.1"], "2.0.0-rc.1"),
        ("1.1.1-rc.1", ["feat: a"], ["v1.1.1-rc.1"], "1.2.0-rc.1"),
        # First release as a release candidate.
        (None, ["feat: a"], [], "1.0.0-rc.1"),
        ("1.0.0-rc.1", ["fix: a"], ["v1.0.0-rc.1"], "1.0.0-rc.2"),
    ],
)
def test_prerelease_numbering(
    current: str | None, messages: Sequence[str], existing: Sequence[str], expected: str
) -> None:
    decision = next_version(
        version(current), commits(*messages), prerelease="rc", existing_tags=existing
    )

    assert decision.next == expected
    assert decision.next_tag == f"v{expected}"
    assert decision.is_prerelease


def test_prerelease_on_zero_without_major_on_zero_keeps_the_minor() -> None:
    decision = next_version(
        version("0.3.0-rc.1"),
        commits("feat!: a"),
        major_on_zero=False,
        prerelease="rc",
        existing_tags=["v0.3.0-rc.1"],
    )

    assert decision.next == "0.3.0-rc.2"


def test_prerelease_needs_a_releasable_commit() -> None:
    decision = next_version(
        version("1.2.0-rc.1"), commits("docs: a"), prerelease="rc", existing_tags=["v1.2.0-rc.1"]
    )

    assert decision.next is None
    assert not decision.is_prerelease


def test_final_release_after_release_candidates() -> None:
    # decide() passes the last *final* release as current when no prerelease is asked for.
    decision = next_version(
        version("1.1.0"),
        commits("feat: a", "fix: b"),
        existing_tags=["v1.1.0", "v1.2.0-rc.1", "v1.2.0-rc.2"],
    )

    assert (decision.next, decision.is_prerelease) == ("1.2.0", False)


def test_final_release_from_a_release_candidate_current() -> None:
    decision = next_version(version("1.2.0-rc.2"), commits("fix: b"), existing_tags=["v1.2.0-rc.2"])

    assert decision.next == "1.2.0"


def test_an_already_tagged_final_version_is_a_conflict() -> None:
    with pytest.raises(TagConflictError) as caught:
        next_version(version("1.1.0"), commits("feat: a"), existing_tags=["v1.1.0", "v1.2.0"])

    assert caught.value.tag == "v1.2.0"
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("token", ["rc.1", "1rc", "", "r c", "rc_1"])
def test_bad_prerelease_tokens(token: str) -> None:
    with pytest.raises(ConfigError) as caught:
        next_version(None, commits("feat: a"), prerelease=token, existing_tags=())

    assert caught.value.field == "prerelease"


@pytest.mark.parametrize("first", ["1.0", "v1.0.0", "one"])
def test_bad_first_release(first: str) -> None:
    with pytest.raises(ConfigError) as caught:
        next_version(None, commits("feat: a"), first_release=first, existing_tags=())

    assert caught.value.field == "release.first_release"


def test_custom_tag_format_in_the_decision() -> None:
    decision = next_version(
        version("2.0.0"),
        commits("fix: a"),
        prerelease="beta",
        existing_tags=["app-2.0.1-beta.1", "v2.0.1-beta.7"],
        tag_format="app-{version}",
    )

    assert decision.next == "2.0.1-beta.2"
    assert (decision.current_tag, decision.next_tag) == ("app-2.0.0", "app-2.0.1-beta.2")


# --- tag formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag_format", "tag", "expected"),
    [
        ("v{version}", "v1.2.3", "1.2.3"),
        ("v{version}", "v1.2.3-rc.1", "1.2.3-rc.1"),
        ("v{version}", "v1.2.3+build.5", "1.2.3+build.5"),
        ("v{version}", "1.2.3", None),
        ("v{version}", "v1.2", None),
        ("v{version}", "v01.2.3", None),
        ("v{version}", "xv1.2.3", None),
        ("v{version}", "v1.2.3-", None),
        ("v{version}", "release-1.2.3", None),
        ("{version}", "1.2.3", "1.2.3"),
        ("{version}", "v1.2.3", None),
        ("chart/web-{version}", "chart/web-0.4.0", "0.4.0"),
        ("chart/web-{version}", "chart/api-0.4.0", None),
        ("{version}-final", "1.2.3-rc.1-final", "1.2.3-rc.1"),
        ("v.{version}", "vx1.2.3", None),  # the dot is literal, not a regex wildcard
    ],
)
def test_tag_parsing(tag_format: str, tag: str, expected: str | None) -> None:
    assert parse_tag(tag_format, tag) == version(expected)
    assert (tag_pattern(tag_format).match(tag) is not None) is (expected is not None)


def test_format_tag_round_trips() -> None:
    for text in ("1.2.3", "0.1.0-rc.2"):
        assert parse_tag("v{version}", format_tag("v{version}", version(text) or "")) == version(
            text
        )
    assert format_tag("app-{version}", "1.0.0") == "app-1.0.0"


@pytest.mark.parametrize(
    "tag_format",
    [
        "v",
        "",
        "{version}{version}",
        "v{ version }",
        "v{VERSION}",
        "v {version}",
        "v{version}^",
        "a..{version}",
    ],
)
def test_bad_tag_formats(tag_format: str) -> None:
    with pytest.raises(ConfigError) as caught:
        tag_pattern(tag_format)
    assert caught.value.field == "release.tag_format"

    with pytest.raises(ConfigError):
        format_tag(tag_format, "1.0.0")


def test_current_release_uses_semver_precedence() -> None:
    tags = [
        git.Tag("v1.9.0", "a" * 40, annotated=False),
        git.Tag("v1.10.0", "b" * 40, annotated=True),
        git.Tag("v1.11.0-rc.1", "c" * 40, annotated=False),
        git.Tag("v2", "d" * 40, annotated=False),
        git.Tag("latest", "e" * 40, annotated=False),
    ]

    final = current_release(tags, "v{version}", include_prereleases=False)
    candidate = current_release(tags, "v{version}", include_prereleases=True)

    assert final is not None
    assert (final.name, final.commit, str(final.version)) == ("v1.10.0", "b" * 40, "1.10.0")
    assert candidate is not None
    assert candidate.name == "v1.11.0-rc.1"
    assert current_release(tags[3:], "v{version}", include_prereleases=True) is None


# --- release notes ------------------------------------------------------------------------


def decision_for(*messages: str, current: str = "1.0.0") -> Decision:
    return next_version(version(current), commits(*messages), existing_tags=())


def test_changelog_groups_by_type_with_breaking_changes_first() -> None:
    decision = decision_for(
        "fix(api): handle empty body",
        "docs: readme",
        "feat: add export\n\nBREAKING CHANGE: the old /dump route is gone",
        "perf: faster render",
        "feat(ui)!: new layout",
        "update something",
        "fix: crash on start",
    )

    notes = changelog_markdown(decision, version="2.0.0", date=dt.date(2025, 3, 14))

    assert notes == (
        "## 2.0.0 (2025-03-14)\n"
        "\n"
        "### BREAKING CHANGES\n"
        "\n"
        "- the old /dump route is gone (0000000)\n"
        "- **ui:** new layout (0000000)\n"
        "\n"
        "### Features\n"
        "\n"
        "- add export (0000000)\n"
        "- **ui:** new layout (0000000)\n"
        "\n"
        "### Bug Fixes\n"
        "\n"
        "- crash on start (0000000)\n"
        "- **api:** handle empty body (0000000)\n"
        "\n"
        "### Performance Improvements\n"
        "\n"
        "- faster render (0000000)\n"
    )


def test_changelog_links_commits_and_the_comparison() -> None:
    decision = next_version(version("1.0.0"), [parse_commit(SHA, "fix(api): a")], existing_tags=())

    notes = changelog_markdown(
        decision, version="1.0.1", date="2025-01-02", repo_url="https://github.com/o/r/"
    )

    assert notes.splitlines()[0] == (
        "## [1.0.1](https://github.com/o/r/compare/v1.0.0...v1.0.1) (2025-01-02)"
    )
    assert f"- **api:** a ([0123456](https://github.com/o/r/commit/{SHA}))" in notes


def test_changelog_indents_multi_line_breaking_notes() -> None:
    decision = decision_for("fix: a\n\nBREAKING CHANGE: keys moved:\n- a -> b\n\nMigrate first.")

    notes = changelog_markdown(decision, version="2.0.0", date="2025-01-02")

    assert "- keys moved: (0000000)\n  - a -> b\n\n  Migrate first.\n" in notes


def test_changelog_without_notable_changes() -> None:
    decision = decision_for("docs: a", "chore: b")

    notes = changelog_markdown(decision, version="1.0.0", date="2025-01-02")

    assert notes == f"## 1.0.0 (2025-01-02)\n\n{NOTHING_NOTABLE}\n"


def test_changelog_lists_squashed_commits() -> None:
    decision = next_version(version("1.0.0"), [parse_commit(SHA, GITHUB_SQUASH)], existing_tags=())

    notes = changelog_markdown(decision, version="2.0.0", date="2025-01-02")

    assert "- **auth:** add the OIDC client (0123456)" in notes
    assert "- **auth:** login with OIDC (#12) (0123456)" in notes
    assert "- y (0123456)" in notes


# --- decide() with scripted git -----------------------------------------------------------

HEAD = "a" * 40
TAGGED = "b" * 40


def scripted(answers: dict[str, Reply]) -> RecordingRunner:
    def respond(step: Step) -> Reply:
        return answers[step.name]

    return RecordingRunner(respond)


def log_output(*records: tuple[str, str, str, str]) -> str:
    return "".join(
        f"{sha}\x1f{parents}\x1f{subject}\x1f{body}\x1e\n"
        for sha, parents, subject, body in records
    )


def normal_answers(**overrides: Reply) -> dict[str, Reply]:
    answers = {
        "git-is-shallow": Reply(stdout="false\n"),
        "git-head": Reply(stdout=f"{HEAD}\n"),
        "git-tags-merged": Reply(stdout=f"v1.0.0\t{'c' * 40}\t{TAGGED}\n"),
        "git-tags": Reply(stdout=f"v1.0.0\t{'c' * 40}\t{TAGGED}\nv1.1.0-rc.1\t{'d' * 40}\t\n"),
        "git-log": Reply(stdout=log_output((HEAD, TAGGED, "feat: a", ""))),
    }
    return {**answers, **overrides}


@pytest.mark.anyio
async def test_decide_runs_read_only_git_steps_through_the_runner() -> None:
    runner = scripted(normal_answers())

    decision = await decide(runner, config=ReleaseConfig(), prerelease="rc")

    assert [step.args for step in runner.steps] == [
        ("rev-parse", "--is-shallow-repository"),
        ("rev-parse", "--verify", "HEAD"),
        ("tag", "--list", "--merged", "HEAD", f"--format={git.TAG_FORMAT}"),
        ("tag", "--list", f"--format={git.TAG_FORMAT}"),
        (
            "log",
            "--no-show-signature",
            "--encoding=UTF-8",
            f"--format={git.LOG_FORMAT}",
            f"{TAGGED}..HEAD",
            "--",
        ),
    ]
    assert {step.tool for step in runner.steps} == {"git"}
    assert (decision.current, decision.next, decision.head) == ("1.0.0", "1.1.0-rc.2", HEAD)
    assert (decision.current_tag, decision.next_tag) == ("v1.0.0", "v1.1.0-rc.2")


@pytest.mark.anyio
async def test_decide_stops_at_a_shallow_clone() -> None:
    runner = scripted(normal_answers(**{"git-is-shallow": Reply(stdout="true\n")}))

    with pytest.raises(ShallowCloneError) as caught:
        await decide(runner, config=ReleaseConfig(), prerelease=None)

    assert isinstance(caught.value, SetupError)
    assert caught.value.exit_code == 3
    assert "git fetch --unshallow --tags" in str(caught.value)
    assert "fetch-depth: 0" in str(caught.value)
    assert len(runner.steps) == 1


@pytest.mark.anyio
async def test_decide_reports_a_failing_git_command() -> None:
    failure = Reply(exit_code=128, stderr="fatal: bad object HEAD\n")
    runner = scripted(normal_answers(**{"git-head": failure}))

    with pytest.raises(GitError) as caught:
        await decide(runner, config=ReleaseConfig(), prerelease=None)

    assert isinstance(caught.value, PipelineError)
    assert caught.value.exit_code == 2
    assert "rev-parse --verify HEAD" in str(caught.value)
    assert "bad object HEAD" in str(caught.value)


@pytest.mark.anyio
async def test_decide_reports_output_it_cannot_parse() -> None:
    runner = scripted(normal_answers(**{"git-is-shallow": Reply(stdout="maybe\n")}))

    with pytest.raises(GitError, match="unexpected output"):
        await decide(runner, config=ReleaseConfig(), prerelease=None)


@pytest.mark.anyio
async def test_decide_checks_the_tag_format_before_running_git() -> None:
    runner = scripted(normal_answers())

    with pytest.raises(ConfigError):
        await decide(runner, config=ReleaseConfig(tag_format="release"), prerelease=None)

    assert runner.steps == []
