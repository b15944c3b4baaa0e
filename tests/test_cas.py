"""Compare-and-swap and the store-wide revision (SPEC §10)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from conftest import AnyStore
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor import (
    AtomicUpdateError,
    InvalidArgument,
    SessionStoreError,
    ValidationError,
    Variable,
    VariableLocked,
    VariableNotFound,
    VersionConflict,
)
from sessionactor.messages import (
    CreateSession,
    GetVariable,
    RegisterVariable,
    UpdateVariable,
    UpdateVariables,
)
from sessionactor.state import StoreState

SID = "test_session"


async def three_variables(store: AnyStore) -> None:
    await store.register_variable(SID, "a", "integer", 0)
    await store.register_variable(SID, "b", "integer", 0)
    await store.register_variable(SID, "c", "integer", 0, constraints={"max": 10})


async def next_revision(store: AnyStore) -> int:
    """The revision the next change gets (registers a probe variable to find out)."""
    probe = await store.register_variable(SID, f"probe_{id(object())}", "integer", 0)
    revision = (await store.get_variable(SID, probe)).revision
    await store.delete_variable(SID, probe)
    return revision + 2  # the delete took revision + 1


# -- update_variable(expected_version=) ----------------------------------------------------


async def test_matching_expected_version_applies(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    first = await store.update_variable(SID, "x", 1, expected_version=0)
    second = await store.update_variable(SID, "x", 2, expected_version=1)
    assert (first.version, second.version, second.value) == (1, 2, 2)


async def test_stale_expected_version_raises_and_changes_nothing(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    await store.update_variable(SID, "x", 1)
    before = await store.export_variables(SID)
    revision = (await store.get_variable(SID, "x")).revision
    with pytest.raises(VersionConflict) as caught:
        await store.update_variable(SID, "x", 99, expected_version=0)
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert "x" in str(caught.value)
    assert await store.export_variables(SID) == before
    after = await store.update_variable(SID, "x", 2)
    assert after.revision == revision + 1  # the conflict took no revision


async def test_future_expected_version_conflicts_too(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    with pytest.raises(VersionConflict) as caught:
        await store.update_variable(SID, "x", 1, expected_version=5)
    assert (caught.value.expected, caught.value.actual) == (5, 0)


async def test_a_reregistered_name_starts_again_at_version_zero(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    for value in range(3):
        await store.update_variable(SID, "x", value)
    await store.delete_variable(SID, "x")
    await store.register_variable(SID, "x", "integer", 0)
    with pytest.raises(VersionConflict):
        await store.update_variable(SID, "x", 1, expected_version=3)
    assert (await store.update_variable(SID, "x", 1, expected_version=0)).version == 1


async def test_concurrent_compare_and_swap_loses_no_update(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "counter", "integer", 0)
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        while True:
            current = await store.get_variable(SID, "counter")
            try:
                await store.update_variable(
                    SID, "counter", cast(int, current.value) + 1, expected_version=current.version
                )
                return
            except VersionConflict:
                conflicts += 1

    await asyncio.gather(*(increment() for _ in range(50)))
    final = await store.get_variable(SID, "counter")
    assert (final.value, final.version) == (50, 50)
    assert conflicts > 0  # the tasks really raced


@pytest.mark.parametrize("bad", [-1, 1.0, "1", True, [1]])
async def test_bad_expected_version_raises_invalid_argument(
    store: AnyStore, session_id: str, bad: Any
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    with pytest.raises(InvalidArgument):
        await store.update_variable(SID, "x", 1, expected_version=bad)
    assert (await store.get_variable(SID, "x")).version == 0


async def test_validation_is_checked_before_the_version(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    with pytest.raises(ValidationError):
        await store.update_variable(SID, "x", "not a number", expected_version=7)


# -- update_variables(expected_versions=) ----------------------------------------------------


async def test_atomic_batch_with_one_stale_version_changes_nothing(
    store: AnyStore, session_id: str
) -> None:
    await three_variables(store)
    await store.update_variable(SID, "b", 5)
    before = await store.export_variables(SID)
    revision = (await store.get_variable(SID, "b")).revision
    with pytest.raises(AtomicUpdateError) as caught:
        await store.update_variables(
            SID,
            {"a": 1, "b": 6, "c": 3},
            atomic=True,
            expected_versions={"a": 0, "b": 0, "c": 0},
        )
    assert set(caught.value.errors) == {"b"}
    conflict = caught.value.errors["b"]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.expected, conflict.actual) == (0, 1)
    assert await store.export_variables(SID) == before
    assert (await store.update_variable(SID, "a", 1)).revision == revision + 1


async def test_atomic_batch_reports_every_failure_together(
    store: AnyStore, session_id: str
) -> None:
    await three_variables(store)
    await store.start_optimization(SID, "a", "opt")
    with pytest.raises(AtomicUpdateError) as caught:
        await store.update_variables(
            SID,
            {"a": 1, "b": 2, "c": 99, "missing": 1},
            atomic=True,
            expected_versions={"b": 4},
        )
    errors = caught.value.errors
    assert isinstance(errors["a"], VariableLocked)
    assert isinstance(errors["b"], VersionConflict)
    assert isinstance(errors["c"], ValidationError)
    assert isinstance(errors["missing"], VariableNotFound)


async def test_atomic_batch_with_matching_versions_takes_consecutive_revisions(
    store: AnyStore, session_id: str
) -> None:
    await three_variables(store)
    result = await store.update_variables(
        SID, {"c": 3, "a": 1, "b": 2}, atomic=True, expected_versions={"a": 0, "b": 0, "c": 0}
    )
    variables = [v for v in result.values() if isinstance(v, Variable)]
    assert [v.name for v in variables] == ["c", "a", "b"]
    start = variables[0].revision
    assert [v.revision for v in variables] == [start, start + 1, start + 2]
    assert all(v.version == 1 for v in variables)
    latest = await store.list_variables(SID)
    assert {v.name: v.revision for v in latest} == {v.name: v.revision for v in variables}


async def test_non_atomic_batch_reports_a_conflict_per_key(
    store: AnyStore, session_id: str
) -> None:
    await three_variables(store)
    await store.update_variable(SID, "a", 5)
    result = await store.update_variables(
        SID, {"a": 6, "b": 7, "c": 8}, expected_versions={"a": 0, "b": 0}
    )
    conflict = result["a"]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.expected, conflict.actual) == (0, 1)
    b, c = result["b"], result["c"]
    assert isinstance(b, Variable) and isinstance(c, Variable)
    assert (b.value, b.version, c.value, c.version) == (7, 1, 8, 1)
    assert c.revision == b.revision + 1
    assert (await store.get_variable(SID, "a")).value == 5
    assert list(result) == ["a", "b", "c"]


async def test_expected_versions_are_keyed_by_the_identifier_given(
    store: AnyStore, session_id: str
) -> None:
    a = await store.register_variable(SID, "a", "integer", 0)
    result = await store.update_variables(SID, {a: 1}, expected_versions={a: 0})
    assert isinstance(result[a], Variable)
    with pytest.raises(InvalidArgument):  # "a" is not a key of this batch: a is given by id
        await store.update_variables(SID, {a: 2}, expected_versions={"a": 1})
    assert (await store.get_variable(SID, "a")).value == 1


@pytest.mark.parametrize(
    "expected",
    [[0], {"a": -1}, {"a": "0"}, {"a": None}, {"a": True}, {"zzz": 0}],
)
async def test_bad_expected_versions_raise_invalid_argument_for_the_whole_call(
    store: AnyStore, session_id: str, expected: Any
) -> None:
    await three_variables(store)
    before = await store.export_variables(SID)
    for atomic in (False, True):
        with pytest.raises(InvalidArgument):
            await store.update_variables(
                SID, {"a": 1, "b": 1}, atomic=atomic, expected_versions=expected
            )
    assert await store.export_variables(SID) == before


# -- the store-wide revision -------------------------------------------------------------------


async def test_every_change_takes_the_next_revision(store: AnyStore, session_id: str) -> None:
    await store.create_session("other")
    x = await store.register_variable(SID, "x", "integer", 0)
    r1 = (await store.get_variable(SID, x)).revision
    y = await store.register_variable("other", "y", "integer", 0)  # store-wide, not per session
    assert (await store.get_variable("other", y)).revision == r1 + 1
    assert (await store.update_variable(SID, x, 1)).revision == r1 + 2
    await store.delete_variable("other", y)  # r1 + 3
    exported = await store.export_variables(SID)
    await store.create_session("copy")
    assert await store.import_variables("copy", exported) == 1
    imported = await store.get_variable("copy", "x")
    assert imported.revision == r1 + 4
    assert imported.version == 1  # the version travels, the revision is the store's own
    assert (await store.update_variable(SID, x, 2)).revision == r1 + 5


async def test_a_variable_keeps_the_revision_of_its_last_change(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    await store.register_variable(SID, "y", "integer", 0)
    changed = await store.update_variable(SID, "x", 1)
    await store.update_variable(SID, "y", 1)
    await store.get_variable(SID, "x")
    assert (await store.get_variable(SID, "x")).revision == changed.revision


async def test_an_import_takes_one_revision_per_variable(store: AnyStore, session_id: str) -> None:
    await store.create_session("source")
    for name in ("p", "q", "r"):
        await store.register_variable("source", name, "integer", 0)
    exported = await store.export_variables("source")
    start = await next_revision(store)
    await store.import_variables(SID, exported)
    revisions = [v.revision for v in await store.list_variables(SID)]
    assert revisions == [start, start + 1, start + 2]


async def test_failed_calls_take_no_revision(store: AnyStore, session_id: str) -> None:
    await three_variables(store)
    await store.start_optimization(SID, "b", "opt")
    start = (await store.update_variable(SID, "a", 1)).revision

    failing: list[Callable[[], Awaitable[object]]] = [
        lambda: store.update_variable(SID, "a", "bad"),
        lambda: store.update_variable(SID, "c", 99),
        lambda: store.update_variable(SID, "a", 2, expected_version=0),
        lambda: store.update_variable(SID, "b", 2),
        lambda: store.update_variable(SID, "missing", 2),
        lambda: store.update_variables(SID, {"a": 2, "c": 99}, atomic=True),
        lambda: store.update_variables(SID, {"a": 2}, atomic=True, expected_versions={"a": 0}),
        lambda: store.register_variable(SID, "a", "integer", 0),
        lambda: store.register_variable(SID, "new", "integer", "bad"),
        lambda: store.delete_variable(SID, "b"),
        lambda: store.delete_variable(SID, "missing"),
        lambda: store.import_variables(
            SID, [{"id": "var_z_900", "name": "z", "type": "nope", "value": 1}]
        ),
        lambda: store.start_optimization(SID, "b", "other"),
        lambda: store.end_optimization(SID, "b", "other"),
    ]
    for call in failing:
        with pytest.raises(SessionStoreError):
            await call()
    assert (await store.update_variable(SID, "a", 3)).revision == start + 1


async def test_non_atomic_batch_takes_revisions_only_for_what_it_applied(
    store: AnyStore, session_id: str
) -> None:
    await three_variables(store)
    result = await store.update_variables(SID, {"a": 1, "c": 99, "b": 2})
    a, b = result["a"], result["b"]
    assert isinstance(a, Variable) and isinstance(b, Variable)
    assert b.revision == a.revision + 1
    assert (await store.update_variable(SID, "a", 2)).revision == b.revision + 1


async def test_reads_take_no_revision(store: AnyStore, session_id: str) -> None:
    await store.register_variable(SID, "x", "integer", 0)
    start = (await store.update_variable(SID, "x", 1)).revision
    await store.get_variable(SID, "x")
    await store.get_variables(SID, ["x"])
    await store.list_variables(SID)
    await store.export_variables(SID)
    await store.has_variable(SID, "x")
    await store.get_session(SID)
    assert (await store.update_variable(SID, "x", 2)).revision == start + 1


# -- a property of the core, driven directly -----------------------------------------------------


_operation = st.one_of(
    st.tuples(st.just("update"), st.integers(0, 2), st.integers(-1, 3), st.booleans()),
    st.tuples(st.just("batch"), st.booleans(), st.lists(st.integers(0, 3), min_size=3, max_size=3)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_operation, max_size=25))
def test_revision_counts_exactly_the_applied_changes(operations: list[Any]) -> None:
    """Against a plain model: versions move only on success, the revision by one per
    variable changed, and every variable holds the revision of its last change."""
    state = StoreState()
    state.handle(CreateSession("s"))
    names = ["v0", "v1", "v2"]
    for name in names:
        state.handle(RegisterVariable("s", name, "integer", 0))
    versions = dict.fromkeys(names, 0)
    revision = state.revision
    last_change = {name: index + 1 for index, name in enumerate(names)}

    for operation in operations:
        if operation[0] == "update":
            _, index, expected, use_expected = operation
            name = names[index]
            expected_version = (versions[name] + expected) if use_expected else None
            if expected_version is not None and expected_version < 0:
                expected_version = 0
            try:
                new = state.handle(UpdateVariable("s", name, 1, None, expected_version))
            except VersionConflict:
                assert expected_version != versions[name]
                continue
            assert expected_version in (None, versions[name])
            assert isinstance(new, Variable)
            versions[name] += 1
            revision += 1
            last_change[name] = revision
        else:
            _, atomic, offsets = operation
            expected_versions = {
                name: versions[name] + offset
                for name, offset in zip(names, offsets, strict=False)
                if offset != 3
            }
            stale = {name for name, v in expected_versions.items() if v != versions[name]}
            command = UpdateVariables("s", dict.fromkeys(names, 2), atomic, None, expected_versions)
            if atomic and stale:
                with pytest.raises(AtomicUpdateError) as caught:
                    state.handle(command)
                assert set(caught.value.errors) == stale
                continue
            result = state.handle(command)
            assert isinstance(result, dict)
            for name in names:
                if name in stale:
                    assert isinstance(result[name], VersionConflict)
                    continue
                versions[name] += 1
                revision += 1
                last_change[name] = revision
        assert state.revision == revision

    for name in names:
        variable = state.handle(GetVariable("s", name))
        assert isinstance(variable, Variable)
        assert (variable.version, variable.revision) == (versions[name], last_change[name])
