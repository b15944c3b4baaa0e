"""Watch through the wire: the guarantees of a local watch, pushed by a server.

``tests/test_watch.py`` runs every watch rule on a local store and through unix
and tcp connections. This file covers what only a connection has:

- the pushed events are the very events a local watch gets (the same frozen
  ``VariableChange`` with its ``variable``), in the same order, under writers
  on other connections;
- bounded on both ends: a consumer that falls behind its own buffer gets
  ``WatchOverflow`` (and the server drops its watch), and a client that never
  reads its socket makes the *server's* watch overflow, so what the server
  holds for it stays bounded however much is written;
- a broken connection ends the watch with ``ConnectionLost`` after what had
  arrived, and the next call connects again;
- a session closing under pushed watches leaves the store serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from conftest import AnyStore, backing, serve, server_of

from sessionactor import (
    ConnectionLost,
    RemoteSessionStore,
    SessionStore,
    SessionStoreError,
    Variable,
    VariableChange,
    WatchOverflow,
)
from sessionactor._protocol import (
    ClientConnection,
    ReplyReceived,
    ServerHello,
    WatchEnded,
    WatchEventsReceived,
)
from sessionactor.messages import WatchVariables

SID: Final = "test_session"
PROMPT: Final = 10.0  # seconds: anything slower is a hang
Changes = AsyncIterator[VariableChange]

pytestmark = pytest.mark.remote_only


async def take(changes: Changes, count: int) -> list[VariableChange]:
    with anyio.fail_after(PROMPT):
        return [await anext(changes) for _ in range(count)]


async def drain(changes: Changes) -> list[VariableChange]:
    with anyio.fail_after(PROMPT):
        return [change async for change in changes]


def served_connection(store: AnyStore) -> Any:
    """White-box: the server's side of a remote store's one connection."""
    assert isinstance(store, RemoteSessionStore)
    (connection,) = server_of(store)._connections
    return connection


# -- the same events as a local watch -----------------------------------------------------


async def test_pushed_events_are_a_local_watchs_events_under_writers_elsewhere(
    store: AnyStore, session_id: str
) -> None:
    """Writers on two other connections and on the store itself; a local watch and a
    pushed one see the same events: initial ones first in registration order, then
    every committed change once, in revision order, then session_closed."""
    served = backing(store)
    assert isinstance(store, RemoteSessionStore)
    for name in ("b", "a", "c"):
        await store.register_variable(SID, name, "integer", 0)
    await store.update_variable(SID, "a", 1)

    async with (
        served.watch_variables(SID) as local_changes,
        store.watch_variables(SID) as remote_changes,
        serve(served, "tcp") as second,
        serve(served, "unix") as third,
    ):
        writers: list[AnyStore] = [store, second, third, served]

        async def write(index: int, writer: AnyStore) -> None:
            for step in range(25):
                name = "abc"[(index + step) % 3]
                await writer.update_variable(SID, name, step)
                if step % 10 == 0:
                    await writer.update_variables(SID, {"a": step, "c": -step}, atomic=True)
            with contextlib.suppress(SessionStoreError):
                await writer.register_variable(SID, f"late_{index}", "string", "x")

        with anyio.fail_after(PROMPT):
            await asyncio.gather(*(write(i, writer) for i, writer in enumerate(writers)))
            # one committed failure publishes nothing
            with pytest.raises(SessionStoreError):
                await second.update_variable(SID, "a", "not an integer")
            await served.delete_session(SID)
        local_events = await drain(local_changes)
        remote_events = await drain(remote_changes)

    assert remote_events == local_events
    assert all(type(change) is VariableChange for change in remote_events)
    kinds = [change.kind for change in remote_events]
    assert kinds[:3] == ["initial"] * 3
    assert [change.name for change in remote_events[:3]] == ["b", "a", "c"]
    assert kinds[-1] == "session_closed" and "initial" not in kinds[3:]
    revisions = [change.revision for change in remote_events[3:-1]]
    start = max(change.revision for change in remote_events[:3])
    assert revisions == list(range(start + 1, start + 1 + len(revisions)))  # each once, in order
    for change in remote_events[:-1]:
        assert isinstance(change.variable, Variable)
        assert change.variable.revision == change.revision or change.kind == "deleted"
    assert served.running and await served.list_sessions() == []


async def test_a_session_closing_under_pushed_watches_leaves_the_store_serving(
    store: AnyStore, session_id: str
) -> None:
    """A pushed watch ends inside the store's turn that closes its session; the server
    must not unsubscribe it there (that once stopped the store's actor)."""
    served = backing(store)
    await store.register_variable(SID, "x", "integer", 0)
    async with (
        store.watch_variables(SID) as first,
        served.watch_variables(SID) as local,
        store.watch_variables(SID) as second,
    ):
        await store.delete_session(SID)
        for changes in (first, local, second):
            assert [change.kind for change in await drain(changes)] == [
                "initial",
                "session_closed",
            ]
    await store.create_session(SID)
    assert await served.session_exists(SID)
    assert served.running
    assert served._state.watched == {}


# -- bounded on the client's end -------------------------------------------------------------


async def test_a_consumer_behind_its_buffer_gets_watch_overflow_and_the_server_drops_it(
    store: AnyStore, session_id: str
) -> None:
    served = backing(store)
    assert isinstance(store, RemoteSessionStore)
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, buffer=5, include_initial=False) as changes:
        written = [await served.update_variable(SID, "x", value) for value in range(1, 21)]
        await store.session_exists(SID)  # every change has been pushed ahead of this reply
        received = await take(changes, 5)
        with pytest.raises(WatchOverflow) as caught:
            await anext(changes)
        with pytest.raises(StopAsyncIteration):
            await anext(changes)
        assert [change.new_value for change in received] == [1, 2, 3, 4, 5]
        assert caught.value.last_revision == received[-1].revision == written[4].revision
        # The client told the server: its watch is gone there, inside the block too.
        with anyio.fail_after(PROMPT):
            while served._state.watched:
                await store.session_exists(SID)
        assert server_of(store)._connections and not served_connection(store).watches
    assert (await store.get_variable(SID, "x")).value == 20


# -- bounded on the server's end: a client that never reads ------------------------------------


@contextlib.contextmanager
def raw_client(address: str) -> Iterator[tuple[socket.socket, ClientConnection]]:
    """A client that speaks the protocol through a plain blocking socket with a small
    receive buffer, so that when it stops reading the server soon has to hold back."""
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = address[len("unix:") :]
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        host, port = address[len("tcp://") :].rsplit(":", 1)
        target = (host, int(port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(PROMPT)
    try:
        sock.connect(target)
        yield sock, ClientConnection()
    finally:
        sock.close()


def read_events(sock: socket.socket, connection: ClientConnection, until: type) -> list[Any]:
    """Events read from ``sock`` up to and including the first of type ``until``."""
    events: list[Any] = []
    while not any(isinstance(event, until) for event in events):
        data = sock.recv(1 << 16)
        assert data, "the server closed the connection"
        events.extend(connection.receive_data(data))
    return events


async def test_a_client_that_never_reads_makes_the_servers_watch_overflow_with_memory_bounded(
    store: AnyStore, session_id: str
) -> None:
    """The server holds at most ``buffer`` changes for a watch whose client stopped
    reading (plus what its transport took before it paused): the watch overflows and
    ends, and whatever is written afterwards costs that connection nothing."""
    served = backing(store)
    assert isinstance(store, RemoteSessionStore)
    await store.register_variable(SID, "blob", "string", "")
    address = server_of(store).addresses[0]
    blob = "x" * 65_536  # a change carries it about three times: old, new, variable
    buffer = 16

    with raw_client(address) as (sock, client):
        client.send_call(WatchVariables(SID, None, None, False, buffer))
        sock.sendall(client.data_to_send())
        opened = await anyio.to_thread.run_sync(read_events, sock, client, WatchEventsReceived)
        assert any(isinstance(event, ServerHello) for event in opened)
        assert any(isinstance(event, ReplyReceived) for event in opened)
        (connection,) = [c for c in server_of(store)._connections if c.watches]
        watch_id = next(iter(connection.watches))
        transport = connection.transport
        assert transport is not None

        # The client reads no more. Write far more than any socket buffer holds.
        for _ in range(200):
            await served.update_variable(SID, "blob", blob)
        await asyncio.sleep(0.05)  # the last writes reach the transport
        assert connection.write_paused, "the server never had to hold back"
        assert not connection.watches and served._state.watched == {}  # it overflowed
        assert served._state.counters.watch_overflows == 1
        held = transport.get_write_buffer_size()
        event_bytes = 4 * len(blob)
        assert held <= (1 << 20) + (buffer + 2) * event_bytes, held

        for _ in range(100):  # the ended watch holds nothing more, however much comes
            await served.update_variable(SID, "blob", blob + "y")
        await asyncio.sleep(0.05)
        assert transport.get_write_buffer_size() <= held

        # When the client reads at last: what was held, then the overflow, in order.
        events = await anyio.to_thread.run_sync(read_events, sock, client, WatchEnded)
    changes = [
        change
        for event in opened + events
        if isinstance(event, WatchEventsReceived) and event.watch_id == watch_id
        for change in event.changes
        if isinstance(change, VariableChange)
    ]
    (ended,) = [event for event in events if isinstance(event, WatchEnded)]
    assert isinstance(ended.error, WatchOverflow)
    assert 0 < len(changes) < 200
    revisions = [change.revision for change in changes]
    assert revisions == list(range(revisions[0], revisions[0] + len(revisions)))
    assert ended.error.last_revision == revisions[-1]
    assert served.running and (await store.get_variable(SID, "blob")).value == blob + "y"


# -- a broken connection -------------------------------------------------------------------------


async def test_a_broken_connection_ends_the_watch_with_connection_lost_after_what_arrived(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, include_initial=False) as changes:
        await store.update_variable(SID, "x", 1)
        await store.update_variable(SID, "x", 2)
        served_connection(store).transport.abort()  # reset, no farewell
        assert [change.new_value for change in await take(changes, 2)] == [1, 2]
        with pytest.raises(ConnectionLost):
            await anext(changes)
        with pytest.raises(StopAsyncIteration):
            await anext(changes)
        # The next call connects again; the watch stays ended.
        assert (await store.update_variable(SID, "x", 3)).value == 3
        with pytest.raises(StopAsyncIteration):
            await anext(changes)


async def test_a_server_shutting_down_ends_the_watch_and_a_restarted_one_is_reached(
    tmp_path: Path,
) -> None:
    """The same client object reaches a server restarted at the same address."""
    path = tmp_path / "s.sock"
    async with SessionStore() as served:
        await served.create_session(SID)
        first = await _started_server(served, f"unix:{path}")
        remote = RemoteSessionStore(f"unix:{path}")
        async with remote:
            async with remote.watch_variables(SID) as changes:
                await first.aclose()
                with pytest.raises(ConnectionLost):
                    await drain(changes)
            with pytest.raises(ConnectionLost):
                await remote.session_exists(SID)  # nobody listens
            second = await _started_server(served, f"unix:{path}")
            try:
                with anyio.fail_after(PROMPT):
                    while True:  # connecting again waits a little after a failure
                        with contextlib.suppress(ConnectionLost):
                            assert await remote.session_exists(SID)
                            break
                        await asyncio.sleep(0.01)
            finally:
                await second.aclose()


async def _started_server(store: SessionStore, address: str) -> Any:
    from sessionactor import SessionServer

    server = SessionServer(store, listen=address)
    await server.start()
    return server
