"""A port of every case in the seed's ``session_store_variables_test.exs``.

Elixir atoms become Python ``str``; ``{:error, reason}`` tuples become the
exceptions of SPEC §6; ``update_variable`` and batch updates return the new
``Variable`` snapshots where snakepit returned ``:ok`` (SPEC §9).
"""

from __future__ import annotations

import re

import pytest
from conftest import AnyStore

from sessionactor import (
    AtomicUpdateError,
    BatchGet,
    ConstraintViolation,
    UnknownType,
    ValidationError,
    Variable,
    VariableNotFound,
    VariableType,
)

# describe "register_variable/5"


async def test_register_variable_validates_and_stores_type_value_constraints_metadata(
    store: AnyStore, session_id: str
) -> None:
    var_id = await store.register_variable(
        session_id,
        "temperature",
        "float",
        0.7,
        constraints={"min": 0.0, "max": 2.0},
        description="LLM temperature",
    )

    assert re.fullmatch(r"var_temperature_[1-9][0-9]*", var_id)
    variable = await store.get_variable(session_id, var_id)
    assert variable.id == var_id
    assert variable.name == "temperature"
    assert variable.type == "float"
    assert variable.type == VariableType.FLOAT
    assert variable.value == 0.7
    assert variable.constraints["min"] == 0.0
    assert variable.metadata["description"] == "LLM temperature"


async def test_register_variable_with_unknown_type_raises_unknown_type(
    store: AnyStore, session_id: str
) -> None:
    with pytest.raises(UnknownType) as caught:
        await store.register_variable(session_id, "bad", "invalid", "value")

    assert caught.value.type_name == "invalid"
    assert isinstance(caught.value, ValueError)
    assert not await store.has_variable(session_id, "bad")


async def test_register_variable_rejects_value_of_wrong_type(
    store: AnyStore, session_id: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await store.register_variable(session_id, "count", "integer", "not a number")

    assert not isinstance(caught.value, ConstraintViolation)
    assert str(caught.value) == "must be an integer"
    assert not await store.has_variable(session_id, "count")


async def test_register_variable_rejects_initial_value_breaking_constraints(
    store: AnyStore, session_id: str
) -> None:
    with pytest.raises(ConstraintViolation) as caught:
        await store.register_variable(
            session_id, "percentage", "float", 1.5, constraints={"min": 0.0, "max": 1.0}
        )

    assert str(caught.value) == "value 1.5 is above maximum 1.0"
    assert not await store.has_variable(session_id, "percentage")
    assert await store.list_variables(session_id) == []


# describe "get_variable/2"


@pytest.fixture
async def test_var_id(store: AnyStore, session_id: str) -> str:
    return await store.register_variable(session_id, "test_var", "string", "hello")


async def test_get_variable_by_id(store: AnyStore, session_id: str, test_var_id: str) -> None:
    variable = await store.get_variable(session_id, test_var_id)

    assert variable.value == "hello"
    assert variable.id == test_var_id


async def test_get_variable_by_name(store: AnyStore, session_id: str, test_var_id: str) -> None:
    # The seed's "by name (string)" and "by name (atom)" cases are one case in Python.
    variable = await store.get_variable(session_id, "test_var")

    assert variable.value == "hello"
    assert variable.id == test_var_id


async def test_get_variable_non_existent_raises_variable_not_found(
    store: AnyStore, session_id: str, test_var_id: str
) -> None:
    with pytest.raises(VariableNotFound) as caught:
        await store.get_variable(session_id, "nonexistent")

    assert caught.value.session_id == session_id
    assert caught.value.identifier == "nonexistent"
    assert isinstance(caught.value, KeyError)


# describe "update_variable/4"


@pytest.fixture
async def counter_id(store: AnyStore, session_id: str) -> str:
    return await store.register_variable(
        session_id, "counter", "integer", 0, constraints={"min": 0, "max": 100}
    )


async def test_update_variable_sets_value_and_increments_version(
    store: AnyStore, session_id: str, counter_id: str
) -> None:
    first = await store.update_variable(session_id, "counter", 42)

    assert isinstance(first, Variable)
    assert (first.id, first.value, first.version) == (counter_id, 42, 1)
    variable = await store.get_variable(session_id, "counter")
    assert (variable.value, variable.version) == (42, 1)

    second = await store.update_variable(session_id, "counter", 50)

    assert (second.value, second.version) == (50, 2)
    variable = await store.get_variable(session_id, "counter")
    assert (variable.value, variable.version) == (50, 2)


async def test_update_variable_breaking_constraint_leaves_value_and_version(
    store: AnyStore, session_id: str, counter_id: str
) -> None:
    with pytest.raises(ConstraintViolation) as caught:
        await store.update_variable(session_id, "counter", 150)

    assert str(caught.value) == "value 150 is above maximum 100"
    variable = await store.get_variable(session_id, "counter")
    assert variable.value == 0
    assert variable.version == 0


async def test_update_variable_adds_caller_metadata(
    store: AnyStore, session_id: str, counter_id: str
) -> None:
    updated = await store.update_variable(
        session_id, "counter", 1, {"reason": "increment", "user": "test"}
    )

    assert updated.metadata["reason"] == "increment"
    assert updated.metadata["user"] == "test"
    variable = await store.get_variable(session_id, "counter")
    assert variable.metadata["reason"] == "increment"
    assert variable.metadata["user"] == "test"


# describe "batch operations"


@pytest.fixture
async def abc(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "a", "integer", 1)
    await store.register_variable(session_id, "b", "integer", 2)
    await store.register_variable(session_id, "c", "integer", 3)


@pytest.mark.usefixtures("abc")
async def test_get_variables_returns_found_by_identifier_and_missing(
    store: AnyStore, session_id: str
) -> None:
    result = await store.get_variables(session_id, ["a", "b", "nonexistent", "c"])

    assert isinstance(result, BatchGet)
    assert len(result.found) == 3
    assert result.found["a"].value == 1
    assert result.found["b"].value == 2
    assert result.found["c"].value == 3
    assert result.missing == ["nonexistent"]


@pytest.mark.usefixtures("abc")
async def test_update_variables_non_atomic_applies_each_and_returns_new_snapshots(
    store: AnyStore, session_id: str
) -> None:
    results = await store.update_variables(session_id, {"a": 10, "b": 20, "c": 30})

    assert set(results) == {"a", "b", "c"}
    for key, expected in (("a", 10), ("b", 20), ("c", 30)):
        snapshot = results[key]
        assert isinstance(snapshot, Variable)
        assert (snapshot.name, snapshot.value, snapshot.version) == (key, expected, 1)
    assert await store.get_variable_value(session_id, "a") == 10
    assert await store.get_variable_value(session_id, "b") == 20
    assert await store.get_variable_value(session_id, "c") == 30


@pytest.mark.usefixtures("abc")
async def test_update_variables_atomic_with_validation_failure_applies_nothing(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(session_id, "constrained", "integer", 5, constraints={"max": 10})

    with pytest.raises(AtomicUpdateError) as caught:
        await store.update_variables(session_id, {"a": 100, "constrained": 20}, atomic=True)

    errors = caught.value.errors
    assert set(errors) == {"constrained"}
    assert isinstance(errors["constrained"], ConstraintViolation)
    assert "above maximum" in str(errors["constrained"])
    assert await store.get_variable_value(session_id, "a") == 1
    assert await store.get_variable_value(session_id, "constrained") == 5
    assert (await store.get_variable(session_id, "a")).version == 0
    assert (await store.get_variable(session_id, "constrained")).version == 0


# describe "list_variables/1,2"


@pytest.fixture
async def temps(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "temp_cpu", "float", 45.0)
    await store.register_variable(session_id, "temp_gpu", "float", 60.0)
    await store.register_variable(session_id, "memory", "integer", 1024)


@pytest.mark.usefixtures("temps")
async def test_list_variables_lists_all(store: AnyStore, session_id: str) -> None:
    variables = await store.list_variables(session_id)

    assert len(variables) == 3
    assert [v.name for v in variables] == ["temp_cpu", "temp_gpu", "memory"]


@pytest.mark.usefixtures("temps")
async def test_list_variables_by_pattern(store: AnyStore, session_id: str) -> None:
    temps = await store.list_variables(session_id, "temp_*")

    assert len(temps) == 2
    assert all(v.name.startswith("temp_") for v in temps)
    assert [v.name for v in temps] == ["temp_cpu", "temp_gpu"]
