"""Command messages: one class per operation, each with one handler in ``state.py``.

The store turns every public call into one of these and puts it in the actor's
mailbox. ``operation`` names the call for errors, spans and metrics. Fields hold
the caller's arguments as given; the handler validates them, so the functional
core is safe against garbage even when driven directly.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

__all__ = [
    "CleanupExpiredSessions",
    "Command",
    "CreateSession",
    "DeleteGlobalProgram",
    "DeleteProgram",
    "DeleteSession",
    "DeleteVariable",
    "EndOptimization",
    "ExportVariables",
    "GetGlobalProgram",
    "GetProgram",
    "GetSession",
    "GetStats",
    "GetVariable",
    "GetVariableValue",
    "GetVariables",
    "HasVariable",
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
]


class Command:
    """Base of all command messages."""

    __slots__ = ()
    operation: ClassVar[str]


# Sessions -------------------------------------------------------------------


@attrs.frozen
class CreateSession(Command):
    operation: ClassVar[str] = "create_session"
    session_id: object
    ttl: object = None
    metadata: object = None


@attrs.frozen
class GetSession(Command):
    operation: ClassVar[str] = "get_session"
    session_id: object


@attrs.frozen
class UpdateSession(Command):
    operation: ClassVar[str] = "update_session"
    session_id: object
    ttl: object = None
    metadata: object = None


@attrs.frozen
class DeleteSession(Command):
    operation: ClassVar[str] = "delete_session"
    session_id: object


@attrs.frozen
class SessionExists(Command):
    operation: ClassVar[str] = "session_exists"
    session_id: object


@attrs.frozen
class ListSessions(Command):
    operation: ClassVar[str] = "list_sessions"


@attrs.frozen
class CleanupExpiredSessions(Command):
    operation: ClassVar[str] = "cleanup_expired_sessions"


@attrs.frozen
class StoreWorkerSession(Command):
    operation: ClassVar[str] = "store_worker_session"
    session_id: object
    worker_id: object


@attrs.frozen
class GetStats(Command):
    operation: ClassVar[str] = "get_stats"


# Programs -------------------------------------------------------------------


@attrs.frozen
class StoreProgram(Command):
    operation: ClassVar[str] = "store_program"
    session_id: object
    program_id: object
    data: object


@attrs.frozen
class GetProgram(Command):
    operation: ClassVar[str] = "get_program"
    session_id: object
    program_id: object


@attrs.frozen
class DeleteProgram(Command):
    operation: ClassVar[str] = "delete_program"
    session_id: object
    program_id: object


@attrs.frozen
class StoreGlobalProgram(Command):
    operation: ClassVar[str] = "store_global_program"
    program_id: object
    data: object


@attrs.frozen
class GetGlobalProgram(Command):
    operation: ClassVar[str] = "get_global_program"
    program_id: object


@attrs.frozen
class DeleteGlobalProgram(Command):
    operation: ClassVar[str] = "delete_global_program"
    program_id: object


# Variables ------------------------------------------------------------------


@attrs.frozen
class RegisterVariable(Command):
    operation: ClassVar[str] = "register_variable"
    session_id: object
    name: object
    type: object
    initial_value: object
    constraints: object = None
    metadata: object = None
    description: object = None


@attrs.frozen
class GetVariable(Command):
    operation: ClassVar[str] = "get_variable"
    session_id: object
    identifier: object


@attrs.frozen
class GetVariableValue(Command):
    operation: ClassVar[str] = "get_variable_value"
    session_id: object
    identifier: object
    default: object = None


@attrs.frozen
class UpdateVariable(Command):
    operation: ClassVar[str] = "update_variable"
    session_id: object
    identifier: object
    value: object
    metadata: object = None
    expected_version: object = None
    optimizer_id: object = None


@attrs.frozen
class ListVariables(Command):
    operation: ClassVar[str] = "list_variables"
    session_id: object
    pattern: object = None


@attrs.frozen
class DeleteVariable(Command):
    operation: ClassVar[str] = "delete_variable"
    session_id: object
    identifier: object
    optimizer_id: object = None


@attrs.frozen
class HasVariable(Command):
    operation: ClassVar[str] = "has_variable"
    session_id: object
    identifier: object


@attrs.frozen
class GetVariables(Command):
    operation: ClassVar[str] = "get_variables"
    session_id: object
    identifiers: object


@attrs.frozen
class UpdateVariables(Command):
    operation: ClassVar[str] = "update_variables"
    session_id: object
    updates: object
    atomic: object = False
    metadata: object = None
    expected_versions: object = None
    optimizer_id: object = None


@attrs.frozen
class ExportVariables(Command):
    operation: ClassVar[str] = "export_variables"
    session_id: object


@attrs.frozen
class ImportVariables(Command):
    operation: ClassVar[str] = "import_variables"
    session_id: object
    exported: object


@attrs.frozen
class StartOptimization(Command):
    operation: ClassVar[str] = "start_optimization"
    session_id: object
    identifier: object
    optimizer_id: object
    lease: object = None


@attrs.frozen
class EndOptimization(Command):
    operation: ClassVar[str] = "end_optimization"
    session_id: object
    identifier: object
    optimizer_id: object


# Watch (SPEC §10) -------------------------------------------------------------


@attrs.frozen
class WatchSession(Command):
    """Subscribe watcher ``token`` to a session: atomic with its initial snapshot."""

    operation: ClassVar[str] = "watch_variables"
    session_id: object
    token: object
    identifiers: object = None
    pattern: object = None


@attrs.frozen
class UnwatchSession(Command):
    """End watcher ``token``'s subscription; unknown tokens are ignored."""

    operation: ClassVar[str] = "unwatch_variables"
    token: object
