"""Relationship bodies."""

from __future__ import annotations

from tidings.core.schemas import ResponseModel


class RelationshipOut(ResponseModel):
    """How the viewer and another user are connected."""

    following: bool
    followed_by: bool
    blocking: bool
    blocked_by: bool
    muting: bool
