"""One scalar of a Helm values file changed, every other byte of the file kept.

ruamel.yaml's round-trip parser finds the value and where it is written (its node's
marks); the new text replaces exactly those characters. Dumping the round-trip tree
instead would keep comments and key order but not every byte: it re-indents sequences
to one style and folds long lines. The result is read back and compared with the old
document, so an edit that changed anything else is refused rather than written.

A version that YAML would read as something else than a string (`1.20` is the float 1.2,
`010` the octal 8, `1e3` a thousand, `true` a boolean, under YAML 1.1 as Helm reads it or
1.2) is quoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

STRING_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
# What Go's YAML reader (Helm's) takes for a number or a boolean beyond the two resolvers:
# exponents without a dot, and the one-letter booleans of YAML 1.1.
_GO_NUMBER = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_GO_BOOLEAN = frozenset({"y", "Y", "n", "N"})
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


class ValuesFileError(ValueError):
    """The file or the path cannot take the value; the message says why and where (line)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(message if line is None else f"line {line}: {message}")


@dataclass(frozen=True)
class Edit:
    text: str  # the whole file after the edit (the same text when nothing changed)
    before: str | None  # the value that was there (None: the path did not exist)
    changed: bool


def parse_path(dotted: str) -> tuple[str, ...]:
    """`chat.image.tag` -> ("chat", "image", "tag"); segments are plain keys."""
    segments = tuple(dotted.split("."))
    if not all(_KEY_SEGMENT.match(s) for s in segments):
        raise ValuesFileError(f"expected a dotted path of plain keys such as image.tag: {dotted!r}")
    return segments


def needs_quotes(value: str) -> bool:
    """True when a plain `value` would not be read back as this string by YAML 1.1 or 1.2."""
    if not value or value != value.strip() or value[0] in _INDICATORS:
        return True
    if ": " in value or " #" in value or "\n" in value:
        return True
    if value in _GO_BOOLEAN or _GO_NUMBER.match(value):
        return True
    for version in ((1, 1), (1, 2)):
        resolver = VersionedResolver(version=version)
        if str(resolver.resolve(ScalarNode, value, (True, False))) != STRING_TAG:
            return True
    return False


def _double_quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _single_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def scalar_text(value: str, style: str | None = None) -> str:
    """`value` as YAML: in the style it had (quotes kept), else plain when safe."""
    if style == "'":
        return _single_quoted(value)
    if style == '"':
        return _double_quoted(value)
    return _double_quoted(value) if needs_quotes(value) else value


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _compose(text: str) -> Node | None:
    yaml = YAML(typ="rt")
    try:
        yaml.load(text)  # refuses what the round-trip reader refuses: duplicate keys, ...
        node: Node | None = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        raise ValuesFileError(f"invalid YAML: {exc.problem or exc.context}", line) from None
    except YAMLError as exc:
        raise ValuesFileError(f"invalid YAML: {exc}") from None
    return node


def _child(mapping: MappingNode, key: str) -> tuple[ScalarNode, Node] | None:
    for key_node, value_node in mapping.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _last_end(node: Node) -> int:
    """Where the last value written inside `node` ends (a block collection's own end mark
    lies at the next token, past comments that belong to what follows)."""
    while isinstance(node, (MappingNode, SequenceNode)) and node.value and not node.flow_style:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    return int(node.end_mark.index)


def _end_of_line(text: str, index: int) -> int:
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _nested_lines(keys: tuple[str, ...], value: str, indent: int, newline: str) -> str:
    lines = [f"{' ' * (indent + 2 * i)}{key}:" for i, key in enumerate(keys[:-1])]
    lines.append(f"{' ' * (indent + 2 * (len(keys) - 1))}{keys[-1]}: {scalar_text(value)}")
    return newline.join(lines) + newline


def _under_null(
    text: str,
    *,
    key_node: ScalarNode,
    null_node: ScalarNode,
    missing: tuple[str, ...],
    value: str,
    newline: str,
) -> str:
    """`key:` (or `key: ~`) given the missing keys as its mapping, on the lines below it."""
    start, end = int(null_node.start_mark.index), int(null_node.end_mark.index)
    if start == end:  # `key:` and nothing: an empty value is marked at the next token
        line_end = _end_of_line(text, int(key_node.end_mark.index))
        head = text[:line_end]
    else:  # `key: ~  # comment`: the ~ goes, the comment stays
        line_end = _end_of_line(text, end)
        head = text[:start].rstrip(" ") + text[end:line_end]
    if not head.endswith("\n"):
        head += newline
    indent = int(key_node.start_mark.column) + 2
    return head + _nested_lines(missing, value, indent, newline) + text[line_end:]


def _insert(
    text: str, mapping: MappingNode | None, missing: tuple[str, ...], value: str, newline: str
) -> str:
    """The missing keys added as the last entries of `mapping` (the top level when None)."""
    if mapping is None:
        prefix = text if not text or text.endswith("\n") else text + newline
        return prefix + _nested_lines(missing, value, 0, newline)
    if mapping.flow_style:
        raise ValuesFileError(
            "cannot add a key to a flow mapping ({...}); write it in block style", _line(mapping)
        )
    indent = int(mapping.value[0][0].start_mark.column) if mapping.value else 0
    at = _end_of_line(text, _last_end(mapping))
    before = text[:at] if text[:at].endswith("\n") else text[:at] + newline
    return before + _nested_lines(missing, value, indent, newline) + text[at:]


def set_scalar(text: str, path: tuple[str, ...], value: str) -> Edit:
    """`text` with the scalar at `path` set to the string `value`; nothing else changes."""
    root = _compose(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    if root is not None and not (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
        if not isinstance(root, MappingNode):
            raise ValuesFileError("the file is not a mapping of values", _line(root))
        mapping: MappingNode | None = root
    else:
        mapping = None
    for depth, key in enumerate(path):
        found = _child(mapping, key) if mapping is not None else None
        dotted = ".".join(path[: depth + 1])
        if found is None:
            edited = _insert(text, mapping, path[depth:], value, newline)
            return _checked(text, edited, path, value, None)
        key_node, node = found
        last = depth == len(path) - 1
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG and not last:
            edited = _under_null(
                text,
                key_node=key_node,
                null_node=node,
                missing=path[depth + 1 :],
                value=value,
                newline=newline,
            )
            return _checked(text, edited, path, value, None)
        if getattr(node, "anchor", None):
            raise ValuesFileError(
                f"{dotted} carries an anchor (&{node.anchor}) that aliases elsewhere may read; "
                "change it by hand",
                _line(node),
            )
        if last:
            return _replace(text, node, dotted, path, value)
        if not isinstance(node, MappingNode):
            raise ValuesFileError(f"{dotted} is not a mapping, so it cannot hold {path[-1]}")
        mapping = node
    raise AssertionError  # the loop returns at the path's last key


def _replace(text: str, node: Node, dotted: str, path: tuple[str, ...], value: str) -> Edit:
    if not isinstance(node, ScalarNode) or node.style not in {None, "'", '"'}:
        raise ValuesFileError(
            f"{dotted} is not a plain or quoted value (a mapping, list or block text)", _line(node)
        )
    before = str(node.value)
    if before == value and str(node.tag) in {STRING_TAG, "!!str"}:
        return Edit(text, before, changed=False)
    start, end = int(node.start_mark.index), int(node.end_mark.index)
    style = node.style if node.style in {"'", '"'} else None
    edited = text[:start] + scalar_text(value, style) + text[end:]
    return _checked(text, edited, path, value, before)


def _plain(node: Node | None) -> Any:
    """A composed document as plain Python data (strings for every scalar)."""
    if node is None:
        return None
    if isinstance(node, ScalarNode):
        return (str(node.tag), node.value)
    if isinstance(node, MappingNode):
        return {str(k.value): _plain(v) for k, v in node.value}
    return [_plain(item) for item in node.value]


def _checked(
    old_text: str, new_text: str, path: tuple[str, ...], value: str, before: str | None
) -> Edit:
    """The edit, once the new document equals the old one with exactly `path` set."""
    expected = _plain(_compose(old_text))
    if not isinstance(expected, Mapping):
        expected = {}
    expected = _with(expected, path, (STRING_TAG, value))
    try:
        actual = _plain(_compose(new_text))
    except ValuesFileError:
        actual = None
    if actual is None or _resolved(actual) != _resolved(expected):
        raise ValuesFileError(
            f"setting {'.'.join(path)} would change more than that value; nothing was written"
        )
    return Edit(new_text, before, changed=True)


def _with(document: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = dict(document)
    head, rest = path[0], path[1:]
    if not rest:
        copy[head] = value
        return copy
    inner = copy.get(head)
    copy[head] = _with(inner if isinstance(inner, Mapping) else {}, rest, value)
    return copy


def _resolved(document: Any) -> Any:
    """Scalars by what they mean (tag and text), with the implicit string tag spelled out."""
    if isinstance(document, tuple):
        tag, text = document
        return (STRING_TAG if tag in {"!!str", STRING_TAG} else tag, text)
    if isinstance(document, Mapping):
        return {k: _resolved(v) for k, v in document.items()}
    if isinstance(document, list):
        return [_resolved(v) for v in document]
    return document
