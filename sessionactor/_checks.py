"""Argument checks of the functional core. Each returns the checked value or raises
:class:`InvalidArgument` naming the bad one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from ._frozen import EMPTY_MAPPING, FrozenMap, Refused, freeze_mapping
from .errors import InvalidArgument, describe

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_NAME_LENGTH",
    "check_id",
    "check_identifier",
    "check_lease",
    "check_metadata",
    "check_name",
    "check_optional_id",
    "check_ttl",
    "check_version",
    "positive_seconds",
]

MAX_ID_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 128


def check_id(value: object, what: str) -> str:
    if type(value) is not str:
        raise InvalidArgument(f"{what} must be a str, got {describe(value)}")
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(
            f"{what} must be 1 to {MAX_ID_LENGTH} characters, got {describe(value)}"
        )
    return value


def check_identifier(value: object) -> str:
    if type(value) is not str or not value or len(value) > MAX_ID_LENGTH:
        check_id(value, "variable identifier")
    return value  # type: ignore[return-value]


def check_name(value: object) -> str:
    if type(value) is not str:
        raise InvalidArgument(f"variable name must be a str, got {describe(value)}")
    if not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"variable name must be 1 to {MAX_NAME_LENGTH} characters, got {describe(value)}"
        )
    if "*" in value or "?" in value:
        raise InvalidArgument(f"variable name may not contain '*' or '?', got {describe(value)}")
    return value


def check_optional_id(value: object, what: str) -> str | None:
    return None if value is None else check_id(value, what)


def positive_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{what} must be a number of seconds, got {describe(value)}")
    try:
        # The number itself, not what a subclass's __float__ says when the handler runs.
        seconds = float.__float__(value) if isinstance(value, float) else float(int.__int__(value))
    except OverflowError:  # an int beyond any float: forever, as math.inf
        seconds = math.inf
    if not seconds > 0:  # NaN fails this too
        raise InvalidArgument(f"{what} must be positive, got {describe(value)}")
    return seconds


def check_ttl(value: object) -> float:
    return positive_seconds(value, "ttl")


def check_lease(value: object) -> float | None:
    return None if value is None else positive_seconds(value, "lease")


def check_metadata(value: object) -> FrozenMap:
    """Metadata as a frozen mapping: copied in already (the usual case) or frozen here."""
    if value is None:
        return EMPTY_MAPPING
    if type(value) is FrozenMap:
        return value
    if type(value) is Refused:
        raise value.error
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"metadata must be a mapping, got {describe(value)}")
    try:
        return freeze_mapping(value)
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidArgument(f"metadata {describe(value)} is not JSON-like: {error}") from None


def check_version(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative int, got {describe(value)}")
    return value
