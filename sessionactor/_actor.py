"""The mailbox loop: one task takes batches of command messages and answers each.

Each turn takes what is waiting (up to ``_MAX_BATCH`` messages), runs their
handlers one after another, then answers them. A handler never awaits, so no
message can interleave with another.

With a database, a turn's changes go to the writer thread as one transaction
(group commit) and the turn *parks*: its replies and its watch events wait
until that transaction is durable, while the actor goes on handling the next
turns. Turns are answered in order, so no reply ever goes out before every
earlier turn is durable. If a commit fails the store fails stop: every parked
call, every queued call and every later call gets :class:`PersistenceError`.

A call's ``call_timeout`` counts from when the actor first sees it queued: the
start of the turn after it was put (callers put only between turns, so that is
at most one pass of the event loop later), which spares every call a clock
reading. The actor keeps when it saw the queued calls as runs, oldest first. A
call still queued when its deadline passes is not applied at all (its caller
gets :class:`CallTimeout`); a reply that is ready only after its deadline (the
loop was held up, or the disk) is dropped and the caller gets ``CallTimeout``
too. A call whose caller was cancelled after sending it is still applied and
its reply dropped, as with ``GenServer.call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ._journal import Turn
from ._mailbox import Mailbox
from ._replies import Deferred
from ._steps import run_yielding
from .errors import (
    CallTimeout,
    InternalError,
    PersistenceError,
    SessionStoreError,
    StoreClosed,
)
from .messages import AnyCommand, Command
from .model import VariableChange
from .state import StoreState

if TYPE_CHECKING:
    from ._persistence import Database

__all__ = ["Actor", "Envelope", "finish"]

Envelope = tuple[AnyCommand, "asyncio.Future[Any] | None"]
"""(command, the caller's reply future or None for no reply)."""

OnChanges = Callable[[int, list[VariableChange]], None]
"""Publishes committed watch changes, numbered from the first argument."""

_MAX_BATCH: Final = 512  # bounds how long one turn holds the loop (turns yield between)
_FREE_CHUNK: Final = 2048  # dropped variables freed per loop iteration after a deletion
_WATCHDOG_TICK: Final = 0.05  # seconds between deadline checks of turns waiting for the disk
_SKIPPED: Final = object()  # the caller was told already (its deadline passed in the queue)


class _Failed:
    """A handler's error, waiting to be raised in its caller (a reply may be any object)."""

    __slots__ = ("error",)

    def __init__(self, error: SessionStoreError) -> None:
        self.error = error


class _Sweep(Command[None]):
    """The periodic sweep, sent by the actor's own timer."""

    __slots__ = ()
    operation: ClassVar[str] = "sweep"


Runs = list[list[float]]
"""When the actor first saw queued calls: ``[count, monotonic seconds]`` runs, oldest first."""


def _seen_before(runs: Runs, cutoff: float) -> int:
    """How many calls, from the first, were first seen before ``cutoff``."""
    count = 0
    for size, seen_at in runs:
        if seen_at >= cutoff:
            break
        count += int(size)
    return count


class _Parked:
    """A handled turn waiting until the transaction ``seq`` (and every earlier one) is durable."""

    __slots__ = ("batch", "changes", "first", "replies", "runs", "seq")

    def __init__(
        self,
        seq: int,
        batch: list[Envelope],
        replies: list[object],
        runs: Runs,
        first: int,
        changes: list[VariableChange],
    ) -> None:
        self.seq = seq
        self.batch = batch
        self.replies = replies
        self.runs = runs
        self.first = first
        self.changes = changes


class Actor:
    """Owns the mailbox and runs :class:`StoreState` handlers for it."""

    def __init__(
        self,
        state: StoreState,
        *,
        mailbox_size: int | None,
        cleanup_interval: float | None,
        call_timeout: float | None,
        on_changes: OnChanges | None = None,
        database: Database | None = None,
        touch_interval: float | None = None,
    ) -> None:
        self.state = state
        self.mailbox: Mailbox[Envelope] = Mailbox(mailbox_size)
        self.closed = False  # no new calls are taken
        self.finished = False  # the loop has ended and the mailbox was answered
        self.failure: PersistenceError | None = None  # a commit failed: the store stopped
        self._timeout = math.inf if call_timeout is None else call_timeout
        # When the calls still queued were first seen (see Runs), and how many are.
        self._seen: deque[list[float]] = deque()
        self._seen_count = 0
        self._cleanup_interval = cleanup_interval
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._on_changes = on_changes
        self._batch: list[Envelope] = []
        self._replies: list[object] = []
        self._freeing = False
        self._handlers = dict(state.handlers)
        self._handlers[_Sweep] = self._sweep
        self._handlers[_Touches] = self._touches
        state.mailbox_depth = self.depth
        state.free_garbage_at_once = False
        # Durability: turns submitted, turns durable, and the handled turns waiting.
        self._database = database
        self._touch_interval = touch_interval
        self._touch_timer: asyncio.TimerHandle | None = None
        self._submitted = 0
        self._committed = 0
        self._parked: deque[_Parked] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._wakeup: asyncio.Future[None] | None = None

    async def serve(self) -> None:
        """Run until cancelled (or a commit fails); then answer everything that is left."""
        loop = asyncio.get_running_loop()
        self._schedule_sweep(loop)
        self._schedule_touches(loop)
        mailbox = self.mailbox
        state = self.state
        handlers = self._handlers
        monotonic = time.monotonic
        durable = self._database is not None
        batch: list[Envelope] = []
        command: AnyCommand | None = None
        runs: Runs = []
        replies = self._replies
        timeout = self._timeout
        try:
            while True:
                now = monotonic()
                self._see(now)
                batch = self._batch = mailbox.take(_MAX_BATCH)
                if not batch:
                    if self.failure is not None:
                        raise self.failure
                    await mailbox.wait(loop)
                    continue
                runs = self._taken(len(batch))

                # 1. handle: apply every command of the batch, in order
                state.begin_turn()
                envelopes = iter(batch)
                skipped = 0
                if runs[0][1] < now - timeout:  # some waited past their deadline
                    skipped = self._skip_overdue(envelopes, _seen_before(runs, now - timeout))
                for command, _ in envelopes:
                    try:
                        replies.append(handlers[type(command)](command))
                    except SessionStoreError as error:
                        replies.append(_Failed(error))
                    except Exception as error:
                        replies.append(self._internal_error(command, error))
                state.commands_processed += len(batch) - skipped
                command = None  # the last command (a large import...) is not kept idle

                if durable:
                    # 2. persist: the turn's changes become one transaction; the turn
                    # waits for it (and for every earlier one) before it is answered.
                    self._park(batch, replies, runs)
                    batch = self._batch = []
                    replies = self._replies = []
                else:
                    # 3. answer, then tell watchers what was committed
                    self._answer(batch, replies, runs, monotonic())
                    if state.changes:
                        self._publish(*state.take_changes())
                if state.garbage and not self._freeing:
                    self._freeing = True
                    loop.call_soon(self._free_garbage)
                if mailbox.qsize():
                    # ``take`` would not wait: yield, so that timers, I/O and other
                    # tasks run between turns however long the backlog.
                    await asyncio.sleep(0)
        finally:
            self.closed = True
            for timer in (self._sweep_timer, self._touch_timer, self._watchdog):
                if timer is not None:
                    timer.cancel()
            self._answer(batch, replies, [], math.inf)  # a batch cut short still gets its replies
            self.drain_closed()
            if state.changes and not durable:
                self._publish(*state.take_changes())
            state.garbage.clear()
            self.finished = True

    def _see(self, now: float) -> None:
        """The calls put since the last turn are first seen now."""
        queued = self.mailbox.qsize()
        if queued > self._seen_count:
            self._seen.append([queued - self._seen_count, now])
            self._seen_count = queued

    def _taken(self, count: int) -> Runs:
        """The runs of the ``count`` calls just taken (the oldest), off the queued ones'."""
        seen = self._seen
        self._seen_count -= count
        runs: Runs = []
        while count:
            run = seen[0]
            if run[0] <= count:
                runs.append(seen.popleft())
                count -= int(run[0])
            else:
                runs.append([count, run[1]])
                run[0] -= count
                count = 0
        return runs

    def _skip_overdue(self, envelopes: Iterator[Envelope], count: int) -> int:
        """The next ``count`` calls waited in the queue past their deadline: their callers
        get CallTimeout, and they are not applied (the store's own messages, which nobody
        awaits, still run). Returns how many were skipped."""
        replies = self._replies
        skipped = 0
        for command, future in itertools.islice(envelopes, count):
            if future is None:
                try:
                    replies.append(self._handlers[type(command)](command))
                except SessionStoreError as error:
                    replies.append(_Failed(error))
                except Exception as error:
                    replies.append(self._internal_error(command, error))
                continue
            if not future.done():
                future.set_exception(self._timeout_error(command))
            replies.append(_SKIPPED)
            skipped += 1
        return skipped

    @staticmethod
    def _internal_error(command: AnyCommand, error: Exception) -> _Failed:
        failure = InternalError(command.operation, error)
        failure.__cause__ = error
        return _Failed(failure)

    def depth(self) -> int:
        """Calls waiting for the actor: still queued, or taken but not yet handled."""
        unhandled = len(self._batch) - len(self._replies) - 1  # the one being handled is not
        return self.mailbox.qsize() + max(unhandled, 0)

    def _timeout_error(self, command: AnyCommand) -> CallTimeout:
        return CallTimeout(command.operation, self._timeout)

    def _answer(self, batch: list[Envelope], replies: list[object], runs: Runs, now: float) -> None:
        pairs = zip(batch, replies, strict=False)
        # Replies ready only after their deadline (the loop was held up, or the disk):
        # their callers get CallTimeout instead.
        for (command, future), reply in itertools.islice(
            pairs, _seen_before(runs, now - self._timeout)
        ):
            if future is not None and reply is not _SKIPPED and not future.done():
                future.set_exception(self._timeout_error(command))
        for (_, future), reply in pairs:
            if future is None or reply is _SKIPPED:
                continue  # no reply wanted, or the caller was told already
            try:
                if type(reply) is _Failed:
                    future.set_exception(reply.error)
                else:
                    future.set_result(reply)
            except asyncio.InvalidStateError:  # the caller gave up: drop the late reply
                pass
        for _, future in batch[len(replies) :]:
            if future is not None and not future.done():
                future.set_exception(self._closing_error())
        batch.clear()
        replies.clear()

    def _closing_error(self) -> SessionStoreError:
        if self.failure is not None:
            return PersistenceError(str(self.failure), self.failure.path)
        return StoreClosed("the session store stopped")

    def drain_closed(self) -> None:
        """No more calls: answer every queued message and waiting putter (StoreClosed, or
        PersistenceError after a failed commit)."""
        self.closed = True
        error = self._closing_error()
        self._seen.clear()
        self._seen_count = 0
        for _, future in self.mailbox.close(error):
            if future is not None and not future.done():
                future.set_exception(self._closing_error())

    def _publish(self, first: int, changes: list[VariableChange]) -> None:
        if changes and self._on_changes is not None:
            self._on_changes(first, changes)

    # -- durability ----------------------------------------------------------------------

    def _park(self, batch: list[Envelope], replies: list[object], runs: Runs) -> None:
        """Submit the turn's changes (if any) and answer it once everything before is durable."""
        state = self.state
        database = self._database
        assert database is not None
        first, changes = state.take_changes()
        records = state.take_journal()
        if records and self.failure is None:
            try:
                self._submitted = database.submit(Turn(tuple(records), state.counters_snapshot()))
            except PersistenceError as error:
                self._parked.append(
                    _Parked(self._submitted + 1, batch, replies, runs, first, changes)
                )
                self._fail(error)
                return
        if self._committed >= self._submitted and not self._parked and self.failure is None:
            self._publish(first, changes)  # nothing to wait for: a turn of reads
            self._answer(batch, replies, runs, time.monotonic())
            return
        self._parked.append(_Parked(self._submitted, batch, replies, runs, first, changes))
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(
                _WATCHDOG_TICK, self._check_parked
            )

    @property
    def settled(self) -> bool:
        """Every turn handled so far is answered: none waits for its commit. Only then
        does the state hold nothing that is not yet durable."""
        return self._committed >= self._submitted and not self._parked

    def committed(self, seq: int, error: BaseException | None) -> None:
        """The writer made turn ``seq`` (and every one before) durable, or failed.
        Runs in the loop's thread (the writer hands it over)."""
        if error is not None:
            failure = (
                error
                if isinstance(error, PersistenceError)
                else PersistenceError(f"the database failed: {error}")
            )
            self._committed = max(self._committed, seq)
            self._answer_durable()
            self._fail(failure)
            return
        self._committed = max(self._committed, seq)
        self._answer_durable()

    def _answer_durable(self) -> None:
        parked = self._parked
        while parked and parked[0].seq <= self._committed:
            turn = parked.popleft()
            self._publish(turn.first, turn.changes)
            self._answer(turn.batch, turn.replies, turn.runs, time.monotonic())

    def _fail(self, error: PersistenceError) -> None:
        """Fail stop: what is not durable is not acknowledged, and the store closes."""
        if self.failure is not None:
            return
        self.failure = error
        parked, self._parked = self._parked, deque()
        for turn in parked:
            for _, future in turn.batch:
                if future is not None and not future.done():
                    future.set_exception(PersistenceError(str(error), error.path))
            turn.batch.clear()
            turn.replies.clear()
        self.drain_closed()
        self.mailbox.wake()  # the loop sees the failure and ends

    def _check_parked(self) -> None:
        """Calls waiting for the disk past their deadline get CallTimeout (their writes
        may still become durable: they may or may not have been applied)."""
        self._watchdog = None
        if not self._parked:
            return
        cutoff = time.monotonic() - self._timeout
        for turn in self._parked:
            late = _seen_before(turn.runs, cutoff)
            for command, future in itertools.islice(turn.batch, late):
                if future is not None and not future.done():
                    future.set_exception(self._timeout_error(command))
        self._watchdog = asyncio.get_running_loop().call_later(_WATCHDOG_TICK, self._check_parked)

    @property
    def durable_through(self) -> int:
        """The last transaction known durable."""
        return self._committed

    @property
    def submitted(self) -> int:
        return self._submitted

    # -- freeing what deletions dropped ------------------------------------------------------

    def _free_garbage(self) -> None:
        """Drop what deletions left, a chunk at a time, so freeing never holds the loop long."""
        garbage = self.state.garbage
        budget = _FREE_CHUNK
        while garbage and budget > 0:
            table = garbage[-1]
            if isinstance(table, dict) and table:
                count = min(budget, len(table))
                for _ in range(count):
                    table.popitem()
                budget -= count
                if table:
                    break
            garbage.pop()
            budget -= 1
        if garbage and not self.finished:
            asyncio.get_running_loop().call_soon(self._free_garbage)
        else:
            self._freeing = False

    # -- the periodic sweep and touches ------------------------------------------------------

    def _sweep(self, command: _Sweep) -> None:
        self.state.sweep()
        self.state.record_touches()
        self._schedule_sweep(asyncio.get_running_loop())

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = self._cleanup_interval
        if interval is not None and interval != math.inf and not self.closed:
            self._sweep_timer = loop.call_later(interval, self._request_sweep)

    def _request_sweep(self) -> None:
        try:
            self.mailbox.put_nowait((_Sweep(), None))
        except asyncio.QueueFull:  # busy: try again next interval
            self._schedule_sweep(asyncio.get_running_loop())

    def _schedule_touches(self, loop: asyncio.AbstractEventLoop) -> None:
        """Without a periodic sweep, touches still reach the database now and then."""
        interval = self._touch_interval
        if self._database is None or interval is None or self._cleanup_interval is not None:
            return
        if not self.closed:
            self._touch_timer = loop.call_later(interval, self._request_touches)

    def _request_touches(self) -> None:
        self._touch_timer = None
        with contextlib.suppress(asyncio.QueueFull):  # busy: the next interval will do
            self.mailbox.put_nowait((_Touches(), None))
        self._schedule_touches(asyncio.get_running_loop())

    def _touches(self, command: _Touches) -> None:
        self.state.record_touches()


class _Touches(Command[None]):
    """A turn that only carries the recorded touches to the database."""

    __slots__ = ()
    operation: ClassVar[str] = "record_touches"


async def finish(reply: object, operation: str) -> Any:
    """A reply as its caller gets it: a :class:`Deferred` is finished here, a chunk at a
    time with a turn of the loop between chunks, in the task that waits for it.

    An exception other than a store error is a bug (for instance in a user type's
    ``to_json``): the caller gets :class:`InternalError`, as from a handler.
    """
    if not isinstance(reply, Deferred):
        return reply
    try:
        return await run_yielding(reply.run())
    except SessionStoreError:
        raise
    except Exception as error:
        raise InternalError(operation, error) from error
