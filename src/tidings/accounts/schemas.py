"""Account request and response bodies."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, HttpUrl, StringConstraints

from tidings.accounts.passwords import check_not_common
from tidings.auth.policy import Role
from tidings.core.schemas import Id, RequestModel, ResponseModel, Timestamp

USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,30}$"
RESERVED_USERNAMES = frozenset(
    {
        "admin",
        "administrator",
        "root",
        "api",
        "me",
        "support",
        "help",
        "tidings",
        "system",
        "moderator",
        "null",
        "undefined",
        "settings",
        "login",
        "logout",
        "signup",
        "about",
    }
)


def _not_reserved(value: str) -> str:
    if value.lower() in RESERVED_USERNAMES:
        raise ValueError("this username is reserved")
    return value


Username = Annotated[
    str,
    StringConstraints(pattern=USERNAME_PATTERN, min_length=3, max_length=30),
    AfterValidator(_not_reserved),
]
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=128, strip_whitespace=False),
    AfterValidator(check_not_common),
]
DisplayName = Annotated[str, StringConstraints(max_length=50)]
UrlString = Annotated[HttpUrl, Field(max_length=2048)]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


CleanText = AfterValidator(_no_control_chars)


class RegisterRequest(RequestModel):
    username: Username
    email: Annotated[EmailStr, Field(max_length=254)]
    password: Password
    display_name: Annotated[DisplayName, CleanText] | None = None


class ProfileUpdate(RequestModel):
    """Fields a user may change about themselves; anything else is a 422."""

    display_name: Annotated[DisplayName, CleanText] | None = None
    bio: Annotated[str, StringConstraints(max_length=300), CleanText] | None = None
    avatar_url: UrlString | None = None
    location: Annotated[str, StringConstraints(max_length=60), CleanText] | None = None
    website: UrlString | None = None


class PasswordChange(RequestModel):
    # Omitted only by an account that has no password yet (created by a sign-in provider).
    current_password: (
        Annotated[str, StringConstraints(max_length=128, strip_whitespace=False)] | None
    ) = None
    new_password: Password


class AdminUserUpdate(RequestModel):
    role: Role | None = None
    suspended: bool | None = None


class PublicProfile(ResponseModel):
    id: Id
    username: str
    display_name: str
    bio: str
    avatar_url: str | None
    location: str
    website: str | None
    role: Role
    follower_count: int
    following_count: int
    post_count: int
    created_at: Timestamp


class Account(PublicProfile):
    """The signed-in user's own view of their account."""

    email: str
    email_verified: bool
    suspended: bool
    updated_at: Timestamp
