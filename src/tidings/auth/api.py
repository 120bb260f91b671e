"""Token endpoint (RFC 6749), revocation (RFC 7009) and the public JWKS."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.auth import service
from tidings.auth.deps import public
from tidings.auth.login_guard import password_login
from tidings.auth.providers.codes import redeem_login_code
from tidings.auth.schemas import (
    AuthorizationCodeGrant,
    PasswordGrant,
    RevokeRequest,
    TokenRequest,
    TokenResponse,
)
from tidings.auth.service import TokenPair
from tidings.core.container import Container
from tidings.core.deps import ContainerDep, DbSession
from tidings.core.errors import (
    BadRequest,
    FieldError,
    OAuthError,
    RateLimited,
    UnsupportedMediaType,
)
from tidings.core.metrics import bump, metrics
from tidings.core.requestid import current_client_ip
from tidings.mfa.service import check_sign_in

router = APIRouter(tags=["auth"])
_token_request: TypeAdapter[Any] = TypeAdapter(TokenRequest)
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
_MAX_FIELDS = 20
_GRANTS = frozenset({"password", "refresh_token", "authorization_code"})


def _body_doc(schema_ref: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{schema_ref}"}
    return {
        "requestBody": {
            "required": True,
            "content": {_FORM: {"schema": schema}, _JSON: {"schema": schema}},
        }
    }


async def _read_params(request: Request) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == _FORM:
        form = await request.form(max_fields=_MAX_FIELDS, max_files=0)
        return {key: value for key, value in form.items() if isinstance(value, str)}
    if media_type == _JSON:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadRequest("The request body is not valid JSON.") from exc
        if not isinstance(body, dict):
            raise OAuthError("invalid_request", "The body must be a JSON object.")
        return body
    raise UnsupportedMediaType(f"Send the parameters as {_FORM} or {_JSON}.")


def _invalid_request(exc: ValidationError) -> OAuthError:
    error = OAuthError("invalid_request", "The token request is missing or has bad parameters.")
    error.errors = [
        FieldError(
            loc=["body", *[p for p in e["loc"] if isinstance(p, (str, int))]],
            msg=e["msg"],
            type=e["type"],
        )
        for e in exc.errors()
    ]
    return error


@router.post(
    "/api/v1/auth/token",
    response_model=TokenResponse,
    summary="Get tokens (password, refresh_token or authorization_code grant)",
    openapi_extra=_body_doc("TokenRequestBody"),
    responses={400: {"description": "invalid_request / invalid_grant / unsupported_grant_type"}},
    dependencies=[Depends(public)],
)
async def token(
    request: Request, response: Response, session: DbSession, container: ContainerDep
) -> TokenResponse:
    params = await _read_params(request)
    kind = params.get("grant_type")
    # bounded labels; a JSON body may send any type here (a dict is not even hashable)
    kind = kind if isinstance(kind, str) and kind in _GRANTS else "other"
    counted = metrics().token_requests
    try:
        if kind == "other":
            raise OAuthError(
                "unsupported_grant_type",
                "grant_type must be 'password', 'refresh_token' or 'authorization_code'.",
            )
        try:
            grant = _token_request.validate_python(params)
        except ValidationError as exc:
            raise _invalid_request(exc) from exc
        pair = await _grant(session, container, grant)
    except OAuthError as exc:
        bump(counted, kind, str(exc.extra["error"]))
        raise
    except RateLimited:
        bump(counted, kind, "rate_limited")
        raise
    bump(counted, kind, "issued")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return TokenResponse(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


async def _grant(session: AsyncSession, container: Container, grant: Any) -> TokenPair:
    ttl = container.settings.refresh_token_ttl_seconds
    if isinstance(grant, PasswordGrant):
        pair = await password_login(session, container, grant, ttl)
    elif isinstance(grant, AuthorizationCodeGrant):
        otp = grant.otp

        async def second_factor(user: User) -> None:
            await check_sign_in(session, container, user, otp)

        pair = await redeem_login_code(
            session,
            container.signer,
            grant.code,
            grant.code_verifier,
            grant.redirect_uri,
            ttl,
            second_factor,
        )
    else:
        await container.limiter.enforce("token_refresh", current_client_ip() or "unknown")
        pair = await service.refresh_grant(session, container.signer, grant.refresh_token, ttl)
    return pair


@router.post(
    "/api/v1/auth/revoke",
    status_code=200,
    summary="Sign out: revoke a refresh (or access) token and its whole session",
    openapi_extra=_body_doc("RevokeRequest"),
    dependencies=[Depends(public)],
    response_class=Response,
    responses={200: {"description": "Revoked, or already unknown (RFC 7009 §2.2): no body"}},
)
async def revoke(request: Request, session: DbSession, container: ContainerDep) -> Response:
    params = await _read_params(request)
    try:
        body = RevokeRequest.model_validate(params)
    except ValidationError as exc:
        raise _invalid_request(exc) from exc
    await service.revoke(session, container.signer, body.token)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


_JWKS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An RFC 7517 JWK set",
        "content": {
            "application/jwk-set+json": {
                "schema": {
                    "type": "object",
                    "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
                }
            }
        },
    }
}


@router.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify access tokens",
    dependencies=[Depends(public)],
    response_class=Response,
    responses=_JWKS_DOC,
)
async def jwks(container: ContainerDep) -> Response:
    return Response(
        content=orjson.dumps(container.keys.public_jwks()),
        media_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=300"},
    )
