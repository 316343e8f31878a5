"""Markdown release notes from a ``Decision``, in the conventional-changelog layout.

Sections, in this order: breaking changes (each with the text of its BREAKING
CHANGE footer, or the description of a bare ``!``), Features, Bug Fixes,
Performance Improvements, Reverts. Other types (docs, chore, ci, build, refactor,
style, test) change nothing a user of the release sees, so they are left out, as
conventional-changelog does; so are commits that are not Conventional Commits.
A breaking commit is listed both under breaking changes and under its type.
"""

from __future__ import annotations

import datetime as dt

from pipeline.versioning import Decision, ParsedCommit

SECTIONS: tuple[tuple[str, str], ...] = (
    ("feat", "Features"),
    ("fix", "Bug Fixes"),
    ("perf", "Performance Improvements"),
    ("revert", "Reverts"),
)
BREAKING_TITLE = "BREAKING CHANGES"
NOTHING_NOTABLE = "No user-facing changes."


def changelog_markdown(
    decision: Decision,
    *,
    version: str,
    date: dt.date | str,
    repo_url: str | None = None,
) -> str:
    """The notes for ``version``; ``repo_url`` (https://github.com/o/r) adds links."""
    base_url = repo_url.rstrip("/") if repo_url else None
    day = date.isoformat() if isinstance(date, dt.date) else date
    sections: list[tuple[str, list[str]]] = []

    breaking = [
        _entry(commit, note, base_url)
        for commit in decision.commits
        if commit.breaking
        for note in commit.breaking_notes
    ]
    sections.append((BREAKING_TITLE, breaking))
    for commit_type, title in SECTIONS:
        commits = [c for c in _by_scope(decision.commits) if c.type == commit_type]
        sections.append((title, [_entry(c, c.description, base_url) for c in commits]))

    lines = [f"## {_title(decision, version, base_url)} ({day})", ""]
    for title, entries in sections:
        if entries:
            lines += [f"### {title}", "", *_unique(entries), ""]
    if len(lines) == 2:  # noqa: PLR2004 - only the heading and its blank line
        lines += [NOTHING_NOTABLE, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _title(decision: Decision, version: str, base_url: str | None) -> str:
    linkable = base_url and decision.next == version and decision.current_tag and decision.next_tag
    if not linkable:
        return version
    return f"[{version}]({base_url}/compare/{decision.current_tag}...{decision.next_tag})"


def _by_scope(commits: tuple[ParsedCommit, ...]) -> list[ParsedCommit]:
    # Unscoped entries first, then by scope; history order (newest first) within a scope.
    return sorted(commits, key=lambda c: (c.scope is not None, (c.scope or "").lower()))


def _entry(commit: ParsedCommit, text: str, base_url: str | None) -> str:
    scope = f"**{commit.scope}:** " if commit.scope else ""
    first, *more = text.split("\n")
    # Continuation lines are indented so Markdown keeps them inside the list item.
    rest = "".join(f"\n  {line}" if line.strip() else "\n" for line in more)
    short = commit.short_sha
    sha = f"[{short}]({base_url}/commit/{commit.sha})" if base_url else short
    return f"- {scope}{first} ({sha}){rest}"


def _unique(entries: list[str]) -> list[str]:
    return list(dict.fromkeys(entries))
