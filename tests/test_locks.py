"""Optimization locks (SPEC §10): start_optimization, end_optimization, leases.

Leases run on the store's clock; every test drives it with a FakeClock, none sleeps.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from conftest import AnyStore, FakeClock, backing

from sessionactor import (
    AtomicUpdateError,
    InvalidArgument,
    Variable,
    VariableLocked,
    VariableNotFound,
    VersionConflict,
)

SID = "test_session"
Clocked = tuple[AnyStore, FakeClock]


async def locked_x(store: AnyStore, lease: float | None = None) -> Variable:
    await store.register_variable(SID, "x", "integer", 0)
    await store.register_variable(SID, "y", "integer", 0)
    return await store.start_optimization(SID, "x", "opt-1", lease=lease)


async def clocked_session(clock_store: Clocked) -> tuple[AnyStore, FakeClock]:
    store, clock = clock_store
    await store.create_session(SID, ttl=math.inf)
    return store, clock


# -- what a lock shows, and what it does not change ---------------------------------------------


async def test_start_optimization_locks_and_shows_the_holder(
    store: AnyStore, session_id: str
) -> None:
    before = time.time()
    locked = await locked_x(store)
    assert locked.optimizing
    assert locked.optimizer_id == "opt-1"
    assert locked.optimization_started_at is not None
    assert before - 1 <= locked.optimization_started_at <= time.time() + 1  # wall clock
    assert await store.get_variable(SID, "x") == locked
    unlocked = await store.end_optimization(SID, "x", "opt-1")
    assert not unlocked.optimizing
    assert (unlocked.optimizer_id, unlocked.optimization_started_at) == (None, None)
    assert not (await store.get_variable(SID, "x")).optimizing


async def test_a_fresh_variable_is_not_locked(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    variable = await store.get_variable(SID, "x")
    assert (variable.optimizing, variable.optimizer_id, variable.optimization_started_at) == (
        False,
        None,
        None,
    )


async def test_locks_change_neither_version_nor_revision(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    start = await store.update_variable(SID, "x", 1)
    locked = await store.start_optimization(SID, "x", "opt", lease=30)
    unlocked = await store.end_optimization(SID, "x", "opt")
    for variable in (locked, unlocked):
        assert (variable.version, variable.revision, variable.value) == (1, start.revision, 1)
    assert (await store.update_variable(SID, "x", 2)).revision == start.revision + 1


async def test_locks_publish_no_watch_events(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    async with store.watch_variables(SID, include_initial=False) as changes:
        await store.start_optimization(SID, "x", "opt")
        await store.end_optimization(SID, "x", "opt")
        await store.update_variable(SID, "x", 1)
        event = await anext(changes)
    assert (event.kind, event.new_value) == ("updated", 1)


async def test_lock_can_be_taken_by_id_or_name(store: AnyStore, session_id: str) -> None:
    variable_id = await store.register_variable(SID, "x", "integer", 0)
    await store.start_optimization(SID, variable_id, "opt")
    with pytest.raises(VariableLocked):
        await store.update_variable(SID, "x", 1)
    await store.end_optimization(SID, "x", "opt")
    assert (await store.update_variable(SID, variable_id, 1)).version == 1


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("second", ["opt-1", "opt-2"])
async def test_a_second_start_raises_naming_the_holder(
    store: AnyStore, session_id: str, second: str
) -> None:
    first = await locked_x(store)
    with pytest.raises(VariableLocked) as caught:
        await store.start_optimization(SID, "x", second)
    assert caught.value.optimizer_id == "opt-1"
    assert "opt-1" in str(caught.value)
    assert await store.get_variable(SID, "x") == first


async def test_ending_someone_elses_lock_raises_naming_the_holder(
    store: AnyStore, session_id: str
) -> None:
    first = await locked_x(store)
    with pytest.raises(VariableLocked) as caught:
        await store.end_optimization(SID, "x", "intruder")
    assert caught.value.optimizer_id == "opt-1"
    assert await store.get_variable(SID, "x") == first


async def test_update_is_refused_unless_the_holder_passes_its_id(
    store: AnyStore, session_id: str
) -> None:
    await locked_x(store)
    with pytest.raises(VariableLocked) as caught:
        await store.update_variable(SID, "x", 1)
    assert caught.value.optimizer_id == "opt-1"
    with pytest.raises(VariableLocked):
        await store.update_variable(SID, "x", 1, optimizer_id="opt-2")
    assert (await store.get_variable(SID, "x")).version == 0

    updated = await store.update_variable(SID, "x", 1, optimizer_id="opt-1")
    assert (updated.value, updated.version) == (1, 1)
    assert updated.optimizer_id == "opt-1"  # the holder's update keeps its lock
    assert (await store.update_variable(SID, "y", 1)).version == 1  # others are free


async def test_compare_and_swap_still_applies_to_the_holder(
    store: AnyStore, session_id: str
) -> None:
    await locked_x(store)
    with pytest.raises(VersionConflict):
        await store.update_variable(SID, "x", 1, optimizer_id="opt-1", expected_version=3)
    updated = await store.update_variable(SID, "x", 1, optimizer_id="opt-1", expected_version=0)
    assert updated.version == 1


async def test_non_atomic_batch_reports_the_lock_per_key(store: AnyStore, session_id: str) -> None:
    await locked_x(store)
    result = await store.update_variables(SID, {"x": 1, "y": 2})
    assert isinstance(result["x"], VariableLocked)
    assert result["x"].optimizer_id == "opt-1"
    assert isinstance(result["y"], Variable) and result["y"].value == 2
    assert (await store.get_variable(SID, "x")).value == 0

    result = await store.update_variables(SID, {"x": 3, "y": 4}, optimizer_id="opt-1")
    assert all(isinstance(v, Variable) for v in result.values())
    assert (await store.get_variable(SID, "x")).value == 3


async def test_atomic_batch_is_refused_whole_while_a_key_is_locked(
    store: AnyStore, session_id: str
) -> None:
    await locked_x(store)
    before = await store.export_variables(SID)
    with pytest.raises(AtomicUpdateError) as caught:
        await store.update_variables(SID, {"y": 2, "x": 1}, atomic=True)
    assert set(caught.value.errors) == {"x"}
    locked = caught.value.errors["x"]
    assert isinstance(locked, VariableLocked) and locked.optimizer_id == "opt-1"
    assert await store.export_variables(SID) == before
    with pytest.raises(AtomicUpdateError):
        await store.update_variables(SID, {"y": 2, "x": 1}, atomic=True, optimizer_id="nope")

    result = await store.update_variables(SID, {"y": 2, "x": 1}, atomic=True, optimizer_id="opt-1")
    assert [v.value for v in result.values() if isinstance(v, Variable)] == [2, 1]


async def test_delete_is_refused_unless_the_holder_passes_its_id(
    store: AnyStore, session_id: str
) -> None:
    await locked_x(store)
    with pytest.raises(VariableLocked) as caught:
        await store.delete_variable(SID, "x")
    assert caught.value.optimizer_id == "opt-1"
    with pytest.raises(VariableLocked):
        await store.delete_variable(SID, "x", optimizer_id="opt-2")
    assert await store.has_variable(SID, "x")
    await store.delete_variable(SID, "x", optimizer_id="opt-1")
    assert not await store.has_variable(SID, "x")


async def test_a_name_registered_again_after_a_locked_delete_is_free(
    store: AnyStore, session_id: str
) -> None:
    await locked_x(store)
    await store.delete_variable(SID, "x", optimizer_id="opt-1")
    await store.register_variable(SID, "x", "integer", 0)
    assert not (await store.get_variable(SID, "x")).optimizing
    assert (await store.update_variable(SID, "x", 1)).version == 1


async def test_lock_refusals_are_counted(store: AnyStore, session_id: str) -> None:
    await locked_x(store)
    counters = backing(store)._state.counters  # white-box: what telemetry reports
    before = counters.lock_refusals
    with pytest.raises(VariableLocked):
        await store.update_variable(SID, "x", 1)
    with pytest.raises(VariableLocked):
        await store.start_optimization(SID, "x", "other")
    assert counters.lock_refusals == before + 2


@pytest.mark.parametrize(
    ("optimizer_id", "options"),
    [
        (None, {}),
        ("", {}),
        (5, {}),
        ("o" * 300, {}),
        ("opt", {"lease": 0}),
        ("opt", {"lease": -1}),
        ("opt", {"lease": math.nan}),
        ("opt", {"lease": True}),
        ("opt", {"lease": "10"}),
    ],
)
async def test_bad_start_arguments_raise_invalid_argument(
    store: AnyStore, session_id: str, optimizer_id: Any, options: dict[str, Any]
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    with pytest.raises(InvalidArgument):
        await store.start_optimization(SID, "x", optimizer_id, **options)
    assert not (await store.get_variable(SID, "x")).optimizing


async def test_bad_optimizer_id_on_update_raises_invalid_argument(
    store: AnyStore, session_id: str
) -> None:
    await locked_x(store)
    with pytest.raises(InvalidArgument):
        await store.update_variable(SID, "x", 1, optimizer_id=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await store.delete_variable(SID, "x", optimizer_id="")


async def test_locking_a_missing_variable_raises_variable_not_found(
    store: AnyStore, session_id: str
) -> None:
    with pytest.raises(VariableNotFound):
        await store.start_optimization(SID, "missing", "opt")
    with pytest.raises(VariableNotFound):
        await store.end_optimization(SID, "missing", "opt")


# -- leases ----------------------------------------------------------------------------------


async def test_a_lease_releases_the_lock_by_itself(clock_store: Clocked) -> None:
    store, clock = await clocked_session(clock_store)
    await locked_x(store, lease=10)
    clock.advance(9.5)
    with pytest.raises(VariableLocked):
        await store.update_variable(SID, "x", 1)
    assert (await store.get_variable(SID, "x")).optimizing
    clock.advance(0.5)
    released = await store.get_variable(SID, "x")
    assert not released.optimizing
    assert (released.optimizer_id, released.optimization_started_at) == (None, None)
    assert (await store.update_variable(SID, "x", 1)).version == 1


async def test_an_expired_lease_lets_another_optimizer_take_over(clock_store: Clocked) -> None:
    store, clock = await clocked_session(clock_store)
    await locked_x(store, lease=5)
    clock.advance(6)
    taken = await store.start_optimization(SID, "x", "opt-2")
    assert taken.optimizer_id == "opt-2"
    with pytest.raises(VariableLocked) as caught:  # the old holder has lost it
        await store.update_variable(SID, "x", 1, optimizer_id="opt-1")
    assert caught.value.optimizer_id == "opt-2"
    with pytest.raises(VariableLocked):
        await store.end_optimization(SID, "x", "opt-1")


async def test_a_lease_expiring_releases_batches_and_deletes_too(clock_store: Clocked) -> None:
    store, clock = await clocked_session(clock_store)
    await locked_x(store, lease=5)
    clock.advance(5)
    result = await store.update_variables(SID, {"x": 1}, atomic=True)
    assert isinstance(result["x"], Variable)
    await store.delete_variable(SID, "x")
    assert not await store.has_variable(SID, "x")


async def test_a_lock_without_lease_never_lapses(clock_store: Clocked) -> None:
    store, clock = await clocked_session(clock_store)
    await locked_x(store)
    clock.advance(1e9)
    assert (await store.get_variable(SID, "x")).optimizer_id == "opt-1"
    with pytest.raises(VariableLocked):
        await store.update_variable(SID, "x", 1)


async def test_ending_a_lock_early_cancels_its_lease(clock_store: Clocked) -> None:
    store, clock = await clocked_session(clock_store)
    await locked_x(store, lease=5)
    await store.end_optimization(SID, "x", "opt-1")
    await store.start_optimization(SID, "x", "opt-2")  # no lease this time
    clock.advance(100)
    assert (await store.get_variable(SID, "x")).optimizer_id == "opt-2"


async def test_leases_are_per_variable(clock_store: Clocked) -> None:
    store, clock = await clocked_session(clock_store)
    await locked_x(store, lease=5)
    await store.start_optimization(SID, "y", "opt-1", lease=50)
    clock.advance(10)
    x, y = (await store.get_variables(SID, ["x", "y"])).found.values()
    assert (x.optimizing, y.optimizing) == (False, True)


async def test_a_lease_expiry_changes_neither_version_nor_revision(clock_store: Clocked) -> None:
    store, clock = await clocked_session(clock_store)
    await store.register_variable(SID, "x", "integer", 0)
    before = await store.update_variable(SID, "x", 1)
    await store.start_optimization(SID, "x", "opt", lease=1)
    clock.advance(2)
    after = await store.get_variable(SID, "x")
    assert (after.version, after.revision) == (before.version, before.revision)
