"""Route policies. Every route declares exactly one: ``public`` or ``require(permission)``.

``tests/unit/test_route_policies.py`` fails for a route that declares none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tidings.auth import service as auth_service
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import ContainerDep, DbSession
from tidings.core.errors import Forbidden, Unauthorized

POLICY_ATTR = "__tidings_policy__"

_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/token")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _optional_principal(
    request: Request, credentials: BearerCredentials, container: ContainerDep, session: DbSession
) -> Principal | None:
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        return None
    principal = await auth_service.authenticate(session, container.signer, credentials.credentials)
    request.state.authenticated = True
    return principal


async def public(
    principal: Annotated[Principal | None, Depends(_optional_principal)],
) -> Principal | None:
    """Anyone may call; the viewer, if signed in, is passed along."""
    return principal


setattr(public, POLICY_ATTR, "public")


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A signed-in principal whose role grants ``permission``; 401 without one, 403 without it."""

    async def dependency(
        principal: Annotated[Principal | None, Depends(_optional_principal)],
    ) -> Principal:
        if principal is None:
            raise Unauthorized("Sign in first: send 'Authorization: Bearer <access token>'.")
        if not principal.can(permission):
            raise Forbidden(f"This needs the '{permission.value}' permission.")
        return principal

    setattr(dependency, POLICY_ATTR, f"require:{permission.value}")
    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


def policy_of(call: Any) -> str | None:
    return getattr(call, POLICY_ATTR, None)


Viewer = Annotated[Principal | None, Depends(public)]
