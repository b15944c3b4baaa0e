"""Sessions, expiry, programs and stats (SPEC §3).

Expiry is driven only by :class:`FakeClock`; no test sleeps. The periodic sweep
runs every ``cleanup_interval`` real seconds (60 by default), so within a test it
never runs unless ``cleanup_expired_sessions`` is called.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import pytest
from conftest import AnyStore, FakeClock, OpenStore

from sessionactor import (
    AtomicUpdateError,
    ConstraintViolation,
    ProgramNotFound,
    Session,
    SessionLimitExceeded,
    SessionNotFound,
    SessionStoreError,
    StoreStats,
    UnknownType,
    VariableExists,
    VariableNotFound,
)

Call = Callable[[AnyStore, str], Awaitable[object]]

# --------------------------------------------------------------------------
# create / get / update / delete


async def test_create_session_returns_a_session_snapshot(store: AnyStore) -> None:
    session = await store.create_session("s1", metadata={"owner": "me"})

    assert isinstance(session, Session)
    assert session.id == "s1"
    assert session.ttl == 3600.0
    assert dict(session.metadata) == {"owner": "me"}
    assert session.last_worker_id is None
    assert session.variable_count == 0
    assert tuple(session.program_ids) == ()
    assert session.total_variable_updates == 0
    assert session.last_accessed >= session.created_at


async def test_create_session_without_ttl_uses_store_default(
    store: AnyStore, open_store: OpenStore
) -> None:
    async with open_store(default_ttl=600) as custom:
        assert (await custom.create_session("s")).ttl == 600
    assert (await store.create_session("s")).ttl == 3600.0


async def test_create_session_with_explicit_ttl(store: AnyStore) -> None:
    session = await store.create_session("s", ttl=12.5)

    assert session.ttl == 12.5
    assert (await store.get_session("s")).ttl == 12.5


async def test_create_session_of_live_session_returns_it_unchanged_but_touched(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    original = await store.create_session("s", ttl=10, metadata={"v": 1})
    await store.register_variable("s", "x", "integer", 1)
    clock.advance(6)

    again = await store.create_session("s", ttl=99, metadata={"v": 2, "w": 3})

    assert again.id == "s"
    assert again.created_at == original.created_at
    assert again.ttl == 10
    assert dict(again.metadata) == {"v": 1}
    assert again.variable_count == 1
    assert again.last_accessed >= original.last_accessed
    clock.advance(6)  # 12 s since creation, 6 s since the idempotent create touched it
    assert await store.session_exists("s")
    assert (await store.get_variable("s", "x")).value == 1


async def test_create_session_of_existing_does_not_count_as_created(store: AnyStore) -> None:
    await store.create_session("s")
    before = await store.get_stats()

    await store.create_session("s")

    after = await store.get_stats()
    assert after.sessions_created == before.sessions_created
    assert after.current_sessions == before.current_sessions == 1


async def test_session_with_infinite_ttl_never_expires(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    session = await store.create_session("forever", ttl=math.inf)
    assert session.ttl == math.inf

    clock.advance(1e12)

    assert await store.session_exists("forever")
    assert await store.cleanup_expired_sessions() == 0
    assert (await store.get_session("forever")).id == "forever"


async def test_get_session_of_unknown_id_raises_session_not_found(store: AnyStore) -> None:
    with pytest.raises(SessionNotFound) as caught:
        await store.get_session("nope")

    assert caught.value.session_id == "nope"
    assert isinstance(caught.value, KeyError)


async def test_get_session_touches(clock_store: tuple[AnyStore, FakeClock]) -> None:
    store, clock = clock_store
    await store.create_session("s", ttl=10)
    clock.advance(6)

    await store.get_session("s")
    clock.advance(6)

    assert await store.session_exists("s")
    clock.advance(5)  # 11 s since the last touch
    assert not await store.session_exists("s")


async def test_update_session_merges_metadata(store: AnyStore) -> None:
    await store.create_session("s", metadata={"a": 1, "b": 2})

    updated = await store.update_session("s", metadata={"b": 20, "c": 30})

    assert dict(updated.metadata) == {"a": 1, "b": 20, "c": 30}
    assert dict((await store.get_session("s")).metadata) == {"a": 1, "b": 20, "c": 30}
    assert updated.ttl == 3600.0


async def test_update_session_without_arguments_keeps_ttl_and_metadata(
    store: AnyStore,
) -> None:
    await store.create_session("s", ttl=50, metadata={"a": 1})

    updated = await store.update_session("s")

    assert updated.ttl == 50
    assert dict(updated.metadata) == {"a": 1}


async def test_update_session_changes_ttl_and_expiry(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("short", ttl=10)
    await store.create_session("forever", ttl=10)

    assert (await store.update_session("short", ttl=100)).ttl == 100
    assert (await store.update_session("forever", ttl=math.inf)).ttl == math.inf
    clock.advance(50)

    assert await store.session_exists("short")
    assert await store.session_exists("forever")
    clock.advance(60)
    assert not await store.session_exists("short")
    assert await store.session_exists("forever")


async def test_update_session_of_unknown_id_raises_session_not_found(store: AnyStore) -> None:
    with pytest.raises(SessionNotFound):
        await store.update_session("nope", metadata={"a": 1})
    assert await store.list_sessions() == []


async def test_delete_session_is_idempotent_and_removes_everything(store: AnyStore) -> None:
    await store.create_session("s")
    await store.register_variable("s", "x", "integer", 1)

    await store.delete_session("s")
    await store.delete_session("s")
    await store.delete_session("never-existed")

    assert not await store.session_exists("s")
    with pytest.raises(SessionNotFound):
        await store.get_variable("s", "x")
    stats = await store.get_stats()
    assert stats.sessions_deleted == 1
    assert stats.current_sessions == 0
    assert stats.current_variables == 0


async def test_recreated_session_starts_empty(store: AnyStore) -> None:
    await store.create_session("s")
    await store.register_variable("s", "x", "integer", 1)
    await store.delete_session("s")

    fresh = await store.create_session("s")

    assert fresh.variable_count == 0
    assert not await store.has_variable("s", "x")


async def test_session_exists_does_not_touch(clock_store: tuple[AnyStore, FakeClock]) -> None:
    store, clock = clock_store
    await store.create_session("s", ttl=10)
    clock.advance(6)

    assert await store.session_exists("s")
    clock.advance(6)

    assert not await store.session_exists("s")
    assert not await store.session_exists("never-existed")


async def test_list_sessions_lists_live_sessions_only(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("short", ttl=10)
    await store.create_session("long", ttl=100)
    await store.create_session("deleted")
    await store.delete_session("deleted")
    assert sorted(await store.list_sessions()) == ["long", "short"]

    clock.advance(11)

    assert await store.list_sessions() == ["long"]


# --------------------------------------------------------------------------
# expiry


async def test_expired_session_is_gone_for_every_call_before_the_sweep(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("s", ttl=10)
    var_id = await store.register_variable("s", "x", "integer", 1)
    await store.store_program("s", "p", {"code": 1})
    clock.advance(11)

    assert not await store.session_exists("s")
    assert "s" not in await store.list_sessions()
    assert not await store.has_variable("s", "x")
    assert await store.get_variable_value("s", "x", default="gone") == "gone"
    not_found_calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_session("s"),
        lambda: store.update_session("s", metadata={"a": 1}),
        lambda: store.get_variable("s", var_id),
        lambda: store.get_variable("s", "x"),
        lambda: store.update_variable("s", "x", 2),
        lambda: store.register_variable("s", "y", "integer", 1),
        lambda: store.list_variables("s"),
        lambda: store.delete_variable("s", "x"),
        lambda: store.get_variables("s", ["x"]),
        lambda: store.update_variables("s", {"x": 3}),
        lambda: store.export_variables("s"),
        lambda: store.import_variables("s", []),
        lambda: store.store_program("s", "q", {}),
        lambda: store.get_program("s", "p"),
    ]
    for call in not_found_calls:
        with pytest.raises(SessionNotFound):
            await call()
    stats = await store.get_stats()
    assert stats.current_sessions == 0
    assert stats.current_variables == 0


async def test_expired_session_cannot_be_revived_by_reading(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("s", ttl=10)
    await store.register_variable("s", "x", "integer", 1)
    clock.advance(11)

    for _ in range(3):
        with pytest.raises(SessionNotFound):
            await store.get_session("s")
        with pytest.raises(SessionNotFound):
            await store.get_variable("s", "x")
        assert not await store.session_exists("s")

    # Creating the id again makes a new, empty session, not the old one.
    fresh = await store.create_session("s", ttl=10)
    assert fresh.variable_count == 0
    assert not await store.has_variable("s", "x")


async def test_every_successful_variable_call_touches_the_session(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("s", ttl=10)
    await store.register_variable("s", "x", "integer", 0)
    touches: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_variable("s", "x"),
        lambda: store.update_variable("s", "x", 1),
        lambda: store.list_variables("s"),
        lambda: store.has_variable("s", "x"),
        lambda: store.get_variables("s", ["x"]),
        lambda: store.update_variables("s", {"x": 2}),
        lambda: store.export_variables("s"),
        lambda: store.register_variable("s", "y", "integer", 0),
        lambda: store.delete_variable("s", "y"),
        lambda: store.store_program("s", "p", {"k": 1}),
        lambda: store.get_program("s", "p"),
        lambda: store.update_session("s", metadata={"m": 1}),
        lambda: store.store_worker_session("s", "worker-1"),
        lambda: store.get_variable_value("s", "x"),
    ]
    for touch in touches:
        clock.advance(6)
        await touch()
    clock.advance(6)

    # 6 s since the last touch, 90 s since creation
    assert await store.session_exists("s")


async def test_cleanup_expired_sessions_returns_how_many_were_removed(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    for i in range(3):
        await store.create_session(f"short{i}", ttl=10)
    await store.create_session("long", ttl=100)
    await store.register_variable("short0", "x", "integer", 1)
    clock.advance(11)

    assert await store.cleanup_expired_sessions() == 3
    assert await store.cleanup_expired_sessions() == 0
    assert await store.list_sessions() == ["long"]


async def test_cleanup_with_nothing_expired_removes_nothing(store: AnyStore) -> None:
    await store.create_session("s")

    assert await store.cleanup_expired_sessions() == 0
    assert await store.session_exists("s")


# --------------------------------------------------------------------------
# stats


async def test_stats_start_at_zero(store: AnyStore) -> None:
    stats = await store.get_stats()

    assert isinstance(stats, StoreStats)
    assert stats.sessions_created == 0
    assert stats.sessions_deleted == 0
    assert stats.sessions_expired == 0
    assert stats.cleanup_runs == 0
    assert stats.current_sessions == 0
    assert stats.current_variables == 0
    assert stats.global_programs == 0
    assert stats.mailbox_depth == 0


async def test_stats_count_sessions_created_deleted_and_current(store: AnyStore) -> None:
    for name in ("a", "b", "c"):
        await store.create_session(name)
    await store.delete_session("b")
    await store.delete_session("b")

    stats = await store.get_stats()
    assert stats.sessions_created == 3
    assert stats.sessions_deleted == 1
    assert stats.current_sessions == 2
    assert stats.sessions_expired == 0


async def test_stats_count_expired_sessions_and_cleanup_runs(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("a", ttl=10)
    await store.create_session("b", ttl=10)
    await store.create_session("c", ttl=100)
    clock.advance(11)

    assert await store.cleanup_expired_sessions() == 2
    await store.cleanup_expired_sessions()

    stats = await store.get_stats()
    assert stats.sessions_expired == 2
    assert stats.sessions_deleted == 0
    assert stats.cleanup_runs == 2
    assert stats.current_sessions == 1
    assert stats.sessions_created == 3


async def test_stats_count_an_expired_session_once_however_it_is_noticed(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("read", ttl=10)
    await store.create_session("deleted", ttl=10)
    clock.advance(11)
    with pytest.raises(SessionNotFound):
        await store.get_session("read")
    await store.delete_session("deleted")  # already gone: a no-op, not a deletion

    await store.cleanup_expired_sessions()

    stats = await store.get_stats()
    assert stats.sessions_expired == 2
    assert stats.sessions_deleted == 0
    assert stats.current_sessions == 0


async def test_stats_count_current_variables_across_sessions(store: AnyStore) -> None:
    await store.create_session("a")
    await store.create_session("b")
    await store.register_variable("a", "x", "integer", 1)
    await store.register_variable("a", "y", "integer", 1)
    await store.register_variable("b", "x", "integer", 1)
    assert (await store.get_stats()).current_variables == 3

    await store.delete_variable("a", "y")
    assert (await store.get_stats()).current_variables == 2

    await store.delete_session("a")
    assert (await store.get_stats()).current_variables == 1


async def test_stats_count_global_programs(store: AnyStore) -> None:
    await store.store_global_program("p1", {"a": 1})
    await store.store_global_program("p2", {"a": 2})
    await store.store_global_program("p1", {"a": 3})
    assert (await store.get_stats()).global_programs == 2

    await store.delete_global_program("p1")
    assert (await store.get_stats()).global_programs == 1


async def test_stats_count_commands_processed_including_failures(store: AnyStore) -> None:
    await store.create_session("s")
    first = await store.get_stats()

    for _ in range(5):
        await store.session_exists("s")
    second = await store.get_stats()
    for _ in range(5):
        await store.session_exists("s")
    for _ in range(5):
        with pytest.raises(SessionNotFound):
            await store.get_session("nope")
    third = await store.get_stats()

    first_delta = second.commands_processed - first.commands_processed
    assert first_delta in (5, 6)  # depending on whether get_stats counts itself
    assert third.commands_processed - second.commands_processed == first_delta + 5


async def test_stats_mailbox_depth_shows_queued_calls(store: AnyStore) -> None:
    await store.create_session("s")
    assert (await store.get_stats()).mailbox_depth == 0

    results = await asyncio.gather(
        store.get_stats(), *(store.session_exists("s") for _ in range(50))
    )

    stats = results[0]
    assert isinstance(stats, StoreStats)
    assert 1 <= stats.mailbox_depth <= 51
    assert (await store.get_stats()).mailbox_depth == 0


# --------------------------------------------------------------------------
# limits, workers


async def test_max_sessions_raises_session_limit_exceeded(open_store: OpenStore) -> None:
    async with open_store(max_sessions=2) as limited:
        await limited.create_session("a")
        await limited.create_session("b")

        with pytest.raises(SessionLimitExceeded):
            await limited.create_session("c")

        assert sorted(await limited.list_sessions()) == ["a", "b"]
        assert (await limited.create_session("a")).id == "a"  # existing: still fine
        await limited.delete_session("b")
        assert (await limited.create_session("c")).id == "c"
        stats = await limited.get_stats()
        assert stats.sessions_created == 3
        assert stats.current_sessions == 2


async def test_expired_sessions_do_not_count_toward_max_sessions(open_store: OpenStore) -> None:
    clock = FakeClock()
    async with open_store(max_sessions=1, clock=clock) as limited:
        await limited.create_session("a", ttl=10)
        clock.advance(11)

        assert (await limited.create_session("b")).id == "b"
        assert await limited.list_sessions() == ["b"]


async def test_store_worker_session_creates_missing_session(store: AnyStore) -> None:
    await store.store_worker_session("s", "worker-1")

    session = await store.get_session("s")
    assert session.last_worker_id == "worker-1"
    assert session.ttl == 3600.0
    assert (await store.get_stats()).current_sessions == 1


async def test_store_worker_session_updates_existing_session_in_place(
    store: AnyStore,
) -> None:
    await store.create_session("s", ttl=50, metadata={"a": 1})
    await store.register_variable("s", "x", "integer", 7)

    await store.store_worker_session("s", "worker-1")
    await store.store_worker_session("s", "worker-2")

    session = await store.get_session("s")
    assert session.last_worker_id == "worker-2"
    assert session.ttl == 50
    assert dict(session.metadata) == {"a": 1}
    assert session.variable_count == 1
    assert await store.get_variable_value("s", "x") == 7
    assert (await store.get_stats()).sessions_created == 1


# --------------------------------------------------------------------------
# programs


async def test_session_programs_store_get_delete(store: AnyStore, session_id: str) -> None:
    await store.store_program(session_id, "prog", {"signature": "a -> b"})

    assert await store.get_program(session_id, "prog") == {"signature": "a -> b"}
    assert tuple((await store.get_session(session_id)).program_ids) == ("prog",)

    await store.store_program(session_id, "prog", {"signature": "c -> d"})
    assert await store.get_program(session_id, "prog") == {"signature": "c -> d"}

    await store.delete_program(session_id, "prog")
    await store.delete_program(session_id, "prog")
    with pytest.raises(ProgramNotFound):
        await store.get_program(session_id, "prog")
    assert tuple((await store.get_session(session_id)).program_ids) == ()


async def test_session_programs_are_scoped_to_their_session(store: AnyStore) -> None:
    await store.create_session("a")
    await store.create_session("b")
    await store.store_program("a", "prog", [1, 2])

    with pytest.raises(ProgramNotFound):
        await store.get_program("b", "prog")
    with pytest.raises(ProgramNotFound):
        await store.get_global_program("prog")
    with pytest.raises(SessionNotFound):
        await store.store_program("missing", "prog", [1])


async def test_program_data_is_copied_in_and_out(store: AnyStore, session_id: str) -> None:
    data: dict[str, list[int]] = {"steps": [1, 2]}
    await store.store_program(session_id, "prog", data)
    data["steps"].append(3)

    got = await store.get_program(session_id, "prog")
    assert got == {"steps": [1, 2]}
    assert isinstance(got, dict)
    got["steps"].append(4)
    assert await store.get_program(session_id, "prog") == {"steps": [1, 2]}


async def test_global_programs_store_get_delete(store: AnyStore) -> None:
    await store.store_global_program("g", {"v": 1})

    assert await store.get_global_program("g") == {"v": 1}
    await store.delete_global_program("g")
    await store.delete_global_program("g")
    with pytest.raises(ProgramNotFound):
        await store.get_global_program("g")


async def test_global_programs_expire_global_program_ttl_after_being_stored(
    open_store: OpenStore,
) -> None:
    clock = FakeClock()
    async with open_store(clock=clock, global_program_ttl=100) as store:
        await store.store_global_program("g", {"v": 1})
        clock.advance(90)
        assert await store.get_global_program("g") == {"v": 1}  # reading does not extend

        clock.advance(11)

        with pytest.raises(ProgramNotFound):
            await store.get_global_program("g")


async def test_storing_a_global_program_again_restarts_its_ttl(open_store: OpenStore) -> None:
    clock = FakeClock()
    async with open_store(clock=clock, global_program_ttl=100) as store:
        await store.store_global_program("g", {"v": 1})
        clock.advance(90)
        await store.store_global_program("g", {"v": 2})
        clock.advance(90)

        assert await store.get_global_program("g") == {"v": 2}
        clock.advance(11)
        with pytest.raises(ProgramNotFound):
            await store.get_global_program("g")


# --------------------------------------------------------------------------
# failed calls


async def _missing_variable(store: AnyStore, sid: str) -> object:
    return await store.get_variable(sid, "nope")


async def _update_breaking_constraint(store: AnyStore, sid: str) -> object:
    return await store.update_variable(sid, "x", 1000)


async def _register_unknown_type(store: AnyStore, sid: str) -> object:
    return await store.register_variable(sid, "y", "no-such-type", 1)


async def _register_taken_name(store: AnyStore, sid: str) -> object:
    return await store.register_variable(sid, "x", "integer", 1)


async def _atomic_batch_failure(store: AnyStore, sid: str) -> object:
    return await store.update_variables(sid, {"x": 1, "nope": 2}, atomic=True)


async def _delete_missing_variable(store: AnyStore, sid: str) -> object:
    await store.delete_variable(sid, "nope")
    return None


async def _missing_program(store: AnyStore, sid: str) -> object:
    return await store.get_program(sid, "nope")


FAILING_CALLS: list[tuple[Call, type[SessionStoreError]]] = [
    (_missing_variable, VariableNotFound),
    (_update_breaking_constraint, ConstraintViolation),
    (_register_unknown_type, UnknownType),
    (_register_taken_name, VariableExists),
    (_atomic_batch_failure, AtomicUpdateError),
    (_delete_missing_variable, VariableNotFound),
    (_missing_program, ProgramNotFound),
]


@pytest.mark.parametrize(("call", "error"), FAILING_CALLS, ids=lambda c: getattr(c, "__name__", ""))
async def test_failed_call_does_not_touch_the_session(
    clock_store: tuple[AnyStore, FakeClock], call: Call, error: type[SessionStoreError]
) -> None:
    store, clock = clock_store
    await store.create_session("s", ttl=10)
    await store.register_variable("s", "x", "integer", 0, constraints={"max": 10})
    clock.advance(6)

    with pytest.raises(error):
        await call(store, "s")

    clock.advance(6)  # 12 s since the last successful call
    assert not await store.session_exists("s")


async def test_failed_call_leaves_last_accessed_unchanged(
    clock_store: tuple[AnyStore, FakeClock],
) -> None:
    store, clock = clock_store
    await store.create_session("s", ttl=10)
    await store.create_session("witness", ttl=10)
    clock.advance(6)
    with pytest.raises(VariableNotFound):
        await store.get_variable("s", "nope")
    await store.get_session("witness")

    clock.advance(6)

    assert not await store.session_exists("s")
    assert await store.session_exists("witness")


# --------------------------------------------------------------------------
# timestamps


async def test_session_timestamps_are_wall_clock(store: AnyStore) -> None:
    before = time.time()
    session = await store.create_session("s")
    touched = await store.get_session("s")
    after = time.time()

    assert before - 1 <= session.created_at <= after + 1
    assert before - 1 <= session.last_accessed <= after + 1
    assert before - 1 <= touched.last_accessed <= after + 1
    assert touched.created_at == session.created_at
    assert touched.last_accessed >= session.last_accessed


async def test_variable_timestamps_are_wall_clock(store: AnyStore, session_id: str) -> None:
    before = time.time()
    await store.register_variable(session_id, "x", "integer", 1)
    updated = await store.update_variable(session_id, "x", 2)
    after = time.time()

    assert before - 1 <= updated.created_at <= after + 1
    assert before - 1 <= updated.updated_at <= after + 1
    assert updated.updated_at >= updated.created_at
    exported = await store.export_variables(session_id)
    assert exported[0]["created_at"] == updated.created_at


async def test_session_counts_variables_and_updates(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "x", "integer", 0, constraints={"max": 10})
    await store.register_variable(session_id, "y", "integer", 0)
    await store.update_variable(session_id, "x", 1)
    await store.update_variables(session_id, {"x": 2, "y": 3, "nope": 4})
    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "x", 11)

    session = await store.get_session(session_id)

    assert session.variable_count == 2
    assert session.total_variable_updates == 3


async def test_the_periodic_sweep_removes_expired_sessions_by_itself(
    open_store: OpenStore,
) -> None:
    clock = FakeClock()
    async with open_store(clock=clock, cleanup_interval=0.01) as store:
        await store.create_session("short", ttl=10)
        await store.create_session("long", ttl=100)
        await store.register_variable("short", "x", "integer", 1)
        clock.advance(11)
        for _ in range(500):  # the sweep runs every 10 ms of real time; wait 5 s at most
            await asyncio.sleep(0.01)
            stats = await store.get_stats()
            if stats.sessions_expired:
                break
        assert stats.sessions_expired == 1
        assert stats.cleanup_runs >= 1
        assert stats.current_sessions == 1 and stats.current_variables == 0
        assert await store.cleanup_expired_sessions() == 0  # nothing was left for it
