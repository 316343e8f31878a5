"""`pipeline.yaml`, validated once into a frozen object.

The file is optional: without it everything is discovered. With it, every key
is checked against the schema below; an unknown key is rejected with a
did-you-mean, a wrong type names the field, and every error carries the file
and line. YAML syntax errors are reported with the line the parser gave.
"""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from pipeline.defaults import CONFIG_FILE, DEFAULT_KUBERNETES_VERSION
from pipeline.errors import ConfigError
from pipeline.limits import DEFAULT_KEY, PER_TEST_KEY
from pipeline.notify.settings import ChannelSettings, Event, NotifySettings
from pipeline.secrets.detector_types import DETECTOR_TYPES
from pipeline.tools import TOOLS

CRDS_CATALOG_TEMPLATE = (
    "https://raw.githubusercontent.com/datreeio/CRDs-catalog/main/"
    "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
)
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ChartEnvironment:
    values: tuple[
        str, ...
    ] = ()  # extra values files relative to the source root, after the chart's


@dataclass(frozen=True)
class ChartConfig:
    name: str
    path: str
    release: str
    namespace: str
    environments: Mapping[str, ChartEnvironment] = field(default_factory=dict)
    api_versions: tuple[str, ...] = ()

    def file(self, name: str) -> str:
        """A file of the chart, relative to the source (a chart at the root has no prefix)."""
        return (PurePosixPath(self.path) / name).as_posix()


@dataclass(frozen=True)
class KubeconformConfig:
    # Offline by default: the bundled Kubernetes schemas and the package's CRD schemas. Online
    # locations ("default", CRDS_CATALOG_TEMPLATE, any URL) are an explicit choice.
    schema_locations: tuple[str, ...] = ("bundled",)
    ignore_missing_schemas: tuple[str, ...] = ()  # kinds allowed to have no schema
    crd_schemas: tuple[str, ...] = ()  # CRDs-catalog layout dirs for the `bundled` location


@dataclass(frozen=True)
class Waiver:
    """`policy.waivers` entry: one rule waived for one resource, with a reason."""

    rule: str
    kind: str
    name: str
    reason: str
    line: int  # in pipeline.yaml, for the message when it expires
    environment: str | None = None
    expires: dt.date | None = None


@dataclass(frozen=True)
class PolicyConfig:
    path: str = "policy"
    data: tuple[str, ...] = ()
    builtin: bool = True  # the policy pack shipped with gitops-pipeline
    waivers: tuple[Waiver, ...] = ()


@dataclass(frozen=True)
class PythonConfig:
    paths: tuple[str, ...] = ()  # project roots to lint, type-check and test
    mypy_targets: tuple[str, ...] = ()
    min_coverage: float | None = None


@dataclass(frozen=True)
class ImageConfig:
    repository: str = ""
    dockerfile: str = "app/Dockerfile"
    context: str = "app"


@dataclass(frozen=True)
class ReleaseConfig:
    tag_format: str = "v{version}"
    first_release: str = "1.0.0"
    major_on_zero: bool = True


@dataclass(frozen=True)
class DiscoveryConfig:
    paths: tuple[str, ...] = (".",)  # where charts are looked for, relative to the source
    ignore: tuple[str, ...] = ()  # paths (or globs) skipped, e.g. tests/fixtures


@dataclass(frozen=True)
class DeliveryEnvironment:
    """`delivery.environments.<env>`: where Argo CD deploys it and which tags it takes."""

    server: str = "https://kubernetes.default.svc"
    namespace: str = ""  # destination namespace; default: each chart's namespace
    prereleases: str = ""  # a regexp for the part after `X.Y.Z-` this environment accepts
    constraint: str = ""  # semver constraint; default: any release (with prereleases if any)


@dataclass(frozen=True)
class DeliveryChart:
    """`delivery.charts.<chart>`: the values paths the chart reads its image from."""

    image_tag_path: str = "image.tag"
    image_name_path: str = "image.repository"


@dataclass(frozen=True)
class DeliveryConfig:
    """`delivery:`: the Argo CD objects `gitops-pipeline argocd` writes into `path`."""

    repo_url: str
    target_revision: str = "main"
    project: str = "default-apps"
    namespace: str = "argocd"  # where Argo CD and Image Updater read their objects
    path: str = "deploy"
    environments: Mapping[str, DeliveryEnvironment] = field(default_factory=dict)
    charts: Mapping[str, DeliveryChart] = field(default_factory=dict)
    # argocd-notifications subscriptions: service -> recipients ("chat-alerts;ops")
    notify: Mapping[str, str] = field(default_factory=dict)
    line: int = 0  # of `delivery:` in pipeline.yaml

    def environment(self, name: str) -> DeliveryEnvironment:
        return self.environments.get(name, DeliveryEnvironment())

    def chart(self, name: str) -> DeliveryChart:
        return self.charts.get(name, DeliveryChart())


# `diff` leaves out changes of these fields (globs over paths such as
# metadata.labels.helm.sh/chart): they change with every chart version or values edit.
DEFAULT_DIFF_IGNORE = ("*labels.helm.sh/chart", "*annotations.checksum/*")


@dataclass(frozen=True)
class DiffConfig:
    ignore: tuple[str, ...] = DEFAULT_DIFF_IGNORE  # `diff.ignore` replaces the defaults


@dataclass(frozen=True)
class SecretAllow:
    """`secrets.allow` entry: a plaintext-secret finding that may stay, and why."""

    file: str  # a path or glob, relative to the repository
    reason: str
    line: int  # of the entry in pipeline.yaml, named where it applies
    type: str | None = None  # a detect-secrets type ("Secret Keyword"); any when absent
    at_line: int | None = None  # only the finding on this line of the file


@dataclass(frozen=True)
class SecretsConfig:
    allow: tuple[SecretAllow, ...] = ()


@dataclass(frozen=True)
class ToolConfig:
    image: str = ""  # replaces the pinned image (an internal mirror, an air-gapped registry)


@dataclass(frozen=True)
class Config:
    source: Path
    file: Path | None = None
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    environments: tuple[str, ...] = ()
    charts: Mapping[str, ChartConfig] = field(default_factory=dict)
    kubeconform: KubeconformConfig = field(default_factory=KubeconformConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    python: PythonConfig = field(default_factory=PythonConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    tools: Mapping[str, ToolConfig] = field(default_factory=dict)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    # Seconds a step may run, per tool ("default" for the rest); the step is then stopped.
    timeouts: Mapping[str, float] = field(default_factory=dict)
    delivery: DeliveryConfig | None = None
    diff: DiffConfig = field(default_factory=DiffConfig)
    notify: NotifySettings = field(default_factory=NotifySettings)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)

    def tool_images(self) -> dict[str, str]:
        """Each pinned tool's container image, with this repository's overrides applied."""
        return {
            name: (self.tools[name].image if name in self.tools else "") or tool.image
            for name, tool in TOOLS.items()
        }


# --- schema -------------------------------------------------------------------------------
# A schema is a dict of key -> checker. A checker turns a YAML node into a Python value or
# raises ConfigError naming the node's line.

Checker = Callable[[yaml.Node, str, "Context"], Any]

# Aliases let a few lines name one mapping or list over and over ("billion laughs"): the
# composed nodes are shared, but the checks visit every use, so their number is bounded. A
# real pipeline.yaml has hundreds of values.
MAX_CHECKED_VALUES = 100_000


@dataclass
class Context:
    file: Path
    checked: int = 0  # values checked so far; a value reached through an alias counts each time

    def error(self, node: yaml.Node, dotted: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=node.start_mark.line + 1, field=dotted)

    def visit(self, node: yaml.Node, dotted: str) -> None:
        self.checked += 1
        if self.checked > MAX_CHECKED_VALUES:
            raise self.error(
                node,
                dotted or "(top level)",
                f"more than {MAX_CHECKED_VALUES} values to check: YAML aliases (*name) repeat "
                "this part too often; write the values out instead",
            )


def _scalar(kind: str, convert: Callable[[str], Any], *tags: str) -> Checker:
    def check(node: yaml.Node, dotted: str, ctx: Context) -> Any:
        ctx.visit(node, dotted)
        if not isinstance(node, yaml.ScalarNode) or (tags and node.tag not in tags):
            raise ctx.error(node, dotted, f"expected {kind}")
        try:
            return convert(node.value)
        except (ValueError, KeyError):
            raise ctx.error(node, dotted, f"expected {kind}, got {node.value!r}") from None

    return check


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in {float("inf"), float("-inf")}:  # noqa: PLR0124 - NaN check
        raise ValueError(text)
    return value


STR = _scalar("a string", str)
# YAML 1.1 booleans (yes/no/on/off) keep the meaning PyYAML gives them.
BOOL = _scalar(
    "true or false",
    lambda v: yaml.constructor.SafeConstructor.bool_values[v.lower()],
    "tag:yaml.org,2002:bool",
)
NUMBER = _scalar("a number", _finite, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _matching(pattern: re.Pattern[str], what: str) -> Checker:
    def check(node: yaml.Node, dotted: str, ctx: Context) -> str:
        value = STR(node, dotted, ctx)
        if not pattern.match(value):
            raise ctx.error(node, dotted, f"expected {what}, got {value!r}")
        return str(value)

    return check


def _list_of(item: Checker) -> Checker:
    def check(node: yaml.Node, dotted: str, ctx: Context) -> tuple[Any, ...]:
        ctx.visit(node, dotted)
        if not isinstance(node, yaml.SequenceNode):
            raise ctx.error(node, dotted, "expected a list")
        return tuple(item(child, f"{dotted}[{i}]", ctx) for i, child in enumerate(node.value))

    return check


def _mapping(schema: Mapping[str, Checker]) -> Checker:
    def check(node: yaml.Node, dotted: str, ctx: Context) -> dict[str, Any]:
        pairs = _pairs(node, dotted, ctx)
        result: dict[str, Any] = {}
        for key_node, value_node in pairs:
            key = key_node.value
            where = f"{dotted}.{key}" if dotted else key
            if key not in schema:
                raise ctx.error(key_node, where, _unknown_key(key, schema))
            result[key] = schema[key](value_node, where, ctx)
        return result

    return check


def _dict_of(key_check: Checker, value: Checker) -> Checker:
    def check(node: yaml.Node, dotted: str, ctx: Context) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in _pairs(node, dotted, ctx):
            where = f"{dotted}.{key_node.value}" if dotted else key_node.value
            key = key_check(key_node, where, ctx)
            result[key] = value(value_node, where, ctx)
        return result

    return check


def _pairs(node: yaml.Node, dotted: str, ctx: Context) -> list[tuple[yaml.Node, yaml.Node]]:
    ctx.visit(node, dotted)
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ctx.error(node, dotted or "(top level)", "expected a mapping")
    seen: set[str] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            # `? [a, b]` or `{[a]: 1}`: a list or mapping as a key has no name to check.
            raise ctx.error(
                key_node, dotted or "(top level)", "expected a plain key, not a list or mapping"
            )
        if key_node.value in seen:
            where = f"{dotted}.{key_node.value}" if dotted else key_node.value
            raise ctx.error(key_node, where, "duplicate key")
        seen.add(key_node.value)
    return list(node.value)


def _unknown_key(key: str, schema: Mapping[str, Checker]) -> str:
    close = difflib.get_close_matches(key, list(schema), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(schema)}"
    return f"unknown key '{key}'{hint}"


NAME = _matching(_NAME, "a lower-case DNS label (a-z, 0-9, -)")


def _tag_format(node: yaml.Node, dotted: str, ctx: Context) -> str:
    value = str(STR(node, dotted, ctx))
    if value.count("{version}") != 1:
        raise ctx.error(node, dotted, f"must contain {{version}} exactly once, got {value!r}")
    return value


STRINGS = _list_of(STR)

# [registry[:port]/]path[:tag][@sha256:digest], with a tag or a digest: never an implicit latest.
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _image(node: yaml.Node, dotted: str, ctx: Context) -> str:
    value = str(STR(node, dotted, ctx))
    match = _IMAGE.match(value)
    if match is None:
        raise ctx.error(
            node, dotted, f"expected an image reference NAME:TAG[@sha256:...], got {value!r}"
        )
    if not match["tag"] and not match["digest"]:
        raise ctx.error(node, dotted, f"pin the image with a tag or a digest, got {value!r}")
    return value


_WAIVER_KEYS = {"rule", "kind", "name", "reason", "environment", "expires"}


_BUILTIN_RULE_ID = re.compile(r"GP[0-9]+")


def _check_builtin_rule_id(node: yaml.Node, dotted: str, rule: str, ctx: Context) -> None:
    """An id in the built-in pack's namespace must be one of its rules; a typo waives nothing.

    Ids of the repository's own policies are its own to choose, and are not checked here.
    """
    # pipeline.policy reads Waiver from this module: imported here, when both are loaded.
    from pipeline.policy import RULES_BY_ID  # noqa: PLC0415

    if _BUILTIN_RULE_ID.fullmatch(rule) and rule not in RULES_BY_ID:
        close = difflib.get_close_matches(rule, list(RULES_BY_ID), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ctx.error(
            node, dotted, f"no built-in rule {rule} (`gitops-pipeline policies` lists them){hint}"
        )


def _waiver(node: yaml.Node, dotted: str, ctx: Context) -> Waiver:
    fields = _mapping(dict.fromkeys(_WAIVER_KEYS, STR))(node, dotted, ctx)
    for required in ("rule", "kind", "name", "reason"):
        if not str(fields.get(required, "")).strip():
            raise ctx.error(node, f"{dotted}.{required}", "is required for a waiver")
    _check_builtin_rule_id(node, f"{dotted}.rule", fields["rule"], ctx)
    expires = fields.get("expires")
    expiry: dt.date | None = None
    if expires is not None:
        try:
            expiry = dt.date.fromisoformat(expires)
        except ValueError:
            raise ctx.error(
                node, f"{dotted}.expires", f"expected YYYY-MM-DD, got {expires!r}"
            ) from None
    return Waiver(
        rule=fields["rule"],
        kind=fields["kind"],
        name=fields["name"],
        reason=fields["reason"],
        line=node.start_mark.line + 1,
        environment=fields.get("environment"),
        expires=expiry,
    )


def _timeout_key(node: yaml.Node, dotted: str, ctx: Context) -> str:
    value = str(STR(node, dotted, ctx))
    if value in {DEFAULT_KEY, PER_TEST_KEY}:
        return value
    return _tool_name(node, dotted, ctx, also=(DEFAULT_KEY, PER_TEST_KEY))


def _positive(node: yaml.Node, dotted: str, ctx: Context) -> float:
    value = float(NUMBER(node, dotted, ctx))
    if value <= 0:
        raise ctx.error(node, dotted, f"expected a number of seconds above 0, got {value:g}")
    return value


def _tool_name(node: yaml.Node, dotted: str, ctx: Context, also: tuple[str, ...] = ()) -> str:
    value = str(STR(node, dotted, ctx))
    if value not in TOOLS:
        known = [*TOOLS, *also]
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
        raise ctx.error(node, dotted, f"unknown tool '{value}'{hint}")
    return value


_VALUES_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_REPO_URL = re.compile(r"^(https?://|ssh://|git@)[^\s]+$")


def _regexp(node: yaml.Node, dotted: str, ctx: Context) -> str:
    value = str(STR(node, dotted, ctx))
    try:
        re.compile(value)
    except re.error as exc:
        raise ctx.error(node, dotted, f"not a regular expression: {exc}") from None
    if value.startswith("^") or value.endswith("$"):
        raise ctx.error(
            node, dotted, "give the part after `X.Y.Z-` only, without ^ or $ (it is anchored)"
        )
    return value


_INT = "tag:yaml.org,2002:int"


def _secret_allow(node: yaml.Node, dotted: str, ctx: Context) -> SecretAllow:
    fields = _mapping(
        {"file": STR, "type": STR, "line": _scalar("a line number", int, _INT), "reason": STR}
    )(node, dotted, ctx)
    for required in ("file", "reason"):
        if not str(fields.get(required, "")).strip():
            raise ctx.error(node, f"{dotted}.{required}", "is required to allow a finding")
    kind = fields.get("type")
    if kind is not None and kind not in DETECTOR_TYPES:
        close = difflib.get_close_matches(kind, DETECTOR_TYPES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(DETECTOR_TYPES)}"
        type_node = next(v for k, v in node.value if k.value == "type")
        raise ctx.error(type_node, f"{dotted}.type", f"unknown detect-secrets type '{kind}'{hint}")
    return SecretAllow(
        file=fields["file"],
        reason=fields["reason"],
        line=node.start_mark.line + 1,
        type=kind,
        at_line=fields.get("line"),
    )


_DELIVERY_SCHEMA = _mapping(
    {
        "repo_url": _matching(_REPO_URL, "a git URL (https://, ssh:// or git@)"),
        "target_revision": _matching(_REVISION, "a branch name"),
        "project": NAME,
        "namespace": NAME,
        "path": STR,
        "environments": _dict_of(
            NAME,
            _mapping(
                {
                    "server": _matching(re.compile(r"^https://\S+$"), "an https:// API server URL"),
                    "namespace": NAME,
                    "prereleases": _regexp,
                    "constraint": STR,
                }
            ),
        ),
        "charts": _dict_of(
            NAME,
            _mapping(
                {
                    "image_tag_path": _matching(_VALUES_PATH, "a dotted values path (image.tag)"),
                    "image_name_path": _matching(
                        _VALUES_PATH, "a dotted values path (image.repository)"
                    ),
                }
            ),
        ),
        "notify": _dict_of(NAME, STR),
    }
)


def _delivery(node: yaml.Node, dotted: str, ctx: Context) -> DeliveryConfig:
    fields = _DELIVERY_SCHEMA(node, dotted, ctx)
    if not fields.get("repo_url"):
        raise ctx.error(node, f"{dotted}.repo_url", "is required: the repository Argo CD reads")
    return DeliveryConfig(
        repo_url=fields["repo_url"],
        target_revision=fields.get("target_revision", "main"),
        project=fields.get("project", "default-apps"),
        namespace=fields.get("namespace", "argocd"),
        path=fields.get("path", "deploy"),
        environments={
            env: DeliveryEnvironment(**spec) for env, spec in fields.get("environments", {}).items()
        },
        charts={name: DeliveryChart(**spec) for name, spec in fields.get("charts", {}).items()},
        notify=fields.get("notify", {}),
        line=node.start_mark.line + 1,
    )


# --- notify: channels; a token, or a URL that carries one, only by reference -------------

_REFERENCE = re.compile(r"^(?:env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _reference(node: yaml.Node, dotted: str, ctx: Context) -> str:
    value = str(STR(node, dotted, ctx))
    if not _REFERENCE.match(value):
        # The text may be the secret itself: never repeat it.
        raise ctx.error(node, dotted, "expected a reference, env:NAME or file:PATH, not a value")
    return value


def _plain_url(node: yaml.Node, dotted: str, ctx: Context) -> str:
    value = str(STR(node, dotted, ctx))
    try:
        parts = urlsplit(value)
        has_credentials = bool(parts.username or parts.password or parts.query)
    except ValueError:
        raise ctx.error(node, dotted, "expected an http(s) URL") from None
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ctx.error(node, dotted, "expected an http(s) URL or a reference env:NAME, file:PATH")
    if has_credentials:
        # Never repeated: the user or query part may be a token.
        raise ctx.error(
            node, dotted, "a URL with credentials or a query must be a reference (env:NAME)"
        )
    return value


def _url_or_reference(node: yaml.Node, dotted: str, ctx: Context) -> str:
    value = str(STR(node, dotted, ctx))
    return value if _REFERENCE.match(value) else _plain_url(node, dotted, ctx)


def _event(node: yaml.Node, dotted: str, ctx: Context) -> Event:
    value = str(STR(node, dotted, ctx))
    known = [event.value for event in Event]
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
        raise ctx.error(node, dotted, f"unknown event '{value}'{hint}")
    return Event(value)


def _count(node: yaml.Node, dotted: str, ctx: Context) -> int:
    value = float(NUMBER(node, dotted, ctx))
    if value < 1 or not value.is_integer():
        raise ctx.error(node, dotted, f"expected a whole number of 1 or more, got {value:g}")
    return int(value)


def _not_negative(node: yaml.Node, dotted: str, ctx: Context) -> float:
    value = float(NUMBER(node, dotted, ctx))
    if value < 0:
        raise ctx.error(node, dotted, f"expected seconds, 0 or more, got {value:g}")
    return value


_CHANNEL_SCHEMAS: dict[str, tuple[dict[str, Checker], tuple[str, ...]]] = {
    "alertmanager": (
        {
            "url": _url_or_reference,
            "labels": _dict_of(_matching(_LABEL_NAME, "a label name [a-zA-Z_][a-zA-Z0-9_]*"), STR),
            "resolve_after": _positive,
        },
        ("url",),
    ),
    "telegram": (
        {"token": _reference, "chat_id": STR, "api_url": _plain_url},
        ("token", "chat_id"),
    ),
    "slack": ({"url": _reference}, ("url",)),
    "webhook": ({"url": _url_or_reference, "secret": _reference}, ("url",)),
}


def _channel(kind: str) -> Checker:
    schema, required = _CHANNEL_SCHEMAS[kind]

    def check(node: yaml.Node, dotted: str, ctx: Context) -> ChannelSettings:
        fields = _mapping({**schema, "on": _list_of(_event)})(node, dotted, ctx)
        for name in required:
            if name not in fields:
                raise ctx.error(node, f"{dotted}.{name}", f"is required for a {kind} channel")
        events = fields.pop("on", ())
        return ChannelSettings(kind=kind, events=events, **fields)

    return check


def _notify(node: yaml.Node, dotted: str, ctx: Context) -> NotifySettings:
    channels = {kind: _channel(kind) for kind in _CHANNEL_SCHEMAS}
    timing = {
        "deadline": _positive,
        "request_timeout": _positive,
        "attempts": _count,
        "backoff": _not_negative,
    }
    fields = _mapping({**channels, **timing})(node, dotted, ctx)
    chosen = {kind: fields.pop(kind) for kind in channels if kind in fields}
    return NotifySettings(channels=chosen, **fields)


_SCHEMA = _mapping(
    {
        "kubernetes_version": _matching(_VERSION, "a full version x.y.z"),
        "environments": _list_of(NAME),
        "charts": _dict_of(
            NAME,
            _mapping(
                {
                    "path": STR,
                    "release": NAME,
                    "namespace": NAME,
                    "api_versions": STRINGS,
                    "environments": _dict_of(NAME, _mapping({"values": STRINGS})),
                }
            ),
        ),
        "kubeconform": _mapping(
            {
                "schema_locations": STRINGS,
                "ignore_missing_schemas": STRINGS,
                "crd_schemas": STRINGS,
            }
        ),
        "policy": _mapping(
            {"path": STR, "data": STRINGS, "builtin": BOOL, "waivers": _list_of(_waiver)}
        ),
        "python": _mapping({"paths": STRINGS, "mypy_targets": STRINGS, "min_coverage": NUMBER}),
        "image": _mapping({"repository": STR, "dockerfile": STR, "context": STR}),
        "release": _mapping(
            {
                "tag_format": _tag_format,
                "first_release": _matching(_VERSION, "x.y.z"),
                "major_on_zero": BOOL,
            }
        ),
        "tools": _dict_of(_tool_name, _mapping({"image": _image})),
        "discovery": _mapping({"paths": STRINGS, "ignore": STRINGS}),
        "timeouts": _dict_of(_timeout_key, _positive),
        "delivery": _delivery,
        "diff": _mapping({"ignore": STRINGS}),
        "notify": _notify,
        "secrets": _mapping({"allow": _list_of(_secret_allow)}),
    }
)


# Deeper than any pipeline.yaml needs, and shallow enough for PyYAML's recursive composer.
_MAX_FLOW_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing flow lists and mappings (`[`, `{`) nested past a bound.

    For each token PyYAML's scanner looks over every open flow level, so a line of 5000 `[`
    took a second and ten times as many would take minutes before composing failed.
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= _MAX_FLOW_DEPTH:
            raise yaml.scanner.ScannerError(
                problem=f"lists or mappings nested more than {_MAX_FLOW_DEPTH} levels deep",
                problem_mark=self.get_mark(),
            )
        super().fetch_flow_collection_start(TokenClass)


def load_config(source: Path) -> Config:
    """Read `pipeline.yaml` under `source` if present; defaults otherwise.

    Any content is a Config or a ConfigError naming the file: bytes that are not UTF-8,
    characters YAML forbids (NUL), YAML that is not a mapping, nesting too deep to compose
    and aliases that expand too far included.
    """
    if not (source / CONFIG_FILE).is_file():
        return Config(source=source)
    # Named as in the repository, like every other file a report names: the same in a
    # checkout, in the Dagger module's copy and in CI.
    path = Path(CONFIG_FILE)
    text = _read_utf8(source / CONFIG_FILE, path)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "cannot be parsed"
        raise ConfigError(f"invalid YAML: {problem}", file=path, line=line) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow anywhere (NUL, most control characters).
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character  # the code point, for text input
        what = f"character U+{code:04X}" if isinstance(code, int) else "a character"
        # A NUL in text that decoded as UTF-8 is most often UTF-16 without a byte order mark.
        hint = "; is the file UTF-16? save it as UTF-8" if code == 0 else ""
        raise ConfigError(
            f"invalid YAML: {what} is not allowed ({exc.reason}){hint}",
            file=path,
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=path) from None
    except RecursionError:
        # PyYAML composes nested lists and mappings recursively: a few hundred levels at most.
        raise ConfigError(
            "invalid YAML: lists or mappings nested too deeply to read", file=path
        ) from None
    if root is None:
        return Config(source=source, file=path)
    raw = _SCHEMA(root, "", Context(path))
    return _build(source, path, raw)


def _read_utf8(file: Path, named: Path) -> str:
    """The file's text, decoded as UTF-8 explicitly (a UTF-8 byte order mark is allowed)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", file=named) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        wide = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        encoding = " (it starts with a UTF-16 byte order mark)" if wide else ""
        raise ConfigError(
            f"{CONFIG_FILE} is not UTF-8{encoding}: byte {data[exc.start]:#04x} at offset "
            f"{exc.start} ({exc.reason}); save it as UTF-8",
            file=named,
            line=line,
        ) from None


def _build(source: Path, path: Path, raw: Mapping[str, Any]) -> Config:
    charts = {
        name: ChartConfig(
            name=name,
            path=spec.get("path", f"charts/{name}"),
            release=spec.get("release", name),
            namespace=spec.get("namespace", name),
            api_versions=spec.get("api_versions", ()),
            environments={
                env: ChartEnvironment(values=env_spec.get("values", ()))
                for env, env_spec in spec.get("environments", {}).items()
            },
        )
        for name, spec in raw.get("charts", {}).items()
    }
    return Config(
        source=source,
        file=path,
        kubernetes_version=raw.get("kubernetes_version", DEFAULT_KUBERNETES_VERSION),
        environments=raw.get("environments", ()),
        charts=charts,
        kubeconform=KubeconformConfig(**raw.get("kubeconform", {})),
        policy=PolicyConfig(**raw.get("policy", {})),
        python=PythonConfig(**raw.get("python", {})),
        image=ImageConfig(**raw.get("image", {})),
        release=ReleaseConfig(**raw.get("release", {})),
        tools={name: ToolConfig(**spec) for name, spec in raw.get("tools", {}).items()},
        discovery=DiscoveryConfig(**raw.get("discovery", {})),
        timeouts=raw.get("timeouts", {}),
        delivery=raw.get("delivery"),
        diff=DiffConfig(**raw.get("diff", {})),
        notify=raw.get("notify", NotifySettings()),
        secrets=SecretsConfig(**raw.get("secrets", {})),
    )
