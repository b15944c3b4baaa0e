"""A call from outside the store's event loop is refused before anything is queued.

The store's actor and its futures belong to one event loop. A coroutine of the
store awaited in another thread's loop (or driven by hand in a plain thread)
must fail at once with an error that points to ``BlockingSessionStore``, and
must not reach the actor: the command is not applied, the mailbox stays empty.

Each test runs the foreign call in a thread while the store's own loop is held
(the test joins the thread without awaiting), so nothing the foreign call might
have queued could be handled before the test looks at the mailbox and the state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

import anyio
import pytest

from sessionactor import BlockingSessionStore, SessionStore
from sessionactor._actor import Actor

SID = "s1"
PROMPT = 10.0

Call = Callable[[SessionStore], Awaitable[object]]

EXPORTED: list[dict[str, object]] = [
    {"id": "var_imported_90", "name": "imported", "type": "integer", "value": 3}
]

# Every kind of call: writes, and reads (which touch the session).
CALLS: dict[str, Call] = {
    "create_session": lambda store: store.create_session("another"),
    "update_session": lambda store: store.update_session(SID, ttl=5, metadata={"k": 1}),
    "delete_session": lambda store: store.delete_session(SID),
    "store_worker_session": lambda store: store.store_worker_session(SID, "w1"),
    "register_variable": lambda store: store.register_variable(SID, "y", "integer", 1),
    "update_variable": lambda store: store.update_variable(SID, "x", 5),
    "update_variables": lambda store: store.update_variables(SID, {"x": 6}, atomic=True),
    "delete_variable": lambda store: store.delete_variable(SID, "x"),
    "import_variables": lambda store: store.import_variables(SID, EXPORTED),
    "start_optimization": lambda store: store.start_optimization(SID, "x", "opt"),
    "store_program": lambda store: store.store_program(SID, "p", {"steps": [1]}),
    "store_global_program": lambda store: store.store_global_program("g", [1, 2]),
    "delete_global_program": lambda store: store.delete_global_program("g0"),
    "get_variable": lambda store: store.get_variable(SID, "x"),
    "list_variables": lambda store: store.list_variables(SID, "*"),
    "export_variables": lambda store: store.export_variables(SID),
    "get_session": lambda store: store.get_session(SID),
    "cleanup_expired_sessions": lambda store: store.cleanup_expired_sessions(),
}


def fingerprint(store: SessionStore) -> tuple[object, ...]:
    """Everything a call could change, read directly on the loop's thread."""
    state = store._state
    record = state._sessions[SID]
    return (
        state.revision,
        state.commands_processed,
        state.cleanup_runs,
        sorted(state._sessions),
        record.last_accessed,
        record.expires_at,
        record.ttl,
        record.metadata,
        record.last_worker_id,
        tuple(record.variables.values()),
        dict(record.programs),
        sorted(state._global_programs),
    )


def mailbox_of(store: SessionStore) -> list[object]:
    actor = store._actor
    assert isinstance(actor, Actor)
    return list(actor.mailbox.items)


@pytest.fixture
async def running() -> AsyncIterator[SessionStore]:
    async with SessionStore() as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        await store.store_global_program("g0", "kept")
        yield store


def run_in_thread(body: Callable[[], None]) -> None:
    """Run ``body`` in a new thread and wait for it *without* letting the loop run."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            body()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(PROMPT)  # blocks the store's loop on purpose
    assert not thread.is_alive(), "the foreign call hung"
    if errors:
        raise errors[0]


def assert_refused(error: BaseException | None, operation: str) -> None:
    assert isinstance(error, RuntimeError), error
    message = str(error)
    assert message.startswith(f"{operation}()"), message
    assert "BlockingSessionStore" in message, message
    assert "nothing was sent" in message, message


@pytest.mark.parametrize("operation", list(CALLS))
async def test_a_call_from_a_thread_running_its_own_loop_is_refused_and_not_applied(
    running: SessionStore, operation: str
) -> None:
    before = fingerprint(running)
    outcome: list[BaseException | None] = []

    def foreign() -> None:
        async def call() -> None:
            try:
                await CALLS[operation](running)
            except BaseException as error:
                outcome.append(error)
            else:
                outcome.append(None)

        asyncio.run(call())

    run_in_thread(foreign)
    assert_refused(outcome[0], operation)
    assert mailbox_of(running) == [], "the refused call was queued"
    assert fingerprint(running) == before
    # Once the loop runs again, still nothing changes (nothing was queued to apply).
    with anyio.fail_after(PROMPT):
        await running.get_stats()
    after = fingerprint(running)
    assert after[0] == before[0] and after[2:] == before[2:]  # [1]: get_stats itself


async def test_a_call_from_an_anyio_loop_in_another_thread_is_refused(
    running: SessionStore,
) -> None:
    before = fingerprint(running)
    outcome: list[BaseException] = []

    def foreign() -> None:
        async def call() -> None:
            with pytest.raises(RuntimeError) as caught:
                await running.update_variable(SID, "x", 42)
            outcome.append(caught.value)

        anyio.run(call)

    run_in_thread(foreign)
    assert_refused(outcome[0], "update_variable")
    assert mailbox_of(running) == []
    assert fingerprint(running) == before


@pytest.mark.parametrize("operation", ["update_variable", "register_variable", "delete_session"])
async def test_a_coroutine_driven_by_hand_in_a_plain_thread_is_refused(
    running: SessionStore, operation: str
) -> None:
    """No loop at all in that thread: the first step of the coroutine already fails."""
    before = fingerprint(running)
    outcome: list[BaseException] = []

    def foreign() -> None:
        coroutine = CALLS[operation](running)
        assert isinstance(coroutine, Coroutine)
        try:
            coroutine.send(None)
        except BaseException as error:
            outcome.append(error)
        finally:
            coroutine.close()

    run_in_thread(foreign)
    assert_refused(outcome[0], operation)
    assert mailbox_of(running) == []
    assert fingerprint(running) == before


async def test_reads_that_skip_the_mailbox_are_refused_in_another_thread(
    running: SessionStore,
) -> None:
    before = fingerprint(running)
    outcome: list[BaseException] = []
    reads: list[Callable[[], object]] = [
        lambda: running.get_variable_nowait(SID, "x"),
        lambda: running.get_variable_value_nowait(SID, "x"),
        lambda: running.get_variables_nowait(SID, ["x"]),
        lambda: running.list_variables_nowait(SID),
    ]

    def foreign() -> None:
        for read in reads:
            with pytest.raises(RuntimeError, match="own event loop") as caught:
                read()
            outcome.append(caught.value)

    run_in_thread(foreign)
    assert len(outcome) == len(reads)
    assert fingerprint(running) == before


async def test_the_advice_works_blocking_session_store_wrap_from_that_thread(
    running: SessionStore,
) -> None:
    blocking = BlockingSessionStore.wrap(running)

    def foreign() -> int:
        return blocking.update_variable(SID, "x", 7).version

    with anyio.fail_after(PROMPT):
        version = await anyio.to_thread.run_sync(foreign)
    assert version == 1
    assert await running.get_variable_value(SID, "x") == 7


async def start_with_x(store: SessionStore) -> None:
    """Start ``store`` in the running loop, with variable ``x`` = 0 in session SID."""
    await store.__aenter__()
    await store.create_session(SID)
    await store.register_variable(SID, "x", "integer", 0)


async def update_x(store: SessionStore, value: int) -> BaseException | None:
    """Update ``x``: the error it raised, or None."""
    try:
        await store.update_variable(SID, "x", value)
    except BaseException as error:
        return error
    return None


def test_a_call_from_another_loop_in_the_same_thread_is_refused_and_not_applied() -> None:
    """A second loop in the store's own thread (a pytest-asyncio fixture of another
    loop scope, ``asyncio.run`` after ``loop.run_until_complete``) is not the store's
    loop either: its call is refused, not queued and later applied."""
    store = SessionStore()
    home = asyncio.new_event_loop()
    try:
        home.run_until_complete(asyncio.wait_for(start_with_x(store), PROMPT))
        error = asyncio.run(asyncio.wait_for(update_x(store, 5), PROMPT))
        assert mailbox_of(store) == [], "the call from another loop was queued"
        assert isinstance(error, RuntimeError)
        assert "BlockingSessionStore" in str(error), error
        value = home.run_until_complete(
            asyncio.wait_for(store.get_variable_value(SID, "x"), PROMPT)
        )
        assert value == 0, "the call from another loop was applied"
    finally:
        home.run_until_complete(store.aclose())
        home.close()


def test_a_store_whose_loop_moves_to_another_thread_serves_there_and_refuses_the_old() -> None:
    """The loop is stopped in one thread and run in another: calls made in the loop,
    now in the new thread, are served (the nowait reads too); a call from the old
    thread, through a loop of its own, is refused and not applied."""
    store = SessionStore()
    home = asyncio.new_event_loop()

    async def in_the_moved_loop() -> tuple[int, object]:
        updated = await store.update_variable(SID, "x", 4)
        return updated.version, store.get_variable_nowait(SID, "x").value

    home.run_until_complete(asyncio.wait_for(start_with_x(store), PROMPT))
    runner = threading.Thread(target=home.run_forever)
    runner.start()
    try:
        moved = asyncio.run_coroutine_threadsafe(in_the_moved_loop(), home).result(PROMPT)
        assert moved == (1, 4)
        error = asyncio.run(asyncio.wait_for(update_x(store, 9), PROMPT))
        assert_refused(error, "update_variable")
        value = asyncio.run_coroutine_threadsafe(store.get_variable_value(SID, "x"), home).result(
            PROMPT
        )
        assert value == 4, "the call from the old thread was applied"
        asyncio.run_coroutine_threadsafe(store.aclose(), home).result(PROMPT)
    finally:
        home.call_soon_threadsafe(home.stop)
        runner.join(PROMPT)
        home.close()


@pytest.mark.parametrize("form", ["watch_variables", "mirror"])
async def test_a_watch_from_another_thread_is_refused_without_touching_the_store(
    form: str,
) -> None:
    """A watch from another thread is refused before anything is registered: the
    refusal must not change the store's watcher table or put an unwatch into the
    mailbox from that thread (neither is thread-safe)."""
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
        assert mailbox_of(store) == [], (
            "the refused watch queued an unwatch from the foreign thread"
        )
        assert store._watchers == {}
        with anyio.fail_after(PROMPT):
            await store.get_stats()
