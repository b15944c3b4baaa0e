"""``sessionactor.testing``: what users get to test their own code against the store."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from opentelemetry import metrics, trace

from sessionactor import InvalidArgument, SessionNotFound, SessionStore
from sessionactor.testing import CapturedMetric, CapturedPoint, FakeClock, capture_telemetry

# -- FakeClock ---------------------------------------------------------------------------


def test_fake_clock_moves_only_when_advanced() -> None:
    clock = FakeClock(50.0)
    assert clock() == clock() == 50.0
    clock.advance(2.5)
    clock.advance(0)
    assert clock() == 52.5
    assert clock.now == 52.5


@pytest.mark.parametrize("seconds", [-1, math.nan, True, "1"])
def test_fake_clock_never_goes_back(seconds: object) -> None:
    clock = FakeClock()
    with pytest.raises(InvalidArgument):
        clock.advance(seconds)  # type: ignore[arg-type]
    assert clock() == 1_000.0


async def test_fake_clock_drives_expiry_without_sleeping() -> None:
    clock = FakeClock()
    async with SessionStore(clock=clock) as store:
        await store.create_session("s1", ttl=60)
        clock.advance(59)
        await store.get_session("s1")  # touched: 60 more seconds
        clock.advance(60)
        with pytest.raises(SessionNotFound):
            await store.get_session("s1")


# -- capture_telemetry ---------------------------------------------------------------------


async def test_capture_sees_a_store_built_with_store() -> None:
    with capture_telemetry() as telemetry:
        async with telemetry.store() as store:
            await store.create_session("s1")
            await store.register_variable("s1", "x", "integer", 1)
            await store.update_variable("s1", "x", 2)
        assert [span.name for span in telemetry.spans()] == [
            "sessionactor.create_session",
            "sessionactor.register_variable",
            "sessionactor.update_variable",
        ]
        assert telemetry.value("sessionactor.variable.operations", {"operation": "update"}) == 1
        # store() records every call's duration, so a test can count them
        assert telemetry.count("sessionactor.call.duration") == 3


async def test_store_passes_options_through_and_providers_can_be_overridden() -> None:
    with capture_telemetry() as telemetry:
        store = telemetry.store(default_ttl=60, trace_calls=False)
        async with store:
            await store.create_session("s1")
            assert (await store.get_session("s1")).ttl == 60
        assert telemetry.spans() == []
        async with telemetry.store(meter_provider=metrics.NoOpMeterProvider()) as quiet:
            await quiet.create_session("s2")
        assert telemetry.value("sessionactor.session.events") == 1  # not s2's


async def test_metric_gives_name_unit_kind_and_points() -> None:
    with capture_telemetry() as telemetry:
        async with telemetry.store() as store:
            await store.create_session("s1")
            await store.register_variable("s1", "a", "float", 0.5)
            await store.register_variable("s1", "b", "string", "x")
        metric = telemetry.metric("sessionactor.variable.operations")
        assert isinstance(metric, CapturedMetric)
        assert (metric.name, metric.unit, metric.kind) == (
            "sessionactor.variable.operations",
            "{operation}",
            "sum",
        )
        assert sorted(metric.points, key=lambda p: p.attributes["variable.type"]) == [
            CapturedPoint({"operation": "register", "variable.type": "float"}, 1),
            CapturedPoint({"operation": "register", "variable.type": "string"}, 1),
        ]
        assert metric.value() == 2  # no attributes: every point
        assert metric.value({"variable.type": "string"}) == 1  # a subset matches
        assert metric.value({"variable.type": "boolean"}) == 0

        duration = telemetry.metric("sessionactor.call.duration")
        assert duration.kind == "histogram"
        assert duration.count() == 3
        point = duration.points[0]
        assert point.count is not None
        assert sum(point.bucket_counts) == point.count
        assert len(point.bucket_counts) == len(point.bounds) + 1


def test_a_metric_not_reported_is_a_key_error_naming_what_was() -> None:
    with capture_telemetry() as telemetry:
        with pytest.raises(KeyError, match="no metric 'nope'"):
            telemetry.metric("nope")
        assert telemetry.value("nope") == 0
        assert telemetry.count("nope") == 0
        assert telemetry.metrics() == {}


async def test_span_finds_exactly_one_and_clear_spans_forgets() -> None:
    with capture_telemetry() as telemetry:
        async with telemetry.store() as store:
            await store.create_session("s1")
            await store.session_exists("s1")
            await store.session_exists("s1")
        assert telemetry.span("sessionactor.create_session").name == "sessionactor.create_session"
        with pytest.raises(AssertionError, match="found 2"):
            telemetry.span("sessionactor.session_exists")
        with pytest.raises(AssertionError, match="found 0"):
            telemetry.span("sessionactor.get_session")
        assert len(telemetry.spans("sessionactor.session_exists")) == 2
        telemetry.clear_spans()
        assert telemetry.spans() == []


def test_capture_touches_no_global_provider() -> None:
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    with capture_telemetry() as telemetry:
        assert telemetry.tracer_provider is not tracer_provider
    assert trace.get_tracer_provider() is tracer_provider
    assert metrics.get_meter_provider() is meter_provider


async def test_leaving_the_capture_shuts_its_providers_down() -> None:
    with capture_telemetry() as telemetry:
        pass
    async with telemetry.store() as store:
        await store.create_session("s1")
    assert telemetry.spans() == []


def test_importing_testing_does_not_import_the_sdk() -> None:
    code = (
        "import sys, sessionactor, sessionactor.testing; "
        "print(any(name.startswith('opentelemetry.sdk') for name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "False"
