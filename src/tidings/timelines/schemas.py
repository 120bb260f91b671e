"""Timeline filters (the bodies are the posts' own: ``Page[PostOut]``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimelineFilters:
    """``?include_shares=`` and ``?has_media=``; for a share, ``has_media`` is the shared post's."""

    include_shares: bool = True
    has_media: bool | None = None
