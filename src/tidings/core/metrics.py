"""Prometheus metrics (prometheus-client): `GET /metrics` on the API, and a port of its own for
`tidings worker` (docs/operations.md).

Counters and histograms live in this process's default registry, made once per process on
first use (:func:`metrics`). Under `tidings serve --workers N` every worker process writes them
to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by `serve` before the workers start) and a scrape
of any of them adds up all of them. What the database knows — events waiting for the relay,
dead letters not replayed — is read at scrape time, so every process answers the same.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from tidings.core.container import Container

log = structlog.get_logger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SCRAPE_QUERY_SECONDS = 2.0
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# any other method (a client may send PROPFIND or made-up ones) is "other": bounded labels
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PENDING_COUNT_CAP = 1_000_000  # the backlog gauge counts this far, then says "at least"
# read from the database at each scrape (database_gauges)
DATABASE_GAUGES = (
    "tidings_metrics_database_up",
    "tidings_outbox_pending",
    "tidings_outbox_oldest_pending_seconds",
    "tidings_dead_letters_pending",
)


class Metrics:
    """Every counter and histogram Tidings keeps (one instance per process)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.http_requests = Counter(
            "tidings_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "tidings_http_request_duration_seconds",
            "Time from a request's first byte to its last response byte, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "tidings_rate_limited",
            "Requests refused (429) by a rate-limit policy.",
            ["policy"],
            registry=registry,
        )
        self.token_requests = Counter(
            "tidings_token_requests",
            "Token endpoint answers, by grant type and outcome (issued, or the OAuth error).",
            ["grant_type", "outcome"],
            registry=registry,
        )
        self.events_published = Counter(
            "tidings_events_published",
            "Outbox events the relay handed to the broker (a redelivery counts again).",
            registry=registry,
        )
        self.event_deliveries = Counter(
            "tidings_event_deliveries",
            "Consumer runs of events: applied, already applied, deferred (Redis away), "
            "failed (retried) or dead-lettered.",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "tidings_webhook_attempts",
            "Webhook delivery attempts: delivered, gone (410) or failed.",
            ["outcome"],
            registry=registry,
        )
        self.dependency_pauses = Counter(
            "tidings_dependency_pauses",
            "Times a dependency was skipped for a few seconds after failing "
            "(redis_unavailable, feed_store_failed, row_cache_failed).",
            ["event"],
            registry=registry,
        )
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        key = (method, route, status)
        found = self._http.get(key)
        if found is None:  # labelled children are looked up once per (method, route, status)
            found = self._http[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
        found[0].inc()
        found[1].observe(seconds)


@cache
def metrics() -> Metrics:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: the process start time says as much
    return Metrics()


_failed_once = False


def bump(counter: Any, *labels: str) -> None:
    """``counter`` (with ``labels``) + 1, never failing its caller: counting on a rate limit, a
    delivery or the relay must not turn them into errors (in multiprocess mode a count is a
    write to a file, which a full disk refuses). The first failure is logged."""
    global _failed_once
    try:
        (counter.labels(*labels) if labels else counter).inc()
    except Exception as exc:
        if not _failed_once:
            _failed_once = True
            log.error("metrics_write_failed", error=f"{type(exc).__name__}: {exc}")


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (``/api/v1/posts/{post_id}``,
    never the raw path: bounded labels); requests no route matched are ``unmatched``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception past every handler is answered 500 by the server

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            try:
                self.metrics.observe_http(
                    scope["method"], _template(scope), status, time.perf_counter() - start
                )
            except Exception as exc:  # the response is out: counting must not fail it
                log.error("metrics_write_failed", error=f"{type(exc).__name__}: {exc}")


def _template(scope: Scope) -> str:
    """The route template that answered: FastAPI's routes put themselves in the scope; others
    (the docs, ``/openapi.json``) are found by matching; ``unmatched`` for no route at all
    (unknown paths, and what is answered before routing: 413s, CORS preflights)."""
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            if candidate.matches(scope)[0] is Match.FULL:
                route = candidate
                break
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"


def exposition() -> bytes:
    """This process's metrics, or every worker's under ``PROMETHEUS_MULTIPROC_DIR``."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    metrics()  # declared even before the first request
    return generate_latest(REGISTRY)


class _Snapshot(Collector):
    """Gauges of values read at scrape time: families made for one scrape, never written to
    prometheus-client's files (a ``Gauge`` would be, once per process, in multiprocess mode)."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


async def database_gauges(container: Container) -> bytes:
    """What the database says now: events the relay has not finished (counted up to
    :data:`PENDING_COUNT_CAP`), the oldest one's age, dead letters not replayed, and whether
    it answered within :data:`SCRAPE_QUERY_SECONDS` (``tidings_metrics_database_up``)."""
    import asyncio

    from sqlalchemy import func, select

    from tidings.core.db import utcnow
    from tidings.events.models import DeadLetter, OutboxMessage

    async def read() -> tuple[int, float, int]:
        pending = OutboxMessage.published_at.is_(None)
        async with container.db.unit_of_work(write=False) as session:
            # both walk the (published_at, id) index: capped, and the first in id order
            capped = select(OutboxMessage.id).where(pending).limit(PENDING_COUNT_CAP).subquery()
            count = await session.scalar(select(func.count()).select_from(capped))
            first = await session.scalar(
                select(OutboxMessage.created_at).where(pending).order_by(OutboxMessage.id).limit(1)
            )
            letters = await session.scalar(
                select(func.count()).where(DeadLetter.replayed_at.is_(None))
            )
        age = (utcnow() - first).total_seconds() if first is not None else 0.0
        return int(count or 0), max(0.0, age), int(letters or 0)

    up = GaugeMetricFamily(
        DATABASE_GAUGES[0],
        "1 when the database answered this scrape's questions in time, else 0.",
    )
    families = [up]
    try:
        count, age, letters = await asyncio.wait_for(read(), SCRAPE_QUERY_SECONDS)
    except Exception as exc:  # a scrape must answer: the counters still count
        log.warning("metrics_database_unavailable", error=f"{type(exc).__name__}: {exc}")
        up.add_metric([], 0)
    else:
        up.add_metric([], 1)
        families += [
            GaugeMetricFamily(
                DATABASE_GAUGES[1],
                f"Outbox events not yet applied by every consumer (counted up to "
                f"{PENDING_COUNT_CAP:,}).",
                value=count,
            ),
            GaugeMetricFamily(
                DATABASE_GAUGES[2],
                "Age of the oldest outbox event not yet applied by every consumer (0: none).",
                value=age,
            ),
            GaugeMetricFamily(
                DATABASE_GAUGES[3],
                "Dead-lettered deliveries not replayed.",
                value=letters,
            ),
        ]
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    return generate_latest(registry)


def metrics_endpoint(container: Container) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: open in development; with ``TIDINGS_METRICS_TOKEN`` set, only with
    ``Authorization: Bearer <token>``; in production without a token, not served (404)."""
    settings = container.settings
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    async def endpoint(request: Request) -> Response:
        from tidings.core.problems import problem_response

        if token is None and settings.is_production:
            return problem_response(request, 404, "Not found", "not-found", "Not found.")
        if token is not None:
            sent = request.headers.get("authorization", "")
            scheme, _, value = sent.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), token.encode()
            ):
                return problem_response(
                    request,
                    401,
                    "Unauthorized",
                    "unauthorized",
                    "Send 'Authorization: Bearer <TIDINGS_METRICS_TOKEN>'.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        body = exposition() + await database_gauges(container)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return endpoint
