"""Bytes per variable, from RSS in a fresh process (run by ``benchmarks.run``).

``python -m benchmarks.memory --sessions 10000 --variables 100 [--backend store|naive]``
creates that many sessions, each with that many float variables (default
metadata, ``{"min": 0.0, "max": 1.0}``), through the public API, and prints one
JSON line: the RSS growth divided by the number of variables. Every session
uses the same 100 names, as an application's sessions would. The actor is
started and warmed up before the first RSS reading, so its fixed cost is not
counted; per-session costs are, spread over the session's variables.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
from typing import Any

from .baselines import NaiveState
from .common import CONSTRAINTS

__all__ = ["rss_bytes"]


def rss_bytes() -> int:
    """Resident set size of this process, now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _fill_store(sessions: int, names: list[str]) -> dict[str, Any]:
    from sessionactor import SessionStore

    constraints = dict(CONSTRAINTS)
    async with SessionStore() as store:
        # warm-up: first use allocates lazily built tables; not counted
        await store.create_session("warmup")
        await store.register_variable("warmup", "w", "float", 0.5, constraints=constraints)
        await store.delete_session("warmup")
        gc.collect()
        before = rss_bytes()
        for s in range(sessions):
            session_id = f"session-{s:07d}"
            await store.create_session(session_id)
            await asyncio.gather(
                *(
                    store.register_variable(session_id, name, "float", 0.5, constraints=constraints)
                    for name in names
                )
            )
        gc.collect()
        after = rss_bytes()
        stats = await store.get_stats()
        assert stats.current_variables == sessions * len(names), stats
    return {"before": before, "after": after}


def _fill_naive(sessions: int, names: list[str]) -> dict[str, Any]:
    state = NaiveState()
    gc.collect()
    before = rss_bytes()
    for s in range(sessions):
        session_id = f"session-{s:07d}"
        state.create_session(session_id)
        for name in names:
            state.register(session_id, name, 0.5)
    gc.collect()
    return {"before": before, "after": rss_bytes()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--variables", type=int, default=100)
    parser.add_argument("--backend", choices=("store", "naive"), default="store")
    args = parser.parse_args(argv)
    names = [f"v{i:03d}" for i in range(args.variables)]
    if args.backend == "store":
        result = asyncio.run(_fill_store(args.sessions, names))
    else:
        result = _fill_naive(args.sessions, names)
    count = args.sessions * args.variables
    result.update(
        backend=args.backend,
        sessions=args.sessions,
        variables_per_session=args.variables,
        variables=count,
        bytes_per_variable=(result["after"] - result["before"]) / count,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
