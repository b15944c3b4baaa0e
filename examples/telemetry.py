"""Telemetry: an app's own span wraps a few store calls; spans and metrics go to the console.

    python examples/telemetry.py

The app installs the OpenTelemetry SDK as the global providers (as an app
does at start-up), so the store picks them up by default. Each store call
becomes a span ``sessionactor.<operation>`` whose parent is the app's
``handle_request`` span; the store's counters, gauges and call-duration
histogram are exported when the meter provider shuts down. Needs
``opentelemetry-sdk``.
"""

from __future__ import annotations

import logging

import anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    HistogramDataPoint,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from sessionactor import ConstraintViolation, SessionStore
from sessionactor.telemetry import attach_variable_handlers


def span_line(span: ReadableSpan) -> str:
    """One line per span: its id, its parent's id, its status and attributes."""
    parent = f"{span.parent.span_id:016x}" if span.parent else "-" * 16
    attributes = " ".join(f"{key}={value!r}" for key, value in (span.attributes or {}).items())
    status = span.status.status_code.name
    return (
        f"span {span.context.span_id:016x} parent {parent} {span.name:<30} {status:<6} "
        f"{attributes}\n"
    )


def metric_lines(data: MetricsData) -> str:
    """One line per point: name{attributes} = value (histograms: count and sum)."""
    lines = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    labels = ",".join(f"{k}={v!r}" for k, v in (point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        value = f"count={point.count} sum={point.sum * 1e6:.0f}us"
                    elif isinstance(point, NumberDataPoint):
                        value = f"{point.value}"
                    else:
                        continue
                    lines.append(f"metric {metric.name}{{{labels}}} = {value} {metric.unit}\n")
    return "".join(lines)


def install_sdk() -> MeterProvider:
    """What an app does at start-up: global SDK providers with console exporters."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(ConsoleSpanExporter(formatter=span_line))
    )
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(
        ConsoleMetricExporter(formatter=metric_lines), export_interval_millis=60_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    return meter_provider


async def handle_request(store: SessionStore) -> None:
    tracer = trace.get_tracer("example.app")
    with tracer.start_as_current_span("handle_request"):
        await store.create_session("user-42")
        await store.register_variable(
            "user-42", "temperature", "float", 0.7, constraints={"min": 0.0, "max": 2.0}
        )
        await store.update_variable("user-42", "temperature", 0.9)
        try:
            await store.update_variable("user-42", "temperature", 5.0)
        except ConstraintViolation as error:
            print(f"refused: {error}")
        await store.get_variables("user-42", ["temperature", "top_p"])


async def main() -> None:
    meter_provider = install_sdk()
    attach_variable_handlers(level=logging.INFO)  # registrations, deletions, imports
    async with SessionStore(duration_sample_ratio=1.0) as store:
        await handle_request(store)
    meter_provider.shutdown()  # exports the metrics once more, to the console


if __name__ == "__main__":
    anyio.run(main)
