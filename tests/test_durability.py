"""A store with a database: nothing acknowledged is lost across a restart, and a
failing disk stops the store instead of losing writes silently."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from sessionactor import (
    InvalidArgument,
    InvalidImport,
    PersistenceError,
    ProgramNotFound,
    SessionNotFound,
    SessionStore,
    StoreClosed,
    Tensor,
    VariableLocked,
)
from sessionactor._persistence import Database
from sessionactor.testing import FakeClock

PROMPT = 10.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite"


def durable(path: Path, **options: Any) -> SessionStore:
    options.setdefault("synchronous", "normal")
    return SessionStore(database=path, **options)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def populate(store: SessionStore) -> dict[str, Any]:
    """A bit of everything a store keeps; returns what to expect after a restart."""
    await store.create_session("s1", ttl=3600, metadata={"owner": "ada", "tags": ["a", "b"]})
    await store.create_session("forever", ttl=math.inf)
    await store.store_worker_session("s1", "worker-7")
    await store.register_variable(
        "s1", "temperature", "float", 0.7, constraints={"min": 0.0, "max": 2.0}
    )
    await store.register_variable("s1", "label", "string", "a\x00b\udc80", description="odd")
    await store.register_variable("s1", "grid", "tensor", {"shape": [2, 2], "data": [1, 2, 3, 4]})
    await store.register_variable("s1", "vec", "embedding", [math.nan, -0.0, math.inf])
    await store.register_variable("s1", "big", "integer", 10**300)
    await store.register_variable("s1", "gone", "integer", 1)
    await store.delete_variable("s1", "gone")
    await store.update_variable("s1", "temperature", 1.5, {"step": 3})
    await store.start_optimization("s1", "label", "opt-1", lease=3600)
    await store.start_optimization("s1", "grid", "opt-2")
    await store.store_program("s1", "prog", {"nested": [1, {"x": (2, 3)}]})
    await store.store_global_program("g", ["shared", 1.5])
    stats = await store.get_stats()
    return {
        "variables": {v.name: v for v in await store.list_variables("s1")},
        "session": await store.get_session("s1"),
        "revision": max(v.revision for v in await store.list_variables("s1")),
        "stats": stats,
    }


async def test_everything_comes_back_after_a_clean_restart(path: Path) -> None:
    async with durable(path) as store:
        expected = await populate(store)
    async with durable(path) as store:
        variables = {v.name: v for v in await store.list_variables("s1")}
        assert variables == expected["variables"]
        assert [v.name for v in await store.list_variables("s1")] == list(expected["variables"])
        for name, variable in variables.items():  # every field, metadata and constraints too
            before = expected["variables"][name]
            assert (variable.optimizer_id, variable.optimization_started_at) == (
                before.optimizer_id,
                before.optimization_started_at,
            )
            assert dict(variable.metadata) == dict(before.metadata)
            assert dict(variable.constraints) == dict(before.constraints)
        assert variables["label"].value == "a\x00b\udc80"
        assert variables["grid"].value == Tensor((2, 2), (1.0, 2.0, 3.0, 4.0))
        vec: Any = variables["vec"].value
        assert math.isnan(vec[0]) and math.copysign(1, vec[1]) == -1 and vec[2] == math.inf
        assert variables["big"].value == 10**300
        session = await store.get_session("s1")
        before_session = expected["session"]
        assert (session.created_at, session.ttl, session.last_worker_id) == (
            before_session.created_at,
            before_session.ttl,
            before_session.last_worker_id,
        )
        assert dict(session.metadata) == {"owner": "ada", "tags": ("a", "b")}
        assert session.program_ids == ("prog",)
        assert session.total_variable_updates == 1
        assert await store.get_program("s1", "prog") == {"nested": [1, {"x": (2, 3)}]}
        assert await store.get_global_program("g") == ["shared", 1.5]
        assert (await store.get_session("forever")).ttl == math.inf
        # locks and their holders survive; the store goes on from its counters
        with pytest.raises(VariableLocked):
            await store.update_variable("s1", "label", "new")
        new = await store.update_variable("s1", "temperature", 0.5)
        assert new.version == 2 and new.revision == expected["revision"] + 1  # no reuse, no gap
        new_id = await store.register_variable("s1", "fresh", "integer", 0)
        ids = [int(v.id.rsplit("_", 1)[1]) for v in variables.values()]
        assert int(new_id.rsplit("_", 1)[1]) > max(ids)
        stats = await store.get_stats()
        assert stats.sessions_created == expected["stats"].sessions_created
        assert stats.current_variables == len(variables) + 1


async def test_the_last_access_comes_back_after_a_clean_stop(path: Path) -> None:
    async with durable(path) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "integer", 0)
        for _ in range(3):
            await store.get_variable("s1", "x")  # reads touch, lazily written
        last = (await store.get_session("s1")).last_accessed
    async with durable(path) as store:
        assert await store.session_exists("s1")  # does not touch
        assert (await store.get_session("s1")).last_accessed >= last


async def test_deadlines_keep_their_remaining_seconds_across_a_restart(path: Path) -> None:
    async with durable(path) as store:
        await store.create_session("short", ttl=2.0)
        await store.create_session("long", ttl=3600.0)
        await store.register_variable("long", "x", "integer", 0)
        await store.start_optimization("long", "x", "opt", lease=2.0)
        await store.store_global_program("g", 1)
    clock = FakeClock()  # a different monotonic clock after the restart
    async with durable(path, clock=clock, global_program_ttl=3600.0) as store:
        assert await store.session_exists("short")
        clock.advance(1.0)
        assert await store.session_exists("short")
        clock.advance(1.5)
        assert not await store.session_exists("short")  # its two seconds ran out
        assert (await store.get_variable("long", "x")).optimizer_id is None  # lease over
        assert await store.get_global_program("g") == 1


async def test_what_expired_while_the_store_was_down_is_gone(path: Path) -> None:
    async with durable(path, global_program_ttl=0.2) as store:
        await store.create_session("short", ttl=0.2)
        await store.register_variable("short", "x", "integer", 0)
        await store.create_session("kept", ttl=3600)
        await store.register_variable("kept", "y", "integer", 0)
        await store.start_optimization("kept", "y", "opt", lease=0.2)
        await store.store_global_program("g", 1)
    await anyio.sleep(0.4)  # wall-clock time passes while no store runs
    async with durable(path) as store:
        assert await store.list_sessions() == ["kept"]
        assert (await store.get_variable("kept", "y")).optimizer_id is None
        with pytest.raises(ProgramNotFound):
            await store.get_global_program("g")
        stats = await store.get_stats()
        assert stats.sessions_expired == 1
    async with durable(path) as store:  # and the database forgot them too
        assert await store.list_sessions() == ["kept"]
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT id FROM sessions").fetchall() == [("kept",)]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not a database at all" * 100, id="garbage"),
        pytest.param(b"SQLite format 3\x00" + b"\x00" * 50, id="truncated"),
    ],
)
async def test_a_file_that_is_no_store_database_is_refused_and_left_as_it_was(
    path: Path, content: bytes
) -> None:
    path.write_bytes(content)  # noqa: ASYNC240 - a few bytes, before any store runs
    before = digest(path)
    with pytest.raises(PersistenceError) as caught:
        async with durable(path):
            pass
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    assert digest(path) == before
    assert not (path.parent / (path.name + "-wal")).exists()


async def test_a_database_of_a_newer_schema_is_refused(path: Path) -> None:
    async with durable(path) as store:
        await store.create_session("s1")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    before = digest(path)
    with pytest.raises(PersistenceError, match=r"store\.sqlite"):
        async with durable(path):
            pass
    assert digest(path) == before


async def test_a_missing_or_empty_file_starts_a_new_database(path: Path) -> None:
    path.write_bytes(b"")  # noqa: ASYNC240 - before any store runs
    async with durable(path) as store:
        assert await store.list_sessions() == []
        await store.create_session("s1")
    async with durable(path) as store:
        assert await store.list_sessions() == ["s1"]


def fail_commits_after(monkeypatch: pytest.MonkeyPatch, good: int, fault: str) -> list[int]:
    """Make the writer's commits fail like the disk would, after ``good`` of them."""
    original = Database._commit
    done: list[int] = []

    def commit(database: Database, turns: list[Any]) -> None:
        if len(done) >= good:
            raise sqlite3.OperationalError(fault)
        original(database, turns)
        done.append(len(turns))

    monkeypatch.setattr(Database, "_commit", commit)
    return done


@pytest.mark.parametrize("fault", ["database or disk is full", "disk I/O error"])
async def test_a_failed_commit_fails_the_store_stop_and_the_database_keeps_what_was_committed(
    path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    async with durable(path) as store:  # a database with something in it
        await store.create_session("s1")
        await store.register_variable("s1", "x", "integer", 0)
    fail_commits_after(monkeypatch, 3, fault)
    acknowledged = 0
    store = durable(path)
    with pytest.raises(PersistenceError) as caught:
        async with store:
            with anyio.fail_after(PROMPT):
                for value in range(1, 1000):
                    await store.update_variable("s1", "x", value)
                    acknowledged = value
    assert fault in str(caught.value) and caught.value.path == str(path)
    assert 0 < acknowledged < 999
    with pytest.raises(PersistenceError):  # every later call gets it too
        await store.get_variable("s1", "x")
    monkeypatch.undo()
    async with durable(path) as reopened:
        variable = await reopened.get_variable("s1", "x")
        assert variable.value == acknowledged  # exactly the last committed state
        assert variable.version == acknowledged


async def test_every_call_of_the_failed_turn_and_after_gets_persistence_error(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with durable(path) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "integer", 0)
    fail_commits_after(monkeypatch, 0, "disk I/O error")
    store = durable(path)
    outcomes: list[object] = []
    with pytest.raises(PersistenceError):
        async with store:

            async def write(value: int) -> None:
                try:
                    outcomes.append(await store.update_variable("s1", "x", value))
                except Exception as error:
                    outcomes.append(error)

            with anyio.fail_after(PROMPT):
                async with anyio.create_task_group() as group:
                    for value in range(200):
                        group.start_soon(write, value)
    assert len(outcomes) == 200
    assert all(isinstance(outcome, PersistenceError) for outcome in outcomes), outcomes[:3]
    monkeypatch.undo()
    async with durable(path) as reopened:
        assert (await reopened.get_variable("s1", "x")).version == 0


async def test_replies_and_watch_events_wait_until_the_turn_is_durable(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Database._commit
    durable_at: list[float] = []

    def slow_commit(database: Database, turns: list[Any]) -> None:
        time.sleep(0.05)
        original(database, turns)
        durable_at.append(time.monotonic())

    async with durable(path) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "integer", 0)
        monkeypatch.setattr(Database, "_commit", slow_commit)
        async with store.watch_variables("s1", include_initial=False) as changes:
            await store.update_variable("s1", "x", 1)
            replied_at = time.monotonic()
            with anyio.fail_after(PROMPT):
                change = await anext(changes)
            seen_at = time.monotonic()
        assert change.new_value == 1
        assert durable_at and durable_at[-1] <= replied_at and durable_at[-1] <= seen_at


async def test_export_and_import_the_whole_store_through_json(path: Path) -> None:
    async with SessionStore() as source:
        expected = await populate(source)
        data = await source.export_store()
    text = json.dumps(data, allow_nan=False)
    async with durable(path) as target:
        assert await target.import_store(json.loads(text)) == 2
        variables = {v.name: v for v in await target.list_variables("s1")}
        assert set(variables) == set(expected["variables"])
        for name, variable in variables.items():
            before = expected["variables"][name]
            assert (variable.id, variable.version, variable.updated_at) == (
                before.id,
                before.version,
                before.updated_at,
            )
        assert variables["label"].value == "a\x00b\udc80"
        assert await target.get_program("s1", "prog") == {"nested": [1, {"x": [2, 3]}]}
        assert await target.get_global_program("g") == ["shared", 1.5]
        assert (await target.get_session("forever")).ttl == math.inf
        session = await target.get_session("s1")
        assert session.last_worker_id == "worker-7"
    async with durable(path) as reopened:  # and it was all made durable
        assert sorted(await reopened.list_sessions()) == ["forever", "s1"]


async def test_a_faulty_store_import_changes_nothing(path: Path) -> None:
    async with SessionStore() as source:
        await populate(source)
        data = await source.export_store()
    broken = json.loads(json.dumps(data, allow_nan=False))
    broken["sessions"].append({"id": "bad", "variables": [{"id": "v", "name": "*", "type": "x"}]})
    async with durable(path) as target:
        await target.create_session("forever")  # a session that exists is a fault too
        with pytest.raises(InvalidImport) as caught:
            await target.import_store(broken)
        assert set(caught.value.errors) == {1, 2}
        assert await target.list_sessions() == ["forever"]
        with pytest.raises(SessionNotFound):
            await target.get_session("s1")


async def test_program_data_that_is_not_json_like_cannot_be_exported() -> None:
    async with SessionStore() as store:
        await store.create_session("s1")
        await store.store_program("s1", "odd", {1, 2, 3})
        with pytest.raises(InvalidArgument, match="odd"):
            await store.export_store()


async def test_backup_while_writing_holds_every_acknowledged_write(path: Path) -> None:
    copy = path.parent / "copy.sqlite"
    async with durable(path) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "integer", 0)
        acknowledged = 0

        async def write() -> None:
            nonlocal acknowledged
            for value in range(1, 100_000):
                await store.update_variable("s1", "x", value)
                acknowledged = value

        async with anyio.create_task_group() as group:
            group.start_soon(write)
            await anyio.sleep(0.05)
            before_backup = acknowledged
            await store.backup(copy)
            group.cancel_scope.cancel()
    async with durable(copy) as restored:
        assert (await restored.get_variable("s1", "x")).version >= before_backup > 0


async def test_a_store_in_memory_has_no_backup() -> None:
    async with SessionStore() as store:
        with pytest.raises(InvalidArgument, match="export_store"):
            await store.backup("/tmp/never.sqlite")


@pytest.mark.parametrize("synchronous", ["full", "normal", "off"])
async def test_every_synchronous_mode_keeps_what_a_clean_stop_wrote(
    path: Path, synchronous: str
) -> None:
    async with SessionStore(database=path, synchronous=synchronous) as store:
        await store.create_session("s1")
        await store.register_variable("s1", "x", "integer", 0)
        await store.update_variable("s1", "x", 5)
    async with durable(path) as store:
        assert (await store.get_variable("s1", "x")).value == 5


@pytest.mark.parametrize(
    ("options", "fault"),
    [
        ({"database": 5}, "database must be a path"),
        ({"database": "x.sqlite", "synchronous": "fast"}, "synchronous"),
    ],
)
def test_bad_durability_options_are_invalid_arguments(options: dict[str, Any], fault: str) -> None:
    with pytest.raises(InvalidArgument, match=fault):
        SessionStore(**options)


async def test_a_store_that_stopped_is_closed_for_calls(path: Path) -> None:
    store = durable(path)
    async with store:
        await store.create_session("s1")
    with pytest.raises(StoreClosed):
        await store.get_session("s1")


async def test_a_store_stopped_before_its_first_turn_closes_its_database(path: Path) -> None:
    """Entered and left at once, the actor's task never ran: the store must still stop
    the writer thread and close the file cleanly."""
    writers_before = {t for t in threading.enumerate() if t.name.startswith("sessionactor-writer")}
    async with durable(path):
        pass
    writers = {t for t in threading.enumerate() if t.name.startswith("sessionactor-writer")}
    assert writers <= writers_before
    database = Database(path)
    try:
        assert database.load().clean_shutdown is True
    finally:
        database.close(clean=False)


def test_the_durable_example_comes_back_after_kill_9() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "durable.py"
    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    killed = re.fullmatch(
        r"killed the child with SIGKILL after (\d+) acknowledged updates", lines[0]
    )
    back = re.fullmatch(r"after kill -9: step (\d+) \(the child had acknowledged (\d+)\)", lines[1])
    assert killed and back, result.stdout
    assert int(back.group(1)) >= int(back.group(2)) == int(killed.group(1)) > 0
    assert lines[-1] == f"imported elsewhere: step {back.group(1)}"
