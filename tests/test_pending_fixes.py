"""Defects found while hardening whose fix belongs in files being changed elsewhere.

Each test states the behaviour the issue asks for and fails until the change
described in its docstring is made (file, function, what). None is skipped:
they are meant to fail loudly until then.
"""

from __future__ import annotations

import asyncio
import inspect
import pydoc
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from sessionactor import (
    BlockingSessionStore,
    Limits,
    RemoteSessionStore,
    SessionServer,
    SessionStore,
    StoreClosed,
    connect,
)
from sessionactor._actor import Actor

SID = "s1"
PROMPT = 10.0


def queued(store: SessionStore) -> list[str]:
    actor = store._actor
    assert isinstance(actor, Actor)
    return [type(envelope[0]).__name__ for envelope in actor.mailbox._items]


# --------------------------------------------------------------------------
# Item 2: calls from another event loop


# --------------------------------------------------------------------------
# Item 5: what is deleted is freed, tables bounded by what is live


# --------------------------------------------------------------------------
# Item 4: one call cannot occupy the actor (or the loop) for long


SMALL = Limits(max_items=6, max_string_length=5, max_depth=3)


async def longest_pause_during(store: SessionStore, call: Callable[[], Awaitable[object]]) -> float:
    """The longest time other callers waited for an answer while ``call`` ran."""
    longest = 0.0
    done = False

    async def probe() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await store.session_exists(SID)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    prober = asyncio.create_task(probe())
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        with anyio.fail_after(PROMPT):
            await call()
            for _ in range(5):
                await asyncio.sleep(0)
    finally:
        done = True
        await prober
    return longest


async def test_a_remote_client_does_not_refuse_what_the_server_accepts(tmp_path: Path) -> None:
    """Needs client.py (and the handshake in server.py): a ``RemoteSessionStore``
    copies arguments in with ``DEFAULT_LIMITS`` whatever the server's store was given,
    so ``SessionStore(limits=Limits(max_items=200_000))`` served remotely still
    refuses 100,001 items, in the client. Let the server's hello carry its limits and
    the client copy in with them (the server measures again with its own in any case)."""
    address = f"unix:{tmp_path / 'store.sock'}"
    async with SessionStore(limits=Limits(max_items=200_000)) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "e", "embedding", [0.0])
        async with SessionServer(store, listen=address), connect(address) as remote:
            with anyio.fail_after(PROMPT):
                variable = await remote.update_variable(SID, "e", [0.5] * 150_000)
            assert len(variable.value) == 150_000  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Item 10: what a new user tripped on, in the other facades


def test_help_of_remote_session_store_documents_every_option() -> None:
    """Needs client.py ``RemoteSessionStore``: an ``Args:`` section in the class
    docstring (``address``, ``token``, ``ssl``, ``call_timeout``), as ``SessionStore``
    and ``SessionServer`` have; ``connect``'s docstring names only ``token``."""
    text = pydoc.plain(pydoc.render_doc(RemoteSessionStore))
    for name in inspect.signature(RemoteSessionStore).parameters:
        assert re.search(rf"^\s*\|?\s+{name}: \S", text, re.MULTILINE), name


def test_a_blocking_store_never_started_says_how_to_start_it() -> None:
    """Needs blocking.py ``BlockingSessionStore._run_in_loop``: when the wrapper owns
    its loop and was never started, say ``with BlockingSessionStore() as store:`` (or
    ``store.start()``); today it passes on the inner store's advice, ``async with
    SessionStore() as store:``, which is not what a blocking caller can write."""
    blocking = BlockingSessionStore()
    with pytest.raises(StoreClosed) as closed:
        blocking.create_session(SID)
    assert "with BlockingSessionStore(" in str(closed.value), closed.value
    assert "async with" not in str(closed.value)


def test_misusing_a_blocking_watch_says_what_to_write() -> None:
    """Needs blocking.py ``_BlockingWatch``: ``__iter__`` and ``__aenter__`` that raise
    a ``TypeError`` saying ``with store.watch_variables(...) as changes:`` then ``for
    change in changes:`` (today: "'_BlockingWatch' object is not iterable", and "does
    not support the asynchronous context manager protocol"); and
    ``BlockingSessionStore.__aenter__`` saying to use ``with`` (or ``SessionStore`` in
    async code)."""
    with BlockingSessionStore() as blocking:
        blocking.create_session(SID)
        with pytest.raises(TypeError, match=r"with store\.watch_variables\("):
            for _ in blocking.watch_variables(SID):  # type: ignore[attr-defined]
                pass

        async def in_async_code() -> None:
            async with blocking.watch_variables(SID):  # type: ignore[attr-defined]
                pass

        with pytest.raises(TypeError, match=r"with store\.watch_variables|SessionStore"):
            asyncio.run(in_async_code())

        async def store_in_async_code() -> None:
            async with BlockingSessionStore():  # type: ignore[attr-defined]
                pass

        with pytest.raises(TypeError, match="SessionStore"):
            asyncio.run(store_in_async_code())


async def test_misusing_watch_variables_and_mirror_in_other_ways_says_what_to_write() -> None:
    """Needs _watch.py ``WatchContext`` and mirror.py ``MirrorContext``: ``__iter__``
    (a plain ``for``) and ``__await__`` (``await store.watch_variables(...)``) on
    ``WatchContext``, and ``__aiter__``/``__iter__``/``__await__`` on
    ``MirrorContext``, each raising a ``TypeError`` that says what to write, as
    ``WatchContext.__aiter__`` already does. Today: "'WatchContext' object is not
    iterable", "object WatchContext can't be used in 'await' expression", "'async for'
    requires an object with __aiter__ method, got MirrorContext"."""
    async with SessionStore() as store:
        await store.create_session(SID)
        with pytest.raises(TypeError, match=r"async with store\.watch_variables\("):
            for _ in store.watch_variables(SID):  # type: ignore[attr-defined]
                pass
        with pytest.raises(TypeError, match=r"async with store\.watch_variables\("):
            await store.watch_variables(SID)  # type: ignore[misc]
        with pytest.raises(TypeError, match=r"async with store\.mirror\("):
            async for _ in store.mirror(SID):  # type: ignore[attr-defined]
                pass
        with pytest.raises(TypeError, match=r"async with store\.mirror\("):
            await store.mirror(SID)  # type: ignore[misc]
        assert store._watchers == {}


async def test_a_remote_store_used_with_plain_with_says_what_to_write() -> None:
    """Needs client.py ``RemoteSessionStore.__enter__``: a ``TypeError`` saying
    ``async with connect(...) as store:``, as ``SessionStore.__enter__`` does (today:
    "'RemoteSessionStore' object does not support the context manager protocol")."""
    remote = connect("unix:/nonexistent/store.sock")
    with pytest.raises(TypeError, match=r"async with connect\("), remote:  # type: ignore[attr-defined]
        pass
