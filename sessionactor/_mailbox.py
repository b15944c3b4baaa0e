"""The actor's mailbox: a first-in, first-out queue of envelopes with one reader.

Why not ``asyncio.Queue``: a bounded ``Queue`` hands a freed slot to a waiting
putter by resolving its future, and a putter cancelled after that (while the
queue is momentarily full again) can drop the hand-over; once the queue drains,
nobody wakes the putters still waiting, and the store idles while they wait
for room until they time out. Here a woken putter *holds* a reserved slot until
it puts or gives up, and giving up passes the slot on, so every free slot is
always either used or offered to a waiting putter. The one reader (the actor)
takes whole batches at a time, which also costs less than a ``get`` per message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Mailbox"]

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Envelopes for the actor. ``maxsize=None``: unbounded.

    Putters that find it full wait in arrival order; callers that find room
    never overtake a putter that is already waiting.
    """

    __slots__ = ("_closed_error", "_maxsize", "_putters", "_reserved", "items", "reader")

    def __init__(self, maxsize: int | None = None) -> None:
        # An unbounded mailbox may also be written directly, as put_nowait does:
        # append to ``items``, then ``wake()`` the reader if ``reader`` is set.
        self.items: deque[T] = deque()
        self.reader: asyncio.Future[None] | None = None  # set while the reader waits
        self._maxsize = maxsize or 0
        self._putters: deque[asyncio.Future[None]] = deque()
        self._reserved = 0  # slots handed to woken putters that have not put yet
        self._closed_error: BaseException | None = None

    # -- the callers' side ------------------------------------------------------------

    def qsize(self) -> int:
        """Envelopes waiting to be taken."""
        return len(self.items)

    def empty(self) -> bool:
        return not self.items

    def full(self) -> bool:
        """Whether a new caller must wait for room."""
        if not self._maxsize:
            return False
        return bool(self._putters) or len(self.items) + self._reserved >= self._maxsize

    def put_nowait(self, item: T) -> None:
        """Append ``item``; ``asyncio.QueueFull`` if a caller must wait for room."""
        if self._maxsize and self.full():
            raise asyncio.QueueFull
        self.items.append(item)
        if self.reader is not None:
            self.wake()

    async def put(self, item: T) -> None:
        """Append ``item``, waiting for room first if the mailbox is bounded and full.

        Raises the mailbox's closing error if it is closed while waiting.
        """
        if self._closed_error is not None:
            raise self._closed_error
        if not self.full():
            self.put_nowait(item)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._putters.append(waiter)
        try:
            await waiter  # resolved: a slot is reserved for us
        except BaseException:
            if self._closed_error is None:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # Woken, then cancelled before putting: the slot goes to the next in line.
                    self._reserved -= 1
                    self._wake_putters()
                elif not waiter.done():
                    waiter.cancel()  # _wake_putters skips it
            raise
        if self._closed_error is not None:  # closed after we were woken
            raise self._closed_error
        self._reserved -= 1
        self.items.append(item)
        if self.reader is not None:
            self.wake()

    def _wake_putters(self) -> None:
        putters = self._putters
        room = self._maxsize - len(self.items) - self._reserved
        while room > 0 and putters:
            waiter = putters.popleft()
            if waiter.done():  # cancelled while waiting: it holds nothing
                continue
            waiter.set_result(None)
            self._reserved += 1
            room -= 1

    # -- the actor's side ------------------------------------------------------------------

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` envelopes, oldest first (none if empty); frees their slots."""
        items = self.items
        if len(items) <= limit:
            batch = list(items)
            items.clear()
        else:
            pop = items.popleft
            batch = [pop() for _ in range(limit)]
        if self._putters:
            self._wake_putters()
        return batch

    async def wait(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Return once the mailbox holds something (at once if it does). ``loop``: the
        running loop, if the reader knows it (asking asyncio costs a system call)."""
        if self.items:
            return
        getter = self.reader = (loop or asyncio.get_running_loop()).create_future()
        try:
            await getter
        finally:
            self.reader = None

    def wake(self) -> None:
        """Wake the reader even though nothing was put (it has something else to see)."""
        getter = self.reader
        if getter is not None:
            self.reader = None
            if not getter.done():
                getter.set_result(None)

    def close(self, error: BaseException) -> list[T]:
        """No more puts: waiting putters get ``error``; returns what was still queued."""
        self._closed_error = error
        putters, self._putters = self._putters, deque()
        for waiter in putters:
            if not waiter.done():
                waiter.set_exception(error)
        self._reserved = 0
        left = list(self.items)
        self.items.clear()
        return left
