"""Unit tests of ``sessionactor.types`` against SPEC §5 "Types and constraints".

Plain synchronous tests: no event loop and no ``SessionStore``. Each built-in type is
exercised through its module object (``FLOAT``), through ``TypeRegistry().resolve("float")``
and through ``TypeRegistry().resolve(VariableType.FLOAT)``.

Values are compared with ``type(a) is type(b) and repr(a) == repr(b)``: that tells
``1`` from ``1.0`` and ``True``, ``-0.0`` from ``0.0``, a ``str`` subclass from ``str``,
and makes ``nan`` equal to itself, also inside tuples and ``Tensor``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sessionactor.errors import (
    ConstraintViolation,
    InvalidArgument,
    InvalidConstraint,
    SessionStoreError,
    UnknownType,
    ValidationError,
)
from sessionactor.types import (
    BOOLEAN,
    BUILTIN_TYPES,
    CHOICE,
    EMBEDDING,
    FLOAT,
    INTEGER,
    MODULE,
    STRING,
    TENSOR,
    Tensor,
    TypeRegistry,
    TypeSpec,
    VariableType,
)

# --------------------------------------------------------------------------
# Helpers

BUILTINS: dict[str, TypeSpec] = {
    "float": FLOAT,
    "integer": INTEGER,
    "string": STRING,
    "boolean": BOOLEAN,
    "choice": CHOICE,
    "module": MODULE,
    "embedding": EMBEDDING,
    "tensor": TENSOR,
}

STORED_TYPE: dict[str, type] = {
    "float": float,
    "integer": int,
    "string": str,
    "boolean": bool,
    "choice": str,
    "module": str,
    "embedding": tuple,
    "tensor": Tensor,
}

ROUTES = ("object", "name", "member")


def via(route: str, type_name: str) -> TypeSpec:
    """The built-in type ``type_name`` reached by the object, its name, or its enum member."""
    if route == "object":
        return BUILTINS[type_name]
    if route == "name":
        return TypeRegistry().resolve(type_name)
    return TypeRegistry().resolve(VariableType(type_name))


def returns(function: Callable[..., object], *args: object) -> object:
    """What ``function(*args)`` returns (for the ``-> None`` members of a type)."""
    return function(*args)


def assert_same(actual: object, expected: object) -> None:
    assert type(actual) is type(expected), f"{type(actual)!r} is not {type(expected)!r}"
    assert repr(actual) == repr(expected)
    if isinstance(expected, tuple):
        assert all(type(item) is float for item in cast("tuple[object, ...]", actual))


def freeze(value: object) -> object:
    """What the store hands a type: read-only mappings and tuples instead of lists."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


def as_constraints(value: object) -> Mapping[str, object]:
    return cast("Mapping[str, object]", value)


def json_round_trip(spec: TypeSpec, stored: object) -> object:
    encoded = json.dumps(spec.to_json(stored), allow_nan=False)
    return spec.from_json(json.loads(encoded))


def nest(flat: Sequence[float], shape: Sequence[int]) -> object:
    """``flat`` as nested lists following ``shape`` (row-major); a scalar for shape ()."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


class Color(enum.IntEnum):
    RED = 1


class MyFloat(float):
    pass


class MyStr(str):
    __slots__ = ()


T23 = Tensor((2, 3), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0))

# --------------------------------------------------------------------------
# The built-ins are reachable as objects, by name and by VariableType member


@pytest.mark.parametrize("type_name", list(BUILTINS))
def test_builtin_reachable_by_name_and_member(type_name: str) -> None:
    spec = BUILTINS[type_name]
    registry = TypeRegistry()
    assert spec.name == type_name
    assert isinstance(spec, TypeSpec)
    assert registry.resolve(type_name) is spec
    assert registry.resolve(VariableType(type_name)) is spec
    assert BUILTIN_TYPES[type_name] is spec
    assert VariableType(type_name) == type_name


def test_variable_type_members_are_the_eight_builtins() -> None:
    assert [member.value for member in VariableType] == list(BUILTINS)
    member: object = VariableType.FLOAT
    assert member == "float"
    assert isinstance(member, str)
    assert TypeRegistry().resolve(VariableType.FLOAT) is FLOAT
    assert TypeRegistry().resolve(VariableType.TENSOR) is TENSOR
    assert sorted(TypeRegistry().names()) == sorted(BUILTINS)
    assert sorted(BUILTIN_TYPES) == sorted(BUILTINS)


# --------------------------------------------------------------------------
# validate: accepted inputs and their stored form

ACCEPTS = [
    # float: int/float, not bool (-> float); "NaN", "Infinity", "-Infinity"
    pytest.param("float", 1, 1.0, id="float-int"),
    pytest.param("float", 0, 0.0, id="float-zero-int"),
    pytest.param("float", -3, -3.0, id="float-negative-int"),
    pytest.param("float", 10**20, 1e20, id="float-big-int"),
    pytest.param("float", 1.5, 1.5, id="float-float"),
    pytest.param("float", -0.0, -0.0, id="float-negative-zero"),
    pytest.param("float", math.inf, math.inf, id="float-inf"),
    pytest.param("float", -math.inf, -math.inf, id="float-minus-inf"),
    pytest.param("float", math.nan, math.nan, id="float-nan"),
    pytest.param("float", "NaN", math.nan, id="float-NaN-string"),
    pytest.param("float", "Infinity", math.inf, id="float-Infinity-string"),
    pytest.param("float", "-Infinity", -math.inf, id="float-minus-Infinity-string"),
    pytest.param("float", MyFloat(2.5), 2.5, id="float-float-subclass"),
    pytest.param("float", Color.RED, 1.0, id="float-intenum"),
    # integer: int, not bool; a whole float (-> int)
    pytest.param("integer", 0, 0, id="integer-zero"),
    pytest.param("integer", -7, -7, id="integer-negative"),
    pytest.param("integer", 10**30, 10**30, id="integer-huge"),
    pytest.param("integer", 4.0, 4, id="integer-whole-float"),
    pytest.param("integer", -0.0, 0, id="integer-negative-zero-float"),
    pytest.param("integer", 1e20, 10**20, id="integer-big-whole-float"),
    pytest.param("integer", 2.0**60, 2**60, id="integer-2-pow-60-float"),
    pytest.param("integer", Color.RED, 1, id="integer-intenum"),
    # string: str
    pytest.param("string", "", "", id="string-empty"),
    pytest.param("string", "abc", "abc", id="string-ascii"),
    pytest.param("string", "héllo 😀", "héllo 😀", id="string-unicode"),
    pytest.param("string", "NaN", "NaN", id="string-NaN-stays-text"),
    pytest.param("string", MyStr("x"), "x", id="string-subclass"),
    # boolean: True/False, "true"/"false", 1/0
    pytest.param("boolean", True, True, id="boolean-True"),
    pytest.param("boolean", False, False, id="boolean-False"),
    pytest.param("boolean", "true", True, id="boolean-true-string"),
    pytest.param("boolean", "false", False, id="boolean-false-string"),
    pytest.param("boolean", 1, True, id="boolean-one"),
    pytest.param("boolean", 0, False, id="boolean-zero"),
    # choice / module: str
    pytest.param("choice", "a", "a", id="choice-str"),
    pytest.param("choice", "", "", id="choice-empty"),
    pytest.param("choice", MyStr("b"), "b", id="choice-subclass"),
    pytest.param("module", "numpy.linalg", "numpy.linalg", id="module-str"),
    pytest.param("module", MyStr("os"), "os", id="module-subclass"),
    # embedding: a sequence of numbers, not str (-> tuple[float, ...])
    pytest.param("embedding", [1, 2.5, -3], (1.0, 2.5, -3.0), id="embedding-list"),
    pytest.param("embedding", (0.5,), (0.5,), id="embedding-tuple"),
    pytest.param("embedding", [], (), id="embedding-empty"),
    pytest.param("embedding", range(3), (0.0, 1.0, 2.0), id="embedding-range"),
    pytest.param(
        "embedding",
        ["NaN", "Infinity", "-Infinity", 1],
        (math.nan, math.inf, -math.inf, 1.0),
        id="embedding-special-strings",
    ),
    pytest.param("embedding", [math.nan, -math.inf], (math.nan, -math.inf), id="embedding-nan"),
    # tensor: mapping with shape and data (nested or flat), or a Tensor (-> Tensor, data flat)
    pytest.param("tensor", {"shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]}, T23, id="nested"),
    pytest.param("tensor", {"shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}, T23, id="tensor-flat"),
    pytest.param("tensor", {"shape": (2, 3), "data": ((1, 2, 3), (4, 5, 6))}, T23, id="tuples"),
    pytest.param(
        "tensor",
        MappingProxyType({"shape": (2, 3), "data": (1, 2, 3, 4, 5, 6)}),
        T23,
        id="tensor-read-only-mapping",
    ),
    pytest.param("tensor", T23, T23, id="tensor-Tensor"),
    pytest.param(
        "tensor",
        Tensor((3,), (1.0, 2.0, 3.0)),
        Tensor((3,), (1.0, 2.0, 3.0)),
        id="tensor-Tensor-1d",
    ),
    pytest.param("tensor", {"shape": [], "data": [5]}, Tensor((), (5.0,)), id="tensor-scalar"),
    pytest.param("tensor", {"shape": [0], "data": []}, Tensor((0,), ()), id="tensor-empty"),
    pytest.param(
        "tensor", {"shape": [2, 0], "data": [[], []]}, Tensor((2, 0), ()), id="tensor-2x0"
    ),
    pytest.param(
        "tensor",
        {"shape": [3], "data": ["NaN", "Infinity", "-Infinity"]},
        Tensor((3,), (math.nan, math.inf, -math.inf)),
        id="tensor-special-strings",
    ),
    pytest.param(
        "tensor",
        {"shape": [2, 2, 1], "data": [[[1], [2]], [[3], [4]]]},
        Tensor((2, 2, 1), (1.0, 2.0, 3.0, 4.0)),
        id="tensor-3d",
    ),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("type_name", "value", "expected"), ACCEPTS)
def test_validate_accepts(route: str, type_name: str, value: object, expected: object) -> None:
    stored = via(route, type_name).validate(value)
    assert_same(stored, expected)
    assert type(stored) is STORED_TYPE[type_name]


# --------------------------------------------------------------------------
# validate: rejected inputs, always a plain ValidationError with the exact message

NUMBER = "must be a number"
INTEGER_MSG = "must be an integer"
STRING_MSG = "must be a string"
BOOLEAN_MSG = "must be a boolean (true or false)"
EMBEDDING_MSG = "must be a list of numbers"
TENSOR_MSG = "must be a tensor with shape and data"
SIZE_MSG = "data size doesn't match shape"

REJECTS = [
    # float
    pytest.param("float", None, NUMBER, id="float-None"),
    pytest.param("float", True, NUMBER, id="float-True"),
    pytest.param("float", False, NUMBER, id="float-False"),
    pytest.param("float", "1.5", NUMBER, id="float-numeric-string"),
    pytest.param("float", "", NUMBER, id="float-empty-string"),
    pytest.param("float", "nan", NUMBER, id="float-lowercase-nan"),
    pytest.param("float", "inf", NUMBER, id="float-inf-string"),
    pytest.param("float", "infinity", NUMBER, id="float-lowercase-infinity"),
    pytest.param("float", "+Infinity", NUMBER, id="float-plus-Infinity"),
    pytest.param("float", " NaN", NUMBER, id="float-padded-NaN"),
    pytest.param("float", [1.0], NUMBER, id="float-list"),
    pytest.param("float", {"value": 1.0}, NUMBER, id="float-dict"),
    pytest.param("float", b"1", NUMBER, id="float-bytes"),
    pytest.param("float", complex(1, 0), NUMBER, id="float-complex"),
    # integer
    pytest.param("integer", None, INTEGER_MSG, id="integer-None"),
    pytest.param("integer", True, INTEGER_MSG, id="integer-True"),
    pytest.param("integer", False, INTEGER_MSG, id="integer-False"),
    pytest.param("integer", "1", INTEGER_MSG, id="integer-numeric-string"),
    pytest.param("integer", "NaN", INTEGER_MSG, id="integer-NaN-string"),
    pytest.param("integer", [1], INTEGER_MSG, id="integer-list"),
    pytest.param("integer", complex(1, 0), INTEGER_MSG, id="integer-complex"),
    pytest.param("integer", 4.5, "must be a whole number, got 4.5", id="integer-4.5"),
    pytest.param("integer", -0.5, "must be a whole number, got -0.5", id="integer-minus-0.5"),
    pytest.param("integer", 1e-300, "must be a whole number, got 1e-300", id="integer-tiny"),
    pytest.param("integer", math.inf, "must be a whole number, got inf", id="integer-inf"),
    pytest.param("integer", math.nan, "must be a whole number, got nan", id="integer-nan"),
    # string
    pytest.param("string", None, "cannot be None", id="string-None"),
    pytest.param("string", 1, STRING_MSG, id="string-int"),
    pytest.param("string", 1.5, STRING_MSG, id="string-float"),
    pytest.param("string", True, STRING_MSG, id="string-bool"),
    pytest.param("string", b"abc", STRING_MSG, id="string-bytes"),
    pytest.param("string", ["a"], STRING_MSG, id="string-list"),
    pytest.param("string", {"a": 1}, STRING_MSG, id="string-dict"),
    # boolean
    pytest.param("boolean", "True", BOOLEAN_MSG, id="boolean-True-string"),
    pytest.param("boolean", "FALSE", BOOLEAN_MSG, id="boolean-FALSE-string"),
    pytest.param("boolean", "yes", BOOLEAN_MSG, id="boolean-yes"),
    pytest.param("boolean", "1", BOOLEAN_MSG, id="boolean-1-string"),
    pytest.param("boolean", "", BOOLEAN_MSG, id="boolean-empty-string"),
    pytest.param("boolean", 2, BOOLEAN_MSG, id="boolean-two"),
    pytest.param("boolean", -1, BOOLEAN_MSG, id="boolean-minus-one"),
    pytest.param("boolean", 1.0, BOOLEAN_MSG, id="boolean-1.0"),
    pytest.param("boolean", 0.0, BOOLEAN_MSG, id="boolean-0.0"),
    pytest.param("boolean", None, BOOLEAN_MSG, id="boolean-None"),
    pytest.param("boolean", [True], BOOLEAN_MSG, id="boolean-list"),
    # choice / module: SPEC gives no type-failure message; only the class is asserted
    pytest.param("choice", None, None, id="choice-None"),
    pytest.param("choice", 1, None, id="choice-int"),
    pytest.param("choice", True, None, id="choice-bool"),
    pytest.param("choice", ["a"], None, id="choice-list"),
    pytest.param("module", None, None, id="module-None"),
    pytest.param("module", 1, None, id="module-int"),
    pytest.param("module", b"os", None, id="module-bytes"),
    # embedding
    pytest.param("embedding", "abc", EMBEDDING_MSG, id="embedding-str"),
    pytest.param("embedding", "", EMBEDDING_MSG, id="embedding-empty-str"),
    pytest.param("embedding", b"\x01\x02", EMBEDDING_MSG, id="embedding-bytes"),
    pytest.param("embedding", None, EMBEDDING_MSG, id="embedding-None"),
    pytest.param("embedding", 5, EMBEDDING_MSG, id="embedding-int"),
    pytest.param("embedding", 1.5, EMBEDDING_MSG, id="embedding-float"),
    pytest.param("embedding", [1, "a"], EMBEDDING_MSG, id="embedding-str-item"),
    pytest.param("embedding", ["nan"], EMBEDDING_MSG, id="embedding-lowercase-nan"),
    pytest.param("embedding", [1, True], EMBEDDING_MSG, id="embedding-bool-item"),
    pytest.param("embedding", [1, None], EMBEDDING_MSG, id="embedding-None-item"),
    pytest.param("embedding", [[1, 2]], EMBEDDING_MSG, id="embedding-nested"),
    pytest.param("embedding", {1: 2.0}, EMBEDDING_MSG, id="embedding-dict"),
    pytest.param("embedding", {1.0, 2.0}, EMBEDDING_MSG, id="embedding-set"),
    # tensor: malformed
    pytest.param("tensor", None, TENSOR_MSG, id="tensor-None"),
    pytest.param("tensor", [1, 2], TENSOR_MSG, id="tensor-list"),
    pytest.param("tensor", "x", TENSOR_MSG, id="tensor-str"),
    pytest.param("tensor", {"shape": [2]}, TENSOR_MSG, id="tensor-no-data"),
    pytest.param("tensor", {"data": [1]}, TENSOR_MSG, id="tensor-no-shape"),
    pytest.param("tensor", {}, TENSOR_MSG, id="tensor-empty-mapping"),
    pytest.param("tensor", {"shape": "2", "data": [1, 2]}, TENSOR_MSG, id="tensor-str-shape"),
    pytest.param("tensor", {"shape": 2, "data": [1, 2]}, TENSOR_MSG, id="tensor-int-shape"),
    pytest.param("tensor", {"shape": [-1], "data": []}, TENSOR_MSG, id="tensor-negative-dim"),
    pytest.param("tensor", {"shape": [2.0], "data": [1, 2]}, TENSOR_MSG, id="tensor-float-dim"),
    pytest.param("tensor", {"shape": [True], "data": [1]}, TENSOR_MSG, id="tensor-bool-dim"),
    pytest.param("tensor", {"shape": [2], "data": "ab"}, TENSOR_MSG, id="tensor-str-data"),
    pytest.param("tensor", {"shape": [], "data": 5}, TENSOR_MSG, id="tensor-scalar-data"),
    pytest.param("tensor", {"shape": [2], "data": [1, "a"]}, TENSOR_MSG, id="tensor-str-item"),
    pytest.param("tensor", {"shape": [1], "data": [True]}, TENSOR_MSG, id="tensor-bool-item"),
    pytest.param("tensor", {"shape": [1], "data": [None]}, TENSOR_MSG, id="tensor-None-item"),
    # tensor: well formed but the sizes differ
    pytest.param("tensor", {"shape": [2, 3], "data": [1, 2, 3]}, SIZE_MSG, id="tensor-short"),
    pytest.param("tensor", {"shape": [2], "data": [1, 2, 3]}, SIZE_MSG, id="tensor-long"),
    pytest.param("tensor", {"shape": [2], "data": []}, SIZE_MSG, id="tensor-no-items"),
    pytest.param("tensor", {"shape": [], "data": []}, SIZE_MSG, id="tensor-scalar-empty"),
    pytest.param("tensor", Tensor((2,), (1.0,)), SIZE_MSG, id="tensor-bad-Tensor"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("type_name", "value", "message"), REJECTS)
def test_validate_rejects(route: str, type_name: str, value: object, message: str | None) -> None:
    with pytest.raises(ValidationError) as info:
        via(route, type_name).validate(value)
    error = info.value
    assert type(error) is ValidationError  # a type failure, not a ConstraintViolation
    assert isinstance(error, SessionStoreError)
    assert isinstance(error, ValueError)
    assert error.message == str(error)
    assert str(error)
    if message is not None:
        assert str(error) == message


# --------------------------------------------------------------------------
# check: constraint failures are ConstraintViolation with the exact message

VIOLATIONS = [
    pytest.param("float", 1.5, {"max": 1.0}, "value 1.5 is above maximum 1.0", id="float-max"),
    pytest.param("float", -0.5, {"min": 0.0}, "value -0.5 is below minimum 0.0", id="float-min"),
    pytest.param(
        "float", 2.5, {"min": 0.0, "max": 1.0}, "value 2.5 is above maximum 1.0", id="float-range"
    ),
    pytest.param(
        "float", "-Infinity", {"min": 0.0}, "value -inf is below minimum 0.0", id="float-minus-inf"
    ),
    pytest.param(
        "float", math.inf, {"max": 1e308}, "value inf is above maximum 1e+308", id="float-inf"
    ),
    pytest.param("integer", 150, {"max": 100}, "value 150 is above maximum 100", id="int-max"),
    pytest.param("integer", -1, {"min": 0}, "value -1 is below minimum 0", id="int-min"),
    pytest.param(
        "integer", 150.0, {"min": 0, "max": 100}, "value 150 is above maximum 100", id="int-whole"
    ),
    pytest.param(
        "string",
        "ab",
        {"min_length": 3},
        "must be at least 3 characters, got 2",
        id="string-min-length",
    ),
    pytest.param(
        "string",
        "abcdefghi",
        {"max_length": 5},
        "must be at most 5 characters, got 9",
        id="string-max-length",
    ),
    pytest.param(
        "string",
        "😀😀😀",
        {"max_length": 2},
        "must be at most 2 characters, got 3",
        id="string-code-points",
    ),
    pytest.param("string", "bcd", {"pattern": "^a"}, "must match pattern: ^a", id="string-pattern"),
    pytest.param("string", "c", {"enum": ["a", "b"]}, "must be one of: a, b", id="string-enum"),
    pytest.param(
        "choice", "c", {"choices": ["a", "b"]}, "must be one of: a, b", id="choice-choices"
    ),
    pytest.param(
        "module",
        "c",
        {"allowed_modules": ["a", "b"]},
        "must be one of the allowed modules: a, b",
        id="module-allowed",
    ),
    pytest.param(
        "embedding",
        [1.0, 2.0],
        {"dimensions": 3},
        "must have exactly 3 dimensions",
        id="embedding-short",
    ),
    pytest.param(
        "embedding",
        [1, 2, 3, 4],
        {"dimensions": 3},
        "must have exactly 3 dimensions",
        id="embedding-long",
    ),
    pytest.param(
        "tensor",
        {"shape": [3, 2], "data": [1, 2, 3, 4, 5, 6]},
        {"shape": [2, 3]},
        "shape must be [2, 3]",
        id="tensor-transposed",
    ),
    pytest.param(
        "tensor",
        {"shape": [6], "data": [1, 2, 3, 4, 5, 6]},
        {"shape": [2, 3]},
        "shape must be [2, 3]",
        id="tensor-flat",
    ),
]


@pytest.mark.parametrize("frozen", [False, True], ids=["plain", "frozen"])
@pytest.mark.parametrize(("type_name", "value", "constraints", "message"), VIOLATIONS)
def test_check_violations(
    type_name: str, value: object, constraints: dict[str, object], message: str, frozen: bool
) -> None:
    spec = BUILTINS[type_name]
    given_constraints = as_constraints(freeze(constraints)) if frozen else constraints
    assert returns(spec.validate_constraints, given_constraints) is None
    stored = spec.validate(value)
    with pytest.raises(ConstraintViolation) as info:
        spec.check(stored, given_constraints)
    error = info.value
    assert type(error) is ConstraintViolation
    assert isinstance(error, ValidationError)
    assert str(error) == message
    assert error.message == message


SATISFIED = [
    pytest.param("float", 1.0, {"max": 1.0}, id="float-max-inclusive"),
    pytest.param("float", 0.0, {"min": 0.0}, id="float-min-inclusive"),
    pytest.param("float", -0.0, {"min": 0.0, "max": 0.0}, id="float-negative-zero"),
    pytest.param("float", 0.5, {"min": 0, "max": 1}, id="float-int-bounds"),
    pytest.param("float", math.nan, {}, id="float-nan-unconstrained"),
    pytest.param("float", math.inf, {"min": 0.0}, id="float-inf-above-min"),
    pytest.param("float", -math.inf, {"max": 0.0}, id="float-minus-inf-below-max"),
    pytest.param("float", math.inf, {"max": math.inf}, id="float-inf-max-inf"),
    pytest.param("float", -math.inf, {"min": -math.inf}, id="float-minus-inf-min-minus-inf"),
    pytest.param("integer", 100, {"max": 100}, id="integer-max-inclusive"),
    pytest.param("integer", 0, {"min": 0}, id="integer-min-inclusive"),
    pytest.param("integer", 10**30, {"min": 0}, id="integer-huge"),
    pytest.param("string", "abc", {"min_length": 3}, id="string-min-length"),
    pytest.param("string", "abcde", {"max_length": 5}, id="string-max-length"),
    pytest.param("string", "😀😀", {"max_length": 2}, id="string-code-points"),
    pytest.param("string", "", {"max_length": 0}, id="string-empty"),
    pytest.param("string", "xaby", {"pattern": "ab"}, id="string-pattern-searched"),
    pytest.param("string", "abc", {"pattern": "^a"}, id="string-pattern-anchored"),
    pytest.param("string", "b", {"enum": ["a", "b"]}, id="string-enum"),
    pytest.param(
        "string",
        "abcd",
        {"min_length": 3, "max_length": 5, "pattern": "^a", "enum": ["abcd"]},
        id="string-all",
    ),
    pytest.param("boolean", True, {}, id="boolean"),
    pytest.param("choice", "a", {"choices": ["a", "b"]}, id="choice"),
    pytest.param("choice", "anything", {"choices": []}, id="choice-empty-allows-anything"),
    pytest.param("choice", "anything", {}, id="choice-unconstrained"),
    pytest.param("module", "b", {"allowed_modules": ["a", "b"]}, id="module"),
    pytest.param("module", "anything", {}, id="module-unconstrained"),
    pytest.param("embedding", [1, 2, 3], {"dimensions": 3}, id="embedding"),
    pytest.param("embedding", [], {"dimensions": 0}, id="embedding-zero"),
    pytest.param("tensor", T23, {"shape": [2, 3]}, id="tensor"),
    pytest.param("tensor", {"shape": [], "data": [1]}, {"shape": []}, id="tensor-scalar"),
]


@pytest.mark.parametrize("frozen", [False, True], ids=["plain", "frozen"])
@pytest.mark.parametrize(("type_name", "value", "constraints"), SATISFIED)
def test_check_satisfied(
    type_name: str, value: object, constraints: dict[str, object], frozen: bool
) -> None:
    spec = BUILTINS[type_name]
    given_constraints = as_constraints(freeze(constraints)) if frozen else constraints
    assert returns(spec.validate_constraints, given_constraints) is None
    assert returns(spec.check, spec.validate(value), given_constraints) is None


@pytest.mark.parametrize(
    "constraints",
    [
        {"min": 0.0},
        {"max": 0.0},
        {"min": -math.inf},
        {"max": math.inf},
        {"min": -1, "max": 1},
        {"min": -math.inf, "max": math.inf},
    ],
)
@pytest.mark.parametrize("nan", [math.nan, "NaN", float("nan")], ids=["math.nan", "str", "fresh"])
def test_nan_fails_any_min_or_max(nan: object, constraints: dict[str, object]) -> None:
    stored = FLOAT.validate(nan)
    assert isinstance(stored, float)
    assert math.isnan(stored)
    with pytest.raises(ConstraintViolation) as info:
        FLOAT.check(stored, constraints)
    assert type(info.value) is ConstraintViolation
    assert "nan" in str(info.value)


def test_nan_message_says_it_is_no_number_and_names_the_failed_bound() -> None:
    with pytest.raises(ConstraintViolation) as below:
        FLOAT.check(math.nan, {"min": 0.0})
    assert str(below.value) == "value nan is not a number, so it cannot meet minimum 0.0"
    with pytest.raises(ConstraintViolation) as above:
        FLOAT.check(math.nan, {"max": 1.0})
    assert str(above.value) == "value nan is not a number, so it cannot meet maximum 1.0"


# --------------------------------------------------------------------------
# validate_constraints

INVALID_CONSTRAINTS = [
    # unknown keys, for every type
    *[pytest.param(name, {"bogus": 1}, "bogus", id=f"{name}-unknown") for name in BUILTINS],
    pytest.param("float", {"min_length": 1}, "min_length", id="float-string-key"),
    pytest.param("float", {1: 2.0}, "1", id="float-non-str-key"),
    pytest.param("integer", {"pattern": "a"}, "pattern", id="integer-string-key"),
    pytest.param("string", {"min": 0}, "min", id="string-number-key"),
    pytest.param("string", {None: 1}, "None", id="string-None-key"),
    pytest.param("boolean", {"min": 0}, "min", id="boolean-any-key"),
    pytest.param("choice", {"allowed_modules": ["a"]}, "allowed_modules", id="choice-module-key"),
    pytest.param("module", {"choices": ["a"]}, "choices", id="module-choice-key"),
    pytest.param("embedding", {"shape": [3]}, "shape", id="embedding-tensor-key"),
    pytest.param("tensor", {"dimensions": 3}, "dimensions", id="tensor-embedding-key"),
    # values of the wrong kind
    pytest.param("float", {"min": "0"}, "min", id="float-str-min"),
    pytest.param("float", {"max": True}, "max", id="float-bool-max"),
    pytest.param("float", {"min": [0]}, "min", id="float-list-min"),
    pytest.param("float", {"max": math.nan}, "max", id="float-nan-max"),
    pytest.param("integer", {"min": "0"}, "min", id="integer-str-min"),
    pytest.param("integer", {"max": False}, "max", id="integer-bool-max"),
    pytest.param("integer", {"max": {"value": 1}}, "max", id="integer-dict-max"),
    pytest.param("string", {"min_length": "3"}, "min_length", id="string-str-min-length"),
    pytest.param("string", {"min_length": -1}, "min_length", id="string-negative-min-length"),
    pytest.param("string", {"max_length": 2.5}, "max_length", id="string-float-max-length"),
    pytest.param("string", {"max_length": True}, "max_length", id="string-bool-max-length"),
    pytest.param("string", {"pattern": 5}, "pattern", id="string-int-pattern"),
    pytest.param("string", {"pattern": b"^a"}, "pattern", id="string-bytes-pattern"),
    pytest.param("string", {"enum": "ab"}, "enum", id="string-str-enum"),
    pytest.param("string", {"enum": [1, 2]}, "enum", id="string-int-enum"),
    pytest.param("string", {"enum": 5}, "enum", id="string-scalar-enum"),
    pytest.param("choice", {"choices": "ab"}, "choices", id="choice-str-choices"),
    pytest.param("choice", {"choices": [1]}, "choices", id="choice-int-choices"),
    pytest.param("choice", {"choices": 5}, "choices", id="choice-scalar-choices"),
    pytest.param("module", {"allowed_modules": "os"}, "allowed_modules", id="module-str"),
    pytest.param("module", {"allowed_modules": [None]}, "allowed_modules", id="module-None"),
    pytest.param("embedding", {"dimensions": "3"}, "dimensions", id="embedding-str-dimensions"),
    pytest.param("embedding", {"dimensions": -1}, "dimensions", id="embedding-negative"),
    pytest.param("embedding", {"dimensions": 3.0}, "dimensions", id="embedding-float"),
    pytest.param("embedding", {"dimensions": True}, "dimensions", id="embedding-bool"),
    pytest.param("tensor", {"shape": "23"}, "shape", id="tensor-str-shape"),
    pytest.param("tensor", {"shape": [2, -1]}, "shape", id="tensor-negative-dim"),
    pytest.param("tensor", {"shape": [2.0]}, "shape", id="tensor-float-dim"),
    pytest.param("tensor", {"shape": [True]}, "shape", id="tensor-bool-dim"),
    pytest.param("tensor", {"shape": 6}, "shape", id="tensor-int-shape"),
    # min > max
    pytest.param("float", {"min": 2.0, "max": 1.0}, "min", id="float-min-gt-max"),
    pytest.param("float", {"min": math.inf, "max": -math.inf}, "min", id="float-inf-gt-minus-inf"),
    pytest.param("float", {"min": 1, "max": 0.5}, "min", id="float-mixed-min-gt-max"),
    pytest.param("integer", {"min": 1, "max": 0}, "min", id="integer-min-gt-max"),
    pytest.param("string", {"min_length": 5, "max_length": 3}, "min_length", id="string-lengths"),
    # regexes that do not compile
    pytest.param("string", {"pattern": "("}, "(", id="regex-open-group"),
    pytest.param("string", {"pattern": "[a-"}, "[a-", id="regex-open-class"),
    pytest.param("string", {"pattern": "a**"}, "a**", id="regex-double-star"),
    pytest.param("string", {"pattern": "(?P<x"}, "(?P<x", id="regex-open-name"),
]


@pytest.mark.parametrize(("type_name", "constraints", "mention"), INVALID_CONSTRAINTS)
def test_validate_constraints_rejects(type_name: str, constraints: object, mention: str) -> None:
    spec = BUILTINS[type_name]
    with pytest.raises(InvalidConstraint) as info:
        spec.validate_constraints(as_constraints(constraints))
    assert type(info.value) is InvalidConstraint
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, SessionStoreError)
    # SPEC §6: a message that names the offending value
    assert mention in str(info.value)


VALID_CONSTRAINTS = [
    *[pytest.param(name, {}, id=f"{name}-empty") for name in BUILTINS],
    pytest.param("float", {"min": 0.0}, id="float-min"),
    pytest.param("float", {"max": 1}, id="float-int-max"),
    pytest.param("float", {"min": 0, "max": 0}, id="float-equal-bounds"),
    pytest.param("float", {"min": -1.5, "max": 2}, id="float-mixed"),
    pytest.param("float", {"min": -math.inf, "max": math.inf}, id="float-infinite-bounds"),
    pytest.param("integer", {"min": 0, "max": 100}, id="integer-range"),
    pytest.param("integer", {"min": -5}, id="integer-min"),
    pytest.param("integer", {"max": 5}, id="integer-max"),
    pytest.param("string", {"min_length": 0}, id="string-min-length-zero"),
    pytest.param("string", {"min_length": 3, "max_length": 5}, id="string-lengths"),
    pytest.param("string", {"min_length": 2, "max_length": 2}, id="string-equal-lengths"),
    pytest.param("string", {"pattern": "^a"}, id="string-pattern"),
    pytest.param("string", {"pattern": ""}, id="string-empty-pattern"),
    pytest.param("string", {"enum": ["a", "b"]}, id="string-enum"),
    pytest.param("string", {"enum": ("a",)}, id="string-tuple-enum"),
    pytest.param(
        "string",
        {"min_length": 1, "max_length": 9, "pattern": r"\d+", "enum": ["1"]},
        id="string-all",
    ),
    pytest.param("choice", {"choices": ["a", "b"]}, id="choice"),
    pytest.param("choice", {"choices": []}, id="choice-empty"),
    pytest.param("choice", {"choices": ("a",)}, id="choice-tuple"),
    pytest.param("module", {"allowed_modules": ["os", "sys"]}, id="module"),
    pytest.param("embedding", {"dimensions": 0}, id="embedding-zero"),
    pytest.param("embedding", {"dimensions": 3}, id="embedding-three"),
    pytest.param("tensor", {"shape": [2, 3]}, id="tensor-list"),
    pytest.param("tensor", {"shape": (2, 3)}, id="tensor-tuple"),
    pytest.param("tensor", {"shape": []}, id="tensor-scalar"),
    pytest.param("tensor", {"shape": [0]}, id="tensor-zero"),
]


@pytest.mark.parametrize("frozen", [False, True], ids=["plain", "frozen"])
@pytest.mark.parametrize(("type_name", "constraints"), VALID_CONSTRAINTS)
def test_validate_constraints_accepts(
    type_name: str, constraints: dict[str, object], frozen: bool
) -> None:
    given_constraints = as_constraints(freeze(constraints)) if frozen else constraints
    assert returns(BUILTINS[type_name].validate_constraints, given_constraints) is None


# --------------------------------------------------------------------------
# Edges: numbers too big for a float, exact min > max, regexes that fail to compile.
# These assert the SPEC; some fail against types.py as of this writing.


def test_huge_integer_bounds_are_valid_integer_constraints() -> None:
    """SPEC §5: integer constraints `min`, `max`; only unknown key, wrong kind, min > max or
    a bad regex raise InvalidConstraint. 10**400 is an integer, so it is of the right kind."""
    assert returns(INTEGER.validate_constraints, {"min": -(10**400), "max": 10**400}) is None
    with pytest.raises(ConstraintViolation) as info:
        INTEGER.check(10**401, {"max": 10**400})
    assert str(info.value) == f"value {10**401} is above maximum {10**400}"


@pytest.mark.parametrize("bound", [10**400, -(10**400)], ids=["huge", "minus-huge"])
def test_float_constraint_with_huge_int_bound_raises_only_invalid_constraint(bound: int) -> None:
    """SPEC §5: validate_constraints(constraints) -> None (raises InvalidConstraint); an
    exception other than a SessionStoreError escaping a type is a bug in that type."""
    with contextlib.suppress(InvalidConstraint):
        assert returns(FLOAT.validate_constraints, {"max": bound}) is None


def test_integer_min_greater_than_max_is_detected_exactly() -> None:
    """SPEC §5: "`min > max` ... raises `InvalidConstraint`". 2**53 + 1 > 2**53 must be
    caught even though both round to the same float."""
    with pytest.raises(InvalidConstraint):
        INTEGER.validate_constraints({"min": 2**53 + 1, "max": 2**53})


@pytest.mark.parametrize(
    "pattern",
    ["a{4294967296}", "(" * 5000 + ")" * 5000],
    ids=["repeat-count-overflow", "nesting-too-deep"],
)
def test_regex_that_does_not_compile_is_invalid_constraint(pattern: str) -> None:
    """SPEC §5: "a regex that does not compile raises `InvalidConstraint`"."""
    with pytest.raises((re.error, OverflowError, RecursionError)):
        re.compile(pattern)  # it really does not compile
    with pytest.raises(InvalidConstraint):
        STRING.validate_constraints({"pattern": pattern})


def _cyclic_list() -> list[object]:
    cycle: list[object] = [1.0]
    cycle.append(cycle)
    return cycle


def _deep_list(depth: int) -> list[object]:
    deep: list[object] = [1.0]
    for _ in range(depth):
        deep = [deep]
    return deep


EXOTIC = [
    pytest.param(Fraction(1, 3), id="fraction"),
    pytest.param(Fraction(10**400, 1), id="huge-whole-fraction"),
    pytest.param(Fraction(10**400, 3), id="huge-fraction"),
    pytest.param(Fraction(-(10**400), 7), id="minus-huge-fraction"),
    pytest.param(Decimal("1.5"), id="decimal"),
    pytest.param(Decimal("NaN"), id="decimal-nan"),
    pytest.param(complex(1, 1), id="complex"),
    pytest.param(10**400, id="huge-int"),
    pytest.param(-(10**400), id="minus-huge-int"),
    pytest.param([10**400], id="list-huge-int"),
    pytest.param([Fraction(10**400, 3)], id="list-huge-fraction"),
    pytest.param(object(), id="object"),
    pytest.param(_cyclic_list(), id="cyclic-list"),
    pytest.param(_deep_list(200), id="deep-list"),
    pytest.param({"shape": [1], "data": _deep_list(200)}, id="tensor-deep-data"),
    pytest.param({"shape": [1], "data": _cyclic_list()}, id="tensor-cyclic-data"),
    pytest.param({"shape": [10**9, 10**9], "data": []}, id="tensor-huge-shape"),
    pytest.param({"shape": [1], "data": [10**400]}, id="tensor-huge-int"),
]


@pytest.mark.parametrize("value", EXOTIC)
@pytest.mark.parametrize("type_name", list(BUILTINS))
def test_exotic_input_stored_or_validation_error(type_name: str, value: object) -> None:
    """SPEC §5: validate raises ValidationError; an exception other than a SessionStoreError
    escaping a type is a bug in that type."""
    try:
        stored = BUILTINS[type_name].validate(value)
    except ValidationError as error:
        assert type(error) is ValidationError
    else:
        assert type(stored) is STORED_TYPE[type_name]


def test_huge_int_is_not_silently_turned_into_infinity() -> None:
    for spec in (FLOAT, EMBEDDING):
        with pytest.raises(ValidationError):
            spec.validate(10**400 if spec is FLOAT else [10**400])


# --------------------------------------------------------------------------
# JSON form

ROUND_TRIPS = [
    pytest.param("float", 1.5, id="float"),
    pytest.param("float", -0.0, id="float-negative-zero"),
    pytest.param("float", 3, id="float-from-int"),
    pytest.param("float", "NaN", id="float-nan"),
    pytest.param("float", math.inf, id="float-inf"),
    pytest.param("float", -math.inf, id="float-minus-inf"),
    pytest.param("float", 5e-324, id="float-subnormal"),
    pytest.param("float", 1.7976931348623157e308, id="float-max"),
    pytest.param("integer", 42, id="integer"),
    pytest.param("integer", -(10**30), id="integer-huge"),
    pytest.param("integer", 7.0, id="integer-whole-float"),
    pytest.param("string", 'héllo "quoted" \\ 😀\n', id="string"),
    pytest.param("string", "NaN", id="string-NaN"),
    pytest.param("boolean", True, id="boolean-true"),
    pytest.param("boolean", "false", id="boolean-false"),
    pytest.param("choice", "a", id="choice"),
    pytest.param("module", "os.path", id="module"),
    pytest.param("embedding", [1, 2.5, -3], id="embedding"),
    pytest.param("embedding", [], id="embedding-empty"),
    pytest.param("embedding", [math.nan, math.inf, -math.inf, -0.0], id="embedding-special"),
    pytest.param("tensor", T23, id="tensor"),
    pytest.param("tensor", {"shape": [2, 2], "data": [[math.nan, 1], [math.inf, -math.inf]]}),
    pytest.param("tensor", {"shape": [], "data": [3]}, id="tensor-scalar"),
    pytest.param("tensor", {"shape": [0, 4], "data": []}, id="tensor-empty"),
]


@pytest.mark.parametrize(("type_name", "value"), ROUND_TRIPS)
def test_json_round_trip(type_name: str, value: object) -> None:
    spec = BUILTINS[type_name]
    stored = spec.validate(value)
    back = json_round_trip(spec, stored)
    assert_same(back, stored)
    assert type(back) is STORED_TYPE[type_name]


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"), (1.5, 1.5)],
)
def test_float_json_form_of_special_floats(value: float, encoded: object) -> None:
    assert_same(FLOAT.to_json(value), encoded)
    assert json.loads(json.dumps(FLOAT.to_json(value), allow_nan=False)) == encoded


def test_embedding_and_tensor_json_forms_are_json_ready() -> None:
    assert EMBEDDING.to_json((math.nan, math.inf, -math.inf, 1.0)) == [
        "NaN",
        "Infinity",
        "-Infinity",
        1.0,
    ]
    tensor = Tensor((2,), (math.nan, 2.0))
    form = TENSOR.to_json(tensor)
    assert json.loads(json.dumps(form, allow_nan=False)) == form
    assert isinstance(form, dict)
    assert form["shape"] == [2]
    assert form["data"] == ["NaN", 2.0]


@pytest.mark.parametrize(
    ("type_name", "data"),
    [
        ("float", "nan"),
        ("float", True),
        ("integer", 4.5),
        ("string", None),
        ("boolean", "yes"),
        ("embedding", "abc"),
        ("tensor", {"shape": [2], "data": [1]}),
        ("tensor", [1, 2]),
    ],
)
def test_from_json_rejects_bad_data(type_name: str, data: object) -> None:
    with pytest.raises(ValidationError) as info:
        BUILTINS[type_name].from_json(data)
    assert type(info.value) is ValidationError


# --------------------------------------------------------------------------
# Tensor and the immutability of stored values


def test_tensor_is_frozen() -> None:
    tensor = TENSOR.validate({"shape": [2], "data": [1, 2]})
    assert isinstance(tensor, Tensor)
    with pytest.raises(AttributeError):
        tensor.shape = (1, 2)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        tensor.data = (3.0, 4.0)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        tensor.extra = 1  # type: ignore[attr-defined]
    assert tensor == Tensor((2,), (1.0, 2.0))
    assert isinstance(tensor.shape, tuple)
    assert isinstance(tensor.data, tuple)


def test_tensor_hashable_and_equal_by_value() -> None:
    a = TENSOR.validate({"shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]})
    b = TENSOR.validate({"shape": (2, 3), "data": (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)})
    assert a == b == T23
    assert a is not b
    assert hash(a) == hash(b)
    assert len({a, b, T23}) == 1
    assert {a: "x"}[b] == "x"
    assert a != Tensor((3, 2), T23.data)
    assert a != Tensor((2, 3), (1.0, 2.0, 3.0, 4.0, 5.0, 7.0))


def test_tensor_size_and_nested_view() -> None:
    assert T23.size == 6
    assert Tensor((), (5.0,)).size == 1
    assert Tensor((2, 0), ()).size == 0
    assert T23.to_nested() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert Tensor((3,), (1.0, 2.0, 3.0)).to_nested() == [1.0, 2.0, 3.0]
    assert Tensor((), (5.0,)).to_nested() == 5.0
    assert TENSOR.validate({"shape": [2, 3], "data": T23.to_nested()}) == T23


def test_stored_values_do_not_alias_the_callers_input() -> None:
    vector = [1.0, 2.0]
    stored_vector = EMBEDDING.validate(vector)
    vector.append(3.0)
    vector[0] = 9.0
    assert stored_vector == (1.0, 2.0)

    rows = [[1, 2], [3, 4]]
    shape = [2, 2]
    given_tensor = {"shape": shape, "data": rows}
    stored_tensor = TENSOR.validate(given_tensor)
    rows[0][0] = 99
    shape[0] = 7
    given_tensor["data"] = []
    assert stored_tensor == Tensor((2, 2), (1.0, 2.0, 3.0, 4.0))


# --------------------------------------------------------------------------
# TypeRegistry


class PercentType:
    """A user type: a number in [0, 100] stored as a fraction."""

    name = "percent"

    def validate(self, value: object) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValidationError("must be a percentage")
        return value / 100

    def validate_constraints(self, constraints: Mapping[str, object]) -> None:
        if constraints:
            raise InvalidConstraint("percent takes no constraints")

    def check(self, value: object, constraints: Mapping[str, object]) -> None:
        return None

    def to_json(self, value: object) -> object:
        return value

    def from_json(self, data: object) -> object:
        return data


def registry_of(extra: Sequence[object]) -> TypeRegistry:
    return TypeRegistry(cast("list[TypeSpec]", list(extra)))


@pytest.mark.parametrize(
    "type_name",
    ["bogus", "", "FLOAT", "Float", " float", "float ", "int", "bool", "str", "list"],
)
def test_resolve_unknown_name(type_name: str) -> None:
    with pytest.raises(UnknownType) as info:
        TypeRegistry().resolve(type_name)
    assert info.value.type_name == type_name
    assert isinstance(info.value, ValueError)
    assert type_name in str(info.value)


@pytest.mark.parametrize(
    "type_name",
    [None, 1, 1.5, True, b"float", ("float",), ["float"], [1], {"float": 1}, {"float"}, float],
    ids=lambda value: type(value).__name__,
)
def test_resolve_non_str_is_unknown_type(type_name: object) -> None:
    with pytest.raises(UnknownType) as info:
        TypeRegistry().resolve(type_name)
    assert info.value.type_name is type_name


def test_extra_type_registers_beside_builtins() -> None:
    percent = PercentType()
    registry = registry_of([percent])
    assert registry.resolve("percent") is percent
    assert registry.resolve("percent").validate(50) == 0.5
    for name, spec in BUILTINS.items():
        assert registry.resolve(name) is spec
        assert registry.resolve(VariableType(name)) is spec
    assert sorted(registry.names()) == sorted([*BUILTINS, "percent"])
    # a registry is per store: the built-in table and fresh registries are untouched
    with pytest.raises(UnknownType):
        TypeRegistry().resolve("percent")
    assert "percent" not in BUILTIN_TYPES
    assert len(BUILTIN_TYPES) == 8


def test_several_extra_types() -> None:
    class Other(PercentType):
        name = "other"

    percent, other = PercentType(), Other()
    registry = registry_of([percent, other])
    assert registry.resolve("percent") is percent
    assert registry.resolve("other") is other


@pytest.mark.parametrize("clash", list(BUILTINS))
def test_extra_type_name_clash_with_builtin(clash: str) -> None:
    class Clashing(PercentType):
        name = clash

    with pytest.raises(InvalidArgument) as info:
        registry_of([Clashing()])
    assert clash in str(info.value)


def test_extra_type_name_clash_between_extras() -> None:
    with pytest.raises(InvalidArgument) as info:
        registry_of([PercentType(), PercentType()])
    assert "percent" in str(info.value)


def _without(member: str) -> object:
    """A PercentType-like object lacking ``member``."""
    namespace = {
        key: getattr(PercentType, key)
        for key in ("name", "validate", "validate_constraints", "check", "to_json", "from_json")
        if key != member
    }
    return type(f"Lacks_{member}", (), namespace)()


@pytest.mark.parametrize(
    "member", ["name", "validate", "validate_constraints", "check", "to_json", "from_json"]
)
def test_extra_type_lacking_a_member(member: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        registry_of([_without(member)])
    assert member in str(info.value)


@pytest.mark.parametrize("bad", [object(), "percent", 5, None], ids=repr)
def test_extra_type_that_is_not_a_type(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        registry_of([bad])


@pytest.mark.parametrize("name", ["", 5, None], ids=repr)
def test_extra_type_needs_a_non_empty_str_name(name: object) -> None:
    class Named(PercentType):
        pass

    Named.name = name  # type: ignore[assignment]
    with pytest.raises(InvalidArgument):
        registry_of([Named()])


# --------------------------------------------------------------------------
# Properties (hypothesis)

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
any_floats = st.floats(allow_nan=True, allow_infinity=True)


@given(finite_floats, finite_floats, finite_floats)
def test_float_min_max_property(a: float, b: float, x: float) -> None:
    low, high = sorted((a, b))
    constraints = {"min": low, "max": high}
    assert returns(FLOAT.validate_constraints, constraints) is None
    stored = FLOAT.validate(x)
    if low <= x <= high:
        assert returns(FLOAT.check, stored, constraints) is None
        return
    with pytest.raises(ConstraintViolation) as info:
        FLOAT.check(stored, constraints)
    expected = (
        f"value {x!r} is below minimum {low!r}"
        if x < low
        else f"value {x!r} is above maximum {high!r}"
    )
    assert type(info.value) is ConstraintViolation
    assert str(info.value) == expected


@given(finite_floats, st.booleans())
def test_float_one_sided_bound_property(bound: float, is_min: bool) -> None:
    value = FLOAT.validate(bound)
    key = "min" if is_min else "max"
    assert returns(FLOAT.check, value, {key: bound}) is None
    beyond = math.nextafter(bound, -math.inf if is_min else math.inf)
    with pytest.raises(ConstraintViolation) as info:
        FLOAT.check(FLOAT.validate(beyond), {key: bound})
    word = "below minimum" if is_min else "above maximum"
    assert str(info.value) == f"value {beyond!r} is {word} {bound!r}"


@given(st.integers(), st.integers(), st.integers())
def test_integer_min_max_property(a: int, b: int, x: int) -> None:
    low, high = sorted((a, b))
    constraints = {"min": low, "max": high}
    if max(abs(low), abs(high)) < 2**1000:  # huge bounds: see the explicit test above
        assert returns(INTEGER.validate_constraints, constraints) is None
    if low <= x <= high:
        assert returns(INTEGER.check, x, constraints) is None
        return
    with pytest.raises(ConstraintViolation) as info:
        INTEGER.check(x, constraints)
    expected = (
        f"value {x} is below minimum {low}" if x < low else f"value {x} is above maximum {high}"
    )
    assert str(info.value) == expected


@given(st.integers())
def test_integer_validate_is_identity_on_ints(x: int) -> None:
    stored = INTEGER.validate(x)
    assert stored == x
    assert type(stored) is int
    assert json_round_trip(INTEGER, stored) == x


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integer_accepts_whole_floats(x: int) -> None:
    stored = INTEGER.validate(float(x))
    assert stored == x
    assert type(stored) is int


@given(finite_floats.filter(lambda f: not f.is_integer()))
def test_integer_rejects_fractional_floats(x: float) -> None:
    with pytest.raises(ValidationError) as info:
        INTEGER.validate(x)
    assert type(info.value) is ValidationError
    assert str(info.value) == f"must be a whole number, got {x!r}"


@given(any_floats)
def test_float_validate_and_json_round_trip(x: float) -> None:
    stored = FLOAT.validate(x)
    assert_same(stored, x)
    assert_same(json_round_trip(FLOAT, stored), x)


@given(st.integers(min_value=-(2**63), max_value=2**63))
def test_float_stores_ints_as_float(x: int) -> None:
    stored = FLOAT.validate(x)
    assert type(stored) is float
    assert stored == float(x)


@given(st.lists(st.one_of(any_floats, st.integers(-(2**53), 2**53)), max_size=20))
def test_embedding_round_trip(items: list[float]) -> None:
    stored = EMBEDDING.validate(items)
    expected = tuple(float(item) for item in items)
    assert_same(stored, expected)
    assert_same(json_round_trip(EMBEDDING, stored), expected)
    assert returns(EMBEDDING.check, stored, {"dimensions": len(items)}) is None
    with pytest.raises(ConstraintViolation) as info:
        EMBEDDING.check(stored, {"dimensions": len(items) + 1})
    assert str(info.value) == f"must have exactly {len(items) + 1} dimensions"


@st.composite
def tensors(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    shape = draw(st.lists(st.integers(0, 4), max_size=4))
    size = math.prod(shape)
    data = draw(st.lists(any_floats, min_size=size, max_size=size))
    return shape, data


@given(tensors(), st.booleans())
def test_tensor_round_trip(generated: tuple[list[int], list[float]], nested: bool) -> None:
    shape, data = generated
    given_data = nest(data, shape) if nested and shape else data
    stored = TENSOR.validate({"shape": shape, "data": given_data})
    expected = Tensor(tuple(shape), tuple(data))
    assert_same(stored, expected)
    back = json_round_trip(TENSOR, stored)
    assert_same(back, expected)
    if not any(math.isnan(x) for x in data):  # hash(nan) is per object since Python 3.10
        assert back == stored
        assert hash(back) == hash(stored)
    assert_same(TENSOR.validate(stored), expected)
    assert returns(TENSOR.check, stored, {"shape": shape}) is None
    other = [*shape, 1]
    with pytest.raises(ConstraintViolation) as info:
        TENSOR.check(stored, {"shape": other})
    assert str(info.value) == "shape must be [" + ", ".join(map(str, other)) + "]"


@given(tensors(), st.integers(1, 3))
def test_tensor_size_mismatch(generated: tuple[list[int], list[float]], extra: int) -> None:
    shape, data = generated
    with pytest.raises(ValidationError) as info:
        TENSOR.validate({"shape": shape, "data": [*data, *([0.0] * extra)]})
    assert type(info.value) is ValidationError
    assert str(info.value) == SIZE_MSG


@given(st.text(max_size=12), st.integers(0, 12), st.integers(0, 12))
def test_string_length_property(text: str, a: int, b: int) -> None:
    low, high = sorted((a, b))
    constraints = {"min_length": low, "max_length": high}
    assert returns(STRING.validate_constraints, constraints) is None
    stored = STRING.validate(text)
    assert stored == text
    if low <= len(text) <= high:
        assert returns(STRING.check, stored, constraints) is None
        return
    with pytest.raises(ConstraintViolation) as info:
        STRING.check(stored, constraints)
    expected = (
        f"must be at least {low} characters, got {len(text)}"
        if len(text) < low
        else f"must be at most {high} characters, got {len(text)}"
    )
    assert str(info.value) == expected


@given(st.text(max_size=12), st.data())
def test_string_pattern_is_searched(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    for pattern in (re.escape(text[start:end]), "^" + re.escape(text) + r"\Z"):
        assert returns(STRING.check, text, {"pattern": pattern}) is None
    impossible = re.escape(text) + "\x00!"
    with pytest.raises(ConstraintViolation) as info:
        STRING.check(text, {"pattern": impossible})
    assert str(info.value) == f"must match pattern: {impossible}"


# Patterns from a grammar both engines take, over a small alphabet, so that texts hit
# the edges (empty, newlines at the end, repeats).
_ATOMS = st.sampled_from(["a", "b", ".", "[ab]", "[^a]", "\\n", "[{,1}]", "\\$", "\\{"])
_PATTERNS = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.tuples(
            inner.map(lambda p: f"(?:{p})"),
            st.sampled_from(["*", "+", "?", "{2}", "{1,2}", "{,2}", "*?"]),
        ).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        inner.map(lambda p: f"({p})"),
        inner.map(lambda p: f"(?:{p})"),
    ),
    max_leaves=6,
)


@settings(max_examples=300)
@given(
    st.sampled_from(["", "^"]),
    _PATTERNS,
    st.sampled_from(["", "$", "\\Z", "(?m)$"]),
    st.text(alphabet="ab\n{,1}$", max_size=8),
    st.sampled_from(["", "\n"]),
)
@example("", "a", "$", "a", "\n")  # Python's $ before a final newline
@example("^", "a{,2}", "\\Z", "aa", "")
@example("", "[{,1}]", "", "{", "")
def test_a_pattern_matches_what_pythons_re_matches(
    start: str, body: str, end: str, text: str, final: str
) -> None:
    """Patterns run on a linear-time engine (RE2) but mean what they mean to Python's
    ``re``: anchors, ``{,n}``, ``$`` before a final newline, classes, laziness."""
    text += final
    pattern = start + body + end if not end.startswith("(?m)") else "(?m)" + start + body + "$"
    expected = re.search(pattern, text) is not None
    assert returns_or_violation(STRING.check, text, {"pattern": pattern}) is expected, pattern


def returns_or_violation(check: Callable[..., object], value: object, constraints: object) -> bool:
    try:
        check(value, constraints)
    except ConstraintViolation:
        return False
    return True


@pytest.mark.parametrize(
    "pattern",
    ["(a)\\1", "a(?=b)", "(?<!a)b", "(?P<x>a)(?P=x)"],
    ids=["backreference", "lookahead", "lookbehind", "named-backreference"],
)
def test_a_pattern_that_cannot_run_in_linear_time_is_refused(pattern: str) -> None:
    re.compile(pattern)  # Python takes it, but would backtrack to run it
    with pytest.raises(InvalidConstraint, match="linear time"):
        STRING.validate_constraints({"pattern": pattern})


def test_a_hostile_pattern_takes_linear_time() -> None:
    """The classic catastrophic pattern: hours in Python's re, nothing here."""
    for pattern, text in [("^(a+)+$", "a" * 40 + "b"), ("^.*a.*a.*a.*b", "a" * 20_000)]:
        started = time.process_time()
        with pytest.raises(ConstraintViolation):
            STRING.check(text, {"pattern": pattern})
        assert time.process_time() - started < 1.0


@given(
    st.sampled_from([(CHOICE, "choices", "must be one of: "), (STRING, "enum", "must be one of: ")])
    | st.just((MODULE, "allowed_modules", "must be one of the allowed modules: ")),
    st.lists(st.text(max_size=4), min_size=1, max_size=5),
    st.text(max_size=4),
)
def test_one_of_property(case: tuple[TypeSpec, str, str], allowed: list[str], value: str) -> None:
    spec, key, prefix = case
    constraints = {key: allowed}
    assert returns(spec.validate_constraints, constraints) is None
    stored = spec.validate(value)
    if value in allowed:
        assert returns(spec.check, stored, constraints) is None
        return
    with pytest.raises(ConstraintViolation) as info:
        spec.check(stored, constraints)
    assert str(info.value) == prefix + ", ".join(allowed)


@given(st.text())
def test_resolve_any_other_text_is_unknown(name: str) -> None:
    registry = TypeRegistry()
    if name in BUILTINS:
        assert registry.resolve(name) is BUILTINS[name]
        return
    with pytest.raises(UnknownType) as info:
        registry.resolve(name)
    assert info.value.type_name == name


json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        any_floats,
        st.text(max_size=6),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "true", "false", "shape", "data"]),
        st.binary(max_size=3),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.sampled_from(["shape", "data", "x"]), children, max_size=3),
    ),
    max_leaves=10,
)
constraint_keys = st.sampled_from(
    [
        "min",
        "max",
        "min_length",
        "max_length",
        "pattern",
        "enum",
        "choices",
        "allowed_modules",
        "dimensions",
        "shape",
        "bogus",
    ]
)


@given(st.sampled_from(list(BUILTINS)), json_like)
def test_validate_raises_only_validation_error(type_name: str, value: object) -> None:
    spec = BUILTINS[type_name]
    try:
        stored = spec.validate(value)
    except ValidationError as error:
        assert type(error) is ValidationError
        assert str(error)
        return
    assert type(stored) is STORED_TYPE[type_name]
    assert_same(json_round_trip(spec, stored), stored)


@given(
    st.sampled_from(list(BUILTINS)),
    st.dictionaries(constraint_keys, json_like, max_size=3),
    json_like,
)
def test_constraints_raise_only_their_errors(
    type_name: str, constraints: dict[str, object], value: object
) -> None:
    spec = BUILTINS[type_name]
    try:
        spec.validate_constraints(constraints)
    except InvalidConstraint as error:
        assert type(error) is InvalidConstraint
        return
    try:
        stored = spec.validate(value)
    except ValidationError:
        return
    try:
        spec.check(stored, constraints)
    except ConstraintViolation as error:
        assert str(error)


def test_error_str_is_its_message() -> None:
    # every built-in raises SessionStoreError subclasses whose str() is the message
    checks: list[Callable[[], object]] = [
        lambda: FLOAT.validate("x"),
        lambda: FLOAT.check(2.0, {"max": 1.0}),
        lambda: STRING.validate_constraints({"pattern": "("}),
        lambda: TypeRegistry().resolve("nope"),
    ]
    for call in checks:
        with pytest.raises(SessionStoreError) as info:
            call()
        assert str(info.value) == info.value.message
        assert repr(info.value).startswith(type(info.value).__name__ + "(")


def test_constraint_violation_is_a_validation_error() -> None:
    assert issubclass(ConstraintViolation, ValidationError)
    assert not issubclass(ValidationError, ConstraintViolation)
    assert not issubclass(InvalidConstraint, ValidationError)


def test_a_string_pattern_cannot_hold_the_actor() -> None:
    """A ``pattern`` constraint is a caller's regex run in the actor on every write.
    With backtracking, ``^(a+)+$`` against 40 a's and a b takes hours and ``a*b``
    against 1,000,000 a's (a value within the limits) minutes; each hostile pattern
    must be refused when registered (``InvalidConstraint``) or a write against it be
    answered within a second. Run in a subprocess killed after 5 s, since a
    backtracking regex cannot be interrupted."""
    script = """
import asyncio, time
from sessionactor import ConstraintViolation, InvalidConstraint, SessionStore

CASES = [
    ("^(a+)+$", "a", "a" * 40 + "b"),
    ("(x+x+)+y", "xxy", "x" * 40),
    ("a*b", "b", "a" * 1_000_000),
    ("^.*a.*a.*a.*b", "aaab", "a" * 20_000),
]

async def main():
    worst = 0.0
    async with SessionStore(call_timeout=None) as store:
        await store.create_session("s")
        for index, (pattern, good, hostile) in enumerate(CASES):
            name = f"v{index}"
            try:
                await store.register_variable(
                    "s", name, "string", good, constraints={"pattern": pattern}
                )
            except InvalidConstraint:
                continue
            started = time.perf_counter()
            try:
                await store.update_variable("s", name, hostile)
            except ConstraintViolation:
                pass
            worst = max(worst, time.perf_counter() - started)
    print(worst)

asyncio.run(main())
"""
    try:
        finished = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=5.0
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a write against a hostile pattern held the actor for more than 5 s")
    assert finished.returncode == 0, finished.stderr
    assert float(finished.stdout) < 1.0, f"a write took {float(finished.stdout):.2f} s"
