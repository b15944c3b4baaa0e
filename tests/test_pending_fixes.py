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
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from sessionactor import (
    BlockingSessionStore,
    InvalidArgument,
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


def test_a_call_from_another_loop_in_the_same_thread_is_refused_and_not_applied() -> None:
    """Needs store.py ``SessionStore._call`` (and ``_read_now``): compare the running
    loop, not the thread. Today the check is ``_thread_id() != self._loop_thread``,
    so a second loop in the store's own thread (a pytest-asyncio fixture of another
    loop scope, ``asyncio.run`` after ``loop.run_until_complete``) passes it: the
    command is queued and later applied, and the caller gets asyncio's "attached to a
    different loop". Record the loop at start (``self._running_loop = self._loop``,
    None once stopped) and refuse when ``asyncio._get_running_loop() is not
    self._running_loop`` (a C call, as cheap as ``get_ident``)."""
    store = SessionStore()
    home = asyncio.new_event_loop()

    async def start() -> None:
        await store.__aenter__()
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)

    async def call_from_another_loop() -> BaseException | None:
        try:
            await store.update_variable(SID, "x", 5)
        except BaseException as error:
            return error
        return None

    try:
        home.run_until_complete(asyncio.wait_for(start(), PROMPT))
        error = asyncio.run(asyncio.wait_for(call_from_another_loop(), PROMPT))
        assert queued(store) == [], "the call from another loop was queued"
        assert isinstance(error, RuntimeError)
        assert "BlockingSessionStore" in str(error), error
        value = home.run_until_complete(
            asyncio.wait_for(store.get_variable_value(SID, "x"), PROMPT)
        )
        assert value == 0, "the call from another loop was applied"
    finally:
        home.run_until_complete(store.aclose())
        home.close()


@pytest.mark.parametrize("form", ["watch_variables", "mirror"])
async def test_a_watch_from_another_thread_is_refused_without_touching_the_store(
    form: str,
) -> None:
    """Needs store.py ``SessionStore._subscribe``: check the caller's thread (loop)
    first, before the watcher is added to ``self._watchers``. Today it registers the
    watcher, then ``self._call`` refuses, and the ``except`` calls
    ``_forget_watcher`` from the foreign thread: it changes ``_watchers`` (a dict the
    actor iterates in ``_publish_changes``) and ``put_nowait``s an ``UnwatchSession``
    into the mailbox from that thread (not thread-safe; the loop is not woken)."""
    async with SessionStore() as store:
        await store.create_session(SID)
        outcome: list[BaseException] = []

        async def watch() -> None:
            try:
                if form == "mirror":
                    async with store.mirror(SID):
                        pass
                else:
                    async with store.watch_variables(SID):
                        pass
            except BaseException as error:
                outcome.append(error)

        thread = threading.Thread(target=asyncio.run, args=(watch(),))
        thread.start()
        thread.join(PROMPT)  # holds the store's loop: nothing queued can be handled
        assert not thread.is_alive()
        assert isinstance(outcome[0], RuntimeError)
        assert "BlockingSessionStore" in str(outcome[0])
        assert queued(store) == [], "the refused watch queued an unwatch from the foreign thread"
        assert store._watchers == {}
        with anyio.fail_after(PROMPT):
            await store.get_stats()


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


async def test_a_description_is_measured_like_every_string() -> None:
    """Needs _api.py ``register_variable``: measure ``description`` against
    ``limits.max_string_length`` at the call (``Refused(InvalidArgument(...))``); today
    a description of any length is stored in the variable's metadata."""
    async with SessionStore(limits=SMALL) as store:
        await store.create_session(SID)
        with pytest.raises(InvalidArgument, match="more than 5 characters"):
            await store.register_variable(SID, "x", "integer", 0, description="x" * 6)
        assert not await store.has_variable(SID, "x")


@pytest.mark.parametrize("target", ["session", "variable"])
async def test_merged_metadata_stays_within_the_limits(target: str) -> None:
    """Needs state.py ``_update_session`` and ``_updated``: the merge of the stored
    metadata with a caller's is bounded too. Each call's metadata is measured, but
    merging adds up: calls of ``max_items`` new keys each grow one session's (or
    variable's) metadata without end, and every later merge copies all of it in the
    actor (after 100 such calls, each update copies 10,000,000 entries). Give
    ``StoreState`` the store's ``Limits`` and refuse (``InvalidArgument``, nothing
    changed) a merge whose result holds more than ``max_items`` entries."""
    async with SessionStore(limits=Limits(max_items=10)) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        for round_ in range(2):
            metadata = {f"k{round_}_{i}": i for i in range(5)}
            if target == "session":
                await store.update_session(SID, metadata=metadata)
            else:
                await store.update_variable(SID, "x", round_, metadata)
        with pytest.raises(InvalidArgument):
            if target == "session":
                await store.update_session(SID, metadata={f"k9_{i}": i for i in range(5)})
            else:
                await store.update_variable(SID, "x", 9, {f"k9_{i}": i for i in range(5)})


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
