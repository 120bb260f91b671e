"""The export of one's own data (``GET /api/v1/me/export``): everything stored that the account
made or that describes it, in one JSON document (:class:`AccountExport`).

The document is streamed: each list is read in keyset pages of :data:`PAGE` rows and written as
it is read, so an account with millions of likes or followers costs the server one page of
memory, not the whole document. Each page is read in a short unit of work of its own (the
request's has ended by the time the body is sent), closed before its bytes are written; read
only, nothing here commits. A failure part-way (the database gone) ends the body early: the
client gets invalid JSON, never a partial document that parses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson
from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tidings.accounts.models import User
from tidings.accounts.schemas import (
    EXPORT_FORMAT,
    Account,
    ExportedBookmark,
    ExportedComment,
    ExportedIdentity,
    ExportedLike,
    ExportedPost,
    ExportedRelation,
    ExportedReport,
    ExportedSession,
)
from tidings.auth.models import AuthSession
from tidings.auth.providers.models import UserIdentity
from tidings.comments.models import Comment
from tidings.core.db import Database, utcnow
from tidings.core.schemas import ResponseModel, Timestamp
from tidings.graph.models import Block, Follow, FollowRequest, Mute
from tidings.posts.models import Bookmark, Like, Post
from tidings.reports.models import Report

PAGE = 1000  # rows per query, and the most the stream holds at once
Rows: TypeAlias = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class Section:
    """One list of the document: its rows (``query``, first column the keyset id), their
    order, and how a row becomes its JSON object."""

    name: str
    query: Callable[[int], Rows]
    key: InstrumentedAttribute[int]
    render: Callable[[Any], BaseModel]
    newest_first: bool = False


def _comment(row: Any) -> ExportedComment:
    c: Comment = row[0]
    return ExportedComment(
        id=c.id,
        post_id=c.post_id,
        parent_comment_id=c.parent_id,
        text=c.text,
        created_at=c.created_at,
        edited_at=c.edited_at,
        deleted_at=c.deleted_at,
    )


def _relation(name: str, model: Any, mine: Any, theirs: Any) -> Section:
    """The other side of each edge of ``model`` where ``mine`` is the account, with their
    username."""

    def query(user_id: int) -> Rows:
        return (
            select(model.id, theirs, User.username, model.created_at)
            .join(User, User.id == theirs)
            .where(mine == user_id)
        )

    def render(row: Any) -> ExportedRelation:
        return ExportedRelation(user_id=row[1], username=row[2], created_at=row[3])

    return Section(name, query, model.id, render)


def _owned(
    name: str, model: Any, owner: Any, schema: type[BaseModel], *, newest_first: bool = False
) -> Section:
    """A section of whole rows of ``model`` whose ``owner`` column is the account."""
    return Section(
        name,
        lambda uid: select(model).where(owner == uid),
        model.id,
        lambda row: schema.model_validate(row[0]),
        newest_first=newest_first,
    )


SECTIONS = (
    _owned("identities", UserIdentity, UserIdentity.user_id, ExportedIdentity),
    _owned("sessions", AuthSession, AuthSession.user_id, ExportedSession, newest_first=True),
    _owned("posts", Post, Post.author_id, ExportedPost),
    Section(
        "comments",
        lambda uid: select(Comment).where(Comment.author_id == uid),
        Comment.id,
        _comment,
    ),
    Section(
        "likes",
        lambda uid: select(Like.id, Like.post_id, Like.created_at).where(Like.user_id == uid),
        Like.id,
        lambda row: ExportedLike(post_id=row[1], created_at=row[2]),
    ),
    Section(
        "bookmarks",
        lambda uid: select(Bookmark.id, Bookmark.post_id, Bookmark.created_at).where(
            Bookmark.user_id == uid
        ),
        Bookmark.id,
        lambda row: ExportedBookmark(post_id=row[1], created_at=row[2]),
    ),
    _relation("following", Follow, Follow.follower_id, Follow.followee_id),
    _relation("followers", Follow, Follow.followee_id, Follow.follower_id),
    _relation("blocks", Block, Block.blocker_id, Block.blocked_id),
    _relation("mutes", Mute, Mute.muter_id, Mute.muted_id),
    _relation(
        "follow_requests_sent", FollowRequest, FollowRequest.requester_id, FollowRequest.target_id
    ),
    _relation(
        "follow_requests_received",
        FollowRequest,
        FollowRequest.target_id,
        FollowRequest.requester_id,
    ),
    _owned("reports", Report, Report.reporter_id, ExportedReport),
)


class _Head(ResponseModel):
    """What comes before the lists (:class:`AccountExport`'s first fields)."""

    format: str
    exported_at: Timestamp
    account: Account


def _json(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="json", by_alias=True))


def _id_of(row: Any) -> int:
    first = row[0]
    return int(first if isinstance(first, int) else first.id)


async def _page(
    session: AsyncSession, section: Section, user_id: int, after: int | None
) -> list[Any]:
    """One keyset page of the section's rows (oldest first, or newest first), after ``after``."""
    stmt = section.query(user_id)
    if after is not None:
        stmt = stmt.where(section.key < after if section.newest_first else section.key > after)
    order = section.key.desc() if section.newest_first else section.key
    return list((await session.execute(stmt.order_by(order).limit(PAGE))).all())


async def stream_export(db: Database, user_id: int, account: Account) -> AsyncIterator[bytes]:
    """The document, piece by piece: the account (read by the request, so a missing one was a
    404 before any byte), then each list in turn. Each page is read in a short unit of work of
    its own, closed before its bytes are written: a client reading slowly, or going away, holds
    no database connection while it waits."""
    head = _Head(format=EXPORT_FORMAT, exported_at=utcnow(), account=account)
    yield _json(head)[:-1]  # the object stays open: "...}" without its "}"
    for section in SECTIONS:
        yield b',"' + section.name.encode() + b'":['
        after: int | None = None
        while True:
            async with db.unit_of_work(write=False) as session:
                rows = await _page(session, section, user_id, after)
                parts = [_json(section.render(row)) for row in rows]
            if parts:
                yield (b"" if after is None else b",") + b",".join(parts)
            if len(rows) < PAGE:
                break
            after = _id_of(rows[-1])
        yield b"]"
    yield b"}"
