"""The store over a connection against redis-py on a real redis-server, as ratios.

    python -m benchmarks.remote --quick     # about 30 s on 2 cores
    python -m benchmarks.remote --full      # the default: 11 repeats of 1 s (~3 min)

Servers run in their own processes: ``sessionactor serve`` (one on a unix
socket, one on TCP loopback, each with the 100-variable session of the main
harness) and a throw-away ``redis-server`` (``redis_server.py``) reached both
ways. Clients run in this process (``connect()``; redis-py's asyncio client with
hiredis, as ``baselines.RedisBackend`` uses it: value and version as two keys,
one round trip per operation). Measured in one run, backends taking turns
(order rotated each repeat) and reported as medians of the repeats:

1. 100 concurrent callers, mixed 80/20 get/update: the remote store on ONE
   connection (pipelined) against redis-py's default client (a pool: each
   caller in flight holds a connection of its own, 100 in all). Target: at
   least 2.5x redis-py.
2. 1 caller, p50 latency of get_variable and update_variable, every call timed.
   Target: at most redis-py's.
3. Mirror reads: ``mirror[name].value`` in a loop, against the same loop over a
   plain dict of the same Variables, in this process. Target: at least
   1,000,000 reads/s and within 2x of the dict.
4. Aggregate throughput of 1, 2, 4 and 8 client processes (each one connection,
   50 callers, mixed 80/20), started once and released together: the curve for
   the store over its unix socket and for redis-py over redis's.

Results go to ``results/remote.md`` (and ``remote.json``; ``--out DIR`` elsewhere).
``make bench`` runs this as one of its phases (``--json``: the figures as one JSON
line on stdout) and puts ``checks()`` and ``tables()`` into its results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .baselines import RedisBackend
from .common import HOT_NAMES, HOT_SESSION, Backend
from .redis_server import RedisServer, RedisUnavailable
from .targets import Check
from .workloads import WORKLOADS, StoreBackend, measure_interleaved, prepare_common

__all__ = [
    "QUICK",
    "FULL",
    "RemoteConfig",
    "checks",
    "curve_summary",
    "describe",
    "main",
    "measure",
    "tables",
    "write_report",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROCESS_COUNTS = (1, 2, 4, 8)
CALLERS_PER_PROCESS = 50


@dataclass(frozen=True)
class RemoteConfig:
    mode: str
    duration: float  # seconds per timed run (throughput and latency)
    warmup: float
    repeats: int
    reads: int  # mirror/dict reads per timed read run
    curve_duration: float  # seconds per run of the multi-process curve
    curve_repeats: int


QUICK = RemoteConfig("quick", 0.25, 0.1, 5, 200_000, 0.8, 1)
FULL = RemoteConfig("full", 1.0, 0.3, 11, 2_000_000, 2.0, 3)


# -- backends --------------------------------------------------------------------------


class RemoteBackend(StoreBackend):
    """``sessionactor.connect(address)``: the store's calls over one connection."""

    def __init__(self, name: str, address: str) -> None:
        super().__init__()
        self.name = name
        self.address = address

    async def start(self) -> None:
        from sessionactor import connect

        self._store = connect(self.address, call_timeout=60.0)
        await self._store.__aenter__()

    @property
    def store(self) -> Any:
        return self._store


class NamedRedis(RedisBackend):
    """``RedisBackend`` under another name; ``flush=False`` keeps the data already there."""

    def __init__(self, name: str, url: str, *, flush: bool = True) -> None:
        super().__init__(url)
        self.name = name
        self._flush = flush

    async def start(self) -> None:
        if self._flush:
            await super().start()
        else:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(self._url)


# -- the server processes ---------------------------------------------------------------


@contextmanager
def sessionactor_server(address: str) -> Iterator[tuple[str, int]]:
    """``python -m sessionactor serve --listen address`` until the block ends: (address, pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sessionactor", "serve", "--listen", address],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(30.0):
                raise RuntimeError("sessionactor serve did not start within 30 s")
        line = process.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"sessionactor serve did not start: {line!r}")
        yield line.removeprefix("listening on "), process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- 1 and 2: throughput and latency, interleaved ---------------------------------------


def _summary(rates: list[float], latencies: list[int]) -> dict[str, Any]:
    cell: dict[str, Any] = {"rate": statistics.median(rates), "rates": rates}
    if latencies:
        ordered = sorted(latencies)
        last = len(ordered) - 1
        cell["p50_us"] = ordered[last // 2] / 1000.0
        cell["p99_us"] = ordered[round(0.99 * last)] / 1000.0
    return cell


async def _calls(backends: list[Backend], config: RemoteConfig) -> dict[str, Any]:
    by_key = {w.key: w for w in WORKLOADS}
    out: dict[str, Any] = {}
    for key, callers in (("mixed", 100), ("get", 1), ("update", 1)):
        results = await measure_interleaved(
            backends,
            by_key[key],
            callers=callers,
            duration=config.duration,
            warmup=config.warmup,
            repeats=config.repeats,
        )
        for name, measured in results.items():
            if measured.error is not None or not measured.rates:
                out[f"{key}/{callers}/{name}"] = {"error": measured.error or "no run"}
            else:
                out[f"{key}/{callers}/{name}"] = _summary(measured.rates, measured.latencies_ns)
    return out


# -- 3: mirror reads -------------------------------------------------------------------------


def _reads_per_second(mapping: Any, names: list[str], reads: int) -> float:
    rounds = max(1, reads // len(names))
    gc.collect()
    start = time.perf_counter()
    for _ in range(rounds):
        for name in names:
            mapping[name].value  # noqa: B018 - the read is what is measured
    return rounds * len(names) / (time.perf_counter() - start)


async def _mirror_reads(backend: RemoteBackend, config: RemoteConfig) -> dict[str, Any]:
    async with backend.store.mirror(HOT_SESSION) as mirror:
        plain = dict(mirror)
        assert len(plain) == len(HOT_NAMES)
        names = list(HOT_NAMES)
        rates: dict[str, list[float]] = {"mirror": [], "dict": []}
        _reads_per_second(mirror, names, config.reads // 10)  # warm-up
        for repeat in range(config.repeats):
            order = ("mirror", "dict") if repeat % 2 == 0 else ("dict", "mirror")
            for which in order:
                mapping = mirror if which == "mirror" else plain
                rates[which].append(_reads_per_second(mapping, names, config.reads))
    return {name: {"rate": statistics.median(r), "rates": r} for name, r in rates.items()}


# -- 4: the multi-process curve -----------------------------------------------------------


def _client_process(pipe: Connection, remote_address: str, redis_url: str | None) -> None:
    """One client process: connects once to each backend, then runs what it is told."""
    loop = asyncio.new_event_loop()
    backends: dict[str, Backend] = {"store": RemoteBackend("store", remote_address)}
    if redis_url is not None:
        backends["redis"] = NamedRedis("redis", redis_url, flush=False)  # prepared already
    try:
        for backend in backends.values():
            loop.run_until_complete(backend.start())
        pipe.send("ready")
        while (command := pipe.recv()) is not None:
            name, start_at, duration = command
            pipe.send(loop.run_until_complete(_mixed_until(backends[name], start_at, duration)))
    finally:
        for backend in backends.values():
            loop.run_until_complete(backend.stop())
        loop.close()


async def _mixed_until(backend: Backend, start_at: float, duration: float) -> int:
    """CALLERS_PER_PROCESS callers doing 80/20 get/update from start_at for duration."""
    mixed = next(w for w in WORKLOADS if w.key == "mixed")
    ops = [mixed.make_op(backend, caller, 0) for caller in range(CALLERS_PER_PROCESS)]
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))  # one clock for all processes
    deadline = start_at + duration

    async def caller(op: Callable[[int], Any]) -> int:
        n = 0
        while time.monotonic() < deadline:
            await op(n)
            n += 1
        return n

    return sum(await asyncio.gather(*(caller(op) for op in ops)))


def _curve(
    remote_address: str, redis_url: str | None, config: RemoteConfig, server_pid: int
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    processes: list[multiprocessing.process.BaseProcess] = []
    names = ["store"] + (["redis"] if redis_url is not None else [])
    out: dict[str, Any] = {name: {} for name in names}
    try:
        for _ in range(max(PROCESS_COUNTS)):
            parent, child = context.Pipe()
            process = context.Process(
                target=_client_process, args=(child, remote_address, redis_url), daemon=True
            )
            process.start()
            pipes.append(parent)
            processes.append(process)
        for pipe in pipes:
            if not pipe.poll(60.0):
                raise RuntimeError("a client process did not start within 60 s")
            assert pipe.recv() == "ready"
        for count in PROCESS_COUNTS:
            rates: dict[str, list[float]] = {name: [] for name in names}
            server_cpu: list[float] = []
            for repeat in range(config.curve_repeats):
                for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                    start_at = time.monotonic() + 0.2
                    cpu_before = server_cpu_seconds(server_pid)
                    for pipe in pipes[:count]:
                        pipe.send((name, start_at, config.curve_duration))
                    calls = sum(pipe.recv() for pipe in pipes[:count])
                    rates[name].append(calls / config.curve_duration)
                    if name == "store":
                        used = server_cpu_seconds(server_pid) - cpu_before
                        server_cpu.append(used / config.curve_duration)
            for name in names:
                median = statistics.median(rates[name])
                out[name][str(count)] = {"rate": median, "rates": rates[name]}
            out["store"][str(count)]["server_cpu"] = statistics.median(server_cpu)
    finally:
        for pipe in pipes:
            with suppress(OSError):  # a client process that died
                pipe.send(None)
        for started in processes:
            started.join(10.0)
            if started.is_alive():
                started.kill()
                started.join()
    return out


# -- the whole run ----------------------------------------------------------------------------


def measure(config: RemoteConfig, redis: RedisServer | None) -> dict[str, Any]:
    """Every figure of this benchmark, with sessionactor servers started and stopped here."""
    with tempfile.TemporaryDirectory(prefix="sessionactor-bench-") as directory:
        unix = f"unix:{os.path.join(directory, 'store.sock')}"
        with (
            sessionactor_server(unix) as (unix_address, unix_pid),
            sessionactor_server("tcp://127.0.0.1:0") as (tcp_address, _),
        ):
            return asyncio.run(_measure(config, redis, unix_address, unix_pid, tcp_address))


async def _measure(
    config: RemoteConfig,
    redis: RedisServer | None,
    unix_address: str,
    unix_pid: int,
    tcp_address: str,
) -> dict[str, Any]:
    backends: list[Backend] = [
        RemoteBackend("store-unix", unix_address),
        RemoteBackend("store-tcp", tcp_address),
    ]
    if redis is not None:
        backends += [
            NamedRedis("redis-unix", redis.unix_url),  # database 0, kept for the curve
            NamedRedis("redis-tcp", redis.url.removesuffix("/0") + "/1"),
        ]
    for backend in backends:
        await backend.start()
    try:
        for backend in backends:
            await prepare_common(backend, with_big=False)
        gc.collect()
        gc.freeze()
        calls = await _calls(backends, config)
        reads = await _mirror_reads(backends[0], config)  # type: ignore[arg-type]
    finally:
        for backend in backends:
            await backend.stop()
        gc.unfreeze()
    curve = await asyncio.to_thread(
        _curve, unix_address, redis.unix_url if redis is not None else None, config, unix_pid
    )
    return {"calls": calls, "reads": reads, "curve": curve}


# -- the report ---------------------------------------------------------------------------------


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def checks(results: dict[str, Any]) -> list[Check]:
    """The targets over a connection; a figure that is missing (no redis-server, a run
    that failed, the phase not run) gives a check without a measurement that says why."""
    missing = str(results.get("error", "not run"))
    calls: dict[str, Any] = results.get("calls", {})
    reads: dict[str, Any] = results.get("reads", {})

    def figure(key: str, field: str) -> float | None:
        value: float | None = calls.get(key, {}).get(field)
        return value

    def why(*keys: str) -> str:
        errors = [calls[key]["error"] for key in keys if "error" in calls.get(key, {})]
        if errors:
            return "; ".join(errors)
        return missing if not calls else "no redis-py figure (no redis-server)"

    rows: list[Check] = []
    for transport in ("unix", "tcp"):
        ours, theirs = f"mixed/100/store-{transport}", f"mixed/100/redis-{transport}"
        ratio = _ratio(figure(ours, "rate"), figure(theirs, "rate"))
        rows.append(
            Check(f"remote, 100 callers mixed 80/20 over {transport} ≥ 2.5 x redis-py", "",
                  ratio, ">=", 2.5,
                  "store on one connection (pipelined) / redis-py with a connection per "
                  "caller in flight, calls/s" if ratio is not None else why(ours, theirs))
        )  # fmt: skip
    for op in ("get", "update"):
        for transport in ("unix", "tcp"):
            ours, theirs = f"{op}/1/store-{transport}", f"{op}/1/redis-{transport}"
            mine, other = figure(ours, "p50_us"), figure(theirs, "p50_us")
            ratio = _ratio(mine, other)
            rows.append(
                Check(f"remote, 1 caller p50 {op}_variable over {transport} ≤ redis-py", "",
                      ratio, "<=", 1.0,
                      f"store / redis-py p50: {mine:.0f} vs {other:.0f} µs"
                      if mine is not None and other is not None else why(ours, theirs))
            )  # fmt: skip
    mirror = reads.get("mirror", {}).get("rate")
    plain = reads.get("dict", {}).get("rate")
    rows.append(
        Check("remote, mirror reads ≥ 1,000,000/s", "", mirror, ">=", 1_000_000.0,
              "`mirror[name].value` in a loop in the client's process"
              if mirror is not None else missing, unit="/s")
    )  # fmt: skip
    rows.append(
        Check("remote, mirror reads within 2 x of a dict", "", _ratio(plain, mirror), "<=", 2.0,
              "plain dict reads/s / mirror reads/s (how many times slower the mirror is)"
              if mirror is not None and plain is not None else missing)
    )  # fmt: skip
    return rows


def curve_summary(results: dict[str, Any]) -> str:
    """The client-process curve on one line: calls/s with 1, 2, 4 and 8 processes."""
    curve: dict[str, Any] = results.get("curve", {})
    if "store" not in curve:
        return f"not measured: {results.get('error', 'not run')}"
    parts = []
    for name, label in (("store", "store"), ("redis", "redis-py")):
        if name in curve:
            rates = [f"{curve[name][str(count)]['rate'] / 1e3:.0f}k" for count in PROCESS_COUNTS]
            parts.append(f"{label} {'/'.join(rates)}")
    counts = "/".join(str(count) for count in PROCESS_COUNTS)
    return f"calls/s with {counts} client processes: " + ", ".join(parts)


def tables(results: dict[str, Any], heading: str = "##") -> list[str]:
    """The calls, the mirror reads and the client-process curve as Markdown tables."""
    calls, curve, reads = results["calls"], results["curve"], results["reads"]
    lines = [
        f"{heading} Calls",
        "",
        "| workload | backend | calls/s | p50 µs | p99 µs |",
        "|---|---|---:|---:|---:|",
    ]
    for key, cell in calls.items():
        workload, callers, backend = key.split("/")
        if "error" in cell:
            lines.append(f"| {workload} x{callers} | {backend} | {cell['error']} | | |")
            continue
        p50 = f"{cell['p50_us']:.0f}" if "p50_us" in cell else ""
        p99 = f"{cell['p99_us']:.0f}" if "p99_us" in cell else ""
        lines.append(f"| {workload} x{callers} | {backend} | {cell['rate']:,.0f} | {p50} | {p99} |")
    lines += [
        "",
        f"{heading} Mirror reads (this process, no call)",
        "",
        "| mapping | reads/s |",
        "|---|---:|",
        f"| `mirror[name].value` | {reads['mirror']['rate']:,.0f} |",
        f"| plain `dict[name].value` | {reads['dict']['rate']:,.0f} |",
        "",
        f"{heading} Client processes (mixed 80/20, 50 callers and one connection each, unix "
        "sockets)",
        "",
        "| processes | store calls/s | server CPU (cores) | redis-py calls/s |",
        "|---:|---:|---:|---:|",
    ]
    for count in PROCESS_COUNTS:
        ours = curve["store"][str(count)]
        theirs = curve.get("redis", {}).get(str(count), {}).get("rate")
        lines.append(
            f"| {count} | {ours['rate']:,.0f} | {ours['server_cpu']:.2f} | "
            f"{'' if theirs is None else f'{theirs:,.0f}'} |"
        )
    lines.append("")
    return lines


def describe(meta: dict[str, Any]) -> str:
    """How the figures were taken, in one paragraph."""
    config = meta["config"]
    return (
        f"{meta['seconds']:.0f} s; load average {meta['load_average']} at the start (other"
        " programs share the cores). Servers in their own processes (`sessionactor serve`"
        " on its default loop, uvloop when installed; "
        f"{meta['redis_server'].split(' sha=')[0] or 'no redis-server'}), clients in the"
        f" benchmark's (asyncio loop); medians of {config['repeats']} interleaved runs of"
        f" {config['duration']} s, the client-process curve {config['curve_repeats']} x"
        f" {config['curve_duration']} s per point. The store's 100 callers share one connection"
        " (pipelined); redis-py's use its default pool, one connection per caller in flight."
    )


def write_report(results: dict[str, Any], meta: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "remote.json").write_text(json.dumps({"meta": meta, **results}, indent=1) + "\n")
    lines = [
        "# The store over a connection, against redis-py + hiredis",
        "",
        f"`python -m benchmarks.remote --{meta['mode']}` — {meta['date']}, {meta['machine']},",
        f"Python {meta['python']}; " + describe(meta),
        "",
        "## Targets",
        "",
        "| target | measured | | how |",
        "|---|---:|---|---|",
    ]
    for check in checks(results):
        lines.append(f"| {check.target} | {check.formatted()} | {check.status} | {check.detail} |")
    lines += ["", *tables(results)]
    if meta.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in meta["notes"]]
    path = out / "remote.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short runs: about 30 s")
    mode.add_argument("--full", action="store_true", help="the default: about 3 minutes")
    parser.add_argument("--no-redis", action="store_true", help="measure the store alone")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--json", action="store_true", help="print the figures as one JSON line (for run.py)"
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_average = os.getloadavg()
    notes: list[str] = []
    redis: RedisServer | None = None
    if not args.no_redis:
        redis = RedisServer()
        try:
            redis.start()
        except RedisUnavailable as error:
            notes.append(f"Redis unavailable: {error}")
            redis = None
    try:
        results = measure(config, redis)
        redis_version = redis.version if redis is not None else ""
    finally:
        if redis is not None:
            redis.stop()
    meta = {
        "mode": config.mode,
        "config": asdict(config),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "redis_server": redis_version,
        "seconds": time.perf_counter() - started,
        "load_average": ", ".join(f"{load:.1f}" for load in load_average),
        "notes": notes,
    }
    path = write_report(results, meta, args.out)
    if args.json:
        print(json.dumps({"meta": meta, **results}))
        return 0
    for check in checks(results):
        print(f"{check.status:4}  {check.target}: {check.formatted('n/a')} ({check.detail})")
    print(f"info  {curve_summary(results)} (reported, no line)")
    print(f"wrote {path} in {meta['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
