"""``SessionStore``: the public async API (SPEC §2 to §4).

Every method builds one command message, puts it in the actor's mailbox and
awaits the reply future. Nothing here touches state: that belongs to the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast

import anyio
from anyio.abc import TaskStatus

from . import messages as m
from ._actor import Actor
from ._frozen import freeze
from ._timeouts import CallDeadlines
from ._watch import Watcher, group_by_session
from .errors import CallTimeout, InvalidArgument, SessionStoreError, StoreClosed, describe
from .model import BatchGet, Session, StoreStats, Variable, VariableChange
from .state import StoreState
from .telemetry import DEFAULT_DURATION_SAMPLE_RATIO, StoreTelemetry
from .types import TypeRegistry, TypeSpec, VariableType

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["SessionStore"]

T = TypeVar("T")
R = TypeVar("R")
_MUTABLE_CONTAINERS: Final = (list, dict, set, bytearray)


def _detach(value: T) -> T:
    """Copy a mutable container the caller passed, so changing it later cannot
    reach the store (the message may wait in the mailbox for a while)."""
    if type(value) in _MUTABLE_CONTAINERS:
        try:
            return cast(T, freeze(value))
        except Exception:  # not JSON-like, or hostile: the handler will reject it anyway
            return value
    return value


def _copy_program(data: T) -> T:
    """Program data is arbitrary: deep-copy it now, while it is still the caller's."""
    try:
        return copy.deepcopy(data)
    except Exception:
        return data  # the handler reports data that cannot be copied


def _report_actor_death(task: asyncio.Task[None]) -> None:
    """A background actor that ends with an error has crashed: log it now, once (this
    also marks the error retrieved, so asyncio does not report it again at collection)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logging.getLogger("sessionactor").error(
            "the session store's actor died; the store is closed", exc_info=error
        )


def _positive_or_none(value: object, what: str, *, integer: bool = False) -> Any:
    if value is None:
        return None
    kind = "int" if integer else "number"
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        raise InvalidArgument(f"{what} must be a positive {kind} or None, got {describe(value)}")
    if not integer:
        try:
            return float(value)  # seconds on the loop's float clock: 10**400 would overflow it
        except OverflowError:
            raise InvalidArgument(f"{what} is too large, got {describe(value)}") from None
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
        trace_calls: bool = True,
        duration_sample_ratio: float = DEFAULT_DURATION_SAMPLE_RATIO,
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
        # Telemetry (SPEC §7): counts live in the state and cost calls nothing. A span
        # per call (unless trace_calls=False) and the call.duration histogram (for a
        # share duration_sample_ratio of calls) are only wrapped around the call path
        # when their provider records: with no SDK, calls take the plain path.
        self._telemetry = StoreTelemetry(
            self._state,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            trace_calls=trace_calls,
            duration_sample_ratio=duration_sample_ratio,
        )
        if self._telemetry.instruments_calls:
            self._call = self._telemetry.instrument(self._call)  # type: ignore[method-assign,assignment]
        self._actor: Actor | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: CallDeadlines | None = None
        # Watch (SPEC §10): live watchers by session id, then by token.
        self._watchers: dict[str, dict[int, Watcher]] = {}
        self._watch_tokens = itertools.count(1)
        self._unwatch_puts: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------

    def _start(self) -> Actor:
        if self._actor is not None:
            raise StoreClosed("this SessionStore has already run; create a new one")
        self._loop = asyncio.get_running_loop()
        if self._call_timeout is not None:
            self._deadlines = CallDeadlines(self._loop, self._call_timeout)
        self._actor = Actor(
            self._state,
            mailbox_size=self._mailbox_size,
            cleanup_interval=self._cleanup_interval,
            on_changes=self._publish_changes,
            before_answer=None if self._deadlines is None else self._deadlines.expire_overdue,
        )
        return self._actor

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve calls until cancelled. For ``await task_group.start(store.run)``."""
        actor = self._start()
        task_status.started()
        await self._serve(actor)

    async def __aenter__(self) -> Self:
        actor = self._start()
        # A plain task, not a task group: set-up and tear-down may run in different
        # tasks (pytest-asyncio fixtures), which a cancel scope would not allow.
        self._task = asyncio.get_running_loop().create_task(self._serve(actor), name="sessionactor")
        self._task.add_done_callback(_report_actor_death)
        return self

    async def _serve(self, actor: Actor) -> None:
        try:
            await actor.serve()
        finally:
            self._end_watches()

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
        actor = self._actor
        if actor is not None and not actor.finished:
            # Cancelled before its first step, the task never ran ``serve`` (nor its
            # ``finally``): close the mailbox here, or later calls would wait forever.
            actor.closed = True
            actor.drain_closed()
            actor.finished = True

    @property
    def running(self) -> bool:
        """Whether the store takes calls now."""
        return self._actor is not None and not self._actor.closed

    # -- the call path -------------------------------------------------------------

    async def _call(self, command: m.Command[R]) -> R:
        actor = self._actor
        if actor is None or actor.closed:
            raise StoreClosed()
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[R] = loop.create_future()
        try:
            actor.mailbox.put_nowait((command, future))
        except asyncio.QueueFull:
            return await self._call_after_room(actor, command, future)
        if self._deadlines is not None:
            self._deadlines.watch(future, command.operation)
        return await future

    async def _call_after_room(
        self, actor: Actor, command: m.Command[R], future: asyncio.Future[R]
    ) -> R:
        """Back-pressure: wait for room in a bounded mailbox and then for the reply,
        both within one ``call_timeout``."""
        deadline = asyncio.timeout(self._call_timeout)
        try:
            async with deadline:
                await actor.mailbox.put((command, future))
                if actor.finished:  # the loop ended while we waited: nobody else will answer
                    actor.drain_closed()
                return await future
        except TimeoutError:
            if deadline.expired():
                raise CallTimeout(command.operation, cast(float, self._call_timeout)) from None
            raise

    # -- watch plumbing (SPEC §10; the watcher itself is in _watch.py) -----------------

    def _publish_changes(self, changes: list[VariableChange]) -> None:
        """Offer each committed change to its session's watchers, numbered in order.

        The actor calls this after a batch's replies are sent; offering only
        appends to bounded buffers, so it never blocks the actor.
        """
        state = self._state
        first = state.changes_published + 1
        state.changes_published += len(changes)
        watchers = self._watchers
        if not watchers:
            return
        ended: list[Watcher] = []
        for session_id, published in group_by_session(first, changes).items():
            for watcher in watchers.get(session_id, {}).values():
                watcher.offer(published)
                if not watcher.accepting:
                    ended.append(watcher)
        for watcher in ended:  # overflowed or closed: the core need not record for it any more
            self._forget_watcher(watcher)

    def _count_watch_overflow(self) -> None:
        self._state.counters.watch_overflows += 1

    def _end_watches(self) -> None:
        """The actor has stopped: every active watch ends with StoreClosed."""
        for targets in self._watchers.values():
            for watcher in targets.values():
                watcher.store_stopped()
        for task in self._unwatch_puts:
            task.cancel()

    def _forget_watcher(self, watcher: Watcher) -> None:
        """Stop routing changes to ``watcher`` and unsubscribe it, without waiting.

        Not awaited, so that leaving a cancelled scope still unsubscribes; the
        mailbox is first in, first out, so this follows the watcher's own
        ``WatchSession`` if that was sent. A stopped store has nothing to undo.
        """
        session_id: object = watcher.session_id  # a bad (even unhashable) one was never routed
        targets = self._watchers.get(session_id) if type(session_id) is str else None
        if targets is not None:
            targets.pop(watcher.token, None)
            if not targets:
                del self._watchers[watcher.session_id]
        actor = self._actor
        if actor is None or actor.closed:
            return
        envelope: tuple[m.AnyCommand, None] = (m.UnwatchSession(watcher.token), None)
        try:
            actor.mailbox.put_nowait(envelope)
        except asyncio.QueueFull:  # a bounded mailbox is full: queue it as soon as there is room
            task = asyncio.get_running_loop().create_task(actor.mailbox.put(envelope))
            self._unwatch_puts.add(task)
            task.add_done_callback(self._unwatch_puts.discard)

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
        return await self._call(m.CreateSession(session_id, ttl, _detach(metadata)))

    async def get_session(self, session_id: str) -> Session:
        """The session's snapshot; touches it. ``SessionNotFound`` if missing or expired."""
        return await self._call(m.GetSession(session_id))

    async def update_session(
        self,
        session_id: str,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """Change the ttl and merge metadata into the session's."""
        return await self._call(m.UpdateSession(session_id, ttl, _detach(metadata)))

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and its variables; a missing session is not an error."""
        await self._call(m.DeleteSession(session_id))

    async def session_exists(self, session_id: str) -> bool:
        """Whether a live session has this id. Does not touch it."""
        return await self._call(m.SessionExists(session_id))

    async def list_sessions(self) -> list[str]:
        """The ids of the live sessions."""
        return await self._call(m.ListSessions())

    async def cleanup_expired_sessions(self) -> int:
        """Remove expired sessions now; returns how many were removed."""
        return await self._call(m.CleanupExpiredSessions())

    async def store_worker_session(self, session_id: str, worker_id: str) -> None:
        """Record which worker serves the session, creating the session if needed."""
        await self._call(m.StoreWorkerSession(session_id, worker_id))

    async def get_stats(self) -> StoreStats:
        """Store-wide counters."""
        return await self._call(m.GetStats())

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
        return await self._call(command)

    async def get_variable(self, session_id: str, identifier: str) -> Variable:
        """The variable with this id or name (an id wins over a name)."""
        return await self._call(m.GetVariable(session_id, identifier))

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
        return await self._call(command)

    async def list_variables(self, session_id: str, pattern: str | None = None) -> list[Variable]:
        """Variables in registration order, optionally those whose name matches a glob."""
        return await self._call(m.ListVariables(session_id, pattern))

    async def delete_variable(
        self, session_id: str, identifier: str, *, optimizer_id: str | None = None
    ) -> None:
        """Delete a variable; ``VariableNotFound`` if it does not exist."""
        await self._call(m.DeleteVariable(session_id, identifier, optimizer_id))

    async def has_variable(self, session_id: str, identifier: str) -> bool:
        """Whether the variable exists (False also when the session is missing)."""
        return await self._call(m.HasVariable(session_id, identifier))

    async def get_variables(self, session_id: str, identifiers: Sequence[str]) -> BatchGet:
        """Many variables in one call: ``found`` by identifier as given, and ``missing``."""
        if type(identifiers) is list:
            identifiers = tuple(identifiers)
        return await self._call(m.GetVariables(session_id, identifiers))

    # -- reads that skip the mailbox (opt-in) -----------------------------------------
    # A handler never awaits, so on the loop's own thread nothing can run while one
    # does: calling the read handler directly sees exactly the state a queued read
    # would, without the queue, the future and the task switches. The reads still
    # touch the session and count in telemetry; they make no span and no duration
    # point. They do not wait behind queued calls: a write you sent and did not
    # await may not be visible yet (one you awaited always is).

    def _read_now(self, command: m.Command[R]) -> R:
        actor = self._actor
        if actor is None or actor.closed:
            raise StoreClosed()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not self._loop:
            raise RuntimeError(
                f"{command.operation}_nowait must be called on the store's own event loop"
            )
        return cast(R, self._state.handle(command))

    def get_variable_nowait(self, session_id: str, identifier: str) -> Variable:
        """``get_variable`` without the mailbox: synchronous, on the store's loop only.

        >>> variable = store.get_variable_nowait("s1", "temperature")  # doctest: +SKIP
        """
        return self._read_now(m.GetVariable(session_id, identifier))

    def get_variable_value_nowait(
        self, session_id: str, identifier: str, default: Any = None
    ) -> Any:
        """``get_variable_value`` without the mailbox: synchronous, on the store's loop only."""
        return self._read_now(m.GetVariableValue(session_id, identifier, default))

    def get_variables_nowait(self, session_id: str, identifiers: Sequence[str]) -> BatchGet:
        """``get_variables`` without the mailbox: synchronous, on the store's loop only."""
        return self._read_now(m.GetVariables(session_id, identifiers))

    def list_variables_nowait(self, session_id: str, pattern: str | None = None) -> list[Variable]:
        """``list_variables`` without the mailbox: synchronous, on the store's loop only."""
        return self._read_now(m.ListVariables(session_id, pattern))

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
            with contextlib.suppress(Exception):  # a mapping that fails: the handler says so
                updates = {key: _detach(value) for key, value in updates.items()}
        command = m.UpdateVariables(
            session_id,
            updates,
            atomic,
            _detach(metadata),
            _detach(expected_versions),
            optimizer_id,
        )
        return await self._call(command)

    async def export_variables(self, session_id: str) -> list[dict[str, Any]]:
        """JSON-ready dicts of every variable, in registration order."""
        return await self._call(m.ExportVariables(session_id))

    async def import_variables(self, session_id: str, exported: Sequence[Mapping[str, Any]]) -> int:
        """Import what ``export_variables`` gave; all entries are checked before any is applied."""
        if type(exported) is list:
            exported = [_detach(entry) for entry in exported]
        return await self._call(m.ImportVariables(session_id, exported))

    # -- optimization locks (SPEC §10) ---------------------------------------------------------

    async def start_optimization(
        self, session_id: str, identifier: str, optimizer_id: str, *, lease: float | None = None
    ) -> Variable:
        """Lock a variable for one optimizer; ``lease`` seconds release it by themselves."""
        command = m.StartOptimization(session_id, identifier, optimizer_id, lease)
        return await self._call(command)

    async def end_optimization(
        self, session_id: str, identifier: str, optimizer_id: str
    ) -> Variable:
        """Release the optimizer's lock on a variable."""
        return await self._call(m.EndOptimization(session_id, identifier, optimizer_id))

    # -- watch (SPEC §10) -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch_variables(
        self,
        session_id: str,
        identifiers: Sequence[str] | None = None,
        *,
        pattern: str | None = None,
        include_initial: bool = True,
        buffer: int = 1024,
    ) -> AsyncIterator[AsyncIterator[VariableChange]]:
        """Watch a session's variables: yields an async iterator of committed changes.

        First come ``initial`` events, the current value of each watched variable
        in registration order (unless ``include_initial=False``); then
        ``registered``, ``updated`` and ``deleted`` events in revision order, each
        once it is committed. ``identifiers`` (ids or names, resolved when the
        watch starts; a listed name registered later matches too) and
        ``pattern`` (the glob of ``list_variables``) narrow what is watched; a
        variable must pass each one given. A consumer more than ``buffer`` events
        behind receives what was buffered, then ``WatchOverflow``. The watch ends
        after a ``session_closed`` event when the session is deleted, or when the
        sweep (every ``cleanup_interval``, or ``cleanup_expired_sessions``)
        removes it after it expired. If the store stops, the iterator raises
        ``StoreClosed`` after what was buffered. Leaving the block unsubscribes.

        >>> async with store.watch_variables("s1", ["temperature"]) as changes:  # doctest: +SKIP
        ...     async for change in changes:
        ...         print(change.kind, change.name, change.new_value, change.revision)
        """
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise InvalidArgument(f"buffer must be a positive int, got {describe(buffer)}")
        if type(include_initial) is not bool:
            raise InvalidArgument(
                f"include_initial must be a bool, got {describe(include_initial)}"
            )
        actor = self._actor
        if actor is None or actor.closed:
            raise StoreClosed()
        if isinstance(identifiers, list | set):
            identifiers = tuple(identifiers)  # the caller may change theirs later
        token = next(self._watch_tokens)
        watcher = Watcher(
            session_id,
            token,
            buffer=buffer,
            include_initial=include_initial,
            on_overflow=self._count_watch_overflow,
        )
        # Registered before the command is sent: changes committed meanwhile are
        # kept, and the reply says which of them the snapshot already holds.
        if type(session_id) is str:  # any other id is refused by the command
            self._watchers.setdefault(session_id, {})[token] = watcher
        command = m.WatchSession(session_id, token, identifiers, pattern)
        try:
            start = await self._call(command)
        except BaseException:
            self._forget_watcher(watcher)
            raise
        watcher.start(start)
        try:
            yield watcher
        finally:
            watcher.unsubscribe()
            self._forget_watcher(watcher)
