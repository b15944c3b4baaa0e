"""Soak run: minutes of mixed load with expiry, to show throughput holds and memory does not grow.

    python -m benchmarks.soak                 # 3 minutes (``make soak``)
    python -m benchmarks.soak --minutes 0.5   # a quick look

One store on the real clock with short session ttls and a sweep every second,
so sessions are born, used, deleted or left to expire all the time while the
population stays bounded. Asyncio workers create sessions, register, update
(single, batch atomic and not, some invalid), read, list, export and import,
store programs, watch a session, and delete; two OS threads do the same through
``BlockingSessionStore.wrap``. Every ``--report-every`` seconds a line shows the
calls per second in that window, the live sessions and variables, and the
process's resident memory (RSS). At the end: RSS at start, after warm-up and at
the end. Opt-in; not part of ``make test``. Exit status 1 if anything but the
expected store errors happened.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import random
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable

from sessionactor import (
    AtomicUpdateError,
    BlockingSessionStore,
    SessionNotFound,
    SessionStore,
    StoreClosed,
    ValidationError,
    VariableExists,
    VariableNotFound,
    VersionConflict,
)

__all__ = ["main", "soak"]

# Errors the load provokes on purpose, or meets because a session expired under it.
EXPECTED = (
    SessionNotFound,
    VariableNotFound,
    VariableExists,
    ValidationError,
    AtomicUpdateError,
    VersionConflict,
)
NAMES = tuple(f"v{i}" for i in range(8))


def rss_mib() -> float:
    """Resident memory now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class Load:
    """Counts shared by every worker (each increment is one bytecode-level op per thread)."""

    def __init__(self) -> None:
        self.calls = 0
        self.expected_errors = 0
        self.unexpected: list[BaseException] = []
        self.session_ids = itertools.count()
        self.stop = False
        self.changes_seen = 0


async def session_life(store: SessionStore, load: Load, rng: random.Random) -> None:
    """One session's life: created, used for a while, then deleted or abandoned to expire."""
    sid = f"s{next(load.session_ids)}"
    await store.create_session(sid, ttl=rng.uniform(0.5, 3.0), metadata={"owner": "soak"})
    for name in NAMES[: rng.randint(2, len(NAMES))]:
        await store.register_variable(sid, name, "float", 0.5, constraints={"min": 0, "max": 1})
    load.calls += 1 + len(NAMES)
    names = [v.name for v in await store.list_variables(sid)]
    for _ in range(rng.randint(10, 60)):
        try:
            await random_call(store, load, rng, sid, names)
        except SessionNotFound:
            load.expected_errors += 1
            return  # it expired under us
        except EXPECTED:
            load.expected_errors += 1
        load.calls += 1
        await asyncio.sleep(0)
    if rng.random() < 0.5:
        await store.delete_session(sid)
        load.calls += 1
    # otherwise: left to expire; the sweep removes it


async def random_call(
    store: SessionStore, load: Load, rng: random.Random, sid: str, names: list[str]
) -> None:
    roll = rng.random()
    name = rng.choice(names)
    if roll < 0.35:
        await store.update_variable(sid, name, rng.random())
    elif roll < 0.45:
        await store.update_variable(sid, name, 1.5)  # refused: ConstraintViolation
    elif roll < 0.6:
        await store.update_variables(sid, {n: rng.random() for n in names[:3]}, atomic=True)
    elif roll < 0.65:
        await store.update_variables(sid, {names[0]: 0.1, "ghost": 0.2})  # one key fails
    elif roll < 0.85:
        await store.get_variables(sid, names)
    elif roll < 0.9:
        await store.get_variable(sid, name)
    elif roll < 0.93:
        await store.store_program(sid, "prog", {"steps": list(range(20))})
        await store.get_program(sid, "prog")
        load.calls += 1
    elif roll < 0.96:
        copy = f"{sid}-copy{next(load.session_ids)}"
        await store.create_session(copy, ttl=1.0)
        await store.import_variables(copy, await store.export_variables(sid))
        load.calls += 2
    else:
        await store.list_variables(sid, "v*")


async def guarded(load: Load, action: Callable[[], Awaitable[None]]) -> None:
    try:
        await action()
    except EXPECTED:
        load.expected_errors += 1
    except StoreClosed:
        pass
    except Exception as error:
        load.unexpected.append(error)


async def worker(store: SessionStore, load: Load, seed: int) -> None:
    rng = random.Random(seed)
    while not load.stop:
        await guarded(load, lambda: session_life(store, load, rng))


async def watcher(store: SessionStore, load: Load) -> None:
    """Watches one long-lived session that it keeps changing, and counts what it sees."""
    await store.create_session("watched", ttl=float("inf"))
    await store.register_variable("watched", "x", "integer", 0)

    async def poke() -> None:
        value = 0
        while not load.stop:
            value += 1
            await store.update_variable("watched", "x", value)
            load.calls += 1
            await asyncio.sleep(0.001)
        await store.update_variable("watched", "x", -1)  # wakes the watcher to see the stop

    poker = asyncio.create_task(poke())
    async with store.watch_variables("watched", buffer=100_000) as changes:
        async for _ in changes:
            load.changes_seen += 1
            if load.stop:
                break
    await poker


def thread_worker(blocking: BlockingSessionStore, load: Load, seed: int) -> None:
    rng = random.Random(seed)
    while not load.stop:
        sid = f"t{next(load.session_ids)}"
        try:
            blocking.create_session(sid, ttl=rng.uniform(0.5, 2.0))
            blocking.register_variable(sid, "x", "integer", 0)
            for step in range(rng.randint(5, 30)):
                blocking.update_variable(sid, "x", step)
                blocking.get_variable_value(sid, "x")
                load.calls += 2
            load.calls += 2
        except EXPECTED:
            load.expected_errors += 1
        except StoreClosed:
            return
        except Exception as error:
            load.unexpected.append(error)


async def soak(minutes: float, report_every: float, workers: int) -> int:
    gc.collect()
    rss_start = rss_mib()
    load = Load()
    store = SessionStore(cleanup_interval=1.0, default_ttl=2.0)
    async with store:
        blocking = BlockingSessionStore.wrap(store)
        tasks = [asyncio.create_task(worker(store, load, seed)) for seed in range(workers)]
        tasks.append(asyncio.create_task(watcher(store, load)))
        threads = [
            threading.Thread(target=thread_worker, args=(blocking, load, 1000 + i), daemon=True)
            for i in range(2)
        ]
        for thread in threads:
            thread.start()

        print(
            f"soak: {minutes:g} min, {workers} tasks + 2 threads + 1 watcher; "
            f"RSS {rss_start:.1f} MiB"
        )
        print(
            f"{'time':>6} {'calls/s':>9} {'sessions':>9} {'variables':>9} "
            f"{'created':>8} {'expired':>8} {'deleted':>8} {'RSS MiB':>8}"
        )
        started = time.monotonic()
        deadline = started + minutes * 60
        last_calls, last_time = 0, started
        rss_warm: float | None = None
        rates: list[float] = []
        while (now := time.monotonic()) < deadline:
            await asyncio.sleep(min(report_every, deadline - now))
            now = time.monotonic()
            stats = await store.get_stats()
            rate = (load.calls - last_calls) / (now - last_time)
            rates.append(rate)
            last_calls, last_time = load.calls, now
            rss = rss_mib()
            if rss_warm is None:
                rss_warm = rss
            print(
                f"{now - started:6.0f} {rate:9.0f} {stats.current_sessions:9d} "
                f"{stats.current_variables:9d} {stats.sessions_created:8d} "
                f"{stats.sessions_expired:8d} {stats.sessions_deleted:8d} {rss:8.1f}",
                flush=True,
            )
        load.stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for thread in threads:
            await asyncio.to_thread(thread.join, 10)
        final = await store.get_stats()
    gc.collect()
    rss_end = rss_mib()
    warm = rss_warm if rss_warm is not None else rss_start
    first, last = (rates[0], rates[-1]) if rates else (0.0, 0.0)
    print(
        f"\ncalls: {load.calls} ({load.expected_errors} refused on purpose or after expiry); "
        f"calls/s first window {first:.0f}, last {last:.0f}; "
        f"watch events seen {load.changes_seen}"
    )
    print(
        f"sessions created {final.sessions_created}, expired {final.sessions_expired}, "
        f"deleted {final.sessions_deleted}; cleanup runs {final.cleanup_runs}"
    )
    print(
        f"RSS: start {rss_start:.1f} MiB, after warm-up {warm:.1f} MiB, end {rss_end:.1f} MiB "
        f"(growth since warm-up {rss_end - warm:+.1f} MiB)"
    )
    if load.unexpected:
        print(f"UNEXPECTED errors: {len(load.unexpected)}, first: {load.unexpected[0]!r}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=3.0, help="how long (default 3)")
    parser.add_argument(
        "--report-every", type=float, default=10.0, help="seconds between lines (default 10)"
    )
    parser.add_argument("--workers", type=int, default=32, help="asyncio workers (default 32)")
    args = parser.parse_args(argv)
    return asyncio.run(soak(args.minutes, args.report_every, args.workers))


if __name__ == "__main__":
    sys.exit(main())
