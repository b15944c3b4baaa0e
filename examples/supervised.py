"""A store and its workers in one anyio task group, and what survives a failure.

Two rounds:

1. Each worker runs under a small one-for-one supervisor: when the flaky worker
   crashes, only it is restarted. The store, the other workers and everything
   already written carry on.
2. A worker crashes with no supervisor of its own. The task group does what task
   groups do: it cancels everything in it, the store included. Calls still in
   flight get ``StoreClosed`` (never a hang), the store's memory is gone, and
   only what a checkpoint task exported survives, to seed a new store.

Run it with ``python examples/supervised.py`` (about a second).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from sessionactor import SessionStore, StoreClosed

SESSION = "jobs"


async def steady_worker(store: SessionStore, name: str, steps: int) -> None:
    for step in range(1, steps + 1):
        await store.update_variable(SESSION, name, step)
        await anyio.sleep(0.01)


def flaky_worker(crash_at: int) -> Callable[[SessionStore, str, int], Awaitable[None]]:
    runs = 0

    async def work(store: SessionStore, name: str, steps: int) -> None:
        nonlocal runs
        runs += 1
        start = await store.get_variable_value(SESSION, name)
        for step in range(start + 1, steps + 1):
            if runs == 1 and step == crash_at:
                raise ZeroDivisionError(f"{name} hit a bug at step {step}")
            await store.update_variable(SESSION, name, step)
            await anyio.sleep(0.01)

    return work


async def one_for_one(
    store: SessionStore,
    name: str,
    work: Callable[[SessionStore, str, int], Awaitable[None]],
    steps: int,
) -> None:
    """Restart ``work`` when it crashes (at most 3 times); it resumes from the store."""
    for attempt in range(1, 4):
        try:
            await work(store, name, steps)
            print(f"  {name}: finished")
            return
        except Exception as error:
            print(f"  {name}: crashed ({error}); restart #{attempt}")
    print(f"  {name}: gave up")


async def setup(store: SessionStore, names: list[str]) -> None:
    await store.create_session(SESSION)
    for name in names:
        await store.register_variable(SESSION, name, "integer", 0)


async def round_one() -> None:
    print("== Round 1: a supervisor per worker")
    store = SessionStore()
    names = ["alpha", "beta", "flaky"]
    async with anyio.create_task_group() as tg:
        await tg.start(store.run)
        await setup(store, names)
        async with anyio.create_task_group() as workers:
            workers.start_soon(one_for_one, store, "alpha", steady_worker, 20)
            workers.start_soon(one_for_one, store, "beta", steady_worker, 20)
            workers.start_soon(one_for_one, store, "flaky", flaky_worker(crash_at=8), 20)
        for variable in await store.list_variables(SESSION):
            print(f"  {variable.name} = {variable.value} after {variable.version} updates")
        tg.cancel_scope.cancel()  # stop the store
    print(f"  store running after the group: {store.running}")


async def round_two() -> None:
    print("\n== Round 2: one unsupervised crash takes down the whole group")
    store = SessionStore()
    names = ["alpha", "beta", "doomed"]
    checkpoint: list[dict[str, Any]] = []
    last_seen: list[object] = [None]

    async def checkpointer() -> None:
        while True:
            await anyio.sleep(0.05)
            checkpoint[:] = await store.export_variables(SESSION)

    async def doomed(store: SessionStore, name: str, steps: int) -> None:
        await steady_worker(store, name, 8)
        raise RuntimeError("doomed worker failed and nobody restarts it")

    async def outsider() -> None:
        """A caller outside the store's task group: it is not cancelled, it is told."""
        try:
            while True:
                last_seen[0] = await store.get_variable_value(SESSION, "alpha")
                await anyio.sleep(0.005)
        except StoreClosed as error:
            print(f"  a caller outside the group got StoreClosed: {error}")

    async with anyio.create_task_group() as outer:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(store.run)
                await setup(store, names)
                outer.start_soon(outsider)
                tg.start_soon(checkpointer)
                tg.start_soon(steady_worker, store, "alpha", 1000)
                tg.start_soon(steady_worker, store, "beta", 1000)
                tg.start_soon(doomed, store, "doomed", 0)
        except* RuntimeError as group:
            print(f"  the group ended with: {group.exceptions[0]}")
    print(f"  store running: {store.running}; alpha was last seen at {last_seen[0]}")
    print(f"  the last checkpoint holds {len(checkpoint)} variables:")
    for entry in checkpoint:
        print(f"    {entry['name']} = {entry['value']} (version {entry['version']})")

    async with SessionStore() as fresh:
        await fresh.create_session(SESSION)
        restored = await fresh.import_variables(SESSION, checkpoint)
        alpha = await fresh.get_variable(SESSION, "alpha")
        print(f"  a new store restored {restored} variables from it; alpha = {alpha.value}")
        print("  (what was written after the last checkpoint died with the old store)")


async def main() -> None:
    await round_one()
    await round_two()


if __name__ == "__main__":
    anyio.run(main)
