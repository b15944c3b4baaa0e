"""One real server process against hostile peers: it stays up, small, and prompt for others.

A single ``sessionactor serve`` process (handshake timeout 1 s; one on asyncio's
loop, one on uvloop) meets, one after
another: random bytes, a truncated frame, a 1 GiB length prefix, a client that
sends nothing, a client that pipelines 100,000 calls and never reads, a wrong
token, and 2,000 connections at once. After each, the process is alive, its
resident memory is bounded, and a well-behaved client (one that stayed connected
all along, and a new one) is served promptly.

The memory bound: the server starts at about 30 MiB resident, and these tests
see it at 45 MiB at most. What a hostile peer can make it hold is bounded by
design: 64 KiB of handshake, one ``max_frame_bytes`` frame (16 MiB), for a client
that does not read its ``max_calls_in_flight`` (4,096) calls in progress with
their replies plus one read's worth (256 KiB of calls), and a few KiB per
connection. ``RSS_BOUND`` = 128 MiB leaves room for all of that at once, and is
crossed by any of the failures it guards against: a 1 GiB allocation for a
length prefix, or the 100,000 pipelined calls answered without back-pressure
(2 KB replies: 200 MB).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import pytest
from server_process import ServerProcess, ServerProcesses, serve_args

from sessionactor import AuthenticationFailed, RemoteSessionStore, connect
from sessionactor import messages as m
from sessionactor._protocol import ClientConnection

TOKEN: Final = "hostile-peers-token"
RSS_BOUND: Final = 128 * 2**20
# Bounds generous enough for a busy shared machine: what these tests catch is a server
# that stops serving a well-behaved client, or serves it only after a hostile peer is
# gone, not one that is slow. The flood's own 2,000 handshakes, sent by this one
# process, may take more than a second to go out when the machine is loaded.
HANDSHAKE_TIMEOUT: Final = 3.0
PROMPT: Final = 10.0  # seconds within which a well-behaved client gets 20 replies
CLOSED_WITHIN: Final = 5.0  # seconds within which the server closes a hostile connection
FLOOD: Final = 2_000
NEEDED_FILES: Final = FLOOD + 512  # the flood's sockets, in this process and the server's


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def hostile_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NEEDED_FILES:
        pytest.skip(f"the hard limit of open files ({hard}) is below {NEEDED_FILES}")
    if soft != resource.RLIM_INFINITY and soft < NEEDED_FILES:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NEEDED_FILES, hard))  # the server inherits
    directory = tmp_path_factory.mktemp("hostile")
    try:
        with ServerProcesses(directory) as servers:
            options = ["--loop", request.param, "--handshake-timeout", str(HANDSHAKE_TIMEOUT)]
            options += ["--max-connections", str(FLOOD + 100)]
            args = serve_args("tcp://127.0.0.1:0", extra=options)
            yield servers.start(*args, env={"SESSIONACTOR_TOKEN": TOKEN})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def baseline_rss(hostile_server: ServerProcess) -> int:
    return hostile_server.rss_bytes()


@pytest.fixture
async def steady_client(hostile_server: ServerProcess) -> AsyncIterator[RemoteSessionStore]:
    """A well-behaved client, connected before the hostile peer comes and used after it."""
    async with connect(hostile_server.address, token=TOKEN, call_timeout=PROMPT) as store:
        if not await store.session_exists("steady"):
            await store.create_session("steady", ttl=float("inf"))
            await store.register_variable("steady", "x", "float", 0.5)
        yield store


async def _assert_still_serving(
    server: ServerProcess, steady: RemoteSessionStore, baseline_rss: int
) -> None:
    assert server.alive(), server.stderr()
    rss = server.rss_bytes()
    assert rss < RSS_BOUND, (
        f"server RSS {rss / 2**20:.0f} MiB (started at {baseline_rss / 2**20:.0f})"
    )
    started = time.monotonic()
    async with asyncio.timeout(PROMPT):
        for step in range(10):
            assert (await steady.update_variable("steady", "x", step / 10)).value == step / 10
        async with connect(server.address, token=TOKEN) as fresh:
            for _ in range(10):
                assert await fresh.get_variable_value("steady", "x") == 0.9
    assert time.monotonic() - started < PROMPT
    assert "Traceback" not in server.stderr()


async def _open(server: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.address.removeprefix("tcp://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def _closed_by_server(reader: asyncio.StreamReader, within: float = CLOSED_WITHIN) -> bytes:
    """Read until the server closes the connection (bounded); what it sent meanwhile."""
    received = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            received += chunk
    return received


def _handshake(token: str | None = TOKEN) -> bytes:
    return ClientConnection(token=token).data_to_send()


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def test_random_bytes_close_the_connection(
    hostile_server: ServerProcess, steady_client: RemoteSessionStore, baseline_rss: int
) -> None:
    for garbage in (os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff" * 70_000):
        reader, writer = await _open(hostile_server)
        writer.write(garbage)
        await _closed_by_server(reader)
        writer.close()
    reader, writer = await _open(hostile_server)  # after a good handshake, too
    writer.write(_handshake() + _frame(b"\xc1" * 64))  # 0xc1: never used in MessagePack
    answer = await _closed_by_server(reader)
    assert b"ProtocolError" in answer
    writer.close()
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)


async def test_a_truncated_frame_then_close_is_forgotten(
    hostile_server: ServerProcess, steady_client: RemoteSessionStore, baseline_rss: int
) -> None:
    client = ClientConnection(token=TOKEN)
    client.send_call(m.GetVariable("steady", "x"))
    data = client.data_to_send()
    for cut in (2, len(_handshake()) + 3, len(data) - 1):
        _, writer = await _open(hostile_server)
        writer.write(data[:cut])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)


async def test_a_1_gib_length_prefix_is_refused_before_its_body(
    hostile_server: ServerProcess, steady_client: RemoteSessionStore, baseline_rss: int
) -> None:
    one_gib = struct.pack(">I", 2**30)
    for prefix in (b"", _handshake()):  # as the handshake, and as a call after it
        reader, writer = await _open(hostile_server)
        writer.write(prefix + one_gib + b"\x00" * 1000)
        answer = await _closed_by_server(reader)
        assert b"ProtocolError" in answer
        writer.close()
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)


async def test_a_client_that_sends_nothing_is_dropped_after_the_handshake_timeout(
    hostile_server: ServerProcess, steady_client: RemoteSessionStore, baseline_rss: int
) -> None:
    silent = [await _open(hostile_server) for _ in range(20)]
    started = time.monotonic()
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)  # meanwhile
    for reader, writer in silent:
        await _closed_by_server(reader, within=HANDSHAKE_TIMEOUT + CLOSED_WITHIN)
        writer.close()
    waited = time.monotonic() - started
    assert HANDSHAKE_TIMEOUT * 0.9 <= waited < HANDSHAKE_TIMEOUT + CLOSED_WITHIN
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)


async def test_a_client_that_pipelines_100_000_calls_and_never_reads(
    hostile_server: ServerProcess, steady_client: RemoteSessionStore, baseline_rss: int
) -> None:
    """Its calls are read only as fast as their replies leave; others are served meanwhile."""
    await steady_client.register_variable("steady", "page", "string", "p" * 2000)
    client = ClientConnection(token=TOKEN)
    for _ in range(100_000):  # 2 KB replies: 200 MB if the server answered them all at once
        client.send_call(m.GetVariable("steady", "page"))
    data = client.data_to_send()  # 5.9 MB
    loop = asyncio.get_running_loop()
    host, port = hostile_server.address.removeprefix("tcp://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it reads nothing anyway
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, int(port)))
        sending = asyncio.create_task(loop.sock_sendall(sock, data))
        await asyncio.sleep(1.0)
        await _assert_still_serving(hostile_server, steady_client, baseline_rss)
        # The server stopped reading: calls wait unread in its socket's receive queue.
        assert _unread_by_server(int(port), sock.getsockname()[1]) > 0
        sending.cancel()
    finally:
        sock.close()
    await steady_client.delete_variable("steady", "page")
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)


def _unread_by_server(server_port: int, client_port: int) -> int:
    """Bytes the server has not read from the connection to ``client_port`` (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return int(queues.split(":")[1], 16)
    raise AssertionError(f"no connection {server_port} <- {client_port} in /proc/net/tcp")


async def test_a_wrong_token_is_refused(
    hostile_server: ServerProcess, steady_client: RemoteSessionStore, baseline_rss: int
) -> None:
    async with asyncio.timeout(CLOSED_WITHIN):
        for token in ("wrong", TOKEN + "x", TOKEN[:-1], None):
            with pytest.raises(AuthenticationFailed):
                async with connect(hostile_server.address, token=token):
                    pass
    # Calls sent behind a wrong token are never seen, and they do not cost the client
    # the reason: bytes still arriving after the refusal are read and dropped, not
    # answered with a reset that would discard the refusal before the client reads it.
    reader, writer = await _open(hostile_server)
    client = ClientConnection(token="wrong")
    for _ in range(50_000):  # 2.5 MB: more than the server reads before it refuses
        client.send_call(m.DeleteSession("steady"))
    writer.write(client.data_to_send())
    assert b"AuthenticationFailed" in await _closed_by_server(reader)
    writer.close()
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)


async def test_2000_connections_at_once(
    hostile_server: ServerProcess, steady_client: RemoteSessionStore, baseline_rss: int
) -> None:
    clients = [
        connect(hostile_server.address, token=TOKEN, call_timeout=30.0) for _ in range(FLOOD)
    ]
    try:
        async with asyncio.timeout(60.0):
            await asyncio.gather(*(client.__aenter__() for client in clients))
            answers = await asyncio.gather(*(c.session_exists("steady") for c in clients))
            assert answers == [True] * FLOOD
            await _assert_still_serving(hostile_server, steady_client, baseline_rss)  # meanwhile
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    await _assert_still_serving(hostile_server, steady_client, baseline_rss)


async def test_past_max_connections_a_new_connection_is_told_so_and_closed(
    tmp_path: Path,
) -> None:
    with ServerProcesses(tmp_path) as servers:
        server = servers.start(*serve_args("tcp://127.0.0.1:0", extra=["--max-connections", "2"]))
        async with asyncio.timeout(CLOSED_WITHIN):
            async with connect(server.address) as first, connect(server.address) as second:
                await first.list_sessions()
                await second.list_sessions()
                reader, writer = await _open(server)
                writer.write(_handshake(None))
                assert b"limit of connections" in await _closed_by_server(reader)
                writer.close()
                await first.create_session("still-served")
            async with connect(server.address) as third:  # room again
                assert await third.session_exists("still-served")
