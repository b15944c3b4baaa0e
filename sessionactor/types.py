"""Variable types: validation, constraints and JSON form.

A type is any object with the shape of :class:`TypeSpec`. The eight built-ins
below are such objects; ``SessionStore(types=[...])`` adds more beside them.

>>> FLOAT.validate(1)
1.0
>>> FLOAT.check(1.5, {"max": 1.0})
Traceback (most recent call last):
...
sessionactor.errors.ConstraintViolation: value 1.5 is above maximum 1.0
"""

from __future__ import annotations

import enum
import functools
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Protocol, cast, runtime_checkable

import attrs
import re2

from ._frozen import (
    EMPTY_MAPPING,
    MAX_INT_BITS,
    FrozenMap,
    Refused,
    decode_float,
    encode_float,
    freeze,
)
from .errors import (
    ConstraintViolation,
    InvalidArgument,
    InvalidConstraint,
    UnknownType,
    ValidationError,
    describe,
)

__all__ = [
    "BOOLEAN",
    "BUILTIN_TYPES",
    "CHOICE",
    "EMBEDDING",
    "FLOAT",
    "INTEGER",
    "MODULE",
    "STRING",
    "TENSOR",
    "Tensor",
    "TypeRegistry",
    "TypeSpec",
    "VariableType",
]

Constraints = Mapping[str, object]


class VariableType(enum.StrEnum):
    """The names of the built-in types; each member equals its name string."""

    FLOAT = "float"
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MODULE = "module"
    EMBEDDING = "embedding"
    TENSOR = "tensor"


@runtime_checkable
class TypeSpec(Protocol):
    """What the store needs of a variable type.

    ``validate`` turns an accepted input into its stored, immutable form or raises
    :class:`ValidationError`; ``validate_constraints`` vets a constraint spec at
    registration (:class:`InvalidConstraint`); ``check`` tests a validated value
    against vetted constraints (:class:`ConstraintViolation`); ``to_json`` and
    ``from_json`` convert the stored form to and from what ``json`` accepts.
    """

    @property
    def name(self) -> str: ...

    def validate(self, value: object) -> object: ...

    def validate_constraints(self, constraints: Constraints) -> None: ...

    def check(self, value: object, constraints: Constraints) -> None: ...

    def to_json(self, value: object) -> object: ...

    def from_json(self, data: object) -> object: ...


@attrs.frozen
class Tensor:
    """An immutable tensor: a shape and its data, flattened in row-major order."""

    shape: tuple[int, ...]
    data: tuple[float, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_nested(self) -> object:
        """The data as nested lists following ``shape``."""

        def build(offset: int, dims: tuple[int, ...]) -> tuple[object, int]:
            if not dims:
                return self.data[offset], offset + 1
            items = []
            for _ in range(dims[0]):
                item, offset = build(offset, dims[1:])
                items.append(item)
            return items, offset

        return build(0, self.shape)[0]


# --------------------------------------------------------------------------
# Helpers shared by the built-ins


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_float(value: object) -> float | None:
    """``value`` as a float if it is a real number (not bool), else None."""
    if type(value) is float:
        return value
    if not _is_number(value):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (OverflowError, ValueError, TypeError):
        return None


_LISTED: Final = 200  # characters of allowed values that an error message shows


def _listing(items: Sequence[object]) -> str:
    """The allowed values for an error message: all of them, or (a long list, built in
    the actor on every refused write) as many as fit in ``_LISTED`` characters and a
    count of the rest."""
    shown: list[str] = []
    used = 0
    for index, item in enumerate(items):
        if used > _LISTED:
            return f"{', '.join(shown)}, ... ({len(items) - index} more)"
        text = str(item)
        if len(text) > _LISTED:
            text = text[:_LISTED] + "..."
        shown.append(text)
        used += len(text) + 2
    return ", ".join(shown)


def _require_keys(type_name: str, constraints: Constraints, allowed: frozenset[str]) -> None:
    for key in constraints:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidConstraint(
                f"unknown constraint {describe(key)} for type {type_name} (allowed: {known})"
            )


def _number_constraint(type_name: str, constraints: Constraints, key: str) -> float | int | None:
    """The bound as given (an int stays an int, so integer bounds compare exactly)."""
    if key not in constraints or constraints[key] is None:
        return None
    bound = constraints[key]
    if type(bound) is int and bound.bit_length() <= MAX_INT_BITS:
        return bound
    number = _as_float(bound)
    if number is None or math.isnan(number):
        raise InvalidConstraint(
            f"constraint {key} of type {type_name} must be a number, got {describe(bound)}"
        )
    return number


def _min_max_constraints(type_name: str, constraints: Constraints) -> None:
    _require_keys(type_name, constraints, frozenset({"min", "max"}))
    low = _number_constraint(type_name, constraints, "min")
    high = _number_constraint(type_name, constraints, "max")
    if low is not None and high is not None and low > high:
        raise InvalidConstraint(
            f"constraint min {constraints['min']} is greater than max {constraints['max']}"
        )


def _check_min_max(value: float, constraints: Constraints) -> None:
    low = constraints.get("min")
    high = constraints.get("max")
    _bounds_checker(low, high, None)(value)


def _out_of_bounds(value: float, bound: object, side: str) -> ConstraintViolation:
    if value != value:  # NaN: neither below nor above, it is no number to compare
        message = f"value nan is not a number, so it cannot meet {side} {bound}"
    elif side == "minimum":
        message = f"value {value} is below minimum {bound}"
    else:
        message = f"value {value} is above maximum {bound}"
    return ConstraintViolation(message, value=value)


Checker = Callable[[object], object]
"""Validates a value and checks it against one variable's constraints: returns the
stored form, or raises ``ValidationError``/``ConstraintViolation``."""


def _bounds_checker(low: object, high: object, validate: Checker | None) -> Checker:
    """``validate`` then min/max, fused into one function. ``not (a >= b)`` rather than
    ``a < b``, so that NaN fails every bound; a float needs no validation."""

    def check_value(value: object) -> object:
        if type(value) is not float and validate is not None:
            value = validate(value)
        if low is not None and not value >= low:  # type: ignore[operator]
            raise _out_of_bounds(value, low, "minimum")  # type: ignore[arg-type]
        if high is not None and not value <= high:  # type: ignore[operator]
            raise _out_of_bounds(value, high, "maximum")  # type: ignore[arg-type]
        return value

    return check_value


def _string_list_constraint(type_name: str, constraints: Constraints, key: str) -> None:
    items = constraints.get(key)
    if items is None:
        return
    if (
        isinstance(items, str)
        or not isinstance(items, Sequence)
        or not all(isinstance(item, str) for item in items)
    ):
        raise InvalidConstraint(
            f"constraint {key} of type {type_name} must be a list of strings, got {describe(items)}"
        )


def _count_constraint(type_name: str, constraints: Constraints, key: str) -> int | None:
    count = constraints.get(key)
    if count is None:
        return None
    if type(count) is not int or count < 0:
        raise InvalidConstraint(
            f"constraint {key} of type {type_name} must be a non-negative integer, "
            f"got {describe(count)}"
        )
    return count


# --------------------------------------------------------------------------
# The built-in types


class _ScalarJSON:
    """JSON form for types whose stored value is already JSON-ready."""

    def to_json(self, value: object) -> object:
        return value

    def from_json(self, data: object) -> object:
        return self.validate(data)  # type: ignore[attr-defined]


class FloatType:
    """Real numbers; ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` are accepted too."""

    name: Final = "float"

    def validate(self, value: object) -> float:
        result = _as_float(decode_float(value))
        if result is None:
            raise ValidationError("must be a number", value=value)
        return result

    def validate_constraints(self, constraints: Constraints) -> None:
        _min_max_constraints(self.name, constraints)

    def check(self, value: object, constraints: Constraints) -> None:
        if constraints:
            _check_min_max(value, constraints)  # type: ignore[arg-type]

    def checker(self, constraints: Constraints) -> Checker:
        """``validate`` and ``check`` for these constraints in one fast step."""
        return _bounds_checker(constraints.get("min"), constraints.get("max"), self.validate)

    def constraints_from_json(self, constraints: Constraints) -> Constraints:
        return _bounds_from_json(constraints)

    def to_json(self, value: object) -> object:
        return encode_float(value)  # type: ignore[arg-type]

    def from_json(self, data: object) -> object:
        if type(data) is float:  # what validate() gives a float: itself
            return data
        return self.validate(data)


class IntegerType(_ScalarJSON):
    """Whole numbers; a whole float is accepted and stored as ``int``."""

    name: Final = "integer"

    def validate(self, value: object) -> int:
        if type(value) is int and value.bit_length() <= MAX_INT_BITS:
            return value
        if isinstance(value, bool) or not _is_number(value):
            raise ValidationError("must be an integer", value=value)
        if isinstance(value, numbers.Integral):
            if int(value).bit_length() > MAX_INT_BITS:
                # Python cannot print (nor json encode) an int of more than 4300 digits.
                raise ValidationError("must be an integer of at most 3900 digits", value=value)
            return int(value)
        if isinstance(value, numbers.Rational) and value.denominator == 1:
            return self.validate(value.numerator)
        try:
            whole = float(value).is_integer()  # type: ignore[arg-type]
        except OverflowError:  # a huge non-integral rational
            whole = False
        if not whole:
            raise ValidationError(f"must be a whole number, got {describe(value)}", value=value)
        return int(float(value))  # type: ignore[arg-type]

    def validate_constraints(self, constraints: Constraints) -> None:
        _min_max_constraints(self.name, constraints)

    def check(self, value: object, constraints: Constraints) -> None:
        if constraints:
            _check_min_max(value, constraints)  # type: ignore[arg-type]

    def checker(self, constraints: Constraints) -> Checker:
        validate = self.validate
        check = _bounds_checker(constraints.get("min"), constraints.get("max"), None)
        return lambda value: check(validate(value))

    def constraints_from_json(self, constraints: Constraints) -> Constraints:
        return _bounds_from_json(constraints)


def _bounds_from_json(constraints: Constraints) -> Constraints:
    """Export writes an infinite bound as "Infinity": only ``min``/``max`` are numbers."""
    if not any(type(constraints.get(key)) is str for key in ("min", "max")):
        return constraints
    decoded = dict(constraints)
    for key in ("min", "max"):
        if key in decoded:
            decoded[key] = decode_float(decoded[key])
    return decoded


_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the caller's error, not a log line
_RE2_OPTIONS.max_mem = 8 << 20  # bytes a compiled pattern may take (RE2's default)


class LinearRegex:
    """A ``pattern`` constraint, matched in time linear in the value's length.

    Python's ``re`` backtracks: ``^(a+)+$`` against 40 a's and a b takes hours,
    and it cannot be interrupted, so one write would hold the actor. The
    patterns are RE2 expressions (google-re2), which match in linear time:
    Python's syntax without backreferences and lookaround, where ``\\d``,
    ``\\w``, ``\\s`` and ``\\b`` are ASCII (``\\p{L}``, ``\\p{Nd}`` name Unicode
    classes). A value holding a lone surrogate (which UTF-8 cannot encode) is
    matched with each such character read as U+FFFD.
    """

    __slots__ = ("_search",)

    def __init__(self, pattern: str) -> None:
        try:  # what Python would refuse is refused, with Python's reason
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError, ValueError) as error:
            raise InvalidConstraint(
                f"constraint pattern {describe(pattern)} is not a valid regex: {error}"
            ) from None
        if _has_lone_surrogate(pattern):
            raise InvalidConstraint(
                f"constraint pattern {describe(pattern)} holds a lone surrogate, "
                "which no pattern can match"
            )
        try:
            self._search = re2.compile(_as_re2(pattern), _RE2_OPTIONS).search
        except re2.error as error:
            reason = error.args[0] if error.args else error
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise InvalidConstraint(
                f"constraint pattern {describe(pattern)} cannot be matched in linear "
                f"time (no backreferences or lookaround): {reason}"
            ) from None

    def search(self, text: str) -> bool:
        """Whether the pattern occurs anywhere in ``text``."""
        try:
            return self._search(text) is not None
        except UnicodeEncodeError:  # a lone surrogate: read as U+FFFD
            readable = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._search(readable) is not None


def _as_re2(pattern: str) -> str:
    """``pattern`` (which Python's ``re`` accepts) in RE2's spelling where the two read
    the same text differently: Python's end anchor ``\\Z`` is RE2's ``\\z``, Python's
    ``$`` (without MULTILINE) also matches before a final newline, and Python reads
    ``{,n}`` as ``{0,n}`` where RE2 would take it literally."""
    multiline = re.compile(pattern).flags & re.MULTILINE
    if "\\Z" not in pattern and "{," not in pattern and ("$" not in pattern or multiline):
        return pattern
    out: list[str] = []
    index, length = 0, len(pattern)
    class_start = -1  # where the character class we are in began, if we are in one
    while index < length:
        char = pattern[index]
        if char == "\\" and index + 1 < length:
            escaped = pattern[index + 1]
            out.append("\\z" if escaped == "Z" and class_start < 0 else char + escaped)
            index += 2
            continue
        if class_start >= 0:  # inside [...]: "]" ends it unless it comes first
            first = index == class_start + 1 or (
                index == class_start + 2 and pattern[class_start + 1] == "^"
            )
            if char == "]" and not first:
                class_start = -1
        elif char == "[":
            class_start = index
        elif char == "$" and not multiline:  # Python's $ also matches before a final newline
            out.append("(?:\n?\\z)")
            index += 1
            continue
        elif char == "{" and pattern.startswith("{,", index):
            closing = pattern.find("}", index)
            if closing > index + 2 and pattern[index + 2 : closing].isdigit():
                out.append("{0," + pattern[index + 2 : closing + 1])
                index = closing + 1
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@functools.lru_cache(maxsize=1024)
def linear_regex(pattern: str) -> LinearRegex:
    """The compiled pattern (one per distinct text); ``InvalidConstraint`` if RE2
    cannot take it."""
    return LinearRegex(pattern)


class StringType(_ScalarJSON):
    """Text, with optional length bounds, a regex (searched) and an enumeration."""

    name: Final = "string"
    _KEYS: Final = frozenset({"min_length", "max_length", "pattern", "enum"})

    def validate(self, value: object) -> str:
        if type(value) is str:
            return value
        if value is None:
            raise ValidationError("cannot be None", value=value)
        if not isinstance(value, str):
            raise ValidationError("must be a string", value=value)
        return str.__str__(value)

    def validate_constraints(self, constraints: Constraints) -> None:
        _require_keys(self.name, constraints, self._KEYS)
        low = _count_constraint(self.name, constraints, "min_length")
        high = _count_constraint(self.name, constraints, "max_length")
        if low is not None and high is not None and low > high:
            raise InvalidConstraint(
                f"constraint min_length {low} is greater than max_length {high}"
            )
        pattern = constraints.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise InvalidConstraint(
                    f"constraint pattern must be a string, got {describe(pattern)}"
                )
            linear_regex(str.__str__(pattern))
        _string_list_constraint(self.name, constraints, "enum")

    def check(self, value: object, constraints: Constraints) -> None:
        if constraints:
            _StringRules(constraints).check(value)  # type: ignore[arg-type]

    def checker(self, constraints: Constraints) -> Checker:
        """``validate`` and ``check`` for these constraints, with the regex compiled and
        the enumeration hashed once (a write costs one lookup, not a scan of the list)."""
        validate = self.validate
        if not constraints:
            return validate
        check = _StringRules(constraints).check

        def check_value(value: object) -> object:
            text = validate(value)
            check(text)
            return text

        return check_value


class _StringRules:
    """One string variable's constraints, prepared for checking values."""

    __slots__ = ("allowed", "high", "low", "members", "pattern", "regex")

    def __init__(self, constraints: Constraints) -> None:
        self.low: int | None = constraints.get("min_length")  # type: ignore[assignment]
        self.high: int | None = constraints.get("max_length")  # type: ignore[assignment]
        self.pattern: str | None = constraints.get("pattern")  # type: ignore[assignment]
        self.regex = None if self.pattern is None else linear_regex(self.pattern)
        self.allowed: Sequence[str] | None = constraints.get("enum")  # type: ignore[assignment]
        self.members = None if self.allowed is None else frozenset(self.allowed)

    def check(self, text: str) -> None:
        low, high = self.low, self.high
        if low is not None and len(text) < low:
            raise ConstraintViolation(
                f"must be at least {low} characters, got {len(text)}", value=text
            )
        if high is not None and len(text) > high:
            raise ConstraintViolation(
                f"must be at most {high} characters, got {len(text)}", value=text
            )
        if self.regex is not None and not self.regex.search(text):
            raise ConstraintViolation(f"must match pattern: {self.pattern}", value=text)
        if self.members is not None and text not in self.members:
            allowed: Sequence[str] = self.allowed  # type: ignore[assignment]
            raise ConstraintViolation(f"must be one of: {_listing(allowed)}", value=text)


class BooleanType(_ScalarJSON):
    """``True``/``False``; also ``"true"``/``"false"`` and ``1``/``0``."""

    name: Final = "boolean"
    _ACCEPTED: Final[dict[object, bool]] = {"true": True, "false": False}

    def validate(self, value: object) -> bool:
        if value is True or value is False:
            return value
        if type(value) is int and value in (0, 1):
            return value == 1
        if type(value) is str and value in self._ACCEPTED:
            return self._ACCEPTED[value]
        raise ValidationError("must be a boolean (true or false)", value=value)

    def validate_constraints(self, constraints: Constraints) -> None:
        _require_keys(self.name, constraints, frozenset())

    def check(self, value: object, constraints: Constraints) -> None:
        return None


class _OneOfType(_ScalarJSON):
    """A string restricted to a list of allowed strings (empty or absent: any)."""

    name: str
    _key: str
    _message: str

    def validate(self, value: object) -> str:
        if type(value) is str:
            return value
        if not isinstance(value, str):
            raise ValidationError("must be a string", value=value)
        return str.__str__(value)

    def validate_constraints(self, constraints: Constraints) -> None:
        _require_keys(self.name, constraints, frozenset({self._key}))
        _string_list_constraint(self.name, constraints, self._key)

    def check(self, value: object, constraints: Constraints) -> None:
        self.checker(constraints)(value)

    def checker(self, constraints: Constraints) -> Checker:
        """``validate`` and ``check`` in one step, the allowed strings hashed once."""
        validate = self.validate
        allowed: Sequence[str] | None = constraints.get(self._key)  # type: ignore[assignment]
        if not allowed:
            return validate
        members = frozenset(allowed)
        message = self._message

        def check_value(value: object) -> object:
            text = validate(value)
            if text not in members:
                raise ConstraintViolation(f"{message}{_listing(allowed)}", value=text)
            return text

        return check_value


class ChoiceType(_OneOfType):
    """One of the strings in ``choices``."""

    name = "choice"
    _key = "choices"
    _message = "must be one of: "


class ModuleType(_OneOfType):
    """A module name, one of ``allowed_modules`` when that is given."""

    name = "module"
    _key = "allowed_modules"
    _message = "must be one of the allowed modules: "


def _number_tuple(items: object) -> tuple[float, ...] | None:
    """A flat sequence of real numbers as a tuple of floats, or None."""
    if type(items) is tuple and all(type(item) is float for item in items):
        return items  # already the stored form (the common case, copied in at the call)
    if isinstance(items, str | bytes | bytearray) or not isinstance(items, Sequence):
        return None
    result = []
    for item in items:
        number = _as_float(decode_float(item))
        if number is None:
            return None
        result.append(number)
    return tuple(result)


class EmbeddingType:
    """A vector of numbers, stored as ``tuple[float, ...]``."""

    name: Final = "embedding"

    def validate(self, value: object) -> tuple[float, ...]:
        vector = _number_tuple(value)
        if vector is None:
            raise ValidationError("must be a list of numbers", value=value)
        return vector

    def validate_constraints(self, constraints: Constraints) -> None:
        _require_keys(self.name, constraints, frozenset({"dimensions"}))
        _count_constraint(self.name, constraints, "dimensions")

    def check(self, value: object, constraints: Constraints) -> None:
        dimensions = constraints.get("dimensions")
        if dimensions is not None and len(value) != dimensions:  # type: ignore[arg-type]
            raise ConstraintViolation(f"must have exactly {dimensions} dimensions", value=value)

    def to_json(self, value: object) -> object:
        return [encode_float(item) for item in value]  # type: ignore[attr-defined]

    def from_json(self, data: object) -> object:
        return self.validate(data)


def _flatten(data: object) -> list[object] | None:
    """Nested sequences of numbers flattened in order, or None if not such."""
    flat: list[object] = []
    stack: list[Iterable[object]] = [iter((data,))]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list | tuple):
                if len(stack) > 64:
                    return None
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


class TensorType:
    """A shaped array of numbers, stored as an immutable :class:`Tensor`."""

    name: Final = "tensor"
    _SHAPE_ERROR: Final = "must be a tensor with shape and data"

    def validate(self, value: object) -> Tensor:
        if isinstance(value, Tensor):
            shape: object = value.shape
            data: object = value.data
        elif isinstance(value, Mapping) and "shape" in value and "data" in value:
            shape, data = value["shape"], value["data"]
        else:
            raise ValidationError(self._SHAPE_ERROR, value=value)
        if (
            isinstance(shape, str)
            or not isinstance(shape, Sequence)
            or not all(type(dim) is int and dim >= 0 for dim in shape)
            or not isinstance(data, list | tuple)
        ):
            raise ValidationError(self._SHAPE_ERROR, value=value)
        flat = _flatten(data)
        numbers_ = None if flat is None else _number_tuple(flat)
        if numbers_ is None:
            raise ValidationError(self._SHAPE_ERROR, value=value)
        dims = tuple(shape)
        if len(numbers_) != math.prod(dims):
            raise ValidationError("data size doesn't match shape", value=value)
        return Tensor(dims, numbers_)

    def validate_constraints(self, constraints: Constraints) -> None:
        _require_keys(self.name, constraints, frozenset({"shape"}))
        shape = constraints.get("shape")
        if shape is not None and (
            isinstance(shape, str)
            or not isinstance(shape, Sequence)
            or not all(type(dim) is int and dim >= 0 for dim in shape)
        ):
            raise InvalidConstraint(
                f"constraint shape must be a list of non-negative integers, got {describe(shape)}"
            )

    def check(self, value: object, constraints: Constraints) -> None:
        shape = constraints.get("shape")
        if shape is not None and value.shape != tuple(shape):  # type: ignore[attr-defined, arg-type]
            expected = "[" + ", ".join(str(dim) for dim in shape) + "]"  # type: ignore[attr-defined]
            raise ConstraintViolation(f"shape must be {expected}", value=value)

    def to_json(self, value: object) -> object:
        tensor: Tensor = value  # type: ignore[assignment]
        return {"shape": list(tensor.shape), "data": [encode_float(x) for x in tensor.data]}

    def from_json(self, data: object) -> object:
        return self.validate(data)


FLOAT: Final = FloatType()
INTEGER: Final = IntegerType()
STRING: Final = StringType()
BOOLEAN: Final = BooleanType()
CHOICE: Final = ChoiceType()
MODULE: Final = ModuleType()
EMBEDDING: Final = EmbeddingType()
TENSOR: Final = TensorType()

BUILTIN_TYPES: Final[Mapping[str, TypeSpec]] = {
    spec.name: spec for spec in (FLOAT, INTEGER, STRING, BOOLEAN, CHOICE, MODULE, EMBEDDING, TENSOR)
}


_TYPE_MEMBERS: Final = ("name", "validate", "validate_constraints", "check", "to_json", "from_json")


class CompiledConstraints(FrozenMap):
    """One variable's constraints as the store keeps them: a read-only mapping, vetted
    by its type when registered, with ``check_value`` made once for them.

    ``check_value(value)`` validates a value by the type and checks it against
    these constraints in one step, returning the stored form. Built-in types make
    it a single fused function (a float update with min/max costs a type test and
    two comparisons); other types get ``validate`` followed by ``check``.
    """

    __slots__ = ("check_value", "high", "low", "type_name")

    check_value: Checker
    type_name: str
    # The range a float value needs to lie in to need no more checking, for the
    # built-in float type (min/max, or the whole line); an empty one for other types.
    low: float
    high: float


def _generic_checker(spec: TypeSpec, constraints: Constraints) -> Checker:
    validate, check = spec.validate, spec.check

    def check_value(value: object) -> object:
        stored = validate(value)
        check(stored, constraints)
        return stored

    return check_value


class TypeRegistry:
    """The types one store knows: the built-ins plus any the user adds."""

    def __init__(self, extra: Iterable[TypeSpec] = ()) -> None:
        self._types: dict[str, TypeSpec] = dict(BUILTIN_TYPES)
        try:
            specs = iter(extra)
        except Exception:
            raise InvalidArgument(
                f"types must be an iterable of types, got {describe(extra)}"
            ) from None
        for spec in specs:
            missing = [member for member in _TYPE_MEMBERS if not hasattr(spec, member)]
            if missing:
                raise InvalidArgument(f"type {describe(spec)} lacks {', '.join(missing)}")
            name = spec.name
            if type(name) is not str or not name:
                raise InvalidArgument(f"type name must be a non-empty str, got {describe(name)}")
            if name in self._types:
                raise InvalidArgument(f"type name {name!r} is already registered")
            self._types[name] = spec

    def resolve(self, type_name: object) -> TypeSpec:
        """The type for a name or :class:`VariableType` member; else :class:`UnknownType`."""
        if isinstance(type_name, str):
            # str.__str__, not str(): the text itself, whatever a subclass's __str__ says now.
            spec = self._types.get(str.__str__(type_name))
            if spec is not None:
                return spec
        raise UnknownType(type_name)

    def names(self) -> list[str]:
        return list(self._types)

    def constraints(self, spec: TypeSpec, constraints: object) -> CompiledConstraints:
        """Vet a constraint spec for ``spec`` (``InvalidConstraint`` if malformed) and
        compile it: a frozen copy with its ``check_value``."""
        if type(constraints) is Refused:
            raise constraints.error
        if constraints is None:
            frozen: Mapping[str, object] = EMPTY_MAPPING
        elif not isinstance(constraints, Mapping):
            raise InvalidConstraint(f"constraints must be a mapping, got {describe(constraints)}")
        elif type(constraints) is FrozenMap or type(constraints) is CompiledConstraints:
            frozen = constraints
        else:
            try:
                frozen = freeze(constraints)  # type: ignore[assignment]
            except (TypeError, ValueError, RecursionError) as error:
                raise InvalidConstraint(
                    f"constraints {describe(constraints)} are malformed: {error}"
                ) from None
        spec.validate_constraints(frozen)
        compiled = CompiledConstraints._owning(dict(frozen))
        make_checker = getattr(spec, "checker", None)
        if make_checker is None or spec is not BUILTIN_TYPES.get(spec.name):
            compiled.check_value = _generic_checker(spec, compiled)
        else:
            compiled.check_value = make_checker(compiled)
        compiled.type_name = spec.name
        if spec is BUILTIN_TYPES["float"]:  # the bounds as check_value compares them
            low, high = frozen.get("min"), frozen.get("max")
            compiled.low = -math.inf if low is None else cast(float, low)
            compiled.high = math.inf if high is None else cast(float, high)
        else:
            compiled.low, compiled.high = math.inf, -math.inf
        return compiled

    def constraints_from_json(self, spec: TypeSpec, constraints: object) -> CompiledConstraints:
        """Constraints as export wrote them (special floats as strings where a type keeps
        numbers), decoded by the type and compiled."""
        decode = getattr(spec, "constraints_from_json", None)
        if decode is not None and isinstance(constraints, Mapping):
            constraints = decode(constraints)
        return self.constraints(spec, constraints)

    def by_name(self) -> Mapping[str, TypeSpec]:
        """Every type by name (read-only; a registry never changes once built)."""
        return MappingProxyType(self._types)
