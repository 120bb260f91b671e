"""Sign-in throttling around the password grant: per-IP and per-account budgets and a
progressive lockout per (account, client) after failed attempts.

The lockout is keyed by the login string as typed (normalised), so unknown accounts are
throttled exactly like real ones and the answers reveal nothing about which exist.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.auth import service
from tidings.auth.schemas import PasswordGrant
from tidings.core.container import Container
from tidings.core.errors import RateLimited
from tidings.core.requestid import current_client_ip
from tidings.mfa.service import check_sign_in


def _account_key(login: str) -> str:
    return login.strip().lower()


async def password_login(
    session: AsyncSession, container: Container, grant: PasswordGrant, refresh_ttl: int
) -> service.TokenPair:
    limiter = container.limiter
    ip = current_client_ip() or "unknown"
    account = _account_key(grant.username)
    lock_key = f"{account}|{ip}"
    await limiter.enforce("login_ip", ip)
    await limiter.enforce("login_account", account)
    try:
        # counted before the password is checked (and forgiven below if it was right): a burst
        # of parallel guesses cannot all pass a check that only a finished failure would count
        await limiter.enforce("login_lockout", lock_key)
    except RateLimited as exc:
        exc.detail = (
            "Too many failed sign-ins for this account from here; "
            f"try again in {exc.extra.get('retry_after')} s."
        )
        raise

    async def second_factor(user: User) -> None:
        await check_sign_in(session, container, user, grant.otp)

    # a wrong one-time code is a failed attempt too: counted above, like a wrong password
    pair = await service.password_grant(
        session,
        container.hasher,
        container.signer,
        grant.username,
        grant.password,
        refresh_ttl,
        container.keys.secret_key,
        second_factor,
    )
    await limiter.reset("login_lockout", lock_key)
    return pair
