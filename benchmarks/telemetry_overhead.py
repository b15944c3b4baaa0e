"""What telemetry costs the store, measured side by side in one process.

    python -m benchmarks.telemetry_overhead             # about 40 s on 2 cores
    python -m benchmarks.telemetry_overhead --repeats 9 --rounds 400

100 concurrent callers each update their own float variable and read it back
(update_variable, get_variable), against a fresh store per run, under each
telemetry setting below. Settings are interleaved run by run, in an order that
rotates, so that a noisy machine slows them alike; each reports the median
throughput of its runs and its ratio to "disabled". Throughput is per second of
this process's CPU time.

- disabled: no-op providers passed in: nothing registered, plain call path
- no SDK: the global providers with no SDK installed (the default for most users)
- SDK metrics, every call: an SDK MeterProvider with an InMemoryMetricReader; the
  duration histogram records every call (the default ``duration_sample_ratio=1.0``)
- SDK metrics, 1/32 sampled: the same with ``duration_sample_ratio=1/32``
- SDK spans + metrics: an SDK TracerProvider (SimpleSpanProcessor, an exporter
  that drops spans) as well: one span per call, every call's duration
- SDK spans, no metrics: spans on every call and a no-op meter provider

Targets: no SDK >= 0.95 x disabled; SDK metrics >= 0.85 x disabled.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider

from sessionactor import SessionStore

CALLERS = 100


class _DropSpans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _disabled() -> SessionStore:
    return SessionStore(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())


def _no_sdk() -> SessionStore:
    return SessionStore()


def _meter_provider() -> MeterProvider:
    return MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)


def _sdk_metrics_sampled() -> SessionStore:
    return SessionStore(
        tracer_provider=NoOpTracerProvider(),
        meter_provider=_meter_provider(),
        duration_sample_ratio=1 / 32,
    )


def _sdk_metrics_every_call() -> SessionStore:
    return SessionStore(tracer_provider=NoOpTracerProvider(), meter_provider=_meter_provider())


def _tracer_provider() -> TracerProvider:
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(_DropSpans()))
    return tracer_provider


def _sdk_spans() -> SessionStore:
    return SessionStore(tracer_provider=_tracer_provider(), meter_provider=_meter_provider())


def _sdk_spans_only() -> SessionStore:
    return SessionStore(
        tracer_provider=_tracer_provider(),
        meter_provider=NoOpMeterProvider(),
        duration_sample_ratio=0,
    )


SETTINGS: dict[str, Callable[[], SessionStore]] = {
    "disabled": _disabled,
    "no SDK": _no_sdk,
    "SDK metrics, every call": _sdk_metrics_every_call,
    "SDK metrics, 1/32 sampled": _sdk_metrics_sampled,
    "SDK spans + metrics": _sdk_spans,
    "SDK spans, no metrics": _sdk_spans_only,
}
TARGETS = {"no SDK": 0.95, "SDK metrics, 1/32 sampled": 0.85}


async def _run(store: SessionStore, rounds: int) -> float:
    """Calls per CPU second of CALLERS callers doing ``rounds`` update+get pairs each.

    CPU time of this process, not wall time: on a shared machine other processes
    take the CPU at random, which wall time would count against whichever setting
    happened to run then. Nothing here runs threads of its own."""
    async with store:
        await store.create_session("bench")
        names = [f"v{i:03d}" for i in range(CALLERS)]
        for name in names:
            await store.register_variable(
                "bench", name, "float", 0.5, constraints={"min": 0.0, "max": 1.0}
            )

        async def caller(name: str) -> None:
            for i in range(rounds):
                await store.update_variable("bench", name, (i % 100) / 100)
                await store.get_variable("bench", name)

        start = time.process_time()
        await asyncio.gather(*(caller(name) for name in names))
        elapsed = time.process_time() - start
    return 2 * rounds * CALLERS / elapsed


async def _measure(repeats: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for make in SETTINGS.values():  # warm-up: imports, caches, first instruments
        await _run(make(), max(1, rounds // 10))
    order = list(SETTINGS)
    for repeat in range(repeats):
        for name in order[repeat % len(order) :] + order[: repeat % len(order)]:  # rotate
            gc.collect()  # so that one run's garbage is not collected in the next one
            results[name].append(await _run(SETTINGS[name](), rounds))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per setting")
    parser.add_argument("--rounds", type=int, default=200, help="update+get pairs per caller")
    args = parser.parse_args(argv)
    results = asyncio.run(_measure(args.repeats, args.rounds))
    base = statistics.median(results["disabled"])
    print(f"{CALLERS} callers x {args.rounds} x (update_variable + get_variable), ", end="")
    print(f"median of {args.repeats} runs")
    print(f"{'setting':<26}{'calls/s':>10}{'us/call':>9}{'ratio':>7}  target")
    for name, rates in results.items():
        rate = statistics.median(rates)
        ratio = rate / base
        target = TARGETS.get(name)
        verdict = "" if target is None else f">= {target:.2f} {'ok' if ratio >= target else 'MISS'}"
        print(f"{name:<26}{rate:>10,.0f}{1e6 / rate:>9.2f}{ratio:>7.2f}  {verdict}")


if __name__ == "__main__":
    main()
