"""OpenTelemetry traces (docs/operations.md): off unless ``TIDINGS_TRACING=true``.

FastAPI (0.165+) makes a span per HTTP request and, with ``auto_configure``, exports them with
OTLP over HTTP to where the standard ``OTEL_EXPORTER_OTLP_*`` variables say (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES`` and the batch settings are the SDK's). This module adds what
happens inside a request — every SQL statement (SQLAlchemy) and Redis command — as child spans,
and the current trace and span ids to every log line, so a slow request's log and trace meet.
Needs the ``otel`` extra (`pip install 'tidings[otel]'`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
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
