"""Account use cases. Services never commit: the unit of work does."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.repository import UserRepository
from tidings.accounts.schemas import (
    AccountDeletion,
    AdminUserUpdate,
    Reauthentication,
    RegisterRequest,
    SessionOut,
)
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal, Role
from tidings.auth.providers.models import UserIdentity
from tidings.auth.reauth import verify_password
from tidings.auth.repository import AuthRepository
from tidings.core.db import utcnow
from tidings.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from tidings.core.pagination import PageParams, decode_cursor, paginate
from tidings.core.security import PasswordHasher
from tidings.events import domain
from tidings.events.outbox import record
from tidings.graph.service import visible_user
from tidings.mail.service import mail_enabled, queue_mail
from tidings.mfa.models import MfaRecoveryCode, MfaTotp
from tidings.ratelimit.limiter import RateLimiter
from tidings.recovery.models import CHANGE as CHANGE_EMAIL
from tidings.recovery.repository import TokenRepository
from tidings.settings import Settings


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def register(session: AsyncSession, hasher: PasswordHasher, cmd: RegisterRequest) -> User:
    users = UserRepository(session)
    email = normalise_email(str(cmd.email))
    clash = await users.taken(cmd.username, email)
    if clash:
        raise Conflict(
            f"That {clash} is already registered.",
            errors=[FieldError(loc=["body", clash], msg="already registered")],
        )
    user = User(
        username=cmd.username,
        username_key=cmd.username.lower(),
        email=email,
        password_hash=await hasher.hash(cmd.password),
        display_name=cmd.display_name or cmd.username,
        role=Role.USER.value,
    )
    await users.add(user)
    return user


async def create_admin(session: AsyncSession, hasher: PasswordHasher, cmd: RegisterRequest) -> User:
    user = await register(session, hasher, cmd)
    user.role = Role.ADMIN.value
    user.email_verified = True
    await session.flush()
    await record_audit(session, AuditAction.ADMIN_CREATED, target_type="user", target_id=user.id)
    return user


async def get_account(session: AsyncSession, user_id: int, *, for_update: bool = False) -> User:
    """The account, unless it is missing or deleted (a 404 either way)."""
    users = UserRepository(session)
    user = await (users.get_for_update(user_id) if for_update else users.get(user_id))
    if user is None or user.deleted_at is not None:
        raise NotFound("No such account.")
    return user


async def named_account(session: AsyncSession, username: str, *, for_update: bool = False) -> User:
    """The account with the username, unless it is missing or deleted (a 404 either way)."""
    user = await UserRepository(session).by_username(username, for_update=for_update)
    if user is None or user.deleted_at is not None:
        raise NotFound(f"No user named '{username}'.")
    return user


async def public_profile(session: AsyncSession, username: str, viewer: Principal | None) -> User:
    return await visible_user(session, username, viewer)


async def update_profile(session: AsyncSession, user_id: int, changes: dict[str, Any]) -> User:
    user = await get_account(session, user_id)
    for name, value in changes.items():
        if name == "locked":
            if value is not None:  # null: unchanged (a column that has no "unset")
                user.locked = bool(value)
            continue
        if name in ("display_name", "bio", "location") and value is None:
            value = ""
        setattr(user, name, str(value) if value is not None else None)
    await session.flush()
    return user


def notify_password_changed(session: AsyncSession, settings: Settings, user: User) -> None:
    """Tell the address that the password changed (a reset, or a change while signed in)."""
    if not mail_enabled(settings):
        return
    queue_mail(
        session,
        user.email,
        "Your password was changed",
        f"The password of @{user.username} was just changed, and every session signed out.\n"
        "If it was not you, reset it at once and tell the service's operators.\n",
    )


async def change_password(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    current: str | None,
    new: str,
) -> None:
    """Change the password; an account without one (made by a sign-in provider) sets its first
    without ``current`` once its holder confirmed it is them through its provider
    (:func:`require_step_up`: a token alone must not be enough to give the account a password
    its holder does not know)."""
    user = await get_account(session, principal.user_id)
    if user.password_hash is None:
        await require_step_up(session, principal, "set a password")
    else:
        await verify_password(
            session,
            hasher,
            limiter,
            principal,
            user,
            current,
            field="current_password",
            detail="The current password is required, and must match.",
        )
    user.password_hash = await hasher.hash(new)
    await AuthRepository(session).revoke_all_for_user(user.id, "password_changed")
    # a change of address asked for meanwhile (maybe by whoever knew the old password) stops
    await TokenRepository(session).retire_others(user.id, CHANGE_EMAIL)
    notify_password_changed(session, settings, user)
    await record_audit(
        session,
        AuditAction.PASSWORD_CHANGED,
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
    )


async def list_users(
    session: AsyncSession, params: PageParams, role: Role | None
) -> tuple[list[User], str | None]:
    key = params.key("id")
    rows = await UserRepository(session).page(
        params.limit, key["id"] if key else None, role.value if role else None
    )
    return paginate(rows, params.limit, lambda user: {"id": user.id})


async def admin_update(
    session: AsyncSession, actor: Principal, username: str, cmd: AdminUserUpdate
) -> User:
    user = await named_account(session, username, for_update=True)
    if user.id == actor.user_id and (
        (cmd.role is not None and cmd.role != Role.ADMIN) or cmd.suspended
    ):
        raise Conflict("Admins cannot demote or suspend themselves; ask another admin.")
    if cmd.role is not None and cmd.role.value != user.role:
        await record_audit(
            session,
            AuditAction.ROLE_CHANGED,
            actor_id=actor.user_id,
            target_type="user",
            target_id=user.id,
            old=user.role,
            new=cmd.role.value,
        )
        user.role = cmd.role.value
    if cmd.suspended is not None and cmd.suspended != user.suspended:
        user.suspended = cmd.suspended
        action = AuditAction.SUSPENDED if cmd.suspended else AuditAction.UNSUSPENDED
        await record_audit(
            session, action, actor_id=actor.user_id, target_type="user", target_id=user.id
        )
        if cmd.suspended:
            await AuthRepository(session).revoke_all_for_user(user.id, "suspended")
    await session.flush()
    return user


async def delete_account(
    session: AsyncSession,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    cmd: AccountDeletion,
) -> User:
    """Close the signed-in account at once and leave its content to the erasure
    (:mod:`tidings.accounts.erasure`). The holder proves it is them: the password, or for an
    account without one the username typed out."""
    user = await get_account(session, principal.user_id, for_update=True)
    if user.role == Role.ADMIN:
        raise Conflict("Admins cannot delete their own account; ask another admin to demote you.")
    await prove_holder(session, hasher, limiter, principal, user, cmd, "delete the account")
    await _close(session, user, actor_id=user.id)
    return user


STEP_UP_WINDOW = timedelta(minutes=10)


async def require_step_up(session: AsyncSession, principal: Principal, doing: str) -> None:
    """The proof asked of an account without a password, which has nothing to type: its holder
    confirmed it is them through a linked sign-in provider in this session, within
    :data:`STEP_UP_WINDOW` (a 403 otherwise). Signing in does not count: a token stolen
    just after it must not be enough."""
    confirmed = await AuthRepository(session).reauthenticated_at(principal.session_id)
    if confirmed is None or utcnow() - confirmed > STEP_UP_WINDOW:
        minutes = int(STEP_UP_WINDOW.total_seconds() // 60)
        raise Forbidden(
            f"To {doing}, confirm it is you through your sign-in provider first "
            f"(POST /api/v1/me/reauthentication/{{provider}}, open its authorization_url in "
            f"your browser, then POST the code it comes back with to "
            f"/api/v1/me/reauthentication), and retry within {minutes} minutes."
        )


async def prove_holder(
    session: AsyncSession,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    user: User,
    proof: Reauthentication,
    doing: str,
) -> None:
    """The request comes from the account's holder, not just from a token: the password (a
    422 naming the field otherwise). An account without one (made by a sign-in provider) has
    confirmed it is them through its provider in this session (:func:`require_step_up`, a 403
    otherwise), and types its username out."""
    if user.password_hash is not None:
        await verify_password(
            session,
            hasher,
            limiter,
            principal,
            user,
            proof.password,
            field="password",
            detail=f"Your password is required to {doing}.",
        )
        return
    await require_step_up(session, principal, doing)
    if (proof.confirm_username or "").lower() != user.username_key:
        raise ValidationFailed(
            "Type your username to confirm: the account has no password.",
            errors=[FieldError(loc=["body", "confirm_username"], msg="does not match")],
        )


_KEY = re.compile(r"[a-z0-9_]{1,30}")


async def find_users(
    session: AsyncSession, viewer: Principal | None, prefix: str, params: PageParams
) -> tuple[list[User], str | None]:
    """Accounts whose username starts with ``prefix`` (any case), in username order: not
    suspended or deleted, and none blocked either way with a signed-in viewer."""
    low = prefix.lower()
    after: str | None = None
    if params.cursor is not None:
        value = decode_cursor(params.cursor).get("after")
        if not isinstance(value, str) or not _KEY.fullmatch(value):
            raise BadRequest("The cursor is not valid; start again without one.")
        after = value
    rows = await UserRepository(session).by_prefix(
        low, after, params.limit, viewer.user_id if viewer else None
    )
    return paginate(rows, params.limit, lambda user: {"after": user.username_key})


async def list_sessions(session: AsyncSession, principal: Principal) -> list[SessionOut]:
    found = await AuthRepository(session).active_sessions(principal.user_id)
    return [
        SessionOut(
            id=s.id,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.id == principal.session_id,
        )
        for s in found
    ]


async def end_sessions(
    session: AsyncSession,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    proof: Reauthentication,
    session_id: int | None,
) -> None:
    """Sign out one of the holder's sessions (``session_id``; the current one too), or every
    other one (None). Their tokens stop working on their next use."""
    user = await get_account(session, principal.user_id)
    repo = AuthRepository(session)
    if session_id is not None and session_id not in {
        s.id for s in await repo.active_sessions(user.id)
    }:
        raise NotFound("No such session.")
    await prove_holder(session, hasher, limiter, principal, user, proof, "sign sessions out")
    if session_id is not None:
        await repo.revoke_session(session_id, "ended_by_user")
        ended = [session_id]
    else:  # every other one not signed out yet, listed or not (an access token may outlive
        # its session's refresh tokens)
        ended = await repo.revoke_others(user.id, principal.session_id, "ended_by_user")
    for ending in sorted(ended):
        await record_audit(
            session,
            AuditAction.SESSION_ENDED,
            actor_id=user.id,
            target_type="session",
            target_id=ending,
        )


async def admin_delete(session: AsyncSession, actor: Principal, username: str) -> User:
    """An admin deletes another account (a support request, an erasure request by mail)."""
    user = await named_account(session, username, for_update=True)
    if user.id == actor.user_id:
        raise Conflict("Admins cannot delete their own account; ask another admin.")
    if user.role == Role.ADMIN:
        raise Conflict("Demote an admin before deleting their account.")
    await _close(session, user, actor_id=actor.user_id)
    return user


async def operator_delete(session: AsyncSession, username: str) -> User:
    """``tidings users delete``: whoever runs the server deletes any account, admins too."""
    user = await named_account(session, username, for_update=True)
    await _close(session, user, actor_id=None)
    return user


async def _close(session: AsyncSession, user: User, *, actor_id: int | None) -> None:
    """What happens at once: no sign-in (sessions revoked, password and linked providers
    gone), no profile (suspended), the personal fields blanked, the email freed; the username
    stays taken until the erasure is done; the two-step sign-in secret goes too."""
    user.deleted_at = utcnow()
    user.suspended = True
    user.role = Role.USER.value  # a deleted account holds no role (the operator may delete admins)
    user.password_hash = None
    user.email = f"{user.id}@erased.invalid"
    user.email_verified = False
    user.display_name = ""
    user.bio = ""
    user.avatar_url = None
    user.location = ""
    user.website = None
    await session.execute(delete(UserIdentity).where(UserIdentity.user_id == user.id))
    await session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user.id))
    await session.execute(delete(MfaTotp).where(MfaTotp.user_id == user.id))
    await AuthRepository(session).revoke_all_for_user(user.id, "account_deleted")
    await record_audit(
        session,
        AuditAction.ACCOUNT_DELETED,
        actor_id=actor_id,
        target_type="user",
        target_id=user.id,
    )
    record(
        session,
        domain.UserDeleted(
            user_id=user.id,
            deleted_by=actor_id,
            by_admin=actor_id is not None and actor_id != user.id,
        ),
    )
    await session.flush()
