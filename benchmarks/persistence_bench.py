"""How many change records does the SQLite writer sustain? (SPEC §12)

    python -m benchmarks.persistence_bench                  # about two minutes
    python -m benchmarks.persistence_bench --records 400000 --repeats 5
    python -m benchmarks.persistence_bench --dir /mnt/disk  # the disk to measure

Each run opens a fresh database in a temporary directory (``--dir``), registers
50,000 float variables in 100 sessions (not timed), then submits ``--records``
``VariableWritten`` records of float variables from the main thread and waits
until the writer has committed them all. Three workloads:

- ``distinct``: one record per turn, round robin over the 50,000 variables, so a
  transaction (at most 50,000 turns) never holds two writes of one variable:
  every record is a row;
- ``batch``: 100 records per turn (an atomic batch of 100 variables);
- ``hot``: one record per turn, all on 10 variables: the writer coalesces a
  transaction's writes of one variable into one row.

Two ways to submit. ``closed``: at most ``--in-flight`` turns (100) are
submitted and not yet committed, as with that many callers each waiting for its
reply, which the store sends only after the commit. ``open``: everything is
submitted at once, so the writer takes huge transactions: its ceiling.

Each set-up runs with ``synchronous`` normal and full, interleaved repeat by
repeat. Reported: records per second (wall clock, first submit to last commit,
median of the repeats); the writer thread's CPU time per record, and the part
of it that is Python (folding and encoding, which holds the GIL and so competes
with the event loop's thread; SQLite releases the GIL while it works), measured
apart on the same turns (best of the repeats); and how many turns one commit
took on average (group commit). On a shared machine the wall-clock figures
move with the neighbours; the CPU figures much less.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import attrs

from sessionactor._journal import Counters, SessionRow, SessionWritten, Turn, VariableWritten
from sessionactor._persistence import Database, _Batch
from sessionactor.model import Variable
from sessionactor.types import TypeRegistry

__all__ = ["main"]

SESSIONS = 100
VARIABLES = 50_000
WAIT = 600.0

_CONSTRAINTS = MappingProxyType({"min": 0.0})


def _counters(n: int) -> Counters:
    return Counters(n, VARIABLES, VARIABLES, SESSIONS, 0, 0, 0, n)


def _variable(number: int, version: int) -> VariableWritten:
    session_id = f"session_{number % SESSIONS}"
    variable = Variable(
        id=f"var_x{number}_{number}",
        name=f"x{number}",
        type="float",
        value=version * 0.5,
        constraints=_CONSTRAINTS,  # the core carries a variable's constraints over
        # ...but builds new metadata on every update: the writer encodes it each time.
        metadata=MappingProxyType(
            {
                "source": "python",
                "created_by": "session_store",
                "updated_at": f"2026-12-01T14:{version // 60 % 60:02d}:{version % 60:02d}Z",
            }
        ),
        version=version,
        created_at=1_764_600_000.0,
        updated_at=1_764_600_000.0 + version,
        revision=VARIABLES + version,
    )
    return VariableWritten(session_id, variable, number, None)


def _setup() -> list[Turn]:
    sessions = tuple(
        SessionWritten(
            SessionRow(f"session_{n}", 0.0, 0.0, 3600.0, 3600.0, MappingProxyType({}), None, 0)
        )
        for n in range(SESSIONS)
    )
    variables = tuple(_variable(number, 0) for number in range(VARIABLES))
    return [Turn(sessions + variables, _counters(VARIABLES))]


def _distinct(records: int) -> list[Turn]:
    return [
        Turn((_variable(n % VARIABLES, n // VARIABLES + 1),), _counters(n)) for n in range(records)
    ]


def _batch(records: int) -> list[Turn]:
    turns = []
    for start in range(0, records, 100):
        writes = tuple(
            _variable(n % VARIABLES, n // VARIABLES + 1) for n in range(start, start + 100)
        )
        turns.append(Turn(writes, _counters(start)))
    return turns


def _hot(records: int) -> list[Turn]:
    return [Turn((_variable(n % 10, n + 1),), _counters(n)) for n in range(records)]


WORKLOADS: dict[str, Callable[[int], list[Turn]]] = {
    "distinct": _distinct,
    "batch": _batch,
    "hot": _hot,
}


@attrs.frozen
class Run:
    records_per_second: float
    writer_cpu_us_per_record: float
    turns_per_commit: float


def _writer_cpu(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def python_cost(turns: list[Turn], turns_per_commit: int) -> float:
    """CPU µs per record of the writer's Python work alone: folding and encoding.

    This part holds the GIL (SQLite's own work mostly does not), so it is what
    the writer takes from the event loop's thread. Measured in this thread, on
    the same turns cut into transactions of ``turns_per_commit``.
    """
    types = TypeRegistry().by_name()
    started = time.thread_time()
    for start in range(0, len(turns), turns_per_commit):
        batch = _Batch()
        for turn in turns[start : start + turns_per_commit]:
            batch.add(turn)
        batch.statements(types)
    elapsed = time.thread_time() - started
    return elapsed / sum(len(turn.records) for turn in turns) * 1e6


def run_once(directory: Path, synchronous: str, turns: list[Turn], in_flight: int | None) -> Run:
    """Commit ``turns`` into a fresh database and measure the writer.

    With ``in_flight``, a turn is submitted only while fewer than that many are
    waiting for their commit; without, all at once.
    """
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        database = Database(Path(scratch) / "bench.sqlite", synchronous=synchronous)
        commits: list[int] = []
        room = threading.Semaphore(in_flight or len(turns))

        def on_commit(seq: int, error: BaseException | None) -> None:
            if error is not None:
                raise error
            if commits:  # the setup turn is not one of the measured ones
                room.release(seq - commits[-1])
            commits.append(seq)

        database.start(on_commit)
        for turn in _setup():
            database.submit(turn)
        database.flush(WAIT)
        writer = next(t for t in threading.enumerate() if t.name.startswith("sessionactor-writer"))
        setup_commits = len(commits)
        cpu_before = _writer_cpu(writer)
        started = time.perf_counter()
        for turn in turns:
            if not room.acquire(timeout=WAIT):
                raise TimeoutError("the writer stopped committing")
            database.submit(turn)
        database.flush(WAIT)
        elapsed = time.perf_counter() - started
        cpu = _writer_cpu(writer) - cpu_before
        database.close()
    records = sum(len(turn.records) for turn in turns)
    return Run(
        records_per_second=records / elapsed,
        writer_cpu_us_per_record=cpu / records * 1e6,
        turns_per_commit=len(turns) / (len(commits) - setup_commits),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per set-up (median)")
    parser.add_argument("--in-flight", type=int, default=100, help="turns awaiting commit")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    options = parser.parse_args(argv)
    directory = options.dir or Path(tempfile.gettempdir())
    workloads = [name for name in options.only.split(",") if name]
    modes: dict[str, int | None] = {"closed": options.in_flight, "open": None}

    results: dict[tuple[str, str, str], list[Run]] = {}
    python: dict[tuple[str, str], float] = {}
    for name in workloads:
        turns = WORKLOADS[name](options.records)
        for mode, in_flight in modes.items():
            python[name, mode] = min(
                python_cost(turns, in_flight or len(turns)) for _ in range(options.repeats)
            )
        for _ in range(options.repeats):
            for mode, in_flight in modes.items():
                for synchronous in ("normal", "full"):
                    run = run_once(directory, synchronous, turns, in_flight)
                    results.setdefault((name, mode, synchronous), []).append(run)

    print(f"{options.records:,} VariableWritten records of float variables per run,")
    print(f"median of {options.repeats}; closed: {options.in_flight} turns in flight;")
    print(f"databases in {directory}\n")
    print(
        "| workload | submit | synchronous | records/s | writer CPU µs/record "
        "| of which Python µs/record | turns/commit |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for (name, mode, synchronous), runs in results.items():
        rate = statistics.median(run.records_per_second for run in runs)
        cpu = statistics.median(run.writer_cpu_us_per_record for run in runs)
        per_commit = statistics.median(run.turns_per_commit for run in runs)
        print(
            f"| {name} | {mode} | {synchronous} | {rate:,.0f} | {cpu:.2f} "
            f"| {python[name, mode]:.2f} | {per_commit:,.1f} |"
        )


if __name__ == "__main__":
    main()
