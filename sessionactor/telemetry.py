"""OpenTelemetry for the store: instruments, spans, and the variable events of snakepit.

Cost decides the shape. A store call costs a few microseconds, and an SDK
instrument call about as much, so:

- **Counts** are plain ints that the functional core keeps in
  ``StoreState.counters``; observable instruments report them when a reader
  collects (possibly from the reader's own thread). Counting costs the call
  path nothing here.
- **Spans and the call-duration histogram** need work per call. The store
  wraps its call function once, when it is built (:meth:`StoreTelemetry.instrument`),
  and only with what records: with no SDK (the API's proxy or no-op providers)
  the store keeps its plain call function and pays nothing per call. Spans can
  be turned off (``SessionStore(trace_calls=False)``). The histogram records
  every call by default, so every failed call has its point; an SDK ``Histogram.record`` costs
  about as much as a store call, so a busy store can record a random share
  instead (``duration_sample_ratio=1/32`` gives 0.9x of untraced throughput).

The global providers are read when a store is built. A store built before an
SDK is installed reports its counters and gauges once it is, but no spans and
no durations: install the SDK first, or pass the providers in.

    SessionStore(tracer_provider=tracer_provider, meter_provider=meter_provider)
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    MeterProvider,
    NoOpMeter,
    NoOpMeterProvider,
    Observation,
    get_meter_provider,
)
from opentelemetry.trace import (
    NoOpTracer,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
    get_tracer_provider,
)
from opentelemetry.util.types import AttributeValue

from .errors import InvalidArgument, describe
from .messages import AnyCommand, GetVariables, RegisterVariable, UpdateVariables
from .model import Variable
from .state import StoreCounters, StoreState

__all__ = [
    "CALL_DURATION",
    "DEFAULT_DURATION_SAMPLE_RATIO",
    "DURATION_BUCKETS",
    "LIVE_SESSIONS",
    "LIVE_VARIABLES",
    "LOCK_REFUSALS",
    "MAILBOX_DEPTH",
    "SESSION_EVENTS",
    "VARIABLE_BATCH_SIZE",
    "VARIABLE_OPERATIONS",
    "VARIABLE_REJECTIONS",
    "VERSION_CONFLICTS",
    "WATCH_OVERFLOWS",
    "CallFunction",
    "StoreTelemetry",
    "attach_variable_handlers",
    "detach_variable_handlers",
    "variable_events",
]

INSTRUMENTATION_NAME: Final = "sessionactor"

# Metric names. Attributes never carry a session id (unbounded cardinality).
VARIABLE_OPERATIONS: Final = "sessionactor.variable.operations"  # operation, variable.type
VARIABLE_BATCH_SIZE: Final = "sessionactor.variable.batch.size"  # operation
VARIABLE_REJECTIONS: Final = "sessionactor.variable.rejections"  # reason, variable.type, operation
SESSION_EVENTS: Final = "sessionactor.session.events"  # event
VERSION_CONFLICTS: Final = "sessionactor.variable.version_conflicts"
LOCK_REFUSALS: Final = "sessionactor.variable.lock_refusals"
WATCH_OVERFLOWS: Final = "sessionactor.watch.overflows"
LIVE_SESSIONS: Final = "sessionactor.sessions"
LIVE_VARIABLES: Final = "sessionactor.variables"
MAILBOX_DEPTH: Final = "sessionactor.mailbox.depth"
CALL_DURATION: Final = "sessionactor.call.duration"  # operation, and error.type on failure

DURATION_BUCKETS: Final = (
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    1e-2,
    2.5e-2,
    5e-2,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram bucket bounds in seconds: a call takes microseconds, a timeout seconds
(the SDK's default bounds, meant for milliseconds, would put every call in one bucket)."""

DEFAULT_DURATION_SAMPLE_RATIO: Final = 1.0
"""The share of calls whose duration is recorded, unless the store is told otherwise."""

# Span attributes.
SESSION_ID: Final = "sessionactor.session.id"
VARIABLE_ID: Final = "sessionactor.variable.id"
VARIABLE_IDENTIFIER: Final = "sessionactor.variable.identifier"  # an id or a name, as given
VARIABLE_NAME: Final = "sessionactor.variable.name"
BATCH_SIZE: Final = "sessionactor.batch.size"
ERROR_TYPE: Final = "error.type"

CallFunction = Callable[[AnyCommand], Awaitable[Any]]
"""The store's call path: one command in, its reply out."""

_VARIABLE_EVENTS: Final = (
    "sessionactor.variable.registered",
    "sessionactor.variable.get",
    "sessionactor.variable.updated",
    "sessionactor.variable.deleted",
    "sessionactor.variables.batch_get",
    "sessionactor.variables.batch_update",
    "sessionactor.variable.validation_failed",
    "sessionactor.variable.constraint_violation",
)


def variable_events() -> list[str]:
    """The variable events the store emits, as ``Snakepit.Telemetry.variable_events/0`` lists them.

    snakepit's eight, in its order. Each is a point of a metric:
    ``registered``/``get``/``updated``/``deleted`` are
    ``sessionactor.variable.operations`` with ``operation``
    ``register``/``get``/``update``/``delete`` (imports count there too, as
    ``import``, though snakepit lists no event for them); the two batch events are
    ``sessionactor.variable.batch.size`` (by how many variables) with ``operation``
    ``batch_get``/``batch_update``; the last two are ``sessionactor.variable.rejections``
    with that ``reason``.

    >>> variable_events()[0]
    'sessionactor.variable.registered'
    """
    return list(_VARIABLE_EVENTS)


# ---------------------------------------------------------------------------
# Logging, as snakepit's attach_variable_handlers/0: the core already logs
# register, delete and import at INFO and updates at DEBUG; this makes them seen.

_LOGGER_NAME: Final = "sessionactor"
_HANDLER_NAME: Final = "sessionactor-variable-logger"
_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_saved_levels: dict[str, int] = {}


def attach_variable_handlers(
    handler: logging.Handler | None = None, *, level: int = logging.INFO
) -> logging.Handler:
    """Show the store's variable events in a log, as snakepit's ``attach_variable_handlers/0``.

    Adds ``handler`` (default: a stream handler on stderr) to
    ``logging.getLogger("sessionactor")`` and sets that logger's level: at INFO you
    see registrations, deletions and imports; at DEBUG also every update (which
    costs a log record per update). Attaching again replaces the previous handler.
    Returns the handler; :func:`detach_variable_handlers` undoes it.

    >>> handler = attach_variable_handlers(level=logging.DEBUG)  # doctest: +SKIP
    """
    logger = logging.getLogger(_LOGGER_NAME)
    detach_variable_handlers()
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.set_name(_HANDLER_NAME)
    _saved_levels[_LOGGER_NAME] = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    return handler


def detach_variable_handlers() -> None:
    """Remove the handler :func:`attach_variable_handlers` added and restore the level."""
    logger = logging.getLogger(_LOGGER_NAME)
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    if _LOGGER_NAME in _saved_levels:
        logger.setLevel(_saved_levels.pop(_LOGGER_NAME))


# ---------------------------------------------------------------------------
# Metrics shared by every store of one meter provider.

K = TypeVar("K")


def _sum_tables(tables: Iterable[Mapping[K, int]]) -> dict[K, int]:
    total: dict[K, int] = {}
    for table in tables:
        # dict() copies in one step under the GIL: the loop thread may be adding keys.
        for key, count in dict(table).items():
            total[key] = total.get(key, 0) + count
    return total


def _merge_into(target: StoreCounters, source: StoreCounters) -> None:
    for name in (
        "variable_operations",
        "gets",
        "updates",
        "batch_sizes",
        "rejections",
        "session_events",
    ):
        table = getattr(target, name)
        for key, count in dict(getattr(source, name)).items():
            table[key] = table.get(key, 0) + count
    target.version_conflicts += source.version_conflicts
    target.lock_refusals += source.lock_refusals
    target.watch_overflows += source.watch_overflows


class _ProviderMetrics:
    """The observable instruments of one meter provider, shared by every store that reports to it.

    An SDK meter keeps the first instrument of a name and ignores the callbacks of
    later ones, so stores cannot each register their own: one set of observable
    instruments sums the counts of every store (a store that is garbage collected
    leaves its counts behind, so counters never go down). Callbacks may run on a
    reader's thread; they take the lock, copy and sum.
    """

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._stores: dict[int, tuple[weakref.ref[StoreState], StoreCounters]] = {}
        self._retired = StoreCounters()
        # Tokens of collected stores. A finalizer only appends here (it may run
        # inside a callback that holds the lock); the lock holder folds them in.
        self._gone: collections.deque[int] = collections.deque()

        meter.create_observable_counter(
            VARIABLE_OPERATIONS,
            [self._observe_operations],
            unit="{operation}",
            description="Variable operations: register, get, update, delete, import.",
        )
        meter.create_observable_counter(
            VARIABLE_BATCH_SIZE,
            [self._observe_batch_sizes],
            unit="{variable}",
            description="Variables read or written by batch calls.",
        )
        meter.create_observable_counter(
            VARIABLE_REJECTIONS,
            [self._observe_rejections],
            unit="{rejection}",
            description="Values refused by their type (validation_failed) or constraints.",
        )
        meter.create_observable_counter(
            SESSION_EVENTS,
            [self._observe_session_events],
            unit="{event}",
            description="Sessions created, deleted and expired.",
        )
        meter.create_observable_counter(
            VERSION_CONFLICTS,
            [self._observe_version_conflicts],
            unit="{conflict}",
            description="Updates refused because the expected version did not match.",
        )
        meter.create_observable_counter(
            LOCK_REFUSALS,
            [self._observe_lock_refusals],
            unit="{refusal}",
            description="Calls refused because another optimizer holds the variable.",
        )
        meter.create_observable_counter(
            WATCH_OVERFLOWS,
            [self._observe_watch_overflows],
            unit="{overflow}",
            description="Watches ended because their consumer fell too far behind.",
        )
        meter.create_observable_gauge(
            LIVE_SESSIONS,
            [self._observe_sessions],
            unit="{session}",
            description="Sessions held (expired ones until the next sweep).",
        )
        meter.create_observable_gauge(
            LIVE_VARIABLES,
            [self._observe_variables],
            unit="{variable}",
            description="Variables held in all sessions.",
        )
        meter.create_observable_gauge(
            MAILBOX_DEPTH,
            [self._observe_mailbox_depth],
            unit="{message}",
            description="Messages waiting in the actor's mailbox.",
        )

    def add(self, state: StoreState) -> None:
        token = next(self._tokens)
        with self._lock:
            self._fold_gone()
            self._stores[token] = (weakref.ref(state), state.counters)
        weakref.finalize(state, self._gone.append, token).atexit = False

    def _fold_gone(self) -> None:
        while self._gone:
            entry = self._stores.pop(self._gone.popleft(), None)
            if entry is not None:
                _merge_into(self._retired, entry[1])

    def _counters(self) -> list[StoreCounters]:
        """Every store's counters, the collected ones' included. Call with the lock held."""
        self._fold_gone()
        return [self._retired, *(counters for _, counters in self._stores.values())]

    def _states(self) -> list[StoreState]:
        with self._lock:
            refs = [ref for ref, _ in self._stores.values()]
        return [state for ref in refs if (state := ref()) is not None]

    def _observe_operations(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = _sum_tables(c.operations() for c in self._counters())
        return [
            Observation(count, {"operation": operation, "variable.type": type_name})
            for (operation, type_name), count in totals.items()
        ]

    def _observe_batch_sizes(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = _sum_tables(c.batch_sizes for c in self._counters())
        return [Observation(count, {"operation": operation}) for operation, count in totals.items()]

    def _observe_rejections(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = _sum_tables(c.rejections for c in self._counters())
        return [
            Observation(count, {"reason": reason, "variable.type": type_name, "operation": op})
            for (reason, type_name, op), count in totals.items()
        ]

    def _observe_session_events(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = _sum_tables(c.session_events for c in self._counters())
        return [Observation(count, {"event": event}) for event, count in totals.items()]

    def _observe_version_conflicts(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(sum(c.version_conflicts for c in self._counters()))]

    def _observe_lock_refusals(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(sum(c.lock_refusals for c in self._counters()))]

    def _observe_watch_overflows(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(sum(c.watch_overflows for c in self._counters()))]

    def _observe_sessions(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(state.session_count for state in self._states()))]

    def _observe_variables(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(state.variable_count for state in self._states()))]

    def _observe_mailbox_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(state.mailbox_depth() for state in self._states()))]


_provider_metrics: weakref.WeakKeyDictionary[MeterProvider, _ProviderMetrics] = (
    weakref.WeakKeyDictionary()
)
_provider_metrics_lock = threading.Lock()


_proxy_metrics: list[_ProviderMetrics] = []  # the global proxy's, once made


def _is_api_provider(provider: object) -> bool:
    """The API's own providers (no-op, or the global proxy before an SDK is installed)."""
    return type(provider).__module__.startswith(("opentelemetry.metrics", "opentelemetry.trace"))


def _meter(provider: MeterProvider) -> Meter | None:
    from . import __version__

    meter = provider.get_meter(INSTRUMENTATION_NAME, __version__)
    return None if isinstance(meter, NoOpMeter) else meter  # NoOpMeter: e.g. OTEL_SDK_DISABLED


def _metrics_for(provider: MeterProvider) -> _ProviderMetrics | None:
    """The provider's shared observable instruments, made on first use; None if it records nothing.

    The global proxy gets them too: they cost nothing until an SDK is installed,
    and then they report through it.
    """
    if isinstance(provider, NoOpMeterProvider):
        return None
    with _provider_metrics_lock:
        metrics = _provider_metrics.get(provider)
        if metrics is None and _proxy_metrics and provider is get_meter_provider():
            # An SDK installed globally after stores reported to the proxy: the
            # proxy's instruments report through it, and it would ignore new ones.
            metrics = _proxy_metrics[0]
        if metrics is None:
            meter = _meter(provider)
            if meter is None:
                return None
            metrics = _ProviderMetrics(meter)
            _provider_metrics[provider] = metrics
            if _is_api_provider(provider):
                _proxy_metrics.append(metrics)
        return metrics


def _duration_histogram(provider: MeterProvider) -> Histogram | None:
    """The call-duration histogram, or None where recording would cost calls for nothing
    (the API's providers: a proxy histogram costs every call even before an SDK exists).
    An SDK meter returns the same histogram to every store that asks."""
    if _is_api_provider(provider):
        return None
    meter = _meter(provider)
    if meter is None:
        return None
    return meter.create_histogram(
        CALL_DURATION,
        unit="s",
        description="Duration of store calls, as their callers see it.",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )


def _live_tracer(provider: TracerProvider) -> Tracer | None:
    """A tracer that records, or None when spans would be no-ops."""
    if isinstance(provider, ProxyTracerProvider):
        provider = get_tracer_provider()  # the real one, if one was installed since
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return None
    from . import __version__

    tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    return None if isinstance(tracer, NoOpTracer) else tracer


# ---------------------------------------------------------------------------
# The instrumented call paths.


class _OperationAttributes(dict[str, dict[str, AttributeValue]]):
    """``{"operation": op}`` per operation, built once: no dict per recorded call."""

    def __missing__(self, operation: str) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {"operation": operation}
        self[operation] = attributes
        return attributes


class _ErrorAttributes(dict[tuple[str, str], dict[str, AttributeValue]]):
    def __missing__(self, key: tuple[str, str]) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {"operation": key[0], ERROR_TYPE: key[1]}
        self[key] = attributes
        return attributes


class _SpanNames(dict[str, str]):
    def __missing__(self, operation: str) -> str:
        name = self[operation] = f"sessionactor.{operation}"
        return name


def _span_attributes(command: AnyCommand) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    session_id = getattr(command, "session_id", None)
    if type(session_id) is str:
        attributes[SESSION_ID] = session_id
    identifier = getattr(command, "identifier", None)
    if type(identifier) is str:
        attributes[VARIABLE_IDENTIFIER] = identifier
    if type(command) is RegisterVariable and type(command.name) is str:
        attributes[VARIABLE_NAME] = command.name
    elif type(command) is GetVariables:
        _set_batch_size(attributes, command.identifiers)
    elif type(command) is UpdateVariables:
        _set_batch_size(attributes, command.updates)
    return attributes


def _set_batch_size(attributes: dict[str, AttributeValue], batch: object) -> None:
    if isinstance(batch, Mapping | list | tuple | set | frozenset):
        attributes[BATCH_SIZE] = len(batch)


def _annotate_reply(span: Span, command: AnyCommand, reply: object) -> None:
    if type(reply) is Variable:
        span.set_attribute(VARIABLE_ID, reply.id)
    elif type(command) is RegisterVariable and type(reply) is str:
        span.set_attribute(VARIABLE_ID, reply)


def _random_gaps(ratio: float) -> Iterator[int]:
    """Calls from one sampled call to the next: geometric, so each call is sampled
    with probability ``ratio`` independently of the others. A fixed "every Nth
    call" would alias with regular call patterns (update, get, update, get...)."""
    log_miss = math.log1p(-ratio)
    draw = random.random
    while True:
        yield 1 + int(math.log(1.0 - draw()) / log_miss)


class StoreTelemetry:
    """One store's telemetry: its tracer, its share of the provider's instruments,
    and the wrapper its call path runs through.

    ``duration_sample_ratio`` is the share of calls, drawn at random, whose
    duration the ``sessionactor.call.duration`` histogram records: 1.0 every
    call (the default: every failed call has its point), 0 none. An SDK
    ``Histogram.record`` costs about as much as a whole store call, so recording
    every call halves throughput; a random 1/32 of calls gives the same latency
    distribution at a thirty-second of that cost, but the histogram's counts are
    then about 1/32 of the calls (the operations counter stays exact).
    """

    def __init__(
        self,
        state: StoreState,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        trace_calls: bool = True,
        duration_sample_ratio: float = DEFAULT_DURATION_SAMPLE_RATIO,
    ) -> None:
        if type(trace_calls) is not bool:
            raise InvalidArgument(f"trace_calls must be a bool, got {describe(trace_calls)}")
        ratio = duration_sample_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise InvalidArgument(
                f"duration_sample_ratio must be a number from 0 to 1, got {describe(ratio)}"
            )
        if meter_provider is None:
            meter_provider = get_meter_provider()
        metrics = _metrics_for(meter_provider)
        if metrics is not None:
            metrics.add(state)
        self.duration: Histogram | None = _duration_histogram(meter_provider) if ratio > 0 else None
        self.duration_sample_ratio = float(ratio)
        if tracer_provider is None:
            tracer_provider = get_tracer_provider()
        self.tracer: Tracer | None = _live_tracer(tracer_provider) if trace_calls else None

    @property
    def instruments_calls(self) -> bool:
        """Whether calls need wrapping (a live tracer or histogram); if not, wrap nothing."""
        return self.tracer is not None or self.duration is not None

    def instrument(self, call: CallFunction) -> CallFunction:
        """``call`` wrapped with a span and/or the duration histogram, as live."""
        if self.tracer is not None:
            return self._traced(call, self.tracer)
        if self.duration is not None:
            timed = self._timed(call, self.duration)
            if self.duration_sample_ratio == 1.0:
                return timed
            return self._sampled(call, timed)
        return call

    @staticmethod
    def _timed(call: CallFunction, histogram: Histogram) -> CallFunction:
        record = histogram.record
        clock = time.perf_counter
        by_operation = _OperationAttributes()
        by_error = _ErrorAttributes()

        async def timed_call(command: AnyCommand) -> Any:
            start = clock()
            try:
                reply = await call(command)
            except BaseException as error:
                key = (command.operation, type(error).__qualname__)
                record(clock() - start, by_error[key])
                raise
            record(clock() - start, by_operation[command.operation])
            return reply

        return timed_call

    def _sampled(self, call: CallFunction, timed: CallFunction) -> CallFunction:
        gap = _random_gaps(self.duration_sample_ratio)
        countdown = next(gap)

        # A plain function handing back the coroutine to await: a call that is not
        # sampled costs a decrement, not a random draw or an extra coroutine frame.
        def sampled_call(command: AnyCommand) -> Awaitable[Any]:
            nonlocal countdown
            countdown -= 1
            if countdown:
                return call(command)
            countdown = next(gap)
            return timed(command)

        return sampled_call

    def _traced(self, call: CallFunction, tracer: Tracer) -> CallFunction:
        start_span = tracer.start_span
        record = self.duration.record if self.duration is not None else None
        ratio = self.duration_sample_ratio
        draw = random.random
        clock = time.perf_counter
        names = _SpanNames()
        by_operation = _OperationAttributes()
        by_error = _ErrorAttributes()

        async def traced_call(command: AnyCommand) -> Any:
            operation = command.operation
            # Started in the caller's context, so it nests under the caller's span.
            # Not made current: nothing runs inside it in the caller's task.
            span = start_span(names[operation], attributes=_span_attributes(command))
            start = clock()
            try:
                reply = await call(command)
            except BaseException as error:
                seconds = clock() - start
                error_type = type(error).__qualname__
                span.set_attribute(ERROR_TYPE, error_type)
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                span.end()
                if record is not None and (ratio == 1.0 or draw() < ratio):
                    record(seconds, by_error[(operation, error_type)])
                raise
            seconds = clock() - start
            _annotate_reply(span, command, reply)
            span.end()
            if record is not None and (ratio == 1.0 or draw() < ratio):
                record(seconds, by_operation[operation])
            return reply

        return traced_call
