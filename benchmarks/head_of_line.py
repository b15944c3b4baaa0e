"""No call holds everyone: the latency of small calls while large ones run.

A session of 100,000 float variables ("big") and a session with one variable
("hot"). While background tasks work on the big session in a loop, one caller
times ``get_variable("hot", "x")`` call by call. Each phase reports that
caller's p50, p99 and worst latency, and how many large calls completed:

- ``quiet``: nothing in the background (the reference);
- ``export+list``: two tasks, one ``export_variables("big")``, one
  ``list_variables("big", "v1*")`` (the phase with a target: p99 <= 20 ms);
- ``import``: one task importing 100,000 variables into a fresh session;
- ``stats+sweep``: ``get_stats`` while 1,000 expired sessions wait for the
  sweep, then sweeping a 100,000-variable session that expired.

Run: ``python -m benchmarks.head_of_line [--quick] [--json]`` (``--json``: one JSON
line instead of the table, for ``benchmarks.run``)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sessionactor import SessionStore
from sessionactor.testing import FakeClock

BIG = 100_000
TARGET_P99 = 0.020


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed_gets(store: SessionStore, seconds: float) -> list[float]:
    latencies: list[float] = []
    clock = time.perf_counter
    stop = clock() + seconds
    while clock() < stop:
        start = clock()
        await store.get_variable("hot", "x")
        latencies.append(clock() - start)
    return latencies


async def phase(
    store: SessionStore,
    name: str,
    background: list[Callable[[], Awaitable[Any]]],
    seconds: float,
) -> dict[str, Any]:
    done = 0
    stop = False

    async def loop(work: Callable[[], Awaitable[Any]]) -> None:
        nonlocal done
        while not stop:
            await work()
            done += 1

    tasks = [asyncio.ensure_future(loop(work)) for work in background]
    await asyncio.sleep(0.05)  # the large calls are under way
    gc.collect()
    latencies = await timed_gets(store, seconds)
    stop = True
    await asyncio.gather(*tasks)
    return {
        "phase": name,
        "calls": len(latencies),
        "large_calls": done,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
    }


async def run(seconds: float) -> list[dict[str, Any]]:
    clock = FakeClock()
    results = []
    async with SessionStore(clock=clock, cleanup_interval=None, call_timeout=None) as store:
        await store.create_session("hot", ttl=float("inf"))
        await store.register_variable("hot", "x", "float", 0.5)
        await store.create_session("big", ttl=float("inf"))
        entries = [
            {"id": f"var_v{i}_{i + 1}", "name": f"v{i}", "type": "float", "value": 0.5}
            for i in range(BIG)
        ]
        await store.import_variables("big", entries)
        results.append(await phase(store, "quiet", [], seconds))
        results.append(
            await phase(
                store,
                "export+list",
                [
                    lambda: store.export_variables("big"),
                    lambda: store.list_variables("big", "v1*"),
                ],
                seconds,
            )
        )
        generation = 0

        async def import_fresh() -> None:
            nonlocal generation
            generation += 1
            session = f"imported-{generation}"
            await store.create_session(session)
            await store.import_variables(session, entries)
            await store.delete_session(session)

        results.append(await phase(store, "import", [import_fresh], seconds))

        for index in range(1000):
            await store.create_session(f"short-{index}", ttl=10.0)
        await store.create_session("doomed", ttl=10.0)
        await store.import_variables("doomed", entries)
        clock.advance(11.0)

        async def stats_then_sweep() -> None:
            await store.get_stats()

        sweep = asyncio.ensure_future(store.cleanup_expired_sessions())
        results.append(await phase(store, "stats+sweep", [stats_then_sweep], seconds))
        await sweep
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per phase instead of 3")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else 3.0
    results = asyncio.run(run(seconds))
    if args.json:
        summary = {"seconds_per_phase": seconds, "target_p99_ms": 1000 * TARGET_P99}
        print(json.dumps({**summary, "phases": results}))
        return
    print(f"{'phase':<12} {'gets':>8} {'large':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for row in results:
        print(
            f"{row['phase']:<12} {row['calls']:>8} {row['large_calls']:>6} "
            f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['max_ms']:>8.3f}"
        )
    busy = next(row for row in results if row["phase"] == "export+list")
    verdict = "PASS" if busy["p99_ms"] <= TARGET_P99 * 1000 else "FAIL"
    print(f"{verdict}  p99 of gets while export+list run: {busy['p99_ms']:.2f} ms (target <= 20)")


if __name__ == "__main__":
    main()
