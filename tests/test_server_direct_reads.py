"""The server answers reads from the actor's state when the actor is idle: same answers.

A read (get_variable, get_variables, has_variable, session_exists, ...) that
arrives while no call waits in the actor's mailbox is answered at once, without
a turn of the actor. These tests pin what that must not change: a read sent
after a write sees it (even pipelined in the same write), errors are the same
errors, and with telemetry or a bounded mailbox reads take the actor's path.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessionactor import (
    RemoteSessionStore,
    SessionNotFound,
    SessionServer,
    SessionStore,
    VariableNotFound,
    connect,
)
from sessionactor._journal import Turn
from sessionactor.testing import capture_telemetry

BOUND = 10.0  # seconds any test here may take


async def _served(store: SessionStore) -> AsyncIterator[RemoteSessionStore]:
    async with (
        SessionServer(store, listen="tcp://127.0.0.1:0") as server,
        connect(server.addresses[0]) as client,
    ):
        yield client


@pytest.fixture(params=[None, 1], ids=["unbounded", "mailbox_size=1"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[RemoteSessionStore]:
    async with SessionStore(mailbox_size=request.param) as store:
        async for connected in _served(store):
            await connected.create_session("s1")
            yield connected


async def test_a_read_pipelined_behind_writes_sees_every_one_of_them(
    client: RemoteSessionStore,
) -> None:
    async with asyncio.timeout(BOUND):
        for name in ("a", "b", "c"):
            await client.register_variable("s1", name, "integer", 0)
        for step in range(1, 51):  # each gather sends its calls in one write
            _, _, seen, values, exists, _ = await asyncio.gather(
                client.update_variable("s1", "a", step),
                client.update_variables("s1", {"b": step, "c": step}),
                client.get_variable("s1", "a"),
                client.get_variables("s1", ["b", "c"]),
                client.has_variable("s1", f"new{step}"),
                client.register_variable("s1", f"new{step}", "integer", step),
            )
            assert (seen.value, seen.version) == (step, step)
            assert [v.value for v in values.found.values()] == [step, step]
            assert exists is False
            assert await client.get_variable_value("s1", f"new{step}") == step


async def test_many_callers_read_their_own_writes(client: RemoteSessionStore) -> None:
    async def writer_reader(index: int) -> None:
        name = f"v{index}"
        await client.register_variable("s1", name, "integer", 0)
        for step in range(1, 21):
            await client.update_variable("s1", name, step)
            assert (await client.get_variable("s1", name)).version == step

    async with asyncio.timeout(BOUND):
        await asyncio.gather(*(writer_reader(i) for i in range(50)))


async def test_reads_raise_the_same_errors(client: RemoteSessionStore) -> None:
    async with asyncio.timeout(BOUND):
        with pytest.raises(VariableNotFound) as missing:
            await client.get_variable("s1", "nope")
        assert (missing.value.session_id, missing.value.identifier) == ("s1", "nope")
        with pytest.raises(SessionNotFound) as gone:
            await client.get_session("nobody")
        assert gone.value.session_id == "nobody"
        assert await client.get_variable_value("s1", "nope", "fallback") == "fallback"
        assert await client.session_exists("nobody") is False
        batch = await client.get_variables("s1", ["nope"])
        assert (dict(batch.found), list(batch.missing)) == ({}, ["nope"])


async def test_with_telemetry_every_read_still_has_its_span() -> None:
    with capture_telemetry() as telemetry:
        async with SessionStore(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        ) as store:
            async for remote in _served(store):
                async with asyncio.timeout(BOUND):
                    await remote.create_session("s1")
                    await remote.register_variable("s1", "x", "float", 0.5)
                    for _ in range(3):
                        await remote.get_variable("s1", "x")
        assert len(telemetry.spans("sessionactor.get_variable")) == 3


async def test_with_a_database_a_read_waits_for_the_commit_of_what_it_would_see(
    tmp_path: Path,
) -> None:
    """An idle mailbox is not enough: a turn may be handled and still wait for its
    commit. A read answered then would show a change a crash could still undo."""
    async with SessionStore(database=tmp_path / "store.sqlite") as store:
        database = store._database
        assert database is not None
        gate = threading.Event()
        commit = database._commit

        def held_commit(turns: list[Turn]) -> None:
            gate.wait(BOUND)
            commit(turns)

        async for client in _served(store):
            async with asyncio.timeout(BOUND):
                await client.create_session("s1")
                await client.register_variable("s1", "x", "integer", 0)
                database._commit = held_commit  # type: ignore[method-assign]
                try:
                    update = asyncio.ensure_future(client.update_variable("s1", "x", 1))
                    await asyncio.sleep(0.1)  # handled, its commit held
                    read = asyncio.ensure_future(client.get_variable_value("s1", "x"))
                    done, _ = await asyncio.wait([read], timeout=0.3)
                    assert not done, "a read answered before the commit of what it saw"
                finally:
                    gate.set()
                assert await read == 1
                assert (await update).version == 1
