"""What is deleted is freed, and every internal table is bounded by what is live.

A deleted (or swept) session's variables and programs go to ``state.garbage``
and the actor frees them a chunk at a time; its record may wait in the expiry
heap as an empty husk until the heap is compacted. A replaced or deleted global
program drops its data at once, and the program heap is compacted. The table
that shares compiled constraints is a weak dictionary. These tests hold
``weakref``s to what the store kept and churn registrations, deletions, watches
and programs, then look at the tables of ``StoreState`` (``_sessions``,
``_deadlines``, ``_global_programs``, ``_program_deadlines``, ``_constraints``,
``garbage``, ``_watch_tokens``, ``watched``) and the store's ``_watchers``.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import anyio
import pytest

from sessionactor import SessionStore, Tensor, WatchOverflow
from sessionactor.testing import FakeClock

PROMPT = 10.0


class Payload:
    """Program data the store copies (deep copies of it are Payloads too)."""

    def __init__(self, size: int) -> None:
        self.items = list(range(size))


async def freed(store: SessionStore) -> None:
    """Let the actor answer what is queued and free what deletions left, then collect."""
    state = store._state
    with anyio.fail_after(PROMPT):
        await store.get_stats()
        for _ in range(10_000):
            if not state.garbage:
                break
            await asyncio.sleep(0)
    assert state.garbage == [], "the actor did not free what a deletion left"
    gc.collect()


def live_sessions(store: SessionStore) -> int:
    return len(store._state._sessions)


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[SessionStore, FakeClock]]:
    clock = FakeClock()
    async with SessionStore(clock=clock, cleanup_interval=None) as store:
        yield store, clock


async def fill_session(store: SessionStore, session_id: str) -> list[weakref.ref[object]]:
    """A session with variables and programs; weak references to what the store keeps."""
    await store.create_session(session_id, ttl=60)
    refs: list[weakref.ref[object]] = []
    for index in range(20):
        name = f"t{index}"
        await store.register_variable(
            session_id,
            name,
            "tensor",
            {"shape": [2], "data": [index, 1.0]},
            constraints={"shape": [2]},
            metadata={"index": index},
        )
        variable = await store.get_variable(session_id, name)
        assert isinstance(variable.value, Tensor)
        refs += [weakref.ref(variable.value), weakref.ref(variable.metadata)]
        del variable
    await store.store_program(session_id, "p", Payload(1_000))
    refs.append(weakref.ref(store._state._sessions[session_id].programs["p"]))
    return refs


async def test_a_deleted_sessions_variables_and_programs_are_freed(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, _ = clocked
    refs = await fill_session(store, "gone")
    await store.delete_session("gone")
    await freed(store)
    assert [ref for ref in refs if ref() is not None] == []
    assert len(store._state._constraints) == 0


async def test_an_expired_and_swept_sessions_data_is_freed(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, clock = clocked
    refs = await fill_session(store, "expiring")
    clock.advance(61)
    assert await store.cleanup_expired_sessions() == 1
    await freed(store)
    assert [ref for ref in refs if ref() is not None] == []


async def test_an_expired_session_is_freed_when_its_id_is_taken_again(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, clock = clocked
    refs = await fill_session(store, "reused")
    clock.advance(61)
    await store.create_session("reused")  # the expired one is dropped, not revived
    await freed(store)
    assert [ref for ref in refs if ref() is not None] == []
    assert (await store.get_session("reused")).variable_count == 0


async def test_a_deleted_variables_value_is_freed(clocked: tuple[SessionStore, FakeClock]) -> None:
    store, _ = clocked
    await store.create_session("s")
    await store.register_variable("s", "t", "tensor", {"shape": [1], "data": [1.0]})
    await store.update_variable("s", "t", {"shape": [1], "data": [2.0]})
    variable = await store.get_variable("s", "t")
    ref = weakref.ref(variable.value)
    del variable
    await store.delete_variable("s", "t")
    await freed(store)
    assert ref() is None


async def test_a_large_deleted_session_is_freed_a_chunk_at_a_time_while_calls_are_served(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, _ = clocked
    await store.create_session("big")
    entries = [
        {"id": f"var_v{i}_{i}", "name": f"v{i}", "type": "integer", "value": i}
        for i in range(20_000)
    ]
    assert await store.import_variables("big", entries) == 20_000
    await store.create_session("other")
    await store.delete_session("big")
    state = store._state
    assert state.garbage, "the variables were freed in the deleting turn itself"
    # Calls are answered while the rest is freed between turns.
    assert await store.session_exists("other")
    await freed(store)
    assert (await store.get_stats()).current_variables == 0


# --------------------------------------------------------------------------
# Global programs


async def test_a_replaced_or_deleted_global_program_drops_its_data_at_once(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, _ = clocked
    await store.store_global_program("g", Payload(10))
    first = weakref.ref(store._state._global_programs["g"].data)
    await store.store_global_program("g", Payload(10))
    assert first() is None, "the replaced program's data is still held"  # at once: no gc
    second = weakref.ref(store._state._global_programs["g"].data)
    await store.delete_global_program("g")
    assert second() is None, "the deleted program's data is still held"


async def test_the_program_heap_is_bounded_by_the_live_programs(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, _ = clocked
    state = store._state
    for round_ in range(3_000):
        await store.store_global_program(f"g{round_ % 3}", round_)
        if round_ % 7 == 0:
            await store.delete_global_program(f"g{(round_ + 1) % 3}")
    live = len(state._global_programs)
    assert live <= 3
    assert len(state._program_deadlines) <= 2 * live + 1024
    # Every entry left is live or waits for the next compaction, and holds no data.
    husks = [
        entry
        for entry in state._program_deadlines
        if state._global_programs.get(entry[2]) is not entry[3]
    ]
    assert all(entry[3].data is None for entry in husks)


async def test_expired_global_programs_leave_no_trace(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, clock = clocked
    for index in range(2_000):
        await store.store_global_program(f"g{index}", Payload(1))
    clock.advance(3_601)
    assert (await store.get_stats()).global_programs == 0
    assert store._state._global_programs == {}
    assert len(store._state._program_deadlines) <= 1024


# --------------------------------------------------------------------------
# The session expiry heap


async def test_the_expiry_heap_is_compacted_by_the_sweep(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, _ = clocked
    state = store._state
    await store.create_session("kept", ttl=600)
    for round_ in range(3_000):
        await store.create_session(f"s{round_}")
        await store.delete_session(f"s{round_}")
        await store.update_session("kept", ttl=600 - round_ / 10)  # an earlier deadline: pushed
        if round_ % 500 == 499:
            await store.cleanup_expired_sessions()
    assert len(state._deadlines) <= live_sessions(store) + 1024 + 500 * 2
    await store.cleanup_expired_sessions()
    assert len(state._deadlines) <= live_sessions(store) + 1024
    # A husk waiting in the heap holds nothing of its session's data.
    for _, _, record in state._deadlines:
        if state._sessions.get(record.id) is not record:
            assert (record.variables, record.programs, record.names, record.leases) == ({},) * 4


# --------------------------------------------------------------------------
# Shared constraints: an entry lives as long as a variable uses it


async def test_the_constraint_table_holds_only_what_live_variables_use(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, _ = clocked
    state = store._state
    await store.create_session("s", ttl=600)
    for index in range(500):
        await store.register_variable("s", f"v{index}", "integer", 0, constraints={"min": -index})
    await store.register_variable("s", "keep", "integer", 0, constraints={"min": -1_000})
    assert len(state._constraints) == 501
    for index in range(500):
        await store.delete_variable("s", f"v{index}")
    await freed(store)
    assert len(state._constraints) == 1
    await store.delete_session("s")
    await freed(store)
    assert len(state._constraints) == 0


async def test_churn_keeps_every_table_bounded_by_what_is_live(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    """Sessions made and deleted, expired and swept, watched and unwatched, over and over:
    afterwards each table holds what is live and no more (plus the heap's margin)."""
    store, clock = clocked
    state = store._state
    for round_ in range(300):
        sid = f"s{round_}"
        await store.create_session(sid, ttl=30, metadata={"round": round_})
        await store.register_variable(sid, "x", "integer", 0, constraints={"min": -round_})
        await store.store_program(sid, "p", [round_])
        async with store.watch_variables(sid) as changes:
            await store.update_variable(sid, "x", 1)
            assert (await anext(changes)).kind == "initial"
        if round_ % 3 == 0:
            await store.delete_session(sid)
        elif round_ % 3 == 1:
            clock.advance(31)
            await store.cleanup_expired_sessions()
    await freed(store)
    # Deleted (round % 3 == 0), swept (1), or swept at a later round's sweep (2): s299 is left.
    assert sorted(state._sessions) == ["s299"]
    live = live_sessions(store)
    assert len(state._deadlines) <= live + 1024
    assert state.variable_count == sum(len(r.variables) for r in state._sessions.values())
    assert len(state._constraints) <= live
    assert state._watch_tokens == {}
    assert state.watched == {}
    assert store._watchers == {}
    assert state.garbage == []


# --------------------------------------------------------------------------
# Watches: every way a watch ends leaves nothing behind


async def test_every_way_a_watch_ends_leaves_no_entry_behind(
    clocked: tuple[SessionStore, FakeClock],
) -> None:
    store, _ = clocked
    state = store._state
    await store.create_session("w", ttl=600)
    await store.register_variable("w", "x", "integer", 0)
    with anyio.fail_after(PROMPT):
        for _ in range(50):
            # left normally
            async with store.watch_variables("w") as changes:
                await anext(changes)
            # overflowed
            with pytest.raises(WatchOverflow):
                async with store.watch_variables("w", buffer=1, include_initial=False) as slow:
                    await store.update_variable("w", "x", 1)
                    await store.update_variable("w", "x", 2)
                    async for _ in slow:
                        pass
            # cancelled while subscribing
            with anyio.move_on_after(0):
                async with store.watch_variables("w"):
                    pass
            # refused (a pattern too long)
            with pytest.raises(ValueError):
                async with store.watch_variables("w", pattern="*" * 2_000):
                    pass
        # ended by the session's deletion
        async with store.watch_variables("w", include_initial=False) as ended:
            await store.delete_session("w")
            assert [change.kind async for change in ended] == ["session_closed"]
    await freed(store)
    assert state._watch_tokens == {}
    assert state.watched == {}
    assert store._watchers == {}


async def test_a_deleted_sessions_metadata_is_freed_with_it() -> None:
    """A deleted session's record may wait in the deadline heap as a husk until its
    entry comes up or the heap is compacted (up to the session's ttl); it must not
    keep the session's metadata alive meanwhile."""
    async with SessionStore(cleanup_interval=None) as store:
        session = await store.create_session("s1", metadata={"big": list(range(10_000))})
        ref = weakref.ref(session.metadata)
        del session
        await store.delete_session("s1")
        await store.get_stats()
        gc.collect()
        assert ref() is None, "a deleted session's metadata is still held (by its heap husk)"


async def test_the_expiry_heap_stays_bounded_without_a_sweep() -> None:
    """With no sweep (``cleanup_interval=None``, or between sweeps), sessions created
    and deleted leave a stale heap entry each: the heap is compacted where they are
    made, so it stays bounded by what is live."""
    async with SessionStore(cleanup_interval=None) as store:
        state = store._state
        for index in range(3_000):
            await store.create_session(f"s{index}")
            await store.delete_session(f"s{index}")
        assert len(state._sessions) == 0
        assert len(state._deadlines) <= len(state._sessions) + 1024, len(state._deadlines)
