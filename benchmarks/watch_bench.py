"""Does watching slow the writers? (SPEC §10)

    python -m benchmarks.watch_bench              # about 30 s
    python -m benchmarks.watch_bench --uvloop     # the same on uvloop
    python -m benchmarks.watch_bench --updates 20 --repeats 41

100 concurrent writers call ``update_variable`` on 100 float variables of one
session, 100 updates each per round (10,000 updates), and the benchmark reports
their throughput in four set-ups, interleaved round by round so that machine
noise hits them alike:

- ``none``: no watcher at all;
- ``buffering``: 100 watchers of the whole session that never read, with a
  buffer big enough to hold every event: each of them takes every update, so
  this is what watching costs the actor itself;
- ``slow``: the same 100 watchers, each taking one event and then sleeping
  10 ms; their wake-ups share the event loop with the writers;
- ``stalled``: 100 watchers that never read, with ``buffer=64``: each
  overflows after 64 events and is then offered nothing more.

The actor never waits for a watcher: offering an event appends it to a bounded
buffer, so the cost a watcher adds is that append (and one wake-up), paid once
per event and watcher. The ratios printed are writer throughput with watchers
over without, measured twice: by the wall clock, and by the process's CPU
time, which other programs on a shared machine disturb much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from sessionactor import SessionStore, VariableChange, WatchOverflow

__all__ = ["main"]

SESSION = "bench"
WRITERS = 100
WATCHERS = 100
NAMES = [f"v{i:03d}" for i in range(100)]
SETUPS = ("none", "buffering", "slow", "stalled")
Throughput = tuple[float, float]  # updates per second: by wall-clock time, by CPU time
Results = dict[str, list[Throughput]]


async def _slow_consumer(changes: AsyncIterator[VariableChange]) -> None:
    with contextlib.suppress(WatchOverflow):
        async for _ in changes:
            await asyncio.sleep(0.01)


async def _writers(store: SessionStore, updates_per_writer: int, round_number: int) -> Throughput:
    """Run the writers once; return their throughput."""

    async def write(index: int) -> None:
        name = NAMES[index % len(NAMES)]
        for step in range(updates_per_writer):
            await store.update_variable(SESSION, name, ((round_number + step) % 100) / 100)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(write(i) for i in range(WRITERS)))
    updates = WRITERS * updates_per_writer
    return updates / (time.perf_counter() - wall), updates / (time.process_time() - cpu)


async def _one_round(setup: str, updates_per_writer: int, round_number: int) -> Throughput:
    async with SessionStore(call_timeout=60) as store, contextlib.AsyncExitStack() as stack:
        await store.create_session(SESSION)
        for name in NAMES:
            await store.register_variable(
                SESSION, name, "float", 0.5, constraints={"min": 0.0, "max": 1.0}
            )
        consumers: list[asyncio.Task[None]] = []
        if setup != "none":
            buffer = 64 if setup == "stalled" else WRITERS * updates_per_writer + 1
            for _ in range(WATCHERS):
                watch = store.watch_variables(SESSION, include_initial=False, buffer=buffer)
                changes = await stack.enter_async_context(watch)
                if setup == "slow":
                    consumers.append(asyncio.create_task(_slow_consumer(changes)))
        try:
            return await _writers(store, updates_per_writer, round_number)
        finally:
            for consumer in consumers:
                consumer.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)


async def _bench(updates_per_writer: int, repeats: int) -> Results:
    results: Results = {setup: [] for setup in SETUPS}
    await _one_round("none", updates_per_writer, -1)  # warm-up
    for round_number in range(repeats):
        for setup in SETUPS:
            results[setup].append(await _one_round(setup, updates_per_writer, round_number))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100, help="updates per writer per round")
    parser.add_argument("--repeats", type=int, default=11, help="rounds per set-up")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args(argv)

    runner: Callable[[Coroutine[Any, Any, Results]], Results]
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    results = runner(_bench(args.updates, args.repeats))

    loop_name = "uvloop" if args.uvloop else "asyncio"
    total = WRITERS * args.updates
    print(f"{WRITERS} writers x {args.updates} updates ({total} per round), {loop_name}, ", end="")
    print(f"median of {args.repeats} rounds; updates/s and ratio to no watcher")
    print(f"  {'':<10} {'wall clock':>30}   {'CPU time':>20}")
    wall_base = statistics.median(wall for wall, _ in results["none"])
    cpu_base = statistics.median(cpu for _, cpu in results["none"])
    for setup in SETUPS:
        walls = [wall for wall, _ in results[setup]]
        wall = statistics.median(walls)
        cpu = statistics.median(cpu for _, cpu in results[setup])
        spread = f"{min(walls):>7,.0f}..{max(walls):<7,.0f}"
        print(
            f"  {setup:<10} {wall:>9,.0f} ({spread}) {wall / wall_base:.2f}"
            f"   {cpu:>9,.0f} {cpu / cpu_base:.2f}"
        )


if __name__ == "__main__":
    main()
