"""The store against its floor in CPU instructions per call, not seconds.

Wall-clock ratios on a shared two-core machine move with the neighbours; the
number of instructions a call executes does not. This runs the same 100-caller
workload as the main harness (``get_variable`` and ``update_variable`` of a
float with min/max, through the public API) under valgrind's callgrind, once
with no calls and once with ``--calls`` calls, for the store and for the floor
(the bare actor of ``baselines.FloorBackend``), and reports instructions per
call and the ratio floor / store: the throughput ratio the two would have if
every instruction cost the same.

    python -m benchmarks.instructions            # needs valgrind (apt-get install valgrind)
    python -m benchmarks.instructions --calls 50000

Each measurement is a fresh process (about a minute in all: callgrind runs
Python some fifty times slower).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .baselines import FloorBackend
from .common import HOT_NAMES, HOT_SESSION
from .workloads import StoreBackend

CALLERS = 100
_COLLECTED = re.compile(r"Collected : (\d+)")


async def _workload(backend_name: str, operation: str, calls: int) -> None:
    backend = StoreBackend() if backend_name == "store" else FloorBackend()
    await backend.start()
    await backend.create_session(HOT_SESSION)
    for name in HOT_NAMES:
        await backend.register(HOT_SESSION, name, 0.5)

    async def caller(index: int) -> None:
        name = HOT_NAMES[index % len(HOT_NAMES)]
        for step in range(calls // CALLERS):
            if operation == "get":
                await backend.get(HOT_SESSION, name)
            else:
                await backend.update(HOT_SESSION, name, (step % 100) / 100)

    await asyncio.gather(*(caller(index) for index in range(CALLERS)))
    await backend.stop()


def _instructions(backend: str, operation: str, calls: int) -> int:
    """Instructions of one run of the workload, counted by callgrind."""
    with tempfile.TemporaryDirectory() as directory:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={Path(directory) / 'out'}",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--run",
            backend,
            operation,
            str(calls),
        ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind reported no count: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--run", nargs=3, metavar=("BACKEND", "OPERATION", "CALLS"))
    args = parser.parse_args(argv)
    if args.run:  # inside valgrind: just the workload
        backend, operation, calls = args.run
        asyncio.run(_workload(backend, operation, int(calls)))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    print(f"{'operation':<8} {'store/call':>11} {'floor/call':>11} {'floor/store':>12}")
    for operation in ("get", "update"):
        per_call = {}
        for backend in ("store", "floor"):
            empty = _instructions(backend, operation, 0)
            loaded = _instructions(backend, operation, args.calls)
            per_call[backend] = (loaded - empty) / args.calls
        ratio = per_call["floor"] / per_call["store"]
        print(
            f"{operation:<8} {per_call['store']:>11,.0f} {per_call['floor']:>11,.0f} "
            f"{ratio:>11.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
