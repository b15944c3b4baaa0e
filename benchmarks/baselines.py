"""The baselines the store is measured against, in the same process and run.

floor
    A bare actor with the store's queue-and-future mechanics: an
    ``asyncio.Queue`` of ``(command, future)`` tuples drained by one task that
    answers each future from a trivial handler. Every operation is one message,
    whatever the workload, so this is the cost of messaging alone.
direct
    The store's own functional core, ``sessionactor.state.StoreState``, called
    synchronously (``state.handle(command)``) with the same command messages the
    store sends: the work itself, no actor, no loop round trip.
naive
    A dict of sessions behind one ``asyncio.Lock`` doing the same float min/max
    validation, version bump, timestamps and session touch.
redis
    A real ``redis-server`` on 127.0.0.1 through ``redis.asyncio`` (with the
    ``hiredis`` parser when it is installed, as the bench extra does): GET/SET of
    the value plus INCR of a version counter. Validation is done client-side
    before writing. An update is ``SET`` + ``INCR`` sent as one MULTI/EXEC
    pipeline (one round trip, atomic); a read is one ``MGET`` of value and
    version. Batches are one MGET or one MULTI/EXEC pipeline; a listing is
    ``KEYS`` with the glob then one ``MGET``. These are the fastest faithful
    forms: every operation costs exactly one round trip (two for a listing).
    The server keeps nothing on disk (``--appendonly no``, ``--save ""``).
redis-everysec, redis-always
    The same client and operations, each against its own ``redis-server`` that
    keeps an append-only file (``--appendonly yes``) with ``--appendfsync
    everysec`` (written at once, fsynced once a second: a power loss can take
    the last second) or ``--appendfsync always`` (fsynced before the reply:
    Redis's durable setting; it writes and fsyncs once per pass of its event
    loop, so the clients served in one pass share a fsync, its group commit).
pykka
    A ``pykka.ThreadingActor`` holding the same dicts as naive, called from
    asyncio by ``tell``-ing it a message that carries the caller's asyncio
    future; the actor thread resolves it with ``loop.call_soon_threadsafe``
    (what ``asyncio.wrap_future`` does, without the intermediate
    ``concurrent.futures.Future``). Measured side by side on 2 cores this was
    the fastest honest way, ahead of ``mode="future"`` (a
    ``concurrent.futures.Future`` in the message, awaited through
    ``asyncio.wrap_future``) and ``mode="executor"`` (``loop.run_in_executor``
    around the blocking ``ask``: a thread-pool hop per call and at most
    ``min(32, cpus + 4)`` calls in flight). pykka's own ``await future`` blocks
    the event loop inside ``Future.get``, so it is no option.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import functools
import re
import time
from collections.abc import Callable
from typing import Any

from .common import CONSTRAINTS, check_float

__all__ = [
    "DirectBackend",
    "FloorBackend",
    "NaiveBackend",
    "NaiveState",
    "PykkaBackend",
    "RedisBackend",
]


# floor ----------------------------------------------------------------------


def _trivial_handler(command: object) -> object:
    return command


class FloorBackend:
    """A bare actor: one task drains (command, future) tuples and answers each."""

    name = "floor"

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[object, asyncio.Future[object]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _serve(self) -> None:
        assert self._queue is not None
        queue = self._queue
        handle = _trivial_handler
        while True:
            command, future = await queue.get()
            if not future.done():
                future.set_result(handle(command))

    async def _call(self, command: object) -> object:
        assert self._loop is not None and self._queue is not None
        future: asyncio.Future[object] = self._loop.create_future()
        self._queue.put_nowait((command, future))
        return await future

    async def create_session(self, session_id: str) -> None:
        await self._call(("create_session", session_id))

    async def delete_session(self, session_id: str) -> None:
        await self._call(("delete_session", session_id))

    async def register(self, session_id: str, name: str, value: float) -> object:
        return await self._call(("register", session_id, name, value))

    async def get(self, session_id: str, name: str) -> object:
        return await self._call(("get", session_id, name))

    async def update(self, session_id: str, name: str, value: float) -> object:
        return await self._call(("update", session_id, name, value))

    async def get_many(self, session_id: str, names: list[str]) -> object:
        return await self._call(("get_many", session_id, names))

    async def update_many(self, session_id: str, updates: dict[str, float]) -> object:
        return await self._call(("update_many", session_id, updates))

    async def list_matching(self, session_id: str, pattern: str) -> object:
        return await self._call(("list", session_id, pattern))


# direct ---------------------------------------------------------------------


class DirectBackend:
    """``StoreState.handle(command)`` with the store's command messages, no actor."""

    name = "direct"

    def __init__(self, **state_kwargs: Any) -> None:
        from sessionactor import messages
        from sessionactor.state import StoreState

        self._m = messages
        self._state_kwargs = state_kwargs
        self._state_cls = StoreState
        self._state: Any = None
        self._constraints = dict(CONSTRAINTS)

    async def start(self) -> None:
        self._state = self._state_cls(**self._state_kwargs)

    async def stop(self) -> None:
        self._state = None

    async def create_session(self, session_id: str) -> None:
        self._state.handle(self._m.CreateSession(session_id))

    async def delete_session(self, session_id: str) -> None:
        self._state.handle(self._m.DeleteSession(session_id))

    async def register(self, session_id: str, name: str, value: float) -> object:
        return self._state.handle(
            self._m.RegisterVariable(session_id, name, "float", value, self._constraints)
        )

    async def get(self, session_id: str, name: str) -> object:
        return self._state.handle(self._m.GetVariable(session_id, name))

    async def update(self, session_id: str, name: str, value: float) -> object:
        return self._state.handle(self._m.UpdateVariable(session_id, name, value))

    async def get_many(self, session_id: str, names: list[str]) -> object:
        return self._state.handle(self._m.GetVariables(session_id, names))

    async def update_many(self, session_id: str, updates: dict[str, float]) -> object:
        return self._state.handle(self._m.UpdateVariables(session_id, updates, True))

    async def list_matching(self, session_id: str, pattern: str) -> object:
        return self._state.handle(self._m.ListVariables(session_id, pattern))


# naive (and the state pykka's actor holds) ---------------------------------


class NaiveVar:
    __slots__ = ("constraints", "created_at", "name", "updated_at", "value", "version")

    def __init__(self, name: str, value: float, constraints: dict[str, float]) -> None:
        self.name = name
        self.value = value
        self.constraints = constraints
        self.version = 0
        self.created_at = self.updated_at = time.time()


class NaiveSession:
    __slots__ = ("last_accessed", "variables")

    def __init__(self) -> None:
        self.variables: dict[str, NaiveVar] = {}
        self.last_accessed = time.monotonic()


Snapshot = tuple[str, float, int, float]
"""(name, value, version, updated_at): what a naive read or update returns."""


def _validate(value: object, constraints: dict[str, float]) -> float:
    return check_float(value, constraints["min"], constraints["max"])


@functools.lru_cache(maxsize=64)
def _glob(pattern: str) -> Callable[[str], re.Match[str] | None]:
    return re.compile(fnmatch.translate(pattern)).match


class NaiveState:
    """Plain dicts with the same validation, version bump, timestamps and touch."""

    def __init__(self) -> None:
        self.sessions: dict[str, NaiveSession] = {}

    def _session(self, session_id: str) -> NaiveSession:
        session = self.sessions[session_id]
        session.last_accessed = time.monotonic()
        return session

    def create_session(self, session_id: str) -> None:
        if session_id not in self.sessions:
            self.sessions[session_id] = NaiveSession()

    def delete_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def register(self, session_id: str, name: str, value: float) -> Snapshot:
        variables = self._session(session_id).variables
        if name in variables:
            raise KeyError(f"variable {name!r} exists")
        constraints = dict(CONSTRAINTS)
        var = NaiveVar(name, _validate(value, constraints), constraints)
        variables[name] = var
        return (var.name, var.value, var.version, var.updated_at)

    def bulk_register(self, session_id: str, names: list[str], value: float) -> None:
        for name in names:
            self.register(session_id, name, value)

    def get(self, session_id: str, name: str) -> Snapshot:
        var = self._session(session_id).variables[name]
        return (var.name, var.value, var.version, var.updated_at)

    def update(self, session_id: str, name: str, value: float) -> Snapshot:
        var = self._session(session_id).variables[name]
        var.value = _validate(value, var.constraints)
        var.version += 1
        var.updated_at = time.time()
        return (var.name, var.value, var.version, var.updated_at)

    def get_many(self, session_id: str, names: list[str]) -> dict[str, Snapshot]:
        variables = self._session(session_id).variables
        found: dict[str, Snapshot] = {}
        for name in names:
            var = variables.get(name)
            if var is not None:
                found[name] = (var.name, var.value, var.version, var.updated_at)
        return found

    def update_many(self, session_id: str, updates: dict[str, float]) -> dict[str, Snapshot]:
        variables = self._session(session_id).variables
        checked = [
            (variables[name], _validate(value, variables[name].constraints))
            for name, value in updates.items()
        ]  # all validated before anything changes: atomic
        now = time.time()
        result: dict[str, Snapshot] = {}
        for var, number in checked:
            var.value = number
            var.version += 1
            var.updated_at = now
            result[var.name] = (var.name, var.value, var.version, var.updated_at)
        return result

    def list_matching(self, session_id: str, pattern: str) -> list[Snapshot]:
        match = _glob(pattern)
        return [
            (var.name, var.value, var.version, var.updated_at)
            for var in self._session(session_id).variables.values()
            if match(var.name)
        ]


class NaiveBackend:
    """:class:`NaiveState` behind one ``asyncio.Lock``."""

    name = "naive"

    def __init__(self) -> None:
        self._state = NaiveState()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._state = NaiveState()
        self._lock = asyncio.Lock()

    async def stop(self) -> None:
        pass

    async def create_session(self, session_id: str) -> None:
        async with self._lock:
            self._state.create_session(session_id)

    async def delete_session(self, session_id: str) -> None:
        async with self._lock:
            self._state.delete_session(session_id)

    async def register(self, session_id: str, name: str, value: float) -> object:
        async with self._lock:
            return self._state.register(session_id, name, value)

    async def get(self, session_id: str, name: str) -> object:
        async with self._lock:
            return self._state.get(session_id, name)

    async def update(self, session_id: str, name: str, value: float) -> object:
        async with self._lock:
            return self._state.update(session_id, name, value)

    async def get_many(self, session_id: str, names: list[str]) -> object:
        async with self._lock:
            return self._state.get_many(session_id, names)

    async def update_many(self, session_id: str, updates: dict[str, float]) -> object:
        async with self._lock:
            return self._state.update_many(session_id, updates)

    async def list_matching(self, session_id: str, pattern: str) -> object:
        async with self._lock:
            return self._state.list_matching(session_id, pattern)


# redis ----------------------------------------------------------------------


class RedisBackend:
    """Value and version as two Redis keys per variable, one round trip per operation."""

    name = "redis"

    def __init__(self, url: str, name: str = "redis", *, max_connections: int = 1_000) -> None:
        self.name = name
        self._url = url
        # redis-py's pool opens one connection per caller in flight, up to this many
        # (its own default is 100, which 1,000 callers would exceed).
        self._max_connections = max_connections
        self._client: Any = None

    async def start(self) -> None:
        import redis.asyncio

        self._client = redis.asyncio.Redis.from_url(
            self._url, max_connections=self._max_connections
        )
        await self._client.flushdb()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @staticmethod
    def _keys(session_id: str, name: str) -> tuple[str, str]:
        return f"{session_id}:val:{name}", f"{session_id}:ver:{name}"

    async def create_session(self, session_id: str) -> None:
        await self._client.set(f"session:{session_id}", 1)

    async def delete_session(self, session_id: str) -> None:
        keys = [key async for key in self._client.scan_iter(match=f"{session_id}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await self._client.delete(*keys[i : i + 1000])
        await self._client.delete(f"session:{session_id}")

    async def register(self, session_id: str, name: str, value: float) -> object:
        number = check_float(value)
        value_key, version_key = self._keys(session_id, name)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(value_key, repr(number), nx=True)
            pipe.set(version_key, 0, nx=True)
            created, _ = await pipe.execute()
        if not created:
            raise KeyError(f"variable {name!r} exists")
        return (name, number, 0)

    async def get(self, session_id: str, name: str) -> object:
        raw_value, raw_version = await self._client.mget(self._keys(session_id, name))
        return (name, float(raw_value), int(raw_version))

    async def update(self, session_id: str, name: str, value: float) -> object:
        number = check_float(value)
        value_key, version_key = self._keys(session_id, name)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(value_key, repr(number))
            pipe.incr(version_key)
            _, version = await pipe.execute()
        return (name, number, version)

    async def get_many(self, session_id: str, names: list[str]) -> object:
        keys: list[str] = []
        for name in names:
            keys.extend(self._keys(session_id, name))
        raw = await self._client.mget(keys)
        return {
            name: (name, float(raw[2 * i]), int(raw[2 * i + 1]))
            for i, name in enumerate(names)
            if raw[2 * i] is not None
        }

    async def update_many(self, session_id: str, updates: dict[str, float]) -> object:
        checked = [(name, check_float(value)) for name, value in updates.items()]
        async with self._client.pipeline(transaction=True) as pipe:
            for name, number in checked:
                value_key, version_key = self._keys(session_id, name)
                pipe.set(value_key, repr(number))
                pipe.incr(version_key)
            replies = await pipe.execute()
        return {
            name: (name, number, replies[2 * i + 1]) for i, (name, number) in enumerate(checked)
        }

    async def list_matching(self, session_id: str, pattern: str) -> object:
        prefix = f"{session_id}:val:"
        value_keys = sorted(await self._client.keys(prefix + pattern))
        if not value_keys:
            return []
        names = [key.decode()[len(prefix) :] for key in value_keys]
        raw = await self._client.mget([k for name in names for k in self._keys(session_id, name)])
        return [(name, float(raw[2 * i]), int(raw[2 * i + 1])) for i, name in enumerate(names)]

    async def bulk_register(self, session_id: str, names: list[str], value: float) -> None:
        """Set-up only: register many variables in one pipeline."""
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                value_key, version_key = self._keys(session_id, name)
                pipe.set(value_key, repr(value))
                pipe.set(version_key, 0)
            await pipe.execute()


# pykka ----------------------------------------------------------------------


class _PykkaStateActor:  # built lazily so importing this module does not need pykka
    cls: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls.cls is None:
            import pykka

            class StateActor(pykka.ThreadingActor):
                def __init__(self) -> None:
                    super().__init__()
                    self.state = NaiveState()

                def on_receive(self, message: Any) -> Any:
                    op, args, reply = message
                    try:
                        result = getattr(self.state, op)(*args)
                    except Exception as exc:
                        if reply is None:
                            raise
                        reply.set_exception(exc)
                        return None
                    if reply is None:
                        return result
                    reply.set_result(result)
                    return None

            cls.cls = StateActor
        return cls.cls


class _LoopReply:
    """Resolves an asyncio future from the actor's thread through ``call_soon_threadsafe``."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.future = future

    def set_result(self, result: Any) -> None:
        self.loop.call_soon_threadsafe(_resolve, self.future, result, None)

    def set_exception(self, error: BaseException) -> None:
        self.loop.call_soon_threadsafe(_resolve, self.future, None, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class PykkaBackend:
    """A pykka ThreadingActor holding :class:`NaiveState`, called from asyncio."""

    name = "pykka"

    def __init__(self, mode: str = "loop") -> None:
        if mode not in ("future", "loop", "executor"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self._ref: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ref = _PykkaStateActor.get().start()

    async def stop(self) -> None:
        if self._ref is not None:
            ref, self._ref = self._ref, None
            await asyncio.get_running_loop().run_in_executor(None, ref.stop)

    async def _call(self, op: str, *args: object) -> Any:
        if self.mode == "future":
            reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._ref.tell((op, args, reply))
            return await asyncio.wrap_future(reply)
        assert self._loop is not None
        if self.mode == "loop":
            future: asyncio.Future[Any] = self._loop.create_future()
            self._ref.tell((op, args, _LoopReply(self._loop, future)))
            return await future
        return await self._loop.run_in_executor(None, self._ref.ask, (op, args, None))

    async def create_session(self, session_id: str) -> None:
        await self._call("create_session", session_id)

    async def delete_session(self, session_id: str) -> None:
        await self._call("delete_session", session_id)

    async def register(self, session_id: str, name: str, value: float) -> object:
        return await self._call("register", session_id, name, value)

    async def get(self, session_id: str, name: str) -> object:
        return await self._call("get", session_id, name)

    async def update(self, session_id: str, name: str, value: float) -> object:
        return await self._call("update", session_id, name, value)

    async def get_many(self, session_id: str, names: list[str]) -> object:
        return await self._call("get_many", session_id, names)

    async def update_many(self, session_id: str, updates: dict[str, float]) -> object:
        return await self._call("update_many", session_id, updates)

    async def list_matching(self, session_id: str, pattern: str) -> object:
        return await self._call("list_matching", session_id, pattern)

    async def bulk_register(self, session_id: str, names: list[str], value: float) -> None:
        """Set-up only: register many variables in one message."""
        await self._call("bulk_register", session_id, names, value)
