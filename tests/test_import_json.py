"""Export, a JSON round trip, import: every constraint and value comes back as it was.

Export writes special floats as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (``json.dumps(..., allow_nan=False)`` accepts the result), so
import must turn those strings back into floats, but only where the field holds
a number: the ``min``/``max`` of ``float`` and ``integer``, and the values of
``float``, ``embedding`` and ``tensor``. A string field whose text is ``"NaN"``
(a ``pattern``, an ``enum``, ``choices``, ``allowed_modules``, a string value)
stays that string.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor import ConstraintViolation, SessionStore, Tensor

SPECIAL = ["NaN", "Infinity", "-Infinity"]
SOURCE, TARGET = "source", "target"


def round_trip(exported: object) -> list[dict[str, object]]:
    result: list[dict[str, object]] = json.loads(json.dumps(exported, allow_nan=False))
    return result


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    async with SessionStore() as running:
        await running.create_session(SOURCE)
        await running.create_session(TARGET)
        yield running


async def carried(store: SessionStore) -> dict[str, object]:
    """Export SOURCE, round-trip it through JSON text, import it into TARGET."""
    exported = await store.export_variables(SOURCE)
    assert await store.import_variables(TARGET, round_trip(exported)) == len(exported)
    again = await store.export_variables(TARGET)
    assert json.dumps(again, allow_nan=False) == json.dumps(exported, allow_nan=False)
    return {variable.name: variable for variable in await store.list_variables(TARGET)}


# --------------------------------------------------------------------------
# String fields keep their text


@pytest.mark.parametrize("text", SPECIAL)
async def test_a_string_pattern_that_reads_like_a_special_float_stays_a_string(
    store: SessionStore, text: str
) -> None:
    await store.register_variable(SOURCE, "s", "string", text, constraints={"pattern": text})
    variables = await carried(store)
    constraints = variables["s"].constraints  # type: ignore[attr-defined]
    assert constraints == {"pattern": text} and type(constraints["pattern"]) is str
    assert (await store.update_variable(TARGET, "s", f"x{text}y")).value == f"x{text}y"
    with pytest.raises(ConstraintViolation, match="must match pattern"):
        await store.update_variable(TARGET, "s", "nothing like it")


@pytest.mark.parametrize(
    ("type_name", "key"),
    [("string", "enum"), ("choice", "choices"), ("module", "allowed_modules")],
)
async def test_allowed_strings_that_read_like_special_floats_stay_strings(
    store: SessionStore, type_name: str, key: str
) -> None:
    await store.register_variable(SOURCE, "v", type_name, "NaN", constraints={key: SPECIAL})
    variables = await carried(store)
    variable = variables["v"]
    assert variable.value == "NaN" and type(variable.value) is str  # type: ignore[attr-defined]
    allowed = variable.constraints[key]  # type: ignore[attr-defined]
    assert list(allowed) == SPECIAL and all(type(item) is str for item in allowed)
    assert (await store.update_variable(TARGET, "v", "-Infinity")).value == "-Infinity"
    with pytest.raises(ConstraintViolation):
        await store.update_variable(TARGET, "v", "nan")


@pytest.mark.parametrize("text", SPECIAL)
async def test_string_values_that_read_like_special_floats_stay_strings(
    store: SessionStore, text: str
) -> None:
    await store.register_variable(
        SOURCE, "s", "string", text, constraints={"min_length": 3, "max_length": 9}
    )
    await store.register_variable(SOURCE, "c", "choice", text, constraints={"choices": [text]})
    await store.register_variable(SOURCE, "m", "module", text)
    variables = await carried(store)
    for name in ("s", "c", "m"):
        value = variables[name].value  # type: ignore[attr-defined]
        assert value == text and type(value) is str
    assert variables["s"].constraints == {"min_length": 3, "max_length": 9}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# Number fields get their floats back


@pytest.mark.parametrize("type_name", ["float", "integer"])
async def test_infinite_bounds_come_back_as_floats(store: SessionStore, type_name: str) -> None:
    await store.register_variable(
        SOURCE, "n", type_name, 1, constraints={"min": -math.inf, "max": math.inf}
    )
    exported = await store.export_variables(SOURCE)
    assert exported[0]["constraints"] == {"min": "-Infinity", "max": "Infinity"}
    variables = await carried(store)
    constraints = variables["n"].constraints  # type: ignore[attr-defined]
    assert constraints == {"min": -math.inf, "max": math.inf}
    assert all(type(bound) is float for bound in constraints.values())


async def test_finite_bounds_keep_their_type(store: SessionStore) -> None:
    await store.register_variable(SOURCE, "f", "float", 0.5, constraints={"min": 0, "max": 1.0})
    await store.register_variable(SOURCE, "i", "integer", 5, constraints={"min": -2, "max": 10})
    variables = await carried(store)
    f = variables["f"].constraints  # type: ignore[attr-defined]
    i = variables["i"].constraints  # type: ignore[attr-defined]
    assert (type(f["min"]), type(f["max"]), type(i["min"]), type(i["max"])) == (
        int,
        float,
        int,
        int,
    )


async def test_special_float_values_come_back_as_floats(store: SessionStore) -> None:
    await store.register_variable(SOURCE, "nan", "float", math.nan)
    await store.register_variable(SOURCE, "inf", "float", -math.inf)
    await store.register_variable(SOURCE, "e", "embedding", [math.nan, math.inf, 1.0])
    await store.register_variable(SOURCE, "t", "tensor", {"shape": [2], "data": [-math.inf, 0.5]})
    variables = await carried(store)
    assert math.isnan(variables["nan"].value)  # type: ignore[attr-defined]
    assert variables["inf"].value == -math.inf  # type: ignore[attr-defined]
    embedding = variables["e"].value  # type: ignore[attr-defined]
    assert math.isnan(embedding[0]) and embedding[1:] == (math.inf, 1.0)
    assert variables["t"].value == Tensor((2,), (-math.inf, 0.5))  # type: ignore[attr-defined]


async def test_other_numeric_constraints_are_not_strings_to_decode(store: SessionStore) -> None:
    await store.register_variable(
        SOURCE, "e", "embedding", [1.0, 2.0], constraints={"dimensions": 2}
    )
    await store.register_variable(
        SOURCE, "t", "tensor", {"shape": [1], "data": [1.0]}, constraints={"shape": [1]}
    )
    variables = await carried(store)
    assert variables["e"].constraints == {"dimensions": 2}  # type: ignore[attr-defined]
    assert variables["t"].constraints == {"shape": (1,)}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# For all texts: a string field is carried as it is

TEXTS = st.one_of(st.sampled_from([*SPECIAL, "nan", "inf", "1.0", "-0"]), st.text(max_size=6))


@settings(max_examples=40)
@given(TEXTS, st.lists(TEXTS, min_size=1, max_size=4, unique=True))
def test_any_text_in_a_string_field_survives_the_round_trip(
    pattern_text: str, allowed: list[str]
) -> None:
    pattern = re.escape(pattern_text)

    async def scenario() -> None:
        async with SessionStore() as running:
            await running.create_session(SOURCE)
            await running.create_session(TARGET)
            await running.register_variable(
                SOURCE, "s", "string", pattern_text, constraints={"pattern": pattern}
            )
            await running.register_variable(
                SOURCE, "c", "choice", allowed[0], constraints={"choices": allowed}
            )
            exported = await running.export_variables(SOURCE)
            await running.import_variables(TARGET, round_trip(exported))
            s, c = await running.list_variables(TARGET)
            assert s.constraints == {"pattern": pattern} and s.value == pattern_text
            assert list(c.constraints["choices"]) == allowed and c.value == allowed[0]  # type: ignore[call-overload]

    asyncio.run(scenario())
