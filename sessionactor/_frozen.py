"""Immutable copies of JSON-like data, and back.

Metadata and constraints cross the actor's boundary in both directions. On the
way in they are copied into immutable form (dicts become read-only mappings,
lists become tuples) so that neither the caller's later changes nor a reader's
mutation can reach the store; on the way out to JSON they are thawed back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .errors import describe

__all__ = [
    "EMPTY_MAPPING",
    "MAX_INT_BITS",
    "FrozenMapping",
    "decode_float",
    "encode_float",
    "freeze",
    "freeze_mapping",
    "thaw",
]

FrozenMapping = MappingProxyType[str, object]
EMPTY_MAPPING: Final[FrozenMapping] = MappingProxyType({})

_SCALARS: Final = (str, int, float, bool, type(None))
_MAX_DEPTH: Final = 64
MAX_INT_BITS: Final = 13_000  # about 3,900 digits: below Python's int-to-str limit of 4,300
_SPECIAL_FLOATS: Final[dict[str, float]] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}


def encode_float(value: float) -> float | str:
    """A float as ``json.dumps(allow_nan=False)`` accepts it."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: object) -> object:
    """The inverse of :func:`encode_float`; anything else is returned as is."""
    if type(value) is str:
        return _SPECIAL_FLOATS.get(value, value)
    return value


def freeze(value: object, _depth: int = 0) -> object:
    """An immutable deep copy of JSON-like data.

    Raises ``TypeError`` naming the first value that is not JSON-like (a str-keyed
    mapping, a list or tuple, a str, int, float, bool or None).
    """
    if isinstance(value, _SCALARS):
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise TypeError("an integer of more than 3900 digits cannot be encoded")
        return value
    if _depth >= _MAX_DEPTH:
        raise TypeError(f"nesting deeper than {_MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        return freeze_mapping(value, _depth + 1)
    if isinstance(value, list | tuple):
        return tuple(freeze(item, _depth + 1) for item in value)
    raise TypeError(f"{type(value).__name__} value is not JSON-like")


def freeze_mapping(value: Mapping[object, object], _depth: int = 0) -> FrozenMapping:
    """A read-only deep copy of a str-keyed mapping (see :func:`freeze`)."""
    if not value:
        return EMPTY_MAPPING
    copy: dict[str, object] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise TypeError(f"key {describe(key)} is not a str")  # repr may be hostile
        copy[key] = freeze(item, _depth)
    return MappingProxyType(copy)


def thaw(value: object) -> object:
    """A JSON-ready mutable copy of frozen data (special floats as strings)."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(item) for item in value]
    return value
