"""The mailbox loop: one task takes batches of command messages and answers each.

Each turn takes what is waiting (up to ``_MAX_BATCH`` messages), runs their
handlers one after another, then answers them. The phases are kept apart on
purpose: a durability layer persists the turn's changes between "handled" and
"answered" (group commit). A handler never awaits, so no message can
interleave with another.

An envelope carries its call's deadline. A call still queued when its deadline
passes is not applied at all (its caller gets :class:`CallTimeout`); a reply
that is ready only after its deadline (the loop was held up) is dropped and the
caller gets ``CallTimeout`` too. A call whose caller was cancelled after
sending it is still applied and its reply dropped, as with ``GenServer.call``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final

from ._mailbox import Mailbox
from ._replies import Deferred
from .errors import CallTimeout, InternalError, SessionStoreError, StoreClosed
from .messages import AnyCommand, Command
from .model import VariableChange
from .state import StoreState

__all__ = ["NO_DEADLINE", "Actor", "Envelope", "finish"]

Envelope = tuple[AnyCommand, "asyncio.Future[Any] | None", float]
"""(command, the caller's reply future or None for no reply, deadline in monotonic seconds)."""

NO_DEADLINE: Final = math.inf
_MAX_BATCH: Final = 512  # bounds how long one turn holds the loop (turns yield between)
_FREE_CHUNK: Final = 2048  # dropped variables freed per loop iteration after a deletion
_SKIPPED: Final = object()  # the caller gave up before the actor reached its call


class _Failed:
    """A handler's error, waiting to be raised in its caller (a reply may be any object)."""

    __slots__ = ("error",)

    def __init__(self, error: SessionStoreError) -> None:
        self.error = error


class _Sweep(Command[None]):
    """The periodic sweep, sent by the actor's own timer."""

    __slots__ = ()
    operation: ClassVar[str] = "sweep"


class Actor:
    """Owns the mailbox and runs :class:`StoreState` handlers for it."""

    def __init__(
        self,
        state: StoreState,
        *,
        mailbox_size: int | None,
        cleanup_interval: float | None,
        call_timeout: float | None,
        on_changes: Callable[[list[VariableChange]], None] | None = None,
    ) -> None:
        self.state = state
        self.mailbox: Mailbox[Envelope] = Mailbox(mailbox_size)
        self.closed = False  # no new calls are taken
        self.finished = False  # the loop has ended and the mailbox was answered
        self.call_timeout = call_timeout
        self._cleanup_interval = cleanup_interval
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._on_changes = on_changes
        self._batch: list[Envelope] = []
        self._replies: list[object] = []
        self._freeing = False
        self._handlers = dict(state.handlers)
        self._handlers[_Sweep] = self._sweep
        state.mailbox_depth = self.depth
        state.free_garbage_at_once = False

    async def serve(self) -> None:
        """Run until cancelled; then answer everything that is left."""
        loop = asyncio.get_running_loop()
        self._schedule_sweep(loop)
        mailbox = self.mailbox
        state = self.state
        handlers = self._handlers
        monotonic = time.monotonic
        replies = self._replies
        batch: list[Envelope] = []
        try:
            while True:
                batch = self._batch = mailbox.take(_MAX_BATCH)
                if not batch:
                    await mailbox.wait()
                    continue

                # 1. handle: apply every command of the batch, in order
                state.begin_turn()
                now = monotonic()
                handled = 0
                for command, future, deadline in batch:
                    if deadline < now:  # its caller was told CallTimeout or is, now: skip it
                        if not future.done():  # type: ignore[union-attr]
                            future.set_exception(self._timeout(command))  # type: ignore[union-attr]
                        replies.append(_SKIPPED)
                        continue
                    handled += 1
                    try:
                        replies.append(handlers[type(command)](command))
                    except SessionStoreError as error:
                        replies.append(_Failed(error))
                    except Exception as error:
                        failure = InternalError(command.operation, error)
                        failure.__cause__ = error
                        replies.append(_Failed(failure))
                state.commands_processed += handled

                # 2. (group commit persists the batch's changes here)

                # 3. answer, then tell watchers what was committed
                self._answer(batch, replies, monotonic())
                if state.changes:
                    self._publish_changes()
                if state.garbage and not self._freeing:
                    self._freeing = True
                    loop.call_soon(self._free_garbage)
                if mailbox.qsize():
                    # ``take`` would not wait: yield, so that timers, I/O and other
                    # tasks run between turns however long the backlog.
                    await asyncio.sleep(0)
        finally:
            self.closed = True
            if self._sweep_timer is not None:
                self._sweep_timer.cancel()
            self._answer(batch, replies, math.inf)  # a batch cut short still gets its replies
            self.drain_closed()
            if state.changes:
                self._publish_changes()
            state.garbage.clear()
            self.finished = True

    def depth(self) -> int:
        """Calls waiting for the actor: still queued, or taken but not yet handled."""
        unhandled = len(self._batch) - len(self._replies) - 1  # the one being handled is not
        return self.mailbox.qsize() + max(unhandled, 0)

    def _timeout(self, command: AnyCommand) -> CallTimeout:
        return CallTimeout(command.operation, self.call_timeout or math.inf)

    def _answer(self, batch: list[Envelope], replies: list[object], now: float) -> None:
        for (command, future, deadline), reply in zip(batch, replies, strict=False):
            if future is None or reply is _SKIPPED:
                continue  # no reply wanted, or the caller was told already
            try:
                if deadline < now:  # ready only after its deadline: the loop was held up
                    future.set_exception(self._timeout(command))
                elif type(reply) is _Failed:
                    future.set_exception(reply.error)
                else:
                    future.set_result(reply)
            except asyncio.InvalidStateError:  # the caller gave up: drop the late reply
                pass
        for _, future, _ in batch[len(replies) :]:
            if future is not None and not future.done():
                future.set_exception(StoreClosed("the session store stopped"))
        batch.clear()
        replies.clear()

    def drain_closed(self) -> None:
        """No more calls: answer every queued message and waiting putter with StoreClosed."""
        self.closed = True
        for _, future, _ in self.mailbox.close(StoreClosed("the session store stopped")):
            if future is not None and not future.done():
                future.set_exception(StoreClosed("the session store stopped"))

    def _publish_changes(self) -> None:
        changes, self.state.changes = self.state.changes, []
        if self._on_changes is not None:
            self._on_changes(changes)

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

    # -- the periodic sweep --------------------------------------------------------------

    def _sweep(self, command: _Sweep) -> None:
        self.state.sweep()
        self._schedule_sweep(asyncio.get_running_loop())

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = self._cleanup_interval
        if interval is not None and interval != math.inf and not self.closed:
            self._sweep_timer = loop.call_later(interval, self._request_sweep)

    def _request_sweep(self) -> None:
        try:
            self.mailbox.put_nowait((_Sweep(), None, NO_DEADLINE))
        except asyncio.QueueFull:  # busy: try again next interval
            self._schedule_sweep(asyncio.get_running_loop())


async def finish(reply: object, operation: str) -> Any:
    """A reply as its caller gets it: a :class:`Deferred` is finished here, a chunk at a
    time with a turn of the loop between chunks, in the task that waits for it.

    An exception other than a store error is a bug (for instance in a user type's
    ``to_json``): the caller gets :class:`InternalError`, as from a handler.
    """
    if not isinstance(reply, Deferred):
        return reply
    steps = reply.run()
    try:
        while True:
            next(steps)
            await asyncio.sleep(0)
    except StopIteration as done:
        return done.value
    except SessionStoreError:
        raise
    except Exception as error:
        raise InternalError(operation, error) from error
