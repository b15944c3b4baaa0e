"""The watcher behind ``watch_variables``, mirrors and a server's pushed watches.

A :class:`Watcher` is an async iterator of :class:`VariableChange` fed by the
actor. The store registers it *before* sending its ``WatchSession`` command, so
it is offered every change published from then on, each with its sequence
number; the command's reply (:class:`~sessionactor.state.WatchStart`) says which
of those the initial snapshot already holds, and the watcher drops them. So no
change is lost or seen twice between the snapshot and the stream.

``offer`` runs inside the actor's turn, after the batch's replies are sent, and
never blocks: it takes the batch's changes for its session at once (one call
per batch and watcher, not per change), appends the matching ones to a bounded
buffer and wakes the consumer. A change that finds the buffer full ends the
watch instead of being dropped: the consumer first receives everything
buffered, then ``WatchOverflow``.

How a watch ends, as its consumer sees it:

- its session is deleted or swept away after expiring: the ``session_closed``
  event (delivered even when the buffer is full), then ``StopAsyncIteration``;
- it fell more than ``buffer`` events behind: the buffered events, then
  ``WatchOverflow(last_revision)``, then ``StopAsyncIteration``;
- the store stopped: the buffered events, then ``StoreClosed``, then
  ``StopAsyncIteration``;
- its ``async with`` block was left: ``StopAsyncIteration`` at once.

The initial events are a snapshot held apart from the buffer: they never count
towards ``buffer``.

Besides its async iterator, a watcher can be drained without waiting: with
``on_ready`` it calls back whenever it has events or an ending to hand over,
and :meth:`Watcher.take` hands them over at once. A mirror applies each batch
of changes so, in the actor's own turn, before any caller of that turn resumes;
a server pushes each batch to its client before the replies of that turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import ClassVar, Final, Literal, NoReturn, Protocol, TypeVar

from ._frozen import Limits, Refused, copy_identifiers
from .errors import InvalidArgument, SessionStoreError, StoreClosed, WatchOverflow, describe
from .model import VariableChange
from .state import WatchFilter, WatchStart

__all__ = ["ENDED", "Published", "WatchContext", "Watcher", "Watching", "group_by_session"]

_SESSION_CLOSED: Final = "session_closed"
T = TypeVar("T")

_HOW_TO_WATCH: Final = (
    "`async with store.watch_variables(...) as changes:` and then `async for change in changes:`"
)


class Published:
    """One batch's committed changes for one session, with their sequence numbers."""

    __slots__ = ("changes", "closes", "sequences")

    def __init__(self) -> None:
        self.sequences: list[int] = []
        self.changes: list[VariableChange] = []
        self.closes = False  # holds a session_closed: a watcher must stop after it


def group_by_session(first_sequence: int, changes: list[VariableChange]) -> dict[str, Published]:
    """Number one batch's changes from ``first_sequence`` and split them by session."""
    groups: dict[str, Published] = {}
    for sequence, change in enumerate(changes, first_sequence):
        group = groups.get(change.session_id)
        if group is None:
            group = groups[change.session_id] = Published()
        group.sequences.append(sequence)
        group.changes.append(change)
        if change.kind == _SESSION_CLOSED:
            group.closes = True
    return groups


_Ending = Literal[
    "session_closed",
    "overflow",
    "store_closed",
    "failed",
    "unsubscribed",
    "unsubscribed_remote",
    "done",
]


class _Ended:
    """What :meth:`Watcher.take` gives when a watch ended normally (session closed, left)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ENDED"


ENDED: Final = _Ended()
_FOLLOW_ALL: Final = WatchFilter(None, frozenset(), None)


class Watcher:
    """One subscriber's buffer and async iterator. Consumed by one task at a time."""

    __slots__ = (
        "_ending",
        "_events",
        "_failure",
        "_filter",
        "_follows_all",
        "_include_initial",
        "_initial",
        "_last_revision",
        "_limit",
        "_on_overflow",
        "_on_ready",
        "_pending",
        "_sequence",
        "_wakeup",
        "session_id",
        "token",
    )

    def __init__(
        self,
        session_id: str,
        token: int,
        *,
        buffer: int,
        include_initial: bool,
        on_overflow: Callable[[], None],
        on_ready: Callable[[Watcher], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.token = token
        self._limit = buffer
        self._include_initial = include_initial
        self._on_overflow = on_overflow
        self._on_ready = on_ready
        self._filter: WatchFilter | None = None  # None until the subscription is answered
        self._follows_all = False  # every variable of the session, no filter to apply
        self._pending: list[tuple[int, VariableChange]] = []  # offered before that
        self._sequence = 0  # changes numbered up to this are in the snapshot
        self._initial: deque[VariableChange] = deque()
        self._events: deque[VariableChange] = deque()
        self._last_revision = 0
        self._ending: _Ending | None = None  # set once no more changes are taken
        self._failure: SessionStoreError | None = None  # why it ended, when "failed"
        self._wakeup = asyncio.Event()

    # -- the actor's side ----------------------------------------------------------

    def offer(self, published: Published) -> None:
        """Take one batch of its session's committed changes. Never blocks."""
        if self._ending is not None:
            return
        if self._filter is None:  # the subscription is not answered yet: keep them all
            self._pending.extend(zip(published.sequences, published.changes, strict=True))
            return
        changes = published.changes
        events = self._events
        if (
            self._follows_all
            and not published.closes
            and published.sequences[0] > self._sequence
            and len(events) + len(changes) <= self._limit
        ):
            events.extend(changes)  # the common case, without a step per change
        else:
            sequence_after = self._sequence
            for sequence, change in zip(published.sequences, changes, strict=True):
                if sequence > sequence_after:
                    self._accept(change)
                    if self._ending is not None:
                        break
        self._ready()

    def start(self, start: WatchStart) -> None:
        """The subscription was answered: set the filter, the snapshot, the backlog."""
        watch_filter = self._filter = start.filter
        self._follows_all = watch_filter.ids is None and watch_filter.pattern is None
        self._sequence = start.sequence
        self._last_revision = start.revision
        if self._include_initial:
            session_id = self.session_id
            self._initial.extend(
                VariableChange(
                    "initial",
                    session_id,
                    variable.id,
                    variable.name,
                    None,
                    variable.value,
                    variable.version,
                    variable.revision,
                    variable.metadata,
                    variable,
                )
                for variable in start.variables
            )
        pending, self._pending = self._pending, []
        for sequence, change in pending:
            if self._ending is not None:
                break
            if sequence > start.sequence:  # the snapshot already holds the others
                self._accept(change)
        self._ready()

    # -- fed from elsewhere (a client whose server watches the store) -------------------

    def begin(self, revision: int) -> None:
        """Start a watch whose changes come already filtered, through :meth:`receive`
        (the first batch is its listing: until it comes there is nothing to hand over)."""
        self._filter = _FOLLOW_ALL
        self._follows_all = True
        self._last_revision = revision

    def receive(self, changes: list[VariableChange]) -> None:
        """Changes the server's watch picked, in order: ``initial`` ones into the
        snapshot, the others into the bounded buffer. Never blocks."""
        if self._ending is not None:
            return
        for change in changes:
            if change.kind == "initial":
                if self._include_initial:
                    self._initial.append(change)
                continue
            self._accept(change)
            if self._ending is not None:
                break
        self._ready()

    def end(self, error: SessionStoreError | None) -> None:
        """The watch ended over there: after what is buffered, ``error`` (or the end)."""
        if self._ending is not None:
            return
        if isinstance(error, WatchOverflow):
            self._ending = "overflow"
            self._last_revision = max(self._last_revision, error.last_revision)
        elif error is None:
            self._ending = "unsubscribed_remote"
        else:
            self._ending = "failed"
            self._failure = error
        self._ready()

    def _ready(self) -> None:
        self._wakeup.set()
        if self._on_ready is not None:
            self._on_ready(self)

    def _accept(self, change: VariableChange) -> None:
        if change.kind == _SESSION_CLOSED:
            self._events.append(change)  # past the limit if need be: it ends the watch
            self._ending = _SESSION_CLOSED
            return
        assert self._filter is not None
        if change.variable_id is None or change.name is None:
            return
        if not self._filter.matches(change.variable_id, change.name):
            return
        if len(self._events) >= self._limit:
            self._ending = "overflow"
            self._on_overflow()
        else:
            self._events.append(change)

    @property
    def accepting(self) -> bool:
        """Whether it still takes changes (not ended by overflow, close or unsubscribe)."""
        return self._ending is None

    def store_stopped(self) -> None:
        """The store stopped: after what is buffered, the consumer gets StoreClosed."""
        if self._ending is None:
            self._ending = "store_closed"
            self._ready()

    def unsubscribe(self) -> None:
        """The ``async with`` block was left: the iterator ends at once."""
        self._ending = "unsubscribed"
        self._pending.clear()
        self._initial.clear()
        self._events.clear()
        self._wakeup.set()

    # -- the consumer's side ---------------------------------------------------------

    @property
    def revision(self) -> int:
        """The revision of the last event handed to the consumer (or of the snapshot)."""
        return self._last_revision

    @property
    def ending_now(self) -> bool:
        """Whether the watch has ended (or ends after what is still to be handed over)."""
        return self._ending is not None

    def take(self) -> tuple[list[VariableChange], BaseException | _Ended | None]:
        """Everything ready now, without waiting: the events, then how the watch ended
        after them (``WatchOverflow`` or ``StoreClosed``, :data:`ENDED` for a session
        closed or a watch left, None while it goes on)."""
        events = list(self._initial)
        self._initial.clear()
        if self._events:
            events.extend(self._events)
            self._events.clear()
            self._last_revision = events[-1].revision
        ending = self._ending
        if ending is None or ending == "done":
            return events, None if ending is None else ENDED
        self._ending = "done"
        error = self._ending_error(ending)
        return events, ENDED if error is None else error

    def _ending_error(self, ending: _Ending) -> SessionStoreError | None:
        if ending == "overflow":
            return WatchOverflow(self._last_revision)
        if ending == "store_closed":
            return StoreClosed("the session store stopped; the watch has ended")
        if ending == "failed":
            return self._failure
        return None

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> VariableChange:
        while True:
            if self._initial:
                return self._initial.popleft()
            if self._events:
                change = self._events.popleft()
                self._last_revision = change.revision
                return change
            ending = self._ending
            if ending is not None:
                self._ending = "done"
                error = self._ending_error(ending)
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()


class _Subscriber(Protocol):
    async def _subscribe(
        self,
        session_id: str,
        identifiers: Sequence[str] | None,
        pattern: str | None,
        include_initial: bool,
        buffer: int,
        on_ready: Callable[[Watcher], None] | None = None,
    ) -> Watcher: ...

    def _unsubscribe(self, watcher: Watcher) -> None: ...


class Watching:
    """Gives a store ``watch_variables()``, on top of its ``_subscribe``/``_unsubscribe``."""

    def watch_variables(
        self,
        session_id: str,
        identifiers: Sequence[str] | None = None,
        *,
        pattern: str | None = None,
        include_initial: bool = True,
        buffer: int = 1024,
    ) -> WatchContext:
        """Watch a session's variables: ``async with`` gives an async iterator of changes.

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
        ``StoreClosed`` after what was buffered (through a connection, a broken
        connection ends it with ``ConnectionLost``). Leaving the block unsubscribes.

        >>> async with store.watch_variables("s1", ["temperature"]) as changes:  # doctest: +SKIP
        ...     async for change in changes:
        ...         print(change.kind, change.name, change.new_value, change.revision)
        """
        return WatchContext(self._watch(session_id, identifiers, pattern, include_initial, buffer))

    @contextlib.asynccontextmanager
    async def _watch(
        self,
        session_id: str,
        identifiers: Sequence[str] | None,
        pattern: str | None,
        include_initial: bool,
        buffer: int,
    ) -> AsyncIterator[AsyncIterator[VariableChange]]:
        source: _Subscriber = self  # type: ignore[assignment]
        watcher = await source._subscribe(session_id, identifiers, pattern, include_initial, buffer)
        try:
            yield watcher
        finally:
            source._unsubscribe(watcher)


def watch_arguments(
    identifiers: object, include_initial: object, buffer: object, limits: Limits
) -> object:
    """Check what a watch is opened with, before anything is subscribed, and return its
    identifiers read (in the caller's task) and measured against ``limits``."""
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise InvalidArgument(f"buffer must be a positive int, got {describe(buffer)}")
    if type(include_initial) is not bool:
        raise InvalidArgument(f"include_initial must be a bool, got {describe(include_initial)}")
    copied = copy_identifiers(identifiers, limits)
    if type(copied) is Refused:
        raise copied.error
    return copied


class GuidedContext(AbstractAsyncContextManager[T]):
    """An ``async with`` context that says what to write when it is used any other way
    (iterated, awaited, entered with a plain ``with``), before anything is subscribed.

    Subclasses name the call (``call``), what entering gives (``gives``) and how to
    use it (``how_to``).
    """

    __slots__ = ("_context",)
    call: ClassVar[str]
    gives: ClassVar[str]
    how_to: ClassVar[str]

    def __init__(self, context: AbstractAsyncContextManager[T]) -> None:
        self._context = context

    async def __aenter__(self) -> T:
        return await self._context.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return await self._context.__aexit__(exc_type, exc, traceback)

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            f"{self.call}() gives a context manager, not {self.gives}: write {self.how_to}"
        )

    def __iter__(self) -> NoReturn:
        raise TypeError(
            f"{self.call}() gives an asynchronous context manager, not {self.gives}: "
            f"write {self.how_to}, or use BlockingSessionStore.{self.call} in "
            "synchronous code"
        )

    def __await__(self) -> NoReturn:
        raise TypeError(
            f"{self.call}() is not awaited: it gives a context manager; write {self.how_to}"
        )

    def __enter__(self) -> NoReturn:
        raise TypeError(
            f"{self.call}() is asynchronous here: use `async with`, as in {self.how_to}; "
            f"or BlockingSessionStore.{self.call} in synchronous code"
        )

    def __exit__(self, *exc_info: object) -> None:  # pragma: no cover - __enter__ raises
        return None


class WatchContext(GuidedContext[AsyncIterator[VariableChange]]):
    """What ``watch_variables`` returns: enter it with ``async with`` to get the changes.

    >>> async with store.watch_variables("s1") as changes:  # doctest: +SKIP
    ...     async for change in changes:
    ...         ...
    """

    __slots__ = ()
    call = "watch_variables"
    gives = "the changes"
    how_to = _HOW_TO_WATCH
