"""The SQLite database behind a durable store: one writer thread, group commit.

The actor hands each turn's change records (:mod:`._journal`) to
:meth:`Database.submit`, which only queues them. One writer thread, with its own
connection, takes whatever has queued, folds it into its net effect (the last
state of each session, variable and program) and appends that to the ``log``
table as one row, one transaction, then reports through ``on_commit`` which
turns are durable. The event loop's thread never touches the disk.

The log is folded into the other tables by checkpoints (:data:`CHECKPOINT_IDLE`,
:data:`CHECKPOINT_RECORDS`, and at a clean close): a variable written many
times between two checkpoints is one row write. Opening a file with a log left
over (a crash) replays it first, in one transaction. A commit is then one
INSERT whatever its size, which keeps the writer's work and its calls into
SQLite (each a wait for the GIL when the event loop is busy) few.

A database file holds six tables (``meta``, ``sessions``, ``variables``,
``programs``, ``global_programs``, ``log``) under ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION` and ``PRAGMA application_id`` = :data:`APPLICATION_ID`;
``docs/durability.md`` describes them for an operator. Values are stored so
that everything comes back exactly:

- a ``str`` is TEXT when SQLite can hold it as such (valid UTF-8 without NUL),
  otherwise a BLOB of its UTF-8 with surrogates passed through;
- a ``float`` sits in a column without type affinity, so SQLite keeps its
  8 bytes (``-0.0`` and infinities included); NaN, which SQLite would turn into
  NULL, is stored as the TEXT ``'NaN'``;
- metadata and constraints are JSON objects, and a variable's value is the JSON
  of its type's ``to_json``, with NaN and Infinity tokens for special floats
  (so the string ``"NaN"`` stays a string), read back by the field's own type.
  Characters are written as they are, not as ``\\u`` escapes: the escapes of a
  high and a low surrogate would be read back as one character. The JSON text
  is then stored like any ``str`` (a BLOB in the rare case it holds a
  surrogate).

>>> database = Database("store.sqlite")  # doctest: +SKIP
>>> restored = database.load()  # doctest: +SKIP
>>> database.start(on_commit=lambda seq, error: ...)  # doctest: +SKIP
>>> database.submit(Turn(records, counters))  # doctest: +SKIP
1
>>> database.close()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import json.scanner
import logging
import math
import os
import pathlib
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from types import MappingProxyType
from typing import Final

import attrs
import msgpack

from ._frozen import freeze_mapping
from ._journal import (
    Counters,
    GlobalProgramRemoved,
    GlobalProgramWritten,
    Loaded,
    ProgramRemoved,
    ProgramWritten,
    SessionRemoved,
    SessionRow,
    SessionTouched,
    SessionWritten,
    Turn,
    VariableRemoved,
    VariableWritten,
)
from .errors import InvalidArgument, PersistenceError, describe
from .model import build_variable
from .types import BUILTIN_TYPES, TypeRegistry, TypeSpec

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SYNCHRONOUS_MODES", "Database", "Loaded"]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x53414354  # "SACT": PRAGMA application_id marks the file as ours
SYNCHRONOUS_MODES: Final = ("full", "normal", "off")

_log = logging.getLogger("sessionactor")

OnCommit = Callable[[int, BaseException | None], None]

# ---------------------------------------------------------------------------
# Schema. Columns without a declared type have no affinity: SQLite stores the
# bound value as it is, which keeps a float's exact bits (a REAL column would
# store -0.0 as the integer 0).

_SCHEMA: Final = (
    """CREATE TABLE meta (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    revision INTEGER NOT NULL,
    next_variable_number INTEGER NOT NULL,
    next_position INTEGER NOT NULL,
    sessions_created INTEGER NOT NULL,
    sessions_deleted INTEGER NOT NULL,
    sessions_expired INTEGER NOT NULL,
    cleanup_runs INTEGER NOT NULL,
    commands_processed INTEGER NOT NULL,
    clean_shutdown INTEGER NOT NULL CHECK (clean_shutdown IN (0, 1))
)""",
    """CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    created_at NOT NULL,
    last_accessed NOT NULL,
    ttl NOT NULL,
    expires_at NOT NULL,
    metadata TEXT NOT NULL,
    last_worker_id TEXT,
    total_variable_updates INTEGER NOT NULL
)""",
    """CREATE TABLE variables (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    value TEXT NOT NULL,
    constraints TEXT NOT NULL,
    metadata TEXT NOT NULL,
    version INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    created_at NOT NULL,
    updated_at NOT NULL,
    optimizer_id TEXT,
    optimization_started_at,
    lease_expires_at,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID""",
    """CREATE TABLE programs (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    program_id TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, program_id)
)""",
    """CREATE TABLE global_programs (
    program_id TEXT PRIMARY KEY NOT NULL,
    data BLOB NOT NULL,
    expires_at NOT NULL
)""",
    """CREATE TABLE log (
    seq INTEGER PRIMARY KEY,
    statements BLOB NOT NULL
)""",
)

_COUNTER_FIELDS: Final = tuple(field.name for field in attrs.fields(Counters))

_DELETE_SESSION: Final = "DELETE FROM sessions WHERE id = ?"
_DELETE_VARIABLE: Final = "DELETE FROM variables WHERE session_id = ? AND id = ?"
_DELETE_PROGRAM: Final = "DELETE FROM programs WHERE session_id = ? AND program_id = ?"
_DELETE_GLOBAL_PROGRAM: Final = "DELETE FROM global_programs WHERE program_id = ?"
_UPSERT_SESSION: Final = """INSERT INTO sessions (id, created_at, last_accessed, ttl,
    expires_at, metadata, last_worker_id, total_variable_updates)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at,
    last_accessed = excluded.last_accessed, ttl = excluded.ttl,
    expires_at = excluded.expires_at, metadata = excluded.metadata,
    last_worker_id = excluded.last_worker_id,
    total_variable_updates = excluded.total_variable_updates"""
_TOUCH_SESSION: Final = (
    "UPDATE sessions SET last_accessed = ?, expires_at = ?, total_variable_updates = ? WHERE id = ?"
)
# An update keeps the position the variable has: only a new variable takes one.
# A change to a variable that exists (an update, a lock): only what can change.
# The core marks such records with position 0; a new variable has its position.
_UPDATE_VARIABLE: Final = """UPDATE variables SET value = ?, metadata = ?, version = ?,
    revision = ?, updated_at = ?, optimizer_id = ?, optimization_started_at = ?,
    lease_expires_at = ? WHERE session_id = ? AND id = ?"""
_UPSERT_VARIABLE: Final = """INSERT INTO variables (session_id, id, position, name, type,
    value, constraints, metadata, version, revision, created_at, updated_at,
    optimizer_id, optimization_started_at, lease_expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (session_id, id) DO UPDATE SET name = excluded.name, type = excluded.type,
    value = excluded.value, constraints = excluded.constraints,
    metadata = excluded.metadata, version = excluded.version,
    revision = excluded.revision, created_at = excluded.created_at,
    updated_at = excluded.updated_at, optimizer_id = excluded.optimizer_id,
    optimization_started_at = excluded.optimization_started_at,
    lease_expires_at = excluded.lease_expires_at"""
_UPSERT_PROGRAM: Final = """INSERT INTO programs (session_id, program_id, data) VALUES (?, ?, ?)
ON CONFLICT (session_id, program_id) DO UPDATE SET data = excluded.data"""
_UPSERT_GLOBAL_PROGRAM: Final = """INSERT INTO global_programs (program_id, data, expires_at)
VALUES (?, ?, ?)
ON CONFLICT (program_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"""
_WRITE_COUNTERS: Final = (
    "UPDATE meta SET "
    + ", ".join(f"{name} = ?" for name in _COUNTER_FIELDS)
    + ", clean_shutdown = 0"
)
_MARK_CLEAN: Final = "UPDATE meta SET clean_shutdown = 1 WHERE clean_shutdown = 0"
_INSERT_META: Final = f"INSERT INTO meta VALUES (1, {', '.join('0' for _ in _COUNTER_FIELDS)}, 1)"

# The statements a commit may run, by their number in a log entry.
_LOGGED: Final = (
    _DELETE_SESSION,
    _DELETE_VARIABLE,
    _DELETE_PROGRAM,
    _DELETE_GLOBAL_PROGRAM,
    _UPSERT_SESSION,
    _TOUCH_SESSION,
    _UPSERT_VARIABLE,
    _UPDATE_VARIABLE,
    _UPSERT_PROGRAM,
    _UPSERT_GLOBAL_PROGRAM,
    _WRITE_COUNTERS,
)
_LOGGED_NUMBER: Final = {sql: number for number, sql in enumerate(_LOGGED)}
_INSERT_LOG: Final = "INSERT INTO log (statements) VALUES (?)"
_SELECT_LOG: Final = "SELECT seq, statements FROM log ORDER BY seq"
_TRUNCATE_LOG: Final = "DELETE FROM log WHERE seq <= ?"

CHECKPOINT_RECORDS: Final = 20_000
"""Records logged since the last checkpoint that make the writer fold them into the
tables (hot variables written many times make one row each)."""
CHECKPOINT_IDLE: Final = 0.05
"""Seconds without a turn to commit after which the writer folds the log in."""

_SELECT_SESSIONS: Final = """SELECT id, created_at, last_accessed, ttl, expires_at, metadata,
    last_worker_id, total_variable_updates FROM sessions ORDER BY rowid"""
_SELECT_VARIABLES: Final = """SELECT session_id, id, position, name, type, value, constraints,
    metadata, version, revision, created_at, updated_at, optimizer_id,
    optimization_started_at, lease_expires_at FROM variables ORDER BY session_id, position"""
_SELECT_PROGRAMS: Final = "SELECT session_id, program_id, data FROM programs ORDER BY rowid"
_SELECT_GLOBAL_PROGRAMS: Final = (
    "SELECT program_id, data, expires_at FROM global_programs ORDER BY rowid"
)
_SELECT_META: Final = f"SELECT {', '.join(_COUNTER_FIELDS)}, clean_shutdown FROM meta"
_SELECT_OBJECTS: Final = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master "
    "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name"
)

# ---------------------------------------------------------------------------
# Encoding: each field by its own type, so that everything comes back exactly.

_NAN: Final = "NaN"  # a float column's NaN (SQLite would bind NaN as NULL)
_MAPPING_CACHE: Final = 4096  # distinct mapping texts kept decoded while loading


def _text(value: str) -> str | bytes:
    """A ``str`` as stored: itself when SQLite can hold it as TEXT, else its bytes.

    TEXT must be valid UTF-8 (no lone surrogates), and SQL functions and the
    ``sqlite3`` shell stop at a NUL; such strings go in as a BLOB of their UTF-8
    with surrogates passed through, which :func:`_from_text` reverses. The choice
    depends only on the string, so a key is always stored the same way.
    """
    if "\x00" not in value:
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return value
    return value.encode("utf-8", "surrogatepass")


def _optional_text(value: str | None) -> str | bytes | None:
    return None if value is None else _text(value)


def _from_text(stored: object) -> str:
    if type(stored) is str:
        return stored
    if type(stored) is bytes:
        return stored.decode("utf-8", "surrogatepass")
    raise TypeError(f"expected text, found {describe(stored)}")


def _from_optional_text(stored: object) -> str | None:
    return None if stored is None else _from_text(stored)


def _from_real(stored: object) -> float:
    """A float column's value: the float itself, or NaN stored as text."""
    if type(stored) is float or type(stored) is int:
        return stored
    if stored == _NAN:
        return math.nan
    raise TypeError(f"expected a number, found {describe(stored)}")


def _from_optional_real(stored: object) -> float | None:
    return None if stored is None else _from_real(stored)


def _from_integer(stored: object) -> int:
    if type(stored) is int:
        return stored
    raise TypeError(f"expected an integer, found {describe(stored)}")


def _jsonable(value: object) -> object:
    # Frozen data holds read-only mappings (and lazily merged ones), which json
    # only knows as dicts.
    if type(value) is MappingProxyType:
        return value.copy()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{describe(value)} cannot be stored as JSON")


def _json_encoder() -> Callable[[object], str]:
    """JSON text of a value: compact, NaN and Infinity as tokens, characters raw.

    ``ensure_ascii`` is off on purpose: the escapes ``\\ud800\\udc00`` would be read
    back as one character, not the two code points that were written. On CPython
    this calls the C encoder directly: ``JSONEncoder.encode`` builds a new one on
    every call, which is most of the cost of encoding a small mapping.
    """
    try:
        import _json
    except ImportError:  # not CPython: the pure-Python encoder gives the same text
        return json.JSONEncoder(
            ensure_ascii=False,
            check_circular=False,
            allow_nan=True,
            separators=(",", ":"),
            default=_jsonable,
        ).encode
    encode = _json.make_encoder(
        None, _jsonable, _json.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda value: "".join(encode(value, 0))


_encode_json: Final = _json_encoder()
_scan_json: Final = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_float_repr: Final = float.__repr__  # what json writes for a finite float
_FLOAT: Final = BUILTIN_TYPES["float"]


def _to_json(value: object) -> str | bytes:
    if type(value) is float and value - value == 0.0:  # finite: inf - inf is NaN
        return _float_repr(value)
    return _text(_encode_json(value))


def _from_json(stored: object) -> object:
    # The scanner itself (C on CPython): the text is exactly one JSON value, as
    # written, so JSONDecoder.decode's whitespace handling is not needed.
    text = _from_text(stored)
    try:
        value, end = _scan_json(text, 0)
    except StopIteration as stop:
        raise ValueError(f"not JSON at character {stop.value}: {text[:40]!r}") from None
    if end != len(text):
        raise ValueError(f"extra data after JSON at character {end}: {text[:40]!r}")
    return value


def _mapping_json(value: Mapping[str, object]) -> str | bytes:
    # items() first: a read-only mapping's view is the dict's own (C), where
    # dict(mapping) would call __getitem__ in Python once per key.
    data = dict(value.items())
    if not data:
        return "{}"
    return _text(_encode_json(data))


def _from_mapping_json(stored: object) -> Mapping[str, object]:
    data = _from_json(stored)
    if type(data) is not dict:
        raise TypeError(f"expected a JSON object, found {describe(stored)}")
    return freeze_mapping(data)


# ---------------------------------------------------------------------------
# Folding turns into one transaction


Statements = list[tuple[str, list[tuple[object, ...]]]]
"""SQL statements with their rows, in the order to run them."""


class _Batch:
    """The net effect of consecutive turns: what one transaction must write.

    Records are folded in order and only the last state of each session,
    variable and program is kept; removals are remembered and run before the
    writes, so a session (or variable, or program) removed and written again
    within the batch is deleted and then written anew. A variable keeps the
    position of its first write in the batch: that is the one a new variable
    is inserted with, and an existing one keeps its stored position anyway.
    """

    __slots__ = (
        "counters",
        "global_programs",
        "programs",
        "removed_global_programs",
        "removed_programs",
        "removed_sessions",
        "removed_variables",
        "sessions",
        "touches",
        "turns",
        "variables",
    )

    def __init__(self) -> None:
        # Dicts with None values are ordered sets.
        self.removed_sessions: dict[str, None] = {}
        self.removed_variables: dict[tuple[str, str], None] = {}
        self.removed_programs: dict[tuple[str, str], None] = {}
        self.removed_global_programs: dict[str, None] = {}
        self.sessions: dict[str, SessionRow] = {}
        self.touches: dict[str, SessionTouched] = {}
        self.variables: dict[str, dict[str, VariableWritten]] = {}
        self.programs: dict[str, dict[str, bytes]] = {}
        self.global_programs: dict[str, GlobalProgramWritten] = {}
        self.counters: Counters | None = None
        self.turns = 0

    def add(self, turn: Turn) -> None:
        """Fold one turn's records, in order, and take its counters."""
        variables = self.variables
        for record in turn.records:
            if type(record) is VariableWritten:  # nearly every record: no match needed
                written = variables.get(record.session_id)
                if written is None:
                    written = variables[record.session_id] = {}
                variable_id = record.variable.id
                earlier = written.get(variable_id)
                if earlier is not None and earlier.position != record.position:
                    record = attrs.evolve(record, position=earlier.position)
                written[variable_id] = record
                continue
            match record:
                case SessionTouched(session_id=session_id):
                    self.touches[session_id] = record
                case SessionWritten(session=row):
                    self.sessions[row.id] = row
                    self.touches.pop(row.id, None)
                case VariableRemoved(session_id=session_id, variable_id=variable_id):
                    self.variables.get(session_id, {}).pop(variable_id, None)
                    self.removed_variables[session_id, variable_id] = None
                case SessionRemoved(session_id=session_id):
                    self.removed_sessions[session_id] = None
                    self.sessions.pop(session_id, None)
                    self.touches.pop(session_id, None)
                    self.variables.pop(session_id, None)
                    self.programs.pop(session_id, None)
                case ProgramWritten(session_id=session_id, program_id=program_id, data=data):
                    self.programs.setdefault(session_id, {})[program_id] = data
                case ProgramRemoved(session_id=session_id, program_id=program_id):
                    self.programs.get(session_id, {}).pop(program_id, None)
                    self.removed_programs[session_id, program_id] = None
                case GlobalProgramWritten(program_id=program_id):
                    self.global_programs[program_id] = record
                case GlobalProgramRemoved(program_id=program_id):
                    self.global_programs.pop(program_id, None)
                    self.removed_global_programs[program_id] = None
                case _:
                    raise TypeError(f"not a change record: {describe(record)}")
        self.counters = turn.counters
        self.turns += 1

    def statements(self, types: Mapping[str, TypeSpec]) -> Statements:
        """The statements of the transaction with their rows, in the order to run them.

        Everything is encoded here, before the transaction begins, so that a value
        that cannot be encoded fails the batch without touching the database.
        """
        new_variables, changed_variables = _variable_rows(self.variables, types)
        statements: list[tuple[str, list[tuple[object, ...]]]] = [
            (_DELETE_SESSION, [(_text(key),) for key in self.removed_sessions]),
            (_DELETE_VARIABLE, [(_text(s), _text(v)) for s, v in self.removed_variables]),
            (_DELETE_PROGRAM, [(_text(s), _text(p)) for s, p in self.removed_programs]),
            (_DELETE_GLOBAL_PROGRAM, [(_text(key),) for key in self.removed_global_programs]),
            (_UPSERT_SESSION, [_session_row(row) for row in self.sessions.values()]),
            (
                _TOUCH_SESSION,
                [
                    (
                        _real(touch.last_accessed),
                        _real(touch.expires_at),
                        touch.total_variable_updates,
                        _text(key),
                    )
                    for key, touch in self.touches.items()
                ],
            ),
            (_UPSERT_VARIABLE, new_variables),
            (_UPDATE_VARIABLE, changed_variables),
            (
                _UPSERT_PROGRAM,
                [
                    (session_key, _text(program_id), data)
                    for session_id, programs in self.programs.items()
                    for session_key in (_text(session_id),)
                    for program_id, data in programs.items()
                ],
            ),
            (
                _UPSERT_GLOBAL_PROGRAM,
                [
                    (_text(key), program.data, _real(program.expires_at))
                    for key, program in self.global_programs.items()
                ],
            ),
        ]
        if self.counters is not None:
            counters = self.counters
            values = tuple(getattr(counters, name) for name in _COUNTER_FIELDS)
            statements.append((_WRITE_COUNTERS, [values]))
        return [(sql, rows) for sql, rows in statements if rows]


def _run(connection: sqlite3.Connection, statements: Statements) -> None:
    """Run a batch's statements in the transaction that is open."""
    for sql, rows in statements:
        cursor = connection.executemany(sql, rows)
        if sql is _UPDATE_VARIABLE and cursor.rowcount != len(rows):
            # a change to a variable the database does not hold: refuse to lose it
            raise sqlite3.IntegrityError(
                f"{len(rows) - cursor.rowcount} changed variables have no row"
            )


def _log_entry(statements: Statements) -> bytes:
    """A commit's statements as one log entry: msgpack of ``[[number, rows], ...]``.

    The rows hold only what SQLite binds (str, bytes, float, int, None), and
    msgpack keeps each exactly (a float's 8 bytes, bytes apart from str).
    """
    entry: bytes = msgpack.packb(
        [(_LOGGED_NUMBER[sql], rows) for sql, rows in statements], use_bin_type=True
    )
    return entry


def _replay(connection: sqlite3.Connection) -> int:
    """Fold the log into the tables, in one transaction; returns the entries replayed.

    The log holds the commits made since the last checkpoint, in order, each as
    the statements it would have run: running them in order gives the tables
    the state of the last commit.
    """
    entries = connection.execute(_SELECT_LOG).fetchall()
    if not entries:
        return 0
    with _transaction(connection):
        for seq, entry in entries:
            try:
                logged = msgpack.unpackb(entry, raw=False, use_list=False)
                statements = [(_LOGGED[number], list(rows)) for number, rows in logged]
            except (ValueError, TypeError, IndexError, msgpack.UnpackException) as error:
                raise ValueError(f"log entry {seq} cannot be read: {error}") from error
            _run(connection, statements)
        connection.execute(_TRUNCATE_LOG, (entries[-1][0],))
    return len(entries)


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if the block (or the commit) fails."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        # SQLite rolls some failures back by itself (a full disk, an I/O error).
        if connection.in_transaction:
            with suppress(sqlite3.Error):  # the failure that brought us here is the one to report
                connection.execute("ROLLBACK")
        raise


def _real(value: float) -> float | str:
    return value if value == value else _NAN  # only NaN differs from itself


def _session_row(row: SessionRow) -> tuple[object, ...]:
    return (
        _text(row.id),
        _real(row.created_at),
        _real(row.last_accessed),
        _real(row.ttl),
        _real(row.expires_at),
        _mapping_json(row.metadata),
        _optional_text(row.last_worker_id),
        row.total_variable_updates,
    )


def _variable_rows(
    variables: Mapping[str, Mapping[str, VariableWritten]], types: Mapping[str, TypeSpec]
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Rows of new variables (every column) and of changed ones (what can change)."""
    # The hottest path of the writer: one tuple per variable, with NaN checks
    # inline (``x == x``) rather than in a call each.
    inserted: list[tuple[object, ...]] = []
    changed: list[tuple[object, ...]] = []
    nan = _NAN
    # Variables share their constraints (one object per distinct spec), and the
    # updates of one turn share one metadata object: encode each object once. The
    # records keep every object alive while the cache is in use, so ids are unique.
    encoded: dict[int, str | bytes] = {}

    def mapping_json(value: Mapping[str, object]) -> str | bytes:
        text = encoded.get(id(value))
        if text is None:
            text = encoded[id(value)] = _mapping_json(value)
        return text

    for session_id, written in variables.items():
        session_key = _text(session_id)
        for record in written.values():
            variable = record.variable
            spec = types.get(variable.type)
            if spec is None:
                raise TypeError(
                    f"variable {describe(variable.id)} has type {describe(variable.type)}, "
                    "which the database's type registry does not know"
                )
            updated_at = variable.updated_at
            started_at = variable.optimization_started_at
            lease = record.lease_expires_at
            optimizer_id = variable.optimizer_id
            raw = variable.value
            if spec is _FLOAT and type(raw) is float and raw - raw == 0.0:
                value: str | bytes = _float_repr(raw)  # a finite float: what to_json gives
            else:
                value = _to_json(spec.to_json(raw))
            metadata = encoded.get(id(variable.metadata)) or mapping_json(variable.metadata)
            if record.position == 0:
                changed.append(
                    (
                        value,
                        metadata,
                        variable.version,
                        variable.revision,
                        updated_at if updated_at == updated_at else nan,
                        None if optimizer_id is None else _text(optimizer_id),
                        started_at if started_at == started_at else nan,
                        lease if lease == lease else nan,
                        session_key,
                        # _text, written out for the common case
                        variable_id
                        if (variable_id := variable.id).isascii() and "\x00" not in variable_id
                        else _text(variable_id),
                    )
                )
                continue
            created_at = variable.created_at
            inserted.append(
                (
                    session_key,
                    _text(variable.id),
                    record.position,
                    _text(variable.name),
                    _text(variable.type),
                    value,
                    mapping_json(variable.constraints),
                    metadata,
                    variable.version,
                    variable.revision,
                    created_at if created_at == created_at else nan,
                    updated_at if updated_at == updated_at else nan,
                    None if optimizer_id is None else _text(optimizer_id),
                    started_at if started_at == started_at else nan,
                    lease if lease == lease else nan,
                )
            )
    return inserted, changed


# ---------------------------------------------------------------------------
# What load() returns


def _load(connection: sqlite3.Connection, types: Mapping[str, TypeSpec]) -> Loaded:
    """Read and decode every table; a row that does not decode raises ``ValueError``."""
    sessions: list[SessionRow] = []
    for row in connection.execute(_SELECT_SESSIONS):
        try:
            sessions.append(
                SessionRow(
                    id=_from_text(row[0]),
                    created_at=_from_real(row[1]),
                    last_accessed=_from_real(row[2]),
                    ttl=_from_real(row[3]),
                    expires_at=_from_real(row[4]),
                    metadata=_from_mapping_json(row[5]),
                    last_worker_id=_from_optional_text(row[6]),
                    total_variable_updates=_from_integer(row[7]),
                )
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"session {describe(row[0])} cannot be read: {error}") from error

    variables: dict[str, list[VariableWritten]] = {row.id: [] for row in sessions}
    # Constraints and metadata repeat (most variables share a few of each): decode
    # each distinct text once. Frozen mappings are immutable, so sharing is safe.
    mappings: dict[object, Mapping[str, object]] = {}

    def mapping(stored: object) -> Mapping[str, object]:
        found = mappings.get(stored)
        if found is None:
            if len(mappings) >= _MAPPING_CACHE:
                mappings.clear()
            found = mappings[stored] = _from_mapping_json(stored)
        return found

    for row in connection.execute(_SELECT_VARIABLES):
        try:
            session_id = _from_text(row[0])
            type_name = _from_text(row[4])
            spec = types.get(type_name)
            if spec is None:
                raise TypeError(
                    f"its type {describe(type_name)} is not in the database's type registry"
                )
            variable = build_variable(
                _from_text(row[1]),
                _from_text(row[3]),
                type_name,
                spec.from_json(_from_json(row[5])),
                mapping(row[6]),
                mapping(row[7]),
                _from_integer(row[8]),
                _from_real(row[10]),
                _from_real(row[11]),
                _from_integer(row[9]),
                _from_optional_text(row[12]),
                _from_optional_real(row[13]),
            )
            variables[session_id].append(
                VariableWritten(
                    session_id, variable, _from_integer(row[2]), _from_optional_real(row[14])
                )
            )
        except Exception as error:  # from_json of a custom type may raise anything
            raise ValueError(
                f"variable {describe(row[1])} of session {describe(row[0])} cannot be read: {error}"
            ) from error

    programs: list[ProgramWritten] = []
    for session_id, program_id, data in connection.execute(_SELECT_PROGRAMS):
        try:
            programs.append(ProgramWritten(_from_text(session_id), _from_text(program_id), data))
        except (TypeError, ValueError) as error:
            raise ValueError(f"program {describe(program_id)} cannot be read: {error}") from error

    global_programs: list[GlobalProgramWritten] = []
    for program_id, data, expires_at in connection.execute(_SELECT_GLOBAL_PROGRAMS):
        try:
            global_programs.append(
                GlobalProgramWritten(_from_text(program_id), data, _from_real(expires_at))
            )
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"global program {describe(program_id)} cannot be read: {error}"
            ) from error

    meta = connection.execute(_SELECT_META).fetchall()
    if len(meta) != 1:
        raise ValueError(f"the meta table holds {len(meta)} rows instead of 1")
    *counter_values, clean = meta[0]
    return Loaded(
        sessions=tuple(sessions),
        variables=MappingProxyType(
            {session_id: tuple(rows) for session_id, rows in variables.items()}
        ),
        programs=tuple(programs),
        global_programs=tuple(global_programs),
        counters=Counters(*(_from_integer(value) for value in counter_values)),
        clean_shutdown=clean == 1,
    )


# ---------------------------------------------------------------------------
# Opening: decide what the file is before writing a byte


_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def _uri(path: str, query: str) -> str:
    # A URI, so that no file name (":memory:", one with "?") is taken specially.
    return f"{pathlib.Path(path).absolute().as_uri()}?{query}"


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


@functools.cache
def _expected_objects() -> list[tuple[object, ...]]:
    """What ``sqlite_master`` lists for a database of this schema version."""
    with closing(sqlite3.connect(":memory:")) as connection:
        for statement in _SCHEMA:
            connection.execute(statement)
        return connection.execute(_SELECT_OBJECTS).fetchall()


def _is_new(path: str) -> bool:
    """Whether ``path`` is to become a new database; raises if it is not ours.

    Reads the file without changing it: the header by hand, then SQLite on a
    read-only connection (``immutable`` when there is no write-ahead log, so that
    not even a ``-shm`` file is created). An empty or missing file is new, and so
    is an SQLite file with no schema at all (a new database interrupted before
    its first commit). Anything else must be a sessionactor database of this
    schema version, with the exact schema and sound pages.
    """
    wal = path + "-wal"
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise PersistenceError(f"cannot open database {path}: {error}", path) from error
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise PersistenceError(f"database {path} is not a regular file", path)
    if info is None or info.st_size == 0:
        if _file_size(wal):
            raise PersistenceError(
                f"database {path} is empty or missing but {wal} holds data: "
                "refusing to start a new database over it",
                path,
            )
        return True
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as error:
        raise PersistenceError(f"cannot read database {path}: {error}", path) from error
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise PersistenceError(
            f"{path} is not a sessionactor database: it is not an SQLite database file", path
        )
    in_wal_mode = header[18] == 2
    has_log = _file_size(wal) > 0 or os.path.exists(path + "-journal")
    query = "immutable=1" if in_wal_mode and not has_log else "mode=ro"
    try:
        with closing(sqlite3.connect(_uri(path, query), uri=True)) as connection:
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            objects = connection.execute(_SELECT_OBJECTS).fetchall()
            if not objects and application_id == 0 and version == 0:
                return True
            if application_id != APPLICATION_ID:
                tables = ", ".join(str(name) for kind, name, *_ in objects if kind == "table")
                raise PersistenceError(
                    f"{path} is not a sessionactor database "
                    f"(application_id {application_id}, tables: {tables or 'none'})",
                    path,
                )
            if version > SCHEMA_VERSION:
                raise PersistenceError(
                    f"database {path} has schema version {version}, newer than this "
                    f"sessionactor reads ({SCHEMA_VERSION}): use a newer sessionactor",
                    path,
                )
            if version != SCHEMA_VERSION:
                raise PersistenceError(
                    f"database {path} has unknown schema version {version} "
                    f"(this sessionactor reads {SCHEMA_VERSION})",
                    path,
                )
            if objects != _expected_objects():
                raise PersistenceError(
                    f"database {path} does not have the tables of schema version "
                    f"{SCHEMA_VERSION}: it was altered, or is not a sessionactor database",
                    path,
                )
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise PersistenceError(
                    f"database {path} is damaged: {'; '.join(map(str, problems[:5]))}", path
                )
            rows = connection.execute("SELECT count(*) FROM meta").fetchone()[0]
            if rows != 1:
                raise PersistenceError(
                    f"database {path} is damaged: its meta table has {rows} rows", path
                )
    except sqlite3.Error as error:
        raise PersistenceError(
            f"database {path} is damaged or not a database: {error}", path
        ) from error
    return False


def _open(path: str, synchronous: str) -> sqlite3.Connection:
    """The writer's connection to ``path``, after :func:`_is_new` accepted it."""
    new = _is_new(path)
    try:
        connection = sqlite3.connect(
            _uri(path, "mode=rwc" if new else "mode=rw"),
            uri=True,
            isolation_level=None,  # autocommit: transactions are begun and ended explicitly
            check_same_thread=False,  # opened here, used by load() and then by the writer thread
        )
    except sqlite3.Error as error:
        raise PersistenceError(f"cannot open database {path}: {error}", path) from error
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise PersistenceError(
                f"database {path} cannot use write-ahead logging (journal mode {mode})", path
            )
        connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        connection.execute("PRAGMA foreign_keys = ON")
        if new:
            with _transaction(connection):
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.execute(_INSERT_META)
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException as error:
        connection.close()
        if isinstance(error, sqlite3.Error):
            raise PersistenceError(f"cannot open database {path}: {error}", path) from error
        raise
    return connection


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------
# The database


def _fspath(value: object, what: str) -> str:
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
    raise InvalidArgument(f"{what} must be a non-empty str or path, got {describe(value)}")


class Database:
    """A store's SQLite database: load it once, then commit turns from one writer thread.

    ``Database(path)`` opens ``path`` or creates it (a missing or empty file starts a
    new database). A file that is not a sessionactor database of a schema this code
    reads, or is damaged, raises :class:`PersistenceError` naming the path and is left
    exactly as it was. ``synchronous`` has SQLite's meaning: ``"full"`` (a commit
    survives power loss), ``"normal"`` (it survives a crash of the process) or
    ``"off"``. ``types`` must know every variable type the store uses.

    >>> database = Database(tmp / "store.sqlite", synchronous="normal")  # doctest: +SKIP
    >>> loaded = database.load()  # doctest: +SKIP
    >>> database.start(lambda seq, error: print(seq, error))  # doctest: +SKIP
    >>> seq = database.submit(turn)  # doctest: +SKIP
    >>> database.flush(timeout=5.0)  # doctest: +SKIP
    >>> database.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "full",
        types: TypeRegistry | None = None,
    ) -> None:
        self._path = _fspath(path, "database path")
        if type(synchronous) is not str or synchronous not in SYNCHRONOUS_MODES:
            raise InvalidArgument(
                f"synchronous must be 'full', 'normal' or 'off', got {describe(synchronous)}"
            )
        if types is not None and not isinstance(types, TypeRegistry):
            raise InvalidArgument(f"types must be a TypeRegistry, got {describe(types)}")
        self._types = (types if types is not None else TypeRegistry()).by_name()
        self._connection = _open(self._path, synchronous)
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)  # the writer waits here for turns
        self._committed_changed = threading.Condition(self._lock)  # flush() waits here
        self._pending: list[Turn] = []
        self._submitted = 0  # the sequence number of the last turn submitted
        self._committed = 0  # ... and of the last turn committed
        self._failure: PersistenceError | None = None
        self._on_commit: OnCommit | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        # The writer's own: what the log holds since the last checkpoint, folded.
        self._folded = _Batch()
        self._logged_records = 0
        self._last_entry = 0  # the log's last seq
        self.commits = 0
        """Transactions committed so far (each holds one or more turns)."""
        self.turns_committed = 0
        """Turns those transactions held: over ``commits``, the turns per commit."""
        self.checkpoints = 0
        """Times the log was folded into the tables."""

    @property
    def path(self) -> str:
        """The database file's path, as given."""
        return self._path

    def load(self) -> Loaded:
        """Everything in the database (see :class:`Loaded`); call it before :meth:`start`.

        Raises :class:`PersistenceError` if a row cannot be read back (a damaged
        database, or a variable type missing from ``types``).
        """
        with self._lock:
            self._check_usable()
            if self._thread is not None:
                raise PersistenceError(
                    f"database {self._path} is already started: load() comes before start()",
                    self._path,
                )
        try:
            _replay(self._connection)  # what the last run logged and did not fold in
            return _load(self._connection, self._types)
        except (sqlite3.Error, ValueError) as error:
            raise PersistenceError(
                f"database {self._path} cannot be read: {error}", self._path
            ) from error

    def start(self, on_commit: OnCommit) -> None:
        """Start the writer thread.

        ``on_commit(seq, error)`` is called from the writer thread, never with a lock
        held. ``seq`` is always the highest sequence number that is durable: with
        ``error`` None after each commit (every turn up to ``seq`` is durable), and
        once with a :class:`PersistenceError` when a commit fails (no turn after
        ``seq`` will ever be; every later :meth:`submit` raises). It must not block
        for long (hand over to the event loop with ``call_soon_threadsafe``) and must
        not call :meth:`close`.
        """
        if not callable(on_commit):
            raise InvalidArgument(f"on_commit must be callable, got {describe(on_commit)}")
        with self._lock:
            self._check_usable()
            if self._thread is not None:
                raise PersistenceError(f"database {self._path} is already started", self._path)
            self._on_commit = on_commit
            # Daemon: a process that exits without close() must not hang on the writer;
            # what it had not committed is lost as in a crash, and the log stays sound.
            self._thread = threading.Thread(
                target=self._write_forever, name=f"sessionactor-writer {self._path}", daemon=True
            )
            self._thread.start()

    def submit(self, turn: Turn) -> int:
        """Queue one turn's records for commit and return its sequence number (1, 2, ...).

        Thread-safe and never waits for the disk. Turns are committed in order, each
        whole in one transaction (several may share one). Raises
        :class:`PersistenceError` after a failed commit, before :meth:`start` and
        after :meth:`close`.
        """
        if type(turn) is not Turn:
            raise InvalidArgument(f"submit() takes a Turn, got {describe(turn)}")
        with self._lock:
            self._check_usable()
            if self._thread is None:
                raise PersistenceError(
                    f"database {self._path} is not started: call start() first", self._path
                )
            self._submitted += 1
            self._pending.append(turn)
            self._queued.notify()
            return self._submitted

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every turn submitted so far is committed.

        Raises :class:`PersistenceError` if a commit failed first, and
        ``TimeoutError`` if ``timeout`` seconds pass.
        """
        if timeout is not None and not (isinstance(timeout, int | float) and timeout >= 0):
            raise InvalidArgument(f"timeout must be None or seconds >= 0, got {describe(timeout)}")
        self._refuse_writer_thread("flush")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            while self._committed < target:
                if self._failure is not None:
                    raise self._failed()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"database {self._path}: turns {self._committed + 1} to {target} "
                        f"not committed within {timeout} s"
                    )
                self._committed_changed.wait(remaining)

    def backup(self, target: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the database to ``target``, while the writer runs.

        The copy holds every turn committed before the call (SQLite's online backup,
        in one step, so it reads one snapshot) and is itself a database that
        :class:`Database` opens. It is written beside ``target`` and renamed over it,
        so ``target`` is either untouched or complete. Raises :class:`PersistenceError`
        if the copy fails, and refuses a ``target`` that is this database or has a
        write-ahead log of its own (a database in use).
        """
        target_path = _fspath(target, "backup target")
        with self._lock:
            if self._closed:
                raise PersistenceError(
                    f"database {self._path} is closed: cannot back it up", self._path
                )
        if os.path.exists(target_path) and os.path.samefile(target_path, self._path):
            raise PersistenceError(
                f"cannot back up database {self._path} onto itself ({target_path})", self._path
            )
        if os.path.exists(target_path + "-wal"):
            raise PersistenceError(
                f"cannot back up database {self._path} to {target_path}: "
                f"{target_path}-wal exists, so that database may be in use",
                self._path,
            )
        directory = os.path.dirname(os.path.abspath(target_path))
        temporary: str | None = None
        try:
            descriptor, temporary = tempfile.mkstemp(
                prefix=".sessionactor-backup-", suffix=".sqlite", dir=directory
            )
            os.close(descriptor)
            with (
                closing(sqlite3.connect(_uri(self._path, "mode=ro"), uri=True)) as source,
                closing(sqlite3.connect(_uri(temporary, "mode=rw"), uri=True)) as copy,
            ):
                source.backup(copy)
            _fsync(temporary)
            os.replace(temporary, target_path)
            temporary = None
            _fsync(directory)
        except (sqlite3.Error, OSError) as error:
            raise PersistenceError(
                f"cannot back up database {self._path} to {target_path}: {error}", self._path
            ) from error
        finally:
            if temporary is not None:
                with suppress(OSError):  # the error that brought us here is the one to report
                    os.unlink(temporary)

    def close(self, *, clean: bool = True) -> None:
        """Commit what is queued, stop the writer and close the database. Idempotent.

        With ``clean`` the database records a clean shutdown
        (:attr:`Loaded.clean_shutdown` on the next load); without it, the next load
        sees the run as one that stopped abruptly. After a failed commit nothing more
        is written. Raises :class:`PersistenceError` if the final commit fails; the
        database is closed either way.
        """
        self._refuse_writer_thread("close")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._queued.notify()
            thread = self._thread
        if thread is not None:
            thread.join()  # the writer commits everything queued before it stops
        error: sqlite3.Error | None = None
        try:
            if clean and self._failure is None:
                self._connection.execute(_MARK_CLEAN)
        except sqlite3.Error as caught:
            error = caught
        finally:
            self._connection.close()
        if error is not None:
            raise PersistenceError(
                f"cannot record a clean shutdown in database {self._path}: {error}", self._path
            ) from error

    # -- the writer thread --------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    if self._logged_records and not self._queued.wait(CHECKPOINT_IDLE):
                        break  # idle: fold the log in while nothing waits
                    if not self._logged_records:
                        self._queued.wait()
                turns = self._pending
                self._pending = []
                last = self._submitted  # the queue holds every turn after the last batch
                stopping = self._stopping
            try:
                if turns:
                    self._commit(turns)
                elif not stopping:
                    self._checkpoint()
                    continue
            except Exception as cause:
                self._fail(cause)
                return
            if turns:
                with self._lock:
                    self._committed = last
                    self._committed_changed.notify_all()
                self._report(last, None)
            if stopping and not turns:
                try:
                    self._checkpoint()  # a clean stop leaves the log empty
                except Exception as cause:
                    self._fail(cause)
                return
            if self._logged_records >= CHECKPOINT_RECORDS:
                try:
                    self._checkpoint()
                except Exception as cause:
                    self._fail(cause)
                    return

    def _fail(self, cause: Exception) -> None:
        """A commit or checkpoint failed: no more writes, and the store learns why."""
        failure = PersistenceError(f"commit to database {self._path} failed: {cause}", self._path)
        failure.__cause__ = cause
        _log.error("%s; the store stops writing", failure)
        with self._lock:
            self._failure = failure
            self._pending.clear()
            committed = self._committed
            self._committed_changed.notify_all()
        self._report(committed, failure)

    def _commit(self, turns: list[Turn]) -> None:
        """Make ``turns`` durable as one entry of the log: one row, whatever their size.

        The tables take the change later, folded with others (:meth:`_checkpoint`).
        """
        batch = _Batch()
        folded = self._folded
        records = 0
        for turn in turns:
            batch.add(turn)
            folded.add(turn)
            records += len(turn.records)
        entry = _log_entry(batch.statements(self._types))
        # One statement outside BEGIN is its own transaction: one call into SQLite (and
        # one wait for the GIL after it, when the event loop is busy) instead of three.
        self._last_entry = self._connection.execute(_INSERT_LOG, (entry,)).lastrowid or 0
        self._logged_records += max(records, 1)
        self.commits += 1
        self.turns_committed += len(turns)

    def _checkpoint(self) -> None:
        """Fold what the log holds into the tables and empty it, in one transaction: a
        variable written a thousand times since the last checkpoint is one row write."""
        if not self._logged_records:
            return
        statements = self._folded.statements(self._types)
        connection = self._connection
        with _transaction(connection):
            _run(connection, statements)
            connection.execute(_TRUNCATE_LOG, (self._last_entry,))
        self._folded = _Batch()
        self._logged_records = 0
        self.checkpoints += 1

    def _report(self, seq: int, error: PersistenceError | None) -> None:
        callback = self._on_commit
        assert callback is not None  # set by start(), which starts this thread
        try:
            callback(seq, error)
        except Exception:
            # The commit stands either way; a failing callback is the caller's bug,
            # and raising here would only kill the writer.
            _log.exception("on_commit(%d, %r) of database %s failed", seq, error, self._path)

    # -- helpers -------------------------------------------------------------

    def _refuse_writer_thread(self, call: str) -> None:
        # From on_commit, waiting for the writer would wait for itself forever.
        if self._thread is not None and self._thread is threading.current_thread():
            raise PersistenceError(
                f"{call}() of database {self._path} cannot be called from on_commit", self._path
            )

    def _check_usable(self) -> None:
        """Raise if no more work is accepted (called with the lock held)."""
        if self._failure is not None:
            raise self._failed()
        if self._closed:
            raise PersistenceError(f"database {self._path} is closed", self._path)

    def _failed(self) -> PersistenceError:
        """A fresh copy of the failure, for each caller that meets it."""
        failure = self._failure
        assert failure is not None
        error = PersistenceError(str(failure), self._path)
        error.__cause__ = failure.__cause__
        return error
