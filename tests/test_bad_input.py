"""Bad input for every public call of ``SessionStore`` (SPEC §3-§6).

SPEC §6: "Bad input of any kind gets one of these, with a message that names the
offending value, and leaves the store exactly as it was." Each case below names the
exact ``SessionStoreError`` subclass it must raise (``.notes/decisions.md`` says
which one where SPEC is silent), the text its message must contain, the attributes
it must carry, and checks that a snapshot of the whole store is the same before and
after the failed call.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio
import attrs
import pytest
from conftest import AnyStore, FakeClock, has_wire_form
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sessionactor import (
    AtomicUpdateError,
    CallTimeout,
    ConstraintViolation,
    InternalError,
    InvalidArgument,
    InvalidConstraint,
    InvalidImport,
    ProgramNotFound,
    RemoteSessionStore,
    Session,
    SessionNotFound,
    SessionStore,
    SessionStoreError,
    StoreClosed,
    UnknownType,
    ValidationError,
    Variable,
    VariableExists,
    VariableNotFound,
    VersionConflict,
)

# --------------------------------------------------------------------------
# The populated store every case runs against

SID = "alpha"  # the session most cases poke at
OTHER = "beta"  # a second session, the target of imports
GHOST = "ghost-session"  # a valid id that names no session
NEW = "brand-new-session"  # a valid id a failing call must not create
GLOBAL_PROGRAM_IDS = ("gprog", "noprog")  # looked up by the snapshot

# name, type, initial value, constraints
VARIABLES: tuple[tuple[str, str, object, Mapping[str, object] | None], ...] = (
    ("temperature", "float", 0.5, {"min": 0.0, "max": 1.0}),
    ("count", "integer", 5, {"min": 0, "max": 100}),
    ("label", "string", "abc", {"min_length": 3, "max_length": 5, "pattern": "^a"}),
    ("color", "string", "a", {"enum": ["a", "b"]}),
    ("flag", "boolean", True, None),
    ("mode", "choice", "fast", {"choices": ["fast", "slow"]}),
    ("mod", "module", "json", {"allowed_modules": ["json", "math"]}),
    ("vec", "embedding", [1.0, 2.0, 3.0], {"dimensions": 3}),
    ("grid", "tensor", {"shape": [2, 2], "data": [[1, 2], [3, 4]]}, {"shape": [2, 2]}),
)


@attrs.frozen
class Env:
    store: AnyStore
    ids: Mapping[str, str]  # variable name -> id ("other" lives in OTHER, the rest in SID)


async def populate(store: AnyStore) -> Env:
    await store.create_session(SID, ttl=600, metadata={"owner": "tests", "tags": ["a", "b"]})
    await store.create_session(OTHER)
    ids: dict[str, str] = {}
    for name, type_name, value, constraints in VARIABLES:
        ids[name] = await store.register_variable(
            SID, name, type_name, value, constraints=constraints, metadata={"unit": "u"}
        )
    ids["other"] = await store.register_variable(OTHER, "other", "integer", 1)
    await store.update_variable(SID, "count", 6)  # so versions differ between variables
    await store.store_worker_session(SID, "worker-1")
    await store.store_program(SID, "prog1", {"code": "x = 1", "args": [1, 2]})
    await store.store_global_program("gprog", {"g": [1, 2, 3]})
    return Env(store, ids)


async def snapshot(env: Env) -> dict[str, object]:
    """Everything a caller can see of the store, minus what reading it changes.

    ``get_session`` touches, so ``last_accessed`` is left out; ``commands_processed``
    and ``mailbox_depth`` count the snapshot's own calls.
    """
    store = env.store
    sessions: dict[str, object] = {}
    for sid in sorted(await store.list_sessions()):
        session = await store.get_session(sid)
        programs: dict[str, object] = {}
        for program_id in session.program_ids:
            programs[program_id] = await store.get_program(sid, program_id)
        sessions[sid] = {
            "id": session.id,
            "created_at": session.created_at,
            "ttl": session.ttl,
            "metadata": dict(session.metadata),
            "last_worker_id": session.last_worker_id,
            "variable_count": session.variable_count,
            "program_ids": tuple(session.program_ids),
            "total_variable_updates": session.total_variable_updates,
            "programs": programs,
            "exported": await store.export_variables(sid),
            "listed": [attrs.asdict(var, recurse=False) for var in await store.list_variables(sid)],
        }
    stats = await store.get_stats()
    global_programs: dict[str, object] = {}
    for program_id in GLOBAL_PROGRAM_IDS:
        try:
            global_programs[program_id] = await store.get_global_program(program_id)
        except ProgramNotFound:
            global_programs[program_id] = "<missing>"
    return {
        "sessions": sessions,
        "global_programs": global_programs,
        "stats": {
            "sessions_created": stats.sessions_created,
            "sessions_deleted": stats.sessions_deleted,
            "sessions_expired": stats.sessions_expired,
            "cleanup_runs": stats.cleanup_runs,
            "current_sessions": stats.current_sessions,
            "current_variables": stats.current_variables,
            "global_programs": stats.global_programs,
        },
    }


@pytest.fixture
async def env(store: AnyStore) -> Env:
    return await populate(store)


# --------------------------------------------------------------------------
# Case tables

Call = Callable[[Env], Awaitable[object]]


@attrs.frozen
class Bad:
    """One failing call: the exact error class, text its message must hold, its attributes."""

    call: Call
    error: type[SessionStoreError]
    names: tuple[str, ...] = ()  # str(error) must contain at least one of these
    attributes: Mapping[str, object] = attrs.field(factory=dict)
    message: str | None = None  # str(error) must be exactly this (SPEC §5 messages)
    import_errors: frozenset[int] | None = None  # InvalidImport.errors keys
    atomic_errors: Mapping[str, type[SessionStoreError]] | None = None  # AtomicUpdateError
    # The bad value has no wire form (an object, a set, an int past 4300 digits): a
    # remote store refuses the call with InvalidArgument before sending it, by design.
    unsendable: bool = False


def safe_repr(value: object) -> str:
    try:
        return repr(value)
    except ValueError:  # ints past sys.get_int_max_str_digits()
        return f"<{type(value).__name__}>"


def tokens(bad: object) -> tuple[str, ...]:
    """Texts any one of which shows that a message names ``bad``."""
    if isinstance(bad, str) and not bad:
        return ("''", '""', "empty")
    found = [safe_repr(bad)[:40]]
    if isinstance(bad, str):
        found.append(bad[:40])
    if isinstance(bad, list):  # the store freezes lists into tuples before it looks at them
        found.append(safe_repr(tuple(bad))[:40])
    return tuple(found)


# Values that are not str at all; each must be rejected before it reaches a table.
WRONG_TYPES: tuple[tuple[str, object], ...] = (
    ("None", None),
    ("int", 12345),
    ("float", 1.5),
    ("bool", True),
    ("bytes", b"bytes-id"),
    ("list", ["list-id"]),
    ("dict", {"dict": "id"}),
    ("object", object()),
)
BAD_IDS = (*WRONG_TYPES, ("empty", ""), ("257-chars", "s" * 257))
BAD_NAMES = (
    *WRONG_TYPES,
    ("empty", ""),
    ("129-chars", "n" * 129),
    ("star", "temp_*"),
    ("question", "temp?"),
    ("only-star", "*"),
)
BAD_IDENTIFIERS = (*WRONG_TYPES, ("empty", ""), ("257-chars", "i" * 257))


def hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def session_id_calls(sid: Any) -> dict[str, Call]:
    """Every call that takes a session id, with ``sid`` and otherwise valid arguments."""
    return {
        "create_session": lambda e: e.store.create_session(sid),
        "get_session": lambda e: e.store.get_session(sid),
        "update_session": lambda e: e.store.update_session(sid, metadata={"k": 1}),
        "delete_session": lambda e: e.store.delete_session(sid),
        "session_exists": lambda e: e.store.session_exists(sid),
        "store_worker_session": lambda e: e.store.store_worker_session(sid, "worker-2"),
        "store_program": lambda e: e.store.store_program(sid, "p2", {"x": 1}),
        "get_program": lambda e: e.store.get_program(sid, "prog1"),
        "delete_program": lambda e: e.store.delete_program(sid, "prog1"),
        "register_variable": lambda e: e.store.register_variable(sid, "fresh", "float", 0.5),
        "get_variable": lambda e: e.store.get_variable(sid, "temperature"),
        "get_variable_value": lambda e: e.store.get_variable_value(sid, "temperature", "dflt"),
        "update_variable": lambda e: e.store.update_variable(sid, "temperature", 0.75),
        "list_variables": lambda e: e.store.list_variables(sid),
        "delete_variable": lambda e: e.store.delete_variable(sid, "temperature"),
        "has_variable": lambda e: e.store.has_variable(sid, "temperature"),
        "get_variables": lambda e: e.store.get_variables(sid, ["temperature"]),
        "update_variables": lambda e: e.store.update_variables(sid, {"temperature": 0.75}),
        "export_variables": lambda e: e.store.export_variables(sid),
        "import_variables": lambda e: e.store.import_variables(sid, []),
    }


def identifier_calls(ident: Any) -> dict[str, Call]:
    """Every call that takes one identifier, in session SID."""
    return {
        "get_variable": lambda e: e.store.get_variable(SID, ident),
        "get_variable_value": lambda e: e.store.get_variable_value(SID, ident, "dflt"),
        "update_variable": lambda e: e.store.update_variable(SID, ident, 0.75),
        "delete_variable": lambda e: e.store.delete_variable(SID, ident),
        "has_variable": lambda e: e.store.has_variable(SID, ident),
        "get_variables": lambda e: e.store.get_variables(SID, ["temperature", ident]),
    }


def program_id_calls(pid: Any) -> dict[str, Call]:
    return {
        "store_program": lambda e: e.store.store_program(SID, pid, {"x": 1}),
        "get_program": lambda e: e.store.get_program(SID, pid),
        "delete_program": lambda e: e.store.delete_program(SID, pid),
        "store_global_program": lambda e: e.store.store_global_program(pid, {"x": 1}),
        "get_global_program": lambda e: e.store.get_global_program(pid),
        "delete_global_program": lambda e: e.store.delete_global_program(pid),
    }


def metadata_calls(meta: Any) -> dict[str, Call]:
    """Every call that takes a metadata mapping."""
    return {
        "create_session(new)": lambda e: e.store.create_session(NEW, metadata=meta),
        "create_session(existing)": lambda e: e.store.create_session(SID, metadata=meta),
        "update_session": lambda e: e.store.update_session(SID, metadata=meta),
        "register_variable": lambda e: e.store.register_variable(
            SID, "fresh", "float", 0.5, metadata=meta
        ),
        "update_variable": lambda e: e.store.update_variable(SID, "temperature", 0.75, meta),
        "update_variables": lambda e: e.store.update_variables(
            SID, {"temperature": 0.75}, metadata=meta
        ),
        "update_variables(atomic)": lambda e: e.store.update_variables(
            SID, {"temperature": 0.75}, atomic=True, metadata=meta
        ),
    }


def ttl_calls(ttl: Any) -> dict[str, Call]:
    return {
        "create_session(new)": lambda e: e.store.create_session(NEW, ttl=ttl),
        "create_session(existing)": lambda e: e.store.create_session(SID, ttl=ttl),
        "update_session": lambda e: e.store.update_session(SID, ttl=ttl),
    }


def cyclic_list() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


BAD_METADATA: tuple[tuple[str, object, tuple[str, ...]], ...] = (
    ("str", "meta-string", ("meta-string",)),
    ("int", 12345, ("12345",)),
    ("list", ["k", "v"], ("['k', 'v']", "('k', 'v')")),
    ("int-key", {98765: "v"}, ("98765",)),
    ("none-key", {None: "v"}, ("None",)),
    ("object-value", {"k": object()}, ("<object object", "object")),
    ("bytes-value", {"k": b"raw-bytes"}, ("b'raw-bytes'", "bytes")),
    ("set-value", {"k": {1, 2}}, ("{1, 2}", "set")),
    ("nested-object", {"k": {"deeper": [1, object()]}}, ("<object object", "object")),
    ("too-deep", {"k": nested(100)}, ("64", "deep", "nest")),
    ("cyclic", {"k": cyclic_list()}, ("64", "deep", "nest", "cycl", "recurs")),
    ("half-good", {"good": 1, "bad": object()}, ("<object object", "object")),
)

BAD_TTLS: tuple[tuple[str, object], ...] = (
    ("zero", 0),
    ("zero-float", 0.0),
    ("minus-one", -1),
    ("negative-float", -0.5),
    ("nan", math.nan),
    ("minus-inf", -math.inf),
    ("str", "10"),
    ("true", True),
    ("false", False),
    ("list", [10]),
    ("bytes", b"10"),
    ("object", object()),
)


def build_cases() -> list[Any]:
    cases: list[Any] = []

    def add(case_id: str, bad: Bad, *values: object) -> None:
        """One case; ``values`` are the bad values it passes (do they have a wire form?)."""
        if not all(has_wire_form(value) for value in values):
            bad = attrs.evolve(bad, unsendable=True)
        cases.append(pytest.param(bad, id=case_id))

    # Session ids: not a str, empty, longer than 256 (SPEC §3) -> InvalidArgument.
    for label, bad in BAD_IDS:
        for call_name, call in session_id_calls(bad).items():
            add(f"session_id-{label}-{call_name}", Bad(call, InvalidArgument, tokens(bad)), bad)

    # Unknown sessions (decisions: any variable call on a missing session -> SessionNotFound).
    ghost_calls = session_id_calls(GHOST)
    for call_name in (
        "get_session",
        "update_session",
        "store_program",
        "get_program",
        "register_variable",
        "get_variable",
        "update_variable",
        "list_variables",
        "delete_variable",
        "get_variables",
        "update_variables",
        "export_variables",
        "import_variables",
    ):
        add(
            f"unknown-session-{call_name}",
            Bad(ghost_calls[call_name], SessionNotFound, tokens(GHOST), {"session_id": GHOST}),
        )
    add(
        "unknown-session-update_variables(atomic)",
        Bad(
            lambda e: e.store.update_variables(GHOST, {"temperature": 0.75}, atomic=True),
            SessionNotFound,
            tokens(GHOST),
            {"session_id": GHOST},
        ),
    )
    add(
        "unknown-session-import_variables(valid-entries)",
        Bad(
            lambda e: e.store.import_variables(GHOST, base_entries()),
            SessionNotFound,
            tokens(GHOST),
            {"session_id": GHOST},
        ),
    )

    # Identifiers: not a str, empty, longer than 256 -> InvalidArgument (decisions).
    for label, bad in BAD_IDENTIFIERS:
        for call_name, call in identifier_calls(bad).items():
            add(f"identifier-{label}-{call_name}", Bad(call, InvalidArgument, tokens(bad)), bad)

    # Unknown identifiers -> VariableNotFound(session_id, identifier).
    for label, ident in (
        ("unknown-name", "nope"),
        ("unknown-id", "var_nope_999999"),
        ("name-in-other-session", "other"),
        ("a-glob", "temp*"),
    ):
        for call_name in ("get_variable", "update_variable", "delete_variable"):
            add(
                f"{label}-{call_name}",
                Bad(
                    identifier_calls(ident)[call_name],
                    VariableNotFound,
                    tokens(ident),
                    {"session_id": SID, "identifier": ident},
                ),
            )
    add(
        "id-in-other-session-get_variable",
        Bad(
            lambda e: e.store.get_variable(SID, e.ids["other"]),
            VariableNotFound,
            ("var_other",),
            {"session_id": SID},
        ),
    )

    # Variable names (SPEC §4: non-empty str, <= 128, no * or ?) -> InvalidArgument.
    for label, bad in BAD_NAMES:
        add(
            f"name-{label}-register_variable",
            Bad(register(name=bad), InvalidArgument, tokens(bad)),
            bad,
        )
    add(
        "name-taken-register_variable",
        Bad(register(name="temperature"), VariableExists, tokens("temperature")),
    )
    add(
        "name-taken-other-type-register_variable",
        Bad(
            register(name="count", type_name="string", value="abc"),
            VariableExists,
            tokens("count"),
        ),
    )

    # Types (SPEC §4: unknown -> UnknownType(type_name)).
    for label, bad in (
        ("unknown", "nosuch"),
        ("wrong-case", "FLOAT"),
        ("padded", " float"),
        ("empty", ""),
        ("None", None),
        ("int", 12345),
        ("bytes", b"float"),
        ("list", ["float"]),
        ("object", object()),
    ):
        add(
            f"type-{label}-register_variable",
            Bad(register(type_name=bad), UnknownType, tokens(bad), {"type_name": bad}),
            bad,
        )

    # Constraints (SPEC §5; decisions) -> InvalidConstraint.
    for label, type_name, value, constraints, names in BAD_CONSTRAINTS:
        add(
            f"constraints-{label}",
            Bad(
                register(type_name=type_name, value=value, constraints=constraints),
                InvalidConstraint,
                names,
            ),
            constraints,
        )

    # Values that do not fit their type or constraints, on register and on update.
    for label, var_name, value, error, message in BAD_VALUES:
        type_name, constraints = VARIABLE_SPECS[var_name]
        add(
            f"value-{label}-register_variable",
            Bad(
                register(type_name=type_name, value=value, constraints=constraints),
                error,
                message=message,
            ),
            value,
        )
        add(
            f"value-{label}-update_variable",
            Bad(update(var_name, value), error, message=message),
            value,
        )
        add(
            f"value-{label}-update_variables(atomic)",
            Bad(
                update_many({"temperature": 0.25, var_name: value}, atomic=True),
                AtomicUpdateError,
                atomic_errors={var_name: error},
            ),
            value,
        )

    # Metadata (decisions: str keys, JSON-like values, nesting <= 64) -> InvalidArgument.
    for label, meta, names in BAD_METADATA:
        for call_name, call in metadata_calls(meta).items():
            # Refused when the call is made, before any wire: the same error either way.
            add(f"metadata-{label}-{call_name}", Bad(call, InvalidArgument, names))
    for label, description in (("object", object()), ("bytes", b"desc"), ("set", {"d"})):
        add(
            f"description-{label}-register_variable",
            Bad(
                register(description=description),
                InvalidArgument,
                (*tokens(description), type(description).__name__),
            ),
            description,
        )

    # ttl (decisions: positive int/float or inf) -> InvalidArgument.
    for label, ttl in BAD_TTLS:
        for call_name, call in ttl_calls(ttl).items():
            add(f"ttl-{label}-{call_name}", Bad(call, InvalidArgument, tokens(ttl)), ttl)

    # Worker ids (decisions: like session ids) -> InvalidArgument.
    for label, bad in BAD_IDS:
        add(
            f"worker_id-{label}-existing-session",
            Bad(worker(SID, bad), InvalidArgument, tokens(bad)),
            bad,
        )
        add(
            f"worker_id-{label}-new-session",
            Bad(worker(NEW, bad), InvalidArgument, tokens(bad)),
            bad,
        )

    # Program ids -> InvalidArgument; missing programs -> ProgramNotFound.
    for label, bad in BAD_IDS:
        for call_name, call in program_id_calls(bad).items():
            add(f"program_id-{label}-{call_name}", Bad(call, InvalidArgument, tokens(bad)), bad)
    add(
        "unknown-program-get_program",
        Bad(lambda e: e.store.get_program(SID, "noprog"), ProgramNotFound, tokens("noprog")),
    )
    add(
        "program-of-other-session-get_program",
        Bad(lambda e: e.store.get_program(OTHER, "prog1"), ProgramNotFound, tokens("prog1")),
    )
    add(
        "unknown-program-get_global_program",
        Bad(lambda e: e.store.get_global_program("noprog"), ProgramNotFound, tokens("noprog")),
    )
    # Program data that cannot be deep-copied -> InvalidArgument (decisions).
    for label, call in (
        ("store_program(new)", lambda e: e.store.store_program(SID, "p2", uncopyable())),
        ("store_program(replace)", lambda e: e.store.store_program(SID, "prog1", uncopyable())),
        ("store_global_program(new)", lambda e: e.store.store_global_program("g2", uncopyable())),
        (
            "store_global_program(replace)",
            lambda e: e.store.store_global_program("gprog", uncopyable()),
        ),
    ):
        add(f"program-data-uncopyable-{label}", Bad(call, InvalidArgument, ("lock",)))

    # list_variables pattern: a non-str -> InvalidArgument (SPEC §4).
    for label, pattern in (
        ("int", 12345),
        ("bytes", b"temp*"),
        ("list", ["*"]),
        ("dict", {"*": 1}),
        ("object", object()),
        ("true", True),
    ):
        add(
            f"pattern-{label}-list_variables",
            Bad(list_vars(pattern), InvalidArgument, tokens(pattern)),
            pattern,
        )

    # get_variables identifiers: a str, not iterable, a non-str element (decisions).
    for label, idents, names in (
        ("a-str", "temperature", ("'temperature'", "str")),
        ("int", 12345, ("12345",)),
        ("None", None, ("None",)),
        ("object", object(), ("<object object",)),
        ("int-element", ["temperature", 12345], ("12345",)),
        ("bytes-element", ["temperature", b"count"], ("b'count'",)),
        ("None-element", [None], ("None",)),
        ("bytes", b"temperature", ("b'temperature'", "bytes")),
    ):
        add(
            f"identifiers-{label}-get_variables",
            Bad(get_many(idents), InvalidArgument, names),
            idents,
        )

    # update_variables updates: not a Mapping, or a non-str key -> InvalidArgument (decisions).
    for label, updates, names in (
        ("list-of-pairs", [("temperature", 0.75)], ("[('temperature', 0.75)]", "list")),
        ("str", "temperature", ("'temperature'",)),
        ("None", None, ("None",)),
        ("int", 12345, ("12345",)),
        ("object", object(), ("<object object",)),
        ("int-key", {"temperature": 0.75, 12345: 0.5}, ("12345",)),
        ("None-key", {None: 0.5}, ("None",)),
        ("bytes-key", {b"temperature": 0.5}, ("b'temperature'",)),
    ):
        for atomic in (False, True):
            add(
                f"updates-{label}-update_variables(atomic={atomic})",
                Bad(update_many(updates, atomic=atomic), InvalidArgument, names),
                updates,
            )

    # Atomic batches: anything failing -> AtomicUpdateError, nothing applied (SPEC §4).
    add(
        "atomic-unknown-identifier",
        Bad(
            update_many({"temperature": 0.75, "nope": 1}, atomic=True),
            AtomicUpdateError,
            ("nope",),
            atomic_errors={"nope": VariableNotFound},
        ),
    )
    add(
        "atomic-two-keys-one-variable",
        Bad(
            lambda e: e.store.update_variables(
                SID, {"temperature": 0.25, e.ids["temperature"]: 0.75}, atomic=True
            ),
            AtomicUpdateError,
            ("var_temperature",),
            atomic_errors={"<id of temperature>": InvalidArgument},
        ),
    )
    add(
        "atomic-many-failures",
        Bad(
            update_many({"temperature": 7.0, "count": "many", "flag": True}, atomic=True),
            AtomicUpdateError,
            atomic_errors={"temperature": ConstraintViolation, "count": ValidationError},
        ),
    )

    # An identifier key that is a str but not a valid identifier fails for that key only.
    for label, key in (("empty", ""), ("257-chars", "k" * 257)):
        add(
            f"updates-key-{label}-update_variables(atomic)",
            Bad(
                update_many({"temperature": 0.25, key: 0.5}, atomic=True),
                AtomicUpdateError,
                atomic_errors={key: InvalidArgument},
            ),
        )

    # Options of the wrong kind (SPEC §6: bad input of any kind) -> InvalidArgument.
    for label, bad in (("str", "1"), ("bool", True), ("negative", -1), ("float", 1.5)):
        add(
            f"expected_version-{label}-update_variable",
            Bad(cas(expected_version=bad), InvalidArgument, tokens(bad)),
        )
    for label, bad, names in (
        ("list", [1], ("[1]", "(1,)")),
        ("str-version", {"temperature": "0"}, ("'0'",)),
        ("bool-version", {"temperature": True}, ("True",)),
        ("negative-version", {"temperature": -1}, ("-1",)),
    ):
        for atomic in (False, True):
            add(
                f"expected_versions-{label}-update_variables(atomic={atomic})",
                Bad(cas_many(bad, atomic=atomic), InvalidArgument, names),
            )
    for label, bad in (("str", "yes"), ("None", None)):
        add(
            f"atomic-{label}-update_variables",
            Bad(update_many({"temperature": 0.25}, atomic=bad), InvalidArgument, tokens(bad)),
        )

    # Compare-and-swap (SPEC §10) -> VersionConflict(expected, actual), nothing changes.
    add(
        "expected-version-update_variable",
        Bad(
            lambda e: e.store.update_variable(SID, "temperature", 0.75, expected_version=99),
            VersionConflict,
            ("99",),
            {"expected": 99},
        ),
    )
    add(
        "expected-versions-update_variables(atomic)",
        Bad(
            lambda e: e.store.update_variables(
                SID,
                {"temperature": 0.75, "count": 7},
                atomic=True,
                expected_versions={"count": 99},
            ),
            AtomicUpdateError,
            atomic_errors={"count": VersionConflict},
        ),
    )

    # Import (SPEC §4: checked in full, InvalidImport.errors keyed by entry index).
    for label, exported in (
        ("None", None),
        ("int", 12345),
        ("str", "entries"),
        ("bytes", b"entries"),
        ("dict", {"0": base_entries()[0]}),
        ("single-entry-dict", base_entries()[0]),
        ("object", object()),
    ):
        add(
            f"import-not-a-list-{label}",
            Bad(import_into(OTHER, exported), InvalidImport, import_errors=frozenset()),
            exported,
        )
    for label, entries, faulty, names in import_fault_cases():
        add(
            f"import-{label}",
            Bad(import_into(OTHER, entries), InvalidImport, names, import_errors=faulty),
            entries,
        )
    add(
        "import-name-already-in-session",
        Bad(
            import_into(OTHER, with_field(1, "name", "other")),
            InvalidImport,
            ("other",),
            import_errors=frozenset({1}),
        ),
    )
    add(
        "import-id-already-in-session",
        Bad(
            lambda e: e.store.import_variables(OTHER, with_field(2, "id", e.ids["other"])),
            InvalidImport,
            ("var_other",),
            import_errors=frozenset({2}),
        ),
    )
    add(
        "import-name-already-in-session-alpha",
        Bad(
            import_into(SID, with_field(0, "name", "temperature")),
            InvalidImport,
            ("temperature",),
            import_errors=frozenset({0}),
        ),
    )
    return cases


def register(
    *,
    name: Any = "fresh",
    type_name: Any = "float",
    value: Any = 0.5,
    constraints: Any = None,
    description: Any = None,
) -> Call:
    return lambda e: e.store.register_variable(
        SID, name, type_name, value, constraints=constraints, description=description
    )


def update(identifier: str, value: Any) -> Call:
    return lambda e: e.store.update_variable(SID, identifier, value)


def update_many(updates: Any, *, atomic: Any) -> Call:
    return lambda e: e.store.update_variables(SID, updates, atomic=atomic)


def get_many(identifiers: Any) -> Call:
    return lambda e: e.store.get_variables(SID, identifiers)


def list_vars(pattern: Any) -> Call:
    return lambda e: e.store.list_variables(SID, pattern)


def worker(sid: str, worker_id: Any) -> Call:
    return lambda e: e.store.store_worker_session(sid, worker_id)


def import_into(sid: str, exported: Any) -> Call:
    return lambda e: e.store.import_variables(sid, exported)


def cas(*, expected_version: Any) -> Call:
    return lambda e: e.store.update_variable(
        SID, "temperature", 0.25, expected_version=expected_version
    )


def cas_many(expected_versions: Any, *, atomic: bool) -> Call:
    return lambda e: e.store.update_variables(
        SID, {"temperature": 0.25}, atomic=atomic, expected_versions=expected_versions
    )


def uncopyable() -> dict[str, object]:
    return {"code": "x", "lock": threading.Lock()}


VARIABLE_SPECS: dict[str, tuple[str, Mapping[str, object] | None]] = {
    name: (type_name, constraints) for name, type_name, _, constraints in VARIABLES
}
INITIAL_VALUES: dict[str, object] = {name: value for name, _, value, _ in VARIABLES}

# label, variable (its type and constraints), bad value, error class, exact message (SPEC §5;
# None where SPEC gives no text)
BAD_VALUES: tuple[tuple[str, str, object, type[SessionStoreError], str | None], ...] = (
    ("float-str", "temperature", "hot", ValidationError, "must be a number"),
    ("float-None", "temperature", None, ValidationError, "must be a number"),
    ("float-bool", "temperature", True, ValidationError, "must be a number"),
    ("float-list", "temperature", [0.5], ValidationError, "must be a number"),
    ("float-above", "temperature", 1.5, ConstraintViolation, "value 1.5 is above maximum 1.0"),
    ("float-below", "temperature", -0.5, ConstraintViolation, "value -0.5 is below minimum 0.0"),
    ("float-nan", "temperature", math.nan, ConstraintViolation, None),
    ("float-NaN-str", "temperature", "NaN", ConstraintViolation, None),
    ("float-inf", "temperature", math.inf, ConstraintViolation, "value inf is above maximum 1.0"),
    ("integer-str", "count", "5", ValidationError, "must be an integer"),
    ("integer-bool", "count", False, ValidationError, "must be an integer"),
    ("integer-fraction", "count", 4.5, ValidationError, "must be a whole number, got 4.5"),
    ("integer-above", "count", 150, ConstraintViolation, "value 150 is above maximum 100"),
    ("integer-below", "count", -1, ConstraintViolation, "value -1 is below minimum 0"),
    # Past sys.get_int_max_str_digits() an int can be neither printed nor JSON-encoded,
    # so the integer type refuses it outright rather than store what export cannot give.
    (
        "integer-huge-above",
        "count",
        10**4300,
        ValidationError,
        "must be an integer of at most 3900 digits",
    ),
    (
        "integer-huge-below",
        "count",
        -(10**4300),
        ValidationError,
        "must be an integer of at most 3900 digits",
    ),
    ("float-huge-int", "temperature", 10**4300, ValidationError, "must be a number"),
    ("string-None", "label", None, ValidationError, "cannot be None"),
    ("string-int", "label", 5, ValidationError, "must be a string"),
    ("string-bytes", "label", b"abc", ValidationError, "must be a string"),
    ("string-short", "label", "ab", ConstraintViolation, "must be at least 3 characters, got 2"),
    (
        "string-long",
        "label",
        "abcdefghi",
        ConstraintViolation,
        "must be at most 5 characters, got 9",
    ),
    ("string-pattern", "label", "bcd", ConstraintViolation, "must match pattern: ^a"),
    ("string-enum", "color", "c", ConstraintViolation, "must be one of: a, b"),
    ("boolean-str", "flag", "yes", ValidationError, "must be a boolean (true or false)"),
    ("boolean-two", "flag", 2, ValidationError, "must be a boolean (true or false)"),
    ("boolean-None", "flag", None, ValidationError, "must be a boolean (true or false)"),
    ("choice-unknown", "mode", "medium", ConstraintViolation, "must be one of: fast, slow"),
    ("choice-int", "mode", 1, ValidationError, "must be a string"),
    (
        "module-not-allowed",
        "mod",
        "os",
        ConstraintViolation,
        "must be one of the allowed modules: json, math",
    ),
    ("embedding-str", "vec", "1,2,3", ValidationError, "must be a list of numbers"),
    ("embedding-mixed", "vec", [1.0, "x", 3.0], ValidationError, "must be a list of numbers"),
    ("embedding-dims", "vec", [1.0, 2.0], ConstraintViolation, "must have exactly 3 dimensions"),
    ("tensor-int", "grid", 5, ValidationError, "must be a tensor with shape and data"),
    (
        "tensor-no-data",
        "grid",
        {"shape": [2, 2]},
        ValidationError,
        "must be a tensor with shape and data",
    ),
    (
        "tensor-size",
        "grid",
        {"shape": [2, 2], "data": [1, 2, 3]},
        ValidationError,
        "data size doesn't match shape",
    ),
    (
        "tensor-shape",
        "grid",
        {"shape": [1, 4], "data": [1, 2, 3, 4]},
        ConstraintViolation,
        "shape must be [2, 2]",
    ),
)

# label, type, a valid initial value, bad constraints, texts naming the fault
BAD_CONSTRAINTS: tuple[tuple[str, str, object, object, tuple[str, ...]], ...] = (
    ("not-a-mapping-list", "float", 0.5, ["min", 0], ("'min', 0",)),
    ("not-a-mapping-str", "float", 0.5, "min=0", ("min=0",)),
    ("not-a-mapping-int", "float", 0.5, 12345, ("12345",)),
    ("not-a-mapping-object", "float", 0.5, object(), ("<object object", "object")),
    ("non-str-key", "float", 0.5, {98765: 1}, ("98765",)),
    ("float-unknown-key", "float", 0.5, {"minimum": 0}, ("minimum",)),
    ("float-min-str", "float", 0.5, {"min": "zero"}, ("zero",)),
    ("float-max-bool", "float", 0.5, {"max": True}, ("True",)),
    ("float-min-above-max", "float", 0.5, {"min": 7.5, "max": -3.25}, ("7.5", "-3.25")),
    ("integer-min-above-max", "integer", 5, {"min": 10, "max": 1}, ("10",)),
    ("integer-max-str", "integer", 5, {"max": "100"}, ("'100'",)),
    ("string-bad-regex", "string", "abc", {"pattern": "(unclosed"}, ("(unclosed",)),
    ("string-pattern-int", "string", "abc", {"pattern": 12345}, ("12345",)),
    ("string-min_length-negative", "string", "abc", {"min_length": -1}, ("-1",)),
    ("string-min_length-float", "string", "abc", {"min_length": 2.5}, ("2.5",)),
    (
        "string-min_length-above-max_length",
        "string",
        "abc",
        {"min_length": 5, "max_length": 2},
        ("5",),
    ),
    ("string-enum-str", "string", "a", {"enum": "ab"}, ("'ab'",)),
    ("string-enum-ints", "string", "a", {"enum": [1, 2]}, ("[1, 2]", "(1, 2)")),
    ("string-unknown-key", "string", "abc", {"regex": "^a"}, ("regex",)),
    ("boolean-any-key", "boolean", True, {"min": 0}, ("min",)),
    ("choice-str", "choice", "a", {"choices": "fast"}, ("'fast'",)),
    ("choice-ints", "choice", "a", {"choices": [1]}, ("[1]", "(1,)")),
    ("choice-unknown-key", "choice", "a", {"options": ["a"]}, ("options",)),
    ("module-str", "module", "json", {"allowed_modules": "json"}, ("'json'",)),
    ("embedding-dimensions-negative", "embedding", [1.0], {"dimensions": -1}, ("-1",)),
    ("embedding-dimensions-str", "embedding", [1.0], {"dimensions": "3"}, ("'3'",)),
    ("embedding-dimensions-float", "embedding", [1.0], {"dimensions": 2.5}, ("2.5",)),
    ("embedding-unknown-key", "embedding", [1.0], {"dims": 1}, ("dims",)),
    ("tensor-shape-str", "tensor", {"shape": [1], "data": [1]}, {"shape": "1"}, ("'1'",)),
    ("tensor-shape-negative", "tensor", {"shape": [1], "data": [1]}, {"shape": [-1]}, ("-1",)),
    ("tensor-shape-float", "tensor", {"shape": [1], "data": [1]}, {"shape": [1.5]}, ("1.5",)),
    ("tensor-unknown-key", "tensor", {"shape": [1], "data": [1]}, {"size": 1}, ("size",)),
)


# --------------------------------------------------------------------------
# Import entries

EXPORT_KEYS = (
    "id",
    "name",
    "type",
    "value",
    "constraints",
    "metadata",
    "version",
    "created_at",
    "updated_at",
)


def base_entries() -> list[dict[str, object]]:
    """Three valid entries, as export gives them (the positive control checks they import)."""
    return [
        {
            "id": "var_imp_a_900001",
            "name": "imp_a",
            "type": "float",
            "value": 0.25,
            "constraints": {"min": 0.0, "max": 1.0},
            "metadata": {"source": "python", "note": "a"},
            "version": 3,
            "created_at": 1_700_000_000.0,
            "updated_at": 1_700_000_050.0,
        },
        {
            "id": "var_imp_b_900002",
            "name": "imp_b",
            "type": "integer",
            "value": 7,
            "constraints": {"min": 0, "max": 10},
            "metadata": {"source": "python"},
            "version": 1,
            "created_at": 1_700_000_100.0,
            "updated_at": 1_700_000_100.0,
        },
        {
            "id": "var_imp_c_900003",
            "name": "imp_c",
            "type": "string",
            "value": "hello",
            "constraints": {},
            "metadata": {},
            "version": 2,
            "created_at": 1_700_000_200.0,
            "updated_at": 1_700_000_300.0,
        },
    ]


def with_field(index: int, key: str, value: object) -> list[dict[str, object]]:
    entries = base_entries()
    entries[index][key] = value
    return entries


def without_field(index: int, key: str) -> list[dict[str, object]]:
    entries = base_entries()
    del entries[index][key]
    return entries


def import_fault_cases() -> Iterable[tuple[str, object, frozenset[int], tuple[str, ...]]]:
    one = frozenset({1})
    for label, entry in (
        ("None", None),
        ("str", "entry"),
        ("int", 12345),
        ("list", ["imp_b", "integer", 7]),
    ):
        entries: list[object] = list(base_entries())
        entries[1] = entry
        yield f"entry-not-a-dict-{label}", entries, one, ()
    # SPEC §4 does not say which keys an entry may leave out; these four nothing can replace.
    for key in ("id", "name", "type", "value"):
        yield f"entry-missing-{key}", without_field(1, key), one, (key,)
    yield "entry-unknown-key", with_field(1, "colour", "red"), one, ("colour",)
    # Entry 1 is an integer variable with constraints min 0, max 10.
    for key, bad, names in (
        ("id", 12345, ("12345",)),
        ("id", None, ("None",)),
        ("id", "", ("''", "empty")),
        ("name", 12345, ("12345",)),
        ("name", None, ("None",)),
        ("name", "", ("''", "empty")),
        ("name", "imp_*", ("imp_*",)),
        ("name", "n" * 129, ("nnnnnnnnnn",)),
        ("type", 12345, ("12345",)),
        ("type", None, ("None",)),
        ("type", "nosuch", ("nosuch",)),
        ("value", "seven", ("must be an integer",)),
        ("value", 4.5, ("must be a whole number, got 4.5",)),
        ("value", 11, ("value 11 is above maximum 10",)),
        ("constraints", "min=0", ("min=0",)),
        ("constraints", 12345, ("12345",)),
        ("constraints", {"minimum": 0}, ("minimum",)),
        ("constraints", {"min": 10, "max": 0}, ("10",)),
        ("metadata", "meta", ("meta",)),
        ("metadata", 12345, ("12345",)),
        ("metadata", {98765: "v"}, ("98765",)),
        ("metadata", {"k": object()}, ("<object object", "object")),
        ("version", "3", ("'3'",)),
        ("version", None, ("None",)),
        ("version", 1.5, ("1.5",)),
        ("version", True, ("True",)),
        ("version", -1, ("-1",)),
        ("created_at", "yesterday", ("yesterday",)),
        ("created_at", None, ("None",)),
        ("created_at", [1.0], ("[1.0]", "(1.0,)")),
        ("updated_at", "today", ("today",)),
        ("updated_at", None, ("None",)),
    ):
        yield f"entry-bad-{key}-{safe_repr(bad)[:12]}", with_field(1, key, bad), one, names
    duplicate_name = with_field(1, "name", "imp_a")
    yield "duplicate-name-in-import", duplicate_name, one, ("imp_a",)
    duplicate_id = with_field(1, "id", "var_imp_a_900001")
    yield "duplicate-id-in-import", duplicate_id, one, ("var_imp_a_900001",)
    two_faults = base_entries()
    two_faults[0]["type"] = "nosuch"
    two_faults[2]["value"] = 12345
    yield "two-faulty-entries", two_faults, frozenset({0, 2}), ("nosuch",)
    yield (
        "value-violates-constraints-float",
        with_field(0, "value", 1.5),
        frozenset({0}),
        ("value 1.5 is above maximum 1.0",),
    )
    yield (
        "constraints-wrong-kind-for-type",
        with_field(2, "constraints", {"min": 0}),
        frozenset({2}),
        ("min",),
    )


# --------------------------------------------------------------------------
# The table-driven test


async def assert_fails_cleanly(env: Env, case: Bad) -> SessionStoreError:
    before = await snapshot(env)
    with pytest.raises(SessionStoreError) as info:
        await case.call(env)
    error = info.value
    if case.unsendable and isinstance(env.store, RemoteSessionStore):
        assert type(error) is InvalidArgument, error
        assert "cannot be sent to a remote store" in str(error), error
        assert await snapshot(env) == before, "a refused call changed the store"
        return error
    assert type(error) is case.error, f"expected {case.error.__name__}, got {error!r}"
    text = str(error)
    assert text
    if case.names:
        assert any(name in text for name in case.names), (
            f"message {text!r} names none of {case.names!r}"
        )
    if case.message is not None:
        assert text == case.message
        assert isinstance(error, ValidationError)
        assert error.message == case.message
    for attribute, expected in case.attributes.items():
        assert getattr(error, attribute) == expected, attribute
    if case.import_errors is not None:
        assert isinstance(error, InvalidImport)
        assert set(error.errors) == case.import_errors, error.errors
        assert all(isinstance(why, str) and why for why in error.errors.values())
        if case.names:
            details = " ".join(error.errors.values())
            assert any(name in details for name in case.names), (error.errors, case.names)
    if case.atomic_errors is not None:
        assert isinstance(error, AtomicUpdateError)
        expected_errors = {
            (env.ids["temperature"] if key == "<id of temperature>" else key): cls
            for key, cls in case.atomic_errors.items()
        }
        assert {key: type(err) for key, err in error.errors.items()} == expected_errors
    assert await snapshot(env) == before, "a failed call changed the store"
    return error


@pytest.mark.parametrize("case", build_cases())
async def test_bad_input_raises_its_error_and_changes_nothing(env: Env, case: Bad) -> None:
    await assert_fails_cleanly(env, case)


# --------------------------------------------------------------------------
# Missing things that are not errors: the documented answer, and nothing changes

NOT_ERRORS: tuple[tuple[str, Call, object], ...] = (
    ("delete_session-unknown", lambda e: e.store.delete_session(GHOST), None),
    ("session_exists-unknown", lambda e: e.store.session_exists(GHOST), False),
    (
        "get_variable_value-unknown-session",
        lambda e: e.store.get_variable_value(GHOST, "temperature", "dflt"),
        "dflt",
    ),
    (
        "get_variable_value-unknown-variable",
        lambda e: e.store.get_variable_value(SID, "nope", "dflt"),
        "dflt",
    ),
    (
        "get_variable_value-unknown-variable-no-default",
        lambda e: e.store.get_variable_value(SID, "nope"),
        None,
    ),
    ("has_variable-unknown-session", lambda e: e.store.has_variable(GHOST, "temperature"), False),
    ("has_variable-unknown-variable", lambda e: e.store.has_variable(SID, "nope"), False),
    ("has_variable-other-session", lambda e: e.store.has_variable(SID, "other"), False),
    ("delete_program-unknown", lambda e: e.store.delete_program(SID, "noprog"), None),
    ("delete_global_program-unknown", lambda e: e.store.delete_global_program("noprog"), None),
    ("list_variables-no-match", lambda e: e.store.list_variables(SID, "zz*"), []),
    ("import_variables-empty", lambda e: e.store.import_variables(OTHER, []), 0),
)


@pytest.mark.parametrize(
    ("call", "expected"), [pytest.param(call, want, id=label) for label, call, want in NOT_ERRORS]
)
async def test_missing_things_give_the_documented_answer_and_change_nothing(
    env: Env, call: Call, expected: object
) -> None:
    before = await snapshot(env)
    assert await call(env) == expected
    assert await snapshot(env) == before


async def test_get_variables_reports_unknown_identifiers_as_missing(env: Env) -> None:
    before = await snapshot(env)
    batch = await env.store.get_variables(SID, ["nope", "temperature", "nope", "other"])
    assert list(batch.found) == ["temperature"]
    assert batch.missing == ["nope", "other"]
    assert await snapshot(env) == before


async def test_non_atomic_batch_reports_each_failure_and_changes_nothing(env: Env) -> None:
    before = await snapshot(env)
    updates: dict[str, Any] = {"nope": 1, "count": 1000, "temperature": "hot", "flag": "yes"}
    result = await env.store.update_variables(SID, updates)
    assert list(result) == list(updates)
    kinds = {key: type(value) for key, value in result.items()}
    assert kinds == {
        "nope": VariableNotFound,
        "count": ConstraintViolation,
        "temperature": ValidationError,
        "flag": ValidationError,
    }
    nope = result["nope"]
    assert isinstance(nope, VariableNotFound)
    assert (nope.session_id, nope.identifier) == (SID, "nope")
    assert str(result["count"]) == "value 1000 is above maximum 100"
    assert await snapshot(env) == before


async def test_non_atomic_batch_applies_good_keys_and_rejects_a_second_key_for_one_variable(
    env: Env,
) -> None:
    before = await env.store.get_variable(SID, "temperature")
    temperature_id = env.ids["temperature"]
    result = await env.store.update_variables(SID, {"temperature": 0.25, temperature_id: 0.75})
    first = result["temperature"]
    assert isinstance(first, Variable)
    assert first.value == 0.25
    assert type(result[temperature_id]) is InvalidArgument
    after = await env.store.get_variable(SID, "temperature")
    assert (after.value, after.version) == (0.25, before.version + 1)


async def test_version_conflict_carries_expected_and_actual(env: Env) -> None:
    current = (await env.store.get_variable(SID, "count")).version
    before = await snapshot(env)
    with pytest.raises(VersionConflict) as info:
        await env.store.update_variable(SID, "count", 7, expected_version=current + 5)
    assert (info.value.expected, info.value.actual) == (current + 5, current)
    assert str(current + 5) in str(info.value)
    assert await snapshot(env) == before


async def test_the_import_fixture_itself_is_valid(env: Env) -> None:
    """Positive control: each fault case above differs from this in one place only."""
    assert await env.store.import_variables(OTHER, base_entries()) == 3
    names = [var.name for var in await env.store.list_variables(OTHER)]
    assert names == ["other", "imp_a", "imp_b", "imp_c"]
    imported = await env.store.get_variable(OTHER, "var_imp_a_900001")
    assert (imported.name, imported.version, imported.value) == ("imp_a", 3, 0.25)


async def test_the_import_fixture_is_valid_after_a_json_round_trip(env: Env) -> None:
    entries = json.loads(json.dumps(base_entries(), allow_nan=False))
    assert await env.store.import_variables(OTHER, tuple(entries)) == 3


async def test_limits_are_inclusive(env: Env) -> None:
    """The exact limits are accepted, so the bad cases above fail for the right reason."""
    store = env.store
    long_sid = "s" * 256
    await store.create_session(long_sid)
    assert await store.session_exists(long_sid)
    long_name = "n" * 128
    var_id = await store.register_variable(long_sid, long_name, "float", 0.5)
    assert (await store.get_variable(long_sid, long_name)).id == var_id
    await store.store_worker_session(long_sid, "w" * 256)
    await store.store_program(long_sid, "p" * 256, {"x": 1})
    assert await store.get_program(long_sid, "p" * 256) == {"x": 1}
    odd_name = "a.b-c[d]{e}+(f)"
    await store.register_variable(long_sid, odd_name, "float", 0.5)
    assert await store.has_variable(long_sid, odd_name)
    assert (await store.create_session("ttl-inf", ttl=math.inf)).ttl == math.inf


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda e: e.store.register_variable(OTHER, "huge", "integer", 10**4300),
            id="integer-value",
        ),
        pytest.param(
            lambda e: e.store.update_variable(OTHER, "other", 2**70 * 10**4400),
            id="integer-update",
        ),
        pytest.param(
            lambda e: e.store.register_variable(
                OTHER, "huge", "float", 0.5, metadata={"n": 10**4300}
            ),
            id="metadata",
        ),
        pytest.param(
            lambda e: e.store.import_variables(
                OTHER, [{**base_entries()[1], "value": 10**4300, "constraints": {}}]
            ),
            id="import",
        ),
    ],
)
async def test_what_the_store_accepts_it_can_export_as_json(env: Env, call: Call) -> None:
    """SPEC §4: export is JSON-ready. A value json cannot encode must be refused up front."""
    before = await snapshot(env)
    try:
        await call(env)
    except SessionStoreError as error:
        assert not isinstance(error, InternalError), error
        assert await snapshot(env) == before
    await assert_exports_json(env)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda e: e.store.create_session(NEW, ttl=10**400), id="create_session"),
        pytest.param(lambda e: e.store.update_session(SID, ttl=10**400), id="update_session"),
        pytest.param(lambda e: e.store.create_session(NEW, ttl=1e-320), id="subnormal"),
    ],
)
async def test_an_extreme_ttl_is_accepted_or_refused_cleanly(env: Env, call: Call) -> None:
    """A ttl past float range is positive (decisions: valid) or refused; never a crash."""
    before = await snapshot(env)
    try:
        session = await call(env)
    except SessionStoreError as error:
        assert type(error) is InvalidArgument, error
        assert await snapshot(env) == before
    else:
        assert isinstance(session, Session)
        assert session.ttl > 0


@pytest.mark.parametrize(
    "identifiers",
    [
        pytest.param(lambda: ("temperature", "nope"), id="tuple"),
        pytest.param(lambda: iter(["temperature", "nope"]), id="iterator"),
        pytest.param(lambda: (name for name in ["temperature", "nope"]), id="generator"),
        pytest.param(lambda: {"temperature": 1, "nope": 2}.keys(), id="dict-keys"),
    ],
)
async def test_get_variables_takes_any_iterable_of_str(
    env: Env, identifiers: Callable[[], Iterable[str]]
) -> None:
    """decisions: only a str, a non-iterable, or a non-str element is InvalidArgument."""
    batch = await env.store.get_variables(SID, identifiers())
    assert (list(batch.found), batch.missing) == (["temperature"], ["nope"])


async def test_no_argument_calls_reject_arguments_and_change_nothing(env: Env) -> None:
    loose: Any = env.store
    before = await snapshot(env)
    for name in ("list_sessions", "cleanup_expired_sessions", "get_stats"):
        with pytest.raises(TypeError):
            await getattr(loose, name)("unexpected")
    assert await snapshot(env) == before


async def test_failed_calls_take_no_revision(env: Env) -> None:
    store = env.store
    first = await store.get_variable(SID, await store.register_variable(SID, "r1", "float", 0.1))
    failing: list[Call] = [
        update("temperature", 7.0),
        update_many({"temperature": 0.2, "count": 1000}, atomic=True),
        register(name="bad*name"),
        register(constraints={"min": 2, "max": 1}),
        import_into(OTHER, with_field(1, "type", "nosuch")),
        lambda e: e.store.update_variable(SID, "temperature", 0.2, expected_version=99),
    ]
    for call in failing:
        with pytest.raises(SessionStoreError):
            await call(env)
    second = await store.get_variable(SID, await store.register_variable(SID, "r2", "float", 0.1))
    assert second.revision == first.revision + 1


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param(update("temperature", 7.0), id="update_variable-bad-value"),
        pytest.param(update("nope", 0.5), id="update_variable-unknown"),
        pytest.param(register(name="temperature"), id="register_variable-taken"),
        pytest.param(register(type_name="nosuch"), id="register_variable-unknown-type"),
        pytest.param(update_many({"temperature": 7.0}, atomic=True), id="update_variables-atomic"),
        pytest.param(lambda e: e.store.update_session(SID, ttl=-1), id="update_session-bad-ttl"),
        pytest.param(lambda e: e.store.get_program(SID, "noprog"), id="get_program-unknown"),
        pytest.param(
            import_into(SID, with_field(0, "name", "temperature")), id="import_variables-clash"
        ),
    ],
)
async def test_a_failed_call_does_not_touch_the_session(
    clock_store: tuple[AnyStore, FakeClock], failing: Call
) -> None:
    """SPEC §3: 'a call that fails changes nothing, last_accessed included'."""
    store, clock = clock_store
    env = await populate(store)
    await store.update_session(SID, ttl=10.0)  # the last successful touch
    clock.advance(8.0)
    with pytest.raises(SessionStoreError):
        await failing(env)
    clock.advance(3.0)  # 11 s after the last successful touch, 3 s after the failure
    with pytest.raises(SessionNotFound):
        await store.get_session(SID)


# --------------------------------------------------------------------------
# Property: arbitrary values in any argument only ever raise SessionStoreError

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    # past float range, and past the int -> str conversion limit (repr() raises)
    st.sampled_from([1, -1]).map(lambda sign: sign * 2**1024),
    st.sampled_from([1, -1]).map(lambda sign: sign * 10**4300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(min_size=120, max_size=300),
    st.integers(min_value=200, max_value=20_000).map(lambda n: "x" * n),
    st.binary(max_size=20),
    st.builds(object),
    st.sampled_from(
        [
            SID,
            GHOST,
            "temperature",
            "count",
            "vec",
            "grid",
            "float",
            "tensor",
            "",
            "*",
            "NaN",
            "Infinity",
            "s" * 257,
        ]
    ),
)
hashables = st.one_of(
    st.none(), st.integers(), st.text(max_size=8), st.binary(max_size=8), st.tuples(st.integers())
)
anything = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
        st.dictionaries(hashables, children, max_size=4),
        st.fixed_dictionaries({"shape": children, "data": children}),
    ),
    max_leaves=12,
) | st.integers(min_value=50, max_value=150).map(nested)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_fuzzed(call: Call, on_result: Callable[[object], bool] | None = None) -> None:
    """Run ``call`` on a fresh populated store; a failure must be a clean SessionStoreError.

    ``on_result`` judges a successful result and returns True when the call should
    also have left the store unchanged.
    """

    async def main() -> None:
        async with SessionStore() as store:
            env = await populate(store)
            before = await snapshot(env)
            try:
                result = await call(env)
            except SessionStoreError as error:
                assert not isinstance(error, InternalError | CallTimeout | StoreClosed), error
                assert isinstance(str(error), str)
                assert await snapshot(env) == before, f"{error!r} changed the store"
            else:
                if on_result is not None and on_result(result):
                    assert await snapshot(env) == before
                await assert_exports_json(env)  # whatever was accepted can still go out

    anyio.run(main)


async def assert_exports_json(env: Env) -> None:
    """SPEC §4: 'json.dumps(x, allow_nan=False) accepts' what export gives."""
    for sid in await env.store.list_sessions():
        json.dumps(await env.store.export_variables(sid), allow_nan=False)


REGISTER_ARGS = ("session_id", "name", "type", "initial_value", "constraints", "metadata")
REGISTER_ARGS_ALL = (*REGISTER_ARGS, "description")


@FUZZ
@given(argument=st.sampled_from(REGISTER_ARGS_ALL), spec=st.sampled_from(VARIABLES), value=anything)
@example(argument="initial_value", spec=VARIABLES[1], value=10**4300)
@example(argument="initial_value", spec=VARIABLES[1], value=-(10**4300))
@example(argument="metadata", spec=VARIABLES[0], value={"k": nested(80)})
def test_register_variable_with_any_value_in_any_argument(
    argument: str, spec: tuple[str, str, object, object], value: object
) -> None:
    _, type_name, initial_value, constraints = spec
    args: dict[str, Any] = {
        "session_id": SID,
        "name": "fuzzed",
        "type": type_name,
        "initial_value": initial_value,
        "constraints": constraints,
        "metadata": None,
        "description": None,
    }
    args[argument] = value
    run_fuzzed(
        lambda e: e.store.register_variable(
            args["session_id"],
            args["name"],
            args["type"],
            args["initial_value"],
            constraints=args["constraints"],
            metadata=args["metadata"],
            description=args["description"],
        )
    )


@FUZZ
@given(
    argument=st.sampled_from(("session_id", "identifier", "value", "metadata")),
    target=st.sampled_from([name for name, *_ in VARIABLES]),
    value=anything,
)
@example(argument="value", target="count", value=10**4300)
@example(argument="value", target="temperature", value=10**4300)
@example(argument="identifier", target="count", value=["list"])
def test_update_variable_with_any_value_in_any_argument(
    argument: str, target: str, value: object
) -> None:
    args: dict[str, Any] = {
        "session_id": SID,
        "identifier": target,
        "value": INITIAL_VALUES[target],
        "metadata": None,
    }
    args[argument] = value
    run_fuzzed(
        lambda e: e.store.update_variable(
            args["session_id"], args["identifier"], args["value"], args["metadata"]
        )
    )


@FUZZ
@given(argument=st.sampled_from(("session_id", "identifier")), value=anything)
def test_get_variable_with_any_value_in_any_argument(argument: str, value: object) -> None:
    args: dict[str, Any] = {"session_id": SID, "identifier": "temperature"}
    args[argument] = value
    run_fuzzed(lambda e: e.store.get_variable(args["session_id"], args["identifier"]))


def batch_result_is_all_errors(result: object) -> bool:
    assert isinstance(result, dict)
    for key, outcome in result.items():
        assert isinstance(key, str)
        assert isinstance(outcome, Variable | SessionStoreError), outcome
        assert not isinstance(outcome, InternalError), outcome
    return all(isinstance(outcome, SessionStoreError) for outcome in result.values())


@FUZZ
@given(
    argument=st.sampled_from(("session_id", "updates", "metadata", "updates-values")),
    value=anything,
    values=st.dictionaries(
        st.sampled_from(["temperature", "count", "label", "vec", "grid", "nope"]),
        anything,
        min_size=1,
        max_size=4,
    ),
    atomic=st.booleans(),
)
@example(argument="updates-values", value=None, values={"count": 10**4300}, atomic=False)
@example(argument="updates-values", value=None, values={"count": 10**4300}, atomic=True)
def test_update_variables_with_any_value_in_any_argument(
    argument: str, value: object, values: dict[str, object], atomic: bool
) -> None:
    args: dict[str, Any] = {
        "session_id": SID,
        "updates": {"temperature": 0.75},
        "metadata": None,
    }
    if argument == "updates-values":
        args["updates"] = values
    else:
        args[argument] = value
    run_fuzzed(
        lambda e: e.store.update_variables(
            args["session_id"], args["updates"], atomic=atomic, metadata=args["metadata"]
        ),
        batch_result_is_all_errors,
    )


def entry_with(key: str, value: object) -> dict[str, object]:
    entry = base_entries()[1]
    entry[key] = value
    return entry


import_entries = st.one_of(
    anything,
    st.lists(
        st.one_of(
            anything,
            st.builds(entry_with, st.sampled_from(EXPORT_KEYS), anything),
            st.builds(lambda: base_entries()[0]),
        ),
        max_size=4,
    ),
)


@FUZZ
@given(
    argument=st.sampled_from(("session_id", "exported")),
    value=anything,
    exported=import_entries,
)
@example(argument="exported", value=None, exported=[{**base_entries()[1], "value": 10**4300}])
def test_import_variables_with_any_value_in_any_argument(
    argument: str, value: object, exported: object
) -> None:
    args: dict[str, Any] = {"session_id": OTHER, "exported": exported}
    if argument == "session_id":
        args["session_id"] = value
        args["exported"] = base_entries()

    def judge(result: object) -> bool:
        assert type(result) is int
        return result == 0

    async def call(env: Env) -> object:
        try:
            return await env.store.import_variables(args["session_id"], args["exported"])
        except InvalidImport as error:
            if isinstance(args["exported"], list | tuple):
                assert set(error.errors) <= set(range(len(args["exported"])))
                assert error.errors, "a list was rejected without naming a faulty entry"
            else:
                assert error.errors == {}
            raise

    run_fuzzed(call, judge)
