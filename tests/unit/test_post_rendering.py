"""Post bodies are written with orjson from plain values (``render_json``): they must be
exactly what the ``PostOut`` response model serialises — ids as strings, times to the
millisecond with ``Z``, every field present, nothing extra — for every shape of post."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy.orm import configure_mappers

import tidings.models  # noqa: F401 (every mapper, for configure_mappers)
from tidings.accounts.models import User
from tidings.auth.policy import Principal, Role
from tidings.core.pagination import Page
from tidings.posts.cache import AuthorView, CachedPost, CachedProfile, PostView
from tidings.posts.models import Post
from tidings.posts.schemas import PostOut
from tidings.posts.views import ViewContext, render, render_json

CREATED = datetime(2026, 11, 30, 4, 5, 6, 789_123, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def _mappers() -> None:
    configure_mappers()


def _user(uid: int, avatar: str | None = None, *, cached: bool = True) -> AuthorView:
    values = {"id": uid, "username": f"u{uid}", "display_name": f"U {uid}", "avatar_url": avatar}
    values |= {"suspended": False, "role": "user"}
    return CachedProfile(orjson.loads(orjson.dumps(values))) if cached else User(**values)


def _post(row: dict[str, Any], *, cached: bool = True) -> PostView:
    """As the row cache gives it back (through JSON), or as the session's ORM instance."""
    return CachedPost(orjson.loads(orjson.dumps(row))) if cached else Post(**row)


def _row(pid: int, author: int, **more: Any) -> dict[str, Any]:
    row = {
        "id": pid,
        "author_id": author,
        "kind": "post",
        "text": f"post {pid} #Tag{pid} @u{author}",
        "visibility": "public",
        "share_of_id": None,
        "quote_of_id": None,
        "media": [],
        "links": [],
        "has_media": False,
        "like_count": pid % 7,
        "share_count": 1,
        "comment_count": 2,
        "quote_count": 0,
        "version": 1,
        "created_at": CREATED,
        "edited_at": None,
        "deleted_at": None,
    }
    return row | more


def _context(viewer: Principal | None, *, cached: bool = True) -> ViewContext:
    ctx = ViewContext(viewer)
    ctx.authors = {
        uid: _user(uid, "https://example.com/a.png" if uid == 11 else None, cached=cached)
        for uid in (10, 11, 12)
    }
    rows = [
        _row(1, 10),
        _row(
            2,
            11,
            media=[
                {"url": "https://example.com/i.png", "type": "image", "alt_text": "a cat"},
                {"url": "https://example.com/v.mp4", "type": "video"},
            ],
            links=["https://example.com/x"],
            has_media=True,
            edited_at=CREATED.replace(microsecond=0),
            version=3,
            visibility="followers",
        ),
        _row(3, 12, kind="share", text="", share_of_id=1),
        _row(4, 12, text="quoting", quote_of_id=2),
        _row(5, 10, text="quoting a quote", quote_of_id=4),
        _row(6, 11, text="quoting what is gone", quote_of_id=999),
    ]
    ctx.posts = {row["id"]: _post(row, cached=cached) for row in rows}
    if viewer is not None:  # what load_context finds for a signed-in viewer only
        ctx.following = {10, 11, 12}
        ctx.liked, ctx.shared = {1, 4}, {2}
    return ctx


@pytest.mark.parametrize("signed_in", [True, False], ids=["viewer", "anonymous"])
def test_render_json_is_what_the_response_model_serialises(signed_in: bool) -> None:
    viewer = Principal(user_id=12, username="u12", role=Role.USER, session_id=1)
    ctx = _context(viewer if signed_in else None)
    bodies = [body for post in ctx.posts.values() if (body := render_json(ctx, post))]
    assert len(bodies) == (6 if signed_in else 5)  # the followers-only post needs a follower
    for body in bodies:
        model = PostOut.model_validate(body)
        assert model.model_dump(mode="json") == body
    page = orjson.loads(orjson.dumps({"data": bodies, "next_cursor": None}))
    assert Page[PostOut].model_validate(page).model_dump(mode="json") == page
    first = bodies[0]
    assert first["id"] == "1"
    assert first["author"]["id"] == "10"
    assert first["created_at"] == "2026-11-30T04:05:06.789Z"
    assert first["hashtags"] == ["tag1"]
    assert first["mentions"] == ["u10"]
    if signed_in:
        assert first["viewer"] == {"liked": True, "shared": False}
        share = next(b for b in bodies if b["kind"] == "share")
        assert share["shared_post"] is not None
        assert share["shared_post"]["id"] == "1"
        assert share["counts"]["likes"] == first["counts"]["likes"]  # the shared post's
    else:
        assert first["viewer"] is None
    nested = next(b for b in bodies if b["id"] == "5")["quoted_post"]["quoted_post"]
    # two levels; anonymous readers may not see the followers-only post quoted at the bottom
    assert (nested["id"] if nested else None) == ("2" if signed_in else None)
    assert next(b for b in bodies if b["id"] == "6")["quoted_post"] is None


def test_render_is_the_same_body_as_a_model() -> None:
    ctx = _context(Principal(user_id=12, username="u12", role=Role.USER, session_id=1))
    for post in ctx.posts.values():
        model = render(ctx, post)
        assert model is not None
        assert model.model_dump(mode="json") == render_json(ctx, post)


@pytest.mark.parametrize("signed_in", [True, False], ids=["viewer", "anonymous"])
def test_cached_rows_render_as_the_sessions_rows_do(signed_in: bool) -> None:
    """The row cache's plain objects carry every attribute rendering reads, with the same
    values once through JSON (times included)."""
    viewer = Principal(user_id=12, username="u12", role=Role.USER, session_id=1)
    cached = _context(viewer if signed_in else None, cached=True)
    orm = _context(viewer if signed_in else None, cached=False)
    assert all(isinstance(post, CachedPost) for post in cached.posts.values())
    assert all(isinstance(post, Post) for post in orm.posts.values())
    for post_id, post in orm.posts.items():
        assert render_json(cached, cached.posts[post_id]) == render_json(orm, post)
