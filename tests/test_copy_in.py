"""Copy-in has no holes: what a caller passes is plain, immutable data from the moment
of the call.

``tests/test_immutability.py`` changes arguments after a call returned. Here they
change in the window that matters more: after the call was made and before the
actor handled it (the command waits in the mailbox), and through objects that
can change without being mutated: subclasses of ``str``, ``float``, ``int`` and
``list`` whose ``__eq__``, ``__hash__``, ``__float__`` or ``__str__`` answer
differently later. Whatever happens after the call, the store acts on what the
arguments were when it was made, and keeps only exact built-in types.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import anyio
import pytest
from conftest import AnyType
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor import (
    BlockingSessionStore,
    ConstraintViolation,
    SessionStore,
    Tensor,
)
from sessionactor._actor import Actor
from sessionactor._frozen import FrozenMap

SID = "s1"
PROMPT = 10.0


class Shifty:
    """Turn every Shifty object's comparisons and hashing upside down at once."""

    flipped: ClassVar[bool] = False


class ShiftyStr(str):
    def __eq__(self, other: object) -> bool:
        return (not Shifty.flipped) and str.__eq__(self, other)

    def __hash__(self) -> int:
        return 0 if Shifty.flipped else str.__hash__(self)

    def __str__(self) -> str:
        return "flipped" if Shifty.flipped else str.__str__(self)


class ShiftyFloat(float):
    def __ge__(self, other: object) -> bool:
        return Shifty.flipped or float.__ge__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        return Shifty.flipped or float.__le__(self, other)  # type: ignore[operator]

    def __float__(self) -> float:
        return -1.0 if Shifty.flipped else float.__float__(self)


class ShiftyInt(int):
    def __eq__(self, other: object) -> bool:
        return Shifty.flipped or int.__eq__(self, other)

    def __hash__(self) -> int:
        return int.__hash__(self)

    def __float__(self) -> float:
        return -1.0 if Shifty.flipped else float(int.__int__(self))


class Tracked(list[Any]):
    """A list the caller keeps changing."""


@pytest.fixture(autouse=True)
def _steady() -> Iterator[None]:
    Shifty.flipped = False
    yield
    Shifty.flipped = False


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with SessionStore(types=[AnyType()]) as running:
        await running.create_session(SID)
        yield running


def plain(value: object) -> bool:
    """Only exact built-in immutable types (and FrozenMap, Tensor), all the way down."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes):
        return True
    if kind is tuple:
        return all(plain(item) for item in value)  # type: ignore[attr-defined]
    if kind is FrozenMap:
        return all(type(k) is str and plain(v) for k, v in value.items())  # type: ignore[attr-defined]
    if kind is Tensor:
        return plain(value.shape) and plain(value.data)  # type: ignore[attr-defined]
    return False


async def started_not_handled(store: SessionStore, call: Any) -> asyncio.Task[Any]:
    """Start ``call`` in its own task and return once it is made (its arguments copied and
    its command queued) but not handled: the actor has not run since."""
    task = asyncio.create_task(call)
    await asyncio.sleep(0)  # the task's first step: copy-in, then into the mailbox
    actor = store._actor
    assert isinstance(actor, Actor)
    assert actor.mailbox.qsize() == 1, "the call is not waiting for the actor"
    return task


# --------------------------------------------------------------------------
# Mutated after the call was made, before the actor handled it


async def test_a_list_subclass_changed_before_the_actor_handles_it_does_not_reach_the_store(
    store: SessionStore,
) -> None:
    await store.register_variable(SID, "e", "embedding", [0.0, 0.0])
    value = Tracked([1.0, 2.0])
    task = await started_not_handled(store, store.update_variable(SID, "e", value))
    value[0] = 99.0
    value.append(3.0)
    with anyio.fail_after(PROMPT):
        variable = await task
    assert variable.value == (1.0, 2.0) and type(variable.value) is tuple


async def test_nested_tensor_data_changed_before_the_actor_handles_it_does_not_reach_the_store(
    store: SessionStore,
) -> None:
    await store.register_variable(SID, "t", "tensor", {"shape": [2, 2], "data": [[0, 0], [0, 0]]})
    rows = [[1.0, 2.0], Tracked([3.0, 4.0])]
    value = {"shape": Tracked([2, 2]), "data": rows}
    task = await started_not_handled(store, store.update_variable(SID, "t", value))
    rows[1][0] = 99.0
    rows.append([5.0, 6.0])
    value["shape"][0] = 3
    with anyio.fail_after(PROMPT):
        variable = await task
    assert variable.value == Tensor((2, 2), (1.0, 2.0, 3.0, 4.0))
    assert plain(variable.value)


async def test_a_tensor_whose_lists_change_before_the_actor_handles_it_is_copied(
    store: SessionStore,
) -> None:
    class MyTensor(Tensor):
        def __deepcopy__(self, memo: dict[int, object]) -> MyTensor:
            return self  # a copy that is no copy

    await store.register_variable(SID, "t", "tensor", Tensor((2,), (0.0, 0.0)))
    data = [1.0, 2.0]
    for tensor in (Tensor([2], data), MyTensor([2], data)):  # type: ignore[arg-type]
        task = await started_not_handled(store, store.update_variable(SID, "t", tensor))
        data[0] = 99.0
        with anyio.fail_after(PROMPT):
            variable = await task
        assert variable.value == Tensor((2,), (1.0, 2.0))
        assert type(variable.value) is Tensor and plain(variable.value)
        data[0] = 1.0


async def test_a_batch_and_its_metadata_changed_before_the_actor_handles_them(
    store: SessionStore,
) -> None:
    await store.register_variable(SID, "a", "any", 0)
    await store.register_variable(SID, "b", "any", 0)
    inner = Tracked([1, 2])
    updates: dict[str, Any] = {"a": inner, "b": {"k": inner}}
    metadata: dict[str, Any] = {"tags": Tracked(["x"])}
    task = await started_not_handled(
        store, store.update_variables(SID, updates, atomic=True, metadata=metadata)
    )
    inner.append(3)
    updates["c"] = 5
    metadata["tags"].append("y")
    metadata["more"] = True
    with anyio.fail_after(PROMPT):
        results = await task
    assert set(results) == {"a", "b"}
    a, b = (await store.get_variables(SID, ["a", "b"])).found.values()
    assert a.value == (1, 2) and b.value == FrozenMap({"k": (1, 2)})
    assert a.metadata["tags"] == ("x",) and "more" not in a.metadata
    assert plain(a.value) and plain(b.value)


async def test_import_entries_changed_before_the_actor_handles_them(store: SessionStore) -> None:
    entry: dict[str, Any] = {
        "id": "var_i_1",
        "name": "i",
        "type": "any",
        "value": Tracked([1]),
        "metadata": {"k": Tracked([1])},
    }
    entries = Tracked([entry])
    task = await started_not_handled(store, store.import_variables(SID, entries))
    entry["value"].append(2)
    entry["metadata"]["k"].append(2)
    entry["name"] = "renamed"
    entries.append({"id": "var_j_1", "name": "j", "type": "any", "value": 0})
    with anyio.fail_after(PROMPT):
        assert await task == 1
    imported = await store.get_variable(SID, "i")
    assert imported.value == (1,) and imported.metadata["k"] == (1,)
    assert not await store.has_variable(SID, "j")


async def test_identifiers_changed_before_the_actor_handles_them(store: SessionStore) -> None:
    await store.register_variable(SID, "a", "any", 1)
    identifiers = Tracked(["a", "missing"])
    task = await started_not_handled(store, store.get_variables(SID, identifiers))
    identifiers[1] = "a"
    identifiers.append("other")
    with anyio.fail_after(PROMPT):
        batch = await task
    assert list(batch.found) == ["a"] and batch.missing == ["missing"]


# --------------------------------------------------------------------------
# Subclasses whose comparisons change later


async def test_constraints_from_str_subclasses_are_plain_strings(store: SessionStore) -> None:
    choices = [ShiftyStr("small"), ShiftyStr("large")]
    await store.register_variable(SID, "size", "choice", "small", constraints={"choices": choices})
    await store.register_variable(
        SID, "name", "string", "bob", constraints={"enum": [ShiftyStr("bob"), ShiftyStr("al")]}
    )
    Shifty.flipped = True  # every ShiftyStr now equals nothing and hashes to 0
    assert (await store.update_variable(SID, "size", "large")).value == "large"
    assert (await store.update_variable(SID, "name", "al")).value == "al"
    with pytest.raises(ConstraintViolation, match="must be one of: small, large"):
        await store.update_variable(SID, "size", "medium")
    exported = await store.export_variables(SID)
    assert exported[0]["constraints"] == {"choices": ["small", "large"]}
    variable = await store.get_variable(SID, "size")
    assert all(type(item) is str for item in variable.constraints["choices"])  # type: ignore[attr-defined]


async def test_numeric_bounds_from_float_subclasses_are_plain_floats(store: SessionStore) -> None:
    await store.register_variable(
        SID, "t", "float", 0.5, constraints={"min": ShiftyFloat(0.0), "max": ShiftyFloat(1.0)}
    )
    Shifty.flipped = True  # every ShiftyFloat now says it is >= and <= anything
    with pytest.raises(ConstraintViolation, match=r"above maximum 1\.0"):
        await store.update_variable(SID, "t", 2.0)
    with pytest.raises(ConstraintViolation, match=r"below minimum 0\.0"):
        await store.update_variable(SID, "t", -2.0)
    variable = await store.get_variable(SID, "t")
    assert type(variable.constraints["max"]) is float
    assert variable.value == 0.5


async def test_constraints_flipped_before_the_actor_handles_them_are_what_was_given(
    store: SessionStore,
) -> None:
    task = await started_not_handled(
        store,
        store.register_variable(
            SID, "size", "choice", "small", constraints={"choices": [ShiftyStr("small")]}
        ),
    )
    Shifty.flipped = True
    with anyio.fail_after(PROMPT):
        await task
    with pytest.raises(ConstraintViolation):
        await store.update_variable(SID, "size", "flipped")


async def test_values_of_subclasses_are_stored_as_the_exact_built_in(store: SessionStore) -> None:
    await store.register_variable(SID, "s", "string", ShiftyStr("text"))
    await store.register_variable(SID, "f", "float", ShiftyFloat(0.25))
    await store.register_variable(SID, "i", "integer", ShiftyInt(7))
    await store.register_variable(
        SID, "c", "choice", ShiftyStr("a"), constraints={"choices": ["a"]}
    )
    Shifty.flipped = True
    found = (await store.get_variables(SID, ["s", "f", "i", "c"])).found
    assert [(type(v.value), v.value) for v in found.values()] == [
        (str, "text"),
        (float, 0.25),
        (int, 7),
        (str, "a"),
    ]


async def test_a_type_name_is_its_text_whatever_a_subclass_says_later(
    store: SessionStore,
) -> None:
    class Liar(str):
        def __str__(self) -> str:
            return "integer"

    await store.register_variable(SID, "f", Liar("float"), 0.5)
    variable = await store.get_variable(SID, "f")
    assert variable.type == "float" and type(variable.type) is str and variable.value == 0.5


async def test_a_ttl_is_the_number_given_whatever_its_float_says_later(
    store: SessionStore,
) -> None:
    task = await started_not_handled(store, store.create_session("t", ttl=ShiftyFloat(600.0)))
    Shifty.flipped = True  # __float__ now says -1
    with anyio.fail_after(PROMPT):
        session = await task
    assert session.ttl == 600.0 and type(session.ttl) is float
    updated = await store.update_session("t", ttl=ShiftyInt(30))
    assert updated.ttl == 30.0
    await store.register_variable("t", "x", "any", 0)
    locked = await store.start_optimization("t", "x", "opt", lease=ShiftyFloat(5.0))
    assert locked.optimizing


async def test_expected_versions_from_int_subclasses_are_plain(store: SessionStore) -> None:
    await store.register_variable(SID, "a", "any", 0)
    Shifty.flipped = True  # every ShiftyInt now equals anything
    results = await store.update_variables(SID, {"a": 1}, expected_versions={"a": ShiftyInt(5)})
    assert type(results["a"]).__name__ == "VersionConflict"
    assert (await store.get_variable(SID, "a")).version == 0


# --------------------------------------------------------------------------
# For all values: nothing but exact built-ins is stored

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.integers(-(10**6), 10**6).map(ShiftyInt),
    st.floats(allow_nan=False),
    st.floats(allow_nan=False).map(ShiftyFloat),
    st.text(max_size=5),
    st.text(max_size=5).map(ShiftyStr),
    st.binary(max_size=5),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(Tracked),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=4),
    ),
    max_leaves=20,
)


def as_given(value: object) -> object:
    """What the value was when it was passed, in plain types."""
    if isinstance(value, ShiftyStr):
        return str.__str__(value)
    if isinstance(value, ShiftyFloat):
        return float.__float__(value)
    if isinstance(value, ShiftyInt):
        return int.__int__(value)
    if isinstance(value, list | tuple):
        return tuple(as_given(item) for item in value)
    if isinstance(value, dict):
        return {key: as_given(item) for key, item in value.items()}
    return value


def as_stored(value: object) -> object:
    if type(value) is FrozenMap:
        return {key: as_stored(item) for key, item in value.items()}
    if type(value) is tuple:
        return tuple(as_stored(item) for item in value)
    return value


@settings(max_examples=60)
@given(VALUES)
def test_any_value_is_stored_as_plain_data_equal_to_what_was_given(value: object) -> None:
    given_then = as_given(value)

    async def scenario() -> None:
        async with SessionStore(types=[AnyType()]) as running:
            await running.create_session(SID)
            task = asyncio.create_task(running.register_variable(SID, "v", "any", value))
            await asyncio.sleep(0)  # made: copied in, queued
            Shifty.flipped = True
            _mutate(value)
            await task
            stored = (await running.get_variable(SID, "v")).value
            Shifty.flipped = False
            assert plain(stored)
            assert as_stored(stored) == given_then

    try:
        asyncio.run(scenario())
    finally:
        Shifty.flipped = False


def _mutate(value: object) -> None:
    if isinstance(value, list):
        for item in value:
            _mutate(item)
        value.append("added")
    elif isinstance(value, dict):
        for item in list(value.values()):
            _mutate(item)
        value["added"] = 1


# --------------------------------------------------------------------------
# The same through BlockingSessionStore


@pytest.fixture
def blocking() -> Iterator[BlockingSessionStore]:
    with BlockingSessionStore(types=[AnyType()]) as running:
        running.create_session(SID)
        yield running


class Gate:
    """Holds the store's loop (so no call is handled) until opened."""

    def __init__(self, blocking: BlockingSessionStore) -> None:
        self.closed = threading.Event()
        self.opened = threading.Event()
        loop = blocking.loop
        assert loop is not None
        loop.call_soon_threadsafe(self._hold)
        assert self.closed.wait(PROMPT)

    def _hold(self) -> None:
        self.closed.set()
        self.opened.wait(PROMPT)  # blocks the loop thread on purpose

    def open(self) -> None:
        self.opened.set()


class Reported(list[Any]):
    """A list that says when it has been read to its end (copy-in reads it once)."""

    def __init__(self, items: list[Any], read: threading.Event) -> None:
        super().__init__(items)
        self.read = read

    def __iter__(self) -> Iterator[Any]:
        yield from super().__iter__()
        self.read.set()


def test_a_blocking_call_copies_in_the_calling_thread_before_the_loop_handles_it(
    blocking: BlockingSessionStore,
) -> None:
    blocking.register_variable(SID, "e", "embedding", [0.0, 0.0])
    read = threading.Event()
    value = Reported([1.0, 2.0], read)
    outcome: list[object] = []
    gate = Gate(blocking)
    worker = threading.Thread(
        target=lambda: outcome.append(blocking.update_variable(SID, "e", value))
    )
    try:
        worker.start()
        assert read.wait(PROMPT), "the call did not copy its value"
        value[0] = 99.0  # the loop is held: the actor has not handled the call
        value.append(3.0)
    finally:
        gate.open()
        worker.join(PROMPT)
    assert not worker.is_alive()
    assert blocking.get_variable(SID, "e").value == (1.0, 2.0)


def test_blocking_constraints_from_shifty_subclasses_are_plain(
    blocking: BlockingSessionStore,
) -> None:
    blocking.register_variable(
        SID, "size", "choice", "small", constraints={"choices": [ShiftyStr("small")]}
    )
    blocking.register_variable(SID, "t", "float", 0.5, constraints={"max": ShiftyFloat(1.0)})
    Shifty.flipped = True
    assert blocking.update_variable(SID, "size", "small").version == 1
    with pytest.raises(ConstraintViolation, match="must be one of: small"):
        blocking.update_variable(SID, "size", "flipped")
    with pytest.raises(ConstraintViolation, match=r"above maximum 1\.0"):
        blocking.update_variable(SID, "t", 2.0)


def test_blocking_values_of_subclasses_are_plain(blocking: BlockingSessionStore) -> None:
    value = Tracked([ShiftyStr("a"), {"k": Tracked([ShiftyFloat(1.5)])}, b"x"])
    blocking.register_variable(SID, "v", "any", value)
    value[1]["k"].append(2.0)
    Shifty.flipped = True
    stored = blocking.get_variable(SID, "v").value
    assert plain(stored)
    assert as_stored(stored) == ("a", {"k": (1.5,)}, b"x")
