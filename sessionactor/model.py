"""Frozen snapshots handed to callers.

A caller never holds the actor's own mutable records. ``Variable`` is itself
immutable, so the actor stores variables as these snapshots and replaces them on
every change: a read returns the stored object with no copy, and nothing a
caller does to it can reach the store. Snapshots compare by value and (except
``BatchGet``, which holds the caller's own dict and list) can be hashed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "BatchGet",
    "Session",
    "StoreStats",
    "Variable",
    "VariableChange",
    "build_variable",
    "next_version",
]


class _VariableSlots:
    """The storage of a :class:`Variable`, without its frozen ``__setattr__``.

    The store builds a variable on every update from fields it has already
    checked; attrs' frozen ``__init__`` sets each field through
    ``object.__setattr__``, which costs three times as much as plain slot stores.
    :func:`build_variable` fills an instance of this class and then makes it a
    ``Variable``: a ``__class__`` change CPython allows, and checks quickly, because
    ``Variable`` adds no slots of its own to these.
    """

    __slots__ = (
        "constraints",
        "created_at",
        "id",
        "metadata",
        "name",
        "optimization_started_at",
        "optimizer_id",
        "revision",
        "type",
        "updated_at",
        "value",
        "version",
    )


@attrs.frozen(weakref_slot=False)
class Variable(_VariableSlots):
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
        """Whether an optimizer holds this variable's lock."""
        return self.optimizer_id is not None


def build_variable(
    id: str,
    name: str,
    type: str,
    value: object,
    constraints: Mapping[str, object],
    metadata: Mapping[str, object],
    version: int,
    created_at: float,
    updated_at: float,
    revision: int,
    optimizer_id: str | None = None,
    optimization_started_at: float | None = None,
) -> Variable:
    """A :class:`Variable` from fields the caller vouches for, built fast (no validation)."""
    variable: Any = object.__new__(_VariableSlots)
    variable.id = id
    variable.name = name
    variable.type = type
    variable.value = value
    variable.constraints = constraints
    variable.metadata = metadata
    variable.version = version
    variable.created_at = created_at
    variable.updated_at = updated_at
    variable.revision = revision
    variable.optimizer_id = optimizer_id
    variable.optimization_started_at = optimization_started_at
    variable.__class__ = Variable
    return variable  # type: ignore[no-any-return]


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


@attrs.frozen(weakref_slot=False, hash=False)
class BatchGet:
    """The result of ``get_variables``: found variables keyed by identifier as given,
    and the identifiers that matched nothing, in input order."""

    found: dict[str, Variable]
    missing: list[str]


@attrs.frozen(weakref_slot=False)
class StoreStats:
    """Store-wide counters: sessions created, deleted and expired, sweeps, what is held
    now, commands handled, and calls waiting in the mailbox."""

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
    """One committed change, as a watcher sees it.

    ``kind`` is ``initial``, ``registered``, ``updated``, ``deleted`` or
    ``session_closed``; the last has no variable and ``revision`` of the store
    at the time the session went away. ``variable`` is the whole snapshot after
    the change (it does not take part in comparisons).
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
    variable: Variable | None = attrs.field(default=None, eq=False, repr=False)
    """The whole variable after the change (None for ``deleted`` and ``session_closed``)."""


def next_version(
    old: Variable, value: object, metadata: Mapping[str, object], updated_at: float, revision: int
) -> Variable:
    """``old`` updated to ``value``: one version on, built fast like :func:`build_variable`."""
    variable: Any = object.__new__(_VariableSlots)
    variable.id = old.id
    variable.name = old.name
    variable.type = old.type
    variable.value = value
    variable.constraints = old.constraints
    variable.metadata = metadata
    variable.version = old.version + 1
    variable.created_at = old.created_at
    variable.updated_at = updated_at
    variable.revision = revision
    variable.optimizer_id = old.optimizer_id
    variable.optimization_started_at = old.optimization_started_at
    variable.__class__ = Variable
    return variable  # type: ignore[no-any-return]
