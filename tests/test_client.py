"""``RemoteSessionStore`` (``connect``): what only a store reached through a connection has.

The behaviour suites run every rule of the store through unix and tcp
connections too (``conftest.py``). This file covers the client itself: the
same call signatures as ``SessionStore``, what is left out on purpose, values
that have no wire form (refused when the call is made, by design), the token,
TLS, pipelining, and what ``ConnectionLost`` and ``CallTimeout`` promise (a
call may or may not have been applied; it is never sent again behind the
caller's back; the next call connects again).
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import math
import os
import shutil
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import pytest
from conftest import AnyStore, Gate, backing, serve_in_thread

from sessionactor import (
    AuthenticationFailed,
    BlockingSessionStore,
    CallTimeout,
    ConnectionLost,
    InvalidArgument,
    Limits,
    ProgramNotFound,
    RemoteSessionStore,
    Session,
    SessionServer,
    SessionStore,
    StoreStats,
    Tensor,
    ValidationError,
    Variable,
    connect,
)
from sessionactor._frozen import FrozenMap

SID: Final = "s1"
PROMPT: Final = 10.0  # seconds: anything slower is a hang


# -- one API --------------------------------------------------------------------------------


def public_calls(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(member) or name in {"watch_variables", "mirror"})
    }


def test_every_store_call_is_a_remote_call_with_the_same_signature() -> None:
    local, remote = public_calls(SessionStore), public_calls(RemoteSessionStore)
    # A remote store is entered with `async with connect(...)`; a served store's database
    # is backed up where the server runs.
    in_process_only = {"run", "backup"}
    assert set(local) - in_process_only == set(remote)
    for name, signature in remote.items():
        assert signature == local[name], name
        if name != "aclose":  # closing a connection is not stopping an actor
            assert getattr(RemoteSessionStore, name).__doc__ == getattr(SessionStore, name).__doc__


def test_what_only_makes_sense_in_process_stays_there() -> None:
    for name in dir(SessionStore):
        if name.endswith("_nowait"):
            assert not hasattr(RemoteSessionStore, name), name
    assert list(inspect.signature(connect).parameters) == [
        "address",
        "token",
        "ssl",
        "call_timeout",
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"address": "http://example.com"},
        {"address": "tcp://127.0.0.1"},
        {"address": 7420},
        {"token": b"secret"},
        {"ssl": True},
        {"call_timeout": 0},
        {"call_timeout": -1.0},
        {"call_timeout": True},
    ],
)
def test_connect_refuses_bad_options_at_once(options: dict[str, Any]) -> None:
    arguments = {"address": "tcp://127.0.0.1:7420", **options}
    with pytest.raises(InvalidArgument):
        connect(**arguments)


# -- the same replies, values that travel and values that do not ------------------------------


@pytest.mark.remote_only
async def test_replies_are_the_same_frozen_snapshots(store: AnyStore) -> None:
    session = await store.create_session(SID, metadata={"tags": ["a", "b"], "n": {"k": 1}})
    assert type(session) is Session
    assert isinstance(session.metadata, FrozenMap)
    assert session.metadata["tags"] == ("a", "b")  # frozen as a local store freezes it
    await store.register_variable(SID, "t", "tensor", {"shape": [2], "data": [1.0, 2.0]})
    variable = await store.get_variable(SID, "t")
    assert type(variable) is Variable and type(variable.value) is Tensor
    assert variable == await backing(store).get_variable(SID, "t")
    assert type(await store.get_stats()) is StoreStats


@pytest.mark.remote_only
async def test_values_with_a_wire_form_come_back_exactly(store: AnyStore) -> None:
    await store.create_session(SID)
    data = {
        "tuple": (1, (2, 3)),
        "list": [1, [2, 3]],
        "bytes": b"\x00\xff",
        "big": 2**100,
        "floats": [math.inf, -0.0],
        "text": "lone \ud800 surrogate",
        "nested": {"k": [{"deep": None}]},
    }
    await store.store_program(SID, "p", data)
    await backing(store).store_program(SID, "local", data)
    assert await store.get_program(SID, "p") == await backing(store).get_program(SID, "local")
    back = await store.get_program(SID, "p")
    assert type(back["tuple"]) is tuple and type(back["list"]) is list
    assert math.copysign(1.0, back["floats"][1]) == -1.0
    await store.register_variable(SID, "e", "embedding", (0.5, 1.5))
    assert (await store.get_variable_value(SID, "e")) == (0.5, 1.5)


@pytest.mark.remote_only
@pytest.mark.parametrize(
    ("call", "argument"),
    [
        pytest.param(lambda s: s.store_program(SID, "p", {"steps": {1, 2}}), "data", id="set"),
        pytest.param(lambda s: s.store_program(SID, "p", object()), "data", id="object"),
        pytest.param(
            lambda s: s.store_global_program("g", [datetime.date(2024, 1, 1)]), "data", id="date"
        ),
        pytest.param(
            lambda s: s.register_variable(SID, "v", "embedding", {1.0, 2.0}),
            "initial_value",
            id="set-value",
        ),
        pytest.param(
            lambda s: s.update_variable(SID, "x", 10**5000), "value", id="int-past-4300-digits"
        ),
        pytest.param(
            lambda s: s.get_variable_value(SID, "nope", default=object()), "default", id="default"
        ),
    ],
)
async def test_a_value_without_a_wire_form_is_refused_when_the_call_is_made(
    store: AnyStore, call: Any, argument: str
) -> None:
    """By design: a local store takes any program data (a private copy) and hands a
    value to its type, but only what has a wire form can reach a remote one. The
    call fails at once, nothing is sent, and the error names the argument."""
    await store.create_session(SID)
    await store.register_variable(SID, "x", "integer", 0)
    before = await backing(store).get_stats()
    with pytest.raises(InvalidArgument) as caught:
        await call(store)
    assert type(caught.value) is InvalidArgument
    assert f"{argument} " in str(caught.value)
    assert "cannot be sent to a remote store" in str(caught.value)
    after = await backing(store).get_stats()
    assert after.commands_processed == before.commands_processed + 1  # just the stats call


@pytest.mark.remote_only
async def test_a_reply_without_a_wire_form_is_the_calls_invalid_argument(
    store: AnyStore,
) -> None:
    """Program data stored in-process may have no wire form: reading it remotely fails
    for that call alone."""
    await store.create_session(SID)
    await backing(store).store_program(SID, "local", {"steps": {1, 2}})
    with pytest.raises(InvalidArgument, match="reply"):
        await store.get_program(SID, "local")
    with pytest.raises(ProgramNotFound):
        await store.get_program(SID, "nope")
    assert await store.session_exists(SID)


# -- the server's limits ------------------------------------------------------------------------


async def test_a_remote_client_does_not_refuse_what_the_server_accepts(tmp_path: Path) -> None:
    """The server's hello carries its store's limits and the client copies arguments in
    with them (the server measures again with its own in any case)."""
    address = f"unix:{tmp_path / 'store.sock'}"
    async with SessionStore(limits=Limits(max_items=200_000)) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "e", "embedding", [0.0])
        async with SessionServer(store, listen=address), connect(address) as remote:
            with anyio.fail_after(PROMPT):
                variable = await remote.update_variable(SID, "e", [0.5] * 150_000)
            assert len(variable.value) == 150_000  # type: ignore[arg-type]


def test_a_connected_blocking_store_copies_in_with_the_servers_limits(tmp_path: Path) -> None:
    with (
        BlockingSessionStore(limits=Limits(max_items=200_000)) as served,
        serve_in_thread(served, "unix", tmp_path) as server,
        BlockingSessionStore.connect(server.addresses[0]) as remote,
    ):
        served.create_session(SID)
        served.register_variable(SID, "e", "embedding", [0.0])
        assert len(remote.update_variable(SID, "e", [0.5] * 150_000).value) == 150_000  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="more than 200000 items"):
            remote.update_variable(SID, "e", [0.5] * 200_001)


# -- one connection, many calls --------------------------------------------------------------


@pytest.mark.remote_only
async def test_one_connection_carries_calls_from_many_tasks_and_keeps_each_tasks_order(
    store: AnyStore,
) -> None:
    await store.create_session(SID)
    await store.register_variable(SID, "x", "integer", 0)
    # Started in this order and sent in it, without waiting for replies: handled in it.
    written = await asyncio.gather(*(store.update_variable(SID, "x", i) for i in range(1, 301)))
    assert [variable.version for variable in written] == list(range(1, 301))
    assert [variable.value for variable in written] == list(range(1, 301))

    async def task(index: int) -> list[int]:
        name = f"t{index}"
        await store.register_variable(SID, name, "integer", 0)
        return [(await store.update_variable(SID, name, step)).version for step in range(20)]

    results = await asyncio.gather(*(task(index) for index in range(50)))
    assert all(versions == list(range(1, 21)) for versions in results)
    assert isinstance(store, RemoteSessionStore) and store.connected


# -- the token, unix socket permissions, TLS ------------------------------------------------------


@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_a_wrong_token_fails_on_entering_or_at_the_first_call(
    kind: str, tmp_path: Path
) -> None:
    listen = "tcp://127.0.0.1:0" if kind == "tcp" else f"unix:{tmp_path / 's.sock'}"
    async with (
        SessionStore() as served,
        SessionServer(served, listen=listen, token="right") as server,
    ):
        address = server.addresses[0]
        with pytest.raises(AuthenticationFailed):
            async with connect(address, token="wrong"):
                pytest.fail("entered with a wrong token")
        unentered = RemoteSessionStore(address)  # no token at all
        try:
            with pytest.raises(AuthenticationFailed):
                await unentered.list_sessions()
        finally:
            await unentered.aclose()
        async with connect(address, token="right") as store:
            assert await store.list_sessions() == []


async def test_the_token_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONACTOR_TOKEN", "from-the-environment")
    async with (
        SessionStore() as served,
        SessionServer(served, listen="tcp://127.0.0.1:0", token="from-the-environment") as server,
        connect(server.addresses[0]) as store,
    ):
        assert await store.create_session(SID)


async def test_a_unix_socket_is_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "store.sock"
    async with SessionStore() as served, SessionServer(served, listen=f"unix:{path}"):
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not path.exists()  # removed when the server stops


async def test_listening_beyond_loopback_requires_a_token() -> None:
    async with SessionStore() as served:
        with pytest.raises(InvalidArgument, match="token"):
            SessionServer(served, listen="tcp://0.0.0.0:0")
        SessionServer(served, listen="tcp://0.0.0.0:0", token="t")  # accepted (not started)


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=PROMPT * 3,
    )
    yield cert, key


async def test_tls_carries_the_same_protocol(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with (
        SessionStore() as served,
        SessionServer(served, listen="tcp://127.0.0.1:0", ssl=server_context, token="t") as server,
    ):
        address = server.addresses[0]
        async with connect(address, ssl=client_context, token="t") as store:
            await store.create_session(SID)
            async with store.watch_variables(SID) as changes:
                await store.register_variable(SID, "x", "integer", 1)
                with anyio.fail_after(PROMPT):
                    change = await anext(changes)
            assert (change.kind, change.new_value) == ("registered", 1)
        with pytest.raises(ConnectionLost):  # a client that does not trust the certificate
            async with connect(address, ssl=ssl.create_default_context(), token="t"):
                pytest.fail("trusted an unknown certificate")


# -- when there is no answer: ConnectionLost and CallTimeout ---------------------------------------


@pytest.fixture
def gated() -> Iterator[tuple[Gate, str]]:
    """A store with the ``gate`` type, served from its own loop thread: its address."""
    gate = Gate(hold=PROMPT)
    with (
        BlockingSessionStore(types=[gate]) as served,
        serve_in_thread(served, "tcp") as server,
    ):
        served.create_session(SID)
        served.register_variable(SID, "g", "gate", "open")
        try:
            yield gate, server.addresses[0]
        finally:
            gate.release.set()


async def test_a_call_whose_connection_breaks_raises_connection_lost_and_is_never_resent(
    gated: tuple[Gate, str],
) -> None:
    gate, address = gated
    async with connect(address) as store:
        call = asyncio.ensure_future(store.update_variable(SID, "g", "block"))
        assert await anyio.to_thread.run_sync(gate.entered.wait, PROMPT)  # being applied
        link = store._link
        assert link is not None and link.transport is not None
        link.transport.abort()  # the connection breaks under the call
        with pytest.raises(ConnectionLost):
            await call
        gate.release.set()  # the server finishes applying it: nobody is told
        variable = await store.get_variable(SID, "g")  # the next call connects again
        assert (variable.value, variable.version) == ("block", 1)  # applied once, not resent


async def test_call_timeout_bounds_a_remote_call_end_to_end(gated: tuple[Gate, str]) -> None:
    gate, address = gated
    async with connect(address, call_timeout=0.2) as store:
        with pytest.raises(CallTimeout) as caught:
            await store.update_variable(SID, "g", "block")
        assert caught.value.operation == "update_variable"
        assert caught.value.timeout == 0.2
        assert isinstance(caught.value, TimeoutError)
        gate.release.set()
        with anyio.fail_after(PROMPT):  # it may still be applied (here it is): never resent
            variable = await store.get_variable(SID, "g")
        assert (variable.value, variable.version) == ("block", 1)


async def test_nothing_listening_is_connection_lost_and_a_later_server_is_reached(
    tmp_path: Path,
) -> None:
    path = tmp_path / "later.sock"
    store = RemoteSessionStore(f"unix:{path}", call_timeout=PROMPT)
    try:
        with pytest.raises(ConnectionLost, match="cannot reach"):
            await store.list_sessions()
        async with SessionStore() as served, SessionServer(served, listen=f"unix:{path}"):
            await served.create_session(SID)
            with anyio.fail_after(PROMPT):
                while True:  # after a failure, connecting again waits a little
                    try:
                        assert await store.list_sessions() == [SID]
                        break
                    except ConnectionLost:
                        await asyncio.sleep(0.02)
    finally:
        await store.aclose()
