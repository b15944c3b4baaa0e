"""Reads that skip the mailbox: same answers, same errors, same touches and counts."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import FakeClock

from sessionactor import (
    InvalidArgument,
    SessionNotFound,
    SessionStore,
    StoreClosed,
    VariableNotFound,
)

# The *_nowait reads exist only next to the actor, on its own loop.
pytestmark = pytest.mark.local_only

SID = "s1"


async def _store_with_variables(store: SessionStore) -> None:
    await store.create_session(SID)
    await store.register_variable(SID, "a", "integer", 1)
    await store.register_variable(SID, "b", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
    await store.register_variable(SID, "temp_x", "string", "hot")


async def test_nowait_reads_answer_as_the_mailbox_reads_do(store: SessionStore) -> None:
    await _store_with_variables(store)
    await store.update_variable(SID, "a", 2)
    assert store.get_variable_nowait(SID, "a") == await store.get_variable(SID, "a")
    assert store.get_variable_value_nowait(SID, "b") == 0.5
    assert store.get_variable_value_nowait(SID, "nope", "dflt") == "dflt"
    assert store.get_variable_value_nowait("no-session", "a", 7) == 7
    assert store.get_variables_nowait(SID, ["a", "nope"]) == await store.get_variables(
        SID, ["a", "nope"]
    )
    listed = store.list_variables_nowait(SID, "temp_*")
    assert [variable.name for variable in listed] == ["temp_x"]


async def test_nowait_reads_raise_the_same_errors(store: SessionStore) -> None:
    await _store_with_variables(store)
    with pytest.raises(SessionNotFound):
        store.get_variable_nowait("missing", "a")
    with pytest.raises(VariableNotFound) as caught:
        store.get_variable_nowait(SID, "missing")
    assert caught.value.identifier == "missing"
    with pytest.raises(InvalidArgument):
        store.get_variable_nowait(SID, 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        store.list_variables_nowait(SID, 3)  # type: ignore[arg-type]


async def test_nowait_reads_touch_the_session_and_count() -> None:
    clock = FakeClock()
    async with SessionStore(clock=clock, default_ttl=10.0) as store:
        await _store_with_variables(store)
        gets_before = store._state.counters.operations().get(("get", "integer"), 0)
        for _ in range(3):
            clock.advance(8.0)
            store.get_variable_nowait(SID, "a")  # each read postpones expiry by the ttl
        assert await store.session_exists(SID)
        after = store._state.counters.operations().get(("get", "integer"), 0)
        assert after == gets_before + 3
        clock.advance(10.0)
        with pytest.raises(SessionNotFound):
            store.get_variable_nowait(SID, "a")


async def test_nowait_reads_never_see_half_an_atomic_batch(store: SessionStore) -> None:
    await store.create_session(SID)
    names = [f"v{index}" for index in range(20)]
    for name in names:
        await store.register_variable(SID, name, "integer", 0)
    seen: list[set[object]] = []

    async def writer() -> None:
        for round_ in range(1, 200):
            await store.update_variables(SID, dict.fromkeys(names, round_), atomic=True)

    async def reader() -> None:
        for _ in range(400):
            batch = store.get_variables_nowait(SID, names)
            seen.append({variable.value for variable in batch.found.values()})
            await asyncio.sleep(0)

    await asyncio.gather(writer(), writer(), reader())
    assert all(len(values) == 1 for values in seen)
    assert len({next(iter(values)) for values in seen}) > 1  # the reader saw progress


async def test_nowait_reads_need_a_running_store() -> None:
    store = SessionStore()
    with pytest.raises(StoreClosed):
        store.get_variable_nowait(SID, "a")
    async with store:
        await store.create_session(SID)
    with pytest.raises(StoreClosed):
        store.get_variable_nowait(SID, "a")


async def test_nowait_reads_refuse_other_threads(store: SessionStore) -> None:
    await _store_with_variables(store)
    errors: list[BaseException] = []

    def read_from_thread() -> None:
        try:
            store.get_variable_nowait(SID, "a")
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=read_from_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "own event loop" in str(errors[0])
