"""Hostile input for the arguments ``tests/test_bad_input.py`` does not fuzz (SPEC §6).

``test_bad_input.py`` fuzzes every argument of ``register_variable``,
``get_variable`` and ``import_variables`` and the main ones of ``update_variable``
and ``update_variables``. This file covers every other argument of every public
call, the constructor's options, and values that attack the store through their
own methods: ``__repr__``, ``__eq__``, ``__hash__``, ``__len__``, ``__iter__``,
``__getitem__`` or ``__float__`` that raise, mappings that lie about their size,
keys that cannot be printed.

The contract (issue 4): the only exceptions that may escape are
``SessionStoreError`` subclasses, never a hang, and when a call fails an export
of every session (and the rest of what a caller can see) is the same before and
after. A call that succeeds with a strange value (``default=`` of
``get_variable_value``, program ``data``) may change the store, but the store
must keep serving and still export JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final, NoReturn

import anyio
import pytest
from conftest import AnyStore, open_store_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionactor import (
    CallTimeout,
    InternalError,
    ProgramNotFound,
    SessionStore,
    SessionStoreError,
    StoreClosed,
)

SID: Final = "alpha"
OTHER: Final = "beta"
PROMPT: Final = 10.0
# In-process, and through one kind of connection (the other kind adds nothing here:
# the hostile values meet the same client before any socket).
HOSTILE_KINDS: Final = ("local", "tcp")


def _fail(*args: object) -> NoReturn:
    raise RuntimeError("hostile method called")


class Evil:
    """Every method a store might call on a value raises."""

    __eq__ = __ne__ = __lt__ = __gt__ = __le__ = __ge__ = _fail
    __hash__ = __repr__ = __str__ = __format__ = __bool__ = __len__ = _fail
    __iter__ = __getitem__ = __contains__ = __float__ = __int__ = __index__ = _fail
    __deepcopy__ = __copy__ = __reduce_ex__ = __getstate__ = _fail


class UnprintableKey:
    """Hashable, comparable, but ``repr`` and ``str`` raise."""

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return self is other

    __repr__ = __str__ = _fail


class LyingMapping(Mapping[str, object]):
    """Says it has one key; looking it up raises."""

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("no such thing")

    def __iter__(self) -> Iterator[str]:
        return iter(["temperature"])

    def __len__(self) -> int:
        return 1


class ExplodingMapping(Mapping[str, object]):
    """A mapping whose every method raises."""

    __getitem__ = __iter__ = __len__ = __contains__ = _fail
    keys = items = values = get = _fail


class SneakyStr(str):
    """A str subclass that changes its mind about equality and hashing."""

    __eq__ = __hash__ = _fail


class Endless:
    """An iterable that never ends (a store must not try to exhaust it for an id)."""

    def __iter__(self) -> Iterator[int]:
        while True:
            yield 1


def deep(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"k": [value]}
    return value


def cyclic() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


NASTY: Final[dict[str, Callable[[], object]]] = {
    "none": lambda: None,
    "nan": lambda: math.nan,
    "inf": lambda: -math.inf,
    "huge-int": lambda: 10**5000,
    "bool": lambda: True,
    "bytes": lambda: b"alpha",
    "object": object,
    "long-str": lambda: "x" * 100_000,
    "empty-str": lambda: "",
    "glob": lambda: "*",
    "deep": lambda: deep(500),
    "cyclic": cyclic,
    "non-str-keys": lambda: {1: 2, None: [3]},
    "unprintable-key": lambda: {UnprintableKey(): 1},
    "evil": Evil,
    "list-of-evil": lambda: [Evil()],
    "dict-of-evil": lambda: {"k": Evil()},
    "lying-mapping": LyingMapping,
    "exploding-mapping": ExplodingMapping,
    "nested-exploding-mapping": lambda: {"k": [ExplodingMapping()]},
    "sneaky-str": lambda: SneakyStr(SID),
    "endless": Endless,
    "set": lambda: {"temperature"},
    "tuple": lambda: ("temperature", 1),
}


# --------------------------------------------------------------------------
# The store every case runs against, and what a caller can see of it


async def populate(store: AnyStore) -> None:
    await store.create_session(SID, ttl=600, metadata={"owner": "tests"})
    await store.create_session(OTHER)
    await store.register_variable(SID, "temperature", "float", 0.5, constraints={"max": 1.0})
    await store.register_variable(SID, "count", "integer", 3)
    await store.register_variable(SID, "label", "string", "abc")
    await store.register_variable(
        SID, "vec", "embedding", [1.0, 2.0], constraints={"dimensions": 2}
    )
    await store.register_variable(SID, "locked", "float", 0.1)
    await store.start_optimization(SID, "locked", "holder")
    await store.update_variable(SID, "count", 4)
    await store.store_worker_session(SID, "worker-1")
    await store.store_program(SID, "prog", {"steps": [1, 2]})
    await store.store_global_program("gprog", {"g": 1})


async def visible(store: AnyStore) -> dict[str, object]:
    """An export of every session, and the rest a caller can see (minus what reads change)."""
    sessions: dict[str, object] = {}
    for sid in sorted(await store.list_sessions()):
        session = await store.get_session(sid)
        sessions[sid] = (
            session.ttl,
            dict(session.metadata),
            session.last_worker_id,
            session.program_ids,
            session.total_variable_updates,
            {p: await store.get_program(sid, p) for p in session.program_ids},
            await store.export_variables(sid),
            [(v.optimizer_id, v.revision) for v in await store.list_variables(sid)],
        )
    stats = await store.get_stats()
    try:
        global_program: object = await store.get_global_program("gprog")
    except ProgramNotFound:
        global_program = None
    return {
        "sessions": sessions,
        "global": global_program,
        "counts": (stats.sessions_created, stats.sessions_deleted, stats.current_variables),
    }


Call = Callable[[AnyStore, dict[str, Any]], Awaitable[object]]


async def watch_once(store: AnyStore, args: dict[str, Any]) -> object:
    """Subscribe and leave (the arguments are checked when the watch starts)."""
    async with store.watch_variables(
        args["session_id"],
        args["identifiers"],
        pattern=args["pattern"],
        include_initial=args["include_initial"],
        buffer=args["buffer"],
    ) as changes:
        return changes


# Each call, the arguments it is made with, and how. Every argument named here is
# replaced in turn by every hostile value.
CALLS: Final[dict[str, tuple[dict[str, Any], Call]]] = {
    "create_session": (
        {"session_id": "new", "ttl": 60.0, "metadata": {"k": 1}},
        lambda s, a: s.create_session(a["session_id"], ttl=a["ttl"], metadata=a["metadata"]),
    ),
    "get_session": ({"session_id": SID}, lambda s, a: s.get_session(a["session_id"])),
    "update_session": (
        {"session_id": SID, "ttl": 60.0, "metadata": {"k": 1}},
        lambda s, a: s.update_session(a["session_id"], ttl=a["ttl"], metadata=a["metadata"]),
    ),
    "delete_session": ({"session_id": "ghost"}, lambda s, a: s.delete_session(a["session_id"])),
    "session_exists": ({"session_id": SID}, lambda s, a: s.session_exists(a["session_id"])),
    "store_worker_session": (
        {"session_id": SID, "worker_id": "w2"},
        lambda s, a: s.store_worker_session(a["session_id"], a["worker_id"]),
    ),
    "store_program": (
        {"session_id": SID, "program_id": "p2", "data": {"a": 1}},
        lambda s, a: s.store_program(a["session_id"], a["program_id"], a["data"]),
    ),
    "get_program": (
        {"session_id": SID, "program_id": "prog"},
        lambda s, a: s.get_program(a["session_id"], a["program_id"]),
    ),
    "delete_program": (
        {"session_id": SID, "program_id": "nope"},
        lambda s, a: s.delete_program(a["session_id"], a["program_id"]),
    ),
    "store_global_program": (
        {"program_id": "g2", "data": [1]},
        lambda s, a: s.store_global_program(a["program_id"], a["data"]),
    ),
    "get_global_program": (
        {"program_id": "gprog"},
        lambda s, a: s.get_global_program(a["program_id"]),
    ),
    "delete_global_program": (
        {"program_id": "nope"},
        lambda s, a: s.delete_global_program(a["program_id"]),
    ),
    "get_variable_value": (
        {"session_id": SID, "identifier": "temperature", "default": None},
        lambda s, a: s.get_variable_value(a["session_id"], a["identifier"], a["default"]),
    ),
    "update_variable": (
        {"expected_version": 0, "optimizer_id": None},
        lambda s, a: s.update_variable(
            SID,
            "temperature",
            0.6,
            expected_version=a["expected_version"],
            optimizer_id=a["optimizer_id"],
        ),
    ),
    "list_variables": (
        {"session_id": SID, "pattern": "t*"},
        lambda s, a: s.list_variables(a["session_id"], a["pattern"]),
    ),
    "delete_variable": (
        {"session_id": SID, "identifier": "label", "optimizer_id": None},
        lambda s, a: s.delete_variable(
            a["session_id"], a["identifier"], optimizer_id=a["optimizer_id"]
        ),
    ),
    "has_variable": (
        {"session_id": SID, "identifier": "temperature"},
        lambda s, a: s.has_variable(a["session_id"], a["identifier"]),
    ),
    "get_variables": (
        {"session_id": SID, "identifiers": ["temperature", "count"]},
        lambda s, a: s.get_variables(a["session_id"], a["identifiers"]),
    ),
    "update_variables": (
        {
            "atomic": True,
            "expected_versions": {"temperature": 0},
            "optimizer_id": None,
            "updates": {"temperature": 0.25, "count": 5},
        },
        lambda s, a: s.update_variables(
            SID,
            a["updates"],
            atomic=a["atomic"],
            expected_versions=a["expected_versions"],
            optimizer_id=a["optimizer_id"],
        ),
    ),
    "export_variables": ({"session_id": SID}, lambda s, a: s.export_variables(a["session_id"])),
    "start_optimization": (
        {"session_id": SID, "identifier": "count", "optimizer_id": "opt", "lease": 30.0},
        lambda s, a: s.start_optimization(
            a["session_id"], a["identifier"], a["optimizer_id"], lease=a["lease"]
        ),
    ),
    "end_optimization": (
        {"session_id": SID, "identifier": "locked", "optimizer_id": "holder"},
        lambda s, a: s.end_optimization(a["session_id"], a["identifier"], a["optimizer_id"]),
    ),
    "watch_variables": (
        {
            "session_id": SID,
            "identifiers": ["temperature"],
            "pattern": None,
            "include_initial": True,
            "buffer": 16,
        },
        watch_once,
    ),
}

CASES: Final = [(call, argument) for call, (args, _) in CALLS.items() for argument in args]


HOSTILE_TYPES: Final = (Evil, UnprintableKey, LyingMapping, ExplodingMapping, SneakyStr)


def has_hostile_methods(value: object, depth: int = 0) -> bool:
    """Whether ``value`` holds an object whose own methods raise.

    For those the store may answer ``InternalError`` (their exception escaped
    inside a handler, as a faulty type's would, SPEC §5); for plain values it
    must name the fault with a more specific error.
    """
    if isinstance(value, HOSTILE_TYPES):
        return True
    if depth > 50 or value.__class__ not in (list, tuple, dict):
        return False
    if isinstance(value, dict):
        return any(has_hostile_methods(k, depth + 1) for k in value) or any(
            has_hostile_methods(v, depth + 1) for v in value.values()
        )
    return any(has_hostile_methods(item, depth + 1) for item in value)


async def attack(call: str, argument: str, value: object, kind: str = "local") -> None:
    """Make one call with one argument replaced by ``value`` on a store reached the
    ``kind`` way (a hostile value also meets the client's encoding); check the contract."""
    plain = not has_hostile_methods(value)
    args, make = CALLS[call]
    args = {**args, argument: value}
    async with open_store_of(kind, call_timeout=PROMPT) as store:
        await populate(store)
        before = await visible(store)
        with anyio.fail_after(PROMPT):
            try:
                await make(store, args)
            except SessionStoreError as error:
                assert not isinstance(error, CallTimeout | StoreClosed), error
                assert not (plain and isinstance(error, InternalError)), error
                str(error), repr(error)  # an error must describe itself
                assert await visible(store) == before, f"{call}({argument}=...) failed: {error!r}"
        # whatever happened, the store serves and exports JSON
        assert store.running
        for sid in await store.list_sessions():
            json.dumps(await store.export_variables(sid), allow_nan=False)
        await store.create_session("probe")
        await store.register_variable("probe", "n", "integer", 0)
        assert (await store.update_variable("probe", "n", 7)).value == 7


@pytest.mark.parametrize("nasty", list(NASTY))
@pytest.mark.parametrize(("call", "argument"), CASES, ids=[f"{c}-{a}" for c, a in CASES])
@pytest.mark.parametrize("kind", HOSTILE_KINDS)
async def test_hostile_values_in_every_argument(
    kind: str, call: str, argument: str, nasty: str
) -> None:
    await attack(call, argument, NASTY[nasty](), kind)


# hypothesis: arbitrary values, nested, anywhere in those arguments
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([400, 5000]).map(lambda digits: -(10**digits)),  # too long to print
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([SID, OTHER, "temperature", "count", "locked", "holder", "*", "?", ""]),
    st.binary(max_size=8),
    st.builds(object),
    st.builds(Evil),
    st.builds(UnprintableKey),
    st.builds(LyingMapping),
)
anything = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=6), children, max_size=3),
        st.dictionaries(st.one_of(st.integers(), st.none(), st.binary()), children, max_size=2),
    ),
    max_leaves=8,
)


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=st.sampled_from(CASES), value=anything)
@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_arbitrary_values_in_every_argument(
    kind: str, case: tuple[str, str], value: object
) -> None:
    call, argument = case
    anyio.run(attack, call, argument, value, kind)


# --------------------------------------------------------------------------
# The constructor

OPTIONS: Final = (
    "default_ttl",
    "cleanup_interval",
    "call_timeout",
    "mailbox_size",
    "max_sessions",
    "global_program_ttl",
    "clock",
    "types",
    "trace_calls",
    "duration_sample_ratio",
)


@pytest.mark.parametrize("nasty", list(NASTY))
@pytest.mark.parametrize("option", OPTIONS)
async def test_hostile_constructor_options_raise_store_errors(option: str, nasty: str) -> None:
    value = NASTY[nasty]()
    try:
        options: dict[str, Any] = {option: value}
        store = SessionStore(**options)
    except SessionStoreError as error:
        str(error), repr(error)
        return
    with anyio.fail_after(PROMPT):  # accepted: then it must work
        async with store:
            await populate(store)
            assert (await store.get_variable(SID, "count")).value == 4
