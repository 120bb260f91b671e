"""The home feed's rules on cached rows: which candidates a page shows, without a query.

With a row cache, the feed store's candidates are filtered here rather than by
:func:`tidings.timelines.repository.cached_feed_filter`: the same conditions (keep them in step),
read from what the cache holds — the posts and the posts they share (deletion, visibility,
media, kind), their authors' profiles (suspension) and the viewer's relations with those authors
(following, blocked either way, muted; :mod:`tidings.posts.relations`). Every write those depend
on evicts its entry after commit (:mod:`tidings.posts.cache`, :mod:`tidings.posts.facts`), so a
warm page is decided, and rendered, without PostgreSQL. ``tests/e2e/test_feeds.py`` compares the
pages with the pull query's after each kind of write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.posts.cache import CachedProfile, PostView, prefetch_linked
from tidings.posts.relations import Relations, relations_of
from tidings.timelines.repository import FOLLOWER_VISIBILITIES
from tidings.timelines.schemas import TimelineFilters


async def followed_among(session: AsyncSession, viewer_id: int, others: Sequence[int]) -> list[int]:
    """Which of ``others`` the viewer follows (the viewer's cached relations)."""
    found = await relations_of(session, viewer_id, others, ())
    return sorted(found.following & set(others))


async def shown(
    session: AsyncSession, viewer_id: int, ids: Sequence[int], filters: TimelineFilters
) -> list[PostView]:
    """The candidates ``ids`` the home feed shows, newest first, bodies included."""
    if not ids:
        return []
    posts, targets, profiles = await prefetch_linked(session, ids)
    authors = {post.author_id for post in posts.values()}
    more = {post.author_id for post in targets.values()} - authors
    others = (authors | more) - {viewer_id}
    relations = await relations_of(session, viewer_id, others, [*posts, *targets])
    rules = _Rules(viewer_id, relations, filters, targets, profiles)
    return [posts[pid] for pid in sorted(posts, reverse=True) if rules.shows(posts[pid])]


@dataclass
class _Rules:
    viewer_id: int
    relations: Relations
    filters: TimelineFilters
    targets: dict[int, PostView]
    profiles: dict[int, CachedProfile]

    def _author_ok(self, author_id: int) -> bool:
        """Not suspended, not blocked either way, not muted (``_author_ok``, hide_muted)."""
        profile = self.profiles.get(author_id)
        return (
            profile is not None
            and not profile.suspended
            and author_id not in self.relations.blocking
            and author_id not in self.relations.blocked_by
            and author_id not in self.relations.muted
        )

    def _media_ok(self, post: PostView) -> bool:
        wanted = self.filters.has_media
        return wanted is None or bool(post.has_media) == wanted

    def shows(self, post: PostView) -> bool:
        """``home_feed_in``'s conditions (``_feed_conditions``, ``_kinds``) for one candidate."""
        if post.deleted_at is not None or not self._media_ok(post):
            return False
        if post.author_id != self.viewer_id and not (
            post.author_id in self.relations.following
            and self._author_ok(post.author_id)
            and post.visibility in FOLLOWER_VISIBILITIES
        ):
            return False
        if post.kind == "post":
            return True
        return self.filters.include_shares and post.kind == "share" and self._target_ok(post)

    def _target_ok(self, share: PostView) -> bool:
        """``_shared_post_ok`` in the home feed (not a moderator, muted authors hidden)."""
        target = self.targets.get(share.share_of_id or 0)
        if target is None or target.deleted_at is not None or not self._media_ok(target):
            return False
        if target.author_id == self.viewer_id:
            return True
        if not self._author_ok(target.author_id):
            return False
        return target.visibility == "public" or (
            target.visibility == "followers" and target.author_id in self.relations.following
        )
