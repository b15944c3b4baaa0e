"""The mailbox loop: one task drains command messages and answers each future.

Each turn takes every message already waiting (a batch), runs their handlers
one after another, then answers them. The three phases are kept apart on
purpose: a durability layer can persist the batch's changes between "handled"
and "answered" (group commit) without reshaping the loop. A handler never
awaits, so no message can interleave with another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from .errors import SessionStoreError, StoreClosed
from .messages import AnyCommand
from .model import VariableChange
from .state import StoreState

__all__ = ["Actor", "Envelope"]

Envelope = tuple[AnyCommand | None, "asyncio.Future[Any] | None"]
_SWEEP: Final[Envelope] = (None, None)
_MAX_BATCH: Final = 512  # bounds how long one turn holds the loop (turns yield between)


class _Failed:
    """A handler's error, waiting to be raised in its caller (a reply may be any object)."""

    __slots__ = ("error",)

    def __init__(self, error: SessionStoreError) -> None:
        self.error = error


class Actor:
    """Owns the mailbox and runs :class:`StoreState` handlers for it."""

    def __init__(
        self,
        state: StoreState,
        *,
        mailbox_size: int | None,
        cleanup_interval: float | None,
        on_changes: Callable[[list[VariableChange]], None] | None = None,
        before_answer: Callable[[], object] | None = None,
    ) -> None:
        self.state = state
        self.mailbox: asyncio.Queue[Envelope] = asyncio.Queue(mailbox_size or 0)
        self.closed = False  # no new calls are taken
        self.finished = False  # the loop has ended and the mailbox was answered
        self._cleanup_interval = cleanup_interval
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._on_changes = on_changes
        self._before_answer = before_answer  # fails calls that are already too late
        self._unhandled = 0  # taken into the current batch, not handled yet
        state.mailbox_depth = self.depth

    async def serve(self) -> None:
        """Run until cancelled; then answer everything that is left."""
        loop = asyncio.get_running_loop()
        self._schedule_sweep(loop)
        mailbox = self.mailbox
        handle = self.state.handle
        batch: list[Envelope] = []
        replies: list[object] = []
        try:
            while True:
                batch.append(await mailbox.get())
                while len(batch) < _MAX_BATCH and not mailbox.empty():
                    batch.append(mailbox.get_nowait())

                # 1. handle: apply every command of the batch, in order
                self._unhandled = len(batch)
                for command, _ in batch:
                    self._unhandled -= 1
                    if command is None:
                        self.state.sweep()
                        self._schedule_sweep(loop)
                        replies.append(None)
                        continue
                    try:
                        replies.append(handle(command))
                    except SessionStoreError as error:
                        replies.append(_Failed(error))

                # 2. (group commit would persist the batch's changes here)

                # 3. answer, then tell watchers what was committed
                if self._before_answer is not None:
                    self._before_answer()
                self._answer(batch, replies)
                if self.state.changes:
                    self._publish_changes()
                if not mailbox.empty():
                    # ``get`` would not suspend: yield, so that timers (call timeouts),
                    # I/O and other tasks run between turns however long the backlog.
                    await asyncio.sleep(0)
        finally:
            self.closed = True
            if self._sweep_timer is not None:
                self._sweep_timer.cancel()
            self._answer(batch, replies)  # a batch cut short still gets its replies
            self.drain_closed()
            if self.state.changes:
                self._publish_changes()
            self.finished = True

    def depth(self) -> int:
        """Calls waiting for the actor: still queued, or taken but not yet handled."""
        return self.mailbox.qsize() + self._unhandled

    @staticmethod
    def _answer(batch: list[Envelope], replies: list[object]) -> None:
        for (_, future), reply in zip(batch, replies, strict=False):
            if future is None or future.done():  # the caller gave up: drop the late reply
                continue
            if type(reply) is _Failed:
                future.set_exception(reply.error)
            else:
                future.set_result(reply)
        for _, future in batch[len(replies) :]:
            if future is not None and not future.done():
                future.set_exception(StoreClosed())
        batch.clear()
        replies.clear()

    def drain_closed(self) -> None:
        """Answer every queued message with StoreClosed (the loop is gone)."""
        mailbox = self.mailbox
        while not mailbox.empty():
            _, future = mailbox.get_nowait()
            if future is not None and not future.done():
                future.set_exception(StoreClosed())

    def _publish_changes(self) -> None:
        changes, self.state.changes = self.state.changes, []
        if self._on_changes is not None:
            self._on_changes(changes)

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = self._cleanup_interval
        if interval is not None and interval != float("inf") and not self.closed:
            self._sweep_timer = loop.call_later(interval, self._request_sweep)

    def _request_sweep(self) -> None:
        try:
            self.mailbox.put_nowait(_SWEEP)
        except asyncio.QueueFull:  # busy: try again next interval
            self._schedule_sweep(asyncio.get_running_loop())
