"""Immutable data at the store's boundary: frozen mappings, copy-in with limits, and back.

Everything a caller passes to the store becomes plain, immutable data when the
call is made, before it waits in the mailbox: containers are copied all the way
down (lists and tuples become tuples, mappings become :class:`FrozenMap`), and
subclasses of ``str``, ``int``, ``float`` and ``bytes`` become the exact built-in
type, so that nothing the caller does afterwards (mutate a list, change what a
``str`` subclass compares equal to) can reach the store. The copy also measures
the data against the store's :class:`Limits`, so that a huge value is refused in
the caller's task instead of occupying the actor.

What cannot be copied is not raised at once: the copy becomes a :class:`Refused`
holding the error, and the handler raises it at the point where it would have
checked that argument. So a bad argument gets exactly the error, and in exactly
the order, that the functional core gives when it is driven directly.
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from fractions import Fraction
from typing import Any, Final, Self, TypeVar

import attrs

from .errors import MAPPING_REPRS, InvalidArgument, SessionStoreError, ValidationError, describe

__all__ = [
    "copy_text",
    "copy_identifiers",
    "exact_key",
    "EMPTY_MAPPING",
    "MAX_INT_BITS",
    "FrozenMap",
    "FrozenMapping",
    "Limits",
    "Owned",
    "Refused",
    "copy_mapping",
    "copy_program",
    "copy_updates",
    "copy_value",
    "decode_float",
    "encode_float",
    "freeze",
    "freeze_mapping",
    "thaw",
    "to_plain",
]

MAX_INT_BITS: Final = 13_000  # about 3,900 digits: below Python's int-to-str limit of 4,300
_SPECIAL_FLOATS: Final[dict[str, float]] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}

_T = TypeVar("_T")


class FrozenMap(Mapping[str, object]):
    """A read-only, hashable mapping: metadata and constraints as the store keeps them.

    It compares equal to any mapping with the same items (``dict`` included) and
    hashes by its items when they are hashable, so snapshots that hold it can be
    hashed and used in sets. It has no method that changes it.

    >>> metadata = FrozenMap({"owner": "ada"})
    >>> metadata == {"owner": "ada"}, metadata["owner"]
    (True, 'ada')
    """

    __slots__ = ("__weakref__", "_data", "_hash")

    _data: dict[str, object]
    _hash: int | None

    def __init__(self, data: Mapping[str, object] | None = None) -> None:
        # Takes a copy: the dict inside is never shared with anyone who could change it.
        self._data = {} if data is None else dict(data)
        self._hash = None

    @classmethod
    def _owning(cls, data: dict[str, object]) -> Self:
        """Wrap a dict nobody else holds, without copying it."""
        frozen = cls.__new__(cls)
        frozen._data = data
        frozen._hash = None
        return frozen

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def items(self) -> ItemsView[str, object]:
        return self._data.items()

    def values(self) -> ValuesView[object]:
        return self._data.values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self.items() == other.items()  # views: no copy, values need not hash
        if isinstance(other, dict):
            return self._data == other
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __copy__(self) -> FrozenMap:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenMap:
        return self

    def __reduce__(self) -> tuple[type[FrozenMap], tuple[dict[str, object]]]:
        return (FrozenMap, (self._data,))


MAPPING_REPRS[FrozenMap.__repr__] = "FrozenMap"
FrozenMapping = FrozenMap
EMPTY_MAPPING: Final = FrozenMap()


@attrs.frozen(weakref_slot=False)
class Limits:
    """How much data one call may hand the store, checked in the caller's task.

    A call that passes more is refused (``ValidationError`` for a variable's
    value, ``InvalidArgument`` for metadata, ``InvalidConstraint`` for
    constraints) before the actor spends any time on it, so one caller cannot
    hold up the others. ``max_items`` counts every element of every list, tuple
    and mapping in one argument (a 1,000 by 100 nested list is 101,000 items);
    ``max_string_length`` bounds each ``str`` and ``bytes`` in code points or
    bytes; ``max_depth`` bounds nesting.
    """

    max_items: int = 100_000
    max_string_length: int = 1_000_000
    max_depth: int = 64

    def __attrs_post_init__(self) -> None:
        for name in ("max_items", "max_string_length", "max_depth"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise InvalidArgument(f"{name} must be a positive int, got {describe(value)}")


DEFAULT_LIMITS: Final = Limits()


class Refused:
    """An argument that could not be copied in: the handler raises ``error`` where it
    would have checked the argument."""

    __slots__ = ("error",)

    def __init__(self, error: SessionStoreError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"Refused({self.error!r})"


class Owned:
    """Data copied in when the call was made: the store's own now, no copy needed again."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Owned({self.value!r})"


class _TooMuch(Exception):
    """Raised inside a copy when a limit is passed; carries the reason."""


class _Copier:
    """One copy of one argument, counting items against the limits."""

    __slots__ = ("items", "limits", "permissive")

    def __init__(self, limits: Limits, *, permissive: bool) -> None:
        self.limits = limits
        self.items = 0
        # permissive: a variable's value (its type decides what it accepts);
        # strict: JSON-like data only (metadata, constraints).
        self.permissive = permissive

    def count(self, n: int) -> None:
        self.items += n
        if self.items > self.limits.max_items:
            raise _TooMuch(f"more than {self.limits.max_items} items")

    def copy(self, value: object, depth: int) -> object:
        kind = type(value)
        if kind is float or kind is bool or value is None:
            return value
        if kind is str or (kind is bytes and self.permissive):
            if len(value) > self.limits.max_string_length:  # type: ignore[arg-type]
                raise _TooMuch(f"a string of more than {self.limits.max_string_length} characters")
            return value
        if kind is int:
            if value.bit_length() > MAX_INT_BITS and not self.permissive:  # type: ignore[attr-defined]
                raise TypeError("an integer of more than 3900 digits cannot be encoded")
            return value
        if kind is list or kind is tuple:
            return self._sequence(value, depth)  # type: ignore[arg-type]
        if kind is Refused:  # refused already, where it was copied first
            return value
        if kind is dict or kind is FrozenMap:
            return self._mapping(value, depth)  # type: ignore[arg-type]
        return self._other(value, depth)

    def _sequence(self, value: Sequence[object], depth: int) -> tuple[object, ...]:
        if depth >= self.limits.max_depth:
            raise _TooMuch(f"nesting deeper than {self.limits.max_depth} levels")
        self.count(len(value))
        copy_item = self.copy
        depth += 1
        return tuple([copy_item(item, depth) for item in value])

    def _mapping(self, value: Mapping[object, object], depth: int) -> FrozenMap:
        if depth >= self.limits.max_depth:
            raise _TooMuch(f"nesting deeper than {self.limits.max_depth} levels")
        self.count(len(value))
        copied: dict[str, object] = {}
        depth += 1
        for key, item in value.items():
            if type(key) is not str:
                if isinstance(key, str) and self.permissive:
                    key = str.__str__(key)
                elif not self.permissive or not _is_plain_key(key):
                    raise TypeError(f"key {describe(key)} is not a str")  # repr may be hostile
            if type(key) in (str, bytes) and len(key) > self.limits.max_string_length:  # type: ignore[arg-type]
                raise _TooMuch(f"a key of more than {self.limits.max_string_length} characters")
            copied[key] = self.copy(item, depth)  # type: ignore[index]
        return FrozenMap._owning(copied)

    def _other(self, value: object, depth: int) -> object:
        # Subclasses of the built-ins become the exact built-in: a subclass may change
        # what it compares equal to, or hold state the store must not share.
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, str):
            return self.copy(str.__str__(value), depth)
        if isinstance(value, int):
            return self.copy(int.__int__(value), depth)
        if isinstance(value, float):
            return float.__float__(value)
        if isinstance(value, bytes | bytearray) and self.permissive:
            return self.copy(bytes(value), depth)
        if isinstance(value, list | tuple):
            return self._sequence(value, depth)
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        if not self.permissive:
            raise TypeError(f"{type(value).__name__} value is not JSON-like")
        return self._other_value(value, depth)

    def _other_value(self, value: object, depth: int) -> object:
        from .types import Tensor  # types imports this module

        if isinstance(value, Tensor):  # a subclass too: the store keeps a plain Tensor
            shape = self.copy(value.shape, depth)
            data = self.copy(value.data, depth)
            return Tensor(shape, data)  # type: ignore[arg-type]
        if isinstance(value, numbers.Number):
            return _copy_number(value)
        if isinstance(value, Sequence):
            return self._sequence(value, depth)
        try:  # anything else a user type may accept: the store keeps a private copy
            return copy.deepcopy(value)
        except Exception as error:
            raise TypeError(f"{type(value).__name__} value cannot be copied: {error}") from None


def _is_plain_key(key: object) -> bool:
    return key is None or type(key) in (int, float, bool, bytes)


def _copy_number(value: numbers.Number) -> object:
    """A number the caller passed as an immutable value of a plain type."""
    if type(value) in (Fraction, complex):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, numbers.Complex):
        return complex(value)
    return copy.deepcopy(value)


def copy_value(value: _T, limits: Limits = DEFAULT_LIMITS) -> _T | Refused:
    """A variable's value, copied into immutable form when the call is made.

    Scalars of exact built-in types pass as they are (the common case costs a
    type check); containers are copied all the way down. More than ``limits``
    allow is refused with ``ValidationError``; what cannot be copied at all, with
    ``InvalidArgument``.
    """
    kind = type(value)
    if kind is float or kind is int or kind is bool or value is None:
        return value
    if kind is str and len(value) <= limits.max_string_length:  # type: ignore[arg-type]
        return value
    return _copy_value(value, _Copier(limits, permissive=True))  # type: ignore[return-value]


def _copy_value(value: object, copier: _Copier) -> object:
    try:
        return copier.copy(value, 0)
    except _TooMuch as reason:
        return Refused(ValidationError(f"value is too large: {reason}", value=_Opaque(value)))
    except Exception as error:  # not copyable, or an object whose own methods raise
        return Refused(InvalidArgument(f"value {describe(value)} cannot be passed: {error}"))


class _Opaque:
    """Stands for a refused value in its error: the error must not keep the caller's object."""

    __slots__ = ("text",)

    def __init__(self, value: object) -> None:
        self.text = describe(value)

    def __repr__(self) -> str:
        return self.text


def copy_text(value: object, limits: Limits, what: str) -> object:
    """A ``str`` argument measured against ``max_string_length`` when the call is made:
    a longer one becomes a :class:`Refused` with ``InvalidArgument``. Anything else is
    passed on for the handler to check."""
    if isinstance(value, str) and len(value) > limits.max_string_length:
        return Refused(
            InvalidArgument(
                f"{what} {describe(value)} is too large: a string of more than "
                f"{limits.max_string_length} characters"
            )
        )
    return value


def copy_identifiers(items: object, limits: Limits = DEFAULT_LIMITS) -> object:
    """A collection of identifiers as a tuple, read now (in the caller's task, never
    the actor's) and measured: more than ``max_items`` of them, or an iterable that
    fails while read, becomes a :class:`Refused` with ``InvalidArgument``. ``None``,
    text, mappings and non-iterables are passed on for the handler to refuse."""
    if type(items) is tuple and len(items) <= limits.max_items:
        return items
    if items is None or isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        return items
    try:
        copied = tuple(itertools.islice(items, limits.max_items + 1))
    except Exception as error:  # the caller's iterable raised
        return Refused(
            InvalidArgument(
                f"identifiers {describe(items)} could not be read: {type(error).__name__}: {error}"
            )
        )
    if len(copied) > limits.max_items:
        return Refused(InvalidArgument(f"identifiers hold more than {limits.max_items} items"))
    return copied


def copy_mapping(
    value: object,
    limits: Limits = DEFAULT_LIMITS,
    *,
    error: Callable[[str], SessionStoreError] = InvalidArgument,
    what: str = "metadata",
) -> object:
    """Metadata or constraints, frozen when the call is made (None stays None).

    A value that is not a mapping is passed on unchanged for the handler to
    refuse; a mapping that is not JSON-like, or is too large, becomes a
    :class:`Refused` with ``error``.
    """
    if value is None or not isinstance(value, Mapping):
        return value
    try:
        return _Copier(limits, permissive=False).copy(value, 0)
    except _TooMuch as reason:
        return Refused(error(f"{what} {describe(value)} is too large: {reason}"))
    except (TypeError, ValueError, RecursionError) as fault:
        return Refused(error(f"{what} {describe(value)} is not JSON-like: {fault}"))
    except Exception as fault:  # a mapping whose own methods raise
        return Refused(error(f"{what} {describe(value)} cannot be read: {fault!r}"))


def copy_program(data: object) -> Owned | Refused:
    """Program data is anything at all: a deep copy, made while it is still the caller's."""
    if type(data) is Owned or type(data) is Refused:
        return data
    try:
        return Owned(copy.deepcopy(data))
    except Exception as error:
        return Refused(InvalidArgument(f"program data {describe(data)} cannot be copied: {error}"))


def copy_updates(updates: object, limits: Limits = DEFAULT_LIMITS) -> object:
    """A batch of updates: a plain dict of the same keys with each value copied in.

    The batch is one argument: its entries and every item of every value count
    against ``limits.max_items`` together (``InvalidArgument`` for the batch); a
    value that alone is too large is refused for its key (``ValidationError``).
    What is not a mapping, or a mapping that fails, is passed on for the handler
    to refuse (it names the fault).
    """
    if not isinstance(updates, Mapping):
        return updates
    try:
        entries = len(updates)
        if entries > limits.max_items:
            error = InvalidArgument(
                f"updates hold {entries} entries, more than the limit of {limits.max_items}"
            )
            return Refused(error)
        copied: dict[object, object] = {}
        total = entries
        for key, value in updates.items():
            kind = type(value)
            if kind is float or kind is int or kind is bool or value is None:
                copied[key] = value
                continue
            copier = _Copier(limits, permissive=True)
            copied[key] = one = _copy_value(value, copier)
            if type(one) is Refused:  # refused for its key; it adds nothing to the batch
                continue
            total += copier.items
            if total > limits.max_items:
                return Refused(
                    InvalidArgument(
                        f"updates hold more than {limits.max_items} items in all "
                        "(entries and the items of their values)"
                    )
                )
        return copied
    except Exception:
        return updates  # a hostile mapping: the handler reports it


def exact_key(value: object) -> object:
    """A hashable key equal for two frozen values exactly when they are the same data:
    ``1``, ``1.0`` and ``True`` differ, so do ``0.0`` and ``-0.0``, a tuple and a
    mapping; a mapping's order counts (it is what its owner gets back).

    Unlike ``repr`` it costs what the value holds, not the length of its text: a
    string is hashed once (``str`` caches its hash) and compared by memory.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None or kind is bytes:
        return (kind, value)
    if kind is float:
        return (float, value, math.copysign(1.0, value))  # type: ignore[arg-type]
    if kind is tuple or kind is list:
        return (tuple, tuple(exact_key(item) for item in value))  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        return (Mapping, tuple((exact_key(k), exact_key(v)) for k, v in value.items()))
    return (kind, repr(value))  # anything else: its text (not JSON-like data)


def freeze(value: object, _depth: int = 0) -> object:
    """An immutable deep copy of JSON-like data.

    Raises ``TypeError`` naming the first value that is not JSON-like (a str-keyed
    mapping, a list or tuple, a str, int, float, bool or None) and ``ValueError``
    past the default limits.
    """
    try:
        return _Copier(DEFAULT_LIMITS, permissive=False).copy(value, _depth)
    except _TooMuch as reason:
        raise ValueError(str(reason)) from None


def freeze_mapping(value: Mapping[object, object]) -> FrozenMap:
    """A read-only deep copy of a str-keyed mapping (see :func:`freeze`)."""
    if not value:
        return EMPTY_MAPPING
    frozen = freeze(value)
    assert type(frozen) is FrozenMap
    return frozen


def encode_float(value: float) -> float | str:
    """A float as ``json.dumps(allow_nan=False)`` accepts it."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: object) -> object:
    """The inverse of :func:`encode_float`; anything else is returned as is.

    Only for fields that hold floats: a string field whose text is "NaN" must
    stay a string.
    """
    if type(value) is str:
        return _SPECIAL_FLOATS.get(value, value)
    return value


def thaw(value: object) -> object:
    """A JSON-ready mutable copy of frozen data (special floats as strings)."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(item) for item in value]
    return value


def to_plain(value: object) -> object:
    """A mutable copy of frozen data with every float as it is (for ``json`` with
    ``allow_nan``, which keeps NaN and the infinities exact)."""
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    return value
