"""The app factory. Importing this module does no work; ``create_app`` builds everything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, routing
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from pydantic import TypeAdapter

from tidings import __version__
from tidings.accounts.api import router as accounts_router
from tidings.audit.api import router as audit_router
from tidings.auth.api import router as auth_router
from tidings.auth.deps import policy_of
from tidings.auth.providers.api import router as providers_router
from tidings.auth.schemas import RevokeRequest, TokenRequest
from tidings.comments.api import router as comments_router
from tidings.core.clientip import parse_networks
from tidings.core.collector import tune_collector
from tidings.core.container import Container
from tidings.core.errors import ConfigurationError
from tidings.core.headers import SecurityHeadersMiddleware
from tidings.core.health import router as health_router
from tidings.core.ids import configure_ids
from tidings.core.limits import BodySizeLimitMiddleware
from tidings.core.logging import configure_logging
from tidings.core.metrics import MetricsMiddleware, metrics_endpoint
from tidings.core.nodes import NodeLease
from tidings.core.openapi import document_errors
from tidings.core.problems import install_problem_handlers
from tidings.core.requestid import RequestIdMiddleware
from tidings.core.tracing import configure as configure_tracing
from tidings.core.tracing import instrument, telemetry_config
from tidings.core.writers import hold_server_lock
from tidings.events.api import router as dead_letters_router
from tidings.graph.api import own_router as own_relations_router
from tidings.graph.api import router as graph_router
from tidings.mfa.api import router as mfa_router
from tidings.notifications.api import router as notifications_router
from tidings.posts.api import me_router as bookmarks_router
from tidings.posts.api import router as posts_router
from tidings.recovery.api import router as recovery_router
from tidings.reports.api import router as reports_router
from tidings.settings import Settings, get_settings
from tidings.timelines.api import router as timelines_router
from tidings.webhooks.api import router as webhooks_router

DOCS_PATHS = ("/docs", "/redoc", "/static-offline-docs")
DESCRIPTION = """A self-hostable backend for social sharing.

Errors are RFC 9457 `application/problem+json`. Ids are strings. Lists are cursor-paginated.
"""


def _lifespan(container: Container) -> Any:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        events = None
        try:  # before any write: a refused process has written nothing
            lock = hold_server_lock(container.settings)
        except ConfigurationError:
            await container.close()
            raise
        # one node id per process for generated ids, unless TIDINGS_NODE_ID names it
        lease = NodeLease(container.db) if container.settings.node_id is None else None
        try:
            if lease is not None:
                await lease.start()
            if container.settings.runs_relay_in_api:
                events = container.events or container.build_events()
                await events.start(relay=True, consume=True)
            if container.settings.gc_tuning:
                tune_collector()
            yield
        finally:
            if events is not None:
                await events.stop(container.settings.worker_grace_seconds)
            if lease is not None:
                await lease.stop()
            await container.close()
            if lock is not None:
                lock.release()

    return lifespan


def _public_operations(app: FastAPI) -> set[tuple[str, str]]:
    """``(path, method)`` of every route whose policy is ``public`` (credentials optional)."""
    iter_contexts = getattr(routing, "iter_route_contexts", None)  # newer FastAPI; older: flat
    routes: list[Any] = [
        route
        for route in (iter_contexts(app.routes) if iter_contexts else app.routes)
        if isinstance(getattr(route, "original_route", route), routing.APIRoute)
    ]
    public: set[tuple[str, str]] = set()
    for route in routes:
        stack, policies = [route.dependant], set()
        while stack:
            node = stack.pop()
            policies.add(policy_of(node.call))
            stack.extend(node.dependencies)
        if "public" in policies:
            public.update((route.path, method.lower()) for method in route.methods)
    return public


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, adapter in (
            ("TokenRequestBody", TypeAdapter(TokenRequest)),
            ("RevokeRequest", TypeAdapter(RevokeRequest)),
        ):
            body = adapter.json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[name] = body
        document_errors(schema, _public_operations(app), "/api/v1/auth/token")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.effective_log_format)
    if settings.node_id is not None:  # else each serving process leases one (lifespan)
        configure_ids(settings.node_id)
    container = container or Container.build(settings)

    meta: dict[str, Any] = {
        "title": "Tidings",
        "version": __version__,
        "description": DESCRIPTION,
        "lifespan": _lifespan(container),
        "telemetry": telemetry_config(settings),
    }
    configure_tracing(settings, export=False)  # FastAPI adds the exporter at startup
    instrument(settings, container.db.engine)
    if settings.docs_enabled:  # Swagger UI and ReDoc from vendored assets: no CDN
        app = FastAPIOffline(
            openapi_url="/openapi.json", docs_url="/docs", redoc_url="/redoc", **meta
        )
    else:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, **meta)
    app.state.container = container
    install_problem_handlers(app)
    _install_openapi(app)

    routers = (
        health_router,
        auth_router,
        providers_router,
        accounts_router,
        graph_router,
        own_relations_router,
        posts_router,
        bookmarks_router,
        comments_router,
        timelines_router,
        notifications_router,
        webhooks_router,
        reports_router,
        recovery_router,
        mfa_router,
        audit_router,
        dead_letters_router,
    )
    for router in routers:
        app.include_router(router)
    if settings.metrics_enabled:
        app.add_route("/metrics", metrics_endpoint(container), methods=["GET"])

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Link", "X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
    )
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=DOCS_PATHS)
    app.add_middleware(
        RequestIdMiddleware,
        trusted_proxies=parse_networks(settings.trusted_proxies),
        proxy_header=settings.proxy_header or "x-forwarded-for",
    )
    if settings.metrics_enabled:
        app.add_middleware(MetricsMiddleware)  # outermost: times what the client waits for
    return app
