"""Command messages: one class per operation, each with one handler in ``state.py``.

The store turns every public call into one of these and puts it in the actor's
mailbox; a server decodes the same classes from the wire. ``operation`` names
the call for errors, spans, metrics and the protocol. Fields hold the caller's
arguments as copied in at the call; the handler validates them, so the
functional core is safe against garbage even when driven directly.

Messages are attrs classes with slots, and nothing changes one after it is
built; they are not declared frozen because a frozen attrs ``__init__`` sets
every field through ``object.__setattr__`` and costs three times as much, and a
message is built on every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import attrs

from .errors import SessionStoreError
from .model import BatchGet, Session, StoreStats, Variable

if TYPE_CHECKING:  # state imports this module; the reply type is named in a string below
    from .state import WatchStart  # noqa: F401

R = TypeVar("R", covariant=True)


__all__ = [
    "AnyCommand",
    "CleanupExpiredSessions",
    "Command",
    "CreateSession",
    "DeleteGlobalProgram",
    "DeleteProgram",
    "DeleteSession",
    "DeleteVariable",
    "EndOptimization",
    "ExportStore",
    "ExportVariables",
    "GetGlobalProgram",
    "GetProgram",
    "GetSession",
    "GetStats",
    "GetVariable",
    "GetVariableValue",
    "GetVariables",
    "HasVariable",
    "ImportStore",
    "ImportVariables",
    "ListSessions",
    "ListVariables",
    "RegisterVariable",
    "SessionExists",
    "StartOptimization",
    "StoreGlobalProgram",
    "StoreProgram",
    "StoreWorkerSession",
    "UpdateSession",
    "UpdateVariable",
    "UpdateVariables",
    "UnwatchSession",
    "WatchSession",
    "WatchVariables",
]


class Command(Generic[R]):
    """Base of all command messages; ``R`` is the type of the reply its caller gets.

    ``finishes``: the handler answers with a :class:`~sessionactor._replies.Deferred`
    that refers to the store's immutable snapshots, and whoever waits for the reply
    (the caller's task, or a server's connection task) turns it into ``R``. So the
    slow part of a large reply (copying, filtering, converting to JSON) never holds
    the actor.

    ``checks``: the field that may hold a :class:`~sessionactor._imports.Checking`,
    a large argument's check that the store runs in steps before it sends the
    command, so neither the actor nor the event loop is held by it.

    ``special``: either of the two (the call path tests this one flag).
    """

    __slots__ = ()
    operation: ClassVar[str]
    finishes: ClassVar[bool] = False
    checks: ClassVar[str | None] = None
    special: ClassVar[bool] = False
    internal: ClassVar[bool] = False  # sent by the store to itself, never over a connection

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.special = cls.finishes or cls.checks is not None


AnyCommand = Command[Any]


# Sessions -------------------------------------------------------------------


@attrs.define(weakref_slot=False)
class CreateSession(Command[Session]):
    operation: ClassVar[str] = "create_session"
    session_id: object
    ttl: object = None
    metadata: object = None


@attrs.define(weakref_slot=False)
class GetSession(Command[Session]):
    operation: ClassVar[str] = "get_session"
    session_id: object


@attrs.define(weakref_slot=False)
class UpdateSession(Command[Session]):
    operation: ClassVar[str] = "update_session"
    session_id: object
    ttl: object = None
    metadata: object = None


@attrs.define(weakref_slot=False)
class DeleteSession(Command[None]):
    operation: ClassVar[str] = "delete_session"
    session_id: object


@attrs.define(weakref_slot=False)
class SessionExists(Command[bool]):
    operation: ClassVar[str] = "session_exists"
    session_id: object


@attrs.define(weakref_slot=False)
class ListSessions(Command[list[str]]):
    operation: ClassVar[str] = "list_sessions"


@attrs.define(weakref_slot=False)
class CleanupExpiredSessions(Command[int]):
    operation: ClassVar[str] = "cleanup_expired_sessions"


@attrs.define(weakref_slot=False)
class StoreWorkerSession(Command[None]):
    operation: ClassVar[str] = "store_worker_session"
    session_id: object
    worker_id: object


@attrs.define(weakref_slot=False)
class GetStats(Command[StoreStats]):
    operation: ClassVar[str] = "get_stats"


# Programs -------------------------------------------------------------------


@attrs.define(weakref_slot=False)
class StoreProgram(Command[None]):
    operation: ClassVar[str] = "store_program"
    session_id: object
    program_id: object
    data: object


@attrs.define(weakref_slot=False)
class GetProgram(Command[Any]):
    operation: ClassVar[str] = "get_program"
    finishes: ClassVar[bool] = True
    session_id: object
    program_id: object


@attrs.define(weakref_slot=False)
class DeleteProgram(Command[None]):
    operation: ClassVar[str] = "delete_program"
    session_id: object
    program_id: object


@attrs.define(weakref_slot=False)
class StoreGlobalProgram(Command[None]):
    operation: ClassVar[str] = "store_global_program"
    program_id: object
    data: object


@attrs.define(weakref_slot=False)
class GetGlobalProgram(Command[Any]):
    operation: ClassVar[str] = "get_global_program"
    finishes: ClassVar[bool] = True
    program_id: object


@attrs.define(weakref_slot=False)
class DeleteGlobalProgram(Command[None]):
    operation: ClassVar[str] = "delete_global_program"
    program_id: object


# Variables ------------------------------------------------------------------


@attrs.define(weakref_slot=False)
class RegisterVariable(Command[str]):
    operation: ClassVar[str] = "register_variable"
    session_id: object
    name: object
    type: object
    initial_value: object
    constraints: object = None
    metadata: object = None
    description: object = None
    exist_ok: object = False


@attrs.define(weakref_slot=False)
class GetVariable(Command[Variable]):
    operation: ClassVar[str] = "get_variable"
    session_id: object
    identifier: object


@attrs.define(weakref_slot=False)
class GetVariableValue(Command[Any]):
    operation: ClassVar[str] = "get_variable_value"
    session_id: object
    identifier: object
    default: object = None


@attrs.define(weakref_slot=False)
class UpdateVariable(Command[Variable]):
    operation: ClassVar[str] = "update_variable"
    session_id: object
    identifier: object
    value: object
    metadata: object = None
    expected_version: object = None
    optimizer_id: object = None


@attrs.define(weakref_slot=False)
class ListVariables(Command[list[Variable]]):
    operation: ClassVar[str] = "list_variables"
    finishes: ClassVar[bool] = True
    session_id: object
    pattern: object = None


@attrs.define(weakref_slot=False)
class DeleteVariable(Command[None]):
    operation: ClassVar[str] = "delete_variable"
    session_id: object
    identifier: object
    optimizer_id: object = None


@attrs.define(weakref_slot=False)
class HasVariable(Command[bool]):
    operation: ClassVar[str] = "has_variable"
    session_id: object
    identifier: object


@attrs.define(weakref_slot=False)
class GetVariables(Command[BatchGet]):
    operation: ClassVar[str] = "get_variables"
    session_id: object
    identifiers: object


@attrs.define(weakref_slot=False)
class UpdateVariables(Command[dict[str, Variable | SessionStoreError]]):
    operation: ClassVar[str] = "update_variables"
    session_id: object
    updates: object
    atomic: object = False
    metadata: object = None
    expected_versions: object = None
    optimizer_id: object = None


@attrs.define(weakref_slot=False)
class ExportVariables(Command[list[dict[str, Any]]]):
    operation: ClassVar[str] = "export_variables"
    finishes: ClassVar[bool] = True
    session_id: object


@attrs.define(weakref_slot=False)
class ImportVariables(Command[int]):
    operation: ClassVar[str] = "import_variables"
    checks: ClassVar[str | None] = "exported"
    session_id: object
    exported: object


@attrs.define(weakref_slot=False)
class ExportStore(Command[dict[str, Any]]):
    operation: ClassVar[str] = "export_store"
    finishes: ClassVar[bool] = True


@attrs.define(weakref_slot=False)
class ImportStore(Command[int]):
    operation: ClassVar[str] = "import_store"
    checks: ClassVar[str | None] = "data"
    data: object


@attrs.define(weakref_slot=False)
class StartOptimization(Command[Variable]):
    operation: ClassVar[str] = "start_optimization"
    session_id: object
    identifier: object
    optimizer_id: object
    lease: object = None


@attrs.define(weakref_slot=False)
class EndOptimization(Command[Variable]):
    operation: ClassVar[str] = "end_optimization"
    session_id: object
    identifier: object
    optimizer_id: object


# Watch -----------------------------------------------------------------------


@attrs.define(weakref_slot=False)
class WatchSession(Command["WatchStart"]):
    """Subscribe watcher ``token`` to a session: atomic with its initial snapshot."""

    operation: ClassVar[str] = "watch_variables"
    internal: ClassVar[bool] = True
    session_id: object
    token: object
    identifiers: object = None
    pattern: object = None


@attrs.define(weakref_slot=False)
class UnwatchSession(Command[None]):
    """End watcher ``token``'s subscription; unknown tokens are ignored."""

    operation: ClassVar[str] = "unwatch_variables"
    internal: ClassVar[bool] = True
    token: object


@attrs.define(weakref_slot=False)
class WatchVariables(Command[int]):
    """Over a connection: open a watch of a session. The reply is the revision it starts
    at; its changes follow as pushed messages. A server turns it into a ``WatchSession``."""

    operation: ClassVar[str] = "watch_variables"
    session_id: object
    identifiers: object = None
    pattern: object = None
    include_initial: object = True
    buffer: object = 1024
