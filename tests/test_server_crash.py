"""The server process killed with SIGKILL under load: what one client object sees.

Every call in flight ends with ``ConnectionLost`` within ``PROMPTLY`` seconds,
none hangs; a call while no server listens fails as fast; the same client
object reaches a server restarted at the same address with its next call; and
no call that was in flight is sent again behind the caller's back.

That last point needs a witness that survives the crash. The restarted server
is in memory and starts empty, so the calls in flight are ``create_session``
calls: had the client replayed any of them after reconnecting, the restarted
server would hold that session (and count it in ``sessions_created``).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from server_process import ServerProcesses, serve_args

from sessionactor import ConnectionLost, RemoteSessionStore, connect

PROMPTLY: Final = 2.0  # seconds from the kill to the last ConnectionLost
IN_FLIGHT: Final = 100
RECONNECT_BOUND: Final = 5.0  # the client's backoff is 2 s at most


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerProcesses]:
    with ServerProcesses(tmp_path) as started:
        yield started


def _address(kind: str, tmp_path: Path, servers: ServerProcesses) -> str:
    """A fixed address the restarted server can take again."""
    if kind == "unix":
        return f"unix:{tmp_path / 'store.sock'}"
    probe = servers.start(*serve_args("tcp://127.0.0.1:0"))  # a port nobody else uses now
    address = probe.address
    assert probe.stop() == 0
    return address


@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_kill_9_under_load_then_restart(
    servers: ServerProcesses, tmp_path: Path, kind: str
) -> None:
    address = _address(kind, tmp_path, servers)
    first = servers.start(*serve_args(address))
    client = connect(address, call_timeout=60.0)  # so a hang cannot pass for a CallTimeout
    async with asyncio.timeout(30.0):
        await client.__aenter__()
        try:
            await _crash_and_recover(client, servers, first.pid, address)
        finally:
            await client.aclose()


async def _crash_and_recover(
    client: RemoteSessionStore, servers: ServerProcesses, pid: int, address: str
) -> None:
    await client.create_session("watched")
    await client.register_variable("watched", "x", "integer", 0)
    created = 0
    loaded = asyncio.Event()  # every caller has had calls answered
    ended_at: list[float] = []
    failures: list[BaseException] = []

    async def caller(index: int) -> None:
        nonlocal created
        for step in range(1_000_000):
            try:
                await client.create_session(f"c{index}-{step}")
            except BaseException as error:
                ended_at.append(time.monotonic())
                failures.append(error)
                return
            created += 1
            if created == 10 * IN_FLIGHT:
                loaded.set()

    async with client.watch_variables("watched", include_initial=False) as changes:
        watch_ended = asyncio.create_task(_drain(changes))
        async with client.mirror("watched") as mirror:
            assert mirror["x"].value == 0
            callers = [asyncio.create_task(caller(i)) for i in range(IN_FLIGHT)]
            await loaded.wait()
            killed_at = time.monotonic()
            servers.started[-1].process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*callers), PROMPTLY + 1.0)
            assert len(failures) == IN_FLIGHT
            assert all(isinstance(error, ConnectionLost) for error in failures), failures
            assert max(ended_at) - killed_at < PROMPTLY
            with pytest.raises(ConnectionLost):  # the watch ends, and the mirror says why
                await asyncio.wait_for(watch_ended, PROMPTLY)
            assert mirror.closed and isinstance(mirror.error, ConnectionLost)
            assert len(mirror) == 0  # a stale value is never read as current

    started = time.monotonic()
    with pytest.raises(ConnectionLost):  # no server: the call fails, it does not wait
        await client.list_sessions()
    assert time.monotonic() - started < PROMPTLY

    servers.started[-1].kill()  # reaped; its socket may be left behind (unix): replaced
    restarted = servers.start(*serve_args(address))
    assert restarted.pid != pid
    started = time.monotonic()
    async with asyncio.timeout(RECONNECT_BOUND):
        sessions = await client.list_sessions()  # the same object, reconnected by itself
    assert time.monotonic() - started < RECONNECT_BOUND
    assert sessions == [], "a call that was in flight was sent again after reconnecting"
    await asyncio.sleep(0.5)  # and not a moment later either
    stats = await client.get_stats()
    assert (stats.sessions_created, stats.current_sessions) == (0, 0)
    await client.create_session("after-restart")
    assert await client.list_sessions() == ["after-restart"]


async def _drain(changes: object) -> None:
    async for _ in changes:  # type: ignore[attr-defined]
        pass


async def test_the_witness_sees_a_call_made_twice(servers: ServerProcesses) -> None:
    """What a replayed create_session would leave: the session, and its count."""
    server = servers.start(*serve_args("tcp://127.0.0.1:0"))
    async with asyncio.timeout(10.0), connect(server.address) as store:
        await store.create_session("c0-0")
        assert await store.list_sessions() == ["c0-0"]
        assert (await store.get_stats()).sessions_created == 1
