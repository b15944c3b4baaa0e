"""call_timeout on the async path: a call the actor has not answered in time fails
with CallTimeout, promptly, and the store keeps serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import anyio
import pytest

from sessionactor import CallTimeout, SessionStore

SLOW_SECONDS = 0.0005
BACKLOG = 1500  # three turns of the actor (at most 512 calls each): later calls wait


class SlowType:
    """A user type whose validation takes a while: a stand-in for a busy actor."""

    name = "slow"

    def validate(self, value: object) -> object:
        time.sleep(SLOW_SECONDS)  # blocks the loop, as a slow handler would
        return value

    def validate_constraints(self, constraints: Mapping[str, object]) -> None:
        return None

    def check(self, value: object, constraints: Mapping[str, object]) -> None:
        return None

    def to_json(self, value: object) -> object:
        return value

    def from_json(self, data: object) -> object:
        return data


async def test_calls_stuck_behind_a_backlog_time_out() -> None:
    timeout = 0.1
    async with SessionStore(types=[SlowType()], call_timeout=timeout) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "slow", 0)
        # One turn takes 0.25 s of handling: the calls queued behind it wait past the
        # timeout, and fail as soon as the loop is free to tell them.
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(store.update_variable("s1", "x", index) for index in range(BACKLOG)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        timed_out = [o for o in outcomes if isinstance(o, CallTimeout)]
        answered = [o for o in outcomes if not isinstance(o, BaseException)]
        assert timed_out and answered
        assert all(o.operation == "update_variable" and o.timeout == timeout for o in timed_out)
        assert not [o for o in outcomes if isinstance(o, BaseException) and o not in timed_out]
        # they were told at the end of the turn that made them late, not after the backlog
        assert elapsed < BACKLOG * SLOW_SECONDS + 1.0
        # the store still serves, and gave up calls may still have been applied
        variable = await store.get_variable("s1", "x")
        assert variable.version >= len(answered)


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
