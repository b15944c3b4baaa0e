"""Change records: every state change of one actor turn, in order.

The functional core appends one record per change to its journal while it
handles a turn (only when a journal is wanted: a store with a database). The
shell hands a turn's records to the persistence layer, which writes them in one
transaction. Records are plain immutable data, in the order the changes were
made (so by revision for variables), and complete: replaying them onto the
state before the turn gives the state after it.

Times are wall-clock seconds since the epoch (``time.time()``): deadlines are
kept as wall-clock instants so that they survive a restart whatever the
monotonic clock reads afterwards. ``math.inf`` means never.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .model import Variable

__all__ = [
    "Counters",
    "Loaded",
    "GlobalProgramRemoved",
    "GlobalProgramWritten",
    "ProgramRemoved",
    "ProgramWritten",
    "Record",
    "SessionRemoved",
    "SessionRow",
    "SessionTouched",
    "SessionWritten",
    "Turn",
    "VariableRemoved",
    "VariableWritten",
    "variable_written",
]


@attrs.frozen(weakref_slot=False)
class SessionRow:
    """Everything kept of a session except its variables and programs."""

    id: str
    created_at: float
    last_accessed: float
    ttl: float  # seconds; math.inf: never expires
    expires_at: float  # wall clock; math.inf: never
    metadata: Mapping[str, object]  # frozen JSON-like data
    last_worker_id: str | None
    total_variable_updates: int


@attrs.frozen(weakref_slot=False)
class SessionWritten:
    """A session was created, or its ttl, metadata or worker changed."""

    session: SessionRow


@attrs.frozen(weakref_slot=False)
class SessionTouched:
    """A session was used: its access time and deadline moved, and maybe its count of
    variable updates.

    Written lazily (the shell collects touches and flushes them now and then),
    never on the path of a read.
    """

    session_id: str
    last_accessed: float
    expires_at: float
    total_variable_updates: int


@attrs.frozen(weakref_slot=False)
class SessionRemoved:
    """A session was deleted or expired: it goes with its variables and programs."""

    session_id: str


@attrs.frozen(weakref_slot=False)
class VariableWritten:
    """A variable was registered, imported, updated, locked or unlocked.

    ``position`` orders a session's variables (registration order); it is only
    used when the variable is new (an update keeps the position it has).
    ``lease_expires_at`` is the wall-clock end of the optimizer's lease, None
    when there is no lease.
    """

    session_id: str
    variable: Variable
    position: int
    lease_expires_at: float | None


class _VariableWrittenSlots:
    """:class:`VariableWritten`'s slot layout without its frozen ``__setattr__``
    (see :func:`sessionactor.model.build_variable` for the trick)."""

    __slots__ = getattr(VariableWritten, "__slots__")  # noqa: B009 - attrs makes it


def variable_written(
    session_id: str, variable: Variable, position: int, lease_expires_at: float | None
) -> VariableWritten:
    """A :class:`VariableWritten` from fields the caller vouches for, built fast: one
    per durable update."""
    record: Any = object.__new__(_VariableWrittenSlots)
    record.session_id = session_id
    record.variable = variable
    record.position = position
    record.lease_expires_at = lease_expires_at
    record.__class__ = VariableWritten
    return record  # type: ignore[no-any-return]


@attrs.frozen(weakref_slot=False)
class VariableRemoved:
    session_id: str
    variable_id: str


@attrs.frozen(weakref_slot=False)
class ProgramWritten:
    """A session-scoped program; ``data`` is already encoded (opaque bytes)."""

    session_id: str
    program_id: str
    data: bytes


@attrs.frozen(weakref_slot=False)
class ProgramRemoved:
    session_id: str
    program_id: str


@attrs.frozen(weakref_slot=False)
class GlobalProgramWritten:
    program_id: str
    data: bytes
    expires_at: float  # wall clock


@attrs.frozen(weakref_slot=False)
class GlobalProgramRemoved:
    program_id: str


Record = (
    SessionWritten
    | SessionTouched
    | SessionRemoved
    | VariableWritten
    | VariableRemoved
    | ProgramWritten
    | ProgramRemoved
    | GlobalProgramWritten
    | GlobalProgramRemoved
)


@attrs.frozen(weakref_slot=False)
class Counters:
    """The store-wide counters, as they stand at the end of a turn."""

    revision: int  # the last revision given out
    next_variable_number: int  # the last n used in a ``var_<name>_<n>`` id
    next_position: int  # the last position given to a variable
    sessions_created: int
    sessions_deleted: int
    sessions_expired: int
    cleanup_runs: int
    commands_processed: int


@attrs.frozen(weakref_slot=False)
class Turn:
    """One actor turn's changes, to be committed in one transaction."""

    records: tuple[Record, ...]
    counters: Counters


@attrs.frozen(weakref_slot=False)
class Loaded:
    """Everything a database holds, as the records that rebuild it.

    Replaying ``sessions`` (as :class:`SessionWritten`), then each session's
    ``variables``, ``programs`` and ``global_programs`` onto an empty state, and
    taking ``counters``, gives the state of the last committed turn. Sessions come
    in creation order, variables by session (every session has an entry, maybe
    empty) in position order, programs in the order they were first stored.
    Deadlines are wall-clock times exactly as stored: what has expired is for the
    core to decide. ``clean_shutdown`` tells whether the last run ended with
    ``close(clean=True)``; a new database counts as clean.
    """

    sessions: tuple[SessionRow, ...]
    variables: Mapping[str, tuple[VariableWritten, ...]]
    programs: tuple[ProgramWritten, ...]
    global_programs: tuple[GlobalProgramWritten, ...]
    counters: Counters
    clean_shutdown: bool
