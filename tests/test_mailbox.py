"""The actor's mailbox on its own: first in, first out, a slot freed is never lost.

A bounded ``asyncio.Queue`` lost wakeups: it handed a freed slot to a waiting
putter, and a putter cancelled after that, while the queue was momentarily full
again, dropped the hand-over; once the queue drained, the putters still waiting
slept until their callers timed out. ``Mailbox`` makes a woken putter hold a
reserved slot and pass it on if it gives up. These tests cancel putters at every
point where they can be cancelled (before their first step, while waiting, after
being woken and before resuming), by hand and in random interleavings, and check
that a free slot never sits beside a waiting putter, that nothing is put twice
or lost, and that putters who had to wait get their slots in arrival order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor._mailbox import Mailbox

PROMPT = 5.0  # seconds: every wait in these tests is bounded


async def settle(turns: int = 20) -> None:
    """Let every callback that is ready run (woken putters resume and put)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def waiting_putters(mailbox: Mailbox[int]) -> int:
    """Putters still waiting for room (cancelled ones hold nothing)."""
    return sum(not waiter.done() for waiter in mailbox._putters)


def assert_no_slot_is_lost(mailbox: Mailbox[int], size: int) -> None:
    """After settling: nothing reserved any more, and no free slot beside a waiting putter."""
    assert mailbox._reserved == 0
    assert mailbox.qsize() <= size
    if waiting_putters(mailbox):
        assert mailbox.qsize() == size, "a putter waits while there is room"


# --------------------------------------------------------------------------
# By hand: each way to wait, to be woken and to give up


async def test_unbounded_mailbox_never_makes_a_caller_wait() -> None:
    mailbox: Mailbox[int] = Mailbox()
    for item in range(10_000):
        mailbox.put_nowait(item)
    await mailbox.put(10_000)
    assert not mailbox.full()
    assert mailbox.take(20_000) == list(range(10_001))
    assert mailbox.empty()


async def test_take_returns_the_oldest_first_up_to_its_limit() -> None:
    mailbox: Mailbox[int] = Mailbox(8)
    for item in range(5):
        mailbox.put_nowait(item)
    assert mailbox.take(2) == [0, 1]
    assert mailbox.take(10) == [2, 3, 4]
    assert mailbox.take(10) == []


async def test_a_full_mailbox_refuses_put_nowait() -> None:
    mailbox: Mailbox[int] = Mailbox(2)
    mailbox.put_nowait(1)
    mailbox.put_nowait(2)
    assert mailbox.full()
    with pytest.raises(asyncio.QueueFull):
        mailbox.put_nowait(3)
    assert mailbox.take(10) == [1, 2]


async def test_putters_that_wait_are_woken_in_arrival_order() -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    mailbox.put_nowait(0)
    tasks = [asyncio.create_task(mailbox.put(item)) for item in range(1, 6)]
    await settle()
    assert waiting_putters(mailbox) == 5
    taken: list[int] = []
    with anyio.fail_after(PROMPT):
        while len(taken) < 6:
            taken += mailbox.take(1)
            await settle()
    assert taken == [0, 1, 2, 3, 4, 5]
    assert all(task.done() and task.exception() is None for task in tasks)


async def test_a_caller_with_room_never_overtakes_a_waiting_putter() -> None:
    mailbox: Mailbox[int] = Mailbox(2)
    mailbox.put_nowait(1)
    mailbox.put_nowait(2)
    first = asyncio.create_task(mailbox.put(3))
    await settle()
    assert mailbox.take(1) == [1]  # a slot is free, and promised to the waiting putter
    with pytest.raises(asyncio.QueueFull):
        mailbox.put_nowait(4)
    later = asyncio.create_task(mailbox.put(4))
    await settle()
    assert first.done() and not later.done()
    assert mailbox.take(10) == [2, 3]
    await settle()
    assert mailbox.take(10) == [4]
    assert later.done()


async def test_a_putter_cancelled_while_waiting_holds_no_slot() -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    mailbox.put_nowait(0)
    cancelled = asyncio.create_task(mailbox.put(1))
    waiting = asyncio.create_task(mailbox.put(2))
    await settle()
    cancelled.cancel()
    await settle()
    assert cancelled.cancelled()
    assert mailbox.take(10) == [0]
    await settle()
    assert mailbox.take(10) == [2]
    assert waiting.done()
    assert_no_slot_is_lost(mailbox, 1)


async def test_a_woken_putter_cancelled_before_it_resumes_hands_its_slot_on() -> None:
    """The lost wakeup of ``asyncio.Queue``: woken, then cancelled while the mailbox is
    full again; the next putter in line must get the slot."""
    mailbox: Mailbox[int] = Mailbox(1)
    mailbox.put_nowait(0)
    woken = asyncio.create_task(mailbox.put(1))
    next_in_line = asyncio.create_task(mailbox.put(2))
    await settle()
    assert mailbox.take(1) == [0]  # wakes ``woken``: its slot is reserved
    woken.cancel()  # before it ran again
    await settle()
    assert woken.cancelled()
    assert mailbox.take(10) == [2]
    assert next_in_line.done()
    assert_no_slot_is_lost(mailbox, 1)


async def test_a_putter_cancelled_before_its_first_step_puts_nothing() -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    task = asyncio.create_task(mailbox.put(1))
    task.cancel()
    await settle()
    assert task.cancelled()
    assert mailbox.empty() and not mailbox.full()


async def test_a_putter_given_up_by_a_deadline_leaves_its_turn_to_the_next() -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    mailbox.put_nowait(0)

    async def put_within(item: int, seconds: float) -> bool:
        with anyio.move_on_after(seconds):
            await mailbox.put(item)
            return True
        return False

    gives_up = asyncio.create_task(put_within(1, 0))
    patient = asyncio.create_task(put_within(2, PROMPT))
    await settle()
    assert mailbox.take(1) == [0]
    with anyio.fail_after(PROMPT):
        assert await patient
        assert not await gives_up
    assert mailbox.take(10) == [2]
    assert_no_slot_is_lost(mailbox, 1)


async def test_close_fails_every_waiting_putter_and_returns_what_was_queued() -> None:
    mailbox: Mailbox[int] = Mailbox(1)
    mailbox.put_nowait(0)
    woken = asyncio.create_task(mailbox.put(1))
    waiting = asyncio.create_task(mailbox.put(2))
    await settle()
    assert mailbox.take(1) == [0]  # ``woken`` holds a reserved slot, not yet used
    error = RuntimeError("closed for the test")
    assert mailbox.close(error) == []
    with anyio.fail_after(PROMPT):
        for task in (woken, waiting):
            with pytest.raises(RuntimeError, match="closed for the test"):
                await task
    with pytest.raises(RuntimeError, match="closed for the test"):
        await mailbox.put(3)
    assert mailbox.empty()


async def test_close_returns_the_queued_envelopes() -> None:
    mailbox: Mailbox[int] = Mailbox(4)
    for item in range(3):
        mailbox.put_nowait(item)
    assert mailbox.close(RuntimeError("closed")) == [0, 1, 2]
    assert mailbox.empty()


async def test_wait_returns_once_something_is_put() -> None:
    mailbox: Mailbox[int] = Mailbox(2)
    waiter = asyncio.create_task(mailbox.wait())
    await settle()
    assert not waiter.done()
    mailbox.put_nowait(1)
    with anyio.fail_after(PROMPT):
        await waiter
    await mailbox.wait()  # at once: the mailbox holds something
    assert mailbox.take(10) == [1]


async def test_wait_cancelled_leaves_no_getter_behind() -> None:
    mailbox: Mailbox[int] = Mailbox(2)
    waiter = asyncio.create_task(mailbox.wait())
    await settle()
    waiter.cancel()
    await settle()
    assert waiter.cancelled()
    assert mailbox.reader is None
    mailbox.put_nowait(1)  # no one to wake: must not fail
    assert mailbox.take(10) == [1]


# --------------------------------------------------------------------------
# Random interleavings of putters, cancellations at any point and takes


@attrs.frozen
class Spawn:
    """``count`` putter tasks arrive (each runs at the next settle)."""

    count: int
    deadline: bool  # they give up by themselves, through a deadline that has passed


@attrs.frozen
class Take:
    """The actor takes up to ``limit``; then, before anything runs, the putters picked by
    ``cancel`` (indices into those not done, oldest first: index 0 is the one most likely
    just woken) are cancelled."""

    limit: int
    cancel: tuple[int, ...]


@attrs.frozen
class Cancel:
    """Cancel the ``which``-th putter that is not done (modulo how many there are)."""

    which: int


@attrs.frozen
class Settle:
    pass


Op = Spawn | Take | Cancel | Settle

SPAWN = st.builds(Spawn, st.integers(1, 3), st.booleans())
TAKE = st.builds(Take, st.integers(1, 3), st.lists(st.integers(0, 3), max_size=2).map(tuple))
# Arrivals and takes are drawn more often than the rest: the interesting interleavings
# need a full mailbox, putters waiting, and newcomers or cancellations right after a take.
OPS = st.lists(
    st.one_of(SPAWN, TAKE, SPAWN, st.builds(Cancel, st.integers(0, 8)), st.just(Settle()), TAKE),
    max_size=30,
)


@attrs.define
class Putter:
    item: int
    task: asyncio.Task[None] | None = None
    arrived: int | None = None  # the order in which its first step ran
    waited: bool = False  # it found the mailbox full
    put: bool = False  # its put returned: the item is in


async def run_interleaving(make: Callable[[int], Mailbox[int]], size: int, ops: list[Op]) -> None:
    mailbox = make(size)
    putters: list[Putter] = []
    taken: list[int] = []
    arrivals = 0

    async def put(putter: Putter, deadline: bool) -> None:
        nonlocal arrivals
        putter.arrived = arrivals
        arrivals += 1
        putter.waited = mailbox.full()
        if deadline:
            with anyio.move_on_after(0):
                await mailbox.put(putter.item)
                putter.put = True
        else:
            await mailbox.put(putter.item)
            putter.put = True

    def cancel(which: int) -> None:
        live = [p.task for p in putters if p.task is not None and not p.task.done()]
        if live:
            live[which % len(live)].cancel()

    for op in ops:
        if isinstance(op, Spawn):
            for _ in range(op.count):
                putter = Putter(len(putters))
                putter.task = asyncio.create_task(put(putter, op.deadline))
                putters.append(putter)
        elif isinstance(op, Take):
            taken += mailbox.take(op.limit)
            for which in op.cancel:
                cancel(which)
        elif isinstance(op, Cancel):
            cancel(op.which)
        else:
            await settle()
            assert_no_slot_is_lost(mailbox, size)
        assert mailbox.qsize() + mailbox._reserved <= size

    # Drain: every putter still waiting must get in, one take after another.
    with anyio.fail_after(PROMPT):
        while any(p.task is not None and not p.task.done() for p in putters):
            await settle()
            assert_no_slot_is_lost(mailbox, size)
            taken += mailbox.take(size)
    await settle()
    taken += mailbox.take(size + 1)
    assert mailbox.empty() and mailbox._reserved == 0 and waiting_putters(mailbox) == 0

    put_through = {p.item for p in putters if p.put}
    assert not any(p.put for p in putters if p.task is not None and p.task.cancelled())
    assert sorted(taken) == sorted(put_through), "an item was lost, invented or put twice"
    # Those that had to wait got their slots in the order they came.
    waited = [p.item for p in sorted(putters, key=lambda p: p.arrived or 0) if p.waited]
    assert [item for item in taken if item in set(waited)] == [
        item for item in waited if item in put_through
    ]


@settings(max_examples=600)
@given(st.integers(1, 3), OPS)
def test_any_interleaving_of_puts_cancellations_and_takes_loses_no_slot(
    size: int, ops: list[Op]
) -> None:
    asyncio.run(run_interleaving(Mailbox, size, ops))
