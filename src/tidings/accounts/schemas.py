"""Account request and response bodies."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    EmailStr,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from tidings.accounts.passwords import check_not_common
from tidings.auth.policy import Role
from tidings.core.schemas import (
    Id,
    RequestModel,
    ResponseModel,
    Timestamp,
    WebUrl,
)

USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,30}$"
EXPORT_FORMAT = "tidings-export/1"
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


def _ci(word: str) -> str:
    """A regex for ``word`` in any ASCII case (JSON Schema patterns have no flags)."""
    return "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in word)


# USERNAME_PATTERN minus the reserved names, for the document
_FREE_USERNAME = (
    "^(?!(?:" + "|".join(_ci(name) for name in sorted(RESERVED_USERNAMES)) + ")$)"
) + USERNAME_PATTERN.removeprefix("^")
Username = Annotated[
    str,
    StringConstraints(pattern=USERNAME_PATTERN, min_length=3, max_length=30),
    AfterValidator(_not_reserved),
    WithJsonSchema({"type": "string", "minLength": 3, "maxLength": 30, "pattern": _FREE_USERNAME}),
]
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=128, strip_whitespace=False),
    AfterValidator(check_not_common),
]
DisplayName = Annotated[str, StringConstraints(max_length=50)]
UrlString = WebUrl

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


_CONTROL_CLASS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
CLEAN_TEXT_PATTERN = rf"^[^{_CONTROL_CLASS}]*$"


class _CleanText:
    """Refuse control characters, and say so in the JSON schema (``pattern``)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_no_control_chars, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = CLEAN_TEXT_PATTERN
        return json_schema


CleanText = _CleanText()


# What email-validator refuses beyond the syntax of `format: email`: quoted local parts, a
# domain without a dot, an address literal, special-use names (RFC 6761) such as `.test`.
EMAIL_PATTERN = (
    r'^[^"@\s]+@(?!(?:.*\.)?(?:'
    + "|".join(_ci(name) for name in ("arpa", "invalid", "local", "localhost", "onion", "test"))
    + r")\.?$)[^@\[\]\s]+\.[^@\[\]\s]+$"
)
Email = Annotated[
    EmailStr,
    Field(max_length=254),
    WithJsonSchema(
        {"type": "string", "format": "email", "maxLength": 254, "pattern": EMAIL_PATTERN}
    ),
]


class RegisterRequest(RequestModel):
    username: Username
    email: Email
    password: Password
    display_name: Annotated[DisplayName, CleanText] | None = None


class ProfileUpdate(RequestModel):
    """Fields a user may change about themselves; anything else is a 422."""

    display_name: Annotated[DisplayName, CleanText] | None = None
    bio: Annotated[str, StringConstraints(max_length=300), CleanText] | None = None
    avatar_url: UrlString | None = None
    location: Annotated[str, StringConstraints(max_length=60), CleanText] | None = None
    website: UrlString | None = None
    locked: StrictBool | None = Field(
        default=None,
        description="Follows need your approval (follow requests) while true; requests waiting "
        "when you unlock stay until you answer them.",
    )


class PasswordChange(RequestModel):
    # Omitted only by an account that has no password yet (created by a sign-in provider).
    current_password: (
        Annotated[str, StringConstraints(max_length=128, strip_whitespace=False)] | None
    ) = None
    new_password: Password


class Reauthentication(RequestModel):
    """Proof that the account's holder asks: the password, or for an account without one
    (made by a sign-in provider) the username typed out, after confirming it is them through
    the provider (``POST /api/v1/me/reauthentication/{provider}``) within 10 minutes."""

    password: Annotated[str, StringConstraints(max_length=128, strip_whitespace=False)] | None = (
        None
    )
    confirm_username: Annotated[str, StringConstraints(max_length=30)] | None = None


class AccountDeletion(Reauthentication):
    """Deleting the account: the holder's proof."""


class SessionOut(ResponseModel):
    """A sign-in session that can still be used."""

    id: Id
    created_at: Timestamp
    last_used_at: Timestamp | None = Field(description="When it last got new tokens.")
    ip: str | None = Field(description="The client address it signed in from.")
    user_agent: str | None
    current: bool = Field(description="The session of the token making this request.")


class SessionList(ResponseModel):
    data: list[SessionOut]


class DeletionAccepted(ResponseModel):
    """The account is closed now (no sign-in, no profile); its content is erased shortly after
    by a background job (``status``: ``erasing``)."""

    username: str
    deleted_at: Timestamp
    status: str = "erasing"


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
    locked: bool = Field(description="Follows need this account's approval.")
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


# --- the export of one's own data (GET /api/v1/me/export) -------------------------------------


class ExportedIdentity(ResponseModel):
    provider: str
    email: str | None
    created_at: Timestamp
    last_login_at: Timestamp | None


class ExportedSession(ResponseModel):
    id: Id
    created_at: Timestamp
    last_used_at: Timestamp | None
    ip: str | None
    user_agent: str | None
    revoked_at: Timestamp | None
    revoked_reason: str | None


class ExportedPost(ResponseModel):
    id: Id
    kind: str
    text: str
    visibility: str
    share_of_id: Id | None
    quote_of_id: Id | None
    media: list[dict[str, Any]]
    links: list[str]
    created_at: Timestamp
    edited_at: Timestamp | None
    deleted_at: Timestamp | None = Field(description="Deleted by you or a moderator, still stored.")


class ExportedComment(ResponseModel):
    id: Id
    post_id: Id
    parent_comment_id: Id | None
    text: str
    created_at: Timestamp
    edited_at: Timestamp | None
    deleted_at: Timestamp | None


class ExportedLike(ResponseModel):
    post_id: Id
    created_at: Timestamp


class ExportedBookmark(ResponseModel):
    post_id: Id
    created_at: Timestamp


class ExportedRelation(ResponseModel):
    """Someone you follow, who follows you, whom you block or mute, or a follow request."""

    user_id: Id
    username: str
    created_at: Timestamp


class ExportedReport(ResponseModel):
    id: Id
    target_type: str
    target_id: Id
    reason: str
    note: str
    status: str
    created_at: Timestamp


class AccountExport(ResponseModel):
    """Everything stored about the account that it made or that describes it."""

    format: str = Field(default=EXPORT_FORMAT, description="This document's version.")
    exported_at: Timestamp
    account: Account
    identities: list[ExportedIdentity] = Field(description="Linked sign-in providers.")
    sessions: list[ExportedSession] = Field(description="Sign-in sessions, newest first.")
    posts: list[ExportedPost] = Field(description="Your posts and shares, oldest first.")
    comments: list[ExportedComment]
    likes: list[ExportedLike]
    bookmarks: list[ExportedBookmark] = Field(description="Posts you saved, oldest first.")
    following: list[ExportedRelation]
    followers: list[ExportedRelation]
    blocks: list[ExportedRelation]
    mutes: list[ExportedRelation]
    follow_requests_sent: list[ExportedRelation] = Field(
        description="Your follow requests to locked accounts, waiting for their answer."
    )
    follow_requests_received: list[ExportedRelation] = Field(
        description="Follow requests waiting for your answer."
    )
    reports: list[ExportedReport] = Field(description="Reports you filed.")
