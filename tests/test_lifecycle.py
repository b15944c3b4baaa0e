"""Lifecycle and faults (SPEC §2, §5, §6, §9): no caller is ever left waiting.

Faults are injected through the public type protocol: ``SessionStore(types=[...])``
takes a :class:`Faulty` type whose methods raise on demand, an ``Exception`` (a
bug in that type: the caller gets ``InternalError``) or a ``BaseException`` (it
kills the actor task: everyone gets ``StoreClosed``). Every wait that could hang
is bounded with ``anyio.fail_after``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import runpy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from conftest import AnyStore

from sessionactor import (
    InternalError,
    SessionStore,
    StoreClosed,
    ValidationError,
    Variable,
)

SID: Final = "s1"
PROMPT: Final = 5.0  # seconds; anything slower than this is a hang
EXAMPLES: Final = Path(__file__).resolve().parent.parent / "examples"


class ActorKiller(BaseException):
    """Not an Exception: nothing in a handler may catch it, so it ends the actor task."""


class Faulty:
    """A user-defined type (SPEC §5) that fails where a test tells it to.

    Values are strings. ``validate`` raises ``RuntimeError`` for the value
    ``"bug"`` and ``ActorKiller`` for ``"kill"``; ``fail_in`` names another method
    that raises ``RuntimeError`` on its next calls.
    """

    name = "faulty"

    def __init__(self) -> None:
        self.fail_in: str | None = None

    def _maybe_fail(self, method: str) -> None:
        if self.fail_in == method:
            raise RuntimeError(f"injected fault in {method}")

    def validate(self, value: object) -> object:
        if value == "bug":
            raise RuntimeError("injected fault in validate")
        if value == "kill":
            raise ActorKiller("injected actor death")
        if not isinstance(value, str):
            raise ValidationError("must be a string", value=value)
        self._maybe_fail("validate")
        return value

    def validate_constraints(self, constraints: Mapping[str, object]) -> None:
        self._maybe_fail("validate_constraints")

    def check(self, value: object, constraints: Mapping[str, object]) -> None:
        self._maybe_fail("check")

    def to_json(self, value: object) -> object:
        self._maybe_fail("to_json")
        return value

    def from_json(self, data: object) -> object:
        self._maybe_fail("from_json")
        return self.validate(data)


async def populated(store: AnyStore) -> None:
    await store.create_session(SID)
    await store.register_variable(SID, "x", "float", 0.0)
    await store.register_variable(SID, "f", "faulty", "ok")


async def observable_state(store: AnyStore) -> tuple[object, ...]:
    """Everything a failed call must leave as it was (read without export, which a
    faulty ``to_json`` would break)."""
    stats = await store.get_stats()
    session = await store.get_session(SID)
    return (
        await store.list_sessions(),
        await store.list_variables(SID),
        session.variable_count,
        session.total_variable_updates,
        session.metadata,
        stats.current_sessions,
        stats.current_variables,
        stats.sessions_created,
    )


async def finished_outcomes(tasks: list[asyncio.Task[Any]]) -> list[object]:
    """Each task's result or exception, once all are done (bounded: never a hang)."""
    with anyio.fail_after(PROMPT):
        await asyncio.wait(tasks)
    return [task.exception() or task.result() for task in tasks]


def actor_task() -> asyncio.Task[Any]:
    """The actor of the one store running in this loop, found by its task name."""
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "sessionactor"]
    return task


# --------------------------------------------------------------------------
# A caller that gives up


async def test_a_cancelled_caller_leaves_the_store_consistent(store: AnyStore) -> None:
    await store.create_session(SID)
    await store.register_variable(SID, "x", "integer", 0)
    for value in range(1, 51):
        # The deadline has passed: the command is already in the mailbox when the
        # caller is cancelled, so it may still be applied (as with GenServer.call).
        with anyio.move_on_after(0) as scope:
            await store.update_variable(SID, "x", value)
        assert scope.cancelled_caught
    variable = await store.get_variable(SID, "x")
    assert variable.version == 50  # each given-up call was applied exactly once
    assert variable.value == 50
    assert (await store.update_variable(SID, "x", 51)).version == 51


async def test_a_timed_out_caller_gets_timeout_error_and_the_store_keeps_serving(
    store: AnyStore,
) -> None:
    await store.create_session(SID)
    await store.register_variable(SID, "x", "integer", 0)
    with pytest.raises(TimeoutError), anyio.fail_after(0):
        await store.update_variable(SID, "x", 1)
    variable = await store.get_variable(SID, "x")
    assert (variable.version, variable.value) in {(0, 0), (1, 1)}
    assert (await store.update_variable(SID, "x", 2)).version == variable.version + 1


def live_futures() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, asyncio.Future))


@pytest.mark.parametrize("call_timeout", [None, 5.0])
async def test_late_replies_to_callers_that_gave_up_are_dropped_without_leak_or_noise(
    call_timeout: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    async with SessionStore(call_timeout=call_timeout) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)

        async def give_up(rounds: int) -> None:
            for value in range(rounds):
                with anyio.move_on_after(0):
                    await store.update_variable(SID, "x", value)
                with anyio.move_on_after(0):
                    await store.get_variable(SID, "x")

        await give_up(100)
        baseline = live_futures()
        await give_up(2000)
        if call_timeout is not None:
            await asyncio.sleep(0.15)  # the call-timeout timer lets answered calls go per tick
        assert live_futures() - baseline < 50
        assert (await store.get_variable(SID, "x")).version == 2100
    gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# --------------------------------------------------------------------------
# A handler that raises unexpectedly: InternalError, nothing changes, next call works


FaultyCall = Callable[[AnyStore], Awaitable[object]]

FAULTS: Final[dict[str, tuple[str | None, FaultyCall]]] = {
    "update-validate": (None, lambda s: s.update_variable(SID, "f", "bug")),
    "update-check": ("check", lambda s: s.update_variable(SID, "f", "fine")),
    "register-validate": (None, lambda s: s.register_variable(SID, "g", "faulty", "bug")),
    "register-validate_constraints": (
        "validate_constraints",
        lambda s: s.register_variable(SID, "g", "faulty", "fine", constraints={"k": 1}),
    ),
    "atomic-batch": (
        None,
        lambda s: s.update_variables(SID, {"x": 0.5, "f": "bug"}, atomic=True),
    ),
    "non-atomic-batch": (None, lambda s: s.update_variables(SID, {"x": 0.5, "f": "bug"})),
    "export-to_json": ("to_json", lambda s: s.export_variables(SID)),
    "import-from_json": (
        "from_json",
        lambda s: s.import_variables(
            SID, [{"id": "var_g_99", "name": "g", "type": "faulty", "value": "fine"}]
        ),
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_bug_in_a_handler_answers_internal_error_and_changes_nothing(fault: str) -> None:
    faulty = Faulty()
    fail_in, call = FAULTS[fault]
    async with SessionStore(types=[faulty]) as store:
        await populated(store)
        await store.update_variable(SID, "x", 0.25)
        before = await observable_state(store)

        faulty.fail_in = fail_in
        with anyio.fail_after(PROMPT), pytest.raises(InternalError) as caught:
            await call(store)
        faulty.fail_in = None

        assert isinstance(caught.value.__cause__, RuntimeError)
        assert "injected fault" in str(caught.value)
        assert await observable_state(store) == before
        # the store keeps serving, the faulty variable included
        assert (await store.update_variable(SID, "x", 0.75)).version == 2
        assert (await store.update_variable(SID, "f", "fine")).version == 1


async def test_bugs_in_handlers_do_not_disturb_concurrent_callers() -> None:
    async with SessionStore(types=[Faulty()]) as store:
        await populated(store)
        calls: list[asyncio.Task[Variable]] = []
        for i in range(100):  # interleaved in the mailbox: good, bad, good, bad...
            calls.append(asyncio.create_task(store.update_variable(SID, "x", i / 100)))
            calls.append(asyncio.create_task(store.update_variable(SID, "f", "bug")))
        outcomes = await finished_outcomes(list(calls))
        assert all(isinstance(o, Variable) for o in outcomes[0::2])
        assert all(isinstance(o, InternalError) for o in outcomes[1::2])
        assert sorted(o.version for o in outcomes[0::2] if isinstance(o, Variable)) == list(
            range(1, 101)
        )
        assert (await store.get_variable(SID, "f")).version == 0


# --------------------------------------------------------------------------
# The actor task dies: every waiting and every later caller gets StoreClosed


async def test_when_the_actor_dies_every_waiting_and_later_caller_gets_store_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with SessionStore(types=[Faulty()], call_timeout=None) as store:
        await populated(store)
        before = [asyncio.create_task(store.update_variable(SID, "x", 0.5)) for _ in range(3)]
        killer = asyncio.create_task(store.update_variable(SID, "f", "kill"))
        after = [asyncio.create_task(store.get_variable(SID, "x")) for _ in range(50)]
        outcomes = await finished_outcomes([*before, killer, *after])

        # handled before the fault in the same turn: answered with their results
        assert [o.version for o in outcomes[:3] if isinstance(o, Variable)] == [1, 2, 3]
        assert all(isinstance(o, StoreClosed) for o in outcomes[3:]), outcomes[3:]
        assert not store.running
        with anyio.fail_after(PROMPT), pytest.raises(StoreClosed):
            await store.get_variable(SID, "x")
    # the death is reported once, by the store, naming what killed it
    deaths = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(deaths) == 1, caplog.text
    assert deaths[0].name == "sessionactor"
    assert deaths[0].exc_info is not None and deaths[0].exc_info[0] is ActorKiller


async def test_when_the_actor_dies_callers_waiting_for_room_get_store_closed() -> None:
    async with SessionStore(types=[Faulty()], mailbox_size=2, call_timeout=None) as store:
        await populated(store)
        actor = actor_task()
        killer = asyncio.create_task(store.update_variable(SID, "f", "kill"))
        crowd = [asyncio.create_task(store.get_variable(SID, "x")) for _ in range(200)]
        outcomes = await finished_outcomes([killer, *crowd])
        assert all(isinstance(o, StoreClosed) for o in outcomes), outcomes
        assert isinstance(actor.exception(), ActorKiller)


async def test_cancelling_the_actor_task_closes_the_store_for_everyone() -> None:
    async with SessionStore(call_timeout=None, mailbox_size=4) as store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        waiting = [asyncio.create_task(store.update_variable(SID, "x", i)) for i in range(100)]
        await asyncio.sleep(0)  # let them queue (and some wait for room)
        actor_task().cancel()
        outcomes = await finished_outcomes(waiting)
        applied = sorted(o.version for o in outcomes if isinstance(o, Variable))
        assert applied == list(range(1, len(applied) + 1))
        assert all(isinstance(o, Variable | StoreClosed) for o in outcomes), outcomes
        assert not store.running
        with pytest.raises(StoreClosed):
            await store.session_exists(SID)


# --------------------------------------------------------------------------
# Stopping the store: what is queued is answered, never left in silence


@pytest.mark.parametrize("turns", [0, 1, 2, 5])
@pytest.mark.parametrize("mailbox_size", [None, 16])
async def test_stopping_answers_every_queued_caller(turns: int, mailbox_size: int | None) -> None:
    store = SessionStore(call_timeout=None, mailbox_size=mailbox_size)
    async with store:
        await store.create_session(SID)
        await store.register_variable(SID, "x", "integer", 0)
        callers = [asyncio.create_task(store.update_variable(SID, "x", i)) for i in range(1000)]
        for _ in range(turns):  # how far the actor gets before the stop
            await asyncio.sleep(0)
    outcomes = await finished_outcomes(callers)
    applied = sorted(o.version for o in outcomes if isinstance(o, Variable))
    assert applied == list(range(1, len(applied) + 1))  # no update lost or doubled
    closed = [o for o in outcomes if isinstance(o, StoreClosed)]
    assert len(applied) + len(closed) == 1000  # everyone else was told the store closed
    with pytest.raises(StoreClosed):
        await store.get_variable(SID, "x")


async def test_calls_before_start_and_after_stop_raise_store_closed() -> None:
    store = SessionStore()
    with pytest.raises(StoreClosed):
        await store.create_session(SID)
    async with store:
        assert store.running
        await store.create_session(SID)
    assert not store.running
    with pytest.raises(StoreClosed):
        await store.get_session(SID)
    with pytest.raises(StoreClosed):  # a store runs once
        async with store:
            pass
    await store.aclose()  # idempotent


# --------------------------------------------------------------------------
# Back-pressure


@pytest.mark.parametrize("mailbox_size", [1, 8])
async def test_a_bounded_mailbox_applies_back_pressure_without_deadlock(mailbox_size: int) -> None:
    async with SessionStore(mailbox_size=mailbox_size, call_timeout=None) as store:
        await store.create_session(SID)
        names = [f"v{i}" for i in range(10)]
        for name in names:
            await store.register_variable(SID, name, "integer", 0)

        async def caller(index: int) -> None:
            name = names[index % len(names)]
            await store.update_variable(SID, name, index)
            await store.get_variables(SID, names)
            await store.get_stats()

        depths: list[int] = []

        async def sample_depth() -> None:
            assert store._actor is not None  # white-box: the queue itself is not public
            while True:
                depths.append(store._actor.mailbox.qsize())
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample_depth())
        callers = [asyncio.create_task(caller(i)) for i in range(1000)]
        outcomes = await finished_outcomes(callers)
        sampler.cancel()
        assert outcomes == [None] * 1000
        assert max(depths) == mailbox_size  # it filled up, and callers waited for room
        versions = [(await store.get_variable(SID, name)).version for name in names]
        assert versions == [100] * len(names)


# --------------------------------------------------------------------------
# Supervision: tg.start(store.run)


async def test_a_store_under_a_task_group_stops_when_the_group_is_cancelled() -> None:
    first = SessionStore(call_timeout=None)
    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            await tg.start(first.run)
            assert first.running
            await first.create_session(SID)
            waiting = [asyncio.create_task(first.get_session(SID)) for _ in range(100)]
            tg.cancel_scope.cancel()
    assert not first.running
    outcomes = await finished_outcomes(waiting)
    assert all(getattr(o, "id", None) == SID or isinstance(o, StoreClosed) for o in outcomes)
    with pytest.raises(StoreClosed):
        await first.get_session(SID)

    # a new store starts cleanly afterwards; the old one cannot run again
    second = SessionStore()
    async with anyio.create_task_group() as tg:
        await tg.start(second.run)
        assert (await second.create_session(SID)).id == SID
        assert await second.list_sessions() == [SID]
        with pytest.raises(StoreClosed):
            await tg.start(first.run)
        tg.cancel_scope.cancel()
    assert not second.running


async def test_a_failing_worker_stops_the_supervised_store() -> None:
    store = SessionStore()

    async def worker() -> None:
        await store.create_session(SID)
        raise ValueError("worker failed")

    with pytest.raises(ExceptionGroup) as caught, anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            tg.start_soon(worker)
    assert caught.group_contains(ValueError)
    assert not store.running


# --------------------------------------------------------------------------
# pytest-asyncio fixtures: set-up and tear-down run in different tasks

_fixture_tasks: dict[str, asyncio.Task[Any] | None] = {}


@pytest.fixture
async def store_across_tasks() -> AsyncIterator[SessionStore]:
    _fixture_tasks["setup"] = asyncio.current_task()
    store = SessionStore()
    async with store:
        yield store
    assert not store.running
    with pytest.raises(StoreClosed):
        await store.list_sessions()


async def test_async_with_works_in_a_fixture_whose_set_up_and_tear_down_differ(
    store_across_tasks: SessionStore,
) -> None:
    assert await store_across_tasks.create_session(SID)
    assert await store_across_tasks.list_sessions() == [SID]
    # pytest-asyncio runs set-up, test and tear-down each in a task of its own
    assert asyncio.current_task() is not _fixture_tasks["setup"]


async def test_async_with_can_be_entered_and_left_in_different_tasks() -> None:
    store = SessionStore()
    await asyncio.create_task(store.__aenter__())
    assert await store.create_session(SID)
    await asyncio.create_task(store.__aexit__(None, None, None))
    assert not store.running
    with pytest.raises(StoreClosed):
        await store.get_session(SID)


def test_the_supervised_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "supervised.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "flaky: crashed" in out and "flaky = 20 after 20 updates" in out
    assert "a caller outside the group got StoreClosed" in out
    assert "a new store restored 3 variables" in out
