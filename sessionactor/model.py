"""Frozen snapshots handed to callers (SPEC §3, §4).

A caller never holds the actor's own mutable records. ``Variable`` is itself
immutable, so the actor stores variables as these snapshots and replaces them on
every change: a read returns the stored object with no copy, and nothing a
caller does to it can reach the store.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["BatchGet", "Session", "StoreStats", "Variable", "VariableChange"]


@attrs.frozen(weakref_slot=False)
class Variable:
    """One typed, constrained, versioned value in a session.

    ``version`` counts successful updates (0 at registration); ``revision`` is
    the store-wide revision of the variable's last change. ``metadata`` and
    ``constraints`` are read-only mappings. Timestamps are wall-clock seconds.
    """

    id: str
    name: str
    type: str
    value: object
    constraints: Mapping[str, object]
    metadata: Mapping[str, object]
    version: int
    created_at: float
    updated_at: float
    revision: int
    optimizer_id: str | None = None
    optimization_started_at: float | None = None

    @property
    def optimizing(self) -> bool:
        """Whether an optimizer holds this variable's lock (SPEC §10)."""
        return self.optimizer_id is not None


@attrs.frozen(weakref_slot=False)
class Session:
    """A point-in-time view of one session. Timestamps are wall-clock seconds."""

    id: str
    created_at: float
    last_accessed: float
    ttl: float
    metadata: Mapping[str, object]
    last_worker_id: str | None
    variable_count: int
    program_ids: tuple[str, ...]
    total_variable_updates: int


@attrs.frozen(weakref_slot=False)
class BatchGet:
    """The result of ``get_variables``: found variables keyed by identifier as given,
    and the identifiers that matched nothing, in input order."""

    found: dict[str, Variable]
    missing: list[str]


@attrs.frozen(weakref_slot=False)
class StoreStats:
    """Store-wide counters (SPEC §3)."""

    sessions_created: int
    sessions_deleted: int
    sessions_expired: int
    cleanup_runs: int
    current_sessions: int
    current_variables: int
    global_programs: int
    commands_processed: int
    mailbox_depth: int


@attrs.frozen(weakref_slot=False)
class VariableChange:
    """One committed change, as a watcher sees it (SPEC §10).

    ``kind`` is ``initial``, ``registered``, ``updated``, ``deleted`` or
    ``session_closed``; the last has no variable and ``revision`` of the store
    at the time the session went away.
    """

    kind: str
    session_id: str
    variable_id: str | None
    name: str | None
    old_value: object
    new_value: object
    version: int | None
    revision: int
    metadata: Mapping[str, object]
