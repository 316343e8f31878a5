"""The offline Dagger harness: valid chains pass, schema mistakes are caught and named."""

from __future__ import annotations

from pathlib import Path

import dagger
import pytest
from dagger import dag
from dagger.client._core import Arg, Context
from dagger.client._session import SharedConnection

from pipeline.testing import (
    CapturedQuery,
    QueryRecorder,
    UnbuildableQueryError,
    capture,
    load_engine_schema,
    run_offline,
)

SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "dagger" / "schema-v0.21.8.graphqls"

pytestmark = pytest.mark.skipif(
    not SCHEMA.is_file(),
    reason=f"Dagger engine schema not found at {SCHEMA}; it is shared outside the repo",
)

HELM_IMAGE = (
    "alpine/helm:3.16.2@sha256:5c3a2e1a9b7d1f6e8c0b4a2d9e7f3c1b5a8d6e4f2c0b9a7e5d3c1f8e6a4b2c0d"
)
PLAINTEXT = "hunter2-not-for-queries"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def helm_container() -> dagger.Container:
    chart = dag.directory().with_new_file("Chart.yaml", "apiVersion: v2\nname: demo\n")
    return (
        dag.container()
        .from_(HELM_IMAGE)
        .with_mounted_directory("/chart", chart)
        .with_mounted_cache("/root/.cache/helm", dag.cache_volume("helm"))
        .with_secret_variable("REGISTRY_TOKEN", dag.set_secret("registry-token", PLAINTEXT))
        .with_workdir("/chart")
        .with_env_variable("HELM_NAMESPACE", "staging")
        .with_exec(["helm", "template", ".", "--output-dir", "/out"], expect=dagger.ReturnType.ANY)
    )


def documents_with(rec: QueryRecorder, text: str) -> list[str]:
    return [query.document for query in rec.queries if text in query.document]


@pytest.mark.anyio
async def test_container_chain_validates_and_gets_plausible_answers(tmp_path: Path) -> None:
    target = str(tmp_path / "out")
    with capture(SCHEMA) as rec:
        ctr = helm_container()
        assert await ctr.exit_code() == 0
        assert await ctr.stdout() == ""
        assert await ctr.directory("/out").export(target) == target

    assert rec.queries
    assert rec.errors() == []
    assert all(isinstance(query, CapturedQuery) for query in rec.queries)
    (final,) = documents_with(rec, "export(")
    for field in (
        "from(",
        "withMountedDirectory(",
        "withMountedCache(",
        "withSecretVariable(",
        "withWorkdir(",
        "withEnvVariable(",
        "withExec(",
        "expect: ANY",
        HELM_IMAGE,
    ):
        assert field in final
    # Object arguments travel as the IDs the fake engine handed out.
    assert '"fakeid:' in final


@pytest.mark.anyio
async def test_nested_objects_are_resolved_by_their_own_recorded_queries() -> None:
    with capture(SCHEMA) as rec:
        await helm_container().sync()

    assert rec.errors() == []
    for root in ("directory", "cacheVolume", "setSecret"):
        (resolving,) = [q.document for q in rec.queries if q.document.startswith(f"{{\n  {root}")]
        assert "id: id" in resolving
    assert documents_with(rec, 'cacheVolume(key: "helm")')


@pytest.mark.anyio
async def test_lists_of_objects_as_arguments_are_resolved_too(tmp_path: Path) -> None:
    with capture(SCHEMA) as rec:
        arm = dag.container(platform=dagger.Platform("linux/arm64")).from_(HELM_IMAGE)
        amd = dag.container(platform=dagger.Platform("linux/amd64")).from_(HELM_IMAGE)
        await amd.export(str(tmp_path / "image.tar"), platform_variants=[arm])

    assert rec.errors() == []
    (exported,) = documents_with(rec, "export(")
    assert 'platformVariants: ["fakeid:' in exported


@pytest.mark.anyio
async def test_secret_plaintext_is_detectable() -> None:
    with capture(SCHEMA) as rec:
        await helm_container().sync()

    # set_secret sends the plaintext to the engine: the harness must let tests see that.
    assert rec.contains_text(PLAINTEXT)
    assert not rec.contains_text("text that was never sent")


@pytest.mark.anyio
async def test_contains_text_sees_through_graphql_string_escapes() -> None:
    awkward = 'line one\nsay "hi"'
    with capture(SCHEMA) as rec:
        await dag.set_secret("awkward", awkward).id()

    assert awkward not in rec.queries[0].document  # printed as an escaped literal
    assert rec.contains_text(awkward)


@pytest.mark.anyio
async def test_secret_by_reference_keeps_plaintext_out() -> None:
    with capture(SCHEMA) as rec:
        token = dag.secret("env://REGISTRY_TOKEN")
        await dag.container().from_(HELM_IMAGE).with_secret_variable("T", token).sync()

    assert rec.errors() == []
    assert rec.contains_text("env://REGISTRY_TOKEN")
    assert not rec.contains_text(PLAINTEXT)


@pytest.mark.anyio
async def test_misspelled_field_is_reported_by_name() -> None:
    with capture(SCHEMA) as rec:
        ctx = dag.container()._ctx.select("Container", "withExecc", [Arg("args", ["true"])])
        with pytest.raises(UnbuildableQueryError, match="withExecc"):
            await ctx.select("Container", "stdout", []).execute(str)

    (error,) = rec.errors()
    assert "Cannot query field 'withExecc' on type 'Container'" in error
    assert "withExecc(args:" in rec.queries[-1].document


@pytest.mark.anyio
async def test_unknown_argument_is_reported_by_name() -> None:
    with capture(SCHEMA) as rec:
        ctx = dag.container()._ctx.select(
            "Container", "withExec", [Arg("args", ["true"]), Arg("entrypoint", True)]
        )
        with pytest.raises(UnbuildableQueryError):
            await ctx.select("Container", "id", []).execute(str)

    (error,) = rec.errors()
    assert "Unknown argument 'entrypoint' on field 'Container.withExec'" in error


@pytest.mark.anyio
async def test_wrong_argument_type_is_reported_with_the_argument() -> None:
    with capture(SCHEMA) as rec:
        ctx = dag.container()._ctx.select("Container", "withExposedPort", [Arg("port", "eighty")])
        with pytest.raises(UnbuildableQueryError, match="Int cannot represent"):
            await ctx.select("Container", "id", []).execute(str)

    (error,) = rec.errors()
    problem = error.splitlines()[0]
    assert 'Int cannot represent non-integer value: "eighty"' in problem
    # The offending source line is quoted, which names the argument.
    assert 'withExposedPort(port: "eighty")' in problem


@pytest.mark.anyio
async def test_wrong_enum_value_is_reported() -> None:
    with capture(SCHEMA) as rec:
        ctx = dag.container()._ctx.select(
            "Container", "withExec", [Arg("args", ["true"]), Arg("expect", "SOMETIMES")]
        )
        with pytest.raises(UnbuildableQueryError):
            await ctx.select("Container", "exitCode", []).execute(int)

    (error,) = rec.errors()
    assert "SOMETIMES" in error.splitlines()[0]
    assert "ReturnType" in error.splitlines()[0]


@pytest.mark.anyio
async def test_missing_required_argument_is_rejected_like_an_engine_would() -> None:
    # This one builds fine in dagger-io; only the engine (here: the recorder) rejects it.
    with capture(SCHEMA) as rec:
        ctx = dag.container()._ctx.select("Container", "withExec", [])
        with pytest.raises(dagger.QueryError, match=r"withExec\(args:\)"):
            await ctx.select("Container", "stdout", []).execute(str)

    (error,) = rec.errors()
    assert "is required, but it was not provided" in error


@pytest.mark.anyio
async def test_errors_carry_the_query_and_its_position() -> None:
    with capture(SCHEMA) as rec:
        await dag.container().from_(HELM_IMAGE).sync()
        ctx = dag.container()._ctx.select("Container", "withExecc", [Arg("args", ["true"])])
        with pytest.raises(UnbuildableQueryError):
            await ctx.select("Container", "id", []).execute(str)

    (error,) = rec.errors()
    assert error.startswith("query #1: ")
    assert error.endswith(rec.queries[1].document)


@pytest.mark.anyio
async def test_host_directory_works(tmp_path: Path) -> None:
    with capture(SCHEMA) as rec:
        src = dag.host().directory(".", exclude=[".venv"])
        assert await src.entries() == []
        assert await src.glob("**/*.yaml") == []
        ctr = dag.container().from_(HELM_IMAGE).with_directory("/src", src)
        assert await ctr.with_exec(["ls"]).stdout() == ""
        assert await src.export(str(tmp_path)) == str(tmp_path)

    assert rec.errors() == []
    assert documents_with(rec, 'directory(path: ".", exclude: [".venv"])')


@pytest.mark.anyio
async def test_sync_then_node_queries_and_object_lists_validate() -> None:
    with capture(SCHEMA) as rec:
        ctr = dag.container().from_(HELM_IMAGE).with_env_variable("A", "1")
        synced = await ctr.sync()
        assert await synced.stdout() == ""
        (variable,) = await synced.env_variables()
        assert await variable.name() == ""
        # Same chain, same ID (as with an engine); another chain, another ID.
        assert await synced.id() == await ctr.id()
        assert await ctr.id() != await dag.container().from_(HELM_IMAGE).id()

    assert rec.errors() == []
    assert documents_with(rec, "... on Container")
    assert documents_with(rec, "... on EnvVariable")


@pytest.mark.anyio
async def test_object_list_length_is_configurable() -> None:
    with capture(SCHEMA, object_list_length=0) as rec:
        assert await dag.container().env_variables() == []
    assert rec.errors() == []


@pytest.mark.anyio
async def test_a_fresh_client_is_captured_too() -> None:
    with capture(SCHEMA) as rec:
        client = dagger.Client()
        ref = await client.container().from_(HELM_IMAGE).publish("ghcr.io/acme/chart:1.0.0")

    assert ref.startswith("ghcr.io/acme/chart:1.0.0@sha256:")
    assert rec.errors() == []
    assert documents_with(rec, 'publish(address: "ghcr.io/acme/chart:1.0.0")')


@pytest.mark.anyio
async def test_run_offline_returns_result_and_recorder() -> None:
    result, rec = await run_offline(SCHEMA, lambda: helm_container().exit_code())
    assert result == 0
    assert rec.queries
    assert rec.errors() == []


@pytest.mark.anyio
async def test_nested_captures_record_separately() -> None:
    with capture(SCHEMA) as outer:
        await dag.cache_volume("outer").id()
        with capture(SCHEMA) as inner:
            await dag.cache_volume("inner").id()
        await dag.cache_volume("outer-again").id()

    assert [q.document.count("inner") for q in inner.queries] == [1]
    assert len(outer.queries) == 2
    assert not outer.contains_text('"inner"')


def test_global_state_is_restored() -> None:
    shared = SharedConnection()
    session, ctx, build = shared._session, dag._ctx, Context.build
    with capture(SCHEMA):
        assert shared._session is not session
        assert dag._ctx is not ctx
    assert shared._session is session
    assert dag._ctx is ctx
    assert Context.build is build


def test_state_is_restored_when_the_block_raises() -> None:
    ctx = dag._ctx
    with pytest.raises(RuntimeError, match="boom"), capture(SCHEMA):
        raise RuntimeError("boom")
    assert dag._ctx is ctx


def test_schema_is_built_once() -> None:
    schema = load_engine_schema(SCHEMA)
    assert load_engine_schema(SCHEMA) is schema
    assert schema.get_type("Container") is not None
