"""OpenTelemetry traces (docs/operations.md): off unless ``TIDINGS_TRACING=true``.

Each process that traces installs one SDK tracer provider (:func:`configure`) whose sampler
starts traces only at HTTP requests (FastAPI's server spans) and at event consumers; a SQL
statement or Redis command with no span around it (the relay's polling, the broker's reads,
the background loops) is not recorded, so the collector gets requests and what they caused,
not a stream of one-span traces. FastAPI (0.165+) makes the request spans and, with
``auto_configure``, adds its OTLP/HTTP exporter to that provider from the standard
``OTEL_EXPORTER_OTLP_*`` variables; `tidings worker` adds the same exporter itself. SQL
statements (SQLAlchemy) and Redis commands are child spans; log lines carry the trace and span
ids; an event keeps the writing request's ``traceparent`` in its outbox row, and each consumer
applying it is a span of that trace. Needs the ``otel`` extra (`pip install 'tidings[otel]'`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.core.errors import ConfigurationError
from tidings.settings import Settings

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

# probes and scrapes would be most of the spans and tell nothing
UNTRACED = frozenset({"/livez", "/readyz", "/metrics"})
# query parameters that are credentials for a moment (a provider's code, a link ticket)
SECRET_QUERY = frozenset({"code", "state", "link_ticket", "code_verifier", "token"})
_OTEL_EXTRA = "TIDINGS_TRACING=true needs the otel extra: pip install 'tidings[otel]'"
_state: dict[str, Any] = {"on": False, "provider": None, "instrumented": False}
_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("tidings.events")


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED


def telemetry_config(settings: Settings) -> TelemetryConfig:
    """FastAPI's own telemetry: request spans, exported from the environment, when tracing is
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


def _endpoint_and_protocol() -> None:
    """Refuse what would export nothing, silently: no endpoint, or another protocol than the
    OTLP/HTTP (protobuf) exporter both processes use."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        raise ConfigurationError(
            "TIDINGS_TRACING=true needs OTEL_EXPORTER_OTLP_ENDPOINT (or "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): where the collector takes OTLP over HTTP"
        )
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ConfigurationError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf")


def check_ready(settings: Settings) -> None:
    """With tracing on: the otel extra is installed and the environment names an OTLP/HTTP
    endpoint (a ConfigurationError otherwise: `serve` and `worker` refuse to start)."""
    if not settings.tracing:
        return
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.instrumentation.redis
        import opentelemetry.instrumentation.sqlalchemy
        import opentelemetry.sdk.trace  # noqa: F401 - only whether they import
    except ImportError as exc:
        raise ConfigurationError(_OTEL_EXTRA) from exc
    _endpoint_and_protocol()


def configure(settings: Settings, *, export: bool) -> Callable[[], None]:
    """Install this process's tracer provider (once) when tracing is on; with ``export`` (the
    worker) also its OTLP exporter — in the API FastAPI adds it. Returns what flushes and
    shuts the provider down at exit (a no-op when off or configured before)."""
    if not settings.tracing:
        return lambda: None
    check_ready(settings)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    _state["on"] = True
    if _state["provider"] is not None:
        return lambda: None
    # the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) comes from the environment
    root, redact = _sdk_parts()
    provider = TracerProvider(sampler=ParentBased(root=root), shutdown_on_exit=False)
    provider.add_span_processor(redact)
    if export:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    return _shutdown


def _shutdown() -> None:
    provider = _state["provider"]
    if provider is not None:
        provider.force_flush(timeout_millis=5000)
        provider.shutdown()


def instrument(settings: Settings, engine: AsyncEngine) -> None:
    """Child spans for SQL statements and Redis commands (the first engine of the process:
    one per process outside the test suite)."""
    if not settings.tracing or _state["instrumented"]:
        return
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # skip_dep_check: the instrumentation's declared range (sqlalchemy < 2.1) trails the
    # releases; the engine events it hooks are the same in 2.1 (tests/e2e/test_tracing.py)
    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)
    RedisInstrumentor().instrument(skip_dep_check=True)
    _state["instrumented"] = True


def _sdk_parts() -> tuple[Any, Any]:
    """The root sampler and the redacting processor, as the SDK's own kinds (imported only
    when tracing is on: the SDK is in the otel extra)."""
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class RootSampler(Sampler):
        """Starts a trace only at a request (a server span) or an event consumer; anything
        else with no parent — a statement of the relay's polling — is dropped."""

        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Sequence[Any] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            keep = kind in (trace.SpanKind.SERVER, trace.SpanKind.CONSUMER)
            decision = Decision.RECORD_AND_SAMPLE if keep else Decision.DROP
            return SamplingResult(decision, attributes if keep else None, trace_state)

        def get_description(self) -> str:
            return "TidingsRoots{server,consumer}"

    class RedactQuery(SpanProcessor):
        """Masks short-lived credentials in a request span's ``url.query`` (a provider's
        ``code``, a ``link_ticket``) before anything is exported."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            query = (span.attributes or {}).get("url.query")
            if not query:
                return
            pairs = parse_qsl(str(query), keep_blank_values=True)
            if any(key in SECRET_QUERY for key, _ in pairs):
                masked = [(k, "REDACTED" if k in SECRET_QUERY else v) for k, v in pairs]
                span.set_attribute("url.query", urlencode(masked))

    return RootSampler(), RedactQuery()


def add_trace_ids(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, when tracing."""
    if _state["on"]:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event.setdefault("trace_id", format(context.trace_id, "032x"))
            event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (an outbox row keeps it; the sampled flag
    too, so an unsampled request's consumers are not sampled either), or None."""
    if not _state["on"]:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextmanager
def consumer_span(
    consumer: str, event_type: str, event_id: int, traceparent: str | None
) -> Iterator[None]:
    """A span for one consumer applying one event, a child of the request that wrote it (its
    ``traceparent``), so the trace goes on past the commit; nothing when tracing is off. An
    exception marks it failed by type only (its message may quote SQL parameters)."""
    if not _state["on"]:
        yield
        return
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    with _tracer.start_as_current_span(
        f"consume {event_type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "tidings.outbox",
            "messaging.operation.type": "process",
            "messaging.operation.name": "consume",
            "messaging.destination.name": event_type,
            "messaging.consumer.group.name": consumer,
            "messaging.message.id": str(event_id),
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except Exception as exc:
            from tidings.events.consumers import RetryLater

            if not isinstance(exc, RetryLater):  # deferred, not failed
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(trace.StatusCode.ERROR)
            raise
