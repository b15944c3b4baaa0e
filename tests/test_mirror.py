"""Mirrors (``store.mirror``): a read-only dict of a session's variables, kept current.

Every test runs on a local store and through the wire (unix and tcp), except
what only a connection has (``remote_only``: a broken connection, a slow reader,
an overflow of the server's bounded buffer) and what only a local store has
(``local_only``: the store stopping under it).

The contract:

- a ``Mapping[str, Variable]`` by name (a ``dict`` whose every mutator raises
  ``TypeError``), holding what ``list_variables`` (with the same pattern) lists;
- read-your-writes: a write that a call of the same store object has returned
  is in the mirror when the call returns;
- other writers' changes arrive in revision order;
- an overflow of the watch behind it re-lists the session by itself;
- ``session_closed`` ends it (closed, emptied, no error); a broken connection or
  a stopped store ends it with ``error`` (closed and emptied too).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from typing import Any, Final

import anyio
import pytest
from conftest import AnyStore, backing, server_of

from sessionactor import (
    ConnectionLost,
    InvalidArgument,
    Mirror,
    RemoteSessionStore,
    SessionNotFound,
    SessionStore,
    StoreClosed,
    Variable,
)
from sessionactor import server as server_module

SID: Final = "test_session"
PROMPT: Final = 10.0  # seconds: anything slower is a hang


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait, bounded, for a change that arrives by itself (pushed by the server)."""
    for _ in range(int(PROMPT / 0.001)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(what)


async def listing(store: AnyStore, pattern: str | None = None) -> dict[str, Variable]:
    return {variable.name: variable for variable in await store.list_variables(SID, pattern)}


def served_connection(store: AnyStore) -> Any:
    """White-box: the server's side of a remote store's one connection."""
    assert isinstance(store, RemoteSessionStore)
    (connection,) = server_of(store)._connections
    return connection


# -- what a mirror is ---------------------------------------------------------------------


async def test_a_mirror_is_a_read_only_dict_of_the_sessions_variables_by_name(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "b", "integer", 1)
    await store.register_variable(SID, "a", "float", 0.5, metadata={"unit": "s"})
    async with store.mirror(SID) as mirror:
        assert isinstance(mirror, Mirror) and isinstance(mirror, dict)
        assert mirror == await listing(store)
        assert list(mirror) == ["b", "a"]  # registration order, as listed
        assert mirror["a"].value == 0.5 and mirror["a"].metadata["unit"] == "s"
        assert isinstance(mirror["a"], Variable)
        assert mirror.revision == max(variable.revision for variable in mirror.values())
        assert mirror.session_id == SID and not mirror.closed and mirror.error is None


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda m: m.__setitem__("b", m["a"]), id="setitem"),
        pytest.param(lambda m: m.__delitem__("a"), id="delitem"),
        pytest.param(lambda m: m.update({"b": m["a"]}), id="update"),
        pytest.param(lambda m: m.pop("a"), id="pop"),
        pytest.param(lambda m: m.popitem(), id="popitem"),
        pytest.param(lambda m: m.setdefault("b", m["a"]), id="setdefault"),
        pytest.param(lambda m: m.clear(), id="clear"),
        pytest.param(lambda m: m.__ior__({"b": m["a"]}), id="ior"),
    ],
)
async def test_writing_to_a_mirror_raises_type_error(
    store: AnyStore, session_id: str, write: Callable[[Mirror], object]
) -> None:
    await store.register_variable(SID, "a", "integer", 1)
    async with store.mirror(SID) as mirror:
        with pytest.raises(TypeError, match="read-only"):
            write(mirror)
        assert mirror == await listing(store)


async def test_a_pattern_mirror_holds_what_list_variables_lists_with_it(
    store: AnyStore, session_id: str
) -> None:
    for name in ("temp_cpu", "my_temp_x", "temp_gpu"):
        await store.register_variable(SID, name, "float", 0.0)
    async with store.mirror(SID, pattern="temp_*") as mirror:
        assert mirror == await listing(store, "temp_*")
        assert sorted(mirror) == ["temp_cpu", "temp_gpu"]
        await store.register_variable(SID, "temp_new", "float", 1.0)
        await store.update_variable(SID, "my_temp_x", 2.0)
        await store.delete_variable(SID, "temp_cpu")
        assert sorted(mirror) == ["temp_gpu", "temp_new"]
        assert mirror == await listing(store, "temp_*")


async def test_a_mirror_of_a_missing_session_or_bad_pattern_raises(store: AnyStore) -> None:
    with pytest.raises(SessionNotFound):
        async with store.mirror("nope"):
            pytest.fail("entered a mirror of a missing session")
    await store.create_session(SID)
    with pytest.raises(InvalidArgument):
        async with store.mirror(SID, pattern=5):  # type: ignore[arg-type]
            pytest.fail("entered a mirror with a bad pattern")
    await store.session_exists(SID)  # a round trip: the refusals left nothing to undo
    assert backing(store)._state.watched == {}


async def test_an_async_mirror_refuses_a_plain_with(store: AnyStore, session_id: str) -> None:
    with pytest.raises(TypeError, match="async with"), store.mirror(SID):
        pytest.fail("entered an async mirror with a plain with")


# -- read-your-writes ------------------------------------------------------------------------


async def test_every_write_a_call_returned_is_in_the_mirror_when_it_returns(
    store: AnyStore, session_id: str
) -> None:
    """Fifty tasks write through the same store object, and each checks the mirror
    the moment each of its calls returns: single updates, atomic batches, its own
    registrations and deletions."""
    shared = [f"shared_{i}" for i in range(5)]
    for name in shared:
        await store.register_variable(SID, name, "integer", 0)
    failures: list[str] = []

    async with store.mirror(SID) as mirror:

        def check(variable: Variable, what: str) -> None:
            seen = mirror.get(variable.name)
            if seen is None or seen.version < variable.version:
                failures.append(f"{what}: returned version {variable.version}, mirror {seen}")
            if mirror.revision < variable.revision:
                failures.append(f"{what}: revision {variable.revision} > {mirror.revision}")

        async def writer(index: int) -> None:
            rng = random.Random(index)
            own = f"own_{index}"
            for step in range(20):
                roll = rng.random()
                if roll < 0.5:
                    name = rng.choice(shared)
                    check(await store.update_variable(SID, name, step), f"update {name}")
                elif roll < 0.8:
                    names = rng.sample(shared, 2)
                    batch = await store.update_variables(
                        SID, dict.fromkeys(names, step), atomic=True
                    )
                    for variable in batch.values():
                        assert isinstance(variable, Variable)
                        check(variable, f"batch {names}")
                elif own in mirror:
                    await store.delete_variable(SID, own)
                    if own in mirror:
                        failures.append(f"{own} deleted, still in the mirror")
                else:
                    variable_id = await store.register_variable(SID, own, "integer", step)
                    seen = mirror.get(own)
                    if seen is None or seen.id != variable_id:
                        failures.append(f"{own} registered as {variable_id}, mirror {seen}")

        with anyio.fail_after(PROMPT * 3):
            async with anyio.create_task_group() as writers:
                for index in range(50):
                    writers.start_soon(writer, index)
        assert not failures, failures[:5]
        assert mirror == await listing(store)


async def test_other_writers_changes_arrive_in_revision_order(
    store: AnyStore, session_id: str
) -> None:
    """Another store object writes (the served store itself, for a remote mirror): the
    mirror moves forward only, one committed change after another, to the final state."""
    names = [f"v{i}" for i in range(6)]
    for name in names:
        await store.register_variable(SID, name, "integer", 0)
    other = backing(store)
    observed: list[tuple[int, dict[str, int]]] = []

    async with store.mirror(SID) as mirror:
        done = asyncio.Event()

        async def observe() -> None:
            while not done.is_set():
                observed.append((mirror.revision, {n: v.version for n, v in mirror.items()}))
                await asyncio.sleep(0)

        async def write(index: int) -> None:
            rng = random.Random(index)
            for step in range(30):
                await other.update_variable(SID, rng.choice(names), step)

        with anyio.fail_after(PROMPT * 3):
            observer = asyncio.create_task(observe())
            await asyncio.gather(*(write(index) for index in range(10)))
            last = max(variable.revision for variable in await other.list_variables(SID))
            await until(lambda: mirror.revision == last, "the mirror never caught up")
            done.set()
            await observer
        assert mirror == await listing(store)

    assert len(observed) > 1
    for (revision, versions), (next_revision, next_versions) in itertools.pairwise(observed):
        assert next_revision >= revision
        assert all(next_versions[name] >= versions[name] for name in names)
    assert observed[-1][0] == last
    assert sum(observed[-1][1].values()) == 10 * 30


# -- how a mirror ends -------------------------------------------------------------------------


async def test_session_closed_ends_the_mirror_closed_and_empty(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.mirror(SID) as mirror:
        assert len(mirror) == 1
        await store.delete_session(SID)
        # Through the wire the end is pushed after the reply: it may take a moment.
        await until(lambda: mirror.closed, "the mirror did not end")
        assert len(mirror) == 0 and mirror.error is None
        await store.create_session(SID)  # a new session with the same id: another story
        await store.register_variable(SID, "x", "integer", 5)
        assert mirror.closed and len(mirror) == 0
    await store.session_exists(SID)
    assert backing(store)._state.watched == {}


async def test_leaving_the_block_ends_the_mirror_and_its_watch(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.mirror(SID) as mirror:
        await store.session_exists(SID)
        assert backing(store)._state.watched == {SID: 1}
    assert mirror.closed and len(mirror) == 0 and mirror.error is None
    await store.update_variable(SID, "x", 1)
    assert len(mirror) == 0
    await until(lambda: not backing(store)._state.watched, "the watch was left behind")


@pytest.mark.local_only  # the store itself stops; a remote store's twin is the connection lost
async def test_a_stopping_store_ends_its_mirrors_with_store_closed() -> None:
    store = SessionStore()
    async with store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        mirror_context = store.mirror(SID)
        mirror = await mirror_context.__aenter__()
    assert mirror.closed and len(mirror) == 0
    assert isinstance(mirror.error, StoreClosed)
    await mirror_context.__aexit__(None, None, None)


@pytest.mark.remote_only
async def test_a_broken_connection_ends_the_mirror_with_connection_lost(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.mirror(SID) as mirror:
        assert len(mirror) == 1
        served_connection(store).transport.abort()  # the connection breaks, no farewell
        await until(lambda: mirror.closed, "the mirror did not end")
        assert isinstance(mirror.error, ConnectionLost)
        assert len(mirror) == 0  # a stale value is never read as current
        # The next call connects again; the mirror stays ended.
        assert (await store.update_variable(SID, "x", 1)).version == 1
        assert mirror.closed and len(mirror) == 0


# -- through the wire: a whole listing, a slow reader, an overflow --------------------------


@pytest.mark.remote_only
async def test_a_mirror_holds_the_whole_listing_when_its_block_is_entered(
    store: AnyStore, session_id: str
) -> None:
    """A listing of megabytes arrives in many pieces; the mirror waits for all of it."""
    text = "x" * 20_000
    await asyncio.gather(  # pipelined
        *(store.register_variable(SID, f"v{i}", "string", text) for i in range(300))
    )
    async with store.mirror(SID) as mirror:
        assert len(mirror) == 300
        assert mirror == await listing(store)


@pytest.mark.remote_only
async def test_read_your_writes_holds_while_the_server_waits_for_the_client_to_read(
    store: AnyStore, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops taking watch changes for a client that does not keep up (its
    transport paused writing). A call it had already read is still answered: the
    changes that call made must go out ahead of its reply."""
    await store.register_variable(SID, "x", "integer", 0)
    async with store.mirror(SID) as mirror:
        connection = served_connection(store)
        take_call = connection._take_call

        def take_then_fall_behind(event: object) -> None:
            take_call(event)  # the call is in the mailbox; then the client falls behind
            connection.pause_writing()  # what the transport calls past its high-water mark

        monkeypatch.setattr(connection, "_take_call", take_then_fall_behind)
        for value in range(1, 6):
            written = await store.update_variable(SID, "x", value)
            assert mirror["x"].version == written.version
            assert mirror.revision == written.revision
            connection.resume_writing()
        assert mirror == await listing(store)


@pytest.mark.remote_only
async def test_a_mirror_lists_the_session_again_after_its_watch_overflows(
    store: AnyStore, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server holds a bounded buffer for a watch whose client does not read; past
    it the watch ends with WatchOverflow, and the mirror opens a new watch by itself."""
    monkeypatch.setattr(server_module, "_WATCH_BUFFER_CAP", 4)
    await store.register_variable(SID, "x", "integer", 0)
    await store.register_variable(SID, "y", "integer", 0)
    served = backing(store)
    async with store.mirror(SID) as mirror:
        connection = served_connection(store)
        connection.pause_writing()  # the client does not keep up: changes wait on the server
        for value in range(1, 11):
            await served.update_variable(SID, "x", value)
        await served.update_variable(SID, "y", 1)
        assert served._state.counters.watch_overflows == 1
        connection.resume_writing()
        final = await listing(store)
        await until(lambda: mirror == final, "the mirror did not list the session again")
        assert not mirror.closed and mirror.error is None
        assert mirror.revision == max(variable.revision for variable in final.values())
        # The new watch follows the session as the first did.
        assert (await store.update_variable(SID, "y", 2)).value == mirror["y"].value == 2
        assert served._state.watched == {SID: 1}
