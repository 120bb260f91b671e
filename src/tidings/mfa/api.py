"""Routes of two-step sign-in (docs/auth.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from tidings.accounts.schemas import USERNAME_PATTERN, Reauthentication
from tidings.auth.deps import limit, require
from tidings.auth.policy import Permission, Principal
from tidings.auth.providers.crypto import TokenCipher
from tidings.core.container import Container
from tidings.core.deps import ContainerDep, DbSession
from tidings.mfa import service
from tidings.mfa.schemas import MfaOff, MfaStatus, RecoveryCodes, TotpConfirm, TotpStarted
from tidings.mfa.service import cipher_for

router = APIRouter(prefix="/api/v1", tags=["two-step sign-in"])
SelfReader = Annotated[Principal, Depends(require(Permission.SELF_READ))]
SelfWriter = Annotated[Principal, Depends(require(Permission.SELF_WRITE))]
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
UsernamePath = Annotated[str, Path(pattern=USERNAME_PATTERN, max_length=30)]


def _cipher(container: Container) -> TokenCipher:
    return cipher_for(container.settings, container.keys.secret_key)


@router.get("/me/mfa", response_model=MfaStatus, summary="Whether two-step sign-in is on")
async def mfa_status(principal: SelfReader, session: DbSession) -> MfaStatus:
    return await service.status(session, principal)


@router.post(
    "/me/mfa/totp",
    response_model=TotpStarted,
    summary="Start turning on two-step sign-in: a secret for an authenticator app (with your "
    "password)",
    dependencies=[Depends(limit("mfa_change"))],
)
async def start_totp(
    body: Reauthentication, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> TotpStarted:
    return await service.start_totp(
        session,
        _cipher(container),
        container.hasher,
        container.limiter,
        principal,
        body,
    )


@router.post(
    "/me/mfa/totp/confirm",
    response_model=RecoveryCodes,
    summary="Turn two-step sign-in on with a first code from the authenticator; the "
    "recovery codes, shown once",
    dependencies=[Depends(limit("mfa_change"))],
)
async def confirm_totp(
    body: TotpConfirm, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> RecoveryCodes:
    return await service.confirm_totp(
        session,
        container.settings,
        _cipher(container),
        principal,
        body.code,
    )


@router.delete(
    "/me/mfa",
    status_code=204,
    summary="Turn two-step sign-in off (with your password and a code)",
    dependencies=[Depends(limit("mfa_change"))],
)
async def turn_off(
    body: MfaOff, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> Response:
    await service.turn_off(
        session,
        container.settings,
        _cipher(container),
        container.hasher,
        container.limiter,
        principal,
        body,
    )
    return Response(status_code=204)


@router.post(
    "/me/mfa/recovery-codes",
    response_model=RecoveryCodes,
    summary="Ten new recovery codes for the old ones (with your password and a code)",
    dependencies=[Depends(limit("mfa_change"))],
)
async def new_recovery_codes(
    body: MfaOff, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> RecoveryCodes:
    return await service.new_recovery_codes(
        session,
        container.settings,
        _cipher(container),
        container.hasher,
        container.limiter,
        principal,
        body,
    )


@router.delete(
    "/admin/users/{username}/mfa",
    status_code=204,
    summary="Turn a user's two-step sign-in off (lost authenticator and recovery codes; with your "
    "password)",
    dependencies=[Depends(limit("mfa_change"))],
)
async def admin_turn_off(
    username: UsernamePath,
    body: Reauthentication,
    principal: Admin,
    session: DbSession,
    container: ContainerDep,
) -> Response:
    await service.admin_turn_off(
        session, container.settings, container.hasher, container.limiter, principal, body, username
    )
    return Response(status_code=204)
