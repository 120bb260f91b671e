"""Every documented route declares exactly one access policy: ``public`` or ``require(...)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, routing
from fastapi.dependencies.models import Dependant
from starlette.routing import BaseRoute

from tests.conftest import make_settings
from tidings.accounts.api import router as accounts_router
from tidings.app import create_app
from tidings.auth.api import router as auth_router
from tidings.auth.deps import policy_of, public, require
from tidings.auth.policy import Permission
from tidings.core.deps import DbSession, get_session
from tidings.core.health import router as health_router

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def policies(dependant: Dependant) -> set[str]:
    """Every policy found anywhere in a route's dependency tree."""
    found: set[str] = set()
    stack = [dependant]
    while stack:
        node = stack.pop()
        policy = policy_of(node.call)
        if policy is not None:
            found.add(policy)
        stack.extend(node.dependencies)
    return found


def route_problem(path: str, methods: set[str] | None, dependant: Dependant) -> str | None:
    """None when the route declares exactly one policy, else a message saying what is wrong."""
    declared = policies(dependant)
    if len(declared) == 1:
        return None
    return f"{sorted(methods or ())} {path}: {sorted(declared) or 'no policy'}"


def _legacy_api_routes(routes: list[BaseRoute]) -> Iterator[Any]:
    """Older FastAPI: included routes are copied flat into ``app.routes``."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from _legacy_api_routes(original.routes)
        elif isinstance(route, routing.APIRoute):
            yield route


def schema_routes(app: FastAPI) -> list[Any]:
    """The API routes of ``app`` that appear in its OpenAPI schema, each with the effective
    ``path``, ``methods`` and ``dependant`` (router-level dependencies included).

    Newer FastAPI wraps included routers in ``_IncludedRouter``; ``iter_route_contexts`` is
    what its own OpenAPI generator walks, so it sees exactly the routes the schema lists.
    """
    iter_contexts: Callable[..., Iterator[Any]] | None = getattr(
        routing, "iter_route_contexts", None
    )
    candidates: list[Any]
    if iter_contexts is not None:
        candidates = [
            context
            for context in iter_contexts(app.routes)
            if isinstance(context.original_route, routing.APIRoute)
        ]
    else:
        candidates = list(_legacy_api_routes(app.routes))
    return [route for route in candidates if route.include_in_schema]


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(make_settings(tmp_path, "sqlite+aiosqlite:///" + str(tmp_path / "x.db")))


def test_every_schema_route_declares_exactly_one_policy(app: FastAPI) -> None:
    routes = schema_routes(app)
    problems = [route_problem(r.path, set(r.methods), r.dependant) for r in routes]
    assert [p for p in problems if p] == []


def test_walk_covers_every_operation_in_the_schema(app: FastAPI) -> None:
    """The walk above must not silently miss routes: it sees every documented operation."""
    walked = {(r.path, m.lower()) for r in schema_routes(app) for m in r.methods}
    documented = {
        (path, method)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert walked == documented
    assert ("/api/v1/auth/token", "post") in documented
    assert ("/api/v1/me", "get") in documented
    assert ("/livez", "get") in documented
    assert len(documented) >= 12


def test_feature_routers_declare_policies_on_their_own() -> None:
    """The same check on the routers as written, independent of how the app includes them."""
    for router in (health_router, auth_router, accounts_router):
        api_routes = [r for r in router.routes if isinstance(r, routing.APIRoute)]
        assert api_routes
        for route in api_routes:
            assert route_problem(route.path, route.methods, route.dependant) is None


def test_expected_policies_on_key_routes(app: FastAPI) -> None:
    declared = {
        (r.path, method): policies(r.dependant) for r in schema_routes(app) for method in r.methods
    }
    assert declared[("/livez", "GET")] == {"public"}
    assert declared[("/api/v1/auth/token", "POST")] == {"public"}
    assert declared[("/api/v1/accounts", "POST")] == {"public"}
    assert declared[("/api/v1/me", "GET")] == {"require:self:read"}
    assert declared[("/api/v1/me", "PATCH")] == {"require:self:write"}
    assert declared[("/api/v1/admin/users", "GET")] == {"require:users:manage"}
    assert declared[("/api/v1/admin/users/{username}", "PATCH")] == {"require:users:manage"}


def test_the_oauth_callback_opens_no_session_of_its_own(app: FastAPI) -> None:
    """It opens its two units of work itself around the provider's requests: nothing in its
    dependencies (policy included) may hold a request session across them."""
    [route] = [r for r in schema_routes(app) if r.path == "/api/v1/auth/{provider}/callback"]
    stack, calls = [route.dependant], set()
    while stack:
        node = stack.pop()
        calls.add(node.call)
        stack.extend(node.dependencies)
    assert get_session not in calls
    assert policies(route.dependant) == {"public"}


# --- the check itself can fail ----------------------------------------------------------------


async def _no_policy(session: DbSession) -> dict[str, str]:
    return {}


async def _two_policies(
    _a: Any = Depends(require(Permission.SELF_READ)),
    _b: Any = Depends(require(Permission.USERS_MANAGE)),
) -> dict[str, str]:
    return {}


async def _public(_viewer: Any = Depends(public)) -> dict[str, str]:
    return {}


def test_a_route_without_a_policy_is_detected() -> None:
    route = routing.APIRoute("/unguarded", _no_policy, methods=["GET"])
    assert policies(route.dependant) == set()
    problem = route_problem(route.path, route.methods, route.dependant)
    assert problem is not None
    assert "/unguarded" in problem
    assert "no policy" in problem


def test_a_route_with_two_policies_is_detected() -> None:
    route = routing.APIRoute("/confused", _two_policies, methods=["GET"])
    problem = route_problem(route.path, route.methods, route.dependant)
    assert problem is not None
    assert "require:self:read" in problem
    assert "require:users:manage" in problem


def test_a_route_with_a_policy_passes() -> None:
    route = routing.APIRoute("/open", _public, methods=["GET"])
    assert route_problem(route.path, route.methods, route.dependant) is None


def test_an_unguarded_route_added_to_an_app_is_caught(app: FastAPI) -> None:
    extra = APIRouter(prefix="/api/v1")
    extra.add_api_route("/leaky", _no_policy, methods=["GET"])
    app.include_router(extra)
    app.openapi_schema = None
    problems = [
        p
        for r in schema_routes(app)
        if (p := route_problem(r.path, set(r.methods), r.dependant)) is not None
    ]
    assert problems == ["['GET'] /api/v1/leaky: no policy"]
    assert "/api/v1/leaky" in app.openapi()["paths"]
