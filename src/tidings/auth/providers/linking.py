"""Which account a provider sign-in lands in, and linking/unlinking identities.

Identities are found by ``(provider, subject)`` only. With no identity yet:

* the provider must assert a verified email, else nothing is created or matched (403);
* an account with that email is joined automatically only when its own email is verified too
  (and the provider allows it: ``link_by_email``); otherwise it is never taken over (409: sign
  in to it and link the provider from there);
* with no such account, a new one is created (no password; the username derived and unique).

Deciding (:func:`plan_login`, :func:`plan_link`) only reads; :func:`apply_plan` writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.repository import UserRepository
from tidings.accounts.schemas import Reauthentication
from tidings.accounts.service import get_account, prove_holder
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.models import AuthSession
from tidings.auth.policy import Principal, Role
from tidings.auth.providers.base import ProviderClient, ProviderProfile
from tidings.auth.providers.crypto import TokenCipher
from tidings.auth.providers.models import UserIdentity
from tidings.auth.providers.repository import ProviderRepository
from tidings.auth.providers.usernames import unique_username
from tidings.core.errors import Conflict, Forbidden, NotFound
from tidings.core.security import PasswordHasher
from tidings.mail.service import tell_holder
from tidings.ratelimit.limiter import RateLimiter
from tidings.settings import Settings

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Plan:
    kind: Literal["sign_in", "auto_link", "create", "link", "relink"]
    user: User | None = None
    identity: UserIdentity | None = None


def normalise_email(email: str | None) -> str | None:
    return email.strip().lower() if email and email.strip() else None


async def plan_login(
    session: AsyncSession, provider: ProviderClient, profile: ProviderProfile
) -> Plan:
    repo = ProviderRepository(session)
    identity = await repo.identity(provider.name, profile.subject)
    if identity is not None:
        user = await UserRepository(session).get(identity.user_id)
        assert user is not None  # the foreign key cascades
        _not_suspended(user)
        return Plan("sign_in", user, identity)
    email = normalise_email(profile.email)
    if email is None or not profile.email_verified:
        raise Forbidden(
            f"{provider.display_name} did not confirm a verified email address, so no account "
            f"can be created or matched from this sign-in. Sign in another way and link "
            f"{provider.display_name} from your account."
        )
    existing = await repo.user_by_email(email)
    if existing is None:
        return Plan("create")
    if not (existing.email_verified and provider.link_by_email):
        raise Conflict(
            f"An account already uses {email}, but it cannot be joined automatically. Sign in to "
            f"it (with its password or a linked provider) and link {provider.display_name} there."
        )
    _not_suspended(existing)
    if await repo.identity_of_user(existing.id, provider.name) is not None:
        raise Conflict(
            f"The account for {email} is linked to another {provider.display_name} account."
        )
    return Plan("auto_link", existing)


async def plan_link(
    session: AsyncSession,
    provider: ProviderClient,
    profile: ProviderProfile,
    user_id: int | None,
    session_id: int | None,
) -> Plan:
    user = await UserRepository(session).get(user_id) if user_id is not None else None
    if user is None:
        raise NotFound("The account this link was started for no longer exists.")
    _not_suspended(user)
    auth_session = await session.get(AuthSession, session_id) if session_id is not None else None
    if auth_session is None or auth_session.revoked_at is not None:
        raise Forbidden("You signed out after starting to link; sign in and start again.")
    repo = ProviderRepository(session)
    identity = await repo.identity(provider.name, profile.subject)
    if identity is not None:
        if identity.user_id != user.id:
            raise Conflict(
                f"This {provider.display_name} account is linked to another Tidings account."
            )
        return Plan("relink", user, identity)
    if await repo.identity_of_user(user.id, provider.name) is not None:
        raise Conflict(
            f"Your account already has a {provider.display_name} account linked; unlink it first."
        )
    return Plan("link", user)


async def check_holder(
    session: AsyncSession,
    provider: ProviderClient,
    profile: ProviderProfile,
    user_id: int | None,
    session_id: int | None,
) -> None:
    """The browser proved it holds the provider account linked to the account that asked, and
    that session is still signed in (a 403 otherwise). Confirms nothing yet: the session that
    asked redeems the code the browser brings back (its own browser, not just any)."""
    user = await UserRepository(session).get(user_id) if user_id is not None else None
    if user is None:
        raise NotFound("The account this confirmation was started for no longer exists.")
    _not_suspended(user)
    identity = await ProviderRepository(session).identity(provider.name, profile.subject)
    if identity is None or identity.user_id != user.id:
        raise Forbidden(
            f"This {provider.display_name} account is not the one linked to your account; "
            f"sign in to {provider.display_name} as that one and start again."
        )
    auth_session = await session.get(AuthSession, session_id) if session_id is not None else None
    if auth_session is None or auth_session.revoked_at is not None:
        raise Forbidden("You signed out after starting; sign in and start again.")


def _not_suspended(user: User) -> None:
    if user.suspended:
        raise Forbidden("The account is suspended.")


async def apply_plan(
    session: AsyncSession,
    settings: Settings,
    plan: Plan,
    provider: ProviderClient,
    profile: ProviderProfile,
    cipher: TokenCipher | None,
    now: datetime,
) -> User:
    """Carry out a plan; returns the account signed in to (or linked). A provider added to an
    existing account is a new way into it: the account's address is told."""
    user = plan.user
    if plan.kind == "create":
        user = await _create_account(session, provider, profile)
    assert user is not None
    identity = plan.identity
    if identity is None:
        identity = UserIdentity(user_id=user.id, provider=provider.name, subject=profile.subject)
    _refresh(identity, profile, cipher, now)
    if plan.identity is None:
        await ProviderRepository(session).add_identity(identity)
        await record_audit(
            session,
            AuditAction.IDENTITY_LINKED,
            actor_id=user.id,
            target_type="user",
            target_id=user.id,
            provider=provider.name,
            via={"create": "new_account", "auto_link": "verified_email"}.get(plan.kind, "link"),
        )
        if plan.kind != "create":
            how = (
                "it confirmed this same verified address, so it was joined automatically"
                if plan.kind == "auto_link"
                else "it was linked from a session signed in to your account"
            )
            _tell_holder(
                session,
                settings,
                user,
                "A sign-in method was added to your account",
                f"@{user.username} can now be signed in to with a {provider.display_name} "
                f"account ({profile.email or 'no email address given'}): {how}.",
            )
    await session.flush()
    return user


def _tell_holder(
    session: AsyncSession, settings: Settings, user: User, subject: str, what: str
) -> None:
    """Mail the account's address that its ways of signing in changed."""
    check = "check the sign-in methods linked to your account"
    tell_holder(session, settings, user.email, subject, what, check)


def _refresh(
    identity: UserIdentity, profile: ProviderProfile, cipher: TokenCipher | None, now: datetime
) -> None:
    identity.email = normalise_email(profile.email)
    identity.email_verified = profile.email_verified
    identity.last_login_at = now

    def sealed(token: str | None) -> str | None:
        return cipher.encrypt(token) if cipher is not None and token else None

    identity.access_token_encrypted = sealed(profile.access_token)
    identity.refresh_token_encrypted = sealed(profile.refresh_token)


async def _create_account(
    session: AsyncSession, provider: ProviderClient, profile: ProviderProfile
) -> User:
    users = UserRepository(session)

    async def taken(name: str) -> bool:
        return await users.by_username(name) is not None

    username = await unique_username(profile.username_hints, profile.email, taken)
    display = _CONTROL.sub("", profile.display_name or "").strip()[:50] or username
    email = normalise_email(profile.email)
    assert email is not None
    user = User(
        username=username,
        username_key=username.lower(),
        email=email,
        email_verified=True,
        password_hash=None,
        display_name=display,
        role=Role.USER.value,
    )
    await users.add(user)
    await record_audit(
        session,
        AuditAction.ACCOUNT_REGISTERED,
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
        method=provider.name,
    )
    return user


async def identities(session: AsyncSession, user_id: int) -> list[UserIdentity]:
    return await ProviderRepository(session).identities_of_user(user_id)


async def unlink(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    provider: str,
    enabled: dict[str, str],
    proof: Reauthentication,
) -> None:
    """Remove a linked identity unless it is the last way left to sign in (``enabled``: the
    providers enabled, by name, with their display names); the holder proves it is them (a
    stolen token must not cut the owner's way back in)."""
    user_id = principal.user_id
    user = await get_account(session, user_id, for_update=True)
    repo = ProviderRepository(session)
    linked = await repo.identities_of_user(user_id)
    identity = next((i for i in linked if i.provider == provider), None)
    if identity is None:
        raise NotFound(f"No '{provider}' sign-in is linked to your account.")
    others = [i for i in linked if i is not identity and i.provider in enabled]
    if user.password_hash is None and not others:
        raise Conflict(
            "This is the last way to sign in to your account: set a password "
            "(POST /api/v1/me/password) or link another provider before unlinking it."
        )
    await prove_holder(session, hasher, limiter, principal, user, proof, "unlink a sign-in")
    await repo.delete_identity(identity)
    await record_audit(
        session,
        AuditAction.IDENTITY_UNLINKED,
        actor_id=user_id,
        target_type="user",
        target_id=user_id,
        provider=provider,
    )
    _tell_holder(
        session,
        settings,
        user,
        "A sign-in method was removed from your account",
        f"@{user.username} can no longer be signed in to with its "
        f"{enabled.get(provider, provider)} account.",
    )
