"""Recovery use cases: a password reset and an email verification, each by a one-time link
sent by mail. Services never commit: the unit of work does (mail is queued in the same
transaction, :mod:`tidings.mail.service`).

A reset request does the same work whatever the address: it queues a mail of kind
:data:`RESET_MAIL` to it, and nothing else. Whether an account has that address is decided when
the mail loop renders it (:func:`render_password_reset`), outside the request, so neither the
answer nor its timing tells the caller. The renderer also caps the links mailed to one account
(:data:`RESETS_PER_HOUR`): flooding an inbox takes more than many addresses to send from.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.repository import UserRepository
from tidings.accounts.service import normalise_email, notify_password_changed
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.auth.repository import AuthRepository
from tidings.core.db import utcnow
from tidings.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from tidings.core.security import PasswordHasher
from tidings.mail.models import OutgoingMail
from tidings.mail.service import mail_enabled, queue_mail
from tidings.recovery.repository import TokenRepository
from tidings.settings import Settings

log = structlog.get_logger("tidings.recovery")

RESET = "password_reset"
VERIFY = "verify_email"
RESET_MAIL = "password_reset"  # the mail kind rendered by render_password_reset
RESETS_PER_HOUR = 3
QUEUED = "If an account has this address, a message with a link is on its way."


def _require_mail(settings: Settings) -> None:
    if not mail_enabled(settings):
        raise ServiceUnavailable("This server sends no mail (TIDINGS_MAIL_BACKEND=disabled).")


def _instructions(template: str | None, token: str, route: str) -> str:
    if template is not None:
        return f"Open this link:\n\n{template.replace('{token}', token)}\n"
    return f"Your one-time code:\n\n{token}\n\nSend it as `token` to {route}.\n"


def _invalid(what: str) -> ValidationFailed:
    return ValidationFailed(
        f"The {what} link is invalid, used or expired; ask for a new one.",
        errors=[FieldError(loc=["body", "token"], msg="invalid or expired")],
    )


async def request_password_reset(session: AsyncSession, settings: Settings, email: str) -> None:
    """Queue a reset mail to the address; whether it goes, and to whom, is decided later."""
    _require_mail(settings)
    expires = utcnow() + timedelta(minutes=settings.recovery_token_minutes)
    queue_mail(session, normalise_email(email), "", kind=RESET_MAIL, expires_at=expires)


async def render_password_reset(
    session: AsyncSession, mail: OutgoingMail, settings: Settings
) -> bool:
    """The mail loop's renderer for :data:`RESET_MAIL`: a link for the account with the
    address, if there is one that may sign in and has not had too many lately."""
    stmt = select(User).where(User.email == mail.to_address)
    user = (await session.execute(stmt)).scalar_one_or_none()
    if user is None or user.suspended or user.deleted_at is not None:
        return False
    tokens = TokenRepository(session)
    now = utcnow()
    if await tokens.issued_since(user.id, RESET, now - timedelta(hours=1)) >= RESETS_PER_HOUR:
        log.info("password_reset_capped", user_id=user.id)
        return False
    minutes = settings.recovery_token_minutes
    token = await tokens.issue(user.id, RESET, user.email, now + timedelta(minutes=minutes))
    how = _instructions(
        settings.password_reset_url, token, "POST /api/v1/auth/password-reset/confirm"
    )
    mail.subject = "Reset your password"
    mail.body = (
        f"Someone asked to reset the password of @{user.username}.\n\n{how}\n"
        f"It works once, for {minutes} minutes, and signs you out everywhere. "
        "If it was not you, ignore this message: your password has not changed.\n"
    )
    await record_audit(
        session, AuditAction.PASSWORD_RESET_REQUESTED, target_type="user", target_id=user.id
    )
    return True


async def reset_password(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    token: str,
    new_password: str,
) -> User:
    tokens = TokenRepository(session)
    row = await tokens.redeem(token, RESET)
    if row is None:
        raise _invalid("reset")
    user = await UserRepository(session).get_for_update(row.user_id)
    if user is None or user.suspended or user.deleted_at is not None or user.email != row.email:
        raise _invalid("reset")
    await tokens.retire_others(user.id, RESET)
    user.password_hash = await hasher.hash(new_password)
    user.email_verified = True  # the link reached the address
    await AuthRepository(session).revoke_all_for_user(user.id, "password_reset")
    await record_audit(
        session, AuditAction.PASSWORD_RESET, actor_id=user.id, target_type="user", target_id=user.id
    )
    notify_password_changed(session, settings, user)
    return user


async def request_verification(
    session: AsyncSession, settings: Settings, principal: Principal
) -> None:
    _require_mail(settings)
    user = await UserRepository(session).get(principal.user_id)
    if user is None:
        raise NotFound("No such account.")
    if user.email_verified:
        raise Conflict("Your email address is already verified.")
    minutes = settings.recovery_token_minutes
    expires = utcnow() + timedelta(minutes=minutes)
    token = await TokenRepository(session).issue(user.id, VERIFY, user.email, expires)
    how = _instructions(settings.email_verification_url, token, "POST /api/v1/auth/email/verify")
    queue_mail(
        session,
        user.email,
        "Confirm your email address",
        f"Confirm that this address belongs to @{user.username}.\n\n{how}\n"
        f"It works once, for {minutes} minutes.\n",
        expires_at=expires,
    )


async def verify_email(session: AsyncSession, token: str) -> None:
    tokens = TokenRepository(session)
    row = await tokens.redeem(token, VERIFY)
    if row is None:
        raise _invalid("verification")
    user = await UserRepository(session).get_for_update(row.user_id)
    if user is None or user.deleted_at is not None or user.email != row.email:
        raise _invalid("verification")
    await tokens.retire_others(user.id, VERIFY)
    user.email_verified = True
    await record_audit(
        session, AuditAction.EMAIL_VERIFIED, actor_id=user.id, target_type="user", target_id=user.id
    )
