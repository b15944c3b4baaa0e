"""Helpers for testing code that uses sessionactor: a fake clock and telemetry capture.

:class:`FakeClock` needs nothing beyond sessionactor. :func:`capture_telemetry`
needs ``opentelemetry-sdk`` (a test dependency: ``pip install opentelemetry-sdk``);
it is imported only when called.

>>> from sessionactor.testing import FakeClock, capture_telemetry
>>> async def test_my_code_updates_temperature() -> None:
...     with capture_telemetry() as telemetry:
...         async with telemetry.store() as store:   # a SessionStore wired to the capture
...             await my_code(store)
...         assert telemetry.value("sessionactor.variable.operations", {"operation": "update"}) == 1
...         assert [s.name for s in telemetry.spans()] == [..., "sessionactor.update_variable"]
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import attrs

from .errors import InvalidArgument, describe
from .store import SessionStore

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["CapturedMetric", "CapturedPoint", "FakeClock", "TelemetryCapture", "capture_telemetry"]


class FakeClock:
    """A monotonic clock that moves only when a test says so.

    Pass it as ``SessionStore(clock=clock)`` to drive expiry without sleeping.

    >>> clock = FakeClock()
    >>> start = clock()
    >>> clock.advance(600)
    >>> clock() - start
    600.0
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = float(start)
        self._start = self.now
        self._wall_start = time.time()

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        """The wall-clock time this clock stands for: the real time it was made, plus how
        far it was advanced. A store given a FakeClock takes its timestamps and its
        database deadlines from here too, so a test can drive expiry across a restart."""
        return self._wall_start + (self.now - self._start)

    def advance(self, seconds: float) -> None:
        """Move the clock forward; a monotonic clock never goes back."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
            raise InvalidArgument(f"seconds must be a number >= 0, got {describe(seconds)}")
        self.now += seconds


# ---------------------------------------------------------------------------
# Telemetry capture


@attrs.frozen
class CapturedPoint:
    """One point of a metric: a counter's or gauge's value, or a histogram's summary."""

    attributes: Mapping[str, Any]
    value: float  # a counter's total, a gauge's value, a histogram's sum
    count: int | None = None  # histograms: how many values were recorded
    bucket_counts: tuple[int, ...] = ()  # histograms: per bucket of ``bounds``
    bounds: tuple[float, ...] = ()


def _matches(point: CapturedPoint, attributes: Mapping[str, Any] | None) -> bool:
    return not attributes or all(point.attributes.get(k) == v for k, v in attributes.items())


@attrs.frozen
class CapturedMetric:
    """A metric as last collected: its name, unit, kind and points."""

    name: str
    unit: str
    description: str
    kind: str  # "sum", "gauge" or "histogram"
    points: tuple[CapturedPoint, ...]

    def value(self, attributes: Mapping[str, Any] | None = None) -> float:
        """The sum of the values of the points whose attributes include ``attributes``."""
        return sum(p.value for p in self.points if _matches(p, attributes))

    def count(self, attributes: Mapping[str, Any] | None = None) -> int:
        """Histograms: how many values were recorded in the matching points."""
        return sum(p.count or 0 for p in self.points if _matches(p, attributes))


class TelemetryCapture:
    """SDK providers that keep spans and metrics in memory, for a test to inspect.

    Build stores with :meth:`store` (or pass :attr:`tracer_provider` and
    :attr:`meter_provider` yourself). Nothing global is touched.
    """

    def __init__(self) -> None:
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "sessionactor.testing.capture_telemetry needs opentelemetry-sdk: "
                "pip install opentelemetry-sdk"
            ) from error
        self.span_exporter: InMemorySpanExporter = InMemorySpanExporter()
        self.metric_reader: InMemoryMetricReader = InMemoryMetricReader()
        self.tracer_provider: TracerProvider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.meter_provider: MeterProvider = MeterProvider(
            metric_readers=[self.metric_reader], shutdown_on_exit=False
        )

    def store(self, **options: Any) -> SessionStore:
        """A ``SessionStore(**options)`` that reports to this capture.

        Unlike a plain store, it records the duration of every call
        (``duration_sample_ratio=1.0``), so a test can count them.

        >>> async with telemetry.store(default_ttl=60) as store:  # doctest: +SKIP
        ...     ...
        """
        options.setdefault("tracer_provider", self.tracer_provider)
        options.setdefault("meter_provider", self.meter_provider)
        options.setdefault("duration_sample_ratio", 1.0)
        return SessionStore(**options)

    # -- spans -----------------------------------------------------------------

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans in the order they ended, optionally only those called ``name``."""
        spans = list(self.span_exporter.get_finished_spans())
        return spans if name is None else [span for span in spans if span.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``; AssertionError if there are none or many."""
        found = self.spans(name)
        if len(found) != 1:
            names = sorted({span.name for span in self.spans()})
            raise AssertionError(f"expected one span {name!r}, found {len(found)} among {names}")
        return found[0]

    def clear_spans(self) -> None:
        """Forget the spans captured so far (metrics are cumulative: compare values instead)."""
        self.span_exporter.clear()

    # -- metrics ---------------------------------------------------------------

    def metrics(self) -> dict[str, CapturedMetric]:
        """Collect now: every metric reported so far, by name."""
        data = self.metric_reader.get_metrics_data()
        captured: dict[str, CapturedMetric] = {}
        if data is None:
            return captured
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    captured[metric.name] = _captured(metric)
        return captured

    def metric(self, name: str) -> CapturedMetric:
        """Collect now: the metric called ``name``; KeyError if it has reported nothing."""
        metrics = self.metrics()
        if name not in metrics:
            raise KeyError(f"no metric {name!r}; reported: {sorted(metrics)}")
        return metrics[name]

    def value(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """Collect now: the metric's value summed over points matching ``attributes`` (0 if none).

        >>> telemetry.value("sessionactor.variable.rejections",
        ...                 {"reason": "constraint_violation"})  # doctest: +SKIP
        1
        """
        metric = self.metrics().get(name)
        return 0 if metric is None else metric.value(attributes)

    def count(self, name: str, attributes: Mapping[str, Any] | None = None) -> int:
        """Collect now: how many values a histogram recorded in matching points (0 if none)."""
        metric = self.metrics().get(name)
        return 0 if metric is None else metric.count(attributes)

    # -- lifetime --------------------------------------------------------------

    def shutdown(self) -> None:
        """Shut both providers down (stores built on them stop reporting)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def capture_telemetry() -> TelemetryCapture:
    """In-memory SDK providers for one test: ``with capture_telemetry() as telemetry:``.

    Needs ``opentelemetry-sdk``.
    """
    return TelemetryCapture()


def _captured(metric: Metric) -> CapturedMetric:
    from opentelemetry.sdk.metrics.export import (
        ExponentialHistogramDataPoint,
        HistogramDataPoint,
        NumberDataPoint,
    )

    data = metric.data
    points: list[CapturedPoint] = []
    for point in data.data_points:
        attributes = MappingProxyType(dict(point.attributes or {}))
        if isinstance(point, HistogramDataPoint):
            buckets = tuple(point.bucket_counts)
            bounds = tuple(point.explicit_bounds)
            points.append(CapturedPoint(attributes, point.sum, point.count, buckets, bounds))
        elif isinstance(point, ExponentialHistogramDataPoint):
            points.append(CapturedPoint(attributes, point.sum, point.count))
        elif isinstance(point, NumberDataPoint):
            points.append(CapturedPoint(attributes, point.value))
    kind = type(data).__name__.lower()  # "sum", "gauge", "histogram", ...
    return CapturedMetric(
        name=metric.name,
        unit=metric.unit or "",
        description=metric.description or "",
        kind=kind,
        points=tuple(points),
    )
