"""Run the benchmarks of issue 5 and write ``benchmarks/results/``.

    python -m benchmarks.run            # --quick: under two minutes on 2 cores
    python -m benchmarks.run --full     # longer runs, 10,000 x 100 memory, 1,000,000 sweep

Every workload runs against the store and its baselines (floor, direct, naive,
Redis, pykka) in this one process, with 1 caller and with 100 concurrent
callers, on asyncio and on uvloop, so that the ratios hold on a noisy machine.
Throughput is the median of repeated timed runs; the 1-caller runs time every
call for p50/p99/p99.9. Memory and sweep scaling run in fresh subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .baselines import DirectBackend, FloorBackend, NaiveBackend, PykkaBackend, RedisBackend
from .common import Backend
from .redis_server import RedisServer, RedisUnavailable
from .report import write_reports
from .workloads import (
    WORKLOADS,
    StoreBackend,
    StoreNowaitBackend,
    Workload,
    measure_interleaved,
    prepare_common,
)

__all__ = ["Config", "main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CALLERS = (1, 100)

# Which baselines run which workloads. The floor is one trivial message whatever
# the operation, so it is only run where a target compares against it.
BACKEND_WORKLOADS: dict[str, tuple[str, ...]] = {
    "store": tuple(w.key for w in WORKLOADS),
    "nowait": ("get", "mixed", "get_many"),  # the reads that skip the mailbox
    "floor": ("get", "update", "mixed"),
    "direct": tuple(w.key for w in WORKLOADS),
    "naive": tuple(w.key for w in WORKLOADS),
    "redis": tuple(w.key for w in WORKLOADS),
    "pykka": tuple(w.key for w in WORKLOADS),
}


@dataclass(frozen=True)
class Config:
    mode: str
    duration: float  # seconds per timed run
    warmup: float  # seconds of the untimed run before them
    repeats: int
    memory_sessions: int
    sweep_small: int
    sweep_large: int
    sweep_rounds: int


QUICK = Config("quick", 0.05, 0.02, 5, 1_000, 10_000, 100_000, 11)
FULL = Config("full", 0.3, 0.1, 11, 10_000, 10_000, 1_000_000, 21)


def _loops(
    skip_uvloop: bool,
) -> tuple[list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]], str]:
    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [
        ("asyncio", asyncio.new_event_loop)
    ]
    if skip_uvloop:
        return loops, "uvloop skipped (--no-uvloop)"
    try:
        import uvloop
    except ImportError as exc:
        return loops, f"uvloop not importable ({exc}); uvloop rows skipped"
    loops.append(("uvloop", uvloop.new_event_loop))
    return loops, ""


def _summarise(rates: list[float], latencies: list[int], ops_per_call: int) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "rate": statistics.median(rates),
        "rates": rates,
        "items_rate": statistics.median(rates) * ops_per_call,
    }
    if latencies:
        ordered = sorted(latencies)
        last = len(ordered) - 1

        def pct(q: float) -> float:
            return ordered[min(last, round(q * last))] / 1000.0  # µs

        cell.update(p50_us=pct(0.50), p99_us=pct(0.99), p999_us=pct(0.999), samples=len(ordered))
    return cell


async def _run_loop(
    loop_name: str,
    factories: list[tuple[str, Callable[[], Backend]]],
    workloads: list[Workload],
    config: Config,
    progress: Any,
    out: dict[str, Any],
    timings: dict[str, float],
) -> None:
    """All backends live side by side in this loop; each workload takes turns between them."""
    backends: list[Backend] = []
    failed: dict[str, str] = {}
    set_up = time.perf_counter()
    try:
        for name, make in factories:
            progress.set_description(f"{loop_name} set-up {name}")
            backend = make()
            try:
                await backend.start()
                backends.append(backend)
                big = any(w.needs_big and w.key in BACKEND_WORKLOADS[name] for w in workloads)
                await prepare_common(backend, with_big=big)
            except Exception as exc:
                failed[name] = f"set-up failed: {type(exc).__name__}: {exc}"
                if backend in backends:
                    backends.remove(backend)
                    await backend.stop()
        # Everything set up so far lives for the whole loop: move it out of the
        # collector's sight, so the gc.collect() before each run stays cheap.
        gc.collect()
        gc.freeze()
        timings[f"{loop_name}/set-up"] = round(time.perf_counter() - set_up, 2)
        for workload in workloads:
            runnable = [b for b in backends if workload.key in BACKEND_WORKLOADS[b.name]]
            for callers in CALLERS:
                progress.set_description(f"{loop_name} {workload.key} x{callers}")
                began = time.perf_counter()
                results = await measure_interleaved(
                    runnable,
                    workload,
                    callers=callers,
                    duration=config.duration,
                    warmup=config.warmup,
                    repeats=config.repeats,
                    on_run=lambda: progress.update(1),
                )
                timings[f"{loop_name}/{workload.key}/{callers}"] = round(
                    time.perf_counter() - began, 2
                )
                for name, m in results.items():
                    key = f"{loop_name}/{workload.key}/{name}/{callers}"
                    if m.error is not None or not m.rates:
                        out[key] = {"error": m.error or "no run"}
                    else:
                        out[key] = _summarise(m.rates, m.latencies_ns, workload.ops_per_call)
                for name, error in failed.items():
                    if workload.key in BACKEND_WORKLOADS[name]:
                        out[f"{loop_name}/{workload.key}/{name}/{callers}"] = {"error": error}
                        progress.update(config.repeats)  # the runs it would have had
    finally:
        for backend in backends:
            await backend.stop()
        gc.unfreeze()


def _backend_factories(redis_url: str | None) -> list[tuple[str, Callable[[], Backend]]]:
    factories: list[tuple[str, Callable[[], Backend]]] = [
        ("store", StoreBackend),
        ("nowait", StoreNowaitBackend),
        ("floor", FloorBackend),
        ("direct", DirectBackend),
        ("naive", NaiveBackend),
    ]
    if redis_url is not None:
        url = redis_url
        factories.append(("redis", lambda: RedisBackend(url)))
    factories.append(("pykka", PykkaBackend))
    return factories


def _run_subprocess(args: list[str], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0]}"}
    parsed: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return parsed


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("sessionactor", "uvloop", "redis", "hiredis", "pykka"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: under two minutes")
    mode.add_argument("--full", action="store_true", help="longer runs and the issue's full sizes")
    parser.add_argument("--only", help="comma-separated workload keys (get,update,mixed,...)")
    parser.add_argument("--backends", help="comma-separated backends (store,floor,direct,...)")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    config = FULL if args.full else QUICK

    from tqdm import tqdm

    started = time.perf_counter()
    notes: list[str] = []
    loops, loop_note = _loops(args.no_uvloop)
    if loop_note:
        notes.append(loop_note)
    only = set(args.only.split(",")) if args.only else None
    wanted = set(args.backends.split(",")) if args.backends else None

    redis_server: RedisServer | None = None
    redis_url: str | None = None
    redis_version = ""
    if args.no_redis or (wanted is not None and "redis" not in wanted):
        notes.append("Redis rows skipped (--no-redis)" if args.no_redis else "")
    else:
        redis_server = RedisServer()
        try:
            redis_server.start()
            redis_url, redis_version = redis_server.url, redis_server.version
        except RedisUnavailable as exc:
            redis_server = None
            notes.append(f"Redis unavailable: {exc}")
            print(f"Redis unavailable: {exc}", file=sys.stderr)
    notes = [n for n in notes if n]

    factories = [
        (name, make)
        for name, make in _backend_factories(redis_url)
        if wanted is None or name in wanted
    ]
    workloads = [w for w in WORKLOADS if only is None or w.key in only]
    runs = sum(1 for w in workloads for name, _ in factories if w.key in BACKEND_WORKLOADS[name])
    total = len(loops) * runs * len(CALLERS) * config.repeats
    extra = (0 if args.skip_memory else 2) + (0 if args.skip_sweep else 2)

    cells: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    sweep: dict[str, Any] = {}
    timings: dict[str, float] = {}
    phases: dict[str, float] = {"set-up": round(time.perf_counter() - started, 1)}
    try:
        with tqdm(total=total + extra, unit="run", mininterval=0.5, file=sys.stderr) as progress:
            for loop_name, factory in loops:
                phase = time.perf_counter()
                with asyncio.Runner(loop_factory=factory) as runner:
                    runner.run(
                        _run_loop(loop_name, factories, workloads, config, progress, cells, timings)
                    )
                phases[loop_name] = round(time.perf_counter() - phase, 1)
            phase = time.perf_counter()
            if not args.skip_memory:
                for backend in ("store", "naive"):
                    progress.set_description(f"memory {backend}")
                    memory[backend] = _run_subprocess(
                        ["-m", "benchmarks.memory", "--sessions", str(config.memory_sessions),
                         "--variables", "100", "--backend", backend],
                        timeout=900,
                    )  # fmt: skip
                    progress.update(1)
                phases["memory"] = round(time.perf_counter() - phase, 1)
            phase = time.perf_counter()
            if not args.skip_sweep:
                sizes = f"{config.sweep_small},{config.sweep_large}"
                progress.set_description(f"sweep among {sizes}")
                sweep = _run_subprocess(
                    ["-m", "benchmarks.sweep", "--live", sizes, "--expired", "1000",
                     "--rounds", str(config.sweep_rounds)],
                    timeout=1800,
                )  # fmt: skip
                if "error" in sweep:
                    sweep = {str(config.sweep_small): sweep, str(config.sweep_large): sweep}
                progress.update(2)
                phases["sweep"] = round(time.perf_counter() - phase, 1)
    finally:
        if redis_server is not None:
            redis_server.stop()

    if config.sweep_large != 1_000_000:
        notes.append(
            f"{config.mode} mode sweeps among {config.sweep_large:,} live sessions, not 1,000,000"
            " (run `make bench-full` for the issue's size)"
        )
    if config.memory_sessions != 10_000:
        notes.append(
            f"{config.mode} mode measures memory at {config.memory_sessions:,} sessions x 100,"
            " not 10,000 x 100"
        )
    meta = {
        "mode": config.mode,
        "config": config.__dict__,
        "loops": [name for name, _ in loops],
        "versions": _versions(),
        "redis_server": redis_version,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.perf_counter() - started, 1),
        "phases": phases,
        "timings": timings,
        "notes": notes,
    }
    ok = write_reports(args.out, meta, cells, memory, sweep)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
