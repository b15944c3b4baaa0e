"""A bounded mailbox under a storm of callers who give up: nobody is left waiting.

500 tasks update shared variables in loops through a mailbox of 4 slots for a
couple of seconds. Many calls run under tiny deadlines (``anyio.fail_after``,
``anyio.move_on_after``) and a chaos task cancels callers at random, so callers
give up while waiting for room, just after being given a slot, and while
waiting for their reply. A slot lost on the way (the lost wakeup of a bounded
``asyncio.Queue``) leaves callers waiting for room that nobody hands them:
they would sit until their ``call_timeout``, far longer than the bound given
here for everyone to finish once the storm stops.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import anyio
import pytest

from sessionactor import CallTimeout, SessionStore, SessionStoreError, Variable, WatchOverflow
from sessionactor._actor import Actor, _Sweep

SID = "storm"
NAMES = tuple(f"v{i}" for i in range(20))
CALLERS = 500
STORM_SECONDS = 2.0
FINISH_WITHIN = 10.0  # seconds for every caller to finish after the storm; call_timeout is 60
WATCHERS = 10


class Tally:
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()  # update calls started, per variable
        self.applied: Counter[str] = Counter()  # update calls that returned their Variable
        self.outcomes: Counter[str] = Counter()
        self.call_timeouts = 0
        self.unexpected: list[BaseException] = []


async def call_once(store: SessionStore, rng: random.Random, tally: Tally) -> None:
    """One call, made the way a random caller would: plain, or under a tiny deadline."""
    name = rng.choice(NAMES)
    roll = rng.random()
    tally.attempts[name] += 1
    result: Variable | None = None
    try:
        if roll < 0.3:
            result = await store.update_variable(SID, name, rng.randrange(1000))
        elif roll < 0.55:
            with anyio.move_on_after(rng.choice((0.0, 0.00005, 0.0005, 0.002))):
                result = await store.update_variable(SID, name, rng.randrange(1000))
        elif roll < 0.65:
            with anyio.fail_after(rng.choice((0.0, 0.0001, 0.001, 0.005))):
                result = await store.update_variable(SID, name, rng.randrange(1000))
        elif roll < 0.8:
            async with asyncio.timeout(rng.choice((0.0, 0.0001, 0.001, 0.005))):
                result = await store.update_variable(SID, name, rng.randrange(1000))
        else:
            other = rng.choice([n for n in NAMES if n != name])
            tally.attempts[other] += 1
            batch = await store.update_variables(SID, {name: 1, other: 2})
            for key, outcome in batch.items():
                assert isinstance(outcome, Variable), outcome
                tally.applied[key] += 1
            tally.outcomes["applied"] += 1
            return
    except CallTimeout:  # before TimeoutError: it is one
        tally.call_timeouts += 1
        return
    except TimeoutError:
        tally.outcomes["deadline"] += 1
        return
    except SessionStoreError as error:
        tally.unexpected.append(error)
        return
    if result is None:
        tally.outcomes["moved on"] += 1
    else:
        tally.applied[name] += 1
        tally.outcomes["applied"] += 1


async def test_callers_giving_up_at_any_point_never_leave_others_waiting() -> None:
    tally = Tally()
    async with SessionStore(mailbox_size=4, call_timeout=60.0, cleanup_interval=0.01) as store:
        await store.create_session(SID, ttl=600)
        for name in NAMES:
            await store.register_variable(SID, name, "integer", 0)
        actor = store._actor
        assert isinstance(actor, Actor)
        stopping = False

        async def caller(index: int) -> None:
            rng = random.Random(index)
            task = asyncio.current_task()
            assert task is not None
            while not stopping:
                try:
                    await call_once(store, rng, tally)
                except asyncio.CancelledError:  # by chaos: carry on with the next call
                    task.uncancel()
                    tally.outcomes["cancelled"] += 1

        async def chaos(callers: list[asyncio.Task[None]]) -> None:
            """Cancels two callers at every turn of the loop: sometimes one just given a
            slot and not yet resumed (the moment a bounded asyncio.Queue lost it)."""
            rng = random.Random(-1)
            while not stopping:
                await asyncio.sleep(0)
                for task in rng.sample(callers, 2):
                    task.cancel()

        async def watcher(index: int) -> None:
            """Watches that start and end all the time: each end queues an unwatch."""
            rng = random.Random(10_000 + index)
            while not stopping:
                with anyio.move_on_after(rng.choice((0.0005, 0.005, 0.05))):
                    try:
                        async with store.watch_variables(SID, buffer=4) as changes:
                            async for _ in changes:
                                pass
                    except WatchOverflow:  # a slow watcher: its end queues an unwatch too
                        tally.outcomes["overflowed"] += 1

        callers = [asyncio.create_task(caller(index)) for index in range(CALLERS)]
        others = [asyncio.create_task(watcher(index)) for index in range(WATCHERS)]
        others.append(asyncio.create_task(chaos(callers)))
        await asyncio.sleep(STORM_SECONDS)
        stopping = True
        # Everyone finishes promptly: a caller whose slot was lost would wait for its
        # call_timeout (60 s) instead.
        everyone = [*callers, *others]
        _, stuck = await asyncio.wait(everyone, timeout=FINISH_WITHIN)
        for task in stuck:
            task.cancel()
        await asyncio.wait(everyone)
        assert not stuck, f"{len(stuck)} callers still wait {FINISH_WITHIN} s after the storm"
        for task in everyone:
            task.result()  # nothing failed

        assert not tally.unexpected, tally.unexpected[:5]
        assert tally.call_timeouts == 0, "callers waited until call_timeout: a slot was lost"
        # The storm did what it meant to: calls went through, were cut short and cancelled.
        assert tally.outcomes["applied"] > 500, tally.outcomes
        assert tally.outcomes["deadline"] + tally.outcomes["moved on"] > 100, tally.outcomes
        assert tally.outcomes["cancelled"] > 100, tally.outcomes

        # Afterwards the store serves promptly; once that call is answered, everything
        # queued before it (unwatches waiting for room included) has been handled...
        with anyio.fail_after(1.0):
            stats = await store.get_stats()
        # ...so the mailbox is empty (but for the periodic sweep), nothing is reserved,
        # nobody waits for room, and every watch has ended.
        mailbox = actor.mailbox
        assert all(type(command) is _Sweep for command, _ in mailbox.items)
        assert stats.mailbox_depth <= 1 and mailbox.qsize() <= 1
        assert mailbox._reserved == 0
        assert not [waiter for waiter in mailbox._putters if not waiter.done()]
        assert not store._unwatch_puts
        assert store._watchers == {}
        assert store._state.watched == {}
        with anyio.fail_after(1.0):
            final = (await store.get_variables(SID, NAMES)).found
        for name in NAMES:
            # A call given up after it was queued may still be applied (its reply is
            # dropped); one given up before it was queued never is.
            assert tally.applied[name] <= final[name].version <= tally.attempts[name], name
        assert stats.current_variables == len(NAMES)


@pytest.mark.parametrize("size", [1, 2, 4])
async def test_callers_who_wait_for_room_are_served_in_order_of_arrival(size: int) -> None:
    """200 callers arrive at once at a tiny mailbox: each is applied in its turn."""
    async with SessionStore(mailbox_size=size, call_timeout=30.0) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "counter", "integer", 0)
        versions: dict[int, int] = {}

        async def write(arrival: int) -> None:
            variable = await store.update_variable(SID, "counter", arrival)
            versions[arrival] = variable.version

        with anyio.fail_after(FINISH_WITHIN):
            async with anyio.create_task_group() as tg:
                for arrival in range(200):
                    tg.start_soon(write, arrival)
        assert versions == {arrival: arrival + 1 for arrival in range(200)}
        assert (await store.get_variable(SID, "counter")).value == 199
