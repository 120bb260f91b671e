"""Relationship bodies."""

from __future__ import annotations

from pydantic import Field

from tidings.core.schemas import Id, ResponseModel, Timestamp


class RelationshipOut(ResponseModel):
    """How the viewer and another user are connected."""

    following: bool
    followed_by: bool
    blocking: bool
    blocked_by: bool
    muting: bool
    requested: bool = Field(
        description="Your follow request to this locked account waits for its answer."
    )


class OwnRelationOut(ResponseModel):
    """An account you block or mute: its id and name only (it may block you in turn, or be
    suspended, and then its profile is not yours to see)."""

    id: Id
    username: str
    since: Timestamp = Field(description="When you blocked or muted it.")


class FollowRequestOut(ResponseModel):
    """Someone asking to follow your locked account."""

    id: Id
    username: str
    display_name: str
    avatar_url: str | None
    since: Timestamp = Field(description="When they asked.")
