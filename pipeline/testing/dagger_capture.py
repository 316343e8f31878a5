"""Run dagger-io code without an engine and check its GraphQL against the engine schema.

dagger-io builds queries lazily and only talks to an engine when a leaf is
awaited. Inside :func:`capture`, that last step goes to a :class:`QueryRecorder`
instead: every query is recorded, validated with graphql-core against the
engine's SDL, and answered with schema-shaped dummy data, so the calling code
keeps running. A field, argument or argument type that the engine would reject
shows up in :meth:`QueryRecorder.errors`, much like httpx's ``MockTransport``
lets client code run unchanged against canned responses.

Everything above the transport is dagger-io's own code: ``Context.execute``,
``resolve_ids`` (the separate ``{ ... { id } }`` queries for object arguments),
the gql DSL builder, gql's session and dagger-io's error mapping. Hooks into
private dagger-io API, so this module is tied to the pinned ``dagger-io==0.21.11``:

* ``SharedConnection()._session``: the singleton that the default ``Context()``
  of ``dagger.dag`` and of every fresh ``dagger.Client()`` uses;
* ``dagger.dag._ctx``: rebound to a ``Context`` on a recording connection,
  for a ``dag`` whose context was bound elsewhere;
* ``Context.build``: dagger-io's DSL builder rejects unknown fields, unknown
  argument names and uncoercible argument values before anything reaches a
  transport; the hook records those queries too, rendered by hand.

These are process-wide patches: one :func:`capture` at a time per process
(nesting works, running captures concurrently in threads does not).

Scripted answers: a test that needs a command's output passes ``stdout``,
``stderr`` and/or ``exit_code`` callables. When a ``Container`` field of that name
is answered, the recorder walks the chain that produced the container back to its
last ``withExec`` and calls the callable with that exec's ``args``; ``None`` (or no
``withExec`` in the container's own chain) keeps the default dummy answer::

    def stdout(args: list[str]) -> str | None:
        return "false\n" if args[1:] == ["rev-parse", "--is-shallow-repository"] else None

    with capture(schema, stdout=stdout) as recorder:
        ...

The chain is followed through ``node(id:)`` (how ``sync()`` reloads a container), so
``await (await ctr.sync()).stdout()`` is scripted like ``await ctr.stdout()``. It
stops at the first object that is not a ``Container``: a container built by
``Directory.dockerBuild`` from a directory of an exec'd container has run nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import dagger
import graphql
from dagger import DaggerError, InvalidQueryError
from dagger.client._core import Context, Field
from dagger.client._session import BaseConnection, ClientSession, SharedConnection
from gql import Client as GraphQLClient
from gql.dsl import ast_from_value
from gql.transport.async_transport import AsyncTransport
from gql.transport.exceptions import TransportQueryError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Iterator

    from gql import GraphQLRequest
    from gql.dsl import DSLSelectable

__all__ = [
    "FAKE_ID_PREFIX",
    "CapturedQuery",
    "ExitCodeAnswer",
    "OutputAnswer",
    "QueryRecorder",
    "UnbuildableQueryError",
    "capture",
    "load_engine_schema",
    "run_offline",
]

T = TypeVar("T")

# Scripted answers get the `args` of the container's last `withExec`; None: the dummy.
OutputAnswer = Callable[[list[str]], str | None]
ExitCodeAnswer = Callable[[list[str]], int | None]

FAKE_ID_PREFIX = "fakeid:"

# Real digests are opaque to callers; a constant keeps published refs parseable.
_FAKE_DIGEST = "sha256:" + "0" * 64

_SCALAR_DUMMIES: dict[str, object] = {
    "String": "",
    "Int": 0,
    "Float": 0.0,
    "Boolean": True,
    "JSON": "{}",
    "Platform": "linux/amd64",
}

_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


@dataclasses.dataclass(frozen=True)
class CapturedQuery:
    """One query as dagger-io sent it (or, if its builder refused it, as rendered by hand).

    ``response`` is the data the recorder answered with; None for a refused query.
    """

    document: str
    variables: dict[str, object] | None
    response: dict[str, Any] | None = None


class UnbuildableQueryError(InvalidQueryError):
    """dagger-io could not build a query; the schema problems are in the message."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclasses.dataclass(frozen=True)
class _Object:
    """An answered object, identified by the chain of fields that produced it.

    ``chain`` is (parent, field name, arguments as text, list index). The type and the
    arguments as values ride along for scripted answers; identity is the chain alone.
    """

    chain: tuple[object, ...]
    type_name: str = dataclasses.field(default="", compare=False)
    arguments: Mapping[str, object] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def parent(self) -> _Object | None:
        parent = self.chain[0]
        return parent if isinstance(parent, _Object) else None

    @property
    def field_name(self) -> object:
        return self.chain[1]


def _last_exec_args(container: _Object) -> list[str] | None:
    """The `args` of the last `withExec` in a container's own chain (None: nothing ran)."""
    current: _Object | None = container
    while current is not None and current.type_name == "Container":
        if current.field_name == "withExec":
            args = current.arguments.get("args")
            return [str(arg) for arg in args] if isinstance(args, list) else None
        current = current.parent
    return None


@dataclasses.dataclass(frozen=True)
class _Entry:
    query: CapturedQuery
    document: graphql.DocumentNode
    problems: tuple[str, ...]


class QueryRecorder:
    """Records, validates and answers the queries of one :func:`capture`.

    Answers follow the schema: a fresh ``"fakeid:<n>"`` for every ``ID``, ``""``
    / ``0`` / ``True`` for other scalars, the first value of an enum, ``[]`` for
    scalar lists and ``object_list_length`` elements for object lists. ``export``
    answers with its ``path`` argument and ``publish`` with its address pinned
    to a dummy digest, since callers tend to use those values. ``stdout``, ``stderr``
    and ``exit_code`` script a ``Container``'s answers from its last ``withExec``
    (see the module docstring).
    """

    def __init__(
        self,
        schema: graphql.GraphQLSchema,
        *,
        object_list_length: int = 1,
        stdout: OutputAnswer | None = None,
        stderr: OutputAnswer | None = None,
        exit_code: ExitCodeAnswer | None = None,
    ) -> None:
        self.schema = schema
        self.queries: list[CapturedQuery] = []
        self._entries: list[_Entry] = []
        self._object_list_length = object_list_length
        self._scripts: dict[str, Callable[[list[str]], object]] = {
            name: script
            for name, script in (("stdout", stdout), ("stderr", stderr), ("exitCode", exit_code))
            if script is not None
        }
        self._ids = itertools.count(1)
        self._ids_by_object: dict[_Object, str] = {}
        self._objects_by_id: dict[str, _Object] = {}

    def errors(self) -> list[str]:
        """Every schema problem of every captured query, each followed by that query."""
        return [
            f"query #{index}: {problem}\n{entry.query.document}"
            for index, entry in enumerate(self._entries)
            for problem in entry.problems
        ]

    def contains_text(self, text: str) -> bool:
        """Whether ``text`` occurs in any captured document, string literal or variable."""
        # String literals are checked unescaped too: print_ast escapes quotes and
        # newlines, which would hide a multi-line secret from a plain text search.
        return any(
            text in entry.query.document
            or any(text in literal for literal in _string_literals(entry.document))
            or _contains_in_value(entry.query.variables, text)
            for entry in self._entries
        )

    def record(
        self,
        document: graphql.DocumentNode,
        variables: Mapping[str, object] | None = None,
        *,
        fallback_problem: str | None = None,
    ) -> list[graphql.GraphQLError]:
        """Record one query and return its validation errors against the schema.

        ``fallback_problem`` is recorded if validation finds nothing, for a query
        known to be broken in a way the schema cannot express.
        """
        text = graphql.print_ast(document)
        # Documents built in memory carry no source locations; re-parsing the sent
        # text gives errors line numbers, which is how a report names the argument.
        document = graphql.parse(text)
        errors = graphql.validate(self.schema, document)
        problems = [_describe(error, text) for error in errors]
        if not problems and fallback_problem is not None:
            problems.append(fallback_problem)
        query = CapturedQuery(text, dict(variables) if variables is not None else None)
        self.queries.append(query)
        self._entries.append(_Entry(query, document, tuple(problems)))
        return list(errors)

    def execute(self, request: GraphQLRequest) -> dict[str, Any]:
        """Record a request and answer it the way an engine would.

        Invalid queries raise ``TransportQueryError`` with GraphQL-formatted errors,
        which dagger-io turns into ``dagger.QueryError`` like an engine rejection.
        """
        index = len(self._entries)
        errors = self.record(request.document, request.variable_values)
        if errors:
            raise TransportQueryError(
                errors[0].message, errors=[error.formatted for error in errors]
            )
        result = graphql.execute_sync(
            self.schema,
            request.document,
            variable_values=request.variable_values,
            field_resolver=self._resolve_field,
            type_resolver=self._resolve_type,
        )
        if result.errors:
            raise TransportQueryError(
                result.errors[0].message, errors=[error.formatted for error in result.errors]
            )
        if result.data is None:
            msg = "fake engine produced no data for a valid query"
            raise TransportQueryError(msg)
        entry = self._entries[index]
        answered = dataclasses.replace(entry.query, response=result.data)
        self._entries[index] = dataclasses.replace(entry, query=answered)
        self.queries[index] = answered
        return result.data

    def _resolve_field(
        self, source: object, info: graphql.GraphQLResolveInfo[Any], /, **args: object
    ) -> object:
        # Positional-only: some schema arguments are called `source`.
        parent = source if isinstance(source, _Object) else None
        script = self._scripts.get(info.field_name)
        if script is not None and parent is not None and info.parent_type.name == "Container":
            exec_args = _last_exec_args(parent)
            answer = script(exec_args) if exec_args is not None else None
            if answer is not None:
                return _checked_answer(info.field_name, exec_args, answer)
        return self._dummy(info.return_type, info.field_name, args, parent, index=None)

    def _dummy(
        self,
        output_type: graphql.GraphQLOutputType,
        field_name: str,
        args: Mapping[str, object],
        parent: _Object | None,
        *,
        index: int | None,
    ) -> object:
        non_null = isinstance(output_type, graphql.GraphQLNonNull)
        type_ = graphql.get_nullable_type(output_type)
        if isinstance(type_, graphql.GraphQLList):
            if graphql.is_composite_type(graphql.get_named_type(type_)):
                return [
                    self._dummy(type_.of_type, field_name, args, parent, index=i)
                    for i in range(self._object_list_length)
                ]
            return []
        if graphql.is_composite_type(type_):
            loaded = self._objects_by_id.get(str(args.get("id"))) if field_name == "node" else None
            return loaded or _Object(
                (parent, field_name, repr(sorted(args.items())), index),
                type_name=graphql.get_named_type(type_).name,
                arguments=dict(args),
            )
        if isinstance(type_, graphql.GraphQLEnumType):
            return next(iter(type_.values.values())).value
        if not isinstance(type_, graphql.GraphQLScalarType):
            msg = f"unexpected output type {type_}"
            raise TypeError(msg)
        if type_.name == "ID":
            return self._id_of(parent)
        return _scalar(type_.name, field_name, args, non_null=non_null)

    def _id_of(self, obj: _Object | None) -> str:
        # Like an engine, the same chain gets the same ID, so `await ctr.id()` and
        # `await (await ctr.sync()).id()` agree and `node(id:)` finds the object again.
        if obj is not None and obj in self._ids_by_object:
            return self._ids_by_object[obj]
        id_ = f"{FAKE_ID_PREFIX}{next(self._ids)}"
        if obj is not None:
            self._ids_by_object[obj] = id_
            self._objects_by_id[id_] = obj
        return id_

    def _resolve_type(
        self,
        _value: object,
        info: graphql.GraphQLResolveInfo[Any],
        abstract_type: graphql.GraphQLAbstractType,
    ) -> str | None:
        # `node(id:)` answers must take the type of dagger-io's inline fragment,
        # otherwise the fragment's fields would be left out of the response.
        possible = {type_.name for type_ in self.schema.get_possible_types(abstract_type)}
        for field_node in info.field_nodes:
            if field_node.selection_set is None:
                continue
            for selection in field_node.selection_set.selections:
                if not isinstance(selection, graphql.InlineFragmentNode):
                    continue
                if selection.type_condition is None:
                    continue
                condition = self.schema.get_type(selection.type_condition.name.value)
                if isinstance(condition, graphql.GraphQLObjectType) and condition.name in possible:
                    return condition.name
                if graphql.is_abstract_type(condition):
                    shared = possible & {
                        type_.name for type_ in self.schema.get_possible_types(condition)
                    }
                    if shared:
                        return min(shared)
        return min(possible) if possible else None


def _checked_answer(field_name: str, exec_args: list[str] | None, answer: object) -> object:
    """A scripted answer of the field's type; anything else names the exec it was for."""
    wanted = int if field_name == "exitCode" else str
    if type(answer) is not wanted:
        msg = (
            f"scripted {field_name} for withExec {exec_args!r} must be "
            f"{wanted.__name__} or None, got {answer!r}"
        )
        raise TypeError(msg)
    return answer


def _scalar(
    type_name: str, field_name: str, args: Mapping[str, object], *, non_null: bool
) -> object:
    if type_name == "Void":
        # dagger-io maps `Void!` to a `Void` str and refuses null for it.
        return "" if non_null else None
    if type_name == "String":
        path = args.get("path")
        if field_name == "export" and isinstance(path, str):
            return path
        address = args.get("address")
        if field_name == "publish" and isinstance(address, str):
            return f"{address.partition('@')[0]}@{_FAKE_DIGEST}"
    return _SCALAR_DUMMIES.get(type_name, "")


def load_engine_schema(path: Path) -> graphql.GraphQLSchema:
    """Build the engine schema from its SDL, once per file version."""
    resolved = Path(path).resolve()
    return _build_schema(resolved, resolved.stat().st_mtime_ns)


@functools.cache
def _build_schema(path: Path, _mtime_ns: int) -> graphql.GraphQLSchema:
    return graphql.build_schema(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def capture(
    schema_path: Path,
    *,
    object_list_length: int = 1,
    stdout: OutputAnswer | None = None,
    stderr: OutputAnswer | None = None,
    exit_code: ExitCodeAnswer | None = None,
) -> Iterator[QueryRecorder]:
    """Send every dagger-io query made inside the block to a new :class:`QueryRecorder`.

    ``stdout``, ``stderr`` and ``exit_code`` script the answers for containers by the
    ``args`` of their last ``withExec``; a callable returning None keeps the dummy.
    """
    recorder = QueryRecorder(
        load_engine_schema(schema_path),
        object_list_length=object_list_length,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
    )
    session = _RecordingSession(recorder)
    shared = SharedConnection()
    saved_session = shared._session
    saved_ctx = dagger.dag._ctx
    saved_build = Context.build
    shared._session = session
    dagger.dag._ctx = Context(conn=_RecordingConnection(session))
    # dagger-io's own builder runs first, so valid queries are sent exactly as built.
    Context.build = _build_or_record  # type: ignore[method-assign]
    try:
        yield recorder
    finally:
        Context.build = saved_build  # type: ignore[method-assign]
        dagger.dag._ctx = saved_ctx
        shared._session = saved_session


async def run_offline(
    schema_path: Path,
    coro_factory: Callable[[], Awaitable[T]],
    *,
    object_list_length: int = 1,
    stdout: OutputAnswer | None = None,
    stderr: OutputAnswer | None = None,
    exit_code: ExitCodeAnswer | None = None,
) -> tuple[T, QueryRecorder]:
    """Await ``coro_factory()`` inside :func:`capture`; return its result and the recorder."""
    with capture(
        schema_path,
        object_list_length=object_list_length,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
    ) as recorder:
        result = await coro_factory()
    return result, recorder


class _NonValidatingClient(GraphQLClient):
    def validate(self, request: GraphQLRequest) -> None:
        """Skip gql's check: the recorder validates after recording, so bad queries are kept."""


class _RecordingTransport(AsyncTransport):
    def __init__(self, recorder: QueryRecorder) -> None:
        self.recorder = recorder

    async def connect(self) -> None:
        """Nothing to open: the recorder answers in process."""

    async def close(self) -> None:
        """Nothing to close."""

    async def execute(self, request: GraphQLRequest) -> graphql.ExecutionResult:
        return graphql.ExecutionResult(data=self.recorder.execute(request))

    def subscribe(self, request: GraphQLRequest) -> AsyncGenerator[graphql.ExecutionResult, None]:
        msg = f"dagger-io does not subscribe; got {graphql.print_ast(request.document)}"
        raise NotImplementedError(msg)


class _RecordingSession(ClientSession):
    def __init__(self, recorder: QueryRecorder) -> None:
        # ClientSession.__init__ would configure HTTP to an engine port; the rest of
        # ClientSession (start, get_schema, execute, close) is reused unchanged.
        self.stack = contextlib.AsyncExitStack()
        self.recorder = recorder
        self.client = _NonValidatingClient(
            schema=recorder.schema,
            transport=_RecordingTransport(recorder),
            execute_timeout=None,
        )
        self._session = None


class _RecordingConnection(BaseConnection):
    def __init__(self, session: _RecordingSession) -> None:
        self.session = session


# Captured at import, so nested captures wrap dagger-io's builder only once.
_dagger_build = Context.build


async def _build_or_record(self: Context) -> DSLSelectable:
    try:
        return await _dagger_build(self)
    except RecursionError:
        # dagger-io's builder recurses once per chained field, so a chain of a few hundred
        # fields (withNewFile per file of a big directory) fails in dagger-io itself, before
        # any engine; it fails here the same way, and rendering it by hand would too.
        raise
    except Exception as exc:
        session = _recording_session(self)
        if session is None:
            raise
        # dagger-io wraps the builder's reason (unknown field, bad value) in a
        # generic message; the underlying one is what names the mistake.
        reason = str(exc.__cause__ or exc)
        document = _render(self.selections, session.recorder.schema)
        errors = session.recorder.record(
            document, fallback_problem=f"dagger-io could not build this query: {reason}"
        )
        text = graphql.print_ast(document)
        problems = [_describe(error, text) for error in errors]
        raise UnbuildableQueryError(problems or [reason]) from exc


def _recording_session(ctx: Context) -> _RecordingSession | None:
    try:
        session = ctx.conn.session
    except DaggerError:
        return None
    return session if isinstance(session, _RecordingSession) else None


def _render(selections: Sequence[Field], schema: graphql.GraphQLSchema) -> graphql.DocumentNode:
    """Render dagger-io selections the way its DSL builder would, minus the checks."""
    root = functools.reduce(lambda child, parent: parent.add_child(child), reversed(selections))
    operation = graphql.OperationDefinitionNode(
        operation=graphql.OperationType.QUERY,
        variable_definitions=(),
        directives=(),
        selection_set=graphql.SelectionSetNode(selections=(_field_node(root, None, schema),)),
    )
    return graphql.DocumentNode(definitions=(operation,))


def _field_node(
    field: Field, alias: str | None, schema: graphql.GraphQLSchema
) -> graphql.FieldNode:
    parent = schema.get_type(field.type_name)
    definition = (
        parent.fields.get(field.name)
        if isinstance(parent, graphql.GraphQLObjectType | graphql.GraphQLInterfaceType)
        else None
    )
    arguments = []
    for name, value in field.args.items():
        argument = definition.args.get(name) if definition is not None else None
        arguments.append(
            graphql.ArgumentNode(
                name=graphql.NameNode(value=name),
                value=_literal(value, argument.type if argument is not None else None),
            )
        )
    children: tuple[graphql.SelectionNode, ...] = tuple(
        _field_node(child, key, schema) for key, child in field.children.items()
    )
    if children and field.inline_type is not None:
        children = (
            graphql.InlineFragmentNode(
                type_condition=graphql.NamedTypeNode(
                    name=graphql.NameNode(value=field.inline_type)
                ),
                directives=(),
                selection_set=graphql.SelectionSetNode(selections=children),
            ),
        )
    return graphql.FieldNode(
        alias=graphql.NameNode(value=alias) if alias is not None else None,
        name=graphql.NameNode(value=field.name),
        arguments=tuple(arguments),
        directives=(),
        selection_set=graphql.SelectionSetNode(selections=children) if children else None,
    )


def _literal(value: object, type_: graphql.GraphQLInputType | None) -> graphql.ValueNode:
    """Typed like gql's DSL where the value fits, as written where it does not.

    Literals as written let graphql-core's validation name the mismatch.
    """
    if type_ is not None:
        with contextlib.suppress(graphql.GraphQLError, TypeError, ValueError):
            node = ast_from_value(value, type_)
            if node is not None:
                return node
    nullable = graphql.get_nullable_type(type_) if type_ is not None else None
    if isinstance(value, Mapping):
        fields = nullable.fields if isinstance(nullable, graphql.GraphQLInputObjectType) else {}
        return graphql.ObjectValueNode(
            fields=tuple(
                graphql.ObjectFieldNode(
                    name=graphql.NameNode(value=str(key)),
                    value=_literal(item, fields[key].type if key in fields else None),
                )
                for key, item in value.items()
            )
        )
    if isinstance(value, Sequence) and not isinstance(value, str):
        item_type = nullable.of_type if isinstance(nullable, graphql.GraphQLList) else None
        return graphql.ListValueNode(values=tuple(_literal(item, item_type) for item in value))
    if (
        isinstance(value, str)
        and isinstance(nullable, graphql.GraphQLEnumType)
        and _GRAPHQL_NAME.fullmatch(value)
    ):
        return graphql.EnumValueNode(value=value)
    return _scalar_literal(value)


def _scalar_literal(value: object) -> graphql.ValueNode:
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    return graphql.StringValueNode(value=str(value))


def _describe(error: graphql.GraphQLError, document: str) -> str:
    """The message plus the offending source line, which names the field or argument."""
    lines = document.splitlines()
    where = [
        f"line {location.line}: {lines[location.line - 1].strip()}"
        for location in error.locations or ()
        if 0 < location.line <= len(lines)
    ]
    return f"{error.message} [{'; '.join(where)}]" if where else error.message


class _StringLiterals(graphql.Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def enter_string_value(self, node: graphql.StringValueNode, *_args: object) -> None:
        self.values.append(node.value)


def _string_literals(document: graphql.DocumentNode) -> list[str]:
    visitor = _StringLiterals()
    graphql.visit(document, visitor)
    return visitor.values


def _contains_in_value(value: object, text: str) -> bool:
    if isinstance(value, str):
        return text in value
    if isinstance(value, Mapping):
        return any(
            _contains_in_value(key, text) or _contains_in_value(item, text)
            for key, item in value.items()
        )
    if isinstance(value, Sequence):
        return any(_contains_in_value(item, text) for item in value)
    return False
