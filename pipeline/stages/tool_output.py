"""Reading a tool's JSON output defensively: any text gives values or the parser's OutputError.

A tool's stdout is untrusted text: a crash, another version's format or a wrapper that prints
a banner all reach the parsers. `load` turns every way `json.loads` can fail into the
parser's own error, and `Shape` checks each value before it is used, naming where the output
differs ("resources[3].kind is a number, expected a string"), so a parser never lets an
AttributeError, TypeError or KeyError out of a `.get` on a list.

Missing keys and nulls read as the default the parsers always used: tools omit empty fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_SHOWN = 200  # characters of unreadable output quoted in an error


def load(text: str, tool: str, error: type[ValueError]) -> object:
    """`text` as JSON, or `error` saying why it is not."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{tool} printed no JSON ({exc.msg}): {text[:_SHOWN]!r}") from None
    except RecursionError:
        # The decoder recurses per nesting level; its limit is the interpreter's.
        raise error(f"{tool} printed JSON nested too deeply to read: {text[:_SHOWN]!r}") from None
    except ValueError as exc:
        # e.g. an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise error(f"{tool} printed JSON that cannot be read ({exc}): {text[:_SHOWN]!r}") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _writable(text: str) -> str:
    """`text` without lone surrogates: JSON's \\ud800 escapes make them, UTF-8 reports cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


@dataclass(frozen=True)
class Shape:
    """Checks of one tool's JSON values; failures are that tool's `error`, naming the place."""

    tool: str
    error: type[ValueError]

    def mismatch(self, where: str, value: object, expected: str) -> ValueError:
        return self.error(
            f"{self.tool} printed JSON of an unexpected shape: {where} is "
            f"{_json_type(value)}, expected {expected}"
        )

    def mapping(self, value: object, where: str) -> Mapping[str, object]:
        if not isinstance(value, dict):
            raise self.mismatch(where, value, "an object")
        return value

    def items(self, value: object, where: str) -> list[object]:
        """A list; null (or a missing key) is an empty one."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.mismatch(where, value, "a list")
        return value

    def text(self, mapping: Mapping[str, object], key: str, where: str, default: str = "") -> str:
        value = self.optional_text(mapping, key, where)
        return default if value is None else value

    def optional_text(self, mapping: Mapping[str, object], key: str, where: str) -> str | None:
        value = mapping.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.mismatch(f"{where}.{key}", value, "a string")
        return _writable(value)

    def optional_integer(self, mapping: Mapping[str, object], key: str, where: str) -> int | None:
        value = mapping.get(key)
        if value is None:
            return None
        # bool is an int to Python, never to a tool that prints a line number or a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.mismatch(f"{where}.{key}", value, "an integer")
        return value

    def count(self, mapping: Mapping[str, object], key: str, where: str) -> int:
        """A non-negative integer; missing is 0."""
        value = self.optional_integer(mapping, key, where) or 0
        if value < 0:
            raise self.error(
                f"{self.tool} printed JSON of an unexpected shape: {where}.{key} is {value}, "
                "expected a count (0 or more)"
            )
        return value


def under_root(path: str, roots: Sequence[str]) -> str | None:
    """`path` relative to the first of `roots` it is inside (a host or container mount)."""
    for root in roots:
        prefix = root.rstrip("/") + "/"
        if path.startswith(prefix):
            return path.removeprefix(prefix)
    return None
