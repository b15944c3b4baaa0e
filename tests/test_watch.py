"""Watch (SPEC §10): ``store.watch_variables`` and its async iterator of VariableChange.

Decisions tested here where SPEC.md is silent (documented in ``_watch.py``):

- ``initial`` events are a snapshot held apart from the buffer; only later
  changes count towards ``buffer``.
- ``identifiers`` and ``pattern`` both narrow: a change must pass each one given.
  An identifier that is a variable id follows that variable; any other is a name
  and also matches a variable registered later under it.
- ``session_closed`` is delivered even to a watcher whose buffer is full.
- An expired session's watchers get ``session_closed`` when the sweep removes it
  (periodic, or ``cleanup_expired_sessions``), or when it is deleted.
- When the store stops, an active watch yields what was buffered, then raises
  ``StoreClosed``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from conftest import AnyStore, FakeClock, OpenBlocking, OpenStore, backing

from sessionactor import (
    AtomicUpdateError,
    InvalidArgument,
    SessionNotFound,
    SessionStore,
    SessionStoreError,
    StoreClosed,
    VariableChange,
    VariableLocked,
    VersionConflict,
    WatchOverflow,
)

SID = "test_session"
Changes = AsyncIterator[VariableChange]


async def take(changes: Changes, count: int) -> list[VariableChange]:
    """The next ``count`` events; fails rather than hangs if they do not come."""
    async with asyncio.timeout(5):
        return [await anext(changes) for _ in range(count)]


async def drain(changes: Changes) -> list[VariableChange]:
    """Every event until the watch ends."""
    async with asyncio.timeout(10):
        return [change async for change in changes]


async def roundtrip(store: AnyStore) -> None:
    """One call through the mailbox: everything sent before it has been handled."""
    await store.session_exists(SID)


def watched(store: AnyStore) -> dict[str, int]:
    # White-box: how many subscriptions the core holds per session (the served store's,
    # through the wire).
    return dict(backing(store)._state.watched)


# -- initial snapshot and order -----------------------------------------------------


async def test_initial_events_come_first_in_registration_order(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "b", "integer", 1)
    await store.register_variable(SID, "a", "float", 0.5)
    await store.update_variable(SID, "b", 2)
    async with store.watch_variables(SID) as changes:
        await store.update_variable(SID, "a", 0.75)
        first, second, third = await take(changes, 3)

    assert [(c.kind, c.name, c.new_value, c.version) for c in (first, second)] == [
        ("initial", "b", 2, 1),
        ("initial", "a", 0.5, 0),
    ]
    b = await store.get_variable(SID, "b")
    assert first.revision == b.revision
    assert first.old_value is None
    assert first.variable_id == b.id
    assert first.session_id == SID
    assert dict(first.metadata) == dict(b.metadata)
    assert (third.kind, third.name, third.old_value, third.new_value) == ("updated", "a", 0.5, 0.75)


async def test_include_initial_false_starts_with_the_next_change(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 1)
    async with store.watch_variables(SID, include_initial=False) as changes:
        await store.update_variable(SID, "x", 2)
        (change,) = await take(changes, 1)
    assert (change.kind, change.new_value) == ("updated", 2)


async def test_registered_updated_deleted_events_carry_the_facts(
    store: AnyStore, session_id: str
) -> None:
    async with store.watch_variables(SID) as changes:
        variable_id = await store.register_variable(SID, "x", "integer", 1)
        updated = await store.update_variable(SID, "x", 5, {"source": "tuner"})
        await store.delete_variable(SID, "x")
        registered, update, deleted = await take(changes, 3)

    assert registered.kind == "registered"
    assert (registered.variable_id, registered.name) == (variable_id, "x")
    assert (registered.old_value, registered.new_value, registered.version) == (None, 1, 0)

    assert update.kind == "updated"
    assert (update.old_value, update.new_value, update.version) == (1, 5, 1)
    assert update.revision == updated.revision == registered.revision + 1
    assert update.metadata["source"] == "tuner"

    assert deleted.kind == "deleted"
    assert (deleted.variable_id, deleted.old_value, deleted.new_value) == (variable_id, 5, None)
    assert deleted.revision == update.revision + 1


async def test_import_is_seen_as_registered_events(store: AnyStore, session_id: str) -> None:
    await store.create_session("other")
    await store.register_variable("other", "p", "integer", 7)
    await store.register_variable("other", "q", "string", "hi")
    exported = await store.export_variables("other")
    async with store.watch_variables(SID) as changes:
        assert await store.import_variables(SID, exported) == 2
        p, q = await take(changes, 2)
    assert [(c.kind, c.name, c.new_value) for c in (p, q)] == [
        ("registered", "p", 7),
        ("registered", "q", "hi"),
    ]
    assert q.revision == p.revision + 1


async def test_atomic_batch_events_take_consecutive_revisions(
    store: AnyStore, session_id: str
) -> None:
    for name in ("a", "b", "c"):
        await store.register_variable(SID, name, "integer", 0)
    async with store.watch_variables(SID, include_initial=False) as changes:
        result = await store.update_variables(SID, {"c": 3, "a": 1, "b": 2}, atomic=True)
        events = await take(changes, 3)
    assert [(c.name, c.new_value) for c in events] == [("c", 3), ("a", 1), ("b", 2)]
    start = events[0].revision
    assert [c.revision for c in events] == [start, start + 1, start + 2]
    assert [v.revision for v in result.values() if not isinstance(v, SessionStoreError)] == [
        c.revision for c in events
    ]


async def test_failed_calls_publish_nothing(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 1, constraints={"max": 10})
    await store.register_variable(SID, "y", "integer", 1)
    async with store.watch_variables(SID, include_initial=False) as changes:
        with pytest.raises(SessionStoreError):
            await store.update_variable(SID, "x", 99)
        with pytest.raises(VersionConflict):
            await store.update_variable(SID, "x", 2, expected_version=7)
        with pytest.raises(AtomicUpdateError):
            await store.update_variables(SID, {"x": 2, "y": 99.5}, atomic=True)
        await store.start_optimization(SID, "y", "opt")
        with pytest.raises(VariableLocked):
            await store.update_variable(SID, "y", 3)
        await store.end_optimization(SID, "y", "opt")
        with pytest.raises(SessionStoreError):
            await store.register_variable(SID, "x", "integer", 1)  # taken name
        await store.update_variable(SID, "y", 4)  # the first change that commits
        (change,) = await take(changes, 1)
    assert (change.kind, change.name, change.new_value) == ("updated", "y", 4)


@pytest.mark.local_only  # through the wire a turn's events go ahead of its replies (mirrors)
async def test_an_event_arrives_only_after_its_caller_has_the_reply(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, include_initial=False) as changes:
        writer = asyncio.create_task(store.update_variable(SID, "x", 1))
        (change,) = await take(changes, 1)
        # The actor answers a batch before it publishes it, so the writer's
        # reply is already delivered when the watcher hears of the change.
        assert writer.done()
        assert (await writer).revision == change.revision


async def test_watching_touches_the_session(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session(SID, ttl=10)
    clock.advance(8)
    async with store.watch_variables(SID):
        clock.advance(8)  # 16 s after creation, 8 s after the watch began
        assert await store.session_exists(SID)


# -- subscription is atomic with its snapshot ---------------------------------------


@pytest.mark.local_only  # places calls in one mailbox batch: the in-process scheduling
async def test_changes_around_the_subscription_are_neither_lost_nor_repeated(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    # A first watcher makes the core record changes for the session all along.
    async with store.watch_variables(SID, include_initial=False) as first:
        # Three calls in one mailbox batch: update, subscribe, update.
        before = asyncio.create_task(store.update_variable(SID, "x", 1))
        entered = asyncio.Event()
        release = asyncio.Event()
        seen: list[VariableChange] = []

        async def second_watcher() -> None:
            async with store.watch_variables(SID) as second:
                entered.set()
                seen.extend(await take(second, 2))
                await release.wait()

        watcher_task = asyncio.create_task(second_watcher())
        after = asyncio.create_task(store.update_variable(SID, "x", 2))
        await asyncio.gather(before, after)
        await entered.wait()
        release.set()
        await watcher_task
        assert [(c.kind, c.new_value) for c in await take(first, 2)] == [
            ("updated", 1),
            ("updated", 2),
        ]
    assert [(c.kind, c.new_value, c.version) for c in seen] == [
        ("initial", 1, 1),
        ("updated", 2, 2),
    ]


async def test_watch_started_just_before_a_delete_still_sees_session_closed(
    store: AnyStore, session_id: str
) -> None:
    # session_closed takes no revision: it has the very revision the watch started at.
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID) as changes:
        await store.delete_session(SID)
        events = await drain(changes)
    assert [c.kind for c in events] == ["initial", "session_closed"]
    assert events[1].revision == events[0].revision


@pytest.mark.local_only  # places calls in one mailbox batch: the in-process scheduling
async def test_a_delete_handled_right_after_the_subscription_is_seen(
    store: AnyStore, session_id: str
) -> None:
    # The delete lands in the same mailbox batch as the subscription, so its
    # session_closed reaches the watcher before the subscription's reply does.
    await store.register_variable(SID, "x", "integer", 0)
    seen: list[VariableChange] = []

    async def watch() -> None:
        async with store.watch_variables(SID) as changes:
            seen.extend(await drain(changes))

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)  # its WatchSession is in the mailbox
    await store.delete_session(SID)
    await task
    assert [c.kind for c in seen] == ["initial", "session_closed"]


async def test_new_watch_does_not_see_the_close_of_an_earlier_session_with_its_id(
    store: AnyStore, session_id: str
) -> None:
    async with store.watch_variables(SID) as old:
        # One batch: the old session goes, a new one takes its id, a watch starts on it.
        deleted = asyncio.create_task(store.delete_session(SID))
        created = asyncio.create_task(store.create_session(SID))
        entered = asyncio.Event()
        seen: list[VariableChange] = []

        async def new_watcher() -> None:
            async with store.watch_variables(SID) as new:
                entered.set()
                seen.append(await anext(new))

        watcher_task = asyncio.create_task(new_watcher())
        await asyncio.gather(deleted, created)
        await entered.wait()
        await store.register_variable(SID, "fresh", "integer", 1)
        await watcher_task
        assert [c.kind for c in await drain(old)] == ["session_closed"]
    assert [(c.kind, c.name) for c in seen] == [("registered", "fresh")]


async def test_watchers_see_exactly_the_committed_sequence_under_100_writers(
    store: AnyStore, session_id: str
) -> None:
    names = [f"v{i}" for i in range(10)]
    for name in names:
        await store.register_variable(SID, name, "integer", 0)
    rng = random.Random(6)
    writes_done = 0
    reached = {count: asyncio.Event() for count in (0, 1000, 1200, 1400, 1600, 1800)}
    reached[0].set()

    async def writer(index: int) -> None:
        nonlocal writes_done
        for step in range(20):
            name = rng.choice(names)
            await store.update_variable(SID, name, index * 1000 + step)
            writes_done += 1
            if writes_done in reached:
                reached[writes_done].set()

    async def watch(
        started: asyncio.Event, wait_for_writes: int
    ) -> tuple[dict[str, tuple[Any, int]], list[VariableChange], int]:
        await reached[wait_for_writes].wait()
        view: dict[str, tuple[Any, int]] = {}
        stream: list[VariableChange] = []
        snapshot_revision = 0
        async with store.watch_variables(SID, buffer=100_000) as changes:
            started.set()
            async for change in changes:
                assert change.kind in ("initial", "updated", "session_closed")
                if change.kind == "initial":
                    snapshot_revision = max(snapshot_revision, change.revision)
                else:
                    stream.append(change)
                if change.variable_id is not None:
                    view[change.variable_id] = (change.new_value, change.version or 0)
        return view, stream, snapshot_revision

    # Five watchers from the start, five that join while the writers run.
    starts = [asyncio.Event() for _ in range(10)]
    watchers = [
        asyncio.create_task(watch(started, 0 if i < 5 else 200 * i))
        for i, started in enumerate(starts)
    ]
    for started in starts[:5]:
        await started.wait()
    writers = [asyncio.create_task(writer(i)) for i in range(100)]
    await asyncio.gather(*writers)
    for started in starts:
        await started.wait()

    final = {entry["id"]: (entry["value"], entry["version"]) for entry in await export(store)}
    last_revision = max(v.revision for v in await store.list_variables(SID))
    assert sum(version for _, version in final.values()) == 100 * 20
    await store.delete_session(SID)

    for task in watchers:
        view, stream, snapshot_revision = await task
        assert view == final
        assert stream[-1].kind == "session_closed"
        revisions = [c.revision for c in stream[:-1]]
        assert all(a < b for a, b in itertools.pairwise(revisions))
        # No gap and no repeat: every change committed after the snapshot, once each.
        assert revisions == list(range(snapshot_revision + 1, last_revision + 1))
    for task in watchers[:5]:
        _, stream, _ = await task
        assert len(stream) - 1 == 100 * 20


async def export(store: AnyStore) -> list[dict[str, Any]]:
    return await store.export_variables(SID)


# -- filtering ------------------------------------------------------------------------


async def test_identifiers_filter_by_id_and_by_name(store: AnyStore, session_id: str) -> None:
    a = await store.register_variable(SID, "a", "integer", 0)
    await store.register_variable(SID, "b", "integer", 0)
    await store.register_variable(SID, "c", "integer", 0)
    async with store.watch_variables(SID, [a, "c"]) as changes:
        for name in ("a", "b", "c"):
            await store.update_variable(SID, name, 1)
        events = await take(changes, 4)
    assert [(c.kind, c.name) for c in events] == [
        ("initial", "a"),
        ("initial", "c"),
        ("updated", "a"),
        ("updated", "c"),
    ]


async def test_a_listed_name_registered_later_matches(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "a", "integer", 0)
    async with store.watch_variables(SID, ["later", "a"]) as changes:
        await store.register_variable(SID, "other", "integer", 0)
        await store.register_variable(SID, "later", "integer", 1)
        await store.delete_variable(SID, "a")
        await store.register_variable(SID, "a", "integer", 2)  # a new variable, same name
        events = await take(changes, 4)
    assert [(c.kind, c.name, c.new_value) for c in events] == [
        ("initial", "a", 0),
        ("registered", "later", 1),
        ("deleted", "a", None),
        ("registered", "a", 2),
    ]


async def test_an_id_follows_only_that_variable(store: AnyStore, session_id: str) -> None:
    first = await store.register_variable(SID, "a", "integer", 0)
    async with store.watch_variables(SID, [first], include_initial=False) as changes:
        await store.delete_variable(SID, first)
        second = await store.register_variable(SID, "a", "integer", 1)
        await store.update_variable(SID, second, 2)
        await store.register_variable(SID, "sentinel", "integer", 0)
        await store.delete_session(SID)
        events = await drain(changes)
    assert [(c.kind, c.variable_id) for c in events] == [
        ("deleted", first),
        ("session_closed", None),
    ]


async def test_pattern_is_the_anchored_glob_of_list_variables(
    store: AnyStore, session_id: str
) -> None:
    for name in ("temp_cpu", "my_temp_x", "temp_gpu", "tempo"):
        await store.register_variable(SID, name, "float", 0.0)
    async with store.watch_variables(SID, pattern="temp_*") as changes:
        await store.register_variable(SID, "temp_new", "float", 1.0)
        await store.update_variable(SID, "my_temp_x", 1.0)
        await store.update_variable(SID, "tempo", 1.0)
        await store.update_variable(SID, "temp_cpu", 1.0)
        events = await take(changes, 4)
    assert [(c.kind, c.name) for c in events] == [
        ("initial", "temp_cpu"),
        ("initial", "temp_gpu"),
        ("registered", "temp_new"),
        ("updated", "temp_cpu"),
    ]
    listed = await store.list_variables(SID, "temp_*")
    assert {v.name for v in listed} == {"temp_cpu", "temp_gpu", "temp_new"}


async def test_question_mark_matches_one_character(store: AnyStore, session_id: str) -> None:
    for name in ("x1", "x22", "y1"):
        await store.register_variable(SID, name, "integer", 0)
    async with store.watch_variables(SID, pattern="x?") as changes:
        await store.delete_session(SID)
        events = await drain(changes)
    assert [(c.kind, c.name) for c in events] == [("initial", "x1"), ("session_closed", None)]


async def test_identifiers_and_pattern_both_narrow(store: AnyStore, session_id: str) -> None:
    for name in ("temp_a", "temp_b", "other"):
        await store.register_variable(SID, name, "integer", 0)
    async with store.watch_variables(SID, ["temp_a", "other"], pattern="temp_*") as changes:
        for name in ("other", "temp_b", "temp_a"):
            await store.update_variable(SID, name, 1)
        events = await take(changes, 2)
    assert [(c.kind, c.name) for c in events] == [("initial", "temp_a"), ("updated", "temp_a")]


async def test_empty_identifier_list_watches_only_the_session_closing(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, []) as changes:
        await store.update_variable(SID, "x", 1)
        await store.delete_session(SID)
        events = await drain(changes)
    assert [c.kind for c in events] == ["session_closed"]


async def test_changes_in_other_sessions_are_not_seen(store: AnyStore, session_id: str) -> None:
    await store.create_session("other")
    await store.register_variable("other", "x", "integer", 0)
    async with store.watch_variables(SID) as changes:
        await store.update_variable("other", "x", 1)
        await store.delete_session("other")
        await store.register_variable(SID, "mine", "integer", 0)
        (event,) = await take(changes, 1)
    assert (event.session_id, event.name) == (SID, "mine")


# -- many watchers --------------------------------------------------------------------


async def test_many_watchers_on_one_variable_each_get_every_event(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with (
        store.watch_variables(SID, ["x"]) as one,
        store.watch_variables(SID, ["x"]) as two,
        store.watch_variables(SID) as three,
    ):
        for value in range(1, 6):
            await store.update_variable(SID, "x", value)
        results = [await take(changes, 6) for changes in (one, two, three)]
    for events in results:
        assert [c.new_value for c in events] == [0, 1, 2, 3, 4, 5]
        assert [c.kind for c in events] == ["initial"] + ["updated"] * 5


# -- overflow ---------------------------------------------------------------------------


async def test_overflow_delivers_the_buffer_then_raises_with_the_last_revision(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    overflows_before = backing(store)._state.counters.watch_overflows
    async with store.watch_variables(SID, buffer=3) as changes:
        # The writer never waits for the slow consumer.
        written = [await store.update_variable(SID, "x", value) for value in range(1, 8)]
        received = await take(changes, 4)
        with pytest.raises(WatchOverflow) as caught:
            await anext(changes)
        with pytest.raises(StopAsyncIteration):
            await anext(changes)
    assert [c.kind for c in received] == ["initial", "updated", "updated", "updated"]
    assert [c.new_value for c in received] == [0, 1, 2, 3]
    assert caught.value.last_revision == received[-1].revision == written[2].revision
    assert isinstance(caught.value, SessionStoreError)
    if isinstance(store, SessionStore):  # a remote consumer's buffer is the client's own
        assert backing(store)._state.counters.watch_overflows == overflows_before + 1
    assert (await store.get_variable(SID, "x")).value == 7


async def test_a_consumer_exactly_buffer_behind_does_not_overflow(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, buffer=3, include_initial=False) as changes:
        for value in range(1, 4):
            await store.update_variable(SID, "x", value)
        await store.delete_session(SID)  # session_closed is delivered past a full buffer
        events = await drain(changes)
    assert [c.new_value for c in events] == [1, 2, 3, None]
    assert events[-1].kind == "session_closed"
    assert backing(store)._state.counters.watch_overflows == 0


async def test_initial_events_do_not_count_towards_the_buffer(
    store: AnyStore, session_id: str
) -> None:
    for index in range(5):
        await store.register_variable(SID, f"v{index}", "integer", 0)
    async with store.watch_variables(SID, buffer=2) as changes:
        await store.update_variable(SID, "v0", 1)
        await store.update_variable(SID, "v1", 1)
        events = await take(changes, 7)
    assert [c.kind for c in events] == ["initial"] * 5 + ["updated"] * 2


async def test_only_matching_events_count_towards_the_buffer(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "watched", "integer", 0)
    await store.register_variable(SID, "noise", "integer", 0)
    async with store.watch_variables(SID, ["watched"], buffer=1, include_initial=False) as w:
        for value in range(10):
            await store.update_variable(SID, "noise", value)
        await store.update_variable(SID, "watched", 1)
        (event,) = await take(w, 1)
    assert (event.name, event.new_value) == ("watched", 1)


async def test_one_watcher_overflowing_leaves_the_others_intact(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with (
        store.watch_variables(SID, buffer=2, include_initial=False) as slow,
        store.watch_variables(SID, buffer=100, include_initial=False) as fine,
    ):
        for value in range(1, 6):
            await store.update_variable(SID, "x", value)
        assert [c.new_value for c in await take(fine, 5)] == [1, 2, 3, 4, 5]
        assert [c.new_value for c in await take(slow, 2)] == [1, 2]
        with pytest.raises(WatchOverflow):
            await anext(slow)
        await roundtrip(store)
        assert watched(store) == {SID: 1}  # the overflowed watch is unsubscribed at once


# -- how a watch ends ---------------------------------------------------------------------


async def test_delete_session_ends_the_watch_after_session_closed(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, include_initial=False) as changes:
        await store.update_variable(SID, "x", 1)
        await store.delete_session(SID)
        await store.create_session(SID)  # a new session with the same id is another story
        await store.register_variable(SID, "x", "integer", 5)
        events = await drain(changes)
        with pytest.raises(StopAsyncIteration):
            await anext(changes)
    assert [c.kind for c in events] == ["updated", "session_closed"]
    closed = events[-1]
    assert (closed.session_id, closed.variable_id, closed.name, closed.version) == (
        SID,
        None,
        None,
        None,
    )
    assert closed.revision == events[0].revision


async def test_expiry_ends_the_watch_when_the_sweep_removes_the_session(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session(SID, ttl=10)
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, include_initial=False) as changes:
        clock.advance(11)
        assert await store.cleanup_expired_sessions() == 1
        events = await drain(changes)
    assert [c.kind for c in events] == ["session_closed"]


async def test_expiry_then_recreating_the_id_ends_the_watch(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session(SID, ttl=10)
    async with store.watch_variables(SID) as changes:
        clock.advance(11)
        await store.create_session(SID)  # the expired one is gone, never revived
        await store.register_variable(SID, "x", "integer", 0)
        events = await drain(changes)
    assert [c.kind for c in events] == ["session_closed"]


async def test_periodic_sweep_ends_the_watch_of_an_expired_session(open_store: OpenStore) -> None:
    clock = FakeClock()
    async with open_store(clock=clock, cleanup_interval=0.01) as store:
        await store.create_session(SID, ttl=10)
        async with store.watch_variables(SID) as changes:
            clock.advance(11)
            events = await drain(changes)  # no call: the periodic sweep does it
    assert [c.kind for c in events] == ["session_closed"]


async def test_leaving_the_block_unsubscribes(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID) as one, store.watch_variables(SID) as two:
        await roundtrip(store)
        assert watched(store) == {SID: 2}
    await roundtrip(store)
    assert watched(store) == {}
    assert backing(store)._watchers == {}
    with pytest.raises(StopAsyncIteration):
        await anext(one)
    await store.update_variable(SID, "x", 1)
    with pytest.raises(StopAsyncIteration):
        await anext(two)


async def test_an_iterator_left_unread_ends_when_the_block_is_left(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID) as changes:
        await store.update_variable(SID, "x", 1)
    assert await drain(changes) == []


async def test_leaving_the_block_when_the_store_has_stopped_does_not_fail() -> None:
    store = SessionStore()
    async with store:
        await store.create_session(SID)
        watch = store.watch_variables(SID)
        changes = await watch.__aenter__()
    await watch.__aexit__(None, None, None)
    assert await drain(changes) == []


async def test_store_stopping_ends_active_watches_with_store_closed() -> None:
    store = SessionStore()
    async with store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        watch = store.watch_variables(SID, include_initial=False)
        changes = await watch.__aenter__()
        await store.update_variable(SID, "x", 1)
        consumer = asyncio.create_task(drain(changes))
        await asyncio.sleep(0)
    with pytest.raises(StoreClosed):
        await consumer
    # The buffered change came first; a second consumer sees the end.
    with pytest.raises(StopAsyncIteration):
        await anext(changes)
    await watch.__aexit__(None, None, None)


async def test_store_stopping_delivers_what_was_buffered_first() -> None:
    store = SessionStore()
    async with store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        watch = store.watch_variables(SID, include_initial=False)
        changes = await watch.__aenter__()
        await store.update_variable(SID, "x", 1)
    event = await anext(changes)
    assert (event.kind, event.new_value) == ("updated", 1)
    with pytest.raises(StoreClosed):
        await anext(changes)
    await watch.__aexit__(None, None, None)


async def test_cancelling_a_supervised_store_ends_its_watches_with_store_closed() -> None:
    store = SessionStore()
    outcome: list[BaseException] = []
    entered = anyio.Event()

    async def consume() -> None:
        try:
            async with store.watch_variables(SID) as changes:
                entered.set()
                async for _ in changes:
                    pass
        except StoreClosed as error:
            outcome.append(error)

    async with anyio.create_task_group() as consumers, anyio.create_task_group() as serving:
        await serving.start(store.run)
        await store.create_session(SID)
        consumers.start_soon(consume)
        await entered.wait()
        serving.cancel_scope.cancel()  # stops the actor, as a supervisor would
    assert len(outcome) == 1
    assert not store.running


async def test_cancelled_subscription_leaves_no_subscription_behind(
    store: AnyStore, session_id: str
) -> None:
    async def subscribe() -> None:
        async with store.watch_variables(SID):
            await asyncio.sleep(10)

    task = asyncio.create_task(subscribe())
    await asyncio.sleep(0)  # its WatchSession is in the mailbox now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await roundtrip(store)
    assert watched(store) == {}
    assert backing(store)._watchers == {}


async def test_cancelled_consumer_still_unsubscribes(store: AnyStore, session_id: str) -> None:
    entered = asyncio.Event()

    async def consume() -> None:
        async with store.watch_variables(SID) as changes:
            entered.set()
            async for _ in changes:
                pass

    task = asyncio.create_task(consume())
    await entered.wait()
    await roundtrip(store)
    assert watched(store) == {SID: 1}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await roundtrip(store)
    assert watched(store) == {}


async def test_unsubscribing_with_a_full_bounded_mailbox_waits_for_room() -> None:
    async with SessionStore(mailbox_size=1) as store:
        await store.create_session(SID)
        async with store.watch_variables(SID):
            await roundtrip(store)
            assert watched(store) == {SID: 1}
            blockers = [asyncio.create_task(store.session_exists(SID)) for _ in range(5)]
            await asyncio.sleep(0)
        await asyncio.gather(*blockers)
        await roundtrip(store)
        assert watched(store) == {}


# -- refusals ---------------------------------------------------------------------------------


async def test_watching_a_missing_session_raises_and_leaves_nothing_behind(
    store: AnyStore,
) -> None:
    with pytest.raises(SessionNotFound):
        async with store.watch_variables("nope"):
            pytest.fail("entered a watch of a missing session")
    assert watched(store) == {}
    assert backing(store)._watchers == {}


@pytest.mark.parametrize(
    ("identifiers", "options"),
    [
        (None, {"buffer": 0}),
        (None, {"buffer": -1}),
        (None, {"buffer": True}),
        (None, {"buffer": 1.5}),
        (None, {"include_initial": "yes"}),
        (None, {"pattern": 5}),
        ("x", {}),
        ([1], {}),
        ([""], {}),
        ({"x": 1}, {}),
    ],
)
async def test_bad_arguments_raise_invalid_argument(
    store: AnyStore, session_id: str, identifiers: Any, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        async with store.watch_variables(SID, identifiers, **options):
            pytest.fail("entered a watch with bad arguments")
    await roundtrip(store)
    assert watched(store) == {}


@pytest.mark.parametrize("session", [None, 5, "", "s" * 300, ["s"], {}])
async def test_bad_session_id_raises_invalid_argument(store: AnyStore, session: Any) -> None:
    with pytest.raises(InvalidArgument):
        async with store.watch_variables(session):
            pytest.fail("entered a watch with a bad session id")
    assert backing(store)._watchers == {}


async def test_watching_a_store_that_is_not_running_raises_store_closed() -> None:
    store = SessionStore()
    with pytest.raises(StoreClosed):
        async with store.watch_variables(SID):
            pytest.fail("entered a watch of a store that never ran")
    async with store:
        pass
    with pytest.raises(StoreClosed):
        async with store.watch_variables(SID):
            pytest.fail("entered a watch of a stopped store")


async def test_a_caller_changing_its_identifier_list_later_changes_nothing(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "a", "integer", 0)
    await store.register_variable(SID, "b", "integer", 0)
    identifiers = ["a"]
    seen: list[VariableChange] = []

    async def watch() -> None:
        async with store.watch_variables(SID, identifiers) as changes:
            seen.extend(await take(changes, 2))

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)  # its WatchSession waits in the mailbox
    identifiers.append("b")
    await store.update_variable(SID, "b", 1)
    await store.update_variable(SID, "a", 1)
    await task
    assert [(c.kind, c.name) for c in seen] == [("initial", "a"), ("updated", "a")]


# -- BlockingSessionStore.watch_variables: the same watch as a plain iterator ------------------


def test_blocking_watch_yields_the_same_events(open_blocking: OpenBlocking) -> None:
    with open_blocking() as store:
        store.create_session(SID)
        store.register_variable(SID, "x", "integer", 0)
        with store.watch_variables(SID) as changes:
            store.update_variable(SID, "x", 1)
            store.register_variable(SID, "y", "integer", 5)
            store.delete_session(SID)
            events = list(changes)
        assert [(c.kind, c.name, c.new_value) for c in events] == [
            ("initial", "x", 0),
            ("updated", "x", 1),
            ("registered", "y", 5),
            ("session_closed", None, None),
        ]


def test_blocking_watch_waits_for_a_change_from_another_thread(
    open_blocking: OpenBlocking,
) -> None:
    with open_blocking() as store:
        store.create_session(SID)
        store.register_variable(SID, "x", "integer", 0)
        with store.watch_variables(SID, include_initial=False) as changes:
            writer = threading.Timer(0.05, store.update_variable, (SID, "x", 7))
            writer.start()
            change = next(changes)
            writer.join()
        assert (change.kind, change.new_value) == ("updated", 7)
        with pytest.raises(StopIteration):  # the block was left: the watch has ended
            next(changes)


def test_blocking_watch_overflow_and_bad_arguments(open_blocking: OpenBlocking) -> None:
    with open_blocking() as store:
        store.create_session(SID)
        store.register_variable(SID, "x", "integer", 0)
        with store.watch_variables(SID, buffer=1, include_initial=False) as changes:
            for value in range(1, 4):
                store.update_variable(SID, "x", value)
            assert next(changes).new_value == 1
            with pytest.raises(WatchOverflow) as caught:
                next(changes)
        assert caught.value.last_revision == store.get_variable(SID, "x").revision - 2
        with pytest.raises(InvalidArgument), store.watch_variables(SID, buffer=0):
            pytest.fail("entered a watch with buffer=0")
        with pytest.raises(SessionNotFound), store.watch_variables("missing"):
            pytest.fail("entered a watch of a missing session")


def test_blocking_watch_ends_with_store_closed_when_the_store_stops(
    open_blocking: OpenBlocking,
) -> None:
    """Remote kinds: closing the client (``BlockingSessionStore.connect``) ends it so."""
    outcome: list[BaseException] = []
    with open_blocking() as store:
        store.create_session(SID)
        entered = threading.Event()

        def consume() -> None:
            try:
                with store.watch_variables(SID, include_initial=False) as changes:
                    entered.set()
                    for _ in changes:
                        pass
            except BaseException as error:  # handed to the test thread
                outcome.append(error)

        consumer = threading.Thread(target=consume)
        consumer.start()
        assert entered.wait(5)
    consumer.join(5)
    assert not consumer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], StoreClosed)
