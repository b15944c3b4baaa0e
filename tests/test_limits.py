"""How much data one call may pass: every call that takes data, at, under and over
each limit, and a refusal that costs the loop nothing.

Copy-in measures each argument against the store's :class:`Limits` when the call
is made (``max_items`` counts every element of every list, tuple and mapping of
one argument; ``max_string_length`` bounds each ``str``, ``bytes`` and key;
``max_depth`` bounds nesting). Over a limit the call is refused, with the error
of that argument: ``ValidationError`` for a value, ``InvalidArgument`` for
metadata and batches, ``InvalidConstraint`` for constraints, ``InvalidImport``
for imports; and nothing changes. The refusal must not cost time in proportion
to the argument: a 20,000,000-element embedding is refused at once, and other
callers do not notice.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from conftest import AnyType, backing

from sessionactor import (
    AtomicUpdateError,
    BlockingSessionStore,
    ConstraintViolation,
    InvalidArgument,
    InvalidConstraint,
    InvalidImport,
    Limits,
    SessionStore,
    SessionStoreError,
    ValidationError,
    Variable,
)
from sessionactor._frozen import FrozenMap
from sessionactor.errors import describe
from sessionactor.types import Tensor

SID = "s1"
PROMPT = 10.0
SMALL = Limits(max_items=6, max_string_length=5, max_depth=3)


def nest(levels: int) -> object:
    """``levels`` lists, one inside the other: ``nest(2) == [[]]``."""
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def entry(name: str, value: object, **extra: object) -> dict[str, object]:
    return {"id": f"var_{name}_1", "name": name, "type": "any", "value": value, **extra}


@pytest.fixture
async def small() -> AsyncIterator[SessionStore]:
    async with SessionStore(limits=SMALL, types=[AnyType()]) as store:
        await store.create_session(SID, metadata={"m": 0})
        await store.register_variable(SID, "x", "any", 0)
        await store.register_variable(SID, "y", "any", 0)
        yield store


async def state_of(store: SessionStore) -> tuple[object, ...]:
    """What a refused call must leave as it was."""
    session = await store.get_session(SID)
    listed = await store.list_variables(SID)
    return (
        sorted(await store.list_sessions()),
        session.metadata,
        session.variable_count,
        [(v.name, v.value, v.version, v.metadata, v.constraints) for v in listed],
    )


# --------------------------------------------------------------------------
# Custom limits, at and just over each one, through every call that takes data

Sized = Callable[[int], object]
ITEMS: dict[str, Sized] = {
    "list": lambda n: [0] * n,
    "tuple": lambda n: tuple(range(n)),
    "mapping": lambda n: {f"k{i}": i for i in range(n)},
    "nested": lambda n: [[0] * (n - 2)] if n >= 2 else [0] * n,  # 1 + (n - 2) + ... items
}


def value_items(kind: str, n: int) -> object:
    """A value that counts exactly ``n`` items (the nested one: 1 outer + n - 1 inner)."""
    if kind == "nested":
        return [[0] * (n - 1)]
    return ITEMS[kind](n)


RefusingCall = Callable[[SessionStore, object], Awaitable[object]]


FRESH = itertools.count()


def fresh() -> str:
    return f"new{next(FRESH)}"


async def _register_value(store: SessionStore, value: object) -> object:
    return await store.register_variable(SID, fresh(), "any", value)


async def _register_metadata(store: SessionStore, value: object) -> object:
    return await store.register_variable(SID, fresh(), "any", 0, metadata={"big": value})


async def _register_constraints(store: SessionStore, value: object) -> object:
    return await store.register_variable(SID, fresh(), "any", 0, constraints={"big": value})


async def _update_value(store: SessionStore, value: object) -> object:
    return await store.update_variable(SID, "x", value)


async def _update_metadata(store: SessionStore, value: object) -> object:
    return await store.update_variable(SID, "x", 1, metadata={"big": value})


async def _batch_metadata(store: SessionStore, value: object) -> object:
    return await store.update_variables(SID, {"x": 1}, metadata={"big": value})


async def _import_value(store: SessionStore, value: object) -> object:
    return await store.import_variables(SID, [entry(fresh(), value)])


async def _import_metadata(store: SessionStore, value: object) -> object:
    return await store.import_variables(SID, [entry(fresh(), 0, metadata={"big": value})])


async def _import_constraints(store: SessionStore, value: object) -> object:
    return await store.import_variables(SID, [entry(fresh(), 0, constraints={"big": value})])


async def _create_session_metadata(store: SessionStore, value: object) -> object:
    await store.delete_session("other")
    return await store.create_session("other", metadata={"big": value})


async def _update_session_metadata(store: SessionStore, value: object) -> object:
    return await store.update_session(SID, metadata={"big": value})


# call -> (the error it raises, how many items the wrapping adds: {"big": v} is one more)
CALLS: dict[str, tuple[RefusingCall, type[SessionStoreError], int]] = {
    "register_variable value": (_register_value, ValidationError, 0),
    "register_variable metadata": (_register_metadata, InvalidArgument, 1),
    "register_variable constraints": (_register_constraints, InvalidConstraint, 1),
    "update_variable value": (_update_value, ValidationError, 0),
    "update_variable metadata": (_update_metadata, InvalidArgument, 1),
    "update_variables metadata": (_batch_metadata, InvalidArgument, 1),
    "import_variables value": (_import_value, InvalidImport, 0),
    "import_variables metadata": (_import_metadata, InvalidImport, 1),
    "import_variables constraints": (_import_constraints, InvalidImport, 1),
    "create_session metadata": (_create_session_metadata, InvalidArgument, 1),
    "update_session metadata": (_update_session_metadata, InvalidArgument, 1),
}
# Values are permissive (a user type decides); metadata and constraints are JSON-like.
PERMISSIVE = {"register_variable value", "update_variable value", "import_variables value"}


def assert_refused(error: BaseException, expected: type[SessionStoreError], why: str) -> None:
    assert isinstance(error, expected), error
    if isinstance(error, AtomicUpdateError):
        (inner,) = error.errors.values()
        assert isinstance(inner, ValidationError), inner
        error = inner
    assert why in str(error), error


@pytest.mark.parametrize("kind", list(ITEMS))
@pytest.mark.parametrize("call", list(CALLS))
async def test_max_items_at_the_limit_passes_and_one_more_is_refused(
    small: SessionStore, call: str, kind: str
) -> None:
    function, error, wrapping = CALLS[call]
    limit = SMALL.max_items - wrapping
    before = await state_of(small)
    with pytest.raises(error) as refused:
        await function(small, value_items(kind, limit + 1))
    assert_refused(refused.value, error, f"more than {SMALL.max_items} items")
    assert await state_of(small) == before
    await function(small, value_items(kind, limit))  # exactly at the limit: accepted
    await function(small, value_items(kind, max(limit - 1, 0)))  # under it too, if new
    assert await state_of(small) != before


@pytest.mark.parametrize("call", list(CALLS))
async def test_max_string_length_at_the_limit_passes_and_one_more_is_refused(
    small: SessionStore, call: str
) -> None:
    function, error, _ = CALLS[call]
    longest = SMALL.max_string_length
    before = await state_of(small)
    for too_long in ("x" * (longest + 1), {"k" * (longest + 1): 0}, ["x" * (longest + 1)]):
        with pytest.raises(error) as refused:
            await function(small, too_long)
        assert_refused(refused.value, error, f"more than {longest} characters")
    assert await state_of(small) == before
    await function(small, "x" * longest)
    await function(small, {"k" * longest: "x" * (longest - 1)})
    assert await state_of(small) != before


@pytest.mark.parametrize("call", sorted(PERMISSIVE))
async def test_bytes_are_measured_like_strings(small: SessionStore, call: str) -> None:
    function, error, _ = CALLS[call]
    with pytest.raises(error):
        await function(small, b"x" * (SMALL.max_string_length + 1))
    await function(small, b"x" * SMALL.max_string_length)
    await function(small, bytearray(b"y" * SMALL.max_string_length))


@pytest.mark.parametrize("call", list(CALLS))
async def test_max_depth_at_the_limit_passes_and_one_deeper_is_refused(
    small: SessionStore, call: str
) -> None:
    function, error, wrapping = CALLS[call]
    deepest = SMALL.max_depth - wrapping
    before = await state_of(small)
    with pytest.raises(error) as refused:
        await function(small, nest(deepest + 1))
    assert_refused(refused.value, error, f"deeper than {SMALL.max_depth} levels")
    assert await state_of(small) == before
    await function(small, nest(deepest))
    assert await state_of(small) != before


async def test_a_value_too_large_is_refused_for_its_key_in_a_batch(small: SessionStore) -> None:
    results = await small.update_variables(SID, {"x": [0] * 7, "y": [1] * 3})
    assert isinstance(results["x"], ValidationError)
    assert "more than 6 items" in str(results["x"])
    assert isinstance(results["y"], Variable) and results["y"].value == (1, 1, 1)
    assert (await small.get_variable(SID, "x")).version == 0


async def test_a_value_too_deep_or_too_long_is_refused_for_its_key_in_a_batch(
    small: SessionStore,
) -> None:
    for bad, why in ((nest(4), "deeper than 3 levels"), ("x" * 6, "more than 5 characters")):
        with pytest.raises(AtomicUpdateError) as refused:
            await small.update_variables(SID, {"x": bad, "y": 1}, atomic=True)
        assert set(refused.value.errors) == {"x"}
        assert why in str(refused.value.errors["x"])
    assert (await small.get_variable(SID, "y")).version == 0
    await small.update_variables(SID, {"x": nest(3), "y": "x" * 5}, atomic=True)
    assert await small.get_variable_value(SID, "x") == (((),),)
    assert await small.get_variable_value(SID, "y") == "xxxxx"


async def test_a_batch_counts_its_entries_and_all_their_items_together(
    small: SessionStore,
) -> None:
    """The batch is one argument: 2 entries and 2 + 2 items is the limit of 6."""
    before = await state_of(small)
    with pytest.raises(InvalidArgument, match="more than 6 items"):
        await small.update_variables(SID, {"x": [0] * 2, "y": [0] * 3})
    with pytest.raises(InvalidArgument, match="more than 6 items"):
        await small.update_variables(SID, {"x": [0] * 3, "y": [0] * 3}, atomic=True)
    assert await state_of(small) == before
    results = await small.update_variables(SID, {"x": [0] * 2, "y": [0] * 2})
    assert all(isinstance(result, Variable) for result in results.values())


async def test_a_batch_of_more_entries_than_items_allowed_is_refused(small: SessionStore) -> None:
    updates = {f"v{i}": 0 for i in range(SMALL.max_items + 1)}
    with pytest.raises(InvalidArgument, match="7 entries"):
        await small.update_variables(SID, updates)


async def test_expected_versions_are_measured_too(small: SessionStore) -> None:
    with pytest.raises(InvalidArgument, match="too large"):
        await small.update_variables(
            SID, {"x": 1}, expected_versions={f"k{i}": 0 for i in range(SMALL.max_items + 1)}
        )
    assert (await small.get_variable(SID, "x")).version == 0


async def test_an_import_of_more_entries_than_items_allowed_is_refused(
    small: SessionStore,
) -> None:
    entries = [entry(f"n{i}", 0) for i in range(SMALL.max_items + 1)]
    with pytest.raises(InvalidImport, match="more than the limit of 6"):
        await small.import_variables(SID, entries)
    assert await small.import_variables(SID, entries[: SMALL.max_items]) == SMALL.max_items


# --------------------------------------------------------------------------
# The default limits, at and just over each, with the built-in types


@pytest.fixture
async def default() -> AsyncIterator[SessionStore]:
    async with SessionStore() as store:
        await store.create_session(SID)
        await store.register_variable(SID, "e", "embedding", [0.0])
        await store.register_variable(SID, "t", "string", "")
        yield store


async def test_default_limits_are_the_documented_ones(default: SessionStore) -> None:
    assert default.limits == Limits(max_items=100_000, max_string_length=1_000_000, max_depth=64)


async def test_an_embedding_of_exactly_max_items_is_accepted_one_more_refused(
    default: SessionStore,
) -> None:
    limit = default.limits.max_items
    with pytest.raises(ValidationError, match="more than 100000 items"):
        await default.update_variable(SID, "e", [0.5] * (limit + 1))
    with pytest.raises(ValidationError, match="more than 100000 items"):
        await default.register_variable(SID, "big", "embedding", [0.5] * (limit + 1))
    assert (await default.get_variable(SID, "e")).version == 0
    assert (await default.update_variable(SID, "e", [0.5] * limit)).value == (0.5,) * limit
    under = await default.update_variable(SID, "e", [0.5] * (limit - 1))
    assert under.value == (0.5,) * (limit - 1)


async def test_a_tensor_counts_every_item_of_its_nested_data(default: SessionStore) -> None:
    # {"shape", "data"}: 2; shape: 2; data: 156 rows + 156 * 640 numbers; 100,000 in all.
    rows, columns = 156, 640
    data = [[0.0] * columns for _ in range(rows)]
    tensor = {"shape": [rows, columns], "data": data}
    await default.register_variable(SID, "m", "tensor", tensor)
    data[0].append(0.0)  # one item more (and the wrong size: never looked at)
    with pytest.raises(ValidationError, match="more than 100000 items"):
        await default.update_variable(SID, "m", tensor)


async def test_a_string_of_exactly_max_string_length_is_accepted_one_more_refused(
    default: SessionStore,
) -> None:
    longest = default.limits.max_string_length
    with pytest.raises(ValidationError, match="more than 1000000 characters"):
        await default.update_variable(SID, "t", "x" * (longest + 1))
    assert (await default.update_variable(SID, "t", "x" * longest)).version == 1


async def test_metadata_nested_exactly_max_depth_is_accepted_one_deeper_refused(
    default: SessionStore,
) -> None:
    deepest = default.limits.max_depth
    with pytest.raises(InvalidArgument, match="deeper than 64 levels"):
        await default.update_variable(SID, "t", "a", metadata={"n": nest(deepest)})
    with pytest.raises(InvalidArgument, match="deeper than 64 levels"):
        await default.create_session("deep", metadata={"n": nest(deepest)})
    assert not await default.session_exists("deep")
    await default.update_variable(SID, "t", "a", metadata={"n": nest(deepest - 1)})


# --------------------------------------------------------------------------
# A refusal costs nothing: the loop (and so the actor) is never held


class Prober:
    """Calls the store in a loop and records the longest time between two answers."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.longest_gap = 0.0
        self.answers = 0
        self._target = 0
        self._reached = asyncio.Event()

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await self.store.session_exists(SID)
            now = time.perf_counter()
            self.longest_gap = max(self.longest_gap, now - last)
            self.answers += 1
            if self.answers >= self._target:
                self._reached.set()
            last = now

    async def more(self, count: int) -> None:
        """Wait (within PROMPT) until ``count`` more calls were answered."""
        self._target = self.answers + count
        self._reached = asyncio.Event()
        with anyio.fail_after(PROMPT):
            await self._reached.wait()


HUGE = 20_000_000
Huge = Callable[[SessionStore], Awaitable[object]]
HUGE_CALLS: dict[str, tuple[Huge, type[SessionStoreError]]] = {
    "embedding": (
        lambda store: store.update_variable(SID, "e", [0.0] * HUGE),
        ValidationError,
    ),
    "registered embedding": (
        lambda store: store.register_variable(SID, "big", "embedding", [0.0] * HUGE),
        ValidationError,
    ),
    "batch": (
        lambda store: store.update_variables(SID, {"e": [0.0] * HUGE}, atomic=True),
        AtomicUpdateError,
    ),
    "string": (lambda store: store.update_variable(SID, "t", "x" * HUGE), ValidationError),
    "nesting": (lambda store: store.update_variable(SID, "e", nest(200_000)), ValidationError),
    "metadata": (
        lambda store: store.update_variable(SID, "t", "a", metadata={"k": [0] * HUGE}),
        InvalidArgument,
    ),
    "constraints": (
        lambda store: store.register_variable(
            SID, "c", "choice", "a", constraints={"choices": ["a"] * HUGE}
        ),
        InvalidConstraint,
    ),
    "session metadata": (
        lambda store: store.update_session(SID, metadata={"k": [0] * HUGE}),
        InvalidArgument,
    ),
    "import": (
        lambda store: store.import_variables(
            SID, [{"id": "var_i_1", "name": "i", "type": "embedding", "value": [0.0] * HUGE}]
        ),
        InvalidImport,
    ),
    "import entries": (
        lambda store: store.import_variables(SID, [{}] * 100_001),
        InvalidImport,
    ),
}


@pytest.mark.parametrize("argument", list(HUGE_CALLS))
async def test_a_huge_argument_is_refused_at_once_and_other_callers_do_not_notice(
    default: SessionStore, argument: str
) -> None:
    call, error = HUGE_CALLS[argument]
    before = await default.export_variables(SID)
    prober = Prober(default)
    probing = asyncio.create_task(prober.run())
    # The collector would walk the caller's own huge list whenever it ran meanwhile:
    # that cost is the caller's, whatever it calls, so it is kept out of the measure.
    gc.collect()
    gc.disable()
    try:
        await prober.more(20)
        coroutine = call(default)  # builds the huge argument (that holds the loop, too)
        await prober.more(3)
        prober.longest_gap = 0.0  # from here on: the refusal only
        started = time.perf_counter()
        with pytest.raises(error, match=r"too large|more than"):
            await coroutine
        refused_in = time.perf_counter() - started
        await prober.more(20)
    finally:
        gc.enable()
        probing.cancel()
    assert refused_in < 0.1, f"refusing took {refused_in:.3f} s"
    assert prober.longest_gap < 0.25, f"other callers waited {prober.longest_gap:.3f} s"
    assert await default.export_variables(SID) == before


# --------------------------------------------------------------------------
# Limits themselves, and where they are given


@pytest.mark.parametrize(
    "options",
    [
        {"max_items": 0},
        {"max_string_length": -1},
        {"max_depth": 0},
        {"max_items": 1.5},
        {"max_depth": True},
        {"max_items": "10"},
    ],
)
def test_limits_must_be_positive_ints(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="must be a positive int"):
        Limits(**options)


def test_a_store_takes_only_a_limits_object() -> None:
    with pytest.raises(InvalidArgument, match="limits must be a Limits"):
        SessionStore(limits={"max_items": 5})  # type: ignore[arg-type]


@pytest.fixture
def blocking_small() -> Iterator[BlockingSessionStore]:
    with BlockingSessionStore(limits=SMALL, types=[AnyType()]) as store:
        store.create_session(SID)
        store.register_variable(SID, "x", "any", 0)
        yield store


def test_a_blocking_store_applies_its_custom_limits(
    blocking_small: BlockingSessionStore,
) -> None:
    assert backing(blocking_small).limits == SMALL
    with pytest.raises(ValidationError, match="more than 6 items"):
        blocking_small.update_variable(SID, "x", [0] * 7)
    with pytest.raises(InvalidArgument, match="more than 5 characters"):
        blocking_small.update_session(SID, metadata={"k": "x" * 6})
    assert blocking_small.update_variable(SID, "x", [0] * 6).value == (0,) * 6


async def test_limits_are_per_store(small: SessionStore) -> None:
    async with SessionStore(types=[AnyType()]) as roomy:
        await roomy.create_session(SID)
        await roomy.register_variable(SID, "x", "any", [0] * 1_000)
    with pytest.raises(ValidationError):
        await small.update_variable(SID, "x", [0] * 1_000)


# --------------------------------------------------------------------------
# Error messages name a refused value by its start, at the cost of what they show


SMALL_VALUES: list[object] = [
    [1, 2],
    (1,),
    (1, "b'"),
    [],
    {"a": [1, (2,)]},
    set(),
    {1, 2},
    frozenset({3}),
    "abc",
    "x" * 200,
    b"y" * 200,
    FrozenMap({"a": 1}),
    FrozenMap(),
    Tensor((2,), (1.0, 2.0)),
    list(range(100)),
    {i: str(i) for i in range(100)},
    10**50,
    None,
]


@pytest.mark.parametrize("value", SMALL_VALUES, ids=lambda value: type(value).__name__)
def test_describe_shows_what_repr_shows_cut_to_its_limit(value: object) -> None:
    text = repr(value)
    assert describe(value) == (text if len(text) <= 80 else text[:77] + "...")


def test_describe_costs_what_it_shows_not_what_the_value_holds() -> None:
    many = 5_000_000  # a full repr of each takes about half a second
    keys = {f"k{i}": i for i in range(300_000)}
    huge: list[object] = [
        [0.0] * many,
        keys,
        FrozenMap(keys),
        Tensor((many,), (0.0,) * many),
        ["x" * 1_000_000] * 1_000,
        nest(100_000),
    ]
    started = time.perf_counter()
    texts = [describe(value) for value in huge]
    assert time.perf_counter() - started < 0.05
    assert texts[0].startswith("[0.0, 0.0, ") and texts[0].endswith("...")
    assert texts[2].startswith("FrozenMap({'k0': 0, 'k1': 1")
    assert texts[3].startswith("Tensor(shape=(5000000,), data=(0.0, ")
    assert all(len(text) == 80 for text in texts)


# --------------------------------------------------------------------------
# A long list of allowed strings costs a write one lookup, and its message is short


ONE_OF = [
    ("string", "enum", "must be one of: "),
    ("choice", "choices", "must be one of: "),
    ("module", "allowed_modules", "must be one of the allowed modules: "),
]


@pytest.mark.parametrize(("type_name", "key", "prefix"), ONE_OF)
async def test_a_long_list_of_allowed_strings_costs_a_write_one_lookup(
    default: SessionStore, type_name: str, key: str, prefix: str
) -> None:
    """20,000 allowed strings of 5,000 characters that differ only at their end: a scan
    of the list compares 100,000,000 characters per write (about a millisecond), and a
    message that lists them all is 100 MB, built in the actor for every refused write
    (about 0.1 s). Hashed once, a write costs microseconds either way."""
    allowed = ["y" * 5_000 + str(i) for i in range(20_000)]
    await default.register_variable(SID, "one", type_name, allowed[0], constraints={key: allowed})
    gc.disable()  # CPU time of the writes themselves, not of a collection of the test's heap
    try:
        started = time.process_time()
        for _ in range(40):
            await default.update_variable(SID, "one", "y" * 5_000 + "19999")  # equal, not same
        accepted = time.process_time() - started
        started = time.process_time()
        for _ in range(20):
            with pytest.raises(ConstraintViolation) as refused:
                await default.update_variable(SID, "one", "y" * 5_000 + "none")
        refusing = time.process_time() - started
    finally:
        gc.enable()
    assert accepted < 0.02 and refusing < 0.02, (accepted, refusing)
    message = str(refused.value)
    assert message.startswith(prefix + "y" * 200 + "..., ")
    assert message.endswith(" more)") and len(message) < 1_000
    assert (await default.get_variable(SID, "one")).version == 40


@pytest.mark.parametrize(("type_name", "key", "prefix"), ONE_OF)
async def test_a_short_list_of_allowed_strings_is_named_in_full(
    default: SessionStore, type_name: str, key: str, prefix: str
) -> None:
    allowed = [f"value{i}" for i in range(20)]
    await default.register_variable(SID, "one", type_name, "value0", constraints={key: allowed})
    with pytest.raises(ConstraintViolation) as refused:
        await default.update_variable(SID, "one", "other")
    assert str(refused.value) == prefix + ", ".join(allowed)
    assert (await default.update_variable(SID, "one", "value19")).value == "value19"


async def test_a_string_pattern_is_compiled_once_not_per_write(default: SessionStore) -> None:
    """More distinct patterns than ``re``'s cache holds (512), each taking about a
    millisecond to compile: a write that compiled its pattern again would cost that."""
    count = 520
    for index in range(count):
        await default.register_variable(
            SID,
            f"p{index}",
            "string",
            f"p{index}_" + "a" * 300,
            constraints={"pattern": f"^p{index}_" + "[a-z]" * 300},
        )
    gc.disable()
    try:
        started = time.process_time()
        for _ in range(3):
            for index in range(count):
                await default.update_variable(SID, f"p{index}", f"p{index}_" + "b" * 300)
        spent = time.process_time() - started
    finally:
        gc.enable()
    assert spent < 0.8  # compiling each pattern again: about 1.5 s
    with pytest.raises(ConstraintViolation, match="must match pattern"):
        await default.update_variable(SID, "p0", "p1_" + "a" * 300)


def test_describe_of_a_one_item_tuple_costs_what_it_shows() -> None:
    inside = ([0.0] * 5_000_000,)
    started = time.perf_counter()
    text = describe(inside)
    assert time.perf_counter() - started < 0.05
    assert text.startswith("([0.0, 0.0, ") and len(text) == 80
    assert describe((1,)) == "(1,)" and describe(((1,),)) == "((1,),)"


async def test_sharing_compiled_constraints_costs_what_they_hold_not_their_text() -> None:
    """Registering shares equal constraints through an exact key (it tells ``1`` from
    ``1.0`` and ``0.0`` from ``-0.0``). A key made of the constraints' text (``repr``)
    would cost the length of every string in them: 1,000 copies of one
    1,000,000-character string (a few kilobytes to pass, within every limit) would
    build a 1 GB key in the actor. CPU time, with the collector paused, so a busy
    machine does not make it fail."""
    async with SessionStore() as store:
        await store.create_session(SID)
        text = "x" * 1_000_000
        allowed = [text] * 1_000
        gc.disable()
        try:
            started = time.process_time()
            await store.register_variable(
                SID, "c", "choice", text, constraints={"choices": allowed}
            )
            spent = time.process_time() - started
        finally:
            gc.enable()
        assert spent < 0.25, f"registering took {spent:.3f} s of CPU"


async def test_get_variables_measures_its_identifiers() -> None:
    """Identifiers are read into a tuple in the caller's task and measured: more than
    ``max_items`` of them is an ``InvalidArgument`` (not a lookup of each in the
    actor), for ``get_variables`` and ``watch_variables`` alike."""
    async with SessionStore(limits=SMALL) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        with pytest.raises(InvalidArgument, match="more than 6"):
            await store.get_variables(SID, ["x"] * 7)
        with pytest.raises(InvalidArgument, match="more than 6"):
            async with store.watch_variables(SID, ["x"] * 7):
                pass
        assert len((await store.get_variables(SID, ["x"] * 6)).found) == 1


async def test_identifiers_are_read_in_the_callers_task_not_the_actors() -> None:
    """A generator (or any iterable) of identifiers runs in the caller's task: the
    caller's code never runs inside the actor's turn."""
    async with SessionStore() as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        readers: list[object] = []

        def identifiers() -> Iterator[str]:
            readers.append(asyncio.current_task())
            yield "x"

        await store.get_variables(SID, identifiers())  # typed Iterable[str]: a generator is fine
        async with store.watch_variables(SID, identifiers()):  # type: ignore[arg-type]
            pass
        assert len(readers) == 2
        assert store._task not in readers, "the actor ran the caller's generator"


async def test_a_description_is_measured_like_every_string() -> None:
    """A description is measured against ``max_string_length`` when the call is made."""
    async with SessionStore(limits=SMALL) as store:
        await store.create_session(SID)
        with pytest.raises(InvalidArgument, match="more than 5 characters"):
            await store.register_variable(SID, "x", "integer", 0, description="x" * 6)
        assert not await store.has_variable(SID, "x")


@pytest.mark.parametrize("target", ["session", "variable"])
async def test_merged_metadata_stays_within_the_limits(target: str) -> None:
    """Each call's metadata is measured, but merges add up: calls of ``max_items`` new
    keys each would grow one session's (or variable's) metadata without end, and every
    later merge copy all of it in the actor. A merge whose result holds more than
    ``max_items`` entries is refused (``InvalidArgument``, nothing changed)."""
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
