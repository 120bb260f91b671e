"""Sign-in use cases: password and refresh-token grants, revocation, access-token checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.repository import UserRepository
from tidings.audit.service import AuditAction, login_digest, record_audit
from tidings.auth.models import AuthSession
from tidings.auth.policy import Principal, Role
from tidings.auth.repository import SESSION, AuthRepository
from tidings.core.cache import Row, cache_of
from tidings.core.db import utcnow
from tidings.core.errors import OAuthError, Unauthorized
from tidings.core.security import (
    PasswordHasher,
    TokenError,
    TokenSigner,
    hash_token,
    new_refresh_token,
)
from tidings.mfa.repository import MfaRepository
from tidings.posts.cache import PROFILE, PROFILE_COLUMNS
from tidings.posts.repository import PostRepository

BAD_CREDENTIALS = "Invalid username or password."
BAD_REFRESH = "The refresh token is invalid, expired or revoked."

# checks two-step sign-in for the account whose first factor held (raises OAuthError)
SecondFactor = Callable[[User], Awaitable[None]]


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


async def authenticate(
    session: AsyncSession, signer: TokenSigner, token: str, *, staff_mfa_required: bool
) -> Principal:
    """Verify an access token and load who it speaks for; the database has the last word on
    suspension, role and sign-out. With ``staff_mfa_required`` a moderator or admin whose
    account has no two-step sign-in acts as a user (one more query, for staff only): every
    check of a staff power, at the route or in a service, then says no."""
    try:
        claims = signer.verify(token)
    except TokenError as exc:
        raise Unauthorized("The access token is invalid or expired.") from exc
    user, state = await _sign_in_state(session, claims.subject, claims.session_id)
    if user is None or state is None or state["user_id"] != claims.subject:
        raise Unauthorized("The access token is invalid or expired.")
    if state["revoked"]:
        raise Unauthorized("This session has been signed out.")
    if user["suspended"]:
        raise Unauthorized("The account is suspended.")
    role, held = Role(user["role"]), None
    staff = role is not Role.USER and staff_mfa_required
    if staff and await MfaRepository(session).confirmed(claims.subject) is None:
        role, held = Role.USER, role
    return Principal(
        user_id=claims.subject,
        username=user["username"],
        role=role,
        session_id=claims.session_id,
        held_role=held,
    )


async def _sign_in_state(
    session: AsyncSession, user_id: int, session_id: int
) -> tuple[Row | None, Row | None]:
    """The user's profile (with role and suspension) and the session's state: with a row cache,
    both in one ``MGET`` (evicted when a commit changes the user or revokes the session); else
    from the database."""
    repo = AuthRepository(session)
    cache = cache_of(session)
    if cache is None:
        found = await repo.sign_in_state(user_id, session_id, PROFILE_COLUMNS)
        return found if found is not None else (None, None)

    async def profiles(ids: list[int]) -> dict[int, Row]:
        return await PostRepository(session).profile_rows(ids, PROFILE_COLUMNS)

    users, states = await cache.get_groups(
        [(PROFILE, [user_id], profiles), (SESSION, [session_id], repo.session_rows)]
    )
    return users.get(user_id), states.get(session_id)


LAST_USED_GRAIN = timedelta(minutes=5)  # how fresh a session's last_used_at is kept


async def _issue(
    session: AsyncSession, signer: TokenSigner, user: User, session_id: int, refresh_ttl: int
) -> TokenPair:
    refresh = new_refresh_token()
    await AuthRepository(session).add_token(
        session_id, hash_token(refresh), utcnow() + timedelta(seconds=refresh_ttl)
    )
    return TokenPair(
        access_token=signer.issue(user.id, session_id),
        refresh_token=refresh,
        expires_in=signer.ttl_seconds,
    )


async def open_session(
    session: AsyncSession, signer: TokenSigner, user: User, refresh_ttl: int
) -> tuple[AuthSession, TokenPair]:
    """A new sign-in session for ``user`` and its first token pair (sign-in providers use this
    after their own checks; the caller records the audit event)."""
    auth_session = await AuthRepository(session).new_session(user.id)
    return auth_session, await _issue(session, signer, user, auth_session.id, refresh_ttl)


async def password_grant(
    session: AsyncSession,
    hasher: PasswordHasher,
    signer: TokenSigner,
    login: str,
    password: str,
    refresh_ttl: int,
    audit_key: bytes,
    second_factor: SecondFactor,
) -> TokenPair:
    """Sign in with a password; ``second_factor`` checks two-step sign-in once the password
    held (:func:`tidings.mfa.service.check_sign_in`; required, so that no caller forgets)."""
    user = await UserRepository(session).by_login(login)
    valid, rehashed = await hasher.verify(password, user.password_hash if user else None)
    if user is None or not valid:
        # never the typed text: a password typed into the name field would stay for good
        if user is None:
            typed: dict[str, str] = {"login_digest": login_digest(audit_key, login)}
        else:
            typed = {"login_as": "email" if "@" in login else "username"}
        await record_audit(
            session,
            AuditAction.LOGIN_FAILED,
            actor_id=user.id if user else None,
            target_type="user",
            target_id=user.id if user else None,
            **typed,
        )
        # keep_changes: the failure answers 400 but its audit event must be committed
        raise OAuthError("invalid_grant", BAD_CREDENTIALS, keep_changes=True)
    if user.suspended:
        raise OAuthError("invalid_grant", "The account is suspended.")
    await second_factor(user)
    if rehashed:
        user.password_hash = rehashed
    auth_session = await AuthRepository(session).new_session(user.id)
    await record_audit(
        session,
        AuditAction.LOGIN,
        actor_id=user.id,
        target_type="session",
        target_id=auth_session.id,
        method="password",
    )
    return await _issue(session, signer, user, auth_session.id, refresh_ttl)


async def refresh_grant(
    session: AsyncSession, signer: TokenSigner, refresh_token: str, refresh_ttl: int
) -> TokenPair:
    """Rotate a refresh token. Presenting one that was already rotated is treated as theft:
    the whole family is revoked (and that revocation is committed even though we answer 400)."""
    repo = AuthRepository(session)
    found = await repo.token_by_hash(hash_token(refresh_token))
    if found is None:
        raise OAuthError("invalid_grant", BAD_REFRESH)
    token, auth_session = found
    now = utcnow()
    if auth_session.revoked_at is not None or token.expires_at <= now:
        raise OAuthError("invalid_grant", BAD_REFRESH)
    if token.used_at is not None or not await repo.claim_token(token.id, now):
        await repo.revoke_session(auth_session.id, "refresh_reuse")
        await record_audit(
            session,
            AuditAction.REFRESH_REUSE,
            actor_id=auth_session.user_id,
            target_type="session",
            target_id=auth_session.id,
        )
        raise OAuthError("invalid_grant", BAD_REFRESH, keep_changes=True)
    user = await UserRepository(session).get(auth_session.user_id)
    if user is None or user.suspended:
        raise OAuthError("invalid_grant", BAD_REFRESH)
    last = auth_session.last_used_at
    if last is None or now - last > LAST_USED_GRAIN:  # a write at most every few minutes
        auth_session.last_used_at = now
    return await _issue(session, signer, user, auth_session.id, refresh_ttl)


async def revoke(session: AsyncSession, signer: TokenSigner, token: str) -> None:
    """RFC 7009: revoke the session a refresh or access token belongs to. Unknown tokens are
    not an error (the spec asks for 200 either way)."""
    repo = AuthRepository(session)
    found = await repo.token_by_hash(hash_token(token))
    if found is not None:
        await repo.revoke_session(found[1].id, "logout")
        await record_audit(
            session,
            AuditAction.LOGOUT,
            actor_id=found[1].user_id,
            target_type="session",
            target_id=found[1].id,
        )
        return
    try:
        claims = signer.verify(token)
    except TokenError:
        return
    await repo.revoke_session(claims.session_id, "logout")
    await record_audit(
        session,
        AuditAction.LOGOUT,
        actor_id=claims.subject,
        target_type="session",
        target_id=claims.session_id,
    )
