"""Durability facts of a store with a database, in a fresh process (run by ``benchmarks.run``).

``python -m benchmarks.durability --seconds 1 --sessions 10000 --variables 100``
prints one JSON line with:

- ``group_commit``: for ``synchronous`` normal and full and each of ``--callers``
  (100 and 1,000), a fresh database with the hot session (100 floats,
  ``{min: 0.0, max: 1.0}``) and that many callers updating it for ``--seconds``
  (caller *i* updates variable *i* mod 100, as in the main harness's update
  workload), after a 0.1 s warm-up. Counted from outside the store, by wrapping the public
  methods of ``sessionactor._persistence.Database`` in this process only:
  ``submit`` (one call per actor turn that changed something, with that turn's
  change records) and the ``on_commit`` callback given to ``start`` (one call per
  committed transaction, with the last turn it made durable). Reported: updates,
  turns, records and commits per second, and per commit the turns, records and
  updates it carried.
- ``open``: a database of ``--sessions`` sessions x ``--variables`` floats is built
  once (``create_session`` + ``import_variables`` of the same 100 exported
  variables, 100 sessions in flight, ``synchronous="off"`` since the build is not
  timed) and closed cleanly. Then ``--opens`` times: the time of
  ``await store.__aenter__()`` (what ``async with SessionStore(database=path)``
  waits for before its body runs: the file checked, every row read, the state
  rebuilt), each store closed again before the next open.
- ``size``: after the build's clean close, the database file plus its ``-wal``
  (if one is left) over the number of variables.

The databases live in a temporary directory (``--dir``, default the system's),
removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .common import CONSTRAINTS, HOT_NAMES, HOT_SESSION

__all__ = ["CommitCounter", "main"]

_IN_FLIGHT = 100  # sessions imported concurrently while building the large database


class CommitCounter:
    """Counts what reaches every ``Database`` of this process: turns, records, commits.

    Installed by wrapping ``Database.submit`` and ``Database.start`` (its
    ``on_commit``) on the class; nothing in the store changes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.turns = 0
        self.records = 0
        self.commits = 0

    def snapshot(self) -> tuple[int, int, int]:
        with self._lock:
            return self.turns, self.records, self.commits

    def install(self) -> None:
        from sessionactor._journal import Turn
        from sessionactor._persistence import Database, OnCommit

        counter = self
        submit, start = Database.submit, Database.start

        def counted_submit(self: Database, turn: Turn) -> int:
            seq = submit(self, turn)
            with counter._lock:
                counter.turns += 1
                counter.records += len(turn.records)
            return seq

        def counted_start(self: Database, on_commit: OnCommit) -> None:
            def counted(seq: int, error: BaseException | None) -> None:
                if error is None:
                    with counter._lock:
                        counter.commits += 1
                on_commit(seq, error)

            start(self, counted)

        Database.submit = counted_submit  # type: ignore[method-assign]
        Database.start = counted_start  # type: ignore[method-assign]


async def _update_run(
    path: Path, synchronous: str, callers: int, seconds: float, counter: CommitCounter
) -> dict[str, Any]:
    from sessionactor import SessionStore

    async with SessionStore(database=path, synchronous=synchronous) as store:
        await store.create_session(HOT_SESSION)
        for name in HOT_NAMES:
            await store.register_variable(
                HOT_SESSION, name, "float", 0.5, constraints=dict(CONSTRAINTS)
            )
        values = [((i * 7919) % 1000) / 1000.0 for i in range(1000)]

        async def caller(name: str, deadline: float) -> int:
            n = 0
            while time.perf_counter() < deadline:
                await store.update_variable(HOT_SESSION, name, values[n % 1000])
                n += 1
            return n

        names = [HOT_NAMES[c % len(HOT_NAMES)] for c in range(callers)]
        await asyncio.gather(*(caller(n, time.perf_counter() + 0.1) for n in names))  # warm-up
        gc.collect()
        turns0, records0, commits0 = counter.snapshot()
        start = time.perf_counter()
        deadline = start + seconds
        counts = await asyncio.gather(*(caller(n, deadline) for n in names))
        elapsed = time.perf_counter() - start
        turns1, records1, commits1 = counter.snapshot()
    updates, turns = sum(counts), turns1 - turns0
    records, commits = records1 - records0, commits1 - commits0
    return {
        "synchronous": synchronous,
        "callers": callers,
        "seconds": elapsed,
        "updates_per_second": updates / elapsed,
        "commits_per_second": commits / elapsed,
        "turns_per_second": turns / elapsed,
        "turns_per_commit": turns / commits if commits else None,
        "records_per_commit": records / commits if commits else None,
        "updates_per_commit": updates / commits if commits else None,
        "updates": updates,
        "commits": commits,
    }


async def _build(path: Path, sessions: int, variables: int) -> float:
    from sessionactor import SessionStore

    names = [f"v{i:03d}" for i in range(variables)]
    began = time.perf_counter()
    async with SessionStore(database=path, synchronous="off", cleanup_interval=None) as store:
        await store.create_session("template")
        for name in names:
            await store.register_variable("template", name, "float", 0.5, constraints=CONSTRAINTS)
        exported = await store.export_variables("template")
        await store.delete_session("template")

        async def fill(session_id: str) -> None:
            await store.create_session(session_id, ttl=float("inf"))
            await store.import_variables(session_id, exported)

        for base in range(0, sessions, _IN_FLIGHT):
            await asyncio.gather(
                *(fill(f"session-{s:07d}") for s in range(base, min(base + _IN_FLIGHT, sessions)))
            )
        stats = await store.get_stats()
        assert stats.current_variables == sessions * variables, stats
    return time.perf_counter() - began


async def _time_open(path: Path) -> float:
    from sessionactor import SessionStore

    store = SessionStore(database=path, cleanup_interval=None)
    gc.collect()
    start = time.perf_counter()
    await store.__aenter__()
    elapsed = time.perf_counter() - start
    # One call before closing: a store closed before its actor's task has run once
    # leaves its database open (and its writer thread running), which would keep
    # this open's million objects alive through the next.
    stats = await store.get_stats()
    await store.__aexit__(None, None, None)
    if stats.current_variables == 0:
        raise RuntimeError(f"{path} opened empty")
    return elapsed


def _writer_threads() -> int:
    return sum(t.name.startswith("sessionactor-writer") for t in threading.enumerate())


def _file_bytes(path: Path) -> dict[str, int]:
    sizes = {}
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            sizes[suffix or "main"] = candidate.stat().st_size
    return sizes


def _measure(
    directory: Path,
    callers: list[int],
    seconds: float,
    sessions: int,
    variables: int,
    opens: int,
) -> dict[str, Any]:
    counter = CommitCounter()
    counter.install()
    runs = []
    for count in callers:
        for synchronous in ("normal", "full"):
            path = directory / f"updates-{synchronous}-{count}.sqlite"
            runs.append(asyncio.run(_update_run(path, synchronous, count, seconds, counter)))
    results: dict[str, Any] = {"group_commit": runs}
    path = directory / "large.sqlite"
    build_seconds = asyncio.run(_build(path, sessions, variables))
    files = _file_bytes(path)  # after a clean close
    count = sessions * variables
    database_bytes = files.get("main", 0) + files.get("-wal", 0)
    results["size"] = {
        "files": files,
        "bytes": database_bytes,
        "variables": count,
        "bytes_per_variable": database_bytes / count,
    }
    open_seconds = [asyncio.run(_time_open(path)) for _ in range(opens)]
    if _writer_threads():
        raise RuntimeError(f"{_writer_threads()} writer threads still run after every close")
    results["open"] = {
        "sessions": sessions,
        "variables_per_session": variables,
        "variables": count,
        "build_seconds": build_seconds,
        "seconds": open_seconds,
        "first_seconds": open_seconds[0],
        "median_seconds": statistics.median(open_seconds),
    }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="each update run")
    parser.add_argument("--callers", default="100,1000", help="comma-separated caller counts")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--variables", type=int, default=100, help="per session")
    parser.add_argument("--opens", type=int, default=3, help="timed opens of the large database")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="sessionactor-durability-", dir=args.dir))
    try:
        callers = [int(count) for count in args.callers.split(",")]
        results = _measure(
            scratch, callers, args.seconds, args.sessions, args.variables, args.opens
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["dir"] = str(scratch.parent)
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
