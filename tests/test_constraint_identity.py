"""Constraints are what this caller gave, exactly, even when another variable's are equal.

The store shares one compiled copy of each distinct constraint spec between the
variables that use it. Python calls ``1 == 1.0``, ``0.0 == -0.0`` and ``True == 1``
equal (and hashes them alike), so a table keyed by equality would hand a
variable registered with ``{"max": 1.0}`` the ``{"max": 1}`` of another: its
messages and its export would then say ``1``. Sharing must follow what was
given: the same types, the same signs, all the way down.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor import ConstraintViolation, SessionStore

SID = "s1"


class EchoType:
    """A user type that accepts any constraints and names them in its message."""

    name = "echo"

    def validate(self, value: object) -> object:
        return value

    def validate_constraints(self, constraints: Mapping[str, object]) -> None:
        return None

    def check(self, value: object, constraints: Mapping[str, object]) -> None:
        if value == "refuse":
            raise ConstraintViolation(f"refused under {dict(constraints)!r}", value=value)

    def to_json(self, value: object) -> object:
        return value

    def from_json(self, data: object) -> object:
        return data


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with SessionStore(types=[EchoType()]) as running:
        await running.create_session(SID)
        await running.create_session("other")
        yield running


def exact(a: object, b: object) -> bool:
    """Equal, with the same types and float signs all the way down (lists and tuples
    alike: copy-in makes every sequence a tuple)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return list(a) == list(b) and all(exact(a[key], b[key]) for key in a)
    if type(a) is not type(b):
        return False
    if type(a) is float:
        assert isinstance(b, float)
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
        )
    return a == b


async def exported_constraints(store: SessionStore, session_id: str, name: str) -> object:
    for entry in await store.export_variables(session_id):
        if entry["name"] == name:
            return entry["constraints"]
    raise AssertionError(name)


# --------------------------------------------------------------------------
# The cases of the issue, in both orders


@pytest.mark.parametrize("first_given", [1, 1.0], ids=["int-first", "float-first"])
async def test_max_1_and_max_1_0_stay_apart(store: SessionStore, first_given: float) -> None:
    second_given = 1.0 if type(first_given) is int else 1
    await store.register_variable(SID, "first", "float", 0.5, constraints={"max": first_given})
    await store.register_variable(SID, "second", "float", 0.5, constraints={"max": second_given})
    for name, bound in (("first", first_given), ("second", second_given)):
        with pytest.raises(ConstraintViolation) as refused:
            await store.update_variable(SID, name, 2.0)
        assert str(refused.value) == f"value 2.0 is above maximum {bound!r}"
        constraints = await exported_constraints(store, SID, name)
        assert exact(constraints, {"max": bound})
        assert json.dumps(constraints) == f'{{"max": {bound!r}}}'


async def test_the_issues_example_word_for_word(store: SessionStore) -> None:
    await store.register_variable("other", "n", "integer", 0, constraints={"max": 1})
    await store.register_variable(SID, "f", "float", 0.5, constraints={"max": 1.0})
    with pytest.raises(ConstraintViolation, match=r"^value 2\.0 is above maximum 1\.0$"):
        await store.update_variable(SID, "f", 2.0)
    assert exact(await exported_constraints(store, SID, "f"), {"max": 1.0})


@pytest.mark.parametrize("first_given", [0.0, -0.0], ids=["plus-first", "minus-first"])
async def test_zero_and_minus_zero_stay_apart(store: SessionStore, first_given: float) -> None:
    second_given = -first_given
    await store.register_variable(SID, "first", "float", 0.5, constraints={"min": first_given})
    await store.register_variable(SID, "second", "float", 0.5, constraints={"min": second_given})
    for name, bound in (("first", first_given), ("second", second_given)):
        with pytest.raises(ConstraintViolation) as refused:
            await store.update_variable(SID, name, -1.0)
        assert str(refused.value) == f"value -1.0 is below minimum {bound!r}"
        assert exact(await exported_constraints(store, SID, name), {"min": bound})


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"flag": True}, {"flag": 1}),
        ({"flag": 1}, {"flag": True}),
        ({"flag": False}, {"flag": 0.0}),
        ({"points": [[1, 0.0]]}, {"points": [[1.0, -0.0]]}),
        ({"points": [(True, 2)]}, {"points": [[1, 2]]}),
        ({"nested": {"a": [1, {"b": 0.0}]}}, {"nested": {"a": [1.0, {"b": -0.0}]}}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # the same items, in another order
    ],
)
async def test_equal_but_different_specs_stay_apart(
    store: SessionStore, one: dict[str, object], other: dict[str, object]
) -> None:
    await store.register_variable(SID, "one", "echo", 0, constraints=one)
    await store.register_variable(SID, "other", "echo", 0, constraints=other)
    for name, spec in (("one", one), ("other", other)):
        variable = await store.get_variable(SID, name)
        assert exact(variable.constraints, spec)
        assert exact(await exported_constraints(store, SID, name), spec)
        with pytest.raises(ConstraintViolation) as refused:
            await store.update_variable(SID, name, "refuse")
        assert str(refused.value) == f"refused under {dict(variable.constraints)!r}"


async def test_lists_and_tuples_given_alike_are_the_same_spec(store: SessionStore) -> None:
    await store.register_variable(SID, "a", "echo", 0, constraints={"points": [[1, 2]]})
    await store.register_variable(SID, "b", "echo", 0, constraints={"points": ((1, 2),)})
    a, b = (await store.get_variables(SID, ["a", "b"])).found.values()
    assert a.constraints is b.constraints  # shared: copy-in made both tuples
    assert await exported_constraints(store, SID, "b") == {"points": [[1, 2]]}


async def test_identical_specs_are_shared(store: SessionStore) -> None:
    await store.register_variable(SID, "a", "float", 0.5, constraints={"max": 1.0})
    await store.register_variable("other", "b", "float", 0.5, constraints={"max": 1.0})
    a = await store.get_variable(SID, "a")
    b = await store.get_variable("other", "b")
    assert a.constraints is b.constraints


async def test_an_import_keeps_its_own_bound_beside_an_equal_one(store: SessionStore) -> None:
    await store.register_variable("other", "n", "float", 0.5, constraints={"max": 1})
    entry = {"id": "var_f_7", "name": "f", "type": "float", "value": 0.5}
    entry["constraints"] = {"max": 1.0}
    entries = json.loads(json.dumps([entry]))
    assert await store.import_variables(SID, entries) == 1
    with pytest.raises(ConstraintViolation, match=r"above maximum 1\.0$"):
        await store.update_variable(SID, "f", 2.0)
    with pytest.raises(ConstraintViolation, match=r"above maximum 1$"):
        await store.update_variable("other", "n", 2.0)


# --------------------------------------------------------------------------
# For all specs: each variable's constraints are exactly its own

SCALARS = st.one_of(
    st.booleans(),
    st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, -1.0, 2, 2.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=2),
    st.none(),
)
SPECS = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(["x", "y"]), children, max_size=2)
        ),
        max_leaves=6,
    ),
    max_size=3,
)


@settings(max_examples=60)
@given(st.lists(SPECS, min_size=2, max_size=6))
def test_every_variable_keeps_exactly_the_constraints_it_was_given(
    specs: list[dict[str, object]],
) -> None:
    async def scenario() -> None:
        async with SessionStore(types=[EchoType()]) as running:
            await running.create_session(SID)
            for index, spec in enumerate(specs):
                await running.register_variable(SID, f"v{index}", "echo", 0, constraints=spec)
            listed = await running.list_variables(SID)
            for spec, variable in zip(specs, listed, strict=True):
                assert exact(variable.constraints, spec), (variable.constraints, spec)

    asyncio.run(scenario())
