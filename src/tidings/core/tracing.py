"""OpenTelemetry traces (docs/operations.md): off unless ``TIDINGS_TRACING=true``.

FastAPI (0.165+) makes a span per HTTP request and, with ``auto_configure``, exports them with
OTLP over HTTP to where the standard ``OTEL_EXPORTER_OTLP_*`` variables say (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES`` and the batch settings are the SDK's). This module adds what
happens inside a request — every SQL statement (SQLAlchemy) and Redis command — as child spans,
and the current trace and span ids to every log line, so a slow request's log and trace meet.
Events carry the writing request's ``traceparent`` through the outbox, and each consumer's
work is a span of that trace, in the API process or in `tidings worker` (which exports its
own, :func:`configure_worker`). Needs the ``otel`` extra (`pip install 'tidings[otel]'`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from fastapi.telemetry import TelemetryConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.core.errors import ConfigurationError
from tidings.settings import Settings

# probes and scrapes would be most of the spans and tell nothing
UNTRACED = frozenset({"/livez", "/readyz", "/metrics"})
_instrumented: set[str] = set()


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED


def telemetry_config(settings: Settings) -> TelemetryConfig:
    """FastAPI's own telemetry: request spans exported from the environment when tracing is
    on (no per-dependency spans: they cost more than they tell here); nothing when off."""
    if not settings.tracing:
        return {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    return {
        "tracing": True,
        "metrics": False,  # Prometheus has them (tidings.core.metrics)
        "logs": False,  # structlog writes them, with the trace ids (add_trace_ids)
        "operation_spans": False,
        "auto_configure": True,
        "exclude": _untraced,
    }


def instrument(settings: Settings, engine: AsyncEngine) -> None:
    """Child spans for SQL statements and Redis commands, once per process."""
    if not settings.tracing:
        return
    try:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    except ImportError as exc:
        raise ConfigurationError(
            "TIDINGS_TRACING=true needs the otel extra: pip install 'tidings[otel]'"
        ) from exc
    # skip_dep_check: the instrumentation's declared range (sqlalchemy < 2.1) trails the
    # releases; the engine events it hooks are the same in 2.1 (tests/e2e/test_tracing.py)
    if "sqlalchemy" not in _instrumented:
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)
        _instrumented.add("sqlalchemy")
    if "redis" not in _instrumented:
        RedisInstrumentor().instrument(skip_dep_check=True)
        _instrumented.add("redis")


def add_trace_ids(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: ``trace_id`` and ``span_id`` of the span being recorded, if any."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span being recorded (an outbox row keeps it), or None:
    without tracing there is none, and this costs one context lookup."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextmanager
def consumer_span(
    consumer: str, event_type: str, event_id: int, traceparent: str | None
) -> Iterator[None]:
    """A span for one consumer applying one event, a child of the request that wrote it (its
    ``traceparent``), so the trace goes on past the commit; nothing without a recording
    tracer provider."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = (
        TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        if traceparent
        else None
    )
    tracer = trace.get_tracer("tidings.events")
    with tracer.start_as_current_span(
        f"consume {event_type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": consumer,
            "messaging.message.id": str(event_id),
        },
    ):
        yield


def configure_worker(settings: Settings) -> Callable[[], None]:
    """`tidings worker` (which has no FastAPI to do it): an SDK tracer provider exporting by
    OTLP/HTTP from the ``OTEL_*`` variables, when tracing is on. Returns what flushes and
    shuts it down at exit."""
    if not settings.tracing:
        return lambda: None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            "TIDINGS_TRACING=true needs the otel extra: pip install 'tidings[otel]'"
        ) from exc
    provider = TracerProvider()  # the resource (OTEL_SERVICE_NAME, ...) from the environment
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider.shutdown
