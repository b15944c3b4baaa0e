"""Sweep time against the number of live sessions (run by ``benchmarks.run``).

``python -m benchmarks.sweep --live 10000,1000000 --expired 1000 --rounds 15``
fills one store per size, each driven by its own fake clock, with that many
live sessions (default ttl, 3600 s). Then, round after round and taking turns
between the stores (so that a noisy machine slows them alike), it adds
``--expired`` sessions with a 10 s ttl to a store, moves its clock 11 s on and
times ``await store.cleanup_expired_sessions()``, which must remove exactly
those. The automatic sweep is off (``cleanup_interval=None``) so only the timed
call sweeps. Everything alive after the fill is frozen out of the garbage
collector's sight (``gc.freeze()``), and ``gc.collect()`` runs before each timed
sweep, so that no collection of the million live sessions lands inside one. It
prints one JSON line: per size, every round's time and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

__all__ = ["FakeClock"]

_CHUNK = 1000


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


async def _fill(store: Any, live: int) -> None:
    for base in range(0, live, _CHUNK):
        await asyncio.gather(
            *(store.create_session(f"live-{i}") for i in range(base, min(base + _CHUNK, live)))
        )


async def _run(sizes: list[int], expired: int, rounds: int) -> dict[str, Any]:
    from sessionactor import SessionStore

    clocks = [FakeClock() for _ in sizes]
    stores = [SessionStore(clock=clock, cleanup_interval=None) for clock in clocks]
    results: dict[str, Any] = {}
    for store in stores:
        await store.__aenter__()
    try:
        for size, store in zip(sizes, stores, strict=True):
            began = time.perf_counter()
            await _fill(store, size)
            results[str(size)] = {"live": size, "fill_seconds": time.perf_counter() - began}
        gc.collect()
        gc.freeze()
        times: list[list[float]] = [[] for _ in sizes]
        for r in range(rounds):
            order = list(range(len(sizes)))
            if r % 2:
                order.reverse()
            for k in order:
                store, clock = stores[k], clocks[k]
                await asyncio.gather(
                    *(store.create_session(f"exp-{r}-{i}", ttl=10.0) for i in range(expired))
                )
                clock.advance(11.0)
                gc.collect()
                start = time.perf_counter()
                removed = await store.cleanup_expired_sessions()
                times[k].append(time.perf_counter() - start)
                if removed != expired:
                    raise RuntimeError(f"{sizes[k]}: round {r} swept {removed}, not {expired}")
        for size, store, seconds in zip(sizes, stores, times, strict=True):
            stats = await store.get_stats()
            results[str(size)].update(
                expired=expired,
                rounds=rounds,
                seconds=seconds,
                median_seconds=statistics.median(seconds),
                min_seconds=min(seconds),
                current_sessions=stats.current_sessions,
            )
    finally:
        for store in stores:
            await store.__aexit__(None, None, None)
        gc.unfreeze()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--live", default="10000,1000000", help="comma-separated sizes")
    parser.add_argument("--expired", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.live.split(",")]
    json.dump(asyncio.run(_run(sizes, args.expired, args.rounds)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
