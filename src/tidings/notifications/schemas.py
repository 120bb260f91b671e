"""Notification kinds, filters, and request and response bodies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field

from tidings.core.errors import FieldError, ValidationFailed
from tidings.core.schemas import Id, IdIn, RequestModel, ResponseModel, Timestamp


class Kind(StrEnum):
    LIKE = "like"
    SHARE = "share"
    COMMENT = "comment"
    REPLY = "reply"
    MENTION = "mention"
    FOLLOW = "follow"
    FOLLOW_REQUEST = "follow_request"  # someone asks to follow your locked account
    FOLLOW_ACCEPTED = "follow_accepted"  # a locked account approved your request
    QUOTE = "quote"
    REPORT = "report"  # moderators and admins: new reports to review
    SYSTEM = "system"


KIND_VALUES = frozenset(k.value for k in Kind)
KIND_NAMES = ", ".join(k.value for k in Kind)
_ANY_KIND = "|".join("".join(f"[{c}{c.upper()}]" for c in k.value) for k in Kind)
# What `NotificationFilters.parse` accepts: kinds in any ASCII case, commas, spaces around them.
KINDS_PATTERN = rf"^ *(?:(?:{_ANY_KIND}) *)?(?:, *(?:(?:{_ANY_KIND}) *)?)*$"


@dataclass(frozen=True)
class NotificationFilters:
    kinds: frozenset[Kind] = frozenset()  # empty: every kind
    unread: bool = False

    @classmethod
    def parse(cls, kinds: str | None, unread: bool) -> NotificationFilters:
        """``?kinds=like,follow``; an unknown kind is a 422 naming the allowed ones."""
        names = [name.strip(" ") for name in (kinds or "").split(",") if name.strip(" ")]
        unknown = [name for name in names if not name.isascii() or name.lower() not in KIND_VALUES]
        if unknown:
            raise ValidationFailed(
                f"Unknown notification kind: {', '.join(unknown)}. Use any of: {KIND_NAMES}.",
                errors=[FieldError(loc=["query", "kinds"], msg=f"allowed kinds: {KIND_NAMES}")],
            )
        return cls(kinds=frozenset(Kind(name.lower()) for name in names), unread=unread)


class ActorOut(ResponseModel):
    id: Id
    username: str
    display_name: str
    avatar_url: str | None


class NotificationOut(ResponseModel):
    id: Id
    kind: Kind
    actors: list[ActorOut] = Field(description="The latest actors (up to 3), newest first.")
    actor_count: int = Field(description="Everyone in this notification, shown or not.")
    post_id: Id | None = None
    comment_id: Id | None = None
    summary: str = Field(examples=["alice and 12 others liked your post"])
    title: str | None = Field(default=None, description="kind=system only.")
    body: str | None = Field(default=None, description="kind=system only.")
    data: dict[str, Any] | None = Field(
        default=None,
        description="kind=system: the caller's; kind=report: latest_report_id, the newest report.",
    )
    read: bool
    created_at: Timestamp
    updated_at: Timestamp = Field(description="When the latest actor joined.")


class UnreadCountOut(ResponseModel):
    count: int


class MarkReadIn(RequestModel):
    up_to_id: IdIn | None = Field(
        default=None,
        description="Mark this notification and every one listed below it read; all if absent.",
    )
