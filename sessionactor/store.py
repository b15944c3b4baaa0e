"""``SessionStore``: the public async API (SPEC §2 to §4).

Every method builds one command message, puts it in the actor's mailbox and
awaits the reply future. Nothing here touches state: that belongs to the actor.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast

import anyio
from anyio.abc import TaskStatus

from . import messages as m
from ._actor import Actor
from ._frozen import freeze
from .errors import CallTimeout, InvalidArgument, SessionStoreError, StoreClosed, describe
from .model import BatchGet, Session, StoreStats, Variable, VariableChange
from .state import StoreState
from .types import TypeRegistry, TypeSpec, VariableType

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["SessionStore"]

T = TypeVar("T")
_MUTABLE_CONTAINERS: Final = (list, dict, set, bytearray)


def _detach(value: T) -> T:
    """Copy a mutable container the caller passed, so changing it later cannot
    reach the store (the message may wait in the mailbox for a while)."""
    if type(value) in _MUTABLE_CONTAINERS:
        try:
            return cast(T, freeze(value))
        except (TypeError, RecursionError):
            return value  # not JSON-like: the handler will reject it anyway
    return value


def _copy_program(data: T) -> T:
    """Program data is arbitrary: deep-copy it now, while it is still the caller's."""
    try:
        return copy.deepcopy(data)
    except Exception:
        return data  # the handler reports data that cannot be copied


def _time_out(future: asyncio.Future[object], operation: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(CallTimeout(operation, timeout))


def _positive_or_none(value: object, what: str, *, integer: bool = False) -> Any:
    if value is None:
        return None
    kind = "int" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise InvalidArgument(f"{what} must be a positive {kind} or None, got {describe(value)}")
    if not value > 0:
        raise InvalidArgument(f"{what} must be a positive {kind} or None, got {describe(value)}")
    return value


class SessionStore:
    """An actor that owns sessions and their typed, versioned variables.

    >>> async def main() -> None:
    ...     async with SessionStore() as store:
    ...         await store.create_session("s1")
    ...         await store.register_variable("s1", "temperature", "float", 0.7,
    ...                                       constraints={"min": 0.0, "max": 2.0})
    ...         variable = await store.update_variable("s1", "temperature", 0.9)
    ...         assert variable.version == 1
    """

    def __init__(
        self,
        *,
        default_ttl: float = 3600.0,
        cleanup_interval: float | None = 60.0,
        call_timeout: float | None = 5.0,
        mailbox_size: int | None = None,
        max_sessions: int | None = None,
        global_program_ttl: float = 3600.0,
        clock: Callable[[], float] | None = None,
        types: Iterable[TypeSpec] = (),
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._call_timeout: float | None = _positive_or_none(call_timeout, "call_timeout")
        self._mailbox_size: int | None = _positive_or_none(
            mailbox_size, "mailbox_size", integer=True
        )
        self._cleanup_interval: float | None = _positive_or_none(
            cleanup_interval, "cleanup_interval"
        )
        if clock is not None and not callable(clock):
            raise InvalidArgument(
                f"clock must be a callable returning seconds, got {describe(clock)}"
            )
        self._state = StoreState(
            default_ttl=default_ttl,
            max_sessions=max_sessions,
            global_program_ttl=global_program_ttl,
            clock=clock or time.monotonic,
            types=TypeRegistry(types),
        )
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._actor: Actor | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------

    def _start(self) -> Actor:
        if self._actor is not None:
            raise StoreClosed("this SessionStore has already run; create a new one")
        self._loop = asyncio.get_running_loop()
        self._actor = Actor(
            self._state,
            mailbox_size=self._mailbox_size,
            cleanup_interval=self._cleanup_interval,
            on_changes=self._publish_changes,
        )
        return self._actor

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve calls until cancelled. For ``await task_group.start(store.run)``."""
        actor = self._start()
        task_status.started()
        await actor.serve()

    async def __aenter__(self) -> Self:
        actor = self._start()
        # A plain task, not a task group: set-up and tear-down may run in different
        # tasks (pytest-asyncio fixtures), which a cancel scope would not allow.
        self._task = asyncio.get_running_loop().create_task(actor.serve(), name="sessionactor")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the actor: queued calls get StoreClosed, later calls too."""
        task = self._task
        if task is None or task.done():
            if self._actor is not None and not self._actor.finished:
                self._actor.closed = True
                self._actor.drain_closed()
            return
        task.cancel()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    @property
    def running(self) -> bool:
        """Whether the store takes calls now."""
        return self._actor is not None and not self._actor.closed

    # -- the call path -------------------------------------------------------------

    async def _call(self, command: m.Command) -> Any:
        actor = self._actor
        if actor is None or actor.closed:
            raise StoreClosed()
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[object] = loop.create_future()
        try:
            actor.mailbox.put_nowait((command, future))
        except asyncio.QueueFull:
            await self._wait_for_room(actor, command, future)
        timeout = self._call_timeout
        if timeout is None:
            return await future
        timer = loop.call_later(timeout, _time_out, future, command.operation, timeout)
        try:
            return await future
        finally:
            timer.cancel()

    async def _wait_for_room(
        self, actor: Actor, command: m.Command, future: asyncio.Future[object]
    ) -> None:
        """Back-pressure: wait for room in a bounded mailbox, within the call timeout."""
        try:
            async with asyncio.timeout(self._call_timeout):
                await actor.mailbox.put((command, future))
        except TimeoutError:
            raise CallTimeout(command.operation, cast(float, self._call_timeout)) from None
        if actor.finished:  # the loop ended while we waited: nobody else will answer
            actor.drain_closed()

    def _publish_changes(self, changes: list[VariableChange]) -> None:
        """Hook for watchers; the actor calls it after each batch's replies."""
        return None

    # -- sessions (SPEC §3) ------------------------------------------------------------

    async def create_session(
        self,
        session_id: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Create a session, or return the live one with this id unchanged (touched).

        >>> session = await store.create_session("s1", ttl=600)  # doctest: +SKIP
        """
        return cast(Session, await self._call(m.CreateSession(session_id, ttl, _detach(metadata))))

    async def get_session(self, session_id: str) -> Session:
        """The session's snapshot; touches it. ``SessionNotFound`` if missing or expired."""
        return cast(Session, await self._call(m.GetSession(session_id)))

    async def update_session(
        self,
        session_id: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Change the ttl and merge metadata into the session's."""
        return cast(Session, await self._call(m.UpdateSession(session_id, ttl, _detach(metadata))))

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and its variables; a missing session is not an error."""
        await self._call(m.DeleteSession(session_id))

    async def session_exists(self, session_id: str) -> bool:
        """Whether a live session has this id. Does not touch it."""
        return cast(bool, await self._call(m.SessionExists(session_id)))

    async def list_sessions(self) -> list[str]:
        """The ids of the live sessions."""
        return cast(list[str], await self._call(m.ListSessions()))

    async def cleanup_expired_sessions(self) -> int:
        """Remove expired sessions now; returns how many were removed."""
        return cast(int, await self._call(m.CleanupExpiredSessions()))

    async def store_worker_session(self, session_id: str, worker_id: str) -> None:
        """Record which worker serves the session, creating the session if needed."""
        await self._call(m.StoreWorkerSession(session_id, worker_id))

    async def get_stats(self) -> StoreStats:
        """Store-wide counters."""
        return cast(StoreStats, await self._call(m.GetStats()))

    # -- programs -------------------------------------------------------------------------

    async def store_program(self, session_id: str, program_id: str, data: Any) -> None:
        """Store a session-scoped program (a deep copy of ``data``)."""
        await self._call(m.StoreProgram(session_id, program_id, _copy_program(data)))

    async def get_program(self, session_id: str, program_id: str) -> Any:
        """A copy of a session-scoped program; ``ProgramNotFound`` if missing."""
        return await self._call(m.GetProgram(session_id, program_id))

    async def delete_program(self, session_id: str, program_id: str) -> None:
        """Delete a session-scoped program; a missing one is not an error."""
        await self._call(m.DeleteProgram(session_id, program_id))

    async def store_global_program(self, program_id: str, data: Any) -> None:
        """Store a global program; it expires ``global_program_ttl`` seconds later."""
        await self._call(m.StoreGlobalProgram(program_id, _copy_program(data)))

    async def get_global_program(self, program_id: str) -> Any:
        """A copy of a global program; ``ProgramNotFound`` if missing or expired."""
        return await self._call(m.GetGlobalProgram(program_id))

    async def delete_global_program(self, program_id: str) -> None:
        """Delete a global program; a missing one is not an error."""
        await self._call(m.DeleteGlobalProgram(program_id))

    # -- variables (SPEC §4) ----------------------------------------------------------------

    async def register_variable(
        self,
        session_id: str,
        name: str,
        type: str | VariableType,
        initial_value: Any,
        *,
        constraints: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> str:
        """Register a typed variable; returns its id (``var_<name>_<n>``).

        >>> await store.register_variable("s1", "temperature", "float", 0.7,
        ...     constraints={"min": 0.0, "max": 2.0})  # doctest: +SKIP
        'var_temperature_1'
        """
        command = m.RegisterVariable(
            session_id,
            name,
            type,
            _detach(initial_value),
            _detach(constraints),
            _detach(metadata),
            description,
        )
        return cast(str, await self._call(command))

    async def get_variable(self, session_id: str, identifier: str) -> Variable:
        """The variable with this id or name (an id wins over a name)."""
        return cast(Variable, await self._call(m.GetVariable(session_id, identifier)))

    async def get_variable_value(
        self, session_id: str, identifier: str, default: Any = None
    ) -> Any:
        """The variable's value, or ``default`` if the session or variable is missing."""
        return await self._call(m.GetVariableValue(session_id, identifier, default))

    async def update_variable(
        self,
        session_id: str,
        identifier: str,
        value: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        optimizer_id: str | None = None,
    ) -> Variable:
        """Validate and set a new value; returns the new snapshot (version + 1).

        ``expected_version`` makes it a compare-and-swap (``VersionConflict``);
        ``optimizer_id`` is the lock holder's id when the variable is locked.
        """
        command = m.UpdateVariable(
            session_id,
            identifier,
            _detach(value),
            _detach(metadata),
            expected_version,
            optimizer_id,
        )
        return cast(Variable, await self._call(command))

    async def list_variables(self, session_id: str, pattern: str | None = None) -> list[Variable]:
        """Variables in registration order, optionally those whose name matches a glob."""
        return cast(list[Variable], await self._call(m.ListVariables(session_id, pattern)))

    async def delete_variable(
        self, session_id: str, identifier: str, *, optimizer_id: str | None = None
    ) -> None:
        """Delete a variable; ``VariableNotFound`` if it does not exist."""
        await self._call(m.DeleteVariable(session_id, identifier, optimizer_id))

    async def has_variable(self, session_id: str, identifier: str) -> bool:
        """Whether the variable exists (False also when the session is missing)."""
        return cast(bool, await self._call(m.HasVariable(session_id, identifier)))

    async def get_variables(self, session_id: str, identifiers: Sequence[str]) -> BatchGet:
        """Many variables in one call: ``found`` by identifier as given, and ``missing``."""
        if type(identifiers) is list:
            identifiers = tuple(identifiers)
        return cast(BatchGet, await self._call(m.GetVariables(session_id, identifiers)))

    async def update_variables(
        self,
        session_id: str,
        updates: Mapping[str, Any],
        *,
        atomic: bool = False,
        metadata: Mapping[str, Any] | None = None,
        expected_versions: Mapping[str, int] | None = None,
        optimizer_id: str | None = None,
    ) -> dict[str, Variable | SessionStoreError]:
        """Update many variables in one call.

        Non-atomic: each update stands alone and the result maps each key to its
        new Variable or its error. Atomic: all or nothing; any failure raises
        ``AtomicUpdateError`` with ``.errors`` and changes nothing.
        """
        if isinstance(updates, Mapping):
            updates = {key: _detach(value) for key, value in updates.items()}
        command = m.UpdateVariables(
            session_id,
            updates,
            atomic,
            _detach(metadata),
            _detach(expected_versions),
            optimizer_id,
        )
        return cast(dict[str, Variable | SessionStoreError], await self._call(command))

    async def export_variables(self, session_id: str) -> list[dict[str, Any]]:
        """JSON-ready dicts of every variable, in registration order."""
        return cast(list[dict[str, Any]], await self._call(m.ExportVariables(session_id)))

    async def import_variables(self, session_id: str, exported: Sequence[Mapping[str, Any]]) -> int:
        """Import what ``export_variables`` gave; all entries are checked before any is applied."""
        if type(exported) is list:
            exported = [_detach(entry) for entry in exported]
        return cast(int, await self._call(m.ImportVariables(session_id, exported)))

    # -- optimization locks (SPEC §10) ---------------------------------------------------------

    async def start_optimization(
        self, session_id: str, identifier: str, optimizer_id: str, *, lease: float | None = None
    ) -> Variable:
        """Lock a variable for one optimizer; ``lease`` seconds release it by themselves."""
        command = m.StartOptimization(session_id, identifier, optimizer_id, lease)
        return cast(Variable, await self._call(command))

    async def end_optimization(
        self, session_id: str, identifier: str, optimizer_id: str
    ) -> Variable:
        """Release the optimizer's lock on a variable."""
        return cast(
            Variable, await self._call(m.EndOptimization(session_id, identifier, optimizer_id))
        )
