"""The exception hierarchy.

Every error derives from :class:`SessionStoreError` and also from the built-in a
Python caller would naturally catch (``KeyError`` for missing things,
``ValueError`` for bad values, ``TimeoutError`` for timeouts). Each carries the
facts of the failure as attributes, and ``str(error)`` is a sentence that names
the offending value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "AtomicUpdateError",
    "AuthenticationFailed",
    "CallTimeout",
    "ConnectionLost",
    "ConstraintViolation",
    "InternalError",
    "InvalidArgument",
    "InvalidConstraint",
    "InvalidImport",
    "PersistenceError",
    "ProgramNotFound",
    "ProtocolError",
    "SessionLimitExceeded",
    "SessionNotFound",
    "SessionStoreError",
    "StoreClosed",
    "UnknownType",
    "ValidationError",
    "VariableExists",
    "VariableLocked",
    "VariableNotFound",
    "VersionConflict",
    "WatchOverflow",
]


def describe(value: object, limit: int = 80) -> str:
    """A short, safe ``repr`` of a caller's value for an error message.

    At most ``limit`` characters, and as costly as those characters, not as the
    value: an argument refused for its size may hold millions of items, and a
    full ``repr`` of it would hold the event loop for seconds. Built-in strings,
    containers, mappings and attrs classes are rendered only as far as the text
    is shown (the same text as ``repr``, cut); other objects use their own ``repr``.
    """
    try:
        text = _repr_prefix(value, limit + 1)
    except Exception:  # a hostile __repr__ must not turn one error into another
        text = f"<{type(value).__name__} object>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


_SEQUENCE_BRACKETS: Final[dict[object, tuple[str, str]]] = {
    list.__repr__: ("[", "]"),
    tuple.__repr__: ("(", ")"),
    set.__repr__: ("{", "}"),
    frozenset.__repr__: ("frozenset({", "})"),
}


MAPPING_REPRS: Final[dict[object, str]] = {MappingProxyType.__repr__: "mappingproxy"}
"""Mapping types whose ``repr`` is ``Name({...})``, by their ``__repr__``: ``describe``
shows only the first items of a large one (``_frozen`` adds ``FrozenMap``)."""


def _repr_prefix(value: object, budget: int) -> str:
    """``repr(value)``, or a prefix of it at least ``budget`` characters long, built at a
    cost that follows ``budget`` (each nesting level spends budget, so even a list that
    holds itself ends)."""
    if budget <= 0:
        return ""
    if isinstance(value, str | bytes | bytearray) and len(value) > budget:
        return repr(value[:budget])[:-1]  # the rest, closing quote included, is cut anyway
    shown = type(value).__repr__
    brackets = _SEQUENCE_BRACKETS.get(shown)
    if brackets is not None and value:
        opening, closing = brackets
        if shown is tuple.__repr__ and len(value) == 1:  # type: ignore[arg-type]
            closing = ",)"
        return _items_prefix(opening, closing, value, budget)  # type: ignore[arg-type]
    if shown is dict.__repr__ and value:
        return _items_prefix("{", "}", value.items(), budget, mapping=True)  # type: ignore[attr-defined]
    name = MAPPING_REPRS.get(shown)
    if name is not None and isinstance(value, Mapping):
        return _items_prefix(f"{name}({{", "})", value.items(), budget, mapping=True)
    code = getattr(shown, "__code__", None)
    if code is not None and code.co_filename.startswith("<attrs generated"):
        fields = getattr(type(value), "__attrs_attrs__", ())
        name = type(value).__qualname__.rsplit(">.", 1)[-1]
        pairs = ((f"{a.name}=", getattr(value, a.name)) for a in fields if a.repr)
        return _items_prefix(f"{name}(", ")", pairs, budget, named=True)
    return repr(value)


def _items_prefix(
    opening: str,
    closing: str,
    items: Iterable[Any],
    budget: int,
    *,
    mapping: bool = False,
    named: bool = False,
) -> str:
    parts = [opening]
    used = len(opening)
    for index, item in enumerate(items):
        if used > budget:
            return "".join(parts)
        if index:
            parts.append(", ")
            used += 2
        if mapping:
            key, item = item
            text = _repr_prefix(key, budget - used)
            parts.append(text)
            parts.append(": ")
            used += len(text) + 2
        elif named:
            label, item = item
            parts.append(label)
            used += len(label)
        text = _repr_prefix(item, budget - used)
        parts.append(text)
        used += len(text)
    parts.append(closing)
    return "".join(parts)


class SessionStoreError(Exception):
    """Base class of every error the store raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # KeyError's own __str__ would repr() the message; keep it a sentence.
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class SessionNotFound(SessionStoreError, KeyError):
    """No live session has this id (never created, deleted or expired)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {describe(session_id)} not found")
        self.session_id = session_id


class VariableNotFound(SessionStoreError, KeyError):
    """The session has no variable with this id or name."""

    def __init__(self, session_id: str, identifier: str) -> None:
        super().__init__(
            f"variable {describe(identifier)} not found in session {describe(session_id)}"
        )
        self.session_id = session_id
        self.identifier = identifier


class ProgramNotFound(SessionStoreError, KeyError):
    """No program with this id (in the session, or globally if ``session_id`` is None)."""

    def __init__(self, program_id: str, session_id: str | None = None) -> None:
        where = "global programs" if session_id is None else f"session {describe(session_id)}"
        super().__init__(f"program {describe(program_id)} not found in {where}")
        self.program_id = program_id
        self.session_id = session_id


class VariableExists(SessionStoreError):
    """A variable with this name (or id, on import) already exists in the session."""

    def __init__(self, session_id: str, name: str) -> None:
        super().__init__(
            f"variable {describe(name)} already exists in session {describe(session_id)}"
        )
        self.session_id = session_id
        self.name = name


class UnknownType(SessionStoreError, ValueError):
    """The type name is not in the store's registry."""

    def __init__(self, type_name: object) -> None:
        super().__init__(f"unknown variable type {describe(type_name)}")
        self.type_name = type_name


class ValidationError(SessionStoreError, ValueError):
    """A value does not fit its type. ``str(error)`` is exactly ``message``."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class ConstraintViolation(ValidationError):
    """A value has the right type but breaks one of the variable's constraints."""


class InvalidConstraint(SessionStoreError, ValueError):
    """A constraint spec is malformed: unknown key, wrong kind, ``min > max``, bad regex."""


class InvalidArgument(SessionStoreError, ValueError):
    """An argument is of the wrong kind or out of range (ids, names, options)."""


class InvalidImport(SessionStoreError, ValueError):
    """Import data failed its checks; nothing was imported.

    ``errors`` maps the index of each faulty entry to what is wrong with it.
    """

    def __init__(self, errors: Mapping[int, str], message: str | None = None) -> None:
        self.errors: dict[int, str] = dict(errors)
        if message is None:
            details = "; ".join(f"entry {i}: {why}" for i, why in sorted(self.errors.items()))
            count = len(self.errors)
            noun = "entry" if count == 1 else "entries"
            message = f"import rejected, {count} faulty {noun}: {details}"
        super().__init__(message)


class AtomicUpdateError(SessionStoreError):
    """An atomic batch update had failures; nothing was applied.

    ``errors`` maps each failing identifier to its error.
    """

    def __init__(self, errors: Mapping[str, SessionStoreError]) -> None:
        self.errors: dict[str, SessionStoreError] = dict(errors)
        details = "; ".join(f"{key}: {error}" for key, error in self.errors.items())
        super().__init__(f"atomic update rejected, nothing applied: {details}")


class VariableLocked(SessionStoreError):
    """The variable is locked by an optimizer; ``optimizer_id`` names the holder."""

    def __init__(self, identifier: str, optimizer_id: str) -> None:
        super().__init__(
            f"variable {describe(identifier)} is locked by optimizer {describe(optimizer_id)}"
        )
        self.identifier = identifier
        self.optimizer_id = optimizer_id


class VersionConflict(SessionStoreError):
    """Compare-and-swap failed: the variable is not at the expected version."""

    def __init__(self, expected: int, actual: int, identifier: str | None = None) -> None:
        subject = "variable" if identifier is None else f"variable {describe(identifier)}"
        # describe(): an expected version may be an int too long to print
        super().__init__(f"{subject} is at version {actual}, expected {describe(expected)}")
        self.expected = expected
        self.actual = actual
        self.identifier = identifier


class WatchOverflow(SessionStoreError):
    """A watcher fell more than its buffer behind; its watch has ended."""

    def __init__(self, last_revision: int) -> None:
        super().__init__(
            f"watcher fell behind and was closed; last revision received: {last_revision}"
        )
        self.last_revision = last_revision


class SessionLimitExceeded(SessionStoreError):
    """``max_sessions`` live sessions already exist."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"session limit of {limit} reached")
        self.limit = limit


class StoreClosed(SessionStoreError, RuntimeError):
    """The store is not running: not started yet, stopped, or its actor died."""

    def __init__(self, message: str = "the session store is not running") -> None:
        super().__init__(message)


class CallTimeout(SessionStoreError, TimeoutError):
    """The store did not answer within ``call_timeout`` seconds."""

    def __init__(self, operation: str, timeout: float) -> None:
        super().__init__(f"{operation} got no reply within {timeout:g} s")
        self.operation = operation
        self.timeout = timeout


class InternalError(SessionStoreError, RuntimeError):
    """A handler (or a user-supplied type) raised unexpectedly.

    The state is unchanged and the store keeps serving; ``__cause__`` is the
    original exception.
    """

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(
            f"internal error in {operation}: {type(cause).__name__}: {describe(cause, 200)}"
        )
        self.operation = operation


class ConnectionLost(SessionStoreError, ConnectionError):
    """The connection to a remote store broke before the call's reply came.

    Like :class:`CallTimeout`, the call may or may not have been applied; it is
    never retried behind the caller's back. The next call connects again.
    """

    def __init__(self, message: str = "the connection to the session store was lost") -> None:
        super().__init__(message)


class AuthenticationFailed(SessionStoreError, PermissionError):
    """The server refused the client's token (or the client sent none where one is needed)."""

    def __init__(self, message: str = "the session store refused the token") -> None:
        super().__init__(message)


class ProtocolError(SessionStoreError):
    """A peer sent bytes that are not a valid frame or message of the protocol."""


class PersistenceError(SessionStoreError, RuntimeError):
    """The store's database cannot be used: it cannot be opened or read, it is not a
    sessionactor database, it is damaged or newer than this version, or a commit failed.

    After a failed commit the store stops (fail stop): every call of that turn and
    every later call gets this error, and the database keeps its last committed state.
    ``path`` names the database file.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
