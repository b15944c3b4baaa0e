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

from ._checks import check_id, check_metadata, check_name, check_ttl, check_version
from ._frozen import (
    DEFAULT_LIMITS,
    FrozenMap,
    Limits,
    Refused,
    copy_mapping,
    copy_value,
    decode_float,
    freeze,
    thaw,
)
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

__all__ = [
    "EXPORT_KEYS",
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "CheckedImport",
    "CheckedSession",
    "CheckedStore",
    "check_entries",
    "check_store",
    "prepare_import",
    "prepare_store_import",
]

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


# Whole-store snapshots ---------------------------------------------------------

STORE_FORMAT: Final = "sessionactor.store"
STORE_FORMAT_VERSION: Final = 1


@attrs.frozen(weakref_slot=False)
class CheckedSession:
    """One session of a store import, checked: what ``create_session`` would take, its
    timestamps, and its programs and variables. ``index`` is its place in the data."""

    index: int
    id: str
    ttl: float
    metadata: FrozenMap
    created_at: float
    last_accessed: float
    last_worker_id: str | None
    programs: tuple[tuple[str, object], ...]
    variables: CheckedImport


@attrs.frozen(weakref_slot=False)
class CheckedStore:
    """A whole-store import after every check that needs no store: sessions in order,
    global programs, and the faults found (keyed by the session's index; global
    programs' faults under -1)."""

    sessions: tuple[CheckedSession, ...]
    global_programs: tuple[tuple[str, object], ...]
    errors: Mapping[int, str]


def prepare_store_import(
    data: object, types: TypeRegistry | None, limits: Limits = DEFAULT_LIMITS
) -> object:
    """A whole-store import checked now, if this side knows the store's types; else a
    copy for the side that does (see :func:`prepare_import`)."""
    if types is None:
        return copy_value(data, limits)
    try:
        return check_store(data, types, time.time(), limits)
    except InvalidImport as error:
        return Refused(error)
    except Exception as error:  # a bug in a user type
        failure = InternalError("import_store", error)
        failure.__cause__ = error
        return Refused(failure)


def check_store(
    data: object, types: TypeRegistry, wall: float, limits: Limits = DEFAULT_LIMITS
) -> CheckedStore:
    """Check what ``export_store`` gave (also after a JSON round trip), all of it."""
    if not isinstance(data, Mapping):
        raise InvalidImport({}, f"store data must be a mapping, got {describe(data)}")
    if data.get("format") != STORE_FORMAT or data.get("version") != STORE_FORMAT_VERSION:
        raise InvalidImport(
            {},
            f"store data must have format {STORE_FORMAT!r} version {STORE_FORMAT_VERSION}, "
            f"got {describe(data.get('format'))} version {describe(data.get('version'))}",
        )
    unknown = [
        key for key in data if key not in ("format", "version", "sessions", "global_programs")
    ]
    if unknown:
        raise InvalidImport({}, f"store data has unknown keys {', '.join(map(describe, unknown))}")
    sessions_data = data.get("sessions", ())
    if isinstance(sessions_data, str | bytes) or not isinstance(sessions_data, Sequence):
        raise InvalidImport({}, f"sessions must be a list, got {describe(sessions_data)}")
    total = sum(len(s.get("variables", ())) for s in sessions_data if isinstance(s, Mapping))
    if total > limits.max_items:
        raise InvalidImport(
            {}, f"store data holds {total} variables, more than the limit of {limits.max_items}"
        )
    sessions: list[CheckedSession] = []
    errors: dict[int, str] = {}
    seen: set[str] = set()
    for index, session in enumerate(sessions_data):
        try:
            checked = _check_session(index, session, types, wall, limits)
            if checked.id in seen:
                raise InvalidArgument(f"session {describe(checked.id)} appears twice")
        except SessionStoreError as error:
            errors[index] = str(error)
            continue
        seen.add(checked.id)
        if checked.variables.errors:
            details = "; ".join(
                f"variable {i}: {why}" for i, why in sorted(checked.variables.errors.items())
            )
            errors[index] = f"session {describe(checked.id)}: {details}"
            continue
        sessions.append(checked)
    try:
        global_programs = _check_programs(data.get("global_programs", {}), "global programs")
    except SessionStoreError as error:
        errors[-1] = str(error)
        global_programs = ()
    return CheckedStore(tuple(sessions), global_programs, errors)


_SESSION_KEYS: Final = frozenset(
    {
        "id",
        "ttl",
        "metadata",
        "created_at",
        "last_accessed",
        "last_worker_id",
        "programs",
        "variables",
    }
)


def _check_session(
    index: int, session: object, types: TypeRegistry, wall: float, limits: Limits
) -> CheckedSession:
    if not isinstance(session, Mapping):
        raise InvalidArgument(f"a session must be a mapping, got {describe(session)}")
    unknown = [key for key in session if key not in _SESSION_KEYS]
    if unknown:
        raise InvalidArgument(f"unknown keys {', '.join(describe(k) for k in unknown)}")
    if "id" not in session:
        raise InvalidArgument("a session needs an id")
    session_id = check_id(session["id"], "session id")
    ttl_data = session.get("ttl", math.inf)
    ttl = check_ttl(decode_float(ttl_data) if type(ttl_data) is str else ttl_data)
    metadata = check_metadata(copy_mapping(session.get("metadata"), limits))
    created_at = _check_timestamp(session.get("created_at", wall), "created_at")
    last_accessed = _check_timestamp(session.get("last_accessed", created_at), "last_accessed")
    worker = session.get("last_worker_id")
    last_worker_id = None if worker is None else check_id(worker, "worker id")
    programs = _check_programs(session.get("programs", {}), f"programs of {describe(session_id)}")
    variables = session.get("variables", ())
    if isinstance(variables, str | bytes) or not isinstance(variables, Sequence):
        raise InvalidArgument(f"variables must be a list, got {describe(variables)}")
    return CheckedSession(
        index,
        session_id,
        ttl,
        metadata,
        created_at,
        last_accessed,
        last_worker_id,
        programs,
        check_entries(variables, types, wall, limits),
    )


def _check_programs(programs: object, what: str) -> tuple[tuple[str, object], ...]:
    if not isinstance(programs, Mapping):
        raise InvalidArgument(f"{what} must be a mapping of id to data, got {describe(programs)}")
    checked: list[tuple[str, object]] = []
    for program_id, data in programs.items():
        check_id(program_id, "program id")
        try:
            checked.append((program_id, thaw(freeze(data))))
        except (TypeError, ValueError) as error:
            raise InvalidArgument(
                f"{what}: program {describe(program_id)} is not JSON-like: {error}"
            ) from None
    return tuple(checked)
