"""Timeline routes: home feed, a user's posts, a hashtag."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["timelines"])
