"""Routes: the provider list, the browser flow (authorize, callback) and linked identities."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from tidings.accounts.schemas import Reauthentication
from tidings.auth.deps import limit, public_unauthenticated, require
from tidings.auth.deps import public as public_policy
from tidings.auth.policy import Permission, Principal
from tidings.auth.providers import linking, service
from tidings.auth.providers.crypto import STATE_COOKIE
from tidings.auth.providers.registry import ProviderRegistry
from tidings.auth.providers.schemas import (
    PKCE_PATTERN,
    AppState,
    Identity,
    IdentityList,
    LinkRequest,
    LinkStarted,
    ProviderInfo,
    ProviderList,
    ReauthRequest,
    StepUpDone,
    StepUpFinish,
)
from tidings.core.db import utcnow
from tidings.core.deps import ContainerDep, DbSession, unit_of_work
from tidings.settings import PROVIDER_NAME_PATTERN

router = APIRouter(prefix="/api/v1", tags=["sign-in providers"])
ProviderName = Annotated[str, Path(pattern=PROVIDER_NAME_PATTERN, description="e.g. google")]
SelfReader = Annotated[Principal, Depends(require(Permission.SELF_READ))]
SelfWriter = Annotated[Principal, Depends(require(Permission.SELF_WRITE))]
COOKIE_PATH = "/api/v1/auth/"
_ERRORS_DOC: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad or replayed request (problem+json)"},
    403: {"description": "Refused by the email rules (problem+json)"},
    404: {"description": "No such provider (problem+json)"},
    409: {"description": "Conflicts with an existing account or identity (problem+json)"},
    502: {"description": "The provider failed (problem+json)"},
}
_FLOW_DOC = {302: {"description": "Redirect (see docs/oauth.md)"}, **_ERRORS_DOC}


async def registry_of(container: ContainerDep) -> ProviderRegistry:
    if container.oauth is None:
        container.oauth = ProviderRegistry(container.settings, container.keys)
    return container.oauth


Registry = Annotated[ProviderRegistry, Depends(registry_of)]


def _base(request: Request) -> str:
    return str(request.base_url)


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(
    "/auth/providers",
    response_model=ProviderList,
    summary="Enabled sign-in providers (for a login page)",
    dependencies=[Depends(public_policy)],
)
async def list_providers(registry: Registry) -> ProviderList:
    return ProviderList(
        data=[
            ProviderInfo(
                name=p.name,
                type=p.kind,
                display_name=p.display_name,
                authorize_url=f"/api/v1/auth/{p.name}/authorize",
            )
            for p in registry.providers.values()
        ]
    )


@router.get(
    "/auth/{provider}/authorize",
    status_code=302,
    summary="Start signing in with a provider (open in the user's browser)",
    responses=_FLOW_DOC,
    response_class=RedirectResponse,
    dependencies=[Depends(public_policy)],
)
async def authorize(
    provider: ProviderName,
    request: Request,
    session: DbSession,
    registry: Registry,
    redirect_uri: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[AppState | None, Query(description="Echoed back to redirect_uri.")] = None,
    code_challenge: Annotated[str | None, Query(pattern=PKCE_PATTERN)] = None,
    code_challenge_method: Annotated[str | None, Query(max_length=8)] = None,
    link_ticket: Annotated[
        str | None,
        Query(
            max_length=128,
            description="From POST /api/v1/me/identities/{p} or /api/v1/me/reauthentication/{p}.",
        ),
    ] = None,
) -> Response:
    callback_url = registry.callback_url(provider, _base(request))
    if link_ticket is not None:
        started = await service.redeem_link_ticket(
            session, registry, provider, link_ticket, callback_url, utcnow()
        )
    else:
        app = service.AppRequest(redirect_uri, state, code_challenge, code_challenge_method)
        started = await service.start_login(
            session, registry, provider, app, callback_url, utcnow()
        )
    response = _redirect(started.provider_url)
    response.set_cookie(
        STATE_COOKIE,
        registry.cookie.issue(started.state, provider),
        max_age=registry.cookie.ttl_seconds,
        path=COOKIE_PATH,
        secure=registry.secure_cookies(_base(request)),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(
    "/auth/{provider}/callback",
    status_code=302,
    summary="Where the provider sends the browser back (register this URL at the provider)",
    responses=_FLOW_DOC,
    response_class=RedirectResponse,
    dependencies=[Depends(public_unauthenticated)],
)
async def callback(
    provider: ProviderName,
    request: Request,
    container: ContainerDep,
    registry: Registry,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=1024)] = None,
    iss: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    # Two units of work around the provider's requests, none held across them: the state is
    # used up (committed even if the rest fails), then the sign-in is applied.
    answer = service.Callback(code, state, error, error_description, iss)
    async with unit_of_work(container) as session:
        flow = await service.claim(
            session, registry, provider, answer, request.cookies.get(STATE_COOKIE), utcnow()
        )
    callback_url = registry.callback_url(provider, _base(request))
    profile = await service.verify(registry, flow, answer, callback_url)
    async with unit_of_work(container) as session:
        target = await service.finish(session, registry, flow, profile, utcnow())
    response = _redirect(target)
    response.delete_cookie(STATE_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


@router.get("/me/identities", response_model=IdentityList, summary="Your linked sign-in providers")
async def list_identities(principal: SelfReader, session: DbSession) -> IdentityList:
    rows = await linking.identities(session, principal.user_id)
    return IdentityList(data=[Identity.model_validate(row) for row in rows])


@router.post(
    "/me/identities/{provider}",
    response_model=LinkStarted,
    summary="Start linking a provider to your account (with your password; open "
    "authorization_url in a browser)",
    responses={400: _ERRORS_DOC[400], 404: _ERRORS_DOC[404], 409: _ERRORS_DOC[409]},
    dependencies=[Depends(limit("identity_change"))],
)
async def start_link(
    provider: ProviderName,
    body: LinkRequest,
    request: Request,
    principal: SelfWriter,
    session: DbSession,
    registry: Registry,
    container: ContainerDep,
) -> LinkStarted:
    return await service.start_link(
        session,
        registry,
        container.hasher,
        container.limiter,
        principal,
        provider,
        body,
        body.redirect_uri,
        body.state,
        registry.public_base(_base(request)),
        utcnow(),
    )


@router.post(
    "/me/reauthentication/{provider}",
    response_model=LinkStarted,
    summary="Start confirming it is you through a linked provider (accounts without a "
    "password; open authorization_url in a browser, then POST the code it comes back with to "
    "/api/v1/me/reauthentication)",
    responses={400: _ERRORS_DOC[400], 404: _ERRORS_DOC[404]},
    dependencies=[Depends(limit("step_up"))],
)
async def start_reauth(
    provider: ProviderName,
    body: ReauthRequest,
    request: Request,
    principal: SelfWriter,
    session: DbSession,
    registry: Registry,
) -> LinkStarted:
    return await service.start_reauth(
        session,
        registry,
        principal,
        provider,
        body.redirect_uri,
        body.state,
        body.code_challenge,
        registry.public_base(_base(request)),
        utcnow(),
    )


@router.post(
    "/me/reauthentication",
    response_model=StepUpDone,
    summary="Finish confirming it is you: the code the browser came back with (from the "
    "session that started it)",
    responses={422: {"description": "The code or verifier is not usable (problem+json)"}},
    dependencies=[Depends(limit("step_up"))],
)
async def finish_reauth(
    body: StepUpFinish, principal: SelfWriter, session: DbSession
) -> StepUpDone:
    return await service.finish_reauth(session, principal, body.code, body.code_verifier, utcnow())


@router.delete(
    "/me/identities/{provider}",
    status_code=204,
    summary="Unlink a provider (with your password; not the last way to sign in)",
    responses={404: _ERRORS_DOC[404], 409: _ERRORS_DOC[409]},
    dependencies=[Depends(limit("identity_change"))],
)
async def unlink(
    provider: ProviderName,
    body: Reauthentication,
    principal: SelfWriter,
    session: DbSession,
    registry: Registry,
    container: ContainerDep,
) -> Response:
    await linking.unlink(
        session,
        container.settings,
        container.hasher,
        container.limiter,
        principal,
        provider,
        {name: p.display_name for name, p in registry.providers.items()},
        body,
    )
    return Response(status_code=204)
