"""``SessionStore``: the store's actor and its async API, in the caller's event loop.

Every call builds one command message (the calls are defined once, in
:mod:`._api`), puts it in the actor's mailbox and awaits the reply future.
Nothing here touches state: that belongs to the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn, Self, TypeVar, cast

import anyio
from anyio.abc import TaskStatus

from . import messages as m
from ._actor import Actor, Envelope, finish
from ._api import AsyncFacade, StoreCalls
from ._frozen import Limits
from ._imports import Checking
from ._journal import Turn
from ._mailbox import Mailbox
from ._watch import Watcher, Watching, group_by_session, watch_arguments
from .errors import CallTimeout, InvalidArgument, PersistenceError, StoreClosed, describe
from .mirror import Mirroring
from .model import BatchGet, Variable, VariableChange
from .state import StoreState
from .telemetry import DEFAULT_DURATION_SAMPLE_RATIO, StoreTelemetry
from .types import TypeRegistry, TypeSpec

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._persistence import Database

__all__ = ["SessionStore"]

R = TypeVar("R")

_NOT_STARTED: Final = (
    "the session store is not running: start it with `async with SessionStore() as store:` "
    "or `await task_group.start(store.run)`"
)
_STOPPED: Final = "the session store has stopped"


_SYNCHRONOUS: Final = ("full", "normal", "off")
_TOUCH_INTERVAL: Final = 60.0  # seconds, when there is no periodic sweep
_Future: Final = asyncio.Future
# The loop running in this thread, or None: a C call, as cheap as reading the thread id.
_running_loop: Final = asyncio.events._get_running_loop
_get_ident: Final = threading.get_ident


def _put_nowhere(envelope: object) -> None:
    raise StoreClosed(_NOT_STARTED)


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


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a database loads.

    A load allocates millions of objects and frees none, and every few hundred
    thousand the collector would walk the whole, growing heap for nothing: a
    third of the time of opening a million variables. Loading makes no cycles;
    whatever the rest of the process makes meanwhile is collected afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class SessionStore(StoreCalls, Watching, Mirroring, AsyncFacade):
    """An actor that owns sessions and their typed, constrained, versioned variables.

    Start it with ``async with SessionStore() as store:`` (it stops when the
    block ends) or under a task group with ``await task_group.start(store.run)``
    (cancelling the group stops it). Every method is a coroutine: ``await`` it
    from the store's own event loop; from other threads use
    :class:`BlockingSessionStore`.

    >>> async with SessionStore(default_ttl=600) as store:
    ...     await store.create_session("s1")
    ...     await store.register_variable("s1", "temperature", "float", 0.7,
    ...                                   constraints={"min": 0.0, "max": 2.0})
    ...     variable = await store.update_variable("s1", "temperature", 0.9)

    Args:
        default_ttl: seconds a session lives without being used, unless
            ``create_session`` says otherwise (``math.inf``: forever).
        cleanup_interval: seconds between sweeps that remove expired sessions
            (``None``: no periodic sweep). An expired session is gone for every
            call at once; the sweep frees it and counts it.
        call_timeout: seconds a call waits for its reply before it raises
            ``CallTimeout`` (``None``: no limit), counted from the actor's next
            turn (within one pass of the event loop). A call whose caller gave
            up before the actor reached it is not applied.
        mailbox_size: how many calls may wait for the actor (``None``: no bound);
            with a bound, callers wait for room (back-pressure).
        max_sessions: how many live sessions may exist (``SessionLimitExceeded``).
        global_program_ttl: seconds a global program lives after it is stored.
        clock: a monotonic clock in seconds (tests pass
            ``sessionactor.testing.FakeClock`` to drive expiry). If it also has
            a ``wall()`` method, as FakeClock does, timestamps come from there.
        types: variable types to add to the eight built-in ones.
        limits: how much data one call may pass (items, string length,
            nesting): a :class:`Limits`; larger arguments are refused before
            they reach the actor.
        tracer_provider: OpenTelemetry tracer provider (default: the global one).
        meter_provider: OpenTelemetry meter provider (default: the global one).
        trace_calls: make a span for every call when a tracer records.
        duration_sample_ratio: the share of calls whose duration is recorded
            in the ``sessionactor.call.duration`` histogram.
        database: a file for an SQLite database that keeps every change, so a
            restart, a crash or ``kill -9`` loses nothing that was acknowledged.
            The store starts from what the file holds (a missing or empty file
            starts a new database). ``None``: in memory only.
        synchronous: with a database, ``"full"`` (an acknowledged change survives
            power loss), ``"normal"`` (it survives a crash of the process) or
            ``"off"`` (the operating system decides when it reaches the disk).
    """

    _checks_in_steps = True  # calls are made in the loop that runs the actor

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
        limits: Limits | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        trace_calls: bool = True,
        duration_sample_ratio: float = DEFAULT_DURATION_SAMPLE_RATIO,
        database: str | os.PathLike[str] | None = None,
        synchronous: str = "full",
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
        if limits is not None and not isinstance(limits, Limits):
            raise InvalidArgument(f"limits must be a Limits, got {describe(limits)}")
        self._limits = limits or Limits()
        self._types: TypeRegistry = TypeRegistry(types)
        self._state = StoreState(
            default_ttl=default_ttl,
            max_sessions=max_sessions,
            global_program_ttl=global_program_ttl,
            clock=clock or time.monotonic,
            types=self._types,
            limits=self._limits,
            # A clock that also tells wall-clock time (a FakeClock) drives timestamps too.
            wall_clock=getattr(clock, "wall", None) or time.time,
        )
        # Counts live in the state and cost calls nothing. A span per call (unless
        # trace_calls=False) and the call.duration histogram are only wrapped around
        # the call path when their provider records: with no SDK, calls take the plain path.
        self._telemetry = StoreTelemetry(
            self._state,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            trace_calls=trace_calls,
            duration_sample_ratio=duration_sample_ratio,
        )
        if self._telemetry.instruments_calls:
            self._call = self._telemetry.instrument(self._call)  # type: ignore[method-assign,assignment]
        if database is not None and not isinstance(database, str | os.PathLike):
            raise InvalidArgument(
                f"database must be a path (str or os.PathLike) or None, got {describe(database)}"
            )
        if synchronous not in _SYNCHRONOUS:
            raise InvalidArgument(
                f"synchronous must be 'full', 'normal' or 'off', got {describe(synchronous)}"
            )
        self._database_path = None if database is None else os.fspath(database)
        self._synchronous = synchronous
        self._database: Database | None = None
        # Touches reach the database lazily, with the sweep or on their own timer.
        self._touch_interval = self._cleanup_interval or _TOUCH_INTERVAL
        self._started = False
        self._failure_reported = False
        self._database_closed = False
        self._actor: Actor | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = False  # calls are taken
        self._home: asyncio.AbstractEventLoop | None = None  # the loop it runs in, while open
        # The thread that loop runs in, and whether it runs now: the cheap form of "is
        # the caller in the store's loop?" (see _call).
        self._home_thread: int | None = None
        self._home_running: Callable[[], bool] = bool
        self._put: Callable[[Any], None] = _put_nowhere
        # The generated methods' own call path (_send_source): the mailbox, written
        # directly, when calls need neither room nor telemetry.
        self._mailbox: Mailbox[Envelope] = Mailbox()  # the actor's, once it starts
        self._append: Callable[[Any], None] = _put_nowhere
        self._direct = False
        self._unbounded = False
        self._closed_reason = _NOT_STARTED
        # Watch: live watchers by session id, then by token.
        self._watchers: dict[str, dict[int, Watcher]] = {}
        self._watch_tokens = itertools.count(1)
        self._unwatch_puts: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------

    async def _start(self) -> Actor:
        if self._started:
            raise StoreClosed("this SessionStore has already run; create a new one")
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        database = None
        if self._database_path is not None:
            # Opening checks the whole file and loading reads it: off the event loop.
            # The state is not shared with anyone yet, so it is rebuilt there too.
            database = await asyncio.to_thread(self._open_database)
        actor = self._actor = Actor(
            self._state,
            mailbox_size=self._mailbox_size,
            cleanup_interval=self._cleanup_interval,
            call_timeout=self._call_timeout,
            on_changes=self._publish_changes,
            database=database,
            touch_interval=self._touch_interval,
        )
        if database is not None:
            self._database = database

            def on_commit(seq: int, error: BaseException | None) -> None:
                loop.call_soon_threadsafe(actor.committed, seq, error)  # from the writer thread

            database.start(on_commit)
        self._put = actor.mailbox.put_nowait
        self._mailbox = actor.mailbox
        self._append = actor.mailbox.items.append
        self._unbounded = self._mailbox_size is None
        self._direct = self._unbounded and not self._telemetry.instruments_calls
        self._home = loop
        self._home_thread = _get_ident()
        self._home_running = loop.is_running
        self._open = True
        return actor

    def _open_database(self) -> Database:
        """Open the database, and make the state what it holds (in a worker thread)."""
        from ._persistence import Database

        assert self._database_path is not None
        database = Database(self._database_path, synchronous=self._synchronous, types=self._types)
        try:
            with _collector_paused():
                loaded = database.load()
                self._state.enable_journal()
                grace = 0.0 if loaded.clean_shutdown else self._touch_interval
                self._state.restore(loaded, grace=grace)
        except BaseException:
            with contextlib.suppress(Exception):
                database.close(clean=False)
            raise
        return database

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve calls until cancelled. For ``await task_group.start(store.run)``.

        With a database, the store has loaded it before ``started``; a failed commit
        ends ``run`` with :class:`PersistenceError`.
        """
        actor = await self._start()
        task_status.started()
        await self._serve(actor)

    async def __aenter__(self) -> Self:
        actor = await self._start()
        # A plain task, not a task group: set-up and tear-down may run in different
        # tasks (pytest-asyncio fixtures), which a cancel scope would not allow.
        self._task = asyncio.get_running_loop().create_task(self._serve(actor), name="sessionactor")
        self._task.add_done_callback(_report_actor_death)
        return self

    def __enter__(self) -> NoReturn:
        raise TypeError(
            "SessionStore is asynchronous: use `async with SessionStore() as store:`, "
            "or BlockingSessionStore in synchronous code"
        )

    def __exit__(self, *exc_info: object) -> None:  # pragma: no cover - __enter__ raises
        return None

    async def _serve(self, actor: Actor) -> None:
        try:
            await actor.serve()
        finally:
            self._close_calls()
            if self._database is not None:
                with anyio.CancelScope(shield=True):
                    await self._close_database(actor)
            self._end_watches()

    async def _close_database(self, actor: Actor) -> None:
        """After the last turn: write the touches, wait until every turn is durable (the
        turns still parked are answered then), and close the database."""
        database = self._database
        assert database is not None
        state = self._state
        if actor.failure is None:
            state.record_touches()
            records = state.take_journal()
            if records:
                with contextlib.suppress(PersistenceError):  # the flush below reports it
                    database.submit(Turn(tuple(records), state.counters_snapshot()))
            with contextlib.suppress(PersistenceError):  # actor.committed gets it too
                await asyncio.to_thread(database.flush)
            await asyncio.sleep(0)  # the writer's last reports reach the actor
        failed = actor.failure is not None
        self._database_closed = True
        with contextlib.suppress(PersistenceError):
            await asyncio.to_thread(database.close, clean=not failed)

    def _close_calls(self) -> None:
        self._open = False
        self._home = None
        self._home_thread = None
        self._closed_reason = _STOPPED
        if self._actor is not None and self._actor.failure is not None:
            self._closed_reason = f"the session store stopped: {self._actor.failure}"

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the actor: calls it has taken are answered, queued ones get StoreClosed.

        Raises :class:`PersistenceError` if the store failed stop (a commit to its
        database failed): what was not durable was not acknowledged.
        """
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except PersistenceError:
                pass  # reported below, once
        # Cancelled before its first step, the task never ran ``serve`` (nor its
        # ``finally``): close the mailbox here, or later calls would wait forever,
        # and the database, or its writer thread would keep the state alive.
        self._close_unstarted()
        actor = self._actor
        if actor is not None and self._database is not None and not self._database_closed:
            with anyio.CancelScope(shield=True):
                await self._close_database(actor)
        failure = None if self._actor is None else self._actor.failure
        if failure is not None and not self._failure_reported:
            self._failure_reported = True
            raise PersistenceError(str(failure), failure.path) from failure

    def _close_unstarted(self) -> None:
        actor = self._actor
        if actor is not None and not actor.finished:
            actor.drain_closed()
            actor.finished = True
            self._close_calls()

    @property
    def running(self) -> bool:
        """Whether the store takes calls now."""
        return self._open

    @property
    def database(self) -> str | None:
        """The path of the store's database, or None for a store in memory only."""
        return self._database_path

    async def backup(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the store's database to ``path``, while it serves.

        The copy holds every write acknowledged before the call (a call is only
        answered once its change is durable) and is itself a database a store can
        start from. ``path`` is written beside and renamed into place, so it is
        either untouched or complete. A store without a database has nothing to
        copy: ``InvalidArgument`` (``export_store()`` gives its data).

        >>> await store.backup("/backups/store-2026-12-01.sqlite")  # doctest: +SKIP
        """
        if self._database_path is None:
            raise InvalidArgument(
                "this store keeps no database to back up; export_store() gives its data"
            )
        if not self._open or self._database is None:
            raise StoreClosed(self._closed_reason)
        await asyncio.to_thread(self._database.backup, path)

    @property
    def limits(self) -> Limits:
        """How much data one call may pass."""
        return self._limits

    # -- the call path -------------------------------------------------------------

    # What every generated method does with its command (see _api._method), unless the
    # command is special: the common case of _call written out there, which saves the
    # Python call to _call on every call. The store must run in this thread's running
    # loop (as in _call), with an unbounded mailbox and calls not instrumented; anything
    # else (a refusal included) goes through _call.
    _send_source = """\
if self._direct and _get_ident() == self._home_thread and self._home_running():
    future = _Future(loop=self._loop)
    self._append((command, future))
    if self._mailbox.reader is not None:
        self._mailbox.wake()
    return await future
return await self._call(command)
"""
    _send_names: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"_Future": _Future, "_get_ident": _get_ident}
    )

    def _call(self, command: m.Command[R]) -> Awaitable[R]:
        # One test covers both "running?" and "from the store's own loop?": the thread
        # its loop runs in is recorded at start and forgotten at stop, and that loop must
        # be running now (in that thread no other loop can run at the same time). Asking
        # asyncio for the running loop instead would cost a getpid() system call per call.
        if (_get_ident() != self._home_thread or not self._home_running()) and not (
            self._at_home()
        ):
            self._refuse(command.operation)
        if command.special:
            return self._special_call(command)
        future: asyncio.Future[R] = _Future(loop=self._loop)
        envelope: Envelope = (command, future)
        if self._unbounded:  # as the generated methods send (see _send_source)
            self._append(envelope)
            if self._mailbox.reader is not None:
                self._mailbox.wake()
            return future
        try:
            self._put(envelope)
        except asyncio.QueueFull:
            return self._call_after_room(envelope)
        return future

    def _special_call(self, command: m.Command[R]) -> Awaitable[R]:
        """``_call`` for a command whose argument is checked first, or whose reply is
        finished in the caller's task (see :class:`~sessionactor.messages.Command`)."""
        if command.checks is not None:
            pending = getattr(command, command.checks)
            if type(pending) is Checking:
                return self._check_then_call(command, pending)
        future: asyncio.Future[R] = _Future(loop=self._loop)
        envelope: Envelope = (command, future)
        try:
            self._put(envelope)
        except asyncio.QueueFull:
            return self._call_after_room(envelope)
        if command.finishes:
            return self._finished(future, command.operation)
        return future

    async def _check_then_call(self, command: m.Command[R], pending: Checking) -> R:
        """Run the command's check in steps (the loop serves others between them), then
        send it. Nothing is sent if the caller gives up or the store stops meanwhile."""
        setattr(command, cast(str, command.checks), await pending.run())
        if not self._open:
            self._refuse(command.operation)
        return await self._special_call(command)

    def _at_home(self) -> bool:
        """The exact check behind the cheap one: is the store running, and the caller in
        its loop? If so the loop was stopped and run again in another thread, which the
        cheap check learns here. (Until a call from the new thread teaches it, a call
        from the old thread while the loop runs elsewhere would pass the cheap check: a
        loop moved between threads under a running store is the one case it trusts.)"""
        if self._open and _running_loop() is self._home:
            self._home_thread = _get_ident()
            return True
        return False

    def _refuse(self, operation: str) -> NoReturn:
        """A call the store cannot take: it is not running, or the caller is not in the
        event loop it runs in."""
        if not self._open:
            failure = None if self._actor is None else self._actor.failure
            if failure is not None:
                raise PersistenceError(str(failure), failure.path)
            raise StoreClosed(self._closed_reason)
        raise RuntimeError(
            f"{operation}() was called outside the event loop the store runs in; "
            "nothing was sent. From another thread (with or without its own event loop) "
            "use BlockingSessionStore.wrap(store, loop), or run the store where you call it"
        )

    async def _finished(self, future: asyncio.Future[Any], operation: str) -> Any:
        return await finish(await future, operation)

    async def _call_after_room(self, envelope: Envelope) -> Any:
        """Back-pressure: wait for room in a bounded mailbox and then for the reply,
        both within one ``call_timeout``."""
        command, future = envelope
        assert future is not None
        actor = cast(Actor, self._actor)
        deadline = asyncio.timeout(self._call_timeout)
        try:
            async with deadline:
                await actor.mailbox.put(envelope)
                reply = await future
        except TimeoutError:
            if deadline.expired():
                raise CallTimeout(command.operation, cast(float, self._call_timeout)) from None
            raise
        finally:
            if not future.done():
                future.cancel()  # given up: the actor will not apply it
        if command.finishes:
            return await finish(reply, command.operation)
        return reply

    # -- watch plumbing (the watcher itself is in _watch.py) --------------------------

    def _publish_changes(self, first: int, changes: list[VariableChange]) -> None:
        """Offer each committed change to its session's watchers, numbered in order from
        ``first``.

        The actor calls this once a turn's changes are committed (and durable, with a
        database); offering only appends to bounded buffers, so it never blocks.
        """
        watchers = self._watchers
        if not watchers:
            return
        ended: list[Watcher] = []
        for session_id, published in group_by_session(first, changes).items():
            # A copy: a watcher's callbacks may end watches (and so change the table).
            for watcher in list(watchers.get(session_id, {}).values()):
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
        envelope: Envelope = (m.UnwatchSession(watcher.token), None)
        try:
            actor.mailbox.put_nowait(envelope)
        except asyncio.QueueFull:  # a bounded mailbox is full: queue it as soon as there is room
            loop = cast(asyncio.AbstractEventLoop, self._loop)
            task = loop.create_task(actor.mailbox.put(envelope))
            self._unwatch_puts.add(task)
            task.add_done_callback(self._unwatch_puts.discard)

    # -- reads that skip the mailbox (opt-in) -----------------------------------------
    # A handler never awaits, so on the loop's own thread nothing can run while one
    # does: calling the read handler directly sees exactly the state a queued read
    # would, without the queue, the future and the task switches. The reads still
    # touch the session and count in telemetry; they make no span and no duration
    # point. They do not wait behind queued calls: a write you sent and did not
    # await may not be visible yet (one you awaited always is). With a database they
    # may see a change whose commit is under way; queued reads wait for it.

    def _read_now(self, command: m.Command[R]) -> R:
        if not self._open:
            raise StoreClosed(self._closed_reason)
        if (_get_ident() != self._home_thread or not self._home_running()) and not (
            self._at_home()
        ):
            raise RuntimeError(
                f"{command.operation}_nowait must be called in the store's own event loop"
            )
        reply: R = self._state.handle(command)  # type: ignore[assignment]  # (cast is a call)
        return reply

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

    # -- watch (watch_variables is in _watch.Watching) ---------------------------------

    async def _subscribe(
        self,
        session_id: str,
        identifiers: Sequence[str] | None,
        pattern: str | None,
        include_initial: bool,
        buffer: int,
        on_ready: Callable[[Watcher], None] | None = None,
    ) -> Watcher:
        """A started watcher of the session; end it with :meth:`_unsubscribe`."""
        if _running_loop() is not self._home:  # before anything is read or registered
            self._refuse("watch_variables")
        copied = watch_arguments(identifiers, include_initial, buffer, self._limits)
        token = next(self._watch_tokens)
        watcher = Watcher(
            session_id,
            token,
            buffer=buffer,
            include_initial=include_initial,
            on_overflow=self._count_watch_overflow,
            on_ready=on_ready,
        )
        # Registered before the command is sent: changes committed meanwhile are
        # kept, and the reply says which of them the snapshot already holds.
        if type(session_id) is str:  # any other id is refused by the command
            self._watchers.setdefault(session_id, {})[token] = watcher
        command = m.WatchSession(session_id, token, copied, pattern)
        try:
            start = await self._call(command)
        except BaseException:
            self._forget_watcher(watcher)
            raise
        watcher.start(start)
        return watcher

    def _unsubscribe(self, watcher: Watcher) -> None:
        watcher.unsubscribe()
        self._forget_watcher(watcher)
