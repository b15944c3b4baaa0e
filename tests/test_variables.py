"""Variables beyond the seed port (SPEC §4): identifiers, metadata, listing,
batches, export/import, immutability and concurrency, with property tests where
a rule holds for all inputs."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
from conftest import STORE_KINDS, AnyStore, OpenStore, open_store_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionactor import (
    AtomicUpdateError,
    BatchGet,
    ConstraintViolation,
    InvalidArgument,
    InvalidImport,
    Session,
    SessionNotFound,
    SessionStore,
    SessionStoreError,
    StoreClosed,
    Tensor,
    ValidationError,
    Variable,
    VariableExists,
    VariableNotFound,
    VariableType,
)
from sessionactor.types import FloatType

EXPORT_KEYS = {
    "id",
    "name",
    "type",
    "value",
    "constraints",
    "metadata",
    "version",
    "created_at",
    "updated_at",
}
SNAPSHOT_FIELDS = (
    "id",
    "name",
    "type",
    "value",
    "constraints",
    "metadata",
    "version",
    "created_at",
    "updated_at",
)
PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def same(left: object, right: object) -> bool:
    """Equality in which NaN equals NaN, through tuples, lists and mappings."""
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, Tensor) and isinstance(right, Tensor):
        return left.shape == right.shape and same(left.data, right.data)
    return left == right


def snapshot_fields(variable: Variable) -> dict[str, object]:
    return {name: getattr(variable, name) for name in SNAPSHOT_FIELDS}


def assert_same_variables(left: Sequence[Variable], right: Sequence[Variable]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        fa, fb = snapshot_fields(a), snapshot_fields(b)
        for name in SNAPSHOT_FIELDS:
            assert same(fa[name], fb[name]), (name, fa[name], fb[name])


def glob_reference(pattern: str, name: str) -> bool:
    """Whole-name glob: ``*`` any run, ``?`` exactly one character, the rest literal."""
    # matches[j]: pattern[:i] matches name[:j]
    matches = [True] + [False] * len(name)
    for char in pattern:
        if char == "*":
            for j in range(1, len(name) + 1):
                matches[j] = matches[j] or matches[j - 1]
        else:
            matches = [False] + [
                matches[j - 1] and (char == "?" or char == name[j - 1])
                for j in range(1, len(name) + 1)
            ]
    return matches[len(name)]


def test_glob_reference_itself() -> None:
    assert glob_reference("temp_*", "temp_cpu")
    assert not glob_reference("temp_*", "my_temp_x")
    assert glob_reference("a?c", "abc")
    assert not glob_reference("a?c", "ac")
    assert glob_reference("*", "")
    assert not glob_reference("", "a")
    assert glob_reference("*a*b", "xaxxb")


# --------------------------------------------------------------------------
# identifiers and names


async def test_variable_ids_look_like_var_name_n_and_are_unique_in_the_store(
    store: AnyStore,
) -> None:
    await store.create_session("a")
    await store.create_session("b")

    ids = [
        await store.register_variable(sid, name, "integer", 1)
        for sid in ("a", "b")
        for name in ("alpha", "beta", "x_y")
    ]

    assert len(set(ids)) == len(ids)
    for var_id, name in zip(ids, ["alpha", "beta", "x_y"] * 2, strict=True):
        match = re.fullmatch(r"var_(.+)_([0-9]+)", var_id)
        assert match is not None, var_id
        assert match.group(1) == name
        assert int(match.group(2)) >= 1
        assert not match.group(2).startswith("0")


async def test_variable_ids_are_not_reused_after_delete(store: AnyStore, session_id: str) -> None:
    first = await store.register_variable(session_id, "x", "integer", 1)
    await store.delete_variable(session_id, first)

    second = await store.register_variable(session_id, "x", "integer", 1)

    assert second != first
    assert re.fullmatch(r"var_x_[1-9][0-9]*", second)


async def test_identifier_id_wins_over_name(store: AnyStore, session_id: str) -> None:
    first_id = await store.register_variable(session_id, "x", "integer", 1)
    # A second variable whose *name* is the first one's id.
    second_id = await store.register_variable(session_id, first_id, "integer", 2)

    by_shared_key = await store.get_variable(session_id, first_id)
    assert by_shared_key.id == first_id
    assert by_shared_key.value == 1
    assert (await store.get_variable(session_id, second_id)).value == 2

    updated = await store.update_variable(session_id, first_id, 10)
    assert updated.id == first_id
    assert await store.get_variable_value(session_id, second_id) == 2

    await store.delete_variable(session_id, first_id)
    # Now the id no longer exists, so the same string resolves as a name.
    assert (await store.get_variable(session_id, first_id)).id == second_id


async def test_variable_names_are_unique_within_a_session(store: AnyStore, session_id: str) -> None:
    original = await store.register_variable(session_id, "x", "integer", 1)

    with pytest.raises(VariableExists) as caught:
        await store.register_variable(session_id, "x", "string", "other")

    assert (caught.value.session_id, caught.value.name) == (session_id, "x")

    variable = await store.get_variable(session_id, "x")
    assert (variable.id, variable.type, variable.value) == (original, "integer", 1)
    assert len(await store.list_variables(session_id)) == 1


async def test_same_name_in_two_sessions_is_two_variables(store: AnyStore) -> None:
    await store.create_session("a")
    await store.create_session("b")
    a_id = await store.register_variable("a", "x", "integer", 1)
    b_id = await store.register_variable("b", "x", "integer", 2)

    await store.update_variable("a", "x", 10)

    assert a_id != b_id
    assert await store.get_variable_value("a", "x") == 10
    assert await store.get_variable_value("b", "x") == 2
    with pytest.raises(VariableNotFound):
        await store.get_variable("b", a_id)


async def test_type_may_be_a_variable_type_member(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "x", VariableType.INTEGER, 3)

    variable = await store.get_variable(session_id, "x")

    assert variable.type == "integer"
    assert variable.value == 3


async def test_variable_calls_on_missing_session_raise_session_not_found(
    store: AnyStore,
) -> None:
    with pytest.raises(SessionNotFound):
        await store.register_variable("missing", "x", "integer", 1)
    with pytest.raises(SessionNotFound):
        await store.get_variable("missing", "x")
    with pytest.raises(SessionNotFound):
        await store.list_variables("missing")
    assert await store.get_variable_value("missing", "x", 42) == 42
    assert not await store.has_variable("missing", "x")
    assert await store.list_sessions() == []


# --------------------------------------------------------------------------
# metadata


async def test_register_metadata_defaults(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "x", "integer", 1)

    variable = await store.get_variable(session_id, "x")

    assert dict(variable.metadata) == {"source": "python", "created_by": "session_store"}


async def test_register_metadata_adds_description_then_merges_caller_last(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(session_id, "d", "integer", 1, description="a counter")
    await store.register_variable(
        session_id,
        "m",
        "integer",
        1,
        description="a counter",
        metadata={"source": "elixir", "owner": "me", "description": "caller wins"},
    )

    described = await store.get_variable(session_id, "d")
    merged = await store.get_variable(session_id, "m")

    assert dict(described.metadata) == {
        "source": "python",
        "created_by": "session_store",
        "description": "a counter",
    }
    assert dict(merged.metadata) == {
        "source": "elixir",
        "created_by": "session_store",
        "description": "caller wins",
        "owner": "me",
    }


def assert_iso_utc_near_now(stamp: object) -> None:
    assert isinstance(stamp, str)
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0), stamp
    assert abs(parsed.timestamp() - time.time()) < 5


async def test_update_metadata_is_old_plus_caller_plus_source_and_updated_at(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(session_id, "x", "integer", 0, metadata={"owner": "me"})

    first = await store.update_variable(session_id, "x", 1, {"reason": "r1", "owner": "you"})

    meta = dict(first.metadata)
    assert_iso_utc_near_now(meta.pop("updated_at"))
    assert meta == {
        "source": "python",
        "created_by": "session_store",
        "owner": "you",
        "reason": "r1",
    }

    second = await store.update_variable(session_id, "x", 2, {"source": "elixir"})
    assert second.metadata["source"] == "elixir"
    assert second.metadata["reason"] == "r1"

    third = await store.update_variable(session_id, "x", 3, {"k": 1})
    assert third.metadata["source"] == "python"  # caller's source, or "python"
    assert_iso_utc_near_now(third.metadata["updated_at"])

    await store.update_variable(session_id, "x", 4, {"source": "elixir"})
    fourth = await store.update_variable(session_id, "x", 5)
    assert fourth.metadata["source"] == "python"


async def test_returned_variable_is_the_new_snapshot(store: AnyStore, session_id: str) -> None:
    registered_id = await store.register_variable(session_id, "x", "float", 0.5)
    before = await store.get_variable(session_id, "x")

    updated = await store.update_variable(session_id, "x", 0.25, {"k": "v"})

    assert updated == await store.get_variable(session_id, "x")
    assert updated.id == registered_id
    assert (updated.value, updated.version) == (0.25, 1)
    assert updated.created_at == before.created_at
    assert updated.updated_at >= before.updated_at
    assert before.value == 0.5  # the old snapshot did not change


async def test_failed_update_changes_nothing(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "x", "integer", 5, constraints={"min": 0, "max": 10})
    await store.update_variable(session_id, "x", 6, {"k": "v"})
    before = await store.get_variable(session_id, "x")

    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "x", 11, {"k": "changed"})
    with pytest.raises(ValidationError):
        await store.update_variable(session_id, "x", "seven", {"k": "changed"})

    after = await store.get_variable(session_id, "x")
    assert after == before
    assert (after.value, after.version, after.metadata["k"]) == (6, 1, "v")


# --------------------------------------------------------------------------
# listing


async def register_all(store: AnyStore, session_id: str, names: Sequence[str]) -> None:
    for name in names:
        await store.register_variable(session_id, name, "integer", 0)


async def names_listed(store: AnyStore, session_id: str, pattern: str | None) -> list[str]:
    return [v.name for v in await store.list_variables(session_id, pattern)]


async def test_list_variables_is_in_registration_order(store: AnyStore, session_id: str) -> None:
    await register_all(store, session_id, ["zeta", "alpha", "mid", "beta"])
    await store.update_variable(session_id, "zeta", 1)
    await store.delete_variable(session_id, "alpha")
    await store.register_variable(session_id, "alpha", "integer", 0)

    assert await names_listed(store, session_id, None) == ["zeta", "mid", "beta", "alpha"]


async def test_glob_star_is_anchored_at_both_ends(store: AnyStore, session_id: str) -> None:
    await register_all(store, session_id, ["temp_cpu", "my_temp_x", "temp_", "temp", "xtemp_y"])

    assert await names_listed(store, session_id, "temp_*") == ["temp_cpu", "temp_"]
    assert await names_listed(store, session_id, "*temp") == ["temp"]
    assert await names_listed(store, session_id, "*temp_*") == [
        "temp_cpu",
        "my_temp_x",
        "temp_",
        "xtemp_y",
    ]
    assert await names_listed(store, session_id, "temp") == ["temp"]
    assert len(await names_listed(store, session_id, "*")) == 5


async def test_glob_question_mark_matches_exactly_one_character(
    store: AnyStore, session_id: str
) -> None:
    await register_all(store, session_id, ["t_", "t_a", "t_ab", "t_é"])

    assert await names_listed(store, session_id, "t_?") == ["t_a", "t_é"]
    assert await names_listed(store, session_id, "t_??") == ["t_ab"]
    assert await names_listed(store, session_id, "?") == []


@pytest.mark.parametrize(
    ("pattern", "hits"),
    [
        ("a.b", ["a.b"]),
        ("x[1]", ["x[1]"]),
        ("a+", ["a+"]),
        ("(g)", ["(g)"]),
        ("^s$", ["^s$"]),
        ("b\\d", ["b\\d"]),
        ("{1}", ["{1}"]),
        ("p|q", ["p|q"]),
        ("*.b", ["a.b"]),
    ],
)
async def test_glob_other_characters_are_literal(
    store: AnyStore, session_id: str, pattern: str, hits: list[str]
) -> None:
    names = ["a.b", "axb", "x[1]", "x1", "a+", "aa", "(g)", "g", "^s$", "s"]
    names += ["b\\d", "b1", "{1}", "p|q", "p", "q"]
    await register_all(store, session_id, names)

    assert await names_listed(store, session_id, pattern) == hits


async def test_list_variables_of_empty_session_is_empty(store: AnyStore, session_id: str) -> None:
    assert await store.list_variables(session_id) == []
    assert await store.list_variables(session_id, "*") == []


# --------------------------------------------------------------------------
# delete, has, get_variable_value


async def test_delete_variable_removes_it(store: AnyStore, session_id: str) -> None:
    var_id = await store.register_variable(session_id, "x", "integer", 1)
    await store.register_variable(session_id, "y", "integer", 2)

    await store.delete_variable(session_id, "x")

    assert not await store.has_variable(session_id, "x")
    assert not await store.has_variable(session_id, var_id)
    with pytest.raises(VariableNotFound):
        await store.get_variable(session_id, var_id)
    with pytest.raises(VariableNotFound):
        await store.delete_variable(session_id, "x")
    assert await names_listed(store, session_id, None) == ["y"]
    assert (await store.get_session(session_id)).variable_count == 1


async def test_has_variable_by_id_and_name(store: AnyStore, session_id: str) -> None:
    var_id = await store.register_variable(session_id, "x", "integer", 1)

    assert await store.has_variable(session_id, "x")
    assert await store.has_variable(session_id, var_id)
    assert not await store.has_variable(session_id, "y")


async def test_get_variable_value_returns_value_or_default(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(session_id, "x", "string", "hi")

    assert await store.get_variable_value(session_id, "x") == "hi"
    assert await store.get_variable_value(session_id, "y") is None
    assert await store.get_variable_value(session_id, "y", "fallback") == "fallback"


# --------------------------------------------------------------------------
# batch get


async def test_get_variables_keys_found_as_given_and_lists_missing_once_in_order(
    store: AnyStore, session_id: str
) -> None:
    a_id = await store.register_variable(session_id, "a", "integer", 1)
    await store.register_variable(session_id, "b", "integer", 2)

    result = await store.get_variables(
        session_id, ["zz", a_id, "b", "nope", "b", "zz", "a", "nope2", "nope"]
    )

    assert isinstance(result, BatchGet)
    assert set(result.found) == {a_id, "b", "a"}
    assert result.found[a_id].value == 1
    assert result.found["a"].id == a_id
    assert result.found["b"].value == 2
    assert result.missing == ["zz", "nope", "nope2"]


async def test_get_variables_of_nothing(store: AnyStore, session_id: str) -> None:
    result = await store.get_variables(session_id, [])

    assert result.found == {}
    assert result.missing == []


# --------------------------------------------------------------------------
# batch update


@pytest.fixture
async def abc(store: AnyStore, session_id: str) -> dict[str, str]:
    """Variables a, b (max 10) and c; returns name -> id."""
    return {
        "a": await store.register_variable(session_id, "a", "integer", 1),
        "b": await store.register_variable(session_id, "b", "integer", 2, constraints={"max": 10}),
        "c": await store.register_variable(session_id, "c", "string", "three"),
    }


async def values_and_versions(store: AnyStore, session_id: str) -> dict[str, tuple[object, int]]:
    return {v.name: (v.value, v.version) for v in await store.list_variables(session_id)}


async def test_non_atomic_batch_applies_each_update_alone(
    store: AnyStore, session_id: str, abc: dict[str, str]
) -> None:
    results = await store.update_variables(
        session_id, {"a": 10, "b": 11, "nope": 1, "c": 3, abc["b"] + "x": 0}
    )

    assert list(results) == ["a", "b", "nope", "c", abc["b"] + "x"]
    a = results["a"]
    assert isinstance(a, Variable)
    assert (a.value, a.version) == (10, 1)
    assert isinstance(results["b"], ConstraintViolation)
    assert str(results["b"]) == "value 11 is above maximum 10"
    assert isinstance(results["nope"], VariableNotFound)
    assert isinstance(results["c"], ValidationError)
    assert str(results["c"]) == "must be a string"
    assert isinstance(results[abc["b"] + "x"], VariableNotFound)
    assert await values_and_versions(store, session_id) == {
        "a": (10, 1),
        "b": (2, 0),
        "c": ("three", 0),
    }


async def test_batch_metadata_applies_to_every_update(
    store: AnyStore, session_id: str, abc: dict[str, str]
) -> None:
    results = await store.update_variables(session_id, {"a": 5, "b": 6}, metadata={"batch": "yes"})

    for key in ("a", "b"):
        snapshot = results[key]
        assert isinstance(snapshot, Variable)
        assert snapshot.metadata["batch"] == "yes"
        assert snapshot.metadata["source"] == "python"
        assert "updated_at" in snapshot.metadata


async def test_atomic_batch_applies_everything_when_all_valid(
    store: AnyStore, session_id: str, abc: dict[str, str]
) -> None:
    results = await store.update_variables(
        session_id, {abc["a"]: 100, "b": 9, "c": "four"}, atomic=True
    )

    assert list(results) == [abc["a"], "b", "c"]
    assert all(isinstance(r, Variable) for r in results.values())
    assert await values_and_versions(store, session_id) == {
        "a": (100, 1),
        "b": (9, 1),
        "c": ("four", 1),
    }


async def test_atomic_batch_changes_nothing_on_any_failure(
    store: AnyStore, session_id: str, abc: dict[str, str]
) -> None:
    before = await store.list_variables(session_id)

    with pytest.raises(AtomicUpdateError) as caught:
        await store.update_variables(
            session_id, {"a": 100, "b": 11, "nope": 1, "c": 3}, atomic=True
        )

    errors = caught.value.errors
    assert set(errors) == {"b", "nope", "c"}
    assert isinstance(errors["b"], ConstraintViolation)
    assert isinstance(errors["nope"], VariableNotFound)
    assert isinstance(errors["c"], ValidationError)
    assert await store.list_variables(session_id) == before


@pytest.mark.parametrize("atomic", [False, True])
async def test_two_keys_for_the_same_variable_make_the_second_invalid(
    store: AnyStore, session_id: str, abc: dict[str, str], atomic: bool
) -> None:
    updates = {"a": 5, abc["a"]: 6}

    if atomic:
        with pytest.raises(AtomicUpdateError) as caught:
            await store.update_variables(session_id, updates, atomic=True)
        assert set(caught.value.errors) == {abc["a"]}
        assert isinstance(caught.value.errors[abc["a"]], InvalidArgument)
        assert (await values_and_versions(store, session_id))["a"] == (1, 0)
    else:
        results = await store.update_variables(session_id, updates)
        first = results["a"]
        assert isinstance(first, Variable)
        assert (first.value, first.version) == (5, 1)
        assert isinstance(results[abc["a"]], InvalidArgument)
        assert (await values_and_versions(store, session_id))["a"] == (5, 1)


@pytest.mark.parametrize("atomic", [False, True])
async def test_second_key_for_a_variable_is_invalid_even_when_the_first_key_failed(
    store: AnyStore, session_id: str, abc: dict[str, str], atomic: bool
) -> None:
    # SPEC §4: "Two keys that resolve to the same variable: the second is an
    # InvalidArgument for that key" -- whatever became of the first.
    updates = {"b": 99, abc["b"]: 7}  # b has max 10: the first key fails

    outcome: dict[str, Variable | SessionStoreError]
    if atomic:
        with pytest.raises(AtomicUpdateError) as caught:
            await store.update_variables(session_id, updates, atomic=True)
        outcome = dict(caught.value.errors)
    else:
        outcome = await store.update_variables(session_id, updates)

    assert isinstance(outcome["b"], ConstraintViolation)
    assert isinstance(outcome.get(abc["b"]), InvalidArgument), outcome
    assert (await values_and_versions(store, session_id))["b"] == (2, 0)


async def test_empty_batch_update_returns_empty_result(store: AnyStore, session_id: str) -> None:
    assert await store.update_variables(session_id, {}) == {}
    assert await store.update_variables(session_id, {}, atomic=True) == {}


# --------------------------------------------------------------------------
# export / import


async def register_assorted(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "nan", "float", math.nan)
    await store.register_variable(session_id, "inf", "float", "Infinity")
    await store.register_variable(session_id, "ninf", "float", -math.inf)
    await store.register_variable(
        session_id, "bounded", "float", 0.5, constraints={"min": 0.0, "max": 1.0}
    )
    await store.register_variable(session_id, "count", "integer", 3, description="n")
    await store.register_variable(
        session_id, "word", "string", "abc", constraints={"enum": ["abc", "xyz"]}
    )
    await store.register_variable(session_id, "flag", "boolean", True)
    await store.register_variable(
        session_id, "pick", "choice", "a", constraints={"choices": ["a", "b"]}
    )
    await store.register_variable(session_id, "mod", "module", "json")
    await store.register_variable(
        session_id, "vec", "embedding", [1, 2.5, math.inf], constraints={"dimensions": 3}
    )
    await store.register_variable(
        session_id, "ten", "tensor", {"shape": [2, 2], "data": [[1, 2], [3, 4]]}
    )
    await store.update_variable(session_id, "count", 4, {"reason": "bump"})
    await store.update_variable(session_id, "count", 5)
    await store.update_variable(session_id, "vec", (3, 2, 1))


async def test_export_is_json_ready_with_special_floats_as_strings(
    store: AnyStore, session_id: str
) -> None:
    await register_assorted(store, session_id)

    exported = await store.export_variables(session_id)

    text = json.dumps(exported, allow_nan=False)
    assert len(exported) == 11
    by_name = {entry["name"]: entry for entry in exported}
    assert all(set(entry) == EXPORT_KEYS for entry in exported)
    assert by_name["nan"]["value"] == "NaN"
    assert by_name["inf"]["value"] == "Infinity"
    assert by_name["ninf"]["value"] == "-Infinity"
    assert by_name["bounded"]["value"] == 0.5
    assert by_name["bounded"]["constraints"] == {"min": 0.0, "max": 1.0}
    assert by_name["count"]["version"] == 2
    assert by_name["count"]["type"] == "integer"
    assert by_name["count"]["metadata"]["reason"] == "bump"
    assert by_name["vec"]["value"] == [3.0, 2.0, 1.0]
    assert json.loads(text)[0]["value"] == "NaN"


async def test_export_order_matches_listing(store: AnyStore, session_id: str) -> None:
    await register_assorted(store, session_id)

    exported = await store.export_variables(session_id)
    listed = await store.list_variables(session_id)

    assert [e["id"] for e in exported] == [v.id for v in listed]


async def test_import_after_json_round_trip_reproduces_variables(
    store: AnyStore, session_id: str
) -> None:
    await register_assorted(store, session_id)
    exported = json.loads(json.dumps(await store.export_variables(session_id), allow_nan=False))
    await store.create_session("copy")

    assert await store.import_variables("copy", exported) == 11

    assert_same_variables(
        await store.list_variables("copy"), await store.list_variables(session_id)
    )
    copied_ten = await store.get_variable("copy", "ten")
    assert copied_ten.value == Tensor(shape=(2, 2), data=(1.0, 2.0, 3.0, 4.0))
    copied_vec = await store.get_variable("copy", "vec")
    assert copied_vec.value == (3.0, 2.0, 1.0)
    # imported variables behave like registered ones
    with pytest.raises(ConstraintViolation):
        await store.update_variable("copy", "bounded", 2.0)
    bumped = await store.update_variable("copy", "count", 6)
    assert bumped.version == 3


async def test_import_into_another_store_keeps_ids_versions_and_timestamps(
    store: AnyStore, session_id: str, open_store: OpenStore
) -> None:
    await register_assorted(store, session_id)
    exported = json.loads(json.dumps(await store.export_variables(session_id), allow_nan=False))

    async with open_store() as other:
        await other.create_session("restored")
        assert await other.import_variables("restored", exported) == 11
        restored = await other.list_variables("restored")

    assert_same_variables(restored, await store.list_variables(session_id))


async def test_ids_registered_after_an_import_do_not_repeat_imported_ids(
    store: AnyStore, session_id: str, open_store: OpenStore
) -> None:
    for name in ("a", "b", "c"):
        await store.register_variable(session_id, name, "integer", 1)
    exported = await store.export_variables(session_id)
    imported_ids = {entry["id"] for entry in exported}

    async with open_store() as other:
        await other.create_session("restored")
        await other.import_variables("restored", exported)
        await other.create_session("fresh")
        new_ids = {
            await other.register_variable("fresh", name, "integer", 1) for name in ("a", "b", "c")
        }

    assert not new_ids & imported_ids


async def test_import_is_all_or_nothing_with_errors_by_entry_index(
    store: AnyStore, session_id: str
) -> None:
    await register_assorted(store, session_id)
    good = json.loads(json.dumps(await store.export_variables(session_id), allow_nan=False))
    await store.create_session("target")
    existing_id = await store.register_variable("target", "count", "integer", 0)
    before = await store.list_variables("target")

    missing_key = {k: v for k, v in good[1].items() if k != "type"}
    breaks_constraint = dict(good[3], value=2.0)  # "bounded" has max 1.0
    name_taken = good[4]  # "count" already exists in target
    wrong_type = dict(good[5], value=17)
    id_taken = dict(good[6], id=existing_id)
    unknown_type = dict(good[7], type="no-such-type")
    entries = [good[0], missing_key, good[2], breaks_constraint, name_taken, wrong_type]
    entries += [id_taken, unknown_type, good[8]]

    with pytest.raises(InvalidImport) as caught:
        await store.import_variables("target", entries)

    assert set(caught.value.errors) == {1, 3, 4, 5, 6, 7}
    assert all(isinstance(why, str) and why for why in caught.value.errors.values())
    assert await store.list_variables("target") == before


async def test_import_rejects_names_repeated_within_the_import(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(session_id, "x", "integer", 1)
    entry = (await store.export_variables(session_id))[0]
    await store.create_session("target")
    renamed_copy = dict(entry, id="var_x_999999")

    with pytest.raises(InvalidImport) as caught:
        await store.import_variables("target", [entry, renamed_copy])

    assert set(caught.value.errors) == {1}
    assert await store.list_variables("target") == []


async def test_import_of_nothing_imports_nothing(store: AnyStore, session_id: str) -> None:
    assert await store.import_variables(session_id, []) == 0
    assert await store.list_variables(session_id) == []


def _float_entries(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"var_v{i}_{i + 1}", "name": f"v{i}", "type": "float", "value": i / 2}
        for i in range(start, start + count)
    ]


async def test_a_large_import_lets_other_calls_run_while_it_is_checked(store: SessionStore) -> None:
    """The check of a large import goes in steps: the loop (and so the actor) serves
    other callers between them, and the import then lands whole, in one turn."""
    await store.create_session("hot")
    await store.register_variable("hot", "x", "integer", 0)
    await store.create_session("target")
    seen_sizes: list[int] = []

    async def reader() -> int:
        served = 0
        while not importing.done():
            seen_sizes.append(len(await store.list_variables("target", "v1*")))
            await store.update_variable("hot", "x", served + 1)
            served += 1
        return served

    importing = asyncio.ensure_future(store.import_variables("target", _float_entries(20_000)))
    served = await reader()
    assert await importing == 20_000
    # One step holds the loop for 64 entries: a 20,000-entry check has hundreds.
    assert served >= 20
    assert set(seen_sizes) <= {0, 11_111}  # nothing half-imported was ever seen
    assert (await store.get_variable("hot", "x")).version == served


async def test_an_import_given_up_while_it_is_checked_changes_nothing(store: SessionStore) -> None:
    await store.create_session("target")
    await store.register_variable("target", "before", "integer", 0)
    importing = asyncio.ensure_future(store.import_variables("target", _float_entries(20_000)))
    for _ in range(5):
        await asyncio.sleep(0)  # the check is under way
    importing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await importing
    await store.register_variable("target", "after", "integer", 0)
    assert [v.name for v in await store.list_variables("target")] == ["before", "after"]
    before, after = await store.list_variables("target")
    assert after.revision == before.revision + 1  # no revision went to the import
    assert (await store.get_stats()).current_variables == 2
    assert await store.import_variables("target", _float_entries(100)) == 100


async def test_a_store_stopped_while_an_import_is_checked_refuses_it() -> None:
    store = SessionStore()
    async with store:
        await store.create_session("target")
        importing = asyncio.ensure_future(store.import_variables("target", _float_entries(20_000)))
        await asyncio.sleep(0)
    with pytest.raises(StoreClosed):
        await importing


async def test_an_import_checks_each_distinct_constraints_exactly(store: SessionStore) -> None:
    """Equal-looking constraints (1 and 1.0, 0.0 and -0.0) stay what each entry said,
    though the import compiles each distinct one once."""
    await store.create_session("target")
    bounds: list[dict[str, Any]] = [{"min": 1}, {"min": 1.0}, {"min": 0.0}, {"min": -0.0}]
    entries = [
        {
            "id": f"var_b{i}_{i + 1}",
            "name": f"b{i}",
            "type": "float",
            "value": 2.0,
            "constraints": c,
        }
        for i, c in enumerate(bounds * 3)
    ]
    await store.import_variables("target", entries)
    for i, expected in enumerate(bounds * 3):
        got = (await store.get_variable("target", f"b{i}")).constraints["min"]
        assert (type(got), repr(got)) == (type(expected["min"]), repr(expected["min"]))


# --------------------------------------------------------------------------
# immutability


@pytest.mark.parametrize("field", ["value", "version", "metadata", "name"])
async def test_variable_snapshot_is_frozen(store: AnyStore, session_id: str, field: str) -> None:
    await store.register_variable(session_id, "x", "integer", 1)
    variable = await store.get_variable(session_id, "x")

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(variable, field, 2)

    assert (await store.get_variable(session_id, "x")).value == 1


@pytest.mark.parametrize("field", ["ttl", "metadata", "last_accessed"])
async def test_session_snapshot_is_frozen(store: AnyStore, session_id: str, field: str) -> None:
    session = await store.get_session(session_id)
    assert isinstance(session, Session)

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(session, field, 1)


async def test_mutating_an_embedding_list_passed_in_does_not_change_the_store(
    store: AnyStore, session_id: str
) -> None:
    vector = [1.0, 2.0, 3.0]
    await store.register_variable(session_id, "v", "embedding", vector)
    vector[0] = 99.0
    vector.append(4.0)
    update = [5.0, 6.0, 7.0]
    await store.update_variable(session_id, "v", update)
    update[1] = -1.0

    variable = await store.get_variable(session_id, "v")

    assert variable.value == (5.0, 6.0, 7.0)
    assert isinstance(variable.value, tuple)


async def test_mutating_metadata_or_constraints_passed_in_does_not_change_the_store(
    store: AnyStore, session_id: str
) -> None:
    metadata: dict[str, Any] = {"tags": ["a"], "owner": "me"}
    constraints: dict[str, Any] = {"enum": ["x", "y"]}
    await store.register_variable(
        session_id, "s", "string", "x", constraints=constraints, metadata=metadata
    )
    metadata["owner"] = "you"
    metadata["tags"].append("b")
    constraints["enum"].append("z")
    session_meta: dict[str, Any] = {"k": [1]}
    await store.update_session(session_id, metadata=session_meta)
    session_meta["k"].append(2)

    variable = await store.get_variable(session_id, "s")

    assert variable.metadata["owner"] == "me"
    assert variable.metadata["tags"] == ("a",)
    assert variable.constraints["enum"] == ("x", "y")
    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "s", "z")
    assert (await store.get_session(session_id)).metadata["k"] == (1,)


async def test_returned_metadata_and_constraints_are_read_only(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(
        session_id, "x", "integer", 1, constraints={"max": 5}, metadata={"tags": ["a"]}
    )
    variable = await store.get_variable(session_id, "x")
    metadata: Any = variable.metadata
    constraints: Any = variable.constraints
    session_metadata: Any = (await store.get_session(session_id)).metadata

    with pytest.raises(TypeError):
        metadata["owner"] = "me"
    with pytest.raises(TypeError):
        constraints["max"] = 100
    with pytest.raises(TypeError):
        session_metadata["k"] = 1
    with pytest.raises(AttributeError):
        metadata["tags"].append("b")

    again = await store.get_variable(session_id, "x")
    assert "owner" not in again.metadata
    assert again.metadata["tags"] == ("a",)
    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "x", 6)


async def test_exported_dicts_are_copies(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "v", "embedding", [1.0, 2.0])
    exported = await store.export_variables(session_id)

    exported[0]["value"].append(3.0)
    exported[0]["metadata"]["source"] = "tampered"

    variable = await store.get_variable(session_id, "v")
    assert variable.value == (1.0, 2.0)
    assert variable.metadata["source"] == "python"


# --------------------------------------------------------------------------
# concurrency


async def test_concurrent_updates_to_one_variable_are_all_applied(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(session_id, "n", "integer", 0)

    results = await asyncio.gather(
        *(store.update_variable(session_id, "n", i) for i in range(1, 201))
    )

    assert sorted(r.version for r in results) == list(range(1, 201))
    final = await store.get_variable(session_id, "n")
    assert final.version == 200
    last = max(results, key=lambda r: r.version)
    assert final.value == last.value
    assert (await store.get_session(session_id)).total_variable_updates == 200


async def test_concurrent_registrations_get_distinct_ids(store: AnyStore, session_id: str) -> None:
    ids = await asyncio.gather(
        *(store.register_variable(session_id, f"v{i}", "integer", i) for i in range(100))
    )

    assert len(set(ids)) == 100
    assert len(await store.list_variables(session_id)) == 100


# --------------------------------------------------------------------------
# properties

NAME_CHARS = "ab_.[]()+^$\\|é\n"
names_strategy = st.lists(
    st.text(alphabet=NAME_CHARS, min_size=1, max_size=5), min_size=1, max_size=8, unique=True
)
pattern_strategy = st.text(alphabet=NAME_CHARS + "*?", max_size=6)


@PROPERTY_SETTINGS
@given(names=names_strategy, data=st.data())
def test_glob_listing_equals_reference_glob(names: list[str], data: st.DataObject) -> None:
    # Half the patterns are derived from a registered name, so that they hit.
    derived = st.sampled_from(names).flatmap(
        lambda name: st.lists(
            st.sampled_from(["keep", "?", "*", "drop"]), min_size=len(name), max_size=len(name)
        ).map(
            lambda ops: "".join(
                char if op == "keep" else ("" if op == "drop" else op)
                for char, op in zip(name, ops, strict=True)
            )
        )
    )
    patterns = data.draw(st.lists(st.one_of(pattern_strategy, derived), min_size=1, max_size=5))

    async def scenario() -> None:
        async with SessionStore() as store:
            await store.create_session("s")
            await register_all(store, "s", names)
            for pattern in patterns:
                expected = [name for name in names if glob_reference(pattern, name)]
                assert await names_listed(store, "s", pattern) == expected, pattern

    asyncio.run(scenario())


typed_values = st.one_of(
    st.tuples(st.just("float"), st.floats()),
    st.tuples(st.just("integer"), st.integers(min_value=-(10**30), max_value=10**30)),
    st.tuples(st.just("string"), st.text(max_size=20)),
    st.tuples(st.just("boolean"), st.booleans()),
    st.tuples(st.just("embedding"), st.lists(st.floats(), min_size=1, max_size=4)),
)


@pytest.mark.parametrize("kind", STORE_KINDS)
@PROPERTY_SETTINGS
@given(
    entries=st.lists(
        st.tuples(typed_values, st.lists(typed_values, max_size=2)), min_size=1, max_size=5
    )
)
def test_export_import_round_trip_keeps_everything(
    kind: str, entries: list[tuple[tuple[str, object], list[tuple[str, object]]]]
) -> None:
    """Through the wire too: every value, version and timestamp comes back exactly."""

    async def scenario() -> None:
        async with open_store_of(kind) as source, open_store_of(kind) as target:
            await source.create_session("s")
            for index, ((type_name, value), updates) in enumerate(entries):
                name = f"v{index}"
                await source.register_variable("s", name, type_name, value)
                for update_type, update_value in updates:
                    if update_type == type_name:
                        await source.update_variable("s", name, update_value)
            original = await source.list_variables("s")
            text = json.dumps(await source.export_variables("s"), allow_nan=False)

            await target.create_session("t")
            assert await target.import_variables("t", json.loads(text)) == len(entries)

            assert_same_variables(await target.list_variables("t"), original)

    asyncio.run(scenario())


_bound = st.none() | st.floats(allow_nan=False) | st.integers(min_value=-5, max_value=5)


@PROPERTY_SETTINGS
@given(
    low=_bound,
    high=_bound,
    values=st.lists(st.floats() | st.sampled_from([-0.0, 0.0, 1, True]), min_size=1, max_size=8),
)
def test_float_updates_accept_exactly_what_the_float_type_accepts(
    low: float | None, high: float | None, values: list[object]
) -> None:
    """Whatever path an update takes (an in-range float needs no more checking), a
    value is stored exactly when the float type and its bounds accept it, as given."""
    if low is not None and high is not None and low > high:
        low, high = high, low
    constraints = {key: bound for key, bound in (("min", low), ("max", high)) if bound is not None}
    spec = FloatType()

    def accepted(value: object) -> object:
        try:
            stored = spec.validate(value)
            spec.check(stored, constraints)
        except ValidationError:
            return None
        return stored

    async def scenario() -> None:
        async with SessionStore() as store:
            await store.create_session("s")
            start = low if low is not None else (high if high is not None else 0.0)
            await store.register_variable("s", "x", "float", float(start), constraints=constraints)
            version = 0
            for value in values:
                expected = accepted(value)
                if expected is None:
                    with pytest.raises(ValidationError):
                        await store.update_variable("s", "x", value)
                    continue
                updated = await store.update_variable("s", "x", value)
                version += 1
                assert updated.version == version
                assert type(updated.value) is float
                assert math.copysign(1.0, updated.value) == math.copysign(1.0, expected)  # type: ignore[arg-type]
                assert updated.value == expected or (
                    expected != expected and updated.value != updated.value
                )

    asyncio.run(scenario())


@PROPERTY_SETTINGS
@given(values=st.lists(st.integers(min_value=-50, max_value=150), min_size=1, max_size=15))
def test_update_applies_exactly_the_values_within_constraints(values: list[int]) -> None:
    async def scenario() -> None:
        async with SessionStore() as store:
            await store.create_session("s")
            await store.register_variable(
                "s", "n", "integer", 0, constraints={"min": 0, "max": 100}
            )
            model_value, model_version = 0, 0
            for value in values:
                if 0 <= value <= 100:
                    updated = await store.update_variable("s", "n", value)
                    model_value, model_version = value, model_version + 1
                    assert (updated.value, updated.version) == (model_value, model_version)
                else:
                    with pytest.raises(ConstraintViolation):
                        await store.update_variable("s", "n", value)
                current = await store.get_variable("s", "n")
                assert (current.value, current.version) == (model_value, model_version)

    asyncio.run(scenario())
