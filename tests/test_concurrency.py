"""Many writers on shared variables, from tasks and from OS threads (SPEC §2, §4, §8).

1,000 asyncio tasks (and then 8 OS threads through ``BlockingSessionStore``)
interleave single updates and atomic batch updates, some of them doomed to fail,
on the same variables, while a reader takes snapshots with ``get_variables``
throughout. Every write carries a unique token, so afterwards the ledger of what
each caller was told can be held against what the store holds and what the
reader saw:

- each variable's versions handed out are exactly 1..n, n its successful
  updates, and its final version is n: no update lost or applied twice;
- its final value is the token of the update that got version n;
- a failed atomic batch left no trace, in any snapshot or at the end;
- no snapshot ever shows an atomic batch half-applied: if it shows one variable
  with a batch's token, every other variable of that batch is at or past the
  revision that batch gave it, and the "group" variables, only ever written
  together, are always all equal.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Final

import anyio
import attrs
import pytest
from conftest import AnyStore, OpenBlocking, OpenStore

from sessionactor import (
    AtomicUpdateError,
    BlockingSessionStore,
    SessionStoreError,
    Variable,
)

SID: Final = "shared"
SHARED: Final = tuple(f"v{i}" for i in range(8))  # written one at a time and in batches
GROUP: Final = tuple(f"g{i}" for i in range(4))  # written only all together, atomically
EVERY: Final = (*SHARED, *GROUP)
CALLERS: Final = 1000
STEPS: Final = 3  # calls per caller
PROMPT: Final = 60.0


@attrs.frozen
class Write:
    """One planned call: ``values`` for a single update has one entry."""

    token: int
    values: dict[str, int]
    atomic: bool

    @property
    def doomed(self) -> bool:  # -1 breaks the constraint min 0
        return any(value < 0 for value in self.values.values())


def plan(caller: int) -> list[Write]:
    """The calls of one caller; tokens are unique across every caller."""
    rng = random.Random(caller)
    writes = []
    for step in range(STEPS):
        token = caller * STEPS + step + 1
        roll = rng.random()
        if roll < 0.4:
            writes.append(Write(token, {rng.choice(SHARED): token}, atomic=False))
        elif roll < 0.75:
            names = rng.sample(SHARED, rng.randint(2, 4))
            writes.append(Write(token, dict.fromkeys(names, token), atomic=True))
        elif roll < 0.85:  # a batch that must fail as a whole
            names = rng.sample(SHARED, rng.randint(2, 4))
            values = dict.fromkeys(names, token)
            values[names[-1]] = -1
            writes.append(Write(token, values, atomic=True))
        else:
            writes.append(Write(token, dict.fromkeys(GROUP, token), atomic=True))
    return writes


Outcome = tuple[Write, dict[str, Variable] | SessionStoreError]


def as_outcome(write: Write, result: Variable | dict[str, Variable | SessionStoreError]) -> Outcome:
    if isinstance(result, Variable):
        return write, {result.name: result}
    assert all(isinstance(v, Variable) for v in result.values())
    return write, {name: v for name, v in result.items() if isinstance(v, Variable)}


@attrs.define
class Ledger:
    """What the callers were told, and what the reader saw."""

    outcomes: list[Outcome] = attrs.Factory(list)
    snapshots: list[dict[str, Variable]] = attrs.Factory(list)

    def check_snapshot(self, snapshot: dict[str, Variable]) -> None:
        """Checked live by the reader: the group is never half-written."""
        assert len({snapshot[name].value for name in GROUP}) == 1, snapshot

    def verify(self, final: dict[str, Variable]) -> None:
        assert len(self.outcomes) == CALLERS * STEPS
        applied: dict[int, dict[str, Variable]] = {}
        failed: set[int] = set()
        versions: dict[str, list[tuple[int, int]]] = defaultdict(list)  # (version, token)
        for write, result in self.outcomes:
            if write.doomed:
                assert isinstance(result, AtomicUpdateError), result
                assert set(result.errors) == {n for n, v in write.values.items() if v < 0}
                failed.add(write.token)
                continue
            assert isinstance(result, dict), result
            assert set(result) == set(write.values)
            applied[write.token] = result
            for name, variable in result.items():
                assert variable.value == write.token
                versions[name].append((variable.version, write.token))

        for name in EVERY:
            handed_out = sorted(versions[name])
            count = len(handed_out)
            assert [version for version, _ in handed_out] == list(range(1, count + 1)), name
            assert final[name].version == count, name
            assert final[name].value == (handed_out[-1][1] if handed_out else 0), name
        assert any(versions[name] for name in GROUP)

        # Through a connection the reader's call waits behind a whole round of the
        # writers' pipelined calls: one snapshot per round of calls at the least.
        assert len(self.snapshots) >= STEPS, "the reader did not run throughout"
        for snapshot in [*self.snapshots, final]:
            self.check_snapshot(snapshot)
            for name, seen in snapshot.items():
                token = seen.value
                assert isinstance(token, int)
                assert token not in failed, f"{name} shows the failed batch {token}"
                if token == 0:
                    continue
                batch = applied[token]  # a value the store shows was a write it confirmed
                assert seen.revision == batch[name].revision
                for other, written in batch.items():  # the rest of that batch is there too
                    assert snapshot[other].revision >= written.revision, (name, other, token)


async def make_variables(store: AnyStore) -> None:
    await store.create_session(SID)
    for name in EVERY:
        await store.register_variable(SID, name, "integer", 0, constraints={"min": 0})


# --------------------------------------------------------------------------
# 1,000 asyncio tasks


async def test_a_thousand_tasks_lose_no_update_and_never_half_apply_a_batch(
    open_store: OpenStore,
) -> None:
    ledger = Ledger()
    async with open_store(call_timeout=None) as store:
        await make_variables(store)
        writers_done = asyncio.Event()

        async def write(caller: int) -> None:
            for item in plan(caller):
                try:
                    if item.atomic:
                        result = await store.update_variables(SID, item.values, atomic=True)
                        ledger.outcomes.append(as_outcome(item, result))
                    else:
                        ((name, value),) = item.values.items()
                        variable = await store.update_variable(SID, name, value)
                        ledger.outcomes.append(as_outcome(item, variable))
                except SessionStoreError as error:
                    ledger.outcomes.append((item, error))
                await asyncio.sleep(0)  # interleave with the other callers

        async def read() -> None:
            while not writers_done.is_set():
                snapshot = (await store.get_variables(SID, EVERY)).found
                ledger.check_snapshot(snapshot)
                ledger.snapshots.append(snapshot)

        with anyio.fail_after(PROMPT):
            reader = asyncio.create_task(read())
            async with anyio.create_task_group() as tg:
                for caller in range(CALLERS):
                    tg.start_soon(write, caller)
            writers_done.set()
            await reader
        final = (await store.get_variables(SID, EVERY)).found
    ledger.verify(final)


# --------------------------------------------------------------------------
# 8 OS threads through BlockingSessionStore


@pytest.fixture(params=[None, 4], ids=["unbounded", "mailbox-4"])
def blocking(
    request: pytest.FixtureRequest, open_blocking: OpenBlocking
) -> Iterator[BlockingSessionStore]:
    with open_blocking(call_timeout=None, mailbox_size=request.param) as store:
        store.create_session(SID)
        for name in EVERY:
            store.register_variable(SID, name, "integer", 0, constraints={"min": 0})
        yield store


def test_eight_threads_lose_no_update_and_never_half_apply_a_batch(
    blocking: BlockingSessionStore,
) -> None:
    ledger = Ledger()
    writers_done = threading.Event()
    failures: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            for caller in range(thread, CALLERS, 8):
                for item in plan(caller):
                    try:
                        if item.atomic:
                            result = blocking.update_variables(SID, item.values, atomic=True)
                            ledger.outcomes.append(as_outcome(item, result))
                        else:
                            ((name, value),) = item.values.items()
                            variable = blocking.update_variable(SID, name, value)
                            ledger.outcomes.append(as_outcome(item, variable))
                    except SessionStoreError as error:
                        ledger.outcomes.append((item, error))
        except BaseException as error:
            failures.append(error)

    def read() -> None:
        try:
            while not writers_done.is_set():
                snapshot = blocking.get_variables(SID, EVERY).found
                ledger.check_snapshot(snapshot)
                ledger.snapshots.append(snapshot)
        except BaseException as error:
            failures.append(error)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(PROMPT)
        assert not thread.is_alive(), "a writer hung"
    writers_done.set()
    reader.join(PROMPT)
    assert not failures, failures
    ledger.verify(blocking.get_variables(SID, EVERY).found)
