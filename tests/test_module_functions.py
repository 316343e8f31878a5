"""Every Dagger function of `Pipeline`, offline, with scripted tool output.

No engine runs here. `capture` records the GraphQL each function sends, checks it
against the engine's schema and answers it; `stdout`/`stderr`/`exit_code` scripts
answer a container by the argv of its last `withExec`, so the git history, the
kubeconform JSON and a failing `helm template` are all scripted. `Pipeline._local_source`
(the export of `source` to plan from) is replaced with a copy of a fixture.

Secrets: the CLI passes them by provider reference (`env://GH_TOKEN`), and then only
the reference and the secret's ID ever appear in a query. `dag.set_secret` is
different by nature: its plaintext *is* its query. The release tests check both.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import dagger
import graphql
import pytest
from dagger import dag
from dagger.mod import default_module

from pipeline import module as pipeline_module
from pipeline.config import Config, load_config
from pipeline.errors import ConfigError
from pipeline.policy import RULES
from pipeline.testing.dagger_capture import CapturedQuery, QueryRecorder, capture, run_offline
from pipeline.tools import PYTHON_IMAGE, TOOLS
from pipeline.versioning import ShallowCloneError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "dagger" / "schema-v0.21.8.graphqls"
FIXTURES = REPO / "tests" / "fixtures"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not SCHEMA.is_file(), reason=f"Dagger engine schema not found at {SCHEMA} (../shared)"
    ),
]

Argv = list[str]

# --- reading the captured queries -------------------------------------------------------------


def _flat(text: str) -> str:
    """A document on one line, as written whatever its length, for substring checks.

    No field aliases (`from: from(` is `from(`) and no commas: print_ast separates
    arguments and list items with ", " on one line but with newlines once a line is long.
    """
    text = " ".join(text.split())
    text = re.sub(r"\b(\w+): \1\b", r"\1", text)
    text = text.replace("( ", "(").replace(" )", ")").replace("[ ", "[").replace(" ]", "]")
    text = re.sub(r'(["\])\w]), (?=\w+: )', r"\1 ", text)
    return text.replace('", "', '" "')


def documents(recorder: QueryRecorder) -> str:
    return " ".join(_flat(q.document) for q in recorder.queries)


def queries_with(recorder: QueryRecorder, *texts: str) -> list[CapturedQuery]:
    return [q for q in recorder.queries if all(t in _flat(q.document) for t in texts)]


def only_query_with(recorder: QueryRecorder, *texts: str) -> CapturedQuery:
    found = queries_with(recorder, *texts)
    assert len(found) == 1, f"{len(found)} queries contain {texts}"
    return found[0]


def answered_ids(query: CapturedQuery) -> list[str]:
    """Every ID the recorder answered a query with."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str) and value.startswith("fakeid:"):
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(query.response)
    return found


def host_files(path: str, include: list[str] | None) -> dict[str, str]:
    """What `host { directory(path, include) }` hands the engine: the local files it names."""
    root = Path(path)
    files: dict[str, str] = {}
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root).as_posix()
        wanted = include is None or any(
            relative == p or relative.startswith(f"{p.removesuffix('/**')}/") for p in include
        )
        if file.is_file() and wanted:
            files[relative] = file.read_text(encoding="utf-8")
    return files


def new_files(query: CapturedQuery) -> dict[str, str]:
    """path -> contents of the files one query puts in a directory (the last write wins).

    Files arrive by `withNewFile`, or all at once from local disk through `host { directory }`
    (a client) — the form the runner uses so that hundreds of files stay one call.
    """
    files: dict[str, str] = {}

    def walk(node: graphql.FieldNode, parent: str = "") -> None:
        values = {
            a.name.value: graphql.value_from_ast_untyped(a.value) for a in node.arguments or ()
        }
        if node.name.value == "withNewFile":
            files[str(values["path"])] = str(values["contents"])
        if node.name.value == "directory" and parent == "host":
            include = values.get("include")
            files.update(
                host_files(str(values["path"]), include if isinstance(include, list) else None)
            )
        for child in node.selection_set.selections if node.selection_set else ():
            if isinstance(child, graphql.FieldNode):
                walk(child, node.name.value)
            elif isinstance(child, graphql.InlineFragmentNode):
                for inner in child.selection_set.selections:
                    assert isinstance(inner, graphql.FieldNode)
                    walk(inner, node.name.value)

    operation = graphql.parse(query.document).definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    for root in operation.selection_set.selections:
        assert isinstance(root, graphql.FieldNode)
        walk(root)
    return files


def directory_at(recorder: QueryRecorder, query: CapturedQuery, path: str) -> dict[str, str]:
    """The files of the directory a container query puts at `path`, passed by ID.

    dagger-io resolves an object argument in a query of its own (`{ directory { ... { id }
    } }`); that query, found by the ID it was answered with, holds the files.
    """
    pattern = rf'with(?:Mounted)?Directory\(path: "{re.escape(path)}" source: "(fakeid:\d+)"'
    match = re.search(pattern, _flat(query.document))
    assert match is not None, f"nothing is put at {path}"
    answering = [q for q in recorder.queries if match[1] in answered_ids(q)]
    return new_files(answering[0])


async def returned_files(recorder: QueryRecorder, directory: dagger.Directory) -> dict[str, str]:
    """The files of a Directory a function returned, from the query that flushes it."""
    await directory.sync()
    return new_files(recorder.queries[-1])


# --- fixtures -------------------------------------------------------------------------------


def chart_repo(target: Path) -> Path:
    shutil.copytree(FIXTURES / "repos" / "ok", target)
    return target


def release_repo(target: Path) -> Path:
    chart_repo(target)
    (target / "app").mkdir()
    (target / "app" / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
    (target / "pipeline.yaml").write_text("image:\n  repository: ghcr.io/acme/chat\n")
    return target


def python_repo(target: Path) -> Path:
    shutil.copytree(FIXTURES / "python" / "ok", target)
    return target


def charts_and_python_repo(target: Path) -> Path:
    chart_repo(target)
    shutil.copytree(FIXTURES / "python" / "ok", target, dirs_exist_ok=True)
    return target


@pytest.fixture(autouse=True)
def _workdirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The functions make their work directories with tempfile; keep them out of /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def source_from(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[Path], Path]], None]:
    """Make `_local_source` lay out a fixture instead of exporting `source`."""

    def use(make: Callable[[Path], Path]) -> None:
        async def local_copy(_self: object, workdir: Path) -> Path:
            return make(workdir / "source")

        monkeypatch.setattr(pipeline_module.Pipeline, "_local_source", local_copy)

    return use


@pytest.fixture
def exports_create_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine's `Directory.export` creates the target; the recorder only answers the path."""
    original = dagger.Directory.export

    async def export(self: dagger.Directory, path: str, **kwargs: object) -> str:
        await anyio.Path(path).mkdir(parents=True, exist_ok=True)
        return await original(self, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dagger.Directory, "export", export)


def pipeline() -> pipeline_module.Pipeline:
    return pipeline_module.Pipeline(source=dag.directory())


# --- scripted tools ---------------------------------------------------------------------------

HEAD = "3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e"
RELEASED = "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"  # the commit v1.0.0 points to
TAG_OBJECT = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"  # v1.0.0 is annotated
TAG_LIST_FORMAT = "--format=%(refname:strip=2)%09%(objectname)%09%(*objectname)"
TAG_LINE = f"v1.0.0\t{TAG_OBJECT}\t{RELEASED}\n"
# US (0x1f) between fields, RS (0x1e) after each record: sha, parents, subject, body.
LOG = f"{HEAD}\x1f{RELEASED}\x1ffeat: x\x1f\x1e\n"
COMMIT_TIME = "2025-06-01T12:00:00+00:00"

GIT_STDOUT: dict[tuple[str, ...], str] = {
    ("git", "rev-parse", "--is-shallow-repository"): "false\n",
    ("git", "rev-parse", "--verify", "HEAD"): f"{HEAD}\n",
    ("git", "tag", "--list", "--merged", "HEAD", TAG_LIST_FORMAT): TAG_LINE,
    ("git", "tag", "--list", TAG_LIST_FORMAT): TAG_LINE,
    (
        "git",
        "log",
        "--no-show-signature",
        "--encoding=UTF-8",
        "--format=%H%x1f%P%x1f%s%x1f%b%x1e",
        f"{RELEASED}..HEAD",
        "--",
    ): LOG,
    ("git", "status", "--porcelain"): "",
    ("git", "log", "-1", "--no-show-signature", "--format=%cI", "HEAD"): f"{COMMIT_TIME}\n",
    ("git", "remote", "get-url", "origin"): "https://github.com/acme/chat.git\n",
    # --porcelain: "*" for a ref the push created.
    ("git", "push", "--porcelain", "origin", "refs/tags/v1.1.0:refs/tags/v1.1.0"): (
        "To https://github.com/acme/chat.git\n"
        "*\trefs/tags/v1.1.0:refs/tags/v1.1.0\t[new tag]\nDone\n"
    ),
}


def without_time_limit(argv: Argv) -> Argv:
    """The step's own command: git's image stops it with GNU timeout, which wraps the argv."""
    if argv[:1] == ["timeout"]:
        assert argv[1].startswith("--signal=")
        assert argv[2].startswith("--kill-after=")
        return argv[4:]
    return argv


@dataclass
class Script:
    """Answers by exact argv (None: the dummy); remembers each argv whose stdout was read."""

    stdout_by_argv: dict[tuple[str, ...], str] = field(default_factory=dict)
    exit_by_argv: dict[tuple[str, ...], int] = field(default_factory=dict)
    asked: list[Argv] = field(default_factory=list)

    def stdout(self, argv: Argv) -> str | None:
        argv = without_time_limit(argv)
        if argv not in self.asked:
            self.asked.append(argv)
        return self.stdout_by_argv.get(tuple(argv))

    def exit_code(self, argv: Argv) -> int | None:
        return self.exit_by_argv.get(tuple(without_time_limit(argv)))

    def git_commands(self) -> list[Argv]:
        return [argv for argv in self.asked if argv[:1] == ["git"]]


def git_script() -> Script:
    return Script(stdout_by_argv=dict(GIT_STDOUT))


RENDERED = (
    "---\n# Source: web/templates/configmap.yaml\n"
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: b\n"
)


def clean_checks(argv: Argv) -> str | None:
    """A chart that renders a resource, and kubeconform and conftest with nothing to report."""
    if argv[:2] == [TOOLS["helm"].argv0_in_container(), "template"]:
        # A run that rendered nothing at all fails: the render must hold a resource.
        return RENDERED
    if argv[:1] == [TOOLS["kubeconform"].argv0_in_container()]:
        return '{"resources": []}'
    if argv[:2] in (["conftest", "test"], ["conftest", "verify"]):
        return "[]"
    if "pipeline.secrets.check" in argv:
        return "[]"  # no secrets problem
    return None


@pytest.fixture
def script() -> Script:
    return git_script()


def captured(script: Script) -> AbstractContextManager[QueryRecorder]:
    return capture(SCHEMA, stdout=script.stdout, exit_code=script.exit_code)


# --- the harness's scripted answers -------------------------------------------------------------


def _exec_chain() -> dagger.Container:
    return (
        dag.container()
        .from_("docker.io/library/alpine:3.20")
        .with_exec(["apk", "add", "git"])
        .with_workdir("/src")
        .with_exec(["git", "rev-parse", "HEAD"], expect=dagger.ReturnType.ANY)
    )


async def test_answers_are_scripted_by_the_args_of_the_last_exec() -> None:
    seen: list[Argv] = []

    def stdout(argv: Argv) -> str | None:
        seen.append(argv)
        return f"{HEAD}\n" if argv == ["git", "rev-parse", "HEAD"] else None

    def exit_code(argv: Argv) -> int | None:
        return 128 if argv[0] == "git" else None

    with capture(
        SCHEMA, stdout=stdout, stderr=lambda _argv: "fatal: x\n", exit_code=exit_code
    ) as recorder:
        container = _exec_chain()
        assert await container.stdout() == f"{HEAD}\n"
        assert await container.exit_code() == 128
        assert await container.stderr() == "fatal: x\n"
        # The earlier exec (apk) is not the one answered for; None keeps the dummy.
        setup = dag.container().from_("alpine").with_exec(["apk", "add", "git"])
        assert await setup.stdout() == ""
        assert await setup.exit_code() == 0
    assert recorder.errors() == []
    assert seen == [["git", "rev-parse", "HEAD"], ["apk", "add", "git"]]


async def test_scripts_follow_a_container_reloaded_by_sync() -> None:
    with capture(SCHEMA, stdout=" ".join) as recorder:
        synced = await _exec_chain().sync()
        assert await synced.with_env_variable("A", "b").stdout() == "git rev-parse HEAD"
    assert recorder.errors() == []
    assert any("node(" in q.document for q in recorder.queries)


async def test_containers_without_an_exec_of_their_own_keep_the_dummies() -> None:
    calls: list[Argv] = []

    def stdout(argv: Argv) -> str:
        calls.append(argv)
        return "scripted"

    with capture(SCHEMA, stdout=stdout, exit_code=lambda _argv: 3) as recorder:
        assert await dag.container().from_("alpine").stdout() == ""
        # A Dockerfile build from an exec'd container's directory has run nothing itself.
        built = _exec_chain().directory("/src").docker_build()
        assert await built.stdout() == ""
        assert await built.exit_code() == 0
    assert recorder.errors() == []
    assert calls == []


async def test_a_wrongly_typed_scripted_answer_names_the_exec() -> None:
    def exit_code(_argv: Argv) -> int | None:
        return "1"  # type: ignore[return-value]

    expected = r"scripted exitCode for withExec \['git', 'rev-parse', 'HEAD'\] must be int"
    with (
        capture(SCHEMA, exit_code=exit_code) as recorder,
        pytest.raises(dagger.QueryError, match=expected),
    ):
        await _exec_chain().exit_code()
    assert recorder.errors() == []


async def test_queries_keep_their_answers() -> None:
    with capture(SCHEMA) as recorder:
        container_id = await _exec_chain().id()
    (query,) = recorder.queries
    assert query.response is not None
    assert answered_ids(query) == [container_id]


async def test_a_chain_too_deep_for_dagger_io_fails_as_it_would_in_dagger_io() -> None:
    directory = dag.directory()
    for index in range(600):  # the bundle of `schemas` has 610 files
        directory = directory.with_new_file(f"f{index}.json", "{}")
    with capture(SCHEMA) as recorder, pytest.raises(RecursionError):
        await directory.id()
    assert recorder.queries == []  # never built, so never sent


async def test_run_offline_takes_the_scripts_too() -> None:
    async def read() -> str:
        return await _exec_chain().stdout()

    stdout, recorder = await run_offline(SCHEMA, read, stdout=lambda argv: argv[-1])
    assert stdout == "HEAD"
    assert recorder.errors() == []


# --- release functions ------------------------------------------------------------------------

RELEASE_TAGS = ["1.1.0", "1.1", "1", "latest", f"sha-{HEAD[:7]}"]
DIGEST = "sha256:" + "0" * 64


async def test_version_reads_the_history_in_the_git_image(source_from, script):
    source_from(release_repo)
    with captured(script) as recorder:
        version = await pipeline().version(git_dir=dag.directory())
    assert recorder.errors() == []
    assert version == "1.1.0"
    text = documents(recorder)
    assert f'from(address: "{TOOLS["git"].image}")' in text
    # The history sits beside the work tree: `source` with the .git directory added.
    assert 'withDirectory(path: ".git"' in text
    assert script.git_commands()[:2] == [
        ["git", "rev-parse", "--is-shallow-repository"],
        ["git", "rev-parse", "--verify", "HEAD"],
    ]
    # The log starts at the tag's commit (peeled), not at the tag name or the tag object.
    (log,) = [argv for argv in script.git_commands() if argv[1] == "log"]
    assert f"{RELEASED}..HEAD" in log


async def test_version_as_json(source_from, script):
    source_from(release_repo)
    with captured(script) as recorder:
        text = await pipeline().version(git_dir=dag.directory(), json_output=True)
    assert recorder.errors() == []
    decision = json.loads(text)
    assert decision["current"] == "1.0.0"
    assert decision["next"] == "1.1.0"
    assert decision["bump"] == "minor"
    assert decision["next_tag"] == "v1.1.0"
    assert [c["sha"] for c in decision["commits"]] == [HEAD]


async def test_a_shallow_clone_is_refused(source_from, script):
    source_from(release_repo)
    script.stdout_by_argv["git", "rev-parse", "--is-shallow-repository"] = "true\n"
    with captured(script) as recorder, pytest.raises(ShallowCloneError, match="shallow clone"):
        await pipeline().version(git_dir=dag.directory())
    assert recorder.errors() == []


async def test_changelog(source_from, script):
    source_from(release_repo)
    with captured(script) as recorder:
        notes = await pipeline().changelog(
            git_dir=dag.directory(), repo_url="https://github.com/acme/chat"
        )
    assert recorder.errors() == []
    assert "1.1.0" in notes
    assert "Features" in notes
    assert "x" in notes
    assert f"https://github.com/acme/chat/commit/{HEAD}" in notes


async def test_build_returns_the_labelled_image(source_from, script):
    source_from(release_repo)
    with captured(script) as recorder:
        image = await pipeline().build(git_dir=dag.directory())
        await image.sync()
    assert recorder.errors() == []
    text = _flat(recorder.queries[-1].document)
    assert 'directory(path: "app") { dockerBuild {' in text
    assert 'withLabel(name: "org.opencontainers.image.version" value: "1.1.0")' in text
    assert f'withLabel(name: "org.opencontainers.image.revision" value: "{HEAD}")' in text
    assert f'value: "{COMMIT_TIME}"' in text  # created: the commit's time, not the build's
    assert 'value: "https://github.com/acme/chat"' in text  # source, without .git
    assert "publish(" not in documents(recorder)


async def test_publish_pushes_every_tag_with_auth_by_reference(source_from, script, monkeypatch):
    plaintext = "ghp_plaintext-from-the-environment"
    monkeypatch.setenv("GH_TOKEN", plaintext)
    source_from(release_repo)
    with captured(script) as recorder:
        refs = await pipeline().publish(
            git_dir=dag.directory(),
            registry_password=dag.secret("env://GH_TOKEN"),
            registry_username="bot",
        )
    assert recorder.errors() == []
    assert refs == [f"ghcr.io/acme/chat:{tag}@{DIGEST}" for tag in RELEASE_TAGS]
    secret_id = answered_ids(only_query_with(recorder, 'secret(uri: "env://GH_TOKEN")'))[0]
    text = documents(recorder)
    assert f'withRegistryAuth(address: "ghcr.io" username: "bot" secret: "{secret_id}")' in text
    for tag in RELEASE_TAGS:
        assert f'publish(address: "ghcr.io/acme/chat:{tag}"' in text
    # publish tags no commit and pushes no tag.
    assert not [a for a in script.git_commands() if "--annotate" in a or a[1] == "push"]
    assert not recorder.contains_text(plaintext)


def _release_queries(recorder: QueryRecorder) -> tuple[CapturedQuery, CapturedQuery]:
    tag = only_query_with(recorder, '"git" "tag" "--annotate" "v1.1.0"', "exitCode")
    push = only_query_with(recorder, '"git" "push" "--porcelain" "origin"', "exitCode")
    return tag, push


async def test_release_tags_pushes_and_publishes_with_secrets_by_reference(
    source_from, script, monkeypatch
):
    monkeypatch.setenv("GH_TOKEN", "ghp_registry-plaintext")
    monkeypatch.setenv("GIT_PUSH_TOKEN", "ghp_git-plaintext")
    source_from(release_repo)
    with captured(script) as recorder:
        artifacts = await pipeline().release(
            git_dir=dag.directory(),
            registry_password=dag.secret("env://GH_TOKEN"),
            git_token=dag.secret("env://GIT_PUSH_TOKEN"),
            registry_username="bot",
        )
        assert isinstance(artifacts, dagger.Directory)
        files = await returned_files(recorder, artifacts)
    assert recorder.errors() == []
    assert files[".version"] == "1.1.0\n"
    assert files[".image-tag"] == "1.1.0\n"
    assert "Features" in files["release-notes.md"]
    digests = json.loads(files["image-digests.json"])
    assert [t["ref"] for t in digests["tags"]] == [f"ghcr.io/acme/chat:{t}" for t in RELEASE_TAGS]

    tag, push = _release_queries(recorder)
    tag_text, push_text = _flat(tag.document), _flat(push.document)
    assert f'"--message" "Release 1.1.0" "{HEAD}"' in tag_text
    assert 'name: "GIT_COMMITTER_NAME" value: "gitops-pipeline"' in tag_text
    # The tag is written into the source (withDirectory, not a read-only mount) ...
    assert 'withDirectory(path: "/src"' in tag_text
    # ... and the push step sees that source: the tag container's /src, by its ID.
    tagged_source = only_query_with(
        recorder, '"git" "tag" "--annotate"', 'directory(path: "/src") { id }'
    )
    (tagged_id,) = answered_ids(tagged_source)
    assert f'withMountedDirectory(path: "/src" source: "{tagged_id}"' in push_text
    token_id = answered_ids(only_query_with(recorder, 'secret(uri: "env://GIT_PUSH_TOKEN")'))[0]
    assert f'withSecretVariable(name: "GITOPS_PIPELINE_GIT_TOKEN" secret: "{token_id}")' in (
        push_text
    )
    assert 'name: "GIT_ASKPASS" value: "/out/.cache/git-askpass.sh"' in push_text

    password_id = answered_ids(only_query_with(recorder, 'secret(uri: "env://GH_TOKEN")'))[0]
    publishes = [
        queries_with(recorder, f'publish(address: "ghcr.io/acme/chat:{t}"') for t in RELEASE_TAGS
    ]
    assert [len(p) for p in publishes] == [1] * len(RELEASE_TAGS)
    for (query,) in publishes:
        assert f'withRegistryAuth(address: "ghcr.io" username: "bot" secret: "{password_id}")' in (
            _flat(query.document)
        )
    # No half-release: the tag is claimed before any image is pushed.
    order = recorder.queries.index
    assert order(tag) < order(push) < min(order(p[0]) for p in publishes)
    assert not recorder.contains_text("ghp_registry-plaintext")
    assert not recorder.contains_text("ghp_git-plaintext")


async def test_release_with_a_set_secret_sends_its_plaintext_only_in_set_secret(
    source_from, script
):
    """`dag.set_secret` puts the plaintext into its own query: that is what it is for.

    The CLI and CI pass secrets by provider reference (`env://...`), so the plaintext
    never travels; with set_secret it travels exactly once, in `setSecret`, and every
    other query (the registry login, each publish) names the secret by its ID.
    """
    source_from(release_repo)
    with captured(script) as recorder:
        artifacts = await pipeline().release(
            git_dir=dag.directory(),
            registry_password=dag.set_secret("token", "plaintext-xyz"),
            registry_username="bot",
        )
        await artifacts.sync()
    assert recorder.errors() == []
    assert recorder.contains_text("plaintext-xyz")
    carrying = [q for q in recorder.queries if "plaintext-xyz" in q.document]
    (set_secret,) = carrying
    assert "setSecret(" in set_secret.document
    (secret_id,) = answered_ids(set_secret)
    publishes = queries_with(recorder, 'publish(address: "ghcr.io/acme/chat:')
    assert len(publishes) == len(RELEASE_TAGS)
    for query in publishes:
        assert f'withRegistryAuth(address: "ghcr.io" username: "bot" secret: "{secret_id}")' in (
            _flat(query.document)
        )
    # Without a git token the push gets no token variable; the askpass script still runs.
    _, push = _release_queries(recorder)
    assert "withSecretVariable" not in push.document


async def test_a_rejected_tag_push_publishes_nothing(source_from, script):
    source_from(release_repo)
    push = (
        "git",
        "push",
        "--porcelain",
        "origin",
        "refs/tags/v1.1.0:refs/tags/v1.1.0",
    )
    script.exit_by_argv[push] = 1
    script.stdout_by_argv[push] = (
        "To https://github.com/acme/chat.git\n"
        "!\trefs/tags/v1.1.0:refs/tags/v1.1.0\t[rejected] (already exists)\nDone\n"
    )
    with captured(script) as recorder, pytest.raises(Exception, match=r"rejected tag v1\.1\.0"):
        await pipeline().release(
            git_dir=dag.directory(), registry_password=dag.secret("env://GH_TOKEN")
        )
    assert recorder.errors() == []
    assert not queries_with(recorder, "publish(")
    assert ["git", "tag", "--delete", "v1.1.0"] in script.git_commands()


# --- Python stages ------------------------------------------------------------------------------

# The project's own dependencies, from its pyproject.toml (the project is the source root).
UV_INSTALL_PROJECT = re.compile(
    r'"uv" "pip" "install" "--system" "-r" "/src/(?:\./)?pyproject\.toml" "--all-extras"'
)


def _summary(files: Mapping[str, str]) -> dict[str, object]:
    summary = json.loads(files["summary.json"])
    assert isinstance(summary, dict)
    return summary


async def test_lint(source_from):
    source_from(python_repo)

    def stdout(argv: Argv) -> str | None:
        return "[]" if argv[:2] == ["ruff", "check"] else None  # ruff's JSON: no findings

    with capture(SCHEMA, stdout=stdout) as recorder:
        files = await returned_files(recorder, await pipeline().lint())
    assert recorder.errors() == []
    assert _summary(files)["status"] == "passed"
    assert "ruff-format.diff" in files
    text = documents(recorder)
    assert f'from(address: "{PYTHON_IMAGE}")' in text
    assert UV_INSTALL_PROJECT.search(text)
    assert '"ruff" "check" "--output-format" "json"' in text
    assert '"ruff" "format" "--check" "--diff"' in text


async def test_typecheck(source_from):
    source_from(python_repo)
    with capture(SCHEMA) as recorder:
        files = await returned_files(recorder, await pipeline().typecheck())
    assert recorder.errors() == []
    assert _summary(files)["status"] == "passed"
    text = documents(recorder)
    assert '"mypy" "--output" "json" "--no-color-output" "--no-error-summary" "."' in text
    assert f'"mypy=={TOOLS["mypy"].version}"' in text
    assert UV_INSTALL_PROJECT.search(text)


async def test_test(source_from):
    source_from(python_repo)
    with capture(SCHEMA) as recorder:
        files = await returned_files(recorder, await pipeline().test())
    assert recorder.errors() == []
    # Offline nothing writes the JUnit report pytest would: judged as no test run, never as a
    # pass. (tests/test_engine.py runs the same function for real and sees it pass.)
    (stage,) = _summary(files)["stages"]
    assert [f["rule"] for f in stage["findings"]] == ["no-tests-run"]
    text = documents(recorder)
    assert '"pytest" "-q"' in text
    assert '"--junitxml=/out/pytest/root/junit.xml"' in text
    assert (
        'include: ["pytest/root/junit.xml" "pytest/root/junit.xml/**" '
        '"pytest/root/coverage.xml" "pytest/root/coverage.xml/**"]'
    ) in text
    assert UV_INSTALL_PROJECT.search(text)


async def test_test_on_several_pythons(source_from):
    source_from(python_repo)
    with capture(SCHEMA) as recorder:
        files = await returned_files(recorder, await pipeline().test(python=["3.11", "3.12"]))
    assert recorder.errors() == []
    assert "Python 3.11" in files["summary.md"]
    text = documents(recorder)
    for python in ("3.11", "3.12"):
        venv = f"/opt/venv-{python}"
        assert f'"uv" "venv" "--python" "{python}" "{venv}"' in text
        assert f'"{venv}/bin/pytest" "-q"' in text
        assert f'"uv" "pip" "install" "--python" "{venv}/bin/python" "-r"' in text
        assert f'"--junitxml=/out/pytest/root-py{python}/junit.xml"' in text


async def test_ci_runs_every_stage_in_one_report(source_from):
    source_from(charts_and_python_repo)
    with capture(SCHEMA, stdout=clean_checks) as recorder:
        files = await returned_files(recorder, await pipeline().ci(env=["dev"]))
    assert recorder.errors() == []
    summary = _summary(files)
    assert summary["stages_run"] == [
        "lint",
        "typecheck",
        "test",
        "helm-lint",
        "render",
        "kubeconform",
        "policy",
        "secrets",
    ]
    assert summary["validate_status"] == "passed"
    # Offline no JUnit report is written (see test_test): only the test stage says so.
    failed = {s["stage"] for s in summary["stages"] if s["status"] != "passed"}
    assert failed == {"test"}
    assert "junit.xml" in files
    text = documents(recorder)
    for tool in ("helm", "kubeconform", "conftest", "ruff"):
        assert TOOLS[tool].image in text
    assert '"pytest" "-q"' in text
    assert '"/src/charts/web/values-dev.yaml"' in text
    assert "values-prd.yaml" not in text


@pytest.mark.parametrize(
    ("function", "command"),
    [
        ("lint_env", f'"ruff=={TOOLS["ruff"].version}"'),
        ("typecheck_env", f'"mypy=={TOOLS["mypy"].version}"'),
        ("test_env", '"pytest-cov==7.1.0"'),
    ],
)
async def test_stage_containers_are_prepared_but_not_run(source_from, function, command):
    source_from(python_repo)
    with capture(SCHEMA) as recorder:
        container = await getattr(pipeline(), function)()
        assert isinstance(container, dagger.Container)
        await container.sync()
    assert recorder.errors() == []
    text = _flat(recorder.queries[-1].document)
    assert f'from(address: "{PYTHON_IMAGE}")' in text
    install = UV_INSTALL_PROJECT.search(text)
    assert install is not None
    assert text.index(command) < install.start()  # the tool first, then the project
    assert 'withWorkdir(path: "/src")' in text
    # Prepared for `terminal`: the tool itself has not been started.
    assert "expect: ANY" not in text


# --- validate's parts, check, plan, tools ---------------------------------------------------------


async def test_render(source_from):
    source_from(chart_repo)
    with capture(SCHEMA) as recorder:
        files = await returned_files(
            recorder, await pipeline().render(env=["dev"], release_version="2.0.0")
        )
    assert recorder.errors() == []
    assert files[".version"] == "2.0.0\n"
    assert "rendered.yaml" in files
    text = documents(recorder)
    assert '"helm" "template" "web" "/src/charts/web"' in text
    assert '"helm" "lint" "--strict"' in text
    assert TOOLS["kubeconform"].image not in text
    assert TOOLS["conftest"].image not in text


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "ghcr.io/acme/web:1.0.0"}]}
"""


def renders_a_deployment(argv: Argv) -> str | None:
    if argv[:2] == ["helm", "template"]:
        return DEPLOYMENT
    return clean_checks(argv)


async def test_kubeconform_with_the_bundled_location(source_from, exports_create_directories):
    source_from(chart_repo)
    with capture(SCHEMA, stdout=renders_a_deployment) as recorder:
        files = await returned_files(
            recorder,
            await pipeline().kubeconform(
                env=["dev"], schema_location=["bundled"], crd_schemas=dag.directory()
            ),
        )
    assert recorder.errors() == []
    assert json.loads(files["kubeconform.json"])["resources"] == []
    assert not any(path.startswith(".cache/") for path in files)  # the bundle stays out
    run = only_query_with(recorder, '"/kubeconform" "-strict"', "exitCode")
    text = _flat(run.document)
    assert f'from(address: "{TOOLS["kubeconform"].image}")' in text
    assert '"-schema-location" "/out/.cache/schemas"' in text
    assert (
        '"-schema-location" "/out/.cache/schemas/crds/{{.Group}}/'
        '{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"'
    ) in text
    assert '"/out/rendered/web/dev.yaml"' in text
    assert "kind: Deployment" in directory_at(recorder, run, "/out")["rendered/web/dev.yaml"]
    assert queries_with(recorder, "export(path:")  # the CRD schemas came in from the caller


async def test_the_bundled_schemas_reach_the_kubeconform_container(
    source_from, exports_create_directories
):
    source_from(chart_repo)
    with capture(SCHEMA, stdout=renders_a_deployment) as recorder:
        await pipeline().kubeconform(env=["dev"], schema_location=["bundled"])
    assert recorder.errors() == []
    # The bundle is written by a container of its own, with the schema package's data; the
    # module runtime never installs it. (tests/test_engine.py runs both for real.)
    bundle = only_query_with(recorder, '"python" "-m" "pipeline.schemas"', "exitCode")
    text = _flat(bundle.document)
    assert f'from(address: "{TOOLS["kubernetes-validate"].image}")' in text
    assert '"/out/.cache/schemas" "1.35.0" "--kind" "deployment"' in text
    assert 'withMountedDirectory(path: "/opt/gitops-pipeline/pipeline"' in text
    assert 'withEnvVariable(name: "PYTHONPATH" value: "/opt/gitops-pipeline")' in text
    assert f'"kubernetes-validate=={TOOLS["kubernetes-validate"].version}"' in text
    assert 'include: [".cache/schemas" ".cache/schemas/**"]' in documents(recorder)
    run = only_query_with(recorder, '"/kubeconform" "-strict"', "exitCode")
    given = directory_at(recorder, run, "/out")
    assert "rendered/web/dev.yaml" in given


async def test_validate_with_every_option(source_from, exports_create_directories):
    source_from(chart_repo)
    with capture(SCHEMA, stdout=renders_a_deployment) as recorder:
        artifacts = await pipeline().validate(
            env=["dev"],
            schema_location=["bundled"],
            crd_schemas=dag.directory(),
            release_version="2.0.0",
        )
        files = await returned_files(recorder, artifacts)
    assert recorder.errors() == []
    assert _summary(files)["status"] == "passed"
    assert files[".version"] == "2.0.0\n"
    text = documents(recorder)
    for tool in ("helm", "kubeconform", "conftest"):
        assert TOOLS[tool].image in text
    assert '"-schema-location" "/out/.cache/schemas"' in text


def repo_with_policies(target: Path) -> Path:
    chart_repo(target)
    (target / "policy").mkdir()
    (target / "policy" / "acme.rego").write_text("package acme\n", encoding="utf-8")
    return target


async def test_policy(source_from):
    source_from(repo_with_policies)
    with capture(SCHEMA, stdout=clean_checks) as recorder:
        files = await returned_files(recorder, await pipeline().policy(env=["dev"]))
    assert recorder.errors() == []
    assert _summary(files)["status"] == "passed"
    assert {"policy-results.txt", "policy-results.json", "policy.sarif"} <= set(files)
    text = documents(recorder)
    # The repository's own policies: their unit tests, then with the built-in pack.
    assert '"conftest" "verify" "--policy" "/src/policy"' in text
    assert (
        '"conftest" "test" "--policy" "/opt/gitops-pipeline/pipeline/policies" '
        '"--policy" "/src/policy"'
    ) in text
    assert 'withMountedDirectory(path: "/opt/gitops-pipeline/pipeline"' in text
    assert TOOLS["kubeconform"].image not in text


async def test_check_returns_the_summary_when_everything_passes(source_from):
    source_from(chart_repo)
    with capture(SCHEMA, stdout=clean_checks) as recorder:
        summary = await pipeline().check(env=["dev"])
    assert recorder.errors() == []
    assert "passed" in summary.lower()
    assert "kubeconform" in summary
    text = documents(recorder)
    for tool in ("helm", "kubeconform", "conftest"):
        assert TOOLS[tool].image in text


async def test_check_raises_when_helm_template_fails(source_from):
    source_from(chart_repo)

    def stderr(argv: Argv) -> str | None:
        if argv[:2] == ["helm", "template"]:
            return "Error: template: web/templates/deployment.yaml:7:3: boom\n"
        return None

    def exit_code(argv: Argv) -> int | None:
        return 1 if argv[:2] == ["helm", "template"] else None

    with (
        capture(SCHEMA, stdout=clean_checks, stderr=stderr, exit_code=exit_code) as recorder,
        pytest.raises(ConfigError, match=r"validation failed") as raised,
    ):
        await pipeline().check(env=["dev"])
    assert recorder.errors() == []
    assert "boom" in str(raised.value)


async def test_plan(source_from):
    source_from(chart_repo)
    with capture(SCHEMA) as recorder:
        text = await pipeline().plan(env=["dev"])
    assert recorder.errors() == []
    assert "web" in text
    assert "values-dev.yaml" in text
    assert "values-prd.yaml" not in text
    assert recorder.queries == []  # planning reads the local copy only


async def test_tools(exports_create_directories):
    with capture(SCHEMA) as recorder:
        text = await pipeline().tools()
    assert recorder.errors() == []
    lines = {line.split("\t")[0]: line.split("\t") for line in text.splitlines()}
    assert set(lines) == set(TOOLS)
    assert lines["helm"][3] == TOOLS["helm"].image
    # Only pipeline.yaml comes over: the image overrides are read from it.
    assert 'filter(include: ["pipeline.yaml"])' in documents(recorder)


async def test_tool_env(exports_create_directories):
    with capture(SCHEMA) as recorder:
        container = await pipeline().tool_env(tool="helm")
        await container.sync()
    assert recorder.errors() == []
    text = documents(recorder)
    assert f'from(address: "{TOOLS["helm"].image}")' in text
    assert 'withMountedDirectory(path: "/src"' in text
    assert 'withWorkdir(path: "/src")' in text
    assert 'withMountedCache(path: "/cache/helm"' in text


async def test_tool_env_refuses_an_unknown_tool(exports_create_directories):
    with capture(SCHEMA) as recorder, pytest.raises(ConfigError, match="unknown tool 'kubectl'"):
        await pipeline().tool_env(tool="kubectl")
    assert not queries_with(recorder, "from(address:")


async def test_schemas(exports_create_directories):
    with capture(SCHEMA) as recorder:
        bundle = await pipeline().schemas(crd_schemas=None)
        await bundle.sync()
    assert recorder.errors() == []
    step = only_query_with(recorder, '"python" "-m" "pipeline.schemas"', "exitCode")
    text = _flat(step.document)
    assert '"/out/bundle" "1.35.0"' in text
    assert '"--kind"' not in text  # every kind: a full bundle


async def test_seal_passes_each_value_as_a_secret_variable_never_as_text(monkeypatch):
    plaintext = "sealed-value-plaintext-4e1f"
    monkeypatch.setenv("SEAL_PW", plaintext)
    with capture(SCHEMA) as recorder:
        sealed = await pipeline().seal(
            key=["password"],
            value=[dag.secret("env://SEAL_PW")],
            cert=dag.directory().file("cert.pem"),
            name="db",
            namespace="chat",
            scope="namespace-wide",
        )
        await sealed.sync()
    assert recorder.errors() == []
    secret_id = answered_ids(only_query_with(recorder, 'secret(uri: "env://SEAL_PW")'))[0]
    text = documents(recorder)
    assert f'withSecretVariable(name: "SEAL_VALUE_0" secret: "{secret_id}")' in text
    assert (
        '"python" "-m" "pipeline.secrets.sealing" "--cert" "/out/seal/cert.pem" '
        '"--value" "password=env:SEAL_VALUE_0" "--name" "db" "--namespace" "chat" '
        '"--scope" "namespace-wide" "--type" "Opaque" "--output" "/out/seal/sealed.yaml"'
    ) in text
    assert not recorder.contains_text(plaintext)


async def test_seal_refuses_keys_and_values_that_do_not_pair():
    with capture(SCHEMA), pytest.raises(ConfigError, match=r"one --value per --key"):
        await pipeline().seal(
            key=["password", "user"],
            value=[dag.secret("env://SEAL_PW")],
            cert=dag.directory().file("cert.pem"),
            name="db",
            namespace="chat",
        )


def delivery_repo(target: Path) -> Path:
    shutil.copytree(FIXTURES / "repos" / "delivery", target)
    return target


async def test_argocd_returns_what_the_generator_writes(source_from):
    source_from(delivery_repo)
    with capture(SCHEMA) as recorder:
        directory = await pipeline().argocd()
        await directory.sync()
    assert recorder.errors() == []
    written = documents(recorder)
    committed = sorted(p.name for p in (FIXTURES / "repos" / "delivery" / "deploy").iterdir())
    assert committed
    for name in committed:
        assert f'withNewFile(path: "{name}"' in written, name


async def test_notify_reads_only_the_secrets_of_the_declared_channels(monkeypatch, tmp_path):
    (tmp_path / "pipeline.yaml").write_text(
        "notify:\n  slack:\n    url: env:SLACK_WEBHOOK_URL\n", encoding="utf-8"
    )

    async def config_only(_self: object) -> Config:
        return load_config(tmp_path)  # the exported pipeline.yaml, as the engine would write it

    monkeypatch.setattr(pipeline_module.Pipeline, "_config_only", config_only)
    with capture(SCHEMA) as recorder:
        await pipeline().notify(
            message="deploys frozen",
            slack_url=dag.secret("env://SLACK_WEBHOOK_URL"),
            telegram_token=dag.secret("env://TELEGRAM_BOT_TOKEN"),  # no telegram: never read
        )
    assert recorder.errors() == []
    assert queries_with(recorder, 'secret(uri: "env://SLACK_WEBHOOK_URL")', "plaintext")
    assert not queries_with(recorder, 'secret(uri: "env://TELEGRAM_BOT_TOKEN")', "plaintext")


async def test_policies():
    with capture(SCHEMA) as recorder:
        text = pipeline().policies()
    assert recorder.queries == []
    assert [line.split()[0] for line in text.splitlines()] == [r.id for r in RULES]


# --- delivery: promote and diff ------------------------------------------------------------------


async def test_promote_of_the_version_already_there_changes_nothing(
    source_from, script, exports_create_directories
):
    def with_tag(target: Path) -> Path:
        chart_repo(target)
        (target / "charts/web/values-prd.yaml").write_text(
            "replicaCount: 2\nimage:\n  tag: 1.4.2  # kept\n", encoding="utf-8"
        )
        return target

    source_from(with_tag)
    with captured(script) as recorder:
        await pipeline().promote(git_dir=dag.directory(), env="prd", version="1.4.2")
    assert recorder.errors() == []
    # Nothing to write, so nothing asked of git or the registry.
    assert script.git_commands() == []


async def test_diff_refuses_a_base_git_cannot_find(source_from, script):
    source_from(chart_repo)
    script.exit_by_argv[("git", "merge-base", "--end-of-options", "nope", "HEAD")] = 1
    with (
        captured(script) as recorder,
        pytest.raises(ConfigError, match="cannot compare with 'nope'"),
    ):
        await pipeline().diff(base="nope", git_dir=dag.directory())
    assert recorder.errors() == []
    assert script.git_commands() == [["git", "merge-base", "--end-of-options", "nope", "HEAD"]]


def test_every_function_has_an_offline_test_here():
    # "" is the constructor, once registration (tests/test_module.py) has run.
    functions = set(default_module()._objects["Pipeline"].functions) - {""}
    source = Path(__file__).read_text(encoding="utf-8")
    untested = {f for f in functions if f".{f}(" not in source and f'("{f}",' not in source}
    assert functions
    assert untested == set()
