"""Every parser of tool output, and the pipeline.yaml loader, fed arbitrary input (Hypothesis).

A tool's output is untrusted text: a crash, a tool killed halfway, another version's format.
Each parser must turn any text into its normal value or its own `OutputError` (which the
callers report as an error finding), never an AttributeError, TypeError, KeyError or
RecursionError escaping as a traceback; `load_config` turns any bytes into a Config or a
ConfigError naming pipeline.yaml.

Three kinds of input per parser: arbitrary text; arbitrary JSON of any shape; and input shaped
like the tool's (its known keys, each holding a plausible or an arbitrary value), which gets
past the first shape check into every field. The `@example`s are the inputs that crashed
before these parsers were made total; they run on every test run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import quoteattr

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline import reports
from pipeline.config import CONFIG_FILE, ChartConfig, Config, load_config
from pipeline.discovery import RenderTarget
from pipeline.errors import ConfigError
from pipeline.model import Finding, out
from pipeline.stages import conftest, git, helm, kubeconform, mypy, ruff
from pipeline.stages import pytest as pytest_stage

T = TypeVar("T")


def fuzz(examples: int) -> settings:
    """`examples` inputs per test: thousands per parser, the whole file under a minute on 2 cores.

    No deadline: a shared CI machine's pauses are not slowness of the parser. No example
    database: every run explores afresh, and a failure prints the input that reproduces it.
    """
    return settings(max_examples=examples, deadline=None, database=None)


# --- input -----------------------------------------------------------------------------------

TEXT = st.text(max_size=20)
# Strings inside JSON may hold lone surrogates: a "\ud800" escape makes one, and a report
# cannot encode it. Raw output never does: the runners decode it with errors="replace".
JSON_STRING = st.text(st.characters(exclude_categories=()), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | JSON_STRING
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ANY_TEXT = st.text(max_size=200)


def record(fields: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of a tool's keys, each holding a plausible value or any JSON at all."""
    return st.fixed_dictionaries({}, optional={k: v | ANY_JSON for k, v in fields.items()})


def output_of(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return st.one_of(ANY_TEXT, ANY_JSON.map(json.dumps), shaped.map(json.dumps))


def fragments(*pieces: str) -> st.SearchStrategy[str]:
    """Text made of a tool's telling pieces and arbitrary text: reaches the regular expressions."""
    return st.lists(st.sampled_from(pieces) | ANY_TEXT, max_size=12).map("".join)


DEEP_JSON = "[" * 100_000 + "]" * 100_000  # RecursionError out of json.loads before
LONG_INTEGER = "1" * 5_000  # a ValueError (not a JSONDecodeError) out of json.loads before
SURROGATE = '"\\ud800"'


# --- checks ----------------------------------------------------------------------------------


def parsed(parse: Callable[[], T], error: type[ValueError]) -> T | None:
    """The parser's value, or None when it raised its own OutputError (which says something).

    Any other exception fails the test: that is the property.
    """
    try:
        return parse()
    except error as exc:
        raised = exc
    assert type(raised) is error
    message = str(raised)
    assert message.strip()
    message.encode("utf-8")  # it becomes a finding's message, written to UTF-8 reports
    return None


def assert_reportable(findings: list[Finding]) -> None:
    """What a parser returns goes into summary.md and summary.json: every text must encode."""
    for finding in findings:
        json.dumps(reports.finding_json(finding), ensure_ascii=False).encode("utf-8")
        for value in dataclasses.astuple(finding):
            if isinstance(value, str):
                value.encode("utf-8")


# --- kubeconform -----------------------------------------------------------------------------

KUBECONFORM_OUTPUT = record(
    {
        "resources": st.lists(
            record(
                {
                    "filename": TEXT,
                    "kind": st.sampled_from(["Deployment", "Widget"]),
                    "name": TEXT,
                    "version": TEXT,
                    "status": st.sampled_from(sorted(kubeconform.STATUS)),
                    "msg": st.sampled_from(
                        [
                            f"{kubeconform.MISSING_SCHEMA} for Widget",
                            "problem validating schema: at '/spec': missing properties",
                        ]
                    )
                    | TEXT,
                    "validationErrors": st.lists(record({"path": TEXT, "msg": TEXT}), max_size=3),
                }
            ),
            max_size=4,
        ),
        "summary": ANY_JSON,
    }
)


@fuzz(2400)
@given(stdout=output_of(KUBECONFORM_OUTPUT), ignored=st.lists(st.sampled_from(["Widget", ""])))
@example(stdout=DEEP_JSON, ignored=[])
@example(stdout=LONG_INTEGER, ignored=[])
@example(stdout="[]", ignored=[])  # AttributeError: a list has no .get
@example(stdout='{"resources": [1]}', ignored=[])
@example(stdout='{"resources": {"a": 1}}', ignored=[])
@example(stdout='{"resources": [{"msg": null, "status": "statusInvalid"}]}', ignored=[])
@example(stdout='{"resources": [{"validationErrors": [null]}]}', ignored=[])
@example(stdout=f'{{"resources": [{{"name": {SURROGATE}}}]}}', ignored=[])
def test_kubeconform_output(stdout: str, ignored: list[str]) -> None:
    verdicts = parsed(lambda: kubeconform.parse(stdout, ignored), kubeconform.OutputError)
    assert_reportable([kubeconform.to_finding(v, chart="web") for v in verdicts or []])


# --- conftest ---------------------------------------------------------------------------------

POLICY_MESSAGE = st.sampled_from(
    ["Deployment/web: container 'app' has no memory limit", "Service/web: no owner label", ""]
)
CONFTEST_OUTPUT = st.lists(
    record(
        {
            "filename": TEXT,
            "namespace": st.sampled_from(["gitops_pipeline", "main"]),
            "successes": st.integers(min_value=0),
            "failures": st.lists(record({"msg": POLICY_MESSAGE | TEXT}), max_size=3),
            "warnings": st.lists(record({"msg": POLICY_MESSAGE | TEXT}), max_size=3),
            "exceptions": ANY_JSON,
        }
    ),
    max_size=3,
)


@fuzz(1950)
@given(stdout=output_of(CONFTEST_OUTPUT))
@example(stdout=DEEP_JSON)
@example(stdout='{"a": 1}')  # iterating an object: AttributeError on str.get
@example(stdout="[1]")
@example(stdout='[{"successes": "many"}]')  # ValueError out of int()
@example(stdout='[{"successes": 1e400}]')  # OverflowError out of int(inf)
@example(stdout='[{"successes": NaN}]')
@example(stdout='[{"failures": [{"msg": 1}]}]')  # TypeError in the message regex
@example(stdout='[{"failures": [{"msg": null}]}]')
def test_conftest_output(stdout: str) -> None:
    results = parsed(lambda: conftest.parse(stdout), conftest.OutputError)
    if results is not None:
        policy_results, successes = results
        assert all(count >= 0 for count in successes.values())
        for result in policy_results:
            result.message.encode("utf-8")
            conftest.rule_id(result.message)
    outcome = parsed(lambda: conftest.parse_verify(stdout, "policy"), conftest.OutputError)
    if outcome is not None:
        assert outcome.passed >= 0
        assert_reportable(outcome.failed)


# --- ruff --------------------------------------------------------------------------------------

RUFF_OUTPUT = st.lists(
    record(
        {
            "code": st.sampled_from(["F401", None]),
            "filename": st.sampled_from(["/src/app/x.py", "app/x.py", "/elsewhere/x.py"]),
            "message": TEXT,
            "location": record({"row": st.integers(), "column": st.integers()}),
            "fix": ANY_JSON,
        }
    ),
    max_size=4,
)
RUFF_DIFF = fragments("--- ", "+++ ", "@@ -", "app/x.py", "\n", " ", "12", ",3 +12,4 @@")


@fuzz(1950)
@given(
    stdout=output_of(RUFF_OUTPUT),
    diff=RUFF_DIFF,
    project=st.sampled_from([".", "app"]),
    root=st.sampled_from(["", "/src"]),
)
@example(stdout=DEEP_JSON, diff="", project=".", root="")
@example(stdout='{"a": 1}', diff="", project=".", root="")  # iterating an object's keys
@example(stdout='[{"location": [1, 2]}]', diff="", project=".", root="")
@example(stdout='[{"filename": 3}]', diff="", project=".", root="/src")
@example(stdout="[]", diff=f"--- a.py\n+++ a.py\n@@ -{'1' * 5000},1", project=".", root="")
def test_ruff_output(stdout: str, diff: str, project: str, root: str) -> None:
    findings = parsed(lambda: ruff.check_findings(project, stdout, root), ruff.OutputError)
    assert_reportable(findings or [])
    assert_reportable(ruff.format_findings(project, diff))  # plain text: never an error


# --- mypy --------------------------------------------------------------------------------------

MYPY_LINE = record(
    {
        "file": TEXT,
        "line": st.integers(),
        "column": st.integers(),
        "message": TEXT,
        "hint": TEXT | st.none(),
        "code": st.sampled_from(["arg-type", None]),
        "severity": st.sampled_from(["error", "note"]),
    }
)
MYPY_OUTPUT = st.lists(
    st.one_of(MYPY_LINE.map(json.dumps), ANY_JSON.map(json.dumps), ANY_TEXT), max_size=5
).map("\n".join)


@fuzz(1350)
@given(stdout=MYPY_OUTPUT, project=st.sampled_from([".", "app"]))
@example(stdout="{not json", project=".")  # JSONDecodeError escaped: mypy had no OutputError
@example(stdout='{"line": "7"}', project=".")
@example(stdout='{"hint": 5}', project=".")
@example(stdout="{" * 100_000, project=".")
def test_mypy_output(stdout: str, project: str) -> None:
    assert_reportable(parsed(lambda: mypy.findings(project, stdout), mypy.OutputError) or [])


# --- pytest's JUnit and coverage reports --------------------------------------------------------

XML_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=12)
TEST_CASE = st.tuples(
    st.fixed_dictionaries(
        {},
        optional={
            "classname": XML_TEXT,
            "name": XML_TEXT,
            "file": XML_TEXT,
            "line": XML_TEXT | st.integers(-5, 10**12).map(str) | st.just("²"),
        },
    ),
    st.sampled_from([None, "failure", "error", "skipped"]),
    st.none() | XML_TEXT,
)


def junit_document(root: str, cases: list[tuple[dict[str, str], str | None, str | None]]) -> str:
    body = ""
    for attributes, problem, message in cases:
        attrs = "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items())
        detail = "" if message is None else f" message={quoteattr(message)}"
        inner = f"<{problem}{detail}/>" if problem else ""
        body += f"<testcase{attrs}>{inner}</testcase>"
    return f"<{root}><testsuite>{body}</testsuite></{root}>"


JUNIT = st.builds(
    junit_document,
    st.sampled_from(["testsuites", "testsuite", "html"]),
    st.lists(TEST_CASE, max_size=4),
)
LINE_RATE = st.floats().map(str) | XML_TEXT | st.sampled_from(["0.5", "nan", "-inf", "1e400"])
COVERAGE = st.builds(
    lambda root, rate: f"<{root} line-rate={quoteattr(rate)}/>",
    st.sampled_from(["coverage", "coverage", "report"]),
    LINE_RATE,
)
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{f"&{chr(97 + i)};" * 10}">' for i in range(9))
    + "]><testsuites>&j;</testsuites>"
)


@fuzz(3000)
@given(
    junit=st.none() | ANY_TEXT | JUNIT,
    coverage=st.none() | ANY_TEXT | COVERAGE,
    project=st.sampled_from([".", "app"]),
)
@example(junit="<testsuites", coverage=None, project=".")  # ParseError: a report cut short
@example(
    junit='<testsuite><testcase line="²"><failure/></testcase></testsuite>',
    coverage=None,
    project=".",
)
@example(
    junit=f'<testsuite><testcase line="{"1" * 5000}"><error/></testcase></testsuite>',
    coverage=None,
    project=".",
)
@example(junit=None, coverage='<coverage line-rate="abc"/>', project=".")  # ValueError of float()
@example(junit="<testsuites>\ud800</testsuites>", coverage=None, project=".")  # UnicodeEncodeError
@example(junit=BILLION_LAUGHS, coverage=None, project=".")
def test_pytest_reports(junit: str | None, coverage: str | None, project: str) -> None:
    report = parsed(lambda: pytest_stage.parse(project, junit, coverage), pytest_stage.OutputError)
    if report is not None:
        assert report.tests >= len(report.failures)
        assert report.coverage_percent is None or 0 <= report.coverage_percent <= 100
        assert_reportable(report.failures)


# --- git -------------------------------------------------------------------------------------

SHA = "0123456789abcdef" * 2 + "01234567"
GIT_OUTPUT = st.one_of(
    ANY_TEXT,
    fragments("\t", "\n", "\x1e", "\x1f", SHA, " ", "v1.0.0", "true", "false", "\u2028", "?? "),
)


@fuzz(1800)
@pytest.mark.parametrize(
    "parse",
    [git.parse_is_shallow, git.parse_head, git.parse_tags, git.parse_log, git.parse_status],
    ids=lambda parse: parse.__name__,
)
@given(stdout=GIT_OUTPUT)
def test_git_output(parse: Callable[[str], object], stdout: str) -> None:
    parsed(lambda: parse(stdout), git.OutputError)


def test_a_tag_name_may_hold_a_unicode_line_separator() -> None:
    # str.splitlines() cut this line in two, and the half-lines were "unexpected tag lines".
    name = "v1.0.0-\u2028\x85"

    assert git.parse_tags(f"{name}\t{SHA}\t\n") == [git.Tag(name, SHA, annotated=False)]


# --- helm: plain text, so never an error at all -------------------------------------------------

CHART = ChartConfig(name="web", path="charts/web", release="web", namespace="web")
TARGET = RenderTarget(chart=CHART, environment="dev", values=("charts/web/values.yaml",))
COPY = out(".cache/charts/web/chart")
HELM_OUTPUT = fragments(
    "[ERROR] ",
    "[WARNING] ",
    "templates/",
    ": ",
    "Error: ",
    "web/templates/deployment.yaml:",
    "12",
    "\n",
    "  ",
    "could not download oci://127.0.0.1:5000/charts/db-1.0.0.tgz: ",
    "401 Unauthorized",
    "lock file (Chart.lock) is out of sync",
    'Unable to get an update from the "r" chart repository (https://charts.example/):',
    f"/tmp/out/{COPY.path}",
)


@fuzz(3600)
@given(
    output=HELM_OUTPUT,
    repositories=st.lists(
        st.sampled_from(["https://charts.example/", "oci://127.0.0.1:5000/charts", ""])
    ),
)
@example(output=f"Error: web/templates/x.yaml:{'1' * 5000}: bad", repositories=[])
def test_helm_output(output: str, repositories: list[str]) -> None:
    assert_reportable(helm.lint_findings(TARGET, output))
    assert_reportable([helm.template_error(TARGET, output)])
    helm.dependency_build_error(CHART, output, repositories).encode("utf-8")
    helm.source_paths(output, COPY, CHART)


# --- pipeline.yaml -----------------------------------------------------------------------------

NAMES = st.sampled_from(["web", "dev", "prd", "Not A Name"]) | st.text(max_size=6)
CONFIG_DOCUMENT = record(
    {
        "kubernetes_version": st.sampled_from(["1.35.0", "1.35"]),
        "environments": st.lists(NAMES, max_size=3),
        "charts": st.dictionaries(
            NAMES,
            record(
                {
                    "path": TEXT,
                    "release": NAMES,
                    "environments": st.dictionaries(NAMES, record({"values": st.lists(TEXT)})),
                }
            ),
            max_size=2,
        ),
        "policy": record(
            {
                "builtin": st.booleans(),
                "waivers": st.lists(
                    record(
                        {
                            "rule": TEXT,
                            "kind": TEXT,
                            "name": TEXT,
                            "reason": TEXT,
                            "expires": st.sampled_from(["2030-01-01", "someday"]),
                        }
                    ),
                    max_size=2,
                ),
            }
        ),
        "python": record({"min_coverage": st.floats() | st.integers(), "paths": st.lists(TEXT)}),
        "tools": st.dictionaries(
            st.sampled_from(["helm", "helmm"]),
            record({"image": st.sampled_from(["alpine/helm:4", "x"])}),
        ),
        "unknown": ANY_JSON,
    }
)
YAML_PIECES = fragments(
    "charts:",
    "environments:",
    "policy:",
    "waivers:",
    "python:",
    " web:",
    "  - ",
    ": ",
    "\n",
    "  ",
    "&a ",
    "*a",
    "[",
    "]",
    "{",
    "}",
    "? ",
    "!!binary ",
    "%YAML 1.1\n",
    "---\n",
    "\t",
    "\x00",
    "\ufeff",
)
CONFIG_BYTES = st.one_of(
    st.binary(max_size=200),
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, one more way to fail
    st.text(st.characters(exclude_categories=())).map(lambda t: t.encode("utf-8", "surrogatepass")),
    YAML_PIECES.map(lambda text: text.encode("utf-8", "surrogatepass")),
    YAML_PIECES.map(lambda text: text.encode("utf-16", "surrogatepass")),
    CONFIG_DOCUMENT.map(lambda document: yaml.safe_dump(document).encode()),
)


def alias_bomb(width: int) -> str:
    """`width` charts of `width` environments of `width` values: width**3 values to check, from
    a file of about 2 * width lines ("billion laughs" through the schema's own keys)."""
    values = ", ".join(["v.yaml"] * width)
    lines = [
        "charts:",
        "  c0: &chart",
        "    environments:",
        f"      e0: &env {{values: [{values}]}}",
    ]
    lines += [f"      e{i}: *env" for i in range(1, width)]
    lines += [f"  c{i}: *chart" for i in range(1, width)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def config_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every example: a fresh one each would cost more than the check."""
    return tmp_path_factory.mktemp("config-fuzz")


@fuzz(1800)
@given(content=CONFIG_BYTES)
@example(content="key: \ufffe\n".encode("utf-16"))  # UnicodeDecodeError before
@example(content=b"\xff\xfe\x00")
@example(content=b"charts:\x00\n")  # a ReaderError is no MarkedYAMLError: it escaped
@example(content=b"[" * 50_000)  # quadratic in PyYAML's scanner: 1 s per 5,000 before
@example(content=b"- " * 5_000)  # block lists nested on one line: RecursionError
@example(content=b"? [a, b]\n: 1\n")  # a list as a key: TypeError (unhashable) before
@example(content=b"{[a]: 1}\n")
@example(content=alias_bomb(300).encode())  # 27 million values: 6 s, 260 MB before
@example(content=b"- 1\n- 2\n")  # a list, not a mapping
def test_any_bytes_in_pipeline_yaml(config_source: Path, content: bytes) -> None:
    (config_source / CONFIG_FILE).write_bytes(content)
    try:
        config = load_config(config_source)
    except ConfigError as exc:
        refused = exc
    else:
        assert isinstance(config, Config)
        return
    assert refused.exit_code == 2
    assert refused.file == CONFIG_FILE
    str(refused).encode("utf-8")


# --- what the refusals say ----------------------------------------------------------------------


def config_error(tmp_path: Path, content: bytes) -> ConfigError:
    (tmp_path / CONFIG_FILE).write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.file == CONFIG_FILE
    return caught.value


def test_utf16_pipeline_yaml_is_named_as_not_utf8(tmp_path: Path) -> None:
    error = config_error(tmp_path, "environments: [dev]\n".encode("utf-16"))

    assert "pipeline.yaml is not UTF-8 (it starts with a UTF-16 byte order mark)" in str(error)
    assert "save it as UTF-8" in str(error)


def test_latin1_pipeline_yaml_names_the_byte_and_its_line(tmp_path: Path) -> None:
    error = config_error(tmp_path, "environments: [dev]\n# caf\xe9\n".encode("latin-1"))

    assert error.line == 2
    assert "pipeline.yaml is not UTF-8: byte 0xe9" in str(error)


def test_a_nul_byte_is_refused_with_its_line(tmp_path: Path) -> None:
    error = config_error(tmp_path, b"environments: [dev]\npolicy:\x00\n")

    assert error.line == 2
    assert "character U+0000 is not allowed" in str(error)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    # 27 million values once expanded, from 8 kB (6 s and 260 MB before; 1000 wide, 30 kB,
    # would be minutes and gigabytes); the checks stop after 100,000.
    error = config_error(tmp_path, alias_bomb(300).encode())

    assert "more than 100000 values to check: YAML aliases (*name) repeat" in str(error)
    assert error.field is not None
    assert error.field.startswith("charts.c")


def test_aliases_within_the_bound_still_load(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(alias_bomb(40), encoding="utf-8")  # 64,000 values

    assert len(load_config(tmp_path).charts) == 40


def test_a_few_aliases_still_load(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(
        "environments: &envs [dev, prd]\n"
        "charts:\n"
        "  web:\n"
        "    environments: {dev: &values {values: [overlays/web.yaml]}, prd: *values}\n",
        encoding="utf-8",
    )

    config = load_config(tmp_path)

    assert config.environments == ("dev", "prd")
    assert config.charts["web"].environments["prd"].values == ("overlays/web.yaml",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"charts: " + b"[" * 100_000, "nested more than 64 levels deep"),
        (b"charts: " + b"{a: " * 100_000, "nested more than 64 levels deep"),
        (b"- " * 100_000, "nested too deeply to read"),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_deep_nesting_is_a_config_error_at_once(
    tmp_path: Path, content: bytes, message: str
) -> None:
    started = time.monotonic()

    error = config_error(tmp_path, content)

    assert message in str(error)
    assert time.monotonic() - started < 2


def test_a_list_as_a_key_is_named(tmp_path: Path) -> None:
    error = config_error(tmp_path, b"charts:\n  ? [a, b]\n  : {}\n")

    assert (error.line, error.field) == (2, "charts")
    assert "expected a plain key" in str(error)


def test_shape_errors_name_the_place() -> None:
    with pytest.raises(kubeconform.OutputError) as caught:
        kubeconform.parse('{"resources": [{"kind": "Pod"}, {"kind": 7}]}', ())

    assert str(caught.value) == (
        "kubeconform printed JSON of an unexpected shape: resources[1].kind is a number, "
        "expected a string"
    )
