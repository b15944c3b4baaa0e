"""SPEC §4 "Immutability": nothing a caller receives can change the store, and
nothing a caller passed in can change it afterwards.

``Session`` and ``Variable`` are frozen; values are stored immutable (embedding ->
``tuple[float, ...]``, tensor -> ``Tensor``); metadata and constraints are copied on
the way in and read-only on the way out (decisions: ``MappingProxyType``, nested
lists as tuples); program data is deep-copied in and out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from attrs.exceptions import FrozenInstanceError
from conftest import AnyStore

from sessionactor import (
    BatchGet,
    ConstraintViolation,
    Session,
    StoreStats,
    Tensor,
    Variable,
)

META: dict[str, object] = {"owner": "tests", "tags": ["a", "b"], "nested": {"k": [1, 2]}}


def fresh_meta() -> dict[str, Any]:
    return {"owner": "tests", "tags": ["a", "b"], "nested": {"k": [1, 2]}}


def as_plain(value: object) -> object:
    """Mappings to dicts and sequences to lists, all the way down, for comparison."""
    if isinstance(value, str | bytes):
        return value
    if hasattr(value, "items"):
        return {key: as_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_plain(item) for item in value]
    return value


# --------------------------------------------------------------------------
# Snapshots are frozen


@pytest.mark.parametrize("field", [field.name for field in attrs.fields(Variable)])
async def test_variable_snapshot_is_frozen(store: AnyStore, session_id: str, field: str) -> None:
    await store.register_variable(session_id, "temp", "float", 0.5, metadata={"k": "v"})
    var = await store.get_variable(session_id, "temp")
    with pytest.raises(FrozenInstanceError):
        setattr(var, field, "changed")
    with pytest.raises(FrozenInstanceError):
        delattr(var, field)
    assert await store.get_variable(session_id, "temp") == var
    assert var.value == 0.5


@pytest.mark.parametrize("field", [field.name for field in attrs.fields(Session)])
async def test_session_snapshot_is_frozen(store: AnyStore, field: str) -> None:
    session = await store.create_session("frozen", metadata={"k": "v"})
    with pytest.raises(FrozenInstanceError):
        setattr(session, field, "changed")
    with pytest.raises(FrozenInstanceError):
        delattr(session, field)
    again = await store.get_session("frozen")
    assert (again.id, dict(again.metadata), again.ttl) == ("frozen", {"k": "v"}, session.ttl)


async def test_stats_batch_and_tensor_are_frozen(store: AnyStore, session_id: str) -> None:
    """SPEC §1 module map: ``Session``, ``Variable``, ``BatchGet``, ``StoreStats``, all frozen."""
    await store.register_variable(
        session_id, "grid", "tensor", {"shape": [2, 2], "data": [[1, 2], [3, 4]]}
    )
    stats = await store.get_stats()
    assert isinstance(stats, StoreStats)
    with pytest.raises(FrozenInstanceError):
        stats.current_sessions = 99  # type: ignore[misc]
    batch = await store.get_variables(session_id, ["grid", "nope"])
    assert isinstance(batch, BatchGet)
    with pytest.raises(FrozenInstanceError):
        batch.found = {}  # type: ignore[misc]
    tensor = await store.get_variable_value(session_id, "grid")
    assert isinstance(tensor, Tensor)
    assert tensor == Tensor((2, 2), (1.0, 2.0, 3.0, 4.0))
    with pytest.raises(FrozenInstanceError):
        tensor.data = (9.0, 9.0, 9.0, 9.0)  # type: ignore[misc]
    assert (await store.get_variable_value(session_id, "grid")) == Tensor(
        (2, 2), (1.0, 2.0, 3.0, 4.0)
    )
    assert (await store.get_stats()).current_sessions == 1


# --------------------------------------------------------------------------
# Mappings handed out are read-only, all the way down


async def test_variable_metadata_and_constraints_are_read_only(
    store: AnyStore, session_id: str
) -> None:
    await store.register_variable(
        session_id,
        "color",
        "string",
        "a",
        constraints={"enum": ["a", "b"], "max_length": 3},
        metadata=fresh_meta(),
    )
    var = await store.get_variable(session_id, "color")
    metadata: Any = var.metadata
    constraints: Any = var.constraints
    with pytest.raises(TypeError):
        metadata["owner"] = "intruder"
    with pytest.raises(TypeError):
        metadata["new"] = 1
    with pytest.raises(TypeError):
        del metadata["owner"]
    with pytest.raises(TypeError):
        constraints["max_length"] = 100
    with pytest.raises(TypeError):
        del constraints["enum"]
    # Nested containers are frozen too.
    with pytest.raises((TypeError, AttributeError)):
        metadata["tags"].append("c")
    with pytest.raises(TypeError):
        metadata["tags"][0] = "z"
    with pytest.raises(TypeError):
        metadata["nested"]["k"] = "changed"
    with pytest.raises((TypeError, AttributeError)):
        metadata["nested"]["k"].append(3)
    with pytest.raises((TypeError, AttributeError)):
        constraints["enum"].append("c")

    again = await store.get_variable(session_id, "color")
    assert dict(again.constraints) == {"enum": ("a", "b"), "max_length": 3}
    assert as_plain(again.constraints) == {"enum": ["a", "b"], "max_length": 3}
    meta = as_plain(again.metadata)
    assert isinstance(meta, dict)
    assert {key: meta[key] for key in META} == META
    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "color", "c")


async def test_session_metadata_is_read_only(store: AnyStore) -> None:
    session = await store.create_session("meta", metadata=fresh_meta())
    metadata: Any = session.metadata
    with pytest.raises(TypeError):
        metadata["owner"] = "intruder"
    with pytest.raises(TypeError):
        del metadata["owner"]
    with pytest.raises((TypeError, AttributeError)):
        metadata["tags"].append("c")
    with pytest.raises(TypeError):
        metadata["nested"]["k"] = "changed"
    assert as_plain((await store.get_session("meta")).metadata) == META


async def test_values_are_handed_out_immutable(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "vec", "embedding", [1, 2, 3])
    value = await store.get_variable_value(session_id, "vec")
    assert type(value) is tuple
    assert value == (1.0, 2.0, 3.0)
    await store.store_program(session_id, "prog", {"x": 1})
    assert type((await store.get_session(session_id)).program_ids) is tuple


# --------------------------------------------------------------------------
# What a caller passed in cannot reach the store afterwards


async def test_register_copies_metadata(store: AnyStore, session_id: str) -> None:
    meta = fresh_meta()
    await store.register_variable(session_id, "temp", "float", 0.5, metadata=meta)
    meta["owner"] = "intruder"
    meta["added"] = True
    meta["tags"].append("c")
    meta["nested"]["k"].append(3)
    meta["nested"]["extra"] = 1
    del meta["tags"]
    stored = as_plain((await store.get_variable(session_id, "temp")).metadata)
    assert isinstance(stored, dict)
    assert {key: stored[key] for key in META} == META
    assert "added" not in stored


async def test_register_copies_constraints(store: AnyStore, session_id: str) -> None:
    constraints: dict[str, Any] = {"min": 0.0, "max": 1.0}
    await store.register_variable(session_id, "temp", "float", 0.5, constraints=constraints)
    constraints["max"] = 100.0
    del constraints["min"]
    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "temp", 50.0)
    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "temp", -1.0)
    assert dict((await store.get_variable(session_id, "temp")).constraints) == {
        "min": 0.0,
        "max": 1.0,
    }


async def test_register_copies_list_constraints(store: AnyStore, session_id: str) -> None:
    choices = ["fast", "slow"]
    await store.register_variable(
        session_id, "mode", "choice", "fast", constraints={"choices": choices}
    )
    choices.append("medium")
    choices[0] = "warp"
    with pytest.raises(ConstraintViolation):
        await store.update_variable(session_id, "mode", "medium")
    assert (await store.update_variable(session_id, "mode", "fast")).value == "fast"
    stored = (await store.get_variable(session_id, "mode")).constraints
    assert as_plain(stored) == {"choices": ["fast", "slow"]}


async def test_register_copies_embedding_value(store: AnyStore, session_id: str) -> None:
    vector: list[Any] = [1.0, 2.0, 3.0]
    await store.register_variable(session_id, "vec", "embedding", vector)
    vector[0] = 99.0
    vector.append(4.0)
    assert await store.get_variable_value(session_id, "vec") == (1.0, 2.0, 3.0)


async def test_register_copies_tensor_value(store: AnyStore, session_id: str) -> None:
    rows: list[list[Any]] = [[1, 2], [3, 4]]
    tensor: dict[str, Any] = {"shape": [2, 2], "data": rows}
    await store.register_variable(session_id, "grid", "tensor", tensor)
    rows[0][0] = 99
    rows.append([5, 6])
    tensor["shape"].append(1)
    tensor["data"] = [[0]]
    assert await store.get_variable_value(session_id, "grid") == Tensor(
        (2, 2), (1.0, 2.0, 3.0, 4.0)
    )


async def test_update_copies_value_and_metadata(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "vec", "embedding", [0.0, 0.0])
    vector: list[Any] = [1.0, 2.0]
    meta = fresh_meta()
    updated = await store.update_variable(session_id, "vec", vector, meta)
    vector[1] = 99.0
    meta["tags"].append("c")
    meta["owner"] = "intruder"
    again = await store.get_variable(session_id, "vec")
    assert again.value == (1.0, 2.0) == updated.value
    stored = as_plain(again.metadata)
    assert isinstance(stored, dict)
    assert (stored["owner"], stored["tags"]) == ("tests", ["a", "b"])


async def test_update_copies_tensor_value(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "grid", "tensor", {"shape": [1], "data": [0]})
    data: list[Any] = [7, 8]
    await store.update_variable(session_id, "grid", {"shape": [2], "data": data})
    data[0] = 99
    assert await store.get_variable_value(session_id, "grid") == Tensor((2,), (7.0, 8.0))


@pytest.mark.parametrize("atomic", [False, True])
async def test_batch_update_copies_values_and_metadata(
    store: AnyStore, session_id: str, atomic: bool
) -> None:
    await store.register_variable(session_id, "vec", "embedding", [0.0, 0.0])
    await store.register_variable(session_id, "temp", "float", 0.5)
    vector: list[Any] = [1.0, 2.0]
    updates: dict[str, Any] = {"vec": vector, "temp": 0.25}
    meta = fresh_meta()
    await store.update_variables(session_id, updates, atomic=atomic, metadata=meta)
    vector[0] = 99.0
    updates["temp"] = 0.75
    meta["tags"].append("c")
    assert await store.get_variable_value(session_id, "vec") == (1.0, 2.0)
    assert await store.get_variable_value(session_id, "temp") == 0.25
    stored = as_plain((await store.get_variable(session_id, "temp")).metadata)
    assert isinstance(stored, dict)
    assert stored["tags"] == ["a", "b"]


async def test_session_calls_copy_metadata(store: AnyStore) -> None:
    created = fresh_meta()
    await store.create_session("meta", metadata=created)
    created["tags"].append("c")
    created["owner"] = "intruder"
    assert as_plain((await store.get_session("meta")).metadata) == META

    merged: dict[str, Any] = {"extra": ["x"]}
    await store.update_session("meta", metadata=merged)
    merged["extra"].append("y")
    merged["later"] = 1
    assert as_plain((await store.get_session("meta")).metadata) == {**META, "extra": ["x"]}


async def test_import_copies_entries(store: AnyStore, session_id: str) -> None:
    await store.register_variable(
        session_id, "vec", "embedding", [1, 2], constraints={"dimensions": 2}, metadata={"t": [1]}
    )
    exported = await store.export_variables(session_id)
    await store.create_session("copy")
    assert await store.import_variables("copy", exported) == 1
    entry = exported[0]
    entry["value"][0] = 99.0
    entry["metadata"]["t"].append(2)
    entry["constraints"]["dimensions"] = 5
    entry["name"] = "renamed"
    exported.append(dict(entry))
    imported = await store.get_variable("copy", "vec")
    assert imported.value == (1.0, 2.0)
    assert as_plain(imported.metadata["t"]) == [1]
    assert dict(imported.constraints) == {"dimensions": 2}
    assert [var.name for var in await store.list_variables("copy")] == ["vec"]


@pytest.mark.parametrize("scope", ["session", "global"])
async def test_program_data_is_copied_in_and_out(
    store: AnyStore, session_id: str, scope: str
) -> None:
    def original() -> dict[str, Any]:
        return {"code": "x = 1", "args": [1, 2], "env": {"k": ["v"]}}

    async def put(data: object) -> None:
        if scope == "session":
            await store.store_program(session_id, "prog", data)
        else:
            await store.store_global_program("prog", data)

    async def get() -> Any:
        if scope == "session":
            return await store.get_program(session_id, "prog")
        return await store.get_global_program("prog")

    passed = original()
    await put(passed)
    passed["args"].append(3)
    passed["env"]["k"][0] = "changed"
    passed["code"] = "rm -rf /"
    assert await get() == original()

    received = await get()
    received["args"].clear()
    received["env"]["new"] = 1
    received["code"] = "changed"
    assert await get() == original()
    assert await get() is not await get()


# --------------------------------------------------------------------------
# What a caller received is its own: fresh each call


async def test_export_result_is_a_fresh_copy(store: AnyStore, session_id: str) -> None:
    await store.register_variable(
        session_id,
        "vec",
        "embedding",
        [1, 2],
        constraints={"dimensions": 2},
        metadata={"tags": ["a"]},
    )
    first = await store.export_variables(session_id)
    reference = await store.export_variables(session_id)
    first[0]["value"].append(3.0)
    first[0]["metadata"]["tags"].append("b")
    first[0]["metadata"]["new"] = 1
    first[0]["constraints"]["dimensions"] = 3
    first[0]["version"] = 99
    first.clear()
    assert await store.export_variables(session_id) == reference
    var = await store.get_variable(session_id, "vec")
    assert (var.value, var.version, dict(var.constraints)) == ((1.0, 2.0), 0, {"dimensions": 2})


async def test_batch_get_results_are_fresh(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "a", "integer", 1)
    await store.register_variable(session_id, "b", "integer", 2)
    first = await store.get_variables(session_id, ["a", "b", "nope"])
    second = await store.get_variables(session_id, ["a", "b", "nope"])
    assert first.found is not second.found
    assert first.missing is not second.missing
    first.found.pop("a")
    first.found["intruder"] = first.found["b"]
    first.missing.append("more")
    third = await store.get_variables(session_id, ["a", "b", "nope"])
    assert list(third.found) == ["a", "b"]
    assert third.missing == ["nope"]
    assert second.found.keys() == {"a", "b"}


@pytest.mark.parametrize(
    "listing",
    [
        pytest.param(lambda s, sid: s.list_variables(sid), id="list_variables"),
        pytest.param(lambda s, sid: s.list_variables(sid, "*"), id="list_variables-pattern"),
        pytest.param(lambda s, sid: s.list_sessions(), id="list_sessions"),
        pytest.param(lambda s, sid: s.export_variables(sid), id="export_variables"),
    ],
)
async def test_list_results_are_fresh(
    store: AnyStore, session_id: str, listing: Callable[[AnyStore, str], Any]
) -> None:
    await store.create_session("second")
    await store.register_variable(session_id, "a", "integer", 1)
    await store.register_variable(session_id, "b", "integer", 2)
    first: list[Any] = await listing(store, session_id)
    expected = list(first)
    assert len(expected) == 2
    second: list[Any] = await listing(store, session_id)
    assert first is not second
    first.clear()
    first.append("intruder")
    assert await listing(store, session_id) == expected
    assert second == expected


async def test_batch_update_result_is_the_callers_own(store: AnyStore, session_id: str) -> None:
    await store.register_variable(session_id, "a", "integer", 1)
    result: dict[str, Any] = await store.update_variables(session_id, {"a": 2})
    assert isinstance(result["a"], Variable)
    result["a"] = "intruder"
    result["b"] = 3
    var = await store.get_variable(session_id, "a")
    assert (var.value, var.version) == (2, 1)
    assert not await store.has_variable(session_id, "b")
