"""Checking import entries: everything about an entry that does not depend on the session.

An import is all or nothing, and checking a large one costs time in proportion
to its size: every value goes through its type. So the checks that need only
the entry itself (its keys, id, name, type, constraints, value, metadata,
version, timestamps, and that no id or name appears twice) run when the call is
made, in the caller's task; the actor adds only what needs the session (that no
id or name is taken there) and applies the result in one short turn. Driven
directly with raw entries, the functional core runs the same checks itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from ._checks import check_id, check_metadata, check_name, check_version
from ._frozen import DEFAULT_LIMITS, Limits, Refused, copy_mapping, copy_value
from .errors import (
    InternalError,
    InvalidArgument,
    InvalidConstraint,
    InvalidImport,
    SessionStoreError,
    ValidationError,
    describe,
)
from .model import Variable
from .types import TypeRegistry

__all__ = ["EXPORT_KEYS", "CheckedImport", "check_entries", "prepare_import"]

EXPORT_KEYS: Final = frozenset(
    {
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
)
_OPTIONAL_KEYS: Final = frozenset({"revision"})  # accepted and replaced: an import takes new ones
_REQUIRED_KEYS: Final = ("id", "name", "type", "value")

Rejection = tuple[ValidationError, str]  # a value its type refused, and the type's name


@attrs.frozen(weakref_slot=False)
class CheckedImport:
    """Import entries after the checks that need no session.

    ``variables`` holds each good entry with its index (revision 0, to be given
    when applied); ``errors`` maps each faulty entry's index to what is wrong;
    ``rejections`` are the type failures among them, for the rejection counter.
    """

    variables: tuple[tuple[int, Variable], ...]
    errors: Mapping[int, str]
    rejections: tuple[Rejection, ...]


def prepare_import(
    exported: object, types: TypeRegistry | None, limits: Limits = DEFAULT_LIMITS
) -> object:
    """The entries checked now, if this side knows the store's types; else a copy for
    the side that does (a remote client sends them to the server, which checks them)."""
    if isinstance(exported, str | bytes) or not isinstance(exported, Sequence):
        return exported  # the handler refuses it, naming it
    if types is None:
        return copy_value(exported, limits)
    try:
        return check_entries(exported, types, time.time(), limits)
    except InvalidImport as error:
        return Refused(error)
    except Exception as error:  # a bug in a user type (from_json, check...)
        failure = InternalError("import_variables", error)
        failure.__cause__ = error
        return Refused(failure)


def check_entries(
    entries: Sequence[object], types: TypeRegistry, wall: float, limits: Limits = DEFAULT_LIMITS
) -> CheckedImport:
    """Check every entry on its own and against the others; see :class:`CheckedImport`."""
    if len(entries) > limits.max_items:
        raise InvalidImport(
            {}, f"import has {len(entries)} entries, more than the limit of {limits.max_items}"
        )
    good: list[tuple[int, Variable]] = []
    errors: dict[int, str] = {}
    rejections: list[Rejection] = []
    ids: set[str] = set()
    names: set[str] = set()
    for index, entry in enumerate(entries):
        try:
            variable = _check_entry(entry, types, wall, limits, rejections)
            if variable.id in ids:
                raise InvalidArgument(f"id {describe(variable.id)} appears twice in the import")
            if variable.name in names:
                raise InvalidArgument(f"name {describe(variable.name)} appears twice in the import")
        except SessionStoreError as error:
            errors[index] = str(error)
            continue
        ids.add(variable.id)
        names.add(variable.name)
        good.append((index, variable))
    return CheckedImport(tuple(good), errors, tuple(rejections))


def _check_entry(
    entry: object, types: TypeRegistry, wall: float, limits: Limits, rejections: list[Rejection]
) -> Variable:
    if not isinstance(entry, Mapping):
        raise InvalidArgument(f"entry must be a mapping, got {describe(entry)}")
    unknown = [key for key in entry if key not in EXPORT_KEYS and key not in _OPTIONAL_KEYS]
    if unknown:
        raise InvalidArgument(f"unknown keys {', '.join(describe(k) for k in unknown)}")
    missing = [key for key in _REQUIRED_KEYS if key not in entry]
    if missing:
        raise InvalidArgument(f"missing keys {', '.join(missing)}")
    variable_id = check_id(entry["id"], "variable id")
    name = check_name(entry["name"])
    spec = types.resolve(entry["type"])
    raw_constraints = copy_mapping(
        entry.get("constraints"), limits, error=InvalidConstraint, what="constraints"
    )
    constraints = types.constraints_from_json(spec, raw_constraints)
    try:
        value = copy_value(entry["value"], limits)
        if type(value) is Refused:
            raise value.error
        value = spec.from_json(value)
        spec.check(value, constraints)
    except ValidationError as error:
        rejections.append((error, spec.name))
        raise
    metadata = check_metadata(copy_mapping(entry.get("metadata"), limits))
    version = check_version(entry.get("version", 0), "version")
    created_at = _check_timestamp(entry.get("created_at", wall), "created_at")
    updated_at = _check_timestamp(entry.get("updated_at", created_at), "updated_at")
    return Variable(
        variable_id,
        name,
        spec.name,
        value,
        constraints,
        metadata,
        version,
        created_at,
        updated_at,
        0,
    )


def _check_timestamp(value: object, what: str) -> float:
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            if math.isfinite(value):
                return float(value)
        except OverflowError:
            pass
    raise InvalidArgument(f"{what} must be a finite number, got {describe(value)}")
