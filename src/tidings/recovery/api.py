"""Recovery routes: password reset and email verification by one-time links sent by mail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Response

from tidings.auth.deps import Viewer, limit, require
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import ContainerDep, DbSession
from tidings.core.requestid import current_client_ip
from tidings.recovery import service
from tidings.recovery.schemas import (
    EmailChange,
    EmailChangeRequest,
    EmailVerification,
    MailQueued,
    PasswordReset,
    PasswordResetRequest,
)

router = APIRouter(prefix="/api/v1", tags=["account recovery"])
SelfWriter = Annotated[Principal, Depends(require(Permission.SELF_WRITE))]


@router.post(
    "/auth/password-reset",
    status_code=202,
    response_model=MailQueued,
    summary="Forgot your password: mail a reset link (the same answer for any address)",
    dependencies=[Depends(limit("password_reset"))],
)
async def request_reset(
    body: PasswordResetRequest, session: DbSession, container: ContainerDep, _viewer: Viewer
) -> MailQueued:
    await service.request_password_reset(session, container.settings, str(body.email))
    return MailQueued(detail=service.QUEUED)


@router.post(
    "/auth/password-reset/confirm",
    status_code=204,
    summary="Set a new password with the link's token (signs out everywhere)",
    dependencies=[Depends(limit("recovery_confirm"))],
)
async def reset(
    body: PasswordReset,
    session: DbSession,
    container: ContainerDep,
    background: BackgroundTasks,
    _viewer: Viewer,
) -> Response:
    user = await service.reset_password(
        session, container.settings, container.hasher, body.token, body.new_password
    )
    # whoever holds the link may sign in from here again at once: the lockout after failed
    # sign-ins from this client ends for the account's username and email, once the new
    # password is committed (background tasks run after the response, so after the commit)
    ip = current_client_ip() or "unknown"
    for login in (user.username_key, user.email):
        background.add_task(container.limiter.reset, "login_lockout", f"{login}|{ip}")
    return Response(status_code=204, background=background)


@router.post(
    "/me/email/verification",
    status_code=202,
    response_model=MailQueued,
    summary="Mail a link that confirms your email address",
    dependencies=[Depends(limit("email_verification"))],
)
async def request_verification(
    principal: SelfWriter, session: DbSession, container: ContainerDep
) -> MailQueued:
    await service.request_verification(session, container.settings, principal)
    return MailQueued(detail="A message with a link is on its way.")


@router.post(
    "/me/email/verify",
    status_code=204,
    summary="Confirm your email address with the link's token (signed in)",
    dependencies=[Depends(limit("recovery_confirm"))],
)
async def verify(body: EmailVerification, principal: SelfWriter, session: DbSession) -> Response:
    await service.verify_email(session, principal, body.token)
    return Response(status_code=204)


@router.post(
    "/me/email",
    status_code=202,
    response_model=MailQueued,
    summary="Change your email address: mail a link to the new one (with your password)",
    dependencies=[Depends(limit("email_change"))],
)
async def request_email_change(
    body: EmailChangeRequest, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> MailQueued:
    await service.request_email_change(
        session,
        container.settings,
        container.hasher,
        container.limiter,
        principal,
        str(body.email),
        body,
    )
    return MailQueued(
        detail="A message with a link is on its way to the new address; "
        "your address changes when it is used."
    )


@router.post(
    "/me/email/confirm",
    status_code=204,
    summary="Move your account to the new email address with the link's token (signed in)",
    dependencies=[Depends(limit("recovery_confirm"))],
)
async def confirm_email_change(
    body: EmailChange, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> Response:
    await service.change_email(session, container.settings, principal, body.token)
    return Response(status_code=204)
