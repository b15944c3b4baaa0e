"""An abandoned blocking watch cleans up after itself, silently, on any thread.

``BlockingSessionStore.watch_variables(...)`` entered and then dropped without
leaving its ``with`` block (an exception path that lost it, a generator never
finished, a reference cycle) must end its subscription when it is collected,
wherever that happens: the thread that made it, another thread, the store's own
loop thread, or after the store has stopped. And it must do so without a word:
no "Exception ignored" (``sys.unraisablehook``), nothing on stderr, no asyncio
complaint in the log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import backing

from sessionactor import BlockingSessionStore, SessionStore, VariableChange

SID = "s1"
PROMPT = 10.0


class Silence:
    """Everything that would tell of a failure nobody could catch."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        self.unraisable: list[Any] = []
        self.capfd = capfd
        self.caplog = caplog
        monkeypatch.setattr(sys, "unraisablehook", self.unraisable.append)
        caplog.set_level(logging.DEBUG, logger="asyncio")
        caplog.set_level(logging.DEBUG, logger="sessionactor")

    def assert_silent(self) -> None:
        gc.collect()
        assert self.unraisable == [], [(u.exc_type, u.exc_value, u.object) for u in self.unraisable]
        err = self.capfd.readouterr().err
        assert "Exception ignored" not in err and "Traceback" not in err, err
        assert "never awaited" not in err and "destroyed but it is pending" not in err, err
        loud = [r for r in self.caplog.records if r.levelno >= logging.WARNING]
        assert loud == [], [r.getMessage() for r in loud]


@pytest.fixture
def silence(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Silence:
    return Silence(monkeypatch, capfd, caplog)


@pytest.fixture
def blocking() -> Iterator[BlockingSessionStore]:
    with BlockingSessionStore() as running:
        running.create_session(SID)
        running.register_variable(SID, "x", "integer", 0)
        yield running


def watchers(blocking: BlockingSessionStore) -> tuple[int, int]:
    """(the core's count of watches on the session, the store's live watchers of it)."""
    store = backing(blocking)
    return store._state.watched.get(SID, 0), len(store._watchers.get(SID, {}))


def wait_for_watchers(blocking: BlockingSessionStore, expected: tuple[int, int]) -> None:
    """Round trips through the actor until the watch tables show ``expected`` (bounded)."""
    deadline = time.monotonic() + PROMPT
    while watchers(blocking) != expected:
        assert time.monotonic() < deadline, f"watchers stayed at {watchers(blocking)}"
        blocking.get_stats()  # each call is a turn of the loop and of the actor


def abandon(blocking: BlockingSessionStore) -> Any:
    """Enter a watch, take its first event, and return it without leaving it (the
    session must hold a variable: ``next`` waits as long as it takes)."""
    watch = blocking.watch_variables(SID)
    changes = watch.__enter__()
    first: VariableChange = next(changes)
    assert first.kind == "initial"
    return watch


def test_a_watch_abandoned_in_its_own_thread_ends_silently(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    watch = abandon(blocking)
    assert watchers(blocking) == (1, 1)
    del watch
    gc.collect()
    wait_for_watchers(blocking, (0, 0))
    blocking.update_variable(SID, "x", 1)  # nobody to tell: fine
    silence.assert_silent()


def test_a_watch_whose_iterator_is_kept_ends_with_its_context(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    """Only the context manager was dropped: the subscription ends, the kept iterator
    simply ends too (it does not hang)."""
    changes = blocking.watch_variables(SID).__enter__()  # the context dies at once
    gc.collect()
    wait_for_watchers(blocking, (0, 0))
    assert list(changes) == []  # ended, not waiting forever
    silence.assert_silent()


def test_a_watch_collected_on_the_stores_own_loop_thread_ends_silently(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    holder = [abandon(blocking)]
    dropped = threading.Event()

    def drop() -> None:  # runs in the loop thread: the last reference dies there
        holder.clear()
        gc.collect()
        dropped.set()

    loop = blocking.loop
    assert loop is not None
    loop.call_soon_threadsafe(drop)
    assert dropped.wait(PROMPT)
    wait_for_watchers(blocking, (0, 0))
    silence.assert_silent()


def test_a_watch_collected_on_another_thread_ends_silently(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    holder = [abandon(blocking)]

    def drop() -> None:
        holder.clear()
        gc.collect()

    thread = threading.Thread(target=drop)
    thread.start()
    thread.join(PROMPT)
    assert not thread.is_alive()
    wait_for_watchers(blocking, (0, 0))
    silence.assert_silent()


def test_a_watch_in_a_reference_cycle_ends_when_the_cycle_is_collected(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    class Holder:
        watch: Any
        me: Any

    holder = Holder()
    holder.watch = abandon(blocking)
    holder.me = holder
    del holder
    assert watchers(blocking) == (1, 1)
    gc.collect()
    wait_for_watchers(blocking, (0, 0))
    silence.assert_silent()


def test_watches_abandoned_by_many_threads_at_once_all_end(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    ready = threading.Barrier(8)

    def work() -> None:
        for _ in range(10):
            watch = abandon(blocking)
            blocking.update_variable(SID, "x", 1)
            del watch
        ready.wait(PROMPT)
        gc.collect()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROMPT)
        assert not thread.is_alive()
    gc.collect()
    wait_for_watchers(blocking, (0, 0))
    silence.assert_silent()


def test_an_overflowed_watch_abandoned_ends_silently(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    watch = blocking.watch_variables(SID, buffer=1, include_initial=False)
    watch.__enter__()
    for value in range(5):
        blocking.update_variable(SID, "x", value)
    del watch
    gc.collect()
    wait_for_watchers(blocking, (0, 0))
    silence.assert_silent()


def test_a_watch_never_entered_leaves_nothing(
    blocking: BlockingSessionStore, silence: Silence
) -> None:
    watch = blocking.watch_variables(SID)
    del watch
    gc.collect()
    blocking.get_stats()
    assert watchers(blocking) == (0, 0)
    silence.assert_silent()


def test_a_watch_abandoned_after_the_store_stopped_is_silent(silence: Silence) -> None:
    with BlockingSessionStore() as running:
        running.create_session(SID)
        running.register_variable(SID, "x", "integer", 0)
        watch = abandon(running)
    assert not running.running
    del watch
    gc.collect()
    silence.assert_silent()


def test_a_watch_abandoned_just_before_the_store_stops_is_silent(silence: Silence) -> None:
    for _ in range(20):
        with BlockingSessionStore() as running:
            running.create_session(SID)
            running.register_variable(SID, "x", "integer", 0)
            watch = abandon(running)
            del watch
            gc.collect()  # its exit is handed to the loop, which is about to stop
        silence.assert_silent()


async def test_a_watch_of_a_wrapped_store_collected_in_the_loop_ends_silently(
    silence: Silence,
) -> None:
    """The application's own store, wrapped for a worker thread; the watch the worker
    abandoned is collected in the application's loop."""
    async with SessionStore() as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        blocking = BlockingSessionStore.wrap(store)
        holder = await asyncio.to_thread(lambda: [abandon(blocking)])
        assert store._state.watched.get(SID) == 1
        holder.clear()  # the last reference dies in the loop thread
        gc.collect()
        for _ in range(100):
            await store.get_stats()
            if not store._state.watched and not store._watchers:
                break
        assert store._state.watched == {} and store._watchers == {}
    silence.assert_silent()
