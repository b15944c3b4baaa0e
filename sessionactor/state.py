"""The functional core: every table of the store and one handler per command.

``StoreState`` knows nothing of asyncio. The actor calls ``handle(command)``
once per message; a handler validates everything first and only then changes
state, so it either applies fully or changes nothing. Any exception that is not
a :class:`SessionStoreError` is a bug (in a handler or a user-supplied type) and
comes out as :class:`InternalError`.

Expiry is driven by ``clock`` (monotonic seconds). An expired session is hidden
from every call at once; ``sweep`` removes expired sessions using a heap of
deadlines, so its cost follows what expired, not how many sessions exist.
"""

from __future__ import annotations

import copy
import functools
import heapq
import itertools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import attrs

from ._frozen import EMPTY_MAPPING, FrozenMapping, decode_float, freeze_mapping, thaw
from .errors import (
    AtomicUpdateError,
    ConstraintViolation,
    InternalError,
    InvalidArgument,
    InvalidConstraint,
    InvalidImport,
    ProgramNotFound,
    SessionLimitExceeded,
    SessionNotFound,
    SessionStoreError,
    ValidationError,
    VariableExists,
    VariableLocked,
    VariableNotFound,
    VersionConflict,
    describe,
)
from .messages import (
    AnyCommand,
    CleanupExpiredSessions,
    CreateSession,
    DeleteGlobalProgram,
    DeleteProgram,
    DeleteSession,
    DeleteVariable,
    EndOptimization,
    ExportVariables,
    GetGlobalProgram,
    GetProgram,
    GetSession,
    GetStats,
    GetVariable,
    GetVariables,
    GetVariableValue,
    HasVariable,
    ImportVariables,
    ListSessions,
    ListVariables,
    RegisterVariable,
    SessionExists,
    StartOptimization,
    StoreGlobalProgram,
    StoreProgram,
    StoreWorkerSession,
    UnwatchSession,
    UpdateSession,
    UpdateVariable,
    UpdateVariables,
    WatchSession,
)
from .model import BatchGet, Session, StoreStats, Variable, VariableChange
from .types import TypeRegistry, TypeSpec

__all__ = ["StoreCounters", "StoreState", "WatchFilter", "WatchStart"]

_log = logging.getLogger("sessionactor")

MAX_ID_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 128
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
_IMPORT_OPTIONAL_KEYS: Final = frozenset({"revision"})
_REQUIRED_IMPORT_KEYS: Final = ("id", "name", "type", "value")
_ID_COUNTER: Final = re.compile(r"_(\d+)\Z")

_REGISTER_METADATA: Final[FrozenMapping] = MappingProxyType(
    {"source": "python", "created_by": "session_store"}
)


# ---------------------------------------------------------------------------
# Argument checks. Each raises InvalidArgument naming the bad value.


def _check_id(value: object, what: str) -> str:
    if type(value) is not str:
        raise InvalidArgument(f"{what} must be a str, got {describe(value)}")
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(
            f"{what} must be 1 to {MAX_ID_LENGTH} characters, got {describe(value)}"
        )
    return value


def _check_identifier(value: object) -> str:
    if type(value) is not str or not value or len(value) > MAX_ID_LENGTH:
        _check_id(value, "variable identifier")
    return value  # type: ignore[return-value]


def _check_name(value: object) -> str:
    if type(value) is not str:
        raise InvalidArgument(f"variable name must be a str, got {describe(value)}")
    if not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"variable name must be 1 to {MAX_NAME_LENGTH} characters, got {describe(value)}"
        )
    if "*" in value or "?" in value:
        raise InvalidArgument(f"variable name may not contain '*' or '?', got {describe(value)}")
    return value


def _check_optional_id(value: object, what: str) -> str | None:
    return None if value is None else _check_id(value, what)


def _positive_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{what} must be a number of seconds, got {describe(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float: forever, as math.inf
        seconds = math.inf
    if not seconds > 0:  # NaN fails this too
        raise InvalidArgument(f"{what} must be positive, got {describe(value)}")
    return seconds


def _check_ttl(value: object) -> float:
    return _positive_seconds(value, "ttl")


def _check_metadata(value: object) -> FrozenMapping:
    if value is None:
        return EMPTY_MAPPING
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"metadata must be a mapping, got {describe(value)}")
    try:
        return freeze_mapping(value)
    except (TypeError, RecursionError) as error:
        raise InvalidArgument(f"metadata {describe(value)} is not JSON-like: {error}") from None


def _check_version(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative int, got {describe(value)}")
    return value


def _check_lease(value: object) -> float | None:
    return None if value is None else _positive_seconds(value, "lease")


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """An anchored regex for a glob: ``*`` any run, ``?`` one character, else literal."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


_iso_cache: list[Any] = [None, ""]  # [millisecond, its ISO text]: busy updates share one


def iso_utc(wall: float) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-27T23:08:41.123Z``."""
    millisecond = int(wall * 1000)
    if _iso_cache[0] != millisecond:
        second, millis = divmod(millisecond, 1000)
        _iso_cache[0] = millisecond
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _iso_cache[1] = f"{text}.{millis:03d}Z"
    return _iso_cache[1]  # type: ignore[no-any-return]


class UpdateMetadata(Mapping[str, object]):
    """A read-only view of an updated variable's metadata (SPEC §4): the earlier
    entries and the caller's, then ``source`` and ``updated_at``.

    An update is the hottest write, and most callers never read its metadata, so
    the merged dict and its ISO-8601 timestamp are built on first read instead of
    on every update; the earlier entries are shared, not copied.
    """

    __slots__ = ("_base", "_merged", "_source", "_wall")

    def __init__(self, base: Mapping[str, object], source: object, wall: float) -> None:
        self._base: Mapping[str, object] = base._base if isinstance(base, UpdateMetadata) else base
        self._source = source
        self._wall = wall
        self._merged: dict[str, object] | None = None

    def _view(self) -> dict[str, object]:
        merged = self._merged
        if merged is None:  # two readers racing here build equal dicts: harmless
            merged = dict(self._base)
            merged["source"] = self._source
            merged["updated_at"] = iso_utc(self._wall)
            self._merged = merged
        return merged

    def __getitem__(self, key: str) -> object:
        return self._view()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    def __repr__(self) -> str:
        return f"UpdateMetadata({self._view()!r})"


# ---------------------------------------------------------------------------
# Records: the actor's own mutable rows. Never handed out.


@attrs.define(slots=True, eq=False, weakref_slot=False)
class _SessionRecord:
    id: str
    created_at: float
    last_accessed: float
    ttl: float
    expires_at: float  # monotonic
    heap_deadline: float  # deadline of this record's one live entry in the heap
    metadata: FrozenMapping
    last_worker_id: str | None = None
    variables: dict[str, Variable] = attrs.Factory(dict)  # by id, in registration order
    names: dict[str, str] = attrs.Factory(dict)  # name -> id
    programs: dict[str, object] = attrs.Factory(dict)
    leases: dict[str, float] = attrs.Factory(dict)  # variable id -> lease deadline (monotonic)
    total_variable_updates: int = 0


@attrs.define(slots=True, eq=False, weakref_slot=False)
class _GlobalProgram:
    data: object
    expires_at: float


@attrs.define(slots=True, weakref_slot=False)
class StoreCounters:
    """Plain integer counts kept by the core, read by telemetry's observable
    instruments. Keys never include session ids (unbounded cardinality)."""

    variable_operations: dict[tuple[str, str], int] = attrs.Factory(dict)  # (operation, type)
    batch_sizes: dict[str, int] = attrs.Factory(dict)  # operation -> variables
    rejections: dict[tuple[str, str, str], int] = attrs.Factory(dict)  # (reason, type, operation)
    session_events: dict[str, int] = attrs.Factory(dict)  # created / deleted / expired
    version_conflicts: int = 0
    lock_refusals: int = 0
    watch_overflows: int = 0  # counted by the shell, which owns the watchers' buffers

    def count_operation(self, operation: str, type_name: str, amount: int = 1) -> None:
        key = (operation, type_name)
        self.variable_operations[key] = self.variable_operations.get(key, 0) + amount

    def count_rejection(self, error: ValidationError, type_name: str, operation: str) -> None:
        reason = (
            "constraint_violation"
            if isinstance(error, ConstraintViolation)
            else "validation_failed"
        )
        key = (reason, type_name, operation)
        self.rejections[key] = self.rejections.get(key, 0) + 1

    def count_session(self, event: str, amount: int = 1) -> None:
        self.session_events[event] = self.session_events.get(event, 0) + amount


@attrs.define(slots=True, weakref_slot=False)
class _PlannedUpdate:
    key: str
    old: Variable
    value: object


@attrs.frozen(weakref_slot=False)
class WatchFilter:
    """Which variables a watch follows, resolved when it subscribed (SPEC §10).

    ``ids`` holds the variables the identifiers named at that moment (an id wins
    over a name); ``names`` holds every identifier that was not a variable id, so
    a variable registered later under one of those names matches too. ``ids is
    None`` means no identifiers were given. ``pattern`` is the anchored glob of
    ``list_variables``. A variable must pass every filter given.
    """

    ids: frozenset[str] | None
    names: frozenset[str]
    pattern: re.Pattern[str] | None

    def matches(self, variable_id: str, name: str) -> bool:
        if self.ids is not None and variable_id not in self.ids and name not in self.names:
            return False
        return self.pattern is None or self.pattern.fullmatch(name) is not None


@attrs.frozen(weakref_slot=False)
class WatchStart:
    """The reply to ``WatchSession``: where the watch starts and what it sees first."""

    revision: int  # the store's revision when the watch began
    sequence: int  # changes recorded before it; later ones are numbered from sequence + 1
    variables: tuple[Variable, ...]  # the matching live variables, in registration order
    filter: WatchFilter


# ---------------------------------------------------------------------------


class StoreState:
    """All sessions, variables and programs, and the handlers that change them.

    >>> state = StoreState()
    >>> state.handle(CreateSession("s1")).id
    's1'
    >>> state.handle(RegisterVariable("s1", "x", "float", 0.5))
    'var_x_1'
    """

    def __init__(
        self,
        *,
        default_ttl: float = 3600.0,
        max_sessions: int | None = None,
        global_program_ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        types: TypeRegistry | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._default_ttl = _check_ttl(default_ttl)
        if max_sessions is not None and (type(max_sessions) is not int or max_sessions < 1):
            raise InvalidArgument(
                f"max_sessions must be a positive int, got {describe(max_sessions)}"
            )
        self._max_sessions = max_sessions
        self._global_program_ttl = _check_ttl(global_program_ttl)
        self._clock = clock
        self._wall = wall_clock
        self._types = types if types is not None else TypeRegistry()
        self._specs = self._types.by_name()  # a variable's type is always registered
        self._now = clock()

        self._sessions: dict[str, _SessionRecord] = {}
        self._deadlines: list[tuple[float, int, _SessionRecord]] = []
        self._global_programs: dict[str, _GlobalProgram] = {}
        self._program_deadlines: list[tuple[float, int, str, _GlobalProgram]] = []
        self._heap_seq = itertools.count()
        self._stale_entries = 0
        self._interned_constraints: dict[object, FrozenMapping] = {}

        self._next_variable_number = 0
        self.revision = 0
        self.variable_count = 0

        self.sessions_created = 0
        self.sessions_deleted = 0
        self.sessions_expired = 0
        self.cleanup_runs = 0
        self.commands_processed = 0
        self.counters = StoreCounters()
        self.mailbox_depth: Callable[[], int] = lambda: 0

        # Watch support: sessions with watchers, and the changes committed for them
        # since the actor last collected them.
        self.watched: dict[str, int] = {}
        self.changes: list[VariableChange] = []
        # How many changes the shell has taken from ``changes`` and published so far.
        # With ``len(changes)`` it numbers every change, which lets a new watch drop
        # exactly the changes its snapshot already holds (revisions cannot: a
        # ``session_closed`` takes none).
        self.changes_published = 0
        self._watch_tokens: dict[object, str] = {}  # watcher token -> session id

        self._handlers: dict[type[AnyCommand], Callable[[Any], object]] = {
            CreateSession: self._create_session,
            GetSession: self._get_session,
            UpdateSession: self._update_session,
            DeleteSession: self._delete_session,
            SessionExists: self._session_exists,
            ListSessions: self._list_sessions,
            CleanupExpiredSessions: self._cleanup_expired_sessions,
            StoreWorkerSession: self._store_worker_session,
            GetStats: self._get_stats,
            StoreProgram: self._store_program,
            GetProgram: self._get_program,
            DeleteProgram: self._delete_program,
            StoreGlobalProgram: self._store_global_program,
            GetGlobalProgram: self._get_global_program,
            DeleteGlobalProgram: self._delete_global_program,
            RegisterVariable: self._register_variable,
            GetVariable: self._get_variable,
            GetVariableValue: self._get_variable_value,
            UpdateVariable: self._update_variable,
            ListVariables: self._list_variables,
            DeleteVariable: self._delete_variable,
            HasVariable: self._has_variable,
            GetVariables: self._get_variables,
            UpdateVariables: self._update_variables,
            ExportVariables: self._export_variables,
            ImportVariables: self._import_variables,
            StartOptimization: self._start_optimization,
            EndOptimization: self._end_optimization,
            WatchSession: self._watch_session,
            UnwatchSession: self._unwatch_session,
        }

    # -- dispatch -------------------------------------------------------------

    def handle(self, command: AnyCommand) -> object:
        """Apply one command and return its reply, or raise a SessionStoreError."""
        self.commands_processed += 1
        try:
            self._now = self._clock()
            return self._handlers[type(command)](command)
        except SessionStoreError:
            raise
        except Exception as error:
            operation = getattr(command, "operation", type(command).__name__)
            raise InternalError(operation, error) from error

    # -- sessions: lookup, touch, expiry ---------------------------------------

    def _live(self, session_id: object) -> _SessionRecord:
        """The live session with this id; SessionNotFound if missing or expired."""
        if type(session_id) is str:
            record = self._sessions.get(session_id)
            if record is not None and record.expires_at > self._now:
                if record.leases:
                    self._release_expired_leases(record)
                return record
        raise SessionNotFound(_check_id(session_id, "session id"))

    def _touch(self, record: _SessionRecord) -> None:
        record.expires_at = self._now + record.ttl
        record.last_accessed = self._wall()

    def _schedule(self, record: _SessionRecord) -> None:
        """Keep the invariant: the record's heap entry is due no later than it is."""
        if record.expires_at < record.heap_deadline:
            if record.heap_deadline != math.inf:
                self._stale_entries += 1
            record.heap_deadline = record.expires_at
            heapq.heappush(self._deadlines, (record.expires_at, next(self._heap_seq), record))

    def _snapshot(self, record: _SessionRecord) -> Session:
        return Session(
            id=record.id,
            created_at=record.created_at,
            last_accessed=record.last_accessed,
            ttl=record.ttl,
            metadata=record.metadata,
            last_worker_id=record.last_worker_id,
            variable_count=len(record.variables),
            program_ids=tuple(record.programs),
            total_variable_updates=record.total_variable_updates,
        )

    def _new_session(self, session_id: str, ttl: float, metadata: FrozenMapping) -> _SessionRecord:
        existing = self._sessions.get(session_id)
        if existing is not None:  # expired but not yet swept: it is gone, never revived
            self._remove_session(existing, "expired")
        elif self._max_sessions is not None and len(self._sessions) >= self._max_sessions:
            self.sweep(count_run=False)
            if len(self._sessions) >= self._max_sessions:
                raise SessionLimitExceeded(self._max_sessions)
        wall = self._wall()
        record = _SessionRecord(
            id=session_id,
            created_at=wall,
            last_accessed=wall,
            ttl=ttl,
            expires_at=self._now + ttl,
            heap_deadline=math.inf,
            metadata=metadata,
        )
        self._sessions[session_id] = record
        self._schedule(record)
        self.sessions_created += 1
        self.counters.count_session("created")
        return record

    def _remove_session(self, record: _SessionRecord, event: str) -> None:
        del self._sessions[record.id]
        if record.heap_deadline != math.inf:
            self._stale_entries += 1
        self.variable_count -= len(record.variables)
        if event == "expired":
            self.sessions_expired += 1
        else:
            self.sessions_deleted += 1
        self.counters.count_session(event)
        if record.id in self.watched:
            self.changes.append(
                VariableChange(
                    "session_closed",
                    record.id,
                    None,
                    None,
                    None,
                    None,
                    None,
                    self.revision,
                    EMPTY_MAPPING,
                )
            )

    def sweep(self, *, count_run: bool = True) -> int:
        """Remove every expired session and global program; return the sessions removed."""
        now = self._now = self._clock()
        removed = 0
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, record = heapq.heappop(deadlines)
            if self._sessions.get(record.id) is not record or deadline != record.heap_deadline:
                self._stale_entries -= 1
                continue
            if record.expires_at <= now:
                record.heap_deadline = math.inf
                self._remove_session(record, "expired")
                self._stale_entries -= 1
                removed += 1
            else:  # touched since it was scheduled: due again at its new deadline
                record.heap_deadline = record.expires_at
                heapq.heappush(deadlines, (record.expires_at, next(self._heap_seq), record))
        programs = self._program_deadlines
        while programs and programs[0][0] <= now:
            _, _, program_id, program = heapq.heappop(programs)
            if self._global_programs.get(program_id) is program:
                del self._global_programs[program_id]
        if self._stale_entries > len(self._sessions) + 1024:
            self._compact_deadlines()
        if count_run:
            self.cleanup_runs += 1
        return removed

    def _compact_deadlines(self) -> None:
        live = [
            entry
            for entry in self._deadlines
            if self._sessions.get(entry[2].id) is entry[2] and entry[0] == entry[2].heap_deadline
        ]
        heapq.heapify(live)
        self._deadlines = live
        self._stale_entries = 0

    def _expired_unswept(self) -> Iterator[_SessionRecord]:
        """Sessions past their deadline that the sweep has not removed yet.

        Walks only the heap entries already due (a heap's due entries form a
        subtree at its root), so the cost follows what expired."""
        heap, now = self._deadlines, self._now
        stack = [0] if heap else []
        while stack:
            index = stack.pop()
            deadline, _, record = heap[index]
            if deadline > now:
                continue
            if (
                self._sessions.get(record.id) is record
                and deadline == record.heap_deadline
                and record.expires_at <= now
            ):
                yield record
            stack.extend(child for child in (2 * index + 1, 2 * index + 2) if child < len(heap))

    # -- session handlers -------------------------------------------------------

    def _create_session(self, command: CreateSession) -> Session:
        session_id = _check_id(command.session_id, "session id")
        ttl = self._default_ttl if command.ttl is None else _check_ttl(command.ttl)
        metadata = _check_metadata(command.metadata)
        record = self._sessions.get(session_id)
        if record is not None and record.expires_at > self._now:
            self._touch(record)
            return self._snapshot(record)
        return self._snapshot(self._new_session(session_id, ttl, metadata))

    def _get_session(self, command: GetSession) -> Session:
        record = self._live(command.session_id)
        self._touch(record)
        return self._snapshot(record)

    def _update_session(self, command: UpdateSession) -> Session:
        record = self._live(command.session_id)
        ttl = None if command.ttl is None else _check_ttl(command.ttl)
        metadata = _check_metadata(command.metadata)
        if ttl is not None:
            record.ttl = ttl
        if metadata:
            record.metadata = MappingProxyType({**record.metadata, **metadata})
        self._touch(record)
        self._schedule(record)
        return self._snapshot(record)

    def _delete_session(self, command: DeleteSession) -> None:
        session_id = _check_id(command.session_id, "session id")
        record = self._sessions.get(session_id)
        if record is not None:
            self._remove_session(record, "deleted" if record.expires_at > self._now else "expired")

    def _session_exists(self, command: SessionExists) -> bool:
        session_id = _check_id(command.session_id, "session id")
        record = self._sessions.get(session_id)
        return record is not None and record.expires_at > self._now

    def _list_sessions(self, command: ListSessions) -> list[str]:
        now = self._now
        return [record.id for record in self._sessions.values() if record.expires_at > now]

    def _cleanup_expired_sessions(self, command: CleanupExpiredSessions) -> int:
        return self.sweep()

    def _store_worker_session(self, command: StoreWorkerSession) -> None:
        session_id = _check_id(command.session_id, "session id")
        worker_id = _check_id(command.worker_id, "worker id")
        record = self._sessions.get(session_id)
        if record is None or record.expires_at <= self._now:
            record = self._new_session(session_id, self._default_ttl, EMPTY_MAPPING)
        record.last_worker_id = worker_id
        self._touch(record)

    def _get_stats(self, command: GetStats) -> StoreStats:
        unswept = list(self._expired_unswept())
        now = self._now
        return StoreStats(
            sessions_created=self.sessions_created,
            sessions_deleted=self.sessions_deleted,
            sessions_expired=self.sessions_expired,
            cleanup_runs=self.cleanup_runs,
            current_sessions=len(self._sessions) - len(unswept),
            current_variables=self.variable_count - sum(len(r.variables) for r in unswept),
            global_programs=sum(1 for p in self._global_programs.values() if p.expires_at > now),
            commands_processed=self.commands_processed,
            mailbox_depth=self.mailbox_depth(),
        )

    # -- programs ----------------------------------------------------------------

    @staticmethod
    def _copy_program(data: object) -> object:
        try:
            return copy.deepcopy(data)
        except Exception as error:
            raise InvalidArgument(
                f"program data {describe(data)} cannot be copied: {error}"
            ) from None

    def _store_program(self, command: StoreProgram) -> None:
        record = self._live(command.session_id)
        program_id = _check_id(command.program_id, "program id")
        record.programs[program_id] = self._copy_program(command.data)
        self._touch(record)

    def _get_program(self, command: GetProgram) -> object:
        record = self._live(command.session_id)
        program_id = _check_id(command.program_id, "program id")
        if program_id not in record.programs:
            raise ProgramNotFound(program_id, record.id)
        data = self._copy_program(record.programs[program_id])
        self._touch(record)
        return data

    def _delete_program(self, command: DeleteProgram) -> None:
        record = self._live(command.session_id)
        program_id = _check_id(command.program_id, "program id")
        record.programs.pop(program_id, None)
        self._touch(record)

    def _store_global_program(self, command: StoreGlobalProgram) -> None:
        program_id = _check_id(command.program_id, "program id")
        program = _GlobalProgram(
            self._copy_program(command.data), self._now + self._global_program_ttl
        )
        self._global_programs[program_id] = program
        heapq.heappush(
            self._program_deadlines, (program.expires_at, next(self._heap_seq), program_id, program)
        )

    def _get_global_program(self, command: GetGlobalProgram) -> object:
        program_id = _check_id(command.program_id, "program id")
        program = self._global_programs.get(program_id)
        if program is None or program.expires_at <= self._now:
            raise ProgramNotFound(program_id)
        return self._copy_program(program.data)

    def _delete_global_program(self, command: DeleteGlobalProgram) -> None:
        program_id = _check_id(command.program_id, "program id")
        self._global_programs.pop(program_id, None)

    # -- variables: lookup and commit -------------------------------------------

    def _resolve(self, record: _SessionRecord, identifier: object) -> Variable:
        """The variable with this id, else with this name (an id wins over a name)."""
        variables = record.variables
        if type(identifier) is str:
            variable = variables.get(identifier)
            if variable is not None:
                return variable
            variable_id = record.names.get(identifier)
            if variable_id is not None:
                return variables[variable_id]
        raise VariableNotFound(record.id, _check_identifier(identifier))

    def _release_expired_leases(self, record: _SessionRecord) -> None:
        now = self._now
        for variable_id, deadline in list(record.leases.items()):
            if deadline <= now:
                del record.leases[variable_id]
                variable = record.variables[variable_id]
                record.variables[variable_id] = attrs.evolve(
                    variable, optimizer_id=None, optimization_started_at=None
                )

    def _commit(
        self, record: _SessionRecord, kind: str, old: Variable | None, new: Variable
    ) -> None:
        record.variables[new.id] = new
        if record.id in self.watched:
            self.changes.append(
                VariableChange(
                    kind,
                    record.id,
                    new.id,
                    new.name,
                    None if old is None else old.value,
                    new.value,
                    new.version,
                    new.revision,
                    new.metadata,
                )
            )

    def _type_of(self, variable: Variable) -> TypeSpec:
        return self._specs[variable.type]

    def _validate_value(
        self, spec: TypeSpec, value: object, constraints: Mapping[str, object], operation: str
    ) -> object:
        try:
            stored = spec.validate(value)
            spec.check(stored, constraints)
        except ValidationError as error:
            self.counters.count_rejection(error, spec.name, operation)
            raise
        return stored

    def _freeze_constraints(self, spec: TypeSpec, constraints: object) -> FrozenMapping:
        if constraints is None:
            frozen = EMPTY_MAPPING
        elif not isinstance(constraints, Mapping):
            raise InvalidConstraint(f"constraints must be a mapping, got {describe(constraints)}")
        else:
            try:
                frozen = freeze_mapping(constraints)
            except (TypeError, RecursionError) as error:
                raise InvalidConstraint(
                    f"constraints {describe(constraints)} are malformed: {error}"
                ) from None
        spec.validate_constraints(frozen)
        if not frozen:
            return EMPTY_MAPPING
        # Many variables share one spec (every "temp_*" with min/max): keep one copy.
        try:
            key = (spec.name, tuple(frozen.items()))
            return self._interned_constraints.setdefault(key, frozen)
        except TypeError:  # a nested mapping is not hashable: keep it unshared
            return frozen

    def _check_unlocked(self, variable: Variable, optimizer_id: object) -> None:
        holder = variable.optimizer_id
        if holder is not None and optimizer_id != holder:
            self.counters.lock_refusals += 1
            raise VariableLocked(variable.name, holder)

    def _check_expected(self, variable: Variable, expected: int | None) -> None:
        if expected is not None and expected != variable.version:
            self.counters.version_conflicts += 1
            raise VersionConflict(expected, variable.version, variable.name)

    def _updated(
        self, variable: Variable, value: object, caller_metadata: FrozenMapping, wall: float
    ) -> Variable:
        if caller_metadata:
            base: Mapping[str, object] = {**variable.metadata, **caller_metadata}
            metadata = UpdateMetadata(base, caller_metadata.get("source", "python"), wall)
        else:
            metadata = UpdateMetadata(variable.metadata, "python", wall)
        self.revision += 1
        return Variable(
            variable.id,
            variable.name,
            variable.type,
            value,
            variable.constraints,
            metadata,
            variable.version + 1,
            variable.created_at,
            wall,
            self.revision,
            variable.optimizer_id,
            variable.optimization_started_at,
        )

    # -- variable handlers ---------------------------------------------------------

    def _register_variable(self, command: RegisterVariable) -> str:
        record = self._live(command.session_id)
        name = _check_name(command.name)
        spec = self._types.resolve(command.type)
        constraints = self._freeze_constraints(spec, command.constraints)
        caller_metadata = _check_metadata(command.metadata)
        description = command.description
        if description is not None and type(description) is not str:
            raise InvalidArgument(f"description must be a str, got {describe(description)}")
        value = self._validate_value(spec, command.initial_value, constraints, "register")
        if name in record.names:
            raise VariableExists(record.id, name)

        if description is None and not caller_metadata:
            metadata = _REGISTER_METADATA
        else:
            merged = dict(_REGISTER_METADATA)
            if description is not None:
                merged["description"] = description
            merged.update(caller_metadata)
            metadata = MappingProxyType(merged)
        variable_id = self._new_variable_id(record, name)
        wall = self._wall()
        self.revision += 1
        variable = Variable(
            variable_id, name, spec.name, value, constraints, metadata, 0, wall, wall, self.revision
        )
        record.names[name] = variable_id
        self._commit(record, "registered", None, variable)
        self.variable_count += 1
        self._touch(record)
        self.counters.count_operation("register", spec.name)
        _log.info(
            "registered variable %s (%s, %s) in session %s", name, variable_id, spec.name, record.id
        )
        return variable_id

    def _new_variable_id(self, record: _SessionRecord, name: str) -> str:
        while True:
            self._next_variable_number += 1
            variable_id = f"var_{name}_{self._next_variable_number}"
            if variable_id not in record.variables and variable_id not in record.names:
                return variable_id

    def _get_variable(self, command: GetVariable) -> Variable:
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        self._touch(record)
        self.counters.count_operation("get", variable.type)
        return variable

    def _get_variable_value(self, command: GetVariableValue) -> object:
        try:
            record = self._live(command.session_id)
            variable = self._resolve(record, command.identifier)
        except (SessionNotFound, VariableNotFound):
            return command.default
        self._touch(record)
        self.counters.count_operation("get", variable.type)
        return variable.value

    def _update_variable(self, command: UpdateVariable) -> Variable:
        # The hottest write path: optional checks run only when their argument is given.
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        caller_metadata = _check_metadata(command.metadata)
        expected = command.expected_version
        if expected is not None:
            expected = _check_version(expected, "expected_version")
        if command.optimizer_id is not None:
            _check_id(command.optimizer_id, "optimizer id")
        spec = self._specs[variable.type]
        value = self._validate_value(spec, command.value, variable.constraints, "update")
        if variable.optimizer_id is not None:
            self._check_unlocked(variable, command.optimizer_id)
        if expected is not None:
            self._check_expected(variable, expected)

        wall = self._wall()
        new = self._updated(variable, value, caller_metadata, wall)
        self._commit(record, "updated", variable, new)
        record.total_variable_updates += 1
        record.expires_at = self._now + record.ttl
        record.last_accessed = wall
        self.counters.count_operation("update", spec.name)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "updated variable %s in session %s to version %d", new.id, record.id, new.version
            )
        return new

    def _list_variables(self, command: ListVariables) -> list[Variable]:
        record = self._live(command.session_id)
        pattern = command.pattern
        if pattern is None:
            result = list(record.variables.values())
        elif type(pattern) is not str:
            raise InvalidArgument(f"pattern must be a str, got {describe(pattern)}")
        else:
            match = _glob_regex(pattern).fullmatch
            result = [v for v in record.variables.values() if match(v.name)]
        self._touch(record)
        return result

    def _delete_variable(self, command: DeleteVariable) -> None:
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        _check_optional_id(command.optimizer_id, "optimizer id")
        self._check_unlocked(variable, command.optimizer_id)

        del record.variables[variable.id]
        del record.names[variable.name]
        record.leases.pop(variable.id, None)
        self.variable_count -= 1
        self.revision += 1
        if record.id in self.watched:
            self.changes.append(
                VariableChange(
                    "deleted",
                    record.id,
                    variable.id,
                    variable.name,
                    variable.value,
                    None,
                    variable.version,
                    self.revision,
                    variable.metadata,
                )
            )
        self._touch(record)
        self.counters.count_operation("delete", variable.type)
        _log.info("deleted variable %s (%s) from session %s", variable.name, variable.id, record.id)

    def _has_variable(self, command: HasVariable) -> bool:
        try:
            record = self._live(command.session_id)
            self._resolve(record, command.identifier)
        except SessionNotFound:
            return False
        except VariableNotFound:
            self._touch(record)
            return False
        self._touch(record)
        return True

    def _get_variables(self, command: GetVariables) -> BatchGet:
        record = self._live(command.session_id)
        identifiers = command.identifiers
        if isinstance(identifiers, str | bytes | Mapping) or not isinstance(identifiers, Iterable):
            raise InvalidArgument(f"identifiers must be a list of str, got {describe(identifiers)}")
        found: dict[str, Variable] = {}
        missing: list[str] = []
        seen_missing: set[str] = set()
        variables, names = record.variables, record.names
        for identifier in identifiers:
            if type(identifier) is not str:
                _check_identifier(identifier)
            if identifier in found or identifier in seen_missing:
                continue
            variable = variables.get(identifier)
            if variable is None:
                variable_id = names.get(identifier)
                if variable_id is None:
                    _check_identifier(identifier)
                    missing.append(identifier)
                    seen_missing.add(identifier)
                    continue
                variable = variables[variable_id]
            found[identifier] = variable
        self._touch(record)
        self.counters.batch_sizes["batch_get"] = self.counters.batch_sizes.get(
            "batch_get", 0
        ) + len(found)
        return BatchGet(found, missing)

    def _update_variables(
        self, command: UpdateVariables
    ) -> dict[str, Variable | SessionStoreError]:
        record = self._live(command.session_id)
        updates = command.updates
        if not isinstance(updates, Mapping):
            raise InvalidArgument(
                f"updates must be a mapping of identifier to value, got {describe(updates)}"
            )
        for key in updates:
            if type(key) is not str:
                raise InvalidArgument(f"update keys must be str identifiers, got {describe(key)}")
        atomic = command.atomic
        if type(atomic) is not bool:
            raise InvalidArgument(f"atomic must be a bool, got {describe(atomic)}")
        caller_metadata = _check_metadata(command.metadata)
        expected_versions = self._check_expected_versions(command.expected_versions, updates)
        _check_optional_id(command.optimizer_id, "optimizer id")

        planned, errors = self._plan_updates(
            record, updates, expected_versions, command.optimizer_id
        )
        if atomic and errors:
            raise AtomicUpdateError(errors)
        results: dict[str, Variable | SessionStoreError] = {}
        wall = self._wall()
        for plan in planned:
            new = self._updated(plan.old, plan.value, caller_metadata, wall)
            self._commit(record, "updated", plan.old, new)
            results[plan.key] = new
            self.counters.count_operation("update", new.type)
        record.total_variable_updates += len(planned)
        if not atomic:
            results.update(errors)
            results = {key: results[key] for key in updates}
        self._touch(record)
        self.counters.batch_sizes["batch_update"] = self.counters.batch_sizes.get(
            "batch_update", 0
        ) + len(planned)
        if planned and _log.isEnabledFor(logging.DEBUG):
            _log.debug("updated %d variables in session %s", len(planned), record.id)
        return results

    @staticmethod
    def _check_expected_versions(value: object, updates: Mapping[str, object]) -> Mapping[str, int]:
        if value is None:
            return EMPTY_MAPPING  # type: ignore[return-value]
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"expected_versions must be a mapping, got {describe(value)}")
        for key, version in value.items():
            if key not in updates:
                raise InvalidArgument(
                    f"expected_versions names {describe(key)}, which is not being updated"
                )
            _check_version(version, f"expected version of {describe(key)}")
        return value

    def _plan_updates(
        self,
        record: _SessionRecord,
        updates: Mapping[str, object],
        expected_versions: Mapping[str, int],
        optimizer_id: object,
    ) -> tuple[list[_PlannedUpdate], dict[str, SessionStoreError]]:
        planned: list[_PlannedUpdate] = []
        errors: dict[str, SessionStoreError] = {}
        claimed: dict[str, str] = {}  # variable id -> the key that claimed it
        for key, value in updates.items():
            try:
                variable = self._resolve(record, key)
                if variable.id in claimed:
                    first = describe(claimed[variable.id])
                    raise InvalidArgument(f"{describe(key)} names the same variable as {first}")
                claimed[variable.id] = key  # even if this key fails: a second one never applies
                spec = self._type_of(variable)
                stored = self._validate_value(spec, value, variable.constraints, "update")
                self._check_unlocked(variable, optimizer_id)
                self._check_expected(variable, expected_versions.get(key))
            except SessionStoreError as error:
                errors[key] = error
                continue
            planned.append(_PlannedUpdate(key, variable, stored))
        return planned, errors

    def _export_variables(self, command: ExportVariables) -> list[dict[str, object]]:
        record = self._live(command.session_id)
        exported = [
            {
                "id": variable.id,
                "name": variable.name,
                "type": variable.type,
                "value": self._type_of(variable).to_json(variable.value),
                "constraints": thaw(variable.constraints),
                "metadata": thaw(variable.metadata),
                "version": variable.version,
                "created_at": variable.created_at,
                "updated_at": variable.updated_at,
            }
            for variable in record.variables.values()
        ]
        self._touch(record)
        return exported

    def _import_variables(self, command: ImportVariables) -> int:
        record = self._live(command.session_id)
        entries = command.exported
        if isinstance(entries, str | bytes) or not isinstance(entries, Sequence):
            raise InvalidImport(
                {}, f"import data must be a list of exported variables, got {describe(entries)}"
            )
        checked: list[Variable] = []
        errors: dict[int, str] = {}
        ids: set[str] = set()
        names: set[str] = set()
        wall = self._wall()
        for index, entry in enumerate(entries):
            try:
                variable = self._check_import_entry(record, entry, wall)
                if variable.id in ids:
                    raise InvalidArgument(f"id {describe(variable.id)} appears twice in the import")
                if variable.name in names:
                    raise InvalidArgument(
                        f"name {describe(variable.name)} appears twice in the import"
                    )
            except SessionStoreError as error:
                errors[index] = str(error)
                continue
            ids.add(variable.id)
            names.add(variable.name)
            checked.append(variable)
        if errors:
            raise InvalidImport(errors)

        for variable in checked:
            self.revision += 1
            variable = attrs.evolve(variable, revision=self.revision)
            record.names[variable.name] = variable.id
            self._commit(record, "registered", None, variable)
            counter = _ID_COUNTER.search(variable.id)
            if counter is not None:  # keep later ids from colliding with imported ones
                self._next_variable_number = max(self._next_variable_number, int(counter.group(1)))
            self.counters.count_operation("import", variable.type)
        self.variable_count += len(checked)
        self._touch(record)
        _log.info("imported %d variables into session %s", len(checked), record.id)
        return len(checked)

    def _check_import_entry(self, record: _SessionRecord, entry: object, wall: float) -> Variable:
        if not isinstance(entry, Mapping):
            raise InvalidArgument(f"entry must be a mapping, got {describe(entry)}")
        unknown = [
            key for key in entry if key not in EXPORT_KEYS and key not in _IMPORT_OPTIONAL_KEYS
        ]
        if unknown:
            raise InvalidArgument(f"unknown keys {', '.join(describe(k) for k in unknown)}")
        missing = [key for key in _REQUIRED_IMPORT_KEYS if key not in entry]
        if missing:
            raise InvalidArgument(f"missing keys {', '.join(missing)}")
        variable_id = _check_id(entry["id"], "variable id")
        name = _check_name(entry["name"])
        spec = self._types.resolve(entry["type"])
        raw_constraints = entry.get("constraints")
        if isinstance(raw_constraints, Mapping):
            raw_constraints = {key: decode_float(item) for key, item in raw_constraints.items()}
        constraints = self._freeze_constraints(spec, raw_constraints)
        try:
            value = spec.from_json(entry["value"])
            spec.check(value, constraints)
        except ValidationError as error:
            self.counters.count_rejection(error, spec.name, "import")
            raise
        metadata = _check_metadata(entry.get("metadata"))
        version = _check_version(entry.get("version", 0), "version")
        created_at = self._check_timestamp(entry.get("created_at", wall), "created_at")
        updated_at = self._check_timestamp(entry.get("updated_at", created_at), "updated_at")
        if variable_id in record.variables or variable_id in record.names:
            raise VariableExists(record.id, variable_id)
        if name in record.names or name in record.variables:
            raise VariableExists(record.id, name)
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

    @staticmethod
    def _check_timestamp(value: object, what: str) -> float:
        if not isinstance(value, bool) and isinstance(value, int | float):
            try:
                if math.isfinite(value):
                    return float(value)
            except OverflowError:
                pass
        raise InvalidArgument(f"{what} must be a finite number, got {describe(value)}")

    # -- optimization locks ----------------------------------------------------------

    def _start_optimization(self, command: StartOptimization) -> Variable:
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        optimizer_id = _check_id(command.optimizer_id, "optimizer id")
        lease = _check_lease(command.lease)
        if variable.optimizer_id is not None:
            self.counters.lock_refusals += 1
            raise VariableLocked(variable.name, variable.optimizer_id)
        locked = attrs.evolve(
            variable, optimizer_id=optimizer_id, optimization_started_at=self._wall()
        )
        record.variables[variable.id] = locked
        if lease is not None:
            record.leases[variable.id] = self._now + lease
        self._touch(record)
        return locked

    def _end_optimization(self, command: EndOptimization) -> Variable:
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        optimizer_id = _check_id(command.optimizer_id, "optimizer id")
        if variable.optimizer_id is None:
            self._touch(record)
            return variable
        if variable.optimizer_id != optimizer_id:
            self.counters.lock_refusals += 1
            raise VariableLocked(variable.name, variable.optimizer_id)
        unlocked = attrs.evolve(variable, optimizer_id=None, optimization_started_at=None)
        record.variables[variable.id] = unlocked
        record.leases.pop(variable.id, None)
        self._touch(record)
        return unlocked

    # -- introspection for the shell ------------------------------------------------------

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- watch (SPEC §10) ---------------------------------------------------------------
    # The shell registers the watcher before sending WatchSession and numbers every
    # published change; the reply's ``sequence`` tells the watcher which of those
    # its snapshot already holds, so nothing is lost or seen twice.

    def _watch_session(self, command: WatchSession) -> WatchStart:
        record = self._live(command.session_id)
        watch_filter = self._watch_filter(record, command.identifiers, command.pattern)
        token = command.token
        if token in self._watch_tokens:
            raise InvalidArgument(f"watch token {describe(token)} is already subscribed")
        self._watch_tokens[token] = record.id
        self.watched[record.id] = self.watched.get(record.id, 0) + 1
        self._touch(record)
        matches = watch_filter.matches
        return WatchStart(
            revision=self.revision,
            sequence=self.changes_published + len(self.changes),
            variables=tuple(v for v in record.variables.values() if matches(v.id, v.name)),
            filter=watch_filter,
        )

    @staticmethod
    def _watch_filter(record: _SessionRecord, identifiers: object, pattern: object) -> WatchFilter:
        if pattern is not None and type(pattern) is not str:
            raise InvalidArgument(f"pattern must be a str, got {describe(pattern)}")
        regex = None if pattern is None else _glob_regex(pattern)
        if identifiers is None:
            return WatchFilter(None, frozenset(), regex)
        if isinstance(identifiers, str | bytes | Mapping) or not isinstance(identifiers, Iterable):
            raise InvalidArgument(f"identifiers must be a list of str, got {describe(identifiers)}")
        ids: set[str] = set()
        names: set[str] = set()
        for identifier in identifiers:
            _check_identifier(identifier)
            if identifier in record.variables:
                ids.add(identifier)
                continue
            names.add(identifier)
            variable_id = record.names.get(identifier)
            if variable_id is not None:
                ids.add(variable_id)
        return WatchFilter(frozenset(ids), frozenset(names), regex)

    def _unwatch_session(self, command: UnwatchSession) -> None:
        session_id = self._watch_tokens.pop(command.token, None)
        if session_id is None:  # never subscribed (its WatchSession failed), or already ended
            return
        remaining = self.watched[session_id] - 1
        if remaining:
            self.watched[session_id] = remaining
        else:
            del self.watched[session_id]
