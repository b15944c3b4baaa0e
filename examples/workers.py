"""Four worker processes sharing one session through a ``sessionactor serve`` process.

An optimizer loop in the spirit of snakepit's workers: one process takes the
optimization lock on ``learning_rate`` (with a lease, so a crashed optimizer
cannot hold it forever) and lowers it step by step; three observer processes
follow it through a ``mirror()`` (a read-only dict kept current by a watch:
reading it costs a dict lookup, no call) and a ``watch_variables`` stream, and
one of them tries to write while the lock is held, which the store refuses.
Each worker reports what it saw; the program prints a short summary.

Run it with ``python examples/workers.py`` (two or three seconds). It starts its
own server on a unix socket in a temporary directory, and stops the server and
every worker whatever happens.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from typing import Any, cast

from sessionactor import VariableLocked, connect

SESSION = "tuning"
OBSERVERS = 3
STEPS = 20
STEP_PAUSE = 0.05  # seconds between the optimizer's writes
LEASE = 10.0  # seconds the lock lasts if its holder dies without releasing it
DEADLINE = 20.0  # seconds any worker may take before the program gives up on it


# -- the workers (each runs in its own process) ------------------------------------------


async def optimize(address: str, start: Event, results: Any) -> None:
    """Hold the lock on learning_rate and lower it each step; then say it is done."""
    async with connect(address) as store:
        start.wait(DEADLINE)  # every observer is watching
        await store.start_optimization(SESSION, "learning_rate", "optimizer", lease=LEASE)
        written = []
        rate = cast(float, (await store.get_variable(SESSION, "learning_rate")).value)
        for _ in range(STEPS):
            rate = round(rate * 0.8, 6)
            updated = await store.update_variable(
                SESSION, "learning_rate", rate, optimizer_id="optimizer"
            )
            written.append(updated.value)
            await asyncio.sleep(STEP_PAUSE)
        await store.end_optimization(SESSION, "learning_rate", "optimizer")
        await store.update_variable(SESSION, "done", True)
        results.put({"worker": "optimizer", "written": written})


async def observe(name: str, address: str, ready: Any, results: Any) -> None:
    """Follow learning_rate through a mirror and a watch until the optimizer is done."""
    async with (
        connect(address) as store,
        store.mirror(SESSION) as variables,
        store.watch_variables(SESSION, ["learning_rate", "done"], include_initial=False) as changes,
    ):
        ready.put(name)
        seen: list[float] = []
        versions: list[int] = []
        refused = ""
        async for change in changes:
            if change.name == "done":
                break
            seen.append(cast(float, change.new_value))
            versions.append(change.version or 0)
            if name == "observer-1" and not refused:
                try:
                    await store.update_variable(SESSION, "learning_rate", 0.5)
                except VariableLocked as error:
                    refused = f"VariableLocked, held by {error.optimizer_id}"
        # "done" was written after the last rate, and changes arrive in revision
        # order: by now the mirror holds the last rate, with no call to read it.
        results.put(
            {
                "worker": name,
                "seen": seen,
                "versions": versions,
                "mirror": variables["learning_rate"].value,
                "refused": refused,
            }
        )


def run_worker(role: str, address: str, start: Event, ready: Any, results: Any) -> None:
    """The entry point of a worker process."""
    try:
        if role == "optimizer":
            asyncio.run(optimize(address, start, results))
        else:
            asyncio.run(observe(role, address, ready, results))
    except Exception as error:
        results.put({"worker": role, "error": f"{type(error).__name__}: {error}"})
        raise


# -- the parent: a server, the workers, the summary ---------------------------------------


def start_server(socket_path: str) -> tuple[subprocess.Popen[bytes], str]:
    """``sessionactor serve`` on a unix socket; returns once it listens."""
    server = subprocess.Popen(
        [sys.executable, "-m", "sessionactor", "serve", "--listen", f"unix:{socket_path}"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert server.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(server.stdout, selectors.EVENT_READ)
        if not selector.select(DEADLINE):
            server.kill()
            raise SystemExit(f"the server did not start within {DEADLINE:g} s")
    line = server.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return server, line.removeprefix("listening on ")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if server.stdout is not None:
        server.stdout.close()


async def prepare(address: str) -> None:
    async with connect(address) as store:
        await store.create_session(SESSION)
        await store.register_variable(
            SESSION, "learning_rate", "float", 0.1, constraints={"min": 0.0, "max": 1.0}
        )
        await store.register_variable(SESSION, "done", "boolean", False)


def collect(results: Any, count: int, deadline: float) -> dict[str, dict[str, Any]]:
    reports: dict[str, dict[str, Any]] = {}
    while len(reports) < count:
        try:
            report = results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise SystemExit(f"workers did not finish within {DEADLINE:g} s") from None
        reports[report["worker"]] = report
        if "error" in report:
            raise SystemExit(f"{report['worker']} failed: {report['error']}")
    return reports


def summarize(reports: dict[str, dict[str, Any]], seconds: float) -> None:
    written = reports["optimizer"]["written"]
    print(
        f"optimizer: held the lock on learning_rate (lease {LEASE:g} s) and wrote "
        f"{len(written)} values, 0.1 -> {written[-1]:g}"
    )
    for name in sorted(r for r in reports if r.startswith("observer")):
        report = reports[name]
        in_order = report["versions"] == sorted(report["versions"])
        line = (
            f"{name}: watched {len(report['seen'])} updates "
            f"({'in order' if in_order else 'OUT OF ORDER'}, versions "
            f"{report['versions'][0]}..{report['versions'][-1]}), "
            f"mirror reads {report['mirror']:g} at the end"
        )
        if report["refused"]:
            line += f"; its own write was refused ({report['refused']})"
        print(line)
    finals = {reports[name]["mirror"] for name in reports if name.startswith("observer")}
    agree = finals == {written[-1]}
    print(
        f"{'all workers agree' if agree else 'WORKERS DISAGREE'} on the final learning rate "
        f"{written[-1]:g}; done in {seconds:.1f} s"
    )


def main() -> None:
    began = time.monotonic()
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as separate programs
    with tempfile.TemporaryDirectory(prefix="sessionactor-workers-") as directory:
        server, address = start_server(os.path.join(directory, "store.sock"))
        workers: list[multiprocessing.process.BaseProcess] = []
        try:
            print(f"server: sessionactor serve, listening on {address}")
            asyncio.run(prepare(address))
            start, ready, results = context.Event(), context.Queue(), context.Queue()
            roles = ["optimizer"] + [f"observer-{i + 1}" for i in range(OBSERVERS)]
            for role in roles:
                process = context.Process(
                    target=run_worker, args=(role, address, start, ready, results), name=role
                )
                process.start()
                workers.append(process)
            deadline = time.monotonic() + DEADLINE
            for _ in range(OBSERVERS):
                ready.get(timeout=DEADLINE)
            start.set()
            reports = collect(results, len(roles), deadline)
            for worker in workers:
                worker.join(max(0.1, deadline - time.monotonic()))
            summarize(reports, time.monotonic() - began)
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.kill()
                    worker.join()
            stop_server(server)


if __name__ == "__main__":
    main()
