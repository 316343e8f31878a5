"""`version` and `release` end to end: scripted histories, a local bare remote, real docker.

Each test scripts a repository with subprocess (the fixture): the hello image's Dockerfile
and hello.txt, committed and pushed to a bare repository that is the clone's `origin`.
The code under test runs in-process through `pipeline.cli.main` (or `release()` where a
test must see the steps), with the real LocalRunner, git, docker and the registries that
`bash ci/services.sh` starts. What the remote holds is read with git in the bare
repository; what a registry holds is read through its HTTP API.

Git runs with an empty global and no system configuration; identities live in each
clone's own config, so each clone tags as the runner it stands for. Image names are
random per test and every local tag is removed when the module ends.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from conftest import REPO_ROOT
from services import (
    Observed,
    Services,
    find_services,
    local_refs,
    registry_digests,
    registry_labels,
    registry_tags,
    remove_local_images,
)

from pipeline import cli
from pipeline.config import load_config
from pipeline.model import Ref, SecretRef, StepResult
from pipeline.release import ReleaseConflictError, ReleaseOptions, ReleaseOutcome, release
from pipeline.run import Run
from pipeline.runners.local import LocalRunner
from pipeline.runners.recording import describe
from pipeline.stages import git as git_steps
from pipeline.tools import TOOLS, find_binary

HELLO = REPO_ROOT / "tests" / "fixtures" / "images" / "hello"
GIT_BINARY = find_binary(TOOLS["git"])
RUN_ID = secrets.token_hex(4)  # in every image name of this module, for the clean-up
FIRST_DATE = 1_700_000_000  # fixture commits get increasing dates
BOT = ("Release Bot", "release-bot@example.com")
# The work clone's origin as people write it; pushes go to the bare repository instead.
DISGUISED_URL = "https://ci-bot:s3cr3t-in-url@github.com/acme/hello.git"

pytestmark = pytest.mark.skipif(GIT_BINARY is None, reason="git is not installed")


# --- fixtures: hermetic git, scripted repositories, the services ----------------------------


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in (
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
        git_steps.TOKEN_VARIABLE,
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # Never find an enclosing repository above the temporary directory.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture(scope="module", autouse=True)
def _remove_local_images() -> Iterator[None]:
    yield
    remove_local_images(RUN_ID)


@pytest.fixture(scope="module")
def services() -> Services:
    return find_services()


def git_in(path: Path, *args: str, date: str | None = None) -> str:
    env = dict(os.environ)
    if date is not None:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(
        [str(GIT_BINARY), *args], cwd=path, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


@dataclass
class Clock:
    now: int = FIRST_DATE

    def tick(self) -> str:
        self.now += 60
        return f"@{self.now} +0000"


@dataclass
class Repo:
    """A scripted clone: the fixture, driven by subprocess on purpose."""

    path: Path
    clock: Clock

    @classmethod
    def init(cls, path: Path, clock: Clock, identity: tuple[str, str] = BOT) -> Repo:
        path.mkdir(parents=True)
        git_in(path, "-c", "init.defaultBranch=main", "init", "--quiet")
        repo = cls(path, clock)
        repo.identify(identity)
        return repo

    def identify(self, identity: tuple[str, str]) -> None:
        self.git("config", "user.name", identity[0])
        self.git("config", "user.email", identity[1])

    def git(self, *args: str) -> str:
        return git_in(self.path, *args, date=self.clock.tick())

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        for name, text in (files or {}).items():
            (self.path / name).write_text(text, encoding="utf-8")
            self.git("add", name)
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def tag(self, name: str) -> None:
        self.git("tag", "--annotate", name, "-m", f"release {name}")

    def local_tags(self) -> list[str]:
        return self.git("tag", "--list").split()


@dataclass(frozen=True)
class TagRef:
    kind: str  # "tag" for an annotated tag, "commit" for a lightweight one
    commit: str


def tags_of(repository: Path) -> dict[str, TagRef]:
    """Tag name -> what it is and the commit it resolves to, as git sees it there."""
    listed = git_in(
        repository,
        "for-each-ref",
        "refs/tags",
        "--format=%(refname:strip=2) %(objecttype) %(objectname) %(*objectname)",
    )
    found: dict[str, TagRef] = {}
    for line in listed.splitlines():
        name, kind, target, *peeled = line.split()
        found[name] = TagRef(kind, peeled[0] if peeled else target)
    return found


def tag_object(repository: Path, tag: str) -> str:
    return git_in(repository, "rev-parse", f"refs/tags/{tag}").strip()


@dataclass
class World:
    """A bare `origin`, the work clone with the hello image committed, a random image name."""

    root: Path
    services: Services
    clock: Clock
    remote: Path
    work: Repo
    image: str
    out: Path

    def clone(self, name: str, identity: tuple[str, str] = BOT) -> Repo:
        git_in(self.root, "clone", "--quiet", str(self.remote), name)
        repo = Repo(self.root / name, self.clock)
        repo.identify(identity)
        return repo

    def release_argv(
        self, repo: Repo | None = None, *, image: str | None = None, out: Path | None = None
    ) -> list[str]:
        return [
            "release",
            "--source",
            str((repo or self.work).path),
            "--out",
            str(out or self.out),
            "--image",
            image or self.image,
            "--dockerfile",
            "Dockerfile",
            "--context",
            ".",
            "--build-arg",
            f"BASE={self.services.base_image}",
        ]

    def disguise_remote(self) -> None:
        """origin reads as an https URL with credentials; git pushes to the bare repo."""
        self.work.git("remote", "set-url", "origin", DISGUISED_URL)
        self.work.git("config", f"url.{self.remote}.pushInsteadOf", DISGUISED_URL)


def new_image(registry: str) -> str:
    return f"{registry}/acme/release-{RUN_ID}-{secrets.token_hex(3)}"


@pytest.fixture
def world(services: Services, tmp_path: Path) -> World:
    clock = Clock()
    remote = tmp_path / "origin.git"
    remote.mkdir()
    git_in(remote, "-c", "init.defaultBranch=main", "init", "--quiet", "--bare")
    work = Repo.init(tmp_path / "work", clock)
    for name in ("Dockerfile", "hello.txt"):
        shutil.copy(HELLO / name, work.path / name)
    work.git("add", ".")
    work.commit("feat: hello image")
    work.git("remote", "add", "origin", str(remote))
    work.git("push", "--quiet", "origin", "HEAD:main")
    return World(
        root=tmp_path,
        services=services,
        clock=clock,
        remote=remote,
        work=work,
        image=new_image(services.registry),
        out=tmp_path / "out",
    )


# --- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.out)
        return data


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    capsys.readouterr()  # only what this command prints
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


def pushed(outcome: dict[str, object]) -> list[dict[str, str]]:
    items = outcome["pushed"]
    assert isinstance(items, list)
    return items


def one_digest(outcome: dict[str, object]) -> str:
    digests = {p["digest"] for p in pushed(outcome)}
    assert len(digests) == 1, digests
    (digest,) = digests
    assert digest.startswith("sha256:")
    return digest


def release_tags(version: str, commit: str) -> list[str]:
    major, minor, _ = version.split(".")
    return [version, f"{major}.{minor}", major, "latest", f"sha-{commit[:7]}"]


def notes_sections(text: str) -> dict[str, list[str]]:
    """`### Title` -> its list items, from release-notes.md."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = sections.setdefault(line.removeprefix("### "), [])
        elif current is not None and line.startswith("- "):
            current.append(line)
    return sections


def git_objects_text(repository: Path) -> str:
    """Every object in the repository, decompressed, plus its plain-text config and refs."""
    objects = subprocess.run(
        [str(GIT_BINARY), "cat-file", "--batch-all-objects", "--batch"],
        cwd=repository,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", errors="replace")
    git_dir = repository / ".git" if (repository / ".git").is_dir() else repository
    plain = [
        p.read_text(encoding="utf-8", errors="replace")
        for p in git_dir.rglob("*")
        if p.is_file() and "objects" not in p.relative_to(git_dir).parts
    ]
    return "\n".join([objects, *plain])


def files_containing(secret: str, directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return [
        str(p) for p in directory.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
    ]


def leaks(secret: str, texts: dict[str, str], directories: list[Path]) -> list[str]:
    found = [name for name, text in texts.items() if secret in text]
    for directory in directories:
        found += files_containing(secret, directory)
    return found


def step_texts(results: list[StepResult]) -> dict[str, str]:
    texts: dict[str, str] = {}
    for index, result in enumerate(results):
        step = result.step
        where = f"{index}:{step.name}"
        texts[f"{where} argv"] = describe(step) + repr(step.args)
        texts[f"{where} env"] = repr(step.env) + repr(step.secrets) + repr(step.stdin)
        texts[f"{where} stdout"] = result.stdout
        texts[f"{where} stderr"] = result.stderr
    return texts


# --- version --------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo", Clock())


def version_json(capsys: pytest.CaptureFixture[str], repo: Repo, *extra: str) -> Ran:
    out = repo.path.parent / "out"
    return run_cli(
        capsys, "version", "--json", "--source", str(repo.path), "--out", str(out), *extra
    )


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (["feat: first feature"], (None, "1.0.0", "minor", None, "v1.0.0")),
        (
            ["feat: first feature", "TAG v1.0.0", "fix: crash on empty input"],
            ("1.0.0", "1.0.1", "patch", "v1.0.0", "v1.0.1"),
        ),
        (
            ["feat: first feature", "TAG v1.0.0", "fix: crash", "feat!: drop the old API"],
            ("1.0.0", "2.0.0", "major", "v1.0.0", "v2.0.0"),
        ),
    ],
    ids=["first-feature", "fix-after-release", "breaking"],
)
def test_version_json(
    repo: Repo,
    capsys: pytest.CaptureFixture[str],
    history: list[str],
    expected: tuple[str | None, str, str, str | None, str],
) -> None:
    since_tag: list[str] = []
    for entry in history:
        if entry.startswith("TAG "):
            repo.tag(entry.removeprefix("TAG "))
            since_tag = []
        else:
            repo.commit(entry)
            since_tag.append(entry)

    ran = version_json(capsys, repo)

    assert ran.code == 0, ran.err
    data = ran.json()
    current, upcoming, bump, current_tag, next_tag = expected
    assert (data["current"], data["next"], data["bump"]) == (current, upcoming, bump)
    assert (data["current_tag"], data["next_tag"]) == (current_tag, next_tag)
    commits = data["commits"]
    assert isinstance(commits, list)
    # Only the commits since the tag count, newest first.
    assert [c["description"] for c in commits] == [m.split(": ", 1)[1] for m in since_tag][::-1]
    assert data["unparsed"] == []
    assert "no release" not in ran.err


def test_version_with_nothing_releasable(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.commit("feat: first feature")
    repo.tag("v1.0.0")
    repo.commit("docs: usage")
    repo.commit("chore: tidy")

    ran = version_json(capsys, repo)

    assert ran.code == 0
    data = ran.json()
    assert (data["current"], data["next"], data["bump"]) == ("1.0.0", None, "none")
    assert (data["current_tag"], data["next_tag"]) == ("v1.0.0", None)
    assert "no release: no releasable commit since v1.0.0" in ran.err

    plain = run_cli(capsys, "version", "--source", str(repo.path))
    assert plain.code == 0
    assert plain.out == "1.0.0\n"  # the current version is what the plain form prints
    assert "no release" in plain.err


def test_version_prereleases_count_up(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.commit("feat: first feature")
    repo.tag("v1.0.0")
    repo.commit("feat: export")

    first = version_json(capsys, repo, "--prerelease", "rc").json()
    assert (first["next"], first["next_tag"], first["bump"]) == (
        "1.1.0-rc.1",
        "v1.1.0-rc.1",
        "minor",
    )

    repo.tag("v1.1.0-rc.1")
    on_the_candidate = version_json(capsys, repo, "--prerelease", "rc").json()
    assert (on_the_candidate["current"], on_the_candidate["next"]) == ("1.1.0-rc.1", None)
    # The final release still counts from 1.0.0, so the candidate's commits are in it.
    assert version_json(capsys, repo).json()["next"] == "1.1.0"

    repo.commit("fix: export of empty tables")
    second = version_json(capsys, repo, "--prerelease", "rc").json()
    assert (second["current"], second["next"]) == ("1.1.0-rc.1", "1.1.0-rc.2")
    assert second["next_tag"] == "v1.1.0-rc.2"


@pytest.mark.parametrize("verb", ["version", "release"])
def test_a_shallow_clone_is_an_environment_error_with_the_fix(
    repo: Repo, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    (repo.path / "app").mkdir()  # a release checks its Dockerfile before anything else
    repo.commit("feat: first feature", {"app/Dockerfile": "FROM scratch\n"})
    repo.tag("v1.0.0")
    repo.commit("fix: one")
    repo.commit("fix: two")
    shallow = repo.path.parent / "shallow"
    git_in(repo.path.parent, "clone", "--quiet", "--depth", "1", f"file://{repo.path}", "shallow")
    argv = [verb, "--source", str(shallow), "--out", str(repo.path.parent / "out")]
    if verb == "release":
        argv += ["--image", "127.0.0.1:5000/acme/never-built"]

    ran = run_cli(capsys, *argv)

    assert ran.code == 3
    assert "shallow clone" in ran.err
    assert "git fetch --unshallow --tags" in ran.err
    assert "fetch-depth: 0" in ran.err
    assert ran.out == ""
    assert tags_of(shallow) == {}  # a release on a shallow clone tagged nothing


# --- release: the happy paths --------------------------------------------------------------


def test_first_release(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.disguise_remote()
    head = world.work.head()
    tags = release_tags("1.0.0", head)

    ran = run_cli(capsys, *world.release_argv())

    assert ran.code == 0, ran.err
    outcome = ran.json()
    assert (outcome["version"], outcome["tag"]) == ("1.0.0", "v1.0.0")
    assert (outcome["released"], outcome["republished"]) == (True, False)
    assert [p["ref"] for p in pushed(outcome)] == [f"{world.image}:{t}" for t in tags]
    digest = one_digest(outcome)

    # The claim: an annotated tag on the released commit, pushed to the remote.
    assert tags_of(world.remote) == {"v1.0.0": TagRef("tag", head)}
    assert tag_object(world.remote, "v1.0.0") == tag_object(world.work.path, "v1.0.0")

    # The registry: every tag, one manifest, the digest the release reported.
    assert registry_tags(world.image) == sorted(tags)
    assert registry_digests(world.image, tags) == dict.fromkeys(tags, digest)

    # The artifacts.
    recorded = json.loads((world.out / "image-digests.json").read_text(encoding="utf-8"))
    assert recorded == {
        "image": world.image,
        "tags": [{"ref": f"{world.image}:{t}", "digest": digest} for t in tags],
    }
    assert (world.out / ".version").read_text(encoding="utf-8") == "1.0.0\n"
    assert (world.out / ".image-tag").read_text(encoding="utf-8") == "1.0.0\n"
    notes = (world.out / "release-notes.md").read_text(encoding="utf-8")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert notes.startswith(f"## 1.0.0 ({today})\n")
    assert notes_sections(notes) == {"Features": [f"- hello image ({head[:7]})"]}

    # The labels, as the registry serves the image config and as the local engine has it.
    commit_time = world.work.git("log", "-1", "--format=%cI %ct", "HEAD").split()
    labels = registry_labels(world.image, "1.0.0")
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.revision"] == head
    created = labels["org.opencontainers.image.created"]
    assert created == commit_time[0]  # the commit's time, so a rebuild labels alike
    assert dt.datetime.fromisoformat(created).timestamp() == int(commit_time[1])
    # The remote's URL, without its credentials or `.git`.
    assert labels["org.opencontainers.image.source"] == "https://github.com/acme/hello"
    assert labels["org.opencontainers.image.title"] == world.image.rsplit("/", 1)[1]
    assert not any("s3cr3t" in value for value in labels.values())
    inspected = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", f"{world.image}:1.0.0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    assert inspected["Config"]["Labels"] == labels
    assert f"{world.image}@{digest}" in inspected["RepoDigests"]


def test_a_rerun_changes_nothing_and_a_fix_moves_the_floating_tags(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    first_head = world.work.head()
    first_tags = release_tags("1.0.0", first_head)
    first = run_cli(capsys, *world.release_argv())
    assert first.code == 0, first.err
    first_digest = one_digest(first.json())
    remote_before = tags_of(world.remote)
    tag_before = tag_object(world.remote, "v1.0.0")

    # The same commit again: the release is republished, nothing new is made.
    rerun = run_cli(capsys, *world.release_argv())

    assert rerun.code == 0, rerun.err
    again = rerun.json()
    assert (again["version"], again["tag"]) == ("1.0.0", "v1.0.0")
    assert (again["released"], again["republished"]) == (True, True)
    assert one_digest(again) == first_digest
    assert tags_of(world.remote) == remote_before
    assert tag_object(world.remote, "v1.0.0") == tag_before  # not re-tagged
    assert world.work.local_tags() == ["v1.0.0"]
    assert registry_tags(world.image) == sorted(first_tags)
    assert registry_digests(world.image, first_tags) == dict.fromkeys(first_tags, first_digest)

    # A fix: 1.0.1; the floating tags follow it, 1.0.0 stays where it was.
    fix = world.work.commit("fix: greet politely", {"hello.txt": "hello, politely\n"})
    world.work.git("push", "--quiet", "origin", "HEAD:main")

    third = run_cli(capsys, *world.release_argv())

    assert third.code == 0, third.err
    patch = third.json()
    assert (patch["version"], patch["tag"], patch["republished"]) == ("1.0.1", "v1.0.1", False)
    fix_tags = release_tags("1.0.1", fix)
    fix_digest = one_digest(patch)
    assert fix_digest != first_digest
    assert registry_tags(world.image) == sorted({*first_tags, *fix_tags})
    assert registry_digests(world.image, [*fix_tags, "1.0.0", f"sha-{first_head[:7]}"]) == {
        **dict.fromkeys(fix_tags, fix_digest),
        "1.0.0": first_digest,
        f"sha-{first_head[:7]}": first_digest,
    }
    assert tags_of(world.remote) == {
        "v1.0.0": TagRef("tag", first_head),
        "v1.0.1": TagRef("tag", fix),
    }
    notes = (world.out / "release-notes.md").read_text(encoding="utf-8")
    assert notes_sections(notes) == {"Bug Fixes": [f"- greet politely ({fix[:7]})"]}
    assert (world.out / ".version").read_text(encoding="utf-8") == "1.0.1\n"
    assert registry_labels(world.image, "latest")["org.opencontainers.image.revision"] == fix


def test_a_prerelease_moves_no_floating_tag(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_cli(capsys, *world.release_argv())
    assert first.code == 0, first.err
    final_digest = one_digest(first.json())
    feature = world.work.commit("feat: say goodbye", {"hello.txt": "goodbye\n"})

    ran = run_cli(capsys, *world.release_argv(), "--prerelease", "rc")

    assert ran.code == 0, ran.err
    outcome = ran.json()
    assert (outcome["version"], outcome["tag"]) == ("1.1.0-rc.1", "v1.1.0-rc.1")
    candidate = ["1.1.0-rc.1", f"sha-{feature[:7]}"]
    assert [p["ref"] for p in pushed(outcome)] == [f"{world.image}:{t}" for t in candidate]
    candidate_digest = one_digest(outcome)
    assert candidate_digest != final_digest
    floating = ["1.0", "1", "latest"]
    assert registry_digests(world.image, [*candidate, *floating]) == {
        **dict.fromkeys(candidate, candidate_digest),
        **dict.fromkeys(floating, final_digest),
    }
    assert tags_of(world.remote)["v1.1.0-rc.1"] == TagRef("tag", feature)
    assert (world.out / ".version").read_text(encoding="utf-8") == "1.1.0-rc.1\n"


# --- release: conflicts ---------------------------------------------------------------------


def test_a_version_tagged_elsewhere_stops_the_release_before_any_push(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    other = world.clone("other", ("Other Runner", "other@example.com"))
    elsewhere = other.commit("fix: released from another branch")
    other.tag("v1.0.0")
    other.git("push", "--quiet", "origin", "refs/tags/v1.0.0")
    head = world.work.head()

    # The clone has not fetched the tag: the remote rejects the claim.
    ran = run_cli(capsys, *world.release_argv())

    assert ran.code == 1
    assert ran.out == ""
    assert "rejected tag v1.0.0" in ran.err
    assert "no image was pushed" in ran.err
    assert registry_tags(world.image) is None  # the repository was never created
    # Built before the claim, but never tagged for a version, let alone pushed.
    assert local_refs(world.image) == [f"{world.image}:build-{head[:7]}"]
    assert world.work.local_tags() == []  # the failed claim left no local tag behind
    assert tags_of(world.remote) == {"v1.0.0": TagRef("tag", elsewhere)}

    # Once the tag is fetched, the version decision itself refuses (TagConflictError).
    world.work.git("fetch", "--quiet", "--tags", "origin")
    ran = run_cli(capsys, *world.release_argv())

    assert ran.code == 2
    assert "tag v1.0.0 already exists on a commit that is not an ancestor of HEAD" in ran.err
    assert registry_tags(world.image) is None
    assert tags_of(world.remote) == {"v1.0.0": TagRef("tag", elsewhere)}


def hold_pushes_until_both_arrive(remote: Path) -> None:
    """A pre-receive hook that lets no push update a ref before both claims are in.

    Both pushes then read the remote before either tag existed, so the loser is refused
    by the remote's ref lock ("reference already exists"), not by the client's comparison
    with the advertised refs: the tightest race two CI jobs can run.
    """
    arrivals = remote / "arrivals"
    arrivals.mkdir()
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "cat >/dev/null\n"
        f"touch '{arrivals}/'$$\n"
        "waited=0\n"
        f"while [ \"$(ls '{arrivals}' | wc -l)\" -lt 2 ] && [ $waited -lt 100 ]; do\n"
        "  sleep 0.1; waited=$((waited + 1))\n"
        "done\n",
        encoding="utf-8",
    )
    hook.chmod(0o755)


@pytest.mark.anyio
@pytest.mark.parametrize("claims_overlap", [False, True], ids=["as-it-happens", "claims-overlap"])
async def test_concurrent_releases_of_one_commit_have_one_winner(
    world: World, claims_overlap: bool
) -> None:
    clones = {
        "a": world.clone("a", ("Runner A", "runner-a@example.com")),
        "b": world.clone("b", ("Runner B", "runner-b@example.com")),
    }
    if claims_overlap:
        hold_pushes_until_both_arrive(world.remote)
    images = {name: new_image(world.services.registry) for name in clones}
    results: dict[str, ReleaseOutcome | ReleaseConflictError] = {}

    async def release_from(name: str) -> None:
        source = clones[name].path
        out = world.root / f"out-{name}"
        run = Run(config=load_config(source), runner=LocalRunner(source, out), out=out)
        options = ReleaseOptions(
            image=images[name],
            dockerfile="Dockerfile",
            context=".",
            build_args=(("BASE", world.services.base_image),),
        )
        try:
            results[name] = await release(run, options)
        except ReleaseConflictError as error:
            results[name] = error

    async with anyio.create_task_group() as group:
        for name in clones:
            group.start_soon(release_from, name)

    winners = [n for n, r in results.items() if isinstance(r, ReleaseOutcome)]
    losers = [n for n, r in results.items() if isinstance(r, ReleaseConflictError)]
    assert (len(winners), len(losers)) == (1, 1), results
    (winner,), (loser,) = winners, losers
    head = world.work.head()
    outcome = results[winner]
    assert isinstance(outcome, ReleaseOutcome)
    assert (outcome.version, outcome.released, outcome.republished) == ("1.0.0", True, False)
    assert registry_tags(images[winner]) == sorted(release_tags("1.0.0", head))
    assert tags_of(world.remote) == {"v1.0.0": TagRef("tag", head)}
    assert tag_object(world.remote, "v1.0.0") == tag_object(clones[winner].path, "v1.0.0")

    message = str(results[loser])
    assert "v1.0.0" in message
    if claims_overlap:  # both pushes were inside the remote before either tag existed
        assert len(list((world.remote / "arrivals").iterdir())) == 2
    assert "no image was pushed" in message
    assert registry_tags(images[loser]) is None
    assert clones[loser].local_tags() == []
    assert local_refs(images[loser]) == [f"{images[loser]}:build-{head[:7]}"]


def test_an_identical_claim_already_on_the_remote_is_still_lost(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs that tag with the same identity in the same second lose nothing to git.

    Their annotated tags are byte-identical objects, so the loser's `git push` answers
    `=  refs/tags/v1.0.0  [up to date]` and exits 0: the claim looks won and the loser
    publishes too, over the winner's release. The Dagger module tags with one fixed
    identity, so one second of overlap is all it takes. Here both runs are sequential
    with the tagger time fixed: the second run's claim comes after the first one's push,
    which is the race's window, deterministically.
    """
    monkeypatch.setenv("GIT_COMMITTER_DATE", "@1800000000 +0000")  # the tagger's time
    first, second = world.clone("first"), world.clone("second")  # one identity: BOT
    first_image, second_image = (
        new_image(world.services.registry),
        new_image(world.services.registry),
    )

    won = run_cli(
        capsys, *world.release_argv(first, image=first_image, out=world.root / "out-first")
    )
    assert won.code == 0, won.err

    lost = run_cli(
        capsys, *world.release_argv(second, image=second_image, out=world.root / "out-second")
    )

    assert lost.code == 1, f"the second release also claimed v1.0.0: {lost.out}"
    assert "v1.0.0" in lost.err
    assert registry_tags(second_image) is None
    assert second.local_tags() == []


# --- release: refusals before anything leaves the machine ---------------------------------


def test_a_dirty_tree_stops_the_release(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    (world.work.path / "hello.txt").write_text("edited, not committed\n", encoding="utf-8")
    (world.work.path / "scratch.txt").write_text("untracked\n", encoding="utf-8")

    ran = run_cli(capsys, *world.release_argv())

    assert ran.code == 2
    assert "uncommitted changes" in ran.err
    assert "hello.txt" in ran.err
    assert "scratch.txt" in ran.err
    assert ran.out == ""
    assert tags_of(world.remote) == {}
    assert world.work.local_tags() == []
    assert registry_tags(world.image) is None
    assert local_refs(world.image) == []  # refused before the build


def test_a_rerun_with_the_default_out_inside_the_repository_republishes(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out` defaults to artifacts/ under the working directory: the repository in CI.

    The first release writes its notes, image id and askpass script there; the rerun the
    design promises is safe must not then find its own artifacts as uncommitted changes.
    """
    out = world.work.path / "artifacts"  # what the default resolves to from the repo root
    first = run_cli(capsys, *world.release_argv(out=out))
    assert first.code == 0, first.err
    assert (out / "release-notes.md").is_file()

    rerun = run_cli(capsys, *world.release_argv(out=out))

    assert rerun.code == 0, rerun.err
    assert rerun.json()["republished"] is True


def test_an_upper_case_image_is_refused_before_anything_runs(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    upper = world.image.replace("/acme/", "/Acme/")

    ran = run_cli(capsys, *world.release_argv(image=upper))

    assert ran.code == 2
    assert "must be lower-case" in ran.err
    assert f"use {world.image!r}" in ran.err
    assert not world.out.exists()  # no notes, no askpass script, no image id: nothing ran
    assert tags_of(world.remote) == {}
    assert world.work.local_tags() == []
    assert registry_tags(world.image) is None
    assert local_refs(world.image.rsplit("/", 1)[1]) == []


@pytest.mark.parametrize(
    "secret_arguments",
    [
        ["--registry-password", "hunter2"],
        ["--registry-password=hunter2"],
        ["--git-token", "hunter2"],
        ["--git-token", "ghp:hunter2"],  # a colon, but no env:/file: scheme
    ],
)
def test_a_secret_value_on_the_command_line_is_refused_unechoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secret_arguments: list[str]
) -> None:
    argv = ["release", "--source", str(tmp_path), "--image", "127.0.0.1:5000/acme/x"]

    with pytest.raises(SystemExit) as caught:
        cli.main([*argv, *secret_arguments])

    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert "usage: gitops-pipeline release" in captured.err
    assert "takes a reference, env:NAME or file:PATH, not a value" in captured.err
    assert "hunter2" not in captured.err + captured.out


# --- release: credentials -------------------------------------------------------------------


def test_auth_registry_wrong_password_then_a_rerun_with_the_right_one(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    services = world.services
    image = new_image(services.auth_registry)
    auth = (services.auth_user, services.auth_password)
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    wrong_file = world.root / "wrong-password"  # outside --out and the repositories
    wrong_file.write_text(wrong + "\n", encoding="utf-8")
    login = ["--registry-username", services.auth_user, "--registry-password"]
    head = world.work.head()

    refused = run_cli(capsys, *world.release_argv(image=image), *login, f"file:{wrong_file}")

    assert refused.code == 3
    assert f"registry {services.auth_registry} refused user {services.auth_user!r}" in refused.err
    assert registry_tags(image, auth=auth) is None
    # The login is checked before the version is claimed: nothing was tagged anywhere.
    assert tags_of(world.remote) == {}
    assert world.work.local_tags() == []
    texts = {
        "stdout": refused.out,
        "stderr": refused.err,
        "log": caplog.text,
        "remote": git_objects_text(world.remote),
        "clone": git_objects_text(world.work.path),
    }
    assert leaks(wrong, texts, [world.out]) == []

    # The rerun with the right password makes the release it could not make before.
    caplog.clear()
    rerun = run_cli(
        capsys,
        *world.release_argv(image=image),
        *login,
        f"file:{services.auth_password_file}",
    )

    assert rerun.code == 0, rerun.err
    outcome = rerun.json()
    assert (outcome["version"], outcome["released"], outcome["republished"]) == (
        "1.0.0",
        True,
        False,
    )
    tags = release_tags("1.0.0", head)
    digest = one_digest(outcome)
    assert registry_tags(image, auth=auth) == sorted(tags)
    assert registry_digests(image, tags, auth=auth) == dict.fromkeys(tags, digest)
    assert tags_of(world.remote) == {"v1.0.0": TagRef("tag", head)}
    texts = {
        "stdout": rerun.out,
        "stderr": rerun.err,
        "log": caplog.text,
        "remote": git_objects_text(world.remote),
        "clone": git_objects_text(world.work.path),
    }
    assert leaks(services.auth_password, texts, [world.out]) == []
    assert leaks(wrong, texts, [world.out]) == []


@pytest.mark.anyio
async def test_the_git_token_travels_only_in_the_push_environment(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"ghs_{secrets.token_hex(16)}"
    monkeypatch.setenv("GIT_TOKEN", token)
    args = cli.build_parser().parse_args([*world.release_argv(), "--git-token", "env:GIT_TOKEN"])
    runner = Observed(LocalRunner(source=world.work.path, out=world.out))
    run = Run(config=load_config(world.work.path), runner=runner, out=world.out)

    outcome = await release(run, cli.release_options(args, run))

    head = world.work.head()
    assert (outcome.version, outcome.released, outcome.republished) == ("1.0.0", True, False)
    assert tags_of(world.remote) == {"v1.0.0": TagRef("tag", head)}
    assert registry_tags(world.image) == sorted(release_tags("1.0.0", head))
    (push,) = [r for r in runner.results if r.step.name == "git-push-tag"]
    assert push.ok
    # The token is handed over by reference, for GIT_ASKPASS to answer git's prompt with.
    assert push.step.secrets == (SecretRef(git_steps.TOKEN_VARIABLE, "env:GIT_TOKEN"),)
    askpass = dict(push.step.env)["GIT_ASKPASS"]
    assert isinstance(askpass, Ref)
    askpass_path = runner.inner.resolve(askpass)
    assert askpass_path.is_file()

    captured = capsys.readouterr()
    texts = {
        **step_texts(runner.results),
        "stdout": captured.out,
        "stderr": captured.err,
        "log": caplog.text,
        "outcome": repr(outcome),
        "remote": git_objects_text(world.remote),
        "clone": git_objects_text(world.work.path),
    }
    assert leaks(token, texts, [world.out]) == []

    # The script git would call answers from the environment, so the token never needs argv.
    prompts = {
        "Username for 'https://github.com': ": "x-access-token\n",
        "Password for 'https://x-access-token@github.com': ": f"{token}\n",
    }
    for prompt, answer in prompts.items():
        answered = await anyio.run_process(
            [str(askpass_path), prompt], env={**os.environ, git_steps.TOKEN_VARIABLE: token}
        )
        assert answered.stdout.decode() == answer
