"""call_timeout on the async path: a call the actor has not answered in time fails
with CallTimeout, promptly, and the store keeps serving."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest
from conftest import AnyType
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionactor import CallTimeout, SessionStore
from sessionactor._actor import Actor, _seen_before
from sessionactor.state import StoreState

SLOW_SECONDS = 0.0005
BACKLOG = 1500  # three turns of the actor (at most 512 calls each): later calls wait


class SlowType(AnyType):
    """A user type whose validation takes a while: a stand-in for a busy actor."""

    name = "slow"

    def validate(self, value: object) -> object:
        time.sleep(SLOW_SECONDS)  # blocks the loop, as a slow handler would
        return value


async def test_calls_stuck_behind_a_backlog_time_out() -> None:
    timeout = 0.1  # shorter than one turn of the actor over the backlog
    async with SessionStore(types=[SlowType()], call_timeout=timeout) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "slow", 0)
        arrivals: list[tuple[float, object]] = []

        async def update(value: int) -> None:
            try:
                outcome: object = await store.update_variable("s1", "x", value)
            except CallTimeout as error:
                outcome = error
            arrivals.append((time.monotonic(), outcome))

        await asyncio.gather(*(update(index) for index in range(BACKLOG)))
        timed_out = [(at, o) for at, o in arrivals if isinstance(o, CallTimeout)]
        assert timed_out
        assert all(o.operation == "update_variable" and o.timeout == timeout for _, o in timed_out)
        # callers were told as soon as the loop was free, not after the whole backlog
        last = max(at for at, _ in arrivals)
        assert min(at for at, _ in timed_out) < last
        # the store still serves; calls whose callers gave up may still have been applied
        variable = await store.get_variable("s1", "x")
        answered = len(arrivals) - len(timed_out)
        assert answered <= variable.version <= BACKLOG


async def test_a_timed_out_call_fails_near_its_deadline() -> None:
    timeout = 0.05
    async with SessionStore(types=[SlowType()], call_timeout=timeout) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "slow", 0)
        backlog = [
            asyncio.ensure_future(store.update_variable("s1", "x", i)) for i in range(BACKLOG)
        ]
        await asyncio.sleep(0)  # the backlog is queued first
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(CallTimeout):
            await store.get_variable("s1", "x")
        waited = time.monotonic() - started
        assert timeout <= waited + 0.001
        await asyncio.gather(*backlog, return_exceptions=True)


async def test_the_actor_lets_other_tasks_run_between_turns_of_a_backlog() -> None:
    async with SessionStore(types=[SlowType()]) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "slow", 0)
        calls = [asyncio.ensure_future(store.update_variable("s1", "x", i)) for i in range(BACKLOG)]
        await asyncio.sleep(0)  # the backlog is queued
        ticks_during_backlog = 0
        while not all(call.done() for call in calls):
            ticks_during_backlog += 1
            await asyncio.sleep(0)
        # three turns of the actor: this task ran between them, not only after the last
        assert ticks_during_backlog >= 3
        assert (await store.get_variable("s1", "x")).version == BACKLOG


async def test_a_reply_that_comes_after_the_deadline_is_dropped_for_call_timeout() -> None:
    class VerySlow(SlowType):
        name = "very_slow"

        def validate(self, value: object) -> object:
            time.sleep(0.15)  # longer than the call timeout: the loop cannot time it out
            return value

    async with SessionStore(types=[VerySlow()], call_timeout=0.05) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "integer", 0)
        with pytest.raises(CallTimeout):
            await store.register_variable("s1", "slow", "very_slow", 1)
        # the caller gave up, yet the call may have been applied: its late reply is dropped
        assert await store.has_variable("s1", "slow")
        assert (await store.update_variable("s1", "x", 1)).version == 1  # still serving


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=1, max_value=30)),
        min_size=1,
        max_size=30,
    )
)
def test_each_call_counts_its_deadline_from_the_turn_that_first_saw_it(
    steps: list[tuple[int, int]],
) -> None:
    """The actor's record of when it first saw the queued calls, against a plain model:
    calls put between turns are seen at the next turn, whichever turn takes them, when
    turns take only some of what is queued."""
    actor = Actor(StoreState(), mailbox_size=None, cleanup_interval=None, call_timeout=1.0)
    mailbox = actor.mailbox
    seen_at: dict[int, float] = {}  # the model: call number -> turn that first saw it
    queued: list[int] = []
    number = 0
    for turn, (puts, limit) in enumerate(steps):
        for _ in range(puts):
            mailbox.put_nowait((number, None))  # type: ignore[arg-type]
            queued.append(number)
            number += 1
        now = float(turn)
        for call in queued:
            seen_at.setdefault(call, now)
        actor._see(now)
        batch = mailbox.take(limit)
        runs = actor._taken(len(batch))
        taken, queued = queued[: len(batch)], queued[len(batch) :]
        numbers: list[object] = [call for call, _ in batch]
        assert numbers == taken
        assert sum(int(size) for size, _ in runs) == len(batch)
        expanded = [at for size, at in runs for _ in range(int(size))]
        assert expanded == [seen_at[call] for call in taken]
        # the calls first seen before a cutoff are always the first ones taken
        for cutoff in (now - 2.5, now - 0.5, now + 0.5):
            overdue = _seen_before(runs, cutoff)
            assert overdue == sum(1 for call in taken if seen_at[call] < cutoff)
