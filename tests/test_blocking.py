"""``BlockingSessionStore`` (SPEC §8): every store call as a blocking, thread-safe method.

Both forms are covered: the store on its own background loop thread
(``with BlockingSessionStore(...)``) and ``BlockingSessionStore.wrap`` around a
store running in another thread's loop. Errors and timeouts must be the store's
own, raised in the calling thread; calling from the store's loop thread must fail
at once instead of deadlocking. Every wait that could hang is bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
import runpy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import pytest
from conftest import FakeClock, Gate, OpenBlocking, backing, serve_in_thread

from sessionactor import (
    AtomicUpdateError,
    AuthenticationFailed,
    BlockingSessionStore,
    CallTimeout,
    ConnectionLost,
    ConstraintViolation,
    InvalidArgument,
    InvalidImport,
    Mirror,
    ProgramNotFound,
    SessionLimitExceeded,
    SessionNotFound,
    SessionStore,
    StoreClosed,
    ValidationError,
    Variable,
    VariableExists,
    VariableLocked,
    VariableNotFound,
    VersionConflict,
)

SID: Final = "s1"
PROMPT: Final = 5.0  # seconds; anything slower than this is a hang
EXAMPLES: Final = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def blocking(open_blocking: OpenBlocking) -> Iterator[BlockingSessionStore]:
    """Its own store, or (remote kinds) ``BlockingSessionStore.connect`` to a served one."""
    with open_blocking() as store:
        yield store


def in_thread(function: Callable[[], Any]) -> Any:
    """Run ``function`` in a fresh OS thread; return its result or raise its error."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(function).result(timeout=PROMPT)


def public_calls(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(member) or name in {"watch_variables", "mirror"})
    }


def test_every_store_call_has_a_blocking_twin_with_the_same_signature() -> None:
    store_calls = public_calls(SessionStore)
    assert "update_variables" in store_calls and "import_variables" in store_calls
    for name, signature in store_calls.items():
        if name in {"run", "aclose"}:  # lifecycle: `with` and close() stand for them
            continue
        twin = getattr(BlockingSessionStore, name, None)
        assert twin is not None, f"BlockingSessionStore has no {name}()"
        blocking_signature = inspect.signature(twin)
        assert blocking_signature.parameters == signature.parameters, name
        if name not in {"watch_variables", "mirror"}:  # `with` instead of `async with`
            assert blocking_signature.return_annotation == signature.return_annotation, name
        assert not inspect.iscoroutinefunction(twin), name
        assert twin.__doc__, name


def test_the_constructor_takes_the_options_of_session_store() -> None:
    own = inspect.signature(BlockingSessionStore.__init__).parameters
    assert own == inspect.signature(SessionStore.__init__).parameters


def test_every_call_works_from_a_plain_thread(blocking: BlockingSessionStore) -> None:
    def program() -> None:
        s = blocking
        assert s.create_session(SID, ttl=600, metadata={"owner": "t"}).ttl == 600
        assert s.get_session(SID).metadata == {"owner": "t"}
        assert s.update_session(SID, metadata={"k": 1}).metadata == {"owner": "t", "k": 1}
        assert s.session_exists(SID) and not s.session_exists("nope")
        assert s.list_sessions() == [SID]
        s.store_worker_session(SID, "worker-1")
        assert s.get_session(SID).last_worker_id == "worker-1"
        s.store_program(SID, "p", {"steps": [1, 2]})
        assert s.get_program(SID, "p") == {"steps": [1, 2]}
        s.delete_program(SID, "p")
        with pytest.raises(ProgramNotFound):
            s.get_program(SID, "p")
        s.store_global_program("g", [1])
        assert s.get_global_program("g") == [1]
        s.delete_global_program("g")

        var_id = s.register_variable(SID, "t", "float", 0.5, constraints={"min": 0, "max": 1})
        assert var_id.startswith("var_t_")
        assert s.get_variable(SID, var_id).value == 0.5
        assert s.get_variable_value(SID, "t") == 0.5
        assert s.get_variable_value(SID, "missing", "fallback") == "fallback"
        assert s.update_variable(SID, "t", 0.75, {"source": "x"}, expected_version=0).version == 1
        assert [v.name for v in s.list_variables(SID, "t*")] == ["t"]
        assert s.has_variable(SID, "t") and not s.has_variable(SID, "u")
        s.register_variable(SID, "u", "integer", 1)
        batch = s.get_variables(SID, ["t", "u", "zz"])
        assert set(batch.found) == {"t", "u"} and batch.missing == ["zz"]
        result = s.update_variables(SID, {"t": 0.25, "u": 2}, atomic=True)
        assert all(isinstance(v, Variable) for v in result.values())
        exported = s.export_variables(SID)
        assert [e["name"] for e in exported] == ["t", "u"]
        s.create_session("copy")
        assert s.import_variables("copy", exported) == 2
        locked = s.start_optimization(SID, "t", "opt-1", lease=60)
        assert locked.optimizer_id == "opt-1"
        with pytest.raises(VariableLocked):
            s.update_variable(SID, "t", 0.5)
        assert s.end_optimization(SID, "t", "opt-1").optimizer_id is None
        s.delete_variable(SID, "u")
        assert not s.has_variable(SID, "u")
        assert s.get_stats().current_sessions == 2
        assert s.cleanup_expired_sessions() == 0
        s.delete_session("copy")
        assert s.list_sessions() == [SID]

    in_thread(program)


def test_errors_are_the_store_errors_raised_in_the_calling_thread(
    blocking: BlockingSessionStore,
) -> None:
    blocking.create_session(SID)
    blocking.register_variable(SID, "t", "float", 0.5, constraints={"max": 1.0})

    def attempt(call: Callable[[], object]) -> BaseException:
        def run() -> BaseException:
            try:
                call()
            except BaseException as error:
                error.thread = threading.current_thread()  # type: ignore[attr-defined]
                return error
            raise AssertionError("the call did not fail")

        error: BaseException = in_thread(run)
        assert error.thread is not threading.main_thread()  # type: ignore[attr-defined]
        return error

    missing = attempt(lambda: blocking.get_session("nope"))
    assert isinstance(missing, SessionNotFound) and isinstance(missing, KeyError)
    assert missing.session_id == "nope"
    assert isinstance(attempt(lambda: blocking.get_variable(SID, "zz")), VariableNotFound)
    above = attempt(lambda: blocking.update_variable(SID, "t", 1.5))
    assert isinstance(above, ConstraintViolation)
    assert str(above) == "value 1.5 is above maximum 1.0"
    assert isinstance(attempt(lambda: blocking.update_variable(SID, "t", "x")), ValidationError)
    assert isinstance(attempt(lambda: blocking.create_session(42)), InvalidArgument)  # type: ignore[arg-type]
    exists = attempt(lambda: blocking.register_variable(SID, "t", "float", 0.1))
    assert isinstance(exists, VariableExists)
    conflict = attempt(lambda: blocking.update_variable(SID, "t", 0.2, expected_version=7))
    assert isinstance(conflict, VersionConflict) and (conflict.expected, conflict.actual) == (7, 0)
    atomic = attempt(lambda: blocking.update_variables(SID, {"t": 0.2, "zz": 1}, atomic=True))
    assert isinstance(atomic, AtomicUpdateError)
    assert set(atomic.errors) == {"zz"} and isinstance(atomic.errors["zz"], VariableNotFound)
    bad_import = attempt(lambda: blocking.import_variables(SID, [{"id": "x"}]))
    assert isinstance(bad_import, InvalidImport) and set(bad_import.errors) == {0}
    assert blocking.get_variable(SID, "t").version == 0  # nothing changed


def test_options_reach_the_store() -> None:
    with pytest.raises(InvalidArgument):
        BlockingSessionStore(call_timeout=-1)
    clock = FakeClock()
    with BlockingSessionStore(max_sessions=1, default_ttl=10, clock=clock) as store:
        store.create_session(SID)
        with pytest.raises(SessionLimitExceeded):
            store.create_session("second")
        clock.advance(11)
        assert not store.session_exists(SID)
        assert store.create_session("second", ttl=math.inf).ttl == math.inf
        clock.advance(1e9)
        assert store.list_sessions() == ["second"]


# --------------------------------------------------------------------------
# Lifecycle of the own-loop form


def test_calls_before_start_and_after_close_raise_store_closed() -> None:
    store = BlockingSessionStore()
    with pytest.raises(StoreClosed):
        store.list_sessions()
    with store:
        assert store.running
        store.create_session(SID)
    assert not store.running
    with pytest.raises(StoreClosed):
        store.list_sessions()
    store.close()  # idempotent
    with pytest.raises(StoreClosed), store:  # it runs once
        pass


def test_a_blocking_store_never_started_says_how_to_start_it() -> None:
    """With blocking calls, not the inner store's advice (``async with SessionStore()``),
    which a blocking caller cannot write."""
    blocking = BlockingSessionStore()
    with pytest.raises(StoreClosed) as closed:
        blocking.create_session(SID)
    assert "with BlockingSessionStore(" in str(closed.value), closed.value
    assert "async with" not in str(closed.value)


@pytest.mark.parametrize("mailbox_size", [None, 2])
def test_close_answers_every_thread_still_calling(mailbox_size: int | None) -> None:
    store = BlockingSessionStore(mailbox_size=mailbox_size, call_timeout=None).start()
    store.create_session(SID)
    store.register_variable(SID, "n", "integer", 0)
    applied: list[int] = []
    endings: list[BaseException] = []
    started = threading.Barrier(9)

    def worker() -> None:
        started.wait()
        try:
            while True:
                applied.append(store.update_variable(SID, "n", 1).version)
        except BaseException as error:
            endings.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    started.wait()
    while len(applied) < 200:  # let them get going
        time.sleep(0.001)
    store.close()
    for thread in threads:
        thread.join(PROMPT)
        assert not thread.is_alive(), "a thread was left waiting"
    assert len(endings) == 8 and all(isinstance(e, StoreClosed) for e in endings), endings
    assert sorted(applied) == list(range(1, len(applied) + 1))  # each applied call answered


# --------------------------------------------------------------------------
# Timeouts and the wrong thread


def test_a_call_waits_at_most_call_timeout_even_when_the_loop_is_blocked() -> None:
    gate = Gate(hold=PROMPT)
    with BlockingSessionStore(types=[gate], call_timeout=0.2) as store:
        store.create_session(SID)
        store.register_variable(SID, "g", "gate", "open")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            try:
                stuck = pool.submit(store.update_variable, SID, "g", "block")
                assert gate.entered.wait(PROMPT)  # the loop is now blocked in a handler
                began = time.monotonic()
                with pytest.raises(CallTimeout) as caught:
                    store.create_session("late")
                waited = time.monotonic() - began
                assert 0.15 <= waited < 2.0
                assert caught.value.operation == "create_session"
                assert caught.value.timeout == 0.2
                assert isinstance(caught.value, TimeoutError)
                with pytest.raises(CallTimeout):
                    stuck.result(PROMPT)
            finally:
                gate.release.set()
        # The loop is free again and serves; the call given up before it started was
        # never run (a call given up after it started may still be applied).
        assert not store.session_exists("late")
        assert store.get_variable(SID, "g").value in {"open", "block"}
        assert store.update_variable(SID, "g", "next").value == "next"


def test_calling_from_the_stores_own_loop_thread_raises_instead_of_deadlocking(
    blocking: BlockingSessionStore,
) -> None:
    loop = blocking.loop
    assert loop is not None
    outcome: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()

    def from_the_loop() -> None:
        try:
            blocking.list_sessions()
        except BaseException as error:
            outcome.set_result(error)
        else:
            outcome.set_result(None)

    loop.call_soon_threadsafe(from_the_loop)
    error = outcome.result(PROMPT)
    assert isinstance(error, RuntimeError)
    assert "own event loop thread" in str(error)
    assert blocking.list_sessions() == []  # and the store is fine


# --------------------------------------------------------------------------
# The wrapper form: a store running in another thread's loop


@pytest.mark.local_only  # wrap() takes an in-process SessionStore; connect() is the remote twin
async def test_wrap_gives_threads_a_store_running_in_this_loop(store: SessionStore) -> None:
    blocking = BlockingSessionStore.wrap(store)
    assert blocking.store is store
    assert blocking.loop is asyncio.get_running_loop()
    await store.create_session(SID)
    await store.register_variable(SID, "n", "integer", 0)

    def worker(count: int) -> int:
        version = 0
        for _ in range(count):
            version = blocking.update_variable(SID, "n", count).version
        return version

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(anyio.to_thread.run_sync, worker, 25)
    assert (await store.get_variable(SID, "n")).version == 100

    with pytest.raises(RuntimeError, match="own event loop thread"):  # never deadlocks
        blocking.get_session(SID)
    blocking.close()  # the wrapper does not own the store
    with blocking:
        pass
    assert store.running
    assert (await store.get_session(SID)).id == SID


def test_wrap_a_store_running_in_another_thread() -> None:
    store = SessionStore()
    loop = asyncio.new_event_loop()
    with pytest.raises(StoreClosed):  # not started, and no loop given
        BlockingSessionStore.wrap(store)
    blocking = BlockingSessionStore.wrap(store, loop)  # the loop it is about to run in
    with pytest.raises(StoreClosed):
        blocking.list_sessions()  # the loop runs, but the store has not started

    stop = asyncio.Event()

    async def serve() -> None:
        async with store:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        deadline = time.monotonic() + PROMPT
        while not store.running:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        blocking.create_session(SID)
        assert BlockingSessionStore.wrap(store).list_sessions() == [SID]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(PROMPT)
        loop.close()
    with pytest.raises(StoreClosed):  # the store stopped and its loop closed
        blocking.list_sessions()


def test_the_threads_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "threads.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "trials: 100 (version 100; expected 100)" in out
    assert "the store refused a bad score" in out


def test_a_threads_open_span_parents_the_store_span() -> None:
    from sessionactor.testing import capture_telemetry

    with capture_telemetry() as telemetry:
        tracer = telemetry.tracer_provider.get_tracer("test")
        with BlockingSessionStore(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        ) as store:

            def work() -> None:
                with tracer.start_as_current_span("thread work"):
                    store.create_session("s1")

            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        outer = telemetry.span("thread work")
        inner = telemetry.span("sessionactor.create_session")
        assert inner.parent is not None
        assert inner.parent.span_id == outer.context.span_id


# --------------------------------------------------------------------------
# BlockingSessionStore.connect: a served store, for threads


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_connect_to_nothing_raises_connection_lost_on_entering(kind: str, tmp_path: Path) -> None:
    address = "tcp://127.0.0.1:1" if kind == "tcp" else f"unix:{tmp_path / 'nobody.sock'}"
    store = BlockingSessionStore.connect(address)
    with pytest.raises(ConnectionLost) as caught, store:
        pytest.fail("entered a store that cannot be reached")
    assert "cannot reach the session store at" in str(caught.value)
    with pytest.raises(StoreClosed):  # it runs once, like every BlockingSessionStore
        store.list_sessions()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_connect_with_a_wrong_token_raises_authentication_failed_on_entering(kind: str) -> None:
    with (
        BlockingSessionStore() as served,
        serve_in_thread(served, kind, token="right") as server,
    ):
        with (
            pytest.raises(AuthenticationFailed),
            BlockingSessionStore.connect(server.addresses[0], token="wrong"),
        ):
            pytest.fail("entered with a wrong token")
        with BlockingSessionStore.connect(server.addresses[0], token="right") as store:
            assert store.create_session(SID).id == SID
        assert served.session_exists(SID)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_connected_store_runs_between_entering_and_leaving(kind: str) -> None:
    with BlockingSessionStore() as served, serve_in_thread(served, kind) as server:
        store = BlockingSessionStore.connect(server.addresses[0])
        assert not store.running
        with pytest.raises(StoreClosed, match="not started"):
            store.list_sessions()
        with store:
            assert store.running
            assert store.list_sessions() == []
        assert not store.running
        with pytest.raises(StoreClosed):
            store.list_sessions()
        assert served.running  # closing a client stops nothing on the server


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_connected_store_cannot_back_up_the_servers_database(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "copy.sqlite"
    with (
        BlockingSessionStore(database=tmp_path / "store.sqlite") as served,
        serve_in_thread(served, kind) as server,
        BlockingSessionStore.connect(server.addresses[0]) as store,
    ):
        with pytest.raises(InvalidArgument, match="where the server runs"):
            store.backup(target)
        assert not target.exists()
        served.backup(target)  # where the store runs, it can
    assert target.exists()


def test_connect_refuses_bad_options_at_once() -> None:
    with pytest.raises(InvalidArgument):
        BlockingSessionStore.connect("http://example.com")
    with pytest.raises(InvalidArgument):
        BlockingSessionStore.connect("tcp://127.0.0.1:7420", call_timeout=0)
    with pytest.raises(InvalidArgument):
        BlockingSessionStore.connect("tcp://127.0.0.1:7420", token=b"secret")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_connect_serves_calls_from_many_threads_at_once(kind: str) -> None:
    """Eight threads share one connection: every compare-and-swap increment lands once."""
    with (
        BlockingSessionStore() as served,
        serve_in_thread(served, kind) as server,
        BlockingSessionStore.connect(server.addresses[0]) as store,
    ):
        store.create_session(SID)
        store.register_variable(SID, "n", "integer", 0)

        def increment(times: int) -> None:
            done = 0
            while done < times:
                current = store.get_variable(SID, "n")
                value = current.value
                assert isinstance(value, int)
                try:
                    store.update_variable(SID, "n", value + 1, expected_version=current.version)
                except VersionConflict:
                    continue  # another thread moved it on: read again
                done += 1

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = [pool.submit(increment, 25) for _ in range(8)]
            for result in results:
                result.result(timeout=PROMPT * 6)
        final = store.get_variable(SID, "n")
        assert (final.value, final.version) == (200, 200)
        assert served.get_variable(SID, "n").value == 200  # the served store, not a copy


def test_a_blocking_mirror_reads_every_write_of_its_store_from_every_thread(
    blocking: BlockingSessionStore,
) -> None:
    """Read-your-writes from threads: when a write returns in a thread, that thread reads
    it (or a later version) in the mirror, without a call."""
    blocking.create_session(SID)
    names = [f"n{i}" for i in range(4)]
    for name in names:
        blocking.register_variable(SID, name, "integer", 0)
    failures: list[str] = []

    with blocking.mirror(SID) as mirror:
        assert isinstance(mirror, Mirror)
        assert sorted(mirror) == names

        def writer(name: str) -> None:
            for value in range(1, 51):
                written = blocking.update_variable(SID, name, value)
                seen = mirror[name]
                if seen.version < written.version:
                    failures.append(f"{name}: wrote version {written.version}, read {seen}")
                copy = mirror.copy()  # atomic: safe while the loop thread applies changes
                if len(copy) != len(names):
                    failures.append(f"a copy holds {sorted(copy)}")

        threads = [threading.Thread(target=writer, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROMPT * 6)
            assert not thread.is_alive(), "a writer hung"
        assert not failures, failures[:5]
        assert {name: mirror[name].value for name in names} == dict.fromkeys(names, 50)
        assert mirror.revision == max(v.revision for v in blocking.list_variables(SID))
        with pytest.raises(TypeError):
            mirror["n0"] = mirror["n1"]
        blocking.delete_session(SID)
        deadline = time.monotonic() + PROMPT
        while not mirror.closed:  # session_closed is applied by the loop thread
            assert time.monotonic() < deadline, "the mirror never ended"
            time.sleep(0.001)
        assert len(mirror) == 0 and mirror.error is None
    with pytest.raises(SessionNotFound), blocking.mirror("missing"):
        pytest.fail("entered a mirror of a missing session")


def test_leaving_a_blocking_mirror_ends_its_watch(blocking: BlockingSessionStore) -> None:
    blocking.create_session(SID)
    blocking.register_variable(SID, "x", "integer", 0)
    with blocking.mirror(SID, pattern="x") as mirror:
        assert backing(blocking)._state.watched == {SID: 1}  # the served store's, if remote
    assert mirror.closed and len(mirror) == 0
    deadline = time.monotonic() + PROMPT
    while backing(blocking)._state.watched:  # the unsubscription travels to the actor
        assert time.monotonic() < deadline, "the mirror's watch was left behind"
        time.sleep(0.001)


# --------------------------------------------------------------------------
# Misuse says what to write


def test_misusing_a_blocking_watch_says_what_to_write() -> None:
    with BlockingSessionStore() as blocking:
        blocking.create_session(SID)
        with pytest.raises(TypeError, match=r"with store\.watch_variables\("):
            for _ in blocking.watch_variables(SID):
                pass
        with pytest.raises(TypeError, match=r"with store\.mirror\("):
            for _ in blocking.mirror(SID):
                pass

        async def in_async_code() -> None:
            async with blocking.watch_variables(SID):
                pass

        with pytest.raises(TypeError, match=r"with store\.watch_variables|SessionStore"):
            asyncio.run(in_async_code())

        async def store_in_async_code() -> None:
            async with BlockingSessionStore():
                pass

        with pytest.raises(TypeError, match=r"async with SessionStore\(\)"):
            asyncio.run(store_in_async_code())
        assert backing(blocking)._watchers == {}


def test_a_connected_blocking_store_in_async_code_says_to_connect() -> None:
    async def in_async_code() -> None:
        async with BlockingSessionStore.connect("unix:/nonexistent/store.sock"):
            pass

    with pytest.raises(TypeError, match=r"async with connect\("):
        asyncio.run(in_async_code())
