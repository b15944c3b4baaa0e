"""Checking import entries: everything about an entry that does not depend on the session.

An import is all or nothing, and checking a large one costs time in proportion
to its size: every value goes through its type. So the checks that need only
the entry itself (its keys, id, name, type, constraints, value, metadata,
version, timestamps, and that no id or name appears twice) run before the
command reaches the actor, in the caller's task or thread; the actor adds only
what needs the session (that no id or name is taken there) and applies the
result in one short turn. In an event loop the checking goes in steps
(:class:`Checking`), giving the loop back every :data:`STEP` entries, so a large
import holds no one else's calls. Driven directly with raw entries, the
functional core runs the same checks itself.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Final, TypeVar

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
    exact_key,
    freeze,
    thaw,
)
from ._steps import Steps, run_now, run_yielding
from .errors import (
    InternalError,
    InvalidArgument,
    InvalidConstraint,
    InvalidImport,
    SessionStoreError,
    ValidationError,
    describe,
)
from .model import Variable, build_variable
from .types import CompiledConstraints, TypeRegistry, TypeSpec

__all__ = [
    "EXPORT_KEYS",
    "ID_COUNTER",
    "STEP",
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "CheckedImport",
    "CheckedSession",
    "CheckedStore",
    "Checking",
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


ID_COUNTER: Final = re.compile(r"_(\d+)\Z")
"""The number at the end of an id like ``var_x_12``: the store's next generated id
must be above every imported one."""

STEP: Final = 64
"""Entries checked between two yields to the event loop: about half a millisecond."""

T = TypeVar("T")


@attrs.frozen(weakref_slot=False)
class CheckedImport:
    """Import entries after the checks that need no session.

    ``variables`` holds each good entry with its index (revision 0, to be given
    when applied: until then the variables are this object's alone);
    ``errors`` maps each faulty entry's index to what is wrong; ``rejections``
    are the type failures among them, for the rejection counter.
    ``type_counts`` says how many good entries each type has, and
    ``max_id_number`` is the largest number ending a good entry's id.
    """

    variables: tuple[tuple[int, Variable], ...]
    errors: Mapping[int, str]
    rejections: tuple[Rejection, ...]
    type_counts: tuple[tuple[str, int], ...] = ()
    max_id_number: int = 0


class Checking:
    """A check still to run, in steps: what a command carries until the store's
    event loop has run it (:meth:`run`), yielding between steps."""

    __slots__ = ("steps",)

    def __init__(self, steps: Steps[object]) -> None:
        self.steps = steps

    async def run(self) -> object:
        """The check's result, the loop given back after every step."""
        return await run_yielding(self.steps)


def prepare_import(
    exported: object,
    types: TypeRegistry | None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    in_steps: bool = False,
) -> object:
    """The entries checked before they reach the actor, if this side knows the store's
    types; else a copy for the side that does (a remote client sends them to the
    server, which checks them).

    ``in_steps``: for a caller in the store's event loop, a :class:`Checking` that
    the store runs before it sends the command. The entries are read as the
    check reaches them; the caller must not change them until the call returns.
    """
    if isinstance(exported, str | bytes) or not isinstance(exported, Sequence):
        return exported  # the handler refuses it, naming it
    if types is None:
        return copy_value(exported, limits)
    steps = _refusing(
        entries_steps(tuple(exported), types, time.time(), limits), "import_variables"
    )
    return Checking(steps) if in_steps else run_now(steps)


def _refusing(steps: Steps[T], operation: str) -> Steps[T | Refused]:
    """The check's result, or what it raised as :class:`Refused` for the handler to raise
    (so the error is the call's, counted and traced like any other)."""
    try:
        return (yield from steps)
    except InvalidImport as error:
        return Refused(error)
    except Exception as error:  # a bug in a user type (from_json, check...)
        failure = InternalError(operation, error)
        failure.__cause__ = error
        return Refused(failure)


def check_entries(
    entries: Sequence[object], types: TypeRegistry, wall: float, limits: Limits = DEFAULT_LIMITS
) -> CheckedImport:
    """Check every entry on its own and against the others; see :class:`CheckedImport`."""
    return run_now(entries_steps(entries, types, wall, limits))


def entries_steps(
    entries: Sequence[object], types: TypeRegistry, wall: float, limits: Limits = DEFAULT_LIMITS
) -> Steps[CheckedImport]:
    """:func:`check_entries` in steps of :data:`STEP` entries."""
    if len(entries) > limits.max_items:
        raise InvalidImport(
            {}, f"import has {len(entries)} entries, more than the limit of {limits.max_items}"
        )
    good: list[tuple[int, Variable]] = []
    errors: dict[int, str] = {}
    rejections: list[Rejection] = []
    ids: set[str] = set()
    names: set[str] = set()
    compiled: dict[tuple[str, object], CompiledConstraints] = {}
    type_counts: dict[str, int] = {}
    max_id_number = 0
    for index, entry in enumerate(entries):
        if index and not index % STEP:
            yield
        try:
            variable = _check_entry(entry, types, wall, limits, rejections, compiled)
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
        type_counts[variable.type] = type_counts.get(variable.type, 0) + 1
        number = ID_COUNTER.search(variable.id)
        if number is not None and len(number.group(1)) < 20:  # a count, not a 1000-digit id
            max_id_number = max(max_id_number, int(number.group(1)))
    return CheckedImport(
        tuple(good), errors, tuple(rejections), tuple(type_counts.items()), max_id_number
    )


def _constraints(
    spec: TypeSpec,
    raw: object,
    types: TypeRegistry,
    compiled: dict[tuple[str, object], CompiledConstraints],
) -> CompiledConstraints:
    """The entry's constraints compiled, once per distinct constraints in one import
    (the key is exact: it tells 1 from 1.0 and True, see exact_key)."""
    if raw is not None and type(raw) is not FrozenMap:
        return types.constraints_from_json(spec, raw)  # refused, naming it
    key = (spec.name, exact_key(raw))
    found = compiled.get(key)
    if found is None:
        compiled[key] = found = types.constraints_from_json(spec, raw)
    return found


def _check_entry(
    entry: object,
    types: TypeRegistry,
    wall: float,
    limits: Limits,
    rejections: list[Rejection],
    compiled: dict[tuple[str, object], CompiledConstraints],
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
    constraints = _constraints(spec, raw_constraints, types, compiled)
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
    return build_variable(
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
    data: object,
    types: TypeRegistry | None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    in_steps: bool = False,
) -> object:
    """A whole-store import checked before it reaches the actor, if this side knows the
    store's types; else a copy for the side that does (see :func:`prepare_import`)."""
    if types is None:
        return copy_value(data, limits)
    steps = _refusing(store_steps(data, types, time.time(), limits), "import_store")
    return Checking(steps) if in_steps else run_now(steps)


def check_store(
    data: object, types: TypeRegistry, wall: float, limits: Limits = DEFAULT_LIMITS
) -> CheckedStore:
    """Check what ``export_store`` gave (also after a JSON round trip), all of it."""
    return run_now(store_steps(data, types, wall, limits))


def store_steps(
    data: object, types: TypeRegistry, wall: float, limits: Limits = DEFAULT_LIMITS
) -> Steps[CheckedStore]:
    """:func:`check_store` in steps (of :data:`STEP` sessions, or variables)."""
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
    sessions_data = tuple(sessions_data)
    total = sum(len(_variables_of(session)) for session in sessions_data)
    if len(sessions_data) + total > limits.max_items:
        raise InvalidImport(
            {},
            f"store data holds {len(sessions_data)} sessions and {total} variables, "
            f"more than the limit of {limits.max_items} items",
        )
    sessions: list[CheckedSession] = []
    errors: dict[int, str] = {}
    seen: set[str] = set()
    since_yield = 0  # sessions and variables checked since the loop was last given back
    for index, session in enumerate(sessions_data):
        since_yield += 1 + len(_variables_of(session))
        if since_yield >= STEP:
            yield
            since_yield = 0
        try:
            checked = yield from _session_steps(index, session, types, wall, limits)
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


def _variables_of(session: object) -> Sequence[object]:
    """A session's variable entries, if it has a list of them (else none: the session's
    own check names what is wrong)."""
    if isinstance(session, Mapping):
        variables = session.get("variables", ())
        if not isinstance(variables, str | bytes) and isinstance(variables, Sequence):
            return variables
    return ()


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


def _session_steps(
    index: int, session: object, types: TypeRegistry, wall: float, limits: Limits
) -> Steps[CheckedSession]:
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
        (yield from entries_steps(variables, types, wall, limits)),
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
