"""Render every error as RFC 9457 ``application/problem+json`` — the only place that does."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from tidings.core.errors import AppError
from tidings.core.requestid import current_request_id

log = structlog.get_logger("tidings.errors")

PROBLEM_TYPE_BASE = "https://tidings.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_TITLES = {
    400: ("Bad request", "bad-request"),
    401: ("Unauthorized", "unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not-found"),
    405: ("Method not allowed", "method-not-allowed"),
    406: ("Not acceptable", "not-acceptable"),
    409: ("Conflict", "conflict"),
    413: ("Payload too large", "payload-too-large"),
    415: ("Unsupported media type", "unsupported-media-type"),
    422: ("Validation failed", "validation-failed"),
    429: ("Too many requests", "rate-limited"),
    503: ("Service unavailable", "service-unavailable"),
}


def problem_response(
    request: Request | None,
    status: int,
    title: str,
    slug: str,
    detail: str = "",
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail or title,
    }
    if request is not None:
        body["instance"] = request.url.path
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(
        content=orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [part for part in err.get("loc", ()) if isinstance(part, (str, int))]
        out.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return out


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    errors = [{"loc": e.loc, "msg": e.msg, "type": e.type} for e in exc.errors] or None
    return problem_response(
        request,
        exc.status,
        exc.title,
        exc.slug,
        exc.detail,
        headers=exc.headers or None,
        errors=errors,
        **exc.extra,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(
            request, 400, "Malformed JSON", "malformed-json", "The request body is not valid JSON."
        )
    return problem_response(
        request,
        422,
        "Validation failed",
        "validation-failed",
        "The request did not pass validation.",
        errors=errors,
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (RFC 9110 §15.5.6). Starlette's own 405
    names only the methods of the first route whose path matched."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title, slug = _HTTP_TITLES.get(exc.status_code, ("Error", "http-error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return problem_response(request, exc.status_code, title, slug, detail, headers=headers or None)


# SQLSTATEs that mean "a concurrent transaction got in the way": safe for the client to retry.
_RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


async def _database_error(request: Request, exc: Exception) -> Response:
    """Contention is the client's to retry (409/503 with Retry-After); anything else is ours."""
    assert isinstance(exc, DBAPIError)
    if _sqlstate(exc) in _RETRYABLE_SQLSTATES:
        return problem_response(
            request,
            409,
            "Concurrent update",
            "concurrent-update",
            "Another request changed the same data at the same time; retry.",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        return _busy(request, "The database is busy; retry shortly.")
    state = _sqlstate(exc) or ""
    if (
        exc.connection_invalidated  # a pooled connection died (restart, failover, network)
        or exc.statement is None  # no statement: it failed while connecting
        or state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    ):
        return _database_unavailable(request)
    raise exc


async def _statement_error(request: Request, exc: Exception) -> Response:
    """An error of ours raised while a statement was prepared (a column default making an id
    when none may be made, :class:`~tidings.core.ids.IdsUnavailable`): answered as itself;
    anything else stays a 500."""
    assert isinstance(exc, StatementError)
    if isinstance(exc.orig, AppError):
        return await _app_error(request, exc.orig)
    raise exc


# 08: connection exception; 57: operator intervention (shutting down, starting up, crashed)
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")


def _database_unavailable(request: Request) -> Response:
    return problem_response(
        request,
        503,
        "Service unavailable",
        "database-unavailable",
        "The database is unavailable; retry shortly.",
        headers={"Retry-After": "2"},
    )


def _busy(request: Request, detail: str) -> Response:
    return problem_response(
        request, 503, "Service busy", "busy", detail, headers={"Retry-After": "1"}
    )


async def _pool_timeout(request: Request, exc: Exception) -> Response:
    """Every pooled connection stayed busy for the pool's whole timeout: overload, a 503."""
    log.warning("database_pool_exhausted", detail=str(exc))
    return _busy(request, "Every database connection is busy; retry shortly.")


async def _connection_error(request: Request, exc: Exception) -> Response:
    """A socket-level failure reaching a backing service (a refused or reset connection, a
    connect timeout): the database restarting, typically. Transient, so 503."""
    log.warning("backing_service_unreachable", error=type(exc).__name__, detail=str(exc))
    return _database_unavailable(request)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(StatementError, _statement_error)
    app.add_exception_handler(ConnectionError, _connection_error)
    app.add_exception_handler(TimeoutError, _connection_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
