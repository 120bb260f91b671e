"""One-time login codes: issued at the end of the callback, exchanged (once, within 60 s, with
the app's PKCE verifier when it sent a challenge) at ``POST /api/v1/auth/token``."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.repository import UserRepository
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.providers.models import OAuthAuthorization, OAuthLoginCode
from tidings.auth.providers.repository import ProviderRepository
from tidings.auth.repository import AuthRepository
from tidings.auth.service import SecondFactor, TokenPair, open_session
from tidings.core.db import utcnow
from tidings.core.errors import OAuthError
from tidings.core.security import TokenSigner, hash_token

LOGIN_CODE_TTL = timedelta(seconds=60)
BAD_CODE = "The authorization code is invalid, expired or already used."


def with_query(uri: str, **params: str | None) -> str:
    """``uri`` with ``params`` appended to whatever query it already has."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def issue_login_code(
    session: AsyncSession, flow: OAuthAuthorization, user_id: int, now: datetime
) -> str:
    """A new code for ``user_id``; returns the app redirect URI carrying it."""
    code = generate_token(48)
    await ProviderRepository(session).add_login_code(
        OAuthLoginCode(
            code_hash=hash_token(code),
            user_id=user_id,
            provider=flow.provider,
            redirect_uri=flow.redirect_uri,
            code_challenge=flow.code_challenge,
            code_challenge_method=flow.code_challenge_method,
            expires_at=now + LOGIN_CODE_TTL,
        ),
        now,
    )
    return with_query(flow.redirect_uri, code=code, state=flow.app_state)


def _check_pkce(row: OAuthLoginCode, verifier: str | None) -> None:
    if row.code_challenge is None:
        if verifier is not None:  # RFC 9700 2.1.1: refuse a verifier nobody asked for
            raise OAuthError("invalid_grant", "No code_challenge was sent for this code.")
        return
    if verifier is None:
        raise OAuthError("invalid_grant", "code_verifier is required for this code.")
    expected = create_s256_code_challenge(verifier)
    if not hmac.compare_digest(expected, row.code_challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge.")


async def redeem_login_code(
    session: AsyncSession,
    signer: TokenSigner,
    code: str,
    code_verifier: str | None,
    redirect_uri: str | None,
    refresh_ttl: int,
    second_factor: SecondFactor,
) -> TokenPair:
    """Exchange a login code for tokens. A second use revokes the session the first one
    started (RFC 6749 10.5), and that revocation is committed though the request fails.
    ``second_factor`` checks two-step sign-in: a missing code leaves the login code usable
    (the app asks the user and sends both again within its minute), a wrong one uses it up."""
    repo = ProviderRepository(session)
    row = await repo.login_code(hash_token(code))
    now = utcnow()
    if row is None:
        raise OAuthError("invalid_grant", BAD_CODE)
    if row.used_at is not None:
        await _replayed(session, row, now)
    if row.expires_at <= now:
        raise OAuthError("invalid_grant", BAD_CODE)
    if redirect_uri is not None and redirect_uri != row.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the one this code was for.")
    _check_pkce(row, code_verifier)
    user = await UserRepository(session).get(row.user_id)
    if user is None or user.suspended:
        raise OAuthError("invalid_grant", BAD_CODE)
    try:
        await second_factor(user)
    except OAuthError as exc:
        if exc.extra.get("error") != "mfa_required":  # a wrong code: this login is spent
            await repo.claim_login_code(row.id, now)
        raise
    if not await repo.claim_login_code(row.id, now):
        await session.refresh(row)
        await _replayed(session, row, now)
    auth_session, pair = await open_session(session, signer, user, refresh_ttl)
    row.session_id = auth_session.id
    await record_audit(
        session,
        AuditAction.IDENTITY_LOGIN,
        actor_id=user.id,
        target_type="session",
        target_id=auth_session.id,
        provider=row.provider,
    )
    return pair


async def _replayed(session: AsyncSession, row: OAuthLoginCode, now: datetime) -> NoReturn:
    """A used code came back: whoever holds it now may have stolen it. The session the first
    exchange started is revoked and, while the code was still live, the attempt audited; both
    are committed though the request fails (as for a reused refresh token). Replays of an
    expired code are refused like unknown ones, unaudited, so they cannot flood the trail."""
    if row.session_id is not None:
        await AuthRepository(session).revoke_session(row.session_id, "code_reuse")
    if row.expires_at <= now:
        raise OAuthError("invalid_grant", BAD_CODE, keep_changes=True)
    await record_audit(
        session,
        AuditAction.LOGIN_CODE_REUSE,
        actor_id=row.user_id,
        # the session it started, or the code itself while the first exchange is in flight
        target_type="session" if row.session_id is not None else "login_code",
        target_id=row.session_id if row.session_id is not None else row.id,
        provider=row.provider,
    )
    raise OAuthError("invalid_grant", BAD_CODE, keep_changes=True)
