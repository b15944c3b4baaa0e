"""The functional core: every table of the store and one handler per command.

``StoreState`` knows nothing of asyncio. The actor calls a handler once per
message; a handler validates everything first and only then changes state, so
it either applies fully or changes nothing. Any exception that is not a
:class:`SessionStoreError` is a bug (in a handler or a user-supplied type) and
comes out as :class:`InternalError`.

Expiry is driven by ``clock`` (monotonic seconds). An expired session is hidden
from every call at once; ``sweep`` removes expired sessions using a heap of
deadlines, so its cost follows what expired, not how many sessions exist.

Work per call is bounded: arguments were copied in and measured against the
store's limits before they reached the actor, large replies are handed out as
immutable snapshots for the caller to finish (:mod:`._replies`), and what a
deletion drops is freed a chunk at a time outside the turn (``garbage``).
"""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import math
import pickle
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, cast

import attrs

from ._checks import (
    check_id,
    check_identifier,
    check_lease,
    check_metadata,
    check_name,
    check_optional_id,
    check_ttl,
    check_version,
)
from ._frozen import DEFAULT_LIMITS, EMPTY_MAPPING, FrozenMap, Limits, Owned, Refused, exact_key
from ._glob import Glob, compile_glob
from ._imports import CheckedImport, CheckedStore, check_entries, check_store
from ._journal import (
    Counters,
    GlobalProgramRemoved,
    GlobalProgramWritten,
    Loaded,
    ProgramRemoved,
    ProgramWritten,
    Record,
    SessionRemoved,
    SessionRow,
    SessionTouched,
    SessionWritten,
    VariableRemoved,
    VariableWritten,
    variable_written,
)
from ._replies import (
    Deferred,
    ExportReply,
    ListReply,
    Pickled,
    ProgramReply,
    StoreExportReply,
    finish_now,
)
from .errors import (
    AtomicUpdateError,
    ConstraintViolation,
    InternalError,
    InvalidArgument,
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
    ExportStore,
    ExportVariables,
    GetGlobalProgram,
    GetProgram,
    GetSession,
    GetStats,
    GetVariable,
    GetVariables,
    GetVariableValue,
    HasVariable,
    ImportStore,
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
from .model import (
    BatchGet,
    Session,
    StoreStats,
    Variable,
    VariableChange,
    _VariableSlots,
    next_version,
)
from .types import CompiledConstraints, TypeRegistry, TypeSpec

__all__ = ["StoreCounters", "StoreState", "UpdateMetadata", "WatchFilter", "WatchStart", "iso_utc"]

_log = logging.getLogger("sessionactor")

_REGISTER_METADATA: Final = FrozenMap({"source": "python", "created_by": "session_store"})


_new_object: Final = object.__new__
_iso_cache: list[Any] = [None, ""]  # [millisecond, its ISO text]: busy updates share one


def iso_utc(wall: float) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-27T23:08:41.123Z``; a reading no
    calendar holds (NaN, infinity, a year past 9999 from a custom clock) as ``repr``."""
    try:
        millisecond = int(wall * 1000)
        if _iso_cache[0] != millisecond:
            second, millis = divmod(millisecond, 1000)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            _iso_cache[0] = millisecond
            _iso_cache[1] = f"{text}.{millis:03d}Z"
    except (ValueError, OverflowError, OSError):
        return repr(wall)
    return _iso_cache[1]  # type: ignore[no-any-return]


class UpdateMetadata(FrozenMap):
    """A read-only view of an updated variable's metadata: the earlier entries and the
    caller's, then ``source`` and ``updated_at`` (an ISO-8601 UTC timestamp).

    An update is the hottest write, and most callers never read its metadata, so
    the merged dict and its timestamp are built on first read instead of on every
    update; the earlier entries are shared, not copied.
    """

    __slots__ = ("_base", "_source", "_wall")

    _base: Mapping[str, object]
    _source: object
    _wall: float

    def __init__(self, base: Mapping[str, object], source: object, wall: float) -> None:
        self._base = base._base if type(base) is UpdateMetadata else base
        self._source = source
        self._wall = wall
        self._data = None  # type: ignore[assignment]
        self._hash = None

    @classmethod
    def build(cls, base: Mapping[str, object], source: object, wall: float) -> UpdateMetadata:
        """``UpdateMetadata(base, source, wall)`` without the cost of calling ``__init__``."""
        metadata = _new_object(cls)
        metadata._base = base._base if type(base) is UpdateMetadata else base
        metadata._source = source
        metadata._wall = wall
        metadata._data = None  # type: ignore[assignment]
        metadata._hash = None
        return metadata

    def _view(self) -> dict[str, object]:
        merged = self._data
        if merged is None:  # two readers racing here build equal dicts: harmless
            merged = dict(self._base)
            merged["source"] = self._source
            merged["updated_at"] = iso_utc(self._wall)
            self._data = merged
        return merged

    def __getitem__(self, key: str) -> object:
        return self._view()[key]

    def __iter__(self) -> Any:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    def __contains__(self, key: object) -> bool:
        return key in self._view()

    def get(self, key: str, default: Any = None) -> Any:
        return self._view().get(key, default)

    def keys(self) -> Any:
        return self._view().keys()

    def items(self) -> Any:
        return self._view().items()

    def values(self) -> Any:
        return self._view().values()

    def __eq__(self, other: object) -> bool:
        self._view()
        return super().__eq__(other)

    def __hash__(self) -> int:
        self._view()
        return super().__hash__()

    def __repr__(self) -> str:
        return f"UpdateMetadata({self._view()!r})"

    def __reduce__(self) -> Any:
        return (FrozenMap, (self._view(),))


# ---------------------------------------------------------------------------
# Records: the actor's own mutable rows. Never handed out.


_STORE_METADATA_KEYS: Final = ("source", "created_by", "updated_at", "description")
"""Metadata entries the store writes itself: not counted against the caller's limit."""


@attrs.define(slots=True, eq=False, weakref_slot=False)
class _SessionRecord:
    id: str
    created_at: float
    last_accessed: float
    ttl: float
    expires_at: float  # monotonic
    heap_deadline: float  # deadline of this record's one live entry in the heap
    metadata: FrozenMap
    last_worker_id: str | None = None
    variables: dict[str, Variable] = attrs.Factory(dict)  # by id, in registration order
    names: dict[str, str] = attrs.Factory(dict)  # name -> id
    programs: dict[str, object] = attrs.Factory(dict)
    leases: dict[str, float] = attrs.Factory(dict)  # variable id -> lease deadline (monotonic)
    total_variable_updates: int = 0
    # Every variable in order, kept until one changes: listing and export of a large
    # session that is not being written hand out the same immutable tuple.
    snapshot: tuple[Variable, ...] | None = None
    # Expired and noticed by get_stats, but not swept yet (the sweep counts it).
    noticed: bool = False


@attrs.define(slots=True, eq=False, weakref_slot=False)
class _GlobalProgram:
    data: object
    expires_at: float


@attrs.define(slots=True, weakref_slot=False)
class StoreCounters:
    """Plain integer counts kept by the core, read by telemetry's observable
    instruments. Keys never include session ids (unbounded cardinality)."""

    variable_operations: defaultdict[tuple[str, str], int] = attrs.Factory(
        lambda: defaultdict(int)
    )  # (operation, type), besides the two below
    # type -> count of single gets and updates: the hottest counts, one increment each.
    gets: defaultdict[str, int] = attrs.Factory(lambda: defaultdict(int))
    updates: defaultdict[str, int] = attrs.Factory(lambda: defaultdict(int))
    batch_sizes: dict[str, int] = attrs.Factory(dict)  # operation -> variables
    rejections: dict[tuple[str, str, str], int] = attrs.Factory(dict)  # (reason, type, operation)
    session_events: dict[str, int] = attrs.Factory(dict)  # created / deleted / expired
    version_conflicts: int = 0
    lock_refusals: int = 0
    watch_overflows: int = 0  # counted by the shell, which owns the watchers' buffers

    def count_operation(self, operation: str, type_name: str, amount: int = 1) -> None:
        self.variable_operations[(operation, type_name)] += amount

    def operations(self) -> dict[tuple[str, str], int]:
        """Every count by (operation, type), the single gets and updates included.

        Safe to call from another thread: each table is copied in one step.
        """
        total = dict(self.variable_operations)
        for operation, table in (("get", self.gets), ("update", self.updates)):
            for type_name, count in dict(table).items():
                key = (operation, type_name)
                total[key] = total.get(key, 0) + count
        return total

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

    def count_batch(self, operation: str, amount: int) -> None:
        self.batch_sizes[operation] = self.batch_sizes.get(operation, 0) + amount


@attrs.define(slots=True, weakref_slot=False)
class _PlannedUpdate:
    key: str
    old: Variable
    value: object


@attrs.frozen(weakref_slot=False)
class WatchFilter:
    """Which variables a watch follows, resolved when it subscribed.

    ``ids`` holds the variables the identifiers named at that moment (an id wins
    over a name); ``names`` holds every identifier that was not a variable id, so
    a variable registered later under one of those names matches too. ``ids is
    None`` means no identifiers were given. ``pattern`` is the glob of
    ``list_variables``. A variable must pass every filter given.
    """

    ids: frozenset[str] | None
    names: frozenset[str]
    pattern: Glob | None

    def matches(self, variable_id: str, name: str) -> bool:
        if self.ids is not None and variable_id not in self.ids and name not in self.names:
            return False
        return self.pattern is None or self.pattern.matches(name)


@attrs.frozen(weakref_slot=False)
class WatchStart:
    """The reply to ``WatchSession``: where the watch starts and what it sees first."""

    revision: int  # the store's revision when the watch began
    sequence: int  # changes recorded before it; later ones are numbered from sequence + 1
    variables: tuple[Variable, ...]  # the matching live variables, in registration order
    filter: WatchFilter


def _check_identifiers(identifiers: object) -> Iterable[object]:
    if type(identifiers) is Refused:  # too many, or unreadable, when the call was made
        raise identifiers.error
    if isinstance(identifiers, str | bytes | Mapping) or not isinstance(identifiers, Iterable):
        raise InvalidArgument(f"identifiers must be a list of str, got {describe(identifiers)}")
    return identifiers


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
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._default_ttl = check_ttl(default_ttl)
        self._limits = limits  # also bounds what merges of metadata add up to
        if max_sessions is not None and (type(max_sessions) is not int or max_sessions < 1):
            raise InvalidArgument(
                f"max_sessions must be a positive int, got {describe(max_sessions)}"
            )
        self._max_sessions = max_sessions
        self._global_program_ttl = check_ttl(global_program_ttl)
        self._clock = clock
        self._wall_clock = wall_clock
        self.types = types if types is not None else TypeRegistry()
        self._specs = self.types.by_name()  # a variable's type is always registered
        self._now = clock()
        self._wall_now = wall_clock()
        self._debug = False  # whether update logging is on, read once per turn
        self._last_metadata = UpdateMetadata.build(EMPTY_MAPPING, None, math.nan)

        self._sessions: dict[str, _SessionRecord] = {}
        self._deadlines: list[tuple[float, int, _SessionRecord]] = []
        self._global_programs: dict[str, _GlobalProgram] = {}
        self._program_deadlines: list[tuple[float, int, str, _GlobalProgram]] = []
        self._heap_seq = itertools.count()
        self._stale_entries = 0
        # One compiled copy of each distinct constraint spec, shared by the variables
        # that use it; an entry goes when its last variable does.
        self._constraints: weakref.WeakValueDictionary[tuple[str, object], CompiledConstraints] = (
            weakref.WeakValueDictionary()
        )
        # Expired sessions get_stats noticed (off the heap), for the sweep to remove.
        self._noticed_records: list[_SessionRecord] = []
        self._noticed_sessions = 0
        self._noticed_variables = 0

        self._next_variable_number = 0
        self.next_position = 0  # orders variables when they are written to a database
        self.revision = 0
        self.variable_count = 0
        # Durability: when the shell keeps a database, every change of a turn is also
        # recorded here (see _journal.py) and touched sessions are collected for the
        # lazy write of their access times. None: no database, nothing recorded.
        self.journal: list[Record] | None = None
        self._touched: dict[str, _SessionRecord] | None = None

        self.sessions_created = 0
        self.sessions_deleted = 0
        self.sessions_expired = 0
        self.cleanup_runs = 0
        self.commands_processed = 0
        self.counters = StoreCounters()
        self.mailbox_depth: Callable[[], int] = lambda: 0
        # What deletions dropped (whole variable tables): the shell frees it a chunk at
        # a time after the turn, so that freeing a large session does not hold the actor.
        self.garbage: list[object] = []
        self.free_garbage_at_once = True  # unless a shell frees it a chunk at a time

        # Watch support: sessions with watchers, and the changes committed for them
        # since the actor last collected them.
        self.watched: dict[str, int] = {}
        self.changes: list[VariableChange] = []
        # How many changes the shell has taken from ``changes`` so far (to publish them,
        # at once or once their turn is durable). With ``len(changes)`` it numbers every
        # change, which lets a new watch drop exactly the changes its snapshot already
        # holds (revisions cannot: a ``session_closed`` takes none).
        self.changes_taken = 0
        self._watch_tokens: dict[object, str] = {}  # watcher token -> session id

        self.handlers: dict[type[AnyCommand], Callable[[Any], object]] = {
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
            ExportStore: self._export_store,
            ImportStore: self._import_store,
            StartOptimization: self._start_optimization,
            EndOptimization: self._end_optimization,
            WatchSession: self._watch_session,
            UnwatchSession: self._unwatch_session,
        }

    # -- dispatch -------------------------------------------------------------

    def handle(self, command: AnyCommand) -> object:
        """Apply one command and return its reply, or raise a SessionStoreError.

        Replies that the actor would hand out to be finished by the caller
        (large listings, exports, program copies) are finished here, at once.
        """
        self.commands_processed += 1
        self._now = self._clock()
        self._wall_now = self._wall_clock()
        self._debug = _log.isEnabledFor(logging.DEBUG)
        try:
            reply = self.handlers[type(command)](command)
            if isinstance(reply, Deferred):
                return finish_now(reply)
            return reply
        except SessionStoreError:
            raise
        except Exception as error:
            raise InternalError(_operation(command), error) from error
        finally:
            if self.garbage and self.free_garbage_at_once:
                self.garbage.clear()

    def begin_turn(self) -> None:
        """The actor is about to run a batch of handlers: one reading of each clock for all
        (a turn lasts well under a millisecond)."""
        self._now = self._clock()
        self._wall_now = self._wall_clock()
        self._debug = _log.isEnabledFor(logging.DEBUG)

    # -- sessions: lookup, touch, expiry ---------------------------------------

    def _live(self, session_id: object) -> _SessionRecord:
        """The live session with this id; SessionNotFound if missing or expired."""
        if type(session_id) is str:
            record = self._sessions.get(session_id)
            if record is not None and record.expires_at > self._now:
                if record.leases:
                    self._release_expired_leases(record)
                return record
        raise SessionNotFound(check_id(session_id, "session id"))

    def _touch(self, record: _SessionRecord) -> None:
        record.expires_at = self._now + record.ttl
        record.last_accessed = self._wall_now
        if self._touched is not None:
            self._touched[record.id] = record

    def _schedule(self, record: _SessionRecord) -> None:
        """Keep the invariant: the record's heap entry is due no later than it is."""
        if record.expires_at < record.heap_deadline:
            if record.heap_deadline != math.inf:
                self._stale_entries += 1
            record.heap_deadline = record.expires_at
            heapq.heappush(self._deadlines, (record.expires_at, next(self._heap_seq), record))
            self._compact_if_stale()

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

    def _new_session(self, session_id: str, ttl: float, metadata: FrozenMap) -> _SessionRecord:
        existing = self._sessions.get(session_id)
        if existing is not None:  # expired but not yet swept: it is gone, never revived
            self._remove_session(existing, "expired")
        elif self._max_sessions is not None and len(self._sessions) >= self._max_sessions:
            self.sweep(count_run=False)
            if len(self._sessions) >= self._max_sessions:
                raise SessionLimitExceeded(self._max_sessions)
        wall = self._wall_now
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
        if self.journal is not None:
            self._write_session(record)
        return record

    def _remove_session(self, record: _SessionRecord, event: str) -> None:
        del self._sessions[record.id]
        if self.journal is not None:
            self.journal.append(SessionRemoved(record.id))
        if record.heap_deadline != math.inf:
            self._stale_entries += 1
        if record.noticed:
            self._noticed_sessions -= 1
            self._noticed_variables -= len(record.variables)
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
        # The record may wait in the deadline heap until its entry comes up (or the
        # heap is compacted); what it held is freed now, a chunk at a time.
        if record.variables or record.programs:
            self.garbage.append(record.variables)
            self.garbage.append(record.programs)
            record.variables = {}
            record.programs = {}
        record.names = {}
        record.leases = {}
        record.snapshot = None
        record.metadata = EMPTY_MAPPING
        record.last_worker_id = None

    def _compact_if_stale(self) -> None:
        """Rebuild the deadline heap once stale entries outnumber live sessions (plus a
        margin), wherever entries go stale: with no sweep (``cleanup_interval=None``)
        sessions created and deleted would otherwise leave entries without bound.
        Not called while a sweep removes sessions (it walks its list of them)."""
        if self._stale_entries > len(self._sessions) + 1024:
            self._compact_deadlines()

    def sweep(self, *, count_run: bool = True) -> int:
        """Remove every expired session and global program; return the sessions removed."""
        now = self._now = self._clock()
        noticed, self._noticed_records = self._noticed_records, []
        removed = 0
        for record in noticed + self._pop_due():
            if self._sessions.get(record.id) is record:  # not deleted or replaced meanwhile
                self._remove_session(record, "expired")
                removed += 1
        self._sweep_programs(now)
        self._compact_if_stale()
        if count_run:
            self.cleanup_runs += 1
        return removed

    def _pop_due(self) -> list[_SessionRecord]:
        """Take every due entry off the deadline heap; the sessions that have expired.

        A session touched since its entry was pushed is due again later: it gets a
        new entry. So the work follows what came due, not how many sessions live.
        """
        now = self._now
        expired: list[_SessionRecord] = []
        # Read the heap anew each time: rescheduling may compact it into a new list.
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, record = heapq.heappop(self._deadlines)
            if self._sessions.get(record.id) is not record or deadline != record.heap_deadline:
                self._stale_entries -= 1  # an entry left behind by a touch or a removal
                continue
            record.heap_deadline = math.inf  # its one live entry is off the heap
            if record.expires_at <= now:
                expired.append(record)
            else:
                self._schedule(record)
        return expired

    def _sweep_programs(self, now: float) -> None:
        programs = self._program_deadlines
        while programs and programs[0][0] <= now:
            _, _, program_id, program = heapq.heappop(programs)
            if self._global_programs.get(program_id) is program:
                del self._global_programs[program_id]
                if self.journal is not None:
                    self.journal.append(GlobalProgramRemoved(program_id))
        self._compact_program_deadlines()

    def _compact_program_deadlines(self) -> None:
        """Drop heap entries of replaced and deleted programs once they outnumber the
        live ones (plus a margin): the heap stays bounded by what is live."""
        programs = self._program_deadlines
        if len(programs) > 2 * len(self._global_programs) + 1024:
            live = [e for e in programs if self._global_programs.get(e[2]) is e[3]]
            heapq.heapify(live)
            self._program_deadlines = live

    def _compact_deadlines(self) -> None:
        live = [
            entry
            for entry in self._deadlines
            if self._sessions.get(entry[2].id) is entry[2] and entry[0] == entry[2].heap_deadline
        ]
        heapq.heapify(live)
        self._deadlines = live
        self._stale_entries = 0

    def _notice_expired(self) -> None:
        """Count the sessions that expired since the last look, without sweeping them
        (the sweep counts and closes them). Each is taken off the deadline heap once,
        so ``get_stats`` costs what newly expired, not what waits for the sweep."""
        for record in self._pop_due():
            record.noticed = True
            self._noticed_sessions += 1
            self._noticed_variables += len(record.variables)
            self._noticed_records.append(record)

    # -- session handlers -------------------------------------------------------

    def _create_session(self, command: CreateSession) -> Session:
        session_id = check_id(command.session_id, "session id")
        ttl = self._default_ttl if command.ttl is None else check_ttl(command.ttl)
        metadata = check_metadata(command.metadata)
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
        ttl = None if command.ttl is None else check_ttl(command.ttl)
        metadata = check_metadata(command.metadata)
        if ttl is not None:
            record.ttl = ttl
        if metadata:
            merged = {**record.metadata, **metadata}
            self._check_merged(merged, "session metadata")
            record.metadata = FrozenMap(merged)
        self._touch(record)
        self._schedule(record)
        if self.journal is not None:
            self._write_session(record)
        return self._snapshot(record)

    def _delete_session(self, command: DeleteSession) -> None:
        session_id = check_id(command.session_id, "session id")
        record = self._sessions.get(session_id)
        if record is not None:
            self._remove_session(record, "deleted" if record.expires_at > self._now else "expired")
            self._compact_if_stale()

    def _session_exists(self, command: SessionExists) -> bool:
        session_id = check_id(command.session_id, "session id")
        record = self._sessions.get(session_id)
        return record is not None and record.expires_at > self._now

    def _list_sessions(self, command: ListSessions) -> list[str]:
        now = self._now
        return [record.id for record in self._sessions.values() if record.expires_at > now]

    def _cleanup_expired_sessions(self, command: CleanupExpiredSessions) -> int:
        return self.sweep()

    def _store_worker_session(self, command: StoreWorkerSession) -> None:
        session_id = check_id(command.session_id, "session id")
        worker_id = check_id(command.worker_id, "worker id")
        record = self._sessions.get(session_id)
        if record is None or record.expires_at <= self._now:
            record = self._new_session(session_id, self._default_ttl, EMPTY_MAPPING)
        record.last_worker_id = worker_id
        self._touch(record)
        if self.journal is not None:
            self._write_session(record)

    def _get_stats(self, command: GetStats) -> StoreStats:
        self._notice_expired()
        self._sweep_programs(self._now)  # an expired program is gone for every call anyway
        return StoreStats(
            sessions_created=self.sessions_created,
            sessions_deleted=self.sessions_deleted,
            sessions_expired=self.sessions_expired,
            cleanup_runs=self.cleanup_runs,
            current_sessions=len(self._sessions) - self._noticed_sessions,
            current_variables=self.variable_count - self._noticed_variables,
            global_programs=len(self._global_programs),
            commands_processed=self.commands_processed,
            mailbox_depth=self.mailbox_depth(),
        )

    # -- programs ----------------------------------------------------------------

    def _own_program(self, data: object) -> object:
        """Program data as the store keeps it: copied in already, or copied here; with a
        database, pickled (a private copy and the form the database keeps)."""
        if type(data) is Refused:
            raise data.error
        if type(data) is Owned:
            data = data.value
        else:
            try:
                data = copy.deepcopy(data)
            except Exception as error:
                raise InvalidArgument(
                    f"program data {describe(data)} cannot be copied: {error}"
                ) from None
        if self.journal is None:
            return data
        try:
            return Pickled(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as error:
            raise InvalidArgument(
                f"program data {describe(data)} cannot be kept in a database "
                f"(it must pickle): {error}"
            ) from None

    def _store_program(self, command: StoreProgram) -> None:
        record = self._live(command.session_id)
        program_id = check_id(command.program_id, "program id")
        data = record.programs[program_id] = self._own_program(command.data)
        self._touch(record)
        if self.journal is not None:
            self.journal.append(ProgramWritten(record.id, program_id, _pickled(data)))

    def _get_program(self, command: GetProgram) -> ProgramReply:
        record = self._live(command.session_id)
        program_id = check_id(command.program_id, "program id")
        if program_id not in record.programs:
            raise ProgramNotFound(program_id, record.id)
        self._touch(record)
        return ProgramReply(record.programs[program_id])

    def _delete_program(self, command: DeleteProgram) -> None:
        record = self._live(command.session_id)
        program_id = check_id(command.program_id, "program id")
        if record.programs.pop(program_id, None) is not None and self.journal is not None:
            self.journal.append(ProgramRemoved(record.id, program_id))
        self._touch(record)

    def _store_global_program(self, command: StoreGlobalProgram) -> None:
        program_id = check_id(command.program_id, "program id")
        program = _GlobalProgram(
            self._own_program(command.data), self._now + self._global_program_ttl
        )
        replaced = self._global_programs.get(program_id)
        if replaced is not None:
            replaced.data = None  # its heap entry may stay until compacted; its data goes now
        self._global_programs[program_id] = program
        heapq.heappush(
            self._program_deadlines, (program.expires_at, next(self._heap_seq), program_id, program)
        )
        self._compact_program_deadlines()
        if self.journal is not None:
            self.journal.append(
                GlobalProgramWritten(
                    program_id, _pickled(program.data), self._wall_deadline(program.expires_at)
                )
            )

    def _get_global_program(self, command: GetGlobalProgram) -> ProgramReply:
        program_id = check_id(command.program_id, "program id")
        program = self._global_programs.get(program_id)
        if program is None or program.expires_at <= self._now:
            raise ProgramNotFound(program_id)
        return ProgramReply(program.data)

    def _delete_global_program(self, command: DeleteGlobalProgram) -> None:
        program_id = check_id(command.program_id, "program id")
        program = self._global_programs.pop(program_id, None)
        if program is not None:
            program.data = None
            self._compact_program_deadlines()
            if self.journal is not None:
                self.journal.append(GlobalProgramRemoved(program_id))

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
        raise VariableNotFound(record.id, check_identifier(identifier))

    def _release_expired_leases(self, record: _SessionRecord) -> None:
        now = self._now
        for variable_id, deadline in list(record.leases.items()):
            if deadline <= now:
                del record.leases[variable_id]
                variable = record.variables[variable_id]
                released = record.variables[variable_id] = attrs.evolve(
                    variable, optimizer_id=None, optimization_started_at=None
                )
                record.snapshot = None
                if self.journal is not None:
                    self._write_variable(record, released)

    def _commit(
        self, record: _SessionRecord, kind: str, old: Variable | None, new: Variable
    ) -> None:
        record.variables[new.id] = new
        record.snapshot = None
        if self.journal is not None:
            if old is None:  # registered or imported: a new place in the session's order
                self.next_position += 1
            self._write_variable(record, new, self.next_position if old is None else 0)
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
                    new,
                )
            )

    def _variables_snapshot(self, record: _SessionRecord) -> tuple[Variable, ...]:
        snapshot = record.snapshot
        if snapshot is None:
            snapshot = record.snapshot = tuple(record.variables.values())
        return snapshot

    def _validate_value(
        self, constraints: Mapping[str, object], value: object, operation: str
    ) -> object:
        compiled = cast(CompiledConstraints, constraints)
        try:
            if type(value) is Refused:
                raise value.error
            return compiled.check_value(value)
        except ValidationError as error:
            self.counters.count_rejection(error, compiled.type_name, operation)
            raise

    def _compile_constraints(self, spec: TypeSpec, constraints: object) -> CompiledConstraints:
        """The vetted, compiled constraints, shared with every variable that has exactly
        the same (same keys, values and value types: ``1`` is not ``1.0``)."""
        compiled = self.types.constraints(spec, constraints)
        return self._intern(compiled)

    def _intern(self, compiled: CompiledConstraints) -> CompiledConstraints:
        # Exact: it tells 1 from 1.0 and 0.0 from -0.0 (see exact_key).
        key = (compiled.type_name, exact_key(compiled))
        shared = self._constraints.get(key)
        if shared is None:
            self._constraints[key] = shared = compiled
        return shared

    def _check_merged(self, merged: Mapping[str, object], what: str) -> None:
        """Each call's metadata is measured when the call is made; merges add up, so
        their result is bounded too (every later merge copies all of it). The store's
        own entries (``source``, ``created_by``, ``updated_at``, ``description``) are not
        counted."""
        own = sum(1 for key in _STORE_METADATA_KEYS if key in merged)
        if len(merged) - own > self._limits.max_items:
            raise InvalidArgument(
                f"{what} would hold {len(merged) - own} entries, more than the limit of "
                f"{self._limits.max_items}; nothing changed"
            )

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
        self, variable: Variable, value: object, caller_metadata: FrozenMap, wall: float
    ) -> Variable:
        if caller_metadata is not EMPTY_MAPPING:  # (a FrozenMap's len() is a Python call)
            metadata = self._merged_metadata(variable, caller_metadata, wall)
        else:
            metadata = self._shared_metadata(variable, wall)
        self.revision += 1
        return next_version(variable, value, metadata, wall, self.revision)

    def _shared_metadata(self, variable: Variable, wall: float) -> UpdateMetadata:
        """The metadata of ``variable`` updated at ``wall`` with none of the caller's.

        Variables registered alike share their base metadata, and updates in one turn
        share the time: such updates share one (immutable) view. Only built here, so
        its source is always "python".
        """
        base = variable.metadata
        if type(base) is UpdateMetadata:
            base = base._base
        metadata = self._last_metadata
        if metadata._base is not base or metadata._wall != wall:
            metadata = self._last_metadata = UpdateMetadata.build(base, "python", wall)
        return metadata

    def _merged_metadata(
        self, variable: Variable, caller_metadata: FrozenMap, wall: float
    ) -> UpdateMetadata:
        """An updated variable's metadata when the caller gave some: merged with the old."""
        base: Mapping[str, object] = {**variable.metadata, **caller_metadata}
        self._check_merged(base, "variable metadata")
        return UpdateMetadata.build(base, caller_metadata.get("source", "python"), wall)

    # -- variable handlers ---------------------------------------------------------

    def _register_variable(self, command: RegisterVariable) -> str:
        record = self._live(command.session_id)
        name = check_name(command.name)
        spec = self.types.resolve(command.type)
        exist_ok = command.exist_ok
        if type(exist_ok) is not bool:
            raise InvalidArgument(f"exist_ok must be a bool, got {describe(exist_ok)}")
        constraints = self._compile_constraints(spec, command.constraints)
        caller_metadata = check_metadata(command.metadata)
        description = command.description
        if type(description) is Refused:
            raise description.error
        if description is not None and type(description) is not str:
            raise InvalidArgument(f"description must be a str, got {describe(description)}")
        value = self._validate_value(constraints, command.initial_value, "register")
        existing_id = record.names.get(name)
        if existing_id is not None:
            if exist_ok and record.variables[existing_id].type == spec.name:
                self._touch(record)
                return existing_id
            raise VariableExists(record.id, name)

        if description is None and not caller_metadata:
            metadata = _REGISTER_METADATA
        else:
            merged = dict(_REGISTER_METADATA)
            if description is not None:
                merged["description"] = description
            merged.update(caller_metadata)
            metadata = FrozenMap(merged)
        variable_id = self._new_variable_id(record, name)
        wall = self._wall_now
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
        # The hottest read: _live and _resolve written out, each a dict lookup.
        session_id, identifier = command.session_id, command.identifier
        record = self._sessions.get(session_id) if type(session_id) is str else None
        if record is None or record.expires_at <= self._now or record.leases:
            record = self._live(session_id)
        variables = record.variables
        variable = variables.get(identifier) if type(identifier) is str else None
        if variable is None:
            variable_id = record.names.get(identifier) if type(identifier) is str else None
            if variable_id is None:
                variable = self._resolve(record, identifier)
            else:
                variable = variables[variable_id]
        record.expires_at = self._now + record.ttl
        record.last_accessed = self._wall_now
        if self._touched is not None:
            self._touched[record.id] = record
        self.counters.gets[variable.type] += 1
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
        session_id, identifier = command.session_id, command.identifier
        record = self._sessions.get(session_id) if type(session_id) is str else None
        if record is None or record.expires_at <= self._now or record.leases:
            record = self._live(session_id)
        variables = record.variables
        variable = variables.get(identifier) if type(identifier) is str else None
        if variable is None:
            variable_id = record.names.get(identifier) if type(identifier) is str else None
            if variable_id is None:
                variable = self._resolve(record, identifier)
            else:
                variable = variables[variable_id]
        caller_metadata = (
            EMPTY_MAPPING if command.metadata is None else check_metadata(command.metadata)
        )
        expected = command.expected_version
        if expected is not None:
            expected = check_version(expected, "expected_version")
        if command.optimizer_id is not None:
            check_id(command.optimizer_id, "optimizer id")
        value = command.value
        constraints: CompiledConstraints = variable.constraints  # type: ignore[assignment]
        # A float within its float variable's range needs no more checking.
        if type(value) is not float or not constraints.low <= value <= constraints.high:
            try:  # _validate_value, written out
                if type(value) is Refused:
                    raise value.error
                value = constraints.check_value(value)
            except ValidationError as error:
                self.counters.count_rejection(error, variable.type, "update")
                raise
        if variable.optimizer_id is not None:
            self._check_unlocked(variable, command.optimizer_id)
        if expected is not None:
            self._check_expected(variable, expected)

        # _updated (with _shared_metadata), next_version and _commit, written out: their
        # calls are a fifth of an update.
        wall = self._wall_now
        if caller_metadata is EMPTY_MAPPING:
            metadata = self._last_metadata
            base = variable.metadata
            if type(base) is UpdateMetadata:
                base = base._base
            if metadata._base is not base or metadata._wall != wall:
                metadata = self._last_metadata = UpdateMetadata.build(base, "python", wall)
        else:
            metadata = self._merged_metadata(variable, caller_metadata, wall)
        revision = self.revision = self.revision + 1
        fresh: Any = _new_object(_VariableSlots)  # then a Variable: see build_variable
        fresh.id = variable.id
        fresh.name = variable.name
        fresh.type = variable.type
        fresh.value = value
        fresh.constraints = variable.constraints
        fresh.metadata = metadata
        fresh.version = variable.version + 1
        fresh.created_at = variable.created_at
        fresh.updated_at = wall
        fresh.revision = revision
        fresh.optimizer_id = variable.optimizer_id
        fresh.optimization_started_at = variable.optimization_started_at
        fresh.__class__ = Variable
        new: Variable = fresh
        variables[new.id] = new
        record.snapshot = None
        if self.journal is not None:
            self._write_variable(record, new)
            self._touched[record.id] = record  # type: ignore[index]
        if self.watched and record.id in self.watched:
            self.changes.append(
                VariableChange(
                    "updated",
                    record.id,
                    new.id,
                    new.name,
                    variable.value,
                    new.value,
                    new.version,
                    new.revision,
                    new.metadata,
                    new,
                )
            )
        record.total_variable_updates += 1
        record.expires_at = self._now + record.ttl
        record.last_accessed = wall
        self.counters.updates[new.type] += 1
        if self._debug:
            _log.debug(
                "updated variable %s in session %s to version %d", new.id, record.id, new.version
            )
        return new

    def _list_variables(self, command: ListVariables) -> ListReply:
        record = self._live(command.session_id)
        pattern = command.pattern
        glob = None if pattern is None else compile_glob(pattern)
        self._touch(record)
        return ListReply(self._variables_snapshot(record), glob)

    def _delete_variable(self, command: DeleteVariable) -> None:
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        check_optional_id(command.optimizer_id, "optimizer id")
        self._check_unlocked(variable, command.optimizer_id)

        del record.variables[variable.id]
        del record.names[variable.name]
        record.leases.pop(variable.id, None)
        record.snapshot = None
        if self.journal is not None:
            self.journal.append(VariableRemoved(record.id, variable.id))
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
        identifiers = _check_identifiers(command.identifiers)
        found: dict[str, Variable] = {}
        missing: list[str] = []
        seen_missing: set[str] = set()
        variables, names = record.variables, record.names
        by_id, by_name = variables.get, names.get
        for item in identifiers:
            identifier = item if type(item) is str else check_identifier(item)
            # A repeated identifier finds the same variable again: no need to skip it.
            variable = by_id(identifier)
            if variable is None:
                variable_id = by_name(identifier)
                if variable_id is None:
                    if identifier not in seen_missing:
                        check_identifier(identifier)
                        missing.append(identifier)
                        seen_missing.add(identifier)
                    continue
                variable = variables[variable_id]
            found[identifier] = variable
        self._touch(record)
        self.counters.count_batch("batch_get", len(found))
        return BatchGet(found, missing)

    def _update_variables(
        self, command: UpdateVariables
    ) -> dict[str, Variable | SessionStoreError]:
        record = self._live(command.session_id)
        updates = command.updates
        if type(updates) is Refused:
            raise updates.error
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
        caller_metadata = check_metadata(command.metadata)
        expected_versions = self._check_expected_versions(command.expected_versions, updates)
        check_optional_id(command.optimizer_id, "optimizer id")

        planned, errors = self._plan_updates(
            record, updates, expected_versions, command.optimizer_id
        )
        if atomic and errors:
            raise AtomicUpdateError(errors)
        results: dict[str, Variable | SessionStoreError] = {}
        wall = self._wall_now
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
        self.counters.count_batch("batch_update", len(planned))
        if planned and _log.isEnabledFor(logging.DEBUG):
            _log.debug("updated %d variables in session %s", len(planned), record.id)
        return results

    @staticmethod
    def _check_expected_versions(value: object, updates: Mapping[str, object]) -> Mapping[str, int]:
        if value is None:
            return EMPTY_MAPPING  # type: ignore[return-value]
        if type(value) is Refused:
            raise value.error
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"expected_versions must be a mapping, got {describe(value)}")
        for key, version in value.items():
            if key not in updates:
                raise InvalidArgument(
                    f"expected_versions names {describe(key)}, which is not being updated"
                )
            check_version(version, f"expected version of {describe(key)}")
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
                stored = self._validate_value(variable.constraints, value, "update")
                self._check_unlocked(variable, optimizer_id)
                self._check_expected(variable, expected_versions.get(key))
            except SessionStoreError as error:
                errors[key] = error
                continue
            planned.append(_PlannedUpdate(key, variable, stored))
        return planned, errors

    def _export_variables(self, command: ExportVariables) -> ExportReply:
        record = self._live(command.session_id)
        self._touch(record)
        return ExportReply(self._variables_snapshot(record), self._specs)

    def _import_variables(self, command: ImportVariables) -> int:
        record = self._live(command.session_id)
        entries = command.exported
        if type(entries) is Refused:
            raise entries.error
        if type(entries) is not CheckedImport:
            if isinstance(entries, str | bytes) or not isinstance(entries, Sequence):
                raise InvalidImport(
                    {},
                    f"import data must be a list of exported variables, got {describe(entries)}",
                )
            entries = check_entries(entries, self.types, self._wall_now)
        checked: CheckedImport = entries
        for error, type_name in checked.rejections:
            self.counters.count_rejection(error, type_name, "import")
        errors = dict(checked.errors)
        for index, variable in checked.variables:
            if variable.id in record.variables or variable.id in record.names:
                errors[index] = str(VariableExists(record.id, variable.id))
            elif variable.name in record.names or variable.name in record.variables:
                errors[index] = str(VariableExists(record.id, variable.name))
        if errors:
            raise InvalidImport(errors)
        count = self._apply_import(record, checked)
        self._touch(record)
        _log.info("imported %d variables into session %s", count, record.id)
        return count

    def _apply_import(self, record: _SessionRecord, checked: CheckedImport) -> int:
        """Add checked variables to a session: new revisions, everything else as given.

        The checked variables are the import's own until now (no one else holds
        them), so they are stamped in place with their revision and the store's
        shared constraints rather than built again: one short turn for a large
        import.
        """
        variables = [variable for _, variable in checked.variables]
        stamp = object.__setattr__  # on a Variable nobody else has seen yet
        shared: dict[int, Mapping[str, object]] = {}  # the import's constraints, interned
        revision = self.revision
        for variable in variables:
            revision += 1
            stamp(variable, "revision", revision)
            constraints = variable.constraints
            interned = shared.get(id(constraints))
            if interned is None:
                interned = shared[id(constraints)] = self._intern(
                    cast(CompiledConstraints, constraints)
                )
            if interned is not constraints:
                stamp(variable, "constraints", interned)
        self.revision = revision
        names = record.names
        if self.journal is None and record.id not in self.watched:
            record.variables.update({variable.id: variable for variable in variables})
            names.update({variable.name: variable.id for variable in variables})
            record.snapshot = None
        else:
            for variable in variables:
                names[variable.name] = variable.id
                self._commit(record, "registered", None, variable)
        # Later generated ids must not collide with imported ones.
        self._next_variable_number = max(self._next_variable_number, checked.max_id_number)
        for type_name, count in checked.type_counts:
            self.counters.count_operation("import", type_name, count)
        self.variable_count += len(variables)
        return len(variables)

    # -- the whole store ------------------------------------------------------------

    def _export_store(self, command: ExportStore) -> StoreExportReply:
        now = self._now
        sessions = tuple(
            (
                record.id,
                record.ttl,
                record.metadata,
                record.created_at,
                record.last_accessed,
                record.last_worker_id,
                tuple(record.programs.items()),
                self._variables_snapshot(record),
            )
            for record in self._sessions.values()
            if record.expires_at > now
        )
        global_programs = tuple(
            (program_id, program.data)
            for program_id, program in self._global_programs.items()
            if program.expires_at > now
        )
        return StoreExportReply(sessions, global_programs, self._specs)

    def _import_store(self, command: ImportStore) -> int:
        data = command.data
        if type(data) is Refused:
            raise data.error
        if type(data) is not CheckedStore:
            data = check_store(data, self.types, self._wall_now)
        checked: CheckedStore = data
        errors = dict(checked.errors)
        now = self._now
        for session in checked.sessions:
            existing = self._sessions.get(session.id)
            if existing is not None and existing.expires_at > now:
                errors[session.index] = f"session {describe(session.id)} already exists"
        if errors:
            raise InvalidImport(errors)
        if self._max_sessions is not None:
            live = sum(1 for r in self._sessions.values() if r.expires_at > now)
            if live + len(checked.sessions) > self._max_sessions:
                raise SessionLimitExceeded(self._max_sessions)
        for session in checked.sessions:
            record = self._new_session(session.id, session.ttl, session.metadata)
            record.created_at = session.created_at
            record.last_accessed = session.last_accessed
            record.last_worker_id = session.last_worker_id
            for program_id, program in session.programs:
                record.programs[program_id] = self._own_program(Owned(program))
                if self.journal is not None:
                    self.journal.append(
                        ProgramWritten(record.id, program_id, _pickled(record.programs[program_id]))
                    )
            if self.journal is not None:
                self._write_session(record)
            self._apply_import(record, session.variables)
        for program_id, program in checked.global_programs:
            self._store_global_program(StoreGlobalProgram(program_id, Owned(program)))
        _log.info("imported %d sessions into the store", len(checked.sessions))
        return len(checked.sessions)

    # -- optimization locks ----------------------------------------------------------

    def _start_optimization(self, command: StartOptimization) -> Variable:
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        optimizer_id = check_id(command.optimizer_id, "optimizer id")
        lease = check_lease(command.lease)
        if variable.optimizer_id is not None:
            self.counters.lock_refusals += 1
            raise VariableLocked(variable.name, variable.optimizer_id)
        locked = attrs.evolve(
            variable, optimizer_id=optimizer_id, optimization_started_at=self._wall_now
        )
        record.variables[variable.id] = locked
        record.snapshot = None
        if lease is not None:
            record.leases[variable.id] = self._now + lease
        self._touch(record)
        if self.journal is not None:
            self._write_variable(record, locked)
        return locked

    def _end_optimization(self, command: EndOptimization) -> Variable:
        record = self._live(command.session_id)
        variable = self._resolve(record, command.identifier)
        optimizer_id = check_id(command.optimizer_id, "optimizer id")
        if variable.optimizer_id is None:
            self._touch(record)
            return variable
        if variable.optimizer_id != optimizer_id:
            self.counters.lock_refusals += 1
            raise VariableLocked(variable.name, variable.optimizer_id)
        unlocked = attrs.evolve(variable, optimizer_id=None, optimization_started_at=None)
        record.variables[variable.id] = unlocked
        record.snapshot = None
        record.leases.pop(variable.id, None)
        self._touch(record)
        if self.journal is not None:
            self._write_variable(record, unlocked)
        return unlocked

    # -- durability: the journal of changes, and the state rebuilt from a database ------

    def enable_journal(self) -> None:
        """Record every change from now on (the shell persists them turn by turn)."""
        if self.journal is None:
            self.journal = []
            self._touched = {}

    def take_changes(self) -> tuple[int, list[VariableChange]]:
        """The watch changes recorded since the last call, and the number of the first."""
        changes = self.changes
        first = self.changes_taken + 1
        if changes:
            self.changes = []
            self.changes_taken += len(changes)
        return first, changes

    def take_journal(self) -> list[Record]:
        """The changes recorded since the last call (and forget them)."""
        journal = self.journal
        if not journal:
            return []
        self.journal = []
        return journal

    def counters_snapshot(self) -> Counters:
        """The store-wide counters as they stand now, for the database."""
        return Counters(
            revision=self.revision,
            next_variable_number=self._next_variable_number,
            next_position=self.next_position,
            sessions_created=self.sessions_created,
            sessions_deleted=self.sessions_deleted,
            sessions_expired=self.sessions_expired,
            cleanup_runs=self.cleanup_runs,
            commands_processed=self.commands_processed,
        )

    def record_touches(self) -> int:
        """Record the access times of the sessions used since the last call (written
        lazily: reads never cost a write of their own). Returns how many."""
        touched, journal = self._touched, self.journal
        if not touched or journal is None:
            return 0
        self._touched = {}
        count = 0
        for session_id, record in touched.items():
            if self._sessions.get(session_id) is record:
                journal.append(
                    SessionTouched(
                        session_id,
                        record.last_accessed,
                        self._wall_deadline(record.expires_at),
                        record.total_variable_updates,
                    )
                )
                count += 1
        return count

    def restore(self, loaded: Loaded, *, grace: float = 0.0) -> None:
        """Become the state a database holds; the store has not served anything yet.

        Deadlines come as wall-clock times: what expired while the store was down
        is gone now (and recorded as such, so the database forgets it too); what
        did not keeps its remaining seconds on this store's monotonic clock.
        ``grace`` seconds are added to session deadlines when the last run did not
        stop cleanly, because its latest touches were not written yet: a session
        may then live a little longer than its ttl, never shorter.
        """
        self._now = self._clock()
        self._wall_now = self._wall_clock()
        counters = loaded.counters
        self.revision = counters.revision
        self._next_variable_number = counters.next_variable_number
        self.next_position = counters.next_position
        self.sessions_created = counters.sessions_created
        self.sessions_deleted = counters.sessions_deleted
        self.sessions_expired = counters.sessions_expired
        self.cleanup_runs = counters.cleanup_runs
        self.commands_processed = counters.commands_processed
        journal = self.journal if self.journal is not None else []
        for row in loaded.sessions:
            remaining = row.expires_at - self._wall_now + grace
            if remaining <= 0:  # expired while the store was down
                journal.append(SessionRemoved(row.id))
                self.sessions_expired += 1
                self.counters.count_session("expired")
                continue
            record = _SessionRecord(
                id=row.id,
                created_at=row.created_at,
                last_accessed=row.last_accessed,
                ttl=row.ttl,
                expires_at=self._now + remaining,
                heap_deadline=math.inf,
                metadata=check_metadata(row.metadata),
                last_worker_id=row.last_worker_id,
                total_variable_updates=row.total_variable_updates,
            )
            self._sessions[row.id] = record
            self._schedule(record)
        shared: dict[tuple[str, int], tuple[object, Mapping[str, object]]] = {}
        for session_id, written in loaded.variables.items():
            owner = self._sessions.get(session_id)
            if owner is not None:
                for entry in written:
                    self._restore_variable(owner, entry, shared, journal)
        for program in loaded.programs:
            owner = self._sessions.get(program.session_id)
            if owner is not None:
                owner.programs[program.program_id] = Pickled(program.data)
        for global_program in loaded.global_programs:
            remaining = global_program.expires_at - self._wall_now
            if remaining <= 0:
                journal.append(GlobalProgramRemoved(global_program.program_id))
                continue
            kept = _GlobalProgram(Pickled(global_program.data), self._now + remaining)
            self._global_programs[global_program.program_id] = kept
            heapq.heappush(
                self._program_deadlines,
                (kept.expires_at, next(self._heap_seq), global_program.program_id, kept),
            )

    def _restore_variable(
        self,
        record: _SessionRecord,
        entry: VariableWritten,
        shared: dict[tuple[str, int], tuple[object, Mapping[str, object]]],
        journal: list[Record],
    ) -> None:
        """Adopt one loaded variable. It is the load's own (no one else has seen it), so
        it is kept as it is, with the store's interned constraints and one object per
        equal metadata stamped in. The loader gives equal mappings as one object, so
        each distinct one is compiled or checked once (``shared``: by the object's
        id, with the object itself to tell a reused id)."""
        variable = entry.variable
        stamp = object.__setattr__
        loaded_constraints = variable.constraints
        key = (variable.type, id(loaded_constraints))
        found = shared.get(key)
        if found is not None and found[0] is loaded_constraints:
            constraints = found[1]
        else:
            spec = self.types.resolve(variable.type)
            interned = self._constraints.get((spec.name, exact_key(loaded_constraints)))
            if interned is None:
                interned = self._intern(self.types.constraints(spec, loaded_constraints))
            constraints = interned
            shared[key] = (loaded_constraints, constraints)
        if constraints is not loaded_constraints:
            stamp(variable, "constraints", constraints)
        loaded_metadata = variable.metadata
        found = shared.get(("", id(loaded_metadata)))
        if found is not None and found[0] is loaded_metadata:
            metadata = found[1]
        else:
            metadata = check_metadata(loaded_metadata)
            shared["", id(loaded_metadata)] = (loaded_metadata, metadata)
        if metadata is not loaded_metadata:
            stamp(variable, "metadata", metadata)
        lease = entry.lease_expires_at
        released = False
        if variable.optimizer_id is not None and lease is not None:
            remaining = lease - self._wall_now
            if remaining > 0:
                record.leases[variable.id] = self._now + remaining
            else:  # the lease ran out while the store was down
                stamp(variable, "optimizer_id", None)
                stamp(variable, "optimization_started_at", None)
                released = True
        record.variables[variable.id] = variable
        record.names[variable.name] = variable.id
        self.variable_count += 1
        if released:
            journal.append(VariableWritten(record.id, variable, 0, None))

    def _wall_deadline(self, deadline: float) -> float:
        """A monotonic deadline as wall-clock time (what a database keeps)."""
        if deadline == math.inf:
            return math.inf
        return self._wall_now + (deadline - self._now)

    def _write_session(self, record: _SessionRecord) -> None:
        assert self.journal is not None
        self.journal.append(
            SessionWritten(
                SessionRow(
                    record.id,
                    record.created_at,
                    record.last_accessed,
                    record.ttl,
                    self._wall_deadline(record.expires_at),
                    record.metadata,
                    record.last_worker_id,
                    record.total_variable_updates,
                )
            )
        )

    def _write_variable(
        self, record: _SessionRecord, variable: Variable, position: int = 0
    ) -> None:
        assert self.journal is not None
        lease = record.leases.get(variable.id) if record.leases else None
        self.journal.append(
            variable_written(
                record.id,
                variable,
                position,
                None if lease is None else self._wall_deadline(lease),
            )
        )

    # -- introspection for the shell ------------------------------------------------------

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- watch ---------------------------------------------------------------------------
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
            sequence=self.changes_taken + len(self.changes),
            variables=tuple(v for v in record.variables.values() if matches(v.id, v.name)),
            filter=watch_filter,
        )

    @staticmethod
    def _watch_filter(record: _SessionRecord, identifiers: object, pattern: object) -> WatchFilter:
        glob = None if pattern is None else compile_glob(pattern)
        if identifiers is None:
            return WatchFilter(None, frozenset(), glob)
        ids: set[str] = set()
        names: set[str] = set()
        for identifier in _check_identifiers(identifiers):
            checked = check_identifier(identifier)
            if checked in record.variables:
                ids.add(checked)
                continue
            names.add(checked)
            variable_id = record.names.get(checked)
            if variable_id is not None:
                ids.add(variable_id)
        return WatchFilter(frozenset(ids), frozenset(names), glob)

    def _unwatch_session(self, command: UnwatchSession) -> None:
        session_id = self._watch_tokens.pop(command.token, None)
        if session_id is None:  # never subscribed (its WatchSession failed), or already ended
            return
        remaining = self.watched[session_id] - 1
        if remaining:
            self.watched[session_id] = remaining
        else:
            del self.watched[session_id]


def _operation(command: object) -> str:
    return getattr(command, "operation", type(command).__name__)


def _pickled(data: object) -> bytes:
    """The bytes a database keeps for program data (pickled by ``_own_program``)."""
    if type(data) is Pickled:
        return data.data
    return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
