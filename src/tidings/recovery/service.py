"""Recovery use cases: a password reset and an email verification, each by a one-time link
sent by mail. Services never commit: the unit of work does (the mail is queued in the same
transaction, :mod:`tidings.mail.service`)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.repository import UserRepository
from tidings.accounts.service import normalise_email
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.auth.repository import AuthRepository
from tidings.core.db import utcnow
from tidings.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from tidings.core.security import PasswordHasher
from tidings.mail.service import queue_mail
from tidings.recovery.repository import TokenRepository
from tidings.settings import Settings

RESET = "password_reset"
VERIFY = "verify_email"
QUEUED = "If an account has this address, a message with a link is on its way."


def _instructions(settings: Settings, template: str | None, token: str, route: str) -> str:
    if template is not None:
        return f"Open this link:\n\n{template.replace('{token}', token)}\n"
    return f"Your one-time code:\n\n{token}\n\nSend it as `token` to {route}.\n"


def _invalid(what: str) -> ValidationFailed:
    return ValidationFailed(
        f"The {what} link is invalid, used or expired; ask for a new one.",
        errors=[FieldError(loc=["body", "token"], msg="invalid or expired")],
    )


async def request_password_reset(session: AsyncSession, settings: Settings, email: str) -> None:
    """Mail a reset link to the account with this address, if there is one that may sign in;
    answer the same either way."""
    stmt = select(User).where(User.email == normalise_email(email))
    user = (await session.execute(stmt)).scalar_one_or_none()
    if user is None or user.suspended or user.deleted_at is not None:
        return
    minutes = settings.recovery_token_minutes
    token = await TokenRepository(session).issue(
        user.id, RESET, user.email, utcnow() + timedelta(minutes=minutes)
    )
    how = _instructions(
        settings, settings.password_reset_url, token, "POST /api/v1/auth/password-reset/confirm"
    )
    queue_mail(
        session,
        user.email,
        "Reset your password",
        f"Someone asked to reset the password of @{user.username}.\n\n{how}\n"
        f"It works once, for {minutes} minutes, and signs you out everywhere. "
        "If it was not you, ignore this message: your password has not changed.\n",
    )
    await record_audit(
        session, AuditAction.PASSWORD_RESET_REQUESTED, target_type="user", target_id=user.id
    )


async def reset_password(
    session: AsyncSession, hasher: PasswordHasher, token: str, new_password: str
) -> None:
    row = await TokenRepository(session).redeem(token, RESET)
    if row is None:
        raise _invalid("reset")
    user = await UserRepository(session).get_for_update(row.user_id)
    if user is None or user.suspended or user.deleted_at is not None or user.email != row.email:
        raise _invalid("reset")
    user.password_hash = await hasher.hash(new_password)
    user.email_verified = True  # the link reached the address
    await AuthRepository(session).revoke_all_for_user(user.id, "password_reset")
    await record_audit(
        session, AuditAction.PASSWORD_RESET, actor_id=user.id, target_type="user", target_id=user.id
    )


async def request_verification(
    session: AsyncSession, settings: Settings, principal: Principal
) -> None:
    user = await UserRepository(session).get(principal.user_id)
    if user is None:
        raise NotFound("No such account.")
    if user.email_verified:
        raise Conflict("Your email address is already verified.")
    minutes = settings.recovery_token_minutes
    token = await TokenRepository(session).issue(
        user.id, VERIFY, user.email, utcnow() + timedelta(minutes=minutes)
    )
    how = _instructions(
        settings, settings.email_verification_url, token, "POST /api/v1/auth/email/verify"
    )
    queue_mail(
        session,
        user.email,
        "Confirm your email address",
        f"Confirm that this address belongs to @{user.username}.\n\n{how}\n"
        f"It works once, for {minutes} minutes.\n",
    )


async def verify_email(session: AsyncSession, token: str) -> None:
    row = await TokenRepository(session).redeem(token, VERIFY)
    if row is None:
        raise _invalid("verification")
    user = await UserRepository(session).get_for_update(row.user_id)
    if user is None or user.deleted_at is not None or user.email != row.email:
        raise _invalid("verification")
    user.email_verified = True
    await record_audit(
        session, AuditAction.EMAIL_VERIFIED, actor_id=user.id, target_type="user", target_id=user.id
    )
