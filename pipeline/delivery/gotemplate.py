"""The part of Go's text/template an ApplicationSet written by `argocd` uses, to expand one.

The checks read the committed ApplicationSet as Argo CD does: each list element through the
template and the templatePatch. Only what we generate is understood (`{{.key}}`, `{{ . }}`
and `{{- range .key }}…{{- end }}`, with `-` trimming); anything else is an error naming
the construct, never a guess at what Argo CD would make of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_ACTION = re.compile(r"\{\{(?P<left>-\s)?\s*(?P<body>.*?)\s*(?P<right>\s-)?\}\}", re.DOTALL)
_FIELD = re.compile(r"^\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)$")
_RANGE = re.compile(r"^range\s+\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)$")


class TemplateError(ValueError):
    """A construct outside the subset, or a key the element does not have."""


@dataclass(frozen=True)
class _Token:
    text: str  # literal text, or the action's body
    action: bool
    trim_left: bool = False
    trim_right: bool = False


def _tokens(template: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    for match in _ACTION.finditer(template):
        tokens.append(_Token(template[position : match.start()], action=False))
        tokens.append(
            _Token(
                match["body"],
                action=True,
                trim_left=match["left"] is not None,
                trim_right=match["right"] is not None,
            )
        )
        position = match.end()
    tokens.append(_Token(template[position:], action=False))
    # `{{-` trims the whitespace before the action, `-}}` the whitespace after it.
    texts = [t.text for t in tokens]
    for index, token in enumerate(tokens):
        if not token.action:
            continue
        if token.trim_left and index > 0:
            texts[index - 1] = texts[index - 1].rstrip()
        if token.trim_right and index + 1 < len(tokens):
            texts[index + 1] = texts[index + 1].lstrip()
    return [
        _Token(text, t.action, t.trim_left, t.trim_right)
        for text, t in zip(texts, tokens, strict=True)
    ]


def render(template: str, params: Mapping[str, object]) -> str:
    """`template` with `params` (one list element) substituted, as goTemplate would."""
    return _render(_tokens(template), params, None)


def _render(tokens: Sequence[_Token], params: Mapping[str, object], dot: object) -> str:
    parts: list[str] = []
    remaining = list(tokens)
    while remaining:
        token = remaining.pop(0)
        if not token.action:
            parts.append(token.text)
            continue
        body = token.text
        if body == ".":
            parts.append(_scalar(dot, "."))
        elif (field := _FIELD.match(body)) is not None:
            parts.append(_scalar(_lookup(params, field["key"]), body))
        elif (loop := _RANGE.match(body)) is not None:
            items = _lookup(params, loop["key"])
            if not isinstance(items, list):
                raise TemplateError(f"{{{{ {body} }}}}: .{loop['key']} is not a list")
            inside, remaining = _range_body(remaining)
            parts.extend(_render(inside, params, item) for item in items)
        elif body == "end":
            raise TemplateError("{{ end }} without a {{ range }}")
        else:
            raise TemplateError(f"{{{{ {body} }}}} is not understood by gitops-pipeline")
    return "".join(parts)


def _range_body(tokens: Sequence[_Token]) -> tuple[list[_Token], list[_Token]]:
    """The tokens up to the `end` that closes a range, and the tokens after it."""
    depth = 0
    for index, token in enumerate(tokens):
        if token.action and _RANGE.match(token.text):
            depth += 1
        elif token.action and token.text == "end":
            if depth == 0:
                return list(tokens[:index]), list(tokens[index + 1 :])
            depth -= 1
    raise TemplateError("{{ range }} without an {{ end }}")


def _lookup(params: Mapping[str, object], key: str) -> object:
    if key not in params:
        # goTemplateOptions missingkey=error: Argo CD refuses to generate the Application.
        raise TemplateError(f"the element has no key {key!r}")
    return params[key]


def _scalar(value: object, what: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{{{{ {what} }}}} is not a string (got {type(value).__name__})")


def render_strings(node: object, params: Mapping[str, object]) -> object:
    """Every string in `node` rendered, as goTemplate renders an Application template's strings.

    Map keys are not templated (Argo CD renders string values only).
    """
    if isinstance(node, str):
        return render(node, params)
    if isinstance(node, list):
        return [render_strings(item, params) for item in node]
    if isinstance(node, dict):
        return {key: render_strings(value, params) for key, value in node.items()}
    return node
