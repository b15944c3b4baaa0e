"""Trace context crosses the wire: a span the client has open parents the server's span.

The client injects the caller's context with OpenTelemetry's *global* propagator
and the server extracts it with the same. Nothing is mocked here: the global
propagator is the one ``opentelemetry.propagate`` sets up by default (W3C trace
context and baggage, unless ``OTEL_PROPAGATORS`` says otherwise), and the spans
are recorded by the SDK through ``sessionactor.testing.capture_telemetry()``.
The server's store reports to the capture; the client's own span comes from a
tracer of the same capture, so both ends land in one place to compare.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Final

import pytest
from conftest import serve, serve_in_thread
from opentelemetry import baggage, context, propagate
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from sessionactor import BlockingSessionStore, RemoteSessionStore, SessionNotFound
from sessionactor.testing import TelemetryCapture, capture_telemetry

SID: Final = "s1"
KINDS: Final = ["unix", "tcp"]


@pytest.fixture
def telemetry() -> Iterator[TelemetryCapture]:
    with capture_telemetry() as captured:
        yield captured


@pytest.fixture(params=KINDS)
async def remote(
    request: pytest.FixtureRequest, telemetry: TelemetryCapture
) -> AsyncIterator[RemoteSessionStore]:
    """A client of a store that reports its spans to ``telemetry``."""
    async with telemetry.store() as served, serve(served, request.param) as client:
        yield client


def test_the_global_propagator_is_w3c_trace_context() -> None:
    """What the client and server rely on: no configuration, the default propagator."""
    assert {"traceparent", "tracestate"} <= propagate.get_global_textmap().fields


def assert_child(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.parent is not None, f"{child.name} has no parent"
    assert child.parent.is_remote  # it came over the wire
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


async def test_the_servers_span_for_a_call_is_a_child_of_the_clients_open_span(
    remote: RemoteSessionStore, telemetry: TelemetryCapture
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("client")
    with tracer.start_as_current_span("client work", kind=SpanKind.CLIENT):
        await remote.create_session(SID, metadata={"user": "ada"})
        variable_id = await remote.register_variable(SID, "t", "float", 0.5)
    outer = telemetry.span("client work")
    created = telemetry.span("sessionactor.create_session")
    registered = telemetry.span("sessionactor.register_variable")
    assert_child(created, outer)
    assert_child(registered, outer)
    assert created.attributes is not None
    assert created.attributes["sessionactor.session.id"] == SID
    assert registered.attributes is not None
    assert registered.attributes["sessionactor.variable.id"] == variable_id


async def test_a_failed_call_marks_the_servers_span_in_the_clients_trace(
    remote: RemoteSessionStore, telemetry: TelemetryCapture
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("client")
    with tracer.start_as_current_span("client work"), pytest.raises(SessionNotFound):
        await remote.get_session("missing")
    failed = telemetry.span("sessionactor.get_session")
    assert_child(failed, telemetry.span("client work"))
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "SessionNotFound"


async def test_each_call_nests_under_the_span_open_when_it_was_made(
    remote: RemoteSessionStore, telemetry: TelemetryCapture
) -> None:
    """Pipelined calls from spans open at once each find their own parent."""
    tracer = telemetry.tracer_provider.get_tracer("client")
    await remote.create_session(SID)
    with tracer.start_as_current_span("first"):
        first = remote.session_exists(SID)
        with tracer.start_as_current_span("second"):
            second = remote.list_sessions()
            assert await second == [SID]
        assert await first
    (exists,) = telemetry.spans("sessionactor.session_exists")
    (listed,) = telemetry.spans("sessionactor.list_sessions")
    assert_child(exists, telemetry.span("first"))
    assert_child(listed, telemetry.span("second"))


async def test_without_an_open_span_the_servers_span_starts_a_trace(
    remote: RemoteSessionStore, telemetry: TelemetryCapture
) -> None:
    await remote.create_session(SID)
    created = telemetry.span("sessionactor.create_session")
    assert created.parent is None


async def test_baggage_travels_with_the_trace_context_and_harms_nothing(
    remote: RemoteSessionStore, telemetry: TelemetryCapture
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("client")
    token = context.attach(baggage.set_baggage("tenant", "t-42"))
    try:
        with tracer.start_as_current_span("client work"):
            await remote.create_session(SID)
    finally:
        context.detach(token)
    assert_child(telemetry.span("sessionactor.create_session"), telemetry.span("client work"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_threads_open_span_parents_the_servers_span_through_blocking_connect(
    kind: str, telemetry: TelemetryCapture
) -> None:
    """From a plain thread: through the client's loop thread and the wire."""
    tracer = telemetry.tracer_provider.get_tracer("client")
    with (
        BlockingSessionStore(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        ) as served,
        serve_in_thread(served, kind) as server,
        BlockingSessionStore.connect(server.addresses[0]) as store,
    ):
        failures: list[BaseException] = []

        def work() -> None:
            try:
                with tracer.start_as_current_span("thread work"):
                    store.create_session(SID)
            except BaseException as error:
                failures.append(error)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(10)
        assert not thread.is_alive() and not failures, failures
    assert_child(telemetry.span("sessionactor.create_session"), telemetry.span("thread work"))
