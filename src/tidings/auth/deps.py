"""Route policies. Every route declares exactly one: ``public`` or ``require(permission)``.

``tests/unit/test_route_policies.py`` fails for a route that declares none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tidings.auth import service as auth_service
from tidings.auth.policy import Permission, Principal, refusal
from tidings.core.deps import ContainerDep, DbSession
from tidings.core.errors import Unauthorized
from tidings.core.requestid import current_client_ip

POLICY_ATTR = "__tidings_policy__"

_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/token")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _optional_principal(
    request: Request, credentials: BearerCredentials, container: ContainerDep, session: DbSession
) -> Principal | None:
    """Who is calling, with the general rate limit applied (per IP anonymous, per user signed
    in). Every route passes through here, because every route declares a policy."""
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        await _limit(request, container, "anonymous", client_key())
        return None
    principal = await auth_service.authenticate(
        session,
        container.signer,
        credentials.credentials,
        staff_mfa_required=container.settings.staff_mfa == "required",
    )
    request.state.authenticated = True
    await _limit(request, container, "authenticated", str(principal.user_id))
    return principal


def client_key() -> str:
    return current_client_ip() or "unknown"


async def _limit(request: Request, container: ContainerDep, policy: str, key: str) -> None:
    decision = await container.limiter.enforce(policy, key)
    if decision is not None:
        current = getattr(request.state, "rate_limit", None)
        if current is None or decision.remaining < current.remaining:
            request.state.rate_limit = decision


def limit(policy: str) -> Callable[..., Awaitable[None]]:
    """An extra, tighter budget for a sensitive route: per user or per sign-in session when
    signed in (the policy's scope), else per IP. Budgets of the routes that ask for the
    password again are per session: someone holding a stolen token must not use up the
    budget of the owner signing in elsewhere to stop them."""

    async def dependency(
        request: Request,
        container: ContainerDep,
        principal: Annotated[Principal | None, Depends(_optional_principal)],
    ) -> None:
        scope = container.limiter.policies[policy].scope
        if principal is not None and scope == "user":
            key = str(principal.user_id)
        elif principal is not None and scope == "session":
            key = f"session:{principal.session_id}"
        else:
            key = client_key()
        await _limit(request, container, policy, key)

    dependency.__name__ = f"limit_{policy}"
    return dependency


async def public(
    principal: Annotated[Principal | None, Depends(_optional_principal)],
) -> Principal | None:
    """Anyone may call; the viewer, if signed in, is passed along."""
    return principal


setattr(public, POLICY_ATTR, "public")


async def public_unauthenticated(request: Request, container: ContainerDep) -> None:
    """Anyone may call, and credentials are not even read: for a browser coming back from a
    sign-in provider (who it is comes from the flow). Rate limited per IP like any anonymous
    call; no database session, so the route owns every transaction it opens."""
    await _limit(request, container, "anonymous", client_key())


setattr(public_unauthenticated, POLICY_ATTR, "public")


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A signed-in principal whose role grants ``permission``; 401 without one, 403 without it."""

    async def dependency(
        principal: Annotated[Principal | None, Depends(_optional_principal)],
    ) -> Principal:
        if principal is None:
            raise Unauthorized(  # RFC 6750 §3.1: no error code when no credentials were sent
                "Sign in first: send 'Authorization: Bearer <access token>'.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.can(permission):
            raise refusal(principal, permission, f"This needs the '{permission.value}' permission.")
        return principal

    setattr(dependency, POLICY_ATTR, f"require:{permission.value}")
    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


def policy_of(call: Any) -> str | None:
    return getattr(call, POLICY_ATTR, None)


Viewer = Annotated[Principal | None, Depends(public)]
