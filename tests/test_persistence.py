"""The SQLite persistence layer (``sessionactor._persistence``), driven directly.

Plain synchronous tests: records go in through ``Database.submit``, the writer
thread commits them, and a fresh ``Database`` on the same file loads them back.
Nothing here needs an event loop. Every wait is bounded; none sleeps.

Values are compared with :func:`same`, which tells ``1`` from ``1.0`` and
``True``, ``-0.0`` from ``0.0``, a list from a tuple, and takes NaN as equal to
itself; what was loaded must also be in frozen form (read-only mappings, tuples).
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionactor import _persistence as persistence
from sessionactor._frozen import FrozenMap, freeze_mapping
from sessionactor._journal import (
    Counters,
    GlobalProgramRemoved,
    GlobalProgramWritten,
    ProgramRemoved,
    ProgramWritten,
    Record,
    SessionRemoved,
    SessionRow,
    SessionTouched,
    SessionWritten,
    Turn,
    VariableRemoved,
    VariableWritten,
)
from sessionactor._persistence import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Database,
    Loaded,
    _Batch,
)
from sessionactor.errors import InvalidArgument, PersistenceError
from sessionactor.model import Variable
from sessionactor.types import Tensor, TypeRegistry

WAIT = 10.0  # seconds: the bound on every wait for the writer

# ---------------------------------------------------------------------------
# Helpers


def same(original: object, loaded: object) -> bool:
    """Whether ``loaded`` is exactly ``original``, in frozen form.

    Any mapping may go in; a read-only ``FrozenMap`` with the same items in the same
    order must come out. Floats compare by value and sign, NaN equal to
    NaN; every other value must have the very same type.
    """
    if isinstance(original, Mapping):
        return (
            type(loaded) is FrozenMap
            and list(original) == list(loaded)
            and all(same(original[key], loaded[key]) for key in original)
        )
    if type(original) is not type(loaded):
        return False
    if isinstance(original, float) and isinstance(loaded, float):
        if math.isnan(original):
            return math.isnan(loaded)
        return original == loaded and math.copysign(1, original) == math.copysign(1, loaded)
    if isinstance(original, tuple) and isinstance(loaded, tuple):
        return len(original) == len(loaded) and all(map(same, original, loaded))
    if attrs.has(type(original)):
        return all(
            same(getattr(original, field.name), getattr(loaded, field.name))
            for field in attrs.fields(cast("type[attrs.AttrsInstance]", type(original)))
        )
    return original == loaded


def counters(n: int) -> Counters:
    """Counters that tell turn ``n`` from every other."""
    return Counters(
        revision=n,
        next_variable_number=n + 1,
        next_position=n + 2,
        sessions_created=n + 3,
        sessions_deleted=n + 4,
        sessions_expired=n + 5,
        cleanup_runs=n + 6,
        commands_processed=n + 7,
    )


def session_row(session_id: str = "s", **changes: Any) -> SessionRow:
    row = SessionRow(
        id=session_id,
        created_at=1000.0,
        last_accessed=1000.0,
        ttl=3600.0,
        expires_at=4600.0,
        metadata=MappingProxyType({"owner": "test"}),
        last_worker_id=None,
        total_variable_updates=0,
    )
    return attrs.evolve(row, **changes)


def float_variable(variable_id: str = "var_x_1", value: object = 1.0, **changes: Any) -> Variable:
    variable = Variable(
        id=variable_id,
        name=variable_id,
        type="float",
        value=value,
        constraints=MappingProxyType({}),
        metadata=MappingProxyType({"source": "python"}),
        version=0,
        created_at=1000.0,
        updated_at=1000.0,
        revision=1,
    )
    return attrs.evolve(variable, **changes)


class Commits:
    """``on_commit``'s calls, recorded from the writer thread.

    ``arm()`` makes the next call block until ``release()``: turns submitted
    meanwhile queue up and go into the next transaction together.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.calls: list[tuple[int, BaseException | None]] = []
        self._armed = False
        self.entered = threading.Event()
        self._released = threading.Event()

    def __call__(self, seq: int, error: BaseException | None) -> None:
        with self._changed:
            self.calls.append((seq, error))
            self._changed.notify_all()
            armed, self._armed = self._armed, False
        if armed:
            self.entered.set()
            assert self._released.wait(WAIT), "the test never released the writer"

    def arm(self) -> None:
        self.entered.clear()
        self._released.clear()
        self._armed = True

    def release(self) -> None:
        self._released.set()

    def wait_until(
        self, condition: Callable[[list[tuple[int, BaseException | None]]], bool]
    ) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: condition(self.calls), WAIT), self.calls

    def failure(self) -> BaseException:
        self.wait_until(lambda calls: any(error is not None for _, error in calls))
        return next(error for _, error in self.calls if error is not None)


@contextmanager
def running(path: Path, **options: object) -> Iterator[tuple[Database, Commits]]:
    """A started database on ``path``, closed cleanly afterwards."""
    database = Database(path, **options)  # type: ignore[arg-type]
    commits = Commits()
    database.start(commits)
    try:
        yield database, commits
    finally:
        commits.release()  # never leave the writer blocked in on_commit
        database.close()


def load(path: Path, types: TypeRegistry | None = None) -> Loaded:
    database = Database(path, types=types)
    try:
        return database.load()
    finally:
        database.close(clean=False)  # reading must not change what the file says


def commit(path: Path, *turns: Turn, **options: object) -> None:
    """Commit ``turns`` one transaction each."""
    with running(path, **options) as (database, commits):
        for turn in turns:
            database.submit(turn)
            database.flush(WAIT)
    assert [error for _, error in commits.calls] == [None] * len(turns)


def commit_together(path: Path, *turns: Turn) -> None:
    """Commit ``turns`` all in one transaction (after an empty one)."""
    with running(path) as (database, commits):
        commits.arm()
        database.submit(Turn((), counters(0)))
        assert commits.entered.wait(WAIT)
        for turn in turns:  # the writer is inside on_commit(1): these queue up
            database.submit(turn)
        commits.release()
        database.flush(WAIT)
    assert commits.calls == [(1, None), (len(turns) + 1, None)]


# The folding fixture is set once per test, for all its examples.
FOLDING_PER_TEST = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.fixture(params=["at close", "after every commit", "on open after a crash"])
def folding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """When the log reaches the tables: a commit only appends the turns to the log, and
    a checkpoint folds the log in (at a clean close, when it has grown, or when the
    writer is idle); after a crash, the next open replays what is left. All three
    must give the same tables."""
    if request.param == "after every commit":
        monkeypatch.setattr(persistence, "CHECKPOINT_RECORDS", 1)
    elif request.param == "on open after a crash":
        # The process dies before any checkpoint: the log holds every commit.
        monkeypatch.setattr(Database, "_checkpoint", lambda self: None)
    return str(request.param)


@pytest.fixture(params=["separately", "together"])
def commit_turns(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Commit turns one transaction each, or all in one transaction."""
    if request.param == "separately":
        return commit
    return commit_together


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` with the hash of its bytes."""
    return {
        entry.name: hashlib.sha256(entry.read_bytes()).hexdigest()
        for entry in sorted(directory.iterdir())
        if entry.is_file()
    }


def frozen(data: Mapping[str, object]) -> Mapping[str, object]:
    return freeze_mapping(cast("Mapping[object, object]", data))


# ---------------------------------------------------------------------------
# Strategies: every str (NUL and lone surrogates too), every float, big ints

texts = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["a\udc80\x00", "\ud83d\ude00", "\udfff\ud800", "NaN", "Infinity", "-0.0", "", "\x00"]
)
floats = st.floats()
# Up to 3,900 digits; drawn as a digit count, which takes far less of hypothesis's
# entropy than drawing the digits.
big_ints = st.integers() | st.builds(
    lambda digits, sign: sign * (10**digits - 1), st.integers(1, 3900), st.sampled_from([1, -1])
)
scalars = st.none() | st.booleans() | big_ints | floats | texts
frozen_data = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(texts, inner, max_size=4).map(frozen)
    ),
    max_leaves=8,
)
mappings = st.dictionaries(texts, frozen_data, max_size=3).map(frozen)
int64 = st.integers(min_value=0, max_value=2**63 - 1)


def _tensors(shape: list[int]) -> st.SearchStrategy[Tensor]:
    size = math.prod(shape)
    return st.lists(floats, min_size=size, max_size=size).map(
        lambda data: Tensor(tuple(shape), tuple(data))
    )


VALUES: dict[str, st.SearchStrategy[object]] = {
    "float": floats,
    "integer": big_ints,
    "string": texts,
    "boolean": st.booleans(),
    "choice": texts,
    "module": texts,
    "embedding": st.lists(floats, max_size=6).map(tuple),
    "tensor": st.lists(st.integers(0, 3), max_size=3).flatmap(_tensors),
}


def _variables_of(type_name: str) -> st.SearchStrategy[Variable]:
    return st.builds(
        Variable,
        id=texts,
        name=texts,
        type=st.just(type_name),
        value=VALUES[type_name],
        constraints=mappings,
        metadata=mappings,
        version=int64,
        created_at=floats,
        updated_at=floats,
        revision=int64,
        optimizer_id=st.none() | texts,
        optimization_started_at=st.none() | floats,
    )


variables = st.sampled_from(sorted(VALUES)).flatmap(_variables_of)
session_rows = st.builds(
    SessionRow,
    id=texts,
    created_at=floats,
    last_accessed=floats,
    ttl=floats,
    expires_at=floats,
    metadata=mappings,
    last_worker_id=st.none() | texts,
    total_variable_updates=int64,
)
all_counters = st.builds(Counters, *([int64] * len(attrs.fields(Counters))))

# ---------------------------------------------------------------------------
# Exact round trips


@settings(max_examples=40, suppress_health_check=FOLDING_PER_TEST)
@given(
    rows=st.lists(session_rows, min_size=1, max_size=4, unique_by=lambda row: row.id),
    program_ids=st.lists(texts, max_size=3, unique=True),
    data=st.binary(max_size=32),
    global_programs=st.lists(
        st.builds(
            GlobalProgramWritten, program_id=texts, data=st.binary(max_size=32), expires_at=floats
        ),
        max_size=3,
        unique_by=lambda program: program.program_id,
    ),
    final=all_counters,
)
def test_sessions_programs_and_counters_come_back_exactly(
    folding: str,
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[SessionRow],
    program_ids: list[str],
    data: bytes,
    global_programs: list[GlobalProgramWritten],
    final: Counters,
) -> None:
    path = tmp_path_factory.mktemp("sessions") / "store.sqlite"
    programs = [
        ProgramWritten(row.id, program_id, data) for row in rows for program_id in program_ids
    ]
    records: list[Record] = [SessionWritten(row) for row in rows]
    commit(path, Turn((*records, *programs, *global_programs), final), synchronous="off")

    loaded = load(path)
    assert same(tuple(rows), loaded.sessions)
    assert same(tuple(programs), loaded.programs)
    assert same(tuple(global_programs), loaded.global_programs)
    assert same(final, loaded.counters)
    assert dict(loaded.variables) == {row.id: () for row in rows}


@settings(max_examples=60, suppress_health_check=FOLDING_PER_TEST)
@given(
    row=session_rows,
    written=st.lists(
        st.tuples(variables, st.none() | floats), max_size=5, unique_by=lambda pair: pair[0].id
    ),
)
def test_variables_of_every_type_come_back_exactly(
    folding: str,
    tmp_path_factory: pytest.TempPathFactory,
    row: SessionRow,
    written: list[tuple[Variable, float | None]],
) -> None:
    path = tmp_path_factory.mktemp("variables") / "store.sqlite"
    records = tuple(
        VariableWritten(row.id, variable, position, lease)
        for position, (variable, lease) in enumerate(written, start=1)
    )
    commit(path, Turn((SessionWritten(row), *records), counters(1)), synchronous="off")

    assert same(records, load(path).variables[row.id])


@pytest.mark.parametrize("type_name", sorted(VALUES))
def test_each_builtin_type_is_covered_by_the_round_trip(
    type_name: str, folding: str, tmp_path: Path
) -> None:
    # A fixed example per type, so a type never escapes the property test by chance.
    value = {
        "float": -0.0,
        "integer": -(10**3800),
        "string": "NaN\udc80\x00",
        "boolean": False,
        "choice": "Infinity",
        "module": "os.path",
        "embedding": (math.nan, -math.inf, -0.0),
        "tensor": Tensor((2, 1), (math.inf, 5e-324)),
    }[type_name]
    variable = float_variable("var_v_1", type=type_name, value=value)
    record = VariableWritten("s", variable, 1, math.inf)
    commit(tmp_path / "store.sqlite", Turn((SessionWritten(session_row()), record), counters(1)))

    assert same((record,), load(tmp_path / "store.sqlite").variables["s"])


class LazyMapping(Mapping[str, object]):
    """Metadata that is not a dict, like an updated variable's lazily merged view."""

    def __init__(self, base: Mapping[str, object], **extra: object) -> None:
        self._items = {**base, **extra}

    def __getitem__(self, key: str) -> object:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def test_metadata_may_be_any_mapping_and_comes_back_frozen(tmp_path: Path) -> None:
    metadata = LazyMapping({"nested": {"list": [1, "NaN", math.nan]}}, source="python")
    variable = float_variable(metadata=metadata, constraints=LazyMapping({}, max=2.0))
    record = VariableWritten("s", variable, 1, None)
    commit(tmp_path / "store.sqlite", Turn((SessionWritten(session_row()), record), counters(1)))

    loaded = load(tmp_path / "store.sqlite").variables["s"][0].variable
    assert same(frozen(metadata), loaded.metadata)
    nested = loaded.metadata["nested"]
    assert isinstance(nested, FrozenMap)
    assert nested["list"][1] == "NaN"  # type: ignore[index]
    assert same(MappingProxyType({"max": 2.0}), loaded.constraints)


class PointType:
    """A custom type whose stored form is not JSON: a tuple, as a JSON object."""

    name = "point"

    def validate(self, value: object) -> object:
        if not (isinstance(value, tuple) and len(value) == 2):
            raise TypeError(f"not a point: {value!r}")
        return value

    def validate_constraints(self, constraints: Mapping[str, object]) -> None:
        return None

    def check(self, value: object, constraints: Mapping[str, object]) -> None:
        return None

    def to_json(self, value: object) -> object:
        x, y = cast("tuple[object, object]", value)
        return {"x": x, "y": y}

    def from_json(self, data: object) -> object:
        point: dict[str, object] = data  # type: ignore[assignment]
        return (point["x"], point["y"])


def test_a_custom_type_round_trips_through_its_own_json(tmp_path: Path) -> None:
    types = TypeRegistry([PointType()])
    variable = float_variable(type="point", value=(1, -0.0))
    record = VariableWritten("s", variable, 1, None)
    commit(
        tmp_path / "store.sqlite",
        Turn((SessionWritten(session_row()), record), counters(1)),
        types=types,
    )

    assert same((record,), load(tmp_path / "store.sqlite", types).variables["s"])
    with pytest.raises(PersistenceError, match="point") as caught:
        load(tmp_path / "store.sqlite")  # the default registry does not know the type
    assert caught.value.path == str(tmp_path / "store.sqlite")


def test_a_variable_of_an_unknown_type_fails_the_commit_and_nothing_of_it_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    with running(path) as (database, commits):
        database.submit(Turn((SessionWritten(session_row()),), counters(1)))
        database.flush(WAIT)
        bad = VariableWritten("s", float_variable(type="point", value=(1, 2)), 1, None)
        database.submit(Turn((bad,), counters(2)))
        failure = commits.failure()

    assert isinstance(failure, PersistenceError)
    assert "point" in str(failure)
    assert commits.calls == [(1, None), (1, failure)]
    loaded = load(path)
    assert loaded.counters == counters(1)
    assert loaded.variables["s"] == ()


# ---------------------------------------------------------------------------
# Order within a turn, group commit, coalescing


def test_a_session_removed_and_created_again_in_one_turn_is_the_new_one(
    tmp_path: Path, commit_turns: Callable[..., None]
) -> None:
    path = tmp_path / "store.sqlite"
    old = session_row(metadata=MappingProxyType({"generation": 1}))
    new = session_row(metadata=MappingProxyType({"generation": 2}))
    commit_turns(
        path,
        Turn(
            (
                SessionWritten(old),
                VariableWritten("s", float_variable(), 1, None),
                ProgramWritten("s", "p", b"old"),
            ),
            counters(1),
        ),
        Turn(
            (
                VariableWritten("s", float_variable(value=2.0, version=1), 1, None),
                SessionRemoved("s"),
                SessionWritten(new),
                ProgramWritten("s", "q", b"new"),
            ),
            counters(2),
        ),
    )

    loaded = load(path)
    assert same((new,), loaded.sessions)
    assert loaded.variables["s"] == ()
    assert loaded.programs == (ProgramWritten("s", "q", b"new"),)
    assert loaded.counters == counters(2)


def test_a_variable_removed_and_registered_again_takes_its_new_position(
    tmp_path: Path, commit_turns: Callable[..., None]
) -> None:
    path = tmp_path / "store.sqlite"
    first, second = float_variable("var_a_1"), float_variable("var_b_2")
    commit_turns(
        path,
        Turn(
            (
                SessionWritten(session_row()),
                VariableWritten("s", first, 1, None),
                VariableWritten("s", second, 2, None),
            ),
            counters(1),
        ),
        Turn(
            (
                VariableWritten("s", attrs.evolve(first, version=1), 1, None),
                VariableRemoved("s", "var_a_1"),
                VariableWritten("s", attrs.evolve(first, value=9.0), 3, None),
            ),
            counters(2),
        ),
    )

    loaded = load(path).variables["s"]
    assert [(record.variable.id, record.position) for record in loaded] == [
        ("var_b_2", 2),
        ("var_a_1", 3),
    ]
    assert loaded[1].variable.value == 9.0


def test_an_update_keeps_the_position_the_variable_was_registered_with(
    tmp_path: Path, commit_turns: Callable[..., None]
) -> None:
    path = tmp_path / "store.sqlite"
    variable = float_variable()
    commit_turns(
        path,
        Turn((SessionWritten(session_row()), VariableWritten("s", variable, 7, None)), counters(1)),
        Turn((VariableWritten("s", attrs.evolve(variable, version=1), 99, None),), counters(2)),
    )

    (record,) = load(path).variables["s"]
    assert (record.position, record.variable.version) == (7, 1)


def test_turns_queued_during_a_commit_share_one_transaction_and_one_report(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    with running(path, synchronous="normal") as (database, commits):
        commits.arm()
        first = database.submit(
            Turn(
                (SessionWritten(session_row()), VariableWritten("s", float_variable(), 1, None)),
                counters(1),
            )
        )
        assert commits.entered.wait(WAIT)
        # The writer is inside on_commit(1): everything below queues up.
        seqs = [
            database.submit(
                Turn(
                    (
                        VariableWritten("s", float_variable(value=float(n), version=n), 1, None),
                        SessionTouched("s", 1000.0 + n, 4600.0 + n, n),
                    ),
                    counters(n + 1),
                )
            )
            for n in range(1, 501)
        ]
        commits.release()
        database.flush(WAIT)

    assert (first, seqs) == (1, list(range(2, 502)))
    assert commits.calls == [(1, None), (501, None)]
    loaded = load(path)
    (record,) = loaded.variables["s"]
    assert (record.variable.value, record.variable.version) == (500.0, 500)
    session = loaded.sessions[0]
    assert (session.last_accessed, session.expires_at) == (1500.0, 5100.0)
    assert session.total_variable_updates == 500
    assert loaded.counters == counters(501)


def test_a_batch_writes_only_the_last_state_of_each_thing() -> None:
    batch = _Batch()
    batch.add(
        Turn((SessionWritten(session_row("s")), SessionWritten(session_row("t"))), counters(1))
    )
    for n in range(1, 101):
        batch.add(
            Turn(
                (
                    VariableWritten("s", float_variable(value=float(n), version=n), 1, None),
                    SessionTouched("s", 1000.0 + n, 4600.0 + n, n),
                    ProgramWritten("t", "p", b"%d" % n),
                ),
                counters(n + 1),
            )
        )
    batch.add(Turn((SessionRemoved("t"), GlobalProgramWritten("g", b"", 1.0)), counters(102)))

    statements = dict(batch.statements(TypeRegistry().by_name()))
    assert statements.keys() == {
        "DELETE FROM sessions WHERE id = ?",
        *(sql for sql in statements if sql.startswith(("INSERT", "UPDATE"))),
    }
    sessions = next(
        rows for sql, rows in statements.items() if sql.startswith("INSERT INTO sessions")
    )
    variables = next(
        rows for sql, rows in statements.items() if sql.startswith("INSERT INTO variables")
    )
    touches = next(rows for sql, rows in statements.items() if sql.startswith("UPDATE sessions"))
    meta = next(rows for sql, rows in statements.items() if sql.startswith("UPDATE meta"))
    assert [row[0] for row in sessions] == ["s"]  # "t" is only deleted
    assert [(row[5], row[8]) for row in variables] == [("100.0", 100)]
    assert touches == [(1100.0, 4700.0, 100, "s")]
    assert statements["DELETE FROM sessions WHERE id = ?"] == [("t",)]
    assert not any(sql.startswith("INSERT INTO programs") for sql in statements)
    assert meta == [attrs.astuple(counters(102))]
    assert batch.turns == 102


# A model of what the records mean: dicts, replayed in order.

session_ids = st.sampled_from(["a", "b\udc80\x00"])
variable_ids = st.sampled_from(["v1", "v\x00"])
program_ids = st.sampled_from(["p", "q\udc80"])
operations = st.one_of(
    st.tuples(st.just("session"), session_ids, st.integers(0, 9)),
    st.tuples(st.just("touch"), session_ids, floats),
    st.tuples(st.just("remove session"), session_ids),
    st.tuples(st.just("variable"), session_ids, variable_ids, floats),
    st.tuples(st.just("remove variable"), session_ids, variable_ids),
    st.tuples(st.just("program"), session_ids, program_ids, st.binary(max_size=4)),
    st.tuples(st.just("remove program"), session_ids, program_ids),
    st.tuples(st.just("global"), program_ids, st.binary(max_size=4), floats),
    st.tuples(st.just("remove global"), program_ids),
)


BASE: list[tuple[object, ...]] = [
    ("session", "a", 0),
    ("session", "b\udc80\x00", 0),
    ("variable", "a", "v1", 1.0),
    ("variable", "a", "v\x00", 2.0),
    ("variable", "b\udc80\x00", "v1", 3.0),
    ("program", "a", "p", b"1"),
    ("program", "b\udc80\x00", "q\udc80", b"2"),
    ("global", "p", b"3", 4.0),
]


@attrs.define
class Model:
    """What the database must hold after a sequence of records, as plain dicts."""

    sessions: dict[str, SessionRow] = attrs.Factory(dict)
    variables: dict[str, dict[str, VariableWritten]] = attrs.Factory(dict)
    programs: dict[str, dict[str, bytes]] = attrs.Factory(dict)
    global_programs: dict[str, GlobalProgramWritten] = attrs.Factory(dict)
    position: int = 0

    def record(self, operation: tuple[object, ...]) -> Record | None:
        """Apply one operation; the record it is, or None where the core would emit none."""
        kind, *arguments = operation
        if kind == "session":
            session_id, generation = arguments
            assert isinstance(session_id, str)
            row = session_row(session_id, metadata=MappingProxyType({"generation": generation}))
            self.sessions[session_id] = row
            self.variables.setdefault(session_id, {})
            self.programs.setdefault(session_id, {})
            return SessionWritten(row)
        if kind == "remove global":
            (program_id,) = arguments
            assert isinstance(program_id, str)
            return (
                GlobalProgramRemoved(program_id)
                if self.global_programs.pop(program_id, None)
                else None
            )
        if kind == "global":
            program_id, data, expires_at = arguments
            written = GlobalProgramWritten(program_id, data, expires_at)  # type: ignore[arg-type]
            self.global_programs[written.program_id] = written
            return written
        session_id = arguments[0]
        assert isinstance(session_id, str)
        if session_id not in self.sessions:
            return None  # the core only changes what exists
        if kind == "touch":
            (at,) = arguments[1:]
            assert isinstance(at, float)
            updates = int(at) % 1000 if math.isfinite(at) else 0
            self.sessions[session_id] = attrs.evolve(
                self.sessions[session_id],
                last_accessed=at,
                expires_at=at,
                total_variable_updates=updates,
            )
            return SessionTouched(session_id, at, at, updates)
        if kind == "remove session":
            del self.sessions[session_id], self.variables[session_id], self.programs[session_id]
            return SessionRemoved(session_id)
        if kind == "variable":
            variable_id, value = arguments[1:]
            assert isinstance(variable_id, str) and isinstance(value, float)
            self.position += 1
            written_variables = self.variables[session_id]
            earlier = written_variables.get(variable_id)
            position = self.position if earlier is None else earlier.position
            variable = float_variable(variable_id, value, version=self.position)
            written_variables[variable_id] = VariableWritten(session_id, variable, position, None)
            # The core may pass any position for an update: the stored one stays.
            return VariableWritten(session_id, variable, self.position, None)
        if kind == "remove variable":
            (variable_id,) = arguments[1:]
            assert isinstance(variable_id, str)
            if self.variables[session_id].pop(variable_id, None) is None:
                return None
            return VariableRemoved(session_id, variable_id)
        if kind == "program":
            program_id, data = arguments[1:]
            assert isinstance(program_id, str) and isinstance(data, bytes)
            self.programs[session_id][program_id] = data
            return ProgramWritten(session_id, program_id, data)
        assert kind == "remove program"
        (program_id,) = arguments[1:]
        assert isinstance(program_id, str)
        if self.programs[session_id].pop(program_id, None) is None:
            return None
        return ProgramRemoved(session_id, program_id)

    def check(self, loaded: Loaded) -> None:
        assert same(tuple(self.sessions.values()), loaded.sessions)
        assert loaded.variables.keys() == self.sessions.keys()
        for session_id, written in self.variables.items():
            expected = tuple(sorted(written.values(), key=lambda record: record.position))
            assert same(expected, loaded.variables[session_id])
        for session_id, programs in self.programs.items():
            stored = [(p.program_id, p.data) for p in loaded.programs if p.session_id == session_id]
            assert stored == list(programs.items())
        assert len(loaded.programs) == sum(map(len, self.programs.values()))
        assert same(tuple(self.global_programs.values()), loaded.global_programs)


def turns_of(model: Model, steps: list[tuple[tuple[object, ...], bool]], first: int) -> list[Turn]:
    """The records of ``steps``, cut into turns where a step says so."""
    turns: list[Turn] = []
    records: list[Record] = []
    for operation, ends_turn in steps:
        record = model.record(operation)
        if record is not None:
            records.append(record)
        if ends_turn:
            turns.append(Turn(tuple(records), counters(first + len(turns))))
            records = []
    turns.append(Turn(tuple(records), counters(first + len(turns))))
    return turns


@settings(max_examples=60, suppress_health_check=FOLDING_PER_TEST)
@given(
    committed=st.lists(st.tuples(operations, st.booleans()), max_size=25),
    coalesced=st.lists(st.tuples(operations, st.booleans()), max_size=40),
)
def test_any_records_leave_what_replaying_them_in_order_gives(
    folding: str,
    tmp_path_factory: pytest.TempPathFactory,
    committed: list[tuple[tuple[object, ...], bool]],
    coalesced: list[tuple[tuple[object, ...], bool]],
) -> None:
    path = tmp_path_factory.mktemp("model") / "store.sqlite"
    model = Model()
    # Something to change or remove from the start: removals of what is stored.
    committed = [(operation, True) for operation in BASE] + committed
    first_turns = turns_of(model, committed, 1)
    later_turns = turns_of(model, coalesced, 1 + len(first_turns))
    with running(path, synchronous="off") as (database, commits):
        for turn in first_turns:  # one turn at a time...
            database.submit(turn)
            database.flush(WAIT)
        commits.arm()
        database.submit(Turn((), counters(0)))
        assert commits.entered.wait(WAIT)
        for turn in later_turns:  # ...then all of these in one transaction
            database.submit(turn)
        commits.release()
        database.flush(WAIT)
    assert commits.calls[-1] == (len(first_turns) + 1 + len(later_turns), None)

    loaded = load(path)
    model.check(loaded)
    assert loaded.counters == later_turns[-1].counters


# ---------------------------------------------------------------------------
# Opening: new, refused, clean shutdown


def test_a_missing_file_starts_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    loaded = load(path)
    assert loaded == Loaded(
        (), MappingProxyType({}), (), (), Counters(0, 0, 0, 0, 0, 0, 0, 0), True
    )
    assert path.stat().st_size > 0


def test_an_empty_file_starts_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.write_bytes(b"")
    commit(path, Turn((SessionWritten(session_row()),), counters(1)))
    assert same((session_row(),), load(path).sessions)


def test_a_file_in_a_missing_directory_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "store.sqlite"
    with pytest.raises(PersistenceError, match="missing") as caught:
        Database(path)
    assert caught.value.path == str(path)
    assert not path.parent.exists()


def _sessionactor_database(path: Path) -> None:
    """A real database with enough rows to span many pages, closed cleanly."""
    rows = [
        session_row(f"session-{n}", metadata=MappingProxyType({"pad": "x" * 200}))
        for n in range(300)
    ]
    commit(path, Turn(tuple(SessionWritten(row) for row in rows), counters(1)))


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _short(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00\x10\x00")


def _truncated(path: Path) -> None:
    _sessionactor_database(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
        connection.execute("INSERT INTO users VALUES ('alice')")
    connection.close()


def _newer(path: Path) -> None:
    _sessionactor_database(path)
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()


def _altered(path: Path) -> None:
    _sessionactor_database(path)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (text TEXT)")
    connection.close()


def _damaged(path: Path) -> None:
    _sessionactor_database(path)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[5 * page : 6 * page] = bytes(range(256)) * (page // 256)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_garbage, "not an SQLite database"),
        (_short, "not an SQLite database"),
        (_truncated, "damaged"),
        (_foreign, "not a sessionactor database.*users"),
        (_newer, f"schema version {SCHEMA_VERSION + 1}, newer"),
        (_altered, "does not have the tables"),
        (_damaged, "damaged"),
    ],
    ids=["garbage", "short", "truncated", "foreign", "newer", "altered", "damaged"],
)
def test_a_file_that_is_not_a_sound_sessionactor_database_is_refused_and_left_as_it_was(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "store.sqlite"
    make(path)
    before = fingerprint(tmp_path)

    with pytest.raises(PersistenceError, match=message) as caught:
        Database(path)

    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    assert fingerprint(tmp_path) == before  # the file byte for byte, and no new files


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PersistenceError, match="not a regular file"):
        Database(tmp_path)


@pytest.mark.parametrize("synchronous", ["full", "normal", "off"])
def test_each_synchronous_mode_is_accepted(tmp_path: Path, synchronous: str) -> None:
    commit(tmp_path / "store.sqlite", Turn((), counters(1)), synchronous=synchronous)
    assert load(tmp_path / "store.sqlite").counters == counters(1)


@pytest.mark.parametrize("synchronous", ["FULL", "extra", "", 2, None])
def test_an_unknown_synchronous_mode_is_an_invalid_argument(
    tmp_path: Path, synchronous: object
) -> None:
    with pytest.raises(InvalidArgument, match="synchronous"):
        Database(tmp_path / "store.sqlite", synchronous=synchronous)  # type: ignore[arg-type]
    assert not (tmp_path / "store.sqlite").exists()


def test_the_last_run_is_clean_only_after_close_clean(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with running(path) as (database, _):
        database.submit(Turn((), counters(1)))
        database.flush(WAIT)
        assert load(path).clean_shutdown is False  # a crash now would be unclean
        database.close(clean=False)
    assert load(path).clean_shutdown is False

    database = Database(path)
    database.close()  # a run that changed nothing, ended cleanly
    assert load(path).clean_shutdown is True

    commit(path, Turn((), counters(2)))
    loaded = load(path)
    assert (loaded.clean_shutdown, loaded.counters) == (True, counters(2))


KILLED_WRITER = """
import os, signal, sys
from types import MappingProxyType
from sessionactor._journal import Counters, SessionRow, SessionWritten, Turn
from sessionactor._persistence import Database

database = Database(sys.argv[1])
database.start(lambda seq, error: None)
row = SessionRow("s", 1.0, 1.0, 10.0, 11.0, MappingProxyType({}), None, 0)
database.submit(Turn((SessionWritten(row),), Counters(1, 0, 0, 1, 0, 0, 0, 1)))
for n in range(2, 201):
    database.submit(Turn((), Counters(n, 0, 0, 1, 0, 0, 0, n)))
database.flush(10)  # turns 1 to 200 are acknowledged
for n in range(201, 5001):
    database.submit(Turn((), Counters(n, 0, 0, 1, 0, 0, 0, n)))  # these may be lost
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_process_loses_nothing_that_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(path)], timeout=60, capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr

    loaded = load(path)
    assert 200 <= loaded.counters.revision <= 5000
    assert [row.id for row in loaded.sessions] == ["s"]
    assert loaded.clean_shutdown is False


def test_the_schema_is_readable_with_plain_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    odd = "odd\udc80\x00"
    commit(
        path,
        Turn(
            (
                SessionWritten(session_row("plain")),
                SessionWritten(session_row(odd)),
                VariableWritten("plain", float_variable(value=math.nan), 1, None),
            ),
            counters(1),
        ),
    )
    connection = sqlite3.connect(path)
    try:
        pragmas = [
            connection.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("user_version", "application_id", "journal_mode")
        ]
        assert pragmas == [SCHEMA_VERSION, APPLICATION_ID, "wal"]
        assert connection.execute(
            "SELECT id, typeof(id) FROM sessions ORDER BY rowid"
        ).fetchall() == [
            ("plain", "text"),
            (odd.encode("utf-8", "surrogatepass"), "blob"),
        ]
        assert connection.execute(
            "SELECT value, json_valid(value), json_valid(metadata), json_valid(constraints)"
            " FROM variables"
        ).fetchall() == [('"NaN"', 1, 1, 1)]
    finally:
        connection.close()


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)


def test_while_the_writer_is_idle_the_tables_catch_up_with_the_log(tmp_path: Path) -> None:
    """A commit appends to the log; an idle writer folds the log into the tables soon
    after, so an operator reading the tables of a running store sees recent state."""
    path = tmp_path / "store.sqlite"
    turns = [
        Turn(
            (
                SessionWritten(session_row()),
                VariableWritten("s", float_variable(value=float(n), version=n), 1, None),
            ),
            counters(n),
        )
        for n in range(1, 4)
    ]
    with running(path) as (database, _):
        for turn in turns:
            database.submit(turn)
        database.flush(WAIT)
        reader = _read_only(path)
        try:
            deadline = time.monotonic() + WAIT
            while reader.execute("SELECT count(*) FROM log").fetchone()[0]:
                assert time.monotonic() < deadline, "the idle writer never folded the log"
                time.sleep(0.01)
            assert reader.execute("SELECT value, version FROM variables").fetchall() == [("3.0", 3)]
            assert reader.execute("SELECT revision FROM meta").fetchone() == (3,)
        finally:
            reader.close()
        assert database.checkpoints >= 1


def test_a_clean_close_leaves_the_log_empty(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    _first_run(path)
    reader = _read_only(path)
    try:
        assert reader.execute("SELECT count(*) FROM log").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM variables").fetchone() == (1,)
    finally:
        reader.close()


def test_a_failed_checkpoint_fails_stop_and_the_log_keeps_every_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite"
    _first_run(path)
    update = VariableWritten("s", float_variable(value=2.0, version=1), 1, None)

    def failing_run(connection: sqlite3.Connection, statements: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(persistence, "CHECKPOINT_RECORDS", 1)  # fold after each commit
    monkeypatch.setattr(persistence, "_run", failing_run)
    with running(path) as (database, commits):
        database.submit(Turn((update,), counters(2)))
        failure = commits.failure()
        assert isinstance(failure, PersistenceError) and "full" in str(failure)
        assert commits.calls[0] == (1, None)  # the commit itself was made durable
        with pytest.raises(PersistenceError, match="full"):
            database.submit(Turn((), counters(3)))
    monkeypatch.undo()

    loaded = load(path)  # replays the log the checkpoint could not fold in
    assert same((update,), loaded.variables["s"])
    assert (loaded.counters, loaded.clean_shutdown) == (counters(2), False)


def test_a_log_entry_that_cannot_be_read_is_refused_and_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite"
    monkeypatch.setattr(Database, "_checkpoint", lambda self: None)  # crash: log kept
    commit(path, Turn((SessionWritten(session_row()),), counters(1)))
    monkeypatch.undo()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("UPDATE log SET statements = x'c1c1'")  # 0xc1: never valid
        connection.commit()
    before = fingerprint(tmp_path)

    with pytest.raises(PersistenceError, match="log entry 1 cannot be read") as refused:
        load(path)
    assert refused.value.path == str(path)
    assert fingerprint(tmp_path) == before


# ---------------------------------------------------------------------------
# Failure: fail stop, and the file keeps the last commit


def _first_run(path: Path) -> Loaded:
    """Commit a session with one variable; return what the file then holds."""
    commit(
        path,
        Turn(
            (SessionWritten(session_row()), VariableWritten("s", float_variable(), 1, None)),
            counters(1),
        ),
    )
    return load(path)


def _check_fail_stop(
    path: Path, database: Database, commits: Commits, last_good: int, cause_text: str
) -> None:
    failure = commits.failure()
    assert isinstance(failure, PersistenceError)
    assert failure.path == str(path) and str(path) in str(failure)
    assert isinstance(failure.__cause__, sqlite3.OperationalError)
    assert cause_text in str(failure.__cause__)
    assert commits.calls[-1] == (last_good, failure)
    with pytest.raises(PersistenceError, match=cause_text) as later:
        database.submit(Turn((), counters(99)))
    assert later.value.__cause__ is failure.__cause__
    with pytest.raises(PersistenceError, match=cause_text):
        database.flush(WAIT)


def test_a_full_disk_fails_stop_and_the_file_keeps_the_last_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.sqlite"
    _first_run(path)
    connect = sqlite3.connect

    def full_disk(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = connect(*args, **kwargs)
        connection.execute("PRAGMA max_page_count = 1")  # no more pages than the file has
        return connection

    monkeypatch.setattr(sqlite3, "connect", full_disk)
    update = VariableWritten("s", float_variable(value=2.0, version=1), 1, None)
    huge = VariableWritten(
        "s", float_variable("var_big_2", type="string", value="x" * 200_000), 2, None
    )
    with running(path) as (database, commits):
        database.submit(Turn((update,), counters(2)))  # fits in the pages there are
        database.flush(WAIT)
        database.submit(Turn((huge,), counters(3)))
        _check_fail_stop(path, database, commits, 1, "full")
    monkeypatch.undo()

    loaded = load(path)
    assert same((update,), loaded.variables["s"])
    assert (loaded.counters, loaded.clean_shutdown) == (counters(2), False)


@pytest.mark.skipif(
    not hasattr(signal, "SIGXFSZ") or signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN,
    reason="needs RLIMIT_FSIZE with SIGXFSZ ignored (as CPython does on POSIX)",
)
def test_an_io_error_fails_stop_and_the_file_keeps_the_last_commit(tmp_path: Path) -> None:
    import resource

    path = tmp_path / "store.sqlite"
    _first_run(path)
    update = VariableWritten("s", float_variable(value=2.0, version=1), 1, None)
    with running(path) as (database, commits):
        database.submit(Turn((update,), counters(2)))
        database.flush(WAIT)
        # The kernel refuses to grow any file of this process past the log's size
        # (EFBIG): SQLite's write fails as on a failing disk, "disk I/O error".
        limit = os.path.getsize(f"{path}-wal")
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            database.submit(
                Turn(
                    (VariableWritten("s", float_variable(value=3.0, version=2), 1, None),),
                    counters(3),
                )
            )
            commits.failure()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        _check_fail_stop(path, database, commits, 1, "disk I/O error")

    loaded = load(path)
    assert same((update,), loaded.variables["s"])
    assert (loaded.counters, loaded.clean_shutdown) == (counters(2), False)


# ---------------------------------------------------------------------------
# Backup


def test_a_backup_taken_under_load_holds_every_turn_committed_before_it(tmp_path: Path) -> None:
    path, copy = tmp_path / "store.sqlite", tmp_path / "copy.sqlite"
    stop = threading.Event()
    with running(path, synchronous="off") as (database, commits):
        database.submit(Turn((SessionWritten(session_row()),), counters(0)))

        def produce() -> None:
            for n in range(1, 1_000_000):
                if stop.is_set():
                    return
                variable = float_variable(value=float(n), version=n)
                database.submit(Turn((VariableWritten("s", variable, 1, None),), counters(n)))
                if n % 20 == 0:
                    database.flush(WAIT)  # keeps the queue short: the writer stays busy

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            commits.wait_until(lambda calls: bool(calls) and calls[-1][0] >= 100)
            durable = commits.calls[-1][0]
            database.backup(copy)
            # The writer carries on after the backup, without a failure.
            commits.wait_until(lambda calls: calls[-1][0] > durable + 100)
        finally:
            stop.set()
            producer.join(WAIT)
        assert not producer.is_alive()

    loaded = load(copy)
    assert durable - 1 <= loaded.counters.revision  # turn n carries counters(n - 1)
    (record,) = loaded.variables["s"]
    # One snapshot: the variable is the one of the turn whose counters were kept.
    assert record.variable.version == loaded.counters.revision
    assert all(error is None for _, error in commits.calls)


def test_a_backup_replaces_its_target_whole_and_refuses_the_database_itself(tmp_path: Path) -> None:
    path, copy = tmp_path / "store.sqlite", tmp_path / "copy.sqlite"
    copy.write_bytes(b"an old file that is not a database")
    with running(path) as (database, _):
        database.submit(Turn((SessionWritten(session_row()),), counters(1)))
        database.flush(WAIT)
        database.backup(copy)
        with pytest.raises(PersistenceError, match="onto itself"):
            database.backup(path)
        with pytest.raises(PersistenceError, match="cannot back up") as caught:
            database.backup(tmp_path / "missing" / "copy.sqlite")
        assert caught.value.path == str(path)

    assert same((session_row(),), load(copy).sessions)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["copy.sqlite", "store.sqlite"]


# ---------------------------------------------------------------------------
# The life cycle


def test_calls_out_of_order_are_refused(tmp_path: Path) -> None:
    database = Database(tmp_path / "store.sqlite")
    with pytest.raises(PersistenceError, match="not started"):
        database.submit(Turn((), counters(1)))
    with pytest.raises(InvalidArgument, match="on_commit"):
        database.start("not callable")  # type: ignore[arg-type]
    database.start(Commits())
    with pytest.raises(PersistenceError, match="already started"):
        database.start(Commits())
    with pytest.raises(PersistenceError, match="before start"):
        database.load()
    with pytest.raises(InvalidArgument, match="Turn"):
        database.submit([])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="timeout"):
        database.flush(-1)
    database.close()
    database.close()  # idempotent
    with pytest.raises(PersistenceError, match="closed"):
        database.submit(Turn((), counters(1)))
    with pytest.raises(PersistenceError, match="closed"):
        database.backup(tmp_path / "copy.sqlite")


def test_flush_gives_up_after_its_timeout(tmp_path: Path) -> None:
    with running(tmp_path / "store.sqlite") as (database, commits):
        commits.arm()
        database.submit(Turn((), counters(1)))
        assert commits.entered.wait(WAIT)
        database.submit(Turn((), counters(2)))  # queued behind the blocked writer
        with pytest.raises(TimeoutError, match="turns 2 to 2"):
            database.flush(timeout=0.05)
        commits.release()
        database.flush(WAIT)
    assert commits.calls == [(1, None), (2, None)]


def test_a_failing_on_commit_does_not_stop_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def on_commit(seq: int, error: BaseException | None) -> None:
        calls.append(seq)
        raise RuntimeError("callback bug")

    path = tmp_path / "store.sqlite"
    database = Database(path)
    database.start(on_commit)
    database.submit(Turn((), counters(1)))
    database.flush(WAIT)
    database.submit(Turn((), counters(2)))
    database.flush(WAIT)
    database.close()

    assert calls == [1, 2]
    assert "callback bug" in caplog.text
    assert load(path).counters == counters(2)


def test_on_commit_cannot_wait_for_the_writer_it_runs_on(tmp_path: Path) -> None:
    refused: list[BaseException] = []
    database = Database(tmp_path / "store.sqlite")

    def on_commit(seq: int, error: BaseException | None) -> None:
        for call in (database.flush, database.close):
            try:
                call()
            except PersistenceError as caught:
                refused.append(caught)

    database.start(on_commit)
    database.submit(Turn((), counters(1)))
    database.flush(WAIT)
    database.close()
    assert [str(error).split(" of ")[0] for error in refused] == ["flush()", "close()"]


def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    database = Database(path)
    commits = Commits()
    database.start(commits)
    for n in range(1, 51):
        database.submit(Turn((), counters(n)))
    database.close()
    assert commits.calls[-1] == (50, None)
    assert load(path).counters == counters(50)
