"""Run the benchmarks and write ``benchmarks/results/``.

    python -m benchmarks.run            # --quick: about two and a half minutes on 2 cores
    python -m benchmarks.run --full     # longer runs, 10,000 x 100 memory, 1,000,000 sweep

Every workload runs against the store and its baselines (floor, direct, naive,
Redis, pykka) in this one process, with 1 caller and with 100 concurrent
callers, on asyncio and on uvloop, so that the ratios hold on a noisy machine.
The store with a database (``synchronous`` normal and full) and Redis with an
append-only file (fsync every second, and always) take their turns in the same
runs; update also runs with 1,000 callers for the store, the store with
``synchronous="full"`` and Redis fsyncing always. Throughput is the median of
repeated timed runs; the 1-caller runs time every call for p50/p99/p99.9.
Memory, sweep scaling, the durability facts (group commit, time to open a large
database, its size), head-of-line latency and the store over a connection
against redis-py (``benchmarks.remote``: its servers and client processes of
its own) run in fresh subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
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
    DurableStoreBackend,
    StoreBackend,
    StoreNowaitBackend,
    Workload,
    measure_interleaved,
    prepare_common,
)

__all__ = ["Config", "main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CALLERS = (1, 100)
WIDE_CALLERS = 1_000
# The workloads that also run with WIDE_CALLERS, and the backends that run them.
WIDE: dict[str, tuple[str, ...]] = {"update": ("store", "store-full", "redis-always")}
# One redis-server per configuration: None keeps nothing on disk, else its appendfsync.
REDIS_CONFIGS: dict[str, str | None] = {
    "redis": None,
    "redis-everysec": "everysec",
    "redis-always": "always",
}
_HOT = ("get", "update", "mixed", "get_many", "update_many")  # the hot session's workloads

# Which baselines run which workloads. The floor is one trivial message whatever
# the operation, so it is only run where a target compares against it.
BACKEND_WORKLOADS: dict[str, tuple[str, ...]] = {
    "store": tuple(w.key for w in WORKLOADS),
    "nowait": ("get", "mixed", "get_many"),  # the reads that skip the mailbox
    "store-normal": _HOT,
    "store-full": _HOT,
    "floor": ("get", "update", "mixed"),
    "direct": tuple(w.key for w in WORKLOADS),
    "naive": tuple(w.key for w in WORKLOADS),
    "redis": tuple(w.key for w in WORKLOADS),
    # The writes (an append-only file does not slow a plain read down).
    "redis-everysec": ("update", "mixed", "update_many"),
    "redis-always": ("update", "mixed", "update_many"),
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
    wide_duration: float  # seconds per timed run (and warm-up) with WIDE_CALLERS
    commit_seconds: float  # the durability subprocess's 100-caller update run
    open_sessions: int  # sessions x 100 variables in the database whose open is timed
    opens: int  # timed opens of it


QUICK = Config("quick", 0.05, 0.02, 5, 1_000, 10_000, 100_000, 11, 0.2, 0.5, 1_000, 3)
FULL = Config("full", 0.3, 0.1, 11, 10_000, 10_000, 1_000_000, 21, 0.6, 3.0, 10_000, 3)


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
        for workload, callers in _cells_in_order(workloads):
            wide = callers == WIDE_CALLERS
            taking_turns = [b for b in backends if _runs_with(b.name, workload.key, callers)]
            progress.set_description(f"{loop_name} {workload.key} x{callers}")
            began = time.perf_counter()
            results = await measure_interleaved(
                taking_turns,
                workload,
                callers=callers,
                duration=config.wide_duration if wide else config.duration,
                warmup=config.wide_duration if wide else config.warmup,
                repeats=config.repeats,
                on_run=lambda: progress.update(1),
            )
            timings[f"{loop_name}/{workload.key}/{callers}"] = round(time.perf_counter() - began, 2)
            for name, m in results.items():
                key = f"{loop_name}/{workload.key}/{name}/{callers}"
                if m.error is not None or not m.rates:
                    out[key] = {"error": m.error or "no run"}
                else:
                    out[key] = _summarise(m.rates, m.latencies_ns, workload.ops_per_call)
            for name, error in failed.items():
                if _runs_with(name, workload.key, callers):
                    out[f"{loop_name}/{workload.key}/{name}/{callers}"] = {"error": error}
                    progress.update(config.repeats)  # the runs it would have had
    finally:
        for backend in backends:
            await backend.stop()
        gc.unfreeze()


def _cells_in_order(workloads: list[Workload]) -> list[tuple[Workload, int]]:
    """Every (workload, callers) to measure, those with WIDE_CALLERS last: their runs
    leave redis-py's pool of a thousand connections alive (some 14,000 objects the
    collector tracks), which every later gc.collect() walked, 10 ms or more before
    each of the hundreds of later runs."""
    cells = [(w, callers) for w in workloads for callers in _callers(w.key)]
    return sorted(cells, key=lambda cell: cell[1] == WIDE_CALLERS)


def _callers(workload: str) -> tuple[int, ...]:
    return (*CALLERS, WIDE_CALLERS) if workload in WIDE else CALLERS


def _runs_with(backend: str, workload: str, callers: int) -> bool:
    if workload not in BACKEND_WORKLOADS[backend]:
        return False
    return callers != WIDE_CALLERS or backend in WIDE.get(workload, ())


def _backend_factories(
    redis_urls: dict[str, str], scratch: str
) -> list[tuple[str, Callable[[], Backend]]]:
    factories: list[tuple[str, Callable[[], Backend]]] = [
        ("store", StoreBackend),
        ("nowait", StoreNowaitBackend),
        ("store-normal", lambda: DurableStoreBackend("normal", scratch)),
        ("store-full", lambda: DurableStoreBackend("full", scratch)),
        ("floor", FloorBackend),
        ("direct", DirectBackend),
        ("naive", NaiveBackend),
    ]
    for name, url in redis_urls.items():
        factories.append((name, functools.partial(RedisBackend, url, name)))
    factories.append(("pykka", PykkaBackend))
    return factories


def _filesystem(path: str) -> str:
    """The type of the filesystem that holds ``path`` (from /proc/mounts), or ''."""
    try:
        with open("/proc/mounts") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        return ""
    real = os.path.realpath(path)
    best, kind = "", ""
    for entry in entries:
        mount_point = entry[1]
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, entry[2]
    return kind


def _enough_file_descriptors(wanted: int = 8192) -> None:
    """1,000 Redis callers hold 1,000 connections: raise the soft limit if it is low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


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


def _start_redis(
    wanted: set[str] | None, no_redis: bool, scratch: str, notes: list[str]
) -> tuple[list[RedisServer], dict[str, str], str]:
    """One redis-server per configuration wanted; a row whose server cannot start says why."""
    servers: list[RedisServer] = []
    urls: dict[str, str] = {}
    version = ""
    names = [name for name in REDIS_CONFIGS if wanted is None or name in wanted]
    if no_redis:
        notes.append("Redis rows skipped (--no-redis)")
        return servers, urls, version
    for name in names:
        server = RedisServer(appendfsync=REDIS_CONFIGS[name], parent=scratch)
        try:
            server.start()
        except (RedisUnavailable, OSError) as exc:
            server.stop()  # removes its directory
            notes.append(f"{name} unavailable: {exc}")
            print(f"{name} unavailable: {exc}", file=sys.stderr)
            continue
        servers.append(server)
        urls[name], version = server.url, server.version
    return servers, urls, version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: about 2.5 minutes")
    mode.add_argument("--full", action="store_true", help="longer runs and the full sizes")
    parser.add_argument("--only", help="comma-separated workload keys (get,update,mixed,...)")
    parser.add_argument("--backends", help="comma-separated backends (store,floor,direct,...)")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-durability", action="store_true")
    parser.add_argument("--skip-head-of-line", action="store_true")
    parser.add_argument("--skip-remote", action="store_true")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="where the databases and Redis's append-only files go (default: the system's "
        "temporary directory); a fresh directory there is removed at the end",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    config = FULL if args.full else QUICK

    from tqdm import tqdm

    started = time.perf_counter()
    _enough_file_descriptors()
    notes: list[str] = []
    loops, loop_note = _loops(args.no_uvloop)
    if loop_note:
        notes.append(loop_note)
    only = set(args.only.split(",")) if args.only else None
    wanted = set(args.backends.split(",")) if args.backends else None
    scratch = tempfile.mkdtemp(prefix="sessionactor-bench-", dir=args.scratch)
    scratch_parent = os.path.dirname(scratch)
    disk = _filesystem(scratch)
    notes.append(
        f"databases and append-only files in {scratch_parent}" + (f" ({disk})" if disk else "")
    )

    cells: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    sweep: dict[str, Any] = {}
    durability: dict[str, Any] = {}
    head_of_line: dict[str, Any] = {}
    remote: dict[str, Any] = {}
    timings: dict[str, float] = {}
    redis_servers: list[RedisServer] = []
    redis_version = ""
    phases: dict[str, float] = {}
    try:
        redis_servers, redis_urls, redis_version = _start_redis(
            wanted, args.no_redis, scratch, notes
        )
        factories = [
            (name, make)
            for name, make in _backend_factories(redis_urls, scratch)
            if wanted is None or name in wanted
        ]
        workloads = [w for w in WORKLOADS if only is None or w.key in only]
        runs = sum(
            1
            for w in workloads
            for callers in _callers(w.key)
            for name, _ in factories
            if _runs_with(name, w.key, callers)
        )
        total = len(loops) * runs * config.repeats
        extra = (
            (0 if args.skip_memory else 2)
            + (0 if args.skip_sweep else 2)
            + (0 if args.skip_durability else 1)
            + (0 if args.skip_head_of_line else 1)
            + (0 if args.skip_remote else 1)
        )
        phases["set-up"] = round(time.perf_counter() - started, 1)
        with tqdm(total=total + extra, unit="run", mininterval=0.5, file=sys.stderr) as progress:
            for loop_name, factory in loops:
                phase = time.perf_counter()
                with asyncio.Runner(loop_factory=factory) as runner:
                    runner.run(
                        _run_loop(loop_name, factories, workloads, config, progress, cells, timings)
                    )
                phases[loop_name] = round(time.perf_counter() - phase, 1)
            for server in redis_servers:  # the subprocesses below have the cores to themselves
                server.stop()
            redis_servers = []
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
            phase = time.perf_counter()
            if not args.skip_durability:
                progress.set_description("durability")
                durability = _run_subprocess(
                    ["-m", "benchmarks.durability", "--seconds", str(config.commit_seconds),
                     "--sessions", str(config.open_sessions), "--variables", "100",
                     "--opens", str(config.opens), "--dir", scratch],
                    timeout=1800,
                )  # fmt: skip
                progress.update(1)
                phases["durability"] = round(time.perf_counter() - phase, 1)
            phase = time.perf_counter()
            if not args.skip_head_of_line:
                progress.set_description("head of line")
                head_of_line = _run_subprocess(
                    ["-m", "benchmarks.head_of_line", "--json",
                     *(["--quick"] if config.mode == "quick" else [])],
                    timeout=600,
                )  # fmt: skip
                progress.update(1)
                phases["head-of-line"] = round(time.perf_counter() - phase, 1)
            phase = time.perf_counter()
            if not args.skip_remote:
                progress.set_description("remote")
                remote = _run_subprocess(
                    ["-m", "benchmarks.remote", f"--{config.mode}", "--json",
                     "--out", str(args.out.resolve()),
                     *(["--no-redis"] if args.no_redis else [])],
                    timeout=1200,
                )  # fmt: skip
                progress.update(1)
                phases["remote"] = round(time.perf_counter() - phase, 1)
    finally:
        for server in redis_servers:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    if config.sweep_large != 1_000_000:
        notes.append(
            f"{config.mode} mode sweeps among {config.sweep_large:,} live sessions, not 1,000,000"
            " (run `make bench-full` for the full size)"
        )
    if config.memory_sessions != 10_000:
        notes.append(
            f"{config.mode} mode measures memory at {config.memory_sessions:,} sessions x 100,"
            " not 10,000 x 100"
        )
    if config.open_sessions != 10_000 and not args.skip_durability:
        notes.append(
            f"{config.mode} mode times the open of a database of {config.open_sessions * 100:,}"
            f" variables in {config.open_sessions:,} sessions, not 1,000,000 in 10,000"
        )
    meta = {
        "mode": config.mode,
        "config": config.__dict__,
        "loops": [name for name, _ in loops],
        "callers": [*CALLERS, WIDE_CALLERS],
        "versions": _versions(),
        "redis_server": redis_version,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "scratch": {"dir": scratch_parent, "filesystem": disk},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.perf_counter() - started, 1),
        "phases": phases,
        "timings": timings,
        "notes": notes,
    }
    ok = write_reports(
        args.out,
        meta,
        cells,
        memory,
        sweep,
        durability=durability,
        head_of_line=head_of_line,
        remote=remote,
    )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
