"""Roles, the permissions each grants, and the principal a request acts as — all in one place."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tidings.core.errors import Forbidden, SecondFactorRequired


class Role(StrEnum):
    USER = "user"
    MODERATOR = "moderator"
    ADMIN = "admin"


class Permission(StrEnum):
    SELF_READ = "self:read"
    SELF_WRITE = "self:write"
    CONTENT_WRITE = "content:write"
    CONTENT_MODERATE = "content:moderate"
    USERS_MANAGE = "users:manage"


_USER = frozenset({Permission.SELF_READ, Permission.SELF_WRITE, Permission.CONTENT_WRITE})
_MODERATOR = _USER | {Permission.CONTENT_MODERATE}
_ADMIN = _MODERATOR | {Permission.USERS_MANAGE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.USER: _USER,
    Role.MODERATOR: _MODERATOR,
    Role.ADMIN: _ADMIN,
}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as. Role is read from the database on every request, so a demotion
    or suspension takes effect on the next request, not when the token expires."""

    user_id: int
    username: str
    role: Role
    session_id: int
    # the staff role the account holds but cannot use yet: with TIDINGS_STAFF_MFA=required a
    # moderator or admin without two-step sign-in acts as a user (``role``) until it is on
    held_role: Role | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


def refusal(principal: Principal, permission: Permission, detail: str) -> Forbidden:
    """The 403 for a principal without ``permission``: when the staff role it holds would
    grant it, the one that says two-step sign-in is missing (at the route and in services)."""
    held = principal.held_role
    if held is not None and permission in ROLE_PERMISSIONS[held]:
        return SecondFactorRequired(
            f"Your account's {held.value} powers need two-step sign-in: turn it on "
            "(POST /api/v1/me/mfa/totp, then /api/v1/me/mfa/totp/confirm) and retry."
        )
    return Forbidden(detail)
