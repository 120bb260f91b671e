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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.repository import UserRepository
from tidings.accounts.schemas import Reauthentication
from tidings.accounts.service import (
    get_account,
    normalise_email,
    notify_password_changed,
    prove_holder,
)
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.auth.repository import AuthRepository
from tidings.core.db import utcnow
from tidings.core.errors import (
    Conflict,
    FieldError,
    ServiceUnavailable,
    ValidationFailed,
)
from tidings.core.security import PasswordHasher
from tidings.mail.models import OutgoingMail
from tidings.mail.service import mail_enabled, queue_mail
from tidings.ratelimit.limiter import RateLimiter
from tidings.recovery.models import CHANGE, RESET, VERIFY, EmailToken
from tidings.recovery.repository import TokenRepository
from tidings.settings import Settings

log = structlog.get_logger("tidings.recovery")

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


async def _redeem(
    session: AsyncSession, token: str, purpose: str
) -> tuple[EmailToken, User] | None:
    """The token, marked used, and its account, both locked until commit; None when it is
    unknown, used or expired, or its account is gone. The account's row is locked **before**
    the token's: every use of a link takes them in that order, so two links of one account
    used at once (a reset and a change of address) wait for each other. Token first, a
    second link's retiring the first's siblings deadlocked on PostgreSQL (every time, in
    tests/e2e/test_recovery.py)."""
    tokens = TokenRepository(session)
    owner = await tokens.owner(token, purpose)
    if owner is None:
        return None
    user = await UserRepository(session).get_for_update(owner)
    row = await tokens.redeem(token, purpose)
    if user is None or row is None:
        return None
    return row, user


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
    found = await _redeem(session, token, RESET)
    if found is None:
        raise _invalid("reset")
    row, user = found
    if user.suspended or user.deleted_at is not None or user.email != row.email:
        raise _invalid("reset")
    await tokens.retire_others(user.id, RESET, CHANGE)  # a pending change of address stops too
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
    user = await get_account(session, principal.user_id)
    if user.email_verified:
        raise Conflict("Your email address is already verified.")
    minutes = settings.recovery_token_minutes
    expires = utcnow() + timedelta(minutes=minutes)
    token = await TokenRepository(session).issue(user.id, VERIFY, user.email, expires)
    how = _instructions(settings.email_verification_url, token, "POST /api/v1/me/email/verify")
    queue_mail(
        session,
        user.email,
        "Confirm your email address",
        f"Confirm that this address belongs to @{user.username}.\n\n{how}\n"
        f"Use it signed in as @{user.username}; it works once, for {minutes} minutes. "
        "If you did not ask for this, ignore this message.\n",
        expires_at=expires,
    )


async def verify_email(session: AsyncSession, principal: Principal, token: str) -> None:
    """Use a verification link, signed in as the account that asked (as for a change of
    address): someone could register with your address and count on you following the link;
    once verified, your provider sign-in giving that address would be linked to their
    account."""
    tokens = TokenRepository(session)
    found = await _redeem(session, token, VERIFY)
    if found is None or found[1].id != principal.user_id:
        raise _invalid("verification")
    row, user = found
    if user.deleted_at is not None or user.email != row.email:
        raise _invalid("verification")
    await tokens.retire_others(user.id, VERIFY)
    user.email_verified = True
    await record_audit(
        session, AuditAction.EMAIL_VERIFIED, actor_id=user.id, target_type="user", target_id=user.id
    )


def _address_taken() -> Conflict:
    return Conflict(
        "That email address belongs to another account.",
        errors=[FieldError(loc=["body", "email"], msg="already registered")],
    )


def _address_taken_since() -> Conflict:
    return Conflict("The new address now belongs to another account; ask for another change.")


async def request_email_change(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    new_email: str,
    proof: Reauthentication,
) -> None:
    """Mail a link to the new address; the account keeps its address until the link is
    used. The current address is told at once, so that its owner can stop a change they did
    not ask for (changing the password cancels it)."""
    _require_mail(settings)
    user = await get_account(session, principal.user_id)
    if user.password_hash is None:
        # the address is where a lost password is recovered: an account with none (made by a
        # sign-in provider) proves itself through its provider, which may not ask for a
        # password again (GitHub, Google): not enough to move the account's way back in
        raise Conflict(
            "Set a password first (POST /api/v1/me/password, after confirming it is you "
            "through your provider), then change the address with it."
        )
    await prove_holder(session, hasher, limiter, principal, user, proof, "change your email")
    email = normalise_email(new_email)
    if email == user.email:
        raise Conflict(
            "That is already your email address.",
            errors=[FieldError(loc=["body", "email"], msg="unchanged")],
        )
    if await UserRepository(session).email_taken(email, besides=user.id):
        raise _address_taken()  # as registration answers for a taken address
    minutes = settings.recovery_token_minutes
    expires = utcnow() + timedelta(minutes=minutes)
    token = await TokenRepository(session).issue(user.id, CHANGE, email, expires)
    how = _instructions(settings.email_change_url, token, "POST /api/v1/me/email/confirm")
    queue_mail(
        session,
        email,
        "Confirm your new email address",
        f"@{user.username} asked to use this address from now on.\n\n{how}\n"
        f"Use it signed in as @{user.username}; it works once, for {minutes} minutes. "
        "If you did not ask for this, ignore this message: nothing changes.\n",
        expires_at=expires,
    )
    queue_mail(
        session,
        user.email,
        "A change of your email address was requested",
        f"Someone signed in as @{user.username} asked to change its email address to {email}.\n"
        "Nothing changes until a link sent there is used.\n\n"
        "If it was not you, sign in and change your password now: that cancels the change "
        "and signs every session out.\n",
    )
    await record_audit(
        session,
        AuditAction.EMAIL_CHANGE_REQUESTED,
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
    )


async def change_email(
    session: AsyncSession, settings: Settings, principal: Principal, token: str
) -> User:
    """Use a change link, signed in as the account that asked: it takes the new address,
    verified (the link reached it), and the old address is told. Signed in, because whoever
    receives the mail is not always the one who asked: someone could ask to move their own
    account to your address and count on you following the link; later, your sign-in
    through a provider giving that address would be linked to their account."""
    tokens = TokenRepository(session)
    found = await _redeem(session, token, CHANGE)
    if found is None or found[1].id != principal.user_id:
        raise _invalid("email change")
    row, user = found
    if user.suspended or user.deleted_at is not None:
        raise _invalid("email change")
    if await UserRepository(session).email_taken(row.email, besides=user.id):
        raise _address_taken_since()  # the link stays unused
    old = user.email
    await tokens.retire_others(user.id, CHANGE, VERIFY, RESET)  # links to either address
    try:
        async with session.begin_nested():
            user.email = row.email
            user.email_verified = True
            await session.flush()
    except IntegrityError as exc:  # another account took it in the meantime
        raise _address_taken_since() from exc
    await record_audit(
        session, AuditAction.EMAIL_CHANGED, actor_id=user.id, target_type="user", target_id=user.id
    )
    if old != user.email:
        queue_mail(
            session,
            old,
            "Your email address was changed",
            f"The email address of @{user.username} is now {user.email}; mail about the "
            "account, password resets included, goes there.\n\n"
            "If it was not you, contact the service's support: this address no longer "
            "receives the account's mail.\n",
        )
    return user
