"""SPEC §7: every event as a metric, spans nested under the caller's, and cheap when off.

Each test passes SDK providers (an InMemoryMetricReader and an
InMemorySpanExporter, through ``sessionactor.testing``) to its own store; the
global providers are never touched.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import NoOpTracerProvider, StatusCode

from sessionactor import (
    AtomicUpdateError,
    ConstraintViolation,
    InvalidArgument,
    InvalidImport,
    SessionNotFound,
    SessionStore,
    ValidationError,
    VariableLocked,
    VariableNotFound,
    VersionConflict,
    WatchOverflow,
)
from sessionactor import telemetry as t
from sessionactor.testing import FakeClock, TelemetryCapture, capture_telemetry

# The store's own spans and metrics, read from the providers it was built with (its
# own `store` fixture): in-process by nature. Spans through the wire: test_remote_trace.py.
pytestmark = pytest.mark.local_only

SID = "session-7f3a"  # distinctive, so a leak into metric attributes is easy to find
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def capture() -> Iterator[TelemetryCapture]:
    with capture_telemetry() as captured:
        yield captured


@pytest.fixture
async def store(capture: TelemetryCapture) -> AsyncIterator[SessionStore]:
    """A store reporting to ``capture`` that records every call's duration, with a session."""
    async with SessionStore(
        tracer_provider=capture.tracer_provider,
        meter_provider=capture.meter_provider,
        duration_sample_ratio=1.0,
    ) as running:
        await running.create_session(SID)
        yield running


async def _register(store: SessionStore, name: str = "temperature", value: float = 0.5) -> str:
    return await store.register_variable(
        SID, name, "float", value, constraints={"min": 0.0, "max": 1.0}
    )


class Delta:
    """How much a metric's matching points moved between ``__init__`` and ``moved()``."""

    def __init__(
        self, capture: TelemetryCapture, name: str, attributes: dict[str, Any] | None = None
    ) -> None:
        self.capture, self.name, self.attributes = capture, name, attributes
        self.before = capture.value(name, attributes)

    def moved(self) -> float:
        return self.capture.value(self.name, self.attributes) - self.before


def ops(operation: str, type_name: str = "float") -> dict[str, Any]:
    return {"operation": operation, "variable.type": type_name}


# -- names, units, kinds -------------------------------------------------------------


def test_variable_events_lists_the_seed_events_in_its_order() -> None:
    seed = [
        "sessionactor.variable.registered",
        "sessionactor.variable.get",
        "sessionactor.variable.updated",
        "sessionactor.variable.deleted",
        "sessionactor.variables.batch_get",
        "sessionactor.variables.batch_update",
        "sessionactor.variable.validation_failed",
        "sessionactor.variable.constraint_violation",
    ]
    events = t.variable_events()
    assert events == seed
    events.clear()  # a copy: the module's list is not the caller's to change
    assert t.variable_events() == seed


async def test_every_instrument_has_its_name_unit_and_kind(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    expected = {
        "sessionactor.variable.operations": ("{operation}", "sum"),
        "sessionactor.variable.batch.size": ("{variable}", "sum"),
        "sessionactor.variable.rejections": ("{rejection}", "sum"),
        "sessionactor.session.events": ("{event}", "sum"),
        "sessionactor.variable.version_conflicts": ("{conflict}", "sum"),
        "sessionactor.variable.lock_refusals": ("{refusal}", "sum"),
        "sessionactor.watch.overflows": ("{overflow}", "sum"),
        "sessionactor.sessions": ("{session}", "gauge"),
        "sessionactor.variables": ("{variable}", "gauge"),
        "sessionactor.mailbox.depth": ("{message}", "gauge"),
        "sessionactor.call.duration": ("s", "histogram"),
    }
    await _register(store)
    # batch.size and rejections report once something was counted
    await store.get_variables(SID, ["temperature"])
    with pytest.raises(ValidationError):
        await store.update_variable(SID, "temperature", "hot")
    metrics = capture.metrics()
    assert {name: (m.unit, m.kind) for name, m in metrics.items()} == expected


async def test_counters_are_monotonic_sums(capture: TelemetryCapture, store: SessionStore) -> None:
    await _register(store)
    data = capture.metric_reader.get_metrics_data()
    assert data is not None
    sums = [
        metric.data
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "sessionactor.variable.operations"
    ]
    assert len(sums) == 1
    assert sums[0].is_monotonic  # type: ignore[union-attr]


# -- sessionactor.variable.operations ------------------------------------------------


async def test_register_get_update_delete_each_count_one_operation_of_their_type(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    operations = ("register", "get", "update", "delete", "import")
    deltas = {op: Delta(capture, t.VARIABLE_OPERATIONS, ops(op)) for op in operations}
    variable_id = await _register(store)
    await store.get_variable(SID, "temperature")
    await store.get_variable_value(SID, variable_id)
    await store.update_variable(SID, "temperature", 0.7)
    await store.delete_variable(SID, variable_id)
    assert {op: d.moved() for op, d in deltas.items()} == {
        "register": 1,
        "get": 2,
        "update": 1,
        "delete": 1,
        "import": 0,
    }


async def test_operations_carry_the_variable_type(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await store.register_variable(SID, "mode", "choice", "a", constraints={"choices": ["a", "b"]})
    await store.register_variable(SID, "steps", "integer", 3)
    await store.update_variable(SID, "steps", 4)
    assert capture.value(t.VARIABLE_OPERATIONS, ops("register", "choice")) == 1
    assert capture.value(t.VARIABLE_OPERATIONS, ops("register", "integer")) == 1
    assert capture.value(t.VARIABLE_OPERATIONS, ops("update", "integer")) == 1
    assert capture.value(t.VARIABLE_OPERATIONS, ops("update", "choice")) == 0


async def test_import_counts_one_operation_per_variable(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store, "a")
    await _register(store, "b")
    exported = await store.export_variables(SID)
    await store.create_session("other")
    imports = Delta(capture, t.VARIABLE_OPERATIONS, ops("import"))
    assert await store.import_variables("other", exported) == 2
    assert imports.moved() == 2


async def test_a_failed_operation_is_not_counted_as_one(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store)
    everything = Delta(capture, t.VARIABLE_OPERATIONS)
    with pytest.raises(VariableNotFound):
        await store.get_variable(SID, "missing")
    with pytest.raises(ConstraintViolation):
        await store.update_variable(SID, "temperature", 2.0)
    with pytest.raises(SessionNotFound):
        await store.update_variable("no-such-session", "temperature", 0.1)
    assert everything.moved() == 0


# -- sessionactor.variable.batch.size --------------------------------------------------


async def test_batch_size_moves_by_the_number_of_variables_in_the_batch(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    for name in ("a", "b", "c"):
        await _register(store, name)
    batch_get = Delta(capture, t.VARIABLE_BATCH_SIZE, {"operation": "batch_get"})
    batch_update = Delta(capture, t.VARIABLE_BATCH_SIZE, {"operation": "batch_update"})
    updates = Delta(capture, t.VARIABLE_OPERATIONS, ops("update"))

    await store.get_variables(SID, ["a", "b", "c"])
    assert batch_get.moved() == 3
    await store.update_variables(SID, {"a": 0.1, "b": 0.2, "c": 0.3})
    assert batch_update.moved() == 3
    assert updates.moved() == 3  # each variable of a batch is an update too

    await store.get_variables(SID, ["a", "missing"])  # only what was found
    assert batch_get.moved() == 4
    await store.update_variables(SID, {"a": 0.4, "b": 7.0})  # non-atomic: one applied
    assert batch_update.moved() == 4
    with pytest.raises(AtomicUpdateError):
        await store.update_variables(SID, {"a": 0.5, "b": 7.0}, atomic=True)
    assert batch_update.moved() == 4  # all or nothing, counts included
    assert updates.moved() == 4


# -- sessionactor.variable.rejections -----------------------------------------------------


async def test_rejections_name_the_reason_type_and_operation(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store)
    with pytest.raises(ConstraintViolation):
        await store.update_variable(SID, "temperature", 1.5)
    with pytest.raises(ValidationError) as info:
        await store.update_variable(SID, "temperature", "warm")
    assert not isinstance(info.value, ConstraintViolation)
    with pytest.raises(ConstraintViolation):
        await store.register_variable(SID, "x", "integer", 150, constraints={"max": 100})
    with pytest.raises(ValidationError):
        await store.register_variable(SID, "y", "boolean", "maybe")

    points = {
        (p.attributes["reason"], p.attributes["variable.type"], p.attributes["operation"]): p.value
        for p in capture.metric(t.VARIABLE_REJECTIONS).points
    }
    assert points == {
        ("constraint_violation", "float", "update"): 1,
        ("validation_failed", "float", "update"): 1,
        ("constraint_violation", "integer", "register"): 1,
        ("validation_failed", "boolean", "register"): 1,
    }


async def test_batch_updates_and_imports_count_their_rejections(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store, "a")
    await _register(store, "b")
    update_rejections = Delta(capture, t.VARIABLE_REJECTIONS, {"operation": "update"})
    await store.update_variables(SID, {"a": 3.0, "b": "x"})
    assert update_rejections.moved() == 2
    with pytest.raises(AtomicUpdateError):
        await store.update_variables(SID, {"a": 3.0, "b": 0.5}, atomic=True)
    assert update_rejections.moved() == 3

    exported = await store.export_variables(SID)
    exported[0]["value"] = 9.0
    await store.create_session("other")
    with pytest.raises(InvalidImport):
        await store.import_variables("other", exported)
    assert capture.value(t.VARIABLE_REJECTIONS, {"operation": "import"}) == 1


# -- sessionactor.session.events ------------------------------------------------------------


async def test_session_events_count_created_deleted_and_expired(capture: TelemetryCapture) -> None:
    clock = FakeClock()
    async with capture.store(clock=clock) as store:
        await store.create_session("a", ttl=10)
        await store.create_session("a")  # idempotent: not created again
        await store.create_session("b", ttl=10)
        await store.store_worker_session("c", "worker-1")  # creates "c"
        await store.delete_session("b")
        await store.delete_session("b")  # idempotent: not deleted again
        clock.advance(11)
        assert await store.cleanup_expired_sessions() == 1
    points = {p.attributes["event"]: p.value for p in capture.metric(t.SESSION_EVENTS).points}
    assert points == {"created": 3, "deleted": 1, "expired": 1}


# -- conflicts, lock refusals, watch overflows ----------------------------------------------


async def test_version_conflicts_and_lock_refusals_are_counted(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store)
    with pytest.raises(VersionConflict):
        await store.update_variable(SID, "temperature", 0.6, expected_version=3)
    result = await store.update_variables(
        SID, {"temperature": 0.6}, expected_versions={"temperature": 9}
    )
    assert isinstance(result["temperature"], VersionConflict)
    assert capture.value(t.VERSION_CONFLICTS) == 2

    await store.start_optimization(SID, "temperature", "opt-1")
    with pytest.raises(VariableLocked):
        await store.start_optimization(SID, "temperature", "opt-2")
    with pytest.raises(VariableLocked):
        await store.update_variable(SID, "temperature", 0.2)
    with pytest.raises(VariableLocked):
        await store.end_optimization(SID, "temperature", "opt-2")
    await store.update_variable(SID, "temperature", 0.2, optimizer_id="opt-1")
    assert capture.value(t.LOCK_REFUSALS) == 3


async def test_a_watch_overflow_is_counted(capture: TelemetryCapture, store: SessionStore) -> None:
    await _register(store)
    assert capture.value(t.WATCH_OVERFLOWS) == 0
    async with store.watch_variables(SID, include_initial=False, buffer=1) as changes:
        for value in (0.1, 0.2, 0.3):
            await store.update_variable(SID, "temperature", value)
        with pytest.raises(WatchOverflow):
            async for _ in changes:
                pass
    assert capture.value(t.WATCH_OVERFLOWS) == 1


# -- gauges ------------------------------------------------------------------------------------


async def test_gauges_show_live_sessions_variables_and_mailbox_depth(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await store.create_session("other")
    await _register(store, "a")
    await _register(store, "b")
    assert capture.value(t.LIVE_SESSIONS) == 2
    assert capture.value(t.LIVE_VARIABLES) == 2
    assert capture.value(t.MAILBOX_DEPTH) == 0

    await store.delete_session("other")
    await store.delete_variable(SID, "a")
    assert capture.value(t.LIVE_SESSIONS) == 1
    assert capture.value(t.LIVE_VARIABLES) == 1

    calls = [asyncio.create_task(store.session_exists(SID)) for _ in range(5)]
    await asyncio.sleep(0)  # the callers queue their messages; the actor has not run yet
    assert capture.value(t.MAILBOX_DEPTH) == 5
    await asyncio.gather(*calls)
    assert capture.value(t.MAILBOX_DEPTH) == 0


# -- sessionactor.call.duration -------------------------------------------------------------


async def test_call_duration_records_each_call_by_operation(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store)
    before = capture.count(t.CALL_DURATION, {"operation": "update_variable"})
    for value in (0.1, 0.2, 0.3):
        await store.update_variable(SID, "temperature", value)
    await store.get_variable(SID, "temperature")

    metric = capture.metric(t.CALL_DURATION)
    assert metric.unit == "s"
    assert metric.count({"operation": "update_variable"}) - before == 3
    assert metric.count({"operation": "get_variable"}) == 1
    assert metric.count({"operation": "create_session"}) == 1
    for point in metric.points:
        assert set(point.attributes) == {"operation"}  # no error.type on success
        assert point.count is not None
        assert 0 < point.value < 5 * point.count  # seconds, and each under the call timeout
        assert point.bounds == t.DURATION_BUCKETS


async def test_call_duration_of_a_failure_carries_the_error_type(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    with pytest.raises(VariableNotFound):
        await store.get_variable(SID, "missing")
    with pytest.raises(VariableNotFound):
        await store.get_variable(SID, "missing")
    with pytest.raises(InvalidArgument):
        await store.create_session("")
    failed = {
        (p.attributes["operation"], p.attributes["error.type"]): p.count
        for p in capture.metric(t.CALL_DURATION).points
        if "error.type" in p.attributes
    }
    assert failed == {
        ("get_variable", "VariableNotFound"): 2,
        ("create_session", "InvalidArgument"): 1,
    }


async def test_duration_sample_ratio_records_that_share_of_calls(
    capture: TelemetryCapture,
) -> None:
    async with capture.store(duration_sample_ratio=0.5) as store:
        for _ in range(400):
            await store.session_exists(SID)
    recorded = capture.count(t.CALL_DURATION, {"operation": "session_exists"})
    assert 120 < recorded < 280  # binomial(400, 0.5): mean 200, sd 10


async def test_duration_sample_ratio_zero_records_no_duration(capture: TelemetryCapture) -> None:
    async with capture.store(duration_sample_ratio=0, trace_calls=False) as store:
        await store.create_session(SID)
        assert "_call" not in vars(store)  # nothing to record: the plain call path
    assert capture.value(t.SESSION_EVENTS) == 1  # the counters still report
    assert t.CALL_DURATION not in capture.metrics()


async def test_a_plain_store_samples_durations_by_default(capture: TelemetryCapture) -> None:
    store = SessionStore(
        tracer_provider=NoOpTracerProvider(), meter_provider=capture.meter_provider
    )
    assert store._telemetry.duration_sample_ratio == t.DEFAULT_DURATION_SAMPLE_RATIO == 1.0


# -- no session id in metrics --------------------------------------------------------------


async def test_no_metric_point_carries_a_session_id(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    variable_id = await _register(store)
    await store.update_variable(SID, variable_id, 0.3)
    await store.get_variables(SID, [variable_id, "missing"])
    await store.update_variables(SID, {variable_id: 3.0})
    with pytest.raises(VariableNotFound):
        await store.delete_variable(SID, "missing")
    await store.store_worker_session(SID, "worker-1")
    await store.delete_session(SID)
    for metric in capture.metrics().values():
        for point in metric.points:
            for key, value in point.attributes.items():
                assert SID not in str(value), (metric.name, key)
                assert "session" not in key, (metric.name, key)


# -- spans ---------------------------------------------------------------------------------


async def test_a_call_makes_one_span_nested_under_the_callers_span(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store)
    capture.clear_spans()
    tracer = capture.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        variable = await store.update_variable(SID, "temperature", 0.25)
    span = capture.span("sessionactor.update_variable")
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    assert dict(span.attributes or {}) == {
        "sessionactor.session.id": SID,
        "sessionactor.variable.identifier": "temperature",
        "sessionactor.variable.id": variable.id,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert [s.name for s in capture.spans()] == ["sessionactor.update_variable", "request"]


async def test_concurrent_callers_each_get_their_own_parent(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    tracer = capture.tracer_provider.get_tracer("test")

    async def caller(number: int) -> int:
        with tracer.start_as_current_span(f"caller-{number}") as own:
            await store.session_exists(SID)
            return own.get_span_context().span_id

    parents = await asyncio.gather(*(caller(n) for n in range(10)))
    spans = capture.spans("sessionactor.session_exists")
    assert sorted(s.parent.span_id for s in spans if s.parent) == sorted(parents)


async def test_span_names_follow_the_operation(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    variable_id = await _register(store)
    await store.get_variables(SID, ["temperature", "missing"])
    await store.update_variables(SID, {"temperature": 0.2})
    await store.list_sessions()
    names = [span.name for span in capture.spans()]
    assert names == [
        "sessionactor.create_session",
        "sessionactor.register_variable",
        "sessionactor.get_variables",
        "sessionactor.update_variables",
        "sessionactor.list_sessions",
    ]
    register = capture.span("sessionactor.register_variable")
    assert register.attributes is not None
    assert register.attributes["sessionactor.variable.id"] == variable_id
    assert register.attributes["sessionactor.variable.name"] == "temperature"
    batch = capture.span("sessionactor.get_variables")
    assert batch.attributes is not None
    assert batch.attributes["sessionactor.batch.size"] == 2
    assert "sessionactor.session.id" not in (
        capture.span("sessionactor.list_sessions").attributes or {}
    )


async def test_a_failed_call_sets_error_status_and_type(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    await _register(store)
    with pytest.raises(ConstraintViolation):
        await store.update_variable(SID, "temperature", 1.5)
    span = capture.span("sessionactor.update_variable")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "value 1.5 is above maximum 1.0"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ConstraintViolation"
    assert "sessionactor.variable.id" not in span.attributes
    assert [event.name for event in span.events] == ["exception"]


async def test_trace_calls_false_makes_no_spans_but_keeps_metrics(
    capture: TelemetryCapture,
) -> None:
    async with capture.store(trace_calls=False) as store:
        await store.create_session(SID)
    assert capture.spans() == []
    assert capture.count(t.CALL_DURATION, {"operation": "create_session"}) == 1


# -- cost: nothing is wrapped when nothing records -------------------------------------------


def test_without_an_sdk_the_store_keeps_its_plain_call_path() -> None:
    for store in (
        SessionStore(),  # the global providers: the API's proxies, no SDK installed
        SessionStore(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()),
    ):
        assert not store._telemetry.instruments_calls
        assert "_call" not in vars(store)


def test_bad_telemetry_options_are_invalid_arguments() -> None:
    for options in (
        {"trace_calls": 1},
        {"duration_sample_ratio": 1.5},
        {"duration_sample_ratio": -0.1},
        {"duration_sample_ratio": math.nan},
        {"duration_sample_ratio": True},
        {"duration_sample_ratio": "all"},
    ):
        with pytest.raises(InvalidArgument):
            SessionStore(**options)


# -- several stores, one meter provider ------------------------------------------------------


async def test_stores_sharing_a_provider_add_up_and_a_collected_store_leaves_its_counts(
    capture: TelemetryCapture,
) -> None:
    async with capture.store() as first:
        await first.create_session("a")
        async with capture.store() as second:
            await second.create_session("b")
            await second.create_session("c")
            assert capture.value(t.SESSION_EVENTS, {"event": "created"}) == 3
            assert capture.value(t.LIVE_SESSIONS) == 3
    del first, second
    await asyncio.sleep(0)  # let the stopped actors' last callbacks run
    gc.collect()
    assert capture.value(t.SESSION_EVENTS, {"event": "created"}) == 3  # counters never go down
    assert capture.value(t.LIVE_SESSIONS) == 0

    async with capture.store() as third:
        await third.create_session("d")
    assert capture.value(t.SESSION_EVENTS, {"event": "created"}) == 4


async def test_a_reader_on_another_thread_can_collect_while_calls_run(
    capture: TelemetryCapture, store: SessionStore
) -> None:
    async def callers() -> None:
        for i in range(300):
            await store.register_variable(SID, f"v{i}", "integer", i)

    async def collect() -> None:
        for _ in range(20):
            await asyncio.to_thread(capture.metrics)

    await asyncio.gather(callers(), collect())
    assert capture.value(t.VARIABLE_OPERATIONS, ops("register", "integer")) == 300


async def test_each_meter_provider_has_its_own_instruments() -> None:
    readers = [InMemoryMetricReader(), InMemoryMetricReader()]
    providers = [MeterProvider(metric_readers=[r], shutdown_on_exit=False) for r in readers]
    try:
        for count, provider in enumerate(providers, start=1):
            async with SessionStore(meter_provider=provider) as store:
                for n in range(count):
                    await store.create_session(f"s{n}")
        for count, reader in enumerate(readers, start=1):
            data = reader.get_metrics_data()
            assert data is not None
            [events] = [
                m
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
                if m.name == t.SESSION_EVENTS
            ]
            assert [p.value for p in events.data.data_points] == [count]  # type: ignore[union-attr]
    finally:
        for provider in providers:
            provider.shutdown()


# -- logging -------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    yield handler
    t.detach_variable_handlers()


async def test_attached_handler_logs_register_delete_import_at_info(
    capture: TelemetryCapture, store: SessionStore, records: _Records
) -> None:
    assert t.attach_variable_handlers(records) is records
    variable_id = await _register(store)
    await store.update_variable(SID, variable_id, 0.6)
    exported = await store.export_variables(SID)
    await store.delete_variable(SID, variable_id)
    await store.import_variables(SID, exported)
    assert [(r.levelno, r.getMessage().split()[0]) for r in records.records] == [
        (logging.INFO, "registered"),
        (logging.INFO, "deleted"),
        (logging.INFO, "imported"),
    ]


async def test_attached_handler_at_debug_also_logs_updates(
    capture: TelemetryCapture, store: SessionStore, records: _Records
) -> None:
    t.attach_variable_handlers(records, level=logging.DEBUG)
    await _register(store)
    await store.update_variable(SID, "temperature", 0.6)
    await store.update_variables(SID, {"temperature": 0.7})
    levels = [r.levelno for r in records.records]
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG]


def test_attaching_twice_keeps_one_handler_and_detach_restores_the_level(
    records: _Records,
) -> None:
    logger = logging.getLogger("sessionactor")
    level = logger.level
    t.attach_variable_handlers(records)
    second = _Records()
    t.attach_variable_handlers(second, level=logging.DEBUG)
    assert records not in logger.handlers
    assert logger.handlers.count(second) == 1
    assert logger.level == logging.DEBUG
    t.detach_variable_handlers()
    assert second not in logger.handlers
    assert logger.level == level


# -- the example ---------------------------------------------------------------------------


def test_the_example_shows_store_spans_nested_under_the_apps_span() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "telemetry.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    spans = [line.split() for line in result.stdout.splitlines() if line.startswith("span ")]
    by_name = {fields[4]: fields for fields in spans}
    request_id = by_name["handle_request"][1]
    store_spans = [fields for fields in spans if fields[4].startswith("sessionactor.")]
    assert len(store_spans) == 5
    assert all(fields[3] == request_id for fields in store_spans)
    assert "metric sessionactor.variable.operations" in result.stdout
    assert "registered variable temperature" in result.stderr


LATE_SDK = """
import asyncio
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sessionactor import SessionStore

async def main() -> None:
    early = SessionStore()  # no SDK yet: the plain call path
    assert not early._telemetry.instruments_calls
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    late = SessionStore(duration_sample_ratio=1.0)
    async with early, late:
        await early.create_session("a")
        await late.create_session("b")
    data = reader.get_metrics_data()
    points = {
        m.name: [(dict(p.attributes), p.count if hasattr(p, "count") else p.value)
                 for p in m.data.data_points]
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    print(points["sessionactor.session.events"])
    print(points["sessionactor.call.duration"])

asyncio.run(main())
"""


def test_an_sdk_installed_after_a_store_was_built_reports_every_stores_counts() -> None:
    # In a child process: the global providers can be set once, and tests never touch ours.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", LATE_SDK],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events, durations = result.stdout.splitlines()
    assert events == "[({'event': 'created'}, 2)]"  # both stores, through one instrument
    assert durations == "[({'operation': 'create_session'}, 1)]"  # only the later store's
