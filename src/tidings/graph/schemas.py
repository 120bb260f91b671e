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


class OwnRelationOut(ResponseModel):
    """An account you block or mute: its id and name only (it may block you in turn, or be
    suspended, and then its profile is not yours to see)."""

    id: Id
    username: str
    since: Timestamp = Field(description="When you blocked or muted it.")
