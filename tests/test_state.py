"""The functional core, driven directly: no event loop, no actor."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionactor.errors import (
    AtomicUpdateError,
    ConstraintViolation,
    InternalError,
    InvalidArgument,
    SessionLimitExceeded,
    SessionNotFound,
    VariableExists,
    VariableNotFound,
)
from sessionactor.messages import (
    CleanupExpiredSessions,
    CreateSession,
    DeleteSession,
    ExportVariables,
    GetSession,
    GetStats,
    GetVariable,
    ImportVariables,
    ListSessions,
    ListVariables,
    RegisterVariable,
    SessionExists,
    UpdateSession,
    UpdateVariable,
    UpdateVariables,
)
from sessionactor.model import Variable
from sessionactor.state import StoreState, iso_utc
from sessionactor.types import TypeRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_state(**kwargs: object) -> tuple[StoreState, Clock]:
    clock = Clock()
    return StoreState(clock=clock, **kwargs), clock  # type: ignore[arg-type]


def export(state: StoreState, session_id: str) -> list[dict[str, object]]:
    return state.handle(ExportVariables(session_id))  # type: ignore[return-value]


def test_handle_creates_and_registers_without_an_event_loop() -> None:
    state, _ = make_state()
    session = state.handle(CreateSession("s1"))
    variable_id = state.handle(RegisterVariable("s1", "x", "float", 1))
    variable = state.handle(GetVariable("s1", "x"))
    assert session.id == "s1"  # type: ignore[attr-defined]
    assert isinstance(variable, Variable)
    assert variable.id == variable_id
    assert variable.value == 1.0 and type(variable.value) is float


def test_expired_session_is_hidden_at_once_and_removed_by_the_sweep() -> None:
    state, clock = make_state(default_ttl=10.0)
    state.handle(CreateSession("s1"))
    state.handle(RegisterVariable("s1", "x", "integer", 1))
    clock.advance(10.0)
    assert state.handle(SessionExists("s1")) is False
    with pytest.raises(SessionNotFound):
        state.handle(GetVariable("s1", "x"))
    assert state.handle(ListSessions()) == []
    stats = state.handle(GetStats())
    assert stats.current_sessions == 0 and stats.current_variables == 0  # type: ignore[attr-defined]
    assert state.handle(CleanupExpiredSessions()) == 1
    assert state.handle(CleanupExpiredSessions()) == 0
    assert state.sessions_expired == 1


def test_touching_postpones_expiry() -> None:
    state, clock = make_state(default_ttl=10.0)
    state.handle(CreateSession("s1"))
    for _ in range(5):
        clock.advance(9.0)
        state.handle(GetSession("s1"))
    assert state.sweep() == 0
    clock.advance(10.0)
    assert state.sweep() == 1


def test_failed_call_does_not_touch_the_session() -> None:
    state, clock = make_state(default_ttl=10.0)
    state.handle(CreateSession("s1"))
    state.handle(RegisterVariable("s1", "x", "float", 0.5, constraints={"max": 1.0}))
    clock.advance(6.0)
    with pytest.raises(ConstraintViolation):
        state.handle(UpdateVariable("s1", "x", 2.0))
    clock.advance(5.0)  # 11 s after the last successful touch
    assert state.handle(SessionExists("s1")) is False


def test_shortening_ttl_reschedules_the_sweep() -> None:
    state, clock = make_state(default_ttl=1000.0)
    state.handle(CreateSession("s1"))
    state.handle(UpdateSession("s1", ttl=5.0))
    clock.advance(5.0)
    assert state.sweep() == 1


def test_infinite_ttl_never_expires() -> None:
    state, clock = make_state()
    state.handle(CreateSession("s1", ttl=math.inf))
    clock.advance(1e12)
    assert state.sweep() == 0
    assert state.handle(SessionExists("s1")) is True


def test_sweep_work_follows_what_expired_not_what_lives() -> None:
    """Pops from the deadline heap are counted: a sweep touches only due entries."""
    state, clock = make_state(default_ttl=100.0)
    for index in range(5000):
        state.handle(CreateSession(f"long-{index}", ttl=10_000.0))
    for index in range(50):
        state.handle(CreateSession(f"short-{index}", ttl=10.0))
    heap_before = len(state._deadlines)
    clock.advance(11.0)
    assert state.sweep() == 50
    assert heap_before - len(state._deadlines) == 50  # only the due entries were popped


def test_stats_skip_expired_but_unswept_sessions() -> None:
    state, clock = make_state(default_ttl=10.0)
    state.handle(CreateSession("short"))
    state.handle(CreateSession("long", ttl=100.0))
    state.handle(RegisterVariable("short", "a", "integer", 1))
    state.handle(RegisterVariable("long", "b", "integer", 1))
    clock.advance(20.0)
    stats = state.handle(GetStats())
    assert stats.current_sessions == 1  # type: ignore[attr-defined]
    assert stats.current_variables == 1  # type: ignore[attr-defined]


def test_recreating_an_expired_session_starts_empty() -> None:
    state, clock = make_state(default_ttl=10.0)
    state.handle(CreateSession("s1"))
    state.handle(RegisterVariable("s1", "x", "integer", 1))
    clock.advance(10.0)
    state.handle(CreateSession("s1"))
    assert state.handle(ListVariables("s1")) == []
    assert state.sessions_expired == 1


def test_churn_does_not_grow_the_deadline_heap_without_bound() -> None:
    state, _ = make_state(default_ttl=10.0)
    for index in range(5000):
        state.handle(CreateSession(f"s{index}"))
        state.handle(DeleteSession(f"s{index}"))
    state.sweep()
    assert len(state._deadlines) <= 1024 + 1


def test_max_sessions_counts_live_sessions_only() -> None:
    state, clock = make_state(default_ttl=10.0, max_sessions=2)
    state.handle(CreateSession("a"))
    state.handle(CreateSession("b"))
    with pytest.raises(SessionLimitExceeded):
        state.handle(CreateSession("c"))
    clock.advance(10.0)
    state.handle(CreateSession("c"))  # the expired ones make room
    assert state.handle(ListSessions()) == ["c"]


class ExplodingType:
    """A user type with a bug: validate raises something that is not a store error."""

    name = "exploding"

    def validate(self, value: object) -> object:
        if value == "boom":
            raise ZeroDivisionError("user bug")
        return value

    def validate_constraints(self, constraints: Mapping[str, object]) -> None:
        return None

    def check(self, value: object, constraints: Mapping[str, object]) -> None:
        return None

    def to_json(self, value: object) -> object:
        return value

    def from_json(self, data: object) -> object:
        return data


def test_unexpected_exception_becomes_internal_error_and_changes_nothing() -> None:
    state = StoreState(types=TypeRegistry([ExplodingType()]))
    state.handle(CreateSession("s1"))
    state.handle(RegisterVariable("s1", "x", "exploding", "fine"))
    before = export(state, "s1")
    with pytest.raises(InternalError) as caught:
        state.handle(UpdateVariable("s1", "x", "boom"))
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert caught.value.operation == "update_variable"
    assert export(state, "s1") == before
    assert state.handle(UpdateVariable("s1", "x", "next")).version == 1  # type: ignore[attr-defined]


def test_atomic_batch_changes_nothing_on_any_failure() -> None:
    state, _ = make_state()
    state.handle(CreateSession("s1"))
    for name in ("a", "b", "c"):
        state.handle(RegisterVariable("s1", name, "integer", 0, constraints={"max": 10}))
    before, revision = export(state, "s1"), state.revision
    with pytest.raises(AtomicUpdateError) as caught:
        state.handle(UpdateVariables("s1", {"a": 1, "b": 11, "c": 2, "zz": 3}, atomic=True))
    assert set(caught.value.errors) == {"b", "zz"}
    assert isinstance(caught.value.errors["zz"], VariableNotFound)
    assert export(state, "s1") == before
    assert state.revision == revision


def test_atomic_batch_takes_consecutive_revisions() -> None:
    state, _ = make_state()
    state.handle(CreateSession("s1"))
    for name in ("a", "b", "c"):
        state.handle(RegisterVariable("s1", name, "integer", 0))
    start = state.revision
    result = state.handle(UpdateVariables("s1", {"a": 1, "b": 2, "c": 3}, atomic=True))
    revisions = [variable.revision for variable in result.values()]  # type: ignore[attr-defined]
    assert revisions == [start + 1, start + 2, start + 3]


def test_same_variable_twice_in_a_batch_is_refused_for_the_second_key() -> None:
    state, _ = make_state()
    state.handle(CreateSession("s1"))
    variable_id = state.handle(RegisterVariable("s1", "a", "integer", 0))
    result = state.handle(UpdateVariables("s1", {"a": 1, variable_id: 2}))
    assert result["a"].value == 1  # type: ignore[index]
    assert isinstance(result[variable_id], InvalidArgument)  # type: ignore[index]


def test_variable_ids_stay_unique_after_import() -> None:
    state, _ = make_state()
    state.handle(CreateSession("s1"))
    state.handle(CreateSession("s2"))
    state.handle(RegisterVariable("s1", "a", "integer", 0))
    state.handle(
        ImportVariables("s2", [{"id": "var_x_500", "name": "x", "type": "integer", "value": 1}])
    )
    new_id = state.handle(RegisterVariable("s2", "y", "integer", 0))
    assert new_id == "var_y_501"


def test_register_taken_name_raises_and_keeps_the_original() -> None:
    state, _ = make_state()
    state.handle(CreateSession("s1"))
    first = state.handle(RegisterVariable("s1", "x", "integer", 1))
    with pytest.raises(VariableExists):
        state.handle(RegisterVariable("s1", "x", "integer", 2))
    assert state.handle(GetVariable("s1", "x")).id == first  # type: ignore[attr-defined]


def test_identical_constraints_are_shared_between_variables() -> None:
    state, _ = make_state()
    state.handle(CreateSession("s1"))
    for index in range(3):
        state.handle(
            RegisterVariable("s1", f"v{index}", "float", 0.5, constraints={"min": 0, "max": 1})
        )
    variables = state.handle(ListVariables("s1"))
    assert len({id(v.constraints) for v in variables}) == 1  # type: ignore[attr-defined]


def test_commands_processed_counts_every_handled_command() -> None:
    state, _ = make_state()
    state.handle(CreateSession("s1"))
    with pytest.raises(SessionNotFound):
        state.handle(GetSession("nope"))
    assert state.commands_processed == 2


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_iso_utc_is_iso_8601_with_milliseconds(wall: float) -> None:
    from datetime import UTC, datetime

    text = iso_utc(wall)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(parsed.timestamp() - wall) < 0.001 + 1e-6 * abs(wall) / 1e6


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.floats())
def test_iso_utc_of_any_clock_reading_is_a_string(wall: float) -> None:
    """A custom clock may read NaN, infinity or a time no calendar holds: metadata and
    its repr must still work (such a reading is then given as it is)."""
    text = iso_utc(wall)
    assert isinstance(text, str) and text
    if not math.isfinite(wall):
        assert text == repr(wall)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.sampled_from(["temp_a", "temp_b", "x", "tempo", "my_temp_x", "t.mp_"]), unique=True)
)
def test_glob_listing_matches_a_reference_and_keeps_order(names: list[str]) -> None:
    import re

    state, _ = make_state()
    state.handle(CreateSession("s1"))
    for name in names:
        state.handle(RegisterVariable("s1", name, "integer", 0))
    listed = [v.name for v in state.handle(ListVariables("s1", "temp_?"))]  # type: ignore[attr-defined]
    assert listed == [name for name in names if re.fullmatch(r"temp_.", name)]


def test_update_metadata_merges_lazily_without_chaining() -> None:
    from sessionactor.state import UpdateMetadata

    state, _ = make_state()
    state.handle(CreateSession("s1"))
    state.handle(RegisterVariable("s1", "x", "integer", 0, metadata={"owner": "me"}))
    for value in range(1, 50):
        metadata = {"step": value} if value % 10 == 0 else None
        state.handle(UpdateVariable("s1", "x", value, metadata))
    variable = state.handle(GetVariable("s1", "x"))
    metadata = variable.metadata  # type: ignore[attr-defined]
    assert isinstance(metadata, UpdateMetadata)
    assert not isinstance(metadata._base, UpdateMetadata)  # one level, however many updates
    assert dict(metadata) == {
        "source": "python",
        "created_by": "session_store",
        "owner": "me",
        "step": 40,
        "updated_at": iso_utc(variable.updated_at),  # type: ignore[attr-defined]
    }
    assert metadata == dict(metadata)
    with pytest.raises(TypeError):
        metadata["owner"] = "you"  # type: ignore[index]


def test_stats_take_expired_sessions_off_the_heap_once_and_the_sweep_counts_them() -> None:
    """get_stats costs what newly expired: a second call finds nothing left to walk."""
    state, clock = make_state(default_ttl=100.0)
    for index in range(1000):
        state.handle(CreateSession(f"short-{index}", ttl=10.0))
        state.handle(CreateSession(f"long-{index}", ttl=10_000.0))
    clock.advance(11.0)
    heap_before = len(state._deadlines)
    first = state.handle(GetStats())
    assert first.current_sessions == 1000  # type: ignore[attr-defined]
    assert heap_before - len(state._deadlines) == 1000  # each expired entry popped once
    assert state.sessions_expired == 0  # noticed, not swept: the sweep counts them
    heap_after = len(state._deadlines)
    second = state.handle(GetStats())
    assert second.current_sessions == 1000  # type: ignore[attr-defined]
    assert len(state._deadlines) == heap_after and len(state._noticed_records) == 1000
    assert state.sweep() == 1000
    assert state.sessions_expired == 1000 and not state._noticed_records
    assert state.handle(GetStats()).current_sessions == 1000  # type: ignore[attr-defined]


def test_a_noticed_session_deleted_before_the_sweep_counts_once() -> None:
    state, clock = make_state(default_ttl=10.0)
    state.handle(CreateSession("a"))
    state.handle(RegisterVariable("a", "x", "integer", 1))
    clock.advance(11.0)
    assert state.handle(GetStats()).current_variables == 0  # type: ignore[attr-defined]
    state.handle(DeleteSession("a"))  # expired: counted as expired, not deleted
    assert state.sweep() == 0
    stats = state.handle(GetStats())
    assert (stats.sessions_expired, stats.sessions_deleted) == (1, 0)  # type: ignore[attr-defined]
    assert (stats.current_sessions, stats.current_variables) == (0, 0)  # type: ignore[attr-defined]
