"""The workloads, the store's adapter, and the timing loop.

A workload prepares a backend (untimed), then builds one operation per caller:
an ``op(i)`` coroutine function that the timing loop awaits again and again
until the deadline. With 1 caller every call is timed on its own for the
latency percentiles; with 100 callers, 100 tasks share one deadline and the
throughput is all their calls over the wall time.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .common import (
    BIG_SESSION,
    CONSTRAINTS,
    HOT_NAMES,
    HOT_SESSION,
    LIST_MATCHES,
    LIST_PATTERN,
    N_HOT,
    Backend,
    big_names,
)

__all__ = [
    "WORKLOADS",
    "DurableStoreBackend",
    "Measurement",
    "StoreBackend",
    "StoreNowaitBackend",
    "Workload",
    "measure_interleaved",
    "prepare_common",
]

Op = Callable[[int], Awaitable[object]]


# the store -------------------------------------------------------------------


class StoreBackend:
    """``sessionactor.SessionStore`` with its default settings, through the public API."""

    name = "store"

    def __init__(self, **store_kwargs: Any) -> None:
        self._kwargs = store_kwargs
        self._store: Any = None
        self._constraints = dict(CONSTRAINTS)

    async def start(self) -> None:
        from sessionactor import SessionStore

        self._store = SessionStore(**self._kwargs)
        await self._store.__aenter__()

    async def stop(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.__aexit__(None, None, None)

    async def create_session(self, session_id: str) -> None:
        await self._store.create_session(session_id)

    async def delete_session(self, session_id: str) -> None:
        await self._store.delete_session(session_id)

    async def register(self, session_id: str, name: str, value: float) -> object:
        return await self._store.register_variable(
            session_id, name, "float", value, constraints=self._constraints
        )

    async def get(self, session_id: str, name: str) -> object:
        return await self._store.get_variable(session_id, name)

    async def update(self, session_id: str, name: str, value: float) -> object:
        return await self._store.update_variable(session_id, name, value)

    async def get_many(self, session_id: str, names: list[str]) -> object:
        return await self._store.get_variables(session_id, names)

    async def update_many(self, session_id: str, updates: dict[str, float]) -> object:
        return await self._store.update_variables(session_id, updates, atomic=True)

    async def list_matching(self, session_id: str, pattern: str) -> object:
        return await self._store.list_variables(session_id, pattern)


class StoreNowaitBackend(StoreBackend):
    """The store with its opt-in reads that skip the mailbox; writes still use it."""

    name = "nowait"

    async def get(self, session_id: str, name: str) -> object:
        return self._store.get_variable_nowait(session_id, name)

    async def get_many(self, session_id: str, names: list[str]) -> object:
        return self._store.get_variables_nowait(session_id, names)

    async def list_matching(self, session_id: str, pattern: str) -> object:
        return self._store.list_variables_nowait(session_id, pattern)


class DurableStoreBackend(StoreBackend):
    """``SessionStore(database=..., synchronous=...)``, otherwise the defaults: a fresh
    database file in a temporary directory of its own (in ``parent``, default the
    system's), removed with its write-ahead log when the backend stops."""

    def __init__(self, synchronous: str, parent: str | os.PathLike[str] | None = None) -> None:
        super().__init__(synchronous=synchronous)
        self.name = f"store-{synchronous}"
        self._parent = parent
        self._directory: str | None = None

    async def start(self) -> None:
        self._directory = tempfile.mkdtemp(prefix=f"sessionactor-{self.name}-", dir=self._parent)
        self._kwargs["database"] = os.path.join(self._directory, "store.sqlite")
        try:
            await super().start()
        except BaseException:
            self._remove_files()
            raise

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            self._remove_files()

    def _remove_files(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


# set-up ------------------------------------------------------------------------


async def prepare_common(backend: Backend, *, with_big: bool) -> None:
    """The hot session (100 floats) and, if asked, the big one (10,000 for listing)."""
    await backend.create_session(HOT_SESSION)
    for name in HOT_NAMES:
        await backend.register(HOT_SESSION, name, 0.5)
    if with_big:
        await backend.create_session(BIG_SESSION)
        bulk = getattr(backend, "bulk_register", None)
        if bulk is not None:
            await bulk(BIG_SESSION, big_names(), 0.5)
        else:
            for name in big_names():
                await backend.register(BIG_SESSION, name, 0.5)
        listed = await backend.list_matching(BIG_SESSION, LIST_PATTERN)
        assert len(listed) == LIST_MATCHES, (backend.name, len(listed))  # type: ignore[arg-type]


# workloads -------------------------------------------------------------------

_VALUES = [((i * 7919) % 1000) / 1000.0 for i in range(1000)]  # valid floats in [0, 1)
_BATCH_A = {name: 0.25 for name in HOT_NAMES}
_BATCH_B = {name: 0.75 for name in HOT_NAMES}


@dataclass(frozen=True)
class Workload:
    """One benchmarked operation. ``ops_per_call`` counts variables per call (for batches)."""

    key: str
    title: str
    short: str  # a chart label
    make_op: Callable[[Backend, int, int], Op]  # (backend, caller index, run number)
    ops_per_call: int = 1
    needs_big: bool = False
    per_repeat_session: bool = False  # a fresh session before each run (register)


def _get(backend: Backend, caller: int, _run: int) -> Op:
    name = HOT_NAMES[caller % N_HOT]
    get = backend.get

    def op(_i: int) -> Awaitable[object]:
        return get(HOT_SESSION, name)

    return op


def _update(backend: Backend, caller: int, _run: int) -> Op:
    name = HOT_NAMES[caller % N_HOT]
    update = backend.update
    values = _VALUES

    def op(i: int) -> Awaitable[object]:
        return update(HOT_SESSION, name, values[i % 1000])

    return op


def _mixed(backend: Backend, caller: int, _run: int) -> Op:
    name = HOT_NAMES[caller % N_HOT]
    get, update = backend.get, backend.update
    values = _VALUES

    def op(i: int) -> Awaitable[object]:
        if i % 5 == 4:  # 1 in 5 is an update: 80/20
            return update(HOT_SESSION, name, values[i % 1000])
        return get(HOT_SESSION, name)

    return op


def _get_many(backend: Backend, _caller: int, _run: int) -> Op:
    get_many = backend.get_many
    names = HOT_NAMES

    def op(_i: int) -> Awaitable[object]:
        return get_many(HOT_SESSION, names)

    return op


def _update_many(backend: Backend, _caller: int, _run: int) -> Op:
    update_many = backend.update_many
    batches = (_BATCH_A, _BATCH_B)

    def op(i: int) -> Awaitable[object]:
        return update_many(HOT_SESSION, batches[i & 1])

    return op


def _list(backend: Backend, _caller: int, _run: int) -> Op:
    list_ = backend.list_matching

    def op(_i: int) -> Awaitable[object]:
        return list_(BIG_SESSION, LIST_PATTERN)

    return op


def register_session(run: int) -> str:
    return f"reg{run}"


def _register(backend: Backend, caller: int, run: int) -> Op:
    register = backend.register
    session = register_session(run)
    prefix = f"r{caller}_"

    def op(i: int) -> Awaitable[object]:
        return register(session, prefix + str(i), 0.5)

    return op


WORKLOADS: tuple[Workload, ...] = (
    Workload("get", "get_variable", "get", _get),
    Workload("update", "update_variable (float, min/max)", "update", _update),
    Workload("mixed", "mixed 80/20 get/update", "mixed 80/20", _mixed),
    Workload(
        "get_many", "get_variables of 100", "get_variables\n(100)", _get_many, ops_per_call=N_HOT
    ),
    Workload(
        "update_many",
        "update_variables of 100, atomic",
        "update_variables\n(100, atomic)",
        _update_many,
        ops_per_call=N_HOT,
    ),
    Workload(
        "list",
        "list_variables 'temp_*' over 10,000",
        "list_variables\n(temp_*, 10k)",
        _list,
        needs_big=True,
    ),
    Workload("register", "register_variable", "register", _register, per_repeat_session=True),
)


# timing ----------------------------------------------------------------------


@dataclass
class Measurement:
    """Calls per second of each repeat, and per-call latencies (ns) of 1-caller runs."""

    rates: list[float] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)
    error: str | None = None


async def _caller_untimed(op: Op, deadline: float) -> int:
    clock = time.perf_counter
    n = 0
    while clock() < deadline:
        await op(n)
        n += 1
    return n


async def _caller_timed(op: Op, deadline_ns: int, out: list[int]) -> int:
    clock = time.perf_counter_ns
    append = out.append
    n = 0
    while True:
        start = clock()
        await op(n)
        end = clock()
        append(end - start)
        n += 1
        if end >= deadline_ns:
            return n


_runs = itertools.count()


async def run_once(
    backend: Backend,
    workload: Workload,
    callers: int,
    duration: float,
    latencies: list[int] | None,
) -> float:
    """One run of ``callers`` tasks until ``duration`` passes; returns calls per second.

    With one caller and a ``latencies`` list, every call is timed into it.
    """
    run = next(_runs)
    if workload.per_repeat_session:
        await backend.create_session(register_session(run))
    ops = [workload.make_op(backend, c, run) for c in range(callers)]
    gc.collect()
    start = time.perf_counter()
    if callers == 1:
        if latencies is not None:
            deadline_ns = time.perf_counter_ns() + int(duration * 1e9)
            count = await _caller_timed(ops[0], deadline_ns, latencies)
        else:
            count = await _caller_untimed(ops[0], start + duration)
    else:
        deadline = start + duration
        counts = await asyncio.gather(*(_caller_untimed(op, deadline) for op in ops))
        count = sum(counts)
    rate = count / (time.perf_counter() - start)
    if workload.per_repeat_session:  # keep what later runs see (and collect) the same
        await backend.delete_session(register_session(run))
    return rate


async def measure_interleaved(
    backends: list[Backend],
    workload: Workload,
    *,
    callers: int,
    duration: float,
    warmup: float,
    repeats: int,
    on_run: Callable[[], None] = lambda: None,
) -> dict[str, Measurement]:
    """Warm every backend up, then take turns: repeat r runs each backend once, in an
    order rotated by r, so that all of them meet the same noise of a shared machine.
    A backend that raises is dropped from later turns with its error recorded."""
    results = {b.name: Measurement() for b in backends}
    live = list(backends)
    for backend in list(live):
        try:
            await run_once(backend, workload, callers, warmup, None)
        except Exception as exc:
            results[backend.name].error = f"{type(exc).__name__}: {exc}"
            live.remove(backend)
    for repeat in range(repeats):
        shift = repeat % len(live) if live else 0
        for backend in live[shift:] + live[:shift]:
            result = results[backend.name]
            if result.error is not None:
                continue
            try:
                latencies = result.latencies_ns if callers == 1 else None
                result.rates.append(await run_once(backend, workload, callers, duration, latencies))
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"
            on_run()
    return results
