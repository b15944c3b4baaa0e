"""What a new user tripped on: each fixed, each pinned here.

The public API is listed and shown by ``help()``; the constructor documents every
option; misusing ``watch_variables`` or ``SessionStore`` says what to write; a
store that was never started says how to start it; register-if-absent is
idempotent under concurrency; ``ValidationError`` takes its value by position;
snapshots hash; a NaN against a bound says it is not a number; and the wall
clock of every timestamp moves.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import pydoc
import re
import threading
import time
from collections.abc import AsyncIterator

import anyio
import attrs
import pytest

import sessionactor
from sessionactor import (
    BatchGet,
    BlockingSessionStore,
    ConstraintViolation,
    RemoteSessionStore,
    SessionServer,
    SessionStore,
    StoreClosed,
    ValidationError,
    Variable,
    VariableChange,
    VariableExists,
    connect,
)
from sessionactor._frozen import FrozenMap
from sessionactor.state import UpdateMetadata

SID = "s1"
PROMPT = 10.0


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with SessionStore() as running:
        await running.create_session(SID)
        yield running


# --------------------------------------------------------------------------
# The public API is listed, and help() shows it


def test_all_lists_exactly_what_the_package_imports_sorted() -> None:
    source = inspect.getsource(sessionactor)
    imported = re.findall(r"^from \S+ import (\w+) as \1$", source, re.MULTILINE)
    assert sessionactor.__all__ == sorted(imported)
    for name in sessionactor.__all__:
        assert getattr(sessionactor, name) is not None
    for public in ("SessionStore", "BlockingSessionStore", "Limits", "ValidationError"):
        assert public in sessionactor.__all__


def test_help_of_the_package_shows_every_public_name() -> None:
    text = pydoc.plain(pydoc.render_doc(sessionactor))
    classes = text[text.index("CLASSES") :]
    for name in sessionactor.__all__:
        assert re.search(rf"\b{name}\b", classes), f"help(sessionactor) does not show {name}"
    assert "class SessionStore(" in classes


@pytest.mark.parametrize("cls", [SessionStore, SessionServer, RemoteSessionStore])
def test_help_documents_every_constructor_option(cls: type) -> None:
    text = pydoc.plain(pydoc.render_doc(cls))
    options = [name for name in inspect.signature(cls).parameters if name != "self"]
    assert options
    for name in options:
        assert re.search(rf"^\s*\|?\s+{name}: \S", text, re.MULTILINE), (
            f"help({cls.__name__}) does not document {name}"
        )


def test_a_blocking_store_takes_exactly_the_options_it_says_it_does() -> None:
    """Its help says: keyword arguments are those of SessionStore."""
    assert "those of :class:`SessionStore`" in (BlockingSessionStore.__doc__ or "")
    blocking = inspect.signature(BlockingSessionStore).parameters
    store = inspect.signature(SessionStore).parameters
    assert [(p.name, p.kind, p.default) for p in blocking.values()] == [
        (p.name, p.kind, p.default) for p in store.values()
    ]


# --------------------------------------------------------------------------
# Misuse says what to write


async def test_async_for_over_watch_variables_without_async_with_says_what_to_write(
    store: SessionStore,
) -> None:
    with pytest.raises(TypeError) as misuse:
        async for _ in store.watch_variables(SID):
            pass
    message = str(misuse.value)
    assert "async with store.watch_variables(" in message
    assert "async for change in changes" in message
    assert store._watchers == {} and store._state.watched == {}


async def test_plain_with_over_watch_variables_says_what_to_write(store: SessionStore) -> None:
    with pytest.raises(TypeError, match="use `async with`") as misuse, store.watch_variables(SID):
        pass
    assert "BlockingSessionStore" in str(misuse.value)
    assert store._watchers == {}


async def test_plain_with_over_a_mirror_says_what_to_write(store: SessionStore) -> None:
    with pytest.raises(TypeError, match="async with"), store.mirror(SID):
        pass


async def test_misusing_watch_variables_and_mirror_in_other_ways_says_what_to_write(
    store: SessionStore,
) -> None:
    """A plain ``for`` and an ``await`` over either, and ``async for`` over a mirror:
    each a TypeError that says what to write, and nothing subscribed."""
    with pytest.raises(TypeError, match=r"async with store\.watch_variables\("):
        for _ in store.watch_variables(SID):
            pass
    with pytest.raises(TypeError, match=r"async with store\.watch_variables\("):
        await store.watch_variables(SID)
    with pytest.raises(TypeError, match=r"async with store\.mirror\("):
        async for _ in store.mirror(SID):
            pass
    with pytest.raises(TypeError, match=r"async with store\.mirror\("):
        for _ in store.mirror(SID):
            pass
    with pytest.raises(TypeError, match=r"async with store\.mirror\("):
        await store.mirror(SID)
    assert store._watchers == {} and store._state.watched == {}


def test_plain_with_over_a_session_store_says_what_to_write() -> None:
    store = SessionStore()
    with pytest.raises(TypeError) as misuse, store:
        pass
    message = str(misuse.value)
    assert "async with SessionStore() as store:" in message
    assert "BlockingSessionStore" in message
    assert not store.running


def test_plain_with_over_a_remote_store_says_what_to_write() -> None:
    remote = connect("unix:/nonexistent/store.sock")
    with pytest.raises(TypeError) as misuse, remote:
        pass
    message = str(misuse.value)
    assert "async with connect(...) as store:" in message
    assert "BlockingSessionStore.connect(" in message
    assert not remote.connected


async def test_the_right_way_then_works(store: SessionStore) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    with anyio.fail_after(PROMPT):
        async with store.watch_variables(SID) as changes:
            async for change in changes:
                assert change.kind == "initial"
                break


# --------------------------------------------------------------------------
# A store never started says how to start it


START_ADVICE = ("async with SessionStore() as store:", "task_group.start(store.run)")


async def test_a_store_never_started_says_how_to_start_it() -> None:
    store = SessionStore()
    calls = [
        store.create_session(SID),
        store.get_variable(SID, "x"),
        store.update_variables(SID, {"x": 1}),
        store.get_stats(),
    ]
    for call in calls:
        with pytest.raises(StoreClosed) as closed:
            await call
        assert all(advice in str(closed.value) for advice in START_ADVICE), closed.value
    with pytest.raises(StoreClosed) as closed:
        store.get_variable_nowait(SID, "x")
    assert all(advice in str(closed.value) for advice in START_ADVICE)
    with pytest.raises(StoreClosed) as closed:
        async with store.watch_variables(SID):
            pass
    assert all(advice in str(closed.value) for advice in START_ADVICE)


async def test_a_stopped_store_says_it_stopped_not_how_to_start_it() -> None:
    async with SessionStore() as store:
        pass
    with pytest.raises(StoreClosed, match="has stopped") as closed:
        await store.create_session(SID)
    assert "async with" not in str(closed.value)


async def test_started_the_way_it_says_it_works() -> None:
    store = SessionStore()
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        assert (await store.create_session(SID)).id == SID
        tg.cancel_scope.cancel()
    assert not store.running


# --------------------------------------------------------------------------
# Register-if-absent


async def test_exist_ok_returns_the_existing_id_and_changes_nothing(store: SessionStore) -> None:
    variable_id = await store.register_variable(
        SID, "x", "float", 0.5, constraints={"max": 1.0}, metadata={"owner": "first"}
    )
    await store.update_variable(SID, "x", 0.7)
    before = await store.get_variable(SID, "x")
    revision = store._state.revision
    with anyio.fail_after(PROMPT):
        async with store.watch_variables(SID, include_initial=False) as changes:
            again = await store.register_variable(
                SID,
                "x",
                "float",
                0.1,
                constraints={"max": 5.0},
                metadata={"owner": "second"},
                description="ignored",
                exist_ok=True,
            )
            assert again == variable_id
            after = await store.get_variable(SID, "x")
            assert after == before  # value, version, revision, constraints, metadata, times
            assert store._state.revision == revision
            await store.update_variable(SID, "x", 0.8)
            first = await anext(changes)  # no "registered" came before it
    assert (first.kind, first.version) == ("updated", before.version + 1)


async def test_exist_ok_leaves_the_variable_exactly_as_it_was(store: SessionStore) -> None:
    await store.register_variable(SID, "x", "integer", 3, metadata={"k": 1})
    before = await store.get_variable(SID, "x")
    revision = store._state.revision
    assert await store.register_variable(SID, "x", "integer", 9, exist_ok=True) == before.id
    assert await store.get_variable(SID, "x") == before
    assert store._state.revision == revision


async def test_exist_ok_with_another_type_is_still_variable_exists(store: SessionStore) -> None:
    await store.register_variable(SID, "x", "integer", 3)
    with pytest.raises(VariableExists) as exists:
        await store.register_variable(SID, "x", "float", 3.0, exist_ok=True)
    assert exists.value.name == "x" and exists.value.session_id == SID
    with pytest.raises(VariableExists):
        await store.register_variable(SID, "x", "integer", 3)  # without exist_ok
    assert (await store.get_variable(SID, "x")).type == "integer"


async def test_two_hundred_concurrent_register_if_absent_get_one_id(store: SessionStore) -> None:
    ids: list[str] = []

    async def register(caller: int) -> None:
        ids.append(await store.register_variable(SID, "shared", "integer", caller, exist_ok=True))

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            for caller in range(200):
                tg.start_soon(register, caller)
    assert len(ids) == 200 and len(set(ids)) == 1
    variable = await store.get_variable(SID, "shared")
    assert variable.id == ids[0] and variable.version == 0 and variable.value == 0
    assert (await store.get_session(SID)).variable_count == 1


def test_threads_registering_if_absent_get_one_id() -> None:
    with BlockingSessionStore() as blocking:
        blocking.create_session(SID)
        ids: list[str] = []
        barrier = threading.Barrier(8)

        def register() -> None:
            barrier.wait(PROMPT)
            for _ in range(25):
                ids.append(blocking.register_variable(SID, "shared", "integer", 1, exist_ok=True))

        threads = [threading.Thread(target=register) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROMPT)
            assert not thread.is_alive()
        assert len(ids) == 200 and len(set(ids)) == 1


# --------------------------------------------------------------------------
# Errors and snapshots


@pytest.mark.parametrize("error_class", [ValidationError, ConstraintViolation])
def test_validation_error_takes_its_value_by_position(
    error_class: type[ValidationError],
) -> None:
    error = error_class("msg", 5)
    assert error.value == 5 and str(error) == "msg" and error.message == "msg"
    assert error_class("msg", value=[1]).value == [1]
    assert error_class("msg").value is None
    assert isinstance(error, ValueError)


async def test_variables_hash_and_equal_snapshots_hash_equal(store: SessionStore) -> None:
    values: dict[str, tuple[str, object]] = {
        "f": ("float", 0.5),
        "i": ("integer", 7),
        "s": ("string", "text"),
        "b": ("boolean", True),
        "c": ("choice", "a"),
        "m": ("module", "json"),
        "e": ("embedding", [1.0, 2.0]),
        "t": ("tensor", {"shape": [2], "data": [1.0, 2.0]}),
    }
    for name, (type_name, value) in values.items():
        await store.register_variable(SID, name, type_name, value, metadata={"tags": ["x"]})
        await store.update_variable(SID, name, value)  # UpdateMetadata, built lazily
    listed = await store.list_variables(SID)
    assert len({hash(variable) for variable in listed}) == len(values)
    assert len(set(listed)) == len(values)
    for variable in listed:
        twin = attrs.evolve(variable, metadata=FrozenMap(dict(variable.metadata)))
        assert type(variable.metadata) is UpdateMetadata and type(twin.metadata) is FrozenMap
        assert twin == variable and hash(twin) == hash(variable)
    by_variable = {variable: variable.name for variable in listed}
    assert by_variable[await store.get_variable(SID, "t")] == "t"
    session = await store.get_session(SID)
    stats = await store.get_stats()
    hash(session)
    hash(stats)
    change = VariableChange("updated", SID, "id", "x", 1, 2, 1, 1, FrozenMap())
    assert hash(change) == hash(attrs.evolve(change))


def test_a_batch_get_says_clearly_it_is_unhashable() -> None:
    batch = BatchGet({}, [])
    with pytest.raises(TypeError, match=r"unhashable type: 'BatchGet'"):
        hash(batch)
    with pytest.raises(TypeError, match="unhashable"):
        {batch}  # noqa: B018


# --------------------------------------------------------------------------
# NaN against a bound


async def test_nan_against_a_minimum_says_it_is_not_a_number(store: SessionStore) -> None:
    await store.register_variable(SID, "t", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
    for nan in (math.nan, float("nan"), "NaN"):
        with pytest.raises(ConstraintViolation) as refused:
            await store.update_variable(SID, "t", nan)
        assert str(refused.value) == "value nan is not a number, so it cannot meet minimum 0.0"
    results = await store.update_variables(SID, {"t": math.nan})
    assert str(results["t"]) == "value nan is not a number, so it cannot meet minimum 0.0"
    with pytest.raises(ConstraintViolation, match=r"^value nan is not a number, so it cannot"):
        await store.register_variable(SID, "u", "float", math.nan, constraints={"min": 0.0})
    assert (await store.get_variable(SID, "t")).value == 0.5


async def test_nan_against_a_maximum_only_says_it_is_not_a_number(store: SessionStore) -> None:
    await store.register_variable(SID, "t", "float", 0.5, constraints={"max": 1})
    with pytest.raises(ConstraintViolation) as refused:
        await store.update_variable(SID, "t", math.nan)
    assert str(refused.value) == "value nan is not a number, so it cannot meet maximum 1"


async def test_nan_in_an_import_against_a_bound_says_it_is_not_a_number(
    store: SessionStore,
) -> None:
    entry = {"id": "var_t_1", "name": "t", "type": "float", "value": "NaN"}
    entry["constraints"] = {"min": 0.0}  # type: ignore[assignment]
    with pytest.raises(Exception) as refused:
        await store.import_variables(SID, [entry])
    assert "value nan is not a number, so it cannot meet minimum 0.0" in str(refused.value)


# --------------------------------------------------------------------------
# The wall clock moves


async def later() -> None:
    """Let the wall clock pass a millisecond (timestamps are shown to the millisecond)."""
    await asyncio.sleep(0.003)


async def test_wall_clock_times_advance_between_calls(store: SessionStore) -> None:
    started = time.time()
    first = await store.create_session("a")
    await store.register_variable("a", "x", "float", 0.0)
    registered = await store.get_variable("a", "x")
    await later()
    second = await store.create_session("b")
    await store.register_variable("a", "y", "float", 0.0)
    assert second.created_at > first.created_at
    assert (await store.get_variable("a", "y")).created_at > registered.created_at

    touched = await store.get_session("a")
    await later()
    assert (await store.get_session("a")).last_accessed > touched.last_accessed

    updated = await store.update_variable("a", "x", 1.0)
    stamp = updated.metadata["updated_at"]
    await later()
    again = await store.update_variable("a", "x", 2.0)
    assert again.updated_at > updated.updated_at > registered.updated_at
    assert again.metadata["updated_at"] != stamp  # the ISO text moves too
    assert again.created_at == registered.created_at

    await later()
    batch = await store.update_variables("a", {"y": 1.0})
    assert batch["y"].updated_at > again.updated_at  # type: ignore[union-attr]
    await later()
    imported = [{"id": "var_z_90", "name": "z", "type": "float", "value": 0.0}]
    await store.import_variables("a", imported)
    assert (await store.get_variable("a", "z")).created_at > batch["y"].updated_at  # type: ignore[union-attr]

    await later()
    locked = await store.start_optimization("a", "x", "opt")
    assert locked.optimization_started_at is not None
    assert locked.optimization_started_at > again.updated_at

    # Wall-clock seconds since the epoch, not a monotonic clock, and not frozen at start.
    now = time.time()
    for stamp_seconds in (first.created_at, again.updated_at, locked.optimization_started_at):
        assert started - 1 <= stamp_seconds <= now + 1


async def test_reads_without_the_mailbox_touch_with_the_current_time(store: SessionStore) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    before = (await store.get_session(SID)).last_accessed
    await later()
    store.get_variable_nowait(SID, "x")
    assert (await store.get_session(SID)).last_accessed > before


def test_wall_clock_times_advance_through_a_blocking_store() -> None:
    with BlockingSessionStore() as blocking:
        blocking.create_session(SID)
        blocking.register_variable(SID, "x", "integer", 0)
        first = blocking.update_variable(SID, "x", 1)
        deadline = time.monotonic() + PROMPT
        second = blocking.update_variable(SID, "x", 2)
        while second.updated_at == first.updated_at:  # calls in the same millisecond
            assert time.monotonic() < deadline, "the wall clock is frozen"
            second = blocking.update_variable(SID, "x", 3)
        assert second.updated_at > first.updated_at


def test_variables_compare_by_value() -> None:
    """(A reminder of why equal snapshots must hash equal: they compare equal.)"""
    a = Variable("id", "x", "float", 1.0, FrozenMap(), FrozenMap({"k": 1}), 0, 1.0, 1.0, 1)
    b = Variable("id", "x", "float", 1.0, FrozenMap(), FrozenMap({"k": 1}), 0, 1.0, 1.0, 1)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
