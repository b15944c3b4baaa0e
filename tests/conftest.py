"""Shared test helpers. Stable names: ``store``, ``session_id``, ``FakeClock``, ``clock_store``,
``open_store``, ``AnyStore``, ``serve``.

Every store fixture comes in three kinds, so each behaviour test proves its rule
through the wire as well as in-process:

* ``local``: a :class:`SessionStore` in the test's event loop;
* ``unix`` and ``tcp``: the same store (same options, the same ``FakeClock``)
  served by a :class:`SessionServer` in the test's event loop, on a unix socket
  under the test's temporary directory or on a free loopback port, and the
  fixture gives a :class:`RemoteSessionStore` connected to it.

A test that is local by nature (it reads the store's private state, the
``*_nowait`` reads, the store's own spans, custom types, the store's lifecycle)
is marked ``@pytest.mark.local_only`` (or a whole module, with ``pytestmark``):
it gets the ``local`` kind only. A test of what only a connection has (a broken
connection, a slow reader) is marked ``@pytest.mark.remote_only``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from pathlib import Path
from typing import Any, Final, TypeAlias

import pytest
from hypothesis import HealthCheck, settings

from sessionactor import (
    BlockingSessionStore,
    RemoteSessionStore,
    SessionServer,
    SessionStore,
    connect,
)
from sessionactor._codec import Codec, EncodeError
from sessionactor.testing import FakeClock

__all__ = [
    "STORE_KINDS",
    "AnyStore",
    "FakeClock",
    "OpenBlocking",
    "OpenStore",
    "backing",
    "has_wire_form",
    "open_blocking_of",
    "open_store_of",
    "serve",
    "serve_in_thread",
    "server_of",
]

# Locally every run explores new examples. CI replays a fixed set, so a submission
# never fails on an example nobody has seen; the machines are shared, hence no
# deadline and no too-slow check.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

AnyStore: TypeAlias = SessionStore | RemoteSessionStore
"""What a store fixture gives: the same calls, in-process or through the wire."""

OpenStore: TypeAlias = Callable[..., AbstractAsyncContextManager[AnyStore]]
"""``open_store(**options)``: an ``async with`` giving a store of the test's kind."""

OpenBlocking: TypeAlias = Callable[..., AbstractContextManager[BlockingSessionStore]]
"""``open_blocking(**options)``: a ``with`` giving a blocking store of the test's kind."""

STORE_KINDS: Final = ("local", "unix", "tcp")
_PROMPT: Final = 10.0  # seconds: starting or stopping a server takes less, or it hangs
_UNIX_PATH_LIMIT: Final = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_SOCKET_NUMBERS: Final = itertools.count(1)
_SERVED: weakref.WeakKeyDictionary[RemoteSessionStore, SessionStore] = weakref.WeakKeyDictionary()
_SERVERS: weakref.WeakKeyDictionary[RemoteSessionStore, SessionServer] = weakref.WeakKeyDictionary()


def backing(store: AnyStore | BlockingSessionStore) -> SessionStore:
    """The :class:`SessionStore` behind a fixture's store: itself, or the one its server
    serves. For white-box checks (counters, subscriptions) that hold through the wire."""
    inner = store.store if isinstance(store, BlockingSessionStore) else store
    if isinstance(inner, SessionStore):
        return inner
    return _SERVED[inner]


def server_of(store: RemoteSessionStore) -> SessionServer:
    """The :class:`SessionServer` a fixture's remote store is connected to."""
    return _SERVERS[store]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a store fixture once per kind (``local`` only, or the
    remote kinds only, when marked so)."""
    if "store_kind" not in metafunc.fixturenames:
        return
    kinds = list(STORE_KINDS)
    if metafunc.definition.get_closest_marker("local_only") is not None:
        kinds = ["local"]
    elif metafunc.definition.get_closest_marker("remote_only") is not None:
        kinds = [kind for kind in STORE_KINDS if kind != "local"]
    metafunc.parametrize("store_kind", kinds, indirect=True, scope="function")


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """``local``, ``unix`` or ``tcp``: how this test reaches its stores."""
    kind: str = getattr(request, "param", "local")
    return kind


def _listen_address(kind: str, directory: Path | None, cleanup: contextlib.ExitStack) -> str:
    """Where to serve a ``kind`` store: a free loopback port, or a unix socket in
    ``directory`` (a fresh temporary one if None or too deep for a socket path)."""
    if kind == "tcp":
        return "tcp://127.0.0.1:0"
    if kind != "unix":
        raise ValueError(f"not a remote kind of store: {kind!r}")
    path = None if directory is None else directory / f"s{next(_SOCKET_NUMBERS)}.sock"
    if path is None or len(str(path)) > _UNIX_PATH_LIMIT:
        path = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sa-"))) / "s.sock"
    return f"unix:{path}"


@contextlib.asynccontextmanager
async def serve(
    store: SessionStore, kind: str, directory: Path | None = None, **client_options: Any
) -> AsyncIterator[RemoteSessionStore]:
    """A client of ``store``, served in this event loop on a ``kind`` address (``unix`` or
    ``tcp``); the server and the client are closed at the end."""
    with contextlib.ExitStack() as cleanup:
        listen = _listen_address(kind, directory, cleanup)
        async with (
            SessionServer(store, listen=listen) as server,
            connect(server.addresses[0], **client_options) as remote,
        ):
            _SERVED[remote] = store
            _SERVERS[remote] = server
            yield remote


@contextlib.contextmanager
def serve_in_thread(
    blocking: BlockingSessionStore,
    kind: str,
    directory: Path | None = None,
    **server_options: Any,
) -> Iterator[SessionServer]:
    """``blocking``'s store served on a ``kind`` address (with ``server_options``, those of
    :class:`SessionServer`), by a server in the store's own loop thread; closed at the end."""
    loop = blocking.loop
    assert loop is not None and isinstance(blocking.store, SessionStore)
    with contextlib.ExitStack() as cleanup:
        listen = _listen_address(kind, directory, cleanup)
        server = SessionServer(blocking.store, listen=listen, **server_options)
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(_PROMPT)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(_PROMPT)


@contextlib.contextmanager
def open_blocking_of(
    kind: str, directory: Path | None = None, **options: Any
) -> Iterator[BlockingSessionStore]:
    """A :class:`BlockingSessionStore` with ``options`` (those of :class:`SessionStore`),
    reached the ``kind`` way: its own store, or ``BlockingSessionStore.connect`` to a
    store with those options served from another loop thread."""
    with BlockingSessionStore(**options) as local:
        if kind == "local":
            yield local
            return
        with (
            serve_in_thread(local, kind, directory) as server,
            BlockingSessionStore.connect(
                server.addresses[0], call_timeout=options.get("call_timeout", 5.0)
            ) as remote,
        ):
            client, served = remote.store, local.store
            assert isinstance(client, RemoteSessionStore) and isinstance(served, SessionStore)
            _SERVED[client] = served
            yield remote


@contextlib.asynccontextmanager
async def open_store_of(
    kind: str, directory: Path | None = None, **options: Any
) -> AsyncIterator[AnyStore]:
    """A running store with ``options`` (those of :class:`SessionStore`) reached the
    ``kind`` way (a unix socket in ``directory``), also for tests that cannot use
    fixtures (hypothesis tests)."""
    async with SessionStore(**options) as running:
        if kind == "local":
            yield running
        else:
            async with serve(running, kind, directory) as remote:
                yield remote


@pytest.fixture
def open_store(store_kind: str, tmp_path: Path) -> OpenStore:
    """``async with open_store(**options) as store:`` a running store with ``options`` (those
    of :class:`SessionStore`), of this test's kind; stopped at the end of the block."""
    return functools.partial(open_store_of, store_kind, tmp_path)


@pytest.fixture
def open_blocking(store_kind: str, tmp_path: Path) -> OpenBlocking:
    """``with open_blocking(**options) as store:`` a :class:`BlockingSessionStore` of this
    test's kind (``BlockingSessionStore.connect`` for a remote one)."""
    return functools.partial(open_blocking_of, store_kind, tmp_path)


@pytest.fixture
async def store(open_store: OpenStore) -> AsyncIterator[AnyStore]:
    """A running store with default options, stopped after the test."""
    async with open_store() as running:
        yield running


@pytest.fixture
async def session_id(store: AnyStore) -> str:
    """The id of a fresh session in ``store``."""
    await store.create_session("test_session")
    return "test_session"


@pytest.fixture
async def clock_store(open_store: OpenStore) -> AsyncIterator[tuple[AnyStore, FakeClock]]:
    """A running store whose monotonic clock is a :class:`FakeClock`."""
    clock = FakeClock()
    async with open_store(clock=clock) as running:
        yield running, clock


def has_wire_form(value: object) -> bool:
    """Whether ``value`` can travel to a remote store (one that cannot is refused with
    ``InvalidArgument`` when the call is made, before anything is sent)."""
    try:
        Codec().encode(value)
    except EncodeError:
        return False
    return True


class AnyType:
    """A user type that accepts any value and any constraints: what reaches it is
    exactly what copy-in let through."""

    name = "any"

    def validate(self, value: object) -> object:
        return value

    def validate_constraints(self, constraints: Mapping[str, object]) -> None:
        return None

    def check(self, value: object, constraints: Mapping[str, object]) -> None:
        return None

    def to_json(self, value: object) -> object:
        return value

    def from_json(self, data: object) -> object:
        return data


class Gate(AnyType):
    """A user type whose ``validate`` holds the store's loop (a served store's too)
    until the gate opens: a call that is being applied when something else happens.
    ``gate.entered`` is set once a write of ``"block"`` is inside; ``gate.release``
    lets it go (it gives up by itself after ``hold`` seconds, so nothing hangs)."""

    name = "gate"

    def __init__(self, hold: float = 10.0) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._hold = hold

    def validate(self, value: object) -> object:
        if value == "block":
            self.entered.set()
            self.release.wait(self._hold)
        return value
